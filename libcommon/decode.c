// decode: the model of spec/model.md run a chunk of new positions at a time against key/value caches (decode.h).
// Every level keeps its own position counter; a shortened row i of a level is computed once h[s*i] exists (the
// shift makes it depend on h[s*i-s+1 .. s*i] only), so the valley advances by one row per s positions and
// position t reads valley row t/s, which exists by then. Kernels are local row loops and cblas sgemv/sgemm, so
// this file depends on hg.h's parameter names only, not on ops.c.
// On a GPU backend (the model's, hg_set_backend) the same structure runs: caches and scratch live in device memory
// and each row kernel is the backend's (backend.h DecKernels, gpu.h gpu_dec_*); only the tokens stay on the host.
// Threads: linear layers and attention split their work over pool.c's threads (OpenBLAS must be single-threaded,
// as ops_set_threads leaves it): a linear layer into LIN_TASKS column blocks, attention into (batch, head) pairs.
// The blocks depend on the shapes only, so every output element is the same computation on any thread count.
#include "decode.h"

#include <assert.h>
#include <cblas.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "gpu.h" // GPU_DRAW_MAX_V
#include "pool.h"
#include "util.h"

#define LIN_TASKS 4 // column blocks per linear layer (multiples of 16 columns): at batch 1 a step is a string of
                    // matrix-vector products bound by reading the weights, which both cores share out this way

// Which keys query row a (of the block's own sequence) sees: model.md §3 and §6's coverage rule.
enum { KEYS_CAUSAL, KEYS_PRE, KEYS_POST };

// A linear layer: w (oc, ic) as the model stores it, b (oc); wt (ic, oc) a transposed copy made by dec_new when
// oc >= ic, for single rows: OpenBLAS 0.3.21's matrix-vector product streams that layout 1.3-1.8x faster for
// those shapes (256x256, 768x256, 1024x256), and w itself faster for 256x1024. Several rows use w (sgemm).
typedef struct DLin {
    const float *w, *b;
    float *wt;
    uint16_t *w16; // GPU, DecOpts.bf16: w as bfloat16 (its arena space, made by dec_new)
    int oc, ic;
} DLin;

typedef struct DLayer {
    DLin qkv, q, kv, out, l1, l2; // qkv for self-attention; q and kv (in_proj's rows C..3C) for cross-attention
    const float *in_b, *er, *n1_w, *n1_b, *n2_w, *n2_b;
    float *k, *v; // cache (B, cap, C): keys and values of the layer's own rows, or of the context rows (cross)
    int cap;
} DLayer;

typedef struct DBlock {
    int n, keys, s, cap; // layers, key rule, shorten factor of the rule, cache rows
    DLayer *layers;
    const float *norm_w, *norm_b;
} DBlock;

typedef struct DLevel {
    int plain, s, cap, cap_s; // factor; rows of this level and of its valley at most
    int pos;                  // rows of this level seen so far
    int hs_done;              // h rows already in resample_pre's key/value cache (projected when a valley row needs them)
    DBlock blk, pre, post, rpre, rpost;
    DLin down, up_proj;
    float *h;     // (B, cap, C) pre-block outputs: the residual r and down's input (through the shift)
    float *up;    // (B, cap_s, s*C or C) up(v) per valley row: s rows of C (linear) or v itself (naive, 1 row)
    float *z, *z2, *u, *u2, *out; // chunk rows (B, n, C)
    float *hcat;  // (B, n_s, s*C): linear down's input rows
    struct DLevel *valley;
} DLevel;

// A layer's closing LayerNorm not yet applied (on a GPU): to = LN(a + b) with weights w, bias. The next layer's
// first product applies it in the same kernel (gpu_dec_ln_linear*: the same bytes), or block_rows after the last,
// or with the block's own norm the logits' product (Decoder.tail).
typedef struct PendLN {
    const float *a, *b, *w, *bias;
    float *to;
} PendLN;

struct Decoder {
    const HgModel *m;
    const Backend *be;     // the model's backend
    const DecKernels *K;   // its decode kernels; NULL on the CPU (this file's loops)
    const float *pe;       // the positional table in the backend's memory
    int32_t *tok_dev;      // GPU: (B, chunk) the tokens of one pass
    int32_t *tok_pass;     // GPU: the same on the host, packed for one copy
    float *logits_host;    // GPU: the logits copied back
    int B, C, NH, F, V, L, keep, chunk, max_s, max_keys;
    int pos;
    int32_t *tok; // (B, L) the window, on the host
    const float *wte;
    DLin wout;
    DLin **lins; // every linear layer, for the transposed copies
    int n_lins;
    DLevel top;
    float *x, *last, *logits;                           // (B, chunk, C), (B, C), (B, V)
    float *qkv, *att, *proj, *res, *ln1, *hid, *ping[2]; // layer scratch for B*chunk rows
    int workers;                                         // threads with scratch: pool_threads() at dec_new
    float *scores, *qe;                                  // per worker (chunk, max_keys); qe (B*NH, max_keys) at n = 1
    float *qe_w;                                         // per worker (chunk, max_keys): one head's Er term, n > 1
    float *qp;                                           // (B*NH, HS): the queries of one step, packed
    char *block;
    // GPU graphs of single steps (DecOpts.graph), one per window position: graph[p] replays the step that starts at
    // position p from the state key[p] (state_io's ints) and leaves the state key[p] + n_state
    int bf16;     // linear layers read w16
    int fused;    // GPU: LayerNorm + product and attention + output projection in one kernel each (DecOpts.fused)
    int pdl;      // GPU: the kernels as programmatic dependent launches (DecOpts.pdl)
    int mega;     // GPU: a pass's kernels (and the draw) as one launch (DecOpts.mega)
    // GPU, fused, a pass of one row with logits: the top level's last block (tail_block) leaves its last layer's
    // closing norm (tail) and its own norm into tail_out to the logits' product, one kernel for the three
    // (ln2_linear); tail_set once block_rows has done so (a block without layers has nothing pending: it does not)
    const DBlock *tail_block;
    PendLN tail;
    float *tail_out;
    int tail_set;
    // GPU, fused: the pass's embedding x not made yet; the top level's first layer's input projection makes it in
    // the same kernel (emb_linear_qkv), reading the tokens
    int emb_defer;
    int graph_on, n_state;
    void **graph;
    int *graph_key, *state_now;
    long graph_captured, graph_replayed;
    // GPU: the sampler's draw after the logits (dec_draw_set). Device block draw_dev: the draw's index (uint64) and
    // the masks (B, W uint32), copied in as one (draw_in bytes, from draw_host), then the options (temperature,
    // top_k, top_p as doubles), keys (B uint64) and the tokens drawn (B): all read by the kernel, so a graph holds
    // none of them. draw_host: the index and masks, then the tokens copied back (page-locked with graphs)
    int draw_on, W;
    char *draw_dev, *draw_host;
    size_t draw_in;
};

// ---- weights by state_dict name -----------------------------------------------------------------

