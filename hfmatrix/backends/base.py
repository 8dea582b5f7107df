"""The backend contract. Small on purpose: every backend adapter implements exactly this.

spec (data) -> materialize -> model folder -> Backend.load(...) -> Session.run(inputs) -> numpy.

* Inputs and outputs are ``dict[str, numpy.ndarray]``; outputs are keyed by the model output names
  the reference (CPU fp32 torch) uses, e.g. ``last_hidden_state``, ``logits``, ``pooler_output``,
  so parity can compare key by key.
* ``Session.evidence()`` says where the model REALLY ran (ORT providers in use, OpenVINO
  EXECUTION_DEVICES, torch device and dtype of the parameters, browser adapter). A backend that
  cannot prove where it ran must not claim it.
* A backend that cannot run a model raises a ``hfmatrix.skips.TypedSkip`` subclass
  (``Unsupported`` with the exporter's message, ``HardwareAbsent`` with the probe's reason,
  ``DependencyMissing``). Anything else raised is a failure.
* Everything a check needs beyond run/generate is a declared member of the contract, so suites,
  hfmatrix/memory.py and hfmatrix/perf/ never import a backend module or name a backend:
  ``Backend.capabilities(device)`` (what the backend offers there, known before any load: the plugin
  collects capability-marked checks by it), ``Backend.device_ops(device)`` (the device's
  synchronize / empty-cache / memory counters / timer: a ``DeviceOps``), ``Backend.pin_threads(n)``;
  ``Session.capabilities``, ``Session.in_process``, ``Session.loading_info``, ``Session.module()``
  (the framework module where one exists), ``Session.device_ops`` and ``Session.device_memory()``.
  ``BackendBase`` / ``SessionBase`` hold the defaults (a host device without counters, no module);
  every adapter inherits them and overrides what it has.
"""
from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np

Arrays = dict[str, np.ndarray]


#: Availability.kind of a device the hardware probe finds present but the framework cannot use (a driver or
#: build mismatch): not a skip kind; ``require()`` raises DeviceUnusable, a failure
UNUSABLE = "unusable"


class DeviceUnusable(RuntimeError):
    """The accelerator is present (hwprobe) but the backend's framework cannot use it: a failure, never a skip."""


class RunTimeout(RuntimeError):
    """A run the backend did not answer within its own deadline (``seconds`` waited): no answer a check can
    judge, so a check lets it through as the cell's failure (a known bug names the subclass, e.g. the web
    backend's WebRunTimeout). The session stays usable: the backend tears down what the run was stuck in."""

    def __init__(self, seconds: float, message: str):
        super().__init__(message)
        self.seconds = seconds


@dataclass(frozen=True)
class Availability:
    ok: bool
    reason: str = ""
    kind: str = ""  # a hfmatrix.skips kind when not ok
    details: dict[str, Any] = field(default_factory=dict)

    def require(self) -> "Availability":
        """Self when ok, else raise its typed skip (what every backend's load starts with)."""
        if not self.ok:
            if self.kind == UNUSABLE:
                raise DeviceUnusable(self.reason)
            from ..skips import typed
            raise typed(self.kind, self.reason)
        return self


@dataclass(frozen=True)
class Target:
    """One column of the matrix: backend x device x requested precision. ``resolved`` is the precision
    the backend says it computes with for that request (hfmatrix.precision); verdicts (tolerances, known
    bugs, baselines) are looked up by ``effective``. It is not part of the target's identity."""

    backend: str
    device: str = "cpu"
    precision: str = "fp32"
    resolved: str = field(default="", compare=False)

    @property
    def id(self) -> str:
        return f"{self.backend}-{self.device}-{self.precision}"

    @property
    def effective(self) -> str:
        return self.resolved or self.precision


# ----------------------------------------------------------------------------- capabilities
#: the model runs in this Python process: its RSS, rlimits and heap counters see the model's memory
IN_PROCESS = "in-process"
#: Session.module() is a torch.nn.Module (a transformers PreTrainedModel): state_dict, save_pretrained, pipeline
TORCH_MODULE = "torch-module"
#: Session.device_ops has real device counters (allocated bytes, peak), caches and queues: accelerator checks
DEVICE_MEMORY = "device-memory"
#: the session is a text API (TextGenerator: an OpenAI-compatible server)
TEXT_API = "text-api"
#: the session runs one model sharded over several processes (Session.job)
SHARDED = "sharded"
CAPABILITIES = frozenset({IN_PROCESS, TORCH_MODULE, DEVICE_MEMORY, TEXT_API, SHARDED})


# ----------------------------------------------------------------------------- device operations
class WallTimer:
    """perf_counter_ns around the call; the device is synchronized inside the timed region."""

    name = "wall"

    def __init__(self, sync: Callable[[], None] | None = None):
        self.sync = sync or (lambda: None)
        self._t0 = 0
        self._ns: list[int] = []

    def start(self) -> None:
        self._t0 = time.perf_counter_ns()

    def stop(self) -> None:
        self.sync()
        self._ns.append(time.perf_counter_ns() - self._t0)

    def samples(self) -> list[float]:
        return [ns / 1e9 for ns in self._ns]


