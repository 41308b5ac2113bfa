// remi: vocabulary, MidiTok 3.0.0 REMI encoding and decoding (see remi.h; rules and citations in spec/remi.md).
// Encoding packs each preprocessed note into one 64-bit sort key, so MidiTok's sorts are radix sorts and the
// whole path is linear in the number of notes. Tables are built once, before main (a constructor).
#include "remi.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

// ---- vocabulary -----------------------------------------------------------------------------

#define TOK_MAX 24
static char tok_str[REMI_VOCAB_SIZE][TOK_MAX];
static uint8_t tok_len[REMI_VOCAB_SIZE];
static int16_t dur_ticks[64];      // Duration token index -> ticks
static int8_t dur_of_ticks[97];    // ticks 0..96 -> Duration index (closest, ties to the longer)
static int8_t vel_of_value[128];   // velocity 0..127 -> Velocity index (closest, ties to the higher)
static const int vel_bins[16] = {7, 15, 23, 31, 39, 47, 55, 63, 71, 79, 87, 95, 103, 111, 119, 127};
#define HASH_SLOTS 1024
static int16_t hash_slot[HASH_SLOTS]; // open addressing over token strings, -1 = empty

static const char *const chord_names[14] = {"min",  "maj",  "dim",  "aug",  "sus2",     "sus4", "7dom",
                                            "7min", "7maj", "7halfdim", "7dim", "7aug", "9maj", "9min"};
// MidiTok's CHORD_MAPS, in dict order; a chord matches only its exact interval tuple
static const int8_t chord_maps[14][5] = {{0, 3, 7},     {0, 4, 7},     {0, 3, 6},         {0, 4, 8},
                                         {0, 2, 7},     {0, 5, 7},     {0, 4, 7, 10},     {0, 3, 7, 10},
                                         {0, 4, 7, 11}, {0, 3, 6, 10}, {0, 3, 6, 9},      {0, 4, 8, 11},
                                         {0, 4, 7, 10, 14}, {0, 4, 7, 10, 13}};
static const int8_t chord_len[14] = {3, 3, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 5, 5};

static void set_tok(int id, const char *s)
{
    snprintf(tok_str[id], TOK_MAX, "%s", s);
    tok_len[id] = (uint8_t)strlen(tok_str[id]);
}

static uint32_t str_hash(const char *s, size_t n) { return (uint32_t)fnv1a(FNV_INIT, s, n); }

// Nearest bin by MidiTok's np_get_closest: the lower bin only when strictly closer.
static int closest(const int *bins, int n_bins, int v)
{
    int best = 0;
    for (int i = 1; i < n_bins; i++)
        if (abs(bins[i] - v) <= abs(bins[best] - v)) best = i;
    return best;
}

__attribute__((constructor)) static void vocab_init(void)
{
    char s[TOK_MAX];
    set_tok(REMI_PAD, "PAD_None");
    set_tok(REMI_BOS, "BOS_None");
    set_tok(REMI_EOS, "EOS_None");
    set_tok(REMI_MASK, "MASK_None");
    set_tok(REMI_BAR, "Bar_None");
    for (int p = REMI_PITCH_MIN; p <= REMI_PITCH_MAX; p++) {
        snprintf(s, sizeof s, "Pitch_%d", p);
        set_tok(REMI_PITCH0 + p - REMI_PITCH_MIN, s);
    }
    for (int i = 0; i < 16; i++) {
        snprintf(s, sizeof s, "Velocity_%d", vel_bins[i]);
        set_tok(REMI_VELOCITY0 + i, s);
    }
    // (beat, pos, res): 8 positions per beat for beats 0..3, 4 for beats 4..11, then (12,0,4); (0,0,8) left out
    int k = 0;
    for (int b = 0; b < 12; b++) {
        int res = b < 4 ? 8 : 4;
        for (int p = 0; p < res; p++) {
            if (b == 0 && p == 0) continue;
            snprintf(s, sizeof s, "Duration_%d.%d.%d", b, p, res);
            dur_ticks[k] = (int16_t)((b * res + p) * REMI_TPQ / res);
            set_tok(REMI_DURATION0 + k++, s);
        }
    }
    snprintf(s, sizeof s, "Duration_12.0.4");
    dur_ticks[k] = 12 * REMI_TPQ;
    set_tok(REMI_DURATION0 + k++, s);
    for (int i = 0; i < 32; i++) {
        snprintf(s, sizeof s, "Position_%d", i);
        set_tok(REMI_POSITION0 + i, s);
    }
    for (int i = 0; i < 14; i++) {
        snprintf(s, sizeof s, "Chord_%s", chord_names[i]);
        set_tok(REMI_CHORD0 + i, s);
    }
    for (int p = -1; p < 128; p++) {
        snprintf(s, sizeof s, "Program_%d", p);
        set_tok(REMI_PROGRAM0 + p + 1, s);
    }
    int dt[64];
    for (int i = 0; i < 64; i++) dt[i] = dur_ticks[i];
    for (int t = 0; t <= 96; t++) dur_of_ticks[t] = (int8_t)closest(dt, 64, t);
    for (int v = 0; v < 128; v++) vel_of_value[v] = (int8_t)closest(vel_bins, 16, v);
    memset(hash_slot, 0xff, sizeof hash_slot);
    for (int id = 0; id < REMI_VOCAB_SIZE; id++) {
        uint32_t h = str_hash(tok_str[id], tok_len[id]) & (HASH_SLOTS - 1);
        while (hash_slot[h] >= 0) h = (h + 1) & (HASH_SLOTS - 1);
        hash_slot[h] = (int16_t)id;
    }
}

