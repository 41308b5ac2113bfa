// gpu_internal: what the CUDA files of libcommon/cuda share: the stream and cuBLAS handle, the kept first error, the
// ops' workspace, the row-major GEMM wrapper and deterministic block reductions. Not a public interface (gpu.h is).
#ifndef GPU_INTERNAL_CUH
#define GPU_INTERNAL_CUH

// A dry run (gpu.h gpu_dry_begin): kernels are not launched, cuBLAS is not called, nothing is copied
extern int gpu_dry;

// whether the next LAUNCH_PDL is a programmatic dependent launch (below, with pdl_wait)
bool gpu_pdl_now(void);
#ifdef GPU_EMU // tests/emu: the same sources compiled for the CPU, kernels run by an emulator (no GPU needed)
#include "cuda_emu.h"
#undef LAUNCH
#undef LAUNCH_SMEM
#define LAUNCH(kernel, grid, block) emu_launch(kernel, dim3(grid), dim3(block), 0, &gpu_dry)
#define LAUNCH_SMEM(kernel, grid, block, bytes) emu_launch(kernel, dim3(grid), dim3(block), (bytes), &gpu_dry)
// one kernel at a time, after the one before; the race check orders it after that one only from its pdl_wait on
#define LAUNCH_PDL(kernel, grid, block, bytes)                                                                         \
    emu_launch(kernel, dim3(grid), dim3(block), (bytes), &gpu_dry, 0, gpu_pdl_now())
// every block's threads live at once, for a kernel whose blocks wait for each other (emu_grid_yield)
#define LAUNCH_GRID(kernel, grid, block, bytes) emu_launch(kernel, dim3(grid), dim3(block), (bytes), &gpu_dry, 1)
#else
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>
extern cudaStream_t gpu_stream;
// LAUNCH(kernel, grid, block)(args...): kernel<<<grid, block>>>(args...) on the backend's stream, except in a dry
// run; written so the emulator can take it over. LAUNCH_SMEM with `bytes` of dynamic shared memory, which the
// kernel names with DYN_SMEM(name) (a float *). LAUNCH_PDL: LAUNCH_SMEM, as a programmatic dependent launch when
// gpu_pdl_now() says so (the kernel then calls pdl_wait, below)
template <typename K> struct GpuLaunch {
    K kernel;
    dim3 grid, block;
    size_t smem;
    bool pdl, coop; // coop: a cooperative launch (all blocks resident at once, or the launch fails)
    template <typename... A> void operator()(A... args) const
    {
        if (gpu_dry) return;
        if (!pdl && !coop) {
            kernel<<<grid, block, smem, gpu_stream>>>(args...);
            return;
        }
        cudaLaunchAttribute at[1];
        if (coop) {
            at[0].id = cudaLaunchAttributeCooperative;
            at[0].val.cooperative = 1;
        } else {
            at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
            at[0].val.programmaticStreamSerializationAllowed = 1;
        }
        cudaLaunchConfig_t cfg = {};
        cfg.gridDim = grid, cfg.blockDim = block, cfg.dynamicSmemBytes = smem, cfg.stream = gpu_stream;
        cfg.attrs = at, cfg.numAttrs = 1;
        cudaLaunchKernelEx(&cfg, kernel, args...); // an error is left for gpu_launched's cudaGetLastError
    }
};
template <typename K>
static inline GpuLaunch<K> gpu_launch(K kernel, dim3 grid, dim3 block, size_t smem, bool pdl, bool coop = false)
{
    return GpuLaunch<K>{kernel, grid, block, smem, pdl, coop};
}
#define LAUNCH(kernel, grid, block) gpu_launch(kernel, dim3(grid), dim3(block), 0, false)
#define LAUNCH_SMEM(kernel, grid, block, bytes) gpu_launch(kernel, dim3(grid), dim3(block), (bytes), false)
#define LAUNCH_PDL(kernel, grid, block, bytes) gpu_launch(kernel, dim3(grid), dim3(block), (bytes), gpu_pdl_now())
// a kernel whose blocks wait for each other (the caller sizes the grid by the occupancy): a cooperative launch, so
// a grid the GPU cannot hold at once fails (an error kept) instead of waiting forever; not a dependent one, so it
// starts once the kernel before has finished. Graphs take it (a cooperative kernel node)
#define LAUNCH_GRID(kernel, grid, block, bytes) gpu_launch(kernel, dim3(grid), dim3(block), (bytes), false, true)
#define DYN_SMEM(name)                                                                                                 \
    extern __shared__ __align__(128) float4 name##_f4[]; /* 128: wmma tiles need 32-byte alignment */                \
    float *name = (float *)name##_f4
