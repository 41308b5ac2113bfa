#!/usr/bin/env bash
# test_gpu_check: bench/gpu_check.sh, the first part of a lent GPU window (bench/gpu_session.sh), on this machine: the
# real scripts (gpu_check.sh, gpu_env.sh, gpu_model.sh, gpu_decode.sh, gpu_step.sh, gpu_score.sh, gpu_summary.py,
# gpu_session.sh) in a folder laid out as the window's, where stubs stand for what needs a GPU: the CUDA tests,
# bench/model and bench/decode, bin-cuda/train and eval, tests/cli/test_tools_cuda.sh, PyTorch (a python3 that answers
# for torch and for bench/*_torch.py, and is the real python3 otherwise) and compute-sanitizer. Each stub writes a line
# per call (what it was run with) and prints its program's output format. Checked: the steps' order (the tests, then
# issue 15's benchmark rows, the decoder's, the profiles, the other rows, memcheck, the graphed step, the scoring),
# every row of bench/gpu_model.sh run once, each profile with its switches, the tables made from the logs, every file in
# $OUT; a failing test (exit 1, the op test again with HMT_GPU_SYNC=1, and gpu_session.sh then trains without the
# graph); a failing benchmark or memcheck; a deadline close at hand (each step left out that does not fit, saying so); a
# missing build; gpu_session.sh with its checks, everything home as one tar.
# No GPU, build or POP909 needed; a few seconds. Needs python3; without it the checks count as skipped.
set -u -o pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "$0")/../.." && pwd) || exit 1
cd "$ROOT" || exit 1
. tests/cli/lib/common.sh

N_CHECKS=49
REAL_PY=$(command -v python3) || { skip "$N_CHECKS" "python3 is not installed: bench/gpu_check.sh not checked"; summary; }
export REAL_PY
unset "${!HMT_@}" # the stubs print the switches they were given
# the window's scripts as a bare machine runs them: nothing of make test's (BIN, SHARED) or the caller's in their way
U=(-u BIN -u SHARED -u SHARDS -u DEVICE -u CONFIGS -u BATCHES -u PRECISIONS -u OUT -u DIR)

# ---- the window's folder: the scripts as they are, stubs for the rest ---------------------------------------------
R=$T/root
S=$T/stubbin # before PATH: python3, compute-sanitizer
mkdir -p "$R/bench" "$R/tests/cli" "$R/build/cuda/tests" "$R/build/cuda/bench" "$R/bin-cuda" "$R/configs" \
    "$R/build/gpu-data/shards" "$S"
for f in gpu_check.sh gpu_env.sh gpu_model.sh gpu_decode.sh gpu_step.sh gpu_score.sh gpu_summary.py gpu_session.sh; do
    ln -s "$ROOT/bench/$f" "$R/bench/$f"
done
printf 'x' >"$R/build/gpu-data/shards/train.bin" && printf 'x' >"$R/build/gpu-data/shards/val.bin"
export CALLS=$T/calls STUB_FAIL= # CALLS: the stubs' lines; STUB_FAIL: the stubs that fail ("ops model ...")
# stub FILE BODY: an executable bash script; fails_if NAME in it: exit 1 when STUB_FAIL names it
stub() { printf '#!/usr/bin/env bash\nfails_if() { [[ " $STUB_FAIL " == *" $1 "* ]]; }\n%s\n' "$2" >"$1"; chmod +x "$1"; }
for t in ops model_test; do
    stub "$R/build/cuda/tests/test_cuda_${t%_test}" "echo \"$t \${HMT_GPU_SYNC:+SYNC }\$*\" >>\"\$CALLS\"
