#!/usr/bin/env bash
# test_render: bin/render, token documents and MIDI files -> Ogg Vorbis (issue 16). --help and usage errors need
# nothing; the rest needs Debian's fluidsynth, sox and timgm6mb-soundfont, installed when missing (sudo when not
# root); where they cannot be installed (offline) those checks are counted as skipped, never passed. Rendered
# audio must decode (sox reads every sample), last as long as the music (from the file's start to the last
# note-off: at least that, and at most 2 s of release tail more; also for a held drum hit that dies out early),
# and not be silent (RMS above 0.005); a MIDI file and the token document it came from give the same length;
# a MIDI file midi2remi rejects is an error; every error is one line, render's own; failures leave no output, not
# even a temporary, also with -o a folder.
# Env: BIN (tool folder, default bin) and SHARED (default ../shared), relative to the repository root unless absolute.
set -u -o pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "$0")/../.." && pwd) || exit 1
cd "$ROOT" || exit 1
. tests/cli/lib/common.sh
need_pop909

RENDER=$B/render M2R=$B/midi2remi R2M=$B/remi2midi
for t in "$RENDER" "$M2R" "$R2M"; do check "$t is built" test -x "$t"; done

# ---- usage ------------------------------------------------------------------------------------------

for h in -h --help; do
    expect "render $h exits 0" 0 "$RENDER" $h
    check "render $h prints usage on stdout" grep -q "^Usage: render " "$T/out"
    check "render $h leaves stderr empty" empty "$T/err"
done
check "render --help lists its options" eval 'grep -q -e "-o FILE" "$T/out" && grep -q -- "--soundfont FILE" "$T/out" &&
    grep -q -- "--gain G" "$T/out" && grep -q -- "--rate HZ" "$T/out" && grep -q SOUNDFONT "$T/out"'
# a help that cannot be written: as the C tools (shard --help >/dev/full), exit 0 and nothing on stderr
expect "render --help >/dev/full exits 0" 0 bash -c '"$0" --help >/dev/full' "$RENDER"
check "render --help >/dev/full: stderr empty (no cat: write error)" empty "$T/err"
NEVER=$T/never
mkdir "$NEVER"
bad_usage() { usage_case "$RENDER" "$@"; }
bad_usage </dev/null
check "render without -o: says so" usage_err "$T/err" "^render: an output file is required"
bad_usage --no-such-option -o "$NEVER/x.ogg"
check "render: an unknown option is named" usage_err "$T/err" "^render: unknown option: '--no-such-option'$"
bad_usage -o
bad_usage -o "$NEVER/x.ogg" --gain 11
bad_usage -o "$NEVER/x.ogg" --gain x
bad_usage -o "$NEVER/x.ogg" --rate 100
bad_usage -o "$NEVER/x.ogg" --max-seconds 0
bad_usage -o "$NEVER/x.ogg" --max-seconds 86401
bad_usage -o "$NEVER/x.ogg" --max-seconds 86400 --rate 96000 # a WAV over 4 GiB
bad_usage -o "$NEVER/x.ogg" a.mid b.mid
bad_usage -o "$NEVER/x.ogg" --rate 99999999999999999999 # past 64 bits: one line, not bash's own test error first
bad_usage -o - "$NEVER/x.txt"
check "render -o -: says audio does not go to stdout" usage_err "$T/err" "^render: cannot write audio to stdout"
# -o a folder, or a name ending in /: refused before any work (the final rename would move the temporary into it)
printf 'n\tBar_None Position_0 Program_0 Pitch_60 Velocity_127 Duration_4.0.4\n' >"$T/doc.txt"
for o in "$NEVER" "$NEVER/" "$NEVER/new/"; do
    expect "render -o $o exits 1" 1 "$RENDER" -o "$o" "$T/doc.txt"
    check "render -o $o: one error line" one_line "$T/err" \
        "^render: cannot create output: '.*/never(/?': is a directory|/new/': not a file name \(ends in /\))$"
done
check "usage errors and -o FOLDER create no output" no_files "$NEVER"

# ---- rendering --------------------------------------------------------------------------------------

