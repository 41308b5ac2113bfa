#!/usr/bin/env bash
# The training step as `train` runs it (windows, one copy of the step's inputs in, the step, one copy of its loss
# terms out), with its ops launched one by one and as one CUDA graph replayed (HMT_GPU_STEP_GRAPH=1), on one GPU:
# the baseline and linear_attn at batch 8 and 64, fp32 and bf16, STEPS steps each (the first two, run directly and
# captured, included), the median of RUNS runs of train's "s per step". tokens/s = B x T / that. Both runs of a pair
# must end with the same model bytes (the graph's promise); a pair that does not is reported.
# Usage: bench/gpu_step.sh [STEPS (60)] [RUNS (3)]. Needs bin-cuda (make CUDA=1) and shards (SHARDS, default
# build/gpu-data/shards: make CUDA=1 gpu-libs SHARED=../shared); run by bench/gpu_check.sh. CONFIGS, BATCHES,
# PRECISIONS, BIN and DEVICE narrow it (DEVICE=cpu BIN=bin PRECISIONS=fp32: the script's own dry run, no graphs).
set -uo pipefail
steps=${1:-60}
runs=${2:-3}
shards=${SHARDS:-build/gpu-data/shards}
T=$(mktemp -d) || exit 1
trap 'rm -rf "$T"' EXIT
median() { sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
for cfg in ${CONFIGS:-baseline linear_attn}; do
    for B in ${BATCHES:-8 64}; do
        printf '{ "extends": "%s/configs/%s.json", "train": { "batch_size": %d, "steps": %d, "eval_every": %d,
          "checkpoint_every": %d, "log_every": %d } }\n' "$PWD" "$cfg" "$B" "$steps" "$steps" "$steps" "$steps" \
            >"$T/$cfg-$B.json"
        for prec in ${PRECISIONS:-fp32 bf16}; do
            declare -A med=()
            for graph in 0 1; do
                for _ in $(seq "$runs"); do
                    rm -rf "$T/run-$graph"
                    HMT_GPU_STEP_GRAPH=$graph "${BIN:-bin-cuda}/train" --device "${DEVICE:-cuda}" --precision "$prec" -c "$T/$cfg-$B.json" \
                        -d "$shards" -o "$T/run-$graph" --registry "$T/registry.db" 2>&1 |
                        awk '/ s per step/ {print $2}'
                done >"$T/times"
                med[$graph]=$(median <"$T/times")
            done
            Tlen=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["model"]["input_length"])' \
                   "$T/run-0/config.json" 2>/dev/null || echo 0)
            same=yes
            cmp -s "$T/run-0/model.safetensors" "$T/run-1/model.safetensors" || same="NO: the bytes differ"
            awk -v c="$cfg" -v b="$B" -v p="$prec" -v t="$Tlen" -v d="${med[0]:-0}" -v g="${med[1]:-0}" -v s="$same" \
                'BEGIN { f = "%-12s B %-3d %s  launched %.4f s/step (%.0f tok/s)  graph %.4f s/step (%.0f tok/s)  %.2fx"
                         f = f "  same bytes: %s\n"
                         printf(f, c, b, p, d, (d > 0 ? b * t / d : 0), g, (g > 0 ? b * t / g : 0),
                                (g > 0 ? d / g : 0), s) }'
        done
    done
done
