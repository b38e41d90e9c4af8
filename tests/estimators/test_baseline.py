"""The tidy table's at_floor and baseline columns (issue 13) and the estimator registry (issue 14)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from infoflow.errors import InfoflowError
from infoflow.estimators import (
    COLUMNS,
    REGISTRY,
    Labels,
    bin_codes,
    estimate_layers,
    kde_mi,
    label_permutations,
    normalize_table,
    prepare,
)
from infoflow.estimators.base import baseline_of


def sqdist(x):
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    return ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)


def rows(f, **sel):
    m = np.ones(len(f), dtype=bool)
    for k, v in sel.items():
        m &= (f[k] == v).to_numpy()
    return f[m]


def one(f, **sel):
    r = rows(f, **sel)
    assert len(r) == 1, sel
    return r.iloc[0]


def mi_plugin(a, b) -> float:
    """Plug-in I(A;B) in bits, by hand from the joint counts."""
    a, b = np.asarray(a), np.asarray(b)
    n = len(a)
    out = 0.0
    for x in np.unique(a):
        for y in np.unique(b):
            nxy = np.sum((a == x) & (b == y))
            if nxy:
                out += nxy / n * math.log2(nxy * n / (np.sum(a == x) * np.sum(b == y)))
    return out


def test_columns_order_and_dtypes():
    assert COLUMNS[:13] == ("epoch", "layer", "name", "estimator", "setting", "labels", "quantity", "value", "n",
                            "d", "log2n", "h_y", "at_ceiling")
    assert COLUMNS[13:] == ("at_floor", "baseline")
    d = sqdist(np.arange(6.0)[:, None])[None].astype(np.float32)
    f = estimate_layers(d, names=["l"], dims=[1], epoch=1, labelings={"y": np.arange(6) % 2}, kernels=["fixed:0.2"],
                        bin_codes={0.1: np.arange(6)[None]}, estimators=("kde", "bin", "renyi"), permutations=3)
    assert tuple(f.columns) == COLUMNS
    assert f["at_floor"].dtype == bool and f["baseline"].dtype == np.float64
    empty = estimate_layers(d, names=["l"], dims=[1], epoch=1, labelings={}, kernels=["fixed:0.2"], estimators=())
    assert tuple(empty.columns) == COLUMNS and empty["at_floor"].dtype == bool


def test_permutation_quantile_hand_computed():
    """Two clusters of 3 coinciding samples, far apart, labels = clusters. A shuffle of the labels
    either keeps the 3 | 3 split (I = 1 bit) or swaps one pair (joint counts 2, 1 / 1, 2:
    I = 2/3 log2(4/3) + 1/3 log2(2/3) = 0.0817 bits). KDE (coinciding points, far clusters: the
    plug-in MI of cluster and label) and binning give those values; the baseline is the 95% quantile
    of the 20 shuffles by linear interpolation: sorted v, h = 0.95 * 19 = 18.05,
    baseline = v[18] + 0.05 (v[19] - v[18])."""
    n, perms = 6, 20
    cl = np.array([0, 0, 0, 1, 1, 1])
    d = sqdist(cl[:, None] * 1e3)[None].astype(np.float32)
    y = cl.copy()
    f = estimate_layers(d, names=["l"], dims=[1], epoch=3, labelings={"y": y}, kernels=["fixed:0.2"],
                        bin_codes={0.1: cl[None]}, estimators=("kde", "bin"), permutations=perms, layers=[4])
    group = label_permutations(Labels.of(y, n), perms, epoch=3, layer=4, name="y")
    shuffled = [s.y for s in group.sets]
    assert len(shuffled) == perms and all(np.bincount(s).tolist() == [3, 3] for s in shuffled)
    by_hand = [1.0 if len(set(s[:3])) == 1 else 2 / 3 * math.log2(4 / 3) + 1 / 3 * math.log2(2 / 3) for s in shuffled]
    for s, v in zip(shuffled, by_hand):
        assert mi_plugin(cl, s) == pytest.approx(v, abs=1e-12)
    v = np.sort(by_hand)
    want = v[18] + 0.05 * (v[19] - v[18])
    assert want == pytest.approx(np.quantile(by_hand, 0.95), abs=1e-15)
    for est in ("kde_upper", "kde_lower", "bin"):
        r = one(f, estimator=est, quantity="I_YM")
        assert r["value"] == pytest.approx(1.0, abs=1e-12) and r["at_ceiling"] and not r["at_floor"]
        assert r["baseline"] == pytest.approx(want, abs=1e-12), est
    # NaN on every other row
    assert f.loc[f["quantity"] != "I_YM", "baseline"].isna().all()


def test_independent_labels_sit_near_their_baseline():
    """Labels independent of the activations: the real labelling is one more exchangeable draw
    among the shuffles (its rank among them is uniform), so I(Y;M) lies within their spread and,
    for this seeded draw, below the 95% baseline; the table's baseline is exactly the quantile of
    the registry's I(Y;M) over the seeded shuffles, for every estimator and width."""
    rng = np.random.default_rng(0)
    n = 240
    acts = [rng.normal(size=(n, 6)) * s for s in (0.3, 1.0, 3.0)]
    y = rng.integers(0, 4, n)
    dists = np.stack([sqdist(a) for a in acts]).astype(np.float32)
    codes = {0.5: np.stack([bin_codes(a, bin_size=0.5) for a in acts])}
    widths = ("fixed:0.5", "rel:0.5")
    f = estimate_layers(dists, names=["a", "b", "c"], dims=[6] * 3, epoch=2, labelings={"y": y}, kernels=widths,
                        bin_codes=codes, estimators=("kde", "bin"), permutations=30)
    lab = Labels.of(y, n)
    for li in range(3):
        group = label_permutations(lab, 30, epoch=2, layer=li, name="y")
        d = dists[li].astype(np.float64)
        for est, setting, p in [(e, w, prepare(e, dist=d, kernel=w, dim=6)) for e in ("kde_upper", "kde_lower")
                                for w in widths] + [("bin", "bin:0.5", prepare("bin", codes=codes[0.5][li]))]:
            vals = p.i_ym_many(group)
            r = one(f, layer=li, estimator=est, setting=setting, quantity="I_YM")
            assert r["baseline"] == baseline_of(vals) == np.quantile(vals, 0.95)
            assert r["value"] == p.i_ym(y)
            spread = vals.std(ddof=1)
            assert abs(r["value"] - vals.mean()) < 3 * spread, (li, est, setting)
            assert r["value"] <= r["baseline"] + 1e-12, (li, est, setting)


