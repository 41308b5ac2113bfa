// shard: the binary token-shard format (spec/formats.md §3) and the name-hash split.
// A shard file: a 256 x int32 little-endian header (SHARD_H_* slots), uint16 tokens of all documents back to back,
// int64 document offsets (n_docs + 1, in tokens), then the NUL-terminated document names. Writers stream tokens and
// fill the header last; readers mmap the file and check magic, version and every size against the file first.
#ifndef SHARD_H
#define SHARD_H

#include <stdint.h>
#include <stdio.h>

#define SHARD_MAGIC 0x53544d48 // "HMTS" on disk
#define SHARD_VERSION 1
#define SHARD_HEADER_INTS 256
enum { // header slots; 64-bit values take two slots, low word first
    SHARD_H_MAGIC = 0,
    SHARD_H_VERSION = 1,
    SHARD_H_VOCAB_SIZE = 2,
    SHARD_H_TOKEN_BYTES = 3, // 2
    SHARD_H_VOCAB_HASH = 4,  // u64
    SHARD_H_N_DOCS = 6,      // i64
    SHARD_H_N_TOKENS = 8,    // i64
    SHARD_H_OFFSETS_AT = 10, // i64, byte position of the offsets
    SHARD_H_NAMES_AT = 12,   // i64, byte position of the names
    SHARD_H_NAMES_BYTES = 14 // i64
};

typedef enum { SPLIT_TRAIN, SPLIT_VAL, SPLIT_TEST } Split;
extern const char *const split_names[3];

// The split of a document: a pure function of the last path component of its name and the seed, so adding
// documents never moves others and the same files split alike whatever folder they were read from.
Split shard_split_of(const char *name, uint64_t seed, double val_ratio, double test_ratio);

// ---- writing ----------------------------------------------------------------------------------
typedef struct ShardWriter {
    FILE *fp;
    const char *path; // for messages
    int64_t n_docs, n_tokens;
    int64_t *offsets;
    size_t cap_offsets;
    char *names;
    size_t names_len, names_cap;
} ShardWriter;

// Starts a shard on an open, empty, seekable stream (from out_open). Dies on I/O errors.
void shard_writer_init(ShardWriter *w, FILE *fp, const char *path);
void shard_writer_add(ShardWriter *w, const char *name, const int32_t *ids, size_t n);
// Writes offsets, names and the header; the caller then commits the file.
void shard_writer_finish(ShardWriter *w, uint64_t vocab_hash, int vocab_size);

// ---- duplicates -----------------------------------------------------------------------------------
// A set of document contents, for shard's duplicate removal: each document is kept as a 128-bit hash of its token
// sequence (two independent 64-bit hashes, so a false match among a million documents has odds near 1e-26), in
// an open-addressing table of 16 bytes per distinct document. Nothing else of a document is kept.
typedef struct ShardDedup {
    uint64_t *keys; // 2 per slot; (0, 0) marks an empty slot
    size_t n, cap;  // documents in the set, slots
} ShardDedup;

// The content hash of ids[0..n). transposed: pitched notes' Pitch tokens are taken relative to the document's
// first pitched note (a Pitch after Program_-1 is a drum and stays as it is; Chord tokens carry no root), so the
// same notes in another key hash alike.
void shard_doc_hash(const int32_t *ids, size_t n, int transposed, uint64_t out[2]);
// Adds h to the set; returns 1 when it was there already (a duplicate), 0 when it is new.
int shard_dedup_add(ShardDedup *d, const uint64_t h[2]);
void shard_dedup_free(ShardDedup *d);

// ---- reading ----------------------------------------------------------------------------------
typedef struct Shard {
    void *map;
    size_t map_len;
    int vocab_size;
    uint64_t vocab_hash;
    int64_t n_docs, n_tokens;
    const uint16_t *tokens;
    const int64_t *offsets;  // document d is tokens[offsets[d] .. offsets[d+1])
    const char **names;      // n_docs pointers into the map (shard_open only; NULL after shard_map)
    const char *names_blob;  // the NUL-terminated names back to back, names_bytes bytes, in the map
    size_t names_bytes;
} Shard;

// Maps and validates path: the header, every size against the file, the document offsets, every token id and the
// names. Reads the whole file once. Returns 0, or -1 with err ("not a shard file", "version 7, expected 1", ...).
int shard_open(Shard *s, const char *path, char *err);
// The same checks but for the token ids and the names, which it does not read: start-up time and resident memory
// then do not grow with the corpus beyond the offsets (8 bytes a document). The caller checks each token id it
// uses (data.c does, per window) and finds names in names_blob; names is NULL.
int shard_map(Shard *s, const char *path, char *err);
void shard_close(Shard *s);

#endif
