// gpu_decode: the kernels of decode.c's incremental inference on the GPU (gpu.h, "decoding"): few rows at a time
// against key/value caches in device memory. A step at batch 1 is a string of matrix-vector products and small
// row ops, bound by launches and weight reads, so each op is one kernel: the linear layer reads every weight row
// once for all its rows (a warp per output column, bias and ReLU in the same pass), LayerNorm takes the residual
// sum with it, and attention is one block per (batch item, head, query row) over the cached keys. Deterministic:
// warp shuffles and block reductions in a fixed order, no atomics. Owns no file format.
#include <math.h>
#include <stdint.h>

#include "gpu_internal.cuh"

#define DL_WARPS 8     // output columns per block of the matrix-vector kernel
#define DL_MAX_ROWS 8  // rows it takes at once; more rows go through cuBLAS
#define DEC_THREADS 128

__device__ static inline float dwarp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// out (N, OC) = x (N, IC) @ w^T + b (ReLU when relu), N <= DL_MAX_ROWS: warp per output column o, its lanes over IC
__global__ static void dec_gemv_k(float *out, const float *x, const float *w, const float *b, int N, int IC, int OC,
                                  int relu)
{
    int o = blockIdx.x * DL_WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (o >= OC) return;
    const float *wr = w + (size_t)o * IC;
    float acc[DL_MAX_ROWS]; // in registers: every index below is a constant after unrolling
UNROLL
    for (int n = 0; n < DL_MAX_ROWS; n++) acc[n] = 0.0f;
    for (int k = lane; k < IC; k += 32) {
        float wk = wr[k];
UNROLL
        for (int n = 0; n < DL_MAX_ROWS; n++)
            if (n < N) acc[n] += x[(size_t)n * IC + k] * wk;
    }
UNROLL
    for (int n = 0; n < DL_MAX_ROWS; n++) {
        if (n >= N) break;
        float s = dwarp_sum(acc[n]);
        if (lane == 0) {
            float y = s + (b ? b[o] : 0.0f);
            out[(size_t)n * OC + o] = relu && !(y > 0.0f) ? 0.0f : y;
        }
    }
}

