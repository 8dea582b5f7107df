"""Deterministic, backend-agnostic numpy inputs, built through the folder's own tokenizer/processor.

Keys and dtypes (batch first):
* text models: ``input_ids`` int64, ``attention_mask`` int64, plus ``token_type_ids`` int64 only
  where the tokenizer lists it (BERT-style). Batches are right-padded; ``lengths()`` gives the
  real length of each row, so outputs aligned with the input sequence (last_hidden_state, logits of
  decoders) can be trimmed to ``[:length]`` per row before comparing.
* encoder-decoder forward (t5, whisper): encoder inputs + ``decoder_input_ids`` int64 = one column
  holding decoder_start_token_id (the first decoding step). ``generation_inputs`` omits it.
* vision: ``pixel_values`` float32 (B, 3, H, W) at the config's image size, from a seeded uint8
  image through the image processor.
* clip: ``input_ids``/``attention_mask`` of two label prompts (rows of the text batch) and
  ``pixel_values`` of one image (batch of images = 1; logits_per_image is (1, 2)).
* whisper: ``input_features`` float32 (B, 80, 3000) from a seeded 1 s waveform.
* wav2vec2: ``input_values`` float32 (B, N) and ``attention_mask`` int64 when the feature
  extractor returns one; index 0 and 1 give different N.
* llava: ``input_ids`` holding image_seq_length image tokens (expanded by the processor),
  ``attention_mask``, ``pixel_values``.

Everything is a pure function of (spec, model folder, index): no global RNG is touched.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .spec import ModelSpec
from . import auto_specs

TEXTS = (
    "The quick brown fox jumps over the lazy dog.",
    "Hello world!",
    "Machine learning models run on many kinds of hardware.",
    "Good tests are small.",
)
LABEL_PROMPTS = ("a photo of a cat", "a photo of a dog")
GENERATION_PROMPTS = {
    "text-generation": "Once upon a time",
    "text2text-generation": "Translate English to German: the house is small.",
    "image-text-to-text": "<image>\nWhat is in the photo?",
}
LLAVA_PROMPTS = ("<image>\nDescribe the photo.", "<image>\nWhat color is it?")
SAMPLE_RATE = 16000
#: wav2vec2 waveform lengths (samples) per index: different lengths exercise padding
AUDIO_SAMPLES = (1600, 1200, 2000, 800)

Arrays = dict[str, np.ndarray]


# ----------------------------------------------------------------------------------- public API

def example(spec: ModelSpec, model_dir: Path | str, index: int = 0) -> Arrays:
    """Batch-1 inputs for a forward pass; index 0 and 1 differ (for text: in length)."""
    return _build(spec, Path(model_dir), (index,))


def batch(spec: ModelSpec, model_dir: Path | str, indices: Sequence[int] = (0, 1)) -> Arrays:
    """The rows of ``example(i) for i in indices`` as one right-padded batch (+ attention_mask)."""
    return _build(spec, Path(model_dir), tuple(indices))


def lengths(spec: ModelSpec, model_dir: Path | str, indices: Sequence[int] = (0, 1)) -> list[int] | None:
    """Real (unpadded) length of each row of ``batch(indices)``'s attention_mask; None when nothing is
    padded (vision, whisper). Trim only outputs aligned with the input sequence: those whose axis 1
    has the padded length (last_hidden_state, decoder logits), e.g. ``out[row, :lengths[row]]``;
    t5's logits follow decoder_input_ids and need no trimming."""
    kind = _kind(spec, Path(model_dir))
    if kind not in ("text", "seq2seq", "llava"):
        return None
    mask = batch(spec, model_dir, indices)["attention_mask"]
    return [int(n) for n in mask.sum(axis=1)]


def generation_inputs(spec: ModelSpec, model_dir: Path | str) -> Arrays:
    """Batch-1 prompt for greedy generation (encoder inputs only for seq2seq models)."""
    model_dir = Path(model_dir)
    kind = _kind(spec, model_dir)
    if kind == "text":
        return text_inputs(model_dir, [GENERATION_PROMPTS["text-generation"]])
    if kind == "seq2seq":
        return text_inputs(model_dir, [GENERATION_PROMPTS["text2text-generation"]])
    if kind == "whisper":
        return _whisper(spec, model_dir, (0,))
    if kind == "llava":
        return _llava(spec, model_dir, (0,), prompts=[GENERATION_PROMPTS["image-text-to-text"]])
    raise ValueError(f"{spec.id}: task {spec.task!r} has no generation inputs")


