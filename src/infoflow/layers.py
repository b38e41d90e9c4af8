"""Probe layers and merge points of any segmentation network.

infoflow's own U-Net names its 23 probe layers (:meth:`infoflow.models.UNet.probe_modules`) and its
skip connections (``UNet.skip_pairs``). For any other ``torch.nn.Module`` this module finds both
from one forward pass on a small example input:

* :func:`find_probe_layers` -- every convolution and transposed convolution in forward
  *execution* order, each taken after its own activation function, plus the model's output.
* :func:`find_merges` -- the probe layers whose input joins two streams (``torch.cat`` or an
  addition of tensors that come from different earlier probe layers), and for each stream the
  last probe layer on it: the network's skip pairs in the form of ``UNet.skip_pairs``.
* :func:`describe_network` -- both, as the ``"network"`` entry a run's ``config.json`` keeps
  (what U-Plots and the claim checks read for networks other than infoflow's U-Net).

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

Merge detection
---------------
Every tensor is tagged with the probe layers it comes from: a probe layer's output is tagged with
that layer; any other operation's output carries the union of its inputs' tags. A *join* is a
``cat``/``stack`` or an addition whose tensor inputs come from at least two different streams
(a stream's source is the last probe layer on it, i.e. the largest index in its tag). The merge
layer is the first probe layer that consumes the joined tensor (or the model output, when the
output layer is the whole model). The *main* stream is the one from the latest probe layer; the
others are skips, giving skip pairs ``(source, merge)``. Joins with the network input alone or with
constants/parameters are not merges. The tags propagate through a ``torch.fx`` graph when the
model traces symbolically (``method="fx"``), else through a ``TorchFunctionMode`` plus forward
hooks during a real forward pass (``method="hooks"``; data-dependent control flow, e.g. MONAI's
``BasicUNet``, needs this one). ``method="auto"`` tries fx first.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .errors import ConfigError, ProbeError

#: Module types probed by default: convolutions and transposed convolutions of 1, 2 and 3 dims.
CONV_TYPES: tuple[type[nn.Module], ...] = (
    nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
)

#: Name of the extra layer that stands for the model's output when no probe module produces it.
OUTPUT_NAME = "output"

#: Join operations by family (names of torch functions / tensor methods / operator functions).
JOIN_OPS: dict[str, frozenset[str]] = {
    "cat": frozenset({"cat", "concat", "concatenate", "stack", "hstack", "vstack", "dstack", "column_stack"}),
    "add": frozenset({"add", "add_", "__add__", "__radd__", "__iadd__", "iadd"}),
    "sub": frozenset({"sub", "sub_", "subtract", "__sub__", "__rsub__", "rsub", "__isub__", "isub"}),
    "mul": frozenset({"mul", "mul_", "multiply", "__mul__", "__rmul__", "__imul__", "imul"}),
}
DEFAULT_JOIN_OPS: tuple[str, ...] = ("cat", "add")


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


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------


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


@dataclass(frozen=True)
class Merge:
    """A probe layer whose input joins two or more streams.

    ``layer``: index of the merge layer (the first probe layer consuming the joined tensor);
    ``sources``: per joined stream, the last probe layer on it (ascending); ``main``: the stream
    arriving through the layers just before (the latest source); the others are skips.
    """

    layer: int
    name: str
    sources: tuple[int, ...]
    main: int
    op: str  # "cat", "add", "cat+add", ... ("inputs": a probe module called with several streams)
    method: str = "hooks"  # how it was found: "fx" or "hooks"

    @property
    def skips(self) -> tuple[int, ...]:
        return tuple(s for s in self.sources if s != self.main)

    @property
    def pairs(self) -> tuple[tuple[int, int], ...]:
        return tuple((s, self.layer) for s in self.skips)

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "name": self.name, "sources": list(self.sources), "main": self.main,
                "skips": list(self.skips), "op": self.op}


def skip_pairs(merges: Iterable[Merge]) -> tuple[tuple[int, int], ...]:
    """Skip connections as ``(source layer, merge layer)``, sorted by source (the form of
    ``UNet.skip_pairs``: 1->20, 3->17, 5->14, 7->11 for the paper's Model 1)."""
    return tuple(sorted({p for m in merges for p in m.pairs}))


def merge_layers(merges: Iterable[Merge]) -> tuple[int, ...]:
    """Merge layer indices in forward order."""
    return tuple(sorted({m.layer for m in merges}))


# ---------------------------------------------------------------------------------------------
# Example input and the traced forward pass
# ---------------------------------------------------------------------------------------------


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


@dataclass
class _Trace:
    calls: list[_Call]  # in completion order (the root last)
    leaves: list[_Call]  # leaf calls in execution order
    counts: dict[int, int]  # id(module) -> calls in the forward pass
    root: _Call
    paths: dict[int, str]  # id(module) -> first path


def _trace(model: nn.Module, args: tuple, kwargs: dict, inferred: bool) -> _Trace:
    paths: dict[int, str] = {}
    for name, m in model.named_modules():
        paths.setdefault(id(m), name)
    stack: list[_Call] = []
    calls: list[_Call] = []
    leaves: list[_Call] = []
    counts: dict[int, int] = {}
    handles = []

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

    try:
        for m in model.modules():
            handles.append(m.register_forward_pre_hook(pre, with_kwargs=True))
            handles.append(m.register_forward_hook(post, with_kwargs=True))
        with _Modes(model):
            _run(model, args, kwargs, inferred)
    finally:
        for h in handles:
            h.remove()
    root = calls[-1] if calls and calls[-1].module is model else None
    if root is None:  # pragma: no cover
        raise ProbeError(f"could not trace a forward pass of {type(model).__name__}")
    # leaf calls were appended on completion; a leaf's span start equals its position
    return _Trace(calls, leaves, counts, root, paths)


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
    ``(1, C, 32, ...)`` from the first convolution.
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
) -> list[tuple[str, nn.Module]]:
    """Probe layers of any network as ``[(name, module), ...]`` in forward execution order.

    By default every convolution and transposed convolution, each after its own activation, and
    the model's output (see :func:`describe_probe_layers` for the arguments). For
    ``infoflow.models.UNet`` this gives exactly ``model.probe_modules()``.
    """
    return [layer.pair for layer in describe_probe_layers(
        model, example_input, types=types, pattern=pattern, names=names, include_output=include_output,
        after_activation=after_activation)]


