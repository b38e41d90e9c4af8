"""The paper's claims (Lee & Bajic 2021, section 4; methods.md section 8) checked from the data.

Every check is a pure function of tables: the tidy MI table of the full model (``mi.csv``, one
per seed) and the metrics tables of the models (``metrics.csv``). Where the network's layers
are involved they come from a :class:`~infoflow.network.NetworkLayout` (skip pairs, merge layers,
which layers are "first", "bottom", "top", "encoder"), so any network with skip connections can be
checked; the functions on tables default to the paper's U-Net
(:data:`infoflow.models.unet.UNET_LAYOUT`). :func:`claims_from_runs` does the same from run
directories, with the layout of the runs (their ``config.json``,
:func:`infoflow.models.unet.layout_from_config`). A claim whose layer group the layout does not
give (skips that do not nest like a U-Net's) is undecided.

Each claim ends as ``pass``, ``fail`` or ``undecided`` (:data:`STATUSES`; claims tables written
before the rename say ``inconclusive``, which :func:`normalize_status` reads as ``undecided``)
and is printed with the numbers it was decided on, beside the paper's (:data:`PAPER_NUMBERS`).
The thresholds are the fields of :class:`ClaimThresholds`; their meaning:

Reading I(Y;M)
    One estimate per (epoch, layer): estimator ``kde_upper`` (default), its first setting unless
    one is named, labels ``kmeans`` (else the first labelling). A layer *reaches* a level at the
    first logged epoch where its I(Y;M) >= ``reach_frac`` (0.95) x the level and from which on
    it never falls below ``stay_frac`` (0.90) x the level (a transient spike does not count).
    Logged epochs are a grid: a reach epoch ``e`` means "after the previous logged epoch, by
    epoch ``e``". "The maximum" (claims 1 and 4) is the network's maximum: the largest I(Y;M) of
    any layer at any logged epoch (the paper's "maximum of about 3 bits" that the top layers
    reach); with ``reference="layer"`` claim 4 uses each layer's own maximum instead.

Evidence that is information
    Every estimate carries three flags (:func:`curves`):

    * *ceiling*: ``at_ceiling`` of the MI table (I(X;M) within 1% of log2 N, I(Y;M) within 1%
      of H(Y)): the estimate cannot grow further whatever the layer holds.
    * *floor*: ``at_floor`` of the MI table (the estimate sits at about 0 bits); for tables
      without that column, an estimate <= ``floor_frac`` (0.01) x its ceiling (log2 N for
      I(X;M), H(Y) for I(Y;M)).
    * *baseline* (I(Y;M) only): ``baseline`` of the MI table, the 95% quantile of I(Y;M) over
      random label permutations with the same class counts; NaN (unknown) for tables without
      it, and then only the floor rule applies.

    An I(X;M) is *informative* when it is not at the floor; an I(Y;M) when it is not at the
    floor and (its baseline is unknown or it exceeds its baseline). A verdict that rests on an
    estimate that is not informative, or (where stated) on one at its ceiling, is
    ``undecided``: 0 bits, or no more than shuffled labels give, is not evidence for or
    against anything. With several seeds an estimate counts as at its ceiling / floor when it
    is so in more than ``ceiling_share`` (half) of the seeds; the baseline is the seeds' median.

Claim 1 (first layers learn fast)
    The network's maximum must be informative and below its ceiling, else every layer is
    undecided. Each of ``first_layers`` (0, 1) then *passes* when it reaches the network's
    maximum by epoch ``early_epochs`` ("within the first few epochs, I(Y;M_i) reaches its
    maximum around 3 bits, and stays there") and its estimate at that epoch is informative and
    not at its ceiling (else undecided); it *fails* when it does not reach it by then, decided
    on its lowest I(Y;M) from the last early logged epoch on (the estimate that denies "reached
    and stayed"), which must be informative (else undecided). The detail also gives each
    layer's own maximum as a share of the network's.
Claim 2 (bottom layers learn later and stay below)
    (a) the median over the ``bottom_layers`` (8-14) of the epoch at which each reaches its own
    final level (the median of its last three logged epochs; a layer still moving at the end
    counts as never) is later than the same median over the ``top_layers`` (0, 1, 20, 21, 22).
    Only layers whose final level is informative (most of their last three estimates are)
    enter the medians; when no more than half of either group does, (a) is undecided. A "later"
    with most of the (counted) top layers at their ceiling at their reach epoch is undecided,
    and so is a "not later" with most of the bottom layers at their ceiling there.
    (b) the median over the bottom layers of their maximum I(Y;M) is below ``reach_frac`` x
    the top layers' maximum. Undecided when the top layers' maximum is not informative, or
    when no more than half of the bottom layers have an informative maximum (only those enter
    the median); a "not below" with most of them at their ceiling at their maximum is undecided.
Claim 3 (U-shape)
    Over the early logged epochs (<= ``early_epochs``), on I(X;M) and I(Y;M) estimates that are
    *usable*: informative and not at their ceiling.
    (a) along ``encoder_layers`` (0-9) I(X;M) does not rise: a step between two consecutive
    encoder layers counts only when both are usable at that epoch; at least ``fall_frac`` (0.8)
    of the counted steps rise by at most ``rise_tol`` (0.05 bits), and the median over the
    epochs with a counted step of (I(X;M) of the first usable encoder layer - that of the last)
    exceeds ``rise_tol``. Fewer than ``min_epochs_decided`` (2) epochs with a counted step:
    undecided.
    (b) at every merge layer m, for I(X;M) and for I(Y;M) separately: keep the early epochs at
    which both layer m and layer m - 1 are usable; with fewer than ``min_epochs_decided`` of
    them that merge is undecided, else it passes when the median over them of
    I(M_m) - I(M_{m-1}) exceeds ``rise_tol`` and fails otherwise.
Claim 4 (skips redundant once the deeper merge layer reaches the maximum)
    Prediction, from the full model's I(Y;M): the skip into merge layer m is redundant from the
    epoch at which the next deeper merge layer reaches the maximum (17 for 1->20, 14 for 3->17,
    11 for 5->14); a model without several skips is predicted to match from the latest of
    their epochs, and never when one of them never reaches it (or has no deeper merge layer).
    A prediction rests on the maximum (which must be informative: the network's maximum not at
    the floor and above its baseline), on the deeper layer's estimate at its reach epoch (a
    reach) or at its last logged epoch (a "never"), which must be informative too; otherwise
    that skip's prediction is undecided (``uninformative`` in the predictions table gives why).
    A model's prediction is "never" when one of its skips is a decided never; otherwise it is
    undecided when one of its skips is.
    Outcome, from the Dice curves: validation Dice smoothed as the running maximum of its
    trailing ``dice_window``-epoch (5) mean; the target is the full model's final smoothed
    value (its best 5-epoch mean); a model *matches* at the first epoch its smoothed Dice is
    within ``dice_tol`` (0.02) of the target, or never. Agreement per model: a "never"
    prediction agrees with no match; a predicted epoch ``p`` agrees with a match at
    ``t <= agree_factor`` (3) x max(p, the full model's own match epoch) (a model cannot be
    expected to match before the full model reaches its best; the factor covers the logged-epoch
    grid: the paper's prediction "around 1,000" met Dice at 2,000-3,000). No match with a
    prediction ``p`` is a failure when the run lasted beyond ``agree_factor`` x max(p, ...), else
    undecided (too short to tell). An agreement that rests on an estimate at its ceiling (the
    deeper layer at its ceiling at its reach epoch, or a maximum that is itself at its ceiling)
    is undecided, and so is a failure of a predicted epoch that rests on one (the epoch is the
    ceiling's, not the network's); a "never" is not affected by ceilings.

Too few logged epochs (fewer than ``min_logged``) make every MI claim undecided.

Several seeds: each claim is decided on the median across seeds (MI: the median estimate per
(epoch, layer), flags by majority, the median baseline and H(Y) -- per-seed K-means classes may
differ; Dice: the median curve per epoch) and also per seed; the detail reports the per-seed
statuses and the spread (min-max) of the numbers.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Union

import numpy as np
import pandas as pd

from ..config import MODEL_SKIPS
from ..errors import InfoflowError, RunError
from ..models.unet import UNET_LAYOUT, layout_from_config
from ..network import NetworkLayout
from ..runs import RunDir
from .selections import Selection
from .selections import select as _select

PASS, FAIL, UNDECIDED = "pass", "fail", "undecided"
STATUSES = (PASS, FAIL, UNDECIDED)
#: Old name of ``undecided`` (claims.csv files written before the rename); read, never written.
INCONCLUSIVE = "inconclusive"

#: Columns of the claims table (claims.csv).
CLAIM_COLUMNS = ("claim", "statement", "status", "detail", "selection", "seeds")

#: The paper's numbers (section 4), per claim row: what the paper reports, printed beside ours
#: (in the details and as the "paper" column of :func:`claims_markdown`).
PAPER_NUMBERS: dict[str, dict[str, str]] = {
    "1": {"maximum I(Y;M)": "about 3 bits",
          "layers 0, 1 reach it": "within the first few epochs, and stay there"},
    "2": {"bottom layers 8-14 learn": "still learning at epochs 6,000-8,000",
          "top layers' maximum I(Y;M)": "about 3 bits",
          "bottom layers' maximum I(Y;M)": "below 3 bits",
          "I(Y;M11)": "only reaches about 1.5 bits"},
    "3": {"merge layers 11, 14, 17, 20": "I(X;M) and I(Y;M) go up, in early iterations"},
    "4": {"maximum I(Y;M)": "about 3 bits",
          "I(Y;M17) reaches it": "at around 1,000 epochs",
          "I(Y;M14) reaches it": "between 1,000 and 10,000 epochs",
          "I(Y;M11) reaches it": "never within 10,000 epochs",
          "I(Y;M11)": "only reaches about 1.5 bits"},
    "4 Model 2": {"predicted": "around 1,000 epochs", "matches Model 1": "between epochs 2,000 and 3,000"},
    "4 Model 3": {"predicted": "between 1,000 and 10,000 epochs", "matches Model 1": "after about 8,000 epochs"},
    "4 Model 4": {"predicted": "never within 10,000 epochs", "matches Model 1": "never"},
    "4 outcome": {"Model 2": "between epochs 2,000 and 3,000", "Model 3": "after about 8,000 epochs",
                  "Model 4": "never (10,000 epochs)"},
}
_PAPER_REACH = {17: "I(Y;M17) reaches it", 14: "I(Y;M14) reaches it", 11: "I(Y;M11) reaches it"}


def paper_text(claim: str) -> str:
    """The paper's numbers of one claim row as one line ("" when the paper gives none)."""
    return "; ".join(f"{k}: {v}" for k, v in PAPER_NUMBERS.get(str(claim), {}).items())


