"""The serve backend's own tests (run by `nox -s serve`, in envs/serve.txt): a real `transformers
serve` process every time; faults are produced by killing / stopping it, by bad requests it really
answers, or by the fault-injecting proxy in front of it; planted defects on the serving path make
the suites fail."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("fastapi", reason="[dependency-missing] the serve env (envs/serve.txt) is not installed")
psutil = pytest.importorskip("psutil")

from conftest import SUITES, outcomes, run_suites  # noqa: E402

from hfmatrix.backends.base import Target  # noqa: E402
from hfmatrix.backends.serve_backend import ServeBackend, greedy_extensions  # noqa: E402
from hfmatrix.serving.client import CompletionsClient, ServerRejected  # noqa: E402
from hfmatrix.serving.errors import ServerFailure  # noqa: E402
from hfmatrix.serving.proxy import FaultProxy  # noqa: E402
from hfmatrix.zoo import materialize  # noqa: E402
from hfmatrix.zoo.spec import load_specs  # noqa: E402

TARGET = Target("serve", "cpu", "fp32")
PROMPT = "Once upon a time"


@pytest.fixture(scope="module")
def gpt2(zoo_cache, tmp_path_factory):
    os.environ["HFMATRIX_CACHE"] = str(zoo_cache)
    os.environ["HFMATRIX_SERVE_LOGS"] = str(tmp_path_factory.mktemp("serve-logs"))
    spec = load_specs(None)["gpt2"]
    return spec, materialize(spec)


@pytest.fixture
def served(gpt2):
    """A server of its own: for the tests that kill or stop it."""
    spec, folder = gpt2
    session = ServeBackend().load(folder, spec, TARGET)
    yield session
    session.close()


@pytest.fixture(scope="module")
def shared(gpt2):
    """One server for the tests that leave it as they found it (a server start costs ~10 s)."""
    spec, folder = gpt2
    session = ServeBackend().load(folder, spec, TARGET)
    yield session
    session.close()


def _gone(pid: int, within_s: float = 15.0) -> bool:
    end = time.monotonic() + within_s
    while time.monotonic() < end:
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return True
        time.sleep(0.2)
    return False


def test_stop_leaves_no_process(served):
    pids = [served.server.pid] + [c.pid for c in psutil.Process(served.server.pid).children(recursive=True)]
    assert served.generate_text({"input_ids": served.tokenizer([PROMPT], return_tensors="np")["input_ids"]}, 2)[0]
    served.close()
    assert all(_gone(p) for p in pids), f"server processes left after stop: {[p for p in pids if psutil.pid_exists(p)]}"


def test_killed_owner_leaves_no_orphan(gpt2, tmp_path):
    """SIGKILL the process that started the server (no atexit, no finally): the server still goes."""
    owner = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from hfmatrix.serving import process as p\n"
        "port = p.free_port()\n"
        f"s = p.start(p.serve_command(Path({str(gpt2[1])!r}), port), port, Path({str(tmp_path / 'o.log')!r}), 120)\n"
        "print(s.pid, flush=True); time.sleep(600)")], stdout=subprocess.PIPE, text=True)
    try:
        server_pid = int(owner.stdout.readline())
        assert psutil.pid_exists(server_pid)
    finally:
        owner.kill()
        owner.wait()
    assert _gone(server_pid), f"server {server_pid} outlived its killed owner (orphan)"


def test_start_failure_is_typed_with_log_tail(gpt2):
    spec, folder = gpt2
    with pytest.raises(ServerFailure) as err:
        ServeBackend().load(folder, spec, TARGET, extra_args=("--no-such-option",))
    assert err.value.kind == "start-failed"
    assert "transformers serve --help" in err.value.log_tail  # the server CLI's own complaint, from its log


def test_hung_server_is_typed(shared):
    os.kill(shared.server.pid, signal.SIGSTOP)
    try:
        client = CompletionsClient(shared.server.base_url, shared.model_name, timeout_s=3,
                                   log_tail=lambda: (shared.server.tail(), ""))
        with pytest.raises(ServerFailure) as err:
            client.complete(PROMPT, 2)
        assert err.value.kind == "hung"
    finally:
        os.kill(shared.server.pid, signal.SIGCONT)


def test_killed_server_is_typed_died(served):
    os.kill(served.server.pid, signal.SIGKILL)
    served.server.proc.wait(10)
    with pytest.raises(ServerFailure) as err:
        served.client.complete(PROMPT, 2)
    assert err.value.kind == "died"
    assert "Uvicorn running" in err.value.log_tail  # the dead server's own log, for whoever reads the record


def test_5xx_and_4xx_are_typed(shared):
    with pytest.raises(ServerFailure) as err:
        shared.client.complete(PROMPT, -1)  # transformers serve 5.24: 500 (negative max_new_tokens reaches generate)
    assert err.value.kind == "http-error" and not isinstance(err.value, ServerRejected)
    with pytest.raises(ServerRejected) as rejected:
        shared.client.check_status(shared.client.post("/v1/completions", None, raw=b"{not json"))
    assert rejected.value.status == 422


@pytest.mark.parametrize("mode", ["malformed-json", "truncated-stream"])
def test_proxy_faults_are_typed(shared, mode):
    proxy = FaultProxy(shared.server.base_url, mode).start()
    try:
        client = CompletionsClient(proxy.url, shared.model_name, timeout_s=60, extensions=greedy_extensions(3))
        call = client.complete if mode == "malformed-json" else client.stream
        with pytest.raises(ServerFailure) as err:
            call(PROMPT, 3)
        assert err.value.kind == mode
        assert FaultProxy(shared.server.base_url, "pass").mangle([b"x"]) == [b"x"]
    finally:
        proxy.stop()


PLANTED = """
import os, signal
import httpx
import hfmatrix.backends.serve_backend as sb
from hfmatrix.serving.proxy import FaultProxy

