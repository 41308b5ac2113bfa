// gpu_backend: the CUDA backend's table (backend.h) over gpu.h's ops. Plain C, built with CUDA=1 (and by the CPU
// emulator's tests, tests/emu). Memory failures die in one line naming the size and the free memory; an op's own
// failure is kept by gpu.h and surfaces at the next sync (trainer_step syncs once per step) or copy.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "gpu.h"
#include "util.h"

static void *g_alloc(size_t bytes)
{
    void *p = gpu_alloc(bytes ? bytes : 1);
    if (!p) die("%s", gpu_error());
    gpu_zero(p, bytes);
    return p;
}
static void g_upload(void *dst, const void *src, size_t bytes)
{
    if (gpu_upload(dst, src, bytes) < 0) die("copy to the GPU: %s", gpu_error());
}
static void g_download(void *dst, const void *src, size_t bytes)
{
    if (gpu_download(dst, src, bytes) < 0) die("copy from the GPU: %s", gpu_error());
}
static int g_sync(char *err) { return gpu_sync() < 0 ? err_set(err, "gpu: %s", gpu_error()) : 0; }
static int g_reserve(char *err) { return gpu_reserve() < 0 ? err_set(err, "gpu: %s", gpu_error()) : 0; }
static uint64_t g_mem_free(const char **source)
{
    size_t free_b, total;
    if (source) *source = "the GPU's free memory";
    return gpu_mem_info(&free_b, &total) == 0 ? (uint64_t)free_b : 0;
}
// Attention: ops.h's, unfused (cuBLAS products, probs and mask stored: gpu_attention_*), or fused (tiles with an
// online softmax, one float saved per query row: gpu_attention_fused_*) for head sizes it takes. The CPU's scratch
// is not used: the GPU keeps its own workspace.
static int fused_attention; // HMT_GPU_ATTENTION=fused
static int fused_takes(int head_size) { return fused_attention && head_size <= GPU_ATTN_FUSED_HS_MAX; }
static int fused(const AttnDims *d) { return fused_takes(d->C / d->NH); }

const char *backend_cuda_attention(int head_size, int precision)
{
    if (!fused_takes(head_size)) return "gemm (cuBLAS products, probabilities stored)";
    return gpu_attention_tc_fits(head_size, precision, gpu_smem_optin()) ? "fused, on tensor cores"
                                                                         : "fused, float32 kernels";
}

static void g_attention_saves(const AttnDims *d, size_t *probs_floats, size_t *mask_bytes)
{
    if (!fused(d)) { // the probabilities; the dropout mask is drawn again in the backward (gpu.h)
        attention_saves_probs(d, probs_floats, mask_bytes);
        *mask_bytes = 0;
        return;
    }
    *probs_floats = (size_t)d->B * d->NH * d->Tq, *mask_bytes = 0;
}
static void g_attention_forward(float *out, float *probs, uint8_t *mask, float *scratch, const float *q, const float *k,
                                const float *v, const float *Er, const AttnDims *d)
{
    (void)scratch;
    if (fused(d)) gpu_attention_fused_forward(out, probs, q, k, v, Er, d);
    else gpu_attention_forward(out, probs, mask, q, k, v, Er, d);
}
static int g_attention_takes16(const AttnDims *d) { return fused(d) && gpu_attention_fused_takes16(d); }
static void g_attention_backward(float *dq, float *dk, float *dv, float *dEr, float *scratch, const float *dout,
                                 const float *out, const float *probs, const uint8_t *mask, const float *q,
                                 const float *k, const float *v, const float *Er, const AttnDims *d)
{
    (void)scratch;
    if (fused(d)) gpu_attention_fused_backward(dq, dk, dv, dEr, dout, out, probs, q, k, v, Er, d);
    else gpu_attention_backward(dq, dk, dv, dEr, dout, probs, mask, q, k, v, Er, d);
}

_Static_assert(PREC_FP32 == GPU_FP32 && PREC_TF32 == GPU_TF32 && PREC_BF16 == GPU_BF16, "one precision numbering");

static void g_residual_layernorm_forward(float *out, float *mean, float *rstd, float *res, uint8_t *mask,
                                         const float *x, const float *y, float p, SeedRef seed, const float *w,
                                         const float *b, int N, int C)
{
    gpu_residual_layernorm_forward(out, NULL, mean, rstd, res, mask, x, y, p, seed, w, b, N, C);
}

static void g_residual_layernorm_backward(float *dx, float *dy, float *dw, float *db, float *scratch,
                                          const float *dout, const float *res, const uint8_t *mask, float p,
                                          SeedRef seed, const float *w, const float *mean, const float *rstd, int N,
                                          int C)
{
    (void)scratch;
    gpu_residual_layernorm_backward(dx, dy, dw, db, dout, res, mask, p, seed, w, mean, rstd, N, C);
}

