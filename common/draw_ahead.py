"""Random draws made ahead, on one worker thread, while the training step's first layers run.

A step's dropout masks depend only on the batch's shape, and drawing them is serial work on torch's
one generator (GC-SAN: ``bernoulli_`` over 48 M values per batch). Submitted here in the order the
forward would draw them, they are drawn by a single worker thread, which runs its tasks one after
another in that order: the masks, and the generator's state after them, are exactly those of drawing
inline, provided nothing else draws from the generator until the forward has taken them all.
``gcsan.model.GCSAN.draw_ahead`` queues the futures per dropout module and refuses to queue a step's
masks while an earlier step's are still unused. (Tried for MPM's TCN masks too: no gain on both cores;
mpm/README.md, Speed.)
"""
from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

_worker: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def submit(fn: Callable[..., Any], *args: Any) -> Future:
    """Run fn(*args) on the draw-ahead thread, after everything submitted before it."""
    global _worker
    with _lock:
        if _worker is None:
            _worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="draw-ahead")
    return _worker.submit(fn, *args)
