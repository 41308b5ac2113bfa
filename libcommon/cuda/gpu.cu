// gpu: the CUDA backend's device layer (gpu.h): init with one-line reasons for failure, device memory and copies,
// the kept first error, the ops' workspace and the row-major cuBLAS GEMM every matmul goes through. One device,
// one stream. Owns no file format.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gpu_internal.cuh"

cudaStream_t gpu_stream;
cublasHandle_t gpu_blas;

static int g_ready, g_sync_each, g_prec, g_profile; // g_prec: GPU_FP32, GPU_TF32 or GPU_BF16
static int g_capturing; // between a gpu_graph_begin that began a capture and its gpu_graph_end
static size_t g_smem_optin; // cudaDeviceProp.sharedMemPerBlockOptin
static int g_cc_major;       // cudaDeviceProp.major
static int g_bf16_fast; // HMT_GPU_BF16=fast: bf16 products by cuBLAS's own down-conversion, not ours
static int g_att16;     // HMT_GPU_ATT16=1: the attention's products on bf16 operands too (gpu_att16)
static int g_lt_off;    // HMT_GPU_LT=0: the linear layers' bias not in cuBLASLt's epilogue (gpu_linear_forward_product)
static cublasLtHandle_t g_lt;
static void lt_shutdown(void);
static char g_err[256], g_name[256], g_driver[32], g_runtime[32];
static void *g_ws, *g_ptrs; // the ops' workspace; gpu_gemm2's pointer arrays
static size_t g_ws_bytes, g_ptrs_bytes;
int gpu_dry; // a dry run (gpu_dry_begin): nothing reaches the device
// what a dry run counted: its allocations' bytes (each 256-byte aligned), the workspace and pointer arrays it asked for
static size_t g_dry_bytes, g_dry_ws, g_dry_ptrs;
// A dry run's addresses: above any real one the emulator or a GPU hands out, never dereferenced (nothing runs).
#define DRY_BASE ((uintptr_t)1 << 56)
static bool is_dry(const void *p) { return (uintptr_t)p >= DRY_BASE; }
static size_t align256(size_t n) { return (n + 255) & ~(size_t)255; }
// The blocks gpu_reserve allocated that still have something carved from them; gpu_alloc carves from the last one.
typedef struct Arena {
    char *base;
    size_t size, used;
    long live; // carved and not freed
} Arena;
#define ARENA_MAX 16
static Arena g_arena[ARENA_MAX];
static int g_n_arena;
static long g_n_mallocs; // cudaMalloc calls since gpu_init
// what gpu_alloc handed out and gpu_free has not taken back (a short list: a run allocates a handful of blocks)
typedef struct Held {
    void *p;
    size_t bytes;
} Held;
static Held *g_held;
static size_t g_n_held, g_cap_held, g_held_now, g_held_peak;
static void held_add(void *p, size_t bytes)
{
    if (g_n_held == g_cap_held) {
        size_t cap = g_cap_held ? 2 * g_cap_held : 64;
        Held *h = (Held *)realloc(g_held, cap * sizeof *h);
        if (!h) return; // not counted: the figure is a report, never a decision
        g_held = h, g_cap_held = cap;
    }
    g_held[g_n_held++] = (Held){p, bytes};
    g_held_now += bytes;
    if (g_held_now > g_held_peak) g_held_peak = g_held_now;
}
static void held_drop(void *p)
{
    for (size_t i = 0; i < g_n_held; i++)
        if (g_held[i].p == p) {
            g_held_now -= g_held[i].bytes;
            g_held[i] = g_held[--g_n_held];
            return;
        }
}
void gpu_mem_allocated(size_t *now, size_t *peak) { *now = g_held_now, *peak = g_held_peak; }
void gpu_mem_peak_reset(void) { g_held_peak = g_held_now; }

static unsigned g_ws_gen; // counts the moves of g_ws and g_ptrs: a graph captured before a move reads freed memory

// ---- errors -------------------------------------------------------------------------------------------------

void gpu_record(const char *op, const char *what)
{
    if (!g_err[0]) snprintf(g_err, sizeof g_err, "%.100s: %.150s", op, what);
}

const char *gpu_error(void) { return g_err; }
void gpu_clear_error(void) { g_err[0] = 0; }

// ---- profile (HMT_GPU_PROFILE=1): every op waits for the GPU, and the wall time since the previous launch is
// charged to (op, gemm or kernel). The waits add launch latency, so the shares matter, not the sums.
#define PROF_MAX 96
static struct {
    const char *op;
    int gemm;
    double s;
    long n;
} g_prof[PROF_MAX];
static int g_nprof;
static long g_prof_dropped; // charges to ops beyond PROF_MAX, not in the table
static double g_prof_t;

static double prof_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// HMT_GPU_PROFILE's row for the launches from here on (gpu_internal.cuh gpu_prof_part), NULL: their op's
static const char *g_prof_part;
void gpu_prof_part(const char *label) { g_prof_part = label; }

static void prof_add(const char *op, int gemm, double s)
{
    int k = 0;
    while (k < g_nprof && !(g_prof[k].gemm == gemm && strcmp(g_prof[k].op, op) == 0)) k++;
    if (k == g_nprof && g_nprof < PROF_MAX) g_prof[g_nprof++] = {op, gemm, 0.0, 0};
    if (k < g_nprof) g_prof[k].s += s, g_prof[k].n++;
    else g_prof_dropped++;
}

// HMT_GPU_PROFILE=events: no waits; an event is recorded on the stream when an op starts (gpu_enter) and after each
// of its launches, and the GPU's time between an event and the next is charged to that launch's row, read back in
// batches of PROF_EVENTS. The sums are the kernels' own times (and the GPU's idle time inside an op); against the
// wall time of the same steps they show what the launches cost.
#define PROF_EVENTS 4096
static int g_prof_events;         // the mode is on
static cudaEvent_t g_ev[PROF_EVENTS];
static int g_ev_made; // events created (gpu_shutdown destroys them)
static struct {
    const char *op;
    int gemm;
} g_ev_row[PROF_EVENTS]; // g_ev_row[i]: what ran between events i - 1 and i (op NULL: nothing: an op's start)
static int g_nev;

static void prof_events_flush(void)
{
    if (g_nev == 0) return;
    cudaEventSynchronize(g_ev[g_nev - 1]);
    for (int i = 1; i < g_nev; i++) {
        float ms = 0.0f;
        if (g_ev_row[i].op && cudaEventElapsedTime(&ms, g_ev[i - 1], g_ev[i]) == cudaSuccess)
            prof_add(g_ev_row[i].op, g_ev_row[i].gemm, 1e-3 * ms);
    }
    g_nev = 0;
}

// records event g_nev for (op, gemm) (op NULL: an op's start), flushing first when the batch is full
static void prof_event(const char *op, int gemm)
{
    if (g_nev == PROF_EVENTS) {
        cudaEvent_t last = g_ev[PROF_EVENTS - 1];
        prof_events_flush();
        g_ev[PROF_EVENTS - 1] = g_ev[0], g_ev[0] = last; // the last stays the next interval's start
        g_ev_row[0].op = NULL, g_nev = 1;
        if (!op) return; // an op's start right after a flush: event 0 already marks it
    }
    g_ev_row[g_nev].op = op, g_ev_row[g_nev].gemm = gemm;
    cudaEventRecord(g_ev[g_nev++], gpu_stream);
}

