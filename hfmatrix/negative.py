"""The bad-input catalogue: corrupt artifacts and bad inputs, each with what every backend must do.

The catalogue is data (``negative_cases.toml``): one ``[[case]]`` per bad input, naming a mutation
defined here, which models it applies to, and ``[[case.expect]]`` entries matched on backend
(and optionally device / precision and what the model is: model_type, arch_class, task, source,
checkpoint or the zoo id, hfmatrix/subject.py; fnmatch patterns; the most specific entry wins). An
expectation is either an error (``raises`` = exception class name anywhere in the raised type's
MRO, ``match`` = regex searched in its message) or a documented behaviour from BEHAVIOURS, and
always has a ``reason``. No expectation for a curated zoo model is a failure that shows what happened,
so a new backend gets its expectations written from evidence, not guessed; for a folder given with
``--hfm-models`` it is a ``no-expectation`` skip recording what happened.

Stages: ``load`` corrupts a COPY of the materialized folder (unchanged files are symlinked;
a mutation always writes a new file, so the cache is never touched) and loads it fresh, then runs
one example; ``run`` feeds the loaded session a bad input tensor; ``inputs`` builds inputs from a
bad raw modality through the folder's tokenizer / processor; ``subprocess`` runs in a child
process under RLIMIT_AS (the memory-limit case).
"""
from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import subject, versions
from .match import Claim, Rule, best, check_ties, claim, shared_reasons

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover
    import tomli as tomllib  # type: ignore

CATALOGUE = Path(__file__).with_name("negative_cases.toml")
STAGES = ("load", "run", "inputs", "subprocess", "request")
#: backends that take the `request` stage (bad HTTP requests to a served model) and only that stage
REQUEST_BACKENDS = ("serve",)
WEIGHTS = "model.safetensors"


# ----------------------------------------------------------------------------------- catalogue
@dataclass(frozen=True)
class Expectation:
    reason: str  # the claim (hfmatrix.match.Claim); evidence: what was measured, when, on what
    raises: tuple[str, ...] = ()  # any of these class names (a short list of specific errors, never Exception)
    match: str = ""
    behaviour: str = ""
    keys: tuple[tuple[str, Any], ...] = ()  # (backend|device|precision|a subject key, pattern or patterns) and
    # (library, version specifier) conditions such as ("transformers", "<5")
    evidence: str = ""
    rule: Rule | None = field(default=None, compare=False, repr=False)

    def describe(self) -> str:
        what = f"raises {' | '.join(self.raises)} matching /{self.match}/" if self.raises else f"behaviour {self.behaviour!r}"
        return f"{what} ({Claim(self.reason, self.evidence).text})"


@dataclass(frozen=True)
class NegCase:
    id: str
    stage: str
    mutation: str
    description: str
    args: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    needs: tuple[str, ...] = ()       # every capability (spec.has)
    any_of: tuple[str, ...] = ()      # at least one capability
    tasks: tuple[str, ...] = ()       # spec.task in tasks
    models: tuple[str, ...] = ()      # explicit model ids (cost-limited cases)
    sources: tuple[str, ...] = ()     # spec.source kinds ("random", "package", ...)
    needs_max_positions: bool = False
    expect: tuple[Expectation, ...] = ()

    def applies(self, spec) -> bool:
        if self.needs and not all(spec.has(c) for c in self.needs):
            return False
        if self.any_of and not any(spec.has(c) for c in self.any_of):
            return False
        if self.tasks and spec.task not in self.tasks:
            return False
        if self.models and spec.id not in self.models:
            return False
        if self.sources and spec.source.partition(":")[0] not in self.sources:
            return False
        if self.needs_max_positions and not spec.max_positions_key:
            return False
        return True

    def expectation(self, model, backend: str, device: str = "cpu", precision: str = "fp32") -> Expectation | None:
        """The most specific expectation for ``model`` (a ModelSpec, or a zoo id) on this target: entries
        match on the model's facts (hfmatrix/subject.py: model_type, arch_class, task, source, checkpoint)."""
        values = {"backend": backend, "device": device, "precision": precision}
        return best(self.expect, lambda e: e.rule, values, subject.facts(model))


EXPECT_KEYS = ("backend", "device", "precision")


