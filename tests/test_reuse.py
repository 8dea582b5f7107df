"""Verdict reuse (hfmatrix/reuse.py) through the suite path: real suites, real zoo models, a store in
the test's own folder. The proof that a reused cell's body did not run is a planted defect armed only
by an environment variable outside the key: armed, a computed parity cell fails; reused, it passes."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, SUITES, read_records, run_suites
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
               '[[override]]\nmodel = "bert"\nbackend = "torch"\ndevice = "cpu"\nprecision = "fp32"\natol = 1e-5\nrtol = 1.3e-6\n'
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


# ----------------------------------------------------------------------------- a killed run, concurrent sessions
def _start(pytester, zoo_cache, results: Path, *args: str) -> "subprocess.Popen":
    """The suites in a pytest subprocess of our own (run_suites waits for the end; these tests kill it or
    run two at once), with the test's store (HFMATRIX_VERDICTS) and reading on."""
    env = {**os.environ, "HFMATRIX_CACHE": str(zoo_cache),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(pytester.path), os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, "-m", "pytest", *CHECKS, *args, f"--hfm-results-dir={results}", "-p", "no:cacheprovider",
           "--rootdir", str(pytester.path), f"--basetemp={pytester.path / ('bt-' + results.name)}", "-q"]
    return subprocess.Popen(cmd, cwd=pytester.path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _stored() -> dict[str, dict]:
    """check[model] -> stored record, for every entry of the store; an entry that does not load fails."""
    out = {}
    for path in Path(os.environ["HFMATRIX_VERDICTS"]).rglob("*.json"):
        record = reuse.load(path.stem)
        assert record is not None, f"store entry {path.name} does not load whole: {path.read_text()[:300]!r}"
        out[f"{record['check']}[{record['model']}]"] = record
    return out


def _by_cell(results: Path) -> dict[str, dict]:
    return {f"{r['check']}[{r['model']}]": r for r in read_records(results)}


def test_a_killed_run_leaves_a_readable_store_and_the_rerun_reuses_what_finished(pytester, zoo_cache):
    """SIGKILL from outside at an arbitrary point (as soon as the store holds 4 verdicts of 12): no
    finally, no atexit, possibly in the middle of a write. Every entry left loads whole, and the rerun
    reuses exactly the finished cells and computes the rest."""
    models = "--hfm-models=bert,gpt2"
    store = Path(os.environ["HFMATRIX_VERDICTS"])
    proc = _start(pytester, zoo_cache, pytester.path / "killed", models)
    deadline = time.monotonic() + 600
    while proc.poll() is None and len(list(store.rglob("*.json"))) < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, f"the run ended before it could be killed:\n{proc.communicate()[0][-3000:]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    finished = _stored()
    assert 4 <= len(finished) < 12, sorted(finished)
    rerun = _start(pytester, zoo_cache, pytester.path / "rerun", models)
    out = rerun.communicate(timeout=600)[0]
    assert rerun.returncode == 0, out[-3000:]
    after = _by_cell(pytester.path / "rerun")
    assert len(after) == 12 and all(r["outcome"] == "passed" for r in after.values())
    assert {k for k, r in after.items() if r["reused_from"]} == set(finished), "reused exactly what finished"
    assert {after[k]["reused_from"] for k in finished} == {r["run_id"] for r in finished.values()}
    assert set(_stored()) == set(after), "the rerun stored what it computed"


def test_two_sessions_writing_one_store_at_once_both_complete_and_leave_no_torn_entry(pytester, zoo_cache):
    """Two runs of the same cells started together on one empty store: each computes or reuses what the
    other stored, both complete green, and every entry is one run's whole verdict."""
    runs = [_start(pytester, zoo_cache, pytester.path / f"session{i}", "--hfm-models=bert,gpt2") for i in (1, 2)]
    outs = [p.communicate(timeout=900)[0] for p in runs]
    assert [p.returncode for p in runs] == [0, 0], "\n".join(o[-2000:] for o in outs)
    cells = [_by_cell(pytester.path / f"session{i}") for i in (1, 2)]
    ids = [{r["run_id"] for r in c.values()} for c in cells]
    assert all(len(c) == 12 and all(r["outcome"] == "passed" for r in c.values()) for c in cells)
    for mine, other in ((0, 1), (1, 0)):  # a reused cell names the other session's run
        assert {r["reused_from"] for r in cells[mine].values() if r["reused_from"]} <= ids[other]
    stored = _stored()
    assert set(stored) == set(cells[0]) and {r["run_id"] for r in stored.values()} <= ids[0] | ids[1]


WRITER = """
import sys
from hfmatrix import reuse
key, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
for i in range(n):
    reuse.save(key, {"outcome": "passed", "run_id": f"{tag}-{i}", "message": "x" * (1000 + 37 * i),
                     "measures": {"i": i, "pad": list(range(i % 200))}})
"""


def test_racing_writers_and_a_reader_see_only_whole_entries(tmp_path):
    """The store's write path itself, hammered: two processes rewrite one entry 300 times each while this
    one reads it; every read is absent (before the first write) or one writer's whole record."""
    key = "ab" * 32
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    writers = [subprocess.Popen([sys.executable, str(script), key, tag, "300"], env=env) for tag in ("a", "b")]
    seen = set()
    while any(w.poll() is None for w in writers):
        record = reuse.load(key)
        if record is None:
            assert not seen, "an entry once written read back torn or missing"
            continue
        i = record["measures"]["i"]
        assert record["run_id"].split("-")[0] in "ab" and len(record["message"]) == 1000 + 37 * i
        assert record["measures"]["pad"] == list(range(i % 200))
        seen.add(record["run_id"])
    assert [w.returncode for w in writers] == [0, 0]
    assert seen and reuse.load(key)["run_id"] in ("a-299", "b-299")


def test_a_workflow_cell_is_reused_and_keyed_by_its_second_models(pytester, zoo_cache, monkeypatch):
    """A second-axis parameter that is a function (a workflow) keys by its name, not its address (else
    no workflow cell was ever reused); the zoo models a suite names besides the cell's own (the classifier
    after whisper) are in the key: a change to one of them reruns the cell, a change to another model not."""
    args = (str(SUITES / "test_workflows.py"), "--hfm-models=clip")
    for _ in range(2):
        _, records = run_suites(pytester, zoo_cache, *args, reuse=True)
    assert [(r["check"], r["outcome"], bool(r["reused_from"])) for r in records] == [("workflow", "passed", True)]
    from hfmatrix.suites import test_workflows
    from hfmatrix.zoo import spec as zoo_spec
    assert reuse._param_repr(test_workflows.clip_towers) == "hfmatrix.suites.test_workflows.clip_towers"
    suite = str(SUITES / "test_workflows.py")
    base = reuse._other_models(suite, "whisper")
    assert set(base) == {"bert-cls", "clip", "minilm"}
    zoo = zoo_spec.ZOO_FILE.read_text()

    def edited(model: str, old: str, new: str) -> dict:
        text = zoo[zoo.index(f'id = "{model}"'):]
        (pytester.path / f"zoo-{model}.toml").write_text(zoo.replace(text, text.replace(old, new, 1)))
        monkeypatch.setattr(zoo_spec, "ZOO_FILE", pytester.path / f"zoo-{model}.toml")
        return reuse._other_models(suite, "whisper")
    assert edited("bert-cls", "intermediate_size = 64", "intermediate_size = 48")["bert-cls"] != base["bert-cls"]
    assert edited("gpt2", "n_embd = 32", "n_embd = 16") == base
