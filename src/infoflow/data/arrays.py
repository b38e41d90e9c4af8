"""The arrays every data source produces: :class:`SegArrays` and :class:`Splits`.

Contract (docs/ARCHITECTURE.md):

- ``images``: float32 ``(N, 3, S, S)`` with values in [0, 1];
- ``masks``: float32 ``(N, 1, S, S)`` with values exactly 0 or 1;
- ``ids``: one string per sample (sorted for DSB 2018);
- ``graded``: float64 ``(N, 1, S, S)`` in [0, 1], the graded masks the paper's MI notebooks
  build the output classes Y from (DSB 2018 only; ``None`` for sources whose masks are exact,
  such as the synthetic nuclei); ``meta["graded_den"]`` is their denominator (values are
  integers / it, stored exactly as uint16 numerators);
- ``source``: where the samples came from (a path, or ``"synthetic"``);
- ``meta``: how they were made (size, mask rule, image rule, source hash, ...), recorded in runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..errors import DataError


@dataclass
class SegArrays:
    images: np.ndarray  # float32 (N, 3, S, S) in [0, 1]
    masks: np.ndarray  # float32 (N, 1, S, S), exactly 0 or 1
    ids: list[str]  # one id per sample
    source: str  # path of the folder/zip, or "synthetic"
    meta: dict[str, Any] = field(default_factory=dict)  # size, mask_rule, image_rule, sha256, ...
    graded: np.ndarray | None = None  # float64 (N, 1, S, S) in [0, 1]: the MI notebooks' graded masks; None: none

    def __post_init__(self) -> None:
        self.ids = [str(i) for i in self.ids]
        im, mk = self.images, self.masks
        if not isinstance(im, np.ndarray) or im.ndim != 4 or im.shape[1] != 3:
            raise DataError(f"{self.source}: images must be an array (N, 3, S, S), got shape {getattr(im, 'shape', None)}")
        if not isinstance(mk, np.ndarray) or mk.ndim != 4 or mk.shape[1] != 1:
            raise DataError(f"{self.source}: masks must be an array (N, 1, S, S), got shape {getattr(mk, 'shape', None)}")
        if im.shape[0] != mk.shape[0] or im.shape[2:] != mk.shape[2:]:
            raise DataError(f"{self.source}: images {im.shape} and masks {mk.shape} do not match")
        if len(self.ids) != im.shape[0]:
            raise DataError(f"{self.source}: {len(self.ids)} ids for {im.shape[0]} samples")
        if self.graded is not None and (not isinstance(self.graded, np.ndarray) or self.graded.shape != mk.shape):
            raise DataError(f"{self.source}: graded masks {getattr(self.graded, 'shape', None)} do not match "
                            f"masks {mk.shape}")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def size(self) -> int:
        """S, the side of the square images."""
        return int(self.images.shape[-1])

    def subset(self, indices: Sequence[int] | np.ndarray | slice) -> "SegArrays":
        """The samples at ``indices`` (ints, a boolean mask or a slice), in that order (copies)."""
        if isinstance(indices, slice):
            idx = np.arange(len(self))[indices]
        else:
            idx = np.asarray(indices)
            if idx.dtype == bool:
                if idx.shape != (len(self),):
                    raise IndexError(f"boolean index of shape {idx.shape} for {len(self)} samples")
                idx = np.flatnonzero(idx)
            idx = idx.astype(np.int64).reshape(-1)
            if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
                raise IndexError(f"index out of range for {len(self)} samples")
        return SegArrays(
            images=np.ascontiguousarray(self.images[idx]),
            masks=np.ascontiguousarray(self.masks[idx]),
            ids=[self.ids[int(i)] for i in idx],
            source=self.source,
            meta=dict(self.meta),
            graded=None if self.graded is None else np.ascontiguousarray(self.graded[idx]),
        )

    def label_masks(self, y_from: str) -> np.ndarray:
        """The masks the output classes Y are made from: ``"code"``: the graded masks (the
        training masks where a source has none); ``"binary"``: the training masks."""
        if y_from not in Y_FROM:
            raise DataError(f"Y is made from 'code' (graded masks) or 'binary' (training masks), got {y_from!r}")
        if y_from == "code" and self.graded is not None:
            return self.graded
        return self.masks.astype(np.float64)

    def foreground_fraction(self) -> float:
        """Mean of the masks: the fraction of foreground pixels over all samples."""
        return float(self.masks.mean(dtype=np.float64)) if len(self) else 0.0


Y_FROM = ("code", "binary")


def graded_from_numerators(num: np.ndarray, den: int) -> np.ndarray:
    """Graded masks ``num / den`` as float64 (exact for the uint16 numerators of the readers)."""
    return num.astype(np.float64) / float(den)


def graded_numerators(graded: np.ndarray, den: int) -> np.ndarray:
    """Inverse of :func:`graded_from_numerators`: the uint16 numerators (exact)."""
    num = np.rint(np.asarray(graded, dtype=np.float64) * float(den))
    if num.size and (num.min() < 0 or num.max() > np.iinfo(np.uint16).max):
        raise DataError(f"graded masks out of range for denominator {den}")
    return num.astype(np.uint16)


@dataclass
class Splits:
    train: SegArrays
    test: SegArrays

    def __iter__(self):  # allows ``train, test = splits``
        yield self.train
        yield self.test
