#!/usr/bin/env bash
# The training step on one GPU, C (the CUDA backend) against the same model in PyTorch (tests/ref, eager), in one
# invocation on one GPU: forward, cross-entropy, backward, clipping and Adam (--full), the three d 256 configs at
# batch 64 and 8, and the reference's headline config (configs/seed_default.json, 609M parameters, T 1024) at batch
# 24. Medians of RUNS steps (HEADLINE_RUNS for the headline config) after a warm-up; tokens/s = B x T / step time.
# "GPU MiB" is what the C process holds on the GPU (its CUDA context and cuBLAS included), "alloc MiB" the most it
# held through its own allocations (its peer: "peak MiB", PyTorch's max_memory_allocated, its context not included).
# PART (default all) says which rows, so that a window cut off at its limit has brought the most wanted ones:
#   goals  issue 15's: C bf16 (--precision bf16: the linear layers) with the unfused attention (gemm: cuBLAS,
#          probabilities stored), the fused one (HMT_GPU_ATTENTION=fused: tiles, online softmax, no T x T tensor, on
#          tensor cores, gpu_attn_tc.cu) and the fused one on fragments in registers (HMT_GPU_FA_MMA=1), against
#          PyTorch bf16 autocast: batch 64, batch 8, then the headline config;
#   rest   the switches in bf16, each a row to set against the goals' rows: --recompute-ffn (both attentions),
#          HMT_GPU_ATT16=1 (the gemm attention's products in bf16 too), HMT_GPU_ACT16=0 (float32 activations),
#          HMT_GPU_LT=0 (the bias written before the product, not in cuBLASLt's epilogue), HMT_GPU_FRESH=0 (the
#          backward's gradients zeroed, then added to), HMT_GPU_FA_DS_MIB=0 and 128 (the fused backward's stored dS),
#          HMT_GPU_BF16=fast (cuBLAS converting by itself); then fp32 (TF32 off) and TF32 with both attentions
#          against PyTorch fp32 and TF32 (issue 14's rows); then the headline config in fp32 and TF32;
#   all    goals, then rest.
# bench/gpu_summary.py LOG prints the tables as the README gives them (whatever the rows' order).
# Usage: bench/gpu_model.sh [RUNS (20)] [HEADLINE_RUNS (5)] [PART (all)]. Needs build/cuda/bench/model (make CUDA=1
# build/cuda/bench/model) and a python3 with CUDA PyTorch; run by bench/gpu_check.sh (goals, then later rest).
set -uo pipefail
runs=${1:-20}
hruns=${2:-5}
part=${3:-all}
case $part in goals | rest | all) ;; *) echo "gpu_model.sh: PART is goals, rest or all, not '$part'" >&2; exit 2 ;; esac
H=(--device cuda --batch 24 --full --config configs/seed_default.json)
failed=0
# row CMD...: one run; a failing one is said in the log (and the script exits 1 at its end), the rest still run
row() {
    "$@"
    local s=$?
    [ "$s" = 0 ] || { echo "gpu_model.sh: the run above failed (exit $s)"; failed=1; }
}
# crun HEADER RUNS ENV... -- ARGS...: one C run of bench/model, its "==" line first (bench/gpu_summary.py labels runs
# by it); c LABEL ENV... -- ARGS...: at batch $B; h LABEL ENV... -- ARGS...: the headline config; pt PREC, pth PREC
# LABEL: PyTorch's at batch $B, the headline config's
crun() {
    local header=$1 n=$2 env=()
    shift 2
    while [ "$1" != -- ]; do env+=("$1"); shift; done
    shift
    echo "== $header"
    row env "${env[@]}" build/cuda/bench/model "$n" "$@"
}
c() { crun "C, CUDA backend, $1, batch $B" "$runs" "${@:2}" --device cuda --batch "$B" --full; }
h() { crun "the headline config, batch 24: C $1" "$hruns" "${@:2}" "${H[@]}"; }
pt() {
    echo "== PyTorch eager, $1, batch $B"
    row python3 bench/model_torch.py "$runs" --device cuda --batch "$B" --full --precision "$1"
}
pth() {
    echo "== the headline config, batch 24: PyTorch $2"
    row python3 bench/model_torch.py "$hruns" "${H[@]}" --precision "$1"
}
# PART goals: issue 15's rows, the ones its goals are judged by: per batch (64, then 8) C bf16 with the gemm, the
# fused and the mma attention, then PyTorch bf16; then the headline config the same way
goals() {
    for B in 64 8; do
        c "bf16 linear layers, gemm attention" HMT_GPU_ATTENTION=gemm -- --precision bf16
        c "bf16 linear layers, fused attention" HMT_GPU_ATTENTION=fused -- --precision bf16
        # the fused attention on fragments in registers, forward and backward (mma.sync; off by default until timed)
        c "bf16 linear layers, fused attention, mma kernels (HMT_GPU_FA_MMA=1)" HMT_GPU_FA_MMA=1 \
            HMT_GPU_ATTENTION=fused -- --precision bf16
        pt bf16
    done
    for att in gemm fused; do
        h "bf16 linear layers, $att attention" HMT_GPU_ATTENTION=$att -- --precision bf16
    done
    h "bf16 linear layers, fused attention, mma kernels (HMT_GPU_FA_MMA=1)" HMT_GPU_FA_MMA=1 HMT_GPU_ATTENTION=fused \
        -- --precision bf16
    pth bf16 "bf16 autocast"
}
# PART rest: per batch the switches in bf16 (each against the goals' rows), then fp32 and TF32 (issue 14's rows,
# timed before), then the headline config in fp32 and TF32
rest() {
    for B in 64 8; do
        # issue 15's memory goal: the least C holds (fused attention, linear1 recomputed) against PyTorch bf16's peak
        for att in gemm fused; do
            c "bf16 linear layers, $att attention, --recompute-ffn" HMT_GPU_ATTENTION=$att -- --precision bf16 \
                --recompute-ffn
        done
        # the unfused attention's products on bf16 operands too (off by default until timed here)
        c "bf16 linear layers and attention products (HMT_GPU_ATT16=1), gemm attention" HMT_GPU_ATT16=1 \
            HMT_GPU_ATTENTION=gemm -- --precision bf16
        # bf16 keeps the feed-forward's hidden activation as bfloat16 (gpu.h gpu_act16); the same run with it float32
        c "bf16 linear layers, float32 activations (HMT_GPU_ACT16=0), gemm attention" HMT_GPU_ACT16=0 \
            HMT_GPU_ATTENTION=gemm -- --precision bf16
        # the linear layers' bias as rows written before the product, not in cuBLASLt's epilogue (the way before)
        c "bf16 linear layers, bias rows before the product (HMT_GPU_LT=0), gemm attention" HMT_GPU_LT=0 \
            HMT_GPU_ATTENTION=gemm -- --precision bf16
        # the backward's gradients zeroed, then added to, not written by the op that makes them (gpu.h gpu_fresh)
        c "bf16 linear layers, gradients zeroed first (HMT_GPU_FRESH=0), gemm attention" HMT_GPU_FRESH=0 \
            HMT_GPU_ATTENTION=gemm -- --precision bf16
        # the fused attention's backward with each kernel computing dS again, none stored (the schedule before)
        c "bf16 linear layers, fused attention, dS not stored (HMT_GPU_FA_DS_MIB=0)" HMT_GPU_FA_DS_MIB=0 \
            HMT_GPU_ATTENTION=fused -- --precision bf16
        if [ "$B" = 64 ]; then # twice the default room: the d 256 configs' heads (72 MiB) in one chunk, not two
            c "bf16 linear layers, fused attention, HMT_GPU_FA_DS_MIB=128" HMT_GPU_FA_DS_MIB=128 \
                HMT_GPU_ATTENTION=fused -- --precision bf16
        fi
        c "bf16 linear layers by cuBLAS's own down-conversion (HMT_GPU_BF16=fast)" HMT_GPU_BF16=fast -- --precision bf16
        for att in gemm fused; do
            c "fp32, $att attention" HMT_GPU_ATTENTION=$att --
            c "TF32, $att attention" HMT_GPU_ATTENTION=$att -- --tf32
        done
        pt fp32
        pt tf32
    done
    for att in gemm fused; do
        h "fp32, $att attention" HMT_GPU_ATTENTION=$att --
    done
    pth fp32 fp32
    for att in gemm fused; do
        h "TF32, $att attention" HMT_GPU_ATTENTION=$att -- --tf32
    done
}
case $part in
    goals) goals ;;
    rest) rest ;;
    all) goals; rest ;;
esac
exit $failed
