"""OpenVINO backend through optimum-intel: CPU, GPU, NPU × fp32 (f32 hint + f32 KV cache), auto (device default),
bf16 (bf16 hint, where the device lists BF16) and fp32_kvfp16 (f32 hint + f16 KV cache: what auto computes
on a CPU without bf16, forced).

Export: ``optimum.exporters.openvino.main_export`` (what ``OVModelFor*.from_pretrained(..., export=True)``
runs), IR weights kept fp32, cached by hfmatrix.exports; decoders are exported stateful (the default).
Sessions are the ``OVModelFor*`` classes users load. Evidence is read back from every compiled model:
``EXECUTION_DEVICES`` and ``INFERENCE_PRECISION_HINT`` (``auto`` on an avx512_bf16 CPU reads bf16).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .. import exports, placement as placing, precision as eff
from ..skips import DependencyMissing, HardwareAbsent, Unsupported
from .base import Arrays, Availability, Target
from .optimum_common import TASKS, Exporter, OptimumBackend, OptimumSession, as_float32, export, graph_feeds

# matrix precision -> ov_config; "auto" leaves the device's defaults. fp32 needs KV_CACHE_PRECISION too:
# the CPU plugin keeps stateful KV caches in f16 whatever the inference hint (measured: tiny T5 logits
# max |Δ| 4.2e-4 with the hint alone, 7.2e-7 with both).
# bf16 is the hint alone (KV cache at the device default); fp32_kvfp16 forces what `auto` computes on a CPU
# without bf16, so a bf16 host exercises that verdict path too (hfmatrix.precision resolves each request).
PRECISION_CONFIG: dict[str, dict[str, str]] = {
    "fp32": {"INFERENCE_PRECISION_HINT": "f32", "KV_CACHE_PRECISION": "f32"},
    "auto": {},
    "bf16": {"INFERENCE_PRECISION_HINT": "bf16"},
    "fp32_kvfp16": {"INFERENCE_PRECISION_HINT": "f32", "KV_CACHE_PRECISION": "f16"},
}
# the KV cache precision optimum-intel's exporter writes into a stateful IR's runtime options (read back:
# f16 on gpt2, t5, whisper, mamba at auto, where the CPU's own default is u8)
EXPORT_KV_CACHE = "f16"
DEVICES = ("CPU", "GPU", "NPU")

OV_FLOAT = {"f32": np.float32, "f16": np.float16}


def _ov():
    try:
        import openvino as ov
    except ImportError as exc:
        raise DependencyMissing(f"openvino not importable: {exc}") from None
    return ov


OPENVINO = Exporter(name="openvino", label="OpenVINO", requirement="optimum-intel[openvino]", package="optimum-intel",
                    models="optimum.intel.openvino", exporter="optimum.exporters.openvino",
                    configs="optimum.exporters.openvino.model_configs",
                    distributions=("optimum", "optimum-intel", "openvino", "nncf", "transformers", "torch"))


_CORE = None


def core():
    global _CORE
    if _CORE is None:
        _CORE = _ov().Core()
    return _CORE


def openvino_export(model_dir: Path, spec) -> exports.Export:
    """optimum-intel's export of ``model_dir`` for ``spec.task`` (cached): IR weights fp32, decoders stateful."""
    return export(OPENVINO, model_dir, spec, {"stateful": True, "weights": "fp32"})


def _compiled(request):
    ov = _ov()
    if request is None:
        return None
    if isinstance(request, ov.CompiledModel):
        return request
    return request.get_compiled_model()  # an InferRequest (stateful decoders, seq2seq parts)


def stateful_parts(model) -> set[str]:
    """Names (as compiled_models names them) of the parts whose own InferRequest keeps state (a KV cache,
    Mamba's conv/SSM state), asked of the requests the OVModel already holds: a new request would allocate."""
    ov = _ov()
    parts = {"model": getattr(model, "request", None),
             **{name: getattr(part, "request", None) for name, part in getattr(model, "components", {}).items()}}
    return {name for name, r in parts.items() if isinstance(r, ov.InferRequest) and r.query_state()}


