"""Training: the paper's loop, the logged-epoch schedules, checkpoints and resume.

Epochs are 1-based: epoch ``e`` is the state after ``e`` passes over the training split.
Shuffling of epoch ``e`` uses a generator seeded from ``(seed, e)``, and a checkpoint holds the
model and optimizer, so a run killed at any point and resumed from its last checkpoint ends with
exactly the metrics of an uninterrupted run (on the same machine and thread count).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import RunConfig
from .errors import ConfigError, RunError
from .models.unet import INITS
from .runs import RunDir, atomic_write_bytes

# ---------------------------------------------------------------------------------------------
# Logged-epoch schedules
# ---------------------------------------------------------------------------------------------


def do_report(keras_epoch: int) -> bool:
    """The original code's ``do_report(epoch)`` on Keras's 0-based epoch: every epoch below 20,
    every 5th below 100, every 10th below 200, then every 100th (methods.md section 3)."""
    k = int(keras_epoch)
    return k >= 0 and (k < 20 or (k < 100 and k % 5 == 0) or (k < 200 and k % 10 == 0) or k % 100 == 0)


def in_code_schedule(epoch: int) -> bool:
    """Whether the original code logs infoflow's 1-based ``epoch``: Keras's epoch ``k`` ends after
    ``k + 1`` epochs of training, so this is ``do_report(epoch - 1)``: epochs 1-20, 21, 26, ...,
    96, 101, 111, ..., 191, then 201, 301, ... The single definition of the code schedule
    (:func:`code_schedule` and :func:`infoflow.api.schedule_predicate` use it)."""
    return int(epoch) >= 1 and do_report(int(epoch) - 1)


def code_schedule(epochs: int) -> list[int]:
    """The original code's logged epochs among 1..``epochs`` (1-based), exactly: 1-20, 21, 26,
    ..., 96, 101, 111, ..., 191, 201, 301, ..., 9901 (144 epochs for 10,000). The last epoch is
    *not* added (the original did not log it): with 10,000 epochs the last logged one is 9,901."""
    return [e for e in range(1, int(epochs) + 1) if in_code_schedule(e)]


def log_schedule(epochs: int, points: int = 30) -> list[int]:
    """About ``points`` log-spaced epochs in [1, epochs], always including 1 and ``epochs``."""
    if epochs < 1:
        return []
    grid = np.unique(np.round(np.geomspace(1, epochs, num=max(points, 2))).astype(int))
    return sorted(set(grid.tolist()) | {1, epochs})


def logged_epochs(schedule: str, epochs: int, *, log_points: int = 30) -> list[int]:
    if schedule == "code":
        return code_schedule(epochs)
    if schedule == "log":
        return log_schedule(epochs, log_points)
    if schedule == "all":
        return list(range(1, epochs + 1))
    raise ConfigError(f"train.schedule must be 'code', 'log' or 'all', got {schedule!r}")


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
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise ConfigError(f"train.device must be 'auto', 'cpu' or 'cuda', got {name!r}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device is {name!r} but CUDA is not available on this machine")
    return torch.device(name)


def make_optimizer(params: Iterator[nn.Parameter], cfg: RunConfig) -> torch.optim.Optimizer:
    t = cfg.train
    if t.lr <= 0 or not math.isfinite(t.lr):
        raise ConfigError(f"train.lr must be a positive number, got {t.lr!r}")
    if t.optimizer == "sgd":
        return torch.optim.SGD(params, lr=t.lr, momentum=t.momentum)
    if t.optimizer == "adam":
        return torch.optim.Adam(params, lr=t.lr)
    raise ConfigError(f"train.optimizer must be 'sgd' or 'adam', got {t.optimizer!r}")


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(int(seed) * 1_000_003 + int(epoch))
    return g


def validate_config(cfg: RunConfig) -> None:
    t = cfg.train
    if t.epochs < 1:
        raise ConfigError(f"train.epochs must be at least 1, got {t.epochs}")
    if t.batch_size < 1:
        raise ConfigError(f"train.batch_size must be at least 1, got {t.batch_size}")
    if cfg.data.size % 16 != 0 or cfg.data.size < 16:
        raise ConfigError(f"data.size must be a multiple of 16 (four 2x2 poolings), got {cfg.data.size}")
    if cfg.model.width < 1:
        raise ConfigError(f"model.width must be a positive integer, got {cfg.model.width}")
    cfg.model.skip_mask()
    if cfg.model.init not in INITS:
        raise ConfigError(f"model.init must be one of {', '.join(INITS)}, got {cfg.model.init!r}")
    logged_epochs(t.schedule, 1, log_points=t.log_points)


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


#: Modules whose ``weight`` is a kernel (a norm layer's ``weight`` is a scale, not a kernel).
KERNEL_MODULES: tuple[type[nn.Module], ...] = (nn.modules.conv._ConvNd, nn.Linear)


def layer_kernels(module: nn.Module) -> list[nn.Parameter]:
    """The kernel(s) of a probe layer, without biases: the module's own ``weight`` when it has
    one (a Conv2d, a ConvTranspose2d, ...); otherwise the ``weight`` of every convolution or
    linear submodule, e.g. the conv of a conv + ReLU block such as infoflow's ``ConvReLU`` or
    MONAI's ``Convolution`` (its norm's scale is not a kernel). Empty when there is none."""
    weight = getattr(module, "weight", None)
    if isinstance(weight, nn.Parameter):
        return [weight]
    return [m.weight for m in module.modules()
            if isinstance(m, KERNEL_MODULES) and isinstance(getattr(m, "weight", None), nn.Parameter)]


class GradStats:
    """Per-layer kernel norm and gradient signal-to-noise over the batches of an epoch (the seed
    code's logs, methods.md section 3).

    Like the original, only each layer's kernel counts, not its bias (:func:`layer_kernels`;
    several kernels count as one vector): ``weight_norm`` is |W| when :meth:`rows` is called;
    ``grad_mean_norm`` and ``grad_std_norm`` are the norms of the elementwise mean and
    (population) standard deviation of dL/dW over the batches recorded by :meth:`update`. A layer
    without a kernel gets NaN.
    """

    def __init__(self, layers: Sequence[tuple[str, nn.Module]]) -> None:
        self.layers = list(layers)
        self.kernels = [layer_kernels(m) for _, m in self.layers]
        self.n = 0
        self.sum: list[torch.Tensor | None] = [None] * len(self.layers)
        self.sq: list[torch.Tensor | None] = [None] * len(self.layers)

    def _grads(self, i: int) -> torch.Tensor | None:
        gs = [w.grad.detach().flatten().double() for w in self.kernels[i] if w.grad is not None]
        return torch.cat(gs) if gs else None

    def update(self) -> None:
        """Record the kernels' current gradients (call after ``loss.backward()``, once a batch)."""
        self.n += 1
        for i in range(len(self.layers)):
            g = self._grads(i)
            if g is None:
                continue
            self.sum[i] = g.clone() if self.sum[i] is None else self.sum[i] + g
            self.sq[i] = g * g if self.sq[i] is None else self.sq[i] + g * g

    def rows(self, epoch: int) -> list[dict[str, Any]]:
        rows = []
        for i, (name, _) in enumerate(self.layers):
            kernels = self.kernels[i]
            weight_sq = sum(float(w.detach().double().pow(2).sum()) for w in kernels)
            row = {"epoch": epoch, "layer": i, "name": name,
                   "weight_norm": math.sqrt(weight_sq) if kernels else float("nan"),
                   "grad_mean_norm": float("nan"), "grad_std_norm": float("nan")}
            if self.sum[i] is not None and self.n > 0:
                mean = self.sum[i] / self.n
                var = (self.sq[i] / self.n - mean * mean).clamp_min(0)
                row["grad_mean_norm"] = mean.norm().item()
                row["grad_std_norm"] = var.sqrt().norm().item()
            rows.append(row)
        return rows


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------


