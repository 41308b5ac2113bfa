// test_midi_bad: malformed MIDI through midi_to_score + remi_encode. Every file of tests/data/bad (written by
// tests/data/make_bad_midi.py, plus fuzz-*.mid fuzzer finds) has one stated outcome below: exact tokens, or an error
// whose message contains a given text; lenient readings must also be reported as lenient by midi_parse.
// Also: every prefix of trunc_base.mid, and about 2 MB of random bytes after a valid header (made here, not committed).
// Run from the repository root (make test does). Does not read SHARED data.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "midi.h"
#include "remi.h"
#include "util.h"

#define BAD_DIR "tests/data/bad/"

static int n_pass, n_fail;

// ---- expected outcomes ----------------------------------------------------------------------

// The melody most files carry: C4 D4 E4 F4, quarter notes, velocity 63, one bar.
#define M1 "Position_0 Program_0 Pitch_60 Velocity_63 Duration_1.0.8"
#define M2 "Position_8 Program_0 Pitch_62 Velocity_63 Duration_1.0.8"
#define M3 "Position_16 Program_0 Pitch_64 Velocity_63 Duration_1.0.8"
#define M4 "Position_24 Program_0 Pitch_65 Velocity_63 Duration_1.0.8"
#define MELODY "Bar_None " M1 " " M2 " " M3 " " M4
#define MELODY_2 "Bar_None " M1 " " M2 // its first two notes
#define NONE ""                          // read fine, no notes
#define ERR "error: "                    // prefix of an expected error text

enum { STRICT = 0, LENIENT = 1, ANY = 2 }; // what midi_parse must report in MidiInfo.n_lenient

typedef struct BadCase {
    const char *name; // tests/data/bad/<name>.mid
    const char *want; // tokens (TOKEN*N repeats a token N times), or ERR "text the error message contains"
    int lenient;
} BadCase;