# ---------------------------------------------------------------------------------------------
# Merge detection
# ---------------------------------------------------------------------------------------------

_EMPTY: frozenset = frozenset()


@dataclass
class _Join:
    op: str
    sources: frozenset[int]  # per stream, its last probe layer
    merge: int | None = None


class _Tags:
    """Source tags and pending joins, shared by the fx and the hook tracers."""

    def __init__(self, n_layers: int, ops: Sequence[str]) -> None:
        self.n = n_layers
        self.joins: list[_Join] = []
        self.op_family: dict[str, str] = {}
        for fam in ops:
            if fam not in JOIN_OPS:
                raise ConfigError(f"join ops must be among {', '.join(JOIN_OPS)}, got {fam!r}")
            for name in JOIN_OPS[fam]:
                self.op_family[name] = fam

    @staticmethod
    def union(tags: Iterable[tuple[frozenset, frozenset]]) -> tuple[frozenset, frozenset]:
        src: set[int] = set()
        pend: set[int] = set()
        for s, p in tags:
            src |= s
            pend |= p
        return frozenset(src), frozenset(pend)

    def combine(self, op_name: str, tags: list[tuple[frozenset, frozenset]]) -> tuple[frozenset, frozenset]:
        """Tag of an operation's output; records a join when ``op_name`` joins distinct streams."""
        src, pend = self.union(tags)
        fam = self.op_family.get(op_name)
        if fam is not None:
            streams = {max(s) for s, _ in tags if s}
            if len(streams) >= 2:
                self.joins.append(_Join(fam, frozenset(streams)))
                pend = pend | {len(self.joins) - 1}
        return src, pend

    def consume(self, layer: int, tags: list[tuple[frozenset, frozenset]], *, inputs: bool) -> None:
        """Layer ``layer`` consumes tensors with ``tags``: pending joins merge at it. ``inputs``:
        the tags are the layer's separate inputs (several streams into one module join there)."""
        for _, pend in tags:
            for j in pend:
                if self.joins[j].merge is None:
                    self.joins[j].merge = layer
        if inputs:
            streams = {max(s) for s, _ in tags if s}
            if len(streams) >= 2:
                self.joins.append(_Join("inputs", frozenset(streams), merge=layer))

    def merges(self, names: Sequence[str], method: str) -> list[Merge]:
        by_layer: dict[int, tuple[set[int], set[str]]] = {}
        for j in self.joins:
            if j.merge is None:
                continue
            src, ops = by_layer.setdefault(j.merge, (set(), set()))
            src |= j.sources
            ops.add(j.op)
        out = []
        for layer in sorted(by_layer):
            src, ops = by_layer[layer]
            src.discard(layer)
            if len(src) < 2:
                continue
            order = [o for o in ("cat", "add", "sub", "mul", "inputs") if o in ops]
            out.append(Merge(layer, names[layer], tuple(sorted(src)), max(src), "+".join(order), method))
        return out


def _layer_pairs(model: nn.Module, layers: Any) -> list[tuple[str, nn.Module]]:
    if layers is None:
        return find_probe_layers(model)
    if callable(layers) and not isinstance(layers, (list, tuple, Mapping)):
        layers = layers(model)
    from .probe import resolve_layers

    return resolve_layers(model, layers)


