"""Route 5 of issue 15: K of K-means against the probe set size N, from `infoflow train --k`."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from infoflow.cli import main
from infoflow.config import MIConfig
from infoflow.errors import ConfigError
from infoflow.estimators.labels import ClassesWarning, kmeans_labels
from infoflow.tracking import ProbeSet

# 64 synthetic training images (n_synthetic 80 minus the seeded test split), all of them probed
TINY = ["--data", "synthetic", "--size", "32", "--width", "2", "--epochs", "1", "--batch", "16", "--schedule", "all",
        "--set", "data.n_synthetic=80", "--set", 'mi.estimators=["kde"]', "--set", 'mi.labels=["kmeans"]', "--quiet"]


def _n_train(tmp_path: Path) -> int:
    from infoflow.config import DataConfig
    from infoflow.data import load_splits

    return len(load_splits(DataConfig(source="synthetic", size=32, n_synthetic=80, cache_dir=str(tmp_path / "c")),
                           progress=False).train.ids)


def test_k_above_the_probe_size_is_refused_in_one_line(tmp_path: Path, capsys) -> None:
    n = _n_train(tmp_path)
    out = tmp_path / "run"
    assert main(["train", *TINY, "--k", str(n + 1), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"mi.kmeans_k = {n + 1}" in err and f"probe set size ({n})" in err and "--k" in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_k_near_the_probe_size_warns_in_one_line_and_trains(tmp_path: Path, capsys) -> None:
    n = _n_train(tmp_path)
    k = n // 2  # 2 samples per class: accepted, with one warning line; sklearn's own warning is not shown
    out = tmp_path / "run"
    assert main(["train", *TINY, "--k", str(k), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines == [f"warning: mi.kmeans_k = {k} classes for {n} probe samples (2.0 per class, fewer than 4): "
                     f"H(Y) nears log2 N and I(Y;M) nears I(X;M); a K of at most {n // 4} keeps classes of several "
                     "samples"], err
    mi = pd.read_csv(out / "mi.csv")
    assert set(mi["labels"]) >= {"kmeans"} and (out / "config.json").read_text().count(f'"kmeans_k": {k}') == 1


def test_k_of_a_quarter_of_n_is_quiet(tmp_path: Path, capsys) -> None:
    n = _n_train(tmp_path)
    assert main(["train", *TINY, "--k", str(n // 4), "--out", str(tmp_path / "run")]) == 0
    assert capsys.readouterr().err.strip() == ""


CASES = [  # (N probe, N fit, K, error or warning text; None: quiet)
    (12, 12, 13, "mi.kmeans_k = 13 must be between 1 and the number of masks K-means is fitted on (12) and at most "
                 "the probe set size (12)"),
    (8, 40, 9, "at most the probe set size (8)"),
    (40, 8, 9, "fitted on (8)"),
    (12, 40, 4, "3.0 per class"),
    (16, 40, 4, None),
]


@pytest.mark.parametrize("n, n_fit, k, text", CASES)
def test_probe_set_checks_k(n: int, n_fit: int, k: int, text: str | None) -> None:
    rng = np.random.default_rng(0)
    masks = (rng.random((n, 1, 8, 8)) > 0.5).astype(np.float32)
    fit = (rng.random((n_fit, 1, 8, 8)) > 0.5).astype(np.float32)
    images = rng.random((n, 3, 8, 8)).astype(np.float32)
    mi = MIConfig(labels=("kmeans",), kmeans_k=k)
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        if text is not None and "per class" not in text:
            with pytest.raises(ConfigError) as exc:
                ProbeSet.build(images, masks, [str(i) for i in range(n)], mi, fit_masks=fit, fit_y_masks=fit)
            assert text in str(exc.value)
            return
        ProbeSet.build(images, masks, [str(i) for i in range(n)], mi, fit_masks=fit, fit_y_masks=fit)
    mine = [str(w.message) for w in got if issubclass(w.category, ClassesWarning)]
    assert mine == ([] if text is None else [m for m in mine if text in m]) and len(mine) == (text is not None)


def test_kmeans_on_duplicate_masks_gives_no_sklearn_warning() -> None:
    masks = np.zeros((10, 1, 4, 4), np.float32)
    masks[5:, 0, 0, 0] = 1.0  # two distinct masks, K = 4: sklearn finds 2 clusters and would warn
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        labels = kmeans_labels(masks, masks, k=4)
    assert [w for w in got if "Converg" in w.category.__name__] == []
    assert len(np.unique(labels[:5])) == 1 and len(np.unique(labels[5:])) == 1 and labels[0] != labels[5]


def test_estimate_refuses_k_above_the_probe_size(run, capsys) -> None:
    n = len(run.load_probe())
    before = sorted(p.name for p in run.estimate_tables())
    assert main(["estimate", str(run.path), "--k", str(n + 1), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"mi.kmeans_k = {n + 1}" in err and f"probe set size ({n})" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in run.estimate_tables()) == before
