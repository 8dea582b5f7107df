"""Benchmark one model on one target: load, first call, steady state at batch 1 and at a larger batch.

``measure_case(case, model_dir, config, load)`` loads a FRESH session through ``load`` (the caller's:
the suite passes hfmatrix.plugin.load_session with fresh=True; a cached session has already paid its
load and first call), measures, and returns a ``Measured`` holding the bench entry (see
hfmatrix.perf.bench for its keys) and the open session, so the baseline check can re-measure.
``compare_case(measured, config)`` applies the gate against the committed baseline.
"""
from __future__ import annotations

import datetime as dt
import gc
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import baselines, gate
from .measure import (RssSampler, coverage_paused, pinned_threads, run_timed, summarize, time_once, timer_for)

#: metrics the gate compares (the others are single samples: reported, never gated)
GATED = ("forward", "forward_batch")


@dataclass
class PerfConfig:
    warmup: int = 2
    min_iters: int = 10
    min_time: float = 0.2
    batch_size: int = 4
    batch_iters: int = 4                 # 4 vs a 10-sample baseline: smallest attainable p 1/1001 < alpha
    threads: int = 1
    threads_source: str = "default"
    rss_interval: float = 0.02           # RSS sampling period while running (load: a quarter of it)
    factor: float = gate.FACTOR
    alpha: float = gate.ALPHA
    on_regression: str = "fail"          # or "warn"
    confirm: int = 1                     # re-measurements before a regression is reported
    max_load: float = 2.0                # 1-min load average per usable core above which a slowdown is not judged
    baselines_dir: Path = field(default_factory=lambda: Path("baselines"))

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["baselines_dir"] = str(self.baselines_dir)
        return d


def tracing() -> bool:
    """A tracer (coverage, a debugger) is active: it slows Python-heavy models unevenly."""
    if sys.gettrace() is not None:
        return True
    mon = getattr(sys, "monitoring", None)  # 3.12+: coverage's sys.monitoring core
    return bool(mon and any(mon.get_tool(i) for i in range(6)))


def machine_load() -> dict[str, Any]:
    """1-minute load average (Unix) and usable cores: how busy the machine was while measuring."""
    from .measure import usable_cores
    try:
        load1 = os.getloadavg()[0]
    except (AttributeError, OSError):  # Windows
        load1 = None
    return {"loadavg_1m": load1, "usable_cores": usable_cores()}


def input_signature(inputs: dict[str, Any]) -> dict[str, list]:
    return {k: [list(v.shape), str(v.dtype)] for k, v in sorted(inputs.items())}


# ----------------------------------------------------------------------------- device memory
def _reset_peak(session, device) -> None:
    session.device_ops.reset_peak()


def _read_memory(session, device) -> dict[str, int]:
    """Device bytes (max_allocated, reserved ... as optimum-benchmark names them) through the Session
    contract's device_ops: {} where the device has no counters."""
    return session.device_ops.memory()


def _mb(mem: dict[str, int]) -> dict[str, float]:
    return {k: v / 2**20 for k, v in mem.items() if isinstance(v, (int, float))}


# ----------------------------------------------------------------------------- measuring
@dataclass
class Measured:
    entry: dict[str, Any]
    session: Any
    inputs: dict[str, Any]
    batch_inputs: dict[str, Any] | None
    load: Callable[[], Any] | None = None
    again: Callable[[str], list[float]] | None = None  # fresh samples of one metric (else remeasure())

    def open_session(self):
        if self.session is None:
            self.session = self.load()
        return self.session

    def close(self) -> None:
        if self.session is not None and hasattr(self.session, "close"):
            self.session.close()
        self.session = None


def _block(timed, batch_size: int, rss: RssSampler, dev: dict[str, int]) -> dict[str, Any]:
    lat = summarize(timed.samples)
    return {"batch_size": batch_size, "warmup": timed.warmup, "loop_wall_s": timed.wall, "latency": lat,
            "throughput": {"unit": "items/s", "value": batch_size * lat["count"] / lat["total"] if lat["total"] else None},
            "memory": {**rss.as_dict(), **_mb(dev)}}


_WARM_PROCESSES: set[str] = set()  # backends that have loaded a model in this process


def _steady(session, inputs, batch_size, warmup, min_iters, cfg, make_timer, reset_peak, read_memory, device):
    """Warm-up calls under the RSS sampler (the run's peak memory), then the timed loop WITHOUT it:
    on 2 busy cores a sampler thread competing for the GIL inflated p50 by ~8% (scripts/bench_fidelity.py)."""
    reset_peak(session, device)
    with RssSampler(cfg.rss_interval) as rss:
        for _ in range(max(1, warmup)):
            session.run(inputs)
    timed = run_timed(lambda: session.run(inputs), warmup=0, min_iters=min_iters, min_time=cfg.min_time,
                      make_timer=make_timer)
    timed.warmup = max(1, warmup)
    block = _block(timed, batch_size, rss, read_memory(session, device))
    block["memory"]["sampled_over"] = "warm-up calls"
    return block