def normalize_status(status: Any) -> str:
    """A status as written now: lower case, ``inconclusive`` (old claims.csv) -> ``undecided``."""
    s = str(status).strip().lower()
    return UNDECIDED if s == INCONCLUSIVE else s


Pair = tuple[int, int]
Tables = Union[pd.DataFrame, Sequence[pd.DataFrame]]


# ---------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClaimThresholds:
    """The numbers the claims are decided with (see the module docstring)."""

    reach_frac: float = 0.95  # "reached the maximum": I(Y;M) >= 95% of the maximum
    stay_frac: float = 0.90  # ... and never below 90% of it afterwards (a spike is not "reaching")
    early_epochs: int = 10  # claim 1 "first few epochs"; claim 3 "early epochs": logged epochs <= this
    rise_tol: float = 0.05  # bits: a rise (or fall) must exceed this (claim 3)
    fall_frac: float = 0.8  # claim 3: share of encoder steps that may not rise
    reference: str = "network"  # claim 4 "the maximum": "network" (max over layers, epochs) or "layer" (its own)
    dice_tol: float = 0.02  # claim 4: within 0.02 Dice of the full model's best
    dice_window: int = 5  # claim 4: trailing mean over 5 epochs before the running maximum
    agree_factor: float = 3.0  # claim 4: a match by 3 x the predicted epoch agrees
    min_logged: int = 5  # fewer logged epochs: MI claims undecided
    ceiling_share: float = 0.5  # seeds: an estimate is at its ceiling (floor) when in more than this share
    floor_frac: float = 0.01  # tables without at_floor: an estimate <= 1% of its ceiling is at the floor
    min_epochs_decided: int = 2  # claim 3: fewer usable early epochs for a merge (or the encoder): undecided

    def with_(self, **kw: Any) -> "ClaimThresholds":
        known = {f.name for f in fields(self)}
        bad = set(kw) - known
        if bad:
            raise InfoflowError(f"unknown claim threshold(s) {', '.join(sorted(bad))}; known: {', '.join(sorted(known))}")
        return replace(self, **kw)


@dataclass
class ClaimResult:
    claim: str
    statement: str
    status: str
    detail: str
    numbers: dict[str, float] = field(default_factory=dict)
    #: the statuses of the claim's parts ("layer 0", "a", "b", "rise_x_11", ...)
    parts: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# From the tidy MI table to curves
# ---------------------------------------------------------------------------------------------

#: Flag columns of a curves table (aggregated across seeds by majority).
FLAG_COLUMNS = ("ceil_x", "ceil_y", "floor_x", "floor_y")
#: Columns of a curves table.
CURVE_COLUMNS = ("epoch", "layer", "I_XM", "I_YM", "log2n", "h_y", "base_y") + FLAG_COLUMNS


def select(mi: pd.DataFrame, estimator: str | None = None, setting: str | None = None,
           labels: str | None = None) -> Selection:
    """Resolve the estimate to read: ``kde_upper``, its first setting, labels ``kmeans``; claims
    need I(Y;M), so a table without it is an error."""
    return _select(mi, estimator, setting, labels, require_labels=True)


def settings_of(mi: pd.DataFrame, estimator: str = "kde_upper") -> list[str]:
    """The settings of ``estimator`` in a table, in table order."""
    if mi is None or mi.empty:
        return []
    return list(dict.fromkeys(mi.loc[mi["estimator"].astype(str) == estimator, "setting"].astype(str)))


def _one_flag(v: Any) -> Any:
    if v is None or v is pd.NA or (isinstance(v, (float, np.floating)) and math.isnan(v)):
        return pd.NA
    if isinstance(v, (bool, np.bool_, int, float, np.integer, np.floating)):
        return bool(v)
    t = str(v).strip().lower()
    if t in ("true", "1", "1.0", "yes"):
        return True
    if t in ("false", "0", "0.0", "no"):
        return False
    return pd.NA


def _as_flag(s: pd.Series) -> pd.Series:
    """A bool-like column (bool, 0/1, "True"/"false" from a CSV) as ``boolean``, <NA> where missing."""
    return s.map(_one_flag).astype("boolean")


def _complete(c: pd.DataFrame, floor_frac: float = 0.01) -> pd.DataFrame:
    """A curves table with every column of :data:`CURVE_COLUMNS` (older ones lack the floor and
    baseline columns: floors by the ``floor_frac`` rule, baseline unknown)."""
    missing = [k for k in ("floor_x", "floor_y", "base_y", "ceil_x", "ceil_y") if k not in c.columns]
    if not missing:
        return c
    c = c.copy()
    if "floor_x" in missing:
        c["floor_x"] = (c["I_XM"] <= floor_frac * c["log2n"]).fillna(False).astype(bool)
    if "floor_y" in missing:
        c["floor_y"] = (c["I_YM"] <= floor_frac * c["h_y"]).fillna(False).astype(bool)
    if "base_y" in missing:
        c["base_y"] = np.nan
    for k in ("ceil_x", "ceil_y"):
        if k in missing:
            c[k] = False
    return c


