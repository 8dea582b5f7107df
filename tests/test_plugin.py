"""The plugin itself (pytester): parametrization, typed skips, known bugs, shards, records."""
from __future__ import annotations

import json

import pytest

from conftest import read_records

ZOO = """
[[model]]
id = "alpha"
arch_class = "encoder"
model_type = "bert"
task = "feature-extraction"
capabilities = ["text"]

[[model]]
id = "beta"
arch_class = "decoder"
model_type = "gpt2"
task = "text-generation"
capabilities = ["text"]
generate = { max_new_tokens = 2 }

[[model]]
id = "gamma"
arch_class = "vision"
model_type = "vit"
task = "image-classification"
capabilities = ["vision"]
"""

CHECKS = """
import pytest
from hfmatrix import skips

def test_any(hfm_case, hfm_measure):
    hfm_measure(max_abs_err=0.5, seen=hfm_case.id)
    assert hfm_case.spec.id in ("alpha", "beta", "gamma")

@pytest.mark.hfm_needs("generate")
def test_gen(hfm_case):
    assert hfm_case.spec.generate

def test_typed_skip(hfm_case):
    raise skips.HardwareAbsent("no widget on this machine")

def test_fails(hfm_case):
    assert hfm_case.spec.id != "gamma", "gamma is broken"
"""


@pytest.fixture
def project(pytester):
    pytester.makefile(".toml", zoo=ZOO)
    pytester.makepyfile(test_checks=CHECKS)
    return pytester


def _run(pytester, *args):
    res = pytester.path / "results"
    session = next((a.split("=", 1)[1] for a in args if a.startswith("--hfm-session-name=")), "torch")
    result = pytester.runpytest_subprocess(f"--hfm-zoo-file={pytester.path / 'zoo.toml'}", f"--hfm-results-dir={res}",
                                           "-p", "no:cacheprovider", *args)
    return result, read_records(res / session)


def test_parametrized_from_zoo_with_typed_outcomes(project):
    result, records = _run(project)
    by = {(r["check"], r["model"]): r for r in records}
    assert {m for c, m in by if c == "any"} == {"alpha", "beta", "gamma"}
    assert {m for c, m in by if c == "gen"} == {"beta"}  # hfm_needs selects, it does not skip
    assert by[("typed_skip", "alpha")]["outcome"] == "skipped"
    assert by[("typed_skip", "alpha")]["skip_kind"] == "hardware-absent"
    assert by[("typed_skip", "alpha")]["message"] == "no widget on this machine"
    assert by[("fails", "gamma")]["outcome"] == "failed" and "gamma is broken" in by[("fails", "gamma")]["message"]
    rec = by[("any", "beta")]
    assert rec["measures"] == {"max_abs_err": 0.5, "seen": "beta@torch-cpu-fp32"}
    assert (rec["backend"], rec["device"], rec["precision"], rec["arch_class"]) == ("torch", "cpu", "fp32", "decoder")
    assert rec["versions"].get("torch")
    assert result.ret == 1
    assert "hfmatrix: 6 passed, 1 failed, 3 skipped (hardware-absent: 3)" in result.stdout.str()
    meta = json.loads((project.path / "results" / "torch" / "meta-all.json").read_text())
    assert meta["complete"] is True and meta["counts"]["failed"] == 1


def _known_bugs(project, monkeypatch, text: str):
    """A known_failures file for this project's runs (HFMATRIX_KNOWN_FAILURES)."""
    kf = project.path / "kf.toml"
    kf.write_text(text)
    monkeypatch.setenv("HFMATRIX_KNOWN_FAILURES", str(kf))
    return kf


def test_known_bug_is_strict_xfail_and_a_fix_shows(project, monkeypatch):
    _known_bugs(project, monkeypatch, '[[known_bug]]\ncheck = "fails"\nmodel = "gamma"\nraises = "AssertionError"\nreason = "gamma defect #1"\n'
                  '[[known_bug]]\ncheck = "any"\nmodel = "alpha"\nraises = "AssertionError"\nreason = "alpha was broken, now fixed"\n')
    result, records = _run(project, "-k", "fails or any")
    by = {(r["check"], r["model"]): r for r in records}
    assert by[("fails", "gamma")]["outcome"] == "xfailed"
    assert by[("fails", "gamma")]["skip_kind"] == "known-bug"
    assert by[("any", "alpha")]["outcome"] == "xpassed"  # strict: the unexpected pass fails the run
    assert result.ret == 1


def test_unstable_known_bug_is_a_known_bug_skip_and_lists_match(project, monkeypatch):
    """An entry marked unstable (a real defect at the check's resolution) becomes a known-bug skip that
    says why; a list of model patterns matches any of them; an empty 'unstable' is refused."""
    kf = _known_bugs(project, monkeypatch, '[[known_bug]]\ncheck = "fails"\nmodel = ["beta", "gam*"]\n'
                     'raises = "AssertionError"\nreason = "gamma defect #2"\nunstable = "the verdict flipped between two runs"\n')
    result, records = _run(project, "-k", "fails")
    by = {(r["check"], r["model"]): r for r in records}
    gamma = by[("fails", "gamma")]
    assert gamma["outcome"] == "skipped" and gamma["skip_kind"] == "known-bug", gamma
    assert "gamma defect #2" in gamma["message"] and "verdict flipped" in gamma["message"]
    assert by[("fails", "beta")]["outcome"] == "skipped"
    assert by[("fails", "alpha")]["outcome"] == "passed"
    kf.write_text('[[known_bug]]\ncheck = "fails"\nmodel = "gamma"\nreason = "r"\nunstable = " "\n')
    from hfmatrix.compare import known_entry
    with pytest.raises(ValueError, match="unstable"):
        known_entry("fails", "gamma", "torch", "cpu", "fp32", path=kf)


