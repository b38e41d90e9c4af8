"""Figures of a run (every figure of Lee & Bajic 2021) from what its run directory stores.

Each plot function takes results (a :class:`~infoflow.runs.RunDir`, a run path, a tidy MI
table, or a list of them for several seeds) and an optional ``ax``/``fig``, and returns the
matplotlib Figure; saving is the caller's (:func:`plot_run` writes all figures of a run).

* :func:`information_planes` -- Fig. 3: one panel per probe layer, x = I(X;M), y = I(Y;M).
* :func:`uplots` / :func:`uplot` -- Fig. 4: MI against layer index, one line per epoch.
* :func:`mi_vs_epoch` -- I(X;M) and I(Y;M) of each layer against epoch.
* :func:`layer_stats` -- weight norms and gradient signal-to-noise per layer against epoch.
* :func:`dice_curves` -- Fig. 5: Dice (training solid, validation dashed), one colour per model.
* :func:`predicted_masks` -- Fig. 6: input, ground truth and predictions at chosen epochs.
* :func:`class_examples` -- Fig. 2: masks grouped by output class (coarsening, K-means).
* :func:`uplot_intervals` -- estimate quality: intervals, permutation baselines and ceilings per
  layer and kernel width, from an uncertainty table (``infoflow estimate --uncertainty``);
  :func:`information_planes` and :func:`uplots` take the same table as ``uncertainty=``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from ..errors import InfoflowError, RunDamaged
from ..runs import RunDir
from . import _data, _style
from ._data import CODE_UPLOT_EPOCHS, Selection, select, uplot_epochs
from ._style import png_bytes, savefig
from .curves import default_label, dice_curves, group_runs, layer_stats, mi_vs_epoch
from .masks import class_examples, predicted_masks
from .planes import information_planes
from .quality import quality_selection, uplot_intervals
from ._style import figure_style
from .uplots import draw_skips, kde_bounds, uplot, uplots

__all__ = [
    "CODE_UPLOT_EPOCHS", "FIGURES", "Selection", "class_examples", "default_label", "dice_curves",
    "draw_skips", "figure_style", "group_runs", "information_planes", "kde_bounds", "layer_stats", "make_figures", "mi_vs_epoch",
    "plot_run", "png_bytes", "predicted_masks", "quality_selection", "savefig", "select",
    "uplot", "uplot_epochs", "uplot_intervals", "uplots",
]  # fmt: skip

#: The figures of one run, in report order: (file stem, caption).
FIGURES: tuple[tuple[str, str], ...] = (
    ("information_planes", "Information planes (paper Fig. 3): one panel per layer, x = I(X;M), y = I(Y;M), "
                           "colour = epoch; dashed lines: the ceilings log2 N (vertical) and H(Y) (horizontal); "
                           "red frame: some estimate of that layer sits at its ceiling."),
    ("uplots", "U-Plots (paper Fig. 4): I(X;M_i) and I(Y;M_i) against layer index, one line per epoch; dotted: "
               "merge layers; arcs: skip connections (dashed with a cross: removed)."),
    ("kde_bounds", "The KDE estimator's lower and upper bounds of I(X;M_i) and I(Y;M_i) as a band against "
                   "layer index, one band per U-Plot epoch."),
    ("mi_vs_epoch", "I(X;M) and I(Y;M) of each layer against epoch (log axis), ceilings dashed."),
    ("layer_stats", "Weight norm and gradient signal-to-noise ratio of each layer against epoch."),
    ("dice", "Dice coefficient, training (solid) and validation (dashed) (paper Fig. 5), and the loss beside it."),
    ("predictions", "Input, ground truth and predicted masks at several epochs (paper Fig. 6)."),
    ("classes_coarse", "Output classes by spatial coarsening: four masks per class (paper Fig. 2a)."),
    ("classes_kmeans", "Output classes by K-means: four masks per class (paper Fig. 2b)."),
)


def make_figures(run: RunDir | str, *, estimator: str | None = None, setting: str | None = None,
                 labels: str | None = None, uplot_epochs: Sequence[int] | None = None,
                 only: Sequence[str] | None = None,
                 estimates: str | Path | None = None,
                 progress: Callable[[str], None] | None = None) -> tuple[dict[str, Figure], dict[str, str]]:
    """Draw every figure a run's stored results allow, in the style active
    (:func:`figure_style`).

    The MI figures draw the run's mi.csv, or the stored estimate table ``estimates`` names (its
    tag, file name or path), or, when mi.csv lacks ``setting``, the newest stored table holding it
    (:func:`~infoflow.plots._data.figure_table`); U-Plots keep the network's skip arcs either way.

    Returns ``(figures, skipped)``: ``{stem: Figure}`` in :data:`FIGURES` order and
    ``{stem: reason}`` for figures the run cannot give (no MI table, no predictions, ...).
    ``progress``: called with one line per figure as it is drawn ("figures: 2/9 uplots").
    """
    run = run if isinstance(run, RunDir) else RunDir.open(run)
    sel = {"estimator": estimator, "setting": setting, "labels": labels}
    mi, table = _data.figure_table(run, estimates=estimates, estimator=estimator, setting=setting)
    if not mi.empty:  # a selection the table cannot give is the caller's error, not a skipped figure
        select(mi, **sel)
        if uplot_epochs is not None:
            _data.uplot_epochs(mi["epoch"].unique(), uplot_epochs)
    src: Any = run if table is None else mi  # a stored estimate table: drawn with the run's network and name
    net = None if table is None else _data.network_of(run)
    head = None if table is None else f"{_name(run)} ({table}): "
    makers: dict[str, Callable[[], Figure]] = {
        "information_planes": lambda: information_planes(src, title=head, **sel),
        "uplots": lambda: uplots(src, epochs=uplot_epochs, network=net, title=head, **sel),
        "kde_bounds": lambda: kde_bounds(src, epochs=uplot_epochs, setting=setting, labels=labels),
        "mi_vs_epoch": lambda: mi_vs_epoch(src, title=head, **sel),
        "layer_stats": lambda: layer_stats(run),
        "dice": lambda: dice_curves([run], title=f"{_name(run)}: Dice, training (solid), validation (dashed)",
                                    loss=True),
        "predictions": lambda: predicted_masks(run),
        "classes_coarse": lambda: class_examples(run, "coarse"),
        "classes_kmeans": lambda: class_examples(run, "kmeans"),
    }
    figs: dict[str, Figure] = {}
    skipped: dict[str, str] = {}
    todo = [stem for stem, _ in FIGURES if only is None or stem in only]
    for k, stem in enumerate(todo):
        if progress is not None:
            progress(f"figures: {k + 1}/{len(todo)} {stem}")
        try:
            figs[stem] = _style.finish(makers[stem]())
        except RunDamaged:  # a damaged file is an error, never a figure quietly left out
            raise
        except InfoflowError as exc:  # RunError, missing tables: the run cannot give this figure
            skipped[stem] = str(exc)
    return figs, skipped


def _name(run: RunDir) -> str:
    from ._data import run_name

    return run_name(run)


def plot_run(run: RunDir | str, out_dir: str | Path | None = None, *, formats: Sequence[str] = ("png", "pdf"),
             dpi: int = 150, style: str = "tool", epoch_scale: str | None = None, layer_base: int = 0,
             **kwargs: Any) -> tuple[list[Path], dict[str, str]]:
    """Write every figure of ``run`` into ``out_dir`` (default ``RUN/figures``) in ``formats``.

    Returns ``(paths written, {figure: why it was skipped})``. ``style``, ``epoch_scale`` and
    ``layer_base``: as :func:`figure_style` ("paper": no tool titles or frames, linear epoch
    colours, ``layer_base=1`` numbers layers 1-23). PDFs embed TrueType (Type 42) fonts. Keyword
    arguments go to :func:`make_figures` (estimator, setting, labels, uplot_epochs, only, estimates,
    progress).
    """
    run = run if isinstance(run, RunDir) else RunDir.open(run)
    out = Path(out_dir) if out_dir is not None else run.figures_dir
    out.mkdir(parents=True, exist_ok=True)
    with figure_style(style, epoch_scale=epoch_scale, layer_base=layer_base):
        figs, skipped = make_figures(run, **kwargs)
    paths: list[Path] = []
    for stem, fig in figs.items():
        paths += savefig(fig, out / stem, formats, dpi=dpi)
    run.log(f"figures written to {out}: {', '.join(figs)}" + (f"; skipped: {', '.join(skipped)}" if skipped else ""))
    return paths, skipped
