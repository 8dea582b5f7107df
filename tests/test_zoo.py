"""The model zoo: spec files, content-addressed materialization, inputs, concurrency and crash safety.

Everything here builds real (tiny) models with transformers and runs them with torch; nothing is
mocked. The kill test (tests/zoo_workers.py) stalls our own manifest step so the SIGKILL lands
mid-build deterministically.
"""
from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import zoo_workers  # tests/ is on sys.path (rootdir-relative import mode)

from hfmatrix.skips import DependencyMissing
from hfmatrix.zoo import (ARCH_CLASSES, batch, example, generation_inputs, lengths, load_specs, materialize,
                          max_positions, spec_from_user, verify)
from hfmatrix.zoo import materialize as mat

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

SPECS = load_specs()
RANDOM_IDS = [i for i, s in SPECS.items() if s.source == "random"]


@pytest.fixture(scope="session")
def zoo_cache(tmp_path_factory) -> Path:
    """One cache for the session: each default entry is built once, however many tests use it."""
    return tmp_path_factory.mktemp("zoo-cache")


def _built(spec_id: str, zoo_cache: Path) -> Path:
    try:
        return materialize(SPECS[spec_id], cache_dir=zoo_cache)
    except DependencyMissing as exc:
        pytest.skip(f"[{exc.kind}] {exc.reason}")


# ----------------------------------------------------------------------------------- spec files

def test_default_zoo_parses_and_covers_every_arch_class():
    assert set(ARCH_CLASSES) <= {s.arch_class for s in SPECS.values()}
    for spec in SPECS.values():
        assert spec.description and spec.capabilities and spec.outputs, spec.id
        if spec.generate:
            assert spec.generate.get("max_new_tokens", 0) > 0, spec.id
    for required in ("bert", "bert-cls", "gpt2", "llama", "t5", "vit", "clip", "whisper", "wav2vec2",
                     "mixtral", "mamba", "llava", "minilm"):
        assert required in SPECS


BAD_FILES = {
    "no id": ('[[model]]\narch_class = "encoder"\nmodel_type = "bert"\ntask = "feature-extraction"\n', "has no id"),
    "bad arch": ('[[model]]\nid = "x"\narch_class = "transformer"\nmodel_type = "bert"\ntask = "feature-extraction"\n',
                 "arch_class 'transformer'"),
    "bad task": ('[[model]]\nid = "x"\narch_class = "encoder"\nmodel_type = "bert"\ntask = "dance"\n', "unknown task 'dance'"),
    "unknown key": ('[[model]]\nid = "x"\narch_class = "encoder"\nmodel_type = "bert"\ntask = "feature-extraction"\ncolour = 1\n',
                    "model 'x'.*colour"),
    "missing key": ('[[model]]\nid = "x"\narch_class = "encoder"\ntask = "feature-extraction"\n', "model 'x'.*model_type"),
    "duplicate": ('[[model]]\nid = "x"\narch_class = "encoder"\nmodel_type = "bert"\ntask = "feature-extraction"\n' * 2,
                  "duplicate model id 'x'"),
}


@pytest.mark.parametrize("bad", sorted(BAD_FILES))
def test_bad_spec_file_names_the_problem(tmp_path, bad):
    text, message = BAD_FILES[bad]
    path = tmp_path / "zoo.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_specs(path)


def test_bad_toml_syntax_is_an_error(tmp_path):
    path = tmp_path / "zoo.toml"
    path.write_text("[[model]\nid = ")
    with pytest.raises(Exception, match="(?i)toml|expected|invalid"):
        load_specs(path)


def test_special_token_mismatch_is_refused(tmp_path):
    spec = dataclasses.replace(SPECS["llama"], config={**SPECS["llama"].config, "eos_token_id": 7})
    with pytest.raises(ValueError, match="eos_token_id=7.*'</s>' has id 2"):
        materialize(spec, cache_dir=tmp_path)
    assert not [p for p in tmp_path.iterdir() if p.is_dir()], "a refused build left a folder behind"