def decode_new(spec: ModelSpec, model_dir: Path | str, inputs: Arrays, ids: np.ndarray) -> list[str]:
    """The new text of each row of greedy ``ids`` (a Session.generate result), decoded by the
    folder's tokenizer as a server decodes what it generated (skip_special_tokens)."""
    model_dir = Path(model_dir)
    kind = _kind(spec, model_dir)
    if kind not in ("text", "seq2seq"):
        raise ValueError(f"{spec.id}: no text decoding for {kind} generation")
    # decoders return prompt + new; seq2seq returns the decoder start token + new
    skip = inputs["input_ids"].shape[1] if kind == "text" else 1
    tok = _tokenizer(model_dir)
    return [tok.decode([int(t) for t in row[skip:]], skip_special_tokens=True) for row in np.asarray(ids)]


def max_positions(spec: ModelSpec, model_dir: Path | str) -> int | None:
    """The config value named by spec.max_positions_key (dotted keys walk sub-configs)."""
    if not spec.max_positions_key:
        return None
    value: Any = _config(Path(model_dir))
    for part in spec.max_positions_key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return int(value) if value is not None else None


# ----------------------------------------------------------------------------------- dispatch

def _kind(spec: ModelSpec, model_dir: Path) -> str:
    cfg = _config(model_dir)
    if spec.task == "image-classification":
        return "vision"
    if spec.task == "zero-shot-image-classification":
        return "clip"
    if spec.task == "automatic-speech-recognition":
        return "whisper"
    if spec.task == "ctc":
        return "ctc"
    if spec.task == "image-text-to-text":
        return "llava"
    if spec.task == "text2text-generation" or cfg.get("is_encoder_decoder"):
        return "seq2seq"
    return "text"


def _build(spec: ModelSpec, model_dir: Path, indices: tuple[int, ...]) -> Arrays:
    if auto_specs.is_auto(spec):  # the auto-zoo's own synthesized inputs, stored with the model
        return auto_specs.stored_inputs(model_dir)
    kind = _kind(spec, model_dir)
    if kind == "text":
        return text_inputs(model_dir, [TEXTS[i % len(TEXTS)] for i in indices])
    if kind == "seq2seq":
        out = text_inputs(model_dir, [TEXTS[i % len(TEXTS)] for i in indices])
        out["decoder_input_ids"] = _decoder_start(model_dir, len(indices))
        return out
    if kind == "vision":
        return _vision(spec, model_dir, indices)
    if kind == "clip":
        if len(indices) != 1:
            raise ValueError(f"{spec.id}: clip inputs are one image against the label prompts; batch not defined")
        proc = _processor(model_dir)
        enc = proc(text=list(LABEL_PROMPTS), images=_images(spec, model_dir, indices), padding=True,
                   return_tensors="np")
        names = list(getattr(proc.tokenizer, "model_input_names", ["input_ids", "attention_mask"]))
        return _np(enc, [*names, "pixel_values"])
    if kind == "whisper":
        out = _whisper(spec, model_dir, indices)
        out["decoder_input_ids"] = _decoder_start(model_dir, len(indices))
        return out
    if kind == "ctc":
        return _ctc(spec, model_dir, indices)
    if kind == "llava":
        return _llava(spec, model_dir, indices)
    raise AssertionError(kind)


# ----------------------------------------------------------------------------------- loaders

@lru_cache(maxsize=64)
def _config(model_dir: Path) -> dict:
    return json.loads((model_dir / "config.json").read_text())


