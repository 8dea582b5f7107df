"""Crash and hang isolation: one model's native crash or hang never kills or stalls the run.

Three layers, each for what the one before cannot handle:

1. pytest-timeout, method ``signal`` (noxfile passes ``--timeout``): SIGALRM raises inside the test,
   the test fails with "Timeout (>Ns) from pytest-timeout", the worker lives on, the record says
   ``timeout``. Covers hangs that return to the interpreter now and then (sleeps, waits on
   sockets/subprocesses, Python loops).
2. A native watchdog (this module): ``faulthandler.dump_traceback_later(exit=True)`` runs in a C
   thread that needs no GIL, so it also fires when the test is stuck inside native code that holds
   the GIL (a deadlocked mutex in an extension, a spinning kernel), where SIGALRM's Python handler
   never gets to run. It fires at ``--hfm-hard-timeout`` (default 2 x timeout + 10 s), writes every
   thread's stack into the worker's watchdog file and ``_exit``s the worker.
3. pytest-xdist replaces the dead worker (``--max-worker-restart``) and reports the test it was
   running with ``when="???"``; the controller reads the dead worker's watchdog file to tell a
   hang (``timeout``) from a crash (``crashed``: faulthandler's "Fatal Python error: Segmentation
   fault" plus the stacks) and puts that evidence into the record and the terminal report.
4. The scheduler: xdist 3.8's loadscope/loadgroup put the test a worker died on back on the queue
   (pytest-xdist#1371), so a deterministic crash re-runs on every replacement until
   ``--max-worker-restart`` is spent and the rest of that model's tests never run; they also
   re-queue the dead worker's finished groups as empty units, which can deadlock the end of the
   run (#1378), and hand a replacement a single test it cannot start (#1327). ``Controller``
   supplies the same scheduler with those three spots fixed (``_CrashSafeScopes``).

Each worker writes ``<dir>/<worker id>.log``: first line the node id of the running test, then
whatever faulthandler dumps. The controller owns ``<dir>`` and hands it to workers through
``workerinput`` and removes it at the end. Without xdist there is no isolation (a crash ends the
run, meta stays ``complete: false``) and no watchdog dir: pytest's own faulthandler prints a crash's
trace to the terminal, and the watchdog still ends a hung run, its stacks on the terminal too.
Nothing is left behind in the temp dir either way.
"""
from __future__ import annotations

import faulthandler
import os
import shutil
import tempfile
from pathlib import Path

import pytest

WORKERINPUT_KEY = "hfm_watchdog_dir"
TIMEOUT_HEAD = "Timeout ("          # faulthandler's first line when dump_traceback_later fires
FATAL_HEAD = "Fatal Python error:"  # faulthandler's first line on SIGSEGV / SIGABRT / SIGBUS / SIGFPE / SIGILL


def hard_timeout(config: pytest.Config, soft: float | None) -> float | None:
    """Seconds before the native watchdog kills a stuck worker; None = no watchdog."""
    explicit = config.getoption("--hfm-hard-timeout", None)
    if explicit is not None:
        return float(explicit) if float(explicit) > 0 else None
    if soft:
        return 2.0 * float(soft) + 10.0  # leave SIGALRM time to work first and the test time to unwind
    return None


def worker_id(config: pytest.Config) -> str:
    return getattr(config, "workerinput", {}).get("workerid", "main")


