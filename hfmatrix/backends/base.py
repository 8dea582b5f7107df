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
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

Arrays = dict[str, np.ndarray]


#: Availability.kind of a device the hardware probe finds present but the framework cannot use (a driver or
#: build mismatch): not a skip kind; ``require()`` raises DeviceUnusable, a failure
UNUSABLE = "unusable"


class DeviceUnusable(RuntimeError):
    """The accelerator is present (hwprobe) but the backend's framework cannot use it: a failure, never a skip."""


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


@runtime_checkable
class Session(Protocol):
    target: Target

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
