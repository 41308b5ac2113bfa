// midi: Standard MIDI Files in and out.
// Reading is our own bounded parser (libsmf 1.3 aborts or overreads on malformed input and is slow): it walks the
// chunks and hands every event to a visitor, never reading outside the buffer and never allocating per event.
// midi_to_score() turns the events into notes with symusic's rules (spec/remi.md §7). Writing uses libsmf.
// Tempo, time signatures, pedals, pitch bends and controls are parsed but not kept in a Score.
#ifndef MIDI_H
#define MIDI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MIDI_MAX_BYTES (32u << 20) // larger inputs are refused, so memory stays bounded (a few x the file)

// One event as it stands in the file, running status resolved.
typedef struct MidiEvent {
    int64_t tick;        // absolute time in its track, in file ticks
    uint8_t status;      // 0x80..0xEF channel message, 0xFF meta, 0xF0 / 0xF7 SysEx
    uint8_t d1, d2;      // channel message data bytes (d2 = 0 for 1-byte messages); d1 = type for a meta event
    uint32_t len;        // payload length of a meta or SysEx event
    const uint8_t *data; // its payload, pointing into the parsed buffer
} MidiEvent;

typedef struct MidiVisitor {
    void (*track_begin)(void *ctx, int track); // each MTrk chunk, in file order, from 0
    void (*event)(void *ctx, int track, const MidiEvent *ev);
    void (*track_end)(void *ctx, int track);
    void *ctx;
} MidiVisitor;

typedef struct MidiInfo {
    int format;          // header format word (0, 1, 2, or anything else: read the same way)
    int n_tracks_header; // tracks the header declares (a hint only)
    int n_tracks;        // MTrk chunks actually read
    int tpq;             // ticks per quarter note (SMPTE divisions are refused)
    int n_lenient;       // irregularities read leniently: missing End-of-Track, truncated last event, ...
} MidiInfo;

// Parses buf[0..n) and calls the visitor (any callback may be NULL). Returns 0, or -1 with err set to the reason
// (not MIDI, truncated header, SMPTE division, running status without status byte, VLQ over 4 bytes, ...).
// Lenient where a reading is clear: unknown chunks skipped, a truncated last chunk or event ends its track,
// chunk lengths beyond the file are cut to the file, trailing garbage is ignored, header length above 6 is skipped.
int midi_parse(const uint8_t *buf, size_t n, MidiInfo *info, const MidiVisitor *v, char *err);

// ---- notes ----------------------------------------------------------------------------------
typedef struct Note {
    int64_t time, dur; // ticks (dur >= 0)
    uint8_t pitch, vel;
} Note;

typedef struct Track {
    int program; // 0..127
    bool is_drum;
    Note *notes;
    size_t n, cap;
} Track;

typedef struct Score {
    int tpq;
    Track *tracks;
    size_t n, cap;
} Score;

// Builds the Score symusic builds (remi.md §7): per MTrk, notes keyed by (channel, program at note-off),
// FIFO pairing per (channel, pitch) with the >= rule (zero-length notes kept), tracks in (channel, program) order,
// empty tracks dropped, channel 9 = drums. Notes are in pairing order, not sorted. Returns 0 or -1 with err.
int midi_to_score(const uint8_t *buf, size_t n, Score *s, char *err);

// Reads a MIDI file ("-" = stdin) into a Score. Returns 0 or -1 with err (the reason, not the path).
int midi_read_score(const char *path, Score *s, char *err);

Track *score_add_track(Score *s, int program, bool is_drum);
void track_add_note(Track *t, int64_t time, int64_t dur, int pitch, int vel);
void score_free(Score *s);

// Writes s as a type-1 SMF with libsmf: a first track with tempo 120 and 4/4, then per Score track one or more
// MTrks (channel 9 for drums, else channel 0 with a ProgramChange and the GM name), split so that symusic's FIFO
// note pairing reads back exactly the same notes. Writes to path as given (use util's out_open for atomicity).
// Returns 0 or -1 with err.
int midi_write_score(const Score *s, const char *path, char *err);

// General MIDI instrument name of program 0..127.
const char *midi_program_name(int program);


#endif
