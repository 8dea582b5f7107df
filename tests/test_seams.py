"""The seams hold: the shared suites, hfmatrix/memory.py and hfmatrix/perf/ use only the backend contract
(hfmatrix/backends/base.py through hfmatrix.backends): no import of a specific backend module, no
``torch.cuda`` attribute, no string literal naming a backend or one of its devices. A check that needs
something of one backend declares a capability (``pytest.mark.hfm_requires``) and asks the session.

The scan walks the AST: imports (absolute and relative, resolved against the file's package), attribute
chains, and string constants other than docstrings (prose may name backends; values may not).
"""
from __future__ import annotations

import ast
import importlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from hfmatrix import backends

ROOT = Path(__file__).resolve().parent.parent
SCANNED = {"hfmatrix.suites": sorted((ROOT / "hfmatrix" / "suites").glob("*.py")),
           "hfmatrix": [ROOT / "hfmatrix" / "memory.py"],
           "hfmatrix.perf": sorted((ROOT / "hfmatrix" / "perf").glob("*.py"))}
#: modules of hfmatrix.backends anyone may import: the registry and the contract
CONTRACT_MODULES = {"hfmatrix.backends", "hfmatrix.backends.base"}
#: the host every backend runs on (and the reference's device) is no backend's name
HOST = "cpu"


def backend_names() -> set[str]:
    """Every registered backend and every device one declares (the host excepted)."""
    names = set(backends.REGISTRY)
    for ref in backends.REGISTRY.values():
        module, attr = ref.split(":")
        names |= {d.lower() for d in getattr(importlib.import_module(module), attr).devices}
    return names - {HOST}


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    kind: str  # "import" | "torch.cuda" | "literal"
    what: str


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the constant nodes that are docstrings (module, class, function)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                found.add(id(first.value))
    return found


def _imported(node: ast.AST, package: str) -> list[str]:
    """Fully qualified modules (and from-imported names as module.name) an import node brings in."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        parts = package.split(".")
        parts = parts[:len(parts) - node.level + 1]
        base = ".".join(parts + ([node.module] if node.module else []))
    return [base] + [f"{base}.{a.name}" for a in node.names]


def _backend_module(name: str) -> bool:
    return name.startswith("hfmatrix.backends.") and ".".join(name.split(".")[:3]) not in CONTRACT_MODULES \
        and name.split(".")[2] in _backend_modules()


def _backend_modules() -> set[str]:
    """Submodules of hfmatrix.backends other than the contract (adapters and their helpers)."""
    folder = ROOT / "hfmatrix" / "backends"
    return {p.stem for p in folder.glob("*.py") if p.stem not in ("__init__", "base")}


def _cuda_access(node: ast.AST) -> bool:
    """torch.cuda / <anything>.torch.cuda / <anything>._torch.cuda, `import torch.cuda`, `from torch import cuda`."""
    if isinstance(node, ast.Attribute) and node.attr == "cuda":
        v = node.value
        name = v.id if isinstance(v, ast.Name) else v.attr if isinstance(v, ast.Attribute) else ""
        return name.lstrip("_") == "torch"
    if isinstance(node, ast.Import):
        return any(a.name == "torch.cuda" or a.name.startswith("torch.cuda.") for a in node.names)
    if isinstance(node, ast.ImportFrom):
        return (node.module or "").startswith("torch.cuda") or (
            node.module == "torch" and any(a.name == "cuda" for a in node.names))
    return False


def scan_source(source: str, path: str, package: str, names: set[str]) -> tuple[list[Violation], dict[str, int]]:
    """(violations, counts of what was looked at: imports, attributes, literals) of one file's source."""
    tree = ast.parse(source, filename=path)
    docs = _docstrings(tree)
    found: list[Violation] = []
    counts = {"imports": 0, "attributes": 0, "literals": 0}
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            counts["imports"] += 1
            found += [Violation(path, line, "import", m) for m in _imported(node, package) if _backend_module(m)]
        if isinstance(node, ast.Attribute):
            counts["attributes"] += 1
        if _cuda_access(node):
            found.append(Violation(path, line, "torch.cuda", ast.unparse(node)))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            counts["literals"] += 1
            if node.value.strip().lower() in names:
                found.append(Violation(path, line, "literal", repr(node.value)))
    return found, counts


def scan(files: dict[str, list[Path]], names: set[str]) -> tuple[list[Violation], dict[str, int]]:
    violations: list[Violation] = []
    totals = {"files": 0, "imports": 0, "attributes": 0, "literals": 0}
    for package, paths in files.items():
        for path in paths:
            found, counts = scan_source(path.read_text(), str(path.relative_to(ROOT)), package, names)
            violations += found
            totals["files"] += 1
            for k, v in counts.items():
                totals[k] += v
    return violations, totals


def test_names_cover_the_registry_and_devices():
    names = backend_names()
    assert set(backends.REGISTRY) <= names
    assert {"cuda", "rocm", "mps", "wasm", "webgpu", "webnn"} <= names
    assert HOST not in names


def test_suites_memory_and_perf_use_only_the_contract():
    violations, totals = scan(SCANNED, backend_names())
    assert totals["files"] >= 20 and all(totals[k] > 0 for k in ("imports", "attributes", "literals")), totals
    assert any(p.name == "memory.py" for p in SCANNED["hfmatrix"]) and SCANNED["hfmatrix.suites"] and SCANNED["hfmatrix.perf"]
    assert not violations, "past the backend contract:\n" + "\n".join(
        f"  {v.path}:{v.line}: {v.kind} {v.what}" for v in violations)


