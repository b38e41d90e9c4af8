"""Kernel-width rules: parsing, setting strings, scale invariance, fallbacks, table integration."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from infoflow.config import MIConfig, RunConfig
from infoflow.errors import ConfigError, InfoflowError
from infoflow.estimators import estimate_layers, kde_mi, kde_setting, renyi_setting
from infoflow.estimators.registry import bin_setting, kernel_of_setting, setting_of, upgrade_setting
from infoflow.estimators.table import normalize_table
from infoflow.estimators.widths import (
    Kernel,
    effective_dim,
    kernels_from_legacy,
    median_sqdist,
    parse_kernel,
    parse_kernels,
    resolved_kernels,
)


def sqdist(x):
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    g = x @ x.T
    sq = np.diag(g)
    return np.maximum(sq[:, None] + sq[None, :] - 2 * g, 0.0)


def kernel_var(spec, d):
    return parse_kernel(spec).kernel_var(d)


def test_parse_and_setting_strings():
    assert parse_kernel("rel:0.1") == Kernel("rel", 0.1)
    assert parse_kernel("silverman") == Kernel("silverman", 1.0) == parse_kernel("silverman:1")
    assert parse_kernel("fixed:0.2") == Kernel("fixed", 0.2)
    assert [k.spec() for k in parse_kernels("rel:0.1, rel:1,silverman,fixed:0.2,rel:0.10")] == \
        ["rel:0.1", "rel:1.0", "silverman:1.0", "fixed:0.2"]
    # strict: one form, no aliases, no bare numbers; the error names the value
    for bad in ("rel", "fixed", "rel:-1", "wide:2", "rel:x", "", "rel=0.1", "noise_var=0.2", "0.2", "Rel:0.1",
                "median:0.1", "fixed:inf", "fixed:0"):
        with pytest.raises(InfoflowError, match=repr(bad) if bad else "no kernel"):
            parse_kernels(bad)
    with pytest.raises(InfoflowError, match="0.2"):
        parse_kernel(0.2)
    assert kde_setting("fixed:0.2") == "fixed:0.2" and kde_setting("silverman") == "silverman:1.0"
    assert renyi_setting("fixed:0.2", 1.01) == "fixed:0.2,alpha:1.01" == setting_of("renyi", kernel="fixed:0.2")
    assert bin_setting(0.1) == "bin:0.1" == setting_of("bin", bin_size=0.1)
    for st, k in (("fixed:0.2", Kernel("fixed", 0.2)), ("fixed:1.0,alpha:1.01", Kernel("fixed", 1.0)),
                  ("rel:0.3", Kernel("rel", 0.3)), ("silverman:2.0,alpha:1.01", Kernel("silverman", 2.0))):
        assert kernel_of_setting(st) == k
    assert kernel_of_setting("bin:0.1") is None
    assert MIConfig().kernels == ("fixed:0.2",)
    assert MIConfig(kernels="rel:0.1,silverman").kernels == ("rel:0.1", "silverman:1.0")
    with pytest.raises(ConfigError, match="mi.kernels.*'rel=0.1'"):
        MIConfig(kernels=("rel=0.1",))


@pytest.mark.parametrize("old, new", [
    ("noise_var=0.2", "fixed:0.2"), ("noise_var=1.0", "fixed:1.0"), ("rel=0.1", "rel:0.1"),
    ("silverman=1.0", "silverman:1.0"), ("bin=0.1", "bin:0.1"), ("alpha=1.01,kernel_var=0.2", "fixed:0.2,alpha:1.01"),
    ("alpha=1.01,rel=0.1", "rel:0.1,alpha:1.01"), ("fixed:0.2", "fixed:0.2"), ("bin:0.1", "bin:0.1"),
])
def test_old_setting_strings_are_upgraded(old, new):
    assert upgrade_setting(old) == new


def test_old_table_and_config_still_load(tmp_path):
    """A mi.csv and a config.json written before the kernel spec read as today's."""
    old = pd.DataFrame({
        "epoch": [1] * 4, "layer": [0] * 4, "name": ["a"] * 4,
        "estimator": ["kde_upper", "kde_upper", "bin", "renyi"],
        "setting": ["noise_var=0.2", "rel=0.1", "bin=0.1", "alpha=1.01,kernel_var=0.2"],
        "labels": ["none"] * 4, "quantity": ["I_XM"] * 4, "value": [1.0, 2.0, 3.0, 0.01],
        "n": [16] * 4, "d": [4] * 4, "log2n": [4.0] * 4, "h_y": [math.nan] * 4, "at_ceiling": [False] * 4,
    })
    path = tmp_path / "mi.csv"
    old.to_csv(path, index=False)
    t = normalize_table(pd.read_csv(path))
    assert list(t["setting"]) == ["fixed:0.2", "rel:0.1", "bin:0.1", "fixed:0.2,alpha:1.01"]
    assert list(t["at_floor"]) == [False, False, False, True]
    cfg = RunConfig.from_dict({"mi": {"noise_var": [0.2, 1.0], "widths": ["fixed", "rel:0.1", "silverman"],
                                      "kmeans_k": 16}})
    assert cfg.mi.kernels == ("fixed:0.2", "fixed:1.0", "rel:0.1", "silverman:1.0") and cfg.mi.kmeans_k == 16
    assert RunConfig.from_dict({"mi": {"noise_var": [1.0]}}).mi.kernels == ("fixed:1.0",)
    assert RunConfig.from_dict({"mi": {"widths": ["rel=0.3"]}}).mi.kernels == ("rel:0.3",)
    assert kernels_from_legacy([0.2], ["noise_var=0.5", "median:2"]) == ("fixed:0.5", "rel:2.0")
    with pytest.raises(ConfigError, match="mi.kernels"):
        RunConfig.from_dict({"mi": {"noise_var": [0.2], "kernels": ["fixed:0.2"]}})
    with pytest.raises(ConfigError, match="'wide'"):
        RunConfig.from_dict({"mi": {"widths": ["wide"]}})


