// cuda_emu: just enough of the CUDA runtime, cuBLAS and the kernel language for libcommon/cuda/*.cu to compile as
// C++ for the CPU (-DGPU_EMU) and run its kernels on an emulator: `make test-cuda-emu`. Each block runs its threads
// as user-space contexts, one at a time, switching at __syncthreads and at warp shuffles; a barrier that not every
// live thread of the block (or warp) reaches is reported as a deadlock. Device memory is host memory (so ASan sees a
// kernel's out-of-bounds access); cuBLAS sgemm is OpenBLAS's column-major sgemm. It checks the kernels' logic
// (indexing, barriers, reductions, the host code around them), never their speed, and is no substitute for the GPU.
#ifndef CUDA_EMU_H
#define CUDA_EMU_H

#include <math.h>
#include <stddef.h>

#include <functional>
#include <new>
#include <tuple>
#include <type_traits>
#include <stdint.h>
#include <string.h>

#define __global__
#define __device__
#define __host__
#define __grid_constant__
// blocks run one after another: one copy serves them all, in a section of its own (tests/emu/smem.ld) that the
// scheduler fills with NaN bytes before each block, as DYN_SMEM's, so a read before the block's write is caught.
// g++ ignores the section of a static in a template, so libcommon/cuda declares none there (`make
// test-cuda-race` checks: every __shared__ array of the sources lies in the section)
#define __shared__ static __attribute__((section("emu_smem")))
#define __launch_bounds__(...)

