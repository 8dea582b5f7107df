"""First divergent layer on the exported backends: one layer's weights scaled by 1.01 inside the exported
artifact (the OpenVINO IR, the ONNX graph; never the torch model), loaded through the backend's own load;
the harness must name that layer, and name nothing on the intact export. Runs in each backend's env
(`nox -s backendtests`, and after each exported backend session); elsewhere the library is missing and
the test skips at the boundary."""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

from hfmatrix import localize
from hfmatrix.backends import Target, get
from hfmatrix.compare import tolerance
from hfmatrix.zoo import example, load_specs, materialize

LAYERS = {"bert": "encoder.layer.1.output.dense", "llama": "model.layers.1.mlp.down_proj",
          "t5": "encoder.block.1.layer.1.DenseReluDense.wo"}


def _in_layer(node_name: str, layer: str) -> bool:
    path = localize.module_of(node_name)  # an encoder exported alone names `block.1…` what the model calls `encoder.block.1…`
    return bool(path) and (layer == path or layer.endswith("." + path))


def alter_ir(src: Path, dst: Path, layer: str, factor: float = 1.01) -> int:
    """Copy an OpenVINO export with the MatMul weights of ``layer`` scaled; returns how many were."""
    import openvino as ov
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.xml", "*.bin"))
    altered = 0
    for xml in sorted(src.glob("*.xml")):
        model = ov.Core().read_model(str(xml))  # read from the source: the copy's .bin is written below
        for op in model.get_ordered_ops():
            if op.get_type_name() == "MatMul" and _in_layer(op.get_friendly_name(), layer):
                weight = op.input_value(1).get_node()
                scaled = ov.opset13.constant(weight.get_data() * np.float32(factor))
                op.input(1).replace_source_output(scaled.output(0))
                altered += 1
        ov.save_model(model, str(dst / xml.name), compress_to_fp16=False)
    return altered


def alter_onnx(src: Path, dst: Path, layer: str, factor: float = 1.01) -> int:
    """Copy an ONNX export with the MatMul/Gemm weight initializers of ``layer`` scaled."""
    import onnx
    from onnx import numpy_helper
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.onnx", "*.onnx_data"))
    altered = 0
    for path in sorted(src.glob("*.onnx")):
        model = onnx.load(str(path))
        inits = {i.name: i for i in model.graph.initializer}
        for node in model.graph.node:
            if node.op_type in ("MatMul", "Gemm") and _in_layer(node.name, layer) and node.input[1] in inits:
                w = inits[node.input[1]]
                w.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w) * np.float32(factor), w.name))
                altered += 1
        onnx.save(model, str(dst / path.name))
    return altered


ROUTES = {  # backend -> (module with the export function, its name, alter)
    "openvino": ("hfmatrix.backends.openvino_backend", "openvino_export", alter_ir, "openvino"),
    "onnxruntime": ("hfmatrix.backends.onnxruntime_backend", "onnx_export", alter_onnx, "onnxruntime"),
}


def _localize(backend: str, model_id: str, tmp_path, monkeypatch, altered: bool) -> dict:
    module_name, export_name, alter, library = ROUTES[backend]
    pytest.importorskip(library)
    import importlib
    module = importlib.import_module(module_name)
    spec = load_specs()[model_id]
    folder = materialize(spec)
    if altered:
        export = getattr(module, export_name)(folder, spec)
        assert alter(export.path, tmp_path / "altered", LAYERS[model_id]) >= 1
        monkeypatch.setattr(module, export_name,
                            lambda *a, **k: dataclasses.replace(export, path=tmp_path / "altered"))
    target = Target(backend, "cpu", "fp32")
    session = get(backend).load(folder, spec, target)
    reference = get("torch").load(folder, spec, Target("torch"))
    try:
        return localize.localize(reference, session, example(spec, folder),
                                 tolerance(model_id, backend, "cpu", "fp32"))
    finally:
        session.close()
        reference.close()


@pytest.mark.parametrize("backend", sorted(ROUTES))
@pytest.mark.parametrize("model_id", sorted(LAYERS))
def test_layer_altered_in_the_export_is_named(backend, model_id, tmp_path, monkeypatch):
    found = _localize(backend, model_id, tmp_path, monkeypatch, altered=True)
    assert found.get("first"), found
    assert found["first"]["module"] == LAYERS[model_id] and not found["first"]["gradual"], found["summary"]


@pytest.mark.parametrize("backend", sorted(ROUTES))
@pytest.mark.parametrize("model_id", sorted(LAYERS))
def test_intact_export_names_nothing(backend, model_id, tmp_path, monkeypatch):
    found = _localize(backend, model_id, tmp_path, monkeypatch, altered=False)
    assert found["supported"] and found["compared"] > 20 and found["first"] is None, found
