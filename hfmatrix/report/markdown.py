"""results/matrix.md: the report as GitHub-flavoured Markdown for $GITHUB_STEP_SUMMARY, read first:
what changed, the curated models × backends, the failures with their reasons. Kept under 64 KB for
the default matrix; the full lists (every model, every skip) are in index.html / matrix.json."""
from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from .. import autozoo_report as autozoo
from . import browser, explain, landing, libversions, lowpower, reruns, serving, upgrade
from .merge import BAD, OUT_INDEX, OUTCOMES, Matrix

MAX_BYTES = 64_000           # a summary read in seconds (GitHub's own limit is 1 MiB)
MAX_FAILURES = 60            # one line each, after the first DETAILED with what was compared
DETAILED = 12
MAX_REASONS = 8
MAX_CHANGES = 30

O = OUT_INDEX


def outcome_summary(counts, kinds=None) -> str:
    """'12 passed, 1 failed, 3 skipped (hardware-absent 3), 1 crashed, 0 timed out' style."""
    bits = [f"{counts.get('passed', 0)} passed", f"{counts.get('failed', 0)} failed"]
    sk = f"{counts.get('skipped', 0)} skipped"
    if kinds:
        sk += " (" + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())) + ")"
    bits.append(sk)
    bits += [f"{counts.get('crashed', 0)} crashed", f"{counts.get('timeout', 0)} timed out"]
    for o, word in (("error", "errors"), ("xpassed", "xpassed"), ("xfailed", "xfailed")):
        if counts.get(o):
            bits.append(f"{counts[o]} {word}")
    return ", ".join(bits)


def status_line(m: Matrix, plain: bool = False) -> str:
    """The headline; plain=True for HTML (text symbols: emoji fonts are often missing)."""
    text = _status_line(m)
    if plain:
        for emoji, sym in (("❌ ", "✗ "), ("✅ ", "✓ "), ("⚠️ ", "⚠ ")):
            text = text.replace(emoji, sym)
        text = text.replace("**", "")
    return text


def _status_line(m: Matrix) -> str:
    t = m.totals()
    bad = sum(t[o] for o in BAD)
    total = sum(t.values())
    incomplete = [s.name for s in m.sessions.values() if not s.complete]
    if not m.sessions:
        head = "⚠️ **No results found**"
    elif bad:
        head = f"❌ **{bad} of {total} checks did not pass**"
    elif m.corrupt:
        head = "❌ **Unreadable results files**"
    elif incomplete:
        head = "⚠️ **Incomplete run**"
    else:
        head = f"✅ **All {t['passed']} checks that ran passed**"
    return f"{head} — {outcome_summary(t, m.skip_kind_totals())}"


def render(m: Matrix) -> str:
    out: list[str] = ["# hfmatrix — model × backend matrix", "", status_line(m), ""]
    cov = m.coverage or {}
    if cov.get("total") is not None:
        out += [f"Coverage (all sessions combined): **{cov['total']:.1f}%**", ""]

    if m.not_scheduled:
        out += ["Not run in this CI run: " + "; ".join(f"`{n.get('session')}` ({_md(n.get('reason', ''))})"
                                                     for n in m.not_scheduled), ""]
    incomplete = [s for s in m.sessions.values() if not s.complete]
    if m.problems or incomplete:
        out += ["## ⚠️ Problems", ""]
        for s in incomplete:
            out.append(f"- **INCOMPLETE** session `{s.name}`: " + "; ".join(s.incomplete))
        for p in m.problems[:50]:
            out.append(f"- {_md(p)}")
        if len(m.problems) > 50:
            out.append(f"- … {len(m.problems) - 50} more (see matrix.json)")
        out.append("")

    out += _changes(m)
    out += _landing(m)
    out += _failures(m)
    out += reruns.markdown(m.reruns)
    out += upgrade.markdown(m.upgrade)
    out += autozoo.markdown(m.autozoo, max_listed=5)
    out += browser.markdown(m.browser_costs)
    out += lowpower.markdown(m.low_power)
    out += _perf(m)
    out += serving.markdown(m.serving)
    out += _skips(m)
    out += _env(m)
    out += _junit_only(m)
    out += ["## Coverage", ""]
    if cov.get("total") is not None:
        out.append(f"**{cov['total']:.1f}%** of `hfmatrix` + `hwprobe` lines and branches, combined from "
                   f"{len(cov.get('files', []))} data files ({cov.get('xml')}, {cov.get('html')}, coverage-badge.svg).")
    else:
        out.append(f"No total: {cov.get('error') or 'coverage not combined'}.")
    out.append("")
    text = "\n".join(out)
    if len(text.encode()) > MAX_BYTES:
        cut = text.encode()[:MAX_BYTES].decode(errors="ignore")
        text = cut[:cut.rfind("\n")] + "\n\n… (truncated to fit the step summary: the full report is in index.html / matrix.json)\n"
    return text


