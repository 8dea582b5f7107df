"""Numeric comparison of backend outputs against a reference (assert_close style)."""
from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from . import match, subject

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover
    import tomli as tomllib  # type: ignore

TOLERANCES = Path(__file__).with_name("tolerances.toml")
KNOWN_FAILURES = Path(__file__).with_name("known_failures.toml")


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float
    reason: str
    source: str  # which table entry it came from
    # a share of the output's max |ref|: reduced-precision rounding errors scale with the magnitudes a
    # layer carries, not with each element (bf16: a small logit next to a large one carries the large one's error)
    scale: float = 0.0
    # why this cell cannot catch a 1% error (hfmatrix.power): the entry's `low_power` for this model, else ""
    low_power: str = ""
    # bound on each row's |‖actual‖ / ‖ref‖ - 1| (a row: all axes but the last): a backend whose own elementwise
    # error is ~1% (fp16) keeps row norms far tighter, so a scaled output or row fails here; 0 = not checked
    row_norm: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"atol": self.atol, "rtol": self.rtol, "scale": self.scale, "reason": self.reason, "source": self.source,
                **({"low_power": self.low_power} if self.low_power else {}),
                **({"row_norm": self.row_norm} if self.row_norm else {})}


def row_norm_deviation(actual: np.ndarray, reference: np.ndarray) -> tuple[float, int]:
    """(max over rows of |‖actual row‖ / ‖ref row‖ - 1|, that row); a zero reference row with a non-zero actual
    one is infinitely off."""
    a = actual.reshape(-1, actual.shape[-1]) if actual.ndim else actual.reshape(1, 1)
    r = reference.reshape(-1, reference.shape[-1]) if reference.ndim else reference.reshape(1, 1)
    na, nr = np.linalg.norm(a, axis=1), np.linalg.norm(r, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        dev = np.where(nr > 0, np.abs(na / nr - 1), np.where(na > 0, np.inf, 0.0))
    row = int(np.argmax(dev)) if dev.size else 0
    return (float(dev[row]) if dev.size else 0.0), row


def _low_power(mark: dict | None, model: str) -> str:
    """The entry's ``low_power = {models = [...], reason = "..."}`` reason where it names ``model``."""
    if not mark:
        return ""
    hit = any(fnmatch.fnmatch(model, str(p)) for p in mark.get("models", ["*"]))
    return str(mark["reason"]) if hit else ""


@lru_cache(maxsize=None)
def _table(path: str) -> dict[str, Any]:
    with open(path, "rb") as fh:
        return tomllib.load(fh)


def table_path(path: Path | None = None) -> str:
    """The tolerance table in use: ``path``, else $HFMATRIX_TOLERANCES, else the package's."""
    return str(path or os.environ.get("HFMATRIX_TOLERANCES") or TOLERANCES)


@dataclass(frozen=True)
class ToleranceEntry:
    """One entry of tolerances.toml: a target default ([target.<backend>[.<device>].<precision>]) or a per-model
    [[override]]; both are matched by hfmatrix.match (the most specific wins: an override names the model too)."""
    rule: match.Rule
    source: str
    atol: float
    rtol: float
    claim: match.Claim
    scale: float = 0.0
    row_norm: float = 0.0
    low_power: Any = None  # the entry's {models = [...], reason = "..."}

    @classmethod
    def of(cls, entry: dict, source: str, keys: dict[str, str]) -> "ToleranceEntry":
        where = f"[{source}]"
        for key in ("atol", "rtol"):
            if key not in entry:
                raise ValueError(f"tolerances: {where} has no {key}")
        if entry.get("low_power") and not str(entry["low_power"].get("reason", "")).strip():
            raise ValueError(f"tolerance entry {where}: low_power needs a reason")
        return cls(match.Rule.of({**entry, **keys}, TOLERANCE_KEYS, where, ()), source, float(entry["atol"]),
                   float(entry["rtol"]), match.claim(entry, {}, f"tolerances: {where}"), float(entry.get("scale", 0.0)),
                   float(entry.get("row_norm", 0.0)), entry.get("low_power"))

    def tolerance(self, model: str) -> Tolerance:
        return Tolerance(self.atol, self.rtol, self.claim.text, self.source, self.scale,
                         _low_power(self.low_power, model), self.row_norm)


TOLERANCE_KEYS = ("model", "backend", "device", "precision")


def _targets(table: dict[str, Any]):
    for backend, by in table.get("target", {}).items():
        for key, value in by.items():
            if "atol" in value:  # [target.<backend>.<precision>]
                yield value, f"target.{backend}.{key}", {"backend": backend, "precision": key}
                continue
            for precision, entry in value.items():  # [target.<backend>.<device>.<precision>]
                if isinstance(entry, dict) and "atol" in entry:
                    yield entry, f"target.{backend}.{key}.{precision}", {"backend": backend, "device": key,
                                                                         "precision": precision}


@lru_cache(maxsize=None)
def load_tolerances(path: str) -> tuple[ToleranceEntry, ...]:
    """Every entry of the tolerance table at ``path``; two equally specific entries that could both decide a
    cell are an error here."""
    table = _table(path)
    found = [ToleranceEntry.of(entry, source, keys) for entry, source, keys in _targets(table)]
    for o in table.get("override", []):
        source = f"override model={o.get('model', '*')} backend={o.get('backend', '*')} precision={o.get('precision', '*')}"
        found.append(ToleranceEntry.of(o, source, {}))
    match.check_ties(found, lambda e: e.rule, path)
    return tuple(found)


def tolerance(model: str, backend: str, device: str, precision: str, path: Path | None = None) -> Tolerance:
    """The tolerance for one cell: the most specific entry (a per-model override, else the target default)."""
    values = {"model": model, "backend": backend, "device": device, "precision": precision}
    entry = match.best(load_tolerances(table_path(path)), lambda e: e.rule, values)
    if entry is None:
        raise LookupError(f"no tolerance for backend={backend} device={device} precision={precision} in {path or TOLERANCES}; "
                          "add one with a reason")
    return entry.tolerance(model)


class ToleranceExceeded(AssertionError):
    """Outputs outside their tolerance, with what was measured: a known bug names this type and the range
    of the measured error it expects, so the same cell failing another way or by another amount fails."""

    def __init__(self, message: str, max_abs: float, max_rel: float):
        super().__init__(message)
        self.max_abs, self.max_rel = max_abs, max_rel


class TokensDiffer(AssertionError):
    """Generated tokens (or a server's text) that differ from the reference's, with where: ``first_position``
    is the first differing position of the token ids (None for text), so a known bug can name the step
    whose narrow margin flips and a flip elsewhere fails."""

    def __init__(self, message: str, first_position: int | None = None):
        super().__init__(message)
        self.first_position = first_position


@dataclass
class Comparison:
    ok: bool
    max_abs: float = 0.0
    max_rel: float = 0.0  # max |Δ| / max |ref| over the worst key
    worst_key: str = ""
    tol_fraction: float = 0.0  # max over elements of |Δ| / (atol + rtol·|ref|): > 1 fails
    per_key: dict[str, dict[str, float]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def message(self, tol: Tolerance) -> str:
        head = (f"max |Δ| {self.max_abs:.3g} (max |Δ|/max |ref| {self.max_rel:.3g}) on {self.worst_key!r}; "
                f"allowed atol {tol.atol:g} + rtol {tol.rtol:g}·|ref|"
                + (f" + {tol.scale:g}·max |ref|" if tol.scale else "") + f" ({tol.source}: {tol.reason})")
        return "; ".join([head, *self.problems])

    def require(self, tol: Tolerance, context: str = "") -> None:
        """Raise ToleranceExceeded (an AssertionError) unless the comparison passed."""
        if not self.ok:
            raise ToleranceExceeded(f"{context}{self.message(tol)}", self.max_abs, self.max_rel)

    def measures(self) -> dict[str, Any]:
        return {"max_abs_err": self.max_abs, "max_rel_err": self.max_rel, "worst_output": self.worst_key,
                "tol_fraction": self.tol_fraction, "per_output": self.per_key}


def compare(actual: dict[str, np.ndarray], reference: dict[str, np.ndarray], tol: Tolerance,
            keys: tuple[str, ...] | list[str] = ()) -> Comparison:
    """Compare the named outputs (or every key both have). Missing keys, shape mismatches and
    non-finite values are failures, never silently ignored."""
    result = Comparison(ok=True)
    names = list(keys) if keys else sorted(set(actual) & set(reference))
    if not names:
        result.ok = False
        result.problems.append(f"no common outputs: actual {sorted(actual)} vs reference {sorted(reference)}")
        return result
    for name in names:
        if name not in actual or name not in reference:
            result.ok = False
            result.problems.append(f"output {name!r} missing from {'actual' if name not in actual else 'reference'}")
            continue
        a = np.asarray(actual[name], dtype=np.float64)
        r = np.asarray(reference[name], dtype=np.float64)
        if a.shape != r.shape:
            result.ok = False
            result.problems.append(f"output {name!r} shape {a.shape} != reference {r.shape}")
            continue
        if not np.isfinite(a).all():
            result.ok = False
            result.problems.append(f"output {name!r} has {int((~np.isfinite(a)).sum())} non-finite values")
            continue
        if not np.isfinite(r).all():  # NaN compares false with everything: it would pass any tolerance
            result.ok = False
            result.problems.append(f"reference {name!r} has {int((~np.isfinite(r)).sum())} non-finite values: "
                                   "nothing can be judged against it")
            continue
        diff = np.abs(a - r)
        max_abs = float(diff.max()) if diff.size else 0.0
        ref_max = float(np.abs(r).max()) if r.size else 0.0
        max_rel = max_abs / ref_max if ref_max > 0 else (0.0 if max_abs == 0 else float("inf"))
        allowed = tol.atol + tol.rtol * np.abs(r) + tol.scale * ref_max
        bad = diff > allowed
        n_bad = int(bad.sum())
        # the report shows each cell's worst error as a share of what its tolerance allows
        fraction = float((diff / allowed).max()) if diff.size and (allowed > 0).all() else (0.0 if not n_bad else float("inf"))
        result.tol_fraction = max(result.tol_fraction, fraction)
        result.per_key[name] = {"max_abs_err": max_abs, "max_rel_err": max_rel, "mismatched": n_bad, "size": int(diff.size)}
        if tol.row_norm:
            dev, row = row_norm_deviation(a, r)
            result.per_key[name]["row_norm_dev"] = dev
            result.tol_fraction = max(result.tol_fraction, dev / tol.row_norm)
            if dev > tol.row_norm:
                result.ok = False
                result.problems.append(f"output {name!r}: row {row}'s norm differs from the reference's by {dev:.3g} "
                                       f"(bound row_norm {tol.row_norm:g})")
        if max_abs >= result.max_abs:
            result.max_abs, result.max_rel, result.worst_key = max_abs, max_rel, name
        if n_bad:
            result.ok = False
            result.problems.append(f"output {name!r}: {n_bad}/{diff.size} elements outside tolerance")
    return result


def require_rows(together: dict[str, np.ndarray], singles: list[dict[str, np.ndarray]], tol: Tolerance,
                 keys, padded: bool, measure, context: str) -> None:
    """Each row of a batch's outputs against its own single-row outputs (``singles[row]``), on the valid
    positions: where the batch was right-padded, outputs aligned with the input sequence (axis 1 longer than
    the row's own) are cut to the row's length. Measures the worst row so far before each verdict, so a
    failure's record says which row and by how much; raises ToleranceExceeded on the first row outside."""
    worst, worst_rel, fraction = 0.0, 0.0, 0.0
    for row, single in enumerate(singles):
        names = list(keys) or sorted(single)
        rows = {}
        for key in names:
            if key not in together:
                continue  # compare() names the missing output
            value = together[key][row:row + 1]
            if padded and value.ndim >= 2 and key in single and value.shape[1] != single[key].shape[1]:
                value = value[:, :single[key].shape[1]]  # right padding: the valid positions come first
            rows[key] = value
        result = compare(rows, single, tol, names)
        worst, worst_rel = max(worst, result.max_abs), max(worst_rel, result.max_rel)
        fraction = max(fraction, result.tol_fraction)
        measure(max_abs_err=worst, max_rel_err=worst_rel, tol_fraction=fraction, tolerance=tol.as_dict(), padded=padded,
                rows_compared=row + 1, **({} if result.ok else {"failed_row": row, "worst_output": result.worst_key}))
        result.require(tol, context.format(row=row))


def first_difference(actual: np.ndarray, expected: np.ndarray) -> list[int] | None:
    """Index (row, position) of the first differing token id, None when equal; a shape mismatch
    gives the first position past the shorter sequence."""
    a, e = np.atleast_2d(actual), np.atleast_2d(expected)
    if a.shape == e.shape:
        diff = np.argwhere(a != e)
        return [int(x) for x in diff[0]] if len(diff) else None
    n = min(a.shape[-1], e.shape[-1])
    rows = min(a.shape[0], e.shape[0])
    diff = np.argwhere(a[:rows, :n] != e[:rows, :n])
    return [int(x) for x in diff[0]] if len(diff) else [0, n]


KNOWN_KEYS = ("check", "backend", "device", "precision", "requested")


@dataclass(frozen=True)
class KnownBug:
    """One [[known_bug]] of known_failures.toml. ``entry`` is the file's entry as the marks carry it, with
    ``reason`` (the claim) and ``evidence`` (what was measured) resolved from a shared [reasons.<id>]."""
    rule: match.Rule
    claim: match.Claim
    entry: dict

    @classmethod
    def of(cls, raw: dict, shared: dict[str, match.Claim], where: str) -> "KnownBug":
        claim = match.claim(raw, shared, where)
        if "unstable" in raw and not str(raw["unstable"]).strip():
            raise ValueError(f"{where}: 'unstable' must say why the verdict flips")
        if "hangs" in raw:  # the never-run skip it made is gone: a backend's run deadline raises a typed timeout
            raise ValueError(f"{where}: 'hangs' is not a known-bug key: a run that does not answer raises the "
                             "backend's typed timeout (RunTimeout, e.g. the web backend's WebRunTimeout); name it in 'raises'")
        if not raw.get("raises"):
            raise ValueError(f"{where}: 'raises' must name the exception the cell fails with "
                             "(without it the xfail would accept any failure, a crash or a timeout)")
        entry = {**raw, "reason": claim.reason, **({"evidence": claim.evidence} if claim.evidence else {})}
        return cls(match.Rule.of(raw, KNOWN_KEYS, where), claim, entry)


@lru_cache(maxsize=None)
def load_known_bugs(path: str) -> tuple[KnownBug, ...]:
    """Every known bug of the file at ``path``; two equally specific entries that could both decide a cell are
    an error here."""
    table = _table(path)
    shared = match.shared_reasons(table, path)
    bugs = tuple(KnownBug.of(raw, shared, f"{path}: [[known_bug]] #{i + 1}")
                 for i, raw in enumerate(table.get("known_bug", [])))
    match.check_ties(bugs, lambda b: b.rule, path)
    return bugs


def known_text(entry: dict) -> str:
    """A known bug's claim and evidence as one line (the xfail / skip reason)."""
    return match.Claim(entry["reason"], entry.get("evidence", "")).text


def known_entry(check: str, model, backend: str, device: str, precision: str,
                path: Path | None = None, requested: str = "") -> dict | None:
    """The known_failures entry for (check, model, target), else None (the most specific entry wins,
    hfmatrix.match). ``model`` is the ModelSpec (or a zoo id): entries match on what causes the bug
    (hfmatrix/subject.py: model_type, arch_class, task, source, checkpoint property, or the id where the cause
    is that model). ``precision`` is the effective one; ``requested`` narrows an entry to one request (e.g. a
    forced config)."""
    bugs = load_known_bugs(str(path or os.environ.get("HFMATRIX_KNOWN_FAILURES") or KNOWN_FAILURES))
    values = {"check": check, "backend": backend, "device": device, "precision": precision, "requested": requested}
    bug = match.best(bugs, lambda b: b.rule, values, subject.facts(model))
    return bug.entry if bug else None


def known_failure(check: str, model, backend: str, device: str, precision: str,
                  path: Path | None = None) -> str | None:
    """The reason and its evidence if (check, model, target) is a recorded known bug, else None."""
    entry = known_entry(check, model, backend, device, precision, path)
    return known_text(entry) if entry else None


def known_bug_marks(check: str, model, backend: str, device: str, precision: str, requested: str = "") -> list:
    """pytest marks for a recorded known bug: a strict xfail (a fix shows up as an unexpected pass);
    for an entry marked ``unstable`` (the defect is real but sits at the check's resolution, so the
    verdict flips between runs: measured, with the evidence in the reason) a known-bug skip instead,
    since neither a strict xfail nor a pass would be honest."""
    import pytest

    from .skips import KNOWN_BUG
    entry = known_entry(check, model, backend, device, precision, requested=requested)
    if not entry:
        return []
    if entry.get("unstable"):
        return [pytest.mark.skip(reason=f"[{KNOWN_BUG}] {known_text(entry)} Not judged here: {entry['unstable']}")]
    raises = exception_types(entry.get("raises", ()))
    return [pytest.mark.xfail(strict=True, raises=raises or None, reason=f"[{KNOWN_BUG}] {known_text(entry)}"),
            pytest.mark.hfm_known_bug(entry)]


# exception names a known bug may give in ``raises`` besides builtins and dotted "package.module.Class" paths
HARNESS_EXCEPTIONS = {"ToleranceExceeded": "hfmatrix.compare.ToleranceExceeded",
                      "TokensDiffer": "hfmatrix.compare.TokensDiffer",
                      "MemoryGrowth": "hfmatrix.memory.MemoryGrowth",
                      "ServerFailure": "hfmatrix.serving.errors.ServerFailure",
                      "ExportFailed": "hfmatrix.exports.ExportFailed",
                      "PlacementIncomplete": "hfmatrix.placement.PlacementIncomplete",
                      "RunTimeout": "hfmatrix.backends.base.RunTimeout"}


def exception_types(names) -> tuple[type, ...]:
    """``raises = "ToleranceExceeded"`` or a list of names -> exception classes. A name that does not
    resolve is an error in the data file, not a reason to accept any exception."""
    import builtins
    import importlib
    found = []
    for name in [names] if isinstance(names, str) else list(names):
        path = HARNESS_EXCEPTIONS.get(name, name)
        if "." not in path and isinstance(getattr(builtins, path, None), type):
            found.append(getattr(builtins, path))
            continue
        module, _, attr = path.rpartition(".")
        cls = getattr(importlib.import_module(module), attr, None) if module else None
        if not (isinstance(cls, type) and issubclass(cls, BaseException)):
            raise ValueError(f"known_failures: raises = {name!r} is not an exception class")
        found.append(cls)
    return tuple(found)


# what a known bug's exception may carry, each stated in its entry as [low, high]: the error (ToleranceExceeded),
# the first differing token position (TokensDiffer), the bytes per cycle a counter grows (MemoryGrowth)
RANGE_KEYS = ("max_abs", "max_rel", "first_position", "growth_per_cycle")


def out_of_range(entry: dict, exc: BaseException | None) -> str | None:
    """Why a known bug's failure is not the expected one: the entry's RANGE_KEYS = [low, high] (what it measured)
    against what the exception carries, ``match`` (a regular expression) against the exception's message, and
    ``nodes`` (the kinds a partial placement leaves off the target, hfmatrix.placement) against the
    PlacementIncomplete's; None when it matches."""
    if "match" in entry and not re.search(entry["match"], str(exc) if exc is not None else "", re.S):
        return (f"known bug expects a message matching /{entry['match']}/; got {type(exc).__name__}: "
                f"{str(exc)[:300]}: another failure than the one recorded")
    if "nodes" in entry and sorted(getattr(exc, "nodes", None) or []) != sorted(entry["nodes"]):
        return (f"known bug expects the placement to leave exactly {sorted(entry['nodes'])} off the target; "
                f"measured {getattr(exc, 'nodes', None)}: another failure than the one recorded")
    for key in RANGE_KEYS:
        if key not in entry:
            continue
        low, high = (float(v) for v in entry[key])
        value = getattr(exc, key, None)
        if value is None or not low <= float(value) <= high:
            return (f"known bug expects {key} in [{low:g}, {high:g}] ({type(exc).__name__}); measured "
                    f"{value if value is None else f'{float(value):.4g}'}: another failure than the one recorded")
    return None


def sentence_embedding(hidden: np.ndarray, mask: np.ndarray | None = None, normalize: bool = True) -> np.ndarray:
    """Mean of one sequence's token vectors over its attention mask, L2-normalised unless asked not to
    (sentence-transformers' pooling for MiniLM): the golden, pipeline and workflow checks all compare these."""
    hidden = np.asarray(hidden, dtype=np.float64)
    weights = np.ones(hidden.shape[0]) if mask is None else np.asarray(mask, dtype=np.float64)
    pooled = (hidden * weights[:, None]).sum(0) / weights.sum()
    return pooled / np.linalg.norm(pooled) if normalize else pooled
