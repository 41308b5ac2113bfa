// gpu_ops: the CUDA implementation of every op of ops.h (see gpu.h for the contract: device pointers, backward
// accumulates, errors kept). Matmuls are cuBLAS sgemm through gpu_gemm; the rest are kernels written from ops.c's
// arithmetic, in the same operation order where that makes the bytes equal (elementwise ops, dropout, resampling,
// embedding; the build uses --fmad=false so no multiply-add is fused). Reductions never use float atomics: one
// thread or one block owns each output and sums in a fixed order, or per-block partials are summed in block order.
#include <math.h>
#include <stdint.h>

#include "gpu_internal.cuh"


// ---- embedding ----------------------------------------------------------------------------------------------

// out[b,t,c] = wte[tok[b,t], c] + pe[t, c]
__global__ static void encoder_fwd_k(float *out, const int32_t *tok, const float *wte, const float *pe, int T, int C,
                                     size_t n)
{
    GRID_STRIDE(i, n)
    {
        size_t bt = i / C;
        int c = (int)(i % C), t = (int)(bt % T);
        out[i] = wte[(size_t)tok[bt] * C + c] + pe[(size_t)t * C + c];
    }
}

void gpu_encoder_forward(float *out, const int32_t *tok, const float *wte, const float *pe, int B, int T, int C)
{
    const char *op = "gpu_encoder_forward";
    if (!gpu_enter(op)) return;
    size_t n = (size_t)B * T * C;
    LAUNCH(encoder_fwd_k, ew_blocks(n), EW_THREADS)(out, tok, wte, pe, T, C, n);
    gpu_launched(op);
}

// dwte[v] += the dout rows of the positions holding v, in position order, as encoder_backward does (so the same
// bytes, and no atomics); PAD (v = 0) is skipped. A counting sort of the positions by token first: the count of
// every token, their running sum (the start of each token's list), the lists in position order; then one block per
// (token, 128 columns) sums its rows. Each pass reads the tokens or dout once, instead of every block scanning all.
#define ENC_THREADS 256

// count[v] = the positions holding v; one block per v
__global__ static void enc_count_k(int *count, const int32_t *tok, int n_tok)
{
    __shared__ int red[32];
    int v = blockIdx.x, c = 0;
    for (int i = threadIdx.x; i < n_tok; i += blockDim.x) c += tok[i] == v;
    c = block_sum(c, red);
    if (threadIdx.x == 0) count[v] = c;
}

// start[v] = count[0] + ... + count[v-1]; one thread (the vocabulary is small)
__global__ static void enc_start_k(int *start, const int *count, int V)
{
    int run = 0;
    for (int v = 0; v < V; v++) start[v] = run, run += count[v];
}

// list[start[v] ..] = the positions holding v, in order; one block per v, ENC_THREADS positions at a time: a flag
// per thread, the block's prefix sum of the flags (warp scans, then the warps' totals) gives each its slot
__global__ static void enc_list_k(int *list, const int *start, const int32_t *tok, int n_tok)
{
    __shared__ int warp_tot[ENC_THREADS / 32];
    int v = blockIdx.x, lane = threadIdx.x & 31, warp = threadIdx.x >> 5, at = start[v];
    for (int i0 = 0; i0 < n_tok; i0 += blockDim.x) {
        int i = i0 + threadIdx.x, f = i < n_tok && tok[i] == v, x = f;
        for (int o = 1; o < 32; o <<= 1) { // inclusive scan over the warp
            int y = __shfl_up_sync(0xffffffffu, x, o);
            if (lane >= o) x += y;
        }
        if (lane == 31) warp_tot[warp] = x;
        __syncthreads();
        int before = 0, total = 0;
        for (int w = 0; w < (int)(blockDim.x >> 5); w++) before += w < warp ? warp_tot[w] : 0, total += warp_tot[w];
        if (f) list[at + before + x - 1] = i;
        at += total;
        __syncthreads(); // warp_tot is read
    }
}

// one block per (v, 128 columns): dwte[v, c] += dout[p, c] over v's positions p in order
__global__ static void enc_sum_k(float *dwte, const float *dout, const int *list, const int *start, const int *count,
                                 int C)
{
    int v = blockIdx.x, c = blockIdx.y * blockDim.x + threadIdx.x;
    if (v == 0 || c >= C) return;
    const int *l = list + start[v];
    float acc = dwte[(size_t)v * C + c];
    for (int k = 0, n = count[v]; k < n; k++) acc += dout[(size_t)l[k] * C + c];
    dwte[(size_t)v * C + c] = acc;
}

void gpu_encoder_backward(float *dwte, const float *dout, const int32_t *tok, int B, int T, int C, int V)
{
    const char *op = "gpu_encoder_backward";
    if (!gpu_enter(op)) return;
    int n = B * T;
    int *count = (int *)gpu_workspace(op, (2 * (size_t)V + n) * sizeof(int));
    if (!count) return;
    int *start = count + V, *list = start + V;
    LAUNCH(enc_count_k, V, ENC_THREADS)(count, tok, n);
    gpu_launched(op);
    LAUNCH(enc_start_k, 1, 1)(start, count, V);
    gpu_launched(op);
    LAUNCH(enc_list_k, V, ENC_THREADS)(list, start, tok, n);
    gpu_launched(op);
    LAUNCH(enc_sum_k, dim3(V, gpu_blocks(C, 128)), 128)(dwte, dout, list, start, count, C);
    gpu_launched(op);
}

// ---- column sums (linear db, LayerNorm dw/db): per chunk of rows, then the chunks in order -------------------

#define COL_ROWS 64 // rows per partial sum
#define COL_THREADS 128

// part[k, c] = sum over rows r in chunk k (in order) of g[r, c]  (and, with x, of g * (x - mean) * rstd in part2)
__global__ static void colsum_part_k(float *part, float *part2, const float *g, const float *x, const float *mean,
                                     const float *rstd, int N, int C)
{
    int c = blockIdx.x * blockDim.x + threadIdx.x, k = blockIdx.y;
    if (c >= C) return;
    int r1 = (k + 1) * COL_ROWS < N ? (k + 1) * COL_ROWS : N;
    float s = 0.0f, s2 = 0.0f;
    for (int r = k * COL_ROWS; r < r1; r++) {
        float gv = g[(size_t)r * C + c];
        s += gv;
        if (x) s2 += gv * ((x[(size_t)r * C + c] - mean[r]) * rstd[r]);
    }
    part[(size_t)k * C + c] = s;
    if (x) part2[(size_t)k * C + c] = s2;
}

// out[c] += sum over chunks k in order of part[k, c]
__global__ static void colsum_final_k(float *out, const float *part, int chunks, int C)
{
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float s = 0.0f;
    for (int k = 0; k < chunks; k++) s += part[(size_t)k * C + c];
    out[c] += s;
}

// dst = g's bfloat16 and part[k, c] = the sum of g over the rows of chunk k, in order (colsum_part_k's grid and sums),
// from one read: g = src, or with relu16 the ReLU + dropout backward's gradient into zeros, +0 + (relu16 not +0 ?
// src * scale : +0) (dropout_bwd_k's; relu16 not +0 exactly where the forward's float32 output is > 0)
__global__ static void bf16_colsum_k(uint16_t *dst, float *part, const float *src, const uint16_t *relu16, float scale,
                                     int N, int C)
{
    int c = blockIdx.x * blockDim.x + threadIdx.x, k = blockIdx.y;
    if (c >= C) return;
    int r1 = (k + 1) * COL_ROWS < N ? (k + 1) * COL_ROWS : N;
    float s = 0.0f;
    for (int r = k * COL_ROWS; r < r1; r++) {
        size_t i = (size_t)r * C + c;
        float g = relu16 ? 0.0f + (relu16[i] != 0 ? src[i] * scale : 0.0f) : src[i];
        dst[i] = to_bf16(g);
        s += g;
    }
    part[(size_t)k * C + c] = s;
}

int gpu_colsum_chunks(int N) { return N > 0 ? (N + COL_ROWS - 1) / COL_ROWS : 0; }

// bf16_colsum_k, then db += the chunks' sums in order
static void bf16_colsums(const char *op, uint16_t *dst, float *part, float *db, const float *src,
                         const uint16_t *relu16, float scale, int N, int C)
{
    int chunks = gpu_colsum_chunks(N);
    if (chunks == 0 || C <= 0) return;
    LAUNCH(bf16_colsum_k, dim3(gpu_blocks(C, COL_THREADS), chunks), COL_THREADS)(dst, part, src, relu16, scale, N, C);
    gpu_launched(op);
    LAUNCH(colsum_final_k, gpu_blocks(C, COL_THREADS), COL_THREADS)(db, part, chunks, C);
    gpu_launched(op);
}

void gpu_bf16_colsums(const char *op, uint16_t *dst, float *part, float *db, const float *src, int N, int C)
{
    bf16_colsums(op, dst, part, db, src, NULL, 1.0f, N, C);
}

// db[c] += sum_n g[n,c]; with x (LayerNorm): dw[c] += sum_n g[n,c] * xhat[n,c] too
static void colsums(const char *op, float *db, float *dw, const float *g, const float *x, const float *mean,
                    const float *rstd, int N, int C)
{
    int chunks = (N + COL_ROWS - 1) / COL_ROWS;
    if (chunks == 0) return;
    float *part = (float *)gpu_workspace(op, (size_t)chunks * C * (x ? 2 : 1) * sizeof(float));
    if (!part) return;
    float *part2 = x ? part + (size_t)chunks * C : NULL;
    dim3 grid(gpu_blocks(C, COL_THREADS), chunks);
    LAUNCH(colsum_part_k, grid, COL_THREADS)(part, part2, g, x, mean, rstd, N, C);
    gpu_launched(op);
    LAUNCH(colsum_final_k, gpu_blocks(C, COL_THREADS), COL_THREADS)(db, part, chunks, C);
    gpu_launched(op);
    if (x) {
        LAUNCH(colsum_final_k, gpu_blocks(C, COL_THREADS), COL_THREADS)(dw, part2, chunks, C);
        gpu_launched(op);
    }
}

// ---- linear -------------------------------------------------------------------------------------------------

void gpu_linear_forward(float *out, const float *inp, const float *w, const float *b, int N, int IC, int OC)
{
    const char *op = "gpu_linear_forward";
    if (!gpu_enter(op)) return;
    gpu_linear_forward_product(op, out, inp, NULL, w, b, N, IC, OC);
}

// dinp's product adds to dinp (beta 1) or, where dinp was declared zero (gpu_fresh), writes it (beta 0)
static float dinp_beta(const float *dinp, int N, int IC)
{
    return dinp && N > 0 && IC > 0 && gpu_fresh_take(dinp, (size_t)N * IC * sizeof(float)) ? 0.0f : 1.0f;
}