class Controller:
    """Registered in the writing process: owns the watchdog dir, passes it to xdist workers."""

    def __init__(self, directory: Path | None = None):
        self.own = directory is None
        self.dir = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="hfmatrix-watchdog-"))

    @pytest.hookimpl(optionalhook=True, tryfirst=True)
    def pytest_xdist_make_scheduler(self, config, log):
        return crash_safe_scheduler(config, log)

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node) -> None:  # xdist: before a worker (or its replacement) starts
        node.workerinput[WORKERINPUT_KEY] = str(self.dir)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report) -> None:
        """A dead xdist worker's test: what killed it (its watchdog file), into the report that the
        terminal shows and the record keeps."""
        if report.when != "???":
            return
        gateway = getattr(getattr(report, "node", None), "gateway", None)
        detail = self.crash_detail(getattr(gateway, "id", ""), report.nodeid)
        if detail:
            report.hfm_crash_kind, dump = detail
            head = str(report.longrepr)
            if detail[0] == "timeout":
                head = (f"hard timeout: worker {getattr(gateway, 'id', '?')} was stuck where SIGALRM could not "
                        f"interrupt it (native code); the watchdog dumped its stacks and killed it")
            report.longrepr = f"{head}\n{dump}" if dump else head
        report.user_properties.append(("hfm_worker", getattr(gateway, "id", "")))

    def crash_detail(self, worker: str, nodeid: str) -> tuple[str, str] | None:
        """('timeout' | 'crashed', faulthandler text) if the dead worker's file is about nodeid."""
        try:
            text = (self.dir / f"{worker}.log").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
        head, _, body = text.partition("\n")
        if head.strip() != nodeid:
            return None
        body = body.strip()
        return ("timeout" if body.startswith(TIMEOUT_HEAD) else "crashed"), summarize(body)

    def not_run(self, session, recorded: set[str]) -> list[str]:
        """Node ids that were collected for running but never got a record."""
        sched = getattr(session.config.pluginmanager.getplugin("dsession"), "sched", None)
        collection = getattr(sched, "collection", None)
        if collection is None:
            collection = [item.nodeid for item in session.items]
        return [nodeid for nodeid in collection if nodeid not in recorded]

    def pytest_unconfigure(self, config) -> None:
        if self.own:
            shutil.rmtree(self.dir, ignore_errors=True)


def summarize(dump: str, max_frames: int = 15) -> str:
    """faulthandler's dump cut to what a record needs: its first line ("Fatal Python error:
    Segmentation fault" / "Timeout (0:00:16)!") and the test thread's own frames (most recent first,
    down to the first pytest/pluggy frame); the other threads (execnet's) are dropped."""
    if not dump:
        return ""
    lines = dump.splitlines()
    first = lines[0].strip()
    blocks, current = [], []
    for line in lines[1:]:
        if line.startswith(("Thread 0x", "Current thread 0x")):
            current = [line]
            blocks.append(current)
        elif current and line.startswith("  File "):
            current.append(line)
    test_blocks = [b for b in blocks if any("_pytest/runner.py" in f for f in b)] or blocks[:1]
    out = [first]
    for block in test_blocks[:1]:
        out.append(block[0])
        frames = []
        for frame in block[1:]:
            if "/_pytest/" in frame or "/pluggy/" in frame:
                break
            frames.append(frame)
        out += frames[:max_frames]
    return "\n".join(out)


class Watchdog:
    """Registered in every process that runs tests (xdist workers, or plain pytest).

    An xdist worker writes into the controller's dir (the controller reads a dead worker's file and
    puts it in the record and on the terminal). Plain pytest (directory None) leaves fatal signals to
    pytest's faulthandler, which prints to the terminal, and points the hang timer at the terminal too."""

    def __init__(self, config: pytest.Config, directory: Path | None):
        self.config = config
        self.path = directory / f"{worker_id(config)}.log" if directory is not None else None
        self.fh = None
        self.terminal_fd: int | None = None
        self.armed = False
        # pytest's own faulthandler_timeout uses the same single faulthandler timer: do not fight it
        self.disabled = bool(float(config.getini("faulthandler_timeout") or 0))

    def pytest_sessionstart(self, session) -> None:
        if self.path is None:  # capture is suspended here: fd 2 is the terminal
            self.terminal_fd = os.dup(2)
            return
        # after pytest's faulthandler plugin enabled itself on stderr: fatal signals now dump here
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(self.path, "w", encoding="utf-8")  # kept open for the process lifetime
        faulthandler.enable(file=self.fh, all_threads=True)

    def pytest_unconfigure(self, config) -> None:
        self._disarm()
        if self.terminal_fd is not None:
            os.close(self.terminal_fd)
            self.terminal_fd = None

    @pytest.hookimpl(hookwrapper=True, tryfirst=True)
    def pytest_runtest_protocol(self, item, nextitem):
        if self.fh is not None:
            # no fsync: the page cache outlives a crashed process (only a machine crash loses it),
            # and an fsync per test cost ~7 ms, more than the plugin's whole 5 ms budget
            self.fh.seek(0)
            self.fh.truncate()
            self.fh.write(item.nodeid + "\n")
            self.fh.flush()
        explicit = self.config.getoption("--hfm-hard-timeout", None)
        if explicit and not self.disabled:  # without pytest-timeout: the watchdog alone (_arm: file or terminal)
            self._arm(float(explicit))
        try:
            yield
        finally:
            self._disarm()

    @pytest.hookimpl(hookwrapper=True, optionalhook=True)
    def pytest_timeout_set_timer(self, item, settings):
        # pytest-timeout arms its (soft) timer; the native watchdog goes off later if that cannot act
        if not self.armed and not self.disabled:
            seconds = hard_timeout(self.config, getattr(settings, "timeout", None))
            if seconds:
                self._arm(seconds)
        yield

    def _arm(self, seconds: float) -> None:
        target = self.fh if self.fh is not None else self.terminal_fd
        if target is None:
            return
        faulthandler.dump_traceback_later(seconds, repeat=False, file=target, exit=True)
        self.armed = True

    def _disarm(self) -> None:
        if self.armed:
            faulthandler.cancel_dump_traceback_later()
            self.armed = False


