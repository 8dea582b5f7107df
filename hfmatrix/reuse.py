"""Verdict reuse: a cell whose inputs did not change keeps its stored verdict instead of running again.

**Key.** Each cell's verdict is stored under a sha256 of everything it was computed from:

* the model folder (``exports.folder_digest``: every file's name and bytes) and the zoo spec (its repr);
  an export is a function of the folder, the exporter's code and the env's packages, all in the key;
* the env's installed package set (sorted (name, version) of every distribution) and the Python version;
* the check's code: the suite module's source and every ``hfmatrix.*`` module it imports, transitively
  (a static ``ast`` walk, function-level imports included), from the suite, from ``hfmatrix.plugin`` (the
  fixtures) and from the target backend's adapter (imported by name at run time); the data files those
  modules name (``*.toml`` / ``*.json`` beside them) whole, except the three read per entry below;
  local pytest plugins (conftest files, ``-p`` modules outside site-packages: a planted defect is one);
* the folders and specs of the other zoo models the suite names (a workflow's second model);
* the data entries the cell used: its tolerance entry (suites that call ``tolerance(``), its known-bug
  entries (the xfail / skip / hfm_known_bug / timeout marks, which carry the whole entry), its second-axis
  parameter (a negative-catalogue case, with its expectations);
* the target (backend, device, requested and effective precision), the hardware fingerprint
  (``hfmatrix.perf.baselines.fingerprint``: CPU, ISA, accelerators, memory) and the options that change
  what a check does (--hfm-localize, --hfm-allow-pickle, --hfm-trust-remote-code for this model).

A harness change thus reruns the checks whose import closure it touches; a model's config reruns that
model's cells; a tolerance or known-bug edit reruns the cells that read that entry.

**What is reused.** ``passed``, ``failed`` (the check's own assertion in the call phase), ``xfailed``,
``xpassed`` and skips of kind unsupported-by-backend / known-bug: verdicts that are a function of the key.
Never reused: ``error`` (setup/teardown: an export or load that failed for a reason the key may not
cover, e.g. a full disk), ``crashed`` and ``timeout`` (a machine's load, a native fault: not a property of
the cell), skips of kind hardware-absent / dependency-missing / no-baseline (the machine's state at that
moment), and every perf, memory and serving verdict (``NEVER_SUITES``, ``hfm_perf`` marks: measurements of
a moment, not of the content). A re-run of failing cells (--hfm-rerun-failures) never reads the store, so
a flaky failure is recomputed there. ``--hfm-no-reuse`` recomputes (and refreshes the store); ``CI=true``
(any CI value but "false"/"0") turns reading off: CI always recomputes.

**Store.** ``$HFMATRIX_VERDICTS`` or ``$HFMATRIX_CACHE/verdicts``: ``<key[:2]>/<key>.json``, one file
per cell, written atomically (``records.write_json_atomic``) by the process that writes the records, so a
killed run keeps the verdicts it finished and concurrent sessions never see half a file. An entry that
does not parse, names another key or holds a verdict that may not be reused is ignored (recomputed).
"""
from __future__ import annotations

import ast
import hashlib
import json
import os
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

from . import skips
from .records import selectable, write_json_atomic

SCHEMA = 1
STORE_ENV = "HFMATRIX_VERDICTS"
PROP_KEY = "hfm_reuse_key"      # user property: the key a computed cell is stored under
PROP_REUSED = "hfm_reused"      # user property: the stored verdict a reused cell reports
REUSABLE = ("passed", "failed", "xfailed", "xpassed", "skipped")
REUSABLE_SKIPS = (skips.UNSUPPORTED, skips.KNOWN_BUG)
NEVER_SUITES = ("test_perf", "test_memory", "test_serving", "test_endpoint")
PER_ENTRY_DATA = ("tolerances.toml", "known_failures.toml", "negative_cases.toml", "models.toml")
KEY_MARKS = ("xfail", "skip", "skipif", "hfm_known_bug", "timeout")
PKG_ROOT = Path(__file__).resolve().parent
FIXTURE_ROOTS = ("hfmatrix.plugin", "hfmatrix.perf.plugin")  # every check's fixtures (with the target's adapter)


def reading(config) -> bool:
    """Stored verdicts are read: not with --hfm-no-reuse, not in CI, not in a re-run of failing cells,
    not against an external endpoint (a server's state is no content)."""
    ci = os.environ.get("CI", "").strip().lower()
    return not (config.getoption("--hfm-no-reuse") or (ci and ci not in ("false", "0"))
                or config.getoption("--hfm-attempt") or config.getoption("--hfm-endpoint"))


