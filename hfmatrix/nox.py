"""Backend sessions for a noxfile: this repository's sessions are built from these, and your own
noxfile reuses them in a few lines (stdlib only; nox passes the session in)::

    import nox
    from hfmatrix.nox import backend_session, report_session

    @nox.session(python="3.11")
    def openvino(session):
        # requirements-openvino.txt: hfmatrix (or the wheel's path), openvino, optimum-intel, ...
        backend_session(session, backend="openvino", env="requirements-openvino.txt",
                        models="./my-model", precisions="fp32")

    @nox.session(python="3.11")
    def report(session):
        report_session(session, env="requirements-report.txt")

Each backend session installs its env, writes hwprobe.json and runs the shipped suites
(hfmatrix/suites) with the same pytest arguments as `hfmatrix run` (hfmatrix.run.suite_args) into
<results>/<session name>/; `report_session` merges every session folder into <results>/index.html.

The checkout's own sessions (noxfile.py) add `run_targets` (the session table's runs, hfmatrix/sessions.py),
`accelerator`, `selftests` and the browser prerequisites (`chromium`, `web_prerequisites`).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

from . import provision, provision_system
from .run import OFFLINE, SUITES, selects_tests, suite_args
from .sessions import CHROMIUM, REQUIRE, RESULTS, TORCH_INDEX, WORKERS, Target, spec

_INSTALLED: set[tuple[str, str]] = set()


def requirements(env: str | os.PathLike) -> tuple[Path, bool]:
    """(the file to install, whether it is a hfmatrix checkout env) for a requirements file's path or
    the name of one of the checkout's envs (envs/<env>.txt; its lock envs/locks/<env>.txt where compiled)."""
    path = Path(env)
    if path.is_file() or path.suffix in (".txt", ".in") or len(path.parts) > 1:
        if not path.is_file():
            raise FileNotFoundError(f"requirements file {path} does not exist")
        return path, False
    source = provision.ENVS / f"{env}.txt"
    if not source.is_file():
        raise FileNotFoundError(f"env {env!r} names an env of the hfmatrix checkout ({source}), which this install "
                                "lacks: pass your own requirements file instead (env='requirements-<backend>.txt')")
    lock = provision.LOCKS / f"{env}.txt"
    return (lock if lock.is_file() else source), True


def _install_digest(path: Path, env: str, project: str | None) -> str:
    """What an env's install is made of: its requirements (the lock where compiled), the torch pin and
    index, and the project's metadata when the project is installed too."""
    parts = [path.read_text(encoding="utf-8"), str(provision.torch_pin(env)), TORCH_INDEX.get()]
    if project and (Path.cwd() / "pyproject.toml").is_file():
        parts.append((Path.cwd() / "pyproject.toml").read_text(encoding="utf-8"))
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def install(session: Any, env: str | os.PathLike, *, project: str | None = None) -> None:
    """Install env into the session (once per env: several suite runs share one install), then
    `project` without its dependencies (the checkout's sessions pass '-e .'). A reused venv that
    installed this very lock (a stamp inside it, written after a full install) is not reinstalled."""
    venv = getattr(session.virtualenv, "location", None)
    key = (str(venv or session.name), str(env))
    if key in _INSTALLED:
        return
    path, checkout = requirements(env)
    stamp = Path(venv) / f".hfmatrix-installed-{Path(str(env)).stem}" if venv else None
    digest = _install_digest(path, str(env), project)
    if stamp is not None and stamp.is_file() and stamp.read_text(encoding="utf-8").strip() == digest:
        session.log(f"env {env}: its lock did not change since this venv installed it: not reinstalled")
        _INSTALLED.add(key)
        return
    if checkout and path.parent == provision.LOCKS:
        torch = provision.torch_pin(str(env))
        if torch:  # first, by its exact pin and without a hash (why: hfmatrix/provision.py); from the
            # PyTorch CPU index where the workflow names it (for this install alone), else pip's config
            index = TORCH_INDEX.get()
            session.install("--no-deps", *(("--index-url", index) if index else ()), torch)
    elif checkout and env not in provision.UNLOCKED_ENVS:
        session.warn(f"envs/{env}.txt has no lock (envs/locks/, `nox -s lock`): installing the source")
    session.install("-r", str(path))  # a lock: the whole env, every hash checked
    if project:
        session.install("--no-deps", *project.split())
    if checkout and env not in provision.ACCELERATOR_ENVS:  # a CUDA torch in a CPU env is 2 GB of wrong wheels
        session.run_install("python", "-m", "hfmatrix.provision", "--check-cpu-torch")
    no_install = getattr(getattr(getattr(session, "_runner", None), "global_config", None), "no_install", False)
    if stamp is not None and not no_install:  # under --no-install nothing was installed: no stamp
        stamp.write_text(digest, encoding="utf-8")
    _INSTALLED.add(key)


