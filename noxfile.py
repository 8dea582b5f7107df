"""hfmatrix sessions: one isolated env per backend, plus tests, report, baseline and zoo.

Each backend session installs envs/<env>.txt and the project, writes the hwprobe JSON, and runs the
shared suites (hfmatrix/suites/) with xdist and coverage into results/<session>/. `nox -s report` merges
whatever results/<session>/ folders exist. Sessions are tagged by where they run (see RUNNERS):
the CI matrix is generated from `nox --list --json`.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable

import nox

ROOT = Path(__file__).parent
sys.path.insert(0, str(ROOT))
from hfmatrix import nox as hfnox, provision, provision_system  # noqa: E402  (stdlib only: importable before any env exists)
from hfmatrix.run import selects_tests  # noqa: E402

RESULTS = ROOT / "results"
PYTHON = "3.11"

# uv creates an env in seconds and hard-links packages from its cache, so the 2nd..nth torch install
# is nearly free; virtualenv + pip where uv is missing. uv reads no pip config: hand it pip's.
nox.options.default_venv_backend = "uv|virtualenv"
os.environ.update(provision.uv_env(provision.pip_config()))
# Envs are reused: _install skips the install when the env's lock (and the project's metadata) did not
# change since this venv installed it, so a rerun costs seconds; `nox --reuse-venv=no` rebuilds them.
nox.options.reuse_venv = "yes"
nox.options.error_on_missing_interpreters = True
# The default matrix on this machine: every backend session that runs without special hardware,
# then the report. Accelerator sessions skip as a whole (hardware-absent) where the hardware is missing.
nox.options.sessions = ["cpu", "openvino", "onnxruntime", "qnn", "wasm", "webgpu", "webnn",
                        "cuda", "rocm", "mps", "zoo", "distributed", "serve", "report"]

# Where each tagged session runs in CI; the workflow reads these through `nox --list --json`.
RUNNERS = {
    "hosted": "ubuntu-latest",
    "cuda": ["self-hosted", "linux", "x64", "gpu-nvidia"],
    "rocm": ["self-hosted", "linux", "x64", "gpu-amd"],
    "mps": ["self-hosted", "macos", "arm64"],
    "multi-gpu": ["self-hosted", "linux", "x64", "gpu-nvidia", "multi-gpu"],
}

# Accelerator sessions: device -> (env file with the accelerator torch, precisions to test)
ACCELERATORS = {
    "cuda": ("cuda", "fp32,fp16,bf16"),
    "rocm": ("rocm", "fp32,fp16,bf16"),
    "mps": ("mps", "fp32,fp16"),
}


def _install(session: nox.Session, env: str) -> None:
    hfnox.install(session, env, project="-e .")


def rerun_one(session: nox.Session) -> bool:
    """A node id after `--` (the report's rerun command: nox -s cpu -- 'hfmatrix/suites/x.py::test[id]')
    selects that test alone: no default paths, no self-tests after it."""
    return selects_tests(session.posargs)


def selected(session: nox.Session, paths: tuple[str, ...]) -> tuple[str, ...]:
    return () if rerun_one(session) else paths


_own_tmp = hfnox.own_tmp


def run_suites(session: nox.Session, *, env: str, backend: str, precisions: str,
               device: str = "cpu", extra: tuple[str, ...] = (), paths: tuple[str, ...] = ("hfmatrix/suites",),
               name: str | None = None, require: str | None = None) -> None:
    """Install env, probe the hardware, run the shared suites for one backend into results/<name>/
    (name defaults to the nox session's) under coverage (hfmatrix/nox.py; a user's noxfile uses the
    same code through hfmatrix.nox.backend_session)."""
    _install(session, env)
    hfnox.run_suites(session, backend=backend, device=device, precisions=precisions, results=RESULTS, extra=extra,
                     paths=paths, name=name, require=require, coverage=True)


@nox.session(python=PYTHON, tags=["hosted", "backend"])
def cpu(session: nox.Session) -> None:
    """CPU torch backend, fp32 (bf16 too where the CPU supports it natively)."""
    run_suites(session, env="cpu", backend="torch", precisions="fp32")


def _accelerator(session: nox.Session, device: str) -> None:
    """Run the suites on an accelerator. Without the hardware, install the CPU env instead of a
    multi-GB accelerator build: every test then skips with kind hardware-absent and the reason,
    so a CPU-only run stays green and honest, and the matrix shows the column."""
    from hwprobe.presence import hardware_present
    present, why = hardware_present(device)
    env, precisions = ACCELERATORS[device]
    # HFMATRIX_REQUIRE (the workflow sets it on self-hosted accelerator runners): a runner whose GPU or
    # driver broke fails here instead of switching to the hardware-absent env and going green
    required = device in os.environ.get("HFMATRIX_REQUIRE", "").split(",")
    if required and not present:
        session.error(f"HFMATRIX_REQUIRE={device}: {why}")
    if not present:
        session.log(f"{device}: hardware-absent ({why}); running the suites to record typed skips")
        env = "absent"  # no torch at all: nothing can accidentally run on the CPU and pass
    run_suites(session, env=env, backend="torch", device=device, precisions=precisions,
               require=device if required else None)


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
    """OpenVINO CPU via optimum-intel: fp32 (f32 hint + f32 KV cache) and auto (device default: bf16 where the
    CPU lists BF16, else f32 + f16 KV cache); then the precision checks at bf16 and at the forced f32 + f16 KV
    cache, each model only where that computes something auto and fp32 did not (hfmatrix/precision.py), so
    both verdict paths run on either kind of host."""
    run_suites(session, env="openvino", backend="openvino", device="cpu", precisions="fp32,auto")
    run_suites(session, env="openvino", backend="openvino", device="cpu", precisions="bf16,fp32_kvfp16",
               name="openvino-precision", extra=("--hfm-precisions-done=fp32,auto",), paths=OPENVINO_PRECISION_SUITES)
    _backend_selftests(session, "openvino")


# the checks whose verdicts depend on the effective precision (tolerances, known bugs by precision)
OPENVINO_PRECISION_SUITES = tuple(f"hfmatrix/suites/test_{m}.py" for m in ("parity", "inference", "generate", "workflows"))


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
    _backend_selftests(session, env, RESULTS / f"backendtests-{env}")


def _selftests_dir(session: nox.Session) -> Path:
    """results/<session>/selftests/: inside the folder CI uploads, so the report shows (and gates on)
    a backend's own tests run by its backend session."""
    return RESULTS / session.name / "selftests"


def _backend_selftests(session: nox.Session, env: str, out: Path | None = None) -> None:
    """The exported backends' own self-tests, in the env the backend session already installed."""
    if rerun_one(session):
        return
    _install(session, env)
    out = out or _selftests_dir(session)
    out.mkdir(parents=True, exist_ok=True)
    session.run("python", "-m", "pytest", _own_tmp(session), "tests/test_backends_export.py", "tests/test_localize_export.py",
                "--hfm-results-dir=none",
                f"--junitxml={out / 'junit.xml'}", *session.posargs,
                env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})


