#!/usr/bin/env bash
# test_tools_cuda: train, sample and eval --device cuda (issue "GPU I"), with a `make CUDA=1` build (BIN=bin-cuda): the
# registry records the device and the GPU's name; the same run twice gives the same bytes (also with the step as a CUDA
# graph, HMT_GPU_STEP_GRAPH=1, with the GPU memory block by block, HMT_GPU_RESERVE=0, with --recompute-ffn, and in
# bf16 with float32 activations, HMT_GPU_ACT16=0); N steps
# straight equal k steps, SIGKILL, --resume, N - k steps, bitwise, also when the SIGKILL lands inside a checkpoint
# write; a GPU checkpoint resumes on the CPU and a CPU checkpoint on the GPU, and a GPU run's val losses follow the CPU
# run's; a plan larger than the GPU's memory is refused in one line with nothing left behind. sample on the GPU writes
# the CPU's documents when greedy (past the window too) and the same bytes twice when sampling; eval on the GPU gives
# the CPU's test loss within 1e-4, and with its rows scored on the GPU the loss of the host's scoring within 1e-9. Without a GPU every check counts as skipped (HMT_REQUIRE_GPU=1 makes that a failure).
# Env: BIN (default bin-cuda), SHARED as in test_tools.sh, or SHARDS (a shard folder, for a GPU machine without POP909);
# HMT_GPU_NAME: what the GPU's recorded name holds (default NVIDIA; `make test-tools-emu`: cuda_emu, the emulator).
# Ends with "N passed, N failed, N skipped".
set -u -o pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "$0")/../.." && pwd) || exit 1
cd "$ROOT" || exit 1
BIN=${BIN:-bin-cuda}
. tests/cli/lib/common.sh

