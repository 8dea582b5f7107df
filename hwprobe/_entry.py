"""The shape of one backend entry, and the guard that turns any probe failure into one.

Every backend in the document is ``{"available", "reason", "kind", "details"}``. ``kind`` is
None when available, else one of KINDS: the first two match ``hfmatrix.skips``; the last two
say the probe itself could not answer, which is not the same as "absent" and must not be
read as a skip of either kind.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import time
import traceback
from typing import Any, Callable

HARDWARE_ABSENT = "hardware-absent"
DEPENDENCY_MISSING = "dependency-missing"
PROBE_ERROR = "probe-error"  # the probe raised: we do not know
NOT_PROBED = "not-probed"  # deliberately not run (e.g. browser=False)
KINDS = (HARDWARE_ABSENT, DEPENDENCY_MISSING, PROBE_ERROR, NOT_PROBED)


def ok(reason: str, **details: Any) -> dict:
    return {"available": True, "reason": reason, "kind": None, "details": details}


def absent(kind: str, reason: str, **details: Any) -> dict:
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {KINDS}")
    return {"available": False, "reason": reason, "kind": kind, "details": details}


class Missing(Exception):
    """Raised inside a probe to return ``absent(kind, reason, **details)`` early."""

    def __init__(self, kind: str, reason: str, **details: Any):
        super().__init__(reason)
        self.entry = absent(kind, reason, **details)


def require(module: str, dist: str | None = None):
    """Import an optional library or raise Missing(dependency-missing) saying why.

    A module that is not installed and one whose import breaks (a CUDA wheel without its
    libraries, an ABI mismatch) are both missing dependencies, but the reasons differ.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name is None or module == e.name or module.startswith(e.name + "."):
            raise Missing(DEPENDENCY_MISSING, f"{dist or module} not installed") from None
        raise Missing(DEPENDENCY_MISSING, f"{dist or module} import failed: {_one_line(e)}",
                      import_error=_one_line(e)) from None
    except Exception as e:  # noqa: BLE001 - an import can fail in any way (OSError from dlopen)
        raise Missing(DEPENDENCY_MISSING, f"{dist or module} import failed: {_one_line(e)}",
                      import_error=_one_line(e)) from None


def dist_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def guarded(name: str, fn: Callable[[], dict]) -> dict:
    """Run one probe; whatever it raises becomes an unavailable entry with the error text."""
    t0 = time.perf_counter()
    try:
        entry = fn()
    except Missing as m:
        entry = m.entry
    except Exception as e:  # noqa: BLE001 - a probe must never take the document down
        tb = traceback.extract_tb(e.__traceback__)
        where = f"{tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno}" if tb else ""
        entry = absent(PROBE_ERROR, f"{name} probe raised {_one_line(e)}",
                       error=_one_line(e), where=where)
    entry = normalize(name, entry)
    entry["probe_seconds"] = round(time.perf_counter() - t0, 3)
    return entry


def normalize(name: str, entry: Any) -> dict:
    """Check an entry from any source (including the browser module) has the right shape."""
    if not isinstance(entry, dict) or not isinstance(entry.get("available"), bool):
        return absent(PROBE_ERROR, f"{name} probe returned a malformed entry: {entry!r:.200}")
    out = dict(entry)
    out.setdefault("details", {})
    if not isinstance(out["details"], dict):
        out["details"] = {"value": out["details"]}
    reason = out.get("reason")
    if out["available"]:
        out["kind"] = None
        out["reason"] = str(reason) if reason else "available"
    else:
        if out.get("kind") not in KINDS:
            return absent(PROBE_ERROR, f"{name} probe gave no valid kind "
                          f"(kind={out.get('kind')!r}, reason={reason!r})", entry=_jsonable(entry))
        if not reason:
            return absent(PROBE_ERROR, f"{name} probe said unavailable without a reason",
                          entry=_jsonable(entry))
        out["reason"] = str(reason)
    return _jsonable(out)


def _jsonable(value: Any) -> Any:
    """Make library objects (ov.Type, enums, tuples) JSON-safe without losing their text."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_jsonable(v) for v in value]
        return sorted(items, key=str) if isinstance(value, (set, frozenset)) else items
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