__global__ static void dec_relu_k(float *x, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        x[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void gpu_dec_linear(float *out, const float *x, const float *w, const float *b, int N, int IC, int OC, int relu)
{
    const char *op = "gpu_dec_linear";
    if (!gpu_enter(op) || N <= 0) return;
    if (N <= DL_MAX_ROWS) {
        LAUNCH(dec_gemv_k, gpu_blocks(OC, DL_WARPS), 32 * DL_WARPS)(out, x, w, b, N, IC, OC, relu);
        gpu_launched(op);
        return;
    }
    gpu_linear_forward(out, x, w, b, N, IC, OC);
    if (relu) {
        size_t n = (size_t)N * OC;
        unsigned blocks = gpu_blocks(n, 256);
        LAUNCH(dec_relu_k, blocks < 65536u ? blocks : 65536u, 256)(out, n);
        gpu_launched(op);
    }
}

// out = LayerNorm(a + b) over C (b NULL: of a), one warp per row; out may equal a
__global__ static void dec_add_ln_k(float *out, const float *a, const float *b, const float *w, const float *bias,
                                    int N, int C)
{
    int row = blockIdx.x * 4 + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    const float *x = a + (size_t)row * C, *y = b ? b + (size_t)row * C : NULL;
    float s = 0.0f;
    for (int c = lane; c < C; c += 32) s += y ? x[c] + y[c] : x[c];
    float m = dwarp_sum(s) / (float)C;
    float v = 0.0f;
    for (int c = lane; c < C; c += 32) {
        float r = y ? x[c] + y[c] : x[c];
        v += (r - m) * (r - m);
    }
    v = dwarp_sum(v) / (float)C;
    float rs = 1.0f / sqrtf(v + 1e-5f);
    float *o = out + (size_t)row * C;
    for (int c = lane; c < C; c += 32) {
        float r = y ? x[c] + y[c] : x[c];
        o[c] = (r - m) * rs * w[c] + bias[c];
    }
}

void gpu_dec_add_layernorm(float *out, const float *a, const float *b, const float *w, const float *bias, int N, int C)
{
    const char *op = "gpu_dec_add_layernorm";
    if (!gpu_enter(op) || N <= 0) return;
    LAUNCH(dec_add_ln_k, gpu_blocks(N, 4), 128)(out, a, b, w, bias, N, C);
    gpu_launched(op);
}

// nb x rows x width floats: dst[g * dstride + r * dpitch + c] = src[g * sstride + r * spitch + c]
__global__ static void dec_copy_k(float *dst, size_t dstride, size_t dpitch, const float *src, size_t sstride,
                                  size_t spitch, int rows, int width, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
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
    unsigned blocks = gpu_blocks(n, 256);
    LAUNCH(dec_copy_k, blocks < 65536u ? blocks : 65536u, 256)(dst, dstride, dpitch, src, sstride, spitch, rows, width,
                                                                n);
    gpu_launched(op);
}

// keys seen by query row a (decode.c n_keys: 0 causal, 1 resample_pre, 2 resample_post)
__device__ static inline int dec_n_keys(int keys, int s, int a)
{
    return keys == 0 ? a + 1 : keys == 1 ? s * a + s : a / s + 1;
}

// One block per (b, h, i): query row i (position p0 + i) of head h against its keys in the cache;
// S_j = scale * (q . k_j) + scale * (q . ers[Tk-1-a+j]) (ers NULL: no relative term), softmax, out = sum_j P_j v_j.
// scores: scratch of Tk floats per block. A step (n = 1) is B*NH blocks only, so each block is wide: a thread per key
// for the scores (the query in shared memory, each thread's row loads independent of the others'), then every warp
// sums a strided share of the keys for 32 columns at a time and the warps' partial sums are added in warp order (no
// atomics). HS <= ATT_MAX_HS.
#define ATT_WARPS 32
#define ATT_MAX_HS 1024
__global__ static void dec_attend_k(float *out, float *scores, const float *q, int ldq, const float *k, const float *v,
                                    int cap, const float *ers, int NH, int C, int n, int p0, int Tk, int keys, int s,
                                    float scale)
{
    __shared__ float red[32], part[ATT_WARPS][32], qs[ATT_MAX_HS];
    int blk = blockIdx.x, i = blk % n, bh = blk / n, h = bh % NH, b = bh / NH, HS = C / NH;
    int a = p0 + i, nk = dec_n_keys(keys, s, a), lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const float *qh = q + ((size_t)b * n + i) * ldq + (size_t)h * HS;
    const float *kh = k + (size_t)b * cap * C + (size_t)h * HS, *vh = v + (size_t)b * cap * C + (size_t)h * HS;
    float *S = scores + (size_t)blk * Tk;
    for (int c = threadIdx.x; c < HS; c += blockDim.x) qs[c] = qh[c];
    __syncthreads();
    for (int j = threadIdx.x; j < nk; j += blockDim.x) { // a thread per key
        const float *kr = kh + (size_t)j * C;
        float dk = 0.0f;
        for (int c = 0; c < HS; c++) dk += qs[c] * kr[c];
        if (ers) {
            const float *er = ers + (size_t)(Tk - 1 - a + j) * HS;
            float de = 0.0f;
            for (int c = 0; c < HS; c++) de += qs[c] * er[c];
            S[j] = scale * dk + scale * de;
        } else {
            S[j] = scale * dk;
        }
    }
    __syncthreads();
    float mx, sum = block_exp_row(S, S, nk, red, red, &mx); // ends with __syncthreads: every S[j] is written
    float *oh = out + ((size_t)b * n + i) * C + (size_t)h * HS;
    for (int c0 = 0; c0 < HS; c0 += 32) { // 32 columns at a time: lane = column, warps split the keys
        int c = c0 + lane;
        float acc = 0.0f;
        if (c < HS)
            for (int j = warp; j < nk; j += ATT_WARPS) acc += (S[j] / sum) * vh[(size_t)j * C + c];
        part[warp][lane] = acc;
        __syncthreads();
        if (warp == 0 && c < HS) {
            float o = 0.0f;
            for (int w = 0; w < ATT_WARPS; w++) o += part[w][lane];
            oh[c] = o;
        }
        __syncthreads();
    }
}

void gpu_dec_attend(float *out, float *scores, const float *q, int ldq, const float *k, const float *v, int cap,
                    const float *ers, int B, int NH, int C, int n, int p0, int Tk, int keys, int s)
{
    const char *op = "gpu_dec_attend";
    if (!gpu_enter(op) || n <= 0) return;
    if (C / NH > ATT_MAX_HS) {
        gpu_record(op, "a head of more than 1024 columns");
        return;
    }
    float scale = 1.0f / sqrtf((float)(C / NH));
    LAUNCH(dec_attend_k, (unsigned)(B * NH * n), 32 * ATT_WARPS)(out, scores, q, ldq, k, v, cap, ers, NH, C, n, p0, Tk,
                                                                 keys, s, scale);
    gpu_launched(op);
}

// The valley rows i0 .. i0+n_s-1 from h (B, cap, C): hs[s*i+k] = h[s*i+k-(s-1)] (zero before 0). mean: out (B, n_s, C)
// the mean of the s rows; else out (B, n_s, s*C) the s rows side by side (linear down's input)
__global__ static void dec_down_k(float *out, const float *h, int cap, int C, int s, int i0, int n_s, int mean, size_t n)
{
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
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
    unsigned blocks = gpu_blocks(n, 256);
    LAUNCH(dec_down_k, blocks < 65536u ? blocks : 65536u, 256)(out, h, cap, C, s, i0, n_s, mean, n);
    gpu_launched(op);
}

// u (B, n, C): u[b, i] = up(v)[t] + h[b, t] for t = p0 + i; up(v)[t] is row t - s*(t/s) of valley row t/s's group
// (lin: s rows of C per valley row) or valley row t/s itself
__global__ static void dec_up_add_k(float *u, const float *up, const float *h, int n, int p0, int cap, int cap_s, int C,
                                    int s, int lin, size_t total)
{
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total; e += (size_t)gridDim.x * blockDim.x) {
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
    unsigned blocks = gpu_blocks(total, 256);
    LAUNCH(dec_up_add_k, blocks < 65536u ? blocks : 65536u, 256)(u, up, h, n, p0, cap, cap_s, C, s, lin, total);
    gpu_launched(op);
}
