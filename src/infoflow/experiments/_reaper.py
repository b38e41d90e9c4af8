"""The processes and temp folder of a sweep's local Ray instance, and their removal.

Every process of a local Ray instance started by a sweep carries the sweep's session id in its
environment (:data:`SESSION_ENV`: the driver sets it before ``ray.init`` and Ray's processes
inherit it), so they are found even after Ray renames them (``ray::DashboardAgent``) and outlive
their driver. The temp folder the sweep made for Ray holds :data:`OWNER_FILE` (the session id,
the driver's pid and its start time).

Run as a script (``python _reaper.py PID START SESSION [FOLDER]``, standard library only, in a
session of its own) it waits for the driver ``PID`` to end and then removes what the driver
left: so a driver killed with SIGKILL leaves no Ray process and no temp folder behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

SESSION_ENV = "INFOFLOW_RAY_SESSION"  # environment variable marking a sweep's Ray processes
OWNER_FILE = ".infoflow-sweep"  # in a temp folder the sweep made: {"session", "pid", "start"}
FOLDER_PREFIX = "ifr-"


def start_time(pid: int) -> int | None:
    """The start time of process ``pid`` (clock ticks since boot), None when it does not run.
    With the pid it names one process, even once the pid is reused."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == b"Z" else int(fields[19])


def alive(pid: int, start: int | None) -> bool:
    now = start_time(pid)
    return now is not None and (start is None or now == start)


def processes(*, cmdline: str | None = None, session: str | None = None) -> list[int]:
    """Ids of other processes whose command line contains ``cmdline`` or whose environment holds
    the sweep session ``session``."""
    me, pids = os.getpid(), []
    tag = f"{SESSION_ENV}={session}".encode() if session else None
    for entry in Path("/proc").glob("[0-9]*"):
        pid = int(entry.name)
        if pid == me:
            continue
        try:
            if cmdline is not None:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                if cmdline in cmd:
                    pids.append(pid)
                    continue
            if tag is not None and tag in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(pid)
        except OSError:
            continue
    return sorted(pids)


def kill_processes(pids: Sequence[int], sig: int = signal.SIGKILL) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def reap(session: str, folder: str | os.PathLike[str] | None = None, *, timeout_s: float = 10.0) -> list[int]:
    """Kill the processes of sweep ``session`` (until none is left, at most ``timeout_s``) and
    remove its temp ``folder``. Returns the processes found."""
    found: set[int] = set()
    end = time.monotonic() + timeout_s
    clear = 0  # consecutive polls that found none: a process of the session may be forking as it is killed
    while clear < 2 and time.monotonic() <= end:
        left = processes(session=session, cmdline=str(folder) if folder else None)
        clear = 0 if left else clear + 1
        found.update(left)
        kill_processes(left)
        time.sleep(0.1)
    while folder and os.path.exists(folder) and time.monotonic() <= end:
        shutil.rmtree(folder, ignore_errors=True)  # dying processes may still write into it: again until gone
        if os.path.exists(folder):
            time.sleep(0.1)
    return sorted(found)


def write_owner(folder: str | os.PathLike[str], session: str) -> None:
    pid = os.getpid()
    Path(folder, OWNER_FILE).write_text(json.dumps({"session": session, "pid": pid, "start": start_time(pid)}))


def remove_stale(base: str | os.PathLike[str]) -> list[Path]:
    """Remove the temp folders (``ifr-*`` holding :data:`OWNER_FILE`) of sweeps whose driver no
    longer runs, and their processes. Returns the folders removed."""
    gone = []
    for folder in Path(base).glob(f"{FOLDER_PREFIX}*"):
        try:
            owner = json.loads((folder / OWNER_FILE).read_text())
            pid, start, session = int(owner["pid"]), owner.get("start"), str(owner["session"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not a folder of ours, or one being made
        if not alive(pid, start):
            reap(session, folder)
            gone.append(folder)
    return gone


def watch(pid: int, start: int | None, session: str, folder: str | None, interval_s: float = 0.5) -> None:
    """Wait for the driver ``pid`` to end, then :func:`reap` its session."""
    while alive(pid, start):
        time.sleep(interval_s)
    reap(session, folder)


if __name__ == "__main__":  # python _reaper.py PID START SESSION [FOLDER]
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the terminal's ^C is the driver's to handle
    _pid, _start, _session = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    watch(_pid, _start if _start >= 0 else None, _session, sys.argv[4] if len(sys.argv) > 4 else None)
