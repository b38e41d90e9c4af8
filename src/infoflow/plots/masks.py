"""Mask figures: predicted masks at chosen epochs (paper Fig. 6) and class examples (Fig. 2)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ..errors import InfoflowError, RunError
from ..runs import ProbeRecord, RunDir
from . import _data, _style


def _img(a: np.ndarray) -> np.ndarray:
    """(C, S, S) or (1, S, S) -> something imshow draws."""
    a = np.asarray(a, dtype=np.float32)
    if a.ndim == 3 and a.shape[0] == 1:
        return a[0]
    if a.ndim == 3:
        return np.clip(np.moveaxis(a[:3], 0, -1), 0, 1)
    return a


def prediction_inputs(run: RunDir, n: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Input images and ground truth of the first ``n`` predicted validation images.

    From ``predictions/inputs.npz`` when the run stored it; otherwise the data split is loaded
    again from the run's config (``infoflow.data.load_splits``); (None, None) when that fails.
    """
    stored = run.load_prediction_inputs()
    if stored is not None:
        return stored["images"][:n], stored["masks"][:n]
    try:
        from ..data import load_splits

        splits = load_splits(run.config().data, progress=False)
        return splits.test.images[:n], splits.test.masks[:n]
    except Exception:  # data moved or unreadable: figures without inputs  # noqa: BLE001
        return None, None


