"""The page's first screen, rendered here (it shows without JavaScript and without the on-demand
detail file): what changed, the curated models × backends, the failures that explain themselves,
and the auto-zoo apart."""
from __future__ import annotations

from html import escape as e
from typing import Any

from .. import autozoo_report as autozoo
from . import explain, landing
from .merge import BAD, OUT_INDEX, OUTCOMES, Matrix

MAX_FAILURES = 150        # on the page with every detail; the rest are in matrix.json / the full matrix
MAX_CHANGES = 100


def changes_html(m: Matrix) -> str:
    ch = m.changes
    if ch is None:
        return ("<p class='kv'>No previous run to compare with: <code>hfmatrix report --previous PATH</code> "
                "(a matrix.json); a local report keeps the last one as results/previous/matrix.json.</p>")
    if ch.get("error"):
        return f"<p class='warn'>{e(ch['error'])}</p>"
    head = (f"<p class='kv'>Since <code>{e(ch['source'])}</code> ({e(str(ch.get('previous_generated') or '?'))}); "
            f"{ch.get('new_cells', 0)} new cells, {ch.get('gone_cells', 0)} gone.</p>")
    parts = []
    for key, title, cls in (("pass_to_fail", "pass → fail", "bad"), ("fail_to_pass", "fail → pass", "ok"),
                            ("new_skips", "new skips", "sk"), ("error_growth", "error grew beyond 2×", "bad")):
        items = ch.get(key) or []
        if not items:
            continue
        lis = "".join(
            f"<li><code>{e(x['model'])}</code> {e(x['check'])} @ {e(x['column'])} "
            + (f"<span class='mono'>{explain.num(x['err_before'])} → {explain.num(x['err_now'])}</span>"
               if key == "error_growth" else f"<span class='kv'>({e(x['before'])} → {e(x['now'])})</span>")
            + "</li>" for x in items[:MAX_CHANGES])
        more = f"<li>… {len(items) - MAX_CHANGES} more in matrix.json</li>" if len(items) > MAX_CHANGES else ""
        parts.append(f"<div class='chg {cls}' data-kind='{key}'><b>{e(title)} ({len(items)})</b><ul>{lis}{more}</ul></div>")
    return head + ("".join(parts) or "<p>Nothing: no verdict changed and no error grew beyond 2×.</p>")


def landing_html(m: Matrix) -> str:
    land = m.landing or {}
    cols, rows = land.get("cols") or [], land.get("rows") or []
    n = len(OUTCOMES)
    absent = "".join(
        f"<li class='absent'>Hardware absent — <b>{e(a['hardware'])}</b>: {e(', '.join(a['targets']))} "
        f"<span class='kv'>(session {e(', '.join(a['sessions']))}: {e(a['reason'])})</span></li>"
        for a in land.get("absent") or [])
    absent = f"<ul class='absentl'>{absent}</ul>" if absent else ""
    if not cols:
        return "<p>No curated model ran on any backend in this run.</p>" + absent
    cells = {(c[0], c[1]): c for c in land.get("cells", [])}
    head = "".join(
        f"<th data-b='{e(c['backend'])}' title='sessions: {e(', '.join(c['sessions']))}'>"
        f"<span class='ch-s'>{e(c['backend'])}</span><span class='ch-d'>{e(c['device'])} · {e(c['precision'])}</span>"
        + ("<span class='ch-d soft' title='evidence says this device is emulated in software'>software</span>" if c["software"] else "")
        + ("<span class='tag inc' title='a session of this column did not finish'>INCOMPLETE</span>" if c["incomplete"] else "")
        + "</th>" for c in cols)
    body, last = [], None
    for ri, (klass, model, _) in enumerate(rows):
        if klass != last:
            body.append(f"<tr class='grp' data-k='{e(klass)}'><td class='rm'>{e(klass)}</td><td colspan='{len(cols)}'></td></tr>")
            last = klass
        tds = "".join(_cell(ri, ci, cells.get((ri, ci)), c, n) for ci, c in enumerate(cols))
        bad = any(cells.get((ri, ci), [0, 0, ""])[2] == "bad" for ci in range(len(cols)))
        body.append(f"<tr data-k='{e(klass)}' data-bad='{int(bad)}'><td class='rm'>{e(model)}</td>{tds}</tr>")
    return (f"<div class='first'><div class='tablewrap'><table id='landing'><thead><tr><th class='rm'>model</th>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></div>{_failures_aside(m)}</div>{absent}")


