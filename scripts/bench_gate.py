"""Prove the regression gate on a stable synthetic workload (fixed small matmuls), on this machine.

20 A/A comparisons (no change: every alarm is false), 20 with the work made 10% larger, 20 with
25%; each comparison interleaves baseline and current calls in one process. Prints false alarms
and detections under asv's rule (median ratio > factor AND Mann-Whitney p < alpha).

    python scripts/bench_gate.py [--trials 20] [--n 40] [--reps 40] [--factor 1.10] [--alpha 0.002]
"""
from __future__ import annotations

import argparse
import os
import time

from hfmatrix.perf import gate
from hfmatrix.perf.experiments import gate_trial


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--n", type=int, default=60, help="samples per side per comparison")
    p.add_argument("--reps", type=int, default=20, help="matmuls per sample (baseline)")
    p.add_argument("--factor", type=float, default=gate.FACTOR)
    p.add_argument("--alpha", type=float, default=gate.ALPHA)
    args = p.parse_args()
    try:
        load = f"{os.getloadavg()[0]:.1f}"
    except OSError:
        load = "n/a"
    print(f"gate: ratio > {args.factor} AND Mann-Whitney p < {args.alpha}; {args.trials} trials per setting, "
          f"n={args.n} per side, 1-min load {load} on {os.cpu_count()} cpus")
    t0 = time.perf_counter()
    for slowdown, label in ((0.0, "A/A"), (0.10, "10% slower"), (0.25, "25% slower")):
        trials = [gate_trial(slowdown, reps=args.reps, n=args.n, factor=args.factor, alpha=args.alpha)
                  for _ in range(args.trials)]
        flagged = sum(t.comparison.flagged for t in trials)
        ratios = sorted(t.comparison.ratio for t in trials)
        ps = sorted(t.comparison.p_value for t in trials)
        what = "false alarms" if slowdown == 0 else "detections"
        print(f"{label:11s} (work +{trials[0].slowdown:.0%}): {what} {flagged}/{args.trials}; median ratio min/med/max "
              f"{ratios[0]:.3f}/{ratios[len(ratios) // 2]:.3f}/{ratios[-1]:.3f}; p min/med "
              f"{ps[0]:.2g}/{ps[len(ps) // 2]:.2g}")
    print(f"elapsed {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
