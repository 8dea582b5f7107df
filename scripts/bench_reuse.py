"""Benchmark verdict reuse (issue 17): one nox session run twice on the same machine.

1. the full run: the env rebuilt (``--reuse-venv=no``) and an empty verdict store, so every cell computes;
2. the no-change rerun: the env reused (its lock did not change: noxfile.py's install stamp) and the
   store the first run filled, so every reusable cell reports its stored verdict.

Prints both wall times (venv creation included), their ratio (the issue's target is <= 10%) and the load
averages at the start and end of each run: on a shared machine a wall time means little without them.

    python scripts/bench_reuse.py                        # nox -s cpu, the whole zoo
    python scripts/bench_reuse.py --models bert,gpt2     # a small model set on a busy machine
    python scripts/bench_reuse.py --session openvino --models t5

CI must be unset (CI=true turns reuse off). The store is a fresh folder under the results directory
($HFMATRIX_VERDICTS), so the benchmark neither reads nor disturbs the shared one.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load() -> str:
    """The 1/5/15-minute load averages (the machine is shared: a wall time means little without them)."""
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


def run(cmd: list[str], env: dict[str, str], log: Path) -> tuple[float, int, str]:
    """(wall seconds, exit status, load averages at the start -> at the end)."""
    before, start = load(), time.perf_counter()
    with open(log, "w", encoding="utf-8") as fh:
        rc = subprocess.call(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
    return time.perf_counter() - start, rc, f"{before} -> {load()}"


def reuse_counts(session: str) -> dict[str, int]:
    meta = ROOT / "results" / session / "meta-all.json"
    return json.loads(meta.read_text()).get("reuse", {}) if meta.is_file() else {}


def computed_seconds(session: str) -> dict[str, float]:
    """Seconds per check of the rerun's cells that were not reused (never-reused perf / memory, env skips)."""
    out: dict[str, float] = {}
    for path in (ROOT / "results" / session).glob("records-*.jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            if not r.get("reused_from"):
                out[r["check"]] = out.get(r["check"], 0.0) + float(r.get("duration") or 0.0)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--session", default="cpu", help="nox session (default cpu)")
    ap.add_argument("--models", default="", help="comma-separated zoo ids (default: the session's own set)")
    ap.add_argument("--nox", default=shutil.which("nox") or "nox")
    args = ap.parse_args(argv)
    if os.environ.get("CI", "").lower() not in ("", "0", "false"):
        ap.error("CI is set: reuse is off under CI, there is nothing to measure")
    store = ROOT / "results" / f".bench-verdicts-{args.session}"
    shutil.rmtree(store, ignore_errors=True)
    env = {**os.environ, "HFMATRIX_VERDICTS": str(store)}
    posargs = ["--", f"--hfm-models={args.models}"] if args.models else []
    full_cmd = [args.nox, "-s", args.session, "--reuse-venv=no", *posargs]
    rerun_cmd = [args.nox, "-s", args.session, *posargs]
    logs = ROOT / "results" / f"bench-reuse-{args.session}"
    logs.mkdir(parents=True, exist_ok=True)
    full, rc1, load1 = run(full_cmd, env, logs / "full.log")
    first = reuse_counts(args.session)
    rerun, rc2, load2 = run(rerun_cmd, env, logs / "rerun.log")
    second = reuse_counts(args.session)
    print(f"session {args.session}, models {args.models or '(session default)'}, logs in {logs}, "
          f"{os.cpu_count()} CPUs")
    print(f"full run (env rebuilt, empty store):  {full:8.1f} s  exit {rc1}  cells {first}  load avg 1/5/15 min {load1}")
    print(f"no-change rerun (env and verdicts reused): {rerun:8.1f} s  exit {rc2}  cells {second}  "
          f"load avg {load2}")
    print(f"ratio: {rerun / full:.1%} (target <= 10%)")
    slow = {k: round(v, 1) for k, v in computed_seconds(args.session).items() if v >= 1}
    print(f"rerun's computed (not reusable) cells, test seconds summed over workers: {slow}")
    return 0 if rc1 == rc2 else 1


if __name__ == "__main__":
    sys.exit(main())
