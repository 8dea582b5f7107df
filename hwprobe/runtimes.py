"""Inference runtimes: OpenVINO, ONNX Runtime, and ONNX Runtime's QNN plugin EP."""
from __future__ import annotations

import glob
import os
import platform

from ._entry import DEPENDENCY_MISSING, HARDWARE_ABSENT, Missing, _one_line, dist_version, ok, require

# Read-only OpenVINO device properties worth recording; each may be unsupported on a device.
_OV_PROPS = ("FULL_DEVICE_NAME", "DEVICE_TYPE", "DEVICE_ARCHITECTURE", "OPTIMIZATION_CAPABILITIES",
             "INFERENCE_PRECISION_HINT")

# Wheels that ship the `onnxruntime` module; which one is installed matters for the providers.
_ORT_DISTS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml",
              "onnxruntime-rocm", "onnxruntime-migraphx", "onnxruntime-qnn", "ort-nightly")

QNN_EP = "QNNExecutionProvider"


def probe_openvino() -> dict:
    ov = require("openvino")
    version = ov.get_version() if hasattr(ov, "get_version") else getattr(ov, "__version__", None)
    core = ov.Core()
    devices = []
    for name in core.available_devices:
        dev: dict = {"name": name}
        try:
            supported = {str(p) for p in core.get_property(name, "SUPPORTED_PROPERTIES")}
        except Exception:  # noqa: BLE001
            supported = set(_OV_PROPS)
        for prop in _OV_PROPS:
            if prop not in supported:
                continue
            try:
                value = core.get_property(name, prop)
            except Exception as e:  # noqa: BLE001 - record, don't fail, on one unreadable property
                dev.setdefault("errors", {})[prop] = _one_line(e)
                continue
            dev[prop.lower()] = [_ov_text(v) for v in value] if isinstance(value, (list, tuple)) else _ov_text(value)
        devices.append(dev)
    short = dist_version("openvino") or str(version)
    if not devices:
        raise Missing(HARDWARE_ABSENT, f"openvino {short}: Core().available_devices is empty",
                      version=version, devices=[])
    parts = []
    for d in devices:
        hint = d.get("inference_precision_hint")
        parts.append(f"{d['name']} ({d.get('full_device_name', '?')}"
                     + (f", default precision {hint}" if hint else "") + ")")
    return ok(f"openvino {short}: " + "; ".join(parts), version=version, package=short,
              devices=devices, device_names=[d["name"] for d in devices])


def _ov_text(value) -> str:
    """ov.Type -> "f32", property enums -> "INTEGRATED", anything else -> str()."""
    if hasattr(value, "get_type_name"):
        return str(value.get_type_name())
    name = getattr(value, "name", None)
    return name if isinstance(name, str) else str(value)


def _ep_device(d) -> dict:
    hw = getattr(d, "device", None)

    def get(obj, attr):
        try:
            value = getattr(obj, attr)
            return dict(value) if attr.endswith("metadata") or attr == "ep_options" else value
        except Exception:  # noqa: BLE001
            return None

    return {"ep_name": get(d, "ep_name"), "ep_vendor": get(d, "ep_vendor"),
            "device_type": str(get(hw, "type")).rsplit(".", 1)[-1] if hw is not None else None,
            "vendor": get(hw, "vendor"), "vendor_id": get(hw, "vendor_id"),
            "device_id": get(hw, "device_id"), "metadata": get(hw, "metadata"),
            "ep_metadata": get(d, "ep_metadata")}


def _ep_devices(ort) -> list[dict] | None:
    if not hasattr(ort, "get_ep_devices"):  # onnxruntime < 1.22
        return None
    return [_ep_device(d) for d in ort.get_ep_devices()]


def probe_onnxruntime() -> dict:
    ort = require("onnxruntime")
    providers = list(ort.get_available_providers())
    dists = {d: v for d in _ORT_DISTS if (v := dist_version(d))}
    device = ort.get_device()
    ep_devices = _ep_devices(ort)
    return ok(f"onnxruntime {ort.__version__} ({device}): {', '.join(providers)}",
              version=ort.__version__, distributions=dists, device=device, providers=providers,
              ep_devices=ep_devices)


