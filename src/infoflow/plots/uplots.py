"""U-Plots (paper Fig. 4): I(X;M_i) and I(Y;M_i) against layer index i, one line per epoch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import patches
from matplotlib import transforms as mtransforms
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from . import _data, _style

#: Fraction of the y axis the data may use; the band above holds the skip-connection arcs.
DATA_FRACTION = 0.78


def uplot(source: Any, quantity: str = "I_XM", *, epochs: Sequence[int] | None = None,
          estimator: str | None = None, setting: str | None = None, labels: str | None = None,
          network: _data.Network | None = None, ax: Axes | None = None, colorbar: bool = True) -> Figure:
    """One U-Plot: ``quantity`` (``"I_XM"`` or ``"I_YM"``) against probe-layer index.

    One line per selected epoch (default: the paper code's 1, 10, 100, 500, 1000, 2000, 5000,
    9900, each moved to the nearest logged epoch), coloured on a log scale spanning the logged
    epochs. Merge layers get vertical dotted markers (``gid="merge-<i>"``); skip connections are
    arcs from source to merge layer above the data (``gid="skip-<src>-<merge>"``): solid when
    the model has the skip, dashed grey with a cross when it was removed. Several runs (seeds):
    the median line with a min-max band.
    """
    if quantity not in ("I_XM", "I_YM"):
        raise ValueError(f"quantity must be 'I_XM' or 'I_YM', got {quantity!r}")
    pts, sel, n_runs = _data.planes(source, estimator, setting, labels)
    net = _data.network_of(source, network)
    logged = sorted(pts["epoch"].unique())
    chosen = _data.uplot_epochs(logged, epochs)
    norm = _style.epoch_norm(logged)
    if ax is None:
        fig = _style.new_figure(7.0, 4.2)
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    cmap = __import__("matplotlib").colormaps[_style.EPOCH_CMAP]

    top = 0.0
    for e in chosen:
        d = pts[pts["epoch"] == e].sort_values("layer")
        color = cmap(norm(e))
        if n_runs > 1:
            ax.fill_between(d["layer"], d[f"{quantity}_lo"], d[f"{quantity}_hi"], color=color,
                            alpha=_style.BAND_ALPHA, lw=0, gid=f"band-{e}")
            top = max(top, float(np.nanmax(d[f"{quantity}_hi"])))
        ax.plot(d["layer"], d[quantity], color=color, marker="o", ms=3.2, lw=1.3, label=f"epoch {e}",
                gid=f"epoch-{e}")
        if len(d):
            top = max(top, float(np.nanmax(d[quantity])))
    ceiling = float(np.nanmax(pts["log2n"])) if quantity == "I_XM" else (
        float(np.nanmax(pts["h_y"])) if pts["h_y"].notna().any() else np.nan)
    if np.isfinite(ceiling):
        ax.axhline(ceiling, gid="ceiling", **_style.CEILING_STYLE)
        ax.annotate("log2 N" if quantity == "I_XM" else "H(Y)", (1.0, ceiling), xycoords=("axes fraction", "data"),
                    xytext=(-2, 2), textcoords="offset points", ha="right", va="bottom", fontsize=7, color="0.4")
        top = max(top, ceiling)
    top = top if top > 0 else 1.0
    ax.set_ylim(min(0.0, float(np.nanmin(pts[quantity])) if pts[quantity].notna().any() else 0.0),
                top / DATA_FRACTION)
    layers = sorted(pts["layer"].unique())
    ax.set_xlim(min(layers) - 0.6, max(layers) + 0.6)
    ax.set_xticks(layers)
    ax.tick_params(axis="x", labelsize=7)
    ax.set_xlabel("layer index i")
    ax.set_ylabel(_style.QTY_LABEL[quantity].replace("M)", "M_i)"))
    if net is not None:
        draw_skips(ax, net)
    seeds = f" (median of {n_runs} runs, band: min-max)" if n_runs > 1 else ""
    ax.set_title(f"{'I(X;M_i)' if quantity == 'I_XM' else 'I(Y;M_i)'}: {sel.describe()}{seeds}", fontsize=9)
    if colorbar:
        _style.epoch_colorbar(fig, norm, ax)
    return fig


def draw_skips(ax: Axes, net: _data.Network) -> None:
    """Merge-layer markers and skip arcs (in the band above DATA_FRACTION of the y axis)."""
    trans = mtransforms.blended_transform_factory(ax.transData, ax.transAxes)
    present = set(net.present_pairs)
    merging = {m for _, m in net.present_pairs}
    for m in net.merges:
        on = m in merging
        ax.axvline(m, ymax=DATA_FRACTION, ls=":", lw=1.0 if on else 0.8, color="0.3" if on else "0.7", zorder=0,
                   gid=f"merge-{m}")
    spans = sorted(net.skips, key=lambda p: p[1] - p[0])
    base = DATA_FRACTION + 0.01
    room = 0.985 - base
    for k, (s, m) in enumerate(spans):
        height = room * (k + 1) / max(len(spans), 1)
        on = (s, m) in present
        arc = patches.Arc(((s + m) / 2, base), m - s, 2 * height, theta1=0, theta2=180, transform=trans,
                          color="0.15" if on else "0.6", lw=1.2 if on else 1.0, ls="-" if on else "--",
                          gid=f"skip-{s}-{m}", label=f"skip {s}->{m}" + ("" if on else " (removed)"))
        ax.add_patch(arc)
        if not on:
            ax.text((s + m) / 2, base + height, "x", transform=trans, ha="center", va="center", fontsize=9,
                    color="#c0392b", fontweight="bold", gid=f"skip-{s}-{m}-removed")


def uplots(source: Any, *, epochs: Sequence[int] | None = None, estimator: str | None = None,
           setting: str | None = None, labels: str | None = None, network: _data.Network | None = None,
           fig: Figure | None = None, title: str | None = None) -> Figure:
    """Both U-Plots side by side (I(X;M_i) left, I(Y;M_i) right) with one epoch colour bar."""
    if fig is None:
        fig = _style.new_figure(13.0, 4.4)
    else:
        _style.ensure_canvas(fig)
    ax_x, ax_y = fig.subplots(1, 2)
    uplot(source, "I_XM", epochs=epochs, estimator=estimator, setting=setting, labels=labels, network=network,
          ax=ax_x, colorbar=False)
    uplot(source, "I_YM", epochs=epochs, estimator=estimator, setting=setting, labels=labels, network=network,
          ax=ax_y, colorbar=False)
    pts, _, _ = _data.planes(source, estimator, setting, labels)
    _style.epoch_colorbar(fig, _style.epoch_norm(pts["epoch"].unique()), [ax_x, ax_y])
    handles, lab = ax_y.get_legend_handles_labels()
    ax_y.legend([h for h, t in zip(handles, lab) if t.startswith("epoch")],
                [t for t in lab if t.startswith("epoch")], fontsize=7, loc="best", ncols=2)
    head = title or (f"{_data.run_name(r)}: " if (r := _first(source)) is not None else "")
    fig.suptitle(f"{head}U-Plots", fontsize=10)
    return fig


def _first(source: Any):
    return None if isinstance(source, pd.DataFrame) else _data.first_run(source)
