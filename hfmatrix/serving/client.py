"""An OpenAI `/v1/completions` client over the socket (httpx), plain and streamed (SSE).

Every way a request can go wrong becomes a ServerFailure of a kind decided where it is observed:
connection refused after the server was up (died), no answer within the timeout (hung), an HTTP
error status (http-error, or ServerRejected for 4xx), a body that is not the JSON the API promises
(malformed-json), a stream that ends without its finish chunk (truncated-stream).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import httpx

from ..skips import Unsupported
from .errors import ServerFailure

#: statuses that say "no such route / not implemented here": the server cannot transcribe (a typed skip);
#: any other error status is a failure of a server that claims the route
NO_ROUTE = (404, 405, 501)


class ServerRejected(ServerFailure):
    """The server answered 4xx: it refused the request (the bad-input catalogue expects these)."""

    def __init__(self, status: int, detail: str, log_tail: str = "", log_path: str = ""):
        self.status = status
        super().__init__("http-error", f"HTTP {status}: {detail}", log_tail, log_path)


@dataclass
class Completion:
    text: str
    finish_reason: str | None
    usage: dict[str, Any]
    latency_s: float
    model: str = ""
    raw: dict[str, Any] = field(default_factory=dict)
    # streamed only: seconds from the request to each non-empty text delta
    delta_times: list[float] = field(default_factory=list)

    @property
    def ttft_s(self) -> float | None:
        return self.delta_times[0] if self.delta_times else None

    @property
    def inter_token_s(self) -> list[float]:
        return [b - a for a, b in zip(self.delta_times, self.delta_times[1:])]


class CompletionsClient:
    def __init__(self, base_url: str, model: str, *, timeout_s: float = 60.0, api_key: str | None = None,
                 extensions: dict[str, Any] | None = None, log_tail: Callable[[], tuple[str, str]] | None = None):
        self.base_url, self.model, self.timeout_s = base_url.rstrip("/"), model, timeout_s
        self.extensions = dict(extensions or {})  # server-specific body fields (never the API key)
        self._log_tail = log_tail or (lambda: ("", ""))
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout_s)

    def close(self) -> None:
        self.http.close()

    def fail(self, kind: str, what: str) -> ServerFailure:
        tail, path = self._log_tail()
        return ServerFailure(kind, what, tail, path)

    def body(self, prompt: str, max_tokens: int, **fields: Any) -> dict[str, Any]:
        return {"model": self.model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
                **self.extensions, **fields}

    def post(self, path: str, body: Any, *, raw: bytes | None = None, stream: bool = False):
        if stream:  # its errors surface when the stream opens, in stream()
            return self.http.stream("POST", path, json=body)
        headers = {"content-type": "application/json"} if raw is not None else None
        for attempt in (1, 2):
            try:
                return self.http.post(path, json=body if raw is None else None, content=raw, headers=headers)
            except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
                # uvicorn resets a kept-alive connection after a 500: once more on a fresh one, as OpenAI's
                # clients do (a dead server then refuses the connection: died)
                if attempt == 2:
                    raise self.fail("died", f"POST {path}: {type(exc).__name__}: {exc}") from None
            except httpx.TimeoutException as exc:
                raise self.fail("hung", f"no answer to POST {path} within {self.timeout_s:.0f} s ({type(exc).__name__})") from None
            except httpx.TransportError as exc:
                raise self.fail("died", f"POST {path}: {type(exc).__name__}: {exc}") from None

    def check_status(self, r: httpx.Response) -> None:
        if r.status_code < 400:
            return
        detail = r.text[:500]
        tail, path = self._log_tail()
        if r.status_code < 500:
            raise ServerRejected(r.status_code, detail, tail, path)
        raise ServerFailure("http-error", f"HTTP {r.status_code}: {detail}", tail, path)

    def parse(self, text: str, where: str) -> dict[str, Any]:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise self.fail("malformed-json", f"{where}: not JSON ({exc}): {text[:200]!r}") from None
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list) or not data["choices"]:
            raise self.fail("malformed-json", f"{where}: no choices in {text[:200]!r}")
        return data

    def complete(self, prompt: str, max_tokens: int, **fields: Any) -> Completion:
        t0 = time.perf_counter()
        r = self.post("/v1/completions", self.body(prompt, max_tokens, **fields))
        latency = time.perf_counter() - t0
        self.check_status(r)
        data = self.parse(r.text, "completion")
        choice = data["choices"][0]
        return Completion(choice.get("text", ""), choice.get("finish_reason"), data.get("usage") or {},
                          latency, data.get("model", ""), data)

    def stream(self, prompt: str, max_tokens: int, **fields: Any) -> Completion:
        """SSE: concatenates the text deltas; the stream must end with a chunk carrying finish_reason."""
        t0 = time.perf_counter()
        parts: list[str] = []
        times: list[float] = []
        finish, usage, model = None, {}, ""
        try:
            with self.post("/v1/completions", self.body(prompt, max_tokens, stream=True, **fields), stream=True) as r:
                if r.status_code >= 400:
                    r.read()
                    self.check_status(r)
                for line in r.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        break
                    chunk = self.parse(payload, "stream chunk")
                    choice = chunk["choices"][0]
                    if choice.get("text"):
                        parts.append(choice["text"])
                        times.append(time.perf_counter() - t0)
                    finish = choice.get("finish_reason") or finish
                    usage, model = chunk.get("usage") or usage, chunk.get("model", model)
        except httpx.ConnectError as exc:
            raise self.fail("died", f"stream request: {type(exc).__name__}: {exc}") from None
        except httpx.TimeoutException as exc:
            raise self.fail("hung", f"stream stalled for {self.timeout_s:.0f} s ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise self.fail("truncated-stream", f"stream broke after {len(parts)} deltas: {type(exc).__name__}: {exc}") from None
        if finish is None:
            raise self.fail("truncated-stream", f"the stream ended after {len(parts)} deltas without a finish_reason")
        return Completion("".join(parts), finish, usage, time.perf_counter() - t0, model, {}, times)

    def transcribe(self, audio: bytes, filename: str = "audio.wav") -> Completion:
        """POST /v1/audio/transcriptions (multipart: file + model), as OpenAI's client sends it."""
        t0 = time.perf_counter()
        try:
            r = self.http.post("/v1/audio/transcriptions", files={"file": (filename, audio, "audio/wav")},
                               data={"model": self.model})
        except httpx.TimeoutException as exc:
            raise self.fail("hung", f"no transcription within {self.timeout_s:.0f} s ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise self.fail("died", f"transcription request: {type(exc).__name__}: {exc}") from None
        if r.status_code in NO_ROUTE:  # decided from the status alone; the body is quoted for the reader
            raise Unsupported(f"the server answered HTTP {r.status_code} to POST /v1/audio/transcriptions "
                              f"({r.text[:200]!r}): it does not transcribe audio")
        self.check_status(r)
        try:
            data = json.loads(r.text)
        except ValueError as exc:
            raise self.fail("malformed-json", f"transcription: not JSON ({exc}): {r.text[:200]!r}") from None
        if not isinstance(data, dict) or not isinstance(data.get("text"), str):
            raise self.fail("malformed-json", f"transcription: no text field in {r.text[:200]!r}")
        return Completion(data["text"], None, data.get("usage") or {}, time.perf_counter() - t0, self.model, data)