static void prof_charge(const char *op, int gemm)
{
    if (g_prof_part) op = g_prof_part;
    if (g_prof_events) {
        prof_event(op, gemm);
        return;
    }
    cudaStreamSynchronize(gpu_stream);
    double t = prof_now();
    prof_add(op, gemm, t - g_prof_t);
    g_prof_t = t;
}

void gpu_profile_reset(void)
{
    if (g_prof_events) prof_events_flush();
    g_nprof = 0, g_prof_dropped = 0;
}

void gpu_profile_print(FILE *f)
{
    if (!g_profile) return;
    if (g_prof_events) prof_events_flush();
    double total = 0;
    for (int k = 0; k < g_nprof; k++) total += g_prof[k].s;
    for (int a = 0; a < g_nprof; a++) // largest first
        for (int b = a + 1; b < g_nprof; b++)
            if (g_prof[b].s > g_prof[a].s) {
                auto t = g_prof[a];
                g_prof[a] = g_prof[b], g_prof[b] = t;
            }
    fprintf(f, "%-32s %-7s %10s %8s %7s\n", "op", "kind", g_prof_events ? "GPU ms" : "ms", "calls", "share");
    for (int k = 0; k < g_nprof; k++)
        fprintf(f, "%-32s %-7s %10.2f %8ld %6.1f%%\n", g_prof[k].op, g_prof[k].gemm ? "gemm" : "kernel",
                1e3 * g_prof[k].s, g_prof[k].n, 100 * g_prof[k].s / (total > 0 ? total : 1));
    if (g_prof_events) fprintf(f, "%-32s %-7s %10.2f (the GPU's time over every row)\n", "total", "", 1e3 * total);
    if (g_prof_dropped) fprintf(f, "(%ld calls of ops beyond the table's %d not counted)\n", g_prof_dropped, PROF_MAX);
}

bool gpu_enter(const char *op)
{
    gpu_dec_mega_flush();
    return gpu_enter_keep(op);
}

// ---- ranges declared zero (gpu_fresh) -----------------------------------------------------------------------------
// gpu_fresh keeps the range instead of queueing its memset. The op called next may take it (gpu_fresh_take, before
// its gpu_enter) and write the range without reading it; gpu_enter zeroes every range left, before its op, so to any
// other reader the range is zeros, as after gpu_zero. HMT_GPU_FRESH=0: gpu_zero at once.
#define FRESH_MAX 4
static struct {
    void *p;
    size_t bytes;
} g_fresh[FRESH_MAX];
static int g_n_fresh, g_fresh_off;
static long g_fresh_taken;

static void fresh_flush(void)
{
    int n = g_n_fresh;
    g_n_fresh = 0; // (first: gpu_zero enters too)
    for (int i = 0; i < n; i++)
        if (g_fresh[i].p) gpu_zero(g_fresh[i].p, g_fresh[i].bytes);
}

void gpu_fresh(void *p, size_t bytes)
{
    if (g_fresh_off || !g_ready || gpu_dry || !p || !bytes) {
        gpu_zero(p, bytes);
        return;
    }
    if (g_n_fresh == FRESH_MAX) fresh_flush();
    g_fresh[g_n_fresh].p = p, g_fresh[g_n_fresh++].bytes = bytes;
}

bool gpu_fresh_take(const void *p, size_t bytes)
{
    for (int i = 0; i < g_n_fresh; i++)
        if (g_fresh[i].p && g_fresh[i].p == p && g_fresh[i].bytes == bytes) {
            g_fresh[i].p = NULL;
            g_fresh_taken++;
            return true;
        }
    return false;
}

long gpu_fresh_taken(void) { return g_fresh_taken; }

bool gpu_enter_keep(const char *op)
{
    if (g_n_fresh) fresh_flush();
    if (g_ready) {
        if (g_profile && !gpu_dry && g_prof_events) prof_event(NULL, 0);
        else if (g_profile && !gpu_dry) cudaStreamSynchronize(gpu_stream), g_prof_t = prof_now();
        return true;
    }
    gpu_record(op, "gpu not initialized");
    return false;
}

static bool cuda_ok(const char *op, cudaError_t e)
{
    if (e == cudaSuccess) return true;
    gpu_record(op, cudaGetErrorString(e));
    return false;
}

// Programmatic dependent launch (gpu_dec_pdl): asked for, and whether the stream's last op is a kernel launched
// here (gpu_launched sets it; a copy, a cuBLAS product, a wait or a graph clears it: not_after_kernel)
static int g_pdl_on, g_after_kernel;
static void not_after_kernel(void) { g_after_kernel = 0; }
void gpu_set_pdl(int on) { g_pdl_on = on && g_cc_major >= 9; }
bool gpu_op_by_op(void) { return g_profile || g_sync_each; }
bool gpu_pdl_now(void) { return g_pdl_on && g_after_kernel && !gpu_op_by_op(); }

void gpu_launched(const char *op)
{
    if (!cuda_ok(op, cudaGetLastError()) || gpu_dry) return;
    g_after_kernel = 1;
    if (g_sync_each) cuda_ok(op, cudaStreamSynchronize(gpu_stream));
    if (g_profile) prof_charge(op, 0);
}

void gpu_blas_check(const char *op, cublasStatus_t st)
{
    not_after_kernel();
    if (st != CUBLAS_STATUS_SUCCESS) {
        char m[128];
        snprintf(m, sizeof m, "cuBLAS: %s", cublasGetStatusString(st));
        gpu_record(op, m);
        return;
    }
    if (gpu_dry) return;
    if (g_sync_each) cuda_ok(op, cudaStreamSynchronize(gpu_stream));
    if (g_profile) prof_charge(op, 1);
}

// ---- device -------------------------------------------------------------------------------------------------

// writes one value: proof that this build's kernels load and run on the device
__global__ static void probe_kernel(int *out) { *out = 0x5eed; }

static void version_str(char *s, size_t n, int v) { snprintf(s, n, "%d.%d", v / 1000, v % 1000 / 10); }

static GpuStatus init_fail(char *err, GpuStatus st, const char *fmt, const char *a, const char *b)
{
    char line[1024];
    snprintf(line, sizeof line, fmt, a, b);
    snprintf(err, 256, "%.255s", line); // ERR_MAX
    gpu_shutdown();
    cudaGetLastError();
    return st;
}

