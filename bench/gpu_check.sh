#!/usr/bin/env bash
# gpu_check: every GPU check and benchmark in one run, on a GPU machine without build tools (the device of the
# developers' guide). Builds nothing: `make CUDA=1 gpu-libs SHARED=../shared` builds the CUDA tests, bench/model,
# bench/decode and bin-cuda/, copies the shared libraries a bare machine lacks into build/gpu-libs and shards of 40
# POP909 songs into build/gpu-data; carry build/cuda/tests, build/cuda/bench, build/gpu-libs, build/gpu-data and
# bin-cuda. cuBLAS 13 is too large to carry: it is looked for there (the CUDA toolkit, or PyTorch's nvidia-* wheels).
# Runs: test_cuda_ops, test_cuda_model, tests/cli/test_tools_cuda.sh (HMT_REQUIRE_GPU=1: no GPU is a failure here),
# then, most wanted first: bench/gpu_model.sh's goals (issue 15's rows: C bf16 against PyTorch bf16 on this GPU),
# bench/gpu_decode.sh, the training profiles, bench/gpu_model.sh's rest (the switches, fp32 and TF32), the decoding
# profiles, compute-sanitizer memcheck, bench/gpu_step.sh (train's step with and without its CUDA graph) and
# bench/gpu_score.sh (eval's rows scored on the GPU against the host). GPU_CHECK_DEADLINE (epoch seconds;
# gpu_session.sh sets it from its budget): each step after the tests runs only while at least its minimum is left,
# with its time limit cut to what is left, so a window's call ends with the most wanted results rather than being
# killed in the middle of the less wanted ones.
# Knobs: GPU_CHECK_CLI=0, GPU_CHECK_BENCH=0 (no benchmark), GPU_CHECK_MODEL=0 (no training benchmark), GPU_CHECK_STEP=0,
# GPU_CHECK_SCORE=0, GPU_CHECK_SAN=0|race (GPU_CHECK_SAN_SECTIONS="attention ...": only those test_cuda_ops sections),
# GPU_CHECK_PROFILE=train|decode|all (per-op
# tables; GPU_CHECK_PROFILE_ARGS: bench/model's for the training one, e.g. --tf32; GPU_CHECK_PROFILE_ATTN: its
# attention kinds, default "gemm fused"; gemm16: gemm with HMT_GPU_ATT16=1; fused0: fused, HMT_GPU_FA_DS_MIB=0; fusedmma: fused, HMT_GPU_FA_MMA=1), GPU_CHECK_RUNS, GPU_CHECK_HEADLINE_RUNS, GPU_CHECK_DECODE_RUNS. Log: $OUT/gpu_check.log (default
# build/gpu-check), the benchmarks' own logs beside it. Exit 0 only when every check ran and passed.
# Usage: bash bench/gpu_check.sh   (from the repository root; about 4 minutes on an H100, memcheck 1-2 more)
set -u
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-build/gpu-check}
mkdir -p "$OUT"
LOG=$OUT/gpu_check.log
exec > >(tee "$LOG") 2>&1
TEST=build/cuda/tests/test_cuda_ops
MODEL_TEST=build/cuda/tests/test_cuda_model
rc=0

echo "== gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)"
git describe --always --dirty 2>/dev/null || true
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,compute_cap \
  --format=csv || echo "nvidia-smi: not found"
python3 -c "import torch; print('PyTorch', torch.__version__, 'CUDA', torch.version.cuda)" 2>/dev/null || true
nproc
# which of the carried libraries this machine has of its own (a lighter carry next time)
ldconfig -p 2>/dev/null | grep -oE 'lib(openblas|sqlite3|cjson|smf|glib-2\.0|gfortran)\.so[.0-9]*' | sort -u | tr '\n' ' '
echo
if [ ! -x "$TEST" ]; then
    echo "gpu_check: $TEST missing: run 'make CUDA=1 gpu-libs' on the build machine and carry build/cuda/tests," \
      "build/gpu-libs and bin-cuda"
    exit 1
fi

# ---- libraries: the carried ones, then a cuBLAS 13 from this machine --------------------------------------------
. bench/gpu_env.sh
echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH//$PWD/.}"
gpu_libs_check "$TEST" || exit 1
ldd "$TEST" | grep -E 'cublas|openblas' | sed "s|$PWD|.|"

