// remi: the REMI vocabulary and tokenizer of MidiTok 3.0.0 with the reference configuration (spec/remi.md).
// remi_encode() turns a Score into token ids exactly as MidiTok does (preprocessing, chords, time tokens);
// remi_decode() turns ids back into a Score as MidiTok's tokens_to_midi does. The vocabulary is fixed: 348 tokens,
// ids in MidiTok's insertion order. Does not read or write files.
#ifndef REMI_H
#define REMI_H

#include <stddef.h>
#include <stdint.h>

#include "midi.h"

#define REMI_VOCAB_SIZE 348
enum {
    REMI_PAD = 0,
    REMI_BOS = 1,
    REMI_EOS = 2,
    REMI_MASK = 3,
    REMI_BAR = 4,
    REMI_PITCH0 = 5,      // Pitch_21 .. Pitch_108
    REMI_VELOCITY0 = 93,  // 16 velocity bins
    REMI_DURATION0 = 109, // 64 durations
    REMI_POSITION0 = 173, // Position_0 .. Position_31
    REMI_CHORD0 = 205,    // 14 chord qualities
    REMI_PROGRAM0 = 219,  // Program_-1 .. Program_127
};
#define REMI_PITCH_MIN 21
#define REMI_PITCH_MAX 108
#define REMI_TPQ 8            // ticks per quarter after preprocessing
#define REMI_TICKS_PER_BAR 32 // bars are always 4/4
#define REMI_MAX_BARS 200000  // a document may not span more bars than this (about 111 hours at 120 qpm)

typedef enum { TOK_SPECIAL, TOK_BAR, TOK_POSITION, TOK_PROGRAM, TOK_PITCH, TOK_VELOCITY, TOK_DURATION, TOK_CHORD } TokType;

// Whether id is a Program token (Program_-1 is drums), a Pitch, a Velocity (any int: out of range is no token)
static inline int remi_is_program(int32_t id) { return id >= REMI_PROGRAM0 && id < REMI_VOCAB_SIZE; }
static inline int remi_is_pitch(int32_t id) { return id >= REMI_PITCH0 && id < REMI_VELOCITY0; }
static inline int remi_is_velocity(int32_t id) { return id >= REMI_VELOCITY0 && id < REMI_DURATION0; }

// Token string of id (0 <= id < REMI_VOCAB_SIZE), and its length.
const char *remi_token_str(int id);
int remi_token_len(int id);
TokType remi_token_type(int id);
// Id of the token string s[0..len), or -1 if it is not in the vocabulary.
int remi_token_id(const char *s, size_t len);
// Duration in ticks of a Duration token id; velocity of a Velocity id; pitch of a Pitch id; program of a Program id.
int remi_duration_ticks(int id);
int remi_velocity(int id);
int remi_pitch(int id);
int remi_program(int id);
// 64-bit hash of the vocabulary (every token string in id order), stored with shards and checkpoints.
uint64_t remi_vocab_hash(void);

typedef struct IdBuf {
    int32_t *ids;
    size_t n, cap;
} IdBuf;
void idbuf_push(IdBuf *b, int32_t id);

// Tokenizes s, appending to out. s is preprocessed in place (resampled, tracks merged, notes quantized, sorted and
// de-duplicated) as MidiTok does. Returns 0, or -1 with err (a document over REMI_MAX_BARS bars).
int remi_encode(Score *s, IdBuf *out, char *err);

// The time (REMI ticks from the first bar) that decoding has reached after ids[0..n): Bar and Position tokens set
// it as in remi.md §6 (the first Bar, or a Position before any Bar, opens bar 0 at tick 0; each further Bar is
// 32 ticks on; Position_k is k ticks into its bar).
int64_t remi_time_at(const int32_t *ids, size_t n);

// Decodes ids[0..n) into out (tpq 8, one track per program in first-appearance order), per remi.md §6.
// Ill-formed sequences decode as far as they make sense; *n_skipped counts tokens that had no effect because
// they broke the grammar (a Pitch without Velocity and Duration, a stray Velocity or Duration, special tokens).
// Ids must be in range (checked by the caller).
void remi_decode(const int32_t *ids, size_t n, Score *out, size_t *n_skipped);

#endif