GpuStatus gpu_init(int device, char *err)
{
    if (g_ready) return GPU_OK;
    err[0] = 0;
    int drv = 0, rt = 0, n = 0;
    cudaDriverGetVersion(&drv);
    cudaRuntimeGetVersion(&rt);
    version_str(g_driver, sizeof g_driver, drv);
    version_str(g_runtime, sizeof g_runtime, rt);
    if (drv == 0) return init_fail(err, GPU_NO_DRIVER, "no NVIDIA driver found (libcuda.so.1 not loadable)%s%s", "", "");
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e == cudaErrorNoDevice || (e == cudaSuccess && n == 0))
        return init_fail(err, GPU_NO_DEVICE, "no CUDA device found%s%s", "", "");
    if (e == cudaErrorInsufficientDriver || e == cudaErrorCompatNotSupportedOnDevice)
        return init_fail(err, GPU_NO_DRIVER, "the NVIDIA driver supports CUDA %s, this build needs %s", g_driver,
                         g_runtime);
    if (e != cudaSuccess) return init_fail(err, GPU_FAILED, "no usable CUDA device: %s%s", cudaGetErrorString(e), "");
    if (device < 0 || device >= n) {
        char a[64];
        snprintf(a, sizeof a, "%d asked for, %d present", device, n);
        return init_fail(err, GPU_NO_DEVICE, "no CUDA device %s%s", a, "");
    }
    cudaDeviceProp prop;
    if ((e = cudaSetDevice(device)) != cudaSuccess || (e = cudaGetDeviceProperties(&prop, device)) != cudaSuccess)
        return init_fail(err, GPU_FAILED, "cannot use the CUDA device: %s%s", cudaGetErrorString(e), "");
    snprintf(g_name, sizeof g_name, "%s", prop.name);
    g_smem_optin = prop.sharedMemPerBlockOptin, g_cc_major = prop.major;
    if ((e = cudaStreamCreateWithFlags(&gpu_stream, cudaStreamNonBlocking)) != cudaSuccess)
        return init_fail(err, GPU_FAILED, "cannot create a CUDA stream on %s: %s", g_name, cudaGetErrorString(e));
    // the kernels of this build (sm_XX / compute_XX of CUDA_ARCH) must load on this device
    int *probe = NULL, got = 0;
    if ((e = cudaMalloc(&probe, sizeof *probe)) != cudaSuccess)
        return init_fail(err, GPU_FAILED, "cannot allocate on %s: %s", g_name, cudaGetErrorString(e));
    LAUNCH(probe_kernel, 1, 1)(probe);
    e = cudaGetLastError();
    if (e == cudaSuccess) e = cudaMemcpyAsync(&got, probe, sizeof got, cudaMemcpyDeviceToHost, gpu_stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(gpu_stream);
    cudaFree(probe);
    if (e != cudaSuccess || got != 0x5eed) {
        char a[320];
        snprintf(a, sizeof a, "%s (compute capability %d.%d)", g_name, prop.major, prop.minor);
        return init_fail(err, GPU_FAILED, "this build's kernels do not run on %s: %s (rebuild with CUDA_ARCH for it)",
                         a, e != cudaSuccess ? cudaGetErrorString(e) : "wrong result");
    }
    cublasStatus_t st = cublasCreate(&gpu_blas);
    if (st == CUBLAS_STATUS_SUCCESS) st = cublasSetStream(gpu_blas, gpu_stream);
    if (st == CUBLAS_STATUS_SUCCESS) st = cublasSetMathMode(gpu_blas, g_prec != GPU_FP32 ? CUBLAS_TF32_TENSOR_OP_MATH
                                                                                      : CUBLAS_DEFAULT_MATH);
    if (st != CUBLAS_STATUS_SUCCESS)
        return init_fail(err, GPU_FAILED, "cannot set up cuBLAS on %s: %s", g_name, cublasGetStatusString(st));
    if (cublasLtCreate(&g_lt) != CUBLAS_STATUS_SUCCESS) g_lt = NULL; // the linear layers' old way then
    const char *s = getenv("HMT_GPU_SYNC");
    g_sync_each = s && *s && strcmp(s, "0") != 0;
    s = getenv("HMT_GPU_PROFILE");
    g_profile = s && *s && strcmp(s, "0") != 0;
    g_prof_events = g_profile && strcmp(s, "events") == 0, g_nev = 0;
    for (; g_prof_events && g_ev_made < PROF_EVENTS; g_ev_made++)
        if (cudaEventCreate(&g_ev[g_ev_made]) != cudaSuccess)
            return init_fail(err, GPU_FAILED, "HMT_GPU_PROFILE=events: %s on %s", "cannot create CUDA events", g_name);
    g_err[0] = 0;
    g_ready = 1;
    return GPU_OK;
}

void gpu_shutdown(void)
{
    gpu_dec_mega_drop(); // ops recorded and not launched: for this device, which goes
    g_n_fresh = 0;       // and ranges declared zero in its memory
    g_capturing = 0;
    g_ws_gen++;
    void *ws = g_ws, *ptrs = g_ptrs; // NULL before gpu_free (see there)
    g_ws = g_ptrs = NULL, g_ws_bytes = g_ptrs_bytes = 0;
    gpu_free(ptrs), gpu_free(ws);
    lt_shutdown();
    if (gpu_blas) cublasDestroy(gpu_blas);
    gpu_blas = NULL;
    for (int i = 0; i < g_ev_made; i++) cudaEventDestroy(g_ev[i]);
    g_prof_events = 0, g_nev = 0, g_ev_made = 0;
    if (gpu_stream) cudaStreamDestroy(gpu_stream);
    gpu_stream = NULL;
    g_ready = 0;
    g_name[0] = 0;
    for (int a = 0; a < g_n_arena; a++) cudaFree(g_arena[a].base); // anything still carved goes with it
    g_n_arena = 0, g_n_mallocs = 0, gpu_dry = 0;
    free(g_held); // the device's memory goes with its context
    g_held = NULL, g_n_held = g_cap_held = g_held_now = g_held_peak = 0;
}

const char *gpu_name(void) { return g_name; }
const char *gpu_driver_version(void) { return g_ready ? g_driver : ""; }
const char *gpu_runtime_version(void) { return g_ready ? g_runtime : ""; }

int gpu_mem_info(size_t *free_bytes, size_t *total_bytes)
{
    if (!gpu_enter("gpu_mem_info")) return -1;
    return cuda_ok("gpu_mem_info", cudaMemGetInfo(free_bytes, total_bytes)) ? 0 : -1;
}

void gpu_set_precision(int precision)
{
    g_prec = precision;
    const char *f = getenv("HMT_GPU_BF16");
    g_bf16_fast = f && strcmp(f, "fast") == 0;
    const char *a = getenv("HMT_GPU_ATT16");
    g_att16 = a && strcmp(a, "1") == 0;
    const char *l = getenv("HMT_GPU_LT");
    g_lt_off = l && strcmp(l, "0") == 0;
    const char *z = getenv("HMT_GPU_FRESH");
    g_fresh_off = z && strcmp(z, "0") == 0;
    cublasMath_t mode = precision != GPU_FP32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH;
    cublasStatus_t st = g_ready ? cublasSetMathMode(gpu_blas, mode) : CUBLAS_STATUS_SUCCESS;
    if (st != CUBLAS_STATUS_SUCCESS) gpu_record("gpu_set_precision", cublasGetStatusString(st)); // not an op
}

int gpu_precision(void) { return g_prec; }
int gpu_bf16_ours(void) { return g_prec == GPU_BF16 && !g_bf16_fast; }
int gpu_att16(void) { return gpu_bf16_ours() && g_att16; }
int gpu_act16(void)
{
    const char *e = getenv("HMT_GPU_ACT16");
    return gpu_bf16_ours() && !(e && strcmp(e, "0") == 0);
}
size_t gpu_smem_optin(void) { return g_smem_optin; }

int gpu_sync(void)
{
    if (!gpu_enter("gpu_sync")) return -1;
    not_after_kernel();
    if (gpu_dry) return 0;
    cuda_ok("gpu_sync", cudaStreamSynchronize(gpu_stream));
    cuda_ok("gpu_sync", cudaGetLastError());
    return g_err[0] ? -1 : 0;
}

// ---- graphs ---------------------------------------------------------------------------------------------------