SF=/usr/share/sounds/sf2/TimGM6mb.sf2
N_RENDER=93 # the checks below
if ! deb_try fluidsynth fluidsynth sox timgm6mb-soundfont || ! deb_try sox sox || { [ ! -r "$SF" ] &&
    [ ! -r /usr/share/sounds/sf2/FluidR3_GM.sf2 ] && [ -z "${SOUNDFONT:-}" ]; }; then
    skip "$N_RENDER" "fluidsynth, sox and a soundfont (Debian) cannot be installed here: $(tail -n 1 "$T/apt.log" 2>/dev/null)"
    summary
fi

# music_s DOC: seconds from the start to the last note-off of a token document (remi2midi writes 120 qpm, 8 ticks
# per quarter: 16 ticks a second): Bar and Position set the time, Duration_b.p.r lasts (b*r + p) * 8 / r ticks
music_s() {
    cut -f2 "$1" | awk '{ bar = -1; t = 0; end = 0
        for (i = 1; i <= NF; i++) {
            if ($i == "Bar_None") { bar++; t = bar * 32 }
            else if ($i ~ /^Position_/) { if (bar < 0) bar = 0; t = bar * 32 + substr($i, 10) }
            else if ($i ~ /^Duration_/) { split(substr($i, 10), d, "."); e = t + (d[1] * d[3] + d[2]) * 8 / d[3]; if (e > end) end = e }
        }
        printf "%.4f", end / 16 }'
}
# sox_stat FILE FIELD: a field of `sox FILE -n stat` (decodes every sample; fails on a corrupt file)
sox_stat() { sox "$1" -n stat 2>&1 | awk -F: -v f="$2" '$1 ~ "^" f { gsub(/ /, "", $2); print $2 }'; }
decodes() { sox "$1" -n stat >/dev/null 2>&1 && [ "$(soxi -t "$1" 2>/dev/null)" = vorbis ]; }
# in_range X LO HI
in_range() { awk -v x="$1" -v lo="$2" -v hi="$3" 'BEGIN { exit !(x >= lo && x <= hi) }'; }

mkdir "$T/a"
# 100 ends on notes whose release rings on (at inaudible levels) for 2.4 s: the case that needs the cut
for song in 001 100 909; do
    "$M2R" "$POP/$song.mid" >"$T/a/$song.txt"
    want=$(music_s "$T/a/$song.txt")
    expect "$song: midi2remi | render -o exits 0" 0 bash -c "'$M2R' '$POP/$song.mid' | '$RENDER' -o '$T/a/$song.ogg'"
    check "$song: nothing on stdout or stderr" eval 'empty "$T/out" && empty "$T/err"'
    check "$song: the audio decodes (Ogg Vorbis)" decodes "$T/a/$song.ogg"
    got=$(sox_stat "$T/a/$song.ogg" 'Length \(seconds\)')
    check "$song: lasts as long as the music ($want s) plus at most 2 s, got $got s" \
        in_range "${got:-0}" "$(awk -v w="$want" 'BEGIN { print w - 0.001 }')" "$(awk -v w="$want" 'BEGIN { print w + 2 }')"
    rms=$(sox_stat "$T/a/$song.ogg" 'RMS +amplitude')
    check "$song: not silent (RMS $rms > 0.005)" in_range "${rms:-0}" 0.005 1
done
check "no temporaries beside the outputs" no_tmp "$T/a"

# a MIDI file (from remi2midi) and its token document render alike; - reads stdin
"$R2M" -o "$T/a/001.mid" "$T/a/001.txt"
expect "render FILE.mid exits 0" 0 "$RENDER" -o "$T/a/001m.ogg" "$T/a/001.mid"
check "a MIDI file and its token document give the same length" \
    test "$(soxi -D "$T/a/001m.ogg")" = "$(soxi -D "$T/a/001.ogg")"
