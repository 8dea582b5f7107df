"""The `serve` backend: the model as a user gets it from an OpenAI-compatible server.

load() starts a real `transformers serve <folder>` process on a free 127.0.0.1 port (one per
model, --device cpu --dtype float32), waits for /health with a deadline and talks to it over the
socket only. The server returns text, not ids or logits: the session offers ``generate_text`` /
``stream_text`` (a TextGenerator, see base.py) and raises a typed skip for ``run`` / ``generate``.
Server logs go to $HFMATRIX_SERVE_LOGS (default results/serve/servers/).
"""
from __future__ import annotations

import json
import os
from importlib import util
from pathlib import Path
from typing import Any

import numpy as np

from ..serving import endpoint
from ..skips import Unsupported
from .base import TEXT_API, Arrays, Availability, BackendBase, SessionBase, Target

#: tasks whose prompt is text and whose answer is /v1/completions text
TEXT_TASKS = ("text-generation", "text2text-generation")
#: tasks the server answers on /v1/audio/transcriptions (audio in, text out; no text prompt)
AUDIO_TASKS = ("automatic-speech-recognition",)
SERVED_TASKS = TEXT_TASKS + AUDIO_TASKS
SERVER_DEPS = ("fastapi", "uvicorn", "openai", "pydantic", "accelerate", "httpx")
HEALTH_DEADLINE_S = float(os.environ.get("HFMATRIX_SERVE_START_TIMEOUT", "120"))
REQUEST_TIMEOUT_S = float(os.environ.get("HFMATRIX_SERVE_REQUEST_TIMEOUT", "120"))
DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def log_dir() -> Path:
    return Path(os.environ.get("HFMATRIX_SERVE_LOGS", "results/serve/servers")).resolve()


def greedy_extensions(max_new_tokens: int) -> dict[str, Any]:
    """`transformers serve`'s generation_config field: exactly n new tokens, greedy, as the reference
    generates them (min_new_tokens = n, so an early EOS cannot end one side only)."""
    cfg = {"max_new_tokens": max_new_tokens, "min_new_tokens": max_new_tokens, "do_sample": False, "num_beams": 1}
    return {"generation_config": json.dumps(cfg)}


class ServeSession(SessionBase):
    """One served model: the server process, a completions client, and the folder's tokenizer
    (to turn the suites' prompt ids into the text a user would send)."""

    def __init__(self, server, model_name: str, model_dir: Path, spec, target: Target, options: dict[str, Any]):
        from transformers import AutoTokenizer

        from ..serving.client import CompletionsClient
        self.server, self.spec, self.target, self.options = server, spec, target, options
        self.model_name, self.model_dir = model_name, Path(model_dir)
        self.audio_only = spec.task in AUDIO_TASKS  # its prompt is audio: only the transcription check applies
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        self.client = CompletionsClient(server.base_url, model_name, timeout_s=REQUEST_TIMEOUT_S,
                                        api_key=options.get("api_key"),
                                        log_tail=lambda: (server.tail(), str(server.log_path)))
        self.last: dict[str, Any] = {}

    # -- what the API cannot express
    def run(self, inputs: Arrays) -> Arrays:
        raise Unsupported("an OpenAI-compatible server returns generated text, not the model's output tensors")

    def generate(self, inputs: Arrays, max_new_tokens: int) -> np.ndarray:
        raise Unsupported("/v1/completions returns text, not token ids (the greedy check compares text)")

    # -- text in, text out
    def prompts(self, inputs: Arrays) -> list[str]:
        """The text of each prompt row; it must tokenize back to the same ids, else the server would
        be asked something other than what the reference ran."""
        if self.audio_only:
            raise Unsupported(f"{self.spec.id}'s prompt is audio: /v1/completions takes text "
                              "(test_transcription sends the audio to /v1/audio/transcriptions)")
        out = []
        for row, mask in zip(inputs["input_ids"], inputs.get("attention_mask", np.ones_like(inputs["input_ids"]))):
            ids = [int(i) for i, m in zip(row, mask) if m]
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            again = self.tokenizer(text)["input_ids"]
            if list(again) != ids:
                raise Unsupported(f"the prompt ids {ids} do not round-trip through text ({again}); "
                                  "a text API cannot send them")
            out.append(text)
        return out

    def request_fields(self, max_new_tokens: int) -> dict[str, Any]:
        """The body fields every greedy request of this session carries (beyond prompt / max_tokens):
        transformers serve's generation_config; an existing deployment gets the plain OpenAI fields only."""
        return {} if self.options.get("existing") else greedy_extensions(max_new_tokens)

    def _request(self, inputs: Arrays, max_new_tokens: int, stream: bool) -> list[str]:
        texts = []
        call = self.client.stream if stream else self.client.complete
        for prompt, row in zip(self.prompts(inputs), inputs["input_ids"]):
            done = call(prompt, max_new_tokens, **self.request_fields(max_new_tokens))
            self.last = {"served_model": done.model, "usage": done.usage, "finish_reason": done.finish_reason}
            sent = done.usage.get("prompt_tokens")
            if sent is not None and int(sent) != len(self.tokenizer(prompt)["input_ids"]):
                raise AssertionError(f"the server counted {sent} prompt tokens for a {len(row)}-token prompt")
            texts.append(done.text)
        return texts

    def generate_text(self, inputs: Arrays, max_new_tokens: int) -> list[str]:
        return self._request(inputs, max_new_tokens, stream=False)

    def stream_text(self, inputs: Arrays, max_new_tokens: int) -> list[str]:
        return self._request(inputs, max_new_tokens, stream=True)

    def evidence(self) -> dict[str, Any]:
        from ..zoo.materialize import dist_versions
        return {**self.server.evidence(), "server_alive": self.server.alive(), "served_model": self.model_name,
                "server_version": dist_versions("transformers")["transformers"], "device": "cpu",
                "dtype": self.options.get("dtype", "unknown (existing deployment)" if self.options.get("existing") else "float32"),
                **self.last}

    def close(self) -> None:
        self.client.close()
        self.server.stop()


