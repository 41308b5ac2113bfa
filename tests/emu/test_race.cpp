// test_race CASE: one small kernel, run by the emulator built for the race check (EMU_RACE, ThreadSanitizer; see
// tests/emu/cuda_emu.cpp). Some cases have a race a GPU could show and the emulator's thread order hides, some have
// none; tests/emu/test_race.sh runs each and expects ThreadSanitizer's report (exit 66) or none (exit 0). So the
// check is shown to find what it is for (a missing barrier, blocks sharing a word) and to stay quiet on what a GPU
// orders (barriers, the launch, a block's fresh shared memory, acquire and release between blocks). Three cases
// are the emulator's other checks of what a GPU refuses: optin, ldm and ldm-misaligned (abort: exit 134).
#include "cuda_emu.h"

#include <stdio.h>
#include <stdlib.h>

#include "cuda/gpu_mma.cuh"

#define N_BLOCKS 4
#define THREADS 64

// (no templates with __shared__ arrays: g++ would not put them in the emulator's section, cuda_emu.h)
// thread 0 writes, the block reads after a barrier (or without one: a race)
__global__ static void publish_k(float *out, bool barrier)
{
    __shared__ float v;
    if (threadIdx.x == 0) v = (float)blockIdx.x;
    if (barrier) __syncthreads();
    out[blockIdx.x * blockDim.x + threadIdx.x] = v;
}
// lane 0 writes, lane 1 reads: ordered by __syncwarp, not by a shuffle (a race)
__global__ static void lanes_k(float *out, bool syncwarp)
{
    __shared__ float v[THREADS];
    v[threadIdx.x] = (float)threadIdx.x;
    if (syncwarp) __syncwarp();
    else (void)__shfl_sync(0xffffffffu, 0.0f, 0);
    out[blockIdx.x * blockDim.x + threadIdx.x] = v[threadIdx.x ^ 1];
}
// each block its own word, or every block the same one (a race between blocks)
__global__ static void blocks_k(float *out, bool shared)
{
    if (threadIdx.x == 0) out[shared ? 0 : blockIdx.x] = (float)blockIdx.x;
}
// every block writes the same shared memory, static and dynamic: one block's, fresh for each (no race)
__global__ static void smem_k(float *out)
{
    __shared__ float s[THREADS];
    DYN_SMEM(d);
    s[threadIdx.x] = d[threadIdx.x] = (float)blockIdx.x;
    __syncthreads();
    out[blockIdx.x * blockDim.x + threadIdx.x] = s[THREADS - 1 - threadIdx.x] + d[THREADS - 1 - threadIdx.x];
}
// static shared memory read before the block writes it: NaN, whatever the block before left there
__global__ static void stale_k(float *out)
{
    __shared__ float s[THREADS];
    out[blockIdx.x * blockDim.x + threadIdx.x] = s[threadIdx.x];
    __syncthreads();
    s[threadIdx.x] = 1.0f;
}
// blocks that live at once (grid_sync): block 0 writes, then releases a count; block 1 waits for it with an acquire
// and reads (or reads without waiting: a race)
static unsigned count;
__global__ static void handoff_k(float *out, bool wait)
{
    if (blockIdx.x == 0) {
        if (threadIdx.x == 0) out[0] = 42.0f;
        __syncthreads();
        if (threadIdx.x == 0) atomicAdd(&count, 1u);
    } else {
        if (threadIdx.x == 0 && wait)
            while (emu_load_acquire(&count) < 1u) emu_grid_yield();
        __syncthreads();
        out[1 + threadIdx.x] = out[0];
    }
}

// dependent launches (emu_run's pdl): produce_k writes a[i] and reads b[i]; consume_k, launched after it as a
// dependent launch, lets the next start (emu_pdl_release), then reads another thread's a[j] after its emu_pdl_wait
// (no race), or before it (a race: the kernel before may still run), or writes b[j] before it (a race)
enum { AFTER_WAIT, READ_EARLY, WRITE_EARLY };
__global__ static void produce_k(float *a, const float *b, float *out)
{
    emu_pdl_release();
    int i = (int)(blockIdx.x * blockDim.x + threadIdx.x);
    a[i] = 1.0f + b[i];
    out[i] = 0.0f;
}
__global__ static void consume_k(const float *a, float *b, float *out, int mode)
{
    emu_pdl_release();
    int n = (int)(gridDim.x * blockDim.x), i = (int)(blockIdx.x * blockDim.x + threadIdx.x), j = (i + 1) % n;
    float v = 0.0f;
    if (mode == READ_EARLY) v = a[j];
    if (mode == WRITE_EARLY) b[j] = 2.0f;
    emu_pdl_wait();
    if (mode == AFTER_WAIT) v = a[j];
    out[i] = v;
}

