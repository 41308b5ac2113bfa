// gpu: the CUDA backend's C interface: device init, device memory, and the ops of ops.h on device pointers
// (libcommon/cuda/*.cu; `make CUDA=1`). A build without CUDA links libcommon/cuda/gpu_none.c instead, whose
// gpu_init says so and whose other functions do nothing. Plain C; every pointer an op takes is device memory
// (from gpu_alloc) unless its comment says host. Does not own any file format.
//
// Conventions are ops.h's, op for op: outputs first, backward ACCUMULATES (+=), the same shapes and dimension letters,
// float32 row-major. Ops run in order on one CUDA stream and return before the GPU finishes: an op never fails by
// return value; the first CUDA or cuBLAS error is kept (with the op's name) and reported by gpu_sync(), by every
// copy back to the host, and by gpu_error(). Ops called before a successful gpu_init record "gpu not initialized"
// and do nothing. With HMT_GPU_SYNC=1 in the environment every op waits for the GPU, so a fault names its own op.
#ifndef GPU_H
#define GPU_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "ops.h"
#include "optim.h"

#ifdef __cplusplus
extern "C" {
#endif

// ---- device -----------------------------------------------------------------------------------------------
typedef enum GpuStatus {
    GPU_OK = 0,
    GPU_NOT_BUILT = 1, // this build has no CUDA backend
    GPU_NO_DRIVER = 2, // no NVIDIA driver, or one too old for this CUDA runtime
    GPU_NO_DEVICE = 3, // a driver but no CUDA device (or not the one asked for)
    GPU_FAILED = 4,    // a device is there but could not be set up (cuBLAS, memory, an unsupported architecture)
} GpuStatus;

// Selects CUDA device `device` (0 = the first), creates its stream and cuBLAS handle, and checks that this build's
// kernels run on it. Returns GPU_OK, or another status with err (ERR_MAX bytes, util.h) set to one line naming the
// reason, e.g. "no CUDA device found" or "this build has no CUDA backend (rebuild with make CUDA=1)"; then nothing
// is left allocated. Calling it again after success is a no-op that returns GPU_OK.
GpuStatus gpu_init(int device, char *err);
// Frees the stream, the cuBLAS handle and the ops' workspace (not the caller's buffers). Safe to call twice.
void gpu_shutdown(void);
// The device's name ("NVIDIA H100 80GB HBM3"), the driver and runtime versions as "13.0" strings; "" before init.
const char *gpu_name(void);
const char *gpu_driver_version(void);
const char *gpu_runtime_version(void);
// Free and total device memory in bytes. Returns 0, or -1 (not initialized, or the query failed).
int gpu_mem_info(size_t *free_bytes, size_t *total_bytes);
// Bytes this process holds through gpu_alloc now (the ops' workspace included; not the CUDA context or cuBLAS's
// own), and the most it held since gpu_mem_peak_reset or gpu_init: the peer of PyTorch's max_memory_allocated.
void gpu_mem_allocated(size_t *now, size_t *peak);
void gpu_mem_peak_reset(void);
// For tests: every byte of the ops' workspace (gpu_internal.cuh gpu_workspace, whose contents an op may not rely
// on) set to `byte`, so a kernel that reads what it did not write shows (0xff: NaN floats)
void gpu_workspace_fill(int byte);
// The matmuls' precision, from the next op: GPU_FP32 (the default: float32, as the CPU); GPU_TF32 (cuBLAS's TF32
// tensor cores: inputs rounded to 10 mantissa bits, float32 sums); GPU_BF16: the linear layers' products take
// bfloat16 inputs (rounded to nearest even, 7 mantissa bits) with float32 accumulation and float32 results, the
// other cuBLAS products (the unfused attention's) TF32; weights, gradients, Adam state, LayerNorm, softmax and the
// losses stay float32 (mixed precision, as PyTorch's bf16 autocast but with float32 outputs). With HMT_GPU_BF16=fast
// in the environment (read here) the products take the float32 operands with CUBLAS_COMPUTE_32F_FAST_16BF instead:
// no conversion pass, cuBLAS's own down-conversion (its rounding is not documented: within 2e-2, not our bytes).
#define GPU_FP32 0
#define GPU_TF32 1
#define GPU_BF16 2
void gpu_set_precision(int precision);
// Waits for every op queued so far. Returns 0, or -1 with the first error kept (see gpu_error).
int gpu_sync(void);
// With HMT_GPU_PROFILE=1 in the environment every op waits for the GPU and its time is kept per op (cuBLAS calls
// apart from kernels): gpu_profile_print writes the table, largest first; gpu_profile_reset empties it. With
// HMT_GPU_PROFILE=events nothing waits: CUDA events around each launch give the GPU's own time per row ("GPU ms"),
// the kernels' time without the launches' (compare with the steps' wall time). Either way graphs are off.
void gpu_profile_reset(void);
void gpu_profile_print(FILE *f);
// The first error since init (or since gpu_clear_error), as "op: reason"; "" when none.
const char *gpu_error(void);
void gpu_clear_error(void);

// ---- memory -------------------------------------------------------------------------------------------------
// Device memory of `bytes` bytes (uninitialised), or NULL with gpu_error() saying why (e.g. "gpu_alloc: 3.0 GiB:
// out of memory (1.2 GiB free)"). gpu_free(NULL) is a no-op.
void *gpu_alloc(size_t bytes);
void gpu_free(void *p);
// One allocation per run. A dry run (gpu_dry_begin .. gpu_dry_end) goes through a run's set-up and one step
// without touching the device: gpu_alloc hands out addresses no memory backs, ops queue nothing (no launches,
// products, copies or waits; gpu_sync returns 0), and what the allocations and the ops' workspace would need is
// counted. gpu_dry_end returns the bytes of one block holding it all; gpu_reserve then allocates that block (one
// cudaMalloc), moves the workspace into it when it needs to grow, and later gpu_alloc calls are carved from it
// (256-byte aligned) while it has room, after that one by one as before. A block is freed when everything carved
// from it is. gpu_reserve returns 0, or -1 with the error kept ("gpu_reserve: 3.10 GiB: out of memory ...").
void gpu_dry_begin(void);
size_t gpu_dry_end(void);
int gpu_reserve(void);
// The cudaMalloc calls made since gpu_init (gpu_alloc's own, the workspace's and gpu_reserve's)
long gpu_mem_allocs(void);
// Copies host -> device, device -> host; they wait for the GPU. Return 0, or -1 with
// the error kept (a failed download leaves dst untouched).
int gpu_upload(void *dst, const void *src_host, size_t bytes);
int gpu_download(void *dst_host, const void *src, size_t bytes);
// Sets bytes bytes of device memory to zero (queued like an op).
void gpu_zero(void *p, size_t bytes);
// gpu_zero for a range that the next op writes (Backend.fresh): that op may take the range and write it without
// reading zeros; any other op first zeroes the ranges left (HMT_GPU_FRESH=0: gpu_zero at once). The ops that take:
// the backward of the linear layers (dinp), of the LayerNorms (dinp; the residual one's dx, dy), of the gemm and
// the fused attention (dq, dk, dv as one self-attention's interleaved rows), of dropout (with ReLU too), pad, crop,
// shift, mean-pool and repeat (dinp), and gpu_accumulate (dst: then a copy). gpu_fresh_taken counts the ranges
// taken since the program started.
void gpu_fresh(void *p, size_t bytes);
long gpu_fresh_taken(void);

// ---- ops (ops.h, one for one; device pointers) -------------------------------------------------------------
// tok (B,T) int32 ids, wte (V,C), pe (>=T,C) -> out (B,T,C) = wte[tok] + pe[t]
void gpu_encoder_forward(float *out, const int32_t *tok, const float *wte, const float *pe, int B, int T, int C);
// dwte (V,C): dwte[tok] += dout except the PAD row; each row sums its tokens in position order (as the CPU)
void gpu_encoder_backward(float *dwte, const float *dout, const int32_t *tok, int B, int T, int C, int V);

// inp (N,IC), w (OC,IC), b (OC) or NULL -> out (N,OC) = inp @ w^T + b: one cuBLASLt product with the bias added in
// its epilogue where cuBLASLt takes the operands (a 16-byte aligned b), else the bias's rows written first and the
// product added to them (cuBLAS; HMT_GPU_LT=0, read by gpu_set_precision, always). gpu_lt_runs: how many products
// have run with the epilogue in this process (for the tests).
void gpu_linear_forward(float *out, const float *inp, const float *w, const float *b, int N, int IC, int OC);
long gpu_lt_runs(void);
// dinp += dout @ w; dw += dout^T @ inp; db += column sums of dout (dinp, db may be NULL)
void gpu_linear_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w, int N,
                         int IC, int OC);