def install(config: pytest.Config, controller: Controller | None) -> None:
    """Register the watchdog in a test-running process: an xdist worker writes into its controller's
    dir; plain pytest (no controller: xdist off) writes to the terminal."""
    directory = None
    if hasattr(config, "workerinput"):
        given = config.workerinput.get(WORKERINPUT_KEY)
        directory = Path(given) if given else None
    elif controller is not None:
        directory = controller.dir
    config.pluginmanager.register(Watchdog(config, directory), "hfmatrix-watchdog")


def distributed(config: pytest.Config) -> bool:
    """This pytest process is an xdist controller (-n N with N > 0)."""
    return config.getoption("dist", "no") != "no"


class _CrashSafeScopes:
    """Mixin over xdist's LoadScopeScheduling / LoadGroupScheduling (3.8): crash handling fixed."""

    def remove_node(self, node):
        workload = self.assigned_work.pop(node)
        if not self._pending_of(workload):
            return None
        crashitem = next(nodeid for unit in workload.values() for nodeid, done in unit.items() if not done)
        for unit in workload.values():
            if crashitem in unit:
                unit[crashitem] = True  # reported as crashed already: never run it again (#1371)
        for scope, unit in workload.items():
            if not all(unit.values()):  # only unfinished groups go back on the queue (#1378)
                self.workqueue[scope] = unit
        for other in self.assigned_work:
            self._reschedule(other)
        return crashitem

    def _reschedule(self, node) -> None:
        if node.shutting_down:
            return
        if not self.workqueue:
            node.shutdown()
            return
        if self._pending_of(self.assigned_work[node]) > 2:
            return
        self._assign_work_unit(node)
        # a worker starts an item only once it knows the next one: give it two (#1327)
        while self.workqueue and self._pending_of(self.assigned_work[node]) < 2:
            self._assign_work_unit(node)


def crash_safe_scheduler(config, log):
    """The crash-safe loadgroup/loadscope scheduler, or None (xdist picks its own) for other modes
    or an xdist whose scheduler internals differ from the ones this was written against."""
    dist = config.getvalue("dist")
    try:
        from xdist.scheduler import LoadGroupScheduling, LoadScopeScheduling
    except ImportError:
        return None
    base = {"loadgroup": LoadGroupScheduling, "loadscope": LoadScopeScheduling}.get(dist)
    needed = ("assigned_work", "workqueue", "_pending_of", "_assign_work_unit")
    if base is None or not all(hasattr(base, a) for a in needed[2:]):
        return None
    scheduler = type(f"CrashSafe{base.__name__}", (_CrashSafeScopes, base), {})(config, log)
    return scheduler if all(hasattr(scheduler, a) for a in needed) else None
