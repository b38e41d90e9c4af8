"""``infoflow train`` and ``infoflow demo``.

Modules that import torch (train, tensorboard) are imported inside the commands: every command
module is imported by ``infoflow --help``, which must not wait for torch.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import typer

from ..config import RunConfig, apply_mi_preset
from ..errors import ConfigError
from . import app


#: The help of ``--kernel`` (train and estimate): the spec of :mod:`infoflow.estimators.widths`.
KERNEL_HELP = ("kernel(s) of KDE and Renyi, comma-separated: fixed:S2 (the paper's: fixed:0.2, text fixed:1.0), "
               "rel:F (F x the layer's median squared distance), silverman[:F]; e.g. fixed:0.2,rel:0.1 "
               "(docs/estimates.md)")


def parse_skips(text: str) -> tuple[bool, bool, bool, bool]:
    """'1,0,1,1' or '1011' -> skip mask (1->20, 3->17, 5->14, 7->11)."""
    bits = [c for c in text.replace(",", "").replace(" ", "")]
    if len(bits) != 4 or any(b not in "01" for b in bits):
        raise ConfigError(f"--skips takes four 0/1 flags for 1->20, 3->17, 5->14, 7->11 (e.g. 1,1,0,1), got {text!r}")
    return tuple(b == "1" for b in bits)  # type: ignore[return-value]


def parse_set(items: list[str]) -> dict[str, Any]:
    """--set section.field=value (value parsed as JSON when it can be)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set takes section.field=value, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def floats(text: str, option: str) -> tuple[float, ...]:
    """Comma-separated numbers (their range is checked where the setting is: infoflow.config)."""
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"{option} takes comma-separated numbers, got {text!r}") from None


def build_config(*, base: RunConfig | None = None, data: str | None = None, test_data: str | None = None,
                 model: int | None = None, skips: str | None = None, size: int | None = None,
                 width: int | None = None, optimizer: str | None = None, lr: float | None = None,
                 batch: int | None = None, epochs: int | None = None, schedule: str | None = None,
                 seed: int | None = None, device: str | None = None, mi: bool | None = None,
                 preset: str | None = None, kernel: str | None = None, bin_size: str | None = None,
                 probe: str | None = None, limit: int | None = None, name: str | None = None,
                 k: int | None = None, sets: list[str] | None = None) -> RunConfig:
    cfg = base or RunConfig()
    o: dict[str, Any] = {}
    pairs = [("data.source", data), ("data.test_source", test_data), ("data.size", size), ("data.limit", limit),
             ("model.width", width), ("train.optimizer", optimizer), ("train.lr", lr),
             ("train.batch_size", batch), ("train.epochs", epochs), ("train.schedule", schedule),
             ("train.seed", seed), ("train.device", device), ("mi.enabled", mi), ("mi.probe", probe),
             ("mi.kmeans_k", k), ("name", name)]
    for key, value in pairs:
        if value is not None:
            o[key] = value
    if model is not None:
        o["model.model"] = model
        o["model.skips"] = None
    if skips is not None:
        o["model.skips"] = parse_skips(skips)
    cfg = cfg.override(**o)
    if preset is not None:
        cfg.mi = apply_mi_preset(cfg.mi, preset)
    extra: dict[str, Any] = {}
    if kernel is not None:
        extra["mi.kernels"] = kernel  # checked where the setting is (infoflow.config -> estimators.widths)
    if bin_size is not None:
        extra["mi.bin_size"] = floats(bin_size, "--bin-size")
    extra.update(parse_set(sets or []))
    return cfg.override(**extra) if extra else cfg


