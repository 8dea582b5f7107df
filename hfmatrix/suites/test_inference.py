"""Inference checks: shapes the config predicts, finite, deterministic, batch equals singles."""
from __future__ import annotations

import numpy as np
import pytest

from hfmatrix.compare import require_rows, tolerance
from hfmatrix.shapes import expected_shapes, matches
from hfmatrix.zoo.inputs import batch, example, lengths


def test_output_shapes(hfm_case, hfm_model_dir, hfm_backend_session):
    inputs = example(hfm_case.spec, hfm_model_dir)
    out = hfm_backend_session.run(inputs)
    expected = expected_shapes(hfm_case.spec, hfm_model_dir, inputs)
    assert expected, f"no shape rule for {hfm_case.spec.id} ({hfm_case.spec.task}): add one in hfmatrix/shapes.py"
    for key, shape in expected.items():
        assert key in out, f"output {key!r} missing; got {sorted(out)}"
        assert matches(tuple(out[key].shape), tuple(shape)), f"{key}: shape {out[key].shape}, config predicts {shape}"


def test_finite(hfm_case, hfm_model_dir, hfm_backend_session):
    out = hfm_backend_session.run(example(hfm_case.spec, hfm_model_dir))
    bad = {k: int((~np.isfinite(v)).sum()) for k, v in out.items() if v.dtype.kind == "f" and not np.isfinite(v).all()}
    assert out and not bad, f"non-finite outputs: {bad}" if bad else "no outputs"


def test_deterministic(hfm_case, hfm_model_dir, hfm_backend_session):
    inputs = example(hfm_case.spec, hfm_model_dir)
    first, second = hfm_backend_session.run(inputs), hfm_backend_session.run(inputs)
    changed = [k for k in first if not np.array_equal(first[k], second[k])]
    assert not changed, f"two identical runs differ in {changed}"


@pytest.mark.hfm_needs("batch")
def test_batch_equivalence(hfm_case, hfm_model_dir, hfm_backend_session, hfm_measure):
    """A (padded) batch of two equals the two single runs, on valid positions, within tolerance."""
    indices = (0, 1)
    together = hfm_backend_session.run(batch(hfm_case.spec, hfm_model_dir, indices))
    widths = lengths(hfm_case.spec, hfm_model_dir, indices)  # None: fixed-size inputs, nothing padded
    tol = tolerance(hfm_case.spec.id, hfm_case.target.backend, hfm_case.target.device, hfm_case.target.effective)
    singles = [hfm_backend_session.run(example(hfm_case.spec, hfm_model_dir, i)) for i in indices]
    require_rows(together, singles, tol, hfm_case.spec.outputs, bool(widths), hfm_measure,
                 "batch row {row} vs its single run: ")
