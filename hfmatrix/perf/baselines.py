"""Committed baselines: baselines/<fingerprint id>/<backend>-<device>-<precision>.json.

The fingerprint is ``hwprobe.fingerprint(...)["id"]`` (CPU model slug, usable cores, hardware hash;
software is recorded but not keyed: a slower torch on the same machine is exactly what the gate must
catch). One file per target holds every model measured for it, with raw samples per metric::

    {"schema": "hfmatrix-baseline/1", "fingerprint": {...}, "target": {"backend", "device", "precision"},
     "models": {"<model id>": {"recorded": ISO time, "run_id": ..., "session": ..., "versions": {...},
                               "conditions": {...}, "machine": {load average while recording},
                               "metrics": {"forward": {"unit": "s", "values": [...]},
                                                                "forward_batch": {...}, "load": {...},
                                                                "first_call": {...},
                                                                "forward_norm": {"unit": "x calibration",
                                                                    "values": [...], "noise": ...}}}}}

``forward_norm`` is what the gate compares (hfmatrix/perf/calibrated.py). ``record`` refuses an entry
recorded under load or above the noise bound (``calibrated.refusal``): it is not written, and the
refusal comes back with its reason.

``conditions`` must match the current run for a comparison to mean anything: intra-op threads,
timer, input shapes per metric, batch size, and whether a tracer (coverage) was active. A mismatch
gives the verdict "incomparable" with the differing keys named.
"""
from __future__ import annotations

import datetime as dt
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from hwprobe.presence import PRESENT

from ..records import write_json_atomic

SCHEMA = "hfmatrix-baseline/1"
ENV = "HFMATRIX_BASELINES"
#: the hwprobe backends whose hardware goes into the fingerprint: the CPU and torch-visible accelerators.
#: The same set is probed in every env, so one machine has one fingerprint whatever env measures it.
FINGERPRINT_PROBES = tuple(PRESENT)


@lru_cache(maxsize=1)
def fingerprint() -> dict[str, Any]:
    """hwprobe's fingerprint of this machine (cached per process)."""
    import hwprobe
    return hwprobe.fingerprint(hwprobe.probe(list(FINGERPRINT_PROBES), browser=False))


def default_dir(root: Path | str | None = None) -> Path:
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).resolve()
    return (Path(root) if root else Path.cwd()) / "baselines"


def target_name(backend: str, device: str, precision: str) -> str:
    return f"{backend}-{device}-{precision}"


def path_for(base_dir: Path, fp_id: str, backend: str, device: str, precision: str) -> Path:
    return Path(base_dir) / fp_id / f"{target_name(backend, device, precision)}.json"


def load(path: Path) -> dict[str, Any] | None:
    path = Path(path)
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("schema") != SCHEMA:
        raise ValueError(f"{path}: schema {data.get('schema')!r}, expected {SCHEMA!r}")
    return data


def verdict_precision(entry: dict[str, Any]) -> str:
    """Baselines are kept per effective precision (what ran: hfmatrix.precision), the requested one
    for entries recorded before that existed."""
    return entry.get("effective_precision") or entry["precision"]


def lookup(base_dir: Path, fp_id: str, backend: str, device: str, precision: str, model: str
           ) -> tuple[Path, dict[str, Any] | None]:
    """(file, the model's entry or None)."""
    path = path_for(base_dir, fp_id, backend, device, precision)
    data = load(path)
    return path, (data or {}).get("models", {}).get(model)


def mismatched_conditions(baseline: dict[str, Any], current: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Keys whose values differ between baseline and current conditions (baseline value, current value)."""
    keys = set(baseline) | set(current)
    return {k: (baseline.get(k), current.get(k)) for k in sorted(keys) if baseline.get(k) != current.get(k)}


class Refused(list):
    """The entries ``record`` would not write, as (name, reason) pairs."""


def record(entries: list[dict[str, Any]], base_dir: Path, fingerprint_doc: dict[str, Any],
           metrics: tuple[str, ...] = ("load", "first_call", "forward", "forward_batch", "forward_norm"),
           refused: Refused | None = None) -> list[Path]:
    """Write/update baseline files from bench entries (see hfmatrix.perf.bench). Returns files written;
    entries refused (under load, too noisy: calibrated.refusal) are appended to ``refused``."""
    from filelock import FileLock

    from .calibrated import refusal
    fp_id = fingerprint_doc["id"]
    by_target: dict[str, list[dict[str, Any]]] = {}
    for e in entries:
        why = refusal(e) if "forward" in e.get("report", {}) else ""  # serving entries: their own gate
        if why:
            if refused is not None:
                refused.append((e.get("name"), why))
            continue
        by_target.setdefault(target_name(e["backend"], e["device"], verdict_precision(e)), []).append(e)
    written = []
    for name, group in sorted(by_target.items()):
        e0 = group[0]
        path = path_for(base_dir, fp_id, e0["backend"], e0["device"], verdict_precision(e0))
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock"):
            data = load(path) or {"schema": SCHEMA, "target": {"backend": e0["backend"], "device": e0["device"],
                                                                   "precision": verdict_precision(e0)},
                                  "models": {}}
            data["fingerprint"] = fingerprint_doc
            for e in group:
                data["models"][e["model"]] = {
                    "recorded": e.get("measured_at") or dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                    "run_id": e.get("run_id"), "session": e.get("session"), "versions": e.get("versions", {}),
                    "conditions": e.get("conditions", {}), "machine": e.get("machine", {}),
                    "metrics": {m: {"unit": e["report"][m]["latency"]["unit"],
                                    "values": e["report"][m]["latency"]["values"],
                                    **{k: e["report"][m][k] for k in ("batch_size", "noise") if k in e["report"][m]}}
                                for m in (e.get("baseline_metrics") or metrics) if m in e.get("report", {})},
                }
            data["models"] = dict(sorted(data["models"].items()))
            write_json_atomic(path, data)
        Path(str(path) + ".lock").unlink(missing_ok=True)
        written.append(path)
    return written
