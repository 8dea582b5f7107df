"""Tolerance power: the smallest structured error a tolerance entry catches on real reference outputs.

i.i.d. noise would measure tensor size (over thousands of elements some element trips any tolerance), so
the planted errors are the ones a real defect makes: the whole output scaled by ``1 + e`` (a wrong scale,
a dropped normalisation), and one row (one position / one sample) scaled by ``1 + e`` (a wrong mask, a wrong
position, one bad sample). ``smallest_caught`` bisects ``e`` through ``compare()`` itself, so whatever
compare() judges is what is measured. An entry must catch ``e = 1%`` on every model it applies to, or say
so in tolerances.toml (``low_power``, with its reason): records and the report then show the cell as
low-power with the error it does catch.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .compare import Tolerance, compare, load_tolerances, table_path, tolerance

#: the error every entry must catch: outputs scaled by 1 + REQUIRED
REQUIRED = 0.01
PLANTS = ("whole", "row")
#: a device name no device-specific entry uses: the device-independent entries' cells
ANY_DEVICE = "any-device"


def planted(reference: dict[str, np.ndarray], keys: list[str], plant: str, factor: float) -> dict[str, np.ndarray]:
    """``reference`` with the plant applied: every output × factor ("whole"), or the one row (all axes but
    the last flattened: a position of a sequence, a sample of a batch) with the smallest max |ref| of all
    outputs × factor ("row": by monotonicity of |Δ| <= atol + rtol·|ref| + scale·max|ref| the hardest row)."""
    out = {k: np.asarray(v, dtype=np.float64).copy() for k, v in reference.items()}
    if plant == "whole":
        for k in keys:
            out[k] *= factor
        return out
    key, row = hardest_row(reference, keys)
    view = out[key].reshape(-1, out[key].shape[-1]) if out[key].ndim else out[key].reshape(1, 1)
    view[row] *= factor
    return out


def hardest_row(reference: dict[str, np.ndarray], keys: list[str]) -> tuple[str, int]:
    """(output, row) whose max |ref| is smallest but not zero (a row of zeros scales to itself)."""
    best = ("", 0, np.inf)
    for k in keys:
        a = np.abs(np.asarray(reference[k], dtype=np.float64))
        rows = a.reshape(-1, a.shape[-1]).max(axis=1) if a.ndim else a.reshape(1)
        rows = np.where(rows > 0, rows, np.inf)
        i = int(np.argmin(rows))
        if rows[i] < best[2]:
            best = (k, i, float(rows[i]))
    return best[0], best[1]


def caught(reference: dict[str, np.ndarray], tol: Tolerance, keys: list[str], plant: str, error: float) -> bool:
    return not compare(planted(reference, keys, plant, 1.0 + error), reference, tol, keys).ok


def smallest_caught(reference: dict[str, np.ndarray], tol: Tolerance, keys: list[str], plant: str,
                    ceiling: float = 1.0, steps: int = 40) -> float:
    """The smallest relative error ``e`` (output × (1 + e)) compare() fails on, by bisection; inf when not
    even ``ceiling`` (× 2 by default) is caught."""
    if not caught(reference, tol, keys, plant, ceiling):
        return float("inf")
    low, high = 0.0, ceiling
    for _ in range(steps):
        mid = (low + high) / 2
        low, high = (low, mid) if caught(reference, tol, keys, plant, mid) else (mid, high)
    return high


def of(reference: dict[str, np.ndarray], tol: Tolerance, keys=()) -> dict[str, Any]:
    """What a parity cell's tolerance catches on this reference: the smallest whole-output and one-row
    errors, and whether it is marked low-power (then the record and the report show these numbers)."""
    names = list(keys) or sorted(reference)
    found = {p: smallest_caught(reference, tol, names, p) for p in PLANTS}
    return {"smallest_caught": {p: v if np.isfinite(v) else None for p, v in found.items()},  # None: not even ×2
            "catches_1pct": all(v <= REQUIRED for v in found.values()),
            **({"low_power": tol.low_power} if tol.low_power else {})}


@dataclass(frozen=True)
class Entry:
    """One entry of tolerances.toml, as the cells it is looked up for: (backend, device, precision) and a
    model pattern ("*" for a target entry: every model no more specific entry takes)."""
    source: str
    backend: str
    device: str
    precision: str
    model: str

    def tolerance(self, model: str, path: Path | None = None) -> Tolerance | None:
        """This entry's tolerance for ``model``, None where another (more specific) entry takes the model."""
        tol = tolerance(model, self.backend, self.device, self.precision, path)
        return tol if tol.source == self.source else None


