"""Known-answer benchmark: synthetic "activations" whose mutual information is known.

Model (the classes are the components of a Gaussian mixture). ``K`` equiprobable classes with
orthogonal means ``mu_k = a e_k`` in ``R^D`` (``a^2 = snr * sigma2 / 2``, so every two class means
are ``snr * sigma2`` apart in squared distance) and isotropic within-class noise::

    M = mu_Y + sigma * eps,   eps ~ N(0, I_D),   sample i has class y_i = i mod K (balanced)

Only distances enter the estimators, so a sample set is generated as its Gram matrix: the K
coordinates in the span of the means explicitly, and the Gram matrix of the noise in the other
``D - K`` directions either explicitly (``D - K <= explicit_dim``, in column chunks, float64)
or, for large D, drawn exactly from its Wishart distribution ``Wishart_N(D - K, sigma2 I)`` by
Bartlett's decomposition (``N (N + 1) / 2`` random numbers however large D is). D = 262,144
costs what D = 4,096 does.

Truths (bits), see :func:`population_iym`, :func:`population_ixm`, :func:`sample_truth`:

``pop``  -- the population ``I(Y;M)`` of the mixture (what one wants to know). Only the K-dim
    span of the means matters, so it does not depend on D::

        I(Y;M) = log K - E[ log(1 + sum_{k != y} exp(-snr/2 - sqrt(snr/2) (z_y - z_k))) ],  z ~ N(0, I_K)

    K = 2: a one-dimensional integral, done by adaptive quadrature (``scipy.integrate.quad``,
    its error estimate is reported, ~1e-12). K > 2: Monte Carlo with the standard error reported.
``pop_noisy`` -- the KDE's own population target for kernel variance ``kernel_var``: the same with the
    kernel's noise added, ``M + Z``, ``Z ~ N(0, kernel_var I)``: ``I(Y; M+Z)`` = the formula above with
    ``snr * sigma2 / (sigma2 + kernel_var)``; and ``I(X; M+Z) = (D/2) log2(1 + sigma2/kernel_var) + I(Y; M+Z)``
    (``h(M+Z) = h(M+Z|Y) + I(Y;M+Z)``; ``h(M+Z|X) = h(Z)``), usually far above log2 N.
``sample`` -- the KDE's finite-sample target: ``U = m_I + Z`` with ``I`` uniform over the N
    samples (Kolchinsky & Tracey's mixture), ``I(X;U) = H(U) - H(Z)`` and
    ``I(Y;U) = H(U) - H(U|Y)``. Exact expression, evaluated by Monte Carlo with its standard error::

        I(X;U) = log N - E_i E_z[ logsumexp_j( -(d_ij + 2 sqrt(kernel_var) (a_i - a_j)) / (2 kernel_var) ) ]

    where ``a_k = z . (m_k - mean(m))`` is Gaussian with covariance ``B = -1/2 J d J``, the centred
    Gram matrix: the noise only enters through its projections on the sample differences, so
    the distances alone determine the truth, for any D. The KDE upper bound is this expression
    with ``z = 0`` (Jensen: upper bound >= truth).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import integrate

from ..errors import InfoflowError
from ..estimators._util import LN2, as_dist, as_labels
from ..estimators.base import LabelGroup, Labels
from ..estimators.binning import bin_codes
from ..estimators.registry import prepare, setting_of
from ..estimators.widths import parse_kernels

__all__ = [
    "MixtureSpec",
    "MixtureSample",
    "sample_mixture",
    "population_iym",
    "population_ixm",
    "sample_truth",
    "benchmark",
    "summarize",
    "default_specs",
    "BENCHMARK_KERNELS",
]

BENCHMARK_KERNELS = ("fixed:0.2", "fixed:1.0", "rel:0.1", "rel:1.0", "silverman:1.0")


@dataclass(frozen=True)
class MixtureSpec:
    """One synthetic layer: ``dim`` D, ``n`` samples, ``k`` classes, separation ``snr`` =
    squared distance between class means / within-class variance per coordinate ``sigma2``."""

    dim: int
    n: int
    k: int
    snr: float
    sigma2: float = 1.0

    def __post_init__(self) -> None:
        if self.k < 2 or self.dim < self.k or self.n < self.k:
            raise InfoflowError(f"need 2 <= k <= dim and k <= n, got {self}")
        if not (self.snr >= 0) or not (self.sigma2 > 0):
            raise InfoflowError(f"snr must be >= 0 and sigma2 > 0, got {self}")


@dataclass
class MixtureSample:
    dist: np.ndarray  # (N, N) float64 squared distances
    labels: np.ndarray  # (N,) int64 classes
    acts: np.ndarray | None  # (N, D) float64 activations when generated explicitly, else None


def _gram_explicit(rng: np.random.Generator, n: int, dim: int, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    g = np.zeros((n, n))
    parts = []
    for start in range(0, dim, chunk):
        x = rng.standard_normal((n, min(chunk, dim - start)))
        g += x @ x.T
        parts.append(x)
    return g, np.concatenate(parts, axis=1) if parts else np.zeros((n, 0))


def _wishart_bartlett(rng: np.random.Generator, n: int, dof: int) -> np.ndarray:
    """``A A^T`` with Bartlett's lower-triangular A: exactly ``Wishart_n(dof, I)`` (dof >= n)."""
    a = np.tril(rng.standard_normal((n, n)), k=-1)
    a[np.diag_indices(n)] = np.sqrt(rng.chisquare(dof - np.arange(n)))
    return a @ a.T


