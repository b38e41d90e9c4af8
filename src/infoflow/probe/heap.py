"""Keep freed memory in the process while the probe runs, so that it is reused, not faulted in again.

glibc's ``malloc`` serves large blocks (PyTorch's CPU tensors of 32 MiB and more: a 128 x 128 x 16
layer output of a batch of 32) with ``mmap`` and unmaps them when they are freed, and returns the
top of its heap to the system once more than ``M_TRIM_THRESHOLD`` of it is free. Every new block
then starts as fresh pages that the kernel faults in and zeroes on first touch. A logged epoch
allocates and frees about 12 GB at the paper's scale (every batch's transient outputs, the kept
activations of each pass, the distances' column blocks); on this project's 2-core VM faulting
4 GiB in takes 0.6-2.5 s, and the probe's forward passes ran 25-35% faster with the memory kept
(``bench/bench_mi.py``). ``MITracker`` holds it from its first logged epoch until it is closed
(``MIConfig.retain_memory``), so that later logged epochs reuse the memory too.

:func:`retained_heap` raises both thresholds while it is active, so freed blocks stay in the heap
and the next allocation of a similar size reuses their pages, and on exit gives the free memory
back (``malloc_trim``) and sets the thresholds to 32 MiB and 64 MiB, the values glibc's own
dynamic rule settles at in a program that frees blocks of 32 MiB (setting them is the only way
to change them: glibc has no getter). Peak memory does not grow: a freed block is reused, not
added to. Elsewhere (other C libraries, or ``malloc`` replaced by jemalloc or tcmalloc) it does
nothing.
"""

from __future__ import annotations

import ctypes
import platform
from contextlib import contextmanager
from typing import Any, Iterator

M_TRIM_THRESHOLD = -1  # mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
_RETAIN_MMAP = 1 << 30  # blocks below 1 GiB come from the heap while active
_RETAIN_TRIM = (1 << 31) - 1  # and free memory stays in it
_AFTER_MMAP = 32 << 20  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit systems
_AFTER_TRIM = 2 * _AFTER_MMAP  # what its dynamic rule sets beside it
_depth = 0  # retained_heap() contexts active now


def _glibc() -> Any | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(None)
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


@contextmanager
def retained_heap() -> Iterator[bool]:
    """While active, freed memory stays in the process for reuse (glibc only); yields whether it
    took effect. Nests: only the outermost one changes and restores the settings."""
    global _depth
    libc = _glibc()
    if libc is None or _depth:
        _depth += 1
        try:
            yield libc is not None
        finally:
            _depth -= 1
        return
    ok = bool(libc.mallopt(M_MMAP_THRESHOLD, _RETAIN_MMAP))  # refused: nothing was changed
    ok = ok and bool(libc.mallopt(M_TRIM_THRESHOLD, _RETAIN_TRIM))
    _depth += 1
    try:
        yield ok
    finally:
        _depth -= 1
        if ok:
            libc.mallopt(M_MMAP_THRESHOLD, _AFTER_MMAP)
            libc.mallopt(M_TRIM_THRESHOLD, _AFTER_TRIM)
            libc.malloc_trim(0)

