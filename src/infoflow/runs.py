"""The run directory: the one reader and writer of everything a run stores.

Layout (see docs/ARCHITECTURE.md)::

    RUN/config.json  run.log  metrics.csv  layer_stats.csv  mi.csv  probe.npz
        matrices/e000001.npz  predictions/e000001.npz  checkpoints/last.pt  figures/  report.html

Every write is atomic: the bytes go to a temporary file in the same folder, which then replaces
the target with :func:`os.replace`, so a run killed at any moment leaves either the old or the
new file, never half of one. Tables are small and rewritten whole.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import io
import json
import os
import re
import socket
import tempfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# torch is imported inside the three methods that write versions and checkpoints: the CLI's command
# modules import RunDir at their top, and `infoflow --help` must not wait for torch (docs/ARCHITECTURE.md).
from . import __version__
from .config import RunConfig
from .errors import ConfigError, RunDamaged, RunError, RunLocked, StorageFull
from .estimators.table import normalize_table  # at_floor, baseline and today's settings for older tables

CONFIG = "config.json"
METRICS = "metrics.csv"
LAYER_STATS = "layer_stats.csv"
MI = "mi.csv"
PROBE = "probe.npz"
LOG = "run.log"
PRED_INPUTS = "inputs.npz"  # in predictions/: inputs and ground truth of the predicted images
ESTIMATES = "estimates"  # `infoflow estimate` output: mi-<tag>.csv and its siblings mi-<tag>.<kind>.csv
LOCK = ".lock"  # held (flock) by the process that writes the run


#: Errors of a write that mean "no room": disk full, file size limit (RLIMIT_FSIZE), quota.
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})


def storage_full(exc: OSError, target: str | os.PathLike[str]) -> StorageFull | None:
    """The one-line error for a write of ``target`` that failed for lack of room, else None."""
    if exc.errno not in STORAGE_ERRNOS:
        return None
    what = os.strerror(exc.errno or 0)
    return StorageFull(f"cannot write {target}: {what} ({errno.errorcode.get(exc.errno or 0, exc.errno)}); "
                       "make room, then run the command again (earlier results are kept)")


@contextlib.contextmanager
def writing(target: str | os.PathLike[str]) -> Iterator[None]:
    """A block that writes ``target``: a write failing for lack of room becomes :class:`StorageFull`
    naming ``target``, one line instead of a bare OSError."""
    try:
        yield
    except OSError as exc:
        full = storage_full(exc, target)
        if full is None:
            raise
        raise full from None


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it replaces ``target`` atomically.

    Every file of a run is written through here. When the write fails (a full disk: StorageFull
    naming ``target``) the temporary file is removed and ``target`` keeps its earlier content."""
    target = Path(target)
    tmp_path: Path | None = None
    try:
        with writing(target):
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
            os.close(fd)
            tmp_path = Path(tmp)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
            yield tmp_path
            with open(tmp_path, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp_path, target)
    finally:
        if tmp_path is not None and tmp_path.exists():
            tmp_path.unlink()


