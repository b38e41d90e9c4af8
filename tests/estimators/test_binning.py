"""Binning estimator: symbol codes (one binned symbol: float32 division, SHA-256), batch invariance and
hand-computed entropies."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from infoflow.errors import InfoflowError
from infoflow.estimators import bin_codes, bin_index, binning_mi

# floor(m / 0.1): rows [0, 2], [1, 2], [1, 2], [5, -1] -> symbols a, b, b, c
HAND_ACTS = np.array([[0.05, 0.25], [0.15, 0.25], [0.12, 0.29], [0.55, -0.05]])


def test_hand_codes_first_appearance_order():
    np.testing.assert_array_equal(bin_codes(HAND_ACTS, bin_size=0.1), [0, 1, 1, 2])
    # a coarser bin merges the first three rows: floor(m / 0.5) = [0,0],[0,0],[0,0],[1,-1]
    np.testing.assert_array_equal(bin_codes(HAND_ACTS, bin_size=0.5), [0, 0, 0, 1])
    # ids follow first appearance, not sorted symbol values
    np.testing.assert_array_equal(bin_codes(HAND_ACTS[::-1], bin_size=0.1), [0, 1, 1, 2])
    assert bin_codes(HAND_ACTS, bin_size=0.1).dtype == np.int64


def test_hand_entropies():
    # symbols (a, b, b, c): H = 2 * 1/4 * 2 + 1/2 * 1 = 1.5 bits
    r = binning_mi([0, 1, 1, 2], [0, 0, 1, 1])
    assert r.h_m == pytest.approx(1.5, abs=1e-15)
    assert r.i_xm == pytest.approx(1.5, abs=1e-15)
    # H(M|Y=0) = H(a, b) = 1, H(M|Y=1) = H(b, c) = 1 -> I = 1.5 - 1 = 0.5
    assert r.i_ym == pytest.approx(0.5, abs=1e-15)
    assert r.n_symbols == 3 and r.saturated is False
    # labels (0, 1, 1, 0): H(M|0) = H(a, c) = 1, H(M|1) = H(b, b) = 0 -> I = 1.5 - 0.5 = 1.0
    assert binning_mi([0, 1, 1, 2], [0, 1, 1, 0]).i_ym == pytest.approx(1.0, abs=1e-15)
    # (a, a, a, b): H = -(3/4) log2(3/4) - (1/4) log2(1/4) = 0.8112781244591328
    assert binning_mi([5, 5, 5, 9]).h_m == pytest.approx(0.8112781244591328, abs=1e-15)


@pytest.mark.parametrize("n", [1, 2, 7, 64])
def test_deterministic_distinct_and_duplicated(n):
    rng = np.random.default_rng(n)
    acts = rng.permutation(n)[:, None] * 1.0 + 0.05  # all rows in different bins
    codes = bin_codes(acts, bin_size=0.1)
    y = np.arange(n) % 3
    r = binning_mi(codes, y)
    assert r.saturated is True and r.n_symbols == n
    assert r.h_m == pytest.approx(math.log2(n), abs=1e-12)
    counts = np.bincount(y)
    p = counts / n
    assert r.i_ym == pytest.approx(float(-(p * np.log2(p)).sum()), abs=1e-12)  # = H(Y)
    dup = bin_codes(np.full((n, 5), 0.33), bin_size=0.1)
    r0 = binning_mi(dup, y)
    np.testing.assert_array_equal(dup, np.zeros(n))
    assert r0.h_m == 0.0 and r0.i_ym == 0.0 and r0.n_symbols == 1
    assert r0.saturated is (n == 1)


@pytest.mark.parametrize("batch", [1, 3, 7, 100])
def test_batches_match_one_shot(batch):
    """(Was the streaming BinCoder's test; the coder is gone: bin_codes in batches is the one path.)"""
    rng = np.random.default_rng(0)
    base = rng.integers(-3, 3, size=(5, 2, 3, 3)) * 0.1 + 0.05  # 5 bin centres
    pick = rng.integers(0, 5, size=23)
    acts = base[pick] + rng.uniform(-0.04, 0.04, size=(23, 2, 3, 3))  # same bins, jittered values
    expected = bin_codes(acts, bin_size=0.1)
    first = {p: i for i, p in reversed(list(enumerate(pick)))}
    order = {p: k for k, p in enumerate(sorted(first, key=first.get))}
    np.testing.assert_array_equal(expected, [order[p] for p in pick])  # ids by first appearance
    np.testing.assert_array_equal(bin_codes(acts, bin_size=0.1, batch_size=batch), expected)
    # torch input (float64 rounded to float32, like numpy's) gives the same ids
    np.testing.assert_array_equal(bin_codes(torch.from_numpy(acts), bin_size=0.1, batch_size=batch), expected)


def test_bin_index_is_the_float32_quotient():
    """bin_index = floor(float32(m) / float32(b)) in float32, -0.0 -> +0.0; the input is not changed."""
    rng = np.random.default_rng(1)
    m = (rng.standard_normal(1000) * 3).astype(np.float32)
    keep = m.copy()
    q = bin_index(m, bin_size=0.1)
    assert q.dtype == np.float32
    np.testing.assert_array_equal(q, np.floor(m / np.float32(0.1)))
    np.testing.assert_array_equal(m, keep)
    # float64 values are rounded to float32 first
    m64 = m.astype(np.float64) + 1e-12
    np.testing.assert_array_equal(bin_index(m64, bin_size=0.1), np.floor(m64.astype(np.float32) / np.float32(0.1)))
    z = bin_index(np.array([-0.0, -0.01], dtype=np.float32), bin_size=0.1)
    assert not np.signbit(z[0]) and z[1] == -1.0
    # in place into the caller's buffer
    buf = m.copy()
    assert bin_index(buf, bin_size=0.1, out=buf) is buf
    np.testing.assert_array_equal(buf, q)


def test_large_rows_differing_in_one_value():
    d = 262_144
    acts = np.zeros((4, d), dtype=np.float32)
    acts[1, -1] = 0.15  # differs from row 0 in the very last coordinate only
    acts[2, 0] = 0.05  # same bin as row 0
    acts[3, -1] = 0.19  # same bin as row 1
    np.testing.assert_array_equal(bin_codes(acts, bin_size=0.1), [0, 1, 0, 1])


def test_negative_values_floor_down():
    # floor(-0.05 / 0.1) = -1 differs from floor(0.05 / 0.1) = 0
    np.testing.assert_array_equal(bin_codes(np.array([[-0.05], [0.05], [-0.01]]), bin_size=0.1), [0, 1, 0])
    # -0.0 and +0.0 are the same bin (floor(-0.0) is -0.0, whose bytes differ from +0.0)
    np.testing.assert_array_equal(bin_codes(np.array([[0.0, 1.0], [-0.0, 1.0]], dtype=np.float32), bin_size=0.1), [0, 0])


def test_symmetry_and_permutation_invariance():
    rng = np.random.default_rng(5)
    codes = rng.integers(0, 6, size=40)
    y = rng.integers(0, 4, size=40)
    a = binning_mi(codes, y)
    assert binning_mi(y, codes).i_ym == pytest.approx(a.i_ym, abs=1e-12)  # I(Y;M) = I(M;Y)
    perm = rng.permutation(40)
    b = binning_mi(codes[perm], y[perm])
    assert b.h_m == pytest.approx(a.h_m, abs=1e-12) and b.i_ym == pytest.approx(a.i_ym, abs=1e-12)
    c = binning_mi(codes * 7 + 3, y - 10)  # renaming symbols and classes
    assert c == a
    assert 0.0 < a.i_ym < a.h_m


def test_bad_input_raises():
    with pytest.raises(InfoflowError):
        bin_codes(np.array([[0.1, np.nan]]), bin_size=0.1)
    with pytest.raises(InfoflowError):
        bin_codes(np.zeros((2, 2)), bin_size=0.0)
    with pytest.raises(InfoflowError):
        binning_mi(np.zeros((2, 2), dtype=int))
    with pytest.raises(InfoflowError):
        binning_mi([0, 1, 2], [0, 1])