expect "render - < FILE.mid exits 0" 0 "$RENDER" -o "$T/a/001s.ogg" - <"$T/a/001.mid"
check "stdin gives the same length" test "$(soxi -D "$T/a/001s.ogg")" = "$(soxi -D "$T/a/001.ogg")"
# a POP909 file as it is, with its own tempo map: decodes and is not silent
expect "render of a POP909 MIDI file exits 0" 0 "$RENDER" -o "$T/a/pop.ogg" "$POP/002.mid"
check "POP909 MIDI file: decodes, not silent" eval 'decodes "$T/a/pop.ogg" && in_range "$(sox_stat "$T/a/pop.ogg" "RMS +amplitude")" 0.005 1'
# a short document: one 2 s note (Duration_4.0.4 = 32 ticks), after an empty bar
printf 'n\tBar_None Bar_None Position_0 Program_0 Pitch_60 Velocity_127 Duration_4.0.4\n' >"$T/a/note.txt"
expect "render of one note exits 0" 0 "$RENDER" -o "$T/a/note.ogg" "$T/a/note.txt"
check "one note after an empty bar: 4 s of music plus at most 2 s, got $(soxi -D "$T/a/note.ogg")" in_range "$(soxi -D "$T/a/note.ogg")" 4 6
check "the empty bar is silence (first 1.9 s), then the note sounds" eval '
    [ "$(sox "$T/a/note.ogg" -n trim 0 1.9 stat 2>&1 | awk "/^Maximum amplitude/ { print (\$3 < 0.001) }")" = 1 ] &&
    [ "$(sox "$T/a/note.ogg" -n trim 2.05 1 stat 2>&1 | awk "/^RMS +amplitude/ { print (\$3 > 0.005) }")" = 1 ]'
# a drum hit held 6 s (96 ticks): the sound dies out long before its note-off, the audio still lasts the 6 s
printf 'd\tBar_None Position_0 Program_-1 Pitch_38 Velocity_127 Duration_12.0.4\n' >"$T/a/drum.txt"
expect "render of a held drum hit exits 0" 0 "$RENDER" -o "$T/a/drum.ogg" "$T/a/drum.txt"
check "a held drum hit: 6 s of music plus at most 2 s, got $(soxi -D "$T/a/drum.ogg")" in_range "$(soxi -D "$T/a/drum.ogg")" 5.999 8
expect "--rate 22050 --gain 1 exits 0" 0 "$RENDER" --rate 22050 --gain 1 -o "$T/a/note22.ogg" "$T/a/note.txt"
check "--rate 22050: the file's sample rate" test "$(soxi -r "$T/a/note22.ogg")" = 22050
expect "SOUNDFONT=$SF exits 0" 0 env SOUNDFONT="$SF" "$RENDER" -o "$T/a/sf.ogg" "$T/a/note.txt"
expect "--soundfont $SF exits 0" 0 "$RENDER" --soundfont "$SF" -o "$T/a/sf2.ogg" "$T/a/note.txt"
check "SOUNDFONT and --soundfont give the same length" test "$(soxi -D "$T/a/sf.ogg")" = "$(soxi -D "$T/a/sf2.ogg")"

# ---- failures leave nothing ---------------------------------------------------------------------------

echo old >"$T/a/keep.ogg"
fails() { # fails NAME PATTERN CMD...: exit 1, one error line matching PATTERN, keep.ogg untouched, no temporaries
    local name=$1 pat=$2
    shift 2
    expect "render, $name: exits 1" 1 "$@"
    check "render, $name: one error line" one_line "$T/err" "$pat"
    check "render, $name: the old output untouched, no temporaries" eval 'same "$T/a/keep.ogg" <(echo old) && no_tmp "$T/a"'
}
fails "a missing input" "^render: cannot open: '.*/none\.mid': No such file or directory$" \
    "$RENDER" -o "$T/a/keep.ogg" "$T/none.mid"
# a timeline days long (a valid MIDI file, its last event far off): stopped at --max-seconds, not rendered to the disk
fails "music over --max-seconds" "^render: too long: '.*far_future_last_tick\.mid': the music lasts more than 5 s" \
    "$RENDER" -o "$T/a/keep.ogg" --max-seconds 5 tests/data/bad/far_future_last_tick.mid
check "render, music over --max-seconds: no FluidSynth left running" \
    eval 'sleep 0.5; ! grep -qs far_future_last_tick /proc/[0-9]*/cmdline'
printf 'n\tBar_None Position_0 Program_0 Pitch_60 Velocity_63 Duration_1.0.8\n' >"$T/half.txt"
expect "render of a 0.5 s note with --max-seconds 1 exits 0 (its release tail and FluidSynth's grace have room)" 0 \
    "$RENDER" -q -o "$T/half.ogg" --max-seconds 1 "$T/half.txt"
