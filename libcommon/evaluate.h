// evaluate: what bin/eval measures (issue "eval"). Held-out likelihood over every token of a shard exactly once
// (data.h's evaluation windows, as train's validation), in total and per token type; and the generation study:
// for test documents, the first P tokens prompt the model (sampler.h), and prompt -> generated is compared with
// prompt -> original continuation on music features (stats.h), each with the two-sample KS test between the
// two distance distributions. No registry or printing here: tools/eval.c does those.
#ifndef EVALUATE_H
#define EVALUATE_H

#include <signal.h>

#include "data.h"
#include "hg.h"
#include "remi.h"
#include "sampler.h"

#define EVAL_N_TYPES 8
// KL smoothing of the study: a continuation of a few hundred tokens leaves many histogram bins empty, and with
// stats.h's 1e-6 one empty bin would dominate the divergence; 1% per bin keeps it a comparison of shapes.
#define EVAL_KL_EPS 1e-2 // TokType: special (EOS), Bar, Position, Program, Pitch, Velocity, Duration, Chord

typedef struct EvalLikelihood {
    double loss, perplexity, accuracy; // mean cross-entropy (nats), exp(loss), top-1 accuracy
    long n;                            // targets scored
    double type_loss[EVAL_N_TYPES], type_accuracy[EVAL_N_TYPES];
    long type_n[EVAL_N_TYPES];
    long bad_window; // with -2: the first evaluation window whose logits are not finite
} EvalLikelihood;

// m must be allocated for (B, input_length) with hg_alloc. train's validation uses this too, so val and test
// losses are the same computation. Returns 0, or -1 when ds has no targets or *stop (if given) became non-zero
// midway (nothing is reported then), or -2 when a scored row of logits holds a NaN or an infinity (a diverged or
// corrupt model: out->bad_window names the window, data.h's evaluation window index).
int evaluate_likelihood(HgModel *m, const DataSet *ds, volatile sig_atomic_t *stop, EvalLikelihood *out);

enum { // the generation study's features
    EF_PITCH_CLASS, EF_DURATION, EF_VELOCITY, EF_CHORD, // KL(prompt histogram || continuation histogram)
    EF_DENSITY, EF_POLYPHONY, EF_RANGE,                 // |prompt value - continuation value|
    EF_N
};
extern const char *const evaluate_feature_names[EF_N]; // "pitch_class_kl", ..., "pitch_range_diff"

typedef struct EvalGeneration {
    int n_docs;                                  // documents studied (those with >= prompt + continuation tokens)
    double gen_mean[EF_N], orig_mean[EF_N];      // mean distance prompt -> generated, prompt -> original
    double ks_d[EF_N], ks_p[EF_N];               // two-sample KS between the two distance samples
    double skipped_share;                        // generated tokens that decoding skips (REMI validity): tokens
                                                 // skipped in prompt + generation beyond those of the prompt's
                                                 // whole notes, over the generated tokens
    double in_key_gen, in_key_orig;              // notes of the continuation in the prompt's estimated key
    long n_generated;                            // generated tokens
} EvalGeneration;

typedef struct EvalGenOpts {
    int n_docs, prompt, continuation, batch;
    SampleOpts sample;
    // Optional: the token sequences of the first n_examples studied documents, to listen to (eval --study-out).
    // examples: 2 * n_examples buffers owned by the caller, appended to: [2i] prompt + original continuation,
    // [2i + 1] prompt + generated continuation; example_docs[i]: the shard index of document i. n_examples may
    // exceed the documents studied; the rest are left empty (EvalGeneration.n_docs says how many were filled).
    int n_examples;
    IdBuf *examples;
    int64_t *example_docs;
} EvalGenOpts;

// Runs the study on the first o->n_docs documents of ds (in shard order) that hold at least prompt +
// continuation tokens. d: a decoder of o->batch items on the model. Returns 0, or -1 with err.
int evaluate_generation(Decoder *d, const DataSet *ds, const EvalGenOpts *o, EvalGeneration *out, char *err);

#endif
