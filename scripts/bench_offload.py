"""Offloading shows its point: peak RSS of a disk-offloaded run vs the same model held in memory.

Builds a llama of tens of MB (the zoo's llama spec, wider; seeded random weights, cached like the zoo),
runs `python -m hfmatrix.distributed.offload` once per mode in a fresh process (forward + greedy
generation), checks the offloaded outputs equal the in-memory ones, and prints peak RSS for each and the
saving as a share of the weight bytes. Numbers, not a timed test (see README: speed targets live in scripts).

    python scripts/bench_offload.py [--hidden 512 --layers 4 --share 0.25]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from hfmatrix.zoo import materialize
from hfmatrix.zoo.inputs import example, generation_inputs
from hfmatrix.zoo.spec import load_specs


def _run(model_dir: Path, mode: str, share: float, work: Path) -> tuple[dict, dict]:
    out = Path(tempfile.mkdtemp(prefix=f"{mode}-", dir=work))
    cmd = [sys.executable, "-m", "hfmatrix.distributed.offload", "--model", str(model_dir), "--out", str(out),
           "--mode", mode, "--share", str(share), "--inputs", str(work / "in.npz"), "--gen-inputs", str(work / "gen.npz")]
    subprocess.run(cmd, check=True, capture_output=True)
    return json.loads((out / "rank-0.json").read_text()), dict(np.load(out / "rank-0.npz"))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--share", type=float, default=0.25, help="share of the weight bytes kept in memory")
    args = ap.parse_args()
    base = load_specs(None)["llama"]
    config = {**base.config, "hidden_size": args.hidden, "intermediate_size": args.hidden * 3,
              "num_hidden_layers": args.layers, "num_attention_heads": 8, "num_key_value_heads": 8,
              "initializer_range": 0.02}
    spec = dataclasses.replace(base, id=f"llama-offload-{args.hidden}x{args.layers}", config=config)
    model_dir = materialize(spec)
    with tempfile.TemporaryDirectory(prefix="hfm-bench-offload-") as tmp:
        work = Path(tmp)
        np.savez(work / "in.npz", **example(spec, model_dir))
        np.savez(work / "gen.npz", **generation_inputs(spec, model_dir))
        mem_ev, mem_out = _run(model_dir, "none", args.share, work)
        disk_ev, disk_out = _run(model_dir, "disk", args.share, work)
    weights = mem_ev["weight_bytes"]
    saved = mem_ev["peak_rss"] - disk_ev["peak_rss"]
    max_abs = float(np.abs(mem_out["logits"] - disk_out["logits"]).max())
    same_ids = bool(np.array_equal(mem_out["generated_ids"], disk_out["generated_ids"]))
    print(f"model {spec.id}: weights {weights / 2**20:.1f} MiB; disk offload with a memory budget of {args.share:.0%} of them "
          f"({len(disk_ev['offloaded_modules'])} modules offloaded)")
    print(f"peak RSS in memory {mem_ev['peak_rss'] / 2**20:.1f} MiB, disk-offloaded {disk_ev['peak_rss'] / 2**20:.1f} MiB: "
          f"{saved / 2**20:.1f} MiB lower = {saved / weights:.0%} of the weight bytes")
    print(f"offloaded vs in-memory: logits max |Δ| {max_abs:.3g}, greedy ids equal: {same_ids}")
    return 0 if same_ids and saved > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
