// data: training and validation windows over a shard (spec/formats.md §3, issue "train"). A document is framed
// BOS tokens EOS; a window is L + 1 framed tokens (inputs 0..L-1, targets 1..L) and never crosses a document.
// Training windows: the start is uniform over every position where a window fits inside its document (a document
// shorter than the window has one start, 0, and the window is padded with PAD, which the loss ignores). Window i
// of a run is a pure function of (seed, i), so the data position in a checkpoint is one counter. Augmentation
// (data_augment_draw) is a function of (seed, i) too.
// Evaluation windows: consecutive windows starting at 0, L, 2L, ... of every document (or of a fixed subset, see
// data_limit_eval), so every target token is scored exactly once whatever the batch size.
// Memory: the shard stays a read-only map. A data set keeps 8 bytes per document for training starts and/or
// evaluation windows; with DATA_LAZY the pages of a window are dropped from the process once it is copied, so
// resident memory does not grow with the corpus or with the windows drawn.
#ifndef DATA_H
#define DATA_H

#include <stdint.h>

#include "shard.h"

enum {
    DATA_TRAIN = 1, // training starts (data_train_window)
    DATA_EVAL = 2,  // evaluation windows (data_eval_window)
    DATA_LAZY = 4,  // map the shard without reading its tokens (shard_map); windows check their token ids
};

typedef struct DataSet {
    Shard shard;
    const char *path;
    int L;                 // input_length: windows hold L + 1 tokens
    int lazy;              // opened with DATA_LAZY
    int64_t n_starts;      // training starts over all documents (DATA_TRAIN)
    int64_t *start_cum;    // start_cum[d]: starts before document d (n_docs + 1)
    int64_t n_eval;        // evaluation windows over the evaluated documents (DATA_EVAL)
    int64_t n_eval_docs;   // documents evaluated: all, or the subset of data_limit_eval
    int64_t *eval_docs;    // their indices in shard order; NULL: every document
    int64_t *eval_cum;     // eval_cum[j]: evaluation windows before evaluated document j (n_eval_docs + 1)
    int64_t n_targets;     // non-PAD targets over all evaluation windows (= tokens + documents evaluated)
} DataSet;

// Opens a shard for windows of L + 1 tokens; flags: DATA_TRAIN and/or DATA_EVAL (which is data_limit_eval(ds, 0):
// leave it out when calling that with a limit), optionally DATA_LAZY. Returns
// 0, or -1 with err (unreadable shard, no documents, vocabulary other than vocab_hash). With DATA_LAZY a token id
// outside the vocabulary is found when a window holds it, and the process dies naming the shard.
int data_open(DataSet *ds, const char *path, int L, uint64_t vocab_hash, int flags, char *err);
void data_close(DataSet *ds);

// Limits evaluation to a fixed subset of the documents, the same for every run and seed: documents are taken in
// the order of a hash of their file name (the last component of the name, as the split) until their targets
// reach max_targets; the last one is taken whole, so the subset holds at least max_targets targets (or every
// document). max_targets 0 keeps every document. The subset is evaluated in shard order. Returns 0, or -1 with
// err (a names section that does not hold n_docs names).
int data_limit_eval(DataSet *ds, int64_t max_targets, char *err);

// On-the-fly augmentation (MidiTok's augment_dataset, done per training window): inclusive ranges of offsets.
typedef struct DataAugment {
    int pitch_lo, pitch_hi;       // semitones
    int velocity_lo, velocity_hi; // velocity bins (of 16)
} DataAugment;

// Training window i for seed: out receives L + 1 token ids. aug (NULL: none) shifts them as data_augment_window
// does, by the offsets data_augment_draw gives for (seed, i).
void data_train_window(const DataSet *ds, uint64_t seed, uint64_t i, const DataAugment *aug, int32_t *out);
// Evaluation window k (0 <= k < n_eval): out receives L + 1 token ids, PAD after the document's end.
void data_eval_window(const DataSet *ds, int64_t k, int32_t *out);

// The offsets for training window i of seed: uniform in each range, a function of (seed, i) only (a stream of its
// own, so turning augmentation on leaves the windows themselves where they were).
void data_augment_draw(const DataAugment *a, uint64_t seed, uint64_t i, int *pitch, int *velocity);
// Shifts the n tokens of w in place: the Pitch token of every pitched note by pitch semitones and its Velocity
// token by velocity bins. Drums (notes after Program_-1) are untouched, and Chord tokens carry no root
// (remi.md: chord_tokens_with_root_note is False), so they stay. prev_program is the program in force at w[0]
// (its Program token may lie before the window): -1 drums, anything else pitched. When the pitch offset would take
// a pitched note of the window outside Pitch_21..Pitch_108, the window takes the nearest offset that keeps every
// note inside (0 always does); velocities are clipped to the 16 bins, as MidiTok clips them. Returns the pitch
// offset applied.
int data_augment_window(int32_t *w, int n, int prev_program, int pitch, int velocity);

#endif
