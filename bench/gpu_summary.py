#!/usr/bin/env python3
"""gpu_summary: the tables of bench/gpu_model.sh's log (bench/results/gpu_model_h100.log, or $OUT/gpu_model.log of a
lent window) as the README gives them, so a window's figures go into the README without copying them by hand.

  bench/gpu_summary.py LOG          both tables below, as Markdown, on stdout
  bench/gpu_summary.py LOG --speed  only the first

1. speed: per config and batch, C with the unfused (gemm) attention in fp32, TF32 and bf16 against PyTorch in the
   same precision, and C's fastest of the three against PyTorch bf16 (issue 15's ratio);
2. every C run: per batch, each run of the log (its "==" line, precision and attention) and config against PyTorch
   bf16 at that batch: tokens/s and their ratio, and memory: what the C process held ("GPU MiB", its CUDA context
   included) and, where the log has it, the most it held through its own allocations ("alloc MiB") as a share of
   PyTorch bf16's peak (max_memory_allocated), issue 15's memory goal.

A log of bench/gpu_decode.sh (its runs are "C decoder" ones) gives the generation table instead: per config and
batch, the prefill of its first run, then each C run's generated tokens/s (labelled by its switches), PyTorch's
recompute and C's fastest against it.

The log is read run by run: a C run starts at its "device:" line, a PyTorch run at its "PyTorch x.y" line; each
takes the "==" line above it as its label. Python's standard library only. Exit 1 when the log has no run.
"""
import re
import sys


def parse(lines):
    """The runs of a gpu_model log: dicts with kind (C or PyTorch), label, batch, prec (fp32, tf32, bf16),
    attention (C only) and rows {config: {tokens, gpu_mib, alloc_mib or peak_mib}}"""
    runs, label, run = [], "", None
    for line in lines:
        line = line.rstrip("\n")
        if line.startswith("== "):
            label, run = line[3:].strip(), None
            continue
        m = re.match(r"device: .*?; batch (\d+); (.*?); cuBLAS", line)
        if m:
            p = m.group(2)
            prec = "fp32" if p.startswith("fp32") else "tf32" if p.startswith("TF32") else "bf16"
            run = {"kind": "C", "label": label, "batch": int(m.group(1)), "prec": prec, "attention": "", "rows": {}}
            runs.append(run)
            continue
        m = re.match(r"PyTorch \S+, .*, batch (\d+), (fp32|tf32|bf16), ", line)
        if m:
            run = {"kind": "PyTorch", "label": label, "batch": int(m.group(1)), "prec": m.group(2), "rows": {}}
            runs.append(run)
            continue
        if run is None:
            continue
        if line.startswith("attention: "):
            run["attention"] = line[len("attention: "):].split(" ")[0].rstrip(",")
            continue
        row = row_of(run["kind"], line)
        if row:
            run["rows"][row[0]] = row[1]
    return runs


def row_of(kind, line):
    """(config, values) of a result row, or None: a config name, then the step's seconds and tokens/s"""
    m = re.match(r"(.+?)\s{2,}(\d+\.\d+)\s+(\d+)\s+(.*)$", line)
    if not m:
        return None
    rest = m.group(4).split()
    vals = {"tokens": int(m.group(3))}
    if kind == "PyTorch":
        if len(rest) != 1 or not rest[0].isdigit():
            return None
        vals["peak_mib"] = int(rest[0])
    else:  # GFLOP/s, of sgemm, GPU MiB[, of bf16[, alloc MiB]]
        if len(rest) < 3 or not rest[2].isdigit():
            return None
        vals["gpu_mib"] = int(rest[2])
        if len(rest) >= 5 and rest[4].isdigit():
            vals["alloc_mib"] = int(rest[4])
    return m.group(1).strip(), vals


NAMES = {"baseline (6 layers)": "baseline, 6 layers", "hourglass naive+attn": "hourglass [2,2,2] naive + attn",
         "hourglass linear+attn": "hourglass [2,2,2] linear + attn",
         "seed_default.json": "the reference's headline config (609M, T 1024)"}


def plain(run):
    """A C run of the speed table: the unfused attention, no switch (HMT_*) and no --recompute-ffn in its label"""
    return run["kind"] == "C" and run["attention"] == "gemm" and "HMT_" not in run["label"] and \
        "recompute" not in run["label"]


def md(cells):
    """A Markdown table row of cells; an empty cell is written "| |", as the README writes it"""
    row = "| " + " | ".join(cells) + " |"
    while "|  |" in row:
        row = row.replace("|  |", "| |")
    return row


def n(x):
    return f"{x:,}"


def ratio(a, b):
    return f"{a / b:.2f}x" if a and b else ""


