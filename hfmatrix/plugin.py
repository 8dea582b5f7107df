"""The hfmatrix pytest plugin (registered through the pytest11 entry point), opt-in.

Installed, it does nothing to a pytest run unless asked: ``--hfm``, any ``--hfm-*`` option (on the
command line, in PYTEST_ADDOPTS or in the ini file's addopts), ``hfmatrix run`` or the nox sessions.
Until then it only registers its options (all ``--hfm-*``) and its fixtures (all ``hfm_*``), so it
collides with no project's own options or fixtures, writes nothing and changes no report.

* options: --hfm-backend --hfm-device --hfm-precision --hfm-models --hfm-zoo-file --hfm-zoo-cache --hfm-session-name
  --hfm-results-dir --hfm-shard --hfm-allow-pickle
* parametrizes every test that takes the ``hfm_case`` fixture over model × target, from the zoo;
  ``@pytest.mark.hfm_needs("generate")`` keeps only models with that capability,
  ``@pytest.mark.hfm_requires("torch-module")`` only targets whose backend offers those capabilities
  (hfmatrix.backends.base), ``@pytest.mark.hfm_backends(...)`` only those backends; known failures become
  strict xfails.
* fixtures: hfm_case, hfm_model_dir, hfm_backend_session, hfm_intact_session, hfm_reference_session, hfm_measure.
* typed skips: a TypedSkip raised anywhere in a test becomes "[kind] reason".
* one JSON-lines record per test, written by the xdist controller (so a crashed worker's test
  still gets a record), flushed per test; meta-<shard>.json says whether the run completed.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
import uuid
import zlib
from collections import Counter, OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest

from . import isolation, progress, reuse, safeload, skips
from .backends.base import Target
from .records import BAD_OUTCOMES, Record, RecordWriter, write_json_atomic

PROP_CASE = "hfm_case"
PROP_MEASURE = "hfm"
pytest_plugins = ["hfmatrix.perf.plugin"]  # perf options + fixtures; registered with this module so --perf-* parse


# ----------------------------------------------------------------------------- options
def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("hfmatrix", "hfmatrix model × backend matrix")
    g.addoption("--hfm", action="store_true", default=False,
                help="enable the hfmatrix plugin (any --hfm-* option enables it too; off otherwise)")
    g.addoption("--hfm-backend", default=os.environ.get("HFMATRIX_BACKEND", "torch"), help="backend under test (default torch)")
    g.addoption("--hfm-device", default=os.environ.get("HFMATRIX_DEVICE", "cpu"), help="device of the backend (default cpu)")
    g.addoption("--hfm-precision", default=os.environ.get("HFMATRIX_PRECISION", ""),
                help="comma-separated precisions (default: the backend's first)")
    g.addoption("--hfm-precisions-done", default="",
                help="comma-separated precisions another run of this session covers: a case whose effective "
                     "precision equals one of theirs is not run again (hfmatrix.precision.fold)")
    g.addoption("--hfm-models", default=os.environ.get("HFMATRIX_MODELS", "default"),
                help="comma-separated: 'default' (the zoo), zoo ids, local HF folders, or hub ids (offline cache only)")
    g.addoption("--hfm-zoo-file", default=os.environ.get("HFMATRIX_ZOO_FILE", ""), help="zoo spec file (default: the built-in zoo)")
    g.addoption("--hfm-zoo-cache", default="", help="materialized model cache (default $HFMATRIX_CACHE or the user cache dir)")
    g.addoption("--hfm-session-name", default="", help="results/<session-name>/ (default: the backend name)")
    g.addoption("--hfm-results-dir", default="", help="where result records go (default ./results; 'none' disables)")
    g.addoption("--hfm-shard", default="", help="i/n: run the i-th of n deterministic shards (split by model id)")
    g.addoption("--hfm-localize", action="store_true", default=bool(os.environ.get("HFMATRIX_LOCALIZE")),
                help="name the first divergent module on every parity cell (failures and known bugs always do)")
    g.addoption("--hfm-rerun-failures", type=int, default=int(os.environ.get("HFMATRIX_RERUN_FAILURES", "0")),
                metavar="N", help="run each failing cell again, up to N times, in a fresh process; the report "
                                  "separates flaky (passed on a re-run) from failed every time; both stay failures")
    g.addoption("--hfm-no-reuse", action="store_true", default=False,
                help="recompute every cell instead of reusing stored verdicts whose inputs did not change "
                     "(hfmatrix/reuse.py; CI=true does the same)")
    g.addoption("--hfm-attempt", type=int, default=0, help=argparse.SUPPRESS)  # set on a re-run's process
    g.addoption("--hfm-allow-pickle", action="store_true", help="allow pickle-only weights (loaded with weights_only)")
    g.addoption("--hfm-trust-remote-code", action="append", default=[], metavar="MODEL_ID[,MODEL_ID]",
                help="run the code a model folder ships (auto_map) for these model ids only; repeatable, "
                     "also $HFMATRIX_TRUST_REMOTE_CODE; no wildcard")
    g.addoption("--hfm-endpoint", default="", help="serve backend: test this existing OpenAI-compatible server "
                "(URL) instead of starting one; --hfm-models names the same weights for the reference")
    g.addoption("--hfm-served-model", default="", help="serve backend: the model name the endpoint serves")
    g.addoption("--hfm-api-key-env", default="HFMATRIX_SERVE_API_KEY",
                help="serve backend: the environment variable holding the endpoint's API key (never logged)")
    g.addoption("--hfm-hard-timeout", type=float, default=None,
                help="seconds before a test stuck in native code is killed by the faulthandler watchdog "
                     "(default 2 x --timeout + 10; 0 disables); xdist then replaces the worker")


def enabled(config: pytest.Config) -> bool:
    """Asked for: --hfm or any --hfm-* option, wherever pytest read its arguments from. xdist workers
    and hfmatrix's own re-run processes get the same arguments, so they agree with their controller."""
    if _ENABLED in config.stash:
        return config.stash[_ENABLED]
    args = [*map(str, config.invocation_params.args), *shlex.split(os.environ.get("PYTEST_ADDOPTS", ""))]
    try:
        args += [str(a) for a in config.getini("addopts")]
    except ValueError:
        pass
    on = bool(config.getoption("--hfm", False)) or any(a.startswith("--hfm") for a in args)
    config.stash[_ENABLED] = on
    return on


