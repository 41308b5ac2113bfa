#!/usr/bin/env bash
# The training step on one GPU, C (the CUDA backend, fp32, TF32 off) against the same model in PyTorch (tests/ref,
# eager, fp32 with TF32 off, then bf16 autocast), in one invocation on one GPU: forward, cross-entropy, backward,
# clipping and Adam (--full), the three default configs, at batch 8 and 64. Medians of RUNS steps after a warm-up;
# tokens/s = B x T / step time; "alloc MiB" is what C allocates up front, "peak MiB" PyTorch's max_memory_allocated.
# Usage: bench/gpu_model.sh [RUNS (20)]. Needs build/cuda/bench/model (make CUDA=1 build/cuda/bench/model) and a
# python3 with CUDA PyTorch; run by bench/gpu_check.sh.
set -uo pipefail
runs=${1:-20}
for B in 8 64; do
    echo "== C, CUDA backend, fp32, batch $B"
    build/cuda/bench/model "$runs" --device cuda --batch "$B" --full
    echo "== C, CUDA backend, TF32, batch $B"
    build/cuda/bench/model "$runs" --device cuda --batch "$B" --full --tf32
    for p in fp32 tf32 bf16; do
        echo "== PyTorch eager, $p, batch $B"
        python3 bench/model_torch.py "$runs" --device cuda --batch "$B" --full --precision "$p"
    done
done