// backward of: out = inp @ w^T + b
void gpu_linear_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w, int N,
                         int IC, int OC)
{
    const char *op = "gpu_linear_backward";
    float beta = dinp_beta(dinp, N, IC);
    if (!gpu_enter(op)) return;
    if (gpu_bf16_ours() && IC > 0) { // the products on bf16 copies, dout's made with the bias's sums
        gpu_linear_products16_backward(op, dinp, beta, dw, db, dout, NULL, inp, NULL, w, N, IC, OC);
        return;
    }
    if (dinp) gpu_gemm_linear(op, 0, 0, N, IC, OC, 1.0f, dout, OC, w, IC, beta, dinp, IC);
    gpu_gemm_linear(op, 1, 0, OC, IC, N, 1.0f, dout, OC, inp, IC, 1.0f, dw, IC);
    if (db) colsums(op, db, NULL, dout, NULL, NULL, NULL, N, OC);
}

// the linear layer on a bfloat16 input (gpu.h): gpu_linear_forward's order, the product on inp16 as it is
void gpu_linear_forward16(float *out, const uint16_t *inp16, const float *w, const float *b, int N, int IC, int OC)
{
    const char *op = "gpu_linear_forward16";
    if (!gpu_enter(op)) return;
    gpu_linear_forward_product(op, out, NULL, inp16, w, b, N, IC, OC);
}

void gpu_linear_backward16(float *dinp, float *dw, float *db, const float *dout, const uint16_t *inp16, const float *w,
                           int N, int IC, int OC)
{
    const char *op = "gpu_linear_backward16";
    float beta = dinp_beta(dinp, N, IC);
    if (!gpu_enter(op)) return;
    if (IC > 0) gpu_linear_products16_backward(op, dinp, beta, dw, db, dout, NULL, NULL, inp16, w, N, IC, OC);
    else if (db) colsums(op, db, NULL, dout, NULL, NULL, NULL, N, OC);
}

// the linear layer's backward products on a bfloat16 gradient (its bias's sums made by its producer)
void gpu_linear_backward_g16(float *dinp, float *dw, const uint16_t *dout16, const float *inp, const uint16_t *inp16,
                             const float *w, int N, int IC, int OC)
{
    const char *op = "gpu_linear_backward_g16";
    float beta = dinp_beta(dinp, N, IC);
    if (!gpu_enter(op)) return;
    gpu_linear_products16_backward(op, dinp, beta, dw, NULL, NULL, dout16, inp16 ? NULL : inp, inp16, w, N, IC, OC);
}

// ---- LayerNorm (PyTorch nn.LayerNorm: biased variance, eps 1e-5 inside the square root) ------------------------

#define LN_WARPS 4 // rows per block, one warp per row


// LayerNorm of row `row` by one warp (lane 0..31): out, mean[row], rstd[row] (and out16 unless NULL)
__device__ static void ln_row(float *out, uint16_t *out16, float *mean, float *rstd, const float *inp, const float *w,
                              const float *b, int row, int C, int lane)
{
    size_t at = (size_t)row * C;
    warp_ln_row(out + at, NULL, out16 ? out16 + at : NULL, lane == 0 ? mean + row : NULL,
                lane == 0 ? rstd + row : NULL, inp + at, NULL, w, b, C, lane);
}

__global__ static void ln_fwd_k(float *out, float *mean, float *rstd, const float *inp, const float *w, const float *b,
                                int N, int C)
{
    int row = blockIdx.x * LN_WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row < N) ln_row(out, NULL, mean, rstd, inp, w, b, row, C, lane);
}

void gpu_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w, const float *b,
                           int N, int C)
{
    const char *op = "gpu_layernorm_forward";
    if (!gpu_enter(op)) return;
    LAUNCH(ln_fwd_k, gpu_blocks(N, LN_WARPS), 32 * LN_WARPS)(out, mean, rstd, inp, w, b, N, C);
    gpu_launched(op);
}

// The warp's row of LayerNorm's backward: *sd = mean(dxhat), *sdx = mean(dxhat * xhat), dxhat = g * w
__device__ static void ln_bwd_stats(float *sd, float *sdx, const float *x, const float *g, const float *w, float m,
                                   float r, int C, int lane)
{
    float a = 0.0f, bsum = 0.0f;
    for (int c = lane; c < C; c += 32) {
        float xhat = (x[c] - m) * r, dxhat = g[c] * w[c];
        a += dxhat;
        bsum += dxhat * xhat;
    }
    *sd = warp_sum(a) / (float)C;
    *sdx = warp_sum(bsum) / (float)C;
}

// dx += r * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dxhat = g * w; one warp per row; dx0: dx taken
// as zeros (gpu_fresh), not read
__global__ static void ln_bwd_k(float *dinp, int dx0, const float *dout, const float *inp, const float *w,
                                const float *mean, const float *rstd, int N, int C)
{
    int row = blockIdx.x * LN_WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    const float *x = inp + (size_t)row * C, *g = dout + (size_t)row * C;
    float m = mean[row], r = rstd[row], sd, sdx;
    ln_bwd_stats(&sd, &sdx, x, g, w, m, r, C, lane);
    float *dx = dinp + (size_t)row * C;
    for (int c = lane; c < C; c += 32) {
        float xhat = (x[c] - m) * r;
        dx[c] = (dx0 ? 0.0f : dx[c]) + r * (g[c] * w[c] - sd - xhat * sdx);
    }
}

// backward of: out = (x - mean) * rstd * w + b
void gpu_layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                            const float *mean, const float *rstd, int N, int C)
{
    const char *op = "gpu_layernorm_backward";
    int dx0 = gpu_fresh_take(dinp, (size_t)N * C * sizeof(float));
    if (!gpu_enter(op)) return;
    LAUNCH(ln_bwd_k, gpu_blocks(N, LN_WARPS), 32 * LN_WARPS)(dinp, dx0, dout, inp, w, mean, rstd, N, C);
    gpu_launched(op);
    colsums(op, db, dw, dout, inp, mean, rstd, N, C);
}

// ---- residual + dropout + LayerNorm, fused (the model's "x = LN(x + drop(y))") ----------------------------------
// The separate kernels' arithmetic in their order, so the same bytes as gpu_dropout_forward, gpu_add_forward and
// gpu_layernorm_forward (and, backward, gpu_layernorm_backward into zeros, gpu_accumulate, gpu_dropout_backward into
// zeros), with one pass over the rows instead of three; the warp that writes a row of res reads it back.

// dropout's backward scale: 1/(1-p), 1 without dropout, 0 for p >= 1 (as ops.c)
static float dropout_bwd_scale(float p) { return p <= 0.0f ? 1.0f : (p < 1.0f ? 1.0f / (1.0f - p) : 0.0f); }

__global__ static void res_ln_fwd_k(float *out, uint16_t *out16, float *mean, float *rstd, float *res, uint8_t *mask,
                                    const float *x, const float *y, float scale, uint32_t thr, SeedRef seed, int copy,
                                    const float *w, const float *b, int N, int C)
{
    int row = blockIdx.x * LN_WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    uint64_t key = copy ? 0 : dropout_key(seed_dev(seed));
    for (int c = lane; c < C; c += 32) {
        size_t i = (size_t)row * C + c;
        float d;
        if (copy) {
            d = y[i];
            if (mask) mask[i] = 1;
        } else {
            int keep = drop_keep(key, thr, i);
            if (mask) mask[i] = (uint8_t)keep;
            d = keep ? y[i] * scale : 0.0f;
        }
        res[i] = x[i] + d;
    }
    ln_row(out, out16, mean, rstd, res, w, b, row, C, lane);
}

void gpu_residual_layernorm_forward(float *out, uint16_t *out16, float *mean, float *rstd, float *res, uint8_t *mask,
                                    const float *x, const float *y, float p, SeedRef seed, const float *w,
                                    const float *b, int N, int C)
{
    const char *op = "gpu_residual_layernorm_forward";
    if (!gpu_enter(op)) return;
    float scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
    LAUNCH(res_ln_fwd_k, gpu_blocks(N, LN_WARPS), 32 * LN_WARPS)(out, out16, mean, rstd, res, mask, x, y, scale,
                                                                 drop_threshold(p), seed, p <= 0.0f, w, b, N, C);
    gpu_launched(op);
}

// without a mask (NULL) the forward's bits are drawn again from the seed (copy: p <= 0, every element kept); dx0,
// dy0: dx, dy taken as zeros (gpu_fresh), not read
__global__ static void res_ln_bwd_k(float *dx, float *dy, int dx0, int dy0, const float *dout, const float *res,
                                    const uint8_t *mask, float scale, uint32_t thr, SeedRef seed, int copy,
                                    const float *w, const float *mean, const float *rstd, int N, int C)
{
    int row = blockIdx.x * LN_WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    uint64_t key = mask || copy ? 0 : dropout_key(seed_dev(seed));
    size_t at = (size_t)row * C;
    const float *x = res + at, *g = dout + at;
    float m = mean[row], r = rstd[row], sd, sdx;
    ln_bwd_stats(&sd, &sdx, x, g, w, m, r, C, lane);
    for (int c = lane; c < C; c += 32) {
        float xhat = (x[c] - m) * r, gr = 0.0f + r * (g[c] * w[c] - sd - xhat * sdx);
        dx[at + c] = (dx0 ? 0.0f : dx[at + c]) + gr;
        int keep = mask ? mask[at + c] != 0 : copy || drop_keep(key, thr, at + c);
        dy[at + c] = (dy0 ? 0.0f : dy[at + c]) + (keep ? gr * scale : 0.0f);
    }
}

void gpu_residual_layernorm_backward(float *dx, float *dy, float *dw, float *db, const float *dout, const float *res,
                                     const uint8_t *mask, float p, SeedRef seed, const float *w, const float *mean,
                                     const float *rstd, int N, int C)
{
    const char *op = "gpu_residual_layernorm_backward";
    size_t bytes = (size_t)N * C * sizeof(float);
    int dx0 = gpu_fresh_take(dx, bytes), dy0 = gpu_fresh_take(dy, bytes);
    if (!gpu_enter(op)) return;
    LAUNCH(res_ln_bwd_k, gpu_blocks(N, LN_WARPS), 32 * LN_WARPS)(dx, dy, dx0, dy0, dout, res, mask,
                                                                 dropout_bwd_scale(p), drop_threshold(p), seed,
                                                                 p <= 0.0f, w, mean, rstd, N, C);
    gpu_launched(op);
    colsums(op, db, dw, dout, res, mean, rstd, N, C);
}

// ---- elementwise --------------------------------------------------------------------------------------------

