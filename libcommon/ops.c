// ops: forward and backward of every tensor op (see ops.h for shapes and the accumulate-into-gradients rule).
// Kernels follow the PyTorch definitions they cite; matmuls are cblas_sgemm (OpenBLAS).
// Threads: OpenBLAS runs single-threaded and every op splits its work over the threads of pool.c itself (rows of a
// matmul, (batch, head) pairs of attention, ranges of elements, columns of a reduction). Each output element is
// computed by one task with the same arithmetic in the same order, so results do not depend on the thread count.
#include "ops.h"

#include <assert.h>
#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "pool.h"

// ---- threads ----------------------------------------------------------------------------------

static pthread_once_t ops_once = PTHREAD_ONCE_INIT;

// The first op takes over OpenBLAS's thread count (OPENBLAS_NUM_THREADS, else its default) for the pool.
static void ops_init_once(void)
{
    int n = openblas_get_num_threads();
    openblas_set_num_threads(1);
    pool_set_threads(n);
}
static void ops_init(void) { pthread_once(&ops_once, ops_init_once); }

void ops_set_threads(int n)
{
    ops_init();
    pool_set_threads(n);
}

int ops_threads(void)
{
    ops_init();
    return pool_threads();
}

// A loop over [0, n) in chunks of at least min_chunk elements (multiples of 64), run by the pool.
typedef void (*RangeFn)(void *ctx, size_t lo, size_t hi);
typedef struct ParFor {
    RangeFn fn;
    void *ctx;
    size_t n, chunk;
} ParFor;

static void par_for_task(void *c, int t, int w)
{
    (void)w;
    const ParFor *p = c;
    size_t lo = (size_t)t * p->chunk, hi = lo + p->chunk < p->n ? lo + p->chunk : p->n;
    p->fn(p->ctx, lo, hi);
}

static void par_for(size_t n, size_t min_chunk, RangeFn fn, void *ctx)
{
    ops_init();
    int th = pool_threads();
    if (th == 1 || n <= min_chunk) {
        if (n) fn(ctx, 0, n);
        return;
    }
    size_t chunk = (n + 4 * (size_t)th - 1) / (4 * (size_t)th); // a few chunks per thread: the machine is shared
    if (chunk < min_chunk) chunk = min_chunk;
    chunk = (chunk + 63) & ~(size_t)63;
    ParFor p = {fn, ctx, n, chunk};
    pool_run(par_for_task, &p, (int)((n + chunk - 1) / chunk));
}

// A loop over the columns [0, C) of a reduction down rows: one wide block per thread, so each streams whole rows.
static void par_cols(size_t C, RangeFn fn, void *ctx)
{
    ops_init();
    size_t th = (size_t)pool_threads(), chunk = ((C + th - 1) / th + 15) & ~(size_t)15;
    par_for(C, chunk < 64 ? 64 : chunk, fn, ctx);
}

// ---- 4-wide vectors (GCC/clang vector extensions): the -O2 build vectorizes none of the loops below itself,
// and their branches on random data (ReLU, dropout masks) mispredicted. Each lane does the scalar arithmetic.

typedef float VF __attribute__((vector_size(16)));
typedef int32_t VI __attribute__((vector_size(16)));
typedef uint8_t VB __attribute__((vector_size(4)));
#define VW 4 // SSE2 width: the baseline of x86-64 (wider types change the ABI of the helpers)

static inline VF vld(const float *p)
{
    VF v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline void vst(float *p, VF v) { memcpy(p, &v, sizeof v); }
// v where keep is all-ones, +0 where it is 0
static inline VF vsel(VI keep, VF v) { return (VF)((VI)v & keep); }
// all-ones where the byte is nonzero
static inline VI vmask(const uint8_t *p)
{
    VB b;
    memcpy(&b, p, sizeof b);
    return __builtin_convertvector(b, VI) != 0;
}

// ---- matmul: row-major cblas_sgemm, split into row (or column) blocks over the pool ----------------

typedef struct Gemm {
    int ta, tb, M, N, K, lda, ldb, ldc, split_m, chunk;
    float alpha, beta;
    const float *A, *B;
    float *C;
} Gemm;

static void sgemm1(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
                   float beta, float *C, int ldc)
{
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A,
                lda, B, ldb, beta, C, ldc);
}

static void gemm_task(void *c, int t, int w)
{
    (void)w;
    const Gemm *g = c;
    int lo = t * g->chunk, n = (g->split_m ? g->M : g->N) - lo;
    if (n > g->chunk) n = g->chunk;
    if (n <= 0) return;
    if (g->split_m) // rows lo.. of op(A) and C
        sgemm1(g->ta, g->tb, n, g->N, g->K, g->alpha, g->A + (g->ta ? (size_t)lo : (size_t)lo * g->lda), g->lda, g->B,
               g->ldb, g->beta, g->C + (size_t)lo * g->ldc, g->ldc);
    else // columns lo.. of op(B) and C
        sgemm1(g->ta, g->tb, g->M, n, g->K, g->alpha, g->A, g->lda, g->B + (g->tb ? (size_t)lo * g->ldb : (size_t)lo),
               g->ldb, g->beta, g->C + lo, g->ldc);
}

