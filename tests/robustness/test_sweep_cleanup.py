"""A killed sweep leaves nothing behind (issue 16): no Ray process of the killed session outlives
it by more than a few seconds, its Ray temp folder is gone, and the run resumes (real Ray).

Ray's agents (``ray::DashboardAgent``, ``ray::RuntimeEnvAgent``) used to outlive a driver killed
with SIGKILL by about a minute, and its temp folder stayed. The processes of a sweep's local Ray
instance carry the sweep's session id in their environment; the watcher (``_reaper.py``) cleans
up after a driver killed outright, SIGTERM ends the sweep as ^C does (Ray shut down on the way
out), and a sweep's start removes what an earlier one whose watcher was killed too left."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from infoflow.experiments import _reaper
from infoflow.experiments.sweep import last_epoch

pytest.importorskip("ray")

SETS = {"train.epochs": 8, "data.n_synthetic": 24, "data.mask_size": None, "mi.kmeans_k": 4,
        "train.schedule": "log", "train.log_points": 3}

DRIVER = """
import json, sys
from infoflow.experiments.sweep import plan_runs, run_sweep
specs = plan_runs("smoke", sys.argv[1], data="synthetic", models=[1], sets=json.loads(sys.argv[2]))
res = run_sweep(specs, num_cpus=1, progress=False)
print("RESULT " + json.dumps({k: [v.status, v.resumed_from] for k, v in res.results.items()}), flush=True)
"""

BOUND_S = 15.0  # how long a process of the killed session may outlive it


def _wait(cond, timeout_s: float, what: str) -> float:
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout_s:
            pytest.fail(f"{what} within {timeout_s:.0f} s")
        time.sleep(0.2)
    return time.monotonic() - t0


# (case, what is killed, with which signal)
CASES = [
    ("SIGKILL of the driver: the watcher cleans up", "driver", signal.SIGKILL),
    ("SIGKILL of driver and watcher: the next sweep's start cleans up", "driver+watcher", signal.SIGKILL),
    ("SIGTERM of the driver (watcher killed first): the driver cleans up", "watcher,driver", signal.SIGTERM),
]


def _describe(pid: int) -> str:
    """A process's state and command line, for a failure message."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().split()
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        return f"{pid} state {stat[2]} ppid {stat[3]}: {cmd[:120]}"
    except OSError:
        return f"{pid} gone"


@pytest.mark.parametrize("case, victims, sig",  # one Ray session each: the default suite runs the first
                         [c if i == 0 else pytest.param(*c, marks=pytest.mark.slow) for i, c in enumerate(CASES)],
                         ids=[c[0].split(":")[0] for c in CASES])
def test_killed_sweep_leaves_no_ray_process_and_no_temp_folder(tmp_path, case, victims, sig):
    base = Path(tempfile.mkdtemp(prefix="ifc", dir="/tmp"))  # short: Ray's socket paths must stay < 108 chars
    out = tmp_path / "sweep"
    run = out / "model1_seed0"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(base)}
    args = [sys.executable, "-c", DRIVER, str(out), json.dumps(SETS)]
    proc = subprocess.Popen(args, start_new_session=True, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    session = ""
    try:
        _wait(lambda: (run / "checkpoints" / "last.pt").exists() and last_epoch(run) >= 1 or proc.poll() is not None,
              240, "the sweep did not train an epoch")
        assert proc.poll() is None, proc.stdout.read().decode()
        [folder] = list(base.glob("ifr-*"))
        session = json.loads((folder / _reaper.OWNER_FILE).read_text())["session"]
        assert _reaper.processes(session=session), "no process carries the session id"
        [watcher] = _reaper.processes(cmdline=f"_reaper.py {proc.pid} ")
        if "watcher" in victims:
            os.kill(watcher, signal.SIGKILL)
        os.kill(proc.pid, sig)
        proc.wait(timeout=60)
        if victims == "driver+watcher":  # nothing cleans up before the next sweep starts
            assert folder.exists()
        else:
            waited = _wait(lambda: not _reaper.processes(session=session) and not folder.exists(), BOUND_S,
                           "Ray processes or the temp folder of the killed session are left")
            print(f"{case}: clean {waited:.1f} s after the driver ended")
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=400)
        assert done.returncode == 0, done.stdout + done.stderr
        result = json.loads(done.stdout.split("RESULT ", 1)[1])
        status, resumed_from = result["model1_seed0"]
        # resumed from its checkpoint, or (when the kill came after its last epoch) finished already
        assert (status == "finished" and resumed_from >= 1) or (status == "skipped" and last_epoch(run) == SETS["train.epochs"]), \
            result
        left = _reaper.processes(session=session)
        assert not left and not folder.exists(), [_describe(p) for p in left]
        assert not list(base.glob("ifr-*")), "the resumed sweep left its own temp folder"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        if session:
            _reaper.kill_processes(_reaper.processes(session=session))
        shutil.rmtree(base, ignore_errors=True)
