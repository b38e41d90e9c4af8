"""`infoflow estimate` recomputes the stored table bit for bit from the stored matrices."""

import numpy as np
import pandas as pd
import pytest

from infoflow.cli import main
from infoflow.config import RunConfig
from infoflow.errors import RunError
from infoflow.models import PROBE_LAYERS
from infoflow.runs import RunDir
from infoflow.tracking import reestimate
from infoflow.train import train

TINY = {"name": "tiny", "data.source": "synthetic", "data.size": 32, "data.n_synthetic": 48, "model.width": 4,
        "train.epochs": 3, "train.batch_size": 8, "train.optimizer": "adam", "mi.kmeans_k": 4,
        "mi.kernels": ("fixed:0.2", "fixed:1.0"), "mi.bin_size": (0.1, 0.2)}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return train(RunConfig().override(**TINY), tmp_path_factory.mktemp("est") / "run", progress=False)


def test_training_records_all_23_layers_at_logged_epochs(run):
    mi = run.read_mi()
    assert sorted(mi["epoch"].unique()) == [1, 2, 3] == run.matrix_epochs()
    assert list(mi.drop_duplicates("layer")["name"]) == list(PROBE_LAYERS)
    assert set(mi["estimator"]) == {"kde_upper", "kde_lower", "bin", "renyi"}
    assert set(mi["labels"]) == {"none", "kmeans", "coarse"}
    m = run.load_matrices(1)
    assert m.dist.shape == (23, 43, 43) and m.dist.dtype == np.float32
    assert np.all(m.dist == m.dist.transpose(0, 2, 1)) and np.all(np.diagonal(m.dist, axis1=1, axis2=2) == 0)


def test_reestimate_with_the_runs_settings_is_bit_for_bit(run):
    cfg = RunConfig.from_dict(run.read_config())
    again = reestimate(run, cfg.mi)
    pd.testing.assert_frame_equal(again, run.read_mi(), check_exact=True, check_dtype=False)


def test_cli_estimate_writes_the_same_table(run, tmp_path):
    out = tmp_path / "same.csv"
    assert main(["estimate", str(run.path), "--out", str(out), "--quiet"]) == 0
    assert out.read_text() == (run.path / "mi.csv").read_text()


def test_cli_noise_variance_sweep_is_one_call(run, tmp_path):
    out = tmp_path / "sweep.csv"
    assert main(["estimate", str(run.path), "--kernel", "fixed:0.01,fixed:1,fixed:100", "--labels", "kmeans", "--k", "3",
                 "--out", str(out), "--quiet"]) == 0
    table = pd.read_csv(out)
    kde = table[table["estimator"] == "kde_upper"]
    assert set(kde["setting"]) == {"fixed:0.01", "fixed:1.0", "fixed:100.0"}
    assert set(table["labels"]) == {"none", "kmeans"}
    # a wider kernel can only blur the samples together: I(X;M) falls as the noise variance grows
    ixm = kde[kde["quantity"] == "I_XM"].pivot_table(index=["epoch", "layer"], columns="setting", values="value")
    assert (ixm["fixed:0.01"] >= ixm["fixed:1.0"] - 1e-9).all()
    assert (ixm["fixed:1.0"] >= ixm["fixed:100.0"] - 1e-9).all()


def test_probe_subset_and_errors(run, tmp_path, capsys):
    out = tmp_path / "sub.csv"
    assert main(["estimate", str(run.path), "--probe-subset", "20", "--out", str(out), "--quiet"]) == 0
    assert set(pd.read_csv(out)["n"]) == {20}
    assert main(["estimate", str(run.path), "--epochs", "7", "--quiet"]) == 2
    assert "epoch(s) [7]" in capsys.readouterr().err
    assert main(["estimate", str(tmp_path / "nope")]) == 2
    empty = RunDir.create(tmp_path / "empty", RunConfig().to_dict())
    with pytest.raises(RunError, match="has no probe.npz: the run recorded no MI"):
        reestimate(empty, RunConfig().mi)


def test_named_probe_subsets_of_one_run(tmp_path, capsys):
    """One run stores the matrices of all its probe samples (train + test, as the original saved
    all 670); the online table uses the training ones (mi.subset); `--probe-subset` re-estimates on
    any named subset from the same matrices, the stored classes restricted to it."""
    cfg = RunConfig().override(**{**TINY, "mi.probe": "all", "mi.subset": "train", "mi.kernels": ("fixed:0.2",),
                                  "mi.estimators": ("kde",), "train.epochs": 2})
    run = train(cfg, tmp_path / "all", progress=False)
    record = run.load_probe()
    n_train, n_test = int((record.split == "train").sum()), int((record.split == "test").sum())
    assert (n_train, n_test) == (43, 5) and len(record) == 48 and record.ids[:3] == sorted(record.ids[:43])[:3]
    assert run.load_matrices(1).dist.shape == (23, 48, 48)
    assert set(run.read_mi()["n"]) == {43}
    sub = {}
    for name, n in (("train", 43), ("test", 5), ("all", 48)):
        assert main(["estimate", str(run.path), "--probe-subset", name, "--quiet"]) == 0
        path = run.path / "estimates" / f"mi-fixed0.2_kmeans-coarse_k4_sub{name}.csv"
        sub[name] = pd.read_csv(path)
        assert set(sub[name]["n"]) == {n}
    cols = ["epoch", "layer", "estimator", "setting", "labels", "quantity", "value"]
    pd.testing.assert_frame_equal(sub["train"][cols], run.read_mi()[cols], check_exact=True, check_dtype=False)
    # the classes of the subset are the stored ones (K-means fitted on the training masks), restricted
    from infoflow.estimators import entropy_bits

    for name, idx in (("all", slice(None)), ("test", record.split == "test")):
        h = sub[name].loc[(sub[name]["quantity"] == "I_YM") & (sub[name]["labels"] == "kmeans"), "h_y"]
        assert np.allclose(h, entropy_bits(record.labelings["kmeans"][idx]), rtol=0, atol=1e-12)
    capsys.readouterr()
    bare = train(RunConfig().override(**{**TINY, "train.epochs": 1, "mi.estimators": ("kde",)}), tmp_path / "b",
                 progress=False)
    assert main(["estimate", str(bare.path), "--probe-subset", "test", "--quiet"]) == 2
    assert "probe subset 'test' holds 0 sample(s)" in capsys.readouterr().err


@pytest.mark.parametrize("kernel, floor, ceiling", [("fixed:1e9", True, False), ("fixed:1e-9", False, True),
                                                   ("rel:0.1", False, False)])
def test_floor_and_ceiling_warnings(run, tmp_path, capsys, kernel, floor, ceiling):
    out = tmp_path / "w.csv"
    assert main(["estimate", str(run.path), "--kernel", kernel, "--estimators", "kde", "--out", str(out), "-q"]) == 0
    err = capsys.readouterr().err
    setting = pd.read_csv(out)["setting"].iloc[0]
    assert (f"estimates of kde_upper ({setting}) sit at their floor (about 0 bits)" in err) == floor
    assert ("sit at their ceiling log2 N" in err) == ceiling
