"""Probe layers of any segmentation network, in forward *execution* order.

infoflow's own U-Net names its 23 probe layers (:meth:`infoflow.models.UNet.probe_modules`). For
any other ``torch.nn.Module`` :func:`find_probe_layers` finds them from one forward pass on a small
example input: every convolution and transposed convolution, each taken after its own activation
function, plus the model's output. :func:`resolve_layers` turns the ways probe layers are named
(``[(name, module)]``, submodule paths, a mapping) into ``(name, module)`` pairs.

What a probe layer takes (``after_activation=True``, the paper's convention)
---------------------------------------------------------------------------
A selected convolution starts a *chain*: the leaf modules executed right after it, each taking
exactly the previous one's output, that are normalisations (BatchNorm, InstanceNorm, GroupNorm,
LayerNorm), dropouts or ``nn.Identity``, ended by the first activation module (ReLU, LeakyReLU,
PReLU, Sigmoid, ... and MONAI's activations). The probe layer's activation is the output of the
chain's last module, hooked on the *outermost module that computes exactly that chain* -- so
``conv -> ReLU`` inside an ``nn.Sequential`` is probed on the Sequential (infoflow's
``enc1.conv_a``), and a MONAI ``Convolution`` block (conv -> norm -> dropout -> act) on the block
itself. Where no activation module follows (the paper's transposed convolutions, an output conv
giving logits, a ``conv -> BatchNorm`` before a residual addition), the chain's last module's
output is taken (the conv's own output, or its normalisation's). Activations applied as functions
(``F.relu(x)``) are not modules: the probe then takes the pre-activation output. An activation
module that runs several times per forward pass (one ``self.relu`` shared by many layers) cannot
be hooked for one layer: the chain then stops before it (said in the layer's ``taken``).
``after_activation=False`` takes every convolution's raw output. :class:`ProbeLayer` records, per
layer, the convolution it stands for and what is taken.

Residual blocks (``after_addition=True``)
-----------------------------------------
A *residual block* is a submodule (run once per pass) whose output is an addition of tensors --
``conv(x) + shortcut(x)``, optionally followed by an activation module -- where at least one
added tensor is a probe layer's output inside the block (MONAI's ``ResidualUnit``, SegResNet's
``ResBlock``). Its probe layer is the block's output *after the addition*: the probe layer ending
the block's main branch (the last one computed) is replaced by the block, and a probe layer whose
output is only the other addend (a projection conv on the shortcut) is dropped. The addition
becomes a residual skip (join ``"add"``) of the network's layout, told apart from the U-Net's
concatenation skips.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ..errors import ConfigError, ProbeError
from .forward import _example, _run_hooked, _tensors

#: Module types probed by default: convolutions and transposed convolutions of 1, 2 and 3 dims.
CONV_TYPES: tuple[type[nn.Module], ...] = (
    nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
)

#: Name of the extra layer that stands for the model's output when no probe module produces it.
OUTPUT_NAME = "output"

#: What ``layers`` arguments accept: ``[(name, module), ...]``, ``[name, ...]`` (submodule paths of
#: the model) or a mapping ``{name: module}``.
LayerSpec = Union[Sequence[Union[tuple[str, nn.Module], str]], Mapping[str, nn.Module]]


class LayerWarning(UserWarning):
    """A layer could not be probed as asked (shared module, output that is not a tensor)."""


# ---------------------------------------------------------------------------------------------
# Module kinds
# ---------------------------------------------------------------------------------------------

_TORCH_ACTIVATIONS: tuple[type[nn.Module], ...] = tuple(
    getattr(nn, n) for n in (
        "ReLU", "ReLU6", "LeakyReLU", "PReLU", "RReLU", "ELU", "SELU", "CELU", "GELU", "SiLU", "Mish",
        "Sigmoid", "Tanh", "Hardtanh", "Hardswish", "Hardsigmoid", "Softplus", "Softsign", "Softmax",
        "Softmax2d", "LogSoftmax", "LogSigmoid", "Softmin", "Tanhshrink", "Threshold", "GLU",
    ) if hasattr(nn, n)
)
_NORMS: tuple[type[nn.Module], ...] = tuple(
    t for t in (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm,
                getattr(nn, "RMSNorm", None)) if t is not None
)
_PASS: tuple[type[nn.Module], ...] = (nn.modules.dropout._DropoutNd, nn.Identity)


def is_activation(module: nn.Module) -> bool:
    """True for activation-function modules (torch's and MONAI's)."""
    if isinstance(module, _TORCH_ACTIVATIONS):
        return True
    mod = type(module).__module__
    return mod.startswith("monai.networks.blocks.activation") or (
        mod == "torch.nn.modules.activation" and type(module).__name__ != "MultiheadAttention")


def _chain_kind(module: nn.Module) -> str | None:
    if is_activation(module):
        return "activation"
    if isinstance(module, _NORMS):
        return "norm"
    if isinstance(module, _PASS):
        return "pass"
    return None


@dataclass
class ProbeLayer:
    """One probe layer found by :func:`describe_probe_layers`."""

    index: int  # position in forward order
    name: str  # stable name (the probed module's path, or "output" for the model itself)
    path: str  # submodule path of the probed module ("" = the model itself)
    module: nn.Module = field(repr=False)
    source: str  # the module the layer stands for (the conv's path), or the name given
    taken: str  # what the activation is, in words

    @property
    def pair(self) -> tuple[str, nn.Module]:
        return self.name, self.module

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "name": self.name, "path": self.path, "type": type(self.module).__name__,
                "source": self.source, "taken": self.taken}


def resolve_layers(model: nn.Module, layers: LayerSpec) -> list[tuple[str, nn.Module]]:
    """Normalise ``layers`` to a list of ``(name, module)`` pairs of submodules of ``model``.

    Raises :class:`ProbeError` for an empty list, a repeated name, an unknown submodule path or
    a module that is not part of ``model``.
    """
    items = list(layers.items()) if isinstance(layers, Mapping) else list(layers)
    if not items:
        raise ProbeError("no probe layers given")
    own = {id(m) for m in model.modules()}
    out: list[tuple[str, nn.Module]] = []
    seen: set[str] = set()
    for item in items:
        if isinstance(item, str):
            try:
                module = model.get_submodule(item)
            except AttributeError as exc:
                raise ProbeError(f"probe layer {item!r} is not a submodule of {type(model).__name__}") from exc
            name = item
        else:
            try:
                name, module = item
            except (TypeError, ValueError) as exc:
                raise ProbeError(f"a probe layer must be a name or a (name, module) pair, got {item!r}") from exc
            name = str(name)
            if not isinstance(module, nn.Module):
                raise ProbeError(f"probe layer {name!r} is not a torch.nn.Module (got {type(module).__name__})")
            if id(module) not in own:
                raise ProbeError(f"probe layer {name!r} ({type(module).__name__}) is not part of the model")
        if name in seen:
            raise ProbeError(f"probe layer name {name!r} is given twice")
        seen.add(name)
        out.append((name, module))
    return out


# ---------------------------------------------------------------------------------------------
# The traced forward pass
# ---------------------------------------------------------------------------------------------


def _version(t: torch.Tensor) -> int:
    try:
        return int(t._version)
    except Exception:  # noqa: BLE001 - inference tensors have no version counter
        return 0


@dataclass
class _Call:
    module: nn.Module
    path: str
    start: int  # leaf calls before this call began
    end: int = -1  # leaf calls when it returned (the span is [start, end))
    done: int = -1  # completion order among all calls
    inputs: list = field(default_factory=list)
    in_versions: list = field(default_factory=list)  # version counters of the inputs at the call
    output: Any = None
    version: int = -1  # version counter of the output when the call returned (-1: not a tensor)
    leaf: bool = False

    def returns(self, t: Any, version: int) -> bool:
        """True when this call returned tensor ``t`` and ``t`` was not changed in place since."""
        return self.output is t and self.version == version


#: Tensor functions and methods that add tensors (a residual addition).
_ADD_OPS = frozenset({"add", "add_", "__add__", "__radd__", "__iadd__"})


@dataclass
class _Trace:
    calls: list[_Call]  # in completion order (the root last)
    leaves: list[_Call]  # leaf calls in execution order
    counts: dict[int, int]  # id(module) -> calls in the forward pass
    root: _Call
    paths: dict[int, str]  # id(module) -> first path
    # additions: id(result) -> (result, its version after the op, [(addend, its version before)])
    adds: dict[int, tuple[torch.Tensor, int, list[tuple[torch.Tensor, int]]]] = field(default_factory=dict)

    def addends(self, t: Any, version: int) -> list[tuple[torch.Tensor, int]]:
        """The tensors added to give ``t`` (at ``version``), [] when an addition did not make it."""
        rec = self.adds.get(id(t)) if isinstance(t, torch.Tensor) else None
        if rec is None or rec[0] is not t or rec[1] != version:
            return []
        return rec[2]


def _trace(model: nn.Module, args: tuple, kwargs: dict, inferred: bool) -> _Trace:
    paths: dict[int, str] = {}
    for name, m in model.named_modules():
        paths.setdefault(id(m), name)
    stack: list[_Call] = []
    calls: list[_Call] = []
    leaves: list[_Call] = []
    counts: dict[int, int] = {}
    adds: dict[int, tuple[torch.Tensor, int, list[tuple[torch.Tensor, int]]]] = {}

    class Adds(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
            kwargs = kwargs or {}
            if getattr(func, "__name__", "") not in _ADD_OPS:
                return func(*args, **kwargs)
            ins = [(t, _version(t)) for t in _tensors((args, kwargs))]
            out = func(*args, **kwargs)
            if isinstance(out, torch.Tensor) and len(ins) >= 2:
                adds[id(out)] = (out, _version(out), ins)
            return out

    def pre(module: nn.Module, a: tuple, kw: dict) -> None:
        ins = _tensors((a, kw))
        c = _Call(module, paths[id(module)], start=len(leaves), inputs=ins, in_versions=[_version(t) for t in ins],
                  leaf=next(iter(module.children()), None) is None)
        stack.append(c)

    def post(module: nn.Module, a: tuple, kw: dict, out: Any) -> None:
        c = stack.pop()
        if c.module is not module:  # pragma: no cover - hooks are properly nested
            raise ProbeError("forward hooks fired out of order while tracing the model")
        c.output = out
        c.version = _version(out) if isinstance(out, torch.Tensor) else -1
        if c.leaf:
            leaves.append(c)
        c.end = len(leaves)
        c.done = len(calls)
        calls.append(c)
        counts[id(module)] = counts.get(id(module), 0) + 1

    _run_hooked(model, model.modules(), pre, post, Adds(), args, kwargs, inferred)
    root = calls[-1] if calls and calls[-1].module is model else None
    if root is None:  # pragma: no cover
        raise ProbeError(f"could not trace a forward pass of {type(model).__name__}")
    # leaf calls were appended on completion; a leaf's span start equals its position
    return _Trace(calls, leaves, counts, root, paths, adds)


# ---------------------------------------------------------------------------------------------
# Probe layers
# ---------------------------------------------------------------------------------------------


def _enclosing(trace: _Trace, start: int, last: _Call) -> list[_Call]:
    """Calls (not the root) inside leaf calls [start, last.end) that end with ``last`` and return
    its output unchanged, outermost first (the widest span; an enclosing call completes later)."""
    found = [c for c in trace.calls if c is not trace.root and c.start >= start and c.end == last.end
             and c.returns(last.output, last.version)]
    return sorted(found, key=lambda c: (c.start, -c.done))


def _resolve(trace: _Trace, sel: _Call, after_activation: bool) -> tuple[_Call | None, str]:
    """The call to hook for selected call ``sel`` and a description of what it takes."""
    chain = [sel]
    if after_activation:
        j = sel.end
        while j < len(trace.leaves):
            nxt = trace.leaves[j]
            kind = _chain_kind(nxt.module)
            if kind is None or not nxt.inputs or not chain[-1].returns(nxt.inputs[0], nxt.in_versions[0]):
                break
            chain.append(nxt)
            j += 1
            if kind == "activation":
                break
    stop = ""  # why the chain is cut short, if it is
    for k in range(len(chain) - 1, -1, -1):
        last = chain[k]
        for c in _enclosing(trace, sel.start, last):
            if trace.counts[id(c.module)] != 1:
                continue
            if k == 0:
                what = "own output" if after_activation else "own output (after_activation=False)"
                if after_activation and len(chain) == 1:
                    what += " (no activation module follows)"
            else:
                what = "after " + " -> ".join(type(x.module).__name__ for x in chain[1:k + 1])
                if _chain_kind(last.module) != "activation" and not stop:
                    what += " (no activation module follows)"
            return c, what + stop
        if trace.counts[id(last.module)] > 1 and not stop:
            stop = (f"; {type(last.module).__name__} {last.path!r} runs {trace.counts[id(last.module)]} times per "
                    "forward pass and cannot be hooked for one layer, so the activation is taken before it")
    return None, ""


def _block_addends(trace: _Trace, block: _Call) -> list[tuple[torch.Tensor, int]]:
    """The addends of the addition ``block`` itself computes as its output (directly, or followed
    by an activation module as its last leaf call); [] when no addition in the block's own forward
    makes its output (an enclosing container of a residual block is not one)."""
    inside = [c for c in trace.calls if c.done < block.done and block.start <= c.start and c.end <= block.end]
    out, version = block.output, block.version
    if any(c.returns(out, version) for c in inside):
        if block.end <= block.start:
            return []
        last = trace.leaves[block.end - 1]
        if not (last.returns(out, version) and _chain_kind(last.module) == "activation" and last.inputs):
            return []
        if any(c is not last and c.returns(out, version) for c in inside):
            return []
        out, version = last.inputs[0], last.in_versions[0]
        if any(c.returns(out, version) for c in inside):
            return []
    return trace.addends(out, version)


def _residual_blocks(trace: _Trace, chosen: list[tuple[_Call, str, str]]) -> list[tuple[_Call, str, str]]:
    """``chosen`` with each residual block's output (after its addition) in place of the probe
    layer ending its main branch, and shortcut projections dropped (see the module docstring)."""
    chosen = list(chosen)
    for block in trace.calls:  # completion order: inner blocks first
        if block is trace.root or block.leaf or trace.counts[id(block.module)] != 1:
            continue
        if not isinstance(block.output, torch.Tensor) or any(c is block for c, _, _ in chosen):
            continue
        addends = _block_addends(trace, block)
        if not addends:
            continue
        ends = [i for i, (c, _, _) in enumerate(chosen)
                if c.done < block.done and block.start <= c.start and c.end <= block.end
                and any(c.returns(t, v) for t, v in addends)]
        if not ends:
            continue
        main = max(ends, key=lambda i: chosen[i][0].done)
        c, src, _ = chosen[main]
        dropped = [chosen[i][0].path for i in ends if i != main]
        what = f"the block's output after the addition (residual block; ends with {c.path!r}"
        what += f", shortcut {', '.join(map(repr, dropped))} not probed)" if dropped else ")"
        chosen[main] = (block, src, what)
        chosen = [x for i, x in enumerate(chosen) if i == main or i not in ends]
    return chosen


def _selected(trace: _Trace, types: Sequence[type]) -> list[_Call]:
    return [c for c in trace.calls if c is not trace.root and isinstance(c.module, tuple(types))]


def describe_probe_layers(
    model: nn.Module,
    example_input: Any = None,
    *,
    types: Sequence[type[nn.Module]] = CONV_TYPES,
    pattern: str | None = None,
    names: Sequence[str] | None = None,
    include_output: bool = True,
    after_activation: bool = True,
    after_addition: bool = True,
) -> list[ProbeLayer]:
    """The probe layers of ``model`` with what each takes (see the module docstring).

    ``types``: module types that make a probe layer (default: convolutions and transposed
    convolutions). ``pattern``: keep only layers whose name or source module path matches this
    regular expression (``re.search``). ``names``: exactly these submodule paths, taken as they
    are (their own output), in forward order; ``types``, ``pattern``, ``after_activation`` and
    ``include_output`` are then not used. ``include_output``: add the model's final output as the
    last layer when no probe layer already produces it (the outermost submodule returning it that
    holds no other probe layer, else the model itself, named ``"output"``). ``example_input``: one
    small batch (tensor, array, tuple of arguments or mapping of keyword arguments); None infers
    ``(1, C, 32, ...)`` from the first convolution. ``after_addition``: a residual block is probed
    at its output after the addition (see the module docstring); False keeps each conv's own layer.
    """
    args, kwargs, inferred = _example(model, example_input)
    if names is not None:
        return _named_layers(model, args, kwargs, inferred, names)
    types = tuple(types)
    if not types or not all(isinstance(t, type) and issubclass(t, nn.Module) for t in types):
        raise ConfigError(f"types must be nn.Module subclasses, got {types!r}")
    rx = None
    if pattern is not None:
        try:
            rx = re.compile(pattern)
        except re.error as exc:
            raise ConfigError(f"pattern {pattern!r} is not a valid regular expression: {exc}") from None
    trace = _trace(model, args, kwargs, inferred)
    chosen: list[tuple[_Call, str, str]] = []  # (hooked call, source path, taken)
    seen: set[int] = set()
    for sel in _selected(trace, types):
        if id(sel.module) in seen:
            continue
        if trace.counts[id(sel.module)] > 1:
            seen.add(id(sel.module))
            warnings.warn(LayerWarning(
                f"{type(sel.module).__name__} {sel.path!r} runs {trace.counts[id(sel.module)]} times per forward "
                "pass (shared weights); a forward hook cannot tell its calls apart, so it is not probed"),
                stacklevel=2)
            continue
        hooked, taken = _resolve(trace, sel, after_activation)
        if hooked is None or id(hooked.module) in seen:
            continue
        if rx is not None and not (rx.search(hooked.path) or rx.search(sel.path)):
            continue
        seen.add(id(hooked.module))
        chosen.append((hooked, sel.path, taken))
    if after_addition:
        chosen = _residual_blocks(trace, chosen)
    if include_output:
        out = _output_layer(trace, {id(c.module) for c, _, _ in chosen})
        if out is not None:
            chosen.append(out)
    if not chosen:
        what = f"matching {pattern!r} " if pattern is not None else ""
        raise ProbeError(f"no probe layers {what}found in {type(model).__name__} "
                         f"(types: {', '.join(t.__name__ for t in types)})")
    chosen.sort(key=lambda t: t[0].done)
    taken_names = {p for p in trace.paths.values()}
    layers = []
    for i, (c, src, taken) in enumerate(chosen):
        if c is trace.root:
            name = OUTPUT_NAME if OUTPUT_NAME not in taken_names else "model_output"
        else:
            name = c.path
        layers.append(ProbeLayer(i, name, c.path, c.module, src, taken))
    return layers


def _output_layer(trace: _Trace, chosen: set[int]) -> tuple[_Call, str, str] | None:
    out = trace.root.output
    if not isinstance(out, torch.Tensor):
        warnings.warn(LayerWarning(
            f"the model returns {type(out).__name__}, not a tensor: no output layer is added "
            "(choose the output module with names=... or probe a wrapper returning one tensor)"), stacklevel=3)
        return None
    producers = [c for c in trace.calls if c is not trace.root and c.returns(out, trace.root.version)]
    if any(id(c.module) in chosen for c in producers):
        return None
    inside = [c for c in trace.calls if id(c.module) in chosen]
    for c in sorted(producers, key=lambda c: -c.done):  # outermost first
        holds_layer = any(c.start <= p.start and p.end <= c.end and p.done < c.done for p in inside)
        if trace.counts[id(c.module)] == 1 and not holds_layer:
            return c, c.path, "the model's output"
    return trace.root, "", "the model's output (hooked on the model itself)"


def _named_layers(model: nn.Module, args: tuple, kwargs: dict, inferred: bool,
                  names: Sequence[str]) -> list[ProbeLayer]:
    if isinstance(names, str):
        raise ConfigError(f"names must be a list of submodule paths, got the string {names!r}")
    names = [str(n) for n in names]
    if not names:
        raise ConfigError("names is empty: give at least one submodule path")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"names given twice: {', '.join(dup)}")
    modules = dict(model.named_modules())
    unknown = [n for n in names if n not in modules or n == ""]
    if unknown:
        raise ConfigError(f"unknown layer name(s) for {type(model).__name__}: {', '.join(map(repr, unknown))} "
                          "(names are submodule paths as in model.named_modules())")
    trace = _trace(model, args, kwargs, inferred)
    by_id: dict[int, list[_Call]] = {}
    for c in trace.calls:
        by_id.setdefault(id(c.module), []).append(c)
    never = [n for n in names if id(modules[n]) not in by_id]
    if never:
        raise ProbeError(f"layer(s) never run in a forward pass of {type(model).__name__}: {', '.join(never)}")
    multi = [f"{n} ({len(by_id[id(modules[n])])} calls)" for n in names if len(by_id[id(modules[n])]) > 1]
    if multi:
        raise ProbeError("probe layers must run once per forward pass; these run more often: " + ", ".join(multi))
    order = sorted(names, key=lambda n: by_id[id(modules[n])][0].done)
    return [ProbeLayer(i, n, n, modules[n], n, "own output (named)") for i, n in enumerate(order)]


def find_probe_layers(
    model: nn.Module,
    example_input: Any = None,
    *,
    types: Sequence[type[nn.Module]] = CONV_TYPES,
    pattern: str | None = None,
    names: Sequence[str] | None = None,
    include_output: bool = True,
    after_activation: bool = True,
    after_addition: bool = True,
) -> list[tuple[str, nn.Module]]:
    """Probe layers of any network as ``[(name, module), ...]`` in forward execution order.

    By default every convolution and transposed convolution, each after its own activation, and
    the model's output (see :func:`describe_probe_layers` for the arguments). For
    ``infoflow.models.UNet`` this gives exactly ``model.probe_modules()``.
    """
    return [layer.pair for layer in describe_probe_layers(
        model, example_input, types=types, pattern=pattern, names=names, include_output=include_output,
        after_activation=after_activation, after_addition=after_addition)]


__all__ = [
    "CONV_TYPES", "LayerSpec", "LayerWarning", "OUTPUT_NAME", "ProbeLayer", "describe_probe_layers",
    "find_probe_layers", "is_activation", "resolve_layers",
]
