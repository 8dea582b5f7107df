"""Effective precision: what a backend computes with, as opposed to what the run asked for.

A requested precision (``auto``, any device default) resolves to the precision the backend reports:
OpenVINO's INFERENCE_PRECISION_HINT and KV_CACHE_PRECISION read back, torch's parameter dtypes, the
ONNX export's weight dtype. Verdicts (tolerances, known bugs, perf baselines) are keyed by the effective
precision, so the same request judged on a CPU with bf16 and on one without is judged by the numbers
that fit what each computed. Names: ``fp32`` / ``fp16`` / ``bf16`` for the inference precision, with
``_kv<precision>`` appended when a KV cache is kept at another precision (``fp32_kvfp16``).
"""
from __future__ import annotations


from .backends.base import Target

# library dtype names -> the matrix's names
NAMES = {"f32": "fp32", "float32": "fp32", "fp32": "fp32", "f16": "fp16", "float16": "fp16", "fp16": "fp16",
         "bf16": "bf16", "bfloat16": "bf16", "float64": "fp64", "fp64": "fp64", "u8": "u8", "i8": "i8", "u4": "u4"}


def name(inference: str, kv_cache: str | None = None) -> str:
    """``name("f32", "f16") == "fp32_kvfp16"``; an unknown dtype name fails rather than being guessed."""
    inf = NAMES[str(inference)]
    kv = NAMES[str(kv_cache)] if kv_cache else inf
    return inf if kv == inf else f"{inf}_kv{kv}"


def of_parameters(elements: dict[str, int]) -> str:
    """The dtype most parameter elements are in (torch). transformers keeps a few modules in fp32 on purpose
    (``_keep_in_fp32_modules``, e.g. T5's ``wo`` under fp16), so a set of dtypes is normal; the evidence
    lists every dtype. No floating parameters at all: "none"."""
    known = {NAMES[d]: 0 for d in elements if d in NAMES}
    for d, n in elements.items():
        if d in NAMES:
            known[NAMES[d]] += n
    return max(known, key=known.get) if known else "none"


def resolve(target: Target, spec=None) -> Target:
    """The target with ``resolved`` set from the backend's ``resolve_precision(device, precision, spec)``
    where it has one (a backend without it computes in the requested precision). A backend that cannot
    say (not importable, device absent) leaves it unresolved: its tests skip with that typed reason."""
    key = (target, getattr(spec, "task", None))
    if key not in _RESOLVED:
        _RESOLVED[key] = _resolve(target, spec)
    return _RESOLVED[key]


_RESOLVED: dict[tuple, Target] = {}


def _resolve(target: Target, spec) -> Target:
    from . import backends
    try:
        backend = backends.get(target.backend)
        how = getattr(backend, "resolve_precision", None)
        resolved = how(target.device, target.precision, spec) if how else target.precision
    except Exception:  # noqa: BLE001 - the same failure becomes the test's typed skip at load
        return target
    return Target(target.backend, target.device, target.precision, resolved)


def fold(targets: list[Target], done: list[Target] = ()) -> tuple[list[Target], dict[str, str]]:
    """Drop targets that compute exactly what an earlier one (or one in ``done``, run elsewhere) computes:
    (kept targets, {dropped precision: the precision it is the same computation as})."""
    seen = {t.effective: t.precision for t in done if t.resolved}
    kept, folded = [], {}
    for t in targets:
        if t.resolved and t.effective in seen:
            folded[t.precision] = seen[t.effective]
            continue
        if t.resolved:
            seen[t.effective] = t.precision
        kept.append(t)
    return kept, folded


def check_read_back(target: Target, session) -> str:
    """The session's read-back effective precision; a mismatch with what the target resolved to is a
    failure: every verdict of this cell would be looked up for a computation that did not happen."""
    read = getattr(session, "effective_precision", None)
    actual = read() if read else target.precision
    if actual != target.effective:
        raise RuntimeError(f"{target.id}: the backend reads back effective precision {actual!r} after load, "
                           f"but the target resolved to {target.effective!r} before it: verdicts would be keyed wrong")
    return actual