const char *remi_token_str(int id) { return tok_str[id]; }
int remi_token_len(int id) { return tok_len[id]; }

TokType remi_token_type(int id)
{
    if (id < REMI_BAR) return TOK_SPECIAL;
    if (id == REMI_BAR) return TOK_BAR;
    if (id < REMI_VELOCITY0) return TOK_PITCH;
    if (id < REMI_DURATION0) return TOK_VELOCITY;
    if (id < REMI_POSITION0) return TOK_DURATION;
    if (id < REMI_CHORD0) return TOK_POSITION;
    if (id < REMI_PROGRAM0) return TOK_CHORD;
    return TOK_PROGRAM;
}

int remi_token_id(const char *s, size_t len)
{
    if (len == 0 || len >= TOK_MAX) return -1;
    uint32_t h = str_hash(s, len) & (HASH_SLOTS - 1);
    for (int id; (id = hash_slot[h]) >= 0; h = (h + 1) & (HASH_SLOTS - 1))
        if (tok_len[id] == len && memcmp(tok_str[id], s, len) == 0) return id;
    return -1;
}

int remi_duration_ticks(int id) { return dur_ticks[id - REMI_DURATION0]; }
int remi_velocity(int id) { return vel_bins[id - REMI_VELOCITY0]; }
int remi_pitch(int id) { return id - REMI_PITCH0 + REMI_PITCH_MIN; }
int remi_program(int id) { return id - REMI_PROGRAM0 - 1; }

uint64_t remi_vocab_hash(void)
{
    uint64_t h = FNV_INIT;
    for (int id = 0; id < REMI_VOCAB_SIZE; id++) h = fnv1a(h, tok_str[id], (size_t)tok_len[id] + 1); // with NUL
    return h;
}

void idbuf_push(IdBuf *b, int32_t id)
{
    if (b->n == b->cap) xgrow((void **)&b->ids, &b->cap, b->n + 1, sizeof *b->ids);
    b->ids[b->n++] = id;
}

// ---- encoding -------------------------------------------------------------------------------

// A preprocessed note as one sort key: time (bits 17..63) | pitch (10..16) | duration index (4..9) | velocity (0..3),
// so ascending keys are MidiTok's (time, pitch, duration, velocity) order (durations and bins are monotonic).
#define KEY(t, p, d, v) ((uint64_t)(t) << 17 | (uint64_t)(p) << 10 | (uint64_t)(d) << 4 | (uint64_t)(v))
#define KEY_TIME(k) ((int64_t)((k) >> 17))
#define KEY_PITCH(k) ((int)((k) >> 10 & 127))
#define KEY_DUR(k) ((int)((k) >> 4 & 63))
#define KEY_VEL(k) ((int)((k) & 15))

