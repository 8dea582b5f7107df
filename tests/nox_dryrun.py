"""What every nox session would run, without running it: nox loads the noxfile and builds its manifest
(the same sessions, parametrizations and friendly names `nox -l` lists), then each session function
is called with a session that records its commands instead of executing them.

    python tests/nox_dryrun.py [--noxfile noxfile.py] [--session NAME ...] [-- POSARG ...]

prints, per session, its tags, whether it is in the default set, every install/run command with the
environment it passes, and the variables it sets in the nox process. Paths under the noxfile's folder
print as <ROOT>, so two checkouts compare with diff. Side effects are the session's own filesystem
ones (results/<session>/ folders, stale .coverage files, `nox -s lock`'s stamps): run it in a copy.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any


class _Virtualenv:
    location = None  # no venv: hfmatrix.nox.install writes no install stamp


class RecordingSession:
    """The part of nox.Session the noxfile uses, recording what it would run."""

    def __init__(self, runner: Any, posargs: list[str]):
        self._runner, self.posargs, self.virtualenv = runner, list(posargs), _Virtualenv()
        self.name, self.python = runner.friendly_name, runner.func.python
        self.ran: list[str] = []

    def _note(self, kind: str, args: tuple, env: dict | None = None, **kw: Any) -> None:
        flags = "".join(f" [{k}]" for k, v in sorted(kw.items()) if v)
        extra = f"  env={dict(sorted(env.items()))}" if env else ""
        self.ran.append(f"{kind}{flags}: {' '.join(map(str, args))}{extra}")

    def install(self, *args: str, **kw: Any) -> None:
        self._note("install", args, **kw)

    def run_install(self, *args: str, env: dict | None = None, **kw: Any) -> None:
        self._note("run_install", args, env, **kw)

    def run(self, *args: str, env: dict | None = None, external: bool = False, silent: bool = False, **kw: Any):
        self._note("run", args, env, external=external, silent=silent, **kw)
        return "" if silent else None

    def create_tmp(self) -> str:
        return f"<envdir:{self.name}>/tmp"

    def log(self, *args: Any, **kw: Any) -> None:
        pass

    warn = log

    def error(self, *args: Any) -> None:
        raise SystemExit(" ".join(map(str, args)))


def manifest(noxfile: Path) -> tuple[Any, Any]:
    """(nox's manifest of the noxfile, its global config), built by nox as `nox -l` builds it."""
    from nox import _options, tasks
    config = _options.options.parse_args(["--noxfile", str(noxfile)])
    module = tasks.load_nox_module(config)
    tasks.merge_noxfile_options(module, config)
    found = tasks.discover_manifest(module, config)
    return tasks.filter_manifest(found, config), config


def dry_run(noxfile: Path, posargs: list[str], only: list[str] | None = None) -> list[str]:
    """The report's lines: one block per session, in `nox -l` order."""
    noxfile = noxfile.resolve()
    root = str(noxfile.parent)
    found, _ = manifest(noxfile)
    lines = []
    for runner, selected in found.list_all_sessions():
        if only and runner.friendly_name not in only:
            continue
        before = dict(os.environ)
        session = RecordingSession(runner, posargs)
        try:
            runner.func(session)
        except SystemExit as exc:  # session.error()
            session.ran.append(f"error: {exc}")
        except Exception as exc:  # what nox would report as the session's failure
            session.ran.append(f"raises {type(exc).__name__}: {exc}")
        changed = {k: os.environ.get(k) for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k)}
        os.environ.clear()
        os.environ.update(before)
        lines.append(f"== {runner.friendly_name} [{','.join(runner.tags)}]{' default' if selected else ''}")
        lines += [f"  {line}" for line in session.ran]
        lines += [f"  sets {k}={v}" for k, v in sorted(changed.items())]
    return [line.replace(root, "<ROOT>") for line in lines]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--noxfile", type=Path, default=Path("noxfile.py"))
    ap.add_argument("--session", nargs="*", default=None)
    argv = sys.argv[1:] if argv is None else argv
    cut = argv.index("--") if "--" in argv else len(argv)
    args = ap.parse_args(argv[:cut])
    print("\n".join(dry_run(args.noxfile, argv[cut + 1:], args.session)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
