"""A planted slowdown of the model call, for proving the perf gate through the suite path.

    PYTHONPATH=scripts HFMATRIX_PLANT_SLOWDOWN=0.25 python -m pytest ... -p perf_slowdown

Every session that ``hfmatrix.plugin.load_session`` returns gets its ``run`` wrapped: after the real
call returns, the wrapper busy-waits for ``HFMATRIX_PLANT_SLOWDOWN`` x the call's own duration (so
the call takes 1.25 x as long at 0.25, on whatever machine). Only that boundary is touched: the
model, the backend, the measurement and the gate run unchanged. Without the variable (or at 0)
the plugin does nothing, so an A/A run can load it too.
"""
from __future__ import annotations

import os
import time

ENV = "HFMATRIX_PLANT_SLOWDOWN"


def _slowed(run, extra: float):
    def run_slowed(*args, **kwargs):
        t0 = time.perf_counter()
        out = run(*args, **kwargs)
        until = time.perf_counter() + extra * (time.perf_counter() - t0)
        while time.perf_counter() < until:  # busy: the core stays taken, as slower code would take it
            pass
        return out
    return run_slowed


def pytest_configure(config) -> None:
    extra = float(os.environ.get(ENV, "0") or 0)
    if extra <= 0:
        return
    import hfmatrix.plugin as hp
    load_session = hp.load_session

    def load_slowed(*args, **kwargs):
        session = load_session(*args, **kwargs)
        if not getattr(session, "_hfm_planted_slowdown", None):
            session.run = _slowed(session.run, extra)
            session._hfm_planted_slowdown = extra
        return session
    hp.load_session = load_slowed