# Web backend: onnxruntime-web in Chromium, driven by Playwright; one session per device
# (`nox -s wasm`, `nox -s webgpu`, `nox -s webnn`), plus `nox -s webtests` for its own tests.
WEB_DIR = ROOT / "hfmatrix" / "web"


def _provide(session: nox.Session, planner: Callable[[], provision_system.Plan]) -> provision_system.Plan:
    """Run a prerequisite's plan (hfmatrix/provision_system.py), or stop the session saying how to install it."""
    try:
        plan = planner()
    except provision_system.ProvisionError as exc:
        session.error(str(exc))
    session.log(f"{plan.how}: {plan.path or ''}")
    for cmd in plan.external:  # apt-get, through `sudo -n` when not root
        session.run(*cmd, external=True)
    for cmd in plan.in_env:  # Playwright's managed browser, with the session's python
        session.run(*cmd)
    return plan


def _chromium(session: nox.Session) -> None:
    """The Chromium of the web sessions and the tests (hfmatrix/provision_system.py: HFMATRIX_CHROMIUM,
    Debian's, apt-get as root or through sudo, Playwright's managed one where there is no apt-get);
    HFMATRIX_CHROMIUM names it for everything the session runs."""
    plan = _provide(session, provision_system.chromium_plan)
    path = plan.path or session.run(*provision_system.PLAYWRIGHT_PATH, silent=True).strip().splitlines()[-1]
    if not os.access(path, os.X_OK):
        session.error(f"{plan.how} ran but {path} is not an executable file")
    os.environ["HFMATRIX_CHROMIUM"] = path
    session.run(path, "--version", external=True)


