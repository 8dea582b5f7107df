"""Backend registry. Adapters are imported lazily: a session's env holds only its own stack."""
from __future__ import annotations

import importlib

from .base import Availability, Backend, Session, Target, TextGenerator

# name -> "module:attribute"; a new backend adds one line here.
REGISTRY: dict[str, str] = {
    "torch": "hfmatrix.backends.torch_backend:TorchBackend",
    "onnxruntime": "hfmatrix.backends.onnxruntime_backend:OnnxRuntimeBackend",
    "qnn": "hfmatrix.backends.onnxruntime_backend:QnnBackend",
    "openvino": "hfmatrix.backends.openvino_backend:OpenVINOBackend",
    "web": "hfmatrix.backends.web_backend:WebBackend",
    "distributed": "hfmatrix.backends.distributed_backend:DistributedBackend",
    "serve": "hfmatrix.backends.serve_backend:ServeBackend",
}

_instances: dict[str, Backend] = {}


def get(name: str) -> Backend:
    if name not in REGISTRY:
        raise KeyError(f"unknown backend {name!r}; known: {', '.join(sorted(REGISTRY))}")
    if name not in _instances:
        module, attr = REGISTRY[name].split(":")
        _instances[name] = getattr(importlib.import_module(module), attr)()
    return _instances[name]


__all__ = ["Availability", "Backend", "Session", "Target", "TextGenerator", "REGISTRY", "get"]
