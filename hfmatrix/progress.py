"""Progress with an ETA for the steps that take minutes: model builds (`hfmatrix zoo build|check`),
exports (hfmatrix.exports), whole runs and zoo sweeps (a pytest line every 30 s).

Shown on a terminal only: quiet under CI ($CI set, as GitHub Actions and most CI services set it) and
whenever the stream is not a TTY (a log file, pytest's captured output, an xdist worker).
"""
from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import contextmanager
from typing import Iterable, Iterator, TextIO, TypeVar

import pytest

T = TypeVar("T")
EVERY = 30.0  # seconds between a run's progress lines


def wanted(stream: TextIO | None = None) -> bool:
    if os.environ.get("CI"):
        return False
    stream = sys.stderr if stream is None else stream
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or fake stream
        return False


def bar(items: Iterable[T], *, desc: str, unit: str, total: int | None = None,
        stream: TextIO | None = None) -> Iterable[T]:
    """`items`, with a progress bar (count, rate, ETA) on stderr where wanted; `items` unchanged otherwise."""
    stream = sys.stderr if stream is None else stream
    if not wanted(stream):
        return items
    from tqdm import tqdm
    return tqdm(items, desc=desc, unit=unit, total=total, file=stream, dynamic_ncols=True)


def write(line: str) -> None:
    """A result line that does not tear a running bar (tqdm.write where a bar may be shown)."""
    if wanted():
        from tqdm import tqdm
        tqdm.write(line, file=sys.stdout)
    else:
        print(line, flush=True)


@contextmanager
def step(desc: str, expected: float | None, stream: TextIO | None = None) -> Iterator[None]:
    """One long opaque step (an export): elapsed seconds, and an ETA where a similar step's duration is
    known (`expected`); the bar stops just short of its end until the step really finishes."""
    stream = sys.stderr if stream is None else stream
    if not wanted(stream):
        yield
        return
    from tqdm import tqdm
    total = round(expected, 1) if expected else None
    stop = threading.Event()
    with tqdm(total=total, desc=desc, unit="s", file=stream, dynamic_ncols=True,
              bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed} elapsed, ~{remaining} left (typical {total}s)"
              if total else "{desc}: {elapsed} elapsed") as shown:
        def tick() -> None:
            t0 = time.monotonic()
            while not stop.wait(0.5):
                shown.n = min(time.monotonic() - t0, 0.99 * total) if total else time.monotonic() - t0
                shown.refresh()
        ticker = threading.Thread(target=tick, name="hfmatrix-progress", daemon=True)
        ticker.start()
        try:
            yield
        finally:
            stop.set()
            ticker.join()


def eta(done: int, total: int, elapsed: float) -> float | None:
    """Seconds left at the pace so far (None before the first test finished)."""
    return elapsed / done * (total - done) if done else None


def clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}h{m % 60:02d}m" if m >= 60 else f"{m}m{s:02d}s"


class RunProgress:
    """pytest plugin (the controller only): every EVERY seconds, after a test ends, one line with tests
    done of total, elapsed, the ETA at the pace so far, and the longest test still running (an export
    or a model build that takes minutes shows there)."""

    def __init__(self, config: pytest.Config, every: float | None = None, now=time.monotonic) -> None:
        self.config, self.every, self.now = config, EVERY if every is None else every, now
        self.total, self.done, self.running = 0, 0, {}
        self.start = self.last = now()

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, session, config, items) -> None:
        self.total = len(items)

    def pytest_xdist_node_collection_finished(self, node, ids) -> None:
        self.total = max(self.total, len(ids))

    def pytest_runtest_logstart(self, nodeid, location) -> None:
        self.running.setdefault(nodeid, self.now())

    def pytest_runtest_logfinish(self, nodeid, location) -> None:
        self.running.pop(nodeid, None)
        self.done += 1
        terminal = self.config.pluginmanager.get_plugin("terminalreporter")
        if self.now() - self.last >= self.every and self.total and terminal is not None:
            self.last = self.now()
            terminal.write_line(self.line())

    def line(self) -> str:
        now = self.now()
        left = eta(self.done, self.total, now - self.start)
        text = (f"hfmatrix: {self.done}/{self.total} tests in {clock(now - self.start)}, "
                f"ETA {clock(left) if left is not None else '?'}")
        if self.running:
            nodeid, since = min(self.running.items(), key=lambda kv: kv[1])
            text += f"; running longest: {nodeid} ({clock(now - since)})"
        return text
