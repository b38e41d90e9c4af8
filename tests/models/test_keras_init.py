"""build_model(init="keras"): the original Keras defaults, Glorot-uniform kernels and zero biases.

The bounds below are worked out by hand from Keras's recipe, not by infoflow: glorot_uniform
draws from U(-b, b), b = sqrt(6 / (fan_in + fan_out)), and Keras's fans of a kernel of shape
(kh, kw, a, c) are fan_in = kh * kw * a, fan_out = kh * kw * c. A Conv2D kernel is
(kh, kw, in, out); a Conv2DTranspose kernel is (kh, kw, filters, in).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from infoflow.config import RunConfig
from infoflow.errors import ConfigError
from infoflow.models import MODEL_SKIPS, UNet, build_model
from infoflow.models.unet import keras_fans

# Keras (fan_in, fan_out) of the 23 layers of Model 1 at w = 4, from the Keras kernel shape.
FANS_MODEL1_W4 = [
    (27, 36),    # 0  enc1 a        Conv2D (3,3,3,4)
    (36, 36),    # 1  enc1 b        Conv2D (3,3,4,4)
    (36, 72),    # 2  enc2 a        Conv2D (3,3,4,8)
    (72, 72),    # 3  enc2 b        Conv2D (3,3,8,8)
    (72, 144),   # 4  enc3 a        Conv2D (3,3,8,16)
    (144, 144),  # 5  enc3 b        Conv2D (3,3,16,16)
    (144, 288),  # 6  enc4 a        Conv2D (3,3,16,32)
    (288, 288),  # 7  enc4 b        Conv2D (3,3,32,32)
    (288, 576),  # 8  bottleneck a  Conv2D (3,3,32,64)
    (576, 576),  # 9  bottleneck b  Conv2D (3,3,64,64)
    (128, 256),  # 10 up4           Conv2DTranspose(32) on 64 channels: (2,2,32,64)
    (576, 288),  # 11 dec4 a        Conv2D (3,3,32+32,32)
    (288, 288),  # 12 dec4 b        Conv2D (3,3,32,32)
    (64, 128),   # 13 up3           Conv2DTranspose(16) on 32 channels: (2,2,16,32)
    (288, 144),  # 14 dec3 a        Conv2D (3,3,16+16,16)
    (144, 144),  # 15 dec3 b        Conv2D (3,3,16,16)
    (32, 64),    # 16 up2           Conv2DTranspose(8) on 16 channels: (2,2,8,16)
    (144, 72),   # 17 dec2 a        Conv2D (3,3,8+8,8)
    (72, 72),    # 18 dec2 b        Conv2D (3,3,8,8)
    (16, 32),    # 19 up1           Conv2DTranspose(4) on 8 channels: (2,2,4,8)
    (72, 36),    # 20 dec1 a        Conv2D (3,3,4+4,4)
    (36, 36),    # 21 dec1 b        Conv2D (3,3,4,4)
    (4, 1),      # 22 output        Conv2D (1,1,4,1)
]
# Model 4 has no skips 1->20, 3->17, 5->14: those merge convs take only the upsampled tensor.
FANS_MODEL4_W4 = list(FANS_MODEL1_W4)
FANS_MODEL4_W4[14] = (144, 144)  # Conv2D (3,3,16,16)
FANS_MODEL4_W4[17] = (72, 72)    # Conv2D (3,3,8,8)
FANS_MODEL4_W4[20] = (36, 36)    # Conv2D (3,3,4,4)
HAND_FANS = {1: FANS_MODEL1_W4, 4: FANS_MODEL4_W4}


def _convs(net: UNet) -> list[nn.Module]:
    """The conv of each probe layer (ConvReLU and the output are Sequentials; upK are bare)."""
    return [m if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) else m[0] for _, m in net.probe_modules()]


def _keras(model: int, seed: int = 0) -> UNet:
    torch.manual_seed(seed)
    return build_model(model=model, width=4, init="keras")


def _normalised(net: UNet, fans) -> list[torch.Tensor]:
    """Each layer's kernel divided by its hand-computed bound (U(-1, 1) if the init is right)."""
    return [conv.weight.detach().double().flatten() / math.sqrt(6 / (fi + fo))
            for conv, (fi, fo) in zip(_convs(net), fans)]


