"""Automatic merge detection (infoflow.network.find_merges) against the networks' architectures."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from infoflow.errors import ProbeError
from infoflow.network import describe_network, find_merges, find_probe_layers, merge_layers, skip_pairs
from infoflow.models import build_model
from infoflow.models.unet import MERGE_LAYERS, SKIP_PAIRS

monai_nets = pytest.importorskip("monai.networks.nets")

EXPECTED = {1: SKIP_PAIRS, 2: ((3, 17), (5, 14), (7, 11)), 3: ((5, 14), (7, 11)), 4: ((7, 11),)}


@pytest.mark.parametrize("method", ["fx", "hooks"])
@pytest.mark.parametrize("number", [1, 2, 3, 4])
def test_paper_models(number, method):
    model = build_model(model=number, width=2)
    merges = find_merges(model, torch.rand(1, 3, 32, 32), model.probe_modules(), method=method)
    assert skip_pairs(merges) == EXPECTED[number] == model.skip_pairs
    assert merge_layers(merges) == model.merge_layers
    for m in merges:  # the main stream is the transposed conv just before the merge conv
        assert m.op == "cat" and m.main == m.layer - 1 and m.method == method
        assert m.name == model.probe_modules()[m.layer][0]


def test_paper_model_1_defaults():
    net = describe_network(build_model(model=1, width=2))  # probe_modules(), inferred input, fx
    assert net.skip_pairs == SKIP_PAIRS and net.merge_layers == MERGE_LAYERS and net.method == "fx"
    doc = net.to_config()
    assert doc["skip_pairs"] == [[1, 20], [3, 17], [5, 14], [7, 11]] and len(doc["probe_layers"]) == 23


def test_monai_basicunet_upcat_merges():
    net = monai_nets.BasicUNet(spatial_dims=2, in_channels=3, out_channels=1, features=(4, 4, 8, 8, 16, 4))
    layers = find_probe_layers(net)
    idx = {n: i for i, (n, _) in enumerate(layers)}
    merges = find_merges(net, None, layers)
    # BasicUNet.forward: upcat_4(x4, x3), upcat_3(u4, x2), upcat_2(u3, x1), upcat_1(u2, x0); each UpCat
    # concatenates the encoder feature with its upsampled input, then convs.conv_0 takes the join.
    encoder = {"upcat_4": "down_3.convs.conv_1", "upcat_3": "down_2.convs.conv_1",
               "upcat_2": "down_1.convs.conv_1", "upcat_1": "conv_0.conv_1"}
    expected = tuple(sorted((idx[enc], idx[f"{up}.convs.conv_0"]) for up, enc in encoder.items()))
    assert skip_pairs(merges) == expected == ((1, 20), (3, 17), (5, 14), (7, 11))
    assert all(m.main == idx[f"{m.name.split('.')[0]}.upsample"] for m in merges)
    # UpCat's data-dependent control flow: fx would trace the wrong branch, so hooks are used
    assert {m.method for m in merges} == {"hooks"}
    with pytest.raises(ProbeError, match="torch.fx"):
        find_merges(net, None, layers, method="fx")


def _skip_connection_pairs(net, idx, down="", up=""):
    """(down layer, up layer) of every MONAI SkipConnection: Sequential(down, SkipConnection, up)."""
    pairs = []
    for path, m in net.named_modules():
        if type(m).__name__ == "SkipConnection":
            parent = path.rsplit(".", 1)[0]
            pairs.append((idx[f"{parent}.0{down}"], idx[f"{parent}.2{up}"]))
    return tuple(sorted(pairs))


def test_monai_unet_skip_connections():
    net = monai_nets.UNet(spatial_dims=2, in_channels=3, out_channels=1, channels=(4, 8, 16, 32), strides=(2, 2, 2))
    layers = find_probe_layers(net)
    idx = {n: i for i, (n, _) in enumerate(layers)}
    expected = _skip_connection_pairs(net, idx)
    assert len(expected) == 3
    for method in ("auto", "hooks"):
        merges = find_merges(net, None, layers, method=method)
        assert skip_pairs(merges) == expected == ((0, 6), (1, 5), (2, 4))
        assert all(m.op == "cat" for m in merges)
    assert find_merges(net, None, layers)[0].method == "fx"


def test_monai_unet_with_residual_units_conv_layers():
    """after_addition=False keeps every conv (the projection convs too): each skip's own join kind,
    a merge that both concatenates and adds tells its skips apart."""
    net = monai_nets.UNet(spatial_dims=2, in_channels=3, out_channels=1, channels=(4, 8, 16), strides=(2, 2),
                          num_res_units=1)
    layers = find_probe_layers(net, after_addition=False)
    idx = {n: i for i, (n, _) in enumerate(layers)}
    merges = find_merges(net, None, layers)
    # the skips: the down ResidualUnit's conv stream into the up layer's transposed conv
    cat = set(_skip_connection_pairs(net, idx, down=".conv", up=".0"))
    assert cat == {(idx["model.0.conv"], idx["model.2.0"]), (idx["model.1.submodule.0.conv"], idx["model.1.submodule.2.0"])}
    # each ResidualUnit adds its residual branch (a strided conv, or its input) to its conv stream
    residual = {(idx["model.0.residual"], idx["model.1.submodule.0.residual"]),
                (idx["model.1.submodule.0.residual"], idx["model.1.submodule.1.submodule.residual"]),
                (idx["model.1.submodule.1.submodule.residual"], idx["model.1.submodule.2.0"]),
                (idx["model.1.submodule.2.0"], idx["model.2.0"]),
                (idx["model.2.0"], idx["output"])}
    assert set(skip_pairs(merges)) == cat | residual
    assert {m.op for m in merges} == {"add", "cat+add"}
    joins = {(s, m.layer): m.pair_join(s) for m in merges for s in m.skips}
    assert joins == {**{p: "cat" for p in cat}, **{p: "add" for p in residual}}
    assert skip_pairs(find_merges(net, None, layers, method="hooks")) == skip_pairs(merges)


class Block(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(c)
        self.act2 = nn.ReLU()

    def forward(self, x):
        y = self.act1(self.conv1(x))
        return self.act2(self.bn2(self.conv2(y)) + x)


class ResNetSeg(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.block1 = Block(4)
        self.block2 = Block(4)
        self.head = nn.Conv2d(4, 1, 1)

    def forward(self, x):
        return torch.sigmoid(self.head(self.block2(self.block1(self.stem(x)))))


@pytest.mark.parametrize("method", ["fx", "hooks"])
def test_residual_additions(method):
    net = ResNetSeg()
    layers = find_probe_layers(net, after_addition=False)
    # 0 stem, 1 block1.act1, 2 block1.bn2, 3 block2.act1, 4 block2.bn2, 5 head, 6 output
    merges = find_merges(net, None, layers, method=method)
    # block1: bn2 (2) + its input (stem, 0) -> consumed by block2.conv1 (layer 3);
    # block2: bn2 (4) + its input (block1's sum, last probe layer 2) -> consumed by head (5)
    assert skip_pairs(merges) == ((0, 3), (2, 5))
    assert [(m.layer, m.main, m.op) for m in merges] == [(3, 2, "add"), (5, 4, "add")]


def test_residual_blocks_probed_after_the_addition():
    net = ResNetSeg()
    layers = find_probe_layers(net)
    # 0 stem, 1 block1.act1, 2 block1 (after bn2 + x and act2), 3 block2.act1, 4 block2, 5 head, 6 output
    assert [n for n, _ in layers] == ["stem", "block1.act1", "block1", "block2.act1", "block2", "head", "output"]
    merges = find_merges(net, None, layers)  # a block holds probe layers: fx cannot leave it a leaf
    assert [(m.layer, m.sources, m.op, m.method) for m in merges] == [(2, (0, 1), "add", "hooks"),
                                                                     (4, (2, 3), "add", "hooks")]


def test_inplace_addition_into_the_output():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1 = nn.Conv2d(3, 4, 3, padding=1)
            self.c2 = nn.Conv2d(4, 4, 3, padding=1)
            self.relu = nn.ReLU(inplace=True)

        def forward(self, x):
            a = self.relu(self.c1(x))
            b = self.relu(self.c2(a))
            b += a  # in place, on the tensor c2 returned
            return b

    net = Net()
    layers = find_probe_layers(net)
    assert [n for n, _ in layers] == ["c1", "c2", "output"]  # c2's tensor was changed after it returned
    for method in ("fx", "hooks"):
        assert skip_pairs(find_merges(net, None, layers, method=method)) == ((0, 2),)


def test_joins_with_the_input_or_constants_are_not_merges():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1 = nn.Conv2d(3, 3, 3, padding=1)
            self.c2 = nn.Conv2d(6, 1, 1)
            self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

        def forward(self, x):
            y = self.c1(x) + self.bias + 1.0
            return self.c2(torch.cat([y, x], dim=1))

    assert find_merges(Net(), method="hooks") == [] and find_merges(Net(), method="fx") == []


def test_multiplication_only_when_asked():
    class Gate(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.f = nn.Conv2d(3, 2, 1)
            self.g = nn.Sequential(nn.Conv2d(3, 2, 1), nn.Sigmoid())
            self.out = nn.Conv2d(2, 1, 1)

        def forward(self, x):
            return self.out(self.f(x) * self.g(x))

    net = Gate()
    assert find_merges(net) == []
    assert skip_pairs(find_merges(net, ops=("cat", "add", "mul"))) == ((0, 2),)