def curves(mi: pd.DataFrame, sel: Selection, floor_frac: float = 0.01) -> pd.DataFrame:
    """One row per (epoch, layer): ``I_XM, I_YM, log2n, h_y, base_y, ceil_x, ceil_y, floor_x,
    floor_y`` (:data:`CURVE_COLUMNS`).

    ``ceil_*`` from the table's ``at_ceiling``; ``floor_*`` from its ``at_floor`` where the
    table has it, else (and on rows where it is missing) ``value <= floor_frac x ceiling``
    (log2 N for I(X;M), H(Y) for I(Y;M)); ``base_y`` from the ``baseline`` of the I(Y;M) rows
    (NaN where the table has none)."""
    rows = mi[(mi["estimator"].astype(str) == sel.estimator) & (mi["setting"].astype(str) == sel.setting)]
    na = pd.Series(pd.NA, index=rows.index, dtype="boolean")
    ceil = _as_flag(rows["at_ceiling"]).fillna(False) if "at_ceiling" in rows else na.fillna(False)
    flo = _as_flag(rows["at_floor"]) if "at_floor" in rows else na
    base = pd.to_numeric(rows["baseline"], errors="coerce") if "baseline" in rows else np.nan
    rows = rows.assign(_ceil=ceil, _floor=flo, _base=base, value=pd.to_numeric(rows["value"], errors="coerce"))
    x = rows[rows["quantity"] == "I_XM"][["epoch", "layer", "value", "_ceil", "_floor", "log2n"]]
    x = x.rename(columns={"value": "I_XM", "_ceil": "ceil_x", "_floor": "floor_x"})
    y = rows[(rows["quantity"] == "I_YM") & (rows["labels"].astype(str) == sel.labels)]
    y = y[["epoch", "layer", "value", "_ceil", "_floor", "_base", "h_y"]].rename(
        columns={"value": "I_YM", "_ceil": "ceil_y", "_floor": "floor_y", "_base": "base_y"})
    out = pd.merge(x, y, on=["epoch", "layer"], how="outer")
    if out.empty:
        raise InfoflowError(f"no I(X;M) / I(Y;M) estimates for {sel.describe()}")
    for c in ("ceil_x", "ceil_y"):
        out[c] = out[c].astype("boolean").fillna(False).astype(bool)
    rule_x = (out["I_XM"] <= floor_frac * out["log2n"]).fillna(False)
    rule_y = (out["I_YM"] <= floor_frac * out["h_y"]).fillna(False)
    out["floor_x"] = out["floor_x"].astype("boolean").fillna(rule_x).astype(bool)
    out["floor_y"] = out["floor_y"].astype("boolean").fillna(rule_y).astype(bool)
    out["base_y"] = pd.to_numeric(out["base_y"], errors="coerce").astype(float)
    out["epoch"] = out["epoch"].astype(int)
    out["layer"] = out["layer"].astype(int)
    out = out.sort_values(["epoch", "layer"]).reset_index(drop=True)
    return out[list(CURVE_COLUMNS)]


def median_curves(tables: Sequence[pd.DataFrame], ceiling_share: float = 0.5,
                  floor_frac: float = 0.01) -> pd.DataFrame:
    """Seed aggregate of :func:`curves` tables: median value, log2 N, H(Y) (per-seed K-means
    classes may differ) and baseline per (epoch, layer) (a baseline missing in some seeds is
    the median of the others); a ceiling or floor flag is set when more than ``ceiling_share``
    of the seeds have it."""
    tables = [_complete(t, floor_frac) for t in tables]
    if len(tables) == 1:
        return tables[0]
    both = pd.concat(list(tables), ignore_index=True)
    g = both.groupby(["epoch", "layer"], sort=True)
    out = g[["I_XM", "I_YM", "log2n", "h_y", "base_y"]].median()
    for c in FLAG_COLUMNS:
        out[c] = g[c].mean() > ceiling_share
    return out.reset_index()[list(CURVE_COLUMNS)]


def _pivot(c: pd.DataFrame, col: str) -> pd.DataFrame:
    """epochs x layers table of one column (every epoch and layer of ``c``; NaN where missing)."""
    t = c.groupby(["epoch", "layer"], sort=True)[col].first().unstack("layer")
    epochs = sorted(c["epoch"].unique())
    layers = sorted(c["layer"].unique())
    return t.reindex(index=epochs, columns=layers).sort_index()


class _View:
    """The epochs x layers tables of a curves table and what each estimate is worth."""

    def __init__(self, c: pd.DataFrame, th: "ClaimThresholds"):
        c = _complete(c, th.floor_frac)
        self.ix, self.iy = _pivot(c, "I_XM").astype(float), _pivot(c, "I_YM").astype(float)
        self.by = _pivot(c, "base_y").astype(float)
        flag = {k: _pivot(c, k).astype("boolean").fillna(False).astype(bool) for k in FLAG_COLUMNS}
        self.cx, self.cy, self.fx, self.fy = flag["ceil_x"], flag["ceil_y"], flag["floor_x"], flag["floor_y"]
        # informative: not at the floor (I(Y;M): and above its baseline where known)
        self.inf_x = self.ix.notna() & ~self.fx
        above = self.by.isna() | (self.iy > self.by)
        self.inf_y = self.iy.notna() & ~self.fy & above
        # usable: informative and below the ceiling
        self.use_x = self.inf_x & ~self.cx
        self.use_y = self.inf_y & ~self.cy

    def why_y(self, e: Any, layer: int) -> str:
        """Why I(Y;M) of ``layer`` at epoch ``e`` is not information ("" when it is)."""
        v = float(self.iy.loc[e, layer])
        if not math.isfinite(v):
            return f"no I(Y;M) of layer {layer} at epoch {e}"
        if bool(self.fy.loc[e, layer]):
            return f"I(Y;M{layer}) at epoch {e} ({v:.2f} bits) is at the floor"
        b = float(self.by.loc[e, layer])
        if math.isfinite(b) and not v > b:
            return f"I(Y;M{layer}) at epoch {e} ({v:.2f} bits) is not above its permutation baseline ({b:.2f} bits)"
        return ""


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------


def combine(statuses: Iterable[str]) -> str:
    """fail if any fails; else undecided if any is; else pass (pass for none)."""
    s = [normalize_status(x) for x in statuses]
    if FAIL in s:
        return FAIL
    if UNDECIDED in s:
        return UNDECIDED
    return PASS


def _fmt(x: float | None, nd: int = 2) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "never"
    if float(x) == int(x) and abs(x) >= 1:
        return str(int(x))
    return f"{x:.{nd}f}"


def _ep(x: float | None) -> str:
    return "never" if x is None or not math.isfinite(float(x)) else str(int(x))


def _bits(x: float) -> str:
    return f"{x:.2f}" if x is not None and math.isfinite(x) else "n/a"


def reach_epoch(values: pd.Series, level: float) -> float:
    """First index (epoch) where ``values >= level``; NaN if never."""
    hit = values.index[values.to_numpy() >= level - 1e-12]
    return float(hit[0]) if len(hit) else float("nan")


def settle_epoch(values: pd.Series, level: float, reach_frac: float, stay_frac: float) -> float:
    """First index (logged epoch) at which ``values`` reach ``reach_frac x level`` and from
    which on they never fall below ``stay_frac x level``; NaN if none. A transient spike to the
    level followed by a fall does not count as reaching it."""
    v = values.to_numpy(dtype=float)
    idx = values.index
    # suffix minimum: the lowest value from each position on
    low = np.minimum.accumulate(v[::-1])[::-1] if len(v) else v
    ok = (v >= reach_frac * level - 1e-12) & (low >= stay_frac * level - 1e-12)
    hit = np.flatnonzero(ok)
    return float(idx[hit[0]]) if len(hit) else float("nan")


def _prev_logged(epochs: Sequence[int], e: float) -> int:
    before = [x for x in epochs if x < e]
    return int(before[-1]) if before else 0


def _network_max(iy: pd.DataFrame) -> tuple[float, int, int]:
    """(value, epoch, layer) of the largest I(Y;M) in an epochs x layers table."""
    arr = iy.to_numpy(dtype=float)
    if not np.isfinite(arr).any():
        return float("nan"), -1, -1
    i, j = np.unravel_index(np.nanargmax(arr), arr.shape)
    return float(arr[i, j]), int(iy.index[i]), int(iy.columns[j])


def _too_few(c: pd.DataFrame, th: ClaimThresholds) -> str | None:
    n = c["epoch"].nunique()
    if n < th.min_logged:
        return f"only {n} logged epoch(s) with estimates (fewer than min_logged = {th.min_logged})"
    return None


def _missing(layers: Iterable[int], tab: pd.DataFrame) -> list[int]:
    return [int(l) for l in layers if l not in tab.columns or not tab[l].notna().any()]


def _no_group(claim: str, layout: NetworkLayout, *groups: str) -> ClaimResult | None:
    """Undecided when the layout gives none of the layer ``groups`` the claim reads."""
    missing = [g.replace("_", " ") for g in groups if getattr(layout, g) is None]
    if not missing:
        return None
    return ClaimResult(claim, STATEMENTS[claim], UNDECIDED,
                       f"the network's layout gives no {' or '.join(missing)} (its skips do not nest like a "
                       "U-Net's): pass a NetworkLayout that names them")


# ---------------------------------------------------------------------------------------------
# Claims 1-3 (the full model's MI)
# ---------------------------------------------------------------------------------------------

