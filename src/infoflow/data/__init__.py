"""Data: DSB 2018 stage 1 (folder or zip, read in place), synthetic nuclei, preprocessing cache.

Public API::

    SegArrays(images, masks, ids, source, meta)   # float32 (N,3,S,S) in [0,1]; (N,1,S,S) 0/1
    Splits(train, test)
    load_splits(cfg: DataConfig, *, progress=True) -> Splits
    read_dsb(path, *, size, mask_rule="code", max_pixels=..., progress=True) -> SegArrays
    make_synthetic(n, *, size, seed) -> SegArrays
"""

from .arrays import SegArrays, Splits
from .cache import cache_dir, cached_read_dsb, source_digest
from ..config import MASK_RULES
from .dsb import DEFAULT_MAX_PIXELS, list_ids, read_dsb
from .loader import load_splits, split_indices
from .synthetic import make_synthetic, modality_of

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "MASK_RULES",
    "SegArrays",
    "Splits",
    "cache_dir",
    "cached_read_dsb",
    "list_ids",
    "load_splits",
    "make_synthetic",
    "modality_of",
    "read_dsb",
    "source_digest",
    "split_indices",
]