// LayerNorm over C, eps 1e-5: inp (N,C) -> out (N,C); saves mean (N), rstd (N)
void gpu_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w, const float *b,
                           int N, int C);
void gpu_layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                            const float *mean, const float *rstd, int N, int C);

// res = x + dropout(y) (mask saved; gpu_dropout_forward's stream for (p, seed)), out = LayerNorm(res) (mean, rstd
// saved): one kernel, the bytes of the three separate ops. Backward: g = LayerNorm's dinp of dout (dw, db
// accumulated), dx += g, dy += dropout_backward(g): the bytes of the separate ops when dy (and for them the
// intermediate g) start at zero. mask may be NULL in both (not kept: the backward draws the forward's bits again
// from (p, seed), the same bytes). out16 unless NULL: out as bfloat16 too, gpu_to_bf16's bytes of out from the
// same pass (the bfloat16 activations' copies of LayerNorm outputs, without a second read of out).
void gpu_residual_layernorm_forward(float *out, uint16_t *out16, float *mean, float *rstd, float *res, uint8_t *mask,
                                    const float *x, const float *y, float p, SeedRef seed, const float *w,
                                    const float *b, int N, int C);
void gpu_residual_layernorm_backward(float *dx, float *dy, float *dw, float *db, const float *dout, const float *res,
                                     const uint8_t *mask, float p, SeedRef seed, const float *w, const float *mean,
                                     const float *rstd, int N, int C);

