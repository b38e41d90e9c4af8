"""``infoflow estimate RUN``: estimates redone from the stored distance matrices."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from ..config import RunConfig, apply_mi_preset
from ..errors import ConfigError
from ..runs import RunDir
from . import app
from .train_cmd import floats


@app.command("estimate")
def estimate_command(
    run_dir: Path = typer.Argument(..., help="a run directory written by `infoflow train`"),
    noise_var: Optional[str] = typer.Option(None, "--noise-var", help="KDE noise variance(s), comma-separated: a sweep is one call"),
    labels: Optional[str] = typer.Option(None, "--labels", help="output classes: kmeans, coarse, or both (kmeans,coarse)"),
    k: Optional[int] = typer.Option(None, "--k", help="K of K-means"),
    kmeans_seed: Optional[int] = typer.Option(None, "--kmeans-seed", help="K-means seed"),
    grid: Optional[int] = typer.Option(None, "--grid", help="coarsening grid (blocks per side)"),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="coarsening threshold (pixels per block)"),
    alpha: Optional[float] = typer.Option(None, "--alpha", help="alpha of the matrix-based Renyi estimator"),
    estimators: Optional[str] = typer.Option(None, "--estimators", help="comma-separated: kde, bin, renyi"),
    preset: Optional[str] = typer.Option(None, "--preset", help="'code' (s2 0.2) or 'paper' (s2 1.0)"),
    epochs: Optional[str] = typer.Option(None, "--epochs", help="comma-separated logged epochs (default: all stored)"),
    probe_subset: Optional[int] = typer.Option(None, "--probe-subset", help="use a seeded random subset of this many probe samples"),
    subset_seed: int = typer.Option(0, "--subset-seed", help="seed of --probe-subset"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="CSV to write (default RUN/estimates/mi-<settings>.csv)"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Recompute MI from a run's stored distance matrices with any settings, without the network."""
    import time

    from ..runs import atomic_path
    from ..tracker import reestimate

    run = RunDir.open(run_dir)
    cfg = RunConfig.from_dict(run.read_config())
    mi = cfg.mi if preset is None else apply_mi_preset(cfg.mi, preset)
    changes: dict = {}
    if noise_var is not None:
        changes["noise_var"] = floats(noise_var, "--noise-var")
    if labels is not None:
        changes["labels"] = tuple(x.strip() for x in labels.split(",") if x.strip())
    for key, value in (("kmeans_k", k), ("kmeans_seed", kmeans_seed), ("coarse_grid", grid),
                       ("coarse_threshold", threshold), ("renyi_alpha", alpha)):
        if value is not None:
            changes[key] = value
    if estimators is not None:
        est = tuple(x.strip() for x in estimators.split(",") if x.strip())
        bad = set(est) - {"kde", "bin", "renyi"}
        if bad:
            raise ConfigError(f"--estimators takes kde, bin, renyi; got {', '.join(sorted(bad))}")
        changes["estimators"] = est
    mi = dataclasses.replace(mi, **changes)
    epoch_list = None
    if epochs is not None:
        try:
            epoch_list = [int(e) for e in epochs.split(",") if e.strip()]
        except ValueError:
            raise ConfigError(f"--epochs takes comma-separated integers, got {epochs!r}") from None
    subset = None
    if probe_subset is not None:
        n = len(run.load_probe()["ids"])
        if not 2 <= probe_subset <= n:
            raise ConfigError(f"--probe-subset must be between 2 and the probe set size {n}, got {probe_subset}")
        subset = np.sort(np.random.default_rng(subset_seed).choice(n, size=probe_subset, replace=False))
    t0 = time.perf_counter()
    table = reestimate(run, mi, epochs=epoch_list, subset=subset, progress=not quiet)
    seconds = time.perf_counter() - t0
    if out is None:
        tag = "_".join([f"s2-{'-'.join(f'{v:g}' for v in mi.noise_var)}", "-".join(mi.labels), f"k{mi.kmeans_k}"]
                       + ([f"sub{probe_subset}"] if subset is not None else []))
        out = run.path / "estimates" / f"mi-{tag}.csv"
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False)
    n_ceiling = int((table["at_ceiling"] & (table["quantity"] == "I_XM")).sum())
    n_ixm = int((table["quantity"] == "I_XM").sum())
    typer.echo(f"{len(table)} estimates for {table['epoch'].nunique()} epochs in {seconds:.1f} s -> {out}")
    if n_ceiling:
        typer.secho(f"warning: {n_ceiling} of {n_ixm} I(X;M) estimates sit at their ceiling log2 N: "
                    "they measure the activations' scale against the kernel width, not the network",
                    fg=typer.colors.YELLOW, err=True)
    run.log(f"estimate: wrote {out} ({len(table)} rows, noise_var {mi.noise_var}, labels {mi.labels})")
