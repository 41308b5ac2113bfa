// hg: the model of spec/model.md: the RPR Music Transformer (an integer depth) and the Hourglass (a
// [pre, valley, post] depth tree, any nesting), forward and backward, on the ops of ops.h.
// Parameters live in one float block described by one table of {name, shape} in a fixed order; gradients use the
// same table. Activations for a given (B, T) are one block too, planned once by hg_alloc; nothing is allocated
// inside hg_forward / hg_backward. hg_backward mirrors hg_forward op for op, in reverse. No file I/O here.
#ifndef HG_H
#define HG_H

#include <stddef.h>
#include <stdint.h>

#include "ops.h"

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
    // A run option, not the model's: the backward recomputes linear1, ReLU and dropout (the same seed, so the same
    // bytes) instead of keeping their output, the largest activation (N x F floats a layer), at one more product
    // of linear1's size a layer
    int recompute_ffn;
    HgLevel top;
} HgConfig;

#define HG_MAX_DIMS 3
typedef struct HgParam {
    char *name; // the reference's state_dict name (malloc'd; any length: nesting makes names long)
    int ndim, shape[HG_MAX_DIMS];
    size_t offset, size; // in floats, into the parameter block
} HgParam;

typedef struct HgActs HgActs; // the activation plan, private to hg.c
struct Backend;


typedef struct HgModel {
    HgConfig cfg;
    HgParam *params;
    int n_params;
    int *by_name;       // parameter indices sorted by name (hg_param_index's binary search)
    size_t n_floats;
    float *w, *dw; // parameters and gradients, n_floats each (host memory)
    float *pe;     // positional table (L, C): a buffer, not a parameter
    // The backend the forward and backward run on (backend.h; the CPU after hg_build) and its views of w, dw and
    // pe: the same pointers on the CPU, the backend's own copies otherwise (hg_set_backend; keep them in step with
    // hg_weights_to_host / hg_weights_to_backend). logits and hidden are the backend's memory too.
    const struct Backend *be;
    float *bw, *bdw, *bpe;
    float *logits_host; // hg_logits_host's copy (NULL on the CPU)
    HgActs *acts;
    int B, T;           // the shape hg_alloc planned for
    float *logits;      // (B, T, V) after hg_forward
    int n_hidden;       // hidden states for the auxiliary losses after hg_forward
    int max_hidden;     // room in hidden / hidden_T: two per hourglass level
    const float **hidden;
    int *hidden_T;
} HgModel;

// What a model takes before anything is allocated, from its configuration alone (no table is built, so a
// config of any size can be sized and refused). Floats and bytes; the figures hg_build and hg_alloc then use.
typedef struct HgPlan {
    size_t n_floats;   // parameters (weights; gradients are as many)
    size_t n_tensors;  // entries of the parameter table
    size_t table_bytes; // the table itself and its names, the per-layer bookkeeping
    size_t act_bytes;  // hg_alloc's activation block for (B, T) on the CPU, 0 when B = 0
} HgPlan;

// Sizes the model of cfg and, when B > 0, its activations for (B, T) (1 <= T <= L). Returns 0, or -1 with err for
// the configurations hg_build refuses, or when a figure overflows size_t.
int hg_plan(const HgConfig *cfg, int B, int T, HgPlan *plan, char *err);
// Builds the parameter table for cfg (copied; the depth tree is deep-copied) and allocates w and dw (zeroed).
// Returns 0, or -1 with err (a bad configuration: heads not dividing d_model, a factor < 1, two parameters of one
// name, ...).
int hg_build(HgModel *m, const HgConfig *cfg, char *err);
// Initialises w from seed (PyTorch-like: uniform +-1/sqrt(fan_in) for linears, ones/zeros for LayerNorm,
// N(0,1) embedding with a zero PAD row, N(0, 0.02) Er).
void hg_init_weights(HgModel *m, uint64_t seed);
// Index of the parameter called name, or -1.
int hg_param_index(const HgModel *m, const char *name);
// Plans and allocates activations for batch B and length T (1 <= T <= L). On a GPU the plan depends on the
// precision set now (backend.h act16: which activations are kept as bfloat16); after a change of precision, call
// hg_alloc again (under another precision the bf16 attention refuses to run, naming why).
void hg_alloc(HgModel *m, int B, int T);
// Moves m to backend be before hg_alloc: w (as it is now) and pe are copied into the backend's memory and its
// gradients zeroed there. A no-op for the CPU. Returns 0, or -1 with err (out of device memory: the figures).
int hg_set_backend(HgModel *m, const struct Backend *be, char *err);
// Copies the backend's weights into m->w (before writing a checkpoint), or m->w into the backend's (after reading
// one, or initialising); the backend's gradients into m->dw (tests). No-ops on the CPU.
void hg_weights_to_host(HgModel *m);
void hg_weights_to_backend(HgModel *m);
void hg_grads_to_host(HgModel *m);
// The last forward's logits (B, T, V) in host memory: m->logits on the CPU, else a copy.
const float *hg_logits_host(HgModel *m);
// The last forward's rows scored against tgt (B, T; host memory), ops.h's score_rows into host memory: nll (B * T
// doubles) and best (B * T). On a GPU the rows are scored there and only these numbers come home, not the logits.
void hg_score(HgModel *m, const int32_t *tgt, double *nll, int32_t *best);
// Bytes of the activation block the last hg_alloc made: on the CPU hg_plan's act_bytes for the same B, T (hg_plan
// counts the CPU's plan; a GPU's keeps no attention scratch, and its tokens and scored rows instead).
size_t hg_act_bytes(const HgModel *m);
// tok (B,T, host memory) -> m->logits, m->hidden. dropout_seed makes dropout repeatable; train = 0 disables dropout.
// On the CPU the forward keeps tok itself for hg_backward: it must stay in place until then.
void hg_forward(HgModel *m, const int32_t *tok, int train, uint64_t dropout_seed);
// hg_forward with the tokens already in the backend's memory and the dropout seed a SeedRef (ops.h) whose base is
// there too (trainer.c's step, which a GPU graph replays with new tokens and seeds); tok must stay in place until
// hg_backward has run.
void hg_forward_b(HgModel *m, const int32_t *tok, int train, SeedRef dropout_seed);
// Accumulates into m->bdw (m->dw on the CPU) the gradient, through the last forward (its tokens and activations), of
// the loss whose gradient wrt the logits is dlogits (B,T,V) and wrt hidden state i is dhidden[i] (same shape as
// m->hidden[i]; NULL entries or dhidden = NULL for none).
void hg_backward(HgModel *m, const float *dlogits, float *const *dhidden);
void hg_free(HgModel *m);

#endif