static const BadCase cases[] = {
    // not MIDI, header
    {"empty", ERR "not a MIDI file", ANY},
    {"not_midi_text", ERR "not a MIDI file", ANY},
    {"not_midi_riff", ERR "not a MIDI file", ANY},
    {"not_midi_lowercase", ERR "not a MIDI file", ANY},
    {"mtrk_first", ERR "not a MIDI file", ANY},
    {"trunc_hdr_4", ERR "truncated MIDI header", ANY},
    {"trunc_hdr_9", ERR "truncated MIDI header", ANY},
    {"trunc_hdr_13", ERR "truncated MIDI header", ANY},
    {"hdr_len_0", ERR "MIDI header length 0 is below 6", ANY},
    {"hdr_len_5", ERR "MIDI header length 5 is below 6", ANY},
    {"hdr_len_ffffffff", ERR "truncated MIDI header (length 4294967295)", ANY},
    {"hdr_len_7fffffff", ERR "truncated MIDI header (length 2147483647)", ANY},
    {"hdr_len_beyond", ERR "truncated MIDI header (length 60)", ANY},
    {"hdr_len_8", MELODY, LENIENT},
    {"hdr_len_100", MELODY, LENIENT},
    {"smpte_25fps", ERR "SMPTE time division is not supported", ANY},
    {"smpte_30fps", ERR "SMPTE time division is not supported", ANY},
    {"division_0", ERR "time division is 0", ANY},
    {"division_1", "Bar_None " M1, STRICT},
    {"division_7fff", "Bar_None " M1, STRICT},
    {"format_2", MELODY, STRICT},
    {"format_ffff", MELODY, STRICT},
    {"ntracks_0", MELODY, STRICT},
    {"ntracks_65535", MELODY, STRICT},
    {"header_only", NONE, STRICT},
    // chunks
    {"unknown_chunk_before", MELODY, STRICT},
    {"unknown_chunk_after", MELODY, STRICT},
    {"unknown_chunk_binary_id", MELODY, STRICT},
    {"second_mthd", MELODY, STRICT},
    {"chunk_len_too_long", MELODY, LENIENT},
    {"chunk_len_ffffffff", MELODY, LENIENT},
    {"chunk_len_80000000", MELODY, LENIENT},
    {"chunk_len_wrap_unknown", NONE, LENIENT}, // the unknown chunk swallows the rest of the file
    {"chunk_len_wrap_mtrk", MELODY, LENIENT},  // the first MTrk swallows the second, after its End-of-Track
    {"chunk_len_wrap_back", NONE, LENIENT},
    {"chunk_len_too_short", MELODY_2, LENIENT}, // cut in the 3rd NoteOn; the rest is an unknown chunk
    {"chunk_len_0", NONE, LENIENT},
    {"chunk_len_0_then_track", MELODY, LENIENT},
    {"chunk_hdr_trunc", MELODY, LENIENT},
    {"chunk_hdr_trunc_len", MELODY, LENIENT},
    {"trailing_garbage_text", MELODY, LENIENT},
    {"trailing_zeros", MELODY, LENIENT},
    {"trailing_one_byte", MELODY, LENIENT},
    // many tracks (many_tracks_notes and many_keys are checked by test_generated)
    {"ntracks_declared_65535_real_0", NONE, STRICT},
    {"many_tracks_empty", MELODY, STRICT},
    {"many_tracks_zero_len", MELODY, LENIENT},
    // truncated
    {"trunc_base", MELODY, STRICT},
    {"trunc_chunk_id", NONE, LENIENT},
    {"trunc_chunk_len", NONE, LENIENT},
    {"trunc_first_event_delta", NONE, LENIENT},
    {"trunc_mid_meta_type", NONE, LENIENT},
    {"trunc_mid_meta_payload", NONE, LENIENT},
    {"trunc_mid_name", NONE, LENIENT},
    {"trunc_after_status", MELODY_2, LENIENT},
    {"trunc_mid_event", MELODY_2, LENIENT},
    {"trunc_mid_vlq", MELODY_2, LENIENT},
    {"trunc_mid_noteoff", MELODY_2, LENIENT},
    {"trunc_before_eot", MELODY, LENIENT},
    {"trunc_mid_eot", MELODY, LENIENT},
    {"trunc_mid_sysex", MELODY, LENIENT},
    {"trunc_vlq_at_chunk_end", MELODY, LENIENT},
    // variable-length numbers
    {"vlq_5byte_delta", ERR "track 0: delta time longer than 4 bytes", ANY},
    {"vlq_ffffffff_delta", ERR "track 0: delta time longer than 4 bytes", ANY},
    {"vlq_5byte_meta_len", ERR "track 0: event length longer than 4 bytes", ANY},
    {"vlq_5byte_sysex_len", ERR "track 0: event length longer than 4 bytes", ANY},
    {"vlq_padded", MELODY, STRICT},
    {"vlq_max_delta", "Bar_None*2049 Position_2 Program_0 Pitch_60 Velocity_63 Duration_1.0.8", STRICT},
    // running status: it survives meta and SysEx events, but never starts a track
    {"running_no_status", ERR "track 0: running status without a status byte", ANY},
    {"running_ok", MELODY, STRICT},
    {"running_after_meta", "Bar_None " M1, STRICT},
    {"running_after_meta_only", ERR "track 0: running status without a status byte", ANY},
    {"running_across_sysex", "Bar_None " M1, STRICT},
    {"running_after_sysex_only", ERR "track 0: running status without a status byte", ANY},
    {"running_after_eot", ERR "track 1: running status without a status byte", ANY},
    // channel messages and status bytes
    {"data_byte_high", ERR "track 0: data byte above 127", ANY},
    {"pitch_byte_high", ERR "track 0: data byte above 127", ANY},
    {"status_f1", ERR "track 0: unexpected status byte 0xF1", ANY},
    {"status_f8_realtime", ERR "track 0: unexpected status byte 0xF8", ANY},
    {"status_fe", ERR "track 0: unexpected status byte 0xFE", ANY},
    {"all_channel_kinds",
     "Bar_None Position_0 Program_5 Pitch_60 Velocity_63 Duration_1.0.8 Position_8 Program_5 Pitch_62 Velocity_63 "
     "Duration_1.0.8 Position_16 Program_5 Pitch_64 Velocity_63 Duration_1.0.8 Position_24 Program_5 Pitch_65 "
     "Velocity_63 Duration_1.0.8",
     STRICT},
    {"note_off_without_on", MELODY, STRICT},
    {"note_on_never_closed", MELODY, STRICT},
    {"notes_out_of_range", // pitches 0 and 127 are dropped; the melody starts a quarter later
     "Bar_None Position_8 Program_0 Pitch_60 Velocity_63 Duration_1.0.8 Position_16 Program_0 Pitch_62 Velocity_63 "
     "Duration_1.0.8 Position_24 Program_0 Pitch_64 Velocity_63 Duration_1.0.8 Bar_None Position_0 Program_0 Pitch_65 "
     "Velocity_63 Duration_1.0.8",
     STRICT},
    // time
    {"huge_delta_repeated", ERR "note at tick 17179869120 (tpq 8) is beyond the limit of 200000 bars", ANY},
    {"huge_delta_note_dur",
     "Bar_None Position_0 Program_0 Pitch_60 Velocity_63 Duration_12.0.4 Program_0 Pitch_62 Velocity_63 "
     "Duration_1.0.8",
     STRICT},
    {"far_future", ERR "note at tick 6400000 (tpq 8) is beyond the limit of 200000 bars", ANY},
    {"far_future_last_tick", "Bar_None*200000 Position_31 Program_0 Pitch_62 Velocity_63 Duration_1.0.8", STRICT},
    {"far_future_high_tpq", ERR "note at tick 2147483648 (tpq 8) is beyond the limit", ANY},
    {"far_future_out_of_range_pitch", "Bar_None " M1, STRICT},
    // meta events
    {"tempo_len_0", MELODY, STRICT},
    {"tempo_len_1", MELODY, STRICT},
    {"tempo_zero", MELODY, STRICT},
    {"tempo_len_200", MELODY, STRICT},
    {"tempo_len_huge_last", MELODY, LENIENT},
    {"tempo_len_huge_first", NONE, LENIENT}, // the tempo's payload would swallow the melody
    {"timesig_len_0", MELODY, STRICT},
    {"timesig_absurd", MELODY, STRICT},
    {"timesig_len_huge", MELODY, LENIENT},
    {"keysig_absurd", MELODY, STRICT},
    {"meta_len_300", MELODY, STRICT},
    {"meta_type_missing", MELODY, LENIENT},
    {"eot_early", MELODY_2, STRICT},
    {"eot_with_payload", MELODY, STRICT},
    {"eot_missing", MELODY, LENIENT},
    {"eot_missing_two_tracks", MELODY, LENIENT},
    // SysEx
    {"sysex_len_0", MELODY, STRICT},
    {"sysex_f7_len_0", MELODY, STRICT},
    {"sysex_packets", MELODY, STRICT},
    {"sysex_gm_reset", MELODY, STRICT},
    {"sysex_len_huge", MELODY, LENIENT},
    {"sysex_unterminated_len", MELODY, LENIENT},
    // fuzzer finds (tests/fuzz/fuzz_midi.c): see the commit that added each
};
#define N_CASES (sizeof cases / sizeof cases[0])

