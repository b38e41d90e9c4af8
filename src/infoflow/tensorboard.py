"""TensorBoard logging of a run: Dice, loss, per-layer MI and an information-plane image.

``infoflow train --tensorboard`` passes ``TensorBoardLogger(run_dir).callback`` to
:func:`infoflow.train.train`; the training loop calls it at every logged epoch *after* the
epoch's metrics and MI estimates are stored, so the logger reads them from the run directory::

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

    Scalars: ``dice/train``, ``dice/val``, ``loss/train``, ``loss/val``, ``I_XM/<ii>_<name>`` and
    ``I_YM/<ii>_<name>`` per probe layer; image ``information_plane`` (the figure of
    :func:`infoflow.plots.information_planes` with the epochs so far).
    """

    def __init__(self, run: RunDir | str | os.PathLike[str], *, estimator: str | None = None,
                 setting: str | None = None, labels: str | None = None, plane_every: int = 1,
                 all_estimators: bool = False, log_dir: str | os.PathLike[str] | None = None) -> None:
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
        metrics = self.run.read_metrics()
        if not metrics.empty:
            row = metrics[metrics["epoch"] == epoch]
            if len(row):
                r = row.iloc[-1]
                for tag, col in (("dice/train", "dice_train"), ("dice/val", "dice_val"),
                                 ("loss/train", "loss_train"), ("loss/val", "loss_val")):
                    if col in r:
                        w.add_scalar(tag, float(r[col]), epoch)
        mi = self.run.read_mi()
        if not mi.empty and (mi["epoch"] == epoch).any():
            self._log_mi(mi, epoch)
            if (self._calls - 1) % self.plane_every == 0:
                self._log_plane(mi[mi["epoch"] <= epoch], epoch)
        w.flush()

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

    def close(self) -> None:
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
            self._writer = None