# ----------------------------------------------------------------------------------- cache

def test_materialize_is_content_addressed(zoo_cache):
    spec = SPECS["bert"]
    first = materialize(spec, cache_dir=zoo_cache)
    n_built = len(mat.BUILT)
    again = materialize(spec, cache_dir=zoo_cache)
    assert again == first and len(mat.BUILT) == n_built, "second call must be a cache hit"
    assert first.name.startswith("bert-")
    other = materialize(dataclasses.replace(spec, seed=spec.seed + 7), cache_dir=zoo_cache)
    assert other != first and other.parent == first.parent
    manifest = json.loads((first / mat.MANIFEST).read_text())
    assert manifest["versions"]["transformers"] == transformers.__version__
    assert set(manifest["files"]) == {p.name for p in first.iterdir()} - {mat.MANIFEST}
    assert verify(first) == []


@pytest.mark.parametrize("spec_id", ["bert", "t5"])  # WordPiece and Unigram: the trainers were not reproducible
def test_builds_are_reproducible(spec_id, tmp_path):
    """Same spec + same versions → byte-identical files, whoever builds it and wherever."""
    sums = []
    for cache in ("a", "b"):
        path = materialize(SPECS[spec_id], cache_dir=tmp_path / cache)
        files = json.loads((path / mat.MANIFEST).read_text())["files"]
        sums.append({name: meta["sha256"] for name, meta in files.items()})
    assert sums[0] == sums[1]


def test_cache_location_follows_env_then_argument(tmp_path, monkeypatch):
    monkeypatch.setenv("HFMATRIX_CACHE", str(tmp_path / "env"))
    assert mat.cache_root() == tmp_path / "env" / "zoo"
    assert mat.cache_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("HFMATRIX_CACHE")
    assert mat.cache_root().name == "zoo"


def test_verify_catches_an_altered_file_and_a_damaged_entry_is_rebuilt(tmp_path):
    spec = SPECS["bert-cls"]
    path = materialize(spec, cache_dir=tmp_path)
    weights = path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert verify(path) == ["model.safetensors: sha256 mismatch"]
    (path / mat.MANIFEST).unlink()  # no manifest: not an entry any more
    assert not mat.is_complete(path)
    rebuilt = materialize(spec, cache_dir=tmp_path)
    assert rebuilt == path and verify(rebuilt) == []


def test_concurrent_builders_yield_one_intact_copy(tmp_path):
    spec = dataclasses.replace(SPECS["bert"], seed=4242)  # a key no other test builds
    ctx = mp.get_context("spawn")
    n = 8
    barrier, queue = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=zoo_workers.build_at_once, args=(spec, str(tmp_path), barrier, queue)) for _ in range(n)]
    for p in procs:
        p.start()
    results, deadline = [], time.monotonic() + 600
    while len(results) < n:
        try:
            results.append(queue.get(timeout=1))
        except Exception:  # queue.Empty: fail fast if a builder died instead of waiting out the deadline
            dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            assert not dead and time.monotonic() < deadline, f"builders failed: exit codes {dead}"
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    paths = {r[1] for r in results}
    assert len(paths) == 1, paths
    assert sum(r[2] for r in results) == 1, f"expected exactly one real build, got {[r[2] for r in results]}"
    assert all(r[3] == [] for r in results)
    entries = [p.name for p in tmp_path.iterdir() if p.is_dir()]
    assert entries == [Path(paths.pop()).name], entries  # no temp dirs left over
    builder = json.loads((tmp_path / entries[0] / mat.MANIFEST).read_text())["builder"]["pid"]
    assert builder in {r[0] for r in results}


