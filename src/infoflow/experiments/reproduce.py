"""The whole reproduction: train Models 1-4 (MI tracked for every model), check the claims, draw
every figure and write the report.

``DIR`` (``--out``) ends up holding::

    DIR/reproduce.json          what was asked: profile, data, models, seeds, overrides
    DIR/model{m}_seed{s}/       one run directory per (model, seed) (see docs/ARCHITECTURE.md),
                                with figures/ (and report.html)
    DIR/claims.csv  claims.md   the claims table (also copied into the full model's runs,
                                where the report shows it)
    DIR/figures/                figures across runs: Dice of all models (paper Fig. 5),
                                predictions of Models 1-3 (Fig. 6); with several seeds, each
                                model's information planes, U-Plots and MI curves as median and band
    DIR/report.html             one report of all runs

Running the same command again skips finished runs, resumes partial ones and redraws the rest.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import InfoflowError
from ..runs import RunDir, atomic_write_text
from ..analysis.claims import CLAIM_COLUMNS, UNDECIDED, ClaimThresholds, claims_from_runs, claims_markdown, group_by_model
from .profiles import Profile, get_profile
from .sweep import RunSpec, SweepResult, check_cpus, plan_runs, run_sweep

CLAIMS_CSV = "claims.csv"
CLAIMS_MD = "claims.md"
MANIFEST = "reproduce.json"


@dataclass
class ReproduceResult:
    out: Path
    specs: list[RunSpec]
    sweep: SweepResult
    claims: pd.DataFrame | None = None
    claims_csv: Path | None = None
    claims_md: Path | None = None
    report: Path | None = None
    figures: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0


def resolve_data(data: str | os.PathLike | None) -> str | None:
    """An existing local path becomes absolute (runs then do not depend on the working folder);
    'synthetic' and paths that exist only on a cluster stay as given."""
    if data is None:
        return None
    text = str(data)
    if text == "synthetic":
        return text
    p = Path(text).expanduser()
    return str(p.resolve()) if p.exists() else text


def thresholds_for(profile: Profile, overrides: Mapping[str, Any] | None = None) -> ClaimThresholds:
    return ClaimThresholds().with_(**{**dict(profile.claims), **dict(overrides or {})})


def reproduce(data: str | os.PathLike | None, profile: str | Profile, out: str | os.PathLike, *,
              seeds: int | None = None, models: Sequence[int] | None = None, address: str | None = None,
              sets: Mapping[str, Any] | None = None, thresholds: Mapping[str, Any] | None = None,
              num_cpus: int | None = None, gpus_per_run: float | None = None, backend: str = "ray",
              progress: bool = True, figures: bool = True, report: bool = True, per_run_reports: bool = True,
              formats: Sequence[str] = ("png", "pdf"), ray_temp_dir: str | None = None,
              echo: Callable[[str], Any] = print) -> ReproduceResult:
    """Train the models of ``profile`` (every seed), then claims, figures and the report.

    Args:
        data: DSB 2018 folder (holding stage1_train.zip and stage1_test.zip), a zip, or
            "synthetic" (None: the profile's / the default ``data.source``).
        profile: a name of :data:`~infoflow.experiments.profiles.PROFILES` or a Profile.
        out: the output folder DIR.
        seeds: seeds per model (default: the profile's).
        models: which of Models 1-4 (default: the profile's).
        address: an existing Ray cluster; None starts a local Ray instance.
        sets: dotted RunConfig overrides applied after the profile.
        thresholds: overrides of :class:`ClaimThresholds` fields (after the profile's).
        num_cpus: CPUs of the local Ray instance (default: all).
        gpus_per_run: GPUs per run (default: the profile's).
        backend: "ray" or "serial".
        figures, report, per_run_reports: what to draw after training.
        formats: file formats of the figures.
        ray_temp_dir: temp dir of the local Ray instance (default: a new ``ifr-*`` in the temp
            directory, removed after).
    """
    t0 = time.perf_counter()
    p = get_profile(profile)
    check_cpus(num_cpus)
    out = Path(out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    data = resolve_data(data)
    th = thresholds_for(p, thresholds)
    specs = plan_runs(p, out, data=data, models=models, seeds=seeds, sets=sets)
    manifest = {"profile": p.name, "data": data, "models": sorted({s.model for s in specs}),
                "seeds": max(s.seed_index for s in specs) + 1, "sets": {k: v for k, v in (sets or {}).items()},
                "thresholds": {k: v for k, v in (thresholds or {}).items()}, "address": address,
                "runs": [s.key for s in specs],
                "written": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=2, default=str) + "\n")
    echo(f"reproduction '{p.name}': {len(specs)} runs into {out}")
    sweep = run_sweep(specs, address=address, backend=backend, num_cpus=num_cpus,
                      gpus_per_run=p.gpus_per_run if gpus_per_run is None else gpus_per_run,
                      progress=progress, temp_dir=ray_temp_dir, echo=echo)
    t_train = time.perf_counter() - t0
    result = ReproduceResult(out=out, specs=specs, sweep=sweep)
    for r in sweep.busy:
        echo(f"run {r.key}: being trained elsewhere ({r.error}); left to that process")
    for r in sweep.failed:
        echo(f"run {r.key} FAILED: {r.error}")
        if r.traceback:
            echo("    " + r.traceback.strip().replace("\n", "\n    "))
    runs = [RunDir(s.path) for s in specs if RunDir(s.path).config_path.exists() and RunDir(s.path).is_finished()]
    if not runs:
        result.problems.append("no finished run: nothing to evaluate")
        result.seconds = time.perf_counter() - t0
        return result

    # -- claims ----------------------------------------------------------------------------------
    claims, extras = _claims(runs, th, result)
    result.claims = claims
    preamble = _preamble(p, specs, runs, manifest)
    result.claims_csv = out / CLAIMS_CSV
    atomic_write_text(result.claims_csv, claims.to_csv(index=False))
    result.claims_md = out / CLAIMS_MD
    atomic_write_text(result.claims_md, claims_markdown(claims, extras, thresholds=th, preamble=preamble))
    groups, removed = group_by_model(runs)
    for lab, members in groups.items():
        if not removed[lab]:  # the full model's runs: the report shows RUN/claims.csv
            for r in members:
                shutil.copyfile(result.claims_csv, r.path / CLAIMS_CSV)

    # -- figures and report ----------------------------------------------------------------------
    if figures or report:
        t1 = time.perf_counter()
        _figures_and_report(runs, groups, out, result, figures=figures, report=report, formats=formats,
                            per_run_reports=per_run_reports, title=f"infoflow reproduction ({p.name})")
        echo(f"training {t_train:.0f} s; figures and report {time.perf_counter() - t1:.0f} s")
    result.seconds = time.perf_counter() - t0
    return result


def _claims(runs: list[RunDir], th: ClaimThresholds, result: ReproduceResult
            ) -> tuple[pd.DataFrame, dict[str, dict[str, pd.DataFrame]]]:
    try:
        return claims_from_runs(runs, thresholds=th, settings="all")
    except InfoflowError as exc:
        result.problems.append(f"claims: {exc}")
        rows = [{"claim": k, "statement": "", "status": UNDECIDED, "detail": str(exc), "selection": "",
                 "seeds": 0} for k in ("1", "2", "3", "4")]
        return pd.DataFrame(rows, columns=list(CLAIM_COLUMNS)), {}


def _preamble(p: Profile, specs: list[RunSpec], runs: list[RunDir], manifest: Mapping[str, Any]) -> str:
    lines = [f"Profile `{p.name}`: {p.summary}.", "",
             f"Runs: {len(runs)} finished of {len(specs)} planned "
             f"({', '.join(sorted(r.path.name for r in runs))}); models {manifest['models']}, "
             f"{manifest['seeds']} seed(s) each" + (f"; overrides {manifest['sets']}" if manifest["sets"] else "") + "."]
    if p.changes:
        lines += ["", "What differs from the paper, and why:", ""] + [f"- {c}" for c in p.changes]
    return "\n".join(lines)


def _figures_and_report(runs: list[RunDir], groups: Mapping[str, list[RunDir]], out: Path, result: ReproduceResult,
                        *, figures: bool, report: bool, per_run_reports: bool, title: str,
                        formats: Sequence[str] = ("png", "pdf")) -> None:
    try:
        from ..plots import make_figures, savefig
    except ImportError as exc:  # plots not available
        result.problems.append(f"figures: {exc}")
        return
    prepared: dict[str, Any] = {}
    for r in runs:
        try:
            figs, skipped = make_figures(r)
        except Exception as exc:  # noqa: BLE001 - one run's figures must not lose the rest
            result.problems.append(f"figures of {r.path.name}: {type(exc).__name__}: {exc}")
            continue
        prepared[str(r.path)] = (figs, skipped)
        if figures:
            r.figures_dir.mkdir(parents=True, exist_ok=True)
            for stem, fig in figs.items():
                result.figures += savefig(fig, r.figures_dir / stem, formats)
            r.log(f"figures written to {r.figures_dir} (infoflow reproduce)")
    if figures:
        result.figures += _sweep_figures(runs, groups, out / "figures", result, formats)
    if not report:
        return
    try:
        from ..report import write_report
    except ImportError as exc:
        result.problems.append(f"report: {exc}")
        return
    try:
        if per_run_reports:
            for r in runs:
                if str(r.path) in prepared:
                    write_report(r, prepared={str(r.path): prepared[str(r.path)]})
        result.report = write_report(runs, out / "report.html", prepared=prepared, title=title)
    except Exception as exc:  # noqa: BLE001
        result.problems.append(f"report: {type(exc).__name__}: {exc}")
    finally:
        import matplotlib.pyplot as plt

        plt.close("all")


def _sweep_figures(runs: list[RunDir], groups: Mapping[str, list[RunDir]], folder: Path,
                   result: ReproduceResult, formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Figures across runs: Dice of all models, predictions of Models 1-3, seed aggregates."""
    from ..plots import dice_curves, information_planes, mi_vs_epoch, predicted_masks, savefig, uplots

    folder.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []

    def save(stem: str, make: Callable[[], Any]) -> None:
        try:
            paths.extend(savefig(make(), folder / stem, formats))
        except Exception as exc:  # noqa: BLE001
            result.problems.append(f"figure {stem}: {type(exc).__name__}: {exc}")

    n_seeds = max(len(m) for m in groups.values())
    band = f" (median and min-max band of {n_seeds} seeds)" if n_seeds > 1 else ""
    save("dice", lambda: dice_curves(runs, title=f"Dice, training (solid), validation (dashed){band}", loss=True))
    first = {lab: members[0] for lab, members in groups.items() if lab in ("Model 1", "Model 2", "Model 3")}
    if first:
        save("predictions", lambda: predicted_masks(first))
    if n_seeds > 1:
        for lab, members in groups.items():
            if len(members) < 2 or any(m.read_mi().empty for m in members):
                continue
            slug = lab.lower().replace(" ", "").replace(",", "")
            head = f"{lab}, median of {len(members)} seeds: "
            save(f"{slug}_information_planes", lambda: information_planes(members, title=head))
            save(f"{slug}_uplots", lambda: uplots(members, title=head))
            save(f"{slug}_mi_vs_epoch", lambda: mi_vs_epoch(members, title=head))
    return paths
