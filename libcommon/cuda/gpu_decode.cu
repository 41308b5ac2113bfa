// gpu_decode: the kernels of decode.c's incremental inference on the GPU (gpu.h, "decoding"): few rows at a time
// against key/value caches in device memory. A step at batch 1 is a string of matrix-vector products and small row
// ops, bound by launches and latency, so each op is one kernel (attention two), and with gpu_dec_pdl each may start
// while the one before finishes (programmatic dependent launch: every kernel here calls pdl_release and pdl_wait,
// and reads only weights before the wait). The linear layer reads every weight row once for all its rows (one to
// eight warps per output column, bias and ReLU in the same pass), LayerNorm takes the residual sum with it, and
// attention splits every query row's cached keys over blocks of 64. Deterministic: warp shuffles and block
// reductions in a fixed order, no atomics. Owns no file format.
#include <math.h>
#include <stdint.h>

#include "gpu_internal.cuh"

#define DL_WARPS 8     // warps per block of the matrix-vector kernel
#define DL_MAX_ROWS 8  // rows it takes at once; more rows go through cuBLAS
static_assert(DL_WARPS >= DL_MAX_ROWS, "dec_ln_gemv_k: a warp per row for the LayerNorm");

// Where a self-attention layer's new keys and values also go: row n = (item g, new row i) of the product's columns
// C .. 2C-1 to k + g * cs + i * C, of columns 2C .. 3C-1 to v + g * cs + i * C (k NULL: nowhere)
typedef struct DecKV {
    float *k, *v;
    size_t cs;
    int C, n_new, row0; // row0: the global index of the launch's first row (products of more rows than one launch)
} DecKV;
static const DecKV no_kv = {NULL, NULL, 0, 0, 1, 0}; // no cache writes (host code; kernels spell it out)

// a weight as float: float32 as it is, bfloat16 (its bits, uint16_t) widened exactly
__device__ static inline float wf(float w) { return w; }
__device__ static inline float wf(uint16_t w) { return __uint_as_float((uint32_t)w << 16); }

// The matrix-vector kernels below: wpc warps per output column o, each over a contiguous slice of IC with its lanes
// strided in it (a long row is several short chains of loads, not one), the slices' sums then added in slice order
// by the column's first warp. A lane first loads its first GEMV_PF weights of the slice and the column's bias
// (GemvW, gemv_fetch: they depend on no earlier kernel, so with programmatic dependent launch they are read while
// the kernel before still runs, and in any case at once, beside the inputs' loads), then the products.
#define GEMV_PF 8
struct GemvW {
    float w[GEMV_PF], b;
};
struct GemvAt { // where the thread's slice is
    int warp, lane, sl, o, k0, k1;
};
__device__ static GemvAt gemv_at(int IC, int wpc)
{
    GemvAt g;
    g.warp = threadIdx.x / 32, g.lane = threadIdx.x % 32, g.sl = g.warp % wpc;
    g.o = blockIdx.x * (DL_WARPS / wpc) + g.warp / wpc;
    int len = (IC + wpc - 1) / wpc;
    g.k0 = g.sl * len, g.k1 = g.k0 + len < IC ? g.k0 + len : IC;
    return g;
}
template <typename W>
__device__ static GemvW gemv_fetch(const W *w, const float *b, int IC, int OC, int wpc)
{
    GemvAt g = gemv_at(IC, wpc);
    GemvW f;
    UNROLL for (int u = 0; u < GEMV_PF; u++) {
        int k = g.k0 + g.lane + 32 * u;
        f.w[u] = g.o < OC && k < g.k1 ? wf(w[(size_t)g.o * IC + k]) : 0.0f;
    }
    f.b = b && g.o < OC ? b[g.o] : 0.0f;
    return f;
}

// out (N, OC) = x (N, IC) @ w^T + b (ReLU when relu), N <= DL_MAX_ROWS, with f = gemv_fetch(w, b, ...); with kv.k, the
// keys and values also to the caches
template <typename W>
__device__ static void gemv_cols(float *out, const float *x, const W *w, const GemvW &f, int N, int IC, int OC,
                                 int relu, int wpc, DecKV kv)
{
    __shared__ float part[DL_WARPS][DL_MAX_ROWS];
    GemvAt g = gemv_at(IC, wpc);
    int warp = g.warp, lane = g.lane, sl = g.sl, o = g.o, k1 = g.k1;
    float acc[DL_MAX_ROWS]; // in registers: every index below is a constant after unrolling
UNROLL
    for (int n = 0; n < DL_MAX_ROWS; n++) acc[n] = 0.0f;
    if (o < OC) {
UNROLL
        for (int u = 0; u < GEMV_PF; u++) { // the fetched weights, then the rest of the slice: the same order
            int k = g.k0 + lane + 32 * u;
            if (k >= k1) break;
UNROLL
            for (int n = 0; n < DL_MAX_ROWS; n++)
                if (n < N) acc[n] += x[(size_t)n * IC + k] * f.w[u];
        }
        const W *wr = w + (size_t)o * IC;
        for (int k = g.k0 + lane + 32 * GEMV_PF; k < k1; k += 32) {
            float wk = wf(wr[k]);
UNROLL
            for (int n = 0; n < DL_MAX_ROWS; n++)
                if (n < N) acc[n] += x[(size_t)n * IC + k] * wk;
        }
    }
UNROLL
    for (int n = 0; n < DL_MAX_ROWS; n++) {
        if (n >= N) break;
        float sum = warp_sum(acc[n]);
        if (lane == 0) part[warp][n] = sum;
    }
    __syncthreads();
    if (o >= OC || sl != 0 || lane != 0) return;
    for (int n = 0; n < N; n++) {
        float y = 0.0f;
        for (int q = 0; q < wpc; q++) y += part[warp + q][n];
        y += f.b;
        y = relu && !(y > 0.0f) ? 0.0f : y;
        out[(size_t)n * OC + o] = y;
        if (kv.k && o >= kv.C) {
            int g = (kv.row0 + n) / kv.n_new, i = (kv.row0 + n) % kv.n_new;
            float *cache = o < 2 * kv.C ? kv.k + (o - kv.C) : kv.v + (o - 2 * kv.C);
            cache[g * kv.cs + (size_t)i * kv.C] = y;
        }
    }
}

