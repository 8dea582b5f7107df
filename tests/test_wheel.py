"""The wheel a user installs (issue 15): built from this checkout, it carries the suites and every data
file; installed into a fresh venv outside the repository, `hfmatrix run` tests a model folder and writes
records and the report, a user's noxfile reuses the sessions through hfmatrix.nox, and a plain pytest
project in that venv is untouched.

The venv reuses this env's installed stack (torch, transformers, pytest) through a .pth path line, as
--system-site-packages would for a system Python; hfmatrix itself comes from the wheel alone (the
editable install's own .pth is not processed from there, and PYTHONPATH is dropped).
"""
from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

from hfmatrix import skips

ROOT = Path(__file__).resolve().parents[1]
PLAIN = "def test_one():\n    assert 1 + 1 == 2\n"


def build_wheel(source: Path, out: Path) -> Path:
    """sdist, then the wheel from the unpacked sdist (what an index serves), with uv or pip."""
    if shutil.which("uv"):
        cmd = ["uv", "build", "--out-dir", str(out), str(source)]
    else:
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(out), str(source)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return next(out.glob("hfmatrix-*.whl"))


def files(*under: str) -> list[str]:
    """The checkout's files as git sees them, new ones included (no caches, no node_modules)."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", *under], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split()
    return [p for p in listed if (ROOT / p).is_file()]


def source_copy(dest: Path) -> Path:
    """What a build needs, copied (a build in the checkout would leave hfmatrix.egg-info there)."""
    for rel in files():
        if not rel.startswith(("tests/", "baselines/", "docs/", ".github/")):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel)
    return dest


def missing_from(wheel: Path) -> set[str]:
    return set(files("hfmatrix", "hwprobe")) - set(zipfile.ZipFile(wheel).namelist())


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    if not (shutil.which("uv") or subprocess.run([sys.executable, "-m", "pip", "--version"],
                                                 capture_output=True).returncode == 0):
        skips.skip(skips.DEPENDENCY_MISSING, "neither uv nor pip to build the wheel")
    return build_wheel(source_copy(tmp_path_factory.mktemp("src")), tmp_path_factory.mktemp("dist"))


def test_wheel_carries_suites_and_data(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert missing_from(wheel) == set()
    assert {"hfmatrix/suites/test_parity.py", "hfmatrix/known_failures.toml", "hfmatrix/zoo/models.toml",
            "hfmatrix/report/template.html", "hfmatrix/web/runner.mjs", "hfmatrix/__main__.py"} <= names


def test_missing_package_data_is_caught(tmp_path):
    """Bite: a pyproject whose package-data forgets the report template builds a wheel without it."""
    copy = source_copy(tmp_path / "src")
    pyproject = copy / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"report/*.html", ', ""))
    assert missing_from(build_wheel(copy, tmp_path / "dist")) == {"hfmatrix/report/template.html"}


def _clean_env(venv: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTEST_ADDOPTS", "VIRTUAL_ENV") and not k.startswith(("COVERAGE_", "PYTEST_XDIST"))}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["HFMATRIX_WORKERS"] = "0"
    return env


@pytest.fixture(scope="module")
def outside_repo(tmp_path_factory):
    """A folder outside the repository: pytest's temp root, unless that lies inside the checkout (the nox
    session puts it under .nox/), then one of the system's temp dirs, removed afterwards."""
    where = tmp_path_factory.mktemp("user")
    if ROOT not in where.resolve().parents:
        yield where
        return
    # nox points TMPDIR at the session's folder under .nox/ too: take the first temp dir outside the checkout
    for base in (Path(tempfile.gettempdir()), Path("/tmp"), Path("/var/tmp"), Path.home()):
        if base.is_dir() and os.access(base, os.W_OK) and ROOT not in base.resolve().parents and base.resolve() != ROOT:
            break
    else:
        skips.skip(skips.DEPENDENCY_MISSING, "no writable folder outside the checkout for the user's project")
    where = Path(tempfile.mkdtemp(prefix="hfm-wheel-user-", dir=base))
    yield where
    shutil.rmtree(where, ignore_errors=True)


