// test_cuda_model: the whole model on the CUDA backend against the CPU backend (issue 14), through hg.c's one
// structure: built with CUDA=1 (a GPU runs it; without one every check counts as skipped) and for the CPU emulator
// of tests/emu (`make test-cuda-emu`: the kernels' logic on any machine, never their speed).
// For every configuration kind (baseline; naive, linear, with and without attention resampling; nested; s 3) with
// dropout on, B 2, T 7: logits, hidden states, the loss of each kind and every parameter's gradient within 1e-4 of
// the tensor's scale (max |gpu - cpu| / max |cpu|); the same forward and backward twice give the same bytes, and
// the bytes of the run with HMT_GPU_FRESH=0 (the gradients' ranges zeroed, not written: gpu_fresh). Then
// 100 optimizer steps of trainer_step (windows, accumulation 2, clipping, OneCycle, Adam) follow the CPU's losses
// within 1e-3, and the GPU's trainer state reads back into a CPU trainer whose next step matches. Decoding on the GPU
// equals the CPU's full forward at every step (prefill, single tokens, the window sliding), the same bytes twice,
// and through CUDA graphs the bytes it gives without them.
// The model and training checks run again with HMT_GPU_ATTENTION=fused (gpu_attention_fused_*, no probs stored).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "check.h"
#include "config.h"
#include "data.h"
#include "decode.h"
#include "evaluate.h"
#include "gpu.h"
#include "hg.h"
#include "remi.h"
#include "sampler.h"
#include "shard.h"
#include "trainer.h"
#include "util.h"

#define TOL 1e-4

typedef struct Kind {
    const char *name;
    int plain, pre, post, s, valley_n, nested, linear, attn;
} Kind;

static const Kind kinds[] = {
    {"baseline", 2, 0, 0, 0, 0, 0, 0, 0},       {"naive", 0, 1, 1, 2, 1, 0, 0, 0},
    {"linear", 0, 1, 1, 2, 1, 0, 1, 0},         {"naive_attn", 0, 1, 1, 2, 1, 0, 0, 1},
    {"linear_attn", 0, 1, 1, 2, 1, 0, 1, 1},    {"nested", 0, 1, 1, 2, 1, 1, 1, 1},
    {"s 3", 0, 1, 1, 3, 1, 0, 1, 1},
};

static HgLevel inner, mid;
static int window = 9; // the models' input_length L (test_decode_long raises it)

static void build_v(HgModel *m, const Kind *k, int V)
{
    HgConfig c = {.V = V, .C = 16, .NH = 2, .F = 32, .L = window, .dropout = 0.1f, .linear = k->linear,
                  .attn_resampling = k->attn, .save_updown_hidden = 1};
    if (k->plain) {
        c.top.n_layers = k->plain;
    } else {
        inner = (HgLevel){.n_layers = k->valley_n};
        mid = (HgLevel){.pre = 1, .post = 1, .s = k->s, .valley = &inner};
        c.top = (HgLevel){.pre = k->pre, .post = k->post, .s = k->s, .valley = k->nested ? &mid : &inner};
    }
    char err[ERR_MAX];
    CHECK(hg_build(m, &c, err) == 0, "%s: build: %s", k->name, err);
    hg_init_weights(m, 4321);
}
static void build(HgModel *m, const Kind *k) { build_v(m, k, 40); }

// The same model twice, c on the CPU and g moved to the GPU
static void build_pair(HgModel *c, HgModel *g, const Kind *k, const Backend *gpu)
{
    char err[ERR_MAX];
    build(c, k), build(g, k);
    CHECK(hg_set_backend(g, gpu, err) == 0, "%s: to the GPU: %s", k->name, err);
}

// no GPU: build_pair's three checks and a case's own n count as skipped
static void skip_pair_checks(const Kind *k, int n)
{
    for (int i = 0; i < 3 + n; i++) CHECK(0, "%s", k->name);
}

static double rel(const float *got, const float *want, size_t n)
{
    double d = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - want[i]);
        d = e > d || isnan(e) ? e : d;
        s = fabs((double)want[i]) > s ? fabs((double)want[i]) : s;
    }
    return s > 0 ? d / s : d;
}

// One forward, loss (kind) and backward on m's backend; the loss, and host copies of logits, hidden states, grads.
typedef struct Out {
    double loss;
    float *logits, *hidden[8], *dw;
} Out;

static void run(HgModel *m, const int32_t *tok, const int32_t *tgt_host, int loss_kind, Out *o)
{
    const Backend *be = m->be;
    int B = m->B, T = m->T, V = m->cfg.V, C = m->cfg.C;
    size_t bt = (size_t)B * T;
    int32_t *tgt = be->alloc(bt * sizeof *tgt);
    be->upload(tgt, tgt_host, bt * sizeof *tgt);
    float *dlogits = be->alloc(bt * V * sizeof(float));
    be->zero(m->bdw, m->n_floats * sizeof(float));
    hg_forward(m, tok, 1, 77);
    float *dh[8] = {0};
    for (int h = 0; h < m->n_hidden; h++) dh[h] = be->alloc((size_t)B * m->hidden_T[h] * C * sizeof(float));
    o->loss = trainer_loss(m, tgt, loss_kind, loss_kind == 1 ? 0.1 : 1e-2, dlogits, dh, 1.0f);
    hg_backward(m, dlogits, dh);
    o->logits = xmalloc(bt * V * sizeof(float));
    memcpy(o->logits, hg_logits_host(m), bt * V * sizeof(float));
    for (int h = 0; h < m->n_hidden; h++) {
        size_t n = (size_t)B * m->hidden_T[h] * C;
        o->hidden[h] = xmalloc(n * sizeof(float));
        be->download(o->hidden[h], m->hidden[h], n * sizeof(float));
        be->free(dh[h]);
    }
    hg_grads_to_host(m);
    o->dw = xmalloc(m->n_floats * sizeof(float));
    memcpy(o->dw, m->dw, m->n_floats * sizeof(float));
    char err[ERR_MAX];
    CHECK(be->sync(err) == 0, "%s", err);
    be->free(tgt), be->free(dlogits);
}

static void free_out(Out *o, int n_hidden)
{
    free(o->logits), free(o->dw);
    for (int h = 0; h < n_hidden; h++) free(o->hidden[h]);
}

