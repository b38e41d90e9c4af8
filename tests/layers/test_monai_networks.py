"""MONAI's segmentation networks: probe layers, skips and their join kind, and a U-Plot of each.

Concatenation skips (the U-Net's) are told apart from residual additions; a residual block is
probed at its output after the addition, never at its shortcut's projection conv alone.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from infoflow.network import describe_network
from infoflow.plots import uplots

nets = pytest.importorskip("monai.networks.nets")


def _unet(res: int):
    return nets.UNet(spatial_dims=2, in_channels=3, out_channels=1, channels=(4, 8, 16, 32), strides=(2, 2, 2),
                     num_res_units=res)


def _segresnet():
    return nets.SegResNet(spatial_dims=2, init_filters=8, in_channels=3, out_channels=1, blocks_down=(1, 2, 2),
                          blocks_up=(1, 1))


D3 = "model.1.submodule.1.submodule"  # MONAI UNet's third level
#: network -> (number of probe layers, {layer index: name}, {skip pair: join})
CASES = {
    "unet": (lambda: _unet(0), 7, {0: "model.0", 3: f"{D3}.1.submodule", 6: "model.2"},
             {(0, 6): "cat", (1, 5): "cat", (2, 4): "cat"}),
    # ResidualUnit blocks: each probed after its addition (model.0, ...), projections not at all
    "unet_res2": (lambda: _unet(2), 14,
                  {0: "model.0.conv.unit0", 1: "model.0", 3: "model.1.submodule.0", 5: f"{D3}.0",
                   7: f"{D3}.1.submodule", 8: f"{D3}.2.0", 9: f"{D3}.2.1", 13: "model.2.1"},
                  {(1, 3): "add", (3, 5): "add", (5, 7): "add", (5, 8): "cat", (3, 10): "cat", (1, 12): "cat"}),
    "basicunet": (lambda: nets.BasicUNet(spatial_dims=2, in_channels=3, out_channels=1, features=(4, 4, 8, 8, 16, 4)),
                  23, {1: "conv_0.conv_1", 11: "upcat_4.convs.conv_0", 22: "final_conv"},
                  {(1, 20): "cat", (3, 17): "cat", (5, 14): "cat", (7, 11): "cat"}),
    # the attention gate adds W_g(g) and W_x(x); the gated feature is concatenated with the upsampled one
    "attentionunet": (lambda: nets.AttentionUnet(spatial_dims=2, in_channels=3, out_channels=1, channels=(4, 8, 16),
                                                 strides=(2, 2)),
                      17, {7: "model.1.submodule.1.attention.W_g", 10: "model.1.submodule.1.merge", 16: "model.2"},
                      {(6, 10): "cat", (7, 9): "add", (11, 15): "cat", (12, 14): "add"}),
    # SegResNet: ResBlocks (x += identity) probed after the addition; its U-Net skips are additions too
    "segresnet": (_segresnet, 20, {2: "down_layers.0.1", 5: "down_layers.1.1", 7: "down_layers.1.2",
                                   15: "up_layers.0.0", 18: "up_layers.1.0", 19: "conv_final.2"},
                  {(2, 5): "add", (5, 7): "add", (7, 10): "add", (10, 12): "add", (7, 15): "add", (13, 15): "add",
                   (2, 18): "add", (16, 18): "add"}),
}


def _table(names, epochs=(1, 3)) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for e in epochs:
        for i, n in enumerate(names):
            for q in ("I_XM", "I_YM"):
                rows.append({"epoch": e, "layer": i, "name": n, "estimator": "kde_upper", "setting": "var=0.2",
                             "labels": "kmeans", "quantity": q, "value": float(rng.uniform(0, 3)), "n": 64, "d": 10,
                             "log2n": 6.0, "h_y": 3.5, "at_ceiling": False})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("case", sorted(CASES))
def test_monai_network_layers_skips_and_uplot(case):
    make, n_layers, names, joins = CASES[case]
    torch.manual_seed(0)
    net = describe_network(make(), torch.rand(1, 3, 32, 32))
    assert len(net.layers) == n_layers
    assert {i: net.names[i] for i in names} == names
    # no projection conv of a residual shortcut is a probe layer on its own
    assert not any(n.endswith(".residual") for n in net.names)
    layout = net.layout
    assert dict(zip(layout.skip_pairs, layout.joins)) == joins
    fig = uplots(_table(net.names), network=layout)
    ax = fig.axes[0]
    arcs = sorted(p.get_gid() for p in ax.patches if (p.get_gid() or "").startswith("skip-"))
    dotted = sorted(p.get_gid() for p in ax.patches if (p.get_gid() or "").startswith("residual-"))
    assert arcs == sorted(f"skip-{s}-{m}" for (s, m), j in joins.items() if j == "cat")
    assert dotted == sorted(f"residual-{s}-{m}" for (s, m), j in joins.items() if j == "add")
    # merge markers only where a concatenation joins
    markers = sorted(int(ln.get_gid()[6:]) for ln in ax.lines if (ln.get_gid() or "").startswith("merge-"))
    assert markers == sorted({m for (_, m), j in joins.items() if j == "cat"})
    legend = [t.get_text() for lg in fig.legends for t in lg.get_texts()]
    assert ("arc: concatenation skip" in legend) == ("cat" in joins.values())
    assert ("dotted arc: residual addition" in legend) == ("add" in joins.values())
    fig.canvas.draw()


def test_residual_unit_projection_dropped_and_block_output_probed():
    net = describe_network(_unet(2), torch.rand(1, 3, 32, 32))
    layer = net.layers[1]
    assert layer.path == "model.0" and type(layer.module).__name__ == "ResidualUnit"
    assert "after the addition" in layer.taken and "'model.0.residual' not probed" in layer.taken
    # the same network with every conv as its own layer keeps the projections (19 layers, 10 skips)
    conv = describe_network(_unet(2), torch.rand(1, 3, 32, 32), after_addition=False)
    assert len(conv.layers) == 19 and len(conv.layout.skip_pairs) == 10
    assert sorted(j for j in conv.layout.joins) == ["add"] * 7 + ["cat"] * 3


@pytest.mark.parametrize("case", ["unet_res2", "segresnet"])
def test_residual_block_activation_is_the_sum(case):
    """What the probe captures of a residual block is the block's output after its addition: the
    residual block re-run on its own input gives it exactly (SegResNet adds in place, into its
    conv's output: the capture is cloned after the addition)."""
    from infoflow.probe.capture import capture

    make = CASES[case][0]
    torch.manual_seed(0)
    model = make().eval()
    net = describe_network(model, torch.rand(1, 3, 32, 32))
    blocks = [la for la in net.layers if "after the addition" in la.taken]
    assert blocks
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    inputs = {}
    hooks = [la.module.register_forward_pre_hook(lambda m, a, name=la.name: inputs.setdefault(name, a[0].clone()))
             for la in blocks]
    try:
        with torch.no_grad(), capture(model, net.pairs) as acts:
            model(x)
    finally:
        for h in hooks:
            h.remove()
    with torch.no_grad():
        for la in blocks:
            again = la.module(inputs[la.name])
            torch.testing.assert_close(acts[la.name][0], again, rtol=0, atol=0)
