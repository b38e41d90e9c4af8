"""One binned symbol: the probe engine (what a run stores) and the binning estimator's bin_codes
bin values exactly on a bin edge, and one ulp either side, the same way: floor(float32(m) /
float32(b)) in float32 (estimators.binning.bin_index), hashed with SHA-256 of the float32 bin
indices (estimators.binning.symbol_digests)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from infoflow.estimators import bin_codes, bin_index
from infoflow.probe import bin_symbol_ids, engine, pairwise_sq_dists

F32 = np.float32


def dense(keys) -> np.ndarray:
    ids: dict = {}
    return np.array([ids.setdefault(k, len(ids)) for k in keys], dtype=np.int64)


def edge_values(bin_size: float, ks) -> tuple[np.ndarray, np.ndarray]:
    """For each k: the float32 value k * b (computed in float32) and its two float32 neighbours,
    with the definition's bin index of each: floor(v / b) in float32."""
    b32 = F32(bin_size)
    vals = []
    for k in ks:
        v = F32(k) * b32
        vals += [np.nextafter(v, F32(-np.inf)), v, np.nextafter(v, F32(np.inf))]
    v = np.array(vals, dtype=np.float32)
    return v, np.floor(v / b32)


@pytest.mark.parametrize("bin_size", [0.25, 0.1])
def test_edge_and_one_ulp_either_side_same_bin_in_both_paths(bin_size: float) -> None:
    ks = [1, 3, 7, 9, 14, 18, 19, 23, -7, -9]
    v, want = edge_values(bin_size, ks)
    if bin_size == 0.25:  # a dyadic bin: k * b is exactly on the edge, one ulp below is the bin below
        np.testing.assert_array_equal(want.reshape(-1, 3), [[k - 1, k, k] for k in ks])
    else:  # 0.1: the float64 division the estimator used to do puts some of these in another bin
        old = np.floor(v.astype(np.float64) / bin_size)
        assert (old != want).sum() >= 5
    # the one definition, from numpy float32, float64 and torch inputs
    np.testing.assert_array_equal(bin_index(v, bin_size=bin_size), want)
    np.testing.assert_array_equal(bin_index(v.astype(np.float64), bin_size=bin_size), want)
    np.testing.assert_array_equal(bin_index(torch.from_numpy(v), bin_size=bin_size), want)

    # samples: one column per tested value, every sample a copy of the same row except one value
    # moved to a neighbour (so rows lie a hair apart and the engine has to hash them)
    n_cols = v.size
    rows, keys = [], []
    base = v.copy()
    for c in range(n_cols):
        for delta in (-1, 0, 1):
            j = (c // 3) * 3 + 1 + delta  # the edge value of this k or a neighbour
            r = base.copy()
            r[c] = v[j]
            rows.append(r)
            keys.append(tuple(np.floor(r / F32(bin_size)).tolist()))
    acts = np.stack(rows).astype(np.float32)
    expected = dense(keys)
    assert len(set(expected.tolist())) > 1
    est = bin_codes(acts, bin_size=bin_size)
    probe = bin_symbol_ids(acts, pairwise_sq_dists(acts), bin_size)
    np.testing.assert_array_equal(est, expected)
    np.testing.assert_array_equal(probe, expected)


def test_engine_hashes_with_the_estimators_symbol(monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine's digests are the estimator module's functions (no second definition)."""
    from infoflow.estimators import binning

    calls: list[int] = []
    real = binning.symbol_digests
    monkeypatch.setattr(engine, "symbol_digests", lambda q: calls.append(len(q)) or real(q))
    v, _ = edge_values(0.1, [7, 9])
    acts = np.tile(v, (6, 1)).astype(np.float32)
    acts[3, 1] = v[0]  # one value one ulp below the edge: another bin
    ids = bin_symbol_ids(acts, pairwise_sq_dists(acts), 0.1)
    np.testing.assert_array_equal(ids, bin_codes(acts, bin_size=0.1))
    assert sum(calls) > 0
