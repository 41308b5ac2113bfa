// test_cuda_ops: every GPU op of gpu.h, forward and backward, against the CPU op of ops.h / optim.h on the same
// random inputs (fp32, TF32 off), each run twice on the GPU to require the same bytes (determinism). Gradients start
// from random values on both sides, so the += of backward is checked too. Tolerance, per tensor: the same bytes
// where the GPU kernel does the CPU's arithmetic in the CPU's order (stated at the check), else
// max|gpu - cpu| / max(1, max|cpu|) <= 1e-5. Without a GPU (no device, no driver) every check counts as skipped;
// with HMT_REQUIRE_GPU=1, or a GPU present that fails to start, that is a failure. Built only by `make CUDA=1`.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "gpu.h"
#include "ops.h"
#include "optim.h"
#include "sampler.h"
#include "util.h"

#define TOL 1e-5 // relative to the tensor's scale, max(1, max|cpu|)
#define FUSED_TOL_TF32 2e-3 // the tensor-core attention's: TF32 operands (largest seen on the emulator 4.7e-4)
#define FUSED_TOL_BF16 1.5e-2 // bf16 operands and probabilities (largest seen 4.1e-3)

static uint64_t rng_state = 7;
static float frand(void) // uniform in [-1, 1)
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((double)(rng_state >> 11) * 0x1p-53 * 2.0 - 1.0);
}
static float *rnd(size_t n, float s)
{
    float *p = malloc(n * sizeof *p + 1);
    for (size_t i = 0; i < n; i++) p[i] = s * frand();
    return p;
}
// n floats, every one NaN: fed where an op should only write, a read spreads them
static float *nans(size_t n)
{
    float *p = malloc(n * sizeof *p + 1);
    for (size_t i = 0; i < n; i++) p[i] = NAN;
    return p;
}
static float *copy_of(const float *a, size_t n)
{
    float *p = malloc(n * sizeof *p + 1);
    memcpy(p, a, n * sizeof *p);
    return p;
}

// ---- device helpers: without a GPU they return NULL / zeros, and the ops they feed do nothing -----------------

static void *dev_from(const void *host, size_t bytes)
{
    void *d = gpu_alloc(bytes);
    if (d) gpu_upload(d, host, bytes);
    return d;
}
static void *dev_new(size_t bytes)
{
    void *d = gpu_alloc(bytes);
    if (d) gpu_zero(d, bytes);
    return d;
}
// seed as a SeedRef the kernel reads from device memory: mul * base + add with base uploaded (as trainer.c's graphed
// step passes them); the ops must give the bytes of the seed passed by value. *keep: the base, to free
static SeedRef dev_seed(uint64_t seed, void **keep)
{
    uint64_t base = seed ^ 0x5851f42d4c957f2dULL, mul = 6364136223846793005ULL;
    *keep = dev_from(&base, sizeof base);
    return (SeedRef){*keep, mul, seed - mul * base};
}

// a fresh host copy of device memory (zeros when the copy fails)
static void *host_from(const void *d, size_t bytes)
{
    void *h = calloc(1, bytes + 1);
    if (d) gpu_download(h, d, bytes);
    return h;
}
static void reset(void *d, const void *host, size_t bytes)
{
    if (d) gpu_upload(d, host, bytes);
}

// ---- comparisons ------------------------------------------------------------------------------------------

// max|got - want| / max(1, max|want|) <= tol (tol 0: the same bytes); returns that ratio (0 for tol 0)
static double cmp(const char *what, const float *got, const float *want, size_t n, double tol)
{
    if (tol == 0) {
        size_t i = 0;
        while (i < n && memcmp(got + i, want + i, sizeof *got) == 0) i++;
        CHECK(i == n, "%s: not the CPU's bytes: first at %zu of %zu: gpu %.9g cpu %.9g", what, i, n,
              i < n ? got[i] : 0.0, i < n ? want[i] : 0.0);
        return 0;
    }
    double e = 0, scale = 1;
    size_t worst = 0, bad = 0;
    for (size_t i = 0; i < n; i++) {
        scale = fmax(scale, fabs(want[i]));
        double d = fabs((double)got[i] - want[i]);
        if (!(d <= e)) e = d, worst = i; // catches nan
    }
    for (size_t i = 0; i < n; i++)
        if (!(fabs((double)got[i] - want[i]) <= tol * scale)) bad++;
    CHECK(bad == 0, "%s: %zu of %zu off: max |gpu - cpu| %.3g at %zu (gpu %.9g cpu %.9g), tolerance %.0e * %.3g",
          what, bad, n, e, worst, n ? got[worst] : 0.0, n ? want[worst] : 0.0, tol, scale);
    return e / scale;
}
static void cmp_bytes(const char *what, const void *a, const void *b, size_t bytes)
{
    size_t i = 0;
    while (i < bytes && ((const uint8_t *)a)[i] == ((const uint8_t *)b)[i]) i++;
    CHECK(i == bytes, "%s: bytes differ, first at byte %zu of %zu", what, i, bytes);
}
// run 1 and run 2 of the GPU gave the same bytes
static void twice(const char *what, const void *r1, const void *r2, size_t bytes)
{
    char m[256];
    snprintf(m, sizeof m, "%.200s, run twice", what);
    cmp_bytes(m, r1, r2, bytes);
}
// no error kept by the ops of a section
static void no_error(const char *section)
{
    CHECK(gpu_sync() == 0 && gpu_error()[0] == 0, "%s: %s", section, gpu_error());
    gpu_clear_error();
}

// ---- linear -------------------------------------------------------------------------------------------------

static float *bf16_copy(const float *a, size_t n)
{
    float *p = copy_of(a, n);
    for (size_t i = 0; i < n; i++) p[i] = check_bf16_round(p[i]);
    return p;
}

// prec: GPU_FP32 (the CPU's float32 within 1e-5), GPU_TF32 (within 1e-2), GPU_BF16 (within 1e-5 of the CPU's
// float32 product of the bfloat16-rounded inputs, and 2e-2 of the float32 result)
static void linear_case(const char *name, int N, int IC, int OC, int bias, int prec)
{
    char m[160];
    float *inp = rnd((size_t)N * IC, 1), *w = rnd((size_t)OC * IC, 1), *b = bias ? rnd(OC, 1) : NULL;
    float *dout = rnd((size_t)N * OC, 1), *dinp0 = rnd((size_t)N * IC, 1), *dw0 = rnd((size_t)OC * IC, 1);
    float *db0 = rnd(OC, 1), *out = malloc((size_t)N * OC * 4);
    float *dinp = copy_of(dinp0, (size_t)N * IC), *dw = copy_of(dw0, (size_t)OC * IC), *db = copy_of(db0, OC);
    linear_forward(out, inp, w, b, N, IC, OC);
    linear_backward(bias ? dinp : NULL, dw, bias ? db : NULL, dout, inp, w, N, IC, OC);
    float *d_inp = dev_from(inp, (size_t)N * IC * 4), *d_w = dev_from(w, (size_t)OC * IC * 4);
    float *d_b = bias ? dev_from(b, OC * 4) : NULL, *d_dout = dev_from(dout, (size_t)N * OC * 4);
    float *d_out = dev_new((size_t)N * OC * 4), *d_dinp = dev_new((size_t)N * IC * 4);
    float *d_dw = dev_new((size_t)OC * IC * 4), *d_db = dev_new(OC * 4);
    float *g_out[2], *g_dinp[2], *g_dw[2], *g_db[2];
    int fast = prec < 0; // -GPU_BF16: HMT_GPU_BF16=fast, checked against float32 only
    prec = fast ? -prec : prec;
    gpu_set_precision(prec);
    for (int r = 0; r < 2; r++) {
        reset(d_dinp, dinp0, (size_t)N * IC * 4), reset(d_dw, dw0, (size_t)OC * IC * 4), reset(d_db, db0, OC * 4);
        gpu_linear_forward(d_out, d_inp, d_w, d_b, N, IC, OC);
        gpu_linear_backward(bias ? d_dinp : NULL, d_dw, bias ? d_db : NULL, d_dout, d_inp, d_w, N, IC, OC);
        g_out[r] = host_from(d_out, (size_t)N * OC * 4), g_dinp[r] = host_from(d_dinp, (size_t)N * IC * 4);
        g_dw[r] = host_from(d_dw, (size_t)OC * IC * 4), g_db[r] = host_from(d_db, OC * 4);
    }
    gpu_set_precision(GPU_FP32);
    if (prec == GPU_BF16 && bias) { // the bias's sums from the read that makes dout's copy: the float32 path's bytes
        reset(d_dw, dw0, (size_t)OC * IC * 4), reset(d_db, db0, OC * 4);
        gpu_linear_backward(NULL, d_dw, d_db, d_dout, d_inp, d_w, N, IC, OC);
        float *f_db = host_from(d_db, OC * 4);
        snprintf(m, sizeof m, "%s db = the float32 path's bytes", name), cmp(m, g_db[0], f_db, OC, 0);
        free(f_db);
    }
    double tol = prec == GPU_TF32 ? 1e-2 : prec == GPU_BF16 ? 2e-2 : TOL; // 10 or 7 mantissa bits
    if (prec == GPU_BF16 && !fast) { // the claim itself: bfloat16 inputs, float32 sums
        float *ib = bf16_copy(inp, (size_t)N * IC), *wb = bf16_copy(w, (size_t)OC * IC);
        float *gb = bf16_copy(dout, (size_t)N * OC), *ob = malloc((size_t)N * OC * 4);
        float *dib = copy_of(dinp0, (size_t)N * IC), *dwb = copy_of(dw0, (size_t)OC * IC);
        linear_forward(ob, ib, wb, b, N, IC, OC);
        linear_backward(bias ? dib : NULL, dwb, NULL, gb, ib, wb, N, IC, OC);
        snprintf(m, sizeof m, "%s out = the float32 product of bf16 inputs", name);
        cmp(m, g_out[0], ob, (size_t)N * OC, TOL);
        snprintf(m, sizeof m, "%s dw = the float32 product of bf16 inputs", name);
        cmp(m, g_dw[0], dwb, (size_t)OC * IC, TOL);
        if (bias) {
            snprintf(m, sizeof m, "%s dinp = the float32 product of bf16 inputs", name);
            cmp(m, g_dinp[0], dib, (size_t)N * IC, TOL);
        }
        free(ib), free(wb), free(gb), free(ob), free(dib), free(dwb);
    }
    snprintf(m, sizeof m, "%s out", name), cmp(m, g_out[0], out, (size_t)N * OC, tol);
    twice(m, g_out[0], g_out[1], (size_t)N * OC * 4);
    snprintf(m, sizeof m, "%s dw", name), cmp(m, g_dw[0], dw, (size_t)OC * IC, tol);
    twice(m, g_dw[0], g_dw[1], (size_t)OC * IC * 4);
    if (bias) {
        snprintf(m, sizeof m, "%s dinp", name), cmp(m, g_dinp[0], dinp, (size_t)N * IC, tol);
        twice(m, g_dinp[0], g_dinp[1], (size_t)N * IC * 4);
        snprintf(m, sizeof m, "%s db", name), cmp(m, g_db[0], db, OC, tol);
        twice(m, g_db[0], g_db[1], OC * 4);
    } else { // dinp and db NULL: untouched
        snprintf(m, sizeof m, "%s dinp (NULL) untouched", name), cmp(m, g_dinp[0], dinp0, (size_t)N * IC, 0);
        snprintf(m, sizeof m, "%s db (NULL) untouched", name), cmp(m, g_db[0], db0, OC, 0);
    }
    for (int r = 0; r < 2; r++) free(g_out[r]), free(g_dinp[r]), free(g_dw[r]), free(g_db[r]);
    gpu_free(d_inp), gpu_free(d_w), gpu_free(d_b), gpu_free(d_dout), gpu_free(d_out), gpu_free(d_dinp);
    gpu_free(d_dw), gpu_free(d_db);
    free(inp), free(w), free(b), free(dout), free(dinp0), free(dw0), free(db0), free(out), free(dinp), free(dw);
    free(db);
    no_error(name);
}

// The bias in cuBLASLt's epilogue (gpu_linear_forward): the CPU's result (under bf16 that of the bfloat16-rounded
// inputs) within the precision's tolerance, and within it of the old way (HMT_GPU_LT=0: the bias's rows, then the
// product added to them); the epilogue taken exactly where it should be (b 16-byte aligned; never with HMT_GPU_LT=0);
// twice the same bytes. The operands sit xo, bo and oo floats past 256-byte aligned blocks: cuBLASLt's algorithm is
// chosen for the operands' alignment, so a plan kept for aligned operands must not serve these (the emulator refuses
// an operand less aligned than its algorithm was chosen for)
static void lt_case(int N, int IC, int OC, int prec, int xo, int bo, int oo)
{
    static const char *const pname[] = {"fp32", "TF32", "bf16"};
    char name[160], m[256];
    int fast = prec < 0; // -GPU_BF16: HMT_GPU_BF16=fast, checked against float32 only
    prec = fast ? -prec : prec;
    snprintf(name, sizeof name, "linear, bias in the epilogue, %s%s %dx%d -> %d, offsets %d %d %d", pname[prec],
             fast ? " (fast)" : "", N, IC, OC, xo, bo, oo);
    float *inp = rnd((size_t)N * IC, 1), *w = rnd((size_t)OC * IC, 1), *b = rnd(OC, 1);
    float *out = malloc((size_t)N * OC * 4);
    int r16 = prec == GPU_BF16 && !fast;
    float *ib = r16 ? bf16_copy(inp, (size_t)N * IC) : copy_of(inp, (size_t)N * IC);
    float *wb = r16 ? bf16_copy(w, (size_t)OC * IC) : copy_of(w, (size_t)OC * IC);
    linear_forward(out, ib, wb, b, N, IC, OC);
    char *d_x = dev_new(((size_t)N * IC + xo) * 4), *d_b = dev_new(((size_t)OC + bo) * 4);
    char *d_o = dev_new(((size_t)N * OC + oo) * 4), *d_w = dev_from(w, (size_t)OC * IC * 4);
    if (d_x) reset(d_x + xo * 4, inp, (size_t)N * IC * 4), reset(d_b + bo * 4, b, OC * 4);
    float *x = d_x ? (float *)(d_x + xo * 4) : NULL, *bias = d_b ? (float *)(d_b + bo * 4) : NULL;
    float *o = d_o ? (float *)(d_o + oo * 4) : NULL;
    float *g[3];
    long runs[3];
    if (fast) setenv("HMT_GPU_BF16", "fast", 1);
    for (int r = 0; r < 3; r++) {
        if (r == 2) setenv("HMT_GPU_LT", "0", 1);
        gpu_set_precision(prec);
        long before = gpu_lt_runs();
        gpu_linear_forward(o, x, (const float *)d_w, bias, N, IC, OC);
        runs[r] = gpu_lt_runs() - before;
        g[r] = host_from(o, (size_t)N * OC * 4);
    }
    unsetenv("HMT_GPU_LT"), unsetenv("HMT_GPU_BF16");
    gpu_set_precision(GPU_FP32);
    int want = bo % 4 == 0; // b 16-byte aligned
    CHECK(runs[0] == want && runs[1] == want, "%s: %ld and %ld products with the epilogue, want %d", name, runs[0],
          runs[1], want);
    CHECK(runs[2] == 0, "%s: HMT_GPU_LT=0 ran %ld products with the epilogue", name, runs[2]);
    double tol = prec == GPU_TF32 ? 1e-2 : fast ? 2e-2 : TOL;
    snprintf(m, sizeof m, "%s out", name), cmp(m, g[0], out, (size_t)N * OC, tol);
    twice(m, g[0], g[1], (size_t)N * OC * 4);
    snprintf(m, sizeof m, "%s out, against HMT_GPU_LT=0", name), cmp(m, g[0], g[2], (size_t)N * OC, tol);
    for (int r = 0; r < 3; r++) free(g[r]);
    gpu_free(d_x), gpu_free(d_b), gpu_free(d_o), gpu_free(d_w);
    free(inp), free(w), free(b), free(out), free(ib), free(wb);
    no_error(name);
}

// A shape first met while a graph is being captured: no cuBLASLt plan is made then (cuBLASLt 13's heuristic is
// reported to fail during a capture; the emulator's does), the graph takes the old way (HMT_GPU_LT=0's bytes), and
// the plan is made at the shape's first call outside a capture
static void lt_capture_case(void)
{
    int N = 23, IC = 40, OC = 56; // a shape no other case has
    float *inp = rnd((size_t)N * IC, 1), *w = rnd((size_t)OC * IC, 1), *b = rnd(OC, 1);
    float *d_x = dev_from(inp, (size_t)N * IC * 4), *d_w = dev_from(w, (size_t)OC * IC * 4), *d_b = dev_from(b, OC * 4);
    float *d_o = dev_new((size_t)N * OC * 4);
    size_t bytes = (size_t)N * OC * 4;
    setenv("HMT_GPU_LT", "0", 1), gpu_set_precision(GPU_FP32);
    gpu_linear_forward(d_o, d_x, d_w, d_b, N, IC, OC);
    float *old = host_from(d_o, bytes);
    unsetenv("HMT_GPU_LT"), gpu_set_precision(GPU_FP32);
    long before = gpu_lt_runs();
    int capturing = gpu_graph_begin();
    CHECK(capturing == 1, "linear in a graph: gpu_graph_begin returned %d", capturing);
    gpu_linear_forward(d_o, d_x, d_w, d_b, N, IC, OC);
    void *graph = gpu_graph_end();
    CHECK(graph != NULL && gpu_lt_runs() == before, "linear in a graph: %s, %ld products with the epilogue (want 0)",
          graph ? "captured" : gpu_error(), gpu_lt_runs() - before);
    gpu_zero(d_o, bytes);
    if (graph) gpu_graph_launch(graph), gpu_graph_free(graph);
    float *got = host_from(d_o, bytes);
    cmp_bytes("linear in a graph (a shape new there): the bytes of HMT_GPU_LT=0", got, old, bytes);
    free(got);
    gpu_linear_forward(d_o, d_x, d_w, d_b, N, IC, OC);
    CHECK(gpu_lt_runs() == before + 1, "linear after the graph: %ld products with the epilogue (want 1)",
          gpu_lt_runs() - before);
    got = host_from(d_o, bytes);
    float *want = malloc(bytes);
    linear_forward(want, inp, w, b, N, IC, OC);
    cmp("linear after the graph, with the epilogue, against the CPU", got, want, (size_t)N * OC, TOL);
    free(got), free(want), free(old), free(inp), free(w), free(b);
    gpu_free(d_x), gpu_free(d_w), gpu_free(d_b), gpu_free(d_o);
    no_error("linear in a graph");
}

static void test_linear(void)
{
    // the shapes of a d 256 layer's in_proj and linear1, odd ones, operands off the 256-byte alignment
    for (int prec = GPU_FP32; prec <= GPU_BF16; prec++) {
        lt_case(512, 256, 768, prec, 0, 0, 0);
        lt_case(37, 64, 40, prec, 0, 0, 0);
        lt_case(37, 64, 40, prec, 1, 4, 2); // the plan above must not serve this: other alignments
        lt_case(300, 70, 130, prec, 0, 0, 0);
        lt_case(300, 70, 130, prec, 2, 1, 0); // b only 4-byte aligned: the old way
    }
    lt_case(512, 256, 1024, -GPU_BF16, 0, 0, 0);
    lt_capture_case();
    linear_case("linear 300x70 -> 130", 300, 70, 130, 1, GPU_FP32);
    linear_case("linear 5x3 -> 7", 5, 3, 7, 1, GPU_FP32);
    linear_case("linear without bias or dinp", 129, 64, 48, 0, GPU_FP32);
    linear_case("linear 1000x256 -> 348", 1000, 256, 348, 1, GPU_FP32);
    linear_case("linear TF32 (tolerance 1e-2)", 300, 70, 130, 1, GPU_TF32);
    linear_case("linear bf16 300x70 -> 130", 300, 70, 130, 1, GPU_BF16);
    linear_case("linear bf16 5x3 -> 7", 5, 3, 7, 1, GPU_BF16);
    linear_case("linear bf16 without bias or dinp", 129, 64, 48, 0, GPU_BF16);
    linear_case("linear bf16 1000x256 -> 348", 1000, 256, 348, 1, GPU_BF16);
    setenv("HMT_GPU_BF16", "fast", 1); // cuBLAS's own down-conversion: within 2e-2 of float32 only
    linear_case("linear bf16 (HMT_GPU_BF16=fast) 300x70 -> 130", 300, 70, 130, 1, -GPU_BF16);
    unsetenv("HMT_GPU_BF16");
}

// ---- bfloat16 activations (hg.c's feed-forward under GPU_BF16) -------------------------------------------------

// x's bfloat16 (rounded to nearest even; x not NaN)
static uint16_t bf16_bits(float x)
{
    float r = check_bf16_round(x);
    uint32_t u;
    memcpy(&u, &r, 4);
    return (uint16_t)(u >> 16);
}
// the bits gpu_relu_dropout_forward16 stores for the float32 output y: its bfloat16, -0 for a y > 0 that rounds to 0
static uint16_t act16_bits(float y)
{
    uint16_t h = bf16_bits(y);
    return y > 0.0f && h == 0 ? 0x8000u : h;
}

