"""accelerate's offloaded loading in a process of its own: ``from_pretrained(device_map="auto",
max_memory=..., offload_folder=...)`` with a memory budget below the weights, so the layers that do not
fit are offloaded (to disk, or to host memory when an accelerator runs the model) and brought in by
accelerate's hooks at each forward. Writes outputs, the device map and the peak RSS to --out.

    python -m hfmatrix.distributed.offload --model DIR --mode disk|cpu|none --out DIR [--inputs F --gen-inputs F]

``--mode none`` is the same run with the whole model in memory: the baseline that offloading must beat.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
from pathlib import Path

import numpy as np


def weight_bytes(model_dir: Path) -> int:
    return sum(p.stat().st_size for p in Path(model_dir).glob("*.safetensors"))


def device_map_options(mode: str, device: str, model_dir: Path, share: float, folder: str) -> dict:
    """from_pretrained keywords: the main device gets ``share`` of the weight bytes, the rest is
    offloaded to ``mode`` (disk: an offload folder; cpu: host memory, only with an accelerator)."""
    if mode == "none":
        return {"device_map": {"": 0 if device == "cuda" else "cpu"}}
    budget = max(1, int(weight_bytes(model_dir) * share))
    if device == "cuda":
        memory = {0: budget, "cpu": budget if mode == "disk" else 10 ** 12}
    else:  # the host memory is the main device: what does not fit goes to disk
        memory = {"cpu": budget}
    return {"device_map": "auto", "max_memory": memory, "offload_folder": folder, "offload_buffers": True}


def _peak_rss() -> int:
    """This process's peak resident set so far, in bytes: VmHWM where /proc has it. Not ru_maxrss on
    Linux: it survives fork+exec, so a child starts at its parent's RSS (a pytest process with torch
    loaded made every mode peak alike here)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def _offloaded(model) -> list[str]:
    """Modules whose weights accelerate's hook brings in per forward (they sit on 'meta' until then)."""
    return sorted(name for name, m in model.named_modules()
                  if getattr(getattr(m, "_hf_hook", None), "offload", False))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--mode", choices=("disk", "cpu", "none"), default="disk")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--share", type=float, default=0.25, help="share of the weight bytes the main device may hold")
    ap.add_argument("--auto-class", default="AutoModelForCausalLM")
    ap.add_argument("--inputs")
    ap.add_argument("--gen-inputs")
    ap.add_argument("--max-new-tokens", type=int, default=5)
    args = ap.parse_args(argv)
    import torch
    import transformers
    out = Path(args.out)
    peaks = {"start": _peak_rss()}
    with tempfile.TemporaryDirectory(prefix="hfm-offload-") as folder:
        opts = device_map_options(args.mode, args.device, Path(args.model), args.share, folder)
        model = getattr(transformers, args.auto_class).from_pretrained(args.model, dtype=torch.float32, **opts).eval()
        peaks["loaded"] = _peak_rss()
        main_device = torch.device("cuda", 0) if args.device == "cuda" else torch.device("cpu")
        result = {}
        with torch.inference_mode():
            if args.inputs:
                feed = {k: torch.from_numpy(v).to(main_device) for k, v in np.load(args.inputs).items()}
                result["logits"] = model(**feed, use_cache=False).logits.float().cpu().numpy()
                peaks["forward"] = _peak_rss()
            if args.gen_inputs:
                feed = {k: torch.from_numpy(v).to(main_device) for k, v in np.load(args.gen_inputs).items()}
                ids = model.generate(**feed, max_new_tokens=args.max_new_tokens, min_new_tokens=args.max_new_tokens,
                                     do_sample=False, num_beams=1, pad_token_id=model.generation_config.pad_token_id)
                result["generated_ids"] = ids.cpu().numpy()
                peaks["generate"] = _peak_rss()
        evidence = {"mode": args.mode, "device": args.device, "share": args.share,
                    "device_map": {k: str(v) for k, v in (getattr(model, "hf_device_map", None) or {}).items()},
                    "offloaded_modules": _offloaded(model), "weight_bytes": weight_bytes(Path(args.model)),
                    "peak_rss_by_stage": peaks, "peak_rss": _peak_rss()}
    np.savez(out / "rank-0.npz", **result)
    (out / "rank-0.json").write_text(json.dumps(evidence, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
