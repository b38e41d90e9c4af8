"""Per-layer kernel norms and gradient signal-to-noise at logged epochs (the seed code's logs)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn


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