# ---- the checks: as the backend runs; a failing op test again with a wait after every op (so a fault names its op)
step() { echo "== $* ($(date -u +%H:%M:%S))"; }
deadline=${GPU_CHECK_DEADLINE:-0}
# budget NAME NEED MAX: prints the seconds step NAME may take, MAX or what is left before the deadline (less 5 s),
# whichever is less; fails, saying so, when fewer than NEED are left
budget() {
    local max=$3 left
    if [ "$deadline" -gt 0 ]; then
        left=$((deadline - $(date +%s) - 5))
        if [ "$left" -lt "$2" ]; then
            echo "gpu_check: $1 left out: $left s to the deadline (GPU_CHECK_DEADLINE), it needs $2" >&2
            return 1
        fi
        [ "$left" -lt "$max" ] && max=$left
    fi
    echo "$max"
}
# stopped NAME STATUS: a benchmark that did not end well is said (124: its time limit); not a failed check
stopped() { [ "$2" = 0 ] || echo "gpu_check: $1 stopped (exit $2$([ "$2" = 124 ] && echo ": its time limit"))"; }
step "$TEST"
if ! HMT_REQUIRE_GPU=1 timeout 120 "$TEST"; then
    rc=1
    step "$TEST, HMT_GPU_SYNC=1"
    HMT_REQUIRE_GPU=1 HMT_GPU_SYNC=1 timeout 120 "$TEST" | grep -E 'FAIL|passed|error' | head -40
fi
# the whole model through hg.c on the CUDA backend against the CPU backend, and 100 training steps
step "$MODEL_TEST"
HMT_REQUIRE_GPU=1 timeout 180 "$MODEL_TEST" || rc=1
# train --device cuda through the tools: registry, determinism, SIGKILL + --resume, across devices, refusal
step tests/cli/test_tools_cuda.sh
if [ "${GPU_CHECK_CLI:-1}" = 0 ]; then
    echo "train checks: left out (GPU_CHECK_CLI=0)"
elif [ -d build/gpu-data/shards ]; then
    HMT_REQUIRE_GPU=1 BIN=bin-cuda SHARDS=build/gpu-data/shards timeout 180 bash tests/cli/test_tools_cuda.sh || rc=1
else
    echo "gpu_check: build/gpu-data/shards missing (make gpu-libs CUDA=1 SHARED=...): train checks not run"; rc=1
fi

# ---- speed: C against PyTorch on this GPU (bench/gpu_model.sh); GPU_CHECK_BENCH=0 leaves it out ------------------
bench=0
if [ "${GPU_CHECK_BENCH:-1}" = 1 ] && [ -x build/cuda/bench/model ] &&
   python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
    bench=1
    # timed NAME LOG SUMMARY MIN MAX CMD...: a benchmark step while at least MIN s are left (at most MAX), its output
    # appended to $OUT/LOG, then LOG's tables (bench/gpu_summary.py: what ran until a stop too) in $OUT/SUMMARY
    timed() {
        local name=$1 log=$OUT/$2 sum=$OUT/$3
        t=$(budget "$name" "$4" "$5") || return 0
        shift 5
        step "$name"
        timeout "$t" "$@" 2>&1 | tee -a "$log"
        stopped "$name" "${PIPESTATUS[0]}"
        python3 bench/gpu_summary.py "$log" > "$sum" || echo "gpu_check: bench/gpu_summary.py found no run in ${log##*/}"
    }
    # model PART MIN MAX: bench/gpu_model.sh's rows of PART (goals, rest), into one gpu_model.log
    model() {
        [ "${GPU_CHECK_MODEL:-1}" != 0 ] || return 0
        timed "bench/gpu_model.sh $1" gpu_model.log gpu_summary.md "$2" "$3" \
            bash bench/gpu_model.sh "${GPU_CHECK_RUNS:-10}" "${GPU_CHECK_HEADLINE_RUNS:-5}" "$1"
    }
    rm -f "$OUT/gpu_model.log" "$OUT/gpu_decode.log"
    model goals 60 300 # issue 15's rows first, then the decoder's, then where the time goes, then the switches
    timed bench/gpu_decode.sh gpu_decode.log gpu_decode_summary.md 40 300 \
        bash bench/gpu_decode.sh "${GPU_CHECK_DECODE_RUNS:-3}"
    # GPU_CHECK_PROFILE_MODE: HMT_GPU_PROFILE's mode, events (default: the GPU's own time per kernel, no waits) or 1
    # (a wait after every op: the wall time per op)
    pmode=${GPU_CHECK_PROFILE_MODE:-events}
    if [[ "${GPU_CHECK_PROFILE:-}" =~ ^(train|all)$ ]]; then # where the C step's time goes, op by op, at batch 64
        read -r -a pargs <<<"${GPU_CHECK_PROFILE_ARGS:-}" # e.g. --tf32
        # fused: under TF32 or bf16 the tensor-core kernels; gemm16: gemm with HMT_GPU_ATT16=1 (bf16 products);
        # fused0: fused with HMT_GPU_FA_DS_MIB=0 (the backward's kernels each compute dS again, none stored);
        # fusedmma: fused with HMT_GPU_FA_MMA=1 (bf16: forward and backward on fragments in registers)
        for att in ${GPU_CHECK_PROFILE_ATTN:-gemm fused}; do
            a16=0 ds=64 mma=0
            [ "$att" = gemm16 ] && a16=1
            [ "$att" = fused0 ] && ds=0
            [ "$att" = fusedmma ] && mma=1
            kind=${att%16}
            kind=${kind%0}
            kind=${kind%mma}
            t=$(budget "the $att profile" 20 120) || continue
            step "HMT_GPU_ATTENTION=$kind HMT_GPU_ATT16=$a16 HMT_GPU_FA_DS_MIB=$ds HMT_GPU_FA_MMA=$mma HMT_GPU_PROFILE=$pmode build/cuda/bench/model 5 --device cuda --batch 64 --full ${pargs[*]}"
            HMT_GPU_ATTENTION=$kind HMT_GPU_ATT16=$a16 HMT_GPU_FA_DS_MIB=$ds HMT_GPU_FA_MMA=$mma HMT_GPU_PROFILE=$pmode timeout "$t" \
                build/cuda/bench/model 5 --device cuda --batch 64 --full "${pargs[@]}" 2>&1 |
                tee "$OUT/gpu_profile_$att.log"
        done
    fi
    model rest 60 420
    if [[ "${GPU_CHECK_PROFILE:-}" =~ ^(decode|all)$ ]]; then # the decoder's time, op by op: with waits, then the
        # GPU's own time per kernel (against the step's tok/s: what the launches cost at batch 1)
        for m in 1 events; do
            t=$(budget "the decoding profile ($m)" 15 60) || continue
            step "HMT_GPU_PROFILE=$m build/cuda/bench/decode 1 1 --device cuda"
            HMT_GPU_PROFILE=$m timeout "$t" build/cuda/bench/decode 1 1 --device cuda 2>&1 | head -60 |
                tee "$OUT/gpu_decode_profile_$m.log"
        done
    fi
