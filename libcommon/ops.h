// ops: the tensor operations of the model (spec/model.md), each a _forward and a _backward.
// float32, row-major, contiguous. Forward stores what backward needs (LayerNorm mean/rstd, attention probabilities,
// dropout masks) in buffers the caller owns; backward ACCUMULATES (+=) into every gradient it writes, so callers
// zero gradients once per step. Every matmul goes through cblas_sgemm; matmul_forward_naive is the reference the
// tests compare against. Nothing here allocates (but the first op starts the worker threads, see ops_set_threads).
//
// Dimension letters (defined once, here): B batch, T time (rows of a sequence), C channels (d_model),
// V vocabulary, NH heads, HS head size (C / NH), K shorten factor, L rows of the relative table Er, OC/IC the
// output/input channels of a linear layer, N = B*T rows when the op is per row.
#ifndef OPS_H
#define OPS_H

#include <stddef.h>
#include <stdint.h>

// ---- threads -----------------------------------------------------------------------------------
// Ops split their work over a pool of threads (the caller included); OpenBLAS itself runs single-threaded. The
// count starts as OpenBLAS's own (OPENBLAS_NUM_THREADS, else the number of cores), read by the first op.
// Results are the same bytes for any count, as each output element is computed by one thread in a fixed order.
// Not to be called while an op runs in another thread.
void ops_set_threads(int n);
int ops_threads(void);

// ---- embedding + sinusoidal positions (model.md §1) ------------------------------------------
// tok (B,T) ids, wte (V,C), pe (>=T, C) -> out (B,T,C) = wte[tok] + pe[t]
void encoder_forward(float *out, const int32_t *tok, const float *wte, const float *pe, int B, int T, int C);
// dwte[tok] += dout, except the PAD row (id 0), which receives no gradient (PyTorch padding_idx)
void encoder_backward(float *dwte, const float *dout, const int32_t *tok, int B, int T, int C);
// pe (T, C): pe[p, 2i] = sin(p * exp(-2i ln(10000) / C)), pe[p, 2i+1] = cos(same)
void positional_table(float *pe, int T, int C);

// ---- linear: out = inp @ w^T + b  (PyTorch nn.Linear) ----------------------------------------
// inp (N,IC), w (OC,IC), b (OC) or NULL -> out (N,OC)
void linear_forward(float *out, const float *inp, const float *w, const float *b, int N, int IC, int OC);
// dinp += dout @ w; dw += dout^T @ inp; db += sum_n dout   (any of dinp, db may be NULL)
void linear_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w, int N,
                     int IC, int OC);
// the same forward with three plain loops, in double accumulation: the reference for tests
void matmul_forward_naive(float *out, const float *inp, const float *w, const float *b, int N, int IC, int OC);

// ---- LayerNorm over C, eps 1e-5, with weight and bias ----------------------------------------
// inp (N,C) -> out (N,C); saves mean (N), rstd (N)
void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w, const float *b, int N,
                       int C);
void layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                        const float *mean, const float *rstd, int N, int C);

// ---- elementwise ------------------------------------------------------------------------------
void relu_forward(float *out, const float *inp, size_t n);
// dinp += dout where out > 0 (out from the forward)
void relu_backward(float *dinp, const float *dout, const float *out, size_t n);
// out = a + b
void add_forward(float *out, const float *a, const float *b, size_t n);
// dst += src
void accumulate(float *dst, const float *src, size_t n);

// A dropout seed read when the op runs: mul * *base + add (64-bit arithmetic, so n steps of an LCG from *base are
// one (mul, add) pair), or add alone when base is NULL. base is in the memory of the backend that runs the op: a
// captured GPU graph (trainer.c) reads a new seed at each replay. seed_get is the CPU's reading of it.
typedef struct SeedRef {
    const uint64_t *base;
    uint64_t mul, add;
} SeedRef;
static inline uint64_t seed_get(SeedRef s) { return s.base ? s.mul * *s.base + s.add : s.add; }

