"""WebGPU / WebNN: delegated to ``hwprobe.browser`` (a real browser), when that module exists.

The browser module may offer ``probe()`` -> {"webgpu": entry, "webnn": entry} (one browser
launch for both, preferred) and/or ``probe_webgpu()`` / ``probe_webnn()`` -> entry. Without it
the entries say so; they are never a bare ``false``. A browser can hang, so the call runs in a
daemon thread with a deadline.
"""
from __future__ import annotations

import importlib
import threading

from ._entry import DEPENDENCY_MISSING, NOT_PROBED, PROBE_ERROR, _one_line, absent, normalize

NAMES = ("webgpu", "webnn")
NOT_INSTALLED = "not probed: browser probe not installed"
TIMEOUT_S = 120.0


def _module():
    try:
        return importlib.import_module("hwprobe.browser"), None
    except ModuleNotFoundError as e:
        if e.name == "hwprobe.browser":
            return None, absent(DEPENDENCY_MISSING, NOT_INSTALLED)
        return None, absent(DEPENDENCY_MISSING, f"not probed: browser probe import failed: {_one_line(e)}")
    except Exception as e:  # noqa: BLE001
        return None, absent(PROBE_ERROR, f"not probed: browser probe import raised {_one_line(e)}")


def _call(fn, timeout: float):
    box: dict = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - reported, never propagated
            box["error"] = e

    t = threading.Thread(target=run, name="hwprobe-browser", daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise TimeoutError(f"browser probe gave no answer within {timeout:.0f} s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def probe_browser(names=NAMES, *, enabled: bool = True, timeout: float = TIMEOUT_S) -> dict[str, dict]:
    """Entries for the requested web backends, from one browser run where the module allows."""
    names = [n for n in NAMES if n in names]
    if not enabled:
        return {n: absent(NOT_PROBED, "not probed: browser probe disabled (--no-browser)") for n in names}
    mod, missing = _module()
    if mod is None:
        return {n: dict(missing) for n in names}
    out: dict[str, dict] = {}
    try:
        if hasattr(mod, "probe"):
            result = _call(mod.probe, timeout)
            if not isinstance(result, dict):
                raise TypeError(f"hwprobe.browser.probe() returned {type(result).__name__}, not a dict")
            for n in names:
                out[n] = normalize(n, result.get(n)) if n in result else absent(
                    PROBE_ERROR, f"hwprobe.browser.probe() gave no {n} entry")
        else:
            for n in names:
                fn = getattr(mod, f"probe_{n}", None)
                if fn is None:
                    out[n] = absent(PROBE_ERROR, f"hwprobe.browser has no probe_{n}()")
                    continue
                try:
                    out[n] = normalize(n, _call(fn, timeout))
                except Exception as e:  # noqa: BLE001
                    out[n] = absent(PROBE_ERROR, f"{n} browser probe raised {_one_line(e)}")
    except Exception as e:  # noqa: BLE001
        return {n: absent(PROBE_ERROR, f"browser probe raised {_one_line(e)}") for n in names}
    return out


def probe_webgpu() -> dict:
    return probe_browser(["webgpu"])["webgpu"]


def probe_webnn() -> dict:
    return probe_browser(["webnn"])["webnn"]