fi

# ---- memory checks where compute-sanitizer is installed (GPU_CHECK_SAN=0 leaves them out; =race adds racecheck);
# API errors are not reported: test_cuda_ops asks for more memory than the GPU has, on purpose --
SAN=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
if [ "${GPU_CHECK_SAN:-1}" = 0 ]; then
    echo "compute-sanitizer: left out (GPU_CHECK_SAN=0)"
elif [ -n "$SAN" ]; then
    # GPU_CHECK_SAN_SECTIONS: test_cuda_ops sections to check (e.g. "attention layernorm"; default all)
    read -r -a sections <<<"${GPU_CHECK_SAN_SECTIONS:-}"
    for tool in memcheck $([ "${GPU_CHECK_SAN:-1}" = race ] && echo racecheck); do
        t=$(budget "compute-sanitizer $tool" 30 "${GPU_CHECK_SAN_S:-120}") || continue
        step "compute-sanitizer --tool $tool $TEST ${sections[*]}"
        HMT_REQUIRE_GPU=1 timeout "$t" "$SAN" --tool $tool --report-api-errors no --error-exitcode 3 "$TEST" \
          "${sections[@]}" > "$OUT/sanitizer-$tool.log" 2>&1
        s=$?
        tail -3 "$OUT/sanitizer-$tool.log"
        if [ $s = 124 ]; then # its time limit: what it checked until then had no error (that would exit 3 at once)
            echo "gpu_check: compute-sanitizer $tool stopped at its limit of $t s, no error up to there"
        elif [ $s != 0 ]; then
            echo "gpu_check: compute-sanitizer $tool: exit $s (see sanitizer-$tool.log)"; rc=1
        fi
    done
else
    echo "compute-sanitizer: not installed, skipped"
fi

# the step as train runs it, launched op by op against one CUDA graph (HMT_GPU_STEP_GRAPH=1), fp32 at batch 8
# (where launches weigh most; about 40 s)
if [ "$bench" = 1 ] && [ "${GPU_CHECK_STEP:-1}" != 0 ] && [ -s build/gpu-data/shards/train.bin ] &&
   t=$(budget bench/gpu_step.sh 40 240); then
    step "PRECISIONS=fp32 BATCHES=8 bench/gpu_step.sh 60 3"
    # (its tools and shards named, so a BIN, SHARDS, DEVICE or CONFIGS in the caller's environment does not move it)
    BIN=bin-cuda SHARDS=build/gpu-data/shards DEVICE=cuda CONFIGS="baseline linear_attn" PRECISIONS=fp32 BATCHES=8 \
        timeout "$t" bash bench/gpu_step.sh 60 3 2>&1 | tee "$OUT/gpu_step.log"
    stopped bench/gpu_step.sh "${PIPESTATUS[0]}"
fi
# validation's and eval's scoring on the GPU against the host's copy of the logits (HMT_EVAL_HOST_SCORE=1), on the
# ablation's val split (about 30 s)
if [ "$bench" = 1 ] && [ "${GPU_CHECK_SCORE:-1}" != 0 ] && t=$(budget bench/gpu_score.sh 30 120); then
    step "bench/gpu_score.sh 3"
    BIN=bin-cuda DEVICE=cuda SHARDS='' SPLIT=val CONFIG=baseline timeout "$t" bash bench/gpu_score.sh 3 2>&1 |
        tee "$OUT/gpu_score.log"
    stopped bench/gpu_score.sh "${PIPESTATUS[0]}"
fi
echo "== gpu_check: $([ $rc = 0 ] && echo passed || echo FAILED)"
exit $rc
