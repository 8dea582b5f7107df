"""The bad-input catalogue's `request` stage: bad requests sent to a served model over HTTP.

Each mutation sends one bad request through the session's completions client and returns what the
server answered (a ServerFailure / ServerRejected is raised with the server's status and detail).
The catalogue (negative_cases.toml) holds what each server is expected to answer, with a reason.
"""
from __future__ import annotations

from typing import Any

import numpy as np


def _prompt(session, spec, model_dir) -> str:
    if spec is None:  # model-free (--hfm-endpoint without --hfm-models): the endpoint session's fixed prompt
        return session.fixed_prompt
    from ..zoo.inputs import generation_inputs
    return session.prompts(generation_inputs(spec, model_dir))[0]


def q_prompt_too_long(session, spec, model_dir, args: dict[str, Any]):
    """A prompt of (positions + extra) tokens: longer than the model's context."""
    from ..zoo.inputs import max_positions
    limit = max_positions(spec, model_dir)
    words = " ".join(["a"] * (int(limit) + int(args.get("extra", 16))))
    return session.client.complete(words, 2), {"context": limit}


def q_unknown_model(session, spec, model_dir, args: dict[str, Any]):
    return session.client.complete(_prompt(session, spec, model_dir), 2, model=args.get("model", "no-such-model")), {}


def q_max_tokens(session, spec, model_dir, args: dict[str, Any]):
    return session.client.complete(_prompt(session, spec, model_dir), int(args["value"])), {}


def q_raw_body(session, spec, model_dir, args: dict[str, Any]):
    r = session.client.post("/v1/completions", None, raw=args["body"].encode())
    session.client.check_status(r)
    return session.client.parse(r.text, "raw body"), {}


REQUESTS = {"prompt_too_long": q_prompt_too_long, "unknown_model": q_unknown_model, "max_tokens": q_max_tokens,
            "raw_body": q_raw_body}


def run_request_case(neg, spec, model_dir, session):
    """Send the bad request, then check the server still answers the intact prompt (recovered)."""
    from ..negative import Outcome
    outcome = Outcome()
    try:
        answer, facts = REQUESTS[neg.mutation](session, spec, model_dir, neg.args)
        outcome.facts.update(facts, answered=str(getattr(answer, "text", answer))[:200])
        # what the served answer amounts to as numbers: its completion token count (the API gives no tensors)
        usage = getattr(answer, "usage", None) or (answer.get("usage") if isinstance(answer, dict) else None) or {}
        outcome.outputs = {"completion_tokens": np.asarray([int(usage.get("completion_tokens", 0))])}
    except Exception as exc:
        outcome.error = exc
    try:
        session.client.complete(_prompt(session, spec, model_dir), 1)
        outcome.facts["recovered"] = True
    except Exception as exc:
        outcome.facts.update(recovered=False, intact_after_error=f"{type(exc).__name__}: {str(exc)[:300]}")
    return outcome