def test_separated_classes_at_h_y_with_baseline_well_below():
    """Classes perfectly separated (samples of a class coincide, classes 1e3 apart) and a kernel
    narrow against the separation: I(Y;M) = H(Y) (at its ceiling) for the KDE bounds and binning,
    while the shuffled labels stay far below."""
    rng = np.random.default_rng(1)
    n, k = 64, 4
    y = np.arange(n) % k
    centres = rng.normal(size=(k, 3)) * 1e3
    d = sqdist(centres[y])[None].astype(np.float32)
    f = estimate_layers(d, names=["l"], dims=[3], epoch=1, labelings={"y": y}, kernels=["fixed:1.0"],
                        bin_codes={0.1: y[None]}, estimators=("kde", "bin"), permutations=20)
    for est in ("kde_upper", "kde_lower", "bin"):
        r = one(f, estimator=est, quantity="I_YM")
        assert r["value"] == pytest.approx(2.0, abs=1e-9) and r["h_y"] == pytest.approx(2.0)
        assert r["at_ceiling"] and not r["at_floor"]
        assert r["baseline"] < 0.3, est


def test_all_zero_distances_everything_at_the_floor():
    n = 10
    rng = np.random.default_rng(0)
    d = np.zeros((2, n, n), np.float32)
    f = estimate_layers(d, names=["a", "b"], dims=[4, 4], epoch=1,
                        labelings={"y": np.arange(n) % 3, "z": np.arange(n) < 4},
                        kernels=("fixed:0.2", "fixed:1.0", "rel:0.1", "silverman"),
                        bin_codes={0.1: np.zeros((2, n), np.int64)}, dist_x=sqdist(rng.normal(size=(n, 3))),
                        permutations=5)
    est_q = f[f["quantity"].isin(["I_XM", "I_YM"])]
    assert len(est_q) and est_q["at_floor"].all() and not est_q["at_ceiling"].any()
    assert est_q["value"].abs().max() < 1e-9
    assert rows(f, estimator="bin", quantity="H_M")["at_floor"].all()
    # entropies without a ceiling never carry the flag
    q = f["quantity"]
    no_ceiling = q.isin(["H_M_given_X", "H_M_given_Y"]) | ((q == "H_M") & (f["estimator"] != "bin"))
    others = f[no_ceiling]
    assert len(others) and not others["at_floor"].any()
    b = rows(f, quantity="I_YM")
    assert b.loc[b["estimator"] != "renyi", "baseline"].abs().max() < 1e-9
    assert b.loc[b["estimator"] == "renyi", "baseline"].isna().all()


