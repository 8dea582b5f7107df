"""System prerequisites of the web sessions and `nox -s tests`: Chromium and npm, without needing root.

Where Chromium comes from, first match wins:
1. ``HFMATRIX_CHROMIUM=/path/to/chrome``: that browser (an error when it is not an executable file);
2. Debian/Ubuntu's Chromium already installed (hwprobe.browser.CHROMIUM_CANDIDATES);
3. apt-get: directly as root, through ``sudo -n`` when not root and sudo needs no password (GitHub's
   hosted runners);
4. where there is no apt-get (macOS, other distributions): Playwright's managed Chromium
   (``python -m playwright install chromium`` in the session's env), then used through HFMATRIX_CHROMIUM;
5. otherwise an error that names the command to run.

The plan is computed here (stdlib only: the noxfile imports it before any env exists) and run by the
noxfile's session; the boundaries (the effective uid, PATH lookups, ``sudo -n true``) are what tests fake.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field

from hwprobe.browser import CHROMIUM_CANDIDATES

APT_INSTALL = ("apt-get", "install", "-y", "--no-install-recommends")
PLAYWRIGHT_INSTALL = ("python", "-m", "playwright", "install", "chromium")
# prints the managed browser's path once it is installed (run with the session's python)
PLAYWRIGHT_PATH = ("python", "-c", "from playwright.sync_api import sync_playwright\n"
                                   "with sync_playwright() as p: print(p.chromium.executable_path)")


class ProvisionError(RuntimeError):
    """A prerequisite is missing and cannot be installed from here; the message names the command."""


@dataclass
class Plan:
    """What to run to get a prerequisite: `external` commands (apt-get, maybe through sudo), then
    `in_env` commands (the session's python); `path` is the browser to use (None: ask Playwright)."""
    how: str
    path: str | None = None
    external: list[tuple[str, ...]] = field(default_factory=list)
    in_env: list[tuple[str, ...]] = field(default_factory=list)


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def sudo_works() -> bool:
    """sudo runs without asking for a password (`sudo -n true`): GitHub's runners, a NOPASSWD rule."""
    sudo = shutil.which("sudo")
    if sudo is None:
        return False
    try:
        return subprocess.run([sudo, "-n", "true"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def apt_prefix() -> tuple[str, ...] | None:
    """() as root, ('sudo', '-n') where sudo works without a password, None where apt-get cannot run."""
    if shutil.which("apt-get") is None:
        return None
    if is_root():
        return ()
    return ("sudo", "-n") if sudo_works() else None


def apt_commands(package: str, why: str) -> list[tuple[str, ...]]:
    """apt-get update + install of one Debian package, through sudo when not root; or a ProvisionError
    saying how to install it by hand."""
    prefix = apt_prefix()
    if prefix is None:
        where = ("this user is not root and `sudo -n true` fails (sudo asks for a password or is missing)"
                 if shutil.which("apt-get") else "there is no apt-get here")
        raise ProvisionError(f"{why}, and {where}; install it yourself: sudo apt-get update && "
                             f"sudo {' '.join(APT_INSTALL)} {package} (or your system's package manager)")
    # sudo drops the environment: DEBIAN_FRONTEND goes through env(1), which needs no sudo policy for it
    return [(*prefix, "apt-get", "update"), (*prefix, "env", "DEBIAN_FRONTEND=noninteractive", *APT_INSTALL, package)]


def chromium_plan(platform: str = sys.platform) -> Plan:
    """Where the sessions' Chromium comes from (the module's docstring gives the order)."""
    override = os.environ.get("HFMATRIX_CHROMIUM")
    if override:
        if not os.access(override, os.X_OK):
            raise ProvisionError(f"HFMATRIX_CHROMIUM={override} is not an executable file")
        return Plan("HFMATRIX_CHROMIUM", override)
    found = next((c for c in CHROMIUM_CANDIDATES if os.access(c, os.X_OK)), None)
    if found:
        return Plan("installed", found)
    if shutil.which("apt-get") is None:  # macOS, non-Debian Linux: the browser Playwright manages
        return Plan(f"Playwright's managed Chromium ({platform}: no apt-get)", in_env=[PLAYWRIGHT_INSTALL])
    try:
        return Plan("apt-get", CHROMIUM_CANDIDATES[0], external=apt_commands("chromium", "Chromium is missing"))
    except ProvisionError as exc:
        raise ProvisionError(f"{exc}; or point HFMATRIX_CHROMIUM at a Chromium/Chrome executable "
                             f"(e.g. after `{' '.join(PLAYWRIGHT_INSTALL)}`)") from None


def npm_plan() -> Plan:
    """npm for onnxruntime-web (hfmatrix/web/package-lock.json): present, or apt-get (through sudo)."""
    if shutil.which("npm"):
        return Plan("installed")
    try:
        return Plan("apt-get", external=apt_commands("npm", "npm is missing (needed for onnxruntime-web)"))
    except ProvisionError as exc:
        raise ProvisionError(f"{exc}; elsewhere install Node.js (https://nodejs.org, `brew install node`)") from None
