"""One matcher for the data files (tolerances.toml, known_failures.toml, negative_cases.toml), one rule.

An entry names some keys, each with one fnmatch pattern or a list of them (any matches); an absent key or
``"*"`` matches anything. Keys are of three kinds:

- target keys (``check``, ``backend``, ``device``, ``precision``, ``requested``; ``model`` in the tolerance
  table, which is keyed by zoo id): matched against the cell's values,
- subject keys (hfmatrix/subject.py: ``model``, ``model_type``, ``arch_class``, ``task``, ``source``,
  ``checkpoint``): matched against what the model is,
- version conditions (hfmatrix/versions.py: ``transformers = ">=5"``): hold or not in this env.

**The most specific entry wins**: the one naming the most keys (a list of patterns counts as one key).
Two entries that name as many keys and could both apply to one cell which no more specific entry decides
are an error when the file is loaded (:func:`check_ties`), naming both: the file says which one decides,
never its order.

Every entry carries a claim and its evidence as separate fields (:class:`Claim`): ``reason`` says what
happens and why, ``evidence`` what was measured, when and on what. A claim several entries share is written
once in the file's ``[reasons.<id>]`` table and named by ``reason = "@<id>"``.
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence, TypeVar

from . import subject, versions

T = TypeVar("T")
WILDCARD = re.compile(r"[*?\[]")


class AmbiguousEntries(ValueError):
    """Two entries of a data file with the same specificity that could both decide one cell."""


def patterns(value) -> tuple[str, ...]:
    return tuple(str(p) for p in value) if isinstance(value, (list, tuple)) else (str(value),)


@dataclass(frozen=True)
class Rule:
    """What one entry matches on, and where it is (for the errors that name it)."""
    target: tuple[tuple[str, tuple[str, ...]], ...]
    subject: tuple[tuple[str, tuple[str, ...]], ...]
    conditions: tuple[tuple[str, str], ...]
    where: str

    @classmethod
    def of(cls, entry: dict, target_keys: Sequence[str], where: str, subject_keys: Sequence[str] = subject.SUBJECT_KEYS
           ) -> "Rule":
        named = {k: patterns(entry[k]) for k in (*target_keys, *subject_keys) if k in entry and entry[k] != "*"}
        return cls(tuple((k, v) for k, v in named.items() if k in target_keys),
                   tuple((k, v) for k, v in named.items() if k not in target_keys),
                   tuple(sorted(versions.conditions(entry).items())), where)

    @property
    def specificity(self) -> int:
        return len(self.target) + len(self.subject) + len(self.conditions)

    def matches(self, values: dict[str, str], known: dict[str, tuple[str, ...]] | None = None) -> bool:
        """The cell's target ``values`` and the model's facts (``subject.facts``) meet every key named."""
        return all(any(fnmatch.fnmatch(values.get(k, ""), p) for p in pats) for k, pats in self.target) \
            and all(any(fnmatch.fnmatch(v, p) for p in pats for v in (known or {}).get(k, ())) for k, pats in self.subject) \
            and versions.holds(dict(self.conditions))

    def could_share_a_cell(self, other: "Rule") -> bool:
        """Whether some cell could meet both (keys only one names, or keys of another kind such as model and
        model_type, are taken to meet: the check errs towards calling two entries ambiguous)."""
        mine, theirs = dict(self.target + self.subject), dict(other.target + other.subject)
        if not all(_globs_meet(mine[k], theirs[k]) for k in mine.keys() & theirs.keys()):
            return False
        a, b = dict(self.conditions), dict(other.conditions)
        return all(_specifiers_meet(a[k], b[k]) for k in a.keys() & b.keys())

    def describe(self) -> str:
        keys = [f"{k}={'|'.join(v)}" for k, v in self.target + self.subject] + [f"{k}{v}" for k, v in self.conditions]
        return f"{self.where} ({' '.join(keys) or 'no keys'})"


def _glob_meets(p: str, q: str) -> bool:
    if p == q:
        return True
    if not WILDCARD.search(p):
        return fnmatch.fnmatchcase(p, q)
    if not WILDCARD.search(q):
        return fnmatch.fnmatchcase(q, p)
    # two globs: their literal heads and tails must agree (a fair test for the patterns these files use)
    hp, hq = WILDCARD.split(p)[0], WILDCARD.split(q)[0]
    tp, tq = WILDCARD.split(p)[-1], WILDCARD.split(q)[-1]
    return (hp.startswith(hq) or hq.startswith(hp)) and (tp.endswith(tq) or tq.endswith(tp))


def _globs_meet(ps: tuple[str, ...], qs: tuple[str, ...]) -> bool:
    return any(_glob_meets(p, q) for p in ps for q in qs)


def _specifiers_meet(a: str, b: str) -> bool:
    """Whether a version satisfies both specifier sets (tried on each bound they name and its neighbours)."""
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version
    sa, sb = SpecifierSet(a), SpecifierSet(b)
    tried = {"0", "99999"}
    for spec in (*sa, *sb):
        r = Version(spec.version.replace(".*", "")).release
        tried |= {".".join(map(str, x)) for x in (r, (*r, 1), (*r[:-1], r[-1] + 1))}
        if r[-1] > 0:
            tried |= {".".join(map(str, x)) for x in ((*r[:-1], r[-1] - 1), (*r[:-1], r[-1] - 1, 999))}
    return any(sa.contains(v, prereleases=True) and sb.contains(v, prereleases=True) for v in tried)


def _meet(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...] | None:
    """The literal values both pattern sets take (None where a glob meets a glob: not listed)."""
    out = []
    for p in a:
        for q in b:
            if p == q or not WILDCARD.search(p) and fnmatch.fnmatchcase(p, q):
                out.append(p)
            elif not WILDCARD.search(q) and fnmatch.fnmatchcase(q, p):
                out.append(q)
            elif _glob_meets(p, q):
                return None
    return tuple(out)


def _decided_by(a: Rule, b: Rule, c: Rule) -> bool:
    """Whether ``c`` (more specific) matches every cell both ``a`` and ``b`` match: each key it names is named by
    one of them with values it takes, and its version conditions are theirs."""
    keys = {}
    for k, pats in (*a.target, *a.subject, *b.target, *b.subject):
        keys[k] = _meet(keys[k], pats) if k in keys and keys[k] is not None else (None if k in keys else pats)
    if not set(c.conditions) <= set(a.conditions) | set(b.conditions):
        return False
    return all(keys.get(k) is not None and all(not WILDCARD.search(v) and any(fnmatch.fnmatchcase(v, p) for p in pats)
                                              for v in keys[k]) for k, pats in (*c.target, *c.subject))


def check_ties(items: Iterable[T], rule_of: Callable[[T], Rule], file: str) -> None:
    """Raise AmbiguousEntries for two entries of equal specificity that could both apply to a cell no more
    specific entry decides."""
    rules = [rule_of(item) for item in items]
    for i, rule in enumerate(rules):
        for other in rules[:i]:
            if other.specificity != rule.specificity or not rule.could_share_a_cell(other):
                continue
            if any(c.specificity > rule.specificity and _decided_by(other, rule, c) for c in rules):
                continue
            raise AmbiguousEntries(
                f"{file}: {other.describe()} and {rule.describe()} name as many keys ({rule.specificity}) and "
                "could both apply to one cell that no more specific entry decides; make one of them more specific, "
                "their keys disjoint, or add an entry for the cells they share")


def best(items: Iterable[T], rule_of: Callable[[T], Rule], values: dict[str, str],
         known: dict[str, tuple[str, ...]] | None = None) -> T | None:
    """The most specific item whose rule matches (ties were refused at load by check_ties)."""
    found, score = None, -1
    for item in items:
        rule = rule_of(item)
        if rule.specificity > score and rule.matches(values, known):
            found, score = item, rule.specificity
    return found


# ----------------------------------------------------------------------------------- claim and evidence
@dataclass(frozen=True)
class Claim:
    """Why an entry says what it says: ``reason`` the claim, ``evidence`` what was measured (when, on what)."""
    reason: str
    evidence: str = ""

    @property
    def text(self) -> str:
        """Claim and evidence as one line of a test report."""
        return f"{self.reason} {self.evidence}".strip() if self.evidence else self.reason


def shared_reasons(data: dict[str, Any], file: str) -> dict[str, Claim]:
    """The file's ``[reasons.<id>]`` table: claims several entries name with ``reason = "@<id>"``."""
    out = {}
    for rid, value in data.get("reasons", {}).items():
        if not isinstance(value, dict) or not str(value.get("reason", "")).strip():
            raise ValueError(f"{file}: [reasons.{rid}] needs a reason (and may have evidence)")
        out[rid] = Claim(str(value["reason"]).strip(), str(value.get("evidence", "")).strip())
    return out


def claim(entry: dict, shared: dict[str, Claim], where: str) -> Claim:
    """An entry's claim: its own reason (+ evidence), or the shared one it names with reason = "@<id>"."""
    reason = str(entry.get("reason", "")).strip()
    if not reason:
        raise ValueError(f"{where}: every entry needs a reason (the claim; evidence = what was measured)")
    if reason.startswith("@"):
        if reason[1:] not in shared:
            raise ValueError(f"{where}: reason {reason!r} names no [reasons.{reason[1:]}] table; known {sorted(shared)}")
        if entry.get("evidence"):
            raise ValueError(f"{where}: a shared reason {reason!r} carries its own evidence")
        return shared[reason[1:]]
    return Claim(reason, str(entry.get("evidence", "")).strip())
