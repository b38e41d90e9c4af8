"""The reader on the real DSB 2018 stage-1 zips (../shared/data/dsb2018 from the repository root).

The full decode of 605 + 65 samples (~20 s on 2 cores) runs once, in a module fixture, into a
temporary cache; the second load must come from the cache at least 10x faster.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from skimage.transform import resize

from infoflow.config import DataConfig
from infoflow.data import list_ids, load_splits, read_dsb
from infoflow.data.dsb import _open_source, _scan, decode_png, mask_to_bool, png_size, preprocess_mask

DSB = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "dsb2018"
TRAIN_ZIP, TEST_ZIP = DSB / "stage1_train.zip", DSB / "stage1_test.zip"

pytestmark = pytest.mark.skipif(
    not (TRAIN_ZIP.is_file() and TEST_ZIP.is_file()),
    reason=f"DSB 2018 zips not found at {DSB.resolve()} (stage1_train.zip, stage1_test.zip)",
)

# Known facts (methods.md section 1): foreground fraction of the first 40 training samples
# (sorted ids) at S = 128, by mask rule; tolerance 0.002.
FRACTION_40 = {"code": 0.240, "linear": 0.137}
TOL = 0.002


def code_mask_per_instance(instances, size: int) -> np.ndarray:
    """The paper code's literal mask loop (one resize per nucleus, union of > 0): the reference."""
    acc = np.zeros((size, size), dtype=bool)
    for m in instances:
        acc |= resize(m, (size, size), mode="constant", preserve_range=True) > 0
    return acc.astype(np.float32)


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    cache = tmp_path_factory.mktemp("infoflow-cache")
    cfg = DataConfig(source=str(DSB), size=128, mask_rule="code", cache_dir=str(cache))
    t0 = time.perf_counter()
    first = load_splits(cfg, progress=False)
    t1 = time.perf_counter()
    second = load_splits(cfg, progress=False)
    t2 = time.perf_counter()
    print(f"\nDSB 605+65 at S=128: first load {t1 - t0:.2f} s, second (cached) {t2 - t1:.3f} s")
    return {"cfg": cfg, "cache": cache, "first": first, "second": second, "t_first": t1 - t0, "t_second": t2 - t1}


def test_counts_shapes_dtypes_ranges(full) -> None:
    s = full["first"]
    for part, n in ((s.train, 605), (s.test, 65)):
        assert len(part) == n and len(set(part.ids)) == n and part.ids == sorted(part.ids)
        assert part.images.shape == (n, 3, 128, 128) and part.images.dtype == np.float32
        assert part.masks.shape == (n, 1, 128, 128) and part.masks.dtype == np.float32
        assert part.images.min() >= 0.0 and part.images.max() <= 1.0
        assert np.array_equal(np.unique(part.masks), [0.0, 1.0])
        # code rule: the code stored uint8, so images are multiples of 1/255
        assert np.array_equal(np.rint(part.images * 255) / np.float32(255), part.images)
        assert part.meta["mask_rule"] == "code" and part.meta["size"] == 128
        assert (part.masks.reshape(n, -1).sum(axis=1) > 0).all()  # every sample has nuclei
    assert not set(s.train.ids) & set(s.test.ids)
    assert s.train.ids == list_ids(TRAIN_ZIP) and s.test.ids == list_ids(TEST_ZIP)
    assert s.train.meta["sha256"] == "3dd935d07ef2adc386b299f09d38137fb95271db9834bf379396c401e4ab996b"


def test_second_load_is_cached_identical_and_fast(full) -> None:
    a, b = full["first"], full["second"]
    for x, y in ((a.train, b.train), (a.test, b.test)):
        assert x.ids == y.ids
        assert np.array_equal(x.images, y.images) and np.array_equal(x.masks, y.masks)
    assert full["t_first"] >= 10 * full["t_second"], (full["t_first"], full["t_second"])
    names = [p.name for p in full["cache"].iterdir()]
    assert len(names) == 2 and not any(n.startswith(".tmp") for n in names)


def test_limit_is_served_from_the_full_cache(full) -> None:
    cfg = DataConfig(**{**full["cfg"].__dict__, "limit": 7})
    t = time.perf_counter()
    s = load_splits(cfg, progress=False)
    assert time.perf_counter() - t < max(5.0, full["t_first"] / 4)
    assert s.train.ids == full["first"].train.ids[:7] and s.test.ids == full["first"].test.ids[:7]
    assert np.array_equal(s.train.images, full["first"].train.images[:7])


def test_fraction_first_40_code_rule(full) -> None:
    frac = float(full["first"].train.masks[:40].mean())
    assert abs(frac - FRACTION_40["code"]) <= TOL, frac


def test_fraction_first_40_linear_rule() -> None:
    ids = list_ids(TRAIN_ZIP)[:40]
    a = read_dsb(TRAIN_ZIP, size=128, mask_rule="linear", ids=ids, progress=False)
    assert a.ids == ids and a.meta["mask_rule"] == "linear"
    assert np.array_equal(np.unique(a.masks), [0.0, 1.0]) and 0.0 <= a.images.min() and a.images.max() <= 1.0
    frac = float(a.masks.mean())
    assert abs(frac - FRACTION_40["linear"]) <= TOL, frac


