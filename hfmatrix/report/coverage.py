"""Combine every session's coverage data into one total, XML, HTML and a badge (no network).

Each session writes parallel-mode data under results/<session>/.coverage*; data from other
machines is remapped by [tool.coverage.paths] in pyproject.toml. The originals are kept.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape


def data_files(results: Path) -> list[Path]:
    """Every coverage data file in a folder below results/ (never the combined one at the top)."""
    out = []
    for p in sorted(results.rglob(".coverage*")):
        if p.parent == results or not p.is_file() or "htmlcov" in p.parts:
            continue
        if p.name.endswith(("-journal", "-wal", "-shm", ".lock", ".tmp")):
            continue
        out.append(p)
    return out


def combine(results: Path, rcfile: Path | None = None) -> dict[str, Any]:
    """Returns {"total": float|None, "files": [...], "xml", "html", "error"}; never raises."""
    results = Path(results)
    files = data_files(results)
    info: dict[str, Any] = {"total": None, "files": [str(p.relative_to(results)) for p in files],
                            "xml": None, "html": None, "error": None}
    if not files:
        info["error"] = "no coverage data under results/<session>/.coverage*"
        return info
    try:
        import coverage
    except ImportError:
        info["error"] = "coverage is not installed in this env (envs/report.txt lists it)"
        return info
    config: Any = str(rcfile) if rcfile and Path(rcfile).exists() else True
    combined = results / ".coverage"
    if combined.exists():
        combined.unlink()
    try:
        cov = coverage.Coverage(data_file=str(combined), config_file=config)
        cov.combine(data_paths=[str(p) for p in files], keep=True)
        cov.save()
        info["total"] = cov.report(file=io.StringIO(), ignore_errors=True)
        cov.xml_report(outfile=str(results / "coverage.xml"), ignore_errors=True)
        info["xml"] = "coverage.xml"
        cov.html_report(directory=str(results / "htmlcov"), ignore_errors=True,
                        title="hfmatrix coverage (all sessions combined)")
        info["html"] = "htmlcov/index.html"
    except coverage.exceptions.CoverageException as exc:   # e.g. no data measured, unreadable file
        info["error"] = f"coverage combine failed: {exc}"
    except Exception as exc:  # a corrupt SQLite data file raises sqlite3 errors; name it, keep going
        info["error"] = f"coverage combine failed: {type(exc).__name__}: {exc}"
    return info


def _text_width(text: str) -> float:
    """Approximate width of 11px Verdana/DejaVu text (what shields-style badges use)."""
    wide, narrow = "mwMW%@", "ilIj.,:;|!' "
    return sum(9.5 if c in wide else 3.5 if c in narrow else 7.0 for c in text) + 10


def colour(percent: float | None) -> str:
    if percent is None:
        return "#9f9f9f"
    for limit, col in ((90, "#4c1"), (80, "#97ca00"), (70, "#a4a61d"), (60, "#dfb317"), (50, "#fe7d37")):
        if percent >= limit:
            return col
    return "#e05d44"


def badge_svg(percent: float | None, label: str = "coverage") -> str:
    value = "unknown" if percent is None else f"{percent:.0f}%"
    lw, vw = _text_width(label), _text_width(value)
    w = lw + vw
    col = colour(percent)
    lab, val = escape(label), escape(value)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0f}" height="20" role="img" '
        f'aria-label="{lab}: {val}"><title>{lab}: {val}</title>'
        '<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/>'
        '<stop offset="1" stop-opacity=".1"/></linearGradient>'
        f'<clipPath id="r"><rect width="{w:.0f}" height="20" rx="3" fill="#fff"/></clipPath>'
        f'<g clip-path="url(#r)"><rect width="{lw:.0f}" height="20" fill="#555"/>'
        f'<rect x="{lw:.0f}" width="{vw:.0f}" height="20" fill="{col}"/>'
        f'<rect width="{w:.0f}" height="20" fill="url(#s)"/></g>'
        '<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="11">'
        f'<text x="{lw / 2:.1f}" y="15" fill="#010101" fill-opacity=".3">{lab}</text>'
        f'<text x="{lw / 2:.1f}" y="14">{lab}</text>'
        f'<text x="{lw + vw / 2:.1f}" y="15" fill="#010101" fill-opacity=".3">{val}</text>'
        f'<text x="{lw + vw / 2:.1f}" y="14">{val}</text></g></svg>\n'
    )