def _expectation(e: dict, cid: str, shared: dict[str, Claim], where: str) -> Expectation:
    """One [[case.expect]] of case ``cid``, checked: a data error fails the catalogue's load, never (hidden under
    a known bug) the check."""
    e = dict(e)
    if bool(e.get("raises")) == bool(e.get("behaviour")):
        raise ValueError(f"negative case {cid!r}: expectation {e} needs exactly one of raises / behaviour")
    if e.get("behaviour") and e["behaviour"] not in BEHAVIOURS:
        raise ValueError(f"negative case {cid!r}: unknown behaviour {e['behaviour']!r}; known {sorted(BEHAVIOURS)}")
    raises = e.get("raises", ())
    raises = (raises,) if isinstance(raises, str) else tuple(raises)
    if {"Exception", "BaseException"} & set(raises):
        raise ValueError(f"negative case {cid!r}: 'raises = Exception' proves nothing; name the error")
    if raises and not e.get("match"):
        raise ValueError(f"negative case {cid!r}: an expected error needs a message pattern (match)")
    try:
        re.compile(e.get("match", ""), re.S)
    except re.error as exc:
        raise ValueError(f"negative case {cid!r}: match {e['match']!r} is not a valid regex: {exc}") from None
    why = claim(e, shared, f"negative case {cid!r}: expectation {e}")
    rule = Rule.of(e, EXPECT_KEYS, where)  # a malformed version specifier fails here
    keys = tuple((k, tuple(map(str, v)) if isinstance(v, list) else str(v))
                 for k in (*EXPECT_KEYS, *subject.SUBJECT_KEYS, *versions.VERSION_KEYS) if k in e for v in [e[k]])
    return Expectation(reason=why.reason, raises=raises, match=e.get("match", ""), behaviour=e.get("behaviour", ""),
                       keys=keys, evidence=why.evidence, rule=rule)


def load_catalogue(path: Path | None = None) -> dict[str, NegCase]:
    """The catalogue at path, else $HFMATRIX_NEGATIVE_CASES, else the built-in one."""
    file = str(path or os.environ.get("HFMATRIX_NEGATIVE_CASES") or CATALOGUE)
    with open(file, "rb") as fh:
        data = tomllib.load(fh)
    shared = shared_reasons(data, file)
    cases: dict[str, NegCase] = {}
    for entry in data.get("case", []):
        entry = dict(entry)
        cid = entry.get("id", "?")
        expects = tuple(_expectation(e, cid, shared, f"case {cid!r} [[case.expect]] #{i + 1}")
                        for i, e in enumerate(entry.pop("expect", [])))
        check_ties(expects, lambda x: x.rule, file)
        for key in ("needs", "any_of", "tasks", "models", "sources"):
            entry[key] = tuple(entry.get(key, ()))
        case = NegCase(expect=expects, **entry)
        if case.stage not in STAGES:
            raise ValueError(f"negative case {cid!r}: stage {case.stage!r} not in {STAGES}")
        if case.mutation not in MUTATIONS.get(case.stage, {}):
            raise ValueError(f"negative case {cid!r}: no {case.stage} mutation {case.mutation!r}")
        if cid in cases:
            raise ValueError(f"duplicate negative case {cid!r}")
        cases[cid] = case
    return cases


@lru_cache(maxsize=1)
def catalogue() -> dict[str, NegCase]:
    return load_catalogue()


def backends_covered() -> tuple[str, ...]:
    """Backends the catalogue has expectations for (the suite runs only there; a new backend joins by
    adding its expectations, from evidence)."""
    names = {n for case in catalogue().values() for exp in case.expect for k, v in exp.keys if k == "backend"
             for n in ((v,) if isinstance(v, str) else v)}
    return tuple(sorted(n for n in names if "*" not in n))


# ----------------------------------------------------------------------------------- outcome
@dataclass
class Outcome:
    error: BaseException | None = None
    outputs: dict[str, np.ndarray] | None = None
    facts: dict[str, Any] = field(default_factory=dict)  # behaviour evidence (loading info, verify problems)
    recovery_error: BaseException | None = None  # what the intact input raised after the bad one, if anything

    def error_type(self) -> str:
        if isinstance(self.error, ChildError):
            return f"{self.error.type_names[0]} (in the child process)"
        return f"{type(self.error).__module__}.{type(self.error).__qualname__}"

    def describe(self) -> str:
        if self.error is not None:
            return f"raised {self.error_type()}: {str(self.error)[:600]}" + (f"; {self.facts}" if self.facts else "")
        shapes = {k: list(v.shape) for k, v in (self.outputs or {}).items()}
        bad = nonfinite(self.outputs or {})
        return f"returned outputs {shapes}" + (f" with non-finite values {bad}" if bad else " (all finite)") + \
            (f"; {self.facts}" if self.facts else "")

    def evidence(self) -> dict[str, Any]:
        out: dict[str, Any] = {"observed": self.describe()[:1000]}
        if self.error is not None:
            out["error_type"] = self.error_type()
        if self.outputs is not None:
            out["output_shapes"] = {k: list(v.shape) for k, v in self.outputs.items()}
            out["nonfinite"] = nonfinite(self.outputs)
        return out


