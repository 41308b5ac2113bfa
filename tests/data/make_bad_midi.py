#!/usr/bin/env python3
# make_bad_midi: writes the malformed-MIDI corpus tests/data/bad/*.mid that tests/test_midi_bad.c reads.
# Each file is built byte by byte from the small helpers below, so a case says exactly which bytes are wrong.
# The expected outcome of each file lives in test_midi_bad.c, not here. Plain python3, no third-party modules;
# the output is deterministic. Files named fuzz-*.mid are fuzzer finds and are never written or removed here.
# Usage: python3 tests/data/make_bad_midi.py [OUT_DIR]   (default: tests/data/bad next to this script)
import os
import struct
import sys

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "bad")
written = {}


def vlq(n, width=None):
    """Variable-length quantity of n; width pads it with 0x80 bytes to that many bytes."""
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    while width and len(out) < width:
        out.append(0x80)
    return bytes(reversed(out))


def be32(n):
    return struct.pack(">I", n)


def mthd(fmt=0, ntracks=1, division=480, length=6, extra=b""):
    return b"MThd" + be32(length) + struct.pack(">HHH", fmt, ntracks, division) + extra


def chunk(cid, payload, length=None):
    return cid + be32(len(payload) if length is None else length) + payload


EOT = b"\x00\xff\x2f\x00"


def mtrk(events, eot=True, length=None):
    body = events + (EOT if eot else b"")
    return chunk(b"MTrk", body, length)


def meta(delta, mtype, payload, length=None):
    return vlq(delta) + bytes([0xFF, mtype]) + vlq(len(payload) if length is None else length) + payload


def ev(delta, *b):
    return vlq(delta) + bytes(b)


# The melody most files carry: four quarter notes C4 D4 E4 F4 at tpq 480, velocity 63, one bar in REMI.
def melody(ch=0):
    out = b""
    for i, p in enumerate((60, 62, 64, 65)):
        out += ev(0, 0x90 | ch, p, 63) + ev(480, 0x80 | ch, p, 0)
    return out


MELODY = melody()
TEMPO = meta(0, 0x51, b"\x07\xa1\x20")
TIMESIG = meta(0, 0x58, b"\x04\x02\x18\x08")
NAME = meta(0, 0x03, b"Piano")
GOOD = mthd() + mtrk(TEMPO + TIMESIG + NAME + MELODY)


def put(name, data):
    assert name not in written, name
    written[name] = data


# ---- not MIDI, header -------------------------------------------------------------------------
put("empty", b"")
put("not_midi_text", b"hello, this is not a MIDI file\n")
put("not_midi_riff", b"RIFF" + be32(36) + b"WAVEfmt " + bytes(28))
put("not_midi_lowercase", b"mthd" + GOOD[4:])
put("mtrk_first", mtrk(MELODY))
put("trunc_hdr_4", GOOD[:4])
put("trunc_hdr_9", GOOD[:9])
put("trunc_hdr_13", GOOD[:13])
put("hdr_len_0", mthd(length=0) + mtrk(MELODY))
put("hdr_len_5", mthd(length=5) + mtrk(MELODY))
put("hdr_len_ffffffff", mthd(length=0xFFFFFFFF) + mtrk(MELODY))
put("hdr_len_7fffffff", mthd(length=0x7FFFFFFF) + mtrk(MELODY))
put("hdr_len_8", mthd(length=8, extra=b"\x00\x00") + mtrk(MELODY))
put("hdr_len_100", mthd(length=100, extra=bytes(range(94))) + mtrk(MELODY))
put("hdr_len_beyond", mthd(length=60, extra=b"\x01\x02") + mtrk(MELODY))  # header length past the end
put("smpte_25fps", mthd(division=0xE728) + mtrk(MELODY))
put("smpte_30fps", mthd(division=0xE250) + mtrk(MELODY))
put("division_0", mthd(division=0) + mtrk(MELODY))
put("division_1", mthd(division=1) + mtrk(ev(0, 0x90, 60, 63) + ev(1, 0x80, 60, 0)))
put("division_7fff", mthd(division=0x7FFF) + mtrk(ev(0, 0x90, 60, 63) + ev(0x7FFF, 0x80, 60, 0)))
put("format_2", mthd(fmt=2) + mtrk(MELODY))
put("format_ffff", mthd(fmt=0xFFFF) + mtrk(MELODY))
put("ntracks_0", mthd(ntracks=0) + mtrk(MELODY))
put("ntracks_65535", mthd(fmt=1, ntracks=65535) + mtrk(MELODY))
put("header_only", mthd())

