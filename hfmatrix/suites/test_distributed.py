"""Sharded execution vs the single-process CPU fp32 reference (backends that shard: the SHARDED capability).

Each case runs once per plan (tensor parallel at world size 2/4, expert parallel, disk/CPU offload, a
two-device split; hfmatrix/distributed/plans.py) in processes of its own; every rank's logits and greedy
tokens must match the reference, and the ranks must show they really were sharded (DTensor shards of
the right local shape, offloaded modules). A plan that cannot run here skips with its typed reason.
"""
from __future__ import annotations

import numpy as np
import pytest

from hfmatrix import backends
from hfmatrix.backends import SHARDED
from hfmatrix.compare import compare, tolerance
from hfmatrix.distributed import launch, plans
from hfmatrix.zoo.inputs import example, generation_inputs


def _plans(hfm_case):
    t = hfm_case.target
    for plan in plans.applicable(hfm_case.spec) if SHARDED in backends.capabilities(t.backend, t.device) else []:
        yield pytest.param(plan, id=plan.id)


_JOBS: dict = {}  # (hfm_model_dir, plan, device) -> JobResult or the JobFailed it raised: one run for all checks


@pytest.fixture
def job(hfm_case, plan, hfm_model_dir, hfm_backend_session, hfm_measure) -> launch.JobResult:
    key = (str(hfm_model_dir), plan, hfm_case.target.device)
    if key not in _JOBS:
        n = int(hfm_case.spec.generate.get("max_new_tokens", 5))
        try:
            _JOBS[key] = hfm_backend_session.job(plan, example(hfm_case.spec, hfm_model_dir), generation_inputs(hfm_case.spec, hfm_model_dir), n)
        except launch.JobFailed as exc:
            _JOBS[key] = exc
    result = _JOBS[key]
    if isinstance(result, launch.JobFailed):
        raise result
    hfm_measure(evidence=_evidence(plan, result))
    return result


def _evidence(plan: plans.Plan, result: launch.JobResult) -> dict:
    """What the report shows in the cell: world size, strategy, and per rank where it ran."""
    ranks = [{k: v for k, v in r.evidence.items() if k not in ("sharded", "offloaded_modules")} for r in result.ranks]
    for r, e in zip(result.ranks, ranks):
        e["sharded"] = {name: s["local_shape"] for name, s in list(r.evidence.get("sharded", {}).items())[:40]}
        e["n_offloaded_modules"] = len(r.evidence.get("offloaded_modules", []))
    return {"world_size": result.world_size, "strategy": plan.strategy, "elapsed_s": round(result.elapsed, 2), "ranks": ranks}


@pytest.mark.hfm_requires(SHARDED)
@pytest.mark.hfm_needs("generate")
@pytest.mark.hfm_per_case("plan", _plans)
def test_sharded_parity(hfm_case, plan, hfm_model_dir, job, hfm_reference_session, hfm_measure):
    reference = hfm_reference_session.run(example(hfm_case.spec, hfm_model_dir))
    tol = tolerance(hfm_case.spec.id, hfm_case.target.backend, hfm_case.target.device, hfm_case.target.precision)
    per_rank = {r.rank: compare(r.outputs, reference, tol, hfm_case.spec.outputs) for r in job.ranks}
    worst = max(per_rank.values(), key=lambda c: c.max_abs)
    hfm_measure(**worst.measures(), tolerance=tol.as_dict(), per_rank_max_abs={str(k): c.max_abs for k, c in per_rank.items()})
    bad = {rank: c.message(tol) for rank, c in per_rank.items() if not c.ok}
    assert not bad, f"{plan.strategy}: ranks {sorted(bad)} differ from the single-process reference: {bad}"


@pytest.mark.hfm_requires(SHARDED)
@pytest.mark.hfm_needs("generate")
@pytest.mark.hfm_per_case("plan", _plans)
def test_sharded_generate(hfm_case, plan, hfm_model_dir, job, hfm_reference_session, hfm_measure):
    n = int(hfm_case.spec.generate.get("max_new_tokens", 5))
    expected = hfm_reference_session.generate(generation_inputs(hfm_case.spec, hfm_model_dir), n)
    actual = {r.rank: r.outputs["generated_ids"] for r in job.ranks}
    hfm_measure(expected_ids=expected.tolist(), actual_ids={str(k): v.tolist() for k, v in actual.items()})
    bad = [rank for rank, ids in actual.items() if ids.shape != expected.shape or not np.array_equal(ids, expected)]
    assert not bad, f"{plan.strategy}: greedy ids of ranks {bad} {[actual[r].tolist() for r in bad]} != reference {expected.tolist()}"


@pytest.mark.hfm_requires(SHARDED)
@pytest.mark.hfm_needs("generate")
@pytest.mark.hfm_per_case("plan", _plans)
def test_sharded_evidence(hfm_case, plan, job):
    """The run really was sharded: distinct processes of the right rank and world size, each holding
    a 1/world_size shard of every sharded parameter (or, offloaded, modules brought in by hooks)."""
    assert job.world_size == plan.world_size
    if plan.kind == "offload":
        e = job.ranks[0].evidence
        assert e["offloaded_modules"], f"nothing was offloaded: device map {e['device_map']}"
        return
    assert sorted(r.evidence["rank"] for r in job.ranks) == list(range(plan.world_size))
    assert {r.evidence["world_size"] for r in job.ranks} == {plan.world_size}
    assert len({r.evidence["pid"] for r in job.ranks}) == plan.world_size, "ranks share a process"
    for r in job.ranks:
        sharded = r.evidence["sharded"]
        assert sharded, f"rank {r.rank}: no parameter is a DTensor: nothing was sharded"
        if plan.kind == "ep":
            assert any(".experts." in n for n in sharded), f"rank {r.rank}: no expert weight is sharded"
        for name, s in sharded.items():
            for dim, pl in ((int(p[2:-1]), p) for p in s["placements"] if p.startswith("S(")):
                want = -(-s["global_shape"][dim] // plan.world_size)
                assert s["local_shape"][dim] == want, f"rank {r.rank} {name}: {pl} local {s['local_shape']} of {s['global_shape']}"
