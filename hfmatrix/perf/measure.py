"""Measuring one callable honestly: pinned threads, device-aware timers, sampled peak RSS.

* ``run_timed(fn, ...)``: warm-up, then at least ``min_iters`` calls AND at least ``min_time``
  seconds; every call is one sample (seconds). The timer comes from ``timer_for(backend, device)``:
  wall clock (``perf_counter_ns``) with the device synchronized inside the timed region, or CUDA
  events on torch cuda/rocm (recorded around each call, read once after a final synchronize).
* ``RssSampler``: a daemon thread reading this process's RSS (psutil) every ``interval`` s; the
  peak is what the block needed at most, ``before`` what it started from. Keep it off timed calls
  that are compared: on 2 busy cores a sampler thread competing for the GIL added ~8% to MiniLM's
  p50 (the runner samples the warm-up calls instead; load and the single first call are sampled).
* ``pinned_threads(backend, n)``: sets the intra-op thread count where the backend lets us (the
  backend contract's ``pin_threads``: torch.set_num_threads) and exports HFMATRIX_THREADS for
  backends that read it at load time.
"""
from __future__ import annotations

import math
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..backends.base import WallTimer  # noqa: F401 - the contract's timer, used and re-exported here

THREADS_ENV = "HFMATRIX_THREADS"
#: no measurement keeps more samples than this (a microsecond callable and a long min_time)
MAX_SAMPLES = 100_000
PERCENTILES = (50, 90, 95, 99)


# ----------------------------------------------------------------------------- threads
def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS / Windows
        return os.cpu_count() or 1


def physical_cores() -> int | None:
    try:
        import psutil
        return psutil.cpu_count(logical=False)
    except Exception:  # psutil missing or no answer on this platform
        return None


def default_threads(usable: int | None = None, physical: int | None = None) -> int:
    """Physical cores we may use; on a small machine (≤ 4) one fewer, so the sampler, pytest and
    neighbours do not preempt an intra-op worker (oversubscribed threads on 2 shared cores turned
    0.7 ms calls into 68–200 ms tails)."""
    usable = usable or usable_cores()
    n = min(usable, physical or physical_cores() or usable)
    return max(1, n - 1) if n <= 4 else n


def resolve_threads(value: str | int | None) -> tuple[int, str]:
    """(thread count, where it came from) from an option value, HFMATRIX_THREADS, or the default."""
    text = str(value).strip() if value not in (None, "") else os.environ.get(THREADS_ENV, "").strip()
    source = "option" if value not in (None, "") else THREADS_ENV
    if text and text != "auto":
        n = int(text)
        if n < 1:
            raise ValueError(f"thread count must be >= 1, got {text!r}")
        return n, source
    return default_threads(), f"auto ({usable_cores()} usable cores)"


@contextmanager
def pinned_threads(backend: str, n: int) -> Iterator[dict[str, Any]]:
    """Pin intra-op threads for the block; yields what was really in force (read back)."""
    old_env = os.environ.get(THREADS_ENV)
    os.environ[THREADS_ENV] = str(n)
    from .. import backends
    pin = backends.get(backend).pin_threads  # None: the backend reads HFMATRIX_THREADS itself at load
    info: dict[str, Any] = {"requested": n}
    restore = None
    try:
        pinned = pin(n)
        if pinned is not None:
            _, restore, readback = pinned
            info.update(readback())
        else:
            info.update({"intra_op": None, "applied_by": f"{THREADS_ENV} (read by the {backend} backend at load)"})
        yield info
    finally:
        if restore is not None:
            restore()
        if old_env is None:
            os.environ.pop(THREADS_ENV, None)
        else:
            os.environ[THREADS_ENV] = old_env


# ----------------------------------------------------------------------------- tracers
@contextmanager
def coverage_paused() -> Iterator[bool]:
    """Stop every active coverage.py collector for the block (yields whether any was stopped).

    Coverage's tracer runs on every Python call, also in transformers' code: under it a MiniLM
    forward took about twice as long here. Benchmarks measure the code, not the tracer. (An xdist
    worker under pytest-cov has two nested collectors: all are stopped, then restarted in order.)"""
    import sys
    stopped = []
    if "coverage" in sys.modules:
        current = getattr(sys.modules["coverage"].Coverage, "current", None)
        for _ in range(8):
            cov = current() if current else None
            if cov is None:
                break
            cov.stop()
            stopped.append(cov)
    try:
        yield bool(stopped)
    finally:
        for cov in reversed(stopped):
            cov.start()


