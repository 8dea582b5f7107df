"""Safe loading: pickle-only folders are refused unless opted in, opted-in pickles go through
weights_only, remote code stays off unless trusted per model. The payloads are real: each test
first shows (in tmp_path) that an unsafe load WOULD run them, so "not created" means something."""
from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from hfmatrix import safeload  # noqa: E402
from hfmatrix.backends.base import Target  # noqa: E402
from hfmatrix.backends.torch_backend import TorchBackend  # noqa: E402
from hfmatrix.zoo import example, load_specs, materialize  # noqa: E402

TARGET = Target("torch", "cpu", "fp32")


class CreatesFile:
    """Unpickling this calls open(path, "w"): a file appears if the unpickler runs arbitrary globals."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture(scope="module")
def bert():
    spec = load_specs()["bert"]
    return spec, materialize(spec)


def _folder_without_weights(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        if f.is_file() and not f.name.endswith(".safetensors") and f.name != "hfmatrix-manifest.json":
            shutil.copy(f, dst / f.name)
    return dst


@pytest.fixture
def pickle_folder(bert, tmp_path):
    """The zoo BERT with its real weights as pytorch_model.bin only."""
    spec, src = bert
    folder = _folder_without_weights(src, tmp_path / "pickle-bert")
    session = TorchBackend().load(src, spec, TARGET)
    torch.save(session.model.state_dict(), folder / "pytorch_model.bin")
    session.close()
    return folder


@pytest.fixture
def evil_folder(bert, tmp_path):
    """The zoo BERT's weights plus an object whose unpickling creates tmp_path/pwned."""
    spec, src = bert
    folder = _folder_without_weights(src, tmp_path / "evil-bert")
    session = TorchBackend().load(src, spec, TARGET)
    state = dict(session.model.state_dict())
    session.close()
    marker = tmp_path / "pwned"
    state["payload"] = CreatesFile(marker)
    torch.save(state, folder / "pytorch_model.bin")
    return folder, marker


def test_pickle_only_folder_is_refused(bert, pickle_folder):
    spec, _ = bert
    with pytest.raises(safeload.UnsafeWeights, match=r"only pickle-format weights \(pytorch_model\.bin\).*--hfm-allow-pickle"):
        TorchBackend().load(pickle_folder, spec, TARGET)


def test_pickle_opt_in_loads_the_same_weights(bert, pickle_folder):
    spec, src = bert
    inputs = example(spec, src)
    reference = TorchBackend().load(src, spec, TARGET)
    opted_in = TorchBackend().load(pickle_folder, spec, TARGET, allow_pickle=True)
    try:
        ref_state, got_state = reference.model.state_dict(), opted_in.model.state_dict()
        a, b = reference.run(inputs), opted_in.run(inputs)
    finally:
        reference.close()
        opted_in.close()
    assert sorted(ref_state) == sorted(got_state)
    differing = [k for k in ref_state if not torch.equal(ref_state[k], got_state[k])]
    assert not differing, f"pickle-loaded tensors differ from the safetensors ones: {differing[:3]}"
    # Outputs agree to an ulp, not bit for bit: safetensors mmaps tensors at 8-byte offsets, torch.load
    # gives 64-byte aligned buffers, and oneDNN picks a different reduction path (seen: 3e-8 on pooler_output).
    for key in a:
        np.testing.assert_allclose(b[key], a[key], rtol=1e-6, atol=1e-7, err_msg=key)


def test_the_pickle_payload_is_real(evil_folder):
    """Control: torch.load(weights_only=False) runs the payload, so the checks below are not vacuous."""
    folder, marker = evil_folder
    torch.load(folder / "pytorch_model.bin", weights_only=False)
    assert marker.exists()


def test_malicious_pickle_refused_without_opt_in(bert, evil_folder):
    spec, _ = bert
    folder, marker = evil_folder
    with pytest.raises(safeload.UnsafeWeights, match="--hfm-allow-pickle"):
        TorchBackend().load(folder, spec, TARGET)
    assert not marker.exists()


def test_malicious_pickle_with_opt_in_stopped_by_weights_only(bert, evil_folder):
    spec, _ = bert
    folder, marker = evil_folder
    with pytest.raises(pickle.UnpicklingError, match=r"(?s)Weights only load failed.*Unsupported global: GLOBAL io\.open"):
        TorchBackend().load(folder, spec, TARGET, allow_pickle=True)
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        safeload.load_pickle_weights(folder / "pytorch_model.bin")
    assert not marker.exists()


