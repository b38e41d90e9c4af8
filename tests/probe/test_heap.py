"""retained_heap(): freed memory is reused instead of faulted in again, and given back at the end."""

from __future__ import annotations

import platform
import resource

import pytest
import torch

from infoflow.probe.heap import retained_heap

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="glibc's malloc only")

VALUES = 16 << 20  # float32 values in 64 MiB: above glibc's largest dynamic mmap threshold (32 MiB)
CYCLES = 10


def faults_of_cycles() -> int:
    """Minor page faults of CYCLES rounds of allocating, touching and freeing 64 MiB (torch's CPU
    allocator, as the probe's layer outputs; numpy asks for huge pages, which hides the effect)."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(CYCLES):
        t = torch.ones(VALUES)
        del t
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def test_freed_blocks_are_reused_while_active_and_not_after() -> None:
    pages = CYCLES * (VALUES * 4) // resource.getpagesize()  # a fault per page when nothing is reused
    outside = faults_of_cycles()
    with retained_heap() as ok:
        assert ok
        inside = faults_of_cycles()
        with retained_heap() as nested:  # nested: still active, and leaves the settings alone
            assert nested
        again = faults_of_cycles()
    after = faults_of_cycles()
    assert outside > pages // 2, (outside, pages)
    assert inside < pages // 3 and again < pages // 3, (inside, again, pages)
    assert after > pages // 2, (after, pages)  # blocks of 64 MiB unmapped when freed again