// the parameter's values in the backend's memory (the model's own copy on the CPU)
static const float *weight(const Decoder *d, int optional, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static const float *weight(const Decoder *d, int optional, const char *fmt, ...)
{
    const HgModel *m = d->m;
    va_list ap;
    va_start(ap, fmt);
    char *name = xvasprintf(fmt, ap);
    va_end(ap);
    int i = hg_param_index(m, name);
    if (i < 0 && !optional) die("decode: parameter missing from the model: '%s'", name); // a table/tree mismatch
    free(name);
    return i < 0 ? NULL : m->bw + m->params[i].offset; // the backend's copy (the weights themselves on the CPU)
}

static void lin_init(Decoder *d, DLin *l, const float *w, const float *b, int oc, int ic)
{
    *l = (DLin){.w = w, .b = b, .oc = oc, .ic = ic};
    d->lins = xrealloc(d->lins, (size_t)(d->n_lins + 1) * sizeof *d->lins);
    d->lins[d->n_lins++] = l;
}

static void build_block(Decoder *d, DBlock *bk, const char *pre, int n, int keys, int s, int cap)
{
    bk->n = n, bk->keys = keys, bk->s = s, bk->cap = cap;
    bk->layers = xcalloc((size_t)(n ? n : 1), sizeof *bk->layers);
    for (int i = 0; i < n; i++) {
        DLayer *l = &bk->layers[i];
        char *p = xasprintf("%s.layers.%d", pre, i);
        int C = d->C;
        const float *in_w = weight(d, 0, "%s.self_attn.in_proj_weight", p);
        l->in_b = weight(d, 0, "%s.self_attn.in_proj_bias", p);
        if (keys == KEYS_CAUSAL) {
            lin_init(d, &l->qkv, in_w, l->in_b, 3 * C, C);
            l->er = weight(d, 0, "%s.self_attn.Er", p);
        } else {
            lin_init(d, &l->q, in_w, l->in_b, C, C);
            lin_init(d, &l->kv, in_w + (size_t)C * C, l->in_b + C, 2 * C, C);
        }
        lin_init(d, &l->out, weight(d, 0, "%s.self_attn.out_proj.weight", p),
                 weight(d, 0, "%s.self_attn.out_proj.bias", p), C, C);
        lin_init(d, &l->l1, weight(d, 0, "%s.linear1.weight", p), weight(d, 0, "%s.linear1.bias", p), d->F, C);
        lin_init(d, &l->l2, weight(d, 0, "%s.linear2.weight", p), weight(d, 0, "%s.linear2.bias", p), C, d->F);
        l->n1_w = weight(d, 0, "%s.norm1.weight", p), l->n1_b = weight(d, 0, "%s.norm1.bias", p);
        l->n2_w = weight(d, 0, "%s.norm2.weight", p), l->n2_b = weight(d, 0, "%s.norm2.bias", p);
        l->cap = cap;
        free(p);
    }
    bk->norm_w = weight(d, 0, "%s.norm.weight", pre), bk->norm_b = weight(d, 0, "%s.norm.bias", pre);
}

// cap: the most rows this level ever holds (L at the top, ceil(cap/s) one level down)
static void build_level(Decoder *d, DLevel *lv, const HgLevel *cfg, const char *pre, int cap)
{
    char *p = NULL;
    lv->cap = cap;
    if (!cfg->valley) {
        lv->plain = 1;
        build_block(d, &lv->blk, pre, cfg->n_layers, KEYS_CAUSAL, 1, cap);
        return;
    }
    int s = lv->s = cfg->s;
    lv->cap_s = (cap + s - 1) / s;
    if (s > d->max_s) d->max_s = s;
    free(p), p = xasprintf("%s.pre_transformer", pre);
    build_block(d, &lv->pre, p, cfg->pre, KEYS_CAUSAL, 1, cap);
    free(p), p = xasprintf("%s.post_transformer", pre);
    build_block(d, &lv->post, p, cfg->post, KEYS_CAUSAL, 1, cap);
    if (d->m->cfg.linear) {
        lin_init(d, &lv->down, weight(d, 0, "%s.downsample.proj.weight", pre),
                 weight(d, 0, "%s.downsample.proj.bias", pre), d->C, s * d->C);
        lin_init(d, &lv->up_proj, weight(d, 0, "%s.upsample.proj.weight", pre),
                 weight(d, 0, "%s.upsample.proj.bias", pre), s * d->C, d->C);
    }
    if (d->m->cfg.attn_resampling) { // keys: s-1 zero rows of the shift, then h; and the valley's rows
        free(p), p = xasprintf("%s.attn_resampling_pre_valley", pre);
        build_block(d, &lv->rpre, p, 1, KEYS_PRE, s, cap + s - 1);
        free(p), p = xasprintf("%s.attn_resampling_post_valley", pre);
        build_block(d, &lv->rpost, p, 1, KEYS_POST, s, lv->cap_s);
    }
    free(p), p = xasprintf("%s.valley_transformer", pre);
    lv->valley = xcalloc(1, sizeof *lv->valley);
    build_level(d, lv->valley, cfg->valley, p, lv->cap_s);
    free(p);
}

// ---- memory: one block, planned by a counting pass and a handing-out pass -------------------------

typedef struct Arena {
    char *base;
    size_t used;
} Arena;

#define DRAW_OPTS (3 * sizeof(double)) // the draw's options in draw_dev

static float *take(Arena *a, size_t n_floats)
{
    size_t bytes = (n_floats * sizeof(float) + 63) & ~(size_t)63;
    float *p = a->base ? (float *)(a->base + a->used) : NULL;
    a->used += bytes;
    return p;
}

static void plan_block(Decoder *d, Arena *a, DBlock *bk)
{
    for (int i = 0; i < bk->n; i++) {
        bk->layers[i].k = take(a, (size_t)d->B * bk->cap * d->C);
        bk->layers[i].v = take(a, (size_t)d->B * bk->cap * d->C);
    }
}

static void plan_level(Decoder *d, Arena *a, DLevel *lv)
{
    size_t BC = (size_t)d->B * d->C, rows = (size_t)d->chunk; // a level's chunk never exceeds the top's
    lv->out = take(a, BC * rows);
    if (lv->plain) {
        plan_block(d, a, &lv->blk);
        return;
    }
    int s = lv->s;
    plan_block(d, a, &lv->pre), plan_block(d, a, &lv->post);
    if (d->m->cfg.attn_resampling) plan_block(d, a, &lv->rpre), plan_block(d, a, &lv->rpost);
    lv->h = take(a, BC * lv->cap);
    lv->up = take(a, BC * lv->cap_s * (d->m->cfg.linear ? s : 1));
    lv->z = take(a, BC * rows), lv->z2 = take(a, BC * rows), lv->u = take(a, BC * rows);
    lv->u2 = take(a, BC * rows);
    lv->hcat = take(a, BC * (rows + s)); // n_s groups of s rows, or h rows not yet in rpre: both <= rows + s - 1
    plan_level(d, a, lv->valley);
}

static void plan(Decoder *d, Arena *a)
{
    size_t N = (size_t)d->B * d->chunk, C = (size_t)d->C;
    if (d->K) d->tok_dev = (int32_t *)take(a, N); // int32 and float have the same size
    if (d->K) d->draw_dev = (char *)take(a, (d->draw_in + DRAW_OPTS + (size_t)d->B * (sizeof(uint64_t) + sizeof(int32_t))) / 4);
    d->x = take(a, N * C), d->last = take(a, (size_t)d->B * C), d->logits = take(a, (size_t)d->B * d->V);
    d->qkv = take(a, (N + (size_t)d->B * d->max_s) * 3 * C), d->att = take(a, N * C), d->proj = take(a, N * C), d->res = take(a, N * C);
    d->ln1 = take(a, N * C), d->hid = take(a, N * d->F), d->ping[0] = take(a, N * C), d->ping[1] = take(a, N * C);
    if (d->K) { // the GPU's attention keeps partial sums per (item, head, query row, chunk of keys)
        d->scores = take(a, d->K->attend_scratch(d->B, d->NH, d->C, d->chunk, d->max_keys));
    } else {
        size_t scratch = (size_t)d->workers * d->chunk * d->max_keys;
        d->scores = take(a, scratch), d->qe_w = take(a, scratch), d->qe = take(a, (size_t)d->B * d->NH * d->max_keys);
        d->qp = take(a, (size_t)d->B * C);
    }
    plan_level(d, a, &d->top);
    for (int i = 0; i < d->n_lins; i++) { // the CPU's transposed copies (see DLin), or the GPU's bfloat16 ones
        DLin *l = d->lins[i];
        if (!d->K && l->oc >= l->ic) l->wt = take(a, (size_t)l->oc * l->ic);
        if (d->bf16) l->w16 = (uint16_t *)take(a, ((size_t)l->oc * l->ic + 1) / 2);
    }
}

static int state_io(Decoder *d, int *st, int set);

// A DecOpts switch: 1 on, -1 off, 0 as the environment variable says ("1" on, "0" off, else the default)
static int opt_or_env(int opt, const char *name, int dflt)
{
    if (opt) return opt == 1;
    const char *e = getenv(name);
    return e && strcmp(e, "1") == 0 ? 1 : e && strcmp(e, "0") == 0 ? 0 : dflt;
}

// The decoder's structure and the size of its block (the counting pass), nothing allocated for the block.
static Decoder *dec_setup(const HgModel *m, int B, const DecOpts *opts, size_t *bytes, char *err)
{
    const HgConfig *c = &m->cfg;
    DecOpts o = opts ? *opts : (DecOpts){0};
    if (o.keep == 0) o.keep = c->L / 2 > 0 ? c->L / 2 : 1;
    if (o.chunk == 0) o.chunk = c->L < 64 ? c->L : 64;
    if (B < 1) return err_set(err, "decoder: batch %d: must be at least 1", B), NULL;
    if (c->L < 2) return err_set(err, "decoder: input_length %d: must be at least 2 to slide a window", c->L), NULL;
    if (o.keep < 1 || o.keep >= c->L)
        return err_set(err, "decoder: keep %d: must be in 1..%d (input_length - 1)", o.keep, c->L - 1), NULL;
    if (o.chunk < 1 || o.chunk > c->L)
        return err_set(err, "decoder: chunk %d: must be in 1..%d (input_length)", o.chunk, c->L), NULL;
    Decoder *d = xcalloc(1, sizeof *d);
    d->m = m, d->B = B, d->C = c->C, d->NH = c->NH, d->F = c->F, d->V = c->V, d->L = c->L;
    d->keep = o.keep, d->chunk = o.chunk, d->workers = pool_threads();
    d->be = m->be, d->K = d->be->dec;
    if (d->K && c->C / c->NH > 1024) {
        err_set(err, "decoder: heads of %d columns: the GPU decoder takes at most 1024", c->C / c->NH);
        free(d);
        return NULL;
    }
    d->pe = m->bpe;
    d->wte = weight(d, 0, "embedding.weight");
    lin_init(d, &d->wout, weight(d, 0, "Wout.weight"), weight(d, 0, "Wout.bias"), c->V, c->C);
    d->max_s = 1; // build_level raises it to the largest factor
    build_level(d, &d->top, &c->top, "transformer.encoder", c->L);
    d->max_keys = c->L + d->max_s; // the most keys a query sees: L, or s*i+s <= L+s-1 in resample_pre
    // the GPU's switches (DecOpts: 1 on, -1 off, 0 as the environment says); the CPU has none of these kernels
    d->fused = d->K && opt_or_env(o.fused, "HMT_GPU_DECODE_FUSED", 1);
    d->bf16 = d->K && opt_or_env(o.bf16, "HMT_GPU_DECODE_BF16", 0);
    d->pdl = d->K && d->K->pdl && opt_or_env(o.pdl, "HMT_GPU_DECODE_PDL", 0);
    d->mega = d->K && d->K->mega && opt_or_env(o.mega, "HMT_GPU_DECODE_MEGA", 0);
    // a step's products have B rows, or B x the rows of h not yet in resample_pre's cache (at most s: a level's
    // valley runs at every s-th position and takes the rows since its last run): all in the kernel, no cuBLAS
    // (bfloat16 weights: every product in the kernel, however many rows)
    d->graph_on = d->K && opt_or_env(o.graph, "HMT_GPU_DECODE_GRAPH", 0) &&
                  (B * d->max_s <= d->K->kernel_rows() || d->bf16);
    d->W = (d->V + 31) / 32;
    d->draw_in = (sizeof(uint64_t) + (size_t)B * d->W * sizeof(uint32_t) + 7) & ~(size_t)7;
    Arena a = {0};
    plan(d, &a);
    *bytes = a.used;
    return d;
}

Decoder *dec_new(const HgModel *m, int B, const DecOpts *opts, char *err)
{
    size_t bytes;
    Decoder *d = dec_setup(m, B, opts, &bytes, err);
    if (!d) return NULL;
    d->block = d->be->alloc(bytes);
    d->tok = xcalloc((size_t)B * d->L, sizeof *d->tok);
    size_t logit_bytes = (size_t)B * d->V * sizeof *d->logits_host, tok_bytes = (size_t)B * d->chunk * sizeof *d->tok_pass;
    size_t draw_bytes = d->draw_in + (size_t)B * sizeof(int32_t);
    if (d->graph_on) { // page-locked: a graph copies the tokens in and the logits out itself
        d->logits_host = d->be->host_alloc(logit_bytes), d->tok_pass = d->be->host_alloc(tok_bytes);
        d->draw_host = d->be->host_alloc(draw_bytes);
        if (!d->logits_host || !d->tok_pass || !d->draw_host) { // none to be had: no graphs (the same bytes)
            d->be->host_free(d->logits_host), d->be->host_free(d->tok_pass), d->be->host_free(d->draw_host);
            d->graph_on = 0;
        }
    }
    if (d->K && !d->graph_on) {
        d->logits_host = xmalloc(logit_bytes), d->tok_pass = xmalloc(tok_bytes), d->draw_host = xcalloc(1, draw_bytes);
    }
    if (d->graph_on) {
        d->n_state = state_io(d, NULL, 0);
        d->graph = xcalloc(2 * (size_t)d->L, sizeof *d->graph); // per position, without and with the draw
        d->graph_key = xcalloc(2 * (size_t)d->L * 2 * d->n_state, sizeof *d->graph_key);
        d->state_now = xcalloc((size_t)d->n_state, sizeof *d->state_now);
    }
    Arena a = {d->block, 0};
    plan(d, &a);
    for (int i = 0; i < d->n_lins; i++) {
        DLin *l = d->lins[i];
        if (l->w16) d->be->to_bf16(l->w16, l->w, (size_t)l->oc * l->ic);
        if (l->wt)
            for (int o = 0; o < l->oc; o++)
                for (int k = 0; k < l->ic; k++) l->wt[(size_t)k * l->oc + o] = l->w[(size_t)o * l->ic + k];
    }
    return d;
}

int dec_plan(const HgModel *m, int B, const DecOpts *opts, size_t *bytes, char *err)
{
    Decoder *d = dec_setup(m, B, opts, bytes, err);
    if (!d) return -1;
    dec_free(d);
    return 0;
}

int dec_check_memory(const HgModel *m, int dec_B, int fwd_B, int fwd_T, char *err)
{
    size_t dec = 0;
    HgPlan hp = {0};
    if (dec_B > 0 && dec_plan(m, dec_B, NULL, &dec, err) < 0) return -1;
    if (fwd_B > 0 && hg_plan(&m->cfg, fwd_B, fwd_T, &hp, err) < 0) return -1;
    const char *src;
    const Backend *be = m->be;
    uint64_t avail = be->mem_free(&src); // the GPU's free memory for a model there
    double need = (double)dec + (double)hp.act_bytes;
    if (need <= (double)avail) return 0;
    char a[32], b[32], c[32], t[32];
    return err_set(err, "model does not fit in %smemory: %s needed (decoder for batch %d: %s; forward pass %d x %d: %s); "
                        "%s available (%s)", be->on_host ? "" : "GPU ", fmt_bytes(need, t, 32), dec_B, fmt_bytes((double)dec, a, 32), fwd_B, fwd_T,
                   fmt_bytes((double)hp.act_bytes, b, 32), fmt_bytes((double)avail, c, 32), src);
}

// The host's decoder state, what a step's kernels' arguments depend on besides the fixed buffers: the window's
// length and every level's position and resample_pre progress. Into st (set 0) or from it (set 1); st NULL counts.
// Returns the number of ints.
static int state_io(Decoder *d, int *st, int set)
{
    int k = 0;
    if (st) set ? (void)(d->pos = st[k]) : (void)(st[k] = d->pos);
    k++;
    for (DLevel *lv = &d->top; lv; lv = lv->plain ? NULL : lv->valley, k += 2) {
        if (!st) continue;
        if (set) lv->pos = st[k], lv->hs_done = st[k + 1];
        else st[k] = lv->pos, st[k + 1] = lv->hs_done;
    }
    return k;
}

void dec_graph_stats(const Decoder *d, long *captured, long *replayed)
{
    *captured = d->graph_captured, *replayed = d->graph_replayed;
}

static void reset_level(DLevel *lv)
{
    lv->pos = lv->hs_done = 0;
    if (lv->valley) reset_level(lv->valley);
}

void dec_reset(Decoder *d)
{
    d->pos = 0;
    reset_level(&d->top);
}

int dec_len(const Decoder *d) { return d->pos; }
const int32_t *dec_tokens(const Decoder *d) { return d->tok; }

static void free_block(DBlock *bk) { free(bk->layers); }
static void free_level(DLevel *lv)
{
    free_block(&lv->blk), free_block(&lv->pre), free_block(&lv->post), free_block(&lv->rpre), free_block(&lv->rpost);
    if (lv->valley) free_level(lv->valley), free(lv->valley);
}

void dec_free(Decoder *d)
{
    if (!d) return;
    free_level(&d->top);
    free(d->lins);
    d->be->free(d->block);
    if (d->graph_on) d->be->host_free(d->logits_host), d->be->host_free(d->tok_pass), d->be->host_free(d->draw_host);
    else free(d->logits_host), free(d->tok_pass), free(d->draw_host);
    free(d->tok);
    for (int p = 0; d->graph && p < 2 * d->L; p++) d->be->graph_free(d->graph[p]);
    free(d->graph), free(d->graph_key), free(d->state_now);
    free(d);
}

// ---- row kernels --------------------------------------------------------------------------------

typedef struct LinJob {
    float *out;
    const float *x;
    const DLin *l;
    int N, cols;
} LinJob;

// Output columns t*cols .. of every row
static void linear_task(void *ctx, int t, int worker)
{
    (void)worker;
    const LinJob *j = ctx;
    const DLin *l = j->l;
    int IC = l->ic, OC = l->oc, o0 = t * j->cols, nc = OC - o0 < j->cols ? OC - o0 : j->cols;
    float *out = j->out + o0;
    for (int n = 0; n < j->N; n++) memcpy(out + (size_t)n * OC, l->b + o0, (size_t)nc * sizeof *out);
    if (l->wt && j->N == 1)
        cblas_sgemv(CblasRowMajor, CblasTrans, IC, nc, 1.0f, l->wt + o0, OC, j->x, 1, 1.0f, out, 1);
    else if (j->N == 1)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, nc, IC, 1.0f, l->w + (size_t)o0 * IC, IC, j->x, 1, 1.0f, out, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->N, nc, IC, 1.0f, j->x, IC, l->w + (size_t)o0 * IC,
                    IC, 1.0f, out, OC);
}

