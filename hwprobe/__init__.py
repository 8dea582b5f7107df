"""hwprobe: what hardware and backend libraries this machine really has, and why not.

Importable alone: the standard library only at import; each optional library (torch, openvino,
onnxruntime, onnxruntime_qnn, psutil, py-cpuinfo, the browser module) is imported inside its
probe, and every probe is guarded so a missing or broken library is a *reason*, never a crash.

    doc = hwprobe.probe()                  # the document (schema.json)
    doc = hwprobe.probe(["cpu", "cuda"])   # others are present as kind "not-probed"
    fp = hwprobe.fingerprint(doc)          # stable id for perf baselines
    hwprobe.probe_cuda()                   # one backend's entry, unguarded

``python -m hwprobe`` prints a table, ``--json`` the document, ``--out FILE`` writes it.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import platform
import re
import socket
import sys
import time
from pathlib import Path

from ._entry import (DEPENDENCY_MISSING, HARDWARE_ABSENT, KINDS, NOT_PROBED, PROBE_ERROR, _one_line, absent,
                     guarded, normalize)
from .cpu import parse_cpuinfo, parse_meminfo, probe_cpu
from .gpu import probe_cuda, probe_mps, probe_rocm
from .runtimes import probe_onnxruntime, probe_openvino, probe_qnn
from .web import probe_browser, probe_webgpu, probe_webnn

__all__ = ["BACKENDS", "KINDS", "SCHEMA_VERSION", "SCHEMA_PATH", "probe", "fingerprint", "schema",
           "probe_cpu", "probe_cuda", "probe_rocm", "probe_mps", "probe_openvino", "probe_onnxruntime",
           "probe_qnn", "probe_webgpu", "probe_webnn", "parse_cpuinfo", "parse_meminfo",
           "HARDWARE_ABSENT", "DEPENDENCY_MISSING", "PROBE_ERROR", "NOT_PROBED"]

SCHEMA_VERSION = "1.0"
SCHEMA_PATH = Path(__file__).with_name("schema.json")

# Order matters once: onnxruntime lists EP devices before qnn registers (and unregisters) its EP.
PROBES = {
    "cpu": probe_cpu,
    "cuda": probe_cuda,
    "rocm": probe_rocm,
    "mps": probe_mps,
    "openvino": probe_openvino,
    "onnxruntime": probe_onnxruntime,
    "qnn": probe_qnn,
    "webgpu": probe_webgpu,
    "webnn": probe_webnn,
}
BACKENDS = tuple(PROBES)
_WEB = ("webgpu", "webnn")


def _host() -> dict:
    return {
        "hostname": socket.gethostname(),
        "os": platform.system(),
        "os_release": platform.release(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "python_executable": sys.executable,
    }


def probe(names=None, *, browser: bool = True) -> dict:
    """Probe the named backends (default: all) and return the document.

    Backends not named are still present, as kind "not-probed", so the document always has
    all of BACKENDS. ``browser=False`` skips the (slow) browser for webgpu/webnn.
    """
    wanted = list(BACKENDS) if names is None else [names] if isinstance(names, str) else list(names)
    unknown = sorted(set(wanted) - set(BACKENDS))
    if unknown:
        raise ValueError(f"unknown backend(s) {unknown}; known: {list(BACKENDS)}")
    t0 = time.perf_counter()
    backends: dict[str, dict] = {}
    web = [n for n in _WEB if n in wanted]
    if web:  # one browser run answers both
        t_web = time.perf_counter()
        try:
            web_entries = probe_browser(web, enabled=browser)
        except Exception as e:  # noqa: BLE001 - probe_browser guards itself; this is the backstop
            web_entries = {n: absent(PROBE_ERROR, f"browser probe raised {_one_line(e)}") for n in web}
        web_seconds = round(time.perf_counter() - t_web, 3)
    for name in BACKENDS:
        if name not in wanted:
            backends[name] = absent(NOT_PROBED, "not probed: not requested")
        elif name in _WEB:
            backends[name] = {**normalize(name, web_entries.get(name)), "probe_seconds": web_seconds}
        else:
            backends[name] = guarded(name, PROBES[name])
    return {
        "schema_version": SCHEMA_VERSION,
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "host": _host(),
        "backends": backends,
        "probe_seconds": round(time.perf_counter() - t0, 3),
    }


def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def _accelerators(backends: dict) -> list[str]:
    out = []
    for name in ("cuda", "rocm"):
        e = backends.get(name, {})
        if e.get("available"):
            for d in e["details"].get("devices", []):
                arch = d.get("capability") if name == "cuda" else d.get("gcn_arch_name")
                out.append(f"{name}:{d.get('name')} ({arch}, {round((d.get('total_memory_bytes') or 0) / 2**30)} GiB)")
    if backends.get("mps", {}).get("available"):
        out.append(f"mps:{backends['mps']['details'].get('machine')}")
    ov = backends.get("openvino", {})
    if ov.get("available"):  # OpenVINO's CPU device is the CPU already described
        out += [f"openvino:{d['name']}:{d.get('full_device_name')}" for d in ov["details"].get("devices", [])
                if not d["name"].startswith("CPU")]
    qnn = backends.get("qnn", {})
    if qnn.get("available") and not qnn["details"].get("emulation"):
        out += [f"qnn:{d.get('device_type')}:{d.get('vendor')}" for d in qnn["details"].get("ep_devices", [])]
    return sorted(set(out))


def _software(backends: dict) -> dict:
    sw = {}
    for name in ("cuda", "rocm", "mps"):
        d = backends.get(name, {}).get("details", {})
        for key in ("torch", "cuda", "hip", "driver", "macos"):
            if d.get(key):
                sw[key] = str(d[key])
    for name, key, field in (("openvino", "openvino", "package"), ("onnxruntime", "onnxruntime", "version"),
                             ("qnn", "onnxruntime-qnn", "package")):
        d = backends.get(name, {}).get("details", {})
        if d.get(field):
            sw[key] = str(d[field])
    return sw


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def fingerprint(doc: dict | None = None) -> dict:
    """A stable fingerprint of the hardware (and, separately, the software) in ``doc``.

    ``hardware_hash`` ignores hostname, free memory, clock speed and the full flag list (which
    differ between identical machines); key perf baselines by it. ``hash`` also covers the
    software versions the document saw, for an exact-environment match.
    """
    doc = probe(browser=False) if doc is None else doc
    backends = doc.get("backends", {})
    cpu = backends.get("cpu", {}).get("details", {})
    isa = cpu.get("isa", {})
    isa_names = sorted([k for k, v in isa.items() if v is True] + isa.get("avx512", []) + isa.get("amx", []))
    mem = (cpu.get("memory") or {}).get("total_bytes")
    cores = cpu.get("cores") or {}
    hardware = {
        "cpu_model": cpu.get("model"),
        "cpu_vendor": cpu.get("vendor"),
        "arch": cpu.get("arch") or doc.get("host", {}).get("machine"),
        "cores": {k: cores.get(k) for k in ("logical", "physical", "usable")},
        "memory_gib": round(mem / 2**30) if mem else None,
        "isa": sorted(set(isa_names)),
        "virtualized": cpu.get("virtualized"),
        "accelerators": _accelerators(backends),
    }
    software = {"os": doc.get("host", {}).get("os"),
                "python": ".".join(str(doc.get("host", {}).get("python", "")).split(".")[:2]),
                **_software(backends)}
    hw_hash = _digest(hardware)
    slug = re.sub(r"[^a-z0-9]+", "-", (hardware["cpu_model"] or "unknown-cpu").lower()).strip("-")[:40]
    return {**hardware, "software": software, "hardware_hash": hw_hash,
            "hash": _digest({"hardware": hardware, "software": software}),
            "id": f"{slug}-{hardware['cores']['usable']}c-{hw_hash[:8]}"}


def dumps(doc: dict) -> str:
    return json.dumps(doc, indent=2, sort_keys=False, default=str)

