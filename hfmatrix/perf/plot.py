"""Latency-distribution plots from bench JSON (matplotlib, Agg backend; PNG or SVG by suffix).

``plot_latency(source, out, backend=None, metric="forward", baselines_dir=None)`` draws one
horizontal box per model × device × precision of that backend: the raw samples in milliseconds
(log scale when they span more than a decade), the p50 marked, and — where a baseline file is
found for the entry's fingerprint — the baseline's samples as a grey box right under it, with the
verdict in the label; a flagged regression's re-measurements get their own rows (the last one is
what the verdict was decided on). ``plot_all(source, out_dir)`` writes one file per backend.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from . import baselines as _baselines
from . import bench as _bench


_COLORS = {"regression": "#d62728", "improvement": "#2ca02c", "incomparable": "#ff7f0e"}


def _entries(source) -> list[dict[str, Any]]:
    if isinstance(source, dict):
        return [{"_fingerprint": source.get("fingerprint", {}), **e} for e in source.get("benchmarks", [])]
    if isinstance(source, (str, Path)):
        source = [source]
    return _bench.entries(source)


def plot_latency(source, out: Path | str, *, backend: str | None = None, metric: str = "forward",
                 baselines_dir: Path | str | None = None, title: str | None = None) -> Path:
    """Render the distribution plot for one backend (default: the first in the data). Returns out."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = [e for e in _entries(source) if metric in e.get("report", {})]
    if backend is None and entries:
        backend = sorted({e["backend"] for e in entries})[0]
    entries = sorted((e for e in entries if e["backend"] == backend), key=lambda e: e["name"], reverse=True)
    if not entries:
        raise ValueError(f"no {metric!r} samples for backend {backend!r} in the bench data")
    rows, labels, colors = [], [], []
    for e in entries:
        base = None
        if baselines_dir is not None:
            fp = (e.get("_fingerprint") or {}).get("id", "")
            _, found = _baselines.lookup(Path(baselines_dir), fp, e["backend"], e["device"], _baselines.verdict_precision(e), e["model"])
            base = (found or {}).get("metrics", {}).get(metric, {}).get("values")
        if base:
            rows.append([v * 1e3 for v in base])
            labels.append("  baseline")
            colors.append("#bbbbbb")
        block = (e.get("comparison") or {}).get("metrics", {}).get(metric, {})
        verdict = block.get("verdict") or e.get("status", "")
        confirmations = block.get("confirmations") or []
        lat = e["report"][metric]["latency"]
        first = (block.get("first") or {}).get("verdict", verdict) if confirmations else verdict
        rows.append([v * 1e3 for v in lat["values"]])
        labels.append(f"{e['model']} {e['device']} {e['precision']} (n={lat['count']}"
                      + (f", {first}" if first and first != "measured" else "") + ")")
        colors.append(_COLORS.get(first, "#1f77b4"))
        for i, c in enumerate(confirmations, 1):  # a flagged regression's re-measurements, the last decides
            if not c.get("values"):
                continue
            rows.append([v * 1e3 for v in c["values"]])
            final = i == len(confirmations)
            labels.append(f"  re-measured (n={c.get('n_current')}, {verdict if final else c.get('verdict')})")
            colors.append(_COLORS.get(verdict if final else c.get("verdict"), "#1f77b4"))
    fig, ax = plt.subplots(figsize=(9, 1.0 + 0.38 * len(rows)))
    style = dict(whis=(0, 100), widths=0.6, patch_artist=True, showfliers=False)
    try:  # matplotlib >= 3.10 spells it orientation=, older ones vert=
        box = ax.boxplot(rows, orientation="horizontal", **style)
    except TypeError:
        box = ax.boxplot(rows, vert=False, **style)
    for patch, c in zip(box["boxes"], colors):
        patch.set_facecolor(c)
        patch.set_alpha(0.55)
    for i, (vals, c) in enumerate(zip(rows, colors), start=1):  # raw samples as dots, jittered
        ys = [i + ((j % 7) - 3) * 0.04 for j in range(len(vals))]
        ax.scatter(vals, ys, s=6, color=c, alpha=0.7, zorder=3)
    ax.set_yticks(range(1, len(rows) + 1), labels, fontsize=8)
    lo = min(min(r) for r in rows if r)
    hi = max(max(r) for r in rows if r)
    if lo > 0 and hi / lo > 10:
        ax.set_xscale("log")
    ax.set_xlabel(f"{metric} latency per call (ms); box: quartiles, whiskers: min–max, dots: samples")
    fp = (entries[0].get("_fingerprint") or {}).get("id", "")
    ax.set_title(title or f"{backend}: {metric} latency distributions" + (f" — {fp}" if fp else ""), fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_all(source, out_dir: Path | str, *, fmt: str = "svg", metric: str = "forward",
             baselines_dir: Path | str | None = None) -> list[Path]:
    """One plot per backend found in the bench data: <out_dir>/perf-<backend>.<fmt>."""
    entries = _entries(source)
    out = []
    for backend in sorted({e["backend"] for e in entries if metric in e.get("report", {})}):
        out.append(plot_latency(entries_doc(entries), Path(out_dir) / f"perf-{backend}.{fmt}", backend=backend,
                                metric=metric, baselines_dir=baselines_dir))
    return out


def entries_doc(entries: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Wrap already-read entries (each carrying _fingerprint) so plot_latency accepts them."""
    entries = list(entries)
    return {"benchmarks": entries, "fingerprint": entries[0].get("_fingerprint", {}) if entries else {}}