def _md(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ").replace("<", "&lt;")


def _changes(m: Matrix) -> list[str]:
    ch = m.changes
    if ch is None:
        return ["## What changed", "", "No previous run to compare with (`--previous PATH` to a matrix.json; "
                "a local report keeps the last one as results/previous/matrix.json).", ""]
    if ch.get("error"):
        return ["## What changed", "", f"⚠️ {_md(ch['error'])}", ""]
    out = ["## What changed", "", f"Since `{_md(ch['source'])}` ({_md(ch.get('previous_generated') or '?')}); "
           f"{ch.get('new_cells', 0)} new cells, {ch.get('gone_cells', 0)} gone.", ""]
    titles = (("pass_to_fail", "❌ pass → fail"), ("fail_to_pass", "✅ fail → pass"), ("new_skips", "new skips"),
              ("error_growth", f"error grew beyond {2:g}×"))
    if not any(ch.get(k) for k, _ in titles):
        return out + ["Nothing: no verdict changed and no error grew beyond 2×.", ""]
    for key, title in titles:
        items = ch.get(key) or []
        if not items:
            continue
        out.append(f"**{title} ({len(items)})**: " + "; ".join(
            f"`{_md(e['model'])}` {_md(e['check'])} @ {_md(e['column'])}"
            + (f" ({explain.num(e['err_before'])} → {explain.num(e['err_now'])})" if key == "error_growth" else
               f" ({e['before']} → {e['now']})" if key == "new_skips" else "")
            for e in items[:MAX_CHANGES]) + (f"; … {len(items) - MAX_CHANGES} more" if len(items) > MAX_CHANGES else ""))
        out.append("")
    return out


def _landing(m: Matrix) -> list[str]:
    land = m.landing or {}
    cols, rows = land.get("cols") or [], land.get("rows") or []
    out = ["## Curated models × backends", ""]
    if not cols:
        out += ["No curated model ran on any backend in this run.", ""]
    else:
        n = len(OUTCOMES)
        cells = {(c[0], c[1]): c for c in land.get("cells", [])}
        out += ["✓ passed · **✗** did not pass · ⚑ known bug only (strict xfail) · ○ skipped only · – not run; "
                "the number is the worst error as a share of its tolerance (`40%` inside it, `3×` over it).", "",
                "| class | model | " + " | ".join(_md(c["label"]) + (" ⚠️ INCOMPLETE" if c["incomplete"] else "")
                                                  for c in cols) + " |",
                "|---|---|" + "---|" * len(cols)]
        last = None
        for ri, (klass, model, _) in enumerate(rows):
            shown = f"**{_md(klass)}**" if klass != last else ""
            last = klass
            out.append(f"| {shown} | {_md(model)} | " + " | ".join(
                _landing_cell(cells.get((ri, ci)), n) for ci in range(len(cols))) + " |")
        out.append("")
    for a in land.get("absent") or []:
        out.append(f"Hardware absent — **{_md(a['hardware'])}** ({_md(', '.join(a['sessions']))}: "
                   f"{_md(', '.join(a['targets']))}): {_md(a['reason'])}")
    if land.get("absent"):
        out.append("")
    return out


def _landing_cell(c: list | None, n: int) -> str:
    if not c:
        return "–"
    st, counts = c[2], c[3:3 + n]
    frac = landing.frac_text(c[3 + n])
    glyph = landing.GLYPH[st]
    if st == "bad":
        bad = sum(counts[O[o]] for o in BAD)
        return f"**{glyph} {bad}/{sum(counts)}** {frac}".rstrip()
    return f"{glyph} {frac}".rstrip()


def _failures(m: Matrix) -> list[str]:
    if not m.failures:
        return ["## Failures", "", "None.", ""]
    out = [f"## Failures ({len(m.failures)})", ""]
    ordered = sorted(m.failures, key=explain.sort_key)
    for k, f in enumerate(ordered[:MAX_FAILURES]):
        head = (f"- **{f.get('outcome')}** `{_md(f.get('model', ''))}` {_md(f.get('check', ''))} @ "
                f"{_md(f['column'])}: {_md(explain.headline(f.get('message'), 300))}")
        if k >= DETAILED:
            out.append(head)
            continue
        out.append(head)
        for label, text in explain.compared(f):
            out.append(f"  - {label}: {_md(text)[:400]}")
        ev = explain.evidence_text(f.get("evidence"), 200)
        if ev:
            out.append(f"  - evidence: {_md(ev)}")
        out.append(f"  - rerun: `{explain.rerun(f)}`")
    if len(m.failures) > MAX_FAILURES:
        out.append(f"\n… and {len(m.failures) - MAX_FAILURES} more in index.html / matrix.json.")
    out.append("")
    return out


def _perf(m: Matrix) -> list[str]:
    if not m.perf:
        return ["## Perf regressions", "", "No benchmark data in this run (results/<session>/bench-*.json).", ""]
    reg = [p for p in m.perf if p["regression"]]
    out = ["## Perf regressions", ""]
    if not reg:
        out += [f"None among {len(m.perf)} benchmark entries.", ""]
        return out
    out += ["| session | model | backend · device · precision | metric | p50 ms | baseline ms | ratio |",
            "|---|---|---|---|---|---|---|"]
    for p in sorted(reg, key=lambda p: -(p["ratio"] or 0))[:MAX_FAILURES]:
        out.append(f"| {_md(p['session'])} | {_md(p['model'])} | {_md(' · '.join(x for x in (p['backend'], p['device'], p['precision']) if x))} | "
                   f"{_md(p['metric'])} | {_g(p['value'])} | {_g(p['baseline'])} | {_ratio(p['ratio'])} |")
    out.append("")
    return out


def _ratio(x: float | None) -> str:
    return "" if x is None else f"{x:.2f}×"


def _g(x: float | None) -> str:
    return "" if x is None else f"{x:.3g}"


def _skips(m: Matrix) -> list[str]:
    if not m.skips:
        return ["## Skips", "", "None.", ""]
    out = ["## Skips by kind", ""]
    for kind, reasons in m.skips.items():
        out.append(f"### {kind} ({sum(reasons.values())})" + (" — a skip without a typed kind" if kind == "untyped" else ""))
        out.append("")
        for reason, n in reasons.most_common(MAX_REASONS):
            where = sorted(m.skip_sessions.get((kind, reason), ()))
            out.append(f"- {n} × {_md(reason)}" + (f" — {_md(', '.join(where[:8]))}{' …' if len(where) > 8 else ''}" if where else ""))
        if len(reasons) > MAX_REASONS:
            out.append(f"- … {len(reasons) - MAX_REASONS} more reasons")
        out.append("")
    return out


def hw_summary(hw: dict[str, Any]) -> str:
    if not isinstance(hw, dict):
        return ""
    host = hw.get("host") or {}
    bits = [str(host.get("platform") or host.get("os") or "")]
    backends = hw.get("backends") or {}
    if isinstance(backends, dict):
        avail = [k for k, v in backends.items() if isinstance(v, dict) and v.get("available")]
        bits.append("available: " + (", ".join(avail) or "none"))
        cpu = backends.get("cpu")
        if isinstance(cpu, dict) and cpu.get("reason"):
            bits.append(str(cpu["reason"]))
    return "; ".join(b for b in bits if b)


KEY_LIBS = ("torch", "transformers", "onnxruntime", "openvino", "optimum", "onnxruntime-web", "numpy")


def versions_summary(versions: dict[str, int]) -> str:
    sets = [json.loads(v) for v in versions]
    if not sets:
        return ""
    libs = defaultdict(set)
    for vs in sets:
        for k, v in vs.items():
            libs[k].add(str(v))
    keys = [k for k in KEY_LIBS if k in libs] or sorted(libs)[:6]
    return ", ".join(f"{k} {'/'.join(sorted(libs[k]))}" for k in keys)


def _env(m: Matrix) -> list[str]:
    if not m.sessions:
        return []
    out = ["## Environments", "", "| session | status | shards | records (reused / computed) | hardware (hwprobe) | library versions |",
           "|---|---|---|---|---|---|"]
    for s in m.sessions.values():
        status = "complete" if s.complete else "**INCOMPLETE**"
        hw = "<br>".join(_md(hw_summary(h)) for h in s.hwprobe.values()) or "no hwprobe.json"
        records = f"{s.n_records} ({s.n_reused} / {s.n_records - s.n_reused})"
        out.append(f"| {_md(s.name)} | {status} | {', '.join(sorted(s.shards))} | {records} | {hw} | "
                   f"{_md(versions_summary(s.versions))} |")
    out.append("")
    return out + libversions.markdown(m.sessions)


def _junit_only(m: Matrix) -> list[str]:
    if not m.junit_only:
        return []
    out = ["## Other test runs (junit.xml only)", ""]
    for d, c in m.junit_only.items():
        out.append(f"- `{d}`: {c['tests']} tests, {c['failures']} failures, {c['errors']} errors, {c['skipped']} skipped")
    out.append("")
    return out
