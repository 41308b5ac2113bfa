#!/usr/bin/env bash
# Scale benchmark (issue 17): a large corpus built from POP909's 909 token documents copied under N_DOCS names
# (default 99,990, as in the issue), then wall time and peak resident memory (/usr/bin/time %M) of each stage:
# midi2remi of POP909, shard of the large corpus with duplicates removed and with --keep-duplicates, and train's
# start-up and first 100 steps of a tiny model (bench/scale.json) on POP909's shards and on the large corpus' kept
# copies. Usage: bench/scale.sh [N_DOCS] (env BIN, SHARED, WORK: a scratch folder, default a fresh mktemp -d,
# removed at the end unless KEEP=1; the full size needs about 5 GB there).
set -euo pipefail
n_docs=${1:-99990}
bin=${BIN:-bin}
pop=${SHARED:-../shared}/data/pop909
cfg=$(cd "$(dirname "$0")" && pwd)/scale.json
[ -x "$bin/train" ] || { echo "bench: build first (make)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "bench: needs /usr/bin/time (Debian package time)" >&2; exit 1; }
[ -d "$pop" ] || { echo "bench: no POP909 at '$pop' (set SHARED)" >&2; exit 1; }
work=${WORK:-$(mktemp -d)}
mkdir -p "$work"
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$work"' EXIT

# timed NAME CMD...: runs CMD with its stdout to $work/NAME.out, stderr to $work/NAME.err, and prints a row
timed() {
    local name=$1
    shift
    /usr/bin/time -f '%e %M' -o "$work/$name.time" "$@" >"$work/$name.out" 2>"$work/$name.err" || {
        echo "bench: $name failed:" >&2; tail -3 "$work/$name.err" >&2; exit 1; }
    read -r wall kb <"$work/$name.time"
    printf '%-40s %10s %12.1f\n' "$name" "$wall" "$(awk -v k="$kb" 'BEGIN { print k / 1024 }')"
}
startup() { grep -Eo 'start-up [0-9.]+ s' "$work/$1.err" | grep -Eo '[0-9.]+'; }

printf '%-40s %10s %12s\n' stage 'wall s' 'peak RSS MB'
timed midi2remi_pop909 "$bin/midi2remi" --ids -j "$(nproc)" "$pop"
mv "$work/midi2remi_pop909.out" "$work/pop909.txt"
# the large corpus: copy k of song NNN is named copyK/NNN-K.mid, so every name (and its split) is its own
awk -v n="$n_docs" -F'\t' 'BEGIN { OFS = "\t" } { doc[NR] = $2; name[NR] = $1; m = NR }
    END { for (i = 0; i < n; i++) { k = int(i / m); j = i % m + 1; b = name[j]; sub(/.*\//, "", b); sub(/\.mid$/, "", b)
          print "copy" k "/" b "-" k ".mid", doc[j] } }' "$work/pop909.txt" >"$work/large.txt"
n_tok=$(cut -f2 "$work/large.txt" | wc -w)
printf 'large corpus: %d documents, %d tokens, %.1f GB of token ids\n' "$n_docs" "$n_tok" \
    "$(awk -v b="$(stat -c %s "$work/large.txt")" 'BEGIN { print b / 1e9 }')"
timed shard_large_dedup "$bin/shard" -o "$work/dedup" "$work/large.txt"
sed 's/^/  /' "$work/shard_large_dedup.err"
timed shard_large_keep_duplicates "$bin/shard" --keep-duplicates -o "$work/kept" "$work/large.txt"
sed 's/^/  /' "$work/shard_large_keep_duplicates.err"
rm -f "$work/large.txt"
"$bin/shard" -q -o "$work/pop" "$work/pop909.txt"
timed train_pop909_100_steps "$bin/train" -j "$(nproc)" -c "$cfg" -d "$work/pop" -o "$work/run_pop" --registry "$work/reg.db"
timed train_large_100_steps "$bin/train" -j "$(nproc)" -c "$cfg" -d "$work/kept" -o "$work/run_large" --registry "$work/reg.db"
printf 'train start-up (to the first step): POP909 %s s, large corpus %s s\n' "$(startup train_pop909_100_steps)" \
    "$(startup train_large_100_steps)"
grep -h 'validation:' "$work"/train_*.err | sed 's/^/  /'
grep -h 'val loss' "$work"/train_*.err | sed 's/^/  /'
