"""Multi-model workflows: one model's output is the next one's input, every model on the backend under
test; the workflow's end result matches the same workflow run on the CPU fp32 torch reference.

- asr-to-classifier: whisper transcribes (greedy) → its tokenizer decodes → bert-cls classifies the text
- search-then-classify: MiniLM (real weights) embeds a query and documents → cosine search → the best
  document goes to bert-cls; the search must also be *right* (real weights make that meaningful)
- clip-towers: CLIP's text and image towers (get_text_features / get_image_features on torch, the
  export's text_embeds / image_embeds elsewhere) give the full model's logits_per_image

Each workflow hangs off its first model's hfm_case (hfm_per_case), so it runs on every backend and
precision that model runs on; a second model the backend cannot run skips with that backend's reason.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hfmatrix import plugin, skips
from hfmatrix.backends import REFERENCE, get
from hfmatrix.backends.base import Target
from hfmatrix.compare import compare, known_failure, sentence_embedding, tolerance
from hfmatrix.plugin import Case
from hfmatrix.precision import resolve
from hfmatrix.zoo import load_specs, materialize
from hfmatrix.zoo.inputs import example, generation_inputs, text_inputs

CLASSIFIER = "bert-cls"
# MiniLM semantic search: the query's answer is documents[ANSWER]
QUERY = "How do I keep my bicycle chain from rusting?"
DOCUMENTS = (
    "The central bank raised interest rates by a quarter point on Tuesday.",
    "Wipe the chain dry after rain and apply a light lubricant to stop corrosion.",
    "The orchestra rehearsed the symphony for three weeks before the premiere.",
    "Volcanic eruptions can disrupt air travel across an entire continent.",
    "Basil grows best in warm soil with plenty of sunlight.",
)
ANSWER = 1


class _Pair:
    """A second model of the workflow on the backend under test and on the reference; closed after."""

    def __init__(self, hfm_case: Case, model_id: str):
        self.spec = load_specs()[model_id]
        self.dir = materialize(self.spec)
        self.reference = get(REFERENCE.backend).load(self.dir, self.spec, REFERENCE)
        t = hfm_case.target  # the same request, resolved for this model (its effective precision may differ)
        self.target = resolve(Target(t.backend, t.device, t.precision), self.spec)
        try:
            self.session = plugin.load_session(Case(self.spec, self.target), self.dir, fresh=True)
        except BaseException:
            self.reference.close()
            raise
        self.tol = tolerance(model_id, t.backend, t.device, self.target.effective)

    def close(self) -> None:
        self.session.close()
        self.reference.close()


def _skip_if_known(check: str, model: str, target: Target) -> None:
    reason = known_failure(check, model, target.backend, target.device, target.effective)
    if reason:
        skips.skip(skips.KNOWN_BUG, f"the workflow needs {model}'s {check}, a recorded known bug here: {reason}")


def _classify(pair: _Pair, texts: list[str], hfm_measure, prefix: str) -> None:
    inputs = text_inputs(pair.dir, texts)
    result = compare(pair.session.run(inputs), pair.reference.run(inputs), pair.tol, pair.spec.outputs)
    hfm_measure(**{f"{prefix}_{k}": v for k, v in result.measures().items()}, tolerance=pair.tol.as_dict())
    result.require(pair.tol, f"{CLASSIFIER} on the workflow's text: ")


def asr_to_classifier(hfm_case, hfm_model_dir, session, reference, hfm_measure):
    from transformers import AutoTokenizer
    _skip_if_known("generate_greedy", hfm_case.spec.id, hfm_case.target)
    inputs = generation_inputs(hfm_case.spec, hfm_model_dir)
    n = int(hfm_case.spec.generate.get("max_new_tokens", 5))
    expected, actual = reference.generate(inputs, n), np.asarray(session.generate(inputs, n))
    tok = AutoTokenizer.from_pretrained(hfm_model_dir)
    texts = tok.batch_decode(actual, skip_special_tokens=True)
    hfm_measure(asr_ids=actual.tolist(), asr_text=texts)
    assert np.array_equal(actual, expected), f"transcription ids {actual.tolist()} != reference {expected.tolist()}"
    assert texts == tok.batch_decode(expected, skip_special_tokens=True)
    pair = _Pair(hfm_case, CLASSIFIER)
    try:
        _classify(pair, texts, hfm_measure, "classifier")
    finally:
        pair.close()


def _embed(session, hfm_model_dir: Path, texts) -> np.ndarray:
    """Sentence embeddings, one sentence per run (no padding involved)."""
    rows = []
    for text in texts:
        inputs = text_inputs(hfm_model_dir, [text])
        rows.append(sentence_embedding(session.run(inputs)["last_hidden_state"][0], inputs["attention_mask"][0]))
    return np.stack(rows)


def search_then_classify(hfm_case, hfm_model_dir, session, reference, hfm_measure):
    q, docs = _embed(session, hfm_model_dir, [QUERY]), _embed(session, hfm_model_dir, DOCUMENTS)
    rq, rdocs = _embed(reference, hfm_model_dir, [QUERY]), _embed(reference, hfm_model_dir, DOCUMENTS)
    scores, ref_scores = (docs @ q[0]), (rdocs @ rq[0])
    order, ref_order = np.argsort(-scores).tolist(), np.argsort(-ref_scores).tolist()
    hfm_measure(search_scores=np.round(scores, 6).tolist(), search_order=order, reference_order=ref_order,
            max_abs_score_err=float(np.abs(scores - ref_scores).max()))
    assert ref_order[0] == ANSWER, f"the reference search ranks {ref_order} (answer {ANSWER}): the real weights broke"
    assert order[0] == ANSWER, f"search on {hfm_case.target.id} ranks {order}; the answer is document {ANSWER}"
    assert order == ref_order, f"search order {order} != reference {ref_order}"
    pair = _Pair(hfm_case, CLASSIFIER)
    try:
        _classify(pair, [QUERY + " " + DOCUMENTS[order[0]]], hfm_measure, "classifier")
    finally:
        pair.close()


def _logit_scale(session, hfm_model_dir: Path) -> float:
    model = session.module()
    if model is not None and hasattr(model, "logit_scale"):
        return float(model.logit_scale.detach().float().exp())
    from safetensors.numpy import load_file
    return float(np.exp(load_file(str(hfm_model_dir / "model.safetensors"))["logit_scale"]))


def _towers(session, inputs) -> tuple[np.ndarray, np.ndarray, str]:
    model = session.module()
    if model is not None and hasattr(model, "get_text_features"):
        import torch
        dev = next(model.parameters()).device
        t = {k: torch.as_tensor(v, device=dev) for k, v in inputs.items()}
        with torch.no_grad():
            text = model.get_text_features(input_ids=t["input_ids"], attention_mask=t["attention_mask"])
            image = model.get_image_features(pixel_values=t["pixel_values"].to(next(model.parameters()).dtype))
        text, image = (getattr(x, "pooler_output", x) for x in (text, image))  # transformers 5: a ModelOutput
        return text.float().cpu().numpy(), image.float().cpu().numpy(), "get_text_features / get_image_features"
    out = session.run(inputs)
    if not {"text_embeds", "image_embeds"} <= out.keys():
        skips.skip(skips.UNSUPPORTED, f"{type(session).__name__} gives neither tower methods nor text/image embeddings")
    return np.asarray(out["text_embeds"]), np.asarray(out["image_embeds"]), "the export's text_embeds / image_embeds"


def clip_towers(hfm_case, hfm_model_dir, session, reference, hfm_measure):
    inputs = example(hfm_case.spec, hfm_model_dir)
    text, image, how = _towers(session, inputs)
    norm = lambda a: a.astype(np.float64) / np.linalg.norm(a.astype(np.float64), axis=-1, keepdims=True)
    from_towers = _logit_scale(session, hfm_model_dir) * norm(image) @ norm(text).T
    full = np.asarray(session.run(inputs)["logits_per_image"], dtype=np.float64)
    ref_full = np.asarray(reference.run(inputs)["logits_per_image"], dtype=np.float64)
    tol = tolerance(hfm_case.spec.id, hfm_case.target.backend, hfm_case.target.device, hfm_case.target.effective)
    towers_vs_full = compare({"logits_per_image": from_towers}, {"logits_per_image": full}, tol)
    vs_reference = compare({"logits_per_image": from_towers}, {"logits_per_image": ref_full}, tol)
    hfm_measure(towers=how, towers_vs_full_max_abs=towers_vs_full.max_abs, towers_vs_reference_max_abs=vs_reference.max_abs,
            tolerance=tol.as_dict())
    assert towers_vs_full.ok, f"towers ({how}) vs the full model's logits: {towers_vs_full.message(tol)}"
    assert vs_reference.ok, f"towers ({how}) vs the CPU reference logits: {vs_reference.message(tol)}"


WORKFLOWS = {"whisper": (asr_to_classifier,), "minilm": (search_then_classify,), "clip": (clip_towers,)}


def _workflows(hfm_case):
    return [pytest.param(w, id=w.__name__.replace("_", "-")) for w in WORKFLOWS.get(hfm_case.spec.id, ())]


@pytest.mark.hfm_per_case("workflow", _workflows)
def test_workflow(hfm_case, workflow, hfm_model_dir, hfm_intact_session, hfm_reference_session, hfm_measure):
    workflow(hfm_case, hfm_model_dir, hfm_intact_session, hfm_reference_session, hfm_measure)
