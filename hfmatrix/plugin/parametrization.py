"""Parametrization: every test that takes ``hfm_case`` runs over model × target, from the zoo.

The selection (``--hfm-models``, ``--hfm-precision``, ``--hfm-shard``) is read once per process
(``selection(config)``); a test's markers narrow it (``case_filter``); known failures become strict
xfails (hfmatrix.compare.known_bug_marks); ``hfm_per_case`` adds a second axis whose values depend on
the case.
"""
from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from typing import Any

import pytest

from .. import skips
from ..backends.base import Target
from .options import enabled


@dataclass(frozen=True)
class Case:
    spec: Any
    target: Target

    @property
    def id(self) -> str:
        return f"{self.spec.id}@{self.target.id}"


def parse_case_id(param_id: str) -> dict[str, str]:
    """'bert-cls@torch-cpu-fp32' -> {model, backend, device, precision} (for records of crashed tests)."""
    model, _, target = param_id.partition("@")
    target = target.partition("+")[0]  # hfm_per_case ids: <case id>+<sub id>
    parts = target.split("-")
    if len(parts) < 3:
        return {"model": model}
    return {"model": model, "backend": parts[0], "device": "-".join(parts[1:-1]), "precision": parts[-1]}


def parse_shard(text: str) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise pytest.UsageError(f"--hfm-shard must look like i/n (e.g. 2/4), got {text!r}") from None
    if not 1 <= i <= n:
        raise pytest.UsageError(f"--hfm-shard {text}: need 1 <= i <= n")
    return i, n


def shard_of(model_id: str, n: int) -> int:
    """Deterministic 1-based shard of a model: stable across runs, machines and Python versions."""
    return zlib.crc32(model_id.encode()) % n + 1


def resolve_models(text: str, zoo_file: str | None = None) -> dict[str, Any]:
    """--hfm-models -> {id: ModelSpec}: `default` (the curated zoo), zoo ids, `autozoo:N` (a deterministic
    auto-zoo sample: hfmatrix.zoo.auto_specs), else a local folder or hub id."""
    from ..zoo import auto_specs, spec_from_user
    from ..zoo.spec import load_specs
    zoo = load_specs(zoo_file)
    specs: dict[str, Any] = {}
    for item in (m.strip() for m in text.split(",")):
        if not item:
            continue
        if item == "default":
            specs.update(zoo)
        elif item in zoo:
            specs[item] = zoo[item]
        elif auto_specs.is_item(item):
            specs.update(auto_specs.specs(item))
        else:
            spec = spec_from_user(item)
            specs[spec.id] = spec
    return specs


class Selection:
    """What this run covers: the backend and device, the models, the precisions, the shard."""

    def __init__(self, config: pytest.Config):
        self.config = config
        self.backend = config.getoption("--hfm-backend")
        self.device = config.getoption("--hfm-device")
        self.shard = parse_shard(config.getoption("--hfm-shard"))
        self._specs: dict[str, Any] | None = None
        self.folded: dict[str, dict[str, str]] = {}  # model -> {requested precision: the one it computes as}

    def specs(self) -> dict[str, Any]:
        if self._specs is None:
            try:
                self._specs = resolve_models(self.config.getoption("--hfm-models"),
                                             self.config.getoption("--hfm-zoo-file") or None)
            except ValueError as exc:  # a malformed autozoo:N
                raise pytest.UsageError(str(exc)) from None
        return self._specs

    def precisions(self) -> list[str]:
        text = self.config.getoption("--hfm-precision")
        if text:
            return [p.strip() for p in text.split(",") if p.strip()]
        from .. import backends
        try:
            return [backends.get(self.backend).precisions[0]]
        except Exception:  # backend not importable here: its tests skip with the reason
            return ["fp32"]

    def targets(self) -> list[Target]:
        return [Target(self.backend, self.device, p) for p in self.precisions()]

    def case_targets(self, spec) -> list[Target]:
        """This model's targets resolved to their effective precision; a request that computes what an
        earlier one (or one in --hfm-precisions-done) computes is the same work: folded, noted in meta."""
        from .. import precision
        done = [Target(self.backend, self.device, p.strip())
                for p in self.config.getoption("--hfm-precisions-done").split(",") if p.strip()]
        kept, folded = precision.fold([precision.resolve(t, spec) for t in self.targets()],
                                      [precision.resolve(t, spec) for t in done])
        for requested, same_as in folded.items():
            self.folded.setdefault(spec.id, {})[requested] = same_as
        return kept

    def in_shard(self, spec) -> bool:
        return not self.shard or shard_of(spec.id, self.shard[1]) == self.shard[0]


_SELECTION = pytest.StashKey[Selection]()


def selection(config: pytest.Config) -> Selection:
    if _SELECTION not in config.stash:
        config.stash[_SELECTION] = Selection(config)
    return config.stash[_SELECTION]


def model_free_endpoint(config: pytest.Config) -> bool:
    """--hfm-endpoint without --hfm-models (nor $HFMATRIX_MODELS): no local weights, so no reference; only
    hfmatrix/suites/test_endpoint.py's model-free checks run, every per-model check skips."""
    return bool(config.getoption("--hfm-endpoint")) and config.getoption("--hfm-models") == "default" \
        and not os.environ.get("HFMATRIX_MODELS")


