"""A full disk (issue 16): every write of a run that fails for lack of room gives one line naming
the file being written, exit status 2, no traceback; the temporary file is removed, earlier
results stay as they were and the run loads and resumes once there is room again.

The disk is not filled: each command runs in a subprocess whose file size limit
(``RLIMIT_FSIZE``) is small and which ignores SIGXFSZ, so a write past the limit fails with EFBIG
exactly as a full disk fails with ENOSPC."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from _common import TINY, error_lines

from infoflow.cli import main
from infoflow.runs import RunDir


LIMITED = r"""
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead of killing us
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
from infoflow.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.fixture(scope="module")
def done(tmp_path_factory) -> Path:
    """A finished tiny run with a figure and a report (file sizes: config.json ~1.4 kB, run.log
    ~0.7 kB, matrices ~47 kB each, mi.csv ~83 kB, checkpoints/last.pt ~140 kB)."""
    out = tmp_path_factory.mktemp("full") / "run"
    assert main(["train", *TINY, "--out", str(out)]) == 0
    assert main(["plot", str(out), "--only", "dice", "--format", "png"]) == 0
    assert main(["report", str(out)]) == 0
    return out


# (case, command ({run}: the run; {new}: a run not yet made), file size limit in bytes, the file the
#  error names (relative to the run), the command that completes the work once there is room)
CASES = [
    ("new run: config.json", ["train", *TINY, "--out", "{new}"], 1000, "config.json", ["train", *TINY, "--out", "{new}"]),
    ("new run: checkpoint", ["train", *TINY, "--out", "{new}"], 100_000, "checkpoints/last.pt",
     ["train", "--resume", "{new}", "--quiet"]),
    ("resume: run.log", ["train", "--resume", "{run}", "--epochs", "3", "--quiet"], 600, "run.log",
     ["train", "--resume", "{run}", "--epochs", "3", "--quiet"]),
    ("resume: mi.csv", ["train", "--resume", "{run}", "--epochs", "3", "--quiet"], 60_000, "mi.csv",
     ["train", "--resume", "{run}", "--epochs", "3", "--quiet"]),
    ("estimate: lock file", ["estimate", "{run}", "--kernel", "fixed:1.0", "--quiet"], 0, ".lock",
     ["estimate", "{run}", "--kernel", "fixed:1.0", "--quiet"]),
    ("estimate: table", ["estimate", "{run}", "--kernel", "fixed:1.0", "--quiet"], 20_000,
     "estimates/mi-fixed1_kmeans-coarse_k4.csv", ["estimate", "{run}", "--kernel", "fixed:1.0", "--quiet"]),
    ("plot: figure", ["plot", "{run}", "--only", "dice", "--format", "png"], 5000, "figures/dice.png",
     ["plot", "{run}", "--only", "dice", "--format", "png"]),
    ("report", ["report", "{run}"], 5000, "report.html", ["report", "{run}"]),
]


def _files(run: Path) -> dict[Path, bytes]:
    return {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()} if run.exists() else {}


SLOW = {"new run: config.json", "resume: run.log", "estimate: lock file"}  # each write path is also held by a fast case


@pytest.mark.parametrize("case, command, limit, named, then",
                         [pytest.param(*c, marks=pytest.mark.slow) if c[0] in SLOW else c for c in CASES],
                         ids=[c[0] for c in CASES])
def test_full_disk_names_the_file_and_keeps_earlier_results(done, tmp_path, case, command, limit, named, then):
    run = tmp_path / "run"
    shutil.copytree(done, run)
    new = tmp_path / "new"
    target = new if "{new}" in " ".join(command) else run
    argv = [a.format(run=run, new=new) for a in command]
    before = _files(target)
    out = subprocess.run([sys.executable, "-c", LIMITED, str(limit), *argv], capture_output=True, text=True,
                         timeout=300)
    err = out.stderr.strip()
    assert out.returncode == 2, (out.returncode, err)
    assert "Traceback" not in err and len(error_lines(err)) == 1, err
    assert f"cannot write {target / named}: File too large (EFBIG)" in err, err
    after = _files(target)
    assert not [p for p in after if p.name.endswith(".tmp")], "a temporary file was left"
    # the file being written keeps its earlier content (or stays absent)
    assert after.get(Path(named)) == before.get(Path(named)) or named in ("run.log", ".lock")
    if target == run:  # earlier results: every file the command had no reason to touch is as it was
        for rel in ("metrics.csv", "checkpoints/last.pt", "probe.npz", "figures/dice.png", "report.html"):
            if not command[0] == "train" or rel != "metrics.csv":
                assert after[Path(rel)] == before[Path(rel)], rel
    if (target / "config.json").exists():
        RunDir(target).check()  # every table, array and the config still load
    assert main([a.format(run=run, new=new) for a in then]) == 0  # and the work completes once there is room
    RunDir(target).check()
    if then[0] == "train":
        assert RunDir(target).is_finished()
