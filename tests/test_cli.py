"""The `hfmatrix` command (issue 15, item 6): `python -m hfmatrix`, help that explains every subcommand,
and `hfmatrix run`'s pytest command line (the run itself: tests/test_wheel.py, from an installed wheel)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from hfmatrix import cli, run

ROOT = Path(__file__).resolve().parents[1]


def test_python_m_hfmatrix_lists_every_command():
    done = subprocess.run([sys.executable, "-m", "hfmatrix", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for name, (_, what) in cli.COMMANDS.items():
        assert re.search(rf"^  {name}\s+\S", done.stdout, re.M), (name, done.stdout)
    assert subprocess.run([sys.executable, "-m", "hfmatrix"], capture_output=True, timeout=120).returncode == 2


HELPS = [(c,) for c in sorted(cli.COMMANDS)] + [("bench", a) for a in ("fingerprint", "record", "compare", "plot")]


@pytest.mark.parametrize("command", HELPS, ids=" ".join)
def test_every_subcommand_explains_itself(command, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([*command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    # the text between the usage and the argument lists says what the command does
    usage, _, rest = out.partition("\n\n")
    description = re.split(r"^(positional arguments|options):", rest, maxsplit=1, flags=re.M)[0]
    assert usage.startswith("usage:") and len(description.split()) >= 6, out
    # an option line with no help text after it, on its line or the next (deeper-indented) one
    undocumented = re.findall(r"^  (--?[\w-]+)(?: \S+)?\n(?! {8,}\S)", out, re.M)
    assert [o for o in undocumented if o not in ("-h",)] == [], out


def _command(*argv: str) -> list[str]:
    args, extra = run.build_parser().parse_known_args(list(argv))
    return run.command(args, [a for a in extra if a != "--"])


def test_run_command_line(tmp_path):
    cmd = _command("--backend", "openvino", "--device", "gpu", "--models", "./m", "--results", str(tmp_path),
                   "--", "-k", "parity", "-x")
    assert cmd[:4] == [sys.executable, "-m", "pytest", str(run.SUITES)]
    assert run.SUITES.is_dir() and (run.SUITES / "test_parity.py").is_file()
    assert "--hfm-models=./m" in cmd and "--hfm-session-name=openvino-gpu" in cmd
    assert f"--junitxml={tmp_path / 'openvino-gpu' / 'junit.xml'}" in cmd
    assert cmd[-3:] == ["-k", "parity", "-x"]
    # a node id (the report's rerun command) runs that test alone: no suites path
    node = "hfmatrix/suites/test_parity.py::test_parity[bert@torch-cpu-fp32]"
    rerun = _command("--backend", "torch", node)
    assert str(run.SUITES) not in rerun and "--hfm-session-name=torch" in rerun
    assert rerun[-1] == f"{run.PACKAGE_PARENT}/{node}"  # found where the package is, from any directory
    # the suites' own pytest configuration, never the project's; node ids relative to the package's folder
    assert rerun[rerun.index("-c") + 1] == str(run.RUN_INI) and run.RUN_INI.is_file()
    assert f"--rootdir={run.PACKAGE_PARENT}" in rerun


@pytest.mark.parametrize("argv, backend, device, name", [
    (("--backend", "cpu"), "torch", "cpu", "cpu"),              # the nox sessions' names
    (("--backend", "cuda"), "torch", "cuda", "cuda"),
    (("--backend", "webgpu"), "web", "webgpu", "webgpu"),
    (("--backend", "torch"), "torch", "cpu", "torch"),
    (("--backend", "torch", "--device", "cuda"), "torch", "cuda", "torch-cuda"),
    (("--backend", "cpu", "--name", "mine"), "torch", "cpu", "mine"),
])
def test_run_target(argv, backend, device, name):
    cmd = _command(*argv)
    assert [f"--hfm-backend={backend}", f"--hfm-device={device}", f"--hfm-session-name={name}"] == \
        [a for a in cmd if a.startswith(("--hfm-backend=", "--hfm-device=", "--hfm-session-name="))]


def test_run_session_name_with_another_device_is_refused():
    with pytest.raises(SystemExit, match="--backend torch --device mps"):
        _command("--backend", "cuda", "--device", "mps")
