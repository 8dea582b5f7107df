"""Performance: measurement, the regression gate, baselines per hardware fingerprint, plots.

* ``measure``   — pinned threads, wall-clock / CUDA-event timers, run_timed, RssSampler, summarize
* ``runner``    — one model × target: load, first call, forward (batch 1 and N), memory; compare_case
* ``gate``      — asv's rule: median ratio > factor AND Mann-Whitney U p < alpha
* ``baselines`` — baselines/<fingerprint id>/<backend>-<device>-<precision>.json (raw samples)
* ``bench``     — results/<session>/bench-<shard>.json; its docstring is the schema the report reads
* ``plot``      — latency-distribution plot per backend from bench JSON (matplotlib, Agg)
* ``plugin``    — pytest options (--perf-*), exclusive benchmarking under xdist, bench JSON writing
* ``cli``       — ``hfmatrix bench record|compare|plot|fingerprint``
"""
from .gate import Comparison, compare

__all__ = ["Comparison", "compare"]
