"""Outcome classification: one test's phase reports -> (outcome, message, skip kind).

Read from pytest's report objects and from what ``pytest_runtest_makereport`` saw, never from the
report's text: ``rep.when`` / ``rep.outcome``, ``wasxfail``, the longrepr's type, and attributes set
here while the exception was at hand (a TypedSkip's kind and reason, a timeout raised by pytest-timeout,
a strict xfail that passed). Those attributes are plain report fields, so xdist carries them to the
controller that classifies. A dead xdist worker's report (``when == "???"``) is classified by
hfmatrix.isolation, which reads the worker's watchdog file (``hfm_crash_kind``).
"""
from __future__ import annotations

import sys

import pytest

from .. import skips
from .options import enabled
from .properties import PROP_MEASURE, attach

# report attributes set in pytest_runtest_makereport
SKIP_KIND, SKIP_REASON = "hfm_skip_kind", "hfm_skip_reason"  # a skip's kind (None: untyped) and reason
TIMED_OUT = "hfm_timed_out"                                  # pytest-timeout's SIGALRM handler raised
XPASS_STRICT = "hfm_xpass_strict"                            # a strict xfail whose call passed
CRASH_KIND = "hfm_crash_kind"                                # hfmatrix.isolation: crashed / timeout


class TypedSkipReports:
    """A TypedSkip becomes a skipped report directly: pytest's own path would first format a full
    failure traceback (~0.5 s a test here), and most tests of an absent backend end this way."""

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_makereport(self, item, call):
        exc = call.excinfo.value if call.excinfo else None
        if not isinstance(exc, skips.TypedSkip):
            return None
        if exc.evidence:  # the refusal's own evidence, in the record
            attach(item, evidence={"refusal": {"type": type(exc).__name__, **exc.evidence}})
        path, lineno, _ = item.reportinfo()
        sections = [(f"Captured {key} {when}", content) for when, key, content in item._report_sections]
        return pytest.TestReport(
            item.nodeid, item.location, {k: 1 for k in item.keywords}, "skipped",
            (str(path), (lineno or 0) + 1, f"Skipped: [{exc.kind}] {exc.reason}"), call.when, sections,
            call.duration, call.start, call.stop, user_properties=item.user_properties)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """After pytest's own (xfail) handling: judge a known bug's failure against its entry, and note
    on the report what only the exception tells (a timeout, a strict xfail that passed)."""
    outcome = yield
    if not enabled(item.config):
        return
    rep = outcome.get_result()
    bug = item.get_closest_marker("hfm_known_bug")
    if bug is not None and call.when in ("setup", "call") and hasattr(rep, "wasxfail") and rep.skipped:
        _judge_known_bug(bug.args[0], call, rep)
    if rep.skipped and not hasattr(rep, "wasxfail"):
        _note_skip(call, rep)
    if rep.failed and _raised_by_timeout(call):
        setattr(rep, TIMED_OUT, True)
    if rep.failed and call.when == "call" and call.excinfo is None and item.get_closest_marker("xfail") is not None:
        setattr(rep, XPASS_STRICT, True)  # pytest failed a passing call: the strict xfail's XPASS


def _judge_known_bug(entry, call, rep) -> None:
    """A strict xfail that failed, but not as its known_failures entry says (another exception, a
    measured error out of the entry's range): a failure, not an expected one."""
    from ..compare import RANGE_KEYS, out_of_range
    exc = call.excinfo.value if call.excinfo else None
    if exc is not None:  # what the known bug raised, in the record: the evidence for its `raises`
        rep.user_properties.append((PROP_MEASURE, {"known_bug_raised": f"{type(exc).__module__}.{type(exc).__qualname__}",
                                                   **{k: getattr(exc, k) for k in RANGE_KEYS if hasattr(exc, k)}}))
    why = out_of_range(entry, exc)
    if why:
        rep.outcome, rep.longrepr = "failed", f"{why}\n{call.excinfo.exconly() if call.excinfo else ''}"
        del rep.wasxfail


def _note_skip(call, rep) -> None:
    """The skip's kind and reason from the exception that skipped: a TypedSkip's own fields, or the
    message of pytest's Skipped (skips.skip() and hfmatrix's skip marks write "[kind] reason")."""
    exc = call.excinfo.value if call.excinfo else None
    if isinstance(exc, skips.TypedSkip):
        kind, reason = exc.kind, exc.reason.strip()
    elif isinstance(exc, pytest.skip.Exception) and exc.msg is not None:
        kind, reason = skips.parse(exc.msg)
    else:
        return
    setattr(rep, SKIP_KIND, kind or None)
    setattr(rep, SKIP_REASON, reason)


def _raised_by_timeout(call) -> bool:
    """pytest-timeout's SIGALRM handler raised this exception (its frame is in the traceback)."""
    timeout = sys.modules.get("pytest_timeout")
    handler = getattr(timeout, "timeout_sigalrm", None)
    if call.excinfo is None or handler is None:
        return False
    return any(entry.frame.code.raw is handler.__code__ for entry in call.excinfo.traceback)


# ----------------------------------------------------------------------------- classification
def classify(reports: list) -> tuple[str, str, str | None]:
    """(outcome, message, skip_kind) from the phase reports of one test."""
    for rep in reports:
        if rep.when not in ("setup", "call", "teardown"):  # xdist's report for a test whose worker died
            return getattr(rep, CRASH_KIND, None) or "crashed", longrepr_text(rep), None
        if rep.failed:
            return _failure(rep)
    for rep in reports:
        if rep.skipped:
            return _skip(rep)
    for rep in reports:
        if rep.when == "call" and hasattr(rep, "wasxfail"):  # a non-strict xfail that passed
            return "xpassed", rep.wasxfail, skips.KNOWN_BUG
    return "passed", "", None


def _failure(rep) -> tuple[str, str, str | None]:
    text = longrepr_text(rep)
    if getattr(rep, TIMED_OUT, False):
        return "timeout", text, None
    if rep.when != "call":
        return "error", f"{rep.when}: {with_crash_line(rep, text)}", None
    if getattr(rep, XPASS_STRICT, False):
        return "xpassed", text, skips.KNOWN_BUG
    return "failed", with_crash_line(rep, text), None


def _skip(rep) -> tuple[str, str, str | None]:
    if hasattr(rep, "wasxfail"):  # the xfail mark's reason: hfmatrix's known bugs write "[known-bug] ..."
        kind, reason = skips.parse(rep.wasxfail)
        return "xfailed", reason, kind or skips.KNOWN_BUG
    if hasattr(rep, SKIP_REASON):  # noted in pytest_runtest_makereport
        return "skipped", getattr(rep, SKIP_REASON), getattr(rep, SKIP_KIND)
    # a skipped report some other plugin made, without an exception: its (path, lineno, reason)
    kind, reason = skips.parse(longrepr_text(rep))
    return "skipped", reason, kind


def with_crash_line(rep, text: str) -> str:
    """The assertion first: under xdist the report text opens with the worker banner
    ("[gw1] linux -- Python ..."), so a reader of the record's first line saw only that."""
    crash = getattr(getattr(rep.longrepr, "reprcrash", None), "message", None)
    return f"{crash}\n\n{text}" if crash else text


def longrepr_text(rep) -> str:
    lr = rep.longrepr
    if lr is None:
        return ""
    if isinstance(lr, tuple) and len(lr) == 3:
        return str(lr[2])
    return str(getattr(rep, "longreprtext", "") or lr)