// out (N, oc) = x (N, ic) @ w^T + b  (nn.Linear), then ReLU when relu; one row is a matrix-vector product
static void linear_act(const Decoder *d, float *out, const float *x, const DLin *l, int N, int relu)
{
    if (d->K) {
        d->K->linear(out, x, l->w, l->w16, l->b, N, l->ic, l->oc, relu);
        return;
    }
    int cols = ((l->oc + LIN_TASKS - 1) / LIN_TASKS + 15) / 16 * 16;
    LinJob j = {out, x, l, N, cols};
    pool_run(linear_task, &j, (l->oc + cols - 1) / cols);
    if (relu)
        for (size_t i = 0; i < (size_t)N * l->oc; i++) out[i] = out[i] > 0.0f ? out[i] : 0.0f;
}

static void linear(const Decoder *d, float *out, const float *x, const DLin *l, int N) { linear_act(d, out, x, l, N, 0); }

// LayerNorm over C (biased variance, eps 1e-5), N rows; out may equal x
static void layernorm(float *out, const float *x, const float *w, const float *b, int N, int C)
{
    for (int n = 0; n < N; n++) {
        const float *r = x + (size_t)n * C;
        float mean = 0.0f, var = 0.0f;
        for (int c = 0; c < C; c++) mean += r[c];
        mean /= (float)C;
        for (int c = 0; c < C; c++) var += (r[c] - mean) * (r[c] - mean);
        var /= (float)C;
        float rstd = 1.0f / sqrtf(var + 1e-5f);
        float *o = out + (size_t)n * C;
        for (int c = 0; c < C; c++) o[c] = (r[c] - mean) * rstd * w[c] + b[c];
    }
}

