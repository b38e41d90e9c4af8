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

from ..network import NetworkLayout
from . import _data, _style

#: Fraction of the y axis the data may use; the band above holds the skip-connection arcs.
DATA_FRACTION = 0.78


def uplot(source: Any, quantity: str = "I_XM", *, epochs: Sequence[int] | None = None,
          estimator: str | None = None, setting: str | None = None, labels: str | None = None,
          network: NetworkLayout | None = None, ax: Axes | None = None, colorbar: bool = True,
          uncertainty: Any = None) -> Figure:
    """One U-Plot: ``quantity`` (``"I_XM"`` or ``"I_YM"``) against probe-layer index.

    One line per selected epoch (default: the paper code's 1, 10, 100, 500, 1000, 2000, 5000,
    9900, each moved to the nearest logged epoch), coloured on a log scale spanning the logged
    epochs. Merge layers get vertical dotted markers (``gid="merge-<i>"``); skip connections are
    arcs from source to merge layer above the data (``gid="skip-<src>-<merge>"``): solid when
    the model has the skip, dashed grey with a cross when it was removed. Several runs (seeds):
    the median line with a min-max band.

    ``uncertainty``: an uncertainty table (:func:`infoflow.analysis.uncertainty.uncertainty_table`, or the
    path of a ``*.uncertainty.csv``); for each drawn epoch it holds for the selection, vertical
    error bars ``[ci_lo, ci_hi]`` in the epoch's colour (``gid="ci-<epoch>"``). Without it the
    figure is unchanged.
    """
    if quantity not in ("I_XM", "I_YM"):
        raise ValueError(f"quantity must be 'I_XM' or 'I_YM', got {quantity!r}")
    pts, sel, n_runs = _data.planes(source, estimator, setting, labels)
    net = _data.network_of(source, network)
    ci = None if uncertainty is None else _data.interval_table(_data.uncertainty_frame(uncertainty), sel)
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
        if ci is not None:
            c = ci[ci["epoch"] == e].dropna(subset=[f"{quantity}_lo", f"{quantity}_hi"]).sort_values("layer")
            if len(c):
                ax.vlines(c["layer"], c[f"{quantity}_lo"], c[f"{quantity}_hi"], colors=[color], lw=1.0,
                          zorder=2.5, gid=f"ci-{e}")
                top = max(top, float(np.nanmax(c[f"{quantity}_hi"])))
    ceiling = float(np.nanmax(pts["log2n"])) if quantity == "I_XM" else (
        float(np.nanmax(pts["h_y"])) if pts["h_y"].notna().any() else np.nan)
    if np.isfinite(ceiling):
        draw_ceiling(ax, ceiling, "log2 N" if quantity == "I_XM" else "H(Y)")
        top = max(top, ceiling)
    bottom = min(0.0, float(np.nanmin(pts[quantity])) if pts[quantity].notna().any() else 0.0)
    layer_axis(ax, sorted(pts["layer"].unique()), bottom=bottom, top=top,
               ylabel=_style.QTY_LABEL[quantity].replace("M)", "M_i)"), network=net)
    seeds = f" (median of {n_runs} runs, band: min-max)" if n_runs > 1 else ""
    if ci is not None and ci["level"].notna().any():
        seeds += f"; bars: {float(ci['level'].dropna().iloc[0]):.0%} intervals"
    ax.set_title(f"{'I(X;M_i)' if quantity == 'I_XM' else 'I(Y;M_i)'}: {sel.describe()}{seeds}", fontsize=9)
    if colorbar:
        _style.epoch_colorbar(fig, norm, ax)
    return fig


def draw_ceiling(ax: Axes, value: float, text: str, *, ls: str = "--", gid: str = "ceiling") -> None:
    """A horizontal ceiling line (log2 N, H(Y)) at ``value`` with ``text`` at its right end."""
    ax.axhline(value, gid=gid, **{**_style.CEILING_STYLE, "ls": ls})
    ax.annotate(text, (1.0, value), xycoords=("axes fraction", "data"), xytext=(-2, 2), textcoords="offset points",
                ha="right", va="bottom", fontsize=7, color="0.4", gid=f"{gid}-label")


def layer_axis(ax: Axes, layers: Sequence[int], *, bottom: float, top: float, ylabel: str | None,
               network: NetworkLayout | None = None) -> None:
    """The x axis of a U-Plot (one tick per probe layer) and a y range whose top ``DATA_FRACTION``
    holds the data (``top``) and leaves room above for the skip arcs; merges and skips of
    ``network`` (:func:`draw_skips`)."""
    top = top if top > 0 else 1.0
    ax.set_ylim(bottom, top / DATA_FRACTION)
    ax.set_xlim(min(layers) - 0.6, max(layers) + 0.6)
    ax.set_xticks(list(layers), [str(_style.layer_number(i)) for i in layers])
    ax.tick_params(axis="x", labelsize=7)
    ax.set_xlabel("layer index i" + (" (numbered from 1, as in the paper)" if _style.layer_number(0) else ""))
    if ylabel:
        ax.set_ylabel(ylabel)
    if network is not None:
        draw_skips(ax, network)


