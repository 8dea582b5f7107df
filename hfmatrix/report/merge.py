"""Merge results/<dir>/ folders into one in-memory matrix.

A *session* is named by its records/meta (``session`` field), not by its folder: CI downloads each
shard's artifact into its own folder (results/cpu-2of4/), and every folder of one session merges
into it. A session is INCOMPLETE when a shard is missing, a shard has records but no meta, or a
meta says ``complete: false`` / has no finish time. Unreadable files never stop the merge: they
become ``problems`` naming the file, shown in every output.
"""
from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hfmatrix import records as rec_mod

from . import compact, lowpower, reruns, serving, upgrade
from ..autozoo_report import CHECK_PREFIX as AUTOZOO_PREFIX, slim as autozoo_slim
from .browser import costs_row as browser_costs

BAD = rec_mod.BAD_OUTCOMES  # outcomes that make the report (and CI) fail
OUTCOMES = rec_mod.OUTCOMES
OUT_INDEX = {o: i for i, o in enumerate(OUTCOMES)}
UNTYPED_SKIP = "untyped"          # a skip without a [kind]: shown as such, never hidden
PERF_CHECKS = ("perf", "latency", "benchmark", "throughput")
_SHARD = re.compile(r"^(\d+)of(\d+)$")
# meta keys that say when a run ended (the plugin writes one of them; the first found counts)
FINISH_KEYS = ("finished", "finish", "finished_at", "end", "ended", "end_time", "stop")


@dataclass
class Column:
    key: tuple[str, str, str, str]          # session, backend, device, precision
    software: bool = False                  # evidence says it ran on a software/fallback device

    @property
    def session(self) -> str:
        return self.key[0]

    def label(self) -> str:
        session, backend, device, precision = self.key
        dev = f"{device} (SOFTWARE)" if self.software else device
        parts = [p for p in (backend if backend != session else "", dev, precision) if p]
        return session + (" · " + " · ".join(parts) if parts else "")


@dataclass
class Session:
    name: str
    dirs: list[str] = field(default_factory=list)
    shards: dict[str, dict[str, Any]] = field(default_factory=dict)   # shard -> meta (or {})
    hwprobe: dict[str, Any] = field(default_factory=dict)            # dir -> hwprobe JSON
    junit: dict[str, dict[str, int]] = field(default_factory=dict)   # dir -> counts
    versions: Counter = field(default_factory=Counter)                # JSON of versions -> n
    counts: Counter = field(default_factory=Counter)                  # outcome -> n
    skip_kinds: Counter = field(default_factory=Counter)
    incomplete: list[str] = field(default_factory=list)               # reasons
    problems: list[str] = field(default_factory=list)
    n_records: int = 0
    n_reused: int = 0                                                 # records of stored verdicts (hfmatrix/reuse.py)

    @property
    def complete(self) -> bool:
        return not self.incomplete

    @property
    def n_bad(self) -> int:
        return sum(self.counts[o] for o in BAD)


