// docpage: the documents of the report's page (tools/report.c): a token document's piano roll (plot.h) with an
// <audio> player of its Ogg Vorbis file when `make audio` rendered one, and the eval study's pairs (prompt +
// original, prompt + generated) side by side on one time axis. With a page folder the audio is copied beside the
// page (audio/run-ID/...) and referenced by relative path. Problems with a file are a note on the page and a
// warning on stderr, never a failure. Owns no file format.
#ifndef DOCPAGE_H
#define DOCPAGE_H

#include <stdio.h>

typedef struct DocPage {
    FILE *out;       // the page being written
    const char *dir; // the page's folder, where audio/ is copied; NULL: players refer to the files in place
} DocPage;

// <p class="note">text</p>, escaped.
void docpage_note(const DocPage *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
// Up to *left documents of the sample file path (token documents), each a piano roll with its audio
// (DIR/midi/STEM.ogg, STEM as remi2midi -O names files) in a block of its own; *left goes down by those drawn.
void docpage_samples(const DocPage *p, const char *path, long long run, long *left);
// The study pairs of RUN_DIR/study.txt (eval --study-out), with their audio (RUN_DIR/study/STEM.ogg); nothing when
// the run has no study file.
void docpage_study(const DocPage *p, const char *run_dir, long long run);

#endif