def test_pretrained_kwargs_keep_the_policy(bert, pickle_folder):
    _, src = bert
    assert safeload.pretrained_kwargs(src) == {"use_safetensors": True, "weights_only": True, "trust_remote_code": False}
    with pytest.raises(safeload.UnsafeWeights):
        safeload.pretrained_kwargs(pickle_folder)
    assert safeload.pretrained_kwargs(pickle_folder, allow_pickle=True)["weights_only"] is True


# ----------------------------------------------------------------------------- remote code
REMOTE_CODE = """
from pathlib import Path
Path({marker!r}).write_text("module imported")
from transformers import BertConfig, BertModel

class EvilConfig(BertConfig):
    model_type = "hfm-evil"

class EvilModel(BertModel):
    config_class = EvilConfig
"""


@pytest.fixture
def remote_code_folder(bert, tmp_path):
    _, src = bert
    folder = tmp_path / "remote-code"
    shutil.copytree(src, folder)
    marker = tmp_path / "remote-code-ran"
    (folder / "evil.py").write_text(REMOTE_CODE.format(marker=str(marker)))
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="hfm-evil", auto_map={"AutoConfig": "evil.EvilConfig", "AutoModel": "evil.EvilModel"})
    (folder / "config.json").write_text(json.dumps(config))
    return folder, marker


def test_the_remote_code_is_real(remote_code_folder, tmp_path):
    """Control (in a child with its own modules cache): trusting the folder imports evil.py."""
    folder, marker = remote_code_folder
    code = textwrap.dedent(f"""
        from transformers import AutoConfig
        AutoConfig.from_pretrained({str(folder)!r}, trust_remote_code=True)
    """)
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, timeout=300)
    assert marker.read_text() == "module imported"


def test_remote_code_refused_by_default(bert, remote_code_folder):
    spec, _ = bert
    folder, marker = remote_code_folder
    with pytest.raises(safeload.RemoteCodeRefused, match=r"auto_map AutoModel -> evil\.EvilModel.*--hfm-trust-remote-code=bert"):
        safeload.check_remote_code(folder, trust=False, model_id="bert")
    # the backend's own load path (transformers with trust_remote_code=False) does not import it either
    with pytest.raises(ValueError, match="hfm-evil|trust_remote_code"):
        TorchBackend().load(folder, spec, TARGET)
    assert not marker.exists()


def test_trust_is_per_model(monkeypatch):
    monkeypatch.setenv(safeload.TRUST_ENV, "org/b")
    assert safeload.trusted_models("a, c") == {"a", "c", "org/b"}
    assert safeload.trusted_models("*") == {"org/b"}, "a wildcard must not trust every model"
    monkeypatch.delenv(safeload.TRUST_ENV)
    assert safeload.trusted_models(None) == set()


def _load_check(records: list[dict]) -> dict:
    found = [r for r in records if r["check"] == "load_session"]
    assert len(found) == 1, f"expected one load_session record, got {[r['nodeid'] for r in records]}"
    return found[0]


def test_trust_remote_code_is_a_per_model_opt_in_of_the_plugin(pytester, zoo_cache, remote_code_folder, tmp_path):
    """The plugin's --hfm-trust-remote-code: off by default, per model id, and the code really runs
    only when this model's id is named (the folder's id is its name: 'remote-code')."""
    from conftest import SUITES, run_suites

    folder, marker = remote_code_folder
    pytester._monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "modules"))
    pytester._monkeypatch.delenv(safeload.TRUST_ENV, raising=False)
    suite = str(SUITES / "test_load.py")
    args = (suite, "-k", "test_load_session", f"--hfm-models={folder}", "-p", "no:randomly")
    for extra in ((), ("--hfm-trust-remote-code=bert,other/model",)):
        result, records = run_suites(pytester, zoo_cache, *args, *extra)
        rec = _load_check(records)
        assert rec["outcome"] in ("failed", "error"), rec  # refused in the session fixture: an error
        assert "RemoteCodeRefused" in rec["message"] and "--hfm-trust-remote-code=remote-code" in rec["message"], rec["message"]
        assert not marker.exists(), f"the folder's code ran with {extra or 'no opt-in'}"
    result, records = run_suites(pytester, zoo_cache, *args, "--hfm-trust-remote-code=remote-code")
    rec = _load_check(records)
    assert rec["outcome"] == "passed", rec["message"]
    assert marker.read_text() == "module imported", "trusted: the folder's own module is what loaded"