template <typename W>
__global__ static void dec_gemv_k(float *out, const float *x, const W *w, const float *b, int N, int IC, int OC,
                                  int relu, int wpc, DecKV kv)
{
    pdl_release();
    GemvW f = gemv_fetch(w, b, IC, OC, wpc);
    pdl_wait();
    gemv_cols<W>(out, x, w, f, N, IC, OC, relu, wpc, kv);
}

// A LayerNorm before a product: out = LN(a + b) (b NULL: of a) with weights w, bias (N rows of C)
struct DecLN {
    float *out;
    const float *a, *b, *w, *bias;
};
static const DecLN no_ln = {NULL, NULL, NULL, NULL, NULL};

// out (N, OC) = LN(a + b) @ w^T + bias (ReLU when relu), the N <= DL_MAX_ROWS rows' LayerNorm l1 first into shared
// memory (a warp per row, as dec_add_ln_k), block 0 also writing it to l1.out; with l2.w a second LayerNorm of
// those rows the same way (l2.a, l2.b unread: a block's last layer's norm, then its own); then the product as
// dec_gemv_k (with kv.k, the keys and values to the caches too)
template <typename W>
__global__ static void dec_ln_gemv_k(float *out, DecLN l1, DecLN l2, const W *w, const float *bias, int N, int C,
                                     int OC, int relu, int wpc, DecKV kv)
{
    DYN_SMEM(xs); // (N, C)
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    pdl_release();
    GemvW f = gemv_fetch(w, bias, C, OC, wpc);
    pdl_wait();
    if (warp < N) {
        size_t at = (size_t)warp * C;
        float *row = xs + at;
        warp_ln_row(row, blockIdx.x == 0 ? l1.out + at : NULL, NULL, NULL, l1.a + at, l1.b ? l1.b + at : NULL, l1.w,
                    l1.bias, C, lane);
        if (l2.w) // in place: a lane reads back only the columns it wrote
            warp_ln_row(row, blockIdx.x == 0 ? l2.out + at : NULL, NULL, NULL, row, NULL, l2.w, l2.bias, C, lane);
    }
    __syncthreads();
    gemv_cols<W>(out, xs, w, f, N, C, OC, relu, wpc, kv);
}

// The pass's first rows: x = wte[tok] + pe, row n = (item n / T, position n % T), pe at the pass's first position
struct DecEmb {
    float *x;
    const int32_t *tok;
    const float *wte, *pe;
    int T;
};

// out (N, OC) = x @ w^T + bias for the N <= DL_MAX_ROWS rows x of e (gpu_encoder_forward's one addition) made into
// shared memory, block 0 also writing them to e.x; then the product as dec_gemv_k (kv: the keys and values to the
// caches): a pass's embedding and its first layer's input projection in one kernel
template <typename W>
__global__ static void dec_emb_gemv_k(float *out, DecEmb e, const W *w, const float *bias, int N, int C, int OC,
                                      int wpc, DecKV kv)
{
    DYN_SMEM(xs); // (N, C)
    pdl_release();
    GemvW f = gemv_fetch(w, bias, C, OC, wpc);
    pdl_wait();
    for (int i = threadIdx.x; i < N * C; i += blockDim.x) {
        int n = i / C, c = i % C;
        float v = e.wte[(size_t)e.tok[n] * C + c] + e.pe[(size_t)(n % e.T) * C + c];
        xs[i] = v;
        if (blockIdx.x == 0) e.x[i] = v;
    }
    __syncthreads();
    gemv_cols<W>(out, xs, w, f, N, C, OC, 0, wpc, kv);
}

int gpu_dec_kernel_rows(void) { return DL_MAX_ROWS; }

// Dependent launches need the kernels' pdl_wait compiled in: PTX of compute capability 9.0 or more (a build for an
// older one runs on an H100 through the JIT without it, so its launches stay plain). Asked once: the decoder sets
// its choice before every pass
static bool dec_pdl_built(void)
{
#ifdef GPU_EMU
    return true; // the emulator's launches are plain ones anyway
#else
    static int built = -1;
    if (built < 0) {
        cudaFuncAttributes at;
        built = cudaFuncGetAttributes(&at, dec_gemv_k<float>) == cudaSuccess && at.ptxVersion >= 90;
    }
    return built;
#endif
}

void gpu_dec_pdl(int on) { gpu_set_pdl(on && dec_pdl_built()); } // (on first: off asks nothing)

