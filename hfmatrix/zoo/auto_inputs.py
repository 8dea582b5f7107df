"""Valid inputs for any model's forward(), synthesized from its signature and its config.

Recipes are data (``[inputs]`` in auto_rules.toml): a forward() parameter name → a kind below.
Everything is seeded, so two syntheses for the same model are identical. Multimodal models get
their image placeholders counted the way the model itself counts them: ``get_image_features``
on the synthesized pixels says how many image tokens the text must carry.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import torch

from .auto_shrink import Rules, _is_int, _walk_dicts, token_keys

_FIRST_TOKEN = 4  # ids below this are often special (pad/bos/eos/unk) even when the config omits them


@dataclass
class Context:
    model: Any
    config: Any
    rules: Rules
    params: dict[str, inspect.Parameter]
    gen: torch.Generator
    batch: int
    seq: int
    notes: list[str] = field(default_factory=list)
    #: input recipes beyond plain tensors that this synthesis used (ablation names, see auto_rules.toml)
    recipes: set[str] = field(default_factory=set)

    def enabled(self, recipe: str) -> bool:
        return recipe not in self.rules.disabled

    def cfg(self, *names, default=None):
        """First attribute found, searching the config and then its sub-configs (vision/audio/text...)."""
        for d in _config_chain(self.config):
            for n in names:
                v = getattr(d, n, None)
                if v is not None:
                    return v
        return default


def _config_chain(config) -> list:
    out, todo = [], [config]
    while todo:
        c = todo.pop(0)
        if c is None or c in out:
            continue
        out.append(c)
        for key in list(getattr(c, "sub_configs", {}) or {}) + ["vision_config", "audio_config", "text_config",
                                                                  "encoder", "decoder", "backbone_config"]:
            sub = getattr(c, key, None)
            if sub is not None and hasattr(sub, "to_dict") and sub not in out:
                todo.append(sub)
    return out


def signature_params(model) -> dict[str, inspect.Parameter]:
    params = dict(inspect.signature(model.forward).parameters)
    params.pop("self", None)
    return {k: p for k, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


# ----------------------------------------------------------------------------- kinds
def text_vocab(ctx: Context) -> int:
    tc = ctx.config.get_text_config() if hasattr(ctx.config, "get_text_config") else ctx.config
    v = getattr(tc, "vocab_size", None) or ctx.cfg("vocab_size")
    return int(v) if _is_int(v) else 256


def special_ids(config) -> set[int]:
    ids: set[int] = set()
    for d in _walk_dicts(config.to_dict()):
        for k in token_keys(d):
            v = d[k]
            ids.update(v if isinstance(v, list) else [v])
    return ids


def allowed_token_ids(ctx: Context) -> torch.Tensor:
    vocab = text_vocab(ctx)
    bad = special_ids(ctx.config)
    ids = [i for i in range(min(_FIRST_TOKEN, vocab - 1), vocab) if i not in bad]
    return torch.tensor(ids or [0])


def tokens(ctx: Context, name: str, inputs: dict) -> torch.Tensor:
    pool = allowed_token_ids(ctx)
    idx = torch.randint(0, len(pool), (ctx.batch, ctx.seq), generator=ctx.gen)
    return pool[idx]


def mask(ctx: Context, name: str, inputs: dict) -> torch.Tensor | None:
    like = inputs.get(name.replace("attention_mask", "input_ids"))
    if like is None:
        return None  # a mask for tokens this model was not given (audio/vision encoders)
    return torch.ones(tuple(like.shape[:2]), dtype=torch.long)


def zeros_like_tokens(ctx: Context, name: str, inputs: dict) -> torch.Tensor:
    like = inputs.get("input_ids")
    return torch.zeros(tuple(like.shape) if like is not None else (ctx.batch, ctx.seq), dtype=torch.long)


def boxes(ctx: Context, name: str, inputs: dict) -> torch.Tensor:
    top = int(ctx.cfg("max_2d_position_embeddings", default=1024)) - 1
    a = torch.randint(0, top // 2, (ctx.batch, ctx.seq, 2), generator=ctx.gen)
    b = a + torch.randint(0, top // 2, (ctx.batch, ctx.seq, 2), generator=ctx.gen)
    return torch.cat([a, b], dim=-1)


def image_hw(ctx: Context) -> tuple[int, int]:
    size = None
    vc = getattr(ctx.config, "vision_config", None)
    for c in ([vc] if vc is not None else []) + [ctx.config]:
        size = getattr(c, "image_size", None) or getattr(c, "img_size", None)
        if size:
            break
    size = size or ctx.cfg("image_size", "img_size", "input_size") or ctx.rules.limits.get("default_image_size", 64)
    if isinstance(size, dict):
        size = (size.get("height", 64), size.get("width", 64))
    if isinstance(size, (list, tuple)):
        return int(size[0]), int(size[-1])
    return int(size), int(size)


def image(ctx: Context, name: str, inputs: dict) -> torch.Tensor:
    channels = int(ctx.cfg("num_channels", "in_channels", "in_chans", default=3))
    if ("image_grid_thw" in ctx.params or "grid_thw" in ctx.params) and ctx.enabled("patch-grid"):
        # Qwen/GLM-style vision towers take flattened patches + a grid, as their processors emit them
        return patch_grid(ctx, inputs)
    h, w = image_hw(ctx)
    frames = ctx.cfg("num_frames")
    if _is_int(frames) and is_video_model(ctx) and ctx.enabled("video"):
        ctx.recipes.add("video")
        return torch.rand((ctx.batch, frames, channels, h, w), generator=ctx.gen) * 2 - 1
    if _in_mappings(ctx, "pair_mappings") and ctx.enabled("image-pairs"):
        ctx.recipes.add("image-pairs")
        return torch.rand((ctx.batch, 2, channels, h, w), generator=ctx.gen) * 2 - 1
    five_d = ctx.rules.raw.get("inputs", {}).get("five_d_with", ())
    if any(p in ctx.params for p in five_d) and ctx.enabled("image-stack"):
        ctx.recipes.add("image-stack")
        return torch.rand((ctx.batch, 1, channels, h, w), generator=ctx.gen) * 2 - 1
    return torch.rand((ctx.batch, channels, h, w), generator=ctx.gen) * 2 - 1


def video(ctx: Context, name: str, inputs: dict) -> torch.Tensor | None:
    if not ctx.enabled("video"):
        return None
    ctx.recipes.add("video")
    channels = int(ctx.cfg("num_channels", "in_channels", "in_chans", default=3))
    h, w = image_hw(ctx)
    frames = int(ctx.cfg("frames_per_clip", "num_frames", default=4))
    return torch.rand((ctx.batch, frames, channels, h, w), generator=ctx.gen) * 2 - 1


def _in_mappings(ctx: Context, key: str) -> bool:
    import transformers.models.auto.modeling_auto as ma
    mt = getattr(ctx.config, "model_type", "")
    return any(mt in getattr(ma, m, {}) for m in ctx.rules.raw.get("inputs", {}).get(key, ()))


def is_video_model(ctx: Context) -> bool:
    return _in_mappings(ctx, "video_mappings")


def vision_patches(ctx: Context, name: str, inputs: dict):
    """A vision tower called on its own: hidden_states are the flattened patches, beside grid_thw."""
    if "grid_thw" not in ctx.params or not ctx.enabled("patch-grid"):
        return None
    return patch_grid(ctx, inputs)


def image_sizes(ctx: Context, name: str, inputs: dict) -> torch.Tensor:
    h, w = image_hw(ctx)
    return torch.tensor([[h, w]] * ctx.batch)


def past_values(ctx: Context, name: str, inputs: dict) -> torch.Tensor:
    """Time-series history: context plus the largest lag, one column per input channel."""
    if not ctx.enabled("time-series"):
        return None
    ctx.recipes.add("time-series")
    lags = ctx.cfg("lags_sequence", default=[0]) or [0]
    n = int(ctx.cfg("context_length", default=32)) + int(max(lags))
    channels = int(ctx.cfg("num_input_channels", "input_size", default=1))
    shape = (ctx.batch, n, channels) if channels > 1 or "num_input_channels" in ctx.config.to_dict() else (ctx.batch, n)
    return torch.randn(shape, generator=ctx.gen)


def time_features(ctx: Context, name: str, inputs: dict) -> torch.Tensor | None:
    """Date features beside a time series: history length for past_*, prediction length for future_*."""
    past = inputs.get("past_values")
    n_feat = int(ctx.cfg("num_time_features", default=0) or 0) + int(ctx.cfg("num_dynamic_real_features", default=0) or 0)
    if past is None:
        return None
    n = past.shape[1] if name.startswith("past") else int(ctx.cfg("prediction_length", default=4))
    return torch.randn((ctx.batch, n, n_feat), generator=ctx.gen)


def patch_grid(ctx: Context, inputs: dict) -> torch.Tensor:
    """Flattened patches the way Qwen2-VL-style processors emit them, with image_grid_thw beside."""
    vc = getattr(ctx.config, "vision_config", ctx.config)
    p = int(getattr(vc, "patch_size", 14))
    tp = int(getattr(vc, "temporal_patch_size", 1) or 1)
    merge = int(getattr(vc, "spatial_merge_size", 2) or 1)
    channels = int(getattr(vc, "in_channels", getattr(vc, "num_channels", 3)) or 3)
    g = 4 * merge
    ctx.recipes.add("patch-grid")
    grid_name = "grid_thw" if "grid_thw" in ctx.params else "image_grid_thw"
    inputs[grid_name] = torch.tensor([[1, g, g]] * ctx.batch)
    ctx.notes.append(f"patch grid 1x{g}x{g} (patch {p}, temporal {tp}, merge {merge})")
    return torch.rand((ctx.batch * g * g, channels * tp * p * p), generator=ctx.gen) * 2 - 1


def image_mask(ctx: Context, name: str, inputs: dict) -> torch.Tensor:
    pv = inputs.get("pixel_values")
    h, w = (pv.shape[-2], pv.shape[-1]) if pv is not None and pv.dim() >= 4 else image_hw(ctx)
    if pv is not None and pv.dim() == 5 and name == "pixel_attention_mask":
        return torch.ones((pv.shape[0], pv.shape[1], h, w), dtype=torch.bool)
    return torch.ones((ctx.batch, h, w), dtype=torch.long)


def patch_noise(ctx: Context, name: str, inputs: dict) -> torch.Tensor:
    """The noise that orders random masking (ViT-MAE style), given so forward is reproducible:
    one value per patch, or per mask unit where the model masks units of patches (Hiera)."""
    h, w = image_hw(ctx)
    stride = ctx.cfg("patch_stride")
    unit = ctx.cfg("masked_unit_size")
    if stride and unit:
        stride = stride if isinstance(stride, (list, tuple)) else [stride, stride]
        unit = unit if isinstance(unit, (list, tuple)) else [unit, unit]
        n = (h // stride[0] // unit[0]) * (w // stride[-1] // unit[-1])
    else:
        p = ctx.cfg("patch_size", default=16)
        p = p[0] if isinstance(p, (list, tuple)) else p
        n = (h // p) * (w // p)
    return torch.rand((ctx.batch, max(n, 1)), generator=ctx.gen)


def sampling_rate(ctx: Context) -> int:
    return int(ctx.cfg("sampling_rate", "sample_rate", default=16000))


def waveform(ctx: Context, name: str, inputs: dict) -> torch.Tensor:
    """The model type's own feature extractor on a synthetic tone (its layout, e.g. (B, 1, T) for
    codecs), else a plain (B, T) waveform."""
    fe_out = feature_extractor_inputs(ctx, "input_values")
    if fe_out is not None:
        for k, v in fe_out.items():
            if k != "input_values" and k in ctx.params and k not in inputs:
                inputs[k] = v
        return fe_out["input_values"]
    n = int(sampling_rate(ctx) * ctx.rules.limits.get("audio_seconds", 1.0))
    t = torch.arange(n) / sampling_rate(ctx)
    tone = torch.sin(2 * torch.pi * 440.0 * t)
    wave = (0.5 * tone + 0.1 * torch.randn((ctx.batch, n), generator=ctx.gen)).float()
    channels = ctx.cfg("audio_channels")
    return wave[:, None, :].repeat(1, channels, 1) if _is_int(channels) else wave  # codecs: (B, channels, T)


def features_mask(ctx: Context, name: str, inputs: dict):
    feats = inputs.get("input_features")
    if feats is None or name in inputs:
        return inputs.get(name)
    frames = feats.shape[-1] if feats.shape[1] < feats.shape[-1] else feats.shape[1]
    return torch.ones((feats.shape[0], frames), dtype=torch.long)


def audio_features(ctx: Context, name: str, inputs: dict) -> torch.Tensor:
    """Features from the model type's own feature extractor on a synthetic tone, else a (B, mel, T) guess."""
    fe_out = feature_extractor_inputs(ctx, "input_features")
    if fe_out is not None:
        for k, v in fe_out.items():
            if k != "input_features" and k in ctx.params and k not in inputs:
                inputs[k] = v
        return fe_out["input_features"]
    mel = int(ctx.cfg("num_mel_bins", "feature_size", "input_feat_size", "n_mels", default=80))
    frames = 2 * int(ctx.cfg("max_source_positions", default=64))
    ctx.notes.append(f"input_features guessed (B, {mel}, {frames})")
    return torch.randn((ctx.batch, mel, frames), generator=ctx.gen)