void gpu_relu_forward(float *out, const float *inp, size_t n);
void gpu_relu_backward(float *dinp, const float *dout, const float *out, size_t n);
void gpu_add_forward(float *out, const float *a, const float *b, size_t n);
void gpu_accumulate(float *dst, const float *src, size_t n);
// dropout with ops.c's counter RNG: the same mask bytes and output bytes as dropout_forward for (p, seed, n); the
// seeds here and in the attention's AttnDims are SeedRefs (ops.h) whose base, when set, is device memory read by
// the kernel (a graph's replays draw new masks)
void gpu_dropout_forward(float *out, uint8_t *mask, const float *inp, float p, SeedRef seed, size_t n);
void gpu_dropout_backward(float *dinp, const float *dout, const uint8_t *mask, float p, size_t n);
// relu: mask may be NULL; the backward reads the forward's output (ops.h relu_dropout_backward)
void gpu_relu_dropout_forward(float *out, uint8_t *mask, const float *inp, float p, SeedRef seed, size_t n);
void gpu_relu_dropout_backward(float *dinp, const float *dout, const float *out, float p, size_t n);
// bfloat16 activations (hg.c under GPU_BF16): the feed-forward's hidden activation r = drop(relu(linear1(x))), which
// only linear2's products (bf16 operands) and the ReLU's backward (its sign) read, is kept as bfloat16, its producer
// rounding it once in place of every product's copy. gpu_act16: 1 under GPU_BF16 (not HMT_GPU_BF16=fast) unless
// HMT_GPU_ACT16=0; hg_alloc asks it once, and the plan it makes holds until the next hg_alloc.
int gpu_act16(void);
// out16 = bf16 of relu_dropout_forward's output, rounded to nearest even; a kept positive value that rounds to +0
// is stored as -0. Backward, for linear1's backward: g = relu_dropout_backward's gradient into zeros (dout * scale where
// out16 is not +0, exactly where the float32 output is > 0), stored as its bfloat16 dinp16 (N, C), and db (C) +=
// its column sums (gpu_linear_backward's bias sums: the same bytes)
void gpu_relu_dropout_forward16(uint16_t *out16, const float *inp, float p, SeedRef seed, size_t n);
void gpu_relu_dropout_backward16(uint16_t *dinp16, float *db, const float *dout, const uint16_t *out16, float p, int N,
                                 int C);