// gpu.h's test aid: one block lets the next kernel start (pdl_release), sleeps about ns nanoseconds, then copies
__global__ static void dec_slow_copy_k(float *dst, const float *src, size_t n, unsigned ns)
{
    pdl_release();
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 700
    for (unsigned t = 0; t < ns; t += 1000) __nanosleep(1000);
#else
    (void)ns; // the emulator runs one kernel at a time: nothing to wait for
#endif
    for (size_t i = threadIdx.x; i < n; i += blockDim.x) dst[i] = src[i];
}

void gpu_dec_slow_copy(float *dst, const float *src, size_t n, unsigned ns)
{
    const char *op = "gpu_dec_slow_copy";
    if (!gpu_enter(op) || n == 0) return;
    LAUNCH(dec_slow_copy_k, 1, 256)(dst, src, n, ns);
    gpu_launched(op);
}

// warps per output column: slices of 128 inputs or more
static int dec_wpc(int IC) { return IC >= 1024 ? 8 : IC >= 512 ? 4 : IC >= 256 ? 2 : 1; }

// bfloat16 weights: the kernel DL_MAX_ROWS rows at a time (each launch reads the weights once)
static void dec_linear16(const char *op, float *out, const float *x, const uint16_t *w, const float *b, int N, int IC,
                         int OC, int relu, DecKV kv)
{
    int wpc = dec_wpc(IC);
    for (int r0 = 0; r0 < N; r0 += DL_MAX_ROWS) {
        int n = N - r0 < DL_MAX_ROWS ? N - r0 : DL_MAX_ROWS;
        kv.row0 = r0;
        LAUNCH_PDL(dec_gemv_k<uint16_t>, gpu_blocks(OC, DL_WARPS / wpc), 32 * DL_WARPS, 0)(
            out + (size_t)r0 * OC, x + (size_t)r0 * IC, w, b, n, IC, OC, relu, wpc, kv);
        gpu_launched(op);
    }
}

void gpu_dec_linear(float *out, const float *x, const float *w, const uint16_t *w16, const float *b, int N, int IC,
                    int OC, int relu)
{
    const char *op = w16 ? "gpu_dec_linear16" : "gpu_dec_linear";
    if (!gpu_enter(op) || N <= 0) return;
    if (w16) {
        dec_linear16(op, out, x, w16, b, N, IC, OC, relu, no_kv);
    } else if (N <= DL_MAX_ROWS) {
        int wpc = dec_wpc(IC);
        LAUNCH_PDL(dec_gemv_k<float>, gpu_blocks(OC, DL_WARPS / wpc), 32 * DL_WARPS, 0)(out, x, w, b, N, IC, OC, relu,
                                                                                     wpc, no_kv);
        gpu_launched(op);
    } else {
        gpu_linear_forward(out, x, w, b, N, IC, OC);
        if (relu) gpu_relu_forward(out, out, (size_t)N * OC);
    }
}

void gpu_dec_linear_qkv(float *out, const float *x, const float *w, const uint16_t *w16, const float *b, int N, int C,
                        float *k, float *v, size_t cs, int n_new)
{
    const char *op = w16 ? "gpu_dec_linear_qkv16" : "gpu_dec_linear_qkv";
    if (!gpu_enter(op) || N <= 0) return;
    if (N % n_new != 0) {
        gpu_record(op, "rows not a whole number of items");
        return;
    }
    DecKV kv = {k, v, cs, C, n_new, 0};
    if (w16) {
        dec_linear16(op, out, x, w16, b, N, C, 3 * C, 0, kv);
    } else if (N <= DL_MAX_ROWS) {
        int wpc = dec_wpc(C);
        LAUNCH_PDL(dec_gemv_k<float>, gpu_blocks(3 * C, DL_WARPS / wpc), 32 * DL_WARPS, 0)(out, x, w, b, N, C, 3 * C,
                                                                                        0, wpc, kv);
        gpu_launched(op);
    } else {
        gpu_linear_forward(out, x, w, b, N, C, 3 * C);
        int nb = N / n_new;
        gpu_dec_copy_rows(k, cs, C, out + C, (size_t)n_new * 3 * C, 3 * C, nb, n_new, C);
        gpu_dec_copy_rows(v, cs, C, out + 2 * C, (size_t)n_new * 3 * C, 3 * C, nb, n_new, C);
    }
}

// out = LayerNorm(a + b) over C (b NULL: of a), one warp per row; out may equal a
__global__ static void dec_add_ln_k(float *out, const float *a, const float *b, const float *w, const float *bias,
                                    int N, int C)
{
    pdl_release();
    pdl_wait();
    int row = blockIdx.x * 4 + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    size_t at = (size_t)row * C;
    warp_ln_row(out + at, NULL, NULL, NULL, a + at, b ? b + at : NULL, w, bias, C, lane);
}

void gpu_dec_add_layernorm(float *out, const float *a, const float *b, const float *w, const float *bias, int N, int C)
{
    const char *op = "gpu_dec_add_layernorm";
    if (!gpu_enter(op) || N <= 0) return;
    LAUNCH_PDL(dec_add_ln_k, gpu_blocks(N, 4), 128, 0)(out, a, b, w, bias, N, C);
    gpu_launched(op);
}

// the fused kernels' dynamic shared memory without asking for more: 48 KiB less room for their static arrays
// (gemv_cols' partial sums)
#define DLN_SMEM_MAX ((48 << 10) - 1024)