int gpu_graph_begin(void)
{
    bool ok = gpu_enter("gpu_graph_begin"); // (first: it may launch recorded decoder ops)
    not_after_kernel();                     // the graph's first kernel: a plain launch
    if (!ok || g_err[0] || gpu_op_by_op() || gpu_dry) return 0;
    // thread-local: a call that cannot be captured (a wait, an allocation) fails in this thread, not elsewhere
    g_capturing = cuda_ok("gpu_graph_begin", cudaStreamBeginCapture(gpu_stream, cudaStreamCaptureModeThreadLocal));
    return g_capturing;
}

// a captured graph, and the workspace generation its ops' pointers belong to
typedef struct GpuGraph {
    cudaGraphExec_t exec;
    unsigned ws_gen;
} GpuGraph;

void *gpu_graph_end(void)
{
    cudaGraph_t g = NULL;
    cudaGraphExec_t e = NULL;
    gpu_dec_mega_flush(); // the recorded ops belong to the graph
    if (g_n_fresh) fresh_flush(); // and so does a range declared zero
    not_after_kernel();
    g_capturing = 0;
    if (!cuda_ok("gpu_graph_end", cudaStreamEndCapture(gpu_stream, &g))) return NULL;
    bool ok = cuda_ok("gpu_graph_end", cudaGraphInstantiate(&e, g, 0));
    cudaGraphDestroy(g);
    GpuGraph *gg = ok && !g_err[0] ? (GpuGraph *)malloc(sizeof *gg) : NULL;
    if (gg) {
        gg->exec = e, gg->ws_gen = g_ws_gen;
        return gg;
    }
    if (ok) cudaGraphExecDestroy(e); // an op that failed while captured fails the graph
    if (ok && !g_err[0]) gpu_record("gpu_graph_end", "out of host memory");
    return NULL;
}

int gpu_graph_launch(void *graph)
{
    if (!gpu_enter("gpu_graph_launch")) return -1;
    not_after_kernel();
    GpuGraph *gg = (GpuGraph *)graph;
    if (gg->ws_gen != g_ws_gen) return 1; // the workspace moved since: its pointers are stale
    return cuda_ok("gpu_graph_launch", cudaGraphLaunch(gg->exec, gpu_stream)) ? 0 : -1;
}

void gpu_graph_free(void *graph)
{
    GpuGraph *gg = (GpuGraph *)graph;
    if (gg && g_ready) cudaGraphExecDestroy(gg->exec);
    free(gg);
}

// ---- memory -------------------------------------------------------------------------------------------------

void *gpu_host_alloc(size_t bytes)
{
    if (!gpu_enter("gpu_host_alloc")) return NULL;
    void *p = NULL;
    if (cudaHostAlloc(&p, bytes ? bytes : 1, cudaHostAllocDefault) == cudaSuccess) return p;
    cudaGetLastError(); // not sticky, and not an op's error: the caller does without
    return NULL;
}

void gpu_host_free(void *p)
{
    if (p && g_ready) cudaFreeHost(p);
}

void gpu_copy_async(void *dst, const void *src, size_t bytes, int to_device)
{
    if (!gpu_enter("gpu_copy_async") || !bytes || gpu_dry) return;
    not_after_kernel();
    cuda_ok("gpu_copy_async", cudaMemcpyAsync(dst, src, bytes, to_device ? cudaMemcpyHostToDevice
                                                                          : cudaMemcpyDeviceToHost, gpu_stream));
}

// `bytes` from the newest arena, or NULL when it has no room
static void *carve(size_t bytes)
{
    if (!g_n_arena) return NULL;
    Arena *a = &g_arena[g_n_arena - 1];
    size_t at = align256(a->used), n = bytes ? bytes : 1;
    if (at > a->size || n > a->size - at) return NULL;
    a->used = at + n, a->live++;
    return a->base + at;
}

static bool in_arena(const Arena *a, const void *p)
{
    return (const char *)p >= a->base && (const char *)p < a->base + a->size;
}

// a cudaMalloc of bytes, counted; NULL with "op: size: reason (free memory)" kept
static void *device_malloc(const char *op, size_t bytes)
{
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e == cudaSuccess) {
        held_add(p, bytes);
        g_n_mallocs++;
        return p;
    }
    cudaGetLastError(); // an allocation failure is not sticky: later ops must not see it
    size_t fr = 0, tot = 0;
    cudaMemGetInfo(&fr, &tot);
    char m[200];
    snprintf(m, sizeof m, "%.2f GiB: %s (%.2f GiB free of %.2f)", (double)bytes / (1 << 30), cudaGetErrorString(e),
             (double)fr / (1 << 30), (double)tot / (1 << 30));
    gpu_record(op, m);
    return NULL;
}

void *gpu_alloc(size_t bytes)
{
    if (!gpu_enter("gpu_alloc")) return NULL;
    if (gpu_dry) {
        size_t at = align256(g_dry_bytes);
        g_dry_bytes = at + (bytes ? bytes : 1);
        return (void *)(DRY_BASE + at);
    }
    void *p = carve(bytes);
    return p ? p : device_malloc("gpu_alloc", bytes);
}

void gpu_free(void *p)
{
    if (!p || !g_ready || is_dry(p)) return;
    gpu_dec_mega_flush(); // recorded ops may use p: they run first
    if (g_n_fresh) fresh_flush(); // (a memset queued before the memory may go back)
    for (int k = 0; k < g_n_arena; k++) {
        Arena *a = &g_arena[k];
        if (!in_arena(a, p)) continue;
        // The ops' workspace and pointer arrays are not a run's own: once they are all that is left of a block (the
        // run freed everything else), they leave with it and grow again on demand. Their owners set them NULL
        // before freeing them, so they are not counted here then.
        long shared = (g_ws && in_arena(a, g_ws)) + (g_ptrs && in_arena(a, g_ptrs));
        if (--a->live == shared) {
            if (shared) { // queued ops may still use them
                cuda_ok("gpu_free", cudaStreamSynchronize(gpu_stream));
                if (g_ws && in_arena(a, g_ws)) g_ws = NULL, g_ws_bytes = 0;
                if (g_ptrs && in_arena(a, g_ptrs)) g_ptrs = NULL, g_ptrs_bytes = 0;
                g_ws_gen++;
            }
            held_drop(a->base), cudaFree(a->base);
            memmove(a, a + 1, (size_t)(--g_n_arena - k) * sizeof *a); // the newest stays last
        }
        return;
    }
    held_drop(p), cudaFree(p);
}

long gpu_mem_allocs(void) { return g_n_mallocs; }

void gpu_dry_begin(void)
{
    if (!gpu_enter("gpu_dry_begin")) return;
    gpu_dry = 1, g_dry_bytes = g_dry_ws = g_dry_ptrs = 0;
}

// the workspace and pointer arrays when a dry run used them: they move into the block, never smaller than now
static size_t dry_ws(void) { return g_dry_ws ? (g_dry_ws > g_ws_bytes ? g_dry_ws : g_ws_bytes) : 0; }
static size_t dry_ptrs(void) { return g_dry_ptrs ? (g_dry_ptrs > g_ptrs_bytes ? g_dry_ptrs : g_ptrs_bytes) : 0; }

size_t gpu_dry_end(void)
{
    gpu_dry = 0;
    return align256(dry_ws()) + align256(dry_ptrs()) + align256(g_dry_bytes);
}

