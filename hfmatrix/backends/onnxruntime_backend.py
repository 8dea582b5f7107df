"""ONNX Runtime backends: ``onnxruntime`` (any execution provider by device) and ``qnn`` (QNN EP plugin).

Export goes through optimum-onnx the way users do it (``optimum.exporters.onnx.main_export``, as
``ORTModelFor*.from_pretrained(..., export=True)`` calls it), cached by hfmatrix.exports; sessions are
the ``ORTModelFor*`` classes users load (KV-cache decoding through their ``generate``).

Where it ran is read back, never assumed: every InferenceSession in use reports ``get_providers()``
and ORT's EP graph assignment (every node and its EP), summed into the evidence's ``placement``
(hfmatrix.placement; test_load asserts its share is 1). ORT silently falls back to CPU when an EP fails to
initialise; a session whose first provider is not the requested EP is a failure (PlacementIncomplete).
"""
from __future__ import annotations

import platform
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from .. import exports
from .. import placement as placing
from ..skips import DependencyMissing, HardwareAbsent, Unsupported
from .base import Arrays, Availability, BackendBase, SessionBase, Target
from .greedy import eos_ids, greedy
from .optimum_common import (TASKS, Exporter, OptimumBackend, OptimumSession, as_float32, check_names, export,
                             graph_feeds, implied_input)

# device name (the matrix's) -> execution providers that serve it, first available wins
EP_FOR_DEVICE: dict[str, tuple[str, ...]] = {
    "cpu": ("CPUExecutionProvider",),
    "cuda": ("CUDAExecutionProvider",),
    "tensorrt": ("TensorrtExecutionProvider",),
    "rocm": ("ROCMExecutionProvider", "MIGraphXExecutionProvider"),
    "openvino": ("OpenVINOExecutionProvider",),
    "coreml": ("CoreMLExecutionProvider",),
    "dml": ("DmlExecutionProvider",),
}

ONNX_FLOAT = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}
MEMCPY_OPS = {"MemcpyFromHost", "MemcpyToHost"}
CPU_EP = "CPUExecutionProvider"


def _ort():
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise DependencyMissing(f"onnxruntime not importable: {exc}") from None
    return ort


def placed_options():
    """SessionOptions of every session hfmatrix makes: quiet, and recording the EP graph assignment that
    ep_placement / assignment read (ORT refuses to report it unless asked before the session is built)."""
    so = _ort().SessionOptions()
    so.log_severity_level = 3
    so.add_session_config_entry("session.record_ep_graph_assignment_info", "1")
    return so


ONNX = Exporter(name="onnx", label="ONNX", requirement="optimum-onnx", package="optimum-onnx",
                models="optimum.onnxruntime", exporter="optimum.exporters.onnx",
                configs="optimum.exporters.onnx.model_configs",
                distributions=("optimum", "optimum-onnx", "transformers", "torch", "onnx"))


def onnx_export(model_dir: Path, spec, precision: str = "fp32", task: str | None = None) -> exports.Export:
    """The optimum-onnx export of ``model_dir`` for ``spec.task`` (or ``task``) in ``precision`` (cached)."""
    return export(ONNX, model_dir, spec, {"dtype": precision}, task, do_validation=False, no_post_process=True,
                  dtype=precision)


def _sessions_of(model) -> dict[str, Any]:
    """name -> InferenceSession for every ORT session an ORTModel holds."""
    parts = getattr(model, "parts", None)
    if parts:
        return {Path(p.path).stem: p.session for p in parts if getattr(p, "session", None) is not None}
    return {Path(model.path).stem: model.session}


def assignment(session) -> dict[str, Any]:
    """Nodes per EP after partitioning (needs session.record_ep_graph_assignment_info=1)."""
    by_ep: Counter = Counter()
    casts: Counter = Counter()
    for sub in session.get_provider_graph_assignment_info():
        nodes = sub.get_nodes()
        by_ep[sub.ep_name] += len(nodes)
        casts[sub.ep_name] += sum(1 for n in nodes if n.op_type == "Cast")
    return {"nodes_by_ep": dict(by_ep), "cast_nodes_by_ep": dict(casts)}


