"""Where a model really ran, as one structure every backend's evidence carries, and the one assertion on it.

Every ``Session.evidence()`` has a ``placement`` dict::

    {"requested": "CUDAExecutionProvider",          # the device / EP / provider the target names
     "unit": "nodes",                               # what is counted: nodes, parameters, execution devices
     "nodes_by_device": {"CUDAExecutionProvider": 212, "CPUExecutionProvider": 3},
     "elsewhere": {"CPUExecutionProvider": {"LayerNormalization": 3}},  # counted units off the target, by kind
     "not_counted": {"CPUExecutionProvider": {"Shape": 4}, "memcpy": {"MemcpyToHost": 1}},
     "share": 0.986,                                # counted units on the target / all counted units
     "software": None}                              # a software stand-in for the device (simulator), named

``not_counted`` lists what an EP leaves on the host by design (shape nodes, Memcpy nodes): in the
evidence, never in the share. A torch session carries ``dtype_placement`` of the same shape (unit
parameters, keyed by dtype; the model's own ``_keep_in_fp32_modules`` listed, not counted).

``require(evidence)`` is the assertion (hfmatrix/suites/test_load.py calls it for every backend): a share
below 1, or no placement at all, raises PlacementIncomplete naming what ran elsewhere. A known bug may
expect it (``raises = "PlacementIncomplete"``) only by naming those kinds: ``nodes = ["Cast"]``.
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Mapping

from .skips import Unsupported

PLACEMENTS = ("placement", "dtype_placement")


class PlacementIncomplete(AssertionError):
    """Part (or all) of the model ran somewhere else than the target names: a failure, with what ran where."""

    def __init__(self, message: str, share: float | None, nodes: list[str]):
        super().__init__(message)
        self.share, self.nodes = share, nodes


class PlacementRefused(Unsupported):
    """The EP itself reported ops it cannot place (no kernel / not supported with fallback disabled): a typed
    refusal, with the placement it reported as evidence."""

    def __init__(self, reason: str, placement: dict[str, Any]):
        super().__init__(reason)
        self.placement = self.evidence = placement


def index_nodes(graph) -> set[str]:
    """Names of an ONNX graph's nodes whose outputs are all integer or bool (ONNX shape inference): shape and
    index arithmetic, which ORT places on the CPU next to a device EP by design (GetCpuPreferredNodes; the
    WebGPU EP has no int64 kernels). Listed, not counted; a node producing floats always counts."""
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load(str(graph), load_external_data=False))
    types = {v.name: v.type.tensor_type.elem_type for v in [*model.graph.value_info, *model.graph.output,
                                                           *model.graph.input]}
    types.update({t.name: t.data_type for t in model.graph.initializer})
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16, onnx.TensorProto.DOUBLE}
    return {n.name for n in model.graph.node
            if n.output and all(o in types and types[o] and types[o] not in floats for o in n.output)}


def build(requested: str, counted: Mapping[str, Mapping[str, int]], *, unit: str = "nodes",
          not_counted: Mapping[str, Mapping[str, int]] | None = None, software: str | None = None) -> dict[str, Any]:
    """The placement dict from ``counted`` = {device: {kind (op type, dtype...): count}}."""
    by_device = {dev: int(sum(kinds.values())) for dev, kinds in counted.items() if sum(kinds.values())}
    total = sum(by_device.values())
    return {
        "requested": requested, "unit": unit, "nodes_by_device": by_device,
        "elsewhere": {dev: dict(sorted(kinds.items())) for dev, kinds in counted.items()
                      if dev != requested and sum(kinds.values())},
        "not_counted": {k: dict(v) for k, v in (not_counted or {}).items() if v},
        "share": round(by_device.get(requested, 0) / total, 6) if total else 0.0,
        "software": software,
    }


def merge(parts: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """One placement for a model of several graphs / sessions (each part's own stays in its evidence)."""
    parts = {k: v for k, v in parts.items() if v}
    if not parts:
        raise ValueError("no placement to merge")
    requested = {p["requested"] for p in parts.values()}
    if len(requested) != 1:
        raise ValueError(f"parts request different targets {sorted(requested)}")
    counted: dict[str, Counter] = {}
    listed: dict[str, Counter] = {}
    for p in parts.values():
        on = p["requested"]
        counted.setdefault(on, Counter())["*"] += p["nodes_by_device"].get(on, 0)
        for dev, kinds in p["elsewhere"].items():
            counted.setdefault(dev, Counter()).update(kinds)
        for dev, n in p["nodes_by_device"].items():  # devices whose kinds a part did not break down
            if dev != on and dev not in p["elsewhere"]:
                counted.setdefault(dev, Counter())["?"] += n
        for key, kinds in p["not_counted"].items():
            listed.setdefault(key, Counter()).update(kinds)
    software = sorted({p["software"] for p in parts.values() if p.get("software")})
    first = next(iter(parts.values()))
    return build(requested.pop(), counted, unit=first["unit"], not_counted=listed,
                 software="; ".join(software) or None)


def off_target(placement: dict[str, Any]) -> list[str]:
    """The kinds (op types, dtypes) counted off the target, sorted: what a known bug must name."""
    return sorted({kind for kinds in placement.get("elsewhere", {}).values() for kind in kinds})


def require(evidence: Mapping[str, Any], context: str = "") -> None:
    """Raise PlacementIncomplete unless every counted unit of every placement in ``evidence`` is on its target."""
    if not isinstance(evidence.get("placement"), Mapping):
        raise PlacementIncomplete(f"{context}the session's evidence has no placement: it cannot prove where it ran",
                                  None, [])
    for key in PLACEMENTS:
        p = evidence.get(key)
        if p is None:
            continue
        if p["share"] < 1:
            raise PlacementIncomplete(
                f"{context}{key}: {p['share']:.2%} of the {p['unit']} on {p['requested']}; elsewhere "
                f"{p['elsewhere'] or p['nodes_by_device']} (not counted, by design: {p['not_counted'] or 'none'})",
                p["share"], off_target(p))


def flags(evidence: Mapping[str, Any]) -> str | None:
    """The software stand-in the evidence names (QNN's HTP simulator, SwiftShader WebGPU), else None."""
    p = evidence.get("placement")
    return p.get("software") if isinstance(p, Mapping) else None
