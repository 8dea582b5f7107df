"""results/index.html: the page (inline CSS, JS, SVG; no network; opens from disk) and, beside it,
index-data.js: every record as one compact, column-oriented JSON blob with an interned string table.

The page stays small (its first screen is rendered here: sections.py); the records load on demand
with a <script> tag, which works from file:// where fetch() is blocked, and in a CI artifact.
"""
from __future__ import annotations

import json
import time
from collections import defaultdict
from html import escape
from pathlib import Path
from typing import Any

from . import compact, libversions, plots, reruns, sections, serving, upgrade
from .markdown import hw_summary, outcome_summary, status_line, versions_summary
from .merge import BAD, OUT_INDEX, OUTCOMES, Matrix

HERE = Path(__file__).parent
DETAIL_FILE = "index-data.js"


def payload(m: Matrix) -> tuple[dict[str, Any], dict[str, Any]]:
    """(embedded in the page, loaded on demand from DETAIL_FILE); a shared token lets the page refuse
    a detail file left over from another run."""
    token = f"{time.time_ns():x}"
    cols = []
    for c in m.columns:
        s = m.sessions[c.session]
        session, backend, device, precision = c.key
        cols.append({"session": session, "backend": backend, "device": device, "precision": precision,
                     "software": c.software, "incomplete": not s.complete, "label": c.label()})
    agg = []
    for (row, col, chk), v in m.agg.items():
        agg.append([row, col, chk, *v.counts, compact.err(v.worst)])
    t = m.table
    rec = {"r": t.r, "c": t.c, "k": t.k, "o": t.o, "err": [compact.err(x) for x in t.err], "idp": t.idp,
           "id": t.id, "msg": t.msg, "tol": t.tol, "dur": t.dur, "ev": t.ev, "ms": t.ms, "sk": t.sk, "sh": t.sh}
    sessions = []
    for s in m.sessions.values():
        sessions.append({
            "name": s.name, "complete": s.complete, "incomplete": s.incomplete, "problems": s.problems,
            "dirs": s.dirs, "junit": s.junit,
            "versions": [[json.loads(k), v] for k, v in s.versions.most_common()],
            "counts": dict(s.counts), "skip_kinds": dict(s.skip_kinds), "records": s.n_records,
            "reused": s.n_reused,
        })
    page = {
        "generated": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "outcomes": list(OUTCOMES), "bad": [OUT_INDEX[o] for o in BAD],
        "columns": cols, "rows": [list(r) for r in m.rows], "checks": m.checks, "sessions": sessions,
        "landing": m.landing, "detail": DETAIL_FILE, "n_records": len(t), "token": token,
    }
    return page, {"agg": agg, "rec": rec, "strings": t.strings.table, "token": token}


def _parity_plot(m: Matrix) -> str:
    by_col: dict[int, tuple[list[float], list[float], list[int]]] = defaultdict(lambda: ([], [], [0]))
    bad = {OUT_INDEX[o] for o in BAD}
    t = m.table
    for col, out, err in zip(t.c, t.o, t.err):
        if err is None:
            continue
        ok, failed, zero = by_col[col]
        if err == 0:
            zero[0] += 1
        elif out in bad:
            failed.append(err)
        else:
            ok.append(err)
    series, exact_only = [], []
    for col in sorted(by_col):
        ok, failed, zero = by_col[col]
        if not ok and not failed:
            exact_only.append(f"{m.columns[col].label()} ({zero[0]})")
            continue
        label = m.columns[col].label() + (f" ({zero[0]} exact)" if zero[0] else "")
        series.append((label, ok, failed))
    note = (f"<p>Every measured max |Δ| is exactly 0 (bit-identical to the reference), nothing to place on a log "
            f"scale, in: {escape(', '.join(exact_only))}.</p>") if exact_only else ""
    return note + plots.box_plot(series, title="Parity error per backend column: max |Δ| vs CPU fp32 torch",
                          unit="max |Δ| (log scale) — box: quartiles, whiskers: min–max, red dots: checks that did not pass",
                          log=True)


def _perf_plot(m: Matrix) -> str:
    groups: dict[str, list[float]] = defaultdict(list)
    reg: dict[str, list[float]] = defaultdict(list)
    for p in m.perf:
        label = " · ".join(x for x in (p["session"], p["backend"], p["device"], p["precision"], p["metric"]) if x)
        vals = p["samples"] or ([p["value"]] if p["value"] is not None else [])
        (reg if p["regression"] else groups)[label].extend(vals)
    labels = sorted(set(groups) | set(reg))[:40]
    if not labels:
        return ""
    return plots.box_plot([(lab, groups.get(lab, []), reg.get(lab, [])) for lab in labels],
                          title="Forward latency per benchmark (batch 1)",
                          unit="latency ms (log scale) — box: samples' quartiles, red dots: regressions vs baseline", log=True)


