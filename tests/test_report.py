"""`hfmatrix report`: merging sessions and shards, INCOMPLETE and corrupt results, matrix.md content,
exit codes and closing line, coverage combine + badge, and the page in a real headless browser.

Results are written with hfmatrix.records.Record / RecordWriter: real data files, the same the
plugin writes, not a fake of the report.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from hfmatrix import skips
from hfmatrix.records import Record, RecordWriter, write_json_atomic
from hfmatrix.report import coverage as cov_mod
from hfmatrix.report import main as report_main
from hfmatrix.report.merge import merge
from hwprobe.browser import chromium_path

ROOT = Path(__file__).resolve().parents[1]
CLOSING = re.compile(r"^(\d+) passed, (\d+) failed, (\d+) skipped$")
FP32 = {"atol": 1e-5, "rtol": 1.3e-6, "reason": "fp32 assert_close default", "source": "target.torch.fp32"}


def rec(session: str, model: str, outcome: str, *, check: str = "parity", backend: str = "torch",
        device: str = "cpu", precision: str = "fp32", arch: str = "encoder", err: float | None = None,
        tol: dict | None = None, kind: str | None = None, msg: str = "", evidence: dict | None = None,
        shard: str = "all", i: int = 0, frac: float | None = None, measures: dict | None = None) -> Record:
    measures = dict(measures or {})
    if err is not None:
        measures["max_abs_err"] = err
        measures["tolerance"] = tol or FP32
    if frac is not None:
        measures["tol_fraction"] = frac
    return Record(run_id=f"run-{session}", session=session, check=check, outcome=outcome,
                  nodeid=f"hfmatrix/suites/test_{check}.py::test_{check}[{model}-{backend}-{precision}-{i}]",
                  backend=backend, device=device, precision=precision, model=model, arch_class=arch,
                  suite=f"test_{check}", skip_kind=kind, message=msg, measures=measures,
                  evidence=evidence if evidence is not None else {"torch_device": device},
                  versions={"torch": "2.13.0", "transformers": "5.24.0"}, duration=0.5, shard=shard)


def write_session(results: Path, session: str, records: list[Record], *, shard: str = "all",
                  folder: str | None = None, meta: bool = True, complete: bool = True) -> Path:
    d = results / (folder or session)
    w = RecordWriter(d / f"records-{shard}.jsonl")
    for r in records:
        w.write(r)
    w.close()
    if meta:
        write_json_atomic(d / f"meta-{shard}.json", {"session": session, "shard": shard, "complete": complete,
                                                     "started": 1.0, "finished": 2.0 if complete else None})
    return d


def run_report(results: Path, capsys, *extra: str) -> tuple[int, str, str]:
    rc = report_main(["--results-dir", str(results), "--no-coverage", *extra])
    out, err = capsys.readouterr()
    return rc, out, err


def closing(out: str) -> tuple[int, int, int]:
    last = out.rstrip("\n").splitlines()[-1]
    m = CLOSING.match(last)
    assert m, f"last line is not 'N passed, N failed, N skipped': {last!r}"
    return tuple(int(x) for x in m.groups())


@pytest.fixture
def matrix_results(tmp_path: Path) -> Path:
    """cpu (unsharded, complete) and onnxruntime (2 shards from two CI artifacts)."""
    res = tmp_path / "results"
    write_session(res, "cpu", [
        rec("cpu", "bert", "passed", err=2e-7, i=0, frac=0.09),
        rec("cpu", "bert", "passed", err=9e-7, i=1, frac=0.4),
        rec("cpu", "bert", "skipped", check="generate", kind=skips.UNSUPPORTED,
            msg="[unsupported-by-backend] encoder has no generate()", i=2),
        rec("cpu", "llama", "failed", arch="decoder", err=3.2e-3, i=3, frac=320.0,
            msg="AssertionError: max |Δ| 3.2e-03 > atol 1e-05", evidence={"torch_device": "cpu", "threads": 2}),
        rec("cpu", "llama", "passed", arch="decoder", check="generate", i=4),
        rec("cpu", "vit", "skipped", arch="vision", kind=skips.HARDWARE_ABSENT, msg="[hardware-absent] no camera", i=5),
        rec("cpu", "vit", "xfailed", arch="vision", kind=skips.KNOWN_BUG, msg="[known-bug] upstream #1", i=6),
    ])
    ort = dict(backend="onnxruntime", evidence={"providers": ["CPUExecutionProvider"]})
    write_session(res, "onnxruntime", [rec("onnxruntime", "bert", "passed", err=1.5e-6, shard="1of2", i=0, **ort),
                                       rec("onnxruntime", "llama", "crashed", arch="decoder", shard="1of2", i=1,
                                           msg="worker gw1 crashed (signal 9)", **ort)],
                  shard="1of2", folder="onnxruntime-1of2")
    write_session(res, "onnxruntime", [rec("onnxruntime", "bert", "passed", err=4e-6, shard="2of2", i=2, **ort),
                                       rec("onnxruntime", "vit", "skipped", arch="vision", shard="2of2", i=3,
                                           kind=skips.DEPENDENCY_MISSING, msg="[dependency-missing] no exporter for vit", **ort)],
                  shard="2of2", folder="onnxruntime-2of2")
    return res


def test_shards_merge_into_one_session(matrix_results: Path, capsys) -> None:
    m = merge(matrix_results)
    assert sorted(m.sessions) == ["cpu", "onnxruntime"]
    ort = m.sessions["onnxruntime"]
    assert sorted(ort.shards) == ["1of2", "2of2"] and ort.complete
    assert sorted(ort.dirs) == ["onnxruntime-1of2", "onnxruntime-2of2"]
    assert ort.counts == {"passed": 2, "crashed": 1, "skipped": 1}
    assert [c.label() for c in m.columns] == ["cpu · torch · cpu · fp32", "onnxruntime · cpu · fp32"]
    # rows: grouped by architecture class, then model
    assert m.rows == [("decoder", "llama"), ("encoder", "bert"), ("vision", "vit")]

    rc, out, _ = run_report(matrix_results, capsys)
    assert rc == 1
    assert closing(out) == (5, 2, 3)     # failed counts the crash too; xfailed is not a skip
    assert re.search(r"onnxruntime\s+2 passed, 0 failed, 1 skipped \(dependency-missing 1\), 1 crashed, 0 timed out\n", out)
    assert re.search(r"cpu\s+3 passed, 1 failed, 2 skipped \(hardware-absent 1, unsupported-by-backend 1\), "
                     r"0 crashed, 0 timed out, 1 xfailed\n", out)
    assert "FAIL: checks did not pass: 1 failed, 1 crashed" in out
    data = json.loads((matrix_results / "matrix.json").read_text())
    assert data["totals"]["passed"] == 5 and data["sessions"]["onnxruntime"]["complete"] is True


def test_matrix_md_content(matrix_results: Path, capsys) -> None:
    run_report(matrix_results, capsys)
    md = (matrix_results / "matrix.md").read_text()
    lines = md.splitlines()
    # the landing matrix: the curated zoo's 13 models × one column per backend target, nothing else
    header = next(l for l in lines if l.startswith("| class | model |"))
    assert header == "| class | model | onnxruntime · cpu · fp32 | torch · cpu · fp32 |"
    table = lines[lines.index(header) + 2:]
    table = table[:table.index("")]
    assert len(table) == 13 and sum("| – | – |" in l for l in table) == 10     # curated models that did not run
    # cpu: 2 parity passes (worst at 40% of its tolerance) + 1 typed skip; onnxruntime: 2 passes over two shards
    assert "| **encoder** | bert | ✓ | ✓ 40% |" in table
    assert "|  | llama | **✗ 1/1** | **✗ 1/2** 320× |" in table    # a crash there; 320× its tolerance here
    assert "| **vision** | vit | ○ | ⚑ |" in table                             # skipped only; known bug (+ a skip)
    # failures: the assertion, what was compared, the tolerance and its source, evidence, a rerun command
    fail = md[md.index("## Failures (2)"):md.index("## Auto-zoo") if "## Auto-zoo" in md else None]
    crash, failed = fail.split("\n- **")[1:3]
    assert crash.startswith("crashed** `llama` parity @ onnxruntime · cpu · fp32: worker gw1 crashed")
    assert "rerun: `nox -s onnxruntime -- 'hfmatrix/suites/test_parity.py::test_parity[llama-onnxruntime-fp32-1]'`" in crash
    assert failed.startswith("failed** `llama` parity @ cpu · torch · cpu · fp32: AssertionError: max \\|Δ\\| 3.2e-03 > atol 1e-05")
    assert "  - max |Δ|: 0.0032" in failed and "  - share of tolerance used: 320" in failed
    assert "  - tolerance: atol 1.0e-05 · rtol 1.3e-06 (target.torch.fp32 — fp32 assert_close default)" in failed
    assert '"threads":2' in failed
    assert "rerun: `nox -s cpu -- 'hfmatrix/suites/test_parity.py::test_parity[llama-torch-fp32-3]'`" in failed
    # skips grouped by kind, with their reasons
    sk = md[md.index("## Skips by kind"):]
    assert "### hardware-absent (1)" in sk and "- 1 × no camera — cpu" in sk
    assert "### unsupported-by-backend (1)" in sk and "encoder has no generate()" in sk
    assert "### dependency-missing (1)" in sk and "- 1 × no exporter for vit — onnxruntime" in sk
    assert "## Environments" in md and "| onnxruntime | complete | 1of2, 2of2 | 4 (0 / 4) |" in md
    assert "torch 2.13.0" in md
    assert "## Coverage" in md and "not combined (--no-coverage)" in md
    assert md.splitlines()[2].startswith("❌ **2 of 11 checks did not pass**")


def test_what_changed_since_the_previous_run(tmp_path: Path, capsys) -> None:
    res = tmp_path / "results"
    write_session(res, "cpu", [rec("cpu", "bert", "passed", err=1e-7, i=0), rec("cpu", "gpt2", "failed", arch="decoder", err=1e-3, i=1),
                               rec("cpu", "vit", "passed", arch="vision", err=1e-7, i=2), rec("cpu", "t5", "passed", err=1e-6, i=3),
                               rec("cpu", "clip", "passed", err=1e-6, i=4)])
    run_report(res, capsys)
    assert "No previous run to compare with" in (res / "matrix.md").read_text()
    import shutil
    shutil.rmtree(res / "cpu")
    write_session(res, "cpu", [rec("cpu", "bert", "failed", err=1e-3, i=0), rec("cpu", "gpt2", "passed", arch="decoder", err=1e-7, i=1),
                               rec("cpu", "vit", "skipped", arch="vision", kind=skips.DEPENDENCY_MISSING, msg="gone", i=2),
                               rec("cpu", "t5", "passed", err=5e-6, i=3), rec("cpu", "clip", "passed", err=1.9e-6, i=4)])
    run_report(res, capsys)
    assert (res / "previous" / "matrix.json").exists()          # the last report's, kept automatically
    md = (res / "matrix.md").read_text()
    assert md.index("## What changed") < md.index("## Curated models")
    changed = md[md.index("## What changed"):md.index("## Curated models")]
    assert "**❌ pass → fail (1)**: `bert` parity @ cpu · torch · cpu · fp32" in changed
    assert "**✅ fail → pass (1)**: `gpt2` parity" in changed
    assert "**new skips (1)**: `vit` parity @ cpu · torch · cpu · fp32 (pass → skip)" in changed
    growth = changed[changed.index("error grew"):]
    assert "`t5` parity @ cpu · torch · cpu · fp32 (1e-06 → 5e-06)" in growth and "clip" not in growth  # 1.9× is not 2×
    doc = json.loads((res / "matrix.json").read_text())
    assert [c["model"] for c in doc["changes"]["pass_to_fail"]] == ["bert"]
    # an explicit previous run (a CI artifact): the same first run, so the same changes
    rc = report_main(["--results-dir", str(res), "--no-coverage", "--previous", str(res / "previous" / "matrix.json")])
    capsys.readouterr()
    assert rc == 1 and json.loads((res / "matrix.json").read_text())["changes"]["fail_to_pass"][0]["model"] == "gpt2"
    page = (res / "index.html").read_text()
    assert page.index('id="changes"') < page.index('id="landing-sec"') and "data-kind='pass_to_fail'" in page


def test_hardware_absent_columns_fold_into_one_line(tmp_path: Path, capsys) -> None:
    res = tmp_path / "results"
    write_session(res, "cpu", [rec("cpu", "bert", "passed", err=1e-7)])
    why = "no CUDA device: torch.cuda.is_available() is False"
    write_session(res, "cuda", [rec("cuda", m, "skipped", device="cuda", precision=p, kind=skips.HARDWARE_ABSENT, msg=why, i=k)
                                for k, (m, p) in enumerate([("bert", "fp32"), ("bert", "fp16"), ("gpt2", "fp32")])])
    run_report(res, capsys)
    md = (res / "matrix.md").read_text()
    assert "| class | model | torch · cpu · fp32 |" in md                   # no cuda column
    assert f"Hardware absent — **cuda** (cuda: torch · cuda · fp16, torch · cuda · fp32): {why}" in md
    assert md.count("Hardware absent") == 1


BANNER = "[gw1] linux -- Python 3.11.7 /work/.nox/openvino/bin/python\n\n    def test_generate_greedy(case):\n>       assert x\nE   AssertionError: greedy ids differ\n"


def test_failures_say_what_was_compared(tmp_path: Path, capsys) -> None:
    """Greedy: the first differing position and both token sequences; batch: which row and the error.
    A record written before the plugin put the assertion first still shows the assertion, not the banner."""
    res = tmp_path / "results"
    write_session(res, "openvino", [
        rec("openvino", "gpt2", "failed", check="generate_greedy", backend="openvino", precision="bf16", arch="decoder", msg=BANNER,
            measures={"expected_ids": [[5, 6, 7, 8]], "actual_ids": [[5, 6, 9, 8]], "first_diff": [0, 2]}),
        rec("openvino", "bert", "failed", check="batch_equivalence", backend="openvino", err=4e-3, frac=12.0, i=1,
            msg="AssertionError: batch row 1 vs its single run: max |Δ| 0.004", measures={"failed_row": 1, "worst_output": "last_hidden_state"})])
    run_report(res, capsys)
    md = (res / "matrix.md").read_text()
    assert "[gw1]" not in md.split("## Failures")[1].split("## ")[0].replace("full message", "")
    greedy = md[md.index("`gpt2` generate_greedy"):]
    assert greedy.startswith("`gpt2` generate_greedy @ openvino · cpu · bf16: AssertionError: greedy ids differ")
    assert "  - first differing (row, position): [0, 2]\n  - reference ids: [5, 6, 7, 8]\n  - backend ids: [5, 6, 9, 8]" in greedy
    batch = md[md.index("`bert` batch_equivalence"):]
    assert "  - batch row that differs from its single run: 1" in batch and "  - worst output: last_hidden_state" in batch
    assert "  - share of tolerance used: 12" in batch
    page = (res / "index.html").read_text()
    assert "AssertionError: greedy ids differ" in page and "first differing (row, position)" in page


def test_rerun_command_selects_by_pytests_node_id() -> None:
    """xdist's --dist=loadgroup reports node ids with '@group' appended: pytest selects without it
    (`nox -R -s cpu -- 'hfmatrix/suites/test_parity.py::test_parity[gpt2@torch-cpu-fp32]'` ran exactly 1 test)."""
    from hfmatrix.report.explain import rerun
    grouped = {"session": "openvino", "nodeid": "hfmatrix/suites/test_generate.py::test_generate_greedy[gpt2@openvino-cpu-auto]@gpt2"}
    assert rerun(grouped) == "nox -s openvino -- 'hfmatrix/suites/test_generate.py::test_generate_greedy[gpt2@openvino-cpu-auto]'"
    assert rerun({"session": "cpu", "nodeid": "hfmatrix/suites/test_golden.py::test_golden@minilm"}) == \
        "nox -s cpu -- hfmatrix/suites/test_golden.py::test_golden"


def test_markdown_and_page_stay_small_on_12k_records(tmp_path: Path, capsys) -> None:
    """matrix.md (the job summary) under 64 KB and index.html under 1 MB for a default-sized matrix:
    12k records over four sessions, 1% failures with long messages, 40 auto-zoo-like extra models."""
    res = tmp_path / "results"
    curated = [("encoder", "bert"), ("decoder", "gpt2"), ("decoder", "llama"), ("encoder-decoder", "t5"), ("vision", "vit"),
               ("multimodal", "clip"), ("audio", "whisper"), ("mixture-of-experts", "mixtral")]
    models = curated + [("encoder", f"extra-{k}") for k in range(40)]
    checks = ("parity", "batch_equivalence", "generate_greedy", "deterministic", "output_shapes")
    for session, backend in (("cpu", "torch"), ("openvino", "openvino"), ("onnxruntime", "onnxruntime"), ("wasm", "web")):
        write_session(res, session, [
            rec(session, mo, "failed" if i % 100 == 7 else "skipped" if i % 9 == 0 else "passed", check=checks[i % 5], arch=a,
                backend=backend, err=1e-6 * (1 + i % 13), frac=0.01 * (1 + i % 13), i=i,
                kind=skips.UNSUPPORTED if i % 9 == 0 else None,
                msg=("AssertionError: " + "x" * 3000) if i % 100 == 7 else f"[unsupported-by-backend] reason {i % 30}")
            for i in range(3000) for a, mo in [models[i % len(models)]]])
    run_report(res, capsys)
    md = (res / "matrix.md").read_bytes()
    page = (res / "index.html").read_bytes()
    assert len(md) < 64_000, len(md)
    assert len(page) < 1_000_000, len(page)
    text = md.decode()
    assert "## Curated models × backends" in text and "## Failures (120)" in text and "truncated" not in text
    assert "extra-1" not in text.split("## Failures")[0]                  # the landing matrix is the curated zoo only


def test_missing_shard_is_incomplete(tmp_path: Path, capsys) -> None:
    res = tmp_path / "results"
    write_session(res, "cpu", [rec("cpu", "bert", "passed", shard="1of3")], shard="1of3", folder="cpu-1of3")
    write_session(res, "cpu", [rec("cpu", "gpt2", "passed", shard="3of3")], shard="3of3", folder="cpu-3of3")
    m = merge(res)
    assert not m.sessions["cpu"].complete
    assert "missing shard(s) 2of3 of 3" in "; ".join(m.sessions["cpu"].incomplete)
    rc, out, _ = run_report(res, capsys)
    assert rc == 1 and "INCOMPLETE" in out and closing(out) == (2, 0, 0)
    md = (res / "matrix.md").read_text()
    assert "**INCOMPLETE** session `cpu`" in md and "⚠️ INCOMPLETE" in md


@pytest.mark.parametrize("how", ["complete-false", "no-finish", "no-meta"])
def test_killed_run_is_incomplete(tmp_path: Path, capsys, how: str) -> None:
    res = tmp_path / "results"
    d = write_session(res, "openvino", [rec("openvino", "bert", "passed", backend="openvino")],
                      meta=how != "no-meta", complete=how != "complete-false")
    if how == "no-finish":
        write_json_atomic(d / "meta-all.json", {"session": "openvino", "shard": "all", "started": 1.0})
    write_session(res, "cpu", [rec("cpu", "bert", "passed")])
    rc, out, _ = run_report(res, capsys)
    m = merge(res)
    assert not m.sessions["openvino"].complete and m.sessions["cpu"].complete
    reason = {"complete-false": "says complete=false", "no-finish": "has no finish time", "no-meta": "no meta-all.json"}[how]
    assert reason in m.sessions["openvino"].incomplete[0]
    assert rc == 1 and "INCOMPLETE: shard all: " in out and "FAIL: INCOMPLETE session(s): openvino" in out
    assert closing(out) == (2, 0, 0)
    assert report_main(["--results-dir", str(res), "--no-coverage", "--no-fail"]) == 0


def test_corrupt_file_named_and_others_merge(matrix_results: Path, capsys) -> None:
    bad = matrix_results / "openvino" / "records-all.jsonl"
    write_session(matrix_results, "openvino", [rec("openvino", "bert", "passed", backend="openvino", i=k) for k in range(3)])
    with open(bad, "a", encoding="utf-8") as fh:      # a run killed mid-write: half a line
        fh.write(rec("openvino", "vit", "passed", backend="openvino").to_json()[:57])
    rc, out, err = run_report(matrix_results, capsys)
    assert rc == 1
    assert f"{bad}:4: unreadable record" in err           # the message names the file and line
    assert "results file(s) unreadable" in out and str(bad) in out
    m = merge(matrix_results)
    assert sorted(m.sessions) == ["cpu", "onnxruntime", "openvino"]
    assert m.sessions["openvino"].counts == {"passed": 3}  # the readable lines still count
    assert m.sessions["cpu"].n_records == 7
    md = (matrix_results / "matrix.md").read_text()
    assert "## ⚠️ Problems" in md and "records-all.jsonl:4: unreadable record" in md
    assert "Problems" in (matrix_results / "index.html").read_text()


def test_exit_codes_and_closing_line(tmp_path: Path, capsys) -> None:
    res = tmp_path / "results"
    write_session(res, "cpu", [rec("cpu", "bert", "passed", err=1e-7),
                               rec("cpu", "bert", "skipped", check="generate", kind=skips.UNSUPPORTED, msg="[unsupported-by-backend] x"),
                               rec("cpu", "vit", "xfailed", kind=skips.KNOWN_BUG, msg="[known-bug] y")])
    rc, out, _ = run_report(res, capsys)
    assert rc == 0 and closing(out) == (1, 0, 1) and "FAIL" not in out
    assert (res / "matrix.md").read_text().splitlines()[2].startswith("✅ **All 1 checks that ran passed**")

    # a strict xfail that passes is a failure of the known-bug table
    write_session(res, "cpu2", [rec("cpu2", "bert", "xpassed")])
    rc, out, _ = run_report(res, capsys)
    assert rc == 1 and closing(out) == (1, 1, 1) and "1 xpassed" in out
    assert run_report(res, capsys, "--no-fail")[0] == 0

    # the CLI dispatcher gives the same exit status
    proc = subprocess.run([sys.executable, "-m", "hfmatrix.cli", "report", "--results-dir", str(res), "--no-coverage"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 1 and CLOSING.match(proc.stdout.splitlines()[-1])

    empty = tmp_path / "empty"
    empty.mkdir()
    rc, out, _ = run_report(empty, capsys)
    assert rc == 1 and "no results under" in out and closing(out) == (0, 0, 0)


def test_autozoo_coverage_by_class_and_failures_by_stage(tmp_path: Path, capsys) -> None:
    res = tmp_path / "results"

    def zoo(model: str, role: str, outcome: str, arch: str, stage: str, msg: str = "", **m) -> Record:
        r = rec("zoo", model, outcome, check=f"autozoo_{role}", arch=arch, msg=msg, i=hash((model, role)) % 10**6)
        r.measures.update(role=role, stage=stage, **m)
        return r

    write_session(res, "zoo", [
        zoo("bert", "base", "passed", "encoder", "passed"), zoo("bert", "head", "passed", "encoder", "passed"),
        zoo("llava", "base", "passed", "multimodal", "passed", ran_text_path_only=True),
        zoo("llava", "head", "passed", "multimodal", "passed"),
        zoo("sam2", "base", "failed", "vision", "forward", msg="ForwardStageFailure: [forward] shape mismatch\nmore"),
        zoo("deit", "head", "xfailed", "vision", "build", msg="[known-bug] from_config crashes"),
        zoo("deit", "base", "passed", "vision", "passed"),
        zoo("molmo", "base", "xfailed", "multimodal", "forward",
            msg="[known-bug] forward: auto-zoo rule gap (the generic rules ...): TypeError"),
    ])
    rc, out, _ = run_report(res, capsys)
    assert rc == 1, "an auto-zoo failure fails the report like any other check"
    md = (res / "matrix.md").read_text()
    assert "## Auto-zoo" in md
    assert "| encoder | 1 | 1 | 1 | 0 | 0 | 0 | 0 |" in md
    assert "| multimodal | 2 | 2 | 1 | 1 | 0 | 1 | 0 |" in md
    assert "| vision | 2 | 2 | 0 | 0 | 1 | 0 | 0 |" in md
    assert "| **total** | 5 | 5 | 2 | 1 | 1 | 1 | 0 |" in md
    assert "- **forward** (1): `sam2` base: shape mismatch" in md
    doc = json.loads((res / "matrix.json").read_text())
    assert doc["autozoo"]["coverage"]["total"]["passed"] == 2
    assert [f["model"] for f in doc["autozoo"]["failures_by_stage"]["forward"]] == ["sam2"]


def test_browser_costs_apart_from_inference(tmp_path: Path, capsys) -> None:
    res = tmp_path / "results"
    ev = {"requested_ep": "webgpu", "provider": "WebGpuExecutionProvider", "provider_fraction": 0.7, "software": True,
          "adapter": {"architecture": "swiftshader"},
          "costs": {"browser_start_s": 1.2, "page_load_s": 0.5, "runtime_init_s": 4.8, "session_create_s": 0.6,
                    "first_run_s": 7.2, "mean_run_s": 0.98}}
    write_session(res, "webgpu", [rec("webgpu", "bert", "passed", backend="web", device="webgpu", evidence=ev,
                                      err=7e-7)])
    run_report(res, capsys)
    md = (res / "matrix.md").read_text()
    assert "## Browser costs" in md
    assert "| webgpu | bert | webgpu → WebGpuExecutionProvider (0.7) SOFTWARE | 1.2 | 0.5 | 4.8 | 0.6 | 7.2 | 980 | 7e-07 (passed) |" in md
    doc = json.loads((res / "matrix.json").read_text())
    assert doc["browser_costs"][0]["first_run_s"] == 7.2


def test_untyped_skip_and_software_device_are_visible(tmp_path: Path, capsys) -> None:
    res = tmp_path / "results"
    gpu = {"adapter": {"vendor": "google", "architecture": "swiftshader", "isFallbackAdapter": True}}
    write_session(res, "webgpu", [rec("webgpu", "bert", "passed", backend="web", device="webgpu", evidence=gpu, err=0.0),
                                  rec("webgpu", "vit", "skipped", backend="web", device="webgpu", msg="no reason kind")])
    run_report(res, capsys)
    md = (res / "matrix.md").read_text()
    assert "| web · webgpu (SOFTWARE) · fp32 |" in md        # the landing column says so
    assert "### untyped (1) — a skip without a typed kind" in md
    page = (res / "index.html").read_text()
    assert "exactly 0 (bit-identical to the reference)" in page and "SOFTWARE" in page


def test_bench_json_regressions(matrix_results: Path, capsys) -> None:
    doc = {"schema": "hfmatrix-bench/1", "session": "cpu", "shard": "all", "benchmarks": [
        {"name": "tiny-bert@torch-cpu-fp32", "model": "bert", "backend": "torch", "device": "cpu", "precision": "fp32",
         "metric": "forward", "p50_ms": 3.3, "baseline_ms": 2.0, "ratio": 1.65, "status": "regression", "regression": True,
         "report": {"forward": {"latency": {"values": [0.0031, 0.0033, 0.0035]}}}},
        {"name": "tiny-vit@torch-cpu-fp32", "model": "vit", "backend": "torch", "device": "cpu", "precision": "fp32",
         "metric": "forward", "p50_ms": 1.0, "status": "unchanged", "regression": False}]}
    (matrix_results / "cpu" / "bench-all.json").write_text(json.dumps(doc))
    run_report(matrix_results, capsys)
    md = (matrix_results / "matrix.md").read_text()
    perf = md[md.index("## Perf regressions"):]
    assert "| cpu | bert | torch · cpu · fp32 | forward | 3.3 | 2 | 1.65× |" in perf
    assert "vit" not in perf.split("##")[1]
    assert "Forward latency per benchmark" in (matrix_results / "index.html").read_text()


def test_badge_svg_is_valid_xml() -> None:
    for pct, text in ((87.4, "87%"), (None, "unknown"), (100.0, "100%")):
        root = ET.fromstring(cov_mod.badge_svg(pct))
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
        assert texts.count(text) == 2 and texts.count("coverage") == 2
    assert cov_mod.colour(95) == "#4c1" and cov_mod.colour(10) == "#e05d44"


def test_coverage_combines_sessions_and_remaps_paths(tmp_path: Path, capsys) -> None:
    coverage = pytest.importorskip("coverage")
    res = tmp_path / "results"
    write_session(res, "cpu", [rec("cpu", "bert", "passed")])
    # session 1: measured here, as nox runs it (COVERAGE_FILE=results/<session>/.coverage, parallel mode)
    env = {**__import__("os").environ, "COVERAGE_FILE": str(res / "cpu" / ".coverage")}
    subprocess.run([sys.executable, "-m", "coverage", "run", "--rcfile", str(ROOT / "pyproject.toml"), "-p",
                    "-m", "hfmatrix.cli", "--help"], cwd=ROOT, env=env, check=True, capture_output=True)
    # session 2: data from another machine, installed into site-packages (the [paths] remapping)
    (res / "onnxruntime").mkdir()
    data = coverage.CoverageData(basename=str(res / "onnxruntime" / ".coverage"), suffix="ci-runner.1.x")
    data.add_arcs({"/opt/hostedtoolcache/venv/lib/python3.11/site-packages/hfmatrix/skips.py": {(-1, 1), (1, 8), (8, -1)}})
    data.write()
    before = sorted(p.name for p in (res / "cpu").glob(".coverage*")) + sorted(p.name for p in (res / "onnxruntime").glob(".coverage*"))
    # in a child process: a coverage.Coverage() combining in-process wipes the measurement of a process
    # that is itself measured (an xdist worker of `nox -s tests`: measured, every later test there lost).
    # A child that subprocess patching starts loses its own data the same way: when this test is measured,
    # the child runs under `coverage run -p` as nox runs a session, so combine() counts in the figure.
    env = {k: v for k, v in os.environ.items() if k != "COVERAGE_PROCESS_CONFIG"}
    measured = ("-m", "coverage", "run", "-p", "--rcfile", str(ROOT / "pyproject.toml")) \
        if "COVERAGE_PROCESS_CONFIG" in os.environ else ()
    proc = subprocess.run([sys.executable, *measured, "-m", "hfmatrix.cli", "report", "--results-dir", str(res),
                           "--rcfile", str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True, text=True, env=env)
    out = proc.stdout
    assert proc.returncode == 0, proc.stdout + proc.stderr
    after = sorted(p.name for p in (res / "cpu").glob(".coverage*")) + sorted(p.name for p in (res / "onnxruntime").glob(".coverage*"))
    assert before == after and len(before) == 2             # originals kept
    combined = coverage.CoverageData(basename=str(res / ".coverage"))
    combined.read()
    files = {Path(f).as_posix() for f in combined.measured_files()}
    assert any(f.endswith("hfmatrix/skips.py") and "site-packages" not in f for f in files), files
    assert any(f.endswith("hfmatrix/cli.py") for f in files)
    total = json.loads((res / "matrix.json").read_text())["coverage"]["total"]
    assert 0 < total < 100
    assert (res / "coverage.xml").exists() and (res / "htmlcov" / "index.html").exists()
    assert f"{total:.0f}%" in (res / "coverage-badge.svg").read_text()
    assert f"coverage: {total:.1f}%" in out
    assert f"Coverage (all sessions combined): **{total:.1f}%**" in (res / "matrix.md").read_text()


# --- the page in a real browser -------------------------------------------------------------------
CHROMIUM = Path(chromium_path() or "/usr/bin/chromium")  # HFMATRIX_CHROMIUM first (nox's _chromium sets it)


def _browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skips.skip(skips.DEPENDENCY_MISSING, "playwright (python) is not installed: pip install playwright")
    if not CHROMIUM.exists():
        skips.skip(skips.DEPENDENCY_MISSING, f"no Chromium at {CHROMIUM}: sudo apt-get install -y chromium, or set HFMATRIX_CHROMIUM")
    return sync_playwright


def _open(p, path: Path, errors: list[str]):
    browser = p.chromium.launch(executable_path=str(CHROMIUM))
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: errors.append(f"network request {r.url}") if not r.url.startswith(("file:", "data:")) else None)
    page.goto(path.as_uri())
    page.wait_for_selector("body[data-ready='1']")
    return browser, page


def test_index_html_in_headless_chromium(matrix_results: Path, capsys) -> None:
    sync_playwright = _browser()
    run_report(matrix_results, capsys)
    page_path = matrix_results / "index.html"
    text = page_path.read_text()
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "") and "https://" not in text  # nothing from the network
    shot_dir = ROOT / "results"
    shot_dir.mkdir(exist_ok=True)
    with sync_playwright() as p:
        errors: list[str] = []
        browser, page = _open(p, page_path, errors)
        try:
            assert not errors, errors
            # the landing view: the 13 curated models × the two backend targets, without sideways scrolling
            landing = page.locator("#landing")
            assert landing.locator("tbody tr:not(.grp)").count() == 13
            assert landing.locator("thead th").count() == 3                 # model, onnxruntime, torch
            assert page.evaluate("() => document.documentElement.scrollWidth") <= 1400
            assert page.evaluate("() => document.getElementById('landing').getBoundingClientRect().right") <= 1400
            bert_cpu = landing.locator("td.lc[data-ri='0'][data-ci='1']")   # bert × torch · cpu · fp32
            assert bert_cpu.get_attribute("data-status") == "ok" and "40%" in bert_cpu.inner_text()
            page.screenshot(path=str(shot_dir / "report-screenshot.png"))

            # filters: backend hides the other column; "not passed" keeps only llama's row
            page.locator("#l-backend button[data-v='onnxruntime']").click()
            assert landing.locator("thead th:visible").count() == 2
            page.locator("#l-rows button[data-v='not passed']").click()
            rows = landing.locator("tbody tr:not(.grp):visible")
            assert rows.count() == 1 and "llama" in rows.inner_text()
            page.locator("#l-class button[data-v='encoder']").click()
            assert landing.locator("tbody tr:not(.grp):visible").count() == 0
            page.locator("#l-class button[data-v='']").click()
            page.locator("#l-rows button[data-v='all']").click()
            page.locator("#l-backend button[data-v='']").click()
            assert landing.locator("tbody tr:not(.grp):visible").count() == 13

            # a cell click loads the records (the script beside the page) and shows the failure first, open
            landing.locator("td.lc[data-status='bad'][data-ci='1']").click()
            drawer = page.locator("#drawer")
            drawer.wait_for(state="visible")
            assert "llama" in page.locator("#dtitle").inner_text()
            assert page.locator("#dbody tr.rec").count() == 2            # the failed parity and the passed generate
            detail = page.locator("#dbody tr.detail").inner_text()
            assert "evidence" in detail and "max_abs_err" in detail and "3.2e-3" in detail
            assert "nox -s cpu -- 'hfmatrix/suites/test_parity.py::test_parity[llama-torch-fp32-3]'" in detail
            page.screenshot(path=str(shot_dir / "report-drilldown.png"))
            assert page.evaluate("rerun('cpu', 'hfmatrix/suites/t.py::test_x[gpt2@torch-cpu-fp32]@gpt2')") == \
                "nox -s cpu -- 'hfmatrix/suites/t.py::test_x[gpt2@torch-cpu-fp32]'"          # xdist's @group dropped
            assert page.evaluate("rerun('cpu', 'hfmatrix/suites/t.py::test_y@minilm')") == "nox -s cpu -- hfmatrix/suites/t.py::test_y"
            page.keyboard.press("Escape")

            # the failures explain themselves on the page: assertion, numbers, tolerance, rerun command
            fails = page.locator("li.fail")
            assert fails.count() == 2
            assert "worker gw1 crashed" in fails.nth(0).inner_text()
            second = fails.nth(1).inner_text()
            assert "AssertionError: max |Δ| 3.2e-03" in second and "target.torch.fp32" in second
            assert "nox -s cpu -- 'hfmatrix/suites/test_parity.py::test_parity[llama-torch-fp32-3]'" in second

            # every model and record, on demand; its filters still work
            page.locator("#load-all").click()
            page.wait_for_selector("body[data-full='1']")
            shown = page.locator("#shown")
            assert page.locator("#matrix tbody tr:not(.grp)").count() == 3
            assert (shown.get_attribute("data-passed"), shown.get_attribute("data-failed"),
                    shown.get_attribute("data-skipped")) == ("5", "2", "3")
            page.locator("#f-backend button[data-v='onnxruntime']").click()
            assert page.locator("#matrix thead th").count() == 2
            page.locator("#f-outcome button[data-v='not passed']").click()
            assert page.locator("#matrix tbody tr:not(.grp)").count() == 1   # only llama crashed there
            assert not errors, errors
        finally:
            browser.close()


def test_page_without_its_records_file_says_so(matrix_results: Path, capsys) -> None:
    """The landing view and failures need no second file; a click that needs the records names the
    missing file instead of failing silently."""
    sync_playwright = _browser()
    run_report(matrix_results, capsys)
    (matrix_results / "index-data.js").unlink()
    with sync_playwright() as p:
        errors: list[str] = []
        browser, page = _open(p, matrix_results / "index.html", errors)
        try:
            assert page.locator("li.fail").count() == 2
            page.locator("#load-all").click()
            page.wait_for_selector("#load-note .warn")
            assert "index-data.js is missing" in page.locator("#load-note").inner_text()
        finally:
            browser.close()


def test_index_html_renders_100k_records_quickly(tmp_path: Path, capsys) -> None:
    """The page stays usable at scale: 20k records here (the bench script does 100k)."""
    sync_playwright = _browser()
    res = tmp_path / "results"
    models = [(f"tiny-m{k}", ("encoder", "decoder", "vision")[k % 3]) for k in range(40)]
    for s in ("cpu", "onnxruntime"):
        write_session(res, s, [rec(s, mo, "passed" if i % 50 else "failed", arch=a, err=1e-6 * (1 + i % 7), i=i,
                                   backend="torch" if s == "cpu" else s)
                               for i in range(10_000) for mo, a in [models[i % 40]]])
    run_report(res, capsys)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM))
        try:
            page = browser.new_page()
            page.goto((res / "index.html").as_uri())
            page.wait_for_selector("body[data-ready='1']", timeout=30_000)
            page.locator("#load-all").click()
            page.wait_for_selector("body[data-full='1']", timeout=30_000)
            assert page.locator("#shown").get_attribute("data-passed") == str(2 * (10_000 - 200))
            took = page.evaluate("() => { const t = performance.now(); document.querySelector(\"#f-outcome button[data-v='not passed']\").click(); return performance.now() - t; }")
            assert page.locator("#shown").get_attribute("data-failed") == "400"
            assert took < 3000, f"filtering 20k records took {took:.0f} ms"
        finally:
            browser.close()


def test_library_versions_side_by_side(tmp_path: Path, capsys) -> None:
    """Sessions on different transformers get a row each and a line naming the difference; a library
    every session shares (torch) is not flagged."""
    res = tmp_path / "results"
    cpu = rec("cpu", "bert", "passed")
    ort = rec("onnxruntime", "bert", "passed", backend="onnxruntime")
    ort.versions = {"torch": "2.13.0", "transformers": "4.57.6", "optimum-onnx": "0.1.0", "onnxruntime": "1.32.0"}
    write_session(res, "cpu", [cpu])
    write_session(res, "onnxruntime", [ort])
    run_report(res, capsys)
    md = (res / "matrix.md").read_text()
    assert "| session | torch | transformers | optimum-onnx | onnxruntime |" in md
    assert "| cpu | 2.13.0 | 5.24.0 | – | – |" in md
    assert "| onnxruntime | 2.13.0 | 4.57.6 | 0.1.0 | 1.32.0 |" in md
    assert "**transformers differs across sessions**: 4.57.6 (onnxruntime); 5.24.0 (cpu)" in md
    assert "torch differs" not in md
    page = (res / "index.html").read_text()
    assert "<b>transformers differs across sessions</b>: 4.57.6 (onnxruntime); 5.24.0 (cpu)" in page


def test_backend_selftests_inside_the_session_folder_gate_the_report(tmp_path: Path, capsys) -> None:
    """A backend session's own self-tests write results/<session>/selftests/junit.xml (inside the folder
    CI uploads): the report lists them, and one failing self-test fails the report."""
    res = tmp_path / "results"
    d = write_session(res, "openvino", [rec("openvino", "bert", "passed", backend="openvino")])
    (d / "selftests").mkdir()
    junit = '<testsuites><testsuite name="pytest" tests="4" failures="{}" errors="0" skipped="0"/></testsuites>'
    (d / "selftests" / "junit.xml").write_text(junit.format(0))
    rc, out, _ = run_report(res, capsys)
    assert rc == 0 and "`openvino/selftests`: 4 tests, 0 failures" in (res / "matrix.md").read_text()
    (d / "selftests" / "junit.xml").write_text(junit.format(1))      # planted: one self-test fails
    rc, out, _ = run_report(res, capsys)
    assert rc == 1
