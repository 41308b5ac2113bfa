// gpu_decode: the kernels of decode.c's incremental inference on the GPU (gpu.h, "decoding"): few rows at a time
// against key/value caches in device memory. A step at batch 1 is a string of matrix-vector products and small row
// ops, bound by launches and latency, so each op is one kernel (attention two), and with gpu_dec_pdl each may start
// while the one before finishes (programmatic dependent launch: every kernel here calls pdl_release and pdl_wait,
// and reads only weights before the wait). With gpu_dec_mega the ops are recorded instead of launched and the
// whole string runs as one launch of a persistent kernel, the ops in order with a grid-wide barrier between them
// (the same device code, so the same bytes). The linear layer reads every weight row once for all its rows (one to
// eight warps per output column, bias and ReLU in the same pass), LayerNorm takes the residual sum with it, and
// attention splits every query row's cached keys over blocks of 64. Deterministic: warp shuffles and block
// reductions in a fixed order, no float atomics (the grid barrier counts arrivals with integer ones). Owns no file
// format.
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_internal.cuh"

#define DL_WARPS 8                  // warps per block of the matrix-vector kernel
#define DL_MAX_ROWS 8               // rows it takes at once; more rows go through cuBLAS
#define DEC_THREADS (32 * DL_WARPS) // every kernel here runs blocks of this many threads (so one launch runs them all)
static_assert(DL_WARPS >= DL_MAX_ROWS, "ln_gemv_body: a warp per row for the LayerNorm");

// Where a self-attention layer's new keys and values also go: row n = (item g, new row i) of the product's columns
// C .. 2C-1 to k + g * cs + i * C, of columns 2C .. 3C-1 to v + g * cs + i * C (k NULL: nowhere)
typedef struct DecKV {
    float *k, *v;
    size_t cs;
    int C, n_new, row0; // row0: the global index of the launch's first row (products of more rows than one launch)
} DecKV;
static const DecKV no_kv = {NULL, NULL, 0, 0, 1, 0}; // no cache writes

// a weight as float: float32 as it is, bfloat16 (its bits, uint16_t) widened exactly
__device__ static inline float wf(float w) { return w; }
__device__ static inline float wf(uint16_t w) { return __uint_as_float((uint32_t)w << 16); }

// ---- waiting for the ops before -----------------------------------------------------------------------------------
// A body reads only weights and biases until dec_wait(wait), then what earlier ops wrote. As a kernel of its own
// (wait DEC_PDL) that is pdl_wait; in the one-launch step (dec_mega_k) it waits until the grid's blocks have
// arrived `wait` times in all at the ops' ends (dec_count; 0: nothing to wait for), so the weights' loads before it
// overlap the wait, as a dependent launch's do.
#define DEC_PDL 0xffffffffu
#ifndef GPU_EMU
// the arrivals of the running one-launch step's blocks; its last block puts it back to 0 as it ends
__device__ static unsigned dec_count;
#else
static unsigned dec_count; // (the emulator: host memory; its threads run one at a time)
#endif
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 700
// the count with acquire (gpu scope): what the blocks wrote before their releasing arrivals is seen after it
__device__ static inline unsigned count_acquire(void)
{
    unsigned v;
    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(&dec_count) : "memory");
    return v;
}
__device__ static inline unsigned arrive_release(void)
{
    unsigned old;
    asm volatile("atom.add.release.gpu.global.u32 %0, [%1], 1;" : "=r"(old) : "l"(&dec_count) : "memory");
    return old;
}
// the GPU's clock in nanoseconds (one for every multiprocessor, unlike clock64)
__device__ static inline unsigned long long global_ns(void)
{
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}
#else // the emulator (its threads run one at a time, in order) and older GPUs: fences
__device__ static inline unsigned count_acquire(void)
{
#ifdef GPU_EMU
    return emu_load_acquire(&dec_count); // (so the emulator's race check sees the acquire)
#else
    unsigned v = *(volatile unsigned *)&dec_count;
    __threadfence();
    return v;
#endif
}
__device__ static inline unsigned arrive_release(void)
{
    __threadfence();
    return atomicAdd(&dec_count, 1u);
}
__device__ static inline unsigned long long global_ns(void) { return 0; } // (no time limit there)
#endif

__device__ static void dec_wait(unsigned wait)
{
    if (wait == DEC_PDL) {
        pdl_wait();
        return;
    }
    if (wait == 0) return;
    if (threadIdx.x == 0) { // as cooperative_groups' grid sync: one thread acquires, then the block's barrier
#ifdef GPU_EMU
        while (count_acquire() < wait) emu_grid_yield(); // the other blocks run meanwhile
#else
        // (a block that never arrives, which the cooperative launch rules out: an error after 10 s, not a hang)
        unsigned long long t0 = global_ns();
        while (count_acquire() < wait)
            if (global_ns() - t0 > 10000000000ull) __trap();
#endif
    }
    __syncthreads();
}

// the block's arrival at the end of an op: its writes (ordered before by __syncthreads), then its releasing add.
// The launch's last arrival (the count reaching `last`: every block has arrived at every op's end, so none waits
// any more) puts the count back to 0 for the next launch
__device__ static void dec_arrive(unsigned last)
{
    __syncthreads();
    if (threadIdx.x == 0 && arrive_release() + 1u == last) atomicExch(&dec_count, 0u);
}

// ---- the ops' device code ----------------------------------------------------------------------------------------
// Each op is a body run by one block, told its block index (bx, by): a kernel of its own passes blockIdx, the
// one-launch step (dec_mega_k) the virtual block it runs. Its arguments are one struct, in DecOp below.

// The matrix-vector bodies: wpc warps per output column o, each over a contiguous slice of IC with its lanes
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
__device__ static GemvAt gemv_at(int IC, int wpc, int bx)
{
    GemvAt g;
    g.warp = threadIdx.x / 32, g.lane = threadIdx.x % 32, g.sl = g.warp % wpc;
    g.o = bx * (DL_WARPS / wpc) + g.warp / wpc;
    int len = (IC + wpc - 1) / wpc;
    g.k0 = g.sl * len, g.k1 = g.k0 + len < IC ? g.k0 + len : IC;
    return g;
}
template <typename W>
__device__ static GemvW gemv_fetch(const W *w, const float *b, int IC, int OC, int wpc, int bx)
{
    GemvAt g = gemv_at(IC, wpc, bx);
    GemvW f;
    UNROLL for (int u = 0; u < GEMV_PF; u++) {
        int k = g.k0 + g.lane + 32 * u;
        f.w[u] = g.o < OC && k < g.k1 ? wf(w[(size_t)g.o * IC + k]) : 0.0f;
    }
    f.b = b && g.o < OC ? b[g.o] : 0.0f;
    return f;
}