static void add(float *out, const float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

// ---- the same on either backend (d->K NULL: the loops above) ----------------------------------------

static void add_b(const Decoder *d, float *out, const float *a, const float *b, size_t n)
{
    if (d->K) d->be->add_forward(out, a, b, n);
    else add(out, a, b, n);
}

// out = LayerNorm(a + b) (b NULL: of a); on the CPU the sum goes through d->res
static void add_layernorm(Decoder *d, float *out, const float *a, const float *b, const float *w, const float *bias,
                          int N)
{
    if (d->K) {
        d->K->add_layernorm(out, a, b, w, bias, N, d->C);
        return;
    }
    if (b) add(d->res, a, b, (size_t)N * d->C), a = d->res;
    layernorm(out, a, w, bias, N, d->C);
}

// nb groups of rows rows of width floats: dst + g * dstride + r * dpitch <- src + g * sstride + r * spitch (a pitch
// 0: the same row every time)
static void copy_rows(const Decoder *d, float *dst, size_t dstride, size_t dpitch, const float *src, size_t sstride,
                      size_t spitch, int nb, int rows, int width)
{
    if (d->K) {
        d->K->copy_rows(dst, dstride, dpitch, src, sstride, spitch, nb, rows, width);
        return;
    }
    for (int g = 0; g < nb; g++)
        for (int r = 0; r < rows; r++)
            memcpy(dst + g * dstride + r * dpitch, src + g * sstride + r * spitch, (size_t)width * sizeof *dst);
}

// keys seen by query row a of a block with rule `keys` (model.md §3, §6)
static int n_keys(int keys, int s, int a) { return keys == KEYS_CAUSAL ? a + 1 : keys == KEYS_PRE ? s * a + s : a / s + 1; }

// ---- attention of n new query rows (positions p0 .. p0+n-1) against a layer's cache ------------------
// Per batch item and head (model.md §3): S[i,j] = scale * (q_i . k_j + q_i . Er[L-1-(a-j)]) for j < n_keys(a),
// a = p0+i, the Er term only in RPR layers; out_h = softmax(S) v. q (B, n, ldq) -> out (B, n, C).

typedef struct AttJob {
    const Decoder *d;
    const DBlock *bk;
    const DLayer *l;
    float *out;
    const float *q, *ers;
    int ldq, n, p0, Tk;
    float scale;
} AttJob;

// One (batch item, head) pair: its scores, softmax and weighted values, in the worker's scratch
static void attend_task(void *ctx, int t, int worker)
{
    const AttJob *j = ctx;
    const Decoder *d = j->d;
    const DBlock *bk = j->bk;
    int C = d->C, HS = C / d->NH, n = j->n, Tk = j->Tk, ldq = j->ldq, b = t / d->NH, h = t % d->NH;
    size_t scratch = (size_t)d->chunk * d->max_keys;
    float *S = d->scores + worker * scratch, scale = j->scale;
    const float *qh = j->q + (size_t)b * n * ldq + h * HS, *ers = j->ers;
    const float *kh = j->l->k + (size_t)b * bk->cap * C + h * HS, *vh = j->l->v + (size_t)b * bk->cap * C + h * HS;
    float *oh = j->out + (size_t)b * n * C + h * HS;
    const float *qeh = d->qe + (size_t)t * Tk; // n = 1: this pair's row of the product made before the tasks
    if (n == 1) {
        cblas_sgemv(CblasRowMajor, CblasNoTrans, Tk, HS, scale, kh, C, qh, 1, 0.0f, S, 1);
    } else {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, Tk, HS, scale, qh, ldq, kh, C, 0.0f, S, Tk);
        if (ers) {
            float *qe = d->qe_w + worker * scratch;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, Tk, HS, scale, qh, ldq, ers, HS, 0.0f, qe, Tk);
            qeh = qe;
        }
    }
    for (int i = 0; i < n; i++) {
        float *row = S + (size_t)i * Tk;
        int a = j->p0 + i, nk = n_keys(bk->keys, bk->s, a);
        if (ers)
            for (int k = 0; k < nk; k++) row[k] += qeh[(size_t)i * Tk + Tk - 1 - a + k];
        float mx = row[0], sum = 0.0f;
        for (int k = 1; k < nk; k++) mx = row[k] > mx ? row[k] : mx;
        for (int k = 0; k < nk; k++) sum += row[k] = expf(row[k] - mx);
        for (int k = 0; k < nk; k++) row[k] /= sum;
        for (int k = nk; k < Tk; k++) row[k] = 0.0f;
    }
    if (n == 1) cblas_sgemv(CblasRowMajor, CblasTrans, Tk, HS, 1.0f, vh, C, S, 1, 0.0f, oh, 1);
    else cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, HS, Tk, 1.0f, S, Tk, vh, C, 0.0f, oh, C);
}

