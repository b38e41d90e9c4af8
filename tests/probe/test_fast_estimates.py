"""The estimates from the probe's distances equal those from float64 distances, to 1e-4 bits.

The probe's distances come from float32 products over short column blocks added in float64
(pairs the error model cannot vouch for are recomputed in float64); they are accurate to a
relative 1e-4 per pair under that model, and the estimates are what must not move. On the
paper-scale U-Net's activations of real DSB 2018 images (every probe layer, untrained and with
weights scaled as after training, with an exact and a near duplicate image) and on hard cases,
the KDE I(X;M) and I(Y;M) at the widths the runs use (fixed noise variances 0.2 and 1.0,
``rel:0.1``, ``rel:1``, ``silverman``) and the binning estimates, computed from what the run stores
(float32), agree with the same estimates from float64 distances (pair-by-pair float64
differences) to 1e-4 bits.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_full_size_estimates import BIN, N, TOL, direct_codes, dsb_images, exact  # noqa: F401 (a fixture)

from infoflow.estimators import estimate_layers
from infoflow.probe import bin_symbol_ids, capture, pairwise_sq_dists, probe_layers

WIDTHS = ("fixed:0.2", "fixed:1.0", "rel:0.1", "rel:1", "silverman")


def _table(dists: np.ndarray, codes: np.ndarray, names: list[str], dims: list[int], labels: np.ndarray):
    return estimate_layers(dists, names=names, dims=dims, epoch=1, labelings={"y": labels},
                           bin_codes={BIN: codes}, estimators=("kde", "bin"), kernels=WIDTHS)


def max_mi_difference(acts: dict[str, np.ndarray], dist: np.ndarray, codes: np.ndarray, labels: np.ndarray) -> float:
    """Largest |difference| (bits) of any I(X;M) or I(Y;M), over layers, estimators and widths,
    between the estimates from ``dist`` stored as float32 and from float64 distances."""
    names = list(acts)
    dims = [int(np.prod(a.shape[1:])) for a in acts.values()]
    ref_codes = np.stack([direct_codes(a, BIN) for a in acts.values()])
    np.testing.assert_array_equal(codes, ref_codes)
    got = _table(dist.astype(np.float32), codes, names, dims, labels)
    want = _table(np.stack([exact(a) for a in acts.values()]), ref_codes, names, dims, labels)
    key = ["layer", "estimator", "setting", "labels", "quantity"]
    merged = got.merge(want, on=key, suffixes=("_got", "_want"), validate="one_to_one")
    assert len(merged) == len(got) == len(want)
    mi = merged[merged["quantity"].isin(["I_XM", "I_YM"])]
    assert set(mi["estimator"]) == {"kde_upper", "kde_lower", "bin"}
    assert {"fixed:0.2", "fixed:1.0", "rel:0.1", "rel:1.0", "silverman:1.0"} <= set(mi["setting"])
    diff = (mi["value_got"] - mi["value_want"]).abs()
    worst = mi.loc[diff.idxmax()]
    print(f"max |I - I_float64| = {diff.max():.2e} bits at {dict(worst[key])}")
    return float(diff.max())


@pytest.mark.parametrize("weights", ["untrained", "scaled"])
def test_every_probe_layer_on_dsb_images(dsb_images, weights: str) -> None:  # noqa: F811 (the fixture)
    """Model 1 at the paper's scale on 40 real DSB images, all 23 probe layers."""
    from infoflow.estimators import kmeans_labels
    from infoflow.models import build_model

    images, masks = dsb_images
    images = images.copy()
    images[N - 1] = images[N - 2]  # an exact duplicate
    rng = np.random.default_rng(0)
    images[N - 3] = np.clip(images[N - 4] + 1e-4 * rng.standard_normal(images[0].shape), 0, 1)  # a near one
    torch.manual_seed(0)
    model = build_model(model=1, width=16).eval()
    if weights == "scaled":  # activations far apart, as after training
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, torch.nn.Conv2d):
                    m.weight.mul_(3.0)
    layers = list(model.probe_modules())
    res = probe_layers(model, images, layers, batch_size=16, memory_budget_bytes=2**30, bin_sizes=(BIN,))
    with torch.no_grad(), capture(model, layers) as cap:
        for s in range(0, N, 16):
            model(torch.from_numpy(images[s : s + 16]))
    acts = {n: cap.cat(n).reshape(N, -1).numpy() for n, _ in layers}
    labels = kmeans_labels(masks, masks, k=4, seed=0)
    assert max_mi_difference(acts, res.dist, res.codes[BIN], labels) <= TOL
    tiers = {k: sum(st[k] for st in res.dist_stats) for k in ("gram32", "gram64", "direct")}
    assert tiers["gram32"] > 0 and tiers["gram64"] + tiers["direct"] > 0  # both paths were taken


def test_hard_cases() -> None:
    """D = 262,144: a common offset of 1000 with small noise, exact and near duplicates at
    several scales, a widely spread group, and heavy tails."""
    rng = np.random.default_rng(17)
    d = 262_144
    a = (1000.0 + 0.05 * rng.standard_normal((N, d))).astype(np.float32)
    a[1] = a[0]  # exact duplicate
    a[2] = a[0]
    a[2, :3] += np.float32(1e-3)  # differs in 3 coordinates
    a[4] = a[3] + (1e-3 * rng.standard_normal(d)).astype(np.float32)  # close everywhere
    a[6] = a[5] + (0.02 * rng.standard_normal(d)).astype(np.float32)
    a[8] = a[7] + (0.005 * rng.standard_normal(d)).astype(np.float32)
    a[20:] += (rng.uniform(0.1, 2.0, (N - 20, 1)) * rng.standard_normal((N - 20, d))).astype(np.float32)
    heavy = rng.standard_cauchy((N, d)).astype(np.float32)
    heavy[11] = heavy[10] + np.float32(1e-3) * heavy[10]
    acts = {"offset": a, "offset_x2": (a * np.float32(2)).astype(np.float32), "cauchy": heavy}
    stats: list[dict] = [{} for _ in acts]
    dist = np.stack([pairwise_sq_dists(x, stats=st) for x, st in zip(acts.values(), stats)])
    codes = np.stack([bin_symbol_ids(x, dm, BIN) for x, dm in zip(acts.values(), dist)])
    labels = np.arange(N) % 4
    assert max_mi_difference(acts, dist, codes, labels) <= TOL
    assert all(st["gram32"] > 0 for st in stats) and stats[0]["gram64"] + stats[0]["direct"] > 0