def speed_table(runs):
    keys = []  # (batch, config) in the log's order, batch 8 first
    for r in runs:
        for c in r["rows"]:
            if (r["batch"], c) not in keys:
                keys.append((r["batch"], c))
    keys.sort(key=lambda k: (k[0] == 24, k[0]))
    out = ["| config | batch | C fp32 | PyTorch fp32 | ratio | C TF32 | PyTorch TF32 | ratio | C bf16 | PyTorch bf16 | "
           "ratio | C best / PyTorch bf16 |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for b, c in keys:
        def get(kind, prec):  # the first such run with the config
            for r in runs:
                if r["batch"] == b and r["prec"] == prec and c in r["rows"] and \
                        (plain(r) if kind == "C" else r["kind"] == "PyTorch"):
                    return r["rows"][c]["tokens"]
            return 0
        cells, best = [], 0
        for prec in ("fp32", "tf32", "bf16"):
            cv, pv = get("C", prec), get("PyTorch", prec)
            best = max(best, cv)
            cells += [n(cv) if cv else "", n(pv) if pv else "", ratio(cv, pv)]
        if not any(cells):
            continue
        out.append(md([NAMES.get(c, c), str(b)] + cells + [ratio(best, get("PyTorch", "bf16"))]))
    return out


def runs_table(runs):
    out = ["| batch | run | precision | attention | config | tokens/s | / PyTorch bf16 | GPU MiB | alloc MiB | "
           "alloc / PyTorch bf16 peak |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        if r["kind"] != "C":
            continue
        peer = next((p for p in runs if p["kind"] == "PyTorch" and p["prec"] == "bf16" and p["batch"] == r["batch"]),
                    None)
        for c, v in r["rows"].items():
            pv = peer["rows"].get(c) if peer else None
            alloc = v.get("alloc_mib")
            share = f"{100 * alloc / pv['peak_mib']:.0f}%" if alloc is not None and pv else ""
            label = re.sub(r"^(C, CUDA backend, |the headline config, batch \d+: C )|, batch \d+$", "", r["label"])
            out.append(md([str(r["batch"]), label, r["prec"], r["attention"], NAMES.get(c, c), n(v["tokens"]),
                           ratio(v["tokens"], pv["tokens"] if pv else 0), n(v["gpu_mib"]),
                           n(alloc) if alloc is not None else "", share]))
    return out


def parse_decode(lines):
    """The runs of a gpu_decode log: dicts with kind (C or PyTorch), label and rows {(config, batch): {prefill, gen}}
    ({tokens} for PyTorch)"""
    runs, label, run = [], "", None
    for line in lines:
        line = line.rstrip("\n")
        if line.startswith("== "):
            label = line[3:].strip()
            run = {"kind": "PyTorch" if label.startswith("PyTorch") else "C", "label": label, "rows": {}}
            runs.append(run)
            continue
        if run is None:
            continue
        f = re.match(r"(.+?)\s+(\d+)\s+(.*)$", line)
        if not f or line.startswith(("config", "device", "PyTorch", " ")):
            continue
        rest = f.group(3).split()
        key = (f.group(1).strip(), int(f.group(2)))
        if run["kind"] == "C" and len(rest) >= 3 and all(re.fullmatch(r"\d+", x) for x in rest[:3]):
            run["rows"][key] = {"prefill": int(rest[0]), "gen": int(rest[2])}
        elif run["kind"] == "PyTorch" and len(rest) == 2 and re.fullmatch(r"\d+\.\d+", rest[1]):
            run["rows"][key] = {"tokens": float(rest[1])}
    return [r for r in runs if r["rows"]]


def switches(label):
    """A C decoder run's short name: its switches without HMT_GPU_DECODE_ and =1 (eager: none)"""
    m = re.search(r"\((HMT_[^)]*)\)", label)
    if not m:
        return "eager"
    return " ".join(x.replace("HMT_GPU_DECODE_", "").replace("=1", "") for x in m.group(1).split())


def decode_table(runs):
    cs = [r for r in runs if r["kind"] == "C"]
    torch = next((r for r in runs if r["kind"] == "PyTorch"), None)
    keys = []
    for r in runs:
        for k in r["rows"]:
            if k not in keys:
                keys.append(k)
    keys.sort(key=lambda k: k[1])
    out = [md(["config", "batch", "C prefill tok/s"] + [f"{switches(r['label'])} tok/s" for r in cs] +
              ["PyTorch recompute tok/s", "C best / PyTorch"]), "|---" * (len(cs) + 5) + "|"]
    for c, b in keys:
        gens = [r["rows"].get((c, b), {}).get("gen", 0) for r in cs]
        pre = next((r["rows"][(c, b)]["prefill"] for r in cs if (c, b) in r["rows"]), 0)
        pt = torch["rows"].get((c, b), {}).get("tokens", 0) if torch else 0
        out.append(md([NAMES.get(c, c), str(b), n(pre) if pre else ""] + [n(g) if g else "" for g in gens] +
                      [f"{pt:,.1f}" if pt else "", ratio(max(gens), pt) if pt else ""]))
    return out


def main(argv):
    if len(argv) == 2 and argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    if len(argv) not in (2, 3) or (len(argv) == 3 and argv[2] != "--speed") or argv[1].startswith("-"):
        print("gpu_summary: expected LOG [--speed] (try 'bench/gpu_summary.py --help')", file=sys.stderr)
        return 2
    try:
        with open(argv[1], encoding="utf-8", errors="replace") as f:
            lines = f.readlines()
    except OSError as e:
        print(f"gpu_summary: cannot read '{argv[1]}': {e.strerror}", file=sys.stderr)
        return 1
    if any(line.startswith("== C decoder") for line in lines):
        print("\n".join(decode_table(parse_decode(lines))))
        return 0
    runs = parse(lines)
    if not any(r["rows"] for r in runs):
        print(f"gpu_summary: no benchmark run in '{argv[1]}'", file=sys.stderr)
        return 1
    print("\n".join(speed_table(runs)))
    if len(argv) == 2:
        print()
        print("\n".join(runs_table(runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
