// backend: where the model's tensors live and which code runs its ops. The CPU (ops.c and optim.c, the reference)
// or, in a `make CUDA=1` build on a machine with a GPU, CUDA (gpu.h). hg.c and trainer.c call every op through one
// of these tables, so the model's structure (parameter table, activation plan, forward and backward order) is
// written once. Pointers an op takes are the backend's memory (host memory for the CPU, device memory for CUDA);
// tokens and targets too. Arguments are ops.h's, op for op (outputs first, backward accumulates); attention takes
// the CPU's scratch, which CUDA ignores (it keeps its own workspace). Owns no file format.
#ifndef BACKEND_H
#define BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "ops.h"
#include "optim.h"

// decode.c's kernels on a backend's memory (gpu.h's gpu_dec_*, argument for argument). The CPU has none here:
// decode.c runs its own row loops and OpenBLAS calls there.
typedef struct DecKernels {
    // the products take float32 weights w, or bfloat16 ones w16 when that is not NULL (DecOpts.bf16; gpu.h)
    void (*linear)(float *out, const float *x, const float *w, const uint16_t *w16, const float *b, int N, int IC,
                   int OC, int relu);
    void (*linear_qkv)(float *out, const float *x, const float *w, const uint16_t *w16, const float *b, int N, int C,
                       float *k, float *v, size_t cs, int n_new);
    void (*add_layernorm)(float *out, const float *a, const float *b, const float *w, const float *bias, int N, int C);
    void (*copy_rows)(float *dst, size_t dstride, size_t dpitch, const float *src, size_t sstride, size_t spitch,
                      int nb, int rows, int width);
    void (*attend)(float *out, float *scratch, const float *q, int ldq, const float *k, const float *v, int cap,
                   const float *ers, int B, int NH, int C, int n, int p0, int Tk, int keys, int s);
    size_t (*attend_scratch)(int B, int NH, int C, int n, int Tk); // floats of attend's scratch
    void (*attend_proj)(float *proj, float *att, float *scratch, const float *q, int ldq, const float *k,
                        const float *v, int cap, const float *ers, int B, int NH, int C, int n, int p0, int Tk,
                        int keys, int s, const float *w, const uint16_t *w16, const float *bias);
    void (*down)(float *out, const float *h, int B, int cap, int C, int s, int i0, int n_s, int mean);
    void (*up_add)(float *u, const float *up, const float *h, int B, int n, int p0, int cap, int cap_s, int C, int s,
                   int lin);
    // add_layernorm into ln_out, then linear on it, in one launch where it can (gpu.h gpu_dec_ln_linear)
    void (*ln_linear)(float *out, float *ln_out, const float *a, const float *b, const float *lw, const float *lb,
                      const float *w, const uint16_t *w16, const float *bias, int N, int C, int OC, int relu);
    void (*ln_linear_qkv)(float *out, float *ln_out, const float *a, const float *b, const float *lw,
                          const float *lb, const float *w, const uint16_t *w16, const float *bias, int N, int C,
                          float *k, float *v, size_t cs, int n_new);
    // the embedding then a first layer's linear_qkv, in one launch where it can (gpu.h gpu_dec_emb_linear_qkv)
    void (*emb_linear_qkv)(float *out, float *x, const int32_t *tok, const float *wte, const float *pe, int B, int T,
                           int C, const float *w, const uint16_t *w16, const float *bias, float *k, float *v,
                           size_t cs);
    // two LayerNorms then linear, in one launch where it can (gpu.h gpu_dec_ln2_linear)
    void (*ln2_linear)(float *out, float *ln_out, float *ln2_out, const float *a, const float *b, const float *lw,
                       const float *lb, const float *lw2, const float *lb2, const float *w, const uint16_t *w16,
                       const float *bias, int N, int C, int OC);
    int (*kernel_rows)(void); // the most rows linear takes without cuBLAS (float32 weights)
    // the sampler's draw on the device (gpu.h gpu_dec_draw)
    void (*draw)(int32_t *tok, const float *logits, int B, int V, const uint32_t *mask, const uint64_t *keys,
                 const uint64_t *index, const double *opts);
    void (*pdl)(int on); // these kernels as programmatic dependent launches from the next one on (gpu.h gpu_dec_pdl)
    void (*mega)(int on); // 1: these kernels recorded and run as one launch; 0: that launch now (gpu.h gpu_dec_mega)
} DecKernels;

