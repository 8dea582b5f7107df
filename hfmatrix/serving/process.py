"""A real OpenAI-compatible server process (`transformers serve`) on a free 127.0.0.1 port.

The server runs in its own process group (so stopping it kills everything it spawned) and gets
SIGTERM when the process that started it dies (PR_SET_PDEATHSIG on Linux), so neither a failing
test nor a killed pytest worker leaves it behind. Its stdout/stderr go to a log file whose tail
goes into every failure message.
"""
from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from .errors import ServerFailure

_LIVE: dict[int, "ServerProcess"] = {}  # pid -> server, stopped at interpreter exit whatever happened


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Continuous batching sizes its paged KV cache from the machine's memory when not told: a tiny llama's CB
# server took 12 GB RSS and two of them (xdist) met the OOM killer on a 24 GB host. The zoo's prompts are
# < 64 tokens and their answers 16 at most: 64 blocks of 32 tokens hold 16 concurrent requests with room.
CONTINUOUS_BATCHING = ("--continuous-batching", "--cb-block-size", "32", "--cb-num-blocks", "64",
                       "--cb-max-batch-tokens", "512")


def serve_command(model_dir: Path | None, port: int, *, dtype: str = "float32",
                  continuous_batching: bool = False, extra: tuple[str, ...] = ()) -> list[str]:
    """`transformers serve` from this interpreter's env, pinned to one model folder when given."""
    exe = Path(sys.executable).with_name("transformers")
    cli = [str(exe)] if exe.exists() else [shutil.which("transformers") or "transformers"]
    cmd = [*cli, "serve", *([str(model_dir)] if model_dir else []), "--host", "127.0.0.1", "--port", str(port),
           "--device", "cpu", "--dtype", dtype, "--log-level", "info"]
    return cmd + (list(CONTINUOUS_BATCHING) if continuous_batching else []) + list(extra)


def _child_setup() -> None:  # runs in the child between fork and exec
    os.setsid()
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class ServerProcess:
    def __init__(self, cmd: list[str], port: int, log_path: Path, env: dict[str, str] | None = None):
        self.cmd, self.port, self.log_path = cmd, port, Path(log_path)
        self.base_url = f"http://127.0.0.1:{port}"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     preexec_fn=_child_setup, env={**os.environ, **(env or {})})
        self.pid = self.proc.pid
        self.health: Any = None
        _LIVE[self.pid] = self

    def tail(self, lines: int = 25) -> str:
        """The log's last lines and what became of the process (a signal number tells a crash from a kill)."""
        try:
            text = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError as exc:
            text = f"(log unreadable: {exc})"
        return f"{text}\n[server process {self.pid}: {self.status()}]"

    def status(self) -> str:
        rc = self.proc.poll()
        if rc is None:
            return "running"
        return f"killed by {signal.Signals(-rc).name}" if rc < 0 else f"exited with status {rc}"

    def failure(self, kind: str, what: str) -> ServerFailure:
        return ServerFailure(kind, what, self.tail(), self.log_path)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_healthy(self, deadline_s: float) -> Any:
        """Poll /health until it answers 200 or the deadline passes; a dead process fails at once."""
        end = time.monotonic() + deadline_s
        last = "no answer yet"
        while time.monotonic() < end:
            if not self.alive():
                raise self.failure("start-failed", f"the server exited with status {self.proc.returncode} "
                                                   f"before it was healthy ({' '.join(self.cmd)})")
            try:
                r = httpx.get(self.base_url + "/health", timeout=2.0)
                if r.status_code == 200:
                    self.health = r.json()
                    return self.health
                last = f"HTTP {r.status_code}: {r.text[:200]}"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.25)
        raise self.failure("start-timeout", f"not healthy within {deadline_s:.0f} s (last: {last})")

    def stop(self, grace_s: float = 5.0) -> int | None:
        """SIGTERM the whole process group, SIGKILL it after grace_s; returns the exit status."""
        _LIVE.pop(self.pid, None)
        for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        try:  # a grandchild that outlived the leader still carries the group id
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._log.close()
        return self.proc.poll()

    def evidence(self) -> dict[str, Any]:
        return {"server_cmd": self.cmd, "server_pid": self.pid, "server_url": self.base_url,
                "server_health": self.health, "server_log": str(self.log_path)}


def start(cmd: list[str], port: int, log_path: Path, deadline_s: float, env: dict[str, str] | None = None) -> ServerProcess:
    """Start and wait for health; on any failure the process is stopped before the error propagates."""
    server = ServerProcess(cmd, port, log_path, env)
    try:
        server.wait_healthy(deadline_s)
    except BaseException:
        server.stop(grace_s=1.0)
        raise
    return server


class ExistingServer:
    """A deployment someone else runs (--hfm-endpoint): never started, stopped or killed by hfmatrix; its
    log is not ours. The API key is sent in a header and never written anywhere."""

    pid = None

    def __init__(self, base_url: str):
        self.base_url = base_url.rstrip("/")
        self.health: Any = None
        self.log_path = Path("(the deployment's own log)")
        try:
            r = httpx.get(self.base_url + "/health", timeout=10)
            self.health = {"status_code": r.status_code, "body": r.text[:200]}
        except httpx.HTTPError as exc:
            raise ServerFailure("died", f"{self.base_url}/health: {type(exc).__name__}: {exc}") from None

    def tail(self, lines: int = 25) -> str:
        return "(an existing deployment: its log is not available to hfmatrix)"

    def alive(self) -> bool:
        return True

    def stop(self, grace_s: float = 0.0) -> None:  # not ours to stop
        return None

    def evidence(self) -> dict[str, Any]:
        return {"server_url": self.base_url, "server_health": self.health, "existing_deployment": True}


@atexit.register
def _stop_all() -> None:
    for server in list(_LIVE.values()):
        server.stop(grace_s=1.0)
