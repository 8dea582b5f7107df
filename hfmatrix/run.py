"""`hfmatrix run`: the suites shipped in the package (hfmatrix/suites) on one backend, then the report.

The same pytest arguments as the nox sessions (`suite_args`, which the noxfile and `hfmatrix.nox`
use too), so a run writes the same records under <results>/<session>/ and the same report
(<results>/index.html, matrix.md, matrix.json). Stdlib only: the noxfile imports it before any env exists.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from .sessions import MAX_WORKER_RESTART, TIMEOUT, WORKERS, spec

SUITES = Path(__file__).resolve().with_name("suites")
RUN_INI = SUITES / "run.ini"
# node ids are relative to the folder holding the package: hfmatrix/suites/test_x.py::test[...] in the
# checkout and in site-packages alike (the report's rerun commands print them)
PACKAGE_PARENT = SUITES.parents[1]
# the nox sessions' names work as --backend too: `--backend cpu` is the cpu session's torch on the CPU
SESSIONS = {name: (spec(name).targets[0].backend, spec(name).targets[0].device)
            for name in ("cpu", "cuda", "rocm", "mps", "wasm", "webgpu", "webnn")}  # from the session table
# the suites never reach the network: models come from folders, the zoo cache or the local HF cache
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}

EPILOG = """\
examples:
  hfmatrix run --backend torch --models ./my-model
  hfmatrix run --backend cuda --precision fp32,fp16 --models ./my-model     (torch on CUDA)
  hfmatrix run --backend openvino --precision fp32 --models ./my-model,bert --results out
  hfmatrix run --backend onnxruntime --models ./my-model -- -k parity -x

--models takes local Hugging Face model folders, zoo ids (`hfmatrix zoo list`) and hub ids found
in the local HF cache, comma-separated; 'default' is the whole curated zoo. Arguments after `--`
(and any option hfmatrix run does not know) go to pytest unchanged; a node id (path::test[id], as
the report's rerun commands print) runs that test alone instead of all the suites. The exit status
is pytest's when a check failed, else the report's (non-zero on failed, crashed or xpassed cells).
The same run through pytest: pytest --pyargs hfmatrix.suites --hfm-backend torch --hfm-models ./my-model
"""


def suite_args(*, backend: str, device: str, precisions: str, name: str, results: Path | str,
               workers: str = "auto") -> list[str]:
    """The pytest arguments of one backend run into <results>/<name>/: the suites' own configuration
    (RUN_INI, not the project's), the plugin's --hfm-* options, xdist grouping, the isolation settings
    (hfmatrix/isolation.py) and the JUnit XML the report reads."""
    results = Path(results).resolve()  # pytest resolves cache_dir against the rootdir, not the cwd
    return ["-c", str(RUN_INI), f"--rootdir={PACKAGE_PARENT}", "-o", f"cache_dir={results / '.pytest_cache'}",
            f"--hfm-backend={backend}", f"--hfm-device={device}", f"--hfm-precision={precisions}",
            f"--hfm-session-name={name}", f"--hfm-results-dir={results}",
            "-n", workers, "--dist=loadgroup",
            # isolation: a per-test timeout through SIGALRM (pytest-timeout), the native-hang watchdog at
            # 2 x timeout + 10 s, and enough worker restarts that one crashing backend cannot end the matrix
            f"--timeout={TIMEOUT.get()}", "--timeout-method=signal",
            f"--max-worker-restart={MAX_WORKER_RESTART.get()}",
            f"--junitxml={results / name / 'junit.xml'}"]


def located(arg: str) -> str:
    """A node id as the report prints it (hfmatrix/suites/...::test[...]) found wherever the package is."""
    return str(PACKAGE_PARENT / arg) if arg.startswith("hfmatrix/suites/") and "::" in arg else arg


def selects_tests(args: list[str] | tuple[str, ...]) -> bool:
    """A node id among the arguments (the report's rerun command) selects that test alone."""
    return any("::" in a for a in args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hfmatrix run", allow_abbrev=False, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run the shipped checks (hfmatrix/suites) for your models on one backend with pytest,\n"
                    "write result records to <results>/<session>/ and the report to <results>/index.html.",
        epilog=EPILOG)
    p.add_argument("--backend", required=True,
                   help="backend under test: torch, openvino, onnxruntime, qnn, web, serve, distributed; or a nox "
                        f"session's name, which names the device too: {', '.join(SESSIONS)} (cpu = torch on the CPU)")
    p.add_argument("--device", default=None, help="device of the backend: cpu, cuda, rocm, mps, htp, wasm, "
                                                  "webgpu, webnn (default cpu, or the session name's)")
    p.add_argument("--precision", default="", help="comma-separated precisions, e.g. fp32,fp16 (default: the backend's first)")
    p.add_argument("--models", default="default",
                   help="comma-separated model folders, zoo ids or cached hub ids (default: the curated zoo)")
    p.add_argument("--results", default="results", type=Path, help="results folder (default ./results)")
    p.add_argument("--name", default="", help="session name, the folder under --results (default: the backend, "
                                              "or backend-device when the device is not cpu)")
    p.add_argument("--workers", default=WORKERS.get(),
                   help="pytest-xdist workers: a number, 0 for none, auto = one per core (default $HFMATRIX_WORKERS or auto)")
    p.add_argument("--no-report", action="store_true", help="write the records only, not the report")
    return p


def target(args: argparse.Namespace) -> tuple[str, str, str]:
    """(backend, device, session name) of the run; a session name as --backend implies its device."""
    backend, device = SESSIONS.get(args.backend, (args.backend, args.device or "cpu"))
    if args.device and args.device != device:
        raise SystemExit(f"hfmatrix run: --backend {args.backend} runs on {device}, not --device {args.device}; "
                         f"use --backend {backend} --device {args.device}")
    default = args.backend if args.backend in SESSIONS or device == "cpu" else f"{backend}-{device}"
    return backend, device, args.name or default


def command(args: argparse.Namespace, pytest_extra: list[str]) -> list[str]:
    """The pytest command line `hfmatrix run` executes (printed before it runs)."""
    backend, device, name = target(args)
    paths = [] if selects_tests(pytest_extra) else [str(SUITES)]
    return [sys.executable, "-m", "pytest", *paths, f"--hfm-models={args.models}",
            *suite_args(backend=backend, device=device, precisions=args.precision, name=name,
                        results=args.results.resolve(), workers=args.workers),
            *map(located, pytest_extra)]


def main(argv: list[str] | None = None) -> int:
    args, extra = build_parser().parse_known_args(argv)
    extra = [a for i, a in enumerate(extra) if not (a == "--" and i == extra.index("--"))]
    cmd = command(args, extra)
    out = args.results.resolve() / target(args)[2]
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **OFFLINE}
    # the hardware this ran on, for the report's environment table (as the nox sessions write it)
    subprocess.run([sys.executable, "-m", "hwprobe", "--out", str(out / "hwprobe.json")], env=env, check=False)
    print("hfmatrix run:", " ".join(cmd), flush=True)
    rc = subprocess.run(cmd, env=env, check=False).returncode
    if args.no_report:
        return rc
    from . import report
    report_rc = report.main(["--results-dir", str(args.results.resolve()), "--no-coverage"])
    return rc or report_rc