// ---- running one input ----------------------------------------------------------------------

// Expands "A B*3 C" into token ids. Dies on a token not in the vocabulary (a typo in this file).
static void parse_want(const char *s, IdBuf *out)
{
    while (*s) {
        while (*s == ' ') s++;
        if (!*s) break;
        size_t len = strcspn(s, " *");
        int id = remi_token_id(s, len);
        if (id < 0) die("test_midi_bad: unknown token in expectation: '%.*s'", (int)len, s);
        s += len;
        long rep = 1;
        if (*s == '*') {
            char *end;
            rep = strtol(s + 1, &end, 10);
            s = end;
        }
        for (long i = 0; i < rep; i++) idbuf_push(out, id);
    }
}

// midi_to_score + remi_encode; returns 0 with ids, or -1 with err. Also fails a Score whose note arrays hold unused
// capacity: memory must follow the notes, not the number of tracks (a file can hold millions of one-note tracks).
static int tokenize(const uint8_t *buf, size_t n, IdBuf *ids, char *err)
{
    Score s;
    if (midi_to_score(buf, n, &s, err) < 0) return -1;
    for (size_t t = 0; t < s.n; t++)
        if (s.tracks[t].cap != s.tracks[t].n) {
            err_set(err, "track %zu holds %zu notes in an array of %zu", t, s.tracks[t].n, s.tracks[t].cap);
            score_free(&s);
            return -1;
        }
    int rc = remi_encode(&s, ids, err);
    score_free(&s);
    return rc;
}

