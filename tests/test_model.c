// test_model: the whole model (hg.c) for every configuration kind (with and without up as a hidden state, which
// changes which buffers hg.c's plan shares): every parameter tensor's gradient against
// central finite differences, the gradient of the hidden states (auxiliary losses), causality (changing tokens at
// positions >= t changes no logit before t) and batch independence, for B 1 and 3 and odd lengths.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "hg.h"
#include "ops.h"
#include "util.h"

typedef struct Kind {
    const char *name;
    int plain_layers;           // > 0: a baseline block
    int pre, post, s, valley_n; // hourglass with a plain valley
    int nested;                 // [pre, [1, valley_n, 1], post] with s at both levels
    int linear, attn;
    int no_up_hidden; // save_updown_hidden 0: up, and without attn u, are transients
} Kind;

static const Kind kinds[] = {
    {"baseline", 2, 0, 0, 0, 0, 0, 0, 0, 0},
    {"naive", 0, 1, 1, 2, 1, 0, 0, 0, 0},
    {"linear", 0, 1, 1, 2, 1, 0, 1, 0, 0},
    {"naive_attn", 0, 1, 1, 2, 1, 0, 0, 1, 0},
    {"linear_attn", 0, 1, 1, 2, 1, 0, 1, 1, 0},
    {"nested [1,[1,1,1],1] s 2,2", 0, 1, 1, 2, 1, 1, 1, 1, 0},
    {"s 3", 0, 1, 1, 3, 1, 0, 1, 1, 0},
    {"nested linear, no up hidden", 0, 1, 1, 2, 1, 1, 1, 0, 1},
    {"s 3 naive, no up hidden", 0, 1, 1, 3, 1, 0, 0, 0, 1},
};

static uint64_t rs = 7;
static float frand(void)
{
    rs = rs * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((double)(rs >> 11) * 0x1p-53 * 2 - 1);
}

static HgLevel valley_inner, valley_mid;

static void build(HgModel *m, const Kind *k, float dropout)
{
    HgConfig c = {.V = 20, .C = 8, .NH = 2, .F = 16, .L = 9, .dropout = dropout, .linear = k->linear,
                  .attn_resampling = k->attn, .save_updown_hidden = !k->no_up_hidden};
    if (k->plain_layers) {
        c.top.n_layers = k->plain_layers;
    } else {
        valley_inner = (HgLevel){.n_layers = k->valley_n};
        if (k->nested) {
            valley_mid = (HgLevel){.pre = 1, .post = 1, .s = k->s, .valley = &valley_inner};
            c.top = (HgLevel){.pre = k->pre, .post = k->post, .s = k->s, .valley = &valley_mid};
        } else {
            c.top = (HgLevel){.pre = k->pre, .post = k->post, .s = k->s, .valley = &valley_inner};
        }
    }
    char err[ERR_MAX];
    CHECK(hg_build(m, &c, err) == 0, "%s: build: %s", k->name, err);
    hg_init_weights(m, 1234);
    // LayerNorm weights and biases away from 1/0, so their gradients are exercised in general position.
    // Every ReLU input is kept at least ~0.2 away from 0 (linear1 biases +-(0.5..1), weights scaled by 0.1):
    // finite differences then never straddle a kink, while on and off units both stay in play.
    for (int i = 0; i < m->n_params; i++) {
        const HgParam *p = &m->params[i];
        float *w = m->w + p->offset;
        if (strstr(p->name, "linear1.bias"))
            for (size_t j = 0; j < p->size; j++) w[j] = (frand() < 0 ? -1.0f : 1.0f) * (0.75f + 0.25f * frand());
        else if (strstr(p->name, "linear1.weight"))
            for (size_t j = 0; j < p->size; j++) w[j] *= 0.1f;
        else if (strstr(p->name, "norm") || strstr(p->name, "bias"))
            for (size_t j = 0; j < p->size; j++) w[j] += 0.3f * frand();
    }
}

// L = sum(logits * R) + sum_i sum(hidden_i * Rh_i), in double
typedef struct Loss {
    float *R, *Rh[32];
    int n_hidden;
} Loss;

static double loss_of(HgModel *m, const int32_t *tok, const Loss *L, int train)
{
    hg_forward(m, tok, train, 99);
    double l = 0;
    size_t n = (size_t)m->B * m->T * m->cfg.V;
    for (size_t i = 0; i < n; i++) l += (double)m->logits[i] * L->R[i];
    for (int h = 0; h < m->n_hidden; h++) {
        size_t nh = (size_t)m->B * m->hidden_T[h] * m->cfg.C;
        for (size_t i = 0; i < nh; i++) l += (double)m->hidden[h][i] * L->Rh[h][i];
    }
    return l;
}

