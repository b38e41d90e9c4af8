"""Bad settings and misuse of `infoflow train` (issue 16): one line naming what is wrong, exit
status 2, nothing written, earlier results left as they were."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from infoflow.cli import main
from infoflow.config import RunConfig

TINY = ["--data", "synthetic", "--size", "32", "--width", "2", "--epochs", "2", "--batch", "8",
        "--set", "data.n_synthetic=24", "--set", "mi.kmeans_k=4", "--set", 'mi.estimators=["kde"]', "--quiet"]

REFUSED = [  # (extra arguments, what the error line says)
    (["--set", "train.epochs=abc"], "train.epochs must be an integer, got 'abc'"),
    (["--set", "train.batch_size=1.5"], "train.batch_size must be an integer, got 1.5"),
    (["--lr", "0"], "train.lr must be a positive finite number"),
    (["--lr", "nan"], "train.lr must be a positive finite number"),
    (["--optimizer", "rmsprop"], "train.optimizer must be one of sgd, adam"),
    (["--probe", "val"], "mi.probe must be one of train, test, all"),
    (["--kernel", "fixed:nan"], "mi.kernels: kernel 'fixed:nan': the number must be positive and finite"),
    (["--kernel", "fixed:0.2,x"], "mi.kernels: malformed kernel 'x'"),
    (["--kernel", "rel=0.1"], "mi.kernels: malformed kernel 'rel=0.1'"),
    (["--set", "mi.kmeans_k=500"], "mi.kmeans_k = 500 must be between 1 and the number of masks"),
    (["--set", "mi.memory_budget_gb=0"], "mi.memory_budget_gb must be a positive finite number"),
    (["--set", "mi.batch_size=0"], "mi.batch_size must be at least 1"),
    (["--set", 'mi.estimators=["kde","mine"]'], "mi.estimators must be one of"),
    (["--size", "40"], "data.size must be a multiple of 16"),
    (["--set", "model.init=xavier"], "model.init must be one of keras, torch"),
]


@pytest.mark.parametrize("extra, message", REFUSED, ids=[" ".join(e) for e, _ in REFUSED])
def test_refused_before_anything_is_written(tmp_path: Path, capsys, extra, message) -> None:
    out = tmp_path / "run"
    assert main(["train", *TINY, *extra, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()  # no config.json left to block --out or --resume


@pytest.fixture(scope="module")
def done(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("resume") / "run"
    assert main(["train", *TINY, "--out", str(out)]) == 0
    return out


def test_resume_refuses_changed_settings_and_extends_epochs(done: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "copy"
    import shutil

    shutil.copytree(done, run)
    before = (run / "config.json").read_text()
    assert main(["train", "--resume", str(run), "--epochs", "3", "--lr", "0.5", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--lr" in err and "only --epochs may be given" in err
    assert (run / "config.json").read_text() == before
    assert main(["train", "--resume", str(run), "--epochs", "3", "--quiet"]) == 0  # extends the finished run
    m = pd.read_csv(run / "metrics.csv")
    assert m["epoch"].tolist() == [1, 2, 3]
    assert json.loads((run / "config.json").read_text())["train"]["epochs"] == 3
    assert main(["train", "--resume", str(run), "--epochs", "2", "--quiet"]) == 2  # cannot undo trained epochs
    assert "has trained 3 epochs already" in capsys.readouterr().err


def test_out_naming_a_file_and_an_existing_run(done: Path, tmp_path: Path, capsys) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["train", *TINY, "--out", str(f)]) == 2
    assert "is a file, not a run directory" in capsys.readouterr().err
    assert main(["train", *TINY, "--out", str(done)]) == 2
    assert "pass --resume to continue that run" in capsys.readouterr().err


def test_an_option_not_given_never_overrides_the_config_file(tmp_path: Path, capsys) -> None:
    """`train --config X` used to train on synthetic data: --data defaulted to 'synthetic'."""
    cfg = RunConfig().override(**{"data.source": str(tmp_path / "no-such-data"), "data.size": 32})
    path = tmp_path / "cfg.json"
    path.write_text(cfg.to_json())
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "r"), "--quiet"]) == 2
    assert "no-such-data" in capsys.readouterr().err  # the config's source was used, not 'synthetic'
    assert not (tmp_path / "r").exists()


# -- one writer per run ---------------------------------------------------------------------------

HOLD = r"""
import sys, time
from infoflow.runs import run_lock
with run_lock(sys.argv[1], what="trains"):
    print("locked", flush=True)
    time.sleep(60)
"""


@pytest.fixture()
def held(done: Path):
    """Another process holding the run's lock (as `infoflow train --resume` would)."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(done)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    yield proc
    proc.kill()
    proc.wait()


WRITERS = [
    ["train", "--resume", "{run}", "--quiet"],
    ["estimate", "{run}", "--kernel", "fixed:1.0", "--quiet"],
    ["plot", "{run}", "--only", "dice"],
    ["report", "{run}"],
]


@pytest.mark.parametrize("command", WRITERS, ids=[c[0] for c in WRITERS])
def test_a_second_writer_is_refused_naming_the_holder(done: Path, held, capsys, command) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in done.rglob("*") if p.is_file() and p.name != ".lock"}
    assert main([c.format(run=done) for c in command]) == 2
    err = capsys.readouterr().err
    assert f"pid {held.pid}" in err and "trains it since" in err and "is in use" in err, err
    assert len(err.strip().splitlines()) == 1
    after = {p.name: p.stat().st_mtime_ns for p in done.rglob("*") if p.is_file() and p.name != ".lock"}
    assert after == before  # nothing written


def test_tracker_api_holds_the_lock_until_closed(tmp_path: Path) -> None:
    import subprocess
    import sys

    import numpy as np

    from infoflow.api import Tracker
    from infoflow.config import MIConfig
    from infoflow.models import build_model
    from infoflow.runs import run_lock

    rng = np.random.default_rng(0)
    images = rng.random((6, 3, 32, 32), dtype=np.float32)
    masks = (rng.random((6, 1, 32, 32)) > 0.5).astype(np.float32)
    mi = MIConfig(labels=("coarse",), estimators=("kde",))
    model = build_model(model=1, width=2)
    with Tracker(model, images, masks, tmp_path / "t", mi=mi) as tracker:
        tracker.log_epoch(model, 1)
        probe = "import sys\nfrom infoflow.runs import run_lock\nwith run_lock(sys.argv[1]): pass"
        out = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "t")], capture_output=True, text=True)
        assert out.returncode != 0 and "RunLocked" in out.stderr and "tracks it since" in out.stderr
    with run_lock(tmp_path / "t"):  # released by close()
        pass
