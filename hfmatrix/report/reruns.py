"""Flaky or broken: what the re-runs of failing cells (``--hfm-rerun-failures``, hfmatrix/rerun.py) say.

A session's first run (``records-<shard>.jsonl``) decides its verdicts and counts; the re-runs
(``records-<shard>.rerunK.jsonl``) only sort its failing cells into **flaky** (passed on some re-run) and
**failed every time**. Both stay failures: a flaky cell is a failure that does not reproduce, not a pass.
"""
from __future__ import annotations

import re
from html import escape
from typing import Any

from ..records import RERUN_OUTCOMES, selectable

BAD = RERUN_OUTCOMES
RERUN_SHARD = re.compile(r"\.rerun(\d+)$")


def is_rerun(shard: str) -> bool:
    return bool(RERUN_SHARD.search(shard))


def _key(record: dict) -> str:
    return selectable(record.get("nodeid", "")).split("::", 1)[-1]  # the re-run names files absolutely


def classify(first: list[dict], reruns: list[dict]) -> dict[str, Any]:
    """{rerun, flaky, failed_every_time}: node ids of the first run's bad cells by what their re-runs did."""
    bad = [_key(r) for r in first if r.get("outcome") in BAD]
    passed = {_key(r) for r in reruns if r.get("outcome") == "passed"}
    seen = {_key(r) for r in reruns}
    rerun = [k for k in bad if k in seen]
    return {"rerun": len(rerun), "flaky": sorted(k for k in rerun if k in passed),
            "failed_every_time": sorted(k for k in rerun if k not in passed)}


def markdown(per_session: dict[str, dict[str, Any]], limit: int = 20) -> list[str]:
    rows = {s: v for s, v in per_session.items() if v["rerun"]}
    if not rows:
        return []
    out = ["## Flaky or broken (failing cells re-run in a fresh process)", "",
           "| session | re-run | flaky (passed on a re-run) | failed every time |", "|---|---|---|---|"]
    for s, v in sorted(rows.items()):
        out.append(f"| {s} | {v['rerun']} | {len(v['flaky'])} | {len(v['failed_every_time'])} |")
    flaky = [f"`{k}` ({s})" for s, v in sorted(rows.items()) for k in v["flaky"]]
    if flaky:
        out += ["", "Flaky (still failures): " + ", ".join(flaky[:limit]) + (" …" if len(flaky) > limit else "")]
    return out + [""]


def html(per_session: dict[str, dict[str, Any]]) -> str:
    rows = {s: v for s, v in per_session.items() if v["rerun"]}
    if not rows:
        return ""
    body = "".join(f"<tr><td>{escape(s)}</td><td>{v['rerun']}</td><td>{len(v['flaky'])}</td>"
                   f"<td>{len(v['failed_every_time'])}</td></tr>" for s, v in sorted(rows.items()))
    items = "".join(f"<li><code>{escape(k)}</code> ({escape(s)})</li>" for s, v in sorted(rows.items()) for k in v["flaky"])
    return (f"<section id='reruns'><h3>Flaky or broken</h3><p>Failing cells re-run in a fresh process; both kinds stay "
            f"failures.</p><table><tr><th>session</th><th>re-run</th><th>flaky</th><th>failed every time</th></tr>"
            f"{body}</table>{'<ul>' + items + '</ul>' if items else ''}</section>")
