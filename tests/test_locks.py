"""Env locks and provisioning (hfmatrix/provision.py): every env source has a current, fully hashed lock;
pip's configuration reaches uv only where pip has one; a CUDA torch in a CPU env stops the session."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hfmatrix import provision

PIP_HERE = """\
:env:.find-links='/opt/wheels'
global.constraint='/etc/xdg/pip/constraints.txt'
global.extra-index-url='file:///opt/pypi/simple file:///opt/pypi-more/simple'
global.find-links='/elsewhere /opt/other'
"""


@pytest.mark.parametrize("env", provision.lockable())
def test_lock_is_current(env: str) -> None:
    assert provision.lock_digest(env) == provision.source_digest(env), \
        f"envs/locks/{env}.txt is missing or older than envs/{env}.txt: run `nox -s lock -- {env}`"


@pytest.mark.parametrize("env", provision.lockable())
def test_lock_pins_every_package_with_hashes(env: str) -> None:
    text = (provision.LOCKS / f"{env}.txt").read_text()
    entries = re.findall(r"^([A-Za-z0-9_.\-\[\],]+)(==\S+)? \\\n((?:    --hash=sha256:[0-9a-f]{64}.*\n)+)", text, re.M)
    names = [n for n, _, _ in entries]
    requirement_lines = [ln for ln in text.splitlines() if ln and not ln.startswith((" ", "#"))]
    assert len(requirement_lines) == len(names), "a requirement without hashes"
    assert all(pin for _, pin, _ in entries), "a requirement that is not pinned with =="
    assert provision.UNHASHED not in names                               # installed first, by its pin
    assert not provision.cpu_torch_problems(names), "CUDA-only wheels in a CPU env's lock"


def test_digest_follows_included_sources() -> None:
    # zoo.txt is `-r cpu.txt`: a change to cpu.txt must make the zoo lock stale too
    assert [p.name for p in provision.sources("zoo")] == ["zoo.txt", "cpu.txt"]
    assert provision.torch_pin("zoo") == "torch==2.13.0"
    assert provision.torch_pin("report") is None


def test_pip_config_reaches_uv() -> None:
    config = provision.pip_config(PIP_HERE)
    assert config["find-links"] == "/opt/wheels"                          # PIP_* (':env:') wins, as in pip
    env = provision.uv_env(config, environ={})
    assert env == {"UV_FIND_LINKS": "/opt/wheels", "UV_CONSTRAINT": "/etc/xdg/pip/constraints.txt",
                   "UV_EXTRA_INDEX_URL": "file:///opt/pypi/simple file:///opt/pypi-more/simple",
                   "UV_INDEX_STRATEGY": "unsafe-best-match"}
    several = provision.uv_env(provision.pip_config("global.find-links='/a  /b'\n"), environ={})
    assert several == {"UV_FIND_LINKS": "/a,/b"}                          # uv splits on commas, pip on spaces


def test_no_pip_config_sets_nothing_and_the_caller_wins() -> None:
    assert provision.uv_env(provision.pip_config(""), environ={}) == {}   # a GitHub runner: plain PyPI
    mine = {"UV_EXTRA_INDEX_URL": "https://download.pytorch.org/whl/cpu"}
    assert "UV_EXTRA_INDEX_URL" not in provision.uv_env(provision.pip_config(PIP_HERE), environ=mine)


def test_cpu_torch_check_passes_here_and_fails_on_a_planted_cuda_wheel(tmp_path: Path) -> None:
    ok = subprocess.run([sys.executable, "-m", "hfmatrix.provision", "--check-cpu-torch"],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    info = tmp_path / "nvidia_cublas-13.0.0.dist-info"                  # what a CUDA torch drags in
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: nvidia-cublas\nVersion: 13.0.0\n")
    measured = {k: v for k, v in os.environ.items() if k.startswith("COVERAGE_")}   # measured like the first run
    bad = subprocess.run([sys.executable, "-m", "hfmatrix.provision", "--check-cpu-torch"], capture_output=True,
                         text=True, timeout=60, env={**measured, "PYTHONPATH": str(tmp_path), "PATH": ""})
    assert bad.returncode == 1 and "nvidia-cublas" in bad.stderr


@pytest.mark.parametrize("env", ["cpu", "report"])   # with a torch pin, without one
def test_stamp_heads_the_lock_with_its_source_digest(env: str, tmp_path: Path, monkeypatch) -> None:
    """`nox -s lock` compiles, then stamps: the digest test_lock_is_current compares, restamped in place."""
    body = (provision.LOCKS / f"{env}.txt").read_text().splitlines()
    body = [ln for ln in body if not ln.startswith("# hfmatrix:")]
    monkeypatch.setattr(provision, "LOCKS", tmp_path)
    (tmp_path / f"{env}.txt").write_text("# hfmatrix: source-sha256 0000 (an old stamp)\n" + "\n".join(body) + "\n")
    provision.stamp_lock(env)
    provision.stamp_lock(env)                                            # twice: one head, not two
    lines = (tmp_path / f"{env}.txt").read_text().splitlines()
    head = [ln for ln in lines if ln.startswith("# hfmatrix:")]
    assert lines[0] == f"# hfmatrix: source-sha256 {provision.source_digest(env)}"
    assert provision.lock_digest(env) == provision.source_digest(env)
    assert lines[len(head):] == body                                     # the compiled lock itself untouched
    pin = provision.torch_pin(env)
    assert len(head) == (2 if pin else 1) and (not pin or head[1].startswith(f"# hfmatrix: {pin} is installed first"))
    (tmp_path / f"{env}.txt").write_text("\n".join(body) + "\n")      # compiled, never stamped
    assert provision.lock_digest(env) is None
    (tmp_path / f"{env}.txt").unlink()
    assert provision.lock_digest(env) is None