def test_floor_flags_off_where_the_estimate_is_informative():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(30, 4))
    y = (x[:, 0] > 0).astype(int)
    f = estimate_layers(sqdist(x)[None], names=["l"], dims=[4], epoch=1, labelings={"y": y}, kernels=["fixed:0.5"],
                        estimators=("kde_upper",))
    assert not one(f, quantity="I_XM")["at_floor"] and not one(f, quantity="I_YM")["at_floor"]


def test_no_permutations_nan_baseline_and_seeding():
    rng = np.random.default_rng(2)
    x = [rng.normal(size=(20, 3)) for _ in range(3)]
    dists = np.stack([sqdist(a) for a in x]).astype(np.float32)
    kw = dict(names=["a", "b", "c"], dims=[3] * 3, labelings={"y": np.arange(20) % 3}, kernels=["fixed:0.5"],
              estimators=("kde",))
    assert estimate_layers(dists, epoch=1, **kw)["baseline"].isna().all()
    a = estimate_layers(dists, epoch=1, permutations=7, **kw)
    pd.testing.assert_frame_equal(a, estimate_layers(dists, epoch=1, permutations=7, **kw))  # bit for bit
    # the seed is (epoch, probe-layer index, labelling): a layer alone gives the rows it gives in the stack
    alone = estimate_layers(dists[1:2], epoch=1, permutations=7, layers=[1], **dict(kw, names=["b"], dims=[3]))
    pd.testing.assert_frame_equal(alone.reset_index(drop=True), a[a["layer"] == 1].reset_index(drop=True))
    other = estimate_layers(dists, epoch=2, permutations=7, **kw)
    assert not np.array_equal(other["baseline"].dropna(), a["baseline"].dropna())
    with pytest.raises(InfoflowError):
        estimate_layers(dists, epoch=1, permutations=-1, **kw)


def test_normalize_table_fills_old_tables():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(16, 3))
    d = np.stack([sqdist(x), np.zeros((16, 16))]).astype(np.float32)
    new = estimate_layers(d, names=["a", "b"], dims=[3, 3], epoch=1, labelings={"y": np.arange(16) % 2},
                          kernels=("fixed:0.2", "fixed:50.0"), bin_codes={0.1: np.stack([np.arange(16), np.zeros(16, int)])},
                          dist_x=sqdist(x), permutations=4)
    old = new.drop(columns=["at_floor", "baseline"])
    back = normalize_table(old)
    assert tuple(back.columns) == COLUMNS
    np.testing.assert_array_equal(back["at_floor"], new["at_floor"])
    assert back["baseline"].isna().all() and back["at_floor"].dtype == bool
    # an old table appended to by the new version: only the missing flags are filled
    mixed = pd.concat([old, new], ignore_index=True)
    m = normalize_table(mixed)
    np.testing.assert_array_equal(m["at_floor"], np.concatenate([new["at_floor"], new["at_floor"]]))
    np.testing.assert_array_equal(m["baseline"].iloc[len(new):], new["baseline"])
    assert normalize_table(pd.DataFrame()).empty


