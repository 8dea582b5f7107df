"""The hfmatrix pytest plugin (registered through the pytest11 entry point), opt-in.

Installed, it does nothing to a pytest run unless asked: ``--hfm``, any ``--hfm-*`` option (on the
command line, in PYTEST_ADDOPTS or in the ini file's addopts), ``hfmatrix run`` or the nox sessions.
Until then it only registers its options (all ``--hfm-*``) and its fixtures (all ``hfm_*``), so it
collides with no project's own options or fixtures, writes nothing and changes no report.

One job per module, each registered as a pytest plugin by this package (``PARTS``):

* ``options``          — the ``--hfm-*`` options and ``enabled(config)``, the opt-in switch.
* ``parametrization``  — ``hfm_case`` over model × target from the zoo (``Case``), shards, the
  ``hfm_*`` markers that narrow a test's cases (``case_filter``), known failures as strict xfails.
* ``loading``          — ``load_session`` (availability, the run's loading policy, a per-process LRU),
  ``hfm_model_dir``, ``hfm_backend_session``, ``hfm_intact_session``, ``hfm_reference_session``.
* ``properties``       — what a test puts into its record (``hfm_measure``, evidence, versions).
* ``outcomes``         — typed skips as skipped reports, known bugs judged against their entry, and
  ``classify``: a test's outcome from pytest's report objects.
* ``recording``        — one JSON-lines record per test and the run's meta, written by the xdist
  controller (or plain pytest); the terminal summary; verdict reuse hooked up.

The public API for code outside the plugin (suites, perf, scripts) is what this package exports:
``load_session``, ``run_info`` (the run's session name, shard, run id and results folder) and
``writes_records``, ``Case``, ``enabled``, ``model_free_endpoint``, ``check_available``,
``policy_options``, ``reference_target``.
"""
from __future__ import annotations

import sys

import pytest

from .. import isolation, progress
from . import loading, options, outcomes, parametrization, properties, recording
from .loading import REFERENCE, check_available, load_session, policy_options, reference_target, set_policy
from .options import enabled, export_environment, register_markers
from .outcomes import TypedSkipReports, classify
from .parametrization import Case, case_filter, model_free_endpoint, parse_case_id, parse_shard, selection, shard_of
from .properties import PROP_CASE, PROP_MEASURE
from .recording import Recorder, Run, RunInfo, run_info, writes_records

__all__ = ["Case", "PROP_CASE", "PROP_MEASURE", "REFERENCE", "RunInfo", "case_filter", "check_available", "classify",
           "enabled", "load_session", "model_free_endpoint", "parse_case_id", "parse_shard", "policy_options",
           "reference_target", "run_info", "shard_of", "writes_records"]

PARTS = (options, parametrization, loading, properties, outcomes, recording)
pytest_plugins = ["hfmatrix.perf.plugin"]  # perf options + fixtures; registered with this package so --perf-* parse


def pytest_addhooks(pluginmanager) -> None:
    """Register the parts as plugins of their own, as soon as this package is registered (before any
    option is parsed). Module objects, not names in pytest_plugins: this package has imported them
    already, and pytest would warn that it can no longer rewrite their asserts."""
    for part in PARTS:
        if not pluginmanager.is_registered(part):
            pluginmanager.register(part, part.__name__)


def pytest_configure(config: pytest.Config) -> None:
    """When asked for: markers, the loading policy, the run's state, and the plugins that act in this
    process (typed skips, isolation, progress, the recorder and re-runner in the writing process)."""
    if not enabled(config):
        return
    register_markers(config)
    set_policy(config)
    export_environment(config)
    selection(config)  # a bad --hfm-shard is a usage error here, in every process
    run = Run(config)
    config.pluginmanager.register(TypedSkipReports(), "hfmatrix-typed-skips")
    if not hasattr(config, "workerinput") and isolation.distributed(config):  # the xdist controller owns the watchdog dir
        run.isolation = isolation.Controller()
        config.pluginmanager.register(run.isolation, "hfmatrix-isolation")
    isolation.install(config, run.isolation)
    if not hasattr(config, "workerinput") and progress.wanted(sys.stdout):  # a terminal, not CI
        config.pluginmanager.register(progress.RunProgress(config), "hfmatrix-progress")
    if writes_records(config):
        run.open_writer()
        config.pluginmanager.register(Recorder(run), "hfmatrix-recorder")
        if config.getoption("--hfm-rerun-failures") > 0 and not run.attempt:
            from ..rerun import Rerunner
            config.pluginmanager.register(Rerunner(run, config.getoption("--hfm-rerun-failures")), "hfmatrix-rerun")
