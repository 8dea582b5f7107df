"""Self-tests of the export cache and the ONNX Runtime / OpenVINO / QNN backends.

The cache tests need only the standard stack. Backend tests run in that backend's env (nox -s
backendtests) on real exports of zoo models; a library that is not installed skips at the boundary
(pytest.importorskip). Nothing here fakes a model, framework or backend: parity is checked with the
real session and the real compare, and a planted defect (perturbed outputs) must make it fail.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from hfmatrix import exports, skips
from hfmatrix.backends import Target, get
from hfmatrix.compare import compare, tolerance
from hfmatrix.skips import HardwareAbsent, Unsupported


@pytest.fixture
def export_cache(tmp_path, monkeypatch):
    """A private export cache; the zoo stays where it is (materialize before switching)."""
    root = tmp_path / "cache"
    monkeypatch.setenv("HFMATRIX_CACHE", str(root))
    return root


# ------------------------------------------------------------------------------ cache mechanics
def _writer(calls: list):
    def make(out: Path) -> None:
        calls.append(out)
        (out / "model.bin").write_bytes(b"weights")
    return make


def test_export_made_once_then_reused(export_cache):
    calls: list = []
    first = exports.cached_export("demo", {"model": "abc", "opt": 1}, _writer(calls))
    second = exports.cached_export("demo", {"model": "abc", "opt": 1}, _writer(calls))
    assert len(calls) == 1 and not first.cached and second.cached
    assert first.path == second.path and (second.path / "model.bin").read_bytes() == b"weights"
    assert json.loads((first.path / exports.META).read_text())["parts"] == {"model": "abc", "opt": 1}
    assert not list(first.path.parent.glob(".tmp-*")), "temp dir left behind"


def test_key_changes_with_options_and_versions(export_cache):
    calls: list = []
    a = exports.cached_export("demo", {"model": "abc", "versions": {"x": "1"}}, _writer(calls))
    b = exports.cached_export("demo", {"model": "abc", "versions": {"x": "2"}}, _writer(calls))
    c = exports.cached_export("demo", {"model": "abd", "versions": {"x": "1"}}, _writer(calls))
    assert len({a.key, b.key, c.key}) == 3 and len(calls) == 3


def test_typed_refusal_cached_with_versions_and_retried_when_they_change(export_cache):
    calls: list = []

    def refuse(out: Path) -> None:
        calls.append(out)
        raise Unsupported("the EP reported ops it cannot place: ['Foo']")

    for _ in range(2):
        with pytest.raises(Unsupported, match="cannot place"):
            exports.cached_export("demo", {"model": "foo", "versions": {"lib": "1"}}, refuse)
    assert len(calls) == 1, "the refusal was not cached"
    verdict = next((export_cache / "exports" / "demo").glob("*.unsupported.json"))
    assert json.loads(verdict.read_text())["versions"] == {"lib": "1"}
    # the same verdict file under other versions (a key that does not hold them) is not trusted: retried
    data = json.loads(verdict.read_text())
    verdict.write_text(json.dumps({**data, "versions": {"lib": "0"}}))
    with pytest.raises(Unsupported, match="cannot place"):
        exports.cached_export("demo", {"model": "foo", "versions": {"lib": "1"}}, refuse)
    assert len(calls) == 2
    assert not list((export_cache / "exports" / "demo").glob(".tmp-*"))


def test_message_that_reads_like_a_refusal_is_a_failure(export_cache):
    """Only a typed refusal becomes a skip: an error whose text says "unsupported architecture" is a failure."""
    def refuse(out: Path) -> None:
        raise ValueError("Trying to export a foo model, that is a custom or unsupported architecture")

    with pytest.raises(ValueError, match="unsupported architecture"):
        exports.cached_export("demo", {"model": "foo2"}, refuse)
    with pytest.raises(exports.ExportFailed):
        exports.cached_export("demo", {"model": "foo2"}, refuse)


def test_crash_is_a_failure_not_a_skip_and_is_cached(export_cache):
    calls: list = []

    def crash(out: Path) -> None:
        calls.append(out)
        raise RuntimeError("Type Error: LayerNormalization bound to different types")

    with pytest.raises(RuntimeError, match="LayerNormalization"):
        exports.cached_export("demo", {"model": "bar"}, crash)
    with pytest.raises(exports.ExportFailed, match="LayerNormalization"):
        exports.cached_export("demo", {"model": "bar"}, crash)
    assert len(calls) == 1
    assert not issubclass(exports.ExportFailed, Unsupported)


def test_folder_digest_follows_content(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"a" * 10)
    before = exports.folder_digest(tmp_path)
    assert exports.folder_digest(tmp_path) == before
    time.sleep(0.01)
    (tmp_path / "model.safetensors").write_bytes(b"b" * 10)
    assert exports.folder_digest(tmp_path) != before


# ------------------------------------------------------------------------------ backend helpers
def _zoo(model_id: str):
    from hfmatrix.zoo import materialize
    from hfmatrix.zoo.spec import load_specs

    spec = load_specs()[model_id]
    return spec, materialize(spec)


def _parity(backend: str, device: str, precision: str, model_id: str, perturb: float):
    """(ok, comparison) of the real backend vs the CPU fp32 torch reference, outputs scaled by 1+perturb."""
    from hfmatrix.zoo.inputs import example

    spec, model_dir = _zoo(model_id)
    target = Target(backend, device, precision)
    session = get(backend).load(model_dir, spec, target)
    reference = get("torch").load(model_dir, spec, Target("torch", "cpu", "fp32"))
    inputs = example(spec, model_dir)
    actual = {k: v * (1.0 + perturb) if v.dtype.kind == "f" else v for k, v in session.run(inputs).items()}
    tol = tolerance(spec.id, backend, device, precision)
    result = compare(actual, reference.run(inputs), tol, spec.outputs)
    evidence = session.evidence()
    session.close()
    return result, tol, evidence


# ------------------------------------------------------------------------------ onnxruntime
@pytest.mark.parametrize("perturb,ok", [(0.0, True), (1e-3, False)])
def test_onnxruntime_parity_catches_perturbation(perturb, ok):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("optimum.onnxruntime")
    result, tol, evidence = _parity("onnxruntime", "cpu", "fp32", "bert", perturb)
    assert result.ok is ok, result.message(tol)
    assert evidence["sessions"]["model"]["providers"][0] == "CPUExecutionProvider"


def test_onnxruntime_missing_ep_is_hardware_absent():
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("optimum.onnxruntime")
    from hfmatrix.backends.onnxruntime_backend import EP_FOR_DEVICE

    backend = get("onnxruntime")
    missing = [d for d, eps in EP_FOR_DEVICE.items() if not any(ep in ort.get_available_providers() for ep in eps)]
    if not missing:
        pytest.skip("[hardware-absent] every EP this backend knows is available here")
    avail = backend.available(missing[0], "fp32")
    assert not avail.ok and avail.kind == "hardware-absent", avail
    spec, model_dir = _zoo("bert")
    with pytest.raises(HardwareAbsent, match="available providers"):
        backend.load(model_dir, spec, Target("onnxruntime", missing[0], "fp32"))


def test_onnxruntime_cuda_present_without_its_ep_is_a_failure(monkeypatch):
    """hwprobe finds an NVIDIA GPU (planted at its presence probe) but this onnxruntime has no CUDA EP: a
    build mismatch fails (DeviceUnusable), it is not hardware-absent."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("optimum.onnxruntime")
    import hwprobe.presence
    from hfmatrix.backends.base import UNUSABLE, DeviceUnusable

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("[hardware-absent] this onnxruntime has the CUDA EP: no mismatch to plant")
    monkeypatch.setitem(hwprobe.presence.PRESENT, "cuda", lambda: (True, ""))
    avail = get("onnxruntime").available("cuda", "fp32")
    assert (avail.ok, avail.kind) == (False, UNUSABLE) and "CUDAExecutionProvider" in avail.reason, avail
    with pytest.raises(DeviceUnusable):
        avail.require()


