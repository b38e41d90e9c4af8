"""Synthetic nuclei: contract, determinism, both modalities, speed, and 'the nuclei are visible'."""

from __future__ import annotations


import numpy as np
import pytest

from infoflow.data import make_synthetic, modality_of
from infoflow.errors import DataError


@pytest.fixture(scope="module")
def synth():
    return make_synthetic(48, size=64, seed=0)


def test_contract(synth) -> None:
    a = synth
    assert a.images.shape == (48, 3, 64, 64) and a.images.dtype == np.float32
    assert a.masks.shape == (48, 1, 64, 64) and a.masks.dtype == np.float32
    assert a.images.min() >= 0.0 and a.images.max() <= 1.0
    assert set(np.unique(a.masks)) == {0.0, 1.0}
    assert a.ids == sorted(a.ids) and len(set(a.ids)) == 48 and a.source == "synthetic"
    per_image = a.masks.mean(axis=(1, 2, 3))
    assert per_image.min() > 0.0  # every image has at least one nucleus
    assert 0.03 < per_image.mean() < 0.35


@pytest.mark.parametrize("seed", [0, 7])
def test_deterministic(seed: int) -> None:
    a, b = make_synthetic(12, size=32, seed=seed), make_synthetic(12, size=32, seed=seed)
    assert a.ids == b.ids and np.array_equal(a.images, b.images) and np.array_equal(a.masks, b.masks)
    prefix = make_synthetic(5, size=32, seed=seed)  # image i depends only on (seed, i)
    assert np.array_equal(prefix.images, a.images[:5]) and prefix.ids == a.ids[:5]


def test_different_seed_differs() -> None:
    a, b = make_synthetic(8, size=32, seed=0), make_synthetic(8, size=32, seed=1)
    assert not np.array_equal(a.images, b.images) and not np.array_equal(a.masks, b.masks)


def test_both_modalities_look_their_part(synth) -> None:
    mods = np.array([modality_of(i) for i in synth.ids])
    assert set(mods) == {"fluo", "bf"}
    for k, m in enumerate(mods):
        img, mask = synth.images[k], synth.masks[k, 0] > 0
        bg, fg = img[:, ~mask].mean(axis=1), img[:, mask].mean(axis=1)
        if m == "fluo":  # grey, dark background, brighter nuclei
            assert np.array_equal(img[0], img[1]) and np.array_equal(img[0], img[2])
            assert bg.mean() < 0.15 and fg.mean() > bg.mean() + 0.03
        else:  # coloured light background, darker purple-ish nuclei
            assert not np.array_equal(img[0], img[1])
            assert bg.mean() > 0.6 and fg.mean() < bg.mean() - 0.1
            assert fg[2] > fg[1]  # blue above green: purple


def test_counts_vary_and_nuclei_touch_sometimes() -> None:
    from scipy import ndimage

    from infoflow.data import synthetic

    a = make_synthetic(40, size=128, seed=3)
    counts = [ndimage.label(m[0])[1] for m in a.masks]  # touching nuclei count once
    assert min(counts) <= 5 and max(counts) >= 15  # 1..~40 nuclei, varied
    sizes = a.masks.sum(axis=(1, 2, 3)) / np.maximum(counts, 1)
    assert sizes.max() / sizes.min() > 3  # varied nucleus sizes
    rng = np.random.default_rng(0)
    drawn, touching = [], 0
    for _ in range(40):
        shapes = synthetic._shapes(rng, 128)
        drawn.append(len(shapes))
        c = np.array([s[:2] for s in shapes])
        r = np.array([0.5 * (s[2] + s[3]) for s in shapes])
        d = np.hypot(*(c[:, None] - c[None]).transpose(2, 0, 1))
        touching += int(((d < 1.05 * (r[:, None] + r[None])) & ~np.eye(len(r), dtype=bool)).any())
    assert min(drawn) >= 1 and max(drawn) <= 40 and max(drawn) >= 25
    assert 5 <= touching < 40  # some images have touching nuclei, not all


@pytest.mark.parametrize("n,size", [(0, 32), (4, 4)])
def test_bad_arguments(n: int, size: int) -> None:
    with pytest.raises(DataError):
        make_synthetic(n, size=size, seed=0)
