"""Sharded torch: tensor/expert parallel under torchrun (gloo on CPU, nccl across GPUs) and
accelerate's offloaded loading, each run in processes of its own (hfmatrix/distributed/).

``load`` gives a session whose ``job(plan, ...)`` runs the model once under that plan and returns
every rank's outputs and evidence; the suite (hfmatrix/suites/test_distributed.py) compares each rank with the
single-process CPU fp32 reference. fp32 only: the reference is fp32 and a sharded run changes
nothing about precision.
"""
from __future__ import annotations

import shutil
import sys
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from ..distributed import launch, plans
from .base import SHARDED, Arrays, Availability, BackendBase, SessionBase, Target

DEADLINE_S = 180.0  # one job on 2 busy cores takes 6-12 s; a job past this is hung, not slow


class DistributedSession(SessionBase):
    def __init__(self, model_dir: Path, spec, target: Target):
        self.model_dir, self.spec, self.target = Path(model_dir), spec, target
        self._scratch = Path(tempfile.mkdtemp(prefix="hfm-dist-"))
        # sessions cached by the plugin are never closed explicitly: their scratch goes at exit
        self._cleanup = weakref.finalize(self, shutil.rmtree, self._scratch, True)

    def job(self, plan: plans.Plan, inputs: Arrays, gen_inputs: Arrays, max_new_tokens: int, *,
            plant: str = "", fault: str = "", timeout: float = 30.0, deadline: float = DEADLINE_S) -> launch.JobResult:
        """Run the model once under ``plan``: forward on ``inputs``, greedy generation on ``gen_inputs``."""
        plans.require(plan, self.model_dir, self.target.device)
        out = Path(tempfile.mkdtemp(prefix=f"{plan.id}-", dir=self._scratch))
        np.savez(out / "in.npz", **inputs)
        np.savez(out / "gen.npz", **gen_inputs)
        common = ["--model", str(self.model_dir), "--auto-class", self.spec.auto_class, "--inputs", str(out / "in.npz"),
                  "--gen-inputs", str(out / "gen.npz"), "--max-new-tokens", str(max_new_tokens),
                  "--device", self.target.device]
        if plan.kind in ("tp", "ep"):
            args = [*common, "--strategy", plan.kind, "--timeout", str(timeout)]
            args += ["--plant", plant] if plant else []
            args += ["--fault", fault] if fault else []
            return launch.run(plan.world_size, args, out, deadline)
        return self._single(plan, common, out, deadline)

    def _single(self, plan: plans.Plan, common: list[str], out: Path, deadline: float) -> launch.JobResult:
        """Offload (or a two-device split) in one process; its outputs count as rank 0's."""
        import subprocess
        mode = plan.offload or "none"
        cmd = [sys.executable, "-m", "hfmatrix.distributed.offload", "--out", str(out), "--mode", mode, *common]
        started = time.monotonic()
        with open(out / "rank-0.log", "wb") as log:
            try:
                returncode = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=deadline).returncode
            except subprocess.TimeoutExpired:  # subprocess.run has killed it
                returncode = None
        logs = {0: (out / "rank-0.log").read_text(errors="replace")[-20000:]}
        if returncode != 0:
            kind = "deadline" if returncode is None else "rank-died"
            raise launch.JobFailed(kind, f"{plan.id} process: exit {returncode} (deadline {deadline:.0f} s)", logs,
                                   returncode, time.monotonic() - started, [])
        import json
        rank = launch.RankResult(0, dict(np.load(out / "rank-0.npz")), json.loads((out / "rank-0.json").read_text()), logs[0])
        return launch.JobResult(1, [rank], time.monotonic() - started)

    def evidence(self) -> dict[str, Any]:
        return {"model_dir": str(self.model_dir), "device": self.target.device}

    def close(self) -> None:
        self._cleanup()


class DistributedBackend(BackendBase):
    name = "distributed"
    CAPABILITIES = frozenset({SHARDED})  # the ranks are processes of their own
    precisions = ("fp32",)
    devices = ("cpu", "cuda")

    def available(self, device: str, precision: str) -> Availability:
        if device not in self.devices:
            return Availability(False, f"distributed runs on {', '.join(self.devices)}, not {device!r}", "unsupported-by-backend")
        if precision != "fp32":
            return Availability(False, f"sharded runs are compared in fp32 only, not {precision}", "unsupported-by-backend")
        try:
            import torch
            import torch.distributed as dist
        except ImportError as exc:
            return Availability(False, f"torch not importable: {exc}", "dependency-missing")
        if device == "cuda":
            from .base import UNUSABLE
            from .torch_backend import _cuda_available, hardware_present
            present, why = hardware_present("cuda")
            if not present:
                return Availability(False, why, "hardware-absent")
            ok, why = _cuda_available(torch)
            if not ok:  # present but unusable from this torch: a failure
                return Availability(False, why, UNUSABLE)
            if not dist.is_nccl_available():
                return Availability(False, f"torch {torch.__version__} built without nccl", "dependency-missing")
            return Availability(True, f"nccl on {torch.cuda.device_count()} GPU(s)")
        if not dist.is_available() or not dist.is_gloo_available():
            return Availability(False, f"torch {torch.__version__} built without torch.distributed/gloo", "dependency-missing")
        return Availability(True, "gloo on cpu")

    def load(self, model_dir: Path, spec, target: Target, **_policy) -> DistributedSession:
        self.available(target.device, target.precision).require()
        return DistributedSession(Path(model_dir), spec, target)

    def versions(self) -> dict[str, str]:
        from ..zoo.materialize import dist_versions
        found = dist_versions("torch", "transformers", "accelerate", "safetensors", "numpy")
        return {k: v for k, v in found.items() if v != "absent"}
