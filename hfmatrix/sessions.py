"""The nox sessions as data: which sessions exist, where CI runs them, what each one's suites run tests,
and the environment knobs that change them. noxfile.py builds its sessions from this table and
hfmatrix/report/plan.py its CI matrix; `.ci/run` takes its model sets from it
(`python -m hfmatrix.sessions ci-env`). Stdlib only: the noxfile imports it before any env exists.

    python -m hfmatrix.sessions knobs          the knobs as a Markdown table (docs/architecture.md)
    python -m hfmatrix.sessions ci-env         `export VAR=...` lines: the knobs' CI values, unless set
    python -m hfmatrix.sessions names TAG      the sessions carrying TAG, in `nox -l` order
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from . import provision

CHECKOUT = Path(__file__).resolve().parents[1]
RESULTS = CHECKOUT / "results"
PYTHON = "3.11"
PYTHONS = ("3.10", "3.11", "3.12", "3.13")  # pyproject's requires-python, tested by `nox -s pythons`

# Where each tagged session runs in CI (the one place runner labels live; the workflow names none):
# "hosted" -> GitHub-hosted, the others -> self-hosted pools (opt-in: HFMATRIX_SELF_HOSTED).
RUNNERS: dict[str, tuple[str, ...]] = {
    "hosted": ("ubuntu-latest",),
    "cuda": ("self-hosted", "linux", "x64", "gpu-nvidia"),
    "rocm": ("self-hosted", "linux", "x64", "gpu-amd"),
    "mps": ("self-hosted", "macos", "arm64"),
    "multi-gpu": ("self-hosted", "linux", "x64", "gpu-nvidia", "multi-gpu"),
}


# ----------------------------------------------------------------------------- knobs
@dataclass(frozen=True)
class Knob:
    """An environment variable the sessions read: its default and what it changes. `ci`: the value
    `.ci/run` gives it (where unset), None where CI keeps the default."""
    name: str
    default: str
    doc: str
    ci: str | None = None

    def get(self, default: str | None = None) -> str:
        """The variable's value, else `default` (a session's own, said in `doc`), else the declared one."""
        return os.environ.get(self.name, self.default if default is None else default)


WORKERS = Knob("HFMATRIX_WORKERS", "auto", "pytest-xdist workers of every pytest run: a number, 0 for none, "
               "auto = one per core (the zoo's default: 2)", ci="2")
TIMEOUT = Knob("HFMATRIX_TIMEOUT", "900", "per-test timeout in seconds (pytest-timeout, signal method); the "
               "native-hang watchdog fires at 2 x timeout + 10 s")
MAX_WORKER_RESTART = Knob("HFMATRIX_MAX_WORKER_RESTART", "100", "xdist worker restarts before a run gives up: "
                          "one crashing backend cannot end the matrix")
REQUIRE = Knob("HFMATRIX_REQUIRE", "", "comma-separated devices that must be present (the workflow sets it on "
               "self-hosted accelerator runners): without the hardware the session fails instead of recording "
               "hardware-absent skips")
TORCH_INDEX = Knob("HFMATRIX_TORCH_INDEX", "", "index URL torch is installed from, for that install alone "
                   "(the workflow: PyTorch's CPU index); empty: pip's configuration")
CHROMIUM = Knob("HFMATRIX_CHROMIUM", "", "the Chromium of the web sessions and the tests; empty: /usr/bin/chromium, "
                "else apt-get (as root or through sudo -n), else Playwright's managed one")
WEBGPU_MODELS = Knob("HFMATRIX_WEBGPU_MODELS", "bert,vit,gpt2", "webgpu's model set (software WebGPU costs 20-45 s "
                     "a model on a first run); `default` = the whole zoo", ci="bert,vit")
DISTRIBUTED_MODELS = Knob("HFMATRIX_DISTRIBUTED_MODELS", "default", "distributed's model set (CI: the two "
                          "architectures with tp plans)", ci="llama,mixtral")
SERVE_MODELS = Knob("HFMATRIX_SERVE_MODELS", "gpt2,llama,mixtral,mamba,t5,whisper,llava", "serve's model set, one "
                    "real `transformers serve` a model (the serve baseline's default: gpt2,llama,mixtral,mamba)",
                    ci="gpt2,llama")
AUTOZOO_TIMEOUT = Knob("HFMATRIX_AUTOZOO_TIMEOUT", "150", "seconds one auto-zoo model may take before its "
                       "timeout (not the sweep's)")
BASELINE_ENV = Knob("HFMATRIX_BASELINE_ENV", "cpu", "the env `nox -s baseline` records perf baselines for "
                    "(one of BASELINES)")
BASELINE_ITERS = Knob("HFMATRIX_BASELINE_ITERS", "30", "`nox -s baseline`: --hfm-perf-iters")
BASELINE_MIN_TIME = Knob("HFMATRIX_BASELINE_MIN_TIME", "0.3", "`nox -s baseline`: --hfm-perf-min-time (seconds)")
BASELINE_BATCH_ITERS = Knob("HFMATRIX_BASELINE_BATCH_ITERS", "10", "`nox -s baseline`: --hfm-perf-batch-iters")
BASELINE_ROUNDS = Knob("HFMATRIX_BASELINE_ROUNDS", "60", "`nox -s baseline`: the gate's calibrated rounds per model "
                       "(HFMATRIX_PERF_ROUNDS; twice a normal run's)")
BASELINE_AUTOZOO = Knob("HFMATRIX_BASELINE_AUTOZOO", "100", "`nox -s baseline` on a torch env: auto-zoo model "
                        "types measured next to the curated zoo (--hfm-models=default,autozoo:N; 0: the curated zoo only)")
BASELINES_DIR = Knob("HFMATRIX_BASELINES", "", "the baselines folder the perf gate reads (--hfm-perf-baselines) "
                     "and `nox -s baseline` writes; empty: <checkout>/baselines")
CI_KEEP_ENVS = Knob("HFMATRIX_CI_KEEP_ENVS", "0", "`.ci/run`: 1 keeps every env (by default an env of copied "
                    "files is removed once its session is done)")

KNOBS = (WORKERS, TIMEOUT, MAX_WORKER_RESTART, REQUIRE, TORCH_INDEX, CHROMIUM, WEBGPU_MODELS, DISTRIBUTED_MODELS,
         SERVE_MODELS, AUTOZOO_TIMEOUT, BASELINE_ENV, BASELINE_ITERS, BASELINE_MIN_TIME, BASELINE_BATCH_ITERS, BASELINE_ROUNDS,
         BASELINE_AUTOZOO, BASELINES_DIR, CI_KEEP_ENVS)


# ----------------------------------------------------------------------------- targets and sessions
SUITES = "hfmatrix/suites"


def suites(*names: str) -> tuple[str, ...]:
    return tuple(f"{SUITES}/test_{n}.py" for n in names)


@dataclass(frozen=True)
class Target:
    """One run of the suites: the env it installs (envs/<env>.txt), the backend, device and
    precisions it tests, the paths it selects, more pytest arguments, and the knob whose value is
    its --hfm-models (`models_default` where this target's default is not the knob's). `name`:
    its results folder where it is not the session's. `ci_models`: its model set when CI is set."""
    env: str
    backend: str
    device: str = "cpu"
    precisions: str = "fp32"
    paths: tuple[str, ...] = (SUITES,)
    extra: tuple[str, ...] = ()
    models: Knob | None = None
    models_default: str | None = None
    name: str | None = None
    ci_models: str = ""

    def model_args(self) -> tuple[str, ...]:
        if self.ci_models and os.environ.get("CI"):
            return (f"--hfm-models={self.ci_models}",)
        return (f"--hfm-models={self.models.get(self.models_default)}",) if self.models else ()


