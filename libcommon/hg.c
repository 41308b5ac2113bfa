// hg: parameter table, activation plan, forward and backward of the RPR Music Transformer and the Hourglass
// (spec/model.md §1-6). The depth tree is walked recursively; every level keeps its own activations and gradient
// buffers, so a nested level's backward never overwrites its parent's. See hg.h for the contracts.
#include "hg.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "backend.h"
#include "ops.h"
#include "util.h"

// ---- parameter offsets, mirroring the state_dict tree ------------------------------------------

typedef struct LayerP {
    size_t in_w, in_b, out_w, out_b, er, l1_w, l1_b, l2_w, l2_b, n1_w, n1_b, n2_w, n2_b;
    int has_er;
} LayerP;

typedef struct BlockP {
    int n;
    LayerP *layers;
    size_t norm_w, norm_b;
} BlockP;

typedef struct LevelP {
    int plain, s;
    BlockP blk;                  // plain level
    BlockP pre, post, rpre, rpost; // hourglass level (rpre/rpost when attn_resampling)
    size_t down_w, down_b, up_w, up_b; // linear updown
    struct LevelP *valley;
} LevelP;

typedef struct ModelP {
    size_t wte, wout_w, wout_b;
    LevelP top;
} ModelP;

// ---- activations ------------------------------------------------------------------------------

typedef struct LayerA {
    int Tq, Tk, cross, causal; // causal: n_keys[i] = i + 1 (AttnDims.causal)
    const float *x, *ctx; // inputs, set by the forward
    float *qkv, *q, *kv, *att, *probs, *res1, *ln1, *mean1, *rstd1;
    float *r1d, *res2, *out, *mean2, *rstd2;
    uint16_t *r16; // r1d as bfloat16 instead (HgActs.act16)
    // as bfloat16 in place of qkv (q, kv) and ln1 (HgActs.act16; for q, k and v where the backend's attention takes
    // them, Backend.attention_takes16): the forward makes their float32 values in the backward's scratch
    uint16_t *qkv16, *q16, *kv16, *ln16;
    // the input x as bfloat16 (act16; not a block's first layer): only in_proj's products read x again, so the
    // layer before keeps no float32 out (its out NULL: block_forward hands it a ping-pong buffer, g_blk)
    uint16_t *x16;
    uint8_t *amask, *m_proj, *m_h2;
    int *n_keys;
    SeedRef seed;
} LayerA;

typedef struct BlockA {
    int n, T;
    LayerA *layers;
    const float *in;
    float *out, *mean, *rstd;
} BlockA;

typedef struct LevelA {
    int T, Tp, Ts;
    BlockA blk, pre, post, rpre, rpost;
    struct LevelA *valley;
    const float *in;
    float *hpad, *hs, *z, *r_pre, *z2, *v, *up, *u, *r_post, *u2, *uc, *out;
    // gradients; those whose lives in level_backward do not overlap share a buffer (plan_level)
    float *g_uc, *g_u2, *g_u, *g_v, *g_z2, *g_z, *g_hs, *g_hpad, *g_h;
    int hid_z2, hid_up; // indices into the model's hidden list, -1 if none
} LevelA;

struct HgActs {
    ModelP p;
    LevelA top;
    float *embd, *g_enc, *g_embd, *g_emb; // g_emb: g_enc's buffer (free once the levels' backward is done)
    uint8_t *m_emb;
    // layer-backward scratch, sized for the largest layer. g_qkv also holds a cross-attention layer's q and kv
    // gradients (grad_kv); g_res only for a backend on the host (the CPU's LayerNorm scratch; NULL otherwise)
    float *g_res, *g_ln1, *g_h2, *g_r1d, *g_h1, *g_proj, *g_att, *g_qkv;
    float *g_blk[2]; // block_backward's ping-pong, one block at a time, sized for the largest
    float *r1d; // with recompute_ffn: every layer's drop(relu(linear1)), one layer at a time
    uint16_t *r16; // the same as bfloat16 (act16)
    // the backend keeps the feed-forward's hidden activation r = drop(relu(linear1(x))) as bfloat16 (backend.h
    // act16, asked once by hg_alloc): LayerA.r16 (or r16 above) in place of r1d, half the bytes; and LayerA's ln16,
    // qkv16, q16 and kv16
    int act16;
    float *att_scratch; // the CPU attention's scratch (a GPU keeps its own workspace)
    size_t att_floats;
    int32_t *tok_dev;   // hg_forward's copy of host tokens, in the backend's memory when that is not the host's
    int32_t *score_tgt, *score_best; // hg_score's targets and argmaxes there (B * T each; NULL on the host)
    double *score_nll;               // and its row losses
    const int32_t *tok; // the last forward's tokens, in the backend's memory (for the backward)
    float p_used;  // the dropout rate of the last forward (0 when not training)
    SeedRef seed;  // the next dropout site's seed, advanced in forward order
    char *block;   // every buffer above lives here
    size_t block_bytes;
};

// ---- a two-pass arena: the first pass counts, the second hands out ------------------------------

typedef struct Arena {
    char *base;
    size_t used;
} Arena;

static void *arena_take(Arena *a, size_t bytes)
{
    // every buffer 256-byte aligned: cuBLAS picks its kernel by its operands' alignment (up to 256 bytes), so a
    // buffer's place in the plan (which --recompute-ffn changes) must not change a product's bytes
    bytes = (bytes + 255) & ~(size_t)255;
    void *p = a->base ? a->base + a->used : NULL;
    a->used += bytes;
    return p;
}
#define TAKE_F(a, n) ((float *)arena_take((a), (size_t)(n) * sizeof(float)))
#define TAKE_U8(a, n) ((uint8_t *)arena_take((a), (size_t)(n)))
#define TAKE_U16(a, n) ((uint16_t *)arena_take((a), (size_t)(n) * sizeof(uint16_t)))
#define TAKE_I(a, n) ((int *)arena_take((a), (size_t)(n) * sizeof(int)))

// ---- building the parameter table --------------------------------------------------------------

