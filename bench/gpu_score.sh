#!/usr/bin/env bash
# gpu_score: what scoring the rows on the GPU is worth (docs/gpu.md, section 7, "Scoring on the GPU"). eval of one
# split (default val: what train's validation scores) with the rows scored on the GPU, then (HMT_EVAL_HOST_SCORE=1)
# on the host from a copy of the logits, as before; RUNS runs each, alternating: the medians of eval's wall time
# (start-up included, the same in both) and of its own "scored ... in S s". The model: CONFIG after one step of train
# (what scoring costs does not depend on the weights). Both must give the same loss within 1e-9 (a few ulps: only
# the order of a row's sum differs); a pair that does not is reported, and the script exits 1.
# Usage: bench/gpu_score.sh [RUNS (3)]. BIN (bin-cuda), SHARDS (build/gpu-ablation/shards, the ablation's, else
# build/gpu-data/shards), SPLIT (val), CONFIG (baseline), DEVICE (cuda; cpu: the script's own dry run, where both
# score on the host). Run by bench/gpu_check.sh last.
set -uo pipefail
runs=${1:-3}
BIN=${BIN:-bin-cuda}
DEVICE=${DEVICE:-cuda}
SPLIT=${SPLIT:-val}
shards=${SHARDS:-build/gpu-ablation/shards}
[ -n "${SHARDS:-}" ] || [ -s "$shards/$SPLIT.bin" ] || shards=build/gpu-data/shards
for f in train eval; do [ -x "$BIN/$f" ] || { echo "gpu_score: $BIN/$f missing" >&2; exit 1; }; done
[ -s "$shards/$SPLIT.bin" ] || { echo "gpu_score: $shards/$SPLIT.bin missing" >&2; exit 1; }
T=$(mktemp -d) || exit 1
trap 'rm -rf "$T"' EXIT
median() { sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
# one step; its own validation over a few windows only (val_max_tokens), so train stays short
printf '{ "extends": "%s/configs/%s.json", "train": { "steps": 1, "eval_every": 1, "checkpoint_every": 1,
  "val_max_tokens": 1 } }\n' "$PWD" "${CONFIG:-baseline}" >"$T/run.json"
"$BIN/train" -q --device "$DEVICE" -c "$T/run.json" -d "$shards" -o "$T/run" --registry "$T/registry.db" ||
    { echo "gpu_score: train failed" >&2; exit 1; }
for r in $(seq "$runs"); do
    for host in 0 1; do
        t0=$(date +%s%N)
        HMT_EVAL_HOST_SCORE=$host "$BIN/eval" --device "$DEVICE" -m "$T/run" -d "$shards" --split "$SPLIT" -n 0 \
            --no-registry --json >"$T/json.$host" 2>"$T/err" || { echo "gpu_score: eval failed:" >&2; cat "$T/err" >&2; exit 1; }
        t1=$(date +%s%N)
        echo $(((t1 - t0) / 1000000)) >>"$T/wall.$host"
        sed -n 's/^eval: scored \([0-9]*\) .* in \([0-9.]*\) s$/\2/p' "$T/err" >>"$T/scored.$host"
        sed -n 's/^eval: scored \([0-9]*\) .*/\1/p' "$T/err" >"$T/n"
        [ "$r" = 1 ] && python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["test_loss"])' \
            "$T/json.$host" >"$T/loss.$host"
    done
done
n=$(cat "$T/n")
read -r l0 <"$T/loss.0"
read -r l1 <"$T/loss.1"
same=$(awk -v a="$l0" -v b="$l1" 'BEGIN { d = a - b; if (d < 0) d = -d; print (d <= 1e-9 * (a < 0 ? -a : a)) ? "yes" : "NO" }')
w0=$(median <"$T/wall.0") w1=$(median <"$T/wall.1") s0=$(median <"$T/scored.0") s1=$(median <"$T/scored.1")
awk -v d="$DEVICE" -v sp="$SPLIT" -v n="$n" -v r="$runs" -v w0="$w0" -v w1="$w1" -v s0="$s0" -v s1="$s1" \
    -v l0="$l0" -v l1="$l1" -v same="$same" 'BEGIN {
    printf("eval --device %s --split %s -n 0: %d targets, median of %d runs\n", d, sp, n, r)
    f = "  %-37s eval %6.2f s, its scoring pass %5.1f s, loss %s\n"
    printf(f, "rows scored on the " (d == "cpu" ? "CPU:" : "GPU:"), w0 / 1000, s0, l0)
    printf(f, "on the host (HMT_EVAL_HOST_SCORE=1):", w1 / 1000, s1, l1)
    printf("  saved %.1f s a scoring pass (%.2fx), eval %.2fx; the same loss within 1e-9: %s\n", s1 - s0,
           s0 > 0 ? s1 / s0 : 0, w0 > 0 ? w1 / w0 : 0, same) }'
[ "$same" = yes ]
