"""PyTorch backend: cpu, cuda, rocm, mps × fp32, fp16, bf16.

Per-device behaviour lives in DEVICE_OPS (dispatch table keyed by device name), not in if/else
chains: torch device string, availability, synchronize, empty_cache, memory stats.
"""
from __future__ import annotations

import gc
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..skips import DependencyMissing
from .base import IN_PROCESS, TORCH_MODULE, UNUSABLE, Arrays, Availability, BackendBase, DeviceOps, SessionBase, Target

DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16", "fp64": "float64"}
# outputs that are caches or tuples of layers, not comparable results
SKIP_OUTPUTS = {"past_key_values", "cache_params", "encoder_past_key_values"}


def _torch():
    try:
        import torch
    except ImportError as exc:  # the env does not have it: a typed reason, not a crash
        raise DependencyMissing(f"torch not importable: {exc}") from None
    return torch


from hwprobe.presence import hardware_present  # noqa: E402,F401


def _cuda_available(torch) -> tuple[bool, str]:
    """(usable, why) for a present NVIDIA GPU (TorchBackend.available asks hwprobe's presence first)."""
    if getattr(torch.version, "hip", None):
        return False, f"torch is a ROCm build (HIP {torch.version.hip}), not CUDA"
    if not torch.version.cuda:
        return False, f"torch {torch.__version__} built without CUDA"
    if not torch.cuda.is_available():
        return False, "no CUDA device visible (torch.cuda.is_available() is False)"
    return True, torch.cuda.get_device_name(0)


def _rocm_available(torch) -> tuple[bool, str]:
    if not getattr(torch.version, "hip", None):
        return False, f"torch {torch.__version__} is not a ROCm build (torch.version.hip is None)"
    if not torch.cuda.is_available():
        return False, "ROCm torch but no AMD GPU visible"
    return True, torch.cuda.get_device_name(0)


def _mps_available(torch) -> tuple[bool, str]:
    mps = getattr(torch.backends, "mps", None)
    if mps is None or not mps.is_built():
        return False, f"torch {torch.__version__} built without MPS"
    if not mps.is_available():
        return False, "MPS not available (needs macOS on Apple silicon)"
    return True, "Apple MPS"


def _cuda_precisions(torch) -> set[str]:
    ok = {"fp32", "fp16"}
    if torch.cuda.is_bf16_supported():
        ok.add("bf16")
    return ok


def _cuda_evidence(torch) -> dict[str, Any]:
    i = torch.cuda.current_device()
    p = torch.cuda.get_device_properties(i)
    return {"device_name": p.name, "capability": f"{p.major}.{p.minor}", "total_memory": p.total_memory,
            "cuda": torch.version.cuda, "hip": getattr(torch.version, "hip", None)}


def _cuda_memory(torch) -> dict[str, int]:
    return {"allocated": torch.cuda.memory_allocated(), "max_allocated": torch.cuda.max_memory_allocated(),
            "reserved": torch.cuda.memory_reserved()}


def _nothing(torch) -> None:
    return None


def _empty(torch) -> dict:
    return {}


# device name -> how to do each device-specific thing
DEVICE_OPS: dict[str, dict[str, Callable]] = {
    "cpu": {"torch_device": lambda t: "cpu", "available": lambda t: (True, "cpu"),
            # fp64: the independent reference for CPU fp32 torch itself (not a matrix target)
            "precisions": lambda t: {"fp32", "bf16", "fp16", "fp64"}, "synchronize": _nothing, "empty_cache": _nothing,
            "memory": _empty, "reset_peak": _nothing, "evidence": _empty},
    "cuda": {"torch_device": lambda t: "cuda", "available": _cuda_available, "precisions": _cuda_precisions,
             "synchronize": lambda t: t.cuda.synchronize(), "empty_cache": lambda t: t.cuda.empty_cache(),
             "memory": _cuda_memory, "reset_peak": lambda t: t.cuda.reset_peak_memory_stats(),
             "evidence": _cuda_evidence},
    "rocm": {"torch_device": lambda t: "cuda", "available": _rocm_available, "precisions": _cuda_precisions,
             "synchronize": lambda t: t.cuda.synchronize(), "empty_cache": lambda t: t.cuda.empty_cache(),
             "memory": _cuda_memory, "reset_peak": lambda t: t.cuda.reset_peak_memory_stats(),
             "evidence": _cuda_evidence},
    "mps": {"torch_device": lambda t: "mps", "available": _mps_available,
            "precisions": lambda t: {"fp32", "fp16", "bf16"},
            "synchronize": lambda t: t.mps.synchronize(), "empty_cache": lambda t: t.mps.empty_cache(),
            "memory": lambda t: {"allocated": t.mps.current_allocated_memory()}, "reset_peak": _nothing,
            "evidence": lambda t: {"device_name": "Apple MPS"}},
}