@dataclass
class Matrix:
    results_dir: str
    sessions: dict[str, Session] = field(default_factory=dict)
    columns: list[Column] = field(default_factory=list)
    rows: list[tuple[str, str]] = field(default_factory=list)        # (arch_class, model), sorted
    checks: list[str] = field(default_factory=list)
    agg: dict[tuple[int, int, int], "Cell"] = field(default_factory=dict)   # (row, col, check) -> Cell
    table: "RecordTable | None" = None                              # every record, compact (see RecordTable)
    perf_records: list[tuple[int, int, dict]] = field(default_factory=list)   # (col, outcome, record)
    failures: list[dict[str, Any]] = field(default_factory=list)     # full records, BAD outcomes
    skips: dict[str, Counter] = field(default_factory=dict)          # kind -> Counter(reason)
    skip_sessions: dict[tuple[str, str], set] = field(default_factory=dict)   # (kind, reason) -> sessions
    perf: list[dict[str, Any]] = field(default_factory=list)         # bench entries (normalized)
    problems: list[str] = field(default_factory=list)                # corrupt files etc.
    corrupt: list[str] = field(default_factory=list)                 # files that could not be read whole
    junit_only: dict[str, dict[str, int]] = field(default_factory=dict)
    not_scheduled: list[dict[str, str]] = field(default_factory=list)   # from results/plan.json
    coverage: dict[str, Any] = field(default_factory=dict)
    autozoo: list[dict[str, Any]] = field(default_factory=list)      # auto-zoo records, slim (autozoo.slim)
    browser_costs: list[dict[str, Any]] = field(default_factory=list)  # per web parity record: costs, error
    low_power: list[dict[str, Any]] = field(default_factory=list)    # parity cells marked low_power (lowpower.py)
    landing: dict[str, Any] = field(default_factory=dict)            # curated models × targets (landing.build)
    changes: dict[str, Any] | None = None                            # vs a previous run (changes.compare)
    reruns: dict[str, dict[str, Any]] = field(default_factory=dict)  # session -> flaky / failed every time (reruns.py)
    upgrade: list[dict[str, Any]] = field(default_factory=list)      # version-axis views (upgrade.py)
    serving: dict[str, Any] = field(default_factory=dict)            # serving load figures + gate (serving.py)

    def totals(self) -> Counter:
        total = Counter()
        for s in self.sessions.values():
            total.update(s.counts)
        return total

    def skip_kind_totals(self) -> Counter:
        total = Counter()
        for s in self.sessions.values():
            total.update(s.skip_kinds)
        return total


def _shard_of(path: Path, prefix: str, suffix: str) -> str:
    return path.name[len(prefix):-len(suffix)] or "all"


def _load_json(path: Path, problems: list[str]) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8", errors="replace"))
    except (OSError, ValueError) as exc:
        problems.append(f"{path}: unreadable JSON ({exc})")
        return None


def _junit_counts(path: Path, problems: list[str]) -> dict[str, int] | None:
    """The first <testsuite>'s counters, read without parsing the whole file."""
    try:
        for _, elem in ET.iterparse(path, events=("start",)):
            if elem.tag == "testsuite":
                a = elem.attrib
                return {k: int(float(a.get(k, 0) or 0)) for k in ("tests", "failures", "errors", "skipped")}
        return None
    except (OSError, ET.ParseError, ValueError) as exc:
        problems.append(f"{path}: unreadable junit XML ({exc})")
        return None


def finished(meta: dict[str, Any]) -> bool:
    return any(meta.get(k) not in (None, "", 0) for k in FINISH_KEYS)


_SOFTWARE_WORDS = ("swiftshader", "llvmpipe", "lavapipe", "emulator", "emulated", "simulator")


def software_device(evidence: Any) -> bool:
    """True when evidence says the device is emulated in software (SwiftShader WebGPU, a fallback
    adapter, an emulator): such a column must never read as real accelerator hardware."""
    if not evidence:
        return False
    stack = [evidence]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            for k, x in v.items():
                kl = str(k).lower()
                if kl in ("isfallbackadapter", "is_fallback_adapter", "software", "is_software", "emulated") and x is True:
                    return True
                if kl == "software" and isinstance(x, str) and x:  # hfmatrix.placement names the stand-in
                    return True
                stack.append(x)
        elif isinstance(v, (list, tuple)):
            stack.extend(v)
        elif isinstance(v, str):
            low = v.lower()
            if any(word in low for word in _SOFTWARE_WORDS):
                return True
    return False


def _num(x: Any) -> float | None:
    if isinstance(x, bool) or x is None:
        return None
    if isinstance(x, (int, float)):
        return float(x)
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def discover(results: Path) -> tuple[list[Path], list[Path]]:
    """(session folders with records/meta, folders with only a junit.xml), anywhere under results/."""
    session_dirs, junit_dirs = set(), set()
    for pattern in ("records-*.jsonl", "meta-*.json"):
        session_dirs.update(p.parent for p in results.rglob(pattern) if "htmlcov" not in p.parts)
    for p in results.rglob("junit*.xml"):
        if p.parent not in session_dirs and p.parent != results:
            junit_dirs.add(p.parent)
    return sorted(session_dirs), sorted(junit_dirs)