def predicted_masks(runs: Any, *, epochs: Sequence[int] | None = None, n_images: int = 3,
                    threshold: float | None = 0.5, label: Callable[[RunDir], str] | None = None,
                    fig: Figure | None = None, title: str | None = None,
                    models_as_rows: bool | None = None) -> Figure:
    """Input, ground truth and each run's predicted mask at chosen epochs (paper Fig. 6).

    ``models_as_rows`` (default when there are several runs; the paper's layout): for each
    validation image one row per run (or per ``{label: run}`` of a mapping), named at its left;
    columns: input and ground truth (in the image's first row), then the epochs. Otherwise one row
    per validation image; columns: input, ground truth, then for each run its prediction at each
    epoch. Default epochs: the paper's
    1,000, 2,000, 5,000, 10,000 moved to the nearest stored epoch; when the runs are shorter than
    that, up to four log-spaced stored epochs. ``threshold``: predictions are shown as masks
    (probability > threshold); None shows the probabilities.
    """
    from .curves import default_label

    if isinstance(runs, Mapping):
        items = [(str(k), _data.as_run(v)) for k, v in runs.items()]
    else:
        lab = label or (lambda r: _data.run_name(r))
        rs = [_data.as_run(r) for r in _data.as_list(runs)]
        names = [lab(r) for r in rs]
        if len(set(names)) < len(names):  # fall back to the model labels, then to the paths
            names = [default_label(r) for r in rs]
            if len(set(names)) < len(names):
                names = [r.path.name for r in rs]
        items = list(zip(names, rs))
    per_run: list[tuple[str, RunDir, list[int]]] = []
    for name, run in items:
        avail = run.prediction_epochs()
        if not avail:
            raise RunError(f"{run.path} has no stored predictions (predictions/ is empty)")
        if epochs is None:
            chosen = _data.nearest_epochs(avail, _data.PAPER_PREDICTION_EPOCHS) if max(avail) >= 1000 \
                else _data.spread_epochs(avail, 4)
        else:
            chosen = [e for e in epochs if e in avail]
            if not chosen:
                raise InfoflowError(f"{run.path}: none of epochs {list(epochs)} has stored predictions; "
                                    f"stored: {avail}")
        per_run.append((name, run, chosen))
    preds = {(name, e): run.load_predictions(e) for name, run, chosen in per_run for e in chosen}
    n = min(int(n_images), min(p.shape[0] for p in preds.values()))
    images, masks = prediction_inputs(per_run[0][1], n)
    lead = 0 if images is None else 2
    if models_as_rows if models_as_rows is not None else len(per_run) > 1:
        fig = _models_as_rows(per_run, preds, images, masks, n, threshold, fig)
        what = "probabilities" if threshold is None else f"masks (p > {threshold:g})"
        fig.suptitle(title or f"predicted {what} of the first {n} validation images: models as rows, "
                     "epochs as columns", fontsize=10)
        return fig
    cols = lead + sum(len(c) for _, _, c in per_run)
    if fig is None:
        fig = _style.new_figure(1.45 * cols + 0.3, 1.5 * n + 0.9)
    else:
        _style.ensure_canvas(fig)
    axes = fig.subplots(n, cols, squeeze=False)
    for r in range(n):
        c = 0
        if images is not None:
            axes[r, 0].imshow(_img(images[r]), interpolation="nearest")
            axes[r, 1].imshow(_img(masks[r]), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            if r == 0:
                axes[r, 0].set_title("input", fontsize=8)
                axes[r, 1].set_title("ground truth", fontsize=8)
            c = 2
        for name, _, chosen in per_run:
            for e in chosen:
                p = preds[(name, e)][r]
                shown = p if threshold is None else (p > threshold).astype(np.float32)
                axes[r, c].imshow(_img(shown), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
                axes[r, c].set_gid(f"pred-{name}-{e}")
                if r == 0:
                    axes[r, c].set_title(f"{name}\nepoch {e}", fontsize=8)
                c += 1
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    what = "probabilities" if threshold is None else f"masks (p > {threshold:g})"
    fig.suptitle(title or f"predicted {what} of the first {n} validation images", fontsize=10)
    return fig


def _models_as_rows(per_run, preds, images, masks, n: int, threshold: float | None, fig: Figure | None) -> Figure:
    lead = 0 if images is None else 2
    cols = lead + max(len(c) for _, _, c in per_run)
    rows = n * len(per_run)
    if fig is None:
        fig = _style.new_figure(1.45 * cols + 0.6, 1.45 * rows + 0.9)
    else:
        _style.ensure_canvas(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    for i in range(n):
        for k, (name, _, chosen) in enumerate(per_run):
            r = i * len(per_run) + k
            if images is not None:
                if k == 0:
                    axes[r, 0].imshow(_img(images[i]), interpolation="nearest")
                    axes[r, 1].imshow(_img(masks[i]), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
                    if i == 0:
                        axes[r, 0].set_title("input", fontsize=8)
                        axes[r, 1].set_title("ground truth", fontsize=8)
                else:
                    axes[r, 0].set_axis_off()
                    axes[r, 1].set_axis_off()
            for j in range(cols - lead):
                ax = axes[r, lead + j]
                if j >= len(chosen):
                    ax.set_axis_off()
                    continue
                e = chosen[j]
                p = preds[(name, e)][i]
                shown = p if threshold is None else (p > threshold).astype(np.float32)
                ax.imshow(_img(shown), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
                ax.set_gid(f"pred-{name}-{e}")
                if r == 0 or chosen != per_run[0][2]:
                    ax.set_title(f"epoch {e}", fontsize=8)
            axes[r, lead].set_ylabel(name, fontsize=8)
    return fig


def class_examples(source: RunDir | str | Mapping[str, Any], labels: str = "kmeans", *, per_class: int = 4,
                   max_classes: int = 8, fig: Figure | None = None, seed: int = 0, title: str | None = None) -> Figure:
    """Masks of the probe set grouped by output class (paper Fig. 2): one row per class with
    ``per_class`` masks of it; the ``max_classes`` most populous classes, largest first.

    ``source``: a run (its ``probe.npz``), a :class:`~infoflow.runs.ProbeRecord`, or a mapping with
    ``labelings`` and ``masks``. The masks drawn are those Y was made from (graded masks by default).
    """
    if isinstance(source, Mapping):
        labelings, masks = source["labelings"], np.asarray(source["masks"])
    else:
        record = source if isinstance(source, ProbeRecord) else _data.as_run(source).load_probe()
        labelings, masks = record.labelings, record.y_masks
    if labels not in labelings:
        raise InfoflowError(f"the probe set has no labelling {labels!r}; it has {sorted(labelings)}")
    y = np.asarray(labelings[labels])
    classes, counts = np.unique(y, return_counts=True)
    order = np.lexsort((classes, -counts))[:max_classes]
    rng = np.random.default_rng(seed)
    rows = len(order)
    if fig is None:
        fig = _style.new_figure(1.3 * per_class + 1.2, 1.3 * rows + 0.7)
    else:
        _style.ensure_canvas(fig)
    axes = fig.subplots(rows, per_class, squeeze=False)
    for r, k in enumerate(order):
        members = np.flatnonzero(y == classes[k])
        pick = np.sort(rng.choice(members, size=min(per_class, len(members)), replace=False))
        for c in range(per_class):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(pick):
                ax.imshow(_img(masks[pick[c]]), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            else:
                ax.set_axis_off()
        code = int(classes[k])
        axes[r, 0].set_ylabel(f"class {code}\n(n={int(counts[k])})", fontsize=7)
        axes[r, 0].set_gid(f"class-{code}")
    name = {"kmeans": "K-means clusters", "coarse": "spatial coarsening"}.get(labels, labels)
    single = int(np.sum(counts == 1))
    alone = f"\n{single} of them singletons (one mask each)" if single else ""
    fig.suptitle(title or f"{name}: {len(classes)} classes in the probe set,\n{rows} most populous shown{alone}",
                 fontsize=9)
    return fig