class ServeBackend(BackendBase):
    name = "serve"
    CAPABILITIES = frozenset({TEXT_API})  # the model runs in the server's process
    precisions = ("fp32",)
    devices = ("cpu",)

    def available(self, device: str, precision: str) -> Availability:
        if device != "cpu":
            return Availability(False, f"the serve session starts its server with --device cpu, not {device!r}",
                                "unsupported-by-backend")
        if precision not in self.precisions:
            return Availability(False, f"the served model is compared in fp32, not {precision}", "unsupported-by-backend")
        missing = [m for m in SERVER_DEPS if util.find_spec(m) is None]
        if missing:
            return Availability(False, f"`transformers serve` needs {', '.join(missing)} (envs/serve.txt)",
                                "dependency-missing")
        return Availability(True, "transformers serve on 127.0.0.1")

    def load(self, model_dir: Path, spec, target: Target, *, allow_pickle: bool = False,
             trust_remote_code: bool = False, dtype: str | None = None, continuous_batching: bool = False,
             extra_args: tuple[str, ...] = ()) -> ServeSession:
        self.available(target.device, target.precision).require()
        if spec.task not in SERVED_TASKS:
            raise Unsupported(f"task {spec.task}: the serve backend sends text prompts to /v1/completions "
                              f"({', '.join(TEXT_TASKS)}) and audio to /v1/audio/transcriptions "
                              f"({', '.join(AUDIO_TASKS)}) only")
        if trust_remote_code:
            raise Unsupported("the server is never started with --trust-remote-code")
        from ..serving import process
        if endpoint() is not None:
            if continuous_batching or dtype or extra_args:
                raise Unsupported("an existing deployment (--hfm-endpoint) runs as its owner started it: "
                                  "hfmatrix cannot start it again with other server options")
            return self._existing(model_dir, spec, target, endpoint())
        dtype = dtype or DTYPES[target.precision]
        port = process.free_port()
        cmd = process.serve_command(Path(model_dir), port, dtype=dtype, continuous_batching=continuous_batching,
                                    extra=extra_args)
        tag = "-cb" if continuous_batching else ""
        server = process.start(cmd, port, log_dir() / f"{spec.id}{tag}-{port}.log", HEALTH_DEADLINE_S,
                               env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
        try:
            return ServeSession(server, str(model_dir), Path(model_dir), spec, target,
                                {"dtype": dtype, "continuous_batching": continuous_batching})
        except BaseException:
            server.stop()
            raise

    def _existing(self, model_dir: Path, spec, target: Target, ep: dict[str, str]) -> ServeSession:
        """The same checks against a deployment someone else runs, on the local folder's tokenizer and
        reference (--hfm-models names the same weights the deployment serves)."""
        from ..serving.process import ExistingServer
        server = ExistingServer(ep["url"])
        options = {"existing": True, "api_key": os.environ.get(ep["key_env"]) or None}
        return ServeSession(server, ep["model"] or str(model_dir), Path(model_dir), spec, target, options)

    def versions(self) -> dict[str, str]:
        from ..zoo.materialize import dist_versions
        found = dist_versions("torch", "transformers", "tokenizers", "fastapi", "uvicorn", "openai", "httpx")
        return {k: v for k, v in found.items() if v != "absent"}
