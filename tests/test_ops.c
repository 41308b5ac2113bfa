// test_ops: every op's backward against central finite differences of L = sum(out * dout) with a random dout,
// and the fast forwards against plain-loop references (sgemm vs naive, attention vs the formula of model.md §3).
// Float32 ops, double sums; tolerances are stated at each check.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ops.h"

static uint64_t rng_state = 42;
static float frand(void) // uniform in [-1, 1)
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((double)(rng_state >> 11) * 0x1p-53 * 2.0 - 1.0);
}
static float *rnd(size_t n, float s)
{
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = s * frand();
    return p;
}
static float *zeros(size_t n) { return calloc(n, sizeof(float)); }

// ---- generic finite-difference check ----------------------------------------------------------

typedef void (*FwdFn)(void *ctx);
typedef struct Probe {
    FwdFn fwd;
    void *ctx;
    const float *out, *dout;
    size_t n_out;
} Probe;

static double probe_loss(const Probe *p)
{
    p->fwd(p->ctx);
    double l = 0;
    for (size_t i = 0; i < p->n_out; i++) l += (double)p->out[i] * p->dout[i];
    return l;
}

// |numeric - analytic| <= 5e-4 + 3e-3 * max(|numeric|, |analytic|) for every element of x (eps 1e-2)
static void check_grad(const char *name, float *x, size_t n, const float *analytic, const Probe *p)
{
    const float eps = 1e-2f;
    double max_err = 0;
    size_t bad = 0, worst = 0;
    for (size_t i = 0; i < n; i++) {
        float save = x[i];
        x[i] = save + eps;
        double lp = probe_loss(p);
        x[i] = save - eps;
        double lm = probe_loss(p);
        x[i] = save;
        double num = (lp - lm) / (2.0 * eps), ana = analytic[i];
        double err = fabs(num - ana), tol = 5e-4 + 3e-3 * fmax(fabs(num), fabs(ana));
        if (err > tol) bad++;
        if (err > max_err) max_err = err, worst = i;
    }
    probe_loss(p); // leave the forward state as it was
    CHECK(bad == 0, "%s: %zu of %zu gradients off, max abs error %.3g at %zu (analytic %.6g)", name, bad, n, max_err,
          worst, analytic[worst]);
}

// The same check on n_probe elements spread over x (for tensors too large to probe whole).
static void check_grad_some(const char *name, float *x, size_t n, size_t n_probe, const float *analytic,
                            const Probe *p)
{
    const float eps = 1e-2f;
    size_t bad = 0;
    double max_err = 0;
    for (size_t k = 0; k < n_probe; k++) {
        size_t i = (k * 7919 + 13) % n;
        float save = x[i];
        x[i] = save + eps;
        double lp = probe_loss(p);
        x[i] = save - eps;
        double lm = probe_loss(p);
        x[i] = save;
        double num = (lp - lm) / (2.0 * eps), ana = analytic[i], err = fabs(num - ana);
        if (err > 5e-4 + 3e-3 * fmax(fabs(num), fabs(ana))) bad++;
        max_err = fmax(max_err, err);
    }
    probe_loss(p);
    CHECK(bad == 0, "%s: %zu of %zu probed gradients off, max abs error %.3g", name, bad, n_probe, max_err);
}

static int same(const void *a, const void *b, size_t bytes) { return memcmp(a, b, bytes) == 0; }

// ---- linear -----------------------------------------------------------------------------------

typedef struct {
    float *out, *inp, *w, *b;
    int N, IC, OC;
} LinCtx;
static void lin_fwd(void *c)
{
    LinCtx *x = c;
    linear_forward(x->out, x->inp, x->w, x->b, x->N, x->IC, x->OC);
}

static void test_linear(void)
{
    LinCtx c = {.N = 6, .IC = 5, .OC = 7};
    c.inp = rnd(30, 1), c.w = rnd(35, 1), c.b = rnd(7, 1), c.out = zeros(42);
    float *ref = zeros(42), *dout = rnd(42, 1), *dinp = zeros(30), *dw = zeros(35), *db = zeros(7);
    lin_fwd(&c);
    matmul_forward_naive(ref, c.inp, c.w, c.b, c.N, c.IC, c.OC);
    double e = 0;
    for (int i = 0; i < 42; i++) e = fmax(e, fabs(ref[i] - c.out[i]));
    CHECK(e < 1e-5, "linear forward vs naive: max abs error %.3g (tolerance 1e-5)", e);
    linear_backward(dinp, dw, db, dout, c.inp, c.w, c.N, c.IC, c.OC);
    Probe p = {lin_fwd, &c, c.out, dout, 42};
    check_grad("linear dinp", c.inp, 30, dinp, &p);
    check_grad("linear dw", c.w, 35, dw, &p);
    check_grad("linear db", c.b, 7, db, &p);
    // backward accumulates: a second call doubles the gradient
    float before = dw[3];
    linear_backward(dinp, dw, db, dout, c.inp, c.w, c.N, c.IC, c.OC);
    CHECK(fabsf(dw[3] - 2 * before) < 1e-5f, "linear backward accumulates");
    free(c.inp), free(c.w), free(c.b), free(c.out), free(ref), free(dout), free(dinp), free(dw), free(db);
}