def nonfinite(outputs: dict[str, np.ndarray]) -> dict[str, int]:
    return {k: int((~np.isfinite(v)).sum()) for k, v in outputs.items()
            if v.dtype.kind == "f" and v.size and not np.isfinite(v).all()}


def _error_matches(error: BaseException, name: str) -> bool:
    if isinstance(error, ChildError):  # raised in a child process: its class names travelled as text
        return any(name in (full, full.rpartition(".")[2]) for full in error.type_names)
    for cls in type(error).__mro__:
        if name in (cls.__name__, f"{cls.__module__}.{cls.__qualname__}"):
            return True
    return False


def _b_runs(o: Outcome) -> bool:
    return o.error is None and bool(o.outputs) and not nonfinite(o.outputs)


def _b_nonfinite(o: Outcome) -> bool:
    return o.error is None and bool(o.outputs) and bool(nonfinite(o.outputs))


def _b_empty(o: Outcome) -> bool:
    return o.error is None and bool(o.outputs) and all(v.size == 0 for v in o.outputs.values())


def _b_same(o: Outcome) -> bool:
    return o.error is None and o.facts.get("same_as_intact") is True


def _b_manifest(o: Outcome) -> bool:
    return o.error is None and any("sha256 mismatch" in p for p in o.facts.get("verify", []))


def _b_missing_keys(o: Outcome) -> bool:
    return o.error is None and bool(o.facts.get("missing_keys"))


BEHAVIOURS: dict[str, tuple[Callable[[Outcome], bool], str]] = {
    "runs": (_b_runs, "accepted: runs and every output is finite"),
    "nonfinite-output": (_b_nonfinite, "runs; NaN/inf propagates to the outputs, where the finite check reports it"),
    "empty-output": (_b_empty, "runs; every output is empty (0 rows or 0 positions)"),
    "same-as-intact": (_b_same, "runs and every output equals the intact input's, value for value (folded shapes allowed)"),
    "detected-by-manifest": (_b_manifest, "loads (the format has no checksum); hfmatrix's manifest sha256 catches it"),
    "reports-missing-keys": (_b_missing_keys, "loads; the loader reports the missing tensor (test_load_session fails it)"),
}


def judge(expect: Expectation, outcome: Outcome) -> tuple[bool, str]:
    """(held, explanation)."""
    if expect.raises:
        if outcome.error is None:
            return False, f"expected {expect.describe()}, but it {outcome.describe()}"
        if not any(_error_matches(outcome.error, name) for name in expect.raises):
            return False, f"expected {' | '.join(expect.raises)}, got {outcome.describe()}"
        if expect.match and not re.search(expect.match, str(outcome.error), re.S):
            return False, f"{outcome.error_type()} raised, but its message does not match /{expect.match}/: {str(outcome.error)[:600]}"
        return True, ""
    check, text = BEHAVIOURS[expect.behaviour]
    if not check(outcome):
        return False, f"expected behaviour {expect.behaviour!r} ({text}), but it {outcome.describe()}"
    return True, ""


# ----------------------------------------------------------------------------------- folder copies
def copy_folder(src: Path, dst: Path) -> Path:
    """A copy of a model folder: small files copied, large ones symlinked (read-only use)."""
    dst.mkdir(parents=True, exist_ok=True)
    for f in Path(src).iterdir():
        if f.is_dir():
            shutil.copytree(f, dst / f.name, symlinks=True)
        elif f.stat().st_size > (1 << 20):
            (dst / f.name).symlink_to(f.resolve())
        else:
            shutil.copy(f, dst / f.name)
    return dst


def _replace(path: Path, data: bytes | str) -> None:
    """Write a NEW file (never through a symlink into the cache)."""
    if path.is_symlink() or path.exists():
        path.unlink()
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)


