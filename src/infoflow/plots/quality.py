"""How far an estimate can be trusted, drawn: intervals, permutation baselines and ceilings.

* :func:`uplot_intervals` -- for one logged epoch of an uncertainty table
  (:func:`infoflow.analysis.uncertainty.uncertainty_table`, ``infoflow estimate --uncertainty``), one column
  per kernel-width setting and two rows, I(X;M_i) and I(Y;M_i) against layer index i: the estimate
  with its subsampling interval ``[ci_lo, ci_hi]``, the permutation baseline of I(Y;M) (mean
  dashed, band up to ``baseline_hi``) and the ceilings log2 N and H(Y) (dotted).

:func:`~infoflow.plots.information_planes` and :func:`~infoflow.plots.uplots` take the same
table as ``uncertainty=`` and add error bars to their points.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..errors import InfoflowError
from ..models.unet import layout_from_config
from ..network import NetworkLayout
from ..runs import RunDir
from . import _data, _style
from .uplots import draw_ceiling, layer_axis

__all__ = ["uplot_intervals", "quality_selection"]

QUANTITIES = ("I_XM", "I_YM")
_ROW_LABEL = {"I_XM": "I(X;M_i) (bits)", "I_YM": "I(Y;M_i) (bits)"}
BASELINE_COLOR = "0.35"
CHANCE_FACE = "white"


def quality_selection(unc: pd.DataFrame, *, epoch: int | None = None, labels: str | None = None,
                      estimator: str | None = "kde_upper") -> tuple[int, str, str, list[str]]:
    """Resolve what :func:`uplot_intervals` and the report's quality table show:
    ``(epoch, estimator, labels, settings)``. Defaults: the last epoch of the estimator's rows,
    labels ``kmeans`` (else the first with I(Y;M) rows), every setting in table order; a choice
    the table does not have is an error that lists what it has."""
    ests = list(dict.fromkeys(unc["estimator"].astype(str)))
    est = estimator if estimator is not None else (_data.DEFAULT_ESTIMATOR if _data.DEFAULT_ESTIMATOR in ests
                                                   else ests[0])
    rows = unc[unc["estimator"].astype(str) == est]
    if rows.empty:
        raise InfoflowError(f"the uncertainty table has no {est!r} rows; it has {', '.join(ests)}")
    epochs = sorted(int(e) for e in rows["epoch"].unique())
    e = epochs[-1] if epoch is None else int(epoch)
    if e not in epochs:
        raise InfoflowError(f"the uncertainty table has no {est} rows at epoch {e}; it has epochs {epochs}")
    rows = rows[rows["epoch"] == e]
    labs = list(dict.fromkeys(rows.loc[rows["quantity"] == "I_YM", "labels"].astype(str)))
    if labels is None:
        lab = _data.DEFAULT_LABELS if _data.DEFAULT_LABELS in labs else (labs[0] if labs else "none")
    else:
        lab = str(labels)
        if lab not in labs:
            raise InfoflowError(f"the uncertainty table has no I(Y;M) rows with labels {lab!r} ({est}, epoch {e}); "
                                f"it has {labs}")
    return e, est, lab, list(dict.fromkeys(rows["setting"].astype(str)))


def uplot_intervals(unc: Any, *, epoch: int | None = None, labels: str | None = None,
                    estimator: str = "kde_upper", settings: Sequence[str] | None = None,
                    network: NetworkLayout | None = None, run: RunDir | str | os.PathLike | None = None,
                    fig: Figure | None = None, title: str | None = None) -> Figure:
    """Estimates with intervals, permutation baselines and ceilings against layer index.

    Args:
        unc: an uncertainty table (DataFrame with the columns of
            :data:`infoflow.analysis.uncertainty.UNCERTAINTY_COLUMNS`) or the path of a ``*.uncertainty.csv``.
        epoch: the logged epoch to show (default: the last in the table).
        labels: the labelling of I(Y;M) (default ``kmeans``, else the first).
        estimator: which estimator's rows (default ``kde_upper``).
        settings: kernel-width settings to show, one column each (default: all, in table order).
        network: probe layers and skips for the merge markers and skip arcs (default: from ``run``'s
            config; without either, none are drawn).
        run: the run the table belongs to (network and figure title).
        fig: a figure to draw into (default: a new one).

    Axes have ``gid="quality-<quantity>-<setting>"``; in each, the estimate line (``gid="estimate"``),
    its interval bars (a LineCollection, ``gid="ci"``: one segment per layer from ``ci_lo`` to
    ``ci_hi``), the ceiling (dotted, ``gid="ceiling"``) and, for I(Y;M), the permutation
    baseline (``gid="baseline-mean"``, dashed; ``gid="baseline-band"`` from the mean up to
    ``baseline_hi``) and open markers where I(Y;M) is not above it (``gid="chance"``:
    ``p_value > 1 - level``). Rows share their y range, so settings compare directly.
    """
    table = _data.uncertainty_frame(unc)
    e, est, lab, all_settings = quality_selection(table, epoch=epoch, labels=labels, estimator=estimator)
    if settings is None:
        sts = all_settings
    else:
        sts = [str(s) for s in settings]
        bad = [s for s in sts if s not in all_settings]
        if bad or not sts:
            raise InfoflowError(f"the uncertainty table has no {est} rows of setting(s) {bad} at epoch {e}; "
                                f"it has {all_settings}")
    rows = table[(table["estimator"].astype(str) == est) & (table["epoch"] == e)]
    run_dir = _data.as_run(run) if run is not None else None
    net = network if network is not None else (
        layout_from_config(run_dir.read_config()) if run_dir is not None else None)
    ncols = len(sts)
    if fig is None:
        fig = _style.new_figure(max(7.0, 0.8 + 3.5 * ncols), 6.8)
    else:
        _style.ensure_canvas(fig)
    axes = fig.subplots(2, ncols, squeeze=False)
    cis = {st: _data.interval_table(rows, _data.Selection(est, st, lab)) for st in sts}
    layers = sorted(int(i) for i in rows["layer"].unique())
    level = float(rows["level"].dropna().iloc[0]) if "level" in rows and rows["level"].notna().any() else np.nan
    for i, q in enumerate(QUANTITIES):
        top, bottom = 0.0, 0.0
        for j, st in enumerate(sts):
            ax = axes[i][j]
            ax.set_gid(f"quality-{q}-{st}")
            t, b = _draw_quantity(ax, cis[st], q, legend=(j == 0))
            top, bottom = max(top, t), min(bottom, b)
            if i == 0:
                kv = cis[st]["kernel_var"].median() if "kernel_var" in cis[st] else np.nan
                ax.set_title(st + (f"\nmedian kernel variance {kv:.3g}" if np.isfinite(kv) else ""), fontsize=9)
        for j in range(ncols):
            layer_axis(axes[i][j], layers, bottom=bottom, top=top, ylabel=_ROW_LABEL[q] if j == 0 else None,
                       network=net)
            axes[i][j].tick_params(labelsize=7)
            if len(layers) > 12:  # every other layer number, so that they stay readable
                axes[i][j].set_xticklabels([str(x) if k % 2 == 0 else "" for k, x in enumerate(layers)])
    handles = _legend_handles(level)
    width = float(fig.get_size_inches()[0])
    fig.legend(handles, [h.get_label() for h in handles], loc="outside lower center",
               ncols=len(handles) if width >= 13 else 3, fontsize=7.5, frameon=False)
    head = title if title is not None else (f"{_data.run_name(run_dir)}: " if run_dir is not None else "")
    n = int(rows["n"].iloc[0]) if "n" in rows and len(rows) else None
    lvl = f"{level:.0%} " if np.isfinite(level) else ""
    what = (f"bars: {lvl}subsampling intervals; dashed: permutation baseline of I(Y;M) (band up to its upper "
            f"percentile); dotted: ceilings log2 N and H(Y); all in bits")
    fig.suptitle(f"{head}estimate quality at epoch {e}: {est}, Y: {lab}" + (f", N = {n}" if n else "") + "\n"
                 + textwrap.fill(what, width=max(60, int(width * 13))), fontsize=10)
    return fig


def _draw_quantity(ax, ci: pd.DataFrame, q: str, *, legend: bool) -> tuple[float, float]:
    """One panel; returns the highest and lowest value drawn (for the row's common y range)."""
    d = ci.dropna(subset=[q]).sort_values("layer")
    color = _style.QTY_COLOR[q]
    top, bottom = 0.0, 0.0
    if q == "I_YM":
        b = d.dropna(subset=["baseline_mean", "baseline_hi"])
        if len(b):
            ax.fill_between(b["layer"], b["baseline_mean"], b["baseline_hi"], color=BASELINE_COLOR,
                            alpha=_style.BAND_ALPHA, lw=0, zorder=1, gid="baseline-band")
            ax.plot(b["layer"], b["baseline_mean"], ls="--", lw=1.0, color=BASELINE_COLOR, zorder=1.5,
                    gid="baseline-mean")
            top = max(top, float(np.nanmax(b["baseline_hi"])))
    ax.plot(d["layer"], d[q], color=color, marker="o", ms=3.4, lw=1.2, zorder=3, gid="estimate")
    ok = d.dropna(subset=[f"{q}_lo", f"{q}_hi"])
    if len(ok):
        ax.vlines(ok["layer"], ok[f"{q}_lo"], ok[f"{q}_hi"], colors=[color], lw=2.0, alpha=0.55, zorder=2.5, gid="ci")
        top = max(top, float(np.nanmax(ok[f"{q}_hi"])))
        bottom = min(bottom, float(np.nanmin(ok[f"{q}_lo"])))
    if len(d):
        top = max(top, float(np.nanmax(d[q])))
        bottom = min(bottom, float(np.nanmin(d[q])))
    if q == "I_YM":
        chance = d[(d["p_value"] > 1.0 - d["level"])] if d["p_value"].notna().any() else d.iloc[:0]
        if len(chance):
            ax.plot(chance["layer"], chance[q], ls="none", marker="o", ms=4.2, mfc=CHANCE_FACE, mec=color,
                    mew=1.0, zorder=3.5, gid="chance")
    ceil = d[f"{q}_ceiling"].dropna()
    if len(ceil):
        value = float(ceil.max())
        draw_ceiling(ax, value, "log2 N" if q == "I_XM" else "H(Y)", ls=":")
        top = max(top, value)
    return top, bottom


def _legend_handles(level: float) -> list[Line2D]:
    lvl = f"{level:.0%} " if np.isfinite(level) else ""
    return [
        Line2D([], [], color=_style.QTY_COLOR["I_XM"], marker="o", ms=3.4, lw=1.2, label="I(X;M_i)"),
        Line2D([], [], color=_style.QTY_COLOR["I_YM"], marker="o", ms=3.4, lw=1.2, label="I(Y;M_i)"),
        Line2D([], [], color="0.5", lw=2.0, alpha=0.55, label=f"{lvl}interval"),
        Line2D([], [], color=BASELINE_COLOR, ls="--", lw=1.0, label="permutation baseline (band: up to its upper "
                                                                        "percentile)"),
        Line2D([], [], ls="none", marker="o", ms=4.2, mfc=CHANCE_FACE, mec=_style.QTY_COLOR["I_YM"],
               label="I(Y;M) not above the baseline"),
        Line2D([], [], color="0.45", ls=":", lw=0.8, label="ceiling (log2 N, H(Y))"),
    ]