if fails_if $t; then echo 'FAIL: a check'; echo '1 passed, 1 failed, 0 skipped'; exit 1; fi
echo '2 passed, 0 failed, 0 skipped'"
done
stub "$R/tests/cli/test_tools_cuda.sh" 'echo "tools BIN=$BIN SHARDS=$SHARDS" >>"$CALLS"; echo "61 passed, 0 failed, 0 skipped"'
# bench/model: RUNS --device cuda --batch B --full [--precision P | --tf32] [--config F] [--recompute-ffn]; tokens/s
# B x 1000 + 100 x (1 fp32, 2 TF32, 3 bf16) + 10 fused + 20 mma; alloc MiB 400 fused, 500 gemm
stub "$R/build/cuda/bench/model" 'n=$1; shift; B=0 p=fp32 cfg= more=
while [ $# -gt 0 ]; do
    case $1 in --batch) B=$2; shift ;; --precision) p=$2; shift ;; --tf32) p=tf32 ;; --config) cfg=$2; shift ;;
        --device | --full) [ "$1" = --device ] && shift ;; *) more="$more $1" ;; esac
    shift
done
echo "model B$B $p${cfg:+ headline}$more $(env | grep "^HMT_GPU_" | sort | tr "\n" " ")" >>"$CALLS"
echo "$n${cfg:+ headline}" >>"$CALLS.runs"
fails_if model && exit 1
case $p in fp32) d="fp32 (TF32 off)" k=1 ;; tf32) d=TF32 k=2 ;; *) d="bf16 linear layers" k=3 ;; esac
att=${HMT_GPU_ATTENTION:-gemm} tok=$((B * 1000 + k * 100)) alloc=500
[ "$att" = fused ] && tok=$((tok + 10)) alloc=400
[ "${HMT_GPU_FA_MMA:-0}" = 1 ] && tok=$((tok + 20))
echo "device: STUB GPU; batch $B; $d; cuBLAS 8192^3: 1.0 TFLOP/s (bf16: 2.0)"
echo "step: forward, cross-entropy, backward, clipping, Adam"
echo "config                       step s     tokens/s    GFLOP/s     of sgemm    GPU MiB    of bf16  alloc MiB"
echo "attention: $att (stub)"
names=("baseline (6 layers)" "hourglass naive+attn" "hourglass linear+attn")
[ -n "$cfg" ] && names=(seed_default.json)
for n in "${names[@]}"; do printf "%-22s %12.4f %12d %10s %12s %10d %11s %10d\n" "$n" 0.01 "$tok" 1.0 1% 1000 1.0% "$alloc"; done
[ -n "${HMT_GPU_PROFILE:-}" ] && echo "profile ($HMT_GPU_PROFILE): op by op" >&2
exit 0'
# bench/decode: RUNS B --device cuda; gen tok/s 4000, + 2000 with MEGA, + 1000 with graphs
stub "$R/build/cuda/bench/decode" 'echo "decode $* $(env | grep "^HMT_GPU_" | sort | tr "\n" " ")" >>"$CALLS"
g=4000
[ "${HMT_GPU_DECODE_MEGA:-0}" = 1 ] && g=$((g + 2000))
[ "${HMT_GPU_DECODE_GRAPH:-0}" = 1 ] && g=$((g + 1000))
echo "device: STUB GPU"
echo "config                  B  prefill tok/s     step tok/s      gen tok/s   full fwd tok/s   gen/full"
for B in 1 8; do printf "%-22s %2d %14d %14d %14d %16.1f %9dx\n" "baseline (6 layers)" $B 90000 $((g + 100)) $g 1000.0 4; done'
stub "$R/bin-cuda/train" 'o= a="$*"
while [ $# -gt 0 ]; do [ "$1" = -o ] && o=$2; shift; done
echo "train graph=${HMT_GPU_STEP_GRAPH:-0} $a" >>"$CALLS"
mkdir -p "$o" && echo "{\"model\": {\"input_length\": 512}}" >"$o/config.json" && echo weights >"$o/model.safetensors"
echo "train: 0.010 s per step; of that, data path 1.000%" >&2'
# bin-cuda/eval: the scoring pass 1.5 s on the host (HMT_EVAL_HOST_SCORE=1), 0.2 s on the GPU; the same loss
stub "$R/bin-cuda/eval" 'echo "eval host=${HMT_EVAL_HOST_SCORE:-0} $*" >>"$CALLS"
s=0.2
[ "${HMT_EVAL_HOST_SCORE:-0}" = 1 ] && s=1.5
echo "eval: scored 331237 val tokens in $s s" >&2
echo "{\"test_loss\": 1.5037}"'
stub "$S/python3" 'case ${1:-} in
-c) if [[ $2 == *"import torch"* ]]; then [[ $2 == *assert* ]] || echo "PyTorch stub CUDA stub"; exit 0; fi ;;
bench/model_torch.py)
    B=0 p=fp32 cfg=
    while [ $# -gt 0 ]; do
        case $1 in --batch) B=$2; shift ;; --precision) p=$2; shift ;; --config) cfg=$2; shift ;; esac
        shift
    done
    echo "torch B$B $p${cfg:+ headline}" >>"$CALLS"
    case $p in fp32) k=1 ;; tf32) k=2 ;; *) k=3 ;; esac
    echo "PyTorch 2.11.0+stub, STUB GPU, batch $B, $p, full step"
    echo "config                       step s     tokens/s   peak MiB"
    names=("baseline (6 layers)" "hourglass naive+attn" "hourglass linear+attn")
    [ -n "$cfg" ] && names=(seed_default.json)
    for n in "${names[@]}"; do printf "%-22s %12.4f %12d %10d\n" "$n" 0.05 $((B * 100 + k * 10)) 2000; done
    exit 0 ;;
