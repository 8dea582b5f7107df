"""The gate's measurement: the model call normalized by a machine-speed workload timed in the same rounds.

On a shared machine two things move a latency that have nothing to do with the code under test:

* preemption: a neighbour takes the core in the middle of a call (tens of ms on a 1 ms call). Each
  round keeps the FASTEST of its ``per_round`` calls, the one no neighbour interrupted;
* machine speed: clock, a busy SMT sibling, a shared cache make every call slower for minutes. Each
  round also times a fixed calibration workload (``calibration_workload()``: a seeded torch encoder
  layer, the same work on every machine and run, under the same pinned threads) right next to the
  model calls, and the round's sample is
  ``fastest model call / fastest calibration call``. A slower machine slows both; the ratio stays.

Rounds alternate the order (model first, calibration first, ...), so drift falls on both sides. The
metric is ``forward_norm`` (unit "x calibration"), its samples the per-round ratios; its noise is the
relative half-width of their median's confidence interval (``noise()``: 1.57 x IQR / sqrt(rounds) /
median). A baseline whose noise exceeds the bound, or recorded while the 1-minute load average per
usable core exceeded its limit, is refused (``refusal()``). A measurement whose ratio, give or take
its noise plus the baseline's, straddles the factor is ``inconclusive`` and measured again; a
regression the re-measure does not confirm is ``inconclusive`` too, never a pass.

Knobs (environment, read per call so a session can set them): $HFMATRIX_PERF_ROUNDS (default 30),
$HFMATRIX_PERF_PER_ROUND (5), $HFMATRIX_PERF_NOISE (noise bound, 0.04: less than half the gap between
1 and the gate's factor 1.10), $HFMATRIX_BASELINE_MAX_LOAD (1-min load average per usable core above
which a baseline is refused, 4.0).
"""
from __future__ import annotations

import gc
import os
import time
from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np

from . import gate
from .experiments import matmul_work
from .measure import coverage_paused, pinned_threads, summarize

METRIC = "forward_norm"
UNIT = "x calibration"
#: the numpy fallback (envs without torch): matmul_work(CAL_REPS), ~0.5 ms on a 2-core EPYC
CAL_REPS = 160


def _torch_calibration() -> tuple[str, Callable[[], Any]]:
    """Two passes of one fixed, seeded transformer encoder layer at batch 1: the op mix, dispatch
    overhead and working set of a small zoo model, so cache and front-end contention slow it as they
    slow the model (a 32x32 numpy loop stays in L1 and did not: measured on the shared 2-core machine,
    its ratio moved ~11% between load 18 and load 7)."""
    import torch
    gen = torch.Generator().manual_seed(0)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        layer = torch.nn.TransformerEncoderLayer(64, 4, 256, dropout=0.0, batch_first=True).eval()
    x = torch.randn(1, 18, 64, generator=gen)

    def run():
        with torch.inference_mode():
            return layer(layer(x))
    return "torch TransformerEncoderLayer(64, 4, 256) x2 on (1, 18, 64)", run


_CALIBRATION: list = []


def calibration_workload() -> tuple[str, Callable[[], Any]]:
    """(name, callable) of this env's calibration workload: torch's where torch is installed, else numpy's.
    The name goes into the measurement's conditions: baselines only compare under the same one."""
    if not _CALIBRATION:
        try:
            _CALIBRATION.append(_torch_calibration())
        except ImportError:
            _CALIBRATION.append((f"numpy tanh(32x32 @ 32x32) x {CAL_REPS}", lambda: matmul_work(CAL_REPS)))
    return _CALIBRATION[0]


def _env(name: str, default: str) -> str:
    return os.environ.get(name, "").strip() or default


def rounds_default() -> int:
    return int(_env("HFMATRIX_PERF_ROUNDS", "30"))


def per_round_default() -> int:
    return int(_env("HFMATRIX_PERF_PER_ROUND", "5"))


def noise_bound() -> float:
    return float(_env("HFMATRIX_PERF_NOISE", "0.04"))


def max_record_load() -> float:
    return float(_env("HFMATRIX_BASELINE_MAX_LOAD", "4.0"))


def calibration() -> Any:
    return calibration_workload()[1]()


def noise(values) -> float:
    """Relative half-width of the median's ~95% confidence interval (McGill's notch:
    1.57 x IQR / sqrt(n)) over the median: how far the median of these rounds can be off."""
    a = np.asarray(values, float)
    if a.size < 4:
        return float("inf")
    p25, p50, p75 = np.percentile(a, (25, 50, 75))
    return float(1.57 * (p75 - p25) / np.sqrt(a.size) / p50) if p50 > 0 else float("inf")