@lru_cache(maxsize=32)
def _tokenizer(model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


@lru_cache(maxsize=32)
def _processor(model_dir: Path):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(model_dir)


@lru_cache(maxsize=32)
def _image_processor(model_dir: Path):
    from transformers import AutoImageProcessor

    return AutoImageProcessor.from_pretrained(model_dir)


def _np(encoded, keys: Sequence[str] | None = None) -> Arrays:
    out = {}
    for k, v in dict(encoded).items():
        if keys is not None and k not in keys:
            continue
        a = np.asarray(v)
        out[k] = a.astype(np.int64) if a.dtype.kind in "iub" else a.astype(np.float32)
    return out


def text_inputs(model_dir: Path, texts: list[str]) -> Arrays:
    tok = _tokenizer(model_dir)
    limit = min(int(tok.model_max_length), _max_len_from_config(model_dir) or 10**9)
    enc = tok(texts, padding=True, truncation=True, max_length=limit, return_tensors="np")
    names = list(getattr(tok, "model_input_names", ["input_ids", "attention_mask"]))
    out = _np(enc, names)
    out.setdefault("attention_mask", np.ones_like(out["input_ids"]))
    return out


def _max_len_from_config(model_dir: Path) -> int | None:
    cfg = _config(model_dir)
    for key in ("max_position_embeddings", "n_positions"):
        if isinstance(cfg.get(key), int):
            return cfg[key]
    return None


def _decoder_start(model_dir: Path, rows: int) -> np.ndarray:
    cfg = _config(model_dir)
    start = cfg.get("decoder_start_token_id")
    gen = model_dir / "generation_config.json"
    if start is None and gen.is_file():
        start = json.loads(gen.read_text()).get("decoder_start_token_id")
    if start is None:
        start = cfg.get("pad_token_id", 0)
    return np.full((rows, 1), int(start), dtype=np.int64)


def _image_size(model_dir: Path) -> int:
    cfg = _config(model_dir)
    vision = cfg.get("vision_config") or cfg
    size = vision.get("image_size", 224)
    return int(size[0] if isinstance(size, (list, tuple)) else size)


def _images(spec: ModelSpec, model_dir: Path, indices: Sequence[int]):
    from PIL import Image

    side = _image_size(model_dir)
    images = []
    for i in indices:
        rng = np.random.default_rng([spec.seed, 1000 + i])
        images.append(Image.fromarray(rng.integers(0, 256, size=(side, side, 3), dtype=np.uint8), "RGB"))
    return images


def _vision(spec: ModelSpec, model_dir: Path, indices: Sequence[int]) -> Arrays:
    enc = _image_processor(model_dir)(images=_images(spec, model_dir, indices), return_tensors="np")
    return _np(enc, ["pixel_values"])


def _waveform(spec: ModelSpec, index: int, samples: int) -> np.ndarray:
    rng = np.random.default_rng([spec.seed, 2000 + index])
    t = np.arange(samples) / SAMPLE_RATE
    tone = 0.5 * np.sin(2 * np.pi * (220 + 110 * index) * t)
    return (tone + 0.05 * rng.standard_normal(samples)).astype(np.float32)


def _whisper(spec: ModelSpec, model_dir: Path, indices: Sequence[int]) -> Arrays:
    fe = _processor(model_dir).feature_extractor
    waves = [_waveform(spec, i, SAMPLE_RATE) for i in indices]
    enc = fe(waves, sampling_rate=SAMPLE_RATE, return_tensors="np")
    return _np(enc, ["input_features"])


def _ctc(spec: ModelSpec, model_dir: Path, indices: Sequence[int]) -> Arrays:
    fe = _processor(model_dir).feature_extractor
    waves = [_waveform(spec, i, AUDIO_SAMPLES[i % len(AUDIO_SAMPLES)]) for i in indices]
    enc = fe(waves, sampling_rate=SAMPLE_RATE, padding=True, return_tensors="np")
    return _np(enc, ["input_values", "attention_mask"])


def _llava(spec: ModelSpec, model_dir: Path, indices: Sequence[int], prompts: list[str] | None = None) -> Arrays:
    proc = _processor(model_dir)
    prompts = prompts or [LLAVA_PROMPTS[i % len(LLAVA_PROMPTS)] for i in indices]
    enc = proc(text=prompts, images=_images(spec, model_dir, indices), padding=True, return_tensors="np")
    out = _np(enc, ["input_ids", "attention_mask", "pixel_values"])
    cfg = _config(model_dir)
    image_token = cfg.get("image_token_id", cfg.get("image_token_index"))
    want = cfg.get("image_seq_length")
    got = (out["input_ids"] == image_token).sum(axis=1)
    if want is not None and not (got == want).all():
        raise RuntimeError(f"{spec.id}: processor put {got.tolist()} image tokens per row, config wants {want}")
    return out
