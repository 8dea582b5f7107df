"""`hfmatrix zoo list | build | verify | check [IDS...]`: look at, pre-build and smoke-run the model zoo.

``check`` = build + load through the Auto class (no missing/unexpected keys) + a torch forward on
example(0) and example(1) with finite outputs + greedy generation with its smallest top-1/top-2 gap;
it is how a backend env shows its transformers version can build and run the whole zoo.
"""
from __future__ import annotations

import argparse
import json
import time

from .. import progress
from ..skips import TypedSkip

ACTIONS = """\
actions:
  list    the zoo's models: id, architecture class, task, capabilities, description
  build   materialize (build or fetch) each model into the cache; later runs reuse it
  verify  build, then check every file of each built (random-weight) model against the sha256 of its manifest
  check   build, load through the Auto class (no missing/unexpected keys), torch forward on two
          examples (finite outputs) and greedy generation: shows this env's transformers runs the zoo"""


def main(argv: list[str] | None = None) -> int:
    from . import load_specs, materialize, verify
    from .materialize import cache_root, versions

    p = argparse.ArgumentParser(prog="hfmatrix zoo", formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="Look at, pre-build and smoke-run the model zoo.\n\n" + ACTIONS,
                                epilog="A build shows a progress bar with an ETA on a terminal (not under CI, not in a log).")
    p.add_argument("action", choices=("list", "build", "verify", "check"), help="what to do (above)")
    p.add_argument("ids", nargs="*", help="zoo ids (default: all; `hfmatrix zoo list` names them)")
    p.add_argument("--zoo-file", default=None, help="a zoo spec file of your own (default: hfmatrix/zoo/models.toml)")
    p.add_argument("--cache", default=None, help="zoo cache dir (default $HFMATRIX_CACHE/zoo or the user cache)")
    p.add_argument("--json", action="store_true", help="print JSON instead of one line per model")
    args = p.parse_intermixed_args(argv)
    specs = load_specs(args.zoo_file)
    unknown = [i for i in args.ids if i not in specs]
    if unknown:
        p.error(f"unknown zoo ids {unknown}; known: {', '.join(specs)}")
    chosen = [specs[i] for i in (args.ids or specs)]
    if args.action == "list":
        rows = [{"id": s.id, "arch_class": s.arch_class, "task": s.task, "source": s.source,
                 "capabilities": list(s.capabilities), "description": s.description} for s in chosen]
        if args.json:
            print(json.dumps(rows, indent=1))
        else:
            for r in rows:
                print(f"{r['id']:<10} {r['arch_class']:<19} {r['task']:<31} {','.join(r['capabilities']):<22} {r['description']}")
        return 0
    rc = 0
    results = []
    print(f"cache {cache_root(args.cache)}  {versions()}") if not args.json else None
    for spec in progress.bar(chosen, desc=f"zoo {args.action}", unit="model") if not args.json else chosen:
        t = time.perf_counter()
        try:
            path = materialize(spec, cache_dir=args.cache)
            problems = verify(path) if args.action == "verify" and spec.source == "random" else []
            status = "ok" if not problems else "bad: " + "; ".join(problems)
            if args.action == "check":
                status = check(spec, path)
            rc |= bool(problems)
        except TypedSkip as exc:
            path, status = None, f"skipped [{exc.kind}] {exc.reason}"
        except Exception as exc:  # report every entry, fail at the end
            path, status, rc = None, f"error {type(exc).__name__}: {exc}", 1
        results.append({"id": spec.id, "status": status, "path": str(path) if path else None,
                        "seconds": round(time.perf_counter() - t, 3)})
        if not args.json:
            r = results[-1]
            progress.write(f"{r['id']:<10} {r['seconds']:7.2f}s  {r['status']}  {r['path'] or ''}")
    if args.json:
        print(json.dumps(results, indent=1))
    return rc


def check(spec, path) -> str:
    """Load + forward + generate with torch; raises on any defect, returns a one-line summary."""
    import numpy as np
    import torch
    import transformers

    from .inputs import example, generation_inputs
    from .materialize import loading_problems

    transformers.utils.logging.disable_progress_bar()
    t = time.perf_counter()
    model, info = getattr(transformers, spec.auto_class).from_pretrained(path, output_loading_info=True)
    bad = loading_problems(model, info)
    if bad:
        raise RuntimeError(f"loading info not clean: {bad}")
    model.eval()
    shapes, out_shapes = [], []
    for index in (0, 1):
        x = example(spec, path, index)
        with torch.no_grad():
            out = model(**{k: torch.from_numpy(v) for k, v in x.items()})
        for name in spec.outputs:
            if not np.isfinite(out[name].numpy()).all():
                raise RuntimeError(f"{name} not finite for example {index}")
        shapes.append(",".join(f"{k}{list(v.shape)}" for k, v in x.items()))
        out_shapes.append(",".join(f"{n}{list(out[n].shape)}" for n in spec.outputs))
    summary = f"ok  in {shapes[0]}  out {out_shapes[0]}"
    if spec.generate:
        gen = generation_inputs(spec, path)
        with torch.no_grad():
            res = model.generate(**{k: torch.from_numpy(v) for k, v in gen.items()}, do_sample=False,
                                 max_new_tokens=int(spec.generate["max_new_tokens"]),
                                 output_scores=True, return_dict_in_generate=True)
        gap = min(float((lambda v: v[0] - v[1])(torch.topk(s[0].float(), 2).values)) for s in res.scores)
        summary += f"  gen {res.sequences[0].tolist()[-int(spec.generate['max_new_tokens']):]} min-gap {gap:.3f}"
    return summary + f"  ({time.perf_counter() - t:.1f}s)"
