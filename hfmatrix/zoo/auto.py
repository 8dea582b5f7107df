"""The auto-zoo: every model type transformers knows, shrunk by generic rules and run end to end.

For each model type in ``CONFIG_MAPPING`` and each of its classes — the base model (AutoModel) and
the head of its main task (the first ``MODEL_FOR_*_MAPPING_NAMES`` in auto_rules.toml ``[heads]``)
— :func:`run_case` goes through the stages below and names the first that fails:

    config       generic shrink rules → tiny config (auto_shrink)
    build        parameter count on the meta device (size guard), then the seeded random model
    forward      inputs synthesized from forward() + config (auto_inputs); outputs must be finite
    determinism  a second forward on the same inputs is bitwise identical
    save         save_pretrained (safetensors)
    load         from_pretrained of the saved folder
    reload       the reloaded model's outputs and weights equal the original's, bitwise

Nothing is mocked: every stage runs the real transformers code on CPU torch. Known library bugs
live in auto_known.toml (strict xfails, matched on stage); this module also classifies model types
into architecture classes (:func:`arch_class`) and tabulates coverage (:func:`coverage_table`).

Command line (debugging and measuring, next to ``nox -s zoo``):
    python -m hfmatrix.zoo.auto bert llava --role head     run cases here, one JSON line each
    python -m hfmatrix.zoo.auto --summary results/zoo/records-all.jsonl      coverage, time, memory
    python -m hfmatrix.zoo.auto --ablate results/zoo/records-all.jsonl --rule patch-grid
        rerun the passing types a rule fired on with it disabled: how many types it recovered
"""
from __future__ import annotations

import contextlib
import inspect
import os
import re
import resource
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

try:
    import tomllib
except ModuleNotFoundError:  # python < 3.11
    import tomli as tomllib  # type: ignore

from .. import progress, skips
from ..autozoo_report import coverage_table, failure_text  # the report's table and error line, shared
from .auto_shrink import Rules, default_rules, shrink_config

KNOWN_FILE = Path(__file__).with_name("auto_known.toml")
#: types the generic rules do not yet drive through every stage (the harness's gaps, not library bugs)
GAPS_FILE = Path(__file__).with_name("auto_gaps.toml")
STAGES = ("config", "build", "forward", "determinism", "save", "load", "reload")
ROLES = ("base", "head")
SAMPLE_ENV = "HFMATRIX_AUTOZOO_SAMPLE"
#: files whose change makes CI sweep every model type instead of the sample
RULE_FILES = ("hfmatrix/zoo/auto.py", "hfmatrix/zoo/auto_shrink.py", "hfmatrix/zoo/auto_inputs.py",
              "hfmatrix/zoo/auto_rules.toml", "hfmatrix/zoo/auto_known.toml", "hfmatrix/zoo/auto_gaps.toml",
              "envs/zoo.txt")


# ----------------------------------------------------------------------------- stage failures
class StageFailure(AssertionError):
    """A case failed at ``stage``; the message says why. One subclass per stage (xfail raises=...)."""

    stage = ""

    def __init__(self, message: str):
        super().__init__(f"[{self.stage}] {message}")
        self.message = message


STAGE_ERRORS: dict[str, type[StageFailure]] = {
    s: type(f"{s.capitalize()}StageFailure", (StageFailure,), {"stage": s}) for s in STAGES
}


# ----------------------------------------------------------------------------- enumeration
def _mappings():
    import transformers.models.auto.modeling_auto as ma
    return ma


def model_types() -> list[str]:
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
    return sorted(CONFIG_MAPPING_NAMES)


def _first_name(value) -> str | None:
    if isinstance(value, (list, tuple)):
        return value[0] if value else None
    return value


def class_name(model_type: str, role: str, rules: Rules | None = None) -> tuple[str | None, str]:
    """(transformers class name, mapping it came from) for a role; (None, why) when there is none."""
    ma = _mappings()
    base = _first_name(ma.MODEL_MAPPING_NAMES.get(model_type))
    if role == "base":
        return (base, "MODEL_MAPPING_NAMES") if base else (None, "no AutoModel mapping")
    rules = rules or default_rules()
    for mapping in rules.head_mappings:
        name = _first_name(getattr(ma, mapping, {}).get(model_type))
        if name and name != base:
            return name, mapping
    return None, "no head-class mapping for its tasks"


