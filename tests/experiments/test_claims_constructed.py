"""Claim checks on constructed tables whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from infoflow.analysis.claims import (
    ClaimThresholds,
    claim1,
    claim2,
    claim3,
    claims_markdown,
    curves,
    dice_outcomes,
    evaluate_claims,
    prediction,
    redundancy_predictions,
    select,
    smooth_dice,
)
from infoflow.network import NetworkLayout as Layout

EPOCHS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15, 20, 30, 40, 50, 60, 80, 100]
H_Y = 5.0
LOG2N = 9.0
MAXI = 3.0  # the network's maximum I(Y;M), below H(Y): no ceiling


def ramp(epoch: float, t: float, top: float = MAXI, start: float = 0.2) -> float:
    """Rises linearly from ``start`` at epoch 1 to ``top`` at epoch ``t``, then stays."""
    if t <= 1:
        return top
    return top if epoch >= t else start + (top - start) * (epoch - 1) / (t - 1)


def paper_like_iy(layer: int, epoch: int) -> float:
    """Layers 0, 1 at the maximum from epoch 1; 17 reaches it at 5, 14 at 20, 11 never (1.5);
    the bottom layers slow and low; other top layers fast."""
    if layer in (0, 1):
        return MAXI
    if layer == 17:
        return ramp(epoch, 5)
    if layer == 14:
        return ramp(epoch, 20)
    if layer == 11:
        return ramp(epoch, 60, top=1.5)
    if 8 <= layer <= 13:
        return ramp(epoch, 60, top=1.2)
    if layer in (20, 21, 22, 18, 19):
        return ramp(epoch, 3)
    if layer in (15, 16):
        return ramp(epoch, 8, top=2.5)
    return ramp(epoch, 10, top=2.6)  # encoder 2-7


def paper_like_ix(layer: int, epoch: int) -> float:
    """U-shape: falls along the encoder, rises at each merge layer."""
    enc = {i: 8.0 - 0.6 * i for i in range(10)}  # 8.0 ... 2.6
    if layer in enc:
        return enc[layer]
    dec = {10: 2.4, 11: 3.5, 12: 3.4, 13: 3.3, 14: 4.5, 15: 4.4, 16: 4.3, 17: 5.5, 18: 5.4, 19: 5.3,
           20: 6.5, 21: 6.4, 22: 6.0}
    return dec[layer]


def make_mi(iy=paper_like_iy, ix=paper_like_ix, epochs=EPOCHS, h_y=H_Y, log2n=LOG2N, n_layers=23,
            setting="fixed:0.2") -> pd.DataFrame:
    rows = []
    for e in epochs:
        for layer in range(n_layers):
            x, y = float(ix(layer, e)), float(iy(layer, e))
            base = {"epoch": e, "layer": layer, "name": f"l{layer}", "estimator": "kde_upper", "setting": setting,
                    "n": 512, "d": 100, "log2n": log2n}
            rows.append({**base, "labels": "none", "quantity": "I_XM", "value": x, "h_y": np.nan,
                         "at_ceiling": x >= 0.99 * log2n})
            rows.append({**base, "labels": "kmeans", "quantity": "I_YM", "value": y, "h_y": h_y,
                         "at_ceiling": y >= 0.99 * h_y})
    return pd.DataFrame(rows)


def dice_curve(t_reach: float | None, top: float = 0.9, epochs: int = 100, low: float = 0.05) -> pd.DataFrame:
    """Validation Dice rising linearly to ``top`` at ``t_reach`` (None: stays at ``low``)."""
    e = np.arange(1, epochs + 1)
    if t_reach is None:
        d = np.full(len(e), low)
    else:
        d = np.where(e >= t_reach, top, low + (top - low) * (e - 1) / max(t_reach - 1, 1))
    return pd.DataFrame({"epoch": e, "loss_train": 0.1, "dice_train": d, "loss_val": 0.1, "dice_val": d,
                         "seconds": 1.0})


REMOVED = {"Model 1": [], "Model 2": [(1, 20)], "Model 3": [(1, 20), (3, 17)],
           "Model 4": [(1, 20), (3, 17), (5, 14)]}


def cur(mi=None):
    mi = make_mi() if mi is None else mi
    return curves(mi, select(mi))


def status(table: pd.DataFrame, claim: str) -> str:
    return table.set_index("claim").loc[claim, "status"]


# -- claim 1 -----------------------------------------------------------------------------------
def test_claim1_pass_when_first_layers_are_at_the_maximum_from_the_start():
    r = claim1(cur())
    assert r.status == "pass", r.detail
    assert r.numbers["reach_epoch_0"] == 1 and r.numbers["reach_epoch_1"] == 1
    assert "3.00 bits" in r.detail


def test_claim1_fail_when_a_first_layer_saturates_late():
    def iy(layer, e):
        return ramp(e, 30) if layer == 1 else paper_like_iy(layer, e)

    r = claim1(cur(make_mi(iy=iy)))
    assert r.status == "fail"
    assert r.numbers["reach_epoch_1"] == 30
    assert "epoch 30 (after 20)" in r.detail


def test_claim1_fail_when_the_layer_drops_afterwards():
    def iy(layer, e):
        return (1.0 if e >= 50 else MAXI) if layer == 0 else paper_like_iy(layer, e)

    assert claim1(cur(make_mi(iy=iy))).status == "fail"


def test_claim1_undecided_at_ceiling():
    # H(Y) = 3 bits: the first layers' "maximum" is the estimator's ceiling
    r = claim1(cur(make_mi(h_y=MAXI)))
    assert r.status == "undecided"
    assert "ceiling" in r.detail


def test_too_few_logged_epochs_make_mi_claims_undecided():
    c = cur(make_mi(epochs=[1, 2, 3]))
    for fn in (claim1, claim2, claim3):
        r = fn(c)
        assert r.status == "undecided" and "logged epoch" in r.detail


# -- claim 2 -----------------------------------------------------------------------------------
def test_claim2_pass_on_slow_low_bottom_layers():
    r = claim2(cur())
    assert r.status == "pass", r.detail
    assert r.numbers["t_bottom"] > r.numbers["t_top"]
    assert r.numbers["max_bottom"] < 0.95 * r.numbers["max_top"]


def test_claim2_fail_when_bottom_layers_are_as_fast_and_high():
    def iy(layer, e):
        return MAXI if 8 <= layer <= 14 else paper_like_iy(layer, e)

    assert claim2(cur(make_mi(iy=iy))).status == "fail"


# -- claim 3 -----------------------------------------------------------------------------------
def test_claim3_pass_on_a_u_shape():
    def iy(layer, e):  # I(Y;M) also rises at the merges in early epochs
        return paper_like_ix(layer, e) / 3

    r = claim3(cur(make_mi(iy=iy)))
    assert r.status == "pass", r.detail
    assert r.numbers["rise_x_11"] == pytest.approx(1.1)


def test_claim3_fail_without_rise_at_a_merge():
    def ix(layer, e):
        return 2.4 if layer == 11 else paper_like_ix(layer, e)

    r = claim3(cur(make_mi(ix=ix, iy=lambda l, e: paper_like_ix(l, e) / 3)))
    assert r.status == "fail"
    assert "11: I(X;M) +0.00" in r.detail


def test_claim3_undecided_when_layers_sit_at_log2n():
    # every decoder layer at log2 N: no merge can rise, and that says nothing
    def ix(layer, e):
        return LOG2N if layer >= 10 else paper_like_ix(layer, e)

    def iy(layer, e):
        return H_Y if layer >= 10 else paper_like_ix(layer, e) / 3

    r = claim3(cur(make_mi(ix=ix, iy=iy)))
    assert r.status == "undecided", r.detail


# -- claim 4 -----------------------------------------------------------------------------------
def test_predictions_from_a_layer_that_saturates_and_one_that_never_does():
    pred = redundancy_predictions(cur()).set_index("skip")
    assert pred.loc["1->20", "deeper"] == 17 and pred.loc["1->20", "epoch"] == 5
    assert pred.loc["1->20", "after"] == 4
    assert pred.loc["3->17", "deeper"] == 14 and pred.loc["3->17", "epoch"] == 20
    assert pred.loc["5->14", "deeper"] == 11 and math.isnan(pred.loc["5->14", "epoch"])
    assert pred.loc["7->11", "deeper"] == -1
    assert not pred["at_ceiling"].any()
    p = pred.reset_index()
    assert prediction(p, REMOVED["Model 2"])[:2] == (5.0, False)
    assert prediction(p, REMOVED["Model 3"])[:2] == (20.0, False)
    assert math.isnan(prediction(p, REMOVED["Model 4"])[0])


def test_reference_layer_makes_every_layer_reach_its_own_maximum():
    pred = redundancy_predictions(cur(), th=ClaimThresholds(reference="layer")).set_index("skip")
    assert pred.loc["5->14", "epoch"] == 60  # layer 11 reaches its own 1.5 bits at 60


def test_dice_curves_meet_or_not():
    m = {"Model 1": dice_curve(10), "Model 2": dice_curve(12), "Model 3": dice_curve(40),
         "Model 4": dice_curve(20, top=0.8)}
    out = dice_outcomes(m, "Model 1").set_index("model")
    assert out.loc["Model 1", "target"] == pytest.approx(0.88)
    # smoothed: trailing 5-epoch mean -> reaches 0.88 a little after the raw curve reaches 0.9
    assert 10 <= out.loc["Model 1", "match_epoch"] <= 14
    assert 12 <= out.loc["Model 2", "match_epoch"] <= 16
    assert 40 <= out.loc["Model 3", "match_epoch"] <= 44
    assert math.isnan(out.loc["Model 4", "match_epoch"])
    assert out.loc["Model 4", "best"] == pytest.approx(0.8)


def test_smoothing_ignores_a_single_spike():
    d = dice_curve(None, low=0.5)
    d.loc[d["epoch"] == 30, "dice_val"] = 0.95
    s = smooth_dice(d, 5)
    assert s.max() == pytest.approx(0.5 + 0.45 / 5)


def test_claim4_pass_when_prediction_and_outcome_agree():
    m = {"Model 1": dice_curve(10), "Model 2": dice_curve(12), "Model 3": dice_curve(40),
         "Model 4": dice_curve(20, top=0.8)}
    table, extra = evaluate_claims(make_mi(), m, REMOVED)
    st = table.set_index("claim")["status"]
    assert st["4 Model 2"] == "pass" and st["4 Model 3"] == "pass" and st["4 Model 4"] == "pass"
    assert st["4"] == "pass" and st["4 outcome"] == "pass"
    assert st["1"] == "pass" and st["2"] == "pass"
    assert set(extra) == {"predictions", "outcomes"}
    d = table.set_index("claim").loc["4 Model 3", "detail"]
    assert "predicted from MI: 20" in d


def test_claim4_fail_when_the_model_without_the_needed_skip_matches():
    m = {"Model 1": dice_curve(10), "Model 2": dice_curve(12), "Model 3": dice_curve(40),
         "Model 4": dice_curve(50)}
    table, _ = evaluate_claims(make_mi(), m, REMOVED)
    assert status(table, "4 Model 4") == "fail"
    assert status(table, "4") == "fail"
    assert status(table, "4 outcome") == "fail"


def test_claim4_fail_when_a_model_matches_much_later_than_predicted():
    m = {"Model 1": dice_curve(10), "Model 2": dice_curve(80), "Model 3": dice_curve(90),
         "Model 4": dice_curve(None)}
    table, _ = evaluate_claims(make_mi(), m, REMOVED)
    assert status(table, "4 Model 2") == "fail"  # predicted 5 (Model 1 best at ~10): 80 > 3 x 14


def test_claim4_undecided_when_the_run_is_too_short_to_tell():
    m = {"Model 1": dice_curve(10, epochs=50), "Model 2": dice_curve(12, epochs=50),
         "Model 3": dice_curve(None, epochs=50), "Model 4": dice_curve(None, epochs=50)}
    table, _ = evaluate_claims(make_mi(), m, REMOVED)
    assert status(table, "4 Model 3") == "undecided"  # predicted 20; 50 < 3 x 20


def test_claim4_undecided_when_prediction_rests_on_ceiling():
    m = {"Model 1": dice_curve(10), "Model 2": dice_curve(12), "Model 3": dice_curve(40),
         "Model 4": dice_curve(None)}
    table, extra = evaluate_claims(make_mi(h_y=MAXI), m, REMOVED)
    assert extra["predictions"].set_index("skip").loc["1->20", "at_ceiling"]
    assert status(table, "4 Model 2") == "undecided"
    assert status(table, "4 Model 4") == "pass"  # "never" does not rest on a ceiling
    assert status(table, "1") == "undecided"


@pytest.mark.parametrize("model2, without_ceiling", [
    (12, "pass"),    # matches in time
    (80, "fail"),    # matches only at 80 > 3 x 14
])
def test_claim4_prediction_at_ceiling_decides_neither_way(model2, without_ceiling):
    """A predicted epoch read off a layer at its ceiling is the ceiling's: neither its agreement
    nor its failure is evidence."""
    m = {"Model 1": dice_curve(10), "Model 2": dice_curve(model2), "Model 3": dice_curve(40),
         "Model 4": dice_curve(None)}
    table, _ = evaluate_claims(make_mi(), m, REMOVED)
    assert status(table, "4 Model 2") == without_ceiling
    table, _ = evaluate_claims(make_mi(h_y=MAXI), m, REMOVED)
    assert status(table, "4 Model 2") == "undecided"
    assert "rests on an estimate at its ceiling" in table.set_index("claim").loc["4 Model 2", "detail"]


def test_seeds_use_the_median_and_report_the_spread():
    def shifted(k):
        def iy(layer, e):
            if layer == 17:
                return ramp(e, 5 + k)
            return paper_like_iy(layer, e)
        return iy

    mis = [make_mi(iy=shifted(k)) for k in (0, 1, 3)]  # layer 17 reaches at 5, 6, 8
    m = {"Model 1": [dice_curve(10)] * 3, "Model 2": [dice_curve(12), dice_curve(14), dice_curve(60)],
         "Model 3": [dice_curve(40)] * 3, "Model 4": [dice_curve(None)] * 3}
    table, extra = evaluate_claims(mis, m, REMOVED)
    assert (table["seeds"] == 3).all()
    pred = extra["predictions"].set_index("skip")
    assert pred.loc["1->20", "epoch"] == 6  # the median curve reaches at the median seed's epoch
    row = table.set_index("claim").loc["4 Model 2"]
    assert row["status"] == "pass"  # median Dice curve matches at ~14
    assert "per seed: 2 pass, 1 fail" in row["detail"]
    assert "range" in table.set_index("claim").loc["1", "detail"] or "per seed" in table.set_index("claim").loc["1", "detail"]


def test_any_network_with_skip_pairs():
    # 9 layers: skips 1->7 and 3->5; the deeper merge of 1->7 is 5
    layout = Layout(skip_pairs=((1, 7), (3, 5)), first_layers=(0,), bottom_layers=(4,), top_layers=(0, 7, 8),
                    encoder_layers=(0, 1, 2, 3))

    def iy(layer, e):
        return {5: ramp(e, 6)}.get(layer, MAXI if layer in (0, 7, 8) else 1.0)

    def ix(layer, e):
        return {0: 8, 1: 7, 2: 6, 3: 5, 4: 4, 5: 5, 6: 4.5, 7: 6, 8: 6}[layer]

    mi = make_mi(iy=iy, ix=ix, n_layers=9)
    pred = redundancy_predictions(cur(mi), layout).set_index("skip")
    assert list(pred.index) == ["1->7", "3->5"]
    assert pred.loc["1->7", "epoch"] == 6 and pred.loc["3->5", "deeper"] == -1
    m = {"full": dice_curve(10), "no top": dice_curve(15), "no skips": dice_curve(None)}
    table, _ = evaluate_claims(mi, m, {"full": [], "no top": [(1, 7)], "no skips": [(1, 7), (3, 5)]},
                               reference="full", layout=layout)
    st = table.set_index("claim")["status"]
    assert st["4 no top"] == "pass" and st["4 no skips"] == "pass" and st["1"] == "pass"


def test_markdown_lists_every_claim_and_the_thresholds():
    m = {"Model 1": dice_curve(10), "Model 2": dice_curve(12), "Model 3": dice_curve(40),
         "Model 4": dice_curve(None)}
    table, extra = evaluate_claims(make_mi(), m, REMOVED)
    md = claims_markdown(table, {table["selection"].iloc[0]: extra})
    for claim in ("| 1 |", "| 2 |", "| 3 |", "| 4 |", "| 4 Model 4 |"):
        assert claim in md
    assert "reach_frac" in md and "Claim 4 predictions" in md and "| 5->14 | 11 | never |" in md


def test_no_mi_and_no_metrics_are_undecided():
    table, _ = evaluate_claims(None, None)
    assert set(table["status"]) == {"undecided"}
    assert list(table["claim"]) == ["1", "2", "3", "4"]


def test_a_transient_spike_is_not_reaching_the_maximum():
    def iy(layer, e):  # layer 11 touches the maximum at epoch 4 only
        if layer == 11:
            return MAXI if e == 4 else 1.5
        return paper_like_iy(layer, e)

    pred = redundancy_predictions(cur(make_mi(iy=iy))).set_index("skip")
    assert math.isnan(pred.loc["5->14", "epoch"])


def test_claim1_uses_the_networks_maximum():
    # issue 13: "the maximum" of claim 1 is the network's (the paper's "about 3 bits"), no longer
    # each layer's own: first layers that hold 2 of the network's 3 bits do not reach it
    def iy(layer, e):  # the first layers hold 2 bits from epoch 1, the output reaches 3 later
        return 2.0 if layer in (0, 1) else paper_like_iy(layer, e)

    r = claim1(cur(make_mi(iy=iy)))
    assert r.status == "fail" and "67% of the network's" in r.detail
