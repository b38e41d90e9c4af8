"""The HTML report: figures, config, data facts, final estimates, ceiling warnings, estimate
quality and robustness of the claims (:mod:`.quality`), claims.

The document is self-contained (inline CSS, figures as ``data:`` PNG, no script, no external
request), so it opens offline in any browser and can be mailed as one file.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InfoflowError, RunDamaged, RunError
from ..runs import RunDir, atomic_write_text

#: A claims table another tool may leave in a run: columns claim, status, detail.
CLAIMS_FILE = "claims.csv"

QTY_TEXT = {"I_XM": "I(X;M)", "I_YM": "I(Y;M)", "H_M": "H(M)", "H_M_given_X": "H(M|X)", "H_M_given_Y": "H(M|Y)"}

Prepared = Mapping[str, tuple[Mapping[str, Any], Mapping[str, str]]]


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _open(run: RunDir | str | os.PathLike) -> RunDir:
    return run if isinstance(run, RunDir) else RunDir.open(run)


# -- facts ------------------------------------------------------------------------------------
_SPLIT_RE = re.compile(r"(\d+) train / (\d+) val images")


def data_facts(run: RunDir) -> dict[str, Any]:
    """What the run knows about its data: source, S, mask rule, split sizes, probe set,
    foreground fractions, output classes and H(Y). Missing facts are left out."""
    cfg = run.read_config()
    data = cfg.get("data") or {}
    facts: dict[str, Any] = {"source": data.get("source")}
    if data.get("test_source"):
        facts["test source"] = data["test_source"]
    if data.get("source") == "synthetic":
        facts["synthetic images"] = data.get("n_synthetic")
    facts["S (image size)"] = data.get("size")
    facts["mask rule"] = data.get("mask_rule")
    if not data.get("test_source"):
        facts["validation fraction"] = data.get("val_fraction")
    if data.get("limit") is not None:
        facts["limit per split"] = data.get("limit")
    log = run.path / "run.log"
    if log.exists():
        m = _SPLIT_RE.search(log.read_text(encoding="utf-8", errors="replace"))
        if m:
            facts["training images"] = int(m.group(1))
            facts["validation images"] = int(m.group(2))
    try:
        pf = run.load_probe()
    except RunDamaged:
        raise
    except RunError:  # a run without MI has no probe.npz
        return {k: v for k, v in facts.items() if v is not None}
    from ..estimators import entropy_bits

    mi = cfg.get("mi") or {}
    facts["probe set"] = f"{mi.get('probe', '?')} split, N = {len(pf)}"
    if mi.get("subset"):
        facts["estimates on"] = f"the {mi['subset']} samples of the probe set"
    facts["foreground fraction (probe set)"] = round(float(np.mean(pf.masks)), 4)
    facts["Y made from"] = {"code": "graded masks (the paper's MI notebooks)",
                            "binary": "the binary training masks"}.get(pf.y_from, pf.y_from)
    facts["mean of those masks (probe set)"] = round(float(np.mean(pf.y_masks)), 4)
    for name, lab in pf.labelings.items():
        what = {"kmeans": f"K-means, K = {mi.get('kmeans_k')}, seed {mi.get('kmeans_seed')}",
                "coarse": f"coarsening, {mi.get('coarse_grid')}x{mi.get('coarse_grid')} blocks"}.get(name, name)
        facts[f"classes Y: {name}"] = (f"{what}; {len(np.unique(lab))} classes occur, "
                                       f"H(Y) = {entropy_bits(lab):.3f} bits")
    return {k: v for k, v in facts.items() if v is not None}


def run_summary(run: RunDir) -> dict[str, Any]:
    cfg = run.read_config()
    from ..plots.curves import default_label

    out: dict[str, Any] = {"name": cfg.get("name"), "model": default_label(run)}
    model = cfg.get("model") or {}
    if model.get("width") is not None:
        out["width w"] = model["width"]
    tr = cfg.get("train") or {}
    if tr.get("optimizer"):  # runs of infoflow train (a user's own loop stores no optimizer)
        out["optimizer"] = (f"{tr.get('optimizer')} (lr {tr.get('lr')}, batch {tr.get('batch_size')}, "
                            f"seed {tr.get('seed')})")
    m = run.read_metrics()
    if not m.empty and "epoch" in m:  # a user's loop or Lightning may log any subset of infoflow's columns
        last = m.iloc[-1]
        out["epochs trained"] = f"{int(last['epoch'])}" + (f" of {tr['epochs']}" if tr.get("epochs") else "")
        dice = [f"{float(last[c]):.4f}" if c in m and pd.notna(last[c]) else "-" for c in ("dice_train", "dice_val")]
        if dice != ["-", "-"]:
            out["final Dice (train / val)"] = " / ".join(dice)
        if "dice_val" in m and m["dice_val"].notna().any():
            best = m.loc[m["dice_val"].idxmax()]
            out["best validation Dice"] = f"{best['dice_val']:.4f} at epoch {int(best['epoch'])}"
        if "seconds" in m:
            out["training time"] = f"{m['seconds'].sum():.1f} s"
    mi = run.read_mi()
    if not mi.empty:
        out["logged epochs with MI"] = f"{mi['epoch'].nunique()} ({int(mi['epoch'].min())} to {int(mi['epoch'].max())})"
        out["estimators"] = ", ".join(f"{e} ({s})" for e, s in
                                      mi[["estimator", "setting"]].drop_duplicates().itertuples(index=False))
    return out


def final_estimates(mi: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Estimates at the final logged epoch, one row per layer: ``(values, at_ceiling)``.

    Columns: ``name``, ``d``, then ``"estimator|setting|labels|quantity"`` of every I(X;M) and
    I(Y;M) in the table (I(X;M) first; estimators in the order kde_upper, kde_lower, bin, renyi).
    """
    if mi.empty:
        raise InfoflowError("the MI table is empty")
    last = mi[(mi["epoch"] == mi["epoch"].max()) & mi["quantity"].isin(["I_XM", "I_YM"])]
    key = ["estimator", "setting", "labels", "quantity"]
    order = {e: i for i, e in enumerate(("kde_upper", "kde_lower", "bin", "renyi"))}
    cols = last[key].drop_duplicates()
    cols = cols.assign(_o=cols["estimator"].map(order).fillna(99), _q=(cols["quantity"] != "I_XM"))
    cols = [tuple(c) for c in cols.sort_values(["_q", "_o", "setting", "labels"])[key].itertuples(index=False)]
    idx = last[["layer", "name", "d"]].drop_duplicates("layer").sort_values("layer")
    vals = pd.DataFrame(index=idx["layer"].to_numpy())
    ceil = pd.DataFrame(index=idx["layer"].to_numpy())
    for c in cols:
        hit = np.ones(len(last), dtype=bool)
        for k, v in zip(key, c):
            hit &= (last[k].astype(str) == str(v)).to_numpy()
        sel = last[hit].drop_duplicates("layer").set_index("layer")
        vals["|".join(c)] = sel["value"]
        ceil["|".join(c)] = sel["at_ceiling"].astype(bool)
    vals.insert(0, "d", idx.set_index("layer")["d"])
    vals.insert(0, "name", idx.set_index("layer")["name"])
    return vals, ceil