struct alignas(16) float4 {
    float x, y, z, w;
};
struct dim3 {
    unsigned x, y, z;
    dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
struct uint3e {
    unsigned x, y, z;
};
extern uint3e threadIdx, blockIdx; // set by the scheduler before it switches to a thread (one runs at a time)
extern dim3 blockDim, gridDim;

// ---- the scheduler -------------------------------------------------------------------------------------------
void emu_syncthreads(void);
// a warp's barrier: emu_syncwarp for the collectives (shuffles, wmma), which order no memory on a GPU;
// emu_syncwarp_mem for __syncwarp, which does (the race check, EMU_RACE, tells them apart)
void emu_syncwarp(void);
void emu_syncwarp_mem(void);
// a thread that waits for other blocks (the decoder's one-launch step, gpu_decode.cu dec_wait: a spin on a counter
// they raise) lets them run, then tries again; only in a launch by emu_run with grid_sync
void emu_grid_yield(void);
// runs fn(ctx) once per thread of every block, blocks in order. grid_sync: the blocks' threads all live at once (a
// 1-D grid); a block runs until none of its threads can go on (each done, at emu_grid_yield, or at __syncthreads
// behind one that is), then the next block, round after round. So blocks still run one after another between
// their waits: a block that reads what another writes without waiting for it reads it unwritten or written, by
// block order. A round in which no thread gets past a wait is a deadlock
// pdl: a programmatic dependent launch (gpu_internal.cuh LAUNCH_PDL), which on a GPU may start while the kernel
// before it still runs; the emulator runs it after that kernel all the same, and the race check orders its threads
// after that kernel's end only from their emu_pdl_wait on (before it, after what the kernel before had done at its
// emu_pdl_release: its start, in gpu_decode.cu's kernels), so a read of that kernel's output before the wait, or a
// write before it that kernel reads, is a race
void emu_run(dim3 grid, dim3 block, void (*fn)(void *), void *ctx, int grid_sync = 0, int pdl = 0);
// griddepcontrol.wait and .launch_dependents (gpu_internal.cuh pdl_wait, pdl_release): for the race check only
void emu_pdl_wait(void);
void emu_pdl_release(void);
// room for a launch's kernel and arguments (EmuLaunch), 64-byte aligned at least, until the next launch
void *emu_args(size_t bytes);
// integer atomics and fences: the threads run one at a time, so a fence is nothing; the atomics are the compiler's
// (acquire and release), so the race check sees the synchronisation they make
static inline unsigned atomicAdd(unsigned *p, unsigned v) { return __atomic_fetch_add(p, v, __ATOMIC_ACQ_REL); }
static inline unsigned atomicExch(unsigned *p, unsigned v) { return __atomic_exchange_n(p, v, __ATOMIC_ACQ_REL); }
static inline unsigned emu_load_acquire(const unsigned *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void __threadfence(void) {}

static inline void __syncthreads(void) { emu_syncthreads(); }
static inline unsigned __float_as_uint(float x)
{
    unsigned u;
    memcpy(&u, &x, sizeof u);
    return u;
}
static inline float __uint_as_float(unsigned u)
{
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

// a warp's lanes exchange values through one slot each (8 bytes) of two buffers, taken in turn, with a warp barrier
// before reading. No barrier after: a lane writes a buffer again two shuffles later, past the next shuffle's barrier,
// which every lane reaches only once it has read this one. The slots are written and read as relaxed atomics, so the
// race check takes a shuffle for what it is on a GPU: an exchange of registers that orders no memory
extern uint64_t emu_lane_slots[2][1024];
unsigned emu_shfl_buffer(void); // the running thread's buffer for its next shuffle (0, 1, 0, ... from its start)
template <typename T> static inline T emu_shfl(T v, int src_lane)
{
    static_assert(sizeof(T) <= sizeof(uint64_t), "a shuffle moves at most 8 bytes");
    unsigned t = threadIdx.x, base = t & ~31u;
    uint64_t *slots = emu_lane_slots[emu_shfl_buffer()], mine = 0, theirs;
    memcpy(&mine, &v, sizeof v);
    __atomic_store_n(&slots[t], mine, __ATOMIC_RELAXED);
    emu_syncwarp();
    T r = v;
    unsigned s = base + (unsigned)src_lane;
    if (src_lane >= 0 && src_lane < 32 && s < blockDim.x) {
        theirs = __atomic_load_n(&slots[s], __ATOMIC_RELAXED);
        memcpy(&r, &theirs, sizeof r);
    }
    return r;
}
template <typename T> static inline T __shfl_sync(unsigned, T v, int src) { return emu_shfl(v, src & 31); }
static inline void __syncwarp(unsigned = 0xffffffffu) { emu_syncwarp_mem(); }
template <typename T> static inline T __shfl_down_sync(unsigned, T v, int o) { return emu_shfl(v, (int)(threadIdx.x & 31) + o); }
template <typename T> static inline T __shfl_xor_sync(unsigned, T v, int o) { return emu_shfl(v, (int)(threadIdx.x & 31) ^ o); }
template <typename T> static inline T __shfl_up_sync(unsigned, T v, int o)
{
    int lane = (int)(threadIdx.x & 31);
    T r = emu_shfl(v, lane - o); // out of the warp: the lane's own value, as CUDA
    return r;
}

// ---- bfloat16 and warp matrix products (cuda_bf16.h, mma.h) ---------------------------------------------------
struct __nv_bfloat16 {
    uint16_t x;
};
// rounded to nearest even (NaN stays a quiet NaN), as the GPU's cvt.rn.bf16.f32
static inline __nv_bfloat16 __float2bfloat16_rn(float f)
{
    unsigned u = __float_as_uint(f);
    __nv_bfloat16 b;
    b.x = (u & 0x7fffffffu) > 0x7f800000u ? (uint16_t)((u >> 16) | 0x40u) : (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    return b;
}
static inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 b) { return b.x; }
static inline float __bfloat162float(__nv_bfloat16 b) { return __uint_as_float((unsigned)b.x << 16); }

// nvcuda::wmma for 16 x 16 x K tiles (K 16 for bf16, 8 for tf32). An accumulator holds 8 elements per lane
// (element e = lane + 32 k of the row-major tile); an operand fragment holds what its lane's products read (rows
// lane/16 + 2k of A, column lane%16 of B). So a lane's mma computes only its own, and loads and stores touch only
// its own: a kernel that reads a tile before every lane has
// stored it reads garbage here as on a GPU. Every call is warp-collective: a barrier of the warp first (a lane that
// does not take part is a deadlock). Pointers must be 32-byte aligned and ldm a multiple of 16 bytes (or abort).
void emu_wmma_check(const void *p, unsigned ldm, size_t elem, const char *what);
// ldmatrix (gpu_mma.cuh mma_ldm): a lane's row address must be 16-byte aligned, its 16 bytes in the block's shared
// memory, static or dynamic (or abort: a GPU faults on the first, reads elsewhere on the second)
void emu_ldm_check(const void *row);
namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
namespace precision {
struct tf32 {};
}
enum layout_t { mem_row_major, mem_col_major };
// rounded to nearest, ties away from zero, to 10 mantissa bits (cvt.rna.tf32.f32)
static inline float __float_to_tf32(float x)
{
    unsigned u = __float_as_uint(x);
    if ((u & 0x7f800000u) == 0x7f800000u) return x;
    return __uint_as_float((u + 0x1000u) & ~0x1fffu);
}
template <typename T> struct emu_elem;
template <> struct emu_elem<__nv_bfloat16> {
    typedef __nv_bfloat16 mem;
    static float get(mem v) { return __bfloat162float(v); }
};
template <> struct emu_elem<precision::tf32> {
    typedef float mem;
    static float get(mem v) { return __uint_as_float(__float_as_uint(v) & ~0x1fffu); } // the tensor core's bits
};
template <typename Use, int M, int N, int K, typename T, typename L = void> struct fragment;
template <int M, int N, int K, typename T, typename L> struct fragment<matrix_a, M, N, K, T, L> {
    enum { R = M, C = K };
    typedef L layout;
    typedef T elem;
    float t[M * K];
};
template <int M, int N, int K, typename T, typename L> struct fragment<matrix_b, M, N, K, T, L> {
    enum { R = K, C = N };
    typedef L layout;
    typedef T elem;
    float t[K * N];
};
template <int M, int N, int K> struct fragment<accumulator, M, N, K, float, void> {
    enum { num_elements = M * N / 32, R = M, C = N };
    float x[M * N / 32];
};
template <typename U, int M, int N, int K, typename T, typename L>
static inline void load_matrix_sync(fragment<U, M, N, K, T, L> &f, const typename emu_elem<T>::mem *p, unsigned ldm)
{
    typedef fragment<U, M, N, K, T, L> F;
    emu_syncwarp();
    emu_wmma_check(p, ldm, sizeof *p, "load_matrix_sync");
    const bool rm = std::is_same<L, row_major>::value, is_a = std::is_same<U, matrix_a>::value;
    const int lane = (int)(threadIdx.x & 31);
    // only what the lane's products read (16-column accumulators): rows lane/16 + 2k of A, column lane%16 of B
    for (int r = is_a ? lane / 16 : 0; r < F::R; r += is_a ? 2 : 1)
        for (int c = is_a ? 0 : lane % 16; c < F::C; c += is_a ? 1 : 16)
            f.t[r * F::C + c] = emu_elem<T>::get(rm ? p[(size_t)r * ldm + c] : p[(size_t)c * ldm + r]);
}
template <int M, int N, int K>
static inline void load_matrix_sync(fragment<accumulator, M, N, K, float> &f, const float *p, unsigned ldm, layout_t l)
{
    emu_syncwarp();
    emu_wmma_check(p, ldm, sizeof *p, "load_matrix_sync");
    for (int k = 0; k < M * N / 32; k++) {
        int e = (int)(threadIdx.x & 31) + 32 * k, r = e / N, c = e % N;
        f.x[k] = l == mem_row_major ? p[(size_t)r * ldm + c] : p[(size_t)c * ldm + r];
    }
}
template <int M, int N, int K>
static inline void store_matrix_sync(float *p, const fragment<accumulator, M, N, K, float> &f, unsigned ldm, layout_t l)
{
    emu_syncwarp();
    emu_wmma_check(p, ldm, sizeof *p, "store_matrix_sync");
    for (int k = 0; k < M * N / 32; k++) {
        int e = (int)(threadIdx.x & 31) + 32 * k, r = e / N, c = e % N;
        (l == mem_row_major ? p[(size_t)r * ldm + c] : p[(size_t)c * ldm + r]) = f.x[k];
    }
}
template <int M, int N, int K> static inline void fill_fragment(fragment<accumulator, M, N, K, float> &f, float v)
{
    for (int k = 0; k < M * N / 32; k++) f.x[k] = v;
}
// d = a b + c, the products exact (bf16, tf32) and summed in float32 over k in order
template <int M, int N, int K, typename T, typename LA, typename LB>
static inline void mma_sync(fragment<accumulator, M, N, K, float> &d, const fragment<matrix_a, M, N, K, T, LA> &a,
                            const fragment<matrix_b, M, N, K, T, LB> &b, const fragment<accumulator, M, N, K, float> &c)
{
    emu_syncwarp();
    for (int k = 0; k < M * N / 32; k++) {
        int e = (int)(threadIdx.x & 31) + 32 * k, r = e / N, col = e % N;
        float s = c.x[k];
        for (int q = 0; q < K; q++) s += a.t[r * K + q] * b.t[q * N + col];
        d.x[k] = s;
    }
}
} // namespace wmma
} // namespace nvcuda

// dynamic shared memory (DYN_SMEM in gpu_internal.cuh): a fresh buffer of the launch's size, filled with NaN
// bytes, so a kernel that reads past its size (ASan) or before writing (NaN in the result) is caught
extern float *emu_dyn_smem;
void emu_set_dyn_smem(size_t bytes);

// stream capture (cudaStreamBeginCapture .. cudaStreamEndCapture): launches and async copies are recorded in order,
// not run; a graph replays them (cuBLAS calls too, as cuBLAS 12.2+ allows). What a real capture refuses (a wait, an
// allocation, a copy to or from pageable host memory) fails the capture instead
extern int emu_capturing;
void emu_record(std::function<void()> op);

// a launch's shape, checked before it runs: dynamic shared memory over 48 KiB, or over what
// cudaFuncSetAttribute(cudaFuncAttributeMaxDynamicSharedMemorySize) allowed its kernel, fails the launch as on a GPU
// (0: an error kept, the kernel not run). With EMU_LAUNCH_LOG=FILE, each kernel's shapes are written there at exit
// for tests/emu/check_launch.sh, which holds them against ptxas's count of the kernel's registers and static shared
// memory (what only a GPU would refuse: a block it has not the registers for)
int emu_launch_note(const void *kernel, dim3 block, size_t smem, int grid_sync);
void emu_func_optin(const void *kernel, int bytes);

// LAUNCH(kernel, grid, block)(args...): every thread calls kernel(args...); LAUNCH_SMEM also sizes DYN_SMEM
template <typename K> struct EmuLaunch {
    K k;
    dim3 g, b;
    size_t smem;
    const int *skip; // when it points to a nonzero int, the launch does nothing (gpu_internal.cuh's dry run)
    int grid_sync;   // the kernel waits for other blocks (emu_grid_yield): every block's threads live at once (emu_run)
    int pdl;         // a programmatic dependent launch (emu_run)
    template <typename... A> void operator()(A... args)
    {
        if (skip && *skip) return;
        if (emu_capturing) { // stream capture: the launch, its arguments by value, into the graph
            EmuLaunch<K> self = *this;
            emu_record([=]() mutable { self(args...); });
            return;
        }
        if (!emu_launch_note(reinterpret_cast<const void *>(k), b, smem, grid_sync)) return;
        emu_set_dyn_smem(smem);
        // the kernel and its arguments, which every thread reads: for the race check in pages of their own, mapped
        // anew for each launch (emu_args), not on the host's stack, where the next launch's would be written over
        // them while the host is not ordered after this launch's threads (a dependent launch)
        typedef std::tuple<K, A...> Payload;
        Payload *call = new (emu_args(sizeof(Payload))) Payload(k, args...);
        emu_run(g, b, [](void *c) { std::apply([](K kk, auto &...a) { kk(a...); }, *(Payload *)c); }, call, grid_sync,
                pdl);
        call->~Payload();
    }
};
template <typename K> static inline EmuLaunch<K> emu_launch(K k, dim3 g, dim3 b, size_t smem = 0,
                                                           const int *skip = NULL, int grid_sync = 0, int pdl = 0)
{
    return EmuLaunch<K>{k, g, b, smem, skip, grid_sync, pdl};
}
#define LAUNCH(kernel, grid, block) emu_launch(kernel, dim3(grid), dim3(block))
#define LAUNCH_SMEM(kernel, grid, block, bytes) emu_launch(kernel, dim3(grid), dim3(block), (bytes))
#define DYN_SMEM(name) float *name = emu_dyn_smem

// ---- CUDA runtime (the calls libcommon/cuda uses) --------------------------------------------------------------
typedef enum cudaError {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInsufficientDriver = 35,
    cudaErrorNoDevice = 100,
    cudaErrorCompatNotSupportedOnDevice = 805,
    cudaErrorStreamCaptureUnsupported = 900,
    cudaErrorStreamCaptureInvalidated = 901,
} cudaError_t;
typedef void *cudaStream_t;
enum cudaMemcpyKind { cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice };
#define cudaStreamNonBlocking 1
struct cudaDeviceProp {
    char name[256];
    int major, minor;
    size_t sharedMemPerBlockOptin; // an H100's: 227 KiB
};
const char *cudaGetErrorString(cudaError_t e);
cudaError_t cudaGetLastError(void);
cudaError_t cudaDriverGetVersion(int *v);
cudaError_t cudaRuntimeGetVersion(int *v);
cudaError_t cudaGetDeviceCount(int *n);
cudaError_t cudaSetDevice(int d);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
// events: the host's clock when recorded (kernels run as they are launched, so that is when the stream reaches
// them); not for use while capturing (HMT_GPU_PROFILE, their one user, turns graphs off)
typedef struct EmuEvent *cudaEvent_t;
cudaError_t cudaEventCreate(cudaEvent_t *e);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t emu_malloc(void **p, size_t bytes);
template <typename T> static inline cudaError_t cudaMalloc(T **p, size_t bytes) { return emu_malloc((void **)p, bytes); }
cudaError_t cudaFree(void *p);
cudaError_t cudaMemGetInfo(size_t *fr, size_t *tot);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind k, cudaStream_t s);
#define cudaHostAllocDefault 0
// page-locked host memory: tracked, since a captured copy to or from the host must use it (as on a GPU)
cudaError_t emu_host_alloc(void **p, size_t bytes);
template <typename T> static inline cudaError_t cudaHostAlloc(T **p, size_t bytes, unsigned flags)
{
    (void)flags;
    return emu_host_alloc((void **)p, bytes);
}
cudaError_t cudaFreeHost(void *p);
cudaError_t cudaMemsetAsync(void *p, int v, size_t bytes, cudaStream_t s);
enum cudaStreamCaptureMode { cudaStreamCaptureModeGlobal = 0, cudaStreamCaptureModeThreadLocal = 1,
                             cudaStreamCaptureModeRelaxed = 2 };
