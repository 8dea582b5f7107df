"""Checks only an accelerator can fail: memory returns after release, peak memory, OOM handling,
and a model split across cpu and the accelerator. Collected only for accelerator devices; on a
machine without one every case skips hardware-absent (the backend's availability check)."""
from __future__ import annotations

import gc

import numpy as np
import pytest

from hfmatrix.backends import DEVICE_MEMORY, device_ops
from hfmatrix.compare import compare, tolerance
from hfmatrix.zoo.inputs import example

# targets whose backend drives the device's own memory (torch on an accelerator): on a machine without one
# every case skips hardware-absent through the backend's availability check
pytestmark = pytest.mark.hfm_requires(DEVICE_MEMORY)


def test_device_memory_released(hfm_case, hfm_model_dir, hfm_measure):
    from hfmatrix.plugin import load_session
    dev = device_ops(hfm_case.target.backend, hfm_case.target.device)
    gc.collect()
    dev.empty_cache()
    start = dev.memory().get("allocated", 0)
    session = load_session(hfm_case, hfm_model_dir, fresh=True)
    session.run(example(hfm_case.spec, hfm_model_dir))
    loaded = dev.memory().get("allocated", 0)
    session.close()
    del session
    gc.collect()
    dev.empty_cache()
    end = dev.memory().get("allocated", 0)
    hfm_measure(start_bytes=start, loaded_bytes=loaded, end_bytes=end)
    assert loaded > start, "the model allocated no device memory: it did not run on the device"
    assert end == start, f"device memory not released: {end - start} bytes still allocated after close()"


def test_peak_memory(hfm_case, hfm_model_dir, hfm_backend_session, hfm_measure):
    dev = hfm_backend_session.device_ops
    dev.reset_peak()
    hfm_backend_session.run(example(hfm_case.spec, hfm_model_dir))
    mem = dev.memory()
    if "max_allocated" not in mem:
        pytest.skip(f"[unsupported-by-backend] {dev.name} exposes no peak-memory counter")
    total = hfm_backend_session.evidence().get("total_memory")
    hfm_measure(peak_bytes=mem.get("max_allocated"), total_bytes=total)
    assert mem.get("max_allocated", 0) > 0
    assert total is None or mem["max_allocated"] < total


def test_oom_is_handled(hfm_case, hfm_model_dir, hfm_backend_session, hfm_measure):
    """An allocation beyond free memory raises the device's out-of-memory error; the device is usable right after."""
    dev = hfm_backend_session.device_ops
    if dev.out_of_memory is None:
        pytest.skip(f"[unsupported-by-backend] {dev.name} has no OutOfMemoryError contract")
    free, total = dev.mem_info()
    with pytest.raises(dev.out_of_memory, match="out of memory"):
        dev.allocate(free * 2)
    gc.collect()
    dev.empty_cache()
    out = hfm_backend_session.run(example(hfm_case.spec, hfm_model_dir))  # the next work runs normally
    hfm_measure(free_bytes=free, total_bytes=total)
    assert all(np.isfinite(v).all() for v in out.values() if v.dtype.kind == "f")


def test_cross_device_split(hfm_case, hfm_model_dir, hfm_backend_session, hfm_reference_session, hfm_measure):
    """Input embeddings on cpu, the rest of the model on the accelerator = the CPU reference."""
    inputs = example(hfm_case.spec, hfm_model_dir)
    actual = hfm_backend_session.run_split(inputs)
    reference = hfm_reference_session.run(inputs)
    tol = tolerance(hfm_case.spec.id, hfm_case.target.backend, hfm_case.target.device, hfm_case.target.effective)
    result = compare(actual, reference, tol, hfm_case.spec.outputs)
    hfm_measure(**result.measures(), tolerance=tol.as_dict())
    result.require(tol)
