"""Checks only a served model has: streaming, concurrent clients, logprobs (backends whose sessions are a
text API; greedy text parity is test_generate's)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from hfmatrix.backends import TEXT_API
from hfmatrix.backends.base import TextGenerator
from hfmatrix.perf.plugin import PROP_ENTRY
from hfmatrix.plugin import load_session
from hfmatrix.skips import Unsupported
from hfmatrix.zoo.inputs import generation_inputs

CLIENTS = 4  # concurrent clients: enough to overlap requests on 2 cores, few enough for CI


def _text_session(session) -> TextGenerator:
    if not isinstance(session, TextGenerator):
        raise Unsupported(f"{type(session).__name__} is not a text API (no generate_text / stream_text)")
    if getattr(session, "audio_only", False):
        raise Unsupported(f"{session.spec.id} is served for /v1/audio/transcriptions only: its prompt is audio, "
                          "not text (test_transcription checks it)")
    return session


def _greedy_request(hfm_case, hfm_model_dir, hfm_backend_session):
    """The served session, the zoo's generation inputs and the token count every text check sends."""
    return (_text_session(hfm_backend_session), generation_inputs(hfm_case.spec, hfm_model_dir),
            int(hfm_case.spec.generate.get("max_new_tokens", 5)))


def _concurrent(session, inputs, n: int) -> list[list[str]]:
    with ThreadPoolExecutor(CLIENTS) as pool:
        return list(pool.map(lambda _: session.generate_text(inputs, n), range(CLIENTS)))


@pytest.mark.hfm_needs("generate")
@pytest.mark.hfm_requires(TEXT_API)
def test_stream_equals_text(hfm_case, hfm_model_dir, hfm_backend_session, hfm_measure):
    session, inputs, n = _greedy_request(hfm_case, hfm_model_dir, hfm_backend_session)
    plain, streamed = session.generate_text(inputs, n), session.stream_text(inputs, n)
    hfm_measure(plain_text=plain, streamed_text=streamed, evidence=session.evidence())
    assert plain[0], "the non-streamed answer is empty: nothing to compare the stream with"
    assert streamed == plain, f"streamed {streamed!r} != non-streamed {plain!r}"


@pytest.mark.hfm_needs("generate")
@pytest.mark.hfm_requires(TEXT_API)
def test_concurrent_equals_serial(hfm_case, hfm_model_dir, hfm_backend_session, hfm_measure):
    session, inputs, n = _greedy_request(hfm_case, hfm_model_dir, hfm_backend_session)
    serial = [session.generate_text(inputs, n) for _ in range(2)]
    together = _concurrent(session, inputs, n)
    hfm_measure(serial_text=serial, concurrent_text=together, clients=CLIENTS)
    assert serial[0][0], "the serial answer is empty: nothing to compare"
    assert all(s == serial[0] for s in serial), f"serial answers differ: {serial!r}"
    assert all(t == serial[0] for t in together), f"{CLIENTS} concurrent answers {together!r} != serial {serial[0]!r}"


@pytest.mark.hfm_needs("generate")
@pytest.mark.hfm_requires(TEXT_API)
def test_concurrent_equals_serial_continuous_batching(hfm_case, hfm_model_dir, hfm_backend_session, hfm_measure):
    """A second server of the same folder with --continuous-batching: its concurrent answers equal the
    plain server's serial answer (which test_generate ties to the reference)."""
    session, inputs, n = _greedy_request(hfm_case, hfm_model_dir, hfm_backend_session)
    serial = session.generate_text(inputs, n)
    batched = load_session(hfm_case, hfm_model_dir, fresh=True, continuous_batching=True)
    try:
        together = _concurrent(batched, inputs, n)
        hfm_measure(serial_text=serial, concurrent_text=together, clients=CLIENTS, evidence=batched.evidence())
    finally:
        batched.close()
    assert serial[0], "the serial answer is empty: nothing to compare"
    assert all(t == serial for t in together), f"continuous batching: {together!r} != serial {serial!r}"


@pytest.mark.hfm_needs("generate")
@pytest.mark.hfm_requires(TEXT_API)
def test_logprobs(hfm_case, hfm_model_dir, hfm_backend_session, hfm_measure):
    session = _text_session(hfm_backend_session)
    inputs = generation_inputs(hfm_case.spec, hfm_model_dir)
    prompt = session.prompts(inputs)[0]
    answer = session.client.complete(prompt, 1, logprobs=1)
    got = answer.raw["choices"][0].get("logprobs")
    hfm_measure(logprobs=got)
    if got is None:  # decided from the response's structure: the field the request asked for is absent
        raise Unsupported("the server answered a logprobs=1 request without logprobs (transformers serve "
                          "lists the field as unsupported and ignores it); no logprob parity possible")
    raise Unsupported("the server returned logprobs, but their parity against the reference is not implemented")


# Measured once per model by test_serving_load, judged by test_serving_vs_baseline (same xdist group:
# the same worker, the same server).
_MEASURED: dict = {}