# ---- chunks ---------------------------------------------------------------------------------------
put("unknown_chunk_before", mthd() + chunk(b"XFIH", b"\x00\x01junk\xff\xff") + mtrk(MELODY))
put("unknown_chunk_after", GOOD + chunk(b"XFKM", bytes(range(256)) * 2))
put("unknown_chunk_binary_id", mthd() + chunk(b"\x00\xff\x90\x80", b"\x90\x3c\x7f") + mtrk(MELODY))
put("second_mthd", mthd(fmt=1, ntracks=2) + chunk(b"MThd", b"\x00\x00\x00\x01\x01\xe0") + mtrk(MELODY))
put("chunk_len_too_long", mthd() + mtrk(MELODY, length=len(MELODY) + 4 + 1000))
put("chunk_len_ffffffff", mthd() + mtrk(MELODY, length=0xFFFFFFFF))
put("chunk_len_80000000", mthd() + mtrk(MELODY, length=0x80000000))
# lengths that wrap a 32-bit offset (pos + 8 + len) back to or before the chunk itself
put("chunk_len_wrap_unknown", mthd() + chunk(b"JUNK", b"", 0xFFFFFFF8) + mtrk(MELODY))
put("chunk_len_wrap_mtrk", mthd() + mtrk(MELODY, length=0xFFFFFFF2) + mtrk(MELODY))
put("chunk_len_wrap_back", mthd() + chunk(b"JUNK", b"", 0xFFFFFFEA) + mtrk(MELODY))
# length too short: the track ends inside the 3rd NoteOn (after its status byte); the rest is read as chunks
# (each melody note is 9 bytes: 00 9c pp 3F, 83 60 8c pp 00)
put("chunk_len_too_short", mthd() + mtrk(MELODY, length=2 * 9 + 2))
put("chunk_len_0", mthd() + mtrk(MELODY, length=0))
put("chunk_len_0_then_track", mthd(fmt=1, ntracks=2) + chunk(b"MTrk", b"") + mtrk(MELODY))
put("chunk_hdr_trunc", GOOD + b"MTr")
put("chunk_hdr_trunc_len", GOOD + b"MTrk\x00\x00")
put("trailing_garbage_text", GOOD + b"this is trailing garbage, not a chunk at all\n")
put("trailing_zeros", GOOD + bytes(300))
put("trailing_one_byte", GOOD + b"\x00")

# ---- tracks: many declared, many real -------------------------------------------------------------
put("ntracks_declared_65535_real_0", mthd(fmt=1, ntracks=65535))
tiny = [mtrk(b"") for _ in range(3000)]  # 3000 tracks holding only End-of-Track
put("many_tracks_empty", mthd(fmt=1, ntracks=3001) + b"".join(tiny) + mtrk(MELODY))
# 1000 tracks with one quarter note each, note i at quarter i: tokens follow the test's generated expectation
put("many_tracks_notes", mthd(fmt=1, ntracks=1000, division=8)
    + b"".join(mtrk(ev(8 * i, 0x90, 60, 63) + ev(8, 0x80, 60, 0)) for i in range(1000)))