def test_hangs_is_refused_a_hang_is_a_typed_timeout(tmp_path):
    """The never-run 'hangs' skip is gone: a run that does not answer raises the backend's typed timeout
    (WebRunTimeout, tests/test_web.py), so a hanging cell is a strict xfail naming it; 'hangs' is refused."""
    from hfmatrix.compare import known_entry
    kf = tmp_path / "hangs.toml"
    kf.write_text('[[known_bug]]\ncheck = "x"\nreason = "r"\nraises = "RunTimeout"\nhangs = "no answer"\n')
    with pytest.raises(ValueError, match="'hangs' is not a known-bug key"):
        known_entry("x", "bert", "web", "webgpu", "fp32", path=kf)
    ok = tmp_path / "timeout.toml"
    ok.write_text('[[known_bug]]\ncheck = "x"\nreason = "r"\nraises = "RunTimeout"\n')
    from hfmatrix.backends.base import RunTimeout
    from hfmatrix.compare import exception_types
    assert exception_types(known_entry("x", "bert", "web", "webgpu", "fp32", path=ok)["raises"]) == (RunTimeout,)


def test_shards_partition_the_models(project):
    seen = []
    for i in (1, 2, 3):
        _, records = _run(project, f"--hfm-shard={i}/3", "-k", "any", f"--hfm-session-name=s{i}")
        seen.append({r["model"] for r in records if r["model"]})
        assert all(r["shard"] == f"{i}of3" for r in records)
    assert set().union(*seen) == {"alpha", "beta", "gamma"}
    assert sum(len(s) for s in seen) == 3  # disjoint
    again = [{r["model"] for r in _run(project, f"--hfm-shard={i}/3", "-k", "any", f"--hfm-session-name=t{i}")[1]
              if r["model"]} for i in (1, 2, 3)]
    assert again == seen  # deterministic


def test_bad_shard_is_a_usage_error(project):
    result, _ = _run(project, "--hfm-shard=4/3")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--hfm-shard 4/3" in result.stderr.str()


def test_unknown_hub_model_skips_not_available_offline(project, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    project.makepyfile(test_load="def test_load(hfm_case, hfm_model_dir):\n    assert hfm_model_dir.is_dir()\n")
    result, records = _run(project, "test_load.py", "--hfm-models=nobody/no-such-model-xyz")
    assert len(records) == 1
    assert records[0]["outcome"] == "skipped" and records[0]["skip_kind"] == "dependency-missing"
    assert "not available offline" in records[0]["message"]


def test_xdist_controller_writes_every_record(project):
    result, records = _run(project, "-n", "2", "-k", "any or gen")
    assert sorted((r["check"], r["model"]) for r in records) == sorted(
        [("any", "alpha"), ("any", "beta"), ("any", "gamma"), ("gen", "beta")])
    assert {r["worker"] for r in records} <= {"gw0", "gw1"}


def test_failure_message_opens_with_the_assertion_under_xdist(project):
    """Under xdist the report text starts with the worker banner ("[gw0] linux -- Python ..."):
    the record's message must open with the assertion instead, the traceback after it."""
    result, records = _run(project, "-n", "1", "-k", "fails")
    rec = next(r for r in records if r["model"] == "gamma")
    first = rec["message"].splitlines()[0]
    assert rec["outcome"] == "failed" and first.startswith("AssertionError: gamma is broken"), first
    assert "[gw0]" in rec["message"]          # the full report is still there, after the assertion


def test_intact_session_skips_known_bug_only_for_a_recorded_load_bug(project, monkeypatch):
    """A check about something else (bad inputs, leaks) on a model whose intact load is a recorded
    known bug skips as known-bug naming it; any other load failure still fails (errors)."""
    project.makepyfile(planted_load="""
from hfmatrix.backends import torch_backend

def _load(self, *args, **kwargs):
    raise RuntimeError("planted: the intact model does not load")

torch_backend.TorchBackend.load = _load
""")
    project.makepyfile(test_other="def test_other(hfm_case, hfm_intact_session):\n    assert hfm_intact_session is not None\n")
    _known_bugs(project, monkeypatch,
                '[[known_bug]]\ncheck = "load_session"\nmodel = "alpha"\nraises = "RuntimeError"\nreason = "alpha load defect #7"\n')
    monkeypatch.setenv("PYTHONPATH", str(project.path))
    result, records = _run(project, "test_other.py", "-p", "planted_load")
    by = {r["model"]: r for r in records if r["check"] == "other"}
    assert by["alpha"]["outcome"] == "skipped" and by["alpha"]["skip_kind"] == "known-bug", by["alpha"]
    assert "alpha load defect #7" in by["alpha"]["message"] and "RuntimeError" in by["alpha"]["message"]
    assert by["beta"]["outcome"] == "error" and "planted: the intact model does not load" in by["beta"]["message"]
    assert result.ret == 1
