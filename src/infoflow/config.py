"""Typed configuration of a run.

Every field has a comment saying what it is and where its default comes from. The resolved
config of a run is written into the run directory as ``config.json`` (see :mod:`infoflow.runs`)
and read back with :func:`RunConfig.from_dict`, so a run can be resumed or re-estimated from it.

Defaults follow the *code* of Lee & Bajic (2021) where the paper's text and its code disagree
(methods.md); the paper text's values are available as named presets (:data:`MI_PRESETS`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError, InfoflowError
from .estimators.widths import DEFAULT_KERNELS, kernels_from_legacy, parse_kernels

#: The choices of the settings that take a name (checked in :func:`_check_ranges`).
MASK_RULES = ("code", "linear")
INITS = ("keras", "torch")
OPTIMIZERS = ("sgd", "adam")
AUTOCASTS = ("none", "bf16", "tf32")  # train.autocast (infoflow.speed.step_precision)
SCHEDULES = ("code", "log", "all", "custom")  # custom: a list of epochs given to the Tracker API
PROBE_SETS = ("train", "test", "all")
LABELINGS = ("kmeans", "coarse")
ESTIMATOR_NAMES = ("kde", "kde_upper", "kde_lower", "bin", "renyi")
#: The choices of model.model: skip masks of the paper's Models 1-4 (1->20, 3->17, 5->14, 7->11,
#: the order of :data:`infoflow.models.unet.SKIP_PAIRS`).
MODEL_SKIPS: dict[int, tuple[bool, bool, bool, bool]] = {
    1: (True, True, True, True),
    2: (False, True, True, True),
    3: (False, False, True, True),
    4: (False, False, False, True),
}


def skips_for_model(number: int) -> tuple[bool, bool, bool, bool]:
    """Skip mask of the paper's Model ``number`` (1-4)."""
    if number not in MODEL_SKIPS:
        raise ConfigError(f"model number must be 1, 2, 3 or 4 (the paper's Models 1-4), got {number!r}")
    return MODEL_SKIPS[number]


@dataclass
class DataConfig:
    source: str = "synthetic"  # "synthetic", a DSB 2018 stage-1 folder, or a zip (stage1_train.zip)
    test_source: str | None = None  # second folder/zip for the test split (stage1_test.zip); None: split `source`
    size: int = 128  # S: images and masks are resized to S x S (paper: 128)
    mask_rule: str = "code"  # "code": skimage anti-aliased resize, > 0 is foreground (the paper's code); "linear": bilinear, > 0.5
    mask_size: int | None = None  # make masks (training and graded) at this size, then bring them to S over blocks; None: at S. 128 keeps the paper-scale foreground fraction at S < 128
    val_fraction: float = 0.1  # fraction held out when `test_source` is None (seeded split)
    split_seed: int = 0  # seed of that split
    limit: int | None = None  # keep only the first `limit` samples of each split (sorted ids); None: all
    n_synthetic: int = 160  # synthetic images generated when source == "synthetic" (train + test)
    synthetic_seed: int = 0  # seed of the synthetic generator
    cache_dir: str | None = None  # preprocessing cache; None: $INFOFLOW_CACHE or ~/.cache/infoflow
    max_pixels: int = 40_000_000  # refuse images above this many pixels (decompression bombs)

    def __post_init__(self) -> None:
        _validate(self, "data.")


@dataclass
class ModelConfig:
    model: int | None = 1  # paper's Model 1-4 (1: all skips; 2: no 1->20; 3: no 1->20, 3->17; 4: also no 5->14)
    skips: tuple[bool, bool, bool, bool] | None = None  # explicit skip mask (1->20, 3->17, 5->14, 7->11); overrides `model`
    width: int = 16  # w: channels of the first level (paper: 16, giving 1,941,105 parameters)
    in_channels: int = 3  # RGB input (grey images are repeated to 3 channels)
    init: str = "torch"  # initialisation: "keras" (the original's: Glorot-uniform kernels, zero biases) or "torch" (PyTorch's defaults)

    def skip_mask(self) -> tuple[bool, bool, bool, bool]:
        if self.skips is not None:
            if len(self.skips) != 4:
                raise ConfigError(f"model.skips must have 4 entries (1->20, 3->17, 5->14, 7->11), got {self.skips!r}")
            return tuple(bool(s) for s in self.skips)  # type: ignore[return-value]
        if self.model is None:
            raise ConfigError("set model.model (1-4) or model.skips")
        return skips_for_model(self.model)

    def __post_init__(self) -> None:
        _validate(self, "model.")


