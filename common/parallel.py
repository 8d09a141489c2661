"""Using a core that torch's threads leave idle, without changing a result.

Shared by the PyTorch papers whose ``make reproduce`` jobs run with ``--threads 1`` on a 2-core machine:

- :func:`submit_draw`: one worker thread that runs its tasks in submission order (GC-SAN's and MPM's
  dropout masks drawn ahead: the same draws from torch's generator, in the same order, as drawing inline);
- :func:`spare_core`: the ``auto | on | off`` rule of their ``--draw-ahead`` / ``--prefetch`` flags.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

_draw_worker: ThreadPoolExecutor | None = None
_draw_worker_lock = threading.Lock()


def submit_draw(fn: Callable[..., Any], *args: Any) -> Future:
    """Run fn(*args) on the one draw-ahead thread, after everything submitted before it. One worker runs its
    tasks one after another in submission order, so draws made there leave torch's generator exactly as
    drawing them inline in that order would, provided nothing else draws from it meanwhile."""
    global _draw_worker
    with _draw_worker_lock:
        if _draw_worker is None:
            _draw_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="draw-ahead")
    return _draw_worker.submit(fn, *args)


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one, else ``os.cpu_count``)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def spare_core(setting: str, device: str = "cpu") -> bool:
    """``on``, ``off``, or ``auto`` = on the CPU when torch's thread count leaves one of the process's cores
    free (e.g. ``--threads 1`` on 2 cores); off where both cores run torch's threads (measured: no gain there)."""
    if setting == "auto":
        import torch

        return torch.device(device).type == "cpu" and torch.get_num_threads() < available_cores()
    return setting == "on"
