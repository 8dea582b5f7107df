"""Library-version conditions in the data files: a known bug or a bad-input expectation that holds for
some releases only names them (``transformers = ">=5"``), so the same entry gives the right verdict in
an env of another version (the version-axis sessions, a user's own env) instead of being keyed by a
session name. Keys are distribution names; values are PEP 440 specifier sets."""
from __future__ import annotations

from functools import lru_cache
from importlib import metadata

# the libraries an entry may be conditioned on (each a distribution name)
VERSION_KEYS = ("transformers", "torch", "optimum", "optimum-intel", "optimum-onnx", "openvino", "onnxruntime",
                "safetensors", "tokenizers")


@lru_cache(maxsize=None)
def installed(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


@lru_cache(maxsize=None)
def satisfies(dist: str, spec: str) -> bool:
    """True when ``dist`` is installed at a version in ``spec`` (local version labels ignored)."""
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version
    version = installed(dist)
    if version is None:
        return False
    return SpecifierSet(spec).contains(Version(Version(version).public), prereleases=True)


def conditions(entry: dict) -> dict[str, str]:
    """The version conditions an entry states; a malformed specifier is an error in the data file."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    found = {k: str(entry[k]) for k in VERSION_KEYS if k in entry}
    for key, spec in found.items():
        try:
            SpecifierSet(spec)
        except InvalidSpecifier:
            raise ValueError(f"{key} = {spec!r} is not a version specifier (e.g. '>=5', '<4.58')") from None
    return found


def holds(entry: dict) -> bool:
    return all(satisfies(k, v) for k, v in conditions(entry).items())
