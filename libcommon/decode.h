// decode: incremental inference of an HgModel (spec/model.md) with a key/value cache in every attention layer of
// every hourglass level, for sampling. Eval mode only (no dropout). The logits after each token equal those of
// hg_forward(train = 0) over the same tokens (the current window), up to float rounding.
// All batch items advance together, one position per dec_step; memory is planned once in dec_new, nothing is
// allocated afterwards. Owns no file format.
// Threads: the work is split over pool.c's threads (set them with ops_set_threads, which also keeps OpenBLAS
// single-threaded); a decoder uses at most the count pool_threads() had at dec_new. The results do not depend on it.
#ifndef DECODE_H
#define DECODE_H

#include <stdint.h>

#include "hg.h"

typedef struct Decoder Decoder;

typedef struct DecOpts {
    int keep;  // when the window (input_length L tokens) is full, keep the last `keep` tokens (1..L-1); 0: L/2
    int chunk; // rows per pass when prefilling (1..L); 0: 64. Bounds the scratch memory, not the result
    int graph; // on a GPU: 1 replays a step's kernels as a CUDA graph, captured at the first step at its position
               // and decoder state (one graph per position); -1 never; 0 as HMT_GPU_DECODE_GRAPH (1: on; default
               // off). Only where every product of a step fits the matrix-vector kernel (B x the largest shorten
               // factor at most 8 rows, or bf16 below); otherwise, and on the CPU, it has no effect. The same bytes
               // either way
    int fused; // on a GPU: 1 (0: as HMT_GPU_DECODE_FUSED, default on; HMT_GPU_DECODE_FUSED=0 is off) a LayerNorm
               // and the product after it, and attention's last step and its output projection, one kernel each;
               // -1 the separate ops. The same bytes either way
    int bf16;  // on a GPU: 1 reads the linear layers' weights as bfloat16 copies made by dec_new (rounded to
               // nearest even; activations, sums and the rest stay float32): half the bytes a step reads; -1 float32;
               // 0 as HMT_GPU_DECODE_BF16 (1: on; default off). The logits then equal a full forward whose linear
               // weights are so rounded, up to float rounding. No effect on the CPU
    int pdl;   // on a GPU: 1 launches the step's kernels as programmatic dependent launches (each may start while the
               // one before finishes: gpu.h gpu_dec_pdl), in a graph too; -1 never; 0 as HMT_GPU_DECODE_PDL (1: on;
               // default off until a GPU has timed it). The same bytes either way. No effect on the CPU
    int mega;  // on a GPU: 1 runs a pass's kernels (a step's: all of them, the draw too) as one launch of a
               // persistent kernel with grid barriers between them (gpu.h gpu_dec_mega), in a graph too; -1 never;
               // 0 as HMT_GPU_DECODE_MEGA (1: on; default off until a GPU has timed it). The same bytes either way.
               // No effect on the CPU
} DecOpts;

// A decoder for model m and batch B (>= 1), opts NULL for the defaults. m must outlive the decoder, unchanged:
// dec_new copies the weights of linear layers whose output is at least as wide as their input, transposed (the
// layout OpenBLAS's matrix-vector product streams fastest for them), and reads the others in place, so weights
// changed after dec_new are seen only in part: make a new decoder. Memory: those copies, the caches (per layer
// 2*B*rows*d floats) and scratch for B*chunk rows. Returns NULL with err (ERR_MAX bytes) on a bad option.
// On a GPU, heads of more than 1024 columns are refused. Starts empty (as after dec_reset).
Decoder *dec_new(const HgModel *m, int B, const DecOpts *opts, char *err);

// The bytes dec_new(m, B, opts) would allocate (caches, weight copies, scratch), without allocating them.
// Returns 0, or -1 with err as dec_new.
int dec_plan(const HgModel *m, int B, const DecOpts *opts, size_t *bytes, char *err);

// Checks, before allocating, that a decoder of batch dec_B (0: none) and activations for hg_alloc(fwd_B, fwd_T)
// (fwd_B 0: none) fit the memory still available (util.h mem_available; the loaded weights are already taken).
// Returns 0, or -1 with err naming the figures ("needs 3.2 GiB (...); 1.1 GiB available (MemAvailable)").
int dec_check_memory(const HgModel *m, int dec_B, int fwd_B, int fwd_T, char *err);

// Forgets every token: the next token is at position 0 again. Keeps the memory.
void dec_reset(Decoder *d);

// Appends n tokens per batch item, tok (B, n) row-major, at positions dec_len(d) .. dec_len(d)+n-1, in passes of at
// most opts.chunk rows. Returns the logits (B, V) for the position after the last one, owned by the decoder and
// valid until the next call. Returns NULL with err when n < 1, the tokens would overflow the window
// (dec_len(d) + n > L; prefill never slides) or a token is outside 0..V-1; the decoder is then unchanged. On a GPU
// also NULL with err ("gpu: op: reason") when an op failed; the decoder is then of no further use.
const float *dec_prefill(Decoder *d, const int32_t *tok, int n, char *err);

// Appends one token per batch item, tok (B), and returns the logits (B, V) for the next position (as
// dec_prefill). When the window is full (dec_len(d) == L) it first slides: the last `keep` tokens are re-prefilled
// at positions 0 .. keep-1 and tok goes to position keep. The logits then equal hg_forward over exactly those
// keep + 1 tokens. Returns NULL with err for a token outside 0..V-1 (decoder unchanged), or a failed GPU op.
const float *dec_step(Decoder *d, const int32_t *tok, char *err);

// Tokens in the current window (0 .. L).
int dec_len(const Decoder *d);

// The current window's tokens, (B, L) row-major: item b's tokens are at b*L .. b*L + dec_len(d) - 1.
const int32_t *dec_tokens(const Decoder *d);

// Steps run as a captured CUDA graph so far: *captured graphs made, *replayed steps that replayed one (0 and 0
// without graphs).
void dec_graph_stats(const Decoder *d, long *captured, long *replayed);

// ---- the sampler's draw where the decoder runs (sampler.c) ----------------------------------------------------
// On a GPU the draw (sampler.h sample_pick) runs right after the output layer, inside the step and its graph, so a
// token's step needs no work on the host between the logits and the next token.
typedef struct DecDraw {
    double temperature; // as SampleOpts
    int top_k;
    double top_p;
} DecDraw;

// On a GPU: from now on every dec_prefill and dec_step also draws one token per item from the logits it returns,
// as sample_pick(logits of item b with the tokens its mask leaves out at -INFINITY, V, o, u) with
// u = sample_uniform(keys[b], the index dec_draw_index set) (B keys; sampler.h); dec_drawn gives them.
// o NULL stops drawing. Returns 1, or 0 on the CPU (nothing changes: the caller draws from the logits).
int dec_draw_set(Decoder *d, const DecDraw *o, const uint64_t *keys);
// The next call's draw inputs, set before it: the masks, (B, dec_mask_words) in memory the decoder owns (bit v % 32
// of word v / 32 of item b's row: token v may be drawn), and the index of the draw in each item's stream. NULL and
// no effect on the CPU.
uint32_t *dec_draw_mask(Decoder *d);
void dec_draw_index(Decoder *d, uint64_t index);
int dec_mask_words(const Decoder *d); // (V + 31) / 32
// The tokens the last dec_prefill or dec_step drew, (B): the token, -1 where the mask left none, -2 where a logit
// was not finite. NULL when not drawing.
const int32_t *dec_drawn(const Decoder *d);

void dec_free(Decoder *d);

#endif
