#!/usr/bin/env bash
# Generation on one GPU: the C decoder (decode.c, its KV caches on the GPU) against what sampling without a cache
# costs in PyTorch (tests/ref, a full-window forward per token), in one invocation on one GPU, for the d 256 configs
# at batch 1 and 8 (bench/decode.c: a 512-token prefill, then 512 steps that slide the window twice), without and
# with the steps as CUDA graphs (HMT_GPU_DECODE_GRAPH=1), those with the sampler's draw on the host
# (HMT_GPU_DECODE_DRAW=0; bench/decode's "sample tok/s" column), with bfloat16 weights (HMT_GPU_DECODE_BF16=1),
# the graphs with the step's kernels as programmatic dependent launches (HMT_GPU_DECODE_PDL=1), and the graphs of
# one launch per step (HMT_GPU_DECODE_MEGA=1: the step's kernels as one persistent kernel with grid barriers; with
# bf16 weights also at 2 blocks per multiprocessor, HMT_GPU_DECODE_MEGA_BLOCKS=2).
# Usage: bench/gpu_decode.sh [RUNS (3)]. Needs build/cuda/bench/decode (make CUDA=1 build/cuda/bench/decode) and a
# python3 with CUDA PyTorch; run by bench/gpu_check.sh. The rows issue 15's batch-1 goal waits on (one launch per
# step) come first, then dependent launches, PyTorch, and the rows timed before. bench/gpu_summary.py LOG: its table.
set -uo pipefail
runs=${1:-3}
# every step one launch: the ops of a step run by one persistent kernel, a grid barrier between each and the next
echo "== C decoder, CUDA backend, fp32, steps as CUDA graphs of one launch (HMT_GPU_DECODE_MEGA=1 HMT_GPU_DECODE_GRAPH=1)"
HMT_GPU_DECODE_MEGA=1 HMT_GPU_DECODE_GRAPH=1 build/cuda/bench/decode "$runs" 1 --device cuda
echo "== C decoder, CUDA backend, bf16 weights, graphs of one launch (HMT_GPU_DECODE_MEGA=1 HMT_GPU_DECODE_BF16=1 HMT_GPU_DECODE_GRAPH=1)"
HMT_GPU_DECODE_MEGA=1 HMT_GPU_DECODE_BF16=1 HMT_GPU_DECODE_GRAPH=1 build/cuda/bench/decode "$runs" 1 --device cuda
echo "== the same with 2 blocks per multiprocessor (HMT_GPU_DECODE_MEGA_BLOCKS=2 HMT_GPU_DECODE_MEGA=1 HMT_GPU_DECODE_BF16=1 HMT_GPU_DECODE_GRAPH=1)"
HMT_GPU_DECODE_MEGA_BLOCKS=2 HMT_GPU_DECODE_MEGA=1 HMT_GPU_DECODE_BF16=1 HMT_GPU_DECODE_GRAPH=1 build/cuda/bench/decode "$runs" 1 --device cuda
# the graphs with every step kernel a programmatic dependent launch (each starts while the one before ends)
echo "== C decoder, CUDA backend, fp32, steps as CUDA graphs of dependent launches (HMT_GPU_DECODE_PDL=1 HMT_GPU_DECODE_GRAPH=1)"
HMT_GPU_DECODE_PDL=1 HMT_GPU_DECODE_GRAPH=1 build/cuda/bench/decode "$runs" 1 --device cuda
echo "== C decoder, CUDA backend, bf16 weights, graphs of dependent launches (HMT_GPU_DECODE_PDL=1 HMT_GPU_DECODE_BF16=1 HMT_GPU_DECODE_GRAPH=1)"
HMT_GPU_DECODE_PDL=1 HMT_GPU_DECODE_BF16=1 HMT_GPU_DECODE_GRAPH=1 build/cuda/bench/decode "$runs" 1 --device cuda
echo "== PyTorch eager, fp32, a full forward per token (tests/ref, eval, no_grad)"
python3 bench/decode_torch.py "$runs" --cuda
# every single step a replayed CUDA graph (captured in the warm-up run; batch 8 of the hourglass needs 16-row
# products, past the graphs' matrix-vector kernel: it runs without graphs)
echo "== C decoder, CUDA backend, fp32, steps as CUDA graphs (HMT_GPU_DECODE_GRAPH=1)"
HMT_GPU_DECODE_GRAPH=1 build/cuda/bench/decode "$runs" 1 --device cuda
# and launched one by one, no graphs (the first rows timed)
echo "== C decoder, CUDA backend, fp32"
build/cuda/bench/decode "$runs" 1 --device cuda
# sample tok/s with the draw on the host instead of the GPU (the logits copied back and drawn there, as before)
echo "== C decoder, CUDA backend, fp32, steps as CUDA graphs, sampling drawn on the host (HMT_GPU_DECODE_DRAW=0)"
HMT_GPU_DECODE_DRAW=0 HMT_GPU_DECODE_GRAPH=1 build/cuda/bench/decode "$runs" 1 --device cuda
# and with the linear layers' weights read as bfloat16 (every product in the kernel: batch 8 in graphs too)
echo "== C decoder, CUDA backend, bf16 weights, steps as CUDA graphs (HMT_GPU_DECODE_BF16=1 HMT_GPU_DECODE_GRAPH=1)"
HMT_GPU_DECODE_BF16=1 HMT_GPU_DECODE_GRAPH=1 build/cuda/bench/decode "$runs" 1 --device cuda
