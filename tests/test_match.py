"""The one matcher of the data files (hfmatrix/match.py): the most specific entry wins in every file, and two
equally specific entries that could decide one cell are an error when the file is loaded, naming both."""
from __future__ import annotations

import re
import tomllib

import pytest

from hfmatrix import compare, match, negative


def _known(tmp_path, body: str):
    """A known_failures file under a new name (the loaders cache by path)."""
    path = tmp_path / f"known_failures_{len(list(tmp_path.iterdir()))}.toml"
    path.write_text(body)
    return path


def test_known_bug_most_specific_wins_not_the_first(tmp_path):
    kf = _known(tmp_path, '''
[[known_bug]]
raises = "AssertionError"
check = "parity"
backend = "torch"
reason = "any model"
evidence = "seen on bert"

[[known_bug]]
raises = "AssertionError"
check = "parity"
backend = "torch"
model_type = "gpt2"
reason = "gpt2 only"
''')
    assert compare.known_entry("parity", "gpt2", "torch", "cpu", "fp32", kf)["reason"] == "gpt2 only"
    entry = compare.known_entry("parity", "bert", "torch", "cpu", "fp32", kf)
    assert (entry["reason"], entry["evidence"]) == ("any model", "seen on bert")   # claim and evidence apart
    assert compare.known_text(entry) == "any model seen on bert"


def test_equally_specific_entries_sharing_a_cell_fail_at_load_naming_both(tmp_path):
    kf = _known(tmp_path, '''
[[known_bug]]
raises = "AssertionError"
check = "parity"
model_type = "gpt2"
reason = "one"

[[known_bug]]
raises = "AssertionError"
check = "generate_greedy"
model_type = "gpt2"
reason = "disjoint checks: no tie"

[[known_bug]]
raises = "AssertionError"
check = "parity*"
backend = "torch"
reason = "two"
''')
    with pytest.raises(match.AmbiguousEntries) as err:
        compare.known_entry("deterministic", "bert", "onnxruntime", "cpu", "fp32", kf)   # any lookup loads the file
    text = str(err.value)
    assert str(kf) in text and "#1 (check=parity model_type=gpt2)" in text and "#3 (check=parity* backend=torch)" in text


def test_a_more_specific_entry_decides_the_shared_cells(tmp_path):
    kf = _known(tmp_path, '''
[[known_bug]]
raises = "AssertionError"
check = "parity"
model_type = "gpt2"
reason = "gpt2 anywhere"

[[known_bug]]
raises = "AssertionError"
check = "parity"
backend = "web"
reason = "web, any model"

[[known_bug]]
raises = "AssertionError"
check = "parity"
backend = "web"
model_type = ["gpt2", "llama"]
reason = "gpt2 on web"
''')
    assert compare.known_entry("parity", "gpt2", "web", "wasm", "fp32", kf)["reason"] == "gpt2 on web"
    assert compare.known_entry("parity", "gpt2", "torch", "cpu", "fp32", kf)["reason"] == "gpt2 anywhere"
    assert compare.known_entry("parity", "bert", "web", "wasm", "fp32", kf)["reason"] == "web, any model"


def test_entries_of_disjoint_releases_are_no_tie(tmp_path):
    kf = _known(tmp_path, '''
[[known_bug]]
raises = "AssertionError"
check = "parity"
transformers = "<5"
reason = "4.x"

[[known_bug]]
raises = "AssertionError"
check = "parity"
transformers = ">=5"
reason = "5.x"
''')
    assert compare.known_entry("parity", "bert", "torch", "cpu", "fp32", kf)["reason"] in ("4.x", "5.x")
    kf = _known(tmp_path, kf.read_text().replace('">=5"', '">=4.50"'))
    with pytest.raises(match.AmbiguousEntries):
        compare.known_entry("parity", "bert", "torch", "cpu", "fp32", kf)


def test_shared_reason_is_written_once_and_must_exist(tmp_path):
    body = '''
[reasons.export]
reason = "the export is invalid"
evidence = "ORT 1.32 refuses it"

[[known_bug]]
raises = "AssertionError"
check = "parity"
model_type = "gpt2"
reason = "@export"

[[known_bug]]
raises = "AssertionError"
check = "finite"
model_type = "gpt2"
reason = "@export"
'''
    kf = _known(tmp_path, body)
    for check in ("parity", "finite"):
        entry = compare.known_entry(check, "gpt2", "onnxruntime", "cpu", "fp16", kf)
        assert (entry["reason"], entry["evidence"]) == ("the export is invalid", "ORT 1.32 refuses it")
    assert compare.known_failure("finite", "gpt2", "onnxruntime", "cpu", "fp16", kf) == \
        "the export is invalid ORT 1.32 refuses it"
    kf = _known(tmp_path, body.replace('reason = "@export"\n\n[[known_bug]]', 'reason = "@exprot"\n\n[[known_bug]]'))
    with pytest.raises(ValueError, match=r"reason '@exprot' names no \[reasons.exprot\]"):
        compare.known_entry("parity", "gpt2", "onnxruntime", "cpu", "fp16", kf)


