"""Outcomes come from pytest's report objects (hfmatrix/plugin/outcomes.py), not from the report's text:
a failure whose message reads like a strict XPASS or a pytest-timeout timeout stays a failure, while the
real strict XPASS, the real timeout and a TypedSkip are classified as such, in one process and under
xdist (where the reports travel to the controller that writes the records)."""
from __future__ import annotations

import pytest

from conftest import read_records

pytest.importorskip("pytest_timeout")
pytest.importorskip("xdist")

CHECKS = '''
import time
import pytest
from hfmatrix import skips


def test_reads_like_strict_xpass():
    pytest.fail("[XPASS(strict)] only words")


def test_reads_like_timeout():
    assert False, "+++ Timeout +++ Failed: Timeout (>1.0s) from pytest-timeout."


@pytest.fixture
def broken():
    raise RuntimeError("[XPASS(strict)] in a fixture")


def test_setup_fails(broken):
    pass


@pytest.mark.xfail(strict=True, reason="[known-bug] fixed since")
def test_strict_xpass():
    pass


@pytest.mark.xfail(strict=True, reason="[known-bug] still there")
def test_xfail():
    raise ValueError("still broken")


@pytest.mark.timeout(2)
def test_times_out():
    time.sleep(60)


def test_typed_skip():
    raise skips.Unsupported("  no such operator  ")


def test_kind_in_skip():
    skips.skip(skips.NO_BASELINE, "none recorded")


def test_untyped_skip():
    pytest.skip("plain")
'''

EXPECTED = {
    "reads_like_strict_xpass": ("failed", None, "Failed: [XPASS(strict)] only words"),
    "reads_like_timeout": ("failed", None, "AssertionError: +++ Timeout +++ Failed: Timeout (>1.0s) from pytest-timeout."),
    "setup_fails": ("error", None, "setup: RuntimeError: [XPASS(strict)] in a fixture"),
    "strict_xpass": ("xpassed", "known-bug", None),  # under xdist the text opens with the worker banner
    "xfail": ("xfailed", "known-bug", "still there"),
    "times_out": ("timeout", None, None),
    "typed_skip": ("skipped", "unsupported-by-backend", "no such operator"),
    "kind_in_skip": ("skipped", "no-baseline", "none recorded"),
    "untyped_skip": ("skipped", None, "plain"),
}


@pytest.mark.parametrize("xdist", [(), ("-n", "1")], ids=["plain", "xdist"])
def test_outcomes_from_reports_not_text(pytester, xdist):
    pytester.makepyfile(test_checks=CHECKS)
    results = pytester.path / "results"
    result = pytester.runpytest_subprocess("--hfm", f"--hfm-results-dir={results}", "--hfm-no-reuse",
                                           "--timeout-method=signal", "-p", "no:cacheprovider", *xdist)
    got = {r["check"]: r for r in read_records(results)}
    assert set(got) == set(EXPECTED), result.stdout.str()[-3000:]
    for check, (outcome, kind, first_line) in EXPECTED.items():
        r = got[check]
        assert (r["outcome"], r["skip_kind"]) == (outcome, kind), (check, r["message"][:500])
        if first_line is not None:
            assert r["message"].splitlines()[0] == first_line, (check, r["message"][:500])
    assert got["strict_xpass"]["message"].splitlines()[-1] == "[XPASS(strict)] [known-bug] fixed since"
    assert "Timeout (>2.0s) from pytest-timeout" in got["times_out"]["message"]
    assert result.ret == 1
