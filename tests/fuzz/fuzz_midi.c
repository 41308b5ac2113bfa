// fuzz_midi: libFuzzer harness for the MIDI reader and the tokenizer (clang -fsanitize=fuzzer,address,undefined;
// `make fuzz` builds and runs it). Each input goes through midi_parse with a visitor that checks the reader's
// promises (payloads inside the buffer, ticks non-decreasing per track, data bytes below 128, tracks in order),
// then midi_to_score + remi_encode, then remi_decode of the tokens. A broken promise aborts, so libFuzzer saves the
// input. With FUZZ_MIDI_WRITE=1 the decoded Score is also written with midi_write_score (slow: libsmf and a file).
// Crashes, timeouts and out-of-memory inputs are committed as tests/data/bad/fuzz-*.mid (see test_midi_bad.c).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "midi.h"
#include "remi.h"
#include "util.h"

// What the checking visitor knows about the input and the track being read.
typedef struct Check {
    const uint8_t *buf;
    size_t n;
    int track;      // current MTrk, -1 before the first
    int64_t tick;   // last tick in it
    bool in_track;
} Check;

// Reports a broken promise and aborts, so libFuzzer keeps the input.
static void fail(const char *what)
{
    fprintf(stderr, "fuzz_midi: broken reader promise: %s\n", what);
    abort();
}

// Visitor: tracks begin in order, from 0, never nested.
static void c_begin(void *ctx, int track)
{
    Check *c = ctx;
    if (c->in_track || track != c->track + 1) fail("tracks out of order");
    c->track = track;
    c->tick = 0;
    c->in_track = true;
}

// Visitor: each event is well formed and its payload lies inside the input.
static void c_event(void *ctx, int track, const MidiEvent *ev)
{
    Check *c = ctx;
    if (!c->in_track || track != c->track) fail("event outside its track");
    if (ev->tick < c->tick) fail("tick went back");
    c->tick = ev->tick;
    if (ev->status < 0x80) fail("status below 0x80");
    if (ev->status < 0xf0) {
        if (ev->d1 > 127 || ev->d2 > 127) fail("data byte above 127");
        if (ev->len || ev->data) fail("payload on a channel message");
    } else if (ev->status == 0xff || ev->status == 0xf0 || ev->status == 0xf7) {
        if (ev->len && !ev->data) fail("payload without data");
        if (ev->data && (ev->data < c->buf || ev->len > c->n || ev->data > c->buf + c->n - ev->len))
            fail("payload outside the buffer");
        if (ev->len) { // touch both ends, so ASan sees any payload that is not really there
            volatile uint8_t x = ev->data[0];
            x = ev->data[ev->len - 1];
            (void)x;
        }
    } else {
        fail("unexpected status reported");
    }
}

// Visitor: a track ends once, after it began.
static void c_end(void *ctx, int track)
{
    Check *c = ctx;
    if (!c->in_track || track != c->track) fail("track ended twice");
    c->in_track = false;
}

static char write_path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    const char *w = getenv("FUZZ_MIDI_WRITE");
    if (w && strcmp(w, "1") == 0) {
        snprintf(write_path, sizeof write_path, "/tmp/fuzz_midi.%d.mid", (int)getpid());
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[ERR_MAX];
    Check c = {data, size, -1, 0, false};
    MidiVisitor v = {c_begin, c_event, c_end, &c};
    MidiInfo info;
    int rc = midi_parse(data, size, &info, &v, err);
    if (rc == 0 && (c.in_track || info.n_tracks != c.track + 1)) fail("track count");
    if (rc == 0 && (info.tpq <= 0 || info.tpq > 0x7fff)) fail("ticks per quarter out of range");

    Score s;
    int rc2 = midi_to_score(data, size, &s, err);
    if ((rc < 0) != (rc2 < 0)) fail("midi_parse and midi_to_score disagree");
    if (rc2 < 0) return 0;
    IdBuf ids = {0};
    if (remi_encode(&s, &ids, err) == 0) {
        for (size_t i = 0; i < ids.n; i++)
            if (ids.ids[i] < 0 || ids.ids[i] >= REMI_VOCAB_SIZE) fail("token id out of range");
        Score d;
        size_t n_skipped;
        remi_decode(ids.ids, ids.n, &d, &n_skipped);
        if (n_skipped) fail("the tokenizer's own output does not decode cleanly");
        if (write_path[0]) {
            if (midi_write_score(&d, write_path, err) < 0) fail("midi_write_score failed on decoded tokens");
            unlink(write_path);
        }
        score_free(&d);
    }
    free(ids.ids);
    score_free(&s);
    return 0;
}
