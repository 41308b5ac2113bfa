// miditok: files exchanged with MidiTok 3.0.0 (github.com/Natooz/MidiTok), the tokenizer this project's REMI
// reproduces (spec/remi.md). Owns two formats: the tokenizer parameters file (`tokenizer.json`, what
// `MIDITokenizer.save_params` writes and `REMI(params=FILE)` loads) for the reference configuration, and MidiTok's
// JSON token files (`{"ids": [...], ...}`, one per song, as `tokenize_midi_dataset` / `save_tokens` write them).
// cJSON is used here (reading token files) besides config.c and ckpt.c. No MIDI, no tokenization here.
#ifndef MIDITOK_H
#define MIDITOK_H

#include <stdio.h>

#include "remi.h"

#define MIDITOK_MAX_BYTES (256u << 20) // a token file larger than this is refused

// Writes the parameters file of MidiTok's REMI with the reference configuration (remi.md §0), so that
// `miditok.REMI(params=FILE)` builds the same 348-token vocabulary with the same ids as remi.h, and decodes ids as
// remi_decode does. Pure text, no failure of its own: the caller checks the stream (out_commit, stdout_close).
void miditok_write_params(FILE *out);

// Reads a MidiTok token file: a JSON object whose "ids" is a flat list of integer ids in 0..REMI_VOCAB_SIZE-1
// (a one-stream tokenizer's output; other keys such as "programs" are ignored). Appends the ids to out. Refused,
// -1 with err (the reason, not the path): unreadable or over MIDITOK_MAX_BYTES, not JSON, no "ids", ids that
// are not a flat list of integers (a multi-stream tokenizer's list of lists), an id out of range, and
// "ids_bpe_encoded": true (BPE ids belong to another vocabulary).
int miditok_read_ids(const char *path, IdBuf *out, char *err);

#endif