class DeviceOps:
    """What a check may do with the device a backend drives (transformers' per-device dispatch, behind the
    contract). This base is a device this process has no counters or queues for (the host CPU, a browser's
    adapter, a server, an NPU driven through a runtime): memory is {} and the rest a no-op. A backend whose
    framework drives the device (torch on CUDA, ROCm, MPS) returns a subclass."""

    #: whether memory() reads real device counters (the DEVICE_MEMORY capability)
    has_memory = False
    #: the exception an allocation beyond free memory raises (None: no such contract on this device)
    out_of_memory: type[BaseException] | None = None

    def __init__(self, name: str):
        self.name = name

    def synchronize(self) -> None:
        """Wait for queued device work (run() already returns host arrays: a no-op without a queue)."""

    def empty_cache(self) -> None:
        """Hand cached blocks back to the device."""

    def memory(self) -> dict[str, int]:
        """Device bytes, keys as optimum-benchmark's: allocated, max_allocated, reserved ({} without counters)."""
        return {}

    def reset_peak(self) -> None:
        """Restart the max_allocated counter."""

    def allocated(self) -> int | None:
        value = self.memory().get("allocated")
        return int(value) if value is not None else None

    def settle(self) -> None:
        """Before reading counters: collect, finish queued work, return cached blocks."""
        gc.collect()
        self.synchronize()
        self.empty_cache()

    def timer(self) -> Callable[[], Any]:
        """Factory of a fresh timer (start/stop/samples/name): wall clock, synchronized inside the region."""
        return lambda: WallTimer(self.synchronize)

    def mem_info(self) -> tuple[int, int] | None:
        """(free, total) device bytes, None where unknown."""
        return None

    def allocate(self, nbytes: int) -> Any:
        """Allocate nbytes on the device (out_of_memory is what an allocation beyond free memory raises)."""
        raise NotImplementedError(f"{self.name}: no device allocation through the contract")


# ----------------------------------------------------------------------------- the contract
@runtime_checkable
class Session(Protocol):
    target: Target
    #: the loader's report (missing / unexpected / mismatched keys) where the loader gives one, else None
    loading_info: dict[str, Any] | None

    @property
    def capabilities(self) -> frozenset[str]: ...

    @property
    def in_process(self) -> bool: ...

    @property
    def device_ops(self) -> DeviceOps: ...

    def module(self) -> Any:
        """The framework module the session runs (a torch.nn.Module for TORCH_MODULE), None where there is none."""
        ...

    def device_memory(self) -> int | None:
        """Allocated device bytes on the session's device (None where the device has no counters)."""
        ...

    def run_split(self, inputs: Arrays) -> Arrays:
        """The model split across devices: input embeddings on the host CPU, the rest on the session's device
        (raises hfmatrix.skips.Unsupported where the session cannot split)."""
        ...

    def run(self, inputs: Arrays) -> Arrays: ...

    def generate(self, inputs: Arrays, max_new_tokens: int) -> np.ndarray:
        """Greedy token ids, shape (batch, prompt+new) for decoders, (batch, new+start) for seq2seq."""
        ...

    def evidence(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


@runtime_checkable
class TextGenerator(Protocol):
    """A session that answers with text only (an OpenAI-compatible server): checks compare its text
    with the reference's greedy ids decoded by the same tokenizer (zoo.inputs.decode_new)."""

    def generate_text(self, inputs: Arrays, max_new_tokens: int) -> list[str]:
        """The new text of each prompt row, greedy, exactly max_new_tokens tokens."""
        ...

    def stream_text(self, inputs: Arrays, max_new_tokens: int) -> list[str]:
        """The same request streamed: the concatenated deltas of each row."""
        ...


class Backend(Protocol):
    name: str
    #: precisions this backend knows, first is the default
    precisions: tuple[str, ...]
    devices: tuple[str, ...]

    def available(self, device: str, precision: str) -> Availability: ...

    def load(self, model_dir: Path, spec: Any, target: Target) -> Session: ...

    def versions(self) -> dict[str, str]:
        """Library versions that matter for this backend (goes into every record)."""
        ...

    def capabilities(self, device: str) -> frozenset[str]: ...

    def device_ops(self, device: str) -> DeviceOps: ...

    def pin_threads(self, n: int | None) -> Any: ...


class BackendBase:
    """Defaults of the Backend contract every adapter inherits."""

    #: capabilities on every device (IN_PROCESS unless the model runs in other processes)
    CAPABILITIES: frozenset[str] = frozenset({IN_PROCESS})

    def device_ops(self, device: str) -> DeviceOps:
        return DeviceOps(device)

    def capabilities(self, device: str) -> frozenset[str]:
        """What checks may rely on for sessions of this backend on ``device`` (known before any load)."""
        return self.CAPABILITIES | ({DEVICE_MEMORY} if self.device_ops(device).has_memory else frozenset())

    def pin_threads(self, n: int | None) -> tuple[Any, Callable[[], None], Callable[[], dict[str, Any]]] | None:
        """Set this process's intra-op threads for the backend's framework: (before, restore, read back), or
        None where the backend reads HFMATRIX_THREADS itself when it creates a session."""
        return None


class SessionBase:
    """Defaults of the Session contract every adapter's session inherits."""

    target: Target
    loading_info: dict[str, Any] | None = None

    def _backend(self) -> "Backend":
        from . import get
        return get(self.target.backend)

    @property
    def capabilities(self) -> frozenset[str]:
        return self._backend().capabilities(self.target.device)

    @property
    def in_process(self) -> bool:
        return IN_PROCESS in self.capabilities

    @property
    def device_ops(self) -> DeviceOps:
        return self._backend().device_ops(self.target.device)

    def module(self) -> Any:
        return None

    def device_memory(self) -> int | None:
        return self.device_ops.allocated()

    def run_split(self, inputs: Arrays) -> Arrays:
        from ..skips import Unsupported
        raise Unsupported(f"{type(self).__name__} cannot split a model across devices")