// gpu_linear_forward and _backward with a bfloat16 input inp16: the products take it as it is (bf16 operands and
// float32 sums), so under GPU_BF16 they give the bytes of the float32 input's ops
void gpu_linear_forward16(float *out, const uint16_t *inp16, const float *w, const float *b, int N, int IC, int OC);
void gpu_linear_backward16(float *dinp, float *dw, float *db, const float *dout, const uint16_t *inp16,
                           const float *w, int N, int IC, int OC);
// gpu_linear_backward's products on a bfloat16 gradient dout16 (gpu_relu_dropout_backward16's; the bias's sums are
// made there): dinp (NULL: none) += dout16 w, dw += dout16^T inp, bf16 operands and float32 sums; the input float32
// inp or, when inp16 is not NULL, bfloat16 inp16 as it is (inp NULL)
void gpu_linear_backward_g16(float *dinp, float *dw, const uint16_t *dout16, const float *inp, const uint16_t *inp16,
                             const float *w, int N, int IC, int OC);

// Attention with per-query key limits and an optional relative table, exactly ops.h's attention_forward with
// these differences: d->n_keys is a DEVICE array (Tq ints), Er and dEr are device pointers, and the scratch is the
// backend's own workspace (grown on first use, O(B*NH*Tq*(Tq+Tk)) floats; d->scratch_floats is ignored). probs and
// mask are the same tensors as the CPU's, mask byte for byte (ops.c's dropout stream per (b, h) and its query tiles
// of 128 rows); mask may be NULL in both calls (not kept: the backward draws the bits it needs again from d->seed,
// with the same bytes as from a kept mask; the backend's attention_saves asks for none, so hg.c passes NULL). The
// relative term is R = Q.Er^T by cuBLAS and a gather; backward un-skews dS one to one into dR, then dq += dR.Er and
// dEr += sum over (b, h) of dR^T.q in (b, h) order (no atomics). With Er: Tq == Tk <= L and n_keys[i] <= i+1.
void gpu_attention_forward(float *out, float *probs, uint8_t *mask, const float *q, const float *k, const float *v,
                           const float *Er, const AttnDims *d);
void gpu_attention_backward(float *dq, float *dk, float *dv, float *dEr, const float *dout, const float *probs,
                            const uint8_t *mask, const float *q, const float *k, const float *v, const float *Er,
                            const AttnDims *d);
// Under GPU_BF16 with HMT_GPU_ATT16=1 (not HMT_GPU_BF16=fast) the two above run their products on bfloat16
// operands (float32 sums, scores, softmax and P) when gpu_attention16_takes(d): head size, Tq, Tk, C and the leading
// dimensions multiples of 8, so every per-head operand cuBLAS's pointer arrays hold is 16-byte aligned (it cannot
// see them to check); otherwise, and by default, the float32 (TF32) products.
int gpu_attention16_takes(const AttnDims *d);

// The same attention fused (gpu_attn.cu): tiles with an online softmax, so no (Tq, Tk) matrix is stored; for head
// sizes up to GPU_ATTN_FUSED_HS_MAX. The forward saves lse (B, NH, Tq), each query row's log-sum-exp of its scores,
// instead of probs and mask; the backward takes it and the forward's out, and recomputes the probabilities (the
// dropout bits are drawn again: the CPU's). Its workspace is O(B*NH*Tq) floats, plus B*Tq*C with dEr. Equal to the
// CPU within 1e-5 of each tensor's scale (sums in another order), deterministic (no atomics).
#define GPU_ATTN_FUSED_HS_MAX 128
void gpu_attention_fused_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                                 const float *Er, const AttnDims *d);
void gpu_attention_fused_backward(float *dq, float *dk, float *dv, float *dEr, const float *dout, const float *out,
                                  const float *lse, const float *q, const float *k, const float *v, const float *Er,
                                  const AttnDims *d);
// The fused attention on bfloat16 q, k and v (hg.c keeps them so under gpu_act16: half their bytes), for the
// tensor-core kernels, which round their float32 values to the same bf16 operands: the bytes of the float32 calls
// on the values they were rounded from. gpu_attention_fused_takes16(d): 1 when these take d (gpu_act16, a head size
// gpu_attention_tc_fits takes under GPU_BF16, C and the leading dimensions multiples of 8: rows 16-byte aligned);
// called on other dimensions or precision they record an error and compute nothing.
int gpu_attention_fused_takes16(const AttnDims *d);
void gpu_attention_fused_forward16(float *out, float *lse, const uint16_t *q, const uint16_t *k, const uint16_t *v,
                                   const float *Er, const AttnDims *d);
