"""hfmatrix sessions: one isolated env per backend, plus tests, report, baseline and zoo.

Each backend session installs envs/<env>.txt and the project, writes the hwprobe JSON, and runs the
shared suites (suites/) with xdist and coverage into results/<session>/. `nox -s report` merges
whatever results/<session>/ folders exist. Sessions are tagged by where they run (see RUNNERS):
the CI matrix is generated from `nox --list --json`.
"""
from __future__ import annotations

import os
from pathlib import Path

import nox

ROOT = Path(__file__).parent
RESULTS = ROOT / "results"
PYTHON = "3.11"

nox.options.default_venv_backend = "virtualenv"
nox.options.reuse_existing_virtualenvs = False
nox.options.error_on_missing_interpreters = True
# The default matrix on this machine: every backend session that runs without special hardware,
# then the report. Accelerator sessions skip as a whole (hardware-absent) where the hardware is missing.
nox.options.sessions = ["cpu", "openvino", "onnxruntime", "qnn", "wasm", "webgpu", "webnn",
                        "cuda", "rocm", "mps", "zoo", "serve", "report"]

# Where each tagged session runs in CI; the workflow reads these through `nox --list --json`.
RUNNERS = {
    "hosted": "ubuntu-latest",
    "cuda": ["self-hosted", "linux", "x64", "gpu-nvidia"],
    "rocm": ["self-hosted", "linux", "x64", "gpu-amd"],
    "mps": ["self-hosted", "macos", "arm64"],
}

# Accelerator sessions: device -> (env file with the accelerator torch, precisions to test)
ACCELERATORS = {
    "cuda": ("cuda", "fp32,fp16,bf16"),
    "rocm": ("rocm", "fp32,fp16,bf16"),
    "mps": ("mps", "fp32,fp16"),
}


_INSTALLED: set[tuple[str, str]] = set()


def _install(session: nox.Session, env: str) -> None:
    key = (str(getattr(session.virtualenv, "location", session.name)), env)
    if key in _INSTALLED:  # several suite runs in one session share one install
        return
    session.install("-r", f"envs/{env}.txt")
    session.install("--no-deps", "-e", ".")
    _INSTALLED.add(key)