static void test_model(const Backend *gpu)
{
    int B = 2, T = 7;
    int32_t tok[14], tgt[14];
    for (int i = 0; i < B * T; i++) tok[i] = 1 + (i * 11) % 39, tgt[i] = i % 5 == 4 ? 0 : 1 + (i * 7) % 39;
    for (size_t ki = 0; ki < sizeof kinds / sizeof *kinds; ki++) {
        const Kind *k = &kinds[ki];
        for (int loss_kind = 0; loss_kind < 3; loss_kind++) {
            if (loss_kind && k->plain) continue; // the auxiliary losses need hidden states
            if (!gpu) { // no GPU: one skip per configuration and loss
                CHECK(0, "%s", k->name);
                continue;
            }
            HgModel c, g;
            build_pair(&c, &g, k, gpu);
            hg_alloc(&c, B, T), hg_alloc(&g, B, T);
            Out oc, og, og2, og3;
            run(&c, tok, tgt, loss_kind, &oc);
            long taken = gpu_fresh_taken();
            run(&g, tok, tgt, loss_kind, &og);
            taken = gpu_fresh_taken() - taken;
            double e_logits = rel(og.logits, oc.logits, (size_t)B * T * c.cfg.V);
            CHECK(e_logits <= TOL, "%s loss %d: logits differ by %.3g of their scale", k->name, loss_kind, e_logits);
            CHECK(fabs(og.loss - oc.loss) <= TOL * fmax(1, fabs(oc.loss)), "%s loss %d: %.9g on the GPU, %.9g on the CPU",
                  k->name, loss_kind, og.loss, oc.loss);
            // evaluate.c's scoring (hg_score) on each: the row losses within TOL, and each row's argmax the CPU's,
            // or a logit the CPU puts within TOL of its row's maximum (a near tie that the GPU's rounding may flip)
            double nc[14], ng[14], e_nll = 0;
            int32_t bc[14], bg[14];
            int flips = 0;
            hg_score(&c, tgt, nc, bc), hg_score(&g, tgt, ng, bg);
            for (int i = 0; i < B * T; i++) {
                const float *x = oc.logits + (size_t)i * c.cfg.V;
                double d = fabs(ng[i] - nc[i]) / fmax(1, fabs(nc[i]));
                if (!(d <= e_nll)) e_nll = d; // a NaN stays
                double gap = bg[i] >= 0 && bc[i] >= 0 ? fabs((double)x[bg[i]] - x[bc[i]]) : INFINITY;
                flips += bg[i] != bc[i] && !(gap <= TOL * fmax(1, fabs(x[bc[i]])));
            }
            CHECK(e_nll <= TOL && flips == 0, "%s loss %d: scored rows: losses differ by %.3g, %d argmaxes not the "
                  "CPU's", k->name, loss_kind, e_nll, flips);
            CHECK(g.n_hidden == c.n_hidden, "%s: hidden states", k->name);
            for (int h = 0; h < c.n_hidden && h < g.n_hidden; h++) {
                double e = rel(og.hidden[h], oc.hidden[h], (size_t)B * c.hidden_T[h] * c.cfg.C);
                CHECK(e <= TOL, "%s: hidden state %d differs by %.3g", k->name, h, e);
            }
            for (int p = 0; p < c.n_params; p++) {
                const HgParam *q = &c.params[p];
                double e = rel(og.dw + q->offset, oc.dw + q->offset, q->size);
                CHECK(e <= TOL, "%s loss %d: gradient of %s differs by %.3g of its scale", k->name, loss_kind, q->name, e);
            }
            // deterministic: the same forward and backward again give the same bytes
            run(&g, tok, tgt, loss_kind, &og2);
            CHECK(memcmp(og.logits, og2.logits, (size_t)B * T * c.cfg.V * 4) == 0 &&
                  memcmp(og.dw, og2.dw, c.n_floats * 4) == 0, "%s: a second GPU run differs", k->name);
            // the backward's gradients declared zero (gpu_fresh) are taken by the ops that write them, and give the
            // bytes of the run that zeroes them (HMT_GPU_FRESH=0) on the emulator; on a GPU cuBLAS may take other
            // algorithms for beta 0 than for beta 1
            setenv("HMT_GPU_FRESH", "0", 1), gpu->set_precision(PREC_FP32); // (which reads it)
            long taken0 = gpu_fresh_taken();
            run(&g, tok, tgt, loss_kind, &og3);
            taken0 = gpu_fresh_taken() - taken0;
            unsetenv("HMT_GPU_FRESH"), gpu->set_precision(PREC_FP32);
            CHECK(taken > 0 && taken0 == 0, "%s loss %d: ranges declared zero taken: %ld, %ld with HMT_GPU_FRESH=0",
                  k->name, loss_kind, taken, taken0);
            int same = memcmp(og.logits, og3.logits, (size_t)B * T * c.cfg.V * 4) == 0 &&
                       memcmp(og.dw, og3.dw, c.n_floats * 4) == 0;
            double e_fresh = rel(og.dw, og3.dw, c.n_floats);
            CHECK(same || (!strstr(gpu_name(), "emulation") && e_fresh <= 1e-5),
                  "%s loss %d: logits and gradients %s the run with HMT_GPU_FRESH=0 (gradients off by %.3g of their "
                  "scale)", k->name, loss_kind, same ? "the bytes of" : "off", e_fresh);
            free_out(&oc, c.n_hidden), free_out(&og, g.n_hidden), free_out(&og2, g.n_hidden);
            free_out(&og3, g.n_hidden);
            hg_free(&c), hg_free(&g);
        }
    }
}

// The CPU's full forward (train = 0) over win (B, n): the logits of the last position -> ref (B, V)
static void last_logits(HgModel *m, const int32_t *win, int B, int n, float *ref)
{
    hg_alloc(m, B, n);
    hg_forward(m, win, 0, 1);
    int V = m->cfg.V;
    for (int b = 0; b < B; b++) memcpy(ref + (size_t)b * V, m->logits + ((size_t)b * n + n - 1) * V, V * sizeof(float));
}

// Decoding on the GPU (decode.c with its caches in device memory) against the CPU's full forward at every step:
// a prefill of 5 tokens in chunks of 2, then 14 single tokens, so the window (L 9) slides twice, B 1 and 3 (up to
// 6 rows: the matrix-vector kernels); the same run twice gives the same bytes. test_decode_long's passes of 64 rows
// take the cuBLAS path.
static void decode_case(const Backend *gpu, const Kind *k, int B, int P, int STEPS, int chunk, int bf16);

// With bf16 weights (DecOpts.bf16) against the CPU's full forward whose linear layers' weights are rounded the same
// way: the decoder's arithmetic is float32 on them, so within TOL too
static void test_decode(const Backend *gpu)
{
    for (size_t ki = 0; ki < sizeof kinds / sizeof *kinds; ki++)
        for (int B = 1; B <= 3; B += 2) decode_case(gpu, &kinds[ki], B, 5, 14, 2, 0);
    decode_case(gpu, &kinds[0], 1, 5, 14, 2, 1), decode_case(gpu, &kinds[4], 3, 5, 14, 2, 1);
    decode_case(gpu, &kinds[5], 1, 5, 14, 2, 1), decode_case(gpu, &kinds[6], 3, 5, 14, 2, 1);
}

// the CPU model's weights of the layers decode.c reads as linear layers, rounded to bfloat16 (nearest even)
static void round_linear_weights(HgModel *m)
{
    static const char *ends[] = {"in_proj_weight", ".out_proj.weight", ".linear1.weight", ".linear2.weight",
                                 ".proj.weight", "Wout.weight"};
    for (int i = 0; i < m->n_params; i++) {
        const HgParam *p = &m->params[i];
        size_t len = strlen(p->name);
        int hit = 0;
        for (size_t e = 0; e < sizeof ends / sizeof *ends; e++)
            hit |= len >= strlen(ends[e]) && strcmp(p->name + len - strlen(ends[e]), ends[e]) == 0;
        for (size_t j = 0; hit && j < p->size; j++) m->w[p->offset + j] = check_bf16_round(m->w[p->offset + j]);
    }
}

// A window of 150 positions: a row's keys span three of the GPU attention's chunks of 64, and a prefill of 130
// tokens goes in passes of 64 rows; then 40 single tokens (the window slides once).
static void test_decode_long(const Backend *gpu)
{
    window = 150;
    decode_case(gpu, &kinds[0], 2, 130, 40, 0, 0); // baseline
    decode_case(gpu, &kinds[4], 1, 130, 40, 0, 0); // linear_attn
    decode_case(gpu, &kinds[6], 2, 130, 40, 0, 0); // s 3
    decode_case(gpu, &kinds[4], 2, 130, 40, 0, 1); // linear_attn, bf16 weights (prefill 8 rows at a time)
    window = 9;
}

// Prefill P tokens (in passes of chunk rows, 0: the default), then STEPS single tokens; every step's logits
// against the CPU's full forward over the same window, and the run twice the same bytes.
static void decode_case(const Backend *gpu, const Kind *k, int B, int P, int STEPS, int chunk, int bf16)
{
    enum { MAXB = 3 };
    if (!gpu) { // dec_new and a finished run, twice each, then two comparisons
        skip_pair_checks(k, 6);
        return;
    }
    HgModel c, g;
    char err[ERR_MAX];
    build_pair(&c, &g, k, gpu);
    if (bf16) round_linear_weights(&c);
    int L = c.cfg.L, V = c.cfg.V, keep = L / 2;
    DecOpts o = {.keep = keep, .chunk = chunk, .bf16 = bf16 ? 1 : -1};
    float *seq[2] = {NULL, NULL}, *ref = xmalloc((size_t)MAXB * V * sizeof *ref);
    double worst = 0;
    int finished = 0; // runs that went through every step
    for (int rep = 0; rep < 2; rep++) {
        Decoder *d = dec_new(&g, B, &o, err);
        CHECK(d != NULL, "%s: dec_new on the GPU: %s", k->name, err);
        if (!d) break;
        seq[rep] = xcalloc((size_t)(STEPS + 1) * B * V, sizeof(float));
        int32_t *win = xmalloc((size_t)MAXB * L * sizeof *win), *flat = xmalloc((size_t)MAXB * L * sizeof *flat);
        int32_t tok[MAXB];
        int n = P;
        for (int b = 0; b < B; b++)
            for (int i = 0; i < P; i++) flat[b * P + i] = win[b * L + i] = 1 + (b * 13 + i * 7) % (V - 1);
        const float *got = dec_prefill(d, flat, P, err);
        for (int step = 0; got && step <= STEPS; step++) {
            memcpy(seq[rep] + (size_t)step * B * V, got, (size_t)B * V * sizeof(float));
            if (rep == 0) { // against the CPU's full forward over the same window
                for (int b = 0; b < B; b++) memcpy(flat + b * n, win + b * L, n * sizeof *win);
                last_logits(&c, flat, B, n, ref);
                double e = rel(got, ref, (size_t)B * V);
                if (e > TOL) fprintf(stderr, "  %s B %d step %d (window %d): %.3g\n", k->name, B, step, n, e);
                if (!(e <= worst)) worst = e; // a NaN stays
            }
            if (step == STEPS) break;
            for (int b = 0; b < B; b++) tok[b] = 1 + (step * 5 + b * 17) % (V - 1);
            if (n == L) { // the decoder's window rule (decode.h): keep the last `keep` tokens
                for (int b = 0; b < B; b++) memmove(win + b * L, win + b * L + L - keep, keep * sizeof *win);
                n = keep;
            }
            for (int b = 0; b < B; b++) win[b * L + n] = tok[b];
            n++;
            got = dec_step(d, tok, err);
        }
        CHECK(got != NULL, "%s: decoding on the GPU: %s", k->name, err);
        finished += got != NULL;
        dec_free(d);
        free(win), free(flat);
    }
    CHECK(finished == 2 && worst <= TOL, "%s B %d%s: GPU decoding differs from the CPU's full forward by %.3g",
          k->name, B, bf16 ? " (bf16 weights)" : "", worst);
    CHECK(finished == 2 && memcmp(seq[0], seq[1], (size_t)(STEPS + 1) * B * V * sizeof(float)) == 0,
          "%s B %d%s: decoding twice on the GPU gives other bytes", k->name, B, bf16 ? " (bf16 weights)" : "");
    free(seq[0]), free(seq[1]), free(ref);
    hg_free(&c), hg_free(&g);
}