bench/decode_torch.py)
    echo "torch decode" >>"$CALLS"
    echo "PyTorch 2.11.0+stub, STUB GPU"
    echo "config                  B  forward s   tokens/s"
    printf "%-22s %2d %10.3f %10.1f\n" "baseline (6 layers)" 1 0.004 200.0 "baseline (6 layers)" 8 0.004 1600.0
    exit 0 ;;
esac
exec "$REAL_PY" "$@"'
stub "$S/compute-sanitizer" 'echo "sanitizer $*" >>"$CALLS"
fails_if sanitizer && { echo "========= ERROR SUMMARY: 1 error"; exit 3; }
echo "========= ERROR SUMMARY: 0 errors"'

# check_in [VAR=VALUE...]: bench/gpu_check.sh in the window's folder, its log in $T/out, $OUT = $T/check
O=$T/check rc=0
check_in() {
    rm -rf "$O" "$CALLS" "$CALLS.runs"
    run env "${U[@]}" PATH="$S:$PATH" OUT="$O" GPU_CHECK_SAN_S=30 "$@" bash "$R/bench/gpu_check.sh"
}
n_calls() { grep -c "$1" "$CALLS"; }
lacks() { ! grep -q -- "$1" "$2"; }

# ---- everything, as gpu_session.sh asks for it ------------------------------------------------------------------
check_in GPU_CHECK_RUNS=5 GPU_CHECK_HEADLINE_RUNS=3 GPU_CHECK_PROFILE=all GPU_CHECK_PROFILE_ARGS="--precision bf16" \
    GPU_CHECK_PROFILE_ATTN="gemm gemm16 fused fused0 fusedmma"
check "all passes: exits 0" test "$rc" = 0
check "all passes: the log ends 'passed'" test "$(tail -1 "$O/gpu_check.log")" = "== gpu_check: passed"
check "the log is what gpu_check printed" same "$O/gpu_check.log" "$T/out"
grep '^== ' "$O/gpu_check.log" | sed 's/ ([0-9:]*)$//' | grep -v '^== gpu_check' >"$T/steps"
cat >"$T/want" <<'EOF'
== build/cuda/tests/test_cuda_ops
== build/cuda/tests/test_cuda_model
== tests/cli/test_tools_cuda.sh
== bench/gpu_model.sh goals
EOF
check "the tests, then gpu_model.sh's goals" same <(head -4 "$T/steps") "$T/want"
sed -n '/^== bench\/gpu_model.sh goals/,$p' "$O/gpu_check.log" | grep -E '^== (bench|HMT|compute|PRECISIONS)' |
    sed -E 's/ \([0-9:]+\)$//; s/^== (HMT_GPU_PROFILE=[a-z0-9]+ build\/cuda\/bench\/decode).*/== \1/;
            s/^== HMT_GPU_ATTENTION=.*/== training profile/; s/ +$//' | uniq -c | sed 's/^ *//' >"$T/steps"
