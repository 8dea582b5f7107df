"""hfmatrix sessions: one isolated env per backend, plus tests, report, baseline and zoo.

Each backend session installs envs/<env>.txt and the project, writes the hwprobe JSON, and runs the
shared suites (hfmatrix/suites/) with xdist and coverage into results/<session>/. `nox -s report` merges
whatever results/<session>/ folders exist. Sessions are tagged by where they run (see RUNNERS in
hfmatrix/sessions.py, the table of sessions): the CI matrix is generated from `nox --list --json`.
"""
from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import nox

# nox loads this file by path and puts neither its folder nor the checkout on sys.path (`nox` runs from
# its own bin/ folder), and hfmatrix is not installed where nox is: the checkout's stdlib-only modules
# (the session table, provisioning) are importable only through this one insert
sys.path.insert(0, str(Path(__file__).parent))
from hfmatrix import nox as hfnox, provision, sessions as table  # noqa: E402
from hfmatrix.run import OFFLINE, selects_tests  # noqa: E402
from hfmatrix.sessions import RESULTS, WORKERS  # noqa: E402

# uv creates an env in seconds and hard-links packages from its cache, so the 2nd..nth torch install
# is nearly free; virtualenv + pip where uv is missing. uv reads no pip config: hand it pip's.
nox.options.default_venv_backend = "uv|virtualenv"
os.environ.update(provision.uv_env(provision.pip_config()))
# pip compiles the installed packages' bytecode by default, uv not: without it every process of every run
# (workers, hwprobe) compiles torch and transformers again wherever PYTHONDONTWRITEBYTECODE is set (~6 s
# CPU each here; an env creation ~25 s CPU more, once per lock)
os.environ.setdefault("UV_COMPILE_BYTECODE", "1")
# Envs are reused: _install skips the install when the env's lock (and the project's metadata) did not
# change since this venv installed it, so a rerun costs seconds; `nox --reuse-venv=no` rebuilds them.
nox.options.reuse_venv = "yes"
nox.options.error_on_missing_interpreters = True
nox.options.sessions = list(table.DEFAULT)

install = functools.partial(hfnox.install, project="-e .")  # an env, then the checkout (editable)


def from_table(name: str):
    """@nox.session with the name, tags and Python(s) the session table gives it."""
    return nox.session(**table.spec(name).nox_kwargs())


def rerun_one(session: nox.Session) -> bool:
    """A node id after `--` (the report's rerun command: nox -s cpu -- 'hfmatrix/suites/x.py::test[id]')
    selects that test alone: no default paths, no self-tests after it."""
    return selects_tests(session.posargs)


def export_selftests(session: nox.Session, env: str, out: Path | None = None) -> None:
    """The exported backends' own self-tests, in the env the backend session already installed."""
    if not rerun_one(session):
        install(session, env)
        hfnox.selftests(session, table.EXPORT_SELFTESTS, out or RESULTS / session.name / "selftests")


@from_table("cpu")
def cpu(session: nox.Session) -> None:
    """CPU torch backend, fp32 (bf16 too where the CPU supports it natively)."""
    hfnox.run_targets(session)


@from_table("cuda")
def cuda(session: nox.Session) -> None:
    """torch on NVIDIA CUDA: fp32/fp16/bf16 parity, device memory, OOM, cpu/GPU split, CUDA-event timing."""
    hfnox.accelerator(session)


@from_table("rocm")
def rocm(session: nox.Session) -> None:
    """torch on AMD ROCm (HIP); never reported as CUDA."""
    hfnox.accelerator(session)


@from_table("mps")
def mps(session: nox.Session) -> None:
    """torch on Apple MPS (macOS arm64)."""
    hfnox.accelerator(session)


# Exported backends: the suites run on optimum exports (cached under $HFMATRIX_CACHE/exports, next to
# the zoo), so a second run reuses them; then their own self-tests (results/<session>/selftests/: the
# report shows and gates on them), which `nox -s backendtests` runs alone.
@from_table("openvino")
def openvino(session: nox.Session) -> None:
    """OpenVINO CPU via optimum-intel: fp32 (f32 hint + f32 KV cache) and auto (device default: bf16 where the
    CPU lists BF16, else f32 + f16 KV cache); then the precision checks at bf16 and at the forced f32 + f16 KV
    cache, each model only where that computes something auto and fp32 did not (hfmatrix/precision.py), so
    both verdict paths run on either kind of host."""
    hfnox.run_targets(session)
    export_selftests(session, "openvino")


@from_table("onnxruntime")
def onnxruntime(session: nox.Session) -> None:
    """ONNX Runtime CPU EP via optimum-onnx: fp32 and fp16 (optimum's fp16 export)."""
    hfnox.run_targets(session)
    export_selftests(session, "onnxruntime")


@from_table("qnn")
def qnn(session: nox.Session) -> None:
    """QNN EP plugin (onnxruntime-qnn) on the HTP backend, fp16; on x86 hosts the HTP is QNN's simulator."""
    hfnox.run_targets(session)
    export_selftests(session, "qnn")