def ep_placement(session, ep: str, graph: Path | None, software: str | None = None) -> dict[str, Any]:
    """hfmatrix.placement for one InferenceSession: its nodes by EP from ORT's own assignment report
    (session.record_ep_graph_assignment_info). Memcpy nodes, and the integer shape/index nodes a device EP
    leaves on the CPU by design, are listed, not counted; every other node counts, wherever it landed."""
    index = placing.index_nodes(graph) if ep != CPU_EP and graph is not None else set()
    counted: dict[str, Counter] = {}
    listed: dict[str, Counter] = {}
    for sub in session.get_provider_graph_assignment_info():
        for node in sub.get_nodes():
            if node.op_type in MEMCPY_OPS:
                listed.setdefault("memcpy", Counter())[node.op_type] += 1
            elif sub.ep_name == CPU_EP and ep != CPU_EP and node.name in index:
                listed.setdefault(f"{CPU_EP} (shape/index nodes, by design)", Counter())[node.op_type] += 1
            else:
                counted.setdefault(sub.ep_name, Counter())[node.op_type] += 1
    return placing.build(ep, counted, not_counted=listed, software=software)


def _graph_dtypes(path: Path) -> dict[str, int]:
    """Initializer element types of the exported graph (weights only, external data not loaded)."""
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    count: Counter = Counter(onnx.helper.tensor_dtype_to_np_dtype(t.data_type).name for t in m.graph.initializer)
    count["Cast_nodes_in_export"] = sum(1 for n in m.graph.node if n.op_type == "Cast")
    return dict(count)


def feeds_for(session, inputs: Arrays) -> dict[str, np.ndarray]:
    """An InferenceSession's feeds from ours, in the dtypes its graph declares."""
    return graph_feeds(((a.name, ONNX_FLOAT.get(a.type) or (np.int64 if a.type == "tensor(int64)" else None))
                        for a in session.get_inputs()), inputs)


class OrtSession(OptimumSession):
    def __init__(self, model, spec, target: Target, ep: str, export: exports.Export, mode: str,
                 provider_options: dict[str, Any]):
        super().__init__(model, spec, target, export, mode)
        self.ep, self.provider_options = ep, provider_options
        self.sessions = _sessions_of(model)
        self.placements = {}
        for name, s in self.sessions.items():
            s.disable_fallback()  # else the python wrapper retries a failed run on CPU, silently
            used = s.get_providers()
            if not used or used[0] != ep:  # the EP was available but did not initialise: a failure, not a skip
                raise placing.PlacementIncomplete(f"requested {ep} (available in onnxruntime {_ort().__version__}) "
                                                  f"but ONNX Runtime session {name!r} runs on {used}", 0.0, [])
            self.placements[name] = ep_placement(s, ep, Path(s._model_path))
        self._evidence: dict[str, Any] | None = None

    def graph_inputs(self) -> set[str]:
        return {a.name for s in self.sessions.values() for a in s.get_inputs()}

    def run_graph(self, inputs: Arrays) -> Arrays:
        session = next(iter(self.sessions.values()))
        names = [o.name for o in session.get_outputs()]
        values = session.run(names, feeds_for(session, inputs))
        return {n: as_float32(v) for n, v in zip(names, values)}

    def intermediates(self, inputs: Arrays) -> list[tuple[str, str, np.ndarray]]:
        """Every module node's output on these inputs, from fresh sessions of the same graphs (hfmatrix.localize)."""
        from .onnxruntime_localize import intermediates
        return intermediates(self, inputs)

    def effective_precision(self) -> str:
        """The export's dtype: the floating dtype most of its graphs' initializers are in (hfmatrix.precision)."""
        from ..precision import of_parameters
        counts: dict[str, int] = {}
        for part in self.evidence()["sessions"].values():
            for dtype, n in part["initializer_dtypes"].items():
                counts[dtype] = counts.get(dtype, 0) + n
        return of_parameters(counts)

    def evidence(self) -> dict[str, Any]:
        if self._evidence is None:
            ort = _ort()
            per_session = {}
            for name, s in self.sessions.items():
                per_session[name] = {"providers": s.get_providers(), "provider_options": s.get_provider_options(),
                                     **assignment(s), "initializer_dtypes": _graph_dtypes(Path(s._model_path)),
                                     "placement": self.placements[name]}
            self._evidence = {
                "execution_provider": self.ep, "onnxruntime": ort.__version__,
                "placement": placing.merge(self.placements),
                "available_providers": ort.get_available_providers(), "sessions": per_session,
                "ort_model_class": type(self.model).__name__, "export": self.export.evidence(),
                "precision": self.target.precision,
            }
            if self.target.precision == "fp16":
                self._evidence["precision_note"] = (
                    "optimum fp16 export: fp16 weights and activations between ops; where the EP has no fp16 "
                    "kernel ORT computes through Cast nodes (InsertCastTransformer). nodes_by_ep and "
                    "cast_nodes_by_ep count the graph after ORT's optimizations, Cast_nodes_in_export before")
        return self._evidence

    def close(self) -> None:
        self.model, self.sessions = None, {}


