"""The version axis: its data file, and the "what changes on upgrade" view on records."""
from __future__ import annotations

from hfmatrix.report import upgrade


def _rec(node, outcome="passed", err=None, model="bert", **versions):
    return {"nodeid": node, "model": model, "check": node.split("::")[-1].split("[")[0].removeprefix("test_"),
            "outcome": outcome, "measures": {} if err is None else {"max_abs_err": err},
            "versions": versions or {"transformers": "5.24.0"}, "message": "boom" if outcome == "failed" else ""}


def test_axis_file_declares_bases_and_envs_that_exist():
    from pathlib import Path
    root = Path(upgrade.AXIS_FILE).parents[1]
    vs = upgrade.variants()
    assert {v["name"] for v in vs} >= {"cpu-4.57", "openvino-2026.3"}
    for v in vs:
        assert (root / "envs" / f"{v['env']}.txt").is_file(), v
        assert v["base"] in {"cpu", "openvino", "onnxruntime"} and v["reason"]


def test_view_lists_outcome_and_error_changes_only():
    old = [_rec("s/test_parity.py::test_parity[bert@torch-cpu-fp32]@bert", err=1e-6, transformers="4.57.6"),
           _rec("s/test_parity.py::test_parity[t5@torch-cpu-fp32]", err=1e-5, model="t5", transformers="4.57.6"),
           _rec("s/test_generate.py::test_generate_greedy[t5@torch-cpu-fp32]", "failed", model="t5", transformers="4.57.6"),
           _rec("s/test_load.py::test_load[vit@torch-cpu-fp32]", model="vit", transformers="4.57.6")]
    new = [_rec("s/test_parity.py::test_parity[bert@torch-cpu-fp32]@bert", err=1.5e-6),   # within 2x: no change
           _rec("s/test_parity.py::test_parity[t5@torch-cpu-fp32]", err=5e-5, model="t5"),  # 5x: a change
           _rec("s/test_generate.py::test_generate_greedy[t5@torch-cpu-fp32]", model="t5"),  # failed -> passed
           _rec("s/test_load.py::test_load[clip@torch-cpu-fp32]", model="clip")]
    view = upgrade.compare_sessions(old, new)
    assert view["compared"] == 3 and view["only_before"] == 1 and view["only_after"] == 1
    assert view["versions"] == {"transformers": ["4.57.6", "5.24.0"]}
    got = {(r["model"], r["check"], r["change"]) for r in view["changes"]}
    assert got == {("t5", "parity", "error"), ("t5", "generate_greedy", "outcome")}
    md = "\n".join(upgrade.markdown([{"before": "cpu-4.57", "after": "cpu", "axis": "transformers", **view}]))
    assert "cpu-4.57 → cpu (transformers 4.57.6 → 5.24.0)" in md and "| t5 | generate_greedy | outcome | failed | passed |" in md


def test_views_pair_declared_variants_with_their_base_older_first():
    by = {"cpu": [_rec("a::test_x[m]", err=1e-3)], "cpu-4.57": [_rec("a::test_x[m]", err=1e-6, transformers="4.57.6")]}
    (view,) = upgrade.upgrade_views(by)
    assert (view["before"], view["after"]) == ("cpu-4.57", "cpu") and view["changes"][0]["after_error"] == 1e-3
    assert upgrade.upgrade_views({"cpu": by["cpu"]}) == []  # no variant session: no view


