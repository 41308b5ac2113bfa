#!/usr/bin/env bash
# gpu_session: a lent GPU window's work in one command (the developers' guide: one prepared script per window).
# Prepare here: `make CUDA=1 gpu-pack SHARED=../shared` (build/gpu-pack/pack.tar.xz: the CUDA tests and benchmarks,
# bin-cuda, the libraries a bare machine lacks, the test shards, the ablation's tools and all of POP909's shards;
# about 37 MB, so one call carries it all). There, carrying build/gpu-pack:
#   OUT=$OUT bash bench/gpu_session.sh
# 1. unpacks the pack (tar with xz, or Python's tarfile where xz is missing);
# 2. bench/gpu_check.sh: every GPU test, the decoding and training benchmarks against PyTorch (its GPU_CHECK_* knobs
#    pass through; default here: 5 steps a benchmark row, 3 for the headline config, as the 2026-11-27 window, and
#    GPU_CHECK_DEADLINE at SESSION_S less 10 s and less GPU_SESSION_RESERVE_S (0: the time kept for step 3), so
#    the checks end in time, most wanted first;
#    compute-sanitizer's memcheck over test_cuda_ops for at most 90 s, the training
#    profile in bf16 at batch 64, gemm attention with and without HMT_GPU_ATT16=1, and fused with and without
#    its stored dS (HMT_GPU_FA_DS_MIB=0) and on fragments in registers (HMT_GPU_FA_MMA=1), and the decoder's
#    profile at batch 1, both as HMT_GPU_PROFILE=events: the GPU's own time per kernel);
# 3. with what is left of SESSION_S (540 s), GPU_SESSION_TASK: ablation (default), the ablation's next slice:
#    bench/gpu_ablation.sh with GPU_SESSION_JOBS (6) runs at once, on top of the registry of the slices so far
#    (bench/results/ablation-h100/fp32.db: its finished runs are skipped); headline: bench/gpu_headline.sh, the
#    reference's headline config for its curve (with GPU_CHECK_MODEL=0 GPU_CHECK_PROFILE= it gets about 7 of the 9
#    minutes); none: nothing.
# GPU_SESSION_CHECK=0 leaves step 2 out (a window that only goes on with the grid; the runs then train without the
# step's graph). GPU_SESSION_PACK: the pack (build/gpu-pack/pack.tar.xz; none there: nothing unpacked). DIR: the
# ablation's folder (build/gpu-ablation), its registry seeded from the slices' so far when it has none.
# GPU_SESSION_STEP_GRAPH (default 1; 0 turns it off): when gpu_check passed (test_tools_cuda.sh: a graphed train run
# ends with the plain run's bytes), the slice or headline run trains with HMT_GPU_STEP_GRAPH=1. The graphed step
# passed every check on the H100 in the tenth session and gives the same bytes (1.12x at batch 8), so the ablation's
# registry is the one the plain step would give.
# Everything comes home as one file, $OUT/gpu-session.tar.gz (the device returns at most 8 files; one window lost an
# ablation slice's results to that limit): gpu_check.log and the benchmarks' logs, gpu-ablation.tar.gz (registry.db
# to merge home with bench/registry_merge.sh, and the runs' small files). The scripts write into build/gpu-session
# (GPU_SESSION_STAGE), and the tar is rewritten from it every 20 s and at the end, so a call cut off at its limit
# still brings home what was done. At home: `tar -xzf gpu-session.tar.gz`. Exit: gpu_check's status, or 1 when a
# slice failed.
set -u
cd "$(dirname "$0")/.." || exit 1
HOME_OUT=${OUT:-build/gpu-session-home}
STAGE=${GPU_SESSION_STAGE:-build/gpu-session}
mkdir -p "$HOME_OUT" "$STAGE"
OUT=$(realpath "$STAGE")
export OUT
send_home() { tar -czf "$HOME_OUT/.gpu-session.tmp" -C "$OUT" . 2>/dev/null && mv "$HOME_OUT/.gpu-session.tmp" "$HOME_OUT/gpu-session.tar.gz"; }
self=$$
( while sleep 20 && kill -0 "$self" 2>/dev/null; do send_home; done ) &
trap 'send_home' EXIT
trap 'exit 143' TERM INT
t0=$(date +%s)
SESSION_S=${SESSION_S:-540}
PACK=${GPU_SESSION_PACK:-build/gpu-pack/pack.tar.xz}
DIR=${DIR:-build/gpu-ablation} # the ablation's folder (bench/gpu_ablation.sh's DIR)
export DIR
if [ -f "$PACK" ]; then
    tar -xJf "$PACK" 2>/dev/null ||
        python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall()' "$PACK" ||
        { echo "gpu_session: cannot unpack $PACK"; exit 1; }
    echo "gpu_session: unpacked in $(($(date +%s) - t0)) s"
