"""A Lightning callback that records MI of every probe layer at logged epochs.

::

    from infoflow.integrations.lightning import InfoflowCallback

    cb = InfoflowCallback(probe_images, probe_masks, "runs/lit", fit_masks=train_masks,
                          schedule="code", mi=MIConfig(kmeans_k=16))
    trainer = lightning.pytorch.Trainer(max_epochs=100, callbacks=[cb])
    trainer.fit(module, train_loader, val_loader)

At the end of each training epoch ``e`` (1-based: ``trainer.current_epoch + 1``) the callback
appends the scalar ``trainer.callback_metrics`` to metrics.csv under infoflow's names where it
knows them (``val_dice`` as ``dice_val``, ...; the validation metrics of epoch ``e`` are there:
Lightning validates before ``on_train_epoch_end``), and when the schedule logs ``e`` it probes
the network and stores distance matrices and MI estimates -- the run directory of
:class:`infoflow.api.Tracker` and ``infoflow train`` -- and sends each layer's I(X;M) and I(Y;M)
to the trainer's loggers. During logged epochs the gradients of the
probe layers are summarised into layer_stats.csv. Only the global-zero process writes.

Requires ``lightning`` (``pip install infoflow[lightning]``); ``pytorch_lightning`` is used when
``lightning`` is not installed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Union

from torch import nn

from ..api import METRIC_ALIASES, Schedule, Tracker, mi_scalars, schedule_predicate
from ..config import MIConfig
from ..errors import ConfigError
from ..tracking import PROBE_KEYS

try:  # the unified package first, the standalone one as a fallback
    import lightning.pytorch as _pl
except ModuleNotFoundError:  # pragma: no cover - depends on what is installed
    try:
        import pytorch_lightning as _pl
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            "infoflow.integrations.lightning needs Lightning: pip install 'infoflow[lightning]'") from exc

Callback = _pl.Callback
ModuleSpec = Union[None, str, nn.Module, Callable[[Any], nn.Module]]


class InfoflowCallback(Callback):
    """Records MI of the network's probe layers at logged epochs into run directory ``out``.

    Args:
        probe_images, probe_masks, out, probe_keys, fit_masks, mi, layers, find, example_input, ids,
            name, pred_images, pred_masks, pred_ids, output_transform, data, merge_method: as for
            :class:`infoflow.api.Tracker`.
        schedule: "code" (default: the paper code's logged epochs), "log", "all" or a list of
            1-based epochs; "log" needs ``trainer.max_epochs``.
        module: the network to probe: None (the LightningModule when it defines ``forward``,
            else its only child module), an attribute path of the LightningModule ("model",
            "net.unet"), a module, or a function ``lightning_module -> module``.
        metrics_map: extra ``{infoflow column: callback_metrics key}`` names for metrics.csv.
            Metrics are written under infoflow's names (loss_train, dice_train, loss_val,
            dice_val: what the report and the Dice figure read) in place of Lightning's (defaults:
            train_loss -> loss_train, val_dice -> dice_val, ... see
            :data:`infoflow.api.METRIC_ALIASES`; a key's ``_step`` twin is dropped); other keys
            keep their own names.
        record_gradients: summarise the probe layers' gradients during logged epochs.
        log_to_trainer: at logged epochs also send I(X;M) and I(Y;M) of every probe layer to the
            trainer's loggers (``trainer.loggers``: CSVLogger, TensorBoardLogger, ...) as
            ``infoflow/I_XM/<ii>_<layer>`` and ``infoflow/I_YM/<ii>_<layer>`` with
            ``infoflow/epoch`` (the 1-based logged epoch), at ``trainer.global_step``.
        log_selection: which estimates go to the loggers: ``{"estimator": ..., "setting": ...,
            "labels": ...}`` (default ``kde_upper``, its first setting, ``kmeans``).
    """

    def __init__(
        self,
        probe_images: Any,
        probe_masks: Any = None,
        out: str | Path | None = None,
        *,
        probe_keys: Sequence[str] = PROBE_KEYS,
        schedule: Schedule = "code",
        fit_masks: Any = None,
        mi: MIConfig | None = None,
        layers: Any = None,
        find: Mapping[str, Any] | None = None,
        module: ModuleSpec = None,
        example_input: Any = None,
        ids: Sequence[str] | None = None,
        name: str | None = None,
        metrics_map: Mapping[str, str] | None = None,
        record_gradients: bool = True,
        pred_images: Any = None,
        pred_masks: Any = None,
        pred_ids: Sequence[str] | None = None,
        output_transform: Any = "auto",
        data: Mapping[str, Any] | None = None,
        merge_method: str = "auto",
        log_points: int = 30,
        log_to_trainer: bool = True,
        log_selection: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        if out is None:
            raise ConfigError("InfoflowCallback needs out=: the run directory to create")
        schedule_predicate(schedule, 10 if schedule == "log" else None, log_points=log_points)  # validate early
        self.out = Path(out)
        self.schedule = schedule
        self.module = module
        self.metrics_map = dict(metrics_map or {})
        self.record = bool(record_gradients)
        self.log_points = log_points
        self.log_to_trainer = bool(log_to_trainer)
        self.log_selection = dict(log_selection or {})
        bad = set(self.log_selection) - {"estimator", "setting", "labels"}
        if bad:
            raise ConfigError(f"log_selection takes estimator, setting and labels; got {', '.join(sorted(bad))}")
        self._kwargs = dict(
            probe_images=probe_images, probe_masks=probe_masks, probe_keys=probe_keys, fit_masks=fit_masks, mi=mi,
            layers=layers,
            find=find, example_input=example_input, ids=ids, name=name, pred_images=pred_images,
            pred_masks=pred_masks, pred_ids=pred_ids, output_transform=output_transform, data=data,
            merge_method=merge_method,
        )
        self.tracker: Tracker | None = None
        self._recording = False

    # -- the network --------------------------------------------------------------------------
    def network(self, pl_module: Any) -> nn.Module:
        """The module that is probed (see ``module``)."""
        spec = self.module
        if isinstance(spec, nn.Module):
            return spec
        if isinstance(spec, str):
            try:
                return pl_module.get_submodule(spec)
            except AttributeError:
                raise ConfigError(f"{type(pl_module).__name__} has no submodule {spec!r} (module=...)") from None
        if callable(spec):
            net = spec(pl_module)
            if not isinstance(net, nn.Module):
                raise ConfigError(f"module= returned {type(net).__name__}, not a torch.nn.Module")
            return net
        if type(pl_module).forward is not _pl.LightningModule.forward:
            return pl_module
        children = list(pl_module.children())
        if len(children) == 1:
            return children[0]
        raise ConfigError(f"{type(pl_module).__name__} defines no forward and has {len(children)} child modules: "
                          "say which network to probe with module='attribute'")

    # -- hooks ----------------------------------------------------------------------------------
    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.is_global_zero:
            return
        if self.tracker is None or self.tracker.closed:
            self.tracker = self._make_tracker(trainer, pl_module)
        self._recording = self.record and self.tracker.is_logged(trainer.current_epoch + 1)

    def on_after_backward(self, trainer: Any, pl_module: Any) -> None:
        if self._recording and self.tracker is not None:
            self.tracker.record_gradients(self.network(pl_module))

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.is_global_zero or self.tracker is None:
            return
        epoch = int(trainer.current_epoch) + 1
        table = self.tracker.end_epoch(self.network(pl_module), epoch, self.metrics(trainer))
        self._recording = False
        if table is not None and self.log_to_trainer:
            self.log_estimates(trainer, table, epoch)

    def log_estimates(self, trainer: Any, table: Any, epoch: int) -> dict[str, float]:
        """Send one logged epoch's I(X;M) and I(Y;M) per layer to every logger of ``trainer``."""
        scalars = mi_scalars(table, **self.log_selection)
        if scalars:
            scalars["infoflow/epoch"] = float(epoch)
            for logger in list(getattr(trainer, "loggers", None) or []):
                logger.log_metrics(scalars, step=int(trainer.global_step))
        return scalars

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        """Give back the probe's memory and the run's writer lock."""
        if self.tracker is not None:
            self.tracker.close()  # a later fit reopens the run (resume_from its epoch)

    # -- helpers --------------------------------------------------------------------------------
    def metrics(self, trainer: Any) -> dict[str, Any]:
        """The callback metrics under one naming scheme: infoflow's column names for those it
        knows (``metrics_map``, then :data:`~infoflow.api.METRIC_ALIASES`) in place of Lightning's
        keys, every other key as it is."""
        raw = {str(k): v for k, v in dict(trainer.callback_metrics).items()}
        out: dict[str, Any] = {}
        used: set[str] = set()
        groups = {target: (key,) for target, key in self.metrics_map.items()}
        for target, keys in METRIC_ALIASES.items():
            groups[target] = groups.get(target, ()) + tuple(keys)
        for target, keys in groups.items():
            found = [k for k in keys if k in raw]
            if target in raw:  # the loop logs infoflow's own name already
                found = [target] + found
            if not found:
                continue
            out[target] = raw[found[0]]
            used.update(found)
            used.update(f"{k}_step" for k in found)
        out.update({k: v for k, v in raw.items() if k not in used and k not in out})
        return out

    def _make_tracker(self, trainer: Any, pl_module: Any) -> Tracker:
        max_epochs = getattr(trainer, "max_epochs", None)
        epochs = int(max_epochs) if max_epochs is not None and int(max_epochs) > 0 else None
        start = int(trainer.current_epoch)
        resume = start if start > 0 and (self.out / "config.json").exists() else None
        return Tracker(self.network(pl_module), out=self.out, schedule=self.schedule, epochs=epochs,
                       log_points=self.log_points, resume_from=resume, **self._kwargs)


__all__ = ["InfoflowCallback"]
