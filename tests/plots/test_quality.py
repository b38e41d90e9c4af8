"""Estimate quality drawn from a real uncertainty table of the small run: intervals, baselines, ceilings."""

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection, PolyCollection

from infoflow.errors import InfoflowError
from infoflow.models.unet import MERGE_LAYERS
from infoflow.plots import information_planes, uplot_intervals, uplots

SETTINGS = ["fixed:0.2", "rel:0.1", "rel:1.0", "silverman:1.0"]


def _rows(unc, setting, quantity, labels="kmeans"):
    r = unc[(unc["setting"] == setting) & (unc["quantity"] == quantity) & (unc["estimator"] == "kde_upper")]
    r = r[r["labels"] == ("none" if quantity == "I_XM" else labels)]
    return r.sort_values("layer").reset_index(drop=True)


def _gid(artists, gid):
    found = [a for a in artists if a.get_gid() == gid]
    assert len(found) == 1, (gid, [a.get_gid() for a in artists])
    return found[0]


def _quality_axes(fig):
    return {ax.get_gid(): ax for ax in fig.axes if (ax.get_gid() or "").startswith("quality-")}


def _segments(coll):
    return np.array([np.asarray(s) for s in coll.get_segments()])  # (k, 2, 2): [(x0, y0), (x1, y1)]


def test_the_table_is_real(unc):
    assert sorted(unc["setting"].unique()) == sorted(SETTINGS)
    assert set(unc["epoch"]) == {4} and unc["layer"].nunique() == 23
    assert (unc["ci_lo"] <= unc["value"] + 1e-12).all() and (unc["value"] <= unc["ci_hi"] + 1e-12).all()
    assert (unc["ci_hi"] > unc["ci_lo"]).any()  # not all degenerate: the bars below have extent


def test_uplot_intervals_one_column_per_setting_and_bars_from_the_table(run, unc):
    fig = uplot_intervals(unc, run=run)
    axes = _quality_axes(fig)
    assert sorted(axes) == sorted(f"quality-{q}-{s}" for q in ("I_XM", "I_YM") for s in SETTINGS)
    for j, st in enumerate(SETTINGS):  # table order = column order; I(X;M) on top, I(Y;M) below
        for i, q in enumerate(("I_XM", "I_YM")):
            ax = axes[f"quality-{q}-{st}"]
            nrows, ncols, start, _ = ax.get_subplotspec().get_geometry()
            assert (nrows, ncols) == (2, 4) and divmod(start, 4) == (i, j)
            rows = _rows(unc, st, q)
            assert len(rows) == 23
            est = _gid(ax.lines, "estimate")
            np.testing.assert_array_equal(est.get_xdata(), rows["layer"])
            np.testing.assert_allclose(est.get_ydata(), rows["value"])
            seg = _segments(_gid([c for c in ax.collections if isinstance(c, LineCollection)], "ci"))
            np.testing.assert_allclose(seg[:, 0, 0], rows["layer"])
            np.testing.assert_allclose(seg[:, 1, 0], rows["layer"])
            np.testing.assert_allclose(seg[:, 0, 1], rows["ci_lo"])
            np.testing.assert_allclose(seg[:, 1, 1], rows["ci_hi"])
            ceiling = _gid(ax.lines, "ceiling")
            assert ceiling.get_linestyle() == ":"
            assert ceiling.get_ydata()[0] == pytest.approx(rows["ceiling"].max())
            assert _gid(ax.texts, "ceiling-label").get_text() == ("log2 N" if q == "I_XM" else "H(Y)")
            merges = sorted(int(ln.get_xdata()[0]) for ln in ax.lines if (ln.get_gid() or "").startswith("merge-"))
            assert merges == list(MERGE_LAYERS)
            assert ax.get_ylabel() == ({"I_XM": "I(X;M_i) (bits)", "I_YM": "I(Y;M_i) (bits)"}[q] if j == 0 else "")
            assert ax.get_xlabel() == "layer index i"
            if i == 0:
                assert ax.get_title().startswith(st)
        y = _rows(unc, st, "I_YM")
        ax = axes[f"quality-I_YM-{st}"]
        base = _gid(ax.lines, "baseline-mean")
        assert base.get_linestyle() == "--"
        np.testing.assert_allclose(base.get_ydata(), y["baseline_mean"])
        band = _gid([c for c in ax.collections if isinstance(c, PolyCollection)], "baseline-band")
        ys = band.get_paths()[0].vertices[:, 1]
        for v in y["baseline_hi"]:  # the band reaches up to baseline_hi at every layer ...
            assert np.isclose(ys, v).any()
        assert ys.max() == pytest.approx(y["baseline_hi"].max())  # ... and no further
        chance = y[y["p_value"] > 1 - y["level"]]
        marks = [ln for ln in ax.lines if ln.get_gid() == "chance"]
        if len(chance):
            np.testing.assert_array_equal(marks[0].get_xdata(), chance["layer"])
        else:
            assert marks == []
        x_ax = axes[f"quality-I_XM-{st}"]
        assert not [ln for ln in x_ax.lines if ln.get_gid() in ("baseline-mean", "chance")]
        assert x_ax.get_ylim() == axes[f"quality-I_XM-{SETTINGS[0]}"].get_ylim()  # rows share the y range
    title = fig._suptitle.get_text()
    assert "epoch 4" in title and "kde_upper, Y: kmeans" in title and "bits" in title and title.startswith("tiny: ")


