// midi: a bounded SMF reader, symusic's note pairing, and an SMF writer on libsmf (see midi.h).
// The reader trusts nothing in the file: every length is checked against the bytes that remain, and the only
// allocation is the Score's note arrays, which grow with the number of note-off events (<= file size / 2).
// libsmf is used only here, and only for writing.
#include "midi.h"

#include <smf.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

// ---- SMF container --------------------------------------------------------------------------

static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

// Variable-length quantity: at most 4 bytes (28 bits). Returns bytes used, 0 if truncated, -1 if over 4 bytes.
static int read_vlq(const uint8_t *p, const uint8_t *end, uint32_t *out)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        if (p + i >= end) return 0;
        v = v << 7 | (p[i] & 0x7f);
        if (!(p[i] & 0x80)) {
            *out = v;
            return i + 1;
        }
    }
    return -1;
}

// Data bytes of a channel message by high nibble.
static int channel_len(uint8_t status) { return (status & 0xf0) == 0xc0 || (status & 0xf0) == 0xd0 ? 1 : 2; }

// Parses one MTrk payload. Returns 0, or -1 with err. A truncated last event ends the track (lenient).
static int parse_track(const uint8_t *p, const uint8_t *end, int track, MidiInfo *info, const MidiVisitor *v,
                       char *err)
{
    MidiEvent ev = {0};
    uint8_t running = 0;
    int64_t tick = 0;
    while (p < end) {
        uint32_t delta;
        int k = read_vlq(p, end, &delta);
        if (k < 0) return err_set(err, "track %d: delta time longer than 4 bytes", track);
        if (k == 0) break;
        p += k;
        tick += delta;
        if (p >= end) break;
        uint8_t status = *p;
        if (status & 0x80) p++;
        else if (running) status = running;
        else return err_set(err, "track %d: running status without a status byte", track);

        ev.tick = tick;
        ev.status = status;
        ev.d1 = ev.d2 = 0;
        ev.len = 0;
        ev.data = NULL;
        if (status < 0xf0) {
            int nd = channel_len(status);
            if (end - p < nd) break;
            if ((p[0] & 0x80) || (nd == 2 && (p[1] & 0x80)))
                return err_set(err, "track %d: data byte above 127 in a channel message", track);
            ev.d1 = p[0];
            if (nd == 2) ev.d2 = p[1];
            p += nd;
            running = status;
        } else if (status == 0xff || status == 0xf0 || status == 0xf7) {
            if (status == 0xff) {
                if (p >= end) break;
                ev.d1 = *p++;
            }
            uint32_t len;
            k = read_vlq(p, end, &len);
            if (k < 0) return err_set(err, "track %d: event length longer than 4 bytes", track);
            if (k == 0) break;
            p += k;
            if ((uint64_t)len > (uint64_t)(end - p)) break; // truncated payload: the track ends here
            ev.len = len;
            ev.data = p;
            p += len;
        } else {
            return err_set(err, "track %d: unexpected status byte 0x%02X", track, status);
        }
        if (v && v->event) v->event(v->ctx, track, &ev);
        if (status == 0xff && ev.d1 == 0x2f) return 0; // End of Track: anything after it is ignored
    }
    info->n_lenient++; // no End-of-Track (missing or cut off)
    return 0;
}

int midi_parse(const uint8_t *buf, size_t n, MidiInfo *info, const MidiVisitor *v, char *err)
{
    memset(info, 0, sizeof *info);
    // bounds every count below: ticks < 2^53, NoteOns per track < 2^31 (the Builder's int32 pool indices)
    if (n > MIDI_MAX_BYTES) return err_set(err, "MIDI data too large (%zu bytes, limit %u)", n, MIDI_MAX_BYTES);
    if (n < 4 || memcmp(buf, "MThd", 4) != 0) return err_set(err, "not a MIDI file (no MThd header)");
    if (n < 14) return err_set(err, "truncated MIDI header");
    uint32_t hlen = be32(buf + 4);
    if (hlen < 6) return err_set(err, "MIDI header length %u is below 6", hlen);
    if (hlen > n - 8) return err_set(err, "truncated MIDI header (length %u)", hlen);
    if (hlen > 6) info->n_lenient++;
    info->format = buf[8] << 8 | buf[9];
    info->n_tracks_header = buf[10] << 8 | buf[11];
    int division = buf[12] << 8 | buf[13];
    if (division & 0x8000) return err_set(err, "SMPTE time division is not supported");
    if (division == 0) return err_set(err, "time division is 0 ticks per quarter");
    info->tpq = division;

    size_t pos = 8 + (size_t)hlen;
    while (n - pos >= 8) {
        const uint8_t *c = buf + pos;
        uint32_t clen = be32(c + 4);
        size_t avail = n - pos - 8;
        size_t len = clen <= avail ? clen : avail;
        if (len < clen) info->n_lenient++; // chunk cut short by the end of the file
        if (memcmp(c, "MTrk", 4) == 0) {
            int t = info->n_tracks++;
            if (v && v->track_begin) v->track_begin(v->ctx, t);
            if (parse_track(c + 8, c + 8 + len, t, info, v, err) < 0) return -1;
            if (v && v->track_end) v->track_end(v->ctx, t);
        }
        pos += 8 + len;
    }
    if (pos < n) info->n_lenient++; // trailing bytes too short to be a chunk
    return 0;
}