# ----------------------------------------------------------------------------- timers
def timer_for(backend: str, device: str) -> Callable[[], Any]:
    """Factory of a fresh timer for sessions of ``backend`` on ``device``: the device's own (the backend
    contract's DeviceOps.timer: CUDA events where torch drives CUDA, else wall clock synchronized inside
    the region). run() of every backend returns host numpy arrays, so a wall-clock sample covers the device work."""
    from .. import backends
    return backends.device_ops(backend, device).timer()


# ----------------------------------------------------------------------------- running
@dataclass
class Timed:
    samples: list[float]       # seconds per call
    wall: float                # seconds the timed loop took (loop control clock)
    warmup: int
    timer: str


def run_timed(fn: Callable[[], Any], *, warmup: int = 2, min_iters: int = 10, min_time: float = 0.2,
              make_timer: Callable[[], Any] = WallTimer, max_samples: int = MAX_SAMPLES) -> Timed:
    """Call fn warmup times untimed, then time calls until >= min_iters AND >= min_time seconds."""
    if min_iters < 1:
        raise ValueError("min_iters must be >= 1")
    for _ in range(warmup):
        fn()
    timer = make_timer()
    n = 0
    t0 = time.perf_counter()
    while n < max_samples and (n < min_iters or time.perf_counter() - t0 < min_time):
        timer.start()
        fn()
        timer.stop()
        n += 1
    wall = time.perf_counter() - t0
    return Timed(samples=timer.samples(), wall=wall, warmup=warmup, timer=timer.name)


def time_once(fn: Callable[[], Any], make_timer: Callable[[], Any] = WallTimer) -> tuple[Any, float]:
    timer = make_timer()
    timer.start()
    out = fn()
    timer.stop()
    return out, timer.samples()[0]


def summarize(values: Sequence[float], unit: str = "s") -> dict[str, Any]:
    """optimum-benchmark style latency block: unit, values, count, total, mean, stdev, min, max, pNN."""
    a = np.asarray(values, dtype=float)
    if a.size == 0:
        return {"unit": unit, "values": [], "count": 0}
    out: dict[str, Any] = {
        "unit": unit, "values": [float(x) for x in a], "count": int(a.size), "total": float(a.sum()),
        "mean": float(a.mean()), "stdev": float(a.std(ddof=1)) if a.size > 1 else 0.0,
        "min": float(a.min()), "max": float(a.max()),
    }
    for q, v in zip(PERCENTILES, np.percentile(a, PERCENTILES)):
        out[f"p{q}"] = float(v)
    out["stdev_pct"] = 100.0 * out["stdev"] / out["mean"] if out["mean"] else 0.0
    return out


def finite_positive(values: Sequence[float]) -> bool:
    return bool(values) and all(math.isfinite(v) and v > 0 for v in values)


# ----------------------------------------------------------------------------- memory
class RssSampler:
    """Peak resident set size of this process while the block runs, sampled in a daemon thread."""

    def __init__(self, interval: float = 0.005):
        self.interval = interval
        self.before = self.peak = self.after = 0
        self.n = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _rss(self) -> int:
        return self._proc.memory_info().rss

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            rss = self._rss()
            self.n += 1
            if rss > self.peak:
                self.peak = rss

    def __enter__(self) -> "RssSampler":
        import psutil
        self._proc = psutil.Process()
        self.before = self.peak = self._rss()
        self._thread = threading.Thread(target=self._loop, name="hfm-rss", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.after = self._rss()
        self.peak = max(self.peak, self.after)

    def as_dict(self) -> dict[str, Any]:
        mb = 1024 * 1024
        return {"unit": "MB", "max_ram": self.peak / mb, "ram_before": self.before / mb, "ram_after": self.after / mb,
                "ram_delta": (self.peak - self.before) / mb, "rss_samples": self.n, "rss_interval_s": self.interval}
