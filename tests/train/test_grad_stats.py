"""GradStats follows the original's logs: each layer's kernel only, never its bias."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from infoflow.models import build_model
from infoflow.tracking import GradStats, layer_kernels


def _model():
    torch.manual_seed(0)
    return build_model(model=1, width=4)  # torch init: the biases are not zero


@pytest.mark.parametrize("index", [0, 10, 22])  # a ConvReLU, a bare transposed conv, the conv + sigmoid output
def test_weight_norm_is_the_kernel_norm_without_the_bias(index):
    model = _model()
    name, layer = model.probe_modules()[index]
    conv = layer if isinstance(layer, nn.ConvTranspose2d) else layer[0]
    row = GradStats([(name, layer)]).rows(epoch=1)[0]
    kernel = conv.weight.detach().double().norm().item()
    with_bias = math.hypot(kernel, conv.bias.detach().double().norm().item())
    assert row["weight_norm"] == pytest.approx(kernel, rel=1e-12)
    assert abs(with_bias - kernel) > 1e-6 * kernel  # counting the bias would be seen
    assert math.isnan(row["grad_mean_norm"]) and math.isnan(row["grad_std_norm"])  # no batch recorded


def test_gradient_mean_and_std_norms_on_two_hand_made_batches():
    """Conv2d(2 -> 1, 1x1) with loss = sum of outputs: dL/dW[c] = sum of channel c of the batch,
    dL/db = number of output pixels (4 here), which must not count."""
    conv = nn.Conv2d(2, 1, kernel_size=1)
    stats = GradStats([("conv", conv)])
    batches = [torch.stack([torch.full((2, 2), 1.0), torch.full((2, 2), 0.5)])[None],  # dL/dW = (4, 2)
               torch.stack([torch.full((2, 2), 0.0), torch.full((2, 2), 2.0)])[None]]  # dL/dW = (0, 8)
    for x in batches:
        conv.zero_grad()
        conv(x).sum().backward()
        stats.update()
    assert conv.bias.grad.item() == 4.0
    row = stats.rows(epoch=3)[0]
    # mean (2, 5): norm sqrt(29); population sd (2, 3): norm sqrt(13). With the bias: sqrt(45), sqrt(13).
    assert row["grad_mean_norm"] == pytest.approx(math.sqrt(29), rel=1e-12)
    assert row["grad_std_norm"] == pytest.approx(math.sqrt(13), rel=1e-12)
    assert row["weight_norm"] == pytest.approx(conv.weight.detach().double().norm().item(), rel=1e-12)
    assert (row["epoch"], row["layer"], row["name"]) == (3, 0, "conv")


def test_layers_of_other_networks():
    """Arbitrary modules (the API tracker): a block's kernel is its conv's weight (a norm's scale
    is not a kernel); a layer without a kernel has NaN norms."""
    block = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU())
    assert layer_kernels(block) == [block[0].weight]
    assert layer_kernels(nn.ReLU()) == [] and layer_kernels(nn.Module()) == []
    linear = nn.Linear(3, 2)
    assert layer_kernels(linear) == [linear.weight]

    stats = GradStats([("block", block), ("relu", nn.ReLU()), ("linear", linear)])
    block(torch.randn(4, 2, 5, 5)).sum().backward()
    linear(torch.randn(4, 3)).sum().backward()
    stats.update()
    rows = stats.rows(epoch=1)
    assert rows[0]["weight_norm"] == pytest.approx(block[0].weight.detach().double().norm().item(), rel=1e-12)
    assert rows[0]["grad_mean_norm"] == pytest.approx(block[0].weight.grad.double().norm().item(), rel=1e-12)
    assert rows[0]["grad_std_norm"] == 0.0  # one batch
    assert all(math.isnan(rows[1][k]) for k in ("weight_norm", "grad_mean_norm", "grad_std_norm"))
    assert rows[2]["grad_mean_norm"] == pytest.approx(linear.weight.grad.double().norm().item(), rel=1e-12)