// the warps' partial sums of gemv_cols (here, not in the template: the emulator's static shared memory,
// tests/emu/cuda_emu.h, must be declared outside templates)
__device__ static inline float (*gemv_parts(void))[DL_MAX_ROWS]
{
    __shared__ float part[DL_WARPS][DL_MAX_ROWS];
    return part;
}

// out (N, OC) = x (N, IC) @ w^T + b (ReLU when relu), N <= DL_MAX_ROWS, with f = gemv_fetch(w, b, ...); with kv.k, the
// keys and values also to the caches
template <typename W>
__device__ static void gemv_cols(float *out, const float *x, const W *w, const GemvW &f, int N, int IC, int OC,
                                 int relu, int wpc, const DecKV &kv, int bx)
{
    float(*part)[DL_MAX_ROWS] = gemv_parts();
    GemvAt g = gemv_at(IC, wpc, bx);
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

// out (N, OC) = x @ w^T + b (ReLU when relu); w float or uint16_t (bfloat16) as the op's kind says
struct GemvArgs {
    float *out;
    const float *x;
    const void *w;
    const float *b;
    int N, IC, OC, relu, wpc;
    DecKV kv;
};
template <typename W> __device__ static void gemv_body(const GemvArgs &a, int bx, unsigned wait)
{
    const W *w = (const W *)a.w;
    GemvW f = gemv_fetch(w, a.b, a.IC, a.OC, a.wpc, bx);
    dec_wait(wait);
    gemv_cols<W>(a.out, a.x, w, f, a.N, a.IC, a.OC, a.relu, a.wpc, a.kv, bx);
}

// A LayerNorm before a product: out = LN(a + b) (b NULL: of a) with weights w, bias (N rows of C)
struct DecLN {
    float *out;
    const float *a, *b, *w, *bias;
};
static const DecLN no_ln = {NULL, NULL, NULL, NULL, NULL};

// out (N, OC) = LN(a + b) @ w^T + bias (ReLU when relu), the N <= DL_MAX_ROWS rows' LayerNorm l1 first into shared
// memory (a warp per row, as add_ln_body), block 0 also writing it to l1.out; with l2.w a second LayerNorm of
// those rows the same way (l2.a, l2.b unread: a block's last layer's norm, then its own); then the product as
// gemv_body (with kv.k, the keys and values to the caches too). Dynamic shared memory: N * C floats
struct LnGemvArgs {
    float *out;
    DecLN l1, l2;
    const void *w;
    const float *bias;
    int N, C, OC, relu, wpc;
    DecKV kv;
};
template <typename W> __device__ static void ln_gemv_body(const LnGemvArgs &a, int bx, unsigned wait)
{
    DYN_SMEM(xs); // (N, C)
    const W *w = (const W *)a.w;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, C = a.C;
    GemvW f = gemv_fetch(w, a.bias, C, a.OC, a.wpc, bx);
    dec_wait(wait);
    if (warp < a.N) {
        size_t at = (size_t)warp * C;
        float *row = xs + at;
        warp_ln_row(row, bx == 0 ? a.l1.out + at : NULL, NULL, NULL, NULL, a.l1.a + at, a.l1.b ? a.l1.b + at : NULL,
                    a.l1.w, a.l1.bias, C, lane);
        if (a.l2.w) // in place: a lane reads back only the columns it wrote
            warp_ln_row(row, bx == 0 ? a.l2.out + at : NULL, NULL, NULL, NULL, row, NULL, a.l2.w, a.l2.bias, C, lane);
    }
    __syncthreads();
    gemv_cols<W>(a.out, xs, w, f, a.N, C, a.OC, a.relu, a.wpc, a.kv, bx);
}

// The pass's first rows: x = wte[tok] + pe, row n = (item n / T, position n % T), pe at the pass's first position
struct DecEmb {
    float *x;
    const int32_t *tok;
    const float *wte, *pe;
    int T;
};

// out (N, OC) = x @ w^T + bias for the N <= DL_MAX_ROWS rows x of e (gpu_encoder_forward's one addition) made into
// shared memory, block 0 also writing them to e.x; then the product as gemv_body (kv: the keys and values to the
// caches): a pass's embedding and its first layer's input projection in one kernel. Dynamic shared memory: N * C
struct EmbGemvArgs {
    float *out;
    DecEmb e;
    const void *w;
    const float *bias;
    int N, C, OC, wpc;
    DecKV kv;
};
template <typename W> __device__ static void emb_gemv_body(const EmbGemvArgs &a, int bx, unsigned wait)
{
    DYN_SMEM(xs); // (N, C)
    const W *w = (const W *)a.w;
    int C = a.C;
    GemvW f = gemv_fetch(w, a.bias, C, a.OC, a.wpc, bx);
    dec_wait(wait);
    for (int i = threadIdx.x; i < a.N * C; i += blockDim.x) {
        int n = i / C, c = i % C;
        float v = a.e.wte[(size_t)a.e.tok[n] * C + c] + a.e.pe[(size_t)(n % a.e.T) * C + c];
        xs[i] = v;
        if (bx == 0) a.e.x[i] = v;
    }
    __syncthreads();
    gemv_cols<W>(a.out, xs, w, f, a.N, C, a.OC, 0, a.wpc, a.kv, bx);
}

// out = LayerNorm(a + b) over C (b NULL: of a), one warp per row, DL_WARPS rows a block; out may equal a
struct AddLnArgs {
    float *out;
    const float *a, *b, *w, *bias;
    int N, C;
};
__device__ static void add_ln_body(const AddLnArgs &a, int bx, unsigned wait)
{
    dec_wait(wait);
    int row = bx * DL_WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= a.N) return;
    size_t at = (size_t)row * a.C;
    warp_ln_row(a.out + at, NULL, NULL, NULL, NULL, a.a + at, a.b ? a.b + at : NULL, a.w, a.bias, a.C, lane);
}

// the elementwise bodies' loop over n elements on gx blocks of DEC_THREADS
#define DEC_STRIDE(i, n, bx, gx)                                                                                       \
    for (size_t i = (size_t)(bx) * DEC_THREADS + threadIdx.x; i < (n); i += (size_t)(gx) * DEC_THREADS)

