"""``infoflow reproduce``, ``infoflow claims`` and ``infoflow profiles``.

Modules that import torch (analysis, experiments) are imported inside the commands: every command
module is imported by ``infoflow --help``, which must not wait for torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import ConfigError
from ..runs import RunDir, atomic_write_text
from . import app
from .train_cmd import parse_set


def _models(text: Optional[str]) -> Optional[list[int]]:
    if text is None:
        return None
    try:
        vals = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise ConfigError(f"--models takes comma-separated model numbers 1-4, e.g. 1,2,3,4; got {text!r}") from None
    if not vals or any(v not in (1, 2, 3, 4) for v in vals):
        raise ConfigError(f"--models takes model numbers 1-4, got {text!r}")
    return vals


@app.command("reproduce")
def reproduce_command(
    data: Optional[str] = typer.Option(None, "--data", help="required: DSB 2018 folder holding stage1_train.zip and "
                                                            "stage1_test.zip (e.g. ../shared/data/dsb2018), a zip, "
                                                            "or 'synthetic'"),
    profile: str = typer.Option("cpu", "--profile", "-p", help="paper, cpu or smoke (see `infoflow profiles`)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="required: output folder (one run per model and seed, "
                                                                 "claims, figures, report)"),
    seeds: Optional[int] = typer.Option(None, "--seeds", help="seeds per model (default 1); figures and claims use "
                                                              "the median and a band across seeds"),
    models: Optional[str] = typer.Option(None, "--models", help="which of Models 1-4 (default 1,2,3,4)"),
    address: Optional[str] = typer.Option(None, "--address", help="an existing Ray cluster, host:port of its head "
                                                                  "(default: start a local one)"),
    ray_token_file: Optional[Path] = typer.Option(None, "--ray-token-file", help="--address: the file holding the "
                                                  "cluster's token (`ray get-auth-token` on the head) when it uses "
                                                  "token authentication (default: RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH "
                                                  "or ~/.ray/auth_token)"),
    cpus: Optional[int] = typer.Option(None, "--cpus", help="CPUs of the local Ray instance (default: all cores)"),
    gpus_per_run: Optional[float] = typer.Option(None, "--gpus-per-run", help="GPUs each run asks Ray for "
                                                                            "(default: 1 for paper, 0 otherwise)"),
    sets: list[str] = typer.Option([], "--set", help="any run setting after the profile, e.g. --set train.epochs=50"),
    thresholds: list[str] = typer.Option([], "--threshold", help="a claim threshold, e.g. --threshold dice_tol=0.03"),
    serial: bool = typer.Option(False, "--serial", help="run the models one after the other in this process (no Ray)"),
    no_report: bool = typer.Option(False, "--no-report", help="train and check claims only: no figures, no report"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
) -> None:
    """Train Models 1-4 with MI tracked, check the paper's claims, draw every figure, write the report.

    Runs are Ray tasks (one core each); running the command again skips finished runs and
    resumes interrupted ones from their checkpoints.
    """
    from ..analysis.claims import print_claims
    from ..experiments.reproduce import reproduce

    if data is None:
        raise ConfigError("pass --data: the folder holding stage1_train.zip and stage1_test.zip "
                          "(../shared/data/dsb2018 from the repository), a zip, or 'synthetic'")
    if out is None:
        raise ConfigError("pass --out: the output folder of the reproduction")
    if ray_token_file is not None:
        if address is None or serial:
            raise ConfigError("--ray-token-file is for a cluster given by --address")
        if not ray_token_file.is_file() or not ray_token_file.read_text().strip():
            raise ConfigError(f"--ray-token-file {ray_token_file}: no such file, or it is empty")
        import os

        os.environ["RAY_AUTH_TOKEN_PATH"] = str(ray_token_file.resolve())  # where Ray's token loader reads it
        os.environ.pop("RAY_AUTH_TOKEN", None)  # which would win over the file

    res = reproduce(data, profile, out, seeds=seeds, models=_models(models), address=address,
                    sets=parse_set(sets), thresholds=parse_set(thresholds), num_cpus=cpus, gpus_per_run=gpus_per_run,
                    backend="serial" if serial else "ray", progress=not quiet, figures=not no_report,
                    report=not no_report, echo=typer.echo)
    if res.claims is not None:
        typer.echo("")
        print_claims(res.claims, typer.echo)
    typer.echo("")
    if res.claims_md is not None:
        typer.echo(f"claims:  {res.claims_md} (and {res.claims_csv.name})")
    if res.report is not None:
        typer.echo(f"report:  {res.report}  (open it in a browser)")
    for p in res.problems:
        typer.secho(f"problem: {p}", fg=typer.colors.YELLOW, err=True)
    busy = f", {len(res.sweep.busy)} being trained elsewhere" if res.sweep.busy else ""
    typer.echo(f"{len(res.sweep.ok)} of {len(res.specs)} runs finished, {len(res.sweep.failed)} failed{busy}; "
               f"{res.seconds:.0f} s")
    if res.sweep.failed:
        raise typer.Exit(1)


@app.command("claims")
def claims_command(
    runs: list[Path] = typer.Argument(..., help="run directories of the models (any seeds), or a reproduction folder"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="folder for claims.csv and claims.md (default: none)"),
    estimator: str = typer.Option("kde_upper", "--estimator", help="estimator whose I(X;M), I(Y;M) are read"),
    setting: Optional[str] = typer.Option(None, "--setting", help="its setting (default: every setting)"),
    labels: Optional[str] = typer.Option(None, "--labels", help="output classes (default kmeans)"),
    thresholds: list[str] = typer.Option([], "--threshold", help="a claim threshold, e.g. --threshold dice_tol=0.03"),
) -> None:
    """Check the paper's claims on finished runs and print each with its numbers."""
    from ..analysis.claims import ClaimThresholds, claims_from_runs, claims_markdown, print_claims
    from .estimate_cmd import _reproduction_thresholds

    dirs: list[Path] = []
    for r in runs:
        if (r / "config.json").exists():
            dirs.append(r)
        elif r.is_dir():
            dirs += sorted(p.parent for p in r.glob("*/config.json"))
    if not dirs:
        raise ConfigError(f"no run directories in {', '.join(map(str, runs))}")
    # a reproduction's runs are checked with its profile's thresholds (and its --threshold overrides)
    found = _reproduction_thresholds([RunDir(d) for d in dirs])
    th = (found[0] if found else ClaimThresholds()).with_(**parse_set(thresholds))
    if found:
        typer.echo(f"claim thresholds of the reproduction ({found[1]}), then --threshold")
    table, extras = claims_from_runs([RunDir.open(d) for d in dirs], thresholds=th, estimator=estimator,
                                     settings=[setting] if setting else "all", labels=labels)
    print_claims(table, typer.echo)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "claims.csv", table.to_csv(index=False))
        atomic_write_text(out / "claims.md", claims_markdown(table, extras, thresholds=th))
        typer.echo(f"claims written to {out / 'claims.csv'} and {out / 'claims.md'}")


@app.command("profiles")
def profiles_command() -> None:
    """List the reproduction profiles and what each sets."""
    from ..experiments.profiles import PROFILES

    for p in PROFILES.values():
        typer.echo(f"{p.name}: {p.summary}")
        typer.echo(f"    expected: {p.expected}; models {list(p.models)}, GPUs per run {p.gpus_per_run:g}")
        for k, v in p.overrides.items():
            typer.echo(f"    {k} = {v!r}")
        if p.claims:
            typer.echo(f"    claim thresholds: {dict(p.claims)}")
