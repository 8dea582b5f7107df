"""Flaky or broken: each failing cell run again in a fresh process (``--hfm-rerun-failures N``).

After the run (in the process that writes records), the node ids whose outcome was failed, error,
crashed or timeout are run again, up to N times, each time in a new pytest process with the same
options (no xdist: one fresh process is the fresh worker). The re-runs write their own records
(``records-<shard>.rerun<k>.jsonl``, every record with ``attempt = k``); the report counts a cell that
passed on a re-run as **flaky** and one that failed every time as **failed every time**. Both stay
failures: the run's exit status is not changed by a passing re-run.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .records import RERUN_OUTCOMES, selectable

RERUN_BAD = RERUN_OUTCOMES
# options of the first run a re-run must not repeat: it names its tests, runs in one process,
# and must not overwrite the first run's JUnit XML
_DROP_WITH_VALUE = {"-n", "--numprocesses", "--dist", "--junitxml", "--junit-xml", "--hfm-rerun-failures",
                    "--hfm-attempt", "-k", "-m", "--maxprocesses"}


def child_args(args: list[str], paths: list[str]) -> list[str]:
    """The first run's options without its test paths (pytest's parsed positional args), selection
    and parallelism."""
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in _DROP_WITH_VALUE:
            skip = "=" not in arg
            continue
        if arg in paths:
            continue  # a test path: the re-run names its node ids instead
        out.append(arg)
    return out


def failing(records_file: Path, rootdir: Path) -> list[str]:
    """Node ids (absolute paths: the re-run may start elsewhere) of the cells that ended badly."""
    ids = []
    for line in records_file.read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            path, _, rest = selectable(rec["nodeid"]).partition("::")  # xdist's @group is not part of it
            nodeid = f"{rootdir / path}::{rest}"
            if rec.get("outcome") in RERUN_BAD and nodeid not in ids:
                ids.append(nodeid)
    return ids


class Rerunner:
    """Registered in the writing process when --hfm-rerun-failures > 0."""

    def __init__(self, state, rounds: int):
        self.st, self.rounds = state, rounds

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session, exitstatus) -> None:
        st = self.st
        if st.writer is None:
            return
        root = st.config.rootpath
        ids = failing(st.writer.path, root)
        args = child_args(list(st.config.invocation_params.args), list(st.config.args))
        for k in range(1, self.rounds + 1):
            if not ids:
                break
            subprocess.run([sys.executable, "-m", "pytest", *args, f"--hfm-attempt={k}", "-p", "no:cacheprovider",
                            *ids], cwd=st.config.invocation_params.dir, env={**os.environ, "HFMATRIX_RUN_ID": st.run_id},
                           check=False)
            rerun = st.results / f"records-{st.shard_tag}.rerun{k}.jsonl"
            ids = failing(rerun, root) if rerun.is_file() else ids