// ---- Score from events: symusic's rules (remi.md §7) ----------------------------------------

typedef struct NoteOn {
    int64_t tick;
    int32_t next; // next NoteOn of the same (channel, pitch), -1 at the tail
    uint8_t vel;
} NoteOn;

typedef struct Builder {
    Score *s;
    // FIFO of open NoteOns per (channel, pitch), as linked lists in a pool; reset at every MTrk
    int32_t head[16][128], tail[16][128];
    NoteOn *pool;
    size_t n_pool, cap_pool;
    int32_t free_list;
    uint8_t program[16];       // current program per channel
    Track *key_track[16][128]; // notes of the current MTrk per (channel, program)
    uint16_t keys[16 * 128];   // keys used in this MTrk, as channel*128+program
    int n_keys;
} Builder;

static void b_track_begin(void *ctx, int track)
{
    (void)track;
    Builder *b = ctx;
    memset(b->head, 0xff, sizeof b->head);
    memset(b->tail, 0xff, sizeof b->tail);
    b->n_pool = 0;
    b->free_list = -1;
    memset(b->program, 0, sizeof b->program);
}

static int cmp_u16(const void *a, const void *b) { return (int)*(const uint16_t *)a - (int)*(const uint16_t *)b; }

static void b_track_end(void *ctx, int track)
{
    (void)track;
    Builder *b = ctx;
    // emit in std::map order of (channel, program), skipping empty tracks
    qsort(b->keys, (size_t)b->n_keys, sizeof b->keys[0], cmp_u16);
    for (int i = 0; i < b->n_keys; i++) {
        int ch = b->keys[i] >> 7, prog = b->keys[i] & 127;
        Track *t = b->key_track[ch][prog];
        b->key_track[ch][prog] = NULL;
        if (t->n) {
            if (t->cap > t->n) { // fit, so the Score holds no slack from doubling
                t->notes = xrealloc(t->notes, t->n * sizeof *t->notes);
                t->cap = t->n;
            }
            Track *dst = score_add_track(b->s, prog, ch == 9);
            *dst = *t;
        } else {
            free(t->notes);
        }
        free(t);
    }
    b->n_keys = 0;
}

static void b_event(void *ctx, int track, const MidiEvent *ev)
{
    (void)track;
    Builder *b = ctx;
    int type = ev->status & 0xf0, ch = ev->status & 0x0f;
    if (type == 0xc0) {
        b->program[ch] = ev->d1;
        return;
    }
    if (type == 0x90 && ev->d2 != 0) { // NoteOn: queue it
        int32_t i;
        if (b->free_list >= 0) {
            i = b->free_list;
            b->free_list = b->pool[i].next;
        } else {
            xgrow((void **)&b->pool, &b->cap_pool, b->n_pool + 1, sizeof *b->pool);
            i = (int32_t)b->n_pool++;
        }
        b->pool[i] = (NoteOn){.tick = ev->tick, .next = -1, .vel = ev->d2};
        int32_t *tl = &b->tail[ch][ev->d1];
        if (*tl >= 0) b->pool[*tl].next = i;
        else b->head[ch][ev->d1] = i;
        *tl = i;
        return;
    }
    if (type != 0x80 && type != 0x90) return;
    // NoteOff (or NoteOn velocity 0): the track of (channel, current program) exists from now on,
    // and the oldest open NoteOn of this pitch is closed (time only grows, so symusic's >= always holds)
    int prog = b->program[ch];
    Track *t = b->key_track[ch][prog];
    if (!t) {
        t = b->key_track[ch][prog] = xcalloc(1, sizeof *t);
        t->program = prog;
        t->is_drum = ch == 9;
        b->keys[b->n_keys++] = (uint16_t)(ch << 7 | prog);
    }
    int32_t i = b->head[ch][ev->d1];
    if (i < 0) return;
    NoteOn on = b->pool[i];
    b->head[ch][ev->d1] = on.next;
    if (on.next < 0) b->tail[ch][ev->d1] = -1;
    b->pool[i].next = b->free_list;
    b->free_list = i;
    if (!t->cap) { // start at 1 note, not xgrow's 16: a hostile file can hold millions of one-note tracks
        t->notes = xmalloc(sizeof *t->notes);
        t->cap = 1;
    }
    track_add_note(t, on.tick, ev->tick - on.tick, ev->d1, on.vel);
}