sb.DTYPES["fp32"] = "bfloat16" if os.environ.get("PLANT_DTYPE") else "float32"  # server started in bf16
_init, _prompts, _text = sb.ServeSession.__init__, sb.ServeSession.prompts, sb.ServeSession.generate_text

def init(self, server, *a, **k):
    _init(self, server, *a, **k)
    # a proxy: one token fewer asked / the stream's last delta lost / every request SLOW_S late
    for var, mode in (("PLANT_DROP_LAST", "drop-last-token"), ("PLANT_STREAM_DROP", "drop-last-delta"),
                      ("PLANT_SLOW", "slow")):
        if self.spec.id == os.environ.get(var):
            self.proxy = FaultProxy(server.base_url, mode).start()
            self.client.http = httpx.Client(base_url=self.proxy.url, timeout=120)

def prompts(self, inputs):
    out = _prompts(self, inputs)
    return [p.rsplit(" ", 1)[0] for p in out] if self.spec.id == os.environ.get("PLANT_TRUNCATE") else out

def generate_text(self, inputs, n):
    if self.spec.id == os.environ.get("PLANT_KILL"):  # the server dies mid-run
        os.kill(self.server.pid, signal.SIGKILL)
        self.server.proc.wait(10)
    return _text(self, inputs, n)

sb.ServeSession.__init__, sb.ServeSession.prompts, sb.ServeSession.generate_text = init, prompts, generate_text