def test_killed_builder_leaves_nothing_usable(tmp_path):
    spec = dataclasses.replace(SPECS["bert"], seed=5151)
    cache, ready = tmp_path / "cache", tmp_path / "ready"
    ctx = mp.get_context("spawn")
    child = ctx.Process(target=zoo_workers.build_then_hang, args=(spec, str(cache), str(ready)))
    child.start()
    deadline = time.monotonic() + 300
    while not ready.exists():
        assert child.is_alive() and time.monotonic() < deadline, "builder died or never got midway"
        time.sleep(0.1)
    half = Path(ready.read_text())
    assert (half / "model.safetensors").is_file()
    os.kill(child.pid, signal.SIGKILL)
    child.join(timeout=30)
    assert child.exitcode == -signal.SIGKILL

    final = cache / mat.entry_name(spec)
    assert half.exists() and not final.exists() and not mat.is_complete(half)
    path = materialize(spec, cache_dir=cache)  # the lock died with the child: no wait
    assert path == final and verify(path) == []
    assert not half.exists(), "the stale temp dir of the killed builder was not cleaned"


# ----------------------------------------------------------------------------------- other sources

def test_missing_package_is_a_typed_skip():
    spec = dataclasses.replace(SPECS["minilm"], source="package:hfmatrix_no_such_package")
    with pytest.raises(DependencyMissing, match="not installed"):
        materialize(spec)


def test_path_source(zoo_cache, tmp_path):
    built = _built("gpt2", zoo_cache)
    assert materialize(dataclasses.replace(SPECS["gpt2"], source=f"path:{built}")) == built
    with pytest.raises(DependencyMissing, match="no such folder"):
        materialize(dataclasses.replace(SPECS["gpt2"], source=f"path:{tmp_path / 'nope'}"))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(DependencyMissing, match="safetensors"):
        materialize(dataclasses.replace(SPECS["gpt2"], source=f"path:{tmp_path}"))


