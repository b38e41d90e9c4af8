"""Curves against epoch: MI per layer, weight norms and gradient SNR, Dice (paper Fig. 5)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from ..errors import InfoflowError, RunError
from ..runs import RunDir
from . import _data, _style


def mi_vs_epoch(source: Any, *, estimator: str | None = None, setting: str | None = None,
                labels: str | None = None, layers: Sequence[int] | None = None, fig: Figure | None = None,
                ncols: int | None = None, title: str | None = None) -> Figure:
    """I(X;M) and I(Y;M) against epoch (log x axis), one panel per probe layer; ceilings dashed.

    Several runs: median lines with min-max bands.
    """
    pts, sel, n_runs = _data.planes(source, estimator, setting, labels)
    layers = sorted(pts["layer"].unique()) if layers is None else [int(i) for i in layers]
    n = len(layers)
    fig, axes, nc, _ = _style.panel_figure(n, ncols=ncols, fig=fig, bottom=0.85)
    log2n = float(np.nanmax(pts["log2n"]))
    h_y = float(np.nanmax(pts["h_y"])) if pts["h_y"].notna().any() else np.nan
    span = float(pts["epoch"].max()) / max(float(pts["epoch"].min()), 1.0)
    for i, (ax, layer) in enumerate(zip(axes, layers)):
        d = pts[pts["layer"] == layer].sort_values("epoch")
        ax.set_gid(f"mi-epoch-{layer}")
        ax.set_title(f"{_style.layer_number(layer)}: {d['name'].iloc[0] if len(d) else ''}", fontsize=8)
        for q, ceil in (("I_XM", log2n), ("I_YM", h_y)):
            color = _style.QTY_COLOR[q]
            if n_runs > 1:
                ax.fill_between(d["epoch"], d[f"{q}_lo"], d[f"{q}_hi"], color=color, alpha=_style.BAND_ALPHA, lw=0)
            ax.plot(d["epoch"], d[q], color=color, lw=1.2, marker="." if len(d) < 30 else None, ms=3, gid=q)
            if np.isfinite(ceil):
                ax.axhline(ceil, ls="--", lw=0.8, color=color, alpha=0.7, zorder=0)
        _style.log_epoch_axis(ax, span)
        ax.tick_params(labelsize=7, which="both")
        if _style.is_bottom(i, n, nc):
            ax.set_xlabel("epoch", fontsize=8)
        if i % nc == 0:
            ax.set_ylabel("bits", fontsize=8)
    handles = [Line2D([], [], color=_style.QTY_COLOR["I_XM"], label="I(X;M)"),
               Line2D([], [], color=_style.QTY_COLOR["I_YM"], label="I(Y;M)"),
               Line2D([], [], color=_style.QTY_COLOR["I_XM"], ls="--", label=f"log2 N = {log2n:.2f}"),
               Line2D([], [], color=_style.QTY_COLOR["I_YM"], ls="--", label=f"H(Y) = {h_y:.2f}")]
    lo = min(0.0, float(np.nanmin(pts[["I_XM", "I_YM"]].to_numpy()))) if len(pts) else 0.0
    hi = float(np.nanmax([log2n, h_y, np.nanmax(pts[["I_XM", "I_YM"]].to_numpy())]))
    if n_runs > 1:
        hi = max(hi, float(np.nanmax(pts[["I_XM_hi", "I_YM_hi"]].to_numpy())))
    for ax in axes:  # one scale for all panels
        ax.set_xlim(float(pts["epoch"].min()) / 1.15, float(pts["epoch"].max()) * 1.15)
        ax.set_ylim(lo - 0.03 * (hi - lo), hi * 1.06)
    fig.legend(handles=handles, loc="lower center", ncols=4, fontsize=8, frameon=False)
    seeds = f"; median of {n_runs} runs, band: min-max" if n_runs > 1 else ""
    head = title or (f"{_data.run_name(r)}: " if (r := _run_of(source)) is not None else "")
    fig.suptitle(f"{head}MI against epoch: {sel.describe()}{seeds}", fontsize=10)
    return fig


def _run_of(source: Any) -> RunDir | None:
    return None if isinstance(source, pd.DataFrame) else _data.first_run(source)


def layer_stats(source: RunDir | str | pd.DataFrame, *, fig: Figure | None = None, title: str | None = None) -> Figure:
    """Weight norm (left) and gradient signal-to-noise ratio ``grad_mean_norm / grad_std_norm``
    (right, log y) of every probe layer against epoch (log x), coloured by layer index."""
    import matplotlib
    from matplotlib import colors as mcolors
    from matplotlib.cm import ScalarMappable

    if isinstance(source, pd.DataFrame):
        st, run = source, None
    else:
        run = _data.as_run(source)
        st = run.read_layer_stats()
    if st.empty:
        raise RunError("no layer statistics (layer_stats.csv is missing or empty)")
    st = st.sort_values(["layer", "epoch"])
    snr = st["grad_mean_norm"] / st["grad_std_norm"].where(st["grad_std_norm"] > 0)
    st = st.assign(snr=snr)
    if fig is None:
        fig = _style.new_figure(12.0, 4.4)
    else:
        _style.ensure_canvas(fig)
    ax_w, ax_s = fig.subplots(1, 2)
    layers = sorted(st["layer"].unique())
    norm = mcolors.Normalize(vmin=min(layers), vmax=max(max(layers), min(layers) + 1))
    cmap = matplotlib.colormaps[_style.LAYER_CMAP]
    for layer in layers:
        d = st[st["layer"] == layer]
        c = cmap(norm(layer))
        ax_w.plot(d["epoch"], d["weight_norm"], color=c, lw=1.0, gid=f"layer-{layer}")
        ok = d["snr"].notna() & (d["snr"] > 0)
        ax_s.plot(d.loc[ok, "epoch"], d.loc[ok, "snr"], color=c, lw=1.0, gid=f"layer-{layer}")
    span = float(st["epoch"].max()) / max(float(st["epoch"].min()), 1.0)
    for ax in (ax_w, ax_s):
        _style.log_epoch_axis(ax, span)
        ax.set_xlabel("epoch")
    ax_w.set_ylabel("weight norm ||W||")
    ax_w.set_title("weight norm per layer", fontsize=9)
    ax_s.set_ylabel("gradient SNR  ||mean g|| / ||std g||")
    if (st["snr"] > 0).any():  # all-NaN gradient statistics cannot be log-scaled
        ax_s.set_yscale("log")
    ax_s.set_title("gradient signal-to-noise per layer (over an epoch's batches)", fontsize=9)
    cb = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=[ax_w, ax_s])
    cb.set_label("layer index")
    cb.ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    head = title or (f"{_data.run_name(run)}: " if run is not None else "")
    fig.suptitle(f"{head}weights and gradients", fontsize=10)
    return fig


# -- Dice ---------------------------------------------------------------------------------------
def default_label(run: RunDir) -> str:
    """Group label of a run: ``config["label"]``, else the model ("Model 2", "skips 1,0,1,1", or
    the network's name), so the seeds of one model fall into one group."""
    cfg = run.read_config()
    if cfg.get("label"):
        return str(cfg["label"])
    if isinstance(cfg.get("network"), Mapping):
        return str(cfg["network"].get("name") or cfg.get("name") or run.path.name)
    model = cfg.get("model") or {}
    if model.get("skips") is not None:
        return "skips " + ",".join(str(int(bool(s))) for s in model["skips"])
    if model.get("model") is not None:
        return f"Model {int(model['model'])}"
    return str(cfg.get("name") or run.path.name)


def group_runs(runs: Any, label: Callable[[RunDir], str] | None = None) -> dict[str, list[RunDir]]:
    """``{label: [runs]}`` from a run, a list of runs (grouped by ``label``) or a mapping."""
    if isinstance(runs, Mapping):
        return {str(k): [_data.as_run(r) for r in (v if isinstance(v, (list, tuple)) else [v])] for k, v in runs.items()}
    label = label or default_label
    out: dict[str, list[RunDir]] = {}
    for r in _data.as_list(runs):
        run = _data.as_run(r)
        if run is None:
            raise InfoflowError("dice_curves takes runs (RunDir or paths), not tables")
        out.setdefault(label(run), []).append(run)
    return out


#: Loss columns of metrics.csv (training solid, validation dashed, as the Dice columns).
LOSS_COLUMNS = (("loss_train", "-"), ("loss_val", "--"))
DICE_COLUMNS = (("dice_train", "-"), ("dice_val", "--"))


def dice_curves(runs: Any, *, label: Callable[[RunDir], str] | None = None, ax: Axes | None = None,
                log_x: bool = False, title: str | None = None, loss: bool = False) -> Figure:
    """Dice on the training split (solid) and the validation split (dashed) against epoch, one
    colour per model (paper Fig. 5). Runs with the same label (seeds) are drawn as their median
    with a min-max band. ``loss``: a second panel beside it with the loss curves (same styles),
    when the runs log a loss and no ``ax`` is given. The legend sits below the axes, never over
    the curves; a linear epoch axis has integer ticks."""
    groups = group_runs(runs, label)
    frames_of = {name: [f for f in (m.read_metrics() for m in members) if not f.empty]
                 for name, members in groups.items()}
    has_loss = any(c in f for fs in frames_of.values() for f in fs for c, _ in LOSS_COLUMNS)
    if ax is None:
        fig = _style.new_figure(11.5 if loss and has_loss else 7.5, 4.8)
        axes = fig.subplots(1, 2) if loss and has_loss else [fig.add_subplot()]
    else:
        fig, axes = ax.figure, [ax]
    panels = [(axes[0], DICE_COLUMNS, "Dice coefficient")] + (
        [(axes[1], LOSS_COLUMNS, "loss")] if len(axes) > 1 else [])
    for k, (name, frames) in enumerate(frames_of.items()):
        color = f"C{k % 10}"
        if not frames:
            continue
        both = pd.concat([f.assign(_run=i) for i, f in enumerate(frames)], ignore_index=True)
        g = both.groupby("epoch")
        for p, (a, cols, _) in enumerate(panels):
            for col, ls in cols:
                if col not in both or both[col].isna().all():  # a user's loop may log only some metrics
                    continue
                med = g[col].median()
                if len(frames) > 1:
                    a.fill_between(med.index, g[col].min(), g[col].max(), color=color, alpha=_style.BAND_ALPHA,
                                   lw=0, gid=f"band-{name}-{col}")
                many = f" (median of {len(frames)})" if len(frames) > 1 else ""
                a.plot(med.index, med.values, color=color, ls=ls, lw=1.3, gid=f"{name}|{col}",
                       label=f"{name}{many}" if p == 0 and col == "dice_train" else None)
    for a, _, ylabel in panels:
        if log_x:
            _style.log_epoch_axis(a, 100)
        else:
            _style.integer_epochs(a.xaxis)
        a.set_xlabel("epoch")
        a.set_ylabel(ylabel)
        a.grid(alpha=0.3)
    axes[0].set_ylim(0, 1.0)
    if len(panels) > 1:
        axes[1].set_title("loss: training (solid), validation (dashed)", fontsize=10)
    handles, labels = axes[0].get_legend_handles_labels()
    handles += [Line2D([], [], color="0.3", ls="-", label="training"),
                Line2D([], [], color="0.3", ls="--", label="validation")]
    fig.legend(handles=handles, fontsize=8, loc="outside lower center", ncols=min(len(handles), 5), frameon=False)
    axes[0].set_title(title or "Dice: training (solid), validation (dashed)", fontsize=10)
    return fig