// relu_dropout_forward16 against relu_dropout_forward and the rounding above; its backward against
// relu_dropout_backward into zeros (rounded; the bias's sums within 1e-5 of the CPU's); then hg.c's feed-forward on
// it, linear2 (F -> OC) forward and backward, the ReLU's backward and linear1's (IC -> F) products, the 16 ops
// against the float32 ops on the same values under GPU_BF16: the same bytes, and twice. The input's first values are
// the edges: positive values too small for bfloat16 (kept, they are stored as -0), their negatives, zeros and large
// values.
static void act16_case(int N, int F, int OC, int IC, float p)
{
    char m[160];
    size_t n = (size_t)N * F;
    uint64_t seed = 99991 + (uint64_t)(p * 100) + (uint64_t)N;
    float *inp = rnd(n, 2), *g = rnd(n, 1), *db0 = rnd(F, 1);
    static const float edge[] = {1e-42f, 3e-41f, 4.6e-41f, 1e-40f, -1e-42f, 0.0f, -0.0f, 3.0e38f, 3.39e38f, 1e-39f,
                                 2e-42f, 7e-43f, 5e-41f, 1e-44f, 2e-41f, 8e-41f};
    for (size_t i = 0; i < sizeof edge / sizeof *edge && i < n; i++) inp[i] = edge[i];
    float *y = malloc(n * 4), *din = calloc(n, 4), *db = copy_of(db0, F);
    relu_dropout_forward(y, NULL, inp, p, seed, n);
    relu_dropout_backward(din, g, y, p, n);
    for (int c = 0; c < F; c++) {
        double sum = db0[c];
        for (int r = 0; r < N; r++) sum += din[(size_t)r * F + c];
        db[c] = (float)sum;
    }
    uint16_t *want = malloc(n * 2 + 2), *want_g = malloc(n * 2 + 2);
    size_t tiny = 0;
    for (size_t i = 0; i < n; i++) want[i] = act16_bits(y[i]), tiny += want[i] == 0x8000u;
    for (size_t i = 0; i < n; i++) want_g[i] = bf16_bits(din[i]);
    float *d_inp = dev_from(inp, n * 4), *d_g = dev_from(g, n * 4);
    float *d_db = dev_new(F * 4);
    uint16_t *d_r16 = dev_new(n * 2), *d_g16 = dev_new(n * 2);
    uint16_t *go[2], *gg[2];
    float *gb[2];
    for (int t = 0; t < 2; t++) {
        reset(d_db, db0, F * 4);
        void *base = NULL; // the second run reads its seed from device memory
        SeedRef sr = t == 0 ? (SeedRef){.add = seed} : dev_seed(seed, &base);
        gpu_relu_dropout_forward16(d_r16, d_inp, p, sr, n);
        gpu_relu_dropout_backward16(d_g16, d_db, d_g, d_r16, p, N, F);
        gpu_free(base);
        go[t] = host_from(d_r16, n * 2), gg[t] = host_from(d_g16, n * 2), gb[t] = host_from(d_db, F * 4);
    }
    snprintf(m, sizeof m, "relu_dropout16 %dx%d p %.1f: the bf16 of the float32 output (%zu kept below bf16's range)",
             N, F, p, tiny);
    cmp_bytes(m, go[0], want, n * 2), twice(m, go[0], go[1], n * 2);
    CHECK(check_skipping || tiny > 0, "relu_dropout16 %dx%d p %.1f: the edges include a kept value that rounds to zero",
          N, F, p);
    snprintf(m, sizeof m, "relu_dropout16 %dx%d p %.1f backward: the bf16 of relu_dropout_backward's", N, F, p);
    cmp_bytes(m, gg[0], want_g, n * 2), twice(m, gg[0], gg[1], n * 2);
    snprintf(m, sizeof m, "relu_dropout16 %dx%d p %.1f backward: the bias's sums", N, F, p);
    cmp(m, gb[0], db, F, TOL), twice(m, gb[0], gb[1], F * 4);
    for (int t = 0; t < 2; t++) free(go[t]), free(gg[t]), free(gb[t]);
    // hg.c's feed-forward from r: the float32 ops on the widened values (and y, whose sign the ReLU's backward reads)
    float *yw = malloc(n * 4), *w = rnd((size_t)OC * F, 1), *lb = rnd(OC, 1), *dout = rnd((size_t)N * OC, 1);
    float *dx0 = rnd(n, 1), *dw0 = rnd((size_t)OC * F, 1), *db20 = rnd(OC, 1), *x1 = rnd((size_t)N * IC, 1);
    float *w1 = rnd((size_t)F * IC, 1), *dx10 = rnd((size_t)N * IC, 1), *dw10 = rnd((size_t)F * IC, 1);
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)want[i] << 16;
        memcpy(&yw[i], &u, 4);
    }
    float *d_yw = dev_from(yw, n * 4), *d_y = dev_from(y, n * 4), *d_w = dev_from(w, (size_t)OC * F * 4);
    float *d_lb = dev_from(lb, OC * 4), *d_dout = dev_from(dout, (size_t)N * OC * 4);
    float *d_out = dev_new((size_t)N * OC * 4), *d_dx = dev_new(n * 4), *d_dw = dev_new((size_t)OC * F * 4);
    float *d_db2 = dev_new(OC * 4), *d_gf = dev_new(n * 4), *d_x1 = dev_from(x1, (size_t)N * IC * 4);
    float *d_w1 = dev_from(w1, (size_t)F * IC * 4), *d_dx1 = dev_new((size_t)N * IC * 4);
    float *d_dw1 = dev_new((size_t)F * IC * 4);
    enum { NT = 7 };
    static const char *const what[NT] = {"out", "linear2 dinp", "linear2 dw", "linear2 db", "linear1 dinp",
                                         "linear1 dw", "linear1 db"};
    float *const dev[NT] = {d_out, d_dx, d_dw, d_db2, d_dx1, d_dw1, d_db};
    const size_t len[NT] = {(size_t)N * OC, n, (size_t)OC * F, (size_t)OC, (size_t)N * IC, (size_t)F * IC, (size_t)F};
    float *ref[NT];
    gpu_set_precision(GPU_BF16);
    for (int k = 0; k < 3; k++) { // float32 ops; the 16 ops, twice
        reset(d_dx, dx0, n * 4), reset(d_dw, dw0, (size_t)OC * F * 4), reset(d_db2, db20, OC * 4);
        reset(d_dx1, dx10, (size_t)N * IC * 4), reset(d_dw1, dw10, (size_t)F * IC * 4), reset(d_db, db0, F * 4);
        if (k == 0) {
            gpu_linear_forward(d_out, d_yw, d_w, d_lb, N, F, OC);
            gpu_linear_backward(d_dx, d_dw, d_db2, d_dout, d_yw, d_w, N, F, OC);
            if (d_gf) gpu_zero(d_gf, n * 4);
            gpu_relu_dropout_backward(d_gf, d_dx, d_y, p, n);
            gpu_linear_backward(d_dx1, d_dw1, d_db, d_gf, d_x1, d_w1, N, IC, F);
        } else {
            gpu_linear_forward16(d_out, d_r16, d_w, d_lb, N, F, OC);
            gpu_linear_backward16(d_dx, d_dw, d_db2, d_dout, d_r16, d_w, N, F, OC);
            gpu_relu_dropout_backward16(d_g16, d_db, d_dx, d_r16, p, N, F);
            gpu_linear_backward_g16(d_dx1, d_dw1, d_g16, d_x1, NULL, d_w1, N, IC, F);
        }
        for (int t = 0; t < NT; t++) {
            float *got = host_from(dev[t], len[t] * 4);
            if (k == 0) {
                ref[t] = got;
                continue;
            }
            snprintf(m, sizeof m, "feed-forward %dx%d -> %d, linear1 from %d, p %.1f: %s%s, the float32 ops' bytes", N,
                     F, OC, IC, p, what[t], k == 2 ? " (again)" : "");
            cmp(m, got, ref[t], len[t], 0);
            free(got);
        }
    }
    gpu_set_precision(GPU_FP32);
    for (int t = 0; t < NT; t++) free(ref[t]);
    gpu_free(d_inp), gpu_free(d_g), gpu_free(d_db), gpu_free(d_r16), gpu_free(d_g16), gpu_free(d_yw);
    gpu_free(d_y), gpu_free(d_w), gpu_free(d_lb), gpu_free(d_dout), gpu_free(d_out), gpu_free(d_dx), gpu_free(d_dw);
    gpu_free(d_db2), gpu_free(d_gf), gpu_free(d_x1), gpu_free(d_w1), gpu_free(d_dx1), gpu_free(d_dw1);
    free(inp), free(g), free(db0), free(y), free(din), free(db), free(want), free(want_g), free(yw);
    free(w), free(lb), free(dout), free(dx0), free(dw0), free(db20), free(x1), free(w1), free(dx10), free(dw10);
    no_error("bf16 activations");
}

static void test_act16(void)
{
    act16_case(257, 96, 40, 24, 0.0f);
    act16_case(257, 96, 40, 24, 0.1f);
    act16_case(130, 1024, 256, 256, 0.3f);
    act16_case(3, 16, 5, 4, 0.1f);
}

// ---- LayerNorm ----------------------------------------------------------------------------------------------

static void layernorm_case(const char *name, int N, int C)
{
    char m[160];
    size_t nc = (size_t)N * C;
    float *inp = rnd(nc, 2), *w = rnd(C, 1), *b = rnd(C, 1), *dout = rnd(nc, 1);
    float *dinp0 = rnd(nc, 1), *dw0 = rnd(C, 1), *db0 = rnd(C, 1);
    float *out = malloc(nc * 4), *mean = malloc(N * 4), *rstd = malloc(N * 4);
    float *dinp = copy_of(dinp0, nc), *dw = copy_of(dw0, C), *db = copy_of(db0, C);
    layernorm_forward(out, mean, rstd, inp, w, b, N, C);
    layernorm_backward(dinp, dw, db, dout, inp, w, mean, rstd, N, C);
    float *d_inp = dev_from(inp, nc * 4), *d_w = dev_from(w, C * 4), *d_b = dev_from(b, C * 4);
    float *d_dout = dev_from(dout, nc * 4), *d_out = dev_new(nc * 4), *d_mean = dev_new(N * 4);
    float *d_rstd = dev_new(N * 4), *d_dinp = dev_new(nc * 4), *d_dw = dev_new(C * 4), *d_db = dev_new(C * 4);
    float *g[2][6];
    for (int r = 0; r < 2; r++) {
        reset(d_dinp, dinp0, nc * 4), reset(d_dw, dw0, C * 4), reset(d_db, db0, C * 4);
        gpu_layernorm_forward(d_out, d_mean, d_rstd, d_inp, d_w, d_b, N, C);
        gpu_layernorm_backward(d_dinp, d_dw, d_db, d_dout, d_inp, d_w, d_mean, d_rstd, N, C);
        g[r][0] = host_from(d_out, nc * 4), g[r][1] = host_from(d_mean, N * 4), g[r][2] = host_from(d_rstd, N * 4);
        g[r][3] = host_from(d_dinp, nc * 4), g[r][4] = host_from(d_dw, C * 4), g[r][5] = host_from(d_db, C * 4);
    }
    const char *names[6] = {"out", "mean", "rstd", "dinp", "dw", "db"};
    const float *want[6] = {out, mean, rstd, dinp, dw, db};
    size_t n[6] = {nc, N, N, nc, C, C};
    for (int t = 0; t < 6; t++) {
        snprintf(m, sizeof m, "%s %s", name, names[t]);
        cmp(m, g[0][t], want[t], n[t], TOL);
        twice(m, g[0][t], g[1][t], n[t] * 4);
    }
    for (int r = 0; r < 2; r++)
        for (int t = 0; t < 6; t++) free(g[r][t]);
    gpu_free(d_inp), gpu_free(d_w), gpu_free(d_b), gpu_free(d_dout), gpu_free(d_out), gpu_free(d_mean);
    gpu_free(d_rstd), gpu_free(d_dinp), gpu_free(d_dw), gpu_free(d_db);
    free(inp), free(w), free(b), free(dout), free(dinp0), free(dw0), free(db0), free(out), free(mean), free(rstd);
    free(dinp), free(dw), free(db);
    no_error(name);
}

// x = LN(x + dropout(y)) fused: the bytes of the GPU's separate ops (dropout, add, LayerNorm; backward LayerNorm into
// zeros, accumulate, dropout backward into zeros), the CPU's mask bytes, the CPU's values within 1e-5; without a
// mask kept (the backward draws the bits again, seed from device memory: hg.c's run on a GPU) the same bytes, and so
// on the CPU (ops.c's op without a mask: its bytes with one)
static void residual_ln_case(const char *name, int N, int C, float p)
{
    size_t n = (size_t)N * C;
    uint64_t seed = 4242;
    float *x = rnd(n, 1), *y = rnd(n, 1), *w = rnd(C, 1), *b = rnd(C, 1), *dout = rnd(n, 1), *dx0 = rnd(n, 1);
    float *dw0 = rnd(C, 1), *db0 = rnd(C, 1);
    // the CPU: the separate ops of ops.c
    float *yd = malloc(n * 4), *res = malloc(n * 4), *out = malloc(n * 4), *mean = malloc(N * 4), *rstd = malloc(N * 4);
    uint8_t *mask = malloc(n);
    float *g = calloc(n, 4), *dx = copy_of(dx0, n), *dy = calloc(n, 4), *dw = copy_of(dw0, C), *db = copy_of(db0, C);
    dropout_forward(yd, mask, y, p, seed, n);
    add_forward(res, x, yd, n);
    layernorm_forward(out, mean, rstd, res, w, b, N, C);
    layernorm_backward(g, dw, db, dout, res, w, mean, rstd, N, C);
    accumulate(dx, g, n);
    dropout_backward(dy, g, mask, p, n);
    float *d_x = dev_from(x, n * 4), *d_y = dev_from(y, n * 4), *d_w = dev_from(w, C * 4), *d_b = dev_from(b, C * 4);
    float *d_dout = dev_from(dout, n * 4), *d_res = dev_new(n * 4), *d_out = dev_new(n * 4), *d_mean = dev_new(N * 4);
    float *d_rstd = dev_new(N * 4), *d_dx = dev_new(n * 4), *d_dy = dev_new(n * 4), *d_dw = dev_new(C * 4);
    float *d_db = dev_new(C * 4), *d_yd = dev_new(n * 4), *d_g = dev_new(n * 4);
    uint8_t *d_mask = dev_new(n);
    // [0] fused, [1] fused again (and writing out as bfloat16 too), [2] the separate GPU ops, [3] fused without the
    // mask: res, out, mask, dx, dy, dw, db
    void *got[4][7];
    uint16_t *d_out16 = dev_new(n * 2), *d_ref16 = dev_new(n * 2);
    void *out16 = NULL, *ref16 = NULL;
    for (int r = 0; r < 4; r++) {
        reset(d_dx, dx0, n * 4), reset(d_dw, dw0, C * 4), reset(d_db, db0, C * 4), gpu_zero(d_dy, n * 4);
        if (r != 2) {
            void *base = NULL; // the second fused run and the maskless one read their seed from device memory
            SeedRef sr = r == 0 ? (SeedRef){.add = seed} : dev_seed(seed, &base);
            uint8_t *mk = r < 2 ? d_mask : NULL;
            if (r == 3) gpu_zero(d_mask, n);
            gpu_residual_layernorm_forward(d_out, r == 1 ? d_out16 : NULL, d_mean, d_rstd, d_res, mk, d_x, d_y, p, sr,
                                           d_w, d_b, N, C);
            if (r == 1) {
                gpu_to_bf16(d_ref16, d_out, n);
                out16 = host_from(d_out16, n * 2), ref16 = host_from(d_ref16, n * 2);
            }
            gpu_residual_layernorm_backward(d_dx, d_dy, d_dw, d_db, d_dout, d_res, mk, p, sr, d_w, d_mean, d_rstd, N,
                                            C);
            gpu_free(base);
        } else {
            gpu_dropout_forward(d_yd, d_mask, d_y, p, (SeedRef){.add = seed}, n);
            gpu_add_forward(d_res, d_x, d_yd, n);
            gpu_layernorm_forward(d_out, d_mean, d_rstd, d_res, d_w, d_b, N, C);
            gpu_zero(d_g, n * 4);
            gpu_layernorm_backward(d_g, d_dw, d_db, d_dout, d_res, d_w, d_mean, d_rstd, N, C);
            gpu_accumulate(d_dx, d_g, n);
            gpu_dropout_backward(d_dy, d_g, d_mask, p, n);
        }
        got[r][0] = host_from(d_res, n * 4), got[r][1] = host_from(d_out, n * 4), got[r][2] = host_from(d_mask, n);
        got[r][3] = host_from(d_dx, n * 4), got[r][4] = host_from(d_dy, n * 4), got[r][5] = host_from(d_dw, C * 4);
        got[r][6] = host_from(d_db, C * 4);
    }
    static const char *what[7] = {"res", "out", "mask", "dx", "dy", "dw", "db"};
    size_t bytes[7] = {n * 4, n * 4, n, n * 4, n * 4, (size_t)C * 4, (size_t)C * 4};
    const float *cpu[7] = {res, out, NULL, dx, dy, dw, db};
    char m[200];
    snprintf(m, sizeof m, "%s out as bfloat16 from the same pass: gpu_to_bf16's bytes of out", name);
    cmp_bytes(m, out16, ref16, n * 2);
    for (int t = 0; t < 7; t++) {
        snprintf(m, sizeof m, "%s %s: the separate GPU ops' bytes", name, what[t]), cmp_bytes(m, got[0][t], got[2][t], bytes[t]);
        snprintf(m, sizeof m, "%s %s", name, what[t]), twice(m, got[0][t], got[1][t], bytes[t]);
        if (t != 2)
            snprintf(m, sizeof m, "%s %s, no mask kept: the bytes with one", name, what[t]),
                cmp_bytes(m, got[3][t], got[0][t], bytes[t]);
        else { // not written: still the zeros set before
            size_t nz = 0;
            for (size_t i = 0; i < n; i++) nz += ((uint8_t *)got[3][2])[i] != 0;
            CHECK(nz == 0, "%s: no mask kept, yet %zu mask bytes written", name, nz);
        }
        if (t == 2) snprintf(m, sizeof m, "%s mask: the CPU's bytes", name), cmp_bytes(m, got[0][t], mask, n);
        else snprintf(m, sizeof m, "%s %s against the CPU", name, what[t]), cmp(m, got[0][t], cpu[t], bytes[t] / 4, TOL);
    }
    { // the CPU's op without a mask: the bytes of ops.c's separate ops (res, out, dx, dy, dw, db above)
        float *res2 = malloc(n * 4), *out2 = malloc(n * 4), *mean2 = malloc(N * 4), *rstd2 = malloc(N * 4);
        float *dx2 = copy_of(dx0, n), *dy2 = calloc(n, 4), *dw2 = copy_of(dw0, C), *db2 = copy_of(db0, C);
        float *scratch = malloc(n * 4);
        residual_layernorm_forward(out2, mean2, rstd2, res2, NULL, x, y, p, seed, w, b, N, C);
        residual_layernorm_backward(dx2, dy2, dw2, db2, scratch, dout, res2, NULL, p, seed, w, mean2, rstd2, N, C);
        const float *mine[7] = {res2, out2, NULL, dx2, dy2, dw2, db2};
        for (int t = 0; t < 7; t++)
            if (t != 2) snprintf(m, sizeof m, "%s %s, the CPU without a mask: its separate ops' bytes", name, what[t]),
                        cmp_bytes(m, mine[t], cpu[t], bytes[t]);
        free(res2), free(out2), free(mean2), free(rstd2), free(dx2), free(dy2), free(dw2), free(db2), free(scratch);
    }
    for (int r = 0; r < 4; r++)
        for (int t = 0; t < 7; t++) free(got[r][t]);
    gpu_free(d_x), gpu_free(d_y), gpu_free(d_w), gpu_free(d_b), gpu_free(d_dout), gpu_free(d_res), gpu_free(d_out);
    gpu_free(d_mean), gpu_free(d_rstd), gpu_free(d_dx), gpu_free(d_dy), gpu_free(d_dw), gpu_free(d_db), gpu_free(d_yd);
    gpu_free(d_g), gpu_free(d_mask), gpu_free(d_out16), gpu_free(d_ref16), free(out16), free(ref16);
    free(x), free(y), free(w), free(b), free(dout), free(dx0), free(dw0), free(db0), free(yd), free(res), free(out);
    free(mean), free(rstd), free(mask), free(g), free(dx), free(dy), free(dw), free(db);
    no_error(name);
}

// ---- ranges declared zero (gpu_fresh) --------------------------------------------------------------------------

// the op run on outputs declared zero by gpu_fresh (and full of NaN before): the bytes of the op run on gpu_zero's
// zeros (tol 0), or for cuBLAS products within tol of them (beta 0 and beta 1 may get different algorithms on a GPU;
// the emulator gives the bytes), each range taken exactly where `take` says (a range taken is not zeroed; one not
// taken is, before the op)
typedef struct FreshOp {
    const char *name;
    float *out[2]; // the outputs declared zero (out[1] NULL: one)
    size_t n[2];   // their floats
    void (*run)(const struct FreshOp *f);
    const void *in[4];
    int N, IC, OC, prec, inp16, op; // op: fresh_rows's op
    double tol;
} FreshOp;

static void fresh_case(const FreshOp *f, int take, size_t fresh_n0)
{
    char m[200];
    int k_out = f->out[1] ? 2 : 1;
    void *want[2], *got[2];
    gpu_set_precision(f->prec);
    for (int r = 0; r < 2; r++) { // r 0: gpu_zero, r 1: gpu_fresh (over fresh_n0 floats for the first output)
        for (int k = 0; k < k_out; k++) {
            float *nan = nans(f->n[k]);
            reset(f->out[k], nan, f->n[k] * sizeof *nan);
            free(nan);
        }
        long before = gpu_fresh_taken();
        for (int k = 0; k < k_out; k++) {
            size_t bytes = (k == 0 ? fresh_n0 : f->n[k]) * sizeof(float);
            if (r) gpu_fresh(f->out[k], bytes);
            else gpu_zero(f->out[k], bytes);
        }
        f->run(f);
        long taken = gpu_fresh_taken() - before;
        if (r) CHECK(taken == take, "%s: %ld ranges taken, not %d", f->name, taken, take);
        else CHECK(taken == 0, "%s: %ld ranges taken after gpu_zero", f->name, taken);
        for (int k = 0; k < k_out; k++) (r ? got : want)[k] = host_from(f->out[k], f->n[k] * sizeof(float));
    }
    for (int k = 0; k < k_out; k++) {
        snprintf(m, sizeof m, "%s, output %d declared zero: %s on zeros", f->name, k, f->tol ? "within tol" : "the bytes");
        cmp(m, got[k], want[k], f->n[k], f->tol);
        free(got[k]), free(want[k]);
    }
    gpu_set_precision(GPU_FP32);
    no_error(f->name);
}

// in: dout, inp (or its bf16 copy), w, dw
static void fresh_linear(const FreshOp *f)
{
    const void *const *in = f->in;
    if (f->inp16)
        gpu_linear_backward16(f->out[0], (float *)in[3], NULL, in[0], in[1], in[2], f->N, f->IC, f->OC);
    else
        gpu_linear_backward(f->out[0], (float *)in[3], NULL, in[0], in[1], in[2], f->N, f->IC, f->OC);
}

// in: dout, res, w, and mean (N), rstd (N), dw (C), db (C) in one buffer; C in OC
static void fresh_res_ln(const FreshOp *f)
{
    const float *g = f->in[0], *res = f->in[1], *w = f->in[2];
    float *st = (float *)f->in[3];
    gpu_residual_layernorm_backward(f->out[0], f->out[1], st + 2 * f->N, st + 2 * f->N + f->OC, g, res, NULL, 0.1f,
                                    (SeedRef){.add = 77}, w, st, st + f->N, f->N, f->OC);
}

// in: dout, inp, w, st as fresh_res_ln's
static void fresh_ln(const FreshOp *f)
{
    float *st = (float *)f->in[3];
    gpu_layernorm_backward(f->out[0], st + 2 * f->N, st + 2 * f->N + f->OC, f->in[0], f->in[1], f->in[2], st,
                           st + f->N, f->N, f->OC);
}

