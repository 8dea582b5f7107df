"""Greedy decoding by recompute, for the sessions that run a graph without its KV cache (QNN's static graph,
onnxruntime-web in the page): each step re-runs the whole sequence and appends the argmax of the last
position's logits.

EOS is suppressed at every step. The reference (torch ``generate`` with ``min_new_tokens = max_new_tokens``,
as every optimum session's generate too) never ends early and never emits EOS: its min-new-tokens
processor sets the EOS logits to -inf until the last new token. Suppressing EOS here gives the same ids,
so generate_greedy compares like with like; a backend that stopped at EOS would differ by construction.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np


def eos_ids(*folders: Path | None) -> list[int]:
    """The EOS ids transformers' generate would use: ``eos_token_id`` of generation_config.json, else of
    config.json, in the first folder that names one."""
    for folder in folders:
        for name in ("generation_config.json", "config.json"):
            path = Path(folder) / name if folder is not None else None
            if path is not None and path.is_file():
                eos = json.loads(path.read_text()).get("eos_token_id")
                if eos is not None:
                    return [int(e) for e in eos] if isinstance(eos, list) else [int(eos)]
    return []


def greedy(next_logits: Callable[[np.ndarray], np.ndarray], ids: np.ndarray, max_new_tokens: int,
           eos: list[int]) -> np.ndarray:
    """``ids`` (batch, n) with ``max_new_tokens`` greedy tokens appended: ``next_logits(ids so far)`` gives
    the (batch, vocab) logits of the next position; the ``eos`` ids are never chosen (module docstring)."""
    ids = np.asarray(ids, dtype=np.int64)
    for _ in range(max_new_tokens):
        logits = np.array(next_logits(ids), dtype=np.float64)  # a copy: the session's array is not written
        if eos:
            logits[:, eos] = -np.inf
        ids = np.concatenate([ids, logits.argmax(axis=-1).astype(np.int64)[:, None]], axis=1)
    return ids