STATEMENTS = {
    "1": "The first two layers reach the network's maximum I(Y;M) within the first few epochs (and stay there).",
    "2": "Bottom layers (8-14) learn later and stay below the top layers' maximum I(Y;M).",
    "3": "U-shape: along the encoder I(X;M) falls; at merge layers 11, 14, 17, 20 both I(X;M) and I(Y;M) "
         "rise, visibly in early epochs.",
    "4": "A skip is redundant once the next deeper merge layer reaches the maximum I(Y;M): Model 2 matches "
         "Model 1's Dice after enough epochs, Model 3 later, Model 4 never within the budget.",
}


def claim1(c: pd.DataFrame, layout: NetworkLayout = UNET_LAYOUT,
           th: ClaimThresholds = ClaimThresholds()) -> ClaimResult:
    """Claim 1 on a curves table (see the module docstring)."""
    st = STATEMENTS["1"]
    no_group = _no_group("1", layout, "first_layers")
    if no_group:
        return no_group
    few = _too_few(c, th)
    if few:
        return ClaimResult("1", st, UNDECIDED, few)
    v = _View(c, th)
    iy, cy = v.iy, v.cy
    miss = _missing(layout.first_layers, iy)
    if miss:
        return ClaimResult("1", st, UNDECIDED, f"no I(Y;M) of layer(s) {miss}")
    ref, ref_e, ref_l = _network_max(iy)
    epochs = list(iy.index)
    early = [e for e in epochs if e <= th.early_epochs]
    if not early:
        return ClaimResult("1", st, UNDECIDED, f"no logged epoch <= {th.early_epochs} (early_epochs)")
    paper = PAPER_NUMBERS["1"]
    head = (f"early = epoch <= {th.early_epochs}; network maximum I(Y;M) {ref:.2f} bits (layer {ref_l}, "
            f"epoch {ref_e}; paper: {paper['maximum I(Y;M)']})")
    numbers: dict[str, float] = {"max": ref}
    ref_why = v.why_y(ref_e, ref_l)
    if ref_why:
        parts = {f"layer {l}": UNDECIDED for l in layout.first_layers}
        return ClaimResult("1", st, UNDECIDED, f"{head}: {ref_why}, so reaching it says nothing: {UNDECIDED}",
                           numbers, parts)
    ref_ceil = bool(cy.loc[ref_e, ref_l])
    texts, statuses = [], {}
    for layer in layout.first_layers:
        s_ = iy[layer].dropna()
        own = float(s_.max())
        e = settle_epoch(s_, ref, th.reach_frac, th.stay_frac)
        numbers[f"reach_epoch_{layer}"] = e
        numbers[f"max_{layer}"] = own
        why = ""
        if math.isfinite(e) and e <= th.early_epochs:
            if bool(cy.loc[int(e), layer]):
                s, why = UNDECIDED, "at its ceiling H(Y) there"
            elif ref_ceil:
                s, why = UNDECIDED, "the maximum is at its ceiling H(Y)"
            else:
                why = v.why_y(int(e), layer)
                s = UNDECIDED if why else PASS
        else:
            tail = s_[s_.index >= early[-1]]
            d = int(tail.idxmin()) if len(tail) else int(s_.index[-1])
            if ref_ceil:
                s, why = UNDECIDED, "the maximum is at its ceiling H(Y)"
            else:
                why = v.why_y(d, layer)
                s = UNDECIDED if why else FAIL
                if not why:
                    why = f"its lowest I(Y;M) from epoch {early[-1]} on is {float(s_.loc[d]):.2f} bits (epoch {d})"
        statuses[f"layer {layer}"] = s
        after = _prev_logged(epochs, e) if math.isfinite(e) else 0
        texts.append(f"layer {layer}: reaches it (>= {th.reach_frac:.0%}, staying >= {th.stay_frac:.0%}) at epoch "
                     f"{_ep(e)}{f' (after {after})' if after else ''}; its own maximum {own:.2f} bits "
                     f"({own / ref:.0%} of the network's): {s}{f' ({why})' if why else ''}")
    detail = head + ". " + "; ".join(texts)
    return ClaimResult("1", st, combine(statuses.values()), detail, numbers, statuses)


def claim2(c: pd.DataFrame, layout: NetworkLayout = UNET_LAYOUT,
           th: ClaimThresholds = ClaimThresholds()) -> ClaimResult:
    """Claim 2 on a curves table."""
    st = STATEMENTS["2"]
    no_group = _no_group("2", layout, "bottom_layers", "top_layers")
    if no_group:
        return no_group
    few = _too_few(c, th)
    if few:
        return ClaimResult("2", st, UNDECIDED, few)
    v = _View(c, th)
    iy, cy = v.iy, v.cy
    miss = _missing(list(layout.bottom_layers) + list(layout.top_layers), iy)
    if miss:
        return ClaimResult("2", st, UNDECIDED, f"no I(Y;M) of layer(s) {miss}")

    def own(layer: int) -> dict[str, Any]:
        """Epoch it reaches its final level, its maximum, their flags."""
        s_ = iy[layer].dropna()
        mx_e = int(s_.idxmax())
        final = float(s_.iloc[-3:].median())
        if final > 0:
            e = settle_epoch(s_, final, th.reach_frac, th.stay_frac)
            e = e if math.isfinite(e) else math.inf  # still moving at the end: learns late
        else:
            e = float(s_.index[0])
        last = list(s_.index[-3:])
        return {"e": e, "max": float(s_.max()), "max_e": mx_e,
                "ceil_e": bool(cy.loc[int(e), layer]) if math.isfinite(e) else bool(cy[layer].dropna().iloc[-1]),
                "ceil_max": bool(cy.loc[mx_e, layer]),
                "inf_end": 2 * int(sum(bool(v.inf_y.loc[x, layer]) for x in last)) > len(last),
                "inf_max": bool(v.inf_y.loc[mx_e, layer])}

    bot = {l: own(l) for l in layout.bottom_layers}
    top = {l: own(l) for l in layout.top_layers}
    nan = float("nan")
    # (a) later, on the layers whose final level is information
    bot_a = {l: r for l, r in bot.items() if r["inf_end"]}
    top_a = {l: r for l, r in top.items() if r["inf_end"]}
    t_bot = float(np.median([r["e"] for r in bot_a.values()])) if bot_a else nan
    t_top = float(np.median([r["e"] for r in top_a.values()])) if top_a else nan
    n_top_ceil = sum(r["ceil_e"] for r in top_a.values())
    n_bot_ceil = sum(r["ceil_e"] for r in bot_a.values())
    why_a = ""
    if 2 * len(bot_a) <= len(bot) or 2 * len(top_a) <= len(top):
        sa = UNDECIDED
        why_a = (f"final level informative in only {len(bot_a)} of {len(bot)} bottom and {len(top_a)} of {len(top)} "
                 f"top layers (the others at the floor or not above the permutation baseline)")
    elif t_bot > t_top:
        sa = UNDECIDED if 2 * n_top_ceil > len(top_a) else PASS
        why_a = "most top layers at their ceiling when they settle" if sa == UNDECIDED else ""
    else:
        sa = UNDECIDED if 2 * n_bot_ceil > len(bot_a) else FAIL
        why_a = "most bottom layers at their ceiling when they settle" if sa == UNDECIDED else ""
    # (b) below, on the bottom layers whose maximum is information
    top_l = max(top, key=lambda l: top[l]["max"])
    top_max = top[top_l]["max"]
    top_why = v.why_y(top[top_l]["max_e"], top_l)
    bot_b = {l: r for l, r in bot.items() if r["inf_max"]}
    bot_max = float(np.median([r["max"] for r in bot_b.values()])) if bot_b else nan
    n_bot_ceil_b = sum(r["ceil_max"] for r in bot_b.values())
    n_below = sum(r["max"] < th.reach_frac * top_max for r in bot_b.values())
    why_b = ""
    if top_why:
        sb, why_b = UNDECIDED, f"the top layers' maximum is not information: {top_why}"
    elif 2 * len(bot_b) <= len(bot):
        sb = UNDECIDED
        why_b = (f"maximum informative in only {len(bot_b)} of {len(bot)} bottom layers (the others at the floor or "
                 f"not above the permutation baseline)")
    elif bot_max < th.reach_frac * top_max:
        sb = PASS
    else:
        sb = UNDECIDED if 2 * n_bot_ceil_b > len(bot_b) else FAIL
        why_b = "most bottom layers at their ceiling at their maximum" if sb == UNDECIDED else ""
    paper = PAPER_NUMBERS["2"]
    top_key, bot_key = "top layers' maximum I(Y;M)", "bottom layers' maximum I(Y;M)"
    deepest = min(layout.merge_layers) if layout.merge_layers else None
    l11 = ""
    if deepest is not None and deepest in iy.columns and iy[deepest].notna().any():
        l11 = (f"; I(Y;M{deepest}) reaches {float(iy[deepest].max()):.2f} bits (paper: I(Y;M11) "
               f"{paper['I(Y;M11)']})")
    def listing(group: Mapping[int, dict[str, Any]]) -> str:
        return ", ".join(f"{l}:{_ep(r['e'])}{'' if r['inf_end'] else '*'}" for l, r in group.items())

    detail = (f"(a) epoch each reaches its final level (median of its last 3 logged epochs), median: "
              f"bottom {_fmt(t_bot)} vs top {_fmt(t_top)} (bottom {listing(bot)}; top {listing(top)}; "
              f"* = final level not information, left out); {n_top_ceil} of {len(top_a)} top layers at their "
              f"ceiling there (paper: bottom layers {paper['bottom layers 8-14 learn']}): "
              f"{sa}{f' ({why_a})' if why_a else ''}. "
              f"(b) max I(Y;M), median of bottom {_bits(bot_max)} bits (paper: {paper[bot_key]}) vs "
              f"{th.reach_frac:.0%} of top maximum {top_max:.2f} bits (layer {top_l}; paper: {paper[top_key]}){l11} "
              f"({n_below} of {len(bot_b)} informative bottom layers below; {n_bot_ceil_b} at their ceiling): "
              f"{sb}{f' ({why_b})' if why_b else ''}")
    numbers = {"t_bottom": t_bot, "t_top": t_top, "max_bottom": bot_max, "max_top": top_max}
    return ClaimResult("2", st, combine([sa, sb]), detail, numbers, {"a": sa, "b": sb})


