"""What a test puts into its record, carried on pytest's reports as user properties (so xdist brings
them to the controller): the case, measured numbers and evidence (``hfm_measure``, ``attach``), the
backend's versions and the worker. ``collect`` reads them back from one test's phase reports."""
from __future__ import annotations

import os
from typing import Any

import pytest

from .. import reuse
from .options import enabled
from .parametrization import Case, selection

PROP_CASE = "hfm_case"
PROP_MEASURE = "hfm"
PROP_VERSIONS = "hfm_versions"
PROP_WORKER = "hfm_worker"


def attach(node, **values) -> None:
    """Put values into the record of the test ``node`` (one dict per test, however often called)."""
    for name, data in node.user_properties:
        if name == PROP_MEASURE and "_attached" in data:
            data.update(values)
            return
    node.user_properties.append((PROP_MEASURE, {"_attached": True, **values}))


@pytest.fixture
def hfm_measure(request):
    """Call ``measure(key=value, ...)`` to put numbers into this test's record."""
    data: dict[str, Any] = {}
    request.node.user_properties.append((PROP_MEASURE, data))

    def add(**values):
        data.update(values)
        return data
    return add


def case_of(item) -> Case | None:
    callspec = getattr(item, "callspec", None)
    case = callspec.params.get("hfm_case") if callspec else None
    return case if isinstance(case, Case) else None


def pytest_collection_modifyitems(session, config, items) -> None:
    if not enabled(config):
        return
    for item in items:
        case = case_of(item)
        if case is not None:
            item.user_properties.append((PROP_CASE, {
                "model": case.spec.id, "arch_class": case.spec.arch_class, "backend": case.target.backend,
                "device": case.target.device, "precision": case.target.precision,
                "effective_precision": case.target.effective}))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    if not enabled(item.config):
        return
    rep = outcome.get_result()
    if call.when == "call" or (call.when == "setup" and rep.outcome != "passed"):
        # versions of the backend under test, once per test (cheap, cached per process)
        rep.user_properties.append((PROP_VERSIONS, _versions(selection(item.config).backend)))
        rep.user_properties.append((PROP_WORKER, os.environ.get("PYTEST_XDIST_WORKER", "main")))


_VERSIONS: dict[str, dict[str, str]] = {}


def _versions(backend: str) -> dict[str, str]:
    if backend not in _VERSIONS:
        from .. import backends
        try:
            _VERSIONS[backend] = backends.get(backend).versions()
        except Exception as exc:  # backend missing in this env: the tests say why; versions say so too
            _VERSIONS[backend] = {"error": f"{type(exc).__name__}: {exc}"}
    return _VERSIONS[backend]


def collect(reports: list) -> dict[str, Any]:
    """What the phase reports carry: the case, measures, evidence, versions, worker, reuse key / verdict."""
    out: dict[str, Any] = {"props": {}, "measures": {}, "evidence": {}, "versions": {}, "worker": "",
                           reuse.PROP_KEY: "", reuse.PROP_REUSED: {}}
    for rep in reports:
        for name, value in rep.user_properties:
            if name == PROP_CASE:
                out["props"].update(value)
            elif name == PROP_MEASURE:
                value = dict(value)
                value.pop("_attached", None)
                out["evidence"].update(value.pop("evidence", {}) or {})
                out["measures"].update(value)
            elif name == PROP_VERSIONS:
                out["versions"] = value
            elif name == PROP_WORKER:
                out["worker"] = value
            elif name in (reuse.PROP_KEY, reuse.PROP_REUSED):
                out[name] = value
    return out