typedef struct EmuGraph *cudaGraph_t;
typedef struct EmuGraph *cudaGraphExec_t;
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *g);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *e, cudaGraph_t g, unsigned long long flags = 0);
cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t s);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e);
cudaError_t cudaGraphDestroy(cudaGraph_t g);
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
// more dynamic shared memory than an H100 block may opt in to (sharedMemPerBlockOptin) is refused, as there; what
// is allowed is kept for the kernel's launches (emu_launch_note)
template <typename K> static inline cudaError_t cudaFuncSetAttribute(K k, cudaFuncAttribute, int bytes)
{
    if (bytes < 0 || bytes > 232448) return cudaErrorInvalidValue;
    emu_func_optin(reinterpret_cast<const void *>(k), bytes);
    return cudaSuccess;
}

// ---- cuBLAS ---------------------------------------------------------------------------------------------------
typedef void *cublasHandle_t;
typedef enum { CUBLAS_STATUS_SUCCESS = 0, CUBLAS_STATUS_INVALID_VALUE = 7, CUBLAS_STATUS_INTERNAL_ERROR = 14,
               CUBLAS_STATUS_NOT_SUPPORTED = 15
} cublasStatus_t;
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 } cublasOperation_t;
typedef enum { CUBLAS_DEFAULT_MATH = 0, CUBLAS_TF32_TENSOR_OP_MATH = 3 } cublasMath_t;
cublasStatus_t cublasCreate(cublasHandle_t *h);
cublasStatus_t cublasDestroy(cublasHandle_t h);
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s);
cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t m);
const char *cublasGetStatusString(cublasStatus_t s);
cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                           const float *alpha, const float *A, int lda, const float *B, int ldb, const float *beta,
                           float *C, int ldc);
