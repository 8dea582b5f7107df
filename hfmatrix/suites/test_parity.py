"""Parity: the backend's outputs match the CPU fp32 torch reference on the same weights and inputs."""
from __future__ import annotations

from hfmatrix import localize
from hfmatrix.compare import compare, tolerance
from hfmatrix.zoo.inputs import example


def test_parity(hfm_case, hfm_model_dir, hfm_backend_session, hfm_reference_session, hfm_measure, request):
    inputs = example(hfm_case.spec, hfm_model_dir)
    reference = hfm_reference_session.run(inputs)
    actual = hfm_backend_session.run(inputs)
    tol = tolerance(hfm_case.spec.id, hfm_case.target.backend, hfm_case.target.device, hfm_case.target.effective)
    result = compare(actual, reference, tol, hfm_case.spec.outputs)
    hfm_measure(**result.measures(), tolerance=tol.as_dict())  # recorded on success too
    if not result.ok or request.config.getoption("hfm_localize"):  # a failure (or a known bug) says where
        where = localize.localize(hfm_reference_session, hfm_backend_session, inputs, tol)
        hfm_measure(first_divergence=where)
        if "summary" in where:
            result.problems.append(where["summary"])
    result.require(tol)