def test_version_conditions_select_entries_by_the_installed_release(tmp_path):
    import pytest

    from hfmatrix import negative, versions
    from hfmatrix.compare import known_entry
    installed = versions.installed("transformers")
    assert installed and versions.satisfies("transformers", f"=={installed}")
    assert not versions.satisfies("transformers", f"!={installed}") and not versions.satisfies("no-such-dist", ">=0")
    with pytest.raises(ValueError, match="not a version specifier"):
        versions.conditions({"transformers": "five"})
    # a known bug for this release only matches here; one for another release does not
    kf = tmp_path / "known.toml"
    kf.write_text(f'[[known_bug]]\ncheck = "parity"\ntransformers = "=={installed}"\nraises = "ToleranceExceeded"\nreason = "here"\n'
                  f'[[known_bug]]\ncheck = "generate_greedy"\ntransformers = "!={installed}"\nraises = "TokensDiffer"\nreason = "elsewhere"\n')
    assert known_entry("parity", "m", "torch", "cpu", "fp32", path=kf)["reason"] == "here"
    assert known_entry("generate_greedy", "m", "torch", "cpu", "fp32", path=kf) is None
    # an expectation with a condition that holds is more specific than one without; a list of model patterns matches any
    cat = tmp_path / "cases.toml"
    cat.write_text(f'''[[case]]
id = "c"
stage = "run"
mutation = "ids_value"
description = "d"
[[case.expect]]
backend = "torch"
raises = "IndexError"
match = "x"
reason = "any release"
[[case.expect]]
backend = "torch"
model = ["a", "b*"]
transformers = "=={installed}"
raises = "ValueError"
match = "y"
reason = "this release"
''')
    case = negative.load_catalogue(cat)["c"]
    assert case.expectation("bx", "torch").reason == "this release"
    assert case.expectation("c", "torch").reason == "any release"


def _session(results, name, records, shard="all", complete=True):
    import json
    d = results / name
    d.mkdir(parents=True, exist_ok=True)
    (d / f"records-{shard}.jsonl").write_text("".join(json.dumps({"session": name, **r}) + "\n" for r in records))
    counts = {}
    for r in records:
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
    (d / f"meta-{shard}.json").write_text(json.dumps({"session": name, "complete": complete, "counts": counts,
                                                       "finished": 1.0}))


def test_report_shows_the_upgrade_view_and_sorts_failures_by_their_reruns(tmp_path):
    from hfmatrix.report import markdown, merge
    cell = "hfmatrix/suites/test_parity.py::test_parity[{}@torch-cpu-fp32]"
    base = dict(check="parity", backend="torch", device="cpu", precision="fp32", arch_class="decoder")
    _session(tmp_path, "cpu", [
        {**_rec(cell.format("t5"), "failed", 5e-5, model="t5"), **base, "model": "t5"},
        {**_rec(cell.format("gpt2"), "failed", 1e-3, model="gpt2"), **base, "model": "gpt2"},
        {**_rec(cell.format("llama"), "passed", 1e-6, model="llama"), **base, "model": "llama"}])
    _session(tmp_path, "cpu-4.57", [
        {**_rec(cell.format("t5"), "passed", 1e-6, model="t5", transformers="4.57.6"), **base, "model": "t5"},
        {**_rec(cell.format("llama"), "passed", 1e-6, model="llama", transformers="4.57.6"), **base, "model": "llama"}])
    # the re-run of cpu's failing cells (absolute paths, as hfmatrix.rerun names them): t5 passes, gpt2 does not
    _session(tmp_path, "cpu", [{**_rec("/abs/" + cell.format("t5"), "passed", model="t5"), **base, "model": "t5", "attempt": 1},
                               {**_rec("/abs/" + cell.format("gpt2"), "failed", model="gpt2"), **base, "model": "gpt2", "attempt": 1}],
             shard="all.rerun1")
    m = merge.merge(tmp_path)
    assert m.sessions["cpu"].counts["failed"] == 2 and m.sessions["cpu"].complete  # re-runs never count
    assert m.reruns["cpu"] == {"rerun": 2, "flaky": ["test_parity[t5@torch-cpu-fp32]"],
                               "failed_every_time": ["test_parity[gpt2@torch-cpu-fp32]"]}
    (view,) = m.upgrade
    assert (view["before"], view["after"]) == ("cpu-4.57", "cpu")
    assert [(r["model"], r["before_outcome"], r["after_outcome"]) for r in view["changes"]] == [("t5", "passed", "failed")]
    md = markdown.render(m)
    assert "## Flaky or broken" in md and "| cpu | 2 | 1 | 1 |" in md
    assert "What changes on upgrade: cpu-4.57 → cpu (transformers 4.57.6 → 5.24.0)" in md
    from hfmatrix.report import html
    page, _ = html.render(m)
    assert "What changes on upgrade: cpu-4.57 → cpu" in page and "Flaky or broken" in page
