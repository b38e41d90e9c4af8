"""A network's probe layers, merge points and layout, found together from one example input.

:func:`describe_network` gives a :class:`Network`: the probe layers (with the modules to hook), the
merges found (:func:`~infoflow.network.find_merges`) and the :class:`~infoflow.network.NetworkLayout`
they make, which ``config.json["network"]`` keeps (:meth:`Network.to_config`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from torch import nn

from ..errors import ConfigError, ProbeError
from .forward import _example, _first_conv, _shape_of
from .layout import NetworkLayout
from .merges import DEFAULT_JOIN_OPS, Merge, _layer_pairs, find_merges, merge_layers, skip_pairs
from .probe_layers import LayerWarning, ProbeLayer, describe_probe_layers


@dataclass
class Network:
    """Probe layers, merge points and layout of a network (what ``config.json["network"]`` keeps).

    ``layers`` and ``merges`` are what was found, with the modules to hook; ``layout`` is the
    network's :class:`NetworkLayout`. :attr:`skip_pairs` and :attr:`merge_layers` are the skips and
    merges *found* (this model's present skips).
    """

    name: str
    cls: str
    layers: list[ProbeLayer]
    merges: list[Merge]
    parameters: int
    example_shape: list[int] | None
    method: str  # how merges were found: "fx" or "hooks" ("none" when there are none)
    layout: NetworkLayout  # probe-layer names, skips (with the ones this model lacks, when it states them), groups
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [la.name for la in self.layers]

    @property
    def paths(self) -> list[str]:
        return [la.path for la in self.layers]

    @property
    def pairs(self) -> list[tuple[str, nn.Module]]:
        return [la.pair for la in self.layers]

    @property
    def skip_pairs(self) -> tuple[tuple[int, int], ...]:
        """The skips found, ``(source, merge)`` sorted by source."""
        return skip_pairs(self.merges)

    @property
    def merge_layers(self) -> tuple[int, ...]:
        """The merge layers found, in forward order."""
        return merge_layers(self.merges)

    def layers_fn(self) -> Callable[[nn.Module], list[tuple[str, nn.Module]]]:
        """``model -> [(name, module)]`` resolving the layers' paths in the model given (so a
        copy of the network with the same structure is probed at the same layers)."""
        names, paths = self.names, self.paths

        def fn(model: nn.Module) -> list[tuple[str, nn.Module]]:
            try:
                return [(n, model.get_submodule(p)) for n, p in zip(names, paths)]
            except AttributeError as exc:
                raise ProbeError(f"{type(model).__name__} does not have the probe layers found at the start "
                                 f"({exc}); pass the same network each time") from exc

        return fn

    def to_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "class": self.cls,
            "parameters": self.parameters,
            **self.layout.to_config(),
            "merges": [m.to_dict() for m in self.merges],
            "merge_detection": self.method,
            "layers": [la.to_dict() for la in self.layers],
            "example_input_shape": self.example_shape,
            **self.options,
        }


def _as_probe_layers(model: nn.Module, pairs: Sequence[tuple[str, nn.Module]]) -> list[ProbeLayer]:
    paths: dict[int, str] = {}
    for name, m in model.named_modules():
        paths.setdefault(id(m), name)
    out = []
    for i, (name, m) in enumerate(pairs):
        if id(m) not in paths:
            raise ProbeError(f"probe layer {name!r} ({type(m).__name__}) is not part of {type(model).__name__}")
        out.append(ProbeLayer(i, name, paths[id(m)], m, name, "given"))
    return out


def count_parameters(model: nn.Module) -> int:
    """The number of parameters of ``model``."""
    return sum(p.numel() for p in model.parameters())


def detected_layout(names: Sequence[str], merges: Sequence[Merge]) -> NetworkLayout:
    """The layout that merges found in a network with probe layers ``names`` make: every skip found
    (present), each skip's join its merge's op when that is "cat" or "add" (else unknown), the
    layer groups by the rule of :mod:`infoflow.network.layout`."""
    join = {(s, m.layer): m.pair_join(s) for m in merges for s in m.skips}
    pairs = skip_pairs(merges)
    return NetworkLayout(names=tuple(names), skip_pairs=pairs, joins=tuple(join[p] for p in pairs))


def _stated_layout(model: nn.Module, detected: NetworkLayout) -> NetworkLayout:
    """The layout ``model`` states (``model.layout()``, infoflow's U-Net) when the detection agrees
    with it -- it also knows the skips this model lacks --, else ``detected`` (with a warning)."""
    stated = model.layout() if callable(getattr(model, "layout", None)) else None
    if not isinstance(stated, NetworkLayout):
        return detected
    problems = []
    if stated.names != detected.names:
        problems.append(f"probe layers {list(stated.names)} stated, {list(detected.names)} probed")
    elif stated.present_pairs != detected.skip_pairs:
        problems.append(f"skips {list(stated.present_pairs)} stated, {list(detected.skip_pairs)} found")
    else:
        problems += [f"skip {s}->{m} joins by {stated.join((s, m))} as stated, by {detected.join((s, m))} as found"
                     for s, m in stated.present_pairs
                     if None not in (stated.join((s, m)), detected.join((s, m)))
                     and stated.join((s, m)) != detected.join((s, m))]
    if problems:
        warnings.warn(LayerWarning(f"{type(model).__name__}.layout() does not match what was found in its forward "
                                   f"pass ({'; '.join(problems)}): the layout found is kept"), stacklevel=3)
        return detected
    joins = tuple(j if j is not None or not on else detected.join(p)
                  for p, on, j in zip(stated.skip_pairs, stated.present, stated.joins))
    return stated if joins == stated.joins else replace(stated, joins=joins)


def describe_network(model: nn.Module, example_input: Any = None, *, layers: Any = None, name: str | None = None,
                     method: str = "auto", ops: Sequence[str] = DEFAULT_JOIN_OPS, **find: Any) -> Network:
    """Probe layers (``layers`` as given, ``model.probe_modules()`` for infoflow's U-Net, else
    :func:`describe_probe_layers` with ``find`` options), merge points and layout of ``model``.

    The layout is the one the merges found make (:func:`detected_layout`). A model probed at its own
    ``probe_modules()`` that also states its layout (``model.layout()``, infoflow's U-Net) gets the
    stated one when the detection agrees with it (the same probe layers, its present skips exactly
    the ones found, their joins the same where both know them): it also lists the skips this model
    lacks. When they disagree, a :class:`LayerWarning` and the layout found.
    """
    own = layers is None and hasattr(model, "probe_modules") and not find
    if own:
        layers = model.probe_modules()
    if layers is None:
        found = describe_probe_layers(model, example_input, **find)
    else:
        if find:
            raise ConfigError(f"layer options {', '.join(sorted(find))} cannot be combined with layers=")
        pairs = _layer_pairs(model, layers)
        found = _as_probe_layers(model, pairs)
    merges = find_merges(model, example_input, [la.pair for la in found], method=method, ops=ops)
    layout = detected_layout([la.name for la in found], merges)
    if own:
        layout = _stated_layout(model, layout)
    args, kwargs, _ = _example(model, example_input) if example_input is not None else (None, None, None)
    shape = _shape_of(args, kwargs) if args is not None else None
    if shape is None:
        conv = _first_conv(model)
        if conv is not None:
            shape = [1, int(conv.in_channels)] + [32] * len(conv.kernel_size)
    return Network(
        name=name or type(model).__name__,
        cls=f"{type(model).__module__}.{type(model).__qualname__}",
        layers=found,
        merges=merges,
        parameters=count_parameters(model),
        example_shape=shape,
        method=merges[0].method if merges else "none",
        layout=layout,
        options={"after_activation": bool(find.get("after_activation", True)), "join_ops": list(ops)},
    )


__all__ = ["Network", "count_parameters", "describe_network", "detected_layout"]