# remi2midi's errors are told as render's, naming the input (an & in its name stays as it is)
printf 'x\tBar_None Frobnicate_1\n' >"$T/a/bad&.txt"
fails "an unknown token" "^render: cannot read documents: '.*/bad&\.txt': line 1: unknown token 'Frobnicate_1'$" \
    "$RENDER" -o "$T/a/keep.ogg" "$T/a/bad&.txt"
fails "an unknown token on stdin" "^render: cannot read documents: 'stdin': line 1: unknown token 'Frobnicate_1'$" \
    "$RENDER" -o "$T/a/keep.ogg" - <"$T/a/bad&.txt"
# NUL bytes where render looks for a magic (no bash warning about them)
printf '\0\0\0\0x\tBar_None Frobnicate_1\n' >"$T/a/nul.txt"
fails "a token document with NUL bytes" "^render: cannot read documents: '.*/nul\.txt': line 1: .*NUL byte" \
    "$RENDER" -o "$T/a/keep.ogg" "$T/a/nul.txt"
printf 'RIFF\0\0\0\0\0\0\0\0' >"$T/a/nul.sf2"
fails "a soundfont with NUL bytes" "^render: cannot read soundfont: '.*/nul\.sf2': not a SoundFont" \
    "$RENDER" --soundfont "$T/a/nul.sf2" -o "$T/a/keep.ogg" "$T/a/note.txt"
cp "$T/a/note.txt" "$T/a/text.mid"
fails "a .mid file that is not MIDI" "^render: cannot read MIDI: '.*/text\.mid': not a MIDI file \(no MThd header\)$" \
    "$RENDER" -o "$T/a/keep.ogg" "$T/a/text.mid"
# malformed MIDI files that midi2remi (the project's reader) rejects: FluidSynth would play what it can, near-silence,
# and exit 0; render says midi2remi's reason (tests/test_midi_bad.c has the expected outcomes)
for f in hdr_len_0 hdr_len_5 division_0 smpte_25fps data_byte_high status_f1 running_no_status; do
    fails "malformed MIDI $f.mid" "^render: cannot read MIDI: 'tests/data/bad/$f\.mid': [a-zA-Z]" \
        "$RENDER" -o "$T/a/keep.ogg" "tests/data/bad/$f.mid"
done
fails "malformed MIDI on stdin" "^render: cannot read MIDI: 'stdin': track 0: unexpected status byte 0xF1$" \
    "$RENDER" -o "$T/a/keep.ogg" - <tests/data/bad/status_f1.mid
# ... and files midi2remi reads with repairs still render
for f in eot_missing trunc_mid_event; do
    expect "MIDI that midi2remi repairs, $f.mid: exits 0" 0 "$RENDER" -o "$T/a/$f.ogg" "tests/data/bad/$f.mid"
    check "MIDI that midi2remi repairs, $f.mid: decodes" decodes "$T/a/$f.ogg"
done
fails "a missing soundfont" "^render: cannot read soundfont: '.*/none\.sf2'" \
    env SOUNDFONT="$T/none.sf2" "$RENDER" -o "$T/a/keep.ogg" "$T/a/note.txt"
fails "a soundfont that is not one" "^render: cannot read soundfont: '.*note\.txt': not a SoundFont" "$RENDER" --soundfont "$T/a/note.txt" \
    -o "$T/a/keep.ogg" "$T/a/note.txt"
# SIGTERM during a render: the script finishes its foreground program, removes its temporaries and dies by the signal
"$RENDER" -o "$T/a/term.ogg" "$T/a/100.txt" &
BG_PID=$!
sleep 0.5
kill -TERM "$BG_PID"
wait "$BG_PID"
trc=$?
BG_PID=
check "render killed by SIGTERM: exit 143 (the signal), got $trc" test "$trc" = 143
check "render killed by SIGTERM: no output, no temporaries" eval '[ ! -e "$T/a/term.ogg" ] && no_tmp "$T/a"'
expect "render into a missing folder exits 1" 1 "$RENDER" -o "$T/nope/x.ogg" "$T/a/note.txt"
check "render into a missing folder: one error line" one_line "$T/err" "^render: cannot create output: '.*/nope/x\.ogg'"

summary
