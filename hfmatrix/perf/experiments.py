"""Experiments that prove the harness: the gate on a synthetic workload, and harness fidelity.

Both interleave A and B inside one process (A B B A ...), so a burst of load from neighbours hits
both sides alike: on a shared machine, comparing runs taken minutes apart measures the neighbours.
Used by tests/test_perf.py and scripts/bench_gate.py / scripts/bench_fidelity.py.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from . import gate
from .measure import WallTimer, pinned_threads, run_timed


# ----------------------------------------------------------------------------- synthetic workload
_A = np.random.default_rng(0).standard_normal((32, 32))
_B = np.random.default_rng(1).standard_normal((32, 32))


def matmul_work(reps: int) -> float:
    """A fixed, deterministic CPU workload: reps small (single-threaded) matmuls."""
    acc = _A
    for _ in range(reps):
        acc = np.tanh(acc @ _B)
    return float(acc[0, 0])


def interleaved(fa: Callable[[], Any], fb: Callable[[], Any], n: int) -> tuple[list[float], list[float]]:
    """n timed calls of each, in A B B A order, so drift and bursts fall on both sides."""
    a, b = [], []
    for i in range(n):
        first, second = ((fa, a), (fb, b)) if i % 2 == 0 else ((fb, b), (fa, a))
        for fn, out in (first, second):
            t0 = time.perf_counter_ns()
            fn()
            out.append((time.perf_counter_ns() - t0) / 1e9)
    return a, b


@dataclass
class Trial:
    slowdown: float            # the extra work really added: slow_reps / reps - 1
    comparison: gate.Comparison


def gate_trial(slowdown: float, *, reps: int = 20, n: int = 60, warmup: int = 5,
               factor: float = gate.FACTOR, alpha: float = gate.ALPHA) -> Trial:
    """Baseline = matmul_work(reps); current = the same work × (1 + slowdown). Gate current vs baseline.

    Samples are kept short (~1 ms at reps=20): on a shared machine a sample longer than a scheduler
    slice is preempted more often than not, and the median then measures the neighbours."""
    slow = max(1, int(reps * (1.0 + slowdown) + 0.5))
    for _ in range(warmup):
        matmul_work(reps)
        matmul_work(slow)
    base, cur = interleaved(lambda: matmul_work(reps), lambda: matmul_work(slow), n)
    return Trial(slow / reps - 1.0, gate.compare(base, cur, factor, alpha))


# ----------------------------------------------------------------------------- fidelity
@dataclass
class Fidelity:
    harness: list[float]
    bare: list[float]
    threads: dict[str, Any]

    @property
    def ratio(self) -> float:
        return float(np.median(self.harness) / np.median(self.bare))


def fidelity(session, inputs: dict[str, np.ndarray], *, threads: int, rounds: int = 60, per_round: int = 2,
             warmup: int = 3) -> Fidelity:
    """Harness p50 (run_timed over Session.run, as hfmatrix/suites/test_perf.py times it: pinned threads, no
    sampler thread during the timed calls)
    against a bare ``model(**inputs)`` loop on the same torch model, in short alternating blocks
    (harness, bare, bare, harness, ...) within this process."""
    import torch
    model = session.module()  # the Session contract's torch module (TORCH_MODULE)
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in inputs.items()}
    harness: list[float] = []
    bare: list[float] = []

    def bare_block() -> None:
        with torch.inference_mode():
            for _ in range(per_round):
                t0 = time.perf_counter_ns()
                model(**tensors)
                bare.append((time.perf_counter_ns() - t0) / 1e9)

    def harness_block() -> None:
        timed = run_timed(lambda: session.run(inputs), warmup=0, min_iters=per_round, min_time=0.0,
                          make_timer=WallTimer)
        harness.extend(timed.samples)

    with pinned_threads(session.target.backend, threads) as info:
        for _ in range(warmup):
            session.run(inputs)
            with torch.inference_mode():
                model(**tensors)
        for r in range(rounds):
            for block in ((harness_block, bare_block) if r % 2 == 0 else (bare_block, harness_block)):
                block()
    return Fidelity(harness, bare, info)
