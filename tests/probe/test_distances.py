"""pairwise_sq_dists(): every pair within its tolerance of float64 direct sums.

The float32 tier is accepted under its working error model, the float64 tiers on rigorous bounds:
``gram_error=1e12`` makes the float32 tier vouch for nothing, so the float64 Gram and the direct
sums are checked alone against tight tolerances."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from infoflow.errors import ProbeError
from infoflow.probe import DEFAULT_NEAR, near_for, pairwise_sq_dists
from infoflow.probe.distances import DEFAULT_RTOL

NO32 = 1e12  # gram_error that leaves every pair to the float64 tiers


def exact(a: np.ndarray) -> np.ndarray:
    """Reference: sum_k (a_ik - a_jk)^2 with float64 differences and sums, pair by pair."""
    a64 = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    n = len(a64)
    out = np.zeros((n, n))
    for i in range(n - 1):
        diff = a64[i + 1 :] - a64[i]
        out[i, i + 1 :] = np.einsum("ij,ij->i", diff, diff)
    return out + out.T


def check(d: np.ndarray, ref: np.ndarray, rtol: float = DEFAULT_RTOL) -> None:
    """Symmetric, zero diagonal, never negative, zeros exact, every pair within relative rtol."""
    n = len(ref)
    assert d.dtype == np.float64 and d.shape == (n, n)
    assert np.array_equal(d, d.T)
    assert np.all(np.diag(d) == 0)
    assert np.all(d >= 0)
    iu = np.triu_indices(n, 1)
    got, want = d[iu], ref[iu]
    zero = want == 0
    assert np.all(got[zero] == 0)
    rel = np.abs(got - want) / np.where(zero, 1.0, want)
    assert rel.max() <= rtol, rel.max()


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
    d = pairwise_sq_dists(a, stats=stats)
    ref = exact(a)
    check(d, ref)
    assert np.array_equal(a, before)  # input untouched
    assert d[0, 3] == 0.0
    assert 0 < d[0, 2] < 1e-5 and 0 < d[0, 1] < 1e-5
    assert stats["pairs"] == 40 * 39 // 2
    assert stats["gram32"] + stats["gram64"] + stats["direct"] == stats["pairs"]
    assert stats["gram32"] > 0
    # the near duplicates (rows 0-3, 4-5) are far too close for the float32 tier
    assert stats["gram64"] + stats["direct"] >= 7
    # the case is hard: the textbook float32 Gram formula is useless here
    t = torch.from_numpy(a)
    g = (t @ t.T).double()
    naive = (torch.diag(g)[:, None] + torch.diag(g)[None] - 2 * g).numpy()
    iu = np.triu_indices(40, 1)
    assert np.max(np.abs(naive[iu] - ref[iu]) / np.maximum(ref[iu], 1e-300)) > 0.5
    # the float64 tiers alone, on their rigorous bounds, to a tight tolerance
    stats = {}
    check(pairwise_sq_dists(a, rtol=1e-10, gram_error=NO32, stats=stats), ref, rtol=1e-10)
    assert stats["gram32"] == 0 and stats["gram64"] > 0


def test_groups_of_near_duplicates_get_float64_grams_of_their_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two separate tight groups inside a broad set: the float32 tier cannot vouch for their
    pairs; each group (fewer rows than tier 2's float32 minimum) gets a float64 Gram of its own
    rows (12 and 10 rows, not all 60), shifted by one of them, and every pair is within the
    tolerance."""
    from infoflow.probe import distances

    rng = np.random.default_rng(12)
    n, d = 60, 20_000
    a = (1000.0 + 5.0 * rng.standard_normal((n, d))).astype(np.float32)
    a[30:41] = a[29] + (1e-3 * rng.standard_normal((11, d))).astype(np.float32)  # group of 12
    a[50:59] = a[49] + (1e-3 * rng.standard_normal((9, d))).astype(np.float32)  # group of 10
    sizes: list[int] = []
    real = distances._gram

    def spy(x, dtype, k, rows, shift, backend):
        if dtype == torch.float64:
            sizes.append(x.n if rows is None else len(rows))
        return real(x, dtype, k, rows, shift, backend)

    monkeypatch.setattr(distances, "_gram", spy)
    stats: dict = {}
    check(pairwise_sq_dists(a, stats=stats), exact(a))
    assert sorted(sizes) == [10, 12]
    assert stats["gram64"] == 12 * 11 // 2 + 10 * 9 // 2 and stats["direct"] == 0