// the elementwise and row ops that add to their output (dinp: B 2 of N rows of OC floats); in: dout (as many
// floats as the op reads), dropout's mask, the ReLU's output
static const char *const row_ops[] = {"gpu_accumulate",    "gpu_dropout_backward",  "gpu_relu_dropout_backward",
                                      "gpu_crop_backward", "gpu_pad_backward",      "gpu_shift_backward",
                                      "gpu_meanpool_backward", "gpu_repeat_backward"};
static void fresh_rows(const FreshOp *f)
{
    const float *src = f->in[0];
    float *d = f->out[0];
    int N = f->N, C = f->OC;
    switch (f->op) {
    case 0: gpu_accumulate(d, src, f->n[0]); break;
    case 1: gpu_dropout_backward(d, src, f->in[1], 0.1f, f->n[0]); break;
    case 2: gpu_relu_dropout_backward(d, src, f->in[2], 0.1f, f->n[0]); break;
    case 3: gpu_crop_backward(d, src, 2, N, N - 3, C); break; // rows N - 3 .. N - 1 not reached: +0
    case 4: gpu_pad_backward(d, src, 2, N, N + 3, C); break;
    case 5: gpu_shift_backward(d, src, 2, N, C, 3); break; // the last 2 rows not reached: +0
    case 6: gpu_meanpool_backward(d, src, 2, N, C, 3); break;
    case 7: gpu_repeat_backward(d, src, 2, 3 * N, C, 3); break;
    }
}

// an attention's backward of a self-attention layer (in[0]: its FreshAtt) into out[0] = hg.c's g_qkv: dq, dk, dv
// interleaved in rows of 3 C; the gemm attention's (probs, mask) or the fused one's (out, lse)
typedef struct FreshAtt {
    AttnDims d;
    const float *qkv, *er, *dout, *probs, *out, *lse;
    const uint8_t *mask;
    float *der;
    int fused;
} FreshAtt;

static void fresh_att(const FreshOp *f)
{
    const FreshAtt *a = f->in[0];
    int C = a->d.C;
    float *g = f->out[0];
    if (a->fused)
        gpu_attention_fused_backward(g, g + C, g + 2 * C, a->der, a->dout, a->out, a->lse, a->qkv, a->qkv + C,
                                     a->qkv + 2 * C, a->er, &a->d);
    else
        gpu_attention_backward(g, g + C, g + 2 * C, a->der, a->dout, a->probs, a->mask, a->qkv, a->qkv + C,
                               a->qkv + 2 * C, a->er, &a->d);
}

// the gemm attention with float32 and bf16 products (within 1e-6: cuBLAS's beta 0 and 1), the fused one's kernels
// (the bytes): float32, TF32 and bf16 tensor cores with and without the stored dS, and the mma kernels
static void fresh_attention(void)
{
    int B = 2, T = 200, C = 32, NH = 2, HS = C / NH; // past 128 rows: causal row groups; tiles of 64, the last part
    size_t nq = (size_t)B * T * 3 * C, no = (size_t)B * T * C, np = (size_t)B * NH * T * T, ner = (size_t)T * HS;
    int *nk = malloc(T * sizeof *nk);
    for (int i = 0; i < T; i++) nk[i] = i + 1;
    float *qkv = rnd(nq, 1), *er = rnd(ner, 1), *dout = rnd(no, 1);
    FreshAtt a = {.d = {.B = B, .Tq = T, .Tk = T, .C = C, .NH = NH, .L = T, .ldq = 3 * C, .ldk = 3 * C, .ldv = 3 * C,
                        .causal = 1, .dropout = 0.1f, .seed = {.add = 5}}};
    a.d.n_keys = dev_from(nk, T * sizeof *nk);
    a.qkv = dev_from(qkv, nq * 4), a.er = dev_from(er, ner * 4), a.dout = dev_from(dout, no * 4);
    float *d_out = dev_new(no * 4), *d_probs = dev_new(np * 4), *d_g = dev_new(nq * 2 * 4);
    float *d_lse = dev_new((size_t)B * NH * T * 4);
    uint8_t *d_mask = dev_new(np);
    a.probs = d_probs, a.mask = d_mask, a.out = d_out, a.lse = d_lse, a.der = dev_new(ner * 4);
    static const struct {
        const char *name, *env, *val;
        int fused, prec;
    } vs[] = {
        {"gpu_attention_backward", NULL, NULL, 0, GPU_FP32},
        {"gpu_attention_backward, bf16 products", "HMT_GPU_ATT16", "1", 0, GPU_BF16},
        {"gpu_attention_fused_backward", NULL, NULL, 1, GPU_FP32},
        {"gpu_attention_fused_backward, TF32 tensor cores", NULL, NULL, 1, GPU_TF32},
        {"gpu_attention_fused_backward, bf16 tensor cores", NULL, NULL, 1, GPU_BF16},
        {"gpu_attention_fused_backward, bf16 tensor cores, no stored dS", "HMT_GPU_FA_DS_MIB", "0", 1, GPU_BF16},
        {"gpu_attention_fused_backward, bf16 mma kernels", "HMT_GPU_FA_MMA", "1", 1, GPU_BF16},
    };
    for (size_t v = 0; v < sizeof vs / sizeof *vs; v++) {
        if (vs[v].env) setenv(vs[v].env, vs[v].val, 1);
        gpu_set_precision(vs[v].prec);
        a.fused = vs[v].fused;
        if (a.fused) gpu_attention_fused_forward(d_out, d_lse, a.qkv, a.qkv + C, a.qkv + 2 * C, a.er, &a.d);
        else gpu_attention_forward(d_out, d_probs, d_mask, a.qkv, a.qkv + C, a.qkv + 2 * C, a.er, &a.d);
        FreshOp f = {.name = vs[v].name, .out = {d_g, NULL}, .n = {nq, 0}, .run = fresh_att, .in = {&a},
                     .prec = vs[v].prec, .tol = a.fused ? 0 : 1e-6};
        fresh_case(&f, 1, nq);
        if (v < 3) {
            char m[160];
            snprintf(m, sizeof m, "%s, a larger range (not taken)", vs[v].name);
            f.name = m;
            fresh_case(&f, 0, 2 * nq);
        }
        if (vs[v].env) unsetenv(vs[v].env);
    }
    gpu_set_precision(GPU_FP32);
    free(nk), free(qkv), free(er), free(dout);
    gpu_free((void *)a.d.n_keys), gpu_free((void *)a.qkv), gpu_free((void *)a.er), gpu_free((void *)a.dout);
    gpu_free(d_out), gpu_free(d_probs), gpu_free(d_g), gpu_free(d_mask), gpu_free(a.der), gpu_free(d_lse);
}

// a range declared zero that no op takes reads as zeros: to the next op (here one that adds to it) and to a copy
static void fresh_untaken(void)
{
    size_t n = 1000;
    float *src = rnd(n, 1), *d_src = dev_from(src, n * 4), *d = dev_new(n * 4), *nan = nans(n);
    reset(d, nan, n * 4);
    long before = gpu_fresh_taken();
    gpu_fresh(d, n * 4);
    gpu_relu_backward(d, d_src, d_src, n); // d += src > 0 ? src : +0
    float *got = host_from(d, n * 4), *want = malloc(n * 4);
    for (size_t i = 0; i < n; i++) want[i] = 0.0f + (src[i] > 0.0f ? src[i] : 0.0f);
    cmp_bytes("declared zero, then added to by an op that does not take it: the added values", got, want, n * 4);
    free(want);
    free(got);
    gpu_upload(d, src, n * 4);
    gpu_fresh(d, n * 4);
    got = host_from(d, n * 4);
    size_t nz = 0;
    for (size_t i = 0; i < n; i++) nz += got[i] != 0.0f || signbit(got[i]);
    CHECK(nz == 0, "declared zero, then copied to the host: %zu of %zu values not +0", nz, n);
    CHECK(gpu_fresh_taken() == before, "ranges taken by ops that take none: %ld", gpu_fresh_taken() - before);
    free(got), free(src), free(nan), gpu_free(d_src), gpu_free(d);
    no_error("gpu_fresh");
}

// gpu_fresh: the ops that take a range declared zero (the linear, LayerNorm and residual LayerNorm backwards, the gemm
// and fused attentions' backwards, the elementwise and row ops of fresh_rows) give the bytes they give on zeros,
// without reading it (NaN before); a range they do not take (larger, one float short, HMT_GPU_FRESH=0) is zeroed
// before them
static void test_fresh(void)
{
    int N = 130, IC = 48, OC = 72, C = 40;
    size_t ni = (size_t)N * IC, no = (size_t)N * OC, nw = (size_t)OC * IC, nc = (size_t)N * C;
    float *dout = rnd(no, 1), *inp = rnd(ni, 1), *w = rnd(nw, 1);
    float *d_dout = dev_from(dout, no * 4), *d_inp = dev_from(inp, ni * 4), *d_w = dev_from(w, nw * 4);
    float *d_dw = dev_new(nw * 4), *d_dinp = dev_new(ni * 2 * 4);
    uint16_t *d_inp16 = dev_new(ni * 2);
    gpu_to_bf16(d_inp16, d_inp, ni);
    static const char *names[3] = {"gpu_linear_backward float32", "gpu_linear_backward bf16",
                                   "gpu_linear_backward16"};
    for (int v = 0; v < 3; v++) {
        FreshOp f = {.name = names[v], .out = {d_dinp, NULL}, .n = {ni, 0}, .run = fresh_linear,
                     .in = {d_dout, v == 2 ? (const void *)d_inp16 : d_inp, d_w, d_dw}, .N = N, .IC = IC, .OC = OC,
                     .prec = v ? GPU_BF16 : GPU_FP32, .inp16 = v == 2, .tol = 1e-6};
        fresh_case(&f, 1, ni);
        char m[120];
        snprintf(m, sizeof m, "%s, a larger range declared zero (not taken)", names[v]);
        f.name = m;
        fresh_case(&f, 0, 2 * ni);
    }
    // the residual LayerNorm's backward: dx and dy
    float *res = rnd(nc, 1), *g = rnd(nc, 1), *wl = rnd(C, 1), *st = calloc(2 * N + 2 * C, 4);
    for (int i = 0; i < N; i++) st[i] = 0.1f * (i % 7), st[N + i] = 1.0f + 0.01f * i;
    float *d_res = dev_from(res, nc * 4), *d_g = dev_from(g, nc * 4), *d_wl = dev_from(wl, C * 4);
    float *d_st = dev_from(st, (2 * N + 2 * C) * 4), *d_dx = dev_new(nc * 4), *d_dy = dev_new(nc * 4);
    FreshOp f = {.name = "gpu_residual_layernorm_backward", .out = {d_dx, d_dy}, .n = {nc, nc}, .run = fresh_res_ln,
                 .in = {d_g, d_res, d_wl, d_st}, .N = N, .OC = C, .prec = GPU_FP32};
    fresh_case(&f, 2, nc);
    f.name = "gpu_residual_layernorm_backward, dx's range one float short (dy taken)";
    fresh_case(&f, 1, nc - 1);
    setenv("HMT_GPU_FRESH", "0", 1);
    f.name = "gpu_residual_layernorm_backward with HMT_GPU_FRESH=0 (none taken)";
    fresh_case(&f, 0, nc);
    unsetenv("HMT_GPU_FRESH");
    gpu_set_precision(GPU_FP32);
    f.name = "gpu_layernorm_backward", f.out[1] = NULL, f.run = fresh_ln;
    fresh_case(&f, 1, nc);
    // the row ops over B 2 of 33 rows of C (a multiple of 3: the mean-pool's and repeat's factor)
    int R = 33;
    size_t nr = 2 * (size_t)R * C, nsrc = 3 * nr;
    float *src = rnd(nsrc, 1), *relu = rnd(nr, 1);
    uint8_t *mask = malloc(nr);
    for (size_t i = 0; i < nr; i++) mask[i] = (uint8_t)(i % 7 != 3);
    float *d_src = dev_from(src, nsrc * 4), *d_relu = dev_from(relu, nr * 4), *d_d = dev_new(2 * nr * 4);
    uint8_t *d_mask = dev_from(mask, nr);
    for (int op = 0; op < (int)(sizeof row_ops / sizeof *row_ops); op++) {
        FreshOp r = {.name = row_ops[op], .out = {d_d, NULL}, .n = {nr, 0}, .run = fresh_rows,
                     .in = {d_src, d_mask, d_relu}, .N = R, .OC = C, .prec = GPU_FP32, .op = op};
        fresh_case(&r, 1, nr);
        if (op == 0 || op == 3) {
            r.name = op ? "gpu_crop_backward, a larger range (not taken)"
                        : "gpu_accumulate, a larger range (not taken)";
            fresh_case(&r, 0, 2 * nr);
        }
    }
    free(src), free(relu), free(mask), gpu_free(d_src), gpu_free(d_relu), gpu_free(d_d), gpu_free(d_mask);
    fresh_attention();
    fresh_untaken();
    free(dout), free(inp), free(w), free(res), free(g), free(wl), free(st);
    gpu_free(d_dout), gpu_free(d_inp), gpu_free(d_w), gpu_free(d_dw), gpu_free(d_dinp), gpu_free(d_inp16);
    gpu_free(d_res), gpu_free(d_g), gpu_free(d_wl), gpu_free(d_st), gpu_free(d_dx), gpu_free(d_dy);
}

static void test_layernorm(void)
{
    layernorm_case("layernorm 257x200", 257, 200);
    layernorm_case("layernorm 3x7", 3, 7);
    layernorm_case("layernorm 1000x256", 1000, 256);
    layernorm_case("layernorm 9x1000", 9, 1000); // past the 512 columns a warp keeps in registers
    residual_ln_case("residual + dropout 0.1 + LayerNorm 1000x256", 1000, 256, 0.1f);
    residual_ln_case("residual + LayerNorm 37x7, no dropout", 37, 7, 0.0f);
    residual_ln_case("residual + dropout 0.5 + LayerNorm 129x100", 129, 100, 0.5f);
    residual_ln_case("residual + dropout 0.1 + LayerNorm 9x1000", 9, 1000, 0.1f); // past the registers' 512
    test_fresh();
}

// ---- embedding ----------------------------------------------------------------------------------------------

// skew: every third token is id 5 (one long list; the rest spread, some ids absent)
static void encoder_case(const char *name, int B, int T, int C, int V, int skew)
{
    size_t n = (size_t)B * T * C;
    int32_t *tok = malloc((size_t)B * T * sizeof *tok);
    for (int i = 0; i < B * T; i++) tok[i] = i % 7 == 0 ? 0 : (int32_t)((frand() + 1) * 0.5 * (V - 1)) + 1;
    for (int i = 0; skew && i < B * T; i += 3) tok[i] = 5;
    tok[5] = tok[9] = tok[130 % (B * T)] = 3; // repeats of one row, across batch items
    float *wte = rnd((size_t)V * C, 1), *pe = malloc((size_t)T * C * 4), *dout = rnd(n, 1), *out = malloc(n * 4);
    float *dwte0 = rnd((size_t)V * C, 1), *dwte = copy_of(dwte0, (size_t)V * C);
    positional_table(pe, T, C);
    encoder_forward(out, tok, wte, pe, B, T, C);
    encoder_backward(dwte, dout, tok, B, T, C);
    int32_t *d_tok = dev_from(tok, (size_t)B * T * 4);
    float *d_wte = dev_from(wte, (size_t)V * C * 4), *d_pe = dev_from(pe, (size_t)T * C * 4);
    float *d_dout = dev_from(dout, n * 4), *d_out = dev_new(n * 4), *d_dwte = dev_new((size_t)V * C * 4);
    float *g_out[2], *g_dwte[2];
    for (int r = 0; r < 2; r++) {
        reset(d_dwte, dwte0, (size_t)V * C * 4);
        gpu_encoder_forward(d_out, d_tok, d_wte, d_pe, B, T, C);
        gpu_encoder_backward(d_dwte, d_dout, d_tok, B, T, C, V);
        g_out[r] = host_from(d_out, n * 4), g_dwte[r] = host_from(d_dwte, (size_t)V * C * 4);
    }
    // the same arithmetic in the same order (one add; each row summed in position order): the same bytes
    char m[160];
    snprintf(m, sizeof m, "%s out (same bytes)", name), cmp(m, g_out[0], out, n, 0);
    twice(m, g_out[0], g_out[1], n * 4);
    snprintf(m, sizeof m, "%s dwte (same bytes; PAD row untouched)", name), cmp(m, g_dwte[0], dwte, (size_t)V * C, 0);
    twice(m, g_dwte[0], g_dwte[1], (size_t)V * C * 4);
    for (int r = 0; r < 2; r++) free(g_out[r]), free(g_dwte[r]);
    gpu_free(d_tok), gpu_free(d_wte), gpu_free(d_pe), gpu_free(d_dout), gpu_free(d_out), gpu_free(d_dwte);
    free(tok), free(wte), free(pe), free(dout), free(out), free(dwte0), free(dwte);
    no_error(name);
}

static void test_encoder(void)
{
    encoder_case("embedding", 3, 50, 72, 40, 0);
    // several passes of the position lists (1,200 positions), two column blocks, REMI's vocabulary, one long list
    encoder_case("embedding 4 x 300, C 200, V 348", 4, 300, 200, 348, 1);
}

// ---- elementwise and dropout ------------------------------------------------------------------------------------

static void test_elementwise(void)
{
    size_t n = 100003; // odd: the dropout stream's last pair is cut
    float *a = rnd(n, 1), *b = rnd(n, 1), *g = rnd(n, 1), *acc0 = rnd(n, 1);
    float *c_relu = malloc(n * 4), *c_add = malloc(n * 4), *c_drelu = copy_of(acc0, n), *c_acc = copy_of(acc0, n);
    relu_forward(c_relu, a, n);
    relu_backward(c_drelu, g, c_relu, n);
    add_forward(c_add, a, b, n);
    accumulate(c_acc, b, n);
    float *d_a = dev_from(a, n * 4), *d_b = dev_from(b, n * 4), *d_g = dev_from(g, n * 4);
    float *d_relu = dev_new(n * 4), *d_add = dev_new(n * 4), *d_drelu = dev_new(n * 4), *d_acc = dev_new(n * 4);
    float *r[2][4];
    for (int k = 0; k < 2; k++) {
        reset(d_drelu, acc0, n * 4), reset(d_acc, acc0, n * 4);
        gpu_relu_forward(d_relu, d_a, n);
        gpu_relu_backward(d_drelu, d_g, d_relu, n);
        gpu_add_forward(d_add, d_a, d_b, n);
        gpu_accumulate(d_acc, d_b, n);
        r[k][0] = host_from(d_relu, n * 4), r[k][1] = host_from(d_drelu, n * 4);
        r[k][2] = host_from(d_add, n * 4), r[k][3] = host_from(d_acc, n * 4);
    }
    const char *names[4] = {"relu forward", "relu backward", "add", "accumulate"};
    const float *want[4] = {c_relu, c_drelu, c_add, c_acc};
    for (int t = 0; t < 4; t++) {
        char m[96];
        snprintf(m, sizeof m, "%s (same bytes)", names[t]);
        cmp(m, r[0][t], want[t], n, 0);
        twice(names[t], r[0][t], r[1][t], n * 4);
    }
    for (int k = 0; k < 2; k++)
        for (int t = 0; t < 4; t++) free(r[k][t]);
    // dropout and relu+dropout, p 0 / 0.1 / 0.3: output, mask and gradient are the CPU's bytes
    static const float ps[3] = {0.0f, 0.1f, 0.3f};
    uint8_t *d_mask = dev_new(n);
    float *d_out = dev_new(n * 4), *d_din = dev_new(n * 4);
    for (int relu = 0; relu < 2; relu++)
        for (int k = 0; k < 3; k++) {
            float p = ps[k];
            uint64_t seed = 1234567 + 17 * (uint64_t)k;
            float *out = malloc(n * 4), *din = copy_of(acc0, n);
            uint8_t *mask = malloc(n);
            if (relu) {
                relu_dropout_forward(out, mask, a, p, seed, n);
                relu_dropout_backward(din, g, out, p, n);
            } else {
                dropout_forward(out, mask, a, p, seed, n);
                dropout_backward(din, g, mask, p, n);
            }
            float *go[2], *gd[2];
            uint8_t *gm[2];
            for (int t = 0; t < 2; t++) {
                reset(d_din, acc0, n * 4);
                void *base = NULL; // the second run reads its seed from device memory
                SeedRef sr = t == 0 ? (SeedRef){.add = seed} : dev_seed(seed, &base);
                if (relu) {
                    gpu_relu_dropout_forward(d_out, d_mask, d_a, p, sr, n);
                    gpu_relu_dropout_backward(d_din, d_g, d_out, p, n);
                } else {
                    gpu_dropout_forward(d_out, d_mask, d_a, p, sr, n);
                    gpu_dropout_backward(d_din, d_g, d_mask, p, n);
                }
                gpu_free(base);
                go[t] = host_from(d_out, n * 4), gd[t] = host_from(d_din, n * 4), gm[t] = host_from(d_mask, n);
            }
            char m[128];
            const char *op = relu ? "relu_dropout" : "dropout";
            snprintf(m, sizeof m, "%s p %.1f mask (same bytes)", op, p), cmp_bytes(m, gm[0], mask, n);
            snprintf(m, sizeof m, "%s p %.1f out (same bytes)", op, p), cmp(m, go[0], out, n, 0);
            snprintf(m, sizeof m, "%s p %.1f dinp (same bytes)", op, p), cmp(m, gd[0], din, n, 0);
            snprintf(m, sizeof m, "%s p %.1f", op, p);
            twice(m, go[0], go[1], n * 4), twice(m, gm[0], gm[1], n), twice(m, gd[0], gd[1], n * 4);
            if (relu) { // the mask not kept (hg.c's FFN): the same output
                gpu_relu_dropout_forward(d_out, NULL, d_a, p, (SeedRef){.add = seed}, n);
                float *o = host_from(d_out, n * 4);
                snprintf(m, sizeof m, "relu_dropout p %.1f out without a mask (same bytes)", p), cmp(m, o, out, n, 0);
                free(o);
            }
            for (int t = 0; t < 2; t++) free(go[t]), free(gd[t]), free(gm[t]);
            free(out), free(din), free(mask);
        }
    gpu_free(d_a), gpu_free(d_b), gpu_free(d_g), gpu_free(d_relu), gpu_free(d_add), gpu_free(d_drelu), gpu_free(d_acc);
    gpu_free(d_mask), gpu_free(d_out), gpu_free(d_din);
    free(a), free(b), free(g), free(acc0), free(c_relu), free(c_add), free(c_drelu), free(c_acc);
    no_error("elementwise and dropout");
}