def test_hub_source_offline_is_a_typed_skip(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    spec = dataclasses.replace(SPECS["gpt2"], source="hub:hfmatrix/definitely-not-cached")
    with pytest.raises(DependencyMissing, match="not available offline"):
        materialize(spec)


@pytest.mark.parametrize("spec_id", list(SPECS))
def test_spec_from_user_guesses_the_zoo_entry(spec_id, zoo_cache):
    folder = _built(spec_id, zoo_cache)
    guessed = spec_from_user(str(folder))
    want = SPECS[spec_id]
    assert (guessed.arch_class, guessed.task, guessed.auto_class) == (want.arch_class, want.task, want.auto_class)
    assert guessed.source == f"path:{folder.resolve()}"
    assert materialize(guessed) == folder.resolve()


def test_spec_from_user_hub_id_offline():
    spec = spec_from_user("hfmatrix/definitely-not-cached")
    assert spec.source == "hub:hfmatrix/definitely-not-cached"
    assert spec.id == "hfmatrix-definitely-not-cached"


# ----------------------------------------------------------------------------------- build + run

@pytest.mark.parametrize("spec_id", list(SPECS))
def test_entry_loads_cleanly_and_runs(spec_id, zoo_cache):
    spec = SPECS[spec_id]
    path = _built(spec_id, zoo_cache)
    if spec.source == "random":
        assert {p.suffix for p in path.iterdir()} <= {".json", ".safetensors", ".txt", ".jinja", ".model"}
        assert not list(path.glob("*.bin")) and verify(path) == []
    model, info = getattr(transformers, spec.auto_class).from_pretrained(path, output_loading_info=True)
    bad = {k: v for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
    assert not bad, bad
    model.eval()
    vocab = getattr(getattr(model.config, "text_config", None) or model.config, "vocab_size", None)
    lens = []
    for index in (0, 1):
        x = example(spec, path, index)
        assert x == {} or all(isinstance(v, np.ndarray) for v in x.values())
        for key, value in x.items():
            assert value.dtype == (np.float32 if value.dtype.kind == "f" else np.int64), key
            if key.endswith("input_ids") and vocab:
                assert 0 <= value.min() and value.max() < vocab, key
        assert "token_type_ids" not in x or "token_type_ids" in _forward_args(model)
        lens.append({k: v.shape for k, v in x.items()})
        with torch.no_grad():
            out = model(**{k: torch.from_numpy(v) for k, v in x.items()})
        for name in spec.outputs:
            assert name in out, f"{name} not in {list(out.keys())}"
            assert torch.isfinite(out[name]).all(), name
    if "text" in spec.capabilities and spec.arch_class != "multimodal":
        assert lens[0]["input_ids"] != lens[1]["input_ids"], "index 0 and 1 should differ in length"
    assert _same(example(spec, path, 0), example(spec, path, 0)), "inputs are not deterministic"


def _forward_args(model) -> set[str]:
    import inspect

    return set(inspect.signature(model.forward).parameters)


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("spec_id", [i for i, s in SPECS.items() if s.has("batch")])
def test_batch_rows_match_single_examples(spec_id, zoo_cache):
    """Right padding + attention_mask: each row of the padded batch equals its batch-1 run."""
    spec = SPECS[spec_id]
    path = _built(spec_id, zoo_cache)
    model = getattr(transformers, spec.auto_class).from_pretrained(path).eval()
    b, lens = batch(spec, path, (0, 1)), lengths(spec, path, (0, 1))
    assert all(v.shape[0] == 2 for v in b.values())
    with torch.no_grad():
        out_b = model(**{k: torch.from_numpy(v) for k, v in b.items()})
        for row in (0, 1):
            single = model(**{k: torch.from_numpy(v) for k, v in example(spec, path, row).items()})
            for name in spec.outputs:
                got, want = out_b[name][row], single[name][0]
                if lens is not None and got.shape != want.shape:  # sequence-aligned output: trim padding
                    got = got[: lens[row]]
                torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("spec_id", [i for i, s in SPECS.items() if s.generate])
def test_generation_inputs_generate(spec_id, zoo_cache):
    spec = SPECS[spec_id]
    path = _built(spec_id, zoo_cache)
    model = getattr(transformers, spec.auto_class).from_pretrained(path).eval()
    x = generation_inputs(spec, path)
    assert "decoder_input_ids" not in x
    n = spec.generate["max_new_tokens"]
    with torch.no_grad():
        res = model.generate(**{k: torch.from_numpy(v) for k, v in x.items()}, do_sample=False, max_new_tokens=n,
                             output_scores=True, return_dict_in_generate=True)
    assert res.sequences.shape[0] == 1 and res.sequences.shape[1] >= n
    # greedy checks compare ids across backends: a near-tie would flip under bf16/fp16 noise, and a
    # model that repeats one token proves little (models.toml raises the init scale for this)
    gaps = [float(torch.topk(s[0].float(), 2).values.diff().abs()) for s in res.scores]
    assert min(gaps) > 0.05, f"top-1/top-2 logit gap {min(gaps):.4f}: greedy ids are a coin toss"
    assert len(set(res.sequences[0, -n:].tolist())) >= 3, f"degenerate generation {res.sequences[0].tolist()}"


def test_max_positions(zoo_cache):
    assert max_positions(SPECS["gpt2"], _built("gpt2", zoo_cache)) == SPECS["gpt2"].config["n_positions"]
    assert max_positions(SPECS["clip"], _built("clip", zoo_cache)) == 32
    assert max_positions(SPECS["t5"], _built("t5", zoo_cache)) is None


def test_llava_prompt_holds_one_token_per_patch(zoo_cache):
    spec = SPECS["llava"]
    x = example(spec, _built("llava", zoo_cache))
    assert (x["input_ids"] == spec.config["image_token_index"]).sum() == spec.config["image_seq_length"] == 16


# ----------------------------------------------------------------------------------- real weights

def test_minilm_golden_tokens_and_hidden_state():
    spec = SPECS["minilm"]
    try:
        path = materialize(spec)
    except DependencyMissing as exc:
        pytest.skip(f"[{exc.kind}] {exc.reason}")
    tok = transformers.AutoTokenizer.from_pretrained(path)
    enc = tok("The quick brown fox", return_tensors="pt")
    assert enc["input_ids"][0].tolist() == [101, 1996, 4248, 2829, 4419, 102]
    model = transformers.AutoModel.from_pretrained(path).eval()
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state[0, 0, :5]
    want = torch.tensor([0.169885, 0.088239, 0.092182, 0.500636, -0.038756])
    torch.testing.assert_close(hidden, want, rtol=0, atol=1e-4)


def test_cli_list_and_build(tmp_path, capsys):
    from hfmatrix.zoo.cli import main

    assert main(["list"]) == 0
    assert "mixture-of-experts" in capsys.readouterr().out
    assert main(["build", "--cache", str(tmp_path), "--json", "vit"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result[0]["status"] == "ok" and Path(result[0]["path"]).parent == tmp_path


# ----------------------------------------------------------------------------- the auto-zoo as a spec source
def test_baseline_selection_covers_100_models(monkeypatch):
    """`nox -s baseline` (cpu) selects >= 100 distinct models: the curated zoo plus a deterministic auto-zoo
    sample of types the auto-zoo does not know to fail. Listing builds nothing."""
    from hfmatrix import sessions
    from hfmatrix.plugin.parametrization import resolve_models
    from hfmatrix.zoo import auto, auto_specs
    monkeypatch.delenv(sessions.BASELINE_AUTOZOO.name, raising=False)
    (arg,) = sessions.baseline_model_args("cpu")
    specs = resolve_models(arg.removeprefix("--hfm-models="))
    auto_ids = [i for i, s in specs.items() if auto_specs.is_auto(s)]
    assert len(specs) >= 100 and set(SPECS) <= set(specs)
    assert len(auto_ids) == int(sessions.BASELINE_AUTOZOO.default) and not set(auto_ids) & set(SPECS)
    known = auto.load_known()
    assert not [i for i in auto_ids if (specs[i].model_type, "base") in known]
    assert list(resolve_models(arg.removeprefix("--hfm-models="))) == list(specs)   # deterministic
    assert all("autozoo" not in a for env in ("onnxruntime", "openvino", "serve")
               for a in sessions.baseline_model_args(env))   # the sample is the torch baseline's only
    monkeypatch.setenv(sessions.BASELINE_AUTOZOO.name, "0")
    assert sessions.baseline_model_args("cpu") == ()
    with pytest.raises(ValueError, match="autozoo:N"):
        resolve_models("autozoo:many")


def test_autozoo_spec_materializes_with_its_synthesized_inputs(tmp_path):
    """An auto-zoo spec builds through the content-addressed cache; zoo.example gives the inputs the
    auto-zoo synthesized, and the saved model loads through the spec's Auto class and runs on them."""
    from hfmatrix.zoo import auto_specs
    spec = auto_specs.spec_for("bert")
    folder = materialize(spec, cache_dir=tmp_path)
    assert not verify(folder) and (folder / auto_specs.INPUTS_FILE).is_file()
    assert materialize(spec, cache_dir=tmp_path) == folder
    inputs = example(spec, folder)
    assert "input_ids" in inputs and all(isinstance(v, np.ndarray) for v in inputs.values())
    model = getattr(transformers, spec.auto_class).from_pretrained(folder).eval()
    with torch.no_grad():
        out = model(**{k: torch.from_numpy(v) for k, v in inputs.items()})
    assert torch.isfinite(out.last_hidden_state).all() and out.last_hidden_state.shape[:2] == inputs["input_ids"].shape


def test_sample_exclusions_are_data_with_a_reason(tmp_path):
    """auto_sample_exclude.toml: real model types, each with a reason of a known kind; a malformed entry
    is an error naming it, and an excluded type never enters the sample."""
    from hfmatrix.zoo import auto, auto_specs
    exclude = auto_specs.load_exclude()
    assert exclude and set(exclude) <= set(auto.model_types())
    assert all(r.split(":", 1)[0] in ("slow", "dependency", "backend") for r in exclude.values())
    assert not set(exclude) & set(auto_specs.sample(100))
    bad = tmp_path / "x.toml"
    bad.write_text('[[exclude]]\nmodel_type = "bert"\n')
    with pytest.raises(ValueError, match="entry #0 needs model_type and reason"):
        auto_specs.load_exclude(bad)
