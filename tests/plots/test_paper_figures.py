"""Figures a researcher would submit: legends off the data, integer epoch ticks, ceiling tags clear
of layer names, stacked points counted, the paper style, embedded fonts, KDE bounds, loss beside Dice."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from infoflow.plots import (class_examples, dice_curves, figure_style, information_planes, kde_bounds, make_figures,
                            plot_run, uplots)


def _table(names, epochs=(1, 2, 3), *, value=None, ceiling=False) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for e in epochs:
        for i, n in enumerate(names):
            for est in ("kde_upper", "kde_lower"):
                for q in ("I_XM", "I_YM"):
                    v = float(rng.uniform(0.5, 3)) if value is None else value
                    rows.append({"epoch": e, "layer": i, "name": n, "estimator": est, "setting": "fixed:0.2",
                                 "labels": "kmeans", "quantity": q, "value": v - (0.3 if est == "kde_lower" else 0),
                                 "n": 64, "d": 10, "log2n": 6.0, "h_y": 3.5, "at_ceiling": ceiling})
    return pd.DataFrame(rows)


def _boxes_overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def _data_axes(fig):
    return [ax for ax in fig.axes if ax.get_gid() != "epoch-colorbar" and ax.get_label() != "<colorbar>"]


def _legend_clear_of_data(fig) -> None:
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    assert fig.legends, "the figure has a legend"
    for lg in fig.legends:
        box = lg.get_window_extent(r)
        for ax in _data_axes(fig):
            assert not _boxes_overlap(box, ax.get_window_extent(r)), f"legend over the data of {ax.get_title()!r}"


def test_uplots_legend_below_the_data():
    _legend_clear_of_data(uplots(_table(["a", "b", "c", "d"])))


def test_dice_legend_below_the_data_integer_ticks_and_loss_beside(run):
    fig = dice_curves([run], loss=True)
    assert len(_data_axes(fig)) == 2  # Dice, loss
    dice, loss = _data_axes(fig)
    assert dice.get_ylabel() == "Dice coefficient" and loss.get_ylabel() == "loss"
    assert {ln.get_gid() for ln in loss.lines} >= {f"{k}|loss_train" for k in ["Model 1"]}
    _legend_clear_of_data(fig)
    lo, hi = dice.get_xlim()
    ticks = [t for t in dice.get_xticks() if lo <= t <= hi]
    assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks), ticks  # a 4-epoch run: 1, 2, 3, 4


def test_ceiling_tag_never_over_a_long_layer_name():
    names = ["model.1.submodule.1.submodule.1.submodule.conv.unit0", "x"]
    fig = information_planes(_table(names, value=6.0, ceiling=True))
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    ax = next(a for a in fig.axes if (a.get_gid() or "") == "plane-0-at-ceiling")
    left, right = ax._left_title, ax._right_title
    assert right.get_text() == "at log2N, H(Y)" and left.get_text().startswith("0: \u2026")
    assert not _boxes_overlap(left.get_window_extent(r), right.get_window_extent(r))


def test_points_stacked_on_a_ceiling_are_counted():
    fig = information_planes(_table(["a", "b"], epochs=(1, 2, 3), value=6.0, ceiling=True))
    counts = [t for ax in fig.axes for t in ax.texts if (t.get_gid() or "").startswith("stack-")]
    assert [t.get_text() for t in counts] == ["\u00d73", "\u00d73"]  # 3 epochs on one point, per panel


def test_kde_bounds_band_between_lower_and_upper():
    mi = _table(["a", "b", "c"])
    fig = kde_bounds(mi, epochs=[1, 3])
    axes = _data_axes(fig)
    assert len(axes) == 2 and len(fig.axes) == 3  # I(X;M), I(Y;M), colour bar
    for ax, q in zip(axes, ("I_XM", "I_YM")):
        upper = next(ln for ln in ax.lines if ln.get_gid() == "upper-3")
        lower = next(ln for ln in ax.lines if ln.get_gid() == "lower-3")
        rows = mi[(mi["epoch"] == 3) & (mi["quantity"] == q)].sort_values("layer")
        np.testing.assert_allclose(upper.get_ydata(), rows[rows["estimator"] == "kde_upper"]["value"])
        np.testing.assert_allclose(lower.get_ydata(), rows[rows["estimator"] == "kde_lower"]["value"])
        assert {c.get_gid() for c in ax.collections} >= {"bounds-1", "bounds-3"}
    _legend_clear_of_data(fig)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["epoch 1", "epoch 3", "upper bound (kde_upper)", "lower bound (kde_lower)", "between the bounds"]


def test_fig2_says_how_many_classes_are_singletons():
    y = np.array([0, 0, 0, 1, 1] + list(range(2, 12)))  # 12 classes, 10 of one mask each
    masks = np.zeros((len(y), 1, 8, 8), np.float32)
    fig = class_examples({"labelings": {"coarse": y}, "masks": masks}, "coarse", max_classes=4)
    text = fig._suptitle.get_text()
    assert "12 classes" in text and "10 of them singletons" in text and "4 most populous shown" in text
    assert fig.axes[0].get_ylabel() == "class 0\n(n=3)"


def test_paper_style_no_titles_linear_epochs_numbered_from_one(run):
    with figure_style("paper", layer_base=1):
        figs, _ = make_figures(run, only=["uplots", "information_planes"])
    up = figs["uplots"]
    assert up._suptitle is None or not up._suptitle.get_visible()
    ax = _data_axes(up)[0]
    assert not ax.spines["top"].get_visible() and not ax.spines["right"].get_visible()
    assert [t.get_text() for t in ax.get_xticklabels()][:2] == ["1", "2"]  # layer 0 is the paper's layer 1
    cb = next(a for a in up.axes if a.get_gid() == "epoch-colorbar")
    assert cb.get_ylabel() == "epoch (linear colour scale)"
    assert figs["information_planes"].axes[0]._left_title.get_text().startswith("1: ")
    with figure_style("paper", epoch_scale="log"):
        figs, _ = make_figures(run, only=["uplots"])
    cb = next(a for a in figs["uplots"].axes if a.get_gid() == "epoch-colorbar")
    assert cb.get_ylabel() == "epoch (log colour scale)"
    with pytest.raises(ValueError, match="--style"):
        with figure_style("journal"):
            pass


def test_pdf_figures_embed_truetype_fonts(run, tmp_path):
    paths, _ = plot_run(run, tmp_path, formats=("pdf",), only=["dice", "uplots"], style="paper")
    assert sorted(p.name for p in paths) == ["dice.pdf", "uplots.pdf"]
    for p in paths:
        data = p.read_bytes()
        # Type 42: TrueType outlines embedded (CIDFontType2 with a FontFile2), never Type 3 bitmaps
        assert re.search(rb"/Subtype\s*/(CIDFontType2|TrueType)", data) and b"/FontFile2" in data
        assert not re.search(rb"/Subtype\s*/Type3", data)


def test_plot_command_paper_style(run, tmp_path):
    from infoflow.cli import main

    out = tmp_path / "paper"
    assert main(["plot", str(run.path), "--out", str(out), "--style", "paper", "--paper-numbers", "--epoch-scale",
                 "log", "--only", "uplots", "--format", "pdf"]) == 0
    assert re.search(rb"/FontFile2", (out / "uplots.pdf").read_bytes())
    assert main(["plot", str(run.path), "--out", str(out), "--style", "journal"]) == 2
    assert main(["plot", str(run.path), "--out", str(out), "--epoch-scale", "sqrt"]) == 2