def ceiling_warnings(mi: pd.DataFrame) -> list[str]:
    """One sentence per (estimator, setting, labels, quantity) with estimates at their ceiling."""
    if mi.empty or "at_ceiling" not in mi:
        return []
    final = int(mi["epoch"].max())
    hit = mi[mi["at_ceiling"].astype(bool)]
    out = []
    n_layers = mi["layer"].nunique()
    for (est, st, lab, q), g in hit.groupby(["estimator", "setting", "labels", "quantity"], sort=False):
        at_final = sorted(g.loc[g["epoch"] == final, "layer"].unique())
        ever = sorted(g["layer"].unique())
        if q in ("I_XM", "H_M"):
            ceiling = f"log2 N = {float(g['log2n'].iloc[0]):.3f} bits"
            if est == "bin":
                ceiling += " (every sample in its own bin)"
        else:
            ceiling = "the entropy of the classes" + (f" H(Y) = {float(g['h_y'].iloc[0]):.3f} bits" if est != "renyi"
                                                      else " (Renyi alpha-entropy of the labels)")
        y = f", Y: {lab}" if lab != "none" else ""
        out.append(f"{est} ({st}{y}): {QTY_TEXT.get(q, q)} at its ceiling {ceiling} in {len(at_final)} of "
                   f"{n_layers} layers at the final epoch {final} ({_layers(at_final)}); "
                   f"in {len(ever)} layers at some logged epoch ({_layers(ever)}).")
    return out


