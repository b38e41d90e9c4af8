"""The layout of a network: its probe layers, its skip connections and the claims' layer groups.

:class:`NetworkLayout` is the one description of a network's layout in infoflow. Infoflow's U-Net
states its own (:meth:`infoflow.models.UNet.layout`, :func:`infoflow.models.unet.unet_layout`);
automatic detection finds one for any network (:func:`infoflow.network.describe_network`,
``Network.layout``). Both are written to a run's ``config.json["network"]`` by
:meth:`NetworkLayout.to_config` and read back by :meth:`NetworkLayout.from_config`; plots, the
report and the claim checks get a run's layout from
:func:`infoflow.models.unet.layout_from_config` (the ``"network"`` entry, else infoflow's U-Net
from the ``"model"`` entry).

Skips are ``(source, merge)`` pairs of probe-layer indices: ``source`` is the last probe layer on
the skip stream, ``merge`` the first probe layer consuming the joined tensor (its input from the
main path is taken to be layer ``merge - 1``). ``skip_pairs`` lists every skip of the *full*
architecture and ``present`` says which of them this model has (the paper's Models 2-4 lack some of
the U-Net's four). ``joins`` gives each skip's join: ``"cat"`` (concatenation), ``"add"``
(residual addition) or None (unknown).

Layer groups of the claims (``first_layers``, ``bottom_layers``, ``top_layers``,
``encoder_layers``): given, or else by this rule, which applies when the skips are *nested* like a
U-Net's (sorted by source, each skip's source comes after and its merge before the one above:
``s1 < s2 < ... < sk < mk < ... < m2 < m1``) and is None otherwise (no skips, residual chains):

* first: layers ``0 .. s1`` (up to the top skip's source);
* top: the first layers and layers ``m1 .. L-1`` (from the top merge to the output; needs the
  names, else None);
* encoder: layers ``0 .. mk - 2`` (everything before the deep path's input ``mk - 1`` to the deepest
  merge);
* bottom: layers ``sk + 1 .. m(k-1)`` (after the deepest skip's source up to the merge one level
  up; ``.. mk`` with one skip).

For the paper's U-Net (skips 1->20, 3->17, 5->14, 7->11, 23 layers) the rule gives the paper's
groups: first 0-1, top 0, 1, 20-22, encoder 0-9, bottom 8-14.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..errors import ConfigError

Pair = tuple[int, int]

#: Join kinds a skip may have (None: unknown).
JOIN_KINDS: tuple[str, ...] = ("cat", "add")

#: The claims' layer groups, in the order of the fields.
GROUPS: tuple[str, ...] = ("first_layers", "bottom_layers", "top_layers", "encoder_layers")


@dataclass(frozen=True)
class NetworkLayout:
    """Probe layers, skip connections and layer groups of a network (see the module docstring).

    Construction normalises: pairs become int tuples sorted by (source, merge) with ``present``
    and ``joins`` in the same order; ``present`` None means every skip is present, ``joins``
    None every join unknown; a group left None is filled by the rule (or stays None).
    """

    names: tuple[str, ...] = ()  # probe-layer names in forward order (index = position); () unknown
    skip_pairs: tuple[Pair, ...] = ()  # every skip of the full architecture, (source, merge)
    present: tuple[bool, ...] | None = None  # per skip: does this model have it
    joins: tuple[str | None, ...] | None = None  # per skip: "cat", "add" or None (unknown)
    first_layers: tuple[int, ...] | None = None
    bottom_layers: tuple[int, ...] | None = None
    top_layers: tuple[int, ...] | None = None
    encoder_layers: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        names = tuple(str(n) for n in self.names)
        pairs = [_pair(p) for p in self.skip_pairs]
        n = len(pairs)
        present = (True,) * n if self.present is None else tuple(bool(x) for x in self.present)
        joins = (None,) * n if self.joins is None else tuple(None if j is None else str(j) for j in self.joins)
        if len(present) != n:
            raise ConfigError(f"present has {len(present)} entries for {n} skip pairs {pairs}")
        if len(joins) != n:
            raise ConfigError(f"joins has {len(joins)} entries for {n} skip pairs {pairs}")
        bad = [j for j in joins if j is not None and j not in JOIN_KINDS]
        if bad:
            raise ConfigError(f"a skip's join is 'cat', 'add' or None (unknown), got {bad[0]!r}")
        if len(set(pairs)) != n:
            raise ConfigError(f"skip pairs given twice: {pairs}")
        if names and any(m >= len(names) for _, m in pairs):
            raise ConfigError(f"skip pairs {pairs} point past the {len(names)} probe layers")
        order = sorted(range(n), key=lambda i: pairs[i])
        pairs_t = tuple(pairs[i] for i in order)
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "skip_pairs", pairs_t)
        object.__setattr__(self, "present", tuple(present[i] for i in order))
        object.__setattr__(self, "joins", tuple(joins[i] for i in order))
        rule = layer_groups(pairs_t, len(names))
        for g in GROUPS:
            given = getattr(self, g)
            value = rule[g] if given is None else tuple(int(x) for x in given)
            if value is not None and names and any(not 0 <= x < len(names) for x in value):
                raise ConfigError(f"{g} {value} are not all among the {len(names)} probe layers")
            object.__setattr__(self, g, value)

    # -- skips ------------------------------------------------------------------------------------
    @property
    def merge_layers(self) -> tuple[int, ...]:
        """Merge layers of every skip of the architecture, in forward order."""
        return tuple(sorted({m for _, m in self.skip_pairs}))

    @property
    def merges(self) -> tuple[int, ...]:
        """:attr:`merge_layers` (the name U-Plots used)."""
        return self.merge_layers

    @property
    def present_pairs(self) -> tuple[Pair, ...]:
        """The skips this model has."""
        return tuple(p for p, on in zip(self.skip_pairs, self.present) if on)

    @property
    def removed_pairs(self) -> tuple[Pair, ...]:
        """The skips of the architecture this model lacks."""
        return tuple(p for p, on in zip(self.skip_pairs, self.present) if not on)

    def join(self, pair: Pair) -> str | None:
        """The join kind of skip ``pair`` ("cat", "add" or None)."""
        return self.joins[self._index(pair)]

    def top_down(self) -> list[Pair]:
        """Skip pairs ordered from the top level (largest merge index) down."""
        return sorted(self.skip_pairs, key=lambda p: -p[1])

    def deeper_merge(self, pair: Pair) -> int | None:
        """The merge layer one level deeper than ``pair``'s (None for the deepest skip): the
        merge of the next skip in :meth:`top_down` order."""
        order = self.top_down()
        k = order.index(self.skip_pairs[self._index(pair)])
        return order[k + 1][1] if k + 1 < len(order) else None

    def with_present(self, present: Sequence[bool]) -> "NetworkLayout":
        """The same architecture with skip mask ``present`` (ordered as :attr:`skip_pairs`)."""
        return replace(self, present=tuple(bool(x) for x in present))

    def _index(self, pair: Pair) -> int:
        p = _pair(pair)
        try:
            return self.skip_pairs.index(p)
        except ValueError:
            raise ConfigError(f"{p[0]}->{p[1]} is not a skip of this network ({list(self.skip_pairs)})") from None

    # -- config.json --------------------------------------------------------------------------------
    def to_config(self) -> dict[str, Any]:
        """The layout as JSON values (``config.json["network"]`` holds these keys)."""
        return {
            "probe_layers": list(self.names),
            "skip_pairs": [list(p) for p in self.skip_pairs],
            "skips_present": list(self.present),
            "skip_joins": list(self.joins),
            "merge_layers": list(self.merge_layers),
            "layer_groups": {g: None if getattr(self, g) is None else list(getattr(self, g)) for g in GROUPS},
        }

    @classmethod
    def from_config(cls, doc: Mapping[str, Any]) -> "NetworkLayout":
        """The layout :meth:`to_config` wrote (a ``config.json["network"]`` entry). Entries written
        before layouts (only ``probe_layers``, ``skip_pairs`` and ``merges``) read as every skip
        present, each join the op of its merge when that is "cat" or "add"."""
        try:
            pairs = [_pair(p) for p in (doc.get("skip_pairs") or [])]
            joins = doc.get("skip_joins")
            if joins is None and doc.get("merges"):
                op = {int(m["layer"]): m.get("op") for m in doc["merges"]}
                joins = [op.get(m) if op.get(m) in JOIN_KINDS else None for _, m in pairs]
            groups = doc.get("layer_groups") or {}
            return cls(names=tuple(doc.get("probe_layers") or ()), skip_pairs=tuple(pairs),
                       present=doc.get("skips_present"), joins=joins,
                       **{g: groups.get(g) for g in GROUPS})
        except ConfigError:
            raise
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise ConfigError(f"config.json's network entry is not a network layout: {exc}") from None


def _pair(p: Iterable[Any]) -> Pair:
    try:
        s, m = (int(x) for x in p)
    except (TypeError, ValueError):
        raise ConfigError(f"a skip pair is (source layer, merge layer), got {p!r}") from None
    if not 0 <= s < m:
        raise ConfigError(f"a skip goes forward from its source to a later merge layer, got {s}->{m}")
    return s, m


def is_nested(pairs: Sequence[Pair]) -> bool:
    """True when the skips nest like a U-Net's: sorted by source, each deeper skip's source comes
    after and its merge before the one above (``s1 < s2 < ... < sk < mk < ... < m1``)."""
    ps = sorted(pairs)
    if not ps:
        return False
    return all(a[0] < b[0] and b[1] < a[1] for a, b in zip(ps[:-1], ps[1:]))


def layer_groups(pairs: Sequence[Pair], n_layers: int = 0) -> dict[str, tuple[int, ...] | None]:
    """The claims' layer groups by the rule of the module docstring (all None unless the skips are
    nested; ``top_layers`` also None when ``n_layers`` is unknown, 0)."""
    none: dict[str, tuple[int, ...] | None] = {g: None for g in GROUPS}
    if not is_nested(pairs):
        return none
    ps = sorted(pairs)  # top level first
    (s_top, m_top), (s_deep, m_deep) = ps[0], ps[-1]
    first = tuple(range(0, s_top + 1))
    above = ps[-2][1] if len(ps) > 1 else m_deep
    return {
        "first_layers": first,
        "bottom_layers": tuple(range(s_deep + 1, above + 1)),
        "top_layers": first + tuple(range(m_top, n_layers)) if n_layers > m_top else None,
        "encoder_layers": tuple(range(0, m_deep - 1)),
    }


__all__ = ["GROUPS", "JOIN_KINDS", "NetworkLayout", "is_nested", "layer_groups"]