_ENABLED = pytest.StashKey[bool]()


def pytest_configure(config: pytest.Config) -> None:
    if not enabled(config):
        return
    config.addinivalue_line("markers", "hfm_needs(*capabilities): only models whose spec has these capabilities")
    config.addinivalue_line("markers", "hfm_requires(*capabilities): only targets whose backend offers these "
                            "capabilities there (hfmatrix.backends.base: in-process, torch-module, device-memory, ...)")
    config.addinivalue_line("markers", "hfm_backends(*names): only these backends")
    config.addinivalue_line("markers", "hfm_precisions(*names): only these precisions")
    config.addinivalue_line("markers", "hfm_devices(*names): only these devices (accelerator-only checks)")
    config.addinivalue_line("markers", "hfm_known_bug(entry): the known_failures entry of this cell's strict xfail")
    config.addinivalue_line("markers", "hfm_per_case(argname, provider): a second axis whose values depend on "
                            "the case: provider(case) yields pytest.param values for argname (none = not applicable)")
    _LOAD_POLICY.update(allow_pickle=bool(config.getoption("--hfm-allow-pickle")),
                        trusted=safeload.trusted_models(config.getoption("--hfm-trust-remote-code")))
    if config.getoption("--hfm-endpoint"):  # the environment reaches xdist workers; the key stays in its own variable
        os.environ.update(HFMATRIX_SERVE_ENDPOINT=config.getoption("--hfm-endpoint"),
                          HFMATRIX_SERVE_MODEL=config.getoption("--hfm-served-model"),
                          HFMATRIX_SERVE_API_KEY_ENV=config.getoption("--hfm-api-key-env"))
    if config.getoption("--hfm-zoo-cache"):
        os.environ["HFMATRIX_CACHE"] = str(Path(config.getoption("--hfm-zoo-cache")).resolve())
    st = config.stash[_STATE] = _State(config)
    config.pluginmanager.register(TypedSkipReports(), "hfmatrix-typed-skips")
    if not hasattr(config, "workerinput") and isolation.distributed(config):  # the xdist controller owns the watchdog dir
        st.isolation = isolation.Controller()
        config.pluginmanager.register(st.isolation, "hfmatrix-isolation")
    isolation.install(config, st.isolation)
    if not hasattr(config, "workerinput") and progress.wanted(sys.stdout):  # a terminal, not CI
        config.pluginmanager.register(progress.RunProgress(config), "hfmatrix-progress")
    if _is_writer(config):
        st.open_writer()
        config.pluginmanager.register(Recorder(st), "hfmatrix-recorder")
        if config.getoption("--hfm-rerun-failures") > 0 and not st.attempt:
            from .rerun import Rerunner
            config.pluginmanager.register(Rerunner(st, config.getoption("--hfm-rerun-failures")), "hfmatrix-rerun")


