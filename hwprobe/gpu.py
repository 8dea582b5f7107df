"""GPUs seen through torch: CUDA, ROCm and MPS.

torch exposes ROCm through the ``torch.cuda`` namespace, so ``torch.cuda.is_available()`` alone
cannot tell an NVIDIA GPU from an AMD one: ``torch.version.hip`` decides. A ROCm build is
never reported as CUDA. Device nodes (/dev/nvidia*, /dev/kfd) are read as *evidence* only, to
tell "no hardware" from "hardware the installed torch cannot use"; they never make a backend
available.
"""
from __future__ import annotations

import ast
import glob
import importlib.util
import os
import platform
import re
import shutil
import subprocess
import sys

from ._entry import DEPENDENCY_MISSING, HARDWARE_ABSENT, Missing, ok, require


def nvidia_evidence() -> list[str]:
    found = sorted(glob.glob("/proc/driver/nvidia/gpus/*")) + sorted(glob.glob("/dev/nvidia[0-9]*"))
    return found


def amd_evidence() -> list[str]:
    found = ["/dev/kfd"] if os.path.exists("/dev/kfd") else []
    for props in sorted(glob.glob("/sys/class/kfd/kfd/topology/nodes/*/properties")):
        try:
            text = open(props, encoding="utf-8").read()
        except OSError:
            continue
        m = re.search(r"gfx_target_version\s+(\d+)", text)
        if m and int(m.group(1)):
            found.append(f"{os.path.dirname(props)} (gfx_target_version {m.group(1)})")
    return found


def nvidia_driver_version() -> str | None:
    try:
        text = open("/proc/driver/nvidia/version", encoding="utf-8").read()
        m = re.search(r"Kernel Module\s+(?:for \S+\s+)?([\d.]+)", text)
        if m:
            return m.group(1)
    except OSError:
        pass
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    try:
        out = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.split()
    return lines[0] if out.returncode == 0 and lines else None


def read_torch_version_py(text: str) -> dict:
    """The literal assignments of torch/version.py (__version__, cuda, hip, ...), without executing it."""
    out = {}
    for node in ast.parse(text).body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else \
            node.target if isinstance(node, ast.AnnAssign) else None
        if isinstance(target, ast.Name) and node.value is not None:
            try:
                out[target.id] = ast.literal_eval(node.value)
            except ValueError:
                continue
    return out


class TorchBuild:
    """What torch build is installed, importing torch only when a device must be asked.

    Importing torch costs seconds; a CPU-only build (torch.version.cuda and .hip both None) answers
    cuda/rocm from torch/version.py alone. If torch is already imported, the live module is used.
    """

    def __init__(self):
        live = sys.modules.get("torch")
        if live is None:
            if "torch" in sys.modules:  # None entry: import is blocked, let require() say so
                require("torch")
            spec = importlib.util.find_spec("torch")
            if spec is None or not spec.origin:
                raise Missing(DEPENDENCY_MISSING, "torch not installed")
            path = os.path.join(os.path.dirname(spec.origin), "version.py")
            try:
                with open(path, encoding="utf-8") as f:
                    v = read_torch_version_py(f.read())
            except (OSError, SyntaxError):
                live = require("torch")  # unusual layout: ask the module itself
        if live is not None:
            v = {"__version__": str(live.__version__), "cuda": getattr(live.version, "cuda", None),
                 "hip": getattr(live.version, "hip", None)}
        self.version = str(v.get("__version__"))
        self.cuda = v.get("cuda") or None
        self.hip = v.get("hip") or None
        self.imported = live is not None

    def module(self):
        torch = require("torch")
        self.imported = True
        return torch


def _bf16(torch) -> dict:
    """Native bf16 and bf16-with-emulation, where this torch can tell them apart."""
    try:
        native = bool(torch.cuda.is_bf16_supported(including_emulation=False))
        emulated = bool(torch.cuda.is_bf16_supported(including_emulation=True))
    except TypeError:  # older torch: one answer only
        native = emulated = bool(torch.cuda.is_bf16_supported())
    return {"bf16": native, "bf16_emulated": emulated and not native}


def _devices(torch, arch_field: bool) -> list[dict]:
    devices = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        d = {"index": i, "name": getattr(p, "name", None) or torch.cuda.get_device_name(i),
             "capability": f"{p.major}.{p.minor}" if hasattr(p, "major") else None,
             "total_memory_bytes": getattr(p, "total_memory", None),
             "multi_processor_count": getattr(p, "multi_processor_count", None)}
        if arch_field:
            d["gcn_arch_name"] = getattr(p, "gcnArchName", None)
        try:
            free, _total = torch.cuda.mem_get_info(i)
            d["free_memory_bytes"] = int(free)
        except Exception:  # noqa: BLE001 - needs a context; not worth failing the probe for
            d["free_memory_bytes"] = None
        devices.append(d)
    return devices


