"""Do the paper's conclusions survive a change of kernel width?

The claim checks (``infoflow.analysis.claims``, or any callable) are run once per kernel-width
setting on the rows of that setting only, and the verdicts are collected into a table:

* :func:`claims_by_setting` -- ``mi`` table + ``evaluate`` callable -> one row per (claim, setting)
  with ``holds`` (True / False / None when the check is undecided) and ``detail``.
* :func:`summarize_robustness` -- one row per claim: the settings where it holds and fails, as
  ranges per width kind, and a sentence ("claim 3 holds for fixed variance 0.2 to 5 and for
  relative width 0.1 to 1; fails for fixed variance 20").
* :func:`robustness_table` -- the whole thing for a run: re-estimates it from its stored distance
  matrices under each width (``infoflow.tracking.reestimate``), then the two functions above.

``evaluate(mi_subset)`` may return a DataFrame with a ``claim`` column and a ``holds`` (or
``passed``/``ok``/``result``) column, a mapping ``{claim: bool | obj}``, or an iterable of
objects/dicts with ``claim``/``id``/``name`` and ``holds``/``passed``. Claims needing more than the
MI table (claim 4 also needs the Dice curves of Models 1-4) are passed in with a closure, e.g.
``lambda mi: check_claims(mi, metrics=...)``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InfoflowError
from ..estimators.registry import kernel_of_setting, renyi_setting
from ..estimators.widths import parse_kernels
from ..runs import RunDir
from ..tracking import reestimate
from .claims import evaluate_claims, group_by_model

__all__ = [
    "ROBUSTNESS_COLUMNS",
    "claims_by_setting",
    "summarize_robustness",
    "robustness_table",
    "default_evaluator",
    "claims_evaluator",
    "DEFAULT_ROBUSTNESS_KERNELS",
]

ROBUSTNESS_COLUMNS = ("claim", "estimator", "setting", "kernel_kind", "kernel_param", "holds", "detail")
DEFAULT_ROBUSTNESS_KERNELS = ("fixed:0.05", "fixed:0.2", "fixed:1.0", "fixed:5.0", "fixed:20.0", "fixed:100.0",
                              "rel:0.01", "rel:0.03", "rel:0.1", "rel:0.3", "rel:1.0", "silverman:1.0")
_KIND_WORDS = {"fixed": "fixed variance", "rel": "relative width", "silverman": "Silverman x"}
_UNDECIDED_WORDS = ("undecided", "inconclusive", "none", "nan", "")  # "inconclusive": claims.csv before the rename
_HOLD_KEYS = ("holds", "passed", "pass", "ok", "result", "verdict", "supported", "status")
_NAME_KEYS = ("claim", "id", "name", "number", "key")
_DETAIL_KEYS = ("detail", "details", "evidence", "message", "reason", "explanation", "summary")


def _truth(v: Any) -> bool | None:
    if v is None:
        return None
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, float, np.integer, np.floating)):
        return None if (isinstance(v, float) and math.isnan(v)) else bool(v)
    s = str(v).strip().lower()
    if s in _UNDECIDED_WORDS:
        return None
    if s in ("true", "yes", "holds", "pass", "passed", "ok", "supported", "1"):
        return True
    if s in ("false", "no", "fails", "fail", "failed", "not supported", "refuted", "0"):
        return False
    return None


def _get(obj: Any, keys: Sequence[str]) -> Any:
    for k in keys:
        if isinstance(obj, Mapping) and k in obj:
            return obj[k]
        if hasattr(obj, k):
            return getattr(obj, k)
    return None


def _results(obj: Any) -> list[dict[str, Any]]:
    """Normalise what a claims evaluator returned to ``[{"claim", "holds", "detail"}]``.

    ``evaluate_claims``' ``(claims table, extra)`` is read from its table: status ``pass`` ->
    True, ``fail`` -> False, ``undecided`` (``inconclusive`` in tables written before the
    rename) -> None."""
    if isinstance(obj, tuple) and obj and isinstance(obj[0], pd.DataFrame):
        obj = obj[0]
    if isinstance(obj, pd.DataFrame):
        name_col = next((c for c in _NAME_KEYS if c in obj.columns), None)
        hold_col = next((c for c in _HOLD_KEYS if c in obj.columns), None)
        if name_col is None or hold_col is None:
            raise InfoflowError(f"a claims table needs a claim and a holds column; it has {list(obj.columns)}")
        det_col = next((c for c in _DETAIL_KEYS if c in obj.columns), None)
        return [{"claim": str(r[name_col]), "holds": _truth(r[hold_col]),
                 "detail": "" if det_col is None else str(r[det_col])} for _, r in obj.iterrows()]
    if isinstance(obj, Mapping):
        out = []
        for k, v in obj.items():
            if isinstance(v, (bool, np.bool_, type(None), str, int, float)):
                out.append({"claim": str(k), "holds": _truth(v), "detail": ""})
            else:
                out.append({"claim": str(k), "holds": _truth(_get(v, _HOLD_KEYS)),
                            "detail": str(_get(v, _DETAIL_KEYS) or "")})
        return out
    if isinstance(obj, Iterable) and not isinstance(obj, (str, bytes)):
        out = []
        for i, item in enumerate(obj):
            name = _get(item, _NAME_KEYS)
            out.append({"claim": str(name if name is not None else i + 1), "holds": _truth(_get(item, _HOLD_KEYS)),
                        "detail": str(_get(item, _DETAIL_KEYS) or "")})
        return out
    raise InfoflowError(f"cannot read claim verdicts from a {type(obj).__name__}")


def _fmt(x: float) -> str:
    return f"{x:g}"


def claims_by_setting(mi: pd.DataFrame, evaluate: Callable[[pd.DataFrame], Any], *,
                      estimator: str = "kde_upper", settings: Sequence[str] | None = None) -> pd.DataFrame:
    """Run ``evaluate`` on the rows of each kernel-width setting of ``estimator`` (label-free and
    labelled rows of that setting; other estimators' rows are left out, so the evaluator's default
    selection is that setting). Returns :data:`ROBUSTNESS_COLUMNS`; an evaluator that raises
    gives ``holds = None`` with the error as detail."""
    rows = mi[mi["estimator"] == estimator]
    if rows.empty:
        raise InfoflowError(f"the MI table has no {estimator!r} estimates")
    have = list(dict.fromkeys(rows["setting"].astype(str)))
    todo = have if settings is None else [str(s) for s in settings]
    missing = [s for s in todo if s not in have]
    if missing:
        raise InfoflowError(f"no {estimator} rows for setting(s) {missing}; the table has {have}")
    out: list[dict[str, Any]] = []
    for st in todo:
        sub = rows[rows["setting"].astype(str) == st].reset_index(drop=True)
        kern = kernel_of_setting(st)
        kind = kern.kind if kern is not None else "other"
        value = kern.param if kern is not None else math.nan
        try:
            verdicts = _results(evaluate(sub))
        except Exception as exc:  # a check that cannot run on this setting is "undecided", not a crash
            verdicts = [{"claim": "all", "holds": None, "detail": f"{type(exc).__name__}: {exc}"}]
        for v in verdicts:
            out.append({"claim": v["claim"], "estimator": estimator, "setting": st, "kernel_kind": kind,
                        "kernel_param": value, "holds": v["holds"], "detail": v["detail"]})
    frame = pd.DataFrame(out, columns=list(ROBUSTNESS_COLUMNS))
    frame["holds"] = frame["holds"].astype(object)
    return frame


def _ranges(values: list[float], flags: list[bool]) -> list[str]:
    """Contiguous runs (in sorted value order) where ``flags`` is true, as "a to b" or "a"."""
    out, start, prev = [], None, None
    for v, f in zip(values, flags):
        if f and start is None:
            start = v
        if not f and start is not None:
            out.append(_fmt(start) if start == prev else f"{_fmt(start)} to {_fmt(prev)}")
            start = None
        prev = v
    if start is not None:
        out.append(_fmt(start) if start == prev else f"{_fmt(start)} to {_fmt(prev)}")
    return out


def summarize_robustness(table: pd.DataFrame) -> pd.DataFrame:
    """One row per claim: ``holds_for``, ``fails_for``, ``undecided_for`` (ranges per width kind),
    ``n_holds``, ``n_fails``, ``n_settings`` and a ``statement``."""
    rows = []
    for claim, g in table.groupby("claim", sort=False):
        parts: dict[str, list[str]] = {"holds": [], "fails": [], "undecided": []}
        for kind in ("fixed", "rel", "silverman", "other"):
            k = g[g["kernel_kind"] == kind].sort_values("kernel_param")
            if k.empty:
                continue
            vals = [float(v) for v in k["kernel_param"]]
            verdicts = list(k["holds"])
            word = _KIND_WORDS.get(kind, kind)
            for label, test in (("holds", lambda x: x is True), ("fails", lambda x: x is False),
                                ("undecided", lambda x: x is None)):
                rs = _ranges(vals, [test(x) for x in verdicts])
                if rs:
                    parts[label].append(f"{word} {', '.join(rs)}")
        holds_for = "; ".join(parts["holds"])
        fails_for = "; ".join(parts["fails"])
        undecided = "; ".join(parts["undecided"])
        sentence = f"claim {claim} "
        if holds_for and not fails_for:
            sentence += f"holds for every setting {'decided' if undecided else 'tried'} ({holds_for})"
        elif holds_for:
            sentence += f"holds for {' and for '.join(parts['holds'])}; fails for {' and for '.join(parts['fails'])}"
        elif fails_for:
            sentence += f"fails for every setting decided ({fails_for})"
        else:
            sentence += "could not be decided"
        if undecided and (holds_for or fails_for):
            sentence += f"; undecided for {undecided}"
        rows.append({"claim": claim, "holds_for": holds_for, "fails_for": fails_for, "undecided_for": undecided,
                     "n_holds": int(sum(x is True for x in g["holds"])),
                     "n_fails": int(sum(x is False for x in g["holds"])), "n_settings": int(len(g)),
                     "statement": sentence})
    return pd.DataFrame(rows, columns=["claim", "holds_for", "fails_for", "undecided_for", "n_holds", "n_fails",
                                       "n_settings", "statement"])


def default_evaluator() -> Callable[[pd.DataFrame], Any]:
    """The claim checks of ``infoflow.analysis.claims`` as a callable on an MI table
    (claims 1-3; claim 4 needs the models' Dice curves: see :func:`claims_evaluator`)."""
    return claims_evaluator()


def claims_evaluator(runs: Sequence[Any] | None = None, **kwargs: Any) -> Callable[[pd.DataFrame], Any]:
    """``mi -> evaluate_claims(mi, metrics, removed, reference, **kwargs)``.

    ``runs``: the run directories of the models (Models 1-4, any seeds); their Dice curves and
    removed skips feed claim 4, while the MI table comes from the caller (one setting at a time).
    Without runs only claims 1-3 are decided (claim 4 is undecided)."""
    metrics = removed = None
    reference = "Model 1"
    if runs:
        groups, removed = group_by_model(list(runs), kwargs.get("layout"))
        full = [lab for lab, rem in removed.items() if not rem]
        if full:
            reference = full[0]
        metrics = {lab: [r.read_metrics() for r in members] for lab, members in groups.items()}

    def evaluate(mi: pd.DataFrame) -> Any:
        return evaluate_claims(mi, metrics, removed, reference, **kwargs)

    return evaluate


def robustness_table(run: Any, evaluate: Callable[[pd.DataFrame], Any] | None = None, *,
                     kernels: Sequence[Any] | str = DEFAULT_ROBUSTNESS_KERNELS, estimator: str = "kde_upper",
                     mi: Any = None, epochs: Sequence[int] | None = None,
                     progress: bool = False) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Re-estimate ``run`` under each kernel (KDE only) and check the claims under each.

    Returns ``(verdicts, summary, estimates)``: :func:`claims_by_setting`'s table, its
    :func:`summarize_robustness`, and the re-estimated MI table. ``run`` may also be an MI table
    that already holds the settings (then nothing is re-estimated).
    """
    fn = evaluate or default_evaluator()
    if isinstance(run, pd.DataFrame):
        table = run
        settings = None
    else:
        rd = run if isinstance(run, RunDir) else RunDir.open(run)
        base = mi if mi is not None else rd.config().mi
        ks = parse_kernels(kernels)
        est = ("kde",) if estimator.startswith("kde") else (estimator,)
        cfg = dataclasses.replace(base, kernels=tuple(k.spec() for k in ks), estimators=est)
        table = reestimate(rd, cfg, epochs=epochs, progress=progress)
        settings = [k.spec() if estimator != "renyi" else renyi_setting(k, cfg.renyi_alpha) for k in ks]
    verdicts = claims_by_setting(table, fn, estimator=estimator, settings=settings)
    return verdicts, summarize_robustness(verdicts), table