PLANTED = '''"""A docstring may say torch, cuda or onnxruntime: prose is not a value."""
import torch
import hfmatrix.backends.web_backend
from hfmatrix.backends.torch_backend import device_op
from ..backends import onnxruntime_backend
from ..backends.openvino_backend import OVSession
from torch import cuda
from hfmatrix.backends import REFERENCE, get
from ..backends.base import DeviceOps


def f(session):
    """torch only"""
    torch.cuda.synchronize()
    session._torch.cuda.empty_cache()
    backend = "openvino"
    return get("torch"), backend == "wasm", "cpu", "torch-module", REFERENCE
'''


def test_scanner_bites_on_a_planted_file():
    found, counts = scan_source(PLANTED, "planted.py", "hfmatrix.suites", backend_names())
    kinds = {(v.kind, v.line) for v in found}
    imports = sorted(v.what for v in found if v.kind == "import")
    assert imports == ["hfmatrix.backends.onnxruntime_backend", "hfmatrix.backends.openvino_backend",
                       "hfmatrix.backends.openvino_backend.OVSession", "hfmatrix.backends.torch_backend",
                       "hfmatrix.backends.torch_backend.device_op", "hfmatrix.backends.web_backend"], imports
    assert {("torch.cuda", 7), ("torch.cuda", 14), ("torch.cuda", 15)} <= kinds, kinds
    literals = sorted(v.what for v in found if v.kind == "literal")
    assert literals == ["'openvino'", "'torch'", "'wasm'"], literals  # not the docstrings, "cpu" or "torch-module"
    assert counts["imports"] == 8 and counts["literals"] >= 5


@pytest.mark.parametrize("line, kind", [("import torch.cuda", "torch.cuda"), ("x = 'CUDA'", "literal"),
                                        ("from hfmatrix.backends import serve_backend", "import")])
def test_scanner_bites_on_each_spelling(line, kind):
    found, _ = scan_source(line + "\n", "planted.py", "hfmatrix", backend_names())
    assert [v.kind for v in found] == [kind], found


# ----------------------------------------------------------------------------- the contract itself
@pytest.mark.parametrize("name", sorted(backends.REGISTRY))
def test_every_backend_declares_its_capabilities(name):
    """Each adapter inherits the contract's defaults and declares only known capabilities, per device."""
    backend = backends.get(name)
    assert isinstance(backend, backends.BackendBase)
    for device in backend.devices:
        caps = backend.capabilities(device)
        assert caps <= backends.CAPABILITIES, (name, device, caps)
        assert (backends.DEVICE_MEMORY in caps) == backend.device_ops(device).has_memory


def test_capabilities_decide_what_today_named_backends_decided():
    """The capability sets reproduce the backend lists the suites named before (memory checks: the four
    in-process backends; torch-only checks; device checks on torch accelerators only)."""
    def having(cap):
        return {n for n in backends.REGISTRY if cap in backends.capabilities(n, backends.get(n).devices[0])}
    assert having(backends.IN_PROCESS) == {"torch", "onnxruntime", "openvino", "qnn"}
    assert having(backends.TORCH_MODULE) == {"torch"}
    assert having(backends.TEXT_API) == {"serve"} and having(backends.SHARDED) == {"distributed"}
    with_memory = {(n, d) for n in backends.REGISTRY for d in backends.get(n).devices
                   if backends.DEVICE_MEMORY in backends.capabilities(n, d)}
    assert with_memory == {("torch", "cuda"), ("torch", "rocm"), ("torch", "mps")}


ZOO = '''
[[model]]
id = "alpha"
arch_class = "encoder"
model_type = "bert"
task = "feature-extraction"
capabilities = ["text"]
'''

REQUIRES = '''
import pytest

@pytest.mark.hfm_requires("torch-module")
def test_module(hfm_case):
    assert hfm_case.spec.id == "alpha"

@pytest.mark.hfm_requires("text-api")
def test_text(hfm_case):
    raise AssertionError("collected for a backend without the capability")

@pytest.mark.hfm_requires("device-memory")
def test_device(hfm_case):
    raise AssertionError("collected for a device without counters")
'''


def _run_requires(pytester, checks: str):
    from conftest import read_records
    pytester.makefile(".toml", zoo=ZOO)
    pytester.makepyfile(test_checks=checks)
    res = pytester.path / "results"
    result = pytester.runpytest_subprocess(f"--hfm-zoo-file={pytester.path / 'zoo.toml'}", f"--hfm-results-dir={res}",
                                           "-p", "no:cacheprovider", "--hfm-backend=torch", "--hfm-device=cpu")
    return result, {r["check"]: r for r in read_records(res / "torch")}


def test_requires_marker_collects_by_capability(pytester):
    result, by = _run_requires(pytester, REQUIRES)
    assert by["module"]["outcome"] == "passed" and by["module"]["model"] == "alpha"
    for check, cap in (("text", "text-api"), ("device", "device-memory")):
        assert by[check]["outcome"] == "skipped" and by[check]["skip_kind"] == "unsupported-by-backend", by[check]
        assert cap in by[check]["message"] and "torch on cpu" in by[check]["message"], by[check]
    assert result.ret == 0


def test_requires_marker_refuses_an_unknown_capability(pytester):
    result, _ = _run_requires(pytester, 'import pytest\n\n@pytest.mark.hfm_requires("gpu-magic")\n'
                                        'def test_x(hfm_case):\n    pass\n')
    assert result.ret != 0
    assert "unknown capabilities" in result.stdout.str() + result.stderr.str()
