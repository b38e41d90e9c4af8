"""Robustness of the conclusions: claim verdicts per kernel-width setting and their summary."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from infoflow.errors import InfoflowError
from infoflow.estimators import estimate_layers
from infoflow.analysis.robustness import (
    ROBUSTNESS_COLUMNS,
    _results,
    claims_by_setting,
    robustness_table,
    summarize_robustness,
)

WIDTHS = ("fixed:0.01", "fixed:0.2", "fixed:5", "fixed:1000", "rel:0.01", "rel:0.1", "rel:1", "silverman")


def sqdist(x):
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    g = x @ x.T
    sq = np.diag(g)
    return np.maximum(sq[:, None] + sq[None, :] - 2 * g, 0.0)


def evaluate(mi: pd.DataFrame) -> pd.DataFrame:
    """Two toy claims on one setting's rows: "1" layer 0 has I(Y;M) within 5% of H(Y);
    "2" layer 0's I(X;M) lies below its ceiling log2 N (not saturated)."""
    y = mi[(mi.layer == 0) & (mi.quantity == "I_YM")].iloc[0]
    x = mi[(mi.layer == 0) & (mi.quantity == "I_XM")].iloc[0]
    return pd.DataFrame({"claim": ["1", "2"], "holds": [y.value >= 0.95 * y.h_y, x.value < 0.95 * x.log2n],
                         "detail": [f"I_YM={y.value:.2f}", f"I_XM={x.value:.2f}"]})


@pytest.fixture(scope="module")
def table():
    rng = np.random.default_rng(0)
    n, k = 48, 4
    y = np.arange(n) % k
    x = rng.normal(size=(k, 8))[y] * 10.0 + rng.normal(size=(n, 8))  # 4 separated clusters
    return estimate_layers(sqdist(x)[None], names=["l0"], dims=[8], epoch=1, labelings={"y": y},
                           estimators=("kde",), kernels=WIDTHS)


def test_claims_by_setting_and_summary(table):
    v = claims_by_setting(table, evaluate)
    assert list(v.columns) == list(ROBUSTNESS_COLUMNS) and len(v) == 2 * len(WIDTHS)
    c1 = v[v.claim == "1"].set_index("setting")["holds"]
    assert c1["fixed:0.2"] is True and c1["rel:1.0"] is False
    c2 = v[v.claim == "2"].set_index("setting")["holds"]
    assert c2["fixed:0.01"] is False and c2["fixed:1000.0"] is True  # narrow kernels saturate I(X;M)
    s = summarize_robustness(v).set_index("claim")
    st = s.loc["1", "statement"]
    assert st.startswith("claim 1 holds for fixed variance 0.01 to 5") and "fails for" in st
    assert "relative width" in st and s.loc["1", "n_holds"] + s.loc["1", "n_fails"] == len(WIDTHS)
    # a single setting and an unknown one
    assert len(claims_by_setting(table, evaluate, settings=["rel:0.1"])) == 2
    with pytest.raises(InfoflowError):
        claims_by_setting(table, evaluate, settings=["rel:7.0"])


def test_verdict_formats_and_failing_checks(table):
    class V:
        def __init__(self, claim, passed):
            self.claim, self.passed = claim, passed

    assert _results({"3": True, "4": {"holds": "no", "detail": "x"}}) == [
        {"claim": "3", "holds": True, "detail": ""}, {"claim": "4", "holds": False, "detail": "x"}]
    assert _results([V("a", 1), V("b", None)]) == [{"claim": "a", "holds": True, "detail": ""},
                                                    {"claim": "b", "holds": None, "detail": ""}]

    # claims tables: "undecided" (and "inconclusive" of tables written before the rename) -> None
    claims = pd.DataFrame({"claim": ["1", "2", "3", "4"], "status": ["pass", "fail", "undecided", "inconclusive"]})
    assert [r["holds"] for r in _results((claims, {}))] == [True, False, None, None]

    def broken(mi):
        raise KeyError("layer 11")

    v = claims_by_setting(table, broken, settings=["rel:0.1"])
    assert v["holds"].iloc[0] is None and "layer 11" in v["detail"].iloc[0]
    assert "could not be decided" in summarize_robustness(v)["statement"].iloc[0]