// ---- LayerNorm --------------------------------------------------------------------------------

typedef struct {
    float *out, *mean, *rstd, *inp, *w, *b;
    int N, C;
} LnCtx;
static void ln_fwd(void *c)
{
    LnCtx *x = c;
    layernorm_forward(x->out, x->mean, x->rstd, x->inp, x->w, x->b, x->N, x->C);
}

static void test_layernorm(void)
{
    LnCtx c = {.N = 4, .C = 6};
    c.inp = rnd(24, 2), c.w = rnd(6, 1), c.b = rnd(6, 1), c.out = zeros(24), c.mean = zeros(4), c.rstd = zeros(4);
    float *dout = rnd(24, 1), *dinp = zeros(24), *dw = zeros(6), *db = zeros(6);
    ln_fwd(&c);
    // forward: each row of (out - b) / w has mean 0 and variance var/(var+eps)
    double m = 0;
    for (int j = 0; j < 6; j++) m += (c.out[j] - c.b[j]) / c.w[j];
    CHECK(fabs(m / 6) < 1e-5, "layernorm row mean %.3g", m / 6);
    layernorm_backward(dinp, dw, db, dout, c.inp, c.w, c.mean, c.rstd, c.N, c.C);
    Probe p = {ln_fwd, &c, c.out, dout, 24};
    check_grad("layernorm dinp", c.inp, 24, dinp, &p);
    check_grad("layernorm dw", c.w, 6, dw, &p);
    check_grad("layernorm db", c.b, 6, db, &p);
    free(c.inp), free(c.w), free(c.b), free(c.out), free(c.mean), free(c.rstd), free(dout), free(dinp), free(dw),
        free(db);
}

// ---- embedding, relu, dropout -----------------------------------------------------------------

typedef struct {
    float *out, *wte, *pe;
    int32_t *tok;
} EncCtx;
static void enc_fwd(void *c)
{
    EncCtx *x = c;
    encoder_forward(x->out, x->tok, x->wte, x->pe, 2, 3, 4);
}

static void test_encoder(void)
{
    int32_t tok[6] = {0, 2, 2, 1, 0, 3};
    EncCtx c = {zeros(24), rnd(16, 1), zeros(12), tok};
    positional_table(c.pe, 3, 4);
    CHECK(fabsf(c.pe[4 + 0] - sinf(1.0f)) < 1e-6f && fabsf(c.pe[4 + 3] - cosf(expf(-2 * logf(10000) / 4))) < 1e-6f,
          "positional table values");
    float *dout = rnd(24, 1), *dwte = zeros(16);
    encoder_backward(dwte, dout, tok, 2, 3, 4);
    Probe p = {enc_fwd, &c, c.out, dout, 24};
    float *dwte_fd = zeros(16);
    memcpy(dwte_fd, dwte, 16 * sizeof(float));
    memset(dwte_fd, 0, 4 * sizeof(float)); // compare rows 1..3 by finite differences; row 0 must stay 0
    check_grad("embedding dwte rows 1..3", c.wte + 4, 12, dwte + 4, &p);
    CHECK(dwte[0] == 0 && dwte[1] == 0 && dwte[2] == 0 && dwte[3] == 0, "PAD row receives no gradient");
    free(c.out), free(c.wte), free(c.pe), free(dout), free(dwte), free(dwte_fd);
}

typedef struct {
    float *out, *inp;
    uint8_t *mask;
    float p;
    size_t n;
} DropCtx;
static void drop_fwd(void *c)
{
    DropCtx *x = c;
    dropout_forward(x->out, x->mask, x->inp, x->p, 7, x->n);
}
static void relu_fwd(void *c)
{
    DropCtx *x = c;
    relu_forward(x->out, x->inp, x->n);
}

static void rd_fwd(void *c)
{
    DropCtx *x = c;
    relu_dropout_forward(x->out, x->mask, x->inp, x->p, 7, x->n);
}