// Prints the first tokens of b on stderr, for a failure message.
static void print_ids(const char *label, const IdBuf *b)
{
    fprintf(stderr, "  %s (%zu tokens):", label, b->n);
    for (size_t i = 0; i < b->n && i < 24; i++) fprintf(stderr, " %s", remi_token_str(b->ids[i]));
    fprintf(stderr, "%s\n", b->n > 24 ? " ..." : "");
}

// Runs one input and counts a pass or a failure (printing what differs) against want and lenient.
static void check_case(const char *name, const uint8_t *buf, size_t n, const char *want, int lenient)
{
    IdBuf got = {0}, exp = {0};
    char err[ERR_MAX] = "";
    int rc = tokenize(buf, n, &got, err);
    bool want_err = strncmp(want, ERR, strlen(ERR)) == 0;
    bool ok;
    if (want_err) {
        ok = rc < 0 && strstr(err, want + strlen(ERR)) != NULL;
    } else {
        parse_want(want, &exp);
        ok = rc == 0 && got.n == exp.n && (got.n == 0 || memcmp(got.ids, exp.ids, got.n * sizeof *got.ids) == 0);
    }
    MidiInfo info;
    char perr[ERR_MAX];
    int prc = midi_parse(buf, n, &info, NULL, perr);
    bool lenient_ok = lenient == ANY || (prc == 0 && (info.n_lenient > 0) == (lenient == LENIENT));
    if (ok && lenient_ok) {
        n_pass++;
    } else {
        n_fail++;
        fprintf(stderr, "FAIL %s\n", name);
        if (want_err) fprintf(stderr, "  want an error containing '%s'\n", want + strlen(ERR));
        else print_ids("want", &exp);
        if (rc < 0) fprintf(stderr, "  got error: %s\n", err);
        else print_ids("got", &got);
        if (!lenient_ok)
            fprintf(stderr, "  want the reading reported as %s, got n_lenient %d\n",
                    lenient == LENIENT ? "lenient" : "strict", prc == 0 ? info.n_lenient : -1);
    }
    free(got.ids);
    free(exp.ids);
}

// Reads tests/data/bad/<name>.mid (caller frees), or counts a failure and returns NULL.
static uint8_t *load(const char *name, size_t *n)
{
    char path[512], err[ERR_MAX];
    snprintf(path, sizeof path, BAD_DIR "%s.mid", name);
    uint8_t *buf;
    if (read_file(path, MIDI_MAX_BYTES, &buf, n, err) < 0) {
        fprintf(stderr, "FAIL %s: cannot read '%s': %s\n", name, path, err);
        n_fail++;
        return NULL;
    }
    return buf;
}

// ---- the corpus -----------------------------------------------------------------------------

// Every file of the cases table against its stated outcome.
static void test_cases(void)
{
    for (size_t i = 0; i < N_CASES; i++) {
        size_t n;
        uint8_t *buf = load(cases[i].name, &n);
        if (!buf) continue;
        check_case(cases[i].name, buf, n, cases[i].want, cases[i].lenient);
        free(buf);
    }
}