// ---- attention ----------------------------------------------------------------------------------------------

// q inside a (B,Tq,3C) buffer, k and v interleaved in one (B,Tk,2C) buffer (the strides of hg.c), as test_ops.c.
// Causal keys (n_keys[i] = i + 1) come with the promise AttnDims.causal, as hg.c makes it: past 128 rows the
// unfused products then run by row group (gpu_ops.cu att_groups), against the same CPU results
// Er and dEr one float off 16-byte alignment (a parameter table of odd sizes), under the precision set (TF32 or
// bf16): the tensor-core kernels take an aligned copy of Er (float32 under TF32, bfloat16 under bf16) instead of
// falling back to the float32 kernels, so out, lse, dq, dk dv and dEr are the bytes of the aligned run (want: out,
// lse, -, dq, dk dv, dEr). With q16 (under bf16) the bf16 q, k, v again, at the same offset
static void er_offset_case(const char *name, const char *label, float *const *want, AttnDims *dd, int C,
                           const float *d_q, const uint16_t *q16, size_t nq, const float *d_kv, const uint16_t *kv16,
                           size_t nkv, float *d_lse, const float *d_er, const float *d_dout, float *d_out, float *d_dq,
                           const float *dq0, float *d_dkv, const float *dkv0, const float *der0, size_t ner)
{
    char m[256];
    size_t no = (size_t)dd->B * dd->Tq * C, nl = (size_t)dd->B * dd->NH * dd->Tq;
    float *er1 = dev_new((ner + 1) * 4), *der1 = dev_new((ner + 1) * 4);
    float *h_er = host_from(d_er, ner * 4);
    gpu_upload(er1 + 1, h_er, ner * 4);
    static const char *const what[6] = {"out", "lse", "", "dq", "dk, dv", "dEr"};
    size_t bytes[6] = {no * 4, nl * 4, 0, nq * 4, nkv * 4, ner * 4};
    for (int k = 0; k < (q16 ? 2 : 1); k++) { // k 0: float32 q, k, v; 1: bf16
        reset(d_dq, dq0, nq * 4), reset(d_dkv, dkv0, nkv * 4), gpu_upload(der1 + 1, der0, ner * 4);
        gpu_zero(d_out, no * 4);
        gpu_workspace_fill(0xff); // the copy of Er is the kernels' to write
        if (k) {
            gpu_attention_fused_forward16(d_out, d_lse, q16, kv16, kv16 + C, er1 + 1, dd);
            gpu_attention_fused_backward16(d_dq, d_dkv, d_dkv + C, der1 + 1, d_dout, d_out, d_lse, q16, kv16, kv16 + C,
                                           er1 + 1, dd);
        } else {
            gpu_attention_fused_forward(d_out, d_lse, d_q, d_kv, d_kv + C, er1 + 1, dd);
            gpu_attention_fused_backward(d_dq, d_dkv, d_dkv + C, der1 + 1, d_dout, d_out, d_lse, d_q, d_kv, d_kv + C,
                                         er1 + 1, dd);
        }
        void *g2[6] = {host_from(d_out, no * 4), host_from(d_lse, nl * 4), NULL, host_from(d_dq, nq * 4),
                       host_from(d_dkv, nkv * 4), host_from(der1 + 1, ner * 4)};
        for (int t = 0; t < 6; t++)
            if (g2[t]) snprintf(m, sizeof m, "%s, %s, %s q, k, v, Er not 16-byte aligned: %s (the aligned bytes)", name,
                                label, k ? "bf16" : "float32", what[t]),
                       cmp_bytes(m, g2[t], want[t], bytes[t]);
        for (int t = 0; t < 6; t++) free(g2[t]);
    }
    free(h_er), gpu_free(er1), gpu_free(der1);
    no_error(name);
}

// The fused attention on bfloat16 q, k, v (gpu.h gpu_attention_fused_forward16: hg.c's under act16), under bf16 after
// attention_case's tensor-core run, whose tensors want holds (out, lse, -, dq, dk dv, dEr): rounded to bf16 once,
// q, k and v give the same bytes, since the kernels round the float32 ones to the same operands; with Er, both
// again with Er one float off alignment (er_offset_case).
static void fused16_case(const char *name, float *const *want, AttnDims *dd, SeedRef seed, int C, const float *d_q,
                         size_t nq, const float *d_kv, size_t nkv, float *d_lse, const float *d_er,
                         const float *d_dout, float *d_out, float *d_dq, const float *dq0, float *d_dkv,
                         const float *dkv0, float *d_der, const float *der0, size_t ner)
{
    char m[256];
    int takes = gpu_attention_fused_takes16(dd);
    CHECK(check_skipping || takes, "%s: gpu_attention_fused_takes16 under bf16", name);
    if (!takes) return;
    size_t no = (size_t)dd->B * dd->Tq * C, nl = (size_t)dd->B * dd->NH * dd->Tq;
    uint16_t *q16 = dev_new(nq * 2), *kv16 = dev_new(nkv * 2);
    gpu_to_bf16(q16, d_q, nq), gpu_to_bf16(kv16, d_kv, nkv);
    reset(d_dq, dq0, nq * 4), reset(d_dkv, dkv0, nkv * 4);
    if (d_der) reset(d_der, der0, ner * 4);
    gpu_zero(d_out, no * 4);
    dd->seed = seed;
    gpu_attention_fused_forward16(d_out, d_lse, q16, kv16, kv16 + C, d_er, dd);
    gpu_attention_fused_backward16(d_dq, d_dkv, d_dkv + C, d_der, d_dout, d_out, d_lse, q16, kv16, kv16 + C, d_er, dd);
    void *got[6] = {host_from(d_out, no * 4), host_from(d_lse, nl * 4), NULL, host_from(d_dq, nq * 4),
                    host_from(d_dkv, nkv * 4), d_der ? host_from(d_der, ner * 4) : NULL};
    static const char *const what[6] = {"out", "lse", "", "dq", "dk, dv", "dEr"};
    size_t bytes[6] = {no * 4, nl * 4, 0, nq * 4, nkv * 4, ner * 4};
    for (int t = 0; t < 6; t++)
        if (got[t]) snprintf(m, sizeof m, "%s, bf16 q, k, v: %s (the bytes of float32 ones)", name, what[t]),
                    cmp_bytes(m, got[t], want[t], bytes[t]);
    for (int t = 0; t < 6; t++) free(got[t]);
    if (d_er) er_offset_case(name, "bf16", want, dd, C, d_q, q16, nq, d_kv, kv16, nkv, d_lse, d_er, d_dout, d_out, d_dq,
                             dq0, d_dkv, dkv0, der0, ner);
    gpu_free(q16), gpu_free(kv16);
    no_error(name);
}

// The bf16 attention on fragments in registers (HMT_GPU_FA_MMA=1: forward, and the backward from stored dS) twice
// (the second with the seed in device memory): within FUSED_TOL_BF16 of the CPU (out, dq, dk dv, dEr) and of the
// shared-memory forward's lse (wmma: g[1]), the same bytes twice, the backward's bytes again with its dS stored one
// head at a time, and not the shared-memory forward's out (it ran)
static void mma_case(const char *name, const char *label, float *const *wmma, AttnDims *dd, SeedRef seed,
                     SeedRef seed_dev, const float *d_q, const float *d_kv, int with_er, const float *d_er,
                     const float *d_dout,
                     float *d_out, float *d_lse, float *d_dq, const float *dq0, float *d_dkv, const float *dkv0,
                     float *d_der, const float *der0, const float *out, const float *dq, const float *dkv,
                     const float *der)
{
    const int B = dd->B, C = dd->C, NH = dd->NH, Tq = dd->Tq, Tk = dd->Tk, HS = C / NH;
    size_t nq = (size_t)B * Tq * 3 * C, nkv = (size_t)B * Tk * 2 * C, no = (size_t)B * Tq * C;
    size_t nl = (size_t)B * NH * Tq, ner = (size_t)(with_er ? Tq + 3 : 1) * HS;
    const float *er = with_er ? d_er : NULL;
    float *h[2][5];
    setenv("HMT_GPU_FA_MMA", "1", 1);
    for (int r = 0; r < 2; r++) {
        reset(d_dq, dq0, nq * 4), reset(d_dkv, dkv0, nkv * 4), reset(d_der, der0, ner * 4);
        gpu_zero(d_out, no * 4);
        dd->seed = r == 0 ? seed : seed_dev;
        gpu_workspace_fill(0xff);
        const float *d_k = d_kv, *d_v = d_kv ? d_kv + C : NULL;
        gpu_attention_fused_forward(d_out, d_lse, d_q, d_k, d_v, er, dd);
        gpu_attention_fused_backward(d_dq, d_dkv, d_dkv ? d_dkv + C : NULL, with_er ? d_der : NULL, d_dout, d_out,
                                     d_lse, d_q, d_k, d_v, er, dd);
        h[r][0] = host_from(d_out, no * 4), h[r][1] = host_from(d_lse, nl * 4), h[r][2] = host_from(d_dq, nq * 4);
        h[r][3] = host_from(d_dkv, nkv * 4), h[r][4] = host_from(d_der, ner * 4);
    }
    // the backward's stored dS one head at a time (chunks of the launch): the bytes of all heads at once
    setenv("HMT_GPU_FA_DS_MIB", "1e-9", 1);
    reset(d_dq, dq0, nq * 4), reset(d_dkv, dkv0, nkv * 4), reset(d_der, der0, ner * 4);
    dd->seed = seed;
    gpu_workspace_fill(0xff);
    gpu_attention_fused_backward(d_dq, d_dkv, d_dkv ? d_dkv + C : NULL, with_er ? d_der : NULL, d_dout, d_out, d_lse,
                                 d_q, d_kv, d_kv ? d_kv + C : NULL, er, dd);
    unsetenv("HMT_GPU_FA_DS_MIB");
    float *one[3] = {host_from(d_dq, nq * 4), host_from(d_dkv, nkv * 4), host_from(d_der, ner * 4)};
    // bf16 q, k, v (and Er off 16 bytes) through these kernels: the bytes of their float32 calls
    char nm[200];
    snprintf(nm, sizeof nm, "%s, mma", name);
    float *const mine[6] = {h[0][0], h[0][1], NULL, h[0][2], h[0][3], h[0][4]};
    fused16_case(nm, mine, dd, seed, C, d_q, nq, d_kv, nkv, d_lse, er, d_dout, d_out, d_dq, dq0, d_dkv, dkv0,
                 with_er ? d_der : NULL, der0, ner);
    unsetenv("HMT_GPU_FA_MMA");
    const float *want[5] = {out, wmma[1], dq, dkv, der};
    size_t n[5] = {no, nl, nq, nkv, ner};
    static const char *const what[5] = {"out", "lse (against the shared-memory forward's)", "dq", "dk, dv", "dEr"};
    char m[256];
    double worst[5];
    for (int t = 0; t < 5; t++) {
        snprintf(m, sizeof m, "%s, %s, mma: %s", name, label, what[t]);
        if (t == 4 && !with_er) snprintf(m, sizeof m, "%s, %s, mma: dEr (none: untouched)", name, label);
        worst[t] = cmp(m, h[0][t], want[t], n[t], t == 4 && !with_er ? 0 : FUSED_TOL_BF16);
        twice(m, h[0][t], h[1][t], n[t] * 4);
    }
    printf("%s, %s, mma: largest |gpu - cpu| / scale: out %.1e, lse %.1e (against the shared-memory "
           "forward's), dq %.1e, dk dv %.1e, dEr %.1e (tolerance %.1e)\n",
           name, label, worst[0], worst[1], worst[2], worst[3], worst[4], FUSED_TOL_BF16);
    for (int t = 0; t < 3; t++) {
        snprintf(m, sizeof m, "%s, %s, mma: dS stored one head at a time: %s (the bytes of all heads at once)", name,
                 label, what[2 + t]);
        cmp_bytes(m, one[t], h[0][2 + t], n[2 + t] * 4);
        free(one[t]);
    }
    CHECK(check_skipping || memcmp(h[0][0], wmma[0], no * 4) != 0,
          "%s, %s, mma forward: out has the shared-memory forward's bytes (HMT_GPU_FA_MMA=1 not taken?)", name, label);
    for (int r = 0; r < 2; r++)
        for (int t = 0; t < 5; t++) free(h[r][t]);
    no_error(name);
}

static void attention_case(const char *name, int B, int C, int NH, int Tq, int Tk, const int *n_keys, int with_er,
                           float dropout)
{
    int HS = C / NH, L = with_er ? Tq + 3 : 0, causal = Tq == Tk;
    for (int i = 0; i < Tq; i++) causal &= n_keys[i] == i + 1;
    AttnDims d = {.B = B, .Tq = Tq, .Tk = Tk, .C = C, .NH = NH, .L = L, .ldq = 3 * C, .ldk = 2 * C, .ldv = 2 * C,
                  .n_keys = n_keys, .causal = causal, .dropout = dropout, .seed = {.add = 99 + (uint64_t)Tq}};
    size_t nq = (size_t)B * Tq * 3 * C, nkv = (size_t)B * Tk * 2 * C, no = (size_t)B * Tq * C;
    size_t np = (size_t)B * NH * Tq * Tk, ner = (size_t)(with_er ? L : 1) * HS;
    float *qb = rnd(nq, 1), *kv = rnd(nkv, 1), *er = rnd(ner, 1), *dout = rnd(no, 1);
    float *dq0 = rnd(nq, 1), *dkv0 = rnd(nkv, 1), *der0 = rnd(ner, 1);
    float *out = malloc(no * 4), *probs = malloc(np * 4), *scratch = malloc((2 * (size_t)Tq * Tk + (size_t)Tq * Tq) * 4);
    uint8_t *mask = malloc(np);
    float *dq = copy_of(dq0, nq), *dkv = copy_of(dkv0, nkv), *der = copy_of(der0, ner);
    attention_forward(out, probs, mask, scratch, qb, kv, kv + C, with_er ? er : NULL, &d);
    attention_backward(dq, dkv, dkv + C, with_er ? der : NULL, scratch, dout, probs, mask, qb, kv, kv + C,
                       with_er ? er : NULL, &d);
    float *d_q = dev_from(qb, nq * 4), *d_kv = dev_from(kv, nkv * 4), *d_er = dev_from(er, ner * 4);
    float *d_dout = dev_from(dout, no * 4), *d_out = dev_new(no * 4), *d_probs = dev_new(np * 4);
    float *d_dq = dev_new(nq * 4), *d_dkv = dev_new(nkv * 4), *d_der = dev_new(ner * 4);
    uint8_t *d_mask = dev_new(np);
    int *d_nk = dev_from(n_keys, (size_t)Tq * sizeof *n_keys);
    AttnDims dd = d;
    dd.n_keys = d_nk;
    float *g[3][6];
    void *base = NULL; // the second run of each kind reads its seed from device memory: the same bytes ("twice")
    SeedRef seed_dev = dev_seed(d.seed.add, &base);
    char m[200];
    // split causal rows (groups of 128, T > 128): the kernels leave probs and the workspace past a row's group keys
    // unwritten, since no product reads them: they start as NaN here (a read would spread it to out and the
    // gradients), and are taken as the CPU's zeros for the comparisons
    int split = causal && Tq > 128;
    float *nan_p = malloc(np * 4);
    memset(nan_p, 0xff, np * 4);
    // kind 0: float32; kind 1: the same on bfloat16 operands (HMT_GPU_ATT16=1 under bf16: q, k, v, Er, dout, PD and
    // dS rounded for the products), within FUSED_TOL_BF16 of the CPU, the mask the same bytes, the mask drawn again
    // the same bytes. Shapes gpu_attention16_takes refuses (not multiples of 8) run the TF32 products: the same checks
    for (int kind = 0; kind < 2; kind++) {
        if (kind) setenv("HMT_GPU_ATT16", "1", 1), gpu_set_precision(GPU_BF16);
        for (int r = 0; r < 3; r++) { // the third keeps no mask: the backward draws it again from the seed
            reset(d_dq, dq0, nq * 4), reset(d_dkv, dkv0, nkv * 4), reset(d_der, der0, ner * 4);
            dd.seed = r == 1 ? seed_dev : d.seed;
            uint8_t *mk = r < 2 ? d_mask : NULL;
            reset(d_probs, nan_p, np * 4), gpu_workspace_fill(0xff);
            gpu_attention_forward(d_out, d_probs, mk, d_q, d_kv, d_kv ? d_kv + C : NULL, with_er ? d_er : NULL, &dd);
            gpu_attention_backward(d_dq, d_dkv, d_dkv ? d_dkv + C : NULL, with_er ? d_der : NULL, d_dout, d_probs, mk,
                                   d_q, d_kv, d_kv ? d_kv + C : NULL, with_er ? d_er : NULL, &dd);
            g[r][0] = host_from(d_out, no * 4), g[r][1] = host_from(d_probs, np * 4);
            g[r][2] = r < 2 ? host_from(d_mask, np) : NULL, g[r][3] = host_from(d_dq, nq * 4);
            g[r][4] = host_from(d_dkv, nkv * 4), g[r][5] = host_from(d_der, ner * 4);
            size_t past = 0, written = 0;
            for (size_t row = 0; split && row < (size_t)B * NH * Tq; row++) // past the row's group: the CPU's zeros
                for (int j = ((int)(row % Tq) / 128 + 1) * 128; j < Tk; j++, past++) {
                    written += memcmp(&g[r][1][row * Tk + j], nan_p, 4) != 0;
                    g[r][1][row * Tk + j] = 0.0f;
                }
            if (split && r == 0)
                CHECK(past > 0 && written == 0, "%s%s: %zu of the %zu probabilities past their rows' groups written",
                      name, kind ? ", bf16 products" : "", written, past);
        }
        if (kind) gpu_set_precision(GPU_FP32), unsetenv("HMT_GPU_ATT16");
        static const char *const what[6] = {"out", "probs", "", "dq", "dk, dv", "dEr"};
        size_t bytes[6] = {no * 4, np * 4, 0, nq * 4, nkv * 4, ner * 4};
        if (kind == 0) {
            snprintf(m, sizeof m, "%s out", name), cmp(m, g[0][0], out, no, TOL);
            twice(m, g[0][0], g[1][0], no * 4);
            snprintf(m, sizeof m, "%s probs", name), cmp(m, g[0][1], probs, np, TOL);
            twice(m, g[0][1], g[1][1], np * 4);
            snprintf(m, sizeof m, "%s mask (same bytes)", name), cmp_bytes(m, g[0][2], mask, np);
            twice(m, g[0][2], g[1][2], np);
            snprintf(m, sizeof m, "%s dq (and the untouched columns)", name), cmp(m, g[0][3], dq, nq, TOL);
            twice(m, g[0][3], g[1][3], nq * 4);
            snprintf(m, sizeof m, "%s dk, dv", name), cmp(m, g[0][4], dkv, nkv, TOL);
            twice(m, g[0][4], g[1][4], nkv * 4);
            snprintf(m, sizeof m, "%s dEr%s", name, with_er ? "" : " (none: untouched)");
            cmp(m, g[0][5], der, ner, with_er ? TOL : 0), twice(m, g[0][5], g[1][5], ner * 4);
            for (int t = 0; t < 6; t++) // the mask not kept (hg.c's plan with this backend): the bytes of the kept one
                if (t != 2) snprintf(m, sizeof m, "%s %s, no mask kept", name, what[t]), twice(m, g[0][t], g[2][t],
                                                                                               bytes[t]);
        } else {
            int takes = gpu_attention16_takes(&dd);
            const char *lb = takes ? "gemm, bf16 products" : "gemm, bf16 products refused (shape): TF32";
            double tol = FUSED_TOL_BF16, worst[4];
            snprintf(m, sizeof m, "%s, %s: out", name, lb), worst[0] = cmp(m, g[0][0], out, no, tol);
            twice(m, g[0][0], g[1][0], no * 4);
            snprintf(m, sizeof m, "%s, %s: probs", name, lb), cmp(m, g[0][1], probs, np, tol);
            twice(m, g[0][1], g[1][1], np * 4);
            snprintf(m, sizeof m, "%s, %s: mask (same bytes)", name, lb), cmp_bytes(m, g[0][2], mask, np);
            snprintf(m, sizeof m, "%s, %s: dq", name, lb), worst[1] = cmp(m, g[0][3], dq, nq, tol);
            twice(m, g[0][3], g[1][3], nq * 4);
            snprintf(m, sizeof m, "%s, %s: dk, dv", name, lb), worst[2] = cmp(m, g[0][4], dkv, nkv, tol);
            twice(m, g[0][4], g[1][4], nkv * 4);
            snprintf(m, sizeof m, "%s, %s: dEr%s", name, lb, with_er ? "" : " (none: untouched)");
            worst[3] = cmp(m, g[0][5], der, ner, with_er ? tol : 0), twice(m, g[0][5], g[1][5], ner * 4);
            for (int t = 0; t < 6; t++)
                if (t != 2)
                    snprintf(m, sizeof m, "%s, %s: %s, no mask kept", name, lb, what[t]),
                        twice(m, g[0][t], g[2][t], bytes[t]);
            CHECK(check_skipping || !takes || (worst[0] > 1e-5 && worst[1] > 1e-5),
                  "%s, %s: out, dq within %.1e, %.1e of the CPU: the float32 products ran", name, lb, worst[0],
                  worst[1]);
            printf("%s, %s: largest |gpu - cpu| / scale: out %.1e, dq %.1e, dk dv %.1e, dEr %.1e (tolerance %.1e)\n",
                   name, lb, worst[0], worst[1], worst[2], worst[3], tol);
        }
        for (int r = 0; r < 3; r++)
            for (int t = 0; t < 6; t++) free(g[r][t]);
    }
    // the fused kernels: the same tensors but probs and mask, which they never store. In float32 the SIMT kernels;
    // under TF32 and bf16, for head sizes 16, 32, 48, 64, the tensor-core kernels (gpu_attn_tc.cu), whose operands
    // keep 11 or 8 significant bits: tolerances FUSED_TOL_TF32 and FUSED_TOL_BF16 of each tensor's scale
    static const struct {
        int prec;
        double tol;
        const char *label;
    } kinds[3] = {{GPU_FP32, TOL, "fused"},
                  {GPU_TF32, FUSED_TOL_TF32, "fused, TF32 tensor cores"},
                  {GPU_BF16, FUSED_TOL_BF16, "fused, bf16 tensor cores"}};
    for (int kind = 0; kind < 3 && HS <= GPU_ATTN_FUSED_HS_MAX; kind++) {
        if (kind > 0 && !gpu_attention_tc_fits(HS, kinds[kind].prec, SIZE_MAX)) break; // a head size they take
        double tol = kinds[kind].tol;
        const char *label = kinds[kind].label;
        // a GPU whose shared memory the tensor-core kernels do not fit runs the float32 ones: their checks skipped
        int was_skipping = check_skipping, fits = kind == 0 || gpu_attention_tc_fits(HS, kinds[kind].prec,
                                                                                       gpu_smem_optin());
        if (!fits) {
            printf("%s, %s: skipped (the kernels do not fit this GPU's %zu bytes of shared memory per block)\n", name,
                   label, gpu_smem_optin());
            check_skipping = 1;
        }
        float *d_lse = dev_new((size_t)B * NH * Tq * 4);
        gpu_set_precision(kinds[kind].prec);
        for (int r = 0; r < 2; r++) {
            reset(d_dq, dq0, nq * 4), reset(d_dkv, dkv0, nkv * 4), reset(d_der, der0, ner * 4);
            gpu_zero(d_out, no * 4);
            dd.seed = r == 0 ? d.seed : seed_dev;
            gpu_workspace_fill(0xff); // what the kernels read of the workspace, they wrote
            gpu_attention_fused_forward(d_out, d_lse, d_q, d_kv, d_kv ? d_kv + C : NULL, with_er ? d_er : NULL, &dd);
            gpu_attention_fused_backward(d_dq, d_dkv, d_dkv ? d_dkv + C : NULL, with_er ? d_der : NULL, d_dout, d_out,
                                         d_lse, d_q, d_kv, d_kv ? d_kv + C : NULL, with_er ? d_er : NULL, &dd);
            g[r][0] = host_from(d_out, no * 4), g[r][1] = host_from(d_lse, (size_t)B * NH * Tq * 4);
            g[r][3] = host_from(d_dq, nq * 4), g[r][4] = host_from(d_dkv, nkv * 4), g[r][5] = host_from(d_der, ner * 4);
        }
        // the tensor-core backward's other schedules (the forward's out and lse as they are), each on a workspace
        // of NaNs (what a kernel reads without having written it shows): its stored dS for one head at a time and
        // for at most three (chunks that need not divide the heads), the bytes of all at once; and none stored,
        // each kernel computing dS again (HMT_GPU_FA_DS_MIB=0), within the tolerance of the CPU as well. A head's
        // tiles (gpu.h): 64 x 64, bf16 or float32, those on and below the diagonal with the causal promise
        size_t nqt = (size_t)(Tq + 63) / 64, nkt = (size_t)(Tk + 63) / 64;
        size_t per_head = (causal ? nqt * (nqt + 1) / 2 : nqt * nkt) * 64 * 64;
        per_head *= kinds[kind].prec == GPU_BF16 ? 2 : 4;
        for (int v = 0; v < 3 && kind > 0; v++) {
            static const char *const hows[3] = {"dS stored one head at a time", "dS stored at most three heads at a time",
                                                "dS computed again by each kernel"};
            const char *how = hows[v];
            char mib[32];
            snprintf(mib, sizeof mib, "%.9g", v == 0 ? 1e-9 : v == 1 ? 3.5 * (double)per_head / 1048576.0 : 0.0);
            setenv("HMT_GPU_FA_DS_MIB", mib, 1);
            reset(d_dq, dq0, nq * 4), reset(d_dkv, dkv0, nkv * 4), reset(d_der, der0, ner * 4);
            dd.seed = d.seed;
            gpu_workspace_fill(0xff);
            gpu_attention_fused_backward(d_dq, d_dkv, d_dkv ? d_dkv + C : NULL, with_er ? d_der : NULL, d_dout, d_out,
                                         d_lse, d_q, d_kv, d_kv ? d_kv + C : NULL, with_er ? d_er : NULL, &dd);
            unsetenv("HMT_GPU_FA_DS_MIB");
            float *h[3] = {host_from(d_dq, nq * 4), host_from(d_dkv, nkv * 4), host_from(d_der, ner * 4)};
            const float *cpu[3] = {dq, dkv, der};
            size_t n[3] = {nq, nkv, ner};
            static const char *const what[3] = {"dq", "dk, dv", "dEr"};
            for (int t = 0; t < 3; t++) {
                if (v < 2)
                    snprintf(m, sizeof m, "%s, %s, %s: %s (the bytes of all heads at once)", name, label, how, what[t]),
                        cmp_bytes(m, h[t], g[0][3 + t], n[t] * 4);
                else
                    snprintf(m, sizeof m, "%s, %s, %s: %s", name, label, how, what[t]),
                        cmp(m, h[t], cpu[t], n[t], t == 2 && !with_er ? 0 : tol);
                free(h[t]);
            }
        }
        if (kind == 1 && with_er)
            er_offset_case(name, label, g[0], &dd, C, d_q, NULL, nq, d_kv, NULL, nkv, d_lse, d_er, d_dout, d_out, d_dq,
                           dq0, d_dkv, dkv0, der0, ner);
        if (kind == 2) fused16_case(name, g[0], &dd, d.seed, C, d_q, nq, d_kv, nkv, d_lse, with_er ? d_er : NULL,
                                    d_dout, d_out, d_dq, dq0, d_dkv, dkv0, with_er ? d_der : NULL, der0, ner);
        if (kind == 2) mma_case(name, label, g[0], &dd, d.seed, seed_dev, d_q, d_kv, with_er, d_er, d_dout, d_out,
                                d_lse, d_dq, dq0, d_dkv, dkv0, d_der, der0, out, dq, dkv, der);
        gpu_set_precision(GPU_FP32);
        double worst[4];
        snprintf(m, sizeof m, "%s, %s: out", name, label), worst[0] = cmp(m, g[0][0], out, no, tol);
        twice(m, g[0][0], g[1][0], no * 4);
        snprintf(m, sizeof m, "%s, %s: lse", name, label), twice(m, g[0][1], g[1][1], (size_t)B * NH * Tq * 4);
        snprintf(m, sizeof m, "%s, %s: dq", name, label), worst[1] = cmp(m, g[0][3], dq, nq, tol);
        twice(m, g[0][3], g[1][3], nq * 4);
        snprintf(m, sizeof m, "%s, %s: dk, dv", name, label), worst[2] = cmp(m, g[0][4], dkv, nkv, tol);
        twice(m, g[0][4], g[1][4], nkv * 4);
        snprintf(m, sizeof m, "%s, %s: dEr%s", name, label, with_er ? "" : " (none: untouched)");
        worst[3] = cmp(m, g[0][5], der, ner, with_er ? tol : 0), twice(m, g[0][5], g[1][5], ner * 4);
        // the tensor-core kernels ran, not the float32 ones (a silent fallback): their operands' rounding shows
        if (kind > 0) { // forward and backward each decide
            CHECK(worst[0] > 1e-5 && worst[1] > 1e-5, "%s, %s: out, dq within %.1e, %.1e of the CPU: the float32 "
                  "kernels ran", name, label, worst[0], worst[1]);
            // the tolerances' margins, to read in a GPU's log (the emulator's sums are not the hardware's)
            printf("%s, %s: largest |gpu - cpu| / scale: out %.1e, dq %.1e, dk dv %.1e, dEr %.1e (tolerance %.1e)\n",
                   name, label, worst[0], worst[1], worst[2], worst[3], tol);
        }
        for (int r = 0; r < 2; r++)
            for (int t = 0; t < 6; t++)
                if (t != 2) free(g[r][t]);
        gpu_free(d_lse);
        check_skipping = was_skipping;
    }
    gpu_free(d_q), gpu_free(d_kv), gpu_free(d_er), gpu_free(d_dout), gpu_free(d_out), gpu_free(d_probs);
    gpu_free(d_dq), gpu_free(d_dkv), gpu_free(d_der), gpu_free(d_mask), gpu_free(d_nk), gpu_free(base);
    free(qb), free(kv), free(er), free(dout), free(dq0), free(dkv0), free(der0), free(out), free(probs), free(scratch);
    free(nan_p);
    free(mask), free(dq), free(dkv), free(der);
    no_error(name);
}