def merge(results: Path) -> Matrix:
    results = Path(results)
    m = Matrix(results_dir=str(results))
    session_dirs, junit_dirs = discover(results)
    # session -> shard -> [dirs] (to spot the same shard twice)
    seen_shards: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    raw_rows: list[tuple] = []
    rerun_rows: dict[str, list[dict]] = {}
    for d in session_dirs:
        name, per_file = _read_session_dir(m, results, d, seen_shards)
        for sh, recs in per_file:
            if reruns.is_rerun(sh):  # re-runs of failing cells sort them (flaky or broken), never count
                rerun_rows.setdefault(name, []).extend(recs)
            else:
                raw_rows.append((name, sh, recs))
    _check_shards(m, seen_shards)
    _tally(m, raw_rows)
    _check_meta_counts(m, raw_rows)
    by_session: dict[str, list[dict]] = defaultdict(list)
    for name, _, recs in raw_rows:
        by_session[name].extend(recs)
    m.reruns = {name: reruns.classify(by_session[name], recs) for name, recs in rerun_rows.items()}
    m.upgrade = upgrade.upgrade_views(by_session)
    m.serving = serving.collect(by_session)
    junit_rel = {str(d.relative_to(results)) for d in junit_dirs}
    _check_plan(results, m, seen_shards, junit_rel)
    _check_junit(m, results, junit_dirs)
    _read_perf(results, m, session_dirs)
    return m


def _read_records_of(m: Matrix, d: Path) -> list[tuple[str, list[dict]]]:
    """(shard, records) per records file of one folder; unreadable lines become problems."""
    per_file: list[tuple[str, list[dict]]] = []
    for rp in sorted(d.glob("records-*.jsonl")):
        try:
            recs, probs = read_records(rp)
        except OSError as exc:
            recs, probs = [], [f"{rp}: unreadable ({exc})"]
        if probs:
            m.corrupt.append(str(rp))
            m.problems.extend(probs[:5])
            if len(probs) > 5:
                m.problems.append(f"{rp}: … and {len(probs) - 5} more unreadable lines")
        per_file.append((_shard_of(rp, "records-", ".jsonl"), recs))
    return per_file


def _read_session_dir(m: Matrix, results: Path, d: Path, seen_shards) -> tuple[str, list[tuple[str, list[dict]]]]:
    """One results folder: its session (named by meta, then records, then the folder), shards,
    hwprobe and junit; returns (session name, (shard, records) per records file)."""
    rel = str(d.relative_to(results)) if d != results else "."
    metas: dict[str, dict] = {}
    for mp in sorted(d.glob("meta-*.json")):
        meta = _load_json(mp, m.problems)
        if isinstance(meta, dict):
            metas[_shard_of(mp, "meta-", ".json")] = meta
        elif meta is not None:
            m.problems.append(f"{mp}: meta is not a JSON object")
    per_file = _read_records_of(m, d)
    name = next((str(mm["session"]) for mm in metas.values() if mm.get("session")), "")
    if not name:
        name = next((str(r["session"]) for _, rs in per_file for r in rs[:1] if r.get("session")), "")
    name = name or d.name
    s = m.sessions.setdefault(name, Session(name=name))
    s.dirs.append(rel)
    if (d / "hwprobe.json").exists():
        data = _load_json(d / "hwprobe.json", m.problems)
        if data is not None:
            s.hwprobe[rel] = data
    if (d / "junit.xml").exists():
        counts = _junit_counts(d / "junit.xml", m.problems)
        if counts:
            s.junit[rel] = counts
    s.problems.extend(p for p in m.problems if p.startswith(f"{d}/") and p not in s.problems)
    shards = {sh for sh in set(metas) | {sh for sh, _ in per_file} if not reruns.is_rerun(sh)}
    for sh in shards:
        seen_shards[name][sh].append(rel)
        meta = metas.get(sh)
        s.shards[sh] = meta or {}
        where = f"{rel}/meta-{sh}.json"
        if meta is None:
            s.incomplete.append(f"shard {sh}: records but no meta-{sh}.json (run killed before it started or files lost)")
        elif meta.get("complete") is False:
            s.incomplete.append(f"shard {sh}: {where} says complete=false")
        elif meta.get("complete") is not True and not finished(meta):
            s.incomplete.append(f"shard {sh}: {where} has no finish time")
    return name, per_file


