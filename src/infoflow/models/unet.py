"""The 23-layer U-Net of Lee & Bajic (2021), after Ronneberger et al. (2015), at S x S inputs.

Encoder: four levels of two 3x3 conv + ReLU (widths w, 2w, 4w, 8w), each followed by 2x2
max-pooling; a bottleneck of two 3x3 conv + ReLU at 16w; a decoder of four levels, each a 2x2
transposed conv (stride 2, no activation), a concatenation with the encoder level's output
(the skip, which may be switched off), and two 3x3 conv + ReLU; a 1x1 conv + sigmoid output.
Same padding everywhere. With ``width=16`` and all skips this is the paper's Model 1, with
exactly 1,941,105 parameters like the original Keras model.

The 23 probe layers are the layers with weights in forward order (methods.md section 2); each
probe module's output is the layer's activation *after* its own activation function, so hooks
on :func:`probe_modules` see what the paper analysed. Probe layers, skips and the claims' layer
groups are stated once, as :data:`UNET_LAYOUT` (:meth:`UNet.layout` for a model's own skips).

Initialisation: PyTorch's defaults, or with ``build_model(init="keras")`` the original's Keras
defaults (Glorot-uniform kernels, zero biases; methods.md section 3).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..config import INITS, skips_for_model  # the settings' choices live in infoflow.config
from ..errors import ConfigError
from ..network import NetworkLayout

#: The paper's U-Net as a :class:`~infoflow.network.NetworkLayout` (Model 1: every skip present), the
#: one statement of its 23 probe layers (forward order, index = position), its four skips
#: ``(source, merge)`` -- each a concatenation into the first conv after it --, and the layer
#: groups of the paper's claims (the layout rule gives the same). Models 2-4: :func:`unet_layout`.
UNET_LAYOUT = NetworkLayout(
    names=(
        "enc1.conv_a", "enc1.conv_b",  # 0, 1
        "enc2.conv_a", "enc2.conv_b",  # 2, 3
        "enc3.conv_a", "enc3.conv_b",  # 4, 5
        "enc4.conv_a", "enc4.conv_b",  # 6, 7
        "bottleneck.conv_a", "bottleneck.conv_b",  # 8, 9
        "up4", "dec4.conv_a", "dec4.conv_b",  # 10, 11 (merge), 12
        "up3", "dec3.conv_a", "dec3.conv_b",  # 13, 14 (merge), 15
        "up2", "dec2.conv_a", "dec2.conv_b",  # 16, 17 (merge), 18
        "up1", "dec1.conv_a", "dec1.conv_b",  # 19, 20 (merge), 21
        "out",  # 22 (sigmoid)
    ),
    skip_pairs=((1, 20), (3, 17), (5, 14), (7, 11)),  # top level first
    joins=("cat", "cat", "cat", "cat"),
    first_layers=(0, 1),
    bottom_layers=tuple(range(8, 15)),
    top_layers=(0, 1, 20, 21, 22),
    encoder_layers=tuple(range(0, 10)),
)

#: Views of :data:`UNET_LAYOUT`: probe-layer names; skips (1->20, 3->17, 5->14, 7->11); merge
#: layers (the first conv after each concatenation, 11, 14, 17, 20).
PROBE_LAYERS: tuple[str, ...] = UNET_LAYOUT.names
SKIP_PAIRS: tuple[tuple[int, int], ...] = UNET_LAYOUT.skip_pairs
MERGE_LAYERS: tuple[int, ...] = UNET_LAYOUT.merge_layers


def unet_layout(skips: Sequence[bool] = (True,) * 4) -> NetworkLayout:
    """The layout of infoflow's U-Net with skip mask ``skips`` (1->20, 3->17, 5->14, 7->11)."""
    if len(skips) != 4:
        raise ConfigError(f"skips must have 4 entries (1->20, 3->17, 5->14, 7->11), got {skips!r}")
    return UNET_LAYOUT.with_present(skips)


