#!/usr/bin/env bash
# test_bench: the benchmarks' own tools. bench/gpu_summary.py (the tables of bench/gpu_model.sh's log): --help, usage
# and read errors; on the committed H100 log (bench/results/gpu_model_h100.log) its speed table is the README's, row
# for row, so the README's figures are the log's; on a log in today's format (per-run "==" lines for the headline
# config, the "alloc MiB" column) the speed table takes only runs without a switch, and every run is a row of its
# second table, with C's allocations as a share of PyTorch bf16's peak; on the committed decoding log, the generation
# table with the README's figures. Needs python3 (its standard library); without it the checks are counted as skipped.
set -u -o pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "$0")/../.." && pwd) || exit 1
cd "$ROOT" || exit 1
. tests/cli/lib/common.sh

SUM=bench/gpu_summary.py
if ! command -v python3 >/dev/null; then
    skip 24 "python3 is not installed: bench/gpu_summary.py not checked"
    summary
fi

expect "gpu_summary --help: exits 0" 0 python3 "$SUM" --help
check "gpu_summary --help: says what it reads" grep -q "gpu_model.sh's log" "$T/out"
for args in "" "a b c" "a --tables" "--speed"; do
    # shellcheck disable=SC2086
    expect "gpu_summary $args: exits 2" 2 python3 "$SUM" $args
    check "gpu_summary $args: one error line" one_line "$T/err" "^gpu_summary: expected LOG"
done
expect "gpu_summary on a missing log: exits 1" 1 python3 "$SUM" "$T/none.log"
check "gpu_summary on a missing log: one line naming it" one_line "$T/err" "^gpu_summary: cannot read '.*none.log'"
printf 'nothing here\n' >"$T/empty.log"
expect "gpu_summary on a log without runs: exits 1" 1 python3 "$SUM" "$T/empty.log"

# the README's speed table is the one of the committed log
expect "gpu_summary --speed on the H100 log: exits 0" 0 python3 "$SUM" bench/results/gpu_model_h100.log --speed
awk '/^\| config \| batch \| C fp32 \|/ { on = 1 } on && !/^\|/ { exit } on' README.md >"$T/readme"
check "the README's speed table: 9 lines" n_lines "$T/readme" 9
if cmp -s "$T/out" "$T/readme"; then pass; else fail "the README's speed table is the log's" "$(diff "$T/readme" "$T/out" | head -6)"; fi

# today's format: one run of each kind, the headline config with its own "==" lines
cat >"$T/new.log" <<'LOG'
== C, CUDA backend, bf16 linear layers, fused attention, mma kernels (HMT_GPU_FA_MMA=1), batch 64
device: NVIDIA H100 80GB HBM3; batch 64; bf16 linear layers; cuBLAS 8192^3: 672.3 TFLOP/s (bf16: 672.3)
step: forward, cross-entropy, backward, clipping, Adam
config                       step s     tokens/s    GFLOP/s     of sgemm    GPU MiB    of bf16  alloc MiB
attention: fused, on tensor cores
baseline (6 layers)          0.0150      2184533    93936.0          14%       3000       14.0%       2377
== C, CUDA backend, bf16 linear layers by cuBLAS's own down-conversion (HMT_GPU_BF16=fast), batch 64
device: NVIDIA H100 80GB HBM3; batch 64; bf16 linear layers; cuBLAS 8192^3: 422.5 TFLOP/s (bf16: 422.5)
step: forward, cross-entropy, backward, clipping, Adam
config                       step s     tokens/s    GFLOP/s     of sgemm    GPU MiB    of bf16  alloc MiB
attention: gemm (cuBLAS products, probabilities stored)
baseline (6 layers)          0.0290      1128225    48515.8          11%       8109       11.5%       4930
== C, CUDA backend, bf16 linear layers, gemm attention, batch 64
device: NVIDIA H100 80GB HBM3; batch 64; bf16 linear layers; cuBLAS 8192^3: 671.0 TFLOP/s (bf16: 671.0)
step: forward, cross-entropy, backward, clipping, Adam
config                       step s     tokens/s    GFLOP/s     of sgemm    GPU MiB    of bf16  alloc MiB
attention: gemm (cuBLAS products, probabilities stored)
baseline (6 layers)          0.0302      1084934    46654.2           7%       8109        7.0%       4930
== PyTorch eager, bf16, batch 64
PyTorch 2.11.0+cu130, NVIDIA H100 80GB HBM3, batch 64, bf16, full step
config                       step s     tokens/s   peak MiB
baseline (6 layers)          0.0418       783577       6294
== the headline config, batch 24: C bf16 linear layers, gemm attention
device: NVIDIA H100 80GB HBM3; batch 24; bf16 linear layers; cuBLAS 8192^3: 673.7 TFLOP/s (bf16: 673.7)
step: forward, cross-entropy, backward, clipping, Adam
config                       step s     tokens/s    GFLOP/s     of sgemm    GPU MiB    of bf16  alloc MiB
attention: gemm (cuBLAS products, probabilities stored)
seed_default.json            0.1554       158174          -            -      35561           -      27161
== the headline config, batch 24: PyTorch bf16 autocast
PyTorch 2.11.0+cu130, NVIDIA H100 80GB HBM3, batch 24, bf16, full step
config                       step s     tokens/s   peak MiB
seed_default.json            0.5159        47634      33704
LOG
expect "gpu_summary on today's format: exits 0" 0 python3 "$SUM" "$T/new.log"
check "the speed table takes the plain gemm run, not the mma or HMT_GPU_BF16=fast one" \
    grep -qF '| baseline, 6 layers | 64 | | | | | | | 1,084,934 | 783,577 | 1.38x | 1.38x |' "$T/out"
check "the mma run: its ratio and its allocations' share of PyTorch's peak" \
    grep -qF '| 64 | bf16 linear layers, fused attention, mma kernels (HMT_GPU_FA_MMA=1) | bf16 | fused | baseline, 6 layers | 2,184,533 | 2.79x | 3,000 | 2,377 | 38% |' "$T/out"
check "the headline run: labelled by its own line, against PyTorch bf16 at batch 24" \
    grep -qF "| 24 | bf16 linear layers, gemm attention | bf16 | gemm | the reference's headline config (609M, T 1024) | 158,174 | 3.32x | 35,561 | 27,161 | 81% |" "$T/out"
# the decoder's log: the generation table, each run a column
expect "gpu_summary on the H100 decoding log: exits 0" 0 python3 "$SUM" bench/results/gpu_decode_h100.log
check "the decoding table: a column per run, labelled by its switches" \
    grep -qF '| config | batch | C prefill tok/s | eager tok/s | GRAPH tok/s | BF16 GRAPH tok/s | PyTorch recompute tok/s | C best / PyTorch |' "$T/out"
check "the decoding table: the README's figures for the baseline at batch 1" \
    grep -qF '| baseline, 6 layers | 1 | 95,745 | 4,243 | 4,987 | 4,697 | 222.5 | 22.41x |' "$T/out"
check "the decoding table: 6 rows" n_lines "$T/out" 8
summary