def _layers(ids: Sequence[int]) -> str:
    if not ids:
        return "none"
    ids = sorted(int(i) for i in ids)
    parts, start, prev = [], ids[0], ids[0]
    for i in ids[1:] + [None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        parts.append(f"{start}" if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    return "layer " + ", ".join(parts) if len(ids) == 1 else "layers " + ", ".join(parts)


def read_claims(run: RunDir) -> pd.DataFrame | None:
    """``RUN/claims.csv`` (claim, status, detail) when present, else None."""
    p = run.path / CLAIMS_FILE
    if not p.exists() or p.stat().st_size == 0:
        return None
    try:
        return pd.read_csv(p, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise RunError(f"{p} is not a readable CSV table: {exc}") from None


# -- rendering --------------------------------------------------------------------------------
CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;color:#222;
background:#fafafa;line-height:1.45}
header{background:#2c3e50;color:#fff;padding:16px 28px}header h1{margin:0;font-size:1.5em}
header p{margin:4px 0 0;color:#cfd8e3;font-size:.9em}
main{padding:8px 28px 40px;max-width:1500px}
section.run{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px 20px 20px;margin:20px 0}
h2{border-bottom:2px solid #2c3e50;padding-bottom:4px}h3{margin-top:26px;color:#2c3e50}
table{border-collapse:collapse;font-size:.85em;margin:6px 0}th,td{border:1px solid #ddd;padding:3px 8px;
text-align:left;vertical-align:top}th{background:#eef2f6}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.ceil{background:#fdecea;color:#a93226;font-weight:600}td.num{white-space:nowrap}
.scroll{overflow-x:auto;max-width:100%}
figure{margin:14px 0 22px}figure img{max-width:100%;height:auto;border:1px solid #eee;background:#fff}
figcaption{font-size:.88em;color:#555;margin-top:4px}
.warn{background:#fff8e1;border-left:4px solid #f39c12;padding:6px 12px;margin:6px 0;font-size:.9em}
.ok{background:#eafaf1;border-left:4px solid #27ae60;padding:6px 12px;margin:6px 0;font-size:.9em}
.skip{color:#777;font-size:.88em}
td.status-pass{background:#eafaf1;color:#1e8449;font-weight:600}
td.status-fail{background:#fdecea;color:#a93226;font-weight:600}
td.status-other{background:#f4f6f7;color:#555;font-weight:600}
td.chance{background:#fef5e7;color:#9a5b00}td.ceil.chance{background:#fdecea}
ul.statements li{margin:3px 0}
pre{background:#f4f6f7;padding:10px;overflow:auto;font-size:.82em}nav a{margin-right:14px}
"""


def _kv_table(d: Mapping[str, Any]) -> str:
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in d.items())
    return f"<table>{rows}</table>"


def _img(png: bytes, alt: str) -> str:
    return f'<img src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}" alt="{_e(alt)}">'


def _figure(png: bytes, stem: str, caption: str) -> str:
    return f'<figure id="fig-{_e(stem)}">{_img(png, stem)}<figcaption>{_e(caption)}</figcaption></figure>'


def _estimates_html(mi: pd.DataFrame) -> str:
    vals, ceil = final_estimates(mi)
    cols = [c for c in vals.columns if c not in ("name", "d")]
    head = "<tr><th>layer</th><th>name</th><th>D</th>" + "".join(
        f"<th>{_e(QTY_TEXT[q])}<br>{_e(est)}<br><small>{_e(st)}{'' if lab == 'none' else ', Y: ' + _e(lab)}</small></th>"
        for est, st, lab, q in (c.split("|", 3) for c in cols)) + "</tr>"
    body = []
    for layer, row in vals.iterrows():
        cells = [f"<td class=num>{int(layer)}</td><td>{_e(row['name'])}</td><td class=num>{int(row['d'])}</td>"]
        for c in cols:
            v = row[c]
            at = bool(ceil.loc[layer, c]) if c in ceil else False
            txt = "" if pd.isna(v) else f"{float(v):.3f}"
            cells.append(f'<td class="num{" ceil" if at else ""}"{" title=at-ceiling" if at else ""}>'
                         f"{txt}{' &#9650;' if at else ''}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    epoch = int(mi["epoch"].max())
    return (f"<p>Final logged epoch {epoch}; bits. &#9650; (red): the estimate sits at its ceiling "
            f"(log2 N for I(X;M), H(Y) for I(Y;M)) and says only &ldquo;at least this much&rdquo;.</p>"
            f"<div class=scroll><table>{head}{''.join(body)}</table></div>")


def _claims_html(claims: pd.DataFrame) -> str:
    cols = list(claims.columns)
    head = "<tr>" + "".join(f"<th>{_e(c)}</th>" for c in cols) + "</tr>"
    body = []
    for _, r in claims.iterrows():
        cells = []
        for c in cols:
            cls = ""
            if str(c).lower() == "status":
                s = str(r[c]).strip().lower()
                cls = (" class=status-pass" if s in ("pass", "passed", "ok", "true", "holds", "confirmed", "yes")
                       else " class=status-fail" if s in ("fail", "failed", "false", "violated", "refuted", "no")
                       else " class=status-other")
            cells.append(f"<td{cls}>{_e(r[c])}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<div class=scroll><table>{head}{''.join(body)}</table></div>"


def _run_section(run: RunDir, k: int, prepared: Prepared | None, dpi: int, figure_kwargs: Mapping[str, Any],
                 uncertainty: Any = None, robustness: Any = None) -> str:
    from ..plots import FIGURES, make_figures, png_bytes
    from .quality import quality_sections

    cfg_doc = run.read_config()
    name = cfg_doc.get("name") or run.path.name
    parts = [f'<section class="run" id="run-{k}"><h2>{_e(name)}</h2><p><code>{_e(run.path.resolve())}</code></p>']
    parts.append("<h3>Summary</h3>" + _kv_table(run_summary(run)))
    parts.append("<h3>Data</h3>" + _kv_table(data_facts(run)))
    from ..plots._data import figure_table

    mi, table = figure_table(run, estimates=figure_kwargs.get("estimates"), estimator=figure_kwargs.get("estimator"),
                             setting=figure_kwargs.get("setting"))
    if table is not None:
        parts.append(f'<p>MI figures, ceiling warnings and estimates from the stored estimate table '
                     f"<code>estimates/{_e(table)}</code>.</p>")
    parts.append("<h3>Ceiling warnings</h3>")
    if mi.empty:
        parts.append('<p class="skip">No MI estimates in this run (trained without MI).</p>')
    else:
        warns = ceiling_warnings(mi)
        if warns:
            parts.append("<p>An estimate at its ceiling cannot grow further, whatever the layer holds: read it as "
                         "&ldquo;at least&rdquo; (see docs/figures.md).</p>")
            parts += [f'<div class="warn">{_e(w)}</div>' for w in warns]
        else:
            parts.append('<div class="ok">No estimate sits at its ceiling.</div>')
    key = str(run.path)
    figs, skipped = prepared[key] if prepared is not None and key in prepared else make_figures(run, **figure_kwargs)
    parts.append("<h3>Figures</h3>")
    captions = dict(FIGURES)
    for stem, fig in figs.items():
        parts.append(_figure(png_bytes(fig, dpi=dpi), stem, captions.get(stem, stem)))
    for stem, why in skipped.items():
        parts.append(f'<p class="skip">{_e(stem)}: not drawn ({_e(why)})</p>')
    if not mi.empty:
        parts.append("<h3>Estimates at the final epoch</h3>" + _estimates_html(mi))
    parts.append(quality_sections(run, k, uncertainty=uncertainty, robustness=robustness, dpi=dpi,
                                  estimator=figure_kwargs.get("estimator"), labels=figure_kwargs.get("labels")))
    claims = read_claims(run)
    parts.append("<h3>Claims</h3>")
    parts.append(_claims_html(claims) if claims is not None else
                 f'<p class="skip">No claims table ({CLAIMS_FILE}) in this run.</p>')
    parts.append("<h3>Configuration</h3><details><summary>config.json</summary><pre>"
                 + _e(json.dumps(cfg_doc, indent=2, sort_keys=True)) + "</pre></details>")
    parts.append("</section>")
    return "\n".join(parts)


def _comparison_section(runs: list[RunDir], dpi: int, figure_kwargs: Mapping[str, Any]) -> str:
    from ..plots import dice_curves, group_runs, information_planes, png_bytes, uplots

    parts = ['<section class="run" id="comparison"><h2>All runs</h2>']
    rows = []
    for r in runs:
        s = run_summary(r)
        rows.append(f"<tr><td>{_e(s.get('name'))}</td><td>{_e(s.get('model'))}</td>"
                    f"<td>{_e(s.get('epochs trained', ''))}</td><td>{_e(s.get('final Dice (train / val)', ''))}</td>"
                    f"<td>{_e(s.get('best validation Dice', ''))}</td><td><code>{_e(r.path)}</code></td></tr>")
    parts.append("<table><tr><th>name</th><th>model</th><th>epochs</th><th>final Dice (train / val)</th>"
                 "<th>best validation Dice</th><th>run</th></tr>" + "".join(rows) + "</table>")
    parts.append(_figure(png_bytes(dice_curves(runs), dpi=dpi), "dice-all",
                         "Dice of every model: training (solid), validation (dashed); several seeds of a model: "
                         "median and min-max band (paper Fig. 5)."))
    sel = {k: v for k, v in figure_kwargs.items() if k in ("estimator", "setting", "labels")}
    for label, members in group_runs(runs).items():
        if len(members) < 2 or any(m.read_mi().empty for m in members):
            continue
        try:
            planes = information_planes(members, title=f"{label}, {len(members)} runs: ", **sel)
            up = uplots(members, title=f"{label}, {len(members)} runs: ", **sel)
        except RunDamaged:
            raise
        except InfoflowError as exc:
            parts.append(f'<p class="skip">{_e(label)}: seed figures not drawn ({_e(exc)})</p>')
            continue
        parts.append(_figure(png_bytes(planes, dpi=dpi), f"planes-{label}",
                             f"{label}: information planes, median of {len(members)} runs with min-max bars."))
        parts.append(_figure(png_bytes(up, dpi=dpi), f"uplots-{label}",
                             f"{label}: U-Plots, median of {len(members)} runs with min-max bands."))
    parts.append("</section>")
    return "\n".join(parts)


def _per_run(value: Any, n: int, what: str) -> list[Any]:
    """An explicit table for each of ``n`` runs: None (discover each), one path/table (one run
    only), or a sequence with one entry per run (None entries: discover)."""
    if value is None:
        return [None] * n
    if isinstance(value, (str, os.PathLike, pd.DataFrame)):
        if n != 1:
            raise InfoflowError(f"one {what} table was given for {n} runs: pass one per run (None to discover)")
        return [value]
    items = list(value)
    if len(items) != n:
        raise InfoflowError(f"{len(items)} {what} tables were given for {n} runs: pass one per run, in order")
    return items


def render_report(runs: RunDir | str | Sequence[RunDir | str], *, title: str | None = None, dpi: int = 90,
                  prepared: Prepared | None = None, uncertainty: Any = None, robustness: Any = None,
                  **figure_kwargs: Any) -> str:
    """The report of ``runs`` as one HTML string.

    ``figure_kwargs`` go to :func:`infoflow.plots.make_figures` (estimator, setting, labels, ...);
    ``prepared``: ``{str(run.path): (figures, skipped)}`` already drawn (e.g. by ``finish_run``).

    ``uncertainty``: the uncertainty table(s) of the "Estimate quality" section (a
    ``*.uncertainty.csv`` path or DataFrame; several runs: one entry per run); None, or a None
    entry, uses the newest ``RUN/estimates/*.uncertainty.csv``. ``robustness``: likewise a
    ``*.robustness.csv`` or ``*.robustness-summary.csv`` (the other file is found beside it) or a
    verdicts DataFrame, for the "Robustness of the claims" section. A run without these tables
    gets one line with the ``infoflow estimate`` command that writes them.
    """
    items = [runs] if isinstance(runs, (RunDir, str, os.PathLike)) else list(runs)
    if not items:
        raise InfoflowError("no runs given to the report")
    rs = [_open(r) for r in items]
    uncs = _per_run(uncertainty, len(rs), "uncertainty")
    robs = _per_run(robustness, len(rs), "robustness")
    names = [r.read_config().get("name") or r.path.name for r in rs]
    title = title or ("infoflow report: " + ", ".join(names[:4]) + (" ..." if len(names) > 4 else ""))
    stamp = _dt.datetime.now().isoformat(timespec="seconds")
    from .. import __version__

    nav = "".join(f'<a href="#run-{k}">{_e(n)}</a>' for k, n in enumerate(names))
    body = []
    if len(rs) > 1:
        nav = '<a href="#comparison">all runs</a>' + nav
        body.append(_comparison_section(rs, dpi, figure_kwargs))
    body += [_run_section(r, k, prepared, dpi, figure_kwargs, uncs[k], robs[k]) for k, r in enumerate(rs)]
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        "<link rel=\"icon\" href=\"data:,\">"
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{_e(title)}</h1><p>infoflow {_e(__version__)}, written {_e(stamp)}; information flow through "
        f"U-Nets after Lee &amp; Bajic (ISBI 2021).</p></header>"
        f"<main><nav>{nav}</nav>{''.join(body)}</main></body></html>\n"
    )


def write_report(runs: RunDir | str | Sequence[RunDir | str], out: str | os.PathLike | None = None,
                 **kwargs: Any) -> Path:
    """Write the report of ``runs`` to ``out``; default: ``RUN/report.html`` for one run, and
    ``report.html`` in the runs' common parent folder for several. Returns the path."""
    items = [runs] if isinstance(runs, (RunDir, str, os.PathLike)) else list(runs)
    rs = [_open(r) for r in items]
    if out is None:
        if len(rs) == 1:
            out = rs[0].report_path
        else:
            out = Path(os.path.commonpath([str(r.path.resolve()) for r in rs])) / "report.html"
    out = Path(out)
    atomic_write_text(out, render_report(rs, **kwargs))
    return out
