"""Progress with an ETA (issue 15, item 6): bars on a terminal, nothing under CI or in a log.

The terminal is the faked boundary (a stream whose isatty() says yes); tqdm, pytest and the zoo are real.
"""
from __future__ import annotations

import io
import json

import pytest

from hfmatrix import exports, progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def terminal(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    return Terminal()


def test_quiet_under_ci_and_off_a_terminal(terminal, monkeypatch):
    assert progress.wanted(terminal)
    assert not progress.wanted(io.StringIO())  # a log file, pytest's capture
    monkeypatch.setenv("CI", "true")
    assert not progress.wanted(terminal)
    items = [1, 2, 3]
    assert progress.bar(items, desc="zoo build", unit="model", stream=terminal) is items
    with progress.step("export onnx bert", expected=10.0, stream=terminal):
        pass
    assert terminal.getvalue() == ""


def test_bar_counts_with_rate_and_eta(terminal):
    assert list(progress.bar([1, 2, 3], desc="zoo build", unit="model", stream=terminal)) == [1, 2, 3]
    out = terminal.getvalue()
    assert "zoo build" in out and "3/3" in out and "model/s" in out and "<" in out  # elapsed<remaining


def test_step_shows_the_typical_duration_and_never_claims_done_early(terminal):
    with progress.step("export openvino t5", expected=0.2, stream=terminal):
        progress.time.sleep(0.8)  # past its typical 0.2 s, one tick of the ticker thread
    out = terminal.getvalue()
    assert "export openvino t5" in out and "typical 0.2s" in out
    assert "100%" not in out and " 99%" in out, out


def test_run_progress_line():
    now = [0.0]
    run = progress.RunProgress(config=None, now=lambda: now[0])
    run.total, run.done = 40, 10
    run.pytest_runtest_logstart("test_parity[t5@openvino]", None)
    now[0] = 100.0
    assert run.line() == "hfmatrix: 10/40 tests in 1m40s, ETA 5m00s; running longest: test_parity[t5@openvino] (1m40s)"


@pytest.mark.parametrize("xdist", [(), ("-n", "1")], ids=["main", "xdist"])
def test_a_run_prints_progress_lines(pytester, monkeypatch, xdist):
    monkeypatch.setattr(progress, "wanted", lambda stream=None: True)  # as on a terminal
    monkeypatch.setattr(progress, "EVERY", 0.0)
    pytester.makepyfile(test_two="def test_a():\n    pass\n\ndef test_b():\n    pass\n")
    result = pytester.runpytest_inprocess("--hfm", "--hfm-results-dir=none", "-p", "no:cacheprovider", *xdist)
    result.assert_outcomes(passed=2)
    assert "hfmatrix: 1/2 tests in" in result.stdout.str() and "hfmatrix: 2/2 tests in" in result.stdout.str()
    plain = pytester.runpytest_inprocess("-p", "no:cacheprovider")  # the plugin off: nothing
    assert "tests in" not in plain.stdout.str()


def test_typical_export_seconds(tmp_path):
    for key, model, mtype, secs in [("a", "d1", "bert", 4.0), ("b", "d1", "bert", 6.0), ("c", "d1", "bert", 5.0),
                                    ("d", "d2", "bert", 50.0), ("e", "d3", "t5", 30.0)]:
        (tmp_path / key).mkdir()
        (tmp_path / key / exports.META).write_text(json.dumps(
            {"export_seconds": secs, "parts": {"model": model, "model_type": mtype}}))
    assert exports.typical_seconds(tmp_path, {"model": "d1", "model_type": "bert"}) == 5.0  # the same model first
    assert exports.typical_seconds(tmp_path, {"model": "new", "model_type": "t5"}) == 30.0  # then its model type
    assert exports.typical_seconds(tmp_path, {"model": "new", "model_type": "gpt2"}) is None