// the LayerNorm(s) then the product in one kernel when the rows fit it and its shared memory; else the ops (the
// caller's)
template <typename W>
static bool dec_ln_linear(const char *op, float *out, const DecLN &l1, const DecLN &l2, const W *w, const float *bias,
                          int N, int C, int OC, int relu, DecKV kv)
{
    size_t smem = (size_t)N * C * sizeof(float);
    if (N > DL_MAX_ROWS || smem > DLN_SMEM_MAX || (kv.k && N % kv.n_new != 0)) return false;
    int wpc = dec_wpc(C);
    LAUNCH_PDL(dec_ln_gemv_k<W>, gpu_blocks(OC, DL_WARPS / wpc), 32 * DL_WARPS, smem)(out, l1, l2, w, bias, N, C, OC,
                                                                                      relu, wpc, kv);
    gpu_launched(op);
    return true;
}

// LayerNorm l1 (and l2 after it when l2.w) then the product (w16 non-NULL: bfloat16 weights), in one kernel where
// dec_ln_linear can, else as gpu_dec_add_layernorm(s) and the product's own op
static void ln_then_product(const char *op, float *out, const DecLN &l1, const DecLN &l2, const float *w,
                            const uint16_t *w16, const float *bias, int N, int C, int OC, int relu, DecKV kv)
{
    if (!gpu_enter(op) || N <= 0) return;
    if (w16 ? dec_ln_linear(op, out, l1, l2, w16, bias, N, C, OC, relu, kv)
            : dec_ln_linear(op, out, l1, l2, w, bias, N, C, OC, relu, kv))
        return;
    gpu_dec_add_layernorm(l1.out, l1.a, l1.b, l1.w, l1.bias, N, C);
    if (l2.w) gpu_dec_add_layernorm(l2.out, l1.out, NULL, l2.w, l2.bias, N, C);
    const float *x = l2.w ? l2.out : l1.out;
    if (kv.k) gpu_dec_linear_qkv(out, x, w, w16, bias, N, C, kv.k, kv.v, kv.cs, kv.n_new);
    else gpu_dec_linear(out, x, w, w16, bias, N, C, OC, relu);
}

void gpu_dec_ln_linear(float *out, float *ln_out, const float *a, const float *b, const float *lw, const float *lb,
                       const float *w, const uint16_t *w16, const float *bias, int N, int C, int OC, int relu)
{
    ln_then_product(w16 ? "gpu_dec_ln_linear16" : "gpu_dec_ln_linear", out, DecLN{ln_out, a, b, lw, lb}, no_ln, w,
                    w16, bias, N, C, OC, relu, no_kv);
}

void gpu_dec_ln2_linear(float *out, float *ln_out, float *ln2_out, const float *a, const float *b, const float *lw,
                        const float *lb, const float *lw2, const float *lb2, const float *w, const uint16_t *w16,
                        const float *bias, int N, int C, int OC)
{
    ln_then_product(w16 ? "gpu_dec_ln2_linear16" : "gpu_dec_ln2_linear", out, DecLN{ln_out, a, b, lw, lb},
                    DecLN{ln2_out, ln_out, NULL, lw2, lb2}, w, w16, bias, N, C, OC, 0, no_kv);
}

void gpu_dec_emb_linear_qkv(float *out, float *x, const int32_t *tok, const float *wte, const float *pe, int B, int T,
                            int C, const float *w, const uint16_t *w16, const float *bias, float *k, float *v,
                            size_t cs)
{
    const char *op = w16 ? "gpu_dec_emb_linear_qkv16" : "gpu_dec_emb_linear_qkv";
    int N = B * T;
    if (!gpu_enter(op) || N <= 0) return;
    size_t smem = (size_t)N * C * sizeof(float);
    DecKV kv = {k, v, cs, C, T, 0};
    if (N <= DL_MAX_ROWS && smem <= DLN_SMEM_MAX) {
        int wpc = dec_wpc(C);
        unsigned blocks = gpu_blocks(3 * (size_t)C, DL_WARPS / wpc);
        DecEmb e = {x, tok, wte, pe, T};
        if (w16)
            LAUNCH_PDL(dec_emb_gemv_k<uint16_t>, blocks, 32 * DL_WARPS, smem)(out, e, w16, bias, N, C, 3 * C, wpc, kv);
        else
            LAUNCH_PDL(dec_emb_gemv_k<float>, blocks, 32 * DL_WARPS, smem)(out, e, w, bias, N, C, 3 * C, wpc, kv);
        gpu_launched(op);
        return;
    }
    gpu_encoder_forward(x, tok, wte, pe, B, T, C);
    gpu_dec_linear_qkv(out, x, w, w16, bias, N, C, k, v, cs, T);
}

void gpu_dec_ln_linear_qkv(float *out, float *ln_out, const float *a, const float *b, const float *lw,
                           const float *lb, const float *w, const uint16_t *w16, const float *bias, int N, int C,
                           float *k, float *v, size_t cs, int n_new)
{
    ln_then_product(w16 ? "gpu_dec_ln_linear_qkv16" : "gpu_dec_ln_linear_qkv", out, DecLN{ln_out, a, b, lw, lb},
                    no_ln, w, w16, bias, N, C, 3 * C, 0, DecKV{k, v, cs, C, n_new, 0});
}