@lru_cache(maxsize=1)
def auto_classes() -> dict[str, Any]:
    """MODEL_*_MAPPING_NAMES name → the Auto class users load it with (AutoModel, AutoModelForCausalLM, ...)."""
    import transformers
    ma = _mappings()
    by_id = {id(getattr(ma, n)): n for n in dir(ma) if n.endswith("_NAMES") and isinstance(getattr(ma, n), dict)}
    out = {}
    for n in dir(transformers):
        if not n.startswith("AutoModel"):
            continue
        try:
            cls = getattr(transformers, n)
            names = cls._model_mapping._model_mapping
        except Exception:
            continue
        if id(names) in by_id:
            out.setdefault(by_id[id(names)], cls)
    return out


def is_mapped(model_type: str) -> bool:
    ma = _mappings()
    return any(model_type in getattr(ma, n) for n in dir(ma) if n.startswith("MODEL") and n.endswith("_NAMES"))


@dataclass(frozen=True)
class AutoCase:
    model_type: str
    role: str
    class_name: str | None
    mapping: str

    @property
    def id(self) -> str:
        return f"{self.model_type}@{self.role}"


def cases(sample: int | None = None, rules: Rules | None = None) -> list[AutoCase]:
    """Every (model type, role), or those of a deterministic sample of model types."""
    rules = rules or default_rules()
    types = model_types()
    if sample:
        types = sample_types(types, sample)
    out = []
    for mt in types:
        for role in ROLES:
            name, mapping = class_name(mt, role, rules)
            out.append(AutoCase(mt, role, name, mapping))
    return out


def sample_types(types: Iterable[str], n: int) -> list[str]:
    """n model types picked by a stable hash: the same on every machine and run, spread over the alphabet."""
    return sorted(sorted(types, key=lambda t: (zlib.crc32(t.encode()), t))[:n])


def sample_size(env: dict | None = None, changed: Iterable[str] | None = None, default: int = 0) -> int:
    """How many model types to run: $HFMATRIX_AUTOZOO_SAMPLE (0/'all' = every type); when unset,
    every type if a changed file is one of the zoo's rule files, else ``default``."""
    env = os.environ if env is None else env
    text = str(env.get(SAMPLE_ENV, "")).strip().lower()
    if text in ("all", "0"):
        return 0
    if text:
        return int(text)
    if changed is not None and any(str(p) in RULE_FILES for p in changed):
        return 0
    return default


# ----------------------------------------------------------------------------- known failures
@dataclass(frozen=True)
class Known:
    model_type: str
    role: str
    stage: str
    reason: str
    evidence: str = ""
    gap: bool = False   # a rule gap (auto_gaps.toml): the harness's shortfall, not the library's

    def xfail_reason(self) -> str:
        if self.gap:
            return f"[{skips.KNOWN_BUG}] {self.stage}: {GAP_PREFIX}: {self.reason}"
        return f"[{skips.KNOWN_BUG}] {self.stage}: {self.reason}"


GAP_PREFIX = "auto-zoo rule gap (the generic rules/recipes do not fit this model yet; not a library bug)"


