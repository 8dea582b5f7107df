"""``hfmatrix bench``: baselines and bench JSON from the command line.

    hfmatrix bench fingerprint                       this machine's fingerprint (the baselines/ folder name)
    hfmatrix bench record RESULTS... [--baselines D] write/update baselines from bench JSON files or folders
    hfmatrix bench compare RESULTS... [--baselines D] [--factor F] [--alpha A]
                                                     gate every entry against its baseline; exit 1 on a regression
    hfmatrix bench plot RESULTS... --out DIR [--format svg|png] [--metric forward]
                                                     one latency-distribution plot per backend
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import baselines, bench, gate


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hfmatrix bench", formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="Perf baselines and bench JSON (results/<session>/bench-*.json, written by "
                                            "the perf suite):\n" + __doc__.split("\n", 1)[1])
    sub = p.add_subparsers(dest="cmd", required=True)
    fp = sub.add_parser("fingerprint", help="print this machine's fingerprint",
                        description="Print this machine's hardware fingerprint: the baselines/<fingerprint>/ folder "
                                    "its perf baselines are recorded under and compared against.")
    fp.add_argument("--json", action="store_true", help="the whole fingerprint document")
    for name, helptext, more in (
            ("record", "write/update baselines from bench JSON",
             "Write or update baselines/<fingerprint>/<backend>-<device>-<precision>.json from the perf suite's bench JSON."),
            ("compare", "gate bench JSON against the baselines",
             "Gate every bench entry against this machine's baseline (median ratio and Mann-Whitney U test, "
             "hfmatrix/perf/gate.py); exit 1 on a regression."),
            ("plot", "latency-distribution plots from bench JSON",
             "Draw one latency-distribution plot per backend (needs matplotlib: pip install hfmatrix[plot]).")):
        sp = sub.add_parser(name, help=helptext, description=more)
        sp.add_argument("results", nargs="+", help="bench-*.json files or folders holding them")
        sp.add_argument("--baselines", default=None, help="baselines folder (default ./baselines or $HFMATRIX_BASELINES)")
        if name == "record":
            sp.add_argument("--models", default="", help="only these model ids (comma-separated)")
        if name == "compare":
            sp.add_argument("--factor", type=float, default=gate.FACTOR,
                            help=f"a regression needs the median ratio current/baseline above this (default {gate.FACTOR})")
            sp.add_argument("--alpha", type=float, default=gate.ALPHA,
                            help=f"... and a Mann-Whitney U p-value below this (default {gate.ALPHA})")
            sp.add_argument("--metric", default="forward", help="which measurement to gate (default forward)")
        if name == "plot":
            sp.add_argument("--out", required=True, help="output folder")
            sp.add_argument("--format", choices=("svg", "png"), default="svg", help="image format (default svg)")
            sp.add_argument("--metric", default="forward", help="which measurement to plot (default forward)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    base_dir = Path(args.baselines).resolve() if getattr(args, "baselines", None) else baselines.default_dir()
    if args.cmd == "fingerprint":
        doc = baselines.fingerprint()
        print(json.dumps(doc, indent=2) if args.json else doc["id"])
        return 0
    files = bench.find(args.results)
    if not files:
        print(f"no bench-*.json under {' '.join(args.results)}", file=sys.stderr)
        return 2
    entries = bench.entries(files)
    if args.cmd == "record":
        wanted = {m for m in args.models.split(",") if m}
        by_fp: dict[str, list] = {}
        for e in entries:
            if not wanted or e["model"] in wanted:
                by_fp.setdefault(json.dumps(e["_fingerprint"], sort_keys=True), []).append(e)
        refused = baselines.Refused()
        for fp_json, group in by_fp.items():
            for path in baselines.record(group, base_dir, json.loads(fp_json), refused=refused):
                print(f"baseline written: {path} ({sum(1 for e in group if baselines.path_for(base_dir, e['_fingerprint']['id'], e['backend'], e['device'], baselines.verdict_precision(e)) == path)} models)")
        for name, why in refused:
            print(f"baseline REFUSED: {why}", file=sys.stderr)
        return 1 if refused else 0
    if args.cmd == "compare":
        worst = 0
        for e in sorted(entries, key=lambda e: e["name"]):
            fp = e["_fingerprint"].get("id", "")
            path, base = baselines.lookup(base_dir, fp, e["backend"], e["device"], baselines.verdict_precision(e), e["model"])
            if base is None or args.metric not in base.get("metrics", {}) or args.metric not in e["report"]:
                print(f"{e['name']:45s} no-baseline ({path})")
                continue
            diff = baselines.mismatched_conditions(base.get("conditions", {}), e.get("conditions", {}))
            if diff:
                print(f"{e['name']:45s} incomparable: {', '.join(diff)} differ")
                continue
            c = gate.compare(base["metrics"][args.metric]["values"], e["report"][args.metric]["latency"]["values"],
                             args.factor, args.alpha)
            print(f"{e['name']:45s} {c.describe()}")
            worst = max(worst, int(c.flagged))
        return worst
    if args.cmd == "plot":
        from .plot import entries_doc, plot_all
        for path in plot_all(entries_doc(entries), Path(args.out), fmt=args.format, metric=args.metric,
                             baselines_dir=base_dir):
            print(f"plot written: {path}")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