def entries(path: Path | None = None) -> list[Entry]:
    """Every entry of the table, targets first, in file order (as compare.load_tolerances reads them)."""
    found = []
    for e in load_tolerances(table_path(path)):
        keys = {k: v[0] for k, v in e.rule.target}  # tolerances.toml names one value per key
        found.append(Entry(e.source, keys.get("backend", "*"), keys.get("device", ANY_DEVICE),
                           keys.get("precision", "*"), keys.get("model", "*")))
    return found


def audit(references: dict[str, tuple[dict[str, np.ndarray], list[str]]], path: Path | None = None) -> list[dict]:
    """One row per (entry, model it applies to): the smallest errors caught on that model's real reference
    outputs, whether 1% is caught, and the entry's low-power mark. ``references``: model -> (outputs, keys)."""
    rows = []
    for entry in entries(path):
        for model, (reference, keys) in references.items():
            tol = entry.tolerance(model, path)
            if tol is None:
                continue
            found = of(reference, tol, keys)
            rows.append({"entry": entry.source, "model": model, **found, "low_power": tol.low_power})
    return rows


def problems(rows: list[dict]) -> list[str]:
    """Cells that neither catch 1% nor are marked low-power (a new too-wide entry), and marks that no longer
    hold (the cell catches 1% now: the mark would hide that it is judged)."""
    out = []
    for r in rows:
        if not r["catches_1pct"] and not r["low_power"]:
            out.append(f"{r['entry']} on {r['model']}: catches only {_fmt(r['smallest_caught'])}, not 1%: "
                       "tighten it, add a metric compare() fails on, or mark it low_power with the reason")
        if r["catches_1pct"] and r["low_power"]:
            out.append(f"{r['entry']} on {r['model']} is marked low_power but catches 1% "
                       f"({_fmt(r['smallest_caught'])}): drop the mark")
    return out


def _fmt(found: dict[str, float]) -> str:
    return ", ".join(f"{p} {v:.3g}" if v is not None else f"{p} none up to x2" for p, v in found.items())


def zoo_references(models: list[str] | None = None) -> dict[str, tuple[dict[str, np.ndarray], list[str]]]:
    """Real reference outputs: CPU fp32 torch on each zoo model's example 0 (what parity compares with)."""
    from .backends import get
    from .backends.base import Target
    from .zoo import load_specs, materialize
    from .zoo.inputs import example
    torch_backend, found = get("torch"), {}
    for model, spec in load_specs().items():
        if models and model not in models:
            continue
        folder = materialize(spec)
        session = torch_backend.load(folder, spec, Target("torch", "cpu", "fp32"))
        try:
            outputs = session.run(example(spec, folder))
        finally:
            session.close()
        keys = list(spec.outputs) or sorted(outputs)
        found[model] = ({k: outputs[k] for k in keys}, keys)
    return found


def table(rows: list[dict]) -> str:
    """Markdown: entry, models, whether each 1% plant is caught, the smallest errors caught, the mark."""
    lines = ["| entry | model | whole ×1.01 | one row ×1.01 | smallest caught (whole / row) | low-power |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        w, o = r["smallest_caught"]["whole"], r["smallest_caught"]["row"]
        lines.append(f"| {r['entry']} | {r['model']} | {_yes(w)} | {_yes(o)} | {_pct(w)} / {_pct(o)} | "
                     f"{'low-power' if r['low_power'] else ''} |")
    return "\n".join(lines)


def _yes(value: float | None) -> str:
    return "caught" if value is not None and value <= REQUIRED else "MISSED"


def _pct(value: float | None) -> str:
    return f"{100 * value:.3g}%" if value is not None else "none up to 100%"