def find_merges(model: nn.Module, example_input: Any = None, layers: Any = None, *,
                method: str = "auto", ops: Sequence[str] = DEFAULT_JOIN_OPS) -> list[Merge]:
    """Probe layers whose input joins streams from different earlier probe layers.

    ``layers``: the probe layers (``[(name, module)]``, submodule names, or a function of the
    model); None: :func:`find_probe_layers`. ``example_input``: as for
    :func:`describe_probe_layers` (None infers one). ``method``: "auto" (fx when the model
    traces symbolically, else hooks), "fx" or "hooks". ``ops``: join families among "cat",
    "add", "sub", "mul" (default cat and add). Returns one :class:`Merge` per merge layer, in
    forward order; :func:`skip_pairs` turns them into ``(source, merge)`` pairs.
    """
    pairs = _layer_pairs(model, layers)
    if method not in ("auto", "fx", "hooks"):
        raise ConfigError(f"method must be 'auto', 'fx' or 'hooks', got {method!r}")
    args, kwargs, inferred = _example(model, example_input)
    ops = tuple(ops)
    if method in ("auto", "fx"):
        try:
            return _merges_fx(model, args, kwargs, pairs, ops)
        except _FxUnavailable as exc:
            if method == "fx":
                raise ProbeError(f"torch.fx cannot trace {type(model).__name__}: {exc}") from exc
    return _merges_hooks(model, args, kwargs, inferred, pairs, ops)


# -- hooks + TorchFunctionMode ---------------------------------------------------------------


