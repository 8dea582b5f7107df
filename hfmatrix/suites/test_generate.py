"""Greedy generation reproduces the reference token ids (text-only backends: the reference's ids
decoded by the same tokenizer, since a server returns text)."""
from __future__ import annotations

import numpy as np
import pytest

from hfmatrix.backends.base import TextGenerator
from hfmatrix.compare import TokensDiffer, first_difference
from hfmatrix.zoo.inputs import decode_new, generation_inputs


@pytest.mark.hfm_needs("generate")
def test_generate_greedy(hfm_case, hfm_model_dir, hfm_backend_session, hfm_reference_session, hfm_measure):
    inputs = generation_inputs(hfm_case.spec, hfm_model_dir)
    n = int(hfm_case.spec.generate.get("max_new_tokens", 5))
    expected = hfm_reference_session.generate(inputs, n)
    if isinstance(hfm_backend_session, TextGenerator):
        actual_text = hfm_backend_session.generate_text(inputs, n)  # first: a prompt a text API cannot send skips here
        expected_text = decode_new(hfm_case.spec, hfm_model_dir, inputs, expected)
        hfm_measure(expected_ids=expected.tolist(), expected_text=expected_text, actual_text=actual_text,
                evidence=hfm_backend_session.evidence())
        if actual_text != expected_text:
            raise TokensDiffer(f"served text {actual_text!r} != reference {expected_text!r}")
        return
    actual = hfm_backend_session.generate(inputs, n)
    first = first_difference(np.asarray(actual), expected)
    hfm_measure(expected_ids=expected.tolist(), actual_ids=np.asarray(actual).tolist(), first_diff=first)
    assert np.asarray(actual).shape == expected.shape, f"shape {np.asarray(actual).shape} != reference {expected.shape}"
    if not np.array_equal(actual, expected):
        raise TokensDiffer(f"greedy ids differ first at (row, position) {first}: {np.asarray(actual).tolist()} != "
                           f"reference {expected.tolist()}", first[1])