static size_t add_param(HgModel *m, int ndim, int d0, int d1, const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static size_t add_param(HgModel *m, int ndim, int d0, int d1, const char *fmt, ...)
{
    m->params = xrealloc(m->params, (size_t)(m->n_params + 1) * sizeof *m->params);
    HgParam *p = &m->params[m->n_params++];
    memset(p, 0, sizeof *p);
    va_list ap;
    va_start(ap, fmt);
    p->name = xvasprintf(fmt, ap);
    va_end(ap);
    p->ndim = ndim;
    p->shape[0] = d0;
    p->shape[1] = ndim > 1 ? d1 : 1;
    p->offset = m->n_floats;
    p->size = (size_t)d0 * (ndim > 1 ? (size_t)d1 : 1);
    m->n_floats += p->size;
    return p->offset;
}

static void build_layer(HgModel *m, LayerP *l, const char *pre, int rpr)
{
    const HgConfig *c = &m->cfg;
    int C = c->C;
    l->in_w = add_param(m, 2, 3 * C, C, "%s.self_attn.in_proj_weight", pre);
    l->in_b = add_param(m, 1, 3 * C, 0, "%s.self_attn.in_proj_bias", pre);
    l->out_w = add_param(m, 2, C, C, "%s.self_attn.out_proj.weight", pre);
    l->out_b = add_param(m, 1, C, 0, "%s.self_attn.out_proj.bias", pre);
    l->has_er = rpr;
    if (rpr) l->er = add_param(m, 2, c->L, C / c->NH, "%s.self_attn.Er", pre);
    l->l1_w = add_param(m, 2, c->F, C, "%s.linear1.weight", pre);
    l->l1_b = add_param(m, 1, c->F, 0, "%s.linear1.bias", pre);
    l->l2_w = add_param(m, 2, C, c->F, "%s.linear2.weight", pre);
    l->l2_b = add_param(m, 1, C, 0, "%s.linear2.bias", pre);
    l->n1_w = add_param(m, 1, C, 0, "%s.norm1.weight", pre);
    l->n1_b = add_param(m, 1, C, 0, "%s.norm1.bias", pre);
    l->n2_w = add_param(m, 1, C, 0, "%s.norm2.weight", pre);
    l->n2_b = add_param(m, 1, C, 0, "%s.norm2.bias", pre);
}

static void build_block(HgModel *m, BlockP *b, const char *pre, int n, int rpr)
{
    b->n = n;
    b->layers = xcalloc((size_t)(n ? n : 1), sizeof *b->layers);
    for (int i = 0; i < n; i++) {
        char *name = xasprintf("%s.layers.%d", pre, i);
        build_layer(m, &b->layers[i], name, rpr);
        free(name);
    }
    b->norm_w = add_param(m, 1, m->cfg.C, 0, "%s.norm.weight", pre);
    b->norm_b = add_param(m, 1, m->cfg.C, 0, "%s.norm.bias", pre);
}

static int check_level(const HgLevel *lv, char *err)
{
    for (; lv; lv = lv->valley) {
        if (!lv->valley && lv->n_layers < 0) return err_set(err, "negative depth");
        if (lv->valley && lv->s < 1) return err_set(err, "shorten factor %d: must be at least 1", lv->s);
        if (lv->valley && (lv->pre < 0 || lv->post < 0)) return err_set(err, "negative depth");
    }
    return 0;
}

static void build_level(HgModel *m, LevelP *lp, const HgLevel *lv, const char *pre)
{
    const HgConfig *c = &m->cfg;
    if (!lv->valley) {
        lp->plain = 1;
        build_block(m, &lp->blk, pre, lv->n_layers, 1);
        return;
    }
    lp->s = lv->s;
    char *name = xasprintf("%s.pre_transformer", pre);
    build_block(m, &lp->pre, name, lv->pre, 1);
    free(name), name = xasprintf("%s.valley_transformer", pre);
    lp->valley = xcalloc(1, sizeof *lp->valley);
    build_level(m, lp->valley, lv->valley, name);
    free(name), name = xasprintf("%s.post_transformer", pre);
    build_block(m, &lp->post, name, lv->post, 1);
    free(name), name = NULL;
    if (c->linear) {
        lp->down_w = add_param(m, 2, c->C, lv->s * c->C, "%s.downsample.proj.weight", pre);
        lp->down_b = add_param(m, 1, c->C, 0, "%s.downsample.proj.bias", pre);
        lp->up_w = add_param(m, 2, lv->s * c->C, c->C, "%s.upsample.proj.weight", pre);
        lp->up_b = add_param(m, 1, lv->s * c->C, 0, "%s.upsample.proj.bias", pre);
    }
    if (c->attn_resampling) {
        name = xasprintf("%s.attn_resampling_pre_valley", pre);
        build_block(m, &lp->rpre, name, 1, 0);
        free(name), name = xasprintf("%s.attn_resampling_post_valley", pre);
        build_block(m, &lp->rpost, name, 1, 0);
        free(name);
    }
}

static HgLevel *copy_tree(const HgLevel *lv)
{
    HgLevel *c = xmalloc(sizeof *c);
    *c = *lv;
    if (lv->valley) c->valley = copy_tree(lv->valley);
    return c;
}

static int check_config(const HgConfig *c, char *err)
{
    if (c->C < 1 || c->NH < 1 || c->C % c->NH) return err_set(err, "d_model %d is not a multiple of num_heads %d", c->C, c->NH);
    if (c->V < 2 || c->F < 1 || c->L < 1) return err_set(err, "vocabulary, dim_feedforward and input_length must be positive");
    return check_level(&c->top, err);
}

static const HgParam *sort_params; // qsort has no context argument; hg_build is not reentrant anyway
static int name_cmp(const void *a, const void *b)
{
    return strcmp(sort_params[*(const int *)a].name, sort_params[*(const int *)b].name);
}

int hg_build(HgModel *m, const HgConfig *cfg, char *err)
{
    memset(m, 0, sizeof *m);
    m->be = &backend_cpu; // from the start: hg_free of a model whose build failed frees through it
    m->cfg = *cfg;
    if (cfg->top.valley) m->cfg.top.valley = copy_tree(cfg->top.valley);
    const HgConfig *c = &m->cfg;
    if (check_config(c, err) < 0) return -1;
    m->acts = xcalloc(1, sizeof *m->acts);
    ModelP *p = &m->acts->p;
    p->wte = add_param(m, 2, c->V, c->C, "embedding.weight");
    build_level(m, &p->top, &c->top, "transformer.encoder");
    p->wout_w = add_param(m, 2, c->V, c->C, "Wout.weight");
    p->wout_b = add_param(m, 1, c->V, 0, "Wout.bias");
    // names are the checkpoint's keys: two parameters of one name would make a file nothing can load
    m->by_name = xmalloc((size_t)m->n_params * sizeof *m->by_name);
    for (int i = 0; i < m->n_params; i++) m->by_name[i] = i;
    sort_params = m->params;
    qsort(m->by_name, (size_t)m->n_params, sizeof *m->by_name, name_cmp);
    for (int i = 1; i < m->n_params; i++)
        if (strcmp(m->params[m->by_name[i - 1]].name, m->params[m->by_name[i]].name) == 0)
            return err_set(err, "two parameters named '%.200s'", m->params[m->by_name[i]].name);
    int levels = 0;
    for (const HgLevel *lv = &c->top; lv->valley; lv = lv->valley) levels++;
    m->max_hidden = 2 * levels;
    m->hidden = xcalloc((size_t)(m->max_hidden ? m->max_hidden : 1), sizeof *m->hidden);
    m->hidden_T = xcalloc((size_t)(m->max_hidden ? m->max_hidden : 1), sizeof *m->hidden_T);
    m->w = xcalloc(m->n_floats, sizeof *m->w);
    m->dw = xcalloc(m->n_floats, sizeof *m->dw);
    m->pe = xmalloc((size_t)c->L * c->C * sizeof *m->pe);
    positional_table(m->pe, c->L, c->C);
    m->be = &backend_cpu, m->bw = m->w, m->bdw = m->dw, m->bpe = m->pe;
    return 0;
}

int hg_param_index(const HgModel *m, const char *name)
{
    int lo = 0, hi = m->n_params - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2, c = strcmp(m->params[m->by_name[mid]].name, name);
        if (c == 0) return m->by_name[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

static uint64_t rng_next(uint64_t *s)
{
    *s += 0x9e3779b97f4a7c15ULL;
    uint64_t x = *s;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}
static double rng_uniform(uint64_t *s) { return (double)(rng_next(s) >> 11) * 0x1p-53; }
static double rng_normal(uint64_t *s)
{
    double u = rng_uniform(s), v = rng_uniform(s);
    return sqrt(-2.0 * log(u + 1e-300)) * cos(2.0 * M_PI * v);
}

void hg_init_weights(HgModel *m, uint64_t seed)
{
    uint64_t s = seed;
    for (int i = 0; i < m->n_params; i++) {
        const HgParam *p = &m->params[i];
        float *w = m->w + p->offset;
        const char *n = p->name;
        size_t len = strlen(n);
        int is_norm = strstr(n, "norm") && !strstr(n, "proj");
        if (strcmp(n, "embedding.weight") == 0) {
            for (size_t k = 0; k < p->size; k++) w[k] = (float)rng_normal(&s);
            memset(w, 0, (size_t)p->shape[1] * sizeof *w); // PAD row
        } else if (len > 3 && strcmp(n + len - 3, ".Er") == 0) {
            for (size_t k = 0; k < p->size; k++) w[k] = (float)(0.02 * rng_normal(&s));
        } else if (is_norm) {
            float v = strcmp(n + len - 7, ".weight") == 0 ? 1.0f : 0.0f;
            for (size_t k = 0; k < p->size; k++) w[k] = v;
        } else if (p->ndim == 2) { // a linear weight (out, in): uniform +-1/sqrt(in)
            double a = 1.0 / sqrt((double)p->shape[1]);
            for (size_t k = 0; k < p->size; k++) w[k] = (float)(a * (2 * rng_uniform(&s) - 1));
        } else { // a bias: zero
            memset(w, 0, p->size * sizeof *w);
        }
    }
}

// ---- the activation plan ----------------------------------------------------------------------

typedef struct Plan {
    const HgConfig *c;
    const Backend *be;
    HgActs *acts;
    float **logits;
    Arena a;  // a.base NULL: the counting pass, which allocates nothing
    int B;
    // the layer-backward scratch must hold the largest layer: rows of any layer, the floats of g_qkv (a
    // self-attention layer's q, k, v; a cross-attention layer's q and, from grad_kv, kv), a block's (B,T,C)
    size_t max_n, max_qkv, max_blk, max_att;
} Plan;

// where a cross-attention layer's kv gradient starts in g_qkv, after its q's NC floats: the next 64-float (256-byte)
// boundary, so the products' operands are aligned as arena_take's buffers
static size_t grad_kv(size_t NC) { return (NC + 63) & ~(size_t)63; }

enum { KEYS_CAUSAL, KEYS_PRE, KEYS_POST };

// A layer's attention shape: sizes, and q, k, v's leading dimensions in qkv (self-attention) or in q and kv
// (cross-attention); layer_dims adds a run's keys, dropout and seed
static AttnDims attn_shape(const HgConfig *c, int B, int Tq, int Tk, int cross)
{
    int C = c->C;
    return (AttnDims){.B = B, .Tq = Tq, .Tk = Tk, .C = C, .NH = c->NH, .L = c->L, .ldq = cross ? C : 3 * C,
                      .ldk = cross ? 2 * C : 3 * C, .ldv = cross ? 2 * C : 3 * C};
}

// first, last: the layer's place in its block (with act16 the first keeps no x16, the last keeps its out)
static void plan_layer(Plan *pl, LayerA *A, int Tq, int Tk, int cross, int rule, int s, int first, int last)
{
    const HgConfig *c = pl->c;
    Arena *a = &pl->a;
    size_t N = (size_t)pl->B * Tq, Nk = (size_t)pl->B * Tk, C = (size_t)c->C, F = (size_t)c->F;
    AttnDims ad = attn_shape(c, pl->B, Tq, Tk, cross);
    size_t P, PM; // what the backend's attention saves
    pl->be->attention_saves(&ad, &P, &PM);
    *A = (LayerA){0}; // a plan made again (another batch, another precision) leaves no pointer of the last one
    A->Tq = Tq, A->Tk = Tk, A->cross = cross, A->causal = rule == KEYS_CAUSAL && Tq == Tk;
    int act16 = pl->acts->act16;
    int qkv16 = act16 && pl->be->attention_takes16 && pl->be->attention_takes16(&ad);
    if (cross && qkv16) {
        A->q16 = TAKE_U16(a, N * C);
        A->kv16 = TAKE_U16(a, Nk * 2 * C);
    } else if (cross) {
        A->q = TAKE_F(a, N * C);
        A->kv = TAKE_F(a, Nk * 2 * C);
    } else if (qkv16) {
        A->qkv16 = TAKE_U16(a, N * 3 * C);
    } else {
        A->qkv = TAKE_F(a, N * 3 * C);
    }
    A->att = TAKE_F(a, N * C), A->probs = TAKE_F(a, P), A->amask = PM ? TAKE_U8(a, PM) : NULL;
    // what the backward reads; the forward's transients (the two sublayers' outputs before their residual
    // LayerNorm, linear1's output before ReLU) live in the layer-backward scratch (layer_forward)
    A->res1 = TAKE_F(a, N * C);
    A->ln1 = act16 ? NULL : TAKE_F(a, N * C), A->ln16 = act16 ? TAKE_U16(a, N * C) : NULL;
    A->mean1 = TAKE_F(a, N), A->rstd1 = TAKE_F(a, N);
    // NULL: recomputed into HgActs.r1d (r16)
    A->r1d = c->recompute_ffn || pl->acts->act16 ? NULL : TAKE_F(a, N * F);
    A->r16 = c->recompute_ffn || !pl->acts->act16 ? NULL : TAKE_U16(a, N * F);
    int x16 = act16 && !cross; // self-attention layers (a cross-attention block has one layer)
    A->x16 = x16 && !first ? TAKE_U16(a, N * C) : NULL;
    A->res2 = TAKE_F(a, N * C), A->out = x16 && !last ? NULL : TAKE_F(a, N * C);
    A->mean2 = TAKE_F(a, N), A->rstd2 = TAKE_F(a, N);
    // the residual LayerNorms' dropout masks: kept by a backend on the host (cheaper than drawing the bits again);
    // a GPU's backward draws them again from the seed (ops.h: the same bytes), N * C bytes each less
    A->m_proj = pl->be->on_host ? TAKE_U8(a, N * C) : NULL, A->m_h2 = pl->be->on_host ? TAKE_U8(a, N * C) : NULL;
    A->n_keys = TAKE_I(a, Tq);
    if (A->n_keys) { // made on the host, then handed to the backend
        int *keys = pl->be->on_host ? A->n_keys : xmalloc((size_t)Tq * sizeof *keys);
        for (int i = 0; i < Tq; i++)
            keys[i] = rule == KEYS_CAUSAL ? i + 1 : rule == KEYS_PRE ? (s * i + s < Tk ? s * i + s : Tk) : i / s + 1;
        if (!pl->be->on_host) pl->be->upload(A->n_keys, keys, (size_t)Tq * sizeof *keys), free(keys);
    }
    size_t qkv = cross ? grad_kv(N * C) + Nk * 2 * C : N * 3 * C;
    if (N > pl->max_n) pl->max_n = N;
    if (qkv > pl->max_qkv) pl->max_qkv = qkv;
    size_t att = attention_scratch_floats(&ad); // every thread busy, dEr summed in the same order for any count
    if (att > pl->max_att) pl->max_att = att;
}

// n layers of one shape: the counting pass sizes the first, the last and one between, and multiplies that one (a
// block of a million layers costs nothing to size), the second pass hands every layer its buffers.
static void plan_block(Plan *pl, BlockA *A, int n, int Tq, int Tk, int cross, int rule, int s)
{
    size_t N = (size_t)pl->B * Tq * pl->c->C;
    A->n = n, A->T = Tq;
    if (!pl->a.base) {
        LayerA one = {0};
        if (n >= 1) plan_layer(pl, &one, Tq, Tk, cross, rule, s, 1, n == 1);
        if (n >= 2) plan_layer(pl, &one, Tq, Tk, cross, rule, s, 0, 1);
        size_t before = pl->a.used;
        if (n >= 3) plan_layer(pl, &one, Tq, Tk, cross, rule, s, 0, 0);
        pl->a.used = before + (pl->a.used - before) * (size_t)(n >= 3 ? n - 2 : 0);
    } else {
        if (!A->layers) A->layers = xcalloc((size_t)(n ? n : 1), sizeof *A->layers);
        for (int i = 0; i < n; i++) plan_layer(pl, &A->layers[i], Tq, Tk, cross, rule, s, i == 0, i == n - 1);
    }
    A->out = TAKE_F(&pl->a, N), A->mean = TAKE_F(&pl->a, (size_t)pl->B * Tq), A->rstd = TAKE_F(&pl->a, (size_t)pl->B * Tq);
    if (N > pl->max_blk) pl->max_blk = N;
}

static void plan_level(Plan *pl, LevelA *A, const HgLevel *lv, int T)
{
    Arena *a = &pl->a;
    size_t BC = (size_t)pl->B * pl->c->C;
    A->T = T;
    if (!lv->valley) {
        plan_block(pl, &A->blk, lv->n_layers, T, T, 0, KEYS_CAUSAL, 1);
        return;
    }
    int s = lv->s, ar = pl->c->attn_resampling;
    A->Tp = (T + s - 1) / s * s;
    A->Ts = A->Tp / s;
    // level_backward's gradients in five buffers: g_uc dies in crop_backward, before g_u's zeroing; g_u in up's
    // backward, before the valley's; g_u2 in rpost's, before the valley's; g_v once the valley's backward has read
    // it (first); so g_uc, g_u, g_h share one buffer, g_u2 and g_hs another, g_v and g_z a third (Tp >= T)
    float *g1 = TAKE_F(a, BC * A->Tp), *g2 = TAKE_F(a, BC * A->Tp);
    A->g_uc = A->g_u = A->g_h = g1, A->g_u2 = A->g_hs = g2;
    A->g_v = A->g_z = TAKE_F(a, BC * A->Ts), A->g_z2 = TAKE_F(a, BC * A->Ts), A->g_hpad = TAKE_F(a, BC * A->Tp);
    // The forward's values no backward reads live in g1 and g2 (free until level_backward): hpad until
    // shift_forward has read it (level_forward pads h into u again for the add), then u unless resampling attention
    // reads it (the post block's input is uc), and up unless it is a hidden state (only the add reads it)
    A->hpad = g1;
    plan_block(pl, &A->pre, lv->pre, T, T, 0, KEYS_CAUSAL, 1);
    A->hs = TAKE_F(a, BC * A->Tp), A->z = TAKE_F(a, BC * A->Ts);
    if (ar) {
        plan_block(pl, &A->rpre, 1, A->Ts, A->Tp, 1, KEYS_PRE, s);
        A->z2 = TAKE_F(a, BC * A->Ts);
    }
    LevelA counting = {0}, *V = pl->a.base ? A->valley : &counting;
    if (!V) V = A->valley = xcalloc(1, sizeof *A->valley);
    plan_level(pl, V, lv->valley, A->Ts);
    A->up = pl->c->save_updown_hidden ? TAKE_F(a, BC * A->Tp) : g2;
    A->u = ar ? TAKE_F(a, BC * A->Tp) : g1;
    if (ar) {
        plan_block(pl, &A->rpost, 1, A->Tp, A->Ts, 1, KEYS_POST, s);
        A->u2 = TAKE_F(a, BC * A->Tp);
    }
    A->uc = TAKE_F(a, BC * T);
    plan_block(pl, &A->post, lv->post, T, T, 0, KEYS_CAUSAL, 1);
}

static void plan_model(Plan *pl, int T)
{
    HgActs *A = pl->acts;
    const HgConfig *c = pl->c;
    size_t N = (size_t)pl->B * T, C = (size_t)c->C, F = (size_t)c->F;
    A->embd = TAKE_F(&pl->a, N * C), A->m_emb = TAKE_U8(&pl->a, N * C); // the embedding itself: in g_enc (hg_forward)
    A->g_enc = TAKE_F(&pl->a, N * C), A->g_embd = TAKE_F(&pl->a, N * C), A->g_emb = A->g_enc;
    *pl->logits = TAKE_F(&pl->a, N * c->V);
    plan_level(pl, &A->top, &c->top, T);
    size_t n = pl->max_n;
    // g_res: residual_layernorm_backward's scratch (the CPU's LayerNorm input gradient), one call at a time
    A->g_res = pl->be->on_host ? TAKE_F(&pl->a, n * C) : NULL;
    A->g_ln1 = TAKE_F(&pl->a, n * C), A->g_h2 = TAKE_F(&pl->a, n * C);
    A->g_proj = TAKE_F(&pl->a, n * C), A->g_att = TAKE_F(&pl->a, n * C);
    A->g_r1d = TAKE_F(&pl->a, n * F), A->g_h1 = TAKE_F(&pl->a, n * F);
    A->r1d = c->recompute_ffn && !A->act16 ? TAKE_F(&pl->a, n * F) : NULL;
    A->r16 = c->recompute_ffn && A->act16 ? TAKE_U16(&pl->a, n * F) : NULL;
    A->g_qkv = TAKE_F(&pl->a, pl->max_qkv);
    A->g_blk[0] = TAKE_F(&pl->a, pl->max_blk), A->g_blk[1] = TAKE_F(&pl->a, pl->max_blk);
    if (pl->be->on_host) A->att_scratch = TAKE_F(&pl->a, pl->max_att), A->att_floats = pl->max_att;
    else {
        A->tok_dev = TAKE_I(&pl->a, N);
        A->score_tgt = TAKE_I(&pl->a, N), A->score_best = TAKE_I(&pl->a, N);
        A->score_nll = (double *)arena_take(&pl->a, N * sizeof(double));
    }
}

// The activation block: zeroed, 2 MiB aligned and, where the kernel offers it, in transparent huge pages (the
// step streams through hundreds of MB of it; 4 KiB pages cost TLB misses and ~300k page faults to fill).
static size_t block_round(size_t bytes)
{
    size_t align = (size_t)2 << 20;
    return (bytes + align - 1) & ~(align - 1);
}

static void *block_alloc(size_t bytes)
{
    void *p = NULL;
    bytes = block_round(bytes);
    if (posix_memalign(&p, (size_t)2 << 20, bytes) != 0) return xcalloc(1, bytes);
#ifdef MADV_HUGEPAGE
    madvise(p, bytes, MADV_HUGEPAGE); // advice only: on failure the pages are just small
#endif
    memset(p, 0, bytes);
    return p;
}

// Floats of one layer's parameters (build_layer's table), and of a level's tree (build_level's).
static double layer_floats(const HgConfig *c, int rpr)
{
    double C = c->C, F = c->F;
    return 4 * C * C + 4 * C + (rpr ? (double)c->L * (C / c->NH) : 0) + 2 * C * F + F + C + 4 * C;
}

// Parameters, tensors and layers of a level's tree, as build_level lays them out.
typedef struct Count {
    double floats, tensors, layers;
} Count;

static void count_block(const HgConfig *c, Count *n, double layers, int rpr)
{
    n->floats += layers * layer_floats(c, rpr) + 2.0 * c->C, n->tensors += layers * (rpr ? 13 : 12) + 2;
    n->layers += layers;
}

static void count_level(const HgConfig *c, const HgLevel *lv, Count *n)
{
    if (!lv->valley) {
        count_block(c, n, lv->n_layers, 1);
        return;
    }
    count_block(c, n, lv->pre, 1);
    count_level(c, lv->valley, n);
    count_block(c, n, lv->post, 1);
    if (c->linear) n->floats += 2.0 * lv->s * c->C * c->C + c->C + (double)lv->s * c->C, n->tensors += 4;
    if (c->attn_resampling) count_block(c, n, 1, 0), count_block(c, n, 1, 0);
}

int hg_plan(const HgConfig *cfg, int B, int T, HgPlan *plan, char *err)
{
    memset(plan, 0, sizeof *plan);
    if (check_config(cfg, err) < 0) return -1;
    if (B > 0 && (T < 1 || T > cfg->L)) return err_set(err, "length %d outside the window 1..%d", T, cfg->L);
    Count n = {.floats = 2.0 * cfg->V * cfg->C + cfg->V, .tensors = 3};
    count_level(cfg, &cfg->top, &n);
    int levels = 0;
    for (const HgLevel *lv = &cfg->top; lv->valley; lv = lv->valley) levels++;
    // the table: an entry and its name (under ~40 bytes per nesting level and a layer number) per tensor, the
    // per-layer offsets and activation bookkeeping, the positional table
    double table = n.tensors * ((double)sizeof(HgParam) + 64 + 40.0 * levels) +
                   n.layers * (double)(sizeof(LayerP) + sizeof(LayerA)) + (double)cfg->L * cfg->C * sizeof(float);
    if (!(n.floats < 0x1p60 && table < 0x1p60)) return err_set(err, "%.3g parameters: too many to address", n.floats);
    plan->n_floats = (size_t)n.floats, plan->n_tensors = (size_t)n.tensors, plan->table_bytes = (size_t)table;
    if (B <= 0) return 0;
    // the activation plan's counting pass on scratch bookkeeping: it allocates nothing
    HgActs acts = {0};
    float *logits = NULL;
    Plan pl = {.c = cfg, .be = &backend_cpu, .acts = &acts, .logits = &logits, .B = B};
    plan_model(&pl, T);
    plan->act_bytes = block_round(pl.a.used);
    return 0;
}

void hg_alloc(HgModel *m, int B, int T)
{
    const Backend *be = m->be;
    Plan pl = {.c = &m->cfg, .be = be, .acts = m->acts, .logits = &m->logits, .B = B};
    m->B = B, m->T = T; // the batch every buffer below is planned for
    m->acts->act16 = be->act16 && be->act16(); // both passes plan the same buffers
    plan_model(&pl, T); // count
    if (be->on_host) free(m->acts->block);
    else be->free(m->acts->block);
    m->acts->block = be->on_host ? block_alloc(pl.a.used) : be->alloc(pl.a.used);
    m->acts->block_bytes = pl.a.used;
    free(m->logits_host), m->logits_host = NULL;
    pl = (Plan){.c = &m->cfg, .be = be, .acts = m->acts, .logits = &m->logits, .B = B, .a = {m->acts->block, 0}};
    plan_model(&pl, T); // hand out
}

int hg_set_backend(HgModel *m, const Backend *be, char *err)
{
    if (be == m->be) return 0;
    if (m->be != &backend_cpu || !be || be->on_host || (m->acts && m->acts->block))
        return err_set(err, "hg_set_backend: only a CPU model without activations moves to another backend");
    size_t n = m->n_floats * sizeof(float), npe = (size_t)m->cfg.L * m->cfg.C * sizeof(float);
    m->be = be;
    m->bw = be->alloc(n), m->bdw = be->alloc(n), m->bpe = be->alloc(npe);
    be->upload(m->bw, m->w, n), be->upload(m->bpe, m->pe, npe);
    return be->sync(err);
}

void hg_weights_to_host(HgModel *m)
{
    if (!m->be->on_host) m->be->download(m->w, m->bw, m->n_floats * sizeof(float));
}

void hg_weights_to_backend(HgModel *m)
{
    if (!m->be->on_host) m->be->upload(m->bw, m->w, m->n_floats * sizeof(float));
}

void hg_grads_to_host(HgModel *m)
{
    if (!m->be->on_host) m->be->download(m->dw, m->bdw, m->n_floats * sizeof(float));
}

const float *hg_logits_host(HgModel *m)
{
    if (m->be->on_host) return m->logits;
    size_t n = (size_t)m->B * m->T * m->cfg.V;
    if (!m->logits_host) m->logits_host = xmalloc(n * sizeof(float));
    m->be->download(m->logits_host, m->logits, n * sizeof(float));
    return m->logits_host;
}

void hg_score(HgModel *m, const int32_t *tgt, double *nll, int32_t *best)
{
    const Backend *be = m->be;
    int N = m->B * m->T;
    if (be->on_host) {
        be->score_rows(nll, best, m->logits, tgt, N, m->cfg.V);
        return;
    }
    HgActs *A = m->acts;
    be->upload(A->score_tgt, tgt, (size_t)N * sizeof *tgt);
    be->score_rows(A->score_nll, A->score_best, m->logits, A->score_tgt, N, m->cfg.V);
    be->download(nll, A->score_nll, (size_t)N * sizeof *nll);
    be->download(best, A->score_best, (size_t)N * sizeof *best);
}

size_t hg_act_bytes(const HgModel *m) { return block_round(m->acts->block_bytes); }

// ---- forward ----------------------------------------------------------------------------------

// The next dropout site's seed: one LCG step of the last, kept as a (mul, add) pair on the forward's SeedRef, so a
// seed the backend reads from its memory (a GPU graph's) gives the bytes of one passed by value
static SeedRef next_seed(HgActs *A)
{
    const uint64_t mul = 6364136223846793005ULL, add = 1442695040888963407ULL;
    A->seed.mul *= mul, A->seed.add = A->seed.add * mul + add;
    return A->seed;
}
static SeedRef seed_plus(SeedRef s, uint64_t k) { return s.add += k, s; }

static AttnDims layer_dims(const HgModel *m, const LayerA *A)
{
    AttnDims d = attn_shape(&m->cfg, m->B, A->Tq, A->Tk, A->cross);
    d.n_keys = A->n_keys, d.causal = A->causal, d.dropout = m->acts->p_used, d.seed = A->seed;
    d.scratch_floats = m->acts->att_floats;
    return d;
}

// The feed-forward's hidden activation r = drop(relu(linear1(ln1))) into r1d (float32) or, with act16, r16
// (bfloat16: the rounding r1d's products would make); linear1's output in h1 (N x F scratch). The forward's ops, and
// recompute_ffn's again in the backward (the same seed, so the same bytes). Returns the one it wrote.
static const void *ffn_hidden(HgModel *m, const LayerA *A, const LayerP *P, float *r1d, uint16_t *r16, float *h1)
{
    const float *W = m->bw;
    int C = m->cfg.C, F = m->cfg.F, N = m->B * A->Tq;
    if (A->ln16) m->be->linear_forward16(h1, A->ln16, W + P->l1_w, W + P->l1_b, N, C, F);
    else m->be->linear_forward(h1, A->ln1, W + P->l1_w, W + P->l1_b, N, C, F);
    if (r16) m->be->relu_dropout_forward16(r16, h1, m->acts->p_used, seed_plus(A->seed, 2), (size_t)N * F);
    else m->be->relu_dropout_forward(r1d, NULL, h1, m->acts->p_used, seed_plus(A->seed, 2), (size_t)N * F);
    return r16 ? (const void *)r16 : (const void *)r1d;
}

// out = LayerNorm(x + drop(y)) with the weights at w, b, and out16 = out as bfloat16 unless NULL (act16)
static void residual_ln(HgModel *m, float *out, uint16_t *out16, float *mean, float *rstd, float *res, uint8_t *mask,
                        const float *x, const float *y, SeedRef seed, size_t w, size_t b, int N)
{
    const float *W = m->bw;
    float p = m->acts->p_used;
    int C = m->cfg.C;
    if (out16)
        m->be->residual_layernorm_forward16(out, out16, mean, rstd, res, mask, x, y, p, seed, W + w, W + b, N, C);
    else
        m->be->residual_layernorm_forward(out, mean, rstd, res, mask, x, y, p, seed, W + w, W + b, N, C);
}

// model.md §2: a = MHA(x [, ctx]); x = LN1(x + drop(a)); x = LN2(x + drop(linear2(drop(relu(linear1(x))))))
// The backward needs neither out_proj's nor linear2's output (the residual LayerNorms keep their sums), nor
// linear1's (the ReLU's backward reads its output), so those three live in the backward's scratch, which is free
// during a forward: g_proj, g_h1, g_h2 (a layer's activations shrink by F + 2C floats and F mask bytes per row).
// out16 (act16: the next layer's x16, else NULL): out as bfloat16 too, from LayerNorm 2's pass
static void layer_forward(HgModel *m, LayerA *A, const LayerP *P, const float *x, const float *ctx, float *out,
                          uint16_t *out16)
{
    const float *W = m->bw;
    HgActs *H = m->acts;
    int C = m->cfg.C, F = m->cfg.F, N = m->B * A->Tq, Nk = m->B * A->Tk;
    A->x = x, A->ctx = ctx ? ctx : x;
    A->seed = next_seed(H);
    // q, k, v: float32 in the layer's buffers or, kept as bfloat16 (act16), in the backward's scratch until rounded
    const float *q, *k, *v;
    const uint16_t *q16 = NULL, *k16 = NULL, *v16 = NULL;
    if (A->cross) {
        float *qf = A->q16 ? H->g_qkv : A->q, *kvf = A->kv16 ? H->g_qkv + grad_kv((size_t)N * C) : A->kv;
        m->be->linear_forward(qf, x, W + P->in_w, W + P->in_b, N, C, C);
        m->be->linear_forward(kvf, A->ctx, W + P->in_w + (size_t)C * C, W + P->in_b + C, Nk, C, 2 * C);
        q = qf, k = kvf, v = kvf + C;
        if (A->q16) {
            m->be->to_bf16(A->q16, qf, (size_t)N * C), m->be->to_bf16(A->kv16, kvf, (size_t)Nk * 2 * C);
            q16 = A->q16, k16 = A->kv16, v16 = A->kv16 + C;
        }
    } else {
        float *qkv = A->qkv16 ? H->g_qkv : A->qkv;
        if (A->x16) { // x as bfloat16 (the layer before wrote it) for the backward, and for in_proj now (the
                      // product's rounding: the same bytes)
            m->be->linear_forward16(qkv, A->x16, W + P->in_w, W + P->in_b, N, C, 3 * C);
        } else {
            m->be->linear_forward(qkv, x, W + P->in_w, W + P->in_b, N, C, 3 * C);
        }
        q = qkv, k = qkv + C, v = qkv + 2 * C;
        if (A->qkv16) {
            m->be->to_bf16(A->qkv16, qkv, (size_t)N * 3 * C);
            q16 = A->qkv16, k16 = A->qkv16 + C, v16 = A->qkv16 + 2 * C;
        }
    }
    AttnDims d = layer_dims(m, A);
    const float *er = P->has_er ? W + P->er : NULL;
    if (q16) m->be->attention_forward16(A->att, A->probs, q16, k16, v16, er, &d);
    else m->be->attention_forward(A->att, A->probs, A->amask, H->att_scratch, q, k, v, er, &d);
    float *proj = H->g_proj, *h1 = H->g_h1, *h2 = H->g_h2; // transients (above)
    float *ln1 = A->ln16 ? H->g_ln1 : A->ln1; // with ln16, float32 only until the layer's end
    m->be->linear_forward(proj, A->att, W + P->out_w, W + P->out_b, N, C, C);
    residual_ln(m, ln1, A->ln16, A->mean1, A->rstd1, A->res1, A->m_proj, x, proj, seed_plus(A->seed, 1), P->n1_w,
                P->n1_b, N);
    if (H->act16)
        m->be->linear_forward16(h2, ffn_hidden(m, A, P, NULL, A->r16 ? A->r16 : H->r16, h1), W + P->l2_w, W + P->l2_b,
                                N, F, C);
    else
        m->be->linear_forward(h2, ffn_hidden(m, A, P, A->r1d ? A->r1d : H->r1d, NULL, h1), W + P->l2_w, W + P->l2_b, N,
                              F, C);
    residual_ln(m, out, out16, A->mean2, A->rstd2, A->res2, A->m_h2, ln1, h2, seed_plus(A->seed, 3), P->n2_w, P->n2_b,
                N);
}

// model.md §4: N layers, then the block's LayerNorm; ctx (keys and values) only for resampling blocks
static const float *block_forward(HgModel *m, BlockA *A, const BlockP *P, const float *in, const float *ctx)
{
    const float *x = in;
    A->in = in;
    for (int i = 0; i < P->n; i++) { // an out not kept (LayerA.x16) in g_blk, which is free until the backward
        float *out = A->layers[i].out ? A->layers[i].out : m->acts->g_blk[i & 1];
        uint16_t *out16 = i + 1 < P->n ? A->layers[i + 1].x16 : NULL;
        layer_forward(m, &A->layers[i], &P->layers[i], x, ctx, out, out16);
        x = out;
    }
    m->be->layernorm_forward(A->out, A->mean, A->rstd, x, m->bw + P->norm_w, m->bw + P->norm_b, m->B * A->T, m->cfg.C);
    return A->out;
}

static void push_hidden(HgModel *m, const float *h, int T, int *index)
{
    if (m->n_hidden >= m->max_hidden) die("hg: more hidden states than hourglass levels allow"); // a bug, not data
    *index = m->n_hidden;
    m->hidden[m->n_hidden] = h;
    m->hidden_T[m->n_hidden++] = T;
}

// model.md §6
static const float *level_forward(HgModel *m, LevelA *A, const LevelP *P, const float *in)
{
    const HgConfig *c = &m->cfg;
    int B = m->B, C = c->C, s = P->s;
    A->in = in;
    if (P->plain) return A->out = (float *)block_forward(m, &A->blk, &P->blk, in, NULL);
    const float *h = block_forward(m, &A->pre, &P->pre, in, NULL);
    m->be->pad_forward(A->hpad, h, B, A->T, A->Tp, C);
    m->be->shift_forward(A->hs, A->hpad, B, A->Tp, C, s); // along time: hs[t] = h[t-(s-1)]
    if (c->linear) m->be->linear_forward(A->z, A->hs, m->bw + P->down_w, m->bw + P->down_b, B * A->Ts, s * C, C);
    else m->be->meanpool_forward(A->z, A->hs, B, A->Tp, C, s);
    const float *z = A->z;
    if (c->attn_resampling) { // z + resample_pre(z, hs): row i sees hs[0 .. s*i+s-1]
        const float *r = block_forward(m, &A->rpre, &P->rpre, A->z, A->hs);
        m->be->add_forward(A->z2, A->z, r, (size_t)B * A->Ts * C);
        z = A->z2;
    }
    push_hidden(m, z, A->Ts, &A->hid_z2);
    A->v = (float *)level_forward(m, A->valley, P->valley, z);
    if (c->linear) m->be->linear_forward(A->up, A->v, m->bw + P->up_w, m->bw + P->up_b, B * A->Ts, C, s * C);
    else m->be->repeat_forward(A->up, A->v, B, A->Tp, C, s);
    if (c->save_updown_hidden) push_hidden(m, A->up, A->Tp, &A->hid_up);
    else A->hid_up = -1;
    m->be->pad_forward(A->u, h, B, A->T, A->Tp, C); // u = up + hpad (hpad's buffer may be u's: plan_level)
    m->be->add_forward(A->u, A->up, A->u, (size_t)B * A->Tp * C);
    const float *u = A->u;
    if (c->attn_resampling) { // u + resample_post(u, v): position t sees v[0 .. t/s]
        const float *r = block_forward(m, &A->rpost, &P->rpost, A->u, A->v);
        m->be->add_forward(A->u2, A->u, r, (size_t)B * A->Tp * C);
        u = A->u2;
    }
    m->be->crop_forward(A->uc, u, B, A->Tp, A->T, C);
    return A->out = (float *)block_forward(m, &A->post, &P->post, A->uc, NULL);
}

void hg_forward(HgModel *m, const int32_t *tok, int train, uint64_t dropout_seed)
{
    if (!m->be->on_host) m->be->upload(m->acts->tok_dev, tok, (size_t)m->B * m->T * sizeof *tok), tok = m->acts->tok_dev;
    hg_forward_b(m, tok, train, (SeedRef){NULL, 1, dropout_seed});
}

void hg_forward_b(HgModel *m, const int32_t *tok, int train, SeedRef dropout_seed)
{
    HgActs *A = m->acts;
    const HgConfig *c = &m->cfg;
    int N = m->B * m->T;
    A->p_used = train ? c->dropout : 0.0f;
    A->seed = dropout_seed;
    A->tok = tok;
    m->n_hidden = 0;
    // the embedding before dropout is not needed by the backward: it lives in the backward's scratch (g_enc)
    m->be->encoder_forward(A->g_enc, tok, m->bw + A->p.wte, m->bpe, m->B, m->T, c->C);
    m->be->dropout_forward(A->embd, A->m_emb, A->g_enc, A->p_used, next_seed(A), (size_t)N * c->C);
    const float *h = level_forward(m, &A->top, &A->p.top, A->embd);
    m->be->linear_forward(m->logits, h, m->bw + A->p.wout_w, m->bw + A->p.wout_b, N, c->C, c->V);
}

// ---- backward: the forward's ops in reverse -----------------------------------------------------

#define ZERO(p, n) m->be->zero((p), (size_t)(n) * sizeof(float))
// zeros that the next op adds to, which it may write instead (Backend.fresh: it must be the very next op)
#define FRESH(p, n) m->be->fresh((p), (size_t)(n) * sizeof(float))

// write_dx: dx is written (its bytes before are not read), else added to; the same for the functions below
static void layer_backward(HgModel *m, const LayerA *A, const LayerP *P, const float *dout, float *dx, float *dctx,
                           bool write_dx)
{
    const float *W = m->bw;
    float *D = m->bdw;
    HgActs *H = m->acts;
    int C = m->cfg.C, F = m->cfg.F, N = m->B * A->Tq, Nk = m->B * A->Tk;
    size_t NC = (size_t)N * C, NF = (size_t)N * F;
    float p = H->p_used;
    // out = LN2(res2); res2 = ln1 + drop(h2)
    FRESH(H->g_ln1, NC);
    FRESH(H->g_h2, NC);
    m->be->residual_layernorm_backward(H->g_ln1, H->g_h2, D + P->n2_w, D + P->n2_b, H->g_res, dout, A->res2, A->m_h2, p,
                                       seed_plus(A->seed, 3), W + P->n2_w, A->mean2, A->rstd2, N, C);
    // h2 = linear2(drop(relu(linear1(ln1)))); recompute_ffn: the forward's ops again, the same bytes (g_h1 is free
    // until below)
    if (H->act16) {
        const uint16_t *r16 = A->r16 ? A->r16 : ffn_hidden(m, A, P, NULL, H->r16, H->g_h1);
        FRESH(H->g_r1d, NF);
        m->be->linear_backward16(H->g_r1d, D + P->l2_w, D + P->l2_b, H->g_h2, r16, W + P->l2_w, N, F, C);
        uint16_t *g16 = (uint16_t *)H->g_h1; // linear1's output gradient as bfloat16, its bias's sums made with it
        m->be->relu_dropout_backward16(g16, D + P->l1_b, H->g_r1d, r16, p, N, F);
        m->be->linear_backward_g16(H->g_ln1, D + P->l1_w, g16, A->ln1, A->ln16, W + P->l1_w, N, C, F);
    } else {
        const float *r1d = A->r1d ? A->r1d : ffn_hidden(m, A, P, H->r1d, NULL, H->g_h1);
        FRESH(H->g_r1d, NF);
        m->be->linear_backward(H->g_r1d, D + P->l2_w, D + P->l2_b, H->g_h2, r1d, W + P->l2_w, N, F, C);
        FRESH(H->g_h1, NF);
        m->be->relu_dropout_backward(H->g_h1, H->g_r1d, r1d, p, NF);
        m->be->linear_backward(H->g_ln1, D + P->l1_w, D + P->l1_b, H->g_h1, A->ln1, W + P->l1_w, N, C, F);
    }
    // ln1 = LN1(res1); res1 = x + drop(out_proj(att))
    FRESH(H->g_proj, NC);
    if (write_dx) FRESH(dx, NC);
    m->be->residual_layernorm_backward(dx, H->g_proj, D + P->n1_w, D + P->n1_b, H->g_res, H->g_ln1, A->res1, A->m_proj,
                                       p, seed_plus(A->seed, 1), W + P->n1_w, A->mean1, A->rstd1, N, C);
    FRESH(H->g_att, NC);
    m->be->linear_backward(H->g_att, D + P->out_w, D + P->out_b, H->g_proj, A->att, W + P->out_w, N, C, C);
    // att = attention(q, k, v); q, k, v = in_proj(x [, ctx])
    AttnDims d = layer_dims(m, A);
    const float *er = P->has_er ? W + P->er : NULL;
    float *der = P->has_er ? D + P->er : NULL;
    if (A->cross) {
        float *g_q = H->g_qkv, *g_kv = H->g_qkv + grad_kv(NC);
        ZERO(g_q, NC);
        ZERO(g_kv, (size_t)Nk * 2 * C);
        if (A->q16)
            m->be->attention_backward16(g_q, g_kv, g_kv + C, der, H->g_att, A->att, A->probs, A->q16,
                                        A->kv16, A->kv16 + C, er, &d);
        else
            m->be->attention_backward(g_q, g_kv, g_kv + C, der, H->att_scratch, H->g_att, A->att,
                                      A->probs, A->amask, A->q, A->kv, A->kv + C, er, &d);
        m->be->linear_backward(dx, D + P->in_w, D + P->in_b, g_q, A->x, W + P->in_w, N, C, C);
        m->be->linear_backward(dctx, D + P->in_w + (size_t)C * C, D + P->in_b + C, g_kv, A->ctx, W + P->in_w + (size_t)C * C,
                        Nk, C, 2 * C);
    } else {
        FRESH(H->g_qkv, NC * 3);
        if (A->qkv16)
            m->be->attention_backward16(H->g_qkv, H->g_qkv + C, H->g_qkv + 2 * C, der, H->g_att, A->att, A->probs,
                                        A->qkv16, A->qkv16 + C, A->qkv16 + 2 * C, er, &d);
        else
            m->be->attention_backward(H->g_qkv, H->g_qkv + C, H->g_qkv + 2 * C, der, H->att_scratch, H->g_att,
                                      A->att, A->probs, A->amask, A->qkv, A->qkv + C, A->qkv + 2 * C, er, &d);
        if (A->x16) m->be->linear_backward16(dx, D + P->in_w, D + P->in_b, H->g_qkv, A->x16, W + P->in_w, N, C, 3 * C);
        else m->be->linear_backward(dx, D + P->in_w, D + P->in_b, H->g_qkv, A->x, W + P->in_w, N, C, 3 * C);
    }
}

static void block_backward(HgModel *m, BlockA *A, const BlockP *P, const float *dout, float *dx, float *dctx,
                           bool write_dx)
{
    int N = m->B * A->T, C = m->cfg.C;
    const float *last = P->n ? A->layers[P->n - 1].out : A->in;
    float *g_a = m->acts->g_blk[0], *g_b = m->acts->g_blk[1]; // one block at a time
    FRESH(g_a, (size_t)N * C);
    m->be->layernorm_backward(g_a, m->bdw + P->norm_w, m->bdw + P->norm_b, dout, last, m->bw + P->norm_w, A->mean, A->rstd,
                       N, C);
    if (P->n == 0) {
        if (write_dx) FRESH(dx, (size_t)N * C);
        m->be->accumulate(dx, g_a, (size_t)N * C);
        return;
    }
    float *cur = g_a, *other = g_b;
    for (int i = P->n - 1; i >= 0; i--) {
        float *target = i == 0 ? dx : other;
        layer_backward(m, &A->layers[i], &P->layers[i], cur, target, dctx, i != 0 || write_dx);
        other = cur, cur = target;
    }
}

// writes dx
static void level_backward(HgModel *m, LevelA *A, const LevelP *P, const float *dout, float *dx,
                           float *const *dhidden)
{
    const HgConfig *c = &m->cfg;
    int B = m->B, C = c->C, s = P->s;
    size_t BT = (size_t)B * A->T * C, BTp = (size_t)B * A->Tp * C, BTs = (size_t)B * A->Ts * C;
    if (P->plain) {
        block_backward(m, &A->blk, &P->blk, dout, dx, NULL, true);
        return;
    }
    block_backward(m, &A->post, &P->post, dout, A->g_uc, NULL, true);
    FRESH(A->g_u2, BTp);
    m->be->crop_backward(A->g_u2, A->g_uc, B, A->Tp, A->T, C);
    float *g_u = A->g_u2;
    if (c->attn_resampling) { // u2 = u + resample_post(u, v)
        ZERO(A->g_v, BTs);
        FRESH(A->g_u, BTp);
        m->be->accumulate(A->g_u, A->g_u2, BTp);
        block_backward(m, &A->rpost, &P->rpost, A->g_u2, A->g_u, A->g_v, false);
        g_u = A->g_u;
    }
    // u = up + hpad; then up's own gradient may gain the auxiliary loss's
    FRESH(A->g_hpad, BTp);
    m->be->accumulate(A->g_hpad, g_u, BTp);
    if (A->hid_up >= 0 && dhidden && dhidden[A->hid_up]) m->be->accumulate(g_u, dhidden[A->hid_up], BTp);
    if (!c->attn_resampling) FRESH(A->g_v, BTs);
    if (c->linear) m->be->linear_backward(A->g_v, m->bdw + P->up_w, m->bdw + P->up_b, g_u, A->v, m->bw + P->up_w, B * A->Ts, C, s * C);
    else m->be->repeat_backward(A->g_v, g_u, B, A->Tp, C, s);
    level_backward(m, A->valley, P->valley, A->g_v, A->g_z2, dhidden);
    if (A->hid_z2 >= 0 && dhidden && dhidden[A->hid_z2]) m->be->accumulate(A->g_z2, dhidden[A->hid_z2], BTs);
    float *g_z = A->g_z2;
    if (c->attn_resampling) { // z2 = z + resample_pre(z, hs)
        ZERO(A->g_hs, BTp);
        FRESH(A->g_z, BTs);
        m->be->accumulate(A->g_z, A->g_z2, BTs);
        block_backward(m, &A->rpre, &P->rpre, A->g_z2, A->g_z, A->g_hs, false);
        g_z = A->g_z;
    }
    if (!c->attn_resampling) FRESH(A->g_hs, BTp);
    if (c->linear) m->be->linear_backward(A->g_hs, m->bdw + P->down_w, m->bdw + P->down_b, g_z, A->hs, m->bw + P->down_w, B * A->Ts, s * C, C);
    else m->be->meanpool_backward(A->g_hs, g_z, B, A->Tp, C, s);
    m->be->shift_backward(A->g_hpad, A->g_hs, B, A->Tp, C, s);
    FRESH(A->g_h, BT);
    m->be->pad_backward(A->g_h, A->g_hpad, B, A->T, A->Tp, C);
    block_backward(m, &A->pre, &P->pre, A->g_h, dx, NULL, true);
}

void hg_backward(HgModel *m, const float *dlogits, float *const *dhidden)
{
    HgActs *A = m->acts;
    const HgConfig *c = &m->cfg;
    size_t NC = (size_t)m->B * m->T * c->C;
    FRESH(A->g_enc, NC);
    m->be->linear_backward(A->g_enc, m->bdw + A->p.wout_w, m->bdw + A->p.wout_b, dlogits, A->top.out, m->bw + A->p.wout_w,
                    m->B * m->T, c->C, c->V);
    level_backward(m, &A->top, &A->p.top, A->g_enc, A->g_embd, dhidden);
    FRESH(A->g_emb, NC);
    m->be->dropout_backward(A->g_emb, A->g_embd, A->m_emb, A->p_used, NC);
    m->be->encoder_backward(m->bdw + A->p.wte, A->g_emb, A->tok, m->B, m->T, c->C, c->V);
}

// ---- teardown ---------------------------------------------------------------------------------

static void free_level_p(LevelP *p)
{
    free(p->blk.layers), free(p->pre.layers), free(p->post.layers), free(p->rpre.layers), free(p->rpost.layers);
    if (p->valley) free_level_p(p->valley), free(p->valley);
}

static void free_level_a(LevelA *a)
{
    free(a->blk.layers), free(a->pre.layers), free(a->post.layers), free(a->rpre.layers), free(a->rpost.layers);
    if (a->valley) free_level_a(a->valley), free(a->valley);
}

static void free_tree(HgLevel *lv)
{
    if (!lv) return;
    free_tree(lv->valley);
    free(lv);
}

void hg_free(HgModel *m)
{
    if (m->acts) {
        free_level_p(&m->acts->p.top);
        free_level_a(&m->acts->top);
        if (!m->be->on_host) m->be->free(m->acts->block);
        else free(m->acts->block);
        free(m->acts);
    }
    if (!m->be->on_host) m->be->free(m->bw), m->be->free(m->bdw), m->be->free(m->bpe);
    free(m->logits_host);
    free_tree(m->cfg.top.valley);
    for (int i = 0; i < m->n_params; i++) free(m->params[i].name);
    free(m->params), free(m->by_name), free(m->w), free(m->dw), free(m->pe), free(m->hidden), free(m->hidden_T);
    memset(m, 0, sizeof *m);
    m->be = &backend_cpu; // an empty CPU model: freeing it again is harmless
}
