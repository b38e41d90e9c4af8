"""Known-answer benchmark of the MI estimators (``infoflow.analysis.known_answer``).

Synthetic "activations": a Gaussian mixture whose K equiprobable components are the classes,
at D from 10 to 262,144 and N = 65 or 670 (see ``known_answer.default_specs``). For each sample
set, each estimator (KDE upper / lower bound, matrix-based Renyi, binning where D is small) and
each kernel width, the estimate is compared with

* the population I(Y;M) of the mixture (quadrature for K = 2, Monte Carlo with its standard error
  otherwise): what one wants to know;
* the KDE's own targets: I(.; M+Z) for the mixture with the kernel's noise added (population),
  and for the N-sample mixture (Monte Carlo, exact expression, standard error stated).

Writes ``--csv`` (all draws), ``--summary`` (bias and spread per case), a markdown table on
stdout and the figure ``--figure``.

Usage: python bench/bench_known_answer.py [--quick] [--repeats 3] [--csv draws.csv]
       [--summary docs/known_answer_summary.csv] [--figure docs/img/known_answer.png]
(the full grid takes about 12 minutes on one CPU core)
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

from infoflow.analysis.known_answer import BENCHMARK_KERNELS, benchmark, default_specs, summarize

LABELS = {"fixed:0.2": "fixed 0.2 (paper code)", "fixed:1.0": "fixed 1.0 (paper text)",
          "rel:0.1": "rel 0.1", "rel:1.0": "rel 1", "silverman:1.0": "Silverman"}


def _setting_key(setting: str) -> str:
    return setting.split(",", 1)[1] if setting.startswith("alpha=") else setting


def figure(summary: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = summary[(summary.quantity == "I_YM") & summary.estimator.isin(["kde_upper", "renyi"])].copy()
    s["key"] = s["setting"].map(_setting_key)
    s["sep"] = np.where(s["snr"] <= 4.0, "near (snr 4)", "far (snr max(64, D))")
    cases = list(dict.fromkeys(zip(s["n"], s["k"])))
    seps = ["near (snr 4)", "far (snr max(64, D))"]
    fig, axes = plt.subplots(len(seps), len(cases), figsize=(4.2 * len(cases), 3.4 * len(seps)), squeeze=False,
                             sharex=True)
    colors = dict(zip(LABELS, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for r, sep in enumerate(seps):
        for c, (n, k) in enumerate(cases):
            ax = axes[r][c]
            g = s[(s.sep == sep) & (s.n == n) & (s.k == k)]
            for key, label in LABELS.items():
                for est, ls, mk in (("kde_upper", "-", "o"), ("renyi", ":", "s")):
                    h = g[(g.key == key) & (g.estimator == est)].sort_values("dim")
                    if h.empty:
                        continue
                    ax.errorbar(h["dim"], h["bias"], yerr=h["spread"].fillna(0), color=colors[key], ls=ls, marker=mk,
                                ms=3, capsize=2, label=f"{label}" if est == "kde_upper" else None)
            ax.axhline(0, color="k", lw=0.8)
            truth = g.groupby("dim")["truth"].first()
            if len(truth):
                ax.set_title(f"N={n}, K={k}, {sep}\ntrue I(Y;M) = {truth.min():.2f}-{truth.max():.2f} bits",
                             fontsize=9)
            ax.set_xscale("log")
            if r == len(seps) - 1:
                ax.set_xlabel("D (activation values per sample)")
            if c == 0:
                ax.set_ylabel("estimate - true I(Y;M) (bits)")
    axes[0][0].legend(fontsize=7, title="kernel width (solid: KDE upper,\ndotted: Renyi)", title_fontsize=7)
    fig.suptitle("Known-answer benchmark: estimate - true I(Y;M) of the Gaussian mixture\n"
                 "(error bars: spread over sample draws)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)


COLUMNS = (("kde_upper", "fixed:0.2"), ("kde_upper", "fixed:1.0"), ("kde_upper", "rel:0.1"),
           ("kde_upper", "rel:1.0"), ("kde_upper", "silverman:1.0"), ("kde_lower", "rel:0.1"),
           ("renyi", "rel:1.0,alpha:1.01"))


def markdown(summary: pd.DataFrame) -> str:
    """I(Y;M) against the population truth: one row per case, one column per estimator and width;
    a cell is "estimate / permutation baseline" (means over draws)."""
    s = summary[summary.quantity == "I_YM"]
    cases = list(dict.fromkeys(zip(s.n, s.k, s.snr, s.dim)))
    head = ["N", "K", "separation", "D", "true I(Y;M)"] + [f"{e} {st.replace(',alpha:1.01', '')}" for e, st in COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for n, k, snr, dim in sorted(cases, key=lambda c: (c[0], c[1], c[2] > 4, c[3])):
        g = s[(s.n == n) & (s.k == k) & (s.snr == snr) & (s.dim == dim)]
        cells = [str(n), str(k), "near (snr 4)" if snr <= 4 else f"far (snr {snr:g})", f"{dim:,}",
                 f"**{g['truth'].iloc[0]:.2f}**"]
        for est, st in COLUMNS:
            h = g[(g.estimator == est) & (g.setting == st)]
            cells.append("-" if h.empty else f"{h['estimate'].iloc[0]:.2f} / {h['baseline'].iloc[0]:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a small grid (about a minute)")
    ap.add_argument("--repeats", type=int, default=3, help="sample sets drawn per case")
    ap.add_argument("--truth-draws", type=int, default=1000, help="Monte Carlo draws of the finite-sample truth")
    ap.add_argument("--pop-mc", type=int, default=400_000, help="Monte Carlo samples of the population truth (K > 2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--csv", type=Path, default=None, help="every draw (not written by default)")
    ap.add_argument("--summary", type=Path, default=Path("docs/known_answer_summary.csv"))
    ap.add_argument("--figure", type=Path, default=Path("docs/img/known_answer.png"))
    args = ap.parse_args()

    t0 = time.perf_counter()
    specs = default_specs(quick=args.quick)
    frame = benchmark(specs, kernels=BENCHMARK_KERNELS, repeats=args.repeats, seed=args.seed,
                      truth_draws=args.truth_draws, pop_mc=args.pop_mc, progress=True)
    seconds = time.perf_counter() - t0
    parts = []
    for truth in ("truth_pop", "truth_pop_noisy", "truth_sample"):
        p = summarize(frame, truth)
        p.insert(0, "against", truth.replace("truth_", ""))
        parts.append(p)
    summary = pd.concat(parts, ignore_index=True)
    for path, f in ((args.csv, frame), (args.summary, summary)):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            f.to_csv(path, index=False, float_format="%.5g")
    figure(summary[summary.against == "pop"], args.figure)
    print(f"\n{len(specs)} cases x {args.repeats} draws in {seconds:.0f} s -> {args.summary}, {args.figure}\n")
    print("I(Y;M): estimate / label-permutation baseline, mean over draws, against the true I(Y;M)\n")
    print(markdown(summary[summary.against == "pop"]))
    own = summary[(summary.against == "sample")]
    print("\nKDE against its own finite-sample target (the N-sample mixture + kernel noise): "
          "max |bias| per estimator and quantity")
    print(own.groupby(["estimator", "quantity"])["bias"].agg(lambda b: float(np.max(np.abs(b)))).to_string())
    worst_se = float(np.nanmax(frame[["truth_pop_err", "truth_sample_err"]].to_numpy()))
    print(f"\nlargest stated error of a truth: {worst_se:.2g} bits")
    if not math.isfinite(worst_se):
        raise SystemExit("a truth is not finite")


if __name__ == "__main__":
    main()
