"""Typed serving failures: each says what went wrong (kind) and carries the server's log tail."""
from __future__ import annotations

from pathlib import Path

#: what a served request or server can do wrong; the kind is set where it is observed, never parsed from text
KINDS = ("start-failed", "start-timeout", "died", "hung", "http-error", "malformed-json", "truncated-stream")


class ServerFailure(AssertionError):
    """A failure of the server under test (an AssertionError: the check fails, it does not error out)."""

    def __init__(self, kind: str, what: str, log_tail: str = "", log_path: Path | str = ""):
        if kind not in KINDS:
            raise ValueError(f"unknown serving failure kind {kind!r}; expected one of {KINDS}")
        self.kind, self.what, self.log_tail, self.log_path = kind, what, log_tail, str(log_path)
        super().__init__(f"[serve:{kind}] {what}\n--- server log tail ({log_path}) ---\n{log_tail}")