@from_table("backendtests")
@nox.parametrize("env", list(table.EXPORTED))
def backendtests(session: nox.Session, env: str) -> None:
    """Only the exported backends' self-tests (tests/test_backends_export.py) in one env; the backend
    sessions run them too, after their suites."""
    export_selftests(session, env, RESULTS / f"backendtests-{env}")


# Web backend: onnxruntime-web in Chromium, driven by Playwright; one session per device, plus
# `nox -s webtests` for its own tests. The env comes first: where there is no apt-get, Playwright's
# managed Chromium installs with its python.
@from_table("wasm")
def wasm(session: nox.Session) -> None:
    """onnxruntime-web WebAssembly EP in Chromium (the ONNX export, fp32)."""
    install(session, "web")
    hfnox.web_prerequisites(session)
    hfnox.run_targets(session)


@from_table("webgpu")
def webgpu(session: nox.Session) -> None:
    """onnxruntime-web WebGPU EP; without a GPU Chromium's adapter is SwiftShader, recorded as software: true."""
    install(session, "web")
    hfnox.web_prerequisites(session)
    hfnox.run_targets(session)
    if not rerun_one(session):  # the web backend's own tests, in the env this session installed
        hfnox.selftests(session, ("tests/test_web.py",), RESULTS / session.name / "selftests", offline=False)


@from_table("webnn")
def webnn(session: nox.Session) -> None:
    """onnxruntime-web WebNN EP; hardware-absent with the browser's createContext() error where it has none."""
    install(session, "web")
    hfnox.web_prerequisites(session)
    hfnox.run_targets(session)


@from_table("webtests")
def webtests(session: nox.Session) -> None:
    """The web backend's own tests (tests/test_web.py): real Chromium, tiny ONNX graph, planted defects."""
    install(session, "web")
    hfnox.web_prerequisites(session)
    if not rerun_one(session):
        hfnox.selftests(session, ("tests/test_web.py",), RESULTS / "webtests", offline=False)


@from_table("tests")
def tests(session: nox.Session) -> None:
    """The harness's own tests (tests/): plugin via pytester, probes, zoo, report, self-tests."""
    install(session, "tests")  # envs/tests.txt = the cpu env + the tests' tools
    hfnox.chromium(session)  # the report page is opened in headless Chromium
    out = RESULTS / "tests"
    # not matrix cells (their JUnit XML is kept); their coverage (pytester subprocesses too: pyproject's
    # [tool.coverage.run] patch) joins every session's in the report
    session.run("python", "-m", "coverage", "run", "-m", "pytest", hfnox.own_tmp(session), "tests", "-n", WORKERS.get(),
                "--hfm-results-dir=none", f"--junitxml={out / 'junit.xml'}", *session.posargs,
                env={**OFFLINE, **hfnox.fresh_coverage(out)})


# Sharded execution (hfmatrix/distributed/): torchrun runs of tensor/expert-parallel models, each rank
# against the single-process CPU fp32 reference, plus offloaded loading and fault handling.
@from_table("distributed")
def distributed(session: nox.Session) -> None:
    """Tensor/expert parallel (torchrun, gloo on CPU) and device_map offload vs the single-process reference."""
    hfnox.run_targets(session)
    # the launcher's fault handling and the planted sharding defects, same env
    hfnox.selftests(session, ("tests/test_distributed.py",), RESULTS / "distributedtests")


@from_table("distributed-cuda")
def distributed_cuda(session: nox.Session) -> None:
    """The same checks with nccl across GPUs and a two-GPU device_map split (hardware-absent below 2 GPUs)."""
    hfnox.run_targets(session)


# Serving: a real `transformers serve` process per model on 127.0.0.1 (hfmatrix/backends/serve_backend.py),
# the greedy and serving checks through HTTP, then its own fault / planted-defect tests.
@from_table("serve")
def serve(session: nox.Session) -> None:
    """The generative zoo as served by `transformers serve` (OpenAI-compatible HTTP) vs the CPU reference."""
    os.environ["HFMATRIX_SERVE_LOGS"] = str(RESULTS / "serve" / "servers")
    hfnox.run_targets(session)
    hfnox.selftests(session, ("tests/test_serve.py",), RESULTS / "servetests", workers=WORKERS.get(), posargs=False)