static void test_attention(void)
{
    int causal[5] = {1, 2, 3, 4, 5}, pre[3] = {2, 4, 6}, post[6] = {1, 1, 2, 2, 3, 3};
    attention_case("causal RPR attention T 5", 2, 8, 2, 5, 5, causal, 1, 0);
    attention_case("causal RPR attention T 5, dropout 0.3", 2, 8, 2, 5, 5, causal, 1, 0.3f);
    attention_case("causal attention without Er", 2, 8, 2, 5, 5, causal, 0, 0);
    attention_case("resample_pre cross-attention 3 x 6", 2, 8, 2, 3, 6, pre, 0, 0);
    attention_case("resample_post cross-attention 6 x 3", 2, 8, 2, 6, 3, post, 0, 0);
    // two query tiles of 128 rows (the mask covers each tile's widest key range), 4 heads of 8
    int big_causal[512], big_pre[150], big_post[300];
    for (int i = 0; i < 512; i++) big_causal[i] = i + 1;
    for (int i = 0; i < 300; i++) big_post[i] = i / 2 + 1;
    for (int i = 0; i < 150; i++) big_pre[i] = 2 * i + 2;
    attention_case("causal RPR attention T 201", 2, 32, 4, 201, 201, big_causal, 1, 0);
    attention_case("causal RPR attention T 301, dropout 0.2", 3, 32, 4, 301, 301, big_causal, 1, 0.2f);
    attention_case("resample_pre 150 x 301, dropout 0.2", 2, 32, 4, 150, 301, big_pre, 0, 0.2f);
    attention_case("resample_post 300 x 150, dropout 0.1", 2, 16, 2, 300, 150, big_post, 0, 0.1f);
    attention_case("causal RPR attention T 64, head size 64", 2, 256, 4, 64, 64, big_causal, 1, 0.1f);
    // head sizes the tensor-core kernels take (16 to 64), over several tiles of 64 with a partial last one
    attention_case("causal RPR attention T 201, head size 32, dropout 0.2", 2, 64, 2, 201, 201, big_causal, 1, 0.2f);
    attention_case("causal RPR attention T 130, head size 48", 1, 96, 2, 130, 130, big_causal, 1, 0.0f);
    attention_case("causal RPR attention T 70, head size 16", 1, 32, 2, 70, 70, big_causal, 1, 0.0f);
    attention_case("resample_pre 150 x 301, head size 16, dropout 0.2", 2, 32, 2, 150, 301, big_pre, 0, 0.2f);
    attention_case("resample_post 300 x 150, head size 16, dropout 0.1", 2, 32, 2, 300, 150, big_post, 0, 0.1f);
    // a head size that is not a multiple of 4 (the fused kernels' threads take dimensions 4 apart), and 128
    attention_case("causal RPR attention T 70, head size 5, dropout 0.1", 2, 10, 2, 70, 70, big_causal, 1, 0.1f);
    attention_case("causal RPR attention T 40, head size 128", 1, 256, 2, 40, 40, big_causal, 1, 0.0f);
    // the cross-attentions in shapes the bf16 products take (multiples of 8: gpu_attention16_takes)
    attention_case("resample_pre 64 x 136, head size 16, dropout 0.1", 2, 32, 2, 64, 136, big_pre, 0, 0.1f);
    attention_case("resample_post 128 x 64, head size 8", 2, 32, 4, 128, 64, big_post, 0, 0.0f);
    { // which head sizes the tensor-core kernels take, by precision and the device's shared memory per block
        const size_t h100 = 232448, a100 = 166912;
        CHECK(gpu_attention_tc_fits(64, GPU_TF32, h100) && gpu_attention_tc_fits(64, GPU_BF16, h100) &&
                  gpu_attention_tc_fits(16, GPU_BF16, h100) && gpu_attention_tc_fits(48, GPU_TF32, h100),
              "tensor-core attention: head sizes 16..64 on an H100");
        CHECK(!gpu_attention_tc_fits(64, GPU_TF32, a100) && gpu_attention_tc_fits(64, GPU_BF16, a100) &&
                  gpu_attention_tc_fits(32, GPU_TF32, a100),
              "tensor-core attention on an A100's 163 KiB: TF32 at head size 64 does not fit, bf16 and TF32 at 32 do");
        CHECK(!gpu_attention_tc_fits(64, GPU_FP32, h100) && !gpu_attention_tc_fits(8, GPU_BF16, h100) &&
                  !gpu_attention_tc_fits(40, GPU_BF16, h100) && !gpu_attention_tc_fits(128, GPU_BF16, h100),
              "tensor-core attention: not in float32, nor for head sizes 8, 40, 128");
    }
    { // bf16 q, k, v: only for the tensor-core kernels under bf16 (a head size of 8 they refuse, naming why)
        AttnDims d = {.B = 1, .Tq = 4, .Tk = 4, .C = 16, .NH = 2, .L = 4, .ldq = 48, .ldk = 48, .ldv = 48};
        int keys[4] = {1, 2, 3, 4}, *d_nk = dev_from(keys, sizeof keys);
        d.n_keys = d_nk;
        float *out = dev_new(4 * 16 * 4), *lse = dev_new(2 * 4 * 4);
        uint16_t *qkv = dev_new(4 * 48 * 2);
        gpu_set_precision(GPU_BF16);
        CHECK(!gpu_attention_fused_takes16(&d), "bf16 q, k, v: not taken at head size 8");
        gpu_attention_fused_forward16(out, lse, qkv, qkv + 16, qkv + 32, NULL, &d);
        CHECK(strstr(gpu_error(), "bf16 q, k, v") != NULL, "bf16 q, k, v at head size 8: error '%s'", gpu_error());
        gpu_clear_error();
        d.C = 32, d.ldq = d.ldk = d.ldv = 96; // head size 16
        CHECK(gpu_attention_fused_takes16(&d), "bf16 q, k, v: taken at head size 16 under bf16");
        setenv("HMT_GPU_ACT16", "0", 1);
        CHECK(!gpu_attention_fused_takes16(&d), "bf16 q, k, v: not taken with HMT_GPU_ACT16=0");
        unsetenv("HMT_GPU_ACT16");
        gpu_set_precision(GPU_TF32);
        CHECK(!gpu_attention_fused_takes16(&d), "bf16 q, k, v: not taken under TF32");
        gpu_set_precision(GPU_FP32);
        gpu_free(out), gpu_free(lse), gpu_free(qkv), gpu_free(d_nk);
    }
    { // past head size 128 the fused kernels refuse, naming it (the backend then takes the unfused path)
        AttnDims d = {.B = 1, .Tq = 4, .Tk = 4, .C = 272, .NH = 2, .L = 4, .ldq = 272, .ldk = 272, .ldv = 272,
                      .n_keys = NULL};
        float *buf = dev_new(4 * 272 * 4), *lse = dev_new(2 * 4 * 4);
        gpu_attention_fused_forward(buf, lse, buf, buf, buf, NULL, &d);
        CHECK(strstr(gpu_error(), "head size") != NULL, "fused attention, head size 136: error '%s'", gpu_error());
        gpu_clear_error();
        gpu_free(buf), gpu_free(lse);
    }
    // the default model's shape: d 256, 4 heads, T 512 (4 tiles), dropout 0.1
    attention_case("causal RPR attention T 512, d 256, 4 heads, dropout 0.1", 2, 256, 4, 512, 512, big_causal, 1,
                   0.1f);
}

// ---- hourglass resampling ------------------------------------------------------------------------------------

enum { R_PAD, R_CROP, R_SHIFT, R_MEANPOOL, R_REPEAT };

// forward and backward of one resampling op; its arithmetic is the CPU's (copies, adds in order, one divide):
// the same bytes
static void resample_case(const char *name, int op, int B, int T, int Tp, int C, int K)
{
    size_t n_in, n_out;
    switch (op) {
    case R_PAD: n_in = (size_t)B * T * C, n_out = (size_t)B * Tp * C; break;
    case R_CROP: n_in = (size_t)B * Tp * C, n_out = (size_t)B * T * C; break;
    case R_MEANPOOL: n_in = (size_t)B * T * C, n_out = (size_t)B * (T / K) * C; break;
    case R_REPEAT: n_in = (size_t)B * (T / K) * C, n_out = (size_t)B * T * C; break;
    default: n_in = n_out = (size_t)B * T * C;
    }
    float *inp = rnd(n_in, 1), *dout = rnd(n_out, 1), *din0 = rnd(n_in, 1), *out = rnd(n_out, 1);
    float *din = copy_of(din0, n_in), *out0 = copy_of(out, n_out);
    switch (op) {
    case R_PAD: pad_forward(out, inp, B, T, Tp, C), pad_backward(din, dout, B, T, Tp, C); break;
    case R_CROP: crop_forward(out, inp, B, Tp, T, C), crop_backward(din, dout, B, Tp, T, C); break;
    case R_SHIFT: shift_forward(out, inp, B, T, C, K), shift_backward(din, dout, B, T, C, K); break;
    case R_MEANPOOL: meanpool_forward(out, inp, B, T, C, K), meanpool_backward(din, dout, B, T, C, K); break;
    case R_REPEAT: repeat_forward(out, inp, B, T, C, K), repeat_backward(din, dout, B, T, C, K); break;
    }
    float *d_inp = dev_from(inp, n_in * 4), *d_dout = dev_from(dout, n_out * 4), *d_out = dev_new(n_out * 4);
    float *d_din = dev_new(n_in * 4), *go[2], *gd[2];
    for (int r = 0; r < 2; r++) {
        reset(d_din, din0, n_in * 4), reset(d_out, out0, n_out * 4); // every output element must be written
        switch (op) {
        case R_PAD: gpu_pad_forward(d_out, d_inp, B, T, Tp, C), gpu_pad_backward(d_din, d_dout, B, T, Tp, C); break;
        case R_CROP: gpu_crop_forward(d_out, d_inp, B, Tp, T, C), gpu_crop_backward(d_din, d_dout, B, Tp, T, C); break;
        case R_SHIFT:
            gpu_shift_forward(d_out, d_inp, B, T, C, K), gpu_shift_backward(d_din, d_dout, B, T, C, K);
            break;
        case R_MEANPOOL:
            gpu_meanpool_forward(d_out, d_inp, B, T, C, K), gpu_meanpool_backward(d_din, d_dout, B, T, C, K);
            break;
        case R_REPEAT:
            gpu_repeat_forward(d_out, d_inp, B, T, C, K), gpu_repeat_backward(d_din, d_dout, B, T, C, K);
            break;
        }
        go[r] = host_from(d_out, n_out * 4), gd[r] = host_from(d_din, n_in * 4);
    }
    char m[160];
    snprintf(m, sizeof m, "%s forward (same bytes)", name), cmp(m, go[0], out, n_out, 0);
    twice(m, go[0], go[1], n_out * 4);
    snprintf(m, sizeof m, "%s backward (same bytes)", name), cmp(m, gd[0], din, n_in, 0);
    twice(m, gd[0], gd[1], n_in * 4);
    for (int r = 0; r < 2; r++) free(go[r]), free(gd[r]);
    gpu_free(d_inp), gpu_free(d_dout), gpu_free(d_out), gpu_free(d_din);
    free(inp), free(dout), free(din0), free(out), free(din), free(out0);
    no_error(name);
}

static void test_resampling(void)
{
    resample_case("pad 13 -> 15 rows", R_PAD, 3, 13, 15, 33, 0);
    resample_case("crop 15 -> 13 rows", R_CROP, 3, 13, 15, 33, 0);
    resample_case("shift by 2 (s 3)", R_SHIFT, 3, 13, 0, 33, 3);
    resample_case("shift by 19 > T (s 20)", R_SHIFT, 2, 13, 0, 5, 20);
    resample_case("mean pool s 3", R_MEANPOOL, 3, 15, 0, 33, 3);
    resample_case("mean pool s 4, C 256", R_MEANPOOL, 2, 64, 0, 256, 4);
    resample_case("repeat s 2", R_REPEAT, 3, 14, 0, 33, 2);
    resample_case("repeat s 3", R_REPEAT, 2, 15, 0, 256, 3);
}

// ---- losses -------------------------------------------------------------------------------------------------

static void ce_case(const char *name, int N, int V, int pad_every)
{
    char m[160];
    size_t n = (size_t)N * V;
    float *logits = rnd(n, 4), *probs = malloc(n * 4), *dl0 = rnd(n, 1), *dl = copy_of(dl0, n);
    int32_t *tgt = malloc((size_t)N * sizeof *tgt);
    for (int i = 0; i < N; i++)
        tgt[i] = pad_every && i % pad_every == 0 ? 0 : (int32_t)((frand() + 1) * 0.5 * (V - 1)) + 1;
    int nv = 0, gnv[2] = {-1, -1};
    float loss = crossentropy_forward(probs, logits, tgt, N, V, &nv), gl[2];
    crossentropy_backward(dl, probs, tgt, N, V, nv, 0.75f);
    float *d_logits = dev_from(logits, n * 4), *d_probs = dev_new(n * 4), *d_dl = dev_new(n * 4);
    int32_t *d_tgt = dev_from(tgt, (size_t)N * 4);
    float *gp[2], *gd[2];
    for (int r = 0; r < 2; r++) {
        reset(d_dl, dl0, n * 4);
        gl[r] = gpu_crossentropy_forward(d_probs, d_logits, d_tgt, N, V, &gnv[r]);
        gpu_crossentropy_backward(d_dl, d_probs, d_tgt, N, V, gnv[r], 0.75f);
        gp[r] = host_from(d_probs, n * 4), gd[r] = host_from(d_dl, n * 4);
    }
    CHECK(gnv[0] == nv, "%s: n_valid gpu %d cpu %d", name, gnv[0], nv);
    snprintf(m, sizeof m, "%s loss", name), cmp(m, &gl[0], &loss, 1, TOL), twice(m, &gl[0], &gl[1], 4);
    snprintf(m, sizeof m, "%s probs", name), cmp(m, gp[0], probs, n, TOL), twice(m, gp[0], gp[1], n * 4);
    snprintf(m, sizeof m, "%s dlogits", name), cmp(m, gd[0], dl, n, TOL), twice(m, gd[0], gd[1], n * 4);
    for (int r = 0; r < 2; r++) free(gp[r]), free(gd[r]);
    // fused (no probs): the bytes of the two ops above on zeros, the same n_valid and loss
    float fl[2], *gf[2], *zero_based;
    int fnv[2] = {-1, -1};
    gpu_zero(d_dl, n * 4);
    gpu_crossentropy_forward(d_probs, d_logits, d_tgt, N, V, &gnv[0]);
    gpu_crossentropy_backward(d_dl, d_probs, d_tgt, N, V, gnv[0], 0.75f);
    zero_based = host_from(d_dl, n * 4);
    for (int r = 0; r < 2; r++) {
        reset(d_dl, dl0, n * 4); // written, not accumulated: what was there does not matter
        fl[r] = gpu_crossentropy_fused(d_dl, d_logits, d_tgt, N, V, 0.75f, &fnv[r]);
        gf[r] = host_from(d_dl, n * 4);
    }
    CHECK(fnv[0] == nv && fl[0] == gl[0], "%s fused: n_valid %d loss %.9g, unfused %d %.9g", name, fnv[0], fl[0], nv,
          gl[0]);
    snprintf(m, sizeof m, "%s fused dlogits: the unfused ops' bytes on zeros", name);
    cmp_bytes(m, gf[0], zero_based, n * 4), twice(m, gf[0], gf[1], n * 4);
    for (int r = 0; r < 2; r++) free(gf[r]);
    free(zero_based);
    gpu_free(d_logits), gpu_free(d_probs), gpu_free(d_dl), gpu_free(d_tgt);
    free(logits), free(probs), free(dl0), free(dl), free(tgt);
    no_error(name);
}

