"""The U-Net of methods.md section 2: parameter counts, probe layers, merges, skips."""

import pytest
import torch

from infoflow.errors import ConfigError
from infoflow.models import MERGE_LAYERS, PROBE_LAYERS, SKIP_PAIRS, UNet, build_model
from infoflow.network import count_parameters

# Parameter counts at w = 16. Model 1 equals the original Keras model; removing a skip removes
# the skip's input channels from that merge conv: 3*3*c_skip*c_out weights.
PARAMS = [
    (1, 1_941_105),
    (2, 1_941_105 - 9 * 16 * 16),
    (3, 1_941_105 - 9 * 16 * 16 - 9 * 32 * 32),
    (4, 1_941_105 - 9 * 16 * 16 - 9 * 32 * 32 - 9 * 64 * 64),
]


@pytest.mark.parametrize("model, expected", PARAMS)
def test_parameter_counts(model, expected):
    assert count_parameters(build_model(model=model, width=16)) == expected


def test_probe_layer_list_matches_methods_table():
    assert len(PROBE_LAYERS) == 23
    assert PROBE_LAYERS[0] == "enc1.conv_a" and PROBE_LAYERS[22] == "out"
    assert [PROBE_LAYERS[i] for i in MERGE_LAYERS] == ["dec4.conv_a", "dec3.conv_a", "dec2.conv_a", "dec1.conv_a"]
    assert [PROBE_LAYERS[i] for i in (10, 13, 16, 19)] == ["up4", "up3", "up2", "up1"]
    assert SKIP_PAIRS == ((1, 20), (3, 17), (5, 14), (7, 11))
    assert MERGE_LAYERS == (11, 14, 17, 20)


def _activations(net, x):
    acts = []
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: acts.append((n, o))) for n, m in net.probe_modules()]
    try:
        y = net(x)
    finally:
        for h in hooks:
            h.remove()
    return acts, y


def test_probe_modules_fire_in_forward_order_with_paper_shapes():
    net = build_model(model=1, width=16)
    acts, y = _activations(net, torch.rand(1, 3, 128, 128))
    assert [n for n, _ in acts] == list(PROBE_LAYERS)
    assert sum(o[0].numel() for _, o in acts) == 2_506_752  # values per image at paper scale
    assert acts[0][1].shape == (1, 16, 128, 128) and acts[9][1].shape == (1, 256, 8, 8)
    assert acts[22][1].shape == y.shape == (1, 1, 128, 128)


def test_activations_are_after_their_activation_function():
    net = build_model(model=1, width=4)
    acts, y = _activations(net, torch.randn(2, 3, 32, 32))
    for i, (name, o) in enumerate(acts):
        if name.startswith("up"):
            assert (o < 0).any(), f"{name}: transposed conv has no activation, should have negatives"
        elif name == "out":
            assert ((o > 0) & (o < 1)).all()
        else:
            assert (o >= 0).all(), f"layer {i} {name} is not after its ReLU"


@pytest.mark.parametrize("model, pairs", [(1, ((1, 20), (3, 17), (5, 14), (7, 11))), (2, ((3, 17), (5, 14), (7, 11))),
                                          (3, ((5, 14), (7, 11))), (4, ((7, 11),))])
def test_models_skip_pairs_and_merge_inputs(model, pairs):
    net = build_model(model=model, width=16)
    assert net.skip_pairs == pairs
    in_ch = {11: net.dec4.conv_a[0].in_channels, 14: net.dec3.conv_a[0].in_channels,
             17: net.dec2.conv_a[0].in_channels, 20: net.dec1.conv_a[0].in_channels}
    up_ch = {11: 128, 14: 64, 17: 32, 20: 16}
    for m in MERGE_LAYERS:
        merged = any(dst == m for _, dst in pairs)
        assert in_ch[m] == up_ch[m] * (2 if merged else 1)


def test_removed_skip_really_cuts_the_stream():
    """Model 4 output must not depend on enc1's output except through the bottom path."""
    torch.manual_seed(0)
    net = build_model(model=4, width=4)
    x = torch.rand(1, 3, 32, 32)
    acts, _ = _activations(net, x)
    # dec1.conv_a sees only up1's output: its input channel count equals up1's channels
    assert net.dec1.conv_a[0].in_channels == net.up1.out_channels


def test_explicit_skip_mask_and_bad_values():
    net = UNet(width=4, skips=(True, False, True, False))
    assert net.skip_pairs == ((1, 20), (5, 14))
    with pytest.raises(ConfigError, match="1-4|1, 2, 3 or 4"):
        build_model(model=5)
    with pytest.raises(ConfigError, match="4 entries"):
        UNet(width=4, skips=(True, True))
