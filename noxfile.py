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
nox.options.sessions = ["cpu", "report"]

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


def _install(session: nox.Session, env: str) -> None:
    session.install("-r", f"envs/{env}.txt")
    session.install("--no-deps", "-e", ".")


def run_suites(session: nox.Session, *, env: str, backend: str, precisions: str,
               device: str = "cpu", extra: tuple[str, ...] = ()) -> None:
    """Install env, probe the hardware, run the shared suites for one backend into results/<session>/."""
    _install(session, env)
    out = RESULTS / session.name
    out.mkdir(parents=True, exist_ok=True)
    session.run("python", "-m", "hwprobe", "--json", "--out", str(out / "hwprobe.json"))
    workers = os.environ.get("HFMATRIX_WORKERS", "auto")
    session.run(
        "python", "-m", "pytest", "suites",
        f"--backend={backend}", f"--device={device}", f"--precision={precisions}",
        f"--session-name={session.name}", f"--results-dir={RESULTS}",
        "-n", workers, "--dist=loadgroup",
        "--cov=hfmatrix", "--cov=hwprobe", "--cov-report=",
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
        env = "cpu"
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


@nox.session(python=PYTHON, tags=["hosted"])
def tests(session: nox.Session) -> None:
    """The harness's own tests (tests/): plugin via pytester, probes, zoo, report, self-tests."""
    _install(session, "cpu")
    session.install("-r", "envs/tests.txt")
    out = RESULTS / "tests"
    out.mkdir(parents=True, exist_ok=True)
    session.run("python", "-m", "pytest", "tests", "-n", os.environ.get("HFMATRIX_WORKERS", "auto"),
                f"--junitxml={out / 'junit.xml'}", *session.posargs,
                env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})


@nox.session(python=PYTHON, tags=["report"])
def report(session: nox.Session) -> None:
    """Merge every results/<session>/ into results/matrix.{json,md} (+ index.html) and combine coverage."""
    session.install("-r", "envs/report.txt")
    session.install("--no-deps", "-e", ".")
    session.run("hfmatrix", "report", "--results-dir", str(RESULTS), *session.posargs)