// LSD radix sort of a[0..n) by the bits below max_bits, 8 at a time; tmp has room for n. Stable.
static void radix_sort(uint64_t *a, uint64_t *tmp, size_t n, int max_bits)
{
    size_t count[256];
    for (int shift = 0; shift < max_bits; shift += 8) {
        memset(count, 0, sizeof count);
        for (size_t i = 0; i < n; i++) count[a[i] >> shift & 255]++;
        if (count[a[0] >> shift & 255] == n) continue; // this byte is the same everywhere
        size_t sum = 0;
        for (int b = 0; b < 256; b++) {
            size_t c = count[b];
            count[b] = sum;
            sum += c;
        }
        for (size_t i = 0; i < n; i++) tmp[count[a[i] >> shift & 255]++] = a[i];
        memcpy(a, tmp, n * sizeof *a);
    }
}

static int bits_for(uint64_t max)
{
    int b = 0;
    while (b < 64 && (max >> b)) b++;
    return b;
}

typedef struct EncTrack {
    int program; // -1 for drums
    uint64_t *keys;
    size_t n;
} EncTrack;

// MidiTok's detect_chords (remi.md §4) on one track's sorted notes; appends (time, quality) pairs.
static size_t detect_chords(const uint64_t *k, size_t n, int64_t *chord_time, int8_t *chord_q)
{
    size_t n_chords = 0, count = 0;
    int64_t previous = -1;
    while (count < n) {
        int64_t start0 = KEY_TIME(k[count]);
        if (start0 == previous) {
            count++;
            continue;
        }
        size_t g = 1; // onsets within 1 tick, at most 10 notes
        while (g < 10 && count + g < n && KEY_TIME(k[count + g]) <= start0 + 1) g++;
        int64_t end0 = start0 + dur_ticks[KEY_DUR(k[count])];
        int ambiguous = 0;
        for (size_t i = 0; i < g; i++) {
            int64_t e = KEY_TIME(k[count + i]) + dur_ticks[KEY_DUR(k[count + i])];
            if (llabs(e - end0) > REMI_TPQ / 2) ambiguous = 1;
        }
        if (ambiguous) {
            count += g;
            continue;
        }
        if (end0 - start0 <= REMI_TPQ / 2) { // short first note: only notes with the same onset
            size_t same = 1;
            while (same < g && KEY_TIME(k[count + same]) == start0) same++;
            g = same;
        }
        // every note of the group ends within 4 ticks of the first, so the chord is the whole group
        if (g >= 3 && g <= 5) {
            int p0 = KEY_PITCH(k[count]);
            int8_t map[5];
            for (size_t i = 0; i < g; i++) map[i] = (int8_t)(KEY_PITCH(k[count + i]) - p0);
            if (map[g - 1] <= 24)
                for (int q = 0; q < 14; q++)
                    if (chord_len[q] == (int)g && memcmp(chord_maps[q], map, g) == 0) {
                        chord_time[n_chords] = start0;
                        chord_q[n_chords++] = (int8_t)q;
                        break;
                    }
        }
        previous = KEY_TIME(k[count + g - 1]);
        count += g;
    }
    return n_chords;
}