#endif

#include "gpu.h"

#ifdef GPU_EMU
#define UNROLL
#else
#define UNROLL _Pragma("unroll") // the loop unrolled, so a small array indexed by its counter stays in registers
#endif

extern cudaStream_t gpu_stream;
extern cublasHandle_t gpu_blas;

// False (and "op: gpu not initialized" kept) before a successful gpu_init; every op starts with it. It first launches
// the decoder ops recorded for one launch (gpu_dec_mega), which come before it; the recorded ops themselves start
// with gpu_enter_keep, which does not.
bool gpu_enter(const char *op);
bool gpu_enter_keep(const char *op);
// true (once) when p and exactly bytes were declared zero by gpu_fresh and not zeroed yet: the op calling it, before
// its gpu_enter, then writes every byte of the range without reading it, the bytes it would make on zeros
bool gpu_fresh_take(const void *p, size_t bytes);
// gpu_fresh_take for an attention backward's dq, dk, dv when they are one self-attention's interleaved rows (q, k, v
// each C wide in rows of 3 C, hg.c's g_qkv) declared zero as one range: every row of the three is then written once
// (the gemm attention's first products with beta 0; the fused kernels' FaArgs.fresh)
bool gpu_att_qkv_fresh(const float *dq, const float *dk, const float *dv, const AttnDims *d);
// gpu_dec_mega's recorded ops, launched now (nothing when none); gpu_dec_mega_drop: dropped, recording off, and
// what it knows of the device forgotten (gpu_shutdown)
void gpu_dec_mega_flush(void);
void gpu_dec_mega_drop(void);
// HMT_GPU_PROFILE or HMT_GPU_SYNC: every op is to be timed or checked on its own (no dependent launches, no
// one-launch decoder steps)
bool gpu_op_by_op(void);
// Keeps "op: what" when no error is kept yet.
void gpu_record(const char *op, const char *what);
// After a kernel launch: keeps a launch error; with HMT_GPU_SYNC=1 also waits and keeps an execution error.
void gpu_launched(const char *op);
void gpu_blas_check(const char *op, cublasStatus_t st);
// HMT_GPU_PROFILE: charge the launches and products from here on to the row `label` (a string literal) instead of
// their op's, so an op of several kernels shows each (the attention's); NULL goes back to the op's row.
void gpu_prof_part(const char *label);
// The precision gpu_set_precision chose (GPU_FP32, GPU_TF32 or GPU_BF16).
int gpu_precision(void);
// The ops' workspace, at least `bytes` bytes (grown when needed, contents undefined), or NULL with the error kept.
void *gpu_workspace(const char *op, size_t bytes);

// Row-major C (M,N) = alpha op(A) (M,K) op(B) (K,N) + beta C, as ops.c's sgemm1, for `batch` matrices at strides
// sA, sB, sC (in floats; 0 reuses one matrix). Through cuBLAS: the column-major product C^T = op(B)^T op(A)^T.
void gpu_gemm(const char *op, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, long long sA,
              const float *B, int ldb, long long sB, float beta, float *C, int ldc, long long sC, int batch);

// One product of a linear layer, non-batched (the arguments of gpu_gemm): in float32 (or TF32) as gpu_gemm, or under
// HMT_GPU_BF16=fast with cuBLAS's own bfloat16 conversion. Not for bf16 on our copies (gpu_bf16_ours): its callers
// (gpu_linear_forward_product, gpu_linear_products16_backward) make the copies and take the products themselves.
void gpu_gemm_linear(const char *op, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                     const float *B, int ldb, float beta, float *C, int ldc);