__global__ static void relu_k(float *out, const float *inp, size_t n)
{
    GRID_STRIDE(i, n) out[i] = inp[i] > 0.0f ? inp[i] : 0.0f;
}
// dinp += (out > 0 ? dout : +0): ops.c's vector lanes add +0 where masked
__global__ static void relu_bwd_k(float *dinp, const float *dout, const float *out, size_t n)
{
    GRID_STRIDE(i, n) dinp[i] = dinp[i] + (out[i] > 0.0f ? dout[i] : 0.0f);
}
__global__ static void add_k(float *out, const float *a, const float *b, size_t n)
{
    GRID_STRIDE(i, n) out[i] = a[i] + b[i];
}
// dst += src; d0: dst taken as zeros (gpu_fresh), not read (0 + src: a copy with -0 as +0, as on zeros)
__global__ static void acc_k(float *dst, const float *src, int d0, size_t n)
{
    GRID_STRIDE(i, n) dst[i] = (d0 ? 0.0f : dst[i]) + src[i];
}

#define EW_OP(name, kernel, ...)                                                                                       \
    do {                                                                                                               \
        if (!gpu_enter(name) || n == 0) return;                                                                        \
        LAUNCH(kernel, ew_blocks(n), EW_THREADS)(__VA_ARGS__);                                                         \
        gpu_launched(name);                                                                                            \
    } while (0)

void gpu_relu_forward(float *out, const float *inp, size_t n) { EW_OP("gpu_relu_forward", relu_k, out, inp, n); }
void gpu_relu_backward(float *dinp, const float *dout, const float *out, size_t n)
{
    EW_OP("gpu_relu_backward", relu_bwd_k, dinp, dout, out, n);
}
void gpu_add_forward(float *out, const float *a, const float *b, size_t n) { EW_OP("gpu_add_forward", add_k, out, a, b, n); }
void gpu_accumulate(float *dst, const float *src, size_t n)
{
    int d0 = gpu_fresh_take(dst, n * sizeof(float));
    EW_OP("gpu_accumulate", acc_k, dst, src, d0, n);
}

// ---- dropout: ops.c's counter stream, element for element (drop_keep, gpu_internal.cuh) ------------------------

// out = kept (and, with relu, inp > 0) ? inp * scale : +0; mask = kept (unless NULL). p <= 0 (`copy`): every mask
// byte 1.
__global__ static void dropout_k(float *out, uint8_t *mask, const float *inp, float scale, uint32_t thr, SeedRef seed,
                                 int relu, int copy, size_t n)
{
    uint64_t key = copy ? 0 : dropout_key(seed_dev(seed));
    GRID_STRIDE(i, n)
    {
        float x = inp[i];
        if (copy) {
            out[i] = relu ? (x > 0.0f ? x : 0.0f) : x;
            if (mask) mask[i] = 1;
            continue;
        }
        int keep = drop_keep(key, thr, i);
        if (mask) mask[i] = (uint8_t)keep;
        out[i] = keep && (!relu || x > 0.0f) ? x * scale : 0.0f;
    }
}

// dinp += (kept ? dout * scale : +0): kept is mask[i] (dropout) or, with mask NULL, out[i] > 0 (relu + dropout:
// the forward's output is > 0 exactly where it kept a positive input); d0: dinp taken as zeros (gpu_fresh)
__global__ static void dropout_bwd_k(float *dinp, int d0, const float *dout, const uint8_t *mask, const float *out,
                                     float scale, size_t n)
{
    GRID_STRIDE(i, n)
    {
        int keep = mask ? mask[i] != 0 : out[i] > 0.0f;
        dinp[i] = (d0 ? 0.0f : dinp[i]) + (keep ? dout[i] * scale : 0.0f);
    }
}

static void dropout_launch(const char *op, float *out, uint8_t *mask, const float *inp, float p, SeedRef seed,
                           size_t n, int relu)
{
    if (!gpu_enter(op) || n == 0) return;
    float scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
    LAUNCH(dropout_k, ew_blocks(n), EW_THREADS)(out, mask, inp, scale, drop_threshold(p),
                                                           seed, relu, p <= 0.0f, n);
    gpu_launched(op);
}

void gpu_dropout_forward(float *out, uint8_t *mask, const float *inp, float p, SeedRef seed, size_t n)
{
    dropout_launch("gpu_dropout_forward", out, mask, inp, p, seed, n, 0);
}
void gpu_relu_dropout_forward(float *out, uint8_t *mask, const float *inp, float p, SeedRef seed, size_t n)
{
    dropout_launch("gpu_relu_dropout_forward", out, mask, inp, p, seed, n, 1);
}

void gpu_dropout_backward(float *dinp, const float *dout, const uint8_t *mask, float p, size_t n)
{
    const char *op = "gpu_dropout_backward";
    int d0 = gpu_fresh_take(dinp, n * sizeof(float));
    EW_OP(op, dropout_bwd_k, dinp, d0, dout, mask, (const float *)NULL, dropout_bwd_scale(p), n);
}
void gpu_relu_dropout_backward(float *dinp, const float *dout, const float *out, float p, size_t n)
{
    const char *op = "gpu_relu_dropout_backward";
    int d0 = gpu_fresh_take(dinp, n * sizeof(float));
    EW_OP(op, dropout_bwd_k, dinp, d0, dout, (const uint8_t *)NULL, out, dropout_bwd_scale(p), n);
}

// ---- ReLU + dropout into bfloat16 (gpu.h gpu_relu_dropout_forward16) -------------------------------------------

// y = dropout_k's relu output, stored as its bfloat16; a kept y > 0 that rounds to +0 is stored as -0, so that the
// backward's "kept" (bits not +0) is y > 0 exactly
__global__ static void relu_dropout16_k(uint16_t *out, const float *inp, float scale, uint32_t thr, SeedRef seed,
                                        int copy, size_t n)
{
    uint64_t key = copy ? 0 : dropout_key(seed_dev(seed));
    GRID_STRIDE(i, n)
    {
        float x = inp[i];
        float y = copy ? (x > 0.0f ? x : 0.0f) : (drop_keep(key, thr, i) && x > 0.0f ? x * scale : 0.0f);
        uint16_t h = to_bf16(y);
        out[i] = y > 0.0f && h == 0 ? (uint16_t)0x8000u : h;
    }
}

void gpu_relu_dropout_forward16(uint16_t *out, const float *inp, float p, SeedRef seed, size_t n)
{
    const char *op = "gpu_relu_dropout_forward16";
    if (!gpu_enter(op) || n == 0) return;
    float scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
    LAUNCH(relu_dropout16_k, ew_blocks(n), EW_THREADS)(out, inp, scale, drop_threshold(p), seed, p <= 0.0f, n);
    gpu_launched(op);
}

void gpu_relu_dropout_backward16(uint16_t *dinp16, float *db, const float *dout, const uint16_t *out16, float p, int N,
                                 int C)
{
    const char *op = "gpu_relu_dropout_backward16";
    int chunks = (N + COL_ROWS - 1) / COL_ROWS;
    if (!gpu_enter(op) || chunks == 0 || C <= 0) return;
    float *part = (float *)gpu_workspace(op, (size_t)chunks * C * sizeof(float));
    if (part) bf16_colsums(op, dinp16, part, db, dout, out16, dropout_bwd_scale(p), N, C);
}

// ---- attention (Music Transformer relative attention, Huang et al. 2018; ops.c's tiles for the mask) ------------
// S = scale * (q k^T) by cuBLAS into probs, R = scale * (q Er_T^T) by cuBLAS into the workspace (Er_T the last Tq
// rows of Er), then one block per query row: S[i,j] += R[i, Tq-1-i+j] (the skew as a gather), softmax over the
// row's n_keys[i] keys, the dropout mask of ops.c (per (b, h) stream keyed by seed ^ ((b*NH+h)*Tq*Tk), element
// i*Tk+j, drawn for the keys of the row's tile of 128 query rows, 0 beyond), PD = dropout(P); then out = PD v.

#define ATT_ROWS 128 // ops.c's query tile: its mask covers the widest key range of the tile's rows
#define ATT_THREADS 128

typedef struct AttK {
    int Tq, Tk, NH;
    const int *n_keys;
    float keep;    // forward: 1/(1-p) (0 when p >= 1); backward: 1/(1-p), 1 without dropout
    int drop;      // dropout > 0
    uint32_t thr;  // dropout threshold
    SeedRef seed; // AttnDims.seed
    int split;     // causal rows in groups (att_groups): a row's products read only its group's keys (att_kend)
} AttK;

// The keys [0, att_kend) of row i that the products read: its group's with split causal rows (keys past them are
// neither computed nor read, so the kernels leave them unwritten), else all Tk
__device__ static inline int att_kend(const AttK &a, int i)
{
    int e = (i / ATT_ROWS + 1) * ATT_ROWS;
    return a.split && e < a.Tk ? e : a.Tk;
}

// the dropout stream of (b, h) = bh: ops.c's key for seed ^ (bh * Tq * Tk)
__device__ static inline uint64_t att_key(const AttK &a, size_t bh)
{
    return a.drop ? dropout_key(seed_dev(a.seed) ^ (uint64_t)(bh * a.Tq * a.Tk)) : 0;
}

// the widest key count of the query tile holding row i (ops.c att_keys); every thread gets it
__device__ static int tile_keys(const AttK &a, int i, float *red)
{
    int R = a.Tq < ATT_ROWS ? a.Tq : ATT_ROWS, i0 = i / R * R, i1 = i0 + R < a.Tq ? i0 + R : a.Tq;
    float m = 0.0f;
    for (int r = i0 + threadIdx.x; r < i1; r += blockDim.x) m = fmaxf(m, (float)a.n_keys[r]);
    return (int)block_max(m, red);
}

// a probability or gradient stored as float32, or as its bfloat16 (the products' operands under gpu_att16)
__device__ static inline void att_put(float *p, float v) { *p = v; }
__device__ static inline void att_put(uint16_t *p, float v) { *p = to_bf16(v); }

// the softmax's 32 floats for block reductions (here, not in the template: the emulator's static shared memory,
// tests/emu/cuda_emu.h, must be declared outside templates)
__device__ static inline float *att_softmax_red(void)
{
    __shared__ float red[32];
    return red;
}

// one block per row (b, h, i) of probs: see the section comment. TP: PD's type (uint16_t: bf16, written always,
// P itself without dropout)
template <typename TP>
__global__ static void att_softmax_k(float *probs, uint8_t *mask, TP *pd, const float *R, AttK a)
{
    float *red = att_softmax_red();
    size_t row = blockIdx.x;
    int Tq = a.Tq, Tk = a.Tk, i = (int)(row % Tq), n = a.n_keys[i], nkt = tile_keys(a, i, red);
    size_t bh = row / Tq;
    float *s = probs + row * Tk;
    const float *rr = R ? R + row * Tq + (Tq - 1 - i) : NULL; // R[i, Tq-1-i+j] = rr[j]
    if (rr) // the relative term; each thread then reads back only what it wrote
        for (int j = threadIdx.x; j < n; j += blockDim.x) s[j] = s[j] + rr[j];
    float mx, sum = block_exp_row(s, s, n, red, red, &mx);
    uint64_t key = att_key(a, bh);
    uint8_t *mr = mask ? mask + row * Tk : NULL;
    TP *pr = pd ? pd + row * Tk : NULL;
    int ke = att_kend(a, i);
    for (int j = threadIdx.x; j < ke; j += blockDim.x) {
        float p = j < n ? s[j] / sum : 0.0f;
        s[j] = p;
        int keep = j < nkt ? (a.drop ? drop_keep(key, a.thr, (size_t)i * Tk + j) : 1) : 0;
        if (mr) mr[j] = (uint8_t)keep;
        if (pr) att_put(pr + j, keep ? p * a.keep : 0.0f);
    }
    if (mr) // a kept mask is the CPU's to the row's end (past ke, beyond the tile's keys: 0)
        for (int j = ke + threadIdx.x; j < Tk; j += blockDim.x) mr[j] = 0;
}