# one MTrk using all 2048 (channel, program) keys: at tick 0, 128 NoteOns of C4 per channel; at tick 8, per channel
# 128 ProgramChange + NoteOff pairs, so each note lands in a track of its own (its program is the one at the NoteOff)
keys = b"".join(ev(0, 0x90 | c, 60, 63) for c in range(16) for p in range(128))
keys += b"".join(ev(8 if c == 0 and p == 0 else 0, 0xC0 | c, p) + ev(0, 0x80 | c, 60, 0)
                 for c in range(16) for p in range(128))
put("many_keys", mthd(division=8) + mtrk(keys))
put("many_tracks_zero_len", mthd(fmt=1, ntracks=4000) + chunk(b"MTrk", b"") * 4000 + mtrk(MELODY))

# ---- truncated (format 1: a tempo track, then the melody track) ---------------------------------
T1 = mthd(fmt=1, ntracks=2)
TR0 = mtrk(TEMPO + TIMESIG + meta(0, 0x03, b"Tempo track"))
TR1_EVENTS = NAME + MELODY
TR1 = mtrk(TR1_EVENTS)
BASE = T1 + TR0 + TR1
put("trunc_base", BASE)  # the test also cuts this one at every byte offset
mel0 = len(T1 + TR0) + 8 + len(NAME)  # offset of the melody's first byte in BASE
put("trunc_chunk_id", BASE[: len(T1) + 2])
put("trunc_chunk_len", BASE[: len(T1) + 6])
put("trunc_first_event_delta", BASE[: len(T1) + 8])
put("trunc_mid_meta_type", BASE[: len(T1) + 8 + 2])  # 00 FF | 51
put("trunc_mid_meta_payload", BASE[: len(T1) + 8 + 5])  # 00 FF 51 03 07 | A1 20
put("trunc_mid_name", BASE[: len(T1 + TR0) + 8 + 5])  # track 2: 00 FF 03 05 'P' | 'iano'
put("trunc_after_status", BASE[: mel0 + 18 + 2])  # 3rd NoteOn: 00 90 | 40 3F
put("trunc_mid_event", BASE[: mel0 + 18 + 3])  # 3rd NoteOn: 00 90 40 | 3F
put("trunc_mid_vlq", BASE[: mel0 + 22 + 1])  # 3rd NoteOff: 83 | 60 80 40 00
put("trunc_mid_noteoff", BASE[: mel0 + 27 - 1])  # 3rd NoteOff: 83 60 80 40 | 00
put("trunc_before_eot", BASE[: len(BASE) - 4])
put("trunc_mid_eot", BASE[: len(BASE) - 2])
put("trunc_mid_sysex", T1 + TR0 + chunk(b"MTrk", MELODY + b"\x00\xf0\x05\x7e\x7f", len(MELODY) + 8 + 4))
put("trunc_vlq_at_chunk_end", mthd() + mtrk(MELODY + b"\x81\x81\x81", eot=False))

# ---- variable-length numbers --------------------------------------------------------------------
put("vlq_5byte_delta", mthd() + mtrk(MELODY + b"\x80\x80\x80\x80\x00\x90\x3c\x40"))
put("vlq_ffffffff_delta", mthd() + mtrk(MELODY + b"\xff\xff\xff\xff\x7f\x90\x3c\x40"))
put("vlq_5byte_meta_len", mthd() + mtrk(MELODY + b"\x00\xff\x01\x80\x80\x80\x80\x01x"))
put("vlq_5byte_sysex_len", mthd() + mtrk(MELODY + b"\x00\xf0\x81\x81\x81\x81\x01"))
put("vlq_padded", mthd() + mtrk(b"".join(vlq(0, 4) + bytes([0x90, p, 63]) + vlq(480, 4) + bytes([0x80, p, 0])
                                         for p in (60, 62, 64, 65))))
put("vlq_max_delta", mthd(division=0x7FFF) + mtrk(ev(0x0FFFFFFF, 0x90, 60, 63) + ev(0x7FFF, 0x80, 60, 0)))