// Every .mid in the corpus has a case here, so a new file (a fuzzer find) cannot go untested.
static void test_all_files_have_cases(void)
{
    FILE *p = popen("ls " BAD_DIR, "r");
    if (!p) die("test_midi_bad: cannot list " BAD_DIR);
    char line[512];
    int n_files = 0;
    while (fgets(line, sizeof line, p)) {
        line[strcspn(line, "\n")] = 0;
        size_t len = strlen(line);
        if (len < 5 || strcmp(line + len - 4, ".mid") != 0) continue;
        line[len - 4] = 0;
        n_files++;
        bool found = strcmp(line, "many_tracks_notes") == 0 || strcmp(line, "many_keys") == 0;
        for (size_t i = 0; i < N_CASES && !found; i++) found = strcmp(cases[i].name, line) == 0;
        if (found) continue;
        n_fail++;
        fprintf(stderr, "FAIL " BAD_DIR "%s.mid has no expected outcome in test_midi_bad.c\n", line);
    }
    pclose(p);
    if (n_files < (int)N_CASES) {
        n_fail++;
        fprintf(stderr, "FAIL only %d files in " BAD_DIR " (run tests/data/make_bad_midi.py)\n", n_files);
    } else {
        n_pass++;
    }
}

// Cases whose tokens are too many to spell out: the expectation is built here.
static void check_generated(const char *name, const char *want)
{
    size_t n;
    uint8_t *buf = load(name, &n);
    if (!buf) return;
    check_case(name, buf, n, want, STRICT);
    free(buf);
}

// many_tracks_notes.mid and many_keys.mid.
static void test_generated(void)
{
    char *want = xmalloc(1000 * 64);
    // 1000 tracks, track i holding one quarter note C4 at quarter i (tpq 8)
    size_t len = 0;
    for (int i = 0; i < 1000; i++)
        len += (size_t)sprintf(want + len, "%sPosition_%d Program_0 Pitch_60 Velocity_63 Duration_1.0.8 ",
                               i % 4 == 0 ? "Bar_None " : "", 8 * (i % 4));
    check_generated("many_tracks_notes", want);
    // 2048 one-note tracks, one per (channel, program), all C4 at tick 0: programs 0..127 (merged over channels and
    // de-duplicated), then the drums (channel 9), in the order the tokenizer first meets each program
    len = (size_t)sprintf(want, "Bar_None Position_0 ");
    for (int p = 0; p <= 128; p++)
        len += (size_t)sprintf(want + len, "Program_%d Pitch_60 Velocity_63 Duration_1.0.8 ", p < 128 ? p : -1);
    check_generated("many_keys", want);
    free(want);
}

// ---- every prefix of one file ---------------------------------------------------------------

typedef struct EvLog {
    MidiEvent *ev;
    int *track;
    size_t n, cap, cap_t;
} EvLog;

// Visitor: appends every event and its track to the EvList ctx.
static void log_event(void *ctx, int track, const MidiEvent *ev)
{
    EvLog *l = ctx;
    xgrow((void **)&l->ev, &l->cap, l->n + 1, sizeof *l->ev);
    xgrow((void **)&l->track, &l->cap_t, l->n + 1, sizeof *l->track);
    l->ev[l->n] = *ev;
    l->track[l->n++] = track;
}

// Equal events (payload bytes are compared by length only; they point into different buffers).
static bool same_event(const MidiEvent *a, const MidiEvent *b)
{
    return a->tick == b->tick && a->status == b->status && a->d1 == b->d1 && a->d2 == b->d2 && a->len == b->len;
}

static bool same_notes(const Track *a, const Track *b, size_t n) // field by field: Note has padding
{
    if (a->program != b->program || a->is_drum != b->is_drum) return false;
    for (size_t i = 0; i < n; i++) {
        const Note *x = &a->notes[i], *y = &b->notes[i];
        if (x->time != y->time || x->dur != y->dur || x->pitch != y->pitch || x->vel != y->vel) return false;
    }
    return true;
}

