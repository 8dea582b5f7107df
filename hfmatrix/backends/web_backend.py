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
import itertools
import json
import os
import re
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..skips import DEPENDENCY_MISSING, HARDWARE_ABSENT, UNSUPPORTED, DependencyMissing, HardwareAbsent, Unsupported
from .base import Arrays, Availability, Target

WEB_DIR = Path(__file__).resolve().parents[1] / "web"
ORT_PACKAGE = WEB_DIR / "node_modules" / "onnxruntime-web"
NPM_HINT = f"run `npm ci` in {WEB_DIR}"

# device -> the provider name ORT's placement log uses for it (ORT-web's "wasm" EP is ORT's CPU EP)
PROVIDERS = {"wasm": "CPUExecutionProvider", "webgpu": "WebGpuExecutionProvider", "webnn": "WebNNExecutionProvider"}
# graph outputs that are caches, not results (torch drops past_key_values the same way)
CACHE_OUTPUT = re.compile(r"^present[._]")
PAST_INPUT = re.compile(r"^past_key_values[._]")
MEMCPY_OPS = {"MemcpyFromHost", "MemcpyToHost"}
NP_TO_ORT = {"float32": "float32", "float16": "float16", "float64": "float64", "int64": "int64", "int32": "int32",
             "int16": "int16", "int8": "int8", "uint8": "uint8", "uint16": "uint16", "uint32": "uint32",
             "uint64": "uint64", "bool": "bool"}
ORT_TO_NP = {v: k for k, v in NP_TO_ORT.items()}


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
    return placement


def no_kernel_ops(log: list[str]) -> list[str]:
    """Op types the requested provider said it has no kernel for (why nodes fell back)."""
    return sorted({m.group(1) for m in map(_NO_KERNEL.search, log) if m})


