"""The one estimator interface: prepare once on one layer's data, then read every quantity.

Every estimator (KDE upper and lower bound, binning, matrix-based Renyi) is used through a
*prepared* object (:class:`Prepared`), built once from what a run stores for one layer by
:func:`infoflow.estimators.registry.prepare`::

    p = prepare("kde_upper", dist=d, kernel_var=0.2, dim=D)
    p.i_xm, p.h_m                    # bits
    p.label_free()                   # the label-free rows of the tidy table, in order
    p.i_ym(labels)                   # I(Y;M) of any labelling
    p.label_values(group)            # I(Y;M) (and H(M|Y)) of several labellings at once

What is expensive is done once in the constructor (the KDE's one ``exp`` of the N x N matrix,
the Renyi eigenvalues of the layer, the binning's symbol counts); a labelling then costs little
(KDE: a sum over the same-class pairs only), so label permutations are cheap.

:class:`Labels` is a labelling of the N samples (dense class ids) with what the estimators need
from it, computed once and kept (class counts, H(Y), the same-class pair index of the KDE);
:meth:`Labels.permuted` gives the same labelling shuffled among the samples (same class counts)
without sorting again. :class:`LabelGroup` evaluates several labellings of one layer together.
:func:`label_permutations` draws the seeded permutations of the tidy table's ``baseline`` column.
"""

from __future__ import annotations

import math
import zlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from functools import cached_property
from typing import Any, NamedTuple

import numpy as np

from ..errors import InfoflowError
from ._util import as_labels, plugin_entropy_bits

__all__ = [
    "CEILING_TOL",
    "FLOOR_TOL",
    "BASELINE_QUANTILE",
    "Row",
    "Labels",
    "LabelGroup",
    "Prepared",
    "near_ceiling",
    "near_floor",
    "seeded_rng",
    "label_permutations",
    "baseline_of",
]

CEILING_TOL = 0.01  # at_ceiling: within 1% of the ceiling
FLOOR_TOL = 0.01  # at_floor: at most 1% of the ceiling
BASELINE_QUANTILE = 0.95  # the table's baseline: this quantile of I(Y;M) over label permutations
DENSE_CLASS_SHARE = 0.1  # KDE: classes of at least this share of N are summed by a matrix product


class Row(NamedTuple):
    """One number of the tidy table (bits) with its ceiling (NaN: none) and the ceiling flag."""

    quantity: str
    value: float
    ceiling: float  # log2 N (I_XM; binning's H_M), H(Y) (I_YM); NaN for the other entropies
    at_ceiling: bool


def near_ceiling(value: float, ceiling: float) -> bool:
    """``at_ceiling``: ``value`` within :data:`CEILING_TOL` (1%) of a finite ``ceiling``."""
    return bool(math.isfinite(value) and math.isfinite(ceiling) and value >= (1.0 - CEILING_TOL) * ceiling - 1e-12)


def near_floor(value: float, ceiling: float) -> bool:
    """``at_floor``: ``value`` at most :data:`FLOOR_TOL` (1%) of a finite ``ceiling`` (about 0 bits)."""
    return bool(math.isfinite(value) and math.isfinite(ceiling) and value <= FLOOR_TOL * ceiling + 1e-12)