@lru_cache(maxsize=2)
def load_known(path: str | None = None, gaps_path: str | None = None) -> dict[tuple[str, str], Known]:
    """Known library bugs (auto_known.toml, [[known]]) and rule gaps (auto_gaps.toml, [[gap]]); a type
    and class is in one of them at most."""
    out: dict[tuple[str, str], Known] = {}
    for file, table, gap in ((path or KNOWN_FILE, "known", False), (gaps_path or GAPS_FILE, "gap", True)):
        if gap and not Path(file).is_file():
            continue
        with open(file, "rb") as fh:
            data = tomllib.load(fh)
        for i, e in enumerate(data.get(table, [])):
            missing = [k for k in ("model_type", "class", "stage", "reason") if not e.get(k)]
            if missing:
                raise ValueError(f"{file}: entry #{i} lacks {missing}")
            if e["stage"] not in STAGES:
                raise ValueError(f"{file}: {e['model_type']}: stage {e['stage']!r} not in {STAGES}")
            roles = ROLES if e["class"] == "*" else (e["class"],)
            for role in roles:
                if role not in ROLES:
                    raise ValueError(f"{file}: {e['model_type']}: class {role!r} not in {ROLES} or '*'")
                key = (e["model_type"], role)
                if key in out:
                    raise ValueError(f"{file}: duplicate entry for {key}")
                out[key] = Known(e["model_type"], role, e["stage"], e["reason"], e.get("evidence", ""), gap)
    return out


_GAP_HEAD = re.compile(r"^(?:\[known-bug\] )?(?:\w+: )?" + re.escape(GAP_PREFIX) + ": ")
GAP_REASON_LIMIT = 240


def gap_reason(message: str | None) -> str:
    """The error a rule gap is recorded with: the failure's error line without the xfail prefixes the
    plugin and Known.xfail_reason() put around it (so regenerating from a sweep that ran with the
    gaps file is a fixed point), clipped at a word boundary with an ellipsis."""
    msg = (message or "").strip()
    while (m := _GAP_HEAD.match(msg)):
        msg = msg[m.end():]
    text = failure_text(msg, limit=10 * GAP_REASON_LIMIT)
    if len(text) <= GAP_REASON_LIMIT:
        return text
    cut = text[:GAP_REASON_LIMIT - 1]
    return (cut[:cut.rfind(" ")] if " " in cut else cut).rstrip() + "…"


def gaps_toml(records: Iterable[dict], known: dict[tuple[str, str], Known] | None = None) -> str:
    """auto_gaps.toml from a full sweep's records: one [[gap]] per type and class that failed at a stage
    and is not a recorded library bug; base and head failing alike are one entry with class "*".
    Rewrite the file from a full sweep after a rule change."""
    known = {k: v for k, v in (known if known is not None else load_known()).items() if not v.gap}
    found: dict[tuple[str, str, str], list[str]] = {}
    for r in records:
        m = r.get("measures") or {}
        stage, role = m.get("stage"), m.get("role")
        if r.get("outcome") not in ("failed", "xfailed") or stage not in STAGES or (r.get("model"), role) in known:
            continue
        found.setdefault((r["model"], stage, gap_reason(r.get("message")) or "(no message)"), []).append(role)
    rows = sorted((mt, "*" if set(roles) == set(ROLES) else role, stage, reason)
                  for (mt, stage, reason), roles in found.items() for role in sorted(set(roles))
                  if set(roles) != set(ROLES) or role == ROLES[0])
    out = ["# Auto-zoo rule gaps: model types and classes the generic shrink rules and input recipes do not",
           "# yet drive through every stage. The harness's shortfall, not library bugs (those are in",
           "# auto_known.toml): strict xfails on their stage, so a rule that closes one shows up as an",
           "# unexpected pass. class = \"*\" where the base and the head model fail alike. Generated from a",
           "# full sweep's records:",
           "#   python -m hfmatrix.zoo.auto --gaps results/zoo/records-all.jsonl > hfmatrix/zoo/auto_gaps.toml",
           ""]
    for mt, role, stage, msg in rows:
        out += ["[[gap]]", f"model_type = {json_str(mt)}", f"class = {json_str(role)}", f"stage = {json_str(stage)}",
                f"reason = {json_str(msg)}", ""]
    return "\n".join(out)


def json_str(s: str) -> str:
    import json
    return json.dumps(s, ensure_ascii=False)  # a JSON string is a valid TOML basic string


# ----------------------------------------------------------------------------- classification
@lru_cache(maxsize=None)
def _default_config_dict(model_type: str) -> dict:
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING
    try:
        return CONFIG_MAPPING[model_type]().to_dict()
    except Exception:
        return {}