def test_kernel_var_rules_and_fallbacks():
    rng = np.random.default_rng(0)
    d = sqdist(rng.normal(size=(30, 5)))
    iu = np.triu_indices(30, 1)
    assert kernel_var("rel:0.5", d) == pytest.approx(0.5 * np.median(d[iu]), rel=1e-15)
    assert kernel_var("fixed:0.7", d) == 0.7
    # more than half the pairs coincide: the median is 0, the mean is used
    x = np.zeros((10, 2))
    x[0] = 1.0
    d0 = sqdist(x)
    assert median_sqdist(d0) == pytest.approx(np.mean(d0[np.triu_indices(10, 1)]))
    # constant layer: every rule gives a positive variance and I = 0
    dz = np.zeros((8, 8))
    for spec in ("rel:0.1", "silverman"):
        kv = kernel_var(spec, dz)
        assert kv > 0 and kde_mi(dz, np.arange(8) % 2, kernel_var=kv, dim=3).i_xm == 0.0


def test_effective_dimension_and_silverman():
    rng = np.random.default_rng(1)
    n, k = 400, 3
    x = np.zeros((n, 50))
    x[:, :k] = rng.normal(size=(n, k)) * 2.0  # isotropic in 3 of 50 directions
    d = sqdist(x)
    assert effective_dim(d) == pytest.approx(k, rel=0.1)
    # Silverman: per-direction variance 4 in k = 3 effective dims
    expect = 4.0 * (4.0 / ((k + 2) * n)) ** (2.0 / (k + 4))
    assert kernel_var("silverman", d) == pytest.approx(expect, rel=0.15)
    assert kernel_var("silverman:2", d) == pytest.approx(2 * kernel_var("silverman", d), rel=1e-15)


