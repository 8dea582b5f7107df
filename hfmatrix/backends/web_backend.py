"""Web backend: ONNX exports run in Chromium by onnxruntime-web — devices wasm, webgpu, webnn (fp32).

How it runs: ``hwprobe.browser`` serves this package's page (hfmatrix/web/) and onnxruntime-web's
files (hfmatrix/web/node_modules, from ``npm ci``) on 127.0.0.1 with COOP/COEP, and starts one
Chromium per process (reused across models). Each session opens a page, imports the ORT-web bundle
for its device, creates an InferenceSession with ``executionProviders: [device]``, and gets inputs
and outputs as raw bytes (int64 as BigInt64Array in the page).

What it proves: every session is first created with ORT's verbose log to read the node placement
(``VerifyEachNodeIsAssignedToAnEp``), then released and created again quietly for the timed runs.
Nodes on CPUExecutionProvider under webgpu/webnn are a fallback and are reported as such; a graph
with no node on the requested provider did not run there and is unsupported, never a pass. The
WebGPU adapter ORT used (from its own GPUDevice) is in the evidence with ``software: true`` for
SwiftShader-style fallback adapters. WebNN is offered only when ``navigator.ml.createContext()``
works (hwprobe.browser); on this machine's Chromium it does not, so webnn is hardware-absent.

Costs are measured separately: browser start-up (once per process), page load (page + ORT bundle),
runtime init (the placement session: wasm compile, WebGPU device), session create, first run, mean
run (in-page ``session.run`` time) and the Python↔page transfer.
"""
from __future__ import annotations

import base64
import functools
import itertools
import json
import os
import re
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..skips import DEPENDENCY_MISSING, HARDWARE_ABSENT, UNSUPPORTED, DependencyMissing, Unsupported
from .. import placement as placing
from .base import Arrays, Availability, BackendBase, RunTimeout, SessionBase, Target
from .greedy import eos_ids, greedy
from .optimum_common import check_names, coerce, implied_input


class OrtWebError(RuntimeError):
    """onnxruntime-web refused a run in the page (OrtRun failed): its message without the Playwright
    wrapper, so callers and the bad-input catalogue can name what went wrong."""


class WebRunTimeout(RunTimeout):
    """The page's inference did not answer within the session's run deadline (``seconds``, waited in the
    page). The page is closed after it (its stuck run may hold the session or the device) and the session
    opens a new one on its next run, so a hang costs the deadline, not pytest's timeout."""


WEB_DIR = Path(__file__).resolve().parents[1] / "web"
ORT_PACKAGE = WEB_DIR / "node_modules" / "onnxruntime-web"
NPM_HINT = f"run `npm ci` in {WEB_DIR}"

# device -> the provider name ORT's placement log uses for it (ORT-web's "wasm" EP is ORT's CPU EP)
PROVIDERS = {"wasm": "CPUExecutionProvider", "webgpu": "WebGpuExecutionProvider", "webnn": "WebNNExecutionProvider"}
# graph outputs that are caches, not results (torch drops past_key_values the same way)
CACHE_OUTPUT = re.compile(r"^present[._]")
PAST_INPUT = re.compile(r"^past_key_values[._]")
# model types whose transformers generate() drops the decoder start token from what it returns
PROMPT_STRIPPED = {"whisper"}
MEMCPY_OPS = {"MemcpyFromHost", "MemcpyToHost"}
NP_TO_ORT = {"float32": "float32", "float16": "float16", "float64": "float64", "int64": "int64", "int32": "int32",
             "int16": "int16", "int8": "int8", "uint8": "uint8", "uint16": "uint16", "uint32": "uint32",
             "uint64": "uint64", "bool": "bool"}
ORT_TO_NP = {v: k for k, v in NP_TO_ORT.items()}
# A run's deadline: RUN_DEADLINE_FACTOR x the slowest run this session answered, never under the floor
# (HFMATRIX_WEB_RUN_DEADLINE_S, default 60 s: the floor is all a first run gets, and a first run on SwiftShader
# WebGPU compiles its shaders: bert 3.6 s measured, up to tens of seconds for bigger graphs; far below the
# suites' 300 s pytest timeout). A run that does not answer raises WebRunTimeout after it.
RUN_DEADLINE_FACTOR = 20
RUN_DEADLINE_FLOOR_S = 60.0


def _hwbrowser():
    import hwprobe.browser as hb  # hwprobe ships in the same distribution; playwright is imported later
    return hb