def _qnn_libraries(*dirs: str) -> list[str]:
    found = set()
    for d in dirs:
        if d and os.path.isdir(d):
            for pattern in ("libQnn*.so", "QnnHtp*.dll", "QnnCpu*.dll", "QnnGpu*.dll", "libQnn*.so.*"):
                found.update(os.path.basename(p) for p in glob.glob(os.path.join(d, pattern)))
    return sorted(found)


def _backends(libs: list[str]) -> dict:
    names = {lib.lower() for lib in libs}
    return {b: any(n in names for n in (f"libqnn{b}.so", f"qnn{b}.dll")) for b in ("htp", "cpu", "gpu")}


def _emulation_note(backends: dict) -> str | None:
    # Qualcomm NPUs sit in arm64 SoCs; an HTP backend on x86 is QNN's simulator.
    machine = platform.machine().lower()
    if backends.get("htp") and machine in ("x86_64", "amd64", "i386", "i686"):
        return f"{machine} host: QNN HTP runs as a simulator here, not on Qualcomm hardware"
    return None


def probe_qnn() -> dict:
    ort = require("onnxruntime")
    try:
        qnn = require("onnxruntime_qnn", "onnxruntime-qnn")
    except Missing:
        if QNN_EP in ort.get_available_providers():  # pre-plugin wheels built QNN into onnxruntime
            return _builtin_qnn(ort)
        raise
    pkg_version = dist_version("onnxruntime-qnn") or getattr(qnn, "__version__", None)
    lib = qnn.get_library_path()
    libs = _qnn_libraries(os.path.dirname(lib), os.path.dirname(qnn.__file__))
    backends = _backends(libs)
    common = dict(package=pkg_version, onnxruntime=ort.__version__, library_path=lib,
                  backend_libraries=libs, backends=backends, emulation=_emulation_note(backends))
    if not hasattr(ort, "register_execution_provider_library"):
        raise Missing(DEPENDENCY_MISSING, f"onnxruntime {ort.__version__} cannot register plugin EPs "
                      f"(onnxruntime-qnn {pkg_version} needs a newer onnxruntime)", **common)

    def qnn_devices():
        return [d for d in _ep_devices(ort) or [] if d["ep_name"] == QNN_EP]

    already = qnn_devices()
    registered_here = False
    if not already:
        try:
            ort.register_execution_provider_library(QNN_EP, lib)
            registered_here = True
        except Exception as e:  # noqa: BLE001
            raise Missing(DEPENDENCY_MISSING, f"QNN EP library did not register: {_one_line(e)}",
                          registered=False, **common) from None
    try:
        devices = already or qnn_devices()
    finally:
        if registered_here:  # leave the process as we found it for the backend that registers later
            try:
                ort.unregister_execution_provider_library(QNN_EP)
            except Exception:  # noqa: BLE001
                pass
    common.update(registered=True, registered_by_probe=registered_here, ep_devices=devices)
    if not devices:
        raise Missing(HARDWARE_ABSENT, f"QNN EP registered (onnxruntime-qnn {pkg_version}) but offers "
                      "no devices", **common)
    kinds = ", ".join(sorted({str(d["device_type"]) for d in devices}))
    present = [b for b, have in backends.items() if have]
    note = common["emulation"]
    return ok(f"onnxruntime-qnn {pkg_version}: QNN EP registers, EP devices {kinds}; backend libraries "
              f"{', '.join(present) or 'none found'}" + (f" ({note})" if note else ""), **common)


def _builtin_qnn(ort) -> dict:
    capi = os.path.join(os.path.dirname(ort.__file__), "capi")
    libs = _qnn_libraries(capi)
    backends = _backends(libs)
    note = _emulation_note(backends)
    dists = {d: v for d in _ORT_DISTS if (v := dist_version(d))}
    if not any(backends.values()):
        raise Missing(DEPENDENCY_MISSING, f"QNNExecutionProvider built into onnxruntime {ort.__version__} "
                      f"but no QNN backend library (libQnnHtp/libQnnCpu) in {capi}", builtin=True,
                      backend_libraries=libs, backends=backends)
    return ok(f"QNNExecutionProvider built into onnxruntime {ort.__version__}; backend libraries "
              f"{', '.join(b for b, h in backends.items() if h) or 'none found'}" + (f" ({note})" if note else ""),
              package=dists.get("onnxruntime-qnn"), onnxruntime=ort.__version__, builtin=True,
              backend_libraries=libs, backends=backends, emulation=note)