def run_suites(session: nox.Session, *, env: str, backend: str, precisions: str,
               device: str = "cpu", extra: tuple[str, ...] = (), paths: tuple[str, ...] = ("suites",),
               name: str | None = None) -> None:
    """Install env, probe the hardware, run the shared suites for one backend into results/<name>/
    (name defaults to the nox session's)."""
    name = name or session.name
    _install(session, env)
    out = RESULTS / name
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(".coverage*"):  # this run's coverage only
        stale.unlink()
    session.run("python", "-m", "hwprobe", "--out", str(out / "hwprobe.json"))  # table in the log, JSON in the file
    workers = os.environ.get("HFMATRIX_WORKERS", "auto")
    session.run(
        "python", "-m", "coverage", "run", "-m", "pytest", *paths,
        f"--backend={backend}", f"--device={device}", f"--precision={precisions}",
        f"--session-name={name}", f"--results-dir={RESULTS}",
        "-n", workers, "--dist=loadgroup",
        # isolation (hfmatrix/isolation.py): a per-test timeout through SIGALRM, the native-hang watchdog
        # at 2 x timeout + 10 s, and enough worker restarts that one crashing backend cannot end the matrix
        f"--timeout={os.environ.get('HFMATRIX_TIMEOUT', '900')}", "--timeout-method=signal",
        f"--max-worker-restart={os.environ.get('HFMATRIX_MAX_WORKER_RESTART', '100')}",
        f"--junitxml={out / 'junit.xml'}",
        *extra, *session.posargs,
        env={"COVERAGE_FILE": str(out / ".coverage"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
    )


@nox.session(python=PYTHON, tags=["hosted", "backend"])
def cpu(session: nox.Session) -> None:
    """CPU torch backend, fp32 (bf16 too where the CPU supports it natively)."""
    run_suites(session, env="cpu", backend="torch", precisions="fp32")


def _accelerator(session: nox.Session, device: str) -> None:
    """Run the suites on an accelerator. Without the hardware, install the CPU env instead of a
    multi-GB accelerator build: every test then skips with kind hardware-absent and the reason,
    so a CPU-only run stays green and honest, and the matrix shows the column."""
    import sys
    sys.path.insert(0, str(ROOT))
    from hwprobe.presence import hardware_present
    present, why = hardware_present(device)
    env, precisions = ACCELERATORS[device]
    if not present:
        session.log(f"{device}: hardware-absent ({why}); running the suites to record typed skips")
        env = "absent"  # no torch at all: nothing can accidentally run on the CPU and pass
    run_suites(session, env=env, backend="torch", device=device, precisions=precisions)


@nox.session(python=PYTHON, tags=["cuda", "accelerator"])
def cuda(session: nox.Session) -> None:
    """torch on NVIDIA CUDA: fp32/fp16/bf16 parity, device memory, OOM, cpu/GPU split, CUDA-event timing."""
    _accelerator(session, "cuda")


@nox.session(python=PYTHON, tags=["rocm", "accelerator"])
def rocm(session: nox.Session) -> None:
    """torch on AMD ROCm (HIP); never reported as CUDA."""
    _accelerator(session, "rocm")


@nox.session(python=PYTHON, tags=["mps", "accelerator"])
def mps(session: nox.Session) -> None:
    """torch on Apple MPS (macOS arm64)."""
    _accelerator(session, "mps")


# Exported backends: the suites run on optimum exports (cached under $HFMATRIX_CACHE/exports, next to
# the zoo), so a second run reuses them. `nox -s backendtests` runs their own self-tests per env.
@nox.session(python=PYTHON, tags=["hosted", "backend"])
def openvino(session: nox.Session) -> None:
    """OpenVINO CPU via optimum-intel: fp32 (f32 hint + f32 KV cache) and auto (device default, bf16 on avx512_bf16)."""
    run_suites(session, env="openvino", backend="openvino", device="cpu", precisions="fp32,auto")
    _backend_selftests(session, "openvino")


@nox.session(python=PYTHON, tags=["hosted", "backend"])
def onnxruntime(session: nox.Session) -> None:
    """ONNX Runtime CPU EP via optimum-onnx: fp32 and fp16 (optimum's fp16 export)."""
    run_suites(session, env="onnxruntime", backend="onnxruntime", device="cpu", precisions="fp32,fp16")
    _backend_selftests(session, "onnxruntime")


@nox.session(python=PYTHON, tags=["hosted", "backend"])
def qnn(session: nox.Session) -> None:
    """QNN EP plugin (onnxruntime-qnn) on the HTP backend, fp16; on x86 hosts the HTP is QNN's simulator."""
    run_suites(session, env="qnn", backend="qnn", device="htp", precisions="fp16")
    _backend_selftests(session, "qnn")


@nox.session(python=PYTHON, tags=["selftests"])
@nox.parametrize("env", ["onnxruntime", "openvino", "qnn"])
def backendtests(session: nox.Session, env: str) -> None:
    """Only the exported backends' self-tests (tests/test_backends_export.py) in one env; the backend
    sessions run them too, after their suites."""
    _backend_selftests(session, env)


def _backend_selftests(session: nox.Session, env: str) -> None:
    """The exported backends' own self-tests, in the env the backend session already installed."""
    _install(session, env)
    out = RESULTS / f"backendtests-{env}"
    out.mkdir(parents=True, exist_ok=True)
    session.run("python", "-m", "pytest", "tests/test_backends_export.py", "--results-dir=none",
                f"--junitxml={out / 'junit.xml'}", *session.posargs,
                env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})


# Web backend: onnxruntime-web in Chromium, driven by Playwright; one session per device
# (`nox -s wasm`, `nox -s webgpu`, `nox -s webnn`), plus `nox -s webtests` for its own tests.
WEB_DIR = ROOT / "hfmatrix" / "web"
APT_INSTALL = ("apt-get", "install", "-y", "--no-install-recommends")


def _apt_install(session: nox.Session, package: str, why: str) -> None:
    """Install a Debian package as root, or stop the session saying how to (never a silent skip)."""
    import shutil
    if shutil.which("apt-get") is None or not hasattr(os, "geteuid") or os.geteuid() != 0:
        session.error(f"{why}; install it as root: apt-get update && {' '.join(APT_INSTALL)} {package}")
    session.run("apt-get", "update", external=True)
    session.run(*APT_INSTALL, package, external=True, env={"DEBIAN_FRONTEND": "noninteractive"})


def _chromium(session: nox.Session) -> None:
    """Debian's Chromium at /usr/bin/chromium (apt-get when missing; HFMATRIX_CHROMIUM points elsewhere)."""
    chromium = os.environ.get("HFMATRIX_CHROMIUM", "/usr/bin/chromium")
    if not os.access(chromium, os.X_OK):
        if "HFMATRIX_CHROMIUM" in os.environ:
            session.error(f"HFMATRIX_CHROMIUM={chromium} is not an executable file")
        _apt_install(session, "chromium", f"Chromium is missing at {chromium}")
        if not os.access(chromium, os.X_OK):
            session.error(f"apt-get installed chromium but {chromium} is still not executable")
    session.run(chromium, "--version", external=True)


def _web_prerequisites(session: nox.Session) -> None:
    """Debian's Chromium (apt-get when /usr/bin/chromium is missing; HFMATRIX_CHROMIUM points elsewhere)
    and onnxruntime-web from hfmatrix/web/package-lock.json (`npm ci`, skipped when node_modules matches)."""
    import json
    import shutil
    _chromium(session)
    if shutil.which("npm") is None:
        _apt_install(session, "npm", "npm is missing (needed for onnxruntime-web)")
    lock, installed = WEB_DIR / "package-lock.json", WEB_DIR / "node_modules" / ".package-lock.json"
    wanted = {k: v for k, v in json.loads(lock.read_text())["packages"].items() if k}
    if installed.is_file() and json.loads(installed.read_text()).get("packages") == wanted:
        session.log("onnxruntime-web: node_modules matches package-lock.json")
    else:
        session.run("npm", "ci", "--prefix", str(WEB_DIR), "--ignore-scripts", "--no-audit", "--no-fund",
                    external=True)


# WebGPU without a GPU is SwiftShader (software): a first run takes 20-45 s per model (whisper 205 s), so
# the webgpu session defaults to a small model set; HFMATRIX_WEBGPU_MODELS=default runs the whole zoo.
WEB_MODELS = {"webgpu": os.environ.get("HFMATRIX_WEBGPU_MODELS", "bert,vit,gpt2")}


def _web(session: nox.Session, device: str) -> None:
    _web_prerequisites(session)
    models = (f"--models={WEB_MODELS[device]}",) if device in WEB_MODELS else ()
    run_suites(session, env="web", backend="web", device=device, precisions="fp32", extra=models)


@nox.session(python=PYTHON, tags=["hosted", "backend", "web"])
def wasm(session: nox.Session) -> None:
    """onnxruntime-web WebAssembly EP in Chromium (the ONNX export, fp32)."""
    _web(session, "wasm")


@nox.session(python=PYTHON, tags=["hosted", "backend", "web"])
def webgpu(session: nox.Session) -> None:
    """onnxruntime-web WebGPU EP; without a GPU Chromium's adapter is SwiftShader, recorded as software: true."""
    _web(session, "webgpu")
    _web_selftests(session)  # the web backend's own tests, in the env this session installed


@nox.session(python=PYTHON, tags=["hosted", "backend", "web"])
def webnn(session: nox.Session) -> None:
    """onnxruntime-web WebNN EP; hardware-absent with the browser's createContext() error where it has none."""
    _web(session, "webnn")


def _web_selftests(session: nox.Session) -> None:
    out = RESULTS / "webtests"
    out.mkdir(parents=True, exist_ok=True)
    session.run("python", "-m", "pytest", "tests/test_web.py", "--results-dir=none",
                f"--junitxml={out / 'junit.xml'}", *session.posargs)


@nox.session(python=PYTHON, tags=["web"])
def webtests(session: nox.Session) -> None:
    """The web backend's own tests (tests/test_web.py): real Chromium, tiny ONNX graph, planted defects."""
    _web_prerequisites(session)
    _install(session, "web")
    _web_selftests(session)


@nox.session(python=PYTHON, tags=["hosted"])
def tests(session: nox.Session) -> None:
    """The harness's own tests (tests/): plugin via pytester, probes, zoo, report, self-tests."""
    _install(session, "cpu")
    session.install("-r", "envs/tests.txt")
    _chromium(session)  # the report page is opened in headless Chromium
    out = RESULTS / "tests"
    out.mkdir(parents=True, exist_ok=True)
    # --results-dir=none: the harness's own tests are not matrix cells (their JUnit XML is kept)
    session.run("python", "-m", "pytest", "tests", "-n", os.environ.get("HFMATRIX_WORKERS", "auto"),
                "--results-dir=none", f"--junitxml={out / 'junit.xml'}", *session.posargs,
                env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})