// Decoding through CUDA graphs (DecOpts.graph 1: a step captured at its first visit of a position and state,
// replayed after) gives the bytes of the same decoder without them at every step: a prefill of 5, 24 single tokens
// (the window of 9 slides five times, so positions come back and replay their graphs), then dec_reset and a prefill
// of 3 (other states at the same positions: captured again), 12 more. The decoder must report graphs captured and
// replayed. B 1 for every kind, 4 for linear_attn (B x s = 8 rows: the most a graph takes), 2 for s 3 and 3 for the
// baseline; with bf16 weights (every product in the kernel) s 3 at B 4 (12 rows).
// what: GC_GRAPHS that; GC_FUSED the same run with the decoder's fused kernels on and off instead (DecOpts.fused), no
// graphs: the same bytes too (the fusions are those of the separate ops), and no graph counts to check; GC_PDL and
// GC_PDL_GRAPHS the kernels as programmatic dependent launches (DecOpts.pdl; each may start while the one before
// still runs, and waits for its results) against plain launches without graphs, launched directly or through graphs:
// the same bytes, since only when a kernel starts changes (on the emulator both launch alike: the check has teeth on
// a GPU only, where a kernel that read its inputs before its wait would race); GC_MEGA and GC_MEGA_GRAPHS each pass
// (and the draw) as one launch with grid barriers between the ops (DecOpts.mega) against plain launches: the same
// bytes (on the emulator a launch's three blocks take every op's blocks, each running until it must wait for the
// others, so an op that read what the ops before write without waiting reads it unwritten); GC_MEGA with dependent
// launches on too (the launch after one of one pass, and what is not recorded)
enum { GC_GRAPHS, GC_FUSED, GC_PDL, GC_PDL_GRAPHS, GC_MEGA, GC_MEGA_GRAPHS };
static void graph_case(const Backend *gpu, const Kind *k, int B, int bf16, int what)
{
    int fused = what == GC_FUSED, graphs = what == GC_GRAPHS || what == GC_PDL_GRAPHS || what == GC_MEGA_GRAPHS;
    int pdl = what == GC_PDL || what == GC_PDL_GRAPHS, mega = what == GC_MEGA || what == GC_MEGA_GRAPHS;
    enum { P1 = 5, S1 = 24, P2 = 3, S2 = 12, MAXB = 4 };
    if (!gpu) { // dec_new twice, then two comparisons
        skip_pair_checks(k, 4);
        return;
    }
    HgModel c, g;
    char err[ERR_MAX];
    build_pair(&c, &g, k, gpu);
    int V = g.cfg.V;
    size_t n_out = (size_t)(S1 + 1 + S2 + 1) * B * V;
    float *out[2] = {xcalloc(n_out, sizeof(float)), xcalloc(n_out, sizeof(float))};
    long captured = 0, replayed = 0;
    int finished = 0;
    for (int mode = 0; mode < 2; mode++) {
        DecOpts o = {.keep = g.cfg.L / 2, .graph = graphs && mode ? 1 : -1, .bf16 = bf16 ? 1 : -1,
                     .fused = fused && !mode ? -1 : 1, .pdl = (pdl || what == GC_MEGA) && mode ? 1 : -1,
                     .mega = mega && mode ? 1 : -1};
        Decoder *d = dec_new(&g, B, &o, err);
        CHECK(d != NULL, "%s: dec_new on the GPU: %s", k->name, err);
        if (!d) continue;
        int32_t flat[MAXB * P1], tok[MAXB];
        const float *got = NULL;
        size_t at = 0;
        for (int phase = 0; phase < 2; phase++) {
            int P = phase ? P2 : P1, S = phase ? S2 : S1;
            if (phase) dec_reset(d);
            for (int b = 0; b < B; b++)
                for (int i = 0; i < P; i++) flat[b * P + i] = 1 + (b * 11 + i * 5 + phase) % (V - 1);
            got = dec_prefill(d, flat, P, err);
            for (int step = 0; got; step++) {
                memcpy(out[mode] + at, got, (size_t)B * V * sizeof(float));
                at += (size_t)B * V;
                if (step == S) break;
                for (int b = 0; b < B; b++) tok[b] = 1 + (step * 3 + b * 7 + phase) % (V - 1);
                got = dec_step(d, tok, err);
            }
            if (!got) break;
        }
        if (!got) fprintf(stderr, "  %s B %d (variant %d %s): %s\n", k->name, B, what, mode ? "on" : "off", err);
        finished += got != NULL;
        if (mode) dec_graph_stats(d, &captured, &replayed);
        dec_free(d);
    }
    CHECK(finished == 2 && memcmp(out[0], out[1], n_out * sizeof(float)) == 0,
          "%s B %d: decoding %s gives other bytes than without", k->name, B,
          fused                   ? "with the fused kernels"
          : what == GC_PDL        ? "with dependent launches"
          : what == GC_PDL_GRAPHS ? "through CUDA graphs of dependent launches"
          : what == GC_MEGA       ? "with one launch per pass"
          : what == GC_MEGA_GRAPHS ? "through CUDA graphs of one launch per step"
                                   : "through CUDA graphs");
    CHECK(graphs ? captured > 0 && replayed > 0 : captured == 0, "%s B %d: graphs captured %ld, replayed %ld", k->name,
          B, captured, replayed);
    free(out[0]), free(out[1]);
    hg_free(&c), hg_free(&g);
}

static void test_decode_graph(const Backend *gpu)
{
    for (size_t ki = 0; ki < sizeof kinds / sizeof *kinds; ki++) graph_case(gpu, &kinds[ki], 1, 0, GC_GRAPHS);
    graph_case(gpu, &kinds[4], 4, 0, GC_GRAPHS); // linear_attn
    graph_case(gpu, &kinds[6], 2, 0, GC_GRAPHS); // s 3
    graph_case(gpu, &kinds[0], 3, 0, GC_GRAPHS); // baseline
    graph_case(gpu, &kinds[6], 4, 1, GC_GRAPHS); // s 3, bf16 weights
    // the fused decoder kernels against the separate ops, through whole runs: every kind at B 1, two at B 3
    for (size_t ki = 0; ki < sizeof kinds / sizeof *kinds; ki++) graph_case(gpu, &kinds[ki], 1, 0, GC_FUSED);
    graph_case(gpu, &kinds[0], 3, 0, GC_FUSED), graph_case(gpu, &kinds[5], 3, 1, GC_FUSED); // nested, bf16 weights
    // dependent launches: every kind at B 1 through graphs, directly for the baseline, s 3 (bf16 weights) and nested
    // at B 3 (whose products of more than 8 rows go through cuBLAS: the launch after one is a plain one)
    for (size_t ki = 0; ki < sizeof kinds / sizeof *kinds; ki++) graph_case(gpu, &kinds[ki], 1, 0, GC_PDL_GRAPHS);
    graph_case(gpu, &kinds[0], 1, 0, GC_PDL), graph_case(gpu, &kinds[6], 4, 1, GC_PDL_GRAPHS);
    graph_case(gpu, &kinds[5], 3, 0, GC_PDL);
    // one launch per pass: every kind at B 1 through graphs (a step and its draw-free logits: one launch each),
    // directly for the baseline (prefills of 5 rows: one launch a pass too), s 3 with bf16 weights at B 4 (12 rows:
    // products of two launches' rows, both in the one launch), and nested at B 3 (products of more than 8 rows
    // through cuBLAS: the recorded ops before each launched first)
    for (size_t ki = 0; ki < sizeof kinds / sizeof *kinds; ki++) graph_case(gpu, &kinds[ki], 1, 0, GC_MEGA_GRAPHS);
    graph_case(gpu, &kinds[0], 1, 0, GC_MEGA), graph_case(gpu, &kinds[6], 4, 1, GC_MEGA_GRAPHS);
    graph_case(gpu, &kinds[5], 3, 0, GC_MEGA);
}