def feature_extractor_inputs(ctx: Context, key: str) -> dict | None:
    from transformers.models.auto.feature_extraction_auto import FEATURE_EXTRACTOR_MAPPING_NAMES
    from transformers.models.auto.feature_extraction_auto import feature_extractor_class_from_name
    model_type = getattr(ctx.config, "model_type", "")
    name = FEATURE_EXTRACTOR_MAPPING_NAMES.get(model_type)
    if not name or not ctx.enabled("feature-extractor"):
        return None
    cls = feature_extractor_class_from_name(name)
    if cls is None:
        return None
    kwargs = {}
    mel = ctx.cfg("num_mel_bins")
    init = inspect.signature(cls.__init__).parameters
    if mel and "feature_size" in init:
        kwargs["feature_size"] = int(mel)
    try:
        fe = cls(**kwargs)
    except Exception as exc:  # a feature extractor that needs files or packages: fall back to the guess
        ctx.notes.append(f"feature extractor {name} unusable: {type(exc).__name__}: {str(exc)[:120]}")
        return None
    sr = int(getattr(fe, "sampling_rate", 16000))
    n = int(sr * ctx.rules.limits.get("audio_seconds", 1.0))
    t = torch.arange(n) / sr
    waves = [(0.5 * torch.sin(2 * torch.pi * 440.0 * t) + 0.1 * torch.randn(n, generator=ctx.gen)).numpy()
             for _ in range(ctx.batch)]
    try:
        out = fe(waves, sampling_rate=sr, return_tensors="pt")
    except Exception as exc:
        ctx.notes.append(f"feature extractor {name} failed: {type(exc).__name__}: {str(exc)[:120]}")
        return None
    out = dict(out)
    if key not in out:
        return None
    ctx.notes.append(f"{key} from {name}: {tuple(out[key].shape)}")
    ctx.recipes.add("feature-extractor")
    return out