// evaluate.c's scoring: gpu_score_rows against ops.c's score_rows: the same argmaxes (ties to the first maximum,
// across lanes and within one; -1 for rows not finite), nll within SCORE_TOL of the CPU's double (only the order of
// the sum of exps differs), NaN for a target outside the vocabulary; the same bytes twice
#define SCORE_TOL 1e-13
static void score_case(const char *name, int N, int V)
{
    char m[160];
    size_t n = (size_t)N * V;
    float *logits = rnd(n, 4);
    int32_t *tgt = malloc((size_t)N * sizeof *tgt), *best = malloc((size_t)N * sizeof *best), *gb[2];
    double *nll = malloc((size_t)N * sizeof *nll), *gn[2];
    for (int i = 0; i < N; i++) tgt[i] = i % 7 == 0 ? 0 : (int32_t)((frand() + 1) * 0.5 * (V - 1));
    // rows of their own, where the size allows: ties (5 and 200: lanes 5, 8; 8 and 40: both lane 8; 35 (lane 3)
    // against 66 (lane 2) and 300), an infinity, a NaN, -infinity, targets -1 and V
    if (V > 300 && N > 8) {
        float *x = logits;
        x[1 * V + 5] = x[1 * V + 200] = 10;
        x[2 * V + 40] = x[2 * V + 8] = 10;
        x[3 * V + 300] = x[3 * V + 66] = x[3 * V + 35] = 10;
        x[4 * V + 100] = INFINITY, x[5 * V + 17] = NAN, x[6 * V + 250] = -INFINITY;
        tgt[7] = -1, tgt[8] = V;
    }
    score_rows(nll, best, logits, tgt, N, V);
    float *d_logits = dev_from(logits, n * 4);
    int32_t *d_tgt = dev_from(tgt, (size_t)N * 4), *d_best = dev_new((size_t)N * 4);
    double *d_nll = dev_new((size_t)N * 8);
    for (int r = 0; r < 2; r++) {
        gpu_score_rows(d_nll, d_best, d_logits, d_tgt, N, V);
        gn[r] = host_from(d_nll, (size_t)N * 8), gb[r] = host_from(d_best, (size_t)N * 4);
    }
    snprintf(m, sizeof m, "%s argmaxes", name), cmp_bytes(m, gb[0], best, (size_t)N * 4);
    size_t bad = 0, at = 0;
    for (int i = 0; i < N; i++) {
        int ok = isnan(nll[i]) ? isnan(gn[0][i]) : fabs(gn[0][i] - nll[i]) <= SCORE_TOL * fmax(1.0, fabs(nll[i]));
        if (!ok && !bad++) at = (size_t)i;
    }
    CHECK(bad == 0, "%s: %zu of %d row losses off, first row %zu: gpu %.17g cpu %.17g (tolerance %.0e)", name, bad, N,
          at, bad ? gn[0][at] : 0.0, bad ? nll[at] : 0.0, SCORE_TOL);
    if (V > 300 && N > 8)
        CHECK(best[1] == 5 && best[2] == 8 && best[3] == 35 && best[4] == -1 && best[5] == -1 && best[6] == -1 &&
              isnan(nll[7]) && isnan(nll[8]), "%s: the CPU's own rows of ties and of non-finite logits", name);
    snprintf(m, sizeof m, "%s", name), twice(m, gn[0], gn[1], (size_t)N * 8), twice(m, gb[0], gb[1], (size_t)N * 4);
    for (int r = 0; r < 2; r++) free(gn[r]), free(gb[r]);
    gpu_free(d_logits), gpu_free(d_tgt), gpu_free(d_best), gpu_free(d_nll);
    free(logits), free(tgt), free(best), free(nll);
    no_error(name);
}

// the auxiliary losses: forward sums (double, compared in double) and backward
static void aux_case(const char *name, int expcos, int B, int T, int C)
{
    char m[160];
    size_t n = (size_t)B * T * C;
    // dh starts small: the CPU adds each pair's share to dh in float, so its own rounding grows with |dh|
    float *h = rnd(n, 1), *dh0 = rnd(n, 0.01f), *dh = copy_of(dh0, n);
    long np = 0, gnp = -1;
    double s = expcos ? exp_cosine_forward(h, B, T, C) : cosine_pairs_forward(h, B, T, C, &np), gs[2];
    if (expcos) exp_cosine_backward(dh, h, B, T, C, 0.3f);
    else cosine_pairs_backward(dh, h, B, T, C, 0.3f);
    float *d_h = dev_from(h, n * 4), *d_dh = dev_new(n * 4), *gd[2];
    for (int r = 0; r < 2; r++) {
        reset(d_dh, dh0, n * 4);
        if (expcos) {
            gs[r] = gpu_exp_cosine_forward(d_h, B, T, C);
            gpu_exp_cosine_backward(d_dh, d_h, B, T, C, 0.3f);
        } else {
            gs[r] = gpu_cosine_pairs_forward(d_h, B, T, C, &gnp);
            gpu_cosine_pairs_backward(d_dh, d_h, B, T, C, 0.3f);
        }
        gd[r] = host_from(d_dh, n * 4);
    }
    if (!expcos) CHECK(gnp == np, "%s: n_pairs gpu %ld cpu %ld", name, gnp, np);
    double e = fabs(gs[0] - s), scale = fmax(1.0, fabs(s));
    CHECK(e <= TOL * scale, "%s sum: gpu %.12g cpu %.12g (tolerance %.0e * %.3g)", name, gs[0], s, TOL, scale);
    snprintf(m, sizeof m, "%s sum", name), twice(m, &gs[0], &gs[1], sizeof gs[0]);
    snprintf(m, sizeof m, "%s dh", name), cmp(m, gd[0], dh, n, TOL), twice(m, gd[0], gd[1], n * 4);
    for (int r = 0; r < 2; r++) free(gd[r]);
    gpu_free(d_h), gpu_free(d_dh);
    free(h), free(dh0), free(dh);
    no_error(name);
}

static void test_losses(void)
{
    ce_case("cross-entropy 500 x 348, PAD every 7th", 500, 348, 7);
    ce_case("cross-entropy 9 x 5", 9, 5, 3);
    ce_case("cross-entropy 2000 x 1000, no PAD", 2000, 1000, 0);
    ce_case("cross-entropy, every target PAD", 16, 20, 1);
    score_case("scoring 500 x 348 (ties, rows not finite, targets outside)", 500, 348);
    score_case("scoring 13 x 5", 13, 5);
    score_case("scoring 64 x 1000", 64, 1000);
    aux_case("cosine pairs, odd T", 0, 3, 9, 40);
    aux_case("cosine pairs B 4 T 128 C 256", 0, 4, 128, 256);
    aux_case("exp-cosine", 1, 2, 33, 24);
    aux_case("exp-cosine B 2 T 128 C 256", 1, 2, 128, 256);
}

// ---- optimizer ----------------------------------------------------------------------------------------------

static void clip_case(const char *name, size_t n, double max_norm)
{
    float *g = rnd(n, 0.01f), *cg = copy_of(g, n);
    double norm = clip_grad_norm(cg, n, max_norm), gn[2];
    float *d_g = dev_new(n * 4), *gg[2];
    for (int r = 0; r < 2; r++) {
        reset(d_g, g, n * 4);
        gn[r] = gpu_clip_grad_norm(d_g, n, max_norm);
        gg[r] = host_from(d_g, n * 4);
    }
    char m[160];
    CHECK(fabs(gn[0] - norm) <= 1e-10 * fmax(1.0, norm), "%s: norm gpu %.17g cpu %.17g (tolerance 1e-10)", name,
          gn[0], norm);
    snprintf(m, sizeof m, "%s norm", name), twice(m, &gn[0], &gn[1], sizeof gn[0]);
    snprintf(m, sizeof m, "%s g", name), cmp(m, gg[0], cg, n, TOL), twice(m, gg[0], gg[1], n * 4);
    for (int r = 0; r < 2; r++) free(gg[r]);
    gpu_free(d_g);
    free(g), free(cg);
    no_error(name);
}

static void adam_case(const char *name, size_t n, double wd)
{
    AdamParams p = {3e-4, 0.9, 0.999, 1e-8, wd};
    float *w = rnd(n, 1), *m0 = rnd(n, 0.01f), *v0 = rnd(n, 0.01f);
    for (size_t i = 0; i < n; i++) v0[i] = fabsf(v0[i]);
    float *cw = copy_of(w, n), *cm = copy_of(m0, n), *cv = copy_of(v0, n), *grads[3];
    for (int t = 0; t < 3; t++) grads[t] = rnd(n, 0.1f);
    for (int t = 0; t < 3; t++) adam_step(cw, grads[t], cm, cv, n, t + 1, &p);
    float *d_w = dev_new(n * 4), *d_m = dev_new(n * 4), *d_v = dev_new(n * 4), *d_g = dev_new(n * 4), *gr[2][3];
    for (int r = 0; r < 2; r++) {
        reset(d_w, w, n * 4), reset(d_m, m0, n * 4), reset(d_v, v0, n * 4);
        for (int t = 0; t < 3; t++) {
            reset(d_g, grads[t], n * 4);
            gpu_adam_step(d_w, d_g, d_m, d_v, n, t + 1, &p);
        }
        gr[r][0] = host_from(d_w, n * 4), gr[r][1] = host_from(d_m, n * 4), gr[r][2] = host_from(d_v, n * 4);
    }
    // optim.c's float arithmetic operation for operation (no fused multiply-add): the same bytes
    const char *names[3] = {"w", "m", "v"};
    const float *want[3] = {cw, cm, cv};
    for (int k = 0; k < 3; k++) {
        char m[160];
        snprintf(m, sizeof m, "%s: 3 steps, %s (same bytes)", name, names[k]);
        cmp(m, gr[0][k], want[k], n, 0);
        twice(m, gr[0][k], gr[1][k], n * 4);
    }
    for (int r = 0; r < 2; r++)
        for (int k = 0; k < 3; k++) free(gr[r][k]);
    gpu_free(d_w), gpu_free(d_m), gpu_free(d_v), gpu_free(d_g);
    free(w), free(m0), free(v0), free(cw), free(cm), free(cv);
    for (int t = 0; t < 3; t++) free(grads[t]);
    no_error(name);
}

static void test_optim(void)
{
    clip_case("clip 1000003 floats, max_norm 0.5 (scaled)", 1000003, 0.5);
    clip_case("clip, max_norm 1e9 (untouched)", 100003, 1e9);
    clip_case("clip, max_norm 0 (norm only)", 5, 0.0);
    adam_case("adam", 100003, 0.0);
    adam_case("adam with weight decay 0.01", 4099, 0.01);
}

// ---- device -------------------------------------------------------------------------------------------------

// ---- decoding (gpu_dec_*: decode.c's kernels) ----------------------------------------------------------------
// Against reference loops here in double (decode.c's own CPU loops are static): within TOL, or the same bytes for
// the copies and gathers. Twice: the same bytes.

// runs fn twice into a fresh device buffer of n floats (starting from init, or zeros) and checks both runs
static float *dec_run_twice(const char *what, size_t n, const float *init, void (*fn)(float *, void *), void *ctx)
{
    float *res[2];
    float *d_out = init ? dev_from(init, n * 4) : dev_new(n * 4);
    for (int r = 0; r < 2; r++) {
        reset(d_out, init, init ? n * 4 : 0);
        if (!init && d_out) gpu_zero(d_out, n * 4);
        fn(d_out, ctx);
        res[r] = host_from(d_out, n * 4);
    }
    twice(what, res[0], res[1], n * 4);
    free(res[1]), gpu_free(d_out);
    return res[0];
}

typedef struct DecLin {
    const float *x, *w, *b;
    const uint16_t *w16; // non-NULL: gpu_dec_linear with these bfloat16 weights
    int N, IC, OC, relu;
} DecLin;
static void dec_lin_fn(float *out, void *c)
{
    DecLin *l = c;
    gpu_dec_linear(out, l->x, l->w, l->w16, l->b, l->N, l->IC, l->OC, l->relu);
}

// w16: the weights as bfloat16 (gpu_to_bf16, whose bits must be those of check_bf16_round), the reference then with the
// rounded weights in double: the kernel's float32 arithmetic on them, within TOL
static void dec_linear_case(int N, int IC, int OC, int bias, int relu, int w16)
{
    char m[160];
    snprintf(m, sizeof m, "dec_linear%s N %d IC %d OC %d%s%s", w16 ? "16" : "", N, IC, OC, bias ? " bias" : "",
             relu ? " relu" : "");
    float *x = rnd((size_t)N * IC, 1), *w = rnd((size_t)OC * IC, 1), *b = bias ? rnd(OC, 1) : NULL;
    float *want = malloc((size_t)N * OC * 4);
    uint16_t *d_w16 = NULL;
    if (w16) { // the conversion on the GPU, against the host's rounding bit for bit
        size_t nw = (size_t)OC * IC;
        float *d_wf = dev_from(w, nw * 4), *r = bf16_copy(w, nw);
        d_w16 = dev_new(nw * 2);
        gpu_to_bf16(d_w16, d_wf, nw);
        uint16_t *h16 = host_from(d_w16, nw * 2);
        uint32_t *wide = malloc(nw * 4);
        for (size_t i = 0; h16 && i < nw; i++) wide[i] = (uint32_t)h16[i] << 16;
        char c[200];
        snprintf(c, sizeof c, "%s: gpu_to_bf16", m), cmp_bytes(c, wide, r, nw * 4);
        memcpy(w, r, nw * 4); // the reference below with the rounded weights
        gpu_free(d_wf), free(r), free(h16), free(wide);
    }
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) {
            double a = b ? b[o] : 0;
            for (int k = 0; k < IC; k++) a += (double)x[(size_t)n * IC + k] * w[(size_t)o * IC + k];
            want[(size_t)n * OC + o] = relu && a < 0 ? 0.0f : (float)a;
        }
    DecLin l = {dev_from(x, (size_t)N * IC * 4), dev_from(w, (size_t)OC * IC * 4), b ? dev_from(b, OC * 4) : NULL,
                d_w16, N, IC, OC, relu};
    float *got = dec_run_twice(m, (size_t)N * OC, NULL, dec_lin_fn, &l);
    cmp(m, got, want, (size_t)N * OC, TOL);
    gpu_free((void *)l.x), gpu_free((void *)l.w), gpu_free((void *)l.b), gpu_free(d_w16);
    free(x), free(w), free(b), free(want), free(got);
    no_error(m);
}

typedef struct DecLn {
    const float *a, *b, *w, *bias;
    int N, C;
} DecLn;
static void dec_ln_fn(float *out, void *c)
{
    DecLn *l = c;
    gpu_dec_add_layernorm(out, l->a, l->b, l->w, l->bias, l->N, l->C);
}

static void dec_layernorm_case(int N, int C, int with_b)
{
    char m[160];
    snprintf(m, sizeof m, "dec_add_layernorm N %d C %d%s", N, C, with_b ? " a + b" : "");
    float *a = rnd((size_t)N * C, 2), *b = rnd((size_t)N * C, 1), *w = rnd(C, 1), *bias = rnd(C, 1);
    float *want = malloc((size_t)N * C * 4);
    for (int n = 0; n < N; n++) {
        double mean = 0, var = 0;
        for (int c = 0; c < C; c++) mean += (double)a[n * C + c] + (with_b ? (double)b[n * C + c] : 0);
        mean /= C;
        for (int c = 0; c < C; c++) {
            double r = (double)a[n * C + c] + (with_b ? (double)b[n * C + c] : 0) - mean;
            var += r * r;
        }
        double rs = 1 / sqrt(var / C + 1e-5);
        for (int c = 0; c < C; c++)
            want[n * C + c] = (float)(((double)a[n * C + c] + (with_b ? (double)b[n * C + c] : 0) - mean) * rs * w[c] + bias[c]);
    }
    DecLn l = {dev_from(a, (size_t)N * C * 4), with_b ? dev_from(b, (size_t)N * C * 4) : NULL, dev_from(w, C * 4),
               dev_from(bias, C * 4), N, C};
    float *got = dec_run_twice(m, (size_t)N * C, NULL, dec_ln_fn, &l);
    cmp(m, got, want, (size_t)N * C, TOL);
    gpu_free((void *)l.a), gpu_free((void *)l.b), gpu_free((void *)l.w), gpu_free((void *)l.bias);
    free(a), free(b), free(w), free(bias), free(want), free(got);
    no_error(m);
}

typedef struct DecCopy {
    const float *src;
    size_t dstride, dpitch, sstride, spitch;
    int nb, rows, width;
} DecCopy;
static void dec_copy_fn(float *out, void *c)
{
    DecCopy *k = c;
    gpu_dec_copy_rows(out, k->dstride, k->dpitch, k->src, k->sstride, k->spitch, k->nb, k->rows, k->width);
}

static void dec_copy_case(int spitch0)
{
    char m[160];
    snprintf(m, sizeof m, "dec_copy_rows%s", spitch0 ? " (one row repeated)" : "");
    int nb = 3, rows = 4, width = 7;
    size_t dpitch = 9, dstride = 40, spitch = spitch0 ? 0 : 11, sstride = 50, nd = nb * dstride, ns = nb * sstride;
    float *src = rnd(ns, 1), *init = rnd(nd, 1), *want = copy_of(init, nd);
    for (int g = 0; g < nb; g++)
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < width; c++) want[g * dstride + r * dpitch + c] = src[g * sstride + r * spitch + c];
    DecCopy k = {dev_from(src, ns * 4), dstride, dpitch, sstride, spitch, nb, rows, width};
    float *got = dec_run_twice(m, nd, init, dec_copy_fn, &k);
    cmp(m, got, want, nd, 0);
    gpu_free((void *)k.src), free(src), free(init), free(want), free(got);
    no_error(m);
}

typedef struct DecAtt {
    float *scratch;
    const float *q, *k, *v, *ers;
    int ldq, cap, B, NH, C, n, p0, Tk, keys, s;
} DecAtt;
static void dec_att_fn(float *out, void *c)
{
    DecAtt *a = c;
    gpu_dec_attend(out, a->scratch, a->q, a->ldq, a->k, a->v, a->cap, a->ers, a->B, a->NH, a->C, a->n, a->p0, a->Tk,
                   a->keys, a->s);
}

// keys: 0 causal (with the relative term), 1 resample_pre, 2 resample_post; n query rows at positions p0..
static void dec_attend_case(int keys, int n, int p0)
{
    char m[160];
    int B = 2, NH = 2, C = 16, HS = C / NH, s = 2, ldq = 3 * C;
    int last = p0 + n - 1, Tk = keys == 0 ? last + 1 : keys == 1 ? s * last + s : last / s + 1, cap = Tk + 3;
    snprintf(m, sizeof m, "dec_attend keys %d n %d p0 %d (%d keys)", keys, n, p0, Tk);
    float *q = rnd((size_t)B * n * ldq, 1), *k = rnd((size_t)B * cap * C, 1), *v = rnd((size_t)B * cap * C, 1);
    float *ers = keys == 0 ? rnd((size_t)Tk * HS, 1) : NULL, *want = malloc((size_t)B * n * C * 4);
    double scale = 1 / sqrt((double)HS), *S = malloc((size_t)Tk * sizeof *S);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int i = 0; i < n; i++) {
                int a = p0 + i, nkeys = keys == 0 ? a + 1 : keys == 1 ? s * a + s : a / s + 1;
                const float *qi = q + ((size_t)b * n + i) * ldq + h * HS;
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j < nkeys; j++) {
                    double d = 0;
                    for (int c = 0; c < HS; c++) d += (double)qi[c] * k[((size_t)b * cap + j) * C + h * HS + c];
                    if (ers)
                        for (int c = 0; c < HS; c++) d += (double)qi[c] * ers[(size_t)(Tk - 1 - a + j) * HS + c];
                    S[j] = scale * d, mx = fmax(mx, S[j]);
                }
                for (int j = 0; j < nkeys; j++) sum += S[j] = exp(S[j] - mx);
                for (int c = 0; c < HS; c++) {
                    double o = 0;
                    for (int j = 0; j < nkeys; j++) o += S[j] / sum * v[((size_t)b * cap + j) * C + h * HS + c];
                    want[((size_t)b * n + i) * C + h * HS + c] = (float)o;
                }
            }
    DecAtt a = {dev_new(gpu_dec_attend_scratch(B, NH, C, n, Tk) * 4), dev_from(q, (size_t)B * n * ldq * 4),
                dev_from(k, (size_t)B * cap * C * 4), dev_from(v, (size_t)B * cap * C * 4),
                ers ? dev_from(ers, (size_t)Tk * HS * 4) : NULL, ldq, cap, B, NH, C, n, p0, Tk, keys, s};
    float *got = dec_run_twice(m, (size_t)B * n * C, NULL, dec_att_fn, &a);
    cmp(m, got, want, (size_t)B * n * C, TOL);
    gpu_free(a.scratch), gpu_free((void *)a.q), gpu_free((void *)a.k), gpu_free((void *)a.v), gpu_free((void *)a.ers);
    free(q), free(k), free(v), free(ers), free(want), free(got), free(S);
    no_error(m);
}

