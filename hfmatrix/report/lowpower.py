"""Low-power parity cells in the report: cells whose tolerance cannot catch a 1% error (tolerances.toml's
``low_power`` mark, hfmatrix.power), with the smallest whole-output and one-row errors they do catch. Read from
the ``power`` measure of parity records."""
from __future__ import annotations

from typing import Any


def row(session: str, record: dict[str, Any]) -> dict[str, Any] | None:
    found = (record.get("measures") or {}).get("power")
    if not isinstance(found, dict) or not found.get("low_power"):
        return None
    caught = found.get("smallest_caught") or {}
    return {"session": session, "model": record.get("model"), "backend": record.get("backend"),
            "device": record.get("device"), "precision": record.get("effective_precision") or record.get("precision"),
            "outcome": record.get("outcome"), "whole": caught.get("whole"), "row": caught.get("row"),
            "reason": found["low_power"]}


def _pct(x: Any) -> str:
    return f"{100 * x:.2g}%" if isinstance(x, (int, float)) else "none up to 100%"


def markdown(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    out = ["## Low-power parity cells", "",
           "Their tolerance cannot catch a 1% error (the backend's own error is larger): the smallest output scaling "
           "each one fails on, whole output and one row (hfmatrix/tolerances.toml `low_power`).", "",
           "| model | target | outcome | whole caught from | one row caught from |", "|---|---|---|---:|---:|"]
    for r in sorted(rows, key=lambda r: (r["backend"] or "", r["precision"] or "", r["model"] or "")):
        out.append(f"| {r['model']} | {r['backend']}·{r['device']}·{r['precision']} | {r['outcome']} | "
                   f"{_pct(r['whole'])} | {_pct(r['row'])} |")
    out.append("")
    return out
