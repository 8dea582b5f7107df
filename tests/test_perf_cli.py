"""`hfmatrix bench record | compare | plot` (hfmatrix/perf/cli.py) on bench JSON written the way the
perf suite writes it: baselines recorded per fingerprint and target, a 50 % slowdown flagged (exit 1),
changed conditions refused as incomparable, no baseline said as such, and a baseline recorded under load or
without calibrated samples refused (exit 1, the reason on stderr)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hfmatrix.perf import bench
from hfmatrix.perf.cli import main
from hfmatrix.perf.calibrated import noise as calibrated_noise
from hfmatrix.perf.measure import summarize

FP = {"id": "test-2c-0"}


def _write(folder: Path, scale: float, threads: int = 1, load: float = 0.5, calibrated: bool = True) -> Path:
    rng = np.random.default_rng(11)
    values = list(0.002 * scale * (1 + rng.gamma(2.0, 0.02, 30)))
    report = {"forward": {"batch_size": 1, "latency": summarize(values)}}
    if calibrated:  # hfmatrix/perf/calibrated.py's block: per-round model / calibration ratios and their noise
        ratios = list(1.2 * scale * (1 + rng.gamma(2.0, 0.005, 30)))
        report["forward_norm"] = {"batch_size": 1, "latency": summarize(ratios, unit="x calibration"),
                                  "noise": calibrated_noise(ratios)}
    e = {"name": "bert@torch-cpu-fp32", "model": "bert", "backend": "torch", "device": "cpu", "precision": "fp32",
         "conditions": {"threads": threads, "timer": "wall"},
         "machine": {"before": {"loadavg_1m": load, "usable_cores": 2}}, "report": report}
    return bench.write(folder / "cpu" / "bench-all.json",
                       bench.document([e], session="cpu", shard="all", run_id=folder.name, fingerprint=FP))


def test_record_then_compare(tmp_path: Path, capsys) -> None:
    base = tmp_path / "baselines"
    _write(tmp_path / "first", 1.0)
    assert main(["compare", str(tmp_path / "first"), "--baselines", str(base)]) == 0
    assert "no-baseline (" in capsys.readouterr().out
    assert main(["record", str(tmp_path / "first"), "--baselines", str(base)]) == 0
    written = base / FP["id"] / "torch-cpu-fp32.json"
    assert capsys.readouterr().out.strip() == f"baseline written: {written} (1 models)"

    _write(tmp_path / "same", 1.0)
    assert main(["compare", str(tmp_path / "same"), "--baselines", str(base)]) == 0
    assert "unchanged: median" in capsys.readouterr().out
    _write(tmp_path / "slow", 1.5)
    assert main(["compare", str(tmp_path / "slow"), "--baselines", str(base)]) == 1    # the gate fails the run
    assert "regression: median" in capsys.readouterr().out
    _write(tmp_path / "threads", 1.5, threads=4)
    assert main(["compare", str(tmp_path / "threads"), "--baselines", str(base)]) == 0
    assert "incomparable: threads differ" in capsys.readouterr().out                 # not judged on other threads


def test_record_refuses_a_baseline_under_load_or_without_calibrated_samples(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("HFMATRIX_BASELINE_MAX_LOAD", raising=False)
    _write(tmp_path / "busy", 1.0, load=16.5)          # the committed baseline's conditions: 16.5 on 2 cores
    assert main(["record", str(tmp_path / "busy"), "--baselines", str(tmp_path / "b")]) == 1
    err = capsys.readouterr().err
    assert "baseline REFUSED: bert@torch-cpu-fp32: recorded under load (1-min load average 16.5 on 2 cores" in err
    assert not (tmp_path / "b").exists()
    _write(tmp_path / "old", 1.0, calibrated=False)    # raw samples only: nothing the gate compares
    assert main(["record", str(tmp_path / "old"), "--baselines", str(tmp_path / "b")]) == 1
    assert "no forward_norm samples" in capsys.readouterr().err and not (tmp_path / "b").exists()


def test_record_only_the_named_models(tmp_path: Path, capsys) -> None:
    _write(tmp_path / "r", 1.0)
    assert main(["record", str(tmp_path / "r"), "--baselines", str(tmp_path / "b"), "--models", "gpt2"]) == 0
    assert capsys.readouterr().out == "" and not (tmp_path / "b").exists()


def test_no_bench_files(tmp_path: Path, capsys) -> None:
    assert main(["compare", str(tmp_path)]) == 2
    assert f"no bench-*.json under {tmp_path}" in capsys.readouterr().err


def test_plot_command(tmp_path: Path, capsys) -> None:
    pytest.importorskip("matplotlib", reason="[dependency-missing] matplotlib not installed")
    _write(tmp_path / "r", 1.0)
    assert main(["plot", str(tmp_path / "r"), "--out", str(tmp_path / "plots"), "--baselines", str(tmp_path / "b")]) == 0
    svg = tmp_path / "plots" / "perf-torch.svg"
    assert capsys.readouterr().out.strip() == f"plot written: {svg}" and "bert" in svg.read_text()


def test_plot_shows_the_baseline_and_each_re_measurement(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="[dependency-missing] matplotlib not installed")
    from hfmatrix.perf.plot import plot_latency
    base = tmp_path / "baselines"
    _write(tmp_path / "first", 1.0)
    assert main(["record", str(tmp_path / "first"), "--baselines", str(base)]) == 0
    path = _write(tmp_path / "slow", 1.5)
    doc = bench.read(path)
    again = [0.003 * (1 + i / 100) for i in range(20)]
    bench.apply_comparison(doc["benchmarks"][0], {"verdict": "unchanged", "metrics": {"forward": {
        "verdict": "unchanged", "first": {"verdict": "regression"},
        "confirmations": [{"values": again, "n_current": 20, "verdict": "regression"},
                          {"values": [], "n_current": 0, "verdict": "regression"},          # nothing measured: no row
                          {"values": again, "n_current": 20, "verdict": "unchanged"}]}}})
    bench.write(path, doc)
    svg = plot_latency(path, tmp_path / "p.svg", baselines_dir=base).read_text()
    assert "baseline" in svg and "(n=30, regression)" in svg                 # the first verdict on the first row
    assert "re-measured (n=20, regression)" in svg and "re-measured (n=20, unchanged)" in svg   # the last decides
    assert svg.count("re-measured") == 2
    plain = plot_latency(path, tmp_path / "q.svg").read_text()                # no baselines folder: no baseline row
    assert "baseline" not in plain
