"""The web backend's own tests: a real Chromium, real onnxruntime-web, a tiny real ONNX graph.

Nothing here is faked. The graph is built with onnx.helper (embedding → mask → MatMul → Tanh →
MatMul, int64 inputs) and its reference comes from Python onnxruntime on the same file. Each test
that claims a device ran something reads the node placement ORT-web logged. Planted defects (a
weight perturbed in the served file, a wrong input) must make parity fail. Skips only when the
browser stack is genuinely absent, with kind dependency-missing.
"""
from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from hfmatrix import skips
from hfmatrix.backends import Target, get
from hfmatrix.compare import Tolerance, compare

# same graph, same runtime family: only kernel differences (SIMD, shader math) are allowed
ORT_TOL = Tolerance(atol=1e-5, rtol=1e-5, reason="same ONNX graph, onnxruntime vs onnxruntime-web", source="tests/test_web.py")
VOCAB, WIDTH, CLASSES = 32, 16, 5


def _need(module: str):
    try:
        return __import__(module)
    except ImportError as exc:
        skips.skip(skips.DEPENDENCY_MISSING, f"{module} not installed here ({exc}); the web env has it (envs/web.txt)")


def _tiny_graph(path: Path, *, perturb: float = 0.0) -> Path:
    onnx = _need("onnx")
    from onnx import TensorProto as T
    from onnx import helper as h
    from onnx import numpy_helper as nh

    rng = np.random.default_rng(0)
    emb = rng.standard_normal((VOCAB, WIDTH)).astype(np.float32)
    emb[7, 3] += perturb  # the planted defect: one weight of one token
    inits = [nh.from_array(emb, "emb"),
             nh.from_array((rng.standard_normal((WIDTH, WIDTH)) * 0.3).astype(np.float32), "w1"),
             nh.from_array((rng.standard_normal(WIDTH) * 0.1).astype(np.float32), "b1"),
             nh.from_array((rng.standard_normal((WIDTH, CLASSES)) * 0.3).astype(np.float32), "w2"),
             nh.from_array(np.array([-1], np.int64), "axes")]
    nodes = [h.make_node("Gather", ["emb", "input_ids"], ["e"]),
             h.make_node("Cast", ["attention_mask"], ["mf"], to=T.FLOAT),
             h.make_node("Unsqueeze", ["mf", "axes"], ["m3"]),
             h.make_node("Mul", ["e", "m3"], ["em"]),
             h.make_node("MatMul", ["em", "w1"], ["x"]),
             h.make_node("Add", ["x", "b1"], ["xb"]),
             h.make_node("Tanh", ["xb"], ["last_hidden_state"]),
             h.make_node("MatMul", ["last_hidden_state", "w2"], ["logits"])]
    graph = h.make_graph(nodes, "tiny", [h.make_tensor_value_info("input_ids", T.INT64, ["b", "s"]),
                                         h.make_tensor_value_info("attention_mask", T.INT64, ["b", "s"])],
                         [h.make_tensor_value_info("last_hidden_state", T.FLOAT, ["b", "s", WIDTH]),
                          h.make_tensor_value_info("logits", T.FLOAT, ["b", "s", CLASSES])], inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path / "model.onnx"))
    return path


def _cast_only_graph(path: Path) -> Path:
    """One Cast(int64 → float): this ORT-web build has no WebGPU kernel for it (measured)."""
    onnx = _need("onnx")
    from onnx import TensorProto as T
    from onnx import helper as h

    graph = h.make_graph([h.make_node("Cast", ["input_ids"], ["logits"], to=T.FLOAT)], "cast",
                         [h.make_tensor_value_info("input_ids", T.INT64, ["b", "s"])],
                         [h.make_tensor_value_info("logits", T.FLOAT, ["b", "s"])])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    path.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path / "model.onnx"))
    return path