cat >"$T/want" <<'EOF'
1 == bench/gpu_model.sh goals
1 == bench/gpu_decode.sh
5 == training profile
1 == bench/gpu_model.sh rest
1 == HMT_GPU_PROFILE=1 build/cuda/bench/decode
1 == HMT_GPU_PROFILE=events build/cuda/bench/decode
1 == compute-sanitizer --tool memcheck build/cuda/tests/test_cuda_ops
1 == PRECISIONS=fp32 BATCHES=8 bench/gpu_step.sh 60 3
1 == bench/gpu_score.sh 3
EOF
check "then the decoder, 5 profiles, the other rows, the decoding profiles, memcheck, the graphed step, the scoring" \
    same "$T/steps" "$T/want"
# the rows: issue 15's (bf16 at batch 64 and 8, the headline config) before any other; each row once
grep -E '^(model|torch) ' "$CALLS" | grep -v 'HMT_GPU_PROFILE\|^torch decode' | sed 's/HMT_GPU_ATTENTION=//' >"$T/rows"
check "the first row: C bf16 at batch 64, gemm attention" grep -q "^model B64 bf16 gemm $" <(head -1 "$T/rows")
check "issue 15's 12 rows come first: C bf16 gemm, fused, mma and PyTorch bf16 at batch 64, 8 and the headline" \
    test "$(head -12 "$T/rows" | sed -E 's/ fused HMT_GPU_FA_MMA=1 $/ mma/; s/ $//' |
            tr '\n' ,)" = "model B64 bf16 gemm,model B64 bf16 fused,model B64 bf16 mma,torch B64 bf16,model B8 bf16 gemm,\
model B8 bf16 fused,model B8 bf16 mma,torch B8 bf16,model B24 bf16 headline gemm,model B24 bf16 headline fused,\
model B24 bf16 headline mma,torch B24 bf16 headline,"
check "46 rows in all, none twice" test "$(wc -l <"$T/rows") $(sort "$T/rows" | uniq -d | wc -l)" = "46 0"
check "no fp32 or TF32 row among the first 12" test "$(head -12 "$T/rows" | grep -cE ' (fp32|tf32)')" = 0
check "the rows at GPU_CHECK_RUNS steps (5, as the profiles), the headline's at GPU_CHECK_HEADLINE_RUNS (3)" \
    test "$(sort "$CALLS.runs" | uniq -c | sed 's/^ *//' | tr '\n' ,)" = "7 3 headline,36 5,"
check "the profiles: each kind with its switches, at batch 64 in bf16" same <(grep HMT_GPU_PROFILE "$CALLS" |
    grep '^model' | sed -E 's/ HMT_GPU_PROFILE=events//') <(cat <<'EOF'
model B64 bf16 HMT_GPU_ATT16=0 HMT_GPU_ATTENTION=gemm HMT_GPU_FA_DS_MIB=64 HMT_GPU_FA_MMA=0 
model B64 bf16 HMT_GPU_ATT16=1 HMT_GPU_ATTENTION=gemm HMT_GPU_FA_DS_MIB=64 HMT_GPU_FA_MMA=0 
model B64 bf16 HMT_GPU_ATT16=0 HMT_GPU_ATTENTION=fused HMT_GPU_FA_DS_MIB=64 HMT_GPU_FA_MMA=0 
model B64 bf16 HMT_GPU_ATT16=0 HMT_GPU_ATTENTION=fused HMT_GPU_FA_DS_MIB=0 HMT_GPU_FA_MMA=0 
model B64 bf16 HMT_GPU_ATT16=0 HMT_GPU_ATTENTION=fused HMT_GPU_FA_DS_MIB=64 HMT_GPU_FA_MMA=1 
EOF
)
check "each profile's table in its own log" grep -q "profile (events): op by op" "$O/gpu_profile_fusedmma.log"
check "the decoder's rows: one launch a step first" test "$(grep '^decode' "$CALLS" | head -1)" = \
    "decode 3 1 --device cuda HMT_GPU_DECODE_GRAPH=1 HMT_GPU_DECODE_MEGA=1 "