// nb x rows x width floats: dst[g * dstride + r * dpitch + c] = src[g * sstride + r * spitch + c]
__global__ static void dec_copy_k(float *dst, size_t dstride, size_t dpitch, const float *src, size_t sstride,
                                  size_t spitch, int rows, int width, size_t n)
{
    pdl_release();
    pdl_wait();
    GRID_STRIDE(i, n)
    {
        size_t c = i % width, gr = i / width, r = gr % rows, g = gr / rows;
        dst[g * dstride + r * dpitch + c] = src[g * sstride + r * spitch + c];
    }
}

void gpu_dec_copy_rows(float *dst, size_t dstride, size_t dpitch, const float *src, size_t sstride, size_t spitch,
                       int nb, int rows, int width)
{
    const char *op = "gpu_dec_copy_rows";
    if (!gpu_enter(op) || nb <= 0 || rows <= 0 || width <= 0) return;
    size_t n = (size_t)nb * rows * width;
    LAUNCH_PDL(dec_copy_k, ew_blocks(n), EW_THREADS, 0)(dst, dstride, dpitch, src, sstride, spitch, rows, width, n);
    gpu_launched(op);
}

// keys seen by query row a (decode.c n_keys: 0 causal, 1 resample_pre, 2 resample_post)
__device__ static inline int dec_n_keys(int keys, int s, int a)
{
    return keys == 0 ? a + 1 : keys == 1 ? s * a + s : a / s + 1;
}

// Attention of query rows against the cache, split over the keys (as "flash decoding"): a step at batch 1 is only
// NH rows, so each row's keys are cut into chunks of ATT_KEYS and every (b, h, i, chunk) is a block of its own. A
// block keeps its chunk's max score m, sum of exp(S - m) l and sum of exp(S - m) v o; a second kernel combines the
// chunks of a row in chunk order. S_j = scale * (q . k_j) + scale * (q . ers[Tk-1-a+j]) (ers NULL: no relative
// term). Deterministic: every sum has a fixed order, no atomics.
#define ATT_KEYS 64    // keys per block
#define ATT_THREADS 256 // 8 warps: 4 lanes per key for the scores; for the values 4 groups of keys, 64 columns each

// part (per block, ATT_PART(HS) floats): m, l, then o (HS)
#define ATT_PART(HS) ((size_t)(HS) + 2)

__global__ static void dec_attend_part_k(float *part, const float *q, int ldq, const float *k, const float *v, int cap,
                                         const float *ers, int NH, int C, int n, int p0, int Tk, int keys, int s,
                                         float scale)
{
    pdl_release();
    pdl_wait();
    __shared__ float qs[1024], S[ATT_KEYS], red[32], acc[4][64];
    int row = blockIdx.x, chunk = blockIdx.y, i = row % n, bh = row / n, h = bh % NH, b = bh / NH, HS = C / NH;
    int a = p0 + i, nk = dec_n_keys(keys, s, a), j0 = chunk * ATT_KEYS, t = threadIdx.x;
    float *pp = part + ((size_t)row * gridDim.y + chunk) * ATT_PART(HS);
    int m_keys = nk - j0 < ATT_KEYS ? nk - j0 : ATT_KEYS; // this row's keys in the chunk
    if (m_keys <= 0) { // past the row's keys: an empty chunk
        if (t == 0) pp[0] = -INFINITY, pp[1] = 0.0f;
        return;
    }
    const float *qh = q + ((size_t)b * n + i) * ldq + (size_t)h * HS;
    const float *kh = k + (size_t)b * cap * C + (size_t)h * HS, *vh = v + (size_t)b * cap * C + (size_t)h * HS;
    for (int c = t; c < HS; c += blockDim.x) qs[c] = qh[c];
    __syncthreads();
    // scores: 4 lanes per key (columns c = quarter, quarter + 4, ...), 8 keys per warp, 64 per pass
    int key = t / 4, quarter = t % 4;
    float dk = 0.0f, de = 0.0f;
    if (key < m_keys) {
        int j = j0 + key;
        const float *kr = kh + (size_t)j * C;
        for (int c = quarter; c < HS; c += 4) dk += qs[c] * kr[c];
        if (ers) {
            const float *er = ers + (size_t)(Tk - 1 - a + j) * HS;
            for (int c = quarter; c < HS; c += 4) de += qs[c] * er[c];
        }
    }
    for (int o = 1; o < 4; o <<= 1) { // the key's 4 lanes, in a fixed order
        dk += __shfl_xor_sync(0xffffffffu, dk, o);
        de += __shfl_xor_sync(0xffffffffu, de, o);
    }
    if (quarter == 0 && key < m_keys) S[key] = ers ? scale * dk + scale * de : scale * dk;
    __syncthreads();
    float mx, l = block_exp_row(S, S, m_keys, red, red, &mx); // S[j] = exp(S_j - mx); ends with __syncthreads
    // o[c] = sum_j S[j] v_j[c]: 4 groups of keys (j = g, g + 4, ...), 64 columns at a time, groups added in order
    int g = t / 64, lc = t % 64;
    for (int c0 = 0; c0 < HS; c0 += 64) {
        int c = c0 + lc;
        float o = 0.0f;
        if (c < HS)
            for (int j = g; j < m_keys; j += 4) o += S[j] * vh[(size_t)(j0 + j) * C + c];
        acc[g][lc] = o;
        __syncthreads();
        if (g == 0 && c < HS) pp[2 + c] = ((acc[0][lc] + acc[1][lc]) + acc[2][lc]) + acc[3][lc];
        __syncthreads();
    }
    if (t == 0) pp[0] = mx, pp[1] = l;
}

