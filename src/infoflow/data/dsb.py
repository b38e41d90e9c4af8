"""Reader of the DSB 2018 stage-1 layout (a folder or a zip, read in place) and its preprocessing.

Layout (Kaggle / BBBC038v1)::

    <id>/images/<id>.png        RGBA, RGB or grey PNG
    <id>/masks/<mask-id>.png    one binary PNG (0/255) per nucleus

A zip may also hold everything under one top-level folder (``stage1_train/<id>/...``). Zip
members are read with :mod:`zipfile` in place (never extracted); a member whose name is absolute
or contains ``..`` is refused. Samples are returned in sorted-id order.

Preprocessing (docs: methods.md section 1), per rule:

- ``"code"`` (the paper's code, the default): the image (alpha dropped, grey repeated to 3
  channels, uint8) goes through ``skimage.transform.resize(img, (S, S), mode='constant',
  preserve_range=True)`` (which, when downsampling, first applies a Gaussian anti-aliasing filter
  with sigma ``(factor - 1) / 2`` and zero padding), is truncated to uint8 like the code's uint8
  array, then divided by 255. Each instance mask would be resized the same way and every pixel
  > 0 of any of them is foreground. The filter and the interpolation are linear with non-negative
  weights, so ``union_k(resize(m_k) > 0) == resize(union_k m_k) > 0``: one resize of the union
  mask gives the same labels (checked exactly on real samples by the tests) and is much faster
  than one resize per nucleus (up to 375 per image). The anti-aliasing dilates the nuclei: over
  the first 40 training samples at S = 128 the foreground fraction is 0.240.
- ``"linear"``: bilinear interpolation without anti-aliasing (pixel-centre aligned, edge
  padding) for the image (scaled to [0, 1]) and for the union mask (values in [0, 1]), which is
  then thresholded at > 0.5 (foreground fraction 0.137 over those 40 samples; 0.141 at full
  resolution).

16-bit grey PNGs are scaled to 8 bits (``round(v / 257)``) before the rules above.

Graded masks (the masks the paper's MI notebooks build Y from; methods.md section 4): each
instance mask (uint8 0/255) is resized with ``resize(m, (S, S), mode='constant',
preserve_range=True)`` (anti-aliased), the instances are combined with ``np.maximum``, the result
is truncated to an integer (the notebooks' int32 array) and divided by 255: a mask in [0, 1], not
binary (mean 0.138 over the 605 training masks at S = 128). Unlike the training mask this needs
one resize per nucleus: ``max`` is not linear.

Masks made at a larger size (``mask_size`` R > S, R a multiple of S): both masks are made at R
by the rules above and brought to S over f x f blocks (f = R / S): the binary mask is foreground
where at least half of its block is, the graded mask is the block mean (its block sums, and so
the coarsening classes, are those at R). The ``code`` rule's dilation grows as S shrinks
(foreground 0.249 of the training masks at S = 128, 0.384 at 64); made at R = 128 the masks keep
the paper's foreground fraction at any S.
"""

from __future__ import annotations

import io
import os
import re
import stat
import struct
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from skimage.transform import resize

from ..config import MASK_RULES
from ..errors import DataError
from .arrays import SegArrays, graded_from_numerators

DEFAULT_MAX_PIXELS = 40_000_000
#: A member (or file) larger than this is not a PNG of the layout (the largest DSB 2018 PNG: 0.9 MB).
MAX_FILE_BYTES = 64 << 20
#: A zip member larger than 1 MiB that expands more than this (DSB 2018 zips: at most 11.5) is a zip bomb.
MAX_ZIP_RATIO = 100
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_IGNORED_TOP = {"__MACOSX"}
_DRIVE = re.compile(r"^[A-Za-z]:")


# -- sources: a folder or a zip ----------------------------------------------------------------