def make_fake_run(path, n=24):
    """A run directory with a probe set (coarse labels) and one epoch of stored matrices."""
    from infoflow.config import RunConfig
    from infoflow.estimators import coarsen_labels
    from infoflow.runs import Matrices, RunDir
    from infoflow.tracking import ProbeSet

    rng = np.random.default_rng(0)
    masks = np.zeros((n, 1, 8, 8), np.float32)
    for i in range(n):
        q = i % 4
        masks[i, 0, (q // 2) * 4 + 1, (q % 2) * 4 + 1] = 1.0
    cfg = RunConfig().override(**{"mi.labels": ["coarse"], "mi.coarse_grid": 2, "mi.coarse_threshold": 0.5,
                                  "mi.estimators": ["kde"], "data.size": 8})
    run = RunDir.create(path, cfg.to_dict())
    y = coarsen_labels(masks, grid=2, threshold=0.5)
    ProbeSet.build(np.zeros((n, 3, 8, 8), np.float32), masks, [f"s{i}" for i in range(n)], cfg.mi,
                   labelings={"coarse": y}).save(run)
    acts = [rng.normal(size=(4, 5))[np.arange(n) % 4] * 3 + rng.normal(size=(n, 5)), rng.normal(size=(n, 3))]
    run.save_matrices(Matrices(epoch=1, names=["l0", "l1"], dims=np.array([5, 3]), codes={}, dist_input=None,
                               dist=np.stack([sqdist(a) for a in acts]).astype(np.float32)))
    return run


def test_robustness_table_of_a_run(tmp_path):
    run = make_fake_run(tmp_path / "run")
    verdicts, summary, est = robustness_table(run, evaluate, kernels=("fixed:0.2", "fixed:5", "rel:0.1"))
    assert set(est["setting"]) == {"fixed:0.2", "fixed:5.0", "rel:0.1"}
    assert list(dict.fromkeys(verdicts["setting"])) == ["fixed:0.2", "fixed:5.0", "rel:0.1"]
    assert set(summary["claim"]) == {"1", "2"}


def test_with_the_projects_claim_checks():
    pytest.importorskip("infoflow.analysis.claims")
    from infoflow.analysis.robustness import claims_evaluator

    rng = np.random.default_rng(0)
    n = 32
    y = np.arange(n) % 4
    frames = []
    for e in (1, 2, 5, 10, 20):
        dists = np.stack([sqdist(rng.normal(size=(4, 6))[y] * e * (1 + li % 5) + rng.normal(size=(n, 6)))
                          for li in range(23)])
        frames.append(estimate_layers(dists, names=[f"l{i}" for i in range(23)], dims=[6] * 23, epoch=e,
                                      labelings={"kmeans": y}, estimators=("kde_upper",),
                                      kernels=("fixed:0.2", "rel:0.1")))
    v = claims_by_setting(pd.concat(frames, ignore_index=True), claims_evaluator())
    assert {"1", "2", "3", "4"} <= set(v["claim"]) and set(v["setting"]) == {"fixed:0.2", "rel:0.1"}
    assert all(h in (True, False, None) for h in v["holds"])
    assert v.loc[v.claim == "4", "holds"].isna().all()  # no Dice curves: claim 4 undecided
    assert len(summarize_robustness(v)) == len(set(v["claim"]))


def test_estimate_cli_takes_the_reproductions_thresholds(tmp_path):
    """Runs of a reproduction (reproduce.json beside them): the claims use its profile's thresholds."""
    import json

    from infoflow.cli.estimate_cmd import _reproduction_thresholds
    from infoflow.errors import ConfigError

    run = make_fake_run(tmp_path / "repro" / "model1_seed0")
    assert _reproduction_thresholds([run]) is None
    (tmp_path / "repro" / "reproduce.json").write_text(json.dumps({"profile": "cpu", "thresholds": {"dice_tol": 0.05}}))
    th, source = _reproduction_thresholds([run])
    assert source == (tmp_path / "repro" / "reproduce.json").resolve()
    assert th.early_epochs == 5 and th.dice_tol == 0.05  # cpu profile's early epochs, the recorded override
    (tmp_path / "repro" / "reproduce.json").write_text("{}")
    with pytest.raises(ConfigError, match="reproduce.json"):
        _reproduction_thresholds([run])