void gpu_attention_fused_backward16(float *dq, float *dk, float *dv, float *dEr, const float *dout, const float *out,
                                    const float *lse, const uint16_t *q, const uint16_t *k, const uint16_t *v,
                                    const float *Er, const AttnDims *d);
// Under GPU_TF32 and GPU_BF16 the fused attention runs on tensor cores (gpu_attn_tc.cu) for head sizes 16, 32, 48
// and 64 whose kernels fit a block's shared memory (smem_optin bytes: an H100 opts in to 227 KiB, an A100 to 163):
// 1 when they take head_size under precision on such a device, else 0 (the float32 kernels run instead). Their
// backward computes dS once and keeps it, rounded, for the dQ and dEr kernels: up to HMT_GPU_FA_DS_MIB (64 by
// default) of the workspace, a chunk of heads at a time (each head's tiles: Tq x Tk padded to 64, with the causal
// promise only those on and below the diagonal; 2 bytes under bf16, 4 under TF32); HMT_GPU_FA_DS_MIB=0 keeps none
// and has each kernel compute dS again.
int gpu_attention_tc_fits(int head_size, int precision, size_t smem_optin);
// HMT_GPU_FA_MMA=1 (read at each call; off by default until a GPU has timed it): under GPU_BF16 the tensor-core
// forward keeps each warp's scores, probabilities and output in registers (gpu_attn_tc.cu mma_fwd_k, on gpu_mma.cuh's
// mma.sync) instead of shared memory; the same tiles, skew, dropout bits and lse, within the bf16 tolerance.
// gpu_mma_check: d (16 x 8) = a (16 x 16) b (16 x 8) + c (row-major float32, device memory), a and b rounded to
// bf16, by one warp through gpu_mma.cuh's fragments: mode 0 the instruction, 1 its warp-shuffle reference, 2 and 3
// the instruction on fragments ldmatrix loads from shared memory (row-major tiles, and transposed ones), so
// test_cuda_ops "mma" checks the fragments' layout and ldmatrix's on the GPU itself.
void gpu_mma_check(float *d, const float *a, const float *b, const float *c, int mode);
// The shared memory a block may opt in to on this device (cudaDeviceProp.sharedMemPerBlockOptin), in bytes.
size_t gpu_smem_optin(void);

// hourglass resampling (ops.h): pad, crop, causal shift by K-1, mean pooling and repetition along time
void gpu_pad_forward(float *out, const float *inp, int B, int T, int Tp, int C);
void gpu_pad_backward(float *dinp, const float *dout, int B, int T, int Tp, int C);
void gpu_crop_forward(float *out, const float *inp, int B, int Tp, int T, int C);
void gpu_crop_backward(float *dinp, const float *dout, int B, int Tp, int T, int C);
void gpu_shift_forward(float *out, const float *inp, int B, int T, int C, int K);
void gpu_shift_backward(float *dinp, const float *dout, int B, int T, int C, int K);
void gpu_meanpool_forward(float *out, const float *inp, int B, int T, int C, int K);
void gpu_meanpool_backward(float *dinp, const float *dout, int B, int T, int C, int K);
void gpu_repeat_forward(float *out, const float *inp, int B, int T, int C, int K);
void gpu_repeat_backward(float *dinp, const float *dout, int B, int T, int C, int K);

// Losses. These return host values and so wait for the GPU (0 when an error is kept). targets is a device array.
// cross-entropy over non-PAD targets: probs (N,V) saved, *n_valid (host) = their count, returns the mean loss
float gpu_crossentropy_forward(float *probs, const float *logits, const int32_t *targets, int N, int V, int *n_valid);
// dlogits += scale * (probs - onehot) / n_valid on non-PAD rows (n_valid from the forward, host)
void gpu_crossentropy_backward(float *dlogits, const float *probs, const int32_t *targets, int N, int V, int n_valid,
                               float scale);
// both at once without probs: dlogits = scale * (softmax - onehot) / n_valid on non-PAD rows, 0 on PAD rows
// (written), the bytes of gpu_crossentropy_forward + gpu_crossentropy_backward into zeros; returns the loss (host)
float gpu_crossentropy_fused(float *dlogits, const float *logits, const int32_t *targets, int N, int V, float scale,
                             int *n_valid);