def _check_shards(m: Matrix, seen_shards) -> None:
    """The same shard in two folders, shards that disagree on their count, missing shards."""
    for name, shards in seen_shards.items():
        s = m.sessions[name]
        for sh, dirs in shards.items():
            if len(dirs) > 1:
                msg = f"session {name}: shard {sh} found in several folders ({', '.join(dirs)}): counts include both"
                s.problems.append(msg)
                m.problems.append(msg)
        sharded = [_SHARD.match(sh) for sh in shards]
        totals = {int(x.group(2)) for x in sharded if x}
        if len(totals) > 1:
            s.incomplete.append(f"shards disagree on the shard count: {sorted(shards)}")
        for n in totals:
            have = {int(x.group(1)) for x in sharded if x and int(x.group(2)) == n}
            missing = [f"{i}of{n}" for i in range(1, n + 1) if i not in have]
            if missing:
                s.incomplete.append(f"missing shard(s) {', '.join(missing)} of {n}")
        if "all" in shards and totals:
            s.problems.append(f"session {name}: both an unsharded run and shards; counts include both")


def _check_junit(m: Matrix, results: Path, junit_dirs: list[Path]) -> None:
    """Folders with only a junit.xml (self-test jobs), and sessions whose junit and records disagree."""
    for d in junit_dirs:
        counts = _junit_counts(d / "junit.xml", m.problems) if (d / "junit.xml").exists() else None
        if counts:
            m.junit_only[str(d.relative_to(results))] = counts
    for s in m.sessions.values():
        jtests = sum(j["tests"] for j in s.junit.values())
        if s.junit and jtests != s.n_records and s.complete:
            s.problems.append(f"junit.xml lists {jtests} tests, records hold {s.n_records}")


def _check_meta_counts(m: Matrix, raw_rows: list[tuple[str, str, list[dict]]]) -> None:
    """A complete meta counts the tests it saw; fewer records than that means records were lost."""
    have: Counter = Counter()
    for name, sh, recs in raw_rows:
        have[(name, sh)] += len(recs)
    for s in m.sessions.values():
        for sh, meta in s.shards.items():
            counts = meta.get("counts") if isinstance(meta, dict) else None
            if meta.get("complete") is True and isinstance(counts, dict) and counts:
                want = sum(v for v in counts.values() if isinstance(v, int))
                if want != have[(s.name, sh)]:
                    msg = f"session {s.name} shard {sh}: meta counts {want} tests, records hold {have[(s.name, sh)]}"
                    s.problems.append(msg)
                    m.problems.append(msg)


def _check_plan(results: Path, m: Matrix, seen: dict[str, dict[str, list[str]]], junit_rel: set[str]) -> None:
    """results/plan.json (the CI plan, written by the report job): a planned job with no results
    marks its session INCOMPLETE, so a job that died before writing anything cannot vanish."""
    path = results / "plan.json"
    if not path.exists():
        return
    data = _load_json(path, m.problems)
    entries = data.get("include", []) if isinstance(data, dict) else data if isinstance(data, list) else []
    if isinstance(data, dict):
        m.not_scheduled = [n for n in data.get("not_scheduled", []) if isinstance(n, dict)]
    for e in entries:
        if not isinstance(e, dict) or not e.get("session"):
            continue
        name, tag = str(e["session"]), str(e.get("tag") or "all")
        if tag in seen.get(name, {}) or {str(e.get("artifact")), name} & junit_rel:
            continue
        s = m.sessions.setdefault(name, Session(name=name))
        s.incomplete.append(f"shard {tag}: planned in CI (job {e.get('name', name)}) but no results came back "
                            f"(the job died before writing any, or its artifact {e.get('artifact', '?')} is missing)")


