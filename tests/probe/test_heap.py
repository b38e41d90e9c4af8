"""retained_heap(): freed memory is reused instead of faulted in again, and given back at the end."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="glibc's malloc only")

# Run in a fresh interpreter: what glibc does with a freed block depends on the process's history
# (its dynamic thresholds, what sits at the top of its heap).
SCRIPT = r"""
import json, resource, torch
from infoflow.probe.heap import retained_heap

VALUES = 32 << 20  # float32 values in 128 MiB: above every threshold glibc sets by itself
CYCLES = 8

def faults():
    # minor page faults of CYCLES rounds of allocating, touching and freeing 128 MiB (torch's CPU
    # allocator, as the probe's layer outputs; numpy asks for huge pages, which hides the effect)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(CYCLES):
        t = torch.ones(VALUES)
        del t
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

out = {"outside": faults()}
with retained_heap() as ok:
    out["ok"] = ok
    out["inside"] = faults()
    with retained_heap() as nested:  # nested: still active, and leaves the settings alone
        out["nested"] = nested
    out["again"] = faults()
out["after"] = faults()
out["pages"] = CYCLES * (VALUES * 4) // resource.getpagesize()
print(json.dumps(out))
"""


def test_freed_blocks_are_reused_while_active_and_not_after() -> None:
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    pages = r["pages"]  # one fault per page when nothing is reused
    assert r["ok"] and r["nested"]
    assert r["outside"] > pages // 2, r
    assert r["inside"] < pages // 3 and r["again"] < pages // 3, r  # the first round faults, then reuse
    assert r["after"] > pages // 2, r  # blocks unmapped when freed again, the memory given back