// A query row's chunks pr (n_split of ATT_PART(HS)) combine to o[col] = sum_chunk o_c[col] e_c / sum_chunk l_c e_c,
// e_c = e^(m_c - M), M the largest m, chunks in order; an empty chunk has m = -inf and is left out; a NaN anywhere
// stays NaN. combine_scale: the row's e_c (n_split floats) and the sum L, once per row and head; combine_col: a column
__device__ static void combine_scale(const float *pr, int n_split, int HS, float *e, float *L)
{
    float M = -INFINITY, l = 0.0f;
    for (int c = 0; c < n_split; c++) M = fmaxf(M, pr[c * ATT_PART(HS)]);
    for (int c = 0; c < n_split; c++) {
        const float *pc = pr + c * ATT_PART(HS);
        e[c] = expf(pc[0] - M);
        if (pc[0] != -INFINITY) l += pc[1] * e[c];
    }
    *L = l;
}
__device__ static float combine_col(const float *pr, int n_split, int HS, const float *e, float L, int col)
{
    float o = 0.0f;
    for (int c = 0; c < n_split; c++) {
        const float *pc = pr + c * ATT_PART(HS);
        if (pc[0] != -INFINITY) o += pc[2 + col] * e[c];
    }
    return o / L;
}

// out[b, i, h*HS + c] = combine_col of row (b, h, i), one block per row; dynamic shared memory: n_split + 1 floats
__global__ static void dec_attend_combine_k(float *out, const float *part, int NH, int C, int n, int n_split)
{
    pdl_release();
    pdl_wait();
    DYN_SMEM(e); // e_c, then L
    int row = blockIdx.x, i = row % n, bh = row / n, h = bh % NH, b = bh / NH, HS = C / NH;
    const float *pr = part + (size_t)row * n_split * ATT_PART(HS);
    float *oh = out + ((size_t)b * n + i) * C + (size_t)h * HS;
    if (threadIdx.x == 0) combine_scale(pr, n_split, HS, e, e + n_split);
    __syncthreads();
    for (int col = threadIdx.x; col < HS; col += blockDim.x) oh[col] = combine_col(pr, n_split, HS, e, e[n_split], col);
}

// the combine of the N = B n rows into shared memory (dec_attend_combine_k's values), then out (N, OC) = those rows
// @ w^T + bias as dec_gemv_k: attention and its output projection end in one kernel
template <typename W>
__global__ static void dec_combine_gemv_k(float *out, const float *part, int NH, int C, int n, int n_split,
                                          const W *w, const float *bias, int N, int OC, int wpc)
{
    DYN_SMEM(xs); // (N, C), then each (row, head)'s combine_scale: n_split e_c and L
    int HS = C / NH;
    pdl_release();
    GemvW f = gemv_fetch(w, bias, C, OC, wpc);
    pdl_wait();
    float *sc = xs + (size_t)N * C;
    // the row (b, i) = r, head h's chunks
#define CMB_PR(r, h) (part + ((size_t)((r) / n * NH + (h)) * n + (r) % n) * n_split * ATT_PART(HS))
    for (int rh = threadIdx.x; rh < N * NH; rh += blockDim.x) {
        float *s = sc + (size_t)rh * (n_split + 1);
        combine_scale(CMB_PR(rh / NH, rh % NH), n_split, HS, s, s + n_split);
    }
    __syncthreads();
    for (int e = threadIdx.x; e < N * C; e += blockDim.x) {
        int r = e / C, c = e % C, h = c / HS;
        const float *s = sc + (size_t)(r * NH + h) * (n_split + 1);
        xs[e] = combine_col(CMB_PR(r, h), n_split, HS, s, s[n_split], c % HS);
    }
#undef CMB_PR
    __syncthreads();
    gemv_cols<W>(out, xs, w, f, N, C, OC, 0, wpc, DecKV{NULL, NULL, 0, 0, 1, 0});
}

size_t gpu_dec_attend_scratch(int B, int NH, int C, int n, int Tk)
{
    return (size_t)B * NH * n * ((Tk + ATT_KEYS - 1) / ATT_KEYS) * ATT_PART(C / NH);
}

// the chunks' partial sums into scratch; returns n_split, or 0 (error kept)
static int dec_attend_part(const char *op, float *scratch, const float *q, int ldq, const float *k, const float *v,
                           int cap, const float *ers, int B, int NH, int C, int n, int p0, int Tk, int keys, int s)
{
    if (C / NH > 1024) {
        gpu_record(op, "a head of more than 1024 columns");
        return 0;
    }
    float scale = 1.0f / sqrtf((float)(C / NH));
    int n_split = (Tk + ATT_KEYS - 1) / ATT_KEYS;
    dim3 grid((unsigned)(B * NH * n), (unsigned)n_split);
    LAUNCH_PDL(dec_attend_part_k, grid, ATT_THREADS, 0)(scratch, q, ldq, k, v, cap, ers, NH, C, n, p0, Tk, keys, s,
                                                        scale);
    gpu_launched(op);
    return n_split;
}