def test_onnxruntime_export_cache_reused(export_cache):
    pytest.importorskip("optimum.onnxruntime")
    spec, model_dir = _zoo("bert")
    n = len(exports.EXPORTED)
    t0 = time.perf_counter()
    first = get("onnxruntime").load(model_dir, spec, Target("onnxruntime", "cpu", "fp32"))
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    second = get("onnxruntime").load(model_dir, spec, Target("onnxruntime", "cpu", "fp32"))
    warm = time.perf_counter() - t0
    assert len(exports.EXPORTED) == n + 1, "second load exported again"
    assert not first.export.cached and second.export.cached and first.export.path == second.export.path
    assert warm < cold, (cold, warm)
    print(f"onnxruntime bert load: cold {cold:.2f}s (export {first.export.seconds:.2f}s), warm {warm:.2f}s")


def test_onnxruntime_exporter_refusal_is_a_registry_lookup_before_export(export_cache):
    """mixtral has no ONNX config in optimum's TasksManager: a typed refusal with that evidence, no export tried."""
    pytest.importorskip("optimum.onnxruntime")
    from hfmatrix.backends.optimum_common import ExporterRefused

    spec, model_dir = _zoo("mixtral")
    n = len(exports.EXPORTED)
    t0 = time.perf_counter()
    with pytest.raises(ExporterRefused, match="mixtral") as refused:
        get("onnxruntime").load(model_dir, spec, Target("onnxruntime", "cpu", "fp32"))
    assert time.perf_counter() - t0 < 5 and len(exports.EXPORTED) == n
    ev = refused.value.evidence
    assert ev["exporter"] == "onnx" and ev["supported_tasks"] == [] and "optimum-onnx" in ev["versions"]