fi
# memcheck over test_cuda_ops by default (its attention section took seconds on the H100); the profile in bf16, of
# the gemm attention with and without its bf16 products (HMT_GPU_ATT16=1) and of the fused one with and without its
# stored dS (HMT_GPU_FA_DS_MIB=0) and its mma kernels (HMT_GPU_FA_MMA=1), a row per kernel
rc=0
if [ "${GPU_SESSION_CHECK:-1}" = 0 ]; then
    echo "gpu_session: no checks or benchmarks (GPU_SESSION_CHECK=0)"
else
    GPU_CHECK_DEADLINE=${GPU_CHECK_DEADLINE:-$((t0 + SESSION_S - 10 - ${GPU_SESSION_RESERVE_S:-0}))} \
        GPU_CHECK_RUNS=${GPU_CHECK_RUNS:-5} GPU_CHECK_HEADLINE_RUNS=${GPU_CHECK_HEADLINE_RUNS:-3} \
        GPU_CHECK_SAN=${GPU_CHECK_SAN:-1} GPU_CHECK_SAN_S=${GPU_CHECK_SAN_S:-90} GPU_CHECK_PROFILE=${GPU_CHECK_PROFILE-all} \
        GPU_CHECK_PROFILE_ARGS=${GPU_CHECK_PROFILE_ARGS:---precision bf16} \
        GPU_CHECK_PROFILE_ATTN=${GPU_CHECK_PROFILE_ATTN:-gemm gemm16 fused fused0 fusedmma} bash bench/gpu_check.sh
    rc=$?
    if [ "$rc" = 0 ] && [ "${GPU_SESSION_STEP_GRAPH:-1}" = 1 ]; then
        export HMT_GPU_STEP_GRAPH=1
        echo "gpu_session: the runs below train with HMT_GPU_STEP_GRAPH=1 (gpu_check passed)"
    fi
fi
left=$((SESSION_S - ($(date +%s) - t0)))
task=${GPU_SESSION_TASK:-ablation}
if [ "$task" = none ]; then
    echo "gpu_session: no ablation slice or headline run (GPU_SESSION_TASK=none)"
elif [ "$left" -lt 180 ]; then
    echo "gpu_session: $left s left of SESSION_S: no $task run"
elif [ "$task" = headline ]; then
    echo "== gpu_session: the headline config, $left s left ($(date -u +%H:%M:%S))"
    BUDGET_S=$((left - 40)) bash bench/gpu_headline.sh || rc=1
elif [ "$task" = ablation ]; then
    mkdir -p "$DIR"
    [ -s "$DIR/registry.db" ] || cp bench/results/ablation-h100/fp32.db "$DIR/registry.db"
    echo "== gpu_session: ablation slice, $left s left ($(date -u +%H:%M:%S))"
    BUDGET_S=$((left - 20)) JOBS=${GPU_SESSION_JOBS:-6} bash bench/gpu_ablation.sh 2>&1 |
        tee "$OUT/ablation.log"
    a=${PIPESTATUS[0]}
    [ "$a" = 1 ] && rc=1
else
    echo "gpu_session: GPU_SESSION_TASK=$task: not ablation, headline or none"; rc=1
fi
echo "== gpu_session: $(($(date +%s) - t0)) s, exit $rc"
exit $rc
