"""Training: the paper's loop, checkpoints and resume; the logged epochs are :mod:`infoflow.tracking`'s.

Epochs are 1-based: epoch ``e`` is the state after ``e`` passes over the training split.
Shuffling of epoch ``e`` uses a generator seeded from ``(seed, e)``, and a checkpoint holds the
model and optimizer, so a run killed at any point and resumed from its last checkpoint ends with
exactly the metrics of an uninterrupted run (on the same machine and thread count).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .config import RunConfig
from .data import load_splits
from .errors import ConfigError
from .models import build_model
from .progress import progress_bar
from .runs import RunDir, run_lock
from .speed import StepRunner
from .tracking import EpochCallback, LoggedEpochs, MITracker, ProbeSet, logged_epochs

# ---------------------------------------------------------------------------------------------
# Metric
# ---------------------------------------------------------------------------------------------


def dice_per_image(probs: torch.Tensor, masks: torch.Tensor, *, smooth: float = 1.0) -> torch.Tensor:
    """Soft Dice of each image, (2 sum(y p) + 1) / (sum(y) + sum(p) + 1) (methods.md section 3).

    probs, masks: (B, 1, S, S). Returns (B,) float.
    """
    p = probs.flatten(1).float()
    y = masks.flatten(1).float()
    return (2 * (p * y).sum(1) + smooth) / (y.sum(1) + p.sum(1) + smooth)


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device is {name!r} but CUDA is not available on this machine")
    return torch.device(name)


def make_optimizer(params: Iterator[nn.Parameter], cfg: RunConfig) -> torch.optim.Optimizer:
    t = cfg.train  # its values are checked by infoflow.config
    if t.optimizer == "sgd":
        return torch.optim.SGD(params, lr=t.lr, momentum=t.momentum)
    return torch.optim.Adam(params, lr=t.lr)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(int(seed) * 1_000_003 + int(epoch))
    return g


def validate_config(cfg: RunConfig) -> None:
    """What training infoflow's U-Net needs beyond each setting's own range (checked by
    :mod:`infoflow.config` whenever a config is made)."""
    if cfg.data.size % 16 != 0 or cfg.data.size < 16:
        raise ConfigError(f"data.size must be a multiple of 16 (four 2x2 poolings), got {cfg.data.size}")
    cfg.model.skip_mask()
    if cfg.mi.subset is not None and cfg.mi.subset != "all" and cfg.mi.probe not in ("all", cfg.mi.subset):
        raise ConfigError(f"mi.subset = {cfg.mi.subset!r} is not part of the probe set mi.probe = {cfg.mi.probe!r}")


def config_differences(a: RunConfig, b: RunConfig) -> list[str]:
    """The dotted settings whose values differ between two configs, e.g. ``["train.lr: 0.001 -> 0.5"]``."""
    da, db = a.to_dict(), b.to_dict()
    out = []
    for section in da:
        if isinstance(da[section], dict):
            out += [f"{section}.{k}: {da[section][k]!r} -> {db[section].get(k)!r}"
                    for k in da[section] if da[section][k] != db[section].get(k)]
        elif da[section] != db[section]:
            out.append(f"{section}: {da[section]!r} -> {db[section]!r}")
    return out


@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor, masks: torch.Tensor, *, batch_size: int,
             device: torch.device, channels_last: bool) -> tuple[float, float]:
    """Mean BCE loss and mean per-image Dice of ``model`` on a split, in eval mode."""
    was_training = model.training
    model.eval()
    loss_sum, dice_sum, n = 0.0, 0.0, len(images)
    try:
        for i in range(0, n, batch_size):
            x = images[i:i + batch_size].to(device)
            y = masks[i:i + batch_size].to(device)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            p = model(x)
            loss_sum += F.binary_cross_entropy(p, y, reduction="none").flatten(1).mean(1).sum().item()
            dice_sum += dice_per_image(p, y).sum().item()
    finally:
        model.train(was_training)
    return loss_sum / max(n, 1), dice_sum / max(n, 1)


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------


def save_checkpoint(run: RunDir, model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int,
                    cfg: RunConfig) -> None:
    run.save_checkpoint(epoch, model.state_dict(), optimizer.state_dict(), cfg.to_dict())


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------

def train(cfg: RunConfig | None, out: str | Path, *, resume: bool = False, epochs: int | None = None,
          progress: bool = True, callbacks: Sequence[EpochCallback] = (), mi: bool | None = None) -> RunDir:
    """Train ``cfg``'s model into run directory ``out`` (or resume it) and return the run.

    At each logged epoch: per-layer weight and gradient statistics, predictions of a few fixed
    validation images, MI of every probe layer (when ``cfg.mi.enabled``), then ``callbacks``.

    Everything that can be refused is checked before anything is written: the settings, the
    data, the probe set and its classes (K of K-means against the samples it is fitted on). With
    ``resume`` the run's own config is used (``cfg`` must be None or equal to it); ``epochs``
    extends (or shortens, down to the last checkpoint) the number of epochs of a resumed run.
    """
    out = Path(out)
    run = None
    if resume:
        run = RunDir.open(out)
        run.check()  # a damaged file is named before anything is written
        stored = run.config()
        if cfg is not None and cfg != stored:
            raise ConfigError(f"{run.config_path}: a resumed run keeps its settings; differing: "
                              f"{', '.join(config_differences(stored, cfg))}")
        cfg = stored
        if epochs is not None and int(epochs) != cfg.train.epochs:
            cfg = cfg.override(**{"train.epochs": int(epochs)})
    elif cfg is None:
        raise ConfigError("train() needs a config, or resume=True")
    elif epochs is not None:
        cfg = cfg.override(**{"train.epochs": int(epochs)})
    validate_config(cfg)
    t = cfg.train
    if isinstance(t.num_threads, int):  # "auto" is chosen by the step runner, from the load
        torch.set_num_threads(t.num_threads)
    device = resolve_device(t.device)
    channels_last = t.channels_last and device.type == "cpu"

    splits = load_splits(cfg.data, progress=progress)
    probe = None
    if (cfg.mi.enabled if mi is None else mi):
        probe = ProbeSet.for_splits(splits, cfg.mi)  # refuses K > the masks K-means is fitted on, ...
    with run_lock(out, what="trains"):  # a second writer of this run is refused here, before it writes
        if run is None:
            run = RunDir.create(out, cfg.to_dict())
        return _train(run, cfg, splits, probe, device=device, channels_last=channels_last, resume=resume,
                      progress=progress, callbacks=callbacks)


def _train(run: RunDir, cfg: RunConfig, splits, probe: ProbeSet | None, *, device: torch.device,
           channels_last: bool, resume: bool, progress: bool, callbacks: Sequence[EpochCallback]) -> RunDir:
    """The loop of :func:`train`, on a checked config, loaded data and a locked run."""
    t = cfg.train
    x_train = torch.from_numpy(splits.train.images)
    y_train = torch.from_numpy(splits.train.masks)
    x_val = torch.from_numpy(splits.test.images)
    y_val = torch.from_numpy(splits.test.masks)

    torch.manual_seed(t.seed)
    model = build_model(model=cfg.model.model, skips=cfg.model.skip_mask(), width=cfg.model.width,
                        in_channels=cfg.model.in_channels, init=cfg.model.init).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model.parameters(), cfg)

    start = 0
    state = run.load_checkpoint(map_location=device) if resume else None
    if state is not None:
        start = int(state["epoch"])
        if start > t.epochs:
            raise ConfigError(f"{run.path} has trained {start} epochs already; train.epochs = {t.epochs} cannot be "
                              f"fewer (give --epochs {start} or more)")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        run.log(f"resumed from {run.checkpoint_path} at epoch {start}")
    elif resume:
        run.log("resume requested but no checkpoint yet: starting from epoch 0")
    if resume and run.config() != cfg:
        run.write_config(cfg.to_dict())
        run.log(f"train.epochs set to {t.epochs}")
    run.truncate_after(start)

    n_pred = min(t.n_predictions, len(x_val))
    if n_pred:  # inputs and ground truth of the predicted images, for the figures (paper Fig. 6)
        run.save_prediction_inputs(splits.test.images[:n_pred], splits.test.masks[:n_pred], splits.test.ids[:n_pred])
    schedule = set(logged_epochs(t.schedule, t.epochs, log_points=t.log_points))
    body = LoggedEpochs(run, schedule.__contains__, layers=lambda m: m.probe_modules(),
                        mi=MITracker(run, probe, cfg.mi, device=device) if probe is not None else None,
                        predict=(x_val[:n_pred], splits.test.ids[:n_pred]) if n_pred else None, device=device,
                        callbacks=callbacks)
    if start == 0:
        run.log(f"training {cfg.name}: model skips {cfg.model.skip_mask()}, width {cfg.model.width}, "
                f"S={cfg.data.size}, {len(x_train)} train / {len(x_val)} val images, device {device}, "
                f"step precision {t.autocast}, threads {t.num_threads or 'torch default'}")

    n = len(x_train)
    runner = StepRunner(model, autocast=t.autocast, threads=t.num_threads)
    with progress_bar(cfg.name, t.epochs, completed=start, enabled=progress) as step, body:
        for epoch in range(start + 1, t.epochs + 1):
            t0 = time.perf_counter()
            body.start(model, epoch)
            model.train()
            order = torch.randperm(n, generator=epoch_generator(t.seed, epoch))
            loss_sum, dice_sum = 0.0, 0.0
            for i in range(0, n, t.batch_size):
                idx = order[i:i + t.batch_size]
                x = x_train[idx].to(device)
                y = y_train[idx].to(device)
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                loss, p = runner.forward_backward(x, y)  # gradients into .grad, forward under train.autocast
                body.record_gradients()
                optimizer.step()
                # Keras-style running training metrics, weighted by batch size
                loss_sum += loss.item() * len(idx)
                dice_sum += dice_per_image(p, y).sum().item()
            val_loss, val_dice = evaluate(model, x_val, y_val, batch_size=32, device=device,
                                          channels_last=channels_last)
            row = {"epoch": epoch, "loss_train": loss_sum / n, "dice_train": dice_sum / n,
                   "loss_val": val_loss, "dice_val": val_dice, "seconds": time.perf_counter() - t0}
            run.append_metrics([row])
            run.log(f"epoch {epoch}: loss {row['loss_train']:.4f}, Dice {row['dice_train']:.3f} (validation "
                    f"{val_dice:.3f}) in {row['seconds']:.1f} s")
            logged = body.is_logged(epoch)
            body.end(model, epoch)
            if logged or epoch % max(t.checkpoint_every, 1) == 0 or epoch == t.epochs:
                save_checkpoint(run, model, optimizer, epoch, cfg)
            step(status=f"loss {row['loss_train']:.4f} dice {row['dice_train']:.3f} val {val_dice:.3f}")
    run.log(f"finished {t.epochs} epochs: metrics in {run.path / 'metrics.csv'}, checkpoint {run.checkpoint_path}")
    return run
