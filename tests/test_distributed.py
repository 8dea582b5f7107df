"""Self-tests of the distributed backend (run by `nox -s distributed`, in its env): a planted sharding
defect fails the suite's checks; a killed or hung rank ends the job with a typed failure, the other
ranks' logs, within a deadline and without orphans; plans that cannot run are typed skips.

Nothing is faked: the real model runs sharded under torchrun; the defects are planted inside the real
ranks after loading (hfmatrix.distributed.worker --plant / --fault).
"""
from __future__ import annotations

import pytest

pytest.importorskip("accelerate", reason="[dependency-missing] the distributed env (envs/distributed.txt) runs these")

from conftest import SUITES, outcomes, run_suites  # noqa: E402

from hfmatrix.backends import Target, get  # noqa: E402
from hfmatrix.distributed import launch, plans  # noqa: E402
from hfmatrix.skips import Unsupported  # noqa: E402
from hfmatrix.zoo import materialize  # noqa: E402
from hfmatrix.zoo.inputs import example, generation_inputs  # noqa: E402
from hfmatrix.zoo.spec import load_specs  # noqa: E402

TP2 = dict((p.id, p) for p in plans.PLANS)["tp2"]


def _planted(spec: str) -> str:
    """A pytest plugin that plants ``spec`` (worker --plant) into every sharded job of the suite."""
    return f"""
import hfmatrix.backends.distributed_backend as db
_job = db.DistributedSession.job
def job(self, plan, *a, **k):
    return _job(self, plan, *a, plant={spec!r}, **k)
db.DistributedSession.job = job
"""


def _suite(pytester, zoo_cache, plant: str = ""):
    return run_suites(pytester, zoo_cache, str(SUITES / "test_distributed.py"), "--hfm-backend=distributed",
                      "--hfm-models=llama", "-k", "tp2", plant=plant)


@pytest.mark.parametrize("defect", ["zero:model.layers.0.self_attn.q_proj.weight@1",
                                    "swap:model.layers.1.mlp.down_proj.weight"])
def test_planted_shard_defect_fails_parity(pytester, zoo_cache, defect):
    """The same suite run without the plant passes: it is `nox -s distributed`'s own llama tp2 case."""
    result, records = _suite(pytester, zoo_cache, plant=_planted(defect))
    got = outcomes(records)
    assert got["sharded_parity[llama]"] == "failed", result.stdout.str()[-3000:]
    assert result.ret != 0


def test_unsharded_run_fails_the_evidence_check(pytester, zoo_cache):
    """Every rank holding the whole model (tp_size 1 in a group of 2) computes the right numbers:
    only the evidence check can tell that nothing was sharded, and it must."""
    result, records = _suite(pytester, zoo_cache, plant=_planted("unsharded"))
    got = outcomes(records)
    assert got["sharded_parity[llama]"] == "passed", result.stdout.str()[-3000:]
    assert got["sharded_evidence[llama]"] == "failed", result.stdout.str()[-3000:]


@pytest.fixture(scope="module")
def llama():
    spec = load_specs(None)["llama"]
    model_dir = materialize(spec)
    session = get("distributed").load(model_dir, spec, Target("distributed", "cpu", "fp32"))
    yield session, example(spec, model_dir), generation_inputs(spec, model_dir)
    session.close()


def test_killed_rank_is_a_typed_failure_with_the_survivors_logs(llama):
    session, inputs, gen = llama
    with pytest.raises(launch.JobFailed) as info:
        session.job(TP2, inputs, gen, 3, fault="kill@1", deadline=90)
    exc = info.value
    assert exc.kind == "rank-died" and exc.returncode != 0
    assert exc.elapsed < 90
    assert "rank 0/2" in exc.logs.get(0, ""), "the surviving rank's log is missing"
    assert "fault kill on rank 1" in exc.logs.get(1, ""), "the killed rank's log does not show the planted kill"
    assert exc.orphans == [], f"processes outlived the job: {exc.orphans}"
    assert launch.alive_pids(exc.pids) == [], f"processes left behind: {launch.alive_pids(exc.pids)}"


def test_hung_rank_hits_the_collective_timeout(llama):
    """Rank 1 never joins the forward's collectives; rank 0's group (created by the worker with a
    5 s timeout) gives up, torchrun stops rank 1: a rank-died failure well before the deadline."""
    session, inputs, gen = llama
    with pytest.raises(launch.JobFailed) as info:
        session.job(TP2, inputs, gen, 3, fault="hang@1", timeout=5, deadline=120)
    exc = info.value
    assert exc.kind == "rank-died", f"{exc.kind}: the collective timeout did not fire ({exc.elapsed:.0f} s)"
    assert 5 <= exc.elapsed < 120
    assert launch.alive_pids(exc.pids) == []


def test_deadline_kills_a_job_that_does_not_end(llama):
    session, inputs, gen = llama
    with pytest.raises(launch.JobFailed) as info:
        session.job(TP2, inputs, gen, 3, fault="hang@1", timeout=600, deadline=12)
    exc = info.value
    assert exc.kind == "deadline" and exc.elapsed < 30
    assert launch.alive_pids(exc.pids) == [], f"processes left behind: {launch.alive_pids(exc.pids)}"


# each reason is read from the model's config (heads, experts, transformers' plans): the same on every host
@pytest.mark.parametrize("model, plan", [("llama", "tp4"), ("llama", "ep2"), ("gpt2", "tp2"), ("mamba", "ep2")])
def test_plans_that_cannot_run_are_typed_skips(model, plan):
    spec = load_specs(None)[model]
    with pytest.raises(Unsupported):
        plans.require(dict((p.id, p) for p in plans.PLANS)[plan], materialize(spec), "cpu")