@app.command("train")
def train_command(
    data: Optional[str] = typer.Option(None, "--data", help="'synthetic' (the default), a DSB 2018 folder or zip, or a folder holding stage1_train.zip and stage1_test.zip"),
    test_data: Optional[str] = typer.Option(None, "--test-data", help="test split folder/zip (default: stage1_test.zip beside, or a seeded split)"),
    model: Optional[int] = typer.Option(None, "--model", "-m", help="the paper's Model 1-4 (default 1)"),
    skips: Optional[str] = typer.Option(None, "--skips", help="skip mask for 1->20,3->17,5->14,7->11, e.g. 1,1,0,1"),
    size: Optional[int] = typer.Option(None, "--size", "-S", help="input size S (default 128)"),
    width: Optional[int] = typer.Option(None, "--width", "-w", help="base width w (default 16)"),
    optimizer: Optional[str] = typer.Option(None, "--optimizer", help="sgd (paper) or adam"),
    lr: Optional[float] = typer.Option(None, "--lr", help="learning rate (default 0.001)"),
    batch: Optional[int] = typer.Option(None, "--batch", help="batch size (default 16)"),
    epochs: Optional[int] = typer.Option(None, "--epochs", "-e", help="epochs (default 20)"),
    schedule: Optional[str] = typer.Option(None, "--schedule", help="logged epochs: code, log or all"),
    seed: Optional[int] = typer.Option(None, "--seed", help="seed (default 0)"),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu or cuda"),
    limit: Optional[int] = typer.Option(None, "--limit", help="use only the first N samples of each split"),
    mi: Optional[bool] = typer.Option(None, "--mi/--no-mi", help="estimate MI at logged epochs (default on)"),
    preset: Optional[str] = typer.Option(None, "--preset", help="MI settings: 'code' (kernel fixed:0.2, bin 0.1) or 'paper' (fixed:1.0, bin 0.2)"),
    kernel: Optional[str] = typer.Option(None, "--kernel", help=KERNEL_HELP),
    bin_size: Optional[str] = typer.Option(None, "--bin-size", help="binning bin size(s), comma-separated"),
    probe: Optional[str] = typer.Option(None, "--probe", help="probe set: train, test or all"),
    k: Optional[int] = typer.Option(None, "--k", help="K of the K-means output classes (mi.kmeans_k, default 64); "
                                    "at most the probe set size, best a quarter of it or less"),
    config: Optional[Path] = typer.Option(None, "--config", help="a config.json to start from"),
    sets: list[str] = typer.Option([], "--set", help="any setting, e.g. --set train.momentum=0.9"),
    tensorboard: bool = typer.Option(False, "--tensorboard", help="also log to TensorBoard in RUN/tensorboard"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="run directory (default runs/<name>)"),
    resume: Optional[Path] = typer.Option(None, "--resume", help="resume the run in this directory from its last checkpoint"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
) -> None:
    """Train a U-Net and record MI of every layer at logged epochs into a run directory.

    Settings come from the defaults, then --config, then the options given (an option not
    given never overrides the config file)."""
    from ..train import train

    if resume is not None:
        given = {"--data": data, "--test-data": test_data, "--model": model, "--skips": skips, "--size": size,
                 "--width": width, "--optimizer": optimizer, "--lr": lr, "--batch": batch, "--schedule": schedule,
                 "--seed": seed, "--device": device, "--limit": limit, "--mi/--no-mi": mi, "--preset": preset,
                 "--kernel": kernel, "--bin-size": bin_size, "--probe": probe, "--k": k, "--config": config,
                 "--set": sets or None, "--out": out}
        refused = [k for k, v in given.items() if v is not None]
        if refused:
            raise ConfigError(f"--resume continues {resume} with its own settings; {', '.join(refused)} would "
                              "change them (only --epochs may be given, to extend the run)")
        with _tb(tensorboard, resume, since=_last_epoch(resume)) as extra:
            run = train(None, resume, resume=True, epochs=epochs, progress=not quiet, **extra)
        typer.echo(f"run finished: {run.path}")
        return
    base = None
    if config is not None:
        try:
            doc = json.loads(Path(config).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"--config {config}: {exc}") from None
        doc.pop("_meta", None)
        base = RunConfig.from_dict(doc)
    cfg = build_config(base=base, data=data, test_data=test_data, model=model, skips=skips, size=size, width=width,
                       optimizer=optimizer, lr=lr, batch=batch, epochs=epochs, schedule=schedule, seed=seed,
                       device=device, mi=mi, preset=preset, kernel=kernel, bin_size=bin_size, probe=probe,
                       limit=limit, k=k, sets=sets)
    out = out or Path("runs") / cfg.name
    with _tb(tensorboard, out) as extra:
        run = train(cfg, out, progress=not quiet, **extra)
    typer.echo(f"run written to {run.path}")


def _last_epoch(run: Path) -> int:
    """The last epoch a run's metrics.csv holds (0 when none): what its TensorBoard events have."""
    from ..runs import RunDir

    metrics = RunDir.open(run).read_metrics()
    return int(metrics["epoch"].max()) if not metrics.empty else 0


@contextlib.contextmanager
def _tb(enabled: bool, out: Path, *, since: int = 0) -> Iterator[dict[str, Any]]:
    """Extra train() arguments for --tensorboard: a logger of run ``out`` (closed afterwards);
    ``since``: the epoch whose Dice and loss the events already hold (a resumed run)."""
    if not enabled:
        yield {}
        return
    from ..tensorboard import TensorBoardLogger

    logger = TensorBoardLogger(out, since=since)
    try:
        yield {"callbacks": [logger.callback]}
    finally:
        logger.close()
    typer.echo(f"TensorBoard events in {logger.log_dir} (tensorboard --logdir {logger.log_dir})")


#: The demo: synthetic nuclei, a small U-Net, a minute on two CPU cores.
DEMO_OVERRIDES: dict[str, Any] = {
    "name": "demo",
    "data.source": "synthetic", "data.size": 64, "data.n_synthetic": 160,
    "model.width": 8, "train.optimizer": "adam", "train.lr": 1e-3, "train.batch_size": 8, "train.epochs": 30,
    "train.schedule": "log", "train.log_points": 12, "mi.labels": ("kmeans", "coarse"), "mi.kmeans_k": 16,
}


@app.command("demo")
def demo_command(
    out: Path = typer.Option(Path("demo-run"), "--out", "-o", help="run directory"),
    epochs: Optional[int] = typer.Option(None, "--epochs", "-e", help="epochs (default 30)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
) -> None:
    """Train Model 1 on synthetic nuclei (S=64, w=8, Adam) with MI at logged epochs; then figures and report."""
    from ..train import train

    cfg = RunConfig().override(**DEMO_OVERRIDES)
    if epochs is not None:
        cfg = cfg.override(**{"train.epochs": epochs})
    if out.exists() and (out / "config.json").exists():
        shutil.rmtree(out)
    run = train(cfg, out, progress=not quiet)
    metrics = run.read_metrics()
    last = metrics.iloc[-1]
    typer.echo(f"demo run written to {run.path}: {int(last['epoch'])} epochs, "
               f"validation Dice {last['dice_val']:.3f}")
    try:
        from .plot_cmd import finish_run
    except ModuleNotFoundError:
        return
    finish_run(run)
