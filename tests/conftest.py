"""Shared helpers for the harness's own tests."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
SUITES = ROOT / "hfmatrix" / "suites"


@pytest.fixture(autouse=True)
def _own_verdict_store(tmp_path, monkeypatch):
    """Each harness test has its own verdict store (hfmatrix/reuse.py): no test reuses another's verdicts
    nor leaves its planted-defect verdicts in the shared cache."""
    monkeypatch.setenv("HFMATRIX_VERDICTS", str(tmp_path / "verdicts"))


@pytest.fixture(scope="session")
def zoo_cache(tmp_path_factory) -> Path:
    """One model cache for the whole test run (HFMATRIX_CACHE if set, so CI reuses its builds)."""
    if os.environ.get("HFMATRIX_CACHE"):
        return Path(os.environ["HFMATRIX_CACHE"])
    return tmp_path_factory.mktemp("zoo-cache")


def read_records(results: Path) -> list[dict]:
    out = []
    for f in sorted(Path(results).rglob("records-*.jsonl")):
        out += [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
    return out


def outcomes(records: list[dict]) -> dict[str, str]:
    """'check[model]' -> outcome."""
    return {f"{r['check']}[{r['model']}]": r["outcome"] for r in records}


def run_suites(pytester, zoo_cache: Path, *args: str, plant: str = "", timeout: int = 600, reuse: bool = False):
    """Run real suites under the plugin in a subprocess, optionally with a planted-defect plugin
    (python source that patches the real code path at import). Returns (result, records).
    Stored verdicts (hfmatrix/reuse.py) live in the test's own store and are read only with reuse=True."""
    env_path = str(pytester.path)
    if not reuse:
        args = ("--hfm-no-reuse", *args)
    if plant:
        (pytester.path / "planted_defect.py").write_text(plant)
        args = ("-p", "planted_defect", *args)
    results = pytester.path / "results"
    os.environ["HFMATRIX_CACHE"] = str(zoo_cache)
    pytester._monkeypatch.setenv("PYTHONPATH", env_path + os.pathsep + os.environ.get("PYTHONPATH", ""))
    pytester._monkeypatch.setenv("HFMATRIX_CACHE", str(zoo_cache))
    result = pytester.runpytest_subprocess(
        *args, f"--hfm-results-dir={results}", "-p", "no:cacheprovider", "--rootdir", str(pytester.path),
        timeout=timeout)
    return result, read_records(results)