// ops.h's score_rows on device memory (nll, best, logits, targets): one warp a row, its sums in a fixed order, so the
// same bytes every run; best as the CPU's, nll within a few ulps of its double (the order of the sum)
void gpu_score_rows(double *nll, int32_t *best, const float *logits, const int32_t *targets, int N, int V);
// the auxiliary losses' sums in double, as ops.h (cos of row pairs (2i, 2i+1); sum over i != j of exp(-cos))
double gpu_cosine_pairs_forward(const float *h, int B, int T, int C, long *n_pairs);
void gpu_cosine_pairs_backward(float *dh, const float *h, int B, int T, int C, float scale);
double gpu_exp_cosine_forward(const float *h, int B, int T, int C);
void gpu_exp_cosine_backward(float *dh, const float *h, int B, int T, int C, float scale);
// The forwards above with their values left in device memory, so nothing waits for the GPU (the trainer's step,
// and its graph): *loss = the cross-entropy's mean as a double (the float gpu_crossentropy_fused returns), *sum =
// the double gpu_cosine_pairs_forward / gpu_exp_cosine_forward return
void gpu_crossentropy_fused_to(float *dlogits, double *loss, const float *logits, const int32_t *targets, int N,
                               int V, float scale);
void gpu_cosine_pairs_forward_to(double *sum, const float *h, int B, int T, int C);
void gpu_exp_cosine_forward_to(double *sum, const float *h, int B, int T, int C);

// ---- graphs: the ops launched between gpu_graph_begin and gpu_graph_end are recorded, not run (CUDA stream
// capture), and gpu_graph_launch replays them, with the same arguments, at the cost of one launch (cuBLAS products
// too: cuBLAS 12.2+ takes stream capture). What an op cannot do while captured (wait for the GPU, allocate, grow
// the ops' workspace: run the ops once before capturing them) fails the capture. Values that change from one replay
// to the next are read from device memory (SeedRef, gpu_adam_apply's constants, copies from page-locked memory).
// gpu_graph_begin returns 1 when capturing, 0 when not (HMT_GPU_SYNC or HMT_GPU_PROFILE, which wait after every op,
// or an error kept: the caller runs its ops directly); gpu_graph_end returns the graph, or NULL with the
// error kept; gpu_graph_launch 0, -1 with the error kept, or 1 without launching when the ops' workspace has moved
// since the capture (an op outside the graph needed a larger one): the graph is stale, capture it again.
// Page-locked host memory (NULL when there is none: no error is kept), and a copy between it and the device in
// stream order, without waiting (to_device 1: host to device); in a graph it is one of the graph's steps.
void *gpu_host_alloc(size_t bytes);
void gpu_host_free(void *p);
void gpu_copy_async(void *dst, const void *src, size_t bytes, int to_device);
int gpu_graph_begin(void);
void *gpu_graph_end(void);
int gpu_graph_launch(void *graph);
void gpu_graph_free(void *graph);

// ---- decoding (decode.c's kernels on device memory; pitches and offsets in floats) ------------------------------
// out (N, OC) = x (N, IC) @ w^T + b (b may be NULL), then ReLU when relu. The products here take their weights as
// float32 w, or, when w16 is not NULL, as bfloat16 w16 (gpu_to_bf16; w is then not read), widened exactly and used in
// float32 with float32 x, sums and out: the bytes a step reads from its weights halve. Float32 weights: the
// matrix-vector kernel up to gpu_dec_kernel_rows rows, cuBLAS beyond (never in a graph); bfloat16: the kernel for
// any N, that many rows at a time.
void gpu_dec_linear(float *out, const float *x, const float *w, const uint16_t *w16, const float *b, int N, int IC,
                    int OC, int relu);
// a self-attention layer's input projection: out (N, 3C) = x (N, C) @ w^T + b, N = nb items x n_new rows, and its
// key and value columns also to the caches: row (g, i)'s k to k + g * cs + i * C, its v to v + g * cs + i * C
void gpu_dec_linear_qkv(float *out, const float *x, const float *w, const uint16_t *w16, const float *b, int N, int C,
                        float *k, float *v, size_t cs, int n_new);
