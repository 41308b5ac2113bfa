#!/usr/bin/env bash
# render: a MIDI file or a REMI token document -> Ogg Vorbis audio, through FluidSynth and a General MIDI soundfont
# (Debian's fluidsynth, timgm6mb-soundfont or fluid-soundfont-gm), encoded by SoX. A token document is decoded by
# remi2midi, a MIDI file checked by midi2remi (both found beside this script, else on PATH) first. FluidSynth's file
# renderer (2.x) runs on for a fixed 2 s grace after its player ends, and its player ends after the last MIDI event once
# the last voice has died out (a release can ring on for seconds at inaudible levels), so SoX cuts the audio back: to
# its last sample above -80 dBFS, but, where the end of the music is known, to no less than its last note-off and no
# more than 1.8 s after it (the last 0.25 s faded out). The end is known for a token document and for any file remi2midi
# wrote (8 ticks per quarter, one tempo of 120 qpm): midi2remi reads its notes back exactly. For other MIDI files the
# cut stops at the player's end (never before the last event), so their release tail may run longer.
# The make rules install the packages (`make audio-deps`); this script only says what is missing. Output is written
# to a temporary name in the target folder, fsynced and renamed, and removed on any failure or signal, as the C
# tools do (HOUSE_STYLE §3). `make` copies it to bin/render.
set -u -o pipefail
prog=render
SF_DIR=/usr/share/sounds/sf2

usage() {
    cat <<EOF
Usage: render -o FILE.ogg [options] [FILE|-]
Render a MIDI file, or a REMI token document (NAME<TAB>TOKENS, one document, as remi2midi -o takes it),
to Ogg Vorbis audio with FluidSynth. The input is FILE, or stdin with no FILE or with -:
  bin/midi2remi song.mid | bin/render -o song.ogg
  bin/sample -m runs/x -n 512 | bin/render -o sample.ogg

  -o FILE           write the audio to FILE, atomically (required; a file name: not - or a folder)
  --soundfont FILE  General MIDI soundfont (default: \$SOUNDFONT, else $SF_DIR/FluidR3_GM.sf2
                    when installed, else $SF_DIR/TimGM6mb.sf2)
  --gain G          FluidSynth's master gain, 0..10 (default 0.5)
  --rate HZ         sample rate, 8000..96000 (default 44100)
  --max-seconds S   refuse music longer than S seconds, 1..86400 (default 3600): FluidSynth renders
                    a file's whole timeline, which a MIDI file can put days away
  -q                do not report tokens remi2midi skips
  -h, --help        show this help

Needs Debian's fluidsynth, sox and a soundfont (apt-get install fluidsynth sox timgm6mb-soundfont, or
make audio-deps).
Exit status: 0 success, 1 bad input, missing program or I/O error (no output is left), 2 usage error.
EOF
}

