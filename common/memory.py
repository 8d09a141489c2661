"""Process-wide allocator setting shared by the PyTorch papers' training entry points.

``keep_freed_memory`` is called first by ``gcsan/main.py`` and ``mpm/main.py`` (and by their benches, so
that a bench times what training runs). It changes only where memory comes from: every output is
bit-identical with and without it.
"""

from __future__ import annotations


def keep_freed_memory() -> bool:
    """Keep freed blocks in the process instead of returning them to the kernel (glibc only).

    glibc serves blocks above its mmap threshold (128 kB, raised up to 32 MB as large blocks are
    freed) with fresh mmap'd pages and unmaps them on free, and gives the freed top of the heap back
    to the kernel; a training step that allocates and frees megabyte-sized activations then pays a
    page fault for every 4 kB page of them, every step. ``M_MMAP_MAX = 0`` serves every block from the
    heap and a huge ``M_TRIM_THRESHOLD`` keeps the heap's freed top; after the first step the same
    pages are reused (the resident size stays at its peak). GC-SAN on ML-100k paid ~1.7 million page
    faults and ~40% of its CPU time in the kernel per step without it (its README, Speed). Returns
    whether both settings were accepted (False off glibc)."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_max = -1, -4  # <malloc.h>
    return bool(mallopt(m_mmap_max, 0)) and bool(mallopt(m_trim_threshold, 2 ** 31 - 1))