def test_onnxruntime_placement_counts_nodes_and_lists_memcpy_and_shape_nodes():
    """ORT's assignment report (the boundary: a device EP cannot run here) with a node on CPU: a compute
    node off the EP counts against the share, an integer shape node and a Memcpy node are listed only."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("optimum.onnxruntime")
    from hfmatrix import placement
    from hfmatrix.backends.onnxruntime_backend import ep_placement, onnx_export
    from hfmatrix.placement import index_nodes

    spec, model_dir = _zoo("bert")
    graph = onnx_export(model_dir, spec).path / "model.onnx"
    real = ort.InferenceSession(str(graph), _recording(ort), providers=["CPUExecutionProvider"])
    nodes = [n for sub in real.get_provider_graph_assignment_info() for n in sub.get_nodes()]
    shape = next(n for n in nodes if n.op_type == "Shape")
    matmul = next(n for n in nodes if n.op_type == "MatMul")
    assert shape.name in index_nodes(graph) and matmul.name not in index_nodes(graph)
    ep = "CUDAExecutionProvider"

    class Report:  # ORT's OrtEpAssignedSubgraph: ep_name + get_nodes()
        def __init__(self, ep_name, nodes):
            self.ep_name, self._nodes = ep_name, nodes

        def get_nodes(self):
            return self._nodes

    class Memcpy:
        name, op_type, domain = "memcpy0", "MemcpyToHost", ""

    def session(on_cpu):
        rest = [n for n in nodes if n not in on_cpu]
        return type("S", (), {"get_provider_graph_assignment_info": lambda self: [
            Report(ep, rest + [Memcpy()]), Report("CPUExecutionProvider", on_cpu)]})()

    clean = ep_placement(session([shape]), ep, graph)
    assert clean["share"] == 1 and clean["not_counted"]["memcpy"] == {"MemcpyToHost": 1}
    assert sum(clean["not_counted"]["CPUExecutionProvider (shape/index nodes, by design)"].values()) == 1
    placement.require({"placement": clean})
    partial = ep_placement(session([shape, matmul]), ep, graph)
    assert partial["elsewhere"] == {"CPUExecutionProvider": {"MatMul": 1}} and partial["share"] < 1
    with pytest.raises(placement.PlacementIncomplete) as failed:
        placement.require({"placement": partial})
    assert failed.value.nodes == ["MatMul"]


def _recording(ort):
    so = ort.SessionOptions()
    so.add_session_config_entry("session.record_ep_graph_assignment_info", "1")
    return so


# ------------------------------------------------------------------------------ openvino
@pytest.mark.parametrize("perturb,ok", [(0.0, True), (1e-3, False)])
def test_openvino_parity_catches_perturbation(perturb, ok):
    pytest.importorskip("openvino")
    pytest.importorskip("optimum.intel.openvino")
    result, tol, evidence = _parity("openvino", "cpu", "fp32", "bert", perturb)
    assert result.ok is ok, result.message(tol)
    assert evidence["execution_devices"] == ["CPU"] and evidence["inference_precision"] == "f32"


def test_openvino_auto_reads_device_default():
    ov = pytest.importorskip("openvino")
    pytest.importorskip("optimum.intel.openvino")
    spec, model_dir = _zoo("bert")
    session = get("openvino").load(model_dir, spec, Target("openvino", "cpu", "auto"))
    default = ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()
    assert session.evidence()["inference_precision"] == default  # bf16 on avx512_bf16 CPUs, f32 elsewhere


@pytest.mark.parametrize("model_id", ["bert", "gpt2"])
@pytest.mark.parametrize("precision", ["auto", "fp32_kvfp16"])
def test_openvino_effective_precision_resolved_before_load_is_what_it_reads_back(model_id, precision):
    """The resolution that keys a cell's verdicts (before any model is loaded) names the pair the compiled
    models read back; a session computing at another pair (planted: the other request's config) is refused."""
    pytest.importorskip("optimum.intel.openvino")
    from hfmatrix.precision import check_read_back, resolve

    spec, model_dir = _zoo(model_id)
    target = resolve(Target("openvino", "cpu", precision), spec)
    session = get("openvino").load(model_dir, spec, target)
    assert check_read_back(target, session) == target.effective == session.evidence()["effective_precision"]
    if model_id == "bert":  # no KV cache: its precision computes nothing there, so it is not part of the name
        assert "_kv" not in target.effective, target
    other = resolve(Target("openvino", "cpu", "fp32"), spec)
    if other.effective != target.effective:
        with pytest.raises(RuntimeError, match="reads back effective precision"):
            check_read_back(other, session)
    session.close()


def test_openvino_bf16_target_exists_only_where_the_device_lists_bf16():
    ov = pytest.importorskip("openvino")
    pytest.importorskip("optimum.intel.openvino")
    has_bf16 = "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    avail = get("openvino").available("cpu", "bf16")
    assert avail.ok is has_bf16 and (has_bf16 or avail.kind == "hardware-absent"), avail


def test_openvino_missing_device_is_hardware_absent():
    ov = pytest.importorskip("openvino")
    pytest.importorskip("optimum.intel.openvino")
    missing = [d for d in ("GPU", "NPU") if not any(a.startswith(d) for a in ov.Core().available_devices)]
    if not missing:
        pytest.skip("[hardware-absent] GPU and NPU both present")
    avail = get("openvino").available(missing[0].lower(), "fp32")
    assert not avail.ok and avail.kind == "hardware-absent", avail


# ------------------------------------------------------------------------------ qnn
def test_qnn_minilm_fully_on_qnn():
    pytest.importorskip("onnxruntime_qnn")
    pytest.importorskip("optimum.onnxruntime")
    result, tol, evidence = _parity("qnn", "htp", "fp16", "minilm", 0.0)
    assert result.ok, result.message(tol)
    assert set(evidence["nodes_by_ep"]) == {"QNNExecutionProvider"} and evidence["nodes_by_ep"]["QNNExecutionProvider"] > 0
    assert evidence["backend_path"].endswith("libQnnHtp.so")
    assert evidence["placement"]["share"] == 1
    assert bool(evidence["placement"]["software"]) == bool(evidence["emulation"])  # the HTP simulator, flagged


def test_qnn_parity_catches_perturbation_beyond_fp16_noise():
    """fp16 noise is ~4e-3 relative here, so a 1e-3 plant is inside it; 5e-2 must fail."""
    pytest.importorskip("onnxruntime_qnn")
    pytest.importorskip("optimum.onnxruntime")
    result, tol, _ = _parity("qnn", "htp", "fp16", "bert", 5e-2)
    assert not result.ok


def test_qnn_refusal_is_what_qnn_reports_it_cannot_place(export_cache, tmp_path):
    """A graph with an op the HTP has no kernel for (Det): QNN with CPU fallback disabled refuses it; the typed
    refusal names the op from ORT's assignment report (fallback allowed), and is cached with the versions."""
    pytest.importorskip("onnxruntime_qnn")
    import onnx
    from onnx import TensorProto, helper

    from hfmatrix.backends.onnxruntime_backend import QNN_DEFAULT_OPTIONS, QnnSession
    from hfmatrix.placement import PlacementRefused

    folder = tmp_path / "export"
    folder.mkdir()
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 4, 4])
    outs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 4, 4]),
            helper.make_tensor_value_info("z", TensorProto.FLOAT, ["b"])]
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="relu"), helper.make_node("Det", ["x"], ["z"], name="det")]
    onnx.save(helper.make_model(helper.make_graph(nodes, "g", [x], outs), opset_imports=[helper.make_opsetid("", 17)]),
              str(folder / "model.onnx"))
    avail = get("qnn").available("htp", "fp16")
    if not avail.ok:
        skips.skip(avail.kind, avail.reason)
    session = QnnSession(exports.Export("onnx", "det-graph", folder, True, 0.0), None, Target("qnn", "htp", "fp16"),
                         avail.details["backend_path"], dict(QNN_DEFAULT_OPTIONS))
    with pytest.raises(PlacementRefused, match=r"cannot place \['Det'\]") as refused:
        session._context({"b": 1})
    assert refused.value.placement["elsewhere"] == {"CPUExecutionProvider": {"Det": 1}}
    verdict = json.loads(next((export_cache / "exports" / "qnn-context").glob("*.unsupported.json")).read_text())
    assert "onnxruntime-qnn" in verdict["versions"] and verdict["evidence"]["share"] == 0.5
    with pytest.raises(Unsupported, match="cached verdict"):
        session._context({"b": 1})


