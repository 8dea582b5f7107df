"""Time env creation (`nox -s S --install-only`) per session, as a clean CI machine sees it: a fresh
env folder and an empty package cache (uv's, or pip's with --backend virtualenv), kept across the
sessions of one run like .ci/run's; each env is removed after its session, as .ci/run does.

    python scripts/bench_envs.py [--backend uv|virtualenv] [--sessions tests,cpu,...] [--keep-cache]

Prints seconds per session (creation, then removal) and the totals. Needs nox (and uv) on PATH.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CI = "tests,cpu,cuda,rocm,mps,onnxruntime,qnn,openvino,wasm,webgpu,webnn,zoo,report"  # .ci/run's order


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", default="uv", choices=("uv", "virtualenv"))
    ap.add_argument("--sessions", default=CI)
    ap.add_argument("--keep-cache", action="store_true", help="use the machine's cache instead of an empty one")
    args = ap.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="hfm-bench-envs-"))
    env = dict(os.environ)
    if not args.keep_cache:
        env["UV_CACHE_DIR" if args.backend == "uv" else "PIP_CACHE_DIR"] = str(scratch / "cache")
    total_make = total_rm = 0.0
    try:
        for name in args.sessions.split(","):
            t0 = time.perf_counter()
            proc = subprocess.run(["nox", "-s", name, "--install-only", "--force-venv-backend", args.backend,
                                   "--envdir", str(scratch / "envs")], cwd=ROOT, env=env,
                                  capture_output=True, text=True)
            made = time.perf_counter() - t0
            shutil.rmtree(scratch / "envs", ignore_errors=True)
            removed = time.perf_counter() - t0 - made
            total_make, total_rm = total_make + made, total_rm + removed
            print(f"{name:<12} {'ok' if proc.returncode == 0 else 'FAILED'}  create {made:6.1f} s  remove {removed:5.1f} s",
                  flush=True)
            if proc.returncode:
                print(proc.stdout[-3000:] + proc.stderr[-3000:])
        print(f"total ({args.backend}): create {total_make:.0f} s, remove {total_rm:.0f} s")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
