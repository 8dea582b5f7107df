"""Greedy generation reproduces the reference token ids (text-only backends: the reference's ids
decoded by the same tokenizer, since a server returns text)."""
from __future__ import annotations

import numpy as np
import pytest

from hfmatrix.backends.base import TextGenerator
from hfmatrix.compare import first_difference
from hfmatrix.zoo.inputs import decode_new, generation_inputs


@pytest.mark.hfm_needs("generate")
def test_generate_greedy(case, model_dir, backend_session, reference_session, measure):
    inputs = generation_inputs(case.spec, model_dir)
    n = int(case.spec.generate.get("max_new_tokens", 5))
    expected = reference_session.generate(inputs, n)
    if isinstance(backend_session, TextGenerator):
        actual_text = backend_session.generate_text(inputs, n)  # first: a prompt a text API cannot send skips here
        expected_text = decode_new(case.spec, model_dir, inputs, expected)
        measure(expected_ids=expected.tolist(), expected_text=expected_text, actual_text=actual_text,
                evidence=backend_session.evidence())
        assert actual_text == expected_text, f"served text {actual_text!r} != reference {expected_text!r}"
        return
    actual = backend_session.generate(inputs, n)
    first = first_difference(np.asarray(actual), expected)
    measure(expected_ids=expected.tolist(), actual_ids=np.asarray(actual).tolist(), first_diff=first)
    assert np.asarray(actual).shape == expected.shape, f"shape {np.asarray(actual).shape} != reference {expected.shape}"
    assert np.array_equal(actual, expected), (
        f"greedy ids differ first at (row, position) {first}: {np.asarray(actual).tolist()} != reference {expected.tolist()}")
