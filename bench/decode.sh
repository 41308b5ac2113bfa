#!/usr/bin/env bash
# Generation with the KV-cached decoder against the reference approach, a full-window recompute per token in
# PyTorch (tests/ref/model.py), in one invocation, then the ratio per config and batch.
# Usage: bench/decode.sh [RUNS] [THREADS]. THREADS (default 2) is the C decoder's thread count; torch's is 2 (as
# bench/model.sh), with OMP_WAIT_POLICY=PASSIVE. Needs python3-torch for the PyTorch half.
set -euo pipefail
runs=${1:-3}
threads=${2:-2}
make -s build/rel/bench/decode
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "== C ($threads thread(s))"
build/rel/bench/decode "$runs" "$threads" | tee "$tmp/c"
echo "== PyTorch (tests/ref/model.py, eval, no_grad, torch.set_num_threads(2), OMP_WAIT_POLICY=PASSIVE)"
OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 bench/decode_torch.py "$runs" | tee "$tmp/py"
echo "== C generation / PyTorch recompute"
# both print the config name in the first 22 columns, then B; C's gen tok/s is its 5th number, PyTorch's tok/s its 3rd
awk 'FNR == NR { if (NF >= 5 && $NF ~ /^[0-9.]+$/) py[substr($0, 1, 25)] = $NF; next }
     FNR == 1 { printf "%-22s %2s %12s %14s %8s\n", "config", "B", "C gen tok/s", "PyTorch tok/s", "ratio" }
     { key = substr($0, 1, 25); split(substr($0, 26), f, " ") }
     key in py && f[3] + 0 > 0 { printf "%-25s %12.0f %14.1f %7.0fx\n", key, f[3], py[key], f[3] / py[key] }' \
  "$tmp/py" "$tmp/c"
