"""The paper's claims (Lee & Bajic 2021, section 4; methods.md section 8) checked from the data.

Every check is a pure function of tables: the tidy MI table of the full model (``mi.csv``, one
per seed) and the metrics tables of the models (``metrics.csv``). Where the network's layers
are involved they come from a :class:`Layout` (skip pairs, merge layers, which layers are
"first", "bottom", "top", "encoder"), so any network with skip connections can be checked;
:meth:`Layout.unet` is the paper's U-Net. :func:`claims_from_runs` does the same from run
directories.

Each claim ends as ``pass``, ``fail`` or ``inconclusive`` and is printed with the numbers it was
decided on. The thresholds are the fields of :class:`ClaimThresholds`; their meaning:

Reading I(Y;M)
    One estimate per (epoch, layer): estimator ``kde_upper`` (default), its first setting unless
    one is named, labels ``kmeans`` (else the first labelling). A layer *reaches* a level at the
    first logged epoch where its I(Y;M) >= ``reach_frac`` (0.95) x the level and from which on
    it never falls below ``stay_frac`` (0.90) x the level (a transient spike does not count).
    Logged epochs are a grid: a reach epoch ``e`` means "after the previous logged epoch, by
    epoch ``e``". "The maximum" in claim 4 is the network's maximum: the largest I(Y;M) of any
    layer at any logged epoch (the paper's "maximum of about 3 bits" that the top layers reach);
    with ``reference="layer"`` it is each layer's own maximum instead.

Ceilings
    An estimate flagged ``at_ceiling`` (I(X;M) within 1% of log2 N, I(Y;M) within 1% of H(Y))
    cannot grow further whatever the layer holds. A verdict that rests on such estimates (a
    layer "reaching the maximum" that is the estimator's ceiling; a "rise" after a layer already
    at its ceiling) is ``inconclusive``. With several seeds an estimate counts as at its ceiling
    when it is in more than half of the seeds.

Claim 1 (first layers learn fast)
    Each of ``first_layers`` (0, 1) reaches its own maximum by epoch ``early_epochs`` ("within
    the first few epochs, I(Y;M_i) reaches its maximum ... and stays there"); the detail also
    gives that maximum as a share of the network's.
Claim 2 (bottom layers learn later and stay below)
    (a) the median over ``bottom_layers`` (8-14) of the epoch at which each reaches its own
    final level (the median of its last three logged epochs; a layer still moving at the end
    counts as never) is later than the same median over ``top_layers``
    (0, 1, 20, 21, 22); (b) the median over the bottom layers of their maximum I(Y;M) is below
    ``reach_frac`` x the top layers' maximum.
Claim 3 (U-shape)
    Over the early logged epochs (<= ``early_epochs``): (a) along ``encoder_layers`` (0-9) I(X;M)
    does not rise: at least ``fall_frac`` (0.8) of the consecutive steps rise by at most
    ``rise_tol`` (0.05 bits; steps between two layers at their ceiling are not counted) and the
    first encoder layer is above the last by more than ``rise_tol`` (median over the epochs);
    (b) at every merge layer m, I(X;M_m) - I(X;M_{m-1}) and I(Y;M_m) - I(Y;M_{m-1}) exceed
    ``rise_tol`` (median over the early epochs).
Claim 4 (skips redundant once the deeper merge layer reaches the maximum)
    Prediction, from the full model's I(Y;M): the skip into merge layer m is redundant from the
    epoch at which the next deeper merge layer reaches the maximum (17 for 1->20, 14 for 3->17,
    11 for 5->14); a model without several skips is predicted to match from the latest of
    their epochs, and never when one of them never reaches it (or has no deeper merge layer).
    Outcome, from the Dice curves: validation Dice smoothed as the running maximum of its
    trailing ``dice_window``-epoch (5) mean; the target is the full model's final smoothed
    value (its best 5-epoch mean); a model *matches* at the first epoch its smoothed Dice is
    within ``dice_tol`` (0.02) of the target, or never. Agreement per model: a "never"
    prediction agrees with no match; a predicted epoch ``p`` agrees with a match at
    ``t <= agree_factor`` (3) x max(p, the full model's own match epoch) (a model cannot be
    expected to match before the full model reaches its best; the factor covers the logged-epoch
    grid: the paper's prediction "around 1,000" met Dice at 2,000-3,000). No match with a
    prediction ``p`` is a failure when the run lasted beyond ``agree_factor`` x max(p, ...), else
    inconclusive (too short to tell). An agreement that rests on an at-ceiling estimate is
    inconclusive.

Too few logged epochs (fewer than ``min_logged``) make every MI claim inconclusive.

Several seeds: each claim is decided on the median across seeds (MI: the median estimate per
(epoch, layer); Dice: the median curve per epoch) and also per seed; the detail reports the
per-seed statuses and the spread (min-max) of the numbers.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Union

import numpy as np
import pandas as pd

from ..errors import InfoflowError, RunError
from ..estimators.table import Selection
from ..estimators.table import select as _select
from ..runs import RunDir

PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"
STATUSES = (PASS, FAIL, INCONCLUSIVE)

#: Columns of the claims table (claims.csv).
CLAIM_COLUMNS = ("claim", "statement", "status", "detail", "selection", "seeds")

Pair = tuple[int, int]
Tables = Union[pd.DataFrame, Sequence[pd.DataFrame]]


# ---------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """Where the claims look in a network (defaults: the paper's 23-layer U-Net).

    ``skip_pairs`` are (source layer, merge layer) of the skips of the *full* model; the merge
    layer's input from the deep path is layer ``merge - 1``. The "next deeper merge layer" of a
    skip is the merge layer of the skip below it (merge layers ordered top to bottom, i.e. by
    decreasing index: 20, 17, 14, 11).
    """

    skip_pairs: tuple[Pair, ...] = ((1, 20), (3, 17), (5, 14), (7, 11))
    first_layers: tuple[int, ...] = (0, 1)
    bottom_layers: tuple[int, ...] = tuple(range(8, 15))
    top_layers: tuple[int, ...] = (0, 1, 20, 21, 22)
    encoder_layers: tuple[int, ...] = tuple(range(0, 10))

    @classmethod
    def unet(cls) -> "Layout":
        from ..models.unet import SKIP_PAIRS

        return cls(skip_pairs=tuple((int(a), int(b)) for a, b in SKIP_PAIRS))

    @property
    def merge_layers(self) -> tuple[int, ...]:
        return tuple(sorted({m for _, m in self.skip_pairs}))

    def top_down(self) -> list[Pair]:
        """Skip pairs ordered from the top level (largest merge index) down."""
        return sorted(self.skip_pairs, key=lambda p: -p[1])

    def deeper_merge(self, pair: Pair) -> int | None:
        """The merge layer one level deeper than ``pair``'s (None for the deepest skip)."""
        order = self.top_down()
        k = order.index(tuple(pair))
        return order[k + 1][1] if k + 1 < len(order) else None


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
    min_logged: int = 5  # fewer logged epochs: MI claims inconclusive
    ceiling_share: float = 0.5  # seeds: an estimate is at its ceiling when in more than this share

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


# ---------------------------------------------------------------------------------------------
# From the tidy MI table to curves
# ---------------------------------------------------------------------------------------------


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


def curves(mi: pd.DataFrame, sel: Selection) -> pd.DataFrame:
    """One row per (epoch, layer): ``I_XM, I_YM, ceil_x, ceil_y, log2n, h_y``."""
    rows = mi[(mi["estimator"].astype(str) == sel.estimator) & (mi["setting"].astype(str) == sel.setting)]
    ceil = rows["at_ceiling"].astype(str).str.lower().isin(("true", "1")) if "at_ceiling" in rows else False
    rows = rows.assign(_ceil=ceil)
    x = rows[rows["quantity"] == "I_XM"][["epoch", "layer", "value", "_ceil", "log2n"]]
    x = x.rename(columns={"value": "I_XM", "_ceil": "ceil_x"})
    y = rows[(rows["quantity"] == "I_YM") & (rows["labels"].astype(str) == sel.labels)]
    y = y[["epoch", "layer", "value", "_ceil", "h_y"]].rename(columns={"value": "I_YM", "_ceil": "ceil_y"})
    out = pd.merge(x, y, on=["epoch", "layer"], how="outer")
    if out.empty:
        raise InfoflowError(f"no I(X;M) / I(Y;M) estimates for {sel.describe()}")
    for c in ("ceil_x", "ceil_y"):
        out[c] = out[c].astype("boolean").fillna(False).astype(bool)
    out["epoch"] = out["epoch"].astype(int)
    out["layer"] = out["layer"].astype(int)
    return out.sort_values(["epoch", "layer"]).reset_index(drop=True)


def median_curves(tables: Sequence[pd.DataFrame], ceiling_share: float = 0.5) -> pd.DataFrame:
    """Seed aggregate of :func:`curves` tables: median value per (epoch, layer); a ceiling flag is
    set when more than ``ceiling_share`` of the seeds have it."""
    if len(tables) == 1:
        return tables[0]
    both = pd.concat(list(tables), ignore_index=True)
    g = both.groupby(["epoch", "layer"], sort=True)
    out = g[["I_XM", "I_YM", "log2n", "h_y"]].median()
    for c in ("ceil_x", "ceil_y"):
        out[c] = g[c].mean() > ceiling_share
    return out.reset_index()


def _pivot(c: pd.DataFrame, col: str) -> pd.DataFrame:
    """epochs x layers table of one column."""
    return c.pivot_table(index="epoch", columns="layer", values=col, aggfunc="first").sort_index()


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------


def combine(statuses: Iterable[str]) -> str:
    """fail if any fails; else inconclusive if any is; else pass (pass for none)."""
    s = list(statuses)
    if FAIL in s:
        return FAIL
    if INCONCLUSIVE in s:
        return INCONCLUSIVE
    return PASS


def _fmt(x: float | None, nd: int = 2) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "never"
    if float(x) == int(x) and abs(x) >= 1:
        return str(int(x))
    return f"{x:.{nd}f}"


def _ep(x: float | None) -> str:
    return "never" if x is None or not math.isfinite(float(x)) else str(int(x))


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


def _missing(layers: Iterable[int], iy: pd.DataFrame) -> list[int]:
    return [int(l) for l in layers if l not in iy.columns]


# ---------------------------------------------------------------------------------------------
# Claims 1-3 (the full model's MI)
# ---------------------------------------------------------------------------------------------

STATEMENTS = {
    "1": "The first two layers reach their maximum I(Y;M) within the first few epochs (and stay there).",
    "2": "Bottom layers (8-14) learn later and stay below the top layers' maximum I(Y;M).",
    "3": "U-shape: along the encoder I(X;M) falls; at merge layers 11, 14, 17, 20 both I(X;M) and I(Y;M) "
         "rise, visibly in early epochs.",
    "4": "A skip is redundant once the next deeper merge layer reaches the maximum I(Y;M): Model 2 matches "
         "Model 1's Dice after enough epochs, Model 3 later, Model 4 never within the budget.",
}


def claim1(c: pd.DataFrame, layout: Layout = Layout(), th: ClaimThresholds = ClaimThresholds()) -> ClaimResult:
    """Claim 1 on a curves table (see the module docstring)."""
    st = STATEMENTS["1"]
    few = _too_few(c, th)
    if few:
        return ClaimResult("1", st, INCONCLUSIVE, few)
    iy, cy = _pivot(c, "I_YM"), _pivot(c, "ceil_y")
    miss = _missing(layout.first_layers, iy)
    if miss:
        return ClaimResult("1", st, INCONCLUSIVE, f"no I(Y;M) of layer(s) {miss}")
    ref, ref_e, ref_l = _network_max(iy)
    epochs = list(iy.index)
    parts, statuses, numbers = [], [], {}
    if not [e for e in epochs if e <= th.early_epochs]:
        return ClaimResult("1", st, INCONCLUSIVE, f"no logged epoch <= {th.early_epochs} (early_epochs)")
    for layer in layout.first_layers:
        v = iy[layer].dropna()
        own = float(v.max())
        e = settle_epoch(v, own, th.reach_frac, th.stay_frac)
        ceiling = bool(math.isfinite(e) and cy.loc[int(e), layer])
        numbers[f"reach_epoch_{layer}"] = e
        numbers[f"max_{layer}"] = own
        if not math.isfinite(e) or e > th.early_epochs:
            s = FAIL
        elif ceiling:
            s = INCONCLUSIVE
        else:
            s = PASS
        statuses.append(s)
        after = _prev_logged(epochs, e) if math.isfinite(e) else 0
        parts.append(f"layer {layer}: maximum {own:.2f} bits ({own / ref:.0%} of the network's), reached "
                     f"(>= {th.reach_frac:.0%}, staying >= {th.stay_frac:.0%}) at epoch {_ep(e)}"
                     f"{f' (after {after})' if after else ''}{', at its ceiling H(Y)' if ceiling else ''}: {s}")
    detail = (f"early = epoch <= {th.early_epochs}; network maximum I(Y;M) {ref:.2f} bits (layer {ref_l}, "
              f"epoch {ref_e}). " + "; ".join(parts))
    numbers["max"] = ref
    return ClaimResult("1", st, combine(statuses), detail, numbers)


def claim2(c: pd.DataFrame, layout: Layout = Layout(), th: ClaimThresholds = ClaimThresholds()) -> ClaimResult:
    """Claim 2 on a curves table."""
    st = STATEMENTS["2"]
    few = _too_few(c, th)
    if few:
        return ClaimResult("2", st, INCONCLUSIVE, few)
    iy, cy = _pivot(c, "I_YM"), _pivot(c, "ceil_y")
    miss = _missing(list(layout.bottom_layers) + list(layout.top_layers), iy)
    if miss:
        return ClaimResult("2", st, INCONCLUSIVE, f"no I(Y;M) of layer(s) {miss}")

    def own(layer: int) -> tuple[float, float, bool]:
        """(epoch it reaches its final level, its maximum, at its ceiling when it does)."""
        v = iy[layer].dropna()
        mx = float(v.max())
        final = float(v.iloc[-3:].median())
        if final > 0:
            e = settle_epoch(v, final, th.reach_frac, th.stay_frac)
            e = e if math.isfinite(e) else math.inf  # still moving at the end: learns late
        else:
            e = float(v.index[0])
        ceiling = bool(cy.loc[int(e), layer]) if math.isfinite(e) else bool(cy[layer].iloc[-1])
        return e, mx, ceiling

    bot = {l: own(l) for l in layout.bottom_layers}
    top = {l: own(l) for l in layout.top_layers}
    t_bot = float(np.median([v[0] for v in bot.values()]))
    t_top = float(np.median([v[0] for v in top.values()]))
    top_max = max(v[1] for v in top.values())
    bot_max = float(np.median([v[1] for v in bot.values()]))
    n_bot_ceil = sum(v[2] for v in bot.values())
    n_top_ceil = sum(v[2] for v in top.values())
    # (a) later
    if t_bot > t_top:
        sa = INCONCLUSIVE if n_top_ceil * 2 > len(top) else PASS
    else:
        sa = INCONCLUSIVE if n_bot_ceil * 2 > len(bot) else FAIL
    # (b) below
    below = bot_max < th.reach_frac * top_max
    sb = PASS if below else (INCONCLUSIVE if n_bot_ceil * 2 > len(bot) else FAIL)
    n_below = sum(v[1] < th.reach_frac * top_max for v in bot.values())
    detail = (f"(a) epoch each reaches its final level (median of its last 3 logged epochs), median: "
              f"bottom {_fmt(t_bot)} vs top {_fmt(t_top)} "
              f"(bottom {', '.join(f'{l}:{_ep(v[0])}' for l, v in bot.items())}; "
              f"top {', '.join(f'{l}:{_ep(v[0])}' for l, v in top.items())}); "
              f"{n_top_ceil} of {len(top)} top layers at their ceiling there: {sa}. "
              f"(b) max I(Y;M), median of bottom {bot_max:.2f} vs {th.reach_frac:.0%} of top maximum {top_max:.2f} bits "
              f"({n_below} of {len(bot)} bottom layers below; {n_bot_ceil} at their ceiling): {sb}")
    numbers = {"t_bottom": t_bot, "t_top": t_top, "max_bottom": bot_max, "max_top": top_max}
    return ClaimResult("2", st, combine([sa, sb]), detail, numbers)


def claim3(c: pd.DataFrame, layout: Layout = Layout(), th: ClaimThresholds = ClaimThresholds()) -> ClaimResult:
    """Claim 3 on a curves table."""
    st = STATEMENTS["3"]
    few = _too_few(c, th)
    if few:
        return ClaimResult("3", st, INCONCLUSIVE, few)
    ix, iy = _pivot(c, "I_XM"), _pivot(c, "I_YM")
    cx, cy = _pivot(c, "ceil_x"), _pivot(c, "ceil_y")
    early = [e for e in ix.index if e <= th.early_epochs]
    if not early:
        return ClaimResult("3", st, INCONCLUSIVE, f"no logged epoch <= {th.early_epochs} (early_epochs)")
    need = list(layout.encoder_layers) + [m for m in layout.merge_layers] + [m - 1 for m in layout.merge_layers]
    miss = _missing(need, ix)
    if miss:
        return ClaimResult("3", st, INCONCLUSIVE, f"no estimates of layer(s) {miss}")
    # (a) encoder falls
    enc = list(layout.encoder_layers)
    ok = counted = 0
    for e in early:
        for a, b in zip(enc[:-1], enc[1:]):
            if bool(cx.loc[e, a]) and bool(cx.loc[e, b]):
                continue  # both at log2 N: flat by saturation, not counted
            counted += 1
            ok += ix.loc[e, b] <= ix.loc[e, a] + th.rise_tol
    drop = float(np.median([ix.loc[e, enc[0]] - ix.loc[e, enc[-1]] for e in early]))
    if counted == 0:
        sa = INCONCLUSIVE
        share = float("nan")
    else:
        share = ok / counted
        sa = PASS if (share >= th.fall_frac and drop > th.rise_tol) else FAIL
    parts = [f"epochs {early[0]}-{early[-1]} ({len(early)} logged). (a) encoder {enc[0]}-{enc[-1]}: "
             f"{ok} of {counted} steps do not rise (share {_fmt(share)}, need {th.fall_frac:.0%}), "
             f"I(X;M) first - last {drop:.2f} bits: {sa}"]
    statuses = [sa]
    numbers: dict[str, float] = {"encoder_share": share, "encoder_drop": drop}
    # (b) merges rise
    mparts = []
    for m in sorted(layout.merge_layers, reverse=True):
        for q, tab, ceil in (("I(X;M)", ix, cx), ("I(Y;M)", iy, cy)):
            rise = float(np.median([tab.loc[e, m] - tab.loc[e, m - 1] for e in early]))
            prev_ceil = float(np.mean([bool(ceil.loc[e, m - 1]) for e in early])) > 0.5
            if rise > th.rise_tol:
                s = PASS
            elif prev_ceil:
                s = INCONCLUSIVE  # the layer before is at its ceiling: no rise possible
            else:
                s = FAIL
            statuses.append(s)
            numbers[f"rise_{'x' if q == 'I(X;M)' else 'y'}_{m}"] = rise
            mparts.append(f"{m}: {q} {rise:+.2f}{' (layer before at ceiling)' if prev_ceil else ''} {s}")
    parts.append(f"(b) rise at merge layers over the layer before (median, need > {th.rise_tol} bits): "
                 + "; ".join(mparts))
    return ClaimResult("3", st, combine(statuses), " ".join(parts), numbers)


# ---------------------------------------------------------------------------------------------
# Claim 4: predictions from MI, outcomes from Dice
# ---------------------------------------------------------------------------------------------


def redundancy_predictions(c: pd.DataFrame, layout: Layout = Layout(),
                           th: ClaimThresholds = ClaimThresholds()) -> pd.DataFrame:
    """Per skip of the full model: the epoch from which it is predicted redundant.

    Columns: ``skip`` ("1->20"), ``source``, ``merge``, ``deeper`` (the next deeper merge layer,
    -1 if none), ``epoch`` (the logged epoch at which the deeper layer's I(Y;M) reaches the
    maximum, see the module docstring; NaN: never), ``after`` (the logged epoch before it),
    ``value`` (its I(Y;M) then, or its maximum), ``reference`` (the maximum), ``at_ceiling``.
    """
    iy, cy = _pivot(c, "I_YM"), _pivot(c, "ceil_y")
    ref, _, _ = _network_max(iy)
    epochs = list(iy.index)
    rows = []
    for src, merge in layout.top_down():
        deeper = layout.deeper_merge((src, merge))
        row: dict[str, Any] = {"skip": f"{src}->{merge}", "source": src, "merge": merge,
                               "deeper": -1 if deeper is None else deeper, "epoch": float("nan"),
                               "after": float("nan"), "value": float("nan"), "reference": ref, "at_ceiling": False}
        if deeper is not None and deeper in iy.columns:
            v = iy[deeper].dropna()
            level = ref if th.reference == "network" else float(v.max())
            row["reference"] = level
            e = settle_epoch(v, level, th.reach_frac, th.stay_frac)
            row["epoch"] = e
            if math.isfinite(e):
                row["after"] = _prev_logged(epochs, e)
                row["value"] = float(v.loc[int(e)])
                row["at_ceiling"] = bool(cy.loc[int(e), deeper])
            else:
                row["value"] = float(v.max())
        rows.append(row)
    return pd.DataFrame(rows)


def predicted_epoch(pred: pd.DataFrame, removed: Iterable[Pair]) -> tuple[float, bool]:
    """(epoch, rests on an at-ceiling estimate) from which a model without ``removed`` skips is
    predicted to match the full model: the latest of their epochs; NaN (never) if any is never."""
    removed = [tuple(p) for p in removed]
    if not removed:
        return 0.0, False
    sub = pred[[(int(r.source), int(r.merge)) in removed for r in pred.itertuples()]]
    if len(sub) < len(removed) or sub["epoch"].isna().any():
        return float("nan"), False
    return float(sub["epoch"].max()), bool(sub["at_ceiling"].any())


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
              th: ClaimThresholds = ClaimThresholds()) -> tuple[str, str]:
    """(status, reason) of one model's prediction against its Dice outcome."""
    if not math.isfinite(predicted):
        if not math.isfinite(outcome):
            return PASS, "predicted never, never matched"
        return FAIL, f"predicted never (a removed skip stays needed) but matched at epoch {int(outcome)}"
    expect = max(predicted, ref_match if math.isfinite(ref_match) else 0.0)
    bound = th.agree_factor * max(expect, 1.0)
    if math.isfinite(outcome):
        if outcome <= bound:
            note = " (earlier than predicted)" if outcome < predicted / th.agree_factor else ""
            if ceiling:
                return INCONCLUSIVE, (f"matched at {int(outcome)} <= {th.agree_factor:g} x {int(expect)}{note}, but the "
                                      f"prediction rests on an estimate at its ceiling")
            return PASS, f"matched at {int(outcome)} <= {th.agree_factor:g} x {int(expect)}{note}"
        return FAIL, f"matched only at {int(outcome)} > {th.agree_factor:g} x {int(expect)}"
    if last_epoch < bound:
        return INCONCLUSIVE, f"never matched, but the run ended at {last_epoch} < {th.agree_factor:g} x {int(expect)}"
    return FAIL, f"never matched by epoch {last_epoch} although predicted from epoch {int(predicted)}"


