"""Forward hooks that collect layer activations, always removed afterwards.

A probe layer is a ``(name, module)`` pair; its activation is the module's *output* (modules
whose output is already after their activation function, as :mod:`infoflow.models.unet`
exposes them). Layers may also be given by name (``model.get_submodule(name)``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from ..errors import ProbeError
from ..network.probe_layers import LayerSpec, resolve_layers


def output_tensor(name: str, output: Any) -> torch.Tensor:
    """The tensor a hooked module returned; :class:`ProbeError` for anything else."""
    if isinstance(output, torch.Tensor):
        return output
    raise ProbeError(
        f"probe layer {name!r} returned {type(output).__name__}, not a tensor; "
        "probe a module whose output is the activation tensor"
    )


@contextmanager
def forward_hooks(
    layers: Sequence[tuple[str, nn.Module]], fn: Callable[[int, str, Any], None]
) -> Iterator[None]:
    """Call ``fn(index, name, output)`` after every forward call of each layer's module.

    The hooks are removed when the block exits, whether normally or by an exception (including
    one raised by ``fn`` itself, which propagates out of the model's forward).
    """
    handles = []
    try:
        for index, (name, module) in enumerate(layers):

            def hook(_module: nn.Module, _inputs: Any, output: Any, _i: int = index, _n: str = name) -> None:
                fn(_i, _n, output)

            handles.append(module.register_forward_hook(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


class Captured(dict):
    """``name -> list of tensors``, one per forward call of that layer's module, in call order."""

    def first(self, name: str) -> torch.Tensor:
        """The output of the first forward call of layer ``name``."""
        return self[name][0]

    def cat(self, name: str) -> torch.Tensor:
        """All outputs of layer ``name`` concatenated along the batch dimension."""
        return torch.cat(self[name], dim=0)


@contextmanager
def capture(model: nn.Module, layers: LayerSpec, *, clone: bool = True) -> Iterator[Captured]:
    """Collect the outputs of ``layers`` during the forward calls made inside the block.

    ::

        with capture(model, [("enc", model.enc), ("dec", model.dec)]) as acts:
            model(x)
        acts["enc"]  # [tensor of the first call, ...]

    Outputs are detached (and cloned unless ``clone=False``, so a later in-place operation of
    the model cannot change what was captured). The hooks are always removed, also when the
    block raises. On a normal exit, :class:`ProbeError` names every requested layer that
    produced nothing.
    """
    pairs = resolve_layers(model, layers)
    captured = Captured({name: [] for name, _ in pairs})

    def collect(_index: int, name: str, output: Any) -> None:
        t = output_tensor(name, output).detach()
        captured[name].append(t.clone() if clone else t)

    with forward_hooks(pairs, collect):
        yield captured
    missing = [name for name, outs in captured.items() if not outs]
    if missing:
        raise ProbeError(
            f"{len(missing)} probe layer(s) produced nothing during the forward pass: {', '.join(missing)}"
        )
