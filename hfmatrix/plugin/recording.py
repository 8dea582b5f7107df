"""Recording: one JSON-lines record per test, written by the process that writes records (the xdist
controller, so a crashed worker's test still gets one, or pytest itself without xdist), flushed per
test; meta-<shard>.json says whether the run completed; the terminal summary. Verdict reuse
(hfmatrix/reuse.py) is hooked up here: a cell is keyed before it runs, a stored verdict stands in
for running it, and a computed verdict is stored under its key.
"""
from __future__ import annotations

import os
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest

from .. import isolation, reuse
from ..records import BAD_OUTCOMES, Record, RecordWriter, write_json_atomic
from .options import enabled
from .outcomes import classify
from .parametrization import parse_case_id, selection
from .properties import case_of, collect


@dataclass(frozen=True)
class RunInfo:
    """What this run is called and where its records go (``results`` None: --hfm-results-dir=none)."""
    session: str
    shard_tag: str
    run_id: str
    results: Path | None
    attempt: int


_RUN_INFO = pytest.StashKey[RunInfo]()


def run_info(config: pytest.Config) -> RunInfo:
    """This run's names, the same in every process of it (run_id: $HFMATRIX_RUN_ID, else per process)."""
    if _RUN_INFO not in config.stash:
        shard = selection(config).shard
        tag = f"{shard[0]}of{shard[1]}" if shard else "all"
        attempt = config.getoption("--hfm-attempt")
        if attempt:  # a re-run of failing cells (hfmatrix/rerun.py) keeps the first run's records
            tag += f".rerun{attempt}"
        session = config.getoption("--hfm-session-name") or config.getoption("--hfm-backend")
        rd = config.getoption("--hfm-results-dir") or "results"
        config.stash[_RUN_INFO] = RunInfo(session=session, shard_tag=tag, attempt=attempt,
                                          run_id=os.environ.get("HFMATRIX_RUN_ID") or uuid.uuid4().hex[:12],
                                          results=Path(rd).resolve() / session if rd != "none" else None)
    return config.stash[_RUN_INFO]


def writes_records(config: pytest.Config) -> bool:
    """The process that writes records: the xdist controller, or pytest itself without xdist."""
    return not hasattr(config, "workerinput") and config.getoption("--hfm-results-dir") != "none"


class Run:
    """The writing process's state: the open records file, the phase reports of running tests, counts."""

    def __init__(self, config: pytest.Config):
        info = run_info(config)
        self.config = config
        self.session, self.shard_tag, self.run_id = info.session, info.shard_tag, info.run_id
        self.results, self.attempt = info.results, info.attempt
        self.writer: RecordWriter | None = None
        self.phases: dict[str, list] = {}
        self.counts: Counter = Counter()
        self.skip_kinds: Counter = Counter()
        self.reuse: Counter = Counter()  # reused / computed cells (hfmatrix/reuse.py)
        self.started = time.time()
        self.isolation: isolation.Controller | None = None
        self.recorded: set[str] = set()

    def open_writer(self) -> None:
        if self.results is None:
            return
        self.results.mkdir(parents=True, exist_ok=True)
        path = self.results / f"records-{self.shard_tag}.jsonl"
        path.unlink(missing_ok=True)  # a rerun of this session/shard replaces its records, never adds to them
        self.writer = RecordWriter(path)
        self.write_meta(complete=False)

    def write_meta(self, complete: bool, exitstatus: int | None = None, **extra: Any) -> None:
        if self.results is None:
            return
        sel = selection(self.config)
        meta = {**extra,
            "session": self.session, "run_id": self.run_id, "shard": self.shard_tag, "backend": sel.backend,
            "device": sel.device, "precisions": sel.precisions(), "models": self.config.getoption("--hfm-models"),
            "started": self.started, "finished": time.time() if complete else None, "complete": complete,
            "exitstatus": exitstatus, "counts": dict(self.counts), "skip_kinds": dict(self.skip_kinds), "reuse": dict(self.reuse),
            "folded_precisions": sel.folded,
            "argv": list(self.config.invocation_params.args), "cwd": str(self.config.invocation_params.dir),
        }
        write_json_atomic(self.results / f"meta-{self.shard_tag}.json", meta)

    def finish(self, nodeid: str) -> None:
        """The record of one test, from its phase reports (or its stored verdict), written and counted."""
        reports = self.phases.pop(nodeid, None)
        if not reports:
            return
        got = collect(reports)
        reused = got[reuse.PROP_REUSED]
        if reused:  # a stored verdict: its outcome and message as first recorded
            outcome, message, kind = reused["outcome"], reused["message"], reused["skip_kind"]
        else:
            outcome, message, kind = classify(reports)
        record = self._record(nodeid, reports, got, outcome, message, kind)
        self.writer.write(record)
        self.recorded.add(nodeid)
        self.counts[outcome] += 1
        self.reuse["reused" if reused else "computed"] += 1
        if got[reuse.PROP_KEY] and not reused:
            reuse.save(got[reuse.PROP_KEY], asdict(record))
        if outcome == "skipped":
            self.skip_kinds[kind or "untyped"] += 1

    def _record(self, nodeid: str, reports: list, got: dict, outcome: str, message: str, kind: str | None) -> Record:
        props, reused = got["props"], got[reuse.PROP_REUSED]
        path, _, rest = nodeid.partition("::")
        func, _, param = rest.partition("[")
        param = param.rstrip("]")
        if not props and "@" in param:  # a crashed worker sends no properties: recover from the id
            props = parse_case_id(param)
            try:
                props["arch_class"] = selection(self.config).specs()[props["model"]].arch_class
            except Exception:
                pass
        return Record(
            run_id=self.run_id, session=self.session, nodeid=nodeid, check=func.split("::")[-1].removeprefix("test_"),
            outcome=outcome, suite=Path(path).stem, skip_kind=kind, message=_trim(message),
            measures=got["measures"], evidence=got["evidence"], versions=got["versions"],
            duration=sum(r.duration for r in reports), shard=self.shard_tag, worker=got["worker"],
            backend=props.get("backend", ""), device=props.get("device", ""), precision=props.get("precision", ""),
            effective_precision=props.get("effective_precision", ""),
            model=props.get("model", ""), arch_class=props.get("arch_class", ""), attempt=self.attempt,
            reused_from=reused.get("run_id", "") if reused else "",
        )


