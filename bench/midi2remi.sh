#!/usr/bin/env bash
# Tokenizer throughput: midi2remi over a MIDI folder (default: all 909 POP909 songs), with one thread and with -j,
# RUNS times each; prints the median files/s, tokens/s and MIDI MB/s. Output goes to /dev/null, so this measures
# reading, tokenizing and formatting, not the disk. Usage: bench/midi2remi.sh [MIDI_DIR] (env BIN, RUNS, JOBS).
set -euo pipefail
dir=${1:-${SHARED:-../shared}/data/pop909}
bin=${BIN:-bin}
runs=${RUNS:-7}
jobs=${JOBS:-$(nproc)}
[ -x "$bin/midi2remi" ] || { echo "bench: build first (make)" >&2; exit 1; }
[ -d "$dir" ] || { echo "bench: no folder '$dir'" >&2; exit 1; }

n_files=$(find "$dir" -type f \( -iname '*.mid' -o -iname '*.midi' \) | wc -l)
bytes=$(find "$dir" -type f \( -iname '*.mid' -o -iname '*.midi' \) -printf '%s\n' | awk '{s+=$1} END {print s}')
n_tokens=$("$bin/midi2remi" -q "$dir" | cut -f2 | wc -w)
"$bin/midi2remi" -q "$dir" >/dev/null # warm the page cache

median() { sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
run() { # prints the median wall time of RUNS runs of midi2remi -j $1
    for _ in $(seq "$runs"); do
        s=$(date +%s.%N)
        "$bin/midi2remi" -q -j "$1" "$dir" >/dev/null
        e=$(date +%s.%N)
        awk -v s="$s" -v e="$e" 'BEGIN {print e - s}'
    done | median
}
printf 'midi2remi on %s: %d files, %.1f MB of MIDI, %d tokens; median of %d runs\n' "$dir" "$n_files" \
    "$(awk -v b="$bytes" 'BEGIN {print b / 1e6}')" "$n_tokens" "$runs"
printf '%-8s %10s %10s %14s %10s\n' threads seconds files/s tokens/s MB/s
for j in 1 "$jobs"; do
    t=$(run "$j")
    awk -v j="$j" -v t="$t" -v f="$n_files" -v k="$n_tokens" -v b="$bytes" \
        'BEGIN {printf "%-8s %10.3f %10.0f %14.0f %10.1f\n", j, t, f / t, k / t, b / t / 1e6}'
done
echo "reference (issue 2, same machine): MidiTok 3.0.0 does 43 files/s and 340000 tokens/s on one core"
