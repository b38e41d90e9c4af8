"""From runs (or tables) to the numbers a figure draws: selections, seed aggregates, network layouts."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np
import pandas as pd

from ..errors import InfoflowError, RunError
from ..analysis.selections import DEFAULT_ESTIMATOR, DEFAULT_LABELS, Selection, select  # noqa: F401
from ..models.unet import layout_from_config
from ..network import NetworkLayout
from ..runs import RunDir

Source = Union[RunDir, str, os.PathLike, pd.DataFrame]

#: The logged epochs the paper's code drew in its U-Plots (Fig. 4), in infoflow's 1-based epochs:
#: the code's Keras epochs 1, 10, 100, 500, 1000, 2000, 5000, 9900 are 0-based (Keras epoch k
#: ends after k + 1 epochs of training), and each is in the code schedule (methods.md section 3).
CODE_UPLOT_EPOCHS: tuple[int, ...] = (2, 11, 101, 501, 1001, 2001, 5001, 9901)
#: The epochs of the paper's Fig. 6.
PAPER_PREDICTION_EPOCHS: tuple[int, ...] = (1000, 2000, 5000, 10000)



# -- inputs -----------------------------------------------------------------------------------
def as_run(x: Any) -> RunDir | None:
    if isinstance(x, RunDir):
        return x
    if isinstance(x, (str, os.PathLike)):
        return RunDir.open(x)
    return None


def as_list(source: Any) -> list[Any]:
    if isinstance(source, (RunDir, str, os.PathLike, pd.DataFrame)):
        return [source]
    if isinstance(source, Mapping):
        raise InfoflowError("pass a run, a table, or a list of them (a mapping is only accepted by dice_curves)")
    items = list(source)
    if not items:
        raise InfoflowError("no runs or tables given")
    return items


def mi_table(x: Source) -> pd.DataFrame:
    if isinstance(x, pd.DataFrame):
        return x
    run = as_run(x)
    frame = run.read_mi()
    if frame.empty:
        raise RunError(f"{run.path} has no MI estimates (mi.csv is missing or empty): was it trained with --no-mi?")
    return frame


def figure_table(run: RunDir, *, estimates: str | os.PathLike | None = None, estimator: str | None = None,
                 setting: str | None = None) -> tuple[pd.DataFrame, str | None]:
    """The MI table a run's figures draw, and its file name (None: the run's own mi.csv).

    ``estimates`` names a stored estimate table (``infoflow estimate`` output: its tag, file name
    or path, :meth:`~infoflow.runs.RunDir.estimate_table`). Otherwise mi.csv, unless it lacks
    ``setting`` (compared as a string with the table's): then the newest stored table that holds
    it. An error lists the settings each table has."""
    if estimates is not None:
        path = run.estimate_table(estimates)
        return run.read_estimates(path), path.name
    mi = run.read_mi()
    if setting is None or _holds(mi, estimator, setting):
        return mi, None
    tables = run.estimate_tables()
    for path in reversed(tables):
        frame = run.read_estimates(path)
        if _holds(frame, estimator, setting):
            return frame, path.name
    have = [f"mi.csv: {_settings(mi, estimator)}"] + [f"{p.name}: {_settings(run.read_estimates(p), estimator)}"
                                                      for p in tables]
    raise InfoflowError(f"{run.path}: no MI table holds {estimator or 'the default estimator'} with setting "
                        f"{setting!r} ({'; '.join(have)})")


def _holds(frame: pd.DataFrame, estimator: str | None, setting: str) -> bool:
    try:
        select(frame, estimator, setting)
    except InfoflowError:
        return False
    return True


def _settings(frame: pd.DataFrame, estimator: str | None) -> str:
    if frame.empty:
        return "no estimates"
    rows = frame if estimator is None else frame[frame["estimator"].astype(str) == estimator]
    return ", ".join(dict.fromkeys(rows["setting"].astype(str))) or f"no {estimator} rows"


def first_run(source: Any) -> RunDir | None:
    for item in as_list(source):
        run = as_run(item) if not isinstance(item, pd.DataFrame) else None
        if run is not None:
            return run
    return None


def run_name(run: RunDir) -> str:
    try:
        return str(run.read_config().get("name") or run.path.name)
    except RunError:
        return run.path.name


# -- selection of one estimate per (epoch, layer) ----------------------------------------------
def plane_table(mi: pd.DataFrame, sel: Selection) -> pd.DataFrame:
    """One row per (epoch, layer): I_XM, I_YM, log2n, h_y, ceil_x, ceil_y (NaN/False where absent)."""
    rows = mi[(mi["estimator"] == sel.estimator) & (mi["setting"].astype(str) == sel.setting)]
    x = rows[rows["quantity"] == "I_XM"][["epoch", "layer", "name", "value", "log2n", "at_ceiling"]]
    x = x.rename(columns={"value": "I_XM", "at_ceiling": "ceil_x"})
    y = rows[(rows["quantity"] == "I_YM") & (rows["labels"].astype(str) == sel.labels)]
    y = y[["epoch", "layer", "name", "value", "h_y", "log2n", "at_ceiling"]].rename(
        columns={"value": "I_YM", "at_ceiling": "ceil_y", "log2n": "log2n_y"})
    out = pd.merge(x, y, on=["epoch", "layer", "name"], how="outer")
    if "log2n_y" in out:
        out["log2n"] = out["log2n"].fillna(out["log2n_y"])
        out = out.drop(columns=["log2n_y"])
    for c in ("ceil_x", "ceil_y"):
        out[c] = out[c].fillna(False).astype(bool)
    if out.empty:
        raise InfoflowError(f"no I(X;M) or I(Y;M) estimates for {sel.describe()}")
    return out.sort_values(["layer", "epoch"]).reset_index(drop=True)


def aggregate(tables: Sequence[pd.DataFrame], columns: Sequence[str] = ("I_XM", "I_YM")) -> pd.DataFrame:
    """Median and min-max band across runs (seeds) per (epoch, layer).

    Adds ``<col>_lo``/``<col>_hi`` and ``runs`` (how many runs have the row); ``log2n``/``h_y``:
    their median; ``ceil_x``/``ceil_y``: true if true in any run.
    """
    both = pd.concat([t.assign(_run=i) for i, t in enumerate(tables)], ignore_index=True)
    g = both.groupby(["epoch", "layer"], sort=True)
    out = g[list(columns)].median()
    for c in columns:
        out[f"{c}_lo"] = g[c].min()
        out[f"{c}_hi"] = g[c].max()
    for c in ("log2n", "h_y"):
        if c in both:
            out[c] = g[c].median()
    for c in ("ceil_x", "ceil_y"):
        if c in both:
            out[c] = g[c].any()
    out["runs"] = g["_run"].nunique()
    out["name"] = g["name"].first()
    return out.reset_index().sort_values(["layer", "epoch"]).reset_index(drop=True)


def planes(source: Any, estimator: str | None = None, setting: str | None = None,
           labels: str | None = None) -> tuple[pd.DataFrame, Selection, int]:
    """The plane table of a run/table, or the seed aggregate of several; and how many runs."""
    tables = [mi_table(x) for x in as_list(source)]
    sel = select(tables[0], estimator, setting, labels)
    pts = [plane_table(t, sel) for t in tables]
    if len(pts) == 1:
        return pts[0], sel, 1
    return aggregate(pts), sel, len(pts)


# -- uncertainty tables (infoflow.analysis.uncertainty) ----------------------------------------------------
#: Columns a table must have to draw intervals from it.
UNCERTAINTY_REQUIRED = ("epoch", "layer", "name", "estimator", "setting", "labels", "quantity", "value",
                        "ci_lo", "ci_hi")
_UNC_TEXT = ("name", "estimator", "setting", "labels", "quantity")


def uncertainty_frame(x: Any) -> pd.DataFrame:
    """An uncertainty table (columns of :data:`infoflow.analysis.uncertainty.UNCERTAINTY_COLUMNS`) from a
    DataFrame or the path of a ``*.uncertainty.csv``; errors name the file."""
    if isinstance(x, pd.DataFrame):
        frame, where = x, "the uncertainty table"
    else:
        p = Path(x)
        where = str(p)
        if not p.is_file():
            raise RunError(f"{p}: no such uncertainty table (write one with `infoflow estimate RUN --uncertainty`)")
        try:
            frame = pd.read_csv(p, keep_default_na=False, na_values=[""])
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise RunError(f"{p} is not a readable CSV table: {exc}") from None
    missing = [c for c in UNCERTAINTY_REQUIRED if c not in frame.columns]
    if missing:
        raise InfoflowError(f"{where} is not an uncertainty table: it lacks the column(s) {', '.join(missing)}")
    if frame.empty:
        raise InfoflowError(f"{where} has no rows")
    return frame.assign(**{c: frame[c].astype(str) for c in _UNC_TEXT})


def interval_table(unc: pd.DataFrame, sel: Selection) -> pd.DataFrame:
    """One row per (epoch, layer) of an uncertainty table for a selection: ``I_XM``, ``I_XM_lo``,
    ``I_XM_hi``, ``I_XM_ceiling`` (label-free rows), the same for ``I_YM`` (labels ``sel.labels``),
    ``baseline_mean``, ``baseline_hi``, ``p_value``, ``level``, ``n``, ``kernel_var``. NaN where the
    table has no such row. Raises when it has no row of the estimator and setting."""
    rows = unc[(unc["estimator"].astype(str) == sel.estimator) & (unc["setting"].astype(str) == sel.setting)]
    if rows.empty:
        have = sorted({f"{e} ({s})" for e, s in unc[["estimator", "setting"]].astype(str).itertuples(index=False)})
        raise InfoflowError(f"the uncertainty table has no rows of {sel.estimator} ({sel.setting}); it has "
                            f"{', '.join(have)}")
    keys = ["epoch", "layer", "name"]
    parts = []
    for q, lab in (("I_XM", None), ("I_YM", sel.labels)):
        r = rows[rows["quantity"] == q]
        if lab is not None:
            r = r[r["labels"].astype(str) == lab]
        cols = {"value": q, "ci_lo": f"{q}_lo", "ci_hi": f"{q}_hi", "ceiling": f"{q}_ceiling"}
        extra = ["baseline_mean", "baseline_hi", "p_value"] if q == "I_YM" else []
        shared = [c for c in ("level", "n", "kernel_var") if c in r]
        take = keys + [c for c in cols if c in r] + [c for c in extra if c in r] + shared
        parts.append(r[take].rename(columns={**cols, **{c: f"{c}_{q}" for c in shared}}))
    out = pd.merge(parts[0], parts[1], on=keys, how="outer")
    for c in ("level", "n", "kernel_var"):
        if f"{c}_I_XM" in out:
            out[c] = out[f"{c}_I_XM"].fillna(out[f"{c}_I_YM"])
            out = out.drop(columns=[f"{c}_I_XM", f"{c}_I_YM"])
    for c in ("I_XM", "I_XM_lo", "I_XM_hi", "I_XM_ceiling", "I_YM", "I_YM_lo", "I_YM_hi", "I_YM_ceiling",
              "baseline_mean", "baseline_hi", "p_value", "level"):
        if c not in out:
            out[c] = np.nan
    return out.sort_values(["epoch", "layer"]).reset_index(drop=True)


# -- network layout -----------------------------------------------------------------------------
def network_of(source: Any, network: NetworkLayout | None = None) -> NetworkLayout | None:
    """``network``, else the layout of the first run in ``source`` (from its config.json), else None."""
    if network is not None:
        return network
    run = first_run(source)
    if run is not None:
        return layout_from_config(run.read_config())
    return None


# -- epochs -----------------------------------------------------------------------------------
def nearest_epochs(available: Iterable[int], targets: Iterable[int]) -> list[int]:
    """Each target mapped to the nearest available epoch (in log distance), duplicates dropped."""
    avail = np.asarray(sorted({int(e) for e in available if int(e) > 0}), dtype=float)
    if avail.size == 0:
        return []
    out: list[int] = []
    for t in targets:
        t = float(t)
        if t <= 0:
            continue
        i = int(np.argmin(np.abs(np.log(avail) - np.log(t))))
        e = int(avail[i])
        if e not in out:
            out.append(e)
    return sorted(out)


def uplot_epochs(available: Iterable[int], epochs: Iterable[int] | None = None) -> list[int]:
    """Default U-Plot epochs: the code's :data:`CODE_UPLOT_EPOCHS` (2, 11, 101, ..., 9901 in
    1-based epochs), each moved to the nearest logged epoch (duplicates dropped); explicit
    ``epochs`` must be logged ones."""
    avail = sorted({int(e) for e in available})
    if epochs is None:
        return nearest_epochs(avail, CODE_UPLOT_EPOCHS)
    wanted = [int(e) for e in epochs]
    missing = sorted(set(wanted) - set(avail))
    if missing:
        raise InfoflowError(f"epoch(s) {missing} were not logged; logged epochs: {avail}")
    return sorted(dict.fromkeys(wanted))


def spread_epochs(available: Iterable[int], n: int) -> list[int]:
    """About ``n`` log-spaced epochs among ``available`` (first and last included)."""
    avail = sorted({int(e) for e in available})
    if len(avail) <= n:
        return avail
    targets = np.geomspace(avail[0], avail[-1], n)
    return nearest_epochs(avail, targets)
