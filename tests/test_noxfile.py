"""noxfile.py is built from the session table (hfmatrix/sessions.py, issue 13 item 6): what nox lists is
the table, every session runs its table rows (env, backend, device, precisions, model sets), the knobs
reach the commands, and the knobs are declared once and documented. What a session runs is read with
tests/nox_dryrun.py (nox builds the manifest, each session function runs against a recording session)
in a copy of the checkout, so no result folder or lock of this one is touched.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hfmatrix import sessions as table, skips
from hfmatrix.report import plan

ROOT = Path(__file__).resolve().parents[1]
DRYRUN = ROOT / "tests" / "nox_dryrun.py"


def _need_nox() -> None:
    if not importlib.util.find_spec("nox"):
        skips.skip(skips.DEPENDENCY_MISSING, "nox is not installed (pip install nox==2026.10.20)")


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """The files the noxfile reads, copied: its sessions make results/ folders and remove stale coverage."""
    _need_nox()
    dest = tmp_path_factory.mktemp("checkout")
    ignore = shutil.ignore_patterns("__pycache__", "node_modules", "*.pyc")
    for name in ("hfmatrix", "hwprobe", "envs"):
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    for name in ("noxfile.py", "pyproject.toml"):
        shutil.copy2(ROOT / name, dest / name)
    return dest


def dry_run(checkout: Path, *args: str, **env: str) -> dict[str, list[str]]:
    """{session: its recorded lines} with the knobs unset except `env`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("HFMATRIX_") and k != "CI"}
    proc = subprocess.run([sys.executable, str(DRYRUN), "--noxfile", str(checkout / "noxfile.py"), *args],
                          capture_output=True, text=True, env={**base, **env}, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out: dict[str, list[str]] = {}
    for line in proc.stdout.splitlines():
        if line.startswith("== "):
            out[line.split()[1]] = lines = [line]
        else:
            lines.append(line.strip())
    return out


def pytest_runs(lines: list[str], name: str) -> list[str]:
    """The suites' pytest command lines writing results/<name>/."""
    return [ln for ln in lines if " -m pytest " in ln and f"--hfm-session-name={name} " in ln]


def test_nox_lists_the_table() -> None:
    """Names, tags and Pythons of `nox --list --json` are the table's; nox's default set is DEFAULT."""
    _need_nox()
    tags = sorted({t for s in table.table() for t in s.tags})
    listing = plan.nox_listing(ROOT / "noxfile.py", tags)
    listed: dict[str, list[dict]] = {}
    for entry in listing:
        listed.setdefault(entry["name"], []).append(entry)
    specs = table.table()
    assert list(listed) == [s.name for s in specs]
    for spec in specs:
        assert all(e["tags"] == list(spec.tags) for e in listed[spec.name]), spec.name
        pythons = sorted({e["python"] for e in listed[spec.name]}, key=str)
        assert pythons == (list(spec.python) if isinstance(spec.python, tuple) else [spec.python]), spec.name
    assert [e["name"] for e in listed["backendtests"]] == ["backendtests"] * len(table.EXPORTED)
    default = subprocess.run([sys.executable, "-m", "nox", "--noxfile", str(ROOT / "noxfile.py"), "--list", "--json"],
                             capture_output=True, text=True, check=True).stdout
    assert sorted(e["session"] for e in json.loads(default)) == sorted(table.DEFAULT)   # listed in table order
    axis = [s.name for s in specs if "axis" in s.tags]
    assert axis == [v["name"] for v in table.provision.variants()] and axis   # from hfmatrix/axis.toml


@pytest.fixture
def no_knobs(monkeypatch):
    """The table's expectations with every knob at its default (as dry_run runs the sessions)."""
    for name in [k for k in os.environ if k.startswith("HFMATRIX_")] + ["CI"]:
        monkeypatch.delenv(name, raising=False)


def test_every_session_runs_its_table_rows(checkout: Path, no_knobs) -> None:
    runs = dry_run(checkout)
    checked = 0
    for spec in table.table():
        for target in spec.targets:
            name = target.name or spec.name
            (cmd,) = pytest_runs(runs[spec.name], name)
            for arg in (f"--hfm-backend={target.backend}", f"--hfm-device={target.device}",
                        f"--hfm-precision={target.precisions}", *target.paths, *target.extra, *target.model_args()):
                assert f" {arg} " in f" {cmd.split('  env=')[0]} ", (spec.name, arg, cmd)
            if target.models:
                assert f"--hfm-models={target.models.default}" in cmd
            env = "absent" if "accelerator" in spec.tags and spec.name != "distributed-cuda" else target.env
            assert f"install: -r <ROOT>/envs/locks/{env}.txt" in runs[spec.name], spec.name
            checked += 1
    assert checked >= 15


def test_knobs_reach_the_commands(checkout: Path, no_knobs) -> None:
    runs = dry_run(checkout, "--session", "webgpu", "serve", "distributed", "zoo", "cpu-4.57", "tests", "cpu",
                   HFMATRIX_WEBGPU_MODELS="bert", HFMATRIX_SERVE_MODELS="gpt2", HFMATRIX_DISTRIBUTED_MODELS="llama",
                   HFMATRIX_AUTOZOO_TIMEOUT="77", HFMATRIX_WORKERS="3", HFMATRIX_TIMEOUT="12", CI="1")
    assert "--hfm-models=bert " in pytest_runs(runs["webgpu"], "webgpu")[0] + " "
    assert "--hfm-models=gpt2 " in pytest_runs(runs["serve"], "serve")[0] + " "
    assert "--hfm-models=llama " in pytest_runs(runs["distributed"], "distributed")[0] + " "
    (variant,) = [s for s in table.variants() if s.name == "cpu-4.57"]
    assert f"--hfm-models={variant.targets[0].ci_models} " in pytest_runs(runs["cpu-4.57"], "cpu-4.57")[0]
    zoo = next(ln for ln in runs["zoo"] if "auto_pytest" in ln)
    assert "--timeout=77 " in zoo and " -n 3 " in zoo
    assert " -n 3 " in pytest_runs(runs["cpu"], "cpu")[0] and "--timeout=12 " in pytest_runs(runs["cpu"], "cpu")[0]
    assert any(" tests -n 3 " in ln for ln in runs["tests"])
    plain = dry_run(checkout, "--session", "cpu-4.57", "zoo")   # without CI: the whole zoo, the zoo's 2 workers
    assert "--hfm-models" not in pytest_runs(plain["cpu-4.57"], "cpu-4.57")[0]
    assert " -n 2 " in next(ln for ln in plain["zoo"] if "auto_pytest" in ln)


def test_baseline_targets_come_from_the_table(checkout: Path, no_knobs) -> None:
    for env, target in table.BASELINES.items():
        runs = dry_run(checkout, "--session", "baseline", HFMATRIX_BASELINE_ENV=env)["baseline"]
        (cmd,) = pytest_runs(runs, "baseline")
        assert f"--hfm-backend={target.backend} " in cmd and f"--hfm-precision={target.precisions} " in cmd
        assert "--hfm-perf-iters=30 " in cmd and "--hfm-perf-regression=warn" in cmd
        assert f"install: -r <ROOT>/envs/locks/{target.env}.txt" in runs
    cpu = dry_run(checkout, "--session", "baseline", HFMATRIX_BASELINES="/elsewhere")["baseline"]
    assert f"--hfm-models=default,autozoo:{table.BASELINE_AUTOZOO.default} " in pytest_runs(cpu, "baseline")[0]
    assert any("bench record" in ln and "--baselines /elsewhere" in ln for ln in cpu)
    serve = dry_run(checkout, "--session", "baseline", HFMATRIX_BASELINE_ENV="serve")["baseline"]
    assert "--hfm-models=gpt2,llama,mixtral,mamba " in pytest_runs(serve, "baseline")[0]
    assert "sets HFMATRIX_SERVE_LOAD_REQUESTS=24" in serve
    bad = dry_run(checkout, "--session", "baseline", HFMATRIX_BASELINE_ENV="nope")["baseline"]
    assert bad[-1].startswith("error: HFMATRIX_BASELINE_ENV='nope': known")


def test_a_node_id_runs_that_test_alone(checkout: Path) -> None:
    node = "hfmatrix/suites/test_parity.py::test_parity[bert]"
    runs = dry_run(checkout, "--session", "openvino", "webgpu", "--", node)
    for name in ("openvino", "webgpu"):
        cmds = [ln for ln in runs[name] if " -m pytest " in ln]
        assert cmds and all(node in c and " hfmatrix/suites " not in c for c in cmds), cmds
        assert not any("tests/test_" in c for c in cmds)   # no self-tests after it


def test_knobs_are_declared_once_and_documented() -> None:
    """The sessions read their knobs through the table alone, and docs/architecture.md carries its table."""
    for path in (ROOT / "noxfile.py", ROOT / "hfmatrix" / "nox.py", ROOT / "hfmatrix" / "run.py"):
        text = path.read_text()
        assert not re.search(r"environ\.get\(\s*[\"']HFMATRIX_", text), f"{path.name} reads a knob around the table"
    names = [k.name for k in table.KNOBS]
    assert len(names) == len(set(names)) and all(k.doc for k in table.KNOBS)
    assert table.knobs_markdown() in (ROOT / "docs" / "architecture.md").read_text()
    assert "sys.path.insert" not in (ROOT / "noxfile.py").read_text().split("sys.path.insert", 1)[1]   # one insert


def test_ci_run_takes_its_values_from_the_table(tmp_path: Path) -> None:
    text = (ROOT / ".ci" / "run").read_text()
    assert "python -m hfmatrix.sessions ci-env" in text and "python -m hfmatrix.sessions names axis" in text
    gated = re.search(r"^GATED=\((.*)\)$", text, re.M).group(1).split()
    assert set(gated) <= {s.name for s in table.table()}
    script = "set -eu\neval \"$(python -m hfmatrix.sessions ci-env)\"\necho \"$HFMATRIX_WEBGPU_MODELS $HFMATRIX_WORKERS\""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HFMATRIX_")}
    out = subprocess.run(["bash", "-c", script], cwd=ROOT, env={**env, "HFMATRIX_WORKERS": "5"},
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == [table.WEBGPU_MODELS.ci, "5"]                     # CI's value where unset, a set one wins
