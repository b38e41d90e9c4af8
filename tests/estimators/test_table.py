"""The tidy MI table: columns, dtypes, row order, agreement with the estimators, ceiling flags."""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
import pytest

from infoflow.errors import InfoflowError
from infoflow.estimators import (
    COLUMNS,
    MITable,
    bin_codes,
    bin_setting,
    binning_mi,
    entropy_bits,
    estimate_layers,
    kde_mi,
    kde_setting,
    renyi_mi,
    renyi_setting,
)

N = 12


def sqdist(x):
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    return ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, 5))
    acts = [
        np.repeat(np.arange(N)[:, None] * 1e3, 3, axis=1),  # layer 0: far apart -> ceilings
        rng.normal(size=(N, 4)) * 0.5,  # layer 1: generic
        np.zeros((N, 2)),  # layer 2: constant
    ]
    dists = np.stack([sqdist(a) for a in acts]).astype(np.float32)
    codes = {b: np.stack([bin_codes(a, bin_size=b) for a in acts]) for b in (0.5, 0.1)}
    labelings = {"kmeans": np.arange(N) % 3, "coarse": (np.arange(N) < 3).astype(int)}
    kw = dict(
        names=["l0", "l1", "l2"],
        dims=[3, 4, 2],
        epoch=7,
        labelings=labelings,
        kernels=("fixed:0.2", "fixed:1.0"),
        bin_codes=codes,
        dist_x=sqdist(x).astype(np.float32),
    )
    return dists, kw


def test_columns_dtypes_and_row_count(setup):
    dists, kw = setup
    f = estimate_layers(dists, **kw)
    assert tuple(f.columns) == COLUMNS
    for c in ("epoch", "layer", "n", "d"):
        assert f[c].dtype == np.int64, c
    for c in ("value", "log2n", "h_y"):
        assert f[c].dtype == np.float64, c
    assert f["at_ceiling"].dtype == bool
    for c in ("name", "estimator", "setting", "labels", "quantity"):
        assert pd.api.types.is_string_dtype(f[c]), c
    # per layer: kde 2 bounds x 2 noise vars x (3 + 2 labelings x 2); bin 2 sizes x (2 + 2 x 2);
    # renyi 2 kernel vars x (2 + 2)
    per_layer = 2 * 2 * 7 + 2 * 6 + 2 * 4
    assert len(f) == 3 * per_layer
    assert set(f["estimator"]) == {"kde_upper", "kde_lower", "bin", "renyi"}
    assert set(f["quantity"]) == {"I_XM", "I_YM", "H_M", "H_M_given_X", "H_M_given_Y"}
    assert set(f["labels"]) == {"none", "kmeans", "coarse"}
    assert (f["epoch"] == 7).all() and list(f["layer"].unique()) == [0, 1, 2]
    assert (f["n"] == N).all() and (f["log2n"] == math.log2(N)).all()
    assert f.loc[f["labels"] == "none", "h_y"].isna().all()
    km = f[f["labels"] == "kmeans"]
    assert (km["h_y"] == entropy_bits(np.arange(N) % 3)).all()
    assert set(f["setting"]) == {
        "fixed:0.2", "fixed:1.0", "bin:0.1", "bin:0.5",
        "fixed:0.2,alpha:1.01", "fixed:1.0,alpha:1.01",
    }  # fmt: skip
    assert not f.duplicated(["layer", "estimator", "setting", "labels", "quantity"]).any()


def test_deterministic_order(setup):
    dists, kw = setup
    a = estimate_layers(dists, **kw)
    kw2 = dict(kw, labelings=dict(reversed(list(kw["labelings"].items()))), bin_codes=dict(reversed(list(kw["bin_codes"].items()))))
    b = estimate_layers(dists, **kw2)
    pd.testing.assert_frame_equal(a, b)
    first = a[a["layer"] == 0].head(7)
    assert list(first["quantity"]) == ["H_M", "H_M_given_X", "I_XM", "I_YM", "H_M_given_Y", "I_YM", "H_M_given_Y"]
    assert list(first["labels"]) == ["none", "none", "none", "coarse", "coarse", "kmeans", "kmeans"]
    est_order = list(dict.fromkeys(a.loc[a["layer"] == 1, "estimator"]))
    assert est_order == ["kde_upper", "kde_lower", "bin", "renyi"]


