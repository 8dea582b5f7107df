"""Output shapes the config predicts, per output name and task. ``None`` = not predicted (e.g. the
frame count after a conv feature encoder); every other dimension must match exactly."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any


@lru_cache(maxsize=64)
def _config(model_dir: str):
    import json
    return json.loads((Path(model_dir) / "config.json").read_text())


def _get(cfg: dict[str, Any], *keys: str, sub: str | None = None):
    for scope in ([cfg.get(sub, {})] if sub else []) + [cfg]:
        for k in keys:
            if scope.get(k) is not None:
                return scope[k]
    raise KeyError(f"none of {keys} in config")


def expected_shapes(spec, model_dir, inputs) -> dict[str, tuple]:
    cfg = _config(str(model_dir))
    ids = inputs.get("input_ids")
    # batch = text rows where there is text (clip: 2 prompts, 1 image), else the first input's rows
    b = ids.shape[0] if ids is not None else next(iter(inputs.values())).shape[0]
    seq = ids.shape[1] if ids is not None else None
    hidden = lambda sub=None: _get(cfg, "hidden_size", "d_model", "n_embd", sub=sub)  # noqa: E731
    vocab = lambda sub=None: _get(cfg, "vocab_size", sub=sub)  # noqa: E731
    num_labels = len(cfg.get("id2label") or {}) or 2
    dec = inputs.get("decoder_input_ids")
    # task -> output name -> shape; lambdas so only the model's own rule reads its config keys
    rules: dict[str, Any] = {
        "feature-extraction": lambda: {"last_hidden_state": (b, seq, hidden() if ids is not None else None)},
        "text-classification": lambda: {"logits": (b, num_labels)},
        "text-generation": lambda: {"logits": (b, seq, vocab())},
        "text2text-generation": lambda: {"logits": (b, None if dec is None else dec.shape[1], vocab())},
        "image-classification": lambda: {"logits": (b, num_labels)},
        "ctc": lambda: {"logits": (b, None, vocab())},
        "automatic-speech-recognition": lambda: {"logits": (b, None if dec is None else dec.shape[1], vocab())},
        "image-text-to-text": lambda: {"logits": (b, seq, vocab("text_config"))},
        "zero-shot-image-classification": lambda: {
            "logits_per_image": (inputs["pixel_values"].shape[0] if "pixel_values" in inputs else None, b),
            "text_embeds": (b, _get(cfg, "projection_dim")),
        },
    }
    expected = rules[spec.task]() if spec.task in rules else {}
    if spec.task == "feature-extraction" and ids is None:
        expected = {"last_hidden_state": (b, None, None)}
    return expected


def matches(shape: tuple, expected: tuple) -> bool:
    return len(shape) == len(expected) and all(e is None or s == e for s, e in zip(shape, expected))