def claim3(c: pd.DataFrame, layout: NetworkLayout = UNET_LAYOUT,
           th: ClaimThresholds = ClaimThresholds()) -> ClaimResult:
    """Claim 3 on a curves table."""
    st = STATEMENTS["3"]
    no_group = _no_group("3", layout, "encoder_layers")
    if no_group:
        return no_group
    few = _too_few(c, th)
    if few:
        return ClaimResult("3", st, UNDECIDED, few)
    v = _View(c, th)
    ix, iy = v.ix, v.iy
    early = [e for e in ix.index if e <= th.early_epochs]
    if not early:
        return ClaimResult("3", st, UNDECIDED, f"no logged epoch <= {th.early_epochs} (early_epochs)")
    need = list(layout.encoder_layers) + [m for m in layout.merge_layers] + [m - 1 for m in layout.merge_layers]
    miss = _missing(need, ix)
    if miss:
        return ClaimResult("3", st, UNDECIDED, f"no estimates of layer(s) {miss}")
    need_y = [m for m in layout.merge_layers] + [m - 1 for m in layout.merge_layers]
    miss = _missing(need_y, iy)
    if miss:
        return ClaimResult("3", st, UNDECIDED, f"no I(Y;M) of layer(s) {miss}")
    ux = v.use_x
    # (a) encoder falls, on the steps between two usable layers
    enc = list(layout.encoder_layers)
    ok = counted = 0
    drops, decided = [], []
    for e in early:
        n_e = 0
        for a, b in zip(enc[:-1], enc[1:]):
            if not (bool(ux.loc[e, a]) and bool(ux.loc[e, b])):
                continue  # a step that touches the floor or the ceiling says nothing
            n_e += 1
            ok += ix.loc[e, b] <= ix.loc[e, a] + th.rise_tol
        if n_e:
            counted += n_e
            usable = [l for l in enc if bool(ux.loc[e, l])]
            drops.append(float(ix.loc[e, usable[0]] - ix.loc[e, usable[-1]]))
            decided.append(int(e))
    drop = float(np.median(drops)) if drops else float("nan")
    share = ok / counted if counted else float("nan")
    if len(decided) < th.min_epochs_decided:
        sa = UNDECIDED
    else:
        sa = PASS if (share >= th.fall_frac and drop > th.rise_tol) else FAIL
    n_steps = (len(enc) - 1) * len(early)
    parts_txt = [f"epochs {early[0]}-{early[-1]} ({len(early)} logged); only estimates that are information and "
                 f"below their ceiling count. (a) encoder {enc[0]}-{enc[-1]}: {counted} of {n_steps} steps counted, "
                 f"on {len(decided)} epoch(s) (need {th.min_epochs_decided}); {ok} of {counted} do not rise "
                 f"(share {_fmt(share)}, need {th.fall_frac:.0%}), I(X;M) first - last usable layer "
                 f"{'n/a' if not drops else f'{drop:.2f}'} bits: {sa}"]
    statuses = {"a": sa}
    numbers: dict[str, float] = {"encoder_share": share, "encoder_drop": drop}
    # (b) merges rise, on the epochs where both layers are usable
    mparts = []
    for m in sorted(layout.merge_layers, reverse=True):
        for q, tab, use, key in (("I(X;M)", ix, v.use_x, "x"), ("I(Y;M)", iy, v.use_y, "y")):
            eps = [e for e in early if bool(use.loc[e, m]) and bool(use.loc[e, m - 1])]
            ceil = v.cx if key == "x" else v.cy
            left = [e for e in early if e not in eps]
            n_ceil = sum(1 for e in left if bool(ceil.loc[e, m - 1]) or bool(ceil.loc[e, m]))
            low = "at the floor" + (" or not above its baseline" if key == "y" else "")
            skipped = (f"{len(left)} epoch(s) left out: {n_ceil} with a layer at its ceiling, "
                       f"{len(left) - n_ceil} with a layer {low}") if left else ""
            if len(eps) < th.min_epochs_decided:
                rise, s = float("nan"), UNDECIDED
            else:
                rise = float(np.median([tab.loc[e, m] - tab.loc[e, m - 1] for e in eps]))
                s = PASS if rise > th.rise_tol else FAIL
            statuses[f"rise_{key}_{m}"] = s
            numbers[f"rise_{key}_{m}"] = rise
            eps_txt = f"epochs {','.join(str(int(e)) for e in eps)}" if eps else "no epoch"
            mparts.append(f"{m}: {q} {'n/a' if not math.isfinite(rise) else f'{rise:+.2f}'} on {eps_txt}"
                          f"{f' ({skipped})' if skipped else ''} {s}")
    parts_txt.append(f"(b) rise at merge layers over the layer before (median over the epochs where both are "
                     f"usable, need > {th.rise_tol} bits on at least {th.min_epochs_decided} epochs; paper: "
                     f"{PAPER_NUMBERS['3']['merge layers 11, 14, 17, 20']}): " + "; ".join(mparts))
    return ClaimResult("3", st, combine(statuses.values()), " ".join(parts_txt), numbers, statuses)


# ---------------------------------------------------------------------------------------------
# Claim 4: predictions from MI, outcomes from Dice
# ---------------------------------------------------------------------------------------------

PREDICTION_COLUMNS = ("skip", "source", "merge", "deeper", "epoch", "after", "value", "reference", "at_ceiling",
                      "uninformative")