def own_tmp(session: Any) -> str:
    """pytest's temp root in this session's own folder: by default every run shares
    /tmp/pytest-of-<user>/ and prunes it to its last 3 runs, so another session (or a second nox)
    running on the machine deleted a running session's temp dirs (876 setup errors in one run)."""
    return f"--basetemp={Path(session.create_tmp()) / 'pytest'}"


def fresh_coverage(out: Path) -> dict[str, str]:
    """out/ made, its coverage files of an earlier run removed: the environment of a run whose
    coverage goes into out/.coverage (this run's alone)."""
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(".coverage*"):
        stale.unlink()
    return {"COVERAGE_FILE": str(out / ".coverage")}


def run_suites(session: Any, *, backend: str, precisions: str, results: Path | str, device: str = "cpu",
               extra: tuple[str, ...] = (), paths: tuple[str, ...] = (str(SUITES),), name: str | None = None,
               require: str | None = None, coverage: bool = False, env: dict[str, str] | None = None) -> None:
    """Probe the hardware and run the suites for one backend into <results>/<name>/ (name defaults to
    the nox session's) in an env already installed; with `require`, the probe fails the session unless
    that backend is usable; with `coverage`, both run under coverage into <results>/<name>/.coverage;
    `env`: more environment variables for the pytest run.
    A node id after `--` (the report's rerun command) runs that test alone."""
    name = name or session.name
    out = Path(results) / name
    cov_env = fresh_coverage(out)  # out/ made, stale coverage files removed either way
    cov_env = cov_env if coverage else {}
    runner = ("python", "-m", "coverage", "run", "-m") if coverage else ("python", "-m")
    # table in the log, JSON in the file; measured like the suites (hwprobe is half of what coverage counts)
    session.run(*runner, "hwprobe", "--out", str(out / "hwprobe.json"),
                *(("--require", require) if require else ()), env=cov_env)
    session.run(*runner, "pytest", own_tmp(session), *(() if selects_tests(session.posargs) else paths),
                *suite_args(backend=backend, device=device, precisions=precisions, name=name, results=results,
                            workers=WORKERS.get()),
                *extra, *session.posargs, env={**cov_env, **OFFLINE, **(env or {})})


def backend_session(session: Any, *, backend: str, env: str | os.PathLike | None = None, device: str = "cpu",
                    precisions: str = "", models: str = "default", results: Path | str = "results",
                    extra: tuple[str, ...] = (), name: str | None = None) -> None:
    """A whole backend session: install `env` (your requirements file, which must bring hfmatrix and
    pytest-timeout, or a checkout env's name; None: the session's environment as it is), then the
    shipped suites on `models` (comma-separated folders, zoo ids or cached hub ids) into
    <results>/<name or the session's name>/."""
    if env is not None:
        install(session, env)
    run_suites(session, backend=backend, device=device, precisions=precisions, results=results,
               extra=(f"--hfm-models={models}", *extra), name=name)


def report_session(session: Any, *, env: str | os.PathLike | None = None, results: Path | str = "results") -> None:
    """Merge every <results>/<session>/ into <results>/index.html, matrix.md and matrix.json (exits
    non-zero when a check failed; `nox -s report -- --no-fail` to browse anyway)."""
    if env is not None:
        install(session, env)
    session.run("hfmatrix", "report", "--results-dir", str(results), "--no-coverage", *session.posargs)