def _static_sections(m: Matrix) -> dict[str, str]:
    e = escape
    # skips by kind
    if m.skips:
        parts = []
        for kind, reasons in m.skips.items():
            items = "".join(f"<li><b>{n}</b> × {e(reason)} <span class='kv'>{e(', '.join(sorted(m.skip_sessions.get((kind, reason), ()))))}</span></li>"
                            for reason, n in reasons.most_common(40))
            more = f"<li>… {len(reasons) - 40} more reasons</li>" if len(reasons) > 40 else ""
            note = " <span class='warn'>(no typed kind)</span>" if kind == "untyped" else ""
            parts.append(f"<details open><summary><span class='kind'>{e(kind)}</span> "
                         f"{sum(reasons.values())}{note}</summary><ul>{items}{more}</ul></details>")
        skips = "".join(parts)
    else:
        skips = "<p>None.</p>"
    # env inventory: the stacks side by side first, then each session's details
    envs = [libversions.html(m.sessions, e)]
    for s in m.sessions.values():
        badge = "<span class='badge ok'>complete</span>" if s.complete else "<span class='badge inc'>INCOMPLETE</span>"
        hw = "".join(f"<details><summary>hwprobe.json — {e(d)}: {e(hw_summary(h))}</summary>"
                     f"<pre>{e(json.dumps(h, indent=2, sort_keys=True)[:200_000])}</pre></details>"
                     for d, h in s.hwprobe.items()) or "<p class='warn'>no hwprobe.json</p>"
        vers = "".join(f"<details><summary>library versions ({n} records): {e(versions_summary({v: n}))}</summary>"
                       f"<pre>{e(json.dumps(json.loads(v), indent=2, sort_keys=True))}</pre></details>"
                       for v, n in s.versions.most_common(10)) or "<p class='warn'>no versions in records</p>"
        metas = "".join(f"<details><summary>meta-{e(sh)}.json</summary><pre>{e(json.dumps(meta, indent=2, sort_keys=True, default=str))}</pre></details>"
                        for sh, meta in sorted(s.shards.items()))
        why = "".join(f"<li>{e(x)}</li>" for x in s.incomplete + s.problems)
        envs.append(f"<section class='env' id='env-{e(s.name)}'><h3>{e(s.name)} {badge}</h3>"
                    f"<p>{e(outcome_summary(s.counts, s.skip_kinds))} · {s.n_reused} verdicts reused, "
                    f"{s.n_records - s.n_reused} computed · folders: {e(', '.join(s.dirs))}</p>"
                    f"{'<ul class=warn>' + why + '</ul>' if why else ''}{hw}{vers}{metas}</section>")
    junit = "".join(f"<li><code>{e(d)}</code>: {c['tests']} tests, {c['failures']} failures, {c['errors']} errors, "
                    f"{c['skipped']} skipped</li>" for d, c in m.junit_only.items())
    if junit:
        envs.append(f"<section class='env'><h3>Other test runs (junit.xml only)</h3><ul>{junit}</ul></section>")
    cov = m.coverage or {}
    if cov.get("total") is not None:
        badge = (Path(m.results_dir) / "coverage-badge.svg")
        svg = badge.read_text() if badge.exists() else ""
        coverage = (f"<p>{svg} <b>{cov['total']:.1f}%</b> of hfmatrix + hwprobe, combined from "
                    f"{len(cov.get('files', []))} data files. <a href='{e(cov.get('html') or '')}'>Line-by-line coverage</a> · "
                    f"<a href='{e(cov.get('xml') or '')}'>coverage.xml</a></p>")
    else:
        coverage = f"<p class='warn'>No coverage total: {e(cov.get('error') or 'not combined')}.</p>"
    problems = ""
    incomplete = [s for s in m.sessions.values() if not s.complete]
    if m.problems or incomplete:
        items = "".join(f"<li><b>INCOMPLETE</b> session <code>{e(s.name)}</code>: {e('; '.join(s.incomplete))}</li>" for s in incomplete)
        items += "".join(f"<li>{e(p)}</li>" for p in m.problems[:200])
        problems = f"<section class='problems' id='problems'><h2>Problems</h2><ul>{items}</ul></section>"
    if m.not_scheduled:
        items = "".join(f"<li><code>{e(str(n.get('session')))}</code>: {e(str(n.get('reason', '')))}</li>" for n in m.not_scheduled)
        problems += f"<section class='notice'><b>Not run in this CI run</b><ul>{items}</ul></section>"
    plots_html = _parity_plot(m) or "<p>No parity errors measured.</p>"
    perf = _perf_plot(m)
    t = m.totals()
    bad = sum(t[o] for o in BAD)
    cls = "bad" if bad or m.corrupt else "inc" if incomplete or not m.sessions else "ok"
    status = status_line(m, plain=True)
    return {"STATUS": e(status), "STATUS_CLASS": cls, "PROBLEMS": problems, "SKIPS": skips,
            "ENVS": "".join(envs), "COVERAGE": coverage, "PLOTS": plots_html + (perf or ""),
            "PERF_NOTE": "" if perf else "<p>No benchmark data (results/&lt;session&gt;/bench*.json) in this run.</p>"}


def render(m: Matrix) -> tuple[str, str]:
    """(index.html, the DETAIL_FILE script beside it)."""
    template = (HERE / "template.html").read_text(encoding="utf-8")
    css = (HERE / "report.css").read_text(encoding="utf-8")
    js = (HERE / "report.js").read_text(encoding="utf-8")
    page, detail = payload(m)
    data = compact.dump_document(page).replace("</", "<\\/")
    parts = _static_sections(m)
    parts.update({"CSS": css, "JS": js.replace("</", "<\\/"), "DATA": data,
                  "CHANGES": sections.changes_html(m), "LANDING": sections.landing_html(m),
                  "FAILURES": sections.failures_html(m) + reruns.html(m.reruns) + upgrade.html(m.upgrade),
                  "AUTOZOO": sections.autozoo_html(m.autozoo),
                  "N_FAILURES": str(len(m.failures)), "N_RECORDS": str(len(m.table or ())),
                  "DETAIL_FILE": DETAIL_FILE})
    parts["PERF_NOTE"] += serving.html(m.serving)  # beside the perf plots: the served models' load figures
    # one pass over the template: markers look like @@NAME@@ and never occur in data
    out, pos = [], 0
    while True:
        i = template.find("@@", pos)
        if i < 0:
            out.append(template[pos:])
            break
        j = template.find("@@", i + 2)
        out.append(template[pos:i])
        out.append(parts[template[i + 2:j]])
        pos = j + 2
    return "".join(out), "window.HFM_DETAIL = " + compact.dump_document(detail) + ";\n"