# `nox -s baseline` records baselines/<fingerprint>/<backend>-<device>-<precision>.json for one env
# ($HFMATRIX_BASELINE_ENV, table.BASELINES): the perf suite alone, under the same conditions as the backend
# session, with more samples. Perf knobs for every session: HFMATRIX_THREADS, HFMATRIX_PERF_ITERS /
# _MIN_TIME / _BATCH / _FACTOR / _REGRESSION (see --help).
@from_table("baseline")
def baseline(session: nox.Session) -> None:
    """Record/update the perf baselines of this machine's fingerprint for one env (default cpu)."""
    env = table.BASELINE_ENV.get()
    if env not in table.BASELINES:
        session.error(f"HFMATRIX_BASELINE_ENV={env!r}: known {sorted(table.BASELINES)}")
    target = table.BASELINES[env]
    os.environ.setdefault("HFMATRIX_SERVE_LOAD_REQUESTS", table.BASELINE_SERVE_LOAD_REQUESTS)
    install(session, env)
    hfnox.run_suites(session, backend=target.backend, device=target.device, precisions=target.precisions,
                     results=RESULTS, paths=(*target.paths, *table.baseline_model_args(env)), coverage=True,
                     extra=(f"--hfm-perf-iters={table.BASELINE_ITERS.get()}",
                            f"--hfm-perf-min-time={table.BASELINE_MIN_TIME.get()}",
                            f"--hfm-perf-batch-iters={table.BASELINE_BATCH_ITERS.get()}", "--hfm-perf-regression=warn"),
                     env={"HFMATRIX_PERF_ROUNDS": table.BASELINE_ROUNDS.get()})  # the gate's rounds: twice a run's
    # refuses (exit 1, each reason printed) entries recorded under load or above the noise bound
    session.run("hfmatrix", "bench", "record", str(RESULTS / session.name), "--baselines", table.BASELINES_DIR.get() or str(table.CHECKOUT / "baselines"))


# Version axis (hfmatrix/axis.toml): a base session's target under another library version, as its own
# column (`nox -s cpu-4.57`); the report's "what changes on upgrade" view pairs the two cell by cell.
# CI (CI=1) runs each on the variant's small model set (its env is its own: that is the point).
def _variant(spec: table.Spec) -> None:
    def run(session: nox.Session) -> None:
        hfnox.run_targets(session)
    run.__doc__ = spec.doc
    nox.session(run, **spec.nox_kwargs())


for _spec in table.variants():
    _variant(_spec)


@from_table("zoo")
def zoo(session: nox.Session) -> None:
    """Auto-zoo: every transformers model type, tiny and random, base + head model, stage by stage.

    `nox -s zoo -- --hfm-autozoo-sample N` (or $HFMATRIX_AUTOZOO_SAMPLE) runs a deterministic sample of N
    types; in CI the sample unless the change touches the zoo rules (hfmatrix/zoo/auto_pytest.py).
    One model that hangs or crashes costs its own timeout ($HFMATRIX_AUTOZOO_TIMEOUT s), not the sweep.
    """
    install(session, "zoo")
    out = RESULTS / session.name
    out.mkdir(parents=True, exist_ok=True)
    session.run("python", "-m", "pytest", hfnox.own_tmp(session), *(() if rerun_one(session) else table.suites("autozoo")),
                "-p", "hfmatrix.zoo.auto_pytest", "-n", WORKERS.get("2"), "--dist=loadgroup",
                f"--timeout={table.AUTOZOO_TIMEOUT.get()}", f"--hfm-session-name={session.name}",
                f"--hfm-results-dir={RESULTS}", f"--junitxml={out / 'junit.xml'}", *session.posargs,
                env={**OFFLINE, "HF_HUB_DISABLE_PROGRESS_BARS": "1"})


@from_table("pythons")
def pythons(session: nox.Session) -> None:
    """The harness's torch-free tests (hwprobe, records, report, env locks) on every claimed Python.
    The ML stacks run on 3.11 alone: the only CPU torch 2.13.0 wheel here is cp311. With pyenv,
    `PYENV_VERSION=3.10.13:3.11.7:3.12.1:3.13.0 nox -s pythons` puts them on PATH."""
    install(session, "pythons")
    session.run("python", "-m", "pytest", hfnox.own_tmp(session), *table.PYTHONS_TESTS, "-n", "0",
                "--hfm-results-dir=none", *session.posargs, env=dict(OFFLINE))


@from_table("lock")
def lock(session: nox.Session) -> None:
    """Compile envs/locks/<env>.txt from envs/<env>.txt with uv: the whole env pinned with hashes
    (torch excepted, see hfmatrix/provision.py). `nox -s lock -- cpu web` for some; uv must be on PATH.
    torch's own dependencies are those of the CPU wheel pip's find-links gives here; on a machine
    without one, `UV_TORCH_BACKEND=cpu nox -s lock` (untried: this machine has no route to PyTorch's
    index); tests/test_locks.py fails on a lock with nvidia-* pins either way."""
    for env in session.posargs or provision.lockable():
        session.run(*provision.lock_command(env), external=True)
        provision.stamp_lock(env)


@from_table("report")
def report(session: nox.Session) -> None:
    """Merge every results/<session>/ into results/matrix.{json,md} (+ index.html) and combine coverage."""
    install(session, "report")
    # exits non-zero when a check failed/crashed/xpassed, a results file is corrupt or a session is
    # INCOMPLETE; `nox -s report -- --no-fail` to browse locally anyway
    session.run("hfmatrix", "report", "--results-dir", str(RESULTS), "--rcfile", str(table.CHECKOUT / "pyproject.toml"),
                *session.posargs)