// With proj (on a GPU): its output projection too, into d->proj, the two in one kernel where they fit
static void attend(Decoder *d, const DBlock *bk, const DLayer *l, float *out, const float *q, int ldq, int n, int p0,
                   const DLin *proj)
{
    int C = d->C, HS = C / d->NH, L = d->L;
    int Tk = n_keys(bk->keys, bk->s, p0 + n - 1); // keys of the last query: the most any row sees
    float scale = 1.0f / sqrtf((float)HS);
    assert(Tk <= bk->cap && Tk <= d->max_keys);
    // the last Tk rows of Er: row Tk-1-(a-j) of ers is Er[L-1-(a-j)]
    const float *ers = l->er ? l->er + (size_t)(L - Tk) * HS : NULL;
    if (d->K && proj) {
        d->K->attend_proj(d->proj, out, d->scores, q, ldq, l->k, l->v, bk->cap, ers, d->B, d->NH, C, n, p0, Tk,
                          bk->keys, bk->s, proj->w, proj->w16, proj->b);
        return;
    }
    if (d->K) {
        d->K->attend(out, d->scores, q, ldq, l->k, l->v, bk->cap, ers, d->B, d->NH, C, n, p0, Tk, bk->keys, bk->s);
        return;
    }
    if (n == 1 && ers) { // all items' and heads' queries against Er in one product: Er is read once, not B*NH times
        for (int b = 0; b < d->B; b++)
            memcpy(d->qp + (size_t)b * C, q + (size_t)b * ldq, (size_t)C * sizeof(float));
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, d->B * d->NH, Tk, HS, scale, d->qp, HS, ers, HS, 0.0f,
                    d->qe, Tk);
    }
    AttJob j = {d, bk, l, out, q, ers, ldq, n, p0, Tk, scale};
    pool_run_on(d->workers, attend_task, &j, d->B * d->NH);
}

// Appends ctx rows (B, n, C) as keys/values rows r0.. of a cross-attention layer's cache: k, v = in_proj[C:3C]
static void append_context(Decoder *d, const DBlock *bk, const float *ctx, int n, int r0)
{
    int C = d->C;
    for (int li = 0; li < bk->n; li++) {
        const DLayer *l = &bk->layers[li];
        linear(d, d->qkv, ctx, &l->kv, d->B * n);
        // rows (b, i) of the product: k then v, 2C floats
        size_t cs = (size_t)bk->cap * C, ps = (size_t)n * 2 * C, at = (size_t)r0 * C;
        copy_rows(d, l->k + at, cs, C, d->qkv, ps, 2 * C, d->B, n, C);
        copy_rows(d, l->v + at, cs, C, d->qkv + C, ps, 2 * C, d->B, n, C);
    }
}