def _fastest(fn: Callable[[], Any], n: int) -> float:
    best = float("inf")
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()
        best = min(best, (time.perf_counter_ns() - t0) / 1e9)
    return best


@dataclass
class Rounds:
    ratios: list[float]
    model_s: list[float]       # fastest model call per round
    calibration_s: list[float]  # fastest calibration call per round
    per_round: int
    wall: float
    load: list[float]          # 1-min load average before and after


def run_rounds(call: Callable[[], Any], *, rounds: int, per_round: int, warmup: int = 2) -> Rounds:
    """``rounds`` rounds of (fastest of per_round model calls, fastest of per_round calibration calls),
    the order alternating round by round."""
    from .runner import machine_load
    for _ in range(max(1, warmup)):
        call()
        calibration()
    load0 = machine_load()["loadavg_1m"]
    model_s, cal_s = [], []
    t0 = time.perf_counter()
    for r in range(rounds):
        if r % 2 == 0:
            m = _fastest(call, per_round)
            c = _fastest(calibration, per_round)
        else:
            c = _fastest(calibration, per_round)
            m = _fastest(call, per_round)
        model_s.append(m)
        cal_s.append(c)
    wall = time.perf_counter() - t0
    return Rounds([m / c for m, c in zip(model_s, cal_s)], model_s, cal_s, per_round, wall,
                  [x for x in (load0, machine_load()["loadavg_1m"]) if x is not None])


def block(r: Rounds) -> dict[str, Any]:
    """The bench entry's report block of the metric (see hfmatrix.perf.bench)."""
    return {"batch_size": 1, "rounds": len(r.ratios), "per_round": r.per_round, "loop_wall_s": r.wall,
            "latency": summarize(r.ratios, unit=UNIT), "noise": noise(r.ratios), "noise_bound": noise_bound(),
            "model_fastest": summarize(r.model_s), "calibration_fastest": summarize(r.calibration_s),
            "calibration": calibration_workload()[0], "loadavg_1m": r.load}


def measure(measured, threads: int, *, rounds: int | None = None, per_round: int | None = None) -> dict[str, Any]:
    """The forward_norm block for a measured case (its session reloaded if it was closed)."""
    backend = measured.entry["backend"]
    with coverage_paused(), pinned_threads(backend, threads):
        session = measured.open_session()
        gc.collect()
        r = run_rounds(lambda: session.run(measured.inputs), rounds=rounds or rounds_default(),
                       per_round=per_round or per_round_default())
    return block(r)


# ----------------------------------------------------------------------------- baselines
def refusal(entry: dict[str, Any], max_load: float | None = None, bound: float | None = None) -> str:
    """Why a bench entry must not become a baseline ("" when it may): recorded under load (1-min load
    average per usable core above max_load), or its forward_norm noise above the bound, or no
    forward_norm at all (the gate would have nothing to compare)."""
    max_load = max_record_load() if max_load is None else max_load
    bound = noise_bound() if bound is None else bound
    blk = entry.get("report", {}).get(METRIC)
    if blk is None:
        return f"{entry.get('name')}: no {METRIC} samples (measured before the calibrated gate existed)"
    machine = entry.get("machine", {})
    loads = [m.get("loadavg_1m") for m in machine.values() if isinstance(m, dict)] + list(blk.get("loadavg_1m", []))
    loads = [x for x in loads if x is not None]
    cores = next((m.get("usable_cores") for m in machine.values() if isinstance(m, dict) and m.get("usable_cores")), 1)
    if max_load and loads and max(loads) > max_load * cores:
        return (f"{entry.get('name')}: recorded under load (1-min load average {max(loads):.1f} on {cores} cores > "
                f"{max_load:g} per core, $HFMATRIX_BASELINE_MAX_LOAD): record it when the machine is quieter")
    if blk["noise"] > bound:
        return (f"{entry.get('name')}: too noisy for a baseline ({METRIC} median known to ±{blk['noise']:.1%} "
                f"> bound {bound:.1%}, $HFMATRIX_PERF_NOISE): record it when the machine is quieter")
    return ""


# ----------------------------------------------------------------------------- the gate
INCONCLUSIVE = gate.INCONCLUSIVE


def _judge_once(ref: list[float], blk: dict[str, Any], cfg) -> gate.Comparison:
    """asv's rule on the calibrated samples, then the noise: the ratio is known to about
    ±(noise now + noise of the baseline); when that interval straddles the factor the measurement
    cannot say which side it is on (inconclusive). A flagged ratio whose interval lies above the factor
    stands; an unflagged one whose interval reaches above it is not evidence of "unchanged"."""
    c = gate.compare(ref, blk["latency"]["values"], cfg.factor, cfg.alpha)
    if c.verdict not in (gate.REGRESSION, gate.UNCHANGED) or c.ratio is None:
        return c
    half = blk["noise"] + noise(ref)
    lo, hi = c.ratio / (1 + half), c.ratio * (1 + half)
    if (c.verdict == gate.REGRESSION and lo <= cfg.factor) or (c.verdict == gate.UNCHANGED and hi > cfg.factor):
        return replace(c, verdict=INCONCLUSIVE,
                       reason=f"too noisy to decide: ratio ×{c.ratio:.3f} known to ±{half:.1%} (×{lo:.3f}..×{hi:.3f}) "
                              f"straddles the factor ×{cfg.factor:.2f}")
    return c