class _Source:
    """Uniform access to the files of a folder or a zip, by relative posix path."""

    path: Path

    def files(self) -> list[str]:  # relative posix paths of regular files
        raise NotImplementedError

    def read(self, rel: str) -> bytes:
        raise NotImplementedError

    def where(self, rel: str) -> str:
        """How to name a file in messages."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class _ZipSource(_Source):
    def __init__(self, path: Path):
        self.path = path
        try:
            self.zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, ValueError) as e:
            raise DataError(f"{path}: not a readable zip file ({e})") from None
        names: list[str] = []
        for info in self.zf.infolist():
            name = info.filename
            _check_member_name(path, name)
            if not info.is_dir():
                _check_member_size(path, info)
                names.append(name)
        self._names = names

    def files(self) -> list[str]:
        return list(self._names)

    def read(self, rel: str) -> bytes:
        try:
            return self.zf.read(rel)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, RuntimeError) as e:
            raise DataError(f"{self.where(rel)}: cannot read the zip member ({e})") from None

    def where(self, rel: str) -> str:
        return f"{self.path}:{rel}"

    def close(self) -> None:
        self.zf.close()


class _DirSource(_Source):
    MAX_DEPTH = 4  # [top/]<id>/images/<file>: deeper files are not part of the layout

    def __init__(self, path: Path):
        self.path = path
        names: list[str] = []
        root = str(path)
        for dirpath, dirnames, filenames in os.walk(root):
            rel_dir = os.path.relpath(dirpath, root)
            depth = 0 if rel_dir == "." else rel_dir.count(os.sep) + 1
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in _IGNORED_TOP)
            if depth + 1 >= self.MAX_DEPTH:
                dirnames[:] = []
            for f in filenames:
                if f.startswith(".") or not _regular_file(os.path.join(dirpath, f)):
                    continue  # hidden files, FIFOs, devices, sockets, dangling links: never read
                rel = f if rel_dir == "." else f"{rel_dir}/{f}"
                names.append(rel.replace(os.sep, "/"))
        self._names = names

    def files(self) -> list[str]:
        return list(self._names)

    def read(self, rel: str) -> bytes:
        p = self.path / rel
        try:
            size = p.stat().st_size
            if size > MAX_FILE_BYTES:
                raise DataError(f"{p}: {size:,} bytes, more than {MAX_FILE_BYTES:,}: not a PNG of the DSB layout")
            with open(p, "rb") as fh:
                return fh.read(MAX_FILE_BYTES + 1)
        except OSError as e:
            raise DataError(f"{p}: cannot read ({e.strerror or e})") from None


    def where(self, rel: str) -> str:
        return str(self.path / rel)


def _regular_file(path: str) -> bool:
    """A regular file, or a link to one (``os.stat`` follows links; a FIFO or /dev/zero is not)."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def _check_member_size(zpath: Path, info: zipfile.ZipInfo) -> None:
    """Refuse a member by what its header declares, before a byte of it is inflated: too large,
    or expanding far more than a PNG can (a zip bomb). Inflating never yields more than the
    declared size (zipfile stops there), so the check bounds what a member can cost."""
    size, packed = int(info.file_size), max(int(info.compress_size), 1)
    if size > MAX_FILE_BYTES:
        raise DataError(f"{zpath}: member {info.filename!r} declares {size:,} bytes (more than {MAX_FILE_BYTES:,}: "
                        "not a PNG of the DSB layout); refusing the zip")
    if size > (1 << 20) and size / packed > MAX_ZIP_RATIO:
        raise DataError(f"{zpath}: member {info.filename!r} expands {size / packed:,.0f}-fold ({packed:,} -> "
                        f"{size:,} bytes): a zip bomb, not a PNG; refusing the zip")


def _check_member_name(zpath: Path, name: str) -> None:
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or _DRIVE.match(name) or ".." in parts or "\x00" in name:
        raise DataError(f"{zpath}: member {name!r} escapes the layout (absolute path or '..'); refusing the zip")


def _open_source(path: str | os.PathLike) -> _Source:
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"{p}: no such file or folder")
    if p.is_dir():
        return _DirSource(p)
    if p.suffix.lower() == ".zip" or zipfile.is_zipfile(p):
        return _ZipSource(p)
    raise DataError(f"{p}: neither a folder nor a .zip with the DSB 2018 layout <id>/images/<id>.png, <id>/masks/*.png")


# -- layout ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    id: str
    image: str  # relative path of the image in the source
    masks: tuple[str, ...]  # relative paths of the instance masks