def _load_measured(request, hfm_case, session, hfm_model_dir):
    from hfmatrix import backends
    from hfmatrix.plugin import run_info
    from hfmatrix.serving.perf import measured
    if hfm_case.id not in _MEASURED:
        inputs = generation_inputs(hfm_case.spec, hfm_model_dir)
        n = int(hfm_case.spec.generate.get("max_new_tokens", 5))
        st = run_info(request.config)
        _MEASURED[hfm_case.id] = measured(hfm_case, session, session.prompts(inputs)[0], n, session.request_fields(n),
                                      run_id=st.run_id, session_name=st.session,
                                      versions=backends.get(hfm_case.target.backend).versions())
        request.node.user_properties.append((PROP_ENTRY, _MEASURED[hfm_case.id][0].entry))
    return _MEASURED[hfm_case.id]


@pytest.mark.hfm_perf
@pytest.mark.hfm_needs("generate")
@pytest.mark.hfm_requires(TEXT_API)
def test_serving_load(request, hfm_case, hfm_model_dir, hfm_backend_session, hfm_measure):
    """Streaming clients at 1 and 4 concurrency (bounded: HFMATRIX_SERVE_LOAD_REQUESTS requests, 60 s a
    level): TTFT, inter-token latency, p50/p99 latency and tokens/s go into the record and the bench JSON
    (scripts/bench_serve.py runs the 1/4/16 table); every answer must equal the serial greedy answer."""
    session, inputs, n = _greedy_request(hfm_case, hfm_model_dir, hfm_backend_session)
    serial = session.generate_text(inputs, n)[0]
    _, levels = _load_measured(request, hfm_case, session, hfm_model_dir)
    hfm_measure(serving_load=[{k: v for k, v in lv.items() if not k.endswith("_values")} for lv in levels],
            evidence=session.evidence())
    assert serial, "the serial answer is empty: nothing to compare"
    assert all(lv["texts"] == [serial] for lv in levels), f"answers under load {[lv['texts'] for lv in levels]} != {serial!r}"


@pytest.mark.hfm_perf
@pytest.mark.hfm_needs("generate")
@pytest.mark.hfm_requires(TEXT_API)
def test_serving_vs_baseline(request, hfm_case, hfm_model_dir, hfm_backend_session, hfm_perf_config, hfm_measure):
    """The load figures through the same gate as every backend's (asv's rule on raw per-request samples,
    against baselines/<fingerprint>/serve-cpu-fp32.json); no baseline is the same typed skip."""
    from hfmatrix.perf.baselines import fingerprint
    from hfmatrix.perf.plugin import judge
    from hfmatrix.perf.runner import compare_case
    m, _ = _load_measured(request, hfm_case, _text_session(hfm_backend_session), hfm_model_dir)
    fp = fingerprint()["id"]
    try:
        cmp = compare_case(m, hfm_perf_config, fp)
    finally:
        _MEASURED.pop(hfm_case.id, None)
    judge(request, m.entry["name"], cmp, fp, hfm_perf_config, hfm_measure)


@pytest.mark.hfm_needs("audio")
@pytest.mark.hfm_requires(TEXT_API)
def test_transcription(hfm_case, hfm_model_dir, hfm_backend_session, hfm_reference_session, hfm_measure):
    """/v1/audio/transcriptions: the served text equals the reference's greedy decode of the same audio
    (the same WAV bytes, decoded by soundfile on both sides; the server generates with the folder's own
    generation config, so the reference does too, greedy)."""
    import io

    import soundfile as sf
    import torch
    from transformers import AutoProcessor

    from hfmatrix.zoo.inputs import SAMPLE_RATE, _waveform
    if hfm_case.spec.task != "automatic-speech-recognition":
        raise Unsupported(f"task {hfm_case.spec.task}: /v1/audio/transcriptions serves speech-to-text generation only")
    buf = io.BytesIO()
    sf.write(buf, _waveform(hfm_case.spec, 0, SAMPLE_RATE), SAMPLE_RATE, format="WAV", subtype="FLOAT")  # lossless
    audio = buf.getvalue()
    got = hfm_backend_session.client.transcribe(audio)
    processor = AutoProcessor.from_pretrained(str(hfm_model_dir))
    wave, rate = sf.read(io.BytesIO(audio), dtype="float32")
    features = processor(wave, sampling_rate=rate, return_tensors="pt")
    with torch.inference_mode():
        ids = hfm_reference_session.module().generate(**features, do_sample=False, num_beams=1)
    expected = processor.batch_decode(ids, skip_special_tokens=True)[0]
    hfm_measure(expected_ids=ids.tolist(), expected_text=expected, actual_text=got.text, evidence=hfm_backend_session.evidence())
    assert expected, "the reference transcription is empty: nothing to compare"
    assert got.text == expected, f"served transcription {got.text!r} != reference {expected!r}"
