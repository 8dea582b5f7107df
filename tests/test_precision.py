"""Effective precision (hfmatrix/precision.py) and strict known bugs (raises + measured range), through the plugin."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import read_records
from test_plugin import ZOO  # models alpha, beta, gamma; these tests select alpha
from hfmatrix import precision
from hfmatrix.backends.base import Target
from hfmatrix.compare import Tolerance, ToleranceExceeded, compare, exception_types


def test_names_pair_inference_and_kv_cache():
    assert precision.name("f32") == "fp32" and precision.name("bf16", "bf16") == "bf16"
    assert precision.name("f32", "f16") == "fp32_kvfp16" and precision.name("bf16", "f16") == "bf16_kvfp16"
    assert precision.of_parameters({"float32": 10}) == "fp32"
    assert precision.of_parameters({"float16": 900, "float32": 100}) == "fp16"  # T5's wo kept in fp32 under fp16
    assert precision.of_parameters({}) == "none"
    with pytest.raises(KeyError):
        precision.name("f8e4m3")  # an unknown dtype is not guessed


def test_fold_drops_only_identical_computations():
    auto = Target("openvino", "cpu", "auto", "bf16")
    bf16 = Target("openvino", "cpu", "bf16", "bf16")
    forced = Target("openvino", "cpu", "fp32_kvfp16", "fp32_kvfp16")
    absent = Target("openvino", "cpu", "bf16")  # unresolved (hardware-absent): kept, it skips with its reason
    kept, folded = precision.fold([auto, bf16, forced, absent])
    assert kept == [auto, forced, absent] and folded == {"bf16": "auto"}
    kept, folded = precision.fold([forced], done=[Target("openvino", "cpu", "auto", "fp32_kvfp16")])
    assert kept == [] and folded == {"fp32_kvfp16": "auto"}


class _Reads:
    def __init__(self, value):
        self.value = value

    def effective_precision(self):
        return self.value


def test_read_back_mismatch_fails_the_cell():
    target = Target("openvino", "cpu", "auto", "fp32_kvfp16")
    assert precision.check_read_back(target, _Reads("fp32_kvfp16")) == "fp32_kvfp16"
    with pytest.raises(RuntimeError, match="reads back effective precision 'bf16_kvfp16'"):
        precision.check_read_back(target, _Reads("bf16_kvfp16"))  # planted: it computed something else


def test_scale_term_bounds_by_output_magnitude_and_tolerance_exceeded_carries_the_error():
    ref = {"y": np.array([10.0, 0.01, -10.0])}
    tol = Tolerance(1e-5, 0.0, "test", "test", scale=0.01)  # 0.1 allowed everywhere (1% of max |ref| 10)
    assert compare({"y": ref["y"] + 0.09}, ref, tol).ok
    result = compare({"y": ref["y"] + np.array([0, 0.2, 0])}, ref, tol)
    assert not result.ok
    with pytest.raises(ToleranceExceeded) as info:
        result.require(tol)
    assert info.value.max_abs == pytest.approx(0.2) and info.value.max_rel == pytest.approx(0.02)
    assert isinstance(info.value, AssertionError)
    assert exception_types("ToleranceExceeded") == (ToleranceExceeded,)
    with pytest.raises(ValueError, match="not an exception class"):
        exception_types("json.dumps")



CHECKS = """
from hfmatrix.compare import ToleranceExceeded

def test_in_range(hfm_case):
    raise ToleranceExceeded("off by 0.3", 3.0, 0.3)

def test_out_of_range(hfm_case):
    raise ToleranceExceeded("off by 0.9", 9.0, 0.9)

def test_other_type(hfm_case):
    raise ValueError("a crash in the same cell")

def test_fixed(hfm_case):
    pass
"""

BUGS = """
[[known_bug]]
check = ["in_range", "out_of_range", "other_type", "fixed"]
model = "alpha"
raises = "ToleranceExceeded"
max_rel = [0.2, 0.5]
reason = "alpha loses 0.3 of max |ref|"
"""


def test_known_bug_is_strict_about_type_and_measured_range(pytester, monkeypatch):
    pytester.makefile(".toml", zoo=ZOO)
    pytester.makepyfile(test_checks=CHECKS)
    kf = pytester.path / "kf.toml"
    kf.write_text(BUGS)
    monkeypatch.setenv("HFMATRIX_KNOWN_FAILURES", str(kf))
    res = pytester.path / "results"
    result = pytester.runpytest_subprocess(f"--hfm-zoo-file={pytester.path / 'zoo.toml'}", f"--hfm-results-dir={res}",
                                           "-p", "no:cacheprovider", "--hfm-models=alpha")
    by = {r["check"]: r for r in read_records(res / "torch")}
    assert by["in_range"]["outcome"] == "xfailed", by["in_range"]
    assert by["in_range"]["effective_precision"] == by["in_range"]["precision"] == "fp32"
    assert by["out_of_range"]["outcome"] == "failed" and "max_rel in [0.2, 0.5]" in by["out_of_range"]["message"]
    assert by["other_type"]["outcome"] == "failed" and "ValueError" in by["other_type"]["message"]
    assert by["fixed"]["outcome"] == "xpassed"
    assert result.ret == 1


def test_precisions_done_folds_the_same_computation(pytester):
    pytester.makefile(".toml", zoo=ZOO)
    pytester.makepyfile(test_checks="def test_any(hfm_case):\n    pass\n")
    res = pytester.path / "results"
    pytester.runpytest_subprocess(f"--hfm-zoo-file={pytester.path / 'zoo.toml'}", f"--hfm-results-dir={res}",
                                  "-p", "no:cacheprovider", "--hfm-precision=fp32,bf16", "--hfm-precisions-done=fp32",
                                  "--hfm-models=alpha")
    records = read_records(res / "torch")
    assert [(r["precision"], r["outcome"]) for r in records] == [("bf16", "passed")]
    meta = json.loads((res / "torch" / "meta-all.json").read_text())
    assert meta["folded_precisions"] == {"alpha": {"fp32": "fp32"}}


def test_non_finite_reference_fails_with_a_clear_message():
    tol = Tolerance(1e-5, 1e-5, "test", "test")
    result = compare({"y": np.array([1.0, 2.0, 123.0])}, {"y": np.array([1.0, np.nan, np.inf])}, tol)
    assert not result.ok and "reference 'y' has 2 non-finite values" in result.message(tol)


def test_requested_key_narrows_a_known_bug_to_one_request(tmp_path):
    from hfmatrix.compare import known_entry
    kf = tmp_path / "kf.toml"
    kf.write_text('[[known_bug]]\ncheck = "parity"\nmodel = "t5"\nprecision = "fp32_kvfp16"\nrequested = "fp32_kvfp16"\n'
                  'raises = "ToleranceExceeded"\nreason = "only the forced config"\n')
    assert known_entry("parity", "t5", "openvino", "cpu", "fp32_kvfp16", kf, requested="fp32_kvfp16")
    assert known_entry("parity", "t5", "openvino", "cpu", "fp32_kvfp16", kf, requested="auto") is None
    assert known_entry("parity", "t5", "openvino", "cpu", "fp32_kvfp16", kf) is None
