"""Parity sees what users feed (issue 14, item 4): a padded batch with its real mask against each row's own
reference, and CPU fp32 torch judged against float64 instead of itself. Each check fails on a planted defect
through the suite path; the defects patch the real torch backend, nothing is mocked."""
from __future__ import annotations

from conftest import SUITES, outcomes, run_suites

# the real torch backend runs every forward without attention_mask: the model attends to the padding. The
# references run one unpadded row each (an all-ones mask), so they are not changed by it.
MASK_DROPPED = """
import hfmatrix.backends.torch_backend as tb
_run = tb.TorchSession.run
def run(self, inputs):
    return _run(self, {k: v for k, v in inputs.items() if k != "attention_mask"})
tb.TorchSession.run = run
"""

# a small defect of fp32 torch alone: the fp32 load path rounds every weight through float16 (unit roundoff 4.9e-4)
FP32_WEIGHTS_ROUNDED = """
import torch
import hfmatrix.backends.torch_backend as tb
_load = tb.TorchBackend.load
def load(self, model_dir, spec, target, **k):
    session = _load(self, model_dir, spec, target, **k)
    if target.precision == "fp32":
        with torch.no_grad():
            for p in session.model.parameters():
                p.copy_(p.half().float())
    return session
tb.TorchBackend.load = load
"""


def test_mask_ignored_passes_parity_but_fails_padded_parity(pytester, zoo_cache):
    result, records = run_suites(pytester, zoo_cache, str(SUITES / "test_parity.py"), "--hfm-models=bert",
                                 plant=MASK_DROPPED)
    got = outcomes(records)
    # one unpadded row with an all-ones mask: ignoring the mask changes nothing there
    assert got == {"parity[bert]": "passed", "parity_padded[bert]": "failed"}, got
    padded = next(r for r in records if r["check"] == "parity_padded")
    m = padded["measures"]
    assert m["row_lengths"] == [18, 5, 20, 12] and m["padded"] is True
    assert m["failed_row"] in (0, 1, 3) and m["tol_fraction"] > 1  # a padded row (row 2 is the longest)
    assert padded["message"].startswith(
        f"hfmatrix.compare.ToleranceExceeded: padded batch row {m['failed_row']} vs its own unpadded reference")
    assert result.ret == 1


def test_clean_cpu_parity_is_judged_against_float64(pytester, zoo_cache):
    result, records = run_suites(pytester, zoo_cache, str(SUITES / "test_parity.py"), "--hfm-models=bert,gpt2")
    assert set(outcomes(records).values()) == {"passed"}, outcomes(records)
    for r in records:
        m = r["measures"]
        assert m["reference_precision"] == "fp64"
        assert m["tolerance"]["source"] == "target.torch.cpu.fp32"
        assert 0 < m["max_abs_err"] and m["tol_fraction"] < 1  # an independent reference: fp32 rounding shows
    parity = [r for r in records if r["check"] == "parity"]
    assert all(r["measures"]["power"]["catches_1pct"] for r in parity)
    assert result.ret == 0


def test_small_fp32_defect_fails_cpu_parity(pytester, zoo_cache):
    # against an fp32 reference loaded through the same defective path this would pass with max |Δ| 0.0
    result, records = run_suites(pytester, zoo_cache, str(SUITES / "test_parity.py"), "--hfm-models=bert",
                                 "-k", "parity", plant=FP32_WEIGHTS_ROUNDED)
    got = outcomes(records)
    assert got == {"parity[bert]": "failed", "parity_padded[bert]": "failed"}, got
    m = next(r for r in records if r["check"] == "parity")["measures"]
    assert m["reference_precision"] == "fp64" and m["tol_fraction"] > 1
    assert m["max_rel_err"] < 1e-2  # a small defect, not a broken model
    assert result.ret == 1
