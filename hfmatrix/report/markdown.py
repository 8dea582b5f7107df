"""results/matrix.md: the report as GitHub-flavoured Markdown, sized for $GITHUB_STEP_SUMMARY (< 1 MiB)."""
from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from . import autozoo, browser, libversions
from .merge import BAD, OUT_INDEX, OUTCOMES, Matrix

MAX_BYTES = 900_000          # GitHub rejects step summaries over 1 MiB
MAX_FAILURES = 100
MAX_REASONS = 25

O = OUT_INDEX


def fmt_err(x: float | None) -> str:
    if x is None:
        return ""
    if x != x:
        return "NaN"
    return "0" if x == 0 else f"{x:.1e}"


def fmt_tol(tol: Any) -> str:
    if isinstance(tol, dict):
        parts = [f"{k}={tol[k]:.1e}" if isinstance(tol[k], (int, float)) else f"{k}={tol[k]}"
                 for k in ("atol", "rtol") if k in tol]
        return " ".join(parts) or json.dumps(tol)[:80]
    if isinstance(tol, (int, float)):
        return f"{tol:.1e}"
    return "" if tol is None else str(tol)[:80]


def fmt_evidence(ev: Any, limit: int = 160) -> str:
    if not ev:
        return ""
    if isinstance(ev, dict):
        text = ", ".join(f"{k}={json.dumps(v, sort_keys=True) if not isinstance(v, str) else v}" for k, v in ev.items())
    else:
        text = str(ev)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def cell_counts(m: Matrix) -> dict[tuple[int, int], list]:
    """(row, col) -> counts per outcome + worst error, summed over checks."""
    n = len(OUTCOMES)
    cells: dict[tuple[int, int], list] = {}
    for (row, col, _), v in m.agg.items():
        c = cells.get((row, col))
        if c is None:
            cells[(row, col)] = c = [0] * n + [None]
        for i in range(n):
            c[i] += v[i]
        if v[n] is not None and (c[n] is None or v[n] > c[n]):
            c[n] = v[n]
    return cells


def cell_text(c: list | None) -> str:
    if not c:
        return "–"
    bad = sum(c[O[o]] for o in BAD)
    parts = []
    if bad:
        parts.append(f"**{bad} ✗**")
    if c[O["passed"]]:
        parts.append(f"{c[O['passed']]} ✓")
    if c[O["skipped"]]:
        parts.append(f"{c[O['skipped']]} skip")
    if c[O["xfailed"]]:
        parts.append(f"{c[O['xfailed']]} xfail")
    err = fmt_err(c[len(OUTCOMES)])
    if err:
        parts.append(f"`{err}`")
    return " ".join(parts)


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

    out += _matrix_table(m)
    out += _failures(m)
    out += autozoo.markdown(m.autozoo)
    out += browser.markdown(m.browser_costs)
    out += _perf(m)
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


def _matrix_table(m: Matrix) -> list[str]:
    if not m.columns:
        return ["No records.", ""]
    cells = cell_counts(m)
    heads = []
    for c in m.columns:
        s = m.sessions[c.session]
        flag = " ⚠️ INCOMPLETE" if not s.complete else ""
        heads.append(f"{_md(c.label())}{flag}")
    out = ["## Matrix", "",
           "Each cell: **✗** did not pass (failed, error, crashed, timeout, xpassed) · ✓ passed · skip · "
           "xfail (known bug) · `worst max |Δ|` measured. – = not run.", "",
           "| class | model | " + " | ".join(heads) + " |",
           "|---|---|" + "---|" * len(heads)]
    last_class = None
    for r, (klass, model) in enumerate(m.rows):
        shown = f"**{_md(klass)}**" if klass != last_class else ""
        last_class = klass
        out.append(f"| {shown} | {_md(model)} | " +
                   " | ".join(cell_text(cells.get((r, c))) for c in range(len(m.columns))) + " |")
    out.append("")
    return out


def _failures(m: Matrix) -> list[str]:
    if not m.failures:
        return ["## Failures", "", "None.", ""]
    out = [f"## Failures ({len(m.failures)})", "",
           "| column | model | check | outcome | max \\|Δ\\| | tolerance | evidence | message |",
           "|---|---|---|---|---|---|---|---|"]
    order = {o: i for i, o in enumerate(("crashed", "timeout", "error", "failed", "xpassed"))}
    for f in sorted(m.failures, key=lambda f: (order.get(f.get("outcome"), 9), f.get("column", ""), f.get("model", "")))[:MAX_FAILURES]:
        meas = f.get("measures") or {}
        err = fmt_err(meas.get("max_abs_err") if isinstance(meas.get("max_abs_err"), (int, float)) else None)
        rel = meas.get("max_rel_err")
        if isinstance(rel, (int, float)):
            err += f" (rel {rel:.1e})"
        msg = (f.get("message") or "").strip().splitlines()
        out.append(f"| {_md(f['column'])} | {_md(f.get('model', ''))} | {_md(f.get('check', ''))} | "
                   f"**{f.get('outcome')}** | {err} | {_md(fmt_tol(meas.get('tolerance')))} | "
                   f"{_md(fmt_evidence(f.get('evidence')))} | {_md(msg[0][:200] if msg else '')} |")
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
    out = ["## Environments", "", "| session | status | shards | records | hardware (hwprobe) | library versions |",
           "|---|---|---|---|---|---|"]
    for s in m.sessions.values():
        status = "complete" if s.complete else "**INCOMPLETE**"
        hw = "<br>".join(_md(hw_summary(h)) for h in s.hwprobe.values()) or "no hwprobe.json"
        out.append(f"| {_md(s.name)} | {status} | {', '.join(sorted(s.shards))} | {s.n_records} | {hw} | "
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
