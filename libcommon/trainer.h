// trainer: one optimisation step (gradient accumulation over micro-batches, the three losses of model.md §7,
// clipping, OneCycle, Adam) and the trainer-state file (validation is evaluate_likelihood, evaluate.h) that makes a resumed run bitwise
// equal to an uninterrupted one. The trainer-state file (trainer.state, our own format): a 256 x int32 header
// (TS_H_* slots; 64-bit values take two slots, low word first) then the weights, Adam m and Adam v (n_floats
// float32 each). The weights are in it too, so a resume never depends on which of the two checkpoint files was
// written last. No registry, no progress output here: tools/train.c does those.
#ifndef TRAINER_H
#define TRAINER_H

#include <signal.h>
#include <stdint.h>

#include "config.h"
#include "data.h"
#include "hg.h"

#define TS_MAGIC 0x52544d48 // "HMTR" on disk
#define TS_VERSION 1
enum {
    TS_H_MAGIC = 0,
    TS_H_VERSION = 1,
    TS_H_N_FLOATS = 2,    // i64
    TS_H_STEP = 4,        // i64, optimizer steps done
    TS_H_RUN_ID = 6,      // i64, registry run id (0: none)
    TS_H_CONFIG_HASH = 8, // u64, fnv1a of the resolved config JSON
    TS_H_VOCAB_HASH = 10, // u64
    TS_H_BEST_VAL = 12,   // f64 bits, best validation loss so far (inf: none)
    TS_H_PRECISION = 14,  // backend.h's PREC_*: 0 float32 (also in states written before it), 1 TF32, 2 bf16
};

typedef struct Trainer {
    const RunConfig *rc;
    HgModel m;
    float *adam_m, *adam_v; // n_floats each
    long step;              // optimizer steps done
    double best_val;
    double t_data;          // seconds spent making windows in trainer_step (the data path), for reports
    int precision;          // PREC_*: saved with the state (TS_H_PRECISION), read back by trainer_load; the caller sets it
    int B, T, V;
    int A, S;                 // micro-batches per step (grad_accum); loss terms per micro-batch (1 + hidden states)
    int32_t *win;             // one window (T+1), host memory
    float *dlogits;           // (B, T, V), the backend's memory (so are adam_m, adam_v and dh)
    float **dh;               // gradients of the hidden states of the auxiliary losses (m.max_hidden)
    // A step's inputs and outputs, one block in host memory (page-locked where the backend has it) and its copy in
    // the backend's: the A micro-batches' dropout seeds, Adam's constants, inputs (A, B, T) and targets (A, B, T);
    // then what the step gives back: the gradient norm and the A * S loss terms (doubles)
    char *io_h, *io_b;
    size_t in_bytes, out_bytes;
    int pinned;               // io_h is page-locked (a graph may copy from it)
    int use_graph;            // HMT_GPU_STEP_GRAPH=1: the step is captured once and replayed (the GPU's graphs)
    void *graph;              // the captured step, or NULL
    int n_captures;           // how often the step was captured (once, or again when its graph went stale)
    size_t reserved;          // bytes of the GPU block trainer_init reserved for the run (0: none, the CPU)
} Trainer;

// What training rc takes, in bytes, before anything is allocated (hg_plan and the trainer's own buffers).
typedef struct TrainPlan {
    size_t n_floats;                  // parameters
    double weights, grads, adam, acts; // weights include the parameter table; acts: activations, loss buffers
    double total;
} TrainPlan;
int trainer_plan(const RunConfig *rc, int V, TrainPlan *p, char *err);

// Builds the model of rc (vocabulary V) on backend be (NULL: the CPU), initialises the weights from train.seed and
// allocates everything a step needs: on a GPU as one block, sized by a dry run of the set-up and a step
// (backend.h dry_begin; HMT_GPU_RESERVE=0 in the environment: block by block), so that no step allocates. Returns
// 0, or -1 with err (a configuration hg_build refuses, a backend that cannot take the model).
int trainer_init(Trainer *tr, const RunConfig *rc, int V, const struct Backend *be, char *err);
void trainer_free(Trainer *tr);

// One optimizer step on windows from train. Returns the mean loss over the micro-batches; *grad_norm gets the
// gradient norm before clipping and *lr the learning rate used. When the loss or the gradient is not finite the
// weights are left untouched and step is not advanced (the caller stops the run). The step's ops wait for a GPU
// once, at the end: its inputs go in as one copy, its loss terms and norm come back as one. With
// HMT_GPU_STEP_GRAPH=1 in the environment at trainer_init (a GPU backend; page-locked host memory to be had), the
// second step is captured as one CUDA graph that every later step replays: the same bytes as launching its ops.
double trainer_step(Trainer *tr, const DataSet *train, double *grad_norm, double *lr);

// The loss of model.md §7 for m's last forward pass on targets tgt (B*T), with its gradients written (not
// accumulated) into dlogits (B*T, V; the fused cross-entropy: no probabilities are stored) and dh (dh[i] sized
// like m->hidden[i]), all scaled by `scale`. Every pointer is m's backend's memory.
double trainer_loss(const HgModel *m, const int32_t *tgt, int loss, double alpha, float *dlogits, float *const *dh,
                    float scale);

// Writes the trainer state atomically. Dies on I/O failure (the previous file stays in place).
void trainer_save(const Trainer *tr, const char *path, uint64_t config_hash, uint64_t vocab_hash, int64_t run_id);
// Reads a trainer state into tr (built for the same config). Returns 0, or -1 with err: not a trainer state,
// another version, another config or vocabulary, a wrong size.
int trainer_load(Trainer *tr, const char *path, uint64_t config_hash, uint64_t vocab_hash, int64_t *run_id,
                 char *err);

#endif