// The sampler's draw on the GPU (dec_draw_set): a model of REMI's 348 tokens on the GPU, decoded with and without
// graphs, bf16 weights for one. (1) Every token the decoder draws equals sample_pick's from the logits it returns,
// with the same mask and u, over a prefill and 30 steps (the window of 9 slides: graphs replayed); (2)
// sample_generate drawing on the GPU writes the documents it writes drawing on the host (HMT_GPU_DECODE_DRAW=0), with
// the grammar and nucleus sampling, and greedy without the grammar. mega: each pass and its draw one launch
// (DecOpts.mega).
static void draw_case(const Backend *gpu, const Kind *k, int B, int graph, int bf16, int mega)
{
    enum { STEPS = 30, MAXB = 4 };
    if (!gpu) {
        for (int i = 0; i < 7; i++) CHECK(0, "%s", k->name);
        return;
    }
    char err[ERR_MAX];
    HgModel g;
    build_v(&g, k, REMI_VOCAB_SIZE); // the same shapes over REMI's vocabulary
    CHECK(hg_set_backend(&g, gpu, err) == 0, "%s: to the GPU: %s", k->name, err);
    DecOpts o = {.graph = graph ? 1 : -1, .bf16 = bf16 ? 1 : -1, .mega = mega ? 1 : -1};
    Decoder *d = dec_new(&g, B, &o, err);
    CHECK(d != NULL, "%s: dec_new: %s", k->name, err);
    if (!d) {
        hg_free(&g);
        return;
    }
    // (1) the decoder's draws against sample_pick on its logits
    const int V = REMI_VOCAB_SIZE, W = dec_mask_words(d);
    DecDraw dw = {.temperature = 1.1, .top_k = 0, .top_p = 0.9};
    SampleOpts so = {.temperature = dw.temperature, .top_k = dw.top_k, .top_p = dw.top_p};
    uint64_t keys[MAXB];
    for (int b = 0; b < B; b++) keys[b] = splitmix64(5) ^ (uint64_t)b * 0x9e3779b97f4a7c15ULL;
    int set = dec_draw_set(d, &dw, keys), bad = 0, n_drawn = 0;
    float row[REMI_VOCAB_SIZE], scratch[2 * REMI_VOCAB_SIZE];
    int order[REMI_VOCAB_SIZE];
    int32_t prompt[MAXB * 2], tok[MAXB];
    for (int b = 0; b < B; b++) prompt[2 * b] = REMI_BOS, prompt[2 * b + 1] = REMI_BAR;
    dec_reset(d);
    const float *logits = NULL;
    for (int t = 0; t <= STEPS && set; t++) {
        uint32_t *mask = dec_draw_mask(d);
        for (int b = 0; b < B; b++) // every other item: a third of the vocabulary, else all of it
            for (int w = 0; w < W; w++) mask[(size_t)b * W + w] = b % 2 ? 0x49249249u >> (t % 3) : ~0u;
        dec_draw_index(d, (uint64_t)t);
        logits = t ? dec_step(d, tok, err) : dec_prefill(d, prompt, 2, err);
        if (!logits) break;
        const int32_t *drawn = dec_drawn(d);
        for (int b = 0; b < B; b++) {
            for (int v = 0; v < V; v++) row[v] = mask[(size_t)b * W + v / 32] >> (v % 32) & 1u ? logits[(size_t)b * V + v] : -INFINITY;
            int want = sample_pick(row, V, &so, sample_uniform(keys[b], (uint64_t)t), scratch, order);
            if (drawn[b] != want && !bad++)
                CHECK(0, "%s B %d: draw %d, item %d: the decoder drew %d, sample_pick %d", k->name, B, t, b, drawn[b],
                      want);
            tok[b] = want < 0 ? REMI_BAR : want;
            n_drawn++;
        }
    }
    dec_draw_set(d, NULL, NULL);
    CHECK(set == 1 && logits && bad == 0 && n_drawn == B * (STEPS + 1), "%s B %d%s: %d of %d draws differ (%s)",
          k->name, B, graph ? " graphs" : "", bad, n_drawn, logits ? "" : err);
    long captured = 0, replayed = 0;
    dec_graph_stats(d, &captured, &replayed);
    CHECK(!graph || replayed > 0, "%s B %d: graphs captured %ld, replayed %ld", k->name, B, captured, replayed);
    // (2) sample_generate: on the GPU, then on the host
    for (int mode = 0; mode < 2; mode++) {
        SampleOpts go = mode ? (SampleOpts){.temperature = 0, .grammar = 0, .seed = 3}
                             : (SampleOpts){.temperature = 1.0, .top_p = 0.95, .grammar = 1, .seed = 11};
        int32_t out[2][MAXB * STEPS] = {{0}};
        int n_out[2][MAXB] = {{0}}, rc[2];
        for (int host = 0; host < 2; host++) {
            if (host) setenv("HMT_GPU_DECODE_DRAW", "0", 1);
            rc[host] = sample_generate(d, B, prompt, 2, STEPS, &go, out[host], n_out[host], err);
            unsetenv("HMT_GPU_DECODE_DRAW");
        }
        CHECK(rc[0] == 0 && rc[1] == 0 && memcmp(out[0], out[1], sizeof out[0]) == 0 &&
                  memcmp(n_out[0], n_out[1], (size_t)B * sizeof **n_out) == 0,
              "%s B %d%s: sample_generate (%s) drawing on the GPU writes other tokens than drawing on the host (%s)",
              k->name, B, graph ? " graphs" : "", mode ? "greedy" : "grammar, top_p 0.95", rc[0] || rc[1] ? err : "");
    }
    // (3) graphs last across calls as they do drawing on the host: a call made twice captures and replays in its
    // second run what the host-drawing one does in its own second run
    SampleOpts go = {.temperature = 1.0, .top_p = 0.95, .grammar = 1, .seed = 11};
    int32_t again[MAXB * STEPS];
    int n_again[MAXB], rc = 0;
    long cap[2] = {0}, rep[2] = {0};
    for (int host = 0; host < 2; host++) {
        if (host) setenv("HMT_GPU_DECODE_DRAW", "0", 1);
        rc |= sample_generate(d, B, prompt, 2, STEPS, &go, again, n_again, err);
        dec_graph_stats(d, &captured, &replayed);
        rc |= sample_generate(d, B, prompt, 2, STEPS, &go, again, n_again, err);
        dec_graph_stats(d, &cap[host], &rep[host]);
        cap[host] -= captured, rep[host] -= replayed;
        unsetenv("HMT_GPU_DECODE_DRAW");
    }
    CHECK(rc == 0 && cap[0] == cap[1] && rep[0] == rep[1] && (!graph || rep[0] > cap[0]),
          "%s B %d: a second sample_generate captures %ld graphs and replays %ld drawing on the GPU, %ld and %ld on "
          "the host (%s)", k->name, B, cap[0], rep[0], cap[1], rep[1], rc ? err : "");
    dec_free(d);
    hg_free(&g);
}

static void test_decode_draw(const Backend *gpu)
{
    printf("-- the sampler's draw on the GPU\n");
    draw_case(gpu, &kinds[0], 1, 1, 0, 0), draw_case(gpu, &kinds[0], 3, 0, 0, 0); // baseline
    draw_case(gpu, &kinds[4], 2, 1, 0, 0), draw_case(gpu, &kinds[6], 2, 0, 1, 0); // linear_attn; s 3 with bf16 weights
    draw_case(gpu, &kinds[0], 1, 1, 0, 1), draw_case(gpu, &kinds[4], 2, 0, 1, 1); // one launch a pass
}