def ort_web_version() -> str | None:
    try:
        return json.loads((ORT_PACKAGE / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


def _require_runtime():
    """The origin with the page and ORT-web mounted, and this process's browser (typed skips if not)."""
    if ort_web_version() is None:
        raise DependencyMissing(f"onnxruntime-web is not installed: {NPM_HINT}")
    hb = _hwbrowser()
    try:
        browser = hb.browser()
    except hb.Missing as m:
        raise DependencyMissing(m.entry["reason"]) from None
    origin = hb.origin()
    origin.mount("app", WEB_DIR)
    origin.mount("ort", ORT_PACKAGE / "dist")
    return hb, origin, browser


# ----------------------------------------------------------------------------------- availability

def _wasm_available(hb) -> Availability:
    entry = hb.probe()["webgpu"]  # the probe page also says whether the page is cross-origin isolated
    isolated = entry["details"].get("cross_origin_isolated")
    return Availability(True, f"WebAssembly in Chromium {hb.browser().version} (crossOriginIsolated={isolated})",
                        details={"browser": hb.browser().details(), "cross_origin_isolated": isolated})


def _webgpu_available(hb) -> Availability:
    entry = hb.probe_webgpu()
    if not entry["available"]:
        return Availability(False, entry["reason"], entry.get("kind") or HARDWARE_ABSENT, entry["details"])
    if entry["details"].get("software") and os.environ.get("HFMATRIX_WEB_REQUIRE_GPU") == "1":
        return Availability(False, f"{entry['reason']} (HFMATRIX_WEB_REQUIRE_GPU=1)", HARDWARE_ABSENT, entry["details"])
    return Availability(True, entry["reason"], details=entry["details"])


def _webnn_available(hb) -> Availability:
    entry = hb.probe_webnn()
    if not entry["available"]:
        return Availability(False, entry["reason"], entry.get("kind") or HARDWARE_ABSENT, entry["details"])
    return Availability(True, entry["reason"], details=entry["details"])


AVAILABLE: dict[str, Callable[[Any], Availability]] = {
    "wasm": _wasm_available, "webgpu": _webgpu_available, "webnn": _webnn_available,
}


# -------------------------------------------------------------------------------------- placement

_PLACED = re.compile(r"(?:All nodes|Node\(s\)) placed on \[(\w+)\]\. Number of nodes: (\d+)")
_NODE = re.compile(r"VerifyEachNodeIsAssignedToAnEp\]\s{3}(\S+) \((.*)\)\s*$")
_NO_KERNEL = re.compile(r"kernel not found in registries for Op type: (\S+) node name: ?(.*)$")


def parse_placement(log: list[str]) -> dict[str, dict[str, Any]]:
    """ORT's verbose 'Node placements' block -> {provider: {"nodes": n, "ops": {op_type: count}}}."""
    placement: dict[str, dict[str, Any]] = {}
    current = None
    for line in log:
        m = _PLACED.search(line)
        if m:
            current = placement.setdefault(m.group(1), {"nodes": int(m.group(2)), "ops": {}})
            continue
        n = _NODE.search(line)
        if n and current is not None:
            current["ops"][n.group(1)] = current["ops"].get(n.group(1), 0) + 1
            current.setdefault("names", []).append([n.group(1), n.group(2)])
    return placement


def no_kernel_ops(log: list[str]) -> list[str]:
    """Op types the requested provider said it has no kernel for (why nodes fell back)."""
    return sorted({m.group(1) for m in map(_NO_KERNEL.search, log) if m})


def web_placement(device: str, placement: dict[str, dict[str, Any]], software: str | None = None,
                  index: set[str] = frozenset()) -> dict[str, Any]:
    """hfmatrix.placement from ORT's placement log: nodes by provider and op type. Memcpy nodes, and the
    integer shape/index nodes (``index``: placement.index_nodes of the graph) on the CPU next to a device EP,
    are listed, not counted; nodes the log counts without naming are counted as "?"."""
    provider = PROVIDERS[device]
    counted: dict[str, dict[str, int]] = {}
    listed: dict[str, dict[str, int]] = {}
    for ep, entry in placement.items():
        kinds = counted.setdefault(ep, {})
        for op, name in entry.get("names", []):
            by_design = ep == "CPUExecutionProvider" != provider and name in index
            key = "memcpy" if op in MEMCPY_OPS else f"{ep} (shape/index nodes, by design)" if by_design else None
            bucket = listed.setdefault(key, {}) if key else kinds
            bucket[op] = bucket.get(op, 0) + 1
        unnamed = entry["nodes"] - len(entry.get("names", []))
        if unnamed > 0:
            kinds["?"] = unnamed
    return placing.build(provider, counted, not_counted=listed, software=software)


def placement_verdict(device: str, placement: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Where the compute nodes ran; raises PlacementRefused (unsupported-by-backend) when the provider took
    none of them (ORT-web placed every node elsewhere: the EP's own report of what it cannot run)."""
    provider = PROVIDERS[device]
    if not placement:
        raise RuntimeError("onnxruntime-web logged no node placement: cannot prove where the model ran")

    def compute(entry):
        return entry["nodes"] - sum(c for op, c in entry["ops"].items() if op in MEMCPY_OPS)

    on_target = compute(placement[provider]) if provider in placement else 0
    total = sum(compute(e) for e in placement.values())
    elsewhere = {p: e for p, e in placement.items() if p != provider}
    if on_target == 0:
        raise placing.PlacementRefused(f"onnxruntime-web placed none of the {total} nodes on {provider} "
                                       f"(placement: { {p: e['nodes'] for p, e in placement.items()} })",
                                       web_placement(device, placement))
    return {
        "provider": provider,
        "nodes_on_provider": on_target,
        "nodes_total": total,
        "provider_fraction": round(on_target / total, 4) if total else 0.0,
        "fallback_nodes": total - on_target,
        "fallback_ops": {op: c for e in elsewhere.values() for op, c in e["ops"].items() if op not in MEMCPY_OPS},
    }


# ----------------------------------------------------------------------------------------- models

SEQ2SEQ = ("encoder_model", "decoder_model")


def onnx_graphs(model_dir: Path, spec: Any) -> tuple[dict[str, Path], Any]:
    """The ONNX graph(s) to run and the export they come from.

    A folder that already holds model.onnx is used as is (export None). Otherwise the onnxruntime
    backend's optimum-onnx export (cached by hfmatrix.exports, shared with that backend) provides
    them: {"model"} for single-graph tasks and decoders (KV-cache inputs fed empty), {"encoder_model",
    "decoder_model"} for encoder-decoders (decoder_with_past is not needed to recompute).
    """
    model_dir = Path(model_dir)
    if (model_dir / "model.onnx").is_file():
        return {"model": model_dir / "model.onnx"}, None
    try:
        from .onnxruntime_backend import onnx_export
    except ImportError as exc:
        raise DependencyMissing(f"the ONNX export (onnxruntime backend) is not importable here: {exc}") from None
    export = onnx_export(model_dir, spec, "fp32")
    found = {p.stem: p for p in export.path.glob("*.onnx")}
    if "model" in found:
        return {"model": found["model"]}, export
    if all(name in found for name in SEQ2SEQ):
        return {name: found[name] for name in SEQ2SEQ}, export
    raise Unsupported(f"the export of {getattr(spec, 'id', model_dir)} has graphs {sorted(found)}: no route to run them")


def external_data(path: Path) -> list[str]:
    """Files the graph keeps its weights in (ORT-web must be told about them)."""
    try:
        import onnx
    except ImportError:
        return sorted(p.name for p in path.parent.glob(f"{path.name}_data"))
    model = onnx.load(str(path), load_external_data=False)
    names = {e.value for t in model.graph.initializer if t.data_location == 1 for e in t.external_data if e.key == "location"}
    return sorted(names)


def _encode(array: np.ndarray) -> dict[str, Any]:
    array = np.ascontiguousarray(array)
    kind = NP_TO_ORT.get(array.dtype.name)
    if kind is None:
        raise Unsupported(f"input dtype {array.dtype} has no onnxruntime-web tensor type")
    little = array.astype(array.dtype.newbyteorder("<"), copy=False)
    return {"type": kind, "dims": list(array.shape), "b64": base64.b64encode(little.tobytes()).decode()}


def _decode(tensor: dict[str, Any]) -> np.ndarray:
    dtype = np.dtype(ORT_TO_NP[tensor["type"]]).newbyteorder("<")
    raw = np.frombuffer(base64.b64decode(tensor["b64"]), dtype=dtype).reshape(tensor["dims"])
    return raw.astype(dtype.newbyteorder("="))


def _merge_verdicts(verdicts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    on = sum(v["nodes_on_provider"] for v in verdicts.values())
    total = sum(v["nodes_total"] for v in verdicts.values())
    ops: dict[str, int] = {}
    for v in verdicts.values():
        for op, c in v["fallback_ops"].items():
            ops[op] = ops.get(op, 0) + c
    first = next(iter(verdicts.values()))
    return {"provider": first["provider"], "nodes_on_provider": on, "nodes_total": total,
            "provider_fraction": round(on / total, 4) if total else 0.0, "fallback_nodes": total - on,
            "fallback_ops": ops}


class WebSession(SessionBase):
    _ids = itertools.count()

    def __init__(self, graphs: dict[str, Path] | Path, spec: Any, target: Target, export: Any = None,
                 model_dir: Path | None = None, session_options: dict[str, Any] | None = None):
        self.graphs = {"model": graphs} if isinstance(graphs, Path) else dict(graphs)
        folders = {p.parent for p in self.graphs.values()}
        if len(folders) != 1:
            raise ValueError(f"graphs must share one folder, got {folders}")
        self.target, self.spec, self.export, self.model_dir = target, spec, export, model_dir
        self.session_options = dict(session_options or {})  # ORT-web SessionOptions, e.g. graphOptimizationLevel
        hb, origin, browser = _require_runtime()
        self._browser, self._origin = browser, origin
        self._prefix = f"m{next(self._ids)}-{os.getpid()}"
        self._base = origin.mount(self._prefix, folders.pop())
        self._runs_ms: list[float] = []
        self._closed = False
        self._timeouts: list[float] = []  # deadlines (s) of runs that did not answer
        self.deadline_floor_s = float(os.environ.get("HFMATRIX_WEB_RUN_DEADLINE_S") or RUN_DEADLINE_FLOOR_S)
        self._wall_ms: list[float] = []
        self._meta: dict[str, dict[str, Any]] = {}
        self._evidence: dict[str, Any] = {}
        self.page = browser.new_page()
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    def _open(self) -> None:
        device = self.target.device
        t0 = time.perf_counter()
        self.page.goto(f"{self._origin.url}/app/index.html")
        self.page.wait_for_function("window.hfmReady === true")
        page_info = self.page.evaluate("() => hfm.browser()")
        loaded = self.page.evaluate("ep => hfm.load(ep)", device)
        self._costs: dict[str, Any] = {"browser_start_s": round(self._browser.startup_s, 4),
                                       "page_load_s": round(time.perf_counter() - t0, 4),
                                       "runtime_init_s": 0.0, "session_create_s": 0.0}
        verdicts, per_graph, adapter, wasm, placed_here = {}, {}, None, set(), {}
        for name, path in self.graphs.items():
            url = self._base + path.name
            data = [{"path": f, "data": self._base + f} for f in external_data(path)]
            # 1) verbose session: where each node is placed; the first one also pays the runtime init
            placed = self._create(f"{name}:placement", url, data, verbose=True)
            log = placed.pop("log")
            placement = parse_placement(log)
            verdicts[name] = placement_verdict(device, placement)  # Unsupported when nothing ran there
            self.page.evaluate("n => hfm.release(n)", f"{name}:placement")
            # 2) the quiet session runs use
            timed = self._create(name, url, data, verbose=False)
            self._meta[name] = {"inputs": {m["name"]: m for m in timed.get("inputs") or
                                           [{"name": n} for n in timed["inputNames"]]},
                                "outputs": timed["outputNames"]}
            self._costs["runtime_init_s"] += placed["ms"] / 1000
            self._costs["session_create_s"] += timed["ms"] / 1000
            placed_here[name] = web_placement(device, placement, index=self._index(path))
            for entry in placement.values():  # node names: used just above, too long for every record
                entry.pop("names", None)
            per_graph[name] = {"file": path.name, "placement": placement, **verdicts[name],
                               "no_kernel_ops": no_kernel_ops(log)}
            adapter = adapter or timed.get("adapter") or placed.get("adapter")
            wasm.update(u.rsplit("/", 1)[-1] for u in timed.get("wasm", []))
        for key in ("runtime_init_s", "session_create_s"):
            self._costs[key] = round(self._costs[key], 4)
        software = _hwbrowser().is_software(adapter) if adapter else None
        stand_in = f"software WebGPU adapter {adapter}" if device == "webgpu" and software else None
        placed = {**placing.merge(placed_here), "software": stand_in}
        self._evidence = {
            "runtime": "onnxruntime-web",
            "onnxruntime_web": loaded.get("ortVersion") or ort_web_version(),
            "bundle": loaded["bundle"],
            "wasm_binary": sorted(wasm),
            "requested_ep": device,
            **_merge_verdicts(verdicts),
            "graphs": per_graph,
            "browser": self._browser.details(),
            "cross_origin_isolated": page_info["crossOriginIsolated"],
            "hardware_concurrency": page_info["hardwareConcurrency"],
            "wasm_threads": timed.get("numThreads"),
        }
        self._evidence["placement"] = placed  # hfmatrix.placement; each graph's log-level one is in graphs
        if self.export is not None:
            self._evidence["export"] = self.export.evidence()
        if device == "webgpu":
            # never claim a GPU for SwiftShader & co: software adapters are flagged and gpu is False
            self._evidence.update(adapter=adapter, software=software, gpu=bool(adapter) and not software)

    def _index(self, graph: Path) -> set[str]:
        """The graph's integer shape/index nodes, where ORT places them next to a device EP by design."""
        return placing.index_nodes(graph) if self.target.device != "wasm" else set()

    def _create(self, name: str, url: str, data: list[dict[str, str]], verbose: bool) -> dict[str, Any]:
        out = self.page.evaluate("([n, u, d, o, v]) => hfm.create(n, u, d, o, v)",
                                 [name, url, data, self.session_options, verbose])
        if "error" in out:
            raise self._create_error(out["error"], out.get("log", []))
        return out

    def _create_error(self, error: str, log: list[str]) -> Exception:
        """A typed refusal only where ORT's placement log names the ops the EP has no kernel for; any other
        creation error is a failure (availability was already proven by hwprobe's real context/adapter)."""
        device = self.target.device
        ops = no_kernel_ops(log)
        if ops:
            return placing.PlacementRefused(f"onnxruntime-web {device} has no kernel for {ops}: {error}",
                                            {"requested": PROVIDERS[device], "no_kernel_ops": ops})
        return RuntimeError(f"onnxruntime-web {device} session creation failed: {error}")

    # ------------------------------------------------------------------------------------ running

    @functools.cached_property
    def _takes(self) -> set[str]:
        """Every input name a run may carry: the graphs' inputs, plus decoder_input_ids (encoder-decoders)."""
        return {n for g in self._meta.values() for n in g["inputs"]} | {"decoder_input_ids"}

    def _feeds(self, graph: str, values: dict[str, Any], used: set[str]) -> dict[str, np.ndarray]:
        """The graph's inputs from ours, in the graph's declared dtypes; export-only inputs made up."""
        feeds: dict[str, np.ndarray] = {}
        metas = self._meta[graph]["inputs"]
        for name, meta in metas.items():
            if name in values and values[name] is not None:
                value = np.asarray(values[name])
                used.add(name)
            else:
                value = self._fill(name, meta, values)
            kind = meta.get("type")
            # within a kind only (int64 -> int32, float32 -> float16): float token ids are refused,
            # never truncated (as the onnxruntime backend does)
            feeds[name] = coerce(name, value, ORT_TO_NP[kind]) if kind in ORT_TO_NP else value
        return feeds

    @staticmethod
    def _fill(name: str, meta: dict[str, Any], values: dict[str, Any]) -> np.ndarray:
        """Inputs an export adds that a plain forward does not pass: an empty KV cache, and what the
        model computes itself (implied_input: positions, zero token types, as every optimum backend)."""
        given = {k: v for k, v in values.items() if v is not None}
        shape = meta.get("shape") or []
        if (PAST_INPUT.match(name) and "input_ids" in given and len(shape) == 4 and isinstance(shape[1], int)
                and isinstance(shape[3], int)):
            return np.zeros((np.shape(given["input_ids"])[0], shape[1], 0, shape[3]), dtype=np.float32)
        value = implied_input(name, given)
        if value is None:
            raise ValueError(f"graph input {name!r} missing from the inputs {sorted(given)} ({meta}; no rule makes it)")
        return value

    def run_deadline_s(self) -> float:
        """How long a run may take before it is a WebRunTimeout (see RUN_DEADLINE_FACTOR)."""
        return max(self.deadline_floor_s, RUN_DEADLINE_FACTOR * max(self._runs_ms, default=0.0) / 1000)

    def _reopen(self) -> None:
        """A new page with the same graphs after a run that did not answer; the first open's costs stay."""
        costs = self._costs
        self.page = self._browser.new_page()
        self._open()
        self._costs = {**costs, "reopens": costs.get("reopens", 0) + 1}

    def _timed_out(self, graph: str, deadline: float) -> WebRunTimeout:
        page, self.page = self.page, None
        try:
            page.close(run_before_unload=False)
        except Exception:  # noqa: BLE001 - a crashed page is already gone
            pass
        self._timeouts.append(round(deadline, 3))
        return WebRunTimeout(deadline, f"onnxruntime-web {self.target.device}: session.run of {graph!r} did not "
                                       f"answer within the run deadline of {deadline:.1f} s (page closed)")

    def _answer(self, graph: str, encoded: dict[str, Any], deadline: float) -> dict[str, Any]:
        """hfm.run's result, waited for with Playwright's own timeout (enforced outside the page, so it holds
        even when the run blocks the page's thread); WebRunTimeout when it does not answer in time."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        try:
            with self.page.expect_console_message(lambda m: m.text == "hfm:answered", timeout=deadline * 1000):
                self.page.evaluate("([n, f]) => hfm.start(n, f)", [graph, encoded])
        except PlaywrightTimeout:
            raise self._timed_out(graph, deadline) from None
        return self.page.evaluate("() => hfm.take()")

    def _run_graph(self, graph: str, feeds: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], float]:
        encoded = {k: _encode(v) for k, v in feeds.items()}
        deadline = self.run_deadline_s()
        try:
            result = self._answer(graph, encoded, deadline)
        except Exception as exc:  # playwright's Error: the page threw
            text = str(exc)
            if "OrtRun" not in text:
                raise
            raise OrtWebError(f"onnxruntime-web {self.target.device}: " + text.split("Error: ", 2)[-1].split("\n    at ")[0]) from None
        if result.get("warnings"):
            self._evidence.setdefault("run_warnings", result["warnings"][:20])
        return {name: _decode(t) for name, t in result["outputs"].items()}, result["ms"]

    def run(self, inputs: Arrays) -> Arrays:
        if self.page is None:  # the last run did not answer: its page is gone (not counted in this run's time)
            if self._closed:
                raise RuntimeError("the web session is closed")
            self._reopen()
        t0 = time.perf_counter()
        used: set[str] = set()
        check_names(inputs, self._takes)  # an input the model does not take is the caller's error, not ignored
        if "model" in self.graphs:
            out, ms = self._run_graph("model", self._feeds("model", inputs, used))
            result = {k: v for k, v in out.items() if not CACHE_OUTPUT.match(k)}
        else:  # encoder-decoder: encoder once, then the decoder on decoder_input_ids
            enc, ms_enc = self._run_graph("encoder_model", self._feeds("encoder_model", inputs, used))
            if "decoder_input_ids" not in inputs:
                raise Unsupported(f"encoder-decoder run needs decoder_input_ids; inputs are {sorted(inputs)}")
            used.add("decoder_input_ids")
            dec_values = {"input_ids": inputs["decoder_input_ids"], "encoder_hidden_states": enc["last_hidden_state"],
                          "encoder_attention_mask": inputs.get("attention_mask")}
            dec, ms_dec = self._run_graph("decoder_model", self._feeds("decoder_model", dec_values, set()))
            ms = ms_enc + ms_dec
            result = {"logits": dec["logits"], "encoder_last_hidden_state": enc["last_hidden_state"]}
        self._runs_ms.append(ms)
        self._wall_ms.append((time.perf_counter() - t0) * 1000)
        return result

    def generate(self, inputs: Arrays, max_new_tokens: int) -> np.ndarray:
        """Greedy decoding on the page by full recompute (hfmatrix.backends.greedy; the export's cache inputs
        are fed empty). Decoder-only: (batch, prompt+new); encoder-decoder: (batch, start+new)."""
        eos = eos_ids(self.model_dir, next(iter(self.graphs.values())).parent)
        if "model" in self.graphs:
            if "logits" not in self._meta["model"]["outputs"] or "input_ids" not in self._meta["model"]["inputs"]:
                raise Unsupported(f"{self.graphs['model'].name} is not a decoder (inputs "
                                  f"{sorted(self._meta['model']['inputs'])} → {self._meta['model']['outputs']})")
            ids = np.asarray(inputs["input_ids"]).astype(np.int64)
            mask = np.asarray(inputs.get("attention_mask", np.ones_like(ids))).astype(np.int64)
            if (np.diff(mask, axis=-1) < 0).any():
                raise Unsupported("right-padded batch: greedy decoding by recompute supports left padding only")

            def next_logits(sofar: np.ndarray) -> np.ndarray:
                grown = np.concatenate([mask, np.ones((len(sofar), sofar.shape[1] - ids.shape[1]), np.int64)], 1)
                return self.run({**inputs, "input_ids": sofar, "attention_mask": grown})["logits"][:, -1, :]
            return greedy(next_logits, ids, max_new_tokens, eos)
        start = self._config().get("decoder_start_token_id")
        if start is None:
            raise Unsupported("encoder-decoder config has no decoder_start_token_id")
        batch = next(iter(inputs.values())).shape[0]
        ids = greedy(lambda sofar: self.run({**inputs, "decoder_input_ids": sofar})["logits"][:, -1, :],
                     np.full((batch, 1), int(start), dtype=np.int64), max_new_tokens, eos)
        # transformers' Whisper generate returns the sequence without its decoder prompt (start token)
        return ids[:, 1:] if getattr(self.spec, "model_type", "") in PROMPT_STRIPPED else ids

    def _config(self) -> dict[str, Any]:
        for folder in (self.model_dir, next(iter(self.graphs.values())).parent):
            if folder is not None and (Path(folder) / "config.json").is_file():
                return json.loads((Path(folder) / "config.json").read_text())
        return {}

    # ---------------------------------------------------------------------------------- evidence

    def measures(self) -> dict[str, Any]:
        """Costs, each on its own: browser start-up (once per process), page load, runtime init,
        session create, first run, mean of the later runs (in-page session.run), transfer."""
        costs = dict(self._costs)
        if self._runs_ms:
            costs["first_run_s"] = round(self._runs_ms[0] / 1000, 6)
            later = self._runs_ms[1:]
            costs["mean_run_s"] = round(statistics.fmean(later) / 1000, 6) if later else None
            costs["runs"] = len(self._runs_ms)
            costs["mean_transfer_s"] = round(statistics.fmean(w - r for w, r in zip(self._wall_ms, self._runs_ms)) / 1000, 6)
        return costs

    def evidence(self) -> dict[str, Any]:
        out = {**self._evidence, "costs": self.measures()}
        if self._timeouts:
            out["run_timeouts_s"] = list(self._timeouts)
        return out

    def close(self) -> None:
        self._closed = True
        page, self.page = getattr(self, "page", None), None
        if page is not None:
            try:
                page.close()
            except Exception:  # noqa: BLE001 - a crashed page is already gone
                pass
        self._origin.unmount(self._prefix)


class WebBackend(BackendBase):
    name = "web"
    CAPABILITIES = frozenset()  # the model runs in Chromium's processes: this process's RSS and rlimits do not see it
    precisions = ("fp32",)
    devices = tuple(PROVIDERS)

    def available(self, device: str, precision: str) -> Availability:
        if device not in PROVIDERS:
            return Availability(False, f"unknown web device {device!r}; known: {', '.join(PROVIDERS)}", UNSUPPORTED)
        if precision not in self.precisions:
            return Availability(False, f"web backend runs the fp32 ONNX export only, not {precision}", UNSUPPORTED)
        try:
            hb, _, _ = _require_runtime()
        except DependencyMissing as e:
            return Availability(False, e.reason, DEPENDENCY_MISSING)
        return AVAILABLE[device](hb)

    def load(self, model_dir: Path, spec: Any, target: Target,
             session_options: dict[str, Any] | None = None, *, allow_pickle: bool = False,
             trust_remote_code: bool = False) -> WebSession:
        self.available(target.device, target.precision).require()
        from .. import exports
        exports.refuse_opt_ins(Path(model_dir), allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
        graphs, export = onnx_graphs(Path(model_dir), spec)
        return WebSession(graphs, spec, target, export=export, model_dir=Path(model_dir),
                          session_options=session_options)

    def versions(self) -> dict[str, str]:
        hb = _hwbrowser()
        path = hb.chromium_path()
        out = {"onnxruntime-web": ort_web_version() or "not installed"}
        from hwprobe._entry import dist_version
        out["playwright"] = dist_version("playwright") or "not installed"
        if path:
            out["chromium"] = next(iter(b.version for b in hb._browsers.values()), None) or hb.chromium_version(path)
        return out
