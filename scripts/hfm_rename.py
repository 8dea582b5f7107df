"""One-off, idempotent: the plugin's options and fixtures move to the hfm namespace (issue 15).

    python scripts/hfm_rename.py [FILE ...]   (default: every tracked file)

Options --backend … --perf-* become --hfm-backend … --hfm-perf-*; the fixtures case, measure, model_dir,
backend_session, intact_session, reference_session, perf_config become hfm_<name> in the suites.
Other programs' options with the same spelling (transformers serve --device, the distributed worker's
argparse, hfmatrix report --results-dir, bench_envs --backend) are left alone.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

OPTIONS = ("backend", "device", "precisions-done", "precision", "models", "zoo-file", "zoo-cache", "session-name",
           "results-dir", "shard", "allow-pickle", "trust-remote-code", "hard-timeout", "autozoo-sample",
           r"perf-[a-z-]+")
OPT_RE = re.compile(r"(?<![\w-])--(" + "|".join(OPTIONS) + r")(?![\w-])")
FIXTURES = ("case", "measure", "model_dir", "backend_session", "intact_session", "reference_session", "perf_config")
FIX_RE = re.compile(r"(?<![\w.'\"])(" + "|".join(FIXTURES) + r")(?![\w'\"])")
# files whose --options belong to another program
OTHER_CLI = {"hfmatrix/distributed/offload.py", "hfmatrix/distributed/worker.py", "hfmatrix/serving/process.py",
             "hfmatrix/report/__init__.py", "hfmatrix/perf/cli.py", "hfmatrix/zoo/cli.py", "scripts/bench_envs.py",
             "scripts/bench_report.py", "hfmatrix/backends/distributed_backend.py", "scripts/hfm_rename.py"}
# lines that name another program's option
OTHER_LINE = re.compile(r"transformers serve|bench_envs|report_main|hfmatrix(\.cli)?\"?,? \"?report|cli report|"
                        r"\"report\"|server .*--device|--device\", \"cpu\"")


def rename_options(path: str, text: str) -> str:
    if path in OTHER_CLI:
        return text
    out = []
    for line in text.splitlines(keepends=True):
        out.append(line if OTHER_LINE.search(line) else OPT_RE.sub(r"--hfm-\1", line))
    return "".join(out)


def rename_fixtures(path: str, text: str) -> str:
    if not (path.startswith("suites/") or path.startswith("hfmatrix/suites/")) or not path.endswith(".py"):
        return text
    return FIX_RE.sub(r"hfm_\1", text)


def main(argv: list[str]) -> int:
    files = argv or subprocess.run(["git", "ls-files"], capture_output=True, text=True, check=True).stdout.split()
    changed = 0
    for path in files:
        p = Path(path)
        if not p.is_file() or p.suffix not in (".py", ".md", ".toml", ".yml", ".yaml", ".sh", ".txt", ".cfg", ".ini", ""):
            continue
        try:
            text = p.read_text()
        except UnicodeDecodeError:
            continue
        new = rename_fixtures(path, rename_options(path, text))
        if new != text:
            p.write_text(new)
            changed += 1
    print(f"{changed} files changed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