static char dir[] = "/tmp/test_cuda_model.XXXXXX";

// a shard of documents `first` .. first+n-1, each 40 tokens of the walk 4 + (a d + b i) % mod (the next token follows
// from the last: learnable), at dir/name; the unigram entropy of its tokens in nats in *entropy (unless NULL)
static void walk_shard(const char *name, int first, int n, int a, int b, int mod, double *entropy)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    OutFile *o = out_open(path);
    ShardWriter w;
    shard_writer_init(&w, o->fp, path);
    long count[REMI_VOCAB_SIZE] = {0}, total = 0;
    for (int d = first; d < first + n; d++) {
        int32_t ids[40];
        for (int i = 0; i < 40; i++) ids[i] = 4 + (d * a + i * b) % mod, count[ids[i]]++, total++;
        char doc[16];
        snprintf(doc, sizeof doc, "doc%d", d);
        shard_writer_add(&w, doc, ids, 40);
    }
    shard_writer_finish(&w, remi_vocab_hash(), REMI_VOCAB_SIZE);
    out_commit(o);
    if (!entropy) return;
    *entropy = 0;
    for (int v = 0; v < REMI_VOCAB_SIZE; v++)
        if (count[v]) *entropy -= (double)count[v] / total * log((double)count[v] / total);
}

// the training tests' data and config: a walk shard `name` in dir (its path to path, 256 bytes), a tiny hourglass
// with resampling, cosine_ce, batch 2 x 2 accumulated; 0, or -1 with err
// d_model C (2 heads, dim_feedforward 2 C): train_setup's 16, or 32 for head size 16, which the tensor-core
// attention takes; depth as the config's ("[1, 1, 1]": one layer in each block)
static int train_setup_c(const char *name, int steps, int seed, int C, const char *depth, RunConfig *rc, DataSet *ds,
                         char *path, char *err)
{
    char json[512];
    walk_shard(name, 0, 6, 31, 17, 300, NULL);
    snprintf(path, 256, "%s/%s", dir, name);
    snprintf(json, sizeof json,
             "{\"model\": {\"type\": \"hourglass\", \"depth\": %s, \"input_length\": 16, \"num_heads\": 2, "
             "\"d_model\": %d, \"dim_feedforward\": %d, \"attn_resampling\": true}, \"loss\": {\"type\": \"cosine_ce\"}, "
             "\"train\": {\"batch_size\": 2, \"gradient_accumulation_steps\": 2, \"steps\": %d, \"seed\": %d}, "
             "\"lr_scheduler\": {\"max_lr\": 3e-3}}",
             depth, C, 2 * C, steps, seed);
    if (config_parse(rc, json, "test", err) < 0) return -1;
    return data_open(ds, path, rc->input_length, remi_vocab_hash(), DATA_TRAIN | DATA_LAZY, err);
}
static int train_setup(const char *name, int steps, int seed, RunConfig *rc, DataSet *ds, char *path, char *err)
{
    return train_setup_c(name, steps, seed, 16, "[1, 1, 1]", rc, ds, path, err);
}

static void test_training(const Backend *gpu)
{
    char path[256], err[ERR_MAX];
    if (!gpu) {
        CHECK(0, "training");
        return;
    }
    RunConfig rc;
    DataSet ds;
    Trainer c, g, back;
    if (train_setup("train.bin", 100, 3, &rc, &ds, path, err) < 0 ||
        trainer_init(&c, &rc, REMI_VOCAB_SIZE, NULL, err) < 0 || trainer_init(&g, &rc, REMI_VOCAB_SIZE, gpu, err) < 0) {
        CHECK(0, "training setup: %s", err);
        return;
    }
    double worst = 0, norm, lr;
    for (int s = 0; s < 100; s++) {
        double lc = trainer_step(&c, &ds, &norm, &lr), lg = trainer_step(&g, &ds, &norm, &lr);
        double e = fabs(lc - lg);
        if (!(e <= worst)) worst = e; // a NaN stays
    }
    CHECK(worst <= 1e-3, "100 steps: the GPU's losses stray %.3g from the CPU's", worst);
    // the GPU's state on the CPU: the next step of each agrees
    snprintf(path, sizeof path, "%s/trainer.state", dir);
    trainer_save(&g, path, 1, remi_vocab_hash(), 0);
    int64_t run_id;
    CHECK(trainer_init(&back, &rc, REMI_VOCAB_SIZE, NULL, err) == 0 &&
          trainer_load(&back, path, 1, remi_vocab_hash(), &run_id, err) == 0, "GPU state on the CPU: %s", err);
    double lb = trainer_step(&back, &ds, &norm, &lr), lg = trainer_step(&g, &ds, &norm, &lr);
    CHECK(fabs(lb - lg) <= 1e-3, "after the GPU's state: CPU step loss %.9g, GPU %.9g", lb, lg);
    trainer_free(&c), trainer_free(&g), trainer_free(&back);
    data_close(&ds), config_free(&rc);
    unlink(path);
    snprintf(path, sizeof path, "%s/train.bin", dir);
    unlink(path);
}

// --precision bf16 (the linear layers' products on bfloat16 inputs): a tiny hourglass learns the walk on the GPU,
// its val loss under 0.7 x the unigram entropy of the val tokens, and it stays near the float32 GPU run's. With
// HMT_GPU_ATTENTION=fused (`what` says so) its attention is the tensor-core kernels' (head size 16, bf16 operands).
static void test_bf16_training(const Backend *gpu, const char *what)
{
    char err[ERR_MAX], path[256];
    if (!gpu) {
        CHECK(0, "bf16 training");
        CHECK(0, "bf16 against float32");
        return;
    }
    double h_train, h_val;
    walk_shard("bf16_train.bin", 0, 12, 7, 3, 20, &h_train), walk_shard("bf16_val.bin", 12, 4, 7, 3, 20, &h_val);
    RunConfig rc;
    const char *json = "{\"model\": {\"type\": \"hourglass\", \"depth\": [1, 1, 1], \"input_length\": 16, "
                       "\"num_heads\": 2, \"d_model\": 32, \"dim_feedforward\": 64, \"attn_resampling\": true}, "
                       "\"train\": {\"batch_size\": 4, \"steps\": 60, \"seed\": 5}, \"lr_scheduler\": "
                       "{\"max_lr\": 1e-2}}";
    DataSet ds, val;
    Trainer t[2]; // float32, bf16
    snprintf(path, sizeof path, "%s/bf16_train.bin", dir);
    int ok = config_parse(&rc, json, "test", err) == 0 &&
             data_open(&ds, path, rc.input_length, remi_vocab_hash(), DATA_TRAIN | DATA_LAZY, err) == 0;
    snprintf(path, sizeof path, "%s/bf16_val.bin", dir);
    ok = ok && data_open(&val, path, rc.input_length, remi_vocab_hash(), DATA_EVAL, err) == 0;
    double loss[2] = {0, 0};
    for (int p = 0; ok && p < 2; p++) {
        gpu->set_precision(p ? PREC_BF16 : PREC_FP32);
        if (trainer_init(&t[p], &rc, REMI_VOCAB_SIZE, gpu, err) < 0) {
            ok = 0;
            break;
        }
        double norm, lr;
        for (int s = 0; s < rc.steps; s++) trainer_step(&t[p], &ds, &norm, &lr);
        EvalLikelihood ev;
        ok = evaluate_likelihood(&t[p].m, &val, NULL, &ev) == 0;
        loss[p] = ev.loss;
        trainer_free(&t[p]);
    }
    gpu->set_precision(PREC_FP32);
    CHECK(ok, "bf16 training setup: %s", err);
    printf("bf16 training%s: val loss %.4f (float32 %.4f), unigram entropy %.4f\n", what, loss[1], loss[0], h_val);
    CHECK(ok && loss[1] < 0.7 * h_val, "bf16 training%s: val loss %.4f, not under 0.7 x the unigram entropy %.4f",
          what, loss[1], h_val);
    CHECK(ok && fabs(loss[1] - loss[0]) <= 0.05 * loss[0] + 0.02, "bf16%s val loss %.4f against float32 %.4f", what,
          loss[1], loss[0]);
    if (ok) data_close(&ds), data_close(&val);
    config_free(&rc);
    snprintf(path, sizeof path, "%s/bf16_train.bin", dir), unlink(path);
    snprintf(path, sizeof path, "%s/bf16_val.bin", dir), unlink(path);
}

