"""The example forward pass that probe-layer and merge finding run on a network.

An example input (given, or inferred from the first convolution), eval mode and no_grad for the
pass with every module's mode restored, errors that name the input's shape, and where a model
lives (:func:`model_device`, also used by the probe and the trackers).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn

from ..errors import ProbeError


def _first_conv(model: nn.Module) -> nn.Module | None:
    for m in model.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            return m
    return None


def model_device(model: nn.Module) -> torch.device:
    """Where ``model`` lives: its first parameter's device, else its first buffer's, else the CPU."""
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def _model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    for p in model.parameters():
        return p.device, (p.dtype if p.dtype.is_floating_point else torch.float32)
    return torch.device("cpu"), torch.float32


def infer_example_input(model: nn.Module, size: int = 32) -> torch.Tensor:
    """A small input for ``model``: ``(1, C, size, ...)`` from its first convolution's
    ``in_channels`` and number of spatial dims, on the model's device and dtype."""
    conv = _first_conv(model)
    if conv is None:
        raise ProbeError(f"{type(model).__name__} has no convolution to infer an input shape from: "
                         "pass example_input (one small batch, e.g. torch.zeros(1, C, 32, 32))")
    dims = len(conv.kernel_size)
    device, dtype = _model_device_dtype(model)
    g = torch.Generator().manual_seed(0)
    x = torch.rand((1, int(conv.in_channels)) + (size,) * dims, generator=g, dtype=torch.float32)
    return x.to(device=device, dtype=dtype)


def _example(model: nn.Module, example_input: Any) -> tuple[tuple, dict, bool]:
    """(args, kwargs, inferred) of the example forward call."""
    if example_input is None:
        return (infer_example_input(model),), {}, True
    if type(example_input).__module__ == "numpy" and hasattr(example_input, "shape"):  # an ndarray
        device, dtype = _model_device_dtype(model)
        example_input = torch.as_tensor(example_input).to(device=device, dtype=dtype)
    if isinstance(example_input, torch.Tensor):
        return (example_input,), {}, False
    if isinstance(example_input, tuple):
        return example_input, {}, False
    if isinstance(example_input, Mapping):
        return (), dict(example_input), False
    raise ProbeError(f"example_input must be a tensor, a tuple of forward arguments or a mapping of keyword "
                     f"arguments, got {type(example_input).__name__}")


def _shape_of(args: tuple, kwargs: dict) -> list[int] | None:
    for a in list(args) + list(kwargs.values()):
        if isinstance(a, torch.Tensor):
            return [int(s) for s in a.shape]
    return None


class _Modes:
    """Eval mode and no_grad for the duration of a block; every module's mode is restored."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def __enter__(self) -> None:
        self.saved = [(m, m.training) for m in self.model.modules()]
        self.grad = torch.is_grad_enabled()
        self.model.eval()
        torch.set_grad_enabled(False)

    def __exit__(self, *exc: Any) -> None:
        torch.set_grad_enabled(self.grad)
        for m, mode in self.saved:
            m.training = mode


def _run_hooked(model: nn.Module, modules: Iterable[nn.Module], pre: Callable, post: Callable, mode: Any,
                args: tuple, kwargs: dict, inferred: bool) -> None:
    """One forward pass of ``model`` (in eval mode, :class:`_Modes`) with ``pre`` and ``post``
    forward hooks (with kwargs) on ``modules`` and the torch function ``mode`` active; the hooks
    are removed whatever happens."""
    handles = []
    try:
        for m in modules:
            handles.append(m.register_forward_pre_hook(pre, with_kwargs=True))
            handles.append(m.register_forward_hook(post, with_kwargs=True))
        with _Modes(model), mode:
            _run(model, args, kwargs, inferred)
    finally:
        for h in handles:
            h.remove()


def _run(model: nn.Module, args: tuple, kwargs: dict, inferred: bool) -> Any:
    try:
        return model(*args, **kwargs)
    except ProbeError:
        raise
    except Exception as exc:
        shape = _shape_of(args, kwargs)
        if inferred:
            raise ProbeError(f"{type(model).__name__} failed on an inferred example input of shape {shape} "
                             f"({type(exc).__name__}: {exc}); pass example_input= with one small valid batch") from exc
        raise ProbeError(f"{type(model).__name__} failed on example_input of shape {shape}: "
                         f"{type(exc).__name__}: {exc}") from exc


def _tensors(obj: Any) -> list[torch.Tensor]:
    """Tensors inside nested tuples/lists/dicts."""
    out: list[torch.Tensor] = []
    stack = [obj]
    while stack:
        o = stack.pop()
        if isinstance(o, torch.Tensor):
            out.append(o)
        elif isinstance(o, (list, tuple)):
            stack.extend(reversed(o))
        elif isinstance(o, Mapping):
            stack.extend(reversed(list(o.values())))
    return out


__all__ = ["infer_example_input", "model_device"]