static void test_elementwise(void)
{
    size_t n = 4000;
    DropCtx c = {zeros(n), rnd(n, 1), malloc(n), 0.25f, n};
    drop_fwd(&c);
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) kept += c.mask[i];
    CHECK(fabs((double)kept / n - 0.75) < 0.03, "dropout keeps %.3f, want 0.75", (double)kept / n);
    CHECK(c.mask[0] ? fabsf(c.out[0] - c.inp[0] / 0.75f) < 1e-6f : c.out[0] == 0, "dropout scales kept values");
    uint8_t *mask2 = malloc(n);
    dropout_forward(c.out, mask2, c.inp, 0.25f, 7, n);
    CHECK(memcmp(mask2, c.mask, n) == 0, "dropout is a function of the seed");
    float *dout = rnd(n, 1), *dinp = zeros(n);
    dropout_backward(dinp, dout, c.mask, c.p, n);
    Probe p = {drop_fwd, &c, c.out, dout, n};
    check_grad("dropout dinp", c.inp, 200, dinp, &p);
    // relu away from the kink
    for (size_t i = 0; i < n; i++)
        if (fabsf(c.inp[i]) < 0.05f) c.inp[i] = 0.5f;
    relu_fwd(&c);
    memset(dinp, 0, n * sizeof(float));
    relu_backward(dinp, dout, c.out, n);
    Probe pr = {relu_fwd, &c, c.out, dout, n};
    check_grad("relu dinp", c.inp, 200, dinp, &pr);
    // relu + dropout in one pass: the same bytes as the two ops (odd n, long enough for the threaded path), and
    // its backward against finite differences away from the kink
    for (size_t k = 0; k < 2; k++) {
        float p = k ? 0.3f : 0.0f;
        size_t m = 50001;
        float *x = rnd(m, 1), *r = zeros(m), *two = zeros(m), *one = zeros(m), *g = rnd(m, 1);
        float *d_two = zeros(m), *d_r = zeros(m), *d_one = zeros(m);
        uint8_t *m_two = malloc(m), *m_one = malloc(m);
        relu_forward(r, x, m);
        dropout_forward(two, m_two, r, p, 11, m);
        relu_dropout_forward(one, m_one, x, p, 11, m);
        CHECK(same(one, two, m * 4) && same(m_one, m_two, m), "relu_dropout_forward p %.1f: relu then dropout", p);
        dropout_backward(d_r, g, m_two, p, m);
        relu_backward(d_two, d_r, r, m);
        relu_dropout_backward(d_one, g, one, p, m);
        CHECK(same(d_one, d_two, m * 4), "relu_dropout_backward p %.1f (from its output): dropout then relu backward",
              p);
        relu_dropout_forward(r, NULL, x, p, 11, m); // the mask not kept: the same output
        CHECK(same(one, r, m * 4), "relu_dropout_forward p %.1f without a mask: the same bytes", p);
        free(x), free(r), free(two), free(one), free(g), free(d_two), free(d_r), free(d_one), free(m_two), free(m_one);
    }
    // x = LayerNorm(x + dropout(y)) without a mask kept (a GPU's plan): the bytes of the run that keeps it, the
    // backward drawing the bits again (sizes past its 4,096-element pieces, odd, and p 0)
    for (int k = 0; k < 3; k++) {
        float p = k == 0 ? 0.0f : k == 1 ? 0.1f : 0.5f;
        int N = k == 2 ? 37 : 129, C = k == 2 ? 7 : 100;
        size_t m = (size_t)N * C;
        float *x = rnd(m, 1), *y = rnd(m, 1), *w = rnd(C, 1), *b = rnd(C, 1), *g = rnd(m, 1), *s = zeros(m);
        float *res[2], *out[2], *mean[2], *rstd[2], *dx[2], *dy[2], *dw[2], *db[2];
        uint8_t *mask = malloc(m);
        for (int r = 0; r < 2; r++) {
            res[r] = zeros(m), out[r] = zeros(m), mean[r] = zeros(N), rstd[r] = zeros(N), dx[r] = zeros(m);
            dy[r] = zeros(m), dw[r] = zeros(C), db[r] = zeros(C);
            residual_layernorm_forward(out[r], mean[r], rstd[r], res[r], r ? NULL : mask, x, y, p, 21, w, b, N, C);
            residual_layernorm_backward(dx[r], dy[r], dw[r], db[r], s, g, res[r], r ? NULL : mask, p, 21, w, mean[r],
                                        rstd[r], N, C);
        }
        CHECK(same(res[0], res[1], m * 4) && same(out[0], out[1], m * 4) && same(dx[0], dx[1], m * 4) &&
                  same(dy[0], dy[1], m * 4) && same(dw[0], dw[1], C * 4) && same(db[0], db[1], C * 4),
              "residual_layernorm p %.1f (%d x %d) without a mask: the bytes with one", p, N, C);
        for (int r = 0; r < 2; r++)
            free(res[r]), free(out[r]), free(mean[r]), free(rstd[r]), free(dx[r]), free(dy[r]), free(dw[r]), free(db[r]);
        free(x), free(y), free(w), free(b), free(g), free(s), free(mask);
    }
    memset(dinp, 0, n * sizeof(float));
    c.p = 0.25f;
    rd_fwd(&c);
    relu_dropout_backward(dinp, dout, c.out, c.p, n);
    Probe prd = {rd_fwd, &c, c.out, dout, n};
    check_grad("relu_dropout dinp", c.inp, 200, dinp, &prd);
    free(c.out), free(c.inp), free(c.mask), free(mask2), free(dout), free(dinp);
}

