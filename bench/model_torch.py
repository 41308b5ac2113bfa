"""The same training step as bench/model.c in PyTorch (tests/ref/model.py, float32, 2 threads): forward, CE loss,
backward, for the default CPU configs of model.md §9. Prints the median step time and tokens/s.
Run with OMP_WAIT_POLICY=PASSIVE (bench/model.sh does).
Usage: model_torch.py [RUNS [CONFIG]] [--device cpu|cuda] [--batch B] [--full] [--precision fp32|tf32|bf16]
[--config FILE] (a configs/*.json file timed instead of the three, as bench/model --config)
(--full: clipping and an Adam step too, as bench/model --full; on cuda the time is taken after a synchronize;
bf16 is autocast around forward and loss)."""
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "ref"))
import model as ref  # noqa: E402
from param_table import load  # noqa: E402  (a config's extends chain, merged as config.c does)

torch.set_num_threads(2)
args, pos = sys.argv[1:], []
device, B, full, precision, config = "cpu", 8, False, "fp32", None
while args:
    a = args.pop(0)
    if a == "--device":
        device = args.pop(0)
    elif a == "--batch":
        B = int(args.pop(0))
    elif a == "--full":
        full = True
    elif a == "--precision":
        precision = args.pop(0)
    elif a == "--config":
        config = args.pop(0)
    else:
        pos.append(a)
runs = int(pos[0]) if pos else 5
only = int(pos[1]) if len(pos) > 1 else -1
T, V = 512, 348
if device == "cuda":
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    torch.backends.cudnn.allow_tf32 = precision == "tf32"
base = dict(input_length=T, num_heads=4, d_model=256, dim_feedforward=1024, dropout=0.1)
configs = {
    "baseline (6 layers)": dict(depth=6),
    "hourglass naive+attn": dict(depth=[2, 2, 2], shorten_factor=2, updown_sample_type="naive", attn_resampling=True),
    "hourglass linear+attn": dict(depth=[2, 2, 2], shorten_factor=2, updown_sample_type="linear", attn_resampling=True),
}
if config:  # one config file instead of the three, at its own T
    cfg = load(config)["model"]
    T = cfg["input_length"]
    configs = {os.path.basename(config): {k: cfg[k] for k in ("depth", "shorten_factor", "updown_sample_type",
                                                             "attn_resampling", "save_updown_hidden") if k in cfg}}
    base = dict(input_length=T, num_heads=cfg["num_heads"], d_model=cfg["d_model"],
                dim_feedforward=cfg["dim_feedforward"], dropout=cfg.get("dropout", 0.1))
where = torch.cuda.get_device_name(0) if device == "cuda" else f"{torch.get_num_threads()} threads"
print(f"PyTorch {torch.__version__}, {where}, batch {B}, {precision}{', full step' if full else ''}")
print(f"{'config':22} {'step s':>12} {'tokens/s':>12} {'peak MiB':>10}")
for i, (name, extra) in enumerate(configs.items()):
    if only >= 0 and i != only:
        continue
    torch.manual_seed(1)
    m = ref.Model({**base, **extra}, vocab=V).train().to(device)
    opt = torch.optim.Adam(m.parameters(), lr=3e-4) if full else None
    tok = torch.randint(4, V, (B, T + 1), device=device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for r in range(runs + 1):
        t0 = time.perf_counter()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits, hidden = m(tok[:, :T])
            loss = ref.loss(logits.float(), tok[:, 1:], hidden, "ce")
        m.zero_grad(set_to_none=False)
        loss.backward()
        if full:
            torch.nn.utils.clip_grad_norm_(m.parameters(), 0.5)
            opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times[1:])
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else float("nan")
    print(f"{name:22} {med:12.4f} {B * T / med:12.0f} {peak:10.0f}")
