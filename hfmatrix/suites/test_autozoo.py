"""The auto-zoo: every transformers model type × (base model, main-task head), tiny and random.

Parametrized straight from transformers' own registries (hfmatrix.zoo.auto.cases); no per-model
code. Each test runs the stages config → build → forward → determinism → save → load → reload and
fails naming the first stage that broke. Known library bugs (auto_known.toml) are strict xfails on
their stage: a fix shows up as an unexpected pass, a failure at another stage as a plain failure.
"""
from __future__ import annotations

import os

import pytest

from hfmatrix import skips
from hfmatrix.backends import REFERENCE
from hfmatrix.zoo import auto

BACKEND_TAG = REFERENCE.id  # ids read as model@backend-device-precision in crash records


def _sample(config) -> int | None:
    """Types to run (0 = all); None when the auto-zoo is not switched on for this pytest run."""
    try:
        opt = config.getoption("--hfm-autozoo-sample")
    except ValueError:  # run without -p hfmatrix.zoo.auto_pytest: the environment decides
        opt = None
    if opt is not None:
        return auto.sample_size({auto.SAMPLE_ENV: str(opt)})
    if not os.environ.get(auto.SAMPLE_ENV, "").strip():
        return None
    return auto.sample_size()


def pytest_generate_tests(metafunc) -> None:
    if "autozoo_case" not in metafunc.fixturenames:
        return
    sample = _sample(metafunc.config)
    backend = metafunc.config.getoption("--hfm-backend", default=REFERENCE.backend)
    if sample is None or backend != REFERENCE.backend:
        # The shared suites run in every backend session; the sweep has its own (nox -s zoo).
        why = ("the auto-zoo runs in its own session: nox -s zoo, or -p hfmatrix.zoo.auto_pytest / "
               "$HFMATRIX_AUTOZOO_SAMPLE" if sample is None else f"the auto-zoo runs on CPU {REFERENCE.backend}, not {backend}")
        metafunc.parametrize("autozoo_case", [pytest.param(None, id="not-this-session", marks=pytest.mark.skip(
            reason=f"[{skips.UNSUPPORTED}] {why}"))])
        return
    role = metafunc.function.__name__.rsplit("_", 1)[-1]
    known = auto.load_known()
    params = []
    for case in auto.cases(sample=sample or None):
        if case.role != role:
            continue
        marks = [pytest.mark.xdist_group(case.model_type)]
        k = known.get((case.model_type, case.role))
        if k:
            marks.append(pytest.mark.xfail(strict=True, raises=auto.STAGE_ERRORS[k.stage], reason=k.xfail_reason()))
        params.append(pytest.param(case, id=f"{case.model_type}@{BACKEND_TAG}", marks=marks))
    metafunc.parametrize("autozoo_case", params)


@pytest.fixture(scope="module", autouse=True)
def _quiet_and_single_threaded():
    import torch
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    # xdist runs one worker per core: one torch thread each
    torch.set_num_threads(int(os.environ.get("HFMATRIX_AUTOZOO_THREADS", "1")))


def _run(request, case: auto.AutoCase, tmp_path) -> None:
    measures: dict = {"model_type": case.model_type, "role": case.role, "class_name": case.class_name or ""}
    request.node.user_properties.append(("hfm", measures))
    cls_name = auto.arch_class(case.model_type)
    measures["arch_class"] = cls_name
    request.node.user_properties.append(("hfm_case", {
        "model": case.model_type, "arch_class": cls_name, "backend": REFERENCE.backend, "device": REFERENCE.device,
        "precision": REFERENCE.precision}))
    if case.class_name is None:
        skips.skip(skips.UNSUPPORTED, f"{case.model_type}: {case.mapping}")
    try:
        result = auto.run_case(case, workdir=tmp_path)
    except skips.TypedSkip as exc:
        skips.skip(exc.kind, exc.reason)
    measures.update(result.measures)
    auto.raise_for_stage(result)
    assert result.stage == "reload", f"stopped after {result.stage!r} without a failure"


def test_autozoo_base(request, autozoo_case, tmp_path):
    _run(request, autozoo_case, tmp_path)


def test_autozoo_head(request, autozoo_case, tmp_path):
    _run(request, autozoo_case, tmp_path)