static void gradient_check(const Kind *k, float dropout)
{
    HgModel m;
    build(&m, k, dropout);
    int B = 2, T = 7;
    hg_alloc(&m, B, T);
    int32_t tok[14];
    for (int i = 0; i < B * T; i++) tok[i] = 1 + (int)((frand() + 1) * 9.5f);
    tok[3] = 0; // a PAD input: its embedding row must get no gradient
    Loss L = {0};
    size_t nl = (size_t)B * T * m.cfg.V;
    L.R = malloc(nl * sizeof(float));
    for (size_t i = 0; i < nl; i++) L.R[i] = frand();
    int train = dropout > 0;
    hg_forward(&m, tok, train, 99);
    L.n_hidden = m.n_hidden;
    int want_hidden = k->plain_layers ? 0 : (k->nested ? 4 : 2) / (k->no_up_hidden ? 2 : 1); // z2 (and up) per level
    CHECK(m.n_hidden == want_hidden, "%s: %d hidden states, want %d", k->name, m.n_hidden, want_hidden);
    for (int h = 0; h < m.n_hidden; h++) {
        size_t nh = (size_t)B * m.hidden_T[h] * m.cfg.C;
        L.Rh[h] = malloc(nh * sizeof(float));
        for (size_t i = 0; i < nh; i++) L.Rh[h][i] = getenv("NOHID") ? 0 : frand();
    }
    memset(m.dw, 0, m.n_floats * sizeof *m.dw);
    hg_backward(&m, L.R, L.Rh);
    // a few elements of every tensor (all of the small ones). Float32 central differences of a deep ReLU network
    // are either noisy (small eps) or cross a ReLU kink (large eps), so a probe passes when one of two steps
    // agrees: |numeric - analytic| <= 1e-3 + 1e-2 * max(|numeric|, |analytic|). A wrong gradient fails both.
    static const float steps[] = {1e-2f, 3e-3f};
    int bad_tensors = 0, wte_index = hg_param_index(&m, "embedding.weight");
    for (int pi = 0; pi < m.n_params; pi++) {
        const HgParam *p = &m.params[pi];
        size_t n_probe = p->size < 12 ? p->size : 12, bad = 0;
        double worst = 0;
        for (size_t j = 0; j < n_probe; j++) {
            size_t idx = p->offset + (p->size <= 12 ? j : (j * 7919 + 13) % p->size);
            if (pi == wte_index && idx - p->offset < (size_t)m.cfg.C) continue; // PAD row: no gradient by design
            double best = INFINITY, ana = m.dw[idx];
            int ok = 0;
            for (size_t e = 0; e < sizeof steps / sizeof *steps && !ok; e++) {
                float save = m.w[idx], eps = steps[e];
                m.w[idx] = save + eps;
                double lp = loss_of(&m, tok, &L, train);
                m.w[idx] = save - eps;
                double lm = loss_of(&m, tok, &L, train);
                m.w[idx] = save;
                double num = (lp - lm) / (2 * eps), err = fabs(num - ana);
                ok = err <= 1e-3 + 1e-2 * fmax(fabs(num), fabs(ana));
                best = fmin(best, err);
            }
            if (!ok) bad++;
            if (!ok && best > worst) worst = best;
        }
        if (bad) {
            bad_tensors++;
            fprintf(stderr, "  %s%s: %s: %zu of %zu probes off, max abs error %.3g\n", k->name,
                    dropout > 0 ? " (dropout)" : "", p->name, bad, n_probe, worst);
        }
    }
    CHECK(bad_tensors == 0, "%s%s: %d parameter tensors with wrong gradients", k->name, dropout > 0 ? " (dropout)" : "",
          bad_tensors);
    int wte = hg_param_index(&m, "embedding.weight");
    double pad_grad = 0;
    for (int c = 0; c < m.cfg.C; c++) pad_grad += fabs(m.dw[m.params[wte].offset + c]);
    CHECK(pad_grad == 0, "%s: PAD embedding row has gradient %g", k->name, pad_grad);
    free(L.R);
    for (int h = 0; h < L.n_hidden; h++) free(L.Rh[h]);
    hg_free(&m);
}

