"""Small inline-SVG plots (no matplotlib: nothing to install, text stays crisp and searchable)."""
from __future__ import annotations

import math
from xml.sax.saxutils import escape

_W_PLOT, _ROW = 520, 26


def _quantiles(values: list[float]) -> tuple[float, float, float, float, float]:
    v = sorted(values)
    n = len(v)

    def q(p: float) -> float:
        k = (n - 1) * p
        lo = math.floor(k)
        hi = min(lo + 1, n - 1)
        return v[lo] + (v[hi] - v[lo]) * (k - lo)

    return v[0], q(0.25), q(0.5), q(0.75), v[-1]


def box_plot(series: list[tuple[str, list[float], list[float]]], *, title: str, unit: str,
             log: bool = True, marker_note: str = "") -> str:
    """One horizontal box per series (label, values, highlighted values drawn as red dots)."""
    series = [(lab, [x for x in vals if _ok(x, log)], [x for x in bad if _ok(x, log)])
              for lab, vals, bad in series]
    series = [s for s in series if s[1] or s[2]]
    if not series:
        return ""
    allv = [x for _, vals, bad in series for x in vals + bad]
    f = (lambda x: math.log10(x)) if log else (lambda x: x)
    lo, hi = f(min(allv)), f(max(allv))
    if log:
        lo, hi = math.floor(lo), math.ceil(hi)
    if hi - lo < 1e-12:
        hi = lo + 1
    longest = max(len(lab) + len(str(len(v) + len(b))) + 3 for lab, v, b in series)
    label_w = min(560, max(160, int(longest * 6.6) + 20))   # fits 11.5px labels
    top, bottom = 34, 34
    h = top + len(series) * _ROW + bottom
    width = label_w + _W_PLOT + 30

    def x(v: float) -> float:
        return label_w + (f(v) - lo) / (hi - lo) * _W_PLOT

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" viewBox="0 0 {width} {h}" width="{width}" height="{h}" '
           f'role="img" aria-label="{escape(title)}">',
           f'<text x="{label_w}" y="18" class="pt">{escape(title)}</text>']
    # grid + ticks
    ticks = range(int(lo), int(hi) + 1) if log else [lo + (hi - lo) * i / 5 for i in range(6)]
    for t in ticks:
        tx = label_w + (t - lo) / (hi - lo) * _W_PLOT
        lab = f"1e{t}" if log else f"{t:.3g}"
        out.append(f'<line x1="{tx:.1f}" x2="{tx:.1f}" y1="{top - 6}" y2="{h - bottom + 4}" class="pg"/>'
                   f'<text x="{tx:.1f}" y="{h - bottom + 18}" class="px">{lab}</text>')
    out.append(f'<text x="{label_w + _W_PLOT / 2}" y="{h - 4}" class="px">{escape(unit)}</text>')
    for i, (label, vals, bad) in enumerate(series):
        cy = top + i * _ROW + _ROW / 2
        out.append(f'<text x="{label_w - 8}" y="{cy + 4:.1f}" class="pl">{escape(label)} '
                   f'<tspan class="pn">n={len(vals) + len(bad)}</tspan></text>')
        if vals:
            mn, q1, med, q3, mx = _quantiles(vals)
            out.append(f'<line x1="{x(mn):.1f}" x2="{x(mx):.1f}" y1="{cy}" y2="{cy}" class="pw"/>'
                       f'<rect x="{x(q1):.1f}" y="{cy - 7}" width="{max(x(q3) - x(q1), 1.5):.1f}" height="14" class="pb"/>'
                       f'<line x1="{x(med):.1f}" x2="{x(med):.1f}" y1="{cy - 7}" y2="{cy + 7}" class="pm"/>')
        for b in bad[:200]:
            out.append(f'<circle cx="{x(b):.1f}" cy="{cy}" r="3.2" class="pf"/>')
    if marker_note:
        out.append(f'<text x="{width - 10}" y="18" class="px" text-anchor="end">{escape(marker_note)}</text>')
    out.append("</svg>")
    return "".join(out)


def _ok(x: float, log: bool) -> bool:
    return x is not None and math.isfinite(x) and (x > 0 or not log)