def may_reuse(record: dict[str, Any]) -> bool:
    if record.get("outcome") not in REUSABLE or record.get("attempt"):
        return False
    return record["outcome"] != "skipped" or record.get("skip_kind") in REUSABLE_SKIPS


# ----------------------------------------------------------------------------- store
def store_dir() -> Path:
    if os.environ.get(STORE_ENV):
        return Path(os.environ[STORE_ENV])
    from .exports import cache_root
    return Path(cache_root()) / "verdicts"


def _path(key: str) -> Path:
    return store_dir() / key[:2] / f"{key}.json"


def load(key: str) -> dict[str, Any] | None:
    """The stored record for key, or None: absent, unreadable, partial, another key's, or not reusable."""
    try:
        data = json.loads(_path(key).read_text(encoding="utf-8"))
        record = data["record"]
        ok = (data.get("schema") == SCHEMA and data.get("key") == key and isinstance(record, dict)
              and isinstance(record.get("run_id"), str) and isinstance(record.get("message"), str)
              and isinstance(record.get("measures"), dict) and may_reuse(record))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return record if ok else None


def save(key: str, record: dict[str, Any]) -> None:
    if not may_reuse(record) or record.get("reused_from"):
        return
    path = _path(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, {"schema": SCHEMA, "key": key, "record": record})
    except OSError:  # a read-only or full cache costs the reuse, never the run
        pass


# ----------------------------------------------------------------------------- key
@lru_cache(maxsize=1)
def packages_digest() -> str:
    from importlib import metadata
    pairs = sorted({((d.metadata["Name"] or "").lower(), d.version) for d in metadata.distributions()})
    return _sha(json.dumps([pairs, sys.version]))


@lru_cache(maxsize=1)
def hardware_digest() -> str:
    from .perf.baselines import fingerprint
    return fingerprint()["hash"]


def _module_file(name: str) -> Path | None:
    rel = Path(*name.split(".")[1:])
    for p in ((PKG_ROOT / rel).with_suffix(".py") if rel.parts else None, PKG_ROOT / rel / "__init__.py"):
        if p is not None and p.is_file():
            return p
    return None


