"""Selecting one estimate per (epoch, layer) from a tidy MI table: an estimator, one of its
settings and a labelling (:class:`Selection`), with the defaults the claims, plots and report
share (:func:`select`: ``kde_upper``, its first setting, labels ``kmeans``)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..errors import InfoflowError

__all__ = ["DEFAULT_ESTIMATOR", "DEFAULT_LABELS", "Selection", "select"]

DEFAULT_ESTIMATOR = "kde_upper"
DEFAULT_LABELS = "kmeans"


@dataclass(frozen=True)
class Selection:
    """Which rows of a tidy table to read: an estimator, one of its settings, a labelling."""

    estimator: str
    setting: str
    labels: str

    def describe(self) -> str:
        return f"{self.estimator} ({self.setting}), Y: {self.labels}"


def select(mi: pd.DataFrame, estimator: str | None = None, setting: str | None = None,
           labels: str | None = None, *, require_labels: bool = False) -> Selection:
    """Resolve defaults: estimator ``kde_upper``, its first setting, labels ``kmeans`` (else the first).

    With ``require_labels`` the table must hold I(Y;M) estimates of the selection; otherwise a
    table without any gives labels ``"none"`` (I(X;M) alone can still be drawn).
    """
    if mi is None or mi.empty:
        raise InfoflowError("the MI table is empty")
    ests = list(dict.fromkeys(mi["estimator"].astype(str)))
    est = estimator or (DEFAULT_ESTIMATOR if DEFAULT_ESTIMATOR in ests else ests[0])
    rows = mi[mi["estimator"].astype(str) == est]
    if rows.empty:
        raise InfoflowError(f"no estimates of estimator {est!r}; the table has {ests}")
    settings = list(dict.fromkeys(rows["setting"].astype(str)))
    st = settings[0] if setting is None else str(setting)
    if st not in settings:
        raise InfoflowError(f"estimator {est!r} has no setting {st!r}; it has {settings}")
    labs = list(dict.fromkeys(rows.loc[rows["quantity"] == "I_YM", "labels"].astype(str)))
    if require_labels and not labs:
        raise InfoflowError(f"estimator {est!r} has no I(Y;M) estimates")
    if labels is None:
        lab = DEFAULT_LABELS if DEFAULT_LABELS in labs else (labs[0] if labs else "none")
    else:
        lab = str(labels)
        if (labs or require_labels) and lab not in labs:
            raise InfoflowError(f"estimator {est!r} has no I(Y;M) with labels {lab!r}; it has {labs}")
    return Selection(est, st, lab)