# Serving: a real `transformers serve` process per model on 127.0.0.1 (hfmatrix/backends/serve_backend.py),
# the greedy and serving checks through HTTP, then its own fault / planted-defect tests. CI runs a small
# model set (HFMATRIX_SERVE_MODELS); `nox -s serve` the whole generative zoo.
SERVE_SUITES = ("suites/test_generate.py", "suites/test_serving.py", "suites/test_negative.py")


@nox.session(python=PYTHON, tags=["hosted", "backend"])
def serve(session: nox.Session) -> None:
    """The generative zoo as served by `transformers serve` (OpenAI-compatible HTTP) vs the CPU reference."""
    models = os.environ.get("HFMATRIX_SERVE_MODELS", "gpt2,llama,mixtral,mamba,t5,whisper,llava")
    os.environ["HFMATRIX_SERVE_LOGS"] = str(RESULTS / "serve" / "servers")
    run_suites(session, env="serve", backend="serve", precisions="fp32", paths=SERVE_SUITES,
               extra=(f"--models={models}",))
    out = RESULTS / "servetests"
    out.mkdir(parents=True, exist_ok=True)
    session.run("python", "-m", "pytest", "tests/test_serve.py", "-n", os.environ.get("HFMATRIX_WORKERS", "auto"),
                "--results-dir=none", f"--junitxml={out / 'junit.xml'}",
                env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})