class OnnxRuntimeBackend(OptimumBackend):
    name, label, prefix, exporter = "onnxruntime", "ONNX Runtime", "ORT", ONNX
    precisions = ("fp32", "fp16")
    devices = tuple(EP_FOR_DEVICE)
    no_class = frozenset({"image-text-to-text"})  # optimum-onnx 0.1.0 exports it but has no ORTModel for it

    def _target(self, device: str, precision: str) -> Availability:
        ort = _ort()
        if device not in EP_FOR_DEVICE:
            raise Unsupported(f"unknown onnxruntime device {device!r}; known: {', '.join(EP_FOR_DEVICE)}")
        available = ort.get_available_providers()
        ep = next((ep for ep in EP_FOR_DEVICE[device] if ep in available), None)
        if ep is None:
            raise HardwareAbsent(f"{' / '.join(EP_FOR_DEVICE[device])} not in onnxruntime {ort.__version__}'s "
                                 f"available providers {available}")
        ONNX.modules()
        return Availability(True, ep, details={"execution_provider": ep})

    def export(self, model_dir: Path, spec, precision: str) -> exports.Export:
        return onnx_export(model_dir, spec, precision)

    def _open(self, cls, spec, target: Target, avail: Availability, export: exports.Export, mode: str,
              options: dict[str, Any] | None) -> OrtSession:
        ep, options = avail.details["execution_provider"], dict(options or {})
        model = cls.from_pretrained(str(export.path), provider=ep, provider_options=options,
                                    session_options=placed_options(), use_io_binding=False if ep == CPU_EP else None)
        return OrtSession(model, spec, target, ep, export, mode, options)

    def versions(self) -> dict[str, str]:
        return exports.dist_versions("onnxruntime", "optimum", "optimum-onnx", "onnx", "transformers", "torch", "numpy")


# ----------------------------------------------------------------------------------------- QNN
QNN_EP = "QNNExecutionProvider"
QNN_BACKEND_LIBS = {"htp": "libQnnHtp.so", "cpu": "libQnnCpu.so", "gpu": "libQnnGpu.so"}
# task -> export task for QNN: single graphs that take static shapes. Decoders use the export without
# KV cache (one graph); generate() re-runs it at one fixed length (right padding, causal attention).
QNN_TASKS = {t: task for t, (_, task, mode) in TASKS.items() if mode == "graph"}
QNN_TASKS["text-generation"] = "text-generation"
QNN_DEFAULT_OPTIONS = {"soc_model": "60", "enable_htp_fp16_precision": "1"}


def _qnn():
    try:
        import onnxruntime_qnn
    except ImportError as exc:
        raise DependencyMissing(f"onnxruntime-qnn not importable: {exc}") from None
    return onnxruntime_qnn


def register_qnn() -> list:
    """Register the QNN plugin EP once per process; its EP devices."""
    ort, qnn = _ort(), _qnn()
    if not hasattr(ort, "register_execution_provider_library"):
        raise DependencyMissing(f"onnxruntime {ort.__version__} cannot register plugin EPs (onnxruntime-qnn needs >= 1.22)")
    devices = [d for d in ort.get_ep_devices() if d.ep_name == QNN_EP]
    if not devices:
        ort.register_execution_provider_library(QNN_EP, qnn.get_library_path())
        devices = [d for d in ort.get_ep_devices() if d.ep_name == QNN_EP]
    if not devices:
        raise HardwareAbsent(f"QNN EP registered from {qnn.get_library_path()} but offers no EP devices")
    return devices


