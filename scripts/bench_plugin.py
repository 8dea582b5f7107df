"""Per-test overhead of the hfmatrix plugin: a trivial parametrized test (N cases) run with the
plugin (records written and flushed per test) and without it (-p no:hfmatrix), same process setup.
Prints the per-test overhead in ms (target ≤ 5 ms)."""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TEST = """
import pytest

@pytest.mark.parametrize("i", range({n}))
def test_trivial(i):
    assert i >= 0
"""


def run(folder: Path, plugin: bool) -> float:
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(folder / "test_trivial.py")]
    args += [f"--hfm-results-dir={folder / 'results'}"] if plugin else ["-p", "no:hfmatrix"]
    start = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True, cwd=folder)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=2000, help="parametrized cases")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "test_trivial.py").write_text(TEST.format(n=args.n))
        on, off = [], []
        for _ in range(args.repeat):  # interleaved, so machine noise hits both alike
            off.append(run(folder, plugin=False))
            on.append(run(folder, plugin=True))
        lines = sum(1 for f in (folder / "results").rglob("records-*.jsonl") for _ in open(f))
    per_test = (statistics.median(on) - statistics.median(off)) / args.n * 1000
    print(f"{args.n} trivial tests: without plugin {statistics.median(off):.2f} s, with plugin "
          f"{statistics.median(on):.2f} s (median of {args.repeat}); records written: {lines}")
    print(f"plugin overhead per test: {per_test:.3f} ms (target <= 5 ms)")
    return 0 if per_test <= 5 else 1


if __name__ == "__main__":
    sys.exit(main())
