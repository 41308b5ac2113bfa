// gpu_attn: what the fused attention's two kernel sets share: the SIMT kernels of gpu_attn.cu (float32) and the
// tensor-core kernels of gpu_attn_tc.cu (bf16 or TF32 operands, float32 accumulation and softmax).
#ifndef GPU_ATTN_CUH
#define GPU_ATTN_CUH
#include <stdint.h>

#include "gpu_internal.cuh"

typedef struct FaArgs {
    const float *q, *k, *v, *ers, *out, *dout; // ers: the last Tq rows of Er (distance m at row Tq-1-m), or NULL
    const uint16_t *q16, *k16, *v16; // q, k, v as bfloat16 in their place (gpu.h gpu_attention_fused_forward16)
    // under GPU_BF16 on tensor cores: bfloat16 copies of ers's rows and of dout (the backward), made once per call
    // (gpu_attn.cu), which the kernels load instead of converting the floats in every block that reads them
    const uint16_t *ers16, *dout16;
    float *o, *lse, *D, *dq, *dk, *dv, *part;
    void *dsw; // the tensor-core backward's dS tiles (gpu_attn_tc.cu), or NULL: each kernel computes dS itself
    int bh0;   // the tensor-core backward runs heads bh0 .. bh0 + gridDim.x - 1 (a chunk of them; 0 elsewhere)
    int causal; // AttnDims.causal's promise (n_keys[i] = i + 1): the dS tiles above the diagonal are not kept
    int fresh;  // the backward's dq, dk, dv taken as zeros (gpu_att_qkv_fresh): written, not added to
    const int *n_keys;
    int Tq, Tk, NH, HS, C, ldq, ldk, ldv;
    float scale, keep; // keep: dropout's 1/(1-p) (forward: 0 when p >= 1), 1 without dropout
    int drop;
    uint32_t thr;
    SeedRef seed;
} FaArgs;

// the dropout stream of head (b, h) = bh: ops.c's key for it (0 without dropout)
__device__ static inline uint64_t fa_key(const FaArgs &a, int bh)
{
    return a.drop ? dropout_key(seed_dev(a.seed) ^ (uint64_t)bh * a.Tq * a.Tk) : 0;
}

// The query tile of a block, the last tiles first: with causal keys they have the most work, and blocks start in
// order, so the long ones do not trail at the end of the launch
__device__ static inline int fa_last_first(void) { return (int)(gridDim.y - 1 - blockIdx.y); }

// The tensor-core kernels take head sizes that are multiples of 16 up to TC_HS_MAX, under GPU_TF32 or GPU_BF16,
// when they fit this device's shared memory (gpu.h gpu_attention_tc_fits), with every row they read 16-byte
// aligned (they load four floats at a time): hg.c's buffers always are. Er need not be: a parameter table whose
// tensors' sizes are not multiples of 4 floats misaligns it, and gpu_attn.cu then hands them an aligned copy
// (TF32), or under GPU_BF16 its bfloat16 copy (ers16, in the workspace: aligned), as it does of dout (dout16).
// bfloat16 q, k and v (q16: under GPU_BF16 only) and those copies are loaded eight at a time: 16-byte rows too.
#define TC_HS_MAX 64
static inline bool fa_tc_aligned(const void *p, int ld, int per16) { return (uintptr_t)p % 16 == 0 && ld % per16 == 0; }
static inline bool fa_tc_takes(const FaArgs &a, int prec)
{
    bool qkv = a.q16 ? prec == GPU_BF16 && fa_tc_aligned(a.q16, a.ldq, 8) && fa_tc_aligned(a.k16, a.ldk, 8) &&
                           fa_tc_aligned(a.v16, a.ldv, 8)
                     : fa_tc_aligned(a.q, a.ldq, 4) && fa_tc_aligned(a.k, a.ldk, 4) && fa_tc_aligned(a.v, a.ldv, 4);
    return gpu_attention_tc_fits(a.HS, prec, gpu_smem_optin()) && qkv && a.HS % 4 == 0 &&
           fa_tc_aligned(a.dout, a.C, 4); // dout: NULL (aligned) in the forward
}
// gpu_attention_fused_forward's and _backward's launches on tensor cores (fa_tc_takes true; arguments checked;
// for the backward a.D already holds the row terms and a.part the dEr partials' room, or NULL). With a.dsw the
// backward stores dS once and runs `chunk` heads at a time (a.dsw: chunk * fa_tc_ds_bytes, 256-byte aligned);
// without, each of its kernels computes dS again. False when a launch failed (the error kept).
bool fa_tc_forward(const char *op, const FaArgs &a, int B, int prec);
bool fa_tc_backward(const char *op, const FaArgs &a, int B, int prec, int chunk);
// the bytes of one head's dS tiles (the operand type of prec, tiles of 64 x 64 over Tq x Tk padded to tiles; with
// a.causal only those on and below the diagonal)
size_t fa_tc_ds_bytes(const FaArgs &a, int prec);
#endif
