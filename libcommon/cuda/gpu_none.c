// gpu_none: the CUDA backend's stand-in for a build without CUDA (the default `make`): gpu_init says this build has
// no CUDA backend, and the device functions fail. The ops of gpu.h exist only in a CUDA=1 build; this file defines
// none of them, so code that calls an op must be built with CUDA=1 (a link error otherwise, never a silent no-op).
#include <string.h>

#include "backend.h"
#include "gpu.h"
#include "util.h"

const Backend *backend_cuda(char *err)
{
    err_set(err, "this build has no CUDA backend (rebuild with make CUDA=1)");
    return NULL;
}

static char none_err[] = "gpu: this build has no CUDA backend (rebuild with make CUDA=1)";

GpuStatus gpu_init(int device, char *err)
{
    (void)device;
    strcpy(err, "this build has no CUDA backend (rebuild with make CUDA=1)");
    return GPU_NOT_BUILT;
}
void gpu_shutdown(void) {}
const char *gpu_name(void) { return ""; }
const char *gpu_driver_version(void) { return ""; }
const char *gpu_runtime_version(void) { return ""; }
size_t gpu_smem_optin(void) { return 0; }
const char *backend_cuda_attention(int head_size, int precision)
{
    (void)head_size, (void)precision;
    return "none (no CUDA backend)";
}
int gpu_mem_info(size_t *free_bytes, size_t *total_bytes)
{
    *free_bytes = *total_bytes = 0;
    return -1;
}
void gpu_mem_allocated(size_t *now, size_t *peak) { *now = *peak = 0; }
void gpu_mem_peak_reset(void) {}
void gpu_workspace_fill(int byte) { (void)byte; }
void gpu_set_precision(int precision) { (void)precision; }
void gpu_profile_reset(void) {}
void gpu_profile_print(FILE *f) { (void)f; }
int gpu_sync(void) { return -1; }
const char *gpu_error(void) { return none_err; }
void gpu_clear_error(void) {}
void *gpu_alloc(size_t bytes)
{
    (void)bytes;
    return NULL;
}
void gpu_free(void *p) { (void)p; }
void gpu_dry_begin(void) {}
size_t gpu_dry_end(void) { return 0; }
int gpu_reserve(void) { return -1; }
long gpu_mem_allocs(void) { return 0; }
long gpu_lt_runs(void) { return 0; }
long gpu_fresh_taken(void) { return 0; }
int gpu_upload(void *dst, const void *src_host, size_t bytes)
{
    (void)dst, (void)src_host, (void)bytes;
    return -1;
}
int gpu_download(void *dst_host, const void *src, size_t bytes)
{
    (void)dst_host, (void)src, (void)bytes;
    return -1;
}
void gpu_zero(void *p, size_t bytes) { (void)p, (void)bytes; }
