// backend: the CPU's table (see backend.h); the CUDA table is in libcommon/cuda (backend_get finds it).
#include "backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static void *cpu_alloc(size_t bytes) { return xcalloc(1, bytes ? bytes : 1); }
static void cpu_free(void *p) { free(p); }
static void cpu_zero(void *p, size_t bytes) { memset(p, 0, bytes); }
static void cpu_copy(void *dst, const void *src, size_t bytes)
{
    if (dst != src) memcpy(dst, src, bytes);
}
static int cpu_sync(char *err)
{
    (void)err;
    return 0;
}
static const char *cpu_name(void)
{
    static char name[128];
    if (name[0]) return name;
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[256];
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "model name", 10) == 0 && strchr(line, ':')) {
            snprintf(name, sizeof name, "%s", strchr(line, ':') + 2);
            name[strcspn(name, "\n")] = 0;
            break;
        }
    if (f) fclose(f);
    if (!name[0]) snprintf(name, sizeof name, "unknown CPU");
    return name;
}

static void cpu_encoder_backward(float *dwte, const float *dout, const int32_t *tok, int B, int T, int C, int V)
{
    (void)V;
    encoder_backward(dwte, dout, tok, B, T, C);
}

// probs and mask (B, NH, Tq, Tk), as ops.h
void attention_saves_probs(const AttnDims *d, size_t *probs_floats, size_t *mask_bytes)
{
    *probs_floats = *mask_bytes = (size_t)d->B * d->NH * d->Tq * d->Tk;
}
static void cpu_attention_backward(float *dq, float *dk, float *dv, float *dEr, float *scratch, const float *dout,
                                   const float *out, const float *probs, const uint8_t *mask, const float *q,
                                   const float *k, const float *v, const float *Er, const AttnDims *d)
{
    (void)out;
    attention_backward(dq, dk, dv, dEr, scratch, dout, probs, mask, q, k, v, Er, d);
}

// no graphs: the ops run as they are called, copies at once
static void *cpu_host_alloc(size_t bytes) { return calloc(1, bytes ? bytes : 1); }
static void cpu_copy_async(void *dst, const void *src, size_t bytes, int to_device)
{
    (void)to_device;
    memcpy(dst, src, bytes);
}
static int cpu_graph_begin(void) { return 0; }
static void *cpu_graph_end(void) { return NULL; }
static int cpu_graph_launch(void *graph) { return (void)graph, -1; }
static void cpu_graph_free(void *graph) { (void)graph; }

// the seeds read now: their base is host memory here
static void cpu_residual_layernorm_forward(float *out, float *mean, float *rstd, float *res, uint8_t *mask,
                                           const float *x, const float *y, float p, SeedRef seed, const float *w,
                                           const float *b, int N, int C)
{
    residual_layernorm_forward(out, mean, rstd, res, mask, x, y, p, seed_get(seed), w, b, N, C);
}
static void cpu_residual_layernorm_backward(float *dx, float *dy, float *dw, float *db, float *scratch,
                                            const float *dout, const float *res, const uint8_t *mask, float p,
                                            SeedRef seed, const float *w, const float *mean, const float *rstd, int N,
                                            int C)
{
    residual_layernorm_backward(dx, dy, dw, db, scratch, dout, res, mask, p, seed_get(seed), w, mean, rstd, N, C);
}
static void cpu_dropout_forward(float *out, uint8_t *mask, const float *inp, float p, SeedRef seed, size_t n)
{
    dropout_forward(out, mask, inp, p, seed_get(seed), n);
}
static void cpu_relu_dropout_forward(float *out, uint8_t *mask, const float *inp, float p, SeedRef seed, size_t n)
{
    relu_dropout_forward(out, mask, inp, p, seed_get(seed), n);
}

// the losses and the norm into memory the caller names (the host's, for the CPU)
static void cpu_crossentropy_fused(float *dlogits, double *loss, const float *logits, const int32_t *targets, int N,
                                   int V, float scale)
{
    int n_valid;
    *loss = crossentropy_fused(dlogits, logits, targets, N, V, scale, &n_valid);
}
static void cpu_cosine_pairs_forward(double *sum, const float *h, int B, int T, int C)
{
    long n_pairs;
    *sum = cosine_pairs_forward(h, B, T, C, &n_pairs);
}
static void cpu_exp_cosine_forward(double *sum, const float *h, int B, int T, int C)
{
    *sum = exp_cosine_forward(h, B, T, C);
}
static void cpu_clip_grad_norm(double *norm, float *g, size_t n, double max_norm)
{
    *norm = clip_grad_norm(g, n, max_norm);
}

const Backend backend_cpu = {
    .name = "cpu", .on_host = 1,
    .alloc = cpu_alloc, .free = cpu_free, .zero = cpu_zero, .fresh = cpu_zero, .upload = cpu_copy,
    .download = cpu_copy,
    .sync = cpu_sync, .device_name = cpu_name, .mem_free = mem_available,
    .encoder_forward = encoder_forward, .encoder_backward = cpu_encoder_backward,
    .linear_forward = linear_forward, .linear_backward = linear_backward,
    .layernorm_forward = layernorm_forward, .layernorm_backward = layernorm_backward,
    .residual_layernorm_forward = cpu_residual_layernorm_forward,
    .residual_layernorm_backward = cpu_residual_layernorm_backward,
    .add_forward = add_forward, .accumulate = accumulate,
    .dropout_forward = cpu_dropout_forward, .dropout_backward = dropout_backward,
    .relu_dropout_forward = cpu_relu_dropout_forward, .relu_dropout_backward = relu_dropout_backward,
    .attention_saves = attention_saves_probs, .attention_forward = attention_forward,
    .attention_backward = cpu_attention_backward,
    .pad_forward = pad_forward, .pad_backward = pad_backward, .crop_forward = crop_forward,
    .crop_backward = crop_backward, .shift_forward = shift_forward, .shift_backward = shift_backward,
    .meanpool_forward = meanpool_forward, .meanpool_backward = meanpool_backward,
    .repeat_forward = repeat_forward, .repeat_backward = repeat_backward,
    .crossentropy_fused = cpu_crossentropy_fused,
    .score_rows = score_rows,
    .cosine_pairs_forward = cpu_cosine_pairs_forward, .cosine_pairs_backward = cosine_pairs_backward,
    .exp_cosine_forward = cpu_exp_cosine_forward, .exp_cosine_backward = exp_cosine_backward,
    .clip_grad_norm = cpu_clip_grad_norm, .adam_apply = adam_apply,
    .host_alloc = cpu_host_alloc, .host_free = free, .copy_async = cpu_copy_async, .graph_begin = cpu_graph_begin,
    .graph_end = cpu_graph_end, .graph_launch = cpu_graph_launch, .graph_free = cpu_graph_free,
};


static const char *const prec_names[] = {"fp32", "tf32", "bf16"};
const char *precision_name(int precision)
{
    return precision >= 0 && precision <= PREC_BF16 ? prec_names[precision] : "?";
}
int precision_parse(const char *name)
{
    for (int p = 0; p <= PREC_BF16; p++)
        if (strcmp(name, prec_names[p]) == 0) return p;
    return -1;
}

const Backend *backend_get(const char *name, char *err)
{
    if (strcmp(name, "cpu") == 0) return &backend_cpu;
    if (strcmp(name, "cuda") == 0) return backend_cuda(err);
    err_set(err, "unknown device '%s' (cpu or cuda)", name);
    return NULL;
}

