"""The report's "Estimate quality" and "Robustness of the claims" sections.

Both are read from the tables ``infoflow estimate`` writes under ``RUN/estimates/``:

* ``mi-<tag>.uncertainty.csv`` (``--uncertainty``): intervals, permutation baselines, ceilings
  (:mod:`infoflow.analysis.uncertainty`). The section draws :func:`infoflow.plots.uplot_intervals` and a
  per-layer table of one epoch (:func:`quality_rows`).
* ``mi-<tag>.robustness.csv`` and ``mi-<tag>.robustness-summary.csv`` (``--robustness``): claim
  verdicts per kernel-width setting and one sentence per claim (:mod:`infoflow.analysis.robustness`).

Without an explicit file the newest one in ``RUN/estimates`` is used; a run without them gets
one line with the command that writes them. :func:`compute_quality` writes a cheap uncertainty
table (``infoflow report --quality``).
"""

from __future__ import annotations

import math
import os
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import InfoflowError, RunDamaged, RunError
from ..estimators.registry import upgrade_setting
from ..estimators.table import near_ceiling
from ..runs import RunDir
from .html import _e

__all__ = [
    "QUALITY_KERNELS", "quality_kernels", "QUALITY_REPEATS", "QUALITY_PERMUTATIONS", "find_uncertainty", "find_robustness",
    "robustness_files", "read_robustness", "quality_rows", "quality_html", "robustness_html",
    "quality_command", "robustness_command",
]  # fmt: skip

#: Kernels of ``infoflow report --quality`` beside the run's own (:func:`quality_kernels`): two relative, Silverman.
QUALITY_KERNELS: tuple[str, ...] = ("rel:0.1", "rel:1.0", "silverman:1.0")
QUALITY_REPEATS = 10
QUALITY_PERMUTATIONS = 20
QUALITY_ESTIMATOR = "kde_upper"  # what `infoflow report --quality` computes (the CLI), and the report suggests
_KIND_ORDER = {"fixed": 0, "rel": 1, "silverman": 2}
MARK_CEILING = "&#9650;"  # the estimates table's mark too
MARK_CHANCE = "&#9675;"