// The linear layer's forward, out (N, OC) = inp (N, IC) w^T (+ b unless NULL), in the precision's products: float32
// (or TF32), or bfloat16 copies of inp and w (inp16 non-NULL: the input already bfloat16, under any precision) and
// float32 sums; with b, the bias in cuBLASLt's epilogue where it takes the operands, else written first as rows the
// product is added to (ops.c's order; HMT_GPU_LT=0 always).
void gpu_linear_forward_product(const char *op, float *out, const float *inp, const uint16_t *inp16, const float *w,
                                const float *b, int N, int IC, int OC);
// The backward's products, bf16 operands and float32 sums under every precision: dout and inp are each taken as given
// in bfloat16 (dout16, inp16) or copied from float32 (dout, inp when the 16 one is NULL); w is copied when dinp is not
// NULL; db (with a float32 dout only) += dout's column sums, made from the read that makes its copy (gpu_bf16_colsums:
// colsums' bytes). gpu_linear_backward under GPU_BF16, gpu_linear_backward16 (the bias's sums too) and
// gpu_linear_backward_g16 (dout16) all go through it. dinp = dinp_beta dinp + dout w (0: written, not read).
void gpu_linear_products16_backward(const char *op, float *dinp, float dinp_beta, float *dw, float *db,
                                    const float *dout, const uint16_t *dout16, const float *inp,
                                    const uint16_t *inp16, const float *w, int N, int IC, int OC);
// Whether the linear layers' products take bfloat16 copies made here (GPU_BF16 without HMT_GPU_BF16=fast)
int gpu_bf16_ours(void);
// dst (N, C) = src's bfloat16 and db (C) += src's column sums (the bytes of the column sums of a linear layer's
// backward), from one read of src; part: gpu_colsum_chunks(N) x C floats of scratch
void gpu_bf16_colsums(const char *op, uint16_t *dst, float *part, float *db, const float *src, int N, int C);
int gpu_colsum_chunks(int N);

// gpu_gemm2 on bfloat16 operands A and B (strides in elements), float32 sums and C
void gpu_gemm2_16(const char *op, int ta, int tb, int M, int N, int K, float alpha, const uint16_t *A, int lda,
                  long long sAb, long long sAh, const uint16_t *B, int ldb, long long sBb, long long sBh, float beta,
                  float *C, int ldc, long long sCb, long long sCh, int nb, int nh);
// The unfused attention's products on bfloat16 operands (HMT_GPU_ATT16=1 under GPU_BF16, not HMT_GPU_BF16=fast; both
// read by gpu_set_precision, as the step's hot path reads no environment): q, k, v, Er, dout and the probabilities and score gradients they meet rounded once; float32 sums,
// softmax and statistics. Off by default until a GPU has timed it and measured its accuracy.
int gpu_att16(void);
// bfloat16 copies of up to BF16_RANGES float32 ranges src[r] (n[r] floats) into buf, ranges that overlap (operands
// interleaved in one buffer: q, k, v of hg.c's qkv) copied once, in one launch; out[r] is src[r]'s copy (NULL for
// a NULL or empty range). Returns the elements buf needs (each group 256-byte aligned; at least 1); with buf NULL
// only that.
#define BF16_RANGES 5
size_t gpu_bf16_ranges(const char *op, uint16_t *buf, int n_ops, const float *const *src, const size_t *n,
                       uint16_t **out);