@dataclass(frozen=True)
class Spec:
    """A nox session: name, tags (a RUNNERS key says where CI runs it), Python(s), its suites runs,
    and `doc` for the sessions nox makes from data (the version axis)."""
    name: str
    tags: tuple[str, ...]
    python: str | tuple[str, ...] | None = PYTHON
    targets: tuple[Target, ...] = ()
    venv_backend: str | None = None
    doc: str = ""

    def nox_kwargs(self) -> dict:
        """@nox.session's arguments."""
        out = {"name": self.name, "python": list(self.python) if isinstance(self.python, tuple) else self.python,
               "tags": list(self.tags)}
        return {**out, "venv_backend": self.venv_backend} if self.venv_backend else out


HOSTED_BACKEND = ("hosted", "backend")
WEB = ("hosted", "backend", "web")
# the checks whose OpenVINO verdicts depend on the effective precision (tolerances, known bugs by precision)
OPENVINO_PRECISION_SUITES = suites("parity", "inference", "generate", "workflows")
# the distributed checks run world-size processes each: one xdist worker
DISTRIBUTED = Target("distributed", "distributed", paths=suites("distributed"), extra=("-n", "1"),
                     models=DISTRIBUTED_MODELS)

_TABLE = (
    Spec("cpu", HOSTED_BACKEND, targets=(Target("cpu", "torch"),)),
    Spec("cuda", ("cuda", "accelerator"), targets=(Target("cuda", "torch", "cuda", "fp32,fp16,bf16"),)),
    Spec("rocm", ("rocm", "accelerator"), targets=(Target("rocm", "torch", "rocm", "fp32,fp16,bf16"),)),
    Spec("mps", ("mps", "accelerator"), targets=(Target("mps", "torch", "mps", "fp32,fp16"),)),
    # openvino: fp32 and auto, then the precision checks at bf16 and the forced f32 + f16 KV cache
    Spec("openvino", HOSTED_BACKEND, targets=(
        Target("openvino", "openvino", precisions="fp32,auto"),
        Target("openvino", "openvino", precisions="bf16,fp32_kvfp16", paths=OPENVINO_PRECISION_SUITES,
               extra=("--hfm-precisions-done=fp32,auto",), name="openvino-precision"))),
    Spec("onnxruntime", HOSTED_BACKEND, targets=(Target("onnxruntime", "onnxruntime", precisions="fp32,fp16"),)),
    Spec("qnn", HOSTED_BACKEND, targets=(Target("qnn", "qnn", "htp", "fp16"),)),
    Spec("backendtests", ("selftests",)),
    Spec("wasm", WEB, targets=(Target("web", "web", "wasm"),)),
    Spec("webgpu", WEB, targets=(Target("web", "web", "webgpu", models=WEBGPU_MODELS),)),
    Spec("webnn", WEB, targets=(Target("web", "web", "webnn"),)),
    Spec("webtests", ("web",)),
    Spec("tests", ("hosted",)),
    Spec("distributed", HOSTED_BACKEND, targets=(DISTRIBUTED,)),
    Spec("distributed-cuda", ("multi-gpu", "accelerator"), targets=(replace(DISTRIBUTED, device="cuda"),)),
    Spec("serve", HOSTED_BACKEND, targets=(Target("serve", "serve", paths=suites("generate", "serving", "negative"),
                                                  models=SERVE_MODELS),)),
    Spec("baseline", ("perf",)),
    # here: the version-axis sessions (hfmatrix/axis.toml), see variants()
    Spec("zoo", ("hosted", "zoo")),
    Spec("pythons", ("pythons",), python=PYTHONS),
    Spec("lock", ("lock",), python=None, venv_backend="none"),
    Spec("report", ("report",)),
)