def _is_writer(config: pytest.Config) -> bool:
    """The process that writes records: the xdist controller, or pytest itself without xdist."""
    return not hasattr(config, "workerinput") and config.getoption("--hfm-results-dir") != "none"


# ----------------------------------------------------------------------------- cases
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


class _State:
    def __init__(self, config: pytest.Config):
        self.config = config
        self.backend = config.getoption("--hfm-backend")
        self.device = config.getoption("--hfm-device")
        self.session = config.getoption("--hfm-session-name") or self.backend
        self.shard = parse_shard(config.getoption("--hfm-shard"))
        self.shard_tag = f"{self.shard[0]}of{self.shard[1]}" if self.shard else "all"
        self.attempt = config.getoption("--hfm-attempt")
        if self.attempt:  # a re-run of failing cells (hfmatrix/rerun.py) keeps the first run's records
            self.shard_tag += f".rerun{self.attempt}"
        rd = config.getoption("--hfm-results-dir") or "results"
        self.results = Path(rd).resolve() / self.session if rd != "none" else None
        self.run_id = os.environ.get("HFMATRIX_RUN_ID") or uuid.uuid4().hex[:12]
        self._specs = None
        self._spec_errors: dict[str, str] = {}
        self.writer: RecordWriter | None = None
        self.phases: dict[str, dict[str, Any]] = {}
        self.counts: Counter = Counter()
        self.skip_kinds: Counter = Counter()
        self.reuse: Counter = Counter()  # reused / computed cells (hfmatrix/reuse.py)
        self.started = time.time()
        self.isolation: isolation.Controller | None = None
        self.recorded: set[str] = set()
        self.folded: dict[str, dict[str, str]] = {}  # model -> {requested precision: the one it computes as}

    # -- zoo
    def specs(self) -> dict[str, Any]:
        if self._specs is None:
            from .zoo.spec import load_specs
            zoo_file = self.config.getoption("--hfm-zoo-file") or None
            zoo = load_specs(zoo_file)
            wanted = [m.strip() for m in self.config.getoption("--hfm-models").split(",") if m.strip()]
            specs: dict[str, Any] = {}
            for item in wanted:
                if item == "default":
                    specs.update(zoo)
                elif item in zoo:
                    specs[item] = zoo[item]
                else:
                    from .zoo import spec_from_user
                    spec = spec_from_user(item)
                    specs[spec.id] = spec
            self._specs = specs
        return self._specs

    def precisions(self) -> list[str]:
        text = self.config.getoption("--hfm-precision")
        if text:
            return [p.strip() for p in text.split(",") if p.strip()]
        from . import backends
        try:
            return [backends.get(self.backend).precisions[0]]
        except Exception:  # backend not importable here: its tests skip with the reason
            return ["fp32"]

    def targets(self) -> list[Target]:
        return [Target(self.backend, self.device, p) for p in self.precisions()]

    def case_targets(self, spec) -> list[Target]:
        """This model's targets resolved to their effective precision; a request that computes what an
        earlier one (or one in --hfm-precisions-done) computes is the same work: folded, noted in meta."""
        from . import precision
        done = [Target(self.backend, self.device, p.strip())
                for p in self.config.getoption("--hfm-precisions-done").split(",") if p.strip()]
        kept, folded = precision.fold([precision.resolve(t, spec) for t in self.targets()],
                                      [precision.resolve(t, spec) for t in done])
        for requested, same_as in folded.items():
            self.folded.setdefault(spec.id, {})[requested] = same_as
        return kept

    # -- records
    def open_writer(self) -> None:
        if self.results is None:
            return
        self.results.mkdir(parents=True, exist_ok=True)
        path = self.results / f"records-{self.shard_tag}.jsonl"
        path.unlink(missing_ok=True)  # a rerun of this session/shard replaces its records, never adds to them
        self.writer = RecordWriter(path)
        self.write_meta(complete=False)

    def write_meta(self, complete: bool, exitstatus: int | None = None, **extra: Any) -> None:
        if self.results is None:
            return
        meta = {**extra,
            "session": self.session, "run_id": self.run_id, "shard": self.shard_tag, "backend": self.backend,
            "device": self.device, "precisions": self.precisions(), "models": self.config.getoption("--hfm-models"),
            "started": self.started, "finished": time.time() if complete else None, "complete": complete,
            "exitstatus": exitstatus, "counts": dict(self.counts), "skip_kinds": dict(self.skip_kinds), "reuse": dict(self.reuse),
            "folded_precisions": self.folded,
            "argv": list(self.config.invocation_params.args), "cwd": str(self.config.invocation_params.dir),
        }
        write_json_atomic(self.results / f"meta-{self.shard_tag}.json", meta)