@pytest.mark.parametrize("model", [1, 4])
def test_keras_fans_match_the_hand_computed_ones(model):
    assert [keras_fans(c) for c in _convs(_keras(model))] == HAND_FANS[model]


@pytest.mark.parametrize("model", [1, 4])
def test_keras_init_is_glorot_uniform_with_zero_biases(model):
    net = _keras(model)
    layers = _normalised(net, HAND_FANS[model])
    for i, u in enumerate(layers):
        assert u.abs().max() <= 1.0, f"layer {i} leaves its Glorot bound"
        if u.numel() >= 300:  # P(max < 0.95) = 0.95^n < 1e-6: the bound is reached, not a smaller one
            assert u.abs().max() > 0.95, f"layer {i} stays well inside its bound"
        if u.numel() >= 1000:  # var of U(-1, 1) is 1/3; relative sd of the estimate sqrt(0.8 / n) <= 0.03
            assert u.var(unbiased=False).item() == pytest.approx(1 / 3, rel=0.15), f"layer {i}"
    pooled = torch.cat(layers)  # ~120k draws: sd of the variance estimate ~0.3%
    assert pooled.var(unbiased=False).item() == pytest.approx(1 / 3, rel=0.02)
    assert pooled.mean().item() == pytest.approx(0, abs=0.01)
    kurtosis = (pooled.pow(4).mean() / pooled.pow(2).mean() ** 2).item()  # uniform 1.8, normal 3
    assert kurtosis == pytest.approx(1.8, abs=0.05)
    biases = [p for n, p in net.named_parameters() if n.endswith("bias")]
    assert len(biases) == 23 and all(bool((b == 0).all()) for b in biases)


def test_the_variance_check_fails_for_torch_init():
    """PyTorch's default, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), is not Glorot: the same check fails."""
    torch.manual_seed(0)
    layers = _normalised(build_model(model=1, width=4, init="torch"), FANS_MODEL1_W4)
    assert torch.cat(layers).var(unbiased=False).item() != pytest.approx(1 / 3, rel=0.02)


def test_keras_init_is_seeded():
    a, b, c = _keras(1, seed=5).state_dict(), _keras(1, seed=5).state_dict(), _keras(1, seed=6).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["enc1.conv_a.0.weight"], c["enc1.conv_a.0.weight"])


@pytest.mark.parametrize("model", [1, 4])
def test_torch_init_is_unchanged(model):
    """init="torch" (and the default) gives exactly the parameters of the plain UNet, as before."""
    torch.manual_seed(3)
    before = UNet(width=4, skips=MODEL_SKIPS[model]).state_dict()
    for kwargs in ({}, {"init": "torch"}):
        torch.manual_seed(3)
        after = build_model(model=model, width=4, **kwargs).state_dict()
        assert list(after) == list(before) and all(torch.equal(after[k], before[k]) for k in before)
    assert any(bool((before[k] != 0).any()) for k in before if k.endswith("bias"))  # torch biases are not zero


def test_unknown_init_is_refused():
    with pytest.raises(ConfigError, match="model.init"):
        build_model(model=1, width=2, init="glorot")
    assert RunConfig().model.init == "torch"
    assert RunConfig().override(**{"model.init": "keras"}).model.init == "keras"


def test_train_passes_model_init(tmp_path, monkeypatch):
    import infoflow.train as training
    from infoflow.train import train

    seen = []
    real = training.build_model

    def spy(**kwargs):
        seen.append(kwargs.get("init"))
        return real(**kwargs)

    monkeypatch.setattr(training, "build_model", spy)
    cfg = RunConfig().override(**{"data.size": 16, "data.n_synthetic": 8, "model.width": 2, "model.init": "keras",
                                  "train.epochs": 1, "train.num_threads": 1, "train.n_predictions": 0})
    train(cfg, tmp_path / "run", progress=False, mi=False)
    assert seen == ["keras"]