die() { # die MESSAGE [HINT]: one line on stderr, exit 1 (the EXIT trap removes temporaries)
    printf '%s: %s\n' "$prog" "$1" >&2
    [ $# -gt 1 ] && printf 'hint: %s\n' "$2" >&2
    exit 1
}
die_usage() {
    printf "%s: %s (try '%s --help')\n" "$prog" "$1" "$prog" >&2
    exit 2
}
# has_bytes FILE OFFSET TEXT: FILE holds TEXT at byte OFFSET (cmp, not $(head ...): a binary file's NUL bytes would
# make bash warn)
has_bytes() { cmp -s -n "${#3}" -i "$2:0" -- "$1" <(printf %s "$3"); }
# why FILE [PREFIX]: the reason in the last line of a program's stderr: after PREFIX, else after its last ': '
why() {
    local line
    line=$(tail -n 1 -- "$1" 2>/dev/null)
    if [ $# -gt 1 ]; then line=${line#"$2"}; else line=${line##*: }; fi
    printf '%s' "${line:-unknown error}"
}
# is_number VALUE LO HI: a decimal number in [LO, HI]
is_number() {
    [[ $1 =~ ^[0-9]+([.][0-9]+)?$ ]] && awk -v v="$1" -v lo="$2" -v hi="$3" 'BEGIN { exit !(v >= lo && v <= hi) }'
}

out="" input=- quiet="" gain=0.5 rate=44100 max_s=3600 n_inputs=0
soundfont=${SOUNDFONT:-}
while [ $# -gt 0 ]; do
    case $1 in
    -h | --help)
        usage 2>/dev/null # as the C tools: a help that cannot be written (stdout full or closed) is not an error
        exit 0
        ;;
    -o | --soundfont | --gain | --rate | --max-seconds)
        [ $# -ge 2 ] || die_usage "option $1 needs a value"
        case $1 in
        -o) out=$2 ;;
        --soundfont) soundfont=$2 ;;
        --gain) is_number "$2" 0 10 || die_usage "bad --gain: '$2': expected a number in 0..10"; gain=$2 ;;
        # at most 6 digits before any arithmetic: bash's own test says more than one line on a number past 64 bits;
        # 10#: a leading 0 is decimal, not octal
        --rate) [[ $2 =~ ^[0-9]{1,6}$ ]] && ((10#$2 >= 8000 && 10#$2 <= 96000)) ||
            die_usage "bad --rate: '$2': expected an integer in 8000..96000"
            rate=$((10#$2)) ;;
        --max-seconds) [[ $2 =~ ^[0-9]{1,5}$ ]] && ((10#$2 >= 1 && 10#$2 <= 86400)) ||
            die_usage "bad --max-seconds: '$2': expected an integer in 1..86400"
            max_s=$((10#$2)) ;;
        esac
        shift 2
        ;;
    -q)
        quiet=-q
        shift
        ;;
    -?*) die_usage "unknown option: '$1'" ;;
    *)
        input=$1
        n_inputs=$((n_inputs + 1))
        [ "$n_inputs" -le 1 ] || die_usage "more than one input file"
        shift
        ;;
    esac
done
[ -n "$out" ] || die_usage "an output file is required (-o FILE.ogg)"
# the WAV FluidSynth writes stays within its format's 32-bit sizes (4 GiB): at most 12 h 25 min at 44100 Hz
((((max_s + 12) * rate * 4 + 44) < 4294967295)) ||
    die_usage "--max-seconds $max_s at --rate $rate: the WAV would pass its 4 GiB limit"
# -o names the file itself, checked before any work: not stdout (Ogg goes to a file, renamed into place when
# complete), and not a folder: the final rename would move the temporary into it
[ "$out" = - ] && die_usage "cannot write audio to stdout: give -o FILE.ogg"
[ -d "$out" ] && die "cannot create output: '$out': is a directory"
[[ $out == */ ]] && die "cannot create output: '$out': not a file name (ends in /)"
[ -d "$(dirname -- "$out")" ] || die "cannot create output: '$out': No such file or directory"

for p in fluidsynth sox; do
    command -v $p >/dev/null ||
        die "cannot render: '$p': not installed" \
            "apt-get install fluidsynth sox timgm6mb-soundfont (or: make audio-deps)"
done
if [ -z "$soundfont" ]; then
    for f in "$SF_DIR/FluidR3_GM.sf2" "$SF_DIR/TimGM6mb.sf2"; do
        [ -r "$f" ] && soundfont=$f && break
    done
    [ -n "$soundfont" ] || die "cannot render: no General MIDI soundfont in '$SF_DIR'" \
        "apt-get install timgm6mb-soundfont (or fluid-soundfont-gm), or set SOUNDFONT=FILE.sf2"
fi
[ -r "$soundfont" ] && [ -f "$soundfont" ] || die "cannot read soundfont: '$soundfont': no such readable file"
# a SoundFont 2 (or sf3) file is a RIFF form of type sfbk; FluidSynth would render silence from anything else
has_bytes "$soundfont" 0 RIFF && has_bytes "$soundfont" 8 sfbk ||
    die "cannot read soundfont: '$soundfont': not a SoundFont (no RIFF sfbk header)"

tmp=$(mktemp -d) || die "cannot create a temporary folder"
otmp="" fs_pid=""
cleanup() {
    [ -n "$fs_pid" ] && kill "$fs_pid" 2>/dev/null
    [ -n "$otmp" ] && rm -f "$otmp"
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'cleanup; trap - INT; kill -INT $$' INT
trap 'cleanup; trap - TERM; kill -TERM $$' TERM
trap 'cleanup; trap - HUP; kill -HUP $$' HUP

name=$input
[ "$input" = - ] && name=stdin
if [ "$input" = - ]; then
    cat >"$tmp/in" || die "cannot read: 'stdin'"
else
    [ -e "$input" ] || die "cannot open: '$input': No such file or directory"
    [ -d "$input" ] && die "cannot open: '$input': is a directory"
    cat -- "$input" >"$tmp/in" 2>/dev/null || die "cannot read: '$input'"
fi
[ -s "$tmp/in" ] || die "cannot render: '$name': empty input"

here=$(dirname "$(readlink -f "$0")")
tool() { # tool NAME: this project's program NAME, beside this script, else on PATH
    if [ -x "$here/$1" ]; then echo "$here/$1"; else command -v "$1"; fi
}
if has_bytes "$tmp/in" 0 MThd; then
    midi=$tmp/in
    # FluidSynth plays what it can of a malformed file and exits 0; midi2remi, the project's reader, rejects what it
    # cannot read (a bad header, a data byte above 127, running status with no status byte...) and repairs the rest
    m2r=$(tool midi2remi) || die "cannot read MIDI: 'midi2remi': not found beside $0 or on PATH"
    "$m2r" -q "$midi" >/dev/null 2>"$tmp/m2r.err" || # $midi is absolute: never taken for an option
        die "cannot read MIDI: '$name': $(why "$tmp/m2r.err" "midi2remi: $midi: ")"
elif [[ ${name,,} =~ [.](mid|midi)$ ]]; then # named as MIDI, read as a token document: remi2midi would say less
    die "cannot read MIDI: '$name': not a MIDI file (no MThd header)"
else # a token document: remi2midi decodes it
    r2m=$(tool remi2midi) || die "cannot decode tokens: 'remi2midi': not found beside $0 or on PATH"
    midi=$tmp/in.mid
    "$r2m" $quiet -o "$midi" "$tmp/in" 2>"$tmp/r2m.err"
    rc=$?
    # remi2midi's lines, told as render's: "render:" for "remi2midi:", the input's name for its temporary copy's; on
    # failure only the last line, the error, so that it is one line (not after skipped-token reports)
    errs=$tmp/r2m.err
    if [ "$rc" != 0 ]; then
        errs=$tmp/r2m.last
        tail -n 1 "$tmp/r2m.err" >"$errs"
    fi
    while IFS= read -r line || [ -n "$line" ]; do
        line=${line//"'$tmp/in'"/"'$name'"}
        printf '%s: %s\n' "$prog" "${line#remi2midi: }" >&2
    done <"$errs"
    [ "$rc" = 0 ] || exit 1
fi

otmp=$(mktemp "$out.tmp.XXXXXX" 2>"$tmp/mktemp.err") || die "cannot create output: '$out': $(why "$tmp/mktemp.err")"
# -n -i: no MIDI driver, no shell; -F: render the MIDI file's whole length to a file, faster than real time. Its
# WAV (16-bit stereo: 4 bytes a sample) holds the music, its release tail and a 2 s grace; once it grows past max_s
# seconds and 12 more (the tail's and the grace's room), FluidSynth is stopped, since it would fill the disk with a
# far-off timeline (its audio library's shared memory rules out a file size limit, ulimit -f)
cap=$(((max_s + 12) * rate * 4 + 44))
wav_over() { [ "$(stat -c %s "$tmp/out.wav" 2>/dev/null || echo 0)" -gt "$cap" ]; }
fluidsynth -n -i -q -T wav -r "$rate" -g "$gain" -F "$tmp/out.wav" "$soundfont" "$midi" >"$tmp/fs.log" 2>&1 &
fs_pid=$!
too_long=""
while kill -0 "$fs_pid" 2>/dev/null; do
    wav_over && too_long=1 && break # still running: cleanup stops it
    sleep 0.1
done
if [ -z "$too_long" ]; then # it has ended: its status, and no pid left for cleanup to signal
    wait "$fs_pid"
    rc=$?
    fs_pid=""
    wav_over && too_long=1
fi
[ -n "$too_long" ] && die "too long: '$name': the music lasts more than $max_s s (--max-seconds)"
if [ "$rc" != 0 ] || [ ! -s "$tmp/out.wav" ]; then
    die "fluidsynth failed: '$name': $(grep -v '^$' "$tmp/fs.log" | tail -n 1) (exit $rc)"
fi
# the end of the music in seconds, where it is known: a file as remi2midi writes it (division 8 ticks per quarter,
# one Set Tempo event, of 500000 us: 120 qpm) has 16 ticks a second, and midi2remi reads its notes back as written
# (Bar and Position set the time; Duration_b.p.r lasts (b*r + p) * 8 / r ticks)
music_end() {
    local hex b m2r
    hex=$(od -An -tx1 -v "$1" | tr '\n' ' ' | tr -s ' ')
    read -ra b <<<"$hex"
    [ "${b[12]:-}${b[13]:-}" = 0008 ] || return 1 # MThd's division: 8 ticks per quarter
    [ "$(grep -o ' ff 51 03 .. .. ..' <<<"$hex" | tr '\n' '|')" = " ff 51 03 07 a1 20|" ] || return 1
    m2r=$(tool midi2remi) || return 1
    "$m2r" -q "$1" 2>/dev/null | cut -f2 | awk '{ bar = -1; t = 0; end = 0
        for (i = 1; i <= NF; i++) {
            if ($i == "Bar_None") { bar++; t = bar * 32 }
            else if ($i ~ /^Position_/) { if (bar < 0) bar = 0; t = bar * 32 + substr($i, 10) }
            else if ($i ~ /^Duration_/) {
                split(substr($i, 10), d, "."); e = t + (d[1] * d[3] + d[2]) * 8 / d[3]; if (e > end) end = e }
        }
        printf "%.4f\n", end / 16 }'
}
end=$(music_end "$midi") || end=
# the length to keep, in samples (rounded up): where the sound ends (reverse, drop the now leading silence, reverse
# back), clamped to [end, end + 1.8 s] where the end is known, else at least the player's end (the rendered length
# - 2 s); then Ogg Vorbis at quality 4 (about 128 kb/s), the last 0.25 s faded out
sox -q "$tmp/out.wav" "$tmp/trim.wav" reverse silence 1 0.01 -80d reverse 2>"$tmp/sox.log" ||
    die "sox failed: '$name': $(grep -v '^$' "$tmp/sox.log" | tail -n 1)"
sound=$(soxi -D "$tmp/trim.wav" 2>/dev/null || echo 0)
total=$(soxi -D "$tmp/out.wav" 2>/dev/null || echo 0)
keep=$(awk -v a="$sound" -v b="$total" -v e="$end" -v r="$rate" 'BEGIN { k = a
        if (e != "") { if (k < e + 0) k = e + 0; if (k > e + 1.8) k = e + 1.8 } else if (k < b - 2) k = b - 2
        if (k > b) k = b; if (k < 0.01) k = 0.01; n = int(k * r); if (n < k * r) n++; printf "%d", n }') # samples
sox -q "$tmp/out.wav" -t ogg -C 4 "$otmp" trim 0 "${keep}s" fade t 0 "${keep}s" 0.25 2>"$tmp/sox.log" ||
    die "sox failed: '$name': $(grep -v '^$' "$tmp/sox.log" | tail -n 1)"
[ -s "$otmp" ] || die "sox failed: '$name': no output"
sync -- "$otmp" 2>/dev/null || die "cannot write output: '$out': fsync failed"
chmod 0644 "$otmp" 2>/dev/null # as out_open's files
# -T: onto $out itself, never into it, should a folder of that name have appeared since the check above
mv -f -T -- "$otmp" "$out" 2>"$tmp/mv.err" || die "cannot write output: '$out': rename failed: $(why "$tmp/mv.err")"
otmp=
exit 0
