"""OpenVINO intermediates for hfmatrix.localize: each module's output read from the IR itself.

The PyTorch frontend names every node ``__module.<module path>/aten::<op>/<Op>``. For each module path
every real-valued node of rank >= 2 is added as an extra model output (hfmatrix.localize takes, per
module, the tensor of its subtree closest to the reference: exporters fold a module's last op into the next); the export is
loaded again into a fresh OVModel with the session's ov_config (the session under test is never
altered), compiled, and run through the same forward as the session, so bf16 inference, the stateful
KV cache and optimum's own input handling are what they are in the cell.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..localize import module_of
from .base import Arrays

PREFIX = "hfm_localize/"
_NOT_OUTPUTS = {"Constant", "Parameter", "Result", "ShapeOf", "Assign", "ReadValue", "Convert"}


def module_nodes(ov_model) -> list[tuple[str, Any]]:
    """(module path, node) for every real-valued node of rank >= 2 inside a module's scope."""
    out = []
    for op in ov_model.get_ordered_ops():
        path = module_of(op.get_friendly_name())
        if path is None or op.get_type_name() in _NOT_OUTPUTS or op.get_output_size() != 1:
            continue
        if not op.get_output_element_type(0).is_real():
            continue
        rank = op.get_output_partial_shape(0).rank
        if rank.is_static and rank.get_length() >= 2:
            out.append((path, op))
    return out


def add_module_outputs(ov_model) -> dict[str, tuple[str, str]]:
    """Add every module node as a named output; returns output name -> (module path, op type)."""
    added = {}
    for j, (path, op) in enumerate(module_nodes(ov_model)):
        out = ov_model.add_outputs([op.output(0)])[0]
        name = f"{PREFIX}{j}"
        out.get_tensor().add_names({name})  # the node may already be a named output
        added[name] = (path, op.get_type_name())
    return added


def _parts(model) -> dict[str, Any]:
    comps = dict(getattr(model, "components", {}) or {})
    return comps or {"model": model}


def intermediates(session, inputs: Arrays) -> list[tuple[str, str, np.ndarray]]:
    """(module path, relative to its component where it was exported alone; op type; value) per node."""
    from .openvino_backend import OVSession
    fresh = type(session.model).from_pretrained(str(session.export.path), device=session.device,
                                                 ov_config=dict(session.ov_config), compile=False)
    parts = _parts(fresh)
    added = {name: add_module_outputs(part.model) for name, part in parts.items()}
    fresh.compile()
    twin = OVSession(fresh, session.spec, session.target, session.device, session.export, session.mode,
                     session.ov_config)
    recorders = {}
    for name, part in parts.items():  # a CompiledModel called directly keeps no tensors: record its results
        if not hasattr(part.request, "get_tensor"):
            part.request = recorders[name] = _Recorder(part.request)
    if "model" in twin.compiled and "model" in parts and session.mode == "graph":
        twin.compiled["model"] = recorders["model"]
    twin.run(inputs)
    entries = []
    for name, part in parts.items():
        for out_name, (path, op_type) in added[name].items():
            value = (recorders[name].last.get(out_name) if name in recorders
                     else part.request.get_tensor(out_name).data)
            if value is not None:
                entries.append((f"{name}::{path}", op_type, np.array(value, dtype=np.float32)))
    twin.close()
    return entries


class _Recorder:
    """A CompiledModel that remembers the named results of its last call."""

    def __init__(self, compiled):
        self._compiled, self.last = compiled, {}

    def __call__(self, *args, **kwargs):
        result = self._compiled(*args, **kwargs)
        self.last = {n: np.array(result[p]) for p in self._compiled.outputs for n in p.get_names()}
        return result

    def __getattr__(self, name):
        return getattr(self._compiled, name)