def read_safetensors(path: Path) -> tuple[dict[str, Any], bytes]:
    raw = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def write_safetensors(path: Path, header: dict[str, Any], data: bytes) -> None:
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # the format pads the header to 8 bytes
    _replace(path, struct.pack("<Q", len(blob)) + blob + data)


def _tensors(header: dict[str, Any]) -> list[str]:
    return sorted((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0])


def _largest_float(header: dict[str, Any]) -> str:
    """The largest learned 2-D float weight. Position tables are left out: some models rebuild them
    instead of trusting the checkpoint (Whisper's sinusoidal embed_positions on transformers 4.57)."""
    floats = [k for k in _tensors(header) if header[k]["dtype"] in ("F32", "F16", "BF16") and len(header[k]["shape"]) == 2
              and "position" not in k]
    return max(floats, key=lambda k: header[k]["data_offsets"][1] - header[k]["data_offsets"][0])


def _rebuild(header: dict[str, Any], data: bytes, replace: dict[str, tuple[str, list[int], bytes] | None]):
    """New (header, data) with some tensors replaced (dtype, shape, bytes) or dropped (None)."""
    new_header = {"__metadata__": header.get("__metadata__", {})} if "__metadata__" in header else {}
    out = bytearray()
    for name in _tensors(header):
        begin, end = header[name]["data_offsets"]
        if name in replace:
            if replace[name] is None:
                continue
            dtype, shape, blob = replace[name]
        else:
            dtype, shape, blob = header[name]["dtype"], header[name]["shape"], data[begin:end]
        new_header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(out), len(out) + len(blob)]}
        out += blob
    return new_header, bytes(out)


# folder mutations: (folder, spec, args) -> facts for the record
def m_truncate(folder: Path, spec, args) -> dict[str, Any]:
    f = folder / args.get("file", WEIGHTS)
    raw = f.read_bytes()
    keep = int(len(raw) * float(args.get("keep", 0.5)))
    _replace(f, raw[:keep])
    return {"bytes_kept": keep, "bytes_total": len(raw)}


def m_zero(folder: Path, spec, args) -> dict[str, Any]:
    _replace(folder / args.get("file", WEIGHTS), b"")
    return {}


def m_flip_header_bit(folder: Path, spec, args) -> dict[str, Any]:
    f = folder / WEIGHTS
    raw = bytearray(f.read_bytes())
    pos = 8  # the header's opening '{' (0x7b); flipping bit 0 gives 'z'
    raw[pos] ^= 0x01
    _replace(f, bytes(raw))
    return {"flipped_byte": pos}


def m_flip_data_bit(folder: Path, spec, args) -> dict[str, Any]:
    f = folder / WEIGHTS
    header, data = read_safetensors(f)
    name = _largest_float(header)
    begin, end = header[name]["data_offsets"]
    raw = bytearray(f.read_bytes())
    (n,) = struct.unpack("<Q", raw[:8])
    pos = 8 + n + begin + (end - begin) // 2 + 3  # a float's exponent byte (little endian, byte 3 of 4)
    raw[pos] ^= 0x40
    _replace(f, bytes(raw))
    return {"tensor": name, "flipped_byte": pos}