// Inverted dropout with a counter-based RNG: element i is dropped iff u(seed, i) < p, with u a 32-bit uniform that
// depends only on (seed, i) (half of one splitmix64 output). The mask (n bytes, 1 = kept) is saved for backward.
// p = 0 copies and sets an all-ones mask.
void dropout_forward(float *out, uint8_t *mask, const float *inp, float p, uint64_t seed, size_t n);
void dropout_backward(float *dinp, const float *dout, const uint8_t *mask, float p, size_t n);
// dropout(relu(inp)) in one pass: the same bytes (out and mask) as relu_forward then dropout_forward(seed); mask
// may be NULL (not kept: the backward does not need it).
void relu_dropout_forward(float *out, uint8_t *mask, const float *inp, float p, uint64_t seed, size_t n);
// backward of it from the forward's output: dinp += dout / (1 - p) where out > 0, which is exactly where the
// element was kept and inp > 0 (x / (1 - p) > 0 for x > 0), so neither inp nor the mask has to be kept
void relu_dropout_backward(float *dinp, const float *dout, const float *out, float p, size_t n);


// The model's x = LayerNorm(x + dropout(y)) as one op: res = x + dropout(y) (mask saved, dropout_forward's stream
// for (p, seed)), out = LayerNorm(res); the bytes of dropout_forward, add_forward, layernorm_forward. Backward:
// g = LayerNorm's dinp (in scratch, N*C floats; dw, db accumulated), dx += g, dy += dropout_backward(g). mask may
// be NULL in both (not kept: the backward draws the forward's bits again from (p, seed), the same bytes).
void residual_layernorm_forward(float *out, float *mean, float *rstd, float *res, uint8_t *mask, const float *x,
                                const float *y, float p, uint64_t seed, const float *w, const float *b, int N, int C);
void residual_layernorm_backward(float *dx, float *dy, float *dw, float *db, float *scratch, const float *dout,
                                 const float *res, const uint8_t *mask, float p, uint64_t seed, const float *w,
                                 const float *mean, const float *rstd, int N, int C);

// ---- attention with a per-query key limit and an optional relative table (model.md §3, §6) ----------
// Per batch item b and head h, with q, k, v the head's HS columns (rows strided by ldq/ldk/ldv floats):
//   S[i,j] = scale * (q_i . k_j + q_i . Er[L-1-(i-j)])   for j < n_keys[i]   (the Er term only when Er != NULL)
//   P = softmax_j(S) (saved in probs), PD = dropout(P) (mask saved), out_h = PD v, heads concatenated in order.
// Causal self-attention is n_keys[i] = i+1 with Tq = Tk = T <= L (Er's last T rows); cross-attention with the
// coverage rule passes its own limits and Er = NULL. scale = HS^-1/2 multiplies q in both terms.
// q (B,Tq,ldq), k (B,Tk,ldk), v (B,Tk,ldv), Er (L,HS) -> out (B,Tq,C); probs (B,NH,Tq,Tk), mask (B,NH,Tq,Tk)
// (probs and mask are 0 beyond each row's keys). With Er, n_keys[i] <= i+1.
// scratch: scratch_floats floats, or when that is 0, 2*Tq*Tk + Tq*Tq floats. attention_scratch_floats(d) is the
// size that lets every thread work (backward with dEr: in parallel only with that much, else on one thread; the
// two sum dEr in different orders, each the same for any thread count).
typedef struct AttnDims {
    int B, Tq, Tk, C, NH, L;
    int ldq, ldk, ldv; // row strides of q, k, v in floats
    const int *n_keys; // (Tq), each in 1..Tk
    int causal;        // a promise that n_keys[i] is i + 1 (Tq == Tk): the GPU's unfused products then skip the blocks
                       // no query sees (gpu.h); 0 promises nothing. The CPU does not read it
    float dropout;
    SeedRef seed;          // the dropout stream's seed (seed_get)
    size_t scratch_floats; // size of scratch; 0: the minimum above
} AttnDims;
size_t attention_scratch_floats(const AttnDims *d);
void attention_forward(float *out, float *probs, uint8_t *mask, float *scratch, const float *q, const float *k,
                       const float *v, const float *Er, const AttnDims *d);