// C (M,N) = alpha op(A) (M,K) op(B) (K,N) + beta C, in blocks of rows (or columns) that the pool's threads take.
// The blocks depend on the shape alone, never on the thread count: OpenBLAS picks its kernel (and so the rounding)
// by the shape of each call. Each block packs its own copy of the operand the blocks share, so the split goes
// across the larger of M and N, and into only two blocks when K is long (that copy is then the costly part).
static void gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
                 float beta, float *C, int ldc)
{
    ops_init();
    Gemm g = {ta, tb, M, N, K, lda, ldb, ldc, M >= N, 0, alpha, beta, A, B, C};
    int dim = g.split_m ? M : N, blocks = K >= 1024 ? 2 : dim / 128;
    blocks = blocks < 2 ? 2 : blocks > 8 ? 8 : blocks;
    if ((double)M * N * K < 2e6 || dim < 64) {
        sgemm1(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    g.chunk = ((dim + blocks - 1) / blocks + 15) & ~15;
    pool_run(gemm_task, &g, (dim + g.chunk - 1) / g.chunk);
}

// ---- embedding + positions --------------------------------------------------------------------

void encoder_forward(float *out, const int32_t *tok, const float *wte, const float *pe, int B, int T, int C)
{
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            float *o = out + ((size_t)b * T + t) * C;
            const float *e = wte + (size_t)tok[b * T + t] * C, *p = pe + (size_t)t * C;
            for (int c = 0; c < C; c++) o[c] = e[c] + p[c];
        }
}

// backward of: out[b,t] = wte[tok[b,t]] + pe[t]
void encoder_backward(float *dwte, const float *dout, const int32_t *tok, int B, int T, int C)
{
    for (int i = 0; i < B * T; i++) {
        if (tok[i] == 0) continue; // padding_idx: the PAD row stays as it is
        float *d = dwte + (size_t)tok[i] * C;
        const float *g = dout + (size_t)i * C;
        for (int c = 0; c < C; c++) d[c] += g[c];
    }
}

void positional_table(float *pe, int T, int C)
{
    // "Attention is all you need" §3.5, as the reference computes it: div = exp(2i * -ln(10000) / C)
    for (int p = 0; p < T; p++)
        for (int i = 0; 2 * i < C; i++) {
            float div = expf((float)(2 * i) * (-logf(10000.0f) / (float)C));
            pe[(size_t)p * C + 2 * i] = sinf((float)p * div);
            if (2 * i + 1 < C) pe[(size_t)p * C + 2 * i + 1] = cosf((float)p * div);
        }
}

// ---- linear -----------------------------------------------------------------------------------

typedef struct RowsCtx {
    float *out;
    const float *in, *b;
    int N, C;
} RowsCtx;

static void bias_rows(void *c, size_t lo, size_t hi)
{
    const RowsCtx *x = c;
    for (size_t n = lo; n < hi; n++) memcpy(x->out + n * x->C, x->b, (size_t)x->C * sizeof *x->out);
}

void linear_forward(float *out, const float *inp, const float *w, const float *b, int N, int IC, int OC)
{
    // out (N,OC) = inp (N,IC) @ w^T (IC,OC) [+ b]
    if (b) {
        RowsCtx x = {.out = out, .b = b, .C = OC};
        par_for((size_t)N, 256, bias_rows, &x);
    }
    gemm(0, 1, N, OC, IC, 1.0f, inp, IC, w, IC, b ? 1.0f : 0.0f, out, OC);
}

// db[o] += sum_n dout[n, o] for the columns o in [lo, hi), rows in order
static void colsum_cols(void *c, size_t lo, size_t hi)
{
    const RowsCtx *x = c;
    float *restrict out = x->out;
    for (int n = 0; n < x->N; n++) { // rows streamed in order, the task's columns of out stay in L1
        const float *restrict g = x->in + (size_t)n * x->C;
        size_t o = lo;
        for (; o + 2 * VW <= hi; o += 2 * VW) {
            vst(out + o, vld(out + o) + vld(g + o));
            vst(out + o + VW, vld(out + o + VW) + vld(g + o + VW));
        }
        for (; o < hi; o++) out[o] += g[o];
    }
}

// backward of: out = inp @ w^T + b
void linear_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w, int N,
                     int IC, int OC)
{
    if (dinp) gemm(0, 0, N, IC, OC, 1.0f, dout, OC, w, IC, 1.0f, dinp, IC);
    gemm(1, 0, OC, IC, N, 1.0f, dout, OC, inp, IC, 1.0f, dw, IC);
    if (db) {
        RowsCtx x = {.out = db, .in = dout, .N = N, .C = OC};
        par_cols((size_t)OC, colsum_cols, &x);
    }
}

void matmul_forward_naive(float *out, const float *inp, const float *w, const float *b, int N, int IC, int OC)
{
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) {
            double s = b ? b[o] : 0.0;
            for (int i = 0; i < IC; i++) s += (double)inp[(size_t)n * IC + i] * w[(size_t)o * IC + i];
            out[(size_t)n * OC + o] = (float)s;
        }
}

// ---- LayerNorm (PyTorch nn.LayerNorm, biased variance, eps inside the square root) -----------------

typedef struct LnCtx {
    float *out, *mean, *rstd, *dw, *db;
    const float *inp, *dout, *w, *b, *cmean, *crstd;
    int N, C;
} LnCtx;

static void ln_fwd_rows(void *c, size_t lo, size_t hi)
{
    const LnCtx *a = c;
    int C = a->C;
    for (size_t n = lo; n < hi; n++) {
        const float *x = a->inp + n * C;
        float m = 0.0f, v = 0.0f;
        for (int c = 0; c < C; c++) m += x[c];
        m /= (float)C;
        for (int c = 0; c < C; c++) v += (x[c] - m) * (x[c] - m);
        v /= (float)C;
        float r = 1.0f / sqrtf(v + 1e-5f);
        float *o = a->out + n * C;
        for (int c = 0; c < C; c++) o[c] = (x[c] - m) * r * a->w[c] + a->b[c];
        a->mean[n] = m;
        a->rstd[n] = r;
    }
}

void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w, const float *b, int N,
                       int C)
{
    LnCtx a = {.out = out, .mean = mean, .rstd = rstd, .inp = inp, .w = w, .b = b, .N = N, .C = C};
    par_for((size_t)N, 16, ln_fwd_rows, &a);
}

// dx = r * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)) with dxhat = g * w, for rows [lo, hi)
static void ln_bwd_rows(void *c, size_t lo, size_t hi)
{
    const LnCtx *a = c;
    int C = a->C;
    for (size_t n = lo; n < hi; n++) {
        const float *x = a->inp + n * C, *g = a->dout + n * C, *w = a->w;
        float m = a->cmean[n], r = a->crstd[n];
        float sum_d = 0.0f, sum_dx = 0.0f;
        for (int c = 0; c < C; c++) {
            float xhat = (x[c] - m) * r, dxhat = g[c] * w[c];
            sum_d += dxhat;
            sum_dx += dxhat * xhat;
        }
        sum_d /= (float)C;
        sum_dx /= (float)C;
        float *dx = a->out + n * C;
        for (int c = 0; c < C; c++) {
            float xhat = (x[c] - m) * r;
            dx[c] += r * (g[c] * w[c] - sum_d - xhat * sum_dx);
        }
    }
}