// ---- attention --------------------------------------------------------------------------------

typedef struct {
    float *out, *probs, *scratch, *q, *k, *v, *Er;
    uint8_t *mask;
    AttnDims d;
} AttCtx;
static void att_fwd(void *c)
{
    AttCtx *x = c;
    attention_forward(x->out, x->probs, x->mask, x->scratch, x->q, x->k, x->v, x->Er, &x->d);
}

// model.md §3 written out directly, in double, no dropout
static void attention_reference(double *out, const AttCtx *c)
{
    const AttnDims *d = &c->d;
    int HS = d->C / d->NH;
    double scale = 1.0 / sqrt(HS);
    double *s = malloc(sizeof(double) * d->Tk);
    for (int b = 0; b < d->B; b++)
        for (int h = 0; h < d->NH; h++)
            for (int i = 0; i < d->Tq; i++) {
                const float *qi = c->q + ((size_t)b * d->Tq + i) * d->ldq + h * HS;
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j < d->n_keys[i]; j++) {
                    const float *kj = c->k + ((size_t)b * d->Tk + j) * d->ldk + h * HS;
                    double v = 0;
                    for (int e = 0; e < HS; e++) v += scale * qi[e] * kj[e];
                    if (c->Er)
                        for (int e = 0; e < HS; e++) v += scale * qi[e] * c->Er[(size_t)(d->L - 1 - (i - j)) * HS + e];
                    s[j] = v;
                    mx = fmax(mx, v);
                }
                for (int j = 0; j < d->n_keys[i]; j++) sum += s[j] = exp(s[j] - mx);
                for (int e = 0; e < HS; e++) {
                    double o = 0;
                    for (int j = 0; j < d->n_keys[i]; j++)
                        o += s[j] / sum * c->v[((size_t)b * d->Tk + j) * d->ldv + h * HS + e];
                    out[((size_t)b * d->Tq + i) * d->C + h * HS + e] = o;
                }
            }
    free(s);
}

// par: scratch of attention_scratch_floats() (every thread, dEr summed from per-task partials), checked against
// the one-thread path of the documented minimum scratch: the same bytes, but dEr (summed in another order).
static void run_attention_case(const char *name, int Tq, int Tk, const int *n_keys, int with_er, float dropout, int par)
{
    int B = 2, C = 8, NH = 2, L = Tq > 5 ? Tq + 2 : 7;
    AttCtx c = {0};
    c.d = (AttnDims){.B = B, .Tq = Tq, .Tk = Tk, .C = C, .NH = NH, .L = L, .ldq = 3 * C, .ldk = 2 * C, .ldv = 2 * C,
                     .n_keys = n_keys, .dropout = dropout, .seed = {.add = 99}};
    size_t n_scratch = 2 * (size_t)Tq * Tk + (size_t)Tq * Tq;
    if (par) c.d.scratch_floats = attention_scratch_floats(&c.d), n_scratch = c.d.scratch_floats;
    // q inside a (B,Tq,3C) buffer and k, v interleaved in one (B,Tk,2C) buffer: the strides are exercised
    float *qbuf = rnd((size_t)B * Tq * 3 * C, 1), *kv = rnd((size_t)B * Tk * 2 * C, 1);
    c.q = qbuf, c.k = kv, c.v = kv + C;
    c.Er = with_er ? rnd((size_t)L * (C / NH), 1) : NULL;
    c.out = zeros((size_t)B * Tq * C), c.probs = zeros((size_t)B * NH * Tq * Tk), c.mask = malloc((size_t)B * NH * Tq * Tk);
    c.scratch = zeros(n_scratch);
    att_fwd(&c);
    if (dropout == 0) {
        double *ref = malloc(sizeof(double) * B * Tq * C), e = 0;
        attention_reference(ref, &c);
        for (int i = 0; i < B * Tq * C; i++) e = fmax(e, fabs(ref[i] - c.out[i]));
        CHECK(e < 1e-5, "%s: forward vs formula max abs error %.3g (tolerance 1e-5)", name, e);
        free(ref);
    }
    float *dout = rnd((size_t)B * Tq * C, 1), *dq = zeros((size_t)B * Tq * 3 * C), *dkv = zeros((size_t)B * Tk * 2 * C);
    float *dEr = with_er ? zeros((size_t)L * (C / NH)) : NULL;
    attention_backward(dq, dkv, dkv + C, dEr, c.scratch, dout, c.probs, c.mask, c.q, c.k, c.v, c.Er, &c.d);
    Probe p = {att_fwd, &c, c.out, dout, (size_t)B * Tq * C};
    char label[128];
    size_t nq = (size_t)B * Tq * 3 * C, nkv = (size_t)B * Tk * 2 * C;
    snprintf(label, sizeof label, "%s dq (and untouched columns)", name);
    if (nq <= 400) check_grad(label, qbuf, nq, dq, &p);
    else check_grad_some(label, qbuf, nq, 150, dq, &p);
    snprintf(label, sizeof label, "%s dk, dv", name);
    if (nkv <= 400) check_grad(label, kv, nkv, dkv, &p);
    else check_grad_some(label, kv, nkv, 150, dkv, &p);
    if (with_er) {
        snprintf(label, sizeof label, "%s dEr", name);
        if (L * (C / NH) <= 400) check_grad(label, c.Er, (size_t)L * (C / NH), dEr, &p);
        else check_grad_some(label, c.Er, (size_t)L * (C / NH), 150, dEr, &p);
    }
    if (par) { // the one-thread path of the minimum scratch
        AttCtx s = c;
        s.d.scratch_floats = 0;
        s.out = zeros((size_t)B * Tq * C), s.probs = zeros((size_t)B * NH * Tq * Tk);
        s.mask = malloc((size_t)B * NH * Tq * Tk);
        att_fwd(&s);
        CHECK(same(s.out, c.out, (size_t)B * Tq * C * 4) && same(s.probs, c.probs, (size_t)B * NH * Tq * Tk * 4) &&
                  same(s.mask, c.mask, (size_t)B * NH * Tq * Tk), "%s: forward differs from the one-thread path", name);
        float *dq1 = zeros(nq), *dkv1 = zeros(nkv), *dEr1 = with_er ? zeros((size_t)L * (C / NH)) : NULL;
        attention_backward(dq1, dkv1, dkv1 + C, dEr1, s.scratch, dout, s.probs, s.mask, s.q, s.k, s.v, s.Er, &s.d);
        CHECK(same(dq1, dq, nq * 4) && same(dkv1, dkv, nkv * 4), "%s: dq, dk, dv differ from the one-thread path",
              name);
        double e = 0, scale = 0;
        for (size_t i = 0; with_er && i < (size_t)L * (C / NH); i++)
            e = fmax(e, fabs(dEr1[i] - dEr[i])), scale = fmax(scale, fabs(dEr1[i]));
        CHECK(e <= 1e-5 * scale, "%s: dEr from partials vs one thread: %.3g (tolerance 1e-5 * %.3g)", name, e, scale);
        free(s.out), free(s.probs), free(s.mask), free(dq1), free(dkv1), free(dEr1);
    }
    free(qbuf), free(kv), free(c.Er), free(c.out), free(c.probs), free(c.mask), free(c.scratch), free(dout), free(dq),
        free(dkv), free(dEr);
}

