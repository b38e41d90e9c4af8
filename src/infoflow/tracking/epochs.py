"""The one body of a logged epoch, for ``infoflow train``, the Tracker API and the Lightning callback.

At a logged epoch: the probe layers' kernel norms and gradient statistics (over the epoch's
batches) go to ``layer_stats.csv``, the predicted masks of a few fixed images to
``predictions/``, the distance matrices and MI estimates to ``matrices/`` and ``mi.csv``
(:class:`~infoflow.tracking.mi.MITracker`), then the callbacks run; ``run.log`` says what was
written where. Which epochs are logged is the schedule's predicate.

A loop calls, per epoch::

    epochs.start(model, epoch)           # begins gradient statistics when the epoch is logged
    ...  epochs.record_gradients()       # after each loss.backward()
    epochs.end(model, epoch)             # at a logged epoch: everything above; returns its MI table
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd
import torch
from torch import nn

from ..network import LayerSpec, model_device
from ..runs import RunDir, epoch_file
from ..speed import full_precision
from .grad_stats import GradStats
from .mi import MITracker

EpochCallback = Callable[[nn.Module, int], None]


class LoggedEpochs:
    """What a run records at its logged epochs (module docstring).

    Args:
        run: the run directory.
        logged: ``epoch -> bool``, the schedule (:func:`~infoflow.tracking.schedule.schedule_predicate`).
        layers: ``model -> [(name, module)]``, the probe layers (their statistics; MI uses the
            tracker's own).
        mi: the MI tracker, or None for a run without MI.
        predict: ``(images, ids)`` whose predicted masks are stored at logged epochs, or None.
        transform: the model output -> probabilities (infoflow's U-Net outputs them already).
        device: where the predictions run (default: the model's device).
        callbacks: ``f(model, epoch)`` run last at every logged epoch.
    """

    def __init__(self, run: RunDir, logged: Callable[[int], bool], *, layers: Callable[[nn.Module], LayerSpec],
                 mi: MITracker | None = None, predict: tuple[torch.Tensor, Sequence[str]] | None = None,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 device: torch.device | None = None, callbacks: Sequence[EpochCallback] = ()) -> None:
        self.run = run
        self.logged = logged
        self.layers = layers
        self.mi = mi
        self.predict = predict
        self.transform = transform or (lambda p: p)
        self.device = device
        self.callbacks = list(callbacks)
        self._grads: GradStats | None = None

    def is_logged(self, epoch: int) -> bool:
        return bool(self.logged(int(epoch)))

    # -- gradients -----------------------------------------------------------------------------
    def start(self, model: nn.Module, epoch: int) -> None:
        """Begin an epoch: gradient statistics are gathered when it is a logged one."""
        self._grads = GradStats(self._stat_layers(model)) if self.is_logged(epoch) else None

    def record_gradients(self, model: nn.Module | None = None) -> None:
        """After ``loss.backward()``: add the batch's kernel gradients to the statistics. With a
        ``model``, statistics begin here when :meth:`start` was not called (the Tracker API)."""
        if self._grads is None and model is not None:
            self._grads = GradStats(self._stat_layers(model))
        if self._grads is not None:
            self._grads.update()

    def _stat_layers(self, model: nn.Module) -> list[tuple[str, nn.Module]]:
        # the whole model standing as the output layer has no kernel of its own
        return [(n, nn.Module() if m is model else m) for n, m in self.layers(model)]

    # -- the logged epoch ------------------------------------------------------------------------
    def end(self, model: nn.Module, epoch: int) -> pd.DataFrame | None:
        """End an epoch: at a logged one, record it (:meth:`log`) and return its MI table."""
        try:
            return self.log(model, epoch) if self.is_logged(epoch) else None
        finally:
            self._grads = None

    def log(self, model: nn.Module, epoch: int) -> pd.DataFrame | None:
        """Record epoch ``epoch`` now, whatever the schedule: statistics, predictions, MI, callbacks.

        Runs in float32 throughout (:func:`infoflow.speed.full_precision`: no autocast, no TF32),
        whatever precision the training step uses."""
        with full_precision(torch.device(self.device or model_device(model)).type):
            return self._log(model, epoch)

    def _log(self, model: nn.Module, epoch: int) -> pd.DataFrame | None:
        t0 = time.perf_counter()
        wrote = []
        if self._grads is not None:
            self.run.append_layer_stats(self._grads.rows(epoch))
            self._grads = None
            wrote.append("layer_stats.csv")
        if self.predict is not None:
            wrote.append(self._save_predictions(model, epoch))
        table = None
        if self.mi is not None:
            table = self.mi.log_epoch(model, epoch)
            wrote.append(f"{len(table)} estimates to mi.csv")
            if self.mi.mi.store_matrices:
                wrote.append(f"matrices/{epoch_file(epoch)}")
        for cb in self.callbacks:
            cb(model, epoch)
        self.run.log(f"epoch {epoch} logged in {time.perf_counter() - t0:.1f} s: {', '.join(wrote) or 'nothing'}")
        return table

    @torch.no_grad()
    def _save_predictions(self, model: nn.Module, epoch: int) -> str:
        images, ids = self.predict
        dev = self.device or model_device(model)
        modes = [(m, m.training) for m in model.modules()]
        model.eval()
        try:
            probs = self.transform(model(images.to(dev))).float().cpu().numpy()
        finally:
            for m, mode in modes:
                m.training = mode
        self.run.save_predictions(epoch, probs, list(ids))
        return f"predictions/{epoch_file(epoch)}"

    def close(self) -> None:
        """Give back what the MI tracker keeps between logged epochs."""
        if self.mi is not None:
            self.mi.close()

    def __enter__(self) -> "LoggedEpochs":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
