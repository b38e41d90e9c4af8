"""Run every benchmark of bench/ (``make bench``): each in its own process, quick settings by default.

Each benchmark is listed once in :data:`BENCHES` with the arguments of its quick run (a small
case that checks it still runs and prints its table, a few minutes in all on two cores) and of
its full run (the measurements docs/ARCHITECTURE.md and docs/estimates.md report, an hour or more,
some needing the DSB 2018 data in ../shared/data/dsb2018). Output files go to ``--out``
(default runs/bench), never over the figures and tables in docs/.

Usage: python bench/run_all.py [--list] [--full] [--only NAME[,NAME...]] [--out DIR]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

#: name -> (script in bench/, what it measures, quick arguments, full arguments); "{out}" is --out.
BENCHES: dict[str, tuple[str, str, list[str], list[str]]] = {
    "known_answer": (
        "bench_known_answer.py", "MI estimators against known answers (Gaussian mixtures)",
        ["--quick", "--repeats", "1", "--summary", "{out}/known_answer_summary.csv",
         "--figure", "{out}/known_answer.png"],
        ["--summary", "{out}/known_answer_summary.csv", "--figure", "{out}/known_answer.png",
         "--csv", "{out}/known_answer_draws.csv"],
    ),
    "mi": (
        "bench_mi.py", "cost of a logged epoch against the original workflow and a lower bound",
        ["--data", "synthetic", "--n", "48", "--size", "32", "--width", "4", "--k", "8", "--train-steps", "2",
         "--repeats", "1", "--skip-original", "--openblas-env", "given", "--json", "{out}/bench_mi.json"],
        ["--state", "both", "--repeats", "2", "--json", "{out}/bench_mi.json"],
    ),
    "train": (
        "bench_train.py", "training throughput of Model 1 against the matmul peak",
        ["--size", "32", "--width", "4", "--batch", "8", "--steps", "2"],
        [],
    ),
}


def command(name: str, out: Path, *, full: bool) -> list[str]:
    """The command line that runs benchmark ``name``."""
    script, _, quick, whole = BENCHES[name]
    args = [a.replace("{out}", str(out)) for a in (whole if full else quick)]
    return [sys.executable, str(HERE / script), *args]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--list", action="store_true", help="list the benchmarks and their commands; run nothing")
    ap.add_argument("--full", action="store_true", help="the full measurements (an hour or more) instead of "
                                                         "the quick runs")
    ap.add_argument("--only", default=None, help=f"comma-separated names among {', '.join(BENCHES)}")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "bench", help="folder for their output files")
    args = ap.parse_args(argv)
    names = list(BENCHES)
    if args.only is not None:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        bad = [n for n in names if n not in BENCHES]
        if bad or not names:
            ap.error(f"--only takes names among {', '.join(BENCHES)}; got {args.only!r}")
    if args.list:
        for n in names:
            print(f"{n}: {BENCHES[n][1]}\n    {' '.join(command(n, args.out, full=args.full))}")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    failed = []
    for n in names:
        cmd = command(n, args.out, full=args.full)
        print(f"== {n}: {' '.join(cmd)}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call(cmd, cwd=ROOT)
        print(f"== {n}: exit status {rc} after {time.perf_counter() - t0:.0f} s", flush=True)
        if rc != 0:
            failed.append(n)
    print(f"{len(names) - len(failed)} of {len(names)} benchmarks ran" + (f"; failed: {', '.join(failed)}" if failed
                                                                            else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
