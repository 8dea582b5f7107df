"""`hfmatrix report`: merge results/<session>/ folders into matrix.json, matrix.md, index.html,
combined coverage and a badge; print plain counts; exit non-zero when anything did not pass.

Exit codes: 0 all checks that ran passed; 1 a check failed / errored / crashed / timed out /
xpassed, a results file was unreadable, a session is INCOMPLETE, or there were no results at all.
``--no-fail`` always exits 0 (local browsing).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from .. import autozoo_report as autozoo
from . import changes as changes_mod
from . import compact
from . import landing
from . import coverage as cov_mod
from .markdown import outcome_summary
from . import merge as merge_mod
from .merge import BAD, Matrix


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hfmatrix report", description=__doc__.split("\n\n")[0])
    p.add_argument("--results-dir", default="results", type=Path, help="folder holding results/<session>/ (default: results)")
    p.add_argument("--no-fail", action="store_true", help="exit 0 even when checks failed (local browsing)")
    p.add_argument("--no-coverage", action="store_true", help="skip combining coverage data")
    p.add_argument("--previous", type=Path, default=None,
                   help="a previous run's matrix.json to list what changed (default: the last report's, kept "
                        "as RESULTS/previous/matrix.json)")
    p.add_argument("--zoo", type=Path, default=None, help="the curated zoo of the landing view (default: hfmatrix/zoo/models.toml)")
    p.add_argument("--rcfile", default="pyproject.toml", type=Path,
                   help="coverage config with the [paths] remapping (default: ./pyproject.toml)")
    return p


def matrix_json(m: Matrix) -> dict[str, Any]:
    return {
        "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "results_dir": m.results_dir,
        "ok": not exit_reasons(m),
        "exit_reasons": exit_reasons(m),
        "totals": dict(m.totals()), "skip_kinds": dict(m.skip_kind_totals()),
        "sessions": {s.name: {
            "complete": s.complete, "incomplete": s.incomplete, "problems": s.problems, "dirs": s.dirs,
            "shards": s.shards, "counts": dict(s.counts), "skip_kinds": dict(s.skip_kinds),
            "records": s.n_records, "reused": s.n_reused, "junit": s.junit, "hwprobe": s.hwprobe,
        } for s in m.sessions.values()},
        "columns": [{"session": c.key[0], "backend": c.key[1], "device": c.key[2], "precision": c.key[3],
                     "software": c.software, "label": c.label()} for c in m.columns],
        "rows": [{"arch_class": k, "model": mo} for k, mo in m.rows],
        "checks": m.checks,
        "cells": [{"row": r, "col": c, "check": m.checks[k],
                   "counts": v.by_outcome(),
                   "worst_max_abs_err": v.worst if v.worst is None or v.worst == v.worst else "NaN"}
                  for (r, c, k), v in sorted(m.agg.items())],
        "failures": m.failures,
        "skips": {k: dict(v.most_common()) for k, v in m.skips.items()},
        "perf": m.perf, "problems": m.problems, "corrupt_files": m.corrupt,
        "junit_only": m.junit_only, "not_scheduled": m.not_scheduled, "coverage": m.coverage,
        "autozoo": {"coverage": autozoo.coverage_table(m.autozoo), "failures_by_stage": autozoo.failures_by_stage(m.autozoo)}
        if m.autozoo else None,
        "browser_costs": m.browser_costs,
        "low_power": m.low_power,
        "landing": m.landing, "changes": m.changes, "reruns": m.reruns, "upgrade": m.upgrade, "serving": m.serving,
    }


def exit_reasons(m: Matrix) -> list[str]:
    t = m.totals()
    reasons = []
    bad = {o: t[o] for o in BAD if t[o]}
    if bad:
        reasons.append("checks did not pass: " + ", ".join(f"{n} {o}" for o, n in bad.items()))
    if m.corrupt:
        reasons.append(f"{len(m.corrupt)} results file(s) unreadable: " + ", ".join(m.corrupt))
    inc = [s.name for s in m.sessions.values() if not s.complete]
    if inc:
        reasons.append("INCOMPLETE session(s): " + ", ".join(inc))
    if not m.sessions:
        reasons.append(f"no results under {m.results_dir}")
    junit_bad = [d for d, c in m.junit_only.items() if c["failures"] or c["errors"]]
    if junit_bad:
        reasons.append("junit-only runs with failures: " + ", ".join(junit_bad))
    return reasons


def _write(path: Path, text: str) -> None:
    """Atomic: a reader (or a crash) never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    results: Path = args.results_dir
    t0 = time.perf_counter()
    if not results.is_dir():
        print(f"hfmatrix report: {results} does not exist: run a backend session first (nox -s cpu)", file=sys.stderr)
        print("0 passed, 0 failed, 0 skipped")
        return 0 if args.no_fail else 1
    m = merge_mod.merge(results)
    m.landing = landing.build(m, args.zoo)
    m.changes = changes_mod.compare(m, changes_mod.previous_path(results, args.previous))
    for p in m.problems:
        print(f"problem: {p}", file=sys.stderr)
    if args.no_coverage:
        m.coverage = {"total": None, "error": "not combined (--no-coverage)", "files": []}
    else:
        m.coverage = cov_mod.combine(results, args.rcfile)
    (results / "coverage-badge.svg").write_text(cov_mod.badge_svg(m.coverage.get("total")), encoding="utf-8")

    from . import html, markdown   # after coverage: the page embeds the badge
    _write(results / "matrix.json", compact.dump_document(matrix_json(m), indent=True))
    _write(results / "matrix.md", markdown.render(m))
    page, detail = html.render(m)
    _write(results / html.DETAIL_FILE, detail)     # the page loads it on demand (a <script>: works from file://)
    _write(results / "index.html", page)
    elapsed = time.perf_counter() - t0

    print(f"hfmatrix report: {len(m.sessions)} session(s), {sum(s.n_records for s in m.sessions.values())} records "
          f"→ {results / 'matrix.md'}, {results / 'matrix.json'}, {results / 'index.html'} "
          f"({len(page.encode()) / 1e6:.2f} MB; {html.DETAIL_FILE} {len(detail.encode()) / 1e6:.1f} MB on demand) in {elapsed:.1f} s")
    cov = m.coverage
    print(f"coverage: {cov['total']:.1f}% → {results / 'coverage.xml'}, {results / 'htmlcov'}, {results / 'coverage-badge.svg'}"
          if cov.get("total") is not None else f"coverage: no total ({cov.get('error')})")
    width = max((len(s) for s in m.sessions), default=5)
    for s in m.sessions.values():
        flag = "" if s.complete else "  INCOMPLETE: " + "; ".join(s.incomplete)
        print(f"  {s.name:<{width}}  {outcome_summary(s.counts, s.skip_kinds)}{flag}")
    for d, c in m.junit_only.items():
        print(f"  {d:<{width}}  junit only: {c['tests']} tests, {c['failures']} failures, {c['errors']} errors, {c['skipped']} skipped")
    for n in m.not_scheduled:
        print(f"  {str(n.get('session')):<{width}}  not run in this CI run: {n.get('reason', '')}")
    t = m.totals()
    print(f"  {'TOTAL':<{width}}  {outcome_summary(t, m.skip_kind_totals())}")
    reasons = exit_reasons(m)
    for r in reasons:
        print(f"FAIL: {r}")
    failed = sum(t[o] for o in BAD)
    print(f"{t['passed']} passed, {failed} failed, {t['skipped']} skipped")
    return 0 if args.no_fail or not reasons else 1