def save_checkpoint(run: RunDir, model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int,
                    cfg: RunConfig) -> None:
    state = {"epoch": int(epoch), "model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "config": cfg.to_json()}
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(run.checkpoint_path, buf.getvalue())


def load_checkpoint(path: Path, *, map_location: torch.device | str = "cpu") -> dict[str, Any]:
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise RunError(f"checkpoint {path} does not exist") from None
    except Exception as exc:  # corrupt file
        raise RunError(f"checkpoint {path} cannot be read: {exc}") from None


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------

EpochCallback = Callable[[nn.Module, int], None]


def _progress(enabled: bool):  # noqa: ANN202 - rich types are optional
    if not enabled:
        return contextlib.nullcontext(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
        TimeRemainingColumn

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TimeRemainingColumn())


def train(cfg: RunConfig, out: str | Path, *, resume: bool = False, progress: bool = True,
          callbacks: Sequence[EpochCallback] = (), mi: bool | None = None) -> RunDir:
    """Train ``cfg``'s model into run directory ``out`` (or resume it) and return the run.

    At each logged epoch: per-layer weight and gradient statistics, predictions of a few fixed
    validation images, MI of every probe layer (when ``cfg.mi.enabled``), then ``callbacks``.
    """
    from .data import load_splits

    out = Path(out)
    if resume:
        run = RunDir.open(out)
        cfg = RunConfig.from_dict(run.read_config())
    else:
        validate_config(cfg)
        run = RunDir.create(out, cfg.to_dict())
    validate_config(cfg)
    t = cfg.train
    if t.num_threads:
        torch.set_num_threads(int(t.num_threads))
    device = resolve_device(t.device)
    channels_last = t.channels_last and device.type == "cpu"

    splits = load_splits(cfg.data, progress=progress)
    x_train = torch.from_numpy(splits.train.images)
    y_train = torch.from_numpy(splits.train.masks)
    x_val = torch.from_numpy(splits.test.images)
    y_val = torch.from_numpy(splits.test.masks)

    from .models import build_model

    torch.manual_seed(t.seed)
    model = build_model(model=cfg.model.model, skips=cfg.model.skip_mask(), width=cfg.model.width,
                        in_channels=cfg.model.in_channels, init=cfg.model.init).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model.parameters(), cfg)

    start = 0
    if resume and run.checkpoint_path.exists():
        state = load_checkpoint(run.checkpoint_path, map_location=device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["epoch"])
        run.log(f"resumed from {run.checkpoint_path} at epoch {start}")
    elif resume:
        run.log("resume requested but no checkpoint yet: starting from epoch 0")
    run.truncate_after(start)

    schedule = set(logged_epochs(t.schedule, t.epochs, log_points=t.log_points))
    probe_layers = model.probe_modules()
    tracker = None
    if (cfg.mi.enabled if mi is None else mi):
        from .tracker import MITracker

        tracker = MITracker.for_run(run, cfg, splits, device=device)
    n_pred = min(t.n_predictions, len(x_val))
    if n_pred:  # inputs and ground truth of the predicted images, for the figures (paper Fig. 6)
        run.save_prediction_inputs(splits.test.images[:n_pred], splits.test.masks[:n_pred], splits.test.ids[:n_pred])
    if start == 0:
        run.log(f"training {cfg.name}: model skips {cfg.model.skip_mask()}, width {cfg.model.width}, "
                f"S={cfg.data.size}, {len(x_train)} train / {len(x_val)} val images, device {device}")

    n = len(x_train)
    with _progress(progress) as bar, (tracker if tracker is not None else contextlib.nullcontext()):
        task = bar.add_task(cfg.name, total=t.epochs, completed=start, status="") if bar else None
        for epoch in range(start + 1, t.epochs + 1):
            t0 = time.perf_counter()
            logged = epoch in schedule
            grads = GradStats(probe_layers) if logged else None
            model.train()
            order = torch.randperm(n, generator=epoch_generator(t.seed, epoch))
            loss_sum, dice_sum = 0.0, 0.0
            for i in range(0, n, t.batch_size):
                idx = order[i:i + t.batch_size]
                x = x_train[idx].to(device)
                y = y_train[idx].to(device)
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                optimizer.zero_grad(set_to_none=True)
                p = model(x)
                loss = F.binary_cross_entropy(p, y)
                loss.backward()
                if grads is not None:
                    grads.update()
                optimizer.step()
                # Keras-style running training metrics, weighted by batch size
                loss_sum += loss.item() * len(idx)
                dice_sum += dice_per_image(p.detach(), y).sum().item()
            val_loss, val_dice = evaluate(model, x_val, y_val, batch_size=32, device=device,
                                          channels_last=channels_last)
            row = {"epoch": epoch, "loss_train": loss_sum / n, "dice_train": dice_sum / n,
                   "loss_val": val_loss, "dice_val": val_dice, "seconds": time.perf_counter() - t0}
            run.append_metrics([row])
            if logged:
                run.append_layer_stats(grads.rows(epoch))
                if n_pred:
                    with torch.no_grad():
                        model.eval()
                        xp = x_val[:n_pred].to(device)
                        probs = model(xp).float().cpu().numpy()
                        model.train()
                    run.save_predictions(epoch, probs, splits.test.ids[:n_pred])
                if tracker is not None:
                    tracker.log_epoch(model, epoch)
                for cb in callbacks:
                    cb(model, epoch)
            if logged or epoch % max(t.checkpoint_every, 1) == 0 or epoch == t.epochs:
                save_checkpoint(run, model, optimizer, epoch, cfg)
            if bar is not None:
                bar.update(task, advance=1, status=f"loss {row['loss_train']:.4f} dice {row['dice_train']:.3f} "
                                                   f"val {val_dice:.3f}")
    run.log(f"finished {t.epochs} epochs: metrics in {run.path / 'metrics.csv'}, checkpoint {run.checkpoint_path}")
    return run


def config_from_checkpoint(path: Path) -> RunConfig:
    return RunConfig.from_dict(json.loads(load_checkpoint(path)["config"]))