_STATE = pytest.StashKey[_State]()


def state(config: pytest.Config) -> _State:
    return config.stash[_STATE]


def model_free_endpoint(config: pytest.Config) -> bool:
    """--hfm-endpoint without --hfm-models (nor $HFMATRIX_MODELS): no local weights, so no reference; only
    hfmatrix/suites/test_endpoint.py's model-free checks run, every per-model check skips."""
    return bool(config.getoption("--hfm-endpoint")) and config.getoption("--hfm-models") == "default" \
        and not os.environ.get("HFMATRIX_MODELS")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "hfm_case" not in metafunc.fixturenames or not enabled(metafunc.config):
        return
    st = state(metafunc.config)
    needs = [c for m in metafunc.definition.iter_markers("hfm_needs") for c in m.args]
    only_backends = [b for m in metafunc.definition.iter_markers("hfm_backends") for b in m.args]
    only_precisions = [p for m in metafunc.definition.iter_markers("hfm_precisions") for p in m.args]
    only_devices = [d for m in metafunc.definition.iter_markers("hfm_devices") for d in m.args]
    requires = _required(metafunc)
    check = metafunc.function.__name__.removeprefix("test_")
    from .compare import known_bug_marks
    params = []
    for spec in st.specs().values():
        if st.shard and shard_of(spec.id, st.shard[1]) != st.shard[0]:
            continue
        if not all(spec.has(c) for c in needs):
            continue
        for target in st.case_targets(spec):
            if only_backends and target.backend not in only_backends:
                continue
            if only_precisions and target.precision not in only_precisions:
                continue
            if only_devices and target.device not in only_devices:
                continue
            if not _offers(target.backend, target.device, requires):
                continue
            case = Case(spec, target)
            marks = [pytest.mark.xdist_group(spec.id)]
            marks += known_bug_marks(check, spec, target.backend, target.device, target.effective, target.precision)
            params.append(pytest.param(case, id=case.id, marks=marks))
    per_case = metafunc.definition.get_closest_marker("hfm_per_case")
    if per_case is not None:  # e.g. the negative catalogue: only the entries that apply to each case
        argname, provider = per_case.args
        params = [pytest.param(p.values[0], *sub.values, id=f"{p.id}+{sub.id}", marks=[*p.marks, *sub.marks])
                  for p in params for sub in provider(p.values[0])]
    kind = skips.UNSUPPORTED
    if model_free_endpoint(metafunc.config):  # no weights: no case, and the skip says what is missing
        params, kind = [], skips.DEPENDENCY_MISSING
    if not params:
        # No applicable model in this selection: say so instead of silently collecting nothing.
        why = f"no selected model has {needs or 'a matching target'}"
        if kind == skips.DEPENDENCY_MISSING:
            why = ("per-model (parity) checks against --hfm-endpoint need --hfm-models: the same weights, for the "
                   "local reference; the model-free checks are hfmatrix/suites/test_endpoint.py's")
        if only_backends and st.backend not in only_backends:
            why, kind = f"a check of the {', '.join(only_backends)} backend only, not {st.backend}", skips.UNSUPPORTED
        if not _offers(st.backend, st.device, requires):
            why, kind = (f"a check that needs the {', '.join(requires)} capability, which {st.backend} on {st.device} "
                         "does not offer", skips.UNSUPPORTED)
        params = [pytest.param(*([None] * (2 if per_case else 1)), id="no-applicable-model",
                               marks=pytest.mark.skip(reason=f"[{kind}] {why}"))]
    metafunc.parametrize(("hfm_case", per_case.args[0]) if per_case else "hfm_case", params)


def _required(metafunc: pytest.Metafunc) -> list[str]:
    """The capabilities a check's hfm_requires markers name (an unknown name is a usage error, not a deselection)."""
    from .backends import CAPABILITIES
    requires = [c for m in metafunc.definition.iter_markers("hfm_requires") for c in m.args]
    unknown = sorted(set(requires) - CAPABILITIES)
    if unknown:
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: hfm_requires{tuple(unknown)}: unknown capabilities; "
                                f"known: {', '.join(sorted(CAPABILITIES))}")
    return requires


