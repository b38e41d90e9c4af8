"""pairwise_sq_dists(): accurate squared distances, checked against float64 direct sums."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from infoflow.errors import ProbeError
from infoflow.probe import DEFAULT_NEAR, near_for, pairwise_sq_dists

NEAR = 400.0


def exact(a: np.ndarray) -> np.ndarray:
    """Reference: sum_k (a_ik - a_jk)^2 with float64 differences and sums, pair by pair."""
    a64 = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    n = len(a64)
    out = np.zeros((n, n))
    for i in range(n - 1):
        diff = a64[i + 1 :] - a64[i]
        out[i, i + 1 :] = np.einsum("ij,ij->i", diff, diff)
    return out + out.T


def check(d: np.ndarray, ref: np.ndarray, near: float = NEAR, near_tol: float = 1e-9, far_tol: float = 1e-5) -> None:
    n = len(ref)
    assert d.dtype == np.float64 and d.shape == (n, n)
    assert np.array_equal(d, d.T)
    assert np.all(np.diag(d) == 0)
    assert np.all(d >= 0)
    iu = np.triu_indices(n, 1)
    got, want = d[iu], ref[iu]
    close = want < near
    zero = want == 0
    assert np.all(got[zero] == 0)
    rel = np.abs(got - want) / np.where(zero, 1.0, want)
    if close.any():
        assert rel[close].max() <= near_tol, rel[close].max()
    if (~close).any():
        assert rel[~close].max() <= far_tol, rel[~close].max()


@pytest.fixture(scope="module")
def offset_hard() -> np.ndarray:
    """N = 40, D = 262,144: offset 1000 + small noise, with near duplicates and exact duplicates."""
    rng = np.random.default_rng(0)
    n, d = 40, 262_144
    a = (1000.0 + 0.05 * rng.standard_normal((n, d))).astype(np.float32)
    a[1] = a[0]
    a[1, :3] += np.float32(1e-3)  # differs in 3 coordinates by ~1e-3
    a[2] = a[0]
    a[2, 12345] -= np.float32(1e-3)
    a[3] = a[0]  # exact duplicate
    a[5] = a[4] + (1e-3 * rng.standard_normal(d)).astype(np.float32)  # close everywhere
    a[7] = a[6] + (0.02 * rng.standard_normal(d)).astype(np.float32)  # d ~ 100 < near
    return a


def test_offset_and_near_duplicates_at_full_size(offset_hard: np.ndarray) -> None:
    a = offset_hard
    before = a.copy()
    stats: dict = {}
    d = pairwise_sq_dists(a, near=NEAR, stats=stats)
    ref = exact(a)
    check(d, ref)
    assert np.array_equal(a, before)  # input untouched
    assert d[0, 3] == 0.0
    assert 0 < d[0, 2] < 1e-5 and 0 < d[0, 1] < 1e-5
    assert stats["pairs"] == 40 * 39 // 2
    assert stats["gram32"] + stats["gram64"] + stats["direct"] == stats["pairs"]
    n_near = int((ref[np.triu_indices(40, 1)] < NEAR).sum())
    assert stats["gram64"] + stats["direct"] >= n_near  # no near pair from the float32 Gram
    # the case is hard: the textbook float32 Gram formula is useless here
    t = torch.from_numpy(a)
    g = (t @ t.T).double()
    naive = (torch.diag(g)[:, None] + torch.diag(g)[None] - 2 * g).numpy()
    iu = np.triu_indices(40, 1)
    assert np.max(np.abs(naive[iu] - ref[iu]) / np.maximum(ref[iu], 1e-300)) > 0.5


def test_tier2_rounds_and_direct_fallback(monkeypatch) -> None:
    """A tight cluster of near duplicates inside a broad set: the first float64 Gram (norms of
    the whole set) cannot vouch for the cluster's pairs; a second round, recentred on the
    cluster, can. With one round they take the direct float64 sums. Exact either way."""
    from infoflow.probe import distances

    rng = np.random.default_rng(9)
    n, d = 40, 20_000
    a = (1000.0 + 5.0 * rng.standard_normal((n, d))).astype(np.float32)
    a[30:] = a[29] + (1e-3 * rng.standard_normal((10, d))).astype(np.float32)  # 11 near duplicates
    ref = exact(a)
    direct = {}
    for rounds in (1, 3):
        monkeypatch.setattr(distances, "_TIER2_ROUNDS", rounds)
        stats: dict = {}
        # near above every distance: no float32 pair, the first float64 Gram spans all rows
        check(pairwise_sq_dists(a, near=1e9, stats=stats), ref, near=1e9)
        assert stats["gram32"] == 0 and stats["gram64"] + stats["direct"] == stats["pairs"]
        direct[rounds] = stats["direct"]
    assert direct[1] >= 55 and direct[3] == 0  # the cluster's 11 * 10 / 2 pairs


def test_small_values_near_duplicates_and_float64_tiers() -> None:
    rng = np.random.default_rng(1)
    n, d = 30, 20_000
    a = rng.standard_normal((n, d)).astype(np.float32)
    a[1] = a[0]
    a[1, [3, 7, 11]] += np.float32(1e-3)
    a[2] = a[0] * np.float32(1 + 1e-6)
    stats: dict = {}
    out = pairwise_sq_dists(a, stats=stats)
    check(out, exact(a))
    assert stats["gram64"] + stats["direct"] == 3  # the three close pairs among rows 0, 1, 2


def test_degenerate_layer_all_pairs_near_uses_float64_gram() -> None:
    """Every pair below `near` (a flat layer): tier 2 takes most, results still exact."""
    rng = np.random.default_rng(2)
    n, d = 50, 16_384
    a = (0.5 + 0.05 * rng.standard_normal((n, d))).astype(np.float32)  # d ~ 80 < near
    stats: dict = {}
    out = pairwise_sq_dists(a, near=NEAR, stats=stats)
    ref = exact(a)
    assert ref.max() < NEAR
    check(out, ref)
    assert stats["gram32"] == 0 and stats["gram64"] > stats["direct"]


def test_correlated_rows_and_heavy_tails() -> None:
    rng = np.random.default_rng(3)
    n, d = 30, 50_000
    base = rng.standard_normal(d)
    a = (base + 0.05 * rng.standard_normal((n, d)) * rng.uniform(0.5, 2, (n, 1))).astype(np.float32)
    check(pairwise_sq_dists(a, near=1.0), exact(a), near=1.0)
    h = rng.standard_cauchy((n, d)).astype(np.float32)
    check(pairwise_sq_dists(h, near=1.0), exact(h), near=1.0)


def test_permutation_covariance_and_input_types() -> None:
    rng = np.random.default_rng(4)
    a = (3.0 + rng.standard_normal((25, 6, 10, 10))).astype(np.float32)
    a[4] = a[9]
    a[5] = a[8] + np.float32(1e-3)
    d = pairwise_sq_dists(a)
    ref = exact(a)
    check(d, ref)
    perm = rng.permutation(25)
    dp = pairwise_sq_dists(a[perm])
    np.testing.assert_allclose(dp, d[np.ix_(perm, perm)], rtol=1e-9, atol=0)
    dt = pairwise_sq_dists(torch.from_numpy(a))
    np.testing.assert_allclose(dt, d, rtol=1e-9, atol=0)
    d64 = pairwise_sq_dists(a.astype(np.float64))
    check(d64, ref)
    check(pairwise_sq_dists(a, backend="numpy"), ref)
    ro = a.copy()
    ro.flags.writeable = False
    np.testing.assert_array_equal(pairwise_sq_dists(ro), d)


def test_near_zero_and_edge_shapes() -> None:
    rng = np.random.default_rng(5)
    a = rng.standard_normal((12, 300)).astype(np.float32)
    check(pairwise_sq_dists(a, near=0.0), exact(a), near=0.0)
    assert pairwise_sq_dists(a[:1]).shape == (1, 1)
    assert pairwise_sq_dists(np.zeros((0, 5), np.float32)).shape == (0, 0)
    np.testing.assert_array_equal(pairwise_sq_dists(np.ones((4, 7), np.float32)), np.zeros((4, 4)))


def test_errors() -> None:
    a = np.ones((3, 4), np.float32)
    a[1, 2] = np.nan
    with pytest.raises(ProbeError, match="NaN"):
        pairwise_sq_dists(a)
    with pytest.raises(ProbeError, match="shape"):
        pairwise_sq_dists(np.ones(5, np.float32))
    with pytest.raises(ProbeError, match="floating"):
        pairwise_sq_dists(np.ones((3, 3), np.int64))
    with pytest.raises(ProbeError, match="near"):
        pairwise_sq_dists(np.ones((3, 3), np.float32), near=-1)


def test_near_for() -> None:
    assert near_for([0.2, 1.0]) == 400.0
    assert near_for([0.2], factor=300) == pytest.approx(60.0)
    assert DEFAULT_NEAR == 400.0
    with pytest.raises(ProbeError):
        near_for([])


def test_pilot_skips_float32_tier_when_everything_is_near() -> None:
    rng = np.random.default_rng(6)
    n, d = 200, 2_000
    a = (0.2 * rng.standard_normal((n, d))).astype(np.float32)  # d ~ 160 < near for every pair
    a[7] = a[3]
    a[8] = a[3]
    a[8, 5] += np.float32(1e-3)
    stats: dict = {}
    out = pairwise_sq_dists(a, stats=stats)
    ref = exact(a)
    assert ref.max() < NEAR
    check(out, ref)
    assert stats["skipped_gram32"] and stats["gram32"] == 0


def test_pilot_keeps_float32_tier_for_far_rows() -> None:
    rng = np.random.default_rng(7)
    n, d = 200, 2_000
    a = (5.0 + rng.standard_normal((n, d))).astype(np.float32)  # d ~ 4000 > near, uncorrelated
    a[11] = a[10] + np.float32(1e-3)
    stats: dict = {}
    out = pairwise_sq_dists(a, stats=stats)
    check(out, exact(a))
    assert not stats["skipped_gram32"] and stats["gram32"] == stats["pairs"] - 1


def test_torch_code_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tensor code path used on CUDA, exercised on CPU tensors."""
    from infoflow.probe import distances

    monkeypatch.setattr(distances, "_FORCE_TORCH", True)
    rng = np.random.default_rng(8)
    a = (100.0 + rng.standard_normal((170, 3_000))).astype(np.float32)
    a[1] = a[0]
    a[2] = a[0]
    a[2, :4] += np.float32(1e-2)
    stats: dict = {}
    check(pairwise_sq_dists(torch.from_numpy(a), stats=stats), exact(a))
    assert stats["gram32"] > 0
    b = (0.1 * rng.standard_normal((170, 3_000))).astype(np.float32)
    b[3] = b[4]
    stats = {}
    check(pairwise_sq_dists(torch.from_numpy(b), stats=stats), exact(b))
    assert stats["skipped_gram32"]


