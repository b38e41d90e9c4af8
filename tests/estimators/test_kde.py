"""KDE estimator (Kolchinsky & Tracey 2017 / Saxe et al. 2018): exact values on hand cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from infoflow.errors import InfoflowError
from infoflow.estimators import kde_mi

LN2 = math.log(2.0)


def sqdist(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    return ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)


def clusters(sizes, gap=1e4, dim=3, seed=0):
    """Points coinciding within each class, classes `gap` apart; returns (dist, labels)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(sizes), dim)) * gap
    x = np.concatenate([np.repeat(centres[c : c + 1], s, axis=0) for c, s in enumerate(sizes)])
    y = np.concatenate([np.full(s, c) for c, s in enumerate(sizes)])
    return sqdist(x), y


def h_plugin(sizes):
    p = np.asarray(sizes, dtype=float) / sum(sizes)
    return float(-(p * np.log2(p)).sum())


# ---- N = 2: d_12 = delta ------------------------------------------------------------------
# upper: I(X;M) = log2 2 - log2(1 + exp(-delta / (2 s2)));  lower: 2 s2 -> 8 s2
N2_CASES = [
    # delta, s2, D
    (1.0, 0.5, 1),
    (0.3, 0.2, 7),
    (4.0, 1.0, 262_144),
]


@pytest.mark.parametrize("delta,s2,dim", N2_CASES)
def test_n2_closed_form(delta, s2, dim):
    d = np.array([[0.0, delta], [delta, 0.0]])
    up = kde_mi(d, [0, 1], kernel_var=s2, dim=dim, bound="upper")
    lo = kde_mi(d, [0, 1], kernel_var=s2, dim=dim, bound="lower")

    i_up = 1.0 - math.log2(1.0 + math.exp(-delta / (2 * s2)))
    i_lo = 1.0 - math.log2(1.0 + math.exp(-delta / (8 * s2)))
    hmx = dim / 2 * (math.log(2 * math.pi * s2) + 1) / LN2
    assert up.i_xm == pytest.approx(i_up, abs=1e-12)
    assert lo.i_xm == pytest.approx(i_lo, abs=1e-12)
    assert up.h_m_given_x == pytest.approx(hmx, rel=1e-14)
    assert lo.h_m_given_x == pytest.approx(hmx, rel=1e-14)
    # H(M) = H(M|X) + I(X;M) for both bounds
    assert up.h_m == pytest.approx(hmx + i_up, rel=1e-13, abs=1e-9)
    assert lo.h_m == pytest.approx(hmx + i_lo, rel=1e-13, abs=1e-9)
    # two singleton classes: H(M|Y) = H(M|X), so I(Y;M) = I(X;M)
    assert up.i_ym == pytest.approx(i_up, abs=1e-12)
    assert lo.i_ym == pytest.approx(i_lo, abs=1e-12)
    assert up.h_m_given_y == pytest.approx(hmx, rel=1e-13)


def test_n2_unit_values():
    # s2 = 1/(2 pi): log(2 pi s2) = 0, so H(M|X) = D/2 nats exactly; delta = 1/pi gives exponent -1
    d = np.array([[0.0, 1 / math.pi], [1 / math.pi, 0.0]])
    r = kde_mi(d, kernel_var=1 / (2 * math.pi), dim=4)
    assert r.h_m_given_x == pytest.approx(2.0 / LN2, rel=1e-14)  # 2.885390081777927 bits
    assert r.i_xm == pytest.approx(0.5480589169, abs=1e-9)  # 1 - log2(1 + e^-1)
    assert r.h_m == pytest.approx(2.0 / LN2 + 0.5480589169, abs=1e-9)
    assert math.isnan(r.i_ym) and math.isnan(r.h_m_given_y)


# ---- N = 3: points 0, 1, 3 on a line, s2 = 0.5 (exponent -d) --------------------------------
def test_n3_closed_form_upper_and_lower():
    d = sqdist(np.array([[0.0], [1.0], [3.0]]))
    np.testing.assert_array_equal(d, [[0, 1, 9], [1, 0, 4], [9, 4, 0]])
    e = math.exp
    rows_up = [1 + e(-1) + e(-9), e(-1) + 1 + e(-4), e(-9) + e(-4) + 1]
    rows_lo = [1 + e(-1 / 4) + e(-9 / 4), e(-1 / 4) + 1 + e(-4 / 4), e(-9 / 4) + e(-4 / 4) + 1]
    for bound, rows, cls0 in (("upper", rows_up, 1 + e(-1)), ("lower", rows_lo, 1 + e(-1 / 4))):
        r = kde_mi(d, [0, 0, 1], kernel_var=0.5, dim=1, bound=bound)
        i_xm = math.log2(3) - sum(math.log2(v) for v in rows) / 3
        # labels {0,1} | {2}: same-class terms log2(cls0 / 2) (twice) and log2(1 / 1)
        t = [math.log2(v / 3) for v in rows]
        tc = [math.log2(cls0 / 2), math.log2(cls0 / 2), 0.0]
        i_ym = sum(a - b for a, b in zip(tc, t)) / 3
        assert r.i_xm == pytest.approx(i_xm, abs=1e-12), bound
        assert r.i_ym == pytest.approx(i_ym, abs=1e-12), bound
        assert r.h_m - r.h_m_given_y == pytest.approx(r.i_ym, abs=1e-12)
    # numbers of the upper bound, written out
    r = kde_mi(d, [0, 0, 1], kernel_var=0.5, dim=1)
    assert r.i_xm == pytest.approx(1.2684421071, abs=1e-9)
    assert r.i_ym == pytest.approx(0.9030694959, abs=1e-9)