def _offers(backend: str, device: str, requires: list[str]) -> bool:
    """Whether backend on device offers every required capability (a backend not importable here offers none)."""
    if not requires:
        return True
    from . import backends
    try:
        return set(requires) <= backends.capabilities(backend, device)
    except (ImportError, KeyError):
        return False


# ----------------------------------------------------------------------------- fixtures
class _LRU:
    """Keeps the last few loaded backend sessions per process; evicted ones are closed."""

    def __init__(self, size: int):
        self.size, self.items = size, OrderedDict()

    def get(self, key, make):
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key]
        value = make()
        self.items[key] = value
        while len(self.items) > self.size:
            _, old = self.items.popitem(last=False)
            if hasattr(old, "close"):
                old.close()
        return value

    def drop(self, key) -> None:
        old = self.items.pop(key, None)
        if old is not None and hasattr(old, "close"):
            old.close()


_SESSIONS = _LRU(int(os.environ.get("HFMATRIX_SESSION_CACHE", "2")))
_REFERENCES = _LRU(2)


@pytest.fixture
def hfm_case(request) -> Case:  # parametrized by pytest_generate_tests; this is only the fallback
    if not enabled(request.config):
        raise pytest.UsageError(f"{request.node.nodeid} uses hfmatrix's fixtures: run it with --hfm "
                                "(or any --hfm-* option, or `hfmatrix run`)")
    return request.param


@pytest.fixture
def hfm_measure(request):
    """Call ``measure(key=value, ...)`` to put numbers into this test's record."""
    data: dict[str, Any] = {}
    request.node.user_properties.append((PROP_MEASURE, data))

    def add(**values):
        data.update(values)
        return data
    return add


@pytest.fixture
def hfm_model_dir(hfm_case: Case) -> Path:
    check_available(hfm_case.target)  # an absent device or backend skips before any build or export
    from .zoo import materialize
    return materialize(hfm_case.spec)


_AVAILABILITY: dict[Target, Any] = {}


def check_available(target: Target) -> None:
    """Raise the typed skip for an unavailable target (cached per process)."""
    if target not in _AVAILABILITY:
        from . import backends
        try:
            _AVAILABILITY[target] = backends.get(target.backend).available(target.device, target.precision)
        except ImportError as exc:
            raise skips.DependencyMissing(f"backend {target.backend} not importable here: {exc}") from None
    _AVAILABILITY[target].require()


# The run's loading policy (hfmatrix.safeload): --hfm-allow-pickle, and --hfm-trust-remote-code per model id.
_LOAD_POLICY: dict[str, Any] = {"allow_pickle": False, "trusted": set()}


def policy_options(case: Case) -> dict[str, Any]:
    """The safe-loading keyword arguments every backend's load takes, for this case's model."""
    return {"allow_pickle": _LOAD_POLICY["allow_pickle"], "trust_remote_code": case.spec.id in _LOAD_POLICY["trusted"]}


def load_session(case: Case, model_dir: Path, fresh: bool = False, **options):
    """Available? then load (cached per process unless fresh) under the run's loading policy.
    TypedSkip propagates to a typed skip."""
    from . import backends
    from .precision import check_read_back
    check_available(case.target)
    backend = backends.get(case.target.backend)
    options = {**policy_options(case), **options}
    key = (case.spec.id, str(model_dir), case.target)

    def load():
        session = backend.load(model_dir, case.spec, case.target, **options)
        check_read_back(case.target, session)  # verdicts are keyed by it: it must be what ran
        return session
    return load() if fresh else _SESSIONS.get(key, load)


@pytest.fixture
def hfm_backend_session(request, hfm_case: Case, hfm_model_dir: Path):
    session = load_session(hfm_case, hfm_model_dir)
    _attach(request.node, evidence=session.evidence())
    return session


