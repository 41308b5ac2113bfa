// cuda_emu: the emulator behind cuda_emu.h (see there): a scheduler of user-space contexts for the threads of one
// block (x86-64 only), the CUDA runtime calls on host memory, and cuBLAS sgemm on OpenBLAS.
#include "cuda_emu.h"

#include <cblas.h>
#include <dlfcn.h>
#include <sanitizer/asan_interface.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>
#include <time.h>

#include <map>
#include <set>
#include <tuple>
#include <vector>

uint3e threadIdx, blockIdx;
dim3 blockDim, gridDim;
uint64_t emu_lane_slots[2][1024];
float *emu_dyn_smem;

// ---- ThreadSanitizer's view (EMU_RACE: `make test-cuda-race`) ----------------------------------------------------
// Each emulated thread runs as a fiber of ThreadSanitizer's, switched to without synchronisation, so its accesses
// race with every other thread's unless something orders them as a GPU does: a block's start (its threads begin
// after the host's work before it, its fresh shared memory included), __syncthreads and __syncwarp (what a thread
// did before the barrier happens before what any does after it), the atomics, and a launch's end (for the next
// plain launch, and the host from its next call that waits for the stream or is ordered in it: host_waits; a
// dependent launch only from its emu_pdl_wait on). Shuffles and wmma calls order nothing. Blocks are not ordered
// among themselves: two blocks of a launch touching one word, one of them writing, is a race. A fiber costs
// ThreadSanitizer about 0.5 ms and 0.8 MB to make, so there is a pool of them (EMU_RACE_FIBERS, default 1024), each
// with a stack of its own: blocks take their fibers in turn, going on from launch to launch, block k those of the
// block G before it (G = pool / block size), so a block is ordered after the blocks G, 2G, ... before it by its
// fibers' own histories and checked against all the others.
#ifdef EMU_RACE
#include <sanitizer/tsan_interface.h>
static void *host_fiber;
static std::vector<void *> fiber;
static std::vector<unsigned> gen_block, gen_warp; // the memory barriers the thread on each fiber has passed
// addresses ThreadSanitizer keeps clocks for: each fiber's block's and warp's barriers, in two generations (a thread
// past barrier g may arrive at g + 1 before the others have left g); the host's latest; the launches' ends (all of
// them so far); their threads' emu_pdl_release points (all so far)
static std::vector<char> sync_block, sync_warp;
static char sync_host, sync_end, sync_trigger;
static int pool_size(void)
{
    static int n = 0;
    if (!n) {
        const char *e = getenv("EMU_RACE_FIBERS");
        n = e && atoi(e) >= 32 ? atoi(e) : 1024;
    }
    return n;
}
#define RACE(...) __VA_ARGS__
#else
#define RACE(...)
#endif

// the static shared memory (tests/emu/smem.ld: page-aligned, whole pages): NaN bytes for each block, as DYN_SMEM's;
// mapped anew first for the race check
extern "C" char __emu_smem_start[], __emu_smem_end[];
static void fresh_static_smem(void)
{
    size_t n = (size_t)(__emu_smem_end - __emu_smem_start);
    if (!n) return;
    RACE(if (mmap(__emu_smem_start, n, PROT_READ | PROT_WRITE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) ==
             MAP_FAILED) abort();)
    memset(__emu_smem_start, 0xff, n);
}