def atomic_write_bytes(target: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(target: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(target, text.encode("utf-8"))


def atomic_savez(target: str | os.PathLike[str], *, compressed: bool = False, **arrays: Any) -> None:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    atomic_write_bytes(target, buf.getvalue())


_EPOCH_FILE = re.compile(r"^e(\d{6})\.npz$")


def _epoch_files(folder: Path) -> list[tuple[int, Path]]:
    """``(epoch, path)`` of the ``eNNNNNN.npz`` files of a folder, by epoch; other names are not ours."""
    if not folder.is_dir():
        return []
    out = [(int(m.group(1)), f) for f in folder.iterdir() if (m := _EPOCH_FILE.match(f.name)) and f.is_file()]
    return sorted(out)


#: What the run's tables must hold: columns, the numeric ones, and whether each epoch is whole.
TABLES: dict[str, dict[str, Any]] = {
    METRICS: {"columns": ("epoch",), "numeric": ("epoch",)},
    LAYER_STATS: {"columns": ("epoch", "layer", "name", "weight_norm"), "numeric": ("epoch", "layer", "weight_norm")},
    MI: {"columns": ("epoch", "layer", "name", "estimator", "setting", "labels", "quantity", "value"),
         "numeric": ("epoch", "layer", "value"), "whole_epochs": True},
}


def check_table(frame: pd.DataFrame, path: Path, *, columns: tuple[str, ...], numeric: tuple[str, ...] = (),
                whole_epochs: bool = False) -> None:
    """RunError, naming ``path``, when a table lacks a column, holds text where a number belongs
    or ends in a cut epoch (``whole_epochs``: every epoch has as many rows as the others; a file
    cut short leaves its last epoch with fewer)."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise RunDamaged(f"{path} is damaged: it lacks the column(s) {', '.join(missing)}")
    for c in numeric:
        values = pd.to_numeric(frame[c], errors="coerce")
        bad = values.isna() & frame[c].notna() | (values.isna() if c == "epoch" else False)
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise RunDamaged(f"{path} is damaged: column {c} holds {frame[c].iloc[row]!r} (row {row + 2}), not a number")
    epochs = pd.to_numeric(frame["epoch"]).astype(np.int64)
    if whole_epochs:
        counts = epochs.value_counts()
        if counts.nunique() > 1:
            short = int(counts.idxmin())
            raise RunDamaged(f"{path} is damaged: epoch {short} has {int(counts.min())} rows, other epochs "
                           f"{int(counts.max())} (the file was cut short); rebuild it from the stored matrices "
                           "with `infoflow estimate RUN --out RUN/mi.csv`")


_SIBLING = re.compile(r"\.[A-Za-z][A-Za-z-]*\.csv$")


def sibling_path(table: str | os.PathLike[str], kind: str) -> Path:
    """The table beside an estimates file: ``mi-x.csv`` -> ``mi-x.<kind>.csv``."""
    table = Path(table)
    return table.with_name(f"{table.stem}.{kind}.csv")


class _NpzView:
    """The arrays of an open ``.npz``: ``z[key]`` reads one (errors name the file and the key)."""

    def __init__(self, path: Path, z: Any) -> None:
        self.path, self._z = path, z

    def __contains__(self, key: str) -> bool:
        return key in self._z.files

    def __getitem__(self, key: str) -> np.ndarray:
        try:
            return self._z[key]
        except KeyError:
            raise RunDamaged(f"{self.path} is damaged: it has no array {key!r}") from None
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            raise RunDamaged(f"{self.path} is damaged: array {key!r} does not read ({type(exc).__name__}: {exc})") from None


@contextlib.contextmanager
def read_npz(path: Path) -> Iterator[_NpzView]:
    """Open a stored ``.npz`` of the run; a truncated, foreign or pickled file (never unpickled)
    is a RunError naming it."""
    try:
        z = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise RunError(f"{path} does not exist") from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise RunDamaged(f"{path} is damaged: not an array file infoflow wrote ({type(exc).__name__}: {exc})") from None
    if not hasattr(z, "files"):  # a bare .npy
        raise RunDamaged(f"{path} is damaged: a single array, not an array file infoflow wrote")
    try:
        yield _NpzView(path, z)
    except RunError:
        raise
    except (TypeError, IndexError, ValueError) as exc:  # arrays of the wrong kind or shape for what they hold
        raise RunDamaged(f"{path} is damaged: {type(exc).__name__}: {exc}") from None
    finally:
        z.close()


def epoch_file(epoch: int) -> str:
    return f"e{epoch:06d}.npz"


@dataclass
class Matrices:
    """What one logged epoch stores: per-layer squared-distance matrices and binned codes."""

    epoch: int
    names: list[str]
    dims: np.ndarray  # (L,) int64, D of each layer
    dist: np.ndarray  # (L, N, N) float32 squared distances
    codes: dict[float, np.ndarray]  # bin size -> (L, N) int64 symbol ids
    dist_input: np.ndarray | None  # (N, N) float32 distances of the input images, or None

    def take(self, idx: np.ndarray | None) -> "Matrices":
        """The same epoch restricted to the probe samples ``idx`` (None: itself)."""
        if idx is None:
            return self
        idx = np.asarray(idx)
        return Matrices(self.epoch, list(self.names), self.dims, self.dist[:, idx][:, :, idx],
                        {b: c[:, idx] for b, c in self.codes.items()},
                        None if self.dist_input is None else self.dist_input[idx][:, idx])


PROBE_SUBSETS = ("all", "train", "test")


def _pack(masks: np.ndarray) -> np.ndarray:
    return np.packbits(np.asarray(masks) > 0.5, axis=1) if masks.ndim == 2 else \
        np.packbits((np.asarray(masks) > 0.5).reshape(len(masks), -1), axis=1)


def _unpack(packed: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    n = len(packed)
    return np.unpackbits(packed, axis=1, count=int(np.prod(shape))).reshape((n, *shape)).astype(np.float32)


@dataclass
class ProbeRecord:
    """What a run stores about its probe set (``probe.npz``): everything but the images.

    ``y_masks`` are the masks the output classes Y were made from (``y_from``: ``"code"``, the
    graded masks of the paper's MI notebooks, or ``"binary"``, the training masks); K-means was
    fitted on ``fit_y_masks`` (the training split's). With ``y_den > 0`` both are integers /
    ``y_den`` and are stored exactly as uint16 numerators; otherwise as float32. ``split`` names
    each sample's split (``"train"`` / ``"test"``), when known.
    """

    ids: list[str]
    masks: np.ndarray  # (N, 1, S, S) float32 0/1: the training masks (figures)
    y_masks: np.ndarray  # (N, 1, S, S) float64: the masks Y is made from
    fit_y_masks: np.ndarray  # (M, 1, S, S) float64: the masks K-means is fitted on
    fit_masks: np.ndarray  # (M, 1, S, S) float32 0/1: the training masks of the same samples
    labelings: dict[str, np.ndarray]  # labelling name -> (N,) int64 classes
    split: np.ndarray | None = None  # (N,) str "train" / "test"; None: unknown
    y_from: str = "binary"  # "code" (graded masks) or "binary" (training masks)
    y_den: int = 0  # y masks are integers / y_den; 0: arbitrary values

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, name: str | None) -> np.ndarray | None:
        """Indices of the named probe subset: ``"train"`` / ``"test"`` (the samples of that split),
        ``"all"`` or None (None: no subsetting)."""
        if name is None or name == "all":
            return None
        if name not in PROBE_SUBSETS:
            raise RunError(f"probe subset must be one of {', '.join(PROBE_SUBSETS)}, got {name!r}")
        if self.split is None:
            raise RunError(f"probe subset {name!r}: this run's probe set does not record each sample's split")
        idx = np.flatnonzero(self.split == name)
        if len(idx) < 2:
            have = ", ".join(sorted(set(self.split.tolist()))) or "none"
            raise RunError(f"probe subset {name!r} holds {len(idx)} sample(s) (the probe set's splits: {have}); "
                           "MI needs at least 2")
        return idx

    def to_arrays(self) -> dict[str, np.ndarray]:
        shape = tuple(self.masks.shape[1:])
        out: dict[str, np.ndarray] = {
            "format": np.int64(2),
            "ids": np.array(self.ids),
            "masks_packed": _pack(self.masks),
            "fit_masks_packed": _pack(self.fit_masks),
            "mask_shape": np.array(shape, dtype=np.int64),
            "y_from": np.array(self.y_from),
            "y_den": np.int64(self.y_den),
            "labelings": np.array(sorted(self.labelings)),
        }
        if self.split is not None:
            out["split"] = np.asarray(self.split).astype(str)
        for key, arr in (("y", self.y_masks), ("fit_y", self.fit_y_masks)):
            if self.y_den > 0:
                out[f"{key}_num"] = np.rint(np.asarray(arr, dtype=np.float64) * self.y_den).astype(np.uint16)
            else:
                out[f"{key}_masks"] = np.asarray(arr, dtype=np.float32)
        for name, lab in self.labelings.items():
            out[f"labels_{name}"] = np.asarray(lab, dtype=np.int64)
        return out

    @classmethod
    def from_arrays(cls, z: dict[str, np.ndarray]) -> "ProbeRecord":
        shape = tuple(int(s) for s in z["mask_shape"])
        masks = _unpack(z["masks_packed"], shape)
        labelings = {str(k): z[f"labels_{k}"] for k in z["labelings"]}
        fit_masks = _unpack(z["fit_masks_packed"], shape)
        if "format" not in z:  # runs before graded masks: Y came from the binary training masks
            return cls([str(i) for i in z["ids"]], masks, masks.astype(np.float64), fit_masks.astype(np.float64),
                       fit_masks, labelings)
        den = int(z["y_den"])

        def read(key: str) -> np.ndarray:
            if den > 0:
                return z[f"{key}_num"].astype(np.float64) / den
            return z[f"{key}_masks"].astype(np.float64)

        return cls([str(i) for i in z["ids"]], masks, read("y"), read("fit_y"), fit_masks, labelings,
                   split=z["split"].astype(str) if "split" in z else None, y_from=str(z["y_from"]), y_den=den)


_HELD: dict[str, list[Any]] = {}  # resolved run path -> [open lock file, depth]: a process's locks are re-entrant


@contextlib.contextmanager
def run_lock(path: str | os.PathLike[str], *, what: str = "writes") -> Iterator[None]:
    """Hold the run's writer lock (``RUN/.lock``, an exclusive ``flock``) for the block.

    Every command that writes a run takes it; a second writer gets :class:`RunLocked`, one line
    naming the process that holds it. The operating system releases it when its process ends
    (even by SIGKILL), so a killed run never stays locked. Re-entrant within a process.
    """
    folder = Path(path)
    key = str(folder.resolve())
    if key not in _HELD:
        if folder.exists() and not folder.is_dir():
            raise RunError(f"{folder} is a file, not a run directory: choose another --out")
        folder.mkdir(parents=True, exist_ok=True)
        fh = open(folder / LOCK, "a+", encoding="utf-8")
        try:
            import fcntl

            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # pragma: no cover - Windows: no flock; writes stay atomic
            pass
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise RunLocked(f"{folder} is in use: {holder} (lock {folder / LOCK}); wait for it to end") from None
        stamp = (f"pid {os.getpid()} on {socket.gethostname()} {what} it since "
                 f"{_dt.datetime.now().isoformat(timespec='seconds')}\n")
        try:
            with writing(folder / LOCK):  # unbuffered: a failed write leaves nothing for close() to retry
                os.ftruncate(fh.fileno(), 0)
                os.write(fh.fileno(), stamp.encode("utf-8"))
        except StorageFull:
            fh.close()
            raise
        _HELD[key] = [fh, 0]
    entry = _HELD[key]
    entry[1] += 1
    try:
        yield
    finally:
        entry[1] -= 1
        if entry[1] == 0:  # the last holder in this process lets go, whichever entered first
            del _HELD[key]
            entry[0].close()


class RunDir:
    """A run directory. ``RunDir(path)`` opens one (it need not exist yet: use :meth:`create`)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    # -- creation and config ------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike[str], config: dict[str, Any], *, exist_ok: bool = False) -> "RunDir":
        run = cls(path)
        if run.path.exists() and not run.path.is_dir():
            raise RunError(f"{run.path} is a file, not a run directory: choose another --out")
        if run.config_path.exists() and not exist_ok:
            raise RunError(f"{run.config_path} exists: pass --resume to continue that run, or choose another --out")
        run.path.mkdir(parents=True, exist_ok=True)
        run.write_config(config)
        return run

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> "RunDir":
        run = cls(path)
        if not run.path.is_dir():
            raise RunError(f"run directory {run.path} does not exist")
        if not run.config_path.exists():
            raise RunError(f"{run.path} is not a run directory: it has no {CONFIG}")
        run.config()  # a damaged config.json is named before anything reads it
        return run

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG

    def lock(self, what: str = "writes") -> contextlib.AbstractContextManager[None]:
        """The run's writer lock (:func:`run_lock`)."""
        return run_lock(self.path, what=what)

    def write_config(self, config: dict[str, Any]) -> None:
        import torch  # torch only where checkpoints and versions are written: see the module's imports

        doc = dict(config)
        doc.setdefault("_meta", {"infoflow": __version__, "torch": torch.__version__,
                                 "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")})
        atomic_write_text(self.config_path, json.dumps(doc, indent=2, sort_keys=True) + "\n")

    def read_config(self) -> dict[str, Any]:
        try:
            doc = json.loads(self.config_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RunError(f"{self.path} is not a run directory: it has no {CONFIG}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RunDamaged(f"{self.config_path} is damaged: not valid JSON ({exc})") from None
        if not isinstance(doc, dict):
            raise RunDamaged(f"{self.config_path} is damaged: not a run's config (a JSON object)")
        doc.pop("_meta", None)
        return doc

    def config(self) -> RunConfig:
        """The run's :class:`~infoflow.config.RunConfig`; a bad value is an error naming config.json."""
        doc = self.read_config()
        try:
            return RunConfig.from_dict(doc)
        except ConfigError as exc:
            raise RunDamaged(f"{self.config_path} is damaged: {exc}") from None

    # -- log ----------------------------------------------------------------------------------
    def log(self, message: str) -> None:
        """Append a timestamped line to run.log (appends are line-atomic)."""
        self.path.mkdir(parents=True, exist_ok=True)
        stamp = _dt.datetime.now().isoformat(timespec="seconds")
        with writing(self.path / LOG), open(self.path / LOG, "a", encoding="utf-8") as fh:
            fh.write(f"{stamp} {message}\n")

    # -- tables -------------------------------------------------------------------------------
    def _write_table(self, name: str, frame: pd.DataFrame) -> None:
        with atomic_path(self.path / name) as tmp:
            frame.to_csv(tmp, index=False)

    def _read_table(self, name: str | Path, spec: dict[str, Any] | None = None) -> pd.DataFrame:
        """A table of the run, checked: readable CSV, its columns, numbers where numbers belong,
        whole epochs (``spec``, default :data:`TABLES`'s); an empty frame when the file does not
        exist yet."""
        p = self.path / name
        if not p.exists() or p.stat().st_size == 0:
            return pd.DataFrame()
        try:
            frame = pd.read_csv(p)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
            raise RunDamaged(f"{p} is damaged: not a CSV table ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
        spec = TABLES.get(str(name)) if spec is None else spec
        if spec is not None and not frame.empty:
            check_table(frame, p, **spec)
        return frame

    def _append_table(self, name: str, rows: pd.DataFrame | Iterable[dict[str, Any]]) -> None:
        new = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
        old = self._read_table(name)
        frame = new if old.empty else pd.concat([old, new], ignore_index=True)
        self._write_table(name, frame)

    def append_metrics(self, rows: pd.DataFrame | Iterable[dict[str, Any]]) -> None:
        self._append_table(METRICS, rows)

    def read_metrics(self) -> pd.DataFrame:
        return self._read_table(METRICS)

    def append_layer_stats(self, rows: pd.DataFrame | Iterable[dict[str, Any]]) -> None:
        self._append_table(LAYER_STATS, rows)

    def read_layer_stats(self) -> pd.DataFrame:
        return self._read_table(LAYER_STATS)

    def append_mi(self, rows: pd.DataFrame) -> None:
        self._append_table(MI, rows)

    def write_mi(self, frame: pd.DataFrame, name: str = MI) -> None:
        self._write_table(name, frame)

    def read_mi(self, name: str = MI) -> pd.DataFrame:
        return normalize_table(self._read_table(name))

    def check(self) -> None:
        """Read every table, stored array and the config once: RunDamaged names the first damaged
        file. What resuming does before it writes anything."""
        self.config()
        for name in TABLES:
            self._read_table(name)
        if (self.path / PROBE).exists():
            self.load_probe()

    def truncate_after(self, epoch: int) -> None:
        """Drop every table row and stored file of an epoch after ``epoch`` (used on resume), and
        the temporary files of writes that a killed process left behind."""
        for name in (METRICS, LAYER_STATS, MI):
            frame = self._read_table(name)
            if not frame.empty and "epoch" in frame and (frame["epoch"] > epoch).any():
                self._write_table(name, frame[frame["epoch"] <= epoch])
        for folder in (self.matrices_dir, self.predictions_dir):
            for e, f in _epoch_files(folder):
                if e > epoch:
                    f.unlink()
        self.remove_litter()

    def remove_litter(self) -> list[Path]:
        """Delete the ``.<name>.*.tmp`` files of atomic writes a killed process never finished
        (only this run's own: the caller holds its lock). Returns what was removed."""
        gone = []
        for folder in (self.path, self.matrices_dir, self.predictions_dir, self.estimates_dir,
                       self.checkpoint_path.parent, self.figures_dir):
            if folder.is_dir():
                for f in folder.glob(".*.tmp"):
                    with contextlib.suppress(OSError):
                        f.unlink()
                        gone.append(f)
        if gone:
            self.log(f"removed {len(gone)} temporary file(s) of interrupted writes: {', '.join(p.name for p in gone)}")
        return gone

    # -- probe set facts ----------------------------------------------------------------------
    def save_probe(self, record: "ProbeRecord") -> None:
        """Store what the run knows about its probe set (``probe.npz``; no images)."""
        atomic_savez(self.path / PROBE, compressed=True, **record.to_arrays())

    def load_probe(self) -> "ProbeRecord":
        p = self.path / PROBE
        if not p.exists():
            raise RunError(f"{self.path} has no {PROBE}: the run recorded no MI (was it trained with MI enabled?)")
        with read_npz(p) as z:
            return ProbeRecord.from_arrays(z)

    # -- matrices -----------------------------------------------------------------------------
    @property
    def matrices_dir(self) -> Path:
        return self.path / "matrices"

    def save_matrices(self, m: Matrices) -> Path:
        arrays: dict[str, Any] = {
            "epoch": np.int64(m.epoch),
            "names": np.array(m.names),
            "dims": np.asarray(m.dims, dtype=np.int64),
            "dist": np.asarray(m.dist, dtype=np.float32),
            "bin_sizes": np.array(sorted(m.codes), dtype=np.float64),
        }
        for i, b in enumerate(sorted(m.codes)):
            arrays[f"codes_{i}"] = np.asarray(m.codes[b], dtype=np.int64)
        if m.dist_input is not None:
            arrays["dist_input"] = np.asarray(m.dist_input, dtype=np.float32)
        target = self.matrices_dir / epoch_file(m.epoch)
        atomic_savez(target, **arrays)
        return target

    def load_matrices(self, epoch: int) -> Matrices:
        p = self.matrices_dir / epoch_file(epoch)
        if not p.exists():
            raise RunError(f"{p} does not exist: epoch {epoch} has no stored matrices "
                           f"(logged epochs with matrices: {self.matrix_epochs()})")
        with read_npz(p) as z:
            bins = [float(b) for b in z["bin_sizes"]]
            m = Matrices(
                epoch=int(z["epoch"]), names=[str(n) for n in z["names"]], dims=z["dims"], dist=z["dist"],
                codes={b: z[f"codes_{i}"] for i, b in enumerate(bins)},
                dist_input=z["dist_input"] if "dist_input" in z else None,
            )
        n_layers = len(m.names)
        if (m.epoch != epoch or m.dist.ndim != 3 or m.dist.shape[0] != n_layers or m.dist.shape[1] != m.dist.shape[2]
                or len(m.dims) != n_layers):
            raise RunDamaged(f"{p} is damaged: epoch {m.epoch}, {n_layers} layer names, distances of shape "
                           f"{m.dist.shape} do not fit together")
        return m

    def matrix_epochs(self) -> list[int]:
        return [e for e, _ in _epoch_files(self.matrices_dir)]

    # -- predictions --------------------------------------------------------------------------
    @property
    def predictions_dir(self) -> Path:
        return self.path / "predictions"

    def save_predictions(self, epoch: int, probs: np.ndarray, ids: list[str]) -> None:
        atomic_savez(self.predictions_dir / epoch_file(epoch), probs=np.asarray(probs, dtype=np.float16),
                     ids=np.array(ids), epoch=np.int64(epoch))

    def load_predictions(self, epoch: int) -> np.ndarray:
        with read_npz(self.predictions_dir / epoch_file(epoch)) as z:
            return z["probs"].astype(np.float32)

    def save_prediction_inputs(self, images: np.ndarray, masks: np.ndarray, ids: list[str]) -> None:
        """Store, once per run, the input images and ground-truth masks of the images whose
        predictions are saved (uint8, for figures: paper Fig. 6)."""
        img = np.round(np.clip(np.asarray(images, dtype=np.float32), 0, 1) * 255).astype(np.uint8)
        atomic_savez(self.predictions_dir / PRED_INPUTS, images=img,
                     masks=(np.asarray(masks) > 0.5).astype(np.uint8), ids=np.array(ids))

    def load_prediction_inputs(self) -> dict[str, Any] | None:
        """``{"images": (n,C,S,S) float32 in [0,1], "masks": (n,1,S,S) float32, "ids": [str]}``, or
        None when the run did not store them (older runs)."""
        p = self.predictions_dir / PRED_INPUTS
        if not p.exists():
            return None
        with read_npz(p) as z:
            return {"images": z["images"].astype(np.float32) / 255.0, "masks": z["masks"].astype(np.float32),
                    "ids": [str(i) for i in z["ids"]]}

    def prediction_epochs(self) -> list[int]:
        return [e for e, _ in _epoch_files(self.predictions_dir)]

    # -- checkpoints ----------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.path / "checkpoints" / "last.pt"

    def save_checkpoint(self, epoch: int, model_state: dict[str, Any], optimizer_state: dict[str, Any],
                        config: dict[str, Any]) -> None:
        """``checkpoints/last.pt``: the state after ``epoch`` (loads with ``weights_only=True``)."""
        import torch  # see the module's imports

        state = {"epoch": int(epoch), "model": model_state, "optimizer": optimizer_state,
                 "config": json.dumps(config, sort_keys=True)}
        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write_bytes(self.checkpoint_path, buf.getvalue())

    def load_checkpoint(self, *, map_location: Any = "cpu") -> dict[str, Any] | None:
        """The last checkpoint (``epoch``, ``model``, ``optimizer``, ``config``), None when there is none."""
        import torch  # see the module's imports

        path = self.checkpoint_path
        if not path.exists():
            return None
        try:
            return torch.load(path, map_location=map_location, weights_only=True)
        except Exception as exc:  # a damaged or foreign file; a pickle of other objects is refused, never run
            import pickle

            if isinstance(exc, pickle.UnpicklingError) and "weights_only" in str(exc).lower():
                why = "it holds Python objects other than weights; refused, nothing in it was run"
            else:
                why = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"
            raise RunDamaged(f"{path} is damaged: the checkpoint cannot be read ({why})") from None

    # -- re-estimated tables (`infoflow estimate`) ---------------------------------------------
    @property
    def estimates_dir(self) -> Path:
        return self.path / ESTIMATES

    def estimates_path(self, tag: str) -> Path:
        """``estimates/mi-<tag>.csv``: a table of re-estimated MI."""
        return self.estimates_dir / f"mi-{tag}.csv"

    def estimate_tables(self, kind: str | None = None) -> list[Path]:
        """The stored estimate tables, oldest first: the MI tables (``kind`` None: ``mi-*.csv``
        without a suffix) or their siblings of one kind (``"uncertainty"``, ``"robustness"``, ...)."""
        if not self.estimates_dir.is_dir():
            return []
        files = [p for p in self.estimates_dir.glob("mi-*.csv") if p.is_file()]
        # a sibling is mi-<tag>.<kind>.csv with a word for kind; tags hold numbers such as 0.2
        files = [p for p in files if (not _SIBLING.search(p.name) if kind is None else p.name.endswith(f".{kind}.csv"))]
        return sorted(files, key=lambda p: (p.stat().st_mtime_ns, p.name))

    def newest_estimate(self, kind: str | None = None) -> Path | None:
        """The newest of :meth:`estimate_tables`, or None."""
        files = self.estimate_tables(kind)
        return files[-1] if files else None

    def estimate_table(self, name: str | os.PathLike[str]) -> Path:
        """The stored MI table ``name`` names: its tag (``estimates/mi-<tag>.csv``), its file
        name in estimates/, or a path. RunError naming the stored tags when there is none."""
        p = Path(name)
        for cand in (self.estimates_path(str(name)), self.estimates_dir / p.name if p.name == str(name) else None,
                     p if p.is_absolute() else None, self.path / p, p):
            if cand is not None and cand.is_file():
                return cand
        tags = [t.name[3:-4] for t in self.estimate_tables()]
        raise RunError(f"{self.path} has no estimate table {str(name)!r}: "
                       + (f"its tags are {', '.join(tags)}" if tags else "it has none (write one with "
                          "`infoflow estimate RUN ...`)"))

    def read_estimates(self, path: str | os.PathLike[str]) -> pd.DataFrame:
        """A stored estimate table (:meth:`estimate_table`), checked as mi.csv is."""
        return normalize_table(self._read_table(self.estimate_table(path), TABLES[MI]))

    def write_table(self, path: str | os.PathLike[str], frame: pd.DataFrame) -> Path:
        """Write a table of this run (atomically): an estimates file or one of its siblings."""
        path = Path(path)
        with atomic_path(path) as tmp:
            frame.to_csv(tmp, index=False)
        return path

    # -- outputs ------------------------------------------------------------------------------

    @property
    def figures_dir(self) -> Path:
        return self.path / "figures"

    @property
    def report_path(self) -> Path:
        return self.path / "report.html"

    def is_finished(self) -> bool:
        """True when the metrics table reaches the configured number of epochs."""
        try:
            epochs = int(self.read_config()["train"]["epochs"])
        except (RunError, KeyError):
            return False
        metrics = self.read_metrics()
        return not metrics.empty and int(metrics["epoch"].max()) >= epochs