// db[c] += sum_n g[n,c]; dw[c] += sum_n g[n,c] * xhat[n,c], for the columns [lo, hi), rows in order
static void ln_bwd_cols(void *c, size_t lo, size_t hi)
{
    const LnCtx *a = c;
    float *restrict db = a->db, *restrict dw = a->dw;
    for (int n = 0; n < a->N; n++) { // rows streamed in order, the task's columns of dw, db stay in L1
        const float *restrict x = a->inp + (size_t)n * a->C, *restrict g = a->dout + (size_t)n * a->C;
        float m = a->cmean[n], r = a->crstd[n];
        size_t c = lo;
        for (; c + VW <= hi; c += VW) {
            VF gv = vld(g + c);
            vst(db + c, vld(db + c) + gv);
            vst(dw + c, vld(dw + c) + gv * ((vld(x + c) - m) * r));
        }
        for (; c < hi; c++) {
            db[c] += g[c];
            dw[c] += g[c] * ((x[c] - m) * r);
        }
    }
}

// backward of: out = (x - mean) * rstd * w + b
void layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                        const float *mean, const float *rstd, int N, int C)
{
    LnCtx a = {.out = dinp, .dw = dw, .db = db, .inp = inp, .dout = dout, .w = w, .cmean = mean, .crstd = rstd,
               .N = N, .C = C};
    par_for((size_t)N, 16, ln_bwd_rows, &a);
    par_cols((size_t)C, ln_bwd_cols, &a);
}

// ---- elementwise ------------------------------------------------------------------------------

typedef struct EwCtx {
    float *out;
    uint8_t *mask;
    const float *a, *b;
    const uint8_t *cmask;
    float scale;
    uint32_t thr;
    uint64_t key;
} EwCtx;

#define EW_CHUNK 16384 // elements per task at least: below this the loop runs inline

static void relu_range(void *c, size_t lo, size_t hi)
{
    const EwCtx *x = c;
    size_t i = lo;
    for (; i + VW <= hi; i += VW) {
        VF v = vld(x->a + i);
        vst(x->out + i, vsel(v > 0.0f, v));
    }
    for (; i < hi; i++) x->out[i] = x->a[i] > 0.0f ? x->a[i] : 0.0f;
}

void relu_forward(float *out, const float *inp, size_t n)
{
    EwCtx x = {.out = out, .a = inp};
    par_for(n, EW_CHUNK, relu_range, &x);
}

static void relu_bwd_range(void *c, size_t lo, size_t hi)
{
    const EwCtx *x = c;
    size_t i = lo;
    for (; i + VW <= hi; i += VW) vst(x->out + i, vld(x->out + i) + vsel(vld(x->b + i) > 0.0f, vld(x->a + i)));
    for (; i < hi; i++)
        if (x->b[i] > 0.0f) x->out[i] += x->a[i];
}

void relu_backward(float *dinp, const float *dout, const float *out, size_t n)
{
    EwCtx x = {.out = dinp, .a = dout, .b = out};
    par_for(n, EW_CHUNK, relu_bwd_range, &x);
}

static void add_range(void *c, size_t lo, size_t hi)
{
    const EwCtx *x = c;
    size_t i = lo;
    for (; i + VW <= hi; i += VW) vst(x->out + i, vld(x->a + i) + vld(x->b + i));
    for (; i < hi; i++) x->out[i] = x->a[i] + x->b[i];
}

void add_forward(float *out, const float *a, const float *b, size_t n)
{
    EwCtx x = {.out = out, .a = a, .b = b};
    par_for(n, EW_CHUNK, add_range, &x);
}

static void acc_range(void *c, size_t lo, size_t hi)
{
    const EwCtx *x = c;
    size_t i = lo;
    for (; i + VW <= hi; i += VW) vst(x->out + i, vld(x->out + i) + vld(x->a + i));
    for (; i < hi; i++) x->out[i] += x->a[i];
}

void accumulate(float *dst, const float *src, size_t n)
{
    EwCtx x = {.out = dst, .a = src};
    par_for(n, EW_CHUNK, acc_range, &x);
}

