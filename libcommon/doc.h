// doc: token documents, the text that flows through pipes (spec/formats.md §2).
// One document per line: NAME<TAB>TOKENS, tokens space-separated, as MidiTok strings or decimal ids (readers
// accept both, even mixed). No BOS/EOS inside documents. Reading is bounded: a line over DOC_MAX_LINE is an error.
// The reader uses the stream's file descriptor directly when it has one (read(2), so a document is seen as soon
// as its line arrives); do not mix it with stdio reads of that stream.
#ifndef DOC_H
#define DOC_H

#include <stdbool.h>
#include <stdio.h>

#include "remi.h"

#define DOC_MAX_LINE (256u << 20)

typedef struct DocReader {
    FILE *fp;
    const char *path; // for messages
    char *buf;
    size_t cap, len, pos;
    long line;        // number of the line last returned
    bool eof;
} DocReader;

typedef struct Doc {
    char *name;  // points into the reader's buffer: valid until the next doc_read
    IdBuf ids;   // owned by the caller; reused across calls
} Doc;

void doc_reader_init(DocReader *r, FILE *fp, const char *path);
void doc_reader_free(DocReader *r);
// Reads the next document (blank lines are skipped). Returns 1, 0 at end of input, or -1 with err
// ("line N: unknown token 'X'", "line N: no TAB after the name", ...).
int doc_read(DocReader *r, Doc *d, char *err);

// Appends "name<TAB>tokens\n" to *buf (size *len, capacity *cap), as strings or as ids.
void doc_format(char **buf, size_t *len, size_t *cap, const char *name, const int32_t *ids, size_t n, bool as_ids);
// Checks a document name: non-empty, no TAB, CR or newline. Returns 0 or -1 with err.
int doc_check_name(const char *name, char *err);

// The file stem remi2midi -O names a document's MIDI file with (render's audio beside it follows): the name's
// last '/' component without its extension, bytes outside [A-Za-z0-9._-] as '_' (a leading '.' too), cut at 200
// bytes, "doc" when that leaves nothing: "dir/x/song.mid" -> "song". Numbering repeats is the caller's.
#define DOC_STEM_MAX 256
void doc_file_stem(const char *name, char stem[DOC_STEM_MAX]);

// The names given out so far, for doc_unique_name (a hash set; zero-initialise it).
typedef struct DocNames {
    char **slot;
    size_t cap, n;
} DocNames;
// stem itself, or stem-2, stem-3, ...: the first name names has not given out yet (remi2midi -O's file names,
// sample's document names). names keeps its own copy; the result is malloc'd and the caller's.
char *doc_unique_name(DocNames *names, const char *stem);
void doc_names_free(DocNames *names);

#endif
