"""The plugin's options (all ``--hfm-*``) and the opt-in switch ``enabled(config)``.

Installed, the plugin registers these options and nothing else acts until one of them is given
(on the command line, in PYTEST_ADDOPTS or in the ini file's addopts), or ``--hfm`` itself.
"""
from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path

import pytest

_ENABLED = pytest.StashKey[bool]()

MARKERS = (
    "hfm_needs(*capabilities): only models whose spec has these capabilities",
    "hfm_requires(*capabilities): only targets whose backend offers these capabilities there "
    "(hfmatrix.backends.base: in-process, torch-module, device-memory, ...)",
    "hfm_backends(*names): only these backends",
    "hfm_precisions(*names): only these precisions",
    "hfm_devices(*names): only these devices (accelerator-only checks)",
    "hfm_known_bug(entry): the known_failures entry of this cell's strict xfail",
    "hfm_per_case(argname, provider): a second axis whose values depend on "
    "the case: provider(case) yields pytest.param values for argname (none = not applicable)",
)


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("hfmatrix", "hfmatrix model × backend matrix")
    g.addoption("--hfm", action="store_true", default=False,
                help="enable the hfmatrix plugin (any --hfm-* option enables it too; off otherwise)")
    g.addoption("--hfm-backend", default=os.environ.get("HFMATRIX_BACKEND", "torch"), help="backend under test (default torch)")
    g.addoption("--hfm-device", default=os.environ.get("HFMATRIX_DEVICE", "cpu"), help="device of the backend (default cpu)")
    g.addoption("--hfm-precision", default=os.environ.get("HFMATRIX_PRECISION", ""),
                help="comma-separated precisions (default: the backend's first)")
    g.addoption("--hfm-precisions-done", default="",
                help="comma-separated precisions another run of this session covers: a case whose effective "
                     "precision equals one of theirs is not run again (hfmatrix.precision.fold)")
    g.addoption("--hfm-models", default=os.environ.get("HFMATRIX_MODELS", "default"),
                help="comma-separated: 'default' (the zoo), zoo ids, autozoo:N (a deterministic sample of N auto-zoo "
                     "types), local HF folders, or hub ids (offline cache only)")
    g.addoption("--hfm-zoo-file", default=os.environ.get("HFMATRIX_ZOO_FILE", ""), help="zoo spec file (default: the built-in zoo)")
    g.addoption("--hfm-zoo-cache", default="", help="materialized model cache (default $HFMATRIX_CACHE or the user cache dir)")
    g.addoption("--hfm-session-name", default="", help="results/<session-name>/ (default: the backend name)")
    g.addoption("--hfm-results-dir", default="", help="where result records go (default ./results; 'none' disables)")
    g.addoption("--hfm-shard", default="", help="i/n: run the i-th of n deterministic shards (split by model id)")
    g.addoption("--hfm-localize", action="store_true", default=bool(os.environ.get("HFMATRIX_LOCALIZE")),
                help="name the first divergent module on every parity cell (failures and known bugs always do)")
    g.addoption("--hfm-rerun-failures", type=int, default=int(os.environ.get("HFMATRIX_RERUN_FAILURES", "0")),
                metavar="N", help="run each failing cell again, up to N times, in a fresh process; the report "
                                  "separates flaky (passed on a re-run) from failed every time; both stay failures")
    g.addoption("--hfm-no-reuse", action="store_true", default=False,
                help="recompute every cell instead of reusing stored verdicts whose inputs did not change "
                     "(hfmatrix/reuse.py; CI=true does the same)")
    g.addoption("--hfm-attempt", type=int, default=0, help=argparse.SUPPRESS)  # set on a re-run's process
    g.addoption("--hfm-allow-pickle", action="store_true", help="allow pickle-only weights (loaded with weights_only)")
    g.addoption("--hfm-trust-remote-code", action="append", default=[], metavar="MODEL_ID[,MODEL_ID]",
                help="run the code a model folder ships (auto_map) for these model ids only; repeatable, "
                     "also $HFMATRIX_TRUST_REMOTE_CODE; no wildcard")
    g.addoption("--hfm-endpoint", default="", help="serve backend: test this existing OpenAI-compatible server "
                "(URL) instead of starting one; --hfm-models names the same weights for the reference")
    g.addoption("--hfm-served-model", default="", help="serve backend: the model name the endpoint serves")
    g.addoption("--hfm-api-key-env", default="HFMATRIX_SERVE_API_KEY",
                help="serve backend: the environment variable holding the endpoint's API key (never logged)")
    g.addoption("--hfm-hard-timeout", type=float, default=None,
                help="seconds before a test stuck in native code is killed by the faulthandler watchdog "
                     "(default 2 x --timeout + 10; 0 disables); xdist then replaces the worker")


def enabled(config: pytest.Config) -> bool:
    """Asked for: --hfm or any --hfm-* option, wherever pytest read its arguments from. xdist workers
    and hfmatrix's own re-run processes get the same arguments, so they agree with their controller."""
    if _ENABLED in config.stash:
        return config.stash[_ENABLED]
    args = [*map(str, config.invocation_params.args), *shlex.split(os.environ.get("PYTEST_ADDOPTS", ""))]
    try:
        args += [str(a) for a in config.getini("addopts")]
    except ValueError:
        pass
    on = bool(config.getoption("--hfm", False)) or any(a.startswith("--hfm") for a in args)
    config.stash[_ENABLED] = on
    return on


def register_markers(config: pytest.Config) -> None:
    for line in MARKERS:
        config.addinivalue_line("markers", line)


def export_environment(config: pytest.Config) -> None:
    """Options that backends read from the environment, so xdist workers and child processes see them."""
    if config.getoption("--hfm-endpoint"):  # the API key itself stays in its own variable
        os.environ.update(HFMATRIX_SERVE_ENDPOINT=config.getoption("--hfm-endpoint"),
                          HFMATRIX_SERVE_MODEL=config.getoption("--hfm-served-model"),
                          HFMATRIX_SERVE_API_KEY_ENV=config.getoption("--hfm-api-key-env"))
    if config.getoption("--hfm-zoo-cache"):
        os.environ["HFMATRIX_CACHE"] = str(Path(config.getoption("--hfm-zoo-cache")).resolve())
