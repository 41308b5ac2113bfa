"""What sampling without a cache costs in PyTorch: one eval forward of tests/ref/model.py over a full 512-token
window (no_grad, float32, 2 threads) per generated token, batch 1 and 8, for the configs of bench/decode.c.
Prints the median forward time and the tokens/s it allows. Run with OMP_WAIT_POLICY=PASSIVE (bench/decode.sh)."""
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "ref"))
import model as ref  # noqa: E402

torch.set_num_threads(2)
args = [a for a in sys.argv[1:] if a != "--cuda"]
device = "cuda" if "--cuda" in sys.argv[1:] else "cpu"  # --cuda: on the GPU (TF32 off), timed after a synchronize
runs = int(args[0]) if args else 3
torch.backends.cuda.matmul.allow_tf32 = False
T, V = 512, 348
base = dict(input_length=T, num_heads=4, d_model=256, dim_feedforward=1024, dropout=0.0)
configs = {
    "baseline (6 layers)": dict(depth=6),
    "hourglass naive+attn": dict(depth=[2, 2, 2], shorten_factor=2, updown_sample_type="naive", attn_resampling=True),
    "hourglass linear+attn": dict(depth=[2, 2, 2], shorten_factor=2, updown_sample_type="linear", attn_resampling=True),
}
where = torch.cuda.get_device_name(0) if device == "cuda" else f"{torch.get_num_threads()} threads"
print(f"PyTorch {torch.__version__}, {where}")
print(f"{'config':22} {'B':>2} {'forward s':>10} {'tokens/s':>10}")
for name, extra in configs.items():
    torch.manual_seed(1)
    m = ref.Model({**base, **extra}, vocab=V).eval().to(device)
    for B in (1, 8):
        tok = torch.randint(4, V, (B, T), device=device)
        times = []
        with torch.no_grad():
            for r in range(runs + 1):
                t0 = time.perf_counter()
                m(tok)
                if device == "cuda":
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - t0)
        med = statistics.median(times[1:])
        print(f"{name:22} {B:2d} {med:10.3f} {B / med:10.1f}")
