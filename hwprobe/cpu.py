"""CPU: model, vendor, cores, ISA flags, memory, and which low precisions run natively.

Linux reads /proc/cpuinfo and /proc/meminfo (parsers are pure functions over text so tests
feed them fixtures); macOS asks sysctl; elsewhere py-cpuinfo if installed, else `platform`.
"""
from __future__ import annotations

import os
import platform
import re
import subprocess
import sys

from ._entry import ok

# Flags worth a name of their own in the summary; the full list is in details["flags"].
_X86_NAMED = ("sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx_vnni", "avx_vnni_int8",
              "avx_ne_convert", "avx512_bf16", "avx512_fp16", "avx512_vnni", "amx_bf16",
              "amx_fp16", "amx_int8")
_ARM_NAMED = ("asimd", "asimdhp", "asimddp", "fphp", "bf16", "i8mm", "sve", "sve2", "sme")

_ARM_IMPLEMENTERS = {"0x41": "ARM", "0x42": "Broadcom", "0x43": "Cavium", "0x46": "Fujitsu",
                     "0x48": "HiSilicon", "0x4e": "NVIDIA", "0x51": "Qualcomm", "0x61": "Apple",
                     "0xc0": "Ampere"}
_X86_VENDORS = {"GenuineIntel": "Intel", "AuthenticAMD": "AMD", "HygonGenuine": "Hygon",
                "CentaurHauls": "Centaur", "  Shanghai  ": "Zhaoxin"}


def parse_cpuinfo(text: str) -> dict:
    """Parse /proc/cpuinfo text (x86 or aarch64) into model, vendor, cores and flags."""
    blocks = [b for b in re.split(r"\n\s*\n", text) if b.strip()]
    procs: list[dict[str, str]] = []
    header: dict[str, str] = {}
    for block in blocks:
        fields: dict[str, str] = {}
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip().lower()] = value.strip()
        if fields.get("processor", "").isdigit():
            procs.append(fields)
        else:  # aarch64 puts "Hardware"/"Model" in a trailing block
            header.update(fields)
    first = procs[0] if procs else header
    flags_text = first.get("flags") or first.get("features") or ""
    flags = sorted(set(flags_text.split()))

    vendor_raw = first.get("vendor_id") or first.get("cpu implementer") or ""
    vendor = _X86_VENDORS.get(vendor_raw) or _ARM_IMPLEMENTERS.get(vendor_raw.lower()) or vendor_raw or None
    model = (first.get("model name") or header.get("model name") or header.get("hardware")
             or header.get("model") or first.get("cpu model") or None)
    if model is None and "cpu part" in first:
        model = f"{vendor or 'unknown'} part {first['cpu part']}"

    cores = {(p.get("physical id", "0"), p["core id"]) for p in procs if "core id" in p}
    return {
        "model": model,
        "vendor": vendor,
        "vendor_raw": vendor_raw or None,
        "logical_in_cpuinfo": len(procs) or None,
        "physical": len(cores) or None,
        "sockets": len({p.get("physical id") for p in procs if "physical id" in p}) or None,
        "flags": flags,
    }


def parse_meminfo(text: str) -> dict:
    """MemTotal / MemAvailable from /proc/meminfo text, in bytes."""
    values = {}
    for line in text.splitlines():
        m = re.match(r"(\w+):\s+(\d+)\s*kB", line)
        if m:
            values[m.group(1)] = int(m.group(2)) * 1024
    return {"total_bytes": values.get("MemTotal"), "available_bytes": values.get("MemAvailable")}


def isa_summary(flags: list[str]) -> dict:
    have = set(flags)
    named = _ARM_NAMED if {"asimd", "neon"} & have else _X86_NAMED
    out: dict = {f: f in have for f in named}
    out["avx512"] = sorted(f for f in have if f.startswith("avx512"))
    out["amx"] = sorted(f for f in have if f.startswith("amx"))
    return out


