"""Serving load figures: N concurrent streaming clients against one server, bounded in requests and time.

Time to first token is measured to the first non-empty streamed delta (not to the response headers);
inter-token latency is the gap between consecutive non-empty deltas; tokens/s counts the server's
own completion_tokens over the wall time of the whole level.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np


def _pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def level(client, prompt: str, max_tokens: int, clients: int, requests_per_client: int,
          time_limit_s: float, **fields: Any) -> dict[str, Any]:
    """One concurrency level: every client sends up to requests_per_client streamed requests, and stops
    early once time_limit_s has passed. Returns the figures and the answers' distinct texts."""
    deadline = time.monotonic() + time_limit_s

    def one_client(_):
        done = []
        for _ in range(requests_per_client):
            if time.monotonic() > deadline:
                break
            done.append(client.stream(prompt, max_tokens, **fields))
        return done

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        answers = [a for batch in pool.map(one_client, range(clients)) for a in batch]
    wall = time.perf_counter() - t0
    ttft = [a.ttft_s for a in answers if a.ttft_s is not None]
    itl = [gap for a in answers for gap in a.inter_token_s]
    latency = [a.latency_s for a in answers]
    tokens = sum(int(a.usage.get("completion_tokens", 0)) for a in answers)
    return {
        "clients": clients, "requests": len(answers), "wall_s": wall, "completion_tokens": tokens,
        "tokens_per_s": tokens / wall if wall > 0 else None,
        "ttft_p50_s": _pct(ttft, 50), "ttft_p99_s": _pct(ttft, 99),
        "itl_p50_s": _pct(itl, 50), "itl_p99_s": _pct(itl, 99),
        "latency_p50_s": _pct(latency, 50), "latency_p99_s": _pct(latency, 99),
        "texts": sorted({a.text for a in answers}),
        # raw samples (s), for the baseline gate (hfmatrix/serving/perf.py): percentiles cannot be tested
        "latency_values": latency, "ttft_values": ttft,
    }


def table(levels: list[dict[str, Any]]) -> str:
    from ..report.serving import LEVEL_HEADER, level_cells
    rows = ["| " + " | ".join(LEVEL_HEADER) + " |", "|" + "---|" * len(LEVEL_HEADER)]
    return "\n".join(rows + ["| " + " | ".join(level_cells(lv)) + " |" for lv in levels])
