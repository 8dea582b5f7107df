"""Loading: backend sessions under the run's loading policy, cached per process; the session fixtures.

``load_session`` is the one way a check gets a backend session: availability first (a typed skip),
then the backend's load with the run's policy (--hfm-allow-pickle, --hfm-trust-remote-code), then the
read-back of the precision that ran. Loaded sessions stay in a small LRU (``$HFMATRIX_SESSION_CACHE``,
default 2); ``fresh=True`` loads one the caller owns.

Planted-defect plugins (tests/) replace ``hfmatrix.plugin.load_session``: the fixtures here call it
through the package, so every check sees the replacement.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest

from .. import safeload, skips
from ..backends.base import Target
from .parametrization import Case
from .properties import attach


class _LRU:
    """Keeps the last few loaded backend sessions per process; evicted ones are closed."""

    def __init__(self, size: int):
        self.size, self.items = size, OrderedDict()

    def get(self, key, make):
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key]
        value = make()
        self.items[key] = value
        while len(self.items) > self.size:
            _, old = self.items.popitem(last=False)
            if hasattr(old, "close"):
                old.close()
        return value

    def drop(self, key) -> None:
        old = self.items.pop(key, None)
        if old is not None and hasattr(old, "close"):
            old.close()


_SESSIONS = _LRU(int(os.environ.get("HFMATRIX_SESSION_CACHE", "2")))
_REFERENCES = _LRU(2)
_AVAILABILITY: dict[Target, Any] = {}

# The run's loading policy (hfmatrix.safeload): --hfm-allow-pickle, and --hfm-trust-remote-code per model id.
_LOAD_POLICY: dict[str, Any] = {"allow_pickle": False, "trusted": set()}


def set_policy(config: pytest.Config) -> None:
    _LOAD_POLICY.update(allow_pickle=bool(config.getoption("--hfm-allow-pickle")),
                        trusted=safeload.trusted_models(config.getoption("--hfm-trust-remote-code")))


def policy_options(case: Case) -> dict[str, Any]:
    """The safe-loading keyword arguments every backend's load takes, for this case's model."""
    return {"allow_pickle": _LOAD_POLICY["allow_pickle"], "trust_remote_code": case.spec.id in _LOAD_POLICY["trusted"]}


def check_available(target: Target) -> None:
    """Raise the typed skip for an unavailable target (cached per process)."""
    if target not in _AVAILABILITY:
        from .. import backends
        try:
            _AVAILABILITY[target] = backends.get(target.backend).available(target.device, target.precision)
        except ImportError as exc:
            raise skips.DependencyMissing(f"backend {target.backend} not importable here: {exc}") from None
    _AVAILABILITY[target].require()


def load_session(case: Case, model_dir: Path, fresh: bool = False, **options):
    """Available? then load (cached per process unless fresh) under the run's loading policy.
    TypedSkip propagates to a typed skip."""
    from .. import backends
    from ..precision import check_read_back
    check_available(case.target)
    backend = backends.get(case.target.backend)
    options = {**policy_options(case), **options}
    key = (case.spec.id, str(model_dir), case.target)

    def load():
        session = backend.load(model_dir, case.spec, case.target, **options)
        check_read_back(case.target, session)  # verdicts are keyed by it: it must be what ran
        return session
    return load() if fresh else _SESSIONS.get(key, load)


def _package_load_session(case: Case, model_dir: Path):
    """hfmatrix.plugin.load_session as it is now (a planted-defect plugin may have replaced it)."""
    from .. import plugin
    return plugin.load_session(case, model_dir)


REFERENCE = Target("torch", "cpu", "fp32")


def reference_target(target: Target) -> Target:
    """What ``target`` is judged against: CPU fp32 torch, or float64 CPU torch for CPU fp32 torch itself."""
    same = (target.backend, target.device, target.effective) == (REFERENCE.backend, REFERENCE.device, "fp32")
    return Target("torch", "cpu", "fp64") if same else REFERENCE


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture
def hfm_model_dir(hfm_case: Case) -> Path:
    check_available(hfm_case.target)  # an absent device or backend skips before any build or export
    from ..zoo import materialize
    return materialize(hfm_case.spec)


@pytest.fixture
def hfm_backend_session(request, hfm_case: Case, hfm_model_dir: Path):
    session = _package_load_session(hfm_case, hfm_model_dir)
    attach(request.node, evidence=session.evidence())
    return session


@pytest.fixture
def hfm_intact_session(request, hfm_case: Case, hfm_model_dir: Path):
    """The intact model's session, for checks about something else (bad inputs, leaks). When the
    intact model does not load on this target because of a recorded known bug (its load_session check
    is a strict xfail in known_failures.toml), such a check cannot be evaluated: it skips as known-bug
    naming that entry instead of failing a second time for the same bug. Any other load failure fails."""
    from ..compare import exception_types, known_entry, out_of_range
    try:
        return request.getfixturevalue("hfm_backend_session")
    except skips.TypedSkip:
        raise
    except Exception as exc:
        t = hfm_case.target
        bug = known_entry("load_session", hfm_case.spec, t.backend, t.device, t.effective)
        if not bug or not isinstance(exc, exception_types(bug.get("raises", ()))) or out_of_range(bug, exc):
            raise  # not the recorded load bug: strict, as the load_session cell itself
        skips.skip(skips.KNOWN_BUG, f"the intact model does not load on this target ({type(exc).__name__}); "
                                    f"known bug of load_session: {bug['reason'][:400]}")


@pytest.fixture
def hfm_reference_session(hfm_case: Case, hfm_model_dir: Path):
    """CPU fp32 torch on the same folder: the reference every backend is compared with. CPU fp32 torch
    itself is compared with the same weights in float64 (compared with itself it could never fail)."""
    from ..backends import get
    ref_target = reference_target(hfm_case.target)
    return _REFERENCES.get((str(hfm_model_dir), ref_target),
                           lambda: get("torch").load(hfm_model_dir, hfm_case.spec, ref_target))
