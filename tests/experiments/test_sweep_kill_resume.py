"""A sweep killed with SIGKILL and run again loses no finished run and repeats none (real Ray)."""

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

from infoflow.experiments.sweep import kill_processes, last_epoch, plan_runs, ray_processes, run_state
from infoflow.runs import RunDir

pytest.importorskip("ray")

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "dsb2018"
pytestmark = pytest.mark.skipif(not (DATA / "stage1_train.zip").exists(), reason=f"DSB 2018 zips not at {DATA}")

SETS = {"train.epochs": 30, "train.schedule": "log", "train.log_points": 4}

DRIVER = """
import json, sys
from infoflow.experiments.sweep import plan_runs, run_sweep
out, temp, data = sys.argv[1], sys.argv[2], sys.argv[3]
specs = plan_runs("smoke", out, data=data, models=[1, 2], sets=json.loads(sys.argv[4]))
res = run_sweep(specs, num_cpus=1, temp_dir=temp, progress=False)
print("RESULT " + json.dumps({k: [v.status, v.resumed_from, v.error] for k, v in res.results.items()}), flush=True)
"""


def _snapshot(path: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(path)): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in sorted(path.rglob("*")) if p.is_file()}


def _lock_pid(run: Path) -> int | None:
    try:
        text = (run / ".lock").read_text().split()
        return int(text[1]) if len(text) > 1 and text[0] == "pid" else None
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except OSError:
        return False


def test_killed_sweep_resumes_partial_and_keeps_finished(tmp_path):
    out = tmp_path / "sweep"
    temp = tempfile.mkdtemp(prefix="ifr-t", dir="/tmp")  # short: Ray's socket paths must stay < 108 chars
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = [sys.executable, str(driver), str(out), temp, str(DATA), json.dumps(SETS)]
    r1, r2 = out / "model1_seed0", out / "model2_seed0"
    workers: set[int] = set()
    proc = subprocess.Popen(args, start_new_session=True, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 240:  # one run finished, the next one partway
            if (RunDir(r1).config_path.exists() and RunDir(r1).is_finished()
                    and (r2 / "checkpoints" / "last.pt").exists() and last_epoch(r2) >= 2):
                break
            assert proc.poll() is None, proc.stdout.read().decode()
            time.sleep(0.1)
        else:
            pytest.fail("the sweep did not get one run finished and one partway within 240 s")
        for r in (r1, r2):
            pid = _lock_pid(r)
            if pid:
                workers.add(pid)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        # the worker training model 2 ends with its raylet (exit_with_parent), it does not train on
        pid2 = _lock_pid(r2)
        t1 = time.monotonic()
        while pid2 and _alive(pid2) and time.monotonic() - t1 < 20:
            time.sleep(0.2)
        assert not (pid2 and _alive(pid2)), "the Ray worker of the killed sweep is still training"
        assert not ray_processes(temp), "Ray processes of the killed sweep are left"

        finished = _snapshot(r1)
        state, last = run_state(plan_runs("smoke", out, data=str(DATA), models=[2], sets=SETS)[0])
        assert state == "partial" and 1 <= last < 30
        before = RunDir(r2).read_metrics()
        import torch

        ckpt = int(torch.load(r2 / "checkpoints" / "last.pt", weights_only=True)["epoch"])

        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=400)
        assert done.returncode == 0, done.stdout + done.stderr
        result = json.loads(done.stdout.split("RESULT ", 1)[1])
        assert result["model1_seed0"][0] == "skipped"
        assert result["model2_seed0"][0] == "finished" and result["model2_seed0"][1] == last

        assert _snapshot(r1) == finished  # nothing of the finished run was touched
        after = RunDir(r2).read_metrics()
        assert list(after["epoch"]) == list(range(1, 31))  # every epoch once
        # epochs up to the checkpoint were not trained again: their rows are the first session's
        kept = before[before["epoch"] <= ckpt].reset_index(drop=True)
        assert after[after["epoch"] <= ckpt].reset_index(drop=True).equals(kept)
        log = (r2 / "run.log").read_text()
        assert log.count("resumed from") == 1 and f"at epoch {ckpt}" in log
        assert RunDir(r2).is_finished()
        assert not ray_processes(temp)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for r in (r1, r2):
            pid = _lock_pid(r)
            if pid:
                workers.add(pid)
        # stray Ray processes of either session: by the temp dir in their command line, and the
        # task workers by the pid they wrote into the run's lock file (their title is "ray::...")
        strays = ray_processes(temp)
        for pid in workers:
            try:
                if "ray::" in Path(f"/proc/{pid}/cmdline").read_text():
                    strays.append(pid)
            except OSError:
                pass
        kill_processes(strays)
        shutil.rmtree(temp, ignore_errors=True)