# ---- limits ---------------------------------------------------------------------------------
@pytest.mark.parametrize("bound", ["upper", "lower"])
@pytest.mark.parametrize("n", [2, 5, 16])
def test_far_apart_gives_log2n_and_coincident_gives_zero(bound, n):
    rng = np.random.default_rng(n)
    far = sqdist(rng.permutation(n)[:, None] * 1e3)
    r = kde_mi(far, np.arange(n) % 2, kernel_var=0.2, dim=10, bound=bound)
    assert r.i_xm == pytest.approx(math.log2(n), abs=1e-12)
    assert r.i_ym == pytest.approx(h_plugin(np.bincount(np.arange(n) % 2)), abs=1e-12)
    same = np.zeros((n, n))
    r0 = kde_mi(same, np.arange(n) % 2, kernel_var=0.2, dim=10, bound=bound)
    assert r0.i_xm == pytest.approx(0.0, abs=1e-12)
    assert r0.i_ym == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("bound", ["upper", "lower"])
@pytest.mark.parametrize("sizes", [[4, 4], [3, 2, 1], [5, 1, 1, 1]])
def test_well_separated_classes_give_h_y(bound, sizes):
    d, y = clusters(sizes)
    r = kde_mi(d, y, kernel_var=1.0, dim=3, bound=bound)
    assert r.i_ym == pytest.approx(h_plugin(sizes), abs=1e-12)
    assert r.i_xm == pytest.approx(h_plugin(sizes), abs=1e-12)  # samples coincide within a class


@pytest.mark.parametrize("bound", ["upper", "lower"])
def test_one_class_gives_zero_i_ym(bound):
    rng = np.random.default_rng(1)
    d = sqdist(rng.normal(size=(12, 4)))
    r = kde_mi(d, np.full(12, 7), kernel_var=0.5, dim=4, bound=bound)
    assert r.i_ym == pytest.approx(0.0, abs=1e-12)
    assert r.h_m_given_y == pytest.approx(r.h_m, abs=1e-12)


def test_lower_below_upper_and_within_bounds():
    rng = np.random.default_rng(2)
    for k in range(5):
        x = rng.normal(size=(20, 6)) * (0.1 + 0.2 * k)
        y = rng.integers(0, 3, size=20)
        d = sqdist(x)
        up = kde_mi(d, y, kernel_var=0.2, dim=6, bound="upper")
        lo = kde_mi(d, y, kernel_var=0.2, dim=6, bound="lower")
        assert lo.i_xm <= up.i_xm + 1e-12
        assert lo.h_m <= up.h_m + 1e-12
        for r in (up, lo):
            assert -1e-12 <= r.i_xm <= math.log2(20) + 1e-12
            assert -1e-12 <= r.i_ym <= h_plugin(np.bincount(y)) + 1e-12
        assert up.i_xm > lo.i_xm + 1e-6  # strictly apart on generic data


def test_permutation_invariance_and_input_types():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(15, 5))
    y = rng.integers(0, 4, size=15)
    d = sqdist(x)
    perm = rng.permutation(15)
    for bound in ("upper", "lower"):
        a = kde_mi(d, y, kernel_var=0.3, dim=5, bound=bound)
        b = kde_mi(d[np.ix_(perm, perm)], y[perm], kernel_var=0.3, dim=5, bound=bound)
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
        c = kde_mi(torch.from_numpy(d), torch.from_numpy(y), kernel_var=0.3, dim=5, bound=bound)
        np.testing.assert_array_equal(a, c)
        # labels are only compared for equality: renaming classes changes nothing
        e = kde_mi(d, np.array(["c%d" % v for v in y * 3 + 11]), kernel_var=0.3, dim=5, bound=bound)
        np.testing.assert_array_equal(a, e)
    # float32 input is used as float64: same result as the float64 copy of the same numbers
    d32 = d.astype(np.float32)
    np.testing.assert_array_equal(kde_mi(d32, kernel_var=0.3, dim=5), kde_mi(d32.astype(np.float64), kernel_var=0.3, dim=5))


