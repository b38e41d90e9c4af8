"""Networks: the paper's U-Net (Models 1-4)."""

from .unet import (MERGE_LAYERS, MODEL_SKIPS, PROBE_LAYERS, SKIP_PAIRS, UNet, build_model, count_parameters,
                   skips_for_model)

__all__ = ["MERGE_LAYERS", "MODEL_SKIPS", "PROBE_LAYERS", "SKIP_PAIRS", "UNet", "build_model", "count_parameters",
           "skips_for_model"]