# the default matrix (`nox` alone), in the order it runs: every backend session that runs without special
# hardware, then the report; accelerator sessions skip as a whole (hardware-absent) without the hardware
DEFAULT = ("cpu", "openvino", "onnxruntime", "qnn", "wasm", "webgpu", "webnn", "cuda", "rocm", "mps", "zoo",
           "distributed", "serve", "report")
# the exported backends (optimum exports), whose own self-tests `nox -s backendtests` runs per env
EXPORTED = ("onnxruntime", "openvino", "qnn")
EXPORT_SELFTESTS = ("tests/test_backends_export.py", "tests/test_localize_export.py")
PYTHONS_TESTS = ("tests/test_hwprobe.py", "tests/test_report.py", "tests/test_locks.py")  # torch-free

# `nox -s baseline`: env ($HFMATRIX_BASELINE_ENV) -> what it measures, under the conditions of its backend
# session (xdist, coverage tracing, pinned threads) with more samples; serve's figures come from its load
# test (hfmatrix/serving/perf.py) on its model set, at BASELINE_SERVE_LOAD_REQUESTS requests a level
PERF = suites("perf")
BASELINES = {
    "cpu": Target("cpu", "torch", paths=PERF),
    "openvino": Target("openvino", "openvino", precisions="fp32,auto", paths=PERF),
    "onnxruntime": Target("onnxruntime", "onnxruntime", precisions="fp32,fp16", paths=PERF),
    "serve": Target("serve", "serve", paths=(*suites("serving"), "-k", "serving_load or serving_vs_baseline"),
                    models=SERVE_MODELS, models_default="gpt2,llama,mixtral,mamba"),
}
BASELINE_SERVE_LOAD_REQUESTS = "24"


