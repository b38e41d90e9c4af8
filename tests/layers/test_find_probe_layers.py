"""Automatic probe-layer discovery (infoflow.network.find_probe_layers) on real networks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from infoflow.errors import ConfigError, ProbeError
from infoflow.network import (
    LayerWarning,
    describe_probe_layers,
    find_probe_layers,
    infer_example_input,
)
from infoflow.models import build_model
from infoflow.models.unet import PROBE_LAYERS

monai_nets = pytest.importorskip("monai.networks.nets")


class Block(nn.Module):
    """conv -> ReLU, conv -> BatchNorm, + identity, ReLU (a ResNet basic block)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(c)
        self.act2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act1(self.conv1(x))
        y = self.bn2(self.conv2(y))
        return self.act2(y + x)


class ResNetSeg(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.block1 = Block(4)
        self.block2 = Block(4)
        self.head = nn.Conv2d(4, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.head(self.block2(self.block1(self.stem(x)))))  # functional sigmoid


class SharedReLU(nn.Module):
    """One inplace ReLU module used twice: it cannot be hooked for one layer."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.c2 = nn.Conv2d(4, 4, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.relu(self.bn1(self.c1(x)))
        b = self.relu(self.c2(a))
        b += a
        return b


@pytest.mark.parametrize("number", [1, 2, 3, 4])
def test_auto_layers_of_infoflow_unet_equal_probe_modules(number):
    model = build_model(model=number, width=2)
    found = find_probe_layers(model)
    assert found == model.probe_modules()  # same 23 names, same module objects, same order
    assert [n for n, _ in found] == list(PROBE_LAYERS)


def test_unet_descriptions_say_what_is_taken():
    layers = describe_probe_layers(build_model(model=1, width=2))
    assert layers[0].source == "enc1.conv_a.0" and layers[0].taken == "after ReLU"
    assert layers[10].name == "up4" and "no activation" in layers[10].taken  # transposed conv: no activation
    assert layers[22].name == "out" and layers[22].taken == "after Sigmoid"


def test_after_activation_false_takes_raw_convs_and_adds_the_output():
    model = build_model(model=1, width=2)
    names = [n for n, _ in find_probe_layers(model, after_activation=False)]
    assert len(names) == 24
    assert names[:2] == ["enc1.conv_a.0", "enc1.conv_b.0"] and names[10] == "up4"
    assert names[22:] == ["out.0", "out.1"]  # raw output conv, then the model output (the Sigmoid)


def test_selection_by_type_pattern_and_names():
    model = build_model(model=1, width=2)
    ups = [n for n, _ in find_probe_layers(model, types=(nn.ConvTranspose2d,), include_output=False)]
    assert ups == ["up4", "up3", "up2", "up1"]
    enc = [n for n, _ in find_probe_layers(model, pattern=r"^enc[12]\.", include_output=False)]
    assert enc == ["enc1.conv_a", "enc1.conv_b", "enc2.conv_a", "enc2.conv_b"]
    # names: taken as they are, sorted into forward order
    named = find_probe_layers(model, names=["dec1.conv_b", "enc1", "up4"])
    assert [n for n, _ in named] == ["enc1", "up4", "dec1.conv_b"]
    assert named[0][1] is model.enc1


def test_unknown_names_are_an_error_naming_them():
    model = build_model(model=1, width=2)
    with pytest.raises(ConfigError) as err:
        find_probe_layers(model, names=["enc1.conv_a", "enc9", "dec0.conv"])
    assert "'enc9'" in str(err.value) and "'dec0.conv'" in str(err.value) and "enc1.conv_a'" not in str(err.value)
    with pytest.raises(ConfigError):
        find_probe_layers(model, pattern="(")


def test_monai_basicunet_layers():
    net = monai_nets.BasicUNet(spatial_dims=2, in_channels=3, out_channels=1, features=(4, 4, 8, 8, 16, 4))
    layers = describe_probe_layers(net)
    names = [la.name for la in layers]
    assert len(names) == 23
    assert names[:2] == ["conv_0.conv_0", "conv_0.conv_1"]
    assert names[10:13] == ["upcat_4.upsample", "upcat_4.convs.conv_0", "upcat_4.convs.conv_1"]
    assert names[-1] == "final_conv"  # logits: the output conv is the output layer
    # MONAI Convolution = conv -> InstanceNorm -> Dropout -> LeakyReLU: the block's output is taken
    assert layers[0].taken == "after InstanceNorm2d -> Dropout -> LeakyReLU"
    assert type(layers[0].module).__name__ == "Convolution"


def test_monai_unet_layers():
    net = monai_nets.UNet(spatial_dims=2, in_channels=3, out_channels=1, channels=(4, 8, 16), strides=(2, 2))
    names = [n for n, _ in find_probe_layers(net)]
    assert names == ["model.0", "model.1.submodule.0", "model.1.submodule.1.submodule", "model.1.submodule.2",
                     "model.2"]


def test_residual_network_layers():
    layers = describe_probe_layers(ResNetSeg(), after_addition=False)
    assert [la.name for la in layers] == ["stem", "block1.act1", "block1.bn2", "block2.act1", "block2.bn2",
                                          "head", "output"]
    assert layers[2].source == "block1.conv2" and "BatchNorm2d" in layers[2].taken
    assert layers[-1].path == "" and layers[-1].module is not None  # functional sigmoid: the model itself
    after = describe_probe_layers(ResNetSeg())  # each block's output after its addition (and act2)
    assert [la.name for la in after] == ["stem", "block1.act1", "block1", "block2.act1", "block2", "head", "output"]
    assert after[2].source == "block1.conv2" and "after the addition" in after[2].taken


def test_shared_activation_is_not_hooked():
    layers = describe_probe_layers(SharedReLU())
    assert [la.name for la in layers] == ["bn1", "c2", "output"]
    assert "runs 2 times" in layers[0].taken


def test_shared_weights_warn_and_are_skipped():
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(3, 3, 3, padding=1)
            self.b = nn.Conv2d(3, 1, 1)

        def forward(self, x):
            return self.b(self.a(self.a(x)))

    with pytest.warns(LayerWarning, match="runs 2 times"):
        names = [n for n, _ in find_probe_layers(Twice())]
    assert names == ["b"]


def test_example_input_inference_and_errors():
    x = infer_example_input(monai_nets.BasicUNet(spatial_dims=3, in_channels=2, out_channels=1,
                                                 features=(2, 2, 2, 2, 2, 2)))
    assert tuple(x.shape) == (1, 2, 32, 32, 32)
    with pytest.raises(ProbeError, match="example_input"):
        find_probe_layers(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)))

    class Needs64(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c = nn.Conv2d(3, 1, 3, padding=1)

        def forward(self, x):
            if x.shape[-1] != 64:
                raise ValueError("needs 64 x 64 inputs")
            return self.c(x)

    with pytest.raises(ProbeError, match="example_input"):
        find_probe_layers(Needs64())
    assert [n for n, _ in find_probe_layers(Needs64(), torch.zeros(1, 3, 64, 64))] == ["c"]


def test_discovery_leaves_the_model_as_it_was():
    model = ResNetSeg().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    find_probe_layers(model)
    assert model.training and all(m.training for m in model.modules())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BatchNorm statistics untouched
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_tuple_output_warns():
    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c = nn.Conv2d(3, 2, 1)

        def forward(self, x):
            y = self.c(x)
            return y[:, :1], y[:, 1:]

    with pytest.warns(LayerWarning, match="not a tensor"):
        assert [n for n, _ in find_probe_layers(Two())] == ["c"]