// (the emulator's ldmatrix check, not a race) a warp's ldmatrix over four 8 x 8 tiles of bf16, row l of the 32 at
// lane l's address, the value 8 row + column; shifted by `shift` elements (2 bytes each), not 16-byte aligned
__global__ static void ldm_k(float *out, int shift)
{
    __shared__ float4 raw[32 + 1]; // (16-byte aligned) 32 rows of 8 bf16 (16 bytes), and room for the shift
    __nv_bfloat16 *tile = (__nv_bfloat16 *)raw;
    const int l = (int)threadIdx.x;
    for (int c = 0; c < 8; c++) tile[l * 8 + c] = __float2bfloat16_rn((float)(8 * l + c));
    __syncwarp();
    uint32_t r[4];
    mma_ldm<false>(r, tile + l * 8 + shift);
    for (int j = 0; j < 4; j++) out[4 * l + j] = mma_lo(r[j]);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_race CASE\n");
        return 2;
    }
    float *out, *a, *b;
    const size_t n = N_BLOCKS * THREADS;
    if (cudaMalloc(&out, sizeof(float) * n) != cudaSuccess || cudaMalloc(&a, sizeof(float) * n) != cudaSuccess ||
        cudaMalloc(&b, sizeof(float) * n) != cudaSuccess)
        return 1;
    const char *c = argv[1];
    int ok = 1;
    // the host reads what a kernel wrote only after waiting for it, as on a GPU (the race check orders it there)
#define HOST_WAITS() cudaStreamSynchronize(NULL)
    if (!strcmp(c, "barrier")) LAUNCH(publish_k, N_BLOCKS, THREADS)(out, true);
    else if (!strcmp(c, "no-barrier")) LAUNCH(publish_k, N_BLOCKS, THREADS)(out, false);
    else if (!strcmp(c, "syncwarp")) LAUNCH(lanes_k, N_BLOCKS, THREADS)(out, true);
    else if (!strcmp(c, "shuffle-only")) LAUNCH(lanes_k, N_BLOCKS, THREADS)(out, false);
    else if (!strcmp(c, "own-words")) LAUNCH(blocks_k, N_BLOCKS, THREADS)(out, false);
    else if (!strcmp(c, "one-word")) LAUNCH(blocks_k, N_BLOCKS, THREADS)(out, true);
    else if (!strcmp(c, "smem")) LAUNCH_SMEM(smem_k, N_BLOCKS, THREADS, THREADS * sizeof(float))(out);
    else if (!strcmp(c, "stale")) {
        LAUNCH(stale_k, N_BLOCKS, THREADS)(out);
        HOST_WAITS();
        for (int i = 0; i < N_BLOCKS * THREADS; i++) ok &= out[i] != out[i]; // NaN
    } else if (!strcmp(c, "acquire")) emu_launch(handoff_k, dim3(2), dim3(THREADS), 0, NULL, 1)(out, true);
    else if (!strcmp(c, "no-acquire")) emu_launch(handoff_k, dim3(2), dim3(THREADS), 0, NULL, 1)(out, false);
    else if (!strcmp(c, "ldm") || !strcmp(c, "ldm-misaligned")) {
        LAUNCH(ldm_k, 1, 32)(out, strcmp(c, "ldm") ? 4 : 0);
        HOST_WAITS();
        for (int l = 0; l < 32; l++) // register j of lane l: tile j's row l / 4, column 2 (l % 4)
            for (int j = 0; j < 4; j++) ok &= out[4 * l + j] == (float)(8 * (8 * j + l / 4) + 2 * (l % 4));
    } else if (!strcmp(c, "optin")) {
        // (the launch check's, not a race) over 48 KiB of dynamic shared memory only after cudaFuncSetAttribute, as
        // on a GPU; a launch refused does not run
        const size_t big = 64 << 10;
        for (int i = 0; i < N_BLOCKS * THREADS; i++) out[i] = -1.0f;
        LAUNCH_SMEM(smem_k, N_BLOCKS, THREADS, big)(out);
        ok &= cudaGetLastError() == cudaErrorInvalidValue && out[0] == -1.0f;
        ok &= cudaFuncSetAttribute(smem_k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)big) == cudaSuccess;
        LAUNCH_SMEM(smem_k, N_BLOCKS, THREADS, big)(out);
        HOST_WAITS();
        ok &= cudaGetLastError() == cudaSuccess && out[(N_BLOCKS - 1) * THREADS] == 2.0f * (N_BLOCKS - 1);
    } else if (!strncmp(c, "pdl-", 4) || !strcmp(c, "plain-early-read")) {
        // pdl-wait, pdl-early-read, pdl-early-write: produce_k, then consume_k as a dependent launch;
        // plain-early-read: consume_k reads early, launched plainly (after produce_k's end: no race); pdl-chain:
        // produce_k, then a dependent launch that waits, then one that reads early what produce_k wrote (a race:
        // the one in the middle let it start before its own wait, so produce_k may still run)
        int mode = strstr(c, "early-read") ? READ_EARLY : strstr(c, "early-write") ? WRITE_EARLY : AFTER_WAIT;
        int pdl = strncmp(c, "plain", 5) != 0;
        cudaMemsetAsync(b, 0, sizeof(float) * n, NULL);
        LAUNCH(produce_k, N_BLOCKS, THREADS)(a, b, out);
        if (!strcmp(c, "pdl-chain")) {
            emu_launch(consume_k, dim3(N_BLOCKS), dim3(THREADS), 0, NULL, 0, 1)(a, b, out, AFTER_WAIT);
            mode = READ_EARLY;
        }
        emu_launch(consume_k, dim3(N_BLOCKS), dim3(THREADS), 0, NULL, 0, pdl)(a, b, out, mode);
        HOST_WAITS();
        for (size_t i = 0; i < n; i++) ok &= out[i] == (mode == WRITE_EARLY ? 0.0f : 1.0f);
    } else {
        fprintf(stderr, "test_race: no case '%s'\n", c);
        return 2;
    }
    cudaFree(out), cudaFree(a), cudaFree(b);
    return ok ? 0 : 1;
}