@dataclass
class TrainConfig:
    epochs: int = 20  # epochs to train (paper: 10,000, a GPU job)
    optimizer: str = "sgd"  # "sgd" (paper) or "adam"
    lr: float = 1e-3  # learning rate (paper: 0.001)
    momentum: float = 0.0  # SGD momentum (paper: none)
    batch_size: int = 16  # mini-batch size (paper: 16)
    schedule: str = "code"  # logged epochs: "code" (the paper code's), "log" (log-spaced), "all" (every epoch)
    log_points: int = 30  # number of logged epochs for schedule "log"
    seed: int = 0  # seed of initialisation and shuffling
    device: str = "auto"  # "auto" (CUDA when present), "cpu" or "cuda"
    channels_last: bool = True  # NHWC memory format: 20-25% faster on CPU
    checkpoint_every: int = 1  # write a checkpoint every k epochs (and at logged epochs and the end)
    num_threads: int | str | None = None  # torch intra-op threads: an integer, "auto" (the cores other processes leave free now, re-checked every 10 s; infoflow.speed) or None (torch's default)
    autocast: str = "none"  # precision of the training step's forward: "none" (float32), "bf16" (bfloat16 autocast, CPU or CUDA) or "tf32" (CUDA's float32 products in TF32; nothing on a CPU); MI is always from float32 activations
    n_predictions: int = 4  # fixed validation images whose predicted masks are stored at logged epochs

    def __post_init__(self) -> None:
        _validate(self, "train.")


@dataclass
class MIConfig:
    enabled: bool = True  # estimate MI at logged epochs
    probe: str = "train"  # probe set run through the network and stored: "train" (605 images), "test", or "all" (670, as the original saved)
    subset: str | None = None  # probe samples the online estimates use: None (all of `probe`), "train" or "test" (the K-means analysis of the original: probe "all", subset "train"); any subset later with `infoflow estimate --probe-subset`
    probe_limit: int | None = None  # use only the first n probe samples; None: all
    y_from: str = "code"  # masks the output classes Y are made from: "code" (graded masks, as the paper's MI notebooks; binary masks where the data has no graded ones) or "binary" (the training masks)
    kernels: tuple[str, ...] = DEFAULT_KERNELS  # kernels of KDE and Renyi, in the spec of infoflow.estimators.widths: "fixed:S2" (the paper's: code fixed:0.2, text fixed:1.0), "rel:F" (F x the layer's median squared distance), "silverman[:F]" (docs/estimates.md)
    bin_size: tuple[float, ...] = (0.1,)  # binning bin size(s) (code: 0.1; paper text: 0.2)
    labels: tuple[str, ...] = ("kmeans", "coarse")  # output classes Y: "kmeans" and/or "coarse"
    kmeans_k: int = 64  # K of K-means (paper: 64)
    kmeans_seed: int = 0  # K-means seed
    coarse_grid: int = 4  # coarsening grid: grid x grid blocks (paper: 4, i.e. 32 x 32 blocks at S = 128)
    coarse_threshold: float | None = None  # pixels per block above which a block is 1; None: block area / 16 (64 at S=128)
    renyi_alpha: float = 1.01  # alpha of the matrix-based Renyi estimator
    estimators: tuple[str, ...] = ("kde", "bin", "renyi")  # which estimators to run online
    permutations: int = 20  # label permutations of the I(Y;M) baseline column (0: none)
    memory_budget_gb: float | str = "auto"  # GiB of activations held at once while building distance matrices, or "auto": half the free memory of a CUDA device (read at each logged epoch; paper scale, N = 605, needs 5.65 GiB for one pass), 4 GiB elsewhere (one full pass plus a short one up to enc2 at paper scale)
    batch_size: int = 32  # probe forward batch size
    retain_memory: bool = True  # keep freed memory in the process from the first logged epoch until the tracker closes (glibc): later logged epochs reuse it without page faults, and the process stays near the probe's peak memory meanwhile
    store_matrices: bool = True  # keep distance matrices in the run (needed by `infoflow estimate`)

    def __post_init__(self) -> None:
        _validate(self, "mi.")


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    mi: MIConfig = field(default_factory=MIConfig)
    name: str = "run"  # human-readable name, shown in figures and the report
    network: dict[str, Any] | None = None  # probe layers and skip pairs of a network other than infoflow's U-Net

    # -- (de)serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        return _from_dict(cls, d, "")

    def override(self, **dotted: Any) -> "RunConfig":
        """Return a copy with dotted overrides applied, e.g. ``override(**{"train.lr": 0.01})``."""
        d = self.to_dict()
        for key, value in dotted.items():
            parts = key.split(".")
            node = d
            for p in parts[:-1]:
                if p not in node or not isinstance(node[p], dict):
                    raise ConfigError(f"unknown setting {key!r}")
                node = node[p]
            if parts[-1] not in node:
                raise ConfigError(f"unknown setting {key!r}")
            if isinstance(node[parts[-1]], dict) and not isinstance(value, dict):
                raise ConfigError(f"setting {key!r} is a section: set one of its fields, e.g. {key}.<field>=...")
            node[parts[-1]] = value
        return RunConfig.from_dict(d)