def _has_key(d: dict, keys: set[str]) -> bool:
    for k, v in d.items():
        if isinstance(v, dict):
            if _has_key(v, keys):
                return True
        elif k in keys and v not in (None, False, 0, 1, [], {}, ""):
            return True
    return False


def arch_class(model_type: str, rules: Rules | None = None, config_dict: dict | None = None) -> str:
    """Architecture class from the data rules: mappings the type is in, then keys its config has."""
    rules = rules or default_rules()
    ma = _mappings()
    d = config_dict if config_dict is not None else _default_config_dict(model_type)
    forward_inputs = set()
    for entry in rules.arch_classes:
        if any(model_type in getattr(ma, m, {}) for m in entry.get("unless_mappings", ())):
            continue
        if any(model_type in getattr(ma, m, {}) for m in entry.get("mappings", ())):
            return entry["name"]
        if entry.get("keys") and _has_key(d, set(entry["keys"])):
            return entry["name"]
        for a, b in entry.get("sub_config_pairs", ()):
            if isinstance(d.get(a), dict) and isinstance(d.get(b), dict):
                return entry["name"]
        if entry.get("inputs"):
            if not forward_inputs:
                forward_inputs = _base_forward_inputs(model_type)
            if forward_inputs & set(entry["inputs"]):
                return entry["name"]
        if not entry.get("mappings") and not entry.get("keys") and not entry.get("inputs") \
                and not entry.get("sub_config_pairs"):
            return entry["name"]  # the catch-all class
    return rules.arch_classes[-1]["name"] if rules.arch_classes else "encoder"


def _base_forward_inputs(model_type: str) -> set[str]:
    name = _first_name(_mappings().MODEL_MAPPING_NAMES.get(model_type))
    if not name:
        return {"-"}
    try:
        import transformers
        return set(inspect.signature(getattr(transformers, name).forward).parameters) or {"-"}
    except Exception:
        return {"-"}


# ----------------------------------------------------------------------------- running a case
@dataclass
class Result:
    case: AutoCase
    stage: str = ""                 # last stage that passed ("" before config)
    failed_stage: str = ""
    error: str = ""
    measures: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed_stage


class _PeakRSS:
    """Samples this process's RSS every 20 ms while a case runs."""

    def __init__(self):
        import psutil
        self.proc, self.peak, self._stop = psutil.Process(), 0, threading.Event()

    def __enter__(self):
        self.peak = self.proc.memory_info().rss
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __exit__(self, *exc):
        self._stop.set()
        self.thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def resolve_class(name: str):
    """The transformers class for a mapped name; a missing optional package becomes a typed skip."""
    import transformers
    try:
        return getattr(transformers, name)
    except ImportError as exc:
        text = str(exc)
        m = re.search(r"requires the (\S+) librar", text)
        raise skips.DependencyMissing(f"{name} needs {m.group(1) if m else 'a package'} (not in this env): "
                                      f"{text.strip().splitlines()[0][:200]}") from None
    except AttributeError as exc:
        raise STAGE_ERRORS["build"](f"the auto mapping names {name}, which transformers does not export: {exc}") from None


def flatten(obj: Any, prefix: str = "out") -> dict[str, Any]:
    """Every tensor in a model output, by path (caches and non-tensors are left out)."""
    import torch
    out: dict[str, Any] = {}
    if isinstance(obj, torch.Tensor):
        out[prefix] = obj.detach()
    elif isinstance(obj, dict) or hasattr(obj, "keys") and hasattr(obj, "__getitem__") and not isinstance(obj, str):
        for k in list(obj.keys()):
            out.update(flatten(obj[k], f"{prefix}.{k}"))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out.update(flatten(v, f"{prefix}[{i}]"))
    return out


def compare(a: dict, b: dict) -> tuple[bool, str, float]:
    """(bitwise equal?, first difference, max |Δ| over float tensors)."""
    import torch
    if a.keys() != b.keys():
        return False, f"outputs differ in names: {sorted(set(a) ^ set(b))[:5]}", float("inf")
    first, worst = "", 0.0
    for k in a:
        x, y = a[k], b[k]
        if x.shape != y.shape or x.dtype != y.dtype:
            return False, f"{k}: shape/dtype {tuple(x.shape)}/{x.dtype} vs {tuple(y.shape)}/{y.dtype}", float("inf")
        if not torch.equal(x, y):
            if x.is_floating_point() or x.is_complex():
                d = float((x - y).abs().max())
            else:
                d = float((x != y).sum())
            worst = max(worst, d)
            first = first or f"{k}: max |Δ| {d:.3g}"
    return not first, first, worst