def value(f, **sel):
    m = np.ones(len(f), dtype=bool)
    for k, v in sel.items():
        m &= (f[k] == v).to_numpy()
    assert m.sum() == 1, sel
    return float(f.loc[m, "value"].iloc[0]), bool(f.loc[m, "at_ceiling"].iloc[0])


def test_values_equal_direct_calls(setup):
    dists, kw = setup
    f = estimate_layers(dists, **kw)
    y = kw["labelings"]["kmeans"]
    d1 = dists[1].astype(np.float64)
    for bound in ("upper", "lower"):
        r = kde_mi(d1, y, kernel_var=0.2, dim=4, bound=bound)
        est = "kde_" + bound
        assert value(f, layer=1, estimator=est, setting="fixed:0.2", quantity="I_XM")[0] == r.i_xm
        assert value(f, layer=1, estimator=est, setting="fixed:0.2", quantity="H_M")[0] == r.h_m
        assert value(f, layer=1, estimator=est, setting="fixed:0.2", labels="kmeans", quantity="I_YM")[0] == r.i_ym
        assert value(f, layer=1, estimator=est, setting="fixed:0.2", labels="kmeans", quantity="H_M_given_Y")[0] == r.h_m_given_y
    b = binning_mi(kw["bin_codes"][0.1][1], y)
    assert value(f, layer=1, estimator="bin", setting="bin:0.1", quantity="I_XM")[0] == b.i_xm
    assert value(f, layer=1, estimator="bin", setting="bin:0.1", labels="kmeans", quantity="I_YM")[0] == b.i_ym
    rr = renyi_mi(d1, dist_x=kw["dist_x"], labels=y, kernel_var=1.0, alpha=1.01)
    st = "fixed:1.0,alpha:1.01"
    assert value(f, layer=1, estimator="renyi", setting=st, quantity="I_XM")[0] == pytest.approx(rr.i_xm, abs=1e-12)
    assert value(f, layer=1, estimator="renyi", setting=st, quantity="H_M")[0] == pytest.approx(rr.h_m, abs=1e-12)
    assert value(f, layer=1, estimator="renyi", setting=st, labels="kmeans", quantity="I_YM")[0] == pytest.approx(rr.i_ym, abs=1e-12)
    # the stored float32 and its float64 copy give identical numbers (online == re-estimation)
    pd.testing.assert_frame_equal(f, estimate_layers(dists.astype(np.float64), **kw))


def test_ceiling_flags(setup):
    dists, kw = setup
    f = estimate_layers(dists, **kw)
    for est, st in (("kde_upper", "fixed:0.2"), ("kde_lower", "fixed:1.0"), ("renyi", "fixed:0.2,alpha:1.01")):
        v, ceil = value(f, layer=0, estimator=est, setting=st, quantity="I_XM")
        # KDE reaches log2 N exactly; Renyi reaches S(X) of the (not quite diagonal) input kernel
        assert v == pytest.approx(math.log2(N), abs=1e-9 if est != "renyi" else 0.01 * math.log2(N)) and ceil, est
        v, ceil = value(f, layer=0, estimator=est, setting=st, labels="coarse", quantity="I_YM")
        assert ceil, est
        v, ceil = value(f, layer=2, estimator=est, setting=st, quantity="I_XM")
        assert v == pytest.approx(0.0, abs=1e-9) and not ceil, est
        assert not value(f, layer=2, estimator=est, setting=st, labels="coarse", quantity="I_YM")[1]
    # binning: saturated layer 0 flags I_XM and H_M; the constant layer does not
    assert value(f, layer=0, estimator="bin", setting="bin:0.1", quantity="I_XM") == (math.log2(N), True)
    assert value(f, layer=0, estimator="bin", setting="bin:0.1", quantity="H_M")[1]
    assert value(f, layer=2, estimator="bin", setting="bin:0.1", quantity="I_XM") == (0.0, False)
    # entropies other than binning's H_M never carry the flag
    others = f[~f["quantity"].isin(["I_XM", "I_YM"]) & (f["estimator"] != "bin")]
    assert not others["at_ceiling"].any()