int midi_to_score(const uint8_t *buf, size_t n, Score *s, char *err)
{
    memset(s, 0, sizeof *s);
    Builder *b = xcalloc(1, sizeof *b);
    b->s = s;
    MidiVisitor v = {b_track_begin, b_event, b_track_end, b};
    MidiInfo info;
    int rc = midi_parse(buf, n, &info, &v, err);
    for (int i = 0; i < b->n_keys; i++) { // only after an error: tracks of the MTrk that failed
        Track *t = b->key_track[b->keys[i] >> 7][b->keys[i] & 127];
        free(t->notes);
        free(t);
    }
    free(b->pool);
    free(b);
    s->tpq = info.tpq;
    if (rc < 0) score_free(s);
    return rc;
}

int midi_read_score(const char *path, Score *s, char *err)
{
    uint8_t *buf;
    size_t n;
    if (read_file(path, MIDI_MAX_BYTES, &buf, &n, err) < 0) return -1;
    int rc = midi_to_score(buf, n, s, err);
    free(buf);
    return rc;
}

Track *score_add_track(Score *s, int program, bool is_drum)
{
    xgrow((void **)&s->tracks, &s->cap, s->n + 1, sizeof *s->tracks);
    Track *t = &s->tracks[s->n++];
    memset(t, 0, sizeof *t);
    t->program = program;
    t->is_drum = is_drum;
    return t;
}

void track_add_note(Track *t, int64_t time, int64_t dur, int pitch, int vel)
{
    if (t->n == t->cap) xgrow((void **)&t->notes, &t->cap, t->n + 1, sizeof *t->notes);
    t->notes[t->n++] = (Note){.time = time, .dur = dur, .pitch = (uint8_t)pitch, .vel = (uint8_t)vel};
}

void score_free(Score *s)
{
    for (size_t i = 0; i < s->n; i++) free(s->tracks[i].notes);
    free(s->tracks);
    memset(s, 0, sizeof *s);
}

// ---- writing with libsmf --------------------------------------------------------------------

static const char *const gm_names[128] = {
    "Acoustic Grand Piano", "Bright Acoustic Piano", "Electric Grand Piano", "Honky-tonk Piano",
    "Electric Piano 1", "Electric Piano 2", "Harpsichord", "Clavi", "Celesta", "Glockenspiel", "Music Box",
    "Vibraphone", "Marimba", "Xylophone", "Tubular Bells", "Dulcimer", "Drawbar Organ", "Percussive Organ",
    "Rock Organ", "Church Organ", "Reed Organ", "Accordion", "Harmonica", "Tango Accordion",
    "Acoustic Guitar (nylon)", "Acoustic Guitar (steel)", "Electric Guitar (jazz)", "Electric Guitar (clean)",
    "Electric Guitar (muted)", "Overdriven Guitar", "Distortion Guitar", "Guitar Harmonics", "Acoustic Bass",
    "Electric Bass (finger)", "Electric Bass (pick)", "Fretless Bass", "Slap Bass 1", "Slap Bass 2",
    "Synth Bass 1", "Synth Bass 2", "Violin", "Viola", "Cello", "Contrabass", "Tremolo Strings",
    "Pizzicato Strings", "Orchestral Harp", "Timpani", "String Ensembles 1", "String Ensembles 2",
    "SynthStrings 1", "SynthStrings 2", "Choir Aahs", "Voice Oohs", "Synth Voice", "Orchestra Hit", "Trumpet",
    "Trombone", "Tuba", "Muted Trumpet", "French Horn", "Brass Section", "Synth Brass 1", "Synth Brass 2",
    "Soprano Sax", "Alto Sax", "Tenor Sax", "Baritone Sax", "Oboe", "English Horn", "Bassoon", "Clarinet",
    "Piccolo", "Flute", "Recorder", "Pan Flute", "Blown Bottle", "Shakuhachi", "Whistle", "Ocarina",
    "Lead 1 (square)", "Lead 2 (sawtooth)", "Lead 3 (calliope)", "Lead 4 (chiff)", "Lead 5 (charang)",
    "Lead 6 (voice)", "Lead 7 (fifths)", "Lead 8 (bass + lead)", "Pad 1 (new age)", "Pad 2 (warm)",
    "Pad 3 (polysynth)", "Pad 4 (choir)", "Pad 5 (bowed)", "Pad 6 (metallic)", "Pad 7 (halo)", "Pad 8 (sweep)",
    "FX 1 (rain)", "FX 2 (soundtrack)", "FX 3 (crystal)", "FX 4 (atmosphere)", "FX 5 (brightness)",
    "FX 6 (goblins)", "FX 7 (echoes)", "FX 8 (sci-fi)", "Sitar", "Banjo", "Shamisen", "Koto", "Kalimba",
    "Bag pipe", "Fiddle", "Shanai", "Tinkle Bell", "Agogo", "Steel Drums", "Woodblock", "Taiko Drum",
    "Melodic Tom", "Synth Drum", "Reverse Cymbal", "Guitar Fret Noise, Guitar Cutting Noise",
    "Breath Noise, Flute Key Click", "Seashore, Rain, Thunder, Wind, Stream, Bubbles",
    "Bird Tweet, Dog, Horse Gallop", "Telephone Ring, Door Creaking, Door, Scratch, Wind Chime",
    "Helicopter, Car Sounds", "Applause, Laughing, Screaming, Punch, Heart Beat, Footstep",
    "Gunshot, Machine Gun, Lasergun, Explosion",
};

