"""Prove the perf gate where it runs: a baseline on this machine, then A/A and 25%-slower trials of the
perf suite through pytest, as `nox -s cpu` runs it (coverage, xdist, the suite's own arguments).

1. Record a baseline for the models into a temp baselines folder, as `nox -s baseline` does (its
   sample settings; `hfmatrix bench record`, which refuses it under load or above the noise bound:
   then this script stops and says so).
2. Runs of the perf suite (each a fresh pytest process of hfmatrix/suites/test_perf.py with default
   perf settings and ``-p perf_slowdown``) gated against that baseline: in each run half the models are
   slowed (each model call busy-waits 25% of its own duration after it returns; nothing else is
   touched) and the other half are A/A, alternating run by run, until there are ``--trials`` of each
   (a pytest process costs ~2 min on 2 cores at load 15: one gate per process would not fit).
3. Print detections (slowed trials flagged regression), A/A alarms (unchanged trials flagged),
   inconclusive and other verdict counts, and the load average through the run.

    python scripts/bench_perf_gate.py [--models bert] [--trials 20] [--slowdown 0.25] [--workdir DIR]
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from hfmatrix.run import suite_args  # noqa: E402

# as noxfile.py's `baseline` session passes them (HFMATRIX_BASELINE_* defaults)
BASELINE_ARGS = ("--hfm-perf-iters=30", "--hfm-perf-min-time=0.3", "--hfm-perf-batch-iters=10",
                 "--hfm-perf-regression=warn")  # HFMATRIX_BASELINE_*
BASELINE_ENV = {"HFMATRIX_PERF_ROUNDS": "60"}


def _load() -> float:
    return os.getloadavg()[0]


AS_NOX = False  # --as-nox: under coverage and xdist -n auto, exactly as the nox session (slower to start)


def run_suite(work: Path, name: str, models: str, baselines: Path, extra=(), env=None):
    """One pytest run of the perf suite as the nox cpu session runs it; returns (verdicts, seconds)."""
    results = work / "results"
    runner = ("-m", "coverage", "run", "-m") if AS_NOX else ("-m",)
    args = [sys.executable, *runner, "pytest", "hfmatrix/suites/test_perf.py",
            f"--basetemp={work / 'bt' / name}", "-q", "-p", "no:cacheprovider",
            *suite_args(backend="torch", device="cpu", precisions="fp32", name=name, results=results,
                       workers="auto" if AS_NOX else "0"),
            f"--hfm-models={models}", f"--hfm-perf-baselines={baselines}", *extra]
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                "COVERAGE_FILE": str(work / "cov" / name), "PYTHONPATH": str(ROOT / "scripts"), **(env or {})}
    (work / "cov").mkdir(parents=True, exist_ok=True)
    (work / "bt").mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    proc = subprocess.run(args, cwd=ROOT, env=full_env, capture_output=True, text=True)
    secs = time.perf_counter() - t0
    bench = results / name / "bench-all.json"
    if not bench.is_file():
        raise SystemExit(f"{name}: no bench JSON (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    doc = json.loads(bench.read_text())
    out = {e["model"]: (e.get("status"), e.get("ratio"), e.get("comparison", {}).get("reason", "")) for e in doc["benchmarks"]}
    return out, secs, proc


def record_baseline(work: Path, models: str, baselines: Path, max_load: str | None) -> None:
    t0 = time.perf_counter()
    _, _, proc = run_suite(work, "baseline", models, baselines, extra=BASELINE_ARGS, env=BASELINE_ENV)
    env = {**os.environ, **({"HFMATRIX_BASELINE_MAX_LOAD": max_load} if max_load else {})}
    if max_load:
        print(f"baseline load limit overridden: HFMATRIX_BASELINE_MAX_LOAD={max_load} per usable core")
    rec = subprocess.run([sys.executable, "-m", "hfmatrix.perf.cli", "record", str(work / "results" / "baseline"),
                          "--baselines", str(baselines)], cwd=ROOT, capture_output=True, text=True, env=env)
    print(rec.stdout.strip(), rec.stderr.strip(), sep="\n")
    if rec.returncode:
        raise SystemExit(f"baseline refused (exit {rec.returncode}): the gate cannot be proven on this machine now")
    print(f"baseline recorded in {time.perf_counter() - t0:.0f} s at 1-min load {_load():.1f}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="bert,gpt2,minilm,bert-cls",
                   help="zoo ids gated in each run (comma-separated); each run slows half of them, alternating")
    p.add_argument("--trials", type=int, default=20, help="A/A gates and as many slowed gates (default 20)")
    p.add_argument("--slowdown", type=float, default=0.25, help="planted slowdown of the model call (default 0.25)")
    p.add_argument("--baseline-max-load", default=None,
                   help="$HFMATRIX_BASELINE_MAX_LOAD for the baseline (1-min load per usable core above which it is "
                        "refused; default: the gate's own, hfmatrix/perf/calibrated.py); printed when overridden")
    p.add_argument("--workdir", default=None, help="scratch folder (default: a new temp folder, removed after)")
    p.add_argument("--as-nox", action="store_true",
                   help="run each trial under coverage with xdist -n auto as `nox -s cpu` does (default: -n 0, no "
                        "coverage; the suite measures with coverage paused either way)")
    args = p.parse_args()
    global AS_NOX
    AS_NOX = args.as_nox
    work = Path(args.workdir or tempfile.mkdtemp(prefix="hfm-perf-gate-"))
    baselines = work / "baselines"
    loads = [_load()]
    print(f"perf gate proof: models {args.models}, {args.trials} A/A + {args.trials} x {1 + args.slowdown:g} gates "
          f"({'coverage + xdist -n auto' if AS_NOX else 'pytest -n 0'}), "
          f"{os.cpu_count()} cpus, 1-min load {loads[0]:.1f}")
    t0 = time.perf_counter()
    record_baseline(work, args.models, baselines, args.baseline_max_load)
    counts = {"A/A": collections.Counter(), "slowed": collections.Counter()}
    ratios: dict[str, list[float]] = {"A/A": [], "slowed": []}
    models = args.models.split(",")
    runs = -(-2 * args.trials // len(models))
    for i in range(runs):
        slowed = [m for j, m in enumerate(models) if (i + j) % 2 == 0] if len(models) > 1 else models * (i % 2)
        env = {"HFMATRIX_PLANT_SLOWDOWN": str(args.slowdown), "HFMATRIX_PLANT_MODELS": ",".join(slowed)} if slowed else {}
        verdicts, secs, _ = run_suite(work, f"run{i}", args.models, baselines, extra=("-p", "perf_slowdown"), env=env)
        loads.append(_load())
        for model, (verdict, ratio, reason) in sorted(verdicts.items()):
            kind = "slowed" if model in slowed else "A/A"
            counts[kind][verdict] += 1
            ratios[kind].append(ratio)
            print(f"  run {i + 1:2d} {kind:6s} {model:9s}: {verdict:12s} ratio {ratio if ratio is None else f'{ratio:.3f}'}"
                  f" ({secs:.0f} s, load {loads[-1]:.1f}){'  ' + reason[:150] if reason else ''}", flush=True)
    n_slow, n_aa = sum(counts["slowed"].values()), sum(counts["A/A"].values())
    print(f"\ndetections (slowed x{1 + args.slowdown:g} flagged regression): {counts['slowed']['regression']}/{n_slow}")
    print(f"A/A alarms (unchanged flagged regression): {counts['A/A']['regression']}/{n_aa}")
    for kind in counts:
        print(f"{kind} verdicts: {dict(counts[kind])}; ratio min/median/max "
              f"{_spread([r for r in ratios[kind] if r is not None])}")
    print(f"inconclusive: A/A {counts['A/A']['inconclusive']}, slowed {counts['slowed']['inconclusive']}")
    print(f"1-min load average over the run: min {min(loads):.1f} / median {sorted(loads)[len(loads) // 2]:.1f} / "
          f"max {max(loads):.1f} on {os.cpu_count()} cpus; elapsed {time.perf_counter() - t0:.0f} s")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _spread(values: list[float]) -> str:
    if not values:
        return "n/a"
    v = sorted(values)
    return f"{v[0]:.3f}/{v[len(v) // 2]:.3f}/{v[-1]:.3f}"


if __name__ == "__main__":
    raise SystemExit(main())
