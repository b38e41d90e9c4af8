"""Information planes (paper Fig. 3): one panel per probe layer, x = I(X;M), y = I(Y;M)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from . import _data, _style


def information_planes(source: Any, *, estimator: str | None = None, setting: str | None = None,
                       labels: str | None = None, layers: Sequence[int] | None = None,
                       fig: Figure | None = None, ncols: int | None = None, title: str | None = None,
                       uncertainty: Any = None) -> Figure:
    """Information planes of every probe layer.

    Args:
        source: a run (``RunDir`` or path), a tidy MI table, or a list of them (seeds of one
            model: the panels then show the median across runs with min-max bars).
        estimator, setting, labels: which estimates (default ``kde_upper``, its first setting,
            ``kmeans``).
        layers: probe-layer indices to draw (default: all).
        fig: a figure to draw into (default: a new one).

    Each panel: points coloured by epoch (log colour scale spanning exactly the logged epochs,
    one colour bar for the figure), a thin line joining consecutive epochs, dashed guides at the
    ceilings ``log2 N`` (vertical) and ``H(Y)`` (horizontal). A panel with any estimate at its
    ceiling gets a red frame and the right-hand title "at log2N", "at H(Y)" or "at log2N, H(Y)".

    ``uncertainty``: an uncertainty table (:func:`infoflow.analysis.uncertainty.uncertainty_table`, or the
    path of a ``*.uncertainty.csv``). For every (epoch, layer) it holds for the selection, error
    bars in the epoch's colour: horizontal ``[ci_lo, ci_hi]`` of the I_XM row (``gid="ci-x"``) and
    vertical ``[ci_lo, ci_hi]`` of the I_YM row (``gid="ci-y"``), crossing at the table's values
    (the intervals belong to the run the table was computed from). Without it the figure is
    unchanged.
    """
    pts, sel, n_runs = _data.planes(source, estimator, setting, labels)
    ci = None if uncertainty is None else _data.interval_table(_data.uncertainty_frame(uncertainty), sel)
    all_layers = sorted(pts["layer"].unique())
    layers = all_layers if layers is None else [int(i) for i in layers]
    epochs = sorted(pts["epoch"].unique())
    norm = _style.epoch_norm(epochs)
    n = len(layers)
    fig, axes, nc, cax = _style.panel_figure(n, ncols=ncols, fig=fig, colorbar=True, top=0.7)

    log2n = float(np.nanmax(pts["log2n"])) if pts["log2n"].notna().any() else np.nan
    h_y = float(np.nanmax(pts["h_y"])) if "h_y" in pts and pts["h_y"].notna().any() else np.nan
    xmax = np.nanmax([log2n, np.nanmax(_hi(pts, "I_XM"))]) * 1.06
    ymax = np.nanmax([h_y, np.nanmax(_hi(pts, "I_YM"))]) * 1.08
    xmin = min(0.0, float(np.nanmin(_lo(pts, "I_XM")))) if pts["I_XM"].notna().any() else 0.0
    ymin = min(0.0, float(np.nanmin(_lo(pts, "I_YM")))) if pts["I_YM"].notna().any() else 0.0
    cmap = _style.EPOCH_CMAP

    for i, (ax, layer) in enumerate(zip(axes, layers)):
        d = pts[pts["layer"] == layer].sort_values("epoch")
        ax.set_gid(f"plane-{layer}")
        name = str(d["name"].iloc[0]) if len(d) else ""
        at_ceiling = bool(d["ceil_x"].any()) or bool(d["ceil_y"].any())
        # a long name is cut from the left so the red ceiling tag on the right never covers it
        ax.set_title(panel_title(layer, name, TITLE_CHARS - (12 if at_ceiling else 0)), fontsize=8, loc="left",
                     gid=f"plane-{layer}-title")
        if np.isfinite(log2n):
            ax.axvline(log2n, gid="ceiling-log2n", **_style.CEILING_STYLE)
        if np.isfinite(h_y):
            ax.axhline(h_y, gid="ceiling-h_y", **_style.CEILING_STYLE)
        if n_runs > 1:
            ax.errorbar(d["I_XM"], d["I_YM"], xerr=[d["I_XM"] - d["I_XM_lo"], d["I_XM_hi"] - d["I_XM"]],
                        yerr=[d["I_YM"] - d["I_YM_lo"], d["I_YM_hi"] - d["I_YM"]], fmt="none",
                        ecolor="0.75", elinewidth=0.6, zorder=1)
        ax.plot(d["I_XM"], d["I_YM"], color="0.55", lw=0.6, zorder=2)
        ax.scatter(d["I_XM"], d["I_YM"], c=d["epoch"], cmap=cmap, norm=norm, s=14, edgecolors="none", zorder=3)
        _mark_stacks(ax, d)
        if ci is not None:
            _draw_intervals(ax, ci[ci["layer"] == layer], norm)
        notes = (["log2N"] if bool(d["ceil_x"].any()) else []) + (["H(Y)"] if bool(d["ceil_y"].any()) else [])
        if notes:
            for sp in ax.spines.values():
                sp.set_edgecolor(_style.CEILING_MARK_COLOR)
                sp.set_linewidth(1.4)
            ax.set_title("at " + ", ".join(notes), loc="right", fontsize=6.5, color=_style.CEILING_MARK_COLOR)
            ax.set_gid(f"plane-{layer}-at-ceiling")
        ax.tick_params(labelsize=7)
        if _style.is_bottom(i, n, nc):
            ax.set_xlabel(_style.QTY_LABEL["I_XM"], fontsize=8)
        if i % nc == 0:
            ax.set_ylabel(_style.QTY_LABEL["I_YM"], fontsize=8)
    for ax in axes:  # one scale for all panels
        ax.set_xlim(xmin - 0.02 * (xmax - xmin), xmax)  # points at 0 stay whole
        ax.set_ylim(ymin - 0.03 * (ymax - ymin), ymax)
    _style.epoch_colorbar(fig, norm, cax=cax)
    seeds = f"; median of {n_runs} runs, bars: min-max" if n_runs > 1 else ""
    if ci is not None and ci["level"].notna().any():
        seeds += f"; coloured bars: {float(ci['level'].dropna().iloc[0]):.0%} intervals"
    head = title or _title(source)
    fig.suptitle(f"{head}information planes: {sel.describe()}; dashed: log2 N = {log2n:.2f}, "
                 f"H(Y) = {h_y:.2f} bits{seeds}", fontsize=10)
    return fig


#: Characters of a panel title (layer number and name) at the panels' width.
TITLE_CHARS = 30


def panel_title(layer: int, name: str, chars: int = TITLE_CHARS) -> str:
    """"<layer number>: <name>", the name cut from the left ("...") to at most ``chars`` characters."""
    head = f"{_style.layer_number(layer)}: "
    room = max(chars - len(head), 4)
    return head + (name if len(name) <= room else "\u2026" + name[-(room - 1):])


def _mark_stacks(ax, d: pd.DataFrame) -> None:
    """Several epochs on one point (all at a ceiling, say) would hide each other: a count
    "x<k>" beside each point that holds more than one (``gid="stack-<k>"``)."""
    pts = d.dropna(subset=["I_XM", "I_YM"])
    if len(pts) < 2:
        return
    key = pd.DataFrame({"x": pts["I_XM"].round(3), "y": pts["I_YM"].round(3)})
    for (x, y), grp in key.groupby(["x", "y"]):
        if len(grp) > 1:
            ax.annotate(f"\u00d7{len(grp)}", (x, y), xytext=(3, -3), textcoords="offset points", fontsize=6.5,
                        ha="left", va="top", color="0.2", zorder=4, gid=f"stack-{len(grp)}")


def _draw_intervals(ax, c: pd.DataFrame, norm) -> None:
    """Error bars of one panel: x = I(X;M) interval at the point's I(Y;M), y = the converse."""
    from matplotlib import colormaps

    cmap = colormaps[_style.EPOCH_CMAP]
    c = c.dropna(subset=["I_XM", "I_YM"])
    x = c.dropna(subset=["I_XM_lo", "I_XM_hi"])
    if len(x):
        ax.hlines(x["I_YM"], x["I_XM_lo"], x["I_XM_hi"], colors=[cmap(norm(e)) for e in x["epoch"]], lw=0.9,
                  zorder=2.5, gid="ci-x")
    y = c.dropna(subset=["I_YM_lo", "I_YM_hi"])
    if len(y):
        ax.vlines(y["I_XM"], y["I_YM_lo"], y["I_YM_hi"], colors=[cmap(norm(e)) for e in y["epoch"]], lw=0.9,
                  zorder=2.5, gid="ci-y")


def _hi(pts: pd.DataFrame, c: str) -> pd.Series:
    return pts[f"{c}_hi"] if f"{c}_hi" in pts else pts[c]


def _lo(pts: pd.DataFrame, c: str) -> pd.Series:
    return pts[f"{c}_lo"] if f"{c}_lo" in pts else pts[c]


def _title(source: Any) -> str:
    run = _data.first_run(source) if not isinstance(source, pd.DataFrame) else None
    return f"{_data.run_name(run)}: " if run is not None else ""
