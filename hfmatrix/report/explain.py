"""What a failure says about itself, for every output (page, Markdown): the assertion, what was
compared, the tolerance and where it came from, the evidence and the command that reruns it."""
from __future__ import annotations

import json
import shlex
from typing import Any

from ..records import selectable
from . import compact

MAX_IDS = 24          # token ids shown per sequence (a greedy failure's ids are short)


def headline(message: str | None, limit: int = 400) -> str:
    """The assertion in one line. Records written before the plugin put the crash line first open
    with xdist's worker banner ("[gw1] linux -- Python ..."): then the report's `E ` lines count."""
    lines = [ln for ln in (message or "").strip().splitlines()]
    if not lines:
        return ""
    first = lines[0].strip()
    if first.startswith("[gw") or first.startswith("setup: [gw") or not first:
        errors = [ln[1:].strip() for ln in lines if ln.startswith("E ")]
        first = " ".join(errors[:3]) if errors else next((ln.strip() for ln in lines[1:] if ln.strip()), first)
    return first[:limit]


def rerun(record: dict[str, Any]) -> str:
    """The command that reruns exactly this record's test: nox's session and pytest's node id (a
    node id selects one test whatever the option names are; the noxfile's rerun_one drops the default paths)."""
    session = record.get("session") or "cpu"
    nodeid = selectable(record.get("nodeid") or "")
    return f"nox -s {shlex.quote(str(session))} -- {shlex.quote(nodeid)}"


def tolerance_text(tol: Any) -> str:
    if isinstance(tol, dict):
        parts = [f"{k} {tol[k]:.1e}" if isinstance(tol[k], (int, float)) else f"{k} {tol[k]}"
                 for k in ("atol", "rtol") if k in tol]
        where = " — ".join(str(tol[k]) for k in ("source", "reason") if tol.get(k))
        return " · ".join(parts) + (f" ({where})" if where else "")
    if isinstance(tol, (int, float)):
        return f"{tol:.1e}"
    return "" if tol is None else str(tol)


def power_text(power: dict[str, Any]) -> str:
    """hfmatrix.power.of's record: the smallest errors the cell's tolerance catches, low-power marked first."""
    found = power.get("smallest_caught") or {}
    caught = ", ".join(f"{k} ×(1+{v:.2g})" if isinstance(v, (int, float)) else f"{k}: none up to ×2"
                       for k, v in found.items())
    head = "LOW-POWER: cannot catch a 1% error" if power.get("low_power") else "catches a 1% error"
    return f"{head}; smallest caught: {caught}" + (f" ({power['low_power']})" if power.get("low_power") else "")


def _ids(x: Any) -> str:
    flat = x[0] if isinstance(x, list) and len(x) == 1 and isinstance(x[0], list) else x
    if isinstance(flat, list) and len(flat) > MAX_IDS:
        return json.dumps(flat[:MAX_IDS])[:-1] + ", …]"
    return json.dumps(flat)


def num(x: Any) -> str:
    return f"{x:.3g}" if isinstance(x, float) else str(x)


def compared(record: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, text) pairs: what the check compared and the numbers it measured."""
    m = record.get("measures") if isinstance(record.get("measures"), dict) else {}
    out: list[tuple[str, str]] = []
    if "expected_ids" in m or "actual_ids" in m:
        if m.get("first_diff") is not None:
            out.append(("first differing (row, position)", json.dumps(m["first_diff"])))
        out.append(("reference ids", _ids(m.get("expected_ids"))))
        out.append(("backend ids", _ids(m.get("actual_ids"))))
    if "failed_row" in m:
        out.append(("batch row that differs from its single run", str(m["failed_row"])))
    for key, label in (("worst_output", "worst output"), ("max_abs_err", "max |Δ|"),
                       ("max_rel_err", "max |Δ| / max |ref|"), ("tol_fraction", "share of tolerance used")):
        if m.get(key) is not None:
            out.append((label, num(m[key])))
    if m.get("tolerance") is not None:
        out.append(("tolerance", tolerance_text(m["tolerance"])))
    if isinstance(m.get("power"), dict):
        out.append(("tolerance power", power_text(m["power"])))
    shown = {"expected_ids", "actual_ids", "first_diff", "failed_row", "worst_output", "max_abs_err", "max_rel_err",
             "tol_fraction", "tolerance", "per_output", "power"}
    rest = {k: v for k, v in m.items() if k not in shown}
    if rest:
        out.append(("other measures", compact.dumps(compact.round_floats(rest))[:600]))
    return out


def evidence_text(ev: Any, limit: int = 300) -> str:
    if not ev:
        return ""
    text = compact.dumps(ev) if not isinstance(ev, str) else ev
    return text if len(text) <= limit else text[:limit - 1] + "…"


ORDER = {o: i for i, o in enumerate(("crashed", "timeout", "error", "failed", "xpassed"))}


def sort_key(f: dict[str, Any]) -> tuple:
    return ORDER.get(f.get("outcome"), 9), str(f.get("column", "")), str(f.get("model", "")), str(f.get("nodeid", ""))