// Reads buf cut to len bytes; returns NULL if it reads as a prefix of the whole file (full, sfull), else why not.
// *last_notes carries the note count of the previous, shorter cut, which this one may not go below.
static const char *check_cut(const uint8_t *buf, size_t len, const EvLog *full, const Score *sfull,
                             size_t *last_notes, char *err)
{
    uint8_t *cut = xmalloc(len ? len : 1); // exact size, so ASan sees any read past the cut
    memcpy(cut, buf, len);
    EvLog part = {0};
    MidiVisitor pv = {NULL, log_event, NULL, &part};
    MidiInfo info;
    int rc = midi_parse(cut, len, &info, &pv, err);
    Score s;
    int rc2 = midi_to_score(cut, len, &s, err);
    const char *why = NULL;
    if (len < 14) {
        if (rc == 0 || rc2 == 0) why = "a cut header reads without error";
    } else if (rc < 0 || rc2 < 0) {
        why = "error";
    } else if (part.n > full->n) {
        why = "more events than the whole file";
    } else {
        for (size_t i = 0; i < part.n && !why; i++)
            if (part.track[i] != full->track[i] || !same_event(&part.ev[i], &full->ev[i]))
                why = "an event differs from the whole file's";
        size_t n_notes = 0;
        for (size_t t = 0; t < s.n && !why; t++) {
            if (t >= sfull->n || s.tracks[t].n > sfull->tracks[t].n) why = "a note not in the whole file";
            else if (!same_notes(&s.tracks[t], &sfull->tracks[t], s.tracks[t].n))
                why = "notes differ from the whole file's";
            else n_notes += s.tracks[t].n;
        }
        if (!why && n_notes < *last_notes) why = "fewer notes than a shorter cut";
        *last_notes = n_notes;
    }
    if (rc == 0) strcpy(err, "no error");
    if (rc2 == 0) score_free(&s);
    free(part.ev);
    free(part.track);
    free(cut);
    return why;
}

// A file cut at any byte reads as an error (inside the header) or as a prefix of the whole file's events and
// notes: a cut never invents, reorders or changes anything before it. (Track indices line up because this file
// has one (channel, program) per MTrk.)
static void test_all_prefixes(void)
{
    size_t n;
    uint8_t *buf = load("trunc_base", &n);
    if (!buf) return;
    EvLog full = {0};
    MidiVisitor v = {NULL, log_event, NULL, &full};
    MidiInfo info;
    char err[ERR_MAX];
    Score sfull;
    if (midi_parse(buf, n, &info, &v, err) < 0 || midi_to_score(buf, n, &sfull, err) < 0)
        die("test_midi_bad: trunc_base.mid: %s", err);
    int bad = 0;
    size_t last_notes = 0;
    for (size_t len = 0; len <= n && bad < 5; len++) {
        const char *why = check_cut(buf, len, &full, &sfull, &last_notes, err);
        if (why) {
            bad++;
            fprintf(stderr, "FAIL trunc_base.mid cut at %zu of %zu bytes: %s (%s)\n", len, n, why, err);
        }
    }
    if (!bad && last_notes != 4) {
        bad++;
        fprintf(stderr, "FAIL trunc_base.mid: whole file gave %zu notes, want 4\n", last_notes);
    }
    if (bad) n_fail++;
    else n_pass++;
    score_free(&sfull);
    free(full.ev);
    free(full.track);
    free(buf);
}

// ---- about 2 MB of random bytes after a valid header ----------------------------------------

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;
static uint8_t rnd_byte(void) // xorshift64*: fixed sequence, so the outcome below is pinned
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint8_t)((rng_state * 0x2545F4914F6CDD1DULL) >> 56);
}

static const uint8_t HDR[14] = {'M', 'T', 'h', 'd', 0, 0, 0, 6, 0, 1, 0, 1, 0x01, 0xE0}; // format 1, tpq 480

// FNV-1a of the token ids.
static uint64_t hash_ids(const IdBuf *b) { return fnv1a(FNV_INIT, b->ids, b->n * sizeof *b->ids); }

