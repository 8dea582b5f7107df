"""House rules of the code base (issue 13), checked so they stay true."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_FUNCTION_LINES = 80


PROJECT = [*sorted((ROOT / "hfmatrix").rglob("*.py")), *sorted((ROOT / "hwprobe").rglob("*.py")), ROOT / "noxfile.py"]


def long_functions(files) -> tuple[int, list[str]]:
    """(functions scanned, 'path:line name (n lines)' for each over MAX_FUNCTION_LINES)."""
    seen, long = 0, []
    for path in files:
        for fn in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                seen += 1
                n = fn.end_lineno - fn.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{path.name}:{fn.lineno} {fn.name} ({n} lines)")
    return seen, long


def test_no_function_over_80_lines():
    seen, long = long_functions(PROJECT)
    assert seen > 500, f"scanned only {seen} functions: the walk missed the code base"
    assert not long, "functions over 80 lines: " + "; ".join(long)


def test_a_long_function_is_found(tmp_path):
    """Bite: a planted 81-line function (nested in a class) is reported, an 80-line one is not."""
    body = "".join(f"        x{i} = {i}\n" for i in range(79))
    (tmp_path / "m.py").write_text(f"class C:\n    def long(self):\n{body}        return 0\n"
                                   f"    def fits(self):\n{body[:-len(body.splitlines(True)[-1])]}        return 0\n")
    assert long_functions([tmp_path / "m.py"]) == (2, ["m.py:2 long (81 lines)"])
