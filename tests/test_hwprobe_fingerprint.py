"""hwprobe's fingerprint (the key of every perf baseline) from probe documents: accelerators that
change the machine change the hardware hash, an emulated QNN does not; probe() guards its browser."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

import hwprobe
from hwprobe import cpu


def _doc(**backends) -> dict:
    base = {"cpu": {"available": True, "details": {"model": "Intel(R) Xeon(R) Gold 6338", "vendor": "Intel",
                                                    "cores": {"logical": 4, "physical": 2, "usable": 2},
                                                    "memory": {"total_bytes": 16 * 2**30}, "isa": {"avx2": True}}}}
    return {"host": {"os": "Linux", "python": "3.11.7"}, "backends": {**base, **backends}}


def test_accelerators_enter_the_hardware_hash() -> None:
    plain = hwprobe.fingerprint(_doc())
    assert plain["accelerators"] == [] and plain["id"] == f"intel-r-xeon-r-gold-6338-2c-{plain['hardware_hash'][:8]}"
    mac = hwprobe.fingerprint(_doc(mps={"available": True, "details": {"machine": "arm64", "torch": "2.13.0", "macos": "15.1"}}))
    assert mac["accelerators"] == ["mps:arm64"] and mac["software"]["macos"] == "15.1"
    ov = {"available": True, "details": {"package": "2026.3", "devices": [
        {"name": "CPU", "full_device_name": "Xeon"}, {"name": "GPU.0", "full_device_name": "Intel Arc A770"}]}}
    assert hwprobe.fingerprint(_doc(openvino=ov))["accelerators"] == ["openvino:GPU.0:Intel Arc A770"]   # its CPU is the CPU
    npu = [{"device_type": "NPU", "vendor": "Qualcomm"}]
    real = hwprobe.fingerprint(_doc(qnn={"available": True, "details": {"ep_devices": npu, "package": "2.1"}}))
    emulated = hwprobe.fingerprint(_doc(qnn={"available": True, "details": {"ep_devices": npu, "emulation": True, "package": "2.1"}}))
    assert real["accelerators"] == ["qnn:NPU:Qualcomm"] and emulated["accelerators"] == []
    assert emulated["hardware_hash"] == plain["hardware_hash"] != real["hardware_hash"]
    assert emulated["hash"] != plain["hash"] and emulated["software"]["onnxruntime-qnn"] == "2.1"   # software differs


def test_probe_refuses_unknown_backends_and_survives_its_browser(monkeypatch) -> None:
    with pytest.raises(ValueError, match=r"unknown backend\(s\) \['tpu'\]"):
        hwprobe.probe(["cpu", "tpu"])

    def broken(names, enabled=True):
        raise RuntimeError("playwright driver crashed\nwith a traceback")
    monkeypatch.setattr(hwprobe, "probe_browser", broken)             # the browser is the boundary
    doc = hwprobe.probe(["webgpu", "webnn"])
    for name in ("webgpu", "webnn"):
        e = doc["backends"][name]
        assert not e["available"] and e["kind"] == "probe-error"
        assert e["reason"].startswith("browser probe raised RuntimeError: playwright driver crashed")
    assert doc["backends"]["cpu"]["kind"] == "not-probed"


def test_memory_without_psutil_reads_proc_meminfo(monkeypatch) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("/proc/meminfo is Linux's")
    monkeypatch.setitem(sys.modules, "psutil", None)                   # psutil is optional
    mem = cpu._memory()
    text = Path("/proc/meminfo").read_text()
    assert mem["source"] == "/proc/meminfo" and mem["total_bytes"] == cpu.parse_meminfo(text)["total_bytes"] > 0
    assert 0 < mem["available_bytes"] <= mem["total_bytes"]
    assert cpu._read("/proc/no-such-file") is None


def test_presence_looks_for_the_vendor_tools(monkeypatch, tmp_path) -> None:
    """Which env a session installs (noxfile) and the first hardware-absent reason: device nodes or the
    vendor's tool on PATH. The tools are the boundary: a fake one on an otherwise empty PATH."""
    import os

    from hwprobe import presence
    if any(os.path.exists(p) for p in ("/dev/nvidiactl", "/proc/driver/nvidia/version", "/dev/kfd")):
        pytest.skip("this machine has a GPU node: presence is answered by the device, not the tool")
    monkeypatch.setenv("PATH", str(tmp_path))
    no_nvidia = "no NVIDIA GPU on this machine (no /dev/nvidiactl, no NVIDIA driver, no nvidia-smi)"
    assert presence.hardware_present("cuda") == (False, no_nvidia)
    assert presence.hardware_present("rocm") == (False, "no AMD GPU on this machine (no /dev/kfd, no rocminfo)")
    for tool, device in (("nvidia-smi", "cuda"), ("rocminfo", "rocm")):
        (tmp_path / tool).write_text("#!/bin/sh\n")
        (tmp_path / tool).chmod(0o755)
        assert presence.hardware_present(device) == (True, "")
    assert presence.hardware_present("cpu") == (True, "")
    if sys.platform != "darwin":
        mps, why = presence.hardware_present("mps")
        assert not mps and why.startswith("no Apple GPU: MPS needs macOS on Apple silicon (this is Linux")


def test_a_library_whose_import_breaks_is_not_called_missing(monkeypatch, tmp_path) -> None:
    from hwprobe import _entry
    (tmp_path / "brokenlib.py").write_text("raise OSError('libcudart.so.13: cannot open shared object file')\n")
    (tmp_path / "halflib.py").write_text("import no_such_dependency_hfm\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(_entry.Missing) as exc:
        _entry.require("brokenlib", "broken-lib")                       # a CUDA wheel without its libraries
    e = exc.value.entry
    assert e["kind"] == "dependency-missing" and e["reason"] == \
        "broken-lib import failed: OSError: libcudart.so.13: cannot open shared object file"
    with pytest.raises(_entry.Missing) as exc:
        _entry.require("halflib")                                       # installed; one of its imports is not
    assert exc.value.entry["reason"].startswith("halflib import failed: ModuleNotFoundError")
    with pytest.raises(_entry.Missing) as exc:
        _entry.require("no_such_lib_hfm", "no-such-lib")
    assert exc.value.entry["reason"] == "no-such-lib not installed"
    with pytest.raises(ValueError, match="unknown kind 'gone'"):
        _entry.absent("gone", "x")
    assert _entry.dist_version("no-such-distribution-hfm") is None
