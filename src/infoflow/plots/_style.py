"""Figure creation and styling shared by every plot (Agg canvas, no pyplot state).

Figures are made with :class:`matplotlib.figure.Figure` and an explicit Agg canvas, so plotting
never touches pyplot's global figure list (nothing to close, safe in threads and in servers);
a caller that passes its own ``ax``/``fig`` (e.g. from pyplot) draws into that instead.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
from matplotlib import colors as mcolors
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

#: Tick labels as plain numbers ("200", "0.5"), never "2 x 10^2".
PLAIN = FuncFormatter(lambda v, _pos: f"{v:g}")

#: Colour map of epochs: dark early epochs, yellow at the last logged epoch (as in the paper).
EPOCH_CMAP = "plasma"
#: Colour map of layer indices (weight norms, gradient SNR).
LAYER_CMAP = "viridis"
CEILING_STYLE = {"ls": "--", "lw": 0.8, "color": "0.45", "zorder": 0}
CEILING_MARK_COLOR = "#c0392b"
QTY_LABEL = {"I_XM": "I(X;M) (bits)", "I_YM": "I(Y;M) (bits)"}
QTY_COLOR = {"I_XM": "C0", "I_YM": "C1"}
BAND_ALPHA = 0.2

#: Figure styles: "tool" (titles saying what is drawn, log epoch colours) and "paper" (no titles
#: or frames, the paper's linear epoch colour scale unless asked otherwise).
STYLES: tuple[str, ...] = ("tool", "paper")
_STYLE: contextvars.ContextVar[dict] = contextvars.ContextVar(
    "infoflow_plot_style", default={"style": "tool", "epoch_scale": "log", "layer_base": 0})


def current_style() -> dict:
    """The active style settings: ``style``, ``epoch_scale`` ("log" or "linear"), ``layer_base``
    (0: layers numbered from 0 as infoflow names them; 1: numbered 1-23 as in the paper)."""
    return dict(_STYLE.get())


@contextlib.contextmanager
def figure_style(style: str = "tool", *, epoch_scale: str | None = None, layer_base: int = 0) -> Iterator[dict]:
    """Draw figures in ``style`` within the block: "paper" drops the tool's figure titles and the
    axes' top and right frame lines and colours epochs linearly (as the paper's Fig. 3) unless
    ``epoch_scale`` says "log"; ``layer_base`` 1 numbers layers from 1 (the paper's 1-23)."""
    from ..errors import ConfigError

    if style not in STYLES:
        raise ConfigError(f"--style must be one of {', '.join(STYLES)}, got {style!r}")
    scale = epoch_scale or ("linear" if style == "paper" else "log")
    if scale not in ("log", "linear"):
        raise ConfigError(f"the epoch colour scale is 'log' or 'linear', got {scale!r}")
    if layer_base not in (0, 1):
        raise ConfigError(f"layers are numbered from 0 or 1, got {layer_base!r}")
    token = _STYLE.set({"style": style, "epoch_scale": scale, "layer_base": int(layer_base)})
    try:
        yield current_style()
    finally:
        _STYLE.reset(token)


def layer_number(index: int) -> int:
    """The number a figure shows for probe layer ``index`` (0-based, or 1-based in paper numbering)."""
    return int(index) + int(_STYLE.get()["layer_base"])


def finish(fig: Figure) -> Figure:
    """Apply the active style to a finished figure: "paper" removes the figure title and the axes'
    top and right frame lines (colour bars keep theirs)."""
    if _STYLE.get()["style"] != "paper":
        return fig
    if fig._suptitle is not None:
        fig._suptitle.set_text("")
        fig._suptitle.set_visible(False)
    for ax in fig.axes:
        if ax.get_gid() == "epoch-colorbar" or ax.get_label() == "<colorbar>":
            continue
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    for lg in fig.legends:
        lg.set_frame_on(False)
    return fig


def new_figure(width: float, height: float, *, layout: str | None = "constrained") -> Figure:
    fig = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(fig)
    return fig


def ensure_canvas(fig: Figure) -> Figure:
    """Give a bare Figure an Agg canvas (figures from pyplot already have one)."""
    if fig.canvas is None or type(fig.canvas).__name__ == "FigureCanvasBase":
        FigureCanvasAgg(fig)
    return fig


def epoch_norm(epochs: Iterable[int]) -> mcolors.Normalize:
    """Colour norm whose range is exactly the logged epochs (min to max): log, or linear in the
    paper style (:func:`figure_style`)."""
    e = np.asarray(sorted({int(x) for x in epochs}), dtype=float)
    if e.size == 0:
        return mcolors.LogNorm(vmin=1, vmax=10)
    lo, hi = float(e.min()), float(e.max())
    if lo == hi:  # a single logged epoch: a degenerate range still needs two ends
        return mcolors.Normalize(vmin=lo - 0.5, vmax=hi + 0.5)
    if _STYLE.get()["epoch_scale"] == "linear":
        return mcolors.Normalize(vmin=lo, vmax=hi)
    return mcolors.LogNorm(vmin=max(lo, 1e-9), vmax=hi)


def integer_epochs(axis) -> None:
    """Integer tick marks on an epoch axis (a short run gets 1, 2, 3, never 1.5)."""
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def epoch_colorbar(fig: Figure, norm: mcolors.Normalize, ax=None, *, cax=None, label: str = "epoch", **kw):
    from matplotlib.cm import ScalarMappable
    from matplotlib.ticker import LogLocator

    sm = ScalarMappable(norm=norm, cmap=EPOCH_CMAP)
    cb = fig.colorbar(sm, ax=ax, cax=cax, **kw)
    cb.set_label(f"{label} ({'log' if isinstance(norm, mcolors.LogNorm) else 'linear'} colour scale)")
    if not isinstance(norm, mcolors.LogNorm):
        integer_epochs(cb.ax.yaxis)
    if isinstance(norm, mcolors.LogNorm):
        cb.ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        cb.ax.yaxis.set_major_formatter(PLAIN)
        cb.ax.yaxis.set_minor_formatter(PLAIN if norm.vmax / norm.vmin < 20 else NullFormatter())
    cb.ax.set_gid("epoch-colorbar")
    return cb


def log_epoch_axis(ax, span: float) -> None:
    """Log x axis of epochs with plain numbers (1, 10, 100; minor ticks labelled when the axis
    spans less than about one decade)."""
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(PLAIN)
    ax.xaxis.set_minor_formatter(PLAIN if span < 15 else NullFormatter())


def grid_shape(n: int, ncols: int | None = None) -> tuple[int, int]:
    if ncols is None:
        ncols = max(1, int(np.ceil(np.sqrt(n))))
    return int(np.ceil(n / ncols)), ncols


def panel_figure(n: int, *, ncols: int | None = None, fig: Figure | None = None, panel: tuple[float, float] = (2.1, 1.65),
                 colorbar: bool = False, top: float = 0.55, bottom: float = 0.55):
    """A grid of ``n`` panels with a fixed layout (no constrained layout: a 23-panel figure with
    it takes seconds per draw). Axes are not shared; callers give every panel the same limits.

    Returns ``(fig, axes, ncols, cax)``; ``cax`` is an axes for a colour bar at the right
    (None unless ``colorbar``). Tick labels show on the left column and on the lowest panel of
    each column; ``fig`` (when given) keeps its size.
    """
    nrows, ncols = grid_shape(n, ncols)
    left, right = 0.7, (1.05 if colorbar else 0.25)
    wgap, hgap = 0.32, 0.5
    pw, ph = panel
    width = left + right + ncols * pw + (ncols - 1) * wgap
    height = top + bottom + nrows * ph + (nrows - 1) * hgap
    if fig is None:
        fig = new_figure(width, height, layout=None)
    else:
        ensure_canvas(fig)
        fig.set_layout_engine(None)
        width, height = fig.get_size_inches()
        pw = (width - left - right - (ncols - 1) * wgap) / ncols
        ph = (height - top - bottom - (nrows - 1) * hgap) / nrows
    axes = []
    for i in range(n):
        r, c = divmod(i, ncols)
        x0 = left + c * (pw + wgap)
        y0 = height - top - (r + 1) * ph - r * hgap
        ax = fig.add_axes((x0 / width, y0 / height, pw / width, ph / height))
        ax.xaxis.set_tick_params(labelbottom=is_bottom(i, n, ncols))
        ax.yaxis.set_tick_params(labelleft=(c == 0))
        axes.append(ax)
    cax = None
    if colorbar:
        x0 = left + ncols * pw + (ncols - 1) * wgap + 0.25
        h = min(height - top - bottom, max(2.5, 0.6 * (height - top - bottom)))
        y0 = bottom + (height - top - bottom - h) / 2
        cax = fig.add_axes((x0 / width, y0 / height, 0.16 / width, h / height))
    return fig, axes, ncols, cax


def is_bottom(i: int, n: int, ncols: int) -> bool:
    return i + ncols >= n


def savefig(fig: Figure, stem: Path, formats: Sequence[str] = ("png", "pdf"), *, dpi: int = 150) -> list[Path]:
    """Write ``fig`` as ``stem.<fmt>`` for each format (atomically); returns the paths."""
    from ..runs import atomic_path

    import matplotlib

    out = []
    for fmt in formats:
        target = Path(f"{stem}.{fmt}")
        # TrueType (Type 42) fonts embedded whole in PDF and PostScript, as journals ask
        with atomic_path(target) as tmp, matplotlib.rc_context({"pdf.fonttype": 42, "ps.fonttype": 42}):
            fig.savefig(tmp, format=fmt, dpi=dpi)
        out.append(target)
    return out


def png_bytes(fig: Figure, *, dpi: int = 110) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