static void test_attention(void)
{
    int causal[5] = {1, 2, 3, 4, 5};
    run_attention_case("causal RPR attention", 5, 5, causal, 1, 0, 0);
    run_attention_case("causal RPR attention, dropout 0.3", 5, 5, causal, 1, 0.3f, 0);
    run_attention_case("causal attention without Er", 5, 5, causal, 0, 0, 0);
    // coverage rule of attention resampling, s = 2: shortened row i sees original rows 0..2i+1 (pre),
    // original row t sees shortened rows 0..t/2 (post)
    int pre[3] = {2, 4, 6}, post[6] = {1, 1, 2, 2, 3, 3};
    run_attention_case("resample_pre cross-attention", 3, 6, pre, 0, 0, 0);
    run_attention_case("resample_post cross-attention", 6, 3, post, 0, 0, 0);
    // long enough for two tiles of query rows (tiles stop at their last visible key), on every thread
    int big_causal[201], big_pre[100], big_post[200];
    for (int i = 0; i < 201; i++) big_causal[i] = i + 1;
    for (int i = 0; i < 200; i++) big_post[i] = i / 2 + 1;
    for (int i = 0; i < 100; i++) big_pre[i] = 2 * i + 2;
    int saved = ops_threads();
    ops_set_threads(2);
    run_attention_case("causal RPR attention T 201, threads", 201, 201, big_causal, 1, 0, 1);
    run_attention_case("causal RPR attention T 201, dropout 0.2, threads", 201, 201, big_causal, 1, 0.2f, 1);
    run_attention_case("resample_pre T 100 x 201, dropout 0.2, threads", 100, 201, big_pre, 0, 0.2f, 1);
    run_attention_case("resample_post T 200 x 100, threads", 200, 100, big_post, 0, 0, 1);
    ops_set_threads(saved);
    // causality: changing keys/values at positions >= t changes no output before t
    AttCtx c = {0};
    c.d = (AttnDims){.B = 1, .Tq = 5, .Tk = 5, .C = 8, .NH = 2, .L = 7, .ldq = 8, .ldk = 8, .ldv = 8,
                     .n_keys = causal};
    c.q = rnd(40, 1), c.k = rnd(40, 1), c.v = rnd(40, 1), c.Er = rnd(28, 1);
    c.out = zeros(40), c.probs = zeros(50), c.mask = malloc(50), c.scratch = zeros(75);
    att_fwd(&c);
    float before[24];
    memcpy(before, c.out, sizeof before);
    for (int i = 24; i < 40; i++) c.k[i] += 3, c.v[i] -= 2, c.q[i] *= 5;
    att_fwd(&c);
    CHECK(memcmp(before, c.out, sizeof before) == 0, "rows 0..2 do not see rows 3..4");
    free(c.q), free(c.k), free(c.v), free(c.Er), free(c.out), free(c.probs), free(c.mask), free(c.scratch);
}

