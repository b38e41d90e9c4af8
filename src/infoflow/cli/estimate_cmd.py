"""``infoflow estimate RUN``: estimates redone from the stored distance matrices.

Modules that import torch (tracking, analysis, experiments) are imported inside the functions that
use them: every command module is imported by ``infoflow --help``, which must not wait for torch.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import typer

from ..config import apply_mi_preset
from ..errors import ConfigError
from ..estimators.widths import resolved_kernels
from ..runs import RunDir, sibling_path
from . import app
from .train_cmd import KERNEL_HELP, floats


@app.command("estimate")
def estimate_command(
    run_dir: Path = typer.Argument(..., help="a run directory written by `infoflow train`"),
    kernel: Optional[str] = typer.Option(None, "--kernel", help=KERNEL_HELP + "; a sweep is one call"),
    labels: Optional[str] = typer.Option(None, "--labels", help="output classes: kmeans, coarse, or both (kmeans,coarse)"),
    k: Optional[int] = typer.Option(None, "--k", help="K of K-means"),
    kmeans_seed: Optional[int] = typer.Option(None, "--kmeans-seed", help="K-means seed"),
    grid: Optional[int] = typer.Option(None, "--grid", help="coarsening grid (blocks per side)"),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="coarsening threshold (pixels per block)"),
    alpha: Optional[float] = typer.Option(None, "--alpha", help="alpha of the matrix-based Renyi estimator"),
    estimators: Optional[str] = typer.Option(None, "--estimators", help="comma-separated: kde, bin, renyi"),
    preset: Optional[str] = typer.Option(None, "--preset", help="'code' (kernel fixed:0.2) or 'paper' (fixed:1.0)"),
    epochs: Optional[str] = typer.Option(None, "--epochs", help="comma-separated logged epochs (default: all stored)"),
    probe_subset: Optional[str] = typer.Option(None, "--probe-subset", help="probe samples to estimate on: train or "
                                               "test (the samples of that split), all, or a number n (a seeded random "
                                               "subset of n samples); default: the run's own (mi.subset)"),
    subset_seed: int = typer.Option(0, "--subset-seed", help="seed of --probe-subset n"),
    y_from: Optional[str] = typer.Option(None, "--y-from", help="masks Y is made from: code (graded masks, as the "
                                         "paper's MI notebooks) or binary (the training masks)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="CSV to write (default RUN/estimates/mi-<settings>.csv)"),
    uncertainty: bool = typer.Option(False, "--uncertainty", help="also write <out>.uncertainty.csv (subsampling "
                                     "intervals, permutation baseline of I(Y;M)) and <out>.subsamples.csv (trend with N)"),
    unc_estimators: str = typer.Option("kde_upper", "--unc-estimators", help="estimators of --uncertainty: kde, "
                                       "kde_upper, kde_lower, bin, renyi"),
    repeats: int = typer.Option(20, "--repeats", help="--uncertainty: random subsets per subset size"),
    permutations: int = typer.Option(20, "--permutations", help="--uncertainty: label permutations (0: none)"),
    fractions: str = typer.Option("0.25,0.5,0.75,1", "--fractions", help="--uncertainty: subset sizes as fractions of N"),
    level: float = typer.Option(0.9, "--level", help="--uncertainty: level of the intervals"),
    unc_layers: Optional[str] = typer.Option(None, "--unc-layers", help="--uncertainty: probe layer indices (default all)"),
    unc_seed: int = typer.Option(0, "--unc-seed", help="--uncertainty: seed of subsets and permutations"),
    robustness: bool = typer.Option(False, "--robustness", help="check the paper's claims under each kde_upper "
                                    "setting; write <out>.robustness.csv and <out>.robustness-summary.csv"),
    claims_runs: Optional[str] = typer.Option(None, "--claims-runs", help="--robustness: comma-separated run "
                                              "directories of Models 1-4 (their Dice curves decide claim 4)"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Recompute MI from a run's stored distance matrices with any settings, without the network."""
    from ..tracking import estimates_path, floor_notes, reestimate

    run = RunDir.open(run_dir)
    with run.lock("re-estimates"):
        cfg = run.config()
        mi = cfg.mi if preset is None else apply_mi_preset(cfg.mi, preset)
        changes: dict = {}
        if kernel is not None:
            changes["kernels"] = kernel  # checked where the setting is (MIConfig -> estimators.widths)
        if labels is not None:
            changes["labels"] = tuple(x.strip() for x in labels.split(",") if x.strip())
        for key, value in (("kmeans_k", k), ("kmeans_seed", kmeans_seed), ("coarse_grid", grid),
                           ("coarse_threshold", threshold), ("renyi_alpha", alpha), ("y_from", y_from)):
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
            if probe_subset.strip().isdigit():
                n = len(run.load_probe())
                size = int(probe_subset)
                if not 2 <= size <= n:
                    raise ConfigError(f"--probe-subset must be between 2 and the probe set size {n}, got {size}")
                subset = np.sort(np.random.default_rng(subset_seed).choice(n, size=size, replace=False))
            else:
                mi = dataclasses.replace(mi, subset=None if probe_subset == "all" else probe_subset)
                run.load_probe().subset(mi.subset)  # a clear error before any work
        t0 = time.perf_counter()
        table = reestimate(run, mi, epochs=epoch_list, subset=subset, progress=not quiet)
        seconds = time.perf_counter() - t0
        if out is None:
            out = estimates_path(run, mi, probe_subset=probe_subset)
        run.write_table(out, table)
        n_ceiling = int((table["at_ceiling"] & (table["quantity"] == "I_XM")).sum())
        n_ixm = int((table["quantity"] == "I_XM").sum())
        typer.echo(f"{len(table)} estimates for {table['epoch'].nunique()} epochs in {seconds:.1f} s -> {out}")
        if n_ceiling:
            typer.secho(f"warning: {n_ceiling} of {n_ixm} I(X;M) estimates sit at their ceiling log2 N: "
                        "they measure the activations' scale against the kernel width, not the network",
                        fg=typer.colors.YELLOW, err=True)
        for note in floor_notes(table):
            typer.secho(f"warning: {note}", fg=typer.colors.YELLOW, err=True)
        run.log(f"estimate: wrote {out} ({len(table)} rows, kernels {', '.join(mi.kernels)}, labels {mi.labels})")
        if any(not k.startswith("fixed:") for k in mi.kernels):
            _write_widths(run, mi, epoch_list, out)
        if uncertainty:
            _write_uncertainty(run, mi, epoch_list, out, estimators=unc_estimators, repeats=repeats,
                               permutations=permutations, fractions=fractions, level=level, layers=unc_layers,
                               seed=unc_seed, quiet=quiet)
        if robustness:
            _write_robustness(run, table, out, claims_runs)


