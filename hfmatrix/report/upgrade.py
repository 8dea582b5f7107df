"""What changes on upgrade: one backend target under two library versions, cell by cell.

A version-axis session (hfmatrix/axis.toml: ``cpu-4.57`` varies ``cpu``'s transformers) runs the same
suites on the same target, so its node ids equal its base session's. Pure functions of records (the
report env has no ML stack).
"""
from __future__ import annotations

from typing import Any, Iterable

from pathlib import Path

from ..provision import AXIS_FILE, variants  # noqa: F401  (the noxfile reads the same file)
from ..records import selectable

ERROR_RATIO = 2.0     # a measured error that grows or shrinks by more than this is a change


def _key(record: dict) -> str:
    return selectable(record.get("nodeid", ""))  # xdist's @group suffix is not part of the cell


def _error(record: dict) -> float | None:
    value = (record.get("measures") or {}).get("max_abs_err")
    return float(value) if isinstance(value, (int, float)) else None


def _changed(a: dict, b: dict) -> str:
    if a.get("outcome") != b.get("outcome"):
        return "outcome"
    ea, eb = _error(a), _error(b)
    if ea is None or eb is None:
        return ""
    lo, hi = sorted((ea, eb))
    if hi > 0 and (lo == 0 or hi / lo > ERROR_RATIO) and hi > 1e-7:  # below 1e-7: fp32 noise either way
        return "error"
    return ""


def versions_of(records: Iterable[dict]) -> dict[str, str]:
    for r in records:
        if r.get("versions"):
            return dict(r["versions"])
    return {}


def compare_sessions(before: list[dict], after: list[dict]) -> dict[str, Any]:
    """Cells whose outcome or measured error differs between the session before and after the upgrade."""
    a = {_key(r): r for r in before}
    b = {_key(r): r for r in after}
    rows = []
    for key in sorted(set(a) & set(b)):
        why = _changed(a[key], b[key])
        if why:
            ra, rb = a[key], b[key]
            rows.append({"nodeid": key, "model": ra.get("model", ""), "check": ra.get("check", ""),
                         "precision": ra.get("precision", ""), "change": why,
                         "before_outcome": ra.get("outcome"), "after_outcome": rb.get("outcome"),
                         "before_error": _error(ra), "after_error": _error(rb),
                         "after_message": (rb.get("message") or "")[:300] if why == "outcome" else ""})
    va, vb = versions_of(before), versions_of(after)
    return {"compared": len(set(a) & set(b)), "only_before": len(set(a) - set(b)), "only_after": len(set(b) - set(a)),
            "versions": {k: [va.get(k, ""), vb.get(k, "")] for k in sorted(set(va) | set(vb)) if va.get(k) != vb.get(k)},
            "changes": rows}


def upgrade_views(by_session: dict[str, list[dict]], path: Path | None = None) -> list[dict[str, Any]]:
    """One view per declared variant whose base and variant sessions both have records, from the older
    of the two to the newer (a variant says ``older = false`` when it is the newer one)."""
    views = []
    for v in variants(path):
        if v["name"] in by_session and v["base"] in by_session:
            before, after = (v["name"], v["base"]) if v.get("older", True) else (v["base"], v["name"])
            views.append({"before": before, "after": after, "axis": v["axis"],
                          **compare_sessions(by_session[before], by_session[after])})
    return views


def _cell(outcome: Any, err: float | None) -> str:
    return f"{outcome}" + (f" ({err:.3g})" if err is not None else "")


def _title(view: dict[str, Any]) -> str:
    libs = ", ".join(f"{k} {a or '–'} → {b or '–'}" for k, (a, b) in view["versions"].items())
    return f"What changes on upgrade: {view['before']} → {view['after']} ({libs or 'same versions'})"


def markdown(views: list[dict[str, Any]], limit: int = 40) -> list[str]:
    out = []
    for view in views:
        out += [f"### {_title(view)}", "",
                f"{view['compared']} cells in both, {len(view['changes'])} changed "
                f"({view['only_before']} only in {view['before']}, {view['only_after']} only in {view['after']}).", ""]
        if view["changes"]:
            out += ["| model | check | change | before | after |", "|---|---|---|---|---|"]
            out += [f"| {r['model']} | {r['check']} | {r['change']} | {_cell(r['before_outcome'], r['before_error'])} | "
                    f"{_cell(r['after_outcome'], r['after_error'])} |" for r in view["changes"][:limit]]
            if len(view["changes"]) > limit:
                out.append(f"| … | {len(view['changes']) - limit} more in matrix.json | | | |")
            out.append("")
    return out


def html(views: list[dict[str, Any]], limit: int = 200) -> str:
    from html import escape
    out = []
    for view in views:
        rows = "".join(f"<tr><td>{escape(r['model'])}</td><td>{escape(r['check'])}</td><td>{escape(r['change'])}</td>"
                       f"<td>{escape(_cell(r['before_outcome'], r['before_error']))}</td>"
                       f"<td>{escape(_cell(r['after_outcome'], r['after_error']))}</td></tr>" for r in view["changes"][:limit])
        out.append(f"<section class='upgrade'><h3>{escape(_title(view))}</h3><p>{view['compared']} cells in both, "
                   f"{len(view['changes'])} changed.</p><table><tr><th>model</th><th>check</th><th>change</th>"
                   f"<th>before</th><th>after</th></tr>{rows}</table></section>")
    return "".join(out)
