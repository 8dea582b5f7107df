"""The CI matrix, generated from `nox --list --json` (never written twice).

A session runs in CI when one of its tags is a key of RUNNERS in hfmatrix/sessions.py (the session
table the noxfile is built from; the one place that names runner labels): "hosted" → GitHub-hosted,
the others → self-hosted runners. Self-hosted pools
are opt-in (repository variable HFMATRIX_SELF_HOSTED="cuda,rocm"): a job for a runner that does not
exist would wait in the queue for a day; a session left out is listed as not scheduled, and the
report marks a planned session without results as INCOMPLETE (results/plan.json).

A tag "shards-N" splits a session into N jobs (`nox -s S -- --hfm-shard i/N`); SHARDS="cpu=4,zoo=2"
(a workflow_dispatch input) overrides it for one run.

    python -m hfmatrix.report.plan [--listing FILE] [--github-output FILE] [--summary FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..sessions import RUNNERS

HOSTED = "hosted"
_SHARD_TAG = re.compile(r"^shards-(\d+)$")


def runners() -> dict[str, list[str]]:
    """tag -> runner labels, from the session table (hfmatrix/sessions.py)."""
    return {tag: list(labels) for tag, labels in RUNNERS.items()}


def nox_listing(noxfile: Path, tags: list[str]) -> list[dict[str, Any]]:
    """`nox --list --json -t TAG...`: the sessions carrying any runner tag. (A plain `nox --list
    --json` prints only nox.options.sessions, the local default, not every session.)"""
    import importlib.util
    import shutil
    nox = [sys.executable, "-m", "nox"] if importlib.util.find_spec("nox") else [shutil.which("nox") or "nox"]
    cmd = [*nox, "--noxfile", str(noxfile), "--list", "--json", "--tags", *tags]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out or "[]")


def parse_shards(text: str) -> dict[str, int]:
    out = {}
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        name, _, n = part.partition("=")
        if not n.strip().isdigit() or int(n) < 1:
            raise ValueError(f"SHARDS entry {part!r}: expected session=N with N >= 1")
        out[name.strip()] = int(n)
    return out


def plan(listing: list[dict[str, Any]], runner_map: dict[str, list[str]], *,
         self_hosted: set[str] | None = None, shards: dict[str, int] | None = None) -> tuple[list[dict], list[dict]]:
    """(matrix include entries, sessions not scheduled with the reason)."""
    include, notes = [], []
    self_hosted = self_hosted or set()
    shards = shards or {}
    for s in listing:
        name, tags = s["session"], list(s.get("tags") or [])
        keys = [t for t in tags if t in runner_map]
        if not keys:
            continue
        if len(keys) > 1:
            raise ValueError(f"session {name}: tags {keys} name more than one runner; keep one")
        key = keys[0]
        if key != HOSTED and key not in self_hosted:
            notes.append({"session": name, "reason": f"needs a self-hosted runner {runner_map[key]}; enable the pool "
                                                      f"with the repository variable HFMATRIX_SELF_HOSTED (e.g. \"{key}\")"})
            continue
        n = shards.get(name) or next((int(m.group(1)) for t in tags if (m := _SHARD_TAG.match(t))), 1)
        for i in range(1, n + 1):
            tag = f"{i}of{n}" if n > 1 else "all"
            include.append({
                "session": name, "name": name if n == 1 else f"{name} ({i}/{n})",
                "runs-on": runner_map[key], "runner": key, "python": str(s.get("python") or "3.11"),
                "shard": f"{i}/{n}" if n > 1 else "", "tag": tag,
                "artifact": f"results-{name}" if n == 1 else f"results-{name}-{tag}",
            })
    unknown = set(shards) - {e["session"] for e in include} - {n["session"] for n in notes}
    if unknown:
        raise ValueError(f"SHARDS names sessions that are not scheduled: {sorted(unknown)}")
    return include, notes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--noxfile", type=Path, default=Path("noxfile.py"))
    ap.add_argument("--listing", type=Path, help="a saved `nox --list --json` output instead of running nox")
    ap.add_argument("--self-hosted", default=os.environ.get("HFMATRIX_SELF_HOSTED", ""),
                    help="comma-separated runner tags whose self-hosted pools exist (env HFMATRIX_SELF_HOSTED)")
    ap.add_argument("--shards", default=os.environ.get("SHARDS", ""), help="session=N,... (env SHARDS)")
    ap.add_argument("--github-output", type=Path, help="append matrix=… and count=… here ($GITHUB_OUTPUT)")
    ap.add_argument("--summary", type=Path, help="append a Markdown table here ($GITHUB_STEP_SUMMARY)")
    args = ap.parse_args(argv)
    rmap = runners()
    listing = json.loads(args.listing.read_text()) if args.listing else nox_listing(args.noxfile, sorted(rmap))
    self_hosted = {t.strip() for t in args.self_hosted.split(",") if t.strip()}
    include, notes = plan(listing, rmap, self_hosted=self_hosted, shards=parse_shards(args.shards))
    matrix = json.dumps({"include": include}, separators=(",", ":"))
    full = json.dumps({"include": include, "not_scheduled": notes}, separators=(",", ":"))
    print(json.dumps({"include": include, "not_scheduled": notes}, indent=2))
    for n in notes:
        print(f"note: {n['session']}: not scheduled — {n['reason']}", file=sys.stderr)
    if args.github_output:   # matrix: the strategy; plan: what the report checks the results against
        with open(args.github_output, "a", encoding="utf-8") as fh:
            fh.write(f"matrix={matrix}\nplan={full}\ncount={len(include)}\n")
    if args.summary:
        lines = ["## CI plan (from `nox --list --json`)", "", "| job | runner | shard |", "|---|---|---|"]
        lines += [f"| {e['name']} | {', '.join(e['runs-on'])} | {e['shard'] or '–'} |" for e in include]
        lines += [""] + [f"- {n['session']}: not scheduled — {n['reason']}" for n in notes] + [""]
        with open(args.summary, "a", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