def claim4(c: pd.DataFrame | None, metrics: Mapping[str, pd.DataFrame], removed: Mapping[str, Iterable[Pair]],
           reference: str, layout: Layout = Layout(), th: ClaimThresholds = ClaimThresholds()
           ) -> tuple[list[ClaimResult], pd.DataFrame, pd.DataFrame]:
    """Claim 4: one result per ablated model and an overall one; also the predictions and the
    outcomes tables. ``c``: the full model's curves (None: no MI, predictions inconclusive)."""
    st = STATEMENTS["4"]
    out = dice_outcomes(metrics, reference, th)
    o = out.set_index("model")
    ref_match = float(o.loc[reference, "match_epoch"])
    few = _too_few(c, th) if c is not None else "no MI estimates of the full model"
    pred = redundancy_predictions(c, layout, th) if c is not None and not c.empty else pd.DataFrame(
        columns=["skip", "source", "merge", "deeper", "epoch", "after", "value", "reference", "at_ceiling"])
    results = []
    statuses = []
    for label, rem in removed.items():
        if label == reference:
            continue
        rem = [tuple(p) for p in rem]
        outcome = float(o.loc[label, "match_epoch"]) if label in o.index else float("nan")
        last = int(o.loc[label, "last_epoch"]) if label in o.index else 0
        skips = ", ".join(f"{a}->{b}" for a, b in rem) or "none"
        if few:
            s, why, p_e = INCONCLUSIVE, few, float("nan")
        else:
            p_e, ceiling = predicted_epoch(pred, rem)
            s, why = agreement(p_e, outcome, ref_match, last, ceiling, th)
        statuses.append(s)
        results.append(ClaimResult(f"4 {label}", f"{label} (without {skips}) matches {reference} from the predicted "
                                   f"epoch on", s,
                                   f"predicted from MI: {_ep(p_e)}; Dice within {th.dice_tol} of {reference}'s best "
                                   f"({o.loc[reference, 'best']:.3f}): {_ep(outcome)}; {why}",
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
            + ", ".join(f"{l}: {_ep(t)}" for l, t in zip(ablated, ts)) + f" ({'ordered' if ordered else 'not ordered'})",
            {f"match_{l}": t for l, t in zip(ablated, ts)}))
    ptxt = "; ".join(f"{r.skip} when layer {r.deeper} reaches it: {_ep(r.epoch)}"
                     + (f" (after {int(r.after)})" if math.isfinite(r.after) and r.after else "")
                     + (" [at ceiling]" if r.at_ceiling else "")
                     for r in pred.itertuples() if r.deeper >= 0)
    ref_val = float(pred["reference"].iloc[0]) if len(pred) else float("nan")
    overall = ClaimResult("4", st, combine(statuses) if statuses else INCONCLUSIVE,
                          (f"maximum I(Y;M) {ref_val:.2f} bits; skip redundant from: {ptxt}. " if len(pred) else "")
                          + "; ".join(f"{r.claim[2:]}: {r.status}" for r in results if r.claim != "4 outcome"))
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
    counts = {s: sum(r.status == s for r in per_seed) for s in STATUSES}
    txt = "per seed: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    keys = [k for k in per_seed[0].numbers if all(k in r.numbers for r in per_seed)]
    spreads = []
    for k in keys[:8]:
        vals = [r.numbers[k] for r in per_seed]
        fin = [v for v in vals if v is not None and math.isfinite(v)]
        if not fin:
            spreads.append(f"{k} never")
            continue
        never = len(fin) < len(vals)
        spreads.append(f"{k} {_fmt(min(fin))}-{_fmt(max(fin))}{' (some never)' if never else ''}")
    return txt + ("; range " + ", ".join(spreads) if spreads else "")