def _close(a: dict, b: dict) -> bool:
    """torch.testing.assert_close with fp32 defaults (rtol 1.3e-6, atol 1e-5) on every tensor."""
    import torch
    try:
        for k in a:
            torch.testing.assert_close(a[k], b[k])
    except (AssertionError, KeyError):
        return False
    return True


def _check_finite(outs: dict) -> None:
    import torch
    if not outs:
        raise STAGE_ERRORS["forward"]("forward returned no tensors")
    bad = [k for k, t in outs.items() if (t.is_floating_point() or t.is_complex()) and not torch.isfinite(t).all()]
    if bad:
        kinds = {"nan": 0, "+inf": 0, "-inf": 0}
        for k in bad:
            t = outs[k]
            kinds["nan"] += int(torch.isnan(t).sum())
            kinds["+inf"] += int(torch.isposinf(t).sum()) if not t.is_complex() else 0
            kinds["-inf"] += int(torch.isneginf(t).sum()) if not t.is_complex() else 0
        raise STAGE_ERRORS["forward"](f"non-finite values in {bad[:5]} ({kinds})")


def _forward(model, inputs: dict) -> dict:
    import torch
    with torch.no_grad():
        return flatten(model(**inputs))


@contextlib.contextmanager
def _stage(result: Result, name: str):
    t0 = time.perf_counter()
    try:
        yield
    except skips.TypedSkip:
        raise
    except ImportError as exc:
        found = re.search(r"requires the (\S+) librar", str(exc))
        if found:
            raise skips.DependencyMissing(f"{name} stage needs {found.group(1)} (not in this env)") from None
        result.failed_stage, result.error = name, f"ImportError: {exc}"
        raise STAGE_ERRORS[name](result.error[:2000]) from exc
    except StageFailure as exc:
        result.failed_stage, result.error = exc.stage, exc.message
        raise
    except Exception as exc:  # anything the library raises in this stage
        msg = f"{type(exc).__name__}: {exc}"
        result.failed_stage, result.error = name, msg
        raise STAGE_ERRORS[name](msg[:2000]) from exc
    finally:
        result.measures.setdefault("stage_seconds", {})[name] = round(time.perf_counter() - t0, 3)
    result.stage = name


def count_params_meta(auto_cls, config) -> tuple[int, list[tuple[str, int]]]:
    import torch
    with torch.device("meta"):
        model = auto_cls.from_config(config) if hasattr(auto_cls, "_model_mapping") else auto_cls._from_config(config)
    sizes = sorted(((n, p.numel()) for n, p in model.named_parameters()), key=lambda x: -x[1])
    return sum(s for _, s in sizes), sizes[:3]


def run_case(case: AutoCase, rules: Rules | None = None, workdir: str | Path | None = None,
             text_only_fallback: bool = True, tamper=None) -> Result:
    """Run every stage up to the first failure; the Result names it (``raise_for_stage`` turns it into
    the StageFailure the test raises). A TypedSkip (missing package, no mapping) propagates.

    ``tamper(stage, obj)`` is for the harness's self-tests: it may alter the model or inputs at a
    stage boundary (a planted defect) to prove the check of that stage fails.
    """
    result = Result(case)
    try:
        _run(case, rules or default_rules(), workdir, text_only_fallback, tamper, result)
    except StageFailure as exc:  # raised outside a stage block (resolve_class): name its stage here
        if not result.failed_stage:
            result.failed_stage, result.error = exc.stage, exc.message
    finally:
        result.measures["stage"] = result.failed_stage or "passed"
    return result


def raise_for_stage(result: Result) -> None:
    if result.failed_stage:
        raise STAGE_ERRORS[result.failed_stage](result.error)


