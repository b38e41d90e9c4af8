"""The remaining cases of issue 16 as tables: bad command-line values, malicious pickles in a run,
hostile strings in the report, and a sweep meeting a run that another process trains."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from _common import TINY, error_lines

from infoflow.cli import main


@pytest.fixture(scope="module")
def done(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cases") / "run"
    assert main(["train", *TINY, "--out", str(out)]) == 0
    return out


def _files(run: Path) -> dict[Path, bytes]:
    return {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != ".lock"}


# -- bad values on the command line: one line naming the option, nothing written ---------------------

BAD_OPTIONS = [  # (arguments, what the error line says)
    (["reproduce", "--data", "synthetic", "--out", "{tmp}/r", "--cpus", "-1"],
     "--cpus must be a positive whole number of CPUs (leave it out for all"),
    (["reproduce", "--data", "synthetic", "--out", "{tmp}/r", "--cpus", "0"], "--cpus must be a positive whole number"),
    (["plot", "{run}", "--dpi", "0"], "--dpi must be a positive number of dots per inch, got 0"),
    (["plot", "{run}", "--dpi", "-5"], "--dpi must be a positive number of dots per inch, got -5"),
]


@pytest.mark.parametrize("argv, message", BAD_OPTIONS, ids=[" ".join(a[-2:]) for a, _ in BAD_OPTIONS])
def test_bad_option_is_one_line_naming_it(done, tmp_path, capsys, argv, message):
    before = _files(done)
    assert main([a.format(run=done, tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "r").exists() and _files(done) == before


# -- malicious pickles in a run are never unpickled --------------------------------------------------


class _Evil:
    """Unpickling this creates the file ``path``: the proof that a pickle ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def _evil_npz(rel: str):
    def plant(run: Path, sentinel: Path) -> None:
        with open(run / rel, "wb") as fh:
            np.savez(fh, dist=np.array([_Evil(sentinel)], dtype=object), epoch=np.int64(1), names=np.array(["x"]),
                     dims=np.array([1]), bin_sizes=np.array([]), probs=np.array([_Evil(sentinel)], dtype=object))
    return plant


def _evil_checkpoint(run: Path, sentinel: Path) -> None:
    import torch

    torch.save({"epoch": 1, "model": _Evil(sentinel), "optimizer": {}, "config": "{}"}, run / "checkpoints" / "last.pt")


PICKLES = [  # (file holding the pickle, how it is planted, the command that reads it)
    ("checkpoints/last.pt", _evil_checkpoint, ["train", "--resume", "{run}", "--epochs", "3", "--quiet"]),
    ("matrices/e000001.npz", _evil_npz("matrices/e000001.npz"), ["estimate", "{run}", "--quiet"]),
    ("probe.npz", _evil_npz("probe.npz"), ["report", "{run}"]),
    ("predictions/e000002.npz", _evil_npz("predictions/e000002.npz"),
     ["plot", "{run}", "--only", "predictions", "--format", "png"]),
]


@pytest.mark.parametrize("rel, plant, argv", PICKLES, ids=[p[0] for p in PICKLES])
def test_malicious_pickles_never_run(done, tmp_path, capsys, rel, plant, argv):
    run = tmp_path / "run"
    shutil.copytree(done, run)
    sentinel = tmp_path / "pwned"
    plant(run, sentinel)
    code = main([a.format(run=run) for a in argv])
    err = capsys.readouterr().err
    assert not sentinel.exists(), "the pickle ran"
    assert code == 2 and Path(rel).name in err and "is damaged" in err, (code, err)
    assert "Traceback" not in err and len(error_lines(err)) == 1, err


# -- the report escapes hostile strings ----------------------------------------------------------------

HOSTILE = '<script>alert("x")</script>'


def _layer_name(run: Path) -> None:
    import pandas as pd

    for table in ("mi.csv", "layer_stats.csv"):
        f = pd.read_csv(run / table)
        f.loc[f["layer"] == 0, "name"] = HOSTILE
        f.to_csv(run / table, index=False)


def _data_source(run: Path) -> None:
    doc = json.loads((run / "config.json").read_text())
    doc["data"]["source"] = HOSTILE
    (run / "config.json").write_text(json.dumps(doc))


def _claims(run: Path) -> None:
    import pandas as pd

    pd.DataFrame([{"claim": HOSTILE, "holds": True, "detail": HOSTILE}]).to_csv(run / "claims.csv", index=False)


INJECTIONS = [  # (where the hostile string is, how it gets there, folder name of the run)
    ("run folder name", lambda run: None, 'r<img src=x onerror=alert(1)>'),
    ("layer name in the tables", _layer_name, "run"),
    ("data source in config.json", _data_source, "run"),
    ("claims table", _claims, "run"),
]


@pytest.fixture(scope="module")
def clean_report(done, tmp_path_factory) -> str:
    run = tmp_path_factory.mktemp("clean") / "run"
    shutil.copytree(done, run)
    assert main(["report", str(run)]) == 0
    return (run / "report.html").read_text()


@pytest.mark.parametrize("where, inject, folder", INJECTIONS, ids=[i[0] for i in INJECTIONS])
def test_report_escapes_hostile_strings(done, clean_report, tmp_path, where, inject, folder):
    run = tmp_path / folder
    shutil.copytree(done, run)
    inject(run)
    assert main(["report", str(run)]) == 0
    doc = (run / "report.html").read_text()
    raw = folder if folder != "run" else HOSTILE
    assert raw not in doc and doc.count("<script") == clean_report.count("<script"), where  # no markup of ours
    assert "&lt;script&gt;" in doc or "&lt;img src=x" in doc, where  # shown, escaped


# -- a sweep meeting a run trained by another process ------------------------------------------------

HOLD = r"""
import sys, time
from infoflow.runs import run_lock
with run_lock(sys.argv[1], what="trains"):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_sweep_reports_a_locked_run_as_being_trained_elsewhere(tmp_path):
    from infoflow.experiments.sweep import plan_runs, run_sweep

    sets = {"train.epochs": 1, "data.n_synthetic": 24, "data.mask_size": None, "mi.kmeans_k": 4}
    [spec] = plan_runs("smoke", tmp_path / "sweep", data="synthetic", models=[1], sets=sets)
    proc = subprocess.Popen([sys.executable, "-c", HOLD, spec.path], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        assert proc.stdout.readline().strip() == "locked"
        lines: list[str] = []
        res = run_sweep([spec], backend="serial", progress=False, echo=lines.append)
    finally:
        proc.kill()
        proc.wait()
    [r] = res.results.values()
    assert r.status == "busy" and not res.failed and res.busy == [r]
    assert f"pid {proc.pid}" in r.error and "being trained elsewhere" in lines[-1], (r, lines)
    assert not (Path(spec.path) / "config.json").exists()  # nothing written to a run held by another