def test_qnn_missing_backend_library_is_hardware_absent():
    qnn = pytest.importorskip("onnxruntime_qnn")
    pytest.importorskip("optimum.onnxruntime")
    if os.path.exists(qnn.get_qnn_cpu_path()):
        pytest.skip("[hardware-absent] this onnxruntime-qnn ships libQnnCpu.so")
    avail = get("qnn").available("cpu", "fp16")
    assert not avail.ok and avail.kind == "hardware-absent" and "libQnnCpu.so" in avail.reason


def test_corrupted_copy_does_not_reuse_the_export(tmp_path):
    """A copy of a folder with one weight byte flipped gets its own key, manifest or not."""
    good = tmp_path / "good"
    good.mkdir()
    (good / "hfmatrix-manifest.json").write_text('{"files": {"model.safetensors": "abc"}}')
    (good / "model.safetensors").write_bytes(bytes(range(64)))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "hfmatrix-manifest.json").write_text((good / "hfmatrix-manifest.json").read_text())
    data = bytearray((good / "model.safetensors").read_bytes())
    data[10] ^= 0xFF
    (bad / "model.safetensors").write_bytes(bytes(data))
    assert exports.folder_digest(good) != exports.folder_digest(bad)


def test_source_with_missing_tensor_is_rejected_before_export(tmp_path):
    """An exporter loads the folder itself and would export a freshly initialised tensor silently."""
    pytest.importorskip("transformers")
    st = pytest.importorskip("safetensors.numpy")
    import shutil

    spec, model_dir = _zoo("bert")
    copy = tmp_path / "bert"
    shutil.copytree(model_dir, copy)
    tensors = st.load_file(str(copy / "model.safetensors"))
    tensors.pop("embeddings.word_embeddings.weight")
    st.save_file(tensors, str(copy / "model.safetensors"), metadata={"format": "pt"})
    assert exports.check_source(model_dir, spec.auto_class)["loading_info"] == "clean"
    with pytest.raises(exports.SourceRejected, match="missing_keys"):
        exports.check_source(copy, spec.auto_class)