def measure(load: Callable[[], Any], inputs: dict, batch_inputs: dict | None, cfg: PerfConfig, *,
            backend: str, device: str) -> tuple[Any, dict[str, Any]]:
    """Load + first call + steady state (+ batch) with pinned threads. Returns (session, partial entry)."""
    make_timer = timer_for(backend, device)
    reset_peak, read_memory = _reset_peak, _read_memory
    report: dict[str, Any] = {}
    load_before = machine_load()
    with coverage_paused() as paused, pinned_threads(backend, cfg.threads) as threads:
        if backend not in _WARM_PROCESSES:
            # the first load in a process also imports the framework's model code (18 s for bert on a
            # busy 2-core machine): that is process start-up, not model load; timed apart as cold_load
            t0 = time.perf_counter()
            cold = load()
            report["cold_load"] = {"latency": summarize([time.perf_counter() - t0])}
            if hasattr(cold, "close"):
                cold.close()
            del cold
            _WARM_PROCESSES.add(backend)
        gc.collect()
        with RssSampler(cfg.rss_interval / 4) as rss:
            t0 = time.perf_counter()
            session = load()
            load_s = time.perf_counter() - t0
        report["load"] = {"latency": summarize([load_s]), "memory": {**rss.as_dict(), **_mb(read_memory(session, device))}}
        reset_peak(session, device)
        with RssSampler(cfg.rss_interval) as rss:
            _, first = time_once(lambda: session.run(inputs), make_timer)
        report["first_call"] = {"batch_size": 1, "latency": summarize([first]), "memory": rss.as_dict()}
        report["forward"] = _steady(session, inputs, 1, cfg.warmup, cfg.min_iters, cfg, make_timer,
                                    reset_peak, read_memory, device)
        if batch_inputs is not None:
            report["forward_batch"] = _steady(session, batch_inputs, cfg.batch_size, 1, cfg.batch_iters, cfg,
                                              make_timer, reset_peak, read_memory, device)
        traced = tracing()  # after pausing coverage: a debugger or profiler still counts
    timer_name = make_timer().name
    conditions = {"threads": threads.get("intra_op") or threads["requested"], "timer": timer_name,
                  "tracing": traced, "inputs": input_signature(inputs),
                  "batch_inputs": input_signature(batch_inputs) if batch_inputs is not None else None}
    machine = {"before": load_before, "after": machine_load(), "coverage_paused": paused}
    return session, {"threads": threads, "timer": timer_name, "conditions": conditions, "machine": machine,
                     "report": report}


def remeasure(measured: Measured, metric: str, cfg: PerfConfig, *, backend: str, device: str) -> list[float]:
    """Fresh steady-state samples of one gated metric (the session is reloaded if it was closed)."""
    inputs = measured.inputs if metric == "forward" else measured.batch_inputs
    iters = cfg.min_iters if metric == "forward" else cfg.batch_iters
    with coverage_paused(), pinned_threads(backend, cfg.threads):
        session = measured.open_session()
        gc.collect()
        timed = run_timed(lambda: session.run(inputs), warmup=cfg.warmup, min_iters=iters, min_time=cfg.min_time,
                          make_timer=timer_for(backend, device))
    return timed.samples


def measure_case(case, model_dir: Path, cfg: PerfConfig, load: Callable[[], Any], *, run_id: str = "",
                 session_name: str = "") -> Measured:
    """``load()`` returns a fresh session of ``case`` (called again for a confirmation re-measure)."""
    from ..zoo.inputs import batch, example
    t = case.target
    inputs = example(case.spec, model_dir)
    batch_inputs = batch(case.spec, model_dir, tuple(range(cfg.batch_size))) \
        if case.spec.has("batch") and cfg.batch_size > 1 else None
    session, part = measure(load, inputs, batch_inputs, cfg, backend=t.backend, device=t.device)
    fwd = part["report"]["forward"]["latency"]
    entry = {
        "name": case.id, "model": case.spec.id, "arch_class": case.spec.arch_class, "backend": t.backend,
        "device": t.device, "precision": t.precision, "effective_precision": t.effective, "session": session_name, "run_id": run_id,
        "measured_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        **part, "config": cfg.as_dict(),
        "notes": [] if batch_inputs is not None else
        [f"no forward_batch: {'spec lacks the batch capability' if not case.spec.has('batch') else 'batch size 1'}"],
        # flat summary of the headline metric (batch-1 forward), for tables
        "metric": "forward", "p50_ms": fwd["p50"] * 1e3, "p90_ms": fwd["p90"] * 1e3, "p99_ms": fwd["p99"] * 1e3,
        "status": "measured", "regression": False,
    }
    return Measured(entry, session, inputs, batch_inputs, load)


