"""Every check fails on a planted defect (and passes without it). The defects patch the real code
path (the real model, the real input pipeline); nothing is mocked."""
from __future__ import annotations

from conftest import SUITES, outcomes, run_suites

NONDETERMINISTIC = """
import hfmatrix.backends.torch_backend as tb
_load = tb.TorchBackend.load
def load(self, *a, **k):
    session = _load(self, *a, **k)
    session.model.train()  # dropout active: the forward is no longer deterministic
    return session
tb.TorchBackend.load = load
"""

BROKEN_MASK = """
import hfmatrix.zoo.inputs as inputs
_batch = inputs.batch
def batch(*a, **k):
    out = _batch(*a, **k)
    out["attention_mask"] = out["attention_mask"] * 0 + 1  # padding attended to
    return out
inputs.batch = batch
"""


def _outputs_planted(transform: str, prelude: str = "") -> str:
    """A planted-defect plugin: the backend under test's session returns transform(v) for every
    output v (the reference is loaded separately and stays clean)."""
    return f"""
{prelude}
import hfmatrix.plugin as plugin
_load = plugin.load_session
def load_session(*a, **k):
    session = _load(*a, **k)
    run = session.run
    session.run = lambda inputs: {{key: {transform} for key, v in run(inputs).items()}}
    return session
plugin.load_session = load_session
"""


PERTURBED = _outputs_planted("v * (1 + 1e-3)")


def test_clean_bert_passes_every_check(pytester, zoo_cache):
    result, records = run_suites(pytester, zoo_cache, str(SUITES / "test_inference.py"), str(SUITES / "test_load.py"),
                                 str(SUITES / "test_parity.py"), "--hfm-models=bert")
    got = outcomes(records)
    assert got["deterministic[bert]"] == "passed"
    assert got["batch_equivalence[bert]"] == "passed"
    assert got["artifact_integrity[bert]"] == "passed"
    assert got["weights_match_build[bert]"] == "passed"
    assert got["parity[bert]"] == "passed"
    assert all(0 <= r["measures"]["tol_fraction"] <= 1 for r in records if "tol_fraction" in r["measures"])
    assert result.ret == 0, result.stdout.str()[-2000:]


def test_nondeterministic_forward_fails_determinism(pytester, zoo_cache):
    result, records = run_suites(pytester, zoo_cache, str(SUITES / "test_inference.py"), "--hfm-models=bert",
                                 "-k", "deterministic", plant=NONDETERMINISTIC)
    assert outcomes(records) == {"deterministic[bert]": "failed"}
    assert result.ret == 1


def test_broken_padding_mask_fails_batch_equivalence(pytester, zoo_cache):
    result, records = run_suites(pytester, zoo_cache, str(SUITES / "test_inference.py"), "--hfm-models=bert",
                                 "-k", "batch_equivalence", plant=BROKEN_MASK)
    assert outcomes(records) == {"batch_equivalence[bert]": "failed"}
    assert "outside tolerance" in records[0]["message"]
    # the record says which row differs and by how much (the report shows it), the assertion first
    m = records[0]["measures"]
    assert m["failed_row"] in (0, 1) and m["tol_fraction"] > 1 and m["max_abs_err"] > 0
    # the assertion opens the message (ToleranceExceeded is the AssertionError that carries the measured error)
    assert records[0]["message"].startswith(f"hfmatrix.compare.ToleranceExceeded: batch row {m['failed_row']} vs its single run")


LAST_TOKEN_CHANGED = """
import hfmatrix.plugin as plugin
_load = plugin.load_session
def load_session(*a, **k):
    session = _load(*a, **k)
    generate = session.generate
    def changed(inputs, n):
        ids = generate(inputs, n).copy()
        ids[..., -1] = (ids[..., -1] + 1) % 64   # one wrong token, at the end
        return ids
    session.generate = changed
    return session
plugin.load_session = load_session
"""


def test_changed_token_fails_greedy_and_says_where(pytester, zoo_cache):
    result, records = run_suites(pytester, zoo_cache, str(SUITES / "test_generate.py"), "--hfm-models=gpt2",
                                 plant=LAST_TOKEN_CHANGED)
    assert outcomes(records) == {"generate_greedy[gpt2]": "failed"}
    m = records[0]["measures"]
    expected, actual = m["expected_ids"], m["actual_ids"]
    assert m["first_diff"] == [0, len(expected[0]) - 1] and expected[0][:-1] == actual[0][:-1]
    assert records[0]["message"].startswith(f"hfmatrix.compare.TokensDiffer: greedy ids differ first at (row, position) {m['first_diff']}")


def test_altered_weights_fail_load(pytester, zoo_cache, tmp_path):
    import shutil

    from hfmatrix.zoo import load_specs, materialize
    spec = load_specs()["bert"]
    cache = tmp_path / "cache"
    folder = materialize(spec, cache_dir=cache / "zoo")
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-16:-8] = bytes(8)  # zero a few weights past the header; file size and format stay valid
    weights.write_bytes(bytes(data))
    result, records = run_suites(pytester, cache, str(SUITES / "test_load.py"), "--hfm-models=bert",
                                 "-k", "integrity or weights_match")
    got = outcomes(records)
    assert got == {"artifact_integrity[bert]": "failed", "weights_match_build[bert]": "failed"}, got
    assert "sha256 mismatch" in next(r for r in records if r["check"] == "artifact_integrity")["message"]
    shutil.rmtree(cache)