def emulation_note(device: str) -> str | None:
    machine = platform.machine().lower()
    if device == "htp" and machine in ("x86_64", "amd64"):
        return f"{machine} host: libQnnHtp.so runs the HTP as a simulator, not on Qualcomm hardware"
    return None


def fixed_dims(session_inputs, inputs: Arrays) -> dict[str, int]:
    """dim_param -> size from the actual inputs (all graph inputs that share a name must agree)."""
    dims: dict[str, int] = {}
    for arg in session_inputs:
        value = implied_input(arg.name, inputs)
        if value is None:
            raise ValueError(f"graph input {arg.name!r} missing from the inputs {sorted(inputs)}")
        if np.ndim(value) != len(arg.shape):
            raise ValueError(f"input {arg.name!r} has rank {np.ndim(value)}, the graph takes {len(arg.shape)}")
        for axis, dim in enumerate(arg.shape):
            if isinstance(dim, str):
                size = int(np.shape(value)[axis])
                if dims.setdefault(dim, size) != size:
                    raise ValueError(f"inconsistent inputs: dim {dim!r} is {dims[dim]} and {size}")
    return dims


def static_model(export: exports.Export, dims: dict[str, int]) -> bytes:
    """The export with every dynamic dim fixed (onnxruntime.tools' make_dim_param_fixed), serialized.
    Kept in memory: fixing dims takes a second, QNN's graph preparation dominates; no disk per shape."""
    import onnx
    from onnxruntime.tools.onnx_model_utils import fix_output_shapes, make_dim_param_fixed

    model = onnx.load(str(export.path / "model.onnx"))
    for name, size in sorted(dims.items()):
        make_dim_param_fixed(model.graph, name, size)
    fix_output_shapes(model)
    return model.SerializeToString()