if os.environ.get("PLANT_AUDIO_HALF"):  # the upload carries only the first half of the audio (re-encoded)
    import io
    import soundfile as sf
    from hfmatrix.serving.client import CompletionsClient
    _transcribe = CompletionsClient.transcribe

    def transcribe(self, audio, *a, **k):
        wave, rate = sf.read(io.BytesIO(audio), dtype="float32")
        buf = io.BytesIO()
        sf.write(buf, wave[: len(wave) // 2], rate, format="WAV", subtype="FLOAT")
        return _transcribe(self, buf.getvalue(), *a, **k)
    CompletionsClient.transcribe = transcribe
"""


def _run(pytester, zoo_cache, models: str, *args: str, **plant: str):
    for key, value in plant.items():
        pytester._monkeypatch.setenv(key, value)
    pytester._monkeypatch.setenv("HFMATRIX_SERVE_LOGS", str(pytester.path / "servers"))
    result, records = run_suites(pytester, zoo_cache, str(SUITES / "test_generate.py"), *args, "--hfm-backend=serve",
                                 f"--hfm-models={models}", "-n", "0", plant=PLANTED)
    pids = {r["evidence"].get("server_pid") for r in records} - {None}
    assert pids and all(_gone(p, 5) for p in pids), f"server processes left after the run: {pids}"
    return result, outcomes(records), records


def test_planted_serving_defects_fail_greedy(pytester, zoo_cache):
    """A proxy dropping the last token (gpt2), a truncated prompt (llama): what the user gets changes,
    and the greedy check fails. llama's stream also loses its last delta (a proxy): the stream check
    fails there, and passes for gpt2, whose plain and streamed answers are short alike."""
    result, got, _ = _run(pytester, zoo_cache, "gpt2,llama", str(SUITES / "test_serving.py"), "-k", "greedy or stream",
                          PLANT_DROP_LAST="gpt2", PLANT_TRUNCATE="llama", PLANT_STREAM_DROP="llama")
    assert got == {"generate_greedy[gpt2]": "failed", "generate_greedy[llama]": "failed",
                   "stream_equals_text[gpt2]": "passed", "stream_equals_text[llama]": "failed"}, got
    assert result.ret != 0


def test_planted_dtype_fails_greedy(pytester, zoo_cache):
    """The server started with --dtype bfloat16 while the reference is fp32: mamba's greedy text changes."""
    result, got, records = _run(pytester, zoo_cache, "mamba", PLANT_DTYPE="1")
    assert got == {"generate_greedy[mamba]": "failed"}, got
    assert "bfloat16" in records[0]["evidence"]["server_cmd"]


def test_killed_server_fails_typed_and_the_run_goes_on(pytester, zoo_cache):
    result, got, records = _run(pytester, zoo_cache, "gpt2,llama", PLANT_KILL="gpt2")
    assert got == {"generate_greedy[gpt2]": "failed", "generate_greedy[llama]": "passed"}, got
    killed = next(r for r in records if r["model"] == "gpt2")
    assert "[serve:died]" in killed["message"] and "server log tail" in killed["message"]


def test_existing_deployment_endpoint(pytester, zoo_cache, shared):
    """--hfm-endpoint: the checks go to a server hfmatrix did not start (here: one this test started),
    parity against the local reference of the same folder; the API key is sent, never recorded, and
    the deployment is left running."""
    pytester._monkeypatch.setenv("HFMATRIX_SERVE_API_KEY", "sk-hfm-never-logged")
    result, records = run_suites(pytester, zoo_cache, str(SUITES / "test_generate.py"), "--hfm-backend=serve",
                                 "--hfm-models=gpt2", "-n", "0", f"--hfm-endpoint={shared.server.base_url}",
                                 f"--hfm-served-model={shared.model_name}")
    assert outcomes(records) == {"generate_greedy[gpt2]": "passed"}, result.stdout.str()[-2000:]
    assert records[0]["evidence"]["existing_deployment"] is True
    assert shared.server.alive(), "hfmatrix stopped a deployment it did not start"
    written = "".join(p.read_text(errors="replace") for p in pytester.path.rglob("*") if p.is_file() and p.suffix != ".py")
    assert "sk-hfm-never-logged" not in written


def test_planted_slowdown_fails_the_serving_gate(pytester, zoo_cache, gpt2, shared, tmp_path, monkeypatch):
    """A baseline recorded here (the suite's own measurement, against the shared server as a deployment),
    then the suite's gate against the same server behind a proxy that holds every request SLOW_S: a
    regression, and a failure whose measured slowdown is the planted one. Both sides go through
    --hfm-endpoint (no second server start); --hfm-perf-max-load=0: a busy CI machine must not turn the
    verdict into 'not judged'."""
    from hfmatrix.perf.baselines import fingerprint, record
    from hfmatrix.plugin import Case
    from hfmatrix.serving.perf import measured
    from hfmatrix.serving.proxy import SLOW_S
    from hfmatrix.zoo.inputs import generation_inputs
    spec, folder = gpt2
    n = int(spec.generate.get("max_new_tokens", 5))
    monkeypatch.setenv("HFMATRIX_SERVE_ENDPOINT", shared.server.base_url)
    monkeypatch.setenv("HFMATRIX_SERVE_MODEL", shared.model_name)
    deployment = ServeBackend().load(folder, spec, TARGET)
    try:
        prompt = deployment.prompts(generation_inputs(spec, folder))[0]
        m, _ = measured(Case(spec, TARGET), deployment, prompt, n, deployment.request_fields(n))
    finally:
        deployment.close()
    record([m.entry], tmp_path / "baselines", fingerprint())
    proxy = FaultProxy(shared.server.base_url, "slow").start()
    try:
        result, records = run_suites(pytester, zoo_cache, str(SUITES / "test_serving.py"), "-k", "serving_vs_baseline",
                                     "--hfm-backend=serve", "--hfm-models=gpt2", "-n", "0", f"--hfm-endpoint={proxy.url}",
                                     f"--hfm-served-model={shared.model_name}", "--hfm-perf-max-load=0",
                                     f"--hfm-perf-baselines={tmp_path / 'baselines'}")
    finally:
        proxy.stop()
    assert outcomes(records) == {"serving_vs_baseline[gpt2]": "failed"}, result.stdout.str()[-2000:]
    got = records[0]["measures"]
    assert got["verdict"] == "regression" and "slower than baseline" in records[0]["message"]
    assert got["latency_c1_p50_ms"] - got["latency_c1_baseline_p50_ms"] >= 0.8 * SLOW_S * 1e3, got


def test_endpoint_without_models_runs_the_model_free_checks(pytester, zoo_cache, shared):
    """--hfm-endpoint without --hfm-models against a real server this test started: the model-free checks
    run and pass, the per-model parity check skips as dependency-missing, and the report says both."""
    from hfmatrix.report import markdown, merge
    pytester._monkeypatch.delenv("HFMATRIX_MODELS", raising=False)
    result, records = run_suites(pytester, zoo_cache, str(SUITES / "test_endpoint.py"), str(SUITES / "test_generate.py"),
                                 "--hfm-backend=serve", "-n", "0", f"--hfm-endpoint={shared.server.base_url}",
                                 f"--hfm-served-model={shared.model_name}")
    got = {r["nodeid"].split("::")[-1]: (r["outcome"], r.get("skip_kind")) for r in records}
    free = {r["nodeid"].split("::")[-1]: (r["outcome"], None) for r in records if r["check"] != "generate_greedy"}  # nodeids: no path (outside rootdir)
    assert free and all(o == "passed" for o, _ in free.values()), (got, result.stdout.str()[-2000:])
    assert {"test_health", "test_stream_equals_text", "test_concurrent_equals_serial", "test_endpoint_checks",
            "test_bad_request_refused[request-invalid-json]", "test_bad_request_refused[request-unknown-model]"} <= set(free)
    assert got["test_generate_greedy[no-applicable-model]"] == ("skipped", "dependency-missing"), got
    summary = next(r for r in records if r["check"] == "endpoint_checks")["measures"]["endpoint_checks"]
    assert {"health", "stream_equals_text", "concurrent_equals_serial", "bad_request_refused"} <= set(summary["ran"])
    md = markdown.render(merge.merge(pytester.path / "results"))
    assert "ran bad_request_refused, concurrent_equals_serial" in md and "parity checks need --hfm-models" in md


def test_endpoint_stream_check_bites(pytester, zoo_cache, shared):
    """The model-free stream check against a deployment whose stream loses its last delta (a proxy in
    front of the real server; the non-streamed answer is intact): it fails."""
    proxy = FaultProxy(shared.server.base_url, "drop-last-delta").start()
    try:
        pytester._monkeypatch.delenv("HFMATRIX_MODELS", raising=False)
        _, records = run_suites(pytester, zoo_cache, str(SUITES / "test_endpoint.py"), "-k", "stream_equals_text",
                                "--hfm-backend=serve", "-n", "0", f"--hfm-endpoint={proxy.url}",
                                f"--hfm-served-model={shared.model_name}")
    finally:
        proxy.stop()
    (rec,) = records
    assert rec["outcome"] == "failed" and "!= non-streamed" in rec["message"], rec["message"][-500:]


def test_planted_half_audio_fails_transcription(pytester, zoo_cache):
    """whisper through /v1/audio/transcriptions, the upload cut to its first half: what the user gets
    changes and the transcription check fails (unplanted, `nox -s serve` passes it)."""
    pytester._monkeypatch.setenv("PLANT_AUDIO_HALF", "1")
    pytester._monkeypatch.setenv("HFMATRIX_SERVE_LOGS", str(pytester.path / "servers"))
    result, records = run_suites(pytester, zoo_cache, str(SUITES / "test_serving.py"), "-k", "transcription",
                                 "--hfm-backend=serve", "--hfm-models=whisper", "-n", "0", plant=PLANTED)
    assert outcomes(records) == {"transcription[whisper]": "failed"}, result.stdout.str()[-2000:]
    assert "served transcription" in records[0]["message"]


def test_no_transcription_route_is_a_typed_skip_quoting_the_answer(shared):
    """A server without the route (the real server, under a prefix it does not serve: 404) is an
    unsupported-by-backend skip that quotes its status and body; decided from the status."""
    from hfmatrix.skips import Unsupported
    client = CompletionsClient(shared.server.base_url + "/no-audio-here", shared.model_name, timeout_s=30)
    with pytest.raises(Unsupported) as skip:
        client.transcribe(b"RIFF....WAVE")
    assert "HTTP 404" in str(skip.value) and "Not Found" in str(skip.value)
