"""The serving load figures as bench entries, so they go through the same baselines and gate as every
backend's (hfmatrix/perf: baselines.record, runner.compare_case, gate.compare).

Gated metrics (raw per-request samples, seconds): ``latency_c1`` and ``ttft_c1`` (one client, serial
requests: the server's own speed) and ``latency_c4`` (4 concurrent clients: how it shares). Conditions
that must match the baseline: prompt and answer length, the levels, the server's options and whether
a tracer ran in the client; the sample count is not one (a baseline records more samples).
"""
from __future__ import annotations

import datetime as dt
import os
from typing import Any

from ..perf.measure import summarize
from ..perf.runner import Measured, machine_load, tracing
from .load import level

GATED = ("latency_c1", "ttft_c1", "latency_c4")
#: requests per level: 8 against an 8-sample baseline can reach p < 0.002 (1 / C(16, 8)); `nox -s baseline`
#: records more (HFMATRIX_SERVE_LOAD_REQUESTS)
REQUESTS = int(os.environ.get("HFMATRIX_SERVE_LOAD_REQUESTS", "8"))
LEVELS = (1, 4)
LEVEL_TIME_S = 60.0


def run_levels(session, prompt: str, max_tokens: int, requests: int = REQUESTS, **fields: Any) -> list[dict]:
    """Both levels, bounded: `requests` requests a level (shared among its clients), LEVEL_TIME_S each."""
    return [level(session.client, prompt, max_tokens, c, max(1, requests // c), LEVEL_TIME_S, **fields)
            for c in LEVELS]


def _metrics(levels: list[dict]) -> dict[str, dict]:
    by = {lv["clients"]: lv for lv in levels}
    return {"latency_c1": {"latency": summarize(by[1]["latency_values"])},
            "ttft_c1": {"latency": summarize(by[1]["ttft_values"])},
            "latency_c4": {"latency": summarize(by[4]["latency_values"])}}


def measured(case, session, prompt: str, max_tokens: int, fields: dict, *, run_id: str = "",
             session_name: str = "", versions: dict | None = None) -> tuple[Measured, list[dict]]:
    """Measure both levels once; the Measured re-measures a gated metric on the same server when a
    regression must be confirmed."""
    before = machine_load()
    levels = run_levels(session, prompt, max_tokens, **fields)
    t = case.target
    entry = {
        "name": case.id, "model": case.spec.id, "arch_class": case.spec.arch_class, "backend": t.backend,
        "device": t.device, "precision": t.precision, "effective_precision": t.effective,
        "session": session_name, "run_id": run_id, "versions": versions or {},
        "measured_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "conditions": {"prompt_tokens": len(session.tokenizer(prompt)["input_ids"]), "max_tokens": max_tokens,
                       "levels": list(LEVELS), "server": {k: session.options.get(k) for k in
                                                          ("dtype", "continuous_batching", "existing")},
                       "tracing": tracing()},
        "machine": {"before": before, "after": machine_load()}, "evidence": session.evidence(),
        "report": _metrics(levels), "baseline_metrics": list(GATED), "notes": [],
        "metric": "latency_c1", "status": "measured", "regression": False,
    }
    lat = entry["report"]["latency_c1"]["latency"]
    entry.update(p50_ms=lat["p50"] * 1e3, p90_ms=lat["p90"] * 1e3, p99_ms=lat["p99"] * 1e3)

    fresh: dict[str, dict] = {}

    def again(metric: str) -> list[float]:
        # one fresh run of both levels serves every gated metric's confirmation of the same round
        if metric not in fresh:
            fresh.clear()
            fresh.update(_metrics(run_levels(session, prompt, max_tokens, **fields)))
        return fresh.pop(metric)["latency"]["values"]
    return Measured(entry, None, {}, None, again=again), levels


