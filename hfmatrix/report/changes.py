"""What changed since a previous run: cells (model × column × check) that went pass→fail or
fail→pass, new skips, and worst errors that grew beyond 2×. The previous run is its matrix.json
(a CI artifact, or the last local report's, kept as results/previous/matrix.json)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from .merge import BAD, Matrix

GROWTH = 2.0          # worst max |Δ| growing beyond this factor is listed
KEEP = Path("previous") / "matrix.json"


def _status(counts: dict[str, int]) -> str:
    if any(counts.get(o) for o in BAD):
        return "fail"
    if counts.get("passed"):
        return "pass"
    return "xfail" if counts.get("xfailed") else "skip"


def cells_of_doc(doc: dict[str, Any]) -> dict[tuple[str, str, str], tuple[str, float | None]]:
    """(model, column label, check) -> (status, worst max |Δ|) from a matrix.json document."""
    rows, cols, checks = doc.get("rows") or [], doc.get("columns") or [], doc.get("checks") or []
    out = {}
    for c in doc.get("cells") or []:
        try:
            chk = c["check"] if isinstance(c["check"], str) else checks[c["check"]]   # matrix.json names it
            key = (rows[c["row"]]["model"], cols[c["col"]]["label"], chk)
        except (IndexError, KeyError, TypeError):
            continue
        err = c.get("worst_max_abs_err")
        out[key] = (_status(c.get("counts") or {}), float(err) if isinstance(err, (int, float, str)) and err != "" else None)
    return out


def cells_of_matrix(m: Matrix) -> dict[tuple[str, str, str], tuple[str, float | None]]:
    return {(m.rows[r][1], m.columns[c].label(), m.checks[k]): (_status(v.by_outcome()), v.worst)
            for (r, c, k), v in m.agg.items()}


def diff(previous: dict, current: dict) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {"pass_to_fail": [], "fail_to_pass": [], "new_skips": [], "error_growth": []}
    for key in sorted(current):
        now, err = current[key]
        if key not in previous:
            continue
        before, err0 = previous[key]
        entry = {"model": key[0], "column": key[1], "check": key[2], "before": before, "now": now}
        if now == "fail" and before != "fail":
            out["pass_to_fail"].append(entry)
        elif before == "fail" and now != "fail":
            out["fail_to_pass"].append(entry)
        elif now == "skip" and before != "skip":
            out["new_skips"].append(entry)
        if err is not None and err0 is not None and err == err and err0 == err0 and err > GROWTH * err0 and err > 0:
            out["error_growth"].append({**entry, "err_before": err0, "err_now": err,
                                        "ratio": err / err0 if err0 else float("inf")})
    out["new_cells"] = len(set(current) - set(previous))       # type: ignore[assignment]
    out["gone_cells"] = len(set(previous) - set(current))      # type: ignore[assignment]
    return out


def previous_path(results: Path, given: Path | None) -> Path | None:
    """--previous when given; else keep the last report's matrix.json as results/previous/matrix.json."""
    if given is not None:
        return given
    last, kept = results / "matrix.json", results / KEEP
    if last.exists():
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(last, kept)
    return kept if kept.exists() else None


def compare(m: Matrix, path: Path | None) -> dict[str, Any] | None:
    """None when there is no previous run; {"error": ...} when it cannot be read."""
    if path is None:
        return None
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return {"source": str(path), "error": f"unreadable previous matrix.json: {exc}"}
    result = diff(cells_of_doc(doc), cells_of_matrix(m))
    return {"source": str(path), "previous_generated": doc.get("generated"), **result}


def any_change(ch: dict[str, Any] | None) -> bool:
    return bool(ch) and any(ch.get(k) for k in ("pass_to_fail", "fail_to_pass", "new_skips", "error_growth"))