int gpu_reserve(void)
{
    const char *op = "gpu_reserve";
    if (!gpu_enter(op)) return -1;
    size_t ws = dry_ws(), ptrs = dry_ptrs(), bytes = align256(ws) + align256(ptrs) + align256(g_dry_bytes);
    g_dry_bytes = g_dry_ws = g_dry_ptrs = 0;
    if (bytes == 0) return 0;
    if (g_n_arena == ARENA_MAX) {
        gpu_record(op, "too many blocks reserved at once");
        return -1;
    }
    if (ws || ptrs) { // the old ones go first (queued ops may still read them), so they never coexist with the block
        if (!cuda_ok(op, cudaStreamSynchronize(gpu_stream))) return -1;
        void *old_ws = ws ? g_ws : NULL, *old_ptrs = ptrs ? g_ptrs : NULL;
        if (ws) g_ws = NULL, g_ws_bytes = 0;
        if (ptrs) g_ptrs = NULL, g_ptrs_bytes = 0;
        g_ws_gen++;
        gpu_free(old_ws), gpu_free(old_ptrs);
    }
    char *base = (char *)device_malloc(op, bytes);
    if (!base) return -1;
    g_arena[g_n_arena++] = (Arena){base, bytes, 0, 0};
    if (ws) g_ws = carve(ws), g_ws_bytes = ws;
    if (ptrs) g_ptrs = carve(ptrs), g_ptrs_bytes = ptrs;
    return 0;
}

int gpu_upload(void *dst, const void *src_host, size_t bytes)
{
    if (!gpu_enter("gpu_upload")) return -1;
    not_after_kernel();
    if (!bytes || gpu_dry) return 0;
    if (!cuda_ok("gpu_upload", cudaMemcpyAsync(dst, src_host, bytes, cudaMemcpyHostToDevice, gpu_stream))) return -1;
    return cuda_ok("gpu_upload", cudaStreamSynchronize(gpu_stream)) ? 0 : -1;
}

int gpu_download(void *dst_host, const void *src, size_t bytes)
{
    if (!gpu_enter("gpu_download")) return -1;
    not_after_kernel();
    if (g_err[0]) return -1; // an op failed before: what it left is not to be read (dst stays untouched)
    if (!bytes || gpu_dry) return gpu_sync();
    if (!cuda_ok("gpu_download", cudaMemcpyAsync(dst_host, src, bytes, cudaMemcpyDeviceToHost, gpu_stream))) return -1;
    return cuda_ok("gpu_download", cudaStreamSynchronize(gpu_stream)) ? 0 : -1;
}

void gpu_zero(void *p, size_t bytes)
{
    if (!gpu_enter("gpu_zero") || !bytes || gpu_dry) return;
    not_after_kernel();
    cuda_ok("gpu_zero", cudaMemsetAsync(p, 0, bytes, gpu_stream));
}

void *gpu_workspace(const char *op, size_t bytes)
{
    size_t want = (bytes + ((size_t)1 << 20) - 1) & ~(((size_t)1 << 20) - 1); // whole MiB
    if (gpu_dry) {
        if (want > g_dry_ws) g_dry_ws = want;
        return (void *)DRY_BASE;
    }
    if (bytes <= g_ws_bytes) return g_ws;
    // the old workspace may still be in use by queued ops: wait for them before freeing it (NULL first: gpu_free)
    void *old = g_ws;
    if (old) cuda_ok(op, cudaStreamSynchronize(gpu_stream));
    g_ws = NULL, g_ws_bytes = 0, g_ws_gen++;
    gpu_free(old);
    void *p = gpu_alloc(want);
    if (!p) {
        char m[320];
        snprintf(m, sizeof m, "workspace: %s", g_err[0] ? g_err : "out of memory");
        g_err[0] = 0;
        gpu_record(op, m);
        return NULL;
    }
    g_ws = p, g_ws_bytes = want;
    return g_ws;
}

void gpu_workspace_fill(int byte)
{
    if (!gpu_enter("gpu_workspace_fill") || !g_ws || gpu_dry) return;
    not_after_kernel();
    cuda_ok("gpu_workspace_fill", cudaMemsetAsync(g_ws, byte, g_ws_bytes, gpu_stream));
}

// ---- GEMM ---------------------------------------------------------------------------------------------------

void gpu_gemm(const char *op, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, long long sA,
              const float *B, int ldb, long long sB, float beta, float *C, int ldc, long long sC, int batch)
{
    if (M <= 0 || N <= 0 || batch <= 0 || gpu_dry) return;
    cublasOperation_t oa = tb ? CUBLAS_OP_T : CUBLAS_OP_N, ob = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasStatus_t st;
    if (batch == 1)
        st = cublasSgemm(gpu_blas, oa, ob, N, M, K, &alpha, B, ldb, A, lda, &beta, C, ldc);
    else
        st = cublasSgemmStridedBatched(gpu_blas, oa, ob, N, M, K, &alpha, B, ldb, sB, A, lda, sA, &beta, C, ldc, sC,
                                       batch);
    gpu_blas_check(op, st);
}

__global__ static void to_bf16_k(uint16_t *dst, const float *src, size_t n) { GRID_STRIDE(i, n) dst[i] = to_bf16(src[i]); }

void gpu_to_bf16(uint16_t *dst, const float *src, size_t n)
{
    const char *op = "gpu_to_bf16";
    if (!gpu_enter(op) || n == 0) return;
    LAUNCH(to_bf16_k, ew_blocks(n), EW_THREADS)(dst, src, n);
    gpu_launched(op);
}

// bfloat16 copies of up to three float32 operands, as one launch: range r is src[r][0 .. n[r]) into dst[r]
typedef struct Bf16Copies {
    const float *src[3];
    uint16_t *dst[3];
    size_t n[3];
} Bf16Copies;
__global__ static void to_bf16_n_k(Bf16Copies c, size_t total)
{
    GRID_STRIDE(i, total) { // constant indices only: c stays in the parameter space (no local copy)
        size_t j = i;
        if (j < c.n[0]) c.dst[0][j] = to_bf16(c.src[0][j]);
        else if ((j -= c.n[0]) < c.n[1]) c.dst[1][j] = to_bf16(c.src[1][j]);
        else j -= c.n[1], c.dst[2][j] = to_bf16(c.src[2][j]); // total is the sum: j < n[2]
    }
}

// The copies of the n_ops operands src[r] (n[r] floats each) in the workspace, each 256-byte aligned, into dst[r],
// and extra_bytes more after them (256-byte aligned) at *extra; false (the error kept) when the workspace cannot grow
static bool bf16_copies(const char *op, int n_ops, const float *const *src, const size_t *n, uint16_t **dst,
                        size_t extra_bytes = 0, void **extra = NULL)
{
    Bf16Copies c;
    memset(&c, 0, sizeof c);
    size_t off[3], total = 0, at = 0;
    for (int r = 0; r < n_ops; r++) off[r] = at, at += (n[r] + 127) & ~(size_t)127, total += n[r];
    uint16_t *ws = (uint16_t *)gpu_workspace(op, at * sizeof(uint16_t) + extra_bytes);
    if (!ws) return false;
    for (int r = 0; r < n_ops; r++) c.src[r] = src[r], c.dst[r] = dst[r] = ws + off[r], c.n[r] = n[r];
    if (extra) *extra = ws + at;
    if (total) {
        LAUNCH(to_bf16_n_k, ew_blocks(total), EW_THREADS)(c, total);
        gpu_launched(op);
    }
    return true;
}