// dynamic shared memory: the launch's size, and a buffer of it for each slot of blocks (one for the block of a
// launch, one for each block of a grid_sync launch, whose blocks live at once; for the race check, one for each
// turn of the fiber pool), made fresh for each block: NaN bytes, so a kernel that reads before writing is caught
// (NaN in the result). Here a buffer is exactly the size, so ASan sees an overrun; for the race check it is pages
// mapped anew (so ThreadSanitizer forgets the last block's accesses without the host touching them)
static size_t dyn_bytes;
static std::vector<char *> dyn_bufs;
void emu_set_dyn_smem(size_t bytes) { dyn_bytes = bytes; }
#ifdef EMU_RACE
// a slot's span: the size in whole pages (at least one)
static size_t dyn_span(void) { return ((dyn_bytes ? dyn_bytes : 1) + 4095) & ~(size_t)4095; }
static char *dyn_area;
static size_t dyn_area_bytes;
#endif
static void dyn_smem_slots(size_t n)
{
#ifdef EMU_RACE
    size_t want = n * dyn_span();
    if (want > dyn_area_bytes) {
        if (dyn_area) munmap(dyn_area, dyn_area_bytes);
        dyn_area = (char *)mmap(NULL, want, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (dyn_area == (char *)MAP_FAILED) abort();
        dyn_area_bytes = want;
    }
    dyn_bufs.resize(n);
    for (size_t i = 0; i < n; i++) dyn_bufs[i] = dyn_area + i * dyn_span();
#else
    for (char *p : dyn_bufs) free(p);
    dyn_bufs.assign(n, NULL);
    for (char *&p : dyn_bufs) // aligned as a block's shared memory
        if (posix_memalign((void **)&p, 128, dyn_bytes ? dyn_bytes : 1) != 0) abort();
#endif
}
static void fresh_dyn_smem(size_t slot)
{
    RACE(if (mmap(dyn_bufs[slot], dyn_span(), PROT_READ | PROT_WRITE,
                  MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) == MAP_FAILED) abort();)
    memset(dyn_bufs[slot], 0xff, dyn_bytes);
    emu_dyn_smem = (float *)dyn_bufs[slot];
}

// ---- scheduler ----------------------------------------------------------------------------------------------
// Threads are contexts on stacks of their own, switched by emu_switch (x86-64 SysV: the callee-saved registers and
// the stack pointer; no system call, unlike swapcontext).

enum { READY, WAIT_BLOCK, WAIT_WARP, DONE, WAIT_GRID };
#define EMU_STACK (64 * 1024)

extern "C" void emu_switch(void **save_sp, void *load_sp);
asm(".text\n"
    ".globl emu_switch\n"
    ".type emu_switch,@function\n"
    "emu_switch:\n"
    "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
    "  movq %rsp, (%rdi)\n"
    "  movq %rsi, %rsp\n"
    "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
    "  ret\n"
    ".size emu_switch, .-emu_switch\n");

static void *sched_sp;
static int grid_mode; // the launch is a grid_sync one
static std::vector<void *> sp;
static std::vector<int> state;
static std::vector<unsigned> shuffles; // per thread: the shuffles it has made (emu_shfl_buffer)
static char *stacks;
static size_t n_stacks;
static int cur;
static void (*run_fn)(void *);
static void *run_arg;

static unsigned long steps; // a thread got past a barrier or ended: what a round of yields must see to go on

#ifdef EMU_RACE
// the barrier objects of the thread on fiber c (its block's, its warp's) at the generations it is at
static char *block_sync(int c) { return &sync_block[2 * (c / (int)blockDim.x) + (gen_block[c] & 1)]; }
static char *warp_sync(int c)
{
    int b = c / (int)blockDim.x, t = c % (int)blockDim.x, warps = ((int)blockDim.x + 31) / 32;
    return &sync_warp[2 * (b * warps + t / 32) + (gen_warp[c] & 1)];
}
// a grid_sync block's thread resumes: it sees the host's latest (the block's fresh memory)
static void race_resume(void) { __tsan_acquire(&sync_host); }
#endif

// Dependent launches (emu_run's pdl). The host is ordered after the launches before only where a GPU's host would
// be: at the next call that waits for them or is ordered after them in the stream (host_waits: a copy, a product, a
// free, a wait, a launch that is not a dependent one), not as a launch ends. A thread of a plain launch starts after
// all of that (what the host did before it, which includes every launch before); a thread of a dependent one after
// what the host did before it, which leaves the launch just before it out, and after that launch's threads'
// emu_pdl_release points (or, where none released, its end), then after every launch's end from its emu_pdl_wait on
static size_t next_turn;    // the slots' turn the next block of a launch takes (emu_run)
static int launch_pdl;      // the running launch is a dependent one
static int launch_released; // a thread of the running launch has called emu_pdl_release
static int prev_released;   // ... of the launch before (none since a host_waits)
static void host_waits(void)
{
    RACE(__tsan_acquire(&sync_end);)
    prev_released = 0;
}
void emu_pdl_wait(void) { RACE(if (launch_pdl) __tsan_acquire(&sync_end);) }
void emu_pdl_release(void)
{
    launch_released = 1;
    RACE(__tsan_release(&sync_trigger);)
}
#ifdef EMU_RACE
static void race_start(void)
{
    __tsan_acquire(&sync_host);
    if (launch_pdl) __tsan_acquire(prev_released ? &sync_trigger : &sync_end);
}
#endif

// a launch's kernel and arguments (cuda_emu.h EmuLaunch): for the race check pages mapped anew for each launch, so
// ThreadSanitizer forgets the last launch's reads of them (the host, not ordered after a launch's threads before
// it waits for them, writes the next launch's there); else a buffer kept
void *emu_args(size_t bytes)
{
    static char *area;
    static size_t cap;
#ifdef EMU_RACE
    size_t span = (bytes + 4095) & ~(size_t)4095;
    if (span > cap) {
        if (area) munmap(area, cap);
        area = (char *)mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (area == (char *)MAP_FAILED) abort();
        cap = span;
    } else if (mmap(area, cap, PROT_READ | PROT_WRITE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) == MAP_FAILED)
        abort();
#else
    if (bytes > cap) {
        free(area);
        cap = (bytes + 4095) & ~(size_t)4095;
        if (posix_memalign((void **)&area, 64, cap) != 0) abort();
    }
#endif
    return area;
}

// a thread's first code: the kernel, then back to the scheduler for good
static void thread_entry(void)
{
    RACE(race_start();)
    run_fn(run_arg);
    // an ended thread counts as arrived at its block's and warp's barriers, and at the launch's end
    RACE(__tsan_release(block_sync(cur)), __tsan_release(warp_sync(cur)), __tsan_release(&sync_end);)
    state[cur] = DONE, steps++;
    static void *dead; // not on this stack: the frame is abandoned here
    RACE(__tsan_switch_to_fiber(host_fiber, __tsan_switch_to_fiber_no_sync);)
    emu_switch(&dead, sched_sp);
    abort(); // never resumed
}

// a fresh context near the top of stack t: six zero registers, then thread_entry as the return address. The tops
// are staggered by 64 bytes a thread: stacks a power of two apart would put every thread's frames in the same cache
// sets, and a switch would miss the cache each time
static void *new_context(int t)
{
    uintptr_t top = ((uintptr_t)(stacks + (size_t)(t + 1) * EMU_STACK - (size_t)(t % 64) * 64)) & ~(uintptr_t)15;
    void **p = (void **)(top - 16);
    p[0] = (void *)thread_entry, p[1] = NULL;
    p -= 6;
    for (int i = 0; i < 6; i++) p[i] = NULL;
    return p;
}

// mem: a barrier that orders memory (__syncthreads, __syncwarp), for the race check
static void wait_as(int s, bool mem = false)
{
    (void)mem;
#ifdef EMU_RACE
    char *obj = !mem ? NULL : s == WAIT_BLOCK ? block_sync(cur) : warp_sync(cur);
    if (obj) __tsan_release(obj);
#endif
    state[cur] = s;
    steps += s != WAIT_GRID;
    RACE(__tsan_switch_to_fiber(host_fiber, __tsan_switch_to_fiber_no_sync);)
    emu_switch(&sp[cur], sched_sp);
#ifdef EMU_RACE
    if (grid_mode) race_resume();
    if (obj) {
        __tsan_acquire(obj);
        (s == WAIT_BLOCK ? gen_block : gen_warp)[cur]++;
    }
#endif
}
void emu_syncthreads(void) { wait_as(WAIT_BLOCK, true); }
unsigned emu_shfl_buffer(void) { return shuffles[cur]++ & 1u; }
void emu_syncwarp(void) { wait_as(WAIT_WARP); }
void emu_syncwarp_mem(void) { wait_as(WAIT_WARP, true); }
void emu_grid_yield(void) { wait_as(WAIT_GRID); }

void emu_wmma_check(const void *p, unsigned ldm, size_t elem, const char *what)
{
    if ((uintptr_t)p % 32 == 0 && ldm * elem % 16 == 0) return;
    fprintf(stderr, "cuda_emu: wmma::%s in block (%u,%u,%u) thread %u: pointer %p not 32-byte aligned or ldm %u "
                    "not a multiple of 16 bytes\n", what, blockIdx.x, blockIdx.y, blockIdx.z, threadIdx.x, p, ldm);
    abort();
}

void emu_ldm_check(const void *row)
{
    uintptr_t a = (uintptr_t)row, st = (uintptr_t)__emu_smem_start, dyn = (uintptr_t)emu_dyn_smem;
    bool shared = (a >= st && a + 16 <= (uintptr_t)__emu_smem_end) || (a >= dyn && a + 16 <= dyn + dyn_bytes);
    if (a % 16 == 0 && shared) return;
    fprintf(stderr, "cuda_emu: ldmatrix in block (%u,%u,%u) thread %u: row address %p %s\n", blockIdx.x, blockIdx.y,
            blockIdx.z, threadIdx.x, row, a % 16 ? "not 16-byte aligned" : "not in the block's shared memory");
    abort();
}

static void deadlock(int base, int n)
{
    fprintf(stderr, "cuda_emu: deadlock in block (%u,%u,%u) of %u threads: a barrier or shuffle that not every live "
                    "thread reaches; states (0 ready, 1 __syncthreads, 2 warp shuffle, 3 done, 4 waiting for other blocks):",
            blockIdx.x, blockIdx.y, blockIdx.z, (unsigned)n);
    for (int t = 0; t < n; t++) fprintf(stderr, "%s%d", t % 32 ? "" : " | ", state[base + t]);
    fputc('\n', stderr);
    abort();
}

// The block of threads base .. base+n-1: releases the warps whose live lanes all wait at a shuffle, else the block
// when every live thread waits at __syncthreads. Returns 0 when every live thread is done, or when some wait for
// other blocks (emu_grid_yield) and the rest at __syncthreads: the block is parked till the next round.
static int release(int base, int n)
{
    int live = 0, at_block = 0, at_grid = 0, released = 0;
    for (int w = 0; w < n; w += 32) {
        int l = 0, at_warp = 0;
        for (int t = w; t < n && t < w + 32; t++) l += state[base + t] != DONE, at_warp += state[base + t] == WAIT_WARP;
        if (l && at_warp == l) {
            for (int t = w; t < n && t < w + 32; t++) state[base + t] = READY;
            released = 1;
        }
    }
    for (int t = 0; t < n; t++)
        live += state[base + t] != DONE, at_block += state[base + t] == WAIT_BLOCK, at_grid += state[base + t] == WAIT_GRID;
    if (!live || (!released && at_grid && at_grid + at_block == live)) return 0;
    if (!released && at_block == live) {
        for (int t = 0; t < n; t++)
            if (state[base + t] == WAIT_BLOCK) state[base + t] = READY;
        released = 1;
    }
    if (!released) deadlock(base, n);
    return 1;
}

// the threads base .. base+n-1 of block b until none can go on (release)
static void run_block(dim3 b, int base, int n)
{
    blockIdx = {b.x, b.y, b.z};
    if (grid_mode) { // the block's turn: its dynamic shared memory; static shared memory fresh again (one copy)
        emu_dyn_smem = (float *)dyn_bufs[b.x];
        fresh_static_smem();
    }
    RACE(__tsan_release(&sync_host);)
    // threads in ascending order in even blocks, descending in odd ones: a read that misses a barrier sees another
    // thread's write in one order and not in the other
    int rev = (b.x + b.y + b.z) & 1;
    do {
        for (int k = 0; k < n; k++) {
            int t = rev ? n - 1 - k : k;
            if (state[base + t] == READY) {
                cur = base + t;
                threadIdx = {(unsigned)t, 0, 0};
                RACE(__tsan_switch_to_fiber(fiber[base + t], __tsan_switch_to_fiber_no_sync);)
                emu_switch(&sched_sp, sp[base + t]);
            }
        }
    } while (release(base, n));
}

// contexts for the threads on slots base .. base+n-1, all READY (for the race check, the fibers of those slots)
static void start_threads(int base, int n)
{
    ASAN_UNPOISON_MEMORY_REGION(stacks + (size_t)base * EMU_STACK, (size_t)n * EMU_STACK); // frames left before
    for (int t = base; t < base + n; t++) sp[t] = new_context(t), state[t] = READY, shuffles[t] = 0;
    RACE(for (int t = base; t < base + n; t++) gen_block[t] = gen_warp[t] = 0;)
}

void emu_run(dim3 grid, dim3 block, void (*fn)(void *), void *arg, int grid_sync, int pdl)
{
    if (!pdl) host_waits(); // a plain launch starts after everything before it in the stream
    launch_pdl = pdl, launch_released = 0;
    if (block.y != 1 || block.z != 1 || block.x == 0 || block.x > 1024) {
        fprintf(stderr, "cuda_emu: block (%u,%u,%u): only 1-D blocks of 1..1024 threads are emulated\n", block.x,
                block.y, block.z);
        abort();
    }
    if (grid_sync && (grid.y != 1 || grid.z != 1 || grid.x == 0 || grid.x > 64)) {
        fprintf(stderr, "cuda_emu: grid (%u,%u,%u) of blocks that wait for each other: only 1-D grids of 1..64 blocks\n", grid.x,
                grid.y, grid.z);
        abort();
    }
    int n = (int)block.x, live_blocks = grid_sync ? (int)grid.x : 1, total = n * live_blocks;
    // the slots (contexts, stacks; for the race check, fibers) blocks take in turn: one block's, or the pool's
    int slots = total, turns = 1;
#ifdef EMU_RACE
    if (total > pool_size()) {
        fprintf(stderr, "cuda_emu: %d threads live at once, more than the race check's %d fibers (EMU_RACE_FIBERS)\n",
                total, pool_size());
        abort();
    }
    if (!grid_sync) turns = pool_size() / n, slots = turns * n;
    if (fiber.empty()) {
        host_fiber = __tsan_get_current_fiber();
        fiber.resize(pool_size());
        for (void *&f : fiber) f = __tsan_create_fiber(0);
        gen_block.assign(fiber.size(), 0), gen_warp.assign(fiber.size(), 0);
        sync_block.assign(2 * fiber.size(), 0), sync_warp.assign(2 * fiber.size(), 0);
    }
#endif
    if ((size_t)slots > n_stacks) {
        free(stacks);
        stacks = (char *)malloc((size_t)slots * EMU_STACK);
        n_stacks = (size_t)slots;
    }
    sp.resize(slots), state.resize(slots), shuffles.resize(slots);
    blockDim = block, gridDim = grid, run_fn = fn, run_arg = arg, grid_mode = grid_sync;
    if (grid_sync) { // every block's threads at once, the blocks in turn, round after round
        dyn_smem_slots(grid.x);
        for (unsigned bx = 0; bx < grid.x; bx++) fresh_dyn_smem(bx);
        start_threads(0, total);
        for (;;) {
            unsigned long before = steps;
            for (unsigned bx = 0; bx < grid.x; bx++) run_block(dim3(bx, 0, 0), (int)bx * n, n);
            int live = 0, at_grid = 0;
            for (int t = 0; t < total; t++) live += state[t] != DONE, at_grid += state[t] == WAIT_GRID;
            if (!live) break;
            if (steps == before) { // the waits' conditions are as they were: they would be forever
                fprintf(stderr, "cuda_emu: deadlock: %d threads wait for other blocks, which all wait too (%d of %d "
                                "threads have ended)\n", at_grid, total - live, total);
                abort();
            }
            for (int t = 0; t < total; t++)
                if (state[t] == WAIT_GRID) state[t] = READY;
        }
    } else {
        dyn_smem_slots((size_t)turns);
        // blocks take the slots in turn, the turns going on from the launch before, so that a launch's threads run
        // on other fibers than the one's before (a fiber's history orders what ran on it: for the race check, a
        // dependent launch's thread would be ordered after the thread of the launch before on its fiber)
        for (unsigned bz = 0; bz < grid.z; bz++)
            for (unsigned by = 0; by < grid.y; by++)
                for (unsigned bx = 0; bx < grid.x; bx++) {
                    size_t turn = next_turn++ % (size_t)turns;
                    int base = (int)turn * n;
                    fresh_dyn_smem(turn), fresh_static_smem();
                    start_threads(base, n);
                    run_block(dim3(bx, by, bz), base, n);
                    for (int t = base; t < base + n; t++)
                        if (state[t] == WAIT_GRID) {
                            fprintf(stderr, "cuda_emu: a wait for other blocks in a launch without grid_sync\n");
                            abort();
                        }
                }
    }
    // (the host is not ordered after the launch's threads here: host_waits)
    prev_released = launch_released, launch_pdl = 0;
}

// ---- CUDA runtime -------------------------------------------------------------------------------------------

static cudaError_t last;
static cudaError_t set(cudaError_t e) { return e != cudaSuccess ? last = e : e; }

const char *cudaGetErrorString(cudaError_t e)
{
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
    case cudaErrorInsufficientDriver: return "CUDA driver version is insufficient for CUDA runtime version";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    default: return "unknown error";
    }
}

