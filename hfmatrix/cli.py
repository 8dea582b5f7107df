"""`hfmatrix` console script (also `python -m hfmatrix`). Each subcommand lives with the code it
drives; this only dispatches. `hfmatrix <command> --help` explains each one."""
from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module with a main(argv) -> int, what it does)
COMMANDS = {
    "run": ("hfmatrix.run", "run the shipped checks for your models on one backend (pytest), then write the report: "
                            "hfmatrix run --backend torch --models ./my-model"),
    "report": ("hfmatrix.report", "merge results/<session>/ folders into results/index.html, matrix.md and matrix.json; "
                                  "exit 1 when a check failed, crashed or xpassed"),
    "zoo": ("hfmatrix.zoo.cli", "the curated model zoo: list it, build (materialize) models into the cache, verify "
                                "or smoke-check them"),
    "probe": ("hwprobe.__main__", "detect this machine's hardware and which backends can run (same as python -m hwprobe)"),
    "bench": ("hfmatrix.perf.cli", "perf baselines: this machine's fingerprint, record/compare bench JSON, plot latencies"),
}

EPILOG = "commands:\n" + "\n".join(f"  {k:<7} {v[1]}" for k, v in COMMANDS.items()) + """

The pytest plugin is opt-in: plain pytest runs are untouched unless --hfm or an --hfm-* option is given.
Docs: README.md (testing your own model, reading the report)."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hfmatrix", formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="Test HuggingFace models across hardware backends: every check runs the "
                                            "model on the named backend and compares it with the CPU fp32 reference.",
                                epilog=EPILOG)
    p.add_argument("command", choices=list(COMMANDS), metavar="command", help="one of: " + ", ".join(COMMANDS))
    p.add_argument("args", nargs=argparse.REMAINDER, help="the command's own arguments (hfmatrix <command> --help)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        parser().print_help()
        return 0 if argv else 2
    args = parser().parse_args(argv[:1])
    module = importlib.import_module(COMMANDS[args.command][0])
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
