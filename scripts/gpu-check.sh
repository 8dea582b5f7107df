#!/usr/bin/env bash
# One prepared GPU check: the cuda session's suites on one NVIDIA machine, in one call, < 8 minutes.
# For machines without network (e.g. a lent GPU box): it installs nothing; it uses the python given
# by $PYTHON (default: python3) which must already have CUDA torch + transformers, and puts this
# checkout on PYTHONPATH instead of installing it. Writes results/cuda/ and the merged report.
#   usage: scripts/gpu-check.sh [extra pytest args]     env: PYTHON, HFMATRIX_CACHE, GPU_CHECK_BUDGET
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export HFMATRIX_CACHE="${HFMATRIX_CACHE:-$PWD/.cache/hfmatrix}"
budget="${GPU_CHECK_BUDGET:-420}"   # seconds for the suites; the rest of 8 minutes is report + slack
out=results/cuda
mkdir -p "$out"

"$PY" - <<'PY' || { echo "gpu-check: this python cannot run the cuda session (see above)"; exit 2; }
import torch, transformers
print(f"torch {torch.__version__} (cuda {torch.version.cuda}, hip {getattr(torch.version, 'hip', None)}), "
      f"transformers {transformers.__version__}, devices: "
      + ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())))
assert torch.cuda.is_available(), "torch sees no CUDA device"
PY
"$PY" -m hwprobe --json --out "$out/hwprobe.json" --no-browser

workers=$("$PY" -c "import os; print(max(1, min(4, (os.cpu_count() or 2) // 2)))")
timeout --signal=INT "$budget" "$PY" -m pytest hfmatrix/suites -p hfmatrix.plugin \
  --hfm-backend=torch --hfm-device=cuda --hfm-precision=fp32,fp16,bf16 --hfm-session-name=cuda \
  --hfm-results-dir=results -n "$workers" -p no:cacheprovider -q "$@"
rc=$?
"$PY" -m hfmatrix.cli report --results-dir results --no-fail
echo "gpu-check: suites exit $rc; results in $out/, report in results/matrix.md"
exit "$rc"
