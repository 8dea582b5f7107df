"""Memory measurement for leak checks: process RSS, malloc heap in use, accelerator memory.

A leak check runs the same cycle many times (load -> run -> release, or one more inference),
settles the process after each cycle (gc, the device's empty_cache, glibc ``malloc_trim`` so
freed heap really goes back to the OS) and reads the counters. ``verdict`` then decides from the
readings alone, with no fixed byte threshold:

* warm-up cycles come first and are not judged: they hold one-time allocations (lazy imports,
  kernel caches, tokenizer caches);
* the growth per cycle is the Theil-Sen slope of the measured readings (median of pairwise
  slopes), which a one-off jump or an allocator flip-flopping between two states barely moves;
* the noise is the robust spread (1.4826 x MAD) of the readings about that line, and of the
  warm-up readings after the first about theirs; the larger one counts;
* the bound is three standard errors of the slope under that noise, and never less than the
  counter's resolution over the run: max(one quantum (a page for RSS, a malloc chunk for the heap),
  the cycle's footprint) / measured cycles. The footprint is measured in the warm-up: for
  load -> release cycles, what one loaded model holds (RSS loaded minus RSS released); a leak that
  adds up to less than one loaded model over the whole run is below what a load-cycle check can
  tell from the stack's own drift (transformers 5.24 + torch 2.13 keep ~0.1-1 KB of heap and
  1-8 KB of RSS per from_pretrained on this machine). The inference loop has no such footprint:
  its floor is the quantum, and it is the check that catches small per-inference leaks;
* a leak also has to persist: split the measured readings into quarters; each quarter's median
  must sit above the one before, and the last above the first by more than the noise. A one-off
  jump lifts at most two consecutive quarters, so it never passes. A leak is flagged only when
  the slope exceeds the bound and the growth persists.

Sensitivity (tiny zoo BERT, torch 2.13 CPU, this 2-core machine; planted, touched leaks). Re-measured
2026-12-05 after run_cycles froze the collector before the start reading and pinned the intra-op threads
(one on 2 cores), at load 13-15 (tests/test_memory_selftest.py's helpers, 4 inferences x 12 cycles):
* inference loop: >= 2 KiB per inference is caught every run (10 of 10; 4 KiB 10 of 10); 1 KiB 10 of
  12 and 512 B 6 of 8 (RSS moves in pages, so a sub-page leak per cycle plateaus between quarters);
  the clean model 0 of 12. (Before, with two threads and the collector unfrozen at the start: 2 and
  4 KiB 10 of 10, 1 KiB 8 of 12, 512 B 4 of 6, clean 0 of 12.) The byte-granular heap counter caught
  every planted leak from 512 B up with the clean BERT flat, but it also moves by a few hundred bytes
  per cycle on clean runs of some zoo models (interpreter and library caches), so it is recorded,
  not judged;
* load cycles: >= footprint / 4 per cycle (32 KiB of a ~120 KiB loaded BERT: 8 of 8; 16 KiB: 6 of 6,
  before 1 of 2); a whole model kept alive per load (~125-145 KiB per cycle here) 4 of 4; clean 0 of 8.
Untouched allocations (torch.empty never written) do not count: they are not resident.

Counters:
* ``rss``: resident set size (psutil), page granular; what the OS and an OOM killer see.
* ``heap``: bytes malloc has handed out and not had back (glibc ``mallinfo2``: uordblks +
  hblkhd). Byte granular, blind to Python's small-object arenas and to allocators that bypass
  malloc; None off glibc.
* ``device``: the accelerator's allocated bytes through the session's ``device_ops`` (the backend contract)
  (cuda/rocm ``memory_allocated``, mps ``current_allocated_memory``); None on cpu. Exact: after
  settling, a cycle that released everything returns it to the same byte count.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import math
import resource
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from .backends.base import DeviceOps

PAGE = resource.getpagesize()
MALLOC_QUANTUM = 2 * ctypes.sizeof(ctypes.c_size_t)  # glibc chunk alignment (16 on 64-bit)
Z = 3.0  # standard errors: P(false alarm) ~ 0.1% per counter for Gaussian noise


# ----------------------------------------------------------------------------------- counters
class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def _glibc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        return libc
    except (OSError, AttributeError):  # musl, macOS, Windows, glibc < 2.33
        return None


_LIBC = _glibc()


def rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def heap_in_use() -> int | None:
    if _LIBC is None:
        return None
    info = _LIBC.mallinfo2()
    return int(info.uordblks + info.hblkhd)


def device_allocated(device: DeviceOps | None) -> int | None:
    """Allocated device bytes through the session's device operations (the Session contract's
    ``device_ops``); None where the device has no counters (the host CPU, a browser, a server)."""
    return device.allocated() if device is not None else None


def settle(device: DeviceOps | None = None) -> None:
    """Free what can be freed before reading counters: cycles, device caches, trimmed heap."""
    gc.collect()
    gc.collect()
    if device is not None:
        device.synchronize()
        device.empty_cache()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def snapshot(device: DeviceOps | None = None) -> dict[str, int]:
    out = {"rss": rss()}
    heap = heap_in_use()
    if heap is not None:
        out["heap"] = heap
    dev = device_allocated(device)
    if dev is not None:
        out["device"] = dev
    return out


QUANTUM = {"rss": PAGE, "heap": MALLOC_QUANTUM, "device": 512}  # device: the caching allocator's block


# ----------------------------------------------------------------------------------- cycles
@dataclass
class Series:
    """Counter readings after each cycle: warm-up first, then the measured ones."""

    start: dict[str, int] = field(default_factory=dict)  # before the first cycle, settled
    footprint: dict[str, list[int]] = field(default_factory=dict)  # per warm-up cycle, when the cycle reports it
    warmup: dict[str, list[int]] = field(default_factory=dict)
    measured: dict[str, list[int]] = field(default_factory=dict)
    seconds: float = 0.0
    threads: dict[str, Any] = field(default_factory=dict)  # the intra-op threads in force (perf.measure)


def run_cycles(cycle: Callable[[], Any], warmup: int, measured: int, device: DeviceOps | None = None,
               backend: str | None = None) -> Series:
    """Run ``cycle`` warmup + measured times, settling and reading the counters after each.

    A cycle may return a snapshot() taken while its allocations were alive (e.g. with the model
    loaded); in warm-up, that minus the settled reading after it is the cycle's footprint.

    Cost, not sensitivity (the readings are the same counters after the same settling):

    * the collector: one full collection, then gc.freeze(), before the start reading, and a freeze
      again after the first cycle (right after its settle collected): everything alive then (the
      frameworks, the worker's earlier tests, the first cycle's one-time allocations) is out of the
      collector's reach, so every settle's collections scan only what the cycles since created. A
      full collection of a matrix worker's heap costs ~0.1-2 s on a busy 2-core machine, a frozen
      one a millisecond. Objects frozen are alive, not garbage: freezing frees nothing and keeps
      nothing alive; unfreeze() at the end hands them back to the collector.
    * the threads: the cycles run with the backend's intra-op threads pinned like perf's
      (``perf.measure.default_threads``: one fewer than the physical cores on <= 4 cores): two
      OpenMP threads on two shared cores made every op wait for a preempted peer (60 BERT inferences
      0.2 s pinned, 10-14 s unpinned at load 13). Recorded in ``Series.threads``.
    """
    import time

    from .perf.measure import default_threads, pinned_threads

    series = Series()
    start = time.perf_counter()
    gc.collect()
    gc.freeze()
    try:
        with (pinned_threads(backend, default_threads()) if backend else contextlib.nullcontext({})) as threads:
            series.threads = dict(threads)
            settle(device)
            series.start = snapshot(device)
            for i in range(warmup + measured):
                _one_cycle(series, cycle, i < warmup, device)
                if i == 0:
                    gc.freeze()  # settle() just collected: only live objects are frozen
    finally:
        gc.unfreeze()
    series.seconds = time.perf_counter() - start
    return series


def _one_cycle(series: Series, cycle: Callable[[], Any], warm: bool, device: DeviceOps | None) -> None:
    alive = cycle()
    settle(device)
    target = series.warmup if warm else series.measured
    for key, value in snapshot(device).items():
        target.setdefault(key, []).append(value)
        if warm and isinstance(alive, dict) and key in alive:
            series.footprint.setdefault(key, []).append(max(0, alive[key] - value))


# ----------------------------------------------------------------------------------- verdict
@dataclass
class Verdict:
    counter: str
    growth_per_cycle: float  # bytes, Theil-Sen slope of the measured readings
    bound: float             # bytes per cycle the growth must exceed to be a leak
    noise: float             # bytes, robust spread of the readings about their trend
    total_growth: float      # bytes, median of the last quarter minus median of the first quarter
    leaked: bool
    readings: list[int]

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("readings")
        return d

    def message(self) -> str:
        return (f"{self.counter}: grows {self.growth_per_cycle:,.0f} B/cycle (bound {self.bound:,.0f} B/cycle from "
                f"noise {self.noise:,.0f} B), {self.total_growth:,.0f} B over the measured cycles; "
                f"readings {self.readings}")


class MemoryGrowth(AssertionError):
    """A counter that grows per cycle beyond its bound, carrying the growth (bytes per cycle): a known bug
    names this type and the range of growth it measured (``growth_per_cycle``), so another failure fails."""

    def __init__(self, message: str, found: Verdict):
        super().__init__(f"{message}: {found.message()}")
        self.counter, self.growth_per_cycle, self.bound = found.counter, found.growth_per_cycle, found.bound


def median(values: list[float]) -> float:
    s = sorted(values)
    n = len(s)
    return float(s[n // 2]) if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2.0


def theil_sen(y: list[int]) -> tuple[float, float]:
    """(slope, intercept) of the Theil-Sen line through (i, y[i])."""
    slopes = [(y[j] - y[i]) / (j - i) for i in range(len(y)) for j in range(i + 1, len(y))]
    slope = median(slopes) if slopes else 0.0
    intercept = median([v - slope * i for i, v in enumerate(y)])
    return slope, intercept


def robust_noise(y: list[int]) -> float:
    """1.4826 x median absolute residual about the Theil-Sen line (= sigma for Gaussian noise)."""
    if len(y) < 3:
        return 0.0
    slope, intercept = theil_sen(y)
    residuals = [abs(v - (intercept + slope * i)) for i, v in enumerate(y)]
    return 1.4826 * median(residuals)


def verdict(counter: str, warmup: list[int], measured: list[int], quantum: int | None = None,
            footprint: list[int] | None = None) -> Verdict:
    n = len(measured)
    if n < 4:
        raise ValueError(f"{counter}: need at least 4 measured cycles, got {n}")
    quantum = quantum or QUANTUM.get(counter, 1)
    slope, _ = theil_sen(measured)
    noise = max(robust_noise(measured), robust_noise(warmup[1:]))
    sxx = n * (n * n - 1) / 12.0  # sum of (i - mean)^2 over 0..n-1
    resolution = max(quantum, median(footprint) if footprint else 0)
    bound = max(Z * noise / math.sqrt(sxx), resolution / n)
    size, extra = divmod(n, 4)
    quarters, at = [], 0
    for k in range(4):
        step = size + (1 if k < extra else 0)
        quarters.append(median(measured[at:at + step]))
        at += step
    persistent = all(b > a for a, b in zip(quarters, quarters[1:]))
    total = quarters[-1] - quarters[0]
    leaked = slope > bound and persistent and total > max(noise, quantum)
    return Verdict(counter, slope, bound, noise, total, leaked, list(measured))


def verdicts(series: Series) -> dict[str, Verdict]:
    return {k: verdict(k, series.warmup.get(k, []), v, footprint=series.footprint.get(k))
            for k, v in series.measured.items()}


def confirmed(measure: Callable[[], Series]) -> tuple[Series, dict[str, Verdict], dict[str, Any] | None]:
    """Run ``measure`` (a whole series); when its RSS verdict flags a leak, run it once more and judge
    the second series. A real leak grows on every series, so it is flagged again (the sizes caught 10 of 10
    in one series above stay caught; a size caught at rate p in one series is caught at ~p squared); a
    one-off step from another thread of the process (seen once, on a clean gpt2: RSS +4 pages in the
    first memory check of an xdist worker, not in four reruns) does not repeat, so a false alarm needs two. Returns the judged series, its verdicts and the
    first series' RSS verdict when it was re-measured (for the record), else None."""
    series = measure()
    found = verdicts(series)
    if not found["rss"].leaked:
        return series, found, None
    first = found["rss"].as_dict()
    series = measure()
    return series, verdicts(series), first


