"""The plugin is opt-in (issue 15): installed, it leaves a user's own pytest project alone unless asked.

Each test is one of the four cases a new user hit: a plain test got records and a banner, a conftest's
own --device option crashed pytest, a fixture named ``case`` was taken over, a segfault printed nothing
(the trace went to a watchdog file left in /tmp). The same projects run with --hfm show it does act then.
"""
from __future__ import annotations

import os

import pytest

PLAIN = "def test_one():\n    assert 1 + 1 == 2\n"


def _run(pytester, *args, tmpdir=None):
    env_tmp = tmpdir or (pytester.path / "tmp")
    env_tmp.mkdir(exist_ok=True)
    pytester._monkeypatch.setenv("TMPDIR", str(env_tmp))  # where a left-behind temp dir would show
    pytester._monkeypatch.delenv("PYTEST_ADDOPTS", raising=False)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "--basetemp", str(pytester.path / "bt"), *args)


def test_plain_project_untouched(pytester):
    pytester.makepyfile(test_plain=PLAIN)
    result = _run(pytester)
    result.assert_outcomes(passed=1)
    out = result.stdout.str()
    assert "hfmatrix session" not in out and "hfmatrix:" not in out, out
    assert not (pytester.path / "results").exists()
    assert sorted(os.listdir(pytester.path / "tmp")) == []


def test_asked_for_it_acts(pytester):
    """The same plain test with --hfm: the plugin is on (banner, records), so the opt-in is a real switch."""
    pytester.makepyfile(test_plain=PLAIN)
    result = _run(pytester, "--hfm", f"--hfm-results-dir={pytester.path / 'res'}")
    result.assert_outcomes(passed=1, warnings=0)  # e.g. none about plugin modules pytest cannot rewrite
    assert "hfmatrix session" in result.stdout.str()
    assert list((pytester.path / "res").rglob("records-*.jsonl"))


def test_users_own_device_option(pytester):
    pytester.makeconftest("def pytest_addoption(parser):\n"
                          "    parser.addoption('--device', default='cpu')\n"
                          "    parser.addoption('--backend', default='mine')\n")
    pytester.makepyfile(test_dev="def test_dev(request):\n    assert request.config.getoption('--device') == 'tpu'\n")
    result = _run(pytester, "--device", "tpu")
    result.assert_outcomes(passed=1)
    assert "already used" not in result.stderr.str()


def test_users_own_case_fixture(pytester):
    pytester.makeconftest("import pytest\n\n@pytest.fixture(params=[{'x': 1}, {'x': 2}])\n"
                          "def case(request):\n    return request.param\n")
    pytester.makepyfile(test_case="def test_case(case):\n    assert case['x'] in (1, 2)\n")
    result = _run(pytester)
    result.assert_outcomes(passed=2)
    # with the plugin on, the user's fixture is still theirs: hfmatrix's is hfm_case
    result = _run(pytester, "--hfm", "--hfm-results-dir=none")
    result.assert_outcomes(passed=2)


@pytest.mark.parametrize("mode", [(), ("--hfm", "--hfm-results-dir=none"),
                                  ("--hfm", "--hfm-results-dir=none", "-n", "1")], ids=["off", "on", "on-xdist"])
def test_segfault_trace_on_terminal_nothing_left(pytester, mode):
    pytester.makepyfile(test_crash="import ctypes\n\ndef test_crash():\n    ctypes.string_at(0)\n")
    result = _run(pytester, *mode)
    text = result.stdout.str() + result.stderr.str()
    assert "Segmentation fault" in text, text
    assert "test_crash" in text, text  # the frame of the test that crashed, not only the signal
    assert result.ret != 0
    assert sorted(os.listdir(pytester.path / "tmp")) == [], "left behind in the temp dir"
