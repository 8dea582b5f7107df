"""One torchrun rank: create the process group (with a short timeout), load the model sharded through
transformers' DistributedConfig, run the forward and greedy generation, write this rank's outputs
and evidence (which parameters are DTensors, their placements and local shapes) to --out.

    torchrun --nproc-per-node 2 -m hfmatrix.distributed.worker --model DIR --strategy tp --out DIR ...

--plant and --fault exist for the harness's own tests: a planted sharding defect (one rank's shard of a
parameter zeroed or swapped after loading, or no sharding at all) must make the suite's checks fail; a killed or hung rank
must end the job with a typed failure.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np


def _log_to_file(out: Path, rank: int) -> None:
    """Everything this rank prints, C-level output included, goes to out/rank-<r>.log: the launcher
    hands the surviving ranks' logs to a failure report."""
    fd = os.open(out / f"rank-{rank}.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)


def _init(args):
    import torch
    import torch.distributed as dist
    backend = "nccl" if args.device == "cuda" else "gloo"
    if args.device == "cuda":
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    # our own group with a short timeout: transformers' default is hours, a hung rank must end the job
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=args.timeout))
    return dist.get_rank(), dist.get_world_size(), backend


def _load(args, world_size: int):
    import torch
    import transformers
    from transformers.distributed.configuration_utils import DistributedConfig
    # ep: the model's ep_plan on the experts (each rank holds whole experts) with the dense modules
    # tensor parallel; enable_expert_parallel is deprecated in 5.2x in favour of ep_size
    # --plant unsharded: tp_size 1 in a group of world_size ranks, so every rank silently holds the whole model
    tp_size = 1 if args.plant == "unsharded" else world_size
    config = DistributedConfig(tp_size=tp_size, ep_size=world_size if args.strategy == "ep" else None)
    auto = getattr(transformers, args.auto_class)
    model = auto.from_pretrained(args.model, dtype=torch.float32, distributed_config=config)
    return model.eval()


def _shards(model) -> dict[str, dict]:
    """Per parameter that is a DTensor: placements, global and local shape (the rank's own shard)."""
    from torch.distributed.tensor import DTensor
    found = {}
    for name, p in model.named_parameters():
        if isinstance(p.data, DTensor) or isinstance(p, DTensor):
            t = p.data if isinstance(p.data, DTensor) else p
            found[name] = {"placements": [str(pl) for pl in t.placements], "global_shape": list(t.shape),
                           "local_shape": list(t.to_local().shape)}
    return found


def _plant(model, spec: str, rank: int, world_size: int) -> str:
    """'zero:<param>@<rank>' zeroes that rank's local shard; 'swap:<param>' gives every rank the next
    rank's shard (a wrong shard order). Returns what was done, for the log."""
    import torch
    import torch.distributed as dist
    kind, _, rest = spec.partition(":")
    name, _, who = rest.partition("@")
    param = dict(model.named_parameters())[name]
    local = param.data.to_local() if hasattr(param.data, "to_local") else param.data
    with torch.no_grad():
        if kind == "zero" and rank == int(who or 0):
            local.zero_()
        elif kind == "swap":
            parts = [torch.empty_like(local) for _ in range(world_size)]
            dist.all_gather(parts, local.contiguous())
            local.copy_(parts[(rank + 1) % world_size])
    return f"planted {spec} on rank {rank}"


def _fault(args, rank: int) -> None:
    kind, _, who = (args.fault or "").partition("@")
    if not kind or rank != int(who):
        return
    print(f"fault {kind} on rank {rank}", flush=True)
    if kind == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if kind == "hang":  # never reaches the next collective; the others must time out
        time.sleep(10 ** 6)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    for name in ("--model", "--out", "--inputs", "--gen-inputs"):
        ap.add_argument(name, required=name in ("--model", "--out"))
    ap.add_argument("--auto-class", default="AutoModelForCausalLM")
    ap.add_argument("--strategy", choices=("tp", "ep"), default="tp")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--max-new-tokens", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--plant", default="")
    ap.add_argument("--fault", default="")
    args = ap.parse_args(argv)
    out = Path(args.out)
    _log_to_file(out, int(os.environ["RANK"]))
    import torch
    import torch.distributed as dist
    from ..backends.torch_backend import outputs_to_numpy
    rank, world_size, backend = _init(args)
    print(f"rank {rank}/{world_size}: {backend} process group up (timeout {args.timeout:.0f} s)", flush=True)
    model = _load(args, world_size)
    print(f"rank {rank}/{world_size}: {type(model).__name__} loaded, {args.strategy} plan applied", flush=True)
    evidence = {"rank": rank, "world_size": world_size, "process_group": backend, "strategy": args.strategy,
                "pid": os.getpid(), "model_class": type(model).__name__, "sharded": _shards(model)}
    if args.plant and args.plant != "unsharded":
        evidence["planted"] = _plant(model, args.plant, rank, world_size)
    dist.barrier()  # every rank has loaded (and logged so) before a planted fault strikes
    _fault(args, rank)
    device = torch.device("cuda", torch.cuda.current_device()) if args.device == "cuda" else torch.device("cpu")
    result = {}
    with torch.inference_mode():
        if args.inputs:
            feed = {k: torch.from_numpy(v).to(device) for k, v in np.load(args.inputs).items()}
            result.update(outputs_to_numpy(model(**feed, use_cache=False)))
        if args.gen_inputs:
            feed = {k: torch.from_numpy(v).to(device) for k, v in np.load(args.gen_inputs).items()}
            pad = model.generation_config.pad_token_id
            ids = model.generate(**feed, max_new_tokens=args.max_new_tokens, min_new_tokens=args.max_new_tokens,
                                 do_sample=False, num_beams=1, pad_token_id=pad)
            result["generated_ids"] = ids.cpu().numpy()
    np.savez(out / f"rank-{rank}.npz", **result)
    (out / f"rank-{rank}.json").write_text(json.dumps(evidence, indent=1))
    dist.barrier()
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