# `nox -s baseline` records baselines/<fingerprint>/<backend>-<device>-<precision>.json for one env
# ($HFMATRIX_BASELINE_ENV, default cpu): the perf suite alone, under the same conditions as the backend
# session (xdist, coverage tracing, pinned threads), with more samples. Perf knobs for every session:
# HFMATRIX_THREADS, HFMATRIX_PERF_ITERS / _MIN_TIME / _BATCH / _FACTOR / _REGRESSION (see --help).
BASELINE_TARGETS = {  # env -> (backend, device, precisions), as its backend session runs them
    "cpu": ("torch", "cpu", "fp32"),
    "openvino": ("openvino", "cpu", "fp32,auto"),
    "onnxruntime": ("onnxruntime", "cpu", "fp32,fp16"),
}


@nox.session(python=PYTHON, tags=["perf"])
def baseline(session: nox.Session) -> None:
    """Record/update the perf baselines of this machine's fingerprint for one env (default cpu)."""
    env = os.environ.get("HFMATRIX_BASELINE_ENV", "cpu")
    if env not in BASELINE_TARGETS:
        session.error(f"HFMATRIX_BASELINE_ENV={env!r}: known {sorted(BASELINE_TARGETS)}")
    backend, device, precisions = BASELINE_TARGETS[env]
    run_suites(session, env=env, backend=backend, device=device, precisions=precisions,
               paths=("suites/test_perf.py",),
               extra=(f"--perf-iters={os.environ.get('HFMATRIX_BASELINE_ITERS', '30')}",
                      f"--perf-min-time={os.environ.get('HFMATRIX_BASELINE_MIN_TIME', '1.0')}",
                      f"--perf-batch-iters={os.environ.get('HFMATRIX_BASELINE_BATCH_ITERS', '10')}",
                      "--perf-regression=warn"))
    session.run("hfmatrix", "bench", "record", str(RESULTS / session.name), "--baselines", str(ROOT / "baselines"))


@nox.session(python=PYTHON, tags=["hosted", "zoo"])
def zoo(session: nox.Session) -> None:
    """Auto-zoo: every transformers model type, tiny and random, base + head model, stage by stage.

    `nox -s zoo -- --autozoo-sample N` (or $HFMATRIX_AUTOZOO_SAMPLE) runs a deterministic sample of N
    types; in CI the sample unless the change touches the zoo rules (hfmatrix/zoo/auto_pytest.py).
    One model that hangs or crashes costs its own timeout ($HFMATRIX_AUTOZOO_TIMEOUT s), not the sweep.
    """
    _install(session, "zoo")
    out = RESULTS / session.name
    out.mkdir(parents=True, exist_ok=True)
    session.run(
        "python", "-m", "pytest", "suites/test_autozoo.py", "-p", "hfmatrix.zoo.auto_pytest",
        "-n", os.environ.get("HFMATRIX_WORKERS", "2"), "--dist=loadgroup",
        f"--timeout={os.environ.get('HFMATRIX_AUTOZOO_TIMEOUT', '150')}",
        f"--session-name={session.name}", f"--results-dir={RESULTS}", f"--junitxml={out / 'junit.xml'}",
        *session.posargs,
        env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"},
    )


@nox.session(python=PYTHON, tags=["report"])
def report(session: nox.Session) -> None:
    """Merge every results/<session>/ into results/matrix.{json,md} (+ index.html) and combine coverage."""
    session.install("-r", "envs/report.txt")
    session.install("--no-deps", "-e", ".")
    # exits non-zero when a check failed/crashed/xpassed, a results file is corrupt or a session is
    # INCOMPLETE; `nox -s report -- --no-fail` to browse locally anyway
    session.run("hfmatrix", "report", "--results-dir", str(RESULTS), "--rcfile", str(ROOT / "pyproject.toml"),
                *session.posargs)
