"""What a known bug or a bad-input expectation is keyed by: the model's facts, not only its zoo id.

An entry in ``known_failures.toml`` or ``negative_cases.toml`` names what causes the behaviour, so a
user's folder of the same kind gets the same verdict as the zoo model:

- ``model``: the zoo id (only where the cause really is that one model),
- ``model_type``: config.json's model_type (``bert``: BertModel's behaviour, whoever ships the weights),
- ``arch_class`` / ``task``: the zoo's architecture class and task (``encoder``, ``text-generation``),
- ``source``: where the folder comes from (``random``: built here by save_pretrained; ``package``,
  ``path``, ``hub``: a checkpoint written elsewhere),
- ``checkpoint``: a property read from the folder's files (CHECKPOINT_PROPERTIES), never guessed.

Each key takes one fnmatch pattern or a list (any matches); an absent key matches anything. A bare
model id (a caller without the spec) is looked up in the zoo, so zoo ids keep every fact."""
from __future__ import annotations

import fnmatch
import json
import struct
from functools import lru_cache
from pathlib import Path

SUBJECT_KEYS = ("model", "model_type", "arch_class", "task", "source", "checkpoint")

#: tensors memory-mapped from a safetensors file start at their file offset modulo the page; BLAS kernels
#: pick their path by 64-byte alignment, so an offset that is not a multiple of 64 is a property of the file
ALIGNMENT = 64
UNALIGNED = "unaligned-safetensors"
CHECKPOINT_PROPERTIES = (UNALIGNED,)


def safetensors_offsets(path: Path) -> list[int]:
    """Absolute file offset of every tensor's data in one safetensors file (header read only)."""
    with open(path, "rb") as fh:
        (length,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(length))
    return [8 + length + int(v["data_offsets"][0]) for k, v in header.items() if k != "__metadata__"]


def checkpoint_properties(folder: Path) -> tuple[str, ...]:
    """The CHECKPOINT_PROPERTIES the folder's weight files have (read from their headers)."""
    files = sorted(Path(folder).glob("*.safetensors"))
    if any(off % ALIGNMENT for f in files for off in safetensors_offsets(f)):
        return (UNALIGNED,)
    return ()


@lru_cache(maxsize=None)
def _source_properties(source: str) -> tuple[str, ...]:
    """Properties of a checkpoint written elsewhere (package / local folder). A folder built here
    (random) or one only in the hub cache has none read at collection time: no checkpoint key matches it."""
    kind, _, ref = source.partition(":")
    if kind == "path":
        folder = Path(ref)
    elif kind == "package":
        from .skips import TypedSkip
        from .zoo.materialize import _from_package
        try:
            folder = _from_package(ref)
        except TypedSkip:  # not installed: the model's own checks skip dependency-missing
            return ()
    else:
        return ()
    return checkpoint_properties(folder) if folder.is_dir() else ()


@lru_cache(maxsize=None)
def _zoo_spec(model: str):
    import os

    from .zoo import load_specs
    return load_specs(os.environ.get("HFMATRIX_ZOO_FILE") or None).get(model)


def facts(model) -> dict[str, tuple[str, ...]]:
    """{key: values} for a ModelSpec, or for a bare id (resolved in the built-in zoo when it is there)."""
    spec = _zoo_spec(model) if isinstance(model, str) else model
    if spec is None:
        return {"model": (model,)}
    return {"model": (spec.id,), "model_type": (spec.model_type,), "arch_class": (spec.arch_class,),
            "task": (spec.task,), "source": (spec.source.partition(":")[0],),
            "checkpoint": _source_properties(spec.source)}


def patterns(value) -> tuple[str, ...]:
    return tuple(str(p) for p in value) if isinstance(value, (list, tuple)) else (str(value),)


def matches(entry: dict, known: dict[str, tuple[str, ...]]) -> bool:
    """Every subject key the entry names has a fact matching one of its patterns."""
    return all(any(fnmatch.fnmatch(v, p) for p in patterns(entry[k]) for v in known.get(k, ()))
               for k in SUBJECT_KEYS if k in entry and entry[k] != "*")


def specificity(entry: dict) -> int:
    """How many subject keys an entry names (for "most specific wins")."""
    return sum(1 for k in SUBJECT_KEYS if k in entry and entry[k] != "*")