// up to BF16_RANGES ranges in one launch, as to_bf16_n_k
typedef struct Bf16Ranges {
    const float *src[BF16_RANGES];
    uint16_t *dst[BF16_RANGES];
    size_t n[BF16_RANGES];
} Bf16Ranges;
__global__ static void to_bf16_ranges_k(Bf16Ranges c, size_t total)
{
    GRID_STRIDE(i, total) { // constant indices only: c stays in the parameter space (no local copy)
        size_t j = i;
        if (j < c.n[0]) c.dst[0][j] = to_bf16(c.src[0][j]);
        else if ((j -= c.n[0]) < c.n[1]) c.dst[1][j] = to_bf16(c.src[1][j]);
        else if ((j -= c.n[1]) < c.n[2]) c.dst[2][j] = to_bf16(c.src[2][j]);
        else if ((j -= c.n[2]) < c.n[3]) c.dst[3][j] = to_bf16(c.src[3][j]);
        else j -= c.n[3], c.dst[4][j] = to_bf16(c.src[4][j]); // total is the sum: j < n[4]
    }
}

size_t gpu_bf16_ranges(const char *op, uint16_t *buf, int n_ops, const float *const *src, const size_t *n,
                       uint16_t **out)
{
    // groups of overlapping ranges [lo, hi), merged until none overlaps another
    const float *lo[BF16_RANGES], *hi[BF16_RANGES];
    int grp[BF16_RANGES], ng = 0;
    for (int r = 0; r < n_ops; r++) {
        if (!src[r] || !n[r]) {
            grp[r] = -1;
            continue;
        }
        grp[r] = ng, lo[ng] = src[r], hi[ng] = src[r] + n[r], ng++;
    }
    for (bool merged = true; merged;) {
        merged = false;
        for (int a = 0; a < ng && !merged; a++)
            for (int b = a + 1; b < ng && !merged; b++)
                if (lo[b] < hi[a] && lo[a] < hi[b]) { // b joins a; the last group moves to b's place
                    lo[a] = lo[b] < lo[a] ? lo[b] : lo[a], hi[a] = hi[b] > hi[a] ? hi[b] : hi[a];
                    for (int r = 0; r < n_ops; r++) grp[r] = grp[r] == b ? a : grp[r] == ng - 1 ? b : grp[r];
                    lo[b] = lo[ng - 1], hi[b] = hi[ng - 1], ng--, merged = true;
                }
    }
    size_t off[BF16_RANGES], total = 0;
    for (int g = 0; g < ng; g++) off[g] = total, total += ((size_t)(hi[g] - lo[g]) + 127) & ~(size_t)127;
    if (!buf) return total ? total : 1;
    Bf16Ranges c;
    memset(&c, 0, sizeof c);
    size_t count = 0;
    for (int g = 0; g < ng; g++)
        c.src[g] = lo[g], c.dst[g] = buf + off[g], c.n[g] = (size_t)(hi[g] - lo[g]), count += c.n[g];
    for (int r = 0; r < n_ops; r++) out[r] = grp[r] < 0 ? NULL : buf + off[grp[r]] + (src[r] - lo[grp[r]]);
    if (count) {
        LAUNCH(to_bf16_ranges_k, ew_blocks(count), EW_THREADS)(c, count);
        gpu_launched(op);
    }
    return total;
}

// a linear layer's product on bfloat16 copies (gpu_linear_forward_product, gpu_linear_products16_backward)
static void gemm_bf16(const char *op, int ta, int tb, int M, int N, int K, float alpha, const uint16_t *a16, int lda,
                      const uint16_t *b16, int ldb, float beta, float *C, int ldc)
{
    if (gpu_dry) return;
    cublasOperation_t oa = tb ? CUBLAS_OP_T : CUBLAS_OP_N, ob = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    gpu_blas_check(op, cublasGemmEx(gpu_blas, oa, ob, N, M, K, &alpha, b16, CUDA_R_16BF, ldb, a16, CUDA_R_16BF, lda,
                                    &beta, C, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

void gpu_gemm_linear(const char *op, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                     const float *B, int ldb, float beta, float *C, int ldc)
{
    if (!(g_prec == GPU_BF16 && g_bf16_fast) || K <= 0) {
        gpu_gemm(op, ta, tb, M, N, K, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1);
        return;
    }
    if (M <= 0 || N <= 0 || gpu_dry) return;
    // HMT_GPU_BF16=fast: float32 operands, down-converted inside cuBLAS (its rounding, not necessarily ours)
    cublasOperation_t oa = tb ? CUBLAS_OP_T : CUBLAS_OP_N, ob = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    gpu_blas_check(op, cublasGemmEx(gpu_blas, oa, ob, N, M, K, &alpha, B, CUDA_R_32F, ldb, A, CUDA_R_32F, lda, &beta,
                                    C, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F_FAST_16BF, CUBLAS_GEMM_DEFAULT));
}

// ---- the linear layer's forward: its bias in cuBLASLt's epilogue ----------------------------------------------
// out (N, OC) = inp (N, IC) w^T + b was the bias's rows written first, then the product added to them (ops.c's order):
// N x OC floats written and read once more than the product alone writes. cuBLASLt's BIAS epilogue adds b to the sums
// before they are stored. A plan (descriptors, the heuristic's algorithm) is kept for each shape, operand type and
// alignment of the operands: an algorithm chosen for 256-byte aligned operands may need them. No workspace, and no
// reduction across blocks (CUBLASLT_REDUCTION_SCHEME_NONE), so the product repeats to the byte. What cuBLASLt does
// not take, and HMT_GPU_LT=0, go the old way.
#define LT_PLANS 64
typedef struct LtPlan {
    int N, IC, OC, bf16, compute;
    unsigned align; // the operands' alignments (log2: inp, w, out, b four bits each)
    int ok;         // the heuristic found an algorithm
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t lw, lx, lo;
    cublasLtMatmulAlgo_t algo;
} LtPlan;
static LtPlan g_lt_plan[LT_PLANS];
static int g_n_lt, g_lt_next; // plans kept; the one a new plan replaces when all are taken
static long g_lt_runs;        // products run with the bias in the epilogue (gpu_lt_runs)
long gpu_lt_runs(void) { return g_lt_runs; }

static void lt_plan_drop(LtPlan *p)
{
    if (p->desc) cublasLtMatmulDescDestroy(p->desc);
    if (p->lw) cublasLtMatrixLayoutDestroy(p->lw);
    if (p->lx) cublasLtMatrixLayoutDestroy(p->lx);
    if (p->lo) cublasLtMatrixLayoutDestroy(p->lo);
    memset(p, 0, sizeof *p);
}

static void lt_shutdown(void)
{
    for (int i = 0; i < g_n_lt; i++) lt_plan_drop(&g_lt_plan[i]);
    g_n_lt = g_lt_next = 0;
    if (g_lt) cublasLtDestroy(g_lt);
    g_lt = NULL;
}

// log2 of the largest power of two (at most 256) that divides the address
static unsigned lt_log2_align(const void *p)
{
    unsigned a = 0;
    while (a < 8 && (uintptr_t)p % (2u << a) == 0) a++;
    return a;
}

// the plan for these operands: found, or made now (ok 0: cuBLASLt has no algorithm for it); NULL: none made, as
// the stream is being captured (cuBLASLt 13's heuristic is reported to fail then: the plan is made outside a capture)
static LtPlan *lt_plan(const void *x, const void *w, const float *out, const float *b, int N, int IC, int OC, int bf16,
                       int compute)
{
    unsigned align = lt_log2_align(x) | lt_log2_align(w) << 4 | lt_log2_align(out) << 8 | lt_log2_align(b) << 12;
    for (int i = 0; i < g_n_lt; i++) {
        LtPlan *p = &g_lt_plan[i];
        if (p->N == N && p->IC == IC && p->OC == OC && p->bf16 == bf16 && p->compute == compute && p->align == align)
            return p;
    }
    if (g_capturing) return NULL;
    LtPlan *p = &g_lt_plan[g_n_lt < LT_PLANS ? g_n_lt++ : g_lt_next];
    if (p == &g_lt_plan[g_lt_next]) g_lt_next = (g_lt_next + 1) % LT_PLANS;
    lt_plan_drop(p);
    p->N = N, p->IC = IC, p->OC = OC, p->bf16 = bf16, p->compute = compute, p->align = align;
    // column-major: out^T (OC x N) = w (stored IC x OC, transposed) times inp^T (stored IC x N)
    cudaDataType_t t = bf16 ? CUDA_R_16BF : CUDA_R_32F;
    int32_t opT = CUBLAS_OP_T, opN = CUBLAS_OP_N, btype = CUDA_R_32F;
    uint32_t epi = CUBLASLT_EPILOGUE_BIAS, none = CUBLASLT_REDUCTION_SCHEME_NONE;
    uint64_t ws = 0;
    cublasLtMatmulPreference_t pref = NULL;
    bool ok = cublasLtMatmulDescCreate(&p->desc, (cublasComputeType_t)compute, CUDA_R_32F) == CUBLAS_STATUS_SUCCESS;
    ok = ok && cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &opT, sizeof opT) == 0 &&
         cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &opN, sizeof opN) == 0 &&
         cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi) == 0 &&
         cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &btype, sizeof btype) == 0 &&
         cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &b, sizeof b) == 0;
    ok = ok && cublasLtMatrixLayoutCreate(&p->lw, t, IC, OC, IC) == 0 &&
         cublasLtMatrixLayoutCreate(&p->lx, t, IC, N, IC) == 0 &&
         cublasLtMatrixLayoutCreate(&p->lo, CUDA_R_32F, OC, N, OC) == 0;
    ok = ok && cublasLtMatmulPreferenceCreate(&pref) == 0 &&
         cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws) == 0 &&
         cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &none,
                                              sizeof none) == 0;
    const void *ptr[4] = {w, x, out, out}; // A, B, C and D
    for (int i = 0; ok && i < 4; i++) {
        uint32_t bytes = 1u << lt_log2_align(ptr[i]);
        ok = cublasLtMatmulPreferenceSetAttribute(pref, (cublasLtMatmulPreferenceAttributes_t)(
                                                            CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES + i),
                                                  &bytes, sizeof bytes) == 0;
    }
    cublasLtMatmulHeuristicResult_t r;
    int n = 0;
    ok = ok && cublasLtMatmulAlgoGetHeuristic(g_lt, p->desc, p->lw, p->lx, p->lo, p->lo, pref, 1, &r, &n) == 0 &&
         n == 1 && r.state == CUBLAS_STATUS_SUCCESS && r.workspaceSize == 0;
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (ok) p->algo = r.algo;
    p->ok = ok;
    return p;
}

