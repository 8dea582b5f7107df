"""The one base of the backends over optimum's model classes (``ORTModelFor*``, ``OVModelFor*``).

Shared here: the task table (which model class, export task and run mode serve a spec's task), the export
skeleton (route, optimum's TasksManager asked before any export: a typed ``ExporterRefused``; the load
policy; the cached ``main_export``), ``available`` and ``load``, input validation, the inputs a graph
takes that the model computes itself (``implied_input``: one rule for every graph hfmatrix feeds), the
task-level forward and greedy ``generate`` through the optimum model. Each backend supplies only what
differs: its ``Exporter`` (package, modules, versions, export options), how it finds the device
(``_target``), and how it opens the model class on it (``_open``: providers / ov_config, placement evidence).
The web backend validates its feeds with the same helpers."""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import exports
from ..skips import UNSUPPORTED, DependencyMissing, HardwareAbsent, Unsupported
from .base import UNUSABLE, Arrays, Availability, BackendBase, SessionBase, Target

# spec.task -> (model class suffix: ORTModelFor<suffix> / OVModelFor<suffix>, optimum export task, run mode).
# Run modes: "graph", one compiled graph fed directly (every graph output returned under its name, which
# optimum names like the transformers outputs); "model", the optimum model's forward (decoders need their
# empty KV cache built, seq2seq needs encoder + decoder).
TASKS: dict[str, tuple[str, str, str]] = {
    "feature-extraction": ("FeatureExtraction", "feature-extraction", "graph"),
    "text-classification": ("SequenceClassification", "text-classification", "graph"),
    "image-classification": ("ImageClassification", "image-classification", "graph"),
    "zero-shot-image-classification": ("ZeroShotImageClassification", "zero-shot-image-classification", "graph"),
    "ctc": ("CTC", "automatic-speech-recognition", "graph"),
    "text-generation": ("CausalLM", "text-generation-with-past", "model"),
    "text2text-generation": ("Seq2SeqLM", "text2text-generation-with-past", "model"),
    "automatic-speech-recognition": ("SpeechSeq2Seq", "automatic-speech-recognition-with-past", "model"),
    "image-text-to-text": ("VisualCausalLM", "image-text-to-text", "model"),
}
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


@dataclass(frozen=True)
class Exporter:
    """One optimum exporter and the package whose model classes load its exports."""

    name: str                # the exporter's name in TasksManager, and the export cache's kind
    label: str               # how messages name its exports ("ONNX", "OpenVINO")
    requirement: str         # what to install when it is missing
    package: str             # the distribution with the model classes (its version names a missing class)
    models: str              # module of the ``<prefix>ModelFor*`` classes
    exporter: str            # module of its ``main_export``
    configs: str             # module whose import registers its export configs in TasksManager
    distributions: tuple[str, ...]  # versions that shape an export (its cache key and the refusal's evidence)

    def modules(self) -> tuple[Any, Any]:
        """(the model classes' module, main_export); DependencyMissing when they do not import."""
        try:
            return importlib.import_module(self.models), importlib.import_module(self.exporter).main_export
        except (ImportError, AttributeError) as exc:
            raise DependencyMissing(f"{self.requirement} not importable: {exc}") from None

    def versions(self) -> dict[str, str]:
        return exports.dist_versions(*self.distributions)


def export(exporter: Exporter, model_dir: Path, spec, options: dict[str, Any], task: str | None = None,
           **main_kwargs) -> exports.Export:
    """The exporter's export of ``model_dir`` for ``spec.task`` (or ``task``), cached by hfmatrix.exports:
    TasksManager is asked first (a typed refusal, cached with the versions), the load policy every time;
    ``options`` go into the key, ``main_kwargs`` to ``main_export``."""
    if spec.task not in TASKS:
        raise Unsupported(f"no {exporter.label} export route for task {spec.task!r}")
    _, main_export = exporter.modules()
    task = task or TASKS[spec.task][1]
    importlib.import_module(exporter.configs)
    check_exporter(exporter.name, spec.model_type, task, exporter.versions())
    parts = {"model": exports.folder_digest(model_dir), "task": task, **options, "model_type": spec.model_type,
             "versions": exporter.versions(), "source_checks": "safeload+loading-info-2"}

    exports.check_policy(model_dir)  # every time, cheap: a policy refusal is never a cached failure

    def make(out: Path) -> None:
        exports.check_source(model_dir, spec.auto_class)
        main_export(str(model_dir), output=out, task=task, library_name="transformers", **main_kwargs)

    return exports.cached_export(exporter.name, parts, make)


def implied_input(name: str, inputs: Arrays) -> np.ndarray | None:
    """An input a graph may take that the model computes itself when it is absent, as transformers does:
    zero token types; positions from the attention mask (left/right padding aware, padded slots 1: the rule
    of generate() and of OVModelForCausalLM), an all-ones mask where none is given. None: not implied."""
    if name in inputs:
        return np.asarray(inputs[name])
    if name == "token_type_ids" and "input_ids" in inputs:
        return np.zeros(np.shape(inputs["input_ids"]), dtype=np.int64)  # integer even where the ids are not
    if name == "position_ids" and ("attention_mask" in inputs or "input_ids" in inputs):
        mask = np.asarray(inputs["attention_mask"] if "attention_mask" in inputs
                          else np.ones_like(inputs["input_ids"])).astype(np.int64)
        return np.where(mask == 0, 1, np.cumsum(mask, axis=-1) - 1)
    return None


