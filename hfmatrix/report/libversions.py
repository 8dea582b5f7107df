"""Library versions side by side, one row per session: the envs pin different stacks on purpose
(optimum-onnx needs transformers < 4.58, optimum-intel < 5.6, the torch env the newest), and a
reader comparing columns must see that, with the libraries that differ named under the table."""
from __future__ import annotations

import json
from collections import defaultdict

# the stack that decides what a backend computes; other libraries stay in matrix.json
LIBS = ("torch", "transformers", "tokenizers", "optimum", "optimum-intel", "optimum-onnx", "onnx",
        "onnxruntime", "onnxruntime-qnn", "openvino", "nncf", "onnxruntime-web", "numpy")
MISSING = {"absent", "not installed", None}


def by_session(sessions: dict) -> dict[str, dict[str, str]]:
    """{session: {library: version(s) seen in its records, '/'-joined}} for the libraries in LIBS."""
    out = {}
    for name, s in sessions.items():
        seen = defaultdict(set)
        for key in s.versions:
            for lib, v in json.loads(key).items():
                if lib in LIBS and v not in MISSING:
                    seen[lib].add(str(v))
        out[name] = {lib: "/".join(sorted(vs)) for lib, vs in seen.items()}
    return out


def table(sessions: dict) -> tuple[list[str], dict[str, dict[str, str]], list[tuple[str, str]]]:
    """(library columns, {session: {library: version}}, [(library, 'v (sessions); v (sessions)')] for
    every library whose version differs between sessions)."""
    rows = {name: libs for name, libs in by_session(sessions).items() if libs}
    cols = [lib for lib in LIBS if any(lib in libs for libs in rows.values())]
    differ = []
    for lib in cols:
        where = defaultdict(list)
        for name, libs in rows.items():
            if lib in libs:
                where[libs[lib]].append(name)
        if len(where) > 1:
            differ.append((lib, "; ".join(f"{v} ({', '.join(names)})" for v, names in sorted(where.items()))))
    return cols, rows, differ


WHY = ("Each env pins the stack its backend supports (envs/<env>.txt), so these sessions compare "
       "against different library versions:")


def markdown(sessions: dict) -> list[str]:
    cols, rows, differ = table(sessions)
    if not cols:
        return []
    out = ["### Library versions by session", "", "| session | " + " | ".join(cols) + " |",
           "|---|" + "---|" * len(cols)]
    out += [f"| {name} | " + " | ".join(libs.get(c, "–") for c in cols) + " |" for name, libs in rows.items()]
    if differ:
        out += ["", WHY, *(f"- **{lib} differs across sessions**: {where}" for lib, where in differ)]
    return out + [""]


def html(sessions: dict, e) -> str:
    """The same table for index.html (e: the page's HTML escape)."""
    cols, rows, differ = table(sessions)
    if not cols:
        return ""
    head = "".join(f"<th>{e(c)}</th>" for c in cols)
    body = "".join(f"<tr><td>{e(name)}</td>" + "".join(f"<td>{e(libs.get(c, '–'))}</td>" for c in cols) + "</tr>"
                   for name, libs in rows.items())
    notes = "".join(f"<li><b>{e(lib)} differs across sessions</b>: {e(where)}</li>" for lib, where in differ)
    return (f"<section class='env'><h3>Library versions by session</h3><table><tr><th>session</th>{head}</tr>"
            f"{body}</table>" + (f"<p>{e(WHY)}</p><ul>{notes}</ul>" if notes else "") + "</section>")
