"""Route 4 of issue 15: `make bench` runs a script that exists and knows every benchmark it runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _bench_script() -> Path:
    text = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^bench:.*\n((?:\t.*\n)+)", text, re.M)
    assert recipe, "the Makefile has no bench target"
    scripts = re.findall(r"(bench/\S+\.py)", recipe.group(1))
    assert len(scripts) == 1, recipe.group(1)
    return ROOT / scripts[0]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_make_bench_script_exists_and_lists_the_benchmarks() -> None:
    script = _bench_script()
    assert script.is_file(), f"make bench runs {script}, which does not exist"
    res = _run(str(script), "--list", "--out", "OUTDIR")
    assert res.returncode == 0, res.stderr
    listed = re.findall(r"bench/(bench_\w+\.py)", res.stdout)
    assert listed and all((ROOT / "bench" / s).is_file() for s in listed), res.stdout
    assert {"bench_known_answer.py", "bench_mi.py", "bench_train.py"} <= set(listed)
    assert "OUTDIR" in res.stdout and "docs/" not in res.stdout  # quick runs write to --out, never over docs/
    assert _run(str(script), "--help").returncode == 0
    bad = _run(str(script), "--only", "nosuch", "--list")
    assert bad.returncode == 2 and "--only takes names among" in bad.stderr


@pytest.mark.parametrize("script", ["bench_known_answer.py", "bench_mi.py", "bench_train.py"])
def test_each_listed_benchmark_answers_help(script: str) -> None:
    res = _run(str(ROOT / "bench" / script), "--help")
    assert res.returncode == 0 and "usage:" in res.stdout, res.stderr[-2000:]
