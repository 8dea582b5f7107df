"""`hfmatrix zoo list | build [IDS...] | verify [IDS...]`: look at and pre-build the model zoo."""
from __future__ import annotations

import argparse
import json
import time

from ..skips import TypedSkip


def main(argv: list[str] | None = None) -> int:
    from . import load_specs, materialize, verify
    from .materialize import cache_root, versions

    p = argparse.ArgumentParser(prog="hfmatrix zoo")
    p.add_argument("action", choices=("list", "build", "verify"))
    p.add_argument("ids", nargs="*", help="zoo ids (default: all)")
    p.add_argument("--zoo-file", default=None)
    p.add_argument("--cache", default=None, help="zoo cache dir (default $HFMATRIX_CACHE/zoo or the user cache)")
    p.add_argument("--json", action="store_true")
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
    for spec in chosen:
        t = time.perf_counter()
        try:
            path = materialize(spec, cache_dir=args.cache)
            problems = verify(path) if args.action == "verify" and spec.source == "random" else []
            status = "ok" if not problems else "bad: " + "; ".join(problems)
            rc |= bool(problems)
        except TypedSkip as exc:
            path, status = None, f"skipped [{exc.kind}] {exc.reason}"
        except Exception as exc:  # report every entry, fail at the end
            path, status, rc = None, f"error {type(exc).__name__}: {exc}", 1
        results.append({"id": spec.id, "status": status, "path": str(path) if path else None,
                        "seconds": round(time.perf_counter() - t, 3)})
        if not args.json:
            r = results[-1]
            print(f"{r['id']:<10} {r['seconds']:7.2f}s  {r['status']}  {r['path'] or ''}", flush=True)
    if args.json:
        print(json.dumps(results, indent=1))
    return rc