class Labels:
    """A labelling of N samples: dense class ids ``y`` (int64, 0..C-1) and what estimators use.

    Build with :meth:`of` (any labels: sortable values, numpy or torch, or a ``Labels``), and
    shuffle with :meth:`permuted`. ``counts`` (per class) and ``h_y`` (plug-in H(Y), bits) are
    computed once, on first use, and so is the KDE's index of the same-class pairs: the samples
    of *small* classes (fewer than :data:`DENSE_CLASS_SHARE` of N) get their pairs listed
    (``pair_flat``: flat indices ``r * N + j`` of sample ``r`` and every ``j`` of its class,
    itself included, ``pair_start``: where each sample's segment starts, ``pair_row``: the
    sample of each segment); the *large* classes, whose pairs are too many to list, are given
    by their members (``dense_members``) and summed as matrix products.
    """

    def __init__(self, y: np.ndarray, *, _parent: "Labels | None" = None, _perm: np.ndarray | None = None) -> None:
        self.y = y
        self.n = int(y.shape[0])
        self._parent = _parent
        self._perm = _perm

    @classmethod
    def of(cls, labels: Any, n: int, *, what: str = "labels") -> "Labels":
        """``labels`` as :class:`Labels` of ``n`` samples (a ``Labels`` is checked and returned)."""
        if isinstance(labels, Labels):
            if labels.n != n:
                raise InfoflowError(f"{what} must have shape ({n},), got ({labels.n},)")
            return labels
        return cls(as_labels(labels, n, what=what))

    @property
    def _root(self) -> "Labels":
        return self if self._parent is None else self._parent

    @cached_property
    def counts(self) -> np.ndarray:
        return self._parent.counts if self._parent is not None else np.bincount(self.y)

    @cached_property
    def h_y(self) -> float:
        """Plug-in H(Y) in bits."""
        return self._parent.h_y if self._parent is not None else plugin_entropy_bits(self.counts)

    # -- the pair index (computed on the unpermuted labelling, mapped for permutations) -------------
    @cached_property
    def _dense(self) -> np.ndarray:
        """Whether each class is large (its same-class sums are matrix products)."""
        root = self._root
        return root.counts >= max(2, math.ceil(DENSE_CLASS_SHARE * root.n))

    @cached_property
    def _sparse_rows(self) -> np.ndarray:
        """Samples of the small classes (ascending): the segments of the pair index."""
        return np.flatnonzero(~self._dense[self.y]).astype(np.intp) if self._parent is None else \
            self._parent._sparse_rows

    @cached_property
    def _pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """(row, column) of the same-class pairs of the small classes, by row, columns in class order."""
        y, rows0 = self.y, self._sparse_rows
        counts = self.counts
        order = np.argsort(y, kind="stable")
        first = np.concatenate(([0], np.cumsum(counts)[:-1]))  # sorted position of each class's first
        size = counts[y[rows0]]
        start = self.pair_start
        seg = np.repeat(np.arange(rows0.size, dtype=np.intp), size)
        cols = order[first[y[rows0]][seg] + (np.arange(int(size.sum()), dtype=np.intp) - start[seg])]
        return rows0[seg], cols

    @cached_property
    def pair_start(self) -> np.ndarray:
        """Start of each segment in :attr:`pair_flat` (the same for every permutation)."""
        if self._parent is not None:
            return self._parent.pair_start
        size = self.counts[self.y[self._sparse_rows]]
        return np.concatenate(([0], np.cumsum(size)[:-1])).astype(np.intp)

    @cached_property
    def pair_row(self) -> np.ndarray:
        """The sample of each segment."""
        rows = self._root._sparse_rows
        return rows if self._parent is None else self._inverse.take(rows)

    @cached_property
    def pair_log_count(self) -> np.ndarray:
        """``log N_c`` of each segment's class (float64)."""
        root = self._root
        return np.log(root.counts[root.y[root._sparse_rows]].astype(np.float64))

    @cached_property
    def _inverse(self) -> np.ndarray:
        inv = np.empty(self.n, dtype=np.intp)
        assert self._perm is not None
        inv[self._perm] = np.arange(self.n, dtype=np.intp)
        return inv

    @cached_property
    def pair_flat(self) -> np.ndarray:
        """Flat indices ``r * N + j`` of the listed same-class pairs, by segment."""
        if self._parent is None:
            rows, cols = self._pairs
            return rows * self.n + cols
        return self._write_flat(np.empty(self._parent.pair_flat.size, dtype=np.intp))

    def _write_flat(self, out: np.ndarray) -> np.ndarray:
        """:attr:`pair_flat` written into ``out`` (not kept)."""
        if "pair_flat" in self.__dict__ or self._parent is None:
            out[...] = self.pair_flat
            return out
        rows, cols = self._parent._pairs
        inv = self._inverse
        np.take(inv, rows, out=out)
        out *= self.n
        out += inv.take(cols)
        return out

    @cached_property
    def dense_members(self) -> list[tuple[np.ndarray, float]]:
        """``(members, log N_c)`` of each large class."""
        root = self._root
        out = []
        for c in np.flatnonzero(root._dense):
            members = np.flatnonzero(root.y == c).astype(np.intp)
            out.append((members if self._parent is None else self._inverse.take(members),
                        math.log(float(root.counts[c]))))
        return out

    def permuted(self, perm: np.ndarray) -> "Labels":
        """The labels shuffled among the samples: sample ``i`` gets ``y[perm[i]]`` (same class
        counts). Its pair index comes from this one's without sorting."""
        perm = np.asarray(perm, dtype=np.intp)
        if perm.shape != (self.n,):
            raise InfoflowError(f"a permutation of {self.n} samples is needed, got shape {perm.shape}")
        if self._parent is not None:  # compose: y_self = root.y[self._perm]
            assert self._perm is not None
            perm = self._perm[perm]
        root = self._root
        return Labels(root.y[perm], _parent=root, _perm=perm)