def sample_mixture(spec: MixtureSpec, seed: int | np.random.Generator = 0, *, explicit_dim: int = 4096,
                   keep_acts: bool = False) -> MixtureSample:
    """Distances (float64) and labels of N samples of the mixture; activations too when
    ``keep_acts`` and D - K <= ``explicit_dim`` (the binning estimator needs them)."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    n, k, dim = spec.n, spec.k, spec.dim
    y = np.arange(n, dtype=np.int64) % k
    a = math.sqrt(spec.snr * spec.sigma2 / 2.0)
    sig = math.sqrt(spec.sigma2)
    head = sig * rng.standard_normal((n, k))
    head[np.arange(n), y] += a
    rest = dim - k
    acts = None
    if rest == 0:
        g_rest = np.zeros((n, n))
        tail = np.zeros((n, 0))
    elif rest <= explicit_dim or rest < n:
        g_rest, tail = _gram_explicit(rng, n, rest)
        g_rest *= spec.sigma2
        tail = tail * sig
    else:
        g_rest = spec.sigma2 * _wishart_bartlett(rng, n, rest)
        tail = None
    if keep_acts and tail is not None:
        acts = np.concatenate([head, tail], axis=1)
    g = head @ head.T + g_rest
    sq = np.diag(g)
    d = sq[:, None] + sq[None, :] - 2.0 * g
    np.maximum(d, 0.0, out=d)
    np.fill_diagonal(d, 0.0)
    return MixtureSample(dist=d, labels=y, acts=acts)


# -- population truths -----------------------------------------------------------------------------
def _softplus(x: np.ndarray | float) -> Any:
    return np.logaddexp(0.0, x)


def population_iym(k: int, snr: float, *, n_mc: int = 400_000, seed: int = 12345,
                   method: str = "auto") -> tuple[float, float]:
    """``(I(Y;M), error)`` in bits of the K-class orthogonal-means mixture at separation ``snr``.

    K = 2 (``method="auto"``): quadrature (error: quad's estimate); K > 2 or ``method="mc"``:
    Monte Carlo with common random numbers (error: standard error)."""
    if k < 2:
        raise InfoflowError("k must be >= 2")
    snr = float(snr)
    if snr <= 0.0:
        return 0.0, 0.0
    if k == 2 and method != "mc":
        s = math.sqrt(snr)

        def f(z: float) -> float:
            return math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi) * float(_softplus(-snr / 2.0 - s * z))

        val, err = integrate.quad(f, -np.inf, np.inf, epsabs=1e-14, epsrel=1e-12, limit=400)
        return (math.log(2.0) - val) / LN2, err / LN2
    rng = np.random.default_rng(seed)
    s = math.sqrt(snr / 2.0)
    chunk = max(1, 4_000_000 // k)
    vals = []
    left = int(n_mc)
    while left > 0:
        m = min(chunk, left)
        z = rng.standard_normal((m, k))
        # class y = 0; terms k != 0: exp(-snr/2 - s (z_0 - z_k))
        e = -snr / 2.0 - s * (z[:, :1] - z[:, 1:])
        mx = np.maximum(e.max(axis=1), 0.0)
        v = mx + np.log(np.exp(-mx) + np.exp(e - mx[:, None]).sum(axis=1))
        vals.append(v)
        left -= m
    total = np.concatenate(vals)
    i = (math.log(k) - float(total.mean())) / LN2
    se = float(total.std(ddof=1)) / math.sqrt(total.size) / LN2
    return max(i, 0.0), se


def population_ixm(spec: MixtureSpec, kernel_var: float, **kw: Any) -> tuple[float, float]:
    """``(I(X; M+Z), error)`` bits for kernel variance ``kernel_var``: ``(D/2) log2(1 + sigma2/kernel_var) + I(Y;M+Z)``."""
    iy, err = population_iym(spec.k, spec.snr * spec.sigma2 / (spec.sigma2 + kernel_var), **kw)
    return 0.5 * spec.dim * math.log2(1.0 + spec.sigma2 / kernel_var) + iy, err


# -- finite-sample (mixture) truths --------------------------------------------------------------
def _lse_rows(a: np.ndarray) -> np.ndarray:
    mx = a.max(axis=1)
    return np.log(np.exp(a - mx[:, None]).sum(axis=1)) + mx


def sample_truth(dist: Any, labels: Any = None, *, kernel_var: float, draws: int = 400, rows: int = 64,
                 seed: int = 0) -> dict[str, float]:
    """Exact KDE targets of a finite sample set by Monte Carlo (see module docstring).

    Returns ``{"I_XM", "I_XM_se", "I_YM", "I_YM_se"}`` in bits (I_YM NaN without labels). Each
    draw takes one Gaussian vector z (through ``a ~ N(0, B)``) and ``rows`` random samples i (all
    of them when N <= rows); the standard errors are those of the mean over independent draws.
    """
    d = np.asarray(dist, dtype=np.float64)
    n = d.shape[0]
    kernel_var = float(kernel_var)
    row = d.mean(axis=1)
    b = -0.5 * (d - row[:, None] - row[None, :] + row.mean())
    lam, q = np.linalg.eigh(b)
    root = q * np.sqrt(np.clip(lam, 0.0, None))[None, :]
    y = None if labels is None else as_labels(labels, n)
    counts = None if y is None else np.bincount(y).astype(np.float64)
    rng = np.random.default_rng(seed)
    r = min(int(rows), n)
    ix, iy = np.empty(draws), np.empty(draws)
    scale = 1.0 / (2.0 * kernel_var)
    root_s = 2.0 * math.sqrt(kernel_var)
    for t in range(draws):
        a = root @ rng.standard_normal(n)
        idx = np.arange(n) if r == n else rng.choice(n, size=r, replace=False)
        e = -(d[idx] + root_s * (a[idx, None] - a[None, :])) * scale
        lse_all = _lse_rows(e)
        ix[t] = math.log(n) - float(lse_all.mean())
        if y is not None:
            same = y[idx, None] == y[None, :]
            lse_c = _lse_rows(np.where(same, e, -np.inf)) - np.log(counts[y[idx]])
            iy[t] = float(np.mean(lse_c - (lse_all - math.log(n))))
    out = {"I_XM": float(ix.mean()) / LN2, "I_XM_se": float(ix.std(ddof=1)) / math.sqrt(draws) / LN2,
           "I_YM": math.nan, "I_YM_se": math.nan}
    if y is not None:
        out["I_YM"] = float(iy.mean()) / LN2
        out["I_YM_se"] = float(iy.std(ddof=1)) / math.sqrt(draws) / LN2
    return out


# -- the benchmark ----------------------------------------------------------------------------------
def _estimates(smp: MixtureSample, spec: MixtureSpec, kernels: Sequence[str], estimators: Sequence[str],
               bin_size: float, alpha: float, perms: Sequence[np.ndarray] = ()) -> list[dict[str, Any]]:
    """Every estimate of one sample set through the estimator registry, with the mean I(Y;M)
    over the label permutations ``perms`` (``baseline``)."""
    d32 = as_dist(smp.dist.astype(np.float32))  # what a run stores, as the table reads it
    n = d32.shape[0]
    y = Labels.of(smp.labels, n)
    shuffled = LabelGroup([y.permuted(p) for p in perms]) if len(perms) else None

    def baseline(p: Any) -> float:
        return float(np.mean(p.i_ym_many(shuffled))) if shuffled is not None else math.nan

    rows: list[dict[str, Any]] = []
    for w in parse_kernels(kernels):
        kernel_var = w.kernel_var(d32)
        for est in estimators:
            if est in ("kde_upper", "kde_lower", "renyi"):
                p = prepare(est, dist=d32, kernel_var=kernel_var, dim=spec.dim, alpha=alpha, checked=True)
                rows.append({"estimator": est, "setting": setting_of(est, kernel=w, alpha=alpha), "kernel_var": kernel_var,
                             "I_XM": p.i_xm, "I_YM": p.i_ym(y), "baseline": baseline(p)})
    if "bin" in estimators and smp.acts is not None:
        p = prepare("bin", codes=bin_codes(smp.acts, bin_size=bin_size))
        rows.append({"estimator": "bin", "setting": setting_of("bin", bin_size=bin_size), "kernel_var": math.nan,
                     "I_XM": p.i_xm, "I_YM": p.i_ym(y), "baseline": baseline(p)})
    return rows


def benchmark(
    specs: Sequence[MixtureSpec],
    *,
    kernels: Sequence[str] = BENCHMARK_KERNELS,
    estimators: Sequence[str] = ("kde_upper", "kde_lower", "renyi", "bin"),
    repeats: int = 3,
    seed: int = 0,
    truth_draws: int = 300,
    truth_rows: int = 64,
    pop_mc: int = 400_000,
    bin_size: float = 0.1,
    renyi_alpha: float = 1.01,
    explicit_dim: int = 4096,
    permutations: int = 10,
    progress: bool = False,
) -> pd.DataFrame:
    """Long table: per spec, sample draw, estimator, setting and quantity, the estimate and the
    truths ``truth_pop`` (the mixture's I(Y;M); +inf for I(X;M), a continuous layer),
    ``truth_pop_noisy`` (I(.; M+Z) at the resolved kernel_var) and ``truth_sample`` (the KDE's target on
    this sample set), each with its error ``*_err`` (quadrature error or MC standard error); and
    ``baseline``: the mean I(Y;M) estimate over ``permutations`` label shufflings (what the
    estimator reports for labels unrelated to the activations; NaN for I(X;M))."""
    cache: dict[tuple[int, float], tuple[float, float]] = {}

    def pop(k: int, snr: float) -> tuple[float, float]:
        key = (k, round(float(snr), 12))
        if key not in cache:
            cache[key] = population_iym(k, snr, n_mc=pop_mc)
        return cache[key]

    out: list[dict[str, Any]] = []
    for si, spec in enumerate(specs):
        if progress:
            print(f"[{si + 1}/{len(specs)}] {spec}", flush=True)
        iy_pop, iy_pop_err = pop(spec.k, spec.snr)
        for r in range(int(repeats)):
            rng = np.random.default_rng(np.random.SeedSequence([int(seed), si, r]))
            smp = sample_mixture(spec, rng, explicit_dim=explicit_dim, keep_acts="bin" in estimators)
            h_y = float(-(np.bincount(smp.labels) / spec.n * np.log2(np.bincount(smp.labels) / spec.n)).sum())
            truths: dict[float, dict[str, float]] = {}
            prng = np.random.default_rng(np.random.SeedSequence([int(seed), si, r, 1]))
            # prng.permutation(labels) == labels[prng.permutation(n)]: the same shuffles as ever
            perms = [prng.permutation(spec.n) for _ in range(int(permutations))]
            for row in _estimates(smp, spec, kernels, estimators, bin_size, renyi_alpha, perms):
                kernel_var = row["kernel_var"]
                kde = row["estimator"].startswith("kde")
                if kde and kernel_var not in truths:
                    truths[kernel_var] = sample_truth(smp.dist, smp.labels, kernel_var=kernel_var, draws=truth_draws, rows=truth_rows,
                                              seed=int(seed) + 7919 * r + si)
                for q in ("I_XM", "I_YM"):
                    if not math.isfinite(row[q]):
                        continue
                    rec = {**asdict(spec), "repeat": r, "estimator": row["estimator"], "setting": row["setting"],
                           "kernel_var": kernel_var, "quantity": q, "estimate": row[q], "log2n": math.log2(spec.n), "h_y": h_y,
                           "ceiling": math.log2(spec.n) if q == "I_XM" else h_y,
                           "baseline": row["baseline"] if q == "I_YM" else math.nan}
                    if q == "I_YM":
                        rec["truth_pop"], rec["truth_pop_err"] = iy_pop, iy_pop_err
                    else:
                        rec["truth_pop"], rec["truth_pop_err"] = math.inf, 0.0
                    if kde:
                        if q == "I_YM":
                            v, e = pop(spec.k, spec.snr * spec.sigma2 / (spec.sigma2 + kernel_var))
                        else:
                            iy_n, e = pop(spec.k, spec.snr * spec.sigma2 / (spec.sigma2 + kernel_var))
                            v = 0.5 * spec.dim * math.log2(1.0 + spec.sigma2 / kernel_var) + iy_n
                        rec["truth_pop_noisy"], rec["truth_pop_noisy_err"] = v, e
                        rec["truth_sample"] = truths[kernel_var][q]
                        rec["truth_sample_err"] = truths[kernel_var][q + "_se"]
                    else:
                        rec["truth_pop_noisy"] = rec["truth_pop_noisy_err"] = math.nan
                        rec["truth_sample"] = rec["truth_sample_err"] = math.nan
                    out.append(rec)
    return pd.DataFrame(out)


def default_specs(quick: bool = False) -> list[MixtureSpec]:
    """The benchmark grid. D from 10 to 262,144; (N, K) = (65, 4), (670, 4), (670, 64) (the
    paper's probe sets: 65 test images, 605/670 training images, K-means K = 64); two separations:
    "near" (snr = 4: class means 2 within-class standard deviations apart, population
    I(Y;M) well below log2 K) and "far" (snr = max(64, D): the between-class squared distance is
    at least half the within-class one, so the classes are visible in the distances at every D;
    population I(Y;M) = log2 K). K = 64 starts at D = 64 instead of 10 (the K class means are
    orthogonal). ``quick``: D in (10, 262,144) and (N, K) = (65, 4) only."""
    dims = (10, 262_144) if quick else (10, 1024, 16_384, 262_144)
    nks = ((65, 4),) if quick else ((65, 4), (670, 4), (670, 64))
    out = []
    for n, k in nks:
        for dim in sorted({max(d, k) for d in dims}):  # orthogonal class means need D >= K (64 for K = 64)
            for snr in (4.0, float(max(64, dim))):
                out.append(MixtureSpec(dim=dim, n=n, k=k, snr=snr))
    return out


def summarize(frame: pd.DataFrame, truth: str = "truth_pop") -> pd.DataFrame:
    """Bias and spread of each estimator against one truth column, per spec, setting and quantity:
    ``truth`` (mean over draws), ``truth_err`` (largest error), ``estimate`` (mean), ``spread``
    (sd over draws), ``bias`` (mean of estimate - truth), ``rmse``, ``ceiling`` (log2 N or H(Y)),
    ``baseline`` (mean label-permutation estimate of I(Y;M)), ``draws``."""
    keys = ["dim", "n", "k", "snr", "estimator", "setting", "quantity"]
    f = frame[np.isfinite(frame[truth])].copy()
    f["err"] = f["estimate"] - f[truth]
    g = f.groupby(keys, sort=False)
    res = pd.DataFrame({
        "truth": g[truth].mean(),
        "truth_err": g[truth + "_err"].max(),
        "estimate": g["estimate"].mean(),
        "spread": g["estimate"].std(ddof=1),
        "bias": g["err"].mean(),
        "rmse": g["err"].apply(lambda e: float(np.sqrt(np.mean(np.square(e))))),
        "ceiling": g["ceiling"].mean(),
        "baseline": g["baseline"].mean() if "baseline" in f else np.nan,
        "draws": g.size(),
    })
    return res.reset_index()
