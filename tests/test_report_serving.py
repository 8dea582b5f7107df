"""The report's Serving table, built from records alone (no server): load figures per level, the
baseline gate's verdict beside them, and what ran against an existing deployment."""
from __future__ import annotations

import json

from hfmatrix.report import html, markdown, merge


def _level(clients, ttft, lat, tps):
    return {"clients": clients, "requests": 2 * clients, "wall_s": 1.0, "completion_tokens": 10 * clients,
            "tokens_per_s": tps, "ttft_p50_s": ttft, "ttft_p99_s": ttft * 2, "itl_p50_s": 0.004, "itl_p99_s": 0.009,
            "latency_p50_s": lat, "latency_p99_s": lat * 1.5, "texts": ["a story"], "latency_values": [lat] * 4}


def _write(results, name, records):
    d = results / name
    d.mkdir(parents=True)
    (d / "records-all.jsonl").write_text("".join(json.dumps({"session": name, **r}) + "\n" for r in records))
    counts = {}
    for r in records:
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
    (d / "meta-all.json").write_text(json.dumps({"session": name, "complete": True, "counts": counts, "finished": 1.0}))


def _rec(check, model, outcome="passed", **measures):
    return {"nodeid": f"hfmatrix/suites/test_serving.py::test_{check}[{model}@serve-cpu-fp32]", "check": check, "model": model,
            "backend": "serve", "device": "cpu", "precision": "fp32", "arch_class": "decoder", "outcome": outcome,
            "measures": measures, "message": "[no-baseline] no-baseline: none recorded" if outcome == "skipped" else ""}


def test_serving_table_from_records(tmp_path):
    _write(tmp_path, "serve", [
        _rec("serving_load", "gpt2", serving_load=[_level(1, 0.021, 0.052, 96.0), _level(4, 0.033, 0.141, 140.5)]),
        _rec("serving_vs_baseline", "gpt2", "failed", verdict="regression", latency_c1_ratio=3.4),
        _rec("serving_load", "llama", serving_load=[_level(1, 0.030, 0.070, 70.0)]),
        _rec("serving_vs_baseline", "llama", "skipped"),
        _rec("endpoint_checks", "served-model", endpoint_checks={
            "url": "http://10.0.0.5:8000", "ran": ["health", "stream_equals_text"],
            "not_run": ["generate_greedy"], "why": "parity checks need --hfm-models"}),
    ])
    m = merge.merge(tmp_path)
    rows = m.serving["rows"]
    assert [(r["model"], r["clients"]) for r in rows] == [("gpt2", 1), ("gpt2", 4), ("llama", 1)]
    assert all("texts" not in r and "latency_values" not in r for r in rows)  # figures, not the raw answers
    md = markdown.render(m)
    assert "## Serving" in md
    assert "| serve | gpt2 | 4 | 8 | 33 / 66 | 4 / 9 | 141 / 211 | 140.5 | regression (latency_c1 ×3.40) |" in md
    assert "| serve | llama | 1 | 2 | 30 / 60 |" in md and "skipped: [no-baseline]" in md
    assert "ran health, stream_equals_text; not run: generate_greedy (parity checks need --hfm-models)" in md
    page, _ = html.render(m)
    assert "<section id='serving'>" in page and "<td>140.5</td>" in page and "parity checks need --hfm-models" in page


def test_no_serving_records_no_section(tmp_path):
    _write(tmp_path, "cpu", [{**_rec("parity", "bert"), "backend": "torch"}])
    m = merge.merge(tmp_path)
    assert m.serving == {"rows": [], "endpoint": []}
    assert "## Serving" not in markdown.render(m)
    assert "<section id='serving'>" not in html.render(m)[0]