class QnnSession(SessionBase):
    """One QNN session per input-shape signature (static shapes), created on first use."""

    def __init__(self, export: exports.Export, spec, target: Target, backend_path: str, options: dict[str, str]):
        self.export, self.spec, self.target = export, spec, target
        self.backend_path, self.options = backend_path, options
        ort = _ort()
        self._dynamic_inputs = ort.InferenceSession(str(export.path / "model.onnx"),
                                                    providers=["CPUExecutionProvider"]).get_inputs()
        self.sessions: dict[tuple, Any] = {}
        self.max_sessions = 4
        self.compile_seconds: dict[str, float] = {}
        self.placements: dict[str, dict[str, Any]] = {}  # every shape ever prepared, kept for evidence

    def _options(self, context_file: str | None = None, cpu_fallback: bool = False):
        so = placed_options()
        # all on QNN, or fail (fallback only where _refusal asks QNN which nodes it would not take)
        so.add_session_config_entry("session.disable_cpu_ep_fallback", "0" if cpu_fallback else "1")
        if context_file:  # dump the prepared QNN graph (EPContext model, binary embedded)
            so.add_session_config_entry("ep.context_enable", "1")
            so.add_session_config_entry("ep.context_file_path", context_file)
            so.add_session_config_entry("ep.context_embed_mode", "1")
        so.add_provider_for_devices(register_qnn(), {"backend_path": self.backend_path, **self.options})
        return so

    def _refusal(self, model: bytes) -> placing.PlacementRefused | None:
        """Why QNN refused the graph with CPU fallback disabled, asked of QNN itself: the same graph with
        fallback allowed, and ORT's assignment report of which nodes QNN did not take. None when QNN takes
        every node (the refusal was something else: a failure)."""
        ort = _ort()
        placed = ep_placement(ort.InferenceSession(model, sess_options=self._options(cpu_fallback=True)), QNN_EP, None,
                              software=emulation_note(self.target.device))
        if placed["share"] >= 1:
            return None
        return placing.PlacementRefused(
            f"QNN ({Path(self.backend_path).name}) cannot place {placing.off_target(placed)} "
            f"({placed['share']:.1%} of the nodes on QNN with CPU fallback allowed)", placed)

    def _context(self, dims: dict[str, int]) -> exports.Export:
        """The QNN-prepared graph for these static dims, as an EPContext model (cached like an export):
        preparing minilm on the HTP simulator takes ~20 s, loading its context ~0.1 s. QNN's own report of
        nodes it cannot place is a typed refusal, cached with the versions."""
        ort = _ort()

        def make(out: Path) -> None:
            import json
            import time

            t0 = time.perf_counter()
            model = static_model(self.export, dims)
            try:
                session = ort.InferenceSession(model, sess_options=self._options(str(out / "model_ctx.onnx")))
            except Exception as exc:
                refused = self._refusal(model)
                if refused is None:
                    raise
                raise refused from exc
            placed = assignment(session)
            if set(placed["nodes_by_ep"]) != {QNN_EP}:
                raise placing.PlacementRefused(f"QNN placement incomplete: nodes by EP {placed['nodes_by_ep']}",
                                               placed)
            (out / "placement.json").write_text(json.dumps(
                {"graph": placed, "prepare_seconds": round(time.perf_counter() - t0, 3)}))

        parts = {"source": self.export.key, "dims": dims, "backend": Path(self.backend_path).name,
                 "options": self.options, "versions": exports.dist_versions("onnxruntime", "onnxruntime-qnn")}
        return exports.cached_export("qnn-context", parts, make)

    def _session(self, inputs: Arrays):
        import json
        import time

        dims = fixed_dims(self._dynamic_inputs, inputs)
        sig = tuple(sorted(dims.items()))
        if sig not in self.sessions:
            ort = _ort()
            context = self._context(dims)
            t0 = time.perf_counter()
            session = ort.InferenceSession(str(context.path / "model_ctx.onnx"), sess_options=self._options())
            session.disable_fallback()  # the python wrapper would otherwise retry a failed run on CPU
            loaded = assignment(session)
            if set(loaded["nodes_by_ep"]) != {QNN_EP}:  # the cached context was all on QNN: now it is not
                raise placing.PlacementIncomplete(f"QNN context model not fully on QNN: nodes by EP "
                                                  f"{loaded['nodes_by_ep']}", None, sorted(loaded["nodes_by_ep"]))
            name = "x".join(f"{k}={v}" for k, v in sig)
            prepared = json.loads((context.path / "placement.json").read_text())
            self.compile_seconds[name] = {"prepare_s": prepared["prepare_seconds"], "context_cached": context.cached,
                                          "load_s": round(time.perf_counter() - t0, 3)}
            self.placements[name] = {"providers": session.get_providers(), **prepared["graph"],
                                     "context_model_nodes": loaded["nodes_by_ep"]}
            while len(self.sessions) >= self.max_sessions:  # each holds a prepared HTP graph
                self.sessions.pop(next(iter(self.sessions)))
            self.sessions[sig] = session
        return self.sessions[sig]

    def run(self, inputs: Arrays) -> Arrays:
        check_names(inputs, {a.name for a in self._dynamic_inputs} | {"token_type_ids", "position_ids"})
        session = self._session(inputs)
        names = [o.name for o in session.get_outputs()]
        values = session.run(names, feeds_for(session, inputs))
        return {n: as_float32(v) for n, v in zip(names, values)}

    def generate(self, inputs: Arrays, max_new_tokens: int) -> np.ndarray:
        """Greedy decoding (hfmatrix.backends.greedy) on one static-shape graph: the sequence is right-padded
        to prompt + new tokens and re-run whole per step (no KV cache; causal attention keeps the padding out)."""
        if self.spec.task != "text-generation":
            raise Unsupported(f"qnn generate is wired for text-generation only, not {self.spec.task}")
        ids = np.asarray(inputs["input_ids"], dtype=np.int64)
        mask = np.asarray(inputs.get("attention_mask", np.ones_like(ids)), dtype=np.int64)
        batch, prompt = ids.shape
        total = prompt + max_new_tokens

        def next_logits(sofar: np.ndarray) -> np.ndarray:
            cur, rest = sofar.shape[1], total - sofar.shape[1]
            feed = {"input_ids": np.pad(sofar, ((0, 0), (0, rest))),
                    "attention_mask": np.concatenate([mask, np.ones((batch, cur - prompt), np.int64),
                                                      np.zeros((batch, rest), np.int64)], axis=1)}
            return self.run(feed)["logits"][:, cur - 1]

        out = greedy(next_logits, ids, max_new_tokens, eos_ids(self.export.path))
        self.generate_note = (f"greedy, {max_new_tokens} steps on one static graph of length {total} "
                              "(no KV cache), EOS suppressed as min_new_tokens does")
        return out

    def evidence(self) -> dict[str, Any]:
        ort, qnn = _ort(), _qnn()
        shapes = dict(self.placements)
        nodes = Counter()
        for v in shapes.values():
            nodes.update(v["nodes_by_ep"])
        return {
            "execution_provider": QNN_EP, "backend_path": self.backend_path, "provider_options": self.options,
            "onnxruntime": ort.__version__, "onnxruntime_qnn": exports.dist_versions("onnxruntime-qnn")["onnxruntime-qnn"],
            "ep_library": qnn.get_library_path(), "emulation": emulation_note(self.target.device),
            "cpu_ep_fallback": "disabled (session.disable_cpu_ep_fallback=1)",
            "nodes_by_ep": dict(nodes), "static_sessions": shapes, "compile_seconds": self.compile_seconds,
            "placement": placing.build(QNN_EP, {ep: {"nodes": n} for ep, n in nodes.items()},
                                       software=emulation_note(self.target.device)),
            "precision_note": "fp32 graph, HTP computes in fp16 (enable_htp_fp16_precision=1)",
            "generate": getattr(self, "generate_note", None),
            "export": self.export.evidence(),
        }

    def close(self) -> None:
        self.sessions = {}