def _scan(src: _Source) -> list[Sample]:
    """The samples of a source, sorted by id; DataError when the layout is absent or broken."""
    files = [f for f in src.files() if not _ignored(f)]
    if not files:
        raise DataError(f"{src.path}: empty data set (no files)")
    prefix = _layout_prefix(files)
    if prefix is None:
        raise DataError(
            f"{src.path}: no DSB 2018 layout found (expected <id>/images/<id>.png and <id>/masks/*.png, "
            f"optionally under one top-level folder); first entries: {', '.join(sorted(files)[:3])}"
        )
    n = len(prefix)
    groups: dict[str, dict[str, list[str]]] = {}
    for f in files:
        parts = f.split("/")
        if parts[:n] != prefix or len(parts) < n + 2:
            continue  # top-level files (README, ...) are not samples
        sid, sub = parts[n], parts[n + 1]
        g = groups.setdefault(sid, {"images": [], "masks": [], "other": []})
        if len(parts) == n + 3 and sub in ("images", "masks"):
            g[sub].append(f)
        else:
            g["other"].append(f)
    samples: list[Sample] = []
    for sid in sorted(groups):
        g = groups[sid]
        where = src.where("/".join(prefix + [sid]))
        pngs = sorted(f for f in g["images"] if f.lower().endswith(".png"))
        if not pngs:
            raise DataError(f"{where}: sample without images/{sid}.png (no images/ folder with a PNG)")
        own = [f for f in pngs if f.split("/")[-1] == f"{sid}.png"]
        if own:
            image = own[0]
        elif len(pngs) == 1:
            image = pngs[0]
        else:
            raise DataError(f"{where}: images/ holds {len(pngs)} PNGs and none is {sid}.png")
        masks = tuple(sorted(f for f in g["masks"] if f.lower().endswith(".png")))
        if not masks:
            raise DataError(f"{where}: sample without masks (no masks/*.png)")
        samples.append(Sample(sid, image, masks))
    if not samples:
        raise DataError(f"{src.path}: empty data set (no samples)")
    return samples


def _ignored(rel: str) -> bool:
    parts = rel.split("/")
    return parts[0] in _IGNORED_TOP or any(p.startswith(".") for p in parts)


def _layout_prefix(files: Sequence[str]) -> list[str] | None:
    """[] when samples are at the top, [top] when under a single top-level folder, else None."""

    def has_layout(depth: int) -> bool:
        for f in files:
            parts = f.split("/")
            if len(parts) == depth + 3 and parts[depth + 1] in ("images", "masks"):
                return True
        return False

    if has_layout(0):
        return []
    tops = {f.split("/")[0] for f in files if "/" in f}
    if len(tops) == 1 and has_layout(1):
        return [next(iter(tops))]
    return None


def layout_files(path: str | os.PathLike) -> list[str]:
    """The files of a DSB folder or zip that the layout uses (each sample's image and masks),
    sorted: what identifies the data (the cache's source hash of a folder reads only these)."""
    src = _open_source(path)
    try:
        return sorted(f for s in _scan(src) for f in (s.image, *s.masks))
    finally:
        src.close()


def list_ids(path: str | os.PathLike) -> list[str]:
    """Sorted sample ids of a DSB folder or zip (reads the listing only, not the pixels)."""
    src = _open_source(path)
    try:
        return [s.id for s in _scan(src)]
    finally:
        src.close()


# -- PNG decoding ------------------------------------------------------------------------------


def png_size(data: bytes, where: str) -> tuple[int, int]:
    """(width, height) from the PNG header, without decoding pixels."""
    if len(data) < 24 or data[:8] != PNG_SIGNATURE or data[12:16] != b"IHDR":
        raise DataError(f"{where}: not a PNG file (bad signature or header)")
    w, h = struct.unpack(">II", data[16:24])
    if w == 0 or h == 0:
        raise DataError(f"{where}: PNG header gives an empty image ({w} x {h})")
    return w, h


