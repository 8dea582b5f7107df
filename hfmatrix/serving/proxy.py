"""A small fault-injecting HTTP proxy in front of the REAL server (the server itself is never replaced).

It produces what a server under test cannot be made to produce on demand, and the planted defects
of the self-tests: ``malformed-json`` (the answer's body cut in half), ``truncated-stream`` (the SSE
stream closed before its finish chunk), ``drop-last-delta`` (a stream that loses its last text delta
but ends normally), ``drop-last-token`` (the request asks for one token fewer:
the user gets an answer short of its last token), ``slow`` (every request waits SLOW_S before it is
forwarded: the planted slowdown the serving baseline gate must flag), ``pass`` (forward unchanged).
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

MODES = ("pass", "malformed-json", "truncated-stream", "drop-last-token", "drop-last-delta", "slow")
SLOW_S = 0.25


def _rewrite(body: bytes, mode: str) -> bytes:
    if mode != "drop-last-token":
        return body
    data = json.loads(body)
    data["max_tokens"] = int(data["max_tokens"]) - 1
    if "generation_config" in data:
        cfg = json.loads(data["generation_config"])
        cfg.update(max_new_tokens=cfg["max_new_tokens"] - 1, min_new_tokens=cfg["max_new_tokens"] - 1)
        data["generation_config"] = json.dumps(cfg)
    return json.dumps(data).encode()


class FaultProxy:
    def __init__(self, upstream: str, mode: str):
        if mode not in MODES:
            raise ValueError(f"unknown proxy mode {mode!r}; expected one of {MODES}")
        self.upstream, self.mode = upstream.rstrip("/"), mode
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # the body ends when the connection closes: a cut stream looks like one

            def log_message(self, *args) -> None:  # quiet: the server keeps the log that matters
                pass

            def do_GET(self) -> None:
                r = httpx.get(proxy.upstream + self.path, timeout=60)
                self._answer(r.status_code, r.headers.get("content-type", ""), [r.content])

            def do_POST(self) -> None:
                body = _rewrite(self.rfile.read(int(self.headers.get("content-length", 0))), proxy.mode)
                if proxy.mode == "slow":
                    time.sleep(SLOW_S)
                headers = {"content-type": self.headers.get("content-type", "application/json")}
                with httpx.stream("POST", proxy.upstream + self.path, content=body, headers=headers, timeout=120) as r:
                    parts = [line.encode() + b"\n" for line in r.iter_lines()] if "event-stream" in r.headers.get(
                        "content-type", "") else [r.read()]
                    self._answer(r.status_code, r.headers.get("content-type", ""), proxy.mangle(parts))

            def _answer(self, status: int, ctype: str, parts: list[bytes]) -> None:
                self.send_response(status)
                self.send_header("content-type", ctype)
                self.end_headers()
                for part in parts:
                    self.wfile.write(part)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def mangle(self, parts: list[bytes]) -> list[bytes]:
        if self.mode == "malformed-json" and len(parts) == 1:
            return [parts[0][: len(parts[0]) // 2]]
        if self.mode == "truncated-stream" and len(parts) > 1:
            events = [p for p in parts if p.startswith(b"data:")]
            return [e + b"\n" for e in events[:-1]]  # every event but the one with finish_reason
        if self.mode == "drop-last-delta" and len(parts) > 1:
            texts = [i for i, p in enumerate(parts) if p.startswith(b"data:") and b'"text":""' not in p
                     and b'"text"' in p and b"finish_reason" not in p]
            return [p for i, p in enumerate(parts) if not texts or i != texts[-1]]
        return parts

    def start(self) -> "FaultProxy":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