def _reshape_graph(path: Path) -> Path:
    """Gather then Reshape to [0, -1, 4, 4] (0 copies the batch dim): a batch of 0 fails the Reshape, as in
    the zoo's bert export; on the WebGPU EP the session then answers no run again (measured)."""
    onnx = _need("onnx")
    from onnx import TensorProto as T
    from onnx import helper as h
    from onnx import numpy_helper as nh

    inits = [nh.from_array(np.random.default_rng(0).standard_normal((VOCAB, WIDTH)).astype(np.float32), "emb"),
             nh.from_array(np.array([0, -1, 4, 4], np.int64), "shape")]
    nodes = [h.make_node("Gather", ["emb", "input_ids"], ["e"]), h.make_node("Reshape", ["e", "shape"], ["r"]),
             h.make_node("Tanh", ["r"], ["logits"])]
    graph = h.make_graph(nodes, "reshape", [h.make_tensor_value_info("input_ids", T.INT64, ["b", "s"])],
                         [h.make_tensor_value_info("logits", T.FLOAT, ["b", "s", 4, 4])], inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    path.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path / "model.onnx"))
    return path


INPUTS = {"input_ids": np.array([[1, 7, 5, 30, 2], [7, 7, 3, 0, 0]], np.int64),
          "attention_mask": np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], np.int64)}


def _reference(folder: Path, inputs=INPUTS) -> dict[str, np.ndarray]:
    ort = _need("onnxruntime")
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, inputs)))


