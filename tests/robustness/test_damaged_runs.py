"""Damaged run folders (issue 16): every command that reads a damaged file says so in one line
naming it (exit status 2, no traceback), writes nothing, and leaves the other results loadable."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from _common import TINY, error_lines

from infoflow.cli import main


@pytest.fixture(scope="module")
def done(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("damage") / "run"
    assert main(["train", *TINY, "--out", str(out)]) == 0
    return out


def _bytes(rel: str, data: bytes):
    return lambda run: (run / rel).write_bytes(data)


def _cut(rel: str, fraction: float):
    def damage(run: Path) -> None:
        raw = (run / rel).read_bytes()
        (run / rel).write_bytes(raw[: int(len(raw) * fraction)])
    return damage


def _edit(rel: str, old: str, new: str):
    def damage(run: Path) -> None:
        p = run / rel
        p.write_text(p.read_text().replace(old, new, 1))
    return damage


def _pickled(rel: str):
    def damage(run: Path) -> None:
        with open(run / rel, "wb") as fh:
            np.savez(fh, dist=np.array([{"a": 1}], dtype=object), epoch=np.int64(1), names=np.array(["x"]),
                     dims=np.array([1]), bin_sizes=np.array([]))
    return damage


def _csv_first_value(rel: str, column: str, value: str):
    def damage(run: Path) -> None:
        import pandas as pd

        f = pd.read_csv(run / rel)
        f[column] = f[column].astype(object)
        f.loc[3, column] = value
        f.to_csv(run / rel, index=False)
    return damage


DAMAGES = {  # name -> (damage, the file the error names)
    "mi.csv random bytes": (_bytes("mi.csv", bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8))),
                            "mi.csv"),
    "mi.csv wrong columns": (_bytes("mi.csv", b"a,b\n1,2\n"), "mi.csv"),
    "mi.csv text value": (_csv_first_value("mi.csv", "value", "abc"), "mi.csv"),
    "mi.csv cut short": (_cut("mi.csv", 0.7), "mi.csv"),
    "metrics.csv garbage": (_bytes("metrics.csv", b"\x00\xff garbage\n\x01"), "metrics.csv"),
    "matrix truncated": (_cut("matrices/e000001.npz", 0.5), "e000001.npz"),
    "matrix pickled": (_pickled("matrices/e000002.npz"), "e000002.npz"),
    "probe.npz truncated": (_cut("probe.npz", 0.5), "probe.npz"),
    "config epochs ten": (_edit("config.json", '"epochs": 2', '"epochs": "ten"'), "config.json"),
}

COMMANDS = {  # name -> arguments (the run's path is {run})
    "plot": ["plot", "{run}", "--only", "dice,uplots,classes_kmeans", "--format", "png"],
    "report": ["report", "{run}"],
    "estimate": ["estimate", "{run}", "--kernel", "fixed:1.0", "--quiet"],
    "resume": ["train", "--resume", "{run}", "--epochs", "3", "--quiet"],
}

# What each command reads: a damage to a file it never reads lets it succeed.
READS = {
    "plot": {"mi.csv", "metrics.csv", "probe.npz", "config.json"},
    "report": {"mi.csv", "metrics.csv", "probe.npz", "config.json"},
    "estimate": {"e000001.npz", "e000002.npz", "probe.npz", "config.json"},
    "resume": {"mi.csv", "metrics.csv", "probe.npz", "config.json"},
}


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("damage", list(DAMAGES))
def test_damaged_file_is_named_in_one_line_and_nothing_is_written(done, tmp_path, capsys, damage, command):
    run = tmp_path / "run"
    shutil.copytree(done, run)
    hurt, name = DAMAGES[damage]
    hurt(run)
    before = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != ".lock"}
    code = main([a.format(run=run) for a in COMMANDS[command]])
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    # progress lines ("figures: 2/9 uplots", "re-estimating: 1/2") come before; the error is one line
    err = "\n".join(error_lines(err))
    if name in READS[command]:
        assert code == 2, (code, err)
        assert name in err and len(err.strip().splitlines()) == 1, err
        after = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != ".lock"}
        assert after.keys() == before.keys() - set() and all(after[k] == before[k] for k in before
                                                             if k.name != "run.log"), "something was written"
    else:
        assert code == 0, (code, err)


def test_stray_epoch_files_are_not_ours_and_are_ignored(done, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(done, run)
    (run / "matrices" / "eXYZ.npz").write_bytes(b"not ours")
    (run / "matrices" / "e000001.npz.bak").write_bytes(b"not ours either")
    assert main(["estimate", str(run), "--quiet"]) == 0
    assert main(["plot", str(run), "--only", "dice", "--format", "png"]) == 0


def test_litter_of_killed_writes_is_removed_on_resume(done, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(done, run)
    litter = [run / ".mi.csv.abc123.tmp", run / "matrices" / ".e000003.npz.x.tmp",
              run / "checkpoints" / ".last.pt.q.tmp"]
    for p in litter:
        p.write_bytes(b"half of a write")
    keep = run / "notes.tmp"  # not the shape of our temporary files
    keep.write_text("mine")
    assert main(["train", "--resume", str(run), "--epochs", "3", "--quiet"]) == 0
    assert not any(p.exists() for p in litter) and keep.exists()
    assert "removed 3 temporary file(s)" in (run / "run.log").read_text()
