"""The same training step as bench/model.c in PyTorch (tests/ref/model.py, float32, 2 threads): forward, CE loss,
backward, for the default CPU configs of model.md §9. Prints the median step time and tokens/s.
Run with OMP_WAIT_POLICY=PASSIVE (bench/model.sh does)."""
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "ref"))
import model as ref  # noqa: E402

torch.set_num_threads(2)
runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
B, T, V = 8, 512, 348
base = dict(input_length=T, num_heads=4, d_model=256, dim_feedforward=1024, dropout=0.1)
configs = {
    "baseline (6 layers)": dict(depth=6),
    "hourglass naive+attn": dict(depth=[2, 2, 2], shorten_factor=2, updown_sample_type="naive", attn_resampling=True),
    "hourglass linear+attn": dict(depth=[2, 2, 2], shorten_factor=2, updown_sample_type="linear", attn_resampling=True),
}
print(f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads")
print(f"{'config':22} {'step s':>12} {'tokens/s':>12}")
for name, extra in configs.items():
    torch.manual_seed(1)
    m = ref.Model({**base, **extra}, vocab=V).train()
    tok = torch.randint(4, V, (B, T + 1))
    times = []
    for r in range(runs + 1):
        t0 = time.perf_counter()
        logits, hidden = m(tok[:, :T])
        loss = ref.loss(logits, tok[:, 1:], hidden, "ce")
        m.zero_grad(set_to_none=False)
        loss.backward()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times[1:])
    print(f"{name:22} {med:12.3f} {B * T / med:12.0f}")