#: How skips are drawn, by join kind: concatenations (the U-Net's skips) as arcs, residual
#: additions as thin dotted arcs low in the band.
SKIP_STYLE = {"cat": {"color": "0.15", "lw": 1.2, "ls": "-"}, "add": {"color": "0.45", "lw": 0.7, "ls": ":"}}


def draw_skips(ax: Axes, net: NetworkLayout) -> None:
    """Merge-layer markers and skip arcs (in the band above DATA_FRACTION of the y axis).

    Concatenation skips (join "cat", or unknown) are arcs (``gid="skip-<src>-<merge>"``), solid when
    the model has the skip, dashed grey with a cross when removed; their merge layers get dotted
    vertical markers. Residual additions (join "add") are thin dotted arcs in the lowest part of the
    band (``gid="residual-<src>-<merge>"``) with no merge marker; :func:`skip_legend_handles` says so.
    """
    trans = mtransforms.blended_transform_factory(ax.transData, ax.transAxes)
    present = set(net.present_pairs)
    kind = {p: ("add" if net.join(p) == "add" else "cat") for p in net.skip_pairs}
    cat_pairs = [p for p in net.skip_pairs if kind[p] == "cat"]
    merging = {m for s, m in net.present_pairs if kind[(s, m)] == "cat"}
    for m in sorted({m for _, m in cat_pairs}):
        on = m in merging
        ax.axvline(m, ymax=DATA_FRACTION, ls=":", lw=1.0 if on else 0.8, color="0.3" if on else "0.7", zorder=0,
                   gid=f"merge-{m}")
    base = DATA_FRACTION + 0.01
    room = 0.985 - base
    low = room * (0.3 if cat_pairs else 1.0)  # residual arcs stay below the concatenation arcs
    for s, m in [p for p in net.skip_pairs if kind[p] == "add"]:
        height = low * min(1.0, 0.35 + 0.15 * (m - s))
        ax.add_patch(patches.Arc(((s + m) / 2, base), m - s, 2 * height, theta1=0, theta2=180, transform=trans,
                                 gid=f"residual-{s}-{m}", label=f"residual addition {s}->{m}", **SKIP_STYLE["add"]))
    spans = sorted(cat_pairs, key=lambda p: p[1] - p[0])
    first = room * 0.35 if len(spans) < len(net.skip_pairs) else 0.0
    for k, (s, m) in enumerate(spans):
        height = first + (room - first) * (k + 1) / max(len(spans), 1)
        on = (s, m) in present
        style = SKIP_STYLE["cat"] if on else {"color": "0.6", "lw": 1.0, "ls": "--"}
        arc = patches.Arc(((s + m) / 2, base), m - s, 2 * height, theta1=0, theta2=180, transform=trans,
                          gid=f"skip-{s}-{m}", label=f"skip {s}->{m}" + ("" if on else " (removed)"), **style)
        ax.add_patch(arc)
        if not on:
            ax.text((s + m) / 2, base + height, "x", transform=trans, ha="center", va="center", fontsize=9,
                    color="#c0392b", fontweight="bold", gid=f"skip-{s}-{m}-removed")


def skip_legend_handles(net: NetworkLayout | None) -> list[Any]:
    """Legend entries for the skip arcs :func:`draw_skips` draws: "concatenation skip" (and
    "removed skip", "residual addition") for the kinds ``net`` has."""
    from matplotlib.lines import Line2D

    if net is None or not net.skip_pairs:
        return []
    adds = [p for p in net.skip_pairs if net.join(p) == "add"]
    cats = [p for p in net.skip_pairs if net.join(p) != "add"]
    out = []
    if cats:
        out.append(Line2D([], [], label="arc: concatenation skip", **SKIP_STYLE["cat"]))
    if set(cats) - set(net.present_pairs):
        out.append(Line2D([], [], color="0.6", lw=1.0, ls="--", label="removed skip"))
    if adds:
        out.append(Line2D([], [], label="dotted arc: residual addition", **SKIP_STYLE["add"]))
    return out