// model.md §2 on n new rows x (B, n, C) at positions p0.. -> out (B, n, C). A self-attention layer first appends its
// own keys and values; a cross layer's cache holds the context already (append_context). in: x is the previous
// layer's pending LayerNorm (in->to == x), made by this layer's first product; defer (GPU): this layer's closing
// LayerNorm into out is left to the next, described in *defer (read in before it is written)
static void layer_rows(Decoder *d, const DBlock *bk, const DLayer *l, float *out, const float *x, int n, int p0,
                       const PendLN *in, PendLN *defer)
{
    int B = d->B, C = d->C, N = B * n;
    int ldq = C;
    if (bk->keys == KEYS_CAUSAL) {
        ldq = 3 * C;
        // rows (b, i) of the product: q, k, v, 3C floats; k and v also to the caches at row p0 + i
        size_t cs = (size_t)bk->cap * C, ps = (size_t)n * 3 * C, at = (size_t)p0 * C;
        float *k = l->k + at, *v = l->v + at;
        const DLin *q = &l->qkv;
        if (in) {
            d->K->ln_linear_qkv(d->qkv, in->to, in->a, in->b, in->w, in->bias, q->w, q->w16, q->b, N, C, k, v, cs, n);
        } else if (d->K && d->emb_defer && x == d->x) { // the pass's embedding, made here (pass)
            d->K->emb_linear_qkv(d->qkv, d->x, d->tok_dev, d->wte, d->pe + (size_t)p0 * C, B, n, C, q->w, q->w16, q->b,
                                 k, v, cs);
            d->emb_defer = 0;
        } else if (d->K) {
            d->K->linear_qkv(d->qkv, x, q->w, q->w16, q->b, N, C, k, v, cs, n);
        } else {
            linear(d, d->qkv, x, q, N);
            copy_rows(d, k, cs, C, d->qkv + C, ps, 3 * C, B, n, C);
            copy_rows(d, v, cs, C, d->qkv + 2 * C, ps, 3 * C, B, n, C);
        }
    } else if (in) {
        const DLin *q = &l->q;
        d->K->ln_linear(d->qkv, in->to, in->a, in->b, in->w, in->bias, q->w, q->w16, q->b, N, C, C, 0);
    } else {
        linear(d, d->qkv, x, &l->q, N);
    }
    if (d->fused) { // attention + output projection, and LN1 + the first feed-forward layer: a launch each
        attend(d, bk, l, d->att, d->qkv, ldq, n, p0, &l->out);
        d->K->ln_linear(d->hid, d->ln1, x, d->proj, l->n1_w, l->n1_b, l->l1.w, l->l1.w16, l->l1.b, N, C, d->F, 1);
    } else {
        attend(d, bk, l, d->att, d->qkv, ldq, n, p0, NULL);
        linear(d, d->proj, d->att, &l->out, N);
        add_layernorm(d, d->ln1, x, d->proj, l->n1_w, l->n1_b, N);
        linear_act(d, d->hid, d->ln1, &l->l1, N, 1);
    }
    linear(d, d->proj, d->hid, &l->l2, N);
    // ln1 and proj stay untouched until the next layer's first product has read them
    if (defer) *defer = (PendLN){d->ln1, d->proj, l->n2_w, l->n2_b, out};
    else add_layernorm(d, out, d->ln1, d->proj, l->n2_w, l->n2_b, N);
}

// model.md §4: the layers, then the block's LayerNorm, into out (B, n, C). On a GPU (d->fused) each layer's closing
// LayerNorm rides with the next layer's first product (one launch fewer per layer after the first)
static void block_rows(Decoder *d, const DBlock *bk, float *out, const float *x, int n, int p0)
{
    const float *cur = x;
    PendLN pend;
    int pending = 0;
    for (int i = 0; i < bk->n; i++) {
        PendLN *defer = d->fused ? &pend : NULL;
        layer_rows(d, bk, &bk->layers[i], d->ping[i & 1], cur, n, p0, pending ? &pend : NULL, defer);
        pending = d->fused;
        cur = d->ping[i & 1];
    }
    if (pending && bk == d->tail_block) { // both norms ride with the logits' product (pass)
        d->tail = pend, d->tail_out = out, d->tail_set = 1;
        return;
    }
    if (pending) add_layernorm(d, pend.to, pend.a, pend.b, pend.w, pend.bias, d->B * n);
    add_layernorm(d, out, cur, NULL, bk->norm_w, bk->norm_b, d->B * n);
}

// ---- one level (model.md §6) on n new rows ---------------------------------------------------------

// The valley rows that become computable with rows p0 .. p0+n-1: z[i] needs hs[s*i .. s*i+s-1] = h[s*i-s+1 .. s*i]
// (zeros before 0), so row i is complete once h[s*i] exists. Builds z (B, n_s, C) for rows i0 .. i0+n_s-1.
static void down_rows(Decoder *d, DLevel *lv, int i0, int n_s)
{
    int B = d->B, C = d->C, s = lv->s;
    if (d->K) {
        d->K->down(d->m->cfg.linear ? lv->hcat : lv->z, lv->h, B, lv->cap, C, s, i0, n_s, !d->m->cfg.linear);
        if (d->m->cfg.linear) linear(d, lv->z, lv->hcat, &lv->down, B * n_s);
        return;
    }
    for (int b = 0; b < B; b++)
        for (int g = 0; g < n_s; g++) {
            int i = i0 + g;
            float *cat = lv->hcat + ((size_t)b * n_s + g) * s * C, *z = lv->z + ((size_t)b * n_s + g) * C;
            if (!d->m->cfg.linear) memset(z, 0, (size_t)C * sizeof *z);
            for (int k = 0; k < s; k++) {
                int t = s * i + k - (s - 1); // hs[s*i+k] = h[t]
                const float *hr = lv->h + ((size_t)b * lv->cap + t) * C;
                if (d->m->cfg.linear) {
                    if (t < 0) memset(cat + (size_t)k * C, 0, (size_t)C * sizeof *cat);
                    else memcpy(cat + (size_t)k * C, hr, (size_t)C * sizeof *cat);
                } else if (t >= 0) {
                    for (int c = 0; c < C; c++) z[c] += hr[c]; // the mean of s rows, zero rows included
                }
            }
            if (!d->m->cfg.linear)
                for (int c = 0; c < C; c++) z[c] /= (float)s;
        }
    if (d->m->cfg.linear) linear(d, lv->z, lv->hcat, &lv->down, B * n_s);
}

static const float *level_rows(Decoder *d, DLevel *lv, const float *x, int n);

// The valley rows i0 .. i0+n_s-1 whose groups completed: resample_pre's missing keys, down, resample_pre, the
// valley, then up(v) per row and resample_post's keys
static void valley_rows(Decoder *d, DLevel *lv, int i0, int n_s, int h_end)
{
    int B = d->B, C = d->C, s = lv->s, ar = d->m->cfg.attn_resampling, lin = d->m->cfg.linear;
    if (ar) { // resample_pre's keys for h rows hs_done .. h_end-1, packed in hcat (free until down_rows)
        int first = lv->hs_done, n_h = h_end - first;
        copy_rows(d, lv->hcat, (size_t)n_h * C, 0, lv->h + (size_t)first * C, (size_t)lv->cap * C, 0, B, 1, n_h * C);
        append_context(d, &lv->rpre, lv->hcat, n_h, s - 1 + first);
        lv->hs_done = h_end;
    }
    down_rows(d, lv, i0, n_s);
    const float *z = lv->z;
    if (ar) { // z + resample_pre(z, hs): row i sees hs[0 .. s*i+s-1]
        block_rows(d, &lv->rpre, lv->z2, lv->z, n_s, i0);
        add_b(d, lv->z2, lv->z, lv->z2, (size_t)B * n_s * C);
        z = lv->z2;
    }
    assert(lv->valley->pos == i0);
    const float *v = level_rows(d, lv->valley, z, n_s);
    int w = lin ? s * C : C; // up(v) per valley row
    float *up0 = lv->up + (size_t)i0 * w;
    size_t us = (size_t)lv->cap_s * w;
    if (lin && d->K) { // the GPU: one product for every item (into hcat, free again), then to up
        linear(d, lv->hcat, v, &lv->up_proj, B * n_s);
        copy_rows(d, up0, us, 0, lv->hcat, (size_t)n_s * w, 0, B, 1, n_s * w);
    } else if (lin) {
        for (int b = 0; b < B; b++) linear(d, up0 + b * us, v + (size_t)b * n_s * C, &lv->up_proj, n_s);
    } else {
        copy_rows(d, up0, us, 0, v, (size_t)n_s * C, 0, B, 1, n_s * C);
    }
    if (ar) append_context(d, &lv->rpost, v, n_s, i0); // resample_post's keys: the valley rows
}