// nb x rows x width floats: dst[g * dstride + r * dpitch + c] = src[g * sstride + r * spitch + c]
struct CopyArgs {
    float *dst;
    size_t dstride, dpitch;
    const float *src;
    size_t sstride, spitch;
    int rows, width;
    size_t n;
};
__device__ static void copy_body(const CopyArgs &a, int bx, unsigned gx, unsigned wait)
{
    dec_wait(wait);
    DEC_STRIDE(i, a.n, bx, gx)
    {
        size_t c = i % a.width, gr = i / a.width, r = gr % a.rows, g = gr / a.rows;
        a.dst[g * a.dstride + r * a.dpitch + c] = a.src[g * a.sstride + r * a.spitch + c];
    }
}

// keys seen by query row a (decode.c n_keys: 0 causal, 1 resample_pre, 2 resample_post)
__device__ static inline int dec_n_keys(int keys, int s, int a)
{
    return keys == 0 ? a + 1 : keys == 1 ? s * a + s : a / s + 1;
}

// Attention of query rows against the cache, split over the keys (as "flash decoding"): a step at batch 1 is only
// NH rows, so each row's keys are cut into chunks of ATT_KEYS and every (b, h, i, chunk) is a block of its own
// (bx the row, by the chunk). A block keeps its chunk's max score m, sum of exp(S - m) l and sum of exp(S - m) v o;
// a second body combines the chunks of a row in chunk order. S_j = scale * (q . k_j) + scale * (q . ers[Tk-1-a+j])
// (ers NULL: no relative term). Deterministic: every sum has a fixed order, no atomics.
#define ATT_KEYS 64 // keys per block; DEC_THREADS: 4 lanes per key for the scores, for the values 4 groups of keys
static_assert(DEC_THREADS == 4 * ATT_KEYS, "att_part_body: 4 lanes per key");

// part (per block, ATT_PART(HS) floats): m, l, then o (HS)
#define ATT_PART(HS) ((size_t)(HS) + 2)

