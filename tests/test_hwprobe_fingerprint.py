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
