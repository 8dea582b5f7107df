"""Tolerance power (issue 14, item 7): every tolerances.toml entry catches a 1% error on the real reference outputs
of the models it applies to, or is marked low_power with its reason; a new too-wide entry fails here."""
from __future__ import annotations

import numpy as np
import pytest

from hfmatrix import power
from hfmatrix.compare import TOLERANCES, compare, tolerance


@pytest.fixture(scope="module")
def references(zoo_cache, monkeypatch_module):
    monkeypatch_module.setenv("HFMATRIX_CACHE", str(zoo_cache))
    return power.zoo_references()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_every_entry_catches_1pct_or_is_marked_low_power(references):
    rows = power.audit(references)
    assert {r["model"] for r in rows} == set(references)
    # every target and override took part (an entry no zoo model reaches would be judged on nothing)
    assert {r["entry"] for r in rows} == {e.source for e in power.entries()}
    assert power.problems(rows) == []


def test_the_planted_errors_fail_compare_on_real_outputs(references):
    reference, keys = references["llama"]
    tol = tolerance("llama", "torch", "cpu", "fp32")
    for plant in power.PLANTS:
        assert power.caught(reference, tol, keys, plant, power.REQUIRED)
        assert not power.caught(reference, tol, keys, plant, 0.0)
    # one row means one: the rest of the output is untouched
    planted = power.planted(reference, keys, "row", 1.01)["logits"].reshape(-1, reference["logits"].shape[-1])
    changed = ~np.all(planted == reference["logits"].reshape(planted.shape), axis=1)
    assert changed.sum() == 1
    # bisection agrees with the bound's closed form at the max element: rtol + scale + atol / max |ref|
    top = float(np.abs(reference["logits"]).max())
    assert power.smallest_caught(reference, tol, keys, "whole") == pytest.approx(
        tol.rtol + tol.scale + tol.atol / top, rel=1e-6)
    assert compare(power.planted(reference, keys, "whole", 1.01), reference, tol, keys).ok is False


def _with(extra: str, tmp_path):
    path = tmp_path / "tolerances.toml"
    path.write_text(TOLERANCES.read_text() + "\n" + extra)
    return path


def test_a_new_too_wide_entry_fails_the_audit(references, tmp_path):
    path = _with('[[override]]\nmodel = "bert"\nbackend = "onnxruntime"\nprecision = "fp32"\natol = 5e-2\nrtol = 1e-5\n'
                 'reason = "planted: wide enough to pass a 2% error on bert\'s hidden states (|ref| <= 2.8)"\n', tmp_path)
    found = power.problems(power.audit({"bert": references["bert"]}, path))
    assert len(found) == 1 and found[0].startswith("override model=bert backend=onnxruntime precision=fp32 on bert")


def test_a_low_power_mark_that_no_longer_holds_fails_the_audit(references, tmp_path):
    path = _with('[[override]]\nmodel = "bert"\nbackend = "onnxruntime"\nprecision = "fp32"\natol = 1e-5\nrtol = 1e-5\n'
                 'reason = "planted: tight"\nlow_power = { reason = "planted: a stale mark" }\n', tmp_path)
    found = power.problems(power.audit({"bert": references["bert"]}, path))
    assert len(found) == 1 and "marked low_power but catches 1%" in found[0]


def test_low_power_cells_say_what_they_catch(references):
    reference, keys = references["llama"]
    tol = tolerance("llama", "qnn", "htp", "fp16")
    assert tol.low_power and tol.as_dict()["low_power"] == tol.low_power
    got = power.of(reference, tol, keys)
    assert not got["catches_1pct"] and got["low_power"]
    assert 0.01 < got["smallest_caught"]["whole"] < 0.1  # the noise level it does catch, recorded


def test_row_norm_passes_fp16_rounding_and_fails_a_1pct_scale(references, zoo_cache):
    """The row-norm bound (onnxruntime fp16) holds for real fp16 arithmetic (CPU torch fp16 on the same llama)
    while a whole output or one row scaled by 1.01 fails it, where the elementwise bound alone passes both."""
    from hfmatrix.backends import get
    from hfmatrix.backends.base import Target
    from hfmatrix.compare import Tolerance, row_norm_deviation
    from hfmatrix.zoo import load_specs, materialize
    from hfmatrix.zoo.inputs import example
    reference, keys = references["llama"]
    tol = tolerance("llama", "onnxruntime", "cpu", "fp16")
    assert tol.row_norm and not tol.low_power
    elementwise = Tolerance(tol.atol, tol.rtol, tol.reason, tol.source, tol.scale)
    for plant in power.PLANTS:
        assert power.caught(reference, tol, keys, plant, power.REQUIRED)
        assert not power.caught(reference, elementwise, keys, plant, power.REQUIRED)
    spec = load_specs()["llama"]
    folder = materialize(spec)
    half = get("torch").load(folder, spec, Target("torch", "cpu", "fp16")).run(example(spec, folder))["logits"]
    deviation, _ = row_norm_deviation(half.astype(np.float64), reference["logits"].astype(np.float64))
    assert 0 < deviation < tol.row_norm / 2


def test_a_low_power_cell_is_recorded_and_reported(pytester, zoo_cache, monkeypatch, tmp_path):
    """Through the suite path: a parity cell whose entry is marked low_power records it with the errors it catches,
    and the report lists it (the mark is planted on the cpu entry: the real marked entries need other backends)."""
    from conftest import SUITES, run_suites

    from hfmatrix.report import markdown
    from hfmatrix.report.merge import merge
    table = TOLERANCES.read_text().replace(
        '[target.torch.cpu.fp32]\n', '[target.torch.cpu.fp32]\nlow_power = { models = ["bert"], reason = "planted mark" }\n')
    (tmp_path / "tolerances.toml").write_text(table)
    monkeypatch.setenv("HFMATRIX_TOLERANCES", str(tmp_path / "tolerances.toml"))
    result, records = run_suites(pytester, zoo_cache, str(SUITES / "test_parity.py"), "--hfm-models=bert",
                                 "-k", "not parity_padded")
    assert [r["outcome"] for r in records] == ["passed"], result.stdout.str()[-2000:]
    found = records[0]["measures"]["power"]
    assert found["low_power"] == "planted mark" and found["smallest_caught"]["whole"] < 1e-3
    m = merge(pytester.path / "results")
    assert [(r["model"], r["backend"], r["reason"]) for r in m.low_power] == [("bert", "torch", "planted mark")]
    assert "## Low-power parity cells" in markdown.render(m)