def test_mi_does_not_depend_on_dim():
    rng = np.random.default_rng(4)
    d = sqdist(rng.normal(size=(10, 3)))
    y = np.arange(10) % 3
    a = kde_mi(d, y, kernel_var=0.2, dim=1)
    b = kde_mi(d, y, kernel_var=0.2, dim=262_144)
    assert a.i_xm == pytest.approx(b.i_xm, abs=1e-9)
    assert a.i_ym == pytest.approx(b.i_ym, abs=1e-9)
    assert b.h_m_given_x == pytest.approx(131_072 * (math.log(2 * math.pi * 0.2) + 1) / LN2, rel=1e-14)


def test_negative_rounding_is_clipped():
    d = np.array([[-1e-9, 1e6], [1e6, -1e-9]])
    assert kde_mi(d, kernel_var=0.2, dim=1).i_xm == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(kernel_var=0.2, dim=3, bound="middle"),
        dict(kernel_var=0.0, dim=3),
        dict(kernel_var=-1.0, dim=3),
        dict(kernel_var=0.2, dim=0),
        dict(kernel_var=0.2, dim=2.5),
    ],
)
def test_bad_settings_raise(kwargs):
    with pytest.raises(InfoflowError):
        kde_mi(np.zeros((3, 3)), **kwargs)


def test_bad_shapes_raise():
    with pytest.raises(InfoflowError):
        kde_mi(np.zeros((3, 4)), kernel_var=0.2, dim=1)
    with pytest.raises(InfoflowError):
        kde_mi(np.zeros((3, 3)), [0, 1], kernel_var=0.2, dim=1)
    with pytest.raises(InfoflowError):
        kde_mi(np.full((2, 2), np.nan), kernel_var=0.2, dim=1)


def _reference(neg: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """I(X;M), I(Y;M) in bits by the definition: scipy's logsumexp over all j / over j of the class."""
    from scipy.special import logsumexp

    n = len(y)
    t = logsumexp(neg, axis=1) - math.log(n)
    same = y[:, None] == y[None, :]
    tc = logsumexp(np.where(same, neg, -np.inf), axis=1) - np.log(np.bincount(y)[y])
    return -float(np.mean(t)) / LN2, float(np.mean(tc - t)) / LN2


@pytest.mark.parametrize("scale", [1e-3, 1.0, 30.0, 1e4])
def test_one_exp_form_equals_scipy_logsumexp(scale):
    """(Replaces the test of the former private _mixture_terms.) The prepared KDE's one shared exp
    (zero diagonal: log1p of the other terms; small classes summed over their pairs, large ones by a
    matrix product) agrees with scipy's logsumexp, over all samples and within classes, from
    coinciding points to points so far apart that every off-diagonal term underflows; so does a
    matrix with a nonzero diagonal, including rows whose maximum lies in another class far above
    their own terms (a naive shift by the row maximum would underflow there)."""
    from infoflow.estimators import LabelGroup, Labels
    from infoflow.estimators.base import DENSE_CLASS_SHARE
    from infoflow.estimators.kde import KDEPrepared

    rng = np.random.default_rng(3)
    d = sqdist(rng.normal(size=(60, 5))) * scale
    y = np.where(rng.uniform(size=60) < 0.5, 0, rng.integers(1, 12, 60))  # one large class, small ones
    large = max(2, math.ceil(DENSE_CLASS_SHARE * 60))
    assert np.bincount(y)[0] >= large > np.bincount(y)[1:].min()  # both paths (matrix product, pairs) are used
    for dd in (d, d + np.diag(np.linspace(0.0, 3.0 * scale, 60))):
        p = KDEPrepared(dd, kernel_var=0.2, dim=5)
        ix, iy = _reference(-dd / 0.4, y)
        # (a nonzero diagonal gives nonsense values of thousands of bits: relative agreement there)
        assert p.i_xm == pytest.approx(ix, rel=1e-14, abs=1e-12)
        assert p.i_ym(y) == pytest.approx(iy, rel=1e-14, abs=1e-12)
        # permutations: through Labels.permuted (pair index mapped, not rebuilt) in one group
        lab = Labels.of(y, 60)
        perms = [rng.permutation(60) for _ in range(4)]
        many = p.i_ym_many(LabelGroup([lab.permuted(q) for q in perms]))
        for q, v in zip(perms, many):
            assert v == pytest.approx(_reference(-dd / 0.4, y[q])[1], rel=1e-14, abs=1e-12)
    # a row whose maximum is in another class, its own class ~2000 nats below: exact still
    far = d.copy()
    far[0, :] = far[:, 0] = 1e4
    far[0, 0] = 800.0
    far[0, 1] = far[1, 0] = 0.0
    yy = y.copy()
    yy[0], yy[1] = 1, 2
    p = KDEPrepared(far, kernel_var=0.2, dim=5)
    ix, iy = _reference(-far / 0.4, yy)
    assert np.isfinite(iy) and p.i_xm == pytest.approx(ix, abs=1e-12) and p.i_ym(yy) == pytest.approx(iy, abs=1e-12)
