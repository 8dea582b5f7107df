"""The auto-zoo's part of the report: model types passing per architecture class and the failures by
stage. Pure functions of result records (no ML stack: the report env has none); the sweep's own
summary (``python -m hfmatrix.zoo.auto summarize``) uses the same table."""
from __future__ import annotations

import re
from typing import Any, Iterable

from .records import BAD_OUTCOMES

CHECK_PREFIX = "autozoo_"
COLUMNS = ("types", "ran", "passed", "text_path_only", "known_bug", "rule_gap", "skipped")
GAP_MARK = "auto-zoo rule gap"   # in the xfail reason of an auto_gaps.toml entry (hfmatrix.zoo.auto.GAP_PREFIX)


_STAGE_FAILURE = re.compile(r"^(?:[\w.]*StageFailure: )?(?:\[\w+\] )?")


def failure_text(message: str | None, limit: int = 240) -> str:
    """The error of a failed auto-zoo record in one line: the pytest report's `E` lines (the stage
    failure and the exception under it), without the traceback around them."""
    lines = (message or "").strip().splitlines()
    errors = [ln[1:].strip() for ln in lines if ln.startswith("E ")]
    text = " ".join(errors) if errors else (lines[0].strip() if lines else "")
    return _STAGE_FAILURE.sub("", text, count=1)[:limit]


def slim(record: dict[str, Any]) -> dict[str, Any]:
    """What the report keeps of one auto-zoo record."""
    m = record.get("measures") or {}
    if not isinstance(m, dict):
        m = {}
    return {"model": record.get("model"), "outcome": record.get("outcome"),
            "arch_class": record.get("arch_class") or m.get("arch_class", ""),
            "role": m.get("role") or (record.get("check") or "")[len(CHECK_PREFIX):],
            "duration": record.get("duration"),
            "message": failure_text(record.get("message"), 300) if record.get("outcome") != "xfailed"
            else (record.get("message") or "")[:300],
            "measures": {k: m[k] for k in ("stage", "ran_text_path_only", "peak_rss_mb", "class_name") if k in m}}


def coverage_table(records: Iterable[dict]) -> dict[str, dict[str, int]]:
    """Passing model types per architecture class, from result records (dicts with model, outcome,
    arch_class, measures). A type passes when every one of its classes that ran (base, head) passed;
    ``text_path_only`` counts passing multimodal types whose image/audio path did not run; a type that
    fails only where recorded is a ``known_bug`` (a library bug, auto_known.toml) or a ``rule_gap``
    (auto_gaps.toml: the generic rules do not fit it yet)."""
    by_type: dict[str, dict[str, Any]] = {}
    for r in records:
        mt = r.get("model") or ""
        if not mt:
            continue
        m = r.get("measures") or {}
        entry = by_type.setdefault(mt, {"arch_class": "", "outcomes": [], "text_only": False, "gap": False})
        entry["arch_class"] = entry["arch_class"] or r.get("arch_class") or m.get("arch_class", "")
        entry["outcomes"].append(r.get("outcome"))
        entry["text_only"] |= bool(m.get("ran_text_path_only"))
        entry["gap"] |= r.get("outcome") == "xfailed" and GAP_MARK in (r.get("message") or "")
    table: dict[str, dict[str, int]] = {}
    for mt, e in by_type.items():
        row = table.setdefault(e["arch_class"] or "unclassified", dict.fromkeys(COLUMNS, 0))
        row["types"] += 1
        ran = [o for o in e["outcomes"] if o != "skipped"]
        if not ran:
            row["skipped"] += 1
            continue
        row["ran"] += 1
        if all(o == "passed" for o in ran):
            row["passed"] += 1
            row["text_path_only"] += int(e["text_only"])
        elif _only_gaps(e):
            row["rule_gap"] += 1
        elif any(o == "xfailed" for o in ran):
            row["known_bug"] += 1
    table["total"] = {k: sum(row[k] for row in table.values()) for k in COLUMNS}
    return table


def _only_gaps(e: dict) -> bool:
    return bool(e["gap"]) and "failed" not in e["outcomes"]


def failures_by_stage(records: Iterable[dict], outcomes: tuple[str, ...] = BAD_OUTCOMES) -> dict[str, list[dict]]:
    """{stage: [{model, role, outcome, message}]} for records that did not pass (known bugs apart)."""
    out: dict[str, list[dict]] = {}
    for r in records:
        if r.get("outcome") not in outcomes:
            continue
        m = r.get("measures") or {}
        stage = ("xpassed (a known failure no longer fails: remove it from auto_known.toml)"
                 if r.get("outcome") == "xpassed" else m.get("stage") or r.get("outcome") or "?")
        out.setdefault(stage, []).append({"model": r.get("model"), "role": r.get("role") or m.get("role", ""),
                                          "outcome": r.get("outcome"), "message": failure_text(r.get("message"), 200)})
    return dict(sorted(out.items(), key=lambda kv: -len(kv[1])))


def markdown(records: list[dict], max_listed: int = 40) -> list[str]:
    if not records:
        return []
    table = coverage_table(records)
    out = ["## Auto-zoo", "",
           "Every transformers model type, tiny and random (`nox -s zoo`): a type passes when its base and "
           "head model both ran config → build → forward → determinism → save → load → reload.", "",
           "| architecture class | types | ran | passed | of which text path only | known bug | rule gap | skipped |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, row in sorted(table.items(), key=lambda kv: (kv[0] == "total", kv[0])):
        label = f"**{name}**" if name == "total" else name
        out.append(f"| {label} | " + " | ".join(str(row[k]) for k in COLUMNS) + " |")
    out.append("")
    failed = failures_by_stage(records)
    if not failed:
        out += ["No auto-zoo failures outside the recorded known bugs and rule gaps.", ""]
        return out
    out += [f"### Auto-zoo failures by stage ({sum(map(len, failed.values()))})", ""]
    for stage, items in failed.items():
        out.append(f"- **{stage}** ({len(items)}): " + "; ".join(
            f"`{i['model']}` {i['role']}: {i['message'].replace('|', '/')[:120]}" for i in items[:max_listed])
            + (f"; … {len(items) - max_listed} more" if len(items) > max_listed else ""))
    out.append("")
    return out
