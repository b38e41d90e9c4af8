"""Merge points of any segmentation network: probe layers whose input joins two streams.

:func:`find_merges` finds the probe layers whose input joins streams from different earlier probe
layers (``torch.cat`` or an addition of tensors that come from different earlier probe layers),
and for each stream the last probe layer on it; :func:`skip_pairs` turns them into the network's
skip pairs ``(source, merge)``, the form of :attr:`infoflow.network.NetworkLayout.skip_pairs`.

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

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx as fx
from torch import nn
from torch.overrides import TorchFunctionMode

from ..errors import ConfigError, ProbeError
from .forward import _example, _Modes, _run_hooked, _tensors
from .layout import JOIN_KINDS
from .probe_layers import find_probe_layers, resolve_layers

#: Join operations by family (names of torch functions / tensor methods / operator functions).
JOIN_OPS: dict[str, frozenset[str]] = {
    "cat": frozenset({"cat", "concat", "concatenate", "stack", "hstack", "vstack", "dstack", "column_stack"}),
    "add": frozenset({"add", "add_", "__add__", "__radd__", "__iadd__", "iadd"}),
    "sub": frozenset({"sub", "sub_", "subtract", "__sub__", "__rsub__", "rsub", "__isub__", "isub"}),
    "mul": frozenset({"mul", "mul_", "multiply", "__mul__", "__rmul__", "__imul__", "imul"}),
}
DEFAULT_JOIN_OPS: tuple[str, ...] = ("cat", "add")


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
    skip_ops: tuple[str, ...] = ()  # per skip (as :attr:`skips`), the ops of the joins it takes part in

    def pair_join(self, source: int) -> str | None:
        """Join kind of the skip from ``source``: the op of the joins it takes part in when that is
        "cat" or "add" alone (a merge may concatenate one skip and add another), else None."""
        ops = dict(zip(self.skips, self.skip_ops)).get(source, self.op)
        return ops if ops in JOIN_KINDS else None

    @property
    def skips(self) -> tuple[int, ...]:
        return tuple(s for s in self.sources if s != self.main)

    @property
    def pairs(self) -> tuple[tuple[int, int], ...]:
        return tuple((s, self.layer) for s in self.skips)

    @property
    def join(self) -> str | None:
        """Join kind of its skips: its op when that is "cat" or "add" alone, else None (unknown)."""
        return self.op if self.op in JOIN_KINDS else None

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "name": self.name, "sources": list(self.sources), "main": self.main,
                "skips": list(self.skips), "op": self.op,
                "skip_joins": [self.pair_join(s) for s in self.skips]}


def skip_pairs(merges: Iterable[Merge]) -> tuple[tuple[int, int], ...]:
    """Skip connections as ``(source layer, merge layer)``, sorted by source (the form of
    ``UNet.skip_pairs``: 1->20, 3->17, 5->14, 7->11 for the paper's Model 1)."""
    return tuple(sorted({p for m in merges for p in m.pairs}))


def merge_layers(merges: Iterable[Merge]) -> tuple[int, ...]:
    """Merge layer indices in forward order."""
    return tuple(sorted({m.layer for m in merges}))


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
            main = max(src)
            skip_ops = tuple(_ops_text({j.op for j in self.joins if j.merge == layer and s in j.sources})
                             for s in sorted(src) if s != main)
            out.append(Merge(layer, names[layer], tuple(sorted(src)), main, _ops_text(ops), method, skip_ops))
        return out


def _ops_text(ops: set[str]) -> str:
    return "+".join(o for o in ("cat", "add", "sub", "mul", "inputs") if o in ops)


def _layer_pairs(model: nn.Module, layers: Any) -> list[tuple[str, nn.Module]]:
    if layers is None:
        return find_probe_layers(model)
    if callable(layers) and not isinstance(layers, (list, tuple, Mapping)):
        layers = layers(model)
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

    _run_hooked(model, {id(m): m for _, m in pairs}.values(), pre, post, Mode(), args, kwargs, inferred)
    return tags.merges(names, "hooks")


# -- torch.fx --------------------------------------------------------------------------------


class _FxUnavailable(Exception):
    pass


def _merges_fx(model: nn.Module, args: tuple, kwargs: dict, pairs: list[tuple[str, nn.Module]],
               ops: Sequence[str]) -> list[Merge]:
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


__all__ = ["DEFAULT_JOIN_OPS", "JOIN_OPS", "Merge", "find_merges", "merge_layers", "skip_pairs"]
