"""MI/weight/Dice curves, mask figures, `infoflow plot` and finish_run, from a small real run."""

import shutil

import numpy as np
import pytest
from matplotlib.collections import PolyCollection

from infoflow.cli import main
from infoflow.plots import class_examples, dice_curves, layer_stats, make_figures, mi_vs_epoch, predicted_masks
from infoflow.runs import RunDir


def test_mi_vs_epoch_panels_log_axis_and_values(run, helper):
    fig = mi_vs_epoch(run)
    panels = [ax for ax in fig.axes if (ax.get_gid() or "").startswith("mi-epoch-")]
    assert len(panels) == 23 and all(ax.get_xscale() == "log" for ax in panels)
    assert {ax.get_xlabel() for ax in panels if ax.get_xlabel()} == {"epoch"}
    mi = run.read_mi()
    want = mi[(mi["estimator"] == "kde_upper") & (mi["quantity"] == "I_YM") & (mi["labels"] == "kmeans")
              & (mi["layer"] == 5)].sort_values("epoch")
    (line,) = [ln for ln in panels[5].lines if ln.get_gid() == "I_YM"]
    np.testing.assert_allclose(line.get_xdata(), helper.epochs_of(run))
    np.testing.assert_allclose(line.get_ydata(), want["value"])


def test_layer_stats_weight_norm_and_gradient_snr(run):
    fig = layer_stats(run)
    ax_w, ax_s, cb = fig.axes
    assert cb.get_ylabel() == "layer index"
    assert ax_w.get_xscale() == ax_s.get_xscale() == "log" and ax_s.get_yscale() == "log"
    assert len(ax_w.lines) == 23 and ax_w.get_ylabel().startswith("weight norm")
    st = run.read_layer_stats()
    d = st[st["layer"] == 22].sort_values("epoch")
    (ln,) = [ln for ln in ax_s.lines if ln.get_gid() == "layer-22"]
    np.testing.assert_allclose(ln.get_ydata(), d["grad_mean_norm"] / d["grad_std_norm"])


def test_dice_curves_solid_training_dashed_validation_and_seed_bands(run, helper, tmp_path):
    runs = [run, helper.derived_run(run, tmp_path / "m1s1", seed=1, dice_shift=0.1),
            helper.derived_run(run, tmp_path / "m3", model=3, dice_shift=-0.05)]
    fig = dice_curves(runs)
    (ax,) = fig.axes
    lines = {ln.get_gid(): ln for ln in ax.lines if ln.get_gid()}
    assert sorted(lines) == ["Model 1|dice_train", "Model 1|dice_val", "Model 3|dice_train", "Model 3|dice_val"]
    assert lines["Model 1|dice_train"].get_linestyle() == "-" and lines["Model 1|dice_val"].get_linestyle() == "--"
    assert lines["Model 1|dice_train"].get_color() != lines["Model 3|dice_train"].get_color()
    m0, m1 = run.read_metrics(), runs[1].read_metrics()
    np.testing.assert_allclose(lines["Model 1|dice_val"].get_ydata(), (m0["dice_val"] + m1["dice_val"]) / 2)
    bands = [c.get_gid() for c in ax.collections if isinstance(c, PolyCollection)]
    assert sorted(bands) == ["band-Model 1-dice_train", "band-Model 1-dice_val"]  # only the group with 2 seeds
    assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == "Dice coefficient"
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["Model 1 (median of 2)", "Model 3", "training", "validation"]


def test_predicted_masks_show_input_truth_and_epochs(run):
    fig = predicted_masks(run, n_images=2)
    assert len(fig.axes) == 2 * (2 + 4)  # 2 images x (input, ground truth, epochs 1-4)
    titles = [ax.get_title() for ax in fig.axes[:6]]
    assert titles == ["input", "ground truth"] + [f"tiny\nepoch {e}" for e in (1, 2, 3, 4)]
    stored = run.load_prediction_inputs()
    np.testing.assert_allclose(fig.axes[6].images[0].get_array(), np.moveaxis(stored["images"][1], 0, -1))
    np.testing.assert_array_equal(fig.axes[7].images[0].get_array(), stored["masks"][1, 0])
    probs = run.load_predictions(3)
    np.testing.assert_array_equal(fig.axes[10].images[0].get_array(), (probs[1, 0] > 0.5).astype(np.float32))