// out (N, C) = LayerNorm(a + b) (b NULL: of a), eps 1e-5; out may equal a
void gpu_dec_add_layernorm(float *out, const float *a, const float *b, const float *w, const float *bias, int N, int C);
// nb groups of rows rows of width floats: row r of group g from src + g * sstride + r * spitch (a pitch 0 repeats
// one row) to dst + g * dstride + r * dpitch
void gpu_dec_copy_rows(float *dst, size_t dstride, size_t dpitch, const float *src, size_t sstride, size_t spitch,
                       int nb, int rows, int width);
// n query rows q (B, n, ldq) at positions p0 .. p0+n-1 against the caches k, v (B, cap, C): the keys row a sees
// (keys 0: causal a+1; 1: resample_pre s*a+s; 2: resample_post a/s+1), the relative term from ers (Tk rows: the
// last Tk of Er, NULL for none; Tk the most keys any row sees) -> out (B, n, C). scratch: device memory of
// gpu_dec_attend_scratch(B, NH, C, n, Tk) floats.
void gpu_dec_attend(float *out, float *scratch, const float *q, int ldq, const float *k, const float *v, int cap,
                    const float *ers, int B, int NH, int C, int n, int p0, int Tk, int keys, int s);
size_t gpu_dec_attend_scratch(int B, int NH, int C, int n, int Tk);
// gpu_dec_attend, then proj (B n, C) = its rows @ w^T + bias (w16 non-NULL: bfloat16 weights instead of w): where
// B n <= 8 the attention's last step and the output projection are one kernel, the bytes of att's and
// gpu_dec_linear's (att, (B, n, C), is then left unwritten)
void gpu_dec_attend_proj(float *proj, float *att, float *scratch, const float *q, int ldq, const float *k,
                         const float *v, int cap, const float *ers, int B, int NH, int C, int n, int p0, int Tk,
                         int keys, int s, const float *w, const uint16_t *w16, const float *bias);
// the hourglass's down input for valley rows i0 .. i0+n_s-1 from h (B, cap, C), shifted by s-1: their mean (mean 1,
// out (B, n_s, C)) or the s rows side by side (out (B, n_s, s*C))
void gpu_dec_down(float *out, const float *h, int B, int cap, int C, int s, int i0, int n_s, int mean);
// u (B, n, C) = up(v) + h at positions p0 .. p0+n-1 (up: (B, cap_s, s*C) when lin, else (B, cap_s, C))
void gpu_dec_up_add(float *u, const float *up, const float *h, int B, int n, int p0, int cap, int cap_s, int C, int s,
                    int lin);
// ln_out (N, C) = LayerNorm(a + b) (b NULL: of a; weights lw, lb), then out (N, OC) = ln_out @ w^T + bias (ReLU when
// relu): gpu_dec_add_layernorm and gpu_dec_linear (w or w16) in one kernel where N <= 8, the same bytes; ln_out
// must not overlap a or b
void gpu_dec_ln_linear(float *out, float *ln_out, const float *a, const float *b, const float *lw, const float *lb,
                       const float *w, const uint16_t *w16, const float *bias, int N, int C, int OC, int relu);
// two LayerNorms, then the product: ln_out = LayerNorm(a + b) (lw, lb), ln2_out = LayerNorm(ln_out) (lw2, lb2), out
// = ln2_out @ w^T + bias (a block's last layer's closing norm, the block's norm, then the logits): in one kernel
// where N <= 8, the bytes of the three ops; ln_out and ln2_out must not overlap a, b or each other
void gpu_dec_ln2_linear(float *out, float *ln_out, float *ln2_out, const float *a, const float *b, const float *lw,
                        const float *lb, const float *lw2, const float *lb2, const float *w, const uint16_t *w16,
                        const float *bias, int N, int C, int OC);
// the same before a self-attention layer's input projection: gpu_dec_add_layernorm then gpu_dec_linear_qkv
void gpu_dec_ln_linear_qkv(float *out, float *ln_out, const float *a, const float *b, const float *lw,
                           const float *lb, const float *w, const uint16_t *w16, const float *bias, int N, int C,
                           float *k, float *v, size_t cs, int n_new);
