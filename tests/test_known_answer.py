"""Known-answer benchmark: the truths are computed exactly (closed form / quadrature / Monte Carlo
with a stated error) and the synthetic distances have the right distribution."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from infoflow.estimators import kde_mi
from infoflow.analysis.known_answer import (
    MixtureSpec,
    benchmark,
    population_ixm,
    population_iym,
    sample_mixture,
    sample_truth,
    summarize,
)


def _iym_two_gaussians_by_grid(snr: float) -> float:
    """I(Y;M) of 1/2 N(-a, 1) + 1/2 N(a, 1), a = sqrt(snr)/2, as h(mixture) - h(component) on a fine grid."""
    a = math.sqrt(snr) / 2.0
    x = np.linspace(-a - 12.0, a + 12.0, 400_001)
    p = 0.5 * (norm.pdf(x, -a) + norm.pdf(x, a))
    h_mix = -np.trapezoid(p * np.log2(np.where(p > 0, p, 1.0)), x)
    return float(h_mix - 0.5 * math.log2(2 * math.pi * math.e))


@pytest.mark.parametrize("snr", [0.5, 4.0, 16.0])
def test_two_class_truth_by_quadrature_matches_direct_integration(snr):
    val, err = population_iym(2, snr)
    assert err < 1e-9
    assert val == pytest.approx(_iym_two_gaussians_by_grid(snr), abs=1e-7)


def test_population_limits_and_monte_carlo():
    assert population_iym(4, 0.0) == (0.0, 0.0)
    v, _ = population_iym(4, 1e4)
    assert v == pytest.approx(2.0, abs=1e-9)  # far apart: log2 K
    # the Monte Carlo path agrees with quadrature within 4 standard errors
    q, _ = population_iym(2, 4.0)
    m, se = population_iym(2, 4.0, method="mc", n_mc=200_000)
    assert 0 < se < 0.005 and abs(m - q) < 4 * se
    # K = 4 lies between 2-class and log2 4 bounds and increases with separation
    a, _ = population_iym(4, 4.0, n_mc=100_000)
    b, _ = population_iym(4, 16.0, n_mc=100_000)
    assert 0.5 < a < b < 2.0
    # I(X; M+Z) of a continuous layer: the Gaussian-channel term D/2 log2(1 + sigma2/s2) plus I(Y; M+Z)
    spec = MixtureSpec(dim=100, n=10, k=2, snr=0.0)
    assert population_ixm(spec, 1.0)[0] == pytest.approx(50.0)


def test_sample_truth_exact_cases():
    # two points at squared distance 4, kernel variance 1: a binary input on a Gaussian channel,
    # the same integral as the 2-class population truth at snr = 4
    d = np.array([[0.0, 4.0], [4.0, 0.0]])
    st = sample_truth(d, [0, 1], kernel_var=1.0, draws=20_000, seed=0)
    q, _ = population_iym(2, 4.0)
    assert abs(st["I_XM"] - q) < 4 * st["I_XM_se"] and st["I_YM"] == pytest.approx(st["I_XM"])
    # isolated points: log2 N and H(Y) exactly; coincident points: 0
    far = np.full((8, 8), 1e6)
    np.fill_diagonal(far, 0.0)
    st = sample_truth(far, np.arange(8) % 2, kernel_var=1.0, draws=50)
    assert st["I_XM"] == pytest.approx(3.0, abs=1e-12) and st["I_YM"] == pytest.approx(1.0, abs=1e-12)
    st = sample_truth(np.zeros((6, 6)), np.arange(6) % 3, kernel_var=1.0, draws=50)
    assert st["I_XM"] == pytest.approx(0.0, abs=1e-12) and st["I_YM"] == pytest.approx(0.0, abs=1e-12)


def test_kde_bounds_bracket_the_sample_truth():
    smp = sample_mixture(MixtureSpec(dim=6, n=40, k=2, snr=4.0), 3)
    for s2 in (0.3, 2.0):
        st = sample_truth(smp.dist, smp.labels, kernel_var=s2, draws=4000, rows=40, seed=1)
        up = kde_mi(smp.dist, None, kernel_var=s2, dim=6, bound="upper").i_xm
        lo = kde_mi(smp.dist, None, kernel_var=s2, dim=6, bound="lower").i_xm
        assert lo - 4 * st["I_XM_se"] <= st["I_XM"] <= up + 4 * st["I_XM_se"]


def test_wishart_distances_match_explicit_ones():
    """Bartlett (large D, cheap) and explicit Gaussian vectors give the same distance distribution."""
    spec = MixtureSpec(dim=6000, n=30, k=3, snr=50.0)
    iu = np.triu_indices(30, 1)
    stats = []
    for explicit in (10**6, 10):
        vals = [sample_mixture(spec, s, explicit_dim=explicit) for s in range(6)]
        same = np.concatenate([v.dist[iu][(v.labels[iu[0]] == v.labels[iu[1]])] for v in vals])
        diff = np.concatenate([v.dist[iu][(v.labels[iu[0]] != v.labels[iu[1]])] for v in vals])
        stats.append((same.mean(), diff.mean(), same.std()))
    for (s_a, d_a, sd_a), (s_b, d_b, sd_b) in zip([stats[0]], [stats[1]]):
        assert s_a == pytest.approx(2 * 6000, rel=0.01) and s_b == pytest.approx(2 * 6000, rel=0.01)
        assert d_a - s_a == pytest.approx(50.0, abs=15) and d_b - s_b == pytest.approx(50.0, abs=15)
        assert sd_a == pytest.approx(sd_b, rel=0.25)
    # D = 262,144 costs nothing: the Gram matrix comes from its Wishart distribution
    big = sample_mixture(MixtureSpec(dim=262_144, n=65, k=4, snr=4.0), 0)
    assert big.dist[iu[0][:5], iu[1][:5]].mean() == pytest.approx(2 * 262_144, rel=0.02)


def test_tiny_benchmark_shows_the_saturation():
    specs = [MixtureSpec(dim=262_144, n=40, k=4, snr=4.0)]
    f = benchmark(specs, kernels=("fixed:0.2", "rel:1"), estimators=("kde_upper",), repeats=1, truth_draws=50,
                  pop_mc=20_000)
    s = summarize(f, "truth_pop")
    fixed = s[(s.setting == "fixed:0.2") & (s.quantity == "I_YM")].iloc[0]
    assert fixed["estimate"] == pytest.approx(fixed["ceiling"], abs=1e-6)  # every sample isolated: H(Y)
    assert fixed["truth"] == pytest.approx(0.84, abs=0.03) and fixed["bias"] > 1.0
    own = summarize(f, "truth_sample")
    assert own.loc[own.setting == "fixed:0.2", "bias"].abs().max() < 1e-3