# ---- running status -------------------------------------------------------------------------------
put("running_no_status", mthd() + mtrk(b"\x00\x3c\x40" + MELODY))
put("running_ok", mthd() + mtrk(b"\x00\x90\x3c\x3f\x83\x60\x3c\x00\x00\x3e\x3f\x83\x60\x3e\x00"
                                 b"\x00\x40\x3f\x83\x60\x40\x00\x00\x41\x3f\x83\x60\x41\x00"))
put("running_after_meta", mthd() + mtrk(b"\x00\x90\x3c\x3f" + meta(0, 0x01, b"x") + b"\x83\x60\x3c\x00"))
put("running_after_meta_only", mthd() + mtrk(NAME + b"\x00\x3c\x40" + MELODY))
put("running_across_sysex", mthd() + mtrk(b"\x00\x90\x3c\x3f\x00\xf0\x03\x7e\x09\xf7\x83\x60\x3c\x00"))
put("running_after_sysex_only", mthd() + mtrk(b"\x00\xf0\x01\xf7\x00\x3c\x40" + MELODY))
put("running_after_eot", mthd() + mtrk(b"") + mtrk(b"\x00\x3c\x40", eot=False))

# ---- channel messages and status bytes ----------------------------------------------------------
put("data_byte_high", mthd() + mtrk(b"\x00\x90\x3c\x80" + MELODY))
put("pitch_byte_high", mthd() + mtrk(MELODY + b"\x00\x90\xbc\x40"))
put("status_f1", mthd() + mtrk(MELODY + b"\x00\xf1\x00"))
put("status_f8_realtime", mthd() + mtrk(MELODY + b"\x00\xf8"))
put("status_fe", mthd() + mtrk(MELODY + b"\x00\xfe"))
put("all_channel_kinds", mthd() + mtrk(b"\x00\xa0\x3c\x10\x00\xb0\x40\x7f\x00\xd0\x10\x00\xe0\x00\x40"
                                        b"\x00\xc0\x05" + MELODY + b"\x00\xb0\x40\x00"))
put("note_off_without_on", mthd() + mtrk(b"\x00\x80\x30\x00\x00\x90\x31\x00" + MELODY))
put("note_on_never_closed", mthd() + mtrk(b"\x00\x90\x30\x40" * 100 + MELODY))
put("notes_out_of_range", mthd() + mtrk(ev(0, 0x90, 0, 63) + ev(0, 0x90, 127, 63) + ev(480, 0x80, 0, 0)
                                         + ev(0, 0x80, 127, 0) + MELODY))

# ---- time -----------------------------------------------------------------------------------------
put("huge_delta_repeated", mthd(division=8) + mtrk(b"".join(meta(0x0FFFFFFF, 0x01, b"") for _ in range(64))
                                                    + ev(0, 0x90, 60, 63) + ev(8, 0x80, 60, 0)))
put("huge_delta_note_dur", mthd(division=8) + mtrk(ev(0, 0x90, 60, 63) + ev(0, 0x90, 62, 63) + ev(8, 0x80, 62, 0)
                                                    + b"\xff\xff\xff\x7f\x80\x3c\x00"))
# 200000 bars of 32 ticks at tpq 8: the last tick allowed is 6399999; one more is beyond the limit
put("far_future", mthd(division=8) + mtrk(ev(0, 0x90, 60, 63) + ev(8, 0x80, 60, 0)
                                           + ev(200000 * 32 - 8, 0x90, 62, 63) + ev(8, 0x80, 62, 0)))
put("far_future_last_tick", mthd(division=8) + mtrk(ev(200000 * 32 - 1, 0x90, 62, 63) + ev(8, 0x80, 62, 0)))
put("far_future_high_tpq", mthd(division=1) + mtrk(ev(0, 0x90, 60, 63) + ev(1, 0x80, 60, 0)
                                                    + ev(0x0FFFFFFF, 0x90, 62, 63) + ev(1, 0x80, 62, 0)))