def precisions(flags: list[str]) -> dict:
    """Native low-precision *arithmetic*, with the flag that proves it.

    Conversion-only extensions (f16c, avx_ne_convert) do not count: frameworks then compute
    in fp32 and the speed/accuracy of "fp16 on CPU" is that of emulation.
    """
    have = set(flags)
    bf16 = [f for f in ("avx512_bf16", "amx_bf16", "bf16", "svebf16") if f in have]
    fp16 = [f for f in ("avx512_fp16", "amx_fp16", "asimdhp", "fphp") if f in have]
    note = []
    if not fp16 and "f16c" in have:
        note.append("f16c gives fp16<->fp32 conversion only")
    if not bf16 and "avx_ne_convert" in have:
        note.append("avx_ne_convert gives bf16 conversion only")
    return {
        "fp32": True,
        "bf16": bool(bf16),
        "fp16": bool(fp16),
        "bf16_evidence": bf16,
        "fp16_evidence": fp16,
        "note": "; ".join(note) or None,
    }


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def _memory() -> dict:
    try:
        import psutil  # optional

        vm = psutil.virtual_memory()
        return {"total_bytes": int(vm.total), "available_bytes": int(vm.available), "source": "psutil"}
    except Exception:  # noqa: BLE001 - psutil missing or unsupported platform
        pass
    text = _read("/proc/meminfo")
    if text:
        return {**parse_meminfo(text), "source": "/proc/meminfo"}
    return {"total_bytes": None, "available_bytes": None, "source": None}


def _sysctl(*names: str) -> dict[str, str]:
    try:
        out = subprocess.run(["sysctl", *names], capture_output=True, text=True, timeout=3).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in out.splitlines()) if v}


def _darwin_info() -> dict:
    s = _sysctl("machdep.cpu.brand_string", "machdep.cpu.vendor", "hw.physicalcpu",
                "hw.optional.arm.FEAT_BF16", "hw.optional.arm.FEAT_FP16", "hw.optional.avx2_0",
                "hw.optional.avx512f", "hw.optional.neon")
    flags = []
    for key, flag in (("hw.optional.arm.FEAT_BF16", "bf16"), ("hw.optional.arm.FEAT_FP16", "asimdhp"),
                      ("hw.optional.neon", "asimd"), ("hw.optional.avx2_0", "avx2"),
                      ("hw.optional.avx512f", "avx512f")):
        if s.get(key) == "1":
            flags.append(flag)
    phys = s.get("hw.physicalcpu")
    brand = s.get("machdep.cpu.brand_string")
    return {"model": brand, "vendor": s.get("machdep.cpu.vendor") or ("Apple" if brand and "Apple" in brand else None),
            "physical": int(phys) if phys and phys.isdigit() else None, "flags": sorted(flags),
            "source": "sysctl"}


def _pycpuinfo_info() -> dict | None:
    try:
        import cpuinfo  # py-cpuinfo, optional

        info = cpuinfo.get_cpu_info()
    except Exception:  # noqa: BLE001
        return None
    vendor_raw = info.get("vendor_id_raw")
    return {"model": info.get("brand_raw"), "vendor": _X86_VENDORS.get(vendor_raw, vendor_raw),
            "physical": None, "flags": sorted(info.get("flags", [])), "source": "py-cpuinfo"}


def probe_cpu() -> dict:
    info: dict | None = None
    if sys.platform.startswith("linux"):
        text = _read("/proc/cpuinfo")
        if text:
            info = {**parse_cpuinfo(text), "source": "/proc/cpuinfo"}
    elif sys.platform == "darwin":
        info = _darwin_info()
    if info is None or not info.get("flags"):
        info = _pycpuinfo_info() or info
    if info is None:
        info = {"model": None, "vendor": None, "physical": None, "flags": [], "source": "platform"}
    if not info.get("model"):
        info["model"] = platform.processor() or None

    physical = info.get("physical")
    if physical is None:
        try:
            import psutil

            physical = psutil.cpu_count(logical=False)
        except Exception:  # noqa: BLE001
            physical = None
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()

    flags = info.get("flags") or []
    details = {
        "model": info.get("model"),
        "vendor": info.get("vendor"),
        "arch": platform.machine(),
        "cores": {"logical": os.cpu_count(), "physical": physical, "usable": usable,
                  "sockets": info.get("sockets")},
        "isa": isa_summary(flags),
        "precisions": precisions(flags),
        "virtualized": "hypervisor" in flags,
        "memory": _memory(),
        "flags": flags,
        "source": info.get("source"),
    }
    mem = details["memory"]["total_bytes"]
    summary = (f"{details['model'] or 'unknown CPU'}, {usable} usable of {os.cpu_count()} logical cores"
               + (f", {mem / 2**30:.1f} GiB" if mem else "")
               + f", bf16 {'native' if details['precisions']['bf16'] else 'emulated'}")
    return ok(summary, **details)