// Whether (row, j) was kept, from the saved mask or (mask NULL) drawn again: only keys j < n matter to the backward
// (P is +0 beyond them), and there the mask is the stream's bit
__device__ static inline int att_kept(const uint8_t *mask, const AttK &a, uint64_t key, size_t row, int i, int j, int n)
{
    if (mask) return mask[row * a.Tk + j];
    return j < n && (!a.drop || drop_keep(key, a.thr, (size_t)i * a.Tk + j));
}

// PD = kept ? P * keep : 0 (dropout on; with TP uint16_t also off: P), from the forward's saved P and its mask (or
// the mask drawn again)
template <typename TP>
__global__ static void att_pd_k(TP *pd, const float *probs, const uint8_t *mask, AttK a, size_t n)
{
    GRID_STRIDE(e, n)
    {
        size_t row = e / a.Tk;
        int j = (int)(e - row * a.Tk), i = (int)(row % a.Tq);
        if (j >= att_kend(a, i)) continue; // not read by the products
        int keep = att_kept(mask, a, mask ? 0 : att_key(a, row / a.Tq), row, i, j, a.n_keys[i]);
        att_put(pd + e, keep ? probs[e] * a.keep : 0.0f);
    }
}

// one block per row (b, h, i): dP -> dS in place (dS = P * (g - sum_j g P), g = dP * keep where kept, over the row's
// keys; 0 beyond), then with dR the un-skewed row: dR[i, c] = dS[i, j] for c = Tq-1-i+j, 0 where no key maps.
// With ds16 (gpu_att16) dS goes there as bfloat16 instead, and dR16 (its skew) takes dR's place.
__global__ static void att_softmax_bwd_k(float *dp, float *dR, const float *probs, const uint8_t *mask, AttK a,
                                         uint16_t *ds16, uint16_t *dR16)
{
    __shared__ float red[32];
    size_t row = blockIdx.x;
    int Tq = a.Tq, Tk = a.Tk, i = (int)(row % Tq), n = a.n_keys[i];
    float *g = dp + row * Tk;
    const float *pr = probs + row * Tk;
    uint64_t key = mask ? 0 : att_key(a, row / Tq);
    float s = 0.0f;
    for (int j = threadIdx.x; j < n; j += blockDim.x) {
        float gj = att_kept(mask, a, key, row, i, j, n) ? g[j] * a.keep : 0.0f;
        g[j] = gj;
        s += gj * pr[j];
    }
    s = block_sum(s, red); // ends with __syncthreads: every g[j] above is written
    int ke = att_kend(a, i); // dS past it is not read (nor dP computed there)
    if (ds16) {
        uint16_t *h = ds16 + row * Tk;
        for (int j = threadIdx.x; j < ke; j += blockDim.x) h[j] = to_bf16(j < n ? pr[j] * (g[j] - s) : 0.0f);
        if (!dR16) return;
        __syncthreads();
        uint16_t *d = dR16 + row * Tq;
        for (int c = threadIdx.x; c < Tq; c += blockDim.x) {
            int j = c - (Tq - 1 - i);
            d[c] = j >= 0 && j < n ? h[j] : (uint16_t)0;
        }
        return;
    }
    for (int j = threadIdx.x; j < ke; j += blockDim.x) g[j] = j < n ? pr[j] * (g[j] - s) : 0.0f;
    if (!dR) return;
    __syncthreads();
    float *d = dR + row * Tq;
    for (int c = threadIdx.x; c < Tq; c += blockDim.x) {
        int j = c - (Tq - 1 - i);
        d[c] = j >= 0 && j < n ? g[j] : 0.0f;
    }
}

// dEr_T[r] += sum over (b, h) in order of part[bh, r]
__global__ static void er_sum_k(float *dEr, const float *part, int tasks, size_t n)
{
    GRID_STRIDE(r, n)
    {
        float acc = dEr[r];
        for (int t = 0; t < tasks; t++) acc += part[(size_t)t * n + r];
        dEr[r] = acc;
    }
}

void gpu_er_sum(const char *op, float *dEr_T, const float *part, int tasks, size_t n)
{
    LAUNCH(er_sum_k, ew_blocks(n), EW_THREADS)(dEr_T, part, tasks, n);
    gpu_launched(op);
}

static size_t att_fwd_floats(const AttnDims *d, int er)
{
    size_t bhq = (size_t)d->B * d->NH * d->Tq;
    return (er ? bhq * d->Tq : 0) + (d->dropout > 0.0f ? bhq * d->Tk : 0);
}
static size_t att_bwd_floats(const AttnDims *d, int er)
{
    size_t bhq = (size_t)d->B * d->NH * d->Tq;
    return (d->dropout > 0.0f ? bhq * d->Tk : 0) + bhq * d->Tk + (er ? bhq * d->Tq + (size_t)d->B * d->Tq * d->C : 0);
}

// Causal self-attention (AttnDims.causal) in groups of ATT_ROWS query rows: the rows of group [r0, r0 + n) see only
// keys [0, r0 + n), so each product runs on the blocks that can be nonzero (or are read) and skips the rest: at T 512
// 10/16 of the full products. AttG: the groups' height (Tq: one group, all Tk keys, as without the promise).
typedef struct AttG {
    int R, split;
} AttG;
static AttG att_groups(const AttnDims *d)
{
    int split = d->causal && d->Tq == d->Tk && d->Tq > ATT_ROWS;
    return AttG{split ? ATT_ROWS : d->Tq, split};
}
// the group at r0: its rows *n, and the keys they see, the end of the group (*ke; Tk unsplit)
static void att_group(const AttG &g, const AttnDims *d, int r0, int *n, int *ke)
{
    *n = d->Tq - r0 < g.R ? d->Tq - r0 : g.R;
    *ke = g.split ? r0 + *n : d->Tk;
}
static AttK att_k(const AttnDims *d, int backward)
{
    AttK a;
    a.Tq = d->Tq, a.Tk = d->Tk, a.NH = d->NH, a.n_keys = d->n_keys, a.drop = d->dropout > 0.0f;
    a.thr = drop_threshold(d->dropout), a.seed = d->seed, a.split = att_groups(d).split;
    if (backward) a.keep = a.drop ? 1.0f / (1.0f - d->dropout) : 1.0f;
    else a.keep = d->dropout < 1.0f ? 1.0f / (1.0f - d->dropout) : 0.0f;
    return a;
}

// a block's first row or column x rounded down to a multiple of 4 floats: the extra ones are zeros or unread, and the
// block's start stays 16-byte aligned where the matrix's is (so TF32's batched call takes it whole)
static int att_al4(int x) { return x & ~3; }

// The products of both unfused attentions (float32 operands: gpu_gemm2; bfloat16: gpu_gemm2_16, the same arguments),
// each in att_groups' groups. Strides: sA, sB, sC per (b, h) pair as gpu_gemm2's (b, h) strides; every C is float32.
static void gemm2_t(const char *op, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                    long long sAb, long long sAh, const float *B, int ldb, long long sBb, long long sBh, float beta,
                    float *C, int ldc, long long sCb, long long sCh, int nb, int nh)
{
    gpu_gemm2(op, ta, tb, M, N, K, alpha, A, lda, sAb, sAh, B, ldb, sBb, sBh, beta, C, ldc, sCb, sCh, nb, nh);
}
static void gemm2_t(const char *op, int ta, int tb, int M, int N, int K, float alpha, const uint16_t *A, int lda,
                    long long sAb, long long sAh, const uint16_t *B, int ldb, long long sBb, long long sBh, float beta,
                    float *C, int ldc, long long sCb, long long sCh, int nb, int nh)
{
    gpu_gemm2_16(op, ta, tb, M, N, K, alpha, A, lda, sAb, sAh, B, ldb, sBb, sBh, beta, C, ldc, sCb, sCh, nb, nh);
}

// By query row group [r0, r0 + n), keys [0, ke): tb 1, C (n, ke) = alpha A B^T, depth HS (S = Q K^T, dP = dO V^T);
// tb 0, C (n, HS) = alpha A B + beta C, depth ke (O = PD V, dQ += dS K)
template <typename T>
static void att_rows(const char *op, const AttnDims *d, const AttG &g, int tb, float alpha, const T *A, int lda,
                     long long sAb, long long sAh, const T *B, int ldb, long long sBb, long long sBh, float beta,
                     float *C, int ldc, long long sCb, long long sCh)
{
    int HS = d->C / d->NH;
    for (int r0 = 0, n, ke; r0 < d->Tq; r0 += n) {
        att_group(g, d, r0, &n, &ke);
        gemm2_t(op, 0, tb, n, tb ? ke : HS, tb ? HS : ke, alpha, A + (size_t)r0 * lda, lda, sAb, sAh, B, ldb, sBb,
                sBh, beta, C + (size_t)r0 * ldc, ldc, sCb, sCh, d->B, d->NH);
    }
}

// The relative term by query row group: row i meets Er_T's rows (R's columns) Tq-1-i on, the group's from c0 =
// Tq - ke on (rounded down: att_al4). tb 1: R (n, Tq - c0) = alpha Q ers^T (beta 0); tb 0: dQ (n, HS) += alpha dR
// ers over those columns. ers: Er_T (Tq x HS, shared by every (b, h)); R and dR rows of Tq
template <typename T>
static void att_rows_rel(const char *op, const AttnDims *d, const AttG &g, int tb, float alpha, const T *A, int lda,
                         long long sAb, long long sAh, const T *ers, float beta, float *C, int ldc, long long sCb,
                         long long sCh)
{
    int Tq = d->Tq, HS = d->C / d->NH;
    for (int r0 = 0, n, ke; r0 < Tq; r0 += n) {
        att_group(g, d, r0, &n, &ke);
        int c0 = g.split ? att_al4(Tq - ke) : 0;
        if (tb)
            gemm2_t(op, 0, 1, n, Tq - c0, HS, alpha, A + (size_t)r0 * lda, lda, sAb, sAh, ers + (size_t)c0 * HS, HS,
                    0, 0, beta, C + (size_t)r0 * ldc + c0, ldc, sCb, sCh, d->B, d->NH);
        else
            gemm2_t(op, 0, 0, n, HS, Tq - c0, alpha, A + (size_t)r0 * lda + c0, lda, sAb, sAh, ers + (size_t)c0 * HS,
                    HS, 0, 0, beta, C + (size_t)r0 * ldc, ldc, sCb, sCh, d->B, d->NH);
    }
}

