"""Verdict reuse (hfmatrix/reuse.py) through the suite path: real suites, real zoo models, a store in
the test's own folder. The proof that a reused cell's body did not run is a planted defect armed only
by an environment variable outside the key: armed, a computed parity cell fails; reused, it passes."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import ROOT, SUITES, run_suites
from hfmatrix import reuse
from hfmatrix.report.markdown import render
from hfmatrix.report.merge import merge

ARMED = """
import os
if os.environ.get("HFM_TEST_ARMED"):  # outside the reuse key on purpose: only running the body shows it
    import hfmatrix.plugin as plugin
    _load = plugin.load_session
    def load_session(*a, **k):
        session = _load(*a, **k)
        run = session.run
        session.run = lambda inputs: {key: v * (1 + 1e-3) for key, v in run(inputs).items()}
        return session
    plugin.load_session = load_session
"""
CHECKS = (str(SUITES / "test_load.py"), str(SUITES / "test_parity.py"))


@pytest.fixture(autouse=True)
def _not_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("HFM_TEST_ARMED", raising=False)


def _run(pytester, zoo_cache, *args, **kw):
    result, records = run_suites(pytester, zoo_cache, *CHECKS, *args, plant=ARMED, reuse=True, **kw)
    return result, {f"{r['check']}[{r['model']}]": r for r in records}


def reused(records: dict) -> set[str]:
    return {k for k, r in records.items() if r["reused_from"]}


def test_unchanged_rerun_reuses_without_running_and_overrides_recompute(pytester, zoo_cache, monkeypatch):
    _, first = _run(pytester, zoo_cache, "--hfm-models=bert")
    assert first and not reused(first) and all(r["outcome"] == "passed" for r in first.values())
    monkeypatch.setenv("HFM_TEST_ARMED", "1")
    result, second = _run(pytester, zoo_cache, "--hfm-models=bert")
    assert reused(second) == set(first), "every unchanged cell is reused"
    assert {r["reused_from"] for r in second.values()} == {first["parity[bert]"]["run_id"]}
    assert all(second[k]["outcome"] == first[k]["outcome"] for k in first), "outcomes kept"
    assert second["parity[bert]"]["measures"] == first["parity[bert]"]["measures"], "measures kept"
    assert result.ret == 0 and "6 verdicts reused" in result.stdout.str()
    m = merge(pytester.path / "results")  # the report counts them per session
    assert (m.sessions["torch"].n_records, m.sessions["torch"].n_reused) == (6, 6)
    assert "| torch | complete | all | 6 (6 / 0) |" in render(m)
    # the armed defect bites whenever the body runs: --hfm-no-reuse and CI=true recompute
    _, forced = _run(pytester, zoo_cache, "--hfm-models=bert", "--hfm-no-reuse")
    assert not reused(forced) and forced["parity[bert]"]["outcome"] == "failed"
    monkeypatch.setenv("CI", "true")
    _, ci = _run(pytester, zoo_cache, "--hfm-models=bert")
    assert not reused(ci) and ci["parity[bert]"]["outcome"] == "failed"
    # a stored failure is reused as a failure (disarmed: the body would pass now; the defect sat outside
    # the key, which is what --hfm-no-reuse is for), with its message, and still fails the run
    monkeypatch.delenv("CI")
    monkeypatch.delenv("HFM_TEST_ARMED")
    result, again = _run(pytester, zoo_cache, "--hfm-models=bert")
    assert again["parity[bert]"]["outcome"] == "failed" and result.ret == 1
    assert again["parity[bert]"]["reused_from"] == ci["parity[bert]"]["run_id"]
    assert again["parity[bert]"]["message"] == ci["parity[bert]"]["message"]


def _copy_with(monkeypatch, tmp: Path, env: str, source: Path, extra: str) -> None:
    path = tmp / source.name
    path.write_text(source.read_text() + "\n" + extra)
    monkeypatch.setenv(env, str(path))


def test_changed_entries_rerun_exactly_their_cells(pytester, zoo_cache, monkeypatch):
    models = "--hfm-models=bert,bert-cls"
    _, base = _run(pytester, zoo_cache, models)
    assert not reused(base) and len(base) == 12
    # a tolerance entry for bert: its parity cell reads it; the load checks read no tolerance
    _copy_with(monkeypatch, pytester.path, "HFMATRIX_TOLERANCES", ROOT / "hfmatrix" / "tolerances.toml",
               '[[override]]\nmodel = "bert"\nbackend = "torch"\nprecision = "fp32"\natol = 1e-5\nrtol = 1.3e-6\n'
               'reason = "reuse self-test: a new entry with the default values"\n')
    _, tol = _run(pytester, zoo_cache, models)
    assert set(base) - reused(tol) == {"parity[bert]", "parity_padded[bert]"}
    monkeypatch.delenv("HFMATRIX_TOLERANCES")
    # a known bug for one cell: that cell alone runs (and, not failing, is a strict xpass)
    _copy_with(monkeypatch, pytester.path, "HFMATRIX_KNOWN_FAILURES", ROOT / "hfmatrix" / "known_failures.toml",
               '[[known_bug]]\ncheck = "artifact_integrity"\nmodel = "bert-cls"\nbackend = "torch"\n'
               'raises = "AssertionError"\nreason = "reuse self-test: a planted entry"\n')
    _, bug = _run(pytester, zoo_cache, models)
    assert set(base) - reused(bug) == {"artifact_integrity[bert-cls]"}
    assert bug["artifact_integrity[bert-cls]"]["outcome"] == "xpassed"


def test_changed_model_config_reruns_that_model_only(pytester, zoo_cache):
    zoo = (ROOT / "hfmatrix" / "zoo" / "models.toml").read_text()
    (pytester.path / "zoo.toml").write_text(zoo)
    args = (f"--hfm-zoo-file={pytester.path / 'zoo.toml'}", "--hfm-models=bert,bert-cls")
    _, base = _run(pytester, zoo_cache, *args)
    bert_cls = zoo[zoo.index('id = "bert-cls"'):]
    changed = bert_cls.replace("intermediate_size = 64", "intermediate_size = 48", 1)
    assert changed != bert_cls
    (pytester.path / "zoo.toml").write_text(zoo.replace(bert_cls, changed))
    _, after = _run(pytester, zoo_cache, *args)
    assert reused(after) == {k for k in base if k.endswith("[bert]")}
    assert all(after[k]["outcome"] == "passed" for k in after)


def test_perf_and_memory_verdicts_are_never_reused(pytester, zoo_cache):
    args = (str(SUITES / "test_perf.py"), str(SUITES / "test_memory.py"), f"{SUITES / 'test_load.py'}::test_artifact_integrity",
            "--hfm-models=bert", "--hfm-perf-warmup=1", "--hfm-perf-iters=2", "--hfm-perf-min-time=0", "-k",
            "test_perf[ or memory_load_cycles or artifact_integrity")
    for _ in range(2):
        _, records = run_suites(pytester, zoo_cache, *args, reuse=True)
    got = {f"{r['check']}[{r['model']}]": bool(r["reused_from"]) for r in records}
    assert got == {"perf[bert]": False, "memory_load_cycles[bert]": False, "artifact_integrity[bert]": True}
    stored = [json.loads(p.read_text())["record"]["check"] for p in Path(os.environ["HFMATRIX_VERDICTS"]).rglob("*.json")]
    assert stored == ["artifact_integrity"]


def test_corrupt_or_partial_entries_are_recomputed_not_trusted(pytester, zoo_cache):
    _, base = _run(pytester, zoo_cache, "--hfm-models=bert")
    files = {json.loads(p.read_text())["record"]["check"]: p for p in Path(os.environ["HFMATRIX_VERDICTS"]).rglob("*.json")}
    files["parity"].write_text(files["parity"].read_text()[:200])            # a write cut short
    data = json.loads(files["load_session"].read_text())
    data["record"]["outcome"] = "crashed"                                      # a verdict that may not be reused
    files["load_session"].write_text(json.dumps(data))
    other = json.loads(files["artifact_integrity"].read_text())
    files["artifact_integrity"].write_text(json.dumps({**other, "key": "0" * 64}))  # another key's entry
    _, after = _run(pytester, zoo_cache, "--hfm-models=bert")
    assert set(base) - reused(after) == {"parity[bert]", "load_session[bert]", "artifact_integrity[bert]"}
    assert all(r["outcome"] == "passed" for r in after.values())
    assert json.loads(files["parity"].read_text())["record"]["outcome"] == "passed", "rewritten whole"


def test_a_harness_change_reruns_the_checks_it_touches(tmp_path, monkeypatch):
    """The code part of the key on a copy of the package: an edit reruns the checks whose import closure
    (or named data file) it is in, and no other."""
    pkg = tmp_path / "hfmatrix"
    shutil.copytree(ROOT / "hfmatrix", pkg, ignore=shutil.ignore_patterns("__pycache__", "node_modules"))
    monkeypatch.setattr(reuse, "PKG_ROOT", pkg)
    roots = (*reuse.FIXTURE_ROOTS, "hfmatrix.backends.torch_backend")

    def digests() -> dict[str, str]:
        reuse.closure.cache_clear()
        reuse.code_digest.cache_clear()
        return {s: reuse.code_digest(str(pkg / "suites" / f"test_{s}.py"), f"hfmatrix.suites.test_{s}", roots)
                for s in ("parity", "load", "golden")}

    def edit(rel: str) -> dict[str, bool]:
        before = digests()
        with open(pkg / rel, "a") as fh:
            fh.write("\n# edited\n")
        after = digests()
        return {s: after[s] != before[s] for s in after}

    assert edit("localize.py") == {"parity": True, "load": False, "golden": False}      # parity imports it
    assert edit("golden.toml") == {"parity": False, "load": False, "golden": True}      # a data file it names
    assert edit("compare.py") == {"parity": True, "load": True, "golden": True}         # the fixtures' closure
    assert edit("backends/openvino_backend.py") == {"parity": False, "load": False, "golden": False}
    assert edit("report/markdown.py") == {"parity": False, "load": False, "golden": False}
