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


MIN_COPIED_LINES = 6
BACKENDS = sorted((ROOT / "hfmatrix" / "backends").glob("*.py"))


def copied_blocks(files, size: int = MIN_COPIED_LINES) -> tuple[int, list[str]]:
    """(lines scanned, 'a.py:line ~ b.py:line' for each run of ``size`` or more non-blank lines, whitespace
    normalized, that stands in two different files). Each pair of files is reported once, at its first copy."""
    windows: dict[tuple[str, ...], tuple[str, int]] = {}
    seen, copies = 0, {}
    for path in files:
        lines = [(n, " ".join(text.split())) for n, text in enumerate(path.read_text().splitlines(), 1)]
        lines = [(n, text) for n, text in lines if text]
        seen += len(lines)
        for i in range(len(lines) - size + 1):
            key = tuple(text for _, text in lines[i:i + size])
            first = windows.setdefault(key, (path.name, lines[i][0]))
            if first[0] != path.name:
                copies.setdefault((first[0], path.name), f"{first[0]}:{first[1]} ~ {path.name}:{lines[i][0]}")
    return seen, sorted(copies.values())


def test_no_block_copied_between_backends():
    seen, copies = copied_blocks(BACKENDS)
    assert len(BACKENDS) > 5 and seen > 1000, f"scanned {len(BACKENDS)} files, {seen} lines: the walk missed the backends"
    assert not copies, f"blocks of {MIN_COPIED_LINES}+ lines copied between files of hfmatrix/backends/: " + "; ".join(copies)


def test_a_copied_block_is_found(tmp_path):
    """Bite: six lines pasted into another file with other indentation are found; five are not, nor six
    lines repeated within one file, nor blank lines between them."""
    six = [f"value_{i} = compute({i})" for i in range(6)]
    (tmp_path / "a.py").write_text("def f():\n" + "".join(f"    {line}\n" for line in six) + "\n".join(six) + "\n")
    (tmp_path / "b.py").write_text("x = 1\n\n" + "\n\n".join(six) + "\n")
    (tmp_path / "c.py").write_text("\n".join(six[:5]) + "\ny = 2\n")
    assert copied_blocks([tmp_path / "a.py", tmp_path / "b.py"]) == (20, ["a.py:2 ~ b.py:3"])
    assert copied_blocks([tmp_path / "a.py", tmp_path / "c.py"])[1] == []