// x (B, n, C): this level's rows pos .. pos+n-1 -> its output rows (B, n, C), a buffer of the level
static const float *level_rows(Decoder *d, DLevel *lv, const float *x, int n)
{
    int B = d->B, C = d->C, s = lv->s, p0 = lv->pos, ar = d->m->cfg.attn_resampling, lin = d->m->cfg.linear;
    assert(p0 + n <= lv->cap);
    lv->pos += n;
    if (lv->plain) {
        block_rows(d, &lv->blk, lv->out, x, n, p0);
        return lv->out;
    }
    // h = pre(x), kept as the residual and down's input
    block_rows(d, &lv->pre, lv->u, x, n, p0);
    copy_rows(d, lv->h + (size_t)p0 * C, (size_t)lv->cap * C, 0, lv->u, (size_t)n * C, 0, B, 1, n * C);
    if (ar && p0 == 0) // resample_pre's keys start with the shift's s-1 zero rows: in_proj of zero is its bias
        for (int li = 0; li < lv->rpre.n; li++) {
            const DLayer *l = &lv->rpre.layers[li];
            size_t cs = (size_t)lv->rpre.cap * C;
            copy_rows(d, l->k, cs, C, l->in_b + C, 0, 0, B, s - 1, C);
            copy_rows(d, l->v, cs, C, l->in_b + 2 * C, 0, 0, B, s - 1, C);
        }
    // valley rows complete in this chunk: those with p0 <= s*i <= p0+n-1
    int i0 = (p0 + s - 1) / s, n_s = (p0 + n - 1) / s - i0 + 1;
    if (n_s > 0) valley_rows(d, lv, i0, n_s, p0 + n);
    // u[t] = up(v)[t] + h[t]; up(v)[t] is row t - s*(t/s) of valley row t/s's group, which exists since s*(t/s) <= t
    if (d->K) {
        d->K->up_add(lv->u, lv->up, lv->h, B, n, p0, lv->cap, lv->cap_s, C, s, lin);
    } else {
        for (int b = 0; b < B; b++)
            for (int i = 0; i < n; i++) {
                int t = p0 + i, g = t / s;
                const float *up = lin ? lv->up + (((size_t)b * lv->cap_s + g) * s + (t - s * g)) * C
                                      : lv->up + ((size_t)b * lv->cap_s + g) * C;
                add(lv->u + ((size_t)b * n + i) * C, up, lv->h + ((size_t)b * lv->cap + t) * C, (size_t)C);
            }
    }
    const float *u = lv->u;
    if (ar) { // u + resample_post(u, v): position t sees v[0 .. t/s]
        block_rows(d, &lv->rpost, lv->u2, lv->u, n, p0);
        add_b(d, lv->u2, lv->u, lv->u2, (size_t)B * n * C);
        u = lv->u2;
    }
    block_rows(d, &lv->post, lv->out, u, n, p0);
    return lv->out;
}

// ---- the model on window positions pos .. pos+n-1 (tokens already in d->tok) ---------------------------

// The pass's tokens (positions d->pos .. d->pos+rows-1) to the GPU
static void upload_tokens(Decoder *d, int rows)
{
    for (int b = 0; b < d->B; b++)
        memcpy(d->tok_pass + (size_t)b * rows, d->tok + (size_t)b * d->L + d->pos, (size_t)rows * sizeof *d->tok);
    d->be->upload(d->tok_dev, d->tok_pass, (size_t)d->B * rows * sizeof *d->tok);
}

// One pass over positions d->pos .. d->pos+rows-1 (on a GPU their tokens uploaded), and the logits of the last
// one when want_logits; only ops on the backend's memory, so on a GPU it can be captured as a graph
static void pass(Decoder *d, int rows, int want_logits)
{
    int B = d->B, C = d->C, p0 = d->pos;
    if (d->K) { // x = E[tok] + pe[p0 + i] on the GPU: with the fused kernels in the first layer's product
        const DBlock *first = d->top.plain ? &d->top.blk : &d->top.pre;
        d->emb_defer = d->fused && first->n > 0 && first->keys == KEYS_CAUSAL;
        if (!d->emb_defer) d->be->encoder_forward(d->x, d->tok_dev, d->wte, d->pe + (size_t)p0 * C, B, rows, C);
    } else {
        for (int b = 0; b < B; b++) // x = E[tok] + pe[pos] (model.md §1)
            for (int i = 0; i < rows; i++)
                add(d->x + ((size_t)b * rows + i) * C, d->wte + (size_t)d->tok[(size_t)b * d->L + p0 + i] * C,
                    d->pe + (size_t)(p0 + i) * C, (size_t)C);
    }
    d->tail_block = NULL, d->tail_set = 0;
    if (d->K && d->fused && want_logits && rows == 1) d->tail_block = d->top.plain ? &d->top.blk : &d->top.post;
    const float *out = level_rows(d, &d->top, d->x, rows);
    assert(!d->emb_defer); // the first layer made the embedding
    d->pos += rows;
    if (d->tail_set) { // (B, C) rows: the last layer's norm, the block's, the logits
        const PendLN *t = &d->tail;
        d->K->ln2_linear(d->logits, t->to, d->tail_out, t->a, t->b, t->w, t->bias, d->tail_block->norm_w,
                         d->tail_block->norm_b, d->wout.w, d->wout.w16, d->wout.b, B, C, d->V);
    } else if (want_logits) {
        const float *last = out; // a single row per item: already packed (B, C)
        if (rows > 1) {
            copy_rows(d, d->last, C, 0, out + (size_t)(rows - 1) * C, (size_t)rows * C, 0, B, 1, C);
            last = d->last;
        }
        linear(d, d->logits, last, &d->wout, B);
    }
}

// ---- the draw on the GPU (dec_draw_set) ------------------------------------------------------------------------
// draw_dev: index, masks | options | keys | tokens
static double *draw_opts(const Decoder *d) { return (double *)(d->draw_dev + d->draw_in); }
static uint64_t *draw_keys(const Decoder *d) { return (uint64_t *)(d->draw_dev + d->draw_in + DRAW_OPTS); }
static int32_t *draw_tokens(const Decoder *d) { return (int32_t *)(draw_keys(d) + d->B); }