# an exporter error whose words read like a refusal, planted in optimum's main_export (exports redirected to the
# test's own folder so the shared cache is neither used nor touched): it used to become unsupported-by-backend
MESSAGE_ONLY_REFUSAL = """
import os
from pathlib import Path
import optimum.exporters.onnx as onnx_exporters
import hfmatrix.exports as exports
exports.exports_root = lambda: Path(os.getcwd()) / "exports"
def main_export(*a, **k):
    raise ValueError("Trying to export a bert model, that is a custom or unsupported architecture, "
                     "is not supported yet")
onnx_exporters.main_export = main_export
"""


def _ort_load_session(pytester, zoo_cache, plant: str):
    """(exit code, record) of load_session[bert] on ONNX Runtime through the suite, with ``plant``. The env is
    checked without importing it here: pytester drops modules imported during a test, and torch re-imported
    in the same process crashes."""
    import importlib.util
    if importlib.util.find_spec("optimum") is None or importlib.util.find_spec("optimum.onnxruntime") is None:
        skips.skip(skips.DEPENDENCY_MISSING, "optimum-onnx is not installed in this env")
    from conftest import SUITES, run_suites

    result, records = run_suites(pytester, zoo_cache, str(SUITES / "test_load.py"), "--hfm-backend=onnxruntime",
                                 "--hfm-models=bert", "-k", "load_session", plant=plant)
    return result.ret, next(r for r in records if r["check"] == "load_session")