def _from_dict(cls: type, d: dict[str, Any], prefix: str) -> Any:
    if not isinstance(d, dict):
        raise ConfigError(f"setting {prefix.rstrip('.') or 'config'} must be a mapping, got {d!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(d) - set(fields)
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(prefix + u for u in sorted(unknown))}")
    kwargs: dict[str, Any] = {}
    for name in fields:
        if name not in d:
            continue
        sub = _SECTIONS.get(name) if cls is RunConfig else None
        if sub is not None:
            kwargs[name] = _from_dict(sub, _upgrade_mi(d[name]) if name == "mi" else d[name], prefix + name + ".")
        else:
            kwargs[name] = d[name]
    return cls(**kwargs)


def _upgrade_mi(d: Any) -> Any:
    """The ``mi`` section of a ``config.json`` written before ``mi.kernels``: its ``noise_var``
    and ``widths`` become ``kernels`` (:func:`~infoflow.estimators.widths.kernels_from_legacy`)."""
    if not isinstance(d, dict) or not ({"noise_var", "widths"} & set(d)):
        return d
    if "kernels" in d:
        raise ConfigError("setting mi.kernels replaces mi.noise_var and mi.widths: give only mi.kernels")
    out = dict(d)
    noise_var, widths = out.pop("noise_var", (0.2,)), out.pop("widths", ("fixed",))
    try:
        out["kernels"] = kernels_from_legacy(noise_var if isinstance(noise_var, (list, tuple)) else [noise_var],
                                             widths)
    except (InfoflowError, TypeError, ValueError) as exc:
        raise ConfigError(f"settings mi.noise_var {noise_var!r} / mi.widths {widths!r}: {exc}") from None
    return out


# -- types and ranges: the one place every setting is checked -----------------------------------


def _validate(section: Any, prefix: str) -> None:
    """Every field of a section to its annotated type (in place), then its range; a ConfigError
    names the setting (``train.epochs``). Runs whenever a section is made, from Python or JSON."""
    hints = typing.get_type_hints(type(section))
    for f in dataclasses.fields(section):
        object.__setattr__(section, f.name, _typed(getattr(section, f.name), hints[f.name], prefix + f.name))
    _check_ranges(section, prefix)