def _run(case, rules, workdir, text_only_fallback, tamper, result):
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    m = result.measures
    m.update(model_type=case.model_type, role=case.role, arch_class=arch_class(case.model_type, rules),
             class_name=case.class_name or "")
    tamper = tamper or (lambda stage, obj: obj)
    t_start = time.perf_counter()
    with _PeakRSS() as rss:
        try:
            if case.class_name is None:
                raise skips.Unsupported(f"{case.model_type}: {case.mapping}")
            resolve_class(case.class_name)  # a missing optional package skips here
            # built and loaded through the Auto class users call; a task with no Auto class: the class itself
            cls = auto_classes().get(case.mapping) or resolve_class(case.class_name)
            m["auto_class"] = cls.__name__
            with _stage(result, "config"):
                config, fired = shrink_config(CONFIG_MAPPING[case.model_type], rules)
                m["rules"] = fired
            with _stage(result, "build"):
                model = tamper("build", _build(cls, config, case, rules, m))
                m["params"] = sum(p.numel() for p in model.parameters())
            with _stage(result, "forward"):
                inputs, out1 = _first_forward(model, rules, text_only_fallback, m)
            with _stage(result, "determinism"):
                out2 = _forward(tamper("determinism", model), inputs)
                same, why, diff = compare(out1, out2)
                if not same:
                    raise STAGE_ERRORS["determinism"](f"two forwards on the same inputs differ: {why}")
            tmp = tempfile.TemporaryDirectory(dir=workdir) if workdir is None or Path(workdir).exists() else None
            try:
                _save_load_reload(cls, model, inputs, out1, Path(tmp.name) if tmp else Path(workdir),
                                  tamper, result)
            finally:
                if tmp:
                    tmp.cleanup()
        finally:
            m["seconds"] = round(time.perf_counter() - t_start, 3)
        m["peak_rss_mb"] = round(rss.peak / 2**20, 1)
        m["process_max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _build(cls, config, case, rules, m):
    """The build stage: refuse a shrunk model that is still too big (counted on the meta device), then
    build it with seeded random weights."""
    import torch
    try:
        n, biggest = count_params_meta(cls, config)
    except Exception as exc:  # some inits compute on their weights: no meta count then
        n, biggest = None, []
        m["meta_count_error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
    limit = int(rules.limits.get("max_params", 40_000_000))
    if n is not None and n > limit:
        raise STAGE_ERRORS["build"](f"shrunk model still has {n:,} parameters (> {limit:,}); biggest: {biggest}")
    torch.manual_seed(0)
    model = (cls.from_config(config) if hasattr(cls, "_model_mapping") else cls._from_config(config)).eval()
    if type(model).__name__ != case.class_name:
        m["built_class"] = type(model).__name__
    return model


def _first_forward(model, rules, text_only_fallback, m):
    """The forward stage: synthesized inputs through the full path (or the text path alone, recorded),
    finite outputs. Returns (inputs, outputs)."""
    import torch
    from .auto_inputs import synthesize
    used: set[str] = set()
    m["ran_text_path_only"] = False
    inputs, notes = {}, []  # stay empty where synthesizing the full path fails
    try:
        # synthesizing is part of the full path: image placeholders call get_image_features
        inputs, notes = synthesize(model, rules, used=used)
        out1 = _forward(model, inputs)
    except Exception as exc:
        # a model that also takes optional image/audio inputs gets a second try on its text path
        # alone; the record says so (ran_text_path_only) and keeps the full path's error
        text_inputs, _ = synthesize(model, rules, text_only=True)
        if not (text_only_fallback and text_inputs.keys() != inputs.keys() and "input_ids" in text_inputs):
            raise
        m["full_path_error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
        try:
            out1 = _forward(model, text_inputs)
        except Exception:
            raise exc from None  # the text path fails too: report the full path's error
        inputs, notes = text_inputs, notes + ["ran the text path only"]
        m["ran_text_path_only"] = True
    m["rules"] = sorted(set(m["rules"]) | used)
    m["inputs"] = {k: list(v.shape) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
    if notes:
        m["input_notes"] = notes
    _check_finite(out1)
    m["outputs"] = len(out1)
    return inputs, out1


def _save_load_reload(cls, model, inputs, out1, folder: Path, tamper, result) -> None:
    """The save, load and reload stages: safetensors written, loaded through the same class, and the
    weights bitwise / the outputs bitwise or within fp32 assert_close after the round trip."""
    m = result.measures
    with _stage(result, "save"):
        model.save_pretrained(folder)
        files = sorted(p.name for p in folder.iterdir())
        if not any(f.endswith(".safetensors") for f in files):
            raise STAGE_ERRORS["save"](f"no safetensors file written: {files}")
        m["saved_mb"] = round(sum(p.stat().st_size for p in folder.iterdir()) / 2**20, 2)
    with _stage(result, "load"):
        tamper("save", folder)
        loaded, info = cls.from_pretrained(folder, output_loading_info=True)
        loaded = loaded.eval()
        missing = list(info.get("missing_keys", []) or [])
        unexpected = list(info.get("unexpected_keys", []) or [])
        if missing or unexpected:
            m["loading_info"] = {"missing": missing[:10], "unexpected": unexpected[:10]}
    with _stage(result, "reload"):
        # a reloaded tensor may get another memory layout and so another kernel: close counts as same
        out3 = _forward(loaded, inputs)
        same, why, diff = compare(out1, out3)
        m["reload_max_abs"] = diff
        m["reload_bitwise"] = same
        if not same and _close(out1, out3):
            same = True
        changed = _changed_weights(model, loaded)
        if not same or changed:
            raise STAGE_ERRORS["reload"](
                f"after save/load: {why or 'outputs equal'}; weights changed: {changed[:5]}; "
                f"missing on load: {missing[:5]}; unexpected: {unexpected[:5]}")


def _changed_weights(a, b) -> list[str]:
    import torch
    sa, sb = a.state_dict(), b.state_dict()
    out = [f"{k} (not in reloaded)" for k in sa if k not in sb]
    for k, v in sa.items():
        if k in sb and (v.shape != sb[k].shape or not torch.equal(v, sb[k])):
            out.append(k)
    return out


def summarize(records: list[dict]) -> dict[str, Any]:
    """Coverage per class plus the sweep's time and memory figures (per-type seconds: base + head)."""
    per_type: dict[str, float] = {}
    for r in records:
        if r.get("model"):
            per_type[r["model"]] = per_type.get(r["model"], 0.0) + float(r.get("duration") or 0)
    times = sorted(per_type.values())
    rss = [(r.get("measures") or {}).get("peak_rss_mb") or 0 for r in records]
    outcomes: dict[str, int] = {}
    for r in records:
        outcomes[r.get("outcome", "?")] = outcomes.get(r.get("outcome", "?"), 0) + 1
    stages: dict[str, int] = {}
    for r in records:
        if r.get("outcome") == "failed":
            st = (r.get("measures") or {}).get("stage") or "?"
            stages[st] = stages.get(st, 0) + 1
    slow = sorted(per_type.items(), key=lambda kv: -kv[1])[:5]
    return {
        "coverage": coverage_table(records), "outcomes": outcomes, "failed_by_stage": stages,
        "types": len(per_type), "test_seconds_total": round(sum(times), 1),
        "type_seconds_median": round(times[len(times) // 2], 2) if times else 0,
        "type_seconds_max": round(times[-1], 2) if times else 0, "slowest": slow,
        "peak_rss_mb_max": max(rss) if rss else 0,
    }


# ----------------------------------------------------------------------------- ablation
def passing_types(records: Iterable[dict]) -> dict[str, set[str]]:
    """{passing model type: names of the rules/recipes that fired for it} from sweep records."""
    import json
    outcomes: dict[str, list[str]] = {}
    fired: dict[str, set[str]] = {}
    for r in records:
        if isinstance(r, str):
            r = json.loads(r)
        mt = r.get("model")
        if not mt:
            continue
        outcomes.setdefault(mt, []).append(r.get("outcome"))
        fired.setdefault(mt, set()).update((r.get("measures") or {}).get("rules") or ())
    return {mt: fired[mt] for mt, o in outcomes.items()
            if any(x != "skipped" for x in o) and all(x in ("passed", "skipped") for x in o)}


def ablate(records_path: str, rule: str) -> dict[str, Any]:
    """Rerun the passing types where ``rule`` fired with it disabled: how many did it recover?"""
    import json
    from .auto_shrink import load_rules
    with open(records_path) as fh:
        records = [json.loads(line) for line in fh if line.strip()]
    targets = sorted(mt for mt, f in passing_types(records).items() if rule in f)
    text_only_before = {r["model"] for r in records if (r.get("measures") or {}).get("ran_text_path_only")}
    rules = load_rules(disabled=rule)
    lost = []
    for mt in targets:
        for role in ROLES:
            name, mapping = class_name(mt, role, rules)
            if name is None:
                continue
            try:
                res = run_case(AutoCase(mt, role, name, mapping), rules)
            except skips.TypedSkip:
                continue
            if not res.ok:
                lost.append(f"{mt}@{role}: {res.failed_stage}")
                break
            if res.measures.get("ran_text_path_only") and mt not in text_only_before:
                lost.append(f"{mt}@{role}: image/audio path lost (text path only)")
                break
    return {"rule": rule, "fired_on_passing": len(targets), "recovered": len({x.split('@')[0] for x in lost}),
            "without_it": lost}


# ----------------------------------------------------------------------------- CLI (debugging one type)
def main(argv: list[str] | None = None) -> int:
    """python -m hfmatrix.zoo.auto TYPE [TYPE...] [--role base|head]: run cases here, print one line each."""
    import argparse
    import json
    ap = argparse.ArgumentParser(prog="python -m hfmatrix.zoo.auto")
    ap.add_argument("types", nargs="*")
    ap.add_argument("--role", choices=ROLES)
    ap.add_argument("--sample", type=int, default=0)
    ap.add_argument("--disable", default="", help="comma list of rule / fixup / input-recipe names to turn off")
    ap.add_argument("--ablate", metavar="RECORDS", help="records-*.jsonl of a sweep: for each --rule, rerun the "
                    "passing types it fired on with it disabled and count the types it recovered")
    ap.add_argument("--rule", action="append", default=[])
    ap.add_argument("--summary", metavar="RECORDS", help="coverage table, timings and memory of a sweep's records")
    ap.add_argument("--gaps", metavar="RECORDS", help="print auto_gaps.toml for a full sweep's records")
    args = ap.parse_args(argv)
    if args.gaps:
        with open(args.gaps) as fh:
            print(gaps_toml([json.loads(line) for line in fh if line.strip()]), end="")
        return 0
    if args.summary:
        with open(args.summary) as fh:
            print(json.dumps(summarize([json.loads(line) for line in fh if line.strip()]), indent=1))
        return 0
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    if args.ablate:
        for rule in args.rule:
            print(json.dumps(ablate(args.ablate, rule)), flush=True)
        return 0
    from .auto_shrink import load_rules
    rules = load_rules(disabled=args.disable) if args.disable else default_rules()
    types = args.types or (sample_types(model_types(), args.sample) if args.sample else [])
    for mt in progress.bar(types, desc="auto-zoo", unit="type"):  # an ETA on a terminal
        for role in ([args.role] if args.role else ROLES):
            name, mapping = class_name(mt, role, rules)
            case = AutoCase(mt, role, name, mapping)
            try:
                res = run_case(case, rules)
                status = f"failed[{res.failed_stage}]" if res.failed_stage else "passed"
                err, measures = res.error, res.measures
            except skips.TypedSkip as exc:
                status, err, measures = f"skipped[{exc.kind}]", exc.reason, {}
            progress.write(json.dumps({"id": case.id, "status": status, "error": err[:600],
                                       "seconds": measures.get("seconds"), "rss": measures.get("peak_rss_mb"),
                                       "rules": measures.get("rules"), "text_only": measures.get("ran_text_path_only"),
                                       "notes": measures.get("input_notes")}, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
