"""The bad-input catalogue (hfmatrix/negative_cases.toml) for every model × backend it applies to.

Each case asserts exactly what the catalogue says this backend does: a named error with a message
pattern, or a documented behaviour (e.g. NaN propagates and the finite check reports it). A
backend that returns numbers for garbage fails here with the evidence in the record; a real backend
defect gets a strict known-bug entry (check "negative:<case id>") in hfmatrix/known_failures.toml.
Artifact cases corrupt a copy of the materialized folder under tmp_path, never the cache.
"""
from __future__ import annotations

import pytest

from hfmatrix import backends, negative, skips
from hfmatrix.backends import IN_PROCESS
from hfmatrix.backends.base import RunTimeout
from hfmatrix.compare import known_bug_marks
from hfmatrix.plugin import load_session
from hfmatrix.zoo.user import user_named

# Backends without catalogue expectations (web so far) are not collected: the suite would only
# fail there with "no expectation". They join by adding [[case.expect]] entries measured on them.
pytestmark = pytest.mark.hfm_backends(*negative.backends_covered())

DEFAULT_TIMEOUT = 300  # seconds per case: a corrupt artifact may be exported (ORT/OpenVINO) before it fails


def _applicable(hfm_case):
    for neg in negative.catalogue().values():
        if not neg.applies(hfm_case.spec):
            continue
        t = hfm_case.target
        if (neg.stage == "request") != (t.backend in negative.REQUEST_BACKENDS):
            continue  # bad HTTP requests go to served models; a served model gets only those
        marks = [pytest.mark.timeout(int(neg.args.get("timeout", DEFAULT_TIMEOUT)))]
        marks += known_bug_marks(f"negative:{neg.id}", hfm_case.spec, t.backend, t.device, t.effective)
        yield pytest.param(neg, id=neg.id, marks=marks)


@pytest.mark.hfm_per_case("neg", _applicable)
def test_negative(hfm_case, neg, hfm_model_dir, tmp_path, hfm_intact_session, hfm_measure):
    # hfm_intact_session first: a backend that cannot run this model at all skips there with its own
    # typed reason (or known-bug when the intact model's load is a recorded bug); after this point a
    # typed skip can only come from the bad input itself
    t = hfm_case.target
    expect = neg.expectation(hfm_case.spec, t.backend, t.device, t.precision)
    if neg.mutation == "memory_limit" and IN_PROCESS not in backends.capabilities(t.backend, t.device):
        skips.skip(skips.UNSUPPORTED, f"{neg.id}: the address-space cap binds this Python process; {t.backend} runs "
                                      "the model in other (already started) processes, which it cannot cap")
    if neg.stage == "load":
        outcome = negative.run_load_case(neg, hfm_case.spec, hfm_model_dir, tmp_path,
                                         lambda folder: load_session(hfm_case, folder, fresh=True))
    elif neg.stage == "run":
        # a fresh session: a bad input may leave a session unusable (OpenVINO's CPU plugin does), and
        # the cached one is shared with every other check on this worker
        fresh = load_session(hfm_case, hfm_model_dir, fresh=True)
        try:
            outcome = negative.run_input_case(neg, hfm_case.spec, hfm_model_dir, fresh)
        finally:
            fresh.close()
    elif neg.stage == "inputs":
        outcome = negative.run_raw_case(neg, hfm_case.spec, hfm_model_dir, tmp_path)
    elif neg.stage == "request":
        from hfmatrix.serving.bad_requests import run_request_case
        outcome = run_request_case(neg, hfm_case.spec, hfm_model_dir, hfm_intact_session)
    else:
        timeout = float(neg.args.get("timeout", DEFAULT_TIMEOUT)) - 30
        outcome = negative.run_subprocess_case(neg, hfm_case, hfm_model_dir, timeout=timeout)
    hfm_measure(negative_case=neg.id, stage=neg.stage, description=neg.description,
            expected=expect.describe() if expect else None, **outcome.evidence())
    for late in (outcome.error, outcome.recovery_error):
        if isinstance(late, RunTimeout):  # no answer (to the bad input, or to the intact one after it) is
            raise late  # nothing to judge: the cell fails as itself, and a known bug names it
    if isinstance(outcome.error, skips.TypedSkip) and not (expect and negative.judge(expect, outcome)[0]):
        # a corrupt input must not turn into a skip: that would hide it as "unsupported"
        pytest.fail(f"{neg.id}: the backend answered with a typed skip [{outcome.error.kind}] "
                    f"{outcome.error.reason[:500]} instead of an error")
    if expect is None and user_named(hfm_case.spec):
        # a folder given with --hfm-models: the catalogue cannot know its model; what it did is the record
        skips.skip(skips.NO_EXPECTATION, f"{neg.id}: no expectation for {hfm_case.spec.model_type} "
                                         f"({hfm_case.spec.arch_class}) on {t.backend} in negative_cases.toml; "
                                         f"observed: it {outcome.describe()}")
    assert expect is not None, (f"{neg.id}: no expectation for backend {t.backend} in negative_cases.toml; "
                                f"observed: it {outcome.describe()}")
    held, why = negative.judge(expect, outcome)
    assert held, f"{neg.id} ({neg.description}): {why}"
    assert outcome.facts.get("recovered") is not False, (
        f"{neg.id}: the expected {expect.describe()} happened, but afterwards the session fails the intact input: "
        f"{outcome.facts.get('intact_after_error')}")