int remi_encode(Score *s, IdBuf *out, char *err)
{
    // 1. resample to 8 ticks per quarter (symusic resample: round half away from zero, durations at least 1)
    if (s->tpq != REMI_TPQ) {
        for (size_t i = 0; i < s->n; i++)
            for (size_t j = 0; j < s->tracks[i].n; j++) {
                Note *nt = &s->tracks[i].notes[j];
                nt->time = (int64_t)round((double)(REMI_TPQ * nt->time) / s->tpq);
                int64_t d = (int64_t)round((double)(REMI_TPQ * nt->dur) / s->tpq);
                nt->dur = d < 1 ? 1 : d;
            }
        s->tpq = REMI_TPQ;
    }
    // 2. merge tracks that share a program (all drums together) into the first one's slot
    EncTrack *tr = xcalloc(s->n ? s->n : 1, sizeof *tr);
    size_t n_tr = 0, n_notes = 0;
    int slot_of[129];
    for (int i = 0; i < 129; i++) slot_of[i] = -1;
    int *slot_track = xmalloc((s->n ? s->n : 1) * sizeof *slot_track);
    for (size_t i = 0; i < s->n; i++) {
        int prog = s->tracks[i].is_drum ? -1 : s->tracks[i].program;
        if (slot_of[prog + 1] < 0) {
            slot_of[prog + 1] = (int)n_tr;
            tr[n_tr++].program = prog;
        }
        slot_track[i] = slot_of[prog + 1];
        n_notes += s->tracks[i].n;
    }
    // 3. per track: pitch range, velocity and duration bins, sort, drop repeated (time, pitch)
    uint64_t *keys = xmalloc((n_notes ? n_notes : 1) * sizeof *keys);
    uint64_t *tmp = xmalloc((n_notes ? n_notes : 1) * sizeof *tmp);
    const int64_t max_time = (int64_t)REMI_MAX_BARS * REMI_TICKS_PER_BAR;
    size_t used = 0;
    int rc = 0;
    for (size_t t = 0; t < n_tr; t++) {
        tr[t].keys = keys + used;
        for (size_t i = 0; i < s->n; i++) {
            if (slot_track[i] != (int)t) continue;
            const Track *src = &s->tracks[i];
            for (size_t j = 0; j < src->n; j++) {
                const Note *nt = &src->notes[j];
                if (nt->pitch < REMI_PITCH_MIN || nt->pitch > REMI_PITCH_MAX) continue;
                if (nt->time < 0 || nt->time >= max_time) {
                    rc = err_set(err, "note at tick %lld (tpq %d) is beyond the limit of %d bars",
                                 (long long)nt->time, REMI_TPQ, REMI_MAX_BARS);
                    goto out;
                }
                int d = nt->dur > 96 ? 63 : dur_of_ticks[nt->dur < 0 ? 0 : nt->dur];
                keys[used++] = KEY(nt->time, nt->pitch, d, vel_of_value[nt->vel & 127]);
            }
        }
        tr[t].n = (size_t)(keys + used - tr[t].keys);
        if (tr[t].n > 1) radix_sort(tr[t].keys, tmp, tr[t].n, 17 + bits_for((uint64_t)max_time));
        size_t m = 0;
        for (size_t i = 0; i < tr[t].n; i++)
            if (m == 0 || tr[t].keys[i] >> 10 != tr[t].keys[m - 1] >> 10) tr[t].keys[m++] = tr[t].keys[i];
        used -= tr[t].n - m;
        tr[t].n = m;
    }

    // 4. events: per track, its chords then its notes; one stable sort by time over the concatenation.
    // An event is (time << 40 | index); index < 2^40 addresses the chord or note it stands for.
    {
        int64_t *chord_time = xmalloc((used ? used : 1) * sizeof *chord_time);
        int8_t *chord_q = xmalloc(used ? used : 1);
        size_t n_ev = 0;
        uint64_t *ev = xmalloc((2 * used + 1) * sizeof *ev);
        uint64_t *ev_tmp = xmalloc((2 * used + 1) * sizeof *ev_tmp);
        // payload of event index i: note key, or chord (quality, with bit 63 set); plus its program
        uint64_t *payload = xmalloc((2 * used + 1) * sizeof *payload);
        int16_t *program = xmalloc((2 * used + 1) * sizeof *program);
        for (size_t t = 0; t < n_tr; t++) {
            if (tr[t].n == 0) continue;
            if (tr[t].program >= 0) {
                size_t nc = detect_chords(tr[t].keys, tr[t].n, chord_time, chord_q);
                for (size_t c = 0; c < nc; c++) {
                    payload[n_ev] = 1ULL << 63 | (uint64_t)chord_q[c];
                    program[n_ev] = (int16_t)tr[t].program;
                    ev[n_ev] = (uint64_t)chord_time[c] << 40 | n_ev;
                    n_ev++;
                }
            }
            for (size_t i = 0; i < tr[t].n; i++) {
                payload[n_ev] = tr[t].keys[i];
                program[n_ev] = (int16_t)tr[t].program;
                ev[n_ev] = (uint64_t)KEY_TIME(tr[t].keys[i]) << 40 | n_ev;
                n_ev++;
            }
        }
        if (n_ev > 1) radix_sort(ev, ev_tmp, n_ev, 40 + bits_for((uint64_t)max_time));

        // 5. time tokens (REMI._add_time_events): Bars up to the event's bar, a Position per new tick
        int64_t current_bar = -1, previous_tick = -1, bar_tick = 0;
        for (size_t e = 0; e < n_ev; e++) {
            int64_t time = (int64_t)(ev[e] >> 40);
            size_t idx = ev[e] & ((1ULL << 40) - 1);
            if (time != previous_tick) {
                int64_t nb = time / REMI_TICKS_PER_BAR - current_bar;
                for (int64_t b = 0; b < nb; b++) idbuf_push(out, REMI_BAR);
                if (nb > 0) {
                    current_bar += nb;
                    bar_tick = current_bar * REMI_TICKS_PER_BAR;
                }
                idbuf_push(out, REMI_POSITION0 + (int32_t)(time - bar_tick));
                previous_tick = time;
            }
            idbuf_push(out, REMI_PROGRAM0 + program[idx] + 1);
            uint64_t p = payload[idx];
            if (p >> 63) {
                idbuf_push(out, REMI_CHORD0 + (int32_t)(p & 15));
            } else {
                idbuf_push(out, REMI_PITCH0 + KEY_PITCH(p) - REMI_PITCH_MIN);
                idbuf_push(out, REMI_VELOCITY0 + KEY_VEL(p));
                idbuf_push(out, REMI_DURATION0 + KEY_DUR(p));
            }
        }
        free(chord_time), free(chord_q), free(ev), free(ev_tmp), free(payload), free(program);
    }
out:
    free(keys), free(tmp), free(tr), free(slot_track);
    return rc;
}

