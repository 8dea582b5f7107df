"""Checks only an accelerator can fail: memory returns after release, peak memory, OOM handling,
and a model split across cpu and the accelerator. Collected only for accelerator devices; on a
machine without one every case skips hardware-absent (the backend's availability check)."""
from __future__ import annotations

import gc

import numpy as np
import pytest

from hfmatrix.backends.torch_backend import device_op
from hfmatrix.compare import compare, tolerance
from hfmatrix.zoo.inputs import example

ACCELERATORS = ("cuda", "rocm", "mps")
pytestmark = [pytest.mark.hfm_backends("torch"), pytest.mark.hfm_devices(*ACCELERATORS)]


def test_device_memory_released(hfm_case, hfm_model_dir, hfm_measure):
    from hfmatrix.plugin import load_session
    dev = hfm_case.target.device
    gc.collect()
    device_op(dev, "empty_cache")
    start = device_op(dev, "memory").get("allocated", 0)
    session = load_session(hfm_case, hfm_model_dir, fresh=True)
    session.run(example(hfm_case.spec, hfm_model_dir))
    loaded = device_op(dev, "memory").get("allocated", 0)
    session.close()
    del session
    gc.collect()
    device_op(dev, "empty_cache")
    end = device_op(dev, "memory").get("allocated", 0)
    hfm_measure(start_bytes=start, loaded_bytes=loaded, end_bytes=end)
    assert loaded > start, "the model allocated no device memory: it did not run on the device"
    assert end == start, f"device memory not released: {end - start} bytes still allocated after close()"


def test_peak_memory(hfm_case, hfm_model_dir, hfm_backend_session, hfm_measure):
    dev = hfm_case.target.device
    device_op(dev, "reset_peak")
    hfm_backend_session.run(example(hfm_case.spec, hfm_model_dir))
    mem = device_op(dev, "memory")
    if "max_allocated" not in mem:
        pytest.skip(f"[unsupported-by-backend] {dev} exposes no peak-memory counter")
    total = hfm_backend_session.evidence().get("total_memory")
    hfm_measure(peak_bytes=mem.get("max_allocated"), total_bytes=total)
    assert mem.get("max_allocated", 0) > 0
    assert total is None or mem["max_allocated"] < total


def test_oom_is_handled(hfm_case, hfm_model_dir, hfm_backend_session, hfm_measure):
    """An allocation beyond free memory raises OutOfMemoryError; the device is usable right after."""
    import torch
    if hfm_case.target.device == "mps":
        pytest.skip("[unsupported-by-backend] MPS has no OutOfMemoryError contract")
    free, total = torch.cuda.mem_get_info()
    with pytest.raises(torch.cuda.OutOfMemoryError, match="out of memory"):
        torch.empty(int(free) * 2, dtype=torch.uint8, device="cuda")
    gc.collect()
    torch.cuda.empty_cache()
    out = hfm_backend_session.run(example(hfm_case.spec, hfm_model_dir))  # the next work runs normally
    hfm_measure(free_bytes=int(free), total_bytes=int(total))
    assert all(np.isfinite(v).all() for v in out.values() if v.dtype.kind == "f")


def test_cross_device_split(hfm_case, hfm_model_dir, hfm_backend_session, hfm_reference_session, hfm_measure):
    """Input embeddings on cpu, the rest of the model on the accelerator = the CPU reference."""
    import torch
    inputs = example(hfm_case.spec, hfm_model_dir)
    model = hfm_backend_session.model
    if "input_ids" not in inputs or not hasattr(model, "get_input_embeddings"):
        pytest.skip(f"[unsupported-by-backend] {hfm_case.spec.id} has no input-embedding split point")
    emb = model.get_input_embeddings()
    cpu_emb = type(emb)(emb.num_embeddings, emb.embedding_dim).to(torch.float32)
    cpu_emb.load_state_dict({k: v.float().cpu() for k, v in emb.state_dict().items()})
    with torch.inference_mode():
        embeds = cpu_emb(torch.from_numpy(inputs["input_ids"]))  # the cpu part
    rest = {k: v for k, v in inputs.items() if k != "input_ids"}
    rest_t = {k: torch.from_numpy(v).to(next(model.parameters()).device) for k, v in rest.items()}
    dtype = next(model.parameters()).dtype
    with torch.inference_mode():
        out = model(inputs_embeds=embeds.to(next(model.parameters()).device, dtype), **rest_t)
    from hfmatrix.backends.torch_backend import outputs_to_numpy
    actual = outputs_to_numpy(out)
    reference = hfm_reference_session.run(inputs)
    tol = tolerance(hfm_case.spec.id, hfm_case.target.backend, hfm_case.target.device, hfm_case.target.effective)
    result = compare(actual, reference, tol, hfm_case.spec.outputs)
    hfm_measure(**result.measures(), tolerance=tol.as_dict())
    result.require(tol)