// ---- launch shapes (emu_launch_note) -----------------------------------------------------------------------------
static std::map<const void *, int> optin; // kernel -> the dynamic shared memory cudaFuncSetAttribute allowed it
struct Shape {
    const void *kernel;
    unsigned block;
    size_t smem;
    int optin, grid_sync;
    bool operator<(const Shape &o) const
    {
        return std::tie(kernel, block, smem, optin, grid_sync) < std::tie(o.kernel, o.block, o.smem, o.optin,
                                                                          o.grid_sync);
    }
};
static std::set<Shape> shapes;
static const char *shape_log;
void emu_func_optin(const void *kernel, int bytes) { optin[kernel] = bytes; }

// EMU_LAUNCH_LOG, appended: "EXECUTABLE OFFSET BLOCK SMEM OPTIN GRID_SYNC" a shape (OFFSET: the kernel's address
// less the executable's load address, in hex, as nm gives it)
static void write_shapes(void)
{
    FILE *f = fopen(shape_log, "a");
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (!f || n <= 0) {
        fprintf(stderr, "cuda_emu: %s: cannot write the launch shapes\n", shape_log);
        if (f) fclose(f);
        return;
    }
    exe[n] = 0;
    for (const Shape &s : shapes) {
        Dl_info d;
        if (!dladdr(s.kernel, &d)) continue;
        fprintf(f, "%s %lx %u %zu %d %d\n", exe, (unsigned long)((uintptr_t)s.kernel - (uintptr_t)d.dli_fbase),
                s.block, s.smem, s.optin, s.grid_sync);
    }
    if (fclose(f)) fprintf(stderr, "cuda_emu: %s: cannot write the launch shapes\n", shape_log);
}

