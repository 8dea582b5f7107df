"""Benchmarks: load, first call, steady-state latency and throughput, peak RSS / device memory,
then the regression gate against the committed baseline for this machine's fingerprint.

Timing is never asserted against a target here (that is what the baselines and scripts/bench_*.py
are for); ``test_perf`` asserts the measurement itself is sound, ``test_perf_vs_baseline`` applies
asv's two-part rule (median ratio > factor AND Mann-Whitney p < alpha) on the calibrated samples
(hfmatrix/perf/calibrated.py: per round, the fastest model call over the fastest call of a fixed
workload timed next to it), re-measures an alarm, and skips ``inconclusive`` when it cannot decide.
"""
from __future__ import annotations

import math

import pytest

from hfmatrix.perf import calibrated
from hfmatrix.perf.baselines import fingerprint
from hfmatrix.perf.plugin import PROP_ENTRY, judge
from hfmatrix.perf.runner import Measured, PerfConfig, measure_case

pytestmark = pytest.mark.hfm_perf

# Measurements of this process by case id, for the baseline check of the same case (same xdist
# group, so the same worker). Sessions are closed right after measuring; a confirmation re-measure
# reloads one.
_MEASURED: dict[str, Measured] = {}


def _measure(request, hfm_case, hfm_model_dir, cfg: PerfConfig) -> Measured:
    from hfmatrix import backends
    from hfmatrix.plugin import load_session, run_info
    if hfm_case.id in _MEASURED:
        return _MEASURED[hfm_case.id]
    st = run_info(request.config)
    m = measure_case(hfm_case, hfm_model_dir, cfg, lambda: load_session(hfm_case, hfm_model_dir, fresh=True),
                     run_id=st.run_id, session_name=st.session)
    m.entry["versions"] = backends.get(hfm_case.target.backend).versions()
    m.entry["evidence"] = m.session.evidence()
    m.entry["report"][calibrated.METRIC] = calibrated.measure(m, cfg.threads)
    m.entry["conditions"]["calibration"] = m.entry["report"][calibrated.METRIC]["calibration"]
    m.close()
    _MEASURED[hfm_case.id] = m
    request.node.user_properties.append((PROP_ENTRY, m.entry))
    return m


def _headline(entry: dict) -> dict:
    r = entry["report"]
    out = {"load_s": r["load"]["latency"]["values"][0], "first_call_ms": r["first_call"]["latency"]["values"][0] * 1e3,
           "p50_ms": entry["p50_ms"], "p90_ms": entry["p90_ms"], "p99_ms": entry["p99_ms"],
           "n_samples": r["forward"]["latency"]["count"], "throughput_b1": r["forward"]["throughput"]["value"],
           "peak_rss_load_mb": r["load"]["memory"]["max_ram"], "peak_rss_run_mb": r["forward"]["memory"]["max_ram"],
           "threads": entry["threads"].get("intra_op") or entry["threads"]["requested"], "timer": entry["timer"]}
    if "forward_batch" in r:
        out.update(batch_size=r["forward_batch"]["batch_size"], throughput_batch=r["forward_batch"]["throughput"]["value"],
                   p50_batch_ms=r["forward_batch"]["latency"]["p50"] * 1e3)
    if calibrated.METRIC in r:  # what the gate compares: model time over the calibration workload's, per round
        out.update(norm_p50=r[calibrated.METRIC]["latency"]["p50"], norm_noise=r[calibrated.METRIC]["noise"])
    if "cold_load" in r:
        out["cold_load_s"] = r["cold_load"]["latency"]["values"][0]
    if "max_allocated" in r["forward"]["memory"]:
        out["device_peak_mb"] = r["forward"]["memory"]["max_allocated"]
    return out


def test_perf(request, hfm_case, hfm_model_dir, hfm_perf_config, hfm_measure):
    """The measurement is sound: enough finite positive samples over enough time, threads as pinned."""
    m = _measure(request, hfm_case, hfm_model_dir, hfm_perf_config)
    hfm_measure(**_headline(m.entry), evidence=m.entry["evidence"])
    r = m.entry["report"]
    for metric, block in r.items():
        values = block["latency"]["values"]
        assert values and all(math.isfinite(v) and v > 0 for v in values), f"{metric}: non-positive or non-finite samples"
    for metric, need in (("forward", hfm_perf_config.min_iters), ("forward_batch", hfm_perf_config.batch_iters)):
        if metric in r:
            lat = r[metric]["latency"]
            assert lat["count"] >= need, f"{metric}: {lat['count']} samples < {need}"
            assert r[metric]["loop_wall_s"] >= hfm_perf_config.min_time, f"{metric}: loop ran {r[metric]['loop_wall_s']:.3f} s"
            # the samples are the loop: they cannot add up to more than the wall time around them
            assert lat["total"] <= r[metric]["loop_wall_s"] * 1.001 + 1e-4, f"{metric}: samples exceed loop wall time"
    th = m.entry["threads"]
    if th.get("intra_op") is not None:
        assert th["intra_op"] == hfm_perf_config.threads, f"asked for {hfm_perf_config.threads} intra-op threads, got {th}"
    assert r["load"]["memory"]["max_ram"] >= r["load"]["memory"]["ram_before"] > 0


def test_perf_vs_baseline(request, hfm_case, hfm_model_dir, hfm_perf_config, hfm_measure):
    """asv's gate on calibrated samples against baselines/<fingerprint>/<target>.json; no (usable) baseline
    is a no-baseline skip, an undecidable measurement an inconclusive one: never a pass."""
    m = _measure(request, hfm_case, hfm_model_dir, hfm_perf_config)
    try:
        fp = fingerprint()["id"]
        cmp = calibrated.compare_case(m, hfm_perf_config, fp, hfm_perf_config.threads)
    finally:
        m.close()
        _MEASURED.pop(hfm_case.id, None)
    judge(request, m.entry["name"], cmp, fp, hfm_perf_config, hfm_measure)