def _web_prerequisites(session: nox.Session) -> None:
    """Chromium (`_chromium`), npm, and onnxruntime-web from hfmatrix/web/package-lock.json (`npm ci`, skipped when node_modules matches)."""
    import json
    _chromium(session)
    _provide(session, provision_system.npm_plan)
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
    _install(session, "web")  # first: Playwright's managed Chromium (no apt-get here) installs with its python
    _web_prerequisites(session)
    models = (f"--hfm-models={WEB_MODELS[device]}",) if device in WEB_MODELS else ()
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


def _web_selftests(session: nox.Session, out: Path | None = None) -> None:
    if rerun_one(session):
        return
    out = out or _selftests_dir(session)
    out.mkdir(parents=True, exist_ok=True)
    session.run("python", "-m", "pytest", _own_tmp(session), "tests/test_web.py", "--hfm-results-dir=none",
                f"--junitxml={out / 'junit.xml'}", *session.posargs)


@nox.session(python=PYTHON, tags=["web"])
def webtests(session: nox.Session) -> None:
    """The web backend's own tests (tests/test_web.py): real Chromium, tiny ONNX graph, planted defects."""
    _install(session, "web")
    _web_prerequisites(session)
    _web_selftests(session, RESULTS / "webtests")


@nox.session(python=PYTHON, tags=["hosted"])
def tests(session: nox.Session) -> None:
    """The harness's own tests (tests/): plugin via pytester, probes, zoo, report, self-tests."""
    _install(session, "tests")  # envs/tests.txt = the cpu env + the tests' tools
    _chromium(session)  # the report page is opened in headless Chromium
    out = RESULTS / "tests"
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(".coverage*"):  # this run's coverage only
        stale.unlink()
    # --hfm-results-dir=none: the harness's own tests are not matrix cells (their JUnit XML is kept); their
    # coverage (pytester subprocesses too: [tool.coverage.run] patch) joins every session's in the report
    session.run("python", "-m", "coverage", "run", "-m", "pytest", _own_tmp(session), "tests", "-n", os.environ.get("HFMATRIX_WORKERS", "auto"),
                "--hfm-results-dir=none", f"--junitxml={out / 'junit.xml'}", *session.posargs,
                env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "COVERAGE_FILE": str(out / ".coverage")})


# Sharded execution (hfmatrix/distributed/): torchrun runs of tensor/expert-parallel models, each rank
# against the single-process CPU fp32 reference, plus offloaded loading and fault handling. One xdist
# worker: each check already runs world-size processes on this machine's cores.
@nox.session(python=PYTHON, tags=["hosted", "backend"])
def distributed(session: nox.Session) -> None:
    """Tensor/expert parallel (torchrun, gloo on CPU) and device_map offload vs the single-process reference."""
    _distributed(session, "cpu")


@nox.session(name="distributed-cuda", python=PYTHON, tags=["multi-gpu", "accelerator"])
def distributed_cuda(session: nox.Session) -> None:
    """The same checks with nccl across GPUs and a two-GPU device_map split (hardware-absent below 2 GPUs)."""
    _distributed(session, "cuda")


def _distributed(session: nox.Session, device: str) -> None:
    # CI runs llama and mixtral (tp2, ep2, disk offload: .ci/run sets HFMATRIX_DISTRIBUTED_MODELS); nox the whole zoo
    models = os.environ.get("HFMATRIX_DISTRIBUTED_MODELS", "default")
    run_suites(session, env="distributed", backend="distributed", device=device, precisions="fp32",
               paths=("hfmatrix/suites/test_distributed.py",), extra=("-n", "1", f"--hfm-models={models}"))
    if device == "cpu":  # the launcher's fault handling and the planted sharding defects, same env
        session.run("python", "-m", "pytest", _own_tmp(session), "tests/test_distributed.py", "--hfm-results-dir=none",
                    f"--junitxml={RESULTS / 'distributedtests' / 'junit.xml'}", *session.posargs,
                    env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})


# Serving: a real `transformers serve` process per model on 127.0.0.1 (hfmatrix/backends/serve_backend.py),
# the greedy and serving checks through HTTP, then its own fault / planted-defect tests. CI runs a small
# model set (HFMATRIX_SERVE_MODELS); `nox -s serve` the whole generative zoo.
SERVE_SUITES = ("hfmatrix/suites/test_generate.py", "hfmatrix/suites/test_serving.py", "hfmatrix/suites/test_negative.py")


