"""Known bugs are strict about how they fail (issue 14 item 2): every entry of the shipped table names the
exception its cell fails with, and through the real suites a known-bug cell that fails with another
exception, another message or by another amount is a failure, in the setup phase (a load or export that
fails inside the session fixture) as in the call."""
from __future__ import annotations

import importlib.util
import re

import pytest

from conftest import SUITES, outcomes, run_suites
from test_checks_bite import LAST_TOKEN_CHANGED
from hfmatrix import compare, memory
from hfmatrix.compare import RANGE_KEYS, exception_types, out_of_range

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover
    import tomli as tomllib  # type: ignore


def _shipped() -> list[dict]:
    with open(compare.KNOWN_FAILURES, "rb") as fh:
        return tomllib.load(fh)["known_bug"]


def _importable(name: str) -> bool:
    """A builtin, a harness name, or a dotted class whose top package is installed in this env."""
    path = compare.HARNESS_EXCEPTIONS.get(name, name)
    return "." not in path or importlib.util.find_spec(path.split(".")[0]) is not None


def test_every_shipped_known_bug_names_its_exception():
    for entry in _shipped():
        where = f"{entry['check']} / {entry.get('backend')} / {entry.get('model_type') or entry.get('model')}"
        names = [entry["raises"]] if isinstance(entry.get("raises"), str) else list(entry.get("raises", []))
        assert names, f"{where}: a known bug without `raises` would accept any failure, a crash or a timeout"
        for name in filter(_importable, names):
            assert exception_types(name), where  # resolves to an exception class, else ValueError
        for key in RANGE_KEYS:
            if key in entry:
                low, high = (float(v) for v in entry[key])
                assert 0 <= low <= high, f"{where}: {key} = {entry[key]} is not a range [low, high]"
        if "match" in entry:
            re.compile(entry["match"])


def test_entry_without_raises_is_refused(tmp_path):
    kf = tmp_path / "known.toml"
    kf.write_text('[[known_bug]]\ncheck = "parity"\nreason = "a defect, measured"\n')
    with pytest.raises(ValueError, match="'raises' must name the exception"):
        compare.known_entry("parity", "bert", "torch", "cpu", "fp32", path=kf)


def test_carried_ranges_and_message_pattern():
    found = memory.Verdict("rss", growth_per_cycle=900e3, bound=200e3, noise=1e3, total_growth=7e6, leaked=True,
                           readings=[1, 2, 3, 4])
    grew = memory.MemoryGrowth("RSS grows per load -> release cycle", found)
    assert isinstance(grew, AssertionError) and "900,000 B/cycle" in str(grew)
    assert out_of_range({"growth_per_cycle": [3e5, 4e6]}, grew) is None
    assert "growth_per_cycle in [1000, 5000]" in out_of_range({"growth_per_cycle": [1e3, 5e3]}, grew)
    flipped = compare.TokensDiffer("greedy ids differ first at (row, position) [0, 3]", 3)
    assert out_of_range({"first_position": [3, 5]}, flipped) is None
    assert "first_position in [1, 2]" in out_of_range({"first_position": [1, 2]}, flipped)
    assert out_of_range({"match": r"\(row, position\) \[0, 3\]"}, flipped) is None
    assert "message matching /position 4/" in out_of_range({"match": "position 4"}, flipped)


# the backend under test's load fails in the session fixture (setup phase), as an export ORT refuses does
FAILING_LOAD = """
import hfmatrix.plugin as plugin
def load_session(*a, **k):
    raise RuntimeError("planted: the export writes an invalid graph")
plugin.load_session = load_session
"""

SETUP_BUGS = """
[[known_bug]]
check = "output_shapes"
backend = "torch"
raises = "ExportFailed"
reason = "planted: names another exception than the load raises"

[[known_bug]]
check = "finite"
backend = "torch"
raises = "RuntimeError"
match = "invalid graph"
reason = "planted: names the load's exception and message"

[[known_bug]]
check = "deterministic"
backend = "torch"
raises = "RuntimeError"
match = "out of memory"
reason = "planted: names the load's exception with another message"

[[known_bug]]
check = "load_session"
backend = "torch"
raises = "ExportFailed"
reason = "planted: a recorded load bug of another type than the load raises"
"""


def test_setup_phase_failure_is_strict_about_type_and_message(pytester, zoo_cache, monkeypatch):
    kf = pytester.path / "known.toml"
    kf.write_text(SETUP_BUGS)
    monkeypatch.setenv("HFMATRIX_KNOWN_FAILURES", str(kf))
    # a check about something else skips as known-bug only when the intact load fails as its load_session entry says
    other = pytester.makepyfile(test_other="def test_other(hfm_case, hfm_intact_session):\n    pass\n")
    _, records = run_suites(pytester, zoo_cache, str(SUITES / "test_inference.py"), str(other), "--hfm-models=bert",
                            "-k", "output_shapes or finite or deterministic or other", plant=FAILING_LOAD)
    got, by = outcomes(records), {r["check"]: r for r in records}
    assert got["output_shapes[bert]"] in ("failed", "error"), by["output_shapes"]  # another type
    assert got["finite[bert]"] == "xfailed", by["finite"]
    assert by["finite"]["measures"]["known_bug_raised"] == "builtins.RuntimeError"  # setup-phase evidence
    assert got["deterministic[bert]"] in ("failed", "error"), by["deterministic"]  # another message
    assert "out of memory" in by["deterministic"]["message"]
    assert got["other[bert]"] == "error" and "invalid graph" in by["other"]["message"], by["other"]


CALL_BUGS = """
[[known_bug]]
check = "generate_greedy"
model_type = "gpt2"
backend = "torch"
raises = "TokensDiffer"
first_position = [1, 1000]
reason = "planted: the flip where it is"

[[known_bug]]
check = "generate_greedy"
model_type = "llama"
backend = "torch"
raises = "TokensDiffer"
first_position = [0, 0]
reason = "planted: a flip at another step than the one measured"

[[known_bug]]
check = "generate_greedy"
model_type = "mixtral"
backend = "torch"
raises = "ToleranceExceeded"
reason = "planted: another type than the flip raises"
"""


def test_call_phase_failure_is_strict_about_type_and_position(pytester, zoo_cache, monkeypatch):
    kf = pytester.path / "known.toml"
    kf.write_text(CALL_BUGS)
    monkeypatch.setenv("HFMATRIX_KNOWN_FAILURES", str(kf))
    _, records = run_suites(pytester, zoo_cache, str(SUITES / "test_generate.py"), "--hfm-models=gpt2,llama,mixtral",
                            plant=LAST_TOKEN_CHANGED)  # the last greedy token changed
    got, by = outcomes(records), {r["model"]: r for r in records}
    assert got["generate_greedy[gpt2]"] == "xfailed", by["gpt2"]
    assert by["gpt2"]["measures"]["known_bug_raised"] == "hfmatrix.compare.TokensDiffer"
    assert by["gpt2"]["measures"]["first_position"] >= 1
    assert got["generate_greedy[llama]"] == "failed", by["llama"]
    assert "first_position in [0, 0]" in by["llama"]["message"]
    assert got["generate_greedy[mixtral]"] == "failed", by["mixtral"]
    assert "TokensDiffer" in by["mixtral"]["message"]
