"""Information planes and U-Plots drawn from a small real run: panels, labels, colours, skips."""

import json

import numpy as np
import pytest
from matplotlib.collections import PathCollection, PolyCollection
from matplotlib.patches import Arc

from infoflow.models.unet import MERGE_LAYERS, PROBE_LAYERS
from infoflow.models.unet import layout_from_config as network_from_config
from infoflow.plots import information_planes, uplot_epochs, uplots


def _plane_axes(fig):
    return [ax for ax in fig.axes if (ax.get_gid() or "").startswith("plane-")]


def _colorbar(fig):
    (cb,) = [ax for ax in fig.axes if ax.get_gid() == "epoch-colorbar"]
    return cb


def _mi(run, est="kde_upper", q="I_XM", labels=None):
    mi = run.read_mi()
    rows = mi[(mi["estimator"] == est) & (mi["quantity"] == q)]
    if labels is not None:
        rows = rows[rows["labels"] == labels]
    return rows


def test_information_planes_one_panel_per_layer_and_colour_bar(run, helper):
    fig = information_planes(run)
    planes = _plane_axes(fig)
    assert len(planes) == 23 and len(fig.axes) == 24  # 23 panels + the colour bar
    assert [ax.get_title(loc="left") for ax in planes] == [f"{i}: {n}" for i, n in enumerate(PROBE_LAYERS)]
    cb = _colorbar(fig)
    epochs = helper.epochs_of(run)
    lo, hi = cb.get_ylim()  # the colour bar spans exactly the logged epochs
    assert (lo, hi) == pytest.approx((min(epochs), max(epochs)))
    assert cb.get_ylabel() == "epoch (log colour scale)"
    bottom = [ax for ax in planes if ax.get_xlabel()]
    assert {ax.get_xlabel() for ax in bottom} == {"I(X;M) (bits)"} and len(bottom) == 5
    assert {ax.get_ylabel() for ax in planes if ax.get_ylabel()} == {"I(Y;M) (bits)"}
    assert cb.get_yscale() == "log"


def test_plane_points_ceilings_and_marks_follow_the_table(run, helper):
    fig = information_planes(run)
    x = _mi(run).set_index(["layer", "epoch"])
    y = _mi(run, q="I_YM", labels="kmeans").set_index(["layer", "epoch"])
    epochs = helper.epochs_of(run)
    for layer, ax in enumerate(_plane_axes(fig)):
        (pts,) = [c for c in ax.collections if isinstance(c, PathCollection)]
        xy = pts.get_offsets()
        np.testing.assert_allclose(xy[:, 0], [x.loc[(layer, e), "value"] for e in epochs])
        np.testing.assert_allclose(xy[:, 1], [y.loc[(layer, e), "value"] for e in epochs])
        np.testing.assert_array_equal(pts.get_array(), epochs)  # coloured by epoch
        guides = {ln.get_gid(): ln for ln in ax.lines if ln.get_gid()}
        assert guides["ceiling-log2n"].get_xdata()[0] == pytest.approx(x["log2n"].iloc[0])
        assert guides["ceiling-h_y"].get_ydata()[0] == pytest.approx(y["h_y"].iloc[0])
        assert guides["ceiling-log2n"].get_linestyle() == "--"
        at = bool(x.loc[layer, "at_ceiling"].any() or y.loc[layer, "at_ceiling"].any())
        assert (ax.get_title(loc="right") != "") == at
        assert ax.get_gid() == (f"plane-{layer}-at-ceiling" if at else f"plane-{layer}")


def test_plane_selection_of_estimator_and_labels(run):
    fig = information_planes(run, estimator="bin", labels="coarse")
    assert "bin (bin:0.1), Y: coarse" in fig._suptitle.get_text()
    x = _mi(run, est="bin")
    last = _plane_axes(fig)[22].collections[0].get_offsets()[:, 0]
    np.testing.assert_allclose(last, x[x["layer"] == 22].sort_values("epoch")["value"])
    with pytest.raises(ValueError, match="no setting"):
        information_planes(run, estimator="kde_upper", setting="fixed:9.0")


def test_uplot_epochs_follow_the_paper_code():
    from infoflow.plots import CODE_UPLOT_EPOCHS
    from infoflow.tracking import code_schedule

    # the code's Keras epochs 1, 10, ..., 9900 are 0-based: 2, 11, ..., 9901 in 1-based epochs,
    # all of them logged by the code schedule
    assert CODE_UPLOT_EPOCHS == (2, 11, 101, 501, 1001, 2001, 5001, 9901)
    assert uplot_epochs(code_schedule(10_000)) == [2, 11, 101, 501, 1001, 2001, 5001, 9901]
    assert uplot_epochs(range(1, 31)) == [2, 11, 30]
    assert uplot_epochs([1, 2, 3, 4]) == [2, 4]
    assert uplot_epochs([1, 10, 100, 1000]) == [1, 10, 100, 1000]  # each target moved to the nearest logged epoch
    with pytest.raises(ValueError, match="not logged"):
        uplot_epochs([1, 2], epochs=[3])