int emu_launch_note(const void *kernel, dim3 block, size_t smem, int grid_sync)
{
    auto it = optin.find(kernel);
    int in = it == optin.end() ? 0 : it->second;
    size_t limit = it == optin.end() ? 48 << 10 : (size_t)in;
    if (smem > limit) { // a GPU refuses the launch (its static shared memory counts too: check_launch.sh)
        fprintf(stderr, "cuda_emu: a launch with %zu bytes of dynamic shared memory, over the %zu %s\n", smem, limit,
                it == optin.end() ? "a kernel has without cudaFuncSetAttribute(MaxDynamicSharedMemorySize)"
                                  : "cudaFuncSetAttribute allowed its kernel");
        set(cudaErrorInvalidValue);
        return 0;
    }
    static int logging = -1;
    if (logging < 0) {
        shape_log = getenv("EMU_LAUNCH_LOG");
        logging = shape_log && *shape_log;
        if (logging) atexit(write_shapes);
    }
    if (logging) shapes.insert(Shape{kernel, block.x, smem, in, grid_sync});
    return 1;
}


cudaError_t cudaGetLastError(void)
{
    cudaError_t e = last;
    last = cudaSuccess;
    return e;
}
cudaError_t cudaDriverGetVersion(int *v) { return *v = 13000, cudaSuccess; }
cudaError_t cudaRuntimeGetVersion(int *v) { return *v = 13000, cudaSuccess; }
cudaError_t cudaGetDeviceCount(int *n) { return *n = 1, cudaSuccess; }
cudaError_t cudaSetDevice(int) { return cudaSuccess; }
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int)
{
    snprintf(p->name, sizeof p->name, "cuda_emu (CPU emulation)");
    p->major = 9, p->minor = 0, p->sharedMemPerBlockOptin = 232448;
    return cudaSuccess;
}
static int stream_token;
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned) { return *s = &stream_token, cudaSuccess; }
cudaError_t cudaStreamDestroy(cudaStream_t) { return cudaSuccess; }

