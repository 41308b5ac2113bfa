"""Writes the PyTorch parity fixtures of tests/fixtures/ (run by `make fixtures`; needs Debian's python3-torch).

Each fixture is one configuration: weights drawn from a recorded seed, tokens (with PAD), and what the reference
model (tests/ref/model.py, computed in float64, stored as float32) gives: logits, every hidden state, the loss and
the gradient of every parameter. Format (little-endian): b"HGFX", u32 version 1, u32 n_entries, then per entry:
u32 name length, name, u32 dtype (0 float32, 1 int32), u32 ndim, u32 dims[ndim], data.
Entries: "config" int32 [V, C, NH, F, L, linear, attn_resampling, save_updown_hidden, B, T, loss kind
(0 ce, 1 cosine_ce, 2 exp_cosine_ce)], "depth" int32 (prefix code: a block n is [0, n], an hourglass is
[1, pre, s, <valley>, post]), "alpha" float32 [1], "tokens" int32 (B, T+1) (inputs are [:, :T], targets [:, 1:]),
"logits", "loss", "hidden.<i>", "param.<name>", "grad.<name>"."""
import json
import os
import struct
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model as ref  # noqa: E402

SEED = 20261124
BASE = dict(input_length=16, num_heads=2, d_model=16, dim_feedforward=32, dropout=0.0)
V = 40
FIXTURES = {
    "baseline": (dict(depth=2), "ce", 16),
    "naive": (dict(depth=[1, 1, 1], shorten_factor=2, updown_sample_type="naive"), "ce", 16),
    "linear": (dict(depth=[1, 1, 1], shorten_factor=2, updown_sample_type="linear"), "ce", 16),
    "naive_attn": (dict(depth=[1, 1, 1], shorten_factor=2, updown_sample_type="naive", attn_resampling=True), "ce", 16),
    "linear_attn": (dict(depth=[1, 1, 1], shorten_factor=2, updown_sample_type="linear", attn_resampling=True), "ce", 16),
    "nested": (dict(depth=[1, [1, 1, 1], 1], shorten_factor=[2, 2], updown_sample_type="linear",
                    attn_resampling=True), "ce", 16),
    "s3_t13": (dict(depth=[1, 1, 1], shorten_factor=3, updown_sample_type="linear", attn_resampling=True), "ce", 13),
    "cosine_ce": (dict(depth=[1, 1, 1], shorten_factor=2, updown_sample_type="linear", attn_resampling=True),
                  "cosine_ce", 16),
    "exp_cosine_ce": (dict(depth=[1, 1, 1], shorten_factor=2, updown_sample_type="linear", attn_resampling=True),
                      "exp_cosine_ce", 16),
}
LOSS_KIND = {"ce": 0, "cosine_ce": 1, "exp_cosine_ce": 2}
ALPHA = {"ce": 0.0, "cosine_ce": 0.1, "exp_cosine_ce": 1e-2}  # exp-cosine's 1e-6 default would hide its gradient


def depth_code(depth, s):
    if isinstance(depth, int):
        return [0, depth]
    s0, rest = (s[0], s[1:]) if isinstance(s, list) else (s, s)
    return [1, depth[0], s0] + depth_code(depth[1], rest if rest else s0) + [depth[2]]


def entry(name, t):
    t = t.detach().cpu().contiguous()
    dtype = 1 if t.dtype in (torch.int32, torch.int64) else 0
    data = t.to(torch.int32 if dtype else torch.float32).numpy().tobytes()
    nb = name.encode()
    return struct.pack(f"<I{len(nb)}sII", len(nb), nb, dtype, t.dim()) + struct.pack(f"<{t.dim()}I", *t.shape) + data


def save_safetensors(path, state, metadata):
    """The safetensors layout, written by hand (Debian has no python3-safetensors): u64 header length, JSON
    header, raw little-endian float32 data in header order."""
    header, blobs, off = {"__metadata__": metadata}, [], 0
    for k, v in state.items():
        b = v.detach().to(torch.float32).contiguous().numpy().tobytes()
        header[k] = {"dtype": "F32", "shape": list(v.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    os.replace(path + ".tmp", path)


def write(path, name, extra, loss_kind, T):
    torch.manual_seed(SEED + sum(map(ord, name)))
    cfg = {**BASE, **extra}
    m = ref.Model(cfg, vocab=V).double().eval()
    with torch.no_grad():  # weights in general position: LayerNorm and biases away from 1 and 0
        for n, p in m.named_parameters():
            if "norm" in n or n.endswith("bias"):
                p.add_(0.3 * torch.randn_like(p))
    B = 2
    tokens = torch.randint(1, V, (B, T + 1))
    tokens[0, -3:] = 0  # a padded tail: PAD targets are ignored, PAD inputs get no embedding gradient
    logits, hidden = m(tokens[:, :T])
    loss = ref.loss(logits, tokens[:, 1:], hidden, loss_kind, ALPHA[loss_kind])
    loss.backward()
    cfg_vec = [V, cfg["d_model"], cfg["num_heads"], cfg["dim_feedforward"], cfg["input_length"],
               int(cfg.get("updown_sample_type") == "linear"), int(cfg.get("attn_resampling", False)), 1, B, T,
               LOSS_KIND[loss_kind]]
    parts = [entry("config", torch.tensor(cfg_vec)), entry("depth", torch.tensor(depth_code(cfg["depth"],
             cfg.get("shorten_factor", 2)))), entry("alpha", torch.tensor([ALPHA[loss_kind]])),
             entry("tokens", tokens), entry("logits", logits), entry("loss", loss.reshape(1))]
    parts += [entry(f"hidden.{i}", h) for i, h in enumerate(hidden)]
    for n, p in m.named_parameters():
        parts += [entry(f"param.{n}", p), entry(f"grad.{n}", p.grad)]
    blob = b"HGFX" + struct.pack("<II", 1, len(parts)) + b"".join(parts)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(blob)
    os.replace(tmp, path)
    print(f"{path}: {len(blob)} bytes, loss {loss.item():.6f}")
    if name == "linear_attn":  # the same weights as a PyTorch-written checkpoint, for the C reader
        save_safetensors(path[:-4] + ".safetensors", m.state_dict(), {"config": json.dumps({"model": cfg})})


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "fixtures")
    os.makedirs(out, exist_ok=True)
    torch.set_default_dtype(torch.float64)
    for name, (extra, loss_kind, T) in FIXTURES.items():
        write(os.path.join(out, name + ".bin"), name, extra, loss_kind, T)


if __name__ == "__main__":
    main()