KINDS = {
    "tokens": tokens, "mask": mask, "zeros-like-tokens": zeros_like_tokens, "boxes": boxes,
    "image": image, "image-mask": image_mask, "patch-noise": patch_noise,
    "waveform": waveform, "audio-features": audio_features, "vision-patches": vision_patches,
    "image-sizes": image_sizes, "features-mask": features_mask, "video": video, "time-features": time_features, "past-values": past_values, "ones-like-past": lambda ctx, name, inputs: (
        torch.ones_like(inputs["past_values"]) if "past_values" in inputs else None),
}


# ----------------------------------------------------------------------------- synthesis
def wanted_params(ctx: Context) -> list[str]:
    spec = ctx.rules.raw.get("inputs", {})
    kinds, optional = spec.get("kind", {}), set(spec.get("optional", ()))
    names = []
    for name, p in ctx.params.items():
        if name not in kinds:
            continue
        if p.default is inspect.Parameter.empty or name in optional:
            names.append(name)
    # order: tokens first (masks follow them), images before their masks
    order = ["input_ids", "decoder_input_ids", "pixel_values", "input_values", "input_features", "past_values"]
    return sorted(names, key=lambda n: (order.index(n) if n in order else len(order)))


def synthesize(model, rules: Rules, text_only: bool = False, seed: int = 0,
               used: set[str] | None = None) -> tuple[dict[str, Any], list[str]]:
    """(inputs for model.forward, notes). ``text_only`` keeps the text path of a multimodal model;
    ``used`` collects the names of the input recipes that applied."""
    spec = rules.raw.get("inputs", {})
    ctx = Context(model=model, config=model.config, rules=rules, params=signature_params(model),
                  gen=torch.Generator().manual_seed(seed), batch=int(rules.limits.get("batch", 2)),
                  seq=int(rules.limits.get("seq_len", 16)))
    text_names = set(spec.get("text", ()))
    inputs: dict[str, Any] = {}
    names = wanted_params(ctx)
    for group in spec.get("exclusive", ()):
        present = [n for n in group if n in names]
        names = [n for n in names if n not in present[1:]]
    for name in names:
        if text_only and name not in text_names:
            continue
        if name in inputs:
            continue
        value = KINDS[spec["kind"][name]](ctx, name, inputs)
        if value is not None:  # None: this recipe does not apply to this model
            inputs[name] = value
    if "input_ids" in inputs and "pixel_values" in inputs:
        insert_image_placeholders(ctx, inputs)
    if "mm_token_type_ids" in ctx.params and "input_ids" in inputs:
        image_id = image_token_id(ctx.config)
        inputs["mm_token_type_ids"] = (inputs["input_ids"] == image_id).long() if image_id is not None \
            else torch.zeros_like(inputs["input_ids"])
    for name, value in spec.get("fixed", {}).items():
        if name in ctx.params:
            inputs[name] = value
    if used is not None:
        used |= ctx.recipes
    return inputs, ctx.notes


