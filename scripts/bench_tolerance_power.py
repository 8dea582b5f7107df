"""Tolerance power: can each tolerances.toml entry catch a 1% error on the models it applies to?

Plants structured errors on real reference outputs (CPU fp32 torch on each zoo model's example 0): the
whole output × 1.01 and the hardest single row (position / sample) × 1.01, and bisects the smallest
relative error compare() fails on. Prints one line per (entry, model); exit 1 when a cell misses 1%
without a `low_power` mark (or carries a mark it no longer needs), as tests/test_tolerance_power.py asserts.

    python scripts/bench_tolerance_power.py [--models bert,llama] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import sys

from hfmatrix import power


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="", help="comma-separated zoo ids (default: the whole zoo)")
    parser.add_argument("--json", default="", help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    rows = power.audit(power.zoo_references([m for m in args.models.split(",") if m] or None))
    print(power.table(rows))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1, default=str)
    found = power.problems(rows)
    for p in found:
        print(f"PROBLEM: {p}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