def redundancy_predictions(c: pd.DataFrame, layout: NetworkLayout = UNET_LAYOUT,
                           th: ClaimThresholds = ClaimThresholds()) -> pd.DataFrame:
    """Per skip of the full model: the epoch from which it is predicted redundant.

    Columns (:data:`PREDICTION_COLUMNS`): ``skip`` ("1->20"), ``source``, ``merge``, ``deeper``
    (the next deeper merge layer, -1 if none), ``epoch`` (the logged epoch at which the deeper
    layer's I(Y;M) reaches the maximum, see the module docstring; NaN: never), ``after`` (the
    logged epoch before it), ``value`` (its I(Y;M) then, or its maximum), ``reference`` (the
    maximum), ``at_ceiling`` (the deeper layer at its ceiling at its reach epoch, or the maximum
    it reaches at its ceiling), ``uninformative`` (why the prediction rests on an estimate that is
    not information -- the maximum, the deeper layer at its reach epoch, or at its last logged
    epoch for a "never"; "" when it does not).
    """
    v = _View(c, th)
    iy, cy = v.iy, v.cy
    ref, ref_e, ref_l = _network_max(iy)
    epochs = list(iy.index)
    rows = []
    for src, merge in layout.top_down():
        deeper = layout.deeper_merge((src, merge))
        row: dict[str, Any] = {"skip": f"{src}->{merge}", "source": src, "merge": merge,
                               "deeper": -1 if deeper is None else deeper, "epoch": float("nan"),
                               "after": float("nan"), "value": float("nan"), "reference": ref, "at_ceiling": False,
                               "uninformative": ""}
        if deeper is not None and deeper in iy.columns and iy[deeper].notna().any():
            s_ = iy[deeper].dropna()
            if th.reference == "network":
                level, lvl_e, lvl_l = ref, ref_e, ref_l
            else:
                level, lvl_e, lvl_l = float(s_.max()), int(s_.idxmax()), deeper
            row["reference"] = level
            why_ref = v.why_y(lvl_e, lvl_l)
            e = settle_epoch(s_, level, th.reach_frac, th.stay_frac)
            row["epoch"] = e
            if math.isfinite(e):
                row["after"] = _prev_logged(epochs, e)
                row["value"] = float(s_.loc[int(e)])
                row["at_ceiling"] = bool(cy.loc[int(e), deeper]) or bool(cy.loc[lvl_e, lvl_l])
                why = v.why_y(int(e), deeper)
            else:
                row["value"] = float(s_.max())
                why = v.why_y(int(s_.index[-1]), deeper)
            if why_ref:
                row["uninformative"] = f"the maximum is not information: {why_ref}"
            elif why:
                row["uninformative"] = why
        rows.append(row)
    return pd.DataFrame(rows, columns=list(PREDICTION_COLUMNS))


def prediction(pred: pd.DataFrame, removed: Iterable[Pair]) -> tuple[float, bool, str]:
    """(epoch, rests on an at-ceiling estimate, why it is undecided -- "" when decided) from
    which a model without ``removed`` skips is predicted to match the full model: the latest of
    their epochs; NaN (never) if one of them is a decided never (or missing); undecided when
    one of them rests on an estimate that is not information (and none is a decided never)."""
    removed = [tuple(p) for p in removed]
    if not removed:
        return 0.0, False, ""
    sub = pred[[(int(r.source), int(r.merge)) in removed for r in pred.itertuples()]]
    why = sub["uninformative"].fillna("").astype(str) if "uninformative" in sub else pd.Series("", index=sub.index)
    if len(sub) < len(removed):
        return float("nan"), False, ""
    never = sub["epoch"].isna()
    if (never & (why == "")).any():
        return float("nan"), False, ""
    reasons = [f"{s}: {w}" for s, w in zip(sub["skip"], why) if w]
    if reasons:
        return (float("nan") if never.any() else float(sub["epoch"].max())), bool(sub["at_ceiling"].any()), \
            "; ".join(reasons)
    return float(sub["epoch"].max()), bool(sub["at_ceiling"].any()), ""


def smooth_dice(metrics: pd.DataFrame, window: int = 5, column: str = "dice_val") -> pd.Series:
    """Running maximum of the trailing ``window``-epoch mean of ``column``, indexed by epoch."""
    s = metrics.sort_values("epoch").set_index("epoch")[column].astype(float)
    return s.rolling(max(int(window), 1), min_periods=1).mean().cummax()


