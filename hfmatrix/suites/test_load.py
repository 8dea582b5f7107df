"""Load checks: the folder is what was built, the loader reports nothing missing, save→reload is exact."""
from __future__ import annotations

import numpy as np
import pytest

from hfmatrix import backends, placement
from hfmatrix.backends import TORCH_MODULE
from hfmatrix.compare import ToleranceExceeded
from hfmatrix.zoo import verify
from hfmatrix.zoo.materialize import build_model, loading_problems


@pytest.mark.hfm_needs("built")
def test_artifact_integrity(hfm_case, hfm_model_dir, hfm_measure):
    """Every file of a built entry matches its manifest (sha256): an altered weight file fails here."""
    problems = verify(hfm_model_dir)
    hfm_measure(files_checked=len(list(hfm_model_dir.iterdir())))
    assert not problems, f"{hfm_model_dir} does not match its manifest: {problems}"


def test_load_session(hfm_case, hfm_backend_session, hfm_measure):
    """The backend loads the model and proves where it runs: every counted unit of its placement (nodes,
    parameters, execution devices; dtypes for torch) on the target (hfmatrix.placement)."""
    evidence = hfm_backend_session.evidence()
    hfm_measure(evidence=evidence, placement_share=(evidence.get("placement") or {}).get("share"),
                software_stand_in=placement.flags(evidence))
    assert evidence, f"{hfm_case.target.backend} session gave no evidence of where it runs"
    placement.require(evidence, f"{hfm_case.target.id}: ")
    info = hfm_backend_session.loading_info
    if info is not None:  # loaders that report it (torch): nothing missing, unexpected or mismatched
        bad = loading_problems(hfm_backend_session.module(), info)
        assert not bad, f"loader reported {bad}"


@pytest.mark.hfm_needs("built")
@pytest.mark.hfm_requires(TORCH_MODULE)
def test_weights_match_build(hfm_case, hfm_backend_session):
    """Weights loaded from disk are bit-identical to a fresh in-memory build from the same seed."""
    import torch
    built = build_model(hfm_case.spec).state_dict()
    loaded = hfm_backend_session.module().state_dict()
    dtype = next(iter(loaded.values())).dtype
    differing = [k for k, v in loaded.items() if k in built and not torch.equal(built[k].to(v.dtype).cpu(), v.cpu())]
    assert not differing, f"{len(differing)} tensors differ from the seeded build, e.g. {differing[:3]} ({dtype})"


@pytest.mark.hfm_requires(TORCH_MODULE)
def test_save_reload_identical(hfm_case, hfm_backend_session, hfm_model_dir, tmp_path):
    """save_pretrained → from_pretrained reproduces the outputs bit for bit."""
    from hfmatrix.zoo.inputs import example
    import shutil
    inputs = example(hfm_case.spec, hfm_model_dir)
    before = hfm_backend_session.run(inputs)
    hfm_backend_session.module().save_pretrained(tmp_path)
    for extra in hfm_model_dir.iterdir():  # tokenizer/processor files travel with the weights
        if extra.is_file() and not (tmp_path / extra.name).exists():
            shutil.copy(extra, tmp_path / extra.name)
    again = backends.get(hfm_case.target.backend).load(tmp_path, hfm_case.spec, hfm_case.target)
    try:
        after = again.run(inputs)
    finally:
        again.close()
    assert sorted(before) == sorted(after)
    for key in before:
        if not np.array_equal(before[key], after[key]):  # bit for bit; the amount is the known bug's evidence
            delta = np.abs(np.asarray(before[key], np.float64) - np.asarray(after[key], np.float64))
            top = float(np.abs(np.asarray(before[key], np.float64)).max())
            raise ToleranceExceeded(f"{key} changed after save → reload: max |Δ| {delta.max():.3g}", float(delta.max()),
                                    float(delta.max()) / top if top else float("inf"))
