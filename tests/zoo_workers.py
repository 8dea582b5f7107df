"""Child-process bodies for tests/test_zoo.py. Kept free of heavy imports: a spawned child imports
this module to find its target, and only a child that really builds should pay for torch."""
from __future__ import annotations

import os
import time
from pathlib import Path


def build_at_once(spec, cache_dir, barrier, queue):
    import hfmatrix.zoo.materialize as m  # imported before the barrier: all start building together

    barrier.wait(timeout=300)
    path = m.materialize(spec, cache_dir=cache_dir)
    queue.put((os.getpid(), str(path), len(m.BUILT), m.verify(path)))


def build_then_hang(spec, cache_dir, ready):
    import hfmatrix.zoo.materialize as m

    def hang(spec, folder):  # the model, tokenizer and weights are on disk; the manifest never comes
        Path(ready).write_text(str(folder))
        time.sleep(600)

    m._write_manifest = hang
    m.materialize(spec, cache_dir=cache_dir)
