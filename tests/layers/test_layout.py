"""One layout type: infoflow's U-Net states it, detection finds it, config.json keeps it."""

from __future__ import annotations

import json
import warnings

import pandas as pd
import pytest
import torch

from infoflow.errors import ConfigError
from infoflow.analysis.claims import claim1, claim2, claim3
from infoflow.config import MODEL_SKIPS
from infoflow.models.unet import SKIP_PAIRS, UNET_LAYOUT, UNet, build_model, layout_from_config
from infoflow.network import GROUPS, LayerWarning, NetworkLayout, describe_network, layer_groups
from infoflow.runs import RunDir

LAYOUT_KEYS = ("probe_layers", "skip_pairs", "skips_present", "skip_joins", "merge_layers", "layer_groups")


@pytest.mark.parametrize("number", [1, 2, 3, 4])
def test_unet_layout_equals_the_detected_layout(number, tmp_path):
    model = build_model(model=number, width=4)
    net = describe_network(model)
    assert net.layout == model.layout()
    assert net.layout.joins == ("cat", "cat", "cat", "cat")
    assert net.layout.present == MODEL_SKIPS[number] and net.layout.skip_pairs == SKIP_PAIRS
    assert net.layout.present_pairs == net.skip_pairs == model.skip_pairs

    # detection alone (layers given, so the model's own statement is not consulted) sees the present skips
    found = describe_network(model, layers=model.probe_modules()).layout
    assert found.names == model.layout().names and found.skip_pairs == model.skip_pairs
    assert found.joins == ("cat",) * len(model.skip_pairs) and all(found.present)
    if number == 1:
        assert found == model.layout()  # the layout rule gives the paper's layer groups

    # both serialise the same way into config.json["network"] and read back equal
    doc = net.to_config()
    assert {k: doc[k] for k in LAYOUT_KEYS} == model.layout().to_config()
    run = RunDir.create(tmp_path / "api", {"name": "unet", "network": doc})
    assert layout_from_config(run.read_config()) == model.layout()
    again = json.loads(json.dumps({"network": model.layout().to_config()}))
    assert layout_from_config(again) == model.layout() == NetworkLayout.from_config(again["network"])
    # a run of `infoflow train` (no "network" entry): the U-Net of its "model" entry
    assert layout_from_config({"model": {"model": number, "skips": None}}) == model.layout()


def test_the_rule_gives_the_papers_groups():
    rule = layer_groups(SKIP_PAIRS, 23)
    assert {g: getattr(UNET_LAYOUT, g) for g in GROUPS} == rule
    assert rule == {"first_layers": (0, 1), "bottom_layers": tuple(range(8, 15)), "top_layers": (0, 1, 20, 21, 22),
                    "encoder_layers": tuple(range(10))}
    assert UNET_LAYOUT.merge_layers == (11, 14, 17, 20) and UNET_LAYOUT.deeper_merge((1, 20)) == 17
    assert UNET_LAYOUT.deeper_merge((7, 11)) is None and UNET_LAYOUT.join((5, 14)) == "cat"


def test_layouts_without_nested_skips_have_no_groups():
    residual = NetworkLayout(names=tuple("abcdef"), skip_pairs=((2, 5), (0, 3)), joins=("add", "add"))
    assert residual.skip_pairs == ((0, 3), (2, 5)) and residual.joins == ("add", "add")
    assert all(getattr(residual, g) is None for g in GROUPS)
    assert NetworkLayout.from_config(residual.to_config()) == residual
    for fn in (claim1, claim2, claim3):  # the claims that read a group are undecided
        r = fn(pd.DataFrame(), residual)
        assert r.status == "undecided" and "layout gives no" in r.detail


def test_config_written_before_layouts_reads_back():
    old = {"probe_layers": ["a", "b", "c", "d"], "skip_pairs": [[0, 3]],
           "merges": [{"layer": 3, "name": "d", "sources": [0, 2], "main": 2, "skips": [0], "op": "cat"}]}
    lay = NetworkLayout.from_config(old)
    assert lay.present_pairs == ((0, 3),) and lay.joins == ("cat",) and lay.first_layers == (0,)
    with pytest.raises(ConfigError):
        NetworkLayout.from_config({"skip_pairs": [[3, 1]]})
    with pytest.raises(ConfigError):
        UNET_LAYOUT.with_present((True, False))


def test_a_stated_layout_that_detection_contradicts_is_not_taken():
    class Wrong(UNet):
        def layout(self):
            return super().layout().with_present((True, True, True, False))

    model = Wrong(width=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net = describe_network(model, torch.rand(1, 3, 32, 32))
    assert any(issubclass(w.category, LayerWarning) and "does not match" in str(w.message) for w in caught)
    assert net.layout.skip_pairs == SKIP_PAIRS and all(net.layout.present)
