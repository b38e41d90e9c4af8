"""Reader, bad inputs, cache and split rules on tiny DSB-layout data sets built in tmp_path."""

from __future__ import annotations

import io
import struct
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from infoflow.config import DataConfig
from infoflow.data import SegArrays, cached_read_dsb, list_ids, load_splits, read_dsb, source_digest
from infoflow.data import cache as cache_mod
from infoflow.errors import ConfigError, DataError

# -- tiny data sets ----------------------------------------------------------------------------


def png_bytes(arr: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def tiny_samples(n: int = 6, seed: int = 0, hw: tuple[int, int] = (40, 48)) -> dict[str, bytes]:
    """{relative path: bytes} of ``n`` samples: RGBA (some grey) images, 1-3 instance masks."""
    rng = np.random.default_rng(seed)
    files: dict[str, bytes] = {}
    h, w = hw
    for i in range(n):
        sid = f"{i:02d}{rng.integers(16**6):06x}"
        img = rng.integers(0, 256, size=(h, w, 4), dtype=np.uint8)
        img[..., 3] = 255
        files[f"{sid}/images/{sid}.png"] = png_bytes(img[..., 0]) if i % 3 == 2 else png_bytes(img)
        for k in range(1 + i % 3):
            m = np.zeros((h, w), np.uint8)
            y, x = rng.integers(2, h - 10), rng.integers(2, w - 10)
            m[y : y + 8, x : x + 6] = 255
            files[f"{sid}/masks/m{k}.png"] = png_bytes(m)
    return files


def write_zip(path: Path, files: dict[str, bytes], top: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for rel, data in files.items():
            z.writestr(f"{top}/{rel}" if top else rel, data)
    return path


def write_dir(path: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        p = path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return path


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(w: int, h: int) -> bytes:
    """A tiny PNG whose header claims w x h 8-bit grey pixels (never decodable in full)."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


@pytest.fixture()
def tiny_zip(tmp_path: Path) -> Path:
    return write_zip(tmp_path / "tiny.zip", tiny_samples())


# -- reading -----------------------------------------------------------------------------------


@pytest.mark.parametrize("rule", ["code", "linear"])
@pytest.mark.parametrize("size", [16, 32])
def test_read_contract(tiny_zip: Path, rule: str, size: int) -> None:
    a = read_dsb(tiny_zip, size=size, mask_rule=rule, progress=False)
    assert isinstance(a, SegArrays) and len(a) == 6
    assert a.images.shape == (6, 3, size, size) and a.images.dtype == np.float32
    assert a.masks.shape == (6, 1, size, size) and a.masks.dtype == np.float32
    assert 0.0 <= a.images.min() and a.images.max() <= 1.0
    assert set(np.unique(a.masks)) <= {0.0, 1.0} and a.masks.sum() > 0
    assert a.ids == sorted(a.ids) and a.meta["mask_rule"] == rule
    # grey sample (index 2) has 3 identical channels
    assert np.array_equal(a.images[2, 0], a.images[2, 1]) and np.array_equal(a.images[2, 0], a.images[2, 2])
    if rule == "code":  # uint8 / 255, like the paper code's uint8 array
        assert np.array_equal(np.rint(a.images * 255) / np.float32(255), a.images)


def test_zip_folder_and_top_level_folder_agree(tmp_path: Path) -> None:
    files = tiny_samples(4, seed=1)
    ref = read_dsb(write_zip(tmp_path / "a.zip", files), size=16, progress=False)
    for src in (
        write_zip(tmp_path / "b.zip", files, top="stage1_train"),
        write_dir(tmp_path / "dir", files),
        write_dir(tmp_path / "nested" / "stage1_train", files).parent,
    ):
        other = read_dsb(src, size=16, progress=False)
        assert other.ids == ref.ids
        assert np.array_equal(other.images, ref.images) and np.array_equal(other.masks, ref.masks)


def test_ids_subset_and_workers(tiny_zip: Path) -> None:
    ids = list_ids(tiny_zip)
    full1 = read_dsb(tiny_zip, size=16, progress=False, workers=1)
    full2 = read_dsb(tiny_zip, size=16, progress=False, workers=3)
    assert np.array_equal(full1.images, full2.images) and np.array_equal(full1.masks, full2.masks)
    part = read_dsb(tiny_zip, size=16, progress=False, ids=[ids[3], ids[1]])
    assert part.ids == [ids[1], ids[3]]
    assert np.array_equal(part.images, full1.images[[1, 3]])


def test_stray_files_are_ignored(tmp_path: Path) -> None:
    files = tiny_samples(3)
    extra = dict(files, **{"README.txt": b"hello", "__MACOSX/x/._y.png": b"junk", f"{next(iter(files)).split('/')[0]}/.DS_Store": b"x"})
    a = read_dsb(write_zip(tmp_path / "x.zip", extra), size=16, progress=False)
    assert len(a) == 3


# -- bad inputs --------------------------------------------------------------------------------


def _first_id(files: dict[str, bytes]) -> str:
    return sorted(files)[0].split("/")[0]


def _bad_no_images(files):
    sid = _first_id(files)
    return {k: v for k, v in files.items() if not k.startswith(f"{sid}/images/")}, sid


def _bad_no_masks(files):
    sid = _first_id(files)
    return {k: v for k, v in files.items() if not k.startswith(f"{sid}/masks/")}, sid


def _bad_image_not_png(files):
    sid = _first_id(files)
    return dict(files, **{f"{sid}/images/{sid}.png": b"this is not a png at all"}), f"{sid}.png"


def _bad_truncated_png(files):
    sid = _first_id(files)
    data = files[f"{sid}/images/{sid}.png"]
    return dict(files, **{f"{sid}/images/{sid}.png": data[: len(data) // 2]}), f"{sid}.png"


def _bad_mask_size(files):
    sid = _first_id(files)
    return dict(files, **{f"{sid}/masks/m0.png": png_bytes(np.zeros((10, 12), np.uint8))}), "m0.png"


def _bad_bomb_pillow(files):
    sid = _first_id(files)
    return dict(files, **{f"{sid}/masks/m0.png": bomb_png(100_000, 100_000)}), "m0.png"


BAD_CASES = [
    # (name, transform, expected message part, max_pixels)
    ("no images/", _bad_no_images, "without images", 10**12),
    ("no masks", _bad_no_masks, "without masks", 10**12),
    ("image not a PNG", _bad_image_not_png, "not a PNG", 10**12),
    ("truncated PNG", _bad_truncated_png, "does not decode", 10**12),
    ("mask size differs", _bad_mask_size, "differs from its image", 10**12),
    ("above max_pixels", lambda f: (f, ".png"), "max_pixels=1,000", 1000),
    ("Pillow bomb error", _bad_bomb_pillow, "decompression bomb", 10**12),
]


@pytest.mark.parametrize("kind", ["zip", "dir"])
@pytest.mark.parametrize("name,transform,expected,max_pixels", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_samples(tmp_path: Path, kind, name, transform, expected, max_pixels) -> None:
    files, names_file = transform(tiny_samples(3))
    src = write_zip(tmp_path / "bad.zip", files) if kind == "zip" else write_dir(tmp_path / "bad", files)
    with pytest.raises(DataError) as ei:
        read_dsb(src, size=16, max_pixels=max_pixels, progress=False)
    msg = str(ei.value)
    assert expected in msg and names_file in msg and str(src) in msg, msg


def test_bomb_checked_from_header_before_decoding(tmp_path: Path) -> None:
    files = tiny_samples(2)
    sid = _first_id(files)
    files[f"{sid}/images/{sid}.png"] = bomb_png(50_000, 50_000)  # 2.5e9 pixels claimed
    with pytest.raises(DataError, match=r"50000 x 50000 = 2,500,000,000 pixels is above max_pixels"):
        read_dsb(write_zip(tmp_path / "b.zip", files), size=16, progress=False)


@pytest.mark.parametrize(
    "member,expected",
    [("../evil/images/evil.png", "escapes the layout"), ("/abs/images/abs.png", "escapes the layout"),
     ("s/masks/../../../x.png", "escapes the layout")],
)
def test_zip_member_escaping_layout(tmp_path: Path, member: str, expected: str) -> None:
    files = dict(tiny_samples(2), **{member: b"x"})
    src = write_zip(tmp_path / "evil.zip", files)
    with pytest.raises(DataError, match=expected) as ei:
        read_dsb(src, size=16, progress=False)
    assert member in str(ei.value) and str(src) in str(ei.value)


def _no_layout_zip(tmp: Path) -> Path:
    return write_zip(tmp / "nolayout.zip", {"a/b.png": png_bytes(np.zeros((4, 4), np.uint8)), "notes.txt": b"x"})


def _no_layout_dir(tmp: Path) -> Path:
    return write_dir(tmp / "nolayout", {"x/y/z/w.png": b"1", "notes.txt": b"x"})


def _empty_zip(tmp: Path) -> Path:
    return write_zip(tmp / "empty.zip", {})


def _empty_dir(tmp: Path) -> Path:
    (tmp / "emptydir").mkdir()
    return tmp / "emptydir"


def _not_a_zip(tmp: Path) -> Path:
    (tmp / "junk.zip").write_bytes(b"PK\x03\x04 definitely not a zip")
    return tmp / "junk.zip"


def _plain_file(tmp: Path) -> Path:
    (tmp / "data.txt").write_text("hello")
    return tmp / "data.txt"


SOURCE_CASES = [
    ("missing path", lambda tmp: tmp / "does-not-exist", "no such file or folder"),
    ("zip without layout", _no_layout_zip, "no DSB 2018 layout"),
    ("folder without layout", _no_layout_dir, "no DSB 2018 layout"),
    ("empty zip", _empty_zip, "empty data set"),
    ("empty folder", _empty_dir, "empty data set"),
    ("corrupt zip", _not_a_zip, "not a readable zip"),
    ("plain file", _plain_file, "neither a folder nor a .zip"),
]


@pytest.mark.parametrize("name,make,expected", SOURCE_CASES, ids=[c[0] for c in SOURCE_CASES])
def test_bad_sources(tmp_path: Path, name, make, expected) -> None:
    src = make(tmp_path)
    for fn in (lambda: read_dsb(src, size=16, progress=False), lambda: list_ids(src)):
        with pytest.raises(DataError, match=expected) as ei:
            fn()
        assert str(src) in str(ei.value)


def test_bad_input_leaves_no_cache_files(tmp_path: Path) -> None:
    files, _ = _bad_mask_size(tiny_samples(3))
    src = write_zip(tmp_path / "bad.zip", files)
    cdir = tmp_path / "cache"
    with pytest.raises(DataError):
        cached_read_dsb(src, size=16, directory=cdir, progress=False)
    assert not cdir.exists() or list(cdir.iterdir()) == []


def test_bad_rule_and_config() -> None:
    with pytest.raises(DataError, match="unknown mask rule"):
        read_dsb("/nonexistent", size=16, mask_rule="nearest", progress=False)
    for kw, pat in [({"mask_rule": "x"}, "mask_rule"), ({"val_fraction": 0.0}, "val_fraction"),
                    ({"limit": 0}, "limit"), ({"test_source": "x"}, "test_source"),
                    ({"mask_size": 32}, "the synthetic nuclei's masks are exact")]:
        with pytest.raises(ConfigError, match=pat):
            load_splits(DataConfig(source="synthetic", n_synthetic=8, size=16, **kw), progress=False)


@pytest.mark.parametrize("size, mask_size, ok", [(16, 32, True), (16, 16, True), (16, 24, False), (32, 16, False)])
def test_mask_size_must_be_a_multiple_of_the_size(tiny_zip: Path, size, mask_size, ok) -> None:
    if ok:
        a = read_dsb(tiny_zip, size=size, mask_size=mask_size, progress=False)
        assert a.meta["mask_size"] == mask_size and a.meta["graded_den"] == 255 * (mask_size // size) ** 2
        assert np.array_equal(np.unique(a.masks), [0.0, 1.0]) and 0 < a.graded.mean() < 1
    else:
        with pytest.raises(DataError, match=f"mask_size {mask_size} must be a multiple of the image size {size}"):
            read_dsb(tiny_zip, size=size, mask_size=mask_size, progress=False)


# -- cache -------------------------------------------------------------------------------------


def _npz_files(d: Path) -> list[Path]:
    return sorted(d.glob("*.npz"))


@pytest.mark.parametrize("rule", ["code", "linear"])
def test_cache_hit_is_identical_and_skips_decoding(tiny_zip: Path, tmp_path: Path, monkeypatch, rule) -> None:
    cdir = tmp_path / "c"
    first = cached_read_dsb(tiny_zip, size=16, mask_rule=rule, directory=cdir, progress=False)
    assert len(_npz_files(cdir)) == 1

    def boom(*a, **k):
        raise AssertionError("decoded again instead of using the cache")

    monkeypatch.setattr(cache_mod, "read_dsb", boom)
    second = cached_read_dsb(tiny_zip, size=16, mask_rule=rule, directory=cdir, progress=False)
    assert second.ids == first.ids and second.source == first.source
    for x, y in ((first.images, second.images), (first.masks, second.masks)):
        assert x.dtype == y.dtype == np.float32 and x.shape == y.shape and np.array_equal(x, y)
    assert second.meta["mask_rule"] == rule and second.meta["sha256"] == source_digest(tiny_zip)
    # a partial read is served by the full entry
    part = cached_read_dsb(tiny_zip, size=16, mask_rule=rule, directory=cdir, progress=False, ids=first.ids[2:4])
    assert np.array_equal(part.images, first.images[2:4])


def test_cache_key_changes_with_settings_and_content(tmp_path: Path, monkeypatch) -> None:
    z1 = write_zip(tmp_path / "a.zip", tiny_samples(3, seed=0))
    z2 = write_zip(tmp_path / "b.zip", tiny_samples(3, seed=1))
    d1 = source_digest(z1)
    base = cache_mod.cache_key(digest=d1, size=16, mask_rule="code")
    variants = {
        "size": cache_mod.cache_key(digest=d1, size=32, mask_rule="code"),
        "rule": cache_mod.cache_key(digest=d1, size=16, mask_rule="linear"),
        "content": cache_mod.cache_key(digest=source_digest(z2), size=16, mask_rule="code"),
        "ids": cache_mod.cache_key(digest=d1, size=16, mask_rule="code", ids=["x"]),
        "mask_size": cache_mod.cache_key(digest=d1, size=16, mask_rule="code", mask_size=32),
    }
    monkeypatch.setattr(cache_mod, "FORMAT_VERSION", cache_mod.FORMAT_VERSION + 1)
    variants["format"] = cache_mod.cache_key(digest=d1, size=16, mask_rule="code")
    monkeypatch.undo()
    assert base == cache_mod.cache_key(digest=d1, size=16, mask_rule="code")
    assert len({base, *variants.values()}) == 1 + len(variants)
    # same content at another path: same digest; a folder hashes its paths and bytes
    z3 = write_zip(tmp_path / "copy.zip", tiny_samples(3, seed=0))
    assert source_digest(z3) == d1
    f1 = write_dir(tmp_path / "f1", tiny_samples(2))
    f2 = write_dir(tmp_path / "f2", tiny_samples(2))
    assert source_digest(f1) == source_digest(f2)
    (f2 / "extra.txt").write_text("x")  # not part of the layout: not read (issue 16)
    assert source_digest(f1) == source_digest(f2)
    mask = sorted(f2.glob("*/masks/*.png"))[0]
    mask.write_bytes(mask.read_bytes() + b"\0")
    assert source_digest(f1) != source_digest(f2)


@pytest.mark.parametrize("damage", ["garbage", "truncate", "flip", "empty"])
def test_corrupt_cache_file_is_rebuilt(tiny_zip: Path, tmp_path: Path, damage: str) -> None:
    cdir = tmp_path / "c"
    ref = cached_read_dsb(tiny_zip, size=16, directory=cdir, progress=False)
    (f,) = _npz_files(cdir)
    data = bytearray(f.read_bytes())
    if damage == "garbage":
        data = bytearray(b"not an npz" * 10)
    elif damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":
        i = data.find(b"\x93NUMPY") + 200  # inside the images array
        data[i : i + 8] = bytes(255 - b for b in data[i : i + 8])
    else:
        data = bytearray()
    f.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="rebuilding"):
        again = cached_read_dsb(tiny_zip, size=16, directory=cdir, progress=False)
    assert np.array_equal(again.images, ref.images) and np.array_equal(again.masks, ref.masks)
    assert cache_mod.load(f, cache_mod.cache_key(digest=source_digest(tiny_zip), size=16, mask_rule="code"),
                          source=str(tiny_zip)) is not None
    assert [p.name for p in cdir.iterdir()] == [f.name]


def test_cache_write_is_atomic(tiny_zip: Path, tmp_path: Path, monkeypatch) -> None:
    cdir = tmp_path / "c"

    def failing_savez(f, **arrays):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(cache_mod.np, "savez", failing_savez)
    with pytest.warns(UserWarning, match="could not write the cache"):
        a = cached_read_dsb(tiny_zip, size=16, directory=cdir, progress=False)
    assert len(a) == 6 and list(cdir.iterdir()) == []  # nothing half-written
    monkeypatch.undo()
    cached_read_dsb(tiny_zip, size=16, directory=cdir, progress=False)
    names = [p.name for p in cdir.iterdir()]
    assert len(names) == 1 and names[0].startswith("dsb-") and not any(n.startswith(".tmp") for n in names)


def test_cache_dir_precedence(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("INFOFLOW_CACHE", str(tmp_path / "env"))
    assert cache_mod.cache_dir(None) == tmp_path / "env"
    assert cache_mod.cache_dir(tmp_path / "cfg") == tmp_path / "cfg"
    monkeypatch.delenv("INFOFLOW_CACHE")
    assert cache_mod.cache_dir(None) == Path.home() / ".cache" / "infoflow"


# -- load_splits rules ---------------------------------------------------------------------------


def test_load_splits_seeded_split_of_one_source(tiny_zip: Path, tmp_path: Path) -> None:
    cfg = DataConfig(source=str(tiny_zip), size=16, val_fraction=0.34, split_seed=3, cache_dir=str(tmp_path / "c"))
    s = load_splits(cfg, progress=False)
    ids = list_ids(tiny_zip)
    assert (len(s.train), len(s.test)) == (4, 2)
    assert sorted(s.train.ids + s.test.ids) == ids and not set(s.train.ids) & set(s.test.ids)
    assert s.train.ids == sorted(s.train.ids) and s.test.ids == sorted(s.test.ids)
    again = load_splits(cfg, progress=False)
    assert again.test.ids == s.test.ids and np.array_equal(again.train.images, s.train.images)
    tests_by_seed = {tuple(load_splits(DataConfig(**{**cfg.__dict__, "split_seed": k}), progress=False).test.ids)
                     for k in range(6)}
    assert len(tests_by_seed) > 1
    lim = load_splits(DataConfig(**{**cfg.__dict__, "limit": 1}), progress=False)
    assert lim.train.ids == s.train.ids[:1] and lim.test.ids == s.test.ids[:1]
    assert np.array_equal(lim.train.images[0], s.train.images[0])


def test_load_splits_test_source_and_shared_layout(tmp_path: Path) -> None:
    shared = tmp_path / "dsb"
    shared.mkdir()
    write_zip(shared / "stage1_train.zip", tiny_samples(5, seed=0))
    write_zip(shared / "stage1_test.zip", tiny_samples(3, seed=9))
    c = str(tmp_path / "c")
    s = load_splits(DataConfig(source=str(shared), size=16, cache_dir=c), progress=False)
    assert (len(s.train), len(s.test)) == (5, 3)
    assert s.train.ids == list_ids(shared / "stage1_train.zip") and s.test.ids == list_ids(shared / "stage1_test.zip")
    s2 = load_splits(DataConfig(source=str(shared / "stage1_train.zip"), test_source=str(shared / "stage1_test.zip"),
                                size=16, cache_dir=c, limit=2), progress=False)
    assert s2.train.ids == s.train.ids[:2] and s2.test.ids == s.test.ids[:2]
    assert np.array_equal(s2.test.masks, s.test.masks[:2])
    with pytest.raises(DataError, match="test_source"):
        load_splits(DataConfig(source=str(shared / "stage1_train.zip"), test_source=str(tmp_path / "nope.zip"),
                               size=16, cache_dir=c), progress=False)
    with pytest.raises(DataError, match="no such file"):
        load_splits(DataConfig(source=str(tmp_path / "nope"), size=16, cache_dir=c), progress=False)


@pytest.mark.parametrize("n,val_fraction,limit,expected", [(20, 0.1, None, (18, 2)), (20, 0.25, None, (15, 5)),
                                                            (20, 0.5, 3, (3, 3)), (3, 0.01, None, (2, 1))])
def test_load_splits_synthetic(n, val_fraction, limit, expected) -> None:
    cfg = DataConfig(source="synthetic", n_synthetic=n, size=16, val_fraction=val_fraction, limit=limit)
    s = load_splits(cfg, progress=False)
    assert (len(s.train), len(s.test)) == expected
    assert not set(s.train.ids) & set(s.test.ids)
    assert s.train.images.shape[1:] == (3, 16, 16) and s.test.masks.shape[1:] == (1, 16, 16)


def test_segarrays_subset_and_validation() -> None:
    from infoflow.data import make_synthetic

    a = make_synthetic(5, size=16, seed=0)
    sub = a.subset([3, 1])
    assert sub.ids == [a.ids[3], a.ids[1]] and np.array_equal(sub.images[0], a.images[3])
    assert len(a.subset(np.array([True, False, True, False, False]))) == 2
    assert a.subset(slice(1, 3)).ids == a.ids[1:3]
    assert len(a.subset([])) == 0
    with pytest.raises(IndexError):
        a.subset([5])
    with pytest.raises(DataError, match="ids"):
        SegArrays(a.images, a.masks, a.ids[:4], "x")
    with pytest.raises(DataError, match="masks"):
        SegArrays(a.images, a.masks[:, :, :8], a.ids, "x")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train, test = load_splits(DataConfig(source="synthetic", n_synthetic=10, size=16), progress=False)
    assert len(train) + len(test) == 10


# -- hostile zips and folders (issue 16) ------------------------------------------------------------


def _declare(path: Path, member: str, size: int) -> Path:
    """Patch ``member``'s declared uncompressed size in the central directory and the local header
    (a zip that lies; zipfile would inflate up to the declared size)."""
    raw = bytearray(path.read_bytes())
    name = member.encode()
    for sig, off in ((b"PK\x01\x02", 24), (b"PK\x03\x04", 22)):  # central directory, local header
        i = 0
        while (i := raw.find(sig, i)) >= 0:
            name_at = i + (46 if sig == b"PK\x01\x02" else 30)
            if raw[name_at:name_at + len(name)] == name:
                raw[i + off:i + off + 4] = struct.pack("<I", size)
            i += 4
    path.write_bytes(bytes(raw))
    return path


BOMB_SCRIPT = r"""
import re, sys, time
from infoflow.data import read_dsb
from infoflow.errors import DataError

def peak_kb():  # this process image's peak RSS (VmHWM; ru_maxrss would keep the forking parent's)
    with open("/proc/self/status") as fh:
        return int(re.search(r"VmHWM:\s+(\d+)", fh.read()).group(1))

t = time.process_time()  # CPU seconds of this process: what the refusal costs, whatever else runs
try:
    read_dsb(sys.argv[1], size=16, progress=False)
    print("accepted")
except DataError as exc:
    print(f"{time.process_time() - t:.3f} {peak_kb()} {exc}")
"""


@pytest.mark.parametrize("kind", ["declared", "ratio"])
def test_zip_bombs_are_refused_at_once_by_member(tmp_path: Path, kind: str) -> None:
    """A member declaring 3 GiB (the issue's 3.3 MB zip ran 274 s to 6.6 GB RSS) and a member that
    really expands 1000-fold are refused from their headers, in well under a second, naming the
    member, within 200 MB of peak memory for the whole process (CPU seconds, not wall time: the
    test does not depend on how busy the machine is)."""
    import subprocess
    import sys

    files = tiny_samples(3)
    member = sorted(f for f in files if "/images/" in f)[0]
    if kind == "ratio":
        files[member] = b"\0" * (8 << 20)  # 8 MiB of zeros deflate to ~8 KB
    z = write_zip(tmp_path / "bomb.zip", files)
    if kind == "declared":
        _declare(z, member, 3 << 30)
    out = subprocess.run([sys.executable, "-c", BOMB_SCRIPT, str(z)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    seconds, rss_kb, message = out.stdout.strip().split(" ", 2)
    assert float(seconds) < 1.0 and int(rss_kb) < 200 * 1024, out.stdout
    assert member in message and ("zip bomb" in message or "declares" in message), message


def test_folder_reads_only_the_layouts_regular_files(tmp_path: Path) -> None:
    """FIFOs, a link to /dev/zero, hidden files and stray files in a data folder are never read:
    neither by the reader nor by the cache's hash (which once hung on them)."""
    import os

    files = tiny_samples(3)
    d = write_dir(tmp_path / "data", files)
    digest = source_digest(d)
    sid = sorted(f.split("/")[0] for f in files)[0]
    os.mkfifo(d / sid / "masks" / "pipe.png")
    os.mkfifo(d / "fifo")
    os.symlink("/dev/zero", d / sid / "images" / "zero.png")
    (d / ".hidden").write_bytes(b"x" * 1000)
    (d / "notes.txt").write_text("not a sample")
    assert source_digest(d) == digest  # nothing the layout does not use enters the hash
    a = read_dsb(d, size=16, progress=False)
    assert len(a) == 3
    (d / sid / "masks" / "m0.png").write_bytes(files[f"{sid}/masks/m0.png"][:-1] + b"\1")
    assert source_digest(d) != digest  # a layout file does