def graph_feeds(declared, inputs: Arrays) -> dict[str, np.ndarray]:
    """A graph's feeds from ours: each declared (name, numpy dtype or None) input in that dtype, implied
    inputs filled in; a graph input we cannot make is the caller's error."""
    feeds = {}
    for name, dtype in declared:
        value = implied_input(name, inputs)
        if value is None:
            raise ValueError(f"graph input {name!r} missing from the inputs {sorted(inputs)}")
        feeds[name] = np.ascontiguousarray(coerce(name, value, dtype))
    return feeds


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
    compiled graph directly: the subclass's run_graph) or "model" (run() is the optimum model's forward)."""

    def __init__(self, model, spec, target: Target, export: exports.Export, mode: str):
        self.model, self.spec, self.target, self.export, self.mode = model, spec, target, export, mode

    def graph_inputs(self) -> set[str]:
        """The input names of every graph the model holds."""
        raise NotImplementedError

    def run_graph(self, inputs: Arrays) -> Arrays:
        """Every output of the one graph, fed directly (graph_feeds)."""
        raise NotImplementedError

    def _check(self, inputs: Arrays) -> None:
        extra = FORWARD_INPUTS if self.mode == "model" else {"token_type_ids", "position_ids"}
        check_names(inputs, self.graph_inputs() | extra)
        for name, value in inputs.items():
            if name in TOKEN_INPUTS and np.asarray(value).dtype.kind not in "iu":
                raise ValueError(f"input {name!r} has dtype {np.asarray(value).dtype}; token ids and masks are integers")

    def run(self, inputs: Arrays) -> Arrays:
        self._check(inputs)
        return self.run_graph(inputs) if self.mode == "graph" else self.forward(inputs)

    def forward(self, inputs: Arrays) -> Arrays:
        """The optimum model's own forward (KV cache built for decoders, encoder + decoder for seq2seq).
        The model class builds the inputs it owns, position_ids included: ORTModelForCausalLM counts them
        from the cache length, OVModelForCausalLM from the mask, the same on the unpadded and right-padded
        batches the checks feed. Not filled here: implied_input's positions from a mask longer than the ids
        would make ORT refuse it (test_negative's mask-wrong-length, a known bug, would flip)."""
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


class OptimumBackend(BackendBase):
    """``available`` and ``load`` of a backend over optimum's model classes. A subclass names its
    ``exporter`` and class ``prefix`` and supplies ``_target`` (the device, or a typed exception),
    ``export`` and ``_open`` (the model class loaded on that device, wrapped in its session)."""

    name: str
    label: str       # how messages name the runtime ("ONNX Runtime", "OpenVINO")
    prefix: str      # of the model classes: ORTModelFor*, OVModelFor*
    exporter: Exporter
    precisions: tuple[str, ...]
    no_class: frozenset[str] = frozenset()  # tasks the package has no model class for (exported all the same)

    def _target(self, device: str, precision: str) -> Availability:
        """The available target with the details ``_open`` needs; raises a typed exception otherwise."""
        raise NotImplementedError

    def export(self, model_dir: Path, spec, precision: str) -> exports.Export:
        raise NotImplementedError

    def _open(self, cls, spec, target: Target, avail: Availability, export: exports.Export, mode: str,
              options: dict[str, Any] | None):
        raise NotImplementedError

    def available(self, device: str, precision: str) -> Availability:
        if precision not in self.precisions:
            return Availability(False, f"{self.name} precisions are {self.precisions}", UNSUPPORTED)
        try:
            return self._target(device, precision)
        except HardwareAbsent as exc:  # the device is missing: absent hardware, or a build that cannot use it
            from hwprobe.presence import PRESENT
            present = device in PRESENT and device != "cpu" and PRESENT[device]()[0]
            return Availability(False, f"the {device} hardware is present (hwprobe) but unusable: {exc.reason}",
                                UNUSABLE) if present else Availability(False, exc.reason, exc.kind)
        except (DependencyMissing, Unsupported) as exc:
            return Availability(False, exc.reason, exc.kind)

    def load(self, model_dir: Path, spec, target: Target, options: dict[str, Any] | None = None, *,
             allow_pickle: bool = False, trust_remote_code: bool = False):
        """The export loaded into the package's model class on the target (``options``: the backend's
        runtime options, e.g. ORT provider options, OpenVINO ov_config entries)."""
        avail = self.available(target.device, target.precision).require()
        if spec.task not in TASKS:
            raise Unsupported(f"no {self.label} route for task {spec.task!r}")
        suffix, _, mode = TASKS[spec.task]
        exports.refuse_opt_ins(Path(model_dir), allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
        export = self.export(Path(model_dir), spec, target.precision)
        if spec.task in self.no_class:
            raise Unsupported(f"{self.exporter.package} {self.exporter.versions()[self.exporter.package]} has no "
                              f"{self.prefix}Model class for {spec.task}")
        module, _ = self.exporter.modules()
        return self._open(getattr(module, f"{self.prefix}ModelFor{suffix}"), spec, target, avail, export, mode, options)