def load_cycle(load: Callable[[], Any], inputs: dict, device: DeviceOps | None = None) -> Callable[[], dict[str, int]]:
    """load -> run -> release; returns the snapshot taken while loaded (the cycle's footprint)."""
    def cycle() -> dict[str, int]:
        session = load()
        try:
            session.run(inputs)
            settle(device)
            return snapshot(device)
        finally:
            session.close()
            del session
    return cycle


def loop_cycle(session, inputs: dict, inferences: int) -> Callable[[], None]:
    def cycle() -> None:
        for _ in range(inferences):
            session.run(inputs)
    return cycle


def device_returned(series: Series, baseline: int | None) -> tuple[bool, list[int]]:
    """Accelerator memory after every measured cycle equals the baseline byte for byte."""
    readings = series.measured.get("device", [])
    return (baseline is None or all(r == baseline for r in readings)), readings


# cycle counts: cost knobs, not bounds (the bound comes from the readings). Load cycles cost a
# from_pretrained each (~0.3 s per tiny model on a quiet core); a loop cycle is a few inferences.
LOAD_WARMUP, LOAD_CYCLES = 3, 8  # 3: the first loads still grow the allocator (vit: +12 K, +20 K)
LOOP_WARMUP, LOOP_CYCLES, LOOP_INFERENCES = 3, 12, 4