// By key group [k0, k0 + n), which query rows k0 on see: C (n, HS) = alpha A^T B + beta C, A the (Tq, Tk)
// probabilities or score gradients (dV += PD^T dO, dK += dS^T Q); unsplit, every key and row
template <typename T>
static void att_keys(const char *op, const AttnDims *d, const AttG &g, float alpha, const T *A, long long sAb,
                     long long sAh, const T *B, int ldb, long long sBb, long long sBh, float beta, float *C, int ldc,
                     long long sCb, long long sCh)
{
    int Tq = d->Tq, Tk = d->Tk, HS = d->C / d->NH;
    for (int k0 = 0, n, ke; k0 < Tk; k0 += n) {
        att_group(g, d, k0, &n, &ke);
        if (!g.split) n = Tk;
        int i0 = g.split ? k0 : 0;
        gemm2_t(op, 1, 0, n, HS, Tq - i0, alpha, A + (size_t)i0 * Tk + k0, Tk, sAb, sAh, B + (size_t)i0 * ldb, ldb,
                sBb, sBh, beta, C + (size_t)k0 * ldc, ldc, sCb, sCh, d->B, d->NH);
    }
}

// dEr's partials: part (b, h) = alpha dR^T q, by column group of dR [c0, c0 + n), whose rows are Tq - c0 - n on
template <typename T>
static void att_er_part(const char *op, const AttnDims *d, const AttG &g, float alpha, const T *dR, const T *q,
                        float *part)
{
    int Tq = d->Tq, NH = d->NH, HS = d->C / NH;
    long long TR = (long long)Tq * Tq, sq = (long long)Tq * d->ldq;
    for (int c0 = 0, n, ke; c0 < Tq; c0 += n) {
        att_group(g, d, c0, &n, &ke);
        int i0 = g.split ? att_al4(Tq - c0 - n) : 0;
        gemm2_t(op, 1, 0, n, HS, Tq - i0, alpha, dR + (size_t)i0 * Tq + c0, Tq, NH * TR, TR, q + (size_t)i0 * d->ldq,
                d->ldq, sq, HS, 0.0f, part + (size_t)c0 * HS, HS, (long long)NH * Tq * HS, (long long)Tq * HS, d->B,
                NH);
    }
}

static bool att_check(const char *op, const AttnDims *d, const float *Er)
{
    if (d->NH <= 0 || d->C % d->NH != 0 || d->Tq <= 0 || d->Tk <= 0 || (Er && (d->Tq != d->Tk || d->Tq > d->L))) {
        gpu_record(op, "bad dimensions (C % NH, or with Er Tq == Tk <= L)");
        return false;
    }
    return true;
}

// ---- the same on bfloat16 operands (gpu_att16): q, k, v, Er and dout copied once per call, PD and dS written as
// bfloat16 by the softmax kernels, the products' sums, the scores, P (kept for the backward) and dP float32 --------

static size_t al256(size_t bytes) { return (bytes + 255) & ~(size_t)255; }

// the bf16 copies' room: q, k, v (rows of ld floats, C used), the last Tq rows of Er, dout (NULL: not copied)
typedef struct Att16Ops {
    const float *src[BF16_RANGES];
    size_t n[BF16_RANGES];
    uint16_t *c[BF16_RANGES]; // after att16_copy: q, k, v, ers, dout
} Att16Ops;
static Att16Ops att16_ops(const AttnDims *d, const float *q, const float *k, const float *v, const float *ers,
                          const float *dout)
{
    int HS = d->C / d->NH;
    size_t nq = (size_t)d->B * d->Tq, nk = (size_t)d->B * d->Tk;
    Att16Ops o = {{q, k, v, ers, dout},
                  {(nq - 1) * d->ldq + d->C, (nk - 1) * d->ldk + d->C, (nk - 1) * d->ldv + d->C,
                   ers ? (size_t)d->Tq * HS : 0, dout ? nq * d->C : 0},
                  {NULL, NULL, NULL, NULL, NULL}};
    return o;
}

static void att16_forward(const char *op, float *out, float *probs, uint8_t *mask, const float *q, const float *k,
                          const float *v, const float *Er, const AttnDims *d)
{
    int B = d->B, Tq = d->Tq, Tk = d->Tk, NH = d->NH, C = d->C, HS = C / NH;
    float scale = 1.0f / sqrtf((float)HS);
    size_t bhq = (size_t)B * NH * Tq;
    const float *ers = Er ? Er + (size_t)(d->L - Tq) * HS : NULL; // the last Tq rows of Er
    Att16Ops o = att16_ops(d, q, k, v, ers, NULL);
    size_t nc = gpu_bf16_ranges(op, NULL, 4, o.src, o.n, o.c), rB = Er ? al256(bhq * Tq * 4) : 0;
    size_t pB = al256(bhq * Tk * 2);
    char *ws = (char *)gpu_workspace(op, rB + pB + nc * 2);
    if (!ws) return;
    float *R = Er ? (float *)ws : NULL;
    uint16_t *pd = (uint16_t *)(ws + rB);
    gpu_prof_part("att16 fwd: bf16 copies");
    gpu_bf16_ranges(op, (uint16_t *)(ws + rB + pB), 4, o.src, o.n, o.c);
    const uint16_t *q16 = o.c[0], *k16 = o.c[1], *v16 = o.c[2], *er16 = o.c[3];
    long long TT = (long long)Tq * Tk, TR = (long long)Tq * Tq;
    long long sq = (long long)Tq * d->ldq, sk = (long long)Tk * d->ldk, sv = (long long)Tk * d->ldv;
    AttG g = att_groups(d);
    gpu_prof_part("att16 fwd: S, R products");
    att_rows(op, d, g, 1, scale, q16, d->ldq, sq, HS, k16, d->ldk, sk, HS, 0.0f, probs, Tk, NH * TT, TT);
    if (Er) att_rows_rel(op, d, g, 1, scale, q16, d->ldq, sq, HS, er16, 0.0f, R, Tq, NH * TR, TR);
    gpu_prof_part("att16 fwd: skew, softmax, dropout");
    LAUNCH(att_softmax_k<uint16_t>, (unsigned)bhq, ATT_THREADS)(probs, mask, pd, R, att_k(d, 0));
    gpu_launched(op);
    gpu_prof_part("att16 fwd: O = PD V");
    att_rows(op, d, g, 0, 1.0f, pd, Tk, NH * TT, TT, v16, d->ldv, sv, HS, 0.0f, out, C, (long long)Tq * C, HS);
    gpu_prof_part(NULL);
}

static void att16_backward(const char *op, float beta, float *dq, float *dk, float *dv, float *dEr,
                           const float *dout, const float *probs, const uint8_t *mask, const float *q, const float *k,
                           const float *v, const float *Er, const AttnDims *d)
{
    int B = d->B, Tq = d->Tq, Tk = d->Tk, NH = d->NH, C = d->C, HS = C / NH;
    float scale = 1.0f / sqrtf((float)HS);
    size_t bhq = (size_t)B * NH * Tq, nP = bhq * Tk;
    const float *ers = Er ? Er + (size_t)(d->L - Tq) * HS : NULL;
    Att16Ops o = att16_ops(d, q, k, v, ers, dout);
    size_t nc = gpu_bf16_ranges(op, NULL, 5, o.src, o.n, o.c);
    size_t pB = al256(nP * 2), dpB = al256(nP * 4), rB = Er ? al256(bhq * Tq * 2) : 0;
    size_t partB = Er && dEr ? al256((size_t)B * Tq * C * 4) : 0;
    char *ws = (char *)gpu_workspace(op, pB + dpB + rB + partB + nc * 2);
    if (!ws) return;
    // dS goes over PD, which the dV product is the last to read
    uint16_t *pd = (uint16_t *)ws, *ds = pd, *dR = Er ? (uint16_t *)(ws + pB) : NULL;
    float *dp = (float *)(ws + pB + rB), *part = partB ? (float *)(ws + pB + rB + dpB) : NULL;
    gpu_prof_part("att16 bwd: bf16 copies");
    gpu_bf16_ranges(op, (uint16_t *)(ws + pB + rB + dpB + partB), 5, o.src, o.n, o.c);
    const uint16_t *q16 = o.c[0], *k16 = o.c[1], *v16 = o.c[2], *er16 = o.c[3], *g16 = o.c[4];
    AttK a = att_k(d, 1);
    gpu_prof_part("att16 bwd: PD (dropout again)");
    LAUNCH(att_pd_k<uint16_t>, ew_blocks(nP), EW_THREADS)(pd, probs, mask, a, nP);
    gpu_launched(op);
    long long TT = (long long)Tq * Tk, TR = (long long)Tq * Tq, sq = (long long)Tq * d->ldq;
    long long sk = (long long)Tk * d->ldk, sv = (long long)Tk * d->ldv, so = (long long)Tq * C;
    AttG g = att_groups(d);
    gpu_prof_part("att16 bwd: dV, dP products");
    att_keys(op, d, g, 1.0f, pd, NH * TT, TT, g16, C, so, HS, beta, dv, d->ldv, sv, HS);
    att_rows(op, d, g, 1, 1.0f, g16, C, so, HS, v16, d->ldv, sv, HS, 0.0f, dp, Tk, NH * TT, TT);
    gpu_prof_part("att16 bwd: softmax, dropout, skew");
    LAUNCH(att_softmax_bwd_k, (unsigned)bhq, ATT_THREADS)(dp, (float *)NULL, probs, mask, a, ds, dR);
    gpu_launched(op);
    gpu_prof_part("att16 bwd: dQ, dK, dEr products");
    att_rows(op, d, g, 0, scale, ds, Tk, NH * TT, TT, k16, d->ldk, sk, HS, beta, dq, d->ldq, sq, HS);
    att_keys(op, d, g, scale, ds, NH * TT, TT, q16, d->ldq, sq, HS, beta, dk, d->ldk, sk, HS);
    if (Er) att_rows_rel(op, d, g, 0, scale, dR, Tq, NH * TR, TR, er16, 1.0f, dq, d->ldq, sq, HS);
    if (part) att_er_part(op, d, g, scale, dR, q16, part);
    if (part) {
        gpu_prof_part("att16 bwd: dEr sum");
        gpu_er_sum(op, dEr + (size_t)(d->L - Tq) * HS, part, B * NH, (size_t)Tq * HS);
    }
    gpu_prof_part(NULL);
}

