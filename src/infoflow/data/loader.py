"""``load_splits(cfg)``: the train and test splits a run uses.

Rules (DataConfig):

- ``source == "synthetic"``: ``n_synthetic`` images at ``size`` from ``synthetic_seed``, split by
  ``val_fraction`` (seeded by ``split_seed``).
- ``source`` a folder holding ``stage1_train.zip`` and ``stage1_test.zip`` (the shared data
  folder): train = stage1_train (605), test = stage1_test (65), the paper's split.
  ``test_source``, when given, replaces the test zip.
- ``source`` a zip or a folder with the stage-1 layout: ``test_source`` is the test split when
  given, else a seeded split of ``source`` by ``val_fraction``.
- ``limit`` keeps the first ``limit`` samples (sorted ids) of each split.

DSB sources go through the cache (:mod:`infoflow.data.cache`). When ``limit`` leaves only part
of a source to read and no full cache entry exists, only those samples are decoded (and cached
under a key that includes their ids); a full entry, when present, serves any subset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..config import MASK_RULES, DataConfig
from ..errors import ConfigError, DataError
from .arrays import SegArrays, Splits
from .cache import cached_read_dsb, source_digest
from .dsb import list_ids, mask_factor
from .synthetic import make_synthetic

TRAIN_ZIP = "stage1_train.zip"
TEST_ZIP = "stage1_test.zip"


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of ``range(n)`` into sorted (train, test) index arrays; test gets
    ``round(val_fraction * n)`` samples, at least 1, and train keeps at least 1."""
    if not 0.0 < float(val_fraction) < 1.0:
        raise ConfigError(f"data.val_fraction must be in (0, 1), got {val_fraction}")
    if n < 2:
        raise DataError(f"cannot split {n} sample(s) into train and test; need at least 2")
    n_test = int(min(max(round(val_fraction * n), 1), n - 1))
    perm = np.random.default_rng(int(seed)).permutation(n)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def _check(cfg: DataConfig) -> None:
    if cfg.mask_rule not in MASK_RULES:
        raise ConfigError(f"data.mask_rule must be one of {', '.join(MASK_RULES)}, got {cfg.mask_rule!r}")
    if int(cfg.size) < 8:
        raise ConfigError(f"data.size must be >= 8, got {cfg.size}")
    if cfg.mask_size is not None:
        if cfg.source == "synthetic":
            raise ConfigError("data.mask_size applies to DSB 2018 masks; the synthetic nuclei's masks are exact at any size")
        try:
            mask_factor(int(cfg.size), int(cfg.mask_size))
        except DataError as exc:
            raise ConfigError(f"data.mask_size: {exc}") from None
    if cfg.limit is not None and int(cfg.limit) < 1:
        raise ConfigError(f"data.limit must be >= 1 or None, got {cfg.limit}")
    if cfg.max_pixels is not None and int(cfg.max_pixels) < 1:
        raise ConfigError(f"data.max_pixels must be >= 1, got {cfg.max_pixels}")


def _limit(ids: Sequence[str], limit: int | None) -> list[str]:
    s = sorted(ids)
    return s if limit is None else s[: int(limit)]


def load_splits(cfg: DataConfig, *, progress: bool = True) -> Splits:
    """The (train, test) :class:`Splits` described by ``cfg`` (see the module docstring)."""
    _check(cfg)
    if cfg.source == "synthetic":
        if cfg.test_source is not None:
            raise ConfigError("data.test_source cannot be used with data.source = 'synthetic'")
        data = make_synthetic(int(cfg.n_synthetic), size=int(cfg.size), seed=int(cfg.synthetic_seed))
        tr, te = split_indices(len(data), cfg.val_fraction, cfg.split_seed)
        if cfg.limit is not None:
            tr, te = tr[: cfg.limit], te[: cfg.limit]
        train, test = data.subset(tr), data.subset(te)
        for part, name in ((train, "train"), (test, "test")):
            part.meta.update({"split": name, "split_seed": int(cfg.split_seed), "val_fraction": float(cfg.val_fraction)})
        return Splits(train, test)

    source = Path(cfg.source).expanduser()
    if not source.exists():
        raise DataError(f"data.source {str(source)!r}: no such file or folder")
    test_source = Path(cfg.test_source).expanduser() if cfg.test_source else None
    if source.is_dir() and (source / TRAIN_ZIP).is_file() and (source / TEST_ZIP).is_file():
        train_path, test_path = source / TRAIN_ZIP, test_source or source / TEST_ZIP
    else:
        train_path, test_path = source, test_source
    if test_path is not None and not test_path.exists():
        raise DataError(f"data.test_source {str(test_path)!r}: no such file or folder")

    if test_path is not None:
        tr_all, te_all = list_ids(train_path), list_ids(test_path)
        train = _read(train_path, _limit(tr_all, cfg.limit), len(tr_all), cfg, progress)
        test = _read(test_path, _limit(te_all, cfg.limit), len(te_all), cfg, progress)
        train.meta["split"], test.meta["split"] = "train", "test"
        return Splits(train, test)

    all_ids = list_ids(train_path)
    tr, te = split_indices(len(all_ids), cfg.val_fraction, cfg.split_seed)
    tr_ids = _limit([all_ids[i] for i in tr], cfg.limit)
    te_ids = _limit([all_ids[i] for i in te], cfg.limit)
    data = _read(train_path, sorted(tr_ids + te_ids), len(all_ids), cfg, progress)
    pos = {sid: i for i, sid in enumerate(data.ids)}
    train = data.subset([pos[i] for i in tr_ids])
    test = data.subset([pos[i] for i in te_ids])
    for part, name in ((train, "train"), (test, "test")):
        part.meta.update({"split": name, "split_seed": int(cfg.split_seed), "val_fraction": float(cfg.val_fraction)})
    return Splits(train, test)


def _read(path: Path, ids: list[str], n_all: int, cfg: DataConfig, progress: bool) -> SegArrays:
    """The samples ``ids`` of ``path`` (all ``n_all`` of them: the usual full, cached read)."""
    everything = len(ids) == n_all
    return cached_read_dsb(
        path,
        size=int(cfg.size),
        mask_rule=cfg.mask_rule,
        mask_size=None if cfg.mask_size is None else int(cfg.mask_size),
        max_pixels=int(cfg.max_pixels),
        ids=None if everything else ids,
        directory=cfg.cache_dir,
        progress=progress,
        digest=source_digest(path),
    )