def _failures_aside(m: Matrix, limit: int = 8) -> str:
    """Beside the matrix, on the first screen: each failure's assertion in one line."""
    if not m.failures:
        return "<aside class='fside ok'><b>No failures.</b></aside>"
    items = "".join(
        f"<li><span class='oc {e(str(f.get('outcome')))}'>{e(str(f.get('outcome')))}</span> <code>{e(str(f.get('model', '')))}</code> "
        f"{e(str(f.get('check', '')))} <span class='kv'>@ {e(f['column'])}</span><div class='why'>{e(explain.headline(f.get('message'), 160))}</div></li>"
        for f in sorted(m.failures, key=explain.sort_key)[:limit])
    more = f"<p class='kv'>… and {len(m.failures) - limit} more</p>" if len(m.failures) > limit else ""
    return (f"<aside class='fside'><b><a href='#failures'>Failures ({len(m.failures)})</a></b> "
            f"<span class='kv'>— what was compared and the rerun command: below</span><ul>{items}</ul>{more}</aside>")


def _cell(ri: int, ci: int, c: list | None, col: dict, n: int) -> str:
    if not c:
        return f"<td class='lc none' data-b='{e(col['backend'])}'>–</td>"
    st, counts = c[2], c[3:3 + n]
    frac, err = c[3 + n], c[4 + n]
    bad = sum(counts[OUT_INDEX[o]] for o in BAD)
    tip = ", ".join(f"{v} {o}" for o, v in zip(OUTCOMES, counts) if v)
    if err is not None:
        tip += f"; worst max |Δ| {explain.num(err)}"
    shown = landing.frac_text(frac)
    num = f"<span class='fr'>{e(shown)}</span>" if shown else ""
    count = f"<span class='nb'>{bad}</span>" if bad else ""
    return (f"<td class='lc {st}' data-ri='{ri}' data-ci='{ci}' data-b='{e(col['backend'])}' data-status='{st}' "
            f"title='{e(landing.STATUS_WORDS[st])}: {e(tip)}'>{landing.GLYPH[st]}{count}{num}</td>")


def failures_html(m: Matrix) -> str:
    if not m.failures:
        return "<p>None.</p>"
    items = []
    for f in sorted(m.failures, key=explain.sort_key)[:MAX_FAILURES]:
        rows = "".join(f"<tr><th>{e(k)}</th><td class='mono'>{e(v)}</td></tr>" for k, v in explain.compared(f))
        ev = explain.evidence_text(f.get("evidence"), 400)
        cmd = explain.rerun(f)
        items.append(
            f"<li class='fail' data-session='{e(str(f.get('session')))}'><div><span class='oc {e(str(f.get('outcome')))}'>"
            f"{e(str(f.get('outcome')))}</span> <code>{e(str(f.get('model', '')))}</code> {e(str(f.get('check', '')))} "
            f"<span class='kv'>@ {e(f['column'])}</span></div>"
            f"<div class='why'>{e(explain.headline(f.get('message')))}</div>"
            f"{'<table class=cmp>' + rows + '</table>' if rows else ''}"
            f"{'<div class=kv>evidence: <span class=mono>' + e(ev) + '</span></div>' if ev else ''}"
            f"<div class='rerun'>rerun: <code class='cmd'>{e(cmd)}</code></div>"
            f"<details><summary>full message</summary><pre>{e((f.get('message') or '')[:4000])}</pre></details></li>")
    more = (f"<p class='kv'>… {len(m.failures) - MAX_FAILURES} more in matrix.json and the full matrix below.</p>"
            if len(m.failures) > MAX_FAILURES else "")
    return f"<ol class='fails'>{''.join(items)}</ol>{more}"


def autozoo_html(records: list[dict[str, Any]]) -> str:
    if not records:
        return "<p>No auto-zoo records in this run (<code>nox -s zoo</code>).</p>"
    table = autozoo.coverage_table(records)
    head = "".join(f"<th>{e(k.replace('_', ' '))}</th>" for k in autozoo.COLUMNS)
    rows = "".join(f"<tr><td>{e(name)}</td>" + "".join(f"<td>{row[k]}</td>" for k in autozoo.COLUMNS) + "</tr>"
                   for name, row in sorted(table.items(), key=lambda kv: (kv[0] == "total", kv[0])))
    stages = "".join(
        f"<details><summary><b>{e(stage)}</b> ({len(items)})</summary><ul>"
        + "".join(f"<li><code>{e(str(i['model']))}</code> {e(str(i['role']))}: {e(i['message'])}</li>" for i in items[:60])
        + "</ul></details>" for stage, items in autozoo.failures_by_stage(records).items())
    return (f"<p class='kv'>Every transformers model type, tiny and random: a type passes when its base and head "
            f"model both ran build → forward → save → load.</p><table class='rt az'><thead><tr><th>class</th>{head}</tr>"
            f"</thead><tbody>{rows}</tbody></table>" + (f"<h3>Failures by stage</h3>{stages}" if stages else ""))
