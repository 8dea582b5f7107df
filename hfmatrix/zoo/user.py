"""``--hfm-models`` arguments (a local HF folder or a hub id) → ModelSpec, guessed from config.json."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

from .spec import ModelSpec

_STATE_SPACE = {"mamba", "mamba2", "falcon_mamba", "rwkv", "xlstm"}
_SEQ2SEQ_AUDIO = {"whisper", "speech_to_text", "moonshine", "speecht5"}


def spec_from_user(arg: str) -> ModelSpec:
    """A spec for a user-named model. A folder becomes ``path:<abs dir>``; anything else is a hub id
    (``hub:<id>``), read from the local HF cache only. When no config.json can be read offline the
    spec is still returned (so the run can report a typed skip): materialize then raises
    DependencyMissing."""
    path = Path(arg).expanduser()
    looks_like_path = arg.startswith((".", "/", "~")) or os.sep in arg and not re.fullmatch(r"[\w.-]+/[\w.-]+", arg)
    if path.is_dir() or looks_like_path:
        source, name, cfg = f"path:{path.resolve()}", path.resolve().name, _read(path / "config.json")
    else:
        source, name, cfg = f"hub:{arg}", arg, _hub_config(arg)
    if cfg is None:
        return ModelSpec(id=_safe_id(name), arch_class="encoder", model_type="unknown",
                         task="feature-extraction", source=source,
                         description=f"user model {arg} (config.json not available offline)")
    task, auto_class = _task(cfg)
    arch = _arch_class(cfg, task)
    caps = _capabilities(cfg, task)
    text_cfg = cfg.get("text_config") or {}
    if "max_position_embeddings" in cfg:
        mpk = "max_position_embeddings"
    elif "n_positions" in cfg:
        mpk = "n_positions"
    elif "max_position_embeddings" in text_cfg:
        mpk = "text_config.max_position_embeddings"
    else:
        mpk = ""
    outputs = {"feature-extraction": ("last_hidden_state",)}.get(task, ("logits",))
    if task == "zero-shot-image-classification":
        outputs = ("logits_per_image", "text_embeds", "image_embeds")
    generate = {"max_new_tokens": 5} if task in (
        "text-generation", "text2text-generation", "automatic-speech-recognition", "image-text-to-text") else {}
    return ModelSpec(id=_safe_id(name), arch_class=arch, model_type=cfg.get("model_type", "unknown"),
                     task=task, auto_class=auto_class, source=source, capabilities=caps, outputs=outputs,
                     generate=generate, max_positions_key=mpk,
                     description=f"user model {arg} ({(cfg.get('architectures') or ['?'])[0]})")


def user_named(spec: ModelSpec) -> bool:
    """A model named on the command line by folder or hub id (spec_from_user), not a curated zoo entry:
    the catalogues cannot be complete for it, so a missing expectation is an observation, not a failure."""
    return spec.source.partition(":")[0] in ("path", "hub")


def _safe_id(name: str) -> str:
    return re.sub(r"[^\w.-]+", "-", name).strip("-") or "model"


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _hub_config(repo_id: str) -> dict | None:
    try:
        from huggingface_hub import hf_hub_download

        return _read(Path(hf_hub_download(repo_id, "config.json", local_files_only=True)))
    except Exception:
        return None


def _task(cfg: dict) -> tuple[str, str]:
    """(task, auto class) from the first listed architecture, the model_type as a fallback."""
    arch = (cfg.get("architectures") or [""])[0]
    mt = cfg.get("model_type", "")
    if arch.endswith("ForCausalLM") or arch.endswith("LMHeadModel"):
        return "text-generation", ""
    if arch.endswith("ForSequenceClassification"):
        return "text-classification", ""
    if arch.endswith("ForImageClassification"):
        return "image-classification", ""
    if arch.endswith("ForCTC"):
        return "ctc", ""
    if mt in ("clip", "siglip", "siglip2", "chinese_clip", "altclip"):
        return "zero-shot-image-classification", ""
    if arch.endswith("ForConditionalGeneration") or cfg.get("is_encoder_decoder"):
        if mt in _SEQ2SEQ_AUDIO:
            return "automatic-speech-recognition", ""
        if "vision_config" in cfg:
            return "image-text-to-text", ""
        if cfg.get("is_encoder_decoder"):
            return "text2text-generation", ""
        return "text-generation", ""
    return "feature-extraction", ""


def _arch_class(cfg: dict, task: str) -> str:
    mt = cfg.get("model_type", "")
    text = cfg.get("text_config") or cfg
    if mt in _STATE_SPACE or "ssm" in mt:
        return "state-space"
    if any(text.get(k) for k in ("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts")):
        return "mixture-of-experts"
    if "vision_config" in cfg and ("text_config" in cfg or task == "image-text-to-text"):
        return "multimodal"
    if task in ("automatic-speech-recognition", "ctc") or "num_mel_bins" in cfg or "conv_dim" in cfg:
        return "audio"
    if task == "image-classification" or "num_channels" in cfg and "image_size" in cfg:
        return "vision"
    if cfg.get("is_encoder_decoder"):
        return "encoder-decoder"
    if task == "text-generation":
        return "decoder"
    return "encoder"


def _capabilities(cfg: dict, task: str) -> tuple[str, ...]:
    caps = []
    if task not in ("image-classification", "automatic-speech-recognition", "ctc"):
        caps.append("text")
    if "vision_config" in cfg or task == "image-classification":
        caps.append("vision")
    if task in ("automatic-speech-recognition", "ctc"):
        caps.append("audio")
    if task in ("feature-extraction", "text-classification", "text-generation", "text2text-generation"):
        caps.append("batch")
    return tuple(caps)