def test_estimator_subsets_and_missing_inputs(setup):
    dists, kw = setup
    f = estimate_layers(dists, **dict(kw, estimators=("kde_upper",)))
    assert set(f["estimator"]) == {"kde_upper"}
    f = estimate_layers(dists, **dict(kw, bin_codes=None, dist_x=None, estimators=("kde", "bin", "renyi")))
    assert "bin" not in set(f["estimator"])
    assert not ((f["estimator"] == "renyi") & (f["quantity"] == "I_XM")).any()
    assert ((f["estimator"] == "renyi") & (f["quantity"] == "I_YM")).any()
    # (renyi_kernel_vars, used by tests only, is gone: the Renyi kernel variances are the fixed kernels)
    f = estimate_layers(dists, **dict(kw, labelings={}, estimators=("renyi",), kernels=["fixed:3.0"], renyi_alpha=2))
    assert set(f["setting"]) == {"fixed:3.0,alpha:2.0"} and set(f["labels"]) == {"none"}
    f = estimate_layers(dists[1:], **dict(kw, names=["l1", "l2"], dims=[4, 2], layers=[5, 9], bin_codes=None))
    assert list(f["layer"].unique()) == [5, 9]
    with pytest.raises(InfoflowError):
        estimate_layers(dists, **dict(kw, estimators=("knn",)))
    with pytest.raises(InfoflowError):
        estimate_layers(dists, **dict(kw, names=["a"]))
    with pytest.raises(InfoflowError):
        estimate_layers(dists, **dict(kw, labelings={"none": np.zeros(N)}))
    with pytest.raises(InfoflowError):
        estimate_layers(dists, **dict(kw, bin_codes={0.1: np.zeros((2, N), dtype=np.int64)}))


def test_setting_strings():
    assert kde_setting("fixed:0.2") == "fixed:0.2"
    assert kde_setting("fixed:1") == "fixed:1.0"
    assert bin_setting(0.1) == "bin:0.1"
    assert renyi_setting("fixed:0.2", 1.01) == "fixed:0.2,alpha:1.01"
    assert kde_setting("fixed:1e-3") == "fixed:0.001"


def test_mitable_accumulates_truncates_and_round_trips(setup):
    dists, kw = setup
    small = dict(kw, estimators=("kde_upper", "bin"))
    t = MITable()
    assert len(t.frame()) == 0 and tuple(t.frame().columns) == COLUMNS
    p2 = t.add(dists, **dict(small, epoch=2))
    p1 = t.add(dists, **dict(small, epoch=1))
    f = t.frame()
    assert len(f) == len(p1) + len(p2) == len(t)
    assert list(f["epoch"].unique()) == [1, 2]
    # CSV round trip keeps every value bit for bit and the "none" labels
    back = pd.read_csv(io.StringIO(f.to_csv(index=False)))
    np.testing.assert_array_equal(back["value"].to_numpy(), f["value"].to_numpy())
    assert (back["labels"] == f["labels"]).all()
    t2 = MITable(back)
    pd.testing.assert_frame_equal(t2.frame(), f)
    t2.truncate(1)
    assert set(t2.frame()["epoch"]) == {1}
    with pytest.raises(InfoflowError):
        MITable(back.drop(columns=["h_y"]))