def test_uplot_intervals_choices_and_errors(unc, tmp_path):
    path = tmp_path / "mi-x.uncertainty.csv"
    unc.to_csv(path, index=False)
    fig = uplot_intervals(path, labels="coarse", settings=["rel:0.1"])  # a file; no run: no skip arcs
    axes = _quality_axes(fig)
    assert sorted(axes) == ["quality-I_XM-rel:0.1", "quality-I_YM-rel:0.1"]
    rows = _rows(unc, "rel:0.1", "I_YM", labels="coarse")
    seg = _segments(_gid(axes["quality-I_YM-rel:0.1"].collections, "ci"))
    np.testing.assert_allclose(seg[:, 1, 1], rows["ci_hi"])
    assert not [ln for ln in axes["quality-I_YM-rel:0.1"].lines if (ln.get_gid() or "").startswith("merge-")]
    two = pd.concat([unc, unc.assign(epoch=2, value=unc["value"] / 2)], ignore_index=True)
    last = _gid(_quality_axes(uplot_intervals(two))["quality-I_XM-rel:0.1"].lines, "estimate")
    np.testing.assert_allclose(last.get_ydata(), _rows(unc, "rel:0.1", "I_XM")["value"])  # default: the last epoch
    first = _gid(_quality_axes(uplot_intervals(two, epoch=2))["quality-I_XM-rel:0.1"].lines, "estimate")
    np.testing.assert_allclose(first.get_ydata(), _rows(unc, "rel:0.1", "I_XM")["value"] / 2)
    with pytest.raises(InfoflowError, match=r"no kde_upper rows at epoch 3; it has epochs \[2, 4\]"):
        uplot_intervals(two, epoch=3)
    with pytest.raises(InfoflowError, match="no 'bin' rows"):
        uplot_intervals(unc, estimator="bin")
    with pytest.raises(InfoflowError, match="rel:7"):
        uplot_intervals(unc, settings=["rel:7"])
    with pytest.raises(InfoflowError, match="lacks the column"):
        uplot_intervals(unc.drop(columns=["ci_hi"]))
    with pytest.raises(ValueError, match="nope.csv"):
        uplot_intervals(tmp_path / "nope.csv")


def _plane_axes(fig):
    return [ax for ax in fig.axes if (ax.get_gid() or "").startswith("plane-")]


def test_information_planes_bars_from_the_uncertainty_table(run, unc):
    plain = information_planes(run)
    fig = information_planes(run, uncertainty=unc)
    x, y = _rows(unc, "fixed:0.2", "I_XM"), _rows(unc, "fixed:0.2", "I_YM")
    for layer, (ax, ax0) in enumerate(zip(_plane_axes(fig), _plane_axes(plain))):
        assert not [c for c in ax0.collections if (c.get_gid() or "").startswith("ci-")]  # unchanged without it
        hx = _segments(_gid(ax.collections, "ci-x"))
        vy = _segments(_gid(ax.collections, "ci-y"))
        assert hx.shape == vy.shape == (1, 2, 2)  # the table holds one epoch
        xr, yr = x.loc[layer], y.loc[layer]
        np.testing.assert_allclose(hx[0], [[xr["ci_lo"], yr["value"]], [xr["ci_hi"], yr["value"]]])
        np.testing.assert_allclose(vy[0], [[xr["value"], yr["ci_lo"]], [xr["value"], yr["ci_hi"]]])
    assert "90% intervals" in fig._suptitle.get_text() and "intervals" not in plain._suptitle.get_text()
    with pytest.raises(InfoflowError, match=r"no rows of kde_lower \(fixed:0.2\)"):
        information_planes(run, estimator="kde_lower", uncertainty=unc)


def test_uplots_bars_for_the_epochs_the_table_has(run, unc):
    fig = uplots(run, uncertainty=unc)
    ax_x, ax_y = [ax for ax in fig.axes if ax.get_gid() != "epoch-colorbar"]
    for ax, q in ((ax_x, "I_XM"), (ax_y, "I_YM")):
        rows = _rows(unc, "fixed:0.2", q)
        bars = {c.get_gid(): c for c in ax.collections if (c.get_gid() or "").startswith("ci-")}
        assert sorted(bars) == ["ci-4"]  # epoch 1 is drawn, but the table has only epoch 4
        seg = _segments(bars["ci-4"])
        np.testing.assert_allclose(seg[:, 0], np.c_[rows["layer"], rows["ci_lo"]])
        np.testing.assert_allclose(seg[:, 1], np.c_[rows["layer"], rows["ci_hi"]])
    plain = uplots(run)
    assert not [c for ax in plain.axes for c in ax.collections if (c.get_gid() or "").startswith("ci-")]