// ---- decoding -------------------------------------------------------------------------------

void remi_decode(const int32_t *ids, size_t n, Score *out, size_t *n_skipped)
{
    memset(out, 0, sizeof *out);
    out->tpq = REMI_TPQ;
    int track_of[129]; // program + 1 -> track index, in first-appearance order
    for (int i = 0; i < 129; i++) track_of[i] = -1;
    int64_t current_tick = 0, bar_tick = 0, current_bar = -1;
    int program = 0;
    size_t skipped = 0;
    for (size_t i = 0; i < n; i++) {
        int id = ids[i];
        switch (remi_token_type(id)) {
        case TOK_BAR:
            current_bar++;
            if (current_bar > 0) current_tick = bar_tick + REMI_TICKS_PER_BAR;
            bar_tick = current_tick;
            break;
        case TOK_POSITION:
            if (current_bar == -1) current_bar = 0;
            current_tick = bar_tick + (id - REMI_POSITION0);
            break;
        case TOK_PROGRAM:
            program = remi_program(id);
            break;
        case TOK_PITCH:
            if (i + 2 < n && remi_token_type(ids[i + 1]) == TOK_VELOCITY &&
                remi_token_type(ids[i + 2]) == TOK_DURATION) {
                int slot = program + 1;
                if (track_of[slot] < 0) {
                    track_of[slot] = (int)out->n;
                    score_add_track(out, program < 0 ? 0 : program, program < 0);
                }
                track_add_note(&out->tracks[track_of[slot]], current_tick, remi_duration_ticks(ids[i + 2]),
                               remi_pitch(id), remi_velocity(ids[i + 1]));
                i += 2; // the Velocity and Duration are consumed (MidiTok re-reads them, to no effect)
            } else {
                skipped++;
            }
            break;
        case TOK_VELOCITY:
        case TOK_DURATION:
        case TOK_SPECIAL:
            skipped++;
            break;
        case TOK_CHORD:
            break;
        }
    }
    *n_skipped = skipped;
}

int64_t remi_time_at(const int32_t *ids, size_t n)
{
    int64_t bar = -1, t = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] == REMI_BAR) bar++, t = bar * REMI_TICKS_PER_BAR;
        else if (remi_token_type(ids[i]) == TOK_POSITION) {
            if (bar < 0) bar = 0; // a Position before any Bar opens bar 0, as in decoding
            t = bar * REMI_TICKS_PER_BAR + (ids[i] - REMI_POSITION0);
        }
    }
    return t;
}
