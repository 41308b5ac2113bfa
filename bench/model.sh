#!/usr/bin/env bash
# The C model's training step and the same step in PyTorch (tests/ref), side by side in one invocation, 2 threads
# each, at the default CPU configs. Usage: bench/model.sh [RUNS]. Needs `make bench-model` and python3-torch.
set -euo pipefail
runs=${1:-5}
make -s build/rel/bench/model
echo "== C (OpenBLAS, 2 threads)"
OPENBLAS_NUM_THREADS=2 build/rel/bench/model "$runs"
echo "== PyTorch (tests/ref/model.py, torch.set_num_threads(2), OMP_WAIT_POLICY=PASSIVE)"
OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 bench/model_torch.py "$runs"
