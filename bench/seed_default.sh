#!/usr/bin/env bash
# seed_default, the reference's headline config (609,003,868 parameters), on this machine: STEPS optimizer steps of
# `train` itself (each 10 accumulated micro-batches of 3 x 1024 tokens, then clipping and Adam), 2 threads, with
# train's plan line, the tokens/s of every step (the registry's metrics) and the peak resident memory
# (/usr/bin/time); then, unless TORCH=0, the same model in PyTorch (tests/ref, 2 threads, OMP_WAIT_POLICY=PASSIVE):
# micro-batch steps (forward, CE, backward) and one Adam step, for the ratio. The shards hold POP909 with a 0.5%
# validation split so that the closing validation pass stays short; the closing checkpoint writes ~9.6 GB.
# Usage: bench/seed_default.sh [STEPS (3)]. Needs `make`, sqlite3, MIDI_DIR (default ../shared/data/pop909).
set -euo pipefail
steps=${1:-3}
midi=${MIDI_DIR:-../shared/data/pop909}
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
make -s bin/train bin/midi2remi bin/shard
bin/midi2remi -q "$midi" | bin/shard -q --val 0.005 --test 0.005 -o "$w/shards"
printf '{"extends": "%s/configs/seed_default.json", "train": {"steps": %d, "log_every": 1, "eval_every": 100000}}\n' \
    "$PWD" "$steps" >"$w/cfg.json"
echo "== C: train -j 2, $steps steps of seed_default (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
OPENBLAS_NUM_THREADS=2 /usr/bin/time -f 'train: peak resident memory %M KiB, wall %e s' \
    bin/train -j 2 -c "$w/cfg.json" -d "$w/shards" -o "$w/run" --registry "$w/reg.db" 2>&1 | grep -v '^step [0-9]*/'
sqlite3 "$w/reg.db" "select 'step ' || step || ': ' || round(value, 1) || ' tokens/s' from metrics
    where split = 'train' and name = 'tokens_per_s' order by step"
[ "${TORCH:-1}" = 0 ] && exit 0
echo "== PyTorch: tests/ref/model.py, 2 threads"
OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 bench/seed_default_torch.py 2
