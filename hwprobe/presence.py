"""Is an accelerator physically present? Stdlib only, no torch: used to pick an env (a multi-GB
accelerator build is pointless without the hardware) and as the first hardware-absent reason."""
from __future__ import annotations

import os
import platform
import shutil


def nvidia() -> tuple[bool, str]:
    if os.path.exists("/dev/nvidiactl") or os.path.exists("/proc/driver/nvidia/version") or shutil.which("nvidia-smi"):
        return True, ""
    return False, "no NVIDIA GPU on this machine (no /dev/nvidiactl, no NVIDIA driver, no nvidia-smi)"


def amd() -> tuple[bool, str]:
    if os.path.exists("/dev/kfd") or shutil.which("rocminfo"):
        return True, ""
    return False, "no AMD GPU on this machine (no /dev/kfd, no rocminfo)"


def apple() -> tuple[bool, str]:
    if platform.system() == "Darwin" and platform.machine() == "arm64":
        return True, ""
    return False, f"no Apple GPU: MPS needs macOS on Apple silicon (this is {platform.system()} {platform.machine()})"


PRESENT = {"cpu": lambda: (True, ""), "cuda": nvidia, "rocm": amd, "mps": apple}


def hardware_present(device: str) -> tuple[bool, str]:
    return PRESENT[device]()