def evaluate_claims(mi: Tables | None, metrics: Mapping[str, Tables] | None = None,
                    removed: Mapping[str, Iterable[Pair]] | None = None, reference: str = "Model 1", *,
                    layout: Layout | None = None, thresholds: ClaimThresholds | None = None,
                    estimator: str | None = None, setting: str | None = None, labels: str | None = None
                    ) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Every claim, from tables.

    Args:
        mi: the full model's tidy MI table, or one per seed.
        metrics: ``{model label: metrics table or one per seed}`` (seeds in the same order as
            ``mi``); needs the ``reference`` model for claim 4.
        removed: ``{model label: skip pairs it lacks}`` (the reference lacks none).
        reference: label of the full model.
        layout, thresholds: see :class:`Layout` and :class:`ClaimThresholds`.
        estimator, setting, labels: which estimate to read (default ``kde_upper``, its first
            setting, ``kmeans``).

    Returns:
        ``(claims, extra)``: the claims table (:data:`CLAIM_COLUMNS`) and
        ``{"predictions": ..., "outcomes": ...}`` of claim 4 (on the seed medians).
    """
    layout = layout or Layout.unet()
    th = thresholds or ClaimThresholds()
    tables = [t for t in _as_list(mi) if t is not None and not t.empty]
    results: list[tuple[ClaimResult, list[ClaimResult]]] = []
    sel_text = ""
    cur_med: pd.DataFrame | None = None
    per_seed_curves: list[pd.DataFrame] = []
    if tables:
        sel = select(tables[0], estimator, setting, labels)
        sel_text = sel.describe()
        per_seed_curves = [curves(t, sel) for t in tables]
        cur_med = median_curves(per_seed_curves, th.ceiling_share)
        for fn in (claim1, claim2, claim3):
            med = fn(cur_med, layout, th)
            seeds = [fn(cs, layout, th) for cs in per_seed_curves] if len(per_seed_curves) > 1 else []
            results.append((med, seeds))
    else:
        for k in ("1", "2", "3"):
            results.append((ClaimResult(k, STATEMENTS[k], INCONCLUSIVE, "no MI estimates of the full model"), []))
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
        results.append((ClaimResult("4", STATEMENTS["4"], INCONCLUSIVE, "no Dice curves of the models"), []))
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


def model_of_run(run: RunDir, layout: Layout | None = None) -> tuple[str, list[Pair]]:
    """(label, removed skip pairs) of a run from its config: "Model m" for the paper's masks,
    else "skips 1,0,1,1"."""
    from ..models.unet import MODEL_SKIPS, SKIP_PAIRS

    cfg = run.read_config()
    model = cfg.get("model") or {}
    mask = model.get("skips")
    if mask is None:
        num = int(model.get("model") or 1)
        mask = MODEL_SKIPS.get(num)
        if mask is None:
            raise RunError(f"{run.path}: unknown model {num!r}")
    mask = tuple(bool(s) for s in mask)
    pairs = list((layout.skip_pairs if layout is not None else SKIP_PAIRS))
    removed = [tuple(p) for p, on in zip(pairs, mask) if not on]
    for num, m in MODEL_SKIPS.items():
        if tuple(m) == mask:
            return f"Model {num}", removed
    return "skips " + ",".join(str(int(s)) for s in mask), removed


def group_by_model(runs: Sequence[RunDir | str | os.PathLike], layout: Layout | None = None,
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


def claims_from_runs(runs: Sequence[RunDir | str | os.PathLike], *, layout: Layout | None = None,
                     thresholds: ClaimThresholds | None = None, estimator: str | None = None,
                     settings: Sequence[str] | None = None, labels: str | None = None,
                     label: Callable[[RunDir], tuple[str, list[Pair]]] | None = None
                     ) -> tuple[pd.DataFrame, dict[str, dict[str, pd.DataFrame]]]:
    """Every claim from run directories (the models' runs, any number of seeds each).

    The full model is the group with no skip removed. ``settings``: evaluate the claims for each
    of these settings of ``estimator`` (default: its first only; ``"all"`` for every one); the
    rows of each setting carry it in the ``selection`` column. Returns the claims table and
    ``{selection: {"predictions", "outcomes"}}``.
    """
    layout = layout or Layout.unet()
    groups, removed = group_by_model(runs, layout, label)
    full = [lab for lab, rem in removed.items() if not rem]
    if not full:
        raise InfoflowError("no run of the full model (all skips present) among the runs: claim 4 needs it")
    reference = full[0]
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
    counts = claims["status"].value_counts().to_dict() if len(claims) else {}
    lines.append("Summary: " + ", ".join(f"{counts.get(s, 0)} {s}" for s in STATUSES) + ".")
    lines.append("")
    for sel, part in claims.groupby("selection", sort=False):
        lines += [f"## Estimate: {sel or '(none)'}", "", "| claim | status | detail |", "|---|---|---|"]
        for r in part.itertuples():
            detail = str(r.detail).replace("|", "\\|").replace("\n", " ")
            lines.append(f"| {r.claim} | **{r.status}** | {detail} |")
        lines.append("")
    for sel, extra in (extras or {}).items():
        pred, out = extra.get("predictions"), extra.get("outcomes")
        if pred is not None and len(pred):
            lines += [f"### Claim 4 predictions ({sel})", "", "| skip | deeper merge layer | redundant from epoch "
                      "| after epoch | I(Y;M) then (bits) | maximum | at ceiling |", "|---|---|---|---|---|---|---|"]
            for r in pred.itertuples():
                lines.append(f"| {r.skip} | {'-' if r.deeper < 0 else r.deeper} | {_ep(r.epoch)} | "
                             f"{'' if not math.isfinite(r.after) else int(r.after)} | {_fmt(r.value)} | "
                             f"{_fmt(r.reference)} | {'yes' if r.at_ceiling else 'no'} |")
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
    lines += ["", "See `infoflow.experiments.claims` (module docstring) and docs/reproduce.md for what each "
              "threshold means.", ""]
    return "\n".join(lines)


def print_claims(claims: pd.DataFrame, echo: Callable[[str], Any] = print) -> None:
    """One block per claim: status and the numbers."""
    for r in claims.itertuples():
        sel = f" [{r.selection}]" if r.selection else ""
        echo(f"claim {r.claim}{sel}: {str(r.status).upper()}")
        echo(f"    {r.detail}")