def image_token_id(config) -> int | None:
    for key in ("image_token_id", "image_token_index", "image_token"):
        v = getattr(config, key, None)
        if _is_int(v):
            return v
    return None


def insert_image_placeholders(ctx: Context, inputs: dict) -> None:
    """Prefix each text with as many image tokens as the model makes image features.

    The count comes from the model's own ``get_image_features`` on the synthesized pixels, so the
    placeholder rule is the model's, not a guess; models without it keep their text as is.
    """
    image_id = image_token_id(ctx.config)
    getter = getattr(ctx.model, "get_image_features", None)
    if image_id is None or getter is None or not ctx.enabled("image-placeholders"):
        return
    kwargs = {"pixel_values": inputs["pixel_values"]}
    gparams = inspect.signature(getter).parameters
    for extra in ("image_grid_thw", "image_sizes", "pixel_attention_mask", "pixel_mask"):
        if extra in inputs and extra in gparams:
            kwargs[extra] = inputs[extra]
    with torch.no_grad():
        feats = getter(**kwargs)
    feats = getattr(feats, "pooler_output", None) if not isinstance(feats, (torch.Tensor, list, tuple)) else feats
    if feats is None:
        return
    tc = ctx.config.get_text_config() if hasattr(ctx.config, "get_text_config") else ctx.config
    hidden = int(getattr(tc, "hidden_size", 0) or 0)
    if isinstance(feats, torch.Tensor):
        per_image = [feats[i] for i in range(feats.shape[0])] if feats.dim() == 3 else [feats]
    else:
        per_image = list(feats)
    counts = [int(f.numel() // hidden) if hidden else int(f.shape[0]) for f in per_image]
    images_per_row = max(1, len(counts) // ctx.batch)
    ids = inputs["input_ids"]
    rows = []
    for b in range(ctx.batch):
        n = sum(counts[b * images_per_row:(b + 1) * images_per_row])
        rows.append(torch.cat([torch.full((n,), image_id, dtype=ids.dtype), ids[b]]))
    inputs["input_ids"] = torch.stack(rows)
    for key in ("attention_mask", "token_type_ids"):
        if key in inputs:
            fill = torch.ones if key == "attention_mask" else torch.zeros
            inputs[key] = fill(inputs["input_ids"].shape, dtype=torch.long)
    ctx.notes.append(f"{counts[0]} image tokens per image from get_image_features")
    ctx.recipes.add("image-placeholders")
