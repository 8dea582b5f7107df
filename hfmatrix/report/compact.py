"""Compact JSON pieces for the page: an interned string table, rounded measures, NaN kept visible."""
from __future__ import annotations

import json
import math
from typing import Any

try:
    import orjson
except ImportError:  # the report env installs it; plain json is only slower
    orjson = None

_OPTS = (orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS) if orjson is not None else 0


class Strings:
    """Interned strings: each distinct string once in ``table``, records hold its index
    (``strings(text)`` -> index; merge's tally and RecordTable call it per string field)."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {"": 0}
        self.table: list[str] = [""]

    def __call__(self, s: str) -> int:
        i = self.index.get(s)
        if i is None:
            i = self.index[s] = len(self.table)
            self.table.append(s)
        return i


def err(x: float | None) -> float | str | None:
    """An error for the page: NaN/inf stay visible as strings (JSON has no NaN)."""
    if x is None:
        return None
    if not math.isfinite(x):
        return "NaN" if x != x else "inf"
    return float(f"{x:.3g}")


def round_floats(x: Any) -> Any:
    """Measures for the page: 4 significant digits, NaN/inf as strings, long lists cut."""
    if isinstance(x, float):
        return float(f"{x:.4g}") if math.isfinite(x) else str(x)
    if isinstance(x, dict):
        return {str(k): round_floats(v) for k, v in x.items()}
    if isinstance(x, list):
        return [round_floats(v) for v in x[:64]]
    return x


_INF = (math.inf, -math.inf)


def round_measures(d: dict[str, Any]) -> dict[str, Any]:
    """round_floats for a (mostly flat) measures dict, without recursion for plain values."""
    out = {}
    for k, v in d.items():
        tv = type(v)
        if tv is float:
            out[k] = float(f"{v:.4g}") if v == v and v not in _INF else str(v)
        elif tv is int or tv is str or tv is bool or v is None:
            out[k] = v
        else:
            out[k] = round_floats(v)
    return out


def clean(x: Any) -> Any:
    """Non-finite floats as strings, nothing cut."""
    if isinstance(x, float):
        return x if math.isfinite(x) else str(x)
    if isinstance(x, dict):
        return {str(k): clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [clean(v) for v in x]
    return x


def dumps(x: Any) -> str:
    """Compact JSON with sorted keys (equal dicts intern to one string)."""
    if orjson is not None:
        try:
            return orjson.dumps(x, default=str, option=_OPTS).decode()
        except TypeError:
            pass
    return json.dumps(clean(x), separators=(",", ":"), sort_keys=True, default=str)


def dump_document(x: Any, indent: bool = False) -> str:
    """A whole document (payload, matrix.json); NaN anywhere becomes a string, never invalid JSON."""
    if orjson is not None:
        try:
            return orjson.dumps(clean(x) if indent else x, default=str,
                                option=orjson.OPT_NON_STR_KEYS | (orjson.OPT_INDENT_2 if indent else 0)).decode()
        except TypeError:
            pass
    try:
        return json.dumps(x, separators=None if indent else (",", ":"), indent=2 if indent else None,
                          default=str, allow_nan=False)
    except ValueError:
        return json.dumps(clean(x), separators=None if indent else (",", ":"), indent=2 if indent else None, default=str)
