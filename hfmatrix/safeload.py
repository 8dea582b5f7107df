"""Safe loading policy for model folders.

* Weights: safetensors only. A folder whose only weights are pickle-based (``pytorch_model.bin``,
  TF/Flax checkpoints) is refused with a clear message unless the user opts in (``--hfm-allow-pickle``);
  opted-in pickles are loaded with ``torch.load(weights_only=True)``, which refuses any global
  outside torch's allow-list (a crafted ``__reduce__`` cannot run).
* Remote code: a folder whose config names custom classes (``auto_map``) is refused unless the user trusts that model by id (``--hfm-trust-remote-code=ID[,ID]``
  or ``HFMATRIX_TRUST_REMOTE_CODE``); trust is per model, never global.

``pretrained_kwargs`` is the one call a backend makes before ``from_pretrained``: it runs both
checks and returns the keyword arguments that keep transformers on the same policy.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

PICKLE_NAMES = ("pytorch_model.bin", "pytorch_model.bin.index.json", "tf_model.h5", "model.ckpt.index",
                "flax_model.msgpack")
TRUST_ENV = "HFMATRIX_TRUST_REMOTE_CODE"


class UnsafeWeights(ValueError):
    """The folder has only pickle-format weights and the user did not opt in."""


class RemoteCodeRefused(ValueError):
    """The folder asks to run its own Python code and the user did not trust this model."""


def check_weights_format(model_dir: Path, allow_pickle: bool = False) -> str:
    """Return "safetensors" or "pickle"; refuse pickle-only folders unless allow_pickle."""
    model_dir = Path(model_dir)
    if any(model_dir.glob("*.safetensors")) or (model_dir / "model.safetensors.index.json").exists():
        return "safetensors"
    pickles = [n for n in PICKLE_NAMES if (model_dir / n).exists()]
    if pickles:
        if not allow_pickle:
            raise UnsafeWeights(
                f"{model_dir} has only pickle-format weights ({', '.join(pickles)}); hfmatrix loads safetensors "
                "only. Convert the weights, or opt in with --hfm-allow-pickle (then loaded with weights_only=True).")
        return "pickle"
    raise FileNotFoundError(f"{model_dir}: no weights file (expected model.safetensors or a sharded index)")


def remote_code_files(model_dir: Path) -> list[str]:
    """What trust_remote_code would run: the auto_map entries of config.json / tokenizer_config.json
    (transformers only imports code that auto_map names; a stray __init__.py never runs)."""
    model_dir = Path(model_dir)
    found: list[str] = []
    for name in ("config.json", "tokenizer_config.json", "preprocessor_config.json", "processor_config.json"):
        try:
            data = json.loads((model_dir / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        auto_map = data.get("auto_map") if isinstance(data, dict) else None
        if isinstance(auto_map, dict):
            found += [f"{name}: auto_map {k} -> {v}" for k, v in sorted(auto_map.items())]
    return found


def trusted_models(option: str | Iterable[str] | None = None) -> set[str]:
    """Model ids the user trusts with remote code: the option value plus $HFMATRIX_TRUST_REMOTE_CODE."""
    items: list[str] = []
    for source in (option, os.environ.get(TRUST_ENV, "")):
        if not source:
            continue
        items += source.split(",") if isinstance(source, str) else list(source)
    return {i.strip() for i in items if i.strip() and i.strip() != "*"}  # no wildcard: trust is per model


def check_remote_code(model_dir: Path, trust: bool = False, model_id: str = "") -> list[str]:
    """Refuse a folder that carries its own code unless trusted; returns what would run."""
    code = remote_code_files(model_dir)
    if code and not trust:
        who = f"model {model_id!r}" if model_id else str(model_dir)
        raise RemoteCodeRefused(
            f"{who} asks to run code from the folder ({'; '.join(code)}); hfmatrix keeps trust_remote_code off. "
            f"Trust this one model with --hfm-trust-remote-code={model_id or '<model id>'} after reading the code.")
    return code


def pretrained_kwargs(model_dir: Path, allow_pickle: bool = False, trust_remote_code: bool = False,
                      model_id: str = "") -> dict[str, Any]:
    """Run the checks, then the from_pretrained keyword arguments that keep to this policy."""
    fmt = check_weights_format(model_dir, allow_pickle=allow_pickle)
    check_remote_code(model_dir, trust=trust_remote_code, model_id=model_id)
    return {"use_safetensors": fmt == "safetensors", "weights_only": True, "trust_remote_code": bool(trust_remote_code)}


def load_pickle_weights(path: Path, map_location: str = "cpu") -> dict[str, Any]:
    """A pickle checkpoint through torch's restricted unpickler only (weights_only=True, never False)."""
    import torch

    return torch.load(str(path), map_location=map_location, weights_only=True)