def baseline_model_args(env: str) -> tuple[str, ...]:
    """`nox -s baseline`'s --hfm-models for env: its target's; on the torch target without a model knob,
    the curated zoo plus a deterministic sample of BASELINE_AUTOZOO auto-zoo types (hfmatrix/zoo/auto_specs.py)."""
    target = BASELINES[env]
    n = int(BASELINE_AUTOZOO.get() or "0")
    if target.backend != "torch" or target.models is not None or n <= 0:
        return target.model_args()
    return (f"--hfm-models=default,autozoo:{n}",)


def variants() -> list[Spec]:
    """The version axis (hfmatrix/axis.toml): a base session's first target under another library
    version, as its own session; CI runs each on the variant's small model set."""
    by_name = {s.name: s for s in _TABLE}
    out = []
    for v in provision.variants():
        base = by_name[v["base"]].targets[0]
        target = replace(base, env=v["env"], name=None, ci_models=v.get("ci_models") or "")
        out.append(Spec(v["name"], ("hosted", "axis"), targets=(target,),
                        doc=f"{v['base']} under another {v['axis']}: {v['reason']}"))
    return out


def table() -> list[Spec]:
    """Every session, in `nox -l` order (the version axis after baseline)."""
    at = next(i for i, s in enumerate(_TABLE) if s.name == "baseline") + 1
    return [*_TABLE[:at], *variants(), *_TABLE[at:]]


def spec(name: str) -> Spec:
    """A session's row (the version axis, which reads hfmatrix/axis.toml, only for a name not in the table)."""
    found = [s for s in _TABLE if s.name == name] or [s for s in variants() if s.name == name]
    if not found:
        raise KeyError(f"no session {name!r} in hfmatrix/sessions.py")
    return found[0]


def knobs_markdown() -> str:
    rows = ["| variable | default | CI (`.ci/run`) | what it changes |", "|---|---|---|---|"]
    rows += [f"| `{k.name}` | {f'`{k.default}`' if k.default else '(unset)'} | {f'`{k.ci}`' if k.ci else '–'} | {k.doc} |"
             for k in KNOBS]
    return "\n".join(rows)


def main(argv: list[str]) -> int:
    if argv[:1] == ["knobs"]:
        print(knobs_markdown())
    elif argv[:1] == ["ci-env"]:
        print("\n".join(f'export {k.name}="${{{k.name}:-{k.ci}}}"' for k in KNOBS if k.ci is not None))
    elif argv[:1] == ["names"] and len(argv) == 2:
        print(" ".join(s.name for s in table() if argv[1] in s.tags))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
