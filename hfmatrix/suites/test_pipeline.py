"""The pipeline API users call: ``transformers.pipeline(task, model=<local folder>)`` loads the model
with its tokenizer / processor from the folder (from_pretrained, the real loading path), runs, and
returns well-formed results that agree with the model run directly. Sessions with a torch module only:
the pipeline drives a torch model (the exported backends are compared through the parity suite instead).

With MiniLM (real weights) a feature-extraction pipeline does a semantic search over a handful of
sentences and must rank the right one first.
"""
from __future__ import annotations

import numpy as np
import pytest

from hfmatrix import skips
from hfmatrix.backends import TORCH_MODULE
from hfmatrix.compare import compare, sentence_embedding, tolerance

# the pipeline task for a zoo task where they differ (a CTC model is an ASR pipeline)
PIPELINE_TASK = {"ctc": "automatic-speech-recognition"}
PROMPT = "The quick brown fox"
SEARCH_QUERY = "What do I need to bake bread?"
SEARCH_SENTENCES = (
    "The stock market fell sharply after the announcement.",
    "Flour, water, salt and yeast are all you need for a simple loaf.",
    "The goalkeeper saved a penalty in the final minute.",
    "Jupiter is the largest planet in the solar system.",
)
SEARCH_ANSWER = 1


def _pipeline(hfm_case, hfm_model_dir):
    import torch
    from transformers import pipeline
    from transformers.pipelines import SUPPORTED_TASKS, TASK_ALIASES
    task = PIPELINE_TASK.get(hfm_case.spec.task, hfm_case.spec.task)
    if task not in SUPPORTED_TASKS and task not in TASK_ALIASES:
        import transformers
        skips.skip(skips.UNSUPPORTED, f"transformers {transformers.__version__} has no {task!r} pipeline "
                                      f"(text2text-generation was removed in transformers 5)")
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[hfm_case.target.precision]
    return task, pipeline(task, model=str(hfm_model_dir), device=hfm_case.target.device, dtype=dtype)


def _image(seed: int = 0, side: int = 32):
    from PIL import Image
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8))


def _audio(pipe, seconds: float = 1.0) -> dict:
    rate = int(getattr(pipe.feature_extractor, "sampling_rate", 16000))
    rng = np.random.default_rng(0)
    return {"raw": (0.1 * rng.standard_normal(int(rate * seconds))).astype(np.float32), "sampling_rate": rate}


def _scores_ok(result, labels=None) -> None:
    assert isinstance(result, list) and result, result
    scores = [r["score"] for r in result]
    assert all(isinstance(r["label"], str) and 0.0 <= r["score"] <= 1.0 for r in result), result
    assert scores == sorted(scores, reverse=True), f"scores not ranked: {scores}"
    if labels is not None:
        assert sorted(r["label"] for r in result) == sorted(labels), result


