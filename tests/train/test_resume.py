"""A run killed at any point (SIGKILL) resumes and ends with the metrics of an uninterrupted run."""

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

from infoflow.config import RunConfig
from infoflow.runs import RunDir
from infoflow.train import train

TINY = {"name": "tiny", "data.source": "synthetic", "data.size": 32, "data.n_synthetic": 48, "model.width": 4,
        "train.epochs": 8, "train.batch_size": 8, "train.schedule": "code", "train.optimizer": "adam",
        "train.num_threads": 1, "mi.kmeans_k": 4, "mi.probe_limit": 24}


def _cli(*args):
    return [sys.executable, "-m", "infoflow.cli", *args]


def _sets(overrides):
    out = []
    for k, v in overrides.items():
        if k == "name":
            out += ["--set", f"name={v}"]
        elif isinstance(v, str):
            out += ["--set", f'{k}="{v}"']
        else:
            out += ["--set", f"{k}={str(v).lower() if isinstance(v, bool) else v}"]
    return out


def _table(run: RunDir, name: str) -> pd.DataFrame:
    frame = pd.read_csv(run.path / name)
    return frame.drop(columns=[c for c in ("seconds",) if c in frame])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    return train(RunConfig().override(**TINY), out, progress=False)


def test_checkpoint_loads_with_weights_only(reference):
    state = torch.load(reference.checkpoint_path, weights_only=True, map_location="cpu")
    assert state["epoch"] == 8 and set(state) >= {"model", "optimizer", "config"}
    assert RunConfig.from_dict(__import__("json").loads(state["config"])).train.epochs == 8


@pytest.mark.parametrize("kill_after_rows", [1, 4])
def test_sigkill_then_resume_gives_identical_metrics(reference, tmp_path, kill_after_rows):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(_cli("train", "--quiet", "--out", str(out), *_sets(TINY)), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    metrics = out / "metrics.csv"
    deadline = time.time() + 120
    try:
        while time.time() < deadline:
            if metrics.exists() and len(metrics.read_text().strip().splitlines()) - 1 >= kill_after_rows:
                break
            if proc.poll() is not None:
                pytest.fail(f"training ended before it could be killed: {proc.stdout.read().decode()}")
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    killed_at = len(pd.read_csv(metrics))
    assert killed_at < TINY["train.epochs"], "the run was not interrupted"
    done = subprocess.run(_cli("train", "--quiet", "--resume", str(out)), env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    run = RunDir(out)
    for name in ("metrics.csv", "layer_stats.csv", "mi.csv"):
        pd.testing.assert_frame_equal(_table(run, name), _table(reference, name), check_exact=True, obj=name)
    assert run.matrix_epochs() == reference.matrix_epochs()
    log = (out / "run.log").read_text()
    assert "resumed from" in log or "no checkpoint yet" in log


def test_new_run_refuses_to_overwrite(reference):
    from infoflow.errors import RunError

    with pytest.raises(RunError, match="--resume"):
        train(RunConfig().override(**TINY), reference.path, progress=False)
