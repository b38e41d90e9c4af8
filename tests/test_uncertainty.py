"""Subsampling intervals, trend with N and the permutation baseline of I(Y;M)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from infoflow.config import RunConfig
from infoflow.estimators import bin_codes, coarsen_labels, estimate_layers
from infoflow.runs import Matrices, RunDir
from infoflow.tracking import ProbeSet
from infoflow.analysis.uncertainty import (
    SUBSAMPLE_COLUMNS,
    UNCERTAINTY_COLUMNS,
    estimate_uncertainty,
    layer_uncertainty,
    uncertainty_table,
    uncertainty_tables,
)


def sqdist(x):
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    g = x @ x.T
    sq = np.diag(g)
    return np.maximum(sq[:, None] + sq[None, :] - 2 * g, 0.0)


def make_fake_run(path, *, n=32, epochs=(1, 2), seed=0) -> RunDir:
    """A run directory with a probe set (coarse labels of 8x8 masks) and stored matrices, no training."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, 1, 8, 8), np.float32)
    for i in range(n):  # 4 classes: which quadrant holds a nucleus
        q = i % 4
        masks[i, 0, (q // 2) * 4 + 1, (q % 2) * 4 + 1] = 1.0
    cfg = RunConfig().override(**{"mi.labels": ["coarse"], "mi.coarse_grid": 2, "mi.coarse_threshold": 0.5,
                                  "data.size": 8, "name": "fake"})
    run = RunDir.create(path, cfg.to_dict())
    y = coarsen_labels(masks, grid=2, threshold=0.5)
    ProbeSet.build(np.zeros((n, 3, 8, 8), np.float32), masks, [f"s{i}" for i in range(n)], cfg.mi,
                   labelings={"coarse": y}).save(run)
    onehot = np.eye(4)[np.unique(y, return_inverse=True)[1]]
    x_in = rng.normal(size=(n, 12))
    for e in epochs:
        acts = [rng.normal(size=(n, 5)) * 0.3 + 3.0 * e * onehot @ rng.normal(size=(4, 5)),
                rng.normal(size=(n, 7)) * e]
        dist = np.stack([sqdist(a) for a in acts]).astype(np.float32)
        codes = {0.1: np.stack([bin_codes(a, bin_size=0.1) for a in acts])}
        run.save_matrices(Matrices(epoch=e, names=["l0", "l1"], dims=np.array([5, 7]), dist=dist, codes=codes,
                                   dist_input=sqdist(x_in).astype(np.float32)))
    return run


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory):
    return make_fake_run(tmp_path_factory.mktemp("unc") / "run")


def test_full_size_subsample_equals_full_estimate(fake_run):
    m = fake_run.load_matrices(2)
    labs = fake_run.load_probe().labelings
    widths = ("fixed:0.2", "rel:0.1", "silverman")
    summary, subs = estimate_uncertainty(m, labs, kernels=widths, estimators=("kde", "renyi", "bin"),
                                         repeats=5, permutations=5, seed=3)
    assert list(summary.columns) == list(UNCERTAINTY_COLUMNS) and list(subs.columns) == list(SUBSAMPLE_COLUMNS)
    table = estimate_layers(m.dist, names=m.names, dims=m.dims, epoch=2, labelings=labs,
                            bin_codes=m.codes, dist_x=m.dist_input, kernels=widths)
    keys = ["epoch", "layer", "estimator", "setting", "labels", "quantity"]
    both = summary.merge(table, on=keys, suffixes=("", "_table"))
    assert len(both) == len(summary) == 2 * (2 * 3 + 3 + 1) * 2  # layers x settings x (I_XM, I_YM)
    np.testing.assert_allclose(both["value"], both["value_table"], rtol=0, atol=1e-12)
    full = subs[subs["m"] == subs["n"]].merge(summary, on=keys)
    assert (full["repeats_x"] == 1).all()
    np.testing.assert_array_equal(full["mean"], full["value"])  # m = N: the probe set itself
    assert (summary["ci_lo"] <= summary["value"] + 1e-15).all() and (summary["value"] <= summary["ci_hi"] + 1e-15).all()
    assert (summary["ci_hi"] <= summary["ceiling"] + 1e-12).all() and (summary["ci_lo"] >= 0).all()
    assert summary.loc[summary.quantity == "I_XM", "baseline_mean"].isna().all()
    # the subset sizes: N/4, N/2, 3N/4, N
    assert sorted(subs["m"].unique()) == [8, 16, 24, 32] and (summary["m_ci"] == 16).all()
    # deterministic for a seed
    again, _ = estimate_uncertainty(m, labs, kernels=widths, estimators=("kde", "renyi", "bin"), repeats=5,
                                    permutations=5, seed=3)
    pd.testing.assert_frame_equal(summary, again)


def test_permutation_baseline_of_separated_classes():
    rng = np.random.default_rng(0)
    n, k = 120, 4
    y = np.arange(n) % k
    centres = rng.normal(size=(k, 10)) * 100.0  # far apart; within-class spread ~1
    x = centres[y] + rng.normal(size=(n, 10))
    d = sqdist(x)
    u, s = layer_uncertainty(d, {"y": y}, dim=10, kernel="fixed:50", repeats=10, permutations=30, seed=1)
    row = u[u.quantity == "I_YM"].iloc[0]
    assert row["value"] == pytest.approx(2.0, abs=0.02)  # H(Y) = 2 bits
    assert row["h_y"] == pytest.approx(2.0)
    assert row["baseline_mean"] < 0.1 and row["baseline_hi"] < 0.15
    assert row["p_value"] == pytest.approx(1 / 31)
    # a narrow kernel isolates every sample: estimate and baseline both sit at H(Y)
    u2, _ = layer_uncertainty(d, {"y": y}, dim=10, kernel="fixed:1e-4", repeats=4, permutations=10, seed=1)
    r2 = u2[u2.quantity == "I_YM"].iloc[0]
    assert r2["value"] == pytest.approx(2.0, abs=1e-9) and r2["baseline_mean"] == pytest.approx(2.0, abs=1e-9)
    assert r2["p_value"] == 1.0
    # ... and I(X;M) grows by 1 bit per doubling of N (trend), at its ceiling log2 N
    x_row = u2[u2.quantity == "I_XM"].iloc[0]
    assert x_row["trend"] == pytest.approx(1.0, abs=1e-9) and x_row["value"] == pytest.approx(np.log2(n))


def test_uncertainty_table_of_a_run_and_cli(fake_run, tmp_path):
    t = uncertainty_table(fake_run, kernels="fixed:0.2,rel:0.5", epochs=[1], repeats=4, permutations=4)
    assert set(t["setting"]) == {"fixed:0.2", "rel:0.5"} and set(t["epoch"]) == {1}
    assert set(t["quantity"]) == {"I_XM", "I_YM"} and set(t["labels"]) == {"none", "coarse"}
    # the stored table's fixed-width values are reproduced
    u, s = uncertainty_tables(fake_run, kernels="fixed:0.2", epochs=[1, 2], repeats=4, permutations=0, layers=[1])
    assert set(u["layer"]) == {1} and u["baseline_mean"].isna().all()

    from infoflow.cli import main

    out = tmp_path / "est.csv"
    rc = main(["estimate", str(fake_run.path), "--kernel", "rel:0.1,fixed:0.2", "--uncertainty", "--repeats", "4",
               "--permutations", "4", "--unc-layers", "0", "--epochs", "2", "--out", str(out), "-q"])
    assert rc == 0
    mi = pd.read_csv(out)
    assert {"rel:0.1", "fixed:0.2"} <= set(mi["setting"])
    unc = pd.read_csv(tmp_path / "est.uncertainty.csv")
    assert set(unc["layer"]) == {0} and set(unc["setting"]) == {"rel:0.1", "fixed:0.2"}
    assert (tmp_path / "est.subsamples.csv").exists() and (tmp_path / "est.widths.csv").exists()
    assert main(["estimate", str(fake_run.path), "--kernel", "rel", "--out", str(out), "-q"]) == 2
