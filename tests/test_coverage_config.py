"""pyproject's [tool.coverage.report] exclusions: each one names code that still exists, carries its
reason, and leaves out only that block (the combined figure cannot quietly shrink its denominator)."""
from __future__ import annotations

import re
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
SOURCES = sorted(p for pkg in ("hfmatrix", "hwprobe") for p in (ROOT / pkg).rglob("*.py"))


def _config() -> dict:
    return tomllib.loads(PYPROJECT.read_text())["tool"]["coverage"]


def test_nothing_omitted_and_every_exclusion_has_a_reason() -> None:
    cfg = _config()
    assert "omit" not in cfg["run"] and "omit" not in cfg.get("report", {})   # no whole files left out
    assert cfg["run"]["branch"] is True and set(cfg["run"]["source"]) == {"hfmatrix", "hwprobe"}
    block = PYPROJECT.read_text().split("exclude_also = [", 1)[1].split("\n]", 1)[0]
    entries = re.findall(r"((?:\s*#[^\n]*\n)*)\s*'([^']+)',([^\n]*)", block)
    assert [e[1] for e in entries] == cfg["report"]["exclude_also"]
    for comments, pattern, trailing in entries:       # each entry with its reason, beside it or above it
        reason = (trailing.split("#", 1)[1] if "#" in trailing else comments.replace("#", " ")).strip()
        assert re.search(r"\((CUDA|ROCm|Apple|macOS|2\+ GPUs)[^)]*\)$", reason), f"no hardware named: {pattern}"


def test_each_exclusion_names_existing_code() -> None:
    """A renamed function would leave a dead pattern; a loose one would leave out more than it says."""
    hits: dict[str, list[str]] = {}
    for pattern in _config()["report"]["exclude_also"]:
        rx = re.compile(pattern)
        hits[pattern] = [f"{p.relative_to(ROOT)}:{i}" for p in SOURCES
                         for i, line in enumerate(p.read_text().splitlines(), 1) if rx.search(line)]
    assert all(hits.values()), {k: v for k, v in hits.items() if not v}
    for pattern, where in hits.items():
        files = {w.split(":")[0] for w in where}
        if pattern.startswith("if "):                 # the nccl/GPU branches: distributed code only
            assert all("distributed" in f for f in files), where
        else:                                          # a def/class: one place per name it lists
            alternatives = re.search(r"\(([\w|]+)\)", pattern)
            names = alternatives.group(1).split("|") if alternatives else [pattern]
            assert len(where) == len(names) and len(files) == 1, (pattern, where)


def test_pragma_no_cover_marks_only_import_fallbacks() -> None:
    """Coverage's default exclusion is not a back door: each use is an import fallback (the pyproject says so)."""
    marked = []
    for p in SOURCES:
        lines = p.read_text().splitlines()
        marked += [(p, i, line, lines[i] if i < len(lines) else "") for i, line in enumerate(lines, 1)
                   if "pragma: no cover" in line]
    assert marked, "none left: drop the sentence in pyproject.toml"
    for p, i, line, following in marked:
        assert re.match(r"\s*(except (ModuleNotFoundError|ImportError)|else)\b", line), f"{p}:{i}: {line}"
        assert "import" in following or following.strip() == "pass", f"{p}:{i}: not an import fallback: {following!r}"
    assert f"in {len(marked)} places" in PYPROJECT.read_text()
