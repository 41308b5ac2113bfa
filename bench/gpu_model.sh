#!/usr/bin/env bash
# The training step on one GPU, C (the CUDA backend) against the same model in PyTorch (tests/ref, eager), in one
# invocation on one GPU: forward, cross-entropy, backward, clipping and Adam (--full), the three d 256 configs at
# batch 8 and 64, C in fp32 (TF32 off), TF32 and bf16 (--precision bf16: the linear layers), each with the
# unfused attention (cuBLAS, probs stored) and the fused one (HMT_GPU_ATTENTION=fused: tiles, online softmax, no
# T x T tensor; under TF32 and bf16 on tensor cores, gpu_attn_tc.cu), bf16 also with HMT_GPU_BF16=fast (no
# conversion pass: cuBLAS converts), with float32 activations (HMT_GPU_ACT16=0, gemm attention), with the linear
# layers' bias written before the product instead of in cuBLASLt's epilogue (HMT_GPU_LT=0), with the backward's
# gradients zeroed before the ops that write them instead of written as they are (HMT_GPU_FRESH=0), with the gemm
# attention's products in bf16 too (HMT_GPU_ATT16=1), with the fused attention's dS not stored
# (HMT_GPU_FA_DS_MIB=0), on fragments in registers (HMT_GPU_FA_MMA=1, also for the headline
# config in bf16), and with --recompute-ffn (both attentions), PyTorch in fp32, TF32 and bf16 autocast;
# then the reference's headline config (configs/seed_default.json, 609M parameters, T 1024) at batch 24: C fp32 with
# both attentions and PyTorch fp32, then (GPU_MODEL_HEADLINE_ALL=0 leaves them out) C TF32 and bf16, each with both
# attentions, against PyTorch bf16 autocast. Medians of RUNS steps
# after a warm-up; tokens/s = B x T / step time. "GPU MiB" is what the C process holds on the GPU (its CUDA
# context and cuBLAS included), "alloc MiB" the most it held through its own allocations (its peer: "peak MiB",
# PyTorch's max_memory_allocated, its context not included).
# The rows run batch 64 first, issue 15's first (see below). bench/gpu_summary.py LOG prints the tables as the README
# gives them.
# Usage: bench/gpu_model.sh [RUNS (20)] [HEADLINE_RUNS (5)]. Needs build/cuda/bench/model (make CUDA=1
# build/cuda/bench/model) and a python3 with CUDA PyTorch; run by bench/gpu_check.sh.
set -uo pipefail
runs=${1:-20}
hruns=${2:-5}
# c LABEL ENV... -- ARGS...: one C run at batch $B, its "==" line first (bench/gpu_summary.py labels runs by it)
c() {
    local label=$1 env=()
    shift
    while [ "$1" != -- ]; do env+=("$1"); shift; done
    shift
    echo "== C, CUDA backend, $label, batch $B"
    env "${env[@]}" build/cuda/bench/model "$runs" --device cuda --batch "$B" --full "$@"
}
# Batch 64 first, and in each batch issue 15's rows first (bf16: gemm, fused, mma, PyTorch bf16), then the switches,
# then fp32 and TF32 (issue 14's), so a run cut off at its time limit has brought the most wanted rows.
for B in 64 8; do
    c "bf16 linear layers, gemm attention" HMT_GPU_ATTENTION=gemm -- --precision bf16
    c "bf16 linear layers, fused attention" HMT_GPU_ATTENTION=fused -- --precision bf16
    # the fused attention on fragments in registers, forward and backward (mma.sync; off by default until timed here)
    c "bf16 linear layers, fused attention, mma kernels (HMT_GPU_FA_MMA=1)" HMT_GPU_FA_MMA=1 HMT_GPU_ATTENTION=fused \
        -- --precision bf16
    echo "== PyTorch eager, bf16, batch $B"
    python3 bench/model_torch.py "$runs" --device cuda --batch "$B" --full --precision bf16
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
        c "bf16 linear layers, fused attention, HMT_GPU_FA_DS_MIB=128" HMT_GPU_FA_DS_MIB=128 HMT_GPU_ATTENTION=fused \
            -- --precision bf16
    fi
    c "bf16 linear layers by cuBLAS's own down-conversion (HMT_GPU_BF16=fast)" HMT_GPU_BF16=fast -- --precision bf16
    for att in gemm fused; do
        c "fp32, $att attention" HMT_GPU_ATTENTION=$att --
        c "TF32, $att attention" HMT_GPU_ATTENTION=$att -- --tf32
    done
    for p in fp32 tf32; do
        echo "== PyTorch eager, $p, batch $B"
        python3 bench/model_torch.py "$runs" --device cuda --batch "$B" --full --precision "$p"
    done
done
H=(--device cuda --batch 24 --full --config configs/seed_default.json)
hl() { echo "== the headline config, batch 24: $1"; } # a "==" line per run (bench/gpu_summary.py labels runs by it)
hl "C fp32, gemm attention"
build/cuda/bench/model "$hruns" "${H[@]}"
hl "C fp32, fused attention"
HMT_GPU_ATTENTION=fused build/cuda/bench/model "$hruns" "${H[@]}"
hl "PyTorch fp32"
python3 bench/model_torch.py "$hruns" "${H[@]}"
[ "${GPU_MODEL_HEADLINE_ALL:-1}" = 0 ] && exit 0
# C TF32 and bf16 with both attentions, and bf16 on the mma kernels, against PyTorch bf16 autocast (issue 15's peer)
for att in gemm fused; do
    hl "C TF32, $att attention"
    HMT_GPU_ATTENTION=$att build/cuda/bench/model "$hruns" "${H[@]}" --tf32
    hl "C bf16 linear layers, $att attention"
    HMT_GPU_ATTENTION=$att build/cuda/bench/model "$hruns" "${H[@]}" --precision bf16
done
hl "C bf16 linear layers, fused attention, mma kernels (HMT_GPU_FA_MMA=1)"
HMT_GPU_FA_MMA=1 HMT_GPU_ATTENTION=fused build/cuda/bench/model "$hruns" "${H[@]}" --precision bf16
hl "PyTorch bf16 autocast"
python3 bench/model_torch.py "$hruns" "${H[@]}" --precision bf16