def _data_axes(fig):
    return [ax for ax in fig.axes if ax.get_gid() != "epoch-colorbar"]


def test_uplots_lines_per_epoch_merges_and_skips(run, helper):
    fig = uplots(run)
    ax_x, ax_y = _data_axes(fig)
    assert len(fig.axes) == 3
    assert ax_x.get_xlabel() == ax_y.get_xlabel() == "layer index i"
    assert ax_x.get_ylabel() == "I(X;M_i) (bits)" and ax_y.get_ylabel() == "I(Y;M_i) (bits)"
    lo, hi = _colorbar(fig).get_ylim()
    epochs = helper.epochs_of(run)
    assert (lo, hi) == pytest.approx((min(epochs), max(epochs)))
    x = _mi(run).set_index(["epoch", "layer"])
    for ax in (ax_x, ax_y):
        lines = {ln.get_gid(): ln for ln in ax.lines if (ln.get_gid() or "").startswith("epoch-")}
        assert sorted(lines) == ["epoch-2", "epoch-4"]  # nearest logged epochs to the code's 2, 11, ... (1-based)
        merges = sorted(int(ln.get_xdata()[0]) for ln in ax.lines if (ln.get_gid() or "").startswith("merge-"))
        assert merges == list(MERGE_LAYERS) == [11, 14, 17, 20]
        arcs = {p.get_gid(): p for p in ax.patches if isinstance(p, Arc)}
        assert sorted(arcs) == ["skip-1-20", "skip-3-17", "skip-5-14", "skip-7-11"]
        assert {a.get_linestyle() for a in arcs.values()} == {"-"}  # Model 1: all skips present
        for gid, arc in arcs.items():
            s, m = map(int, gid.split("-")[1:])
            assert arc.center[0] == pytest.approx((s + m) / 2) and arc.width == pytest.approx(m - s)
    np.testing.assert_allclose(lines_of(ax_x, 4).get_ydata(), [x.loc[(4, i), "value"] for i in range(23)])
    three = uplots(run, epochs=[1, 2, 3])
    assert sum((ln.get_gid() or "").startswith("epoch-") for ln in _data_axes(three)[0].lines) == 3


def lines_of(ax, epoch):
    (ln,) = [ln for ln in ax.lines if ln.get_gid() == f"epoch-{epoch}"]
    return ln


def test_uplots_draw_removed_skips_of_model_3(run, helper, tmp_path):
    m3 = helper.derived_run(run, tmp_path / "m3", model=3)
    fig = uplots(m3)
    for ax in _data_axes(fig):
        arcs = {p.get_gid(): p.get_linestyle() for p in ax.patches if isinstance(p, Arc)}
        assert arcs == {"skip-1-20": "--", "skip-3-17": "--", "skip-5-14": "-", "skip-7-11": "-"}
        crosses = sorted(t.get_gid() for t in ax.texts if (t.get_gid() or "").endswith("-removed"))
        assert crosses == ["skip-1-20-removed", "skip-3-17-removed"]
        merges = sorted(int(ln.get_xdata()[0]) for ln in ax.lines if (ln.get_gid() or "").startswith("merge-"))
        assert merges == [11, 14, 17, 20]


def test_network_of_other_networks_comes_from_config():
    net = network_from_config({"network": {"probe_layers": ["a", "b", "c", "d"], "skip_pairs": [[0, 3]]}})
    assert net.merges == (3,) and net.present_pairs == ((0, 3),) and net.names == ("a", "b", "c", "d")
    assert network_from_config({"model": {"model": 4, "skips": None}}).removed_pairs == ((1, 20), (3, 17), (5, 14))
    assert network_from_config({"model": {"model": 1, "skips": [1, 1, 0, 1]}}).removed_pairs == ((5, 14),)


def test_several_seeds_give_median_and_band(run, helper, tmp_path):
    seeds = [helper.derived_run(run, tmp_path / f"s{i}", seed=i + 1, jitter=0.3) for i in range(3)]
    tables = [s.read_mi() for s in seeds]
    fig = information_planes(seeds)
    assert "median of 3 runs" in fig._suptitle.get_text()
    ax = _plane_axes(fig)[1]
    med = np.median([t[(t["estimator"] == "kde_upper") & (t["quantity"] == "I_XM") & (t["layer"] == 1)]
                     .sort_values("epoch")["value"] for t in tables], axis=0)
    (pts,) = [c for c in ax.collections if isinstance(c, PathCollection)]
    np.testing.assert_allclose(pts.get_offsets()[:, 0], med)
    assert any(c.get_gid() is None and not isinstance(c, PathCollection) for c in ax.collections)  # error bars
    up = uplots(seeds)
    ax_x = _data_axes(up)[0]
    bands = [c for c in ax_x.collections if isinstance(c, PolyCollection) and (c.get_gid() or "").startswith("band-")]
    lines = [ln for ln in ax_x.lines if (ln.get_gid() or "").startswith("epoch-")]
    assert len(bands) == len(lines) == 2
    cfg = json.loads(seeds[0].config_path.read_text())
    assert cfg["train"]["seed"] == 1