def device_op(device: str, op: str, *args):
    """Run a device-specific operation. Devices torch does not drive (wasm, webgpu, htp, an
    OpenVINO GPU...) have no torch-side counters or queues: memory is {} and the rest a no-op."""
    if device not in DEVICE_OPS:
        return {} if op == "memory" else None
    torch = _torch()
    return DEVICE_OPS[device][op](torch, *args)


class CudaEventTimer:
    """CUDA events recorded on the current stream around each call: the device's own clock, no
    host-side jitter. Read once after a final synchronize (reading earlier would block per call)."""

    name = "cuda-event"

    def __init__(self, torch):
        self.torch = torch
        self._pairs: list[tuple[Any, Any]] = []
        self._start = None

    def start(self) -> None:
        self._start = self.torch.cuda.Event(enable_timing=True)
        self._start.record()

    def stop(self) -> None:
        end = self.torch.cuda.Event(enable_timing=True)
        end.record()
        self._pairs.append((self._start, end))

    def samples(self) -> list[float]:
        self.torch.cuda.synchronize()
        return [s.elapsed_time(e) / 1e3 for s, e in self._pairs]  # elapsed_time is in ms


class TorchDevice(DeviceOps):
    """An accelerator torch drives (DEVICE_OPS): its counters, caches, queue, clock and OOM contract."""

    has_memory = True

    def synchronize(self) -> None:
        device_op(self.name, "synchronize")

    def empty_cache(self) -> None:
        device_op(self.name, "empty_cache")

    def memory(self) -> dict[str, int]:
        return device_op(self.name, "memory")

    def reset_peak(self) -> None:
        device_op(self.name, "reset_peak")

    def timer(self):
        if DEVICE_OPS[self.name]["torch_device"](None) == "cuda":  # CUDA and ROCm (HIP) have events
            torch = _torch()
            return lambda: CudaEventTimer(torch)
        return super().timer()

    @property
    def out_of_memory(self):  # MPS has no OutOfMemoryError contract
        return _torch().cuda.OutOfMemoryError if DEVICE_OPS[self.name]["torch_device"](None) == "cuda" else None

    def mem_info(self) -> tuple[int, int] | None:
        if self.out_of_memory is None:
            return None
        free, total = _torch().cuda.mem_get_info()
        return int(free), int(total)

    def allocate(self, nbytes: int):
        torch = _torch()
        return torch.empty(int(nbytes), dtype=torch.uint8, device=DEVICE_OPS[self.name]["torch_device"](torch))


def _torch_threads(n: int | None):
    torch = _torch()
    before = (torch.get_num_threads(), torch.get_num_interop_threads())
    if n is not None:
        torch.set_num_threads(n)
    return before, lambda: torch.set_num_threads(before[0]), \
        lambda: {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads(),
                 "applied_by": "torch.set_num_threads"}


def to_numpy(value) -> np.ndarray:
    value = value.detach().to("cpu")
    if value.is_floating_point() and value.dtype != _torch().float64:  # a float64 reference keeps its digits
        value = value.float()
    return value.numpy()


def outputs_to_numpy(out) -> Arrays:
    """Tensor fields of a ModelOutput (or a plain tensor) as float32/int numpy, caches dropped."""
    torch = _torch()
    items = out.items() if hasattr(out, "items") else [("output", out)]
    result: Arrays = {}
    for key, value in items:
        if key in SKIP_OUTPUTS or value is None:
            continue
        if isinstance(value, torch.Tensor):
            result[key] = to_numpy(value)
    return result


def _first_float(torch, value):
    """The first floating-point tensor of a module's output (a tensor, a tuple, a ModelOutput)."""
    if isinstance(value, torch.Tensor):
        return value if value.is_floating_point() else None
    items = value.values() if hasattr(value, "values") else value if isinstance(value, (tuple, list)) else ()
    for v in items:
        t = _first_float(torch, v)
        if t is not None:
            return t
    return None


def module_outputs(model, call) -> list[tuple[str, str, np.ndarray]]:
    """(module name, module class, first output) of every named module during ``call()``, in the order
    the modules finish (forward hooks; a module called twice: its first call): what hfmatrix.localize
    compares layer by layer."""
    torch = _torch()
    captured: dict[str, tuple[str, str, np.ndarray]] = {}

    def hook(name):
        def record(module, args, output):
            t = _first_float(torch, output)
            if t is not None and name not in captured:
                captured[name] = (name, type(module).__name__, to_numpy(t))
        return record
    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if n]
    try:
        call()
    finally:
        for h in handles:
            h.remove()
    return list(captured.values())


