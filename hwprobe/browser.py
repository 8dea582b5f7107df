"""Browser probes: WebGPU and WebNN as a real Chromium page sees them.

Facts this is built on (measured, see shared notes): navigator.gpu / navigator.ml exist only in a
secure context, so pages are served from http://127.0.0.1 (never about:blank), with COOP/COEP so
they are cross-origin isolated like the page the web backend runs models in. Chromium keeps only
the last ``--enable-features=`` switch, so every feature goes into one. ``--enable-unsafe-webgpu``
on a machine without a GPU gives SwiftShader's fallback adapter: reported available but
``software: true`` with a reason that says so, never as a GPU. WebNN counts as available only
when ``navigator.ml.createContext()`` succeeds; otherwise the browser's own error is the reason.

Also the one place that knows how to start Chromium here (``browser()``) and serve pages
(``origin()``); the web backend (hfmatrix.backends.web_backend) builds on both.
Importable alone: stdlib at import time; Playwright is imported when a browser starts.
"""
from __future__ import annotations

import atexit
import http.server
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Mapping

from ._entry import DEPENDENCY_MISSING, HARDWARE_ABSENT, Missing, absent, dist_version, ok, require

#: where Debian/Ubuntu put Chromium; HFMATRIX_CHROMIUM overrides
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
INSTALL_HINT = "apt-get update && apt-get install -y --no-install-recommends chromium"
#: Chromium features the web backend needs: all of them go into ONE --enable-features= switch
FEATURES = ("WebMachineLearningNeuralNetwork",)
SOFTWARE_REASON = "software (SwiftShader fallback) WebGPU — not a GPU"
_SOFTWARE_WORDS = ("swiftshader", "llvmpipe", "lavapipe", "software", "microsoft basic render")

COOP_COEP = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def chromium_path() -> str | None:
    override = os.environ.get("HFMATRIX_CHROMIUM")
    if override:
        return override if os.access(override, os.X_OK) else None
    return next((c for c in CHROMIUM_CANDIDATES if os.access(c, os.X_OK)), None)


def launch_args() -> list[str]:
    """Chromium switches: extra features via HFMATRIX_CHROMIUM_FEATURES (comma-separated), extra
    switches via HFMATRIX_CHROMIUM_ARGS (e.g. --use-vulkan on a machine with a GPU)."""
    features = [*FEATURES, *filter(None, os.environ.get("HFMATRIX_CHROMIUM_FEATURES", "").split(","))]
    extra = os.environ.get("HFMATRIX_CHROMIUM_ARGS", "").split()
    if any(a.startswith("--enable-features=") for a in extra):
        raise ValueError("put extra features in HFMATRIX_CHROMIUM_FEATURES: Chromium keeps only the last --enable-features=")
    return ["--enable-unsafe-webgpu", f"--enable-features={','.join(dict.fromkeys(features))}", *extra]


def chromium_version(path: str) -> str:
    """Version from ``chromium --version`` without starting a browser ("Chromium 156.0.8078.108 built on ...")."""
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as e:
        return f"unknown ({type(e).__name__})"
    return next((w for w in out.split() if w[:1].isdigit()), out.strip() or "unknown")


def is_software(adapter: Mapping[str, Any] | None) -> bool:
    """A fallback/CPU-emulated WebGPU adapter (SwiftShader, llvmpipe, ...): not a GPU."""
    if not adapter:
        return False
    text = " ".join(str(adapter.get(k) or "") for k in ("vendor", "architecture", "description")).lower()
    return bool(adapter.get("isFallbackAdapter")) or any(w in text for w in _SOFTWARE_WORDS)


# ------------------------------------------------------------------------------------------ the origin