// Counter-based dropout stream: element i is kept iff the 32-bit half (i & 1) of splitmix64's output number i/2,
// for the stream keyed by seed, is >= p * 2^32 (Steele et al. 2014, "Fast splittable pseudorandom number
// generators"). One 64-bit mix per two elements; a pure function of (seed, i), so any split of the range gives
// the same mask.
#define GOLDEN 0x9e3779b97f4a7c15ULL
static inline uint64_t mix64(uint64_t x)
{
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static uint32_t drop_threshold(float p)
{
    double t = (double)p * 4294967296.0;
    return t >= 4294967295.0 ? 0xffffffffu : (uint32_t)t;
}

// one element of dropout (of relu(x) when relu): x * scale where kept (and x > 0), else +0
static inline float drop1(float x, int keep, float scale, int relu)
{
    return keep && (!relu || x > 0.0f) ? x * scale : 0.0f;
}

// out[k] = keep ? inp[k] * scale : 0 and mask[k] = keep for the stream elements i0 .. i0+n-1; with relu, of
// relu(inp[k]) (the mask is dropout's alone)
static void dropout_span_relu(float *out, uint8_t *mask, const float *inp, float scale, uint32_t thr, uint64_t key,
                              size_t i0, size_t n, int relu)
{
    size_t k = 0;
    if (i0 & 1 && n) { // an odd start: the high half of pair i0/2
        uint32_t u = (uint32_t)(mix64(key + (i0 >> 1) * GOLDEN) >> 32);
        mask[0] = u >= thr;
        out[0] = drop1(inp[0], mask[0], scale, relu);
        k = 1;
    }
    for (; k + 16 <= n; k += 16) { // masks first (8 independent mixes), then a branch-free select
        uint64_t j = (i0 + k) >> 1;
        for (int u = 0; u < 8; u++) {
            uint64_t h = mix64(key + (j + u) * GOLDEN);
            mask[k + 2 * u] = (uint32_t)h >= thr, mask[k + 2 * u + 1] = (uint32_t)(h >> 32) >= thr;
        }
        for (int v = 0; v < 16; v += VW) {
            VF x = vld(inp + k + v);
            VI keep = vmask(mask + k + v);
            if (relu) keep &= x > 0.0f;
            vst(out + k + v, vsel(keep, x * scale));
        }
    }
    for (; k + 1 < n; k += 2) {
        uint64_t h = mix64(key + ((i0 + k) >> 1) * GOLDEN);
        mask[k] = (uint32_t)h >= thr, mask[k + 1] = (uint32_t)(h >> 32) >= thr;
        out[k] = drop1(inp[k], mask[k], scale, relu);
        out[k + 1] = drop1(inp[k + 1], mask[k + 1], scale, relu);
    }
    if (k < n) {
        uint32_t u = (uint32_t)mix64(key + ((i0 + k) >> 1) * GOLDEN);
        mask[k] = u >= thr;
        out[k] = drop1(inp[k], mask[k], scale, relu);
    }
}

static void dropout_span(float *out, uint8_t *mask, const float *inp, float scale, uint32_t thr, uint64_t key,
                         size_t i0, size_t n)
{
    dropout_span_relu(out, mask, inp, scale, thr, key, i0, n, 0);
}

static uint64_t dropout_key(uint64_t seed) { return mix64(seed + GOLDEN) + GOLDEN; }

static void drop_range(void *c, size_t lo, size_t hi)
{
    const EwCtx *x = c;
    dropout_span(x->out + lo, x->mask + lo, x->a + lo, x->scale, x->thr, x->key, lo, hi - lo);
}

static void copy_range(void *c, size_t lo, size_t hi)
{
    const EwCtx *x = c;
    memcpy(x->out + lo, x->a + lo, (hi - lo) * sizeof *x->out);
    memset(x->mask + lo, 1, hi - lo);
}

void dropout_forward(float *out, uint8_t *mask, const float *inp, float p, uint64_t seed, size_t n)
{
    EwCtx x = {.out = out, .mask = mask, .a = inp, .scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f,
               .thr = drop_threshold(p), .key = dropout_key(seed)};
    par_for(n, EW_CHUNK, p <= 0.0f ? copy_range : drop_range, &x);
}

static void relu_drop_range(void *c, size_t lo, size_t hi)
{
    const EwCtx *x = c;
    if (x->mask) {
        dropout_span_relu(x->out + lo, x->mask + lo, x->a + lo, x->scale, x->thr, x->key, lo, hi - lo, 1);
        return;
    }
    uint8_t buf[1024]; // the mask is not kept: drawn into a buffer a piece at a time
    for (size_t at = lo; at < hi; at += sizeof buf) {
        size_t n = hi - at < sizeof buf ? hi - at : sizeof buf;
        dropout_span_relu(x->out + at, buf, x->a + at, x->scale, x->thr, x->key, at, n, 1);
    }
}

static void relu_copy_range(void *c, size_t lo, size_t hi)
{
    relu_range(c, lo, hi);
    const EwCtx *x = c;
    if (x->mask) memset(x->mask + lo, 1, hi - lo);
}

void relu_dropout_forward(float *out, uint8_t *mask, const float *inp, float p, uint64_t seed, size_t n)
{
    EwCtx x = {.out = out, .mask = mask, .a = inp, .scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f,
               .thr = drop_threshold(p), .key = dropout_key(seed)};
    par_for(n, EW_CHUNK, p <= 0.0f ? relu_copy_range : relu_drop_range, &x);
}

// dinp += dout * scale where the forward's output is > 0 (kept and inp > 0)
static void relu_drop_bwd_range(void *c, size_t lo, size_t hi)
{
    const EwCtx *x = c;
    size_t i = lo;
    for (; i + VW <= hi; i += VW) {
        VI keep = vld(x->b + i) > 0.0f;
        vst(x->out + i, vld(x->out + i) + vsel(keep, vld(x->a + i) * x->scale));
    }
    for (; i < hi; i++)
        if (x->b[i] > 0.0f) x->out[i] += x->a[i] * x->scale;
}

void relu_dropout_backward(float *dinp, const float *dout, const float *out, float p, size_t n)
{
    EwCtx x = {.out = dinp, .a = dout, .b = out,
               .scale = p <= 0.0f ? 1.0f : (p < 1.0f ? 1.0f / (1.0f - p) : 0.0f)};
    par_for(n, EW_CHUNK, relu_drop_bwd_range, &x);
}

static void drop_bwd_range(void *c, size_t lo, size_t hi)
{
    const EwCtx *x = c;
    size_t i = lo;
    for (; i + VW <= hi; i += VW)
        vst(x->out + i, vld(x->out + i) + vsel(vmask(x->cmask + i), vld(x->a + i) * x->scale));
    for (; i < hi; i++)
        if (x->cmask[i]) x->out[i] += x->a[i] * x->scale;
}

void dropout_backward(float *dinp, const float *dout, const uint8_t *mask, float p, size_t n)
{
    EwCtx x = {.out = dinp, .a = dout, .cmask = mask,
               .scale = p <= 0.0f ? 1.0f : (p < 1.0f ? 1.0f / (1.0f - p) : 0.0f)};
    par_for(n, EW_CHUNK, drop_bwd_range, &x);
}

// ---- the model's x = LayerNorm(x + dropout(y)), as one op (backend.h): the three ops above in order ---------

// Without a mask kept, the residual LayerNorm draws dropout_forward's bits a piece at a time (dropout_span, whose
// stream for p 0 keeps every element at scale 1: copy_range's bytes) into a buffer of RLN_PIECE
#define RLN_PIECE 1024

// res = x + dropout(y) through res itself (dropout into it, then the add in place), then LayerNorm
void residual_layernorm_forward(float *out, float *mean, float *rstd, float *res, uint8_t *mask, const float *x,
                                const float *y, float p, uint64_t seed, const float *w, const float *b, int N, int C)
{
    size_t n = (size_t)N * C;
    if (mask) dropout_forward(res, mask, y, p, seed, n);
    else {
        uint8_t bits[RLN_PIECE];
        float scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
        uint32_t thr = drop_threshold(p);
        uint64_t key = dropout_key(seed);
        for (size_t at = 0; at < n; at += RLN_PIECE)
            dropout_span(res + at, bits, y + at, scale, thr, key, at, n - at < RLN_PIECE ? n - at : RLN_PIECE);
    }
    add_forward(res, x, res, n);
    layernorm_forward(out, mean, rstd, res, w, b, N, C);
}
void residual_layernorm_backward(float *dx, float *dy, float *dw, float *db, float *scratch, const float *dout,
                                 const float *res, const uint8_t *mask, float p, uint64_t seed, const float *w,
                                 const float *mean, const float *rstd, int N, int C)
{
    size_t n = (size_t)N * C;
    memset(scratch, 0, n * sizeof *scratch);
    layernorm_backward(scratch, dw, db, dout, res, w, mean, rstd, N, C);
    accumulate(dx, scratch, n);
    if (mask) {
        dropout_backward(dy, scratch, mask, p, n);
        return;
    }
    uint8_t bits[RLN_PIECE];
    float drawn[RLN_PIECE]; // dropout_span's output, not used: only its bits are
    float scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
    uint32_t thr = drop_threshold(p);
    uint64_t key = dropout_key(seed);
    for (size_t at = 0; at < n; at += RLN_PIECE) {
        size_t k = n - at < RLN_PIECE ? n - at : RLN_PIECE;
        dropout_span(drawn, bits, scratch + at, scale, thr, key, at, k);
        dropout_backward(dy + at, scratch + at, bits, p, k);
    }
}

// ---- attention (Music Transformer relative attention, Huang et al. 2018; PyTorch MHA conventions) ----------
// One task per (batch item, head); inside it, query rows go in tiles of ATT_ROWS, and a tile's matmuls stop at the
// last key any of its rows may see (half the work of causal attention is masked out). The Er term of a tile needs
// only the Er rows its queries reach: for rows i0..i1-1 of a causal T-row sequence, the last i1 rows of Er.

#define ATT_ROWS 128

static int att_rows(const AttnDims *d) { return d->Tq < ATT_ROWS ? d->Tq : ATT_ROWS; }

// per worker: pd (R,Tk), dp (R,Tk), qe (R,Tq)
static size_t att_worker_floats(const AttnDims *d) { return (size_t)att_rows(d) * (2 * (size_t)d->Tk + d->Tq); }

// per (b, h) task, the backward's private dEr (Tq,HS), summed in task order afterwards
static size_t att_partial_floats(const AttnDims *d) { return (size_t)d->B * d->Tq * d->C; }

size_t attention_scratch_floats(const AttnDims *d)
{
    return att_partial_floats(d) + (size_t)ops_threads() * att_worker_floats(d);
}

typedef struct AttCtx {
    const AttnDims *d;
    float *out, *probs, *scratch, *dq, *dk, *dv, *dEr;
    uint8_t *mask;
    const float *q, *k, *v, *ers, *dout, *cprobs;
    const uint8_t *cmask;
    float *partial; // NULL: dEr accumulates directly (one worker)
    size_t per_worker;
} AttCtx;

// the widest key range of rows i0 .. i0+rows-1
static int att_keys(const AttnDims *d, int i0, int rows)
{
    int nk = 0;
    for (int i = i0; i < i0 + rows; i++) nk = d->n_keys[i] > nk ? d->n_keys[i] : nk;
    return nk;
}

static void att_fwd_task(void *c, int task, int w)
{
    const AttCtx *a = c;
    const AttnDims *d = a->d;
    int Tq = d->Tq, Tk = d->Tk, NH = d->NH, HS = d->C / NH, R = att_rows(d), b = task / NH, h = task % NH;
    float scale = 1.0f / sqrtf((float)HS), keep = d->dropout < 1.0f ? 1.0f / (1.0f - d->dropout) : 0.0f;
    float *pd = a->scratch + (size_t)w * a->per_worker, *qe = pd + 2 * (size_t)R * Tk;
    const float *qh = a->q + (size_t)b * Tq * d->ldq + h * HS;
    const float *kh = a->k + (size_t)b * Tk * d->ldk + h * HS;
    const float *vh = a->v + (size_t)b * Tk * d->ldv + h * HS;
    size_t base = ((size_t)b * NH + h) * Tq * Tk;
    uint32_t thr = drop_threshold(d->dropout);
    uint64_t key = dropout_key(seed_get(d->seed) ^ (uint64_t)base);
    for (int i0 = 0; i0 < Tq; i0 += R) {
        int rows = Tq - i0 < R ? Tq - i0 : R, nk = att_keys(d, i0, rows);
        float *P = a->probs + base + (size_t)i0 * Tk;
        const float *qt = qh + (size_t)i0 * d->ldq;
        // S = scale * q k^T  (+ scale * q Er^T, skewed: S[i,j] += QE[i, T-1-i+j], QE over Er rows T-i1 .. T-1)
        sgemm1(0, 1, rows, nk, HS, scale, qt, d->ldq, kh, d->ldk, 0.0f, P, Tk);
        if (a->ers) {
            int W = i0 + rows;
            sgemm1(0, 1, rows, W, HS, scale, qt, d->ldq, a->ers + (size_t)(Tq - W) * HS, HS, 0.0f, qe, W);
            for (int r = 0; r < rows; r++) {
                const float *e = qe + (size_t)r * W + (rows - 1 - r); // QE column T-1-i+j, for j = 0
                float *row = P + (size_t)r * Tk;
                for (int j = 0; j < d->n_keys[i0 + r]; j++) row[j] += e[j];
            }
        }
        // softmax over the visible keys; the rest is exactly 0
        for (int r = 0; r < rows; r++) {
            float *row = P + (size_t)r * Tk;
            int n = d->n_keys[i0 + r];
            float mx = row[0], sum = 0.0f;
            for (int j = 1; j < n; j++) mx = row[j] > mx ? row[j] : mx;
            for (int j = 0; j < n; j++) sum += row[j] = expf(row[j] - mx);
            for (int j = 0; j < n; j++) row[j] /= sum;
            memset(row + n, 0, (size_t)(Tk - n) * sizeof *row);
        }
        // PD = dropout(P) over the tile's keys (the mask of keys beyond them is 0: P is 0 there)
        const float *use = P;
        int ld = Tk;
        uint8_t *M = a->mask + base + (size_t)i0 * Tk;
        for (int r = 0; r < rows; r++) {
            if (d->dropout > 0.0f)
                dropout_span(pd + (size_t)r * nk, M + (size_t)r * Tk, P + (size_t)r * Tk, keep, thr, key,
                             (size_t)(i0 + r) * Tk, (size_t)nk);
            else
                memset(M + (size_t)r * Tk, 1, (size_t)nk);
            memset(M + (size_t)r * Tk + nk, 0, (size_t)(Tk - nk));
        }
        if (d->dropout > 0.0f) use = pd, ld = nk;
        sgemm1(0, 0, rows, HS, nk, 1.0f, use, ld, vh, d->ldv, 0.0f, a->out + ((size_t)b * Tq + i0) * d->C + h * HS,
               d->C);
    }
}

// The workers the scratch holds (at least one: the documented minimum holds one), and whether it also holds the
// per-task dEr partials.
static int att_workers(const AttnDims *d, size_t extra, size_t *per_worker)
{
    size_t have = d->scratch_floats ? d->scratch_floats : 2 * (size_t)d->Tq * d->Tk + (size_t)d->Tq * d->Tq;
    *per_worker = att_worker_floats(d);
    size_t n = have >= extra + *per_worker ? (have - extra) / *per_worker : 1;
    int th = ops_threads();
    if ((double)d->B * d->Tq * d->Tk * d->C < 1e6) th = 1; // too little work to wake the pool for
    return n < (size_t)th ? (int)n : th;
}

void attention_forward(float *out, float *probs, uint8_t *mask, float *scratch, const float *q, const float *k,
                       const float *v, const float *Er, const AttnDims *d)
{
    assert(!Er || (d->Tq == d->Tk && d->Tq <= d->L));
    AttCtx a = {.d = d, .out = out, .probs = probs, .mask = mask, .scratch = scratch, .q = q, .k = k, .v = v,
                .ers = Er ? Er + (size_t)(d->L - d->Tq) * (d->C / d->NH) : NULL}; // the last T rows of Er
    for (int i = 0; i < d->Tq; i++) assert(d->n_keys[i] >= 1 && d->n_keys[i] <= (Er ? i + 1 : d->Tk));
    int workers = att_workers(d, 0, &a.per_worker), n = d->B * d->NH;
    if (workers > 1) {
        pool_run_on(workers, att_fwd_task, &a, n);
    } else {
        for (int t = 0; t < n; t++) att_fwd_task(&a, t, 0);
    }
}

// backward of: S = scale*(q k^T + skew(q Er^T)); P = softmax(S); PD = dropout(P); out = PD v
static void att_bwd_task(void *c, int task, int w)
{
    const AttCtx *a = c;
    const AttnDims *d = a->d;
    int Tq = d->Tq, Tk = d->Tk, NH = d->NH, HS = d->C / NH, R = att_rows(d), b = task / NH, h = task % NH;
    float scale = 1.0f / sqrtf((float)HS), keep = d->dropout > 0.0f ? 1.0f / (1.0f - d->dropout) : 1.0f;
    float *pd = a->scratch + (size_t)w * a->per_worker, *dp = pd + (size_t)R * Tk, *dqe = dp + (size_t)R * Tk;
    const float *qh = a->q + (size_t)b * Tq * d->ldq + h * HS;
    const float *kh = a->k + (size_t)b * Tk * d->ldk + h * HS;
    const float *vh = a->v + (size_t)b * Tk * d->ldv + h * HS;
    float *dqh = a->dq + (size_t)b * Tq * d->ldq + h * HS;
    float *dkh = a->dk + (size_t)b * Tk * d->ldk + h * HS;
    float *dvh = a->dv + (size_t)b * Tk * d->ldv + h * HS;
    const float *doh = a->dout + (size_t)b * Tq * d->C + h * HS;
    size_t base = ((size_t)b * NH + h) * Tq * Tk;
    float *der = a->dEr ? a->dEr : NULL;
    if (der && a->partial) {
        der = a->partial + (size_t)task * Tq * HS;
        memset(der, 0, (size_t)Tq * HS * sizeof *der);
    }
    for (int i0 = 0; i0 < Tq; i0 += R) {
        int rows = Tq - i0 < R ? Tq - i0 : R, nk = att_keys(d, i0, rows);
        const float *P = a->cprobs + base + (size_t)i0 * Tk, *qt = qh + (size_t)i0 * d->ldq;
        const float *dot = doh + (size_t)i0 * d->C;
        const uint8_t *M = a->cmask + base + (size_t)i0 * Tk;
        float *dqt = dqh + (size_t)i0 * d->ldq;
        const float *use = P;
        int ld = Tk;
        if (d->dropout > 0.0f) { // PD from the saved P and mask
            for (int r = 0; r < rows; r++)
                for (int j = 0; j < nk; j++)
                    pd[(size_t)r * nk + j] = M[(size_t)r * Tk + j] ? P[(size_t)r * Tk + j] * keep : 0.0f;
            use = pd, ld = nk;
        }
        // dv += PD^T dout;  dPD = dout v^T;  dP = dPD * mask * keep
        sgemm1(1, 0, nk, HS, rows, 1.0f, use, ld, dot, d->C, 1.0f, dvh, d->ldv);
        sgemm1(0, 1, rows, nk, HS, 1.0f, dot, d->C, vh, d->ldv, 0.0f, dp, nk);
        // softmax backward: dS = P * (dP - sum_j P dP), over the visible keys
        for (int r = 0; r < rows; r++) {
            const float *pr = P + (size_t)r * Tk;
            const uint8_t *mr = M + (size_t)r * Tk;
            float *g = dp + (size_t)r * nk;
            int n = d->n_keys[i0 + r];
            float s = 0.0f;
            for (int j = 0; j < n; j++) {
                g[j] = mr[j] ? g[j] * keep : 0.0f;
                s += g[j] * pr[j];
            }
            for (int j = 0; j < n; j++) g[j] = pr[j] * (g[j] - s);
            for (int j = n; j < nk; j++) g[j] = 0.0f;
        }
        // dq += scale * dS k;  dk += scale * dS^T q
        sgemm1(0, 0, rows, HS, nk, scale, dp, nk, kh, d->ldk, 1.0f, dqt, d->ldq);
        sgemm1(1, 0, nk, HS, rows, scale, dp, nk, qt, d->ldq, 1.0f, dkh, d->ldk);
        if (a->ers) { // un-skew: dQE[i, T-1-i+j] = dS[i,j]; dq += scale * dQE Er; dEr += scale * dQE^T q
            int W = i0 + rows;
            memset(dqe, 0, (size_t)rows * W * sizeof *dqe);
            for (int r = 0; r < rows; r++) {
                float *e = dqe + (size_t)r * W + (rows - 1 - r);
                for (int j = 0; j < d->n_keys[i0 + r]; j++) e[j] = dp[(size_t)r * nk + j];
            }
            const float *ert = a->ers + (size_t)(Tq - W) * HS;
            sgemm1(0, 0, rows, HS, W, scale, dqe, W, ert, HS, 1.0f, dqt, d->ldq);
            if (der) sgemm1(1, 0, W, HS, rows, scale, dqe, W, qt, d->ldq, 1.0f, der + (size_t)(Tq - W) * HS, HS);
        }
    }
}

typedef struct ErSum {
    float *dEr;
    const float *partial;
    size_t n, tasks;
} ErSum;

// dEr[i] += the tasks' partials, in task order
static void er_sum_range(void *c, size_t lo, size_t hi)
{
    const ErSum *e = c;
    for (size_t t = 0; t < e->tasks; t++)
        for (size_t i = lo; i < hi; i++) e->dEr[i] += e->partial[t * e->n + i];
}

void attention_backward(float *dq, float *dk, float *dv, float *dEr, float *scratch, const float *dout,
                        const float *probs, const uint8_t *mask, const float *q, const float *k, const float *v,
                        const float *Er, const AttnDims *d)
{
    int HS = d->C / d->NH, n = d->B * d->NH;
    AttCtx a = {.d = d, .scratch = scratch, .dq = dq, .dk = dk, .dv = dv, .dout = dout, .cprobs = probs,
                .cmask = mask, .q = q, .k = k, .v = v,
                .ers = Er ? Er + (size_t)(d->L - d->Tq) * HS : NULL,
                .dEr = Er && dEr ? dEr + (size_t)(d->L - d->Tq) * HS : NULL};
    // dEr is shared by every task: with room for per-task partials (scratch_floats), tasks run in parallel and the
    // partials are summed in task order; otherwise one worker accumulates into dEr directly, (b, h) in order
    size_t extra = att_partial_floats(d);
    int partials = a.dEr && d->scratch_floats >= extra + att_worker_floats(d);
    int workers = att_workers(d, partials ? extra : 0, &a.per_worker);
    if (partials) a.partial = scratch + (size_t)workers * a.per_worker;
    if (workers > 1 && (!a.dEr || partials)) {
        pool_run_on(workers, att_bwd_task, &a, n);
    } else {
        for (int t = 0; t < n; t++) att_bwd_task(&a, t, 0);
    }
    if (a.partial) {
        ErSum e = {a.dEr, a.partial, (size_t)d->Tq * HS, (size_t)n};
        par_for(e.n, 1024, er_sum_range, &e);
    }
}

// ---- hourglass resampling ---------------------------------------------------------------------

void pad_forward(float *out, const float *inp, int B, int T, int Tp, int C)
{
    for (int b = 0; b < B; b++) {
        memcpy(out + (size_t)b * Tp * C, inp + (size_t)b * T * C, (size_t)T * C * sizeof *out);
        memset(out + ((size_t)b * Tp + T) * C, 0, (size_t)(Tp - T) * C * sizeof *out);
    }
}

void pad_backward(float *dinp, const float *dout, int B, int T, int Tp, int C)
{
    for (int b = 0; b < B; b++) accumulate(dinp + (size_t)b * T * C, dout + (size_t)b * Tp * C, (size_t)T * C);
}

void crop_forward(float *out, const float *inp, int B, int Tp, int T, int C)
{
    for (int b = 0; b < B; b++) memcpy(out + (size_t)b * T * C, inp + (size_t)b * Tp * C, (size_t)T * C * sizeof *out);
}

void crop_backward(float *dinp, const float *dout, int B, int Tp, int T, int C)
{
    for (int b = 0; b < B; b++) accumulate(dinp + (size_t)b * Tp * C, dout + (size_t)b * T * C, (size_t)T * C);
}

void shift_forward(float *out, const float *inp, int B, int T, int C, int K)
{
    int s = K - 1 < T ? K - 1 : T;
    for (int b = 0; b < B; b++) {
        float *o = out + (size_t)b * T * C;
        memset(o, 0, (size_t)s * C * sizeof *o);
        memcpy(o + (size_t)s * C, inp + (size_t)b * T * C, (size_t)(T - s) * C * sizeof *o);
    }
}

// backward of: out[t] = inp[t - s]
void shift_backward(float *dinp, const float *dout, int B, int T, int C, int K)
{
    int s = K - 1 < T ? K - 1 : T;
    for (int b = 0; b < B; b++)
        accumulate(dinp + (size_t)b * T * C, dout + ((size_t)b * T + s) * C, (size_t)(T - s) * C);
}

void meanpool_forward(float *out, const float *inp, int B, int T, int C, int K)
{
    int Ts = T / K;
    for (int r = 0; r < B * Ts; r++) { // rows K*r .. K*r+K-1 of the flattened (B*T, C) input: T % K == 0
        float *o = out + (size_t)r * C;
        memset(o, 0, (size_t)C * sizeof *o);
        for (int k = 0; k < K; k++) accumulate(o, inp + ((size_t)r * K + k) * C, (size_t)C);
        for (int c = 0; c < C; c++) o[c] /= (float)K;
    }
}

void meanpool_backward(float *dinp, const float *dout, int B, int T, int C, int K)
{
    int Ts = T / K;
    for (int r = 0; r < B * Ts; r++)
        for (int k = 0; k < K; k++) {
            float *d = dinp + ((size_t)r * K + k) * C;
            for (int c = 0; c < C; c++) d[c] += dout[(size_t)r * C + c] / (float)K;
        }
}

void repeat_forward(float *out, const float *inp, int B, int T, int C, int K)
{
    for (int r = 0; r < B * (T / K); r++)
        for (int k = 0; k < K; k++) memcpy(out + ((size_t)r * K + k) * C, inp + (size_t)r * C, (size_t)C * sizeof *out);
}

void repeat_backward(float *dinp, const float *dout, int B, int T, int C, int K)
{
    for (int r = 0; r < B * (T / K); r++)
        for (int k = 0; k < K; k++) accumulate(dinp + (size_t)r * C, dout + ((size_t)r * K + k) * C, (size_t)C);
}

// ---- losses -----------------------------------------------------------------------------------

float crossentropy_forward(float *probs, const float *logits, const int32_t *targets, int N, int V, int *n_valid)
{
    double loss = 0;
    int n = 0;
    for (int i = 0; i < N; i++) {
        const float *x = logits + (size_t)i * V;
        float *p = probs + (size_t)i * V;
        float mx = x[0];
        for (int v = 1; v < V; v++) mx = x[v] > mx ? x[v] : mx;
        double sum = 0;
        for (int v = 0; v < V; v++) sum += p[v] = expf(x[v] - mx);
        for (int v = 0; v < V; v++) p[v] = (float)(p[v] / sum);
        if (targets[i] == 0) continue; // PAD: ignore_index
        loss += -(x[targets[i]] - mx - log(sum));
        n++;
    }
    *n_valid = n;
    return n ? (float)(loss / n) : 0.0f;
}

// backward of: loss = mean over non-PAD rows of -log softmax(logits)[target]
void crossentropy_backward(float *dlogits, const float *probs, const int32_t *targets, int N, int V, int n_valid,
                           float scale)
{
    if (n_valid == 0) return;
    float g = scale / (float)n_valid;
    for (int i = 0; i < N; i++) {
        if (targets[i] == 0) continue;
        float *d = dlogits + (size_t)i * V;
        const float *p = probs + (size_t)i * V;
        for (int v = 0; v < V; v++) d[v] += g * p[v];
        d[targets[i]] -= g;
    }
}

// the probabilities in dlogits, then turned into the gradient in place: 0 + g p, then - g at the target, as
// crossentropy_backward on zeros
float crossentropy_fused(float *dlogits, const float *logits, const int32_t *targets, int N, int V, float scale,
                         int *n_valid)
{
    float loss = crossentropy_forward(dlogits, logits, targets, N, V, n_valid);
    float g = *n_valid ? scale / (float)*n_valid : 0.0f;
    for (int i = 0; i < N; i++) {
        float *d = dlogits + (size_t)i * V;
        if (targets[i] == 0) { // every row when n_valid is 0
            memset(d, 0, (size_t)V * sizeof *d);
            continue;
        }
        for (int v = 0; v < V; v++) d[v] = 0.0f + g * d[v];
        d[targets[i]] -= g;
    }
    return loss;
}

void score_rows(double *nll, int32_t *best, const float *logits, const int32_t *targets, int N, int V)
{
    for (int i = 0; i < N; i++) {
        const float *row = logits + (size_t)i * V;
        int b = 0, finite = 1, t = targets[i];
        for (int v = 0; v < V; v++) {
            finite &= isfinite(row[v]) != 0;
            if (row[v] > row[b]) b = v;
        }
        double se = 0;
        for (int v = 0; v < V; v++) se += exp((double)row[v] - row[b]);
        best[i] = finite ? b : -1;
        nll[i] = t >= 0 && t < V ? log(se) + row[b] - row[t] : NAN;
    }
}

// cos(a, b) and its gradient parts; norms clamped at 1e-8 as torch.nn.functional.cosine_similarity
static double cosine(const float *a, const float *b, int C, double *na, double *nb, double *dot)
{
    double ab = 0, aa = 0, bb = 0;
    for (int c = 0; c < C; c++) ab += (double)a[c] * b[c], aa += (double)a[c] * a[c], bb += (double)b[c] * b[c];
    *na = fmax(sqrt(aa), 1e-8);
    *nb = fmax(sqrt(bb), 1e-8);
    *dot = ab;
    return ab / (*na * *nb);
}

// d cos / da = b / (|a||b|) - cos * a / |a|^2, accumulated with weight g
static void cosine_grad(float *da, float *db, const float *a, const float *b, int C, double g)
{
    double na, nb, dot, cs = cosine(a, b, C, &na, &nb, &dot);
    for (int c = 0; c < C; c++) {
        da[c] += (float)(g * (b[c] / (na * nb) - cs * a[c] / (na * na)));
        db[c] += (float)(g * (a[c] / (na * nb) - cs * b[c] / (nb * nb)));
    }
}

double cosine_pairs_forward(const float *h, int B, int T, int C, long *n_pairs)
{
    double sum = 0, na, nb, dot;
    for (int b = 0; b < B; b++)
        for (int i = 0; i + 1 < T; i += 2) {
            const float *r = h + ((size_t)b * T + i) * C;
            sum += cosine(r, r + C, C, &na, &nb, &dot);
        }
    *n_pairs = (long)B * (T / 2);
    return sum;
}

void cosine_pairs_backward(float *dh, const float *h, int B, int T, int C, float scale)
{
    for (int b = 0; b < B; b++)
        for (int i = 0; i + 1 < T; i += 2) {
            size_t o = ((size_t)b * T + i) * C;
            cosine_grad(dh + o, dh + o + C, h + o, h + o + C, C, scale);
        }
}

double exp_cosine_forward(const float *h, int B, int T, int C)
{
    double sum = 0, na, nb, dot;
    for (int b = 0; b < B; b++)
        for (int i = 0; i < T; i++)
            for (int j = i + 1; j < T; j++) { // cos is symmetric: each unordered pair counts twice
                const float *x = h + (size_t)b * T * C;
                sum += 2 * exp(-cosine(x + (size_t)i * C, x + (size_t)j * C, C, &na, &nb, &dot));
            }
    return sum;
}

// backward of: sum_{i != j} exp(-cos(h_i, h_j)); d/dcos = -exp(-cos), twice per unordered pair
void exp_cosine_backward(float *dh, const float *h, int B, int T, int C, float scale)
{
    double na, nb, dot;
    for (int b = 0; b < B; b++)
        for (int i = 0; i < T; i++)
            for (int j = i + 1; j < T; j++) {
                size_t oi = ((size_t)b * T + i) * C, oj = ((size_t)b * T + j) * C;
                double cs = cosine(h + oi, h + oj, C, &na, &nb, &dot);
                cosine_grad(dh + oi, dh + oj, h + oi, h + oj, C, -2.0 * exp(-cs) * scale);
            }
}