def median_metrics(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Median across seeds per epoch of every metric column."""
    frames = [f for f in frames if f is not None and not f.empty]
    if not frames:
        return pd.DataFrame()
    if len(frames) == 1:
        return frames[0]
    both = pd.concat(frames, ignore_index=True)
    return both.groupby("epoch", sort=True).median(numeric_only=True).reset_index()


def dice_outcomes(metrics: Mapping[str, pd.DataFrame], reference: str,
                  th: ClaimThresholds = ClaimThresholds()) -> pd.DataFrame:
    """When each model's smoothed validation Dice comes within ``dice_tol`` of the reference
    model's best smoothed value.

    ``metrics``: ``{label: metrics table}`` (one per model; use :func:`median_metrics` for seeds).
    Columns: ``model``, ``match_epoch`` (NaN: never), ``best`` (its best smoothed Dice),
    ``target`` (reference best - dice_tol), ``last_epoch``.
    """
    if reference not in metrics or metrics[reference].empty:
        raise InfoflowError(f"no metrics of the reference model {reference!r}")
    ref = smooth_dice(metrics[reference], th.dice_window)
    target = float(ref.iloc[-1]) - th.dice_tol
    rows = []
    for label, m in metrics.items():
        if m is None or m.empty:
            rows.append({"model": label, "match_epoch": float("nan"), "best": float("nan"), "target": target,
                         "last_epoch": 0})
            continue
        s = smooth_dice(m, th.dice_window)
        rows.append({"model": label, "match_epoch": reach_epoch(s, target), "best": float(s.iloc[-1]),
                     "target": target, "last_epoch": int(s.index.max())})
    return pd.DataFrame(rows)


def agreement(predicted: float, outcome: float, ref_match: float, last_epoch: int, ceiling: bool,
              th: ClaimThresholds = ClaimThresholds(), uninformative: str = "") -> tuple[str, str]:
    """(status, reason) of one model's prediction against its Dice outcome. ``uninformative``:
    why the prediction rests on an estimate that is not information (then undecided)."""
    if uninformative:
        return UNDECIDED, f"the prediction rests on estimates that are not information ({uninformative})"
    if not math.isfinite(predicted):
        if not math.isfinite(outcome):
            return PASS, "predicted never, never matched"
        return FAIL, f"predicted never (a removed skip stays needed) but matched at epoch {int(outcome)}"
    expect = max(predicted, ref_match if math.isfinite(ref_match) else 0.0)
    bound = th.agree_factor * max(expect, 1.0)
    if math.isfinite(outcome):
        if outcome <= bound:
            note = " (earlier than predicted)" if outcome < predicted / th.agree_factor else ""
            status, why = PASS, f"matched at {int(outcome)} <= {th.agree_factor:g} x {int(expect)}{note}"
        else:
            status, why = FAIL, f"matched only at {int(outcome)} > {th.agree_factor:g} x {int(expect)}"
    elif last_epoch < bound:
        return UNDECIDED, f"never matched, but the run ended at {last_epoch} < {th.agree_factor:g} x {int(expect)}"
    else:
        status, why = FAIL, f"never matched by epoch {last_epoch} although predicted from epoch {int(predicted)}"
    if ceiling:  # a predicted epoch read off a layer at its ceiling is the ceiling's, not the network's
        return UNDECIDED, f"{why}, but the prediction rests on an estimate at its ceiling"
    return status, why


def _paper(claim: str, key: str) -> str:
    t = PAPER_NUMBERS.get(claim, {}).get(key)
    return f" (paper: {t})" if t else ""


def claim4(c: pd.DataFrame | None, metrics: Mapping[str, pd.DataFrame], removed: Mapping[str, Iterable[Pair]],
           reference: str, layout: NetworkLayout = UNET_LAYOUT, th: ClaimThresholds = ClaimThresholds()
           ) -> tuple[list[ClaimResult], pd.DataFrame, pd.DataFrame]:
    """Claim 4: one result per ablated model and an overall one; also the predictions and the
    outcomes tables. ``c``: the full model's curves (None: no MI, predictions undecided)."""
    st = STATEMENTS["4"]
    out = dice_outcomes(metrics, reference, th)
    o = out.set_index("model")
    ref_match = float(o.loc[reference, "match_epoch"])
    few = _too_few(c, th) if c is not None else "no MI estimates of the full model"
    pred = redundancy_predictions(c, layout, th) if c is not None and not c.empty else pd.DataFrame(
        columns=list(PREDICTION_COLUMNS))
    results = []
    statuses = []
    for label, rem in removed.items():
        if label == reference:
            continue
        rem = [tuple(p) for p in rem]
        outcome = float(o.loc[label, "match_epoch"]) if label in o.index else float("nan")
        last = int(o.loc[label, "last_epoch"]) if label in o.index else 0
        skips = ", ".join(f"{a}->{b}" for a, b in rem) or "none"
        key = f"4 {label}"
        if few:
            s, why, p_e, unin = UNDECIDED, few, float("nan"), ""
        else:
            p_e, ceiling, unin = prediction(pred, rem)
            s, why = agreement(p_e, outcome, ref_match, last, ceiling, th, unin)
        statuses.append(s)
        p_txt = f"{_ep(p_e)} (undecided)" if unin else _ep(p_e)
        results.append(ClaimResult(key, f"{label} (without {skips}) matches {reference} from the predicted "
                                   f"epoch on", s,
                                   f"predicted from MI: {p_txt}{_paper(key, 'predicted')}; Dice within "
                                   f"{th.dice_tol} of {reference}'s best ({o.loc[reference, 'best']:.3f}): "
                                   f"{_ep(outcome)}{_paper(key, 'matches Model 1')}; {why}",
                                   {"predicted": p_e, "outcome": outcome}))
    # the paper's outcome pattern, from Dice alone: ordered match epochs, the most ablated never
    ablated = [l for l in removed if l != reference]
    ablated.sort(key=lambda l: len(list(removed[l])))
    if len(ablated) >= 2:
        ts = [float(o.loc[l, "match_epoch"]) if l in o.index else float("nan") for l in ablated]
        inf = [t if math.isfinite(t) else math.inf for t in ts]
        ordered = all(a <= b for a, b in zip(inf[:-1], inf[1:]))
        pattern_ok = ordered and math.isfinite(ts[0]) and not math.isfinite(ts[-1])
        results.append(ClaimResult(
            "4 outcome", "Dice: the ablated models match in order of skips removed; the first does, the last never",
            PASS if pattern_ok else FAIL,
            f"{reference} reaches its best (within {th.dice_tol}) at {_ep(ref_match)}; "
            + ", ".join(f"{l}: {_ep(t)}{_paper('4 outcome', l)}" for l, t in zip(ablated, ts))
            + f" ({'ordered' if ordered else 'not ordered'})",
            {f"match_{l}": t for l, t in zip(ablated, ts)}))
    ptxt = "; ".join(f"{r.skip} when layer {r.deeper} reaches it: {_ep(r.epoch)}"
                     + (f" (after {int(r.after)})" if math.isfinite(r.after) and r.after else "")
                     + (" [at ceiling]" if r.at_ceiling else "")
                     + (" [not information]" if r.uninformative else "")
                     + (_paper("4", _PAPER_REACH[r.deeper]) if r.deeper in _PAPER_REACH else "")
                     for r in pred.itertuples() if r.deeper >= 0)
    ref_val = float(pred["reference"].iloc[0]) if len(pred) else float("nan")
    deepest = min(layout.merge_layers) if layout.merge_layers else None
    d_txt = ""
    if c is not None and not c.empty and deepest is not None:
        dv = pd.to_numeric(c.loc[c["layer"] == deepest, "I_YM"], errors="coerce")
        if dv.notna().any():
            d_txt = f"I(Y;M{deepest}) reaches {float(dv.max()):.2f} bits{_paper('4', 'I(Y;M11)')}. "
    head = (f"maximum I(Y;M) {ref_val:.2f} bits{_paper('4', 'maximum I(Y;M)')}; skip redundant from: {ptxt}. {d_txt}"
            if len(pred) else "")
    overall = ClaimResult("4", st, combine(statuses) if statuses else UNDECIDED,
                          head + "; ".join(f"{r.claim[2:]}: {r.status}" for r in results if r.claim != "4 outcome"),
                          parts={r.claim: r.status for r in results})
    return [overall] + results, pred, out


# ---------------------------------------------------------------------------------------------
# All claims, with seeds
# ---------------------------------------------------------------------------------------------


def _as_list(x: Tables | None) -> list[pd.DataFrame]:
    if x is None:
        return []
    if isinstance(x, pd.DataFrame):
        return [x]
    return list(x)


def _spread(per_seed: list[ClaimResult]) -> str:
    if len(per_seed) < 2:
        return ""
    counts = {s: sum(normalize_status(r.status) == s for r in per_seed) for s in STATUSES}
    txt = "per seed: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    keys = [k for k in per_seed[0].numbers if all(k in r.numbers for r in per_seed)]
    spreads = []
    for k in keys[:8]:
        vals = [r.numbers[k] for r in per_seed]
        fin = [v for v in vals if v is not None and math.isfinite(v)]
        none = "never" if any(w in k for w in ("epoch", "predicted", "outcome", "match", "t_")) else "n/a"
        if not fin:
            spreads.append(f"{k} {none}")
            continue
        never = len(fin) < len(vals)
        spreads.append(f"{k} {_fmt(min(fin))}-{_fmt(max(fin))}{f' (some {none})' if never else ''}")
    return txt + ("; range " + ", ".join(spreads) if spreads else "")


def evaluate_claims(mi: Tables | None, metrics: Mapping[str, Tables] | None = None,
                    removed: Mapping[str, Iterable[Pair]] | None = None, reference: str = "Model 1", *,
                    layout: NetworkLayout | None = None, thresholds: ClaimThresholds | None = None,
                    estimator: str | None = None, setting: str | None = None, labels: str | None = None
                    ) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Every claim, from tables.

    Args:
        mi: the full model's tidy MI table, or one per seed.
        metrics: ``{model label: metrics table or one per seed}`` (seeds in the same order as
            ``mi``); needs the ``reference`` model for claim 4.
        removed: ``{model label: skip pairs it lacks}`` (the reference lacks none).
        reference: label of the full model.
        layout: the network's :class:`~infoflow.network.NetworkLayout` (default: the paper's U-Net).
        thresholds: see :class:`ClaimThresholds`.
        estimator, setting, labels: which estimate to read (default ``kde_upper``, its first
            setting, ``kmeans``).

    Returns:
        ``(claims, extra)``: the claims table (:data:`CLAIM_COLUMNS`) and
        ``{"predictions": ..., "outcomes": ...}`` of claim 4 (on the seed medians).
    """
    layout = layout or UNET_LAYOUT
    th = thresholds or ClaimThresholds()
    tables = [t for t in _as_list(mi) if t is not None and not t.empty]
    results: list[tuple[ClaimResult, list[ClaimResult]]] = []
    sel_text = ""
    cur_med: pd.DataFrame | None = None
    per_seed_curves: list[pd.DataFrame] = []
    if tables:
        sel = select(tables[0], estimator, setting, labels)
        sel_text = sel.describe()
        per_seed_curves = [curves(t, sel, th.floor_frac) for t in tables]
        cur_med = median_curves(per_seed_curves, th.ceiling_share, th.floor_frac)
        for fn in (claim1, claim2, claim3):
            med = fn(cur_med, layout, th)
            seeds = [fn(cs, layout, th) for cs in per_seed_curves] if len(per_seed_curves) > 1 else []
            results.append((med, seeds))
    else:
        for k in ("1", "2", "3"):
            results.append((ClaimResult(k, STATEMENTS[k], UNDECIDED, "no MI estimates of the full model"), []))
    extra: dict[str, pd.DataFrame] = {}
    if metrics:
        per_model = {k: _as_list(v) for k, v in metrics.items()}
        med_metrics = {k: median_metrics(v) for k, v in per_model.items()}
        rem = dict(removed or {})
        rem.setdefault(reference, [])
        c4, pred, out = claim4(cur_med, med_metrics, rem, reference, layout, th)
        extra = {"predictions": pred, "outcomes": out}
        n_seeds = max(len(v) for v in per_model.values())
        seeds4: list[list[ClaimResult]] = [[] for _ in c4]
        if n_seeds > 1:
            for s in range(n_seeds):
                ms = {k: v[s] if s < len(v) else median_metrics(v) for k, v in per_model.items()}
                cs = per_seed_curves[s] if s < len(per_seed_curves) else cur_med
                try:
                    r4, _, _ = claim4(cs, ms, rem, reference, layout, th)
                except InfoflowError:
                    continue
                for i, r in enumerate(r4):
                    if i < len(seeds4) and r.claim == c4[i].claim:
                        seeds4[i].append(r)
        results += list(zip(c4, seeds4))
    else:
        results.append((ClaimResult("4", STATEMENTS["4"], UNDECIDED, "no Dice curves of the models"), []))
    n = max(len(tables), max((len(_as_list(v)) for v in (metrics or {}).values()), default=0), 1)
    rows = []
    for med, seeds in results:
        sp = _spread(seeds)
        rows.append({"claim": med.claim, "statement": med.statement, "status": med.status,
                     "detail": med.detail + (f" [{sp}]" if sp else ""), "selection": sel_text,
                     "seeds": n if n > 1 else 1})
    return pd.DataFrame(rows, columns=list(CLAIM_COLUMNS)), extra


# ---------------------------------------------------------------------------------------------
# From run directories
# ---------------------------------------------------------------------------------------------


def model_of_run(run: RunDir, layout: NetworkLayout | None = None) -> tuple[str, list[Pair]]:
    """(label, removed skip pairs) of a run from its config (:func:`layout_from_config`): "Model m"
    for the paper's U-Net skip masks, else "skips 1,0,1,1". ``layout``: the full architecture's
    layout to take the removed pairs from (default: the run's own)."""
    try:
        own = layout_from_config(run.read_config())
    except InfoflowError as exc:
        raise RunError(f"{run.path}: {exc}") from None
    lay = own if layout is None else layout.with_present(own.present)
    mask = tuple(own.present)
    if own.skip_pairs == UNET_LAYOUT.skip_pairs:
        for num, m in MODEL_SKIPS.items():
            if tuple(m) == mask:
                return f"Model {num}", list(lay.removed_pairs)
    return "skips " + ",".join(str(int(s)) for s in mask), list(lay.removed_pairs)


def group_by_model(runs: Sequence[RunDir | str | os.PathLike], layout: NetworkLayout | None = None,
                   label: Callable[[RunDir], tuple[str, list[Pair]]] | None = None
                   ) -> tuple[dict[str, list[RunDir]], dict[str, list[Pair]]]:
    """``({label: [runs, in seed order]}, {label: removed pairs})``."""
    groups: dict[str, list[RunDir]] = {}
    removed: dict[str, list[Pair]] = {}
    for r in runs:
        run = r if isinstance(r, RunDir) else RunDir.open(r)
        lab, rem = (label or (lambda x: model_of_run(x, layout)))(run)
        groups.setdefault(lab, []).append(run)
        removed[lab] = rem
    for lab, members in groups.items():
        members.sort(key=lambda x: (int((x.read_config().get("train") or {}).get("seed", 0)), str(x.path)))
    return dict(sorted(groups.items(), key=lambda kv: (len(removed[kv[0]]), kv[0]))), removed


def claims_from_runs(runs: Sequence[RunDir | str | os.PathLike], *, layout: NetworkLayout | None = None,
                     thresholds: ClaimThresholds | None = None, estimator: str | None = None,
                     settings: Sequence[str] | None = None, labels: str | None = None,
                     label: Callable[[RunDir], tuple[str, list[Pair]]] | None = None
                     ) -> tuple[pd.DataFrame, dict[str, dict[str, pd.DataFrame]]]:
    """Every claim from run directories (the models' runs, any number of seeds each).

    The full model is the group with no skip removed; ``layout``: default the runs' own (their
    ``config.json``, the same architecture in every run). ``settings``: evaluate the claims for each
    of these settings of ``estimator`` (default: its first only; ``"all"`` for every one); the
    rows of each setting carry it in the ``selection`` column. Returns the claims table and
    ``{selection: {"predictions", "outcomes"}}``.
    """
    groups, removed = group_by_model(runs, layout, label)
    full = [lab for lab, rem in removed.items() if not rem]
    if not full:
        raise InfoflowError("no run of the full model (all skips present) among the runs: claim 4 needs it")
    reference = full[0]
    if layout is None:  # the layout of the runs: the full model's, the same architecture in every run
        layouts = {str(r.path): layout_from_config(r.read_config()) for rs in groups.values() for r in rs}
        layout = layouts[str(groups[reference][0].path)]
        other = [p for p, lay in layouts.items() if (lay.names, lay.skip_pairs) != (layout.names, layout.skip_pairs)]
        if other:
            raise InfoflowError(f"the runs are not of one network: {', '.join(other)} differ(s) in probe layers or "
                                f"skips from {groups[reference][0].path}; pass layout= to check them together")
    mi_tables = [r.read_mi() for r in groups[reference]]
    mi_tables = [t for t in mi_tables if not t.empty]
    metrics = {lab: [r.read_metrics() for r in members] for lab, members in groups.items()}
    est = estimator or "kde_upper"
    if settings == "all" or (isinstance(settings, (list, tuple)) and "all" in settings):
        chosen: list[str | None] = list(settings_of(mi_tables[0], est)) if mi_tables else [None]
    elif settings:
        chosen = list(settings)
    else:
        chosen = [None]
    frames, extras = [], {}
    for st in chosen or [None]:
        table, extra = evaluate_claims(mi_tables, metrics, removed, reference, layout=layout, thresholds=thresholds,
                                       estimator=estimator if mi_tables else None, setting=st if mi_tables else None,
                                       labels=labels)
        frames.append(table)
        extras[table["selection"].iloc[0] if len(table) else str(st)] = extra
    claims = pd.concat(frames, ignore_index=True)
    # the Dice-only row does not depend on the estimate: keep it once
    dup = claims["claim"].eq("4 outcome") & claims.duplicated(subset=["claim", "detail"])
    return claims[~dup].reset_index(drop=True), extras


# ---------------------------------------------------------------------------------------------
# Printing
# ---------------------------------------------------------------------------------------------


def claims_markdown(claims: pd.DataFrame, extras: Mapping[str, Mapping[str, pd.DataFrame]] | None = None, *,
                    thresholds: ClaimThresholds | None = None, title: str = "Claims of Lee & Bajic (2021), checked",
                    preamble: str = "") -> str:
    """The claims table (and claim 4's predictions and outcomes) as Markdown."""
    th = thresholds or ClaimThresholds()
    lines = [f"# {title}", ""]
    if preamble:
        lines += [preamble, ""]
    status = claims["status"].map(normalize_status) if len(claims) else pd.Series(dtype=str)
    counts = status.value_counts().to_dict() if len(claims) else {}
    lines.append("Summary: " + ", ".join(f"{counts.get(s, 0)} {s}" for s in STATUSES) + ".")
    lines.append("")
    lines += ["Status: **pass** the data show the claim under the thresholds below; **fail** they contradict it; "
              "**undecided** the estimates it rests on are not information (at the floor, about 0 bits, or not "
              "above the permutation baseline) or sit at their ceiling, too few epochs carry information, too few "
              "logged epochs, or a run too short to tell. *paper*: what the paper reports; *ours*: the numbers "
              "this check was decided on.", ""]
    claims = claims.assign(status=status) if len(claims) else claims
    for sel, part in claims.groupby("selection", sort=False):
        lines += [f"## Estimate: {sel or '(none)'}", "", "| claim | status | paper | ours |", "|---|---|---|---|"]
        for r in part.itertuples():
            detail = str(r.detail).replace("|", "\\|").replace("\n", " ")
            paper = paper_text(str(r.claim)).replace("|", "\\|")
            lines.append(f"| {r.claim} | **{r.status}** | {paper} | {detail} |")
        lines.append("")
    for sel, extra in (extras or {}).items():
        pred, out = extra.get("predictions"), extra.get("outcomes")
        if pred is not None and len(pred):
            lines += [f"### Claim 4 predictions ({sel})", "", "| skip | deeper merge layer | redundant from epoch "
                      "| after epoch | I(Y;M) then (bits) | maximum | at ceiling | evidence |",
                      "|---|---|---|---|---|---|---|---|"]
            for r in pred.itertuples():
                unin = str(getattr(r, "uninformative", "") or "")
                unin = "" if unin == "nan" else unin.replace("|", "\\|")
                lines.append(f"| {r.skip} | {'-' if r.deeper < 0 else r.deeper} | {_ep(r.epoch)} | "
                             f"{'' if not math.isfinite(r.after) else int(r.after)} | {_fmt(r.value)} | "
                             f"{_fmt(r.reference)} | {'yes' if r.at_ceiling else 'no'} | "
                             f"{('not information: ' + unin) if unin else ('-' if r.deeper < 0 else 'information')} |")
            lines.append("")
        if out is not None and len(out):
            lines += [f"### Claim 4 outcomes (Dice, {sel})", "", "| model | matches from epoch | best smoothed "
                      "validation Dice | target | last epoch |", "|---|---|---|---|---|"]
            for r in out.itertuples():
                lines.append(f"| {r.model} | {_ep(r.match_epoch)} | {_fmt(r.best, 3)} | {r.target:.3f} | "
                             f"{r.last_epoch} |")
            lines.append("")
    lines += ["## Thresholds", ""]
    lines += [f"- `{f.name}` = {getattr(th, f.name)!r}" for f in fields(th)]
    lines += ["", "See `infoflow.analysis.claims` (module docstring) and docs/reproduce.md for what each "
              "threshold means.", ""]
    return "\n".join(lines)


def print_claims(claims: pd.DataFrame, echo: Callable[[str], Any] = print) -> None:
    """One block per claim: status and the numbers."""
    for r in claims.itertuples():
        sel = f" [{r.selection}]" if r.selection else ""
        echo(f"claim {r.claim}{sel}: {normalize_status(r.status).upper()}")
        echo(f"    {r.detail}")
