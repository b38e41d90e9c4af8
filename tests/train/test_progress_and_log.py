"""Progress without a terminal is plain lines; run.log says each epoch's loss, Dice and seconds and
what each logged epoch wrote; `plot` and `report` show progress."""

from __future__ import annotations

import io
import re

from infoflow.cli import main
from infoflow.config import RunConfig
from infoflow.progress import progress_bar, track


def test_plain_lines_without_a_terminal():
    out = io.StringIO()  # not a terminal
    with progress_bar("demo", 3, stream=out) as step:
        for k in range(3):
            step(status=f"loss {k}")
    lines = out.getvalue().splitlines()
    assert [re.sub(r" \(\d+\.\d s\)$", "", ln) for ln in lines] == ["demo: 1/3 loss 0", "demo: 2/3 loss 1",
                                                                      "demo: 3/3 loss 2"]
    out = io.StringIO()
    assert list(track(range(1000), "reading", stream=out)) == list(range(1000))
    lines = out.getvalue().splitlines()  # a long task: a line per tenth (a slow machine may add a few)
    assert 10 <= len(lines) <= 20 and lines[-1].startswith("reading: 1000/1000")
    out = io.StringIO()
    with progress_bar("quiet", 3, enabled=False, stream=out) as step:
        step()
    assert out.getvalue() == ""


def test_training_progress_and_run_log(tmp_path, capsys):
    from infoflow.train import train

    cfg = RunConfig().override(**{"data.source": "synthetic", "data.size": 32, "data.n_synthetic": 24,
                                  "model.width": 4, "train.epochs": 3, "train.schedule": "log", "train.log_points": 2,
                                  "mi.kmeans_k": 4, "train.num_threads": 1}, name="plain")
    run = train(cfg, tmp_path / "run", progress=True)
    err = capsys.readouterr().err
    assert re.search(r"^plain: 1/3 loss \d\.\d{4} dice \d\.\d{3} val \d\.\d{3} \(", err, re.M)
    assert re.search(r"^plain: 3/3 ", err, re.M)
    log = (run.path / "run.log").read_text()
    for e in (1, 2, 3):  # every epoch: loss, Dice, seconds
        assert re.search(rf"epoch {e}: loss \d\.\d{{4}}, Dice \d\.\d{{3}} \(validation \d\.\d{{3}}\) in \d+\.\d s", log)
    for e in (1, 3):  # each logged epoch: what was written where
        assert re.search(rf"epoch {e} logged in \d+\.\d s: .*matrices", log)
    assert not re.search(r"epoch 2 logged", log)
    assert main(["plot", str(run.path), "--only", "uplots,dice", "--format", "png", "--dpi", "40"]) == 0
    err = capsys.readouterr().err
    assert "figures: 1/2 uplots" in err and "figures: 2/2 dice" in err
    assert main(["report", str(run.path), "--only", "dice"]) == 0
    assert "figures: 1/1 dice" in capsys.readouterr().err