// a trainer's weights and Adam moments in host memory: 3 n floats, in that order
static float *state_host(const Backend *gpu, const Trainer *t)
{
    size_t n = t->m.n_floats;
    float *h = xmalloc(3 * n * sizeof *h);
    const float *dev[3] = {t->m.bw, t->adam_m, t->adam_v};
    for (int j = 0; j < 3; j++) gpu->download(h + j * n, dev[j], n * sizeof *h);
    return h;
}

// The training step captured in a CUDA graph (HMT_GPU_STEP_GRAPH=1: the first step direct, the second captured,
// then replays that read new tokens, seeds and Adam constants from device memory) gives the bytes of the same steps
// launched one by one: losses, gradient norms, weights and Adam moments, in float32 and bf16, also across a capture
// made again when the ops' workspace moved. A step whose loss is not finite leaves the weights and the step count
// alone (Adam's guard on the device), graphed or not.
static void test_step_graph(const Backend *gpu)
{
    char err[ERR_MAX], path[256];
    if (!gpu) {
        for (int k = 0; k < 12; k++) CHECK(0, "step graph");
        return;
    }
    RunConfig rc;
    DataSet ds;
    if (train_setup("graph_train.bin", 20, 7, &rc, &ds, path, err) < 0) {
        CHECK(0, "step graph setup: %s", err);
        return;
    }
    for (int prec = PREC_FP32; prec <= PREC_BF16; prec += PREC_BF16 - PREC_FP32) {
        Trainer t[2]; // launched one by one, graphed
        gpu->set_precision(prec);
        int ok = trainer_init(&t[0], &rc, REMI_VOCAB_SIZE, gpu, err) == 0;
        setenv("HMT_GPU_STEP_GRAPH", "1", 1);
        ok = ok && trainer_init(&t[1], &rc, REMI_VOCAB_SIZE, gpu, err) == 0;
        unsetenv("HMT_GPU_STEP_GRAPH");
        CHECK(ok, "step graph (%s) setup: %s", precision_name(prec), err);
        if (!ok) break;
        int same = 1;
        for (int s = 0; s < 6; s++) {
            double l[2], nrm[2], lr[2];
            for (int k = 0; k < 2; k++) l[k] = trainer_step(&t[k], &ds, &nrm[k], &lr[k]);
            same = same && memcmp(l, l + 1, sizeof *l) == 0 && memcmp(nrm, nrm + 1, sizeof *nrm) == 0 && lr[0] == lr[1];
        }
        CHECK(t[1].graph != NULL && t[1].n_captures == 1 && t[0].graph == NULL,
              "step graph (%s): captured once, only where asked", precision_name(prec));
        // an op outside the step grows the ops' workspace (exp-cosine over R rows takes R (R + 2) + 1 doubles: 1.3 MB,
        // then 2.9: past the tiny step's MiB, then past the last growth): the graph's pointers into the old one are
        // stale, so the next step captures it again (ASan: a replay would read freed memory)
        int R = prec == PREC_FP32 ? 400 : 600;
        float *d_h = gpu->alloc((size_t)R * sizeof(float));
        double *d_sum = gpu->alloc(sizeof(double));
        gpu->exp_cosine_forward(d_sum, d_h, 1, R, 1);
        gpu->free(d_h), gpu->free(d_sum);
        for (int s = 0; s < 2; s++) {
            double l[2], nrm[2], lr[2];
            for (int k = 0; k < 2; k++) l[k] = trainer_step(&t[k], &ds, &nrm[k], &lr[k]);
            same = same && memcmp(l, l + 1, sizeof *l) == 0 && memcmp(nrm, nrm + 1, sizeof *nrm) == 0 && lr[0] == lr[1];
        }
        CHECK(t[1].n_captures == 2, "step graph (%s): captured again after the workspace moved (%d captures)",
              precision_name(prec), t[1].n_captures);
        CHECK(same && t[0].step == 8 && t[1].step == 8, "step graph (%s): 8 steps' losses and norms, the same bytes",
              precision_name(prec));
        size_t n = t[0].m.n_floats, bytes = n * sizeof(float);
        float *h[2] = {state_host(gpu, &t[0]), state_host(gpu, &t[1])};
        CHECK(memcmp(h[0], h[1], 3 * bytes) == 0, "step graph (%s): weights and Adam moments, the same bytes",
              precision_name(prec));
        // a NaN weight in the output layer: the loss is NaN, and the step changes nothing (its graph reads the
        // guard on the device)
        int wout = hg_param_index(&t[0].m, "Wout.weight");
        size_t at = wout >= 0 ? t[0].m.params[wout].offset : 0;
        float nan = NAN;
        int guarded = 1;
        for (int k = 0; k < 2; k++) {
            gpu->upload(t[k].m.bw + at, &nan, sizeof nan);
            h[k][at] = NAN;
            double nrm, lr, l = trainer_step(&t[k], &ds, &nrm, &lr);
            float *w = xmalloc(bytes);
            gpu->download(w, t[k].m.bw, bytes);
            guarded = guarded && isnan(l) && t[k].step == 8 && memcmp(w, h[k], bytes) == 0;
            free(w);
        }
        CHECK(wout >= 0 && guarded, "step graph (%s): a NaN loss leaves the weights and the step count",
              precision_name(prec));
        for (int k = 0; k < 2; k++) free(h[k]), trainer_free(&t[k]);
    }
    gpu->set_precision(PREC_FP32);
    data_close(&ds), config_free(&rc);
    unlink(path);
}

// the GPU shut down and started again (nothing held, an empty workspace), with the fused attention or not
static const Backend *fresh_gpu(int fused, char *err)
{
    gpu_shutdown();
    if (fused) setenv("HMT_GPU_ATTENTION", "fused", 1);
    const Backend *gpu = backend_get("cuda", err);
    unsetenv("HMT_GPU_ATTENTION");
    return gpu;
}

// a trainer's weights and Adam moments in host memory (3 n floats), after `steps` steps, a validation pass and a
// checkpoint; *allocs: the cudaMalloc calls they made
static float *reserve_run(Trainer *t, const Backend *gpu, DataSet *ds, DataSet *val, int steps, long *allocs)
{
    char path[256];
    long a0 = gpu_mem_allocs();
    double norm, lr;
    for (int s = 0; s < steps; s++) trainer_step(t, ds, &norm, &lr);
    EvalLikelihood ev;
    evaluate_likelihood(&t->m, val, NULL, &ev);
    snprintf(path, sizeof path, "%s/reserve.state", dir);
    trainer_save(t, path, 1, remi_vocab_hash(), 0);
    unlink(path);
    *allocs = gpu_mem_allocs() - a0;
    return state_host(gpu, t);
}

