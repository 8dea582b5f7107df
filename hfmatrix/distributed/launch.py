"""Start a torchrun job, hold it to a deadline, and turn a dead or hung rank into a typed failure.

The job runs in its own process group (start_new_session), so a deadline kills torchrun and every
rank it started; afterwards psutil confirms none of them is left (an orphan is a failure of its own).
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil


class JobFailed(Exception):
    """A distributed job did not finish: ``kind`` is 'rank-died' (a rank exited non-zero or was
    killed; torchrun then stops the others) or 'deadline' (nothing ended it in time: killed by us).
    ``logs`` maps rank -> that rank's log (-1: torchrun's own); ``pids`` are the job's processes,
    ``orphans`` those that outlived it."""

    def __init__(self, kind: str, message: str, logs: dict[int, str], returncode: int | None,
                 elapsed: float, orphans: list[int], pids: list[int] = ()):
        super().__init__(f"[{kind}] {message}")
        self.kind, self.logs, self.returncode, self.elapsed, self.orphans = kind, logs, returncode, elapsed, orphans
        self.pids = [*pids]


@dataclass
class RankResult:
    rank: int
    outputs: dict[str, np.ndarray]
    evidence: dict
    log: str = ""


@dataclass
class JobResult:
    world_size: int
    ranks: list[RankResult]
    elapsed: float
    pids: list[int] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _logs(out: Path, world_size: int) -> dict[int, str]:
    return {r: (out / f"rank-{r}.log").read_text(errors="replace")[-20000:]
            for r in range(world_size) if (out / f"rank-{r}.log").exists()}


def _stop(proc: subprocess.Popen, tree: list[psutil.Process]) -> list[int]:
    """SIGTERM, then SIGKILL, the job's process group and every process seen in its tree; returns
    the pids still alive afterwards (orphans)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        for p in tree:
            try:
                p.send_signal(sig)
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(tree, timeout=5)
        if not alive:
            break
    proc.wait(timeout=10)
    return alive_pids(p.pid for p in tree)


def alive_pids(pids) -> list[int]:
    """The pids among ``pids`` that still run (a zombie awaiting its reaper does not)."""
    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.Error:
            pass
    return alive


def run(world_size: int, worker_args: list[str], out: Path, deadline: float, env: dict | None = None) -> JobResult:
    """torchrun --nproc-per-node world_size -m hfmatrix.distributed.worker ...; raises JobFailed."""
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={world_size}", "--nnodes=1",
           f"--master-port={_free_port()}", "--max-restarts=0", "-m", "hfmatrix.distributed.worker",
           "--out", str(out), *worker_args]
    started = time.monotonic()
    with open(out / "torchrun.log", "wb") as agent_log:
        proc = subprocess.Popen(cmd, stdout=agent_log, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})
        tree: dict[int, psutil.Process] = {}
        while proc.poll() is None and time.monotonic() - started < deadline:
            try:  # remember every descendant while it lives: a dead parent no longer lists them
                tree.update({c.pid: c for c in psutil.Process(proc.pid).children(recursive=True)})
            except psutil.Error:
                pass
            time.sleep(0.2)
        timed_out = proc.poll() is None
        orphans = _stop(proc, list(tree.values()))
    elapsed = time.monotonic() - started
    logs = _logs(out, world_size)
    logs[-1] = (out / "torchrun.log").read_text(errors="replace")[-20000:]  # the agent's own account
    if timed_out:
        raise JobFailed("deadline", f"job still running after {deadline:.0f} s: killed", logs, None, elapsed,
                        orphans, [proc.pid, *tree])
    if proc.returncode != 0 or orphans:
        raise JobFailed("rank-died", f"torchrun exited {proc.returncode}; orphans {orphans}", logs,
                        proc.returncode, elapsed, orphans, [proc.pid, *tree])
    ranks = [RankResult(r, dict(np.load(out / f"rank-{r}.npz")), json.loads((out / f"rank-{r}.json").read_text()),
                        logs.get(r, "")) for r in range(world_size)]
    return JobResult(world_size, ranks, elapsed, sorted(tree))