def layout_from_config(cfg: Mapping[str, Any]) -> NetworkLayout:
    """The layout of a run's network from its ``config.json``: the ``"network"`` entry (any network,
    :meth:`NetworkLayout.from_config`), else infoflow's U-Net with the skips of the ``"model"`` entry
    (``skips``, else the paper's Model ``model``, Model 1 when neither is set). What plots, the
    report and the claim checks read."""
    net = cfg.get("network")
    if isinstance(net, Mapping) and (net.get("probe_layers") is not None or net.get("skip_pairs") is not None):
        return NetworkLayout.from_config(net)
    model = cfg.get("model") or {}
    skips = model.get("skips")
    if skips is None:
        number = model.get("model") or 1
        try:
            number = int(number)
        except (TypeError, ValueError):
            raise ConfigError(f"model.model must be 1, 2, 3 or 4 (the paper's Models 1-4), got {number!r}") from None
        skips = skips_for_model(number)
    return unet_layout(tuple(bool(s) for s in skips))


class ConvReLU(nn.Sequential):
    """3x3 same-padded convolution followed by ReLU: one probe layer."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__(nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1), nn.ReLU(inplace=False))


class TwoConv(nn.Module):
    """Two ConvReLU layers (probe layers ``conv_a`` and ``conv_b``)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv_a = ConvReLU(in_ch, out_ch)
        self.conv_b = ConvReLU(out_ch, out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_b(self.conv_a(x))


class UpCat(nn.Module):
    """Decoder level: 2x2 transposed conv (no activation), concatenation with the skip, TwoConv.

    The transposed conv is not part of this module (it is its own probe layer, ``upK``); this
    module merges and convolves. ``skip`` may be None when the skip connection is removed:
    the merge conv then takes only the upsampled tensor.
    """

    def __init__(self, up_ch: int, skip_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv_a = ConvReLU(up_ch + skip_ch, out_ch)  # the merge layer
        self.conv_b = ConvReLU(out_ch, out_ch)

    def forward(self, up: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        x = up if skip is None else torch.cat([up, skip], dim=1)  # Keras order: [upsampled, skip]
        return self.conv_b(self.conv_a(x))


class UNet(nn.Module):
    """U-Net with switchable skip connections.

    Args:
        width: channels of the first level ``w`` (paper: 16).
        in_channels: input channels (3).
        skips: which skips are on, ordered (1->20, 3->17, 5->14, 7->11).

    ``forward`` returns the sigmoid probabilities, shape (B, 1, S, S); S must be divisible by 16.
    """

    def __init__(self, width: int = 16, in_channels: int = 3, skips: Sequence[bool] = (True,) * 4) -> None:
        super().__init__()
        if len(skips) != 4:
            raise ConfigError(f"skips must have 4 entries (1->20, 3->17, 5->14, 7->11), got {skips!r}")
        if width < 1:
            raise ConfigError(f"width must be a positive integer, got {width!r}")
        self.width = int(width)
        self.skips = tuple(bool(s) for s in skips)
        w = self.width
        s1, s2, s3, s4 = self.skips  # into dec1 (from enc1), dec2 (enc2), dec3 (enc3), dec4 (enc4)

        self.enc1 = TwoConv(in_channels, w)
        self.enc2 = TwoConv(w, 2 * w)
        self.enc3 = TwoConv(2 * w, 4 * w)
        self.enc4 = TwoConv(4 * w, 8 * w)
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = TwoConv(8 * w, 16 * w)

        self.up4 = nn.ConvTranspose2d(16 * w, 8 * w, kernel_size=2, stride=2)
        self.dec4 = UpCat(8 * w, 8 * w if s4 else 0, 8 * w)
        self.up3 = nn.ConvTranspose2d(8 * w, 4 * w, kernel_size=2, stride=2)
        self.dec3 = UpCat(4 * w, 4 * w if s3 else 0, 4 * w)
        self.up2 = nn.ConvTranspose2d(4 * w, 2 * w, kernel_size=2, stride=2)
        self.dec2 = UpCat(2 * w, 2 * w if s2 else 0, 2 * w)
        self.up1 = nn.ConvTranspose2d(2 * w, w, kernel_size=2, stride=2)
        self.dec1 = UpCat(w, w if s1 else 0, w)

        self.out = nn.Sequential(nn.Conv2d(w, 1, kernel_size=1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s1, s2, s3, s4 = self.skips
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        e3 = self.enc3(self.pool(e2))
        e4 = self.enc4(self.pool(e3))
        b = self.bottleneck(self.pool(e4))

        d4 = self.dec4(self.up4(b), e4 if s4 else None)
        d3 = self.dec3(self.up3(d4), e3 if s3 else None)
        d2 = self.dec2(self.up2(d3), e2 if s2 else None)
        d1 = self.dec1(self.up1(d2), e1 if s1 else None)
        return self.out(d1)

    # -- probing ----------------------------------------------------------------------------
    def probe_modules(self) -> list[tuple[str, nn.Module]]:
        """The 23 probe layers as (stable name, module), in forward order."""
        return [(name, self._module_for(name)) for name in PROBE_LAYERS]

    def _module_for(self, name: str) -> nn.Module:
        if name == "out" or name.startswith("up"):
            return getattr(self, name)
        block, conv = name.split(".")
        return getattr(getattr(self, block), conv)

    def layout(self) -> NetworkLayout:
        """This model's layout: the paper's U-Net (:data:`UNET_LAYOUT`) with this model's skips present."""
        return unet_layout(self.skips)

    @property
    def skip_pairs(self) -> tuple[tuple[int, int], ...]:
        """Skip connections present in this model, as (source layer, merge layer)."""
        return self.layout().present_pairs

    @property
    def merge_layers(self) -> tuple[int, ...]:
        """Merge layers that actually merge two streams in this model (forward order)."""
        return tuple(sorted(m for _, m in self.skip_pairs))


def keras_fans(module: nn.Conv2d | nn.ConvTranspose2d) -> tuple[int, int]:
    """(fan_in, fan_out) of a convolution's kernel as Keras computes them for Glorot.

    Keras stores a Conv2D kernel as (kh, kw, in, out) and a Conv2DTranspose kernel as
    (kh, kw, filters, in), i.e. (kh, kw, out, in); its ``_compute_fans`` takes
    fan_in = kh * kw * shape[-2] and fan_out = kh * kw * shape[-1]. So a Conv2D has
    fan_in = kh kw in, fan_out = kh kw out, and a Conv2DTranspose the reverse,
    fan_in = kh kw out, fan_out = kh kw in (Glorot only uses their sum).
    """
    receptive = math.prod(module.kernel_size)  # kh * kw
    if isinstance(module, nn.ConvTranspose2d):
        return receptive * module.out_channels, receptive * module.in_channels
    return receptive * module.in_channels, receptive * module.out_channels


def glorot_bound(fan_in: int, fan_out: int) -> float:
    """Half-width of Keras's ``glorot_uniform``: sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio 2010)."""
    return math.sqrt(6.0 / (fan_in + fan_out))


@torch.no_grad()
def keras_init_(module: nn.Module) -> nn.Module:
    """Keras's default initialisation, in place, on every Conv2d and ConvTranspose2d of ``module``.

    Kernels are drawn from U(-b, b), b = sqrt(6 / (fan_in + fan_out)) with Keras's fans
    (:func:`keras_fans`), biases set to zero (methods.md section 3). Draws come from torch's
    global generator, so the same ``torch.manual_seed`` gives the same weights. Returns ``module``.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            if m.groups != 1:
                raise ConfigError(f"keras init supports ungrouped convolutions only, got groups={m.groups}")
            bound = glorot_bound(*keras_fans(m))
            m.weight.uniform_(-bound, bound)
            if m.bias is not None:
                m.bias.zero_()
    return module


def build_model(*, model: int | None = 1, skips: Sequence[bool] | None = None, width: int = 16,
                in_channels: int = 3, init: str = "torch") -> UNet:
    """The paper's Model ``model`` (1-4), or an explicit skip mask, at base width ``width``.

    ``init``: "keras" (the original's Glorot-uniform kernels and zero biases, :func:`keras_init_`)
    or "torch" (PyTorch's defaults: kernels and biases from U(-1/sqrt(fan_in), 1/sqrt(fan_in))).
    Both draw from torch's global generator: seed it first for reproducible weights.
    """
    if init not in INITS:
        raise ConfigError(f"model.init must be 'keras' or 'torch', got {init!r}")
    mask = tuple(skips) if skips is not None else skips_for_model(model if model is not None else 1)
    net = UNet(width=width, in_channels=in_channels, skips=mask)
    return keras_init_(net) if init == "keras" else net


