"""``infoflow plot RUN`` and ``infoflow report RUN [RUN...]``; :func:`finish_run` for the demo."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Optional

import typer

from ..errors import ConfigError
from ..runs import RunDir
from . import app


def _epochs(text: Optional[str]) -> Optional[list[int]]:
    if text is None:
        return None
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--epochs takes comma-separated epoch numbers, e.g. 1,10,100; got {text!r}") from None
    if not vals:
        raise ConfigError(f"--epochs takes comma-separated epoch numbers, got {text!r}")
    return vals


def _only(text: Optional[str]) -> Optional[list[str]]:
    if text is None:
        return None
    from ..plots import FIGURES

    names = [t.strip() for t in text.split(",") if t.strip()]
    known = [stem for stem, _ in FIGURES]
    bad = [n for n in names if n not in known]
    if not names or bad:
        raise ConfigError(f"--only takes figure names among {', '.join(known)}; got {text!r}")
    return names


def _formats(text: str) -> tuple[str, ...]:
    fmts = tuple(f.strip().lower().lstrip(".") for f in text.split(",") if f.strip())
    bad = [f for f in fmts if f not in ("png", "pdf", "svg")]
    if not fmts or bad:
        raise ConfigError(f"--format takes png, pdf and/or svg (comma-separated), got {text!r}")
    return fmts


def _progress_line(line: str) -> None:
    """Progress of `plot` and `report` (one line per figure) on stderr, so stdout keeps the results."""
    typer.echo(line, err=True)


@app.command("plot")
def plot_command(
    run: Path = typer.Argument(..., help="run directory"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="folder for the figures (default RUN/figures)"),
    estimator: Optional[str] = typer.Option(None, "--estimator", help="kde_upper (default), kde_lower, bin or renyi"),
    setting: Optional[str] = typer.Option(None, "--setting", help="a setting as the MI table writes it, e.g. "
                                          "fixed:1.0, rel:0.1 or bin:0.2 (default: the first); one that mi.csv lacks "
                                          "is taken from the newest table of `infoflow estimate` holding it"),
    labels: Optional[str] = typer.Option(None, "--labels", help="output classes: kmeans (default) or coarse"),
    estimates: Optional[str] = typer.Option(None, "--estimates", help="draw a stored table of `infoflow estimate`: "
                                            "its tag (RUN/estimates/mi-<tag>.csv), file name or path "
                                            "(default: RUN/mi.csv)"),
    epochs: Optional[str] = typer.Option(None, "--epochs", help="U-Plot epochs, e.g. 1,10,100 (default: the paper code's)"),
    fmt: str = typer.Option("png,pdf", "--format", help="file formats, comma-separated"),
    dpi: int = typer.Option(150, "--dpi", help="PNG resolution"),
    only: Optional[str] = typer.Option(None, "--only", help="only these figures, e.g. information_planes,uplots"),
    style: str = typer.Option("tool", "--style",
                              help="tool (titles, log epoch colours) or paper (no titles or frames, linear epoch "
                                   "colours as the paper's Fig. 3)"),
    epoch_scale: Optional[str] = typer.Option(None, "--epoch-scale",
                                              help="epoch colour scale, log or linear (default: the style's)"),
    paper_numbers: bool = typer.Option(False, "--paper-numbers",
                                       help="number layers from 1 (1-23 as in the paper) instead of 0"),
) -> None:
    """Write every figure of a run (information planes, U-Plots, MI and Dice curves, masks) into RUN/figures."""
    from ..plots import plot_run

    if dpi < 1:
        raise ConfigError(f"--dpi must be a positive number of dots per inch, got {dpi}")
    r = RunDir.open(run)
    with r.lock("plots"):
        paths, skipped = plot_run(r, out, formats=_formats(fmt), dpi=dpi, estimator=estimator, setting=setting,
                                  labels=labels, uplot_epochs=_epochs(epochs), only=_only(only), estimates=estimates,
                                  style=style, epoch_scale=epoch_scale, layer_base=1 if paper_numbers else 0,
                                  progress=_progress_line)
    folder = paths[0].parent if paths else (out or r.figures_dir)
    typer.echo(f"{len(paths)} figure files written to {folder}")
    for stem, why in skipped.items():
        typer.echo(f"  skipped {stem}: {why}")


@app.command("report")
def report_command(
    runs: list[Path] = typer.Argument(..., help="one or more run directories"),
    out: Optional[Path] = typer.Option(None, "--out", "-o",
                                       help="HTML file (default RUN/report.html; several runs: report.html in their common folder)"),
    estimator: Optional[str] = typer.Option(None, "--estimator", help="estimator of the figures (default kde_upper)"),
    setting: Optional[str] = typer.Option(None, "--setting", help="its setting (default: the first); one that mi.csv "
                                          "lacks is taken from the newest table of `infoflow estimate` holding it"),
    labels: Optional[str] = typer.Option(None, "--labels", help="output classes (default kmeans)"),
    estimates: Optional[str] = typer.Option(None, "--estimates", help="the MI figures and tables from a stored table "
                                            "of `infoflow estimate`: its tag, file name or path (default: RUN/mi.csv)"),
    title: Optional[str] = typer.Option(None, "--title", help="report title"),
    only: Optional[str] = typer.Option(None, "--only", help="only these figures of each run, e.g. dice,uplots"),
    uncertainty: Optional[list[Path]] = typer.Option(
        None, "--uncertainty", help="uncertainty table (*.uncertainty.csv of `infoflow estimate --uncertainty`) of "
        "the 'Estimate quality' section; repeat once per run, in order (default: the newest in RUN/estimates)"),
    robustness: Optional[list[Path]] = typer.Option(
        None, "--robustness", help="*.robustness.csv or *.robustness-summary.csv of `infoflow estimate "
        "--robustness`; repeat once per run, in order (default: the newest in RUN/estimates)"),
    quality: bool = typer.Option(
        False, "--quality", help="compute an uncertainty table for each run that has none (last logged epoch, "
        "the run's kernels and rel:0.1,rel:1.0,silverman:1.0, kde_upper, 10 subsets per size, 20 permutations; written to "
        "RUN/estimates)"),
) -> None:
    """Write one self-contained HTML report (figures, config, data, estimates, ceilings, estimate quality,
    robustness of the claims, claims) of runs."""
    from ..report import write_report

    rs = [RunDir.open(r) for r in runs]
    uncs = _per_run_paths(uncertainty, len(rs), "--uncertainty")
    robs = _per_run_paths(robustness, len(rs), "--robustness")
    with contextlib.ExitStack() as locks:  # the report (and --quality's tables) are written into the runs
        for r in rs:
            locks.enter_context(r.lock("reports on"))
        if quality:
            uncs = [u if u is not None else _ensure_quality(r) for r, u in zip(rs, uncs)]
        path = write_report(rs, out, title=title, estimator=estimator, setting=setting, labels=labels,
                            only=_only(only), uncertainty=uncs, robustness=robs, estimates=estimates,
                            progress=_progress_line)
    typer.echo(f"report written to {path}")


def _per_run_paths(paths: Optional[list[Path]], n: int, option: str) -> list[Optional[Path]]:
    if not paths:
        return [None] * n
    if len(paths) != n:
        raise ConfigError(f"{option} was given {len(paths)} time(s) for {n} run(s): give it once per run, in the "
                          "order of the runs, or not at all (then the newest table in RUN/estimates is used)")
    for p in paths:
        if not p.is_file():
            raise ConfigError(f"{option} {p}: no such file")
    return list(paths)


def _ensure_quality(run: RunDir) -> Optional[Path]:
    """The run's newest uncertainty table, or a new cheap one (``--quality``); None when the run
    has no stored matrices to compute one from."""
    import dataclasses
    import time

    from ..report.quality import (QUALITY_ESTIMATOR, QUALITY_PERMUTATIONS, QUALITY_REPEATS, find_uncertainty,
                                  quality_kernels)
    from ..tracking import estimates_path
    from ..analysis.uncertainty import write_uncertainty

    found = find_uncertainty(run)
    if found is not None:
        return found
    stored = run.matrix_epochs()
    if not stored:
        typer.echo(f"  --quality: {run.path} has no stored distance matrices; no uncertainty table")
        return None
    t0 = time.perf_counter()
    # what `infoflow estimate RUN --kernel <quality_kernels> --uncertainty --epochs <last>` writes
    mi = run.config().mi
    mi = dataclasses.replace(mi, kernels=quality_kernels(mi.kernels))
    summary, _, path, _ = write_uncertainty(run, estimates_path(run, mi), mi, estimators=QUALITY_ESTIMATOR,
                                            epochs=[stored[-1]], repeats=QUALITY_REPEATS,
                                            permutations=QUALITY_PERMUTATIONS)
    run.log(f"report --quality: uncertainty of epoch {stored[-1]} -> {path} ({len(summary)} rows)")
    typer.echo(f"uncertainty table of {run.path} in {time.perf_counter() - t0:.1f} s -> {path}")
    return path


def finish_run(run: RunDir | str | Path, *, echo: bool = True) -> tuple[list[Path], Path]:
    """All figures of ``run`` into RUN/figures and its report into RUN/report.html (the figures are
    drawn once for both); prints where they are. Returns (figure files, report path)."""
    from ..plots import make_figures, savefig
    from ..report import write_report

    r = run if isinstance(run, RunDir) else RunDir.open(run)
    figs, skipped = make_figures(r, progress=_progress_line if echo else None)
    r.figures_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for stem, fig in figs.items():
        paths += savefig(fig, r.figures_dir / stem)
    report = write_report(r, prepared={str(r.path): (figs, skipped)})
    r.log(f"figures written to {r.figures_dir}; report {report}")
    if echo:
        typer.echo(f"figures: {r.figures_dir} ({len(figs)} figures, PNG and PDF)")
        for stem, why in skipped.items():
            typer.echo(f"  skipped {stem}: {why}")
        typer.echo(f"report:  {report}  (open it in a browser)")
    return paths, report