cublasStatus_t cublasSgemmBatched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                                  const float *alpha, const float *const A[], int lda, const float *const B[], int ldb,
                                  const float *beta, float *const C[], int ldc, int batch);
typedef enum { CUDA_R_32F = 0, CUDA_R_16BF = 14 } cudaDataType_t;
typedef enum { CUBLAS_COMPUTE_32F = 68, CUBLAS_COMPUTE_32F_FAST_16BF = 75, CUBLAS_COMPUTE_32F_FAST_TF32 = 77
} cublasComputeType_t;
typedef enum { CUBLAS_GEMM_DEFAULT = -1 } cublasGemmAlgo_t;
// A and B float32 or bfloat16 (widened exactly, then OpenBLAS's sgemm), C float32, compute 32F; compute
// 32F_FAST_16BF rounds float32 operands to bfloat16 first (nearest even: the emulator's guess at cuBLAS's rounding)
cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const void *alpha, const void *A, cudaDataType_t Atype, int lda, const void *B,
                            cudaDataType_t Btype, int ldb, const void *beta, void *C, cudaDataType_t Ctype, int ldc,
                            cublasComputeType_t compute, cublasGemmAlgo_t algo);
cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                         int k, const float *alpha, const float *A, int lda, long long sA,
                                         const float *B, int ldb, long long sB, const float *beta, float *C, int ldc,
                                         long long sC, int batch);
