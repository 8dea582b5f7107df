"""Placement is asserted (hfmatrix.placement, test_load_session) and a present accelerator torch cannot use
fails: self-tests through the suite path with the defect planted in the real model / at the hardware probe."""
from __future__ import annotations

import pytest

from conftest import SUITES, run_suites
from hfmatrix import placement

LOAD = str(SUITES / "test_load.py")


def _load_record(records: list[dict], model: str = "bert") -> dict:
    return next(r for r in records if r["check"] == "load_session" and r["model"] == model)


def _moved(statement: str) -> str:
    """A plant: the loaded torch model's pooler layer moved by ``statement`` (Module.to), for real."""
    return f"""
import torch
import hfmatrix.backends.torch_backend as tb
_load = tb.TorchBackend.load
def load(self, *a, **k):
    session = _load(self, *a, **k)
    session.model.pooler.dense.{statement}
    return session
tb.TorchBackend.load = load
"""


ON_META = _moved("to('meta')")  # one layer not on the target device
IN_FP16 = _moved("to(torch.float16)")  # one layer not in the target dtype


def test_clean_placement_passes_and_is_recorded(pytester, zoo_cache):
    result, records = run_suites(pytester, zoo_cache, LOAD, "--hfm-models=bert", "-k", "load_session")
    rec = _load_record(records)
    assert rec["outcome"] == "passed", result.stdout.str()[-2000:]
    assert rec["measures"]["placement_share"] == 1
    assert rec["evidence"]["placement"]["nodes_by_device"] == {"cpu": rec["evidence"]["placement"]["nodes_by_device"]["cpu"]}
    assert rec["evidence"]["dtype_placement"]["share"] == 1


@pytest.mark.parametrize("plant,where,dtype", [(ON_META, "meta", False), (IN_FP16, "float16", True)],
                         ids=["device", "dtype"])
def test_partial_placement_fails_load_session(pytester, zoo_cache, plant, where, dtype):
    result, records = run_suites(pytester, zoo_cache, LOAD, "--hfm-models=bert", "-k", "load_session", plant=plant)
    rec = _load_record(records)
    assert rec["outcome"] == "failed", result.stdout.str()[-2000:]
    assert "PlacementIncomplete" in rec["message"] and where in rec["message"], rec["message"]
    key = "dtype_placement" if dtype else "placement"
    assert rec["evidence"][key]["elsewhere"] == {where: {"pooler.dense.bias": 1, "pooler.dense.weight": 1}}
    assert 0 < rec["evidence"][key]["share"] < 1
    assert result.ret == 1


@pytest.mark.parametrize("nodes,outcome", [(["pooler.dense.bias", "pooler.dense.weight"], "xfailed"),
                                                 (["pooler.dense.weight"], "failed")])
def test_partial_placement_is_a_known_bug_only_naming_its_nodes(pytester, zoo_cache, tmp_path, monkeypatch, nodes,
                                                                outcome):
    table = tmp_path / "known.toml"
    table.write_text(f"""[[known_bug]]
check = "load_session"
model = "bert"
backend = "torch"
raises = "PlacementIncomplete"
nodes = {nodes!r}
reason = "planted: the pooler layer is left on the meta device"
""".replace("'", '"'))
    monkeypatch.setenv("HFMATRIX_KNOWN_FAILURES", str(table))
    result, records = run_suites(pytester, zoo_cache, LOAD, "--hfm-models=bert", "-k", "load_session", plant=ON_META)
    assert _load_record(records)["outcome"] == outcome, result.stdout.str()[-2000:]


UNUSABLE_CUDA = """
import hwprobe.presence as presence
presence.PRESENT["cuda"] = lambda: (True, "")  # the probe finds an NVIDIA GPU
import torch
{torch}
"""
BUILD_MISMATCH = UNUSABLE_CUDA.format(torch="")  # this env's torch is the CPU build: torch.version.cuda is None
DRIVER_MISMATCH = UNUSABLE_CUDA.format(torch="torch.version.cuda = '12.8'\ntorch.cuda.is_available = lambda: False")


@pytest.mark.parametrize("plant,why", [(BUILD_MISMATCH, "built without CUDA"), (DRIVER_MISMATCH, "is_available")],
                         ids=["build", "driver"])
def test_present_accelerator_torch_cannot_use_fails_not_skips(pytester, zoo_cache, plant, why):
    result, records = run_suites(pytester, zoo_cache, LOAD, "--hfm-models=bert", "-k", "load_session",
                                 "--hfm-device=cuda", "--hfm-precision=fp32", plant=plant)
    rec = _load_record(records)
    assert rec["outcome"] in ("failed", "error") and not rec.get("skip_kind"), rec
    assert "DeviceUnusable" in rec["message"] and why in rec["message"], rec["message"]
    assert result.ret == 1


def test_absent_accelerator_stays_hardware_absent(pytester, zoo_cache):
    plant = 'import hwprobe.presence as p\np.PRESENT["cuda"] = lambda: (False, "no NVIDIA GPU (planted)")\n'
    _, records = run_suites(pytester, zoo_cache, LOAD, "--hfm-models=bert", "-k", "load_session",
                            "--hfm-device=cuda", "--hfm-precision=fp32", plant=plant)
    rec = _load_record(records)
    assert rec["outcome"] == "skipped" and rec["skip_kind"] == "hardware-absent", rec


def test_placement_merge_and_require():
    a = placement.build("EP", {"EP": {"MatMul": 3}, "CPU": {"Cast": 1}}, not_counted={"memcpy": {"MemcpyToHost": 2}})
    b = placement.build("EP", {"EP": {"Add": 4}}, software="simulator")
    merged = placement.merge({"encoder": a, "decoder": b})
    assert merged["nodes_by_device"] == {"EP": 7, "CPU": 1} and merged["share"] == pytest.approx(7 / 8, abs=1e-6)
    assert merged["not_counted"] == {"memcpy": {"MemcpyToHost": 2}} and merged["software"] == "simulator"
    with pytest.raises(placement.PlacementIncomplete) as exc:
        placement.require({"placement": merged})
    assert exc.value.nodes == ["Cast"]
    placement.require({"placement": b})
    with pytest.raises(placement.PlacementIncomplete, match="no placement"):
        placement.require({"torch_device": "cpu"})


def test_report_flags_a_software_stand_in_named_by_the_placement():
    from hfmatrix.report.merge import software_device

    qnn = {"placement": {"requested": "QNNExecutionProvider", "share": 1.0,
                         "software": "x86_64 host: libQnnHtp.so runs the HTP as a simulator, not on Qualcomm hardware"}}
    assert software_device(qnn)
    assert not software_device({"placement": {"requested": "CPUExecutionProvider", "share": 1.0, "software": None}})