def test_row_blocks_and_constant_columns() -> None:
    """Row blocks (the probe's per-batch outputs) give the same matrix as one array, bit for bit;
    columns equal in every row (dead units) are skipped and change nothing."""
    from infoflow.probe import distances

    rng = np.random.default_rng(10)
    n, d = 170, 3_000
    a = (0.3 * rng.standard_normal((n, d))).astype(np.float32)  # every pair near: float64 tiers
    a[:, 100:1100] = np.float32(0.7)  # 1000 constant columns
    a[:, 2000:2050] = 0.0
    a[3] = a[4]
    a[5] = a[4]
    a[5, 2500] += np.float32(1e-4)
    stats: dict = {}
    whole = pairwise_sq_dists(a, stats=stats)
    check(whole, exact(a))
    assert stats["columns"] == d - 1050
    blocks = [a[s : s + 32] for s in range(0, n, 32)]
    np.testing.assert_array_equal(pairwise_sq_dists(blocks), whole)
    np.testing.assert_array_equal(pairwise_sq_dists([torch.from_numpy(b) for b in blocks]), whole)
    rb = distances.RowBlocks(blocks).varying()
    assert rb.d == d - 1050 and rb.varying() is rb
    np.testing.assert_array_equal(pairwise_sq_dists(rb), whole)
    with pytest.raises(ProbeError, match="share D"):
        pairwise_sq_dists([a[:10], a[10:20, :-1]])
    with pytest.raises(ProbeError, match="no row blocks"):
        pairwise_sq_dists([])