struct EmuEvent {
    double t; // seconds, CLOCK_MONOTONIC; < 0 until recorded
};
cudaError_t cudaEventCreate(cudaEvent_t *e) { return *e = new EmuEvent{-1.0}, cudaSuccess; }
cudaError_t cudaEventDestroy(cudaEvent_t e) { return delete e, cudaSuccess; }
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    e->t = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
    return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t) { return host_waits(), cudaSuccess; }
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b)
{
    if (a->t < 0 || b->t < 0) return cudaErrorInvalidValue;
    return *ms = (float)(1e3 * (b->t - a->t)), cudaSuccess;
}
// ---- stream capture and graphs: a graph is its recorded ops, run in order -------------------------------------
struct EmuGraph {
    std::vector<std::function<void()>> ops;
};
int emu_capturing;
static EmuGraph *capture;  // the graph being recorded
static int capture_broken; // something a capture refuses happened: EndCapture fails
void emu_record(std::function<void()> op) { capture->ops.push_back(std::move(op)); }
// a call a real capture refuses: it breaks the capture
static cudaError_t refused(void) { return capture_broken = 1, set(cudaErrorStreamCaptureUnsupported); }

cudaError_t cudaStreamBeginCapture(cudaStream_t, cudaStreamCaptureMode)
{
    if (emu_capturing) return refused();
    capture = new EmuGraph, emu_capturing = 1, capture_broken = 0;
    return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t, cudaGraph_t *g)
{
    *g = NULL;
    if (!emu_capturing) return set(cudaErrorStreamCaptureInvalidated);
    emu_capturing = 0;
    if (capture_broken) {
        delete capture;
        return set(cudaErrorStreamCaptureInvalidated);
    }
    *g = capture;
    return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *e, cudaGraph_t g, unsigned long long)
{
    if (!g) return set(cudaErrorStreamCaptureInvalidated);
    *e = new EmuGraph(*g);
    return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t)
{
    if (emu_capturing) return refused();
    for (auto &op : e->ops) op();
    return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e) { return delete e, cudaSuccess; }
cudaError_t cudaGraphDestroy(cudaGraph_t g) { return delete g, cudaSuccess; }

cudaError_t cudaStreamSynchronize(cudaStream_t) { return emu_capturing ? refused() : (host_waits(), cudaSuccess); }
cudaError_t emu_malloc(void **p, size_t bytes)
{
    if (emu_capturing) return *p = NULL, refused();
    *p = bytes <= ((size_t)8 << 30) ? malloc(bytes) : NULL;
    return *p ? cudaSuccess : set(cudaErrorMemoryAllocation);
}
cudaError_t cudaFree(void *p) { return host_waits(), free(p), cudaSuccess; }
static std::map<uintptr_t, size_t> pinned; // page-locked blocks: start -> bytes
cudaError_t emu_host_alloc(void **p, size_t bytes)
{
    cudaError_t e = emu_malloc(p, bytes);
    if (e == cudaSuccess) pinned[(uintptr_t)*p] = bytes;
    return e;
}
cudaError_t cudaFreeHost(void *p)
{
    pinned.erase((uintptr_t)p);
    return host_waits(), free(p), cudaSuccess;
}
// whether [p, p + bytes) lies in one page-locked block
static bool is_pinned(const void *p, size_t bytes)
{
    auto it = pinned.upper_bound((uintptr_t)p);
    if (it == pinned.begin()) return false;
    --it;
    return (uintptr_t)p + bytes <= it->first + it->second;
}
cudaError_t cudaMemGetInfo(size_t *fr, size_t *tot) { return *fr = (size_t)8 << 30, *tot = (size_t)16 << 30, cudaSuccess; }
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind k, cudaStream_t)
{
    if (emu_capturing) { // a captured copy from or to pageable host memory is refused
        if ((k == cudaMemcpyHostToDevice && !is_pinned(src, bytes)) ||
            (k == cudaMemcpyDeviceToHost && !is_pinned(dst, bytes)))
            return refused();
        return emu_record([=]() { host_waits(), memmove(dst, src, bytes); }), cudaSuccess;
    }
    host_waits();
    memmove(dst, src, bytes);
    return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void *p, int v, size_t bytes, cudaStream_t)
{
    if (emu_capturing) return emu_record([=]() { host_waits(), memset(p, v, bytes); }), cudaSuccess;
    return host_waits(), memset(p, v, bytes), cudaSuccess;
}

// ---- cuBLAS ---------------------------------------------------------------------------------------------------