@nox.session(python=PYTHON, tags=["hosted", "backend"])
def serve(session: nox.Session) -> None:
    """The generative zoo as served by `transformers serve` (OpenAI-compatible HTTP) vs the CPU reference."""
    models = os.environ.get("HFMATRIX_SERVE_MODELS", "gpt2,llama,mixtral,mamba,t5,whisper,llava")
    os.environ["HFMATRIX_SERVE_LOGS"] = str(RESULTS / "serve" / "servers")
    run_suites(session, env="serve", backend="serve", precisions="fp32", paths=SERVE_SUITES,
               extra=(f"--hfm-models={models}",))
    out = RESULTS / "servetests"
    out.mkdir(parents=True, exist_ok=True)
    session.run("python", "-m", "pytest", _own_tmp(session), "tests/test_serve.py", "-n", os.environ.get("HFMATRIX_WORKERS", "auto"),
                "--hfm-results-dir=none", f"--junitxml={out / 'junit.xml'}",
                env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})


# `nox -s baseline` records baselines/<fingerprint>/<backend>-<device>-<precision>.json for one env
# ($HFMATRIX_BASELINE_ENV, default cpu): the perf suite alone, under the same conditions as the backend
# session (xdist, coverage tracing, pinned threads), with more samples. Perf knobs for every session:
# HFMATRIX_THREADS, HFMATRIX_PERF_ITERS / _MIN_TIME / _BATCH / _FACTOR / _REGRESSION (see --help).
BASELINE_TARGETS = {  # env -> (backend, device, precisions), as its backend session runs them
    "cpu": ("torch", "cpu", "fp32"),
    "openvino": ("openvino", "cpu", "fp32,auto"),
    "onnxruntime": ("onnxruntime", "cpu", "fp32,fp16"),
    "serve": ("serve", "cpu", "fp32"),
}
# serve's figures come from its load test (hfmatrix/serving/perf.py), 24 requests a level, on its model set
BASELINE_SUITES = {"serve": ("hfmatrix/suites/test_serving.py", "-k", "serving_load or serving_vs_baseline",
                             f"--hfm-models={os.environ.get('HFMATRIX_SERVE_MODELS', 'gpt2,llama,mixtral,mamba')}")}


@nox.session(python=PYTHON, tags=["perf"])
def baseline(session: nox.Session) -> None:
    """Record/update the perf baselines of this machine's fingerprint for one env (default cpu)."""
    env = os.environ.get("HFMATRIX_BASELINE_ENV", "cpu")
    if env not in BASELINE_TARGETS:
        session.error(f"HFMATRIX_BASELINE_ENV={env!r}: known {sorted(BASELINE_TARGETS)}")
    backend, device, precisions = BASELINE_TARGETS[env]
    os.environ.setdefault("HFMATRIX_SERVE_LOAD_REQUESTS", "24")
    rounds = os.environ.get("HFMATRIX_PERF_ROUNDS")  # the gate's calibrated rounds: twice a normal run's
    os.environ["HFMATRIX_PERF_ROUNDS"] = os.environ.get("HFMATRIX_BASELINE_ROUNDS", "60")
    try:
        run_suites(session, env=env, backend=backend, device=device, precisions=precisions,
                   paths=BASELINE_SUITES.get(env, ("hfmatrix/suites/test_perf.py",)),
                   extra=(f"--hfm-perf-iters={os.environ.get('HFMATRIX_BASELINE_ITERS', '30')}",
                          f"--hfm-perf-min-time={os.environ.get('HFMATRIX_BASELINE_MIN_TIME', '0.3')}",
                          f"--hfm-perf-batch-iters={os.environ.get('HFMATRIX_BASELINE_BATCH_ITERS', '10')}",
                          "--hfm-perf-regression=warn"))
    finally:
        os.environ.pop("HFMATRIX_PERF_ROUNDS") if rounds is None else os.environ.update(HFMATRIX_PERF_ROUNDS=rounds)
    # refuses (exit 1, each reason printed) entries recorded under load or above the noise bound
    session.run("hfmatrix", "bench", "record", str(RESULTS / session.name), "--baselines", str(ROOT / "baselines"))