// out = x w^T + b on operands in the precision's type (bf16: bfloat16 x and w); false, with nothing done, when
// cuBLASLt does not take them
static bool lt_linear(const char *op, float *out, const void *x, const void *w, const float *b, int N, int IC, int OC,
                      int bf16)
{
    if (!g_lt || g_lt_off || gpu_dry || (uintptr_t)b % 16) return false;
    int compute = bf16 || g_prec == GPU_FP32 ? CUBLAS_COMPUTE_32F // TF32 or cuBLAS's own bf16 rounding otherwise
                  : g_prec == GPU_TF32        ? CUBLAS_COMPUTE_32F_FAST_TF32
                                              : CUBLAS_COMPUTE_32F_FAST_16BF;
    LtPlan *p = lt_plan(x, w, out, b, N, IC, OC, bf16, compute);
    if (!p || !p->ok) return false;
    const float one = 1.0f, zero = 0.0f;
    cublasStatus_t st = cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &b, sizeof b);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmul(g_lt, p->desc, &one, w, p->lw, x, p->lx, &zero, out, p->lo, out, p->lo, &p->algo, NULL, 0,
                            gpu_stream);
    gpu_blas_check(op, st);
    g_lt_runs++;
    return true;
}

__global__ static void bias_rows_k(float *out, const float *b, int OC, size_t n)
{
    GRID_STRIDE(i, n) out[i] = b[i % OC];
}

void gpu_linear_forward_product(const char *op, float *out, const float *inp, const uint16_t *inp16, const float *w,
                                const float *b, int N, int IC, int OC)
{
    if (N <= 0 || OC <= 0) return;
    int bf16 = (inp16 || gpu_bf16_ours()) && IC > 0; // the products on bfloat16 copies of what is not bfloat16 yet
    const void *x = inp, *wx = w;
    if (bf16) {
        const float *src[2] = {w, inp};
        size_t n[2] = {(size_t)OC * IC, (size_t)N * IC};
        uint16_t *c16[2];
        if (!bf16_copies(op, inp16 ? 1 : 2, src, n, c16)) return;
        x = inp16 ? inp16 : c16[1], wx = c16[0];
    }
    if (b && IC > 0 && lt_linear(op, out, x, wx, b, N, IC, OC, bf16)) return;
    if (b) { // the bias's rows, then the product added (ops.c's order)
        LAUNCH(bias_rows_k, ew_blocks((size_t)N * OC), EW_THREADS)(out, b, OC, (size_t)N * OC);
        gpu_launched(op);
    }
    if (bf16)
        gemm_bf16(op, 0, 1, N, OC, IC, 1.0f, (const uint16_t *)x, IC, (const uint16_t *)wx, IC, b ? 1.0f : 0.0f, out,
                  OC);
    else
        gpu_gemm_linear(op, 0, 1, N, OC, IC, 1.0f, inp, IC, w, IC, b ? 1.0f : 0.0f, out, OC);
}

void gpu_linear_products16_backward(const char *op, float *dinp, float dinp_beta, float *dw, float *db,
                                    const float *dout, const uint16_t *dout16, const float *inp,
                                    const uint16_t *inp16, const float *w, int N, int IC, int OC)
{
    if (N <= 0 || IC <= 0 || OC <= 0) return;
    if (db && dout16) {
        gpu_record(op, "bias sums asked of a bfloat16 gradient"); // its producer makes them (gpu_linear_backward_g16)
        return;
    }
    // copies of what is not bfloat16 yet, in this order: dout (unless its copy comes with db's sums), inp, then w (for
    // dinp only); with db, dout's copy and its column sums' partials after them, made from one read of dout
    const float *src[3];
    size_t n[3];
    uint16_t *c16[3];
    int k = 0, id = -1, ii = -1, iw = -1;
    if (!dout16 && !db) id = k, src[k] = dout, n[k++] = (size_t)N * OC;
    if (!inp16) ii = k, src[k] = inp, n[k++] = (size_t)N * IC;
    if (dinp) iw = k, src[k] = w, n[k++] = (size_t)OC * IC;
    size_t g_bytes = align256((size_t)N * OC * sizeof(uint16_t));
    size_t extra = db ? g_bytes + (size_t)gpu_colsum_chunks(N) * OC * sizeof(float) : 0;
    void *ex = NULL;
    if ((k || extra) && !bf16_copies(op, k, src, n, c16, extra, &ex)) return;
    if (db) gpu_bf16_colsums(op, (uint16_t *)ex, (float *)((char *)ex + g_bytes), db, dout, N, OC);
    const uint16_t *g = dout16 ? dout16 : db ? (const uint16_t *)ex : c16[id], *x = inp16 ? inp16 : c16[ii];
    if (dinp) gemm_bf16(op, 0, 0, N, IC, OC, 1.0f, g, OC, c16[iw], IC, dinp_beta, dinp, IC);
    gemm_bf16(op, 1, 0, OC, IC, N, 1.0f, g, OC, x, IC, 1.0f, dw, IC);
}

