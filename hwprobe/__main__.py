"""python -m hwprobe [--json] [--out FILE] [--only a,b] [--no-browser] [--fingerprint] [--require a,b]"""
from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path

from . import BACKENDS, dumps, fingerprint, probe


def table(doc: dict) -> str:
    rows = []
    for name, e in doc["backends"].items():
        state = "yes" if e["available"] else f"no ({e['kind']})"
        rows.append((name, state, e["reason"]))
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    lines = [f"{'backend':<{w0}}  {'available':<{w1}}  reason / summary",
             f"{'-' * w0}  {'-' * w1}  {'-' * 16}"]
    for name, state, reason in rows:
        wrapped = textwrap.wrap(reason, 100) or [""]
        lines.append(f"{name:<{w0}}  {state:<{w1}}  {wrapped[0]}")
        lines += [f"{'':<{w0}}  {'':<{w1}}  {more}" for more in wrapped[1:]]

    cpu = doc["backends"]["cpu"]
    if cpu["available"]:
        d = cpu["details"]
        isa = d["isa"]
        named = [k for k, v in isa.items() if v is True]
        mem = d["memory"]
        gib = (lambda b: f"{b / 2**30:.1f} GiB" if b else "?")
        prec = d["precisions"]
        lines += ["", "cpu",
                  f"  model       {d['model']} ({d['vendor']}, {d['arch']}"
                  + (", virtualized" if d["virtualized"] else "") + ")",
                  f"  cores       logical {d['cores']['logical']}, physical {d['cores']['physical']}, "
                  f"usable {d['cores']['usable']}",
                  f"  memory      total {gib(mem['total_bytes'])}, available {gib(mem['available_bytes'])}",
                  f"  isa         {' '.join(named) or '-'}",
                  f"  avx512      {' '.join(isa['avx512']) or '-'}",
                  f"  amx         {' '.join(isa['amx']) or '-'}",
                  f"  native      fp32 yes, bf16 {'yes' if prec['bf16'] else 'no'}, "
                  f"fp16 {'yes' if prec['fp16'] else 'no'}" + (f"  ({prec['note']})" if prec["note"] else "")]
    h = doc["host"]
    lines += ["", f"host {h['hostname']}: {h['platform']}, Python {h['python']}; probed in {doc['probe_seconds']} s"]
    return "\n".join(lines)


def _names(text: str | None) -> list[str] | None:
    if not text:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in BACKENDS]
    if bad:
        raise SystemExit(f"hwprobe: unknown backend(s) {bad}; known: {', '.join(BACKENDS)}")
    return names


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hwprobe", description="What hardware and backends this machine has.")
    ap.add_argument("--json", action="store_true", help="print the JSON document instead of the table")
    ap.add_argument("--out", metavar="FILE", help="also write the JSON document to FILE")
    ap.add_argument("--only", metavar="NAMES", help=f"comma-separated subset of {','.join(BACKENDS)}")
    ap.add_argument("--no-browser", action="store_true", help="do not launch a browser for webgpu/webnn")
    ap.add_argument("--fingerprint", action="store_true", help="print the hardware fingerprint (JSON)")
    ap.add_argument("--require", metavar="NAMES", help="exit 1 unless these backends are available")
    args = ap.parse_args(argv)

    doc = probe(_names(args.only), browser=not args.no_browser)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(dumps(doc) + "\n", encoding="utf-8")
        print(f"hwprobe: wrote {out}", file=sys.stderr)
    if args.fingerprint:
        print(json.dumps(fingerprint(doc), indent=2))
    elif args.json:
        print(dumps(doc))
    else:
        print(table(doc))
    missing = [n for n in (_names(args.require) or []) if not doc["backends"][n]["available"]]
    for n in missing:
        print(f"hwprobe: required backend {n} unavailable: [{doc['backends'][n]['kind']}] "
              f"{doc['backends'][n]['reason']}", file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