check "the decoder: 9 C runs and PyTorch's" test "$(grep -c '^decode 3 ' "$CALLS") $(n_calls 'torch decode')" = "9 1"
check "memcheck over test_cuda_ops, API errors not reported" \
    grep -q "^sanitizer --tool memcheck --report-api-errors no --error-exitcode 3 .*test_cuda_ops" "$CALLS"
check "the step: launched and as a graph, 3 runs each of 2 configs" \
    test "$(n_calls 'train graph=0 .*--precision') $(n_calls 'train graph=1 .*--precision')" = "6 6"
check "the step's row: the same bytes" grep -q "baseline .*1.00x  same bytes: yes" "$O/gpu_step.log"
check "the scoring: the val split, 3 runs on the GPU and 3 on the host, alternating" test "$(grep '^eval ' "$CALLS" |
    sed -E 's/^eval host=([01]) .*--split val -n 0 .*/\1/' | tr -d '\n')" = 010101
check "the scoring's table: 1.3 s saved a pass, the same loss" \
    grep -qE "saved 1.3 s a scoring pass \(7.50x\), eval [0-9.]+x; the same loss within 1e-9: yes" "$O/gpu_score.log"
# the tables made from the logs
grep '^| baseline, 6 layers | 64 |' "$O/gpu_summary.md" | head -1 >"$T/row"
check "gpu_summary.md: the baseline at batch 64, C bf16 64,300 against PyTorch's 6,430" \
    grep -qF "| 64,300 | 6,430 | 10.00x |" "$T/row"
check "gpu_summary.md: fp32 and TF32 too, from the rest" grep -qF "| 64,100 | 6,410 | 10.00x | 64,200 | 6,420 |" "$T/row"
check "gpu_summary.md: the headline config's row" \
    grep -qF "| the reference's headline config (609M, T 1024) | 24 | 24,100 | 2,410 |" "$O/gpu_summary.md"
check "gpu_summary.md: the mma run's row, its allocations against PyTorch's peak" \
    grep -qF "| 64 | bf16 linear layers, fused attention, mma kernels (HMT_GPU_FA_MMA=1) | bf16 | fused | \
baseline, 6 layers | 64,330 | 10.00x | 1,000 | 400 | 20% |" \
    "$O/gpu_summary.md"
check "gpu_decode_summary.md: a column a run, one launch a step the fastest, against PyTorch" grep -qF \
    "| baseline, 6 layers | 1 | 90,000 | 7,000 | 7,000 | 7,000 | 5,000 | 5,000 | 5,000 | 4,000 | 5,000 | 5,000 | \
200.0 | 35.00x |" \
    "$O/gpu_decode_summary.md"
(cd "$O" && ls) >"$T/files"
cat >"$T/want" <<'EOF'
gpu_check.log
gpu_decode.log
gpu_decode_profile_1.log
gpu_decode_profile_events.log
gpu_decode_summary.md
gpu_model.log
gpu_profile_fused.log
gpu_profile_fused0.log
gpu_profile_fusedmma.log
gpu_profile_gemm.log
gpu_profile_gemm16.log
gpu_score.log
gpu_step.log
gpu_summary.md
sanitizer-memcheck.log
EOF
check "every log in OUT" same "$T/files" "$T/want"

# ---- failures -----------------------------------------------------------------------------------------------------
check_in STUB_FAIL=ops GPU_CHECK_BENCH=0 GPU_CHECK_SAN=0
check "a failing op test: exits 1" test "$rc" = 1
check "a failing op test: the log ends 'FAILED'" test "$(tail -1 "$O/gpu_check.log")" = "== gpu_check: FAILED"
check "a failing op test: run again with a wait after every op" test "$(grep -c '^ops' "$CALLS")" = 2
check "the second run waits (HMT_GPU_SYNC=1)" grep -q '^ops SYNC' "$CALLS"
check "the other tests still run" test "$(n_calls '^model_test') $(n_calls '^tools')" = "1 1"
check "GPU_CHECK_BENCH=0, GPU_CHECK_SAN=0: no benchmark, no sanitizer" \
    test "$(grep -cE '^(model B|decode|sanitizer|train|eval)' "$CALLS")" = 0