def _final(seen: list[gate.Comparison], confirm: int) -> gate.Comparison:
    """A regression stands when at least ``confirm`` re-measures repeat the first alarm and no
    measurement contradicts it (one too noisy to decide contradicts nothing); an alarm that a later
    measurement does not repeat leaves the verdict inconclusive, never unchanged."""
    last = seen[-1]
    alarms = [c for c in seen if c.verdict == gate.REGRESSION]
    decided = [c for c in seen if c.verdict != INCONCLUSIVE]
    if alarms and any(c.verdict != gate.REGRESSION for c in decided):
        other = next(c for c in decided if c.verdict != gate.REGRESSION)
        return replace(last, verdict=INCONCLUSIVE,
                       reason=f"not confirmed: flagged at ×{alarms[0].ratio:.3f} (p={alarms[0].p_value:.2g}), "
                              f"measured {other.verdict} at ×{other.ratio:.3f} too")
    if alarms and len(alarms) > confirm:
        return alarms[-1]
    if alarms:
        return replace(last, verdict=INCONCLUSIVE, reason=f"regression seen {len(alarms)} of {len(seen)} times, "
                                                          f"not confirmed by {confirm} re-measure(s)")
    return decided[-1] if decided else last


def decide(ref: list[float], first_blk: dict[str, Any], again: Callable[[], dict[str, Any]], cfg) -> dict[str, Any]:
    """Measure again while the verdict is a regression not yet confirmed or too noisy (at most
    2 x cfg.confirm re-measures); see _final for the verdict."""
    seen = [_judge_once(ref, first_blk, cfg)]
    out: dict[str, Any] = {"first": seen[0].as_dict()}
    while len(seen) <= 2 * cfg.confirm and _pending(seen, cfg.confirm):
        blk = again()
        seen.append(_judge_once(ref, blk, cfg))
        out.setdefault("confirmations", []).append({**seen[-1].as_dict(), "values": blk["latency"]["values"],
                                                    "noise": blk["noise"]})
    final = _final(seen, cfg.confirm)
    out["final"] = final.as_dict()
    out["unit"] = "ratio"  # of model time to calibration time: not seconds
    out["verdict"] = final.verdict
    out["summary"] = final.describe(unit_scale=1.0, unit="x cal")
    return out


def _pending(seen: list[gate.Comparison], confirm: int) -> bool:
    """Measure again: nothing decided yet (too noisy), or an alarm not yet confirmed nor contradicted."""
    final = _final(seen, confirm)
    return final.verdict == INCONCLUSIVE and not final.reason.startswith("not confirmed")


def compare_case(measured, cfg, fp_id: str, threads: int) -> dict[str, Any]:
    """The comparison block (same shape as hfmatrix.perf.runner.compare_case's) of the calibrated gate."""
    from . import baselines
    from .runner import baseline_block
    e = measured.entry
    out, base = baseline_block(cfg, fp_id, e)
    if base is None:
        return out
    # the load was judged when it was recorded (hfmatrix bench record); its noise and samples are judged here
    refused = refusal({"name": e["model"], "machine": base.get("machine", {}),
                       "report": {METRIC: base["metrics"][METRIC]} if METRIC in base.get("metrics", {}) else {}},
                      max_load=0)
    if refused:
        out.update(verdict=gate.NO_BASELINE, reason=f"baseline {out['baseline_file']} not usable: {refused}")
        return out
    diff = baselines.mismatched_conditions(base.get("conditions", {}), e["conditions"])
    if diff:
        out.update(verdict=gate.INCOMPARABLE, reason="conditions differ from the baseline's: " +
                   "; ".join(f"{k}: baseline {b!r} vs now {c!r}" for k, (b, c) in diff.items()))
        return out
    blk = decide(base["metrics"][METRIC]["values"], e["report"][METRIC],
                 lambda: measure(measured, threads), cfg)
    out["metrics"][METRIC] = blk
    out["verdict"] = blk["verdict"]
    if blk["verdict"] in (INCONCLUSIVE, gate.INSUFFICIENT):
        out["reason"] = blk["summary"]
        out["undecided"] = {METRIC: blk["summary"]}
    return out