def test_row_blocks_torch_code_path(monkeypatch: pytest.MonkeyPatch) -> None:
    from infoflow.probe import distances

    monkeypatch.setattr(distances, "_FORCE_TORCH", True)
    rng = np.random.default_rng(11)
    a = (0.1 * rng.standard_normal((180, 2_000))).astype(np.float32)
    a[:, :300] = 1.0
    a[7] = a[8]
    a[9] = a[8]
    a[9, 1000:1010] += np.float32(1e-4)
    stats: dict = {}
    got = pairwise_sq_dists([torch.from_numpy(a[s : s + 50]) for s in range(0, 180, 50)], stats=stats)
    check(got, exact(a))
    assert stats["columns"] == 1_700 and stats["skipped_gram32"]


def test_tier2_rounds_recentre_each_group_of_near_duplicates(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two separate tight groups inside a broad set: the second round centres each group on one of
    its rows with a Gram of its own rows only (11 and 9 rows, not 20), and every pair is exact."""
    from infoflow.probe import distances

    rng = np.random.default_rng(12)
    n, d = 60, 20_000
    a = (1000.0 + 5.0 * rng.standard_normal((n, d))).astype(np.float32)
    a[30:41] = a[29] + (1e-3 * rng.standard_normal((11, d))).astype(np.float32)  # group of 12
    a[50:59] = a[49] + (1e-3 * rng.standard_normal((9, d))).astype(np.float32)  # group of 10
    sizes: list[int] = []
    real = distances._Centered.__init__

    def spy(self, x, dtype, k, rows, mu):
        if dtype == torch.float64:
            sizes.append(x.n if rows is None else len(rows))
        real(self, x, dtype, k, rows, mu)

    monkeypatch.setattr(distances._Centered, "__init__", spy)
    stats: dict = {}
    check(pairwise_sq_dists(a, near=1e9, stats=stats), exact(a), near=1e9)
    assert stats["direct"] == 0 and stats["gram32"] == 0
    assert sizes[0] == n and sorted(sizes[1:]) == [10, 12]


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_thread_count_changes_nothing_beyond_the_error_model(threads: int) -> None:
    """The CPU passes deal column blocks to torch.get_num_threads() threads, each with its own
    sums: with 1, 2 or 3 threads every pair still meets the error model against exact float64,
    the varying columns are the same, and the result does not depend on the threads' timing."""
    rng = np.random.default_rng(13)
    n, d = 200, 40_000  # 20 float64 column blocks of 2,048: every thread gets several
    a = (2.0 + 0.05 * rng.standard_normal((n, d))).astype(np.float32)
    a[10] = a[11] + (1e-4 * rng.standard_normal(d)).astype(np.float32)
    a[12] = a[11]
    a[:, 5_000:9_000] = np.float32(0.25)  # constant columns
    ref = exact(a)
    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        blocks = [a[s : s + 32] for s in range(0, n, 32)]
        stats: dict = {}
        got = pairwise_sq_dists(blocks, stats=stats)
        again = pairwise_sq_dists(blocks)
    finally:
        torch.set_num_threads(prev)
    check(got, ref)
    np.testing.assert_array_equal(got, again)
    assert stats["columns"] == d - 4_000


@pytest.mark.parametrize("rows", [None, [0], [1, 5, 6], list(range(3, 40)), list(range(0, 50, 2))])
@pytest.mark.parametrize("cols", ["all", "runs", "sparse"])
@pytest.mark.parametrize("step", [1, 7])
def test_row_block_reads_match_fancy_indexing(rows, cols, step) -> None:
    """RowBlocks.read picks rows first or columns first by cost; both give x[rows][:, cols] - shift
    exactly (float32 in, float64 out, as the float64 tier reads)."""
    from infoflow.probe import distances

    rng = np.random.default_rng(14)
    n, d = 50, 3_000
    a = rng.standard_normal((n, d)).astype(np.float32)
    x = distances.RowBlocks([a[s : s + 16] for s in range(0, n, 16)])
    keep = {"all": np.arange(d), "runs": np.r_[10:900, 1000:2500],
            "sparse": np.sort(rng.choice(d, 400, replace=False))}[cols]
    if cols != "all":
        x = x.columns(keep)
    r = None if rows is None else np.asarray(rows)
    s, e = 5, len(keep) - 3
    shift = rng.standard_normal(len(keep))[s:e:step]
    want_cols = keep[s:e:step]
    want = a[:, want_cols] if r is None else a[r][:, want_cols]
    out = np.empty((n if r is None else len(r), len(want_cols)))
    x.read(x.plan(r), s, e, out, shift, step=step)
    np.testing.assert_array_equal(out, want.astype(np.float64) - shift)