// Counts a pass if the input fails with want_err, or gives want_n tokens hashing to want_hash.
static void check_pinned(const char *name, const uint8_t *buf, size_t n, int want_rc, const char *want_err,
                         size_t want_n, uint64_t want_hash)
{
    IdBuf ids = {0};
    char err[ERR_MAX] = "";
    int rc = tokenize(buf, n, &ids, err);
    uint64_t h = hash_ids(&ids);
    bool ok = rc == want_rc && (rc < 0 ? strstr(err, want_err) != NULL : ids.n == want_n && h == want_hash);
    if (ok) {
        n_pass++;
    } else {
        n_fail++;
        fprintf(stderr, "FAIL %s: got rc %d '%s', %zu tokens, hash 0x%016llx\n", name, rc, err, ids.n,
                (unsigned long long)h);
    }
    free(ids.ids);
}

// About 2 MB of random bytes after a valid header, three ways.
static void test_random_tail(void)
{
    const size_t n_rand = 2u << 20;
    uint8_t *buf = xmalloc(14 + 10 + n_rand);
    memcpy(buf, HDR, 14);
    // (a) random bytes straight after the header: read as chunks with random ids and lengths
    for (size_t i = 0; i < n_rand; i++) buf[14 + i] = rnd_byte();
    check_pinned("random chunks after a header", buf, 14 + n_rand, 0, "", 0, FNV_INIT);
    // (b) one MTrk holding random bytes: the reader must stop at the first impossible byte
    memcpy(buf + 14, "MTrk\x00\x20\x00\x00", 8);
    check_pinned("random MTrk payload", buf, 14 + n_rand, -1, "track 0: ", 0, 0);
    // (c) an MTrk opening with a NoteOn status, then about 700000 running-status NoteOns: bytes cycle through
    // pitch, velocity (half of them 0, a NoteOff) and a one-byte delta; outcome pinned by count and hash
    memcpy(buf + 14, "MTrk\x00\x20\x00\x02\x00\x90", 10);
    for (size_t j = 0; j < n_rand; j++) {
        uint8_t r = rnd_byte() & 0x7f;
        buf[24 + j] = j % 3 == 1 && (r & 1) ? 0 : r;
    }
    check_pinned("random running-status notes", buf, 24 + n_rand, 0, "", 1170881, 0x3f03246282b1c7e3ULL);
    // and the note count against plain counting: a NoteOff makes a note if its pitch has a NoteOn open
    size_t open[128] = {0}, want_notes = 0, got_notes = 0;
    for (size_t j = 1; j < n_rand; j += 3) {
        uint8_t pitch = buf[24 + j - 1], vel = buf[24 + j];
        if (vel) open[pitch]++;
        else if (open[pitch]) open[pitch]--, want_notes++;
    }
    Score s;
    char err[ERR_MAX];
    if (midi_to_score(buf, 24 + n_rand, &s, err) == 0) {
        for (size_t t = 0; t < s.n; t++) got_notes += s.tracks[t].n;
        score_free(&s);
    }
    if (got_notes == want_notes && want_notes > 300000) {
        n_pass++;
    } else {
        n_fail++;
        fprintf(stderr, "FAIL random running-status notes: %zu notes, want %zu\n", got_notes, want_notes);
    }
    free(buf);
}

// Data over MIDI_MAX_BYTES is refused by midi_parse itself, whoever the caller (the limit keeps counts in range).
static void test_too_large(void)
{
    size_t n = MIDI_MAX_BYTES + (size_t)1;
    uint8_t *buf = xcalloc(n, 1);
    memcpy(buf, HDR, sizeof HDR);
    check_case("MIDI_MAX_BYTES + 1 bytes", buf, n, ERR "MIDI data too large (33554433 bytes, limit 33554432)", ANY);
    check_case("MIDI_MAX_BYTES bytes", buf, n - 1, NONE, LENIENT); // zeros: empty unknown chunks, 2 bytes left
    free(buf);
}

int main(int argc, char **argv)
{
    (void)argc;
    util_init(argv[0]);
    test_cases();
    test_all_files_have_cases();
    test_generated();
    test_all_prefixes();
    test_random_tail();
    test_too_large();
    printf("%d passed, %d failed, 0 skipped\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