// One allocation per run: trainer_init reserves one block, sized by a dry run of the set-up and one step, on a GPU
// that holds nothing yet (fresh_gpu, so only the dry run can have sized the workspace). Steps (one by one, or
// captured as a graph with the fused attention), a validation pass and a checkpoint then allocate nothing, the block
// goes with the run, and the run's bytes equal those of the same run allocated block by block (HMT_GPU_RESERVE=0).
// In float32 and bf16, with the unfused and the fused attention. Ends on a fresh GPU again.
static void test_reserve(const Backend *gpu)
{
    char err[ERR_MAX], path[256];
    if (!gpu) {
        for (int k = 0; k < 25; k++) CHECK(0, "one allocation per run");
        return;
    }
    RunConfig rc;
    DataSet ds, val;
    int ok = train_setup("reserve_train.bin", 6, 9, &rc, &ds, path, err) == 0 &&
             data_open(&val, path, rc.input_length, remi_vocab_hash(), DATA_EVAL, err) == 0;
    CHECK(ok, "one allocation per run: setup: %s", err);
    for (int fused = 0; ok && fused < 2; fused++)
        for (int prec = PREC_FP32; ok && prec <= PREC_BF16; prec += PREC_BF16 - PREC_FP32) {
            const char *what = fused ? "fused attention" : "gemm attention", *pn = precision_name(prec);
            if (!(gpu = fresh_gpu(fused, err))) {
                CHECK(0, "the CUDA backend again: %s", err);
                return;
            }
            gpu->set_precision(prec);
            Trainer t;
            size_t held0, held1, peak;
            gpu_mem_allocated(&held0, &peak);
            long a0 = gpu_mem_allocs(), allocs[2];
            if (fused) setenv("HMT_GPU_STEP_GRAPH", "1", 1);
            ok = trainer_init(&t, &rc, REMI_VOCAB_SIZE, gpu, err) == 0;
            unsetenv("HMT_GPU_STEP_GRAPH");
            CHECK(ok, "reserve (%s, %s): trainer_init: %s", pn, what, err);
            if (!ok) break;
            gpu_mem_allocated(&held1, &peak);
            CHECK(gpu_mem_allocs() - a0 == 1 && t.reserved > 0 && held1 - held0 == t.reserved,
                  "reserve (%s, %s): set-up in %ld allocations (want 1), %zu bytes held of %zu reserved", pn, what,
                  gpu_mem_allocs() - a0, held1 - held0, t.reserved);
            float *h[2];
            h[0] = reserve_run(&t, gpu, &ds, &val, rc.steps, &allocs[0]);
            CHECK(allocs[0] == 0 && (!fused || t.graph != NULL),
                  "reserve (%s, %s): %d steps%s, validation and checkpoint made %ld allocations (want 0)", pn, what,
                  rc.steps, fused ? " (graphed)" : "", allocs[0]);
            size_t n = t.m.n_floats;
            trainer_free(&t);
            gpu_mem_allocated(&held1, &peak);
            CHECK(held1 == held0, "reserve (%s, %s): the block goes with the run (%zu bytes held, %zu before)", pn,
                  what, held1, held0);
            setenv("HMT_GPU_RESERVE", "0", 1);
            a0 = gpu_mem_allocs();
            ok = trainer_init(&t, &rc, REMI_VOCAB_SIZE, gpu, err) == 0;
            unsetenv("HMT_GPU_RESERVE");
            CHECK(ok && t.reserved == 0 && gpu_mem_allocs() - a0 > 1,
                  "reserve (%s, %s): HMT_GPU_RESERVE=0 sets up block by block (%ld allocations): %s", pn, what,
                  gpu_mem_allocs() - a0, err);
            if (!ok) break;
            h[1] = reserve_run(&t, gpu, &ds, &val, rc.steps, &allocs[1]);
            CHECK(memcmp(h[0], h[1], 3 * n * sizeof(float)) == 0,
                  "reserve (%s, %s): weights and Adam moments, the bytes of the run allocated block by block", pn, what);
            trainer_free(&t), free(h[0]), free(h[1]);
        }
    gpu->set_precision(PREC_FP32);
    if (!fresh_gpu(0, err)) CHECK(0, "the CUDA backend again: %s", err);
    if (ok) data_close(&val);
    data_close(&ds), config_free(&rc);
    snprintf(path, sizeof path, "%s/reserve_train.bin", dir), unlink(path);
}

// --recompute-ffn on the GPU: linear1, ReLU and dropout recomputed in the backward (cuBLAS's product and the same
// seeds again) give the bytes of the run that keeps their output, in float32 and bf16
static void test_recompute(const Backend *gpu)
{
    char err[ERR_MAX], path[256];
    if (!gpu) {
        for (int k = 0; k < 7; k++) CHECK(0, "recompute_ffn");
        return;
    }
    RunConfig rc;
    DataSet ds, val;
    int ok = train_setup("recompute_train.bin", 6, 11, &rc, &ds, path, err) == 0 &&
             data_open(&val, path, rc.input_length, remi_vocab_hash(), DATA_EVAL, err) == 0;
    CHECK(ok, "recompute_ffn: setup: %s", err);
    for (int prec = PREC_FP32; ok && prec <= PREC_BF16; prec += PREC_BF16 - PREC_FP32) {
        gpu->set_precision(prec);
        float *h[2];
        size_t n = 0;
        for (int k = 0; k < 2; k++) {
            Trainer t;
            long allocs;
            rc.recompute_ffn = k;
            ok = trainer_init(&t, &rc, REMI_VOCAB_SIZE, gpu, err) == 0;
            CHECK(ok, "recompute_ffn (%s): trainer_init: %s", precision_name(prec), err);
            if (!ok) {
                if (k) free(h[0]);
                break;
            }
            h[k] = reserve_run(&t, gpu, &ds, &val, rc.steps, &allocs);
            n = t.m.n_floats;
            trainer_free(&t);
        }
        if (!ok) break;
        CHECK(memcmp(h[0], h[1], 3 * n * sizeof(float)) == 0,
              "recompute_ffn (%s): weights and Adam moments, the bytes of the run that keeps r1d", precision_name(prec));
        free(h[0]), free(h[1]);
    }
    rc.recompute_ffn = 0;
    gpu->set_precision(PREC_FP32);
    if (ok) data_close(&val);
    data_close(&ds), config_free(&rc);
    snprintf(path, sizeof path, "%s/recompute_train.bin", dir), unlink(path);
}

// bf16 activations (gpu.h gpu_act16): under bf16 the feed-forward's hidden activation, LayerNorm 1's output and a
// layer's input after a block's first (blocks of 2 layers here) are kept as bfloat16, and with the fused attention
// (on tensor cores: head size 16 here) q, k and v too, half their bytes (the run's reserved block is smaller, and
// smaller by q, k, v's half with the fused attention), and the run
// gives the bytes of the run that keeps them in float32 (HMT_GPU_ACT16=0): weights and Adam moments after the
// steps, a validation pass and a checkpoint, with the gemm and the fused attention, and with --recompute-ffn. The
// backward's gradients declared zero (gpu_fresh) are taken by the ops that write them, and the run gives the bytes
// of the run with HMT_GPU_FRESH=0, which zeroes them. Ends on a fresh GPU.
static void test_act16(const Backend *gpu)
{
    char err[ERR_MAX], path[256];
    if (!gpu) {
        for (int k = 0; k < 43; k++) CHECK(0, "bf16 activations");
        return;
    }
    RunConfig rc;
    DataSet ds, val;
    int ok = train_setup_c("act16_train.bin", 6, 13, 32, "[2, 1, 2]", &rc, &ds, path, err) == 0 &&
             data_open(&val, path, rc.input_length, remi_vocab_hash(), DATA_EVAL, err) == 0;
    CHECK(ok, "bf16 activations: setup: %s", err);
    // the first layer's attention (d 32, 2 heads): q, k, v as bf16 with the fused attention only
    AttnDims ad = {.B = rc.batch_size, .Tq = rc.input_length, .Tk = rc.input_length, .C = 32, .NH = 2,
                   .L = rc.input_length, .ldq = 96, .ldk = 96, .ldv = 96};
    size_t saved[2] = {0, 0}; // bytes act16 saves, gemm and fused attention
    for (int v = 0; ok && v < 3; v++) { // gemm attention, fused, gemm with recompute_ffn
        const char *what = v == 0 ? "gemm attention" : v == 1 ? "fused attention" : "gemm attention, recompute_ffn";
        if (!(gpu = fresh_gpu(v == 1, err))) {
            CHECK(0, "the CUDA backend again: %s", err);
            return;
        }
        gpu->set_precision(PREC_BF16);
        rc.recompute_ffn = v == 2;
        float *h[3];
        size_t act[3], n = 0;
        long taken[3];
        for (int k = 0; k < 3; k++) { // k 0: float32 activations, k 1: bf16, k 2: bf16 with HMT_GPU_FRESH=0
            Trainer t;
            long allocs;
            if (!k) setenv("HMT_GPU_ACT16", "0", 1);
            if (k == 2) setenv("HMT_GPU_FRESH", "0", 1), gpu->set_precision(PREC_BF16); // (which reads it)
            CHECK(gpu->act16 && gpu->act16() == !!k, "bf16 activations (%s): act16 says %d with HMT_GPU_ACT16%s",
                  what, gpu->act16 ? gpu->act16() : -1, k ? " unset" : "=0");
            int takes = gpu->attention_takes16 && gpu->attention_takes16(&ad);
            CHECK(takes == (k && v == 1), "bf16 activations (%s): bf16 q, k, v %staken with HMT_GPU_ACT16%s", what,
                  takes ? "" : "not ", k ? " unset" : "=0");
            ok = trainer_init(&t, &rc, REMI_VOCAB_SIZE, gpu, err) == 0;
            unsetenv("HMT_GPU_ACT16");
            CHECK(ok, "bf16 activations (%s): trainer_init: %s", what, err);
            if (!ok) {
                for (int j = 0; j < k; j++) free(h[j]);
                unsetenv("HMT_GPU_FRESH");
                break;
            }
            act[k] = t.reserved; // the plan's block is in it, not rounded (hg_act_bytes rounds to 2 MiB)
            taken[k] = gpu_fresh_taken();
            h[k] = reserve_run(&t, gpu, &ds, &val, rc.steps, &allocs);
            taken[k] = gpu_fresh_taken() - taken[k];
            n = t.m.n_floats;
            trainer_free(&t);
            if (k == 2) unsetenv("HMT_GPU_FRESH"), gpu->set_precision(PREC_BF16);
        }
        if (!ok) break;
        // the backward's gradients declared zero (gpu_fresh): taken by the ops after them (each layer's, each step),
        // and the run's bytes those of the run that zeroes them
        CHECK(taken[0] > 0 && taken[1] > 0 && taken[2] == 0,
              "bf16 activations (%s): ranges declared zero taken: %ld, %ld (bf16), %ld with HMT_GPU_FRESH=0", what,
              taken[0], taken[1], taken[2]);
        // the bytes on the emulator; on a GPU cuBLAS may take other algorithms for beta 0 than for beta 1
        double worst = 0;
        for (size_t i = 0; i < 3 * n; i++) {
            double d = fabs((double)h[1][i] - h[2][i]) / fmax(1.0, fabs(h[2][i]));
            if (!(d <= worst)) worst = d; // NaN too
        }
        int same = memcmp(h[1], h[2], 3 * n * sizeof(float)) == 0;
        CHECK(same || (!strstr(gpu_name(), "emulation") && worst <= 1e-5),
              "bf16 activations (%s): weights and Adam moments %s the run with HMT_GPU_FRESH=0 (largest difference "
              "%.2g)", what, same ? "the bytes of" : "off", worst);
        free(h[2]);
        CHECK(act[1] < act[0], "bf16 activations (%s): the run reserves %zu bytes, %zu with float32 activations",
              what, act[1], act[0]);
        if (v < 2) saved[v] = act[0] - act[1];
        if (v == 1) { // at least half of q, k, v of the two self-attention layers at full length
            size_t qkv = 2 * (size_t)rc.batch_size * rc.input_length * 96 * sizeof(uint16_t);
            CHECK(saved[1] >= saved[0] + qkv, "bf16 activations: the fused attention's run saves %zu bytes, the "
                  "gemm's %zu: not q, k and v's %zu more", saved[1], saved[0], qkv);
        }
        CHECK(memcmp(h[0], h[1], 3 * n * sizeof(float)) == 0,
              "bf16 activations (%s): weights and Adam moments, the bytes of the float32 activations' run", what);
        free(h[0]), free(h[1]);
    }
    rc.recompute_ffn = 0;
    gpu->set_precision(PREC_FP32);
    CHECK(!gpu->act16 || gpu->act16() == 0, "bf16 activations: none under float32");
    if (!fresh_gpu(0, err)) CHECK(0, "the CUDA backend again: %s", err);
    if (ok) data_close(&val);
    data_close(&ds), config_free(&rc);
    snprintf(path, sizeof path, "%s/act16_train.bin", dir), unlink(path);
}