def _equality_samples():
    """Among the first 40 training samples: the first of each image size up to 520 x 696 with
    <= 130 nuclei (the per-instance resize of 1024 x 1024 masks takes seconds)."""
    src = _open_source(TRAIN_ZIP)
    seen, chosen = set(), []
    for i, s in enumerate(_scan(src)[:40]):
        shape = png_size(src.read(s.image), s.image)
        if shape not in seen and len(s.masks) <= 130 and shape[0] * shape[1] <= 520 * 696:
            seen.add(shape)
            chosen.append((i, s))
    return src, chosen


def test_code_rule_union_equals_per_instance_resize_on_real_samples(full) -> None:
    """union_k(resize(m_k) > 0) == resize(union_k m_k) > 0, exactly, at S = 128 and S = 100."""
    src, chosen = _equality_samples()
    assert len(chosen) >= 5  # sizes 256x256, 256x320, 260x347, 360x360, 520x696
    checked = 0
    for i, s in chosen:
        inst = [np.asarray(decode_png(src.read(m), m)) for m in s.masks]  # uint8 0/255, as the code read them
        union = np.zeros(inst[0].shape, bool)
        for m in inst:
            union |= m > 0
        assert np.array_equal(union, np.logical_or.reduce([mask_to_bool(decode_png(src.read(m), m), m) for m in s.masks]))
        slow128 = code_mask_per_instance(inst, 128)
        assert np.array_equal(slow128, full["first"].train.masks[i, 0]), s.id  # what the reader returned
        assert np.array_equal(code_mask_per_instance(inst, 100), preprocess_mask(union, 100, "code")), s.id
        checked += len(inst)
    assert checked > 100


# -- graded masks (the MI notebooks' Y) and masks made at the paper's size ---------------------------

GRADED_MEAN_605 = 0.138  # methods.md section 4: mean of the 605 graded training masks at S = 128


def _notebook_graded(src, sample, size: int) -> np.ndarray:
    """The MI notebooks' loop, literally: imread each instance (uint8 0/255), resize it with
    mode='constant', preserve_range=True, combine with np.maximum, store as int32, divide by 255."""
    from skimage.transform import resize

    mask = np.zeros((size, size, 1), dtype=bool)
    for m in sample.masks:
        mask_ = np.asarray(decode_png(src.read(m), m))
        mask_ = np.expand_dims(resize(mask_, (size, size), mode="constant", preserve_range=True), axis=-1)
        mask = np.maximum(mask, mask_)
    y = np.zeros((1, size, size, 1), dtype=np.int32)
    y[0] = mask
    return (y / 255)[0, :, :, 0]


def test_graded_masks_are_the_notebooks_own_on_real_samples(full) -> None:
    src, chosen = _equality_samples()
    for i, s in chosen:
        ref = _notebook_graded(src, s, 128)
        got = full["first"].train.graded[i, 0]
        assert got.dtype == np.float64 and np.array_equal(got, ref), s.id
        assert 0 < ref.mean() < full["first"].train.masks[i, 0].mean()  # graded: thinner than the dilated mask
    g = full["first"].train.graded
    assert abs(float(g.mean()) - GRADED_MEAN_605) <= TOL, float(g.mean())
    assert full["first"].train.meta["graded_den"] == 255
    assert np.array_equal(np.rint(g * 255) / 255, g) and g.max() <= 1.0 and len(np.unique(g)) > 200


def test_masks_made_at_128_and_brought_to_64(full) -> None:
    """mask_size = 128 at S = 64: each 2 x 2 block of the S = 128 masks -> one pixel; binary:
    foreground when at least 2 of its 4 pixels are; graded: the block mean; the coarsening classes
    are those at S = 128 exactly. The code rule at S = 64 itself dilates far more."""
    from infoflow.estimators import coarsen_labels

    ids = list_ids(TRAIN_ZIP)[:40]
    small = read_dsb(TRAIN_ZIP, size=64, mask_size=128, ids=ids, progress=False)
    big = full["first"].train.subset(np.arange(40))
    blocks = big.masks[:, 0].reshape(40, 64, 2, 64, 2).sum(axis=(2, 4))
    assert np.array_equal(small.masks[:, 0], (blocks >= 2).astype(np.float32))
    num = np.rint(big.graded[:, 0] * 255).astype(np.int64).reshape(40, 64, 2, 64, 2).sum(axis=(2, 4))
    assert np.array_equal(small.graded[:, 0], num / 1020.0) and small.meta["graded_den"] == 1020
    assert np.array_equal(coarsen_labels(small.graded), coarsen_labels(big.graded))
    assert small.meta["mask_size"] == 128
    plain = read_dsb(TRAIN_ZIP, size=64, ids=ids, progress=False)
    ref = float(big.masks.mean())
    assert abs(float(small.masks.mean()) - ref) < 0.03 < float(plain.masks.mean()) - ref