void gpu_dec_attend(float *out, float *scratch, const float *q, int ldq, const float *k, const float *v, int cap,
                    const float *ers, int B, int NH, int C, int n, int p0, int Tk, int keys, int s)
{
    const char *op = "gpu_dec_attend";
    if (!gpu_enter(op) || n <= 0) return;
    int n_split = dec_attend_part(op, scratch, q, ldq, k, v, cap, ers, B, NH, C, n, p0, Tk, keys, s);
    if (!n_split) return;
    LAUNCH_PDL(dec_attend_combine_k, (unsigned)(B * NH * n), 64, (n_split + 1) * sizeof(float))(out, scratch, NH, C,
                                                                                                n, n_split);
    gpu_launched(op);
}

void gpu_dec_attend_proj(float *proj, float *att, float *scratch, const float *q, int ldq, const float *k,
                         const float *v, int cap, const float *ers, int B, int NH, int C, int n, int p0, int Tk,
                         int keys, int s, const float *w, const uint16_t *w16, const float *bias)
{
    const char *op = "gpu_dec_attend_proj";
    if (!gpu_enter(op) || n <= 0) return;
    int N = B * n, wpc = dec_wpc(C), n_split = (Tk + ATT_KEYS - 1) / ATT_KEYS;
    size_t smem = ((size_t)N * C + (size_t)N * NH * (n_split + 1)) * sizeof(float);
    if (N > DL_MAX_ROWS || smem > DLN_SMEM_MAX) { // the two ops
        gpu_dec_attend(att, scratch, q, ldq, k, v, cap, ers, B, NH, C, n, p0, Tk, keys, s);
        gpu_dec_linear(proj, att, w, w16, bias, N, C, C, 0);
        return;
    }
    if (!dec_attend_part(op, scratch, q, ldq, k, v, cap, ers, B, NH, C, n, p0, Tk, keys, s)) return;
    unsigned blocks = gpu_blocks(C, DL_WARPS / wpc);
    if (w16)
        LAUNCH_PDL(dec_combine_gemv_k<uint16_t>, blocks, 32 * DL_WARPS, smem)(proj, scratch, NH, C, n, n_split, w16,
                                                                              bias, N, C, wpc);
    else
        LAUNCH_PDL(dec_combine_gemv_k<float>, blocks, 32 * DL_WARPS, smem)(proj, scratch, NH, C, n, n_split, w, bias,
                                                                           N, C, wpc);
    gpu_launched(op);
}

// The valley rows i0 .. i0+n_s-1 from h (B, cap, C): hs[s*i+k] = h[s*i+k-(s-1)] (zero before 0). mean: out (B, n_s, C)
// the mean of the s rows; else out (B, n_s, s*C) the s rows side by side (linear down's input)
__global__ static void dec_down_k(float *out, const float *h, int cap, int C, int s, int i0, int n_s, int mean, size_t n)
{
    pdl_release();
    pdl_wait();
    GRID_STRIDE(e, n)
    {
        if (mean) { // e over (b, g, c)
            int c = (int)(e % C);
            size_t bg = e / C;
            int g = (int)(bg % n_s), b = (int)(bg / n_s), i = i0 + g;
            float z = 0.0f;
            for (int k = 0; k < s; k++) {
                int t = s * i + k - (s - 1);
                if (t >= 0) z += h[((size_t)b * cap + t) * C + c];
            }
            out[e] = z / (float)s;
        } else { // e over (b, g, k, c)
            int c = (int)(e % C);
            size_t r = e / C;
            int k = (int)(r % s);
            size_t bg = r / s;
            int g = (int)(bg % n_s), b = (int)(bg / n_s), t = s * (i0 + g) + k - (s - 1);
            out[e] = t >= 0 ? h[((size_t)b * cap + t) * C + c] : 0.0f;
        }
    }
}

void gpu_dec_down(float *out, const float *h, int B, int cap, int C, int s, int i0, int n_s, int mean)
{
    const char *op = "gpu_dec_down";
    if (!gpu_enter(op) || n_s <= 0) return;
    size_t n = (size_t)B * n_s * C * (mean ? 1 : s);
    LAUNCH_PDL(dec_down_k, ew_blocks(n), EW_THREADS, 0)(out, h, cap, C, s, i0, n_s, mean, n);
    gpu_launched(op);
}

// u (B, n, C): u[b, i] = up(v)[t] + h[b, t] for t = p0 + i; up(v)[t] is row t - s*(t/s) of valley row t/s's group
// (lin: s rows of C per valley row) or valley row t/s itself
__global__ static void dec_up_add_k(float *u, const float *up, const float *h, int n, int p0, int cap, int cap_s, int C,
                                    int s, int lin, size_t total)
{
    pdl_release();
    pdl_wait();
    GRID_STRIDE(e, total)
    {
        int c = (int)(e % C);
        size_t bi = e / C;
        int i = (int)(bi % n), b = (int)(bi / n), t = p0 + i, g = t / s;
        const float *ur = lin ? up + (((size_t)b * cap_s + g) * s + (t - s * g)) * C : up + ((size_t)b * cap_s + g) * C;
        u[e] = ur[c] + h[((size_t)b * cap + t) * C + c];
    }
}

void gpu_dec_up_add(float *u, const float *up, const float *h, int B, int n, int p0, int cap, int cap_s, int C, int s,
                    int lin)
{
    const char *op = "gpu_dec_up_add";
    if (!gpu_enter(op) || n <= 0) return;
    size_t total = (size_t)B * n * C;
    LAUNCH_PDL(dec_up_add_k, ew_blocks(total), EW_THREADS, 0)(u, up, h, n, p0, cap, cap_s, C, s, lin, total);
    gpu_launched(op);
}

