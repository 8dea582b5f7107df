"""Result records: one JSON line per test, the only thing the report reads.

Layout: results/<session>/records-<shard>.jsonl (one writer per pytest run: the xdist controller),
results/<session>/meta-<shard>.json (run metadata; ``complete`` turns true only when the run ends
normally, so a killed run is visibly incomplete), results/<session>/hwprobe.json, junit.xml,
.coverage*. Records are appended and flushed per test.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

SCHEMA_VERSION = 1

OUTCOMES = ("passed", "failed", "skipped", "xfailed", "xpassed", "error", "crashed", "timeout")
# Outcomes that fail a run (plugin), the report and CI; "xpassed": a strict known bug started passing.
BAD_OUTCOMES = ("failed", "error", "crashed", "timeout", "xpassed")
# Outcomes a re-run of failing cells retries (an xpass is decided, not flaky).
RERUN_OUTCOMES = tuple(o for o in BAD_OUTCOMES if o != "xpassed")


@dataclass
class Record:
    run_id: str
    session: str
    nodeid: str
    check: str                      # test function name without "test_", e.g. "parity"
    outcome: str                    # one of OUTCOMES
    backend: str = ""
    device: str = ""
    precision: str = ""             # requested (e.g. "auto")
    effective_precision: str = ""   # what the backend computes with (hfmatrix.precision); verdicts use it
    model: str = ""
    arch_class: str = ""
    suite: str = ""                 # test module, e.g. "test_parity"
    skip_kind: str | None = None    # hfmatrix.skips kind for skipped / xfailed
    message: str = ""               # failure / skip reason, trimmed
    measures: dict[str, Any] = field(default_factory=dict)   # max_abs_err, tolerance, latency, memory...
    evidence: dict[str, Any] = field(default_factory=dict)   # where it really ran
    versions: dict[str, str] = field(default_factory=dict)
    duration: float = 0.0
    shard: str = "all"
    worker: str = ""
    attempt: int = 0                # 0: the run; k: the k-th re-run of a failing cell (hfmatrix/rerun.py)
    reused_from: str = ""           # a stored verdict (hfmatrix/reuse.py): the run_id that computed it
    timestamp: float = field(default_factory=time.time)
    schema: int = SCHEMA_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, default=_jsonable)


def _jsonable(value: Any) -> Any:
    try:
        import numpy as np
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            return value.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(value, (set, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    return repr(value)


class RecordWriter:
    """Appends records to one JSON-lines file, flushing every line (a killed run keeps what it had)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a", encoding="utf-8")

    def write(self, record: Record) -> None:
        self._fh.write(record.to_json() + "\n")
        self._fh.flush()

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()


class CorruptRecords(ValueError):
    """A results file that cannot be read whole; names the file and line."""


def selectable(nodeid: str) -> str:
    """The node id pytest selects by: xdist's --dist=loadgroup reports 'path::test[id]@group'."""
    path, sep, name = nodeid.rpartition("::")
    if "[" in name:
        return nodeid[:nodeid.rindex("]") + 1]
    return path + sep + name.split("@", 1)[0]


def read_records(path: Path, strict: bool = False) -> tuple[list[dict[str, Any]], list[str]]:
    """Read one records file. Returns (records, problems). A truncated last line (a run killed
    mid-write) or a corrupt line is reported in problems, not raised, unless strict."""
    records, problems = [], []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                if not isinstance(rec, dict) or "outcome" not in rec or "nodeid" not in rec:
                    raise ValueError("not a record (no outcome/nodeid)")
            except ValueError as exc:
                msg = f"{path}:{lineno}: unreadable record ({exc})"
                if strict:
                    raise CorruptRecords(msg) from None
                problems.append(msg)
                continue
            records.append(rec)
    return records, problems


def iter_session_dirs(results: Path) -> Iterator[Path]:
    for d in sorted(Path(results).iterdir()) if Path(results).is_dir() else ():
        if d.is_dir() and (any(d.glob("records-*.jsonl")) or any(d.glob("meta-*.json"))):
            yield d


def write_json_atomic(path: Path, data: Any) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=_jsonable), encoding="utf-8")
    os.replace(tmp, path)