def test_exporter_error_that_only_says_unsupported_fails_through_the_suite(pytester, zoo_cache):
    ret, rec = _ort_load_session(pytester, zoo_cache, MESSAGE_ONLY_REFUSAL)
    assert rec["outcome"] in ("failed", "error") and not rec.get("skip_kind"), rec
    assert "not supported yet" in rec["message"], rec["message"]
    assert ret == 1


# ORT's assignment report (the boundary: no device EP runs here) planted to say the MatMul nodes ran on another
# EP than the requested CPU EP: a partial placement, which load_session must fail
PARTIAL_ORT = """
from onnxruntime.capi.onnxruntime_inference_collection import Session
_report = Session.get_provider_graph_assignment_info
class Moved:
    def __init__(self, ep_name, nodes):
        self.ep_name, self._nodes = ep_name, nodes
    def get_nodes(self):
        return self._nodes
def report(self):
    out = []
    for sub in _report(self):
        nodes = sub.get_nodes()
        out.append(Moved(sub.ep_name, [n for n in nodes if n.op_type != "MatMul"]))
        out.append(Moved("XnnpackExecutionProvider", [n for n in nodes if n.op_type == "MatMul"]))
    return out
Session.get_provider_graph_assignment_info = report
"""


def test_partial_ort_placement_fails_load_session_through_the_suite(pytester, zoo_cache):
    ret, rec = _ort_load_session(pytester, zoo_cache, PARTIAL_ORT)
    assert rec["outcome"] == "failed" and "PlacementIncomplete" in rec["message"], rec
    placed = rec["evidence"]["placement"]
    assert placed["elsewhere"] == {"XnnpackExecutionProvider": {"MatMul": 16}} and placed["share"] < 1, placed
    assert ret == 1