// the unfused attention's products on bf16 operands (HMT_GPU_ATT16=1 under bf16): a tiny model learns (as bf16), and
// on a fresh GPU a run reserves its memory once (the dry run sizes the copies and pointer arrays: no allocation
// after the set-up) and its step captured as a CUDA graph gives the bytes of the step run op by op
static void test_att16(const Backend *gpu)
{
    char err[ERR_MAX], path[256];
    printf("-- bf16 attention products (HMT_GPU_ATT16=1)\n");
    setenv("HMT_GPU_ATT16", "1", 1);
    test_bf16_training(gpu, " (bf16 attention products)");
    if (!gpu) {
        for (int k = 0; k < 5; k++) CHECK(0, "bf16 attention products");
        unsetenv("HMT_GPU_ATT16");
        return;
    }
    RunConfig rc;
    DataSet ds, val;
    int ok = train_setup("att16_train.bin", 6, 17, &rc, &ds, path, err) == 0 &&
             data_open(&val, path, rc.input_length, remi_vocab_hash(), DATA_EVAL, err) == 0;
    CHECK(ok, "bf16 attention products: setup: %s", err);
    float *h[2] = {NULL, NULL};
    size_t n = 0;
    for (int k = 0; ok && k < 2; k++) { // k 0: op by op, k 1: the step as a graph
        if (!(gpu = fresh_gpu(0, err))) {
            CHECK(0, "the CUDA backend again: %s", err);
            break;
        }
        gpu->set_precision(PREC_BF16);
        Trainer t;
        long allocs;
        if (k) setenv("HMT_GPU_STEP_GRAPH", "1", 1);
        ok = trainer_init(&t, &rc, REMI_VOCAB_SIZE, gpu, err) == 0;
        unsetenv("HMT_GPU_STEP_GRAPH");
        CHECK(ok, "bf16 attention products: trainer_init: %s", err);
        if (!ok) break;
        h[k] = reserve_run(&t, gpu, &ds, &val, rc.steps, &allocs);
        CHECK(allocs == 0 && t.reserved > 0 && (!k || t.graph != NULL),
              "bf16 attention products: %d steps%s, validation and checkpoint made %ld allocations (want 0)", rc.steps,
              k ? " (graphed)" : "", allocs);
        n = t.m.n_floats;
        trainer_free(&t);
    }
    if (ok)
        CHECK(memcmp(h[0], h[1], 3 * n * sizeof(float)) == 0,
              "bf16 attention products: the graphed steps give the bytes of the steps op by op");
    free(h[0]), free(h[1]);
    unsetenv("HMT_GPU_ATT16");
    if (gpu) gpu->set_precision(PREC_FP32);
    if (!fresh_gpu(0, err)) CHECK(0, "the CUDA backend again: %s", err);
    if (ok) data_close(&val);
    data_close(&ds), config_free(&rc);
    snprintf(path, sizeof path, "%s/att16_train.bin", dir), unlink(path);
}

int main(int argc, char **argv)
{
    util_init("test_cuda_model");
    setvbuf(stdout, NULL, _IOLBF, 0);
    // sections named on the command line run alone; none: all of them
    static const char *const sections[] = {"model", "decode", "graph", "draw", "training", "step_graph", "reserve",
                                          "recompute", "act16", "bf16", "att16", "fused"};
    check_select(argc, argv, sections, sizeof sections / sizeof *sections);
    char err[ERR_MAX];
    const Backend *gpu = backend_get("cuda", err);
    const char *req = getenv("HMT_REQUIRE_GPU");
    if (!gpu && !(req && strcmp(req, "1") == 0) &&
        (strstr(err, "no CUDA device") || strstr(err, "driver") || strstr(err, "no CUDA backend"))) {
        printf("test_cuda_model: %s: every GPU check skipped\n", err);
        gpu = NULL;
        check_skipping = 1;
    } else {
        CHECK(gpu != NULL, "the CUDA backend: %s", err);
        if (!gpu) return check_done();
        printf("test_cuda_model: on %s\n", gpu->device_name());
        if (!mkdtemp(dir)) die("mkdtemp failed");
    }
    if (check_want("model")) test_model(gpu);
    if (check_want("decode")) test_decode(gpu), test_decode_long(gpu);
    if (check_want("graph")) test_decode_graph(gpu);
    if (check_want("draw")) test_decode_draw(gpu);
    if (check_want("training")) test_training(gpu);
    if (check_want("step_graph")) test_step_graph(gpu);
    if (check_want("reserve")) test_reserve(gpu);
    if (check_want("recompute")) test_recompute(gpu);
    if (check_want("act16")) test_act16(gpu);
    if (check_want("bf16")) test_bf16_training(gpu, "");
    if (check_want("att16")) test_att16(gpu);
    if (check_want("fused")) { // the fused attention kernels in the same model (decoding has its own kernels: not again)
        printf("-- fused attention (HMT_GPU_ATTENTION=fused)\n");
        if (gpu) {
            setenv("HMT_GPU_ATTENTION", "fused", 1);
            gpu = backend_get("cuda", err);
            CHECK(gpu != NULL, "the CUDA backend with fused attention: %s", err);
            unsetenv("HMT_GPU_ATTENTION");
        }
        if (gpu || check_skipping) {
            test_model(gpu), test_training(gpu), test_bf16_training(gpu, " (fused attention, tensor cores)");
            setenv("HMT_GPU_FA_MMA", "1", 1); // its kernels on fragments in registers (gpu_mma.cuh)
            test_bf16_training(gpu, " (fused attention, mma kernels)");
            unsetenv("HMT_GPU_FA_MMA");
        }
    }
    if (!check_skipping) rmdir(dir);
    return check_done();
}