put("far_future_out_of_range_pitch", mthd(division=8) + mtrk(ev(0, 0x90, 60, 63) + ev(8, 0x80, 60, 0)
                                                              + ev(200000 * 32, 0x90, 10, 63) + ev(8, 0x80, 10, 0)))

# ---- meta events ----------------------------------------------------------------------------------
put("tempo_len_0", mthd() + mtrk(meta(0, 0x51, b"") + MELODY))
put("tempo_len_1", mthd() + mtrk(meta(0, 0x51, b"\x07") + MELODY))
put("tempo_zero", mthd() + mtrk(meta(0, 0x51, b"\x00\x00\x00") + MELODY))
put("tempo_len_200", mthd() + mtrk(meta(0, 0x51, bytes(range(200))) + MELODY))
put("tempo_len_huge_last", mthd() + mtrk(MELODY + meta(0, 0x51, b"\x07\xa1\x20", 0x0FFFFFFF), eot=False))
put("tempo_len_huge_first", mthd() + mtrk(meta(0, 0x51, b"\x07\xa1\x20", 0x0FFFFFFF) + MELODY))
put("timesig_len_0", mthd() + mtrk(meta(0, 0x58, b"") + MELODY))
put("timesig_absurd", mthd() + mtrk(meta(0, 0x58, b"\x00\xff\x00\x00") + meta(0, 0x58, b"\xff\x20\xff\xff")
                                    + MELODY))
put("timesig_len_huge", mthd() + mtrk(MELODY + meta(0, 0x58, b"\x04\x02", 0x0FFFFFFF), eot=False))
put("keysig_absurd", mthd() + mtrk(meta(0, 0x59, b"\x80\x05") + MELODY))
put("meta_len_300", mthd() + mtrk(meta(0, 0x03, b"n" * 300) + MELODY))
put("meta_type_missing", mthd() + mtrk(MELODY + b"\x00\xff", eot=False))
put("eot_early", mthd() + mtrk(MELODY[:18] + EOT + MELODY[18:]))
put("eot_with_payload", mthd() + mtrk(MELODY + meta(0, 0x2F, b"\x01\x02\x03"), eot=False))
put("eot_missing", mthd() + mtrk(MELODY, eot=False))
put("eot_missing_two_tracks", mthd(fmt=1, ntracks=2) + mtrk(melody(0)[:18], eot=False)
    + mtrk(ev(960, 0x91, 64, 63) + ev(480, 0x81, 64, 0) + ev(0, 0x91, 65, 63) + ev(480, 0x81, 65, 0), eot=False))

# ---- SysEx ----------------------------------------------------------------------------------------
put("sysex_len_0", mthd() + mtrk(b"\x00\xf0\x00" + MELODY))
put("sysex_f7_len_0", mthd() + mtrk(b"\x00\xf7\x00" + MELODY))
put("sysex_packets", mthd() + mtrk(b"\x00\xf0\x03\x43\x12\x00" + b"\x00\xf7\x02\x43\x12" + b"\x00\xf7\x01\xf7"
                                   + MELODY))
put("sysex_gm_reset", mthd() + mtrk(b"\x00\xf0\x05\x7e\x7f\x09\x01\xf7" + MELODY))
put("sysex_len_huge", mthd() + mtrk(MELODY + b"\x00\xf0\x8f\xff\xff\x7f\x01\x02", eot=False))
put("sysex_unterminated_len", mthd() + mtrk(MELODY + b"\x00\xf0\x81", eot=False))

# ---- write ----------------------------------------------------------------------------------------
os.makedirs(OUT, exist_ok=True)
for old in os.listdir(OUT):
    if old.endswith(".mid") and not old.startswith("fuzz-") and old[:-4] not in written:
        os.remove(os.path.join(OUT, old))
total = 0
for name, data in sorted(written.items()):
    with open(os.path.join(OUT, name + ".mid"), "wb") as f:
        f.write(data)
    total += len(data)
print(f"make_bad_midi: {len(written)} files, {total} bytes in {OUT}", file=sys.stderr)