def test_perturbed_outputs_fail_parity(pytester, zoo_cache):
    """Outputs scaled by (1 + 1e-3) fail parity; the unperturbed run passes (test_clean_... above)."""
    result, records = run_suites(pytester, zoo_cache, str(SUITES / "test_parity.py"), "--hfm-models=bert",
                                 plant=PERTURBED)
    got = outcomes(records)
    assert got == {"parity[bert]": "failed", "parity_padded[bert]": "failed"}, got
    rec = next(r for r in records if r["check"] == "parity")
    assert 1e-5 < rec["measures"]["max_rel_err"] < 2e-3  # measured error is recorded on failure too
    assert rec["measures"]["tol_fraction"] > 1           # over its tolerance, as the report's cell shows
    assert result.ret == 1


TRUNCATED = _outputs_planted("v[..., :-1]")  # last feature dropped

# hidden states drowned in noise of their own scale: the embedding no longer means anything
NOISY = _outputs_planted("v + rng.standard_normal(v.shape).astype(v.dtype) * float(np.abs(v).mean())",
                         prelude="import numpy as np\nrng = np.random.default_rng(0)")


def test_truncated_outputs_fail_output_shapes(pytester, zoo_cache):
    result, records = run_suites(pytester, zoo_cache, str(SUITES / "test_inference.py"), "--hfm-models=bert",
                                 "-k", "output_shapes", plant=TRUNCATED)
    assert outcomes(records) == {"output_shapes[bert]": "failed"}
    assert result.ret == 1


def test_golden_embeddings_pass_clean_and_fail_on_noise(pytester, zoo_cache):
    """The real-weights MiniLM: the published cosines hold, and fail once the outputs are noise."""
    result, records = run_suites(pytester, zoo_cache, str(SUITES / "test_golden.py"), "--hfm-models=minilm",
                                 "-k", "golden_embeddings")
    assert outcomes(records) == {"golden_embeddings[minilm]": "passed"}, result.stdout.str()[-2000:]
    result, records = run_suites(pytester, zoo_cache, str(SUITES / "test_golden.py"), "--hfm-models=minilm",
                                 "-k", "golden_embeddings", plant=NOISY)
    assert outcomes(records) == {"golden_embeddings[minilm]": "failed"}
    assert result.ret == 1


SCALED = _outputs_planted("v * 1.05")


def test_golden_norm_is_checked_before_normalization(pytester, zoo_cache):
    """Hidden states 5% too large keep every cosine and the normalised norm: only the pooled norm sees them."""
    result, records = run_suites(pytester, zoo_cache, str(SUITES / "test_golden.py"), "--hfm-models=minilm",
                                 "-k", "golden_embeddings", plant=SCALED)
    assert outcomes(records) == {"golden_embeddings[minilm]": "failed"}
    assert "mean-pooled embedding norm" in records[0]["message"]


def test_workflows_pass_clean_and_fail_on_noise(pytester, zoo_cache):
    """All three workflows (whisper → bert-cls, MiniLM search → bert-cls, CLIP towers vs full logits) pass
    clean and fail once the backend's outputs are drowned in noise."""
    args = (str(SUITES / "test_workflows.py"), "--hfm-models=minilm,whisper,clip")
    result, records = run_suites(pytester, zoo_cache, *args)
    assert sorted(outcomes(records).values()) == ["passed"] * 3, result.stdout.str()[-2000:]
    result, records = run_suites(pytester, zoo_cache, *args, plant=NOISY)
    assert sorted(outcomes(records).values()) == ["failed"] * 3, outcomes(records)
    assert result.ret == 1


# the feature-extraction pipeline's output scaled by 1.001: no longer what the model computes
SKEWED_PIPELINE = """
from transformers.pipelines.feature_extraction import FeatureExtractionPipeline
_post = FeatureExtractionPipeline.postprocess
def postprocess(self, *a, **k):
    out = _post(self, *a, **k)
    import numpy as np
    return (np.asarray(out) * 1.001).tolist()
FeatureExtractionPipeline.postprocess = postprocess
"""


def test_pipeline_passes_clean_and_fails_when_it_disagrees_with_the_model(pytester, zoo_cache):
    args = (str(SUITES / "test_pipeline.py"), "--hfm-models=bert", "-k", "not semantic_search")
    result, records = run_suites(pytester, zoo_cache, *args)
    assert outcomes(records) == {"pipeline[bert]": "passed"}, result.stdout.str()[-2000:]
    result, records = run_suites(pytester, zoo_cache, *args, plant=SKEWED_PIPELINE)
    assert outcomes(records) == {"pipeline[bert]": "failed"}
    assert "outside tolerance" in records[0]["message"]
