"""`hfmatrix` console script. Each subcommand lives with the code it drives; this only dispatches."""
from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module with a main(argv) -> int, one-line help)
COMMANDS = {
    "probe": ("hwprobe.__main__", "detect hardware and backends (same as python -m hwprobe)"),
    "zoo": ("hfmatrix.zoo.cli", "list or build the model zoo: zoo list | zoo build [IDS...]"),
    "report": ("hfmatrix.report", "merge results/<session>/ into the matrix report"),
    "bench": ("hfmatrix.perf.cli", "benchmarks and baselines"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="hfmatrix", description="HuggingFace models across hardware backends")
    parser.add_argument("command", choices=sorted(COMMANDS), help="; ".join(f"{k}: {v[1]}" for k, v in COMMANDS.items()))
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    args = parser.parse_args(argv[:1])
    module = importlib.import_module(COMMANDS[args.command][0])
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
