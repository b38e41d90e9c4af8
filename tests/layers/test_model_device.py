"""network.model_device: where a model lives, for the probe, the Tracker and MITracker."""

from __future__ import annotations

import torch
from torch import nn

from infoflow.network import model_device


def test_model_device_from_parameters_buffers_or_cpu() -> None:
    """A model without parameters (a pooling head, say) is not an error: its buffers tell, and
    without either it is the CPU."""
    assert model_device(nn.Conv2d(1, 1, 3)) == torch.device("cpu")
    only_buffers = nn.BatchNorm2d(2, affine=False)
    assert next(iter(only_buffers.parameters()), None) is None
    assert model_device(only_buffers) == torch.device("cpu")
    assert model_device(nn.Identity()) == torch.device("cpu")
    if torch.cuda.is_available():
        assert model_device(nn.BatchNorm2d(2, affine=False).cuda()).type == "cuda"
