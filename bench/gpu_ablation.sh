#!/usr/bin/env bash
# gpu_ablation: the ablation grid at full budget on a lent GPU, a slice per call (issue 15's study). The lent machine
# has minutes and no make: this script runs the chain of pipelines/experiment.mk itself (run.json, train, eval,
# sample, with the same options), seed by seed so that every config has its first seed before any has its second,
# skips finished runs, resumes an interrupted one (train --resume), and starts a run only while its expected wall
# time (the slowest finished run's, or FIRST_RUN_S before any) fits in what is left of BUDGET_S. train gets the time
# left as a timeout: on SIGTERM it checkpoints and exits 1, and the next call resumes it.
# What the study needs comes home as one file, $OUT/<DIR's name>.tar.gz (the device returns at most 8 files: a slice
# once lost 14 runs' results to that limit), rewritten after every finished run and at the end: registry.db (runs,
# metrics, losses per step; a consistent copy, read while workers write) and per run its config.json, eval.json,
# samples.txt and study.txt as CONFIG-seedN.FILE (staged in $DIR/out); the weights stay behind (carry the run folder
# back to resume one that was cut off). At home: `tar -xzf gpu-ablation.tar.gz`, then bench/registry_merge.sh. For the next slice carry back registry.db (a run finished there is skipped: the
# registry says so) and, to resume a cut-off run, its folder.
#
# Prepare here: `make CUDA=1 gpu-ablation SHARED=../shared` (shards of all of POP909, the tools, the libraries a bare
# machine lacks, in build/gpu-ablation; under 64 MiB). Then on the GPU machine, carrying build/gpu-ablation and
# build/gpu-libs:
#   OUT=$OUT bash bench/gpu_ablation.sh                 all configs of ABLATION, SEEDS "1 2 3 4 5", own steps
# Env: DIR (build/gpu-ablation: bin/, shards/, registry.db, runs/), ABLATION, SEEDS, STEPS (empty: the configs' own
# 2,000), DEVICE (cuda), PRECISION (fp32), BUDGET_S (480: stop starting runs when they would not finish by then),
# FIRST_RUN_S (150), EVAL_DOCS (32), SAMPLES (4), JOBS (1: runs at once on the one GPU; a d 256 run at batch 8
# leaves most of an H100 idle, so several share it; worker w takes the grid's cells w, w + JOBS, ...). Results go to
# $OUT/<DIR's name>.tar.gz. Exit 0 when the grid is complete, 3 when runs are left for the next call, 1 when a step failed.
# Works on the CPU too (DEVICE=cpu, for checking this script).
set -u -o pipefail
SELF=$(realpath "$0") # the workers run this file again, from the root
cd "$(dirname "$0")/.." || exit 1
DIR=${DIR:-build/gpu-ablation}
ABLATION=${ABLATION:-baseline naive linear naive_attn linear_attn shorten3 shorten4 nested cosine_ce exp_cosine_ce}
SEEDS=${SEEDS:-1 2 3 4 5}
STEPS=${STEPS-}
DEVICE=${DEVICE:-cuda}
PRECISION=${PRECISION:-fp32}
BUDGET_S=${BUDGET_S:-480}
FIRST_RUN_S=${FIRST_RUN_S:-150}
EVAL_DOCS=${EVAL_DOCS:-32}
SAMPLES=${SAMPLES:-4}
BIN=$DIR/bin
REG=$DIR/registry.db
OUTDIR=$DIR/out                                            # staged here, sent home as one tar
OUTTAR=${OUT:-$DIR}/$(basename "$DIR").tar.gz
JOBS=${JOBS:-1}
WORKER=${WORKER:-}
t0=$(date +%s)
left() { echo $((BUDGET_S - ($(date +%s) - t0))); }
say() { echo "gpu_ablation${WORKER:+ [$WORKER]}: $*" >&2; }
# the registry (a consistent copy: sqlite3's .backup, or Python's, waiting for the workers' locks) and the staged
# files, as one tar replacing $OUTTAR atomically (every worker calls it; each tar is whole, the last one wins)
send_home() {
    [ -f "$REG" ] || return 0
    local tmp=$DIR/.send.$$ q
    rm -rf "$tmp"; mkdir -p "$tmp"
    q=$(printf '%s' "$tmp/registry.db" | sed "s/'/''/g")
    if command -v sqlite3 >/dev/null; then sqlite3 -cmd '.timeout 60000' "$REG" ".backup '$q'"
    else python3 -c 'import sqlite3, sys
d = sqlite3.connect(sys.argv[2]); sqlite3.connect(sys.argv[1], timeout=60).backup(d); d.close()' "$REG" "$tmp/registry.db"
    fi || { say "$REG: cannot copy it"; rm -rf "$tmp"; return 1; }
    cp "$OUTDIR"/* "$tmp/" 2>/dev/null
    mkdir -p "$(dirname "$OUTTAR")"
    tar -czf "$OUTTAR.tmp.$$" -C "$tmp" . && mv "$OUTTAR.tmp.$$" "$OUTTAR"
    local st=$?
    rm -rf "$tmp"
    return $st
}

for f in train eval sample; do
    [ -x "$BIN/$f" ] || { say "$BIN/$f missing: run 'make CUDA=1 gpu-ablation' and carry $DIR"; exit 1; }
done
[ -s "$DIR/shards/train.bin" ] || { say "$DIR/shards/train.bin missing"; exit 1; }
if [ "$DEVICE" != cpu ] && [ -z "$WORKER" ]; then # workers inherit the parent's LD_LIBRARY_PATH
    . bench/gpu_env.sh
    gpu_libs_check "$BIN/train" >&2 || exit 1
fi
mkdir -p "$DIR/runs" "$OUTDIR"
if [ "$JOBS" -gt 1 ] && [ -z "$WORKER" ]; then # the workers, then one summary
    pids=()
    for w in $(seq 0 $((JOBS - 1))); do
        WORKER=$w bash "$SELF" & pids+=($!)
    done
    rc=0 todo=0
    for p in "${pids[@]}"; do
        wait "$p"; case $? in 0) ;; 3) todo=1 ;; *) rc=1 ;; esac
    done
    send_home
    say "$JOBS workers ended in $(($(date +%s) - t0)) s$([ $todo -gt 0 ] && echo ', runs left for the next call')"
    [ $rc -ne 0 ] && exit 1
    [ $todo -gt 0 ] && exit 3
    exit 0
fi
budget=${STEPS:+steps$STEPS-}
dev=(); [ "$DEVICE" != cpu ] && dev=(--device "$DEVICE")
prec=(); [ "$PRECISION" != fp32 ] && prec=(--precision "$PRECISION")
slowest=0 todo=0 rc=0 n_done=0

# whether the registry holds a finished run of experiment $1, seed $2, evaluated and sampled (a registry carried
# from an earlier slice: its run folders stayed on that machine); sqlite3's CLI, or Python's module
in_registry() {
    [ -s "$REG" ] || return 1
    local q="select count(*) from runs r where r.experiment = '$1' and r.seed = $2 and r.status = 'done' and
             exists (select 1 from evals e where e.run_id = r.run_id) and exists (select 1 from samples s where s.run_id = r.run_id)"
    local n
    # other workers' runs write the registry meanwhile: wait for their locks, never read "locked" as "not done"
    if command -v sqlite3 >/dev/null; then n=$(sqlite3 -cmd '.timeout 60000' "$REG" "$q")
    else n=$(python3 -c 'import sqlite3, sys
print(sqlite3.connect(sys.argv[1], timeout=60).execute(sys.argv[2]).fetchone()[0])' "$REG" "$q")
    fi || { say "$REG: cannot read it"; exit 1; }
    [ "${n:-0}" -gt 0 ]
}

# one (config, seed): 0 done (now or before), 3 not started or cut off (no time), 1 failed
run_one() {
    local cfg=$1 seed=$2 run=$DIR/runs/$1/${budget}seed$2 exp=$1${STEPS:+-s$STEPS} t1 need
    [ -s "$run/eval.json" ] && [ -s "$run/samples.txt" ] && return 0
    [ -e "$run/train.done" ] || ! in_registry "$exp" "$seed" || return 0 # finished in an earlier slice
    need=$((slowest > 0 ? slowest : FIRST_RUN_S))
    if [ "$(left)" -lt "$need" ]; then return 3; fi
    mkdir -p "$run"
    printf '{ "extends": "%s", "train": { "seed": %s%s } }\n' "$PWD/configs/$cfg.json" "$seed" \
        "${STEPS:+, \"steps\": $STEPS}" > "$run/run.json"
    t1=$(date +%s)
    local t_train t_eval
    if [ ! -e "$run/train.done" ]; then
        resume=(); [ -f "$run/trainer.state" ] && resume=(--resume)
        say "$exp seed $seed: train${resume:+ (resume)}, $(left) s left"
        timeout --signal=TERM "$(left)" "$BIN/train" -q -c "$run/run.json" -d "$DIR/shards" -o "$run" \
            --experiment "$exp" --registry "$REG" "${dev[@]}" "${prec[@]}" "${resume[@]}"
        local st=$?
        if [ $st -ne 0 ]; then
            [ "$(left)" -le 1 ] && { say "$exp seed $seed: cut off by the budget; resumes next call"; return 3; }
            say "$exp seed $seed: train failed (status $st)"; return 1
        fi
        touch "$run/train.done"
    fi
    t_train=$(date +%s)
    "$BIN/eval" -q "${dev[@]}" -m "$run" -d "$DIR/shards" -n "$EVAL_DOCS" --seed "$seed" --registry "$REG" \
        --study-out "$run/study.txt" --json > "$run/eval.json.tmp" && mv "$run/eval.json.tmp" "$run/eval.json" ||
        { say "$exp seed $seed: eval failed"; return 1; }
    t_eval=$(date +%s)
    "$BIN/sample" -q "${dev[@]}" -m "$run" --num-samples "$SAMPLES" --seed "$seed" -o "$run/samples.txt" \
        --registry "$REG" || { say "$exp seed $seed: sample failed"; return 1; }
    local wall=$(($(date +%s) - t1))
    [ $wall -gt $slowest ] && slowest=$wall
    local t_sample=$(($(date +%s) - t_eval))
    say "$exp seed $seed: done in $wall s (train $((t_train - t1)), eval $((t_eval - t_train)), sample $t_sample)"
    for f in config.json eval.json samples.txt study.txt; do
        [ -f "$run/$f" ] && cp "$run/$f" "$OUTDIR/$cfg-${budget}seed$seed.$f"
    done
    send_home # a call cut off later keeps this run
    return 0
}

cell=0
for seed in $SEEDS; do
    for cfg in $ABLATION; do
        [ -f "configs/$cfg.json" ] || { say "configs/$cfg.json: no such config"; exit 1; }
        cell=$((cell + 1))
        [ -n "$WORKER" ] && [ $(((cell - 1) % JOBS)) -ne "$WORKER" ] && continue
        run_one "$cfg" "$seed"
        case $? in 0) n_done=$((n_done + 1)) ;; 3) todo=$((todo + 1)) ;; *) rc=1 ;; esac
    done
done
[ -z "$WORKER" ] && send_home
say "$n_done of its runs done (now or before), $todo left for the next call, $(($(date +%s) - t0)) s this call"
[ $rc -ne 0 ] && exit 1
[ $todo -gt 0 ] && exit 3
exit 0