@pytest.mark.parametrize("c", [3.7, 1000.0, 1e-3])
def test_relative_widths_are_scale_invariant(c):
    rng = np.random.default_rng(2)
    n = 24
    y = np.arange(n) % 3
    acts = [rng.normal(size=(n, 6)) + y[:, None], rng.normal(size=(n, 40)) * 5, rng.normal(size=(n, 2)) * 0.01]
    dx = sqdist(rng.normal(size=(n, 8)))
    kw = dict(names=["a", "b", "c"], dims=[6, 40, 2], epoch=1, labelings={"y": y},
              estimators=("kde", "renyi"), dist_x=dx, kernels=("rel:0.1", "rel:1", "silverman", "silverman:0.3"))
    base = estimate_layers(np.stack([sqdist(a) for a in acts]), **kw)
    scaled = estimate_layers(np.stack([sqdist(a * c) for a in acts]), **kw)
    mi = base["quantity"].isin(["I_XM", "I_YM"])
    assert mi.sum() == 3 * 3 * 4 * 2  # 3 layers x (2 kde bounds + renyi) x 4 widths x (I_XM, I_YM)
    np.testing.assert_allclose(scaled.loc[mi, "value"], base.loc[mi, "value"], rtol=0, atol=1e-9)
    # a fixed variance is not scale invariant
    fixed = dict(kw, kernels=("fixed:0.2",))
    a = estimate_layers(np.stack([sqdist(x) for x in acts]), **fixed)
    b = estimate_layers(np.stack([sqdist(x * c) for x in acts]), **fixed)
    q = a["quantity"] == "I_XM"
    assert np.max(np.abs(a.loc[q, "value"].to_numpy() - b.loc[q, "value"].to_numpy())) > 1e-3


def test_default_widths_give_todays_rows_and_order():
    rng = np.random.default_rng(3)
    n = 16
    dists = np.stack([sqdist(rng.normal(size=(n, 4))) for _ in range(2)]).astype(np.float32)
    kw = dict(names=["a", "b"], dims=[4, 4], epoch=3, labelings={"y": np.arange(n) % 2},
              dist_x=sqdist(rng.normal(size=(n, 3))), estimators=("kde", "renyi"))
    old = estimate_layers(dists, **kw, kernels=("fixed:0.2", "fixed:1.0"))
    pd.testing.assert_frame_equal(old, estimate_layers(dists, **kw, kernels="fixed:0.2,fixed:1.0"))
    new = estimate_layers(dists, **kw, kernels=("rel:0.1", "fixed:0.2", "fixed:1.0", "silverman"))
    kde_settings = list(dict.fromkeys(new.loc[new.estimator == "kde_upper", "setting"]))
    assert kde_settings == ["rel:0.1", "fixed:0.2", "fixed:1.0", "silverman:1.0"]
    ren = list(dict.fromkeys(new.loc[new.estimator == "renyi", "setting"]))
    assert ren == ["rel:0.1,alpha:1.01", "fixed:0.2,alpha:1.01", "fixed:1.0,alpha:1.01",
                   "silverman:1.0,alpha:1.01"]
    # the fixed rows inside a mixed call are today's rows
    for (est, st), g in old.groupby(["estimator", "setting"]):
        h = new[(new.estimator == est) & (new.setting == st)]
        np.testing.assert_array_equal(g["value"].to_numpy(), h["value"].to_numpy())
    # a relative row equals kde_mi at the resolved variance
    d0 = dists[0].astype(np.float64)
    kv = kernel_var("rel:0.1", d0)
    r = kde_mi(d0, kw["labelings"]["y"], kernel_var=kv, dim=4)
    row = new[(new.layer == 0) & (new.estimator == "kde_upper") & (new.setting == "rel:0.1")]
    assert row.loc[row.quantity == "I_XM", "value"].item() == pytest.approx(r.i_xm, abs=1e-12)
    assert row.loc[row.quantity == "I_YM", "value"].item() == pytest.approx(r.i_ym, abs=1e-12)


def test_resolved_widths_table():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(12, 3))
    dists = np.stack([sqdist(x), sqdist(2 * x)])
    t = resolved_kernels(dists, names=["a", "b"], kernels="rel:0.5,fixed:0.2", epoch=7)
    assert list(t["kernel"]) == ["rel:0.5", "fixed:0.2"] * 2
    kv = t.set_index(["layer", "kernel"])["kernel_var"]
    assert kv[(1, "rel:0.5")] == pytest.approx(4 * kv[(0, "rel:0.5")], rel=1e-12)
    assert math.isclose(t["d_eff"][0], t["d_eff"][2], rel_tol=1e-9)
