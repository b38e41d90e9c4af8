"""Cache of preprocessed DSB arrays as ``.npz`` files.

Where: ``cache_dir`` (DataConfig.cache_dir), else ``$INFOFLOW_CACHE``, else ``~/.cache/infoflow``.

Key: sha256 of a JSON document holding the cache format version, the sha256 of the source's
content (the zip's bytes; for a folder, its relative file paths and file bytes), the size S, the
mask rule, the size the masks were made at and, for a partial read only, the list of sample ids
read. ``limit`` is applied after
loading and is not part of the key. A file is ``dsb-<key[:40]>.npz`` and stores its full key and
metadata; a file that does not load, or whose stored key or shapes disagree, is treated as a miss
and rewritten. Writes are atomic: a temporary file in the cache folder, then ``os.replace``.

Images of the ``code`` rule are uint8 / 255 by construction and are stored as uint8 (exact);
``linear`` images are stored as float32. Masks are stored as uint8 0/1, graded masks as their
uint16 numerators (exact).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import DataError
from .arrays import SegArrays, graded_from_numerators, graded_numerators
from .dsb import DEFAULT_MAX_PIXELS, check_rule, layout_files, read_dsb

FORMAT_VERSION = 2  # 2: graded masks and the mask size
ENV_VAR = "INFOFLOW_CACHE"
_CHUNK = 1 << 20


def cache_dir(configured: str | os.PathLike | None = None) -> Path:
    """The cache folder: ``configured``, else $INFOFLOW_CACHE, else ~/.cache/infoflow."""
    if configured:
        return Path(configured).expanduser()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "infoflow"


def source_digest(path: str | os.PathLike) -> str:
    """sha256 of a source's content: a zip's bytes; for a folder, the relative paths and bytes of
    the files its DSB layout uses (:func:`~infoflow.data.dsb.layout_files`: each sample's image
    and masks; hidden files, FIFOs, devices and anything else in the folder are never read)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"{p}: no such file or folder")
    h = hashlib.sha256()
    try:
        if p.is_dir():
            h.update(b"folder\0")
            for rel in layout_files(p):
                h.update(rel.encode("utf-8") + b"\0")
                fh = hashlib.sha256()
                with open(p / rel, "rb") as f:
                    for chunk in iter(lambda: f.read(_CHUNK), b""):
                        fh.update(chunk)
                h.update(fh.digest())
        else:
            with open(p, "rb") as f:
                for chunk in iter(lambda: f.read(_CHUNK), b""):
                    h.update(chunk)
    except OSError as e:
        raise DataError(f"{getattr(e, 'filename', None) or p}: cannot read for hashing ({e.strerror or e})") from None
    return h.hexdigest()


def cache_key(*, digest: str, size: int, mask_rule: str, mask_size: int | None = None,
              ids: Sequence[str] | None = None) -> str:
    doc = {
        "format": FORMAT_VERSION,
        "kind": "dsb2018",
        "source_sha256": digest,
        "size": int(size),
        "mask_rule": mask_rule,
        "mask_size": int(size) if mask_size is None else int(mask_size),
        "ids": None if ids is None else sorted(ids),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def cache_path(directory: Path, key: str) -> Path:
    return directory / f"dsb-{key[:40]}.npz"


def save(path: Path, key: str, arrays: SegArrays) -> None:
    """Write ``arrays`` atomically to ``path`` (temporary file in the same folder + os.replace)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    images = arrays.images
    if arrays.meta.get("image_rule") == "code":
        u8 = np.rint(images * np.float32(255.0)).astype(np.uint8)
        img_store, img_codec = u8, "u8/255"
    else:
        img_store, img_codec = images.astype(np.float32, copy=False), "f32"
    if arrays.graded is None or "graded_den" not in arrays.meta:
        raise DataError(f"{arrays.source}: only arrays with graded masks are cached")
    meta = dict(arrays.meta)
    meta.update({"format": FORMAT_VERSION, "key": key, "image_codec": img_codec, "n": len(arrays)})
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(
                f,
                images=img_store,
                masks=arrays.masks.astype(np.uint8),
                graded=graded_numerators(arrays.graded, int(meta["graded_den"])),
                ids=np.array(arrays.ids, dtype=str),
                meta=np.array(json.dumps(meta, sort_keys=True)),
            )
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def load(path: Path, key: str, *, source: str) -> SegArrays | None:
    """The arrays cached at ``path`` under ``key``; None when absent, corrupt or for another key."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"][()]))
            if meta.get("format") != FORMAT_VERSION or meta.get("key") != key:
                return None
            images, masks, ids = z["images"], z["masks"], [str(i) for i in z["ids"]]
            graded = z["graded"]
        codec = meta.get("image_codec")
        if codec == "u8/255" and images.dtype == np.uint8:
            images = images.astype(np.float32) / np.float32(255.0)
        elif codec == "f32" and images.dtype == np.float32:
            pass
        else:
            return None
        if masks.dtype != np.uint8 or len(ids) != meta.get("n") or masks.max(initial=0) > 1:
            return None
        den = int(meta.get("graded_den") or 0)
        if graded.dtype != np.uint16 or graded.shape != masks.shape or den < 1 or graded.max(initial=0) > den:
            return None
        meta = {k: v for k, v in meta.items() if k not in ("format", "key", "image_codec", "n")}
        meta["cache_file"] = str(path)
        meta["path"] = source
        return SegArrays(images=images, masks=masks.astype(np.float32), ids=ids, source=source, meta=meta,
                         graded=graded_from_numerators(graded, den))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, json.JSONDecodeError, DataError):
        return None


def cached_read_dsb(
    path: str | os.PathLike,
    *,
    size: int = 128,
    mask_rule: str = "code",
    mask_size: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    ids: Sequence[str] | None = None,
    directory: str | os.PathLike | None = None,
    progress: bool = True,
    use_cache: bool = True,
    digest: str | None = None,
) -> SegArrays:
    """:func:`read_dsb` through the cache. ``ids`` None: the whole source (the usual entry)."""
    check_rule(mask_rule)
    read = dict(size=size, mask_rule=mask_rule, mask_size=mask_size, max_pixels=max_pixels, progress=progress)
    if not use_cache:
        return read_dsb(path, ids=ids, **read)
    src = str(Path(path))
    digest = digest or source_digest(path)
    d = cache_dir(directory)
    if ids is not None:  # a partial read: the full entry serves it too
        full_key = cache_key(digest=digest, size=size, mask_rule=mask_rule, mask_size=mask_size)
        full = load(cache_path(d, full_key), full_key, source=src)
        if full is not None:
            pos = {sid: i for i, sid in enumerate(full.ids)}
            if all(i in pos for i in ids):
                return full.subset(sorted(pos[i] for i in ids))
    key = cache_key(digest=digest, size=size, mask_rule=mask_rule, mask_size=mask_size, ids=ids)
    cp = cache_path(d, key)
    hit = load(cp, key, source=src)
    if hit is not None:
        return hit
    if cp.exists():
        warnings.warn(f"cache file {cp} is unreadable or stale; rebuilding it", stacklevel=2)
    arrays = read_dsb(path, ids=ids, **read)
    arrays.meta["sha256"] = digest
    try:
        save(cp, key, arrays)
        arrays.meta["cache_file"] = str(cp)
    except OSError as e:
        warnings.warn(f"could not write the cache file {cp} ({e}); continuing without cache", stacklevel=2)
    return arrays


def info(arrays: SegArrays) -> dict[str, Any]:
    """What to record about a data set in a run (no arrays)."""
    return {"source": arrays.source, "n": len(arrays), **arrays.meta}