# ----------------------------------------------------------------------------- the checkout's sessions
def run_targets(session: Any, targets: tuple[Target, ...] | None = None, *, results: Path = RESULTS) -> None:
    """The session's suites runs from the session table (hfmatrix/sessions.py; default: those of the
    session's name): install each target's env (and the checkout, editable), then its suites under
    coverage into <results>/<target name or session name>/."""
    for target in spec(session.name).targets if targets is None else targets:
        install(session, target.env, project="-e .")
        run_suites(session, backend=target.backend, device=target.device, precisions=target.precisions,
                   results=results, extra=(*target.extra, *target.model_args()), paths=target.paths,
                   name=target.name, coverage=True)


def accelerator(session: Any, *, results: Path = RESULTS) -> None:
    """The session's suites on its accelerator. Without the hardware, install the hardware-less env
    `absent` instead of a multi-GB accelerator build: every test then skips with kind hardware-absent
    and the reason, so a CPU-only run stays green and honest, and the matrix shows the column."""
    from dataclasses import replace

    from hwprobe.presence import hardware_present
    (target,) = spec(session.name).targets
    present, why = hardware_present(target.device)
    # HFMATRIX_REQUIRE (the workflow sets it on self-hosted accelerator runners): a runner whose GPU or
    # driver broke fails here instead of switching to the hardware-absent env and going green
    required = target.device in REQUIRE.get().split(",")
    if required and not present:
        session.error(f"HFMATRIX_REQUIRE={target.device}: {why}")
    if not present:
        session.log(f"{target.device}: hardware-absent ({why}); running the suites to record typed skips")
        target = replace(target, env="absent")  # no torch at all: nothing can accidentally run on the CPU and pass
    install(session, target.env, project="-e .")
    run_suites(session, backend=target.backend, device=target.device, precisions=target.precisions,
               results=results, paths=target.paths, require=target.device if required else None, coverage=True)


def selftests(session: Any, files: tuple[str, ...], out: Path, *, workers: str | None = None,
              posargs: bool = True, offline: bool = True) -> None:
    """The harness's own tests (files) in the env the session installed, not matrix cells
    (--hfm-results-dir=none), their JUnit XML into out/."""
    out.mkdir(parents=True, exist_ok=True)
    session.run("python", "-m", "pytest", own_tmp(session), *files, *(("-n", workers) if workers else ()),
                "--hfm-results-dir=none", f"--junitxml={out / 'junit.xml'}", *(session.posargs if posargs else ()),
                env=dict(OFFLINE) if offline else None)


def provide(session: Any, planner: Callable[[], provision_system.Plan]) -> provision_system.Plan:
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


def chromium(session: Any) -> None:
    """The Chromium of the web sessions and the tests (hfmatrix/provision_system.py: HFMATRIX_CHROMIUM,
    Debian's, apt-get as root or through sudo, Playwright's managed one where there is no apt-get);
    HFMATRIX_CHROMIUM names it for everything the session runs."""
    plan = provide(session, provision_system.chromium_plan)
    path = plan.path or session.run(*provision_system.PLAYWRIGHT_PATH, silent=True).strip().splitlines()[-1]
    if not os.access(path, os.X_OK):
        session.error(f"{plan.how} ran but {path} is not an executable file")
    os.environ[CHROMIUM.name] = path
    session.run(path, "--version", external=True)


def web_prerequisites(session: Any, web_dir: Path = Path(__file__).with_name("web")) -> None:
    """Chromium (`chromium`), npm, and onnxruntime-web from hfmatrix/web/package-lock.json (`npm ci`,
    skipped when node_modules matches)."""
    chromium(session)
    provide(session, provision_system.npm_plan)
    lock, installed = web_dir / "package-lock.json", web_dir / "node_modules" / ".package-lock.json"
    wanted = {k: v for k, v in json.loads(lock.read_text())["packages"].items() if k}
    if installed.is_file() and json.loads(installed.read_text()).get("packages") == wanted:
        session.log("onnxruntime-web: node_modules matches package-lock.json")
    else:
        session.run("npm", "ci", "--prefix", str(web_dir), "--ignore-scripts", "--no-audit", "--no-fund",
                    external=True)