// cublasGemmEx for `batch` matrices, at strides (in elements) or through pointer arrays
cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                          int k, const void *alpha, const void *A, cudaDataType_t Atype, int lda,
                                          long long sA, const void *B, cudaDataType_t Btype, int ldb, long long sB,
                                          const void *beta, void *C, cudaDataType_t Ctype, int ldc, long long sC,
                                          int batch, cublasComputeType_t compute, cublasGemmAlgo_t algo);
cublasStatus_t cublasGemmBatchedEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                                   const void *alpha, const void *const A[], cudaDataType_t Atype, int lda,
                                   const void *const B[], cudaDataType_t Btype, int ldb, const void *beta,
                                   void *const C[], cudaDataType_t Ctype, int ldc, int batch,
                                   cublasComputeType_t compute, cublasGemmAlgo_t algo);

// ---- cuBLASLt: the subset gpu.cu uses (a product with its bias in the epilogue) ----------------------------------
// The heuristic takes what cuBLASLt takes for these types (32F, or 16BF A and B with 32F C and D; compute 32F,
// 32F_FAST_TF32 or 32F_FAST_16BF) and returns one algorithm that remembers the alignments it was chosen for:
// cublasLtMatmul refuses an operand (or bias) less aligned than that, as a GPU kernel chosen for them could fault or
// read wrong rows. Its bias epilogue adds a 32F bias to the float32 result.
typedef struct EmuLt *cublasLtHandle_t;
typedef struct EmuLtDesc *cublasLtMatmulDesc_t;
typedef struct EmuLtLayout *cublasLtMatrixLayout_t;
typedef struct EmuLtPref *cublasLtMatmulPreference_t;
typedef struct { uint64_t data[8]; } cublasLtMatmulAlgo_t;
typedef struct {
    cublasLtMatmulAlgo_t algo;
    size_t workspaceSize;
    cublasStatus_t state;
    float wavesCount;
    int reserved[4];
} cublasLtMatmulHeuristicResult_t;
typedef enum { CUBLASLT_MATMUL_DESC_TRANSA = 3, CUBLASLT_MATMUL_DESC_TRANSB = 4, CUBLASLT_MATMUL_DESC_EPILOGUE = 7,
               CUBLASLT_MATMUL_DESC_BIAS_POINTER = 8, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE = 26
} cublasLtMatmulDescAttributes_t;
typedef enum { CUBLASLT_EPILOGUE_DEFAULT = 1, CUBLASLT_EPILOGUE_BIAS = 4 } cublasLtEpilogue_t;
typedef enum { CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK = 3,
               CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES = 5, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES = 6,
               CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES = 7, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES = 8
} cublasLtMatmulPreferenceAttributes_t;
enum { CUBLASLT_REDUCTION_SCHEME_NONE = 0 };
cublasStatus_t cublasLtCreate(cublasLtHandle_t *h);
cublasStatus_t cublasLtDestroy(cublasLtHandle_t h);
cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *d, cublasComputeType_t compute, cudaDataType_t scale);
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d);
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t a, const void *buf,
                                              size_t size);
cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *l, cudaDataType_t type, uint64_t rows, uint64_t cols,
                                          int64_t ld);
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l);
cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *p);
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p);
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p,
                                                    cublasLtMatmulPreferenceAttributes_t a, const void *buf,
                                                    size_t size);
cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t h, cublasLtMatmulDesc_t d, cublasLtMatrixLayout_t a,
                                              cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c,
                                              cublasLtMatrixLayout_t dd, cublasLtMatmulPreference_t p, int requested,
                                              cublasLtMatmulHeuristicResult_t *results, int *returned);
cublasStatus_t cublasLtMatmul(cublasLtHandle_t h, cublasLtMatmulDesc_t d, const void *alpha, const void *A,
                              cublasLtMatrixLayout_t la, const void *B, cublasLtMatrixLayout_t lb, const void *beta,
                              const void *C, cublasLtMatrixLayout_t lc, void *D, cublasLtMatrixLayout_t ld,
                              const cublasLtMatmulAlgo_t *algo, void *ws, size_t ws_bytes, cudaStream_t s);

#endif