int gpu_attention16_takes(const AttnDims *d)
{
    int HS = d->NH > 0 ? d->C / d->NH : 0;
    return HS % 8 == 0 && d->Tq % 8 == 0 && d->Tk % 8 == 0 && d->C % 8 == 0 && d->ldq % 8 == 0 && d->ldk % 8 == 0 &&
           d->ldv % 8 == 0;
}

void gpu_attention_forward(float *out, float *probs, uint8_t *mask, const float *q, const float *k, const float *v,
                           const float *Er, const AttnDims *d)
{
    const char *op = "gpu_attention_forward";
    if (!gpu_enter(op) || !att_check(op, d, Er)) return;
    if (gpu_att16() && gpu_attention16_takes(d)) {
        att16_forward(op, out, probs, mask, q, k, v, Er, d);
        return;
    }
    int B = d->B, Tq = d->Tq, Tk = d->Tk, NH = d->NH, C = d->C, HS = C / NH;
    float scale = 1.0f / sqrtf((float)HS);
    float *ws = (float *)gpu_workspace(op, att_fwd_floats(d, Er != NULL) * sizeof(float) + 1);
    if (!ws) return;
    size_t bhq = (size_t)B * NH * Tq;
    float *R = Er ? ws : NULL, *pd = d->dropout > 0.0f ? ws + (Er ? bhq * Tq : 0) : NULL;
    const float *ers = Er ? Er + (size_t)(d->L - Tq) * HS : NULL; // the last Tq rows of Er
    long long TT = (long long)Tq * Tk, TR = (long long)Tq * Tq; // one head's S and R
    long long sq = (long long)Tq * d->ldq, sk = (long long)Tk * d->ldk, sv = (long long)Tk * d->ldv;
    AttG g = att_groups(d);
    // every (batch item b, head h) in one call each: head h of item b at column h*HS of row block b; a row group a
    // call (att_groups)
    gpu_prof_part("att fwd: S = Q K^T");
    att_rows(op, d, g, 1, scale, q, d->ldq, sq, HS, k, d->ldk, sk, HS, 0.0f, probs, Tk, NH * TT, TT);
    gpu_prof_part("att fwd: R = Q Er^T");
    if (Er) att_rows_rel(op, d, g, 1, scale, q, d->ldq, sq, HS, ers, 0.0f, R, Tq, NH * TR, TR);
    gpu_prof_part("att fwd: skew, softmax, dropout");
    LAUNCH(att_softmax_k<float>, (unsigned)bhq, ATT_THREADS)(probs, mask, pd, R, att_k(d, 0));
    gpu_launched(op);
    gpu_prof_part("att fwd: O = PD V");
    att_rows(op, d, g, 0, 1.0f, pd ? pd : probs, Tk, NH * TT, TT, v, d->ldv, sv, HS, 0.0f, out, C, (long long)Tq * C,
             HS);
    gpu_prof_part(NULL);
}

bool gpu_att_qkv_fresh(const float *dq, const float *dk, const float *dv, const AttnDims *d)
{
    int C = d->C;
    bool qkv = dk == dq + C && dv == dq + 2 * C && d->ldq == 3 * C && d->ldk == 3 * C && d->ldv == 3 * C &&
               d->Tq == d->Tk && d->B > 0 && d->Tq > 0 && C > 0;
    return qkv && gpu_fresh_take(dq, (size_t)d->B * d->Tq * 3 * C * sizeof(float));
}

// backward of: S = scale*(q k^T + skew(q Er^T)); P = softmax(S); PD = dropout(P); out = PD v
void gpu_attention_backward(float *dq, float *dk, float *dv, float *dEr, const float *dout, const float *probs,
                            const uint8_t *mask, const float *q, const float *k, const float *v, const float *Er,
                            const AttnDims *d)
{
    const char *op = "gpu_attention_backward";
    float beta = gpu_att_qkv_fresh(dq, dk, dv, d) ? 0.0f : 1.0f; // 0: dq's, dk's, dv's first products write them
    if (!gpu_enter(op) || !att_check(op, d, Er)) return;
    if (gpu_att16() && gpu_attention16_takes(d)) {
        att16_backward(op, beta, dq, dk, dv, dEr, dout, probs, mask, q, k, v, Er, d);
        return;
    }
    int B = d->B, Tq = d->Tq, Tk = d->Tk, NH = d->NH, C = d->C, HS = C / NH;
    float scale = 1.0f / sqrtf((float)HS);
    float *ws = (float *)gpu_workspace(op, att_bwd_floats(d, Er != NULL) * sizeof(float) + 1);
    if (!ws) return;
    size_t bhq = (size_t)B * NH * Tq, nP = bhq * Tk;
    float *pd = NULL, *dp = ws;
    if (d->dropout > 0.0f) pd = ws, dp = ws + nP;
    float *dR = Er ? dp + nP : NULL, *part = Er && dEr ? dR + bhq * Tq : NULL;
    AttK a = att_k(d, 1);
    if (pd) {
        gpu_prof_part("att bwd: PD (dropout again)");
        LAUNCH(att_pd_k<float>, ew_blocks(nP), EW_THREADS)(pd, probs, mask, a, nP);
        gpu_launched(op);
    }
    long long TT = (long long)Tq * Tk, TR = (long long)Tq * Tq, sq = (long long)Tq * d->ldq;
    long long sk = (long long)Tk * d->ldk, sv = (long long)Tk * d->ldv, so = (long long)Tq * C;
    AttG g = att_groups(d);
    // dv += PD^T dout;  dPD = dout v^T  (every (b, h) in one call each, as the forward; by key and row group)
    gpu_prof_part("att bwd: dV, dP products");
    att_keys(op, d, g, 1.0f, pd ? pd : probs, NH * TT, TT, dout, C, so, HS, beta, dv, d->ldv, sv, HS);
    att_rows(op, d, g, 1, 1.0f, dout, C, so, HS, v, d->ldv, sv, HS, 0.0f, dp, Tk, NH * TT, TT);
    gpu_prof_part("att bwd: softmax, dropout, skew");
    LAUNCH(att_softmax_bwd_k, (unsigned)bhq, ATT_THREADS)(dp, dR, probs, mask, a, (uint16_t *)NULL, (uint16_t *)NULL);
    gpu_launched(op);
    gpu_prof_part("att bwd: dQ, dK, dEr products");
    const float *ers = Er ? Er + (size_t)(d->L - Tq) * HS : NULL;
    // dq += scale * dS k;  dk += scale * dS^T q;  dq += scale * dR Er_T;  dEr partial (b, h) = scale * dR^T q
    att_rows(op, d, g, 0, scale, dp, Tk, NH * TT, TT, k, d->ldk, sk, HS, beta, dq, d->ldq, sq, HS);
    att_keys(op, d, g, scale, dp, NH * TT, TT, q, d->ldq, sq, HS, beta, dk, d->ldk, sk, HS);
    if (Er) att_rows_rel(op, d, g, 0, scale, dR, Tq, NH * TR, TR, ers, 1.0f, dq, d->ldq, sq, HS);
    if (part) att_er_part(op, d, g, scale, dR, q, part);
    if (part) {
        size_t n = (size_t)Tq * HS;
        gpu_prof_part("att bwd: dEr sum");
        gpu_er_sum(op, dEr + (size_t)(d->L - Tq) * HS, part, B * NH, n);
    }
    gpu_prof_part(NULL);
}

// ---- hourglass resampling -------------------------------------------------------------------------------------

// out (B,To,C) from inp (B,Ti,C): out[b,t] = inp[b,t-s] for 0 <= t-s < Ti, else 0 (pad: s 0; crop: Ti > To;
// shift: s = K-1)
__global__ static void rows_fwd_k(float *out, const float *inp, int To, int Ti, int s, int C, size_t n)
{
    GRID_STRIDE(i, n)
    {
        size_t bt = i / C;
        int c = (int)(i % C), t = (int)(bt % To), b = (int)(bt / To), u = t - s;
        out[i] = u >= 0 && u < Ti ? inp[((size_t)b * Ti + u) * C + c] : 0.0f;
    }
}
// dinp (B,Ti,C) += dout (B,To,C) at rows u = t - s, for the rows u of dinp that some t reaches; d0: dinp taken as
// zeros (gpu_fresh): those rows 0 + dout, the others +0
__global__ static void rows_bwd_k(float *dinp, int d0, const float *dout, int To, int Ti, int s, int C, size_t n)
{
    GRID_STRIDE(i, n) // i over dinp
    {
        size_t bu = i / C;
        int c = (int)(i % C), u = (int)(bu % Ti), b = (int)(bu / Ti), t = u + s;
        if (t < To) dinp[i] = (d0 ? 0.0f : dinp[i]) + dout[((size_t)b * To + t) * C + c];
        else if (d0) dinp[i] = 0.0f;
    }
}

static void rows_fwd(const char *op, float *out, const float *inp, int B, int To, int Ti, int s, int C)
{
    if (!gpu_enter(op)) return;
    size_t n = (size_t)B * To * C;
    if (!n) return;
    LAUNCH(rows_fwd_k, ew_blocks(n), EW_THREADS)(out, inp, To, Ti, s, C, n);
    gpu_launched(op);
}
static void rows_bwd(const char *op, float *dinp, const float *dout, int B, int To, int Ti, int s, int C)
{
    size_t n = (size_t)B * Ti * C;
    int d0 = gpu_fresh_take(dinp, n * sizeof(float));
    if (!gpu_enter(op)) return;
    if (!n) return;
    LAUNCH(rows_bwd_k, ew_blocks(n), EW_THREADS)(dinp, d0, dout, To, Ti, s, C, n);
    gpu_launched(op);
}

void gpu_pad_forward(float *out, const float *inp, int B, int T, int Tp, int C)
{
    rows_fwd("gpu_pad_forward", out, inp, B, Tp, T, 0, C);
}
void gpu_pad_backward(float *dinp, const float *dout, int B, int T, int Tp, int C)
{
    rows_bwd("gpu_pad_backward", dinp, dout, B, Tp, T, 0, C);
}
void gpu_crop_forward(float *out, const float *inp, int B, int Tp, int T, int C)
{
    rows_fwd("gpu_crop_forward", out, inp, B, T, Tp, 0, C);
}
void gpu_crop_backward(float *dinp, const float *dout, int B, int Tp, int T, int C)
{
    rows_bwd("gpu_crop_backward", dinp, dout, B, T, Tp, 0, C);
}
void gpu_shift_forward(float *out, const float *inp, int B, int T, int C, int K)
{
    rows_fwd("gpu_shift_forward", out, inp, B, T, T, K - 1 < T ? K - 1 : T, C);
}
void gpu_shift_backward(float *dinp, const float *dout, int B, int T, int C, int K)
{
    rows_bwd("gpu_shift_backward", dinp, dout, B, T, T, K - 1 < T ? K - 1 : T, C);
}