class Origin:
    """A threaded static server on 127.0.0.1:<ephemeral port>, COOP/COEP on every response.

    ``mount(prefix, folder)`` serves a folder under ``/prefix/`` (never anything outside it);
    ``page(path, html)`` serves a string. One per process (``origin()``), shut down at exit.
    """

    def __init__(self) -> None:
        self._mounts: dict[str, Path] = {}
        self._pages: dict[str, bytes] = {}
        self._lock = threading.Lock()
        origin = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                              ".mjs": "text/javascript", ".js": "text/javascript",
                              ".wasm": "application/wasm", ".onnx": "application/octet-stream"}

            def translate_path(self, path: str) -> str:
                prefix, _, rest = path.split("?", 1)[0].split("#", 1)[0].lstrip("/").partition("/")
                with origin._lock:
                    root = origin._mounts.get(prefix)
                if root is None:
                    return "/nonexistent/hfmatrix"
                target = (root / rest).resolve()
                return str(target) if target == root or root in target.parents else "/nonexistent/hfmatrix"

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                body = origin._pages.get(self.path.split("?", 1)[0])
                if body is None:
                    return super().do_GET()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return None

            def end_headers(self) -> None:
                for key, value in COOP_COEP.items():
                    self.send_header(key, value)
                self.send_header("Cache-Control", "no-store")
                super().end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="hwprobe-origin", daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def mount(self, prefix: str, folder: Path | str) -> str:
        if not prefix or "/" in prefix:
            raise ValueError(f"mount prefix must be one path segment, got {prefix!r}")
        with self._lock:
            self._mounts[prefix] = Path(folder).resolve()
        return f"{self.url}/{prefix}/"

    def unmount(self, prefix: str) -> None:
        with self._lock:
            self._mounts.pop(prefix, None)

    def page(self, path: str, html: str) -> str:
        self._pages[path] = html.encode()
        return self.url + path

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


_origin: Origin | None = None
_origin_lock = threading.Lock()


def origin() -> Origin:
    global _origin
    with _origin_lock:
        if _origin is None:
            _origin = Origin()
            atexit.register(_origin.close)
    return _origin


# ----------------------------------------------------------------------------------------- the browser

class Browser:
    """Chromium through Playwright's sync API. Raises Missing(dependency-missing) when Chromium or
    Playwright is absent or Chromium will not start: the message says which and how to fix it."""

    def __init__(self) -> None:
        path = chromium_path()
        if path is None:
            raise Missing(DEPENDENCY_MISSING, f"Chromium not found at {' or '.join(CHROMIUM_CANDIDATES)} "
                          f"(install: `{INSTALL_HINT}`, or set HFMATRIX_CHROMIUM)")
        require("playwright.sync_api", "playwright")
        from playwright.sync_api import sync_playwright

        self.executable = path
        self.args = launch_args()
        t0 = time.perf_counter()
        self._playwright = sync_playwright().start()
        try:
            self.browser = self._playwright.chromium.launch(executable_path=path, args=self.args, headless=True)
        except Exception as e:  # noqa: BLE001 - any launch failure is a missing working browser
            self._playwright.stop()
            raise Missing(DEPENDENCY_MISSING, f"Chromium at {path} failed to start: {' '.join(str(e).split())[:400]}") from None
        self.startup_s = time.perf_counter() - t0
        self.version = self.browser.version
        self.thread = threading.get_ident()

    def details(self) -> dict[str, Any]:
        return {"executable": self.executable, "version": self.version, "args": self.args,
                "playwright": dist_version("playwright"), "startup_s": round(self.startup_s, 3)}

    def new_page(self):
        page = self.browser.new_page()
        page.set_default_timeout(float(os.environ.get("HFMATRIX_WEB_TIMEOUT_S", "300")) * 1000)
        return page

    def close(self) -> None:
        try:
            self.browser.close()
        finally:
            self._playwright.stop()


# Playwright's sync API is bound to the thread that started it (hwprobe runs probes in a worker
# thread), so there is one browser per thread; the main thread's is the one models reuse.
_browsers: dict[int, Browser] = {}


def browser() -> Browser:
    """This thread's Chromium, launched on first use and reused by every page after it."""
    key = threading.get_ident()
    if key not in _browsers:
        _browsers[key] = Browser()
    return _browsers[key]


def close_browser() -> None:
    """Close this thread's browser (the next browser() starts a new one)."""
    b = _browsers.pop(threading.get_ident(), None)
    if b is not None:
        b.close()


@atexit.register
def _close_at_exit() -> None:
    # only the main thread's can be closed from here; others die with their Playwright driver pipe
    try:
        close_browser()
    except Exception:  # noqa: BLE001 - at exit a dead browser is not worth a traceback
        pass


# ------------------------------------------------------------------------------------------- probes

_PROBE_PAGE = "<!doctype html><meta charset='utf-8'><title>hwprobe</title><body>hwprobe browser probe</body>"