// pointer z = b * nh + h of each operand: base + b * stride over b + h * stride over h (A's and B's elements T)
template <typename T>
__global__ static void gemm_ptrs_k(const T **pa, const T **pb, float **pc, const T *A, long long sAb, long long sAh,
                                   const T *B, long long sBb, long long sBh, float *C, long long sCb, long long sCh,
                                   int nh, int n)
{
    int z = blockIdx.x * blockDim.x + threadIdx.x;
    if (z >= n) return;
    long long b = z / nh, h = z % nh;
    pa[z] = A + b * sAb + h * sAh, pb[z] = B + b * sBb + h * sBh, pc[z] = C + b * sCb + h * sCh;
}

// room for n pointers of each operand in g_ptrs (grown when needed); false: none (the error kept), or a dry run
static bool gemm2_ptrs(const char *op, int n)
{
    size_t bytes = 3 * (size_t)n * sizeof(void *);
    if (gpu_dry) {
        if (bytes > g_dry_ptrs) g_dry_ptrs = bytes;
        return false;
    }
    if (bytes > g_ptrs_bytes) { // grown once per shape; the queued GEMMs may still read the old arrays
        void *old = g_ptrs; // NULL before gpu_free (see there)
        if (old) cuda_ok(op, cudaStreamSynchronize(gpu_stream));
        g_ptrs = NULL, g_ptrs_bytes = 0, g_ws_gen++;
        gpu_free(old);
        if (!(g_ptrs = gpu_alloc(bytes))) return false;
        g_ptrs_bytes = bytes;
    }
    return true;
}

// every matrix a pointer array would hold 16-byte aligned: cuBLAS's tensor-op kernels assume it of pointer arrays,
// which it cannot inspect (strided calls it checks itself)
static bool gemm2_aligned(const void *A, long long sAb, long long sAh, const void *B, long long sBb, long long sBh,
                          const void *C, long long sCb, long long sCh, int esize)
{
    long long e = 16 / esize;
    return (uintptr_t)A % 16 == 0 && (uintptr_t)B % 16 == 0 && (uintptr_t)C % 16 == 0 && sAb % e == 0 &&
           sAh % e == 0 && sBb % e == 0 && sBh % e == 0 && sCb % (16 / 4) == 0 && sCh % (16 / 4) == 0;
}

void gpu_gemm2_16(const char *op, int ta, int tb, int M, int N, int K, float alpha, const uint16_t *A, int lda,
                  long long sAb, long long sAh, const uint16_t *B, int ldb, long long sBb, long long sBh, float beta,
                  float *C, int ldc, long long sCb, long long sCh, int nb, int nh)
{
    if (M <= 0 || N <= 0 || nb <= 0 || nh <= 0) return;
    cublasOperation_t oa = tb ? CUBLAS_OP_T : CUBLAS_OP_N, ob = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (nb == 1 || (sAb == nh * sAh && sBb == nh * sBh && sCb == nh * sCh)) { // one stride covers both
        if (gpu_dry) return;
        gpu_blas_check(op, cublasGemmStridedBatchedEx(gpu_blas, oa, ob, N, M, K, &alpha, B, CUDA_R_16BF, ldb, sBh, A,
                                                      CUDA_R_16BF, lda, sAh, &beta, C, CUDA_R_32F, ldc, sCh, nb * nh,
                                                      CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        return;
    }
    if (!gemm2_aligned(A, sAb, sAh, B, sBb, sBh, C, sCb, sCh, 2)) { // see gpu_gemm2; gpu_attention16_takes avoids it
        for (int b = 0; b < nb && !gpu_dry; b++)
            gpu_blas_check(op, cublasGemmStridedBatchedEx(gpu_blas, oa, ob, N, M, K, &alpha, B + b * sBb, CUDA_R_16BF,
                                                          ldb, sBh, A + b * sAb, CUDA_R_16BF, lda, sAh, &beta,
                                                          C + b * sCb, CUDA_R_32F, ldc, sCh, nh, CUBLAS_COMPUTE_32F,
                                                          CUBLAS_GEMM_DEFAULT));
        return;
    }
    int n = nb * nh;
    if (!gemm2_ptrs(op, n)) return;
    const uint16_t **pa = (const uint16_t **)g_ptrs, **pb = pa + n;
    float **pc = (float **)(pb + n);
    LAUNCH(gemm_ptrs_k<uint16_t>, gpu_blocks(n, 128), 128)(pa, pb, pc, A, sAb, sAh, B, sBb, sBh, C, sCb, sCh, nh, n);
    gpu_launched(op);
    gpu_blas_check(op, cublasGemmBatchedEx(gpu_blas, oa, ob, N, M, K, &alpha, (const void *const *)pb, CUDA_R_16BF,
                                           ldb, (const void *const *)pa, CUDA_R_16BF, lda, &beta, (void *const *)pc,
                                           CUDA_R_32F, ldc, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

void gpu_gemm2(const char *op, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
               long long sAb, long long sAh, const float *B, int ldb, long long sBb, long long sBh, float beta,
               float *C, int ldc, long long sCb, long long sCh, int nb, int nh)
{
    if (M <= 0 || N <= 0 || nb <= 0 || nh <= 0) return;
    if (nb == 1 || (sAb == nh * sAh && sBb == nh * sBh && sCb == nh * sCh)) { // one stride covers both
        gpu_gemm(op, ta, tb, M, N, K, alpha, A, lda, sAh, B, ldb, sBh, beta, C, ldc, sCh, nb * nh);
        return;
    }
    // under TF32 (tensor-op math) a pointer array must hold 16-byte aligned matrices; else one strided call per b
    if (g_prec != GPU_FP32 && !gemm2_aligned(A, sAb, sAh, B, sBb, sBh, C, sCb, sCh, 4)) {
        for (int b = 0; b < nb; b++)
            gpu_gemm(op, ta, tb, M, N, K, alpha, A + b * sAb, lda, sAh, B + b * sBb, ldb, sBh, beta, C + b * sCb, ldc,
                     sCh, nh);
        return;
    }
    int n = nb * nh;
    if (!gemm2_ptrs(op, n)) return;
    const float **pa = (const float **)g_ptrs, **pb = pa + n;
    float **pc = (float **)(pb + n);
    // the row-major product through the column-major cuBLAS: C^T = op(B)^T op(A)^T, so B's pointers go first
    LAUNCH(gemm_ptrs_k<float>, gpu_blocks(n, 128), 128)(pa, pb, pc, A, sAb, sAh, B, sBb, sBh, C, sCb, sCh, nh, n);
    gpu_launched(op);
    cublasOperation_t oa = tb ? CUBLAS_OP_T : CUBLAS_OP_N, ob = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    gpu_blas_check(op, cublasSgemmBatched(gpu_blas, oa, ob, N, M, K, &alpha, pb, ldb, pa, lda, &beta, pc, ldc, n));
}