def decode_png(data: bytes, where: str, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode a PNG after checking its header size against ``max_pixels``; errors -> DataError."""
    w, h = png_size(data, where)
    if max_pixels is not None and w * h > max_pixels:
        raise DataError(
            f"{where}: image of {w} x {h} = {w * h:,} pixels is above max_pixels={max_pixels:,} "
            "(possible decompression bomb); refusing to decode"
        )
    try:
        im = Image.open(io.BytesIO(data), formats=["PNG"])
        im.load()
    except Image.DecompressionBombError as e:
        raise DataError(f"{where}: refused by Pillow as a decompression bomb ({e})") from None
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, zlib.error, ...
        raise DataError(f"{where}: PNG does not decode ({type(e).__name__}: {e})") from None
    return im


def image_to_rgb_uint8(im: Image.Image, where: str) -> np.ndarray:
    """(H, W, 3) uint8: alpha dropped, grey repeated to 3 channels, 16-bit scaled to 8."""
    mode = im.mode
    if mode in ("RGB", "RGBA", "RGBX", "RGBa"):
        a = np.asarray(im)[..., :3]
    elif mode in ("L", "LA", "La"):
        g = np.asarray(im.getchannel(0) if mode != "L" else im)
        a = np.repeat(g[..., None], 3, axis=2)
    elif mode == "1":
        g = np.asarray(im, dtype=np.uint8) * 255
        a = np.repeat(g[..., None], 3, axis=2)
    elif mode.startswith("I"):
        g = np.asarray(im).astype(np.float64)
        g = np.clip(np.rint(g / 257.0), 0, 255).astype(np.uint8)
        a = np.repeat(g[..., None], 3, axis=2)
    elif mode in ("P", "PA"):
        a = np.asarray(im.convert("RGB"))
    else:
        raise DataError(f"{where}: unsupported PNG pixel mode {mode!r}")
    return np.ascontiguousarray(a, dtype=np.uint8)


def mask_to_bool(im: Image.Image, where: str) -> np.ndarray:
    """(H, W) bool: a pixel is part of the nucleus when it is non-zero (any colour channel)."""
    mode = im.mode
    if mode in ("L", "1", "P") or mode.startswith("I"):
        return np.asarray(im) != 0
    if mode in ("LA", "La"):
        return np.asarray(im.getchannel(0)) != 0
    if mode in ("RGB", "RGBA", "RGBX", "RGBa"):
        return (np.asarray(im)[..., :3] != 0).any(axis=2)
    raise DataError(f"{where}: unsupported mask PNG pixel mode {mode!r}")


# -- preprocessing -----------------------------------------------------------------------------


def check_rule(mask_rule: str) -> str:
    if mask_rule not in MASK_RULES:
        raise DataError(f"unknown mask rule {mask_rule!r}; choose one of {', '.join(MASK_RULES)}")
    return mask_rule


def preprocess_image(rgb: np.ndarray, size: int, rule: str) -> np.ndarray:
    """(H, W, 3) uint8 -> (3, S, S) float32 in [0, 1] by ``rule``."""
    if rule == "code":
        out = resize(rgb, (size, size), mode="constant", preserve_range=True)
        u8 = out.astype(np.uint8)  # the code's uint8 array: truncation
        img = u8.astype(np.float32) / np.float32(255.0)
    else:
        out = resize(rgb, (size, size), order=1, mode="edge", anti_aliasing=False, preserve_range=True)
        img = np.clip(out / 255.0, 0.0, 1.0).astype(np.float32)
    return np.ascontiguousarray(img.transpose(2, 0, 1))


def preprocess_mask(union: np.ndarray, size: int, rule: str) -> np.ndarray:
    """(H, W) bool union of the instance masks -> (S, S) float32 exactly 0/1 by ``rule``."""
    if rule == "code":
        out = resize(union.astype(np.uint8) * np.uint8(255), (size, size), mode="constant", preserve_range=True)
        m = out > 0
    else:
        out = resize(union.astype(np.float64), (size, size), order=1, mode="edge", anti_aliasing=False)
        m = out > 0.5
    return m.astype(np.float32)


class GradedMask:
    """Accumulates the graded mask of one sample, one instance at a time (module docstring).

    ``add(instance)`` takes an (H, W) bool instance mask; ``numerators()`` is the (size, size)
    uint16 array ``trunc(max_k resize(255 * m_k))``: the graded mask is ``numerators() / 255``.

    Each ``resize`` is scikit-image's ``resize(m, (size, size), mode='constant',
    preserve_range=True)`` computed bit for bit, but cheaper: its Gaussian anti-aliasing filter
    (zero padding) runs only over the instance's bounding box widened by the filter's radius,
    outside which the filtered image is exactly 0, and the linear zoom then reads the whole
    image as scikit-image's does (same coordinates, same arithmetic). The tests compare it with
    ``resize`` itself on real samples.
    """

    DENOMINATOR = 255
    TRUNCATE = 4.0  # scipy.ndimage.gaussian_filter's default, which resize uses

    def __init__(self, size: int) -> None:
        self.size = int(size)
        self._acc: np.ndarray | None = None
        self._canvas: np.ndarray | None = None  # the filtered full-size image, zero outside the last box

    def add(self, instance: np.ndarray) -> None:
        h, w = instance.shape
        factors = np.divide((h, w), (self.size, self.size))
        if np.any(factors < 1):  # upsampling: no anti-aliasing; the plain call is as cheap
            r = resize(instance.astype(np.uint8) * np.uint8(255), (self.size, self.size), mode="constant",
                       preserve_range=True)
        else:
            rows, cols = np.flatnonzero(instance.any(axis=1)), np.flatnonzero(instance.any(axis=0))
            if rows.size == 0:
                return
            sigma = np.maximum(0, (factors - 1) / 2)
            pad = [int(self.TRUNCATE * float(sd) + 0.5) for sd in sigma]
            r0, r1 = max(rows[0] - pad[0], 0), min(rows[-1] + 1 + pad[0], h)
            c0, c1 = max(cols[0] - pad[1], 0), min(cols[-1] + 1 + pad[1], w)
            if self._canvas is None or self._canvas.shape != (h, w):
                self._canvas = np.zeros((h, w), dtype=np.float64)
            box = instance[r0:r1, c0:c1].astype(np.float64) * 255.0
            self._canvas[r0:r1, c0:c1] = ndi.gaussian_filter(box, sigma, cval=0.0, mode="grid-constant")
            r = ndi.zoom(self._canvas, [1 / f for f in factors], order=1, mode="grid-constant", cval=0.0,
                         grid_mode=True)
            self._canvas[r0:r1, c0:c1] = 0.0
            np.clip(r, 0.0, 255.0, out=r)  # resize clips to the input's range, [0, 255]
        self._acc = r if self._acc is None else np.maximum(self._acc, r)

    def numerators(self) -> np.ndarray:
        if self._acc is None:
            return np.zeros((self.size, self.size), dtype=np.uint16)
        return np.trunc(self._acc).astype(np.uint16)  # the notebooks' int32 array: truncation


def block_reduce_masks(mask: np.ndarray, graded_num: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Bring a binary mask and graded numerators made at R down to R / ``factor`` (module docstring).

    Returns the binary mask (float32 0/1: at least half of each block is foreground) and the
    graded numerators summed over each block (uint16; divide by ``255 * factor**2``).
    """
    f = int(factor)
    if f == 1:
        return mask.astype(np.float32), graded_num.astype(np.uint16)
    r = mask.shape[0]
    s = r // f
    counts = mask.reshape(s, f, s, f).sum(axis=(1, 3), dtype=np.int64)
    binary = (2 * counts >= f * f).astype(np.float32)
    num = graded_num.astype(np.int64).reshape(s, f, s, f).sum(axis=(1, 3))
    return binary, num.astype(np.uint16)


