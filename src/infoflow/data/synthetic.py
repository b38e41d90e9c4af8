"""Synthetic nuclei images: a seeded, fast stand-in for DSB 2018 (tests, demos, CPU runs).

Two modalities, as in DSB 2018:

- ``fluo`` (fluorescence-like): dark background, bright nuclei of varied brightness (some barely
  above the background), a few small bright debris spots that are not nuclei; grey, repeated to
  3 channels.
- ``bf`` (bright-field / stained-tissue-like): a light, coloured background with pink cytoplasm
  blobs, darker purple-ish nuclei in RGB.

Each image has 1..40 nuclei of varied size, elliptical and irregular (a few angular harmonics on
the boundary), sometimes touching (a nucleus placed against a previous one); then blur and noise.
The mask is the union of the nuclei, exact 0/1. Image ``i`` depends only on ``(seed, i)``
(``SeedSequence(seed).spawn``), so ``make_synthetic(10, ...)`` is the prefix of
``make_synthetic(20, ...)``. Ids are ``synth-00000-fluo`` / ``synth-00001-bf``: sorted in index
order, and they name the modality.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..errors import DataError
from .arrays import SegArrays

MODALITIES = ("fluo", "bf")
P_FLUO = 0.6  # DSB 2018 stage 1 is mostly fluorescence


def make_synthetic(n: int, *, size: int = 128, seed: int = 0) -> SegArrays:
    """``n`` synthetic nuclei images at ``size`` x ``size``, deterministic in ``seed``."""
    if int(n) < 1:
        raise DataError(f"synthetic data: n must be >= 1, got {n}")
    if int(size) < 8:
        raise DataError(f"synthetic data: size must be >= 8, got {size}")
    n, size = int(n), int(size)
    images = np.empty((n, 3, size, size), dtype=np.float32)
    masks = np.empty((n, 1, size, size), dtype=np.float32)
    ids: list[str] = []
    children = np.random.SeedSequence(int(seed)).spawn(n)
    for i, ss in enumerate(children):
        rng = np.random.default_rng(ss)
        modality = "fluo" if rng.random() < P_FLUO else "bf"
        img, mask = _one_image(rng, size, modality)
        images[i] = img
        masks[i, 0] = mask
        ids.append(f"synth-{i:05d}-{modality}")
    meta = {
        "kind": "synthetic",
        "size": size,
        "seed": int(seed),
        "n": n,
        "mask_rule": "exact",
        "image_rule": "synthetic",
    }
    return SegArrays(images=images, masks=masks, ids=ids, source="synthetic", meta=meta)


def modality_of(sample_id: str) -> str:
    """The modality ("fluo" or "bf") of a synthetic sample, from its id."""
    return sample_id.rsplit("-", 1)[-1]


# -- internals ---------------------------------------------------------------------------------


def _shapes(rng: np.random.Generator, size: int) -> list[tuple[float, ...]]:
    """Nuclei as (cy, cx, a, b, theta, c2, p2, c3, p3, c4, p4) in pixels / radians."""
    scale = size / 128.0
    k = int(np.clip(1 + rng.poisson(rng.uniform(2.0, 28.0)), 1, 40))
    r0 = rng.uniform(3.0, 9.5) * scale  # typical radius of this image
    r0 = max(r0, 1.6)
    shapes: list[tuple[float, ...]] = []
    for j in range(k):
        r = max(r0 * rng.uniform(0.7, 1.35), 1.5)
        ecc = rng.uniform(0.0, 0.45)
        a, b = r * (1 + ecc), r / (1 + ecc)
        theta = rng.uniform(0, np.pi)
        if shapes and rng.random() < 0.3:  # touching a previous nucleus
            cy0, cx0, a0, b0 = shapes[rng.integers(len(shapes))][:4]
            ang = rng.uniform(0, 2 * np.pi)
            dist = (0.5 * (a0 + b0) + 0.5 * (a + b)) * rng.uniform(0.8, 1.0)
            cy, cx = cy0 + dist * np.sin(ang), cx0 + dist * np.cos(ang)
        else:
            cy, cx = rng.uniform(-0.02, 1.02, size=2) * (size - 1)
        harm = rng.uniform(0, 1, size=6) * np.array([0.12, 2 * np.pi, 0.07, 2 * np.pi, 0.05, 2 * np.pi])
        if rng.random() < 0.5:  # half of them nearly elliptical
            harm[0::2] *= 0.3
        shapes.append((cy, cx, a, b, theta, *harm))
    return shapes


def _rasterise(shapes, size: int, rng: np.random.Generator):
    """Soft coverage (for the image), hard mask (the labels) and a per-nucleus value map."""
    cover = np.zeros((size, size), np.float32)
    mask = np.zeros((size, size), bool)
    level = np.zeros((size, size), np.float32)  # per-nucleus intensity factor where covered
    radial = np.zeros((size, size), np.float32)  # 0 at the centre, 1 at the boundary
    for cy, cx, a, b, theta, c2, p2, c3, p3, c4, p4 in shapes:
        ext = a * (1 + c2 + c3 + c4) + 2.0
        y0, y1 = max(int(np.floor(cy - ext)), 0), min(int(np.ceil(cy + ext)) + 1, size)
        x0, x1 = max(int(np.floor(cx - ext)), 0), min(int(np.ceil(cx + ext)) + 1, size)
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        dy, dx = yy - cy, xx - cx
        ct, st = np.cos(theta), np.sin(theta)
        u, v = (dx * ct + dy * st) / a, (-dx * st + dy * ct) / b
        rho = np.sqrt(u * u + v * v)
        phi = np.arctan2(v, u)
        edge = 1 + c2 * np.cos(2 * phi + p2) + c3 * np.cos(3 * phi + p3) + c4 * np.cos(4 * phi + p4)
        # signed distance to the boundary in pixels (approximately), > 0 inside
        sd = (edge - rho) * 0.5 * (a + b)
        soft = np.clip(sd + 0.5, 0.0, 1.0)
        inside = sd >= 0
        if not inside.any():
            continue
        lv = rng.uniform(0.35, 1.0)
        box = (slice(y0, y1), slice(x0, x1))
        new = soft > cover[box]
        cover[box] = np.where(new, soft, cover[box])
        level[box] = np.where(new, lv, level[box])
        radial[box] = np.where(new, np.clip(rho / np.maximum(edge, 1e-3), 0, 1), radial[box])
        mask[box] |= inside
    return cover, mask, level, radial


def _smooth_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    z = ndimage.gaussian_filter(rng.standard_normal((size, size)).astype(np.float32), sigma, mode="wrap")
    return z / (z.std() + 1e-6)


def _low_freq(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth field in about [-1, 1] (illumination, tissue)."""
    coarse = rng.uniform(-1, 1, size=(4, 4)).astype(np.float32)
    return ndimage.zoom(coarse, size / 4.0, order=1, mode="nearest", grid_mode=True)[:size, :size]


