"""MI of any network from your own training loop.

::

    from infoflow.api import Tracker
    from infoflow.config import MIConfig

    tracker = Tracker(model, probe_images, probe_masks, out="runs/x", fit_masks=train_masks,
                      mi=MIConfig(kmeans_k=16), schedule="code", epochs=200)
    for epoch in range(1, 201):
        ...  # train one epoch (optionally tracker.record_gradients(model) after each backward)
        tracker.end_epoch(model, epoch, metrics={"loss_train": ..., "dice_val": ...})

The run directory is the one ``infoflow train`` writes (``config.json``, ``metrics.csv``,
``probe.npz``, ``matrices/``, ``mi.csv``, optionally ``layer_stats.csv`` and ``predictions/``), so
``infoflow estimate``, ``plot`` and ``report`` read it. ``config.json`` keeps the MI settings and,
under ``"network"``, a description of the network: its probe layers (names in forward order, what
each takes) and the merges and skip pairs found by :func:`infoflow.network.describe_network`, which
is where plots find the merge layers of a network that is not infoflow's U-Net.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from .config import DataConfig, MIConfig
from .errors import ConfigError, RunError
from .analysis.selections import select
from .estimators.table import NO_LABELS
from .estimators.widths import SCALE_AWARE_KERNEL
from .models.unet import UNet
from .network import Merge, Network, describe_network, model_device
from .runs import RunDir, run_lock
from .tracking import PROBE_KEYS, LoggedEpochs, MITracker, ProbeSet, Schedule, in_code_schedule, probe_arrays, \
    schedule_predicate

#: Common other names of infoflow's metric columns; the Lightning callback writes them under infoflow's.
METRIC_ALIASES: dict[str, tuple[str, ...]] = {
    "loss_train": ("train_loss_epoch", "train_loss", "loss_epoch", "loss"),
    "dice_train": ("train_dice_epoch", "train_dice"),
    "loss_val": ("val_loss_epoch", "val_loss"),
    "dice_val": ("val_dice_epoch", "val_dice"),
}


def _array(x: Any, what: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    a = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    if a.ndim < 3:
        raise ConfigError(f"{what} must have shape (N, C, ...), got {a.shape}")
    return a


def _scalar(value: Any) -> float | None:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            return None
        value = value.detach().cpu().item()
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    return None


def _transform(spec: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    if spec is None:
        return lambda y: y
    if callable(spec):
        return spec
    if spec == "auto":
        return lambda y: y if (float(y.min()) >= 0.0 and float(y.max()) <= 1.0) else torch.sigmoid(y)
    if spec == "sigmoid":
        return torch.sigmoid
    raise ConfigError(f"output_transform must be 'auto', 'sigmoid', None or a function, got {spec!r}")


class Tracker:
    """Records MI of every probe layer of ``model`` at the epochs you log, into run directory ``out``.

    Args:
        model: any ``nn.Module`` taking one batch of probe images.
        probe_images: the probe set, whose activations enter the estimates: (N, C, ...) float
            images (numpy or torch), or a torch ``Dataset`` of ``(image, mask)`` or dict samples,
            a ``DataLoader`` (not shuffling) of such batches, or a dict batch ``{"image": ...,
            "label": ...}`` (MONAI's form; ``probe_keys`` names other keys) or a list of them --
            read once, in order (:func:`infoflow.tracking.probe_arrays`).
        probe_masks: (N, 1, S, S) 0/1 masks of the images (the output classes Y come from them)
            when ``probe_images`` are arrays; None otherwise.
        out: the run directory to create.
        fit_masks: masks K-means is fitted on (the training split's); None: ``probe_masks``.
        mi: estimator settings (``MIConfig``; kmeans_k must not exceed the number of fit masks).
        extra_kernels: kernels estimated beside ``mi.kernels`` (specs, see
            :mod:`infoflow.estimators.widths`). None: the scale-aware ``rel:0.1``
            (:data:`~infoflow.estimators.widths.SCALE_AWARE_KERNEL`) for any network other than
            infoflow's U-Net, whose activations the fixed ``fixed:0.2`` may leave at the ceiling;
            none for infoflow's U-Net. ``()``: only ``mi.kernels``.
        layers: probe layers: None (``model.probe_modules()`` for infoflow's U-Net, else
            :func:`infoflow.network.find_probe_layers`), ``[(name, module)]``, submodule paths, or a
            function of the model. ``find`` passes options to ``find_probe_layers`` instead
            (``types``, ``pattern``, ``after_activation``, ``include_output``).
        example_input: the batch that finds layers and merges (default: the first probe image).
        ids: names of the probe samples (default probe0000, ...).
        name: the run's name (default: the network's class name).
        schedule, epochs, log_points: which epochs :meth:`end_epoch` logs MI at ("code", "log",
            "all" or a list of 1-based epochs; ``epochs``: the planned number of epochs).
        pred_images, pred_masks, pred_ids: a few fixed images whose predicted masks are stored
            at logged epochs (the predictions figure); ``output_transform`` maps the model output
            to probabilities ("auto": sigmoid when outputs leave [0, 1]).
        data: facts about the data for ``config.json["data"]`` (e.g. ``{"source": ..., "size": 64}``;
            keys of ``infoflow.config.DataConfig``).
        resume_from: None creates a new run (an existing one is an error); an epoch number
            reopens the run at ``out`` and drops everything it stored after that epoch.
        device: where probe forwards run (default: the model's device).
        merge_method, join_ops: passed to :func:`infoflow.network.find_merges`.
    """

    def __init__(
        self,
        model: nn.Module,
        probe_images: Any,
        probe_masks: Any = None,
        out: str | Path | None = None,
        *,
        probe_keys: Sequence[str] = PROBE_KEYS,
        fit_masks: Any = None,
        mi: MIConfig | None = None,
        extra_kernels: Sequence[str] | None = None,
        layers: Any = None,
        find: Mapping[str, Any] | None = None,
        example_input: Any = None,
        ids: Sequence[str] | None = None,
        name: str | None = None,
        schedule: Schedule = "all",
        epochs: int | None = None,
        log_points: int = 30,
        pred_images: Any = None,
        pred_masks: Any = None,
        pred_ids: Sequence[str] | None = None,
        output_transform: Any = "auto",
        data: Mapping[str, Any] | None = None,
        resume_from: int | None = None,
        device: torch.device | str | None = None,
        merge_method: str = "auto",
        join_ops: Sequence[str] = ("cat", "add"),
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.mi = mi if mi is not None else MIConfig()
        if not isinstance(self.mi, MIConfig):
            raise ConfigError(f"mi must be an infoflow.config.MIConfig, got {type(self.mi).__name__}")
        if extra_kernels is None:
            extra_kernels = () if isinstance(model, UNet) else (SCALE_AWARE_KERNEL,)
        if extra_kernels:
            self.mi = dataclasses.replace(self.mi, kernels=tuple(self.mi.kernels) + tuple(extra_kernels))
        if out is None:
            raise ConfigError("Tracker needs out=: the run directory to create")
        images, masks = probe_arrays(probe_images, probe_masks, keys=probe_keys)
        if len(images) < 2:
            raise ConfigError(f"the probe set has {len(images)} samples; MI needs at least 2")
        fit = masks if fit_masks is None else _array(fit_masks, "fit_masks")
        ids = [f"probe{i:04d}" for i in range(len(images))] if ids is None else [str(i) for i in ids]
        if len(ids) != len(images):
            raise ConfigError(f"ids has {len(ids)} entries for {len(images)} probe samples")
        self.schedule = schedule
        self.epochs = None if epochs is None else int(epochs)
        self._logged = schedule_predicate(schedule, self.epochs, log_points=log_points)
        self.transform = _transform(output_transform)
        self.device = None if device is None else torch.device(device)

        dev = self.device or model_device(model)
        if example_input is None:
            example_input = torch.from_numpy(images[:1]).to(dev)
        self.network: Network = describe_network(model, example_input, layers=layers, name=name,
                                                 method=merge_method, ops=join_ops, **dict(find or {}))
        self._layers = self.network.layers_fn()
        self.name = str(name or self.network.name)

        # everything that can be refused is checked before the run is written
        probe = ProbeSet.build(images, masks, ids, self.mi, fit_y_masks=fit, fit_masks=fit)
        if pred_images is not None:
            pi = _array(pred_images, "pred_images")
            pm = _array(pred_masks, "pred_masks") if pred_masks is not None else np.zeros((len(pi), 1) + pi.shape[2:],
                                                                                       np.float32)
            pid = [f"pred{i:04d}" for i in range(len(pi))] if pred_ids is None else [str(i) for i in pred_ids]
            if not (len(pi) == len(pm) == len(pid)):
                raise ConfigError(f"pred_images ({len(pi)}), pred_masks ({len(pm)}) and pred_ids ({len(pid)}) differ "
                                  "in length")
        config = self._config(images, data, schedule)
        # the run's writer lock, held until close(): a second writer of this run is refused
        self._lock = contextlib.ExitStack()
        self._lock.enter_context(run_lock(out, what="tracks"))
        try:
            if resume_from is None:
                self.run = RunDir.create(out, config)
            else:
                self.run = RunDir.open(out)
                self.run.truncate_after(int(resume_from))
                self.run.write_config(config)
                self.run.log(f"resumed tracking after epoch {int(resume_from)}")
            self.mi_tracker = MITracker(self.run, probe, self.mi, layers=self._layers, device=self.device)
            self.probe = probe
            pred = None
            if pred_images is not None:
                self.run.save_prediction_inputs(pi, pm, pid)
                pred = (torch.from_numpy(pi), pid)
            self.epochs_body = LoggedEpochs(self.run, self._logged, layers=self._layers, mi=self.mi_tracker,
                                            predict=pred, transform=self.transform, device=self.device)
        except BaseException:
            self._lock.close()
            raise
        self._last_mi = int(resume_from) if resume_from is not None else 0
        self.closed = False  # close() gives the run back
        net = self.network
        self.run.log(f"tracking {self.name} ({net.cls}, {net.parameters} parameters): {len(images)} probe samples, "
                     f"{len(net.layers)} probe layers, skip pairs {list(net.skip_pairs)} "
                     f"(merges found by {net.method}), schedule {schedule!r}")

    # -- what the run knows about the network ---------------------------------------------------
    @property
    def layers(self) -> list[str]:
        """Probe layer names in forward order."""
        return self.network.names

    @property
    def merges(self) -> list[Merge]:
        return self.network.merges

    @property
    def skip_pairs(self) -> tuple[tuple[int, int], ...]:
        return self.network.skip_pairs

    @property
    def path(self) -> Path:
        return self.run.path

    def _config(self, images: np.ndarray, data: Mapping[str, Any] | None, schedule: Schedule) -> dict[str, Any]:
        data_doc: dict[str, Any] = {"source": "user arrays (infoflow.api)", "size": int(images.shape[-1])}
        if data:
            unknown = set(data) - {f.name for f in dataclasses.fields(DataConfig)}
            if unknown:
                raise ConfigError(f"data keys must be DataConfig fields; unknown: {', '.join(sorted(unknown))}")
            data_doc.update(dict(data))
        train: dict[str, Any] = {"schedule": schedule if isinstance(schedule, str) else "custom"}
        if self.epochs is not None:
            train["epochs"] = self.epochs
        return {"name": self.name, "data": data_doc, "train": train, "mi": dataclasses.asdict(self.mi),
                "network": self.network.to_config()}

    # -- logging --------------------------------------------------------------------------------
    def is_logged(self, epoch: int) -> bool:
        """Whether :meth:`end_epoch` records MI at ``epoch`` (1-based) under the schedule."""
        return bool(self._logged(int(epoch)))

    def log_metrics(self, epoch: int, metrics: Mapping[str, Any] | None = None, **more: Any) -> dict[str, float]:
        """Append one row ``{"epoch": epoch, **metrics}`` to metrics.csv (scalar values only;
        infoflow's column names loss_train, dice_train, loss_val, dice_val are what the Dice
        figure reads)."""
        row: dict[str, Any] = {"epoch": _epoch(epoch)}
        for k, v in {**dict(metrics or {}), **more}.items():
            f = _scalar(v)
            if f is not None and k != "epoch":
                row[str(k)] = f
        self.run.append_metrics([row])
        return row

    def record_gradients(self, model: nn.Module) -> None:
        """Call after ``loss.backward()`` (optional): per-layer kernel norms and gradient
        statistics over the batches until the next :meth:`log_epoch` go to layer_stats.csv (as
        ``infoflow train`` writes them). Without it the run has no layer_stats.csv."""
        self.epochs_body.record_gradients(model)

    def log_epoch(self, model: nn.Module, epoch: int, metrics: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Probe ``model`` now and store its distance matrices and MI estimates as epoch ``epoch``
        (1-based, increasing); ``metrics``, when given, are appended to metrics.csv too, and the
        gradients recorded since the last logged epoch to layer_stats.csv. Returns this epoch's
        table of estimates."""
        epoch = _epoch(epoch)
        if epoch <= self._last_mi:
            raise RunError(f"epoch {epoch} is not after the last logged epoch {self._last_mi}: logged epochs must increase")
        if metrics is not None:
            self.log_metrics(epoch, metrics)
        table = self.epochs_body.log(model, epoch)
        self._last_mi = epoch
        return table

    def end_epoch(self, model: nn.Module, epoch: int, metrics: Mapping[str, Any] | None = None) -> pd.DataFrame | None:
        """Call once at the end of every epoch: appends ``metrics`` and, when the schedule logs
        ``epoch``, records MI (returns its table; None otherwise)."""
        epoch = _epoch(epoch)
        if metrics is not None:
            self.log_metrics(epoch, metrics)
        if self.is_logged(epoch):
            return self.log_epoch(model, epoch)
        self.epochs_body.end(model, epoch)  # not logged: drops the gradients recorded
        return None

    def close(self) -> None:
        """Give back the memory the probe keeps between logged epochs (``MIConfig.retain_memory``)
        and the run's writer lock (both also go when the process ends). Idempotent."""
        self.epochs_body.close()
        self._lock.close()
        self.closed = True

    def __enter__(self) -> "Tracker":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def mi_table(self) -> pd.DataFrame:
        """Every estimate recorded so far (mi.csv)."""
        return self.run.read_mi()


def mi_scalars(table: pd.DataFrame, *, estimator: str | None = None, setting: str | None = None,
               labels: str | None = None, prefix: str = "infoflow/") -> dict[str, float]:
    """I(X;M) and I(Y;M) of every probe layer in ``table`` (one logged epoch's estimates) for one
    selection (default ``kde_upper``, its first setting, ``kmeans``), as scalars named
    ``<prefix>I_XM/<ii>_<layer name>`` and ``<prefix>I_YM/<ii>_<layer name>`` for a logger."""
    if table is None or table.empty:
        return {}
    sel = select(table, estimator, setting, labels)
    rows = table[(table["estimator"] == sel.estimator) & (table["setting"].astype(str) == sel.setting)
                 & (((table["quantity"] == "I_XM") & (table["labels"].astype(str) == NO_LABELS))
                    | ((table["quantity"] == "I_YM") & (table["labels"].astype(str) == sel.labels)))]
    return {f"{prefix}{r.quantity}/{int(r.layer):02d}_{r.name}": float(r.value)
            for r in rows.itertuples(index=False) if r.value == r.value}


def _epoch(epoch: Any) -> int:
    try:
        e = int(epoch)
    except (TypeError, ValueError):
        raise ConfigError(f"epoch must be an integer, got {epoch!r}") from None
    if e < 1 or e != epoch:
        raise ConfigError(f"epochs are 1-based integers (epoch e = after e epochs of training), got {epoch!r}")
    return e


__all__ = ["METRIC_ALIASES", "Tracker", "in_code_schedule", "mi_scalars", "schedule_predicate"]