// the draw from d->logits with the inputs copied in (index and masks)
static void draw(Decoder *d)
{
    d->K->draw(draw_tokens(d), d->logits, d->B, d->V, (const uint32_t *)(d->draw_dev + sizeof(uint64_t)), draw_keys(d),
               (const uint64_t *)d->draw_dev, draw_opts(d));
}

int dec_draw_set(Decoder *d, const DecDraw *o, const uint64_t *keys)
{
    if (!d->K || d->V > GPU_DRAW_MAX_V) return 0;
    d->draw_on = o != NULL; // graphs of either kind stay: what the draw reads is in device memory
    if (!o) return 1;
    double opts[3] = {o->temperature, o->top_k, o->top_p};
    d->be->upload(draw_opts(d), opts, sizeof opts);
    d->be->upload(draw_keys(d), keys, (size_t)d->B * sizeof *keys);
    return 1;
}

uint32_t *dec_draw_mask(Decoder *d) { return d->K ? (uint32_t *)(d->draw_host + sizeof(uint64_t)) : NULL; }
void dec_draw_index(Decoder *d, uint64_t index)
{
    if (d->K) memcpy(d->draw_host, &index, sizeof index);
}
int dec_mask_words(const Decoder *d) { return d->W; }
const int32_t *dec_drawn(const Decoder *d) { return d->draw_on ? (const int32_t *)(d->draw_host + d->draw_in) : NULL; }

// A single step on the GPU as graph[p0]: the tokens in (from page-locked memory), the step's kernels, the logits
// out. Replayed when the decoder's state matches the one it was captured from, else captured now (replacing the
// position's graph) and launched; run directly when no capture can start. Returns 0, or -1 with err (as run).
static int graph_step(Decoder *d, char *err)
{
    int B = d->B, p0 = d->pos, ns = d->n_state, slot = d->draw_on * d->L + p0; // graphs with the draw apart
    int *key = d->graph_key + (size_t)slot * 2 * ns;
    if (d->K->pdl) d->K->pdl(d->pdl); // as captured (a replay keeps the launches it was captured with)
    size_t tok_bytes = (size_t)B * sizeof *d->tok, logit_bytes = (size_t)B * d->V * sizeof *d->logits_host;
    for (int b = 0; b < B; b++) d->tok_pass[b] = d->tok[(size_t)b * d->L + p0];
    state_io(d, d->state_now, 0);
    if (d->graph[slot] && memcmp(key, d->state_now, (size_t)ns * sizeof *key) == 0 &&
        d->be->graph_launch(d->graph[slot]) == 0) { // else stale (or failed): captured again below
        state_io(d, key + ns, 1);
        d->graph_replayed++;
    } else {
        d->be->graph_free(d->graph[slot]);
        d->graph[slot] = NULL;
        if (d->mega) d->K->mega(1); // (before the capture: its kernels' set-up is no step of the graph)
        int capturing = d->be->graph_begin(); // 0: the ops below run as they are launched
        d->be->copy_async(d->tok_dev, d->tok_pass, tok_bytes, 1);
        if (d->draw_on) d->be->copy_async(d->draw_dev, d->draw_host, d->draw_in, 1);
        pass(d, 1, 1);
        if (d->draw_on) draw(d); // before the logits' copy (it only reads them): in the pass's one launch
        if (d->mega) d->K->mega(0);
        d->be->copy_async(d->logits_host, d->logits, logit_bytes, 0);
        if (d->draw_on) d->be->copy_async(d->draw_host + d->draw_in, draw_tokens(d), (size_t)B * sizeof(int32_t), 0);
        if (capturing && (d->graph[slot] = d->be->graph_end())) { // NULL: the error is kept, sync reports it
            memcpy(key, d->state_now, (size_t)ns * sizeof *key);
            state_io(d, key + ns, 0);
            d->graph_captured++;
            d->be->graph_launch(d->graph[slot]);
        }
    }
    return d->be->sync(err) < 0 ? -1 : 0; // the logits are in logits_host once the stream is done
}

// Runs positions d->pos .. d->pos+n-1 in passes of at most chunk rows; logits of the last position when want.
// Returns 0, or -1 with err when a GPU op failed (the decoder is then of no further use).
static int run(Decoder *d, int n, int want_logits, char *err)
{
    if (d->graph_on && n == 1 && want_logits) return graph_step(d, err);
    if (d->K && d->K->pdl) d->K->pdl(d->pdl); // this decoder's choice (another may have made its own)
    if (d->K && want_logits && d->draw_on) d->be->upload(d->draw_dev, d->draw_host, d->draw_in); // before the pass
    if (d->mega) d->K->mega(1); // each pass one launch (the next pass's tokens' copy launches the one before)
    for (int done = 0, rows; done < n; done += rows) {
        rows = n - done < d->chunk ? n - done : d->chunk;
        if (d->K) upload_tokens(d, rows);
        pass(d, rows, want_logits && done + rows == n);
    }
    if (!d->K) return 0;
    if (want_logits && d->draw_on) draw(d);
    if (d->mega) d->K->mega(0);
    if (d->be->sync(err) < 0) return -1; // a failed op leaves nothing to trust
    if (want_logits) d->be->download(d->logits_host, d->logits, (size_t)d->B * d->V * sizeof *d->logits_host);
    if (want_logits && d->draw_on)
        d->be->download(d->draw_host + d->draw_in, draw_tokens(d), (size_t)d->B * sizeof(int32_t));
    return 0;
}

static int check_tokens(const Decoder *d, const int32_t *tok, size_t n, char *err)
{
    for (size_t i = 0; i < n; i++)
        if (tok[i] < 0 || tok[i] >= d->V)
            return err_set(err, "decoder: token %d at index %zu: outside the vocabulary 0..%d", tok[i], i, d->V - 1);
    return 0;
}

const float *dec_prefill(Decoder *d, const int32_t *tok, int n, char *err)
{
    if (n < 1 || d->pos + n > d->L) {
        err_set(err, "decoder: prefill of %d tokens: the window (input_length %d) has room for %d", n, d->L,
                d->L - d->pos);
        return NULL;
    }
    if (check_tokens(d, tok, (size_t)d->B * n, err) < 0) return NULL;
    for (int b = 0; b < d->B; b++)
        memcpy(d->tok + (size_t)b * d->L + d->pos, tok + (size_t)b * n, (size_t)n * sizeof *tok);
    if (run(d, n, 1, err) < 0) return NULL;
    return d->K ? d->logits_host : d->logits;
}

const float *dec_step(Decoder *d, const int32_t *tok, char *err)
{
    if (check_tokens(d, tok, (size_t)d->B, err) < 0) return NULL;
    if (d->pos == d->L) { // slide: the last `keep` tokens start a new window
        for (int b = 0; b < d->B; b++)
            memmove(d->tok + (size_t)b * d->L, d->tok + (size_t)b * d->L + d->L - d->keep,
                    (size_t)d->keep * sizeof *d->tok);
        dec_reset(d);
        if (run(d, d->keep, 0, err) < 0) return NULL;
    }
    for (int b = 0; b < d->B; b++) d->tok[(size_t)b * d->L + d->pos] = tok[b];
    if (run(d, 1, 1, err) < 0) return NULL;
    return d->K ? d->logits_host : d->logits;
}