@pytest.fixture
def hfm_intact_session(request, hfm_case: Case, hfm_model_dir: Path):
    """The intact model's session, for checks about something else (bad inputs, leaks). When the
    intact model does not load on this target because of a recorded known bug (its load_session check
    is a strict xfail in known_failures.toml), such a check cannot be evaluated: it skips as known-bug
    naming that entry instead of failing a second time for the same bug. Any other load failure fails."""
    from .compare import exception_types, known_entry, out_of_range
    try:
        return request.getfixturevalue("hfm_backend_session")
    except skips.TypedSkip:
        raise
    except Exception as exc:
        t = hfm_case.target
        bug = known_entry("load_session", hfm_case.spec, t.backend, t.device, t.effective)
        if not bug or not isinstance(exc, exception_types(bug.get("raises", ()))) or out_of_range(bug, exc):
            raise  # not the recorded load bug: strict, as the load_session cell itself
        skips.skip(skips.KNOWN_BUG, f"the intact model does not load on this target ({type(exc).__name__}); "
                                    f"known bug of load_session: {bug['reason'][:400]}")


@pytest.fixture
def hfm_reference_session(hfm_case: Case, hfm_model_dir: Path):
    """CPU fp32 torch on the same folder: the reference every backend is compared with. CPU fp32 torch
    itself is compared with the same weights in float64 (compared with itself it could never fail)."""
    from .backends import get
    ref_target = reference_target(hfm_case.target)
    return _REFERENCES.get((str(hfm_model_dir), ref_target),
                           lambda: get("torch").load(hfm_model_dir, hfm_case.spec, ref_target))


REFERENCE = Target("torch", "cpu", "fp32")


def reference_target(target: Target) -> Target:
    """What ``target`` is judged against: CPU fp32 torch, or float64 CPU torch for CPU fp32 torch itself."""
    same = (target.backend, target.device, target.effective) == (REFERENCE.backend, REFERENCE.device, "fp32")
    return Target("torch", "cpu", "fp64") if same else REFERENCE


def _attach(node, **values) -> None:
    for name, data in node.user_properties:
        if name == PROP_MEASURE and "_attached" in data:
            data.update(values)
            return
    node.user_properties.append((PROP_MEASURE, {"_attached": True, **values}))


def pytest_collection_modifyitems(session, config, items) -> None:
    if not enabled(config):
        return
    for item in items:
        callspec = getattr(item, "callspec", None)
        case = callspec.params.get("hfm_case") if callspec else None
        if isinstance(case, Case):
            item.user_properties.append((PROP_CASE, {
                "model": case.spec.id, "arch_class": case.spec.arch_class, "backend": case.target.backend,
                "device": case.target.device, "precision": case.target.precision,
                "effective_precision": case.target.effective}))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    """Look the cell's verdict up (hfmatrix/reuse.py) before any other wrapper starts a clock on it:
    pytest-timeout's timer covers the whole protocol, and computing a key is no part of the cell."""
    if enabled(item.config):
        callspec = getattr(item, "callspec", None)
        case = callspec.params.get("hfm_case") if callspec else None
        reuse.prepare(item, case if isinstance(case, Case) else None)
    return (yield)


@pytest.hookimpl(tryfirst=True, specname="pytest_runtest_protocol")
def pytest_runtest_protocol_reused(item, nextitem):  # a second impl of the hook (specname)
    """A cell whose stored verdict still holds reports it instead of running."""
    return reuse.run_reused(item, nextitem) if enabled(item.config) else None


# ----------------------------------------------------------------------------- typed skips
class TypedSkipReports:
    """A TypedSkip becomes a skipped report directly: pytest's own path would first format a full
    failure traceback (~0.5 s a test here), and most tests of an absent backend end this way."""

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_makereport(self, item, call):
        exc = call.excinfo.value if call.excinfo else None
        if not isinstance(exc, skips.TypedSkip):
            return None
        if exc.evidence:  # the refusal's own evidence, in the record
            _attach(item, evidence={"refusal": {"type": type(exc).__name__, **exc.evidence}})
        path, lineno, _ = item.reportinfo()
        sections = [(f"Captured {key} {when}", content) for when, key, content in item._report_sections]
        return pytest.TestReport(
            item.nodeid, item.location, {k: 1 for k in item.keywords}, "skipped",
            (str(path), (lineno or 0) + 1, f"Skipped: [{exc.kind}] {exc.reason}"), call.when, sections,
            call.duration, call.start, call.stop, user_properties=item.user_properties)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    if not enabled(item.config):
        return
    rep = outcome.get_result()
    bug = item.get_closest_marker("hfm_known_bug")
    if bug is not None and call.when in ("setup", "call") and hasattr(rep, "wasxfail") and rep.skipped:
        from .compare import RANGE_KEYS, out_of_range
        if call.excinfo:  # what the known bug raised, in the record: the evidence for its `raises`
            exc = call.excinfo.value
            rep.user_properties.append((PROP_MEASURE, {"known_bug_raised": f"{type(exc).__module__}.{type(exc).__qualname__}",
                                                       **{k: getattr(exc, k) for k in RANGE_KEYS if hasattr(exc, k)}}))
        why = out_of_range(bug.args[0], call.excinfo.value if call.excinfo else None)
        if why:  # the cell failed, but not as the known bug says: a failure, not an expected one
            rep.outcome, rep.longrepr = "failed", f"{why}\n{call.excinfo.exconly() if call.excinfo else ''}"
            del rep.wasxfail
    if call.when == "call" or (call.when == "setup" and rep.outcome != "passed"):
        # versions of the backend under test, once per test (cheap, cached per process)
        st = state(item.config)
        rep.user_properties.append(("hfm_versions", _versions(st.backend)))
        rep.user_properties.append(("hfm_worker", os.environ.get("PYTEST_XDIST_WORKER", "main")))