TRAIN=$B/train
N_CHECKS=63
check "train is built" test -x "$TRAIN"
CFG=tests/data/configs
REG=$T/registry.db
# one value from the registry: the sqlite3 CLI, or Python's sqlite3 on a GPU machine without it
if command -v sqlite3 >/dev/null; then q() { sqlite3 "$REG" "$1"; }
else q() { python3 -c 'import sqlite3, sys
for r in sqlite3.connect(sys.argv[1]).execute(sys.argv[2]): print("|".join(map(str, r)))' "$REG" "$1"; }; fi

# ---- is there a GPU? ---------------------------------------------------------------------------------------
"$TRAIN" -q --device cuda -c $CFG/tiny.json -d "$T/none" -o "$T/probe" --registry "$REG" >/dev/null 2>"$T/err"
if grep -Eq "cannot use device 'cuda'" "$T/err"; then
    if [ "${HMT_REQUIRE_GPU:-0}" = 1 ]; then fail "a GPU is usable (HMT_REQUIRE_GPU=1)" "$(cat "$T/err")"
    else skip $N_CHECKS "no usable GPU: $(cat "$T/err")"; fi
    summary
fi

# ---- data: the shards given, or a few POP909 songs -------------------------------------------------------------
if [ -n "${SHARDS:-}" ]; then
    cp -r "$SHARDS" "$T/shards"
else
    need_pop909
    ls "$POP"/*.mid | head -40 | "$B/midi2remi" -q | "$B/shard" -q -o "$T/shards" --val 0.2 --test 0.1
fi
check "shards there" test -s "$T/shards/train.bin"

tr_gpu() { "$TRAIN" -q --device cuda -d "$T/shards" --registry "$REG" "$@"; }

# ---- a run on the GPU: the registry names it; twice gives the same bytes ------------------------------------
expect "train --device cuda exits 0" 0 tr_gpu -c $CFG/tiny.json -o "$T/g1"
check "registry: device cuda" test "$(q "select device from runs where out_dir like '%/g1'")" = cuda
check "registry: the GPU's name" grep -qF "${HMT_GPU_NAME:-NVIDIA}" \
    <<<"$(q "select device_name from runs where out_dir like '%/g1'")"
expect "the same run again exits 0" 0 tr_gpu -c $CFG/tiny.json -o "$T/g2"
check "the same run twice on one GPU: the same bytes" same_run "$T/g1" "$T/g2"
# the training step captured in a CUDA graph once and replayed (HMT_GPU_STEP_GRAPH=1): the same bytes
export HMT_GPU_STEP_GRAPH=1
expect "train --device cuda with HMT_GPU_STEP_GRAPH=1 exits 0" 0 tr_gpu -c $CFG/tiny.json -o "$T/gg"
unset HMT_GPU_STEP_GRAPH
check "the step as a CUDA graph: the run's bytes without it" same_run "$T/g1" "$T/gg"
# one allocation per run: train says the block its dry run sized; block by block (HMT_GPU_RESERVE=0), the same bytes
expect "train --device cuda without -q exits 0" 0 "$TRAIN" --device cuda -d "$T/shards" --registry "$REG" \
    -c $CFG/tiny.json -o "$T/gr"
check "it says its GPU memory is one block" grep -q "^train: device memory: .* in one block" "$T/err"
export HMT_GPU_RESERVE=0
expect "train --device cuda with HMT_GPU_RESERVE=0 exits 0" 0 tr_gpu -c $CFG/tiny.json -o "$T/gb"
unset HMT_GPU_RESERVE
check "block by block: the bytes of the run in one block" same_run "$T/g1" "$T/gb"
expect "train --device cuda --recompute-ffn exits 0" 0 tr_gpu --recompute-ffn -c $CFG/tiny.json -o "$T/gf"
check "--recompute-ffn: the bytes of the run that keeps linear1's output" same_run "$T/g1" "$T/gf"

# ---- SIGKILL and --resume on the GPU: bitwise --------------------------------------------------------------------
(HMT_TEST_KILL_AFTER_CHECKPOINT=20 tr_gpu -c $CFG/tiny.json -o "$T/gk"; exit $?) 2>/dev/null
check "SIGKILL after the checkpoint at step 20 (status $?)" test $? = 137
expect "--resume on the GPU after SIGKILL exits 0" 0 tr_gpu --resume -o "$T/gk"
check "k steps + SIGKILL + resume = N steps on the GPU, bitwise" same_run "$T/g1" "$T/gk"
(HMT_TEST_KILL_IN_CHECKPOINT=30 tr_gpu -c $CFG/tiny.json -o "$T/gt"; exit $?) 2>/dev/null
check "SIGKILL inside the checkpoint write at step 30 (status $?)" test $? = 137
expect "--resume after a torn checkpoint exits 0" 0 tr_gpu --resume -o "$T/gt"
check "torn checkpoint: resumed from step 20, bitwise equal" same_run "$T/g1" "$T/gt"

# ---- across devices: the CPU run, a GPU checkpoint resumed on the CPU, a CPU checkpoint resumed on the GPU ----
"$TRAIN" -q -j 2 -c $CFG/tiny.json -d "$T/shards" -o "$T/c1" --registry "$REG" 2>"$T/err"
check "the same run on the CPU exits 0" test $? = 0
val() { q "select printf('%.6f', value) from metrics m join runs r using (run_id) where r.out_dir like '%/$1'
           and m.split = 'val' and m.name = 'loss' order by step desc limit 1"; }
close4() { awk -v a="$1" -v b="$2" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a != "" && d <= 1e-4 * (a < 0 ? -a : a)) }'; }
close() { awk -v a="$1" -v b="$2" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a != "" && d <= 1e-3 * (a < 0 ? -a : a)) }'; }
check "the GPU run's last val loss is the CPU's within 1e-3 ($(val g1) vs $(val c1))" close "$(val g1)" "$(val c1)"
(HMT_TEST_KILL_AFTER_CHECKPOINT=20 tr_gpu -c $CFG/tiny.json -o "$T/gc"; exit $?) 2>/dev/null
expect "a GPU checkpoint resumes on the CPU" 0 "$TRAIN" -q -j 2 --resume -d "$T/shards" -o "$T/gc" --registry "$REG"
check "GPU then CPU: the val loss is the CPU run's within 1e-3 ($(val gc))" close "$(val gc)" "$(val c1)"
(HMT_TEST_KILL_AFTER_CHECKPOINT=20 "$TRAIN" -q -j 2 -c $CFG/tiny.json -d "$T/shards" -o "$T/cg" --registry "$REG"; exit $?) 2>/dev/null
expect "a CPU checkpoint resumes on the GPU" 0 tr_gpu --resume -o "$T/cg"
check "CPU then GPU: the val loss is the CPU run's within 1e-3 ($(val cg))" close "$(val cg)" "$(val c1)"

# ---- --tf32: an option, recorded, kept across a resume; learns as the float32 run does (within 1e-2)
expect "train --device cuda --tf32 exits 0" 0 tr_gpu --tf32 -c $CFG/tiny.json -o "$T/tf"
check "registry: the GPU's name says TF32" grep -q '(TF32)' <<<"$(q "select device_name from runs where out_dir like '%/tf'")"
close2() { awk -v a="$1" -v b="$2" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a != "" && d <= 1e-2 * (a < 0 ? -a : a)) }'; }
check "TF32: the val loss is the float32 run's within 1e-2 ($(val tf) vs $(val g1))" close2 "$(val tf)" "$(val g1)"
(HMT_TEST_KILL_AFTER_CHECKPOINT=20 tr_gpu --tf32 -c $CFG/tiny.json -o "$T/tfk"; exit $?) 2>/dev/null
check "TF32: SIGKILL after the checkpoint at step 20 (status $?)" test $? = 137
expect "resuming a TF32 run without --tf32 exits 1" 1 tr_gpu --resume -o "$T/tfk"
check "it says to resume with --precision tf32" one_line "$T/err" "trained in tf32: resume it with --precision tf32"
expect "with --tf32 it resumes" 0 tr_gpu --resume --tf32 -o "$T/tfk"
check "TF32: k steps + SIGKILL + resume = N steps, bitwise" same_run "$T/tf" "$T/tfk"

# ---- --precision bf16: the linear layers' matmuls on bfloat16 inputs; recorded, kept across a resume, and it
# learns: the val loss within 5% of the float32 run's
expect "train --device cuda --precision bf16 exits 0" 0 tr_gpu --precision bf16 -c $CFG/tiny.json -o "$T/bf"
check "registry: the GPU's name says bf16" grep -q '(bf16)' <<<"$(q "select device_name from runs where out_dir like '%/bf'")"
close5() { awk -v a="$1" -v b="$2" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a != "" && d <= 5e-2 * (b < 0 ? -b : b)) }'; }
check "bf16: the val loss is the float32 run's within 5% ($(val bf) vs $(val g1))" close5 "$(val bf)" "$(val g1)"
(HMT_TEST_KILL_AFTER_CHECKPOINT=20 tr_gpu --precision bf16 -c $CFG/tiny.json -o "$T/bfk"; exit $?) 2>/dev/null
check "bf16: SIGKILL after the checkpoint at step 20 (status $?)" test $? = 137
expect "resuming a bf16 run in float32 exits 1" 1 tr_gpu --resume -o "$T/bfk"
check "it says to resume with --precision bf16" one_line "$T/err" "trained in bf16: resume it with --precision bf16"
expect "with --precision bf16 it resumes" 0 tr_gpu --resume --precision bf16 -o "$T/bfk"
check "bf16: k steps + SIGKILL + resume = N steps, bitwise" same_run "$T/bf" "$T/bfk"
# bf16 keeps the feed-forward's hidden activation as bfloat16; HMT_GPU_ACT16=0 keeps it float32: the same bytes
(export HMT_GPU_ACT16=0; tr_gpu --precision bf16 -c $CFG/tiny.json -o "$T/bf32")
check "bf16: float32 activations (HMT_GPU_ACT16=0) exit 0 with the bytes of bf16 ones (status $?)" same_run "$T/bf" \
    "$T/bf32"
# the unfused attention's products on bf16 operands too: the registry says so; it learns as bf16 does
(export HMT_GPU_ATT16=1; tr_gpu --precision bf16 -c $CFG/tiny.json -o "$T/ba16")
check "bf16 with HMT_GPU_ATT16=1 exits 0 (status $?), the registry's device name says so" \
    grep -q '(bf16, HMT_GPU_ATT16=1)' <<<"$(q "select device_name from runs where out_dir like '%/ba16'")"
check "HMT_GPU_ATT16=1: the val loss is the bf16 run's within 5% ($(val ba16) vs $(val bf))" close5 "$(val ba16)" \
    "$(val bf)"
expect "--precision bf16 on the CPU is a usage error (exit 2)" 2 "$TRAIN" -q --precision bf16 -c $CFG/tiny.json \
    -d "$T/shards" -o "$T/bfc" --registry "$REG"
expect "--precision fp16 is a usage error (exit 2)" 2 tr_gpu --precision fp16 -c $CFG/tiny.json -o "$T/bfx"

# ---- sample and eval on the GPU ----------------------------------------------------------------------------------
SAMPLE=$B/sample EVAL=$B/eval
expect "sample --device cuda, greedy, 200 tokens on a window of 64" 0 "$SAMPLE" -q -m "$T/g1" --device cuda -n 200 \
    --num-samples 3 --temperature 0
cp "$T/out" "$T/greedy_gpu"
expect "the same on the CPU" 0 "$SAMPLE" -q -m "$T/g1" -n 200 --num-samples 3 --temperature 0
check "greedy: the GPU writes the CPU's documents" same "$T/out" "$T/greedy_gpu"
check "3 documents" n_lines "$T/out" 3
expect "sample --device cuda, seeded" 0 "$SAMPLE" -q -m "$T/g1" --device cuda -n 150 --num-samples 4 --seed 7
cp "$T/out" "$T/seeded_gpu"
expect "again" 0 "$SAMPLE" -q -m "$T/g1" --device cuda -n 150 --num-samples 4 --seed 7
check "sampling on the GPU twice: the same bytes" same "$T/out" "$T/seeded_gpu"
ev() { "$EVAL" -q -m "$T/g1" -d "$T/shards" -n 4 --prompt-tokens 20 --gen-tokens 20 --no-registry --json "$@"; }
num() { grep -o "\"$1\": *[-0-9.eE+]*" "$2" | sed 's/.*: *//'; }
expect "eval --device cuda exits 0" 0 ev --device cuda
cp "$T/out" "$T/eval_gpu"
expect "eval on the CPU" 0 ev
check "eval: the GPU's test loss is the CPU's within 1e-4 ($(num test_loss "$T/eval_gpu") vs $(num test_loss "$T/out"))" \
    close4 "$(num test_loss "$T/eval_gpu")" "$(num test_loss "$T/out")"
# the rows scored on the GPU (hg_score) against the host's copy of the logits (HMT_EVAL_HOST_SCORE=1, as before)
ev0() { env HMT_EVAL_HOST_SCORE="$1" "$EVAL" -q -m "$T/g1" -d "$T/shards" -n 0 --no-registry --json --device cuda; }
expect "eval --device cuda -n 0, the rows scored on the host (HMT_EVAL_HOST_SCORE=1)" 0 ev0 1
cp "$T/out" "$T/eval_host"
expect "the same, scored on the GPU" 0 ev0 0
check "scored on the GPU: the host's loss within 1e-9 and its accuracy ($(num test_loss "$T/out") vs \
$(num test_loss "$T/eval_host"))" awk -v a="$(num test_loss "$T/out")" -v b="$(num test_loss "$T/eval_host")" \
    -v c="$(num test_accuracy "$T/out")" -v d="$(num test_accuracy "$T/eval_host")" \
    'BEGIN { e = a - b; exit !(a != "" && c != "" && (e < 0 ? -e : e) <= 1e-9 * (a < 0 ? -a : a) && c == d) }'

# ---- a plan larger than the GPU: one line, exit 1, nothing behind ---------------------------------------------
printf '{"extends": "%s/configs/seed_default.json", "train": {"batch_size": 4096}}\n' "$ROOT" >"$T/huge.json"
expect "a plan larger than the GPU exits 1" 1 tr_gpu -c "$T/huge.json" -o "$T/huge"
check "it says so in one line" one_line "$T/err" "does not fit in GPU memory"
check "no run folder left behind" test ! -e "$T/huge"
summary