def parameter_placement(model, device: str, dtype: str) -> dict[str, Any]:
    """``placement`` (each parameter's device type) and ``dtype_placement`` (each floating parameter's dtype)
    for hfmatrix.placement, counted in parameters. Parameters of the model's own ``_keep_in_fp32_modules``
    (transformers keeps them fp32 on purpose, e.g. T5's ``wo`` under fp16) are listed, not counted."""
    from .. import placement

    keep = set(getattr(model, "_keep_in_fp32_modules", None) or ()) | set(
        getattr(model, "_keep_in_fp32_modules_strict", None) or ())
    devices: dict[str, dict[str, int]] = {}
    dtypes: dict[str, dict[str, int]] = {}
    kept: dict[str, int] = {}
    for name, p in model.named_parameters():
        devices.setdefault(p.device.type, {})[name] = 1
        if not p.is_floating_point():
            continue
        dt = str(p.dtype).replace("torch.", "")
        if dt == "float32" and dt != dtype and any(k in name.split(".") for k in keep):
            kept[name] = 1
            continue
        dtypes.setdefault(dt, {})[name] = 1
    return {"placement": placement.build(device, devices, unit="parameters"),
            "dtype_placement": placement.build(dtype, dtypes, unit="parameters",
                                               not_counted={"keep_in_fp32_modules": kept})}


class TorchSession(SessionBase):
    def __init__(self, model, spec, target: Target, loading_info: dict[str, Any], model_dir: Path):
        self.model = model
        self.spec = spec
        self.target = target
        self.loading_info = loading_info
        self.model_dir = model_dir
        self._torch = _torch()
        self._device = DEVICE_OPS[target.device]["torch_device"](self._torch)
        self._dtype = getattr(self._torch, DTYPES[target.precision])
        import inspect
        params = inspect.signature(model.forward).parameters
        # BertForSequenceClassification on transformers 4.57 has config.use_cache but no such argument
        self._takes_use_cache = "use_cache" in params or any(p.kind == p.VAR_KEYWORD for p in params.values())

    def _tensors(self, inputs: Arrays) -> dict[str, Any]:
        torch = self._torch
        out = {}
        for key, value in inputs.items():
            t = torch.from_numpy(np.ascontiguousarray(value))
            if t.is_floating_point():
                t = t.to(self._dtype)
            out[key] = t.to(self._device)
        return out

    def run(self, inputs: Arrays) -> Arrays:
        torch = self._torch
        kwargs = self._tensors(inputs)
        if self._takes_use_cache and "use_cache" not in kwargs:
            kwargs["use_cache"] = False  # compare outputs, not caches
        with torch.inference_mode():
            out = self.model(**kwargs)
        device_op(self.target.device, "synchronize")
        return outputs_to_numpy(out)

    def generate(self, inputs: Arrays, max_new_tokens: int) -> np.ndarray:
        torch = self._torch
        kwargs = self._tensors(inputs)
        cfg = getattr(self.model, "generation_config", None)
        pad = cfg.pad_token_id if cfg is not None and cfg.pad_token_id is not None else None
        if pad is None and cfg is not None:
            eos = cfg.eos_token_id
            pad = eos[0] if isinstance(eos, (list, tuple)) else eos
        with torch.inference_mode():
            ids = self.model.generate(**kwargs, max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens,
                                      do_sample=False, num_beams=1, pad_token_id=pad)
        return ids.to("cpu").numpy()

    def module(self):
        """The transformers model (a torch.nn.Module): state_dict, save_pretrained, pipeline, towers."""
        return self.model

    def run_split(self, inputs: Arrays) -> Arrays:
        """Input embeddings on the host CPU in fp32, the rest of the model on its device (a model split
        across devices). Unsupported where the inputs or the model have no input-embedding split point."""
        from ..skips import Unsupported
        torch, model = self._torch, self.model
        if "input_ids" not in inputs or not hasattr(model, "get_input_embeddings"):
            raise Unsupported(f"{self.spec.id} has no input-embedding split point")
        emb = model.get_input_embeddings()
        cpu_emb = type(emb)(emb.num_embeddings, emb.embedding_dim).to(torch.float32)
        cpu_emb.load_state_dict({k: v.float().cpu() for k, v in emb.state_dict().items()})
        with torch.inference_mode():
            embeds = cpu_emb(torch.from_numpy(inputs["input_ids"]))  # the cpu part
        first = next(model.parameters())
        rest = {k: torch.from_numpy(v).to(first.device) for k, v in inputs.items() if k != "input_ids"}
        with torch.inference_mode():
            out = model(inputs_embeds=embeds.to(first.device, first.dtype), **rest)
        return outputs_to_numpy(out)

    def intermediates(self, inputs: Arrays) -> list[tuple[str, str, np.ndarray]]:
        """(module name, module class, first output) per module on these inputs (hfmatrix.localize)."""
        return module_outputs(self.model, lambda: self.run(inputs))

    def effective_precision(self) -> str:
        """The floating dtype most parameters are in, named (hfmatrix.precision): what the model computes with."""
        from ..precision import of_parameters
        elements: dict[str, int] = {}
        for p in self.model.parameters():
            if p.is_floating_point():
                key = str(p.dtype).replace("torch.", "")
                elements[key] = elements.get(key, 0) + p.numel()
        return of_parameters(elements)

    def evidence(self) -> dict[str, Any]:
        params = list(self.model.parameters())
        return {
            "torch_device": str(params[0].device) if params else self._device,
            "param_dtypes": sorted({str(p.dtype).replace("torch.", "") for p in params}),
            "model_class": type(self.model).__name__,
            "n_params": sum(p.numel() for p in params),
            **parameter_placement(self.model, self._device, DTYPES[self.target.precision]),
            **DEVICE_OPS[self.target.device]["evidence"](self._torch),
        }

    def close(self) -> None:
        self.model = None
        gc.collect()
        device_op(self.target.device, "empty_cache")


