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
# (its dynamic thresholds, what sits at the top of its heap). What is asserted is glibc's own
# account of its memory (mallinfo2: bytes in mmapped blocks, free bytes kept in the heap), which
# does not depend on how busy the machine is (page-fault counts did).
SCRIPT = r"""
import ctypes, json, re, torch
from infoflow.probe.heap import retained_heap

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
MIB = 1 << 20

def state():  # MiB: heap (arena), mmapped blocks, resident memory of the process
    m = libc.mallinfo2()
    with open("/proc/self/status") as fh:
        rss = int(re.search(r"VmRSS:\s+(\d+)", fh.read()).group(1)) * 1024
    return {"arena": m.arena // MIB, "mmapped": m.hblkhd // MIB, "rss": rss // MIB}

def cycle():
    # allocate and free 128 MiB (torch's CPU allocator, as the probe's layer outputs)
    t = torch.ones(32 << 20)  # float32: 128 MiB
    held = state()
    del t
    return {"held": held, "freed": state()}

out = {"start": state(), "outside": cycle()}
with retained_heap() as ok:
    out["ok"] = ok
    out["inside"] = [cycle() for _ in range(4)]
    with retained_heap() as nested:  # nested: still active, and leaves the settings alone
        out["nested"] = nested
    out["again"] = cycle()
out["after"] = state()
out["after_cycle"] = cycle()
print(json.dumps(out))
"""


def test_freed_blocks_are_kept_for_reuse_while_active_and_given_back_after() -> None:
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["ok"] and r["nested"]
    base = r["outside"]["freed"]["rss"]
    # outside: a 128 MiB block is its own mapping, unmapped (its memory given back) when freed
    assert r["outside"]["held"]["mmapped"] >= 128 > r["outside"]["freed"]["mmapped"] + 64, r
    assert r["outside"]["held"]["rss"] >= base + 120, r
    # inside: blocks come from the heap; freed, they stay resident for the next one, which reuses
    # them: four cycles and a nested one grow the heap by at most two blocks
    cycles = [*r["inside"], r["again"]]
    assert all(c["held"]["mmapped"] < r["outside"]["held"]["mmapped"] - 64 for c in cycles), r
    assert all(c["freed"]["rss"] >= base + 120 for c in cycles), r
    assert cycles[-1]["held"]["arena"] - r["start"]["arena"] <= 2 * 128 + 32, r
    # after: the free memory was given back (malloc_trim) and large blocks are mapped again
    assert r["after"]["rss"] <= base + 32, r
    assert r["after_cycle"]["held"]["mmapped"] >= 128 and r["after_cycle"]["freed"]["rss"] <= base + 32, r