def compiled_models(model) -> dict[str, Any]:
    """name -> CompiledModel for every compiled model an OVModel holds (top level and components)."""
    found = {}
    top = _compiled(getattr(model, "request", None))
    if top is not None:
        found["model"] = top
    for name, part in getattr(model, "components", {}).items():
        c = _compiled(getattr(part, "request", None))
        if c is not None:
            found[name] = c
    return found


def _prop(compiled, key: str):
    try:
        value = compiled.get_property(key)
    except Exception as exc:  # noqa: BLE001 - a plugin may not report a property; say so
        return f"unavailable: {exc}"
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    if hasattr(value, "get_type_name"):  # an openvino Type (INFERENCE_PRECISION_HINT): "f32", "bf16", "f16"
        return value.get_type_name()
    return value if isinstance(value, (int, float, str, bool)) else str(getattr(value, "name", value))


def _prop_of_device(device: str, key: str) -> str:
    value = core().get_property(device, key)
    return value.get_type_name() if hasattr(value, "get_type_name") else str(value)


def _name(port) -> str:
    names = list(port.get_names())
    return next((n for n in names if "/" not in n), names[0])


def execution_placement(compiled: dict[str, Any], device: str) -> dict[str, Any]:
    """hfmatrix.placement over every compiled model's EXECUTION_DEVICES entries ("CPU", "GPU.0" count as
    their device): each entry is one unit, keyed by the part that reports it."""
    counted: dict[str, dict[str, int]] = {}
    for name, c in compiled.items():
        devices = _prop(c, "EXECUTION_DEVICES")
        for d in devices if isinstance(devices, list) else [f"unreadable ({devices})"]:
            counted.setdefault(d.split(".")[0], {})[name] = counted.get(d.split(".")[0], {}).get(name, 0) + 1
    return placing.build(device, counted, unit="execution devices")


class OVSession(OptimumSession):
    def __init__(self, model, spec, target: Target, device: str, export: exports.Export, mode: str,
                 ov_config: dict[str, str]):
        super().__init__(model, spec, target, export, mode)
        self.device, self.ov_config = device, ov_config
        self.compiled = compiled_models(model)
        if not self.compiled:
            raise RuntimeError(f"{type(model).__name__} holds no compiled model after compile()")
        self.placement = execution_placement(self.compiled, device)
        if self.placement["share"] == 0:  # the device was available, yet nothing runs there: a failure
            raise placing.PlacementIncomplete(f"requested OpenVINO {device} but the compiled models run on "
                                              f"{self.placement['nodes_by_device']}", 0.0, [])
        self._evidence: dict[str, Any] | None = None

    def graph_inputs(self) -> set[str]:
        return {_name(p) for c in self.compiled.values() for p in c.inputs}

    def run_graph(self, inputs: Arrays) -> Arrays:
        compiled = self.compiled["model"]
        types = {_name(port): port.get_element_type().get_type_name() for port in compiled.inputs}
        result = compiled(graph_feeds(((name, OV_FLOAT.get(et) or (np.int64 if et == "i64" else None))
                                       for name, et in types.items()), inputs))
        return {_name(port): as_float32(result[port]) for port in compiled.outputs}

    def intermediates(self, inputs: Arrays) -> list[tuple[str, str, np.ndarray]]:
        """Every module node's output on these inputs, from a fresh compile of the same IR (hfmatrix.localize)."""
        from .openvino_localize import intermediates
        return intermediates(self, inputs)

    def effective_precision(self) -> str:
        """The (inference, KV cache) pair every compiled model reads back, named; parts that disagree
        are reported as such (a verdict cannot be keyed by one of them)."""
        inference = {_prop(c, "INFERENCE_PRECISION_HINT") for c in self.compiled.values()}
        # KV_CACHE_PRECISION reads back on every compiled model; it only computes in one that keeps state
        stateful = stateful_parts(self.model)
        kv = {_prop(c, "KV_CACHE_PRECISION") for name, c in self.compiled.items() if name in stateful}
        if len(inference) != 1 or len(kv) > 1:
            return f"mixed:inference={sorted(inference)},kv_cache={sorted(kv)}"
        return eff.name(inference.pop(), kv.pop() if kv else None)

    def evidence(self) -> dict[str, Any]:
        if self._evidence is None:
            ov = _ov()
            parts = {name: {"execution_devices": _prop(c, "EXECUTION_DEVICES"),
                            "inference_precision": _prop(c, "INFERENCE_PRECISION_HINT"),
                            "kv_cache_precision": _prop(c, "KV_CACHE_PRECISION") if name != "encoder" else None}
                     for name, c in self.compiled.items()}
            precisions = sorted({str(p["inference_precision"]) for p in parts.values()})
            self._evidence = {
                "device": self.device, "full_device_name": core().get_property(self.device, "FULL_DEVICE_NAME"),
                "openvino": ov.get_version(), "compiled_models": parts,
                "execution_devices": sorted({d for p in parts.values() for d in p["execution_devices"]}),
                "placement": self.placement,
                "inference_precision": precisions[0] if len(precisions) == 1 else precisions,
                "ov_config": self.ov_config, "ov_model_class": type(self.model).__name__,
                "effective_precision": self.effective_precision(),
                "stateful": getattr(self.model, "stateful", None), "export": self.export.evidence(),
            }
        return self._evidence

    def close(self) -> None:
        self.model, self.compiled = None, {}


