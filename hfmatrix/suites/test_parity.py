"""Parity: the backend's outputs match the CPU fp32 torch reference on the same weights and inputs."""
from __future__ import annotations

import pytest

from hfmatrix import localize, power
from hfmatrix.compare import compare, require_rows, tolerance
from hfmatrix.zoo.inputs import batch, example, lengths

#: the four example texts, each a different length: one right-padded batch as users feed it
PADDED_ROWS = (0, 1, 2, 3)


def test_parity(hfm_case, hfm_model_dir, hfm_backend_session, hfm_reference_session, hfm_measure, request):
    inputs = example(hfm_case.spec, hfm_model_dir)
    reference = hfm_reference_session.run(inputs)
    actual = hfm_backend_session.run(inputs)
    tol = tolerance(hfm_case.spec.id, hfm_case.target.backend, hfm_case.target.device, hfm_case.target.effective)
    result = compare(actual, reference, tol, hfm_case.spec.outputs)
    # recorded on success too; `power`: the smallest errors this tolerance catches on this reference (low-power cells)
    hfm_measure(**result.measures(), tolerance=tol.as_dict(), reference_precision=hfm_reference_session.target.precision,
                power=power.of(reference, tol, hfm_case.spec.outputs))
    if not result.ok or request.config.getoption("hfm_localize"):  # a failure (or a known bug) says where
        where = localize.localize(hfm_reference_session, hfm_backend_session, inputs, tol)
        hfm_measure(first_divergence=where)
        if "summary" in where:
            result.problems.append(where["summary"])
    result.require(tol)


@pytest.mark.hfm_needs("text", "batch")
def test_parity_padded(hfm_case, hfm_model_dir, hfm_backend_session, hfm_reference_session, hfm_measure):
    """Rows of different lengths in one right-padded batch with its real attention mask: each row's valid
    positions match that row's own reference (the unpadded row alone on the reference). test_parity feeds one
    unpadded row with an all-ones mask, which a backend that ignores the mask passes exactly."""
    spec = hfm_case.spec
    widths = lengths(spec, hfm_model_dir, PADDED_ROWS)
    assert widths and len(set(widths)) > 1, f"rows {PADDED_ROWS} of {spec.id} are not padded ({widths}): nothing to check"
    hfm_measure(row_lengths=widths, reference_precision=hfm_reference_session.target.precision)
    together = hfm_backend_session.run(batch(spec, hfm_model_dir, PADDED_ROWS))
    references = [hfm_reference_session.run(example(spec, hfm_model_dir, i)) for i in PADDED_ROWS]
    tol = tolerance(spec.id, hfm_case.target.backend, hfm_case.target.device, hfm_case.target.effective)
    require_rows(together, references, tol, spec.outputs, True, hfm_measure,
                 "padded batch row {row} vs its own unpadded reference: ")