@pytest.fixture(scope="module")
def backend():
    b = get("web")
    avail = b.available("wasm", "fp32")
    if not avail.ok:
        # only a genuinely missing browser stack may skip; anything else is a failure
        assert avail.kind == skips.DEPENDENCY_MISSING, f"wasm unavailable for a reason other than a missing dependency: {avail}"
        skips.skip(avail.kind, avail.reason)
    return b


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return _tiny_graph(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def sessions(backend, tiny):
    """One page per device for the whole module (WebGPU runtime init + shader compile take seconds)."""
    opened: dict[str, object] = {}

    def open_(device):
        if device not in opened:
            avail = backend.available(device, "fp32")
            if not avail.ok:
                skips.skip(avail.kind, avail.reason)
            opened[device] = backend.load(tiny, None, Target("web", device, "fp32"))
        return opened[device]

    yield open_
    for s in opened.values():
        s.close()


# ---------------------------------------------------------------------------------------- probes

def test_webgpu_probe_never_calls_software_a_gpu(backend):
    from hwprobe.browser import SOFTWARE_REASON, is_software, probe_webgpu

    entry = probe_webgpu()
    details = entry["details"]
    assert details["secure_context"] is True and details["cross_origin_isolated"] is True, details
    if not entry["available"]:
        assert entry["kind"] == "hardware-absent" and entry["reason"]
        return
    adapter = details["adapter"]
    assert set(adapter) >= {"vendor", "architecture", "isFallbackAdapter"}
    assert details["software"] == is_software(adapter)
    if adapter["isFallbackAdapter"] or adapter["architecture"] == "swiftshader":
        assert details["software"] is True
        assert SOFTWARE_REASON in entry["reason"]


def test_webnn_probe_reports_the_browser_error(backend):
    """Available only if createContext() succeeds; otherwise the browser's own error is the reason."""
    from hwprobe.browser import probe_webnn

    entry = probe_webnn()
    if entry["available"]:
        assert "createContext" in entry["reason"]
        return
    assert entry["kind"] == "hardware-absent"
    # navigator.ml exists with the feature switch; the reason is what createContext() threw
    assert entry["reason"].startswith("navigator.ml.createContext("), entry["reason"]
    assert "Error" in entry["reason"], entry["reason"]


def test_webnn_is_hardware_absent_by_the_probe_and_a_session_error_is_a_failure(backend, tiny):
    """The typed skip comes from hwprobe's real createContext(); past it, onnxruntime-web's own error is a
    failure (never turned into a skip by its words)."""
    from hfmatrix.backends.web_backend import WebSession
    from hwprobe.browser import probe_webnn

    entry = probe_webnn()
    if entry["available"]:
        pytest.skip("[hardware-absent] WebNN works in this browser: nothing to prove absent")
    with pytest.raises(skips.HardwareAbsent) as via_backend:
        backend.load(tiny, None, Target("web", "webnn", "fp32"))
    assert via_backend.value.reason == entry["reason"]
    with pytest.raises(RuntimeError) as direct:  # bypass availability: ORT-web's own error
        WebSession(tiny / "model.onnx", None, Target("web", "webnn", "fp32"))
    assert not isinstance(direct.value, skips.TypedSkip)
    assert "webnn" in str(direct.value) and "Error" in str(direct.value), str(direct.value)


# ---------------------------------------------------------------------------------------- parity

@pytest.mark.parametrize("device", ["wasm", "webgpu"])
def test_parity_with_python_onnxruntime(sessions, tiny, device):
    session = sessions(device)
    actual = session.run(INPUTS)
    result = compare(actual, _reference(tiny), ORT_TOL)
    assert result.ok, result.message(ORT_TOL)
    assert sorted(actual) == ["last_hidden_state", "logits"]
    assert actual["logits"].dtype == np.float32 and actual["logits"].shape == (2, 5, CLASSES)


@pytest.mark.parametrize("device", ["wasm", "webgpu"])
def test_evidence_says_where_it_ran(sessions, device):
    session = sessions(device)
    session.run(INPUTS)
    session.run(INPUTS)
    ev = session.evidence()
    assert ev["requested_ep"] == device and ev["cross_origin_isolated"] is True
    placed = ev["graphs"]["model"]["placement"]  # the log's own count; ev["placement"] is hfmatrix.placement's
    assert ev["nodes_on_provider"] > 0 and placed[ev["provider"]]["nodes"] > 0
    assert ev["placement"]["requested"] == ev["provider"] and ev["placement"]["nodes_by_device"][ev["provider"]] > 0
    assert ev["browser"]["version"] and ev["onnxruntime_web"]
    costs = ev["costs"]
    for key in ("page_load_s", "runtime_init_s", "session_create_s", "first_run_s", "mean_run_s"):
        assert costs[key] is not None and costs[key] > 0, (key, costs)
    if device == "wasm":
        assert set(placed) == {"CPUExecutionProvider"} and ev["fallback_nodes"] == 0
        assert ev["placement"]["share"] == 1
        assert ev["bundle"] == "ort.wasm.min.mjs"
    else:
        from hwprobe.browser import is_software
        assert ev["provider"] == "WebGpuExecutionProvider"
        assert ev["adapter"] and ev["software"] == is_software(ev["adapter"])
        assert ev["gpu"] is (not ev["software"])
        # the int64 → float Cast has no WebGPU kernel in this build: a fallback, and reported as one
        assert ev["fallback_ops"].get("Cast") == ev["fallback_nodes"] == 1, placed
        # ... which hfmatrix.placement counts (share < 1) and names, and flags the software adapter
        assert ev["placement"]["elsewhere"] == {"CPUExecutionProvider": {"Cast": 1}}, ev["placement"]
        assert ev["placement"]["share"] < 1 and bool(ev["placement"]["software"]) == ev["software"]


def test_graph_with_no_node_on_webgpu_is_unsupported(backend, tmp_path):
    avail = backend.available("webgpu", "fp32")
    if not avail.ok:
        skips.skip(avail.kind, avail.reason)
    with pytest.raises(skips.Unsupported, match="placed none of the 1 nodes on WebGpuExecutionProvider"):
        backend.load(_cast_only_graph(tmp_path / "cast"), None, Target("web", "webgpu", "fp32"))


def test_a_run_that_does_not_answer_is_a_web_run_timeout_and_the_session_recovers(backend, tmp_path):
    """The real WebGPU hang behind the zero-size known bug (hfmatrix/known_failures.toml), on a tiny graph:
    the intact run after a refused batch-0 run never answers. With a 3 s deadline it raises WebRunTimeout
    carrying the seconds waited, and the session's next run (a new page) answers with ORT's numbers."""
    from hfmatrix.backends.web_backend import OrtWebError, WebRunTimeout

    avail = backend.available("webgpu", "fp32")
    if not avail.ok:
        skips.skip(avail.kind, avail.reason)
    folder = _reshape_graph(tmp_path / "reshape")
    intact = {"input_ids": INPUTS["input_ids"]}
    session = backend.load(folder, None, Target("web", "webgpu", "fp32"))
    try:
        session.deadline_floor_s = 3.0  # no run answered yet: the deadline is the floor
        with pytest.raises(OrtWebError, match="reshape"):
            session.run({"input_ids": intact["input_ids"][:0]})
        with pytest.raises(WebRunTimeout, match="did not answer within the run deadline of 3.0 s") as info:
            session.run(intact)
        assert info.value.seconds == 3.0
        assert compare(session.run(intact), _reference(folder, intact), ORT_TOL).ok
        assert session.evidence()["run_timeouts_s"] == [3.0]
        assert session.measures()["reopens"] == 1
    finally:
        session.close()
    with pytest.raises(RuntimeError, match="closed"):
        session.run(intact)


# ------------------------------------------------------------------------------- planted defects

def test_planted_weight_defect_fails_parity(backend, tiny, tmp_path):
    """The browser must compute from the file it was served: a perturbed weight shows up."""
    broken = _tiny_graph(tmp_path / "broken", perturb=1e-2)
    session = backend.load(broken, None, Target("web", "wasm", "fp32"))
    try:
        actual = session.run(INPUTS)
    finally:
        session.close()
    result = compare(actual, _reference(tiny), ORT_TOL)
    assert not result.ok, "a perturbed weight passed parity"
    assert result.per_key["logits"]["mismatched"] > 0
    assert compare(actual, _reference(broken), ORT_TOL).ok  # and it is exactly that defect


@pytest.mark.parametrize("device", ["wasm", "webgpu"])
def test_planted_wrong_input_fails_parity(sessions, tiny, device):
    session = sessions(device)
    wrong = {**INPUTS, "input_ids": INPUTS["input_ids"].copy()}
    wrong["input_ids"][0, 1] = 8  # one token changed
    result = compare(session.run(wrong), _reference(tiny), ORT_TOL)
    assert not result.ok, "a wrong input passed parity"


def test_int64_inputs_cross_exactly(sessions, tmp_path):
    """Token ids beyond 2**31 would be mangled by a float/int32 path; Gather on them must fail loudly
    in ORT (out of range) rather than silently read another row."""
    session = sessions("wasm")
    bad = {**INPUTS, "input_ids": np.array([[2**33 + 1, 1, 1, 1, 1], [1, 1, 1, 1, 1]], np.int64)}
    from hfmatrix.backends.web_backend import OrtWebError
    with pytest.raises(OrtWebError, match=r"indices element out of data bounds"):
        session.run(bad)


def test_adapter_refuses_what_it_used_to_cast_ignore_or_skip(sessions, tiny):
    """Float token ids were cast, unknown inputs ignored and a missing input skipped as unsupported:
    each is now the caller's error (the bad-input catalogue found all three)."""
    session = sessions("wasm")
    with pytest.raises(ValueError, match="input 'input_ids' has dtype float32, the graph takes int64"):
        session.run({**INPUTS, "input_ids": INPUTS["input_ids"].astype(np.float32)})
    with pytest.raises(ValueError, match=r"inputs \['extra'\] are not inputs of this model"):
        session.run({**INPUTS, "extra": INPUTS["input_ids"]})
    with pytest.raises(ValueError, match="graph input 'input_ids' missing from the inputs"):
        session.run({"attention_mask": INPUTS["attention_mask"]})
    assert compare(session.run(INPUTS), _reference(tiny), ORT_TOL).ok, "the session broke"


# ---------------------------------------------------------------------------------------- server

def test_origin_isolation_headers_and_no_escape(backend, tiny):
    from hwprobe.browser import origin

    o = origin()
    o.mount("t", tiny)
    try:
        with urllib.request.urlopen(f"{o.url}/t/model.onnx") as r:
            assert r.headers["Cross-Origin-Opener-Policy"] == "same-origin"
            assert r.headers["Cross-Origin-Embedder-Policy"] == "require-corp"
            assert r.read() == (tiny / "model.onnx").read_bytes()
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"{o.url}/t/../../../../etc/hostname")
        assert e.value.code == 404
        assert o.url.startswith("http://127.0.0.1:")
    finally:
        o.unmount("t")