// a pass's embedding, then its first layer's input projection: x (B T, C) = wte[tok] + pe (gpu_encoder_forward, pe
// at the pass's first position), then gpu_dec_linear_qkv on x (n_new = T): in one kernel where B T <= 8, the bytes of
// the two ops
void gpu_dec_emb_linear_qkv(float *out, float *x, const int32_t *tok, const float *wte, const float *pe, int B, int T,
                            int C, const float *w, const uint16_t *w16, const float *bias, float *k, float *v,
                            size_t cs);
// the most rows a gpu_dec_linear product takes in its own kernel; more go through cuBLAS (never in a graph)
int gpu_dec_kernel_rows(void);
// Programmatic dependent launch for the gpu_dec_* kernels from the next launch on (on 1, where the device and the
// build have it: compute capability 9.0; 0 off, the default): each may start while the kernel before it still runs,
// load its weights, and wait there for that kernel's results, so the launch gaps of a step's chain of small kernels
// overlap the work (in a CUDA graph too). Kernels after a copy or a cuBLAS product, and every kernel under
// HMT_GPU_PROFILE or HMT_GPU_SYNC, launch as before. The same bytes.
void gpu_dec_pdl(int on);
// One launch per step: from gpu_dec_mega(1) on, the gpu_dec_* kernels are recorded instead of launched, and run
// as one launch of a persistent kernel when anything else comes (another op, a copy, a wait, a graph's end) or at
// gpu_dec_mega(0), which also stops the recording: the ops in order, a block per multiprocessor taking each op's
// blocks in turn, and between one op and the next a grid barrier (a block fetches its next op's weights, then
// waits for every block to have ended the ops before). A step at batch 1 is then one launch and some 30 barriers
// instead of some 30 launches (in a CUDA graph too). The same device code, so the same bytes; an op's products
// beyond the matrix-vector kernel (cuBLAS) end the recording's launch before them.
void gpu_dec_mega(int on);
// A test aid for it: dst = src (n floats) by a kernel that first lets the next kernel start, then sleeps about ns
// nanoseconds before it copies, so a dependent kernel reading dst before its wait reads it unwritten. The decoder
// does not use it.
void gpu_dec_slow_copy(float *dst, const float *src, size_t n, unsigned ns);
// bfloat16 (the high 16 bits, rounded to nearest even; NaN stays NaN) of n floats
void gpu_to_bf16(uint16_t *dst, const float *src, size_t n);
// The sampler's draw (sampler.h sample_pick) for B items where the logits are: tok[b] for item b's logits (B, V)
// with the tokens whose bit is clear in its mask row ((V + 31) / 32 words, bit v % 32 of word v / 32; mask NULL:
// all allowed) at -inf and u = sample_uniform(keys[b], *index) (sampler.h), as sampler.c draws;
// -2 where a logit is not finite (before the mask), -1 where the mask leaves none. keys, index and mask are device
// memory read by the kernel (a graph replays with their new values), and so are the options: opts (3 doubles,
// device memory) temperature, top_k, top_p. The same arithmetic in the same order as sample_pick, so the same
// token. V at most GPU_DRAW_MAX_V (its shared memory).
#define GPU_DRAW_MAX_V 3840
void gpu_dec_draw(int32_t *tok, const float *logits, int B, int V, const uint32_t *mask, const uint64_t *keys,
                  const uint64_t *index, const double *opts);

// ---- optimizer (optim.h) --------------------------------------------------------------------------------------
// The global L2 norm of g (n floats, summed in double, fixed order); when max_norm > 0 and max_norm/(norm+1e-6) < 1,
// g is scaled by it on the GPU. Returns the norm (host; waits for the GPU).
double gpu_clip_grad_norm(float *g, size_t n, double max_norm);
// One Adam step, optim.c's arithmetic operation for operation (so the same bytes as adam_step).
void gpu_adam_step(float *w, const float *g, float *m, float *v, size_t n, long t, const AdamParams *p);
// The same without waiting for the GPU: the norm to *norm (device); Adam's step constants k (device, adam_constants)
// and its guard (device, n_guard doubles: nothing is written when one is not finite) read when the kernel runs
void gpu_clip_grad_norm_to(double *norm, float *g, size_t n, double max_norm);
void gpu_adam_apply(float *w, const float *g, float *m, float *v, size_t n, const AdamParams *p, const AdamStep *k,
                    const double *guard, int n_guard);

#ifdef __cplusplus
}
#endif

#endif