def _write_widths(run: RunDir, mi, epochs, out: Path) -> None:
    """The kernel variance each kernel resolved to, per epoch and layer (<out>.widths.csv)."""
    frames = []
    for e in (epochs if epochs is not None else run.matrix_epochs()):
        m = run.load_matrices(e)
        frames.append(resolved_kernels(m.dist, names=m.names, kernels=mi.kernels, epoch=e))
    target = run.write_table(sibling_path(out, "widths"), pd.concat(frames, ignore_index=True))
    typer.echo(f"kernel variances per epoch and layer -> {target}")


def _write_uncertainty(run: RunDir, mi, epochs, out: Path, *, estimators: str, repeats: int, permutations: int,
                       fractions: str, level: float, layers, seed: int, quiet: bool) -> None:
    from ..analysis.uncertainty import write_uncertainty

    fr = floats(fractions, "--fractions")
    lay = None
    if layers is not None:
        try:
            lay = [int(x) for x in layers.split(",") if x.strip()]
        except ValueError:
            raise ConfigError(f"--unc-layers takes comma-separated integers, got {layers!r}") from None
    t0 = time.perf_counter()
    summary, _, unc_path, subs_path = write_uncertainty(run, out, mi, estimators=estimators, epochs=epochs, layers=lay,
                                         fractions=fr, repeats=repeats, permutations=permutations, level=level,
                                         seed=seed, progress=not quiet)
    seconds = time.perf_counter() - t0
    y = summary[summary["quantity"] == "I_YM"]
    n_chance = int((y["p_value"] > 1 - level).sum()) if len(y) and permutations > 0 else 0
    typer.echo(f"uncertainty of {len(summary)} estimates in {seconds:.1f} s -> {unc_path}, {subs_path}")
    if n_chance:
        typer.secho(f"note: {n_chance} of {len(y)} I(Y;M) estimates are not above their label-permutation "
                    f"baseline (p > {1 - level:g})", fg=typer.colors.YELLOW, err=True)
    run.log(f"estimate: uncertainty -> {unc_path} ({len(summary)} rows)")


def _write_robustness(run: RunDir, table, out: Path, claims_runs: Optional[str]) -> None:
    from ..analysis.robustness import claims_by_setting, claims_evaluator, summarize_robustness

    runs = None if not claims_runs else [RunDir.open(p.strip()) for p in claims_runs.split(",") if p.strip()]
    kwargs = {}
    th = _reproduction_thresholds([run] + (runs or []))
    if th is not None:
        kwargs["thresholds"], source = th
        typer.echo(f"claim thresholds of the reproduction in {source}")
    verdicts = claims_by_setting(table, claims_evaluator(runs, **kwargs), estimator="kde_upper")
    summary = summarize_robustness(verdicts)
    for frame, suffix in ((verdicts, "robustness"), (summary, "robustness-summary")):
        run.write_table(sibling_path(out, suffix), frame)
    for sentence in summary["statement"]:
        typer.echo(sentence)
    run.log(f"estimate: claim robustness -> {sibling_path(out, 'robustness')}")


def _reproduction_thresholds(runs: list[RunDir]):
    """The claim thresholds of the reproduction the runs belong to (its reproduce.json: profile
    and --threshold overrides), as ``(ClaimThresholds, path)``; None for runs of no reproduction."""
    from ..experiments.profiles import get_profile
    from ..experiments.reproduce import thresholds_for

    for r in runs:
        manifest = r.path.resolve().parent / "reproduce.json"
        if manifest.is_file():
            try:
                info = json.loads(manifest.read_text(encoding="utf-8"))
                return thresholds_for(get_profile(info["profile"]), info.get("thresholds") or {}), manifest
            except (ValueError, KeyError) as exc:
                raise ConfigError(f"{manifest}: not a reproduction manifest ({exc})") from None
    return None