@lru_cache(maxsize=None)
def _scan(path: str, stamp: tuple[int, int]) -> tuple[tuple, tuple[str, ...]]:
    """One source file's imports ((level, module, names) ; level -1 = plain ``import``) and the string
    constants that may name a module or a data file; parsed once per file version."""
    imports, strings = [], []
    for node in ast.walk(ast.parse(Path(path).read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            imports.append((-1, "", tuple(a.name for a in node.names)))
        elif isinstance(node, ast.ImportFrom):
            imports.append((node.level, node.module or "", tuple(a.name for a in node.names)))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and (node.value.startswith("hfmatrix.") or node.value.endswith((".toml", ".json"))):
            strings.append(node.value)
    return tuple(imports), tuple(strings)


def _scanned(path: Path) -> tuple[tuple, tuple[str, ...]]:
    st = path.stat()
    return _scan(str(path), (st.st_mtime_ns, st.st_size))


def _imports(path: Path, name: str) -> set[str]:
    """hfmatrix.* modules one module imports (anywhere in it, or names as a string: a plugin list, a
    ``python -m`` child, an ``import_module`` argument), with their parent packages."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    imports, strings = _scanned(path)
    for level, module, names in imports:
        if level < 0:
            found.update(names)
            continue
        base = module
        if level:
            parts = package.split(".")[:len(package.split(".")) - level + 1]
            base = ".".join(parts + ([module] if module else []))
        found.add(base)
        found.update(f"{base}.{n}" for n in names)
    # not the backend registry's "module:Class" (the target's adapter is a root of its own)
    found.update(v for v in strings if v.startswith("hfmatrix.") and ":" not in v)
    out = set()
    for mod in found:
        parts = mod.split(".")
        out.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return {m for m in out if m.split(".")[0] == "hfmatrix" and _module_file(m)}


@lru_cache(maxsize=None)
def closure(roots: tuple[str, ...]) -> tuple[tuple[str, Path], ...]:
    seen: dict[str, Path] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        path = _module_file(name)
        if name in seen or path is None:
            continue
        seen[name] = path
        todo.extend(_imports(path, name) - set(seen))
    return tuple(sorted(seen.items()))


@lru_cache(maxsize=None)
def code_digest(suite_file: str, suite_module: str, roots: tuple[str, ...]) -> str:
    """The suite file, its hfmatrix import closure (with the roots') and the data files those name."""
    h = hashlib.sha256(Path(suite_file).read_bytes())
    roots = tuple(sorted({*roots, *_imports(Path(suite_file), suite_module)}))
    sources = [Path(suite_file)] + [p for _, p in closure(roots)]
    for name, path in closure(roots):
        h.update(name.encode() + b"\0" + path.read_bytes())
    for data in sorted(_data_files(sources)):
        h.update(str(data.relative_to(PKG_ROOT)).encode() + b"\0" + data.read_bytes())
    return h.hexdigest()


def _data_files(sources: list[Path]) -> set[Path]:
    out = set()
    for src in sources:
        for v in _scanned(src)[1]:
            if v.endswith((".toml", ".json")) and "/" not in v and v not in PER_ENTRY_DATA:
                out.update(p.resolve() for p in (src.parent / v, PKG_ROOT / v) if p.is_file())
    return {p for p in out if PKG_ROOT in p.parents}


def local_plugins_digest(config) -> str:
    """Sources of the pytest plugins loaded from outside installed packages and outside hfmatrix
    (conftest.py files, ``-p`` modules on PYTHONPATH): they can change what any check does."""
    h = hashlib.sha256()
    files = set()
    for plugin in config.pluginmanager.get_plugins():
        f = getattr(plugin, "__file__", None)
        if not f or "site-packages" in f or "dist-packages" in f:
            continue
        p = Path(f).resolve()
        if PKG_ROOT not in p.parents and p.suffix == ".py" and p.is_file():
            files.add(p)
    for p in sorted(files):
        h.update(str(p).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _tolerance_entry(suite_file: str, case) -> Any:
    if "tolerance(" not in _source(suite_file):
        return None
    from .compare import tolerance
    t = case.target
    try:
        return tolerance(case.spec.id, t.backend, t.device, t.effective).as_dict()
    except LookupError as exc:
        return str(exc)


@lru_cache(maxsize=None)
def _source(path: str) -> str:
    return Path(path).read_text(encoding="utf-8")


def _param_repr(value: Any) -> str:
    """A second-axis parameter as the key sees it: a function (a workflow) by its qualified name, its code
    being in the key already; repr() would carry its address, a new key in every process."""
    if callable(value) and hasattr(value, "__qualname__") and hasattr(value, "__module__"):
        return f"{value.__module__}.{value.__qualname__}"
    return repr(value)


@lru_cache(maxsize=None)
def _strings(path: str) -> frozenset[str]:
    return frozenset(n.value for n in ast.walk(ast.parse(_source(path)))
                     if isinstance(n, ast.Constant) and isinstance(n.value, str))


def _other_models(suite_file: str, own: str) -> dict[str, Any]:
    """The folders and specs of the zoo models the suite names besides the cell's own (a workflow's second
    model, e.g. the classifier after whisper): a change to one reruns the cells that use it."""
    from .exports import folder_digest
    from .zoo import load_specs, materialize
    specs = load_specs()
    out: dict[str, Any] = {}
    for model in sorted((_strings(suite_file) & set(specs)) - {own}):
        try:
            out[model] = [folder_digest(materialize(specs[model])), repr(specs[model])]
        except Exception as exc:  # noqa: BLE001 - not materializable here: the cell says why when it runs
            out[model] = f"unavailable: {type(exc).__name__}"
    return out


def eligible(item) -> bool:
    from .perf.plugin import MARK
    return Path(str(item.fspath)).stem not in NEVER_SUITES and item.get_closest_marker(MARK) is None


def cell_key(item, case) -> str | None:
    """The content key of one cell, or None when it cannot be had (the target is absent here, the model
    cannot be materialized): then the cell simply runs."""
    from .compare import known_entry
    from .exports import folder_digest
    from .plugin import check_available, policy_options
    from .zoo import materialize
    config, t = item.config, case.target
    try:
        check_available(t)
        model = folder_digest(materialize(case.spec))
    except Exception:  # noqa: BLE001 - the test itself reports why, with its typed skip or failure
        return None
    suite = str(Path(str(item.fspath)).resolve())
    backend_module = __import__("hfmatrix.backends", fromlist=["REGISTRY"]).REGISTRY[t.backend].split(":")[0]
    roots = (*FIXTURE_ROOTS, backend_module)
    params = getattr(item, "callspec", None)
    parts = {
        "schema": SCHEMA, "cell": f"{Path(suite).stem}::{selectable(item.nodeid).split('::', 1)[1]}", "model": model, "spec": repr(case.spec),
        "target": [t.backend, t.device, t.precision, t.effective], "packages": packages_digest(),
        "hardware": hardware_digest(), "code": code_digest(suite, item.module.__name__, roots),
        "plugins": local_plugins_digest(config), "tolerance": _tolerance_entry(suite, case),
        # the fixtures turn a known bug of the intact model's load into a known-bug skip of any check
        "load_bug": known_entry("load_session", case.spec.id, t.backend, t.device, t.effective),
        "marks": [[m.name, repr(m.args), repr(sorted(m.kwargs.items()))]
                  for m in item.iter_markers() if m.name in KEY_MARKS],
        "params": {k: _param_repr(v) for k, v in sorted(params.params.items()) if k != "hfm_case"} if params else {},
        "other_models": _other_models(suite, case.spec.id),
        "options": [bool(config.getoption("--hfm-localize")), policy_options(case)],
    }
    return _sha(json.dumps(parts, sort_keys=True, default=repr))


# ----------------------------------------------------------------------------- the protocol
_STORED = None  # pytest.StashKey, made on first use (pytest is imported lazily here)


def _stash_key():
    global _STORED
    if _STORED is None:
        import pytest
        _STORED = pytest.StashKey[dict]()
    return _STORED


def prepare(item, case) -> None:
    """Key the cell, mark it with its key (the writer stores its verdict under it) and fetch a stored
    verdict that still holds. Any failure to compute the key costs the reuse, never the cell."""
    if case is None or not eligible(item):
        return
    try:
        key = cell_key(item, case)
    except Exception:  # noqa: BLE001 - e.g. an unreadable source file: the cell runs as if never stored
        return
    if key is None:
        return
    item.user_properties.append((PROP_KEY, key))
    stored = load(key) if reading(item.config) else None
    if stored is not None:
        item.stash[_stash_key()] = stored


def run_reused(item, nextitem) -> bool | None:
    """pytest_runtest_protocol for a prepared cell: True when its stored verdict stood in for running it."""
    stored = item.stash.get(_stash_key(), None)
    if stored is None:
        return None
    emit(item, nextitem, stored)
    return True


def emit(item, nextitem, rec: dict[str, Any]) -> None:
    """The setup/call/teardown reports of a stored verdict, through the hooks (so xdist forwards them to
    the controller, whose Recorder writes the record), then the teardown pytest owes the next item."""
    import pytest
    from .plugin import PROP_MEASURE
    ihook, outcome = item.ihook, rec["outcome"]
    ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    props = [*item.user_properties, (PROP_MEASURE, {**rec["measures"], "evidence": rec.get("evidence") or {}}),
             ("hfm_versions", rec.get("versions") or {}), ("hfm_worker", os.environ.get("PYTEST_XDIST_WORKER", "main")),
             (PROP_REUSED, {k: rec.get(k) for k in ("run_id", "outcome", "message", "skip_kind", "timestamp")})]
    path, lineno, _ = item.location
    kind = f"[{rec.get('skip_kind')}] " if rec.get("skip_kind") else ""
    phases = {"skipped": [("setup", "skipped", (path, (lineno or 0) + 1, f"Skipped: {kind}{rec['message']}"))],
              "failed": [("setup", "passed", None), ("call", "failed", rec["message"])],
              "xpassed": [("setup", "passed", None), ("call", "failed", rec["message"])],
              }.get(outcome, [("setup", "passed", None), ("call", "skipped" if outcome == "xfailed" else "passed", None)])
    note = f"reused: the verdict of run {rec['run_id']} (--hfm-no-reuse recomputes)"
    for when, result, longrepr in [*phases, ("teardown", "passed", None)]:
        rep = pytest.TestReport(item.nodeid, item.location, {k: 1 for k in item.keywords}, result, longrepr, when,
                                [("hfmatrix", note)] if when == "call" or result == "skipped" else [],
                                0.0, 0.0, 0.0, user_properties=props)
        if outcome == "xfailed" and when == "call":
            rep.wasxfail = f"{kind}{rec['message']}"
        ihook.pytest_runtest_logreport(report=rep)
    item.session._setupstate.teardown_exact(nextitem)
    ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
