"""The browser backend's costs in the report: browser start-up, page load, runtime init and session
create apart from inference latency (first and mean run), per session and model, beside the parity
error. Read from the web backend's evidence on parity records."""
from __future__ import annotations

from typing import Any

COST_KEYS = ("browser_start_s", "page_load_s", "runtime_init_s", "session_create_s", "first_run_s", "mean_run_s")


def costs_row(session: str, record: dict[str, Any]) -> dict[str, Any]:
    ev = record.get("evidence") or {}
    costs = ev.get("costs") or {}
    measures = record.get("measures") or {}
    adapter = ev.get("adapter") if isinstance(ev.get("adapter"), dict) else {}
    return {"session": session, "model": record.get("model"), "device": record.get("device"),
            "outcome": record.get("outcome"), "max_abs_err": measures.get("max_abs_err"),
            "requested_ep": ev.get("requested_ep"), "provider": ev.get("provider"), "provider_fraction": ev.get("provider_fraction"),
            "software": ev.get("software"), "adapter": adapter.get("architecture") or adapter.get("vendor"),
            **{k: costs.get(k) for k in COST_KEYS}}


def _s(x: Any) -> str:
    return "–" if not isinstance(x, (int, float)) else f"{x:.3g}"


def markdown(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    out = ["## Browser costs", "",
           "Start-up and model load apart from inference (seconds; mean run in ms), from each parity record.", "",
           "| session | model | EP requested → used (share of nodes) | browser start | page load | runtime init | session create "
           "| first run | mean run ms | parity max abs err |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: (r["session"], r["model"] or "")):
        ep = (f"{r.get('requested_ep') or '?'} → {r['provider'] or '?'} ({_s(r['provider_fraction'])})"
              + (" SOFTWARE" if r.get("software") else ""))
        mean = r["mean_run_s"] * 1000 if isinstance(r.get("mean_run_s"), (int, float)) else None
        out.append(f"| {r['session']} | {r['model']} | {ep} | " + " | ".join(_s(r[k]) for k in COST_KEYS[:-1])
                   + f" | {_s(mean)} | {_s(r['max_abs_err'])} ({r['outcome']}) |")
    out.append("")
    return out