// out[r] = (0 + inp[K r] + ... + inp[K r + K-1]) / K, as ops.c (memset, accumulate in order, divide)
__global__ static void meanpool_k(float *out, const float *inp, int C, int K, size_t n)
{
    GRID_STRIDE(i, n)
    {
        size_t r = i / C;
        int c = (int)(i % C);
        float s = 0.0f;
        for (int k = 0; k < K; k++) s += inp[(r * K + k) * C + c];
        out[i] = s / (float)K;
    }
}
// dinp[K r + k] += dout[r] / K; d0: dinp taken as zeros (gpu_fresh), not read
__global__ static void meanpool_bwd_k(float *dinp, int d0, const float *dout, int C, int K, size_t n)
{
    GRID_STRIDE(i, n) // i over dinp
    {
        size_t rk = i / C;
        int c = (int)(i % C);
        dinp[i] = (d0 ? 0.0f : dinp[i]) + dout[(rk / K) * C + c] / (float)K;
    }
}
// out[K r + k] = inp[r]
__global__ static void repeat_k(float *out, const float *inp, int C, int K, size_t n)
{
    GRID_STRIDE(i, n) out[i] = inp[(i / C / K) * C + i % C];
}
// dinp[r] += dout[K r], then += dout[K r + 1], ... (ops.c's order); d0: dinp taken as zeros (gpu_fresh)
__global__ static void repeat_bwd_k(float *dinp, int d0, const float *dout, int C, int K, size_t n)
{
    GRID_STRIDE(i, n) // i over dinp
    {
        size_t r = i / C;
        int c = (int)(i % C);
        float s = d0 ? 0.0f : dinp[i];
        for (int k = 0; k < K; k++) s += dout[(r * K + k) * C + c];
        dinp[i] = s;
    }
}

void gpu_meanpool_forward(float *out, const float *inp, int B, int T, int C, int K)
{
    size_t n = (size_t)B * (T / K) * C;
    EW_OP("gpu_meanpool_forward", meanpool_k, out, inp, C, K, n);
}
void gpu_meanpool_backward(float *dinp, const float *dout, int B, int T, int C, int K)
{
    size_t n = (size_t)B * (T / K) * K * C;
    int d0 = gpu_fresh_take(dinp, n * sizeof(float));
    EW_OP("gpu_meanpool_backward", meanpool_bwd_k, dinp, d0, dout, C, K, n);
}
void gpu_repeat_forward(float *out, const float *inp, int B, int T, int C, int K)
{
    size_t n = (size_t)B * (T / K) * K * C;
    EW_OP("gpu_repeat_forward", repeat_k, out, inp, C, K, n);
}
void gpu_repeat_backward(float *dinp, const float *dout, int B, int T, int C, int K)
{
    size_t n = (size_t)B * (T / K) * C;
    int d0 = gpu_fresh_take(dinp, n * sizeof(float));
    EW_OP("gpu_repeat_backward", repeat_bwd_k, dinp, d0, dout, C, K, n);
}

// ---- losses -------------------------------------------------------------------------------------------------

#define RED_THREADS 256

// one block per row: probs = softmax (exp in float, the sum in double, as ops.c); row_loss[i] = -log p[target]
// computed as ops.c (double), or 0 for a PAD target; row_valid[i] = target != PAD
__global__ static void ce_fwd_k(float *probs, double *row_loss, const float *logits, const int32_t *targets, int V)
{
    __shared__ float red[32];
    __shared__ double redd[32];
    size_t i = blockIdx.x;
    const float *x = logits + i * V;
    float *p = probs + i * V;
    float mx;
    double sum = block_exp_row(p, x, V, red, redd, &mx);
    for (int v = threadIdx.x; v < V; v += blockDim.x) p[v] = (float)(p[v] / sum);
    if (threadIdx.x == 0) {
        int t = targets[i];
        row_loss[i] = t == 0 ? 0.0 : -((double)(x[t] - mx) - log(sum));
    }
}

// out[0] = sum of in[0..n) in a fixed order (one block: strided per thread, then the block's tree); with cnt,
// out[1] = the number of non-PAD targets
__global__ static void sum_doubles_k(double *out, const double *in, size_t n, const int32_t *cnt)
{
    __shared__ double redd[32];
    double s = 0.0, c = 0.0;
    for (size_t i = threadIdx.x; i < n; i += blockDim.x) {
        s += in[i];
        if (cnt) c += cnt[i] != 0;
    }
    s = block_sum(s, redd);
    if (cnt) c = block_sum(c, redd);
    if (threadIdx.x == 0) {
        out[0] = s;
        if (cnt) out[1] = c;
    }
}

// the mean of the N rows' losses over the non-PAD targets (their sum and count into ws[0], ws[1], then to the host;
// waits for the GPU), *n_valid the count. targets NULL: the count is in ws[1] already (count_valid_k).
static float ce_mean(const char *op, double *ws, const double *row_loss, const int32_t *targets, int N, int *n_valid)
{
    LAUNCH(sum_doubles_k, 1, 1024)(ws, row_loss, (size_t)N, targets);
    gpu_launched(op);
    double h[2] = {0, 0};
    if (gpu_download(h, ws, sizeof h)) return 0.0f;
    *n_valid = (int)h[1];
    return *n_valid ? (float)(h[0] / *n_valid) : 0.0f;
}

float gpu_crossentropy_forward(float *probs, const float *logits, const int32_t *targets, int N, int V, int *n_valid)
{
    const char *op = "gpu_crossentropy_forward";
    *n_valid = 0;
    if (!gpu_enter(op) || N <= 0) return 0.0f;
    double *ws = (double *)gpu_workspace(op, ((size_t)N + 2) * sizeof(double));
    if (!ws) return 0.0f;
    LAUNCH(ce_fwd_k, N, RED_THREADS)(probs, ws + 2, logits, targets, V);
    gpu_launched(op);
    return ce_mean(op, ws, ws + 2, targets, N, n_valid);
}

// dlogits[i, v] += g * p[i, v], then -= g at the target (two roundings, as ops.c), on non-PAD rows
__global__ static void ce_bwd_k(float *dlogits, const float *probs, const int32_t *targets, int V, float g, size_t n)
{
    GRID_STRIDE(e, n)
    {
        size_t i = e / V;
        int v = (int)(e % V), t = targets[i];
        if (t == 0) continue;
        float d = dlogits[e] + g * probs[e];
        if (v == t) d -= g;
        dlogits[e] = d;
    }
}

void gpu_crossentropy_backward(float *dlogits, const float *probs, const int32_t *targets, int N, int V, int n_valid,
                               float scale)
{
    size_t n = (size_t)N * V;
    if (n_valid == 0) return;
    float g = scale / (float)n_valid;
    EW_OP("gpu_crossentropy_backward", ce_bwd_k, dlogits, probs, targets, V, g, n);
}

// *n = the non-PAD targets (one block; integer sums, so any order), as a double (ce_mean's ws[1])
__global__ static void count_valid_k(double *n, const int32_t *targets, int N)
{
    __shared__ int red[32];
    int c = 0;
    for (int i = threadIdx.x; i < N; i += blockDim.x) c += targets[i] != 0;
    c = block_sum(c, red);
    if (threadIdx.x == 0) *n = c;
}

// one block per row: ce_fwd_k's probabilities in dlogits, then in place 0 + g p and - g at the target (ce_bwd_k on
// zeros), g = scale / n_valid; PAD rows (and every row when no target counts) 0
__global__ static void ce_fused_k(float *dlogits, double *row_loss, const float *logits, const int32_t *targets, int V,
                                  float scale, const double *n_valid)
{
    __shared__ float red[32];
    __shared__ double redd[32];
    size_t i = blockIdx.x;
    const float *x = logits + i * V;
    float *d = dlogits + i * V, mx;
    int t = targets[i], nv = (int)*n_valid;
    double sum = block_exp_row(d, x, V, red, redd, &mx);
    float g = nv ? scale / (float)nv : 0.0f;
    for (int v = threadIdx.x; v < V; v += blockDim.x) {
        float p = (float)(d[v] / sum), o = 0.0f + g * p;
        if (v == t) o -= g;
        d[v] = t == 0 || !nv ? 0.0f : o;
    }
    if (threadIdx.x == 0) row_loss[i] = t == 0 ? 0.0 : -((double)(x[t] - mx) - log(sum));
}

// the fused kernels' row losses and their sum and count into ws[0], ws[1]; returns ws (NULL: error kept)
static double *ce_fused_launch(const char *op, float *dlogits, const float *logits, const int32_t *targets, int N,
                               int V, float scale)
{
    if (!gpu_enter(op) || N <= 0) return NULL;
    double *ws = (double *)gpu_workspace(op, ((size_t)N + 2) * sizeof(double));
    if (!ws) return NULL;
    LAUNCH(count_valid_k, 1, 1024)(ws + 1, targets, N); // counted once: ce_fused_k needs it for g, the sum after
    gpu_launched(op);
    LAUNCH(ce_fused_k, N, RED_THREADS)(dlogits, ws + 2, logits, targets, V, scale, ws + 1);
    gpu_launched(op);
    LAUNCH(sum_doubles_k, 1, 1024)(ws, ws + 2, (size_t)N, (const int32_t *)NULL);
    gpu_launched(op);
    return ws;
}

float gpu_crossentropy_fused(float *dlogits, const float *logits, const int32_t *targets, int N, int V, float scale,
                             int *n_valid)
{
    *n_valid = 0;
    double *ws = ce_fused_launch("gpu_crossentropy_fused", dlogits, logits, targets, N, V, scale), h[2] = {0, 0};
    if (!ws || gpu_download(h, ws, sizeof h)) return 0.0f;
    *n_valid = (int)h[1];
    return *n_valid ? (float)(h[0] / *n_valid) : 0.0f; // ce_mean's arithmetic
}

// *loss = the float mean of ws's sum over its count (ce_mean's arithmetic), as a double
__global__ static void ce_final_k(double *loss, const double *ws)
{
    int nv = (int)ws[1];
    *loss = nv ? (double)(float)(ws[0] / nv) : 0.0;
}

void gpu_crossentropy_fused_to(float *dlogits, double *loss, const float *logits, const int32_t *targets, int N,
                               int V, float scale)
{
    const char *op = "gpu_crossentropy_fused";
    double *ws = ce_fused_launch(op, dlogits, logits, targets, N, V, scale);
    if (!ws) {
        if (N <= 0) gpu_zero(loss, sizeof *loss);
        return;
    }
    LAUNCH(ce_final_k, 1, 1)(loss, ws);
    gpu_launched(op);
}

// ---- scoring (evaluate.c) -------------------------------------------------------------------------------------

