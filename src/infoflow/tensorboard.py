"""TensorBoard logging of a run: Dice and loss of every epoch, per-layer MI, the information plane
and the U-Plots as images, and the run's hyperparameters.

``infoflow train --tensorboard`` passes ``TensorBoardLogger(run_dir).callback`` to
:func:`infoflow.train.train`; the training loop calls it at every logged epoch *after* the
epoch's metrics and MI estimates are stored, so the logger reads them from the run directory
(the Dice and loss of the epochs between logged epochs too, and at :meth:`close` those after the
last logged epoch)::

    from infoflow.tensorboard import TensorBoardLogger
    tb = TensorBoardLogger("runs/m1")
    train(cfg, "runs/m1", callbacks=[tb.callback])
    tb.close()

Events go to ``RUN/tensorboard``; view them with ``tensorboard --logdir RUN/tensorboard``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .runs import RunDir


#: (TensorBoard tag, metrics.csv column) of the per-epoch scalars.
METRIC_TAGS: tuple[tuple[str, str], ...] = (("dice/train", "dice_train"), ("dice/val", "dice_val"),
                                            ("loss/train", "loss_train"), ("loss/val", "loss_val"))


def hparam_dict(cfg: dict[str, Any]) -> dict[str, Any]:
    """A run's config.json as TensorBoard hyperparameters: nested keys joined with dots
    (``train.lr``), numbers, strings and booleans kept, lists and other values as text, the
    network description and version entries left out."""
    out: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, bool) or isinstance(value, (int, float, str)):
            out[prefix] = value
        elif value is not None:
            out[prefix] = str(value)

    for key, value in cfg.items():
        if key in ("network", "versions", "infoflow_version", "torch_version"):
            continue
        walk(key, value)
    return out


class TensorBoardLogger:
    """Writes a run's numbers into TensorBoard at logged epochs.

    Args:
        run: the run directory (``RunDir`` or path; it may not exist yet when created before
            training starts).
        estimator, setting, labels: which MI estimates to log (default ``kde_upper``, its first
            setting, ``kmeans``); every estimator is logged as scalars when ``all_estimators``.
        plane_every: draw the information-plane image every k-th call (drawing 23 panels costs
            about a second).
        log_dir: event folder (default ``RUN/tensorboard``).

    Scalars: ``dice/train``, ``dice/val``, ``loss/train``, ``loss/val`` at every epoch of
    ``metrics.csv`` after ``since`` (default 0; a resumed run passes the epoch it resumes from),
    ``I_XM/<ii>_<name>`` and ``I_YM/<ii>_<name>`` per probe layer at logged epochs; images
    ``information_plane`` and ``u_plot`` (the figures of :func:`infoflow.plots.information_planes`
    and :func:`infoflow.plots.uplots` with the epochs so far); the run's hyperparameters (every
    setting of ``config.json``, in TensorBoard's HPARAMS tab, with the Dice and loss as metrics).
    """

    def __init__(self, run: RunDir | str | os.PathLike[str], *, estimator: str | None = None,
                 setting: str | None = None, labels: str | None = None, plane_every: int = 1,
                 all_estimators: bool = False, log_dir: str | os.PathLike[str] | None = None,
                 since: int = 0) -> None:
        import importlib.util

        if importlib.util.find_spec("tensorboard") is None:  # fail before training, not after epoch 1
            raise ConfigError("--tensorboard needs the tensorboard package: pip install 'infoflow[tensorboard]'")
        self.run = run if isinstance(run, RunDir) else RunDir(run)
        self.log_dir = Path(log_dir) if log_dir is not None else self.run.path / "tensorboard"
        self.estimator, self.setting, self.labels = estimator, setting, labels
        self.plane_every = max(int(plane_every), 1)
        self.all_estimators = bool(all_estimators)
        self._writer: Any = None
        self._calls = 0
        self._metrics_done = int(since)  # Dice and loss are written for the epochs after this one
        self._hparams_done = False

    @property
    def writer(self):  # noqa: ANN201 - SummaryWriter
        if self._writer is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:  # tensorboard is an optional dependency
                raise ConfigError("--tensorboard needs the tensorboard package: pip install 'infoflow[tensorboard]' "
                                  f"({exc})") from None
            self.log_dir.mkdir(parents=True, exist_ok=True)
            self._writer = SummaryWriter(log_dir=str(self.log_dir))
        return self._writer

    # the training loop's hook -----------------------------------------------------------------
    def callback(self, model: Any, epoch: int) -> None:
        """``callback(model, epoch)``: log what the run stored for ``epoch``."""
        self.log_epoch(int(epoch))

    __call__ = callback

    def log_epoch(self, epoch: int) -> None:
        self._calls += 1
        w = self.writer
        if not self._hparams_done:
            self._log_hparams()
        self._log_metrics(epoch)
        mi = self.run.read_mi()
        if not mi.empty and (mi["epoch"] == epoch).any():
            self._log_mi(mi, epoch)
            if (self._calls - 1) % self.plane_every == 0:
                self._log_plane(mi[mi["epoch"] <= epoch], epoch)
        w.flush()

    def _log_metrics(self, upto: int | None) -> None:
        """Dice and loss of every epoch in metrics.csv after the last one written, up to ``upto``."""
        metrics = self.run.read_metrics()
        if metrics.empty:
            return
        rows = metrics[metrics["epoch"] > self._metrics_done]
        if upto is not None:
            rows = rows[rows["epoch"] <= upto]
        if rows.empty:
            return
        for r in rows.sort_values("epoch").itertuples(index=False):
            e = int(r.epoch)
            for tag, col in METRIC_TAGS:
                v = getattr(r, col, None)
                if v is not None and v == v:  # present and not NaN
                    self.writer.add_scalar(tag, float(v), e)
            self._metrics_done = max(self._metrics_done, e)

    def _log_hparams(self) -> None:
        """The run's settings (config.json, flattened) as TensorBoard hyperparameters."""
        from torch.utils.tensorboard.summary import hparams

        self._hparams_done = True
        try:
            cfg = self.run.read_config()
        except Exception:  # noqa: BLE001 - no config yet: no hyperparameters to show
            return
        params = hparam_dict(cfg)
        if not params:
            return
        exp, ssi, sei = hparams(params, {tag: 0.0 for tag, _ in METRIC_TAGS})
        fw = self.writer._get_file_writer()
        for summary in (exp, ssi, sei):
            fw.add_summary(summary)

    def _log_mi(self, mi, epoch: int) -> None:
        from .plots import select
        from .plots._data import plane_table

        now = mi[mi["epoch"] == epoch]
        sel = select(mi, self.estimator, self.setting, self.labels)
        pts = plane_table(now, sel)
        for r in pts.itertuples(index=False):
            for q in ("I_XM", "I_YM"):
                v = getattr(r, q)
                if v == v:  # not NaN
                    self.writer.add_scalar(f"{q}/{int(r.layer):02d}_{r.name}", float(v), epoch)
        if self.all_estimators:
            rows = now[now["quantity"].isin(["I_XM", "I_YM"])]
            for r in rows.itertuples(index=False):
                lab = "" if r.labels == "none" else f"_{r.labels}"
                self.writer.add_scalar(f"{r.estimator}_{r.setting}{lab}/{r.quantity}/{int(r.layer):02d}_{r.name}",
                                       float(r.value), epoch)

    def _log_plane(self, mi, epoch: int) -> None:
        from .plots import information_planes

        fig = information_planes(mi, estimator=self.estimator, setting=self.setting, labels=self.labels,
                                 title=f"epoch {epoch}: ")
        self.writer.add_figure("information_plane", fig, epoch, close=False)
        self._log_uplot(mi, epoch)

    def _log_uplot(self, mi, epoch: int) -> None:
        from .models.unet import layout_from_config
        from .plots import uplots

        try:
            network = layout_from_config(self.run.read_config())
        except Exception:  # noqa: BLE001 - a U-Plot without skip arcs is still one
            network = None
        epochs = sorted(int(e) for e in mi["epoch"].unique())
        shown = epochs if len(epochs) <= 8 else None  # the paper code's epochs once there are many
        fig = uplots(mi, epochs=shown, estimator=self.estimator, setting=self.setting, labels=self.labels,
                     network=network, title=f"epoch {epoch}: ")
        self.writer.add_figure("u_plot", fig, epoch, close=False)

    def close(self) -> None:
        """Write the Dice and loss of the epochs after the last logged one, then close the events."""
        if self.run.path.is_dir():
            self._log_metrics(None)
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
            self._writer = None