struct AttPartArgs {
    float *part;
    const float *q;
    int ldq;
    const float *k, *v;
    int cap;
    const float *ers;
    int NH, C, n, p0, Tk, keys, s, n_split;
    float scale;
};
__device__ static void att_part_body(const AttPartArgs &a, int row, int chunk, unsigned wait)
{
    dec_wait(wait);
    __shared__ float qs[1024], S[ATT_KEYS], red[32], acc[4][64];
    int C = a.C, i = row % a.n, bh = row / a.n, h = bh % a.NH, b = bh / a.NH, HS = C / a.NH;
    int p = a.p0 + i, nk = dec_n_keys(a.keys, a.s, p), j0 = chunk * ATT_KEYS, t = threadIdx.x;
    float *pp = a.part + ((size_t)row * a.n_split + chunk) * ATT_PART(HS);
    int m_keys = nk - j0 < ATT_KEYS ? nk - j0 : ATT_KEYS; // this row's keys in the chunk
    if (m_keys <= 0) { // past the row's keys: an empty chunk
        if (t == 0) pp[0] = -INFINITY, pp[1] = 0.0f;
        return;
    }
    const float *qh = a.q + ((size_t)b * a.n + i) * a.ldq + (size_t)h * HS;
    const float *kh = a.k + (size_t)b * a.cap * C + (size_t)h * HS, *vh = a.v + (size_t)b * a.cap * C + (size_t)h * HS;
    for (int c = t; c < HS; c += DEC_THREADS) qs[c] = qh[c];
    __syncthreads();
    // scores: 4 lanes per key (columns c = quarter, quarter + 4, ...), 8 keys per warp, 64 per pass
    int key = t / 4, quarter = t % 4;
    float dk = 0.0f, de = 0.0f;
    if (key < m_keys) {
        int j = j0 + key;
        const float *kr = kh + (size_t)j * C;
        for (int c = quarter; c < HS; c += 4) dk += qs[c] * kr[c];
        if (a.ers) {
            const float *er = a.ers + (size_t)(a.Tk - 1 - p + j) * HS;
            for (int c = quarter; c < HS; c += 4) de += qs[c] * er[c];
        }
    }
    for (int o = 1; o < 4; o <<= 1) { // the key's 4 lanes, in a fixed order
        dk += __shfl_xor_sync(0xffffffffu, dk, o);
        de += __shfl_xor_sync(0xffffffffu, de, o);
    }
    if (quarter == 0 && key < m_keys) S[key] = a.ers ? a.scale * dk + a.scale * de : a.scale * dk;
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

// out[b, i, h*HS + c] = combine_col of row (b, h, i) = bx; dynamic shared memory: n_split + 1 floats
struct CombineArgs {
    float *out;
    const float *part;
    int NH, C, n, n_split;
};
__device__ static void combine_body(const CombineArgs &a, int row, unsigned wait)
{
    dec_wait(wait);
    DYN_SMEM(e); // e_c, then L
    int i = row % a.n, bh = row / a.n, h = bh % a.NH, b = bh / a.NH, HS = a.C / a.NH;
    const float *pr = a.part + (size_t)row * a.n_split * ATT_PART(HS);
    float *oh = a.out + ((size_t)b * a.n + i) * a.C + (size_t)h * HS;
    if (threadIdx.x == 0) combine_scale(pr, a.n_split, HS, e, e + a.n_split);
    __syncthreads();
    for (int col = threadIdx.x; col < HS; col += DEC_THREADS) oh[col] = combine_col(pr, a.n_split, HS, e, e[a.n_split], col);
}

// the combine of the N = B n rows into shared memory (combine_body's values), then out (N, OC) = those rows @ w^T +
// bias as gemv_body: attention and its output projection end in one kernel. Dynamic shared memory: (N, C), then
// each (row, head)'s combine_scale: n_split e_c and L
struct CmbGemvArgs {
    float *out;
    const float *part;
    int NH, C, n, n_split;
    const void *w;
    const float *bias;
    int N, OC, wpc;
};
template <typename W> __device__ static void cmb_gemv_body(const CmbGemvArgs &a, int bx, unsigned wait)
{
    DYN_SMEM(xs);
    const W *w = (const W *)a.w;
    int NH = a.NH, C = a.C, n = a.n, n_split = a.n_split, N = a.N, HS = C / NH;
    GemvW f = gemv_fetch(w, a.bias, C, a.OC, a.wpc, bx);
    dec_wait(wait);
    float *sc = xs + (size_t)N * C;
    // the row (b, i) = r, head h's chunks
#define CMB_PR(r, h) (a.part + ((size_t)((r) / n * NH + (h)) * n + (r) % n) * n_split * ATT_PART(HS))
    for (int rh = threadIdx.x; rh < N * NH; rh += DEC_THREADS) {
        float *s = sc + (size_t)rh * (n_split + 1);
        combine_scale(CMB_PR(rh / NH, rh % NH), n_split, HS, s, s + n_split);
    }
    __syncthreads();
    for (int e = threadIdx.x; e < N * C; e += DEC_THREADS) {
        int r = e / C, c = e % C, h = c / HS;
        const float *s = sc + (size_t)(r * NH + h) * (n_split + 1);
        xs[e] = combine_col(CMB_PR(r, h), n_split, HS, s, s[n_split], c % HS);
    }
#undef CMB_PR
    __syncthreads();
    gemv_cols<W>(a.out, xs, w, f, N, C, a.OC, 0, a.wpc, DecKV{NULL, NULL, 0, 0, 1, 0}, bx);
}

// The valley rows i0 .. i0+n_s-1 from h (B, cap, C): hs[s*i+k] = h[s*i+k-(s-1)] (zero before 0). mean: out (B, n_s, C)
// the mean of the s rows; else out (B, n_s, s*C) the s rows side by side (linear down's input)
struct DownArgs {
    float *out;
    const float *h;
    int cap, C, s, i0, n_s, mean;
    size_t n;
};
__device__ static void down_body(const DownArgs &a, int bx, unsigned gx, unsigned wait)
{
    dec_wait(wait);
    int C = a.C, s = a.s, n_s = a.n_s, cap = a.cap;
    DEC_STRIDE(e, a.n, bx, gx)
    {
        if (a.mean) { // e over (b, g, c)
            int c = (int)(e % C);
            size_t bg = e / C;
            int g = (int)(bg % n_s), b = (int)(bg / n_s), i = a.i0 + g;
            float z = 0.0f;
            for (int k = 0; k < s; k++) {
                int t = s * i + k - (s - 1);
                if (t >= 0) z += a.h[((size_t)b * cap + t) * C + c];
            }
            a.out[e] = z / (float)s;
        } else { // e over (b, g, k, c)
            int c = (int)(e % C);
            size_t r = e / C;
            int k = (int)(r % s);
            size_t bg = r / s;
            int g = (int)(bg % n_s), b = (int)(bg / n_s), t = s * (a.i0 + g) + k - (s - 1);
            a.out[e] = t >= 0 ? a.h[((size_t)b * cap + t) * C + c] : 0.0f;
        }
    }
}

// u (B, n, C): u[b, i] = up(v)[t] + h[b, t] for t = p0 + i; up(v)[t] is row t - s*(t/s) of valley row t/s's group
// (lin: s rows of C per valley row) or valley row t/s itself
struct UpAddArgs {
    float *u;
    const float *up, *h;
    int n, p0, cap, cap_s, C, s, lin;
    size_t total;
};
__device__ static void up_add_body(const UpAddArgs &a, int bx, unsigned gx, unsigned wait)
{
    dec_wait(wait);
    int C = a.C, s = a.s;
    DEC_STRIDE(e, a.total, bx, gx)
    {
        int c = (int)(e % C);
        size_t bi = e / C;
        int i = (int)(bi % a.n), b = (int)(bi / a.n), t = a.p0 + i, g = t / s;
        const float *ur = a.lin ? a.up + (((size_t)b * a.cap_s + g) * s + (t - s * g)) * C
                                : a.up + ((size_t)b * a.cap_s + g) * C;
        a.u[e] = ur[c] + a.h[((size_t)b * a.cap + t) * C + c];
    }
}

// ---- the sampler's draw on the device (sampler.c sample_pick, the same arithmetic in the same order) ------------
// (value, id) a beats b: a is allowed and b is not, or a's value is larger, or equal with the smaller id (sample_pick
// keeps the first of equal maxima)
__device__ static inline int draw_better(float av, int ai, float bv, int bi)
{
    return ai >= 0 && (bi < 0 || av > bv || (av == bv && ai < bi));
}

// block b: item b's logits (V) with the tokens its mask leaves out at -inf; -2 when a logit is not finite (the
// sampler's own check, before the mask), -1 when no token is left, else sample_pick's token for
// u = uniform(keys[b], *index). The sums that decide the draw run in one thread, in sample_pick's order, in double.
// Dynamic shared memory: gpu_dec_draw_smem(V)
struct DrawArgs {
    int32_t *tok;
    const float *logits;
    int V;
    const uint32_t *mask;
    int W;
    const uint64_t *keys, *index;
    const double *opts;
};
__device__ static void draw_body(const DrawArgs &a, int b, unsigned wait)
{
    dec_wait(wait);
    double temperature = a.opts[0], top_p = a.opts[2];
    int top_k = (int)a.opts[1], V = a.V;
    DYN_SMEM(sm);
    float *lm = sm, *p = sm + V;
    int *order = (int *)(p + V);
    __shared__ float bv[DEC_THREADS];
    __shared__ int bi[DEC_THREADS], bad;
    int tid = threadIdx.x;
    const float *l = a.logits + (size_t)b * V;
    if (tid == 0) bad = 0;
    __syncthreads();
    float mv = 0.0f;
    int mi = -1;
    for (int v = tid; v < V; v += DEC_THREADS) {
        float x = l[v];
        if (!isfinite(x)) bad = 1;
        if (a.mask && !(a.mask[(size_t)b * a.W + v / 32] >> (v % 32) & 1u)) x = -INFINITY;
        lm[v] = x;
        if (x != -INFINITY && draw_better(x, v, mv, mi)) mv = x, mi = v;
    }
    bv[tid] = mv, bi[tid] = mi;
    __syncthreads();
    for (int h = DEC_THREADS / 2; h > 0; h /= 2) { // the first maximum: ties go to the smaller id
        if (tid < h && draw_better(bv[tid + h], bi[tid + h], bv[tid], bi[tid])) bv[tid] = bv[tid + h], bi[tid] = bi[tid + h];
        __syncthreads();
    }
    int best = bi[0];
    if (bad || best < 0 || temperature <= 0) {
        if (tid == 0) a.tok[b] = bad ? -2 : best;
        return;
    }
    float top = lm[best];
    for (int v = tid; v < V; v += DEC_THREADS) // exp of (logit - max) / temperature, in double, as sample_pick
        p[v] = lm[v] == -INFINITY ? 0.0f : (float)exp((double)(lm[v] - top) / temperature);
    __syncthreads();
    for (int v = tid; v < V; v += DEC_THREADS) { // the drawable tokens by probability, then id: each its rank
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
    double u = (double)(mix64((a.keys[b] ^ mix64(*a.index + GOLDEN)) + GOLDEN) >> 11) * 0x1.0p-53;
    double x = u * kept, acc = 0;
    int pick = keep < 1 ? best : order[keep - 1]; // keep < 1: as sample_pick (unreachable: best's weight is 1)
    for (int i = 0; i < keep; i++) {
        acc += p[order[i]];
        if (x < acc) {
            pick = order[i];
            break;
        }
    }
    a.tok[b] = pick;
}

// ---- an op, as a kernel of its own or one step of the one-launch program ----------------------------------------
// kind (the 16 suffix: bfloat16 weights), its grid (gx, gy) of DEC_THREADS blocks, its arguments
enum DecKind {
    DK_GEMV, DK_GEMV16, DK_LN_GEMV, DK_LN_GEMV16, DK_EMB_GEMV, DK_EMB_GEMV16, DK_ADD_LN, DK_COPY, DK_ATT_PART,
    DK_COMBINE, DK_CMB_GEMV, DK_CMB_GEMV16, DK_DOWN, DK_UP_ADD, DK_DRAW
};
struct DecOp {
    int kind;
    unsigned gx, gy;
    union {
        GemvArgs gemv;
        LnGemvArgs ln_gemv;
        EmbGemvArgs emb_gemv;
        AddLnArgs add_ln;
        CopyArgs copy;
        AttPartArgs att_part;
        CombineArgs combine;
        CmbGemvArgs cmb_gemv;
        DownArgs down;
        UpAddArgs up_add;
        DrawArgs draw;
    } a;
};

// block (bx, by) of op o, of kind K (DK_N: as o.kind says), its wait dec_wait's
#define DK_N (-1)
template <int K> __device__ static void run_op(const DecOp &o, int bx, int by, unsigned wait)
{
    int k = K == DK_N ? o.kind : K;
    switch (k) {
    case DK_GEMV: gemv_body<float>(o.a.gemv, bx, wait); break;
    case DK_GEMV16: gemv_body<uint16_t>(o.a.gemv, bx, wait); break;
    case DK_LN_GEMV: ln_gemv_body<float>(o.a.ln_gemv, bx, wait); break;
    case DK_LN_GEMV16: ln_gemv_body<uint16_t>(o.a.ln_gemv, bx, wait); break;
    case DK_EMB_GEMV: emb_gemv_body<float>(o.a.emb_gemv, bx, wait); break;
    case DK_EMB_GEMV16: emb_gemv_body<uint16_t>(o.a.emb_gemv, bx, wait); break;
    case DK_ADD_LN: add_ln_body(o.a.add_ln, bx, wait); break;
    case DK_COPY: copy_body(o.a.copy, bx, o.gx, wait); break;
    case DK_ATT_PART: att_part_body(o.a.att_part, bx, by, wait); break;
    case DK_COMBINE: combine_body(o.a.combine, bx, wait); break;
    case DK_CMB_GEMV: cmb_gemv_body<float>(o.a.cmb_gemv, bx, wait); break;
    case DK_CMB_GEMV16: cmb_gemv_body<uint16_t>(o.a.cmb_gemv, bx, wait); break;
    case DK_DOWN: down_body(o.a.down, bx, o.gx, wait); break;
    case DK_UP_ADD: up_add_body(o.a.up_add, bx, o.gx, wait); break;
    case DK_DRAW: draw_body(o.a.draw, bx, wait); break;
    }
}

// an op as a kernel of its own: its grid is (o.gx, o.gy). At least 3 blocks a multiprocessor (at most 85 registers:
// ptxas, sm_90, no spills), the separate kernels' occupancy before their bodies were shared
template <int K> __global__ static void __launch_bounds__(DEC_THREADS, 3) dec_op_k(const __grid_constant__ DecOp o)
{
    pdl_release();
    run_op<K>(o, blockIdx.x, blockIdx.y, DEC_PDL);
}

typedef void (*DecKernel)(const DecOp);
static DecKernel dec_kernel(int kind)
{
    switch (kind) {
    case DK_GEMV: return dec_op_k<DK_GEMV>;
    case DK_GEMV16: return dec_op_k<DK_GEMV16>;
    case DK_LN_GEMV: return dec_op_k<DK_LN_GEMV>;
    case DK_LN_GEMV16: return dec_op_k<DK_LN_GEMV16>;
    case DK_EMB_GEMV: return dec_op_k<DK_EMB_GEMV>;
    case DK_EMB_GEMV16: return dec_op_k<DK_EMB_GEMV16>;
    case DK_ADD_LN: return dec_op_k<DK_ADD_LN>;
    case DK_COPY: return dec_op_k<DK_COPY>;
    case DK_ATT_PART: return dec_op_k<DK_ATT_PART>;
    case DK_COMBINE: return dec_op_k<DK_COMBINE>;
    case DK_CMB_GEMV: return dec_op_k<DK_CMB_GEMV>;
    case DK_CMB_GEMV16: return dec_op_k<DK_CMB_GEMV16>;
    case DK_DOWN: return dec_op_k<DK_DOWN>;
    case DK_UP_ADD: return dec_op_k<DK_UP_ADD>;
    default: return dec_op_k<DK_DRAW>;
    }
}

// ---- one launch per step (gpu_dec_mega) --------------------------------------------------------------------------
// The recorded ops run by one persistent kernel of a block per multiprocessor (at most the largest op's grid): each
// block runs op i's virtual blocks bx = blockIdx.x, blockIdx.x + gridDim.x, ..., then arrives at its end
// (dec_arrive: one counter, integer atomics); a block's first virtual block of op i fetches its weights, then
// waits (dec_wait) until every block has arrived at the ends of ops 0 .. i-1 (i x gridDim.x arrivals), so it sees
// every write of the ops before it, as after a kernel boundary: a grid barrier split in two, its wait at the
// body's pdl_wait point (a block with no part in the op waits too, then arrives). The blocks are all resident (one
// per multiprocessor, which the occupancy the GPU reports holds; the launch, a cooperative one, fails rather than
// start with fewer, and starts once the kernel before has finished), so no wait is for a block that never runs.
// The program is the kernel's argument (__grid_constant__: read in place, never copied), in one of three sizes.
#define MEGA_MAX_OPS 128
template <int CAP> struct DecProgram {
    int n;
    DecOp op[CAP];
};
static_assert(sizeof(DecProgram<MEGA_MAX_OPS>) <= 32764, "a kernel's parameters: at most 32,764 bytes");
// the most dynamic shared memory an op brings to the program (the separate kernels' own limit is below it)
#define MEGA_SMEM (48 << 10)

template <int CAP> __global__ static void __launch_bounds__(DEC_THREADS) dec_mega_k(const __grid_constant__ DecProgram<CAP> p)
{
    unsigned nb = gridDim.x;
    for (int i = 0; i < p.n; i++) {
        const DecOp &o = p.op[i];
        unsigned nvb = o.gx * o.gy, wait = (unsigned)i * nb; // every block's arrivals at the ends of ops 0 .. i-1
        for (unsigned vb = blockIdx.x; vb < nvb; vb += nb) {
            run_op<DK_N>(o, (int)(vb % o.gx), (int)(vb / o.gx), vb == blockIdx.x ? wait : 0);
            __syncthreads(); // the next virtual block reuses the shared memory
        }
        // A block with no part in op i waits all the same: so no block arrives at op i's end before every block
        // has arrived at op i-1's, and the count's first i x nb arrivals are always those of ops 0 .. i-1 (a
        // block that went straight on would count its op i arrival toward op i-1's)
        if (blockIdx.x >= nvb) dec_wait(wait);
        dec_arrive((unsigned)p.n * nb);
    }
}

// The recording: on between gpu_dec_mega(1) and (0); ops since the last launch, the largest shared memory and grid
static struct {
    int on, n;
    size_t smem;
    unsigned blocks;
    DecOp op[MEGA_MAX_OPS];
} g_mega;

// blocks of the program's kernel: HMT_GPU_DECODE_MEGA_BLOCKS (default 1) per multiprocessor, at most as many as
// one holds at MEGA_SMEM (fewer blocks: fewer arrivals to wait for at each op's end; more: more loads in flight;
// an op of more blocks takes them in turn). Asked once per size and device (held[], cleared by gpu_dec_mega_drop);
// 0: none (an error kept)
static unsigned g_mega_held[3];
template <int CAP> static unsigned mega_resident(void)
{
#ifdef GPU_EMU
    // the shared memory asked for as on a GPU (its static arrays and MEGA_SMEM are over 48 KiB: check_launch.sh)
    cudaError_t e = cudaFuncSetAttribute(dec_mega_k<CAP>, cudaFuncAttributeMaxDynamicSharedMemorySize, MEGA_SMEM);
    if (e != cudaSuccess) gpu_record("gpu_dec_mega", cudaGetErrorString(e));
    return e == cudaSuccess ? 3 : 0; // the emulator's every block lives at once; three so ops of more blocks take turns
#else
    unsigned &held = g_mega_held[CAP == 32 ? 0 : CAP == 64 ? 1 : 2];
    if (held) return held;
    int dev = 0, sms = 0, per = 0;
    cudaError_t e = cudaGetDevice(&dev);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    if (e == cudaSuccess)
        e = cudaFuncSetAttribute(dec_mega_k<CAP>, cudaFuncAttributeMaxDynamicSharedMemorySize, MEGA_SMEM);
    if (e == cudaSuccess) e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per, dec_mega_k<CAP>, DEC_THREADS, MEGA_SMEM);
    const char *env = getenv("HMT_GPU_DECODE_MEGA_BLOCKS");
    int want = env && atoi(env) > 0 ? atoi(env) : 1;
    if (e != cudaSuccess) gpu_record("gpu_dec_mega", cudaGetErrorString(e));
    else if (per < 1) gpu_record("gpu_dec_mega", "the one-launch step's kernel does not fit a multiprocessor");
    else held = (unsigned)sms * (unsigned)(want < per ? want : per);
    return held;
#endif
}

// the recorded ops as a program of CAP >= g_mega.n
template <int CAP> static void mega_launch(void)
{
    unsigned grid = mega_resident<CAP>();
    if (!grid) return;
    if (grid > g_mega.blocks) grid = g_mega.blocks;
    static DecProgram<CAP> p; // (large: not on the stack) copied into the launch's parameters
    p.n = g_mega.n;
    memcpy(p.op, g_mega.op, (size_t)g_mega.n * sizeof *p.op);
    LAUNCH_GRID(dec_mega_k<CAP>, grid, DEC_THREADS, g_mega.smem)(p);
}

void gpu_dec_mega_flush(void)
{
    int n = g_mega.n;
    if (!n) return;
    if (n == 1) { // one op: its own kernel
        const DecOp &o = g_mega.op[0];
        LAUNCH_PDL(dec_kernel(o.kind), dim3(o.gx, o.gy), DEC_THREADS, g_mega.smem)(o);
    } else if (n <= 32) {
        mega_launch<32>();
    } else if (n <= 64) {
        mega_launch<64>();
    } else {
        mega_launch<MEGA_MAX_OPS>();
    }
    g_mega.n = 0;
    gpu_launched(n == 1 ? "gpu_dec_mega (one op)" : "gpu_dec_mega");
}

void gpu_dec_mega(int on)
{
    if (!on) gpu_dec_mega_flush();
    g_mega.on = on && !gpu_op_by_op(); // (timed or checked op by op: each its own kernel)
    if (g_mega.on && !gpu_dry) // the kernels' set-up now, outside any graph capture
        g_mega.on = mega_resident<32>() && mega_resident<64>() && mega_resident<MEGA_MAX_OPS>();
}

void gpu_dec_mega_drop(void)
{
    g_mega.on = 0, g_mega.n = 0;
    memset(g_mega_held, 0, sizeof g_mega_held);
}

// The op: recorded when gpu_dec_mega is on (launched at the next op of another kind, copy, wait or graph's end:
// gpu_enter), else launched as a kernel of its own (a dependent launch where gpu_pdl_now says)
static void dec_issue(const char *op, const DecOp &o, size_t smem)
{
    if (g_mega.on && !gpu_dry && smem <= MEGA_SMEM) {
        if (g_mega.n == MEGA_MAX_OPS) gpu_dec_mega_flush();
        if (g_mega.n == 0) g_mega.smem = 0, g_mega.blocks = 0;
        g_mega.op[g_mega.n++] = o;
        if (smem > g_mega.smem) g_mega.smem = smem;
        if (o.gx * o.gy > g_mega.blocks) g_mega.blocks = o.gx * o.gy;
        return;
    }
    gpu_dec_mega_flush(); // (recording, an op of more shared memory than the program's: the ops before first)
    LAUNCH_PDL(dec_kernel(o.kind), dim3(o.gx, o.gy), DEC_THREADS, smem)(o);
    gpu_launched(op);
}

// an op of kind k on a grid (gx, gy)
static DecOp dec_op(int kind, unsigned gx, unsigned gy = 1)
{
    DecOp o;
    memset(&o, 0, sizeof o);
    o.kind = kind, o.gx = gx, o.gy = gy;
    return o;
}

// ---- the ops (gpu.h) -----------------------------------------------------------------------------------------------

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
        built = cudaFuncGetAttributes(&at, dec_op_k<DK_GEMV>) == cudaSuccess && at.ptxVersion >= 90;
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

// the matrix-vector body on N <= DL_MAX_ROWS rows (w: float, or bfloat16 when w16)
static void dec_gemv(const char *op, float *out, const float *x, const void *w, int w16, const float *b, int N, int IC,
                     int OC, int relu, DecKV kv)
{
    int wpc = dec_wpc(IC);
    DecOp o = dec_op(w16 ? DK_GEMV16 : DK_GEMV, gpu_blocks(OC, DL_WARPS / wpc));
    o.a.gemv = GemvArgs{out, x, w, b, N, IC, OC, relu, wpc, kv};
    dec_issue(op, o, 0);
}

// bfloat16 weights: the kernel DL_MAX_ROWS rows at a time (each launch reads the weights once)
static void dec_linear16(const char *op, float *out, const float *x, const uint16_t *w, const float *b, int N, int IC,
                         int OC, int relu, DecKV kv)
{
    for (int r0 = 0; r0 < N; r0 += DL_MAX_ROWS) {
        int n = N - r0 < DL_MAX_ROWS ? N - r0 : DL_MAX_ROWS;
        kv.row0 = r0;
        dec_gemv(op, out + (size_t)r0 * OC, x + (size_t)r0 * IC, w, 1, b, n, IC, OC, relu, kv);
    }
}

void gpu_dec_linear(float *out, const float *x, const float *w, const uint16_t *w16, const float *b, int N, int IC,
                    int OC, int relu)
{
    const char *op = w16 ? "gpu_dec_linear16" : "gpu_dec_linear";
    if (!gpu_enter_keep(op) || N <= 0) return;
    if (w16) {
        dec_linear16(op, out, x, w16, b, N, IC, OC, relu, no_kv);
    } else if (N <= DL_MAX_ROWS) {
        dec_gemv(op, out, x, w, 0, b, N, IC, OC, relu, no_kv);
    } else {
        gpu_linear_forward(out, x, w, b, N, IC, OC);
        if (relu) gpu_relu_forward(out, out, (size_t)N * OC);
    }
}

void gpu_dec_linear_qkv(float *out, const float *x, const float *w, const uint16_t *w16, const float *b, int N, int C,
                        float *k, float *v, size_t cs, int n_new)
{
    const char *op = w16 ? "gpu_dec_linear_qkv16" : "gpu_dec_linear_qkv";
    if (!gpu_enter_keep(op) || N <= 0) return;
    if (N % n_new != 0) {
        gpu_record(op, "rows not a whole number of items");
        return;
    }
    DecKV kv = {k, v, cs, C, n_new, 0};
    if (w16) {
        dec_linear16(op, out, x, w16, b, N, C, 3 * C, 0, kv);
    } else if (N <= DL_MAX_ROWS) {
        dec_gemv(op, out, x, w, 0, b, N, C, 3 * C, 0, kv);
    } else {
        gpu_linear_forward(out, x, w, b, N, C, 3 * C);
        int nb = N / n_new;
        gpu_dec_copy_rows(k, cs, C, out + C, (size_t)n_new * 3 * C, 3 * C, nb, n_new, C);
        gpu_dec_copy_rows(v, cs, C, out + 2 * C, (size_t)n_new * 3 * C, 3 * C, nb, n_new, C);
    }
}

void gpu_dec_add_layernorm(float *out, const float *a, const float *b, const float *w, const float *bias, int N, int C)
{
    const char *op = "gpu_dec_add_layernorm";
    if (!gpu_enter_keep(op) || N <= 0) return;
    DecOp o = dec_op(DK_ADD_LN, gpu_blocks(N, DL_WARPS));
    o.a.add_ln = AddLnArgs{out, a, b, w, bias, N, C};
    dec_issue(op, o, 0);
}

// the fused kernels' dynamic shared memory without asking for more: 48 KiB less room for their static arrays
// (gemv_cols' partial sums)
#define DLN_SMEM_MAX ((48 << 10) - 1024)
static_assert(DLN_SMEM_MAX <= MEGA_SMEM, "every op fits the one-launch step");

// the LayerNorm(s) then the product in one kernel when the rows fit it and its shared memory; else the ops (the
// caller's)
static bool dec_ln_linear(const char *op, float *out, const DecLN &l1, const DecLN &l2, const void *w, int w16,
                          const float *bias, int N, int C, int OC, int relu, DecKV kv)
{
    size_t smem = (size_t)N * C * sizeof(float);
    if (N > DL_MAX_ROWS || smem > DLN_SMEM_MAX || (kv.k && N % kv.n_new != 0)) return false;
    int wpc = dec_wpc(C);
    DecOp o = dec_op(w16 ? DK_LN_GEMV16 : DK_LN_GEMV, gpu_blocks(OC, DL_WARPS / wpc));
    o.a.ln_gemv = LnGemvArgs{out, l1, l2, w, bias, N, C, OC, relu, wpc, kv};
    dec_issue(op, o, smem);
    return true;
}

// LayerNorm l1 (and l2 after it when l2.w) then the product (w16 non-NULL: bfloat16 weights), in one kernel where
// dec_ln_linear can, else as gpu_dec_add_layernorm(s) and the product's own op
static void ln_then_product(const char *op, float *out, const DecLN &l1, const DecLN &l2, const float *w,
                            const uint16_t *w16, const float *bias, int N, int C, int OC, int relu, DecKV kv)
{
    if (!gpu_enter_keep(op) || N <= 0) return;
    if (w16 ? dec_ln_linear(op, out, l1, l2, w16, 1, bias, N, C, OC, relu, kv)
            : dec_ln_linear(op, out, l1, l2, w, 0, bias, N, C, OC, relu, kv))
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
    if (!gpu_enter_keep(op) || N <= 0) return;
    size_t smem = (size_t)N * C * sizeof(float);
    DecKV kv = {k, v, cs, C, T, 0};
    if (N <= DL_MAX_ROWS && smem <= DLN_SMEM_MAX) {
        int wpc = dec_wpc(C);
        DecOp o = dec_op(w16 ? DK_EMB_GEMV16 : DK_EMB_GEMV, gpu_blocks(3 * (size_t)C, DL_WARPS / wpc));
        o.a.emb_gemv = EmbGemvArgs{out, DecEmb{x, tok, wte, pe, T}, w16 ? (const void *)w16 : (const void *)w, bias,
                                   N, C, 3 * C, wpc, kv};
        dec_issue(op, o, smem);
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

void gpu_dec_copy_rows(float *dst, size_t dstride, size_t dpitch, const float *src, size_t sstride, size_t spitch,
                       int nb, int rows, int width)
{
    const char *op = "gpu_dec_copy_rows";
    if (!gpu_enter_keep(op) || nb <= 0 || rows <= 0 || width <= 0) return;
    size_t n = (size_t)nb * rows * width;
    DecOp o = dec_op(DK_COPY, ew_blocks(n));
    o.a.copy = CopyArgs{dst, dstride, dpitch, src, sstride, spitch, rows, width, n};
    dec_issue(op, o, 0);
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
    DecOp o = dec_op(DK_ATT_PART, (unsigned)(B * NH * n), (unsigned)n_split);
    o.a.att_part = AttPartArgs{scratch, q, ldq, k, v, cap, ers, NH, C, n, p0, Tk, keys, s, n_split, scale};
    dec_issue(op, o, 0);
    return n_split;
}

void gpu_dec_attend(float *out, float *scratch, const float *q, int ldq, const float *k, const float *v, int cap,
                    const float *ers, int B, int NH, int C, int n, int p0, int Tk, int keys, int s)
{
    const char *op = "gpu_dec_attend";
    if (!gpu_enter_keep(op) || n <= 0) return;
    int n_split = dec_attend_part(op, scratch, q, ldq, k, v, cap, ers, B, NH, C, n, p0, Tk, keys, s);
    if (!n_split) return;
    DecOp o = dec_op(DK_COMBINE, (unsigned)(B * NH * n));
    o.a.combine = CombineArgs{out, scratch, NH, C, n, n_split};
    dec_issue(op, o, (n_split + 1) * sizeof(float));
}

void gpu_dec_attend_proj(float *proj, float *att, float *scratch, const float *q, int ldq, const float *k,
                         const float *v, int cap, const float *ers, int B, int NH, int C, int n, int p0, int Tk,
                         int keys, int s, const float *w, const uint16_t *w16, const float *bias)
{
    const char *op = "gpu_dec_attend_proj";
    if (!gpu_enter_keep(op) || n <= 0) return;
    int N = B * n, wpc = dec_wpc(C), n_split = (Tk + ATT_KEYS - 1) / ATT_KEYS;
    size_t smem = ((size_t)N * C + (size_t)N * NH * (n_split + 1)) * sizeof(float);
    if (N > DL_MAX_ROWS || smem > DLN_SMEM_MAX) { // the two ops
        gpu_dec_attend(att, scratch, q, ldq, k, v, cap, ers, B, NH, C, n, p0, Tk, keys, s);
        gpu_dec_linear(proj, att, w, w16, bias, N, C, C, 0);
        return;
    }
    if (!dec_attend_part(op, scratch, q, ldq, k, v, cap, ers, B, NH, C, n, p0, Tk, keys, s)) return;
    DecOp o = dec_op(w16 ? DK_CMB_GEMV16 : DK_CMB_GEMV, gpu_blocks(C, DL_WARPS / wpc));
    o.a.cmb_gemv = CmbGemvArgs{proj, scratch, NH, C, n, n_split, w16 ? (const void *)w16 : (const void *)w, bias, N,
                               C, wpc};
    dec_issue(op, o, smem);
}

void gpu_dec_down(float *out, const float *h, int B, int cap, int C, int s, int i0, int n_s, int mean)
{
    const char *op = "gpu_dec_down";
    if (!gpu_enter_keep(op) || n_s <= 0) return;
    size_t n = (size_t)B * n_s * C * (mean ? 1 : s);
    DecOp o = dec_op(DK_DOWN, ew_blocks(n));
    o.a.down = DownArgs{out, h, cap, C, s, i0, n_s, mean, n};
    dec_issue(op, o, 0);
}

void gpu_dec_up_add(float *u, const float *up, const float *h, int B, int n, int p0, int cap, int cap_s, int C, int s,
                    int lin)
{
    const char *op = "gpu_dec_up_add";
    if (!gpu_enter_keep(op) || n <= 0) return;
    size_t total = (size_t)B * n * C;
    DecOp o = dec_op(DK_UP_ADD, ew_blocks(total));
    o.a.up_add = UpAddArgs{u, up, h, n, p0, cap, cap_s, C, s, lin, total};
    dec_issue(op, o, 0);
}

static size_t gpu_dec_draw_smem(int V) { return (size_t)V * (2 * sizeof(float) + sizeof(int)); }

void gpu_dec_draw(int32_t *tok, const float *logits, int B, int V, const uint32_t *mask, const uint64_t *keys,
                  const uint64_t *index, const double *opts)
{
    const char *op = "gpu_dec_draw";
    if (!gpu_enter_keep(op) || B <= 0) return;
    if (V < 1 || V > GPU_DRAW_MAX_V) { // 45 KiB of dynamic shared memory, 2 KiB static: under the 48 KiB default
        gpu_record(op, "a vocabulary of more than GPU_DRAW_MAX_V (3840) tokens");
        return;
    }
    DecOp o = dec_op(DK_DRAW, (unsigned)B);
    o.a.draw = DrawArgs{tok, logits, V, mask, (V + 31) / 32, keys, index, opts};
    dec_issue(op, o, gpu_dec_draw_smem(V));
}
