"""hwprobe: parsers on fixture text, probes with only their boundary faked, the real probe here.

Faked boundaries only: torch's device functions / version attributes (monkeypatched on the real
torch), sys.modules entries (None = not installed), the import system (a finder that raises, for
a broken install), the filesystem glob for device nodes, and the browser module (another
engineer's). The real probe of this machine is validated against hwprobe/schema.json.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import json
import os
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

import hwprobe
from hfmatrix import skips
from hwprobe import _entry, gpu, web

ROOT = Path(__file__).resolve().parents[1]

# --------------------------------------------------------------------------- fixtures (text)

SAPPHIRE_RAPIDS = """\
processor	: 0
vendor_id	: GenuineIntel
cpu family	: 6
model		: 143
model name	: Intel(R) Xeon(R) Platinum 8480+
physical id	: 0
siblings	: 2
core id		: 0
cpu cores	: 1
flags		: fpu sse sse2 ssse3 sse4_1 sse4_2 avx f16c fma avx2 avx512f avx512dq avx512cd avx512bw avx512vl avx512_vnni avx512_bf16 avx512_fp16 amx_bf16 amx_tile amx_int8 avx_vnni hypervisor

processor	: 1
vendor_id	: GenuineIntel
cpu family	: 6
model		: 143
model name	: Intel(R) Xeon(R) Platinum 8480+
physical id	: 0
siblings	: 2
core id		: 0
cpu cores	: 1
flags		: fpu sse sse2 ssse3 sse4_1 sse4_2 avx f16c fma avx2 avx512f avx512dq avx512cd avx512bw avx512vl avx512_vnni avx512_bf16 avx512_fp16 amx_bf16 amx_tile amx_int8 avx_vnni hypervisor
"""

ZEN3 = """\
processor	: 0
vendor_id	: AuthenticAMD
model name	: AMD EPYC 7B13
physical id	: 0
core id		: 0
flags		: fpu sse sse2 sse4_1 sse4_2 avx avx2 fma f16c

processor	: 1
vendor_id	: AuthenticAMD
model name	: AMD EPYC 7B13
physical id	: 0
core id		: 1
flags		: fpu sse sse2 sse4_1 sse4_2 avx avx2 fma f16c
"""

NEOVERSE_V1 = """\
processor	: 0
BogoMIPS	: 243.75
Features	: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm asimddp sve i8mm bf16 svebf16
CPU implementer	: 0x41
CPU architecture: 8
CPU variant	: 0x1
CPU part	: 0xd40
CPU revision	: 1

