"""C -> PyTorch interop (run by `make interop`): a model.safetensors written by C loads into the reference module
with load_state_dict(strict=True) and gives the logits C computed. Usage: interop.py DIR (from test_ckpt --export).
The file is read by hand (Debian has no python3-safetensors): u64 header length, JSON header, float32 data."""
import json
import os
import struct
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model as ref  # noqa: E402


def load_safetensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    meta = header.pop("__metadata__", {})
    data = blob[8 + n:]
    state = {}
    for name, t in header.items():
        assert t["dtype"] == "F32", (name, t["dtype"])
        a, b = t["data_offsets"]
        state[name] = torch.frombuffer(bytearray(data[a:b]), dtype=torch.float32).reshape(t["shape"])
    return state, meta


def main():
    d = sys.argv[1]
    state, meta = load_safetensors(os.path.join(d, "model.safetensors"))
    cfg = json.loads(meta["config"])
    m = ref.Model(cfg["model"], vocab=cfg["vocab_size"]).eval()
    m.load_state_dict(state, strict=True)
    with open(os.path.join(d, "io.bin"), "rb") as f:
        B, T = struct.unpack("<ii", f.read(8))
        tok = torch.tensor(struct.unpack(f"<{B * T}i", f.read(4 * B * T))).reshape(B, T)
        want = torch.frombuffer(bytearray(f.read()), dtype=torch.float32).reshape(B, T, -1)
    with torch.no_grad():
        got, _ = m(tok)
    err = (got - want).abs().max().item()
    scale = want.abs().max().item()
    print(f"C -> PyTorch: load_state_dict(strict=True) ok, {len(state)} tensors; logits max abs error {err:.3g} "
          f"(scale {scale:.3g})")
    if err > 1e-4 * scale:
        sys.exit("interop: logits differ")


if __name__ == "__main__":
    main()