typedef struct Backend {
    const char *name; // "cpu", "cuda"
    int on_host;      // its memory is the host's: copies are plain memcpy, and a pointer may be read directly
    // memory: alloc returns zeroed memory or dies in one line naming the size
    void *(*alloc)(size_t bytes);
    void (*free)(void *p);
    void (*zero)(void *p, size_t bytes);
    // zero for a range that the next op adds to: to every reader it is zeros, but the next op may write it without
    // reading it (the CUDA backend's linear, residual LayerNorm and gemm attention backwards, the bytes they make on
    // zeros; the CPU zeroes it)
    void (*fresh)(void *p, size_t bytes);
    void (*upload)(void *dst, const void *src_host, size_t bytes);
    void (*download)(void *dst_host, const void *src, size_t bytes);
    // waits for the queued ops; 0, or -1 with err naming the first failed op (the CPU never fails)
    int (*sync)(char *err);
    // the processor's model name ("AMD EPYC 9654 96-Core Processor", "NVIDIA H100 80GB HBM3")
    const char *(*device_name)(void);
    // bytes the process may still allocate there; *source says what tells (util.h mem_available for the CPU)
    uint64_t (*mem_free)(const char **source);
    // ops.h
    void (*encoder_forward)(float *out, const int32_t *tok, const float *wte, const float *pe, int B, int T, int C);
    void (*encoder_backward)(float *dwte, const float *dout, const int32_t *tok, int B, int T, int C, int V);
    void (*linear_forward)(float *out, const float *inp, const float *w, const float *b, int N, int IC, int OC);
    void (*linear_backward)(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                            int N, int IC, int OC);
    void (*layernorm_forward)(float *out, float *mean, float *rstd, const float *inp, const float *w, const float *b,
                              int N, int C);
    void (*layernorm_backward)(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                               const float *mean, const float *rstd, int N, int C);
    // the model's "x = LayerNorm(x + dropout(y))", fused: res = x + dropout(y) (mask saved; dropout_forward's stream
    // for (p, seed)), out = LayerNorm(res); the bytes of dropout_forward, add_forward and layernorm_forward. Backward:
    // g = LayerNorm's dinp of dout (dw, db accumulated), dx += g, dy += dropout_backward(g); scratch: N*C floats
    // for the CPU's g (CUDA keeps g in registers and ignores it). mask NULL in both: not kept (ops.h), the backward
    // draws the bits again from (p, seed)
    void (*residual_layernorm_forward)(float *out, float *mean, float *rstd, float *res, uint8_t *mask, const float *x,
                                       const float *y, float p, SeedRef seed, const float *w, const float *b, int N,
                                       int C);
    void (*residual_layernorm_backward)(float *dx, float *dy, float *dw, float *db, float *scratch, const float *dout,
                                        const float *res, const uint8_t *mask, float p, SeedRef seed, const float *w,
                                        const float *mean, const float *rstd, int N, int C);
    void (*add_forward)(float *out, const float *a, const float *b, size_t n);
    void (*accumulate)(float *dst, const float *src, size_t n);
    // dropout seeds are SeedRefs (ops.h) with base in the backend's memory
    void (*dropout_forward)(float *out, uint8_t *mask, const float *inp, float p, SeedRef seed, size_t n);
    void (*dropout_backward)(float *dinp, const float *dout, const uint8_t *mask, float p, size_t n);
    void (*relu_dropout_forward)(float *out, uint8_t *mask, const float *inp, float p, SeedRef seed, size_t n);
    void (*relu_dropout_backward)(float *dinp, const float *dout, const float *out, float p, size_t n);
    // d->n_keys is the backend's memory too. What the forward saves for the backward is the backend's: probs and
    // mask as ops.h, or (fused attention) one float per query row in probs and no mask; attention_saves says how
    // much. The backward also takes the forward's out (ops.c ignores it).
    void (*attention_saves)(const AttnDims *d, size_t *probs_floats, size_t *mask_bytes);
    void (*attention_forward)(float *out, float *probs, uint8_t *mask, float *scratch, const float *q, const float *k,
                              const float *v, const float *Er, const AttnDims *d);
    void (*attention_backward)(float *dq, float *dk, float *dv, float *dEr, float *scratch, const float *dout,
                               const float *out, const float *probs, const uint8_t *mask, const float *q,
                               const float *k, const float *v, const float *Er, const AttnDims *d);
    void (*pad_forward)(float *out, const float *inp, int B, int T, int Tp, int C);
    void (*pad_backward)(float *dinp, const float *dout, int B, int T, int Tp, int C);
    void (*crop_forward)(float *out, const float *inp, int B, int Tp, int T, int C);
    void (*crop_backward)(float *dinp, const float *dout, int B, int Tp, int T, int C);
    void (*shift_forward)(float *out, const float *inp, int B, int T, int C, int K);
    void (*shift_backward)(float *dinp, const float *dout, int B, int T, int C, int K);
    void (*meanpool_forward)(float *out, const float *inp, int B, int T, int C, int K);
    void (*meanpool_backward)(float *dinp, const float *dout, int B, int T, int C, int K);
    void (*repeat_forward)(float *out, const float *inp, int B, int T, int C, int K);
    void (*repeat_backward)(float *dinp, const float *dout, int B, int T, int C, int K);
    // losses and the optimizer, their values left in the backend's memory (nothing waits for a GPU: the trainer
    // reads them once per step). Cross-entropy without probs: dlogits = scale * (softmax - onehot) / n_valid on
    // non-PAD rows, 0 on PAD rows (written, not accumulated), the bytes of ops.h's crossentropy_forward + backward
    // into zeros; *loss = the float mean loss ops.h's crossentropy_fused returns, as a double
    void (*crossentropy_fused)(float *dlogits, double *loss, const float *logits, const int32_t *targets, int N, int V,
                               float scale);
    // ops.h's score_rows, into the backend's memory (evaluate.c's scoring: on a GPU the rows' numbers come home,
    // not their logits)
    void (*score_rows)(double *nll, int32_t *best, const float *logits, const int32_t *targets, int N, int V);
    // *sum = ops.h's cosine_pairs_forward (its B * (T/2) pairs) / exp_cosine_forward
    void (*cosine_pairs_forward)(double *sum, const float *h, int B, int T, int C);
    void (*cosine_pairs_backward)(float *dh, const float *h, int B, int T, int C, float scale);
    void (*exp_cosine_forward)(double *sum, const float *h, int B, int T, int C);
    void (*exp_cosine_backward)(float *dh, const float *h, int B, int T, int C, float scale);
    // optim.h: *norm = clip_grad_norm's return; adam_apply with k and guard in the backend's memory
    void (*clip_grad_norm)(double *norm, float *g, size_t n, double max_norm);
    void (*adam_apply)(float *w, const float *g, float *m, float *v, size_t n, const AdamParams *p, const AdamStep *k,
                       const double *guard, int n_guard);
    // graphs of ops (gpu.h): begin (1 capturing, 0 not: run the ops directly), end (NULL: failed, error kept),
    // launch (0; -1: error kept; 1: stale, nothing launched: capture again), free; the CPU has none (begin returns
    // 0). Host memory for the copies a graph holds (page-locked on a GPU; NULL when there is none to be had), and
    // such a copy in the ops' order (to_device 1: host to backend), which the CPU does at once
    void *(*host_alloc)(size_t bytes);
    void (*host_free)(void *p);
    void (*copy_async)(void *dst, const void *src, size_t bytes, int to_device);
    int (*graph_begin)(void);
    void *(*graph_end)(void);
    int (*graph_launch)(void *graph);
    void (*graph_free)(void *graph);
    // one allocation per run (gpu.h gpu_dry_begin): dry_begin starts a dry run (alloc hands out addresses no memory
    // backs, ops run nothing), dry_end ends it with the bytes of one block for what it allocated, reserve allocates
    // that block, from which later allocs are carved (0, or -1 with err naming size and free memory); NULL: the CPU
    void (*dry_begin)(void);
    size_t (*dry_end)(void);
    int (*reserve)(char *err);
    const DecKernels *dec;      // NULL: the CPU
    void (*set_precision)(int precision); // PREC_* for the matmuls from the next op (NULL: the CPU, always float32)
    // bfloat16 activations (gpu.h gpu_act16; NULL: the CPU, which has none): act16 says whether hg_alloc keeps the
    // feed-forward's hidden activation (and more: to_bf16 below) as bfloat16 under the precision now set; the ops
    // that write and read it (relu_dropout_backward16 writes linear1's output gradient as bfloat16 and its bias's
    // gradient, which linear_backward_g16's products then take)
    int (*act16)(void);
    void (*relu_dropout_forward16)(uint16_t *out16, const float *inp, float p, SeedRef seed, size_t n);
    void (*relu_dropout_backward16)(uint16_t *dinp16, float *db, const float *dout, const uint16_t *out16, float p,
                                    int N, int C);
    void (*linear_forward16)(float *out, const uint16_t *inp16, const float *w, const float *b, int N, int IC, int OC);
    void (*linear_backward16)(float *dinp, float *dw, float *db, const float *dout, const uint16_t *inp16,
                              const float *w, int N, int IC, int OC);
    void (*linear_backward_g16)(float *dinp, float *dw, const uint16_t *dout16, const float *inp,
                                const uint16_t *inp16, const float *w, int N, int IC, int OC);
    // dst = src as bfloat16, rounded to nearest even: decode.c's bfloat16 weights, and under act16 what hg_alloc
    // keeps as bfloat16, rounded once from the float32 that the forward's ops make (and then read from scratch):
    // where attention_takes16 says the attention takes them (gpu.h gpu_attention_fused_takes16: the fused attention
    // on tensor cores), q, k and v. attention_forward16 and _backward16 are attention_forward's and _backward's on
    // them, with probs (one float a query row) and no mask. LayerNorm 1's output (linear1's products take it as
    // linear_forward16 and linear_backward_g16's inp16) and a layer's input after a block's first come as bfloat16
    // from residual_layernorm_forward16 below: to_bf16's bytes without reading the float32 again
    void (*to_bf16)(uint16_t *dst, const float *src, size_t n);
    // residual_layernorm_forward that also writes out as bfloat16 to out16: to_bf16's bytes of out, in the same pass
    // (LayerNorm 1's ln16, and a layer's output that the next layer of the block keeps as its x16)
    void (*residual_layernorm_forward16)(float *out, uint16_t *out16, float *mean, float *rstd, float *res,
                                         uint8_t *mask, const float *x, const float *y, float p, SeedRef seed,
                                         const float *w, const float *b, int N, int C);
    int (*attention_takes16)(const AttnDims *d);
    void (*attention_forward16)(float *out, float *probs, const uint16_t *q, const uint16_t *k, const uint16_t *v,
                                const float *Er, const AttnDims *d);
    void (*attention_backward16)(float *dq, float *dk, float *dv, float *dEr, const float *dout, const float *out,
                                 const float *probs, const uint16_t *q, const uint16_t *k, const uint16_t *v,
                                 const float *Er, const AttnDims *d);
} Backend;