def test_a_large_group_gets_a_float32_gram_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """A tight group of 70 rows (more than tier 2's float32 minimum, under half the rows) inside a
    broad set: tier 2 gives it a float32 Gram of its own rows, shifted by one of them, which
    vouches for all its pairs; nothing is left for float64."""
    from infoflow.probe import distances

    rng = np.random.default_rng(15)
    n, d = 200, 8_000
    a = (1000.0 + 5.0 * rng.standard_normal((n, d))).astype(np.float32)
    a[100:170] = a[99] + (1e-3 * rng.standard_normal((70, d))).astype(np.float32)  # a group of 71
    calls: list[tuple[torch.dtype, int]] = []
    real = distances._gram

    def spy(x, dtype, k, rows, shift, backend):
        calls.append((dtype, x.n if rows is None else len(rows)))
        return real(x, dtype, k, rows, shift, backend)

    monkeypatch.setattr(distances, "_gram", spy)
    stats: dict = {}
    check(pairwise_sq_dists(a, stats=stats), exact(a))
    assert calls == [(torch.float32, n), (torch.float32, 71)]
    assert stats["group32"] == 71 * 70 // 2 and stats["gram64"] == stats["direct"] == 0
    assert stats["gram32"] + stats["group32"] == stats["pairs"]


def test_direct_fallback_and_rigorous_float64_tiers() -> None:
    """With the float32 tier off and a tolerance below what a float64 Gram can vouch for, pairs
    go to the direct sums; every pair still meets the tolerance."""
    rng = np.random.default_rng(9)
    n, d = 40, 20_000
    a = (1000.0 + 5.0 * rng.standard_normal((n, d))).astype(np.float32)
    a[30:] = a[29] + (1e-3 * rng.standard_normal((10, d))).astype(np.float32)  # 11 near duplicates
    a[31] = a[30]
    a[31, 7] = np.nextafter(a[30, 7], np.float32(np.inf))  # one ulp apart
    ref = exact(a)
    stats: dict = {}
    check(pairwise_sq_dists(a, rtol=1e-10, gram_error=NO32, stats=stats), ref, rtol=1e-10)
    assert stats["gram32"] == 0 and stats["direct"] > 0 and stats["gram64"] > 0
    assert stats["gram64"] + stats["direct"] == stats["pairs"]
    stats = {}
    check(pairwise_sq_dists(a, stats=stats), ref)
    assert stats["gram32"] > 0


def test_small_values_near_duplicates() -> None:
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
    check(pairwise_sq_dists(a, rtol=1e-10, gram_error=NO32), exact(a), rtol=1e-10)


def test_flat_layer_every_distance_small() -> None:
    """Every distance far below the norms of the raw rows (a flat layer): the shift by a row
    of the data removes the offset, and the float32 tier vouches for most pairs."""
    rng = np.random.default_rng(2)
    n, d = 50, 16_384
    a = (0.5 + 0.05 * rng.standard_normal((n, d))).astype(np.float32)
    stats: dict = {}
    check(pairwise_sq_dists(a, stats=stats), exact(a))
    assert stats["gram32"] > 0.9 * stats["pairs"]


def test_correlated_rows_and_heavy_tails() -> None:
    rng = np.random.default_rng(3)
    n, d = 30, 50_000
    base = rng.standard_normal(d)
    a = (base + 0.05 * rng.standard_normal((n, d)) * rng.uniform(0.5, 2, (n, 1))).astype(np.float32)
    check(pairwise_sq_dists(a), exact(a))
    h = rng.standard_cauchy((n, d)).astype(np.float32)
    check(pairwise_sq_dists(h), exact(h))
    check(pairwise_sq_dists(h, rtol=1e-10, gram_error=NO32), exact(h), rtol=1e-10)


def test_permutation_covariance_and_input_types() -> None:
    rng = np.random.default_rng(4)
    a = (3.0 + rng.standard_normal((25, 6, 10, 10))).astype(np.float32)
    a[4] = a[9]
    a[5] = a[8] + np.float32(1e-3)
    d = pairwise_sq_dists(a)
    ref = exact(a)
    check(d, ref)
    perm = rng.permutation(25)
    check(pairwise_sq_dists(a[perm]), ref[np.ix_(perm, perm)])
    np.testing.assert_array_equal(pairwise_sq_dists(torch.from_numpy(a)), d)
    check(pairwise_sq_dists(a.astype(np.float64)), ref)
    check(pairwise_sq_dists(a.astype(np.float64), rtol=1e-10, gram_error=NO32), ref, rtol=1e-10)
    check(pairwise_sq_dists(a, backend="numpy"), ref)
    check(pairwise_sq_dists(a, backend="torch"), ref)
    ro = a.copy()
    ro.flags.writeable = False
    np.testing.assert_array_equal(pairwise_sq_dists(ro), d)
    # near is accepted and changes nothing
    np.testing.assert_array_equal(pairwise_sq_dists(a, near=1.0), d)


