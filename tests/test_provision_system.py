"""Chromium and npm without root (issue 15, item 4): hfmatrix/provision_system.py decides, the sessions run it (hfmatrix/nox.py).

The boundaries are faked: the effective uid (os.geteuid), PATH lookups (shutil.which) and sudo, which is a
real executable script here that exits 0 (no password needed) or 1 (it would ask). No apt-get ever runs.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from hfmatrix import provision_system as ps

INSTALL = ("env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "--no-install-recommends")


def _exe(path: Path, rc: int = 0) -> Path:
    path.write_text(f"#!/bin/sh\nexit {rc}\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """A machine with no Chromium installed, apt-get present, not root, no sudo; tests change one thing."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    tools = {"apt-get": str(_exe(bin_ / "apt-get", 99))}  # exits 99: it must never be run by a test
    monkeypatch.setattr(ps.shutil, "which", lambda name: tools.get(name))
    monkeypatch.setattr(ps.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(ps, "CHROMIUM_CANDIDATES", (str(tmp_path / "usr-bin-chromium"),))
    monkeypatch.delenv("HFMATRIX_CHROMIUM", raising=False)

    class Machine:
        def tool(self, name: str, rc: int = 0) -> str:
            tools[name] = str(_exe(bin_ / name, rc))
            return tools[name]

        def drop(self, name: str) -> None:
            tools.pop(name)
    return Machine()


def test_root_runs_apt_get_directly(machine, monkeypatch):
    monkeypatch.setattr(ps.os, "geteuid", lambda: 0)
    plan = ps.chromium_plan()
    assert plan.external == [("apt-get", "update"), (*INSTALL, "chromium")]
    assert plan.path == ps.CHROMIUM_CANDIDATES[0] and plan.in_env == []


def test_not_root_goes_through_sudo(machine):
    machine.tool("sudo", rc=0)  # `sudo -n true` succeeds: no password asked (GitHub's runners)
    plan = ps.chromium_plan()
    assert plan.external == [("sudo", "-n", "apt-get", "update"), ("sudo", "-n", *INSTALL, "chromium")]


@pytest.mark.parametrize("sudo_rc", [1, None], ids=["sudo-asks-password", "no-sudo"])
def test_no_root_no_sudo_says_the_command(machine, sudo_rc):
    if sudo_rc is not None:
        machine.tool("sudo", rc=sudo_rc)
    with pytest.raises(ps.ProvisionError) as exc:
        ps.chromium_plan()
    msg = str(exc.value)
    assert "sudo apt-get update && sudo apt-get install -y --no-install-recommends chromium" in msg
    assert "HFMATRIX_CHROMIUM" in msg and "playwright install chromium" in msg


def test_hfmatrix_chromium_wins(machine, tmp_path, monkeypatch):
    browser = _exe(tmp_path / "my-chrome")
    monkeypatch.setenv("HFMATRIX_CHROMIUM", str(browser))
    plan = ps.chromium_plan()
    assert (plan.path, plan.external, plan.in_env) == (str(browser), [], [])
    monkeypatch.setenv("HFMATRIX_CHROMIUM", str(tmp_path / "missing"))
    with pytest.raises(ps.ProvisionError, match="is not an executable file"):
        ps.chromium_plan()


def test_installed_chromium_needs_nothing(machine):
    _exe(Path(ps.CHROMIUM_CANDIDATES[0]))
    plan = ps.chromium_plan()
    assert (plan.path, plan.external, plan.in_env) == (ps.CHROMIUM_CANDIDATES[0], [], [])


def test_no_apt_get_uses_playwrights_browser(machine):
    machine.drop("apt-get")  # macOS, or a Linux without apt
    plan = ps.chromium_plan(platform="darwin")
    assert plan.path is None and plan.external == []
    assert plan.in_env == [("python", "-m", "playwright", "install", "chromium")]


def test_npm(machine):
    with pytest.raises(ps.ProvisionError, match=r"sudo apt-get install -y --no-install-recommends npm.*nodejs"):
        ps.npm_plan()
    machine.tool("sudo", rc=0)
    assert ps.npm_plan().external == [("sudo", "-n", "apt-get", "update"), ("sudo", "-n", *INSTALL, "npm")]
    machine.tool("npm")
    assert ps.npm_plan().external == []


class Session:
    """nox's session, recorded: what the noxfile would run."""
    def __init__(self, output: str = ""):
        self.ran, self.output = [], output

    def run(self, *cmd, external=False, silent=False, **_):
        self.ran.append((cmd, external))
        return self.output if silent else None

    def log(self, *_):
        pass

    def error(self, msg):
        raise SystemExit(msg)


@pytest.fixture
def hfnox():
    before = dict(os.environ)  # the session names the browser in HFMATRIX_CHROMIUM
    from hfmatrix import nox
    yield nox
    os.environ.clear()
    os.environ.update(before)


def test_noxfile_runs_the_plan_and_names_the_browser(machine, hfnox, tmp_path):
    """hfmatrix.nox.chromium, which the noxfile's browser sessions and `nox -s tests` call."""
    machine.tool("sudo", rc=0)
    session = Session()
    with pytest.raises(SystemExit, match="not an executable file"):  # apt-get "ran" (recorded) but left nothing
        hfnox.chromium(session)
    assert session.ran == [(("sudo", "-n", "apt-get", "update"), True), (("sudo", "-n", *INSTALL, "chromium"), True)]
    # no apt-get: Playwright's browser, installed with the session's python; its path is what the session uses
    machine.drop("apt-get")
    managed = _exe(tmp_path / "ms-playwright-chrome")
    session = Session(output=f"some log line\n{managed}\n")
    hfnox.chromium(session)
    assert session.ran[0] == (("python", "-m", "playwright", "install", "chromium"), False)
    assert session.ran[-1] == ((str(managed), "--version"), True)
    assert os.environ["HFMATRIX_CHROMIUM"] == str(managed)