// bfloat16 of x, rounded to nearest even (NaN stays a quiet NaN): the high half of the float's bits
__device__ static inline uint16_t to_bf16(float x)
{
    uint32_t u = __float_as_uint(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// The same for nb x nh matrices, matrix (b, h) of each operand at base + b * s_b + h * s_h (in floats): the
// attention's heads of every batch item in one call (cuBLAS batched with pointer arrays built on the GPU).
void gpu_gemm2(const char *op, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
               long long sAb, long long sAh, const float *B, int ldb, long long sBb, long long sBh, float beta,
               float *C, int ldc, long long sCb, long long sCh, int nb, int nh);

// ---- dropout: ops.c's counter stream --------------------------------------------------------------------------
// Element i of the stream keyed by `key` is kept iff the 32-bit half (i & 1) of splitmix64 output i/2 is >= thr
// (Steele et al. 2014); key = mix64(seed + GOLDEN) + GOLDEN, thr = p * 2^32 (saturated), as ops.c.
#define GOLDEN 0x9e3779b97f4a7c15ULL
__host__ __device__ static inline uint64_t mix64(uint64_t x)
{
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}
__host__ __device__ static inline uint64_t dropout_key(uint64_t seed) { return mix64(seed + GOLDEN) + GOLDEN; }
// a SeedRef's value (ops.h seed_get), read by the kernel: its base is device memory
__device__ static inline uint64_t seed_dev(SeedRef s) { return s.base ? s.mul * *s.base + s.add : s.add; }
static inline uint32_t drop_threshold(float p)
{
    double t = (double)p * 4294967296.0;
    return t >= 4294967295.0 ? 0xffffffffu : (uint32_t)t;
}
__device__ static inline int drop_keep(uint64_t key, uint32_t thr, size_t i)
{
    uint64_t h = mix64(key + (uint64_t)(i >> 1) * GOLDEN);
    uint32_t u = i & 1 ? (uint32_t)(h >> 32) : (uint32_t)h;
    return u >= thr;
}

// ---- programmatic dependent launch (sm_90) --------------------------------------------------------------------
// A kernel launched with it (gpu_decode.cu's step kernels under DecOpts.pdl) may start while the kernel before it in
// the stream still runs. pdl_wait() returns once that kernel has finished and its writes are visible: before it, a
// kernel reads only what no kernel writes (weights, biases) and writes nothing. pdl_release() lets the next kernel
// start (it then waits in its own pdl_wait). Both do nothing in a kernel launched without it; on the emulator they
// tell its race check where the kernel's threads are ordered after the kernel before (cuda_emu.h emu_run).
__device__ static inline void pdl_wait(void)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#elif defined(GPU_EMU)
    emu_pdl_wait();
#endif
}
__device__ static inline void pdl_release(void)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" :::);
#elif defined(GPU_EMU)
    emu_pdl_release();
#endif
}
// gpu_pdl_now (declared above, with LAUNCH_PDL): whether the next LAUNCH_PDL is one: asked for (gpu_set_pdl, on a
// device of compute capability 9 or more), not profiling or waiting after each op, and the stream's last op a kernel
// of ours (after a copy, an event or a cuBLAS call: a plain launch)
void gpu_set_pdl(int on);

// ---- attention ---------------------------------------------------------------------------------------------
// dEr_T (n floats) += sum over t < tasks, in order, of part[t * n .. t * n + n): the per-(b, h) partials of dEr
void gpu_er_sum(const char *op, float *dEr_T, const float *part, int tasks, size_t n);

// grid size for n elements at `per` elements per block, at least 1
static inline unsigned gpu_blocks(size_t n, size_t per) { return n ? (unsigned)((n + per - 1) / per) : 1u; }

// elementwise kernels: EW_THREADS per block, at most EW_MAX_BLOCKS blocks, grid-stride loops beyond that
#define EW_THREADS 256
#define EW_MAX_BLOCKS 65536u
static inline unsigned ew_blocks(size_t n)
{
    unsigned b = gpu_blocks(n, EW_THREADS);
    return b < EW_MAX_BLOCKS ? b : EW_MAX_BLOCKS;
}
#define GRID_STRIDE(i, n)                                                                                              \
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)

