"""Output classes: spatial coarsening codes (threshold boundary, bit order), K-means, H(Y)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from infoflow.errors import InfoflowError
from infoflow.estimators import class_counts, coarsen_labels, entropy_bits, kmeans_labels

S = 128
B = 32  # block side at S = 128, grid 4


def mask_with(blocks: dict[tuple[int, int], int]) -> np.ndarray:
    """(1, S, S) float32 mask with `count` foreground pixels in block (r, c), filled row-major."""
    m = np.zeros((S, S), dtype=np.float32)
    for (r, c), count in blocks.items():
        blk = np.zeros(B * B, dtype=np.float32)
        blk[:count] = 1.0
        m[r * B : (r + 1) * B, c * B : (c + 1) * B] = blk.reshape(B, B)
    return m[None]


# (blocks -> expected code): block (r, c) is bit r*4 + c, weight 2**(r*4 + c)
CASES = [
    ({}, 0),
    ({(0, 0): 64}, 0),  # exactly T = 64 pixels: not more than T -> 0
    ({(0, 0): 65}, 1),  # 65 > 64 -> bit 0
    ({(0, 1): 65}, 2),  # bit 1
    ({(1, 0): 1024}, 16),  # bit 4
    ({(3, 3): 65}, 32768),  # bottom-right block: bit 15
    ({(0, 0): 65, (0, 3): 100, (2, 1): 64, (2, 2): 500}, 1 + 8 + 1024),
    ({(r, c): 1024 for r in range(4) for c in range(4)}, 65535),
]


def test_coarsen_hand_cases_and_bit_order():
    masks = np.stack([mask_with(b) for b, _ in CASES])  # (N, 1, S, S)
    expected = [code for _, code in CASES]
    got = coarsen_labels(masks)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(coarsen_labels(masks[:, 0]), expected)  # (N, S, S)
    np.testing.assert_array_equal(coarsen_labels(torch.from_numpy(masks)), expected)


def test_coarsen_threshold_setting():
    masks = np.stack([mask_with({(0, 0): 10}), mask_with({(0, 0): 11})])
    np.testing.assert_array_equal(coarsen_labels(masks, threshold=10), [0, 1])
    np.testing.assert_array_equal(coarsen_labels(masks, threshold=0), [1, 1])
    np.testing.assert_array_equal(coarsen_labels(masks), [0, 0])


GRADED_CASES = [  # (value of every pixel of block (0, 0) at S = 128, pixels set) -> class; T = 64
    (0.5, 128, 0),  # sum 64: not more than T
    (0.5, 130, 1),  # sum 65
    (64 / 255, 255, 0),  # sum 64.0 exactly
    (1.0, 65, 1),
    (0.25, 1024, 1),  # a faint block: 256 > 64, although no pixel is above 0.5
]


@pytest.mark.parametrize("value, pixels, code", GRADED_CASES)
def test_coarsen_sums_graded_values_as_the_notebook(value, pixels, code):
    """The coarsening notebook sums graded masks over each block (block_reduce with np.sum)."""
    m = np.zeros((1, 1, 128, 128))
    m[0, 0, :32, :32].flat[:pixels] = value
    assert coarsen_labels(m).tolist() == [code]


def test_coarsen_matches_naive_loop():
    rng = np.random.default_rng(0)
    masks = (rng.random((20, 1, 16, 16)) < rng.random((20, 1, 1, 1))).astype(np.float32)
    for grid in (1, 2, 4):
        b = 16 // grid
        t = b * b / 16
        naive = []
        for m in masks[:, 0]:
            code = 0
            for r in range(grid):
                for c in range(grid):
                    if m[r * b : (r + 1) * b, c * b : (c + 1) * b].sum() > t:
                        code += 2 ** (r * grid + c)
            naive.append(code)
        np.testing.assert_array_equal(coarsen_labels(masks, grid=grid), naive)
    assert len(np.unique(coarsen_labels(masks))) > 3


def test_coarsen_bad_input():
    with pytest.raises(InfoflowError):
        coarsen_labels(np.zeros((2, 1, 10, 10)), grid=4)  # 10 not divisible by 4
    with pytest.raises(InfoflowError):
        coarsen_labels(np.zeros((2, 3, 8, 8)))
    with pytest.raises(InfoflowError):
        coarsen_labels(np.zeros((2, 8, 8)), grid=8)  # 64 bits do not fit


def three_patterns(n_each=8, seed=0):
    rng = np.random.default_rng(seed)
    pats = np.zeros((3, 1, 8, 8))
    pats[0, :, :4] = 1
    pats[1, :, :, :4] = 1
    pats[2, :, 2:6, 2:6] = 1
    idx = np.repeat(np.arange(3), n_each)
    masks = pats[idx].copy()
    flip = rng.random(masks.shape) < 0.03
    masks[flip] = 1 - masks[flip]
    return masks.astype(np.float32), idx


def test_kmeans_deterministic_and_recovers_patterns():
    fit, idx = three_patterns(seed=0)
    probe, pidx = three_patterns(n_each=5, seed=1)
    a = kmeans_labels(fit, probe, k=3, seed=0)
    b = kmeans_labels(fit, probe, k=3, seed=0)
    assert a.dtype == np.int64 and a.shape == (15,)
    np.testing.assert_array_equal(a, b)
    # each pattern maps to one cluster, and the three clusters differ
    mapping = {p: set(a[pidx == p]) for p in range(3)}
    assert all(len(v) == 1 for v in mapping.values())
    assert len(set.union(*mapping.values())) == 3
    np.testing.assert_array_equal(kmeans_labels(torch.from_numpy(fit), torch.from_numpy(probe), k=3, seed=0), a)


def test_kmeans_k_range_and_errors():
    fit, _ = three_patterns()
    lab = kmeans_labels(fit, fit, k=5, seed=3)
    assert lab.min() >= 0 and lab.max() < 5
    with pytest.raises(InfoflowError):
        kmeans_labels(fit, fit, k=100)
    with pytest.raises(InfoflowError):
        kmeans_labels(fit, np.zeros((2, 1, 4, 4)), k=3)


ENTROPY_CASES = [
    ([0, 0, 1, 1], 1.0),
    ([0, 0, 0, 1], 0.8112781244591328),
    ([5, 5, 5], 0.0),
    (list(range(8)), 3.0),
    (["a", "b", "a", "c"], 1.5),
]


@pytest.mark.parametrize("labels,expected", ENTROPY_CASES)
def test_entropy_bits(labels, expected):
    assert entropy_bits(np.array(labels)) == pytest.approx(expected, abs=1e-15)


def test_class_counts():
    classes, counts = class_counts(np.array([3, 1, 3, 3, 7]))
    np.testing.assert_array_equal(classes, [1, 3, 7])
    np.testing.assert_array_equal(counts, [1, 3, 1])
    assert counts.dtype == np.int64
    assert math.isclose(entropy_bits([3, 1, 3, 3, 7]), -(0.6 * math.log2(0.6) + 2 * 0.2 * math.log2(0.2)))
