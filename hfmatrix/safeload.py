"""Safe loading policy: safetensors only unless the user opts in to pickle (then weights_only)."""
from __future__ import annotations

from pathlib import Path

PICKLE_NAMES = ("pytorch_model.bin", "pytorch_model.bin.index.json", "tf_model.h5", "model.ckpt.index",
                "flax_model.msgpack")


class UnsafeWeights(ValueError):
    """The folder has only pickle-format weights and the user did not opt in."""


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
                "only. Convert the weights, or opt in with --allow-pickle (then loaded with weights_only=True).")
        return "pickle"
    raise FileNotFoundError(f"{model_dir}: no weights file (expected model.safetensors or a sharded index)")