# Version axis (hfmatrix/axis.toml): a base session's target under another library version, as its own
# column (`nox -s cpu-4.57`); the report's "what changes on upgrade" view pairs the two cell by cell.
# CI (CI=1) runs each on the variant's small model set (its env is its own: that is the point).
def _variant_session(variant: dict) -> None:
    backend, device, precisions = BASELINE_TARGETS[variant["base"]]

    def run(session: nox.Session) -> None:
        models = (f"--hfm-models={variant['ci_models']}",) if os.environ.get("CI") and variant.get("ci_models") else ()
        run_suites(session, env=variant["env"], backend=backend, device=device, precisions=precisions, extra=models)
    run.__doc__ = f"{variant['base']} under another {variant['axis']}: {variant['reason']}"
    nox.session(run, name=variant["name"], python=PYTHON, tags=["hosted", "axis"])


for _variant in provision.variants():
    _variant_session(_variant)


@nox.session(python=PYTHON, tags=["hosted", "zoo"])
def zoo(session: nox.Session) -> None:
    """Auto-zoo: every transformers model type, tiny and random, base + head model, stage by stage.

    `nox -s zoo -- --hfm-autozoo-sample N` (or $HFMATRIX_AUTOZOO_SAMPLE) runs a deterministic sample of N
    types; in CI the sample unless the change touches the zoo rules (hfmatrix/zoo/auto_pytest.py).
    One model that hangs or crashes costs its own timeout ($HFMATRIX_AUTOZOO_TIMEOUT s), not the sweep.
    """
    _install(session, "zoo")
    out = RESULTS / session.name
    out.mkdir(parents=True, exist_ok=True)
    session.run(
        "python", "-m", "pytest", _own_tmp(session), *selected(session, ("hfmatrix/suites/test_autozoo.py",)), "-p", "hfmatrix.zoo.auto_pytest",
        "-n", os.environ.get("HFMATRIX_WORKERS", "2"), "--dist=loadgroup",
        f"--timeout={os.environ.get('HFMATRIX_AUTOZOO_TIMEOUT', '150')}",
        f"--hfm-session-name={session.name}", f"--hfm-results-dir={RESULTS}", f"--junitxml={out / 'junit.xml'}",
        *session.posargs,
        env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"},
    )


PYTHONS = ["3.10", "3.11", "3.12", "3.13"]  # pyproject's requires-python, tested by `nox -s pythons`
PYTHONS_TESTS = ("tests/test_hwprobe.py", "tests/test_report.py", "tests/test_locks.py")


@nox.session(python=PYTHONS, tags=["pythons"])
def pythons(session: nox.Session) -> None:
    """The harness's torch-free tests (hwprobe, records, report, env locks) on every claimed Python.
    The ML stacks run on 3.11 alone: the only CPU torch 2.13.0 wheel here is cp311. With pyenv,
    `PYENV_VERSION=3.10.13:3.11.7:3.12.1:3.13.0 nox -s pythons` puts them on PATH."""
    _install(session, "pythons")
    session.run("python", "-m", "pytest", _own_tmp(session), *PYTHONS_TESTS, "-n", "0", "--hfm-results-dir=none", *session.posargs,
                env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})


@nox.session(venv_backend="none", tags=["lock"])
def lock(session: nox.Session) -> None:
    """Compile envs/locks/<env>.txt from envs/<env>.txt with uv: the whole env pinned with hashes
    (torch excepted, see hfmatrix/provision.py). `nox -s lock -- cpu web` for some; uv must be on PATH.
    torch's own dependencies are those of the CPU wheel pip's find-links gives here; on a machine
    without one, `UV_TORCH_BACKEND=cpu nox -s lock` (untried: this machine has no route to PyTorch's
    index); tests/test_locks.py fails on a lock with nvidia-* pins either way."""
    for env in session.posargs or provision.lockable():
        session.run(*provision.lock_command(env), external=True)
        provision.stamp_lock(env)


@nox.session(python=PYTHON, tags=["report"])
def report(session: nox.Session) -> None:
    """Merge every results/<session>/ into results/matrix.{json,md} (+ index.html) and combine coverage."""
    _install(session, "report")
    # exits non-zero when a check failed/crashed/xpassed, a results file is corrupt or a session is
    # INCOMPLETE; `nox -s report -- --no-fail` to browse locally anyway
    session.run("hfmatrix", "report", "--results-dir", str(RESULTS), "--rcfile", str(ROOT / "pyproject.toml"),
                *session.posargs)
