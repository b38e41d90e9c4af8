"""Networks: the paper's U-Net (Models 1-4)."""

from ..config import MODEL_SKIPS, skips_for_model
from .unet import MERGE_LAYERS, PROBE_LAYERS, SKIP_PAIRS, UNET_LAYOUT, UNet, build_model, layout_from_config, unet_layout

__all__ = ["MERGE_LAYERS", "MODEL_SKIPS", "PROBE_LAYERS", "SKIP_PAIRS", "UNET_LAYOUT", "UNet", "build_model",
           "layout_from_config", "skips_for_model", "unet_layout"]
