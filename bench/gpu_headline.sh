#!/usr/bin/env bash
# gpu_headline: the reference's headline config (configs/seed_default.json: 609M parameters, T 1024) trained on all
# of POP909 on a lent GPU for a budget that shows where its curve goes (issue 15): STEPS optimizer steps of BATCH x
# ACCUM windows (default 2,000 steps of 30 x 1: the config's 3 x 10 windows per step in one pass, which the H100 holds;
# the OneCycle schedule over the STEPS), validated every EVAL_EVERY steps, checkpointed only at the end (7 GB of
# weights and Adam state: they stay on the machine). The registry (its losses per step: the curve `make report`
# draws) and train's log come home in $OUT/headline.
# Prepare here: `make CUDA=1 gpu-pack SHARED=../shared` (or gpu-ablation and gpu-libs); there, from the root:
#   OUT=$OUT bash bench/gpu_headline.sh        (or GPU_SESSION_TASK=headline bash bench/gpu_session.sh)
# Env: DIR (build/gpu-ablation: bin/, shards/), CONFIG (configs/seed_default.json), STEPS (2000), BATCH (30),
# ACCUM (1), EVAL_EVERY (100), PRECISION (tf32), DEVICE (cuda), BUDGET_S (480: train gets this long, then SIGTERM:
# it checkpoints and stops, and the curve so far is in the registry). Exit: train's status.
set -u -o pipefail
cd "$(dirname "$0")/.." || exit 1
DIR=${DIR:-build/gpu-ablation}
CONFIG=${CONFIG:-configs/seed_default.json}
STEPS=${STEPS:-2000} BATCH=${BATCH:-30} ACCUM=${ACCUM:-1} EVAL_EVERY=${EVAL_EVERY:-100}
PRECISION=${PRECISION:-tf32} DEVICE=${DEVICE:-cuda} BUDGET_S=${BUDGET_S:-480}
OUTDIR=${OUT:-$DIR/out}/headline
RUN=$DIR/headline
REG=$RUN/registry.db
[ -x "$DIR/bin/train" ] || { echo "gpu_headline: $DIR/bin/train missing: run 'make CUDA=1 gpu-ablation'"; exit 1; }
[ -s "$DIR/shards/train.bin" ] || { echo "gpu_headline: $DIR/shards/train.bin missing"; exit 1; }
if [ "$DEVICE" != cpu ]; then
    . bench/gpu_env.sh
    gpu_libs_check "$DIR/bin/train" || exit 1
fi
mkdir -p "$OUTDIR" "$RUN"
name=$(basename "$CONFIG" .json)
printf '{ "extends": "%s", "train": { "steps": %d, "batch_size": %d, "gradient_accumulation_steps": %d,
  "eval_every": %d, "checkpoint_every": %d, "log_every": 10 } }\n' "$PWD/$CONFIG" "$STEPS" "$BATCH" "$ACCUM" \
    "$EVAL_EVERY" "$STEPS" > "$RUN/run.json"
dev=(--device "$DEVICE"); [ "$DEVICE" = cpu ] && dev=()
prec=(); [ "$DEVICE" != cpu ] && [ "$PRECISION" != fp32 ] && prec=(--precision "$PRECISION")
resume=(); [ -f "$RUN/out/trainer.state" ] && resume=(--resume)
echo "gpu_headline: $name, $STEPS steps of $BATCH x $ACCUM windows, $PRECISION, $BUDGET_S s$([ ${#resume[@]} -gt 0 ] && echo ', resumed')"
t0=$(date +%s)
timeout --signal=TERM --kill-after=120 "$BUDGET_S" "$DIR/bin/train" -c "$RUN/run.json" -d "$DIR/shards" \
    -o "$RUN/out" --experiment "$name-s$STEPS" --registry "$REG" "${dev[@]}" "${prec[@]}" "${resume[@]}" \
    2> >(tee "$OUTDIR/train.log" >&2)
st=$?
echo "gpu_headline: train exit $st after $(($(date +%s) - t0)) s"
[ -f "$REG" ] && cp "$REG" "$OUTDIR/registry.db"
cp "$RUN/run.json" "$OUTDIR/" 2>/dev/null
[ -f "$REG" ] && python3 - "$REG" <<'PY' | tee "$OUTDIR/curve.txt"
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
for split in ("train", "val"):
    rows = c.execute("select step, value from metrics where split = ? and name = 'loss' order by step", (split,)).fetchall()
    print(split, "loss:", " ".join(f"{s}:{v:.3f}" for s, v in rows[:: max(1, len(rows) // 25)]))
PY
exit $st