static int blas_token;
cublasStatus_t cublasCreate(cublasHandle_t *h) { return *h = &blas_token, CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasDestroy(cublasHandle_t) { return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetStream(cublasHandle_t, cudaStream_t) { return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetMathMode(cublasHandle_t, cublasMath_t) { return CUBLAS_STATUS_SUCCESS; }
const char *cublasGetStatusString(cublasStatus_t s)
{
    return s == CUBLAS_STATUS_SUCCESS          ? "CUBLAS_STATUS_SUCCESS"
           : s == CUBLAS_STATUS_INTERNAL_ERROR ? "CUBLAS_STATUS_INTERNAL_ERROR"
           : s == CUBLAS_STATUS_NOT_SUPPORTED  ? "CUBLAS_STATUS_NOT_SUPPORTED"
                                               : "CUBLAS_STATUS_INVALID_VALUE";
}

// A cuBLAS call while capturing joins the graph as a whole, as cuBLAS 12.2+ does: its operands (device pointers,
// pointer arrays a kernel of the same graph may fill) are read at replay, its host scalars alpha, beta now
#define BLAS_CAPTURE(h, call)                                                                                          \
    if (emu_capturing) {                                                                                               \
        float a_ = *(const float *)alpha, b_ = *(const float *)beta;                                                   \
        emu_record([=]() {                                                                                             \
            const float *alpha = &a_, *beta = &b_;                                                                     \
            call;                                                                                                      \
        });                                                                                                            \
        return CUBLAS_STATUS_SUCCESS;                                                                                  \
    }

// column-major C (m,n) = alpha op(A) op(B) + beta C, with cuBLAS's argument checks
static cublasStatus_t sgemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha,
                            const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    int ra = ta == CUBLAS_OP_N ? m : k, rb = tb == CUBLAS_OP_N ? k : n;
    if (m < 0 || n < 0 || k < 0 || lda < (ra > 1 ? ra : 1) || ldb < (rb > 1 ? rb : 1) || ldc < (m > 1 ? m : 1))
        return CUBLAS_STATUS_INVALID_VALUE;
    if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
    host_waits();
    cblas_sgemm(CblasColMajor, ta == CUBLAS_OP_N ? CblasNoTrans : CblasTrans,
                tb == CUBLAS_OP_N ? CblasNoTrans : CblasTrans, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                           const float *alpha, const float *A, int lda, const float *B, int ldb, const float *beta,
                           float *C, int ldc)
{
    BLAS_CAPTURE(h, cublasSgemm(h, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc));
    return sgemm(ta, tb, m, n, k, *alpha, A, lda, B, ldb, *beta, C, ldc);
}
cublasStatus_t cublasSgemmBatched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                                  const float *alpha, const float *const A[], int lda, const float *const B[], int ldb,
                                  const float *beta, float *const C[], int ldc, int batch)
{
    BLAS_CAPTURE(h, cublasSgemmBatched(h, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc, batch));
    for (int i = 0; i < batch; i++) {
        cublasStatus_t s = sgemm(ta, tb, m, n, k, *alpha, A[i], lda, B[i], ldb, *beta, C[i], ldc);
        if (s) return s;
    }
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                         int k, const float *alpha, const float *A, int lda, long long sA,
                                         const float *B, int ldb, long long sB, const float *beta, float *C, int ldc,
                                         long long sC, int batch)
{
    BLAS_CAPTURE(h, cublasSgemmStridedBatched(h, ta, tb, m, n, k, alpha, A, lda, sA, B, ldb, sB, beta, C, ldc, sC,
                                              batch));
    for (int i = 0; i < batch; i++) {
        cublasStatus_t s = sgemm(ta, tb, m, n, k, *alpha, A + i * sA, lda, B + i * sB, ldb, *beta, C + i * sC, ldc);
        if (s) return s;
    }
    return CUBLAS_STATUS_SUCCESS;
}

// an operand of cublasGemmEx as floats: rows x cols (column-major, leading dimension ld) widened from bfloat16
static const float *gemm_ex_operand(std::vector<float> &buf, const void *p, cudaDataType_t t, int rows, int cols, int ld,
                                    int fast16bf)
{
    size_t n = rows > 0 && cols > 0 ? (size_t)(cols - 1) * ld + rows : 0;
    if (t == CUDA_R_32F && !fast16bf) return (const float *)p;
    buf.resize(n + 1);
    if (t == CUDA_R_32F) { // rounded to bfloat16, nearest even
        const uint32_t *f = (const uint32_t *)p;
        for (size_t i = 0; i < n; i++) {
            uint32_t u = (f[i] + 0x7fffu + ((f[i] >> 16) & 1u)) & 0xffff0000u;
            memcpy(&buf[i], &u, sizeof u);
        }
        return buf.data();
    }
    const uint16_t *h = (const uint16_t *)p;
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)h[i] << 16;
        memcpy(&buf[i], &u, sizeof u);
    }
    return buf.data();
}

cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const void *alpha, const void *A, cudaDataType_t Atype, int lda, const void *B,
                            cudaDataType_t Btype, int ldb, const void *beta, void *C, cudaDataType_t Ctype, int ldc,
                            cublasComputeType_t compute, cublasGemmAlgo_t algo)
{
    BLAS_CAPTURE(h, cublasGemmEx(h, ta, tb, m, n, k, alpha, A, Atype, lda, B, Btype, ldb, beta, C, Ctype, ldc, compute,
                                 algo));
    int fast = compute == CUBLAS_COMPUTE_32F_FAST_16BF;
    if (Ctype != CUDA_R_32F || (compute != CUBLAS_COMPUTE_32F && !fast) || (Atype != CUDA_R_32F && Atype != CUDA_R_16BF) ||
        (Btype != CUDA_R_32F && Btype != CUDA_R_16BF))
        return CUBLAS_STATUS_INVALID_VALUE;
    host_waits();
    std::vector<float> a, b;
    const float *fa = gemm_ex_operand(a, A, Atype, ta == CUBLAS_OP_N ? m : k, ta == CUBLAS_OP_N ? k : m, lda, fast);
    const float *fb = gemm_ex_operand(b, B, Btype, tb == CUBLAS_OP_N ? k : n, tb == CUBLAS_OP_N ? n : k, ldb, fast);
    return sgemm(ta, tb, m, n, k, *(const float *)alpha, fa, lda, fb, ldb, *(const float *)beta, (float *)C, ldc);
}