def uplots(source: Any, *, epochs: Sequence[int] | None = None, estimator: str | None = None,
           setting: str | None = None, labels: str | None = None, network: NetworkLayout | None = None,
           fig: Figure | None = None, title: str | None = None, uncertainty: Any = None) -> Figure:
    """Both U-Plots side by side (I(X;M_i) left, I(Y;M_i) right) with one epoch colour bar;
    ``uncertainty`` as in :func:`uplot` (error bars from the I_XM and I_YM rows)."""
    if fig is None:
        fig = _style.new_figure(13.0, 4.4)
    else:
        _style.ensure_canvas(fig)
    ax_x, ax_y = fig.subplots(1, 2)
    unc = None if uncertainty is None else _data.uncertainty_frame(uncertainty)
    uplot(source, "I_XM", epochs=epochs, estimator=estimator, setting=setting, labels=labels, network=network,
          ax=ax_x, colorbar=False, uncertainty=unc)
    uplot(source, "I_YM", epochs=epochs, estimator=estimator, setting=setting, labels=labels, network=network,
          ax=ax_y, colorbar=False, uncertainty=unc)
    pts, _, _ = _data.planes(source, estimator, setting, labels)
    _style.epoch_colorbar(fig, _style.epoch_norm(pts["epoch"].unique()), [ax_x, ax_y])
    handles, lab = ax_y.get_legend_handles_labels()
    handles = [h for h, t in zip(handles, lab) if t.startswith("epoch")]
    handles += skip_legend_handles(_data.network_of(source, network))
    # below the axes, never over the data
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6), fontsize=7, frameon=False)
    head = title or (f"{_data.run_name(r)}: " if (r := _first(source)) is not None else "")
    fig.suptitle(f"{head}U-Plots", fontsize=10)
    return fig


def _first(source: Any):
    return None if isinstance(source, pd.DataFrame) else _data.first_run(source)


def kde_bounds(source: Any, *, epochs: Sequence[int] | None = None, setting: str | None = None,
               labels: str | None = None, network: NetworkLayout | None = None, fig: Figure | None = None,
               title: str | None = None) -> Figure:
    """The KDE estimator's lower and upper bounds (``kde_lower`` and ``kde_upper`` rows of the
    MI table, one kernel width) as a band against layer index, one band per selected epoch (as
    :func:`uplot`'s epochs), I(X;M_i) left and I(Y;M_i) right; the upper bound is the line
    (``gid="upper-<epoch>"``), the band reaches down to the lower bound (``gid="bounds-<epoch>"``)."""
    mi = _data.mi_table(_data.as_list(source)[0])
    upper = _data.select(mi, "kde_upper", setting, labels)
    lower = _data.select(mi, "kde_lower", upper.setting, upper.labels)
    hi, lo = _data.plane_table(mi, upper), _data.plane_table(mi, lower)
    both = pd.merge(hi, lo[["epoch", "layer", "I_XM", "I_YM"]], on=["epoch", "layer"], suffixes=("", "_lower"))
    net = _data.network_of(source, network)
    chosen = _data.uplot_epochs(both["epoch"].unique(), epochs)
    norm = _style.epoch_norm(both["epoch"].unique())
    cmap = __import__("matplotlib").colormaps[_style.EPOCH_CMAP]
    if fig is None:
        fig = _style.new_figure(13.0, 4.4)
    else:
        _style.ensure_canvas(fig)
    axes = fig.subplots(1, 2)
    for ax, q in zip(axes, ("I_XM", "I_YM")):
        top = 0.0
        for e in chosen:
            d = both[both["epoch"] == e].sort_values("layer")
            color = cmap(norm(e))
            ax.fill_between(d["layer"], d[f"{q}_lower"], d[q], color=color, alpha=0.3, lw=0, gid=f"bounds-{e}")
            ax.plot(d["layer"], d[q], color=color, lw=1.2, marker="o", ms=2.5, label=f"epoch {e}", gid=f"upper-{e}")
            ax.plot(d["layer"], d[f"{q}_lower"], color=color, lw=0.8, ls="--", gid=f"lower-{e}")
            top = max(top, float(np.nanmax(d[q])) if len(d) else 0.0)
        ceiling = float(np.nanmax(both["log2n"])) if q == "I_XM" else (
            float(np.nanmax(both["h_y"])) if both["h_y"].notna().any() else np.nan)
        if np.isfinite(ceiling):
            draw_ceiling(ax, ceiling, "log2 N" if q == "I_XM" else "H(Y)")
            top = max(top, ceiling)
        bottom = min(0.0, float(np.nanmin(both[f"{q}_lower"])))
        layer_axis(ax, sorted(both["layer"].unique()), bottom=bottom, top=top,
                   ylabel=_style.QTY_LABEL[q].replace("M)", "M_i)"), network=net)
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles, labels = axes[0].get_legend_handles_labels()
    handles = [h for h, t in zip(handles, labels) if t.startswith("epoch")]
    handles += [Line2D([], [], color="0.3", lw=1.2, label="upper bound (kde_upper)"),
                Line2D([], [], color="0.3", lw=0.8, ls="--", label="lower bound (kde_lower)"),
                Patch(color="0.3", alpha=0.3, label="between the bounds")] + skip_legend_handles(net)
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6), fontsize=7, frameon=False)
    _style.epoch_colorbar(fig, norm, list(axes))
    head = title or (f"{_data.run_name(r)}: " if (r := _first(source)) is not None else "")
    fig.suptitle(f"{head}KDE bounds of MI ({upper.setting}, Y: {upper.labels}): lower to upper as a band",
                 fontsize=10)
    return fig