def test_predicted_masks_reload_the_split_when_inputs_were_not_stored(run, tmp_path):
    from infoflow.config import RunConfig
    from infoflow.data import load_splits

    shutil.copytree(run.path, tmp_path / "old")
    old = RunDir(tmp_path / "old")
    (old.predictions_dir / "inputs.npz").unlink()
    fig = predicted_masks({"M1": old, "again": run}, epochs=[4], n_images=1, models_as_rows=False)
    assert [ax.get_title() for ax in fig.axes] == ["input", "ground truth", "M1\nepoch 4", "again\nepoch 4"]
    test = load_splits(RunConfig.from_dict(old.read_config()).data, progress=False).test
    np.testing.assert_array_equal(fig.axes[1].images[0].get_array(), test.masks[0, 0])


def test_predicted_masks_models_as_rows_epochs_as_columns(run, helper, tmp_path):
    """The paper's Fig. 6 layout: one row per model, one column per epoch (after input, truth)."""
    runs = {"Model 1": run, "Model 3": helper.derived_run(run, tmp_path / "m3", model=3)}
    fig = predicted_masks(runs, epochs=[1, 2, 4], n_images=2)
    assert len(fig.axes) == 2 * 2 * (2 + 3)  # 2 images x 2 models x (input, truth, 3 epochs)
    grid = [fig.axes[5 * r:5 * r + 5] for r in range(4)]
    assert [ax.get_title() for ax in grid[0]] == ["input", "ground truth", "epoch 1", "epoch 2", "epoch 4"]
    assert [row[2].get_ylabel() for row in grid] == ["Model 1", "Model 3", "Model 1", "Model 3"]
    assert [ax.get_gid() for ax in grid[1][2:]] == ["pred-Model 3-1", "pred-Model 3-2", "pred-Model 3-4"]
    assert not grid[1][0].axison and grid[2][0].images  # input and truth once per image
    probs = run.load_predictions(2)
    np.testing.assert_array_equal(grid[2][3].images[0].get_array(), (probs[1, 0] > 0.5).astype(np.float32))


@pytest.mark.parametrize("labels", ["kmeans", "coarse"])
def test_class_examples_rows_hold_masks_of_one_class(run, labels):
    record = run.load_probe()
    y = record.labelings[labels]
    fig = class_examples(run, labels, per_class=4, max_classes=3)
    classes, counts = np.unique(y, return_counts=True)
    assert len(fig.axes) == 3 * 4
    for r in range(3):
        row = fig.axes[4 * r:4 * r + 4]
        code = int(row[0].get_gid().split("-")[1])
        shown = [ax.images[0].get_array() for ax in row if ax.images]
        assert len(shown) == min(4, int(counts[classes == code][0]))
        members = record.y_masks[y == code, 0]
        for img in shown:
            assert any(np.array_equal(img, m) for m in members)
    assert int(row[0].get_gid().split("-")[1]) in classes


def test_make_figures_skips_what_a_run_lacks(run, tmp_path):
    shutil.copytree(run.path, tmp_path / "nomi")
    bare = RunDir(tmp_path / "nomi")
    (bare.path / "mi.csv").unlink()
    (bare.path / "probe.npz").unlink()
    figs, skipped = make_figures(bare)
    assert sorted(figs) == ["dice", "layer_stats", "predictions"]
    assert set(skipped) == {"information_planes", "uplots", "kde_bounds", "mi_vs_epoch", "classes_coarse", "classes_kmeans"}
    assert "mi.csv" in skipped["uplots"] and "probe.npz" in skipped["classes_kmeans"]


def test_plot_command_writes_png_and_pdf(run, tmp_path, capsys):
    # every figure (PNG and PDF) is checked in tests/report (finish_run); here the command's options
    out = tmp_path / "figs"
    assert main(["plot", str(run.path), "--out", str(out), "--dpi", "60", "--epochs", "1,3",
                 "--only", "uplots,dice", "--estimator", "kde_lower", "--labels", "coarse"]) == 0
    for stem in ("uplots", "dice"):
        assert (out / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (out / f"{stem}.pdf").read_bytes()[:5] == b"%PDF-"
    assert sorted(p.name for p in out.iterdir()) == ["dice.pdf", "dice.png", "uplots.pdf", "uplots.png"]
    assert f"4 figure files written to {out}" in capsys.readouterr().out
    assert main(["plot", str(run.path), "--out", str(out), "--only", "dice", "--format", "svg"]) == 0
    assert (out / "dice.svg").read_text().lstrip().startswith("<?xml")
    assert main(["plot", str(run.path), "--estimator", "nope"]) == 2
    assert main(["plot", str(run.path), "--epochs", "7"]) == 2
    assert main(["plot", str(run.path), "--only", "nope"]) == 2
    assert main(["plot", str(tmp_path / "missing")]) == 2