const char *midi_program_name(int program) { return program >= 0 && program < 128 ? gm_names[program] : "?"; }

typedef struct WEvent {
    int64_t tick;
    int order; // at one tick: NoteOns before NoteOffs, so a 0-length note opens before it closes
    uint8_t b0, b1, b2;
} WEvent;

static int cmp_wevent(const void *pa, const void *pb)
{
    const WEvent *a = pa, *b = pb;
    if (a->tick != b->tick) return a->tick < b->tick ? -1 : 1;
    return a->order - b->order;
}

static int cmp_note_time(const void *pa, const void *pb)
{
    const Note *a = pa, *b = pb;
    if (a->time != b->time) return a->time < b->time ? -1 : 1;
    return a < b ? -1 : a > b; // qsort is not stable: keep the given order among equal times
}

static int add_event(smf_track_t *tr, int64_t tick, int b0, int b1, int b2, char *err)
{
    smf_event_t *e = smf_event_new_from_bytes(b0, b1, b2);
    if (!e) return err_set(err, "libsmf could not create an event");
    smf_track_add_event_pulses(tr, e, (int)tick);
    return 0;
}

static int add_meta(smf_track_t *tr, const uint8_t *bytes, int len, char *err)
{
    smf_event_t *e = smf_event_new_from_pointer((void *)bytes, len);
    if (!e) return err_set(err, "libsmf could not create a meta event");
    smf_track_add_event_pulses(tr, e, 0);
    return 0;
}

