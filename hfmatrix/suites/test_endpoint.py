"""Model-free checks of an existing deployment (``--hfm-endpoint URL`` WITHOUT ``--hfm-models``): with no
local copy of the served weights there is no reference, so only what needs none runs: the health
answer, streaming equals non-streaming, concurrent clients equal serial ones, bad requests refused
(the catalogue's request cases that need no model facts). The parity suites skip (dependency-missing:
they need --hfm-models); test_endpoint_checks records which checks ran, for the report.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from hfmatrix import negative, skips

PROMPT = "Once upon a time"   # any text: the checks compare the server with itself
MAX_TOKENS = 8
CLIENTS = 4
PARITY = ("generate_greedy", "logprobs", "serving_vs_baseline")
_RAN: list[str] = []

pytestmark = pytest.mark.xdist_group("endpoint")  # one worker: test_endpoint_checks sees what ran


@pytest.fixture(scope="module")
def endpoint(request):
    from hfmatrix.serving import endpoint as configured
    from hfmatrix.plugin import model_free_endpoint
    ep = configured()
    if ep is None:  # decided before importing the HTTP client: every other session's env lacks it
        skips.skip(skips.UNSUPPORTED, "model-free checks test an existing deployment (--hfm-endpoint); servers the "
                                      "serve session starts get hfmatrix/suites/test_serving.py")
    try:
        from hfmatrix.serving.client import CompletionsClient
        from hfmatrix.serving.process import ExistingServer
    except ImportError as exc:
        skips.skip(skips.DEPENDENCY_MISSING, f"--hfm-endpoint needs the serve env's HTTP client (envs/serve.txt): {exc}")
    if not model_free_endpoint(request.config):
        skips.skip(skips.UNSUPPORTED, "--hfm-models is given: the same checks run per model in test_serving.py, "
                                      "against the local reference")
    server = ExistingServer(ep["url"])
    client = CompletionsClient(ep["url"], ep["model"], api_key=os.environ.get(ep["key_env"]) or None, timeout_s=120)
    client.fixed_prompt, client.client, client.server = PROMPT, client, server  # what bad_requests expects of a session
    yield client
    client.close()


def _props(request, endpoint) -> None:
    request.node.user_properties.append(("hfm_case", {"model": endpoint.model or "(the endpoint's default)",
                                                      "backend": request.config.getoption("--hfm-backend"),
                                                      "device": "endpoint", "precision": ""}))
    _RAN.append(request.node.name.removeprefix("test_").split("[")[0])


def test_health(request, endpoint, hfm_measure):
    _props(request, endpoint)
    hfm_measure(evidence=endpoint.server.evidence())
    assert endpoint.server.health["status_code"] == 200, f"/health answered {endpoint.server.health}"


def test_stream_equals_text(request, endpoint, hfm_measure):
    _props(request, endpoint)
    plain, streamed = endpoint.complete(PROMPT, MAX_TOKENS), endpoint.stream(PROMPT, MAX_TOKENS)
    hfm_measure(plain_text=plain.text, streamed_text=streamed.text, served_model=plain.model)
    assert plain.text, "the non-streamed answer is empty: nothing to compare the stream with"
    assert streamed.text == plain.text, f"streamed {streamed.text!r} != non-streamed {plain.text!r}"


def test_concurrent_equals_serial(request, endpoint, hfm_measure):
    _props(request, endpoint)
    serial = [endpoint.complete(PROMPT, MAX_TOKENS).text for _ in range(2)]
    with ThreadPoolExecutor(CLIENTS) as pool:
        together = list(pool.map(lambda _: endpoint.complete(PROMPT, MAX_TOKENS).text, range(CLIENTS)))
    hfm_measure(serial_text=serial, concurrent_text=together, clients=CLIENTS)
    assert serial[0] and serial[1] == serial[0], f"serial answers differ or are empty: {serial!r}"
    assert all(t == serial[0] for t in together), f"{CLIENTS} concurrent answers {together!r} != serial {serial[0]!r}"


def _model_free_requests():
    for neg in negative.catalogue().values():
        if neg.stage == "request" and not neg.needs_max_positions:  # a context length is a model fact
            yield pytest.param(neg, id=neg.id)


@pytest.mark.parametrize("neg", list(_model_free_requests()))
def test_bad_request_refused(request, endpoint, neg, hfm_measure):
    """Any server must refuse these with an HTTP error (the catalogue's exact answers are per server:
    a deployment of unknown make is held to the refusal alone) and keep answering afterwards."""
    from hfmatrix.serving.bad_requests import run_request_case
    from hfmatrix.serving.errors import ServerFailure
    _props(request, endpoint)
    outcome = run_request_case(neg, None, None, endpoint)
    err = outcome.error
    hfm_measure(error=f"{type(err).__name__}: {str(err)[:300]}" if err else None, status=getattr(err, "status", None),
            **outcome.facts)
    assert isinstance(err, ServerFailure) and err.kind == "http-error", \
        f"{neg.description}: the server answered {outcome.facts.get('answered')!r} instead of an HTTP error ({err!r})"
    assert outcome.facts["recovered"], f"the server stopped answering after {neg.id}: {outcome.facts}"


def test_endpoint_checks(request, endpoint, hfm_measure):
    """Last: which model-free checks ran against this deployment, and that the parity checks did not."""
    ran = sorted(set(_RAN))
    if not ran:
        skips.skip(skips.UNSUPPORTED, "no model-free check was selected")
    _props(request, endpoint)
    hfm_measure(endpoint_checks={"url": endpoint.base_url, "ran": ran, "not_run": list(PARITY),
                             "why": "parity checks need --hfm-models (the same weights, for the local reference)"})
    assert "health" in ran or "stream_equals_text" in ran, f"only {ran} ran: the deployment was never asked to generate"