@pytest.fixture(scope="module")
def venv(wheel, outside_repo) -> Path:
    """A fresh venv outside the repository with the wheel installed (--no-deps: the stack is this env's)."""
    where = outside_repo
    assert ROOT not in where.parents
    # the user's project holds the venv; its own pytest settings must not reach the suites' runs
    (where / "pyproject.toml").write_text('[tool.pytest.ini_options]\naddopts = "--an-option-of-this-project"\n')
    venv = where / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    purelib = Path(subprocess.run([venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    stack = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (purelib / "zz_tests_env_stack.pth").write_text("\n".join(stack) + "\n")
    if shutil.which("uv"):
        cmd = ["uv", "pip", "install", "--python", str(venv / "bin" / "python"), "--no-deps", str(wheel)]
    else:
        cmd = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--no-deps", str(wheel)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=_clean_env(venv))
    assert done.returncode == 0, done.stdout + done.stderr
    where_from = subprocess.run([venv / "bin" / "python", "-c", "import hfmatrix; print(hfmatrix.__file__)"],
                                capture_output=True, text=True, check=True, env=_clean_env(venv), cwd=where).stdout.strip()
    assert Path(where_from).is_relative_to(venv), where_from  # the wheel's copy, not the checkout
    return venv


@pytest.fixture(scope="module")
def my_model(zoo_cache, tmp_path_factory) -> Path:
    """The zoo's bert copied to a folder of a user's own name."""
    os.environ["HFMATRIX_CACHE"] = str(zoo_cache)  # as conftest.run_suites: the venv's runs share the cache
    from hfmatrix.zoo import load_specs, materialize
    folder = tmp_path_factory.mktemp("models") / "my-bert"
    shutil.copytree(materialize(load_specs()["bert"]), folder)
    return folder


def _records(results: Path) -> list[dict]:
    return [json.loads(line) for f in results.rglob("records-*.jsonl") for line in f.read_text().splitlines() if line]


def test_hfmatrix_run_from_the_wheel(venv, my_model):
    project = venv.parent
    # the issue's own command: --backend cpu (the cpu session's name: torch on the CPU)
    done = subprocess.run([venv / "bin" / "hfmatrix", "run", "--backend", "cpu", "--models", str(my_model),
                           "--results", "out", "--", "-k", "test_parity or test_load_session", "-p", "no:cacheprovider"],
                          cwd=project, env=_clean_env(venv), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    records = [r for r in _records(project / "out") if r["model"] == "my-bert"]
    assert {r["check"] for r in records} >= {"parity"} and all(r["outcome"] == "passed" for r in records), records
    assert {r["backend"] for r in records} == {"torch"}
    assert all(r["nodeid"].startswith("hfmatrix/suites/test_") for r in records)  # as in the nox sessions
    assert (project / "out" / "index.html").is_file() and (project / "out" / "cpu" / "hwprobe.json").is_file()
    assert "cpu" in json.loads((project / "out" / "matrix.json").read_text())["sessions"]
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("hfmatrix run:")).split()
    suites = Path(line[line.index("pytest") + 1])  # the suites the wheel installed ran, not the checkout's
    assert suites.name == "suites" and suites.is_relative_to(venv), line


def test_users_noxfile_reuses_the_sessions(venv, my_model):
    if subprocess.run([venv / "bin" / "python", "-c", "import nox"], env=_clean_env(venv)).returncode:
        skips.skip(skips.DEPENDENCY_MISSING, "nox is not installed in this env")
    project = venv.parent
    (project / "noxfile.py").write_text(
        "import nox\nfrom hfmatrix.nox import backend_session\n\n\n"
        "@nox.session(venv_backend='none')\ndef torch(session):\n"
        f"    backend_session(session, backend='torch', models={str(my_model)!r}, results='out-nox',\n"
        "                    extra=('-k', 'test_parity', '-p', 'no:cacheprovider'))\n")
    done = subprocess.run([venv / "bin" / "python", "-m", "nox", "-f", "noxfile.py"], cwd=project,
                          env=_clean_env(venv), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    records = [r for r in _records(project / "out-nox") if r["model"] == "my-bert"]
    assert sorted((r["check"], r["outcome"]) for r in records) == [("parity", "passed"), ("parity_padded", "passed")]


def test_plain_project_in_the_venv_untouched(venv, tmp_path):
    (tmp_path / "test_plain.py").write_text(PLAIN)
    done = subprocess.run([venv / "bin" / "python", "-m", "pytest", "-p", "no:cacheprovider"], cwd=tmp_path,
                          env=_clean_env(venv), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout + done.stderr
    assert "hfmatrix session" not in done.stdout and "hfmatrix:" not in done.stdout, done.stdout
    assert not (tmp_path / "results").exists()
    help_ = subprocess.run([venv / "bin" / "python", "-m", "hfmatrix", "run", "--help"], cwd=tmp_path,
                           env=_clean_env(venv), capture_output=True, text=True, timeout=120)
    assert help_.returncode == 0 and "--backend" in help_.stdout