def placement_verdict(device: str, placement: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Where the compute nodes ran; raises Unsupported when none ran on the requested provider."""
    provider = PROVIDERS[device]
    if not placement:
        raise RuntimeError("onnxruntime-web logged no node placement: cannot prove where the model ran")

    def compute(entry):
        return entry["nodes"] - sum(c for op, c in entry["ops"].items() if op in MEMCPY_OPS)

    on_target = compute(placement[provider]) if provider in placement else 0
    total = sum(compute(e) for e in placement.values())
    elsewhere = {p: e for p, e in placement.items() if p != provider}
    if on_target == 0:
        raise Unsupported(f"onnxruntime-web placed none of the {total} nodes on {provider} "
                          f"(placement: { {p: e['nodes'] for p, e in placement.items()} })")
    return {
        "provider": provider,
        "nodes_on_provider": on_target,
        "nodes_total": total,
        "provider_fraction": round(on_target / total, 4) if total else 0.0,
        "fallback_nodes": total - on_target,
        "fallback_ops": {op: c for e in elsewhere.values() for op, c in e["ops"].items() if op not in MEMCPY_OPS},
    }


# ----------------------------------------------------------------------------------------- models

def onnx_files(model_dir: Path, spec: Any) -> dict[str, Path]:
    """The ONNX graph(s) for a model folder: {"model": path} for single-graph models.

    A folder that already holds model.onnx is used as is. Otherwise the onnxruntime backend's
    export (hfmatrix.exports, same cache) provides it.
    """
    model_dir = Path(model_dir)
    if (model_dir / "model.onnx").is_file():
        return {"model": model_dir / "model.onnx"}
    try:
        from .. import exports
    except ImportError as exc:
        raise DependencyMissing(f"no model.onnx in {model_dir} and the ONNX export (hfmatrix.exports) is not "
                                f"importable here: {exc}") from None
    return exports.onnx_graphs(model_dir, spec)


def external_data(path: Path) -> list[str]:
    """Files the graph keeps its weights in (ORT-web must be told about them)."""
    try:
        import onnx
        model = onnx.load(str(path), load_external_data=False)
    except ImportError:
        return sorted(p.name for p in path.parent.glob(f"{path.name}_data"))
    names = {e.value for t in model.graph.initializer if t.data_location == 1 for e in t.external_data if e.key == "location"}
    return sorted(names)


def _encode(array: np.ndarray) -> dict[str, Any]:
    array = np.ascontiguousarray(array)
    kind = NP_TO_ORT.get(array.dtype.name)
    if kind is None:
        raise Unsupported(f"input dtype {array.dtype} has no onnxruntime-web tensor type")
    return {"type": kind, "dims": list(array.shape), "b64": base64.b64encode(array.astype(array.dtype.newbyteorder("<")).tobytes()).decode()}


def _decode(tensor: dict[str, Any]) -> np.ndarray:
    dtype = np.dtype(ORT_TO_NP[tensor["type"]]).newbyteorder("<")
    return np.frombuffer(base64.b64decode(tensor["b64"]), dtype=dtype).reshape(tensor["dims"]).astype(dtype.newbyteorder("="))


class WebSession:
    _ids = itertools.count()

    def __init__(self, graph: Path, spec: Any, target: Target):
        self.target = target
        self.spec = spec
        self.graph = graph
        hb, origin, browser = _require_runtime()
        self._browser = browser
        self._prefix = f"m{next(self._ids)}-{os.getpid()}"
        self._url = origin.mount(self._prefix, graph.parent) + graph.name
        self._origin = origin
        self._runs_ms: list[float] = []
        self._wall_ms: list[float] = []
        self.ignored_inputs: set[str] = set()
        self._evidence: dict[str, Any] = {}
        self.page = browser.new_page()
        try:
            self._open(hb)
        except BaseException:
            self.close()
            raise

    def _open(self, hb) -> None:
        device = self.target.device
        t0 = time.perf_counter()
        self.page.goto(f"{self._origin.url}/app/index.html")
        self.page.wait_for_function("window.hfmReady === true")
        page_info = self.page.evaluate("() => hfm.browser()")
        loaded = self.page.evaluate("ep => hfm.load(ep)", device)
        page_load_s = time.perf_counter() - t0
        data = [{"path": name, "data": self._url.rsplit("/", 1)[0] + "/" + name} for name in external_data(self.graph)]

        # 1) verbose session: where each node is placed (and the first-session runtime init)
        placed = self._create("placement", data, verbose=True)
        log = placed.pop("log")
        placement = parse_placement(log)
        verdict = placement_verdict(device, placement)  # raises Unsupported when nothing ran there
        self.page.evaluate("n => hfm.release(n)", "placement")
        # 2) the quiet session every run uses
        timed = self._create("main", data, verbose=False)
        timed.pop("log")
        self._inputs = {m["name"]: m for m in timed.get("inputs", [])} or {n: {"name": n} for n in timed["inputNames"]}
        self._output_names = timed["outputNames"]

        adapter = timed.get("adapter") or placed.get("adapter")
        software = _hwbrowser().is_software(adapter) if adapter else None
        self._evidence = {
            "runtime": "onnxruntime-web",
            "onnxruntime_web": loaded.get("ortVersion") or ort_web_version(),
            "bundle": loaded["bundle"],
            "wasm_binary": sorted({u.rsplit("/", 1)[-1] for u in timed.get("wasm", [])}),
            "requested_ep": device,
            "placement": placement,
            **verdict,
            "no_kernel_ops": no_kernel_ops(log),
            "browser": self._browser.details(),
            "cross_origin_isolated": page_info["crossOriginIsolated"],
            "hardware_concurrency": page_info["hardwareConcurrency"],
            "wasm_threads": timed.get("numThreads"),
            "graph": self.graph.name,
        }
        if device == "webgpu":
            self._evidence.update(adapter=adapter, software=software,
                                  gpu=bool(adapter) and not software)  # never claim a GPU for SwiftShader
        self._costs = {
            "browser_start_s": round(self._browser.startup_s, 4),
            "page_load_s": round(page_load_s, 4),
            "runtime_init_s": round(placed["ms"] / 1000, 4),  # first session: wasm compile, WebGPU device, placement log
            "session_create_s": round(timed["ms"] / 1000, 4),
        }

    def _create(self, name: str, data: list[dict[str, str]], verbose: bool) -> dict[str, Any]:
        out = self.page.evaluate("([n, u, d, v]) => hfm.create(n, u, d, {}, v)", [name, self._url, data, verbose])
        if "error" in out:
            raise self._create_error(out["error"], out.get("log", []))
        return out

    def _create_error(self, error: str, log: list[str]) -> Exception:
        device = self.target.device
        if device != "wasm" and re.search(r"no available backend|not supported|NotSupportedError|WebNN|adapter", error, re.I):
            return HardwareAbsent(f"onnxruntime-web could not create a {device} session: {error}")
        ops = no_kernel_ops(log)
        if "NOT_IMPLEMENTED" in error or "Could not find an implementation" in error:
            return Unsupported(f"onnxruntime-web {device}: {error}" + (f" (no kernel: {ops})" if ops else ""))
        return RuntimeError(f"onnxruntime-web {device} session creation failed: {error}")

    # ------------------------------------------------------------------------------------ running

    def _feeds(self, inputs: Arrays) -> dict[str, np.ndarray]:
        feeds: dict[str, np.ndarray] = {}
        for name, value in inputs.items():
            if name in self._inputs:
                feeds[name] = np.asarray(value)
            else:
                self.ignored_inputs.add(name)  # reported in evidence: the graph does not take it
        missing = [n for n in self._inputs if n not in feeds]
        for name in missing:
            feeds[name] = self._fill(name, feeds)
        return feeds

    def _fill(self, name: str, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """Inputs an export adds that a plain forward does not pass: an empty KV cache, positions."""
        meta = self._inputs[name]
        ids = feeds.get("input_ids")
        if PAST_INPUT.match(name) and ids is not None:
            shape = [d if isinstance(d, int) else None for d in meta.get("shape", [])]
            if len(shape) == 4 and shape[1] is not None and shape[3] is not None:
                return np.zeros((ids.shape[0], shape[1], 0, shape[3]), dtype=np.float32)
        if name == "position_ids" and ids is not None:
            mask = feeds.get("attention_mask", np.ones_like(ids))
            pos = np.cumsum(mask, axis=-1) - 1
            return np.where(mask == 0, 1, pos).astype(np.int64)
        raise Unsupported(f"graph input {name!r} ({meta}) has no value in the inputs {sorted(feeds)} "
                          "and no rule to make one")

    def run(self, inputs: Arrays) -> Arrays:
        feeds = {k: _encode(v) for k, v in self._feeds(inputs).items()}
        t0 = time.perf_counter()
        result = self.page.evaluate("([n, f]) => hfm.run(n, f)", ["main", feeds])
        self._wall_ms.append((time.perf_counter() - t0) * 1000)
        self._runs_ms.append(result["ms"])
        if result.get("warnings"):
            self._evidence.setdefault("run_warnings", result["warnings"][:20])
        return {name: _decode(t) for name, t in result["outputs"].items() if not CACHE_OUTPUT.match(name)}

    def generate(self, inputs: Arrays, max_new_tokens: int) -> np.ndarray:
        """Greedy decoding by full recompute (no KV cache) on the page: decoder-only graphs."""
        if "logits" not in self._output_names or "input_ids" not in self._inputs:
            raise Unsupported(f"greedy generation on the web backend needs a decoder graph with input_ids → logits; "
                              f"{self.graph.name} has {sorted(self._inputs)} → {self._output_names}")
        ids = np.asarray(inputs["input_ids"]).astype(np.int64)
        mask = np.asarray(inputs.get("attention_mask", np.ones_like(ids))).astype(np.int64)
        if (np.diff(mask, axis=-1) < 0).any():
            raise Unsupported("right-padded batch: greedy decoding by recompute here supports left padding only")
        for _ in range(max_new_tokens):
            step = {**inputs, "input_ids": ids, "attention_mask": mask}
            logits = self.run(step)["logits"]
            nxt = logits[:, -1, :].argmax(axis=-1).astype(np.int64)[:, None]
            ids = np.concatenate([ids, nxt], axis=1)
            mask = np.concatenate([mask, np.ones_like(nxt)], axis=1)
        return ids

    # ---------------------------------------------------------------------------------- evidence

    def measures(self) -> dict[str, Any]:
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
        if self.ignored_inputs:
            out["ignored_inputs"] = sorted(self.ignored_inputs)
        return out

    def close(self) -> None:
        page, self.page = getattr(self, "page", None), None
        if page is not None:
            try:
                page.close()
            except Exception:  # noqa: BLE001 - a crashed page is already gone
                pass
        self._origin.unmount(self._prefix)


class WebBackend:
    name = "web"
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

    def load(self, model_dir: Path, spec: Any, target: Target, **options: Any) -> WebSession:
        avail = self.available(target.device, target.precision)
        if not avail.ok:
            raise {HARDWARE_ABSENT: HardwareAbsent, DEPENDENCY_MISSING: DependencyMissing}.get(avail.kind, Unsupported)(avail.reason)
        graphs = onnx_files(model_dir, spec)
        if set(graphs) != {"model"}:
            raise Unsupported(f"{getattr(spec, 'id', model_dir)} exports to several graphs ({', '.join(sorted(graphs))}); "
                              "the web backend runs single-graph models")
        return WebSession(graphs["model"], spec, target)

    def versions(self) -> dict[str, str]:
        hb = _hwbrowser()
        path = hb.chromium_path()
        out = {"onnxruntime-web": ort_web_version() or "not installed"}
        from hwprobe._entry import dist_version
        out["playwright"] = dist_version("playwright") or "not installed"
        if path:
            out["chromium"] = next(iter(b.version for b in hb._browsers.values()), None) or hb.chromium_version(path)
        return out
