"""seed_default (configs/seed_default.json) in PyTorch (tests/ref/model.py, float32, 2 threads): RUNS micro-batch
steps of 3 x 1024 tokens (forward, CE, backward) and one Adam step, for bench/seed_default.sh's ratio. Prints the
median micro-batch time, tokens/s, the Adam step's time and the peak resident memory.
Usage: seed_default_torch.py [RUNS (2)]. Run with OMP_WAIT_POLICY=PASSIVE (bench/seed_default.sh does)."""
import os
import resource
import statistics
import sys
import time

import torch

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "tests", "ref"))
import model as ref  # noqa: E402
from param_table import load  # noqa: E402

torch.set_num_threads(2)
runs = int(sys.argv[1]) if len(sys.argv) > 1 else 2
cfg = load(os.path.join(here, "..", "configs", "seed_default.json"))
B, T, V = cfg["train"]["batch_size"], cfg["model"]["input_length"], 348
torch.manual_seed(1)
m = ref.Model(cfg["model"], vocab=V).train()
opt = torch.optim.Adam(m.parameters(), lr=3e-4)
print(f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads, "
      f"{sum(p.numel() for p in m.parameters())} parameters")
tok = torch.randint(4, V, (B, T + 1))
times = []
for r in range(runs + 1):
    t0 = time.perf_counter()
    logits, hidden = m(tok[:, :T])
    loss = ref.loss(logits, tok[:, 1:], hidden, "ce")
    loss.backward()
    times.append(time.perf_counter() - t0)
t0 = time.perf_counter()
torch.nn.utils.clip_grad_norm_(m.parameters(), 0.5)
opt.step()
t_adam = time.perf_counter() - t0
med = statistics.median(times[1:])
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(f"micro-batch {B} x {T}: {med:.2f} s, {B * T / med:.0f} tokens/s (median of {runs} after a warm-up); "
      f"clip + Adam {t_adam:.2f} s; peak resident memory {rss} KiB")