// the sum over a warp, in every lane (a butterfly: a fixed order)
__device__ static inline float warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// LayerNorm of one row over C by one warp (lane 0..31): out (and out2 unless NULL) = LN(x + y) (y NULL: of x) with
// weights w, b, eps 1e-5, and unless NULL out16 = out as bfloat16 (to_bf16: gpu_to_bf16's bytes of out); the row's mean
// and 1/sd to *mean, *rstd unless NULL. decode's kernels and the training LayerNorm share it, so their bytes agree. A
// lane keeps its first LN_REG values of the row in registers (all of a row up to 32 LN_REG wide), loaded at once: one
// trip to memory for the three passes, not three (a decode step is a chain of such latencies); the values past that are
// read again, and every sum runs in the same order either way.
#define LN_REG 16
__device__ static inline void warp_ln_row(float *out, float *out2, uint16_t *out16, float *mean, float *rstd,
                                          const float *x, const float *y, const float *w, const float *b, int C,
                                          int lane)
{
    float xr[LN_REG];
    UNROLL for (int u = 0; u < LN_REG; u++) {
        int c = lane + 32 * u;
        xr[u] = c < C ? (y ? x[c] + y[c] : x[c]) : 0.0f;
    }
    const int c_far = lane + 32 * LN_REG; // a lane's first value not kept
    float s = 0.0f;
    UNROLL for (int u = 0; u < LN_REG; u++)
        if (lane + 32 * u < C) s += xr[u];
    for (int c = c_far; c < C; c += 32) s += y ? x[c] + y[c] : x[c];
    float m = warp_sum(s) / (float)C;
    float v = 0.0f;
    UNROLL for (int u = 0; u < LN_REG; u++)
        if (lane + 32 * u < C) v += (xr[u] - m) * (xr[u] - m);
    for (int c = c_far; c < C; c += 32) {
        float r = y ? x[c] + y[c] : x[c];
        v += (r - m) * (r - m);
    }
    v = warp_sum(v) / (float)C;
    float rs = 1.0f / sqrtf(v + 1e-5f);
    UNROLL for (int u = 0; u < LN_REG; u++) {
        int c = lane + 32 * u;
        if (c >= C) break;
        float o = (xr[u] - m) * rs * w[c] + b[c];
        out[c] = o;
        if (out2) out2[c] = o;
        if (out16) out16[c] = to_bf16(o);
    }
    for (int c = c_far; c < C; c += 32) {
        float r = y ? x[c] + y[c] : x[c], o = (r - m) * rs * w[c] + b[c];
        out[c] = o;
        if (out2) out2[c] = o;
        if (out16) out16[c] = to_bf16(o);
    }
    if (mean) *mean = m;
    if (rstd) *rstd = rs;
}

// Sum over the block of one value per thread, in a fixed order (warp shuffles, then the warps' sums in order);
// the result is valid in every thread. blockDim.x a multiple of 32, at most 1024; `shared` holds 32 values.
template <typename F> __device__ inline F block_sum(F v, F *shared)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads(); // shared may still be read by a previous call
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < nw ? shared[lane] : (F)0;
        for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
        if (lane == 0) shared[0] = v;
    }
    __syncthreads();
    return shared[0];
}

template <typename F> __device__ inline F block_max(F v, F *shared)
{
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_down_sync(0xffffffffu, v, o));
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < nw ? shared[lane] : -INFINITY;
        for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_down_sync(0xffffffffu, v, o));
        if (lane == 0) shared[0] = v;
    }
    __syncthreads();
    return shared[0];
}

// row[j] = exp(x[j] - max x) for j < n over the block (row may be x); returns their sum, accumulated in Acc and
// summed as block_sum does (racc: 32 Acc of shared memory; red: 32 floats), and the max in *max_out.
template <typename Acc>
__device__ inline Acc block_exp_row(float *row, const float *x, int n, float *red, Acc *racc, float *max_out)
{
    float mx = -INFINITY;
    for (int j = threadIdx.x; j < n; j += blockDim.x) mx = fmaxf(mx, x[j]);
    mx = block_max(mx, red);
    *max_out = mx;
    Acc sum = 0;
    for (int j = threadIdx.x; j < n; j += blockDim.x) {
        float e = expf(x[j] - mx);
        row[j] = e;
        sum += e;
    }
    return block_sum(sum, racc);
}

#endif