// ---- the sampler's draw on the device (sampler.c sample_pick, the same arithmetic in the same order) ------------
#define DRAW_THREADS 128

// (value, id) a beats b: a is allowed and b is not, or a's value is larger, or equal with the smaller id (sample_pick
// keeps the first of equal maxima)
__device__ static inline int draw_better(float av, int ai, float bv, int bi)
{
    return ai >= 0 && (bi < 0 || av > bv || (av == bv && ai < bi));
}

// one block per item b: its logits (V) with the tokens its mask leaves out at -inf; -2 when a logit is not finite (the
// sampler's own check, before the mask), -1 when no token is left, else sample_pick's token for
// u = uniform(keys[b], *index). The sums that decide the draw run in one thread, in sample_pick's order, in double.
__global__ static void dec_draw_k(int32_t *tok, const float *logits, int V, const uint32_t *mask, int W,
                                  const uint64_t *keys, const uint64_t *index, const double *opts)
{
    pdl_release();
    pdl_wait();
    double temperature = opts[0], top_p = opts[2];
    int top_k = (int)opts[1];
    DYN_SMEM(sm);
    float *lm = sm, *p = sm + V;
    int *order = (int *)(p + V);
    __shared__ float bv[DRAW_THREADS];
    __shared__ int bi[DRAW_THREADS], bad;
    int b = blockIdx.x, tid = threadIdx.x;
    const float *l = logits + (size_t)b * V;
    if (tid == 0) bad = 0;
    __syncthreads();
    float mv = 0.0f;
    int mi = -1;
    for (int v = tid; v < V; v += DRAW_THREADS) {
        float x = l[v];
        if (!isfinite(x)) bad = 1;
        if (mask && !(mask[(size_t)b * W + v / 32] >> (v % 32) & 1u)) x = -INFINITY;
        lm[v] = x;
        if (x != -INFINITY && draw_better(x, v, mv, mi)) mv = x, mi = v;
    }
    bv[tid] = mv, bi[tid] = mi;
    __syncthreads();
    for (int h = DRAW_THREADS / 2; h > 0; h /= 2) { // the first maximum: ties go to the smaller id
        if (tid < h && draw_better(bv[tid + h], bi[tid + h], bv[tid], bi[tid])) bv[tid] = bv[tid + h], bi[tid] = bi[tid + h];
        __syncthreads();
    }
    int best = bi[0];
    if (bad || best < 0 || temperature <= 0) {
        if (tid == 0) tok[b] = bad ? -2 : best;
        return;
    }
    float top = lm[best];
    for (int v = tid; v < V; v += DRAW_THREADS) // exp of (logit - max) / temperature, in double, as sample_pick
        p[v] = lm[v] == -INFINITY ? 0.0f : (float)exp((double)(lm[v] - top) / temperature);
    __syncthreads();
    for (int v = tid; v < V; v += DRAW_THREADS) { // the drawable tokens by probability, then id: each its rank
        float pv = p[v];
        if (!(pv > 0)) continue;
        int r = 0;
        for (int u = 0; u < V; u++) r += p[u] > pv || (p[u] == pv && p[u] > 0 && u < v);
        order[r] = v;
    }
    __syncthreads();
    if (tid != 0) return;
    double sum = 0, mass = 0, kept = 0;
    int n = 0; // the drawable tokens: order[0 .. n)
    for (int v = 0; v < V; v++) sum += p[v], n += p[v] > 0;
    int keep = top_k > 0 && top_k < n ? top_k : n;
    for (int i = 0; i < keep; i++) kept += p[order[i]];
    if (top_p < 1) {
        for (int i = 0; i < keep; i++) {
            mass += p[order[i]] / sum;
            if (mass >= top_p) {
                keep = i + 1;
                break;
            }
        }
        kept = 0;
        for (int i = 0; i < keep; i++) kept += p[order[i]];
    }
    // sampler.h's sample_uniform(key, i): the 53 high bits of splitmix64(key ^ splitmix64(i)); splitmix64(x) = mix64(x + GOLDEN)
    double u = (double)(mix64((keys[b] ^ mix64(*index + GOLDEN)) + GOLDEN) >> 11) * 0x1.0p-53;
    double x = u * kept, acc = 0;
    int pick = keep < 1 ? best : order[keep - 1]; // keep < 1: as sample_pick (unreachable: best's weight is 1)
    for (int i = 0; i < keep; i++) {
        acc += p[order[i]];
        if (x < acc) {
            pick = order[i];
            break;
        }
    }
    tok[b] = pick;
}

static size_t gpu_dec_draw_smem(int V) { return (size_t)V * (2 * sizeof(float) + sizeof(int)); }

void gpu_dec_draw(int32_t *tok, const float *logits, int B, int V, const uint32_t *mask, const uint64_t *keys,
                  const uint64_t *index, const double *opts)
{
    const char *op = "gpu_dec_draw";
    if (!gpu_enter(op) || B <= 0) return;
    if (V < 1 || V > GPU_DRAW_MAX_V) { // 45 KiB of dynamic shared memory, 1 KiB static: under the 48 KiB default
        gpu_record(op, "a vocabulary of more than GPU_DRAW_MAX_V (3840) tokens");
        return;
    }
    LAUNCH_PDL(dec_draw_k, B, DRAW_THREADS, gpu_dec_draw_smem(V))(tok, logits, V, mask, (V + 31) / 32, keys, index,
                                                                    opts);
    gpu_launched(op);
}