static void causality(const Kind *k)
{
    HgModel m;
    build(&m, k, 0);
    static const int lengths[] = {1, 2, 5, 7, 9};
    double worst = 0, worst_batch = 0;
    for (size_t li = 0; li < sizeof lengths / sizeof *lengths; li++) {
        int T = lengths[li];
        for (int B = 1; B <= 3; B += 2) {
            hg_alloc(&m, B, T);
            int32_t tok[27], alt[27];
            for (int i = 0; i < B * T; i++) tok[i] = 1 + (int)((frand() + 1) * 9.5f);
            size_t nl = (size_t)B * T * m.cfg.V;
            float *ref = malloc(nl * sizeof(float));
            hg_forward(&m, tok, 0, 1);
            memcpy(ref, m.logits, nl * sizeof(float));
            for (int t = 1; t < T; t++) {
                memcpy(alt, tok, sizeof tok);
                for (int b = 0; b < B; b++)
                    for (int u = t; u < T; u++) alt[b * T + u] = 1 + (alt[b * T + u] + 5) % 19;
                hg_forward(&m, alt, 0, 1);
                for (int b = 0; b < B; b++)
                    for (size_t i = 0; i < (size_t)t * m.cfg.V; i++) {
                        size_t o = (size_t)b * T * m.cfg.V + i;
                        worst = fmax(worst, fabs(m.logits[o] - ref[o]));
                    }
            }
            if (B == 3) { // item 1 alone, and item 1 next to other neighbours, gives the same logits
                int32_t solo[9];
                memcpy(solo, tok + T, (size_t)T * sizeof *solo);
                hg_alloc(&m, 1, T);
                hg_forward(&m, solo, 0, 1);
                for (size_t i = 0; i < (size_t)T * m.cfg.V; i++)
                    worst_batch = fmax(worst_batch, fabs(m.logits[i] - ref[(size_t)T * m.cfg.V + i]));
            }
            free(ref);
        }
    }
    CHECK(worst <= 1e-6, "%s: a logit before t moved by %.3g when tokens >= t changed (limit 1e-6)", k->name, worst);
    CHECK(worst_batch <= 1e-6, "%s: a batch item's logits depend on the others by %.3g (limit 1e-6)", k->name,
          worst_batch);
    hg_free(&m);
}

// The training step gives the same bytes on 1 and 2 threads (and on 2 twice), at a size where every op splits
// its work: attention over two row tiles, matmuls and elementwise ops over several blocks. Dropout on.
static void thread_independence(void)
{
    static HgLevel valley = {.n_layers = 1};
    HgConfig c = {.V = 40, .C = 64, .NH = 2, .F = 256, .L = 200, .dropout = 0.1f, .linear = 1, .attn_resampling = 1,
                  .save_updown_hidden = 1, .top = {.pre = 1, .post = 1, .s = 2, .valley = &valley}};
    int B = 2, T = 199;
    HgModel m;
    char err[ERR_MAX];
    CHECK(hg_build(&m, &c, err) == 0, "threads: build: %s", err);
    hg_init_weights(&m, 5);
    hg_alloc(&m, B, T);
    int32_t *tok = malloc(sizeof(int32_t) * B * T);
    for (int i = 0; i < B * T; i++) tok[i] = 1 + (i * 37) % 39;
    size_t nl = (size_t)B * T * c.V;
    float *R = malloc(nl * sizeof(float)), *ref_logits = malloc(nl * sizeof(float));
    float *ref_dw = malloc(m.n_floats * sizeof(float));
    for (size_t i = 0; i < nl; i++) R[i] = frand();
    int saved = ops_threads();
    static const int counts[] = {1, 2, 2, 3};
    for (size_t k = 0; k < sizeof counts / sizeof *counts; k++) {
        ops_set_threads(counts[k]);
        hg_forward(&m, tok, 1, 7);
        memset(m.dw, 0, m.n_floats * sizeof *m.dw);
        hg_backward(&m, R, NULL);
        if (k == 0) {
            memcpy(ref_logits, m.logits, nl * sizeof(float));
            memcpy(ref_dw, m.dw, m.n_floats * sizeof(float));
            continue;
        }
        CHECK(memcmp(ref_logits, m.logits, nl * sizeof(float)) == 0, "logits on %d threads differ from 1 thread",
              counts[k]);
        for (int i = 0; i < m.n_params; i++) {
            const HgParam *p = &m.params[i];
            CHECK(memcmp(ref_dw + p->offset, m.dw + p->offset, p->size * sizeof(float)) == 0,
                  "gradient of %s on %d threads differs from 1 thread", p->name, counts[k]);
        }
    }
    ops_set_threads(saved);
    free(tok), free(R), free(ref_logits), free(ref_dw);
    hg_free(&m);
}

int main(void)
{
    thread_independence();
    for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++) {
        gradient_check(&kinds[i], 0);
        causality(&kinds[i]);
    }
    gradient_check(&kinds[4], 0.1f); // dropout masks are a function of the seed: the same in every probe
    return check_done();
}