// ---- hourglass resampling and losses ------------------------------------------------------------

enum { OP_PAD, OP_CROP, OP_SHIFT, OP_MEANPOOL, OP_REPEAT, OP_CE, OP_COSPAIRS, OP_EXPCOS };
typedef struct {
    int op, B, T, C, K, Tp, V;
    float *out, *inp, *probs;
    int32_t *targets;
    float scalar; // a scalar-valued op's result, as a 1-element out
} UnCtx;

static void un_fwd(void *c)
{
    UnCtx *x = c;
    long n;
    int nv;
    switch (x->op) {
    case OP_PAD: pad_forward(x->out, x->inp, x->B, x->T, x->Tp, x->C); break;
    case OP_CROP: crop_forward(x->out, x->inp, x->B, x->Tp, x->T, x->C); break;
    case OP_SHIFT: shift_forward(x->out, x->inp, x->B, x->T, x->C, x->K); break;
    case OP_MEANPOOL: meanpool_forward(x->out, x->inp, x->B, x->T, x->C, x->K); break;
    case OP_REPEAT: repeat_forward(x->out, x->inp, x->B, x->T, x->C, x->K); break;
    case OP_CE: x->out[0] = crossentropy_forward(x->probs, x->inp, x->targets, x->B * x->T, x->V, &nv); break;
    case OP_COSPAIRS: x->out[0] = (float)cosine_pairs_forward(x->inp, x->B, x->T, x->C, &n); break;
    case OP_EXPCOS: x->out[0] = (float)exp_cosine_forward(x->inp, x->B, x->T, x->C); break;
    }
}

static void un_case(const char *name, UnCtx c, size_t n_in, size_t n_out)
{
    c.inp = rnd(n_in, 1), c.out = zeros(n_out);
    float *dout = rnd(n_out, 1), *dinp = zeros(n_in);
    un_fwd(&c);
    int nv = 0;
    long np;
    switch (c.op) {
    case OP_PAD: pad_backward(dinp, dout, c.B, c.T, c.Tp, c.C); break;
    case OP_CROP: crop_backward(dinp, dout, c.B, c.Tp, c.T, c.C); break;
    case OP_SHIFT: shift_backward(dinp, dout, c.B, c.T, c.C, c.K); break;
    case OP_MEANPOOL: meanpool_backward(dinp, dout, c.B, c.T, c.C, c.K); break;
    case OP_REPEAT: repeat_backward(dinp, dout, c.B, c.T, c.C, c.K); break;
    case OP_CE:
        crossentropy_forward(c.probs, c.inp, c.targets, c.B * c.T, c.V, &nv);
        crossentropy_backward(dinp, c.probs, c.targets, c.B * c.T, c.V, nv, dout[0]);
        break;
    case OP_COSPAIRS: cosine_pairs_forward(c.inp, c.B, c.T, c.C, &np), cosine_pairs_backward(dinp, c.inp, c.B, c.T, c.C, dout[0]); break;
    case OP_EXPCOS: exp_cosine_backward(dinp, c.inp, c.B, c.T, c.C, dout[0]); break;
    }
    Probe p = {un_fwd, &c, c.out, dout, n_out};
    check_grad(name, c.inp, n_in, dinp, &p);
    free(c.inp), free(c.out), free(dout), free(dinp);
}

