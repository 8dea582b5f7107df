"""What the adapters over optimum's model classes (``ORTModelFor*``, ``OVModelFor*``) share: input
validation, the task-level forward and greedy ``generate`` through the optimum model, and the casts
that keep a graph's dtype kinds honest. The web backend validates its feeds with the same helpers."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..skips import Unsupported
from .base import Arrays, SessionBase

# inputs the task-level forward takes besides the graphs' own input names (seq2seq, generate)
FORWARD_INPUTS = {"input_ids", "attention_mask", "decoder_input_ids", "decoder_attention_mask", "position_ids",
                  "token_type_ids", "pixel_values", "input_features", "input_values"}
# outputs of the task-level forward, named as the torch reference names them
MODEL_OUTPUTS = ("logits", "encoder_last_hidden_state", "last_hidden_state")
TOKEN_INPUTS = ("input_ids", "decoder_input_ids", "attention_mask")


class ExporterRefused(Unsupported):
    """The exporter has no config for this model type and task (optimum's TasksManager registry, looked up
    before any export): a typed refusal, with what the registry offers as evidence."""

    def __init__(self, reason: str, evidence: dict[str, Any]):
        super().__init__(reason)
        self.evidence = evidence


def check_exporter(exporter: str, model_type: str, task: str, versions: dict[str, str]) -> None:
    """Raise ExporterRefused unless optimum's TasksManager has an ``exporter`` config for ``model_type`` and
    ``task`` (the lookup main_export makes; the caller imports the exporter's model configs first)."""
    from optimum.exporters.tasks import TasksManager

    registry = TasksManager._LIBRARY_TO_SUPPORTED_MODEL_TYPES["transformers"]
    names = (model_type, model_type.replace("_", "-"), model_type.replace("-", "_"))
    entry = next((registry[n] for n in names if n in registry), {})
    tasks = sorted(entry.get(exporter, {}))
    if task not in tasks:
        lib = ", ".join(f"{k} {v}" for k, v in versions.items())
        evidence = {"exporter": exporter, "model_type": model_type, "task": task, "supported_tasks": tasks,
                    "versions": versions}
        raise ExporterRefused(f"no {exporter} export config for model type {model_type!r}, task {task!r} in optimum's "
                              f"TasksManager ({lib}); its tasks for this type: {tasks or 'none'}", evidence)


def coerce(name: str, value: np.ndarray, dtype) -> np.ndarray:
    """Cast within a kind only (int64 -> int32, float32 -> float16): float token ids or int pixel
    values are the caller's error, never silently truncated."""
    value = np.asarray(value)
    if dtype is None:
        return value
    want = np.dtype(dtype).kind
    if value.dtype.kind != want and not (want == "i" and value.dtype.kind == "u"):
        raise ValueError(f"input {name!r} has dtype {value.dtype}, the graph takes {np.dtype(dtype).name}")
    return value.astype(dtype)


def check_names(inputs: Arrays, allowed: set[str]) -> None:
    """Refuse inputs the model does not take. An all-ones attention_mask carries no information and is
    dropped when the export takes none (optimum's wav2vec2 graph); a padded one would be ignored: refused."""
    unknown = sorted(set(inputs) - allowed)
    if unknown == ["attention_mask"] or "attention_mask" in unknown:
        if np.all(np.asarray(inputs["attention_mask"]) == 1):
            unknown.remove("attention_mask")
    if unknown:
        raise ValueError(f"inputs {unknown} are not inputs of this model (takes {sorted(allowed)})")


def as_float32(value: np.ndarray) -> np.ndarray:
    value = np.asarray(value)
    return value.astype(np.float32) if value.dtype.kind == "f" else value


class OptimumSession(SessionBase):
    """Base of the sessions that hold an optimum model. ``mode`` is "graph" (run() feeds the one
    compiled graph directly: the subclass's run) or "model" (run() is the optimum model's forward)."""

    model: Any
    mode: str

    def graph_inputs(self) -> set[str]:
        """The input names of every graph the model holds."""
        raise NotImplementedError

    def _check(self, inputs: Arrays) -> None:
        extra = FORWARD_INPUTS if self.mode == "model" else {"token_type_ids", "position_ids"}
        check_names(inputs, self.graph_inputs() | extra)
        for name, value in inputs.items():
            if name in TOKEN_INPUTS and np.asarray(value).dtype.kind not in "iu":
                raise ValueError(f"input {name!r} has dtype {np.asarray(value).dtype}; token ids and masks are integers")

    def forward(self, inputs: Arrays) -> Arrays:
        """The optimum model's own forward (KV cache built for decoders, encoder + decoder for seq2seq)."""
        import torch

        kwargs = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in inputs.items()}
        with torch.inference_mode():
            out = self.model(**kwargs)
        return {k: out[k].detach().cpu().float().numpy() if out[k].is_floating_point() else out[k].cpu().numpy()
                for k in MODEL_OUTPUTS if k in out and out[k] is not None}

    def generate(self, inputs: Arrays, max_new_tokens: int) -> np.ndarray:
        if not hasattr(self.model, "generate"):
            raise Unsupported(f"{type(self.model).__name__} does not generate")
        import torch

        self._check(inputs)
        kwargs = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in inputs.items()}
        cfg = getattr(self.model, "generation_config", None)
        pad = cfg.pad_token_id if cfg is not None else None
        if pad is None and cfg is not None:  # same rule as the torch reference
            eos = cfg.eos_token_id
            pad = eos[0] if isinstance(eos, (list, tuple)) else eos
        with torch.inference_mode():
            ids = self.model.generate(**kwargs, max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens,
                                      do_sample=False, num_beams=1, pad_token_id=pad)
        return ids.cpu().numpy()
