"""The ``smoke`` reproduction on a subset of the real DSB 2018 zips through a real local Ray."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import matplotlib
import pandas as pd
import pytest

from infoflow.cli import main
from infoflow.experiments.reproduce import reproduce
from infoflow.experiments.sweep import plan_runs, ray_processes, run_sweep
from infoflow.runs import RunDir

matplotlib.use("Agg")
pytest.importorskip("ray")

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "dsb2018"
pytestmark = pytest.mark.skipif(not (DATA / "stage1_train.zip").exists(), reason=f"DSB 2018 zips not at {DATA}")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("rep") / "smoke"
    temp = tempfile.mkdtemp(prefix="ifr-s", dir="/tmp")
    lines: list[str] = []
    try:
        res = reproduce(str(DATA), "smoke", out, progress=False, per_run_reports=False, formats=("png",),
                        ray_temp_dir=temp, echo=lines.append)
        left = ray_processes(temp)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return res, out, lines, left


def test_smoke_reproduction_trains_all_models_and_writes_claims_figures_report(smoke):
    res, out, lines, left = smoke
    assert not left, f"Ray processes left behind: {left}"
    assert not res.sweep.failed, [r.error for r in res.sweep.failed]
    assert [s.key for s in res.specs] == [f"model{m}_seed0" for m in (1, 2, 3, 4)]
    for s in res.specs:
        run = RunDir(s.path)
        assert run.is_finished()
        assert not run.read_mi().empty  # MI tracked for every model
        assert (run.figures_dir / "uplots.png").exists()
    claims = pd.read_csv(out / "claims.csv", keep_default_na=False)
    assert {"1", "2", "3", "4", "4 Model 2", "4 Model 3", "4 Model 4", "4 outcome"} <= set(claims["claim"])
    assert set(claims["status"]) <= {"pass", "fail", "undecided"}
    assert (claims["detail"].str.len() > 20).all()
    md = (out / "claims.md").read_text()
    assert "Profile `smoke`" in md and "## Thresholds" in md
    assert (out / "model1_seed0" / "claims.csv").exists()  # where the report shows it
    assert (out / "figures" / "dice.png").exists() and (out / "figures" / "predictions.png").exists()
    html = (out / "report.html").read_text()
    assert "Claims" in html and "model4_seed0" in html or "Model 4" in html
    assert (out / "reproduce.json").exists()
    assert not res.problems, res.problems


def test_running_again_skips_every_finished_run(smoke):
    res, out, _, _ = smoke
    mtimes = {s.key: (Path(s.path) / "checkpoints" / "last.pt").stat().st_mtime_ns for s in res.specs}
    again = reproduce(str(DATA), "smoke", out, progress=False, figures=False, report=False, echo=lambda s: None)
    assert {r.status for r in again.sweep.results.values()} == {"skipped"}
    assert {s.key: (Path(s.path) / "checkpoints" / "last.pt").stat().st_mtime_ns for s in again.specs} == mtimes
    pd.testing.assert_frame_equal(again.claims, res.claims)


def test_other_settings_in_the_same_folder_are_refused(smoke):
    _, out, _, _ = smoke
    res = run_sweep(plan_runs("smoke", out, data=str(DATA), models=[1], sets={"train.epochs": 7}),
                    backend="serial", progress=False, echo=lambda s: None)
    (r,) = res.results.values()
    assert r.status == "failed" and "another configuration" in r.error and "train.epochs" in r.error


def test_claims_command_on_the_reproduction(smoke, capsys, tmp_path):
    _, out, _, _ = smoke
    assert main(["claims", str(out), "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "claim 4 Model 4" in text
    assert (tmp_path / "claims.md").exists()
    # the reproduction's profile thresholds (smoke: early_epochs 2, not the default 10)
    assert "claim thresholds of the reproduction" in text
    assert "`early_epochs` = 2" in (tmp_path / "claims.md").read_text()


def test_a_failing_run_is_reported_and_the_others_finish(tmp_path):
    # the same execute_run body as a Ray task; serial here to save a Ray start-up
    specs = plan_runs("smoke", tmp_path / "sw", data=str(DATA), models=[1, 2],
                      sets={"train.epochs": 2, "mi.enabled": False})
    specs[0].config["data"]["source"] = str(tmp_path / "no-such-data")
    res = run_sweep(specs, backend="serial", progress=False, echo=lambda s: None)
    bad, ok = res.results["model1_seed0"], res.results["model2_seed0"]
    assert ok.status == "finished" and RunDir(ok.path).is_finished()
    assert bad.status == "failed" and "no-such-data" in bad.error and "Traceback" in bad.traceback


def test_seeds_give_median_figures_and_claims(tmp_path):
    # serial (no Ray): the seed handling is the same whatever runs the tasks
    out = tmp_path / "seeds"
    res = reproduce(str(DATA), "smoke", out, seeds=2, models=[1, 2], backend="serial", progress=False,
                    report=False, per_run_reports=False, formats=("png",), sets={"train.epochs": 5},
                    echo=lambda s: None)
    assert [s.key for s in res.specs] == ["model1_seed0", "model2_seed0", "model1_seed1", "model2_seed1"]
    assert [RunDir(s.path).read_config()["train"]["seed"] for s in res.specs] == [0, 0, 1, 1]
    assert (res.claims["seeds"] == 2).all()
    assert res.claims.set_index("claim").loc["4 Model 2", "detail"].count("per seed") <= 1
    for stem in ("dice", "model1_information_planes", "model1_uplots", "model1_mi_vs_epoch"):
        assert (out / "figures" / f"{stem}.png").exists(), stem
    assert not res.problems, res.problems


def test_cli_reproduce_serial_without_report(tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["reproduce", "--data", str(DATA), "--profile", "smoke", "--out", str(out), "--models", "1,4",
                 "--serial", "--no-report", "--quiet", "--set", "train.epochs=3", "--threshold", "min_logged=2"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "claim 4 Model 4" in text and "2 of 2 runs finished, 0 failed" in text
    assert (out / "claims.md").exists() and not (out / "report.html").exists()
    assert RunDir(out / "model4_seed0").is_finished()