// the attention and its output projection (gpu_dec_attend_proj) against gpu_dec_attend then gpu_dec_linear[16]:
// the same bytes (past 8 rows, the two ops themselves)
static void dec_attend_proj_case(int keys, int B, int n, int p0, int w16)
{
    char m[160];
    int NH = 2, C = 16, HS = C / NH, s = 2, ldq = 3 * C, N = B * n;
    int last = p0 + n - 1, Tk = keys == 0 ? last + 1 : keys == 1 ? s * last + s : last / s + 1, cap = Tk + 3;
    snprintf(m, sizeof m, "dec_attend_proj%s keys %d B %d n %d p0 %d (%d keys)", w16 ? " bf16" : "", keys, B, n, p0,
             Tk);
    float *q = rnd((size_t)N * ldq, 1), *k = rnd((size_t)B * cap * C, 1), *v = rnd((size_t)B * cap * C, 1);
    float *ers = keys == 0 ? rnd((size_t)Tk * HS, 1) : NULL, *w = rnd((size_t)C * C, 1), *bias = rnd(C, 1);
    float *d_q = dev_from(q, (size_t)N * ldq * 4), *d_k = dev_from(k, (size_t)B * cap * C * 4);
    float *d_v = dev_from(v, (size_t)B * cap * C * 4), *d_ers = ers ? dev_from(ers, (size_t)Tk * HS * 4) : NULL;
    float *d_w = dev_from(w, (size_t)C * C * 4), *d_bias = dev_from(bias, C * 4);
    float *d_scr = dev_new(gpu_dec_attend_scratch(B, NH, C, n, Tk) * 4), *d_att = dev_new((size_t)N * C * 4);
    float *d_ref = dev_new((size_t)N * C * 4), *d_out = dev_new((size_t)N * C * 4), *d_att2 = dev_new((size_t)N * C * 4);
    uint16_t *d_w16 = w16 ? dev_new((size_t)C * C * 2) : NULL;
    if (w16) gpu_to_bf16(d_w16, d_w, (size_t)C * C);
    gpu_dec_attend(d_att, d_scr, d_q, ldq, d_k, d_v, cap, d_ers, B, NH, C, n, p0, Tk, keys, s);
    gpu_dec_linear(d_ref, d_att, d_w, d_w16, d_bias, N, C, C, 0);
    gpu_dec_attend_proj(d_out, d_att2, d_scr, d_q, ldq, d_k, d_v, cap, d_ers, B, NH, C, n, p0, Tk, keys, s, d_w, d_w16,
                        d_bias);
    float *got = host_from(d_out, (size_t)N * C * 4), *want = host_from(d_ref, (size_t)N * C * 4);
    cmp_bytes(m, got, want, (size_t)N * C * 4);
    gpu_free(d_q), gpu_free(d_k), gpu_free(d_v), gpu_free(d_ers), gpu_free(d_w), gpu_free(d_bias), gpu_free(d_scr);
    gpu_free(d_att), gpu_free(d_ref), gpu_free(d_out), gpu_free(d_att2), gpu_free(d_w16);
    free(q), free(k), free(v), free(ers), free(w), free(bias), free(got), free(want);
    no_error(m);
}

typedef struct DecGather {
    const float *h, *up;
    int B, cap, cap_s, C, s, i0, n, p0, mean, lin;
} DecGather;
static void dec_down_fn(float *out, void *c)
{
    DecGather *g = c;
    gpu_dec_down(out, g->h, g->B, g->cap, g->C, g->s, g->i0, g->n, g->mean);
}
static void dec_up_fn(float *out, void *c)
{
    DecGather *g = c;
    gpu_dec_up_add(out, g->up, g->h, g->B, g->n, g->p0, g->cap, g->cap_s, g->C, g->s, g->lin);
}

// down (the mean, or the s rows side by side) and up + h, as decode.c's loops: the same bytes
static void dec_gather_case(int s, int lin)
{
    char m[160];
    int B = 2, C = 5, cap = 13, cap_s = (cap + s - 1) / s, i0 = 1, n_s = 3, p0 = 4, n = 6, w = lin ? s * C : C;
    float *h = rnd((size_t)B * cap * C, 1), *up = rnd((size_t)B * cap_s * w, 1);
    size_t nd = (size_t)B * n_s * (lin ? s * C : C);
    float *down = calloc(nd, 4), *upadd = malloc((size_t)B * n * C * 4);
    for (int b = 0; b < B; b++)
        for (int g = 0; g < n_s; g++)
            for (int c = 0; c < C; c++) {
                float z = 0.0f;
                for (int k = 0; k < s; k++) {
                    int t = s * (i0 + g) + k - (s - 1);
                    float x = t >= 0 ? h[((size_t)b * cap + t) * C + c] : 0.0f;
                    if (lin) down[(((size_t)b * n_s + g) * s + k) * C + c] = x;
                    else if (t >= 0) z += x;
                }
                if (!lin) down[((size_t)b * n_s + g) * C + c] = z / (float)s;
            }
    for (int b = 0; b < B; b++)
        for (int i = 0; i < n; i++) {
            int t = p0 + i, g = t / s;
            const float *ur = lin ? up + (((size_t)b * cap_s + g) * s + (t - s * g)) * C : up + ((size_t)b * cap_s + g) * C;
            for (int c = 0; c < C; c++) upadd[((size_t)b * n + i) * C + c] = ur[c] + h[((size_t)b * cap + t) * C + c];
        }
    DecGather g = {dev_from(h, (size_t)B * cap * C * 4), dev_from(up, (size_t)B * cap_s * w * 4), B, cap, cap_s, C, s,
                   i0, n_s, p0, !lin, lin};
    snprintf(m, sizeof m, "dec_down s %d %s", s, lin ? "rows" : "mean");
    float *got = dec_run_twice(m, nd, NULL, dec_down_fn, &g);
    cmp(m, got, down, nd, 0);
    free(got);
    g.n = n;
    snprintf(m, sizeof m, "dec_up_add s %d %s", s, lin ? "linear" : "naive");
    got = dec_run_twice(m, (size_t)B * n * C, NULL, dec_up_fn, &g);
    cmp(m, got, upadd, (size_t)B * n * C, 0);
    gpu_free((void *)g.h), gpu_free((void *)g.up);
    free(h), free(up), free(down), free(upadd), free(got);
    no_error(m);
}

// the input projection with the keys and values to the caches: out the bytes of gpu_dec_linear's (or, past its
// rows, the cuBLAS path's), and cache row (g, p0 + i) the product's k and v columns of row (g, i), the rest untouched
static void dec_qkv_case(int nb, int n_new, int C, int w16)
{
    char m[160];
    snprintf(m, sizeof m, "dec_linear_qkv%s %d items x %d rows, C %d", w16 ? "16" : "", nb, n_new, C);
    int N = nb * n_new, cap = n_new + 5, p0 = 3;
    size_t no = (size_t)N * 3 * C, nc = (size_t)nb * cap * C;
    float *x = rnd((size_t)N * C, 1), *w = rnd((size_t)3 * C * C, 1), *b = rnd(3 * (size_t)C, 1);
    float *k0 = rnd(nc, 1), *v0 = rnd(nc, 1);
    float *d_x = dev_from(x, (size_t)N * C * 4), *d_w = dev_from(w, (size_t)3 * C * C * 4), *d_b = dev_from(b, 3 * (size_t)C * 4);
    float *d_out = dev_new(no * 4), *d_ref = dev_new(no * 4), *d_k = dev_from(k0, nc * 4), *d_v = dev_from(v0, nc * 4);
    uint16_t *d_w16 = NULL;
    if (w16) { // against gpu_dec_linear on them (itself checked against the reference above)
        d_w16 = dev_new((size_t)3 * C * C * 2);
        gpu_to_bf16(d_w16, d_w, (size_t)3 * C * C);
    }
    gpu_dec_linear(d_ref, d_x, d_w, d_w16, d_b, N, C, 3 * C, 0);
    gpu_dec_linear_qkv(d_out, d_x, d_w, d_w16, d_b, N, C, d_k + (size_t)p0 * C, d_v + (size_t)p0 * C,
                       (size_t)cap * C, n_new);
    float *out = host_from(d_out, no * 4), *ref = host_from(d_ref, no * 4), *k = host_from(d_k, nc * 4);
    float *v = host_from(d_v, nc * 4), *wk = copy_of(k0, nc), *wv = copy_of(v0, nc);
    for (int g = 0; g < nb; g++)
        for (int i = 0; i < n_new; i++)
            for (int c = 0; c < C; c++) {
                size_t row = ((size_t)g * n_new + i) * 3 * C, at = ((size_t)g * cap + p0 + i) * C + c;
                wk[at] = ref[row + C + c], wv[at] = ref[row + 2 * C + c];
            }
    snprintf(m + strlen(m), sizeof m - strlen(m), ": out"), cmp_bytes(m, out, ref, no * 4);
    snprintf(m + strlen(m), sizeof m - strlen(m), ", k cache"), cmp_bytes(m, k, wk, nc * 4);
    snprintf(m + strlen(m), sizeof m - strlen(m), ", v cache"), cmp_bytes(m, v, wv, nc * 4);
    gpu_free(d_x), gpu_free(d_w), gpu_free(d_b), gpu_free(d_out), gpu_free(d_ref), gpu_free(d_k), gpu_free(d_v);
    gpu_free(d_w16);
    free(x), free(w), free(b), free(k0), free(v0), free(out), free(ref), free(k), free(v), free(wk), free(wv);
    no_error(m);
}

// LayerNorm then the product in one kernel (gpu_dec_ln_linear[16]) against gpu_dec_add_layernorm and
// gpu_dec_linear[16]: the same bytes for the product and for the LayerNorm it leaves in ln_out (past 8 rows, or
// rows too wide for its shared memory, it is those two ops). two: a second LayerNorm after the first
// (gpu_dec_ln2_linear, relu 0) against gpu_dec_add_layernorm twice, ln2_out checked too
static void dec_ln_linear_case(int N, int C, int OC, int with_b, int relu, int w16, int two)
{
    char m[160];
    snprintf(m, sizeof m, "dec_ln%s_linear%s N %d C %d OC %d%s%s", two ? "2" : "", w16 ? "16" : "", N, C, OC,
             with_b ? " a+b" : "", relu ? " relu" : "");
    size_t nx = (size_t)N * C, no = (size_t)N * OC, nw = (size_t)OC * C;
    float *a = rnd(nx, 1), *b = rnd(nx, 1), *lw = rnd(2 * (size_t)C, 1), *lb = rnd(2 * (size_t)C, 1);
    float *w = rnd(nw, 1), *bias = rnd(OC, 1);
    float *d_a = dev_from(a, nx * 4), *d_b = with_b ? dev_from(b, nx * 4) : NULL, *d_lw = dev_from(lw, 2 * C * 4);
    float *d_lb = dev_from(lb, 2 * C * 4), *d_w = dev_from(w, nw * 4), *d_bias = dev_from(bias, OC * 4);
    float *d_out = dev_new(no * 4), *d_ln = dev_new(2 * nx * 4), *d_ref = dev_new(no * 4);
    float *d_refln = dev_new(2 * nx * 4); // the first LayerNorm's rows, then the second's
    uint16_t *d_w16 = w16 ? dev_new(nw * 2) : NULL;
    if (w16) gpu_to_bf16(d_w16, d_w, nw);
    gpu_dec_add_layernorm(d_refln, d_a, d_b, d_lw, d_lb, N, C);
    if (two) gpu_dec_add_layernorm(d_refln + nx, d_refln, NULL, d_lw + C, d_lb + C, N, C);
    gpu_dec_linear(d_ref, d_refln + (two ? nx : 0), d_w, d_w16, d_bias, N, C, OC, relu);
    if (two)
        gpu_dec_ln2_linear(d_out, d_ln, d_ln + nx, d_a, d_b, d_lw, d_lb, d_lw + C, d_lb + C, d_w, d_w16, d_bias, N, C,
                           OC);
    else
        gpu_dec_ln_linear(d_out, d_ln, d_a, d_b, d_lw, d_lb, d_w, d_w16, d_bias, N, C, OC, relu);
    size_t nln = (two ? 2 : 1) * nx;
    float *out = host_from(d_out, no * 4), *ref = host_from(d_ref, no * 4);
    float *ln = host_from(d_ln, nln * 4), *refln = host_from(d_refln, nln * 4);
    char c[200];
    snprintf(c, sizeof c, "%s: out", m), cmp_bytes(c, out, ref, no * 4);
    snprintf(c, sizeof c, "%s: ln_out", m), cmp_bytes(c, ln, refln, nx * 4);
    if (two) snprintf(c, sizeof c, "%s: ln2_out", m), cmp_bytes(c, ln + nx, refln + nx, nx * 4);
    gpu_free(d_a), gpu_free(d_b), gpu_free(d_lw), gpu_free(d_lb), gpu_free(d_w), gpu_free(d_bias), gpu_free(d_out);
    gpu_free(d_ln), gpu_free(d_ref), gpu_free(d_refln), gpu_free(d_w16);
    free(a), free(b), free(lw), free(lb), free(w), free(bias), free(out), free(ref), free(ln), free(refln);
    no_error(m);
}

// before a self-attention layer's input projection (gpu_dec_ln_linear_qkv[16]): nb items of n_new rows, keys and
// values to caches of cap rows at row p0; against gpu_dec_add_layernorm and gpu_dec_linear_qkv[16], the same bytes in
// out, ln_out and both caches. emb: the pass's embedding instead of the LayerNorm (gpu_dec_emb_linear_qkv[16] against
// gpu_encoder_forward and gpu_dec_linear_qkv[16]; ln_out is the embedding x), tokens of a vocabulary of 11
static void dec_ln_qkv_case(int nb, int n_new, int C, int w16, int emb)
{
    char m[160];
    snprintf(m, sizeof m, "dec_%s_linear_qkv%s %d items x %d rows, C %d", emb ? "emb" : "ln", w16 ? "16" : "", nb,
             n_new, C);
    int N = nb * n_new, cap = n_new + 4, p0 = 2;
    size_t nx = (size_t)N * C, no = (size_t)N * 3 * C, nw = (size_t)3 * C * C, nc = (size_t)nb * cap * C;
    float *a = rnd(nx, 1), *b = rnd(nx, 1), *lw = rnd(C, 1), *lb = rnd(C, 1), *w = rnd(nw, 1), *bias = rnd(3 * (size_t)C, 1);
    float *k0 = rnd(nc, 1);
    float *d_a = dev_from(a, nx * 4), *d_b = dev_from(b, nx * 4), *d_lw = dev_from(lw, C * 4), *d_lb = dev_from(lb, C * 4);
    float *d_w = dev_from(w, nw * 4), *d_bias = dev_from(bias, 3 * (size_t)C * 4);
    float *d_out[2], *d_ln[2], *d_k[2], *d_v[2];
    for (int r = 0; r < 2; r++)
        d_out[r] = dev_new(no * 4), d_ln[r] = dev_new(nx * 4), d_k[r] = dev_from(k0, nc * 4), d_v[r] = dev_from(k0, nc * 4);
    uint16_t *d_w16 = w16 ? dev_new(nw * 2) : NULL;
    if (w16) gpu_to_bf16(d_w16, d_w, nw);
    size_t at = (size_t)p0 * C, cs = (size_t)cap * C;
    enum { V = 11 };
    int32_t tok[64];
    for (int i = 0; i < N && i < 64; i++) tok[i] = (i * 7 + 3) % V;
    float *wte = rnd((size_t)V * C, 1), *pe = rnd((size_t)(n_new + p0) * C, 1);
    int32_t *d_tok = dev_from(tok, sizeof tok);
    float *d_wte = dev_from(wte, (size_t)V * C * 4), *d_pe = dev_from(pe, (size_t)(n_new + p0) * C * 4);
    if (emb) { // run 0: the two ops; the pass starts at position p0
        gpu_encoder_forward(d_ln[0], d_tok, d_wte, d_pe + at, nb, n_new, C);
        gpu_dec_linear_qkv(d_out[0], d_ln[0], d_w, d_w16, d_bias, N, C, d_k[0] + at, d_v[0] + at, cs, n_new);
        gpu_dec_emb_linear_qkv(d_out[1], d_ln[1], d_tok, d_wte, d_pe + at, nb, n_new, C, d_w, d_w16, d_bias,
                               d_k[1] + at, d_v[1] + at, cs);
    } else {
        gpu_dec_add_layernorm(d_ln[0], d_a, d_b, d_lw, d_lb, N, C); // run 0: the two ops
        gpu_dec_linear_qkv(d_out[0], d_ln[0], d_w, d_w16, d_bias, N, C, d_k[0] + at, d_v[0] + at, cs, n_new);
        gpu_dec_ln_linear_qkv(d_out[1], d_ln[1], d_a, d_b, d_lw, d_lb, d_w, d_w16, d_bias, N, C, d_k[1] + at,
                              d_v[1] + at, cs, n_new);
    }
    const char *what[4] = {"out", emb ? "x" : "ln_out", "k cache", "v cache"};
    float **bufs[4] = {d_out, d_ln, d_k, d_v};
    size_t sizes[4] = {no, nx, nc, nc};
    for (int i = 0; i < 4; i++) {
        float *x0 = host_from(bufs[i][0], sizes[i] * 4), *x1 = host_from(bufs[i][1], sizes[i] * 4);
        char c[200];
        snprintf(c, sizeof c, "%s: %s", m, what[i]), cmp_bytes(c, x1, x0, sizes[i] * 4);
        free(x0), free(x1);
    }
    for (int r = 0; r < 2; r++) gpu_free(d_out[r]), gpu_free(d_ln[r]), gpu_free(d_k[r]), gpu_free(d_v[r]);
    gpu_free(d_a), gpu_free(d_b), gpu_free(d_lw), gpu_free(d_lb), gpu_free(d_w), gpu_free(d_bias), gpu_free(d_w16);
    gpu_free(d_tok), gpu_free(d_wte), gpu_free(d_pe);
    free(a), free(b), free(lw), free(lb), free(w), free(bias), free(k0), free(wte), free(pe);
    no_error(m);
}

// the sampler's draw on the GPU against sampler.c's sample_pick on the same masked logits and the same u: the same
// token for every item, every option and every draw index; -2 for a row with a NaN or inf, -1 for a row masked out.
// spread 0: logits rounded to integers (ties); scale: their range (100: most probabilities underflow to 0); B 1
// passes no mask (all allowed)
static void dec_draw_case(int B, int V, double temperature, int top_k, double top_p, int spread, float scale)
{
    char m[200];
    int W = (V + 31) / 32, draws = 24, bad = 0, n_masked = 0, n_special = 0;
    snprintf(m, sizeof m, "dec_draw B %d V %d temperature %g top_k %d top_p %g%s scale %g", B, V, temperature, top_k,
             top_p, spread ? "" : " (ties)", (double)scale);
    float *logits = rnd((size_t)B * V, scale), *row = malloc((size_t)V * 4), *scratch = malloc((size_t)V * 8);
    int *order = malloc((size_t)V * sizeof *order);
    uint32_t *mask = calloc((size_t)B * W, 4);
    uint64_t *keys = malloc((size_t)B * 8);
    int32_t got[64];
    for (int b = 0; b < B; b++) {
        keys[b] = splitmix64(99) ^ (uint64_t)(b + 3) * 0x9e3779b97f4a7c15ULL;
        for (int v = 0; v < V; v++) {
            float *x = &logits[(size_t)b * V + v];
            if (!spread) *x = roundf(*x); // many equal logits: ties broken by id on both sides
            if (B == 1 || b % 3 != 1 || v % 5 == 0 || v == V - 1) mask[(size_t)b * W + v / 32] |= 1u << (v % 32);
        }
    }
    if (B > 2) { // row 2: nothing allowed; row B-1: a NaN (or +inf) in a masked-out place still counts
        memset(mask + (size_t)2 * W, 0, (size_t)W * 4);
        logits[(size_t)(B - 1) * V + V / 2] = B % 2 ? NAN : INFINITY;
        mask[(size_t)(B - 1) * W + (V / 2) / 32] &= ~(1u << ((V / 2) % 32));
    }
    float *d_logits = dev_from(logits, (size_t)B * V * 4);
    uint32_t *d_mask = B > 1 ? dev_from(mask, (size_t)B * W * 4) : NULL;
    double opts[3] = {temperature, top_k, top_p}, *d_opts = dev_from(opts, sizeof opts);
    uint64_t *d_keys = dev_from(keys, (size_t)B * 8), *d_index = dev_new(8);
    int32_t *d_tok = dev_new((size_t)B * 4);
    SampleOpts o = {.temperature = temperature, .top_k = top_k, .top_p = top_p};
    for (uint64_t t = 0; t < (uint64_t)draws; t++) {
        gpu_upload(d_index, &t, 8);
        gpu_dec_draw(d_tok, d_logits, B, V, d_mask, d_keys, d_index, d_opts);
        gpu_download(got, d_tok, (size_t)B * 4);
        for (int b = 0; b < B; b++) {
            const float *l = logits + (size_t)b * V;
            int want = 0;
            for (int v = 0; v < V; v++)
                if (!isfinite(l[v])) want = -2;
            if (want == 0) {
                for (int v = 0; v < V; v++)
                    row[v] = mask[(size_t)b * W + v / 32] >> (v % 32) & 1u ? l[v] : -INFINITY;
                want = sample_pick(row, V, &o, sample_uniform(keys[b], t), scratch, order);
            }
            n_masked += want == -1, n_special += want == -2;
            if (got[b] != want && !bad++)
                CHECK(0, "%s: draw %d, item %d: token %d, sample_pick %d", m, (int)t, b, got[b], want);
        }
    }
    CHECK(bad == 0, "%s: %d of %d draws differ", m, bad, B * draws);
    CHECK(B <= 2 || (n_masked == draws && n_special == draws), "%s: the masked-out and NaN rows were not tested", m);
    gpu_free(d_logits), gpu_free(d_mask), gpu_free(d_keys), gpu_free(d_index), gpu_free(d_tok), gpu_free(d_opts);
    free(logits), free(row), free(scratch), free(order), free(mask), free(keys);
    no_error(m);
}

