"""Crash and hang isolation, and durable records, checked on real pytest runs in child processes.

The victims are real: a segfault (ctypes.string_at(0)), an abort, a Python-level hang
(time.sleep, interruptible by SIGALRM) and a native deadlock that holds the GIL (a default
pthread mutex locked twice through ctypes.PyDLL), which only the faulthandler watchdog can end.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from hfmatrix.records import read_records

pytest.importorskip("xdist")
pytest.importorskip("pytest_timeout")

SOFT_TIMEOUT = 3  # seconds; pytest-timeout (signal)
HARD_TIMEOUT = 2 * SOFT_TIMEOUT + 10  # the plugin's default for the native watchdog

VICTIMS = textwrap.dedent('''
    import ctypes, os, time

    def test_before(hfm_case):
        assert hfm_case.spec.id

    def test_victim(hfm_case):
        if hfm_case.spec.id == "gpt2":
            ctypes.string_at(0)                      # SIGSEGV
        elif hfm_case.spec.id == "t5":
            os.abort()                               # SIGABRT
        elif hfm_case.spec.id == "vit":
            time.sleep(600)                          # a hang SIGALRM can interrupt
        elif hfm_case.spec.id == "bert":
            libc = ctypes.PyDLL(None)                # PyDLL: the GIL stays held during the call
            mutex = ctypes.create_string_buffer(64)  # zeroed = PTHREAD_MUTEX_INITIALIZER
            libc.pthread_mutex_lock(mutex)
            libc.pthread_mutex_lock(mutex)           # deadlock in native code, GIL held
        assert hfm_case.spec.id

    def test_after(hfm_case):                            # same model group, after the victim
        assert hfm_case.spec.id
''')
MODELS = ("bert", "gpt2", "t5", "vit", "llama", "clip")
EXPECTED_VICTIMS = {  # model -> (outcome, evidence the record must carry)
    "gpt2": ("crashed", "Fatal Python error: Segmentation fault"),
    "t5": ("crashed", "Fatal Python error: Aborted"),
    "vit": ("timeout", f"Timeout (>{float(SOFT_TIMEOUT)}s) from pytest-timeout"),
    "bert": ("timeout", f"Timeout (0:00:{HARD_TIMEOUT:02d})!"),
}


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_XDIST", "PYTEST_ADDOPTS"))}
    env.update(HF_HUB_OFFLINE="1", PYTHONDONTWRITEBYTECODE="1")
    return env


def _pytest(tmp_path: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", f"--hfm-results-dir={tmp_path / 'results'}",
            "--hfm-session-name=iso", *args]


def _records(tmp_path: Path) -> list[dict]:
    records, problems = read_records(tmp_path / "results" / "iso" / "records-all.jsonl")
    assert not problems, problems
    return records


def _meta(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "results" / "iso" / "meta-all.json").read_text())


def test_crashes_and_hangs_are_isolated_under_xdist(tmp_path, record_property):
    (tmp_path / "test_victims.py").write_text(VICTIMS)
    cmd = _pytest(tmp_path, "test_victims.py", "-n", "2", "--dist=loadgroup", f"--hfm-models={','.join(MODELS)}",
                  f"--timeout={SOFT_TIMEOUT}", "--max-worker-restart=8")
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600)
    wall = time.monotonic() - start
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, f"the run must fail (exit 1), got {proc.returncode}\n{out[-3000:]}"

    records = _records(tmp_path)
    nodeids = [r["nodeid"] for r in records]
    assert len(nodeids) == len(set(nodeids)), "a test got two records (a crashed test was run again)"
    assert len(records) == 3 * len(MODELS), f"every test gets exactly one record; got {len(records)}\n{out[-3000:]}"
    by_key = {(r["check"], r["model"]): r for r in records}
    for model in MODELS:
        assert by_key[("before", model)]["outcome"] == "passed"
        assert by_key[("after", model)]["outcome"] == "passed", f"{model}: the test after the victim did not run"
        victim = by_key[("victim", model)]
        if model in EXPECTED_VICTIMS:
            outcome, evidence = EXPECTED_VICTIMS[model]
            assert victim["outcome"] == outcome, f"{model}: {victim['outcome']}: {victim['message'][:500]}"
            assert evidence in victim["message"], f"{model}: no {evidence!r} in {victim['message'][:800]}"
            assert "test_victims.py" in victim["message"], "the record must show the victim's own frame"
            assert victim["backend"] == "torch" and victim["worker"].startswith("gw")
        else:
            assert victim["outcome"] == "passed"

    meta = _meta(tmp_path)
    assert meta["complete"] is True and meta["not_run"] == [] and meta["exitstatus"] == 1
    assert meta["counts"] == {"passed": 14, "crashed": 2, "timeout": 2}
    assert "2 crashed, 2 timed out" in out

    # recovery: from a worker's death to the next record of any worker
    stamps = sorted(r["timestamp"] for r in records)
    recover = {}
    for r in records:
        if r["outcome"] == "crashed" or "Timeout (0:" in r["message"]:
            later = [t for t in stamps if t > r["timestamp"]]
            recover[r["model"]] = round(later[0] - r["timestamp"], 1) if later else None
    record_property("recovery_seconds", recover)
    record_property("wall_seconds", round(wall, 1))
    print(f"\nwall {wall:.1f}s, recovery after each worker death (s): {recover}")
    assert wall < 300, f"the run took {wall:.0f}s: something stalled"


def test_killed_run_keeps_its_records(tmp_path):
    """SIGKILL the controller mid-run: the records so far are readable and meta says incomplete."""
    (tmp_path / "test_slow.py").write_text(textwrap.dedent('''
        import time, pytest

        @pytest.mark.parametrize("i", range(40))
        def test_slow(i):
            time.sleep(0.5)
    '''))
    cmd = _pytest(tmp_path, "test_slow.py", "-n", "2")
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    path = tmp_path / "results" / "iso" / "records-all.jsonl"
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if path.exists() and path.read_text().count("\n") >= 5:
                break
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.2)
        else:
            pytest.fail("no 5 records within 240 s")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the xdist workers this run started
        except ProcessLookupError:
            pass
    assert proc.returncode == -signal.SIGKILL
    records, problems = read_records(path)
    assert len(problems) <= 1, problems  # at most a last line cut by the kill
    assert 5 <= len(records) < 40
    assert all(r["outcome"] == "passed" for r in records)
    meta = _meta(tmp_path)
    assert meta["complete"] is False and meta["finished"] is None