static void test_hourglass_ops(void)
{
    un_case("pad 5 -> 6 rows", (UnCtx){.op = OP_PAD, .B = 2, .T = 5, .Tp = 6, .C = 3}, 30, 36);
    un_case("crop 6 -> 5 rows", (UnCtx){.op = OP_CROP, .B = 2, .T = 5, .Tp = 6, .C = 3}, 36, 30);
    un_case("shift by 2 (s = 3)", (UnCtx){.op = OP_SHIFT, .B = 2, .T = 6, .C = 3, .K = 3}, 36, 36);
    un_case("mean pool s = 3", (UnCtx){.op = OP_MEANPOOL, .B = 2, .T = 6, .C = 3, .K = 3}, 36, 12);
    un_case("repeat s = 2", (UnCtx){.op = OP_REPEAT, .B = 2, .T = 6, .C = 3, .K = 2}, 18, 36);
    // the shift is along time and per batch item (the reference shifted the batch axis)
    float in[2 * 3] = {1, 2, 3, 4, 5, 6}, out[6];
    shift_forward(out, in, 2, 3, 1, 2);
    CHECK(out[0] == 0 && out[1] == 1 && out[2] == 2 && out[3] == 0 && out[4] == 4 && out[5] == 5,
          "shift: [0 1 2 | 0 4 5], got [%g %g %g | %g %g %g]", out[0], out[1], out[2], out[3], out[4], out[5]);
    int32_t targets[8] = {3, 0, 1, 4, 0, 2, 2, 1};
    float probs[8 * 5];
    un_case("cross-entropy with PAD targets", (UnCtx){.op = OP_CE, .B = 2, .T = 4, .V = 5, .targets = targets, .probs = probs}, 40, 1);
    // PAD rows do not count: equal to the mean over the 6 others, computed directly
    float logits[40];
    for (int i = 0; i < 40; i++) logits[i] = frand();
    int nv;
    float ce = crossentropy_forward(probs, logits, targets, 8, 5, &nv);
    double want = 0;
    for (int i = 0; i < 8; i++) {
        if (!targets[i]) continue;
        double z = 0;
        for (int v = 0; v < 5; v++) z += exp(logits[i * 5 + v]);
        want += -(logits[i * 5 + targets[i]] - log(z)) / 6;
    }
    CHECK(nv == 6 && fabs(ce - want) < 1e-6, "cross-entropy %.7f, want %.7f over %d targets", ce, want, nv);
    { // the backend's fused cross-entropy: forward + backward on zeros, byte for byte, without probs
        float dl_ref[40] = {0}, dl_fused[40], pr[40];
        for (int i = 0; i < 40; i++) dl_fused[i] = 99.0f; // written, not accumulated
        int nv2 = 0, nv3 = 0;
        float l_ref = crossentropy_forward(pr, logits, targets, 8, 5, &nv2);
        crossentropy_backward(dl_ref, pr, targets, 8, 5, nv2, 0.6f);
        float l_fused = crossentropy_fused(dl_fused, logits, targets, 8, 5, 0.6f, &nv3);
        CHECK(nv3 == nv2 && l_fused == l_ref && memcmp(dl_fused, dl_ref, sizeof dl_ref) == 0,
              "fused cross-entropy: not the bytes of forward + backward on zeros");
    }
    { // scoring (evaluate.c): each row's -log softmax[target] in double, its first maximum, rows not finite flagged
        double nll[8];
        int32_t best[8], tg[8];
        for (int i = 0; i < 8; i++) tg[i] = targets[i];
        score_rows(nll, best, logits, tg, 8, 5);
        double mean = 0;
        int ok = 1;
        for (int i = 0; i < 8; i++) {
            double z = 0;
            int b = 0;
            for (int v = 0; v < 5; v++) {
                z += exp((double)logits[i * 5 + v]);
                b = logits[i * 5 + v] > logits[i * 5 + b] ? v : b;
            }
            ok &= fabs(nll[i] - (log(z) - logits[i * 5 + tg[i]])) < 1e-12 && best[i] == b;
            mean += targets[i] ? nll[i] / 6 : 0;
        }
        CHECK(ok, "score_rows: a row's nll or argmax is not the direct computation's");
        CHECK(fabs(mean - ce) < 1e-6, "score_rows: mean over the targets %.7f, cross-entropy %.7f", mean, ce);
        float odd[5 * 5] = {1, 3, 3, 2, 3,          // ties: the first maximum
                            0, 0, 0, 0, 0,          // all equal: 0, nll log 5
                            1, INFINITY, 0, 0, 0,   // not finite
                            1, 2, NAN, 0, 0,        // not finite
                            -1e30f, 88, 89, 0, -3}; // large spread: exp in double
        int32_t ot[5] = {2, 4, 1, 1, 2}, ob[5];
        double on[5];
        score_rows(on, ob, odd, ot, 5, 5);
        CHECK(ob[0] == 1 && ob[1] == 0 && ob[2] == -1 && ob[3] == -1 && ob[4] == 2,
              "score_rows: argmaxes %d %d %d %d %d", ob[0], ob[1], ob[2], ob[3], ob[4]);
        CHECK(fabs(on[1] - log(5.0)) < 1e-15 && fabs(on[4] - log(1 + exp(-1.0) + exp(-89.0) + exp(-92.0))) < 1e-14,
              "score_rows: nll %.17g (want log 5) and %.17g", on[1], on[4]);
        ot[0] = 5, ot[1] = -1;
        score_rows(on, ob, odd, ot, 2, 5);
        CHECK(isnan(on[0]) && isnan(on[1]) && ob[0] == 1, "score_rows: a target outside the vocabulary scores NaN");
    }
    un_case("cosine pairs, odd T", (UnCtx){.op = OP_COSPAIRS, .B = 2, .T = 5, .C = 4}, 40, 1);
    un_case("exp-cosine", (UnCtx){.op = OP_EXPCOS, .B = 2, .T = 4, .C = 4}, 32, 1);
    long np;
    float same[8] = {1, 2, 3, 4, 2, 4, 6, 8};
    CHECK(fabs(cosine_pairs_forward(same, 1, 2, 4, &np) - 1.0) < 1e-6 && np == 1, "cos of parallel rows is 1");
}


