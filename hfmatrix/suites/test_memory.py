"""Memory-leak checks: repeated load -> run -> release cycles, and a long inference loop.

Process RSS must not grow per cycle beyond a bound the readings themselves give (warm-up noise,
counter resolution, one loaded model's footprint for load cycles: see hfmatrix/memory.py), and on
an accelerator the allocated device memory must come back to its starting value byte for byte.
The malloc heap counter is recorded alongside as a finer diagnostic; the verdict is on RSS.
"""
from __future__ import annotations

import pytest

from hfmatrix import memory
from hfmatrix.backends import IN_PROCESS
from hfmatrix.plugin import load_session
from hfmatrix.zoo import example

# In-process backends only: a backend that runs the model in other processes (a browser, a server, sharded
# ranks) has memory this process's RSS does not see (a leak there would pass unnoticed: not claimed).
pytestmark = pytest.mark.hfm_requires(IN_PROCESS)


def _record(hfm_measure, measure, mode: str) -> tuple[memory.Series, dict[str, memory.Verdict]]:
    """Measure (re-measured once when it flags a leak: memory.confirmed) and record the judged series."""
    series, found, first = memory.confirmed(measure)
    if first is not None:
        hfm_measure(**{f"{mode}_rss_first_series": first})
    values = {f"{mode}_{counter}": v.as_dict() for counter, v in found.items()}
    values[f"{mode}_footprint_bytes"] = {k: int(memory.median(v)) for k, v in series.footprint.items()}
    values[f"{mode}_rss_growth_per_cycle"] = found["rss"].growth_per_cycle
    values[f"{mode}_rss_bound_per_cycle"] = found["rss"].bound
    values[f"{mode}_cycles"] = len(series.measured["rss"])
    values[f"{mode}_seconds"] = round(series.seconds, 2)
    values[f"{mode}_threads"] = series.threads
    hfm_measure(**values)
    return series, found


def test_memory_load_cycles(hfm_case, hfm_model_dir, hfm_intact_session, hfm_measure):
    """load -> run -> release, LOAD_WARMUP + LOAD_CYCLES times: nothing accumulates per cycle."""
    device = hfm_intact_session.device_ops
    cycle = memory.load_cycle(lambda: load_session(hfm_case, hfm_model_dir, fresh=True), example(hfm_case.spec, hfm_model_dir), device)
    series, found = _record(hfm_measure, lambda: memory.run_cycles(
        cycle, memory.LOAD_WARMUP, memory.LOAD_CYCLES, device, hfm_case.target.backend), "load")
    start = series.start.get("device")
    returned, readings = memory.device_returned(series, start)
    hfm_measure(load_device_start=start, load_device_readings=readings)
    assert returned, f"device memory not back to its starting value {start} after release: {readings}"
    if found["rss"].leaked:
        raise memory.MemoryGrowth("RSS grows per load -> release cycle", found["rss"])


def test_memory_inference_loop(hfm_case, hfm_model_dir, hfm_intact_session, hfm_measure):
    """The same inputs LOOP_INFERENCES times per cycle, LOOP_WARMUP + LOOP_CYCLES cycles."""
    device = hfm_intact_session.device_ops
    cycle = memory.loop_cycle(hfm_intact_session, example(hfm_case.spec, hfm_model_dir), memory.LOOP_INFERENCES)
    series, found = _record(hfm_measure, lambda: memory.run_cycles(
        cycle, memory.LOOP_WARMUP, memory.LOOP_CYCLES, device, hfm_case.target.backend), "loop")
    warm = series.warmup.get("device", [None])[-1]
    returned, readings = memory.device_returned(series, warm)
    hfm_measure(loop_inferences_per_cycle=memory.LOOP_INFERENCES, loop_device_readings=readings)
    assert returned, f"device memory after each inference cycle should stay at {warm}: {readings}"
    if found["rss"].leaked:
        raise memory.MemoryGrowth("RSS grows per inference cycle", found["rss"])