def probe_cuda() -> dict:
    build = TorchBuild()
    ver, hip, cuda = build.version, build.hip, build.cuda
    if hip:
        raise Missing(DEPENDENCY_MISSING,
                      f"torch {ver} is a ROCm build (HIP {hip}): its torch.cuda is AMD's; see rocm",
                      torch=ver, torch_imported=build.imported, hip=hip)
    hw = nvidia_evidence()
    if not cuda:
        if hw:
            raise Missing(DEPENDENCY_MISSING, f"torch built without CUDA (cpu build {ver}) "
                          f"but NVIDIA hardware is present ({hw[0]})", torch=ver, torch_imported=build.imported, nvidia_evidence=hw)
        raise Missing(HARDWARE_ABSENT, f"torch built without CUDA (cpu build {ver}); "
                      "no NVIDIA device node either", torch=ver, torch_imported=build.imported, nvidia_evidence=hw)
    torch = build.module()
    if not torch.cuda.is_available():
        if hw:
            raise Missing(DEPENDENCY_MISSING, f"NVIDIA hardware present ({hw[0]}) but torch {ver} "
                          f"(CUDA {cuda}) cannot use it: driver/runtime mismatch?",
                          torch=ver, torch_imported=build.imported, cuda=cuda, nvidia_evidence=hw, driver=nvidia_driver_version())
        raise Missing(HARDWARE_ABSENT, f"no CUDA device (torch {ver}, CUDA {cuda})",
                      torch=ver, torch_imported=build.imported, cuda=cuda, nvidia_evidence=hw)
    devices = _devices(torch, arch_field=False)
    caps = [tuple(int(x) for x in d["capability"].split(".")) for d in devices if d["capability"]]
    prec = {"fp32": True, "fp16": bool(caps) and min(caps) >= (5, 3), **_bf16(torch)}
    names = ", ".join(f"{d['name']} (sm {d['capability']})" for d in devices)
    return ok(f"{len(devices)} CUDA device(s): {names}; torch {ver}, CUDA {cuda}",
              torch=ver, torch_imported=build.imported, cuda=cuda, cudnn=_cudnn(torch), driver=nvidia_driver_version(),
              device_count=len(devices), devices=devices, precisions=prec)


def _cudnn(torch):
    try:
        return torch.backends.cudnn.version()
    except Exception:  # noqa: BLE001
        return None


def probe_rocm() -> dict:
    build = TorchBuild()
    ver, hip = build.version, build.hip
    hw = amd_evidence()
    if not hip:
        if hw:
            raise Missing(DEPENDENCY_MISSING, f"torch {ver} is not a ROCm build but an AMD GPU "
                          f"node is present ({hw[0]})", torch=ver, torch_imported=build.imported, amd_evidence=hw)
        raise Missing(HARDWARE_ABSENT, f"torch {ver} is not a ROCm build; no AMD GPU node "
                      "(/dev/kfd) either", torch=ver, torch_imported=build.imported, amd_evidence=hw)
    torch = build.module()
    if not torch.cuda.is_available():
        kind = DEPENDENCY_MISSING if hw else HARDWARE_ABSENT
        raise Missing(kind, f"no ROCm device usable (torch {ver}, HIP {hip})"
                      + (f" although {hw[0]} exists" if hw else ""), torch=ver, torch_imported=build.imported, hip=hip, amd_evidence=hw)
    devices = _devices(torch, arch_field=True)
    prec = {"fp32": True, "fp16": True, **_bf16(torch)}
    names = ", ".join(f"{d['name']} ({d.get('gcn_arch_name')})" for d in devices)
    return ok(f"{len(devices)} ROCm device(s): {names}; torch {ver}, HIP {hip}",
              torch=ver, torch_imported=build.imported, hip=hip, rocm=_rocm_version(), device_count=len(devices), devices=devices,
              precisions=prec)


def _rocm_version() -> str | None:
    for path in ("/opt/rocm/.info/version", "/opt/rocm/.info/version-dev"):
        try:
            return open(path, encoding="utf-8").read().strip() or None
        except OSError:
            continue
    return None


def probe_mps() -> dict:
    if sys.platform != "darwin":
        raise Missing(HARDWARE_ABSENT, f"MPS needs macOS; this is {platform.system()}")
    return _mps_on_macos()


def _mps_on_macos() -> dict:
    mac = platform.mac_ver()[0]
    torch = TorchBuild().module()
    ver = str(torch.__version__)
    mps = getattr(torch.backends, "mps", None)
    if mps is None or not mps.is_built():
        raise Missing(DEPENDENCY_MISSING, f"torch {ver} built without MPS", torch=ver, macos=mac)
    if not mps.is_available():
        raise Missing(HARDWARE_ABSENT, f"MPS built but not available (macOS {mac}, "
                      f"{platform.machine()}; needs Apple silicon or AMD GPU and macOS >= 12.3)",
                      torch=ver, macos=mac)
    # bf16 on MPS needs macOS 14+; fp16 always
    major = int(mac.split(".")[0]) if mac and mac.split(".")[0].isdigit() else 0
    return ok(f"MPS on macOS {mac} ({platform.machine()}); torch {ver}", torch=ver, macos=mac,
              machine=platform.machine(), precisions={"fp32": True, "fp16": True, "bf16": major >= 14})
