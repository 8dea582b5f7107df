"""`hfmatrix report` on damaged or odd results folders: every problem is named (file and what is
wrong), counted where it changes the verdict, and never crashes the merge. Real data files written
the way the plugin, nox and the perf bench write them (tests/test_report.py's helpers).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_report import rec, run_report, write_session

from hfmatrix.records import write_json_atomic
from hfmatrix.report.merge import _perf_entry, _reason, merge, software_device


def _two_passes(res: Path, session: str = "cpu", **kw) -> Path:
    return write_session(res, session, [rec(session, "bert", "passed", i=0), rec(session, "gpt2", "passed", i=1)], **kw)


def test_unreadable_side_files_are_named(tmp_path: Path) -> None:
    res = tmp_path / "results"
    d = _two_passes(res)
    (d / "hwprobe.json").write_text("{not json")
    (d / "junit.xml").write_text("<testsuites><testsuite tests='2'")      # truncated: the job was killed
    (d / "meta-extra.json").write_text("[1, 2]")                         # JSON, but not an object
    m = merge(res)
    s = m.sessions["cpu"]
    assert any(p.startswith(f"{d / 'hwprobe.json'}: unreadable JSON") for p in m.problems), m.problems
    assert any(p.startswith(f"{d / 'junit.xml'}: unreadable junit XML") for p in m.problems), m.problems
    assert f"{d / 'meta-extra.json'}: meta is not a JSON object" in m.problems
    assert s.hwprobe == {} and s.junit == {}
    assert s.problems and all(p.startswith(f"{d}/") for p in s.problems)   # the session lists its own files
    assert s.counts["passed"] == 2                                         # the records still count


def test_junit_count_disagreeing_with_records(tmp_path: Path) -> None:
    res = tmp_path / "results"
    d = _two_passes(res)
    (d / "junit.xml").write_text('<testsuites><testsuite name="pytest" tests="3" failures="0" errors="0" skipped="0"/></testsuites>')
    m = merge(res)
    assert m.sessions["cpu"].junit == {"cpu": {"tests": 3, "failures": 0, "errors": 0, "skipped": 0}}
    assert "junit.xml lists 3 tests, records hold 2" in m.sessions["cpu"].problems


def test_meta_counts_more_tests_than_records(tmp_path: Path) -> None:
    """A complete meta that saw 3 tests but only 2 records came back: records were lost."""
    res = tmp_path / "results"
    d = _two_passes(res, meta=False)
    write_json_atomic(d / "meta-all.json", {"session": "cpu", "shard": "all", "complete": True, "finished": 2.0,
                                            "counts": {"passed": 3}})
    m = merge(res)
    assert "session cpu shard all: meta counts 3 tests, records hold 2" in m.problems
    write_json_atomic(d / "meta-all.json", {"session": "cpu", "shard": "all", "complete": True, "finished": 2.0,
                                            "counts": {"passed": 2}})
    assert not merge(res).problems


def test_shards_found_twice_disagreeing_or_mixed_with_a_whole_run(tmp_path: Path) -> None:
    res = tmp_path / "results"
    for folder, shard in (("a", "1of2"), ("b", "1of2"), ("c", "2of3")):
        write_session(res, "cpu", [rec("cpu", "bert", "passed", shard=shard)], shard=shard, folder=folder)
    _two_passes(res, folder="d")
    m = merge(res)
    s = m.sessions["cpu"]
    assert "session cpu: shard 1of2 found in several folders (a, b): counts include both" in m.problems
    assert "shards disagree on the shard count: ['1of2', '2of3', 'all']" in s.incomplete, s.incomplete
    assert "missing shard(s) 2of2 of 2" in s.incomplete and "missing shard(s) 1of3, 3of3 of 3" in s.incomplete
    assert "session cpu: both an unsharded run and shards; counts include both" in s.problems
    assert not s.complete


def test_meta_without_a_finish_is_incomplete(tmp_path: Path) -> None:
    res = tmp_path / "results"
    d = _two_passes(res, meta=False)
    write_json_atomic(d / "meta-all.json", {"session": "cpu", "shard": "all", "started": 1.0})
    s = merge(res).sessions["cpu"]
    assert s.incomplete == ["shard all: cpu/meta-all.json has no finish time"]
    write_json_atomic(d / "meta-all.json", {"session": "cpu", "shard": "all", "started": 1.0, "finished": 3.0})
    assert merge(res).sessions["cpu"].complete


def test_unknown_outcome_counts_as_an_error(tmp_path: Path) -> None:
    res = tmp_path / "results"
    write_session(res, "cpu", [rec("cpu", "bert", "exploded", i=0), rec("cpu", "bert", "exploded", i=1)])
    m = merge(res)
    msgs = [p for p in m.problems if "unknown outcome 'exploded'" in p]
    assert len(msgs) == 2 and "(counted as error)" in msgs[0]              # one per test, not per repeat
    assert m.sessions["cpu"].counts == {"error": 2} and m.sessions["cpu"].n_bad == 2


def test_perf_from_bench_files_and_from_records(tmp_path: Path) -> None:
    res = tmp_path / "results"
    perf = {"p50_ms": 12.0, "baseline_ms": 10.0, "regression": True}
    write_session(res, "cpu", [rec("cpu", "bert", "failed", check="perf_vs_baseline", measures=perf)])
    write_session(res, "openvino", [rec("openvino", "bert", "passed", check="perf_vs_baseline", backend="openvino",
                                        measures={"p50_ms": 5.0, "baseline_ms": 5.0})])
    (res / "openvino" / "bench-all.json").write_text(json.dumps({"session": "openvino", "benchmarks": [
        {"model": "bert", "backend": "openvino", "metric": "latency", "p50_ms": 4.0, "baseline_ms": 5.0,
         "status": "ok", "report": {"forward": {"latency": {"values": [0.004, 0.0041]}}}}]}))
    (res / "odd").mkdir()
    (res / "odd" / "bench.json").write_text(json.dumps({"benchmarks": "none"}))
    (res / "odd" / "bench-2.json").write_text('"a string"')
    m = merge(res)
    by_session = {e["session"]: e for e in m.perf}
    assert set(by_session) == {"cpu", "openvino", "odd"} and len(m.perf) == 3   # a session's bench file wins over its records
    assert by_session["odd"]["value"] is None and by_session["odd"]["source"] == "odd/bench.json"   # an object is one entry
    cpu, ov = by_session["cpu"], by_session["openvino"]
    assert cpu["source"] == "records" and cpu["ratio"] == 1.2 and cpu["regression"] and cpu["metric"] == "perf_vs_baseline"
    assert ov["source"] == "openvino/bench-all.json" and ov["ratio"] == 0.8 and not ov["regression"]
    assert ov["samples"] == pytest.approx([4.0, 4.1])                                   # seconds in the bench file, ms here
    assert f"{res / 'odd' / 'bench-2.json'}: no list of benchmarks" in m.problems


def test_perf_entry_is_forgiving() -> None:
    e = _perf_entry({"median_ms": "7.5", "baseline": 0, "verdict": "Regressed", "samples": [1, "x", None, 2.5],
                     "threshold": "1.3", "name": "forward"}, "cpu", "x.json")
    assert e["value"] == 7.5 and e["ratio"] is None                         # no ratio against a zero baseline
    assert e["regression"] and e["status"] == "regressed" and e["metric"] == "forward"
    assert e["samples"] == [1.0, 2.5] and e["threshold"] == 1.3
    assert _perf_entry({"report": {"forward": None}}, "cpu", "x")["samples"] == []


def test_skip_reasons_and_software_devices() -> None:
    assert _reason("Skipped: [hardware-absent] no CUDA device\nmore") == "no CUDA device"
    assert _reason("   ") == "(no reason given)"
    assert software_device({"adapter": {"isFallbackAdapter": True}})
    assert software_device([{"renderer": "ANGLE (Google, Vulkan 1.3.0 (SwiftShader Device))"}])
    assert not software_device({"adapter": {"isFallbackAdapter": False, "vendor": "nvidia"}})
    assert not software_device(None)


def test_markdown_leads_with_unreadable_files_and_names_the_host(tmp_path: Path, capsys) -> None:
    res = tmp_path / "results"
    d = _two_passes(res)
    with (d / "records-all.jsonl").open("a") as f:
        f.write('{"run_id": "r", "check": "parity", "outc')                 # a worker killed mid-line
    write_json_atomic(d / "hwprobe.json", {"host": {"platform": "Linux-6.8-x86_64"},
                                           "backends": {"cpu": {"available": True, "reason": "AVX-512, 8 cores"},
                                                        "cuda": {"available": False, "reason": "no GPU"}}})
    (d / "bench-all.json").write_text(json.dumps({"session": "cpu", "benchmarks": [
        {"model": "bert", "backend": "torch", "p50_ms": 4.0, "baseline_ms": 4.1, "status": "ok"}]}))
    rc, _, _ = run_report(res, capsys)
    md = (res / "matrix.md").read_text()
    assert rc == 1 and md.splitlines()[2].startswith("❌ **Unreadable results files**")   # no check failed, yet red
    assert "Linux-6.8-x86_64; available: cpu; AVX-512, 8 cores" in md
    assert "## Perf regressions\n\nNone among 1 benchmark entries." in md


def test_markdown_caps_problems_and_names_an_unreadable_previous_run(tmp_path: Path, capsys) -> None:
    res = tmp_path / "results"
    _two_passes(res)
    for i in range(55):
        (res / "cpu" / f"bench-{i:02d}.json").write_text("[" * (i + 1))
    (tmp_path / "old.json").write_text("<html>not the artifact</html>")
    run_report(res, capsys, "--previous", str(tmp_path / "old.json"))
    md = (res / "matrix.md").read_text()
    assert md.count("unreadable JSON") == 50 and "- … 5 more (see matrix.json)" in md
    assert len(json.loads((res / "matrix.json").read_text())["problems"]) == 55
    changed = md[md.index("## What changed"):]
    assert changed.startswith("## What changed\n\n⚠️ unreadable previous matrix.json: ")


def test_what_a_failure_says_it_compared() -> None:
    from hfmatrix.report import explain
    tol = {"atol": 1e-5, "rtol": "per output", "source": "target.torch.fp32", "reason": "assert_close default"}
    assert explain.tolerance_text(tol) == "atol 1.0e-05 · rtol per output (target.torch.fp32 — assert_close default)"
    assert explain.tolerance_text(0.01) == "1.0e-02" and explain.tolerance_text(None) == ""
    assert explain.tolerance_text("ulp 2") == "ulp 2"
    long_ids = list(range(40))
    pairs = dict(explain.compared({"measures": {"expected_ids": [long_ids], "actual_ids": [1, 2], "first_diff": [0, 3],
                                                "failed_row": 1, "max_abs_err": 0.5, "seed": 7}}))
    assert pairs["reference ids"] == "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, …]"
    assert pairs["backend ids"] == "[1, 2]" and pairs["first differing (row, position)"] == "[0, 3]"
    assert pairs["batch row that differs from its single run"] == "1" and pairs["max |Δ|"] == "0.5"
    assert pairs["other measures"] == '{"seed":7}'
    assert explain.compared({"measures": "not a dict"}) == []


def test_previous_matrix_cells_that_do_not_resolve_are_ignored() -> None:
    from hfmatrix.report import changes
    doc = {"rows": [{"model": "bert"}], "columns": [{"label": "cpu"}], "checks": ["parity"],
           "cells": [{"row": 0, "col": 0, "check": 0, "counts": {"failed": 1}, "worst_max_abs_err": "2e-3"},
                     {"row": 5, "col": 0, "check": 0, "counts": {"passed": 1}},         # a row that is not there
                     {"row": 0, "col": 0, "check": "generate", "counts": {"xfailed": 1}},
                     {"row": 0, "col": 0, "check": "memory", "counts": {}}]}
    assert changes.cells_of_doc(doc) == {("bert", "cpu", "parity"): ("fail", 2e-3), ("bert", "cpu", "generate"): ("xfail", None),
                                         ("bert", "cpu", "memory"): ("skip", None)}
    assert not changes.any_change(None) and not changes.any_change({"pass_to_fail": [], "new_cells": 3})


def test_auto_zoo_section_from_odd_records() -> None:
    from hfmatrix import autozoo_report as autozoo
    recs = [{"model": "bert", "outcome": "passed", "arch_class": "encoder", "measures": "garbage"},
            {"model": "", "outcome": "failed"},                                            # no model type: not counted
            {"model": "rwkv", "outcome": "skipped", "measures": {"arch_class": "decoder"}}]
    assert autozoo.slim(recs[0])["measures"] == {} and autozoo.slim(recs[2])["arch_class"] == "decoder"
    kept = [autozoo.slim(r) for r in recs]                                             # what merge keeps
    table = autozoo.coverage_table(kept)
    assert table["encoder"]["passed"] == 1 and table["decoder"]["skipped"] == 1 and table["decoder"]["ran"] == 0
    md = autozoo.markdown([kept[0], kept[2]])
    assert "No auto-zoo failures outside the recorded known bugs and rule gaps." in md
    assert autozoo.markdown([]) == []


def test_coverage_data_files_and_no_data(tmp_path: Path) -> None:
    """Which files are a session's coverage data: not the combined one on top, not SQLite's side files,
    not the HTML report's folder; no data at all is said, not a crash (no coverage.Coverage() made here)."""
    from hfmatrix.report import coverage as cov_mod
    res = tmp_path / "results"
    assert cov_mod.combine(res)["error"] == "no coverage data under results/<session>/.coverage*"
    for name in ("cpu/.coverage.vm.pid1.X", "cpu/.coverage.vm.pid1.X-journal", "cpu/.coverage.vm.pid2.Y.lock",
                 ".coverage", "htmlcov/.coverage.z", "tests/.coverage"):
        (res / name).parent.mkdir(parents=True, exist_ok=True)
        (res / name).write_text("")
    (res / "openvino" / ".coverage.dir").mkdir(parents=True)
    assert [str(p.relative_to(res)) for p in cov_mod.data_files(res)] == ["cpu/.coverage.vm.pid1.X", "tests/.coverage"]
