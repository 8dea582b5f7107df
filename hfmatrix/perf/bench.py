"""Bench JSON: results/<session>/bench-<shard>.json, one per pytest run, written at session end by
the process that writes the records (the xdist controller, or pytest itself without xdist).

Schema "hfmatrix-bench/1" (close to optimum-benchmark's report: per target a latency block with raw
values + stats, memory, throughput). All latencies in SECONDS, memory in MB (2**20 bytes)::

    {
      "schema": "hfmatrix-bench/1",
      "session": "cpu", "shard": "all" | "1of4", "run_id": "...", "created": ISO time,
      "fingerprint": {             # hwprobe.fingerprint(): the machine
        "id": "amd-epyc-2c-790ef035", "hardware_hash", "hash", "cpu_model", "cpu_vendor", "arch",
        "cores": {"logical", "physical", "usable"}, "memory_gib", "isa": [...], "virtualized",
        "accelerators": [...], "software": {"os", "python", "torch", ...}},
      "environment": {"python": "3.11.7", "platform": "...", "hostname": "..."},
      "benchmarks": [              # one entry per model × backend × device × precision
        {
          "name": "minilm@torch-cpu-fp32", "model", "arch_class", "backend", "device", "precision",
          "session", "run_id", "measured_at",
          "versions": {"torch": ..., "transformers": ...},     # the backend's library versions
          "threads": {"requested": 1, "intra_op": 1, "inter_op": 2, "applied_by": "torch.set_num_threads"},
          "timer": "wall" | "cuda-event",
          "conditions": {"threads", "timer", "tracing", "inputs": {name: [shape, dtype]}, "batch_inputs"},
          "machine": {"before"|"after": {"loadavg_1m", "usable_cores"}},   # how busy the machine was
          "config": {"warmup", "min_iters", "min_time", "batch_size", "batch_iters", "threads", "factor",
                     "alpha", "on_regression", "confirm", ...},
          "evidence": {...},                                    # Session.evidence(): where it ran
          "notes": ["no forward_batch: spec lacks the batch capability"],
          "report": {
            "cold_load":  {"latency": LAT},                    # only the process's first load of this backend:
                                                               # framework imports included, untimed otherwise
            "load":       {"latency": LAT, "memory": MEM},     # one sample: backend.load() of a fresh session
            "first_call": {"batch_size": 1, "latency": LAT, "memory": MEM},   # one sample
            "forward":    {"batch_size": 1, "warmup", "loop_wall_s", "latency": LAT,
                           "throughput": {"unit": "items/s", "value"}, "memory": MEM},
            "forward_batch": {... same as forward, "batch_size": N ...},       # only models with "batch"
            "forward_norm": {"batch_size": 1, "rounds", "per_round", "loop_wall_s",   # what the gate compares
                             "latency": LAT in unit "x calibration" (one value per round: fastest model call /
                                        fastest calibration call, hfmatrix/perf/calibrated.py),
                             "noise": (p75 - p25) / p50 of those values, "noise_bound",
                             "model_fastest": LAT (s), "calibration_fastest": LAT (s), "calibration": what it ran,
                             "loadavg_1m": [before, after]}
          },
          # flat headline (batch-1 forward) for tables, milliseconds:
          "metric": "forward", "p50_ms", "p90_ms", "p99_ms",
          "status": "measured" | a gate verdict, "regression": bool,
          # present when the baseline check ran (test_perf_vs_baseline):
          "ratio": median ratio of forward_norm (calibrated; "ratio_basis": "forward_norm"), "p_value",
          "threshold": factor, ("baseline_ms": baseline median of forward, for comparisons of raw forward
          samples only),
          "comparison": {"verdict", "reason", "undecided": {metric: why}, "baseline_file", "fingerprint", "baseline_recorded",
                         "baseline_versions", "metrics": {"forward_norm": {"verdict", "summary",
                         "first": CMP, "confirmations": [CMP + "values": re-measured samples + "noise"], "final": CMP}}}
          # report.<metric>.latency.values are the FIRST measurement; when a flagged regression was
          # re-measured, the verdict ("final") comes from the last confirmation's values
        }
      ]
    }

    LAT = {"unit": "s", "values": [...raw samples...], "count", "total", "mean", "stdev", "stdev_pct",
           "min", "max", "p50", "p90", "p95", "p99"}
    MEM = {"unit": "MB", "max_ram" (peak RSS of the process during the block), "ram_before",
           "ram_after", "ram_delta", "rss_samples", "rss_interval_s",
           "sampled_over": "warm-up calls" (forward*: RSS is sampled over the untimed warm-up calls of
           the same work, never during timed calls),
           + device counters where the backend exposes them: "max_allocated", "allocated", "reserved"}
    CMP = {"verdict", "ratio", "p_value", "baseline_median", "current_median", "n_baseline",
           "n_current", "factor", "alpha", "reason"}

Verdicts: regression, improvement, unchanged, insufficient-samples, no-baseline, incomparable, inconclusive
(too noisy to decide, or an alarm the re-measure did not confirm: a skip of kind inconclusive, never a pass).
"""
from __future__ import annotations