def _typed(value: Any, hint: Any, key: str) -> Any:
    """``value`` as the field's annotated type, or ConfigError naming ``key`` (a JSON-like value:
    lists become tuples; a single value or a comma-separated string stands for a one-item tuple)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for a in options:
            try:
                return _typed(value, a, key)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[-1]
    if origin is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        elif not isinstance(value, (list, tuple)):
            value = [value]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_typed(v, args[0], key) for v in value)
        if len(value) != len(args):
            raise ConfigError(f"setting {key} takes {len(args)} values, got {len(value)}: {value!r}")
        return tuple(_typed(v, a, key) for v, a in zip(value, args))
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"setting {key} must be a mapping, got {value!r}")
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"setting {key} must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"setting {key} must be an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"setting {key} must be a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"setting {key} must be a string, got {value!r}")
    if hint is Any:
        return value
    raise ConfigError(f"setting {key}: unsupported type {hint!r}")  # pragma: no cover - a field without a rule


def _fail(key: str, rule: str, value: Any) -> None:
    raise ConfigError(f"setting {key} must be {rule}, got {value!r}")


def _at_least(key: str, value: Any, low: float, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if value is None or not math.isfinite(float(value)) or value < low:
        _fail(key, f"at least {low:g}" + (" (or null)" if optional else ""), value)


def _positive(key: str, value: Any) -> None:
    if value is None or not math.isfinite(float(value)) or value <= 0:
        _fail(key, "a positive finite number", value)


def _one_of(key: str, value: Any, choices: tuple[Any, ...], *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if value not in choices:
        _fail(key, "one of " + ", ".join(map(str, choices)) + (" (or null)" if optional else ""), value)


def _check_ranges(section: Any, prefix: str) -> None:
    """The range of every field of one section (types are checked by :func:`_typed`)."""
    k = lambda name: prefix + name  # noqa: E731
    if isinstance(section, DataConfig):
        _at_least(k("size"), section.size, 8)
        _one_of(k("mask_rule"), section.mask_rule, MASK_RULES)
        _at_least(k("mask_size"), section.mask_size, section.size, optional=True)
        if not 0.0 < section.val_fraction < 1.0:
            _fail(k("val_fraction"), "between 0 and 1 (exclusive)", section.val_fraction)
        _at_least(k("limit"), section.limit, 1, optional=True)
        _at_least(k("n_synthetic"), section.n_synthetic, 2)
        _at_least(k("max_pixels"), section.max_pixels, 1)
    elif isinstance(section, ModelConfig):
        _one_of(k("model"), section.model, (1, 2, 3, 4), optional=True)
        _at_least(k("width"), section.width, 1)
        _at_least(k("in_channels"), section.in_channels, 1)
        _one_of(k("init"), section.init, INITS)
    elif isinstance(section, TrainConfig):
        _at_least(k("epochs"), section.epochs, 1)
        _one_of(k("optimizer"), section.optimizer, OPTIMIZERS)
        _positive(k("lr"), section.lr)
        _at_least(k("momentum"), section.momentum, 0)
        _at_least(k("batch_size"), section.batch_size, 1)
        _one_of(k("schedule"), section.schedule, SCHEDULES)
        _at_least(k("log_points"), section.log_points, 2)
        if section.device not in ("auto", "cpu", "cuda") and not re.fullmatch(r"cuda:\d+", section.device):
            _fail(k("device"), "auto, cpu, cuda or cuda:N", section.device)
        _at_least(k("checkpoint_every"), section.checkpoint_every, 1)
        if isinstance(section.num_threads, str) and section.num_threads != "auto":
            _fail(k("num_threads"), "an integer >= 1, auto or null", section.num_threads)
        if not isinstance(section.num_threads, str):
            _at_least(k("num_threads"), section.num_threads, 1, optional=True)
        _one_of(k("autocast"), section.autocast, AUTOCASTS)
        _at_least(k("n_predictions"), section.n_predictions, 0)
    elif isinstance(section, MIConfig):
        _one_of(k("probe"), section.probe, PROBE_SETS)
        _one_of(k("subset"), section.subset, PROBE_SETS, optional=True)
        _at_least(k("probe_limit"), section.probe_limit, 2, optional=True)
        _one_of(k("y_from"), section.y_from, ("code", "binary"))
        if not section.bin_size:
            _fail(k("bin_size"), "one or more positive numbers", section.bin_size)
        for v in section.bin_size:
            _positive(k("bin_size"), v)
        try:  # one spec per kernel, written as the table's setting will be ("silverman" -> "silverman:1.0")
            section.kernels = tuple(kern.spec() for kern in parse_kernels(section.kernels))
        except InfoflowError as exc:
            raise ConfigError(f"setting {k('kernels')}: {exc}") from None
        if not section.labels:
            _fail(k("labels"), "one or more of " + ", ".join(LABELINGS), section.labels)
        for v in section.labels:
            _one_of(k("labels"), v, LABELINGS)
        _at_least(k("kmeans_k"), section.kmeans_k, 1)
        if not 1 <= section.coarse_grid <= 7:
            _fail(k("coarse_grid"), "an integer from 1 to 7 (at most 49 blocks per class code)", section.coarse_grid)
        _at_least(k("coarse_threshold"), section.coarse_threshold, 0, optional=True)
        _positive(k("renyi_alpha"), section.renyi_alpha)
        if section.renyi_alpha == 1.0:
            _fail(k("renyi_alpha"), "positive and not 1 (Renyi's entropy of order 1 is Shannon's)", 1.0)
        if not section.estimators:
            _fail(k("estimators"), "one or more of " + ", ".join(ESTIMATOR_NAMES), section.estimators)
        for v in section.estimators:
            _one_of(k("estimators"), v, ESTIMATOR_NAMES)
        _at_least(k("permutations"), section.permutations, 0)
        if isinstance(section.memory_budget_gb, str) and section.memory_budget_gb != "auto":
            _fail(k("memory_budget_gb"), "a positive number of GiB or auto", section.memory_budget_gb)
        if not isinstance(section.memory_budget_gb, str):
            _positive(k("memory_budget_gb"), section.memory_budget_gb)
        _at_least(k("batch_size"), section.batch_size, 1)


_SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "mi": MIConfig}

# Named settings of the estimators: the paper's code (default) and the paper's text.
MI_PRESETS: dict[str, dict[str, Any]] = {
    "code": {"kernels": ("fixed:0.2",), "bin_size": (0.1,), "probe": "train", "kmeans_k": 64},
    "paper": {"kernels": ("fixed:1.0",), "bin_size": (0.2,), "probe": "train", "kmeans_k": 64},
}


def apply_mi_preset(mi: MIConfig, name: str) -> MIConfig:
    if name not in MI_PRESETS:
        raise ConfigError(f"unknown MI preset {name!r}; choose one of {', '.join(MI_PRESETS)}")
    return dataclasses.replace(mi, **MI_PRESETS[name])