def test_tolerance_ties_fail_at_load(tmp_path):
    table = tmp_path / "tol.toml"
    table.write_text('''
[target.torch.fp32]
atol = 1e-5
rtol = 1e-5
reason = "default"

[[override]]
model = "t5"
backend = "torch"
precision = "fp32"
atol = 1e-4
rtol = 1e-5
reason = "t5"
evidence = "measured 9e-5"
''')
    tol = compare.tolerance("t5", "torch", "cpu", "fp32", table)
    assert tol.atol == 1e-4 and tol.reason == "t5 measured 9e-5" and tol.source.startswith("override model=t5")
    assert compare.tolerance("bert", "torch", "cpu", "fp32", table).source == "target.torch.fp32"
    table = tmp_path / "tol2.toml"
    table.write_text((tmp_path / "tol.toml").read_text() + '''
[target.torch.cpu.fp32]
atol = 1e-6
rtol = 1e-6
reason = "cpu: as specific as the t5 override"
''')
    with pytest.raises(match.AmbiguousEntries, match=r"target.torch.cpu.fp32.*override model=t5"):
        compare.tolerance("bert", "torch", "cpu", "fp32", table)


def test_negative_expectation_ties_fail_at_load(tmp_path):
    cat = tmp_path / "cases.toml"
    case = '''
[[case]]
id = "c"
stage = "run"
mutation = "seq_len"
args = { length = "zero" }
description = "d"

[[case.expect]]
backend = ["onnxruntime", "web"]
behaviour = "runs"
reason = "a"

[[case.expect]]
backend = "web"
raises = "OrtWebError"
match = "x"
reason = "b"
'''
    cat.write_text(case)
    with pytest.raises(match.AmbiguousEntries, match=r"case 'c' \[\[case.expect\]\] #1 .* #2"):
        negative.load_catalogue(cat)
    cat.write_text(case.replace('backend = "web"', 'backend = "web"\ndevice = "webgpu"'))
    found = negative.load_catalogue(cat)["c"]
    assert found.expectation("bert", "web", "webgpu").reason == "b"
    assert found.expectation("bert", "web", "wasm").reason == "a"


def test_the_repository_data_files_load_without_ties():
    compare.load_known_bugs.cache_clear()
    assert len(compare.load_known_bugs(str(compare.KNOWN_FAILURES))) > 50
    assert len(compare.load_tolerances(str(compare.TOLERANCES))) > 10
    assert len(negative.load_catalogue(negative.CATALOGUE)) > 30


_DATED = re.compile(r"\b20\d\d-\d\d-\d\d\b|\bmeasured\b", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Za-z(`\"\[])")
_MEASURED_TAIL = re.compile(r"\(measured\b[^()]*(?:\([^()]*\)[^()]*)*\)\s*$", re.IGNORECASE)


def _sentences(text: str) -> list[str]:
    parts = _SENTENCE_END.split(text.strip())
    merged: list[str] = []
    for part in parts:  # "e.g. X" / "i.e. X" do not end a sentence
        if merged and re.search(r"\b(e\.g|i\.e|vs|cf)\.$", merged[-1]):
            merged[-1] += " " + part
        else:
            merged.append(part)
    return merged


def _claims(path) -> list[tuple[str, dict]]:
    """Every entry of a data file that carries a reason: [reasons.<id>], [[known_bug]], [[case.expect]]."""
    data = tomllib.loads(path.read_text())
    found = [(f"[reasons.{rid}]", entry) for rid, entry in data.get("reasons", {}).items()]
    found += [(f"[[known_bug]] #{i + 1}", entry) for i, entry in enumerate(data.get("known_bug", []))]
    found += [(f"{case['id']} expect #{i + 1}", entry) for case in data.get("case", [])
              for i, entry in enumerate(case.get("expect", []))]
    return found


@pytest.mark.parametrize("path", [compare.KNOWN_FAILURES, negative.CATALOGUE], ids=lambda p: p.name)
def test_measurements_are_evidence_not_claim(path):
    """Claim and evidence are separate fields: in a reason of several sentences, no sentence dates a measurement
    or says 'measured' (those sentences are the entry's `evidence`), and no reason ends with a '(measured ...)'
    parenthetical. A one-sentence reason whose measurement is woven into the claim (e.g. the CLIP RSS entry,
    'grew RSS in two of three full runs of 2026-12-05 ...') stays whole: splitting it would reword it.
    tolerances.toml is not held to this: its reasons derive a bound from measured numbers in the same sentence."""
    entries = _claims(path)
    checked = with_evidence = 0
    for where, entry in entries:
        reason = str(entry.get("reason", ""))
        if reason.startswith("@"):
            continue
        with_evidence += bool(entry.get("evidence"))
        sentences = _sentences(reason)
        assert not _MEASURED_TAIL.search(reason), f"{path.name} {where}: move the '(measured ...)' tail to evidence"
        if len(sentences) > 1:
            checked += 1
            dated = [s for s in sentences if _DATED.search(s)]
            assert not dated, f"{path.name} {where}: measurement sentences belong in `evidence`: {dated}"
    assert checked > 10 and with_evidence > 10, (checked, with_evidence)  # the rule looked at real entries