def mask_factor(size: int, mask_size: int | None) -> int:
    """f = mask_size / size (1 when ``mask_size`` is None); DataError unless a positive integer."""
    if mask_size is None or int(mask_size) == int(size):
        return 1
    r, s = int(mask_size), int(size)
    if r < s or r % s:
        raise DataError(f"mask_size {r} must be a multiple of the image size {s} (masks are made at mask_size "
                        "and brought down to S over whole blocks)")
    f = r // s
    if GradedMask.DENOMINATOR * f * f > np.iinfo(np.uint16).max:
        raise DataError(f"mask_size {r} is too large for size {s} (block factor {f} > 16)")
    return f


# -- reading -----------------------------------------------------------------------------------


def _load_sample(src: _Source, s: Sample, size: int, rule: str, max_pixels: int, factor: int):
    """(image (3, S, S) float32, binary mask (S, S) float32, graded numerators (S, S) uint16)."""
    where = src.where(s.image)
    im = decode_png(src.read(s.image), where, max_pixels=max_pixels)
    rgb = image_to_rgb_uint8(im, where)
    del im
    h, w = rgb.shape[:2]
    union = np.zeros((h, w), dtype=bool)
    graded = GradedMask(size * factor)
    for mrel in s.masks:
        mwhere = src.where(mrel)
        m = mask_to_bool(decode_png(src.read(mrel), mwhere, max_pixels=max_pixels), mwhere)
        if m.shape != (h, w):
            raise DataError(
                f"{mwhere}: mask size {m.shape[1]} x {m.shape[0]} differs from its image "
                f"{s.image.split('/')[-1]} ({w} x {h})"
            )
        union |= m
        graded.add(m)
    mask, num = block_reduce_masks(preprocess_mask(union, size * factor, rule), graded.numerators(), factor)
    return preprocess_image(rgb, size, rule), mask, num