class TorchBackend(BackendBase):
    name = "torch"
    precisions = ("fp32", "fp16", "bf16")
    devices = tuple(DEVICE_OPS)
    CAPABILITIES = frozenset({IN_PROCESS, TORCH_MODULE})

    def device_ops(self, device: str) -> DeviceOps:
        """Counters, caches and events for the accelerators torch drives; the host CPU has none."""
        return TorchDevice(device) if device in DEVICE_OPS and device != "cpu" else DeviceOps(device)

    def pin_threads(self, n: int | None):
        return _torch_threads(n)

    def available(self, device: str, precision: str) -> Availability:
        if device not in DEVICE_OPS:
            return Availability(False, f"unknown torch device {device!r}; known: {', '.join(DEVICE_OPS)}", "unsupported-by-backend")
        present, why = hardware_present(device)  # hardware first: its absence is the honest reason
        if not present:
            return Availability(False, why, "hardware-absent")
        try:
            torch = _torch()
        except DependencyMissing as exc:
            return Availability(False, exc.reason, exc.kind)
        ok, why = DEVICE_OPS[device]["available"](torch)
        if not ok:  # present (hwprobe said so above) but this torch cannot use it: a failure, not a skip
            return Availability(False, f"the {device} hardware is present but unusable from torch "
                                f"{torch.__version__}: {why}", UNUSABLE)
        if precision not in DEVICE_OPS[device]["precisions"](torch):
            return Availability(False, f"{precision} not supported on {device} ({why})", "hardware-absent")
        return Availability(True, why)

    def load(self, model_dir: Path, spec, target: Target, *, allow_pickle: bool = False,
             trust_remote_code: bool = False) -> TorchSession:
        self.available(target.device, target.precision).require()
        torch = _torch()
        import transformers

        from ..safeload import pretrained_kwargs
        # safetensors only unless allow_pickle; a folder's own code (auto_map) refused unless this
        # model id is trusted (RemoteCodeRefused names the opt-in)
        policy = pretrained_kwargs(Path(model_dir), allow_pickle=allow_pickle, trust_remote_code=trust_remote_code,
                                   model_id=getattr(spec, "id", ""))
        policy.pop("weights_only")  # transformers' torch.load of a pickle checkpoint is weights_only already
        auto = getattr(transformers, spec.auto_class)
        if target.precision == "fp64" and hasattr(transformers.PreTrainedModel, "set_experts_implementation"):
            policy["experts_implementation"] = "eager"  # torch's grouped-mm MoE kernel has no float64 (5.x)
        model, info = auto.from_pretrained(
            str(model_dir), output_loading_info=True, dtype=getattr(torch, DTYPES[target.precision]), **policy)
        model.eval()
        model.to(DEVICE_OPS[target.device]["torch_device"](torch))
        info = {k: sorted(map(str, v)) if isinstance(v, (list, set, tuple)) else str(v) for k, v in info.items()}
        return TorchSession(model, spec, target, info, Path(model_dir))

    def versions(self) -> dict[str, str]:
        from ..zoo.materialize import dist_versions
        found = dist_versions("torch", "transformers", "tokenizers", "safetensors", "huggingface_hub", "numpy")
        return {k: v for k, v in found.items() if v != "absent"}