class OpenVINOBackend(OptimumBackend):
    name, label, prefix, exporter = "openvino", "OpenVINO", "OV", OPENVINO
    precisions = tuple(PRECISION_CONFIG)
    devices = tuple(d.lower() for d in DEVICES)

    def _target(self, device: str, precision: str) -> Availability:
        dev = device.upper()
        if dev not in DEVICES:
            raise Unsupported(f"unknown OpenVINO device {device!r}; known: {', '.join(DEVICES)}")
        available = core().available_devices
        if not any(a.split(".")[0] == dev for a in available):
            raise HardwareAbsent(f"OpenVINO {_ov().get_version()}: device {dev} not in Core().available_devices {available}")
        OPENVINO.modules()
        caps = core().get_property(dev, "OPTIMIZATION_CAPABILITIES")
        if precision == "bf16" and "BF16" not in caps:
            raise HardwareAbsent(f"OpenVINO {dev} does not list BF16 in OPTIMIZATION_CAPABILITIES {list(caps)}")
        return Availability(True, f"{dev}: {core().get_property(dev, 'FULL_DEVICE_NAME')}", details={"device": dev})

    def resolve_precision(self, device: str, precision: str, spec=None) -> str:
        """What a request computes with on this device for this model: the requested ov_config over the
        device's default inference precision; a KV cache precision only for the generative tasks, whose
        stateful export carries runtime option KV_CACHE_PRECISION=f16 (optimum-intel's exporter) unless
        the request sets it. The loaded session reads the pair back (effective_precision) and the
        plugin fails the cell where they differ."""
        dev = self.available(device, precision).require().details["device"]
        config = PRECISION_CONFIG[precision]
        inference = config.get("INFERENCE_PRECISION_HINT") or _prop_of_device(dev, "INFERENCE_PRECISION_HINT")
        stateful = spec is not None and TASKS.get(spec.task, ("", "", ""))[2] == "model"
        kv = (config.get("KV_CACHE_PRECISION") or EXPORT_KV_CACHE) if stateful else None
        return eff.name(inference, kv)

    def export(self, model_dir: Path, spec, precision: str) -> exports.Export:
        return openvino_export(model_dir, spec)

    def _open(self, cls, spec, target: Target, avail: Availability, export: exports.Export, mode: str,
              options: dict[str, Any] | None) -> OVSession:
        ov_config = {**PRECISION_CONFIG[target.precision], **(options or {})}
        model = cls.from_pretrained(str(export.path), device=avail.details["device"], ov_config=ov_config, compile=True)
        return OVSession(model, spec, target, avail.details["device"], export, mode, ov_config)

    def versions(self) -> dict[str, str]:
        return exports.dist_versions("openvino", "optimum", "optimum-intel", "nncf", "transformers", "torch", "numpy")