def test_read_mi_of_a_table_written_without_the_columns(tmp_path):
    from infoflow.config import RunConfig
    from infoflow.runs import RunDir

    rng = np.random.default_rng(6)
    x = rng.normal(size=(12, 3))
    new = estimate_layers(sqdist(x)[None], names=["a"], dims=[3], epoch=1, labelings={"y": np.arange(12) % 3},
                          kernels=["fixed:0.2"], estimators=("kde",), permutations=3)
    run = RunDir.create(tmp_path / "run", RunConfig().to_dict())
    run.write_mi(new.drop(columns=["at_floor", "baseline"]))
    got = run.read_mi()
    assert tuple(got.columns) == COLUMNS
    np.testing.assert_array_equal(got["at_floor"], new["at_floor"])
    assert got["baseline"].isna().all()
    run.append_mi(new)  # a newer epoch's rows appended to the old table
    got = run.read_mi()
    np.testing.assert_array_equal(got["at_floor"], np.concatenate([new["at_floor"]] * 2))
    np.testing.assert_array_equal(got["baseline"].iloc[len(new):].to_numpy(), new["baseline"].to_numpy())


def test_registry_and_prepared_objects():
    assert tuple(REGISTRY) == ("kde_upper", "kde_lower", "bin", "renyi")
    assert [REGISTRY[e].baseline for e in REGISTRY] == [True, True, True, False]
    rng = np.random.default_rng(7)
    x = rng.normal(size=(25, 4))
    y = rng.integers(0, 3, 25)
    d = sqdist(x)
    p = prepare("kde_lower", dist=d, kernel="rel:0.3", dim=4)
    r = kde_mi(d, y, kernel_var=p.kernel_var, dim=4, bound="lower")
    assert (p.i_xm, p.h_m, p.i_ym(y)) == (r.i_xm, r.h_m, r.i_ym)
    assert [row.quantity for row in p.label_free()] == ["H_M", "H_M_given_X", "I_XM"]
    assert prepare("renyi", dist=d, kernel_var=1.0, dist_x=d).label_free()[1].quantity == "I_XM"
    assert [row.quantity for row in prepare("renyi", dist=d, kernel_var=1.0).label_free()] == ["H_M"]
    with pytest.raises(InfoflowError):
        prepare("knn", dist=d, kernel_var=1.0)
    with pytest.raises(InfoflowError):
        prepare("bin", dist=d)
    with pytest.raises(InfoflowError):
        prepare("kde_upper", dist=d)  # no width
    # a permuted Labels equals the Labels of the permuted array (same pairs, same values)
    lab = Labels.of(y, 25)
    perm = rng.permutation(25)
    pl = lab.permuted(perm).permuted(rng.permutation(25))
    fresh = Labels.of(pl.y, 25)
    assert p.i_ym(pl) == pytest.approx(p.i_ym(fresh), abs=1e-14)


def test_one_exp_per_layer_width_and_bound(monkeypatch):
    """The KDE's N x N exp runs once per (layer, width, bound), whatever the labellings and
    permutations (their I(Y;M) are sums over the same kernel matrix)."""
    from infoflow.estimators import kde

    calls: list[tuple[int, ...]] = []

    class CountingNumpy:
        def __getattr__(self, name):
            return getattr(np, name)

        @staticmethod
        def exp(x, *a, **k):
            calls.append(np.shape(x))
            return np.exp(x, *a, **k)

    monkeypatch.setattr(kde, "np", CountingNumpy())
    rng = np.random.default_rng(8)
    n, layers = 30, 3
    dists = np.stack([sqdist(rng.normal(size=(n, 4))) for _ in range(layers)]).astype(np.float32)
    labelings = {"a": rng.integers(0, 3, n), "b": rng.integers(0, 9, n), "c": np.arange(n) % 2}
    f = estimate_layers(dists, names=list("xyz"), dims=[4] * layers, epoch=1, labelings=labelings,
                        kernels=("fixed:0.2", "fixed:1.0", "rel:0.1", "silverman"), estimators=("kde",),
                        permutations=20)
    assert f["baseline"].notna().sum() == layers * 4 * 2 * len(labelings)
    assert calls == [(n, n)] * (layers * 4 * 2)  # 4 widths (fixed: 0.2 and 1.0) x 2 bounds per layer