// dq, dk, dv (same strides as q, k, v), dEr (L,HS) or NULL: all accumulated.
void attention_backward(float *dq, float *dk, float *dv, float *dEr, float *scratch, const float *dout,
                        const float *probs, const uint8_t *mask, const float *q, const float *k, const float *v,
                        const float *Er, const AttnDims *d);

// ---- hourglass resampling (model.md §6); all per batch item, along time ------------------------
// inp (B,T,C) -> out (B,Tp,C): the T rows, then Tp-T zero rows (Tp >= T, the next multiple of K)
void pad_forward(float *out, const float *inp, int B, int T, int Tp, int C);
void pad_backward(float *dinp, const float *dout, int B, int T, int Tp, int C);
// the inverse: inp (B,Tp,C) -> out (B,T,C), its first T rows
void crop_forward(float *out, const float *inp, int B, int Tp, int T, int C);
void crop_backward(float *dinp, const float *dout, int B, int Tp, int T, int C);
// causal shift by K-1 rows: out[t] = inp[t-(K-1)], zero rows for t < K-1; inp, out (B,T,C)
void shift_forward(float *out, const float *inp, int B, int T, int C, int K);
void shift_backward(float *dinp, const float *dout, int B, int T, int C, int K);
// naive downsampling: out[i] = mean(inp[K*i .. K*i+K-1]); inp (B,T,C), T % K == 0 -> out (B,T/K,C)
void meanpool_forward(float *out, const float *inp, int B, int T, int C, int K);
void meanpool_backward(float *dinp, const float *dout, int B, int T, int C, int K);
// naive upsampling: out[t] = inp[t/K]; inp (B,T/K,C) -> out (B,T,C)
void repeat_forward(float *out, const float *inp, int B, int T, int C, int K);
void repeat_backward(float *dinp, const float *dout, int B, int T, int C, int K);
// (Linear down/upsampling needs no op of its own: K consecutive rows of a (B,T,C) block are one (K*C) row, so
//  it is linear_forward on the same memory viewed as (B*T/K, K*C), or producing it.)

// ---- losses (model.md §7) ---------------------------------------------------------------------------
// Cross-entropy over targets != PAD (id 0), mean over those. logits (N,V), targets (N) -> returns the loss;
// probs (N,V) saved (softmax); *n_valid = number of non-PAD targets (loss 0 when none).
float crossentropy_forward(float *probs, const float *logits, const int32_t *targets, int N, int V, int *n_valid);
// dlogits += scale * (probs - onehot) / n_valid on non-PAD rows (scale = upstream gradient of the loss)
void crossentropy_backward(float *dlogits, const float *probs, const int32_t *targets, int N, int V, int n_valid,
                           float scale);
// Both at once without probs: dlogits = scale * (softmax - onehot) / n_valid on non-PAD rows, 0 on PAD rows
// (written, not accumulated): the bytes of crossentropy_forward, then crossentropy_backward on zeros.
float crossentropy_fused(float *dlogits, const float *logits, const int32_t *targets, int N, int V, float scale,
                         int *n_valid);
// Scoring (evaluate.h), every row of logits (N,V): nll[i] = logsumexp(row) - row[targets[i]], in double (the exp of
// each logit less the row's maximum, summed in order), and best[i] = the row's argmax, the first of equal maxima.
// A row holding a NaN or an infinity gets best -1, and a target outside 0..V-1 nll NaN. PAD rows are scored too.
void score_rows(double *nll, int32_t *best, const float *logits, const int32_t *targets, int N, int V);
// Sum over batch items and row pairs (2i, 2i+1) of cos(row 2i, row 2i+1); an odd last row is left out.
// h (B,T,C) -> returns the sum; *n_pairs = B * (T/2). The caller pools sums and counts over hidden states.
double cosine_pairs_forward(const float *h, int B, int T, int C, long *n_pairs);
// dh += scale * d(sum)/dh
void cosine_pairs_backward(float *dh, const float *h, int B, int T, int C, float scale);
// Sum over batch items of sum_{i != j} exp(-cos(row i, row j)); h (B,T,C). Work: B*T*T dot products.
double exp_cosine_forward(const float *h, int B, int T, int C);
void exp_cosine_backward(float *dh, const float *h, int B, int T, int C, float scale);

#endif
