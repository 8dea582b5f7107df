"""The bad-input catalogue is sound and its check bites: a backend that silently accepts garbage
(a planted clamp of out-of-range token ids on the real model) fails, the real torch backend passes;
corrupting a copy never touches the model cache."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import SUITES, run_suites
from hfmatrix import negative
from hfmatrix.zoo import load_specs

torch = pytest.importorskip("torch")

CLAMPED_IDS = """
import hfmatrix.backends.torch_backend as tb
_load = tb.TorchBackend.load
def load(self, *a, **k):
    session = _load(self, *a, **k)
    emb = session.model.get_input_embeddings()
    last = emb.num_embeddings - 1
    emb.register_forward_pre_hook(lambda module, args: (args[0].clamp(0, last),))  # garbage in, numbers out
    return session
tb.TorchBackend.load = load
"""


def test_catalogue_is_complete_for_torch():
    cases = negative.load_catalogue()
    assert len(cases) >= 30, f"only {len(cases)} cases"
    stages = {c.stage for c in cases.values()}
    assert stages == set(negative.STAGES)
    specs = load_specs()
    missing = []
    for case in cases.values():
        models = [s for s in specs.values() if case.applies(s)]
        assert models, f"{case.id} applies to no zoo model"
        backend = "serve" if case.stage == "request" else "torch"  # bad HTTP requests go to served models only
        missing += [f"{case.id}@{s.id}" for s in models if case.expectation(s.id, backend) is None]
    assert not missing, f"no torch (request stage: serve) expectation for {missing}"


def test_catalogue_rejects_vague_expectations(tmp_path):
    bad = tmp_path / "cases.toml"
    bad.write_text('[[case]]\nid = "x"\nstage = "run"\nmutation = "batch"\ndescription = "d"\n'
                   '[[case.expect]]\nbackend = "torch"\nraises = "Exception"\nmatch = "."\nreason = "r"\n')
    with pytest.raises(ValueError, match="proves nothing"):
        negative.load_catalogue(bad)
    bad.write_text('[[case]]\nid = "x"\nstage = "run"\nmutation = "batch"\ndescription = "d"\n'
                   '[[case.expect]]\nbackend = "torch"\nraises = "IndexError"\nreason = "r"\n')
    with pytest.raises(ValueError, match="needs a message pattern"):
        negative.load_catalogue(bad)
    # a global flag mid-pattern is a re.error on Python 3.11+: it hid under a known bug as the check's failure
    bad.write_text('[[case]]\nid = "x"\nstage = "run"\nmutation = "batch"\ndescription = "d"\n'
                   '[[case.expect]]\nbackend = "torch"\nraises = "IndexError"\nmatch = "a|(?i)b"\nreason = "r"\n')
    with pytest.raises(ValueError, match="not a valid regex"):
        negative.load_catalogue(bad)


def test_judge_is_specific():
    expect = negative.Expectation(reason="r", raises=("IndexError",), match="index out of range")
    assert negative.judge(expect, negative.Outcome(error=IndexError("index out of range in self")))[0]
    assert not negative.judge(expect, negative.Outcome(error=ValueError("index out of range in self")))[0]
    assert not negative.judge(expect, negative.Outcome(error=IndexError("something else")))[0]
    held, why = negative.judge(expect, negative.Outcome(outputs={"logits": np.zeros((1, 3), np.float32)}))
    assert not held and "returned outputs" in why
    runs = negative.Expectation(reason="r", behaviour="runs")
    assert not negative.judge(runs, negative.Outcome(outputs={"logits": np.array([np.nan], np.float32)}))[0]


def test_corrupting_a_copy_leaves_the_cache_intact(tmp_path):
    from hfmatrix.backends.base import Target
    from hfmatrix.backends.torch_backend import TorchBackend
    from hfmatrix.zoo import materialize
    from hfmatrix.zoo.materialize import verify

    spec = load_specs()["bert"]
    model_dir = materialize(spec)
    case = negative.load_catalogue()["weights-truncated"]
    outcome = negative.run_load_case(case, spec, model_dir, tmp_path,
                                     lambda folder: TorchBackend().load(folder, spec, Target("torch")), keep=True)
    assert type(outcome.error).__name__ == "SafetensorError"
    copy = Path(outcome.facts["copy"]) / "model.safetensors"
    try:
        assert "bert" not in str(copy), "the copy's path must not name the model (AutoConfig guesses from paths)"
        assert not copy.is_symlink() and copy.stat().st_size < (Path(model_dir) / "model.safetensors").stat().st_size
        assert (copy.parent / "tokenizer.json").is_file()
    finally:
        shutil.rmtree(copy.parent.parent)
    assert verify(model_dir) == [], "the materialized cache entry changed"


def test_scratch_folders_name_no_model_type(tmp_path, monkeypatch):
    # a random tempfile suffix once read "...t5..." and turned a GPT-2 copy without model_type into T5
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    monkeypatch.setenv("HFMATRIX_NEG_TMP", str(tmp_path / "scratch"))
    folders = []
    for _ in range(50):  # each removed before the next, as run_load_case does: a path is still never reused
        folders.append(negative.neutral_dir(tmp_path))
        folders[-1].rmdir()
    assert len(set(folders)) == 50
    named = [(str(f), k) for f in folders for k in CONFIG_MAPPING_NAMES if k in str(f / "model")]
    assert not named, named[:3]
    monkeypatch.setenv("HFMATRIX_NEG_TMP", str(tmp_path / "t5-scratch"))
    with pytest.raises(RuntimeError, match="contains the model type 't5'"):
        negative.neutral_dir(tmp_path)


def test_silently_accepted_garbage_fails_the_check(pytester, zoo_cache):
    args = (str(SUITES / "test_negative.py"), "--hfm-models=bert", "-k", "ids-out-of-range or ids-negative")
    result, records = run_suites(pytester, zoo_cache, *args)
    assert {r["outcome"] for r in records} == {"passed"} and len(records) == 2, result.stdout.str()[-2000:]
    result, records = run_suites(pytester, zoo_cache, *args, plant=CLAMPED_IDS)
    assert [r["outcome"] for r in records] == ["failed", "failed"], result.stdout.str()[-2000:]
    for r in records:
        assert "expected raises IndexError" in r["message"] and "returned outputs" in r["message"]
        assert r["measures"]["negative_case"] in ("ids-out-of-range", "ids-negative")
        assert r["measures"]["nonfinite"] == {}  # finite numbers for garbage: exactly what the check is for
    assert result.ret == 1