# One evaluate answers both, from a secure, cross-origin isolated page.
_PROBE_JS = """
async (webnnDeviceType) => {
  const errorText = (e) => (e && e.name && e.message ? `${e.name}: ${e.message}` : String(e));
  const page = {isSecureContext: self.isSecureContext, crossOriginIsolated: self.crossOriginIsolated,
                userAgent: navigator.userAgent};
  const webgpu = async () => {
    if (!navigator.gpu) return {available: false, reason: 'navigator.gpu is undefined in a secure page'};
    let adapter;
    try { adapter = await navigator.gpu.requestAdapter(); }
    catch (e) { return {available: false, reason: `navigator.gpu.requestAdapter() threw ${errorText(e)}`}; }
    if (!adapter) return {available: false, reason: 'navigator.gpu.requestAdapter() returned null: no WebGPU adapter'};
    const info = adapter.info || {};
    const adapterInfo = {vendor: info.vendor, architecture: info.architecture, device: info.device,
                         description: info.description,
                         isFallbackAdapter: Boolean(info.isFallbackAdapter ?? adapter.isFallbackAdapter ?? false)};
    try { (await adapter.requestDevice()).destroy(); }
    catch (e) { return {available: false, adapter: adapterInfo, reason: `requestDevice() failed: ${errorText(e)}`}; }
    return {available: true, adapter: adapterInfo, features: [...adapter.features].sort()};
  };
  const webnn = async () => {
    if (!navigator.ml) return {available: false, reason: 'navigator.ml is undefined in a secure page'};
    const options = webnnDeviceType ? {deviceType: webnnDeviceType} : {};
    try { await navigator.ml.createContext(options); return {available: true}; }
    catch (e) { return {available: false, reason: `navigator.ml.createContext(${JSON.stringify(options)}) failed: ${errorText(e)}`}; }
  };
  return {page, webgpu: await webgpu(), webnn: await webnn()};
}
"""

_raw_cache: dict[str, dict] = {}


def _raw(webnn_device_type: str = "") -> dict[str, Any]:
    """What the page says, with the browser's details; cached per process."""
    if webnn_device_type not in _raw_cache:
        owned = threading.get_ident() not in _browsers  # a browser started here is closed here
        b = browser()
        try:
            page = b.new_page()
            try:
                page.goto(origin().page("/hwprobe.html", _PROBE_PAGE))
                raw = page.evaluate(_PROBE_JS, webnn_device_type)
            finally:
                page.close()
            raw["browser"] = b.details()
        finally:
            if owned:
                close_browser()
        _raw_cache[webnn_device_type] = raw
    return _raw_cache[webnn_device_type]


def _context(raw: Mapping[str, Any]) -> dict[str, Any]:
    page = raw.get("page", {})
    return {"browser": raw.get("browser"), "secure_context": page.get("isSecureContext"),
            "cross_origin_isolated": page.get("crossOriginIsolated")}


def webgpu_entry(raw: Mapping[str, Any]) -> dict:
    details = _context(raw)
    gpu = raw["webgpu"]
    if not gpu.get("available"):
        return absent(HARDWARE_ABSENT, gpu.get("reason") or "no WebGPU adapter", **details,
                      adapter=gpu.get("adapter"), software=None)
    adapter = gpu["adapter"]
    software = is_software(adapter)
    details.update(adapter=adapter, software=software, features=gpu.get("features", []))
    name = f"{adapter.get('vendor') or '?'}/{adapter.get('architecture') or '?'}"
    if software:
        return ok(f"{SOFTWARE_REASON}: adapter {name}, isFallbackAdapter={adapter.get('isFallbackAdapter')}", **details)
    return ok(f"WebGPU adapter {name} {adapter.get('description') or ''}".strip(), **details)


def webnn_entry(raw: Mapping[str, Any]) -> dict:
    details = _context(raw)
    nn = raw["webnn"]
    if not nn.get("available"):
        return absent(HARDWARE_ABSENT, nn.get("reason") or "WebNN context unavailable", **details)
    return ok("navigator.ml.createContext() succeeded", **details)


def probe(webnn_device_type: str = "") -> dict[str, dict]:
    """{"webgpu": entry, "webnn": entry} from one browser launch (what hwprobe calls)."""
    try:
        raw = _raw(webnn_device_type)
    except Missing as m:
        return {"webgpu": dict(m.entry), "webnn": dict(m.entry)}
    return {"webgpu": webgpu_entry(raw), "webnn": webnn_entry(raw)}


def probe_webgpu() -> dict:
    """{available, reason, kind, details{adapter, software, browser, ...}}; software WebGPU is
    available but flagged ``software: true`` and says so in the reason."""
    return probe()["webgpu"]


def probe_webnn(device_type: str = "") -> dict:
    """Available only when navigator.ml.createContext() succeeds; else hardware-absent with its error."""
    return probe(device_type)["webnn"]


__all__ = ["probe", "probe_webgpu", "probe_webnn", "browser", "close_browser", "origin", "Origin",
           "Browser", "chromium_path", "chromium_version", "launch_args", "is_software", "SOFTWARE_REASON", "INSTALL_HINT"]
