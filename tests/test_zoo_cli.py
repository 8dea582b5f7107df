"""`hfmatrix zoo check | verify`: a real build, load, forward and greedy generation per zoo model, and
a model with a defect (non-finite weights, a weight missing from the checkpoint) fails the check."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from hfmatrix.zoo import load_specs
from hfmatrix.zoo.cli import check, main

SPECS = load_specs()


def test_check_loads_runs_and_generates(zoo_cache: Path, capsys) -> None:
    assert main(["check", "--cache", str(zoo_cache), "--json", "bert", "gpt2"]) == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["bert"]["status"].startswith("ok  in input_ids[") and " gen " not in rows["bert"]["status"]
    gen = rows["gpt2"]["status"]
    assert " gen [" in gen and " min-gap " in gen                       # greedy tokens and the top-1/top-2 gap
    assert float(gen.split(" min-gap ")[1].split()[0]) >= 0
    assert main(["verify", "--cache", str(zoo_cache), "bert"]) == 0    # text lines, not JSON
    out = capsys.readouterr().out
    assert out.startswith(f"cache {zoo_cache}") and "bert" in out.splitlines()[1] and "  ok  " in out


def test_unknown_ids_are_refused(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["check", "no-such-model"])
    assert exc.value.code == 2 and "unknown zoo ids ['no-such-model']" in capsys.readouterr().err


def _copy(zoo_cache: Path, tmp_path: Path, spec_id: str) -> Path:
    from hfmatrix.zoo import materialize
    src = materialize(SPECS[spec_id], cache_dir=zoo_cache)
    return Path(shutil.copytree(src, tmp_path / spec_id))


def _rewrite_weights(path: Path, change) -> None:
    from safetensors.numpy import load_file, save_file
    f = path / "model.safetensors"
    tensors = load_file(str(f))
    change(tensors)
    save_file(tensors, str(f), metadata={"format": "pt"})


def test_check_fails_on_non_finite_outputs(zoo_cache: Path, tmp_path: Path) -> None:
    path = _copy(zoo_cache, tmp_path, "bert")
    assert check(SPECS["bert"], path).startswith("ok")                  # the copy itself is sound

    def poison(t: dict) -> None:
        name = next(k for k in t if k.endswith("LayerNorm.weight"))
        t[name] = t[name] * float("nan")
    _rewrite_weights(path, poison)
    with pytest.raises(RuntimeError, match="last_hidden_state not finite for example 0"):
        check(SPECS["bert"], path)


def test_check_fails_when_a_weight_is_missing(zoo_cache: Path, tmp_path: Path) -> None:
    path = _copy(zoo_cache, tmp_path, "bert")
    _rewrite_weights(path, lambda t: t.pop(next(k for k in t if k.endswith("attention.self.query.weight"))))
    with pytest.raises(RuntimeError, match="loading info not clean: .*query"):
        check(SPECS["bert"], path)
