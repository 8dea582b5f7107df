"""Typed skip reasons.

Every skip in hfmatrix carries one of these kinds. A backend or fixture raises one of the
exceptions below; the plugin turns it into ``pytest.skip("[kind] reason")`` and the result
record gets ``skip_kind``. Known bugs are not skips: they are strict xfails from
``hfmatrix/known_failures.toml``.
"""
from __future__ import annotations

import re


HARDWARE_ABSENT = "hardware-absent"
DEPENDENCY_MISSING = "dependency-missing"
UNSUPPORTED = "unsupported-by-backend"
KNOWN_BUG = "known-bug"
#: the perf gate could not decide (no baseline for this fingerprint, or none comparable): neither pass nor fail
NO_BASELINE = "no-baseline"
#: the perf gate measured but could not decide: the samples were too noisy (above the noise bound), or a
#: regression seen once was not confirmed by the re-measure. Never a pass (hfmatrix/perf/calibrated.py)
INCONCLUSIVE = "inconclusive"
#: a folder given with --hfm-models met a bad input the catalogue has no expectation for (its model type
#: is not covered): the record says what it did; for the curated zoo a missing expectation is a failure
NO_EXPECTATION = "no-expectation"
KINDS = (HARDWARE_ABSENT, DEPENDENCY_MISSING, UNSUPPORTED, KNOWN_BUG, NO_BASELINE, INCONCLUSIVE, NO_EXPECTATION)

_PREFIX = re.compile(r"^\[(?P<kind>[a-z-]+)\]\s*(?P<reason>.*)$", re.S)


class TypedSkip(Exception):
    """Raised where a check cannot run; becomes a skip of ``kind``."""

    kind = ""
    #: what the refusal was read from (a registry lookup, an EP's placement report): goes into the record
    evidence: dict | None = None

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class HardwareAbsent(TypedSkip):
    kind = HARDWARE_ABSENT


class DependencyMissing(TypedSkip):
    kind = DEPENDENCY_MISSING


class Unsupported(TypedSkip):
    kind = UNSUPPORTED


def typed(kind: str, reason: str) -> TypedSkip:
    """The TypedSkip to raise for ``kind`` (a kind without its own class is unsupported-by-backend)."""
    return {HARDWARE_ABSENT: HardwareAbsent, DEPENDENCY_MISSING: DependencyMissing}.get(kind, Unsupported)(reason)


def skip(kind: str, reason: str):
    """pytest.skip with a typed reason; the only way suites should skip."""
    if kind not in KINDS:
        raise ValueError(f"unknown skip kind {kind!r}; expected one of {KINDS}")
    import pytest  # here, not at the top: the report env (no pytest) reads the kinds from this module
    pytest.skip(f"[{kind}] {reason}")


def parse(message: str) -> tuple[str | None, str]:
    """Split a skip/xfail message into (kind, reason); kind is None for an untyped skip."""
    text = message.strip()
    if text.startswith("Skipped: "):
        text = text[len("Skipped: "):]
    m = _PREFIX.match(text)
    if m and m.group("kind") in KINDS:
        return m.group("kind"), m.group("reason")
    return None, text
