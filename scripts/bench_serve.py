"""Serving performance of one zoo model behind a real `transformers serve` on 127.0.0.1.

Prints TTFT (to the first non-empty streamed delta), inter-token latency, p50/p99 request latency and
tokens/s at 1, 4 and 16 concurrent streaming clients, and writes them as JSON. Load goes only to the
server this script starts; every level is bounded in requests per client and in time.

    python scripts/bench_serve.py --model gpt2 [--levels 1,4,16] [--out results/serve/serving-load.json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hfmatrix.backends.serve_backend import greedy_extensions  # noqa: E402
from hfmatrix.serving import process  # noqa: E402
from hfmatrix.serving.client import CompletionsClient  # noqa: E402
from hfmatrix.serving.load import level, table  # noqa: E402
from hfmatrix.zoo import materialize  # noqa: E402
from hfmatrix.zoo.spec import load_specs  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="gpt2", help="zoo id")
    ap.add_argument("--levels", default="1,4,16", help="concurrent clients per level")
    ap.add_argument("--requests-per-client", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--time-limit", type=float, default=60.0, help="seconds per level (clients stop after it)")
    ap.add_argument("--continuous-batching", action="store_true")
    ap.add_argument("--out", default="results/serve/serving-load.json")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    folder = materialize(load_specs(None)[args.model])
    port = process.free_port()
    cmd = process.serve_command(folder, port, continuous_batching=args.continuous_batching)
    out = Path(args.out)
    server = process.start(cmd, port, out.with_suffix(".server.log"), 120)
    try:
        client = CompletionsClient(server.base_url, str(folder), timeout_s=120,
                                   extensions=greedy_extensions(args.max_tokens))
        client.stream("Once upon a time", args.max_tokens)  # warm-up: weights loaded, first generate done
        levels = [level(client, "Once upon a time", args.max_tokens, int(c), args.requests_per_client,
                        args.time_limit) for c in args.levels.split(",")]
        client.close()
    finally:
        server.stop()
    print(f"{args.model} served by `transformers serve` on 127.0.0.1 ({'continuous batching' if args.continuous_batching else 'sequential'}), "
          f"{args.max_tokens} tokens per request, greedy")
    print(table(levels))
    distinct = {t for lv in levels for t in lv["texts"]}
    print(f"distinct answers across all levels: {len(distinct)} (greedy: 1 expected)")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"model": args.model, "server_cmd": cmd, "max_tokens": args.max_tokens,
                               "continuous_batching": args.continuous_batching, "measured": time.time(),
                               "levels": levels}, indent=2))
    print(f"written {out}")
    return 0 if len(distinct) == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
