"""Export cache: ONNX / OpenVINO IR exports made once per (model content, exporter, options).

Layout, next to the zoo (``<root>`` = ``$HFMATRIX_CACHE``, else ``platformdirs.user_cache_dir("hfmatrix")``)::

    <root>/exports/<kind>/<key>/                    a complete export (only ever created by os.rename)
    <root>/exports/<kind>/<key>/hfmatrix-export.json  written before the rename: key inputs, timings
    <root>/exports/<kind>/<key>.unsupported.json    a typed refusal raised by ``make``, cached as a verdict
    <root>/exports/<kind>/<key>.failed.json         an export that crashed (a defect), cached too
    <root>/exports/<kind>/<key>.lock                filelock: one exporter per key across processes
    <root>/exports/<kind>/.tmp-<key>-<pid>-<rnd>    an export in progress (or left by a killed one)

``key`` hashes the model folder's content (sha256 of every file, never a manifest's word for it),
the exporter/library versions, the options and FORMAT_VERSION. A refusal is cached only when ``make``
raises a typed one (an ``Unsupported``: the EP reported ops it cannot place, ...), never from an error
message's words; it carries ``parts["versions"]`` and is retried when they differ. Any other error is a
failure (cached as ``<key>.failed.json``).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import progress
from .skips import Unsupported

#: bump when the cache layout or what goes into the key changes
FORMAT_VERSION = "1"
META = "hfmatrix-export.json"
#: every export this process made (not found in the cache): lets self-tests count real exports
EXPORTED: list[Path] = []


class ExportFailed(RuntimeError):
    """A cached export failure (a defect, not a refusal): a test failure, never a skip."""


def cache_root() -> Path:
    if os.environ.get("HFMATRIX_CACHE"):
        return Path(os.environ["HFMATRIX_CACHE"])
    import platformdirs

    return Path(platformdirs.user_cache_dir("hfmatrix"))


def exports_root() -> Path:
    return cache_root() / "exports"


_DIGESTS: dict[tuple, str] = {}


def folder_digest(model_dir: Path) -> str:
    """sha256 over every file's name and bytes. Never trusts a manifest: a copy of a zoo folder with a
    corrupted weight file keeps the manifest, and must not reuse the good folder's export (the
    negative suite does exactly that). Memoised per process on (path, size, mtime) of every file."""
    model_dir = Path(model_dir).resolve()
    files = sorted(p for p in model_dir.rglob("*") if p.is_file() and not p.name.startswith("."))
    stamp = tuple((str(p.relative_to(model_dir)), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    memo = (str(model_dir), stamp)
    if memo in _DIGESTS:
        return _DIGESTS[memo]
    h = hashlib.sha256()
    for p in files:
        h.update(str(p.relative_to(model_dir)).encode() + b"\0")
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        h.update(b"\0")
    _DIGESTS[memo] = h.hexdigest()
    return _DIGESTS[memo]


def export_key(parts: dict[str, Any]) -> str:
    blob = json.dumps({"format": FORMAT_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


@dataclass
class Export:
    kind: str
    key: str
    path: Path
    cached: bool  # found in the cache (no export in this call)
    seconds: float  # how long the export took when it was made
    meta: dict[str, Any] = field(default_factory=dict)

    def evidence(self) -> dict[str, Any]:
        return {"kind": self.kind, "key": self.key, "path": str(self.path), "cached": self.cached,
                "export_seconds": round(self.seconds, 3)}


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:6]}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


def typical_seconds(base: Path, parts: dict[str, Any]) -> float | None:
    """How long an export like this one took here (the same model's, else the same model type's, median):
    the ETA of a new export's progress bar. None when no such export is cached."""
    metas = [json.loads(m.read_text()) for m in base.glob(f"*/{META}")]
    for same in ("model", "model_type"):
        took = sorted(m["export_seconds"] for m in metas if same in parts and m.get("parts", {}).get(same) == parts[same])
        if took:
            return took[len(took) // 2]
    return None


def _cached_refusal(verdict: Path, parts: dict[str, Any]) -> Unsupported | None:
    """The cached typed refusal, if it was made under the same library versions (else None: retry)."""
    if not verdict.is_file():
        return None
    data = json.loads(verdict.read_text())
    if data.get("versions") != parts.get("versions"):  # a verdict of other versions says nothing about these
        verdict.unlink()
        return None
    return Unsupported(f"{data['message']} [cached verdict under {data.get('versions')}]")


def cached_export(kind: str, parts: dict[str, Any], make: Callable[[Path], None], *,
                  cache_failures: bool = True, lock_timeout: float = 1800.0) -> Export:
    """Return the export for ``parts`` under ``kind``, making it with ``make(tmp_dir)`` at most once.

    ``parts`` must hold everything that shapes the files (model digest, versions, options).
    Raises Unsupported for a typed refusal ``make`` raised, fresh or cached (with the versions it was
    made under, retried when they change). Any other export
    error propagates; with ``cache_failures`` its message is kept (``<key>.failed.json``) and later
    calls raise ExportFailed with it instead of spending minutes failing again. The key holds the
    library versions, so an upgrade retries; delete the file to retry by hand.
    """
    from filelock import FileLock

    key = export_key(parts)
    base = exports_root() / kind
    base.mkdir(parents=True, exist_ok=True)
    final, verdict, failed = base / key, base / f"{key}.unsupported.json", base / f"{key}.failed.json"
    with FileLock(str(base / f"{key}.lock"), timeout=lock_timeout):
        if (final / META).is_file():
            meta = json.loads((final / META).read_text())
            return Export(kind, key, final, True, float(meta.get("export_seconds", 0.0)), meta)
        refused = _cached_refusal(verdict, parts)
        if refused is not None:
            raise refused
        if failed.is_file():
            raise ExportFailed(json.loads(failed.read_text())["message"] + f" [cached failure: {failed}]")
        for stale in base.glob(f".tmp-{key}-*"):  # left by a killed exporter; we hold the lock
            shutil.rmtree(stale, ignore_errors=True)
        tmp = base / f".tmp-{key}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        tmp.mkdir()
        t0 = time.perf_counter()
        try:
            with progress.step(f"export {kind} {parts.get('model_type', '')}".rstrip(), typical_seconds(base, parts)):
                make(tmp)
        except Unsupported as exc:  # a typed refusal, raised where it is known
            shutil.rmtree(tmp, ignore_errors=True)
            _write_json_atomic(verdict, {"message": exc.reason, "parts": parts, "versions": parts.get("versions"),
                                         "error": type(exc).__name__, "created": time.time(),
                                         "evidence": getattr(exc, "evidence", None) or getattr(exc, "placement", None)})
            raise
        except Exception as exc:  # noqa: BLE001 - a defect: re-raised, its message cached
            shutil.rmtree(tmp, ignore_errors=True)
            if cache_failures and not isinstance(exc, (OSError, MemoryError)):  # a defect, not the machine
                _write_json_atomic(failed, {"message": f"{type(exc).__name__}: {exc}"[:4000], "parts": parts,
                                            "created": time.time()})
            raise
        seconds = time.perf_counter() - t0
        meta = {"kind": kind, "key": key, "parts": parts, "export_seconds": seconds, "created": time.time()}
        _write_json_atomic(tmp / META, meta)
        os.rename(tmp, final)
        EXPORTED.append(final)
        return Export(kind, key, final, False, seconds, meta)


from .zoo.materialize import dist_versions  # noqa: E402, F401  (re-exported: backends call exports.dist_versions)


class SourceRejected(ValueError):
    """The model folder is not something we export: unsafe weights, or weights that do not fit the model."""


def check_policy(model_dir: Path) -> None:
    """hfmatrix.safeload's policy (safetensors only, no remote code): raises UnsafeWeights / RemoteCodeRefused."""
    from .safeload import pretrained_kwargs

    pretrained_kwargs(Path(model_dir))


def refuse_opt_ins(model_dir: Path, *, allow_pickle: bool = False, trust_remote_code: bool = False) -> None:
    """The exported backends keep the strict policy whatever the run opts in to: the exporters load
    the folder their own way, and neither a pickle checkpoint nor a folder's own code is routed
    through them. An opt-in that would matter here is unsupported-by-backend (the torch backend
    honours it), never a silent strict refusal that reads as "you did not opt in"."""
    from .safeload import check_weights_format, remote_code_files

    model_dir = Path(model_dir)
    if trust_remote_code and remote_code_files(model_dir):
        raise Unsupported(f"{model_dir} runs its own code (auto_map); --hfm-trust-remote-code is honoured by the torch "
                          "backend only, the exported backends never run a folder's code")
    if allow_pickle and check_weights_format(model_dir, allow_pickle=True) == "pickle":
        raise Unsupported(f"{model_dir} has pickle-only weights; --hfm-allow-pickle is honoured by the torch backend "
                          "only, the exported backends export from safetensors")


def check_source(model_dir: Path, auto_class: str) -> dict[str, Any]:
    """What the torch backend enforces, before an exporter loads the folder its own way: safetensors
    only, no remote code (hfmatrix.safeload), and no missing/unexpected/mismatched weights (an
    exporter would otherwise export freshly initialised tensors without a word)."""
    import transformers

    from .safeload import pretrained_kwargs

    kwargs = pretrained_kwargs(Path(model_dir))
    kwargs.pop("weights_only", None)
    from .zoo.materialize import loading_problems

    model, info = getattr(transformers, auto_class).from_pretrained(str(model_dir), output_loading_info=True, **kwargs)
    bad = loading_problems(model, info)  # a checkpoint buffer the model registers (position_ids) is no loss
    del model
    if bad:
        raise SourceRejected(f"{model_dir}: weights do not match {auto_class}: {bad}")
    return {"weights": "safetensors", "loading_info": "clean"}