processor	: 1
BogoMIPS	: 243.75
Features	: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm asimddp sve i8mm bf16 svebf16
CPU implementer	: 0x41
CPU architecture: 8
CPU variant	: 0x1
CPU part	: 0xd40
CPU revision	: 1
"""

def _need(module: str):
    """Import an optional library or skip, typed, like every skip in hfmatrix."""
    try:
        return importlib.import_module(module)
    except ImportError:
        skips.skip(skips.DEPENDENCY_MISSING, f"{module} not installed in this env")


MEMINFO = "MemTotal:       24683656 kB\nMemFree:        1000 kB\nMemAvailable:   23751552 kB\n"


# --------------------------------------------------------------------------- cpu parsers


def test_cpuinfo_intel_amx_avx512():
    info = hwprobe.parse_cpuinfo(SAPPHIRE_RAPIDS)
    assert info["model"] == "Intel(R) Xeon(R) Platinum 8480+"
    assert info["vendor"] == "Intel"
    assert info["logical_in_cpuinfo"] == 2 and info["physical"] == 1  # two hyperthreads, one core
    isa = hwprobe.cpu.isa_summary(info["flags"])
    assert isa["avx512"] == ["avx512_bf16", "avx512_fp16", "avx512_vnni", "avx512bw", "avx512cd",
                             "avx512dq", "avx512f", "avx512vl"]
    assert isa["amx"] == ["amx_bf16", "amx_int8", "amx_tile"]
    assert isa["avx512_bf16"] and isa["avx2"] and isa["fma"]
    prec = hwprobe.cpu.precisions(info["flags"])
    assert prec["bf16"] and prec["fp16"]
    assert prec["bf16_evidence"] == ["avx512_bf16", "amx_bf16"]


def test_cpuinfo_amd_without_avx512_has_no_native_low_precision():
    info = hwprobe.parse_cpuinfo(ZEN3)
    assert (info["model"], info["vendor"], info["physical"]) == ("AMD EPYC 7B13", "AMD", 2)
    isa = hwprobe.cpu.isa_summary(info["flags"])
    assert isa["avx512"] == [] and isa["amx"] == [] and isa["avx2"]
    prec = hwprobe.cpu.precisions(info["flags"])
    assert not prec["bf16"] and not prec["fp16"]
    assert "f16c" in prec["note"]  # conversion-only, said so rather than counted


def test_cpuinfo_aarch64_features_and_implementer():
    info = hwprobe.parse_cpuinfo(NEOVERSE_V1)
    assert info["vendor"] == "ARM"
    assert info["model"] == "ARM part 0xd40"  # no "model name" line on aarch64
    isa = hwprobe.cpu.isa_summary(info["flags"])
    assert isa["asimd"] and isa["sve"] and isa["bf16"] and "avx2" not in isa
    prec = hwprobe.cpu.precisions(info["flags"])
    assert prec["bf16"] and prec["fp16"]


def test_meminfo():
    assert hwprobe.parse_meminfo(MEMINFO) == {"total_bytes": 24683656 * 1024,
                                              "available_bytes": 23751552 * 1024}


def test_cpu_probe_real():
    e = hwprobe.probe_cpu()
    assert e["available"] and e["kind"] is None
    d = e["details"]
    assert d["cores"]["logical"] == os.cpu_count()
    assert d["cores"]["usable"] >= 1 and d["memory"]["total_bytes"] > 0
    assert d["model"]


# --------------------------------------------------------------------------- torch devices


@pytest.fixture
def torch(monkeypatch):
    """The real torch, so TorchBuild reads the live module that the tests patch."""
    torch = _need("torch")
    monkeypatch.setattr(gpu.glob, "glob", lambda pattern: [])  # no device nodes unless a test says
    return torch


def _fake_devices(monkeypatch, torch, props):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(props))
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props[i])
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda i: (props[i].total_memory // 2, props[i].total_memory))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)


def test_rocm_torch_is_not_reported_as_cuda(monkeypatch, torch):
    monkeypatch.setattr(torch.version, "hip", "6.2")
    monkeypatch.setattr(torch.version, "cuda", None)
    mi300 = types.SimpleNamespace(name="AMD Instinct MI300X", major=9, minor=4, total_memory=192 * 2**30,
                                  multi_processor_count=304, gcnArchName="gfx942:sramecc+:xnack-")
    _fake_devices(monkeypatch, torch, [mi300])

    doc = hwprobe.probe(["cuda", "rocm"])
    cuda, rocm = doc["backends"]["cuda"], doc["backends"]["rocm"]
    assert cuda["available"] is False
    assert cuda["kind"] == "dependency-missing" and "ROCm build (HIP 6.2)" in cuda["reason"]
    assert rocm["available"] is True
    dev = rocm["details"]["devices"][0]
    assert dev["gcn_arch_name"] == "gfx942:sramecc+:xnack-" and dev["name"] == "AMD Instinct MI300X"
    assert rocm["details"]["hip"] == "6.2" and "MI300X" in rocm["reason"]
    _validate(doc)


def test_cuda_devices_precisions_and_memory(monkeypatch, torch):
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    h100 = types.SimpleNamespace(name="NVIDIA H100 80GB HBM3", major=9, minor=0, total_memory=80 * 2**30,
                                 multi_processor_count=132)
    _fake_devices(monkeypatch, torch, [h100, h100])
    doc = hwprobe.probe(["cuda", "rocm"])
    cuda, rocm = doc["backends"]["cuda"], doc["backends"]["rocm"]
    assert cuda["available"] and cuda["details"]["device_count"] == 2
    assert cuda["details"]["devices"][1] == {
        "index": 1, "name": "NVIDIA H100 80GB HBM3", "capability": "9.0", "total_memory_bytes": 80 * 2**30,
        "multi_processor_count": 132, "free_memory_bytes": 40 * 2**30}
    assert cuda["details"]["precisions"] == {"fp32": True, "fp16": True, "bf16": True, "bf16_emulated": False}
    assert cuda["details"]["cuda"] == "12.8" and "H100" in cuda["reason"]
    assert not rocm["available"] and "not a ROCm build" in rocm["reason"]
    _validate(doc)
    fp = hwprobe.fingerprint(doc)
    assert fp["accelerators"] == ["cuda:NVIDIA H100 80GB HBM3 (9.0, 80 GiB)"]
    assert fp["software"]["cuda"] == "12.8"


def test_cuda_bf16_emulated_only_is_not_native(monkeypatch, torch):
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    t4 = types.SimpleNamespace(name="Tesla T4", major=7, minor=5, total_memory=16 * 2**30, multi_processor_count=40)
    _fake_devices(monkeypatch, torch, [t4])
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    e = hwprobe.probe_cuda()
    assert e["details"]["precisions"]["bf16"] is False
    assert e["details"]["precisions"]["bf16_emulated"] is True


def test_cuda_build_without_device(monkeypatch, torch):
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    e = _entry.guarded("cuda", hwprobe.probe_cuda)
    assert (e["available"], e["kind"]) == (False, "hardware-absent")
    assert e["reason"].startswith("no CUDA device (torch ")


def test_cpu_torch_with_nvidia_node_is_a_dependency_problem(monkeypatch, torch):
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.version, "cuda", None)
    e = _entry.guarded("cuda", hwprobe.probe_cuda)
    assert e["kind"] == "hardware-absent"
    assert e["reason"] == f"torch built without CUDA (cpu build {torch.__version__}); no NVIDIA device node either"
    monkeypatch.setattr(gpu.glob, "glob", lambda p: ["/dev/nvidia0"] if p.startswith("/dev/nvidia") else [])
    e = _entry.guarded("cuda", hwprobe.probe_cuda)
    assert e["kind"] == "dependency-missing" and "NVIDIA hardware is present (/dev/nvidia0)" in e["reason"]


def test_torch_version_file_is_read_without_import():
    text = "from typing import Optional\n__version__ = '2.13.0+cpu'\ncuda: Optional[str] = None\nhip: Optional[str] = '6.2.4'\n"
    assert gpu.read_torch_version_py(text) == {"__version__": "2.13.0+cpu", "cuda": None, "hip": "6.2.4"}


def test_cpu_build_answers_without_importing_torch():
    code = ("import sys, hwprobe; e = hwprobe.probe(['cuda', 'rocm'])['backends'];"
            "print(e['cuda']['kind'], e['cuda']['details'].get('torch_imported'), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    kind, imported, loaded = out.stdout.split()
    spec = importlib.util.find_spec("torch")
    if spec is None:
        skips.skip(skips.DEPENDENCY_MISSING, "torch not installed in this env")
    build = gpu.read_torch_version_py(Path(spec.origin).with_name("version.py").read_text())
    if build.get("cuda") or build.get("hip"):
        skips.skip(skips.UNSUPPORTED, "GPU build of torch: the probe must import it to ask for devices")
    assert (imported, loaded) == ("False", "False")


def test_mps_off_macos_is_hardware_absent():
    e = hwprobe.probe(["mps"])["backends"]["mps"]
    if sys.platform == "darwin":  # real MPS possible: only the entry's honesty can be checked
        assert e["available"] or (e["kind"] in _entry.KINDS and e["reason"])
    else:
        assert (e["available"], e["kind"]) == (False, "hardware-absent") and "macOS" in e["reason"]


# --------------------------------------------------------------------------- missing / broken libraries


@pytest.mark.parametrize("module, backends", [
    ("torch", ["cuda", "rocm"]),
    ("openvino", ["openvino"]),
    ("onnxruntime", ["onnxruntime", "qnn"]),
])
def test_missing_library_is_a_reason(monkeypatch, module, backends):
    for name in list(sys.modules):
        if name == module or name.startswith(module + "."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, module, None)
    doc = hwprobe.probe(backends)
    for b in backends:
        e = doc["backends"][b]
        assert (e["available"], e["kind"]) == (False, "dependency-missing"), e
        assert e["reason"] == f"{module} not installed"
    _validate(doc)


def test_missing_qnn_plugin(monkeypatch):
    ort = _need("onnxruntime")
    if "QNNExecutionProvider" in ort.get_available_providers():
        skips.skip(skips.UNSUPPORTED, "this onnxruntime has QNN built in: no plugin to miss")
    monkeypatch.setitem(sys.modules, "onnxruntime_qnn", None)
    e = _entry.guarded("qnn", hwprobe.probe_qnn)
    assert (e["available"], e["kind"], e["reason"]) == (False, "dependency-missing", "onnxruntime-qnn not installed")


class _BrokenFinder(importlib.abc.MetaPathFinder):
    """The import system for a wheel whose shared library cannot load."""

    def find_spec(self, name, path=None, target=None):
        if name == "openvino":
            raise OSError("libopenvino.so.2600: cannot open shared object file: No such file or directory")
        return None


def test_broken_install_is_reported_with_its_error(monkeypatch):
    for name in [m for m in sys.modules if m == "openvino" or m.startswith("openvino.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [_BrokenFinder(), *sys.meta_path])
    e = hwprobe.probe(["openvino"])["backends"]["openvino"]
    assert (e["available"], e["kind"]) == (False, "dependency-missing")
    assert e["reason"].startswith("openvino import failed: OSError: libopenvino.so.2600: cannot open")


def test_a_raising_probe_becomes_probe_error():
    def boom():
        raise RuntimeError("CUDA driver initialization failed")

    e = _entry.guarded("cuda", boom)
    assert (e["available"], e["kind"]) == (False, "probe-error")
    assert e["reason"] == "cuda probe raised RuntimeError: CUDA driver initialization failed"
    assert e["details"]["where"].startswith("test_hwprobe.py:")


@pytest.mark.parametrize("bad", [None, {"available": "yes"}, {"available": False, "reason": "x"},
                                 {"available": False, "kind": "hardware-absent", "reason": ""}])
def test_malformed_entries_are_not_passed_through(bad):
    e = _entry.normalize("webgpu", bad)
    assert (e["available"], e["kind"]) == (False, "probe-error")


# --------------------------------------------------------------------------- browser delegation


def test_without_browser_module_web_entries_say_not_probed(monkeypatch):
    monkeypatch.setitem(sys.modules, "hwprobe.browser", None)
    doc = hwprobe.probe(["webgpu", "webnn"])
    for name in ("webgpu", "webnn"):
        e = doc["backends"][name]
        assert (e["available"], e["kind"], e["reason"]) == (
            False, "dependency-missing", "not probed: browser probe not installed")
    _validate(doc)


def _browser_module(monkeypatch, **fns):
    mod = types.ModuleType("hwprobe.browser")
    for k, v in fns.items():
        setattr(mod, k, v)
    monkeypatch.setitem(sys.modules, "hwprobe.browser", mod)
    return mod


def test_browser_module_fills_both_entries_in_one_call(monkeypatch):
    calls = []

    def probe():
        calls.append(1)
        return {"webgpu": _entry.ok("software WebGPU (SwiftShader)", software=True),
                "webnn": _entry.absent("hardware-absent", "createContext() failed: NotSupportedError")}

    _browser_module(monkeypatch, probe=probe)
    doc = hwprobe.probe(["webgpu", "webnn"])
    assert calls == [1]
    assert doc["backends"]["webgpu"]["available"] and doc["backends"]["webgpu"]["details"]["software"]
    assert doc["backends"]["webnn"]["reason"] == "createContext() failed: NotSupportedError"
    _validate(doc)


def test_browser_per_backend_functions_and_failures(monkeypatch):
    def probe_webnn():
        raise RuntimeError("chromium crashed")

    _browser_module(monkeypatch, probe_webgpu=lambda: {"available": True, "reason": "adapter nvidia/ampere"},
                    probe_webnn=probe_webnn)
    doc = hwprobe.probe(["webgpu", "webnn"])
    assert doc["backends"]["webgpu"]["available"] and doc["backends"]["webgpu"]["kind"] is None
    webnn = doc["backends"]["webnn"]
    assert (webnn["kind"], webnn["reason"]) == ("probe-error", "webnn browser probe raised RuntimeError: chromium crashed")


def test_hanging_browser_times_out(monkeypatch):
    _browser_module(monkeypatch, probe=lambda: time.sleep(30))
    out = web.probe_browser(["webgpu"], timeout=0.2)
    assert out["webgpu"]["kind"] == "probe-error" and "within 0 s" in out["webgpu"]["reason"]


def test_browser_disabled(monkeypatch):
    _browser_module(monkeypatch, probe=lambda: pytest.fail("browser must not be launched"))
    doc = hwprobe.probe(["webgpu", "webnn"], browser=False)
    assert doc["backends"]["webgpu"]["kind"] == "not-probed"


# --------------------------------------------------------------------------- QNN, when installed


def test_qnn_registers_and_leaves_process_clean():
    ort = _need("onnxruntime")
    _need("onnxruntime_qnn")
    before = [d.ep_name for d in ort.get_ep_devices()]
    e = hwprobe.probe_qnn()
    assert e["available"], e["reason"]
    assert e["details"]["registered"] and e["details"]["ep_devices"]
    assert all(d["ep_name"] == "QNNExecutionProvider" for d in e["details"]["ep_devices"])
    assert [d.ep_name for d in ort.get_ep_devices()] == before
    if e["details"]["backends"]["htp"] and os.uname().machine == "x86_64":
        assert "simulator" in e["details"]["emulation"] and "simulator" in e["reason"]


# --------------------------------------------------------------------------- the real probe, document, CLI


def _validate(doc):
    try:
        import jsonschema
    except ImportError:  # structural check where jsonschema is not installed
        assert {"schema_version", "timestamp", "host", "backends"} <= set(doc)
        assert set(doc["backends"]) == set(hwprobe.BACKENDS)
        for e in doc["backends"].values():
            assert {"available", "reason", "kind", "details"} <= set(e) and e["reason"]
            assert (e["kind"] is None) == e["available"] and (e["kind"] is None or e["kind"] in _entry.KINDS)
        return
    jsonschema.Draft202012Validator(hwprobe.schema()).validate(json.loads(json.dumps(doc)))


def test_schema_is_valid_and_rejects_a_bare_false():
    jsonschema = _need("jsonschema")
    jsonschema.Draft202012Validator.check_schema(hwprobe.schema())
    doc = hwprobe.probe(["cpu"])
    doc["backends"]["cuda"] = {"available": False, "reason": "", "kind": None, "details": {}}
    with pytest.raises(jsonschema.ValidationError):
        _validate(doc)


def test_real_probe_matches_schema_and_is_fast():
    t0 = time.perf_counter()
    doc = hwprobe.probe(browser=False)
    elapsed = time.perf_counter() - t0
    _validate(doc)
    assert set(doc["backends"]) == set(hwprobe.BACKENDS)
    assert doc["backends"]["cpu"]["available"]
    for name, e in doc["backends"].items():
        assert e["kind"] != "probe-error", f"{name}: {e['reason']}"
    # < 3 s is the target on an idle machine; importing openvino/torch on 2 busy cores can exceed it
    assert elapsed < 15, f"probe took {elapsed:.1f} s"


def test_fingerprint_is_stable_and_hardware_only():
    doc = hwprobe.probe(["cpu"])
    a = hwprobe.fingerprint(doc)
    b = hwprobe.fingerprint(json.loads(json.dumps(doc)))
    assert a == b and len(a["hardware_hash"]) == 16
    assert a["cpu_model"] == doc["backends"]["cpu"]["details"]["model"]
    assert a["cores"]["logical"] == os.cpu_count()
    doc["host"]["hostname"] = "elsewhere"
    doc["backends"]["cpu"]["details"]["memory"]["available_bytes"] = 1
    assert hwprobe.fingerprint(doc)["hardware_hash"] == a["hardware_hash"]
    doc["backends"]["cpu"]["details"]["model"] = "Other CPU"
    assert hwprobe.fingerprint(doc)["hardware_hash"] != a["hardware_hash"]


def test_import_is_stdlib_only():
    code = ("import sys, hwprobe; heavy = {'torch', 'openvino', 'onnxruntime', 'onnxruntime_qnn', 'psutil', "
            "'cpuinfo', 'playwright', 'numpy'}; print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


def test_cli_json_is_valid(tmp_path):
    out = subprocess.run([sys.executable, "-m", "hwprobe", "--json", "--no-browser"], capture_output=True,
                         text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    _validate(json.loads(out.stdout))


def test_cli_out_table_and_require(tmp_path):
    target = tmp_path / "sub" / "hw.json"
    out = subprocess.run([sys.executable, "-m", "hwprobe", "--only", "cpu,mps", "--out", str(target),
                          "--require", "cpu"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].split() == ["backend", "available", "reason", "/", "summary"]
    rows = {line.split()[0]: line for line in out.stdout.splitlines()[2:11]}
    assert set(rows) == set(hwprobe.BACKENDS) and rows["cpu"].split()[1] == "yes"
    assert "isa" in out.stdout and "native" in out.stdout
    _validate(json.loads(target.read_text()))
    bad = subprocess.run([sys.executable, "-m", "hwprobe", "--only", "cpu", "--require", "cuda"],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert bad.returncode == 1 and "required backend cuda unavailable" in bad.stderr