# ----------------------------------------------------------------------------- comparing
def baseline_block(cfg: PerfConfig, fp_id: str, e: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The comparison block's head for this entry and its baseline (None: the block already says no-baseline)."""
    path, base = baselines.lookup(cfg.baselines_dir, fp_id, e["backend"], e["device"], baselines.verdict_precision(e), e["model"])
    out: dict[str, Any] = {"baseline_file": str(path), "fingerprint": fp_id, "metrics": {}}
    if base is None:
        out.update(verdict=gate.NO_BASELINE, reason=f"no baseline for {e['model']} in {path}")
        return out, None
    out["baseline_recorded"] = base.get("recorded")
    out["baseline_versions"] = base.get("versions")
    return out, base


def compare_case(measured: Measured, cfg: PerfConfig, fp_id: str) -> dict[str, Any]:
    """Gate every GATED metric against the baseline. Returns the entry's "comparison" block."""
    e = measured.entry
    out, base = baseline_block(cfg, fp_id, e)
    if base is None:
        return out
    diff = baselines.mismatched_conditions(base.get("conditions", {}), e["conditions"])
    if diff:
        out.update(verdict=gate.INCOMPARABLE, reason="conditions differ from the baseline's: " +
                   "; ".join(f"{k}: baseline {b!r} vs now {c!r}" for k, (b, c) in diff.items()))
        return out
    for metric in e.get("baseline_metrics") or GATED:
        if metric not in e["report"] or metric not in base.get("metrics", {}):
            continue
        ref = base["metrics"][metric]["values"]
        first = gate.compare(ref, e["report"][metric]["latency"]["values"], cfg.factor, cfg.alpha)
        block: dict[str, Any] = {"first": first.as_dict()}
        final = first
        for i in range(cfg.confirm if first.flagged else 0):
            # a real regression survives a fresh measurement; a burst of load from neighbours does not
            samples = measured.again(metric) if measured.again else \
                remeasure(measured, metric, cfg, backend=e["backend"], device=e["device"])
            again = gate.compare(ref, samples, cfg.factor, cfg.alpha)
            block.setdefault("confirmations", []).append({**again.as_dict(), "values": samples})
            if not again.flagged:
                final = again
                break
        block["final"] = final.as_dict()
        block["verdict"] = final.verdict
        busy = _busy({**e.get("machine", {}), "compared": machine_load()}, cfg.max_load)
        if final.flagged and busy:
            # a busy machine can only make things slower: "unchanged" or "improvement" still stand, a
            # slowdown measured while neighbours used the cores is not evidence against the code
            block["verdict"] = gate.INCOMPARABLE
            block["busy"] = busy
        block["summary"] = final.describe() + (f" — not judged: {busy}" if block.get("busy") else "")
        out["metrics"][metric] = block
    verdicts = {m: b["verdict"] for m, b in out["metrics"].items()}
    decided = {m: v for m, v in verdicts.items() if v in (gate.REGRESSION, gate.IMPROVEMENT, gate.UNCHANGED)}
    undecided = {m: out["metrics"][m]["summary"] for m in verdicts if m not in decided}
    if not verdicts:
        out.update(verdict=gate.INCOMPARABLE, reason="baseline holds none of the gated metrics")
        return out
    if decided:  # regression beats improvement beats unchanged, over the metrics that could be judged
        out["verdict"] = next(v for v in (gate.REGRESSION, gate.IMPROVEMENT, gate.UNCHANGED) if v in decided.values())
    else:
        out["verdict"] = gate.INCOMPARABLE if gate.INCOMPARABLE in verdicts.values() else gate.INSUFFICIENT
    if undecided:  # said, never folded silently into the verdict of the others
        out["undecided"] = undecided
        out["reason"] = " | ".join(f"{m}: {text}" for m, text in undecided.items())
    return out


def _busy(machine: dict[str, Any], max_load: float) -> str:
    """A reason when the 1-min load average per usable core exceeded max_load while measuring."""
    if not max_load:
        return ""
    loads = [m for m in machine.values() if isinstance(m, dict)]
    worst = max(((m.get("loadavg_1m") or 0.0) for m in loads), default=0.0)
    cores = next((m.get("usable_cores") for m in loads if m.get("usable_cores")), 1)
    if worst > max_load * cores:
        return f"machine busy while measuring (1-min load {worst:.1f} on {cores} cores > {max_load:g} per core)"
    return ""