def read_records(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """records.read_records, with a fast path: a whole clean file parses as one JSON array (orjson
    where installed). Anything odd (a truncated line, NaN, bad UTF-8) takes the line-by-line reader,
    which names each unreadable line."""
    data = path.read_bytes()
    body = b",".join(line for line in data.splitlines() if line.strip())
    for loads in _LOADERS:
        try:
            recs = loads(b"[" + body + b"]")
        except ValueError:
            continue
        if all(type(r) is dict and "outcome" in r and "nodeid" in r for r in recs):
            return recs, []
        break
    return rec_mod.read_records(path)


_LOADERS: tuple = (compact.orjson.loads, json.loads) if compact.orjson is not None else (json.loads,)

SOFTWARE_SAMPLE = 200   # evidence dicts inspected per column in full, then every 25th


@dataclass
class RecordTable:
    """Every record, column-oriented and compact (what the page embeds): indices into Matrix.rows /
    columns / checks / OUTCOMES, worst-error floats, and interned strings for the drill-down."""
    r: list[int] = field(default_factory=list)
    c: list[int] = field(default_factory=list)
    k: list[int] = field(default_factory=list)
    o: list[int] = field(default_factory=list)
    err: list = field(default_factory=list)       # max_abs_err as measured (float, NaN, or None)
    idp: list[int] = field(default_factory=list)  # nodeid = strings[idp] + strings[id]
    id: list[int] = field(default_factory=list)
    msg: list[int] = field(default_factory=list)
    tol: list[int] = field(default_factory=list)
    dur: list = field(default_factory=list)
    ev: list[int] = field(default_factory=list)
    ms: list[int] = field(default_factory=list)   # other measures, rounded
    sk: list[int] = field(default_factory=list)
    sh: list[int] = field(default_factory=list)
    frac: list = field(default_factory=list)      # worst |Δ| as a share of the tolerance (tol_fraction), or None
    strings: compact.Strings = field(default_factory=compact.Strings)

    def __len__(self) -> int:
        return len(self.o)

    def append(self, r: dict, *, row: int, col: int, chk: int, oi: int, err, tol_i: int, ms_i: int, frac,
               kind: str | None, sh_i: int) -> None:
        S = self.strings
        nodeid = r.get("nodeid") or ""
        cut = nodeid.find("[") + 1
        message = r.get("message")
        d = r.get("duration")
        ev = r.get("evidence")
        self.r.append(row)
        self.c.append(col)
        self.k.append(chk)
        self.o.append(oi)
        self.err.append(err)
        self.idp.append(S(nodeid[:cut]))
        self.id.append(S(nodeid[cut:]))
        self.msg.append(S(message[:MAX_MESSAGE]) if message else 0)
        self.tol.append(tol_i)
        self.dur.append(round(d, 3) if type(d) is float else d if type(d) is int else None)
        self.ev.append(S(compact.dumps(ev)) if ev else 0)
        self.ms.append(ms_i)
        self.sk.append(S(kind) if kind else 0)
        self.sh.append(sh_i)
        self.frac.append(frac)

    def remap(self, row_map: list[int], col_map: list[int], chk_map: list[int]) -> None:
        self.r = [row_map[x] for x in self.r]
        self.c = [col_map[x] for x in self.c]
        self.k = [chk_map[x] for x in self.k]


MAX_MESSAGE = 600


@dataclass
class Cell:
    """One (model, column, check) cell of the matrix: how many records ended in each outcome, and the
    worst max_abs_err among them (NaN, once seen, stays the worst)."""
    counts: list[int] = field(default_factory=lambda: [0] * len(OUTCOMES))
    worst: float | None = None

    def add(self, outcome_index: int, err: float | None) -> None:
        self.counts[outcome_index] += 1
        if err is not None:
            w = self.worst
            if w is None or (w == w and (err > w or err != err)):
                self.worst = err

    def by_outcome(self) -> dict[str, int]:
        return {o: n for o, n in zip(OUTCOMES, self.counts) if n}


class _Index:
    """Provisional indices in order of first appearance; sorted and remapped once all records are in."""

    def __init__(self):
        self.ids: dict[Any, int] = {}

    def __call__(self, key) -> int:
        i = self.ids.get(key)
        if i is None:
            i = self.ids[key] = len(self.ids)
        return i

    def sorted(self) -> tuple[list, list[int]]:
        """(keys in sorted order, old index -> new index)."""
        keys = sorted(self.ids, key=lambda k: tuple(map(str, k)) if isinstance(k, tuple) else str(k))
        remap = [0] * len(keys)
        for new, k in enumerate(keys):
            remap[self.ids[k]] = new
        return keys, remap


class _Tally:
    """One pass over all records: counts, cells, skips, failures and the record table."""

    def __init__(self, m: Matrix):
        self.m = m
        self.cols, self.rows, self.checks = _Index(), _Index(), _Index()
        self.col_soft: list[bool] = []
        self.col_seen: list[int] = []
        self.cells: dict[tuple[int, int, int], Cell] = {}
        self.skips: dict[str, Counter] = defaultdict(Counter)
        self.skip_where: dict[tuple[str, str], set] = {}
        self.versions_seen: dict[str, Counter] = defaultdict(Counter)
        self.failures: list[tuple[int, str, str, dict]] = []
        self.perf: list[tuple[int, int, dict]] = []
        self.table = m.table = RecordTable()
        self.S = self.table.strings

    def session(self, name: str, sh: str, recs: list[dict]) -> None:
        s = self.m.sessions[name]
        self._last_v = self._last_vkey = None
        sh_i = self.S(sh)
        for r in recs:
            self.record(s, r, sh, sh_i)
        s.n_records += len(recs)
        s.n_reused += sum(1 for r in recs if r.get("reused_from"))

    def record(self, s: Session, r: dict, sh: str, sh_i: int) -> None:
        g = r.get
        col = self._column(s.name, r)
        row = self.rows((g("arch_class") or "(unclassified)", g("model") or "(no model)"))
        cname = g("check") or "?"
        if cname.startswith(AUTOZOO_PREFIX):
            self.m.autozoo.append(autozoo_slim(r))
        elif cname == "parity" and type(g("evidence")) is dict and "costs" in g("evidence"):
            self.m.browser_costs.append(browser_costs(s.name, r))
        if cname == "parity" and (low := lowpower.row(s.name, r)):
            self.m.low_power.append(low)
        chk = self.checks(cname)
        outcome, oi = self._outcome(s.name, r)
        s.counts[outcome] += 1
        err, tol_i, ms_i, frac = self._measures(r, cname, col, oi)
        cell = self.cells.get((row, col, chk))
        if cell is None:
            cell = self.cells[(row, col, chk)] = Cell()
        cell.add(oi, err)
        kind = self._skip(s, r) if oi == _I_SKIPPED else None
        self._versions(s.name, g("versions"))
        if outcome in _BAD_SET:
            self.failures.append((col, s.name, sh, r))
        self.table.append(r, row=row, col=col, chk=chk, oi=oi, err=err, tol_i=tol_i, ms_i=ms_i, frac=frac,
                          kind=kind, sh_i=sh_i)

    def _column(self, session: str, r: dict) -> int:
        g = r.get
        # the precision that really ran ("auto" on OpenVINO is bf16 or f32 by CPU): one column each
        col = self.cols((session, g("backend") or "", g("device") or "", g("effective_precision") or g("precision") or ""))
        if col == len(self.col_soft):
            self.col_soft.append(False)
            self.col_seen.append(0)
        ev = g("evidence")
        if ev and not self.col_soft[col]:
            self.col_seen[col] += 1
            n = self.col_seen[col]
            if (n <= SOFTWARE_SAMPLE or n % 25 == 0) and software_device(ev):
                self.col_soft[col] = True
        return col

    def _outcome(self, session: str, r: dict) -> tuple[str, int]:
        outcome = r.get("outcome")
        oi = OUT_INDEX.get(outcome)
        if oi is None:
            msg = f"session {session}: unknown outcome {outcome!r} in {r.get('nodeid')} (counted as error)"
            if msg not in self.m.problems:
                self.m.problems.append(msg)
            return "error", OUT_INDEX["error"]
        return outcome, oi

    def _measures(self, r: dict, cname: str, col: int, oi: int) -> tuple[float | None, int, int, float | None]:
        """(max_abs_err, tolerance string, other measures string, tol_fraction) of one record."""
        measures = r.get("measures")
        if not measures or type(measures) is not dict:
            if cname in PERF_CHECKS:
                self.perf.append((col, oi, r))
            return None, 0, 0, None
        e, tol = measures.get("max_abs_err"), measures.get("tolerance")
        err = _num(e) if e is not None else None
        tol_i = self.S(compact.dumps(tol)) if tol is not None else 0
        ms_i = 0
        if len(measures) > (e is not None) + (tol is not None):
            rest = compact.round_measures(measures)
            rest.pop("tolerance", None)
            rest.pop("max_abs_err", None)
            ms_i = self.S(compact.dumps(rest))
        if "regression" in measures or cname in PERF_CHECKS:
            self.perf.append((col, oi, r))
        return err, tol_i, ms_i, _num(measures.get("tol_fraction"))

    def _skip(self, s: Session, r: dict) -> str:
        kind = r.get("skip_kind") or UNTYPED_SKIP
        s.skip_kinds[kind] += 1
        reason = _reason(r.get("message") or "")
        self.skips[kind][reason] += 1
        self.skip_where.setdefault((kind, reason), set()).add(s.name)
        return kind

    def _versions(self, session: str, v: Any) -> None:
        if not v:
            return
        if v != self._last_v:   # consecutive records almost always share their versions
            self._last_v = v
            try:
                self._last_vkey = tuple(sorted(v.items()))
            except (TypeError, AttributeError):
                self._last_vkey = (("versions", json.dumps(v, sort_keys=True, default=str)),)
        self.versions_seen[session][self._last_vkey] += 1

    def finish(self) -> None:
        """Sort columns, rows and checks, then remap the provisional indices."""
        m = self.m
        col_keys, col_map = self.cols.sorted()
        m.columns = [Column(key=tuple(map(str, k)), software=self.col_soft[self.cols.ids[k]]) for k in col_keys]
        row_keys, row_map = self.rows.sorted()
        m.rows = [tuple(map(str, k)) for k in row_keys]
        chk_keys, chk_map = self.checks.sorted()
        m.checks = [str(k) for k in chk_keys]
        m.agg = {(row_map[r], col_map[c], chk_map[k]): v for (r, c, k), v in self.cells.items()}
        self.table.remap(row_map, col_map, chk_map)
        m.failures = [{"session": name, "shard": sh, "column": m.columns[col_map[c]].label(), **r}
                      for c, name, sh, r in self.failures]
        m.perf_records = [(col_map[c], oi, r) for c, oi, r in self.perf]
        for name, c in self.versions_seen.items():
            m.sessions[name].versions = Counter({json.dumps(dict(k), sort_keys=True, default=str): n for k, n in c.items()})
        m.skips = dict(sorted(self.skips.items()))
        m.skip_sessions = self.skip_where


_I_SKIPPED = OUT_INDEX["skipped"]
_BAD_SET = frozenset(BAD)


def _tally(m: Matrix, raw_rows: list[tuple[str, str, list[dict]]]) -> None:
    tally = _Tally(m)
    for name, sh, recs in raw_rows:
        tally.session(name, sh, recs)
    tally.finish()


def _reason(message: str) -> str:
    text = message.strip()
    if text.startswith("Skipped: "):
        text = text[len("Skipped: "):]
    if text.startswith("[") and "]" in text:
        text = text[text.index("]") + 1:].strip()
    return text.splitlines()[0][:200] if text else "(no reason given)"


# --- perf ---------------------------------------------------------------------------------------
# results/<session>/bench-<shard>.json is defined by hfmatrix.perf.bench (schema "hfmatrix-bench/1":
# {"session", "benchmarks": [{model, backend, device, precision, metric, p50_ms, status, regression,
# baseline_ms, ratio, threshold, report: {forward: {latency: {values: [seconds...]}}}}]}). The reader
# stays forgiving (other lists/keys, perf records) so a schema change degrades, never crashes.
# Perf records (checks "perf", "perf_vs_baseline") stand in only for sessions without bench files.
_VALUE_KEYS = ("p50_ms", "forward_p50_ms", "median_ms", "mean_ms", "value")
_BASE_KEYS = ("baseline_ms", "forward_baseline_p50_ms", "baseline_median_ms", "baseline")
_RATIO_KEYS = ("ratio", "forward_ratio")
_SAMPLE_KEYS = ("samples_ms", "samples", "times_ms")


def _read_perf(results: Path, m: Matrix, session_dirs: list[Path]) -> None:
    with_bench: set[str] = set()
    for d in session_dirs + sorted({p.parent for p in results.rglob("bench*.json")} - set(session_dirs)):
        for bp in sorted(d.glob("bench*.json")):
            data = _load_json(bp, m.problems)
            if data is None:
                continue
            entries = data
            if isinstance(data, dict):
                entries = next((data[k] for k in ("benchmarks", "results", "entries") if isinstance(data.get(k), list)), [data])
            if not isinstance(entries, list):
                m.problems.append(f"{bp}: no list of benchmarks")
                continue
            session = str(data.get("session")) if isinstance(data, dict) and data.get("session") else d.name
            for e in entries:
                if isinstance(e, dict):
                    entry = _perf_entry(e, session, str(bp.relative_to(results)))
                    with_bench.add(entry["session"])
                    m.perf.append(entry)
    for col, out, r in m.perf_records:
        session = m.columns[col].session
        if session in with_bench:
            continue
        measures = r.get("measures") if isinstance(r.get("measures"), dict) else {}
        m.perf.append(_perf_entry({**measures, "model": r.get("model"), "backend": r.get("backend"),
                                   "device": r.get("device"), "precision": r.get("precision"),
                                   "metric": r.get("check"), "outcome": OUTCOMES[out]},
                                  session, "records"))


def _first(e: dict[str, Any], keys: tuple[str, ...]) -> float | None:
    return next((v for v in (_num(e.get(k)) for k in keys) if v is not None), None)


def _perf_entry(e: dict[str, Any], session: str, source: str) -> dict[str, Any]:
    value, base = _first(e, _VALUE_KEYS), _first(e, _BASE_KEYS)
    ratio = _first(e, _RATIO_KEYS)
    if ratio is None and value is not None and base:
        ratio = value / base
    samples = next((e[k] for k in _SAMPLE_KEYS if isinstance(e.get(k), list)), None)
    if samples is None:   # hfmatrix-bench/1: raw forward latencies in seconds
        try:
            samples = [v * 1e3 for v in e["report"]["forward"]["latency"]["values"]]
        except (KeyError, TypeError):
            samples = None
    status = str(e.get("status") or e.get("verdict") or "").lower()
    regression = e.get("regression") is True or status in ("regression", "regressed")
    return {
        "session": str(e.get("session") or session), "source": source,
        "model": str(e.get("model") or ""), "backend": str(e.get("backend") or ""),
        "device": str(e.get("device") or ""), "precision": str(e.get("precision") or ""),
        "metric": str(e.get("metric") or e.get("name") or "latency"), "unit": "ms",
        "value": value, "baseline": base, "ratio": ratio, "regression": bool(regression),
        "status": status, "threshold": _num(e.get("threshold")),
        "samples": [x for x in (_num(v) for v in samples or []) if x is not None][:2000],
    }
