"""Every data-file lookup the matrix makes, dumped to JSON: a change to the matcher or to the data files
(tolerances.toml, known_failures.toml, negative_cases.toml, the auto-zoo's known/gaps files) that must not
change a verdict is checked by dumping before and after and comparing.

    python scripts/verdict_lookups.py --dump before.json        # on the old code
    python scripts/verdict_lookups.py --compare before.json     # on the new code: prints the differences

A cell is (check, model, backend, device, effective precision, requested precision) in each library-version env
below (the version conditions of the data files read ``hfmatrix.versions.installed``, which is set per env); the
lookups are the tolerance, the known bug (which entry decides: its verdict fields raises / max_abs / max_rel /
nodes / unstable / hangs / requested) and the bad-input expectation (raises, match, behaviour). Reasons are text,
not verdicts: they are left out (the data split reasons into claim and evidence)."""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hfmatrix import compare, negative, versions  # noqa: E402
from hfmatrix.zoo import auto, load_specs  # noqa: E402

# the library versions of the matrix's envs (envs/*.txt): the data's version conditions hold or not per env
ENVS = {
    "cpu": {"transformers": "5.24.0", "torch": "2.13.0", "tokenizers": "0.23.3", "safetensors": "0.8.0"},
    "cpu-4.57": {"transformers": "4.57.6", "torch": "2.13.0", "tokenizers": "0.22.2", "safetensors": "0.8.0"},
    "openvino": {"transformers": "5.3.0", "torch": "2.13.0", "optimum": "2.3.0", "optimum-intel": "2.1.0",
                 "openvino": "2026.4.1", "tokenizers": "0.22.2"},
    "openvino-2026.3": {"transformers": "5.3.0", "torch": "2.13.0", "optimum": "2.3.0", "optimum-intel": "2.1.0",
                        "openvino": "2026.3.1", "tokenizers": "0.22.2"},
    "onnxruntime": {"transformers": "4.57.6", "torch": "2.13.0", "optimum": "2.1.0", "optimum-onnx": "0.1.0",
                    "onnxruntime": "1.32.0", "tokenizers": "0.22.2"},
}
#: backend -> (devices, effective precisions, the envs above it runs in)
TARGETS = {"torch": (("cpu", "cuda", "mps"), ("fp32", "fp16", "bf16"), ("cpu", "cpu-4.57")),
           "onnxruntime": (("cpu", "cuda"), ("fp32", "fp16"), ("onnxruntime",)),
           "openvino": (("cpu", "gpu", "npu"), ("fp32", "bf16", "bf16_kvfp16", "fp32_kvfp16"),
                        ("openvino", "openvino-2026.3")),
           "qnn": (("htp", "cpu"), ("fp16",), ("onnxruntime",)),
           "web": (("wasm", "webgpu"), ("fp32",), ("onnxruntime",)),
           "serve": (("cpu",), ("fp32",), ("cpu",)),
           "distributed": (("cpu", "cuda"), ("fp32",), ("cpu",))}
VERDICT_KEYS = ("raises", "match", "max_abs", "max_rel", "first_position", "growth_per_cycle", "nodes", "unstable", "hangs",
                "requested")


def use_env(env: dict[str, str]) -> None:
    versions.installed = lambda dist: env.get(dist)  # type: ignore[assignment]
    versions.satisfies.cache_clear()


def checks() -> list[str]:
    names = {m for f in (ROOT / "hfmatrix" / "suites").glob("test_*.py")
             for m in re.findall(r"^def test_(\w+)", f.read_text(), re.M)}
    text = (ROOT / "hfmatrix" / "known_failures.toml").read_text()
    names |= set(re.findall(r'"((?:negative:)?[a-z_][\w:.-]*)"', "\n".join(
        line for line in text.splitlines() if line.startswith("check"))))
    names |= {f"negative:{cid}" for cid in negative.load_catalogue()}
    return sorted(names | {"some_other_check"})


def _known(check, spec, backend, device, eff, requested):
    try:
        entry = compare.known_entry(check, spec, backend, device, eff, requested=requested)
    except Exception as exc:  # noqa: BLE001 - a data error is a lookup result too
        return f"error {type(exc).__name__}"
    if entry is None:
        return None
    return {k: entry[k] for k in VERDICT_KEYS if k in entry} | {"_has_reason": bool(entry.get("reason"))}


def _tolerance(spec, backend, device, eff):
    try:
        t = compare.tolerance(spec.id, backend, device, eff)
    except LookupError:
        return None
    return [t.atol, t.rtol, t.scale, t.row_norm, t.source, bool(t.low_power)]


def _negative(case, spec, backend, device, eff):
    exp = case.expectation(spec, backend, device, eff)
    return None if exp is None else [list(exp.raises), exp.match, exp.behaviour]


def cells():
    """(env, backend, device, effective precision, requested precisions) of every target the matrix runs."""
    for backend, (devices, precisions, envs) in TARGETS.items():
        for env in envs:
            for device in devices:
                for eff in precisions:
                    yield env, backend, device, eff, sorted({"", eff} | ({"auto"} if backend == "openvino" else set()))


def dump() -> dict[str, object]:
    specs = list(load_specs().values())
    cases = negative.load_catalogue()
    names = checks()
    out: dict[str, object] = {}
    for env, backend, device, eff, requested in cells():
        use_env(ENVS[env])
        for spec in specs:
            cell = f"{env}|{spec.id}|{backend}|{device}|{eff}"
            out[f"tol|{cell}"] = _tolerance(spec, backend, device, eff)
            for check in names:
                for req in requested:
                    out[f"known|{cell}|{check}|{req}"] = _known(check, spec, backend, device, eff, req)
            for cid, case in cases.items():
                out[f"neg|{cell}|{cid}"] = [case.applies(spec), _negative(case, spec, backend, device, eff)]
    out["negative backends"] = list(negative.backends_covered())
    for (mt, role), k in auto.load_known().items():
        out[f"auto|{mt}|{role}"] = [k.stage, k.gap]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--dump", metavar="JSON")
    g.add_argument("--compare", metavar="JSON")
    args = ap.parse_args(argv)
    now = json.loads(json.dumps(dump()))
    if args.dump:
        Path(args.dump).write_text(json.dumps(now, sort_keys=True, indent=0))
        print(f"{len(now)} lookups written to {args.dump}")
        return 0
    before = json.loads(Path(args.compare).read_text())
    diffs = [k for k in sorted(set(before) | set(now)) if before.get(k, "<absent>") != now.get(k, "<absent>")]
    for k in diffs[:50]:
        print(f"{k}: before {before.get(k, '<absent>')!r} now {now.get(k, '<absent>')!r}")
    print(f"{len(now)} lookups compared with {len(before)}: {len(diffs)} differences")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