static const DecKernels dec_gpu = {
    .linear = gpu_dec_linear, .linear_qkv = gpu_dec_linear_qkv, .add_layernorm = gpu_dec_add_layernorm,
    .copy_rows = gpu_dec_copy_rows, .attend = gpu_dec_attend, .attend_scratch = gpu_dec_attend_scratch,
    .attend_proj = gpu_dec_attend_proj, .down = gpu_dec_down, .up_add = gpu_dec_up_add,
    .ln_linear = gpu_dec_ln_linear, .ln_linear_qkv = gpu_dec_ln_linear_qkv, .ln2_linear = gpu_dec_ln2_linear,
    .emb_linear_qkv = gpu_dec_emb_linear_qkv,
    .kernel_rows = gpu_dec_kernel_rows,
    .draw = gpu_dec_draw, .pdl = gpu_dec_pdl, .mega = gpu_dec_mega,
};

static const Backend backend_gpu = {
    .name = "cuda", .on_host = 0,
    .alloc = g_alloc, .free = gpu_free, .zero = gpu_zero, .fresh = gpu_fresh, .upload = g_upload,
    .download = g_download,
    .sync = g_sync, .device_name = gpu_name, .mem_free = g_mem_free,
    .encoder_forward = gpu_encoder_forward, .encoder_backward = gpu_encoder_backward,
    .linear_forward = gpu_linear_forward, .linear_backward = gpu_linear_backward,
    .layernorm_forward = gpu_layernorm_forward, .layernorm_backward = gpu_layernorm_backward,
    .residual_layernorm_forward = g_residual_layernorm_forward,
    .residual_layernorm_backward = g_residual_layernorm_backward,
    .add_forward = gpu_add_forward, .accumulate = gpu_accumulate,
    .dropout_forward = gpu_dropout_forward, .dropout_backward = gpu_dropout_backward,
    .relu_dropout_forward = gpu_relu_dropout_forward, .relu_dropout_backward = gpu_relu_dropout_backward,
    .attention_saves = g_attention_saves, .attention_forward = g_attention_forward,
    .attention_backward = g_attention_backward,
    .pad_forward = gpu_pad_forward, .pad_backward = gpu_pad_backward, .crop_forward = gpu_crop_forward,
    .crop_backward = gpu_crop_backward, .shift_forward = gpu_shift_forward, .shift_backward = gpu_shift_backward,
    .meanpool_forward = gpu_meanpool_forward, .meanpool_backward = gpu_meanpool_backward,
    .repeat_forward = gpu_repeat_forward, .repeat_backward = gpu_repeat_backward,
    .crossentropy_fused = gpu_crossentropy_fused_to,
    .score_rows = gpu_score_rows,
    .cosine_pairs_forward = gpu_cosine_pairs_forward_to, .cosine_pairs_backward = gpu_cosine_pairs_backward,
    .exp_cosine_forward = gpu_exp_cosine_forward_to, .exp_cosine_backward = gpu_exp_cosine_backward,
    .clip_grad_norm = gpu_clip_grad_norm_to, .adam_apply = gpu_adam_apply, .host_alloc = gpu_host_alloc,
    .host_free = gpu_host_free, .copy_async = gpu_copy_async, .graph_begin = gpu_graph_begin, .graph_end = gpu_graph_end,
    .graph_launch = gpu_graph_launch, .graph_free = gpu_graph_free, .dry_begin = gpu_dry_begin, .dry_end = gpu_dry_end,
    .reserve = g_reserve, .dec = &dec_gpu, .set_precision = gpu_set_precision,
    .act16 = gpu_act16, .relu_dropout_forward16 = gpu_relu_dropout_forward16,
    .relu_dropout_backward16 = gpu_relu_dropout_backward16, .linear_forward16 = gpu_linear_forward16,
    .linear_backward16 = gpu_linear_backward16, .linear_backward_g16 = gpu_linear_backward_g16,
    .to_bf16 = gpu_to_bf16, .residual_layernorm_forward16 = gpu_residual_layernorm_forward,
    .attention_takes16 = g_attention_takes16,
    .attention_forward16 = gpu_attention_fused_forward16, .attention_backward16 = gpu_attention_fused_backward16,
};

const Backend *backend_cuda(char *err)
{
    const char *att = getenv("HMT_GPU_ATTENTION");
    if (att && *att && strcmp(att, "fused") != 0 && strcmp(att, "gemm") != 0)
        return err_set(err, "HMT_GPU_ATTENTION=%s: expected fused or gemm", att), NULL;
    fused_attention = att && strcmp(att, "fused") == 0;
    char gerr[ERR_MAX];
    if (gpu_init(0, gerr) != GPU_OK) {
        err_set(err, "%s", gerr);
        return NULL;
    }
    return &backend_gpu;
}