// ---- threads: every op that splits its work gives the same bytes on 1, 2 and 3 threads -----------------

static void test_threads(void)
{
    int saved = ops_threads();
    static const int counts[] = {1, 2, 3};
    // sizes past every op's inline threshold: matmuls split in row / column blocks, elementwise in ranges
    int N = 700, IC = 96, OC = 130;
    float *inp = rnd((size_t)N * IC, 1), *w = rnd((size_t)OC * IC, 1), *b = rnd(OC, 1), *dout = rnd((size_t)N * OC, 1);
    float *ln_w = rnd(IC, 1), *ln_b = rnd(IC, 1);
    size_t n_el = 100001; // odd: the dropout stream's last pair is cut
    float *dinp_big = rnd(n_el, 1);
    float *out[3], *dinp[3], *dw[3], *db[3], *lo[3], *lm[3], *lr[3], *ldx[3], *ldw[3], *ldb[3], *dro[3];
    uint8_t *drm[3];
    for (int k = 0; k < 3; k++) {
        ops_set_threads(counts[k]);
        CHECK(ops_threads() == counts[k], "ops_threads() %d after ops_set_threads(%d)", ops_threads(), counts[k]);
        out[k] = zeros((size_t)N * OC), dinp[k] = zeros((size_t)N * IC), dw[k] = zeros((size_t)OC * IC);
        db[k] = zeros(OC);
        linear_forward(out[k], inp, w, b, N, IC, OC);
        linear_backward(dinp[k], dw[k], db[k], dout, inp, w, N, IC, OC);
        lo[k] = zeros((size_t)N * IC), lm[k] = zeros(N), lr[k] = zeros(N), ldx[k] = zeros((size_t)N * IC);
        ldw[k] = zeros(IC), ldb[k] = zeros(IC);
        layernorm_forward(lo[k], lm[k], lr[k], inp, ln_w, ln_b, N, IC);
        layernorm_backward(ldx[k], ldw[k], ldb[k], dout, inp, ln_w, lm[k], lr[k], N, IC);
        dro[k] = zeros(n_el), drm[k] = malloc(n_el);
        dropout_forward(dro[k], drm[k], dinp_big, 0.1f, 3, n_el);
    }
    float *ref = zeros((size_t)N * OC);
    matmul_forward_naive(ref, inp, w, b, N, IC, OC);
    double e = 0;
    for (size_t i = 0; i < (size_t)N * OC; i++) e = fmax(e, fabs(ref[i] - out[0][i]));
    CHECK(e < 1e-4, "blocked linear forward vs naive: max abs error %.3g (tolerance 1e-4, K = %d)", e, IC);
    for (int k = 1; k < 3; k++) {
        int t = counts[k];
        CHECK(same(out[0], out[k], (size_t)N * OC * 4), "linear forward on %d threads", t);
        CHECK(same(dinp[0], dinp[k], (size_t)N * IC * 4) && same(dw[0], dw[k], (size_t)OC * IC * 4) &&
                  same(db[0], db[k], OC * 4), "linear backward on %d threads", t);
        CHECK(same(lo[0], lo[k], (size_t)N * IC * 4) && same(lm[0], lm[k], N * 4) && same(lr[0], lr[k], N * 4),
              "layernorm forward on %d threads", t);
        CHECK(same(ldx[0], ldx[k], (size_t)N * IC * 4) && same(ldw[0], ldw[k], IC * 4) && same(ldb[0], ldb[k], IC * 4),
              "layernorm backward on %d threads", t);
        CHECK(same(dro[0], dro[k], n_el * 4) && same(drm[0], drm[k], n_el), "dropout on %d threads", t);
    }
    size_t kept = 0;
    for (size_t i = 0; i < n_el; i++) kept += drm[0][i];
    CHECK(fabs((double)kept / n_el - 0.9) < 0.005, "dropout 0.1 keeps %.4f", (double)kept / n_el);
    for (int k = 0; k < 3; k++) {
        free(out[k]), free(dinp[k]), free(dw[k]), free(db[k]), free(lo[k]), free(lm[k]), free(lr[k]), free(ldx[k]);
        free(ldw[k]), free(ldb[k]), free(dro[k]), free(drm[k]);
    }
    free(inp), free(w), free(b), free(dout), free(ln_w), free(ln_b), free(ref), free(dinp_big);
    ops_set_threads(saved);
}

int main(void)
{
    test_threads();
    test_hourglass_ops();
    test_linear();
    test_layernorm();
    test_encoder();
    test_elementwise();
    test_attention();
    return check_done();
}
