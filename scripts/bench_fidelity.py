"""Harness fidelity: the perf harness's p50 for MiniLM on CPU torch against a bare model(**inputs) loop.

Both run in this process on the same loaded model with the same pinned thread count, in
short alternating blocks (harness, bare, bare, harness, ...), so load from neighbours falls on both.
The harness side is exactly what hfmatrix/suites/test_perf.py times: run_timed over Session.run (numpy in,
numpy out); its RSS sampler covers the warm-up calls, never the timed ones. Prints the exact ratio harness p50 / bare p50.

    python scripts/bench_fidelity.py [--model minilm] [--rounds 100] [--per-round 2] [--threads N]
"""
from __future__ import annotations

import argparse
import os

import numpy as np

from hfmatrix.backends import get
from hfmatrix.backends.base import Target
from hfmatrix.perf.experiments import fidelity
from hfmatrix.perf.measure import resolve_threads
from hfmatrix.zoo import example, load_specs, materialize


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="minilm")
    p.add_argument("--rounds", type=int, default=100)
    p.add_argument("--per-round", type=int, default=2)
    p.add_argument("--threads", default="")
    args = p.parse_args()
    threads, source = resolve_threads(args.threads or None)
    spec = load_specs()[args.model]
    model_dir = materialize(spec)
    session = get("torch").load(model_dir, spec, Target("torch", "cpu", "fp32"))
    inputs = example(spec, model_dir)
    f = fidelity(session, inputs, threads=threads, rounds=args.rounds, per_round=args.per_round)
    h, b = np.asarray(f.harness) * 1e3, np.asarray(f.bare) * 1e3
    try:
        load = f"{os.getloadavg()[0]:.1f}"
    except OSError:
        load = "n/a"
    print(f"model {args.model} ({spec.auto_class}), inputs {{{', '.join(f'{k}: {v.shape}' for k, v in inputs.items())}}}, "
          f"threads {f.threads.get('intra_op')} ({source}), 1-min load {load}")
    for name, x in (("harness", h), ("bare", b)):
        print(f"{name:8s} n={x.size:3d}  p50 {np.median(x):8.3f} ms  p10 {np.percentile(x, 10):8.3f}  "
              f"p90 {np.percentile(x, 90):8.3f}  min {x.min():8.3f}")
    print(f"harness p50 / bare p50 = {f.ratio:.4f}  ({(f.ratio - 1) * 100:+.2f}%)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
