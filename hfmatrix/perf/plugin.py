"""Perf options, the ``hfm_perf_config`` fixture, exclusive measurement under xdist, bench JSON writing.

Registered by hfmatrix.plugin (``pytest_plugins``), so the options exist wherever hfmatrix does.

Exclusive measurement: under xdist every test holds a shared lock and a ``hfm_perf`` test an
exclusive one (fcntl.flock, with a turnstile so waiting perf tests are not starved), so a benchmark
never shares the cores with another test of the same run. Neighbouring processes of other runs
still can: that is what the baseline check's confirmation re-measure is for.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest

from . import gate
from .measure import THREADS_ENV, resolve_threads
from .runner import PerfConfig

MARK = "hfm_perf"
PROP_ENTRY = "hfm_bench"
PROP_COMPARISON = "hfm_bench_cmp"
_LOCK_KEY = "hfm_perf_lock"


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("hfmatrix-perf", "hfmatrix benchmarks (hfmatrix/suites/test_perf.py)")
    g.addoption("--hfm-perf-warmup", type=int, default=int(_env("HFMATRIX_PERF_WARMUP", "2")),
                help="untimed calls before sampling (env HFMATRIX_PERF_WARMUP, default 2)")
    g.addoption("--hfm-perf-iters", type=int, default=int(_env("HFMATRIX_PERF_ITERS", "10")),
                help="at least this many timed batch-1 calls (env HFMATRIX_PERF_ITERS, default 10)")
    g.addoption("--hfm-perf-min-time", type=float, default=float(_env("HFMATRIX_PERF_MIN_TIME", "0.2")),
                help="and at least this many seconds of timed calls (env HFMATRIX_PERF_MIN_TIME, default 0.2)")
    g.addoption("--hfm-perf-batch", type=int, default=int(_env("HFMATRIX_PERF_BATCH", "4")),
                help="the larger batch for throughput; 1 disables (env HFMATRIX_PERF_BATCH, default 4)")
    g.addoption("--hfm-perf-batch-iters", type=int, default=int(_env("HFMATRIX_PERF_BATCH_ITERS", "4")),
                help="at least this many timed calls at the larger batch (env HFMATRIX_PERF_BATCH_ITERS, default 4)")
    g.addoption("--hfm-perf-threads", default=_env(THREADS_ENV, "auto"),
                help=f"intra-op threads, pinned and recorded; 'auto' = physical cores, one fewer on machines "
                     f"with <= 4 (env {THREADS_ENV}, which other backends read too)")
    g.addoption("--hfm-perf-factor", type=float, default=float(_env("HFMATRIX_PERF_FACTOR", str(gate.FACTOR))),
                help=f"median ratio that counts as a change (env HFMATRIX_PERF_FACTOR, default {gate.FACTOR})")
    g.addoption("--hfm-perf-alpha", type=float, default=float(_env("HFMATRIX_PERF_ALPHA", str(gate.ALPHA))),
                help=f"Mann-Whitney p below which a change is significant (default {gate.ALPHA})")
    g.addoption("--hfm-perf-regression", choices=("fail", "warn"), default=_env("HFMATRIX_PERF_REGRESSION", "fail"),
                help="a confirmed regression fails the baseline check (default) or only warns")
    g.addoption("--hfm-perf-confirm", type=int, default=int(_env("HFMATRIX_PERF_CONFIRM", "1")),
                help="fresh re-measurements a flagged regression must survive (default 1; 0 = none)")
    g.addoption("--hfm-perf-max-load", type=float, default=float(_env("HFMATRIX_PERF_MAX_LOAD", "2.0")),
                help="a slowdown measured while the 1-min load average per usable core exceeded this is not "
                     "judged (verdict incomparable); 0 disables (default 2.0)")
    g.addoption("--hfm-perf-baselines", default=os.environ.get("HFMATRIX_BASELINES", ""),
                help="baselines folder (env HFMATRIX_BASELINES, default <rootdir>/baselines)")
    g.addoption("--hfm-perf-shared", action="store_true", default=_env("HFMATRIX_PERF_SHARED", "") == "1",
                help="do not give benchmarks the cores exclusively under xdist")


def pytest_configure(config: pytest.Config) -> None:
    from ..plugin import enabled
    if not enabled(config):  # the hfmatrix plugin is opt-in; so are its benchmarks
        return
    config.addinivalue_line("markers", f"{MARK}: a benchmark; runs alone under xdist (exclusive lock)")
    config.stash[_COLLECTOR] = _Collector(config)
    config.pluginmanager.register(config.stash[_COLLECTOR], "hfmatrix-perf-collector")
    from ..isolation import distributed
    if distributed(config) and not config.getoption("--hfm-perf-shared"):  # the xdist controller: workers share it
        config.stash[_LOCKDIR] = tempfile.mkdtemp(prefix="hfm-perf-lock-")


def config_from(config: pytest.Config) -> PerfConfig:
    threads, source = resolve_threads(config.getoption("--hfm-perf-threads"))
    base = config.getoption("--hfm-perf-baselines")
    return PerfConfig(
        warmup=config.getoption("--hfm-perf-warmup"), min_iters=config.getoption("--hfm-perf-iters"),
        min_time=config.getoption("--hfm-perf-min-time"), batch_size=config.getoption("--hfm-perf-batch"),
        batch_iters=config.getoption("--hfm-perf-batch-iters"), threads=threads, threads_source=source,
        factor=config.getoption("--hfm-perf-factor"), alpha=config.getoption("--hfm-perf-alpha"),
        on_regression=config.getoption("--hfm-perf-regression"), confirm=config.getoption("--hfm-perf-confirm"),
        max_load=config.getoption("--hfm-perf-max-load"),
        baselines_dir=Path(base).resolve() if base else Path(config.rootpath) / "baselines",
    )


@pytest.fixture(scope="session")
def hfm_perf_config(pytestconfig) -> PerfConfig:
    return config_from(pytestconfig)


def judge(request, name: str, cmp: dict[str, Any], fp: str, cfg: PerfConfig, measure) -> None:
    """The baseline check's verdict for one bench entry (test_perf_vs_baseline, test_serving_vs_baseline):
    the comparison into the bench JSON, its numbers into the record, then a typed skip when the gate
    could not decide, a failure (or a warning) on a confirmed regression."""
    import warnings

    from .. import skips
    request.node.user_properties.append((PROP_COMPARISON, {"name": name, "comparison": cmp}))
    verdict = cmp["verdict"]
    numbers = {"verdict": verdict, "fingerprint": fp}
    for metric, block in cmp.get("metrics", {}).items():
        fin = block["final"]
        numbers[f"{metric}_ratio"] = fin["ratio"]
        numbers[f"{metric}_p_value"] = fin["p_value"]
        scale, unit = (1.0, "") if block.get("unit") == "ratio" else (1e3, "_ms")  # calibrated: x calibration
        numbers[f"{metric}_baseline_p50{unit}"] = fin["baseline_median"] * scale if fin["baseline_median"] else None
        numbers[f"{metric}_p50{unit}"] = fin["current_median"] * scale if fin["current_median"] else None
        numbers[f"{metric}_verdict"] = block["verdict"]
    numbers["regression"] = verdict == gate.REGRESSION
    if cmp.get("undecided"):
        numbers["undecided"] = cmp["undecided"]
    measure(**numbers)
    if verdict in (gate.NO_BASELINE, gate.INCOMPARABLE, gate.INSUFFICIENT):
        # the gate could not decide: say why (the missing piece is a usable baseline for this machine)
        skips.skip(skips.NO_BASELINE, f"{verdict}: {cmp['reason']} (record one with `nox -s baseline`)")
    if verdict == gate.INCONCLUSIVE:  # measured, but too noisy or an unconfirmed alarm: not a pass
        skips.skip(skips.INCONCLUSIVE, f"{verdict}: {cmp['reason']}")
    regressions = [f"{k}: {b['summary']}" for k, b in cmp["metrics"].items() if b["verdict"] == gate.REGRESSION]
    if regressions:
        msg = f"{name} slower than baseline {cmp['baseline_file']}: " + " | ".join(regressions)
        if cfg.on_regression == "fail":
            pytest.fail(msg)
        warnings.warn(msg)


# ----------------------------------------------------------------------------- exclusive lock
_LOCKDIR = pytest.StashKey[str]()


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:  # xdist controller: tell each worker where the lock lives
    lockdir = node.config.stash.get(_LOCKDIR, None)
    if lockdir:
        node.workerinput[_LOCK_KEY] = lockdir


@contextmanager
def _flock(path: str, mode: int) -> Iterator[None]:
    import fcntl
    with open(path, "a+") as fh:
        fcntl.flock(fh, mode)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextmanager
def exclusive(lockdir: str, exclusive_: bool) -> Iterator[None]:
    """Readers-writer lock across worker processes; writers (benchmarks) are not starved."""
    import fcntl
    main, turnstile = os.path.join(lockdir, "main"), os.path.join(lockdir, "turnstile")
    if exclusive_:
        with _flock(turnstile, fcntl.LOCK_EX), _flock(main, fcntl.LOCK_EX):
            yield
    else:
        with open(main, "a+") as fh:
            with _flock(turnstile, fcntl.LOCK_EX):
                fcntl.flock(fh, fcntl.LOCK_SH)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    lockdir = getattr(item.config, "workerinput", {}).get(_LOCK_KEY)
    if not lockdir or os.name != "posix":
        yield
        return
    with exclusive(lockdir, item.get_closest_marker(MARK) is not None):
        yield


# ----------------------------------------------------------------------------- bench JSON
class _Collector:
    def __init__(self, config: pytest.Config):
        self.config = config
        self.entries: dict[str, dict[str, Any]] = {}
        self.comparisons: dict[str, dict[str, Any]] = {}
        self.path: Path | None = None

    def pytest_runtest_logreport(self, report) -> None:
        if report.when != "call":
            return
        for name, value in report.user_properties:
            if name == PROP_ENTRY:
                self.entries[value["name"]] = value
            elif name == PROP_COMPARISON:
                self.comparisons[value["name"]] = value["comparison"]

    def merged(self) -> list[dict[str, Any]]:
        from .bench import apply_comparison
        out = []
        for name, entry in self.entries.items():
            entry = dict(entry)
            if name in self.comparisons:
                apply_comparison(entry, self.comparisons[name])
            out.append(entry)
        return out


_COLLECTOR = pytest.StashKey[_Collector]()


def _writer_state(config):
    from ..plugin import run_info, writes_records
    return run_info(config) if writes_records(config) else None


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus) -> None:
    config = session.config
    lockdir = config.stash.get(_LOCKDIR, None)
    if lockdir:
        shutil.rmtree(lockdir, ignore_errors=True)
    col = config.stash.get(_COLLECTOR, None)
    if col is None or not col.entries:  # None: the plugin was not enabled
        return
    st = _writer_state(config)
    if st is None or st.results is None:
        return
    from . import bench
    from .baselines import fingerprint
    doc = bench.document(col.merged(), session=st.session, shard=st.shard_tag, run_id=st.run_id,
                         fingerprint=fingerprint())
    col.path = bench.write(st.results / f"bench-{st.shard_tag}.json", doc)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    col = config.stash.get(_COLLECTOR, None)
    if col is None or not col.entries:
        return
    entries = col.merged()
    verdicts: dict[str, int] = {}
    for e in entries:
        verdicts[e.get("status", "measured")] = verdicts.get(e.get("status", "measured"), 0) + 1
    tr = terminalreporter
    tr.write_sep("-", "hfmatrix perf")
    tr.write_line("perf: " + ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items())) + f" ({len(entries)} benchmarks)")
    for e in sorted(entries, key=lambda e: e["name"]):
        if e.get("status") in (gate.REGRESSION, gate.IMPROVEMENT):
            summaries = [f"{m}: {b['summary']}" for m, b in e["comparison"].get("metrics", {}).items()
                         if b["verdict"] in (gate.REGRESSION, gate.IMPROVEMENT)]
            tr.write_line(f"  {e['status'].upper()} {e['name']}: " + " | ".join(summaries))
    if col.path:
        tr.write_line(f"perf: bench JSON in {col.path}")