def test_edge_shapes() -> None:
    rng = np.random.default_rng(5)
    a = rng.standard_normal((12, 300)).astype(np.float32)
    check(pairwise_sq_dists(a), exact(a))
    assert pairwise_sq_dists(a[:1]).shape == (1, 1)
    assert pairwise_sq_dists(np.zeros((0, 5), np.float32)).shape == (0, 0)
    np.testing.assert_array_equal(pairwise_sq_dists(np.ones((4, 7), np.float32)), np.zeros((4, 4)))
    b = a[:2].copy()
    b[1] = b[0]
    np.testing.assert_array_equal(pairwise_sq_dists(b), np.zeros((2, 2)))


def test_errors() -> None:
    a = np.ones((3, 4), np.float32)
    a[1, 2] = np.nan
    with pytest.raises(ProbeError, match="NaN"):
        pairwise_sq_dists(a)
    b = np.zeros((300, 4), np.float32)
    b[:, 0] = np.arange(300)
    b[250, 3] = np.inf  # outside the rows the shift is chosen from
    with pytest.raises(ProbeError, match="NaN"):
        pairwise_sq_dists(b)
    with pytest.raises(ProbeError, match="shape"):
        pairwise_sq_dists(np.ones(5, np.float32))
    with pytest.raises(ProbeError, match="floating"):
        pairwise_sq_dists(np.ones((3, 3), np.int64))
    with pytest.raises(ProbeError, match="near"):
        pairwise_sq_dists(np.ones((3, 3), np.float32), near=-1)
    with pytest.raises(ProbeError, match="rtol"):
        pairwise_sq_dists(np.ones((3, 3), np.float32), rtol=0)


def test_near_for() -> None:
    assert near_for([0.2, 1.0]) == 400.0
    assert near_for([0.2], factor=300) == pytest.approx(60.0)
    assert DEFAULT_NEAR == 400.0
    with pytest.raises(ProbeError):
        near_for([])


def test_shift_is_a_row_of_the_dense_part() -> None:
    """A tight majority far from a spread minority: tier 1 is shifted by a row of the majority, so
    the majority's mutual distances are not swamped by their norms and the float32 tier vouches
    for all of them and for the pairs across (shifted by the mean, the majority's norms would be
    ~30 x their distances and none of their pairs would pass)."""
    from infoflow.probe import distances

    rng = np.random.default_rng(7)
    n, d = 200, 4_000
    a = (rng.standard_normal((n, d))).astype(np.float32)  # the majority: d ~ 8000
    a[150:] += (30.0 + 5.0 * rng.standard_normal((50, d))).astype(np.float32)  # far, spread minority
    x = distances.RowBlocks.of(a).varying()
    assert distances._anchor(x) < 150
    stats: dict = {}
    check(pairwise_sq_dists(a, stats=stats), exact(a))
    assert stats["gram32"] >= 150 * 149 // 2 + 150 * 50


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
    assert stats["gram32"] > 0 and stats["gram64"] > 0
    b = (0.1 * rng.standard_normal((170, 3_000))).astype(np.float32)
    b[3] = b[4]
    b[5] = b[4]
    b[5, 17] += np.float32(1e-6)
    stats = {}
    check(pairwise_sq_dists(torch.from_numpy(b), rtol=1e-10, gram_error=NO32, stats=stats), exact(b), rtol=1e-10)
    assert stats["gram64"] > 0 and stats["gram32"] <= 1  # at most an exact duplicate of the shift row


def test_row_blocks_and_constant_columns() -> None:
    """Row blocks (the probe's per-batch outputs) give the same matrix as one array, bit for bit;
    columns equal in every row (dead units) are skipped and change nothing."""
    from infoflow.probe import distances

    rng = np.random.default_rng(10)
    n, d = 170, 3_000
    a = (0.3 * rng.standard_normal((n, d))).astype(np.float32)
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
    assert stats["columns"] == 1_700 and stats["gram64"] >= 3


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_thread_count_changes_nothing_beyond_the_error_model(threads: int) -> None:
    """The CPU passes deal column blocks to torch.get_num_threads() threads, each with its own
    sums: with 1, 2 or 3 threads every pair still meets the tolerance against exact float64,
    the varying columns are the same, and the result does not depend on the threads' timing."""
    rng = np.random.default_rng(13)
    n, d = 200, 40_000  # 36 float32 column blocks of 1,024: every thread gets several
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
        tight = pairwise_sq_dists(blocks, rtol=1e-10, gram_error=NO32)
    finally:
        torch.set_num_threads(prev)
    check(got, ref)
    check(tight, ref, rtol=1e-10)
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