check_in STUB_FAIL=model_test GPU_CHECK_BENCH=0 GPU_CHECK_SAN=0
check "a failing model test: exits 1" test "$rc" = 1
check_in STUB_FAIL="model sanitizer" GPU_CHECK_PROFILE=
check "a failing benchmark and memcheck: exits 1 (for memcheck)" test "$rc" = 1
check "a failing benchmark: said, named" grep -q "gpu_check: bench/gpu_model.sh goals stopped (exit 1)" "$T/out"
check "a failing memcheck: said, with its log" \
    grep -q "gpu_check: compute-sanitizer memcheck: exit 3 (see sanitizer-memcheck.log)" "$T/out"
check "its log says why" grep -q "ERROR SUMMARY: 1 error" "$O/sanitizer-memcheck.log"

# ---- the caller's environment: make test's BIN (another tool folder) does not move the step benchmark --------------
check_in BIN=/nonexistent SHARDS=/nonexistent GPU_CHECK_SAN=0
check "BIN and SHARDS in the environment: the step and scoring benchmarks still run bin-cuda's train and eval" \
    test "$(n_calls '^train') $(n_calls '^eval')" = "13 6"

# ---- a deadline close at hand: what does not fit is left out, saying so ---------------------------------------------
check_in GPU_CHECK_DEADLINE=$(($(date +%s) + 32)) GPU_CHECK_PROFILE=all
check "near the deadline: exits 0 (a benchmark left out is no failure)" test "$rc" = 0
check "near the deadline: gpu_model.sh left out (it needs 60 s)" \
    grep -q "gpu_check: bench/gpu_model.sh goals left out: 2[0-9] s to the deadline (GPU_CHECK_DEADLINE), it needs 60" \
    "$T/out"
check "near the deadline: gpu_decode.sh left out (40 s), memcheck (30 s), the step (40 s), the scoring (30 s)" \
    test "$(grep -cE 'gpu_check: (bench/gpu_(decode|step|score).sh|compute-sanitizer memcheck) left out' "$T/out")" = 4
check "near the deadline: the profiles run (20 s, 15 s)" \
    test "$(grep -c HMT_GPU_PROFILE=events "$CALLS") $(grep -c '^decode 1 1 --device cuda HMT_GPU_PROFILE=1' "$CALLS")" = "3 1"
check "near the deadline: no benchmark row" test "$(grep -v HMT_GPU_PROFILE "$CALLS" | grep -cE '^(model|torch|decode) ')" = 0

# ---- a missing build ----------------------------------------------------------------------------------------------
mv "$R/build/cuda/tests/test_cuda_ops" "$T/ops"
check_in
check "no test binaries: exits 1" test "$rc" = 1
check "no test binaries: says what to build and carry" grep -q "run 'make CUDA=1 gpu-libs' on the build machine" "$T/out"
mv "$T/ops" "$R/build/cuda/tests/test_cuda_ops"

# ---- gpu_session.sh with its checks: everything home as one tar ---------------------------------------------------
session() {
    rm -rf "${T:?}/home" "$T/stage" "$CALLS"
    run env "${U[@]}" PATH="$S:$PATH" OUT="$T/home" GPU_SESSION_STAGE="$T/stage" GPU_SESSION_PACK="$T/none" \
        GPU_SESSION_TASK=none \
        GPU_CHECK_SAN_S=30 "$@" bash "$R/bench/gpu_session.sh"
}
session
check "gpu_session with its checks: exits 0" test "$rc" = 0
check "gpu_session: says the runs would train with the step's graph" grep -q "HMT_GPU_STEP_GRAPH=1 (gpu_check passed)" "$T/out"
tar -tzf "$T/home/gpu-session.tar.gz" 2>/dev/null | sed 's|^\./||' | grep . | sort >"$T/files"
check "gpu_session: one tar home with every log" same "$T/files" "$T/want"
session STUB_FAIL=ops
check "gpu_session, a failing test: exits 1" test "$rc" = 1
check "gpu_session, a failing test: no step graph for the runs" lacks "HMT_GPU_STEP_GRAPH=1" "$T/out"

summary