def read_dsb(
    path: str | os.PathLike,
    *,
    size: int = 128,
    mask_rule: str = "code",
    mask_size: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: bool = True,
    ids: Sequence[str] | None = None,
    workers: int | None = None,
) -> SegArrays:
    """Read and preprocess a DSB 2018 stage-1 folder or zip into :class:`SegArrays`.

    ``mask_size``: make the masks at this size and bring them down to ``size`` (module
    docstring); None: at ``size``. ``ids``: read only these samples (in sorted order); None: all.
    ``workers``: decoding threads (PNG and zlib decoding release the GIL); None: up to 4,
    bounded by the CPU count. The result's ``graded`` holds the graded masks.
    """
    check_rule(mask_rule)
    size = int(size)
    if size < 1:
        raise DataError(f"size must be >= 1, got {size}")
    factor = mask_factor(size, mask_size)
    src = _open_source(path)
    try:
        samples = _scan(src)
        if ids is not None:
            want = set(ids)
            known = {s.id for s in samples}
            missing = sorted(want - known)
            if missing:
                raise DataError(f"{src.path}: no sample(s) {', '.join(missing[:5])}")
            samples = [s for s in samples if s.id in want]
            if not samples:
                raise DataError(f"{src.path}: empty data set (no ids requested)")
        n = len(samples)
        images = np.empty((n, 3, size, size), dtype=np.float32)
        masks = np.empty((n, 1, size, size), dtype=np.float32)
        graded = np.empty((n, 1, size, size), dtype=np.uint16)
        if workers is None:
            workers = max(1, min(4, os.cpu_count() or 1))

        def job(i: int) -> int:
            images[i], masks[i, 0], graded[i, 0] = _load_sample(src, samples[i], size, mask_rule, max_pixels, factor)
            return i

        with _progress(progress, f"reading {src.path.name} ({n} samples, S={size}, {mask_rule} rule)", n) as advance:
            if workers <= 1:
                for i in range(n):
                    job(i)
                    advance()
            else:
                ex = ThreadPoolExecutor(max_workers=workers)
                try:
                    for _ in ex.map(job, range(n)):
                        advance()
                finally:
                    ex.shutdown(wait=True, cancel_futures=True)
    finally:
        src.close()
    meta = {
        "kind": "dsb2018",
        "size": size,
        "mask_rule": mask_rule,
        "image_rule": mask_rule,
        "mask_size": size * factor,
        "graded_den": GradedMask.DENOMINATOR * factor * factor,
        "path": str(Path(path)),
    }
    return SegArrays(images=images, masks=masks, ids=[s.id for s in samples], source=str(Path(path)), meta=meta,
                     graded=graded_from_numerators(graded, meta["graded_den"]))


class _progress:
    """Context manager yielding an ``advance()`` callable (:func:`infoflow.progress.progress_bar`:
    a rich bar on a terminal, plain lines otherwise, nothing when not enabled)."""

    def __init__(self, enabled: bool, description: str, total: int):
        from ..progress import progress_bar

        self._cm = progress_bar(description, total, enabled=enabled)

    def __enter__(self) -> Callable[[], None]:
        step = self._cm.__enter__()
        return lambda: step()

    def __exit__(self, *exc) -> None:
        self._cm.__exit__(*exc)