def _f(x: Any) -> str:
    """A number as the report writes it (3 decimals); "" for a missing one."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return ""
    return f"{v:.3f}" if math.isfinite(v) else ""


# -- finding and reading the tables -----------------------------------------------------------------
def _newest(paths: Sequence[Path]) -> Path | None:
    files = [p for p in paths if p.is_file()]
    return max(files, key=lambda p: (p.stat().st_mtime_ns, p.name)) if files else None


def find_uncertainty(run: RunDir) -> Path | None:
    """The newest ``RUN/estimates/*.uncertainty.csv``, or None."""
    return run.newest_estimate("uncertainty")


def robustness_files(path: str | os.PathLike) -> tuple[Path | None, Path | None]:
    """``(verdicts, summary)`` of one robustness result, given either file: ``X.robustness.csv``
    and ``X.robustness-summary.csv``; a file that does not exist is None."""
    p = Path(path)
    name = p.name
    if name.endswith(".robustness-summary.csv"):
        stem = name[: -len(".robustness-summary.csv")]
    elif name.endswith(".robustness.csv"):
        stem = name[: -len(".robustness.csv")]
    else:
        raise InfoflowError(f"{p}: a robustness table is named <estimates>.robustness.csv or "
                            "<estimates>.robustness-summary.csv (written by `infoflow estimate --robustness`)")
    grid, summary = p.with_name(f"{stem}.robustness.csv"), p.with_name(f"{stem}.robustness-summary.csv")
    return (grid if grid.is_file() else None), (summary if summary.is_file() else None)


def find_robustness(run: RunDir) -> tuple[Path | None, Path | None]:
    """``(verdicts, summary)`` of the newest robustness result in ``RUN/estimates`` (None, None)."""
    newest = _newest([p for p in (run.newest_estimate("robustness"), run.newest_estimate("robustness-summary"))
                      if p is not None])
    return robustness_files(newest) if newest is not None else (None, None)


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, keep_default_na=False, dtype=str)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise RunError(f"{path} is not a readable CSV table: {exc}") from None


def read_robustness(verdicts: Any = None, summary: Any = None) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """The robustness tables from files (or DataFrames). ``holds`` becomes True / False / None
    (undecided); a missing summary is made from the verdicts
    (:func:`infoflow.analysis.robustness.summarize_robustness`)."""
    from ..analysis.robustness import ROBUSTNESS_COLUMNS, _truth, summarize_robustness

    v = s = None
    if verdicts is not None:
        v = verdicts.copy() if isinstance(verdicts, pd.DataFrame) else _read_csv(Path(verdicts))
        v = v.rename(columns={"width_kind": "kernel_kind", "width_value": "kernel_param"})  # tables before the kernel spec
        if "setting" in v:
            v["setting"] = v["setting"].astype(str).map(upgrade_setting)
        missing = [c for c in ROBUSTNESS_COLUMNS if c not in v.columns]
        if missing:
            raise RunError(f"{verdicts if not isinstance(verdicts, pd.DataFrame) else 'the verdicts'} is not a "
                           f"robustness table: it lacks the column(s) {', '.join(missing)}")
        v["claim"] = v["claim"].astype(str)
        v["setting"] = v["setting"].astype(str)
        v["holds"] = pd.Series([_truth(x) for x in v["holds"]], index=v.index, dtype=object)
        v["kernel_param"] = pd.to_numeric(v["kernel_param"], errors="coerce")
    if summary is not None:
        s = summary.copy() if isinstance(summary, pd.DataFrame) else _read_csv(Path(summary))
        if "statement" not in s.columns or "claim" not in s.columns:
            raise RunError(f"{summary if not isinstance(summary, pd.DataFrame) else 'the summary'} is not a "
                           "robustness summary: it needs the columns claim and statement")
        s["claim"] = s["claim"].astype(str)
    elif v is not None:
        s = summarize_robustness(v)
    return v, s


# -- the quality table ---------------------------------------------------------------------------
def quality_rows(unc: Any, *, epoch: int | None = None, estimator: str | None = None,
                 labels: str | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The per-layer quality table of one epoch: one row per (setting, layer) with ``I_XM``,
    ``I_XM_lo``, ``I_XM_hi``, ``I_XM_at_ceiling``, the same for ``I_YM``, ``baseline_mean``,
    ``baseline_hi``, ``p_value`` and ``chance`` (I(Y;M) not above its baseline: ``p_value >
    1 - level``). "At ceiling" is the MI table's rule: within 1 % of log2 N (I(X;M)) or of the
    row's ``ceiling`` (I(Y;M): H(Y)).

    Returns ``(rows, facts)``; ``facts``: epoch, estimator, labels, settings, level, n, repeats,
    permutations. Defaults as :func:`infoflow.plots.quality_selection`.
    """
    from ..plots import _data
    from ..plots.quality import quality_selection

    table = _data.uncertainty_frame(unc)
    e, est, lab, settings = quality_selection(table, epoch=epoch, labels=labels, estimator=estimator)
    rows = table[(table["estimator"] == est) & (table["epoch"] == e)]
    parts = []
    for st in settings:
        ci = _data.interval_table(rows, _data.Selection(est, st, lab)).assign(setting=st)
        for q in ("I_XM", "I_YM"):
            ci[f"{q}_at_ceiling"] = [near_ceiling(float(v), float(c)) for v, c in zip(ci[q], ci[f"{q}_ceiling"])]
        ci["chance"] = (ci["p_value"] > 1.0 - ci["level"]).fillna(False).astype(bool)
        parts.append(ci)
    out = pd.concat(parts, ignore_index=True)

    def first(col: str) -> Any:
        vals = rows[col].dropna() if col in rows else pd.Series([], dtype=float)
        return vals.iloc[0] if len(vals) else None

    facts = {"epoch": e, "estimator": est, "labels": lab, "settings": settings, "level": first("level"),
             "n": first("n"), "repeats": first("repeats"),
             "permutations": rows.loc[rows["quantity"] == "I_YM", "permutations"].max()
             if "permutations" in rows else None}
    return out, facts


def _cell(value: float, lo: float, hi: float, *, ceiling: bool, chance: bool = False) -> str:
    txt = _f(value)
    if txt and (_f(lo) or _f(hi)):
        txt += f" [{_f(lo)}, {_f(hi)}]"
    marks, cls, titles, data = "", ["num"], [], []
    if ceiling:
        marks += f" {MARK_CEILING}"
        cls.append("ceil")
        titles.append("at its ceiling")
        data.append("ceiling")
    if chance:
        marks += f" {MARK_CHANCE}"
        cls.append("chance")
        titles.append("not above the permutation baseline")
        data.append("chance")
    extra = f' title="{_e("; ".join(titles))}" data-mark="{" ".join(data)}"' if data else ""
    return f'<td class="{" ".join(cls)}"{extra}>{txt}{marks}</td>'


def _quality_table_html(rows: pd.DataFrame, settings: Sequence[str]) -> str:
    head1 = "<tr><th rowspan=2>layer</th><th rowspan=2>name</th>" + "".join(
        f"<th colspan=4>{_e(st)}</th>" for st in settings) + "</tr>"
    head2 = "<tr>" + "<th>I(X;M)</th><th>I(Y;M)</th><th>baseline (mean, hi)</th><th>p</th>" * len(settings) + "</tr>"
    body = []
    by = {st: g.set_index("layer") for st, g in rows.groupby("setting", sort=False)}
    layers = sorted(int(x) for x in rows["layer"].unique())
    names = rows.drop_duplicates("layer").set_index("layer")["name"]
    for layer in layers:
        cells = [f"<td class=num>{layer}</td><td>{_e(names.loc[layer])}</td>"]
        for st in settings:
            g = by.get(st)
            if g is None or layer not in g.index:
                cells.append("<td></td>" * 4)
                continue
            r = g.loc[layer]
            cells.append(_cell(r["I_XM"], r["I_XM_lo"], r["I_XM_hi"], ceiling=bool(r["I_XM_at_ceiling"])))
            cells.append(_cell(r["I_YM"], r["I_YM_lo"], r["I_YM_hi"], ceiling=bool(r["I_YM_at_ceiling"]),
                               chance=bool(r["chance"])))
            base = f"{_f(r['baseline_mean'])}, {_f(r['baseline_hi'])}" if _f(r["baseline_mean"]) else ""
            cells.append(f"<td class=num>{base}</td><td class=num>{_f(r['p_value'])}</td>")
        body.append(f'<tr data-layer="{layer}">' + "".join(cells) + "</tr>")
    return f'<div class=scroll><table class="quality">{head1}{head2}{"".join(body)}</table></div>'


def quality_html(run: RunDir, unc: Any, *, source: str, k: int = 0, dpi: int = 90, estimator: str | None = None,
                 labels: str | None = None) -> str:
    """The "Estimate quality" section: figure, a paragraph on reading it, the per-layer table.

    ``source``: where the table came from (shown); ``estimator``/``labels``: used when the table
    has them (else its defaults)."""
    from ..plots import _data, png_bytes, uplot_intervals
    from ..plots.quality import quality_selection

    table = _data.uncertainty_frame(unc)
    ests = set(table["estimator"])
    est = estimator if estimator in ests else None
    ylabs = set(table.loc[table["quantity"] == "I_YM", "labels"])
    lab = labels if labels in ylabs else None
    e, est, lab, settings = quality_selection(table, estimator=est, labels=lab)
    rows, facts = quality_rows(table, epoch=e, estimator=est, labels=lab)
    fig = uplot_intervals(table, epoch=e, labels=lab, estimator=est, run=run)
    from .html import _figure

    level = facts["level"]
    lvl = f"{float(level):.0%}" if level is not None else "the"
    p_cut = f"{1 - float(level):g}" if level is not None else "1 - level"
    n_ceil = int(rows["I_XM_at_ceiling"].sum() + rows["I_YM_at_ceiling"].sum())
    n_chance = int(rows["chance"].sum())
    n_y = int(rows["I_YM"].notna().sum())
    caption = (f"Estimates of epoch {e} ({est}, Y: {lab}) against layer index, one column per kernel width: "
               f"bars: {lvl} subsampling intervals; dashed with band: the permutation baseline of I(Y;M) (mean, up "
               f"to its upper percentile); dotted: the ceilings log2 N and H(Y); open markers: I(Y;M) not above "
               f"the baseline.")
    reading = (
        "<p><b>How to read this.</b> Each estimate comes with an interval: how much it would move with another "
        f"probe set of the same size (N = {_e(facts['n'])}, {_e(facts['repeats'])} subsets per size). The "
        "<i>permutation baseline</i> is what the same estimator reports for I(Y;M) when the labels are shuffled "
        "among the images, i.e. for labels that have nothing to do with the layer: only the part of I(Y;M) above "
        "the baseline's upper value is information about Y. An estimate at its <i>ceiling</i> (log2 N for I(X;M), "
        "H(Y) for I(Y;M)) only says &ldquo;the kernel is narrow against the distances&rdquo;, not anything about "
        "the layer. Trust a difference between layers, epochs or settings only where it is larger than the "
        "intervals, the estimates are below their ceilings and I(Y;M) is above its baseline; compare the columns "
        "to see whether a pattern survives another kernel width (docs/estimates.md).</p>")
    summary = (f"<p>{n_ceil} of {2 * len(rows)} estimates sit at their ceiling ({MARK_CEILING}); {n_chance} of "
               f"{n_y} I(Y;M) estimates are not above their permutation baseline (p &gt; {p_cut}, "
               f"{MARK_CHANCE}). Cells: value [interval], bits; baseline: mean, upper percentile; p: permutation "
               f"p-value ({_e(facts['permutations'])} permutations).</p>")
    return (f'<h3 id="quality-{k}">Estimate quality</h3>'
            f"<p class=skip>From <code>{_e(source)}</code>: epoch {e}, {_e(est)}, Y: {_e(lab)}, settings "
            f"{_e(', '.join(settings))}.</p>"
            + _figure(png_bytes(fig, dpi=dpi), "quality", caption) + reading + summary
            + _quality_table_html(rows, settings))


# -- robustness ------------------------------------------------------------------------------------
def _verdict(h: Any) -> tuple[str, str]:
    if h is True:
        return "holds", "status-pass"
    if h is False:
        return "fails", "status-fail"
    return "undecided", "status-other"


def robustness_html(verdicts: pd.DataFrame | None, summary: pd.DataFrame | None, *, source: str, k: int = 0) -> str:
    """The "Robustness of the claims" section: one sentence per claim and a claim x setting grid
    of holds / fails / undecided (the check's detail as the cell's tooltip)."""
    parts = [f'<h3 id="robustness-{k}">Robustness of the claims</h3>',
             f"<p class=skip>From <code>{_e(source)}</code>.</p>",
             "<p>Each claim of the paper was checked once per kernel width, on the estimates of that width alone. "
             "A conclusion about the network should hold across the relative widths, not only at the fixed "
             "variance where most layers sit at their ceilings; one that holds only for fixed widths is a "
             "statement about the scale of the activations.</p>"]
    if summary is not None and len(summary):
        parts.append("<ul class=statements>" + "".join(f"<li>{_e(s)}</li>" for s in summary["statement"]) + "</ul>")
    if verdicts is not None and len(verdicts):
        cols = verdicts.drop_duplicates("setting")
        cols = cols.assign(_k=cols["kernel_kind"].map(_KIND_ORDER).fillna(9))
        settings = list(cols.sort_values(["_k", "kernel_param", "setting"], na_position="last")["setting"])
        claims = list(dict.fromkeys(verdicts["claim"]))
        cell = {(r.claim, r.setting): (r.holds, r.detail) for r in verdicts.itertuples(index=False)}
        head = "<tr><th>claim</th>" + "".join(f"<th>{_e(s)}</th>" for s in settings) + "</tr>"
        body = []
        for c in claims:
            tds = []
            for s in settings:
                if (c, s) not in cell:
                    tds.append("<td></td>")
                    continue
                h, detail = cell[(c, s)]
                word, cls = _verdict(h)
                tip = f' title="{_e(detail)}"' if str(detail) else ""
                tds.append(f'<td class={cls} data-setting="{_e(s)}"{tip}>{word}</td>')
            body.append(f'<tr data-claim="{_e(c)}"><td>{_e(c)}</td>' + "".join(tds) + "</tr>")
        parts.append(f'<div class=scroll><table class="robustness">{head}{"".join(body)}</table></div>')
    return "".join(parts)


# -- what to run when the tables are missing ---------------------------------------------------------
def quality_kernels(kernels: Sequence[str]) -> tuple[str, ...]:
    """The kernels of ``infoflow report --quality`` for a run with ``kernels`` (``mi.kernels``):
    its own, then :data:`QUALITY_KERNELS`, each once."""
    return tuple(dict.fromkeys(list(kernels) + list(QUALITY_KERNELS)))


def quality_command(run: RunDir) -> str:
    """The ``infoflow estimate`` call that writes the uncertainty table the report reads."""
    epochs = run.matrix_epochs()
    last = f" --epochs {epochs[-1]}" if epochs else ""
    ks = ",".join(quality_kernels(run.config().mi.kernels))
    return (f"infoflow estimate {shlex.quote(str(run.path))} --kernel {ks} --uncertainty"
            f"{last} --repeats {QUALITY_REPEATS} --permutations {QUALITY_PERMUTATIONS}")


def robustness_command(run: RunDir) -> str:
    """The ``infoflow estimate`` call that writes the robustness tables the report reads."""
    ks = ",".join(quality_kernels(run.config().mi.kernels))
    return f"infoflow estimate {shlex.quote(str(run.path))} --kernel {ks} --robustness"


# -- the two sections of one run -------------------------------------------------------------------

def _shown(title: str, where: str, explicit: bool, render) -> str:
    """``render()``, or (for a table the report found itself) a note that it could not be shown."""
    try:
        return render()
    except InfoflowError as exc:
        if explicit or isinstance(exc, RunDamaged):
            raise
        return f'<p class="skip">{title}: {_e(where)} not shown ({_e(exc)}).</p>'

def quality_sections(run: RunDir, k: int, *, uncertainty: Any = None, robustness: Any = None, dpi: int = 90,
                     estimator: str | None = None, labels: str | None = None) -> str:
    """Both sections of ``run`` (the ``k``-th of the report). ``uncertainty``: a path or table
    (None: the newest in RUN/estimates); ``robustness``: either robustness file or a verdicts
    table (None: the newest). An explicit file that cannot be read is an error; a discovered one
    gives a note. A run without the tables (but with stored matrices) gets one line each with
    the command that writes them."""
    parts: list[str] = []
    missing: list[str] = []
    has_matrices = bool(run.matrix_epochs())
    explicit = uncertainty is not None
    src = uncertainty if explicit else find_uncertainty(run)
    if src is not None:
        where = "the given table" if isinstance(src, pd.DataFrame) else str(src)
        parts.append(_shown("Estimate quality", where, explicit, lambda: quality_html(
            run, src, source=where, k=k, dpi=dpi, estimator=estimator, labels=labels)))
    elif has_matrices:
        missing.append("an uncertainty table (RUN/estimates/*.uncertainty.csv) for the section &ldquo;Estimate "
                       f"quality&rdquo;: <code>{_e(quality_command(run))}</code> (or <code>infoflow report ... "
                       "--quality</code>)")
    explicit = robustness is not None
    if explicit and isinstance(robustness, pd.DataFrame):
        grid, summ, where = robustness, None, "the given table"
    else:
        grid, summ = robustness_files(robustness) if explicit else find_robustness(run)
        if explicit and grid is None and summ is None:
            raise RunError(f"{robustness}: no such robustness table")
        where = str(grid or summ) if (grid or summ) is not None else ""
    if grid is not None or summ is not None:
        parts.append(_shown("Robustness of the claims", where, explicit,
                            lambda: robustness_html(*read_robustness(grid, summ), source=where, k=k)))
    elif has_matrices:
        missing.append("robustness tables (RUN/estimates/*.robustness.csv) for the section &ldquo;Robustness of the "
                       f"claims&rdquo;: <code>{_e(robustness_command(run))}</code> (add <code>--claims-runs "
                       "RUN1,RUN2,RUN3,RUN4</code> to decide claim 4)")
    if missing:
        parts.append(f'<p class="skip" id="quality-missing-{k}">Not computed for this run: '
                     + "; ".join(missing) + ".</p>")
    return "".join(parts)