class QnnBackend(BackendBase):
    name = "qnn"
    precisions = ("fp16",)
    devices = tuple(QNN_BACKEND_LIBS)

    def available(self, device: str, precision: str) -> Availability:
        if precision not in self.precisions:
            return Availability(False, f"qnn runs fp16 (HTP fp16 precision); got {precision}", "unsupported-by-backend")
        if device not in QNN_BACKEND_LIBS:
            return Availability(False, f"unknown QNN device {device!r}; known: {', '.join(QNN_BACKEND_LIBS)}",
                                "unsupported-by-backend")
        try:
            qnn = _qnn()
            ONNX.modules()
            lib = Path(qnn.get_library_path()).with_name(QNN_BACKEND_LIBS[device])
            if not lib.is_file():
                return Availability(False, f"onnxruntime-qnn {exports.dist_versions('onnxruntime-qnn')['onnxruntime-qnn']} "
                                    f"ships no {lib.name} (QNN {device} backend)", "hardware-absent")
            register_qnn()
        except (HardwareAbsent, DependencyMissing) as exc:
            return Availability(False, exc.reason, exc.kind)
        note = emulation_note(device)
        return Availability(True, f"QNN {device} via {lib.name}" + (f" ({note})" if note else ""),
                            details={"backend_path": str(lib)})

    def load(self, model_dir: Path, spec, target: Target, provider_options: dict[str, str] | None = None, *, allow_pickle: bool = False,
             trust_remote_code: bool = False) -> QnnSession:
        avail = self.available(target.device, target.precision).require()
        if spec.task not in QNN_TASKS:
            raise Unsupported(f"qnn backend runs single-graph tasks {sorted(QNN_TASKS)} with static shapes; "
                              f"{spec.task} needs a multi-graph encoder-decoder export")
        exports.refuse_opt_ins(Path(model_dir), allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
        export = onnx_export(Path(model_dir), spec, "fp32", task=QNN_TASKS[spec.task])
        options = {**QNN_DEFAULT_OPTIONS, **(provider_options or {})}
        session = QnnSession(export, spec, target, avail.details["backend_path"], options)
        # Prepare the example's shape now: placement is proven (or refused) at load, and evidence()
        # reports a real graph from the start instead of "nothing prepared yet".
        from ..zoo.inputs import example

        session._session(example(spec, model_dir))
        return session

    def versions(self) -> dict[str, str]:
        return exports.dist_versions("onnxruntime", "onnxruntime-qnn", "optimum", "optimum-onnx", "onnx",
                                     "transformers", "torch", "numpy")
