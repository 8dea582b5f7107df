"""House rules of the code base (issue 13), checked so they stay true."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_FUNCTION_LINES = 80


def _functions():
    files = [*sorted((ROOT / "hfmatrix").rglob("*.py")), *sorted((ROOT / "hwprobe").rglob("*.py")), ROOT / "noxfile.py"]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield path.relative_to(ROOT), node


def test_no_function_over_80_lines():
    seen, long = 0, []
    for path, fn in _functions():
        seen += 1
        n = fn.end_lineno - fn.lineno + 1
        if n > MAX_FUNCTION_LINES:
            long.append(f"{path}:{fn.lineno} {fn.name} ({n} lines)")
    assert seen > 500, f"scanned only {seen} functions: the walk missed the code base"
    assert not long, "functions over 80 lines: " + "; ".join(long)
