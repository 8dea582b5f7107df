"""First divergent layer: where in the model a backend's outputs leave the reference.

Both sides give their intermediate tensors keyed by the model's own module names
(``encoder.block.0.layer.1.DenseReluDense.wo``), in execution order: the CPU fp32 torch reference through
forward hooks, a backend through its ``Session.intermediates(inputs)`` (torch: the same hooks; OpenVINO:
the IR's nodes added as outputs; ONNX Runtime: the graph's node outputs added as graph outputs; the
exporters' node names carry the module path, mapped back by ``module_of``).

The rule (docs/architecture.md, "First divergent layer"): walk the reference's modules in execution
order, comparing every module both sides have with the same shape. A module **diverges** when its
output is outside its point's tolerance (|Δ| > atol + rtol·|ref| + rtol·max |ref| somewhere: the cell's
tolerance plus accumulation error in proportion to the layer's magnitudes), its divergence reaches the
output (the modules containing it are outside too; a mismatch that vanishes there is an exporter's
naming or folding, not the backend), **and** its relative error
(max |Δ| / max |ref|) is at least ``GROWTH`` times the largest relative error of the modules compared
before it (or that is zero). The first such module is named; when no module jumps like that while
the output is outside tolerance (error growing evenly through the depth, as rounding does), the first
module outside tolerance is named with ``gradual = True``.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Iterable

import numpy as np

GROWTH = 10.0
_OV_SCOPE = re.compile(r"^__module\.([^/]+)/")          # OpenVINO's PyTorch frontend: __module.<path>/aten::op/Op
_ONNX_SCOPE = re.compile(r"^/((?:[^/]+/)*?)[A-Za-z_]+(?:_\d+)?$")   # TorchScript ONNX export: /<a>/<b.0>/<c>/Op_3


def module_of(node_name: str) -> str | None:
    """The torch module path an exported node belongs to, from the exporter's node name; None for a
    node outside any module (constants, the exporter's own helpers)."""
    m = _OV_SCOPE.match(node_name)
    if m:
        return m.group(1)
    m = _ONNX_SCOPE.match(node_name)
    if m and m.group(1):
        return m.group(1).rstrip("/").replace("/", ".")
    return None


def align(reference: Iterable[str], name: str, component: str = "") -> str | None:
    """The reference module a backend's module path names: itself, else the unique reference module
    it is a dotted suffix of (an encoder exported alone names ``block.0`` what the full model calls
    ``encoder.block.0``), preferring one under ``component`` when several are; else its nearest
    ancestor that aligns (a node inside a module the reference has no output for)."""
    ref = reference if isinstance(reference, (set, frozenset, dict)) else set(reference)
    path = name
    while path:
        if path in ref:
            return path
        hits = [r for r in ref if r.endswith("." + path)]
        if len(hits) > 1 and component:
            hits = [r for r in hits if r.startswith(component + ".")]
        if len(hits) == 1:
            return hits[0]
        path = path.rpartition(".")[0]
    return None


Entry = tuple[str, str, np.ndarray]   # (module path, optionally "component::path"; op type; value)


def candidates(reference: dict[str, np.ndarray], entries: Iterable[Entry]) -> dict[str, list[tuple[str, np.ndarray]]]:
    """Reference module -> the backend tensors that may be its output: every tensor of its subtree
    (an exporter splits a module into many nodes and may fold its last op into the next)."""
    out: dict[str, list[tuple[str, np.ndarray]]] = {}
    for key, op, value in entries:
        component, _, path = key.rpartition("::")
        hit = align(reference, path, component)
        exact = hit
        while hit:
            if hit in reference:  # a module's own tensor first: it wins a tie with its children's
                bucket = out.setdefault(hit, [])
                bucket.insert(0, (op, value)) if hit == exact else bucket.append((op, value))
            hit = hit.rpartition(".")[0]
    return out


@dataclass
class Point:
    module: str
    op: str
    max_abs: float
    max_rel: float
    outside: bool      # some element outside atol + rtol·|ref|


def _point(module: str, op: str, actual: np.ndarray, reference: np.ndarray, tol) -> Point | None:
    a = np.asarray(actual, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    if a.shape != r.shape:
        a, r = np.squeeze(a), np.squeeze(r)
        if a.shape != r.shape:
            return None
    if a.size == 0:
        return None
    diff = np.abs(a - r)
    if not np.isfinite(diff).all():
        return Point(module, op, float("inf"), float("inf"), True)
    ref_max = float(np.abs(r).max())
    max_abs = float(diff.max())
    max_rel = max_abs / ref_max if ref_max > 0 else (0.0 if max_abs == 0 else float("inf"))
    # an intermediate tensor carries accumulation error in proportion to the magnitudes in its layer
    # (T5's attention outputs reach |100|), so a point's tolerance adds rtol·max |ref| to the cell's
    allowed = tol.atol + tol.rtol * np.abs(r) + max(getattr(tol, "scale", 0.0), tol.rtol) * ref_max
    return Point(module, op, max_abs, max_rel, bool((diff > allowed).any()))


def trace(reference: dict[str, np.ndarray], ops: dict[str, str], entries: Iterable[Entry], tol) -> list[Point]:
    """One point per reference module the backend has a same-shaped tensor for, in the reference's
    execution order; of a module's candidate tensors the one closest to the reference stands for it."""
    found = candidates(reference, entries)
    points = []
    for name, ref in reference.items():
        best = None
        for op, value in found.get(name, ()):
            p = _point(name, op or ops.get(name, ""), value, ref, tol)
            if p is not None and (best is None or p.max_rel < best.max_rel):
                best = p
        if best is not None:
            points.append(best)
    return points


def _persists(points: list[Point], i: int) -> bool:
    """A real divergence reaches the output: the chain of compared modules containing this one (each
    later in execution order) is outside tolerance up to the outermost, and so is the last compared
    module. A mismatch that vanishes on the way is the export naming or folding a node differently,
    not the backend computing wrongly."""
    name = points[i].module
    for j in range(i + 1, len(points)):
        if name.startswith(points[j].module + "."):
            return points[j].outside and _persists(points, j)
    return points[-1].outside


def first_divergence(points: list[Point], growth: float = GROWTH) -> dict[str, Any] | None:
    """The first divergent module by the rule above, with the error just before it; None when no
    compared module is outside tolerance in a way that reaches the output."""
    worst_before, first_outside = 0.0, None
    for i, p in enumerate(points):
        if p.outside and _persists(points, i):
            if first_outside is None:
                first_outside = i
            if worst_before == 0.0 or p.max_rel >= growth * worst_before:
                return _result(points, i, gradual=False)
        if not p.outside or _persists(points, i):
            worst_before = max(worst_before, p.max_rel)
    return None if first_outside is None else _result(points, first_outside, gradual=True)


def _result(points: list[Point], i: int, gradual: bool) -> dict[str, Any]:
    p = points[i]
    prev = points[i - 1] if i else None
    return {**asdict(p), "gradual": gradual, "index": i, "compared": len(points),
            "previous": None if prev is None else {"module": prev.module, "op": prev.op,
                                                    "max_abs": prev.max_abs, "max_rel": prev.max_rel}}


def describe(found: dict[str, Any] | None) -> str:
    if not found:
        return "no module outside tolerance"
    prev = found["previous"]
    before = (f"; before it {prev['module']} ({prev['op']}) max |Δ| {prev['max_abs']:.3g}" if prev else "")
    how = "first module outside tolerance (error grows evenly)" if found["gradual"] else "first divergent module"
    return (f"{how}: {found['module']} ({found['op']}) max |Δ| {found['max_abs']:.3g}, "
            f"max |Δ|/max |ref| {found['max_rel']:.3g}{before}")


def localize(reference_session, backend_session, inputs, tol) -> dict[str, Any]:
    """Run both sessions' intermediates on the same inputs and name the first divergent module, judged
    by the cell's tolerance (``tol``: atol, rtol and an optional scale, as hfmatrix.compare.Tolerance).
    Diagnosis only: a session without intermediates, or one that fails to give them, is recorded as
    such and never changes the cell's verdict."""
    for s in (reference_session, backend_session):
        if not callable(getattr(s, "intermediates", None)):
            return {"supported": False, "why": f"{type(s).__name__} exposes no intermediate outputs"}
    try:
        ref_entries = reference_session.intermediates(inputs)
        entries = backend_session.intermediates(inputs)
    except Exception as exc:  # noqa: BLE001 - diagnosis must not turn a verdict into an error
        return {"supported": True, "error": f"{type(exc).__name__}: {str(exc)[:500]}"}
    reference = {name: value for name, _, value in ref_entries}
    ops = {name: op for name, op, _ in ref_entries}
    points = trace(reference, ops, entries, tol)
    found = first_divergence(points)
    return {"supported": True, "compared": len(points), "reference_modules": len(reference),
            "backend_tensors": len(entries), "first": found, "summary": describe(found)}