# ----------------------------------------------------------------------------- markers
@dataclass(frozen=True)
class CaseFilter:
    """What a test's hfm_* markers keep: empty = no restriction on that axis."""
    needs: tuple[str, ...] = ()
    backends: tuple[str, ...] = ()
    precisions: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()  # capabilities the target's backend must offer there (hfmatrix.backends.base)

    def keeps_spec(self, spec) -> bool:
        return all(spec.has(c) for c in self.needs)

    def keeps_target(self, target: Target) -> bool:
        return ((not self.backends or target.backend in self.backends)
                and (not self.precisions or target.precision in self.precisions)
                and (not self.devices or target.device in self.devices)
                and offers(target.backend, target.device, self.requires))


def case_filter(definition) -> CaseFilter:
    """Every marker that narrows a test's cases (hfm_needs, hfm_requires, hfm_backends, hfm_precisions,
    hfm_devices), read in this one place. An unknown capability in hfm_requires is a usage error."""
    def args(name: str) -> tuple[str, ...]:
        return tuple(a for m in definition.iter_markers(name) for a in m.args)
    from ..backends import CAPABILITIES
    requires = args("hfm_requires")
    unknown = sorted(set(requires) - CAPABILITIES)
    if unknown:
        raise pytest.UsageError(f"{definition.nodeid}: hfm_requires{tuple(unknown)}: unknown capabilities; "
                                f"known: {', '.join(sorted(CAPABILITIES))}")
    return CaseFilter(needs=args("hfm_needs"), backends=args("hfm_backends"), precisions=args("hfm_precisions"),
                      devices=args("hfm_devices"), requires=requires)


def offers(backend: str, device: str, requires: tuple[str, ...]) -> bool:
    """Whether backend on device offers every required capability (a backend not importable here offers none)."""
    if not requires:
        return True
    from .. import backends
    try:
        return set(requires) <= backends.capabilities(backend, device)
    except (ImportError, KeyError):
        return False


def _none_applicable(config: pytest.Config, wanted: CaseFilter, backend: str) -> tuple[str, str]:
    """(kind, reason) of the one skipped placeholder a test gets when no case applies."""
    if wanted.backends and backend not in wanted.backends:
        return skips.UNSUPPORTED, f"a check of the {', '.join(wanted.backends)} backend only, not {backend}"
    device = config.getoption("--hfm-device")
    if not offers(backend, device, wanted.requires):
        return skips.UNSUPPORTED, (f"a check that needs the {', '.join(wanted.requires)} capability, which {backend} "
                                   f"on {device} does not offer")
    if model_free_endpoint(config):  # no weights: no case, and the skip says what is missing
        return skips.DEPENDENCY_MISSING, ("per-model (parity) checks against --hfm-endpoint need --hfm-models: the "
                                          "same weights, for the local reference; the model-free checks are "
                                          "hfmatrix/suites/test_endpoint.py's")
    return skips.UNSUPPORTED, f"no selected model has {list(wanted.needs) or 'a matching target'}"


def case_params(metafunc: pytest.Metafunc, sel: Selection, wanted: CaseFilter) -> list:
    """One pytest.param per (model, target) this test applies to, with its known-bug marks."""
    from ..compare import known_bug_marks
    check = metafunc.function.__name__.removeprefix("test_")
    params = []
    for spec in sel.specs().values():
        if not sel.in_shard(spec) or not wanted.keeps_spec(spec):
            continue
        for target in sel.case_targets(spec):
            if not wanted.keeps_target(target):
                continue
            case = Case(spec, target)
            marks = [pytest.mark.xdist_group(spec.id)]
            marks += known_bug_marks(check, spec, target.backend, target.device, target.effective, target.precision)
            params.append(pytest.param(case, id=case.id, marks=marks))
    return params


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "hfm_case" not in metafunc.fixturenames or not enabled(metafunc.config):
        return
    sel = selection(metafunc.config)
    wanted = case_filter(metafunc.definition)
    params = case_params(metafunc, sel, wanted)
    per_case = metafunc.definition.get_closest_marker("hfm_per_case")
    if per_case is not None:  # e.g. the negative catalogue: only the entries that apply to each case
        argname, provider = per_case.args
        params = [pytest.param(p.values[0], *sub.values, id=f"{p.id}+{sub.id}", marks=[*p.marks, *sub.marks])
                  for p in params for sub in provider(p.values[0])]
    if model_free_endpoint(metafunc.config):
        params = []
    if not params:  # no applicable model in this selection: say so instead of silently collecting nothing
        kind, why = _none_applicable(metafunc.config, wanted, sel.backend)
        params = [pytest.param(*([None] * (2 if per_case else 1)), id="no-applicable-model",
                               marks=pytest.mark.skip(reason=f"[{kind}] {why}"))]
    metafunc.parametrize(("hfm_case", per_case.args[0]) if per_case else "hfm_case", params)


@pytest.fixture
def hfm_case(request) -> Case:  # parametrized by pytest_generate_tests; this is only the fallback
    if not enabled(request.config):
        raise pytest.UsageError(f"{request.node.nodeid} uses hfmatrix's fixtures: run it with --hfm "
                                "(or any --hfm-* option, or `hfmatrix run`)")
    return request.param
