"""ONNX Runtime intermediates for hfmatrix.localize: every node output of the exported graph.

The TorchScript ONNX exporter names nodes by module scope (``/encoder/layer.0/attention/self/query/MatMul``).
Each graph of the export gets every real-valued node output of rank >= 2 added as a graph output (types from
ONNX shape inference); a fresh ORTModel loads the same export with the session's provider, its sessions
are swapped for sessions of those graphs (same provider and options), and the same forward runs, so the
cell's EP, precision and optimum's input handling are what they are in the cell. The session under test
is never altered.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..localize import module_of
from .base import Arrays

_REAL = {1, 10, 11, 16}  # onnx FLOAT, FLOAT16, DOUBLE, BFLOAT16


def with_node_outputs(path: Path) -> tuple[bytes, dict[str, tuple[str, str]]]:
    """The graph at ``path`` with its module nodes' outputs added; output name -> (module path, op type)."""
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    info = {vi.name: vi for vi in [*model.graph.value_info, *model.graph.output]}  # outputs are nodes' too
    existing = {o.name for o in model.graph.output}
    added = {}
    for node in model.graph.node:
        module = module_of(node.name)
        if module is None or not node.output:
            continue
        vi = info.get(node.output[0])
        if vi is None or vi.type.tensor_type.elem_type not in _REAL or len(vi.type.tensor_type.shape.dim) < 2:
            continue
        if node.output[0] not in existing:
            model.graph.output.append(vi)
        added[node.output[0]] = (module, node.op_type)
    return model.SerializeToString(), added


class _Recorder:
    """An InferenceSession that remembers the named outputs of its last run."""

    def __init__(self, session):
        self._session, self.last = session, {}

    def run(self, output_names, feeds, *args, **kwargs):
        names = output_names or [o.name for o in self._session.get_outputs()]
        values = self._session.run(names, feeds, *args, **kwargs)
        self.last = dict(zip(names, values))
        return values

    def __getattr__(self, name):
        return getattr(self._session, name)


def intermediates(session, inputs: Arrays) -> list[tuple[str, str, np.ndarray]]:
    """(component::module path, op type, value) for every module node of every graph the session runs."""
    from .onnxruntime_backend import OrtSession, _ort, _sessions_of, placed_options
    ort = _ort()
    fresh = type(session.model).from_pretrained(str(session.export.path), provider=session.ep,
                                                 provider_options=dict(session.provider_options),
                                                 session_options=placed_options(), use_io_binding=False)
    twin = OrtSession(fresh, session.spec, session.target, session.ep, session.export, session.mode,
                      session.provider_options)
    parts = getattr(fresh, "parts", None) or [fresh]
    added: dict[str, dict[str, tuple[str, str]]] = {}
    recorders: dict[str, _Recorder] = {}
    for part in parts:
        stem = Path(part.path).stem
        graph, added[stem] = with_node_outputs(Path(part.path))
        part.session = recorders[stem] = _Recorder(ort.InferenceSession(
            graph, sess_options=placed_options(), providers=[session.ep], provider_options=[dict(session.provider_options)]))
    twin.sessions = _sessions_of(fresh)
    twin.run(inputs)
    entries = []
    for stem, outputs in added.items():
        component = stem.split("_")[0]   # encoder_model -> encoder, decoder_model -> decoder, model
        for name, (module, op) in outputs.items():
            if name in recorders[stem].last:
                entries.append((f"{component}::{module}", op, np.asarray(recorders[stem].last[name], dtype=np.float32)))
    twin.close()
    return entries
