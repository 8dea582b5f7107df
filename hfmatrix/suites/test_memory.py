"""Memory-leak checks: repeated load -> run -> release cycles, and a long inference loop.

Process RSS must not grow per cycle beyond a bound the readings themselves give (warm-up noise,
counter resolution, one loaded model's footprint for load cycles: see hfmatrix/memory.py), and on
an accelerator the allocated device memory must come back to its starting value byte for byte.
The malloc heap counter is recorded alongside as a finer diagnostic; the verdict is on RSS.
"""
from __future__ import annotations

import pytest

from hfmatrix import memory
from hfmatrix.plugin import load_session
from hfmatrix.zoo import example

# In-process backends only: the web backend runs the model in a browser process, whose memory this
# process's RSS does not see (a leak there would pass unnoticed, so the check is not claimed).
pytestmark = pytest.mark.hfm_backends("torch", "onnxruntime", "openvino", "qnn")


def _record(hfm_measure, series: memory.Series, mode: str) -> dict[str, memory.Verdict]:
    found = memory.verdicts(series)
    values = {f"{mode}_{counter}": v.as_dict() for counter, v in found.items()}
    values[f"{mode}_footprint_bytes"] = {k: int(memory.median(v)) for k, v in series.footprint.items()}
    values[f"{mode}_rss_growth_per_cycle"] = found["rss"].growth_per_cycle
    values[f"{mode}_rss_bound_per_cycle"] = found["rss"].bound
    values[f"{mode}_cycles"] = len(series.measured["rss"])
    values[f"{mode}_seconds"] = round(series.seconds, 2)
    values[f"{mode}_threads"] = series.threads
    hfm_measure(**values)
    return found


def test_memory_load_cycles(hfm_case, hfm_model_dir, hfm_intact_session, hfm_measure):
    """load -> run -> release, LOAD_WARMUP + LOAD_CYCLES times: nothing accumulates per cycle."""
    device = hfm_case.target.device
    cycle = memory.load_cycle(lambda: load_session(hfm_case, hfm_model_dir, fresh=True), example(hfm_case.spec, hfm_model_dir), device)
    series = memory.run_cycles(cycle, memory.LOAD_WARMUP, memory.LOAD_CYCLES, device,
                               hfm_case.target.backend)
    found = _record(hfm_measure, series, "load")
    start = series.start.get("device")
    returned, readings = memory.device_returned(series, start)
    hfm_measure(load_device_start=start, load_device_readings=readings)
    assert returned, f"device memory not back to its starting value {start} after release: {readings}"
    assert not found["rss"].leaked, f"RSS grows per load -> release cycle: {found['rss'].message()}"


def test_memory_inference_loop(hfm_case, hfm_model_dir, hfm_intact_session, hfm_measure):
    """The same inputs LOOP_INFERENCES times per cycle, LOOP_WARMUP + LOOP_CYCLES cycles."""
    device = hfm_case.target.device
    cycle = memory.loop_cycle(hfm_intact_session, example(hfm_case.spec, hfm_model_dir), memory.LOOP_INFERENCES)
    series = memory.run_cycles(cycle, memory.LOOP_WARMUP, memory.LOOP_CYCLES, device,
                               hfm_case.target.backend)
    found = _record(hfm_measure, series, "loop")
    warm = series.warmup.get("device", [None])[-1]
    returned, readings = memory.device_returned(series, warm)
    hfm_measure(loop_inferences_per_cycle=memory.LOOP_INFERENCES, loop_device_readings=readings)
    assert returned, f"device memory after each inference cycle should stay at {warm}: {readings}"
    assert not found["rss"].leaked, f"RSS grows per inference cycle: {found['rss'].message()}"
