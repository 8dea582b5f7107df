"""A planted slowdown of the model call, for proving the perf gate through the suite path.

    PYTHONPATH=scripts HFMATRIX_PLANT_SLOWDOWN=0.25 python -m pytest ... -p perf_slowdown

Every session that ``hfmatrix.plugin.load_session`` returns gets its ``run`` wrapped: after the real
call returns, the wrapper busy-waits for ``HFMATRIX_PLANT_SLOWDOWN`` x the call's own duration (so
the call takes 1.25 x as long at 0.25, on whatever machine). Only that boundary is touched: the
model, the backend, the measurement and the gate run unchanged. Without the variable (or at 0)
the plugin does nothing, so an A/A run can load it too.

``HFMATRIX_PLANT_MODELS=a,b``: only the sessions of these zoo ids (the others of the same run are A/A).
``HFMATRIX_PLANT_FIRST=N``: slow only the first N sessions the process loads (the perf suite loads a
cold one, then the measured one; a confirmation re-measure loads another): a slowdown that the
re-measure does not see. ``HFMATRIX_PLANT_JITTER=J``: instead of a fixed slowdown, busy-wait a
random 0..J x the call's duration, one draw per 20 ms window (so it moves whole rounds of the
gate's measurement, like a machine whose speed drifts under the model alone): planted noise.
"""
from __future__ import annotations

import os
import time

import random

ENV = "HFMATRIX_PLANT_SLOWDOWN"


def _extra(fixed: float, jitter: float) -> float:
    if jitter > 0:
        return jitter * random.Random(int(time.perf_counter() / 0.02)).random()
    return fixed


def _slowed(run, fixed: float, jitter: float):
    def run_slowed(*args, **kwargs):
        t0 = time.perf_counter()
        out = run(*args, **kwargs)
        until = time.perf_counter() + _extra(fixed, jitter) * (time.perf_counter() - t0)
        while time.perf_counter() < until:  # busy: the core stays taken, as slower code would take it
            pass
        return out
    return run_slowed


def pytest_configure(config) -> None:
    extra = float(os.environ.get(ENV, "0") or 0)
    jitter = float(os.environ.get("HFMATRIX_PLANT_JITTER", "0") or 0)
    first = int(os.environ.get("HFMATRIX_PLANT_FIRST", "0") or 0)
    models = {m for m in os.environ.get("HFMATRIX_PLANT_MODELS", "").split(",") if m}
    if extra <= 0 and jitter <= 0:
        return
    import hfmatrix.plugin as hp
    load_session = hp.load_session
    loaded = [0]

    def load_slowed(case, *args, **kwargs):
        session = load_session(case, *args, **kwargs)
        if models and case.spec.id not in models:
            return session
        loaded[0] += 1
        if (not first or loaded[0] <= first) and not getattr(session, "_hfm_planted_slowdown", None):
            session.run = _slowed(session.run, extra, jitter)
            session._hfm_planted_slowdown = extra or jitter
        return session
    hp.load_session = load_slowed
