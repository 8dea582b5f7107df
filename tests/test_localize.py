"""First divergent layer (hfmatrix.localize): the rule on its own, and through the suite path on a model
folder whose weights were altered in one layer — the harness must name that layer, and nothing on a
clean model. The exported backends' counterparts (a layer altered inside the OpenVINO IR / ONNX graph)
are in tests/test_backends_export.py."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from conftest import SUITES, outcomes, run_suites
from hfmatrix import localize

TOL = SimpleNamespace(atol=1e-5, rtol=1e-5)


def _points(*spec):
    return [localize.Point(name, "op", rel, rel, outside) for name, rel, outside in spec]


def test_rule_names_the_jump_not_the_growth_after_it():
    points = _points(("a.q", 1e-7, False), ("a.o", 1e-2, True), ("a", 2e-2, True), ("b.q", 3e-2, True), ("b", 4e-2, True))
    found = localize.first_divergence(points)
    assert found["module"] == "a.o" and not found["gradual"] and found["previous"]["module"] == "a.q"


def test_rule_ignores_a_mismatch_that_does_not_reach_the_output():
    # an exported node that is not the module's output (a folded op): off here, clean in its parent and at the end
    points = _points(("rotary", 1.4, True), ("layers.0.q", 1e-7, False), ("layers.0", 1e-7, False), ("norm", 1e-7, False))
    assert localize.first_divergence(points) is None
    # such a mismatch, clean again in its parent, does not hide a real divergence after it
    points = _points(("layers.0.attn.rot", 1.4, True), ("layers.0.attn", 1e-7, False), ("layers.0.mlp.down", 1e-2, True),
                     ("layers.0.mlp", 1e-2, True), ("layers.0", 1e-2, True), ("norm", 1e-2, True))
    assert localize.first_divergence(points)["module"] == "layers.0.mlp.down"


def test_rule_reports_even_growth_as_gradual():
    points = _points(("l0", 1e-3, True), ("l1", 2e-3, True), ("l2", 4e-3, True))
    # the first module outside tolerance with nothing before it counts as a jump
    assert localize.first_divergence(points)["module"] == "l0"
    points = _points(("l0", 1e-3, False), ("l1", 2e-3, True), ("l2", 4e-3, True))
    found = localize.first_divergence(points)
    assert found["module"] == "l1" and found["gradual"]


def test_candidates_take_the_subtree_tensor_closest_to_the_reference():
    ref = {"enc.block.0.ln": np.ones((1, 4, 8)), "enc.block.0": np.full((1, 4, 8), 2.0)}
    entries = [("encoder::block.0.ln", "Mul", np.zeros((1, 4, 8))),       # folded: not the module's output
               ("encoder::block.0.ln", "Add", np.ones((1, 4, 8))),
               ("encoder::block.0", "Add", np.full((1, 4, 8), 2.0))]
    points = localize.trace(ref, {}, entries, TOL)
    assert [(p.module, p.op, p.outside) for p in points] == [("enc.block.0.ln", "Add", False), ("enc.block.0", "Add", False)]


@pytest.mark.parametrize("name,expected", [
    ("__module.encoder.block.0.layer.1.DenseReluDense.wo/aten::linear/MatMul", "encoder.block.0.layer.1.DenseReluDense.wo"),
    ("/model/layers.0/self_attn/q_proj/MatMul", "model.layers.0.self_attn.q_proj"),
    ("/encoder/layer.1/attention/self/query/Add_1", "encoder.layer.1.attention.self.query"),
    ("Constant_71259", None),
    ("/Shape", None),
])
def test_module_of_exporter_node_names(name, expected):
    assert localize.module_of(name) == expected


# one layer's weights scaled by 1.01 in a copy of the folder the backend under test loads (the
# reference loads the intact folder): the artifact is altered, not the torch model in memory
ALTERED_LAYER = """
import shutil, tempfile
from pathlib import Path
from safetensors.numpy import load_file, save_file
import hfmatrix.plugin as plugin
LAYERS = {layers!r}
_load = plugin.load_session
def load_session(case, model_dir, *a, **k):
    tensor = LAYERS.get(case.spec.id)
    if tensor is None:
        return _load(case, model_dir, *a, **k)
    copy = Path(tempfile.mkdtemp(prefix="hfm-altered-", dir=Path.cwd())) / Path(model_dir).name  # the test's own dir
    shutil.copytree(model_dir, copy)
    weights = load_file(copy / "model.safetensors")
    weights[tensor] = weights[tensor] * 1.01
    save_file(weights, str(copy / "model.safetensors"), metadata={{"format": "pt"}})
    return _load(case, copy, *a, **k)
plugin.load_session = load_session
"""

LAYERS = {"bert": "encoder.layer.1.output.dense.weight",
          "llama": "model.layers.1.mlp.down_proj.weight",
          "t5": "encoder.block.1.layer.1.DenseReluDense.wo.weight"}


def test_parity_failure_names_the_altered_layer(pytester, zoo_cache):
    result, records = run_suites(pytester, zoo_cache, str(SUITES / "test_parity.py"), "--hfm-models=bert,llama,t5",
                                 "-k", "not parity_padded", plant=ALTERED_LAYER.format(layers=LAYERS))
    assert outcomes(records) == {f"parity[{m}]": "failed" for m in LAYERS}, result.stdout.str()[-3000:]
    for rec in records:
        where = rec["measures"]["first_divergence"]
        assert where["first"]["module"] == LAYERS[rec["model"]].removesuffix(".weight"), where
        # before it only fp32 rounding against the float64 reference (the cpu session's reference): a jump of >100x
        assert not where["first"]["gradual"] and where["first"]["previous"]["max_abs"] < where["first"]["max_abs"] / 100
        assert where["first"]["module"] in rec["message"]


def test_clean_parity_localizes_nothing_on_demand(pytester, zoo_cache):
    result, records = run_suites(pytester, zoo_cache, str(SUITES / "test_parity.py"), "--hfm-models=bert",
                                 "--hfm-localize", "-k", "not parity_padded")
    assert outcomes(records) == {"parity[bert]": "passed"}, result.stdout.str()[-3000:]
    where = records[0]["measures"]["first_divergence"]
    assert where["first"] is None and where["compared"] > 20