_VERSIONS: dict[str, dict[str, str]] = {}


def _versions(backend: str) -> dict[str, str]:
    if backend not in _VERSIONS:
        from . import backends
        try:
            _VERSIONS[backend] = backends.get(backend).versions()
        except Exception as exc:  # backend missing in this env: the tests say why; versions say so too
            _VERSIONS[backend] = {"error": f"{type(exc).__name__}: {exc}"}
    return _VERSIONS[backend]


# ----------------------------------------------------------------------------- records
class Recorder:
    """Registered only in the writing process (xdist controller or plain pytest)."""

    def __init__(self, st: _State):
        self.st = st

    @pytest.hookimpl(trylast=True)  # after isolation.Controller put a dead worker's dump into the report
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        entry = self.st.phases.setdefault(report.nodeid, [])
        entry.append(report)
        # teardown closes a test; xdist reports a crashed worker's test with when="???"
        if report.when not in ("setup", "call"):
            _finish(self.st, report.nodeid)

    def pytest_sessionfinish(self, session, exitstatus) -> None:
        st = self.st
        for nodeid in list(st.phases):  # tests whose teardown never came back
            _finish(st, nodeid)
        if st.writer is not None:
            st.writer.close()
        # a bad outcome pytest did not count as a failure (e.g. a crash record) still fails the run
        if session.exitstatus == 0 and any(st.counts[o] for o in BAD_OUTCOMES):
            session.exitstatus = 1
        # collected but never run (xdist gave up after --max-worker-restart, -x, ...): not a complete matrix
        not_run = st.isolation.not_run(session, st.recorded) if st.isolation is not None else []
        if not st.folded and not session.config.getoption("collectonly"):  # under xdist only workers collected
            try:
                for spec in st.specs().values():
                    st.case_targets(spec)
            except Exception:  # noqa: BLE001 - the meta must still be written
                pass
        st.write_meta(complete=not not_run, exitstatus=int(session.exitstatus), not_run=not_run)

    def pytest_terminal_summary(self, terminalreporter, exitstatus, config) -> None:
        st, c = self.st, self.st.counts
        kinds = ", ".join(f"{k}: {v}" for k, v in sorted(st.skip_kinds.items())) or "none"
        terminalreporter.write_sep("=", f"hfmatrix session {st.session} ({st.shard_tag})")
        terminalreporter.write_line(
            f"hfmatrix: {c['passed']} passed, {c['failed']} failed, {c['skipped']} skipped ({kinds}), "
            f"{c['xfailed']} xfailed (known-bug), {c['xpassed']} xpassed, {c['error']} errors, "
            f"{c['crashed']} crashed, {c['timeout']} timed out")
        if st.reuse["reused"]:
            terminalreporter.write_line(f"hfmatrix: {st.reuse['reused']} verdicts reused from earlier runs (inputs "
                                        f"unchanged), {st.reuse['computed']} computed; --hfm-no-reuse recomputes")
        if st.writer is not None:
            terminalreporter.write_line(f"hfmatrix: records in {st.writer.path}")