class LabelGroup:
    """Several labellings of the same N samples, evaluated together (``sets[0]`` first).

    The KDE reads every set's listed same-class pairs with one gather (``flat``, ``start``;
    ``sparse_dst``: where each segment's sum goes in the ``(sets, N)`` result, ``sparse_log_count``)
    and the large classes of all sets with one matrix product (``dense``: ``(N, K)`` indicator
    columns; ``dense_src``/``dense_dst``: from the product to the result; ``dense_log_count``).
    """

    def __init__(self, sets: Sequence[Labels]) -> None:
        if not sets:
            raise InfoflowError("a label group needs at least one labelling")
        n = sets[0].n
        if any(s.n != n for s in sets):
            raise InfoflowError("the labellings of a group must label the same N samples")
        self.sets = list(sets)
        self.n = n

    def __len__(self) -> int:
        return len(self.sets)

    @cached_property
    def flat(self) -> np.ndarray:
        if len(self.sets) == 1:
            return self.sets[0].pair_flat
        sizes = [s._root.pair_flat.size for s in self.sets]
        out = np.empty(int(sum(sizes)), dtype=np.intp)
        at = 0
        for s, k in zip(self.sets, sizes):
            s._write_flat(out[at : at + k])
            at += k
        return out

    @cached_property
    def start(self) -> np.ndarray:
        offs = np.cumsum([0] + [s._root.pair_flat.size for s in self.sets[:-1]])
        return np.concatenate([s.pair_start + o for s, o in zip(self.sets, offs)])

    @cached_property
    def sparse_dst(self) -> np.ndarray:
        return np.concatenate([s.pair_row + i * self.n for i, s in enumerate(self.sets)])

    @cached_property
    def sparse_log_count(self) -> np.ndarray:
        return np.concatenate([s.pair_log_count for s in self.sets])

    @cached_property
    def _dense(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        cols = [(i, m, lc) for i, s in enumerate(self.sets) for m, lc in s.dense_members]
        k = len(cols)
        ind = np.zeros((self.n, k))
        src, dst, logc = [], [], []
        for j, (i, m, lc) in enumerate(cols):
            ind[m, j] = 1.0
            src.append(m * k + j)
            dst.append(m + i * self.n)
            logc.append(np.full(m.size, lc))
        cat = (lambda parts, dt: np.concatenate(parts).astype(dt) if parts else np.zeros(0, dt))
        return ind, cat(src, np.intp), cat(dst, np.intp), cat(logc, np.float64)

    @property
    def dense(self) -> np.ndarray:
        return self._dense[0]

    @property
    def dense_src(self) -> np.ndarray:
        return self._dense[1]

    @property
    def dense_dst(self) -> np.ndarray:
        return self._dense[2]

    @property
    def dense_log_count(self) -> np.ndarray:
        return self._dense[3]


class Prepared(ABC):
    """An estimator prepared on one layer (see the module docstring). All values in bits.

    Attributes: ``estimator`` (registry name), ``n`` (N), ``i_xm`` (NaN where the estimator
    cannot give it: Renyi without input distances), ``h_m``, ``kernel_var`` (the resolved kernel
    variance; NaN for binning), ``label_quantities`` (the per-labelling rows, ``"I_YM"`` first).
    """

    estimator: str = ""
    label_quantities: tuple[str, ...] = ("I_YM",)
    n: int
    i_xm: float
    h_m: float
    kernel_var: float

    @abstractmethod
    def label_free(self) -> tuple[Row, ...]:
        """The label-free rows of the tidy table, in table order."""

    @abstractmethod
    def label_values(self, group: LabelGroup) -> dict[str, np.ndarray]:
        """``{quantity: (len(group),) values}`` for each of :attr:`label_quantities`."""

    @abstractmethod
    def ceiling_y(self, lab: Labels) -> float:
        """The ceiling of this estimator's I(Y;M) (``at_ceiling``): H(Y); Renyi: its alpha-entropy."""

    def i_ym(self, labels: Any) -> float:
        """I(Y;M) in bits for ``labels`` (``(N,)`` classes or :class:`Labels`)."""
        lab = Labels.of(labels, self.n)
        return float(self.label_values(LabelGroup([lab]))["I_YM"][0])

    def i_ym_many(self, labelings: Sequence[Any]) -> np.ndarray:
        """I(Y;M) in bits of several labellings (e.g. permutations) at once."""
        group = labelings if isinstance(labelings, LabelGroup) else \
            LabelGroup([Labels.of(y, self.n) for y in labelings])
        return np.asarray(self.label_values(group)["I_YM"], dtype=np.float64)


# -- seeded permutations and the baseline column ------------------------------------------------------
def seeded_rng(*parts: Any) -> np.random.Generator:
    """A generator seeded by ``parts`` (ints as they are, anything else by the CRC-32 of its str)."""
    words = [int(p) & 0xFFFFFFFF if isinstance(p, (int, np.integer)) else zlib.crc32(str(p).encode()) for p in parts]
    return np.random.default_rng(np.random.SeedSequence(words))


def label_permutations(labels: Labels, permutations: int, *, epoch: int, layer: int,
                       name: str) -> LabelGroup | None:
    """``permutations`` random shufflings of ``labels`` among the samples (same class counts), as
    one group; None for 0.

    Seeded by ``(epoch, layer, name)`` alone (``layer``: the 0-based probe-layer index, ``name``:
    the labelling's name), so every estimator and setting of one layer and labelling, and the
    online table and ``infoflow estimate``, use the same shufflings. Shuffle ``k`` gives sample
    ``i`` the label of sample ``perm_k[i]``, ``perm_k = rng.permutation(N)``.
    """
    k = int(permutations)
    if k < 0:
        raise InfoflowError(f"permutations must be >= 0, got {permutations}")
    if k == 0:
        return None
    rng = seeded_rng("baseline", int(epoch), int(layer), str(name))
    return LabelGroup([labels.permuted(rng.permutation(labels.n)) for _ in range(k)])


def baseline_of(values: np.ndarray) -> float:
    """The table's ``baseline``: the :data:`BASELINE_QUANTILE` (95%) quantile of I(Y;M) over the
    label permutations (numpy's default linear interpolation); NaN without permutations."""
    v = np.asarray(values, dtype=np.float64)
    return float(np.quantile(v, BASELINE_QUANTILE)) if v.size else math.nan
