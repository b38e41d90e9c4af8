"""Networks described: probe layers, merge points and the layout of any segmentation network.

* :mod:`.layout` -- :class:`NetworkLayout`, the one description of a network's layout (probe-layer
  names, skip connections of the full architecture, which of them the model has, their join kinds,
  the claims' layer groups), written to and read from ``config.json["network"]``.
* :mod:`.probe_layers` -- :func:`find_probe_layers` / :func:`describe_probe_layers`: every
  convolution in forward execution order, each after its own activation, plus the output;
  :func:`resolve_layers` for layers given by the user.
* :mod:`.merges` -- :func:`find_merges`: probe layers whose input joins streams of different
  earlier probe layers (``torch.fx`` graph or hooks), :func:`skip_pairs`, :func:`merge_layers`.
* :mod:`.describe` -- :func:`describe_network`: all of it for one network (a :class:`Network`
  with the modules to hook and its :class:`NetworkLayout`).
* :mod:`.forward` -- the example forward pass they run; :func:`model_device`.

infoflow's own U-Net states its layout itself (:meth:`infoflow.models.UNet.layout`); a run's
layout is read back by :func:`infoflow.models.unet.layout_from_config`. This package does not
import :mod:`infoflow.probe` (the probe imports it).
"""

from .describe import Network, count_parameters, describe_network, detected_layout
from .forward import infer_example_input, model_device
from .layout import GROUPS, JOIN_KINDS, NetworkLayout, is_nested, layer_groups
from .merges import DEFAULT_JOIN_OPS, JOIN_OPS, Merge, find_merges, merge_layers, skip_pairs
from .probe_layers import (
    CONV_TYPES,
    OUTPUT_NAME,
    LayerSpec,
    LayerWarning,
    ProbeLayer,
    describe_probe_layers,
    find_probe_layers,
    is_activation,
    resolve_layers,
)

__all__ = [
    "CONV_TYPES", "DEFAULT_JOIN_OPS", "GROUPS", "JOIN_KINDS", "JOIN_OPS", "LayerSpec", "LayerWarning", "Merge",
    "Network", "NetworkLayout", "count_parameters", "OUTPUT_NAME", "ProbeLayer", "describe_network", "describe_probe_layers",
    "detected_layout", "find_merges", "find_probe_layers", "infer_example_input", "is_activation", "is_nested",
    "layer_groups", "merge_layers", "model_device", "resolve_layers", "skip_pairs",
]
