"""The landing view: the curated zoo's models (rows, grouped by architecture class) × one column per
backend target (backend · device · precision that ran), one status glyph per cell plus its worst
error as a share of the tolerance. Columns whose every record skipped hardware-absent fold into one
line naming the missing hardware. The auto-zoo and models given with --hfm-models stay out of it."""
from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib  # type: ignore

from hfmatrix import skips

from ..autozoo_report import CHECK_PREFIX as AUTOZOO_PREFIX
from .merge import BAD, OUT_INDEX, OUTCOMES, Matrix

ZOO = Path(__file__).resolve().parents[1] / "zoo" / "models.toml"
GLYPH = {"bad": "✗", "ok": "✓", "xf": "⚑", "sk": "○"}
STATUS_WORDS = {"bad": "did not pass", "ok": "passed", "xf": "known bug only (strict xfail)", "sk": "skipped only"}


def curated(path: Path | None = None) -> list[tuple[str, str]]:
    """(arch_class, model id) for every [[model]] of the curated zoo, in file order."""
    with open(path or ZOO, "rb") as fh:
        return [(str(m.get("arch_class", "")), str(m["id"])) for m in tomllib.load(fh).get("model", [])]


@dataclass
class Target:
    backend: str
    device: str
    precision: str
    sessions: set = field(default_factory=set)
    full: set = field(default_factory=set)        # Matrix.columns indices merged into this target
    software: bool = False
    n: int = 0
    absent: int = 0                               # records skipped hardware-absent
    absent_reasons: Counter = field(default_factory=Counter)

    def label(self) -> str:
        dev = f"{self.device} (SOFTWARE)" if self.software else self.device
        return " · ".join(x for x in (self.backend, dev, self.precision) if x)


def status(counts: list[int]) -> str:
    if any(counts[OUT_INDEX[o]] for o in BAD):
        return "bad"
    if counts[OUT_INDEX["passed"]]:
        return "ok"
    return "xf" if counts[OUT_INDEX["xfailed"]] else "sk"


def _worse(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return a if a != a or (b == b and a >= b) else b     # NaN stays the worst


def build(m: Matrix, zoo: Path | None = None) -> dict[str, Any]:
    """{"rows": [[class, model, full row or -1]], "cols": [...], "cells": [[ri, ci, status, counts..., frac, err]],
    "absent": [{"hardware", "sessions", "reason"}]} over the curated models' records."""
    rows = _grouped(curated(zoo))
    row_of = {model: i for i, (_, model) in enumerate(rows)}
    full_row = {model: r for r, (_, model) in enumerate(m.rows)}
    t = m.table
    targets: dict[tuple[str, str, str], Target] = {}
    cells: dict[tuple[int, tuple], list] = {}
    autozoo = {k for k, name in enumerate(m.checks) if name.startswith(AUTOZOO_PREFIX)}
    i_skip, n_out = OUT_INDEX["skipped"], len(OUTCOMES)
    for i in range(len(t) if t is not None else 0):
        model = m.rows[t.r[i]][1]
        if model not in row_of or t.k[i] in autozoo:
            continue
        col = m.columns[t.c[i]]
        session, backend, device, precision = col.key
        key = (backend or session, device, precision)
        tg = targets.get(key) or targets.setdefault(key, Target(*key))
        tg.sessions.add(session)
        tg.full.add(t.c[i])
        tg.software |= col.software
        tg.n += 1
        if t.o[i] == i_skip and t.strings.table[t.sk[i]] == skips.HARDWARE_ABSENT:
            tg.absent += 1
            tg.absent_reasons[t.strings.table[t.msg[i]].splitlines()[0][:200] if t.msg[i] else ""] += 1
        c = cells.get((row_of[model], key))
        if c is None:
            c = cells[(row_of[model], key)] = [0] * n_out + [None, None]
        c[t.o[i]] += 1
        c[n_out] = _worse(c[n_out], t.frac[i])
        c[n_out + 1] = _worse(c[n_out + 1], t.err[i])
    shown = sorted((k for k, tg in targets.items() if tg.absent < tg.n), key=lambda k: k)
    absent = [targets[k] for k in sorted(targets) if targets[k].absent == targets[k].n]
    col_index = {k: j for j, k in enumerate(shown)}
    return {
        "rows": [[klass, model, full_row.get(model, -1)] for klass, model in rows],
        "cols": [{"label": targets[k].label(), "backend": k[0], "device": k[1], "precision": k[2],
                  "sessions": sorted(targets[k].sessions), "full": sorted(targets[k].full),
                  "software": targets[k].software,
                  "incomplete": any(not m.sessions[x].complete for x in targets[k].sessions)} for k in shown],
        "cells": [[ri, col_index[k], status(v[:n_out]), *v[:n_out], v[n_out], v[n_out + 1]]
                  for (ri, k), v in sorted(cells.items(), key=lambda kv: (kv[0][0], kv[0][1]))
                  if k in col_index],
        "absent": _absent_lines(absent),
    }


def _grouped(rows: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Rows grouped by architecture class, classes in order of first appearance, file order inside."""
    order = {klass: i for i, (klass, _) in reversed(list(enumerate(rows)))}
    return sorted(rows, key=lambda r: order[r[0]])


def _absent_lines(absent: list[Target]) -> list[dict[str, Any]]:
    by_hw: dict[str, dict[str, Any]] = {}
    for tg in absent:
        e = by_hw.setdefault(tg.device or tg.backend, {"hardware": tg.device or tg.backend, "sessions": set(),
                                                       "targets": [], "reason": Counter()})
        e["sessions"] |= tg.sessions
        e["targets"].append(tg.label())
        e["reason"].update(tg.absent_reasons)
    return [{"hardware": e["hardware"], "sessions": sorted(e["sessions"]), "targets": e["targets"],
             "reason": e["reason"].most_common(1)[0][0] if e["reason"] else ""} for e in by_hw.values()]


def frac_text(frac: float | str | None) -> str:
    """A worst error as a share of its tolerance: '3%' inside it, '4.2×' over it."""
    if frac is None:
        return ""
    if isinstance(frac, str) or frac != frac:
        return "NaN"
    if frac == float("inf"):
        return "∞×"
    if frac >= 1:
        return f"{frac:.0f}×" if frac >= 10 else f"{frac:.2g}×"
    return "<1%" if 0 < frac < 0.01 else f"{frac * 100:.0f}%"