import datetime as dt
import json
import platform
import socket
from pathlib import Path
from typing import Any, Iterable

from ..records import write_json_atomic

SCHEMA = "hfmatrix-bench/1"


def document(entries: Iterable[dict[str, Any]], *, session: str, shard: str, run_id: str,
             fingerprint: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema": SCHEMA, "session": session, "shard": shard, "run_id": run_id,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "fingerprint": fingerprint,
        "environment": {"python": platform.python_version(), "platform": platform.platform(),
                        "hostname": socket.gethostname()},
        "benchmarks": sorted(entries, key=lambda e: e["name"]),
    }


def apply_comparison(entry: dict[str, Any], comparison: dict[str, Any]) -> dict[str, Any]:
    """Fold a comparison block into an entry, with the flat headline keys for tables."""
    entry["comparison"] = comparison
    entry["status"] = comparison.get("verdict", "measured")
    entry["regression"] = entry["status"] == "regression"
    metrics = comparison.get("metrics", {})
    norm = metrics.get("forward_norm", {}).get("final")
    fwd = metrics.get("forward", {}).get("final")
    if norm and norm.get("ratio") is not None:
        # the calibrated gate: its ratio is of model time / calibration time, machine speed cancelled;
        # no baseline_ms (a baseline's raw milliseconds were taken at another machine speed)
        entry.update(ratio=norm["ratio"], p_value=norm["p_value"], threshold=norm["factor"], ratio_basis="forward_norm")
    elif fwd and fwd.get("baseline_median") is not None:
        entry["baseline_ms"] = fwd["baseline_median"] * 1e3
        entry["ratio"] = fwd["ratio"]
        entry["p_value"] = fwd["p_value"]
        entry["threshold"] = fwd["factor"]
    return entry


def write(path: Path, doc: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, doc)
    return path


def read(path: Path) -> dict[str, Any]:
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    if doc.get("schema") != SCHEMA:
        raise ValueError(f"{path}: schema {doc.get('schema')!r}, expected {SCHEMA!r}")
    return doc


def find(paths: Iterable[Path | str]) -> list[Path]:
    """Bench files from files and/or folders (searched recursively for bench-*.json)."""
    out: list[Path] = []
    for p in map(Path, paths):
        out += sorted(p.rglob("bench-*.json")) if p.is_dir() else [p]
    return out


def entries(paths: Iterable[Path | str]) -> list[dict[str, Any]]:
    """All benchmark entries of the given bench files/folders, each tagged with its file's fingerprint."""
    out = []
    for p in find(paths):
        doc = read(p)
        for e in doc.get("benchmarks", []):
            out.append({**e, "_file": str(p), "_fingerprint": doc.get("fingerprint", {})})
    return out