// The matmuls' precision on a GPU (gpu.h's GPU_FP32, GPU_TF32, GPU_BF16): float32 as the CPU; TF32; bfloat16
// inputs to the linear layers' products with float32 sums. The CPU always computes in float32.
enum { PREC_FP32 = 0, PREC_TF32 = 1, PREC_BF16 = 2 };
// "fp32", "tf32", "bf16"; precision_parse returns -1 for anything else
const char *precision_name(int precision);
int precision_parse(const char *name);

// The CPU: ops.c and optim.c.
extern const Backend backend_cpu;
// attention_saves of ops.h's attention (probs and mask, B*NH*Tq*Tk each): the CPU's, and CUDA's unfused one
void attention_saves_probs(const AttnDims *d, size_t *probs_floats, size_t *mask_bytes);

// The CUDA table: libcommon/cuda/gpu_backend.c in a `make CUDA=1` build, else gpu_none.c's stand-in, which says so.
// Initialises the first GPU; NULL with err when it cannot. Call backend_get("cuda") instead.
const Backend *backend_cuda(char *err);
// Which attention that table runs for a head size under a precision (PREC_*), once backend_cuda has read
// HMT_GPU_ATTENTION: "gemm" (cuBLAS products, probabilities stored), "fused, on tensor cores" or "fused, float32
// kernels" (the tensor-core kernels do not take it on this device); for bench/model's log.
const char *backend_cuda_attention(int head_size, int precision);

// The backend called name ("cpu" or "cuda"). For cuda this initialises the first GPU; NULL with err (one line:
// "this build has no CUDA backend (rebuild with make CUDA=1)", "no CUDA device found", ...) when it cannot.
const Backend *backend_get(const char *name, char *err);

#endif