// One launch per step (gpu_dec_mega): a chain of n decoder ops, each reading the one before's output (a product,
// then LayerNorm(previous + the one before), by turns; at n/2 a ReLU, an op that is not recorded, so the recorded
// ops before it must be launched first), then the sampler's draw over a vocabulary of GPU_DRAW_MAX_V (the most
// shared memory any op brings), recorded and run as one launch (or several: 128 ops at most each) must give the
// bytes of the same ops launched one by one. n 4, 40, 100 and 300: the program's three sizes, and recordings that
// fill up (150 ops, then 150). On the emulator the launch's three blocks each run until they must wait for the
// others, so an op started before the ones before have ended (a missing or early wait) reads its input unwritten.
static void dec_mega_case(int n)
{
    enum { N = 2, C = 256, V = GPU_DRAW_MAX_V };
    char m[64];
    snprintf(m, sizeof m, "one launch, %d ops", n);
    size_t nx = (size_t)N * C, nw = (size_t)C * C, all = nx * (size_t)(n + 1), nl = (size_t)N * V;
    float *x = rnd(nx, 1), *w = rnd(nw, 0.1f), *bias = rnd(C, 1), *lw = rnd(C, 1), *lb = rnd(C, 1), *lg = rnd(nl, 3);
    float *d_w = dev_from(w, nw * 4), *d_b = dev_from(bias, C * 4), *d_lw = dev_from(lw, C * 4);
    float *d_lb = dev_from(lb, C * 4), *d_lg = dev_from(lg, nl * 4), *d_buf[2];
    double opts[3] = {1.0, 0, 0.9};
    uint64_t keys[N] = {21, 22}, index = 7;
    void *d_opts = dev_from(opts, sizeof opts), *d_keys = dev_from(keys, sizeof keys), *d_index = dev_from(&index, 8);
    int32_t *d_tok[2];
    for (int mode = 0; mode < 2; mode++) {
        d_buf[mode] = dev_new(all * 4), d_tok[mode] = dev_new(N * sizeof(int32_t));
        if (d_buf[mode]) gpu_upload(d_buf[mode], x, nx * 4);
        gpu_dec_mega(mode);
        for (int i = 0; i < n; i++) {
            float *in = d_buf[mode] + (size_t)i * nx, *out = in + nx;
            if (i == n / 2) gpu_relu_forward(out, in, nx);
            else if (i % 2 == 0) gpu_dec_linear(out, in, d_w, NULL, d_b, N, C, C, 0);
            else gpu_dec_add_layernorm(out, in, in - nx, d_lw, d_lb, N, C);
        }
        gpu_dec_draw(d_tok[mode], d_lg, N, V, NULL, d_keys, d_index, d_opts);
        gpu_dec_mega(0);
    }
    float *a = host_from(d_buf[0], all * 4), *b = host_from(d_buf[1], all * 4);
    int32_t *ta = host_from(d_tok[0], N * sizeof(int32_t)), *tb = host_from(d_tok[1], N * sizeof(int32_t));
    cmp_bytes(m, b, a, all * 4);
    int ok = ta && tb && memcmp(ta, tb, N * sizeof(int32_t)) == 0;
    for (int i = 0; ta && i < N; i++) ok &= ta[i] >= 0 && ta[i] < V;
    CHECK(ok, "%s: the draw after the chain: tokens %d %d, one by one %d %d", m, tb ? tb[0] : -9, tb ? tb[1] : -9,
          ta ? ta[0] : -9, ta ? ta[1] : -9);
    int finite = 1;
    for (size_t i = 0; a && i < all; i++) finite &= isfinite(a[i]) != 0;
    CHECK(finite, "%s: the chain's values are not all finite", m);
    free(a), free(b), free(ta), free(tb), free(x), free(w), free(bias), free(lw), free(lb), free(lg);
    gpu_free(d_w), gpu_free(d_b), gpu_free(d_lw), gpu_free(d_lb), gpu_free(d_lg), gpu_free(d_buf[0]);
    gpu_free(d_buf[1]), gpu_free(d_tok[0]), gpu_free(d_tok[1]), gpu_free(d_opts), gpu_free(d_keys), gpu_free(d_index);
    no_error(m);
}

// Dependent launches (gpu_dec_pdl): every decoder kernel reads its inputs only after its wait. Each op's input comes
// from gpu_dec_slow_copy, which lets the next kernel start at once and copies about 200 us later over NaNs: a kernel
// that read it before its wait would read NaNs. Each op's outputs must be the bytes of the same op launched plainly
// (mode 0). On the emulator launches are plain either way, so this holds there trivially; on a GPU it catches a
// missing or misplaced wait in the matrix-vector, LayerNorm (+ product, two LayerNorms + product), attention and
// draw kernels.
static void dec_pdl_case(void)
{
    enum { N = 2, C = 256, OC = 300, NH = 4, CAP = 150, V = 348 };
    const char *m = "dependent launches";
    size_t nx = (size_t)N * C, nw = (size_t)OC * C, nkv = (size_t)N * CAP * C, nl = (size_t)N * V;
    float *x = rnd(nx, 1), *w = rnd(nw, 1), *bias = rnd(OC, 1), *lw = rnd(2 * C, 1), *lb = rnd(2 * C, 1);
    float *kv = rnd(2 * nkv, 1), *ers = rnd((size_t)CAP * (C / NH), 1), *nan = nans(nl);
    float *lg = rnd(nl, 3);
    float *d_x = dev_from(x, nx * 4), *d_w = dev_from(w, nw * 4), *d_b = dev_from(bias, OC * 4);
    float *d_lw = dev_from(lw, 2 * C * 4), *d_lb = dev_from(lb, 2 * C * 4), *d_kv = dev_from(kv, 2 * nkv * 4);
    float *d_ers = dev_from(ers, (size_t)CAP * (C / NH) * 4), *d_in = dev_new(nl * 4);
    float *d_logits = dev_from(lg, nl * 4); // the draw's logits
    float *d_scr = dev_new(gpu_dec_attend_scratch(N, NH, C, 1, CAP) * 4);
    enum { OUTS = 6 };
    size_t sizes[OUTS] = {(size_t)N * OC, (size_t)N * OC, nx, nx, nx, (size_t)N * OC};
    float *d_out[2][OUTS], *d_ln[2];
    int32_t *d_tok[2];
    double opts[3] = {1.0, 0, 0.9};
    uint64_t keys[N] = {11, 12}, index = 5;
    void *d_opts = dev_from(opts, sizeof opts), *d_keys = dev_from(keys, sizeof keys), *d_index = dev_from(&index, 8);
    for (int mode = 0; mode < 2; mode++) {
        for (int o = 0; o < OUTS; o++) d_out[mode][o] = dev_new(sizes[o] * 4);
        d_ln[mode] = dev_new(2 * nx * 4), d_tok[mode] = dev_new(N * sizeof(int32_t));
        gpu_dec_pdl(mode);
        // each op after its slow input (an upload before it: the slow copy itself launches plainly)
#define SLOW(n) gpu_upload(d_in, nan, (n) * 4), gpu_dec_slow_copy(d_in, d_x, (n), 200000)
        SLOW(nx), gpu_dec_linear(d_out[mode][0], d_in, d_w, NULL, d_b, N, C, OC, 1);
        SLOW(nx), gpu_dec_ln_linear(d_out[mode][1], d_ln[mode], d_in, d_x, d_lw, d_lb, d_w, NULL, d_b, N, C, OC, 0);
        SLOW(nx), gpu_dec_add_layernorm(d_out[mode][2], d_in, NULL, d_lw, d_lb, N, C);
        SLOW(nx), gpu_dec_attend(d_out[mode][3], d_scr, d_in, C, d_kv, d_kv + nkv, CAP, d_ers, N, NH, C, 1, CAP - 1,
                                 CAP, 0, 1);
        SLOW(nx), gpu_dec_copy_rows(d_out[mode][4], C, 0, d_in, C, 0, N, 1, C);
        SLOW(nx), gpu_dec_ln2_linear(d_out[mode][5], d_ln[mode], d_ln[mode] + nx, d_in, NULL, d_lw, d_lb, d_lw + C,
                                     d_lb + C, d_w, NULL, d_b, N, C, OC);
        gpu_upload(d_in, nan, nl * 4), gpu_dec_slow_copy(d_in, d_logits, nl, 200000);
        gpu_dec_draw(d_tok[mode], d_in, N, V, NULL, d_keys, d_index, d_opts);
#undef SLOW
        gpu_dec_pdl(0);
    }
    const char *what[OUTS] = {"linear", "ln_linear", "add_layernorm", "attend", "copy_rows", "ln2_linear"};
    for (int o = 0; o < OUTS; o++) {
        float *a = host_from(d_out[0][o], sizes[o] * 4), *b = host_from(d_out[1][o], sizes[o] * 4);
        char c[160];
        snprintf(c, sizeof c, "%s: %s", m, what[o]);
        cmp_bytes(c, b, a, sizes[o] * 4);
        int finite = 1;
        for (size_t i = 0; i < sizes[o]; i++) finite &= isfinite(a[i]) != 0;
        CHECK(finite, "%s: %s of plain launches is not finite", m, what[o]);
        free(a), free(b);
    }
    int32_t *t0 = host_from(d_tok[0], N * 4), *t1 = host_from(d_tok[1], N * 4);
    CHECK(memcmp(t0, t1, N * 4) == 0 && t0[0] >= 0, "%s: draw: tokens %d %d against %d %d", m, t1[0], t1[1], t0[0],
          t0[1]);
    free(t0), free(t1);
    for (int mode = 0; mode < 2; mode++) {
        for (int o = 0; o < OUTS; o++) gpu_free(d_out[mode][o]);
        gpu_free(d_ln[mode]), gpu_free(d_tok[mode]);
    }
    gpu_free(d_x), gpu_free(d_w), gpu_free(d_b), gpu_free(d_lw), gpu_free(d_lb), gpu_free(d_kv), gpu_free(d_ers);
    gpu_free(d_in), gpu_free(d_logits), gpu_free(d_scr), gpu_free(d_opts), gpu_free(d_keys), gpu_free(d_index);
    free(x), free(w), free(bias), free(lw), free(lb), free(kv), free(ers), free(nan), free(lg);
    no_error(m);
}

static void test_decoding(void)
{
    static const struct {
        double temperature, top_p;
        int top_k;
    } draw_opts[] = {{0, 1, 0}, {1, 1, 0}, {0.7, 0.9, 0}, {1.3, 1, 5}, {1, 0.5, 20}, {1, 1, 1}, {2, 0.95, 0}};
    for (size_t i = 0; i < sizeof draw_opts / sizeof *draw_opts; i++)
        for (int spread = 0; spread < 2; spread++) {
            dec_draw_case(7, 348, draw_opts[i].temperature, draw_opts[i].top_k, draw_opts[i].top_p, spread, 4.0f);
            dec_draw_case(1, 37, draw_opts[i].temperature, draw_opts[i].top_k, draw_opts[i].top_p, spread, 4.0f);
        }
    dec_draw_case(5, 348, 0.5, 0, 0.99, 1, 100.0f), dec_draw_case(4, 348, 1, 3, 1, 0, 100.0f); // underflow to 0
    dec_draw_case(2, GPU_DRAW_MAX_V, 1, 0, 0.9, 1, 4.0f); // the largest vocabulary it takes

    for (int w16 = 0; w16 < 2; w16++) {
        dec_ln_qkv_case(1, 1, 16, w16, 0), dec_ln_qkv_case(3, 2, 256, w16, 0), dec_ln_qkv_case(2, 7, 32, w16, 0); // 14: two ops
        dec_ln_qkv_case(1, 1, 256, w16, 1), dec_ln_qkv_case(4, 2, 48, w16, 1), dec_ln_qkv_case(3, 5, 32, w16, 1); // 15: two ops
        dec_ln_linear_case(1, 16, 5, 1, 0, w16, 0), dec_ln_linear_case(3, 256, 1024, 1, 1, w16, 0);
        dec_ln_linear_case(8, 1024, 40, 0, 1, w16, 0), dec_ln_linear_case(2, 768, 19, 1, 0, w16, 0);
        dec_ln_linear_case(12, 64, 33, 1, 1, w16, 0); // 12 rows: the two ops
        dec_ln_linear_case(8, 2048, 9, 1, 0, w16, 0); // 64 KiB of rows: the two ops
        dec_ln_linear_case(2, 4100, 9, 1, 1, w16, 0); // slices of 513 inputs: past a lane's 8 fetched weights
        // two LayerNorms then the product (a block's end, then the logits): one kernel, or the three ops
        dec_ln_linear_case(1, 256, 348, 1, 0, w16, 1), dec_ln_linear_case(8, 768, 37, 1, 0, w16, 1);
        dec_ln_linear_case(3, 16, 5, 0, 0, w16, 1), dec_ln_linear_case(9, 64, 21, 1, 0, w16, 1);
    }
    for (int w16 = 0; w16 < 2; w16++) { // float32 weights, then bfloat16 (past 8 rows: the kernel 8 rows at a time)
        dec_qkv_case(1, 1, 16, w16), dec_qkv_case(3, 2, 256, w16), dec_qkv_case(2, 7, 32, w16); // 14 rows: cuBLAS
        for (int bias = 0; bias < 2; bias++) {
            dec_linear_case(1, 16, 5, bias, 0, w16), dec_linear_case(3, 1024, 348, bias, 1, w16);
            dec_linear_case(8, 256, 33, bias, bias, w16), dec_linear_case(20, 64, 40, bias, 1, w16); // 20: cuBLAS
            dec_linear_case(2, 768, 19, bias, 0, w16); // 4 warps per column
            dec_linear_case(3, 4100, 7, bias, 1, w16); // slices of 513 inputs: past a lane's 8 fetched weights
        }
    }
    dec_layernorm_case(5, 16, 0), dec_layernorm_case(3, 256, 1);
    dec_layernorm_case(2, 1000, 1), dec_layernorm_case(4, 768, 0); // wider than a warp's registers keep (LN_REG)
    dec_copy_case(0), dec_copy_case(1);
    dec_attend_case(0, 1, 0), dec_attend_case(0, 1, 149), dec_attend_case(0, 5, 60); // 150 keys: 3 chunks
    dec_attend_case(1, 1, 70), dec_attend_case(2, 3, 130);
    for (int w16 = 0; w16 < 2; w16++) { // 149 and 131 keys: three chunks; 3 x 3 = 9 rows: the two ops
        dec_attend_proj_case(0, 1, 1, 149, w16), dec_attend_proj_case(0, 2, 3, 40, w16);
        dec_attend_proj_case(1, 2, 1, 70, w16), dec_attend_proj_case(2, 3, 3, 130, w16);
    }
    dec_gather_case(2, 0), dec_gather_case(3, 1);
    dec_pdl_case();
    dec_mega_case(4), dec_mega_case(40), dec_mega_case(100), dec_mega_case(300);
}

// gpu_mma.cuh's fragments on one warp: d = a b + c through the instruction, its shuffle reference, and the
// instruction on fragments ldmatrix loads (plain and transposed), against the CPU's product of the bf16-rounded a, b. Small integers first (every product and sum exact in
// float32, so the same bytes: a fragment's element in the wrong place cannot hide), then random values (1e-5 of the scale)
static void test_mma(void)
{
    float a[16 * 16], b[16 * 8], c[16 * 8], want[16 * 8];
    float *d_a = dev_new(sizeof a), *d_b = dev_new(sizeof b), *d_c = dev_new(sizeof c), *d_d = dev_new(sizeof c);
    for (int trial = 0; trial < 2; trial++) {
        for (int i = 0; i < 16 * 16; i++) a[i] = trial ? check_bf16_round(frand()) : (float)((i * 7) % 23 - 11);
        for (int i = 0; i < 16 * 8; i++) b[i] = trial ? check_bf16_round(frand()) : (float)((i * 5) % 19 - 9);
        for (int i = 0; i < 16 * 8; i++) c[i] = trial ? frand() : (float)(i % 13 - 6);
        for (int r = 0; r < 16; r++)
            for (int n = 0; n < 8; n++) {
                double acc = c[r * 8 + n];
                for (int k = 0; k < 16; k++) acc += (double)a[r * 16 + k] * b[k * 8 + n];
                want[r * 8 + n] = (float)acc;
            }
        reset(d_a, a, sizeof a), reset(d_b, b, sizeof b), reset(d_c, c, sizeof c);
        for (int mode = 0; mode < 4; mode++) {
            static const char *const how[4] = {"instruction", "shuffle reference", "instruction, ldmatrix",
                                               "instruction, ldmatrix of transposed tiles"};
            gpu_zero(d_d, sizeof c);
            gpu_mma_check(d_d, d_a, d_b, d_c, mode);
            float *got = host_from(d_d, sizeof c);
            char m[160];
            snprintf(m, sizeof m, "mma m16n8k16 bf16 (%s), %s", how[mode], trial ? "random values" : "integers: exact");
            cmp(m, got, want, 16 * 8, trial ? 1e-5 : 0);
            free(got);
        }
    }
    gpu_free(d_a), gpu_free(d_b), gpu_free(d_c), gpu_free(d_d);
    no_error("mma");
}

static void test_device(void)
{
    size_t fr = 0, tot = 0;
    CHECK(gpu_mem_info(&fr, &tot) == 0 && fr > 0 && tot >= fr, "gpu_mem_info: free %zu total %zu (%s)", fr, tot,
          gpu_error());
    CHECK(gpu_name()[0] != 0, "gpu_name is empty");
    char err[256];
    CHECK(gpu_init(0, err) == GPU_OK, "gpu_init twice: %s", err);
    // an allocation past the device's memory: NULL and one line naming it; later ops are unaffected
    void *p = gpu_alloc((size_t)1 << 50);
    CHECK(p == NULL && strstr(gpu_error(), "gpu_alloc") != NULL, "gpu_alloc of 1 PiB: %p, error '%s'", p, gpu_error());
    gpu_free(p);
    gpu_clear_error();
    // what gpu_alloc holds, now and at its peak (bench/model's "alloc MiB")
    size_t now0, peak0, now1, peak1, now2, peak2;
    gpu_mem_allocated(&now0, &peak0);
    void *blk = gpu_alloc((size_t)3 << 20);
    gpu_mem_allocated(&now1, &peak1);
    gpu_free(blk);
    gpu_mem_allocated(&now2, &peak2);
    gpu_mem_peak_reset();
    size_t now3, peak3;
    gpu_mem_allocated(&now3, &peak3);
    CHECK(blk && now1 == now0 + ((size_t)3 << 20) && peak1 >= now1 && now2 == now0 && peak2 == peak1 && peak3 == now0,
          "gpu_mem_allocated: %zu, %zu after 3 MiB (peak %zu), %zu after its free (peak %zu), peak %zu after a reset",
          now0, now1, peak1, now2, peak2, peak3);
    float one = 1.0f, back = 0.0f, *d = gpu_alloc(sizeof one);
    gpu_upload(d, &one, sizeof one);
    gpu_download(&back, d, sizeof back);
    CHECK(back == 1.0f && gpu_error()[0] == 0, "a copy after a failed allocation: %g (%s)", back, gpu_error());
    gpu_free(d);
    no_error("device");
}

// HMT_GPU_PROFILE=events (a GPU started again with it): rows per op with the GPU's own time, more launches than
// one batch of events (4,096) counted once each, the products apart from the kernels; then the GPU without it again
static void test_profile(void)
{
    if (check_skipping) {
        for (int k = 0; k < 6; k++) CHECK(0, "HMT_GPU_PROFILE=events");
        return;
    }
    char err[256], line[256];
    gpu_shutdown();
    setenv("HMT_GPU_PROFILE", "events", 1);
    GpuStatus st = gpu_init(0, err);
    unsetenv("HMT_GPU_PROFILE");
    CHECK(st == GPU_OK, "gpu_init with HMT_GPU_PROFILE=events: %s", err);
    if (st != GPU_OK) return;
    gpu_profile_reset();
    enum { RELU = 5000, LIN = 3 };
    size_t n = 4096;
    float *a = rnd(n, 1), *d_a = dev_from(a, n * 4), *d_o = dev_new(n * 4), *d_w = dev_from(a, 64 * 64 * 4);
    for (int i = 0; i < RELU; i++) gpu_relu_forward(d_o, d_a, n);
    for (int i = 0; i < LIN; i++) gpu_linear_forward(d_o, d_a, d_w, d_a, 64, 64, 64); // the bias in the product
    setenv("HMT_GPU_LT", "0", 1), gpu_set_precision(GPU_FP32);
    for (int i = 0; i < LIN; i++) gpu_linear_forward(d_o, d_a, d_w, d_a, 64, 64, 64); // a kernel, then the product
    unsetenv("HMT_GPU_LT"), gpu_set_precision(GPU_FP32);
    FILE *f = tmpfile();
    gpu_profile_print(f);
    rewind(f);
    int header = 0;
    long relu_n = -1, lin_k = -1, lin_g = -1;
    double relu_ms = -1, total = -1;
    while (fgets(line, sizeof line, f)) {
        char op[64], kind[16];
        double ms;
        long calls;
        if (strstr(line, "GPU ms")) header = 1;
        if (sscanf(line, "total %lf (the GPU", &total) == 1) continue;
        if (sscanf(line, "%63s %15s %lf %ld", op, kind, &ms, &calls) != 4) continue;
        if (strcmp(op, "gpu_relu_forward") == 0) relu_n = calls, relu_ms = ms;
        if (strcmp(op, "gpu_linear_forward") == 0) *(strcmp(kind, "gemm") == 0 ? &lin_g : &lin_k) = calls;
    }
    fclose(f);
    CHECK(header, "HMT_GPU_PROFILE=events: the table's time column is \"GPU ms\"");
    CHECK(relu_n == RELU && relu_ms > 0 && total >= relu_ms, "HMT_GPU_PROFILE=events: relu %ld calls (want %d), %g "
          "ms of %g in all", relu_n, RELU, relu_ms, total);
    CHECK(lin_k == LIN && lin_g == 2 * LIN, "HMT_GPU_PROFILE=events: linear %ld kernel and %ld gemm calls (want %d "
          "and %d)", lin_k, lin_g, LIN, 2 * LIN);
    gpu_free(d_a), gpu_free(d_o), gpu_free(d_w), free(a);
    no_error("profile");
    gpu_shutdown();
    CHECK(gpu_init(0, err) == GPU_OK, "gpu_init again without the profile: %s", err);
}

// Arguments: section names (see below) to run only those, e.g. `test_cuda_ops attention` under a sanitizer.
int main(int argc, char **argv)
{
    char err[256];
    GpuStatus st = gpu_init(0, err);
    const char *req = getenv("HMT_REQUIRE_GPU");
    int require = req && *req && strcmp(req, "0") != 0;
    if (st == GPU_OK) {
        printf("gpu: %s, driver CUDA %s, runtime %s\n", gpu_name(), gpu_driver_version(), gpu_runtime_version());
    } else if ((st == GPU_NO_DEVICE || st == GPU_NO_DRIVER) && !require) {
        printf("test_cuda_ops: %s: every GPU check skipped\n", err);
        check_skipping = 1; // the ops below do nothing without a GPU; their checks are counted, not run
    } else {
        CHECK(0, "gpu_init: %s", err);
        return check_done();
    }
    setvbuf(stdout, NULL, _IOLBF, 0); // a run killed by a timeout still shows the section it was in
    static const struct {
        const char *name;
        void (*fn)(void);
    } sections[] = {{"device", test_device},       {"elementwise and dropout", test_elementwise},
                    {"embedding", test_encoder},   {"resampling", test_resampling},
                    {"linear", test_linear},       {"layernorm", test_layernorm},
                    {"mma", test_mma},             {"attention", test_attention},
                    {"losses", test_losses},
                    {"optimizer", test_optim},     {"decoding", test_decoding},
                    {"bf16 activations", test_act16}, {"profile", test_profile}};
    enum { n_sections = sizeof sections / sizeof *sections };
    const char *names[n_sections];
    for (int i = 0; i < n_sections; i++) names[i] = sections[i].name;
    check_select(argc, argv, names, n_sections);
    for (int i = 0; i < n_sections; i++) {
        if (!check_want(sections[i].name)) continue;
        if (!check_skipping) printf("-- %s\n", sections[i].name);
        sections[i].fn();
    }
    gpu_shutdown();
    return check_done();
}
