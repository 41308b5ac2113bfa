// sampler: token generation on the incremental decoder (decode.h): temperature, top-k, top-p (nucleus) and the
// REMI grammar mask (grammar.h), for B items at once. Item b draws from its own random stream, a function of
// (seed, stream index) only, so a sample does not depend on the batch it was generated in; the stream index is b
// unless SampleOpts.streams says otherwise. Used by sample and eval.
#ifndef SAMPLER_H
#define SAMPLER_H

#include <stdint.h>

#include "decode.h"

typedef struct SampleOpts {
    double temperature; // 0: greedy (argmax); else logits / temperature
    int top_k;          // keep the k most likely tokens (0: all)
    double top_p;       // keep the smallest set whose probability reaches p (1: all)
    int grammar;        // mask tokens that cannot follow (remi.md §5)
    uint64_t seed;
    const uint64_t *streams; // item b draws from stream streams[b] (B entries); NULL: from stream b. sample gives
                             // the k-th document of every prompt stream k, so a prompt alone or in a batch of
                             // other prompts continues the same way
} SampleOpts;

// Generates up to n_new tokens for each of B items after prompt (B, P): every item's prompt starts with BOS and
// has the same length P (1 <= P <= input_length). out (B, n_new) gets the generated tokens, n_out[b] how many came before the
// item's EOS (EOS itself is not stored; the rest of the row is PAD). With
// the grammar, an item stopped by n_new is cut back to its last complete note or chord, so it decodes whole. The decoder is reset first and slides its
// window when prompt plus generation exceed the model's input_length (decode.h). Returns 0, or -1 with err (also
// when the logits stop being finite, naming the step and the batch item).
int sample_generate(Decoder *d, int B, const int32_t *prompt, int P, int n_new, const SampleOpts *o, int32_t *out,
                    int *n_out, char *err);

// Draw i of the stream keyed by key, uniform in [0, 1): the 53 high bits of splitmix64(key ^ splitmix64(i)).
// Item b's key is splitmix64(seed) ^ stream * 0x9e3779b97f4a7c15 (decode.h's GPU draw computes the same u).
double sample_uniform(uint64_t key, uint64_t i);

// One draw from logits (V) under o (temperature, top-k, top-p); u is uniform in [0, 1). scratch: 2 V floats and
// V ints. Disallowed tokens carry -INFINITY. Returns the token, or -1 when there is nothing to draw: no token
// allowed, or a logit that is NaN or +inf (a distribution no softmax defines). Exposed for tests.
int sample_pick(const float *logits, int V, const SampleOpts *o, double u, float *scratch, int *order);

#endif
