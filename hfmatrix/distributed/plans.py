"""Which sharding plans apply to a model, and the typed skip when one cannot run here.

A plan is one way of running a model across processes or devices: tensor parallel (``tp``) and expert
parallel (``ep``, MoE only) under torchrun, accelerate's offloaded loading (``offload``: layers kept on
disk or in host memory and brought in per forward) and a split of the layers across two accelerators
(``split``). Whether a plan applies is read from the model's config (transformers' own
``base_model_tp_plan`` / ``base_model_ep_plan``, head and expert counts) and the host (cores, GPUs),
never from an error message.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..skips import HardwareAbsent, Unsupported


@dataclass(frozen=True)
class Plan:
    id: str
    kind: str              # tp | ep | offload | split
    world_size: int = 1    # processes (tp/ep) or devices (split)
    offload: str = ""      # offload target: disk | cpu

    @property
    def strategy(self) -> str:
        return f"{self.kind}{self.world_size}" if self.kind in ("tp", "ep") else f"{self.kind}-{self.offload or 'layers'}"


PLANS = (Plan("tp2", "tp", 2), Plan("tp4", "tp", 4), Plan("ep2", "ep", 2),
         Plan("offload-disk", "offload", offload="disk"), Plan("offload-cpu", "offload", offload="cpu"),
         Plan("split2", "split", 2))


def applicable(spec) -> list[Plan]:
    """Plans worth a test for this zoo model: causal LMs (what transformers' tp plans and device_map
    offload cover); the typed reasons for the others' plans come from require()."""
    return list(PLANS) if spec.auto_class == "AutoModelForCausalLM" else []


def _accelerators() -> int:
    import torch
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _host(plan: Plan, device: str) -> None:
    if plan.kind in ("tp", "ep"):
        if device == "cuda" and _accelerators() < plan.world_size:
            raise HardwareAbsent(f"{plan.id} needs {plan.world_size} GPUs (one per rank, nccl); this host has {_accelerators()}")
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        if device == "cpu" and cores < plan.world_size:
            raise HardwareAbsent(f"{plan.id} runs {plan.world_size} gloo ranks, one per core; this host has {cores} cores")
    elif plan.kind == "split" and _accelerators() < 2:
        raise HardwareAbsent(f"a layer split across two devices needs two accelerators; this host has {_accelerators()}")
    elif plan.kind == "offload" and plan.offload == "cpu" and device == "cpu":
        raise HardwareAbsent("CPU offload keeps weights in host memory and moves each layer to the accelerator that runs "
                             "it; without an accelerator the host memory is where the model runs anyway")


def _parallel(plan: Plan, config) -> None:
    import transformers
    text = config.get_text_config()
    version = transformers.__version__
    tp_plan = getattr(text, "base_model_tp_plan", None)
    if not tp_plan:
        raise Unsupported(f"transformers {version} has no tensor-parallel plan for {text.model_type} "
                          f"(config.base_model_tp_plan is empty)")
    experts = getattr(text, "num_local_experts", None) or getattr(text, "num_experts", None)
    if plan.kind == "ep":
        if not experts:
            raise Unsupported(f"{text.model_type} is not a mixture of experts: nothing to split by expert")
        if not getattr(text, "base_model_ep_plan", None):
            raise Unsupported(f"transformers {version} has no expert-parallel plan for {text.model_type}")
        if experts % plan.world_size:
            raise Unsupported(f"{experts} experts do not split over {plan.world_size} ranks")
    heads = getattr(text, "num_attention_heads", 0)
    kv = getattr(text, "num_key_value_heads", None) or heads
    if heads % plan.world_size or kv % plan.world_size:
        raise Unsupported(f"{heads} attention / {kv} KV heads do not split over {plan.world_size} ranks "
                          f"(the tp plan shards whole heads)")


def require(plan: Plan, model_dir: Path, device: str) -> None:
    """Raise the typed skip that says why ``plan`` cannot run this model here; return when it can."""
    if plan.kind in ("tp", "ep"):  # the model's own reason first: it holds on every host
        from transformers import AutoConfig
        _parallel(plan, AutoConfig.from_pretrained(model_dir))
    _host(plan, device)