static size_t ex_size(cudaDataType_t t) { return t == CUDA_R_16BF ? 2 : 4; }
cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                          int k, const void *alpha, const void *A, cudaDataType_t Atype, int lda,
                                          long long sA, const void *B, cudaDataType_t Btype, int ldb, long long sB,
                                          const void *beta, void *C, cudaDataType_t Ctype, int ldc, long long sC,
                                          int batch, cublasComputeType_t compute, cublasGemmAlgo_t algo)
{
    BLAS_CAPTURE(h, cublasGemmStridedBatchedEx(h, ta, tb, m, n, k, alpha, A, Atype, lda, sA, B, Btype, ldb, sB, beta,
                                               C, Ctype, ldc, sC, batch, compute, algo));
    for (int i = 0; i < batch; i++) {
        cublasStatus_t s = cublasGemmEx(h, ta, tb, m, n, k, alpha, (const char *)A + i * sA * ex_size(Atype), Atype,
                                        lda, (const char *)B + i * sB * ex_size(Btype), Btype, ldb, beta,
                                        (char *)C + i * sC * ex_size(Ctype), Ctype, ldc, compute, algo);
        if (s) return s;
    }
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasGemmBatchedEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                                   const void *alpha, const void *const A[], cudaDataType_t Atype, int lda,
                                   const void *const B[], cudaDataType_t Btype, int ldb, const void *beta,
                                   void *const C[], cudaDataType_t Ctype, int ldc, int batch,
                                   cublasComputeType_t compute, cublasGemmAlgo_t algo)
{
    BLAS_CAPTURE(h, cublasGemmBatchedEx(h, ta, tb, m, n, k, alpha, A, Atype, lda, B, Btype, ldb, beta, C, Ctype, ldc,
                                        batch, compute, algo));
    for (int i = 0; i < batch; i++) {
        cublasStatus_t s = cublasGemmEx(h, ta, tb, m, n, k, alpha, A[i], Atype, lda, B[i], Btype, ldb, beta, C[i],
                                        Ctype, ldc, compute, algo);
        if (s) return s;
    }
    return CUBLAS_STATUS_SUCCESS;
}

// ---- cuBLASLt ---------------------------------------------------------------------------------------------------

struct EmuLt {
    int token;
};
struct EmuLtDesc {
    cublasComputeType_t compute;
    int ta, tb, epi, bias_type;
    const void *bias;
};
struct EmuLtLayout {
    cudaDataType_t type;
    uint64_t rows, cols;
    int64_t ld;
};
struct EmuLtPref {
    uint64_t ws;
    uint32_t align[4]; // A, B, C, D
};
static EmuLt lt_token;
cublasStatus_t cublasLtCreate(cublasLtHandle_t *h) { return *h = &lt_token, CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasLtDestroy(cublasLtHandle_t) { return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *d, cublasComputeType_t compute, cudaDataType_t scale)
{
    if (scale != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
    *d = new EmuLtDesc{compute, CUBLAS_OP_N, CUBLAS_OP_N, CUBLASLT_EPILOGUE_DEFAULT, -1, NULL};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) { return delete d, CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t a, const void *buf,
                                              size_t size)
{
    int32_t i = 0;
    uint32_t u = 0;
    switch (a) {
    case CUBLASLT_MATMUL_DESC_TRANSA:
    case CUBLASLT_MATMUL_DESC_TRANSB:
    case CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE:
        if (size != sizeof i) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(&i, buf, sizeof i);
        if (a == CUBLASLT_MATMUL_DESC_TRANSA) d->ta = i;
        else if (a == CUBLASLT_MATMUL_DESC_TRANSB) d->tb = i;
        else d->bias_type = i;
        return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_DESC_EPILOGUE:
        if (size != sizeof u) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(&u, buf, sizeof u);
        d->epi = (int)u;
        return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER:
        if (size != sizeof d->bias) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(&d->bias, buf, sizeof d->bias);
        return CUBLAS_STATUS_SUCCESS;
    }
    return CUBLAS_STATUS_INVALID_VALUE;
}
cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *l, cudaDataType_t type, uint64_t rows, uint64_t cols,
                                          int64_t ld)
{
    if (ld < (int64_t)(rows > 1 ? rows : 1)) return CUBLAS_STATUS_INVALID_VALUE;
    *l = new EmuLtLayout{type, rows, cols, ld};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) { return delete l, CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *p)
{
    *p = new EmuLtPref{0, {256, 256, 256, 256}};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) { return delete p, CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p,
                                                    cublasLtMatmulPreferenceAttributes_t a, const void *buf,
                                                    size_t size)
{
    if (a == CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES && size == sizeof p->ws)
        return memcpy(&p->ws, buf, size), CUBLAS_STATUS_SUCCESS;
    if (size != sizeof(uint32_t)) return CUBLAS_STATUS_INVALID_VALUE;
    if (a == CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK) return CUBLAS_STATUS_SUCCESS; // no reduction here anyway
    if (a < CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES || a > CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES)
        return CUBLAS_STATUS_INVALID_VALUE;
    memcpy(&p->align[a - CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES], buf, size);
    return CUBLAS_STATUS_SUCCESS;
}

// the largest power of two (at most 256) that divides the address
static uint32_t lt_alignment(const void *p)
{
    uint32_t a = 256;
    while (a > 1 && (uintptr_t)p % a) a /= 2;
    return a;
}
#define LT_MAGIC 0x4c7445u // "LtE"
// the product's m, n, k from the layouts (op(A) m x k, op(B) k x n, C and D m x n); false: they do not fit
static bool lt_shape(const EmuLtDesc *d, const EmuLtLayout *a, const EmuLtLayout *b, const EmuLtLayout *c,
                     const EmuLtLayout *dd, uint64_t *m, uint64_t *n, uint64_t *k)
{
    *m = d->ta ? a->cols : a->rows, *k = d->ta ? a->rows : a->cols, *n = d->tb ? b->rows : b->cols;
    uint64_t kb = d->tb ? b->cols : b->rows;
    return kb == *k && c->rows == *m && c->cols == *n && dd->rows == *m && dd->cols == *n && c->ld == dd->ld;
}
cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t, cublasLtMatmulDesc_t d, cublasLtMatrixLayout_t a,
                                              cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c,
                                              cublasLtMatrixLayout_t dd, cublasLtMatmulPreference_t p, int requested,
                                              cublasLtMatmulHeuristicResult_t *results, int *returned)
{
    *returned = 0;
    if (requested < 1) return CUBLAS_STATUS_INVALID_VALUE;
    // as cuBLASLt 13 is reported to do (vllm.cpp issue 1732): no heuristic while a stream is being captured
    if (emu_capturing) return CUBLAS_STATUS_INTERNAL_ERROR;
    uint64_t m, n, k;
    if (!lt_shape(d, a, b, c, dd, &m, &n, &k)) return CUBLAS_STATUS_INVALID_VALUE;
    bool f32 = a->type == CUDA_R_32F && b->type == CUDA_R_32F, b16 = a->type == CUDA_R_16BF && b->type == CUDA_R_16BF;
    bool compute = d->compute == CUBLAS_COMPUTE_32F || d->compute == CUBLAS_COMPUTE_32F_FAST_TF32 ||
                   d->compute == CUBLAS_COMPUTE_32F_FAST_16BF;
    bool types = c->type == CUDA_R_32F && dd->type == CUDA_R_32F && compute &&
                 (f32 || (b16 && d->compute == CUBLAS_COMPUTE_32F));
    bool epi = d->epi == CUBLASLT_EPILOGUE_DEFAULT ||
               (d->epi == CUBLASLT_EPILOGUE_BIAS && (d->bias_type == -1 || d->bias_type == CUDA_R_32F));
    if (!types || !epi) return CUBLAS_STATUS_NOT_SUPPORTED;
    cublasLtMatmulHeuristicResult_t r;
    memset(&r, 0, sizeof r);
    r.algo.data[0] = LT_MAGIC, r.algo.data[2] = m, r.algo.data[3] = n, r.algo.data[4] = k;
    for (int i = 0; i < 4; i++) r.algo.data[1] |= (uint64_t)p->align[i] << (9 * i);
    r.algo.data[1] |= (uint64_t)lt_alignment(d->bias) << 36; // the bias pointer's, as cuBLASLt reads it here
    r.algo.data[5] = (uint64_t)d->compute | (uint64_t)d->epi << 8;
    r.state = CUBLAS_STATUS_SUCCESS, r.wavesCount = 1.0f;
    results[0] = r, *returned = 1;
    return CUBLAS_STATUS_SUCCESS;
}