// Writes notes[0..n) of one program into as few MTrks as symusic's FIFO pairing allows: within one MTrk, notes of
// the same pitch (taken by onset) must end in non-decreasing order, or a NoteOff would close the wrong NoteOn.
// Every layer of a program is read back as one track and merged again by the tokenizer (same program).
static int write_track(smf_t *smf, const Track *t, char *err)
{
    size_t n = t->n;
    Note *notes = xmalloc((n ? n : 1) * sizeof *notes);
    memcpy(notes, t->notes, n * sizeof *notes);
    qsort(notes, n, sizeof *notes, cmp_note_time);
    int *layer = xmalloc((n ? n : 1) * sizeof *layer);
    int n_layers = 0, cap_layers = 0;
    int64_t *last_end = NULL; // [layer][pitch]
    for (size_t i = 0; i < n; i++) {
        const Note *nt = &notes[i];
        if (nt->pitch > 127 || nt->vel == 0 || nt->vel > 127 || nt->time < 0 || nt->dur < 0 ||
            nt->time + nt->dur > INT32_MAX) {
            free(notes), free(layer), free(last_end);
            return err_set(err, "note out of MIDI range (pitch %d, velocity %d, time %lld, duration %lld)",
                           nt->pitch, nt->vel, (long long)nt->time, (long long)nt->dur);
        }
        int64_t end = nt->time + nt->dur;
        int l = 0;
        while (l < n_layers && last_end[l * 128 + nt->pitch] > end) l++;
        if (l == n_layers) {
            if (n_layers == cap_layers) {
                cap_layers = cap_layers ? 2 * cap_layers : 4;
                last_end = xrealloc(last_end, (size_t)cap_layers * 128 * sizeof *last_end);
            }
            for (int p = 0; p < 128; p++) last_end[l * 128 + p] = INT64_MIN;
            n_layers++;
        }
        last_end[l * 128 + nt->pitch] = end;
        layer[i] = l;
    }
    free(last_end);

    // A layer's notes go to MTrks of at most MTRK_NOTES each, in onset order (a part of a layer keeps its rule):
    // smf_save reads its file back and frees it event by event, in time quadratic in a track's events (a document
    // of 500,000 notes took 4 minutes in one track). POP909's songs have at most 3,724 notes, all in one.
    enum { MTRK_NOTES = 8192 };
    int ch = t->is_drum ? 9 : 0, rc = 0;
    WEvent *ev = xmalloc((2 * (n < MTRK_NOTES ? n : MTRK_NOTES) + 1) * sizeof *ev);
    size_t next = 0; // the layer's next note to write: notes before it in onset order are written
    for (int l = 0; l < (n_layers ? n_layers : 1) && rc == 0; l++, next = 0) {
        do {
            smf_track_t *tr = smf_track_new();
            if (!tr) {
                rc = err_set(err, "libsmf could not create a track");
                break;
            }
            smf_add_track(smf, tr);
            smf_event_t *name = smf_event_new_textual(0x03, t->is_drum ? "Drums" : midi_program_name(t->program));
            if (name) smf_track_add_event_pulses(tr, name, 0);
            if (!t->is_drum) rc = add_event(tr, 0, 0xc0 | ch, t->program, -1, err);
            size_t m = 0;
            for (; next < n && m < 2 * MTRK_NOTES; next++) {
                if (layer[next] != l) continue;
                const Note *nt = &notes[next];
                ev[m++] = (WEvent){nt->time, 0, (uint8_t)(0x90 | ch), nt->pitch, nt->vel};
                ev[m++] = (WEvent){nt->time + nt->dur, 1, (uint8_t)(0x80 | ch), nt->pitch, 0};
            }
            qsort(ev, m, sizeof *ev, cmp_wevent); // NoteOns and NoteOffs are two sorted runs: order ties by kind
            for (size_t i = 0; i < m && rc == 0; i++)
                rc = add_event(tr, ev[i].tick, ev[i].b0, ev[i].b1, ev[i].b2, err);
            while (next < n && layer[next] != l) next++; // another MTrk only for more of this layer's notes
        } while (next < n && rc == 0);
    }
    free(ev);
    free(layer);
    free(notes);
    return rc;
}

// smf_delete frees each track's events from the last, and libsmf finds each one in its track by a linear search
// (g_ptr_array_remove): quadratic in a track's events, 59% of remi2midi's time on POP909. Detached first (track
// NULL: smf_event_delete then only frees it), the events go in one pass, and smf_delete finds the tracks empty.
static void smf_free(smf_t *smf)
{
    for (int i = 1; i <= smf->number_of_tracks; i++) {
        smf_track_t *tr = smf_get_track_by_number(smf, i);
        for (guint j = 0; j < tr->events_array->len; j++) {
            smf_event_t *e = g_ptr_array_index(tr->events_array, j);
            e->track = NULL;
            smf_event_delete(e);
        }
        g_ptr_array_set_size(tr->events_array, 0);
        tr->number_of_events = 0;
    }
    smf_delete(smf);
}

int midi_write_score(const Score *s, const char *path, char *err)
{
    smf_t *smf = smf_new();
    if (!smf) return err_set(err, "libsmf could not create a file");
    int rc = 0;
    if (s->tpq <= 0 || s->tpq > 0x7fff || smf_set_ppqn(smf, s->tpq) != 0) {
        rc = err_set(err, "invalid ticks per quarter %d", s->tpq);
        goto out;
    }
    smf_track_t *meta = smf_track_new();
    if (!meta) {
        rc = err_set(err, "libsmf could not create a track");
        goto out;
    }
    smf_add_track(smf, meta);
    static const uint8_t tempo[] = {0xff, 0x51, 0x03, 0x07, 0xa1, 0x20}; // 500000 us per quarter = 120 qpm
    static const uint8_t timesig[] = {0xff, 0x58, 0x04, 0x04, 0x02, 0x18, 0x08}; // 4/4
    if ((rc = add_meta(meta, tempo, sizeof tempo, err)) < 0) goto out;
    if ((rc = add_meta(meta, timesig, sizeof timesig, err)) < 0) goto out;
    for (size_t i = 0; i < s->n && rc == 0; i++) rc = write_track(smf, &s->tracks[i], err);
    if (rc == 0 && smf_save(smf, path) != 0) rc = err_set(err, "libsmf could not save the file");
out:
    smf_free(smf);
    return rc;
}