// One warp a row, SCORE_WARPS rows a block. A lane takes the logits lane, lane + 32, ...: its maximum (the first of
// equal ones) and whether all are finite, then over the warp by a butterfly, the lower index winning a tie, which is
// the CPU's first maximum; then the sum of exp(logit - maximum) in double, a lane's in order and the warp's by a
// butterfly (a fixed order: the same bytes every run, within a few ulps of the CPU's sum in row order).
#define SCORE_WARPS 8
__global__ static void score_rows_k(double *nll, int32_t *best, const float *logits, const int32_t *targets, int N,
                                    int V)
{
    int lane = threadIdx.x & 31;
    size_t i = (size_t)blockIdx.x * SCORE_WARPS + (threadIdx.x >> 5);
    if (i >= (size_t)N) return; // the whole warp: i is the warp's
    const float *x = logits + i * V;
    float mx = -INFINITY;
    int at = V, finite = 1; // at V: no logit (a lane past V), loses every tie
    for (int v = lane; v < V; v += 32) {
        float e = x[v];
        finite &= isfinite(e) != 0;
        if (at == V || e > mx) mx = e, at = v;
    }
    for (int o = 16; o > 0; o >>= 1) {
        float m2 = __shfl_xor_sync(0xffffffffu, mx, o);
        int a2 = __shfl_xor_sync(0xffffffffu, at, o);
        finite &= __shfl_xor_sync(0xffffffffu, finite, o);
        if (m2 > mx || (m2 == mx && a2 < at)) mx = m2, at = a2;
    }
    double se = 0;
    for (int v = lane; v < V; v += 32) se += exp((double)x[v] - mx);
    for (int o = 16; o > 0; o >>= 1) se += __shfl_xor_sync(0xffffffffu, se, o);
    if (lane == 0) {
        int t = targets[i];
        best[i] = finite ? at : -1;
        nll[i] = t >= 0 && t < V ? log(se) + mx - x[t] : (double)NAN;
    }
}

void gpu_score_rows(double *nll, int32_t *best, const float *logits, const int32_t *targets, int N, int V)
{
    const char *op = "gpu_score_rows";
    if (!gpu_enter(op) || N <= 0) return;
    LAUNCH(score_rows_k, gpu_blocks((size_t)N, SCORE_WARPS), 32 * SCORE_WARPS)(nll, best, logits, targets, N, V);
    gpu_launched(op);
}

// cos(a, b) of two C-vectors in double (norms clamped at 1e-8, as torch cosine_similarity), by the whole block
__device__ static double block_cos(const float *a, const float *b, int C, double *na, double *nb, double *redd)
{
    double ab = 0, aa = 0, bb = 0;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        ab += (double)a[c] * b[c], aa += (double)a[c] * a[c], bb += (double)b[c] * b[c];
    }
    ab = block_sum(ab, redd);
    aa = block_sum(aa, redd);
    bb = block_sum(bb, redd);
    *na = fmax(sqrt(aa), 1e-8);
    *nb = fmax(sqrt(bb), 1e-8);
    return ab / (*na * *nb);
}

// one block per pair (b, k): rows 2k, 2k+1 of item b. Forward: val[pair] = cos. Backward (dh): += g * dcos
__global__ static void cos_pairs_k(double *val, float *dh, const float *h, int T, int C, float g)
{
    __shared__ double redd[32];
    int half = T / 2, b = blockIdx.x / half, k = blockIdx.x % half;
    size_t o = ((size_t)b * T + 2 * k) * C;
    const float *a = h + o, *bb = a + C;
    double na, nb, cs = block_cos(a, bb, C, &na, &nb, redd);
    if (val) {
        if (threadIdx.x == 0) val[blockIdx.x] = cs;
        return;
    }
    // d cos / da = b / (|a||b|) - cos * a / |a|^2
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        dh[o + c] += (float)(g * (bb[c] / (na * nb) - cs * a[c] / (na * na)));
        dh[o + C + c] += (float)(g * (a[c] / (na * nb) - cs * bb[c] / (nb * nb)));
    }
}

// the pairs' cosines summed into *sum (NULL: into the workspace's first double); returns the workspace
static double *cos_pairs_launch(const char *op, double *sum, const float *h, int B, int T, int C)
{
    size_t np = (size_t)B * (T / 2);
    if (!gpu_enter(op)) return NULL;
    double *ws = (double *)gpu_workspace(op, (np + 1) * sizeof(double));
    if (!ws) return NULL;
    if (np) {
        LAUNCH(cos_pairs_k, (unsigned)np, RED_THREADS)(ws + 1, (float *)NULL, h, T, C, 0.0f);
        gpu_launched(op);
    }
    LAUNCH(sum_doubles_k, 1, 1024)(sum ? sum : ws, ws + 1, np, (const int32_t *)NULL);
    gpu_launched(op);
    return ws;
}

double gpu_cosine_pairs_forward(const float *h, int B, int T, int C, long *n_pairs)
{
    *n_pairs = (long)B * (T / 2);
    double *ws = cos_pairs_launch("gpu_cosine_pairs_forward", NULL, h, B, T, C), s = 0;
    return ws && gpu_download(&s, ws, sizeof s) == 0 ? s : 0.0;
}
void gpu_cosine_pairs_forward_to(double *sum, const float *h, int B, int T, int C)
{
    cos_pairs_launch("gpu_cosine_pairs_forward", sum, h, B, T, C);
}

void gpu_cosine_pairs_backward(float *dh, const float *h, int B, int T, int C, float scale)
{
    const char *op = "gpu_cosine_pairs_backward";
    if (!gpu_enter(op) || B * (T / 2) == 0) return;
    LAUNCH(cos_pairs_k, B * (T / 2), RED_THREADS)((double *)NULL, dh, h, T, C, scale);
    gpu_launched(op);
}

// nrm[r] = max(|h_r|, 1e-8) in double, one warp per row
__global__ static void row_norms_k(double *nrm, const float *h, int rows, int C)
{
    int r = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (r >= rows) return;
    const float *x = h + (size_t)r * C;
    double s = 0;
    for (int c = lane; c < C; c += 32) s += (double)x[c] * x[c];
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    if (lane == 0) nrm[r] = fmax(sqrt(s), 1e-8);
}

// one block per row (b, i): cs[b, i, j] = cos(h_i, h_j) for every j, one warp per j (lanes over C: the same sum
// for (i, j) and (j, i)); then forward: val[b, i] = sum over j != i of exp(-cos), in j order
__global__ static void exp_cos_rows_k(double *cs, double *val, const float *h, const double *nrm, int T, int C)
{
    __shared__ double redd[32];
    int b = blockIdx.x / T, i = blockIdx.x % T, lane = threadIdx.x % 32, nw = blockDim.x / 32;
    const float *x = h + (size_t)b * T * C;
    const double *nb = nrm + (size_t)b * T;
    double *row = cs + (size_t)blockIdx.x * T;
    for (int j = threadIdx.x / 32; j < T; j += nw) {
        double s = 0;
        for (int c = lane; c < C; c += 32) s += (double)x[(size_t)i * C + c] * x[(size_t)j * C + c];
        for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        if (lane == 0) row[j] = s / (nb[i] * nb[j]);
    }
    if (!val) return;
    __syncthreads();
    double e = 0;
    for (int j = threadIdx.x; j < T; j += blockDim.x)
        if (j != i) e += exp(-row[j]);
    e = block_sum(e, redd);
    if (threadIdx.x == 0) val[blockIdx.x] = e;
}

// one block per row (b, i): dh_i += sum over j != i of g_ij (h_j / (|h_i||h_j|) - cos_ij h_i / |h_i|^2),
// g_ij = -2 exp(-cos_ij) * scale (each unordered pair counts twice in the sum), in double, added once
__global__ static void exp_cos_bwd_k(float *dh, const float *h, const double *cs, const double *nrm, int T, int C,
                                     float scale)
{
    int b = blockIdx.x / T, i = blockIdx.x % T;
    const float *x = h + (size_t)b * T * C;
    const double *nb = nrm + (size_t)b * T, *row = cs + (size_t)blockIdx.x * T;
    double ni = nb[i];
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        double acc = 0, hi = x[(size_t)i * C + c];
        for (int j = 0; j < T; j++) {
            if (j == i) continue;
            double g = -2.0 * exp(-row[j]) * scale;
            acc += g * (x[(size_t)j * C + c] / (ni * nb[j]) - row[j] * hi / (ni * ni));
        }
        dh[((size_t)b * T + i) * C + c] += (float)acc;
    }
}

// the workspace of exp-cosine: norms (B*T), cos (B*T*T), per-row sums (B*T), the total (1), in doubles
static double *exp_cos_prep(const char *op, const float *h, int B, int T, int C, int fwd)
{
    size_t rows = (size_t)B * T;
    double *ws = (double *)gpu_workspace(op, (rows * (T + 2) + 1) * sizeof(double));
    if (!ws) return NULL;
    double *nrm = ws + 1, *cs = nrm + rows, *val = cs + rows * T;
    LAUNCH(row_norms_k, gpu_blocks(rows, 8), 256)(nrm, h, (int)rows, C);
    gpu_launched(op);
    LAUNCH(exp_cos_rows_k, (unsigned)rows, RED_THREADS)(cs, fwd ? val : NULL, h, nrm, T, C);
    gpu_launched(op);
    return ws;
}

// the rows' sums of exp(-cos) summed into *sum (NULL: into the workspace's first double); returns the workspace
static double *exp_cos_launch(const char *op, double *sum, const float *h, int B, int T, int C)
{
    if (!gpu_enter(op)) return NULL;
    size_t rows = (size_t)B * T;
    double *ws = rows ? exp_cos_prep(op, h, B, T, C, 1) : (double *)gpu_workspace(op, sizeof(double));
    if (!ws) return NULL;
    LAUNCH(sum_doubles_k, 1, 1024)(sum ? sum : ws, ws + 1 + rows + rows * T, rows, (const int32_t *)NULL);
    gpu_launched(op);
    return ws;
}

double gpu_exp_cosine_forward(const float *h, int B, int T, int C)
{
    double *ws = exp_cos_launch("gpu_exp_cosine_forward", NULL, h, B, T, C), s = 0;
    return ws && gpu_download(&s, ws, sizeof s) == 0 ? s : 0.0;
}
void gpu_exp_cosine_forward_to(double *sum, const float *h, int B, int T, int C)
{
    exp_cos_launch("gpu_exp_cosine_forward", sum, h, B, T, C);
}

void gpu_exp_cosine_backward(float *dh, const float *h, int B, int T, int C, float scale)
{
    const char *op = "gpu_exp_cosine_backward";
    if (!gpu_enter(op) || B * T == 0) return;
    double *ws = exp_cos_prep(op, h, B, T, C, 0);
    if (!ws) return;
    size_t rows = (size_t)B * T;
    LAUNCH(exp_cos_bwd_k, (unsigned)rows, RED_THREADS)(dh, h, ws + 1 + rows, ws + 1, T, C, scale);
    gpu_launched(op);
}
