"""Env provisioning for the nox sessions (stdlib only: the noxfile imports it before any env exists).

- uv reads no pip configuration. A machine whose pip is configured with a local CPU torch wheel
  (find-links), local indexes or constraints would make uv plan the multi-GB CUDA torch from PyPI, so
  `uv_env()` hands pip's settings to uv as UV_* variables, only those pip really has and only where
  the caller has not set them (a GitHub workflow's UV_INDEX / UV_EXTRA_INDEX_URL win).
- Locks: envs/<env>.txt is the source (direct pins, reasons in comments); envs/locks/<env>.txt is the
  whole env, every package pinned with hashes, compiled by `nox -s lock`. torch is the one package left
  out of the hashes: the same `torch==2.13.0+cpu` is a local wheel here and the PyTorch CPU index's
  wheel on a GitHub runner, two files whose hashes cannot both be known on one machine. It is
  installed first, by its exact pin, and `cpu_torch_problems()` then proves the env got a CPU build.
"""
from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

ENVS = Path(__file__).resolve().parents[1] / "envs"
LOCKS = ENVS / "locks"
UNHASHED = "torch"
# Envs whose torch must be a CPU build (no nvidia-* wheels). Accelerator envs are excluded: their torch
# comes from a GPU index and they are not locked here (no such index is reachable from this machine).
ACCELERATOR_ENVS = ("cuda", "rocm", "mps")
# Installed on several Pythons (nox -s pythons): a lock compiled for 3.11 does not resolve on 3.10/3.13.
UNLOCKED_ENVS = ("pythons",)
_CONFIG_LINE = re.compile(r"^(?P<scope>[^.]*)\.(?P<key>[a-z-]+)='(?P<value>.*)'$")


def pip_config(text: str | None = None) -> dict[str, str]:
    """`pip config list` as {key: value}; PIP_* environment entries (scope ':env:') win over files,
    as in pip. An unavailable pip means no configuration, never an error."""
    if text is None:
        try:
            text = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True,
                                  text=True, timeout=60).stdout
        except (OSError, subprocess.SubprocessError):
            return {}
    found: dict[str, str] = {}
    for line in text.splitlines():
        m = _CONFIG_LINE.match(line.strip())
        if m and (m["scope"] == ":env:" or m["key"] not in found):
            found[m["key"]] = m["value"]
    return found


def uv_env(config: dict[str, str], environ: dict[str, str] | None = None) -> dict[str, str]:
    """The UV_* variables that make uv resolve as this machine's pip does (empty without pip config)."""
    environ = os.environ if environ is None else environ
    words = {k: config[k].split() for k in ("find-links", "extra-index-url", "constraint", "index-url")
             if config.get(k, "").strip()}
    out = {}
    if "find-links" in words:
        out["UV_FIND_LINKS"] = ",".join(words["find-links"])      # uv splits this one on commas
    if "extra-index-url" in words:
        out["UV_EXTRA_INDEX_URL"] = " ".join(words["extra-index-url"])
        # pip takes the best version across all indexes; uv's default takes the first index that has
        # the package, and a partial local index then hides the pinned version
        out["UV_INDEX_STRATEGY"] = "unsafe-best-match"
    if "index-url" in words:
        out["UV_INDEX_URL"] = words["index-url"][0]
    if "constraint" in words:
        out["UV_CONSTRAINT"] = " ".join(words["constraint"])
    return {k: v for k, v in out.items() if k not in environ}


def sources(env: str) -> list[Path]:
    """envs/<env>.txt and every file it includes with -r, in order."""
    seen, todo = [], [ENVS / f"{env}.txt"]
    while todo:
        path = todo.pop(0)
        seen.append(path)
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("-r "):
                todo.append(path.parent / line[3:].strip())
    return seen


def source_digest(env: str) -> str:
    """What a lock was compiled from: the sha256 of its source files' text (a lock older than its
    source is stale; tests/test_locks.py fails on it)."""
    h = hashlib.sha256()
    for path in sources(env):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def torch_pin(env: str) -> str | None:
    """The env's exact torch requirement (`torch==X`) from its sources, or None when it has no torch."""
    for path in sources(env):
        for line in path.read_text(encoding="utf-8").splitlines():
            if re.match(r"^torch\s*==", line):
                return line.split("#")[0].strip()
    return None


