"""Writes the PyTorch reference's parameter table for a config (run by `make fixtures`; needs python3-torch).

Usage: param_table.py CONFIG OUT. CONFIG is a configs/*.json file (its `extends` chain is merged here, key by key,
as libcommon/config.c merges it); OUT gets one line per state_dict entry, sorted by name, `NAME<TAB>d0,d1,...`,
then `# parameters N` (the sum over parameters, the positional buffer left out). tests/test_plan.c compares
the C model's table with it, so the headline config of the reference (609M parameters) is checked without
building it in a test."""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model as ref  # noqa: E402


def load(path):
    with open(path) as f:
        cfg = json.load(f)
    ext = cfg.pop("extends", None)
    if ext is None:
        return cfg
    base = load(os.path.join(os.path.dirname(path), ext))

    def merge(dst, src):
        for k, v in src.items():
            if isinstance(v, dict) and isinstance(dst.get(k), dict):
                merge(dst[k], v)
            else:
                dst[k] = v
    merge(base, cfg)
    return base


def main():
    cfg, out = load(sys.argv[1]), sys.argv[2]
    torch.manual_seed(0)
    m = ref.Model(cfg["model"])
    n = sum(p.numel() for p in m.parameters())
    lines = sorted(f"{k}\t{','.join(str(d) for d in v.shape)}" for k, v in m.state_dict().items())
    with open(out + ".tmp", "w") as f:
        f.write("\n".join(lines) + f"\n# parameters {n}\n")
    os.replace(out + ".tmp", out)
    print(f"{out}: {len(lines)} tensors, {n} parameters")


if __name__ == "__main__":
    main()