def _merges_hooks(model: nn.Module, args: tuple, kwargs: dict, inferred: bool,
                  pairs: list[tuple[str, nn.Module]], ops: Sequence[str]) -> list[Merge]:
    from torch.overrides import TorchFunctionMode

    names = [n for n, _ in pairs]
    index: dict[int, int] = {}
    for i, (_, m) in enumerate(pairs):
        index.setdefault(id(m), i)
    tags = _Tags(len(pairs), ops)
    tag_of: dict[int, tuple[frozenset, frozenset]] = {}
    keep: list[torch.Tensor] = []  # tensors stay alive so their ids stay unique

    def get(t: torch.Tensor) -> tuple[frozenset, frozenset]:
        return tag_of.get(id(t), (_EMPTY, _EMPTY))

    def put(t: torch.Tensor, tag: tuple[frozenset, frozenset]) -> None:
        if id(t) not in tag_of:
            keep.append(t)
        tag_of[id(t)] = tag

    class Mode(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
            kwargs = kwargs or {}
            result = func(*args, **kwargs)
            name = getattr(func, "__name__", "")
            ins = _tensors((args, kwargs))
            if name in ("__setitem__", "copy_"):  # written into the first tensor: it carries both
                if ins:
                    put(ins[0], tags.union(get(t) for t in ins))
                return result
            outs = _tensors(result)
            if outs and ins:
                tag = tags.combine(name, [get(t) for t in ins])
                for t in outs:
                    put(t, tag)
            return result

    def pre(module: nn.Module, a: tuple, kw: dict) -> None:
        k = index[id(module)]
        tags.consume(k, [get(t) for t in _tensors((a, kw))], inputs=True)

    def post(module: nn.Module, a: tuple, kw: dict, out: Any) -> None:
        k = index[id(module)]
        outs = _tensors(out)
        tags.consume(k, [get(t) for t in outs], inputs=False)
        for t in outs:
            put(t, (frozenset({k}), _EMPTY))

    handles = []
    try:
        for m in {id(m): m for _, m in pairs}.values():
            handles.append(m.register_forward_pre_hook(pre, with_kwargs=True))
            handles.append(m.register_forward_hook(post, with_kwargs=True))
        with _Modes(model), Mode():
            _run(model, args, kwargs, inferred)
    finally:
        for h in handles:
            h.remove()
    return tags.merges(names, "hooks")


# -- torch.fx --------------------------------------------------------------------------------


class _FxUnavailable(Exception):
    pass


def _merges_fx(model: nn.Module, args: tuple, kwargs: dict, pairs: list[tuple[str, nn.Module]],
               ops: Sequence[str]) -> list[Merge]:
    import torch.fx as fx

    names = [n for n, _ in pairs]
    index: dict[int, int] = {}
    for i, (_, m) in enumerate(pairs):
        index.setdefault(id(m), i)
    root_layer = index.get(id(model))
    if kwargs:
        raise _FxUnavailable("keyword example inputs are traced with hooks")

    class Tracer(fx.Tracer):
        def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
            return id(m) in index or super().is_leaf_module(m, qualname)

    try:
        graph = Tracer().trace(model)
        gm = fx.GraphModule(model, graph)
    except Exception as exc:  # noqa: BLE001 - any tracing failure means: use the hooks
        raise _FxUnavailable(f"{type(exc).__name__}: {exc}") from exc

    mods = dict(model.named_modules())
    seen: dict[int, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            m = mods.get(str(node.target))
            if m is not None and id(m) in index:
                seen[index[id(m)]] = seen.get(index[id(m)], 0) + 1
    expected = {i for i in range(len(pairs)) if i != root_layer}
    if set(seen) != expected or any(v != 1 for v in seen.values()):
        raise _FxUnavailable("probe layers are not each one call in the traced graph")

    tags = _Tags(len(pairs), ops)
    node_tag: dict[Any, tuple[frozenset, frozenset]] = {}

    def arg_tags(node: fx.Node) -> list[tuple[frozenset, frozenset]]:
        found: list[fx.Node] = []
        fx.node.map_arg((node.args, node.kwargs), lambda a: found.append(a))
        return [node_tag.get(a, (_EMPTY, _EMPTY)) for a in found]

    class Interp(fx.Interpreter):
        def run_node(self, node: fx.Node) -> Any:
            result = super().run_node(node)
            has_tensor = bool(_tensors(result))
            if node.op == "call_module" and id(mods.get(str(node.target))) in index:
                k = index[id(mods[str(node.target)])]
                tags.consume(k, arg_tags(node), inputs=True)
                node_tag[node] = (frozenset({k}), _EMPTY)
            elif node.op == "output":
                if root_layer is not None:
                    tags.consume(root_layer, arg_tags(node), inputs=False)
            elif node.op in ("call_function", "call_method", "call_module") and has_tensor:
                if node.op == "call_module":
                    node_tag[node] = tags.union(arg_tags(node))
                else:
                    target = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", "")
                    node_tag[node] = tags.combine(target, arg_tags(node))
            return result

    try:
        with _Modes(model):
            got = Interp(gm).run(*args)
            want = model(*args)
    except Exception as exc:  # noqa: BLE001
        raise _FxUnavailable(f"running the traced graph failed: {type(exc).__name__}: {exc}") from exc
    # Symbolic tracing can silently take another branch of Python control flow (isinstance or
    # `is None` tests on proxies): the graph must compute exactly what the model computes.
    g, w = _tensors(got), _tensors(want)
    if len(g) != len(w) or not all(x.shape == y.shape and torch.allclose(x, y, rtol=1e-4, atol=1e-6, equal_nan=True)
                                   for x, y in zip(g, w)):
        raise _FxUnavailable("the traced graph computes something else than the model (control flow)")
    return tags.merges(names, "fx")


# ---------------------------------------------------------------------------------------------
# Both together: the network description a run keeps
# ---------------------------------------------------------------------------------------------


@dataclass
class Network:
    """Probe layers and merge points of a network (what ``config.json["network"]`` keeps)."""

    name: str
    cls: str
    layers: list[ProbeLayer]
    merges: list[Merge]
    parameters: int
    example_shape: list[int] | None
    method: str  # how merges were found: "fx" or "hooks" ("none" when there are none)
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
        return skip_pairs(self.merges)

    @property
    def merge_layers(self) -> tuple[int, ...]:
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
            "probe_layers": self.names,
            "skip_pairs": [list(p) for p in self.skip_pairs],
            "merge_layers": list(self.merge_layers),
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


def describe_network(model: nn.Module, example_input: Any = None, *, layers: Any = None, name: str | None = None,
                     method: str = "auto", ops: Sequence[str] = DEFAULT_JOIN_OPS, **find: Any) -> Network:
    """Probe layers (``layers`` as given, ``model.probe_modules()`` for infoflow's U-Net, else
    :func:`describe_probe_layers` with ``find`` options) and merge points of ``model``."""
    if layers is None and hasattr(model, "probe_modules") and not find:
        layers = model.probe_modules()
    if layers is None:
        found = describe_probe_layers(model, example_input, **find)
    else:
        if find:
            raise ConfigError(f"layer options {', '.join(sorted(find))} cannot be combined with layers=")
        pairs = _layer_pairs(model, layers)
        found = _as_probe_layers(model, pairs)
    merges = find_merges(model, example_input, [la.pair for la in found], method=method, ops=ops)
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
        parameters=int(sum(p.numel() for p in model.parameters())),
        example_shape=shape,
        method=merges[0].method if merges else "none",
        options={"after_activation": bool(find.get("after_activation", True)), "join_ops": list(ops)},
    )


__all__ = [
    "CONV_TYPES", "DEFAULT_JOIN_OPS", "JOIN_OPS", "LayerWarning", "Merge", "Network", "OUTPUT_NAME", "ProbeLayer",
    "describe_network", "describe_probe_layers", "find_merges", "find_probe_layers", "infer_example_input",
    "is_activation", "merge_layers", "skip_pairs",
]