def _classify(reports: list) -> tuple[str, str, str | None]:
    """(outcome, message, skip_kind) from the phase reports of one test."""
    for rep in reports:
        text = _longrepr_text(rep)
        if rep.when not in ("setup", "call", "teardown"):  # xdist's report for a test whose worker died
            return getattr(rep, "hfm_crash_kind", None) or ("timeout" if "Timeout" in text else "crashed"), text, None
        if rep.failed:
            if "+++ Timeout +++" in text or "Failed: Timeout" in text:
                return "timeout", text, None
            if rep.when == "call":
                if "[XPASS(strict)]" in text:
                    return "xpassed", text, skips.KNOWN_BUG
                return "failed", _with_crash_line(rep, text), None
            return "error", f"{rep.when}: {_with_crash_line(rep, text)}", None
    for rep in reports:
        if rep.skipped:
            if hasattr(rep, "wasxfail"):
                kind, reason = skips.parse(rep.wasxfail)
                return "xfailed", reason, kind or skips.KNOWN_BUG
            kind, reason = skips.parse(_longrepr_text(rep))
            return "skipped", reason, kind
    for rep in reports:
        if rep.when == "call" and hasattr(rep, "wasxfail"):
            return "xpassed", rep.wasxfail, skips.KNOWN_BUG
    return "passed", "", None


def _with_crash_line(rep, text: str) -> str:
    """The assertion first: under xdist the report text opens with the worker banner
    ("[gw1] linux -- Python ..."), so a reader of the record's first line saw only that."""
    crash = getattr(getattr(rep.longrepr, "reprcrash", None), "message", None)
    return f"{crash}\n\n{text}" if crash else text


def _longrepr_text(rep) -> str:
    lr = rep.longrepr
    if lr is None:
        return ""
    if isinstance(lr, tuple) and len(lr) == 3:
        return str(lr[2])
    return str(getattr(rep, "longreprtext", "") or lr)


def _trim(message: str, limit: int = 4000) -> str:
    """The head (the assertion) and the tail (where it was raised) of a long message."""
    if len(message) <= limit:
        return message
    return f"{message[:limit // 4]}\n…\n{message[-(limit - limit // 4):]}"


def _properties(reports: list) -> dict[str, Any]:
    """What the phase reports carry: the case, measures, evidence, versions, worker, reuse key / verdict."""
    out: dict[str, Any] = {"props": {}, "measures": {}, "evidence": {}, "versions": {}, "worker": "",
                           reuse.PROP_KEY: "", reuse.PROP_REUSED: {}}
    for rep in reports:
        for name, value in rep.user_properties:
            if name == PROP_CASE:
                out["props"].update(value)
            elif name == PROP_MEASURE:
                value = dict(value)
                value.pop("_attached", None)
                out["evidence"].update(value.pop("evidence", {}) or {})
                out["measures"].update(value)
            elif name == "hfm_versions":
                out["versions"] = value
            elif name == "hfm_worker":
                out["worker"] = value
            elif name in (reuse.PROP_KEY, reuse.PROP_REUSED):
                out[name] = value
    return out


def _finish(st: _State, nodeid: str) -> None:
    reports = st.phases.pop(nodeid, None)
    if not reports:
        return
    got = _properties(reports)
    reused = got[reuse.PROP_REUSED]
    if reused:  # a stored verdict: its outcome and message as first recorded
        outcome, message, kind = reused["outcome"], reused["message"], reused["skip_kind"]
    else:
        outcome, message, kind = _classify(reports)
    props = got["props"]
    path, _, rest = nodeid.partition("::")
    func, _, param = rest.partition("[")
    param = param.rstrip("]")
    if not props and "@" in param:  # a crashed worker sends no properties: recover from the id
        props = parse_case_id(param)
        try:
            props["arch_class"] = st.specs()[props["model"]].arch_class
        except Exception:
            pass
    record = Record(
        run_id=st.run_id, session=st.session, nodeid=nodeid, check=func.split("::")[-1].removeprefix("test_"),
        outcome=outcome, suite=Path(path).stem, skip_kind=kind, message=_trim(message),
        measures=got["measures"], evidence=got["evidence"], versions=got["versions"],
        duration=sum(r.duration for r in reports), shard=st.shard_tag, worker=got["worker"],
        backend=props.get("backend", ""), device=props.get("device", ""), precision=props.get("precision", ""),
        effective_precision=props.get("effective_precision", ""),
        model=props.get("model", ""), arch_class=props.get("arch_class", ""), attempt=st.attempt,
        reused_from=reused.get("run_id", "") if reused else "",
    )
    st.writer.write(record)
    st.recorded.add(nodeid)
    st.counts[outcome] += 1
    st.reuse["reused" if reused else "computed"] += 1
    if got[reuse.PROP_KEY] and not reused:
        reuse.save(got[reuse.PROP_KEY], asdict(record))
    if outcome == "skipped":
        st.skip_kinds[kind or "untyped"] += 1