def cpu_torch_problems(distributions: list[str]) -> list[str]:
    """Names of installed distributions that only a CUDA torch brings (nvidia-*, triton)."""
    return sorted(d for d in distributions if d.lower().startswith("nvidia-") or d.lower() == "triton")


def lockable() -> list[str]:
    """Every env source that `nox -s lock` compiles (the accelerator envs need a GPU index: not here)."""
    return sorted(p.stem for p in ENVS.glob("*.txt") if p.stem not in ACCELERATOR_ENVS + UNLOCKED_ENVS)


def lock_command(env: str, uv: str = "uv") -> list[str]:
    """The whole env for CPython 3.11 on Linux x86_64, glibc >= 2.35 (this CI machine, ubuntu-latest):
    onnxruntime-qnn ships manylinux_2_35 wheels only. Hashes for every file of each pinned version."""
    return [uv, "pip", "compile", str(ENVS / f"{env}.txt"), "--generate-hashes", "--no-emit-package", UNHASHED,
            "--python-version", "3.11", "--python-platform", "x86_64-manylinux_2_35",
            "--custom-compile-command", "nox -s lock", "--quiet", "-o", str(LOCKS / f"{env}.txt")]


def stamp_lock(env: str) -> None:
    """Head the compiled lock with its source digest and the torch pin it leaves to the session."""
    path = LOCKS / f"{env}.txt"
    body = [ln for ln in path.read_text(encoding="utf-8").splitlines() if not ln.startswith("# hfmatrix:")]
    head = [f"# hfmatrix: source-sha256 {source_digest(env)}"]
    if torch_pin(env):
        head.append(f"# hfmatrix: {torch_pin(env)} is installed first, by the session, without a hash "
                    "(hfmatrix/provision.py says why)")
    path.write_text("\n".join(head + body) + "\n", encoding="utf-8")


def lock_digest(env: str) -> str | None:
    path = LOCKS / f"{env}.txt"
    if not path.is_file():
        return None
    first = path.read_text(encoding="utf-8").split("\n", 1)[0]
    return first.split()[-1] if first.startswith("# hfmatrix: source-sha256 ") else None


def check_cpu_torch() -> int:
    """Exit status for a CPU env: non-zero, naming them, when CUDA-only wheels were installed."""
    from importlib import metadata
    bad = cpu_torch_problems([d.metadata["Name"] or "" for d in metadata.distributions()])
    if bad:
        print(f"hfmatrix.provision: a CUDA torch build in a CPU env ({', '.join(bad)} installed); torch must "
              "come from a CPU wheel: pip's find-links here, https://download.pytorch.org/whl/cpu elsewhere",
              file=sys.stderr)
        return 1
    try:
        print(f"hfmatrix.provision: torch {metadata.version('torch')}, no CUDA wheels")
    except metadata.PackageNotFoundError:
        print("hfmatrix.provision: no torch in this env")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] != ["--check-cpu-torch"]:
        sys.exit("usage: python -m hfmatrix.provision --check-cpu-torch")
    sys.exit(check_cpu_torch())


# ----------------------------------------------------------------------------- version axis
AXIS_FILE = Path(__file__).with_name("axis.toml")


def variants(path: Path | None = None) -> list[dict]:
    """Version-axis sessions (hfmatrix/axis.toml): name, base session, env, axis (the library that
    differs), reason; the noxfile makes a session of each, the report pairs it with its base."""
    try:
        import tomllib
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        import tomli as tomllib  # type: ignore
    with open(path or AXIS_FILE, "rb") as fh:
        data = tomllib.load(fh)
    out = []
    for i, v in enumerate(data.get("variant", [])):
        missing = [k for k in ("name", "base", "env", "axis", "reason") if not v.get(k)]
        if missing:
            raise ValueError(f"{path or AXIS_FILE}: variant #{i} lacks {missing}")
        out.append(v)
    return out

