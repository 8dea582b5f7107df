"""Serving: the load figures of served models (``measures.serving_load`` of hfmatrix/suites/test_serving.py's
records: TTFT, inter-token latency, p50/p99 request latency, tokens/s per concurrency level), with
the baseline gate's verdict where test_serving_vs_baseline ran, and which checks ran against an
existing deployment (``--hfm-endpoint``). Pure functions of records (the report env has no ML stack).
"""
from __future__ import annotations

from html import escape
from typing import Any

LEVEL_HEADER = ("clients", "requests", "TTFT p50/p99 ms", "ITL p50/p99 ms", "latency p50/p99 ms", "tokens/s")


def _ms(value: Any) -> str:
    return "-" if not isinstance(value, (int, float)) else f"{value * 1000:.0f}"


def level_cells(lv: dict[str, Any]) -> list[str]:
    """One concurrency level as table cells (scripts/bench_serve.py prints the same columns)."""
    tps = lv.get("tokens_per_s")
    return [str(lv.get("clients", "?")), str(lv.get("requests", "?")),
            f"{_ms(lv.get('ttft_p50_s'))} / {_ms(lv.get('ttft_p99_s'))}",
            f"{_ms(lv.get('itl_p50_s'))} / {_ms(lv.get('itl_p99_s'))}",
            f"{_ms(lv.get('latency_p50_s'))} / {_ms(lv.get('latency_p99_s'))}",
            "-" if not isinstance(tps, (int, float)) else f"{tps:.1f}"]


def _gate(record: dict) -> str:
    m = record.get("measures") or {}
    verdict = m.get("verdict") or ("skipped: " + record.get("message", "")[:80] if record.get("outcome") == "skipped"
                                   else record.get("outcome", "?"))
    ratios = [f"{k.removesuffix('_ratio')} ×{v:.2f}" for k, v in sorted(m.items())
              if k.endswith("_ratio") and isinstance(v, (int, float))]
    return verdict + (f" ({', '.join(ratios)})" if ratios else "")


def collect(by_session: dict[str, list[dict]]) -> dict[str, Any]:
    """{"rows": one per session × model × concurrency level, "endpoint": what ran against a deployment}."""
    rows, gates, endpoint = [], {}, []
    for session, recs in sorted(by_session.items()):
        for r in recs:
            m = r.get("measures") or {}
            if r.get("check") == "serving_vs_baseline":
                gates[(session, r.get("model"))] = _gate(r)
            if isinstance(m.get("endpoint_checks"), dict):
                endpoint.append({"session": session, "model": r.get("model"), **m["endpoint_checks"]})
            for lv in m.get("serving_load") or []:
                rows.append({"session": session, "model": r.get("model"), "outcome": r.get("outcome"),
                             **{k: v for k, v in lv.items() if k != "texts" and not k.endswith("_values")}})
    for row in rows:
        row["gate"] = gates.get((row["session"], row["model"]), "not run")
    return {"rows": rows, "endpoint": endpoint}


def _endpoint_lines(endpoint: list[dict]) -> list[str]:
    out = []
    for e in endpoint:
        out.append(f"- `{e['session']}` against {e.get('url', 'an existing deployment')}: ran "
                   f"{', '.join(e.get('ran', [])) or 'nothing'}; not run: "
                   f"{', '.join(e.get('not_run', [])) or 'none'}" + (f" ({e['why']})" if e.get("why") else ""))
    return out


def markdown(serving: dict[str, Any]) -> list[str]:
    if not serving or not (serving.get("rows") or serving.get("endpoint")):
        return []
    out = ["## Serving (OpenAI-compatible server, streamed requests)", ""]
    if serving.get("rows"):
        out += ["| session | model | " + " | ".join(LEVEL_HEADER) + " | vs baseline |",
                "|" + "---|" * (len(LEVEL_HEADER) + 3)]
        out += [f"| {r['session']} | {r['model']} | " + " | ".join(level_cells(r)) + f" | {r['gate']} |"
                for r in serving["rows"]]
        out.append("")
    if serving.get("endpoint"):
        out += ["Existing deployments (`--hfm-endpoint`):", "", *_endpoint_lines(serving["endpoint"]), ""]
    return out


def html(serving: dict[str, Any]) -> str:
    if not serving or not (serving.get("rows") or serving.get("endpoint")):
        return ""
    head = "".join(f"<th>{escape(h)}</th>" for h in ("session", "model", *LEVEL_HEADER, "vs baseline"))
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in (r["session"], r["model"], *level_cells(r), r["gate"]))
                   + "</tr>" for r in serving.get("rows", []))
    items = "".join(f"<li>{escape(line[2:])}</li>" for line in _endpoint_lines(serving.get("endpoint", [])))
    return (f"<section id='serving'><h3>Serving</h3><p>Streamed requests to an OpenAI-compatible server; TTFT to the "
            f"first non-empty delta.</p><table><tr>{head}</tr>{body}</table>"
            f"{'<p>Existing deployments (--hfm-endpoint):</p><ul>' + items + '</ul>' if items else ''}</section>")