// D = alpha op(A) op(B) + beta C (+ the bias, one value per row of D), as cublasGemmEx computes its product; run
// false: only the checks
static cublasStatus_t lt_matmul(EmuLtDesc d, float alpha, const void *A, EmuLtLayout la, const void *B, EmuLtLayout lb,
                                float beta, const void *C, EmuLtLayout lc, void *D, EmuLtLayout ld,
                                cublasLtMatmulAlgo_t algo, bool run)
{
    uint64_t m, n, k;
    if (!lt_shape(&d, &la, &lb, &lc, &ld, &m, &n, &k)) return CUBLAS_STATUS_INVALID_VALUE;
    const void *ptr[5] = {A, B, C, D, d.bias};
    if (algo.data[0] != LT_MAGIC || algo.data[2] != m || algo.data[3] != n || algo.data[4] != k ||
        algo.data[5] != ((uint64_t)d.compute | (uint64_t)d.epi << 8))
        return CUBLAS_STATUS_INVALID_VALUE; // an algorithm chosen for another product
    for (int i = 0; i < 5; i++)
        if (lt_alignment(ptr[i]) < ((algo.data[1] >> (9 * i)) & 511u)) {
            fprintf(stderr, "emu: cublasLtMatmul: operand %d at %p is less aligned than its algorithm needs (%u)\n", i,
                    ptr[i], (unsigned)((algo.data[1] >> (9 * i)) & 511u));
            return CUBLAS_STATUS_INVALID_VALUE;
        }
    if (d.epi == CUBLASLT_EPILOGUE_BIAS && !d.bias) return CUBLAS_STATUS_INVALID_VALUE;
    if (!run) return CUBLAS_STATUS_SUCCESS;
    host_waits();
    float *out = (float *)D;
    if (beta != 0.0f && C != D)
        for (uint64_t j = 0; j < n; j++) memmove(out + j * ld.ld, (const float *)C + j * lc.ld, m * sizeof(float));
    int fast = d.compute == CUBLAS_COMPUTE_32F_FAST_16BF;
    std::vector<float> a, b;
    const float *fa = gemm_ex_operand(a, A, la.type, (int)la.rows, (int)la.cols, (int)la.ld, fast);
    const float *fb = gemm_ex_operand(b, B, lb.type, (int)lb.rows, (int)lb.cols, (int)lb.ld, fast);
    cublasStatus_t s = sgemm(d.ta ? CUBLAS_OP_T : CUBLAS_OP_N, d.tb ? CUBLAS_OP_T : CUBLAS_OP_N, (int)m, (int)n, (int)k,
                             alpha, fa, (int)la.ld, fb, (int)lb.ld, beta, out, (int)ld.ld);
    if (s || d.epi != CUBLASLT_EPILOGUE_BIAS) return s;
    const float *bias = (const float *)d.bias;
    for (uint64_t j = 0; j < n; j++)
        for (uint64_t i = 0; i < m; i++) out[j * ld.ld + i] += bias[i];
    return CUBLAS_STATUS_SUCCESS;
}
// while capturing, the descriptors as they are now (a GPU bakes them into the captured kernel), the operands at replay
cublasStatus_t cublasLtMatmul(cublasLtHandle_t, cublasLtMatmulDesc_t d, const void *alpha, const void *A,
                              cublasLtMatrixLayout_t la, const void *B, cublasLtMatrixLayout_t lb, const void *beta,
                              const void *C, cublasLtMatrixLayout_t lc, void *D, cublasLtMatrixLayout_t ld,
                              const cublasLtMatmulAlgo_t *algo, void *, size_t, cudaStream_t)
{
    EmuLtDesc dv = *d;
    EmuLtLayout a = *la, b = *lb, c = *lc, dd = *ld;
    cublasLtMatmulAlgo_t al = *algo;
    float a_ = *(const float *)alpha, b_ = *(const float *)beta;
    if (emu_capturing) {
        cublasStatus_t s = lt_matmul(dv, a_, A, a, B, b, b_, C, c, D, dd, al, false);
        if (!s) emu_record([=]() { lt_matmul(dv, a_, A, a, B, b, b_, C, c, D, dd, al, true); });
        return s;
    }
    return lt_matmul(dv, a_, A, a, B, b, b_, C, c, D, dd, al, true);
}
