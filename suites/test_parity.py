"""Parity: the backend's outputs match the CPU fp32 torch reference on the same weights and inputs."""
from __future__ import annotations

from hfmatrix import localize
from hfmatrix.compare import compare, tolerance
from hfmatrix.zoo.inputs import example


def test_parity(case, model_dir, backend_session, reference_session, measure, request):
    inputs = example(case.spec, model_dir)
    reference = reference_session.run(inputs)
    actual = backend_session.run(inputs)
    tol = tolerance(case.spec.id, case.target.backend, case.target.device, case.target.effective)
    result = compare(actual, reference, tol, case.spec.outputs)
    measure(**result.measures(), tolerance=tol.as_dict())  # recorded on success too
    if not result.ok or request.config.getoption("hfm_localize"):  # a failure (or a known bug) says where
        where = localize.localize(reference_session, backend_session, inputs, tol)
        measure(first_divergence=where)
        if "summary" in where:
            result.problems.append(where["summary"])
    result.require(tol)
