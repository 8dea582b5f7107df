"""The auto-zoo as a spec source: ``--hfm-models=autozoo:N`` adds a deterministic sample of N auto-zoo
model types to a run, as ModelSpecs the shared suites take like curated ones (``nox -s baseline``
measures them next to the curated zoo: hfmatrix/sessions.py BASELINE_AUTOZOO).

A type enters the sample when it has a base model (MODEL_MAPPING_NAMES), its base class is in
neither auto_known.toml nor auto_gaps.toml (those fail a stage of the auto-zoo on purpose) and it is
not in auto_sample_exclude.toml (each entry with its reason: too slow for the baseline's time budget,
or a backend run that fails where the auto-zoo's own forward passes); the sample
is the first N eligible types in auto.sample_types' stable hash order, so it is the same on every
machine and run of one transformers version. Each spec (id ``auto-<model_type>``, source
``autozoo:<model_type>``) materializes through hfmatrix.zoo.materialize's content-addressed cache: the
auto-zoo's shrunk config, its seeded build, its first forward on its synthesized inputs (which must be
finite), saved as safetensors plus those inputs (``autozoo-inputs.npz``), which ``zoo.example`` returns
for the spec: the inputs the auto-zoo itself runs the model on, not a text/vision recipe of the curated zoo.
"""
from __future__ import annotations

import hashlib
import zlib
from pathlib import Path

from .spec import ARCH_CLASSES, ModelSpec

PREFIX = "autozoo:"
SOURCE = "autozoo"
ID_PREFIX = "auto-"
INPUTS_FILE = "autozoo-inputs.npz"
EXCLUDE_FILE = Path(__file__).with_name("auto_sample_exclude.toml")
#: the auto-zoo code and data a built folder depends on (part of its cache key)
RECIPE_FILES = ("auto.py", "auto_shrink.py", "auto_inputs.py", "auto_rules.toml", "auto_specs.py")


def is_item(item: str) -> bool:
    return item.startswith(PREFIX)


def parse(item: str) -> int:
    """'autozoo:90' -> 90; a usage error names the form otherwise."""
    text = item[len(PREFIX):].strip()
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"--hfm-models item {item!r}: expected autozoo:N with N >= 1 model types")
    return int(text)


def load_exclude(path: Path | str | None = None) -> dict[str, str]:
    """{model type: why it stays out of the sample} from auto_sample_exclude.toml ([[exclude]] tables)."""
    from .spec import tomllib
    path = Path(path or EXCLUDE_FILE)
    with open(path, "rb") as fh:
        entries = tomllib.load(fh).get("exclude", [])
    out: dict[str, str] = {}
    for i, e in enumerate(entries):
        if not e.get("model_type") or not e.get("reason"):
            raise ValueError(f"{path}: entry #{i} needs model_type and reason")
        for model_type in [e["model_type"]] if isinstance(e["model_type"], str) else e["model_type"]:
            if model_type in out:
                raise ValueError(f"{path}: duplicate entry for {model_type!r}")
            out[model_type] = e["reason"]
    return out


def eligible(model_type: str, known: dict, exclude: dict[str, str]) -> bool:
    from . import auto
    name, _ = auto.class_name(model_type, "base")
    return name is not None and (model_type, "base") not in known and model_type not in exclude


def sample(n: int) -> list[str]:
    """The first n eligible model types in the auto-zoo's stable hash order, sorted by name."""
    from . import auto
    known, exclude = auto.load_known(), load_exclude()
    ordered = sorted(auto.model_types(), key=lambda t: (zlib.crc32(t.encode()), t))  # auto.sample_types' order
    return sorted([t for t in ordered if eligible(t, known, exclude)][:n])


def spec_for(model_type: str) -> ModelSpec:
    from . import auto
    name, mapping = auto.class_name(model_type, "base")
    arch = auto.arch_class(model_type)
    auto_cls = {"MODEL_MAPPING_NAMES": "AutoModel"}.get(mapping, name)
    return ModelSpec(id=f"{ID_PREFIX}{model_type}", arch_class=arch if arch in ARCH_CLASSES else "encoder",
                     model_type=model_type, task="feature-extraction", source=f"{SOURCE}:{model_type}",
                     auto_class=auto_cls, capabilities=("autozoo",),
                     description=f"auto-zoo {model_type} base model ({name}), shrunk config, seeded random weights")


def specs(item: str) -> dict[str, ModelSpec]:
    return {s.id: s for s in (spec_for(t) for t in sample(parse(item)))}


def is_auto(spec) -> bool:
    return spec.source.partition(":")[0] == SOURCE


def recipe_digest() -> str:
    h = hashlib.sha256()
    for name in RECIPE_FILES:
        h.update((Path(__file__).parent / name).read_bytes())
    return h.hexdigest()[:16]


def build(spec: ModelSpec, out: Path) -> None:
    """The auto-zoo's config, build and forward stages for the spec's type, saved into ``out`` with the
    synthesized inputs. A stage failure raises the auto-zoo's StageFailure; a missing package DependencyMissing."""
    import numpy as np
    import torch

    from ..skips import DependencyMissing
    from . import auto
    from .auto_shrink import default_rules, shrink_config
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    mt = spec.source.partition(":")[2]
    rules = default_rules()
    name, mapping = auto.class_name(mt, "base", rules)
    case = auto.AutoCase(mt, "base", name, mapping)
    auto.resolve_class(name)  # a missing optional package: DependencyMissing
    cls = auto.auto_classes().get(mapping) or auto.resolve_class(name)
    config, fired = shrink_config(CONFIG_MAPPING[mt], rules)
    m: dict = {"rules": fired}
    try:
        model = auto._build(cls, config, case, rules, m)
    except ImportError as exc:  # a sub-model's optional package (timm ...) is not in this env
        raise DependencyMissing(f"{spec.id}: {str(exc).strip().splitlines()[0][:200]}") from None
    inputs, _ = auto._first_forward(model, rules, True, m)
    arrays = {k: v.detach().cpu().numpy() for k, v in inputs.items() if isinstance(v, torch.Tensor)}
    model.save_pretrained(out)
    np.savez(out / INPUTS_FILE, **arrays)


def stored_inputs(model_dir: Path | str) -> dict:
    """The synthesized inputs saved next to the model (the auto-zoo's batch, whatever its index)."""
    import numpy as np
    with np.load(Path(model_dir) / INPUTS_FILE) as data:
        return {k: data[k] for k in data.files}