@pytest.mark.hfm_requires(TORCH_MODULE)
def test_pipeline(hfm_case, hfm_model_dir, hfm_backend_session, hfm_measure):
    import torch
    task, pipe = _pipeline(hfm_case, hfm_model_dir)
    model = hfm_backend_session.module()
    tol = tolerance(hfm_case.spec.id, hfm_case.target.backend, hfm_case.target.device, hfm_case.target.effective)
    hfm_measure(task=task, pipeline_class=type(pipe).__name__)
    if task == "feature-extraction":
        out = np.asarray(pipe(PROMPT), dtype=np.float32)
        enc = pipe.tokenizer(PROMPT, return_tensors="pt").to(model.device)
        with torch.no_grad():
            direct = model(**enc).last_hidden_state.float().cpu().numpy()
        assert out.shape == direct.shape, f"pipeline {out.shape} != model {direct.shape}"
        result = compare({"last_hidden_state": out}, {"last_hidden_state": direct}, tol)
        hfm_measure(**result.measures())
        result.require(tol)
    elif task == "text-classification":
        result = pipe(PROMPT, top_k=None)
        _scores_ok(result, list(model.config.id2label.values()))
        enc = pipe.tokenizer(PROMPT, return_tensors="pt").to(model.device)
        with torch.no_grad():
            probs = torch.softmax(model(**enc).logits.float(), -1)[0].cpu().numpy()
        assert abs(result[0]["score"] - float(probs.max())) <= tol.atol + tol.rtol, (result, probs)
    elif task == "text-generation":
        result = pipe(PROMPT, max_new_tokens=5, do_sample=False, return_full_text=True)
        text = result[0]["generated_text"]
        assert isinstance(text, str) and text.startswith(PROMPT), result
        enc = pipe.tokenizer(PROMPT, return_tensors="pt").to(model.device)
        with torch.no_grad():
            ids = model.generate(**enc, max_new_tokens=5, do_sample=False)
        assert text == pipe.tokenizer.decode(ids[0], skip_special_tokens=True), (text, ids.tolist())
        hfm_measure(generated_text=text)
    elif task == "text2text-generation":  # transformers < 5 (5 removed the pipeline: a typed skip above)
        result = pipe(PROMPT, max_new_tokens=5, do_sample=False)
        text = result[0]["generated_text"]
        enc = pipe.tokenizer(PROMPT, return_tensors="pt").to(model.device)
        with torch.no_grad():
            ids = model.generate(**enc, max_new_tokens=5, do_sample=False)
        assert text == pipe.tokenizer.decode(ids[0], skip_special_tokens=True), (text, ids.tolist())
        hfm_measure(generated_text=text)
    elif task == "image-classification":
        _scores_ok(pipe(_image(), top_k=None), list(model.config.id2label.values()))
    elif task == "zero-shot-image-classification":
        labels = ["a photo of a cat", "a photo of a dog"]
        result = pipe(_image(), candidate_labels=labels)
        _scores_ok(result, labels)
        assert abs(sum(r["score"] for r in result) - 1.0) < 1e-4, result
    elif task == "automatic-speech-recognition":
        kwargs = {"generate_kwargs": {"max_new_tokens": 5}} if model.config.is_encoder_decoder else {}
        result = pipe(_audio(pipe), **kwargs)
        assert isinstance(result, dict) and isinstance(result.get("text"), str), result
        hfm_measure(text=result["text"])
    elif task == "image-text-to-text":
        token = getattr(pipe.processor, "image_token", "<image>")
        result = pipe(images=_image(side=int(getattr(model.config.vision_config, "image_size", 32))),
                      text=f"{token} {PROMPT}", max_new_tokens=5, do_sample=False)
        assert isinstance(result, list) and isinstance(result[0].get("generated_text"), str), result
        hfm_measure(generated_text=result[0]["generated_text"])
    else:
        pytest.fail(f"no well-formedness check for the {task!r} pipeline: add one here")


@pytest.mark.hfm_requires(TORCH_MODULE)
@pytest.mark.hfm_needs("golden")
def test_pipeline_semantic_search(hfm_case, hfm_model_dir, hfm_measure):
    """Real weights: the feature-extraction pipeline's mean-pooled embeddings find the right sentence."""
    _, pipe = _pipeline(hfm_case, hfm_model_dir)

    def embed(text: str) -> np.ndarray:
        return sentence_embedding(np.asarray(pipe(text))[0])

    q = embed(SEARCH_QUERY)
    scores = np.array([embed(s) @ q for s in SEARCH_SENTENCES])
    order = np.argsort(-scores).tolist()
    hfm_measure(scores=np.round(scores, 4).tolist(), order=order)
    assert order[0] == SEARCH_ANSWER, f"ranked {order} by {np.round(scores, 3).tolist()}; the answer is {SEARCH_ANSWER}"
    assert scores[SEARCH_ANSWER] - np.delete(scores, SEARCH_ANSWER).max() > 0.05, "the answer barely wins"