def _trim(message: str, limit: int = 4000) -> str:
    """The head (the assertion) and the tail (where it was raised) of a long message."""
    if len(message) <= limit:
        return message
    return f"{message[:limit // 4]}\n…\n{message[-(limit - limit // 4):]}"


class Recorder:
    """Registered only in the writing process (xdist controller or plain pytest)."""

    def __init__(self, run: Run):
        self.st = run

    @pytest.hookimpl(trylast=True)  # after isolation.Controller put a dead worker's dump into the report
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.st.phases.setdefault(report.nodeid, []).append(report)
        # teardown closes a test; xdist reports a crashed worker's test with when="???"
        if report.when not in ("setup", "call"):
            self.st.finish(report.nodeid)

    def pytest_sessionfinish(self, session, exitstatus) -> None:
        st = self.st
        for nodeid in list(st.phases):  # tests whose teardown never came back
            st.finish(nodeid)
        if st.writer is not None:
            st.writer.close()
        # a bad outcome pytest did not count as a failure (e.g. a crash record) still fails the run
        if session.exitstatus == 0 and any(st.counts[o] for o in BAD_OUTCOMES):
            session.exitstatus = 1
        # collected but never run (xdist gave up after --max-worker-restart, -x, ...): not a complete matrix
        not_run = st.isolation.not_run(session, st.recorded) if st.isolation is not None else []
        sel = selection(session.config)
        if not sel.folded and not session.config.getoption("collectonly"):  # under xdist only workers collected
            try:
                for spec in sel.specs().values():
                    sel.case_targets(spec)
            except Exception:  # noqa: BLE001 - the meta must still be written
                pass
        st.write_meta(complete=not not_run, exitstatus=int(session.exitstatus), not_run=not_run)

    def pytest_terminal_summary(self, terminalreporter, exitstatus, config) -> None:
        st, c = self.st, self.st.counts
        kinds = ", ".join(f"{k}: {v}" for k, v in sorted(st.skip_kinds.items())) or "none"
        terminalreporter.write_sep("=", f"hfmatrix session {st.session} ({st.shard_tag})")
        terminalreporter.write_line(
            f"hfmatrix: {c['passed']} passed, {c['failed']} failed, {c['skipped']} skipped ({kinds}), "
            f"{c['xfailed']} xfailed (known-bug), {c['xpassed']} xpassed, {c['error']} errors, "
            f"{c['crashed']} crashed, {c['timeout']} timed out")
        if st.reuse["reused"]:
            terminalreporter.write_line(f"hfmatrix: {st.reuse['reused']} verdicts reused from earlier runs (inputs "
                                        f"unchanged), {st.reuse['computed']} computed; --hfm-no-reuse recomputes")
        if st.writer is not None:
            terminalreporter.write_line(f"hfmatrix: records in {st.writer.path}")


# ----------------------------------------------------------------------------- verdict reuse
@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    """Look the cell's verdict up (hfmatrix/reuse.py) before any other wrapper starts a clock on it:
    pytest-timeout's timer covers the whole protocol, and computing a key is no part of the cell."""
    if enabled(item.config):
        reuse.prepare(item, case_of(item))
    return (yield)


@pytest.hookimpl(tryfirst=True, specname="pytest_runtest_protocol")
def pytest_runtest_protocol_reused(item, nextitem):  # a second impl of the hook (specname)
    """A cell whose stored verdict still holds reports it instead of running."""
    return reuse.run_reused(item, nextitem) if enabled(item.config) else None
