"""Matrix-based Renyi alpha-entropy (Giraldo et al. 2015): known Gram matrices and MI limits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from infoflow.errors import InfoflowError
from infoflow.estimators import (
    entropy_bits,
    gaussian_gram,
    renyi_entropy,
    renyi_joint_entropy,
    renyi_label_entropy,
    renyi_mi,
)

ALPHAS = [0.5, 1.0, 1.01, 2.0, 3.0]


def sqdist(x):
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    return ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)


@pytest.mark.parametrize("alpha", ALPHAS)
@pytest.mark.parametrize("n", [1, 2, 5, 32])
def test_identity_and_ones(alpha, n):
    assert renyi_entropy(np.eye(n) / n, alpha=alpha) == pytest.approx(math.log2(n), abs=1e-12)
    assert renyi_entropy(np.eye(n) * 3.7, alpha=alpha) == pytest.approx(math.log2(n), abs=1e-12)  # trace-normalised
    assert renyi_entropy(np.ones((n, n)) / n, alpha=alpha) == pytest.approx(0.0, abs=1e-12)


# A = [[1/2, 1/4], [1/4, 1/2]]: eigenvalues 3/4 and 1/4
HAND = np.array([[0.5, 0.25], [0.25, 0.5]])
HAND_CASES = [
    (2.0, -math.log2(0.75**2 + 0.25**2)),  # 0.6780719051126377
    (1.0, -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))),  # 0.8112781244591328
    (3.0, -0.5 * math.log2(0.75**3 + 0.25**3)),
    (0.5, 2.0 * math.log2(math.sqrt(0.75) + math.sqrt(0.25))),
]


@pytest.mark.parametrize("alpha,expected", HAND_CASES)
def test_hand_case(alpha, expected):
    assert renyi_entropy(HAND, alpha=alpha) == pytest.approx(expected, abs=1e-13)
    assert renyi_entropy(torch.tensor(HAND), alpha=alpha) == pytest.approx(expected, abs=1e-13)


def test_hand_numbers_written_out():
    assert renyi_entropy(HAND, alpha=2) == pytest.approx(0.6780719051126377, abs=1e-14)
    assert renyi_entropy(HAND, alpha=1) == pytest.approx(0.8112781244591328, abs=1e-14)


def test_alpha_one_is_the_limit():
    rng = np.random.default_rng(0)
    a = gaussian_gram(sqdist(rng.normal(size=(12, 3))), kernel_var=1.0)
    h1 = renyi_entropy(a, alpha=1.0)
    assert renyi_entropy(a, alpha=1.0 + 1e-7) == pytest.approx(h1, abs=1e-5)
    assert renyi_entropy(a, alpha=1.0 - 1e-7) == pytest.approx(h1, abs=1e-5)
    # Renyi entropy is non-increasing in alpha
    hs = [renyi_entropy(a, alpha=al) for al in (0.5, 1.0, 1.01, 2.0, 5.0)]
    assert all(x >= y - 1e-12 for x, y in zip(hs, hs[1:]))
    assert hs[0] > hs[-1] + 1e-3


def test_gaussian_gram():
    d = np.array([[0.0, 2.0], [2.0, 0.0]])
    g = gaussian_gram(d, kernel_var=0.5)  # exp(-2 / (2 * 0.5)) = e^-2
    np.testing.assert_allclose(g, np.array([[1.0, math.exp(-2)], [math.exp(-2), 1.0]]) / 2, rtol=1e-15)
    assert np.trace(g) == pytest.approx(1.0, abs=1e-15)


def test_joint_entropy():
    rng = np.random.default_rng(1)
    a = gaussian_gram(sqdist(rng.normal(size=(9, 2))), kernel_var=0.7)
    assert renyi_joint_entropy(a, np.ones((9, 9)), alpha=1.01) == pytest.approx(renyi_entropy(a, alpha=1.01), abs=1e-12)
    assert renyi_joint_entropy(a, np.eye(9), alpha=2.0) == pytest.approx(math.log2(9), abs=1e-12)
    b = gaussian_gram(sqdist(rng.normal(size=(9, 2))), kernel_var=0.7)
    joint = renyi_joint_entropy(a, b, alpha=1.01)
    assert joint >= max(renyi_entropy(a, alpha=1.01), renyi_entropy(b, alpha=1.01)) - 1e-12


@pytest.mark.parametrize("alpha", [1.0, 1.01, 2.0])
def test_label_entropy(alpha):
    y = np.array([0, 0, 0, 1, 2, 2])
    p = np.array([3, 1, 2]) / 6
    expected = entropy_bits(y) if alpha == 1.0 else math.log2((p**alpha).sum()) / (1 - alpha)
    assert renyi_label_entropy(y, alpha=alpha) == pytest.approx(expected, abs=1e-12)
    # equals the entropy of the normalised delta-kernel Gram matrix
    lk = (y[:, None] == y[None, :]).astype(float)
    assert renyi_entropy(lk, alpha=alpha) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("alpha", [1.0, 1.01, 2.0])
@pytest.mark.parametrize("sizes", [[4, 4], [3, 2, 1]])
def test_i_ym_limits(alpha, sizes):
    y = np.concatenate([np.full(s, c) for c, s in enumerate(sizes)])
    x = y[:, None] * 1e3 + 0.0  # coincident within a class, far apart across
    r = renyi_mi(sqdist(x), labels=y, kernel_var=1.0, alpha=alpha)
    hy = renyi_label_entropy(y, alpha=alpha)
    assert r.i_ym == pytest.approx(hy, abs=1e-10)
    assert r.h_m == pytest.approx(hy, abs=1e-10)
    assert math.isnan(r.i_xm)
    one = renyi_mi(sqdist(np.random.default_rng(2).normal(size=(len(y), 3))), labels=np.zeros(len(y)), kernel_var=1.0, alpha=alpha)
    assert one.i_ym == pytest.approx(0.0, abs=1e-10)


def test_i_ym_matches_full_hadamard():
    rng = np.random.default_rng(3)
    d = sqdist(rng.normal(size=(20, 4)))
    y = rng.integers(0, 5, size=20)
    r = renyi_mi(d, labels=y, kernel_var=2.0, alpha=1.01)
    a = gaussian_gram(d, kernel_var=2.0)
    lk = (y[:, None] == y[None, :]).astype(float)
    expected = renyi_entropy(a, alpha=1.01) + renyi_entropy(lk, alpha=1.01) - renyi_joint_entropy(a, lk, alpha=1.01)
    assert r.i_ym == pytest.approx(expected, abs=1e-10)
    assert 0.0 < r.i_ym < renyi_label_entropy(y, alpha=1.01)


def test_i_xm_limits_symmetry_and_permutation():
    rng = np.random.default_rng(4)
    dx = sqdist(rng.normal(size=(15, 6)))
    dm = sqdist(rng.normal(size=(15, 3)))
    y = rng.integers(0, 3, size=15)
    r = renyi_mi(dm, dist_x=dx, labels=y, kernel_var=1.5)
    swapped = renyi_mi(dx, dist_x=dm, kernel_var=1.5)
    assert r.i_xm == pytest.approx(swapped.i_xm, abs=1e-10)  # I(X;M) = I(M;X)
    perm = rng.permutation(15)
    p = renyi_mi(dm[np.ix_(perm, perm)], dist_x=dx[np.ix_(perm, perm)], labels=y[perm], kernel_var=1.5)
    np.testing.assert_allclose(p, r, atol=1e-10)
    # a copy of the input carries more about X than an unrelated layer; I <= min(S(M), S(X))
    copy = renyi_mi(dx, dist_x=dx, kernel_var=1.5)
    h_x = renyi_entropy(gaussian_gram(dx, kernel_var=1.5), alpha=1.01)
    assert copy.i_xm > r.i_xm + 0.1
    assert r.i_xm <= min(r.h_m, h_x) + 1e-10 and copy.i_xm <= h_x + 1e-10
    # far-apart points: identity Gram, I(X;M) = log2 N
    far = sqdist(np.arange(15)[:, None] * 1e3)
    assert renyi_mi(far, dist_x=far, kernel_var=1.0).i_xm == pytest.approx(math.log2(15), abs=1e-10)
    # a constant layer carries nothing
    assert renyi_mi(np.zeros((15, 15)), dist_x=dx, kernel_var=1.0).i_xm == pytest.approx(0.0, abs=1e-10)


def test_kernel_var_x():
    rng = np.random.default_rng(5)
    dx = sqdist(rng.normal(size=(10, 6)))
    dm = sqdist(rng.normal(size=(10, 3)))
    a = renyi_mi(dm, dist_x=dx, kernel_var=1.0, kernel_var_x=1.0)
    b = renyi_mi(dm, dist_x=dx, kernel_var=1.0, kernel_var_x=8.0)
    assert a == renyi_mi(dm, dist_x=dx, kernel_var=1.0)
    assert abs(a.i_xm - b.i_xm) > 1e-3


def test_bad_input_raises():
    with pytest.raises(InfoflowError):
        renyi_entropy(np.zeros((3, 3)), alpha=2)
    with pytest.raises(InfoflowError):
        renyi_entropy(np.eye(3), alpha=0)
    with pytest.raises(InfoflowError):
        renyi_mi(np.zeros((3, 3)), dist_x=np.zeros((4, 4)), kernel_var=1.0)
    with pytest.raises(InfoflowError):
        renyi_mi(np.zeros((3, 3)), kernel_var=-1.0)