def m_header_length(folder: Path, spec, args) -> dict[str, Any]:
    f = folder / WEIGHTS
    raw = f.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    value = {"past-eof": len(raw) + 4096, "short": max(1, n // 2), "huge": 2 ** 63 - 1}[args["length"]]
    _replace(f, struct.pack("<Q", value) + raw[8:])
    return {"true_length": n, "claimed_length": value}


def m_retype_tensor(folder: Path, spec, args) -> dict[str, Any]:
    f = folder / WEIGHTS
    header, data = read_safetensors(f)
    name = _largest_float(header)
    begin, end = header[name]["data_offsets"]
    values = np.frombuffer(data[begin:end], dtype=np.float32)
    dtype = args["dtype"]
    converted = {"I64": values.astype(np.int64), "F16": values.astype(np.float16), "F64": values.astype(np.float64)}[dtype]
    header2, data2 = _rebuild(header, data, {name: (dtype, header[name]["shape"], converted.tobytes())})
    write_safetensors(f, header2, data2)
    return {"tensor": name, "dtype": dtype}


def m_reshape_tensor(folder: Path, spec, args) -> dict[str, Any]:
    f = folder / WEIGHTS
    header, data = read_safetensors(f)
    name = _largest_float(header)
    begin, end = header[name]["data_offsets"]
    rows, cols = header[name]["shape"]
    blob = data[begin:end]
    keep_rows = max(1, rows - 1)  # one row short: a shape the config does not predict
    blob = blob[: keep_rows * cols * (len(blob) // (rows * cols))]
    header2, data2 = _rebuild(header, data, {name: (header[name]["dtype"], [keep_rows, cols], blob)})
    write_safetensors(f, header2, data2)
    return {"tensor": name, "shape": [keep_rows, cols], "config_shape": [rows, cols]}


def m_drop_tensor(folder: Path, spec, args) -> dict[str, Any]:
    f = folder / WEIGHTS
    header, data = read_safetensors(f)
    name = _largest_float(header)
    header2, data2 = _rebuild(header, data, {name: None})
    write_safetensors(f, header2, data2)
    return {"dropped": name}


def _config(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "config.json").read_text(encoding="utf-8"))


def m_config_edit(folder: Path, spec, args) -> dict[str, Any]:
    cfg = _config(folder)
    for key in args.get("delete", []):
        cfg.pop(key, None)
    cfg.update(args.get("set", {}))
    if args.get("delete_shrink"):  # drop every key the tiny build set: defaults are full-size dims
        for key in spec.config:
            cfg.pop(key, None)
    if "vocab_size" in args.get("scale", {}):
        owner = cfg.get("text_config", cfg) if "vocab_size" not in cfg else cfg
        owner["vocab_size"] = max(8, owner["vocab_size"] // 2)
    _replace(folder / "config.json", json.dumps(cfg, indent=1))
    return {}


def m_config_raw(folder: Path, spec, args) -> dict[str, Any]:
    text = (folder / "config.json").read_bytes()
    mode = args["mode"]
    if mode == "truncated":
        _replace(folder / "config.json", text[: len(text) // 2])
    elif mode == "not-utf8":
        _replace(folder / "config.json", b"\xff\xfe" + text)
    return {}


def m_delete(folder: Path, spec, args) -> dict[str, Any]:
    gone = []
    for pattern in args["files"]:
        for f in list(folder.glob(pattern)):
            f.unlink()
            gone.append(f.name)
    return {"deleted": gone}


def m_pickle_weights(folder: Path, spec, args) -> dict[str, Any]:
    import torch
    from safetensors.torch import load_file

    state = load_file(str(folder / WEIGHTS))
    (folder / WEIGHTS).unlink()
    torch.save(state, folder / "pytorch_model.bin")
    return {}


# ----------------------------------------------------------------------------------- input mutations
def _ids_key(inputs) -> str:
    if "input_ids" not in inputs:
        raise KeyError(f"no input_ids in {sorted(inputs)}")
    return "input_ids"


def _vocab(model_dir: Path) -> int:
    cfg = json.loads((Path(model_dir) / "config.json").read_text())
    return int((cfg.get("text_config") or cfg)["vocab_size"] if "vocab_size" not in cfg else cfg["vocab_size"])


def _text_rows(inputs: dict[str, np.ndarray], length: int) -> dict[str, np.ndarray]:
    """The text inputs resized to ``length`` tokens (ids repeated, mask all ones)."""
    ids = inputs["input_ids"]
    out = dict(inputs)
    if length <= ids.shape[1]:
        reps = ids[:, :length]
    else:  # extend with the last (text) token: special tokens such as <image> keep their count
        reps = np.concatenate([ids, np.repeat(ids[:, -1:], length - ids.shape[1], axis=1)], axis=1)
    out["input_ids"] = reps.astype(ids.dtype)
    for key in ("attention_mask", "token_type_ids"):
        if key in inputs:
            fill = 1 if key == "attention_mask" else 0
            out[key] = np.full((ids.shape[0], length), fill, dtype=inputs[key].dtype)
    return out


def i_ids_value(inputs, spec, model_dir, args):
    out = dict(inputs)
    ids = out[_ids_key(inputs)].copy()
    value = _vocab(model_dir) + int(args.get("offset", 0)) if args["value"] == "vocab" else int(args["value"])
    ids[:, ids.shape[1] // 2] = value
    out["input_ids"] = ids
    return out, {"id": value}


def i_ids_float(inputs, spec, model_dir, args):
    out = dict(inputs)
    out["input_ids"] = out[_ids_key(inputs)].astype(np.float32) + 0.5
    return out, {}


def i_rank(inputs, spec, model_dir, args):
    out = dict(inputs)
    key = args["key"]
    if args["rank"] == "flat":
        out[key] = out[key].reshape(-1)
    else:
        out[key] = out[key][None]
    return out, {key: list(out[key].shape)}


def i_mask_length(inputs, spec, model_dir, args):
    out = dict(inputs)
    mask = out["attention_mask"]
    out["attention_mask"] = np.ones((mask.shape[0], mask.shape[1] + int(args["delta"])), dtype=mask.dtype)
    return out, {"ids": list(out["input_ids"].shape), "mask": list(out["attention_mask"].shape)}


def i_batch(inputs, spec, model_dir, args):
    rows = int(args["rows"])
    return {k: np.repeat(v[:1], rows, axis=0) for k, v in inputs.items()}, {"rows": rows}


def i_seq_len(inputs, spec, model_dir, args):
    from .zoo import max_positions

    if args["length"] == "beyond-max":
        limit = max_positions(spec, model_dir)
        length = int(limit) + 8
    else:
        length = int(args["length"])
    return _text_rows(inputs, length), {"length": length}


def i_fill_nan(inputs, spec, model_dir, args):
    out = dict(inputs)
    key = next(k for k in args["keys"] if k in inputs)
    value = out[key].copy()
    flat = value.reshape(-1)
    flat[flat.size // 2] = np.nan
    out[key] = value
    return out, {"key": key}


def i_channels(inputs, spec, model_dir, args):
    out = dict(inputs)
    pv = out["pixel_values"]
    out["pixel_values"] = np.ascontiguousarray(pv[:, :1])
    return out, {"pixel_values": list(out["pixel_values"].shape)}


def i_image_size(inputs, spec, model_dir, args):
    out = dict(inputs)
    pv = out["pixel_values"]
    side = pv.shape[-1] + int(args["delta"])
    out["pixel_values"] = np.resize(pv, pv.shape[:2] + (side, side)).astype(pv.dtype)
    return out, {"pixel_values": list(out["pixel_values"].shape)}


def i_audio_length(inputs, spec, model_dir, args):
    out = dict(inputs)
    key = next(k for k in ("input_values", "input_features") if k in inputs)
    length = int(args["length"])
    value = out[key]
    out[key] = np.ascontiguousarray(np.resize(value, value.shape[:-1] + (length,))).astype(value.dtype)
    if key == "input_values" and "attention_mask" in out:
        out["attention_mask"] = np.ones(out[key].shape, dtype=out["attention_mask"].dtype)
    return out, {key: list(out[key].shape)}


def i_mel_bins(inputs, spec, model_dir, args):
    out = dict(inputs)
    feats = out["input_features"]
    out["input_features"] = np.ascontiguousarray(feats[:, : feats.shape[1] // 2])
    return out, {"input_features": list(out["input_features"].shape)}


def i_drop_input(inputs, spec, model_dir, args):
    out = dict(inputs)
    key = next(k for k in args["keys"] if k in out)
    del out[key]
    return out, {"dropped": key}


def i_extra_input(inputs, spec, model_dir, args):
    out = dict(inputs)
    out[args["name"]] = np.zeros((1, 3), dtype=np.int64)
    return out, {}


# ----------------------------------------------------------------------------------- raw-input mutations
def r_text(spec, model_dir, args):
    from .zoo.inputs import _tokenizer

    tok = _tokenizer(Path(model_dir))
    text = {"lone-surrogate": "caf\udce9 au lait", "bytes": b"caf\xe9 au lait"}[args["text"]]
    return tok([text], return_tensors="np")


def r_example(spec, model_dir, args):
    from .zoo.inputs import example

    return example(spec, Path(model_dir))


# ----------------------------------------------------------------------------------- running a case
MUTATIONS: dict[str, dict[str, Callable]] = {
    "load": {"truncate": m_truncate, "zero": m_zero, "flip_header_bit": m_flip_header_bit,
             "flip_data_bit": m_flip_data_bit, "header_length": m_header_length, "retype_tensor": m_retype_tensor,
             "reshape_tensor": m_reshape_tensor, "drop_tensor": m_drop_tensor, "config_edit": m_config_edit,
             "config_raw": m_config_raw, "delete": m_delete, "pickle_weights": m_pickle_weights},
    "run": {"ids_value": i_ids_value, "ids_float": i_ids_float, "rank": i_rank, "mask_length": i_mask_length,
            "batch": i_batch, "seq_len": i_seq_len, "fill_nan": i_fill_nan, "channels": i_channels,
            "image_size": i_image_size, "audio_length": i_audio_length, "mel_bins": i_mel_bins,
            "drop_input": i_drop_input, "extra_input": i_extra_input},
    "inputs": {"text": r_text, "example_from_folder": r_example},
    "subprocess": {"memory_limit": None},
    "request": dict.fromkeys(("prompt_too_long", "unknown_model", "max_tokens", "raw_body")),  # serving/bad_requests.py
}


_SCRATCH_NUMBERS = itertools.count()


def neutral_dir(workdir: Path) -> Path:
    """A folder for a corrupted copy whose path names no model: transformers 4.x AutoConfig guesses the
    architecture from the PATH when config.json has no model_type (a pytest tmp_path holds the test id,
    e.g. .../test_negative_gpt2_torch_cpu_f0/, and turned "no config.json" into a full-size default GPT-2).
    The name is digits only (pid, counter): a random tempfile suffix once held "t5" and made a GPT-2
    copy load as T5. The counter never repeats in a process: a reused path would hit tokenizers and
    processors cached for the previous copy. A base folder that names a model type is refused."""
    import tempfile

    base = Path(os.environ.get("HFMATRIX_NEG_TMP") or tempfile.gettempdir())
    hit = _model_type_in(str(base / "hfm-neg-0" / "model"))
    if hit:
        raise RuntimeError(f"negative-case scratch base {base} contains the model type {hit!r}: transformers "
                           "would guess that architecture from the path; set HFMATRIX_NEG_TMP to another folder")
    for n in _SCRATCH_NUMBERS:  # never reused within a process: loaders cache per path (lru_cache)
        folder = base / f"hfm-neg-{os.getpid()}-{n}"
        try:
            folder.mkdir(parents=True)
        except FileExistsError:
            continue
        return folder


def _model_type_in(path: str) -> str | None:
    try:
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
    except ImportError:  # no transformers in this env: nothing can guess from the path
        return None
    return next((k for k in sorted(CONFIG_MAPPING_NAMES, key=len, reverse=True) if k in path), None)


def run_load_case(neg: NegCase, spec, model_dir: Path, workdir: Path, load: Callable[[Path], Any],
                  keep: bool = False) -> Outcome:
    """Corrupt a copy, then load it fresh and run one example through it."""
    scratch = neutral_dir(workdir)
    try:
        return _run_load_case(neg, spec, model_dir, scratch / "model", load)
    finally:
        if not keep:
            shutil.rmtree(scratch, ignore_errors=True)


def _run_load_case(neg: NegCase, spec, model_dir: Path, folder: Path, load: Callable[[Path], Any]) -> Outcome:
    from .zoo import example

    copy_folder(Path(model_dir), folder)
    facts = MUTATIONS["load"][neg.mutation](folder, spec, neg.args)
    inputs = example(spec, Path(model_dir))  # inputs from the intact folder: the load is under test
    outcome = Outcome(facts={**facts, "copy": str(folder)})
    session = None
    try:
        session = load(folder)
        info = getattr(session, "loading_info", None) or {}
        if info.get("missing_keys"):
            outcome.facts["missing_keys"] = list(info["missing_keys"])
        outcome.outputs = session.run(inputs)
    except Exception as exc:  # the outcome under test; judged against the catalogue, not swallowed
        outcome.error = exc
    finally:
        if session is not None:
            session.close()
    if outcome.error is None and neg.mutation == "flip_data_bit":
        from .zoo.materialize import verify
        outcome.facts["verify"] = verify(folder)
    return outcome


def run_input_case(neg: NegCase, spec, model_dir: Path, session) -> Outcome:
    from .zoo import example

    intact = example(spec, Path(model_dir))
    inputs, facts = MUTATIONS["run"][neg.mutation](intact, spec, Path(model_dir), neg.args)
    outcome = Outcome(facts=dict(facts))
    try:
        outcome.outputs = session.run(inputs)
    except Exception as exc:
        outcome.error = exc
    # the session must still serve the intact input after the bad one (a shared, cached session would
    # otherwise fail every later check on this worker)
    try:
        reference = session.run(intact)
        outcome.facts["recovered"] = True
    except Exception as exc:
        outcome.facts["recovered"] = False
        outcome.recovery_error = exc
        outcome.facts["intact_after_error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
        return outcome
    if outcome.outputs is not None:  # accepted: how far from what the intact input gives?
        diffs = {}
        for key, ref in reference.items():
            got = outcome.outputs.get(key)
            if got is None or got.size != ref.size:
                diffs[key] = None
            else:
                diffs[key] = float(np.max(np.abs(got.reshape(ref.shape).astype(np.float64) - ref))) if ref.size else 0.0
        outcome.facts["max_abs_diff_vs_intact"] = diffs
        outcome.facts["same_as_intact"] = bool(diffs) and all(d == 0.0 for d in diffs.values())
    return outcome


def run_raw_case(neg: NegCase, spec, model_dir: Path, workdir: Path) -> Outcome:
    folder = Path(model_dir)
    facts: dict[str, Any] = {}
    scratch = None
    if neg.args.get("delete"):
        scratch = neutral_dir(workdir)
        folder = copy_folder(folder, scratch / "model")
        facts = m_delete(folder, spec, {"files": neg.args["delete"]})
    outcome = Outcome(facts=facts)
    try:
        encoded = MUTATIONS["inputs"][neg.mutation](spec, folder, neg.args)
        outcome.outputs = {k: np.asarray(v) for k, v in dict(encoded).items()}
    except Exception as exc:
        outcome.error = exc
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    return outcome


# ----------------------------------------------------------------------------------- memory limit (child)
class ChildFailed(RuntimeError):
    """The child process died instead of raising (signal or unreported exit)."""


class ChildError(Exception):
    """An error raised in the child process: its class names (MRO) and message, judged by name."""

    def __init__(self, type_names: list[str], message: str):
        super().__init__(message)
        self.type_names = type_names


def run_subprocess_case(neg: NegCase, case, model_dir: Path, timeout: float) -> Outcome:
    payload = {"backend": case.target.backend, "device": case.target.device, "precision": case.target.precision,
               "model": case.spec.id, "zoo_file": os.environ.get("HFMATRIX_ZOO_FILE", ""), "model_dir": str(model_dir),
               "headroom_mb": int(neg.args.get("headroom_mb", 64)), "rows": int(neg.args.get("rows", 65536))}
    proc = subprocess.run([sys.executable, "-m", "hfmatrix.negative", json.dumps(payload)], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    report = json.loads(lines[-1]) if lines else {}
    outcome = Outcome(facts={k: v for k, v in report.items() if k not in ("error_types", "message", "outputs")})
    if report.get("error_types"):
        outcome.error = ChildError(report["error_types"], report.get("message", ""))
    elif report.get("outputs") is not None:
        outcome.outputs = {k: np.zeros(v, dtype=np.float32) for k, v in report["outputs"].items()}
    else:
        outcome.error = ChildFailed(f"child exited {proc.returncode} without a report; stderr: {proc.stderr[-1500:]}")
    return outcome


def _child(payload: dict[str, Any]) -> None:
    """In the child: load, build a huge batch, cap the address space, run, report as one JSON line."""
    import resource

    import psutil

    from . import backends
    from .backends.base import Target
    from .zoo import example, load_specs

    spec = load_specs(payload["zoo_file"] or None)[payload["model"]]
    target = Target(payload["backend"], payload["device"], payload["precision"])
    session = backends.get(target.backend).load(Path(payload["model_dir"]), spec, target)
    inputs = example(spec, Path(payload["model_dir"]))
    session.run(inputs)  # warm: kernels and arenas exist before the cap
    rows = payload["rows"]
    big = {k: np.repeat(v, rows, axis=0) for k, v in inputs.items()}
    vm = psutil.Process().memory_info().vms
    cap = vm + payload["headroom_mb"] * (1 << 20)
    resource.setrlimit(resource.RLIMIT_AS, (cap, resource.getrlimit(resource.RLIMIT_AS)[1]))
    report: dict[str, Any] = {"rows": rows, "cap_bytes": cap, "vms_before": vm,
                              "input_bytes": int(sum(v.nbytes for v in big.values()))}
    try:
        out = session.run(big)
        report["outputs"] = {k: list(v.shape) for k, v in out.items()}
    except BaseException as exc:  # reported to the parent, which judges it against the catalogue
        report["error_types"] = [f"{c.__module__}.{c.__qualname__}" for c in type(exc).__mro__ if c is not object]
        report["message"] = str(exc)[:2000]
    print(json.dumps(report), flush=True)
    os._exit(0)  # no teardown under the cap


if __name__ == "__main__":
    _child(json.loads(sys.argv[1]))
