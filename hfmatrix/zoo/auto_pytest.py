"""pytest options of the auto-zoo (loaded with ``-p hfmatrix.zoo.auto_pytest`` by ``nox -s zoo``).

``--hfm-autozoo-sample N`` (or $HFMATRIX_AUTOZOO_SAMPLE): run a deterministic sample of N model types;
0 or 'all' runs every type. Without either, a CI run ($CI set) samples $HFMATRIX_AUTOZOO_CI_SAMPLE
(default 40) types unless the change touches the zoo's rule files (git diff against
$HFMATRIX_AUTOZOO_BASE, default HEAD~1), in which case it runs them all.
"""
from __future__ import annotations

import os
import subprocess

from . import auto

CI_SAMPLE_ENV = "HFMATRIX_AUTOZOO_CI_SAMPLE"
BASE_ENV = "HFMATRIX_AUTOZOO_BASE"


def pytest_addoption(parser) -> None:
    g = parser.getgroup("hfmatrix-autozoo", "hfmatrix auto-zoo")
    g.addoption("--hfm-autozoo-sample", default=None,
                help="deterministic sample of N model types (0 or 'all': every type); default $HFMATRIX_AUTOZOO_SAMPLE")


def changed_files(base: str) -> list[str] | None:
    try:
        out = subprocess.run(["git", "diff", "--name-only", base], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.split() if out.returncode == 0 else None


def resolve_sample(option: str | None, env: dict | None = None) -> int:
    env = dict(os.environ if env is None else env)
    if option is not None:
        env[auto.SAMPLE_ENV] = option
    if env.get(auto.SAMPLE_ENV, "").strip() or not env.get("CI"):
        return auto.sample_size(env)
    changed = changed_files(env.get(BASE_ENV, "HEAD~1"))
    return auto.sample_size(env, changed if changed is not None else [], default=int(env.get(CI_SAMPLE_ENV, "40")))


def pytest_configure(config) -> None:
    os.environ[auto.SAMPLE_ENV] = str(resolve_sample(config.getoption("--hfm-autozoo-sample")) or "all")