def _one_image(rng: np.random.Generator, size: int, modality: str):
    shapes = _shapes(rng, size)
    cover, mask, level, radial = _rasterise(shapes, size, rng)
    texture = _smooth_noise(rng, size, max(0.8, size / 128.0))
    scale = size / 128.0
    if modality == "fluo":
        bg = rng.uniform(0.0, 0.08) + 0.03 * _low_freq(rng, size) * rng.uniform(0, 1)
        bright = rng.uniform(0.3, 0.9)
        profile = 1.0 - 0.35 * radial**2  # brighter centre
        nuc = bright * level * profile * (1.0 + rng.uniform(0.05, 0.25) * texture)
        img = bg + cover * np.maximum(nuc - bg, 0.0)
        # debris: small bright spots that are not nuclei
        for _ in range(int(rng.integers(0, 6))):
            y, x = rng.integers(0, size, size=2)
            img[y, x] += rng.uniform(0.2, 0.8)
        img = ndimage.gaussian_filter(img, rng.uniform(0.4, 1.3) * scale)
        img = img + rng.normal(0, rng.uniform(0.005, 0.04), size=img.shape)
        img = np.clip(img, 0.0, 1.0).astype(np.float32)
        rgb = np.broadcast_to(img, (3, size, size))
    else:
        bg_col = np.array([rng.uniform(0.82, 0.97), rng.uniform(0.70, 0.90), rng.uniform(0.80, 0.95)], np.float32)
        tissue = np.clip(0.5 + 0.6 * _low_freq(rng, size) + 0.15 * _smooth_noise(rng, size, 4.0 * scale), 0, 1)
        eosin = np.array([0.90, 0.55, 0.75], np.float32)  # pink cytoplasm
        rgb = bg_col[:, None, None] * (1 - 0.45 * tissue) + eosin[:, None, None] * (0.45 * tissue)
        nuc_col = np.array([rng.uniform(0.25, 0.50), rng.uniform(0.15, 0.35), rng.uniform(0.45, 0.70)], np.float32)
        darkness = (0.55 + 0.45 * level) * (1.0 + rng.uniform(0.05, 0.2) * texture) * (1.0 - 0.2 * radial**2)
        alpha = np.clip(cover * darkness, 0, 1)[None]
        rgb = rgb * (1 - alpha) + nuc_col[:, None, None] * alpha
        rgb = ndimage.gaussian_filter(rgb, (0, *(2 * [rng.uniform(0.4, 1.2) * scale])))
        rgb = rgb + rng.normal(0, rng.uniform(0.005, 0.03), size=rgb.shape)
        rgb = np.clip(rgb, 0.0, 1.0).astype(np.float32)
    return rgb, mask.astype(np.float32)
