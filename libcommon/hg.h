// hg: the model of spec/model.md: the RPR Music Transformer (an integer depth) and the Hourglass (a
// [pre, valley, post] depth tree, any nesting), forward and backward, on the ops of ops.h.
// Parameters live in one float block described by one table of {name, shape} in a fixed order; gradients use the
// same table. Activations for a given (B, T) are one block too, planned once by hg_alloc; nothing is allocated
// inside hg_forward / hg_backward. hg_backward mirrors hg_forward op for op, in reverse. No file I/O here.
#ifndef HG_H
#define HG_H

#include <stddef.h>
#include <stdint.h>

// A level of the depth tree: a plain block of n_layers (valley == NULL), or pre / valley / post with factor s.
typedef struct HgLevel {
    int n_layers;
    int pre, post, s;
    struct HgLevel *valley;
} HgLevel;

typedef struct HgConfig {
    int V, C, NH, F, L; // vocabulary, d_model, heads, dim_feedforward, input_length (rows of every Er)
    float dropout;
    int linear;             // updown_sample_type "linear" (else "naive")
    int attn_resampling;    // cross-attention resampling around every valley
    int save_updown_hidden; // up(v) joins the hidden states of the auxiliary losses
    HgLevel top;
} HgConfig;

#define HG_MAX_DIMS 3
typedef struct HgParam {
    char name[128]; // the reference's state_dict name
    int ndim, shape[HG_MAX_DIMS];
    size_t offset, size; // in floats, into the parameter block
} HgParam;

typedef struct HgActs HgActs; // the activation plan, private to hg.c

typedef struct HgModel {
    HgConfig cfg;
    HgParam *params;
    int n_params;
    size_t n_floats;
    float *w, *dw; // parameters and gradients, n_floats each
    float *pe;     // positional table (L, C): a buffer, not a parameter
    HgActs *acts;
    int B, T;           // the shape hg_alloc planned for
    float *logits;      // (B, T, V) after hg_forward
    int n_hidden;       // hidden states for the auxiliary losses after hg_forward
    const float *hidden[32];
    int hidden_T[32];
} HgModel;

// Builds the parameter table for cfg (copied; the depth tree is deep-copied) and allocates w and dw (zeroed).
// Returns 0, or -1 with err (a bad configuration: heads not dividing d_model, a factor < 1, ...).
int hg_build(HgModel *m, const HgConfig *cfg, char *err);
// Initialises w from seed (PyTorch-like: uniform +-1/sqrt(fan_in) for linears, ones/zeros for LayerNorm,
// N(0,1) embedding with a zero PAD row, N(0, 0.02) Er).
void hg_init_weights(HgModel *m, uint64_t seed);
// Index of the parameter called name, or -1.
int hg_param_index(const HgModel *m, const char *name);
// Plans and allocates activations for batch B and length T (1 <= T <= L).
void hg_alloc(HgModel *m, int B, int T);
// tok (B,T) -> m->logits, m->hidden. dropout_seed makes dropout repeatable; train = 0 disables dropout.
void hg_forward(HgModel *m, const int32_t *tok, int train, uint64_t dropout_seed);
// Accumulates into m->dw the gradient of the loss whose gradient wrt the logits is dlogits (B,T,V) and wrt
// hidden state i is dhidden[i] (same shape as m->hidden[i]; NULL entries or dhidden = NULL for none).
void hg_backward(HgModel *m, const int32_t *tok, const float *dlogits, float *const *dhidden);
void hg_free(HgModel *m);

#endif
