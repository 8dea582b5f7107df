"""Turn a ModelSpec into a local HF model folder, offline, content-addressed and safe to share.

Cache layout (``<cache>`` = the ``cache_dir`` argument, else ``$HFMATRIX_CACHE/zoo``, else
``platformdirs.user_cache_dir("hfmatrix")/zoo``)::

    <cache>/<id>-<key>/                 a complete entry (only ever created by os.rename)
    <cache>/<id>-<key>/hfmatrix-manifest.json   written last: files + sha256, versions, spec
    <cache>/<id>-<key>.lock             filelock: one builder per entry across processes
    <cache>/.tmp-<id>-<key>-<pid>-<rnd> a build in progress (or left by a killed builder)

``key`` hashes the spec digest, the library versions that shape the files (transformers,
tokenizers, torch, safetensors), BUILD_VERSION and the build code (this file and
tiny_tokenizers.py), so every backend env gets its own copy and a recipe edit never reuses an old
build. Weight init differs between transformers versions, so the same spec gives different
weights per env: compare outputs against a reference computed in the same env only.
A temp dir is never read; stale ones are removed by the next builder holding the lock.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import socket
import sys
import time
import uuid
from importlib import metadata
from pathlib import Path
from typing import Any

from ..skips import DependencyMissing
from .spec import ModelSpec

#: bump when the build recipe changes in a way the spec digest cannot see
BUILD_VERSION = "1"
MANIFEST = "hfmatrix-manifest.json"
_LIBS = ("transformers", "tokenizers", "torch", "safetensors")
#: entries this process built (not found in the cache): lets the self-tests count real builds
BUILT: list[Path] = []


def dist_versions(*dists: str) -> dict[str, str]:
    """Installed version of each distribution, "absent" where it is not installed (one helper for the
    zoo's cache key, the export cache's key and the backends' versions)."""
    out = {}
    for dist in dists:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "absent"
    return out


def versions() -> dict[str, str]:
    return dist_versions(*_LIBS)


def cache_root(cache_dir: Path | str | None = None) -> Path:
    if cache_dir:
        return Path(cache_dir)
    if os.environ.get("HFMATRIX_CACHE"):
        return Path(os.environ["HFMATRIX_CACHE"]) / "zoo"
    import platformdirs

    return Path(platformdirs.user_cache_dir("hfmatrix")) / "zoo"


def _recipe_digest() -> str:
    """The build code itself is part of the key: editing the recipe or the tokenizer corpus can never
    serve a folder built by the old code (the tiny zoo rebuilds in seconds)."""
    h = hashlib.sha256()
    for name in ("materialize.py", "tiny_tokenizers.py"):
        h.update((Path(__file__).parent / name).read_bytes())
    return h.hexdigest()[:16]


def entry_name(spec: ModelSpec) -> str:
    from . import auto_specs
    recipe = auto_specs.recipe_digest() if auto_specs.is_auto(spec) else _recipe_digest()
    blob = json.dumps({"spec": spec.digest(), "versions": versions(), "build": BUILD_VERSION,
                       "recipe": recipe}, sort_keys=True)
    return f"{spec.id}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def materialize(spec: ModelSpec, cache_dir: Path | str | None = None) -> Path:
    """A local folder that ``from_pretrained(path)`` loads for ``spec``; built at most once per key.

    Raises DependencyMissing (a typed skip) when a package/hub source is not available here.
    """
    kind, _, ref = spec.source.partition(":")
    if kind in ("random", "autozoo"):  # autozoo: built by hfmatrix.zoo.auto_specs
        return _cached_build(spec, cache_root(cache_dir))
    if kind == "package":
        return _from_package(ref)
    if kind == "path":
        return _check_folder(Path(ref).expanduser(), f"{spec.id}: path {ref}")
    if kind == "hub":
        return _from_hub(ref)
    raise ValueError(f"zoo entry {spec.id!r}: unknown source {spec.source!r} "
                     "(expected random, autozoo:<model type>, package:<module>, path:<dir>, hub:<repo id>)")


# ----------------------------------------------------------------------------------- cache

def is_complete(path: Path) -> bool:
    """An entry counts only with its manifest and every listed file at the recorded size."""
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        return all((path / f).stat().st_size == meta["size"] for f, meta in manifest["files"].items())
    except (OSError, ValueError, KeyError, TypeError):
        return False


def verify(path: Path) -> list[str]:
    """Full check of an entry against its manifest (sha256 of every file); returns the problems."""
    try:
        manifest = json.loads((Path(path) / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        return [f"manifest unreadable: {exc}"]
    problems = []
    for name, meta in manifest["files"].items():
        f = Path(path) / name
        if not f.is_file():
            problems.append(f"{name}: missing")
        elif _sha256(f) != meta["sha256"]:
            problems.append(f"{name}: sha256 mismatch")
    extra = {p.name for p in Path(path).iterdir()} - set(manifest["files"]) - {MANIFEST}
    problems += [f"{name}: not in manifest" for name in sorted(extra)]
    return problems


def _cached_build(spec: ModelSpec, root: Path) -> Path:
    from filelock import FileLock

    name = entry_name(spec)
    final = root / name
    if is_complete(final):  # fast path: no lock for a finished entry
        return final
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f"{name}.lock")):
        if is_complete(final):  # another process built it while we waited
            return final
        # we hold the lock: every temp dir of this entry belongs to a dead builder
        for stale in root.glob(f".tmp-{name}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        if final.exists():  # damaged (manifest or a file gone): move aside, then rebuild
            trash = root / f".tmp-{name}-damaged-{uuid.uuid4().hex[:8]}"
            os.rename(final, trash)
            shutil.rmtree(trash, ignore_errors=True)
        tmp = root / f".tmp-{name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            build(spec, tmp)
            _write_manifest(spec, tmp)
            os.rename(tmp, final)  # atomic on one filesystem: the entry appears complete or not at all
            BUILT.append(final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_manifest(spec: ModelSpec, folder: Path) -> None:
    files = {}
    for f in sorted(folder.iterdir()):
        if not f.is_file():
            raise RuntimeError(f"{spec.id}: unexpected non-file {f.name} in the built folder")
        files[f.name] = {"size": f.stat().st_size, "sha256": _sha256(f)}
    manifest = {"id": spec.id, "spec_digest": spec.digest(), "build": BUILD_VERSION, "recipe": _recipe_digest(),
                "versions": versions(),
                "builder": {"pid": os.getpid(), "host": socket.gethostname()},
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "files": files}
    tmp = folder / (MANIFEST + ".part")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    os.replace(tmp, folder / MANIFEST)


# ----------------------------------------------------------------------------------- build

def build(spec: ModelSpec, out: Path) -> None:
    """Seeded random weights + local tokenizer/processor, saved as safetensors into ``out``."""
    from transformers.utils import logging as hf_logging

    from . import auto_specs
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # "Loading weights" bars for every tiny model are noise in test logs
    try:
        (auto_specs.build if auto_specs.is_auto(spec) else _build)(spec, out)
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def build_model(spec: ModelSpec):
    """The seeded random model of a "random" spec, in memory (what materialize saves)."""
    import torch
    import transformers

    config = transformers.AutoConfig.for_model(spec.model_type, **spec.config)
    auto = getattr(transformers, spec.auto_class)
    torch.manual_seed(spec.seed)
    model = auto.from_config(config)
    model.eval()
    return model


def _build(spec: ModelSpec, out: Path) -> None:
    from .tiny_tokenizers import build as build_tokenizer

    model = build_model(spec)
    config = model.config

    tokenizer = None
    if spec.tokenizer:
        tokenizer = build_tokenizer(spec.tokenizer, _text_vocab_size(config))
        _check_special_ids(spec, config, tokenizer)
    processor = _build_processor(spec.processor, tokenizer) if spec.processor else None

    save_kwargs = {}
    if "safe_serialization" in inspect.signature(model.save_pretrained).parameters:
        save_kwargs["safe_serialization"] = True  # the default; 5.x dropped the argument (always safetensors)
    model.save_pretrained(out, **save_kwargs)
    if processor is not None:
        processor.save_pretrained(out)  # a ProcessorMixin saves its tokenizer too
    if tokenizer is not None and not _is_processor_mixin(processor):
        tokenizer.save_pretrained(out)
    if any(out.glob("*.bin")) or not (out / "model.safetensors").is_file():
        raise RuntimeError(f"{spec.id}: expected model.safetensors only, got {sorted(p.name for p in out.iterdir())}")
    _check_reload(spec, out, model)


def _text_vocab_size(config) -> int:
    text = getattr(config, "text_config", None) or config
    return int(getattr(text, "vocab_size", None) or getattr(config, "vocab_size"))


def _check_special_ids(spec: ModelSpec, config, tokenizer) -> None:
    """The ids models.toml states must be the trained tokenizer's ids, and inside the vocab."""
    vocab = _text_vocab_size(config)
    configs = [config] + [c for c in (getattr(config, "text_config", None),) if c is not None]
    roles = {"pad_token_id": "pad_token", "bos_token_id": "bos_token", "eos_token_id": "eos_token"}
    for cfg in configs:
        for key, role in roles.items():
            value = getattr(cfg, key, None)
            if value is None or getattr(tokenizer, role, None) is None:
                continue
            tid = tokenizer.convert_tokens_to_ids(getattr(tokenizer, role))
            if value != tid:
                raise ValueError(f"zoo entry {spec.id!r}: config {key}={value} but the tokenizer's "
                                 f"{role} {getattr(tokenizer, role)!r} has id {tid}")
    for key in ("decoder_start_token_id", "image_token_index", "image_token_id"):
        value = getattr(config, key, None)
        if isinstance(value, int) and not 0 <= value < vocab:
            raise ValueError(f"zoo entry {spec.id!r}: {key}={value} outside vocab_size {vocab}")
    if len(tokenizer) > vocab:
        raise ValueError(f"zoo entry {spec.id!r}: tokenizer has {len(tokenizer)} tokens > vocab_size {vocab}")


def _is_processor_mixin(obj) -> bool:
    from transformers import ProcessorMixin

    return isinstance(obj, ProcessorMixin)


def _build_processor(cfg: dict[str, Any], tokenizer):
    import transformers

    cfg = dict(cfg)
    cls = getattr(transformers, cfg.pop("class"))
    kwargs = {k: _build_processor(v, tokenizer) if isinstance(v, dict) and "class" in v else v
              for k, v in cfg.items()}
    if issubclass(cls, transformers.ProcessorMixin) and tokenizer is not None:
        kwargs.setdefault("tokenizer", tokenizer)
    return cls(**kwargs)


def loading_problems(model, info: dict) -> dict:
    """Missing / unexpected / mismatched keys from ``from_pretrained(..., output_loading_info=True)``.

    An "unexpected" key naming a buffer the model itself registers (e.g. BERT's
    ``embeddings.position_ids``, which all-MiniLM-L6-v2's checkpoint carries) loses no data:
    transformers 5.3 reports it, 4.57 and 5.24 do not. Everything else counts.
    """
    buffers = {name for name, _ in model.named_buffers()}
    bad = {}
    for key in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        values = [v for v in (info.get(key) or ()) if not (key == "unexpected_keys" and v in buffers)]
        if values:
            bad[key] = sorted(map(str, values))
    return bad


def _check_reload(spec: ModelSpec, folder: Path, built) -> None:
    """Refuse to publish a folder the Auto classes cannot load back without missing/unexpected keys."""
    import torch
    import transformers

    auto = getattr(transformers, spec.auto_class)
    loaded, info = auto.from_pretrained(folder, output_loading_info=True)
    bad = loading_problems(loaded, info)
    if bad:
        raise RuntimeError(f"{spec.id}: reload through {spec.auto_class} is not clean: {bad}")
    ref = built.state_dict()
    for name, tensor in loaded.state_dict().items():
        if name in ref and not torch.equal(ref[name], tensor):
            raise RuntimeError(f"{spec.id}: reloaded weight {name} differs from the built one")


# ----------------------------------------------------------------------------------- other sources

def _check_folder(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DependencyMissing(f"{what}: no such folder")
    if not (path / "config.json").is_file():
        raise DependencyMissing(f"{what}: no config.json in {path}")
    if not any(path.glob("*.safetensors")):
        raise DependencyMissing(f"{what}: no *.safetensors weights in {path} (hfmatrix loads safetensors only)")
    return path


def _from_package(module: str) -> Path:
    import importlib

    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        dist = module.replace("_", "-")
        raise DependencyMissing(f"package {module!r} is not installed (pip install {dist}): {exc}") from None
    if hasattr(mod, "get_model_path"):
        path = Path(mod.get_model_path())
    else:
        path = Path(mod.__file__).parent
    folder = _check_folder(path, f"package {module}")
    if not (folder / "model.safetensors").is_file():
        raise DependencyMissing(f"package {module}: {folder} has no model.safetensors")
    return folder


def _hub_reachable(timeout: float = 2.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


def _from_hub(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise DependencyMissing(f"{repo_id}: huggingface_hub not installed") from None
    patterns = ["*.json", "*.safetensors", "*.txt", "*.model", "*.py", "*.jinja"]
    try:
        path = Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=True))
    except Exception:
        if not _hub_reachable():
            raise DependencyMissing(f"{repo_id}: not available offline (not in the local HF cache, hub unreachable)") from None
        try:
            path = Path(snapshot_download(repo_id, allow_patterns=patterns))
        except Exception as exc:
            raise DependencyMissing(f"{repo_id}: download failed: {type(exc).__name__}: {exc}") from None
    return _check_folder(path, f"hub {repo_id}")


# ``hfmatrix.zoo.materialize`` is both this module and the function: ``from hfmatrix.zoo import
# materialize`` then ``materialize(spec)`` and ``materialize.verify(path)`` / ``materialize.BUILT``
# both work, as does ``import hfmatrix.zoo.materialize as m`` (a plain function exported from the
# package would shadow the module there).
class _CallableModule(type(sys)):
    def __call__(self, spec: ModelSpec, cache_dir: Path | str | None = None) -> Path:
        return materialize(spec, cache_dir)


sys.modules[__name__].__class__ = _CallableModule
