"""Route 2 of issue 15: `infoflow estimate RUN --kernel rel:0.1` (docs/estimates.md), then `infoflow
plot` and `infoflow report` draw the stored estimate table, chosen by setting or by tag, with the
network's skip arcs."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from infoflow.cli import main
from infoflow.runs import RunDir


@pytest.fixture(scope="module")
def estimated(run, tmp_path_factory):
    """A copy of the small real run, re-estimated with a scale-aware kernel width."""
    path = tmp_path_factory.mktemp("estimated") / "run"
    shutil.copytree(run.path, path)
    assert main(["estimate", str(path), "--kernel", "rel:0.1", "--estimators", "kde", "--quiet"]) == 0
    r = RunDir.open(path)
    (table,) = r.estimate_tables()
    return r, table


def _new_setting(r: RunDir, table: Path) -> str:
    """A kde_upper setting the stored table holds and mi.csv does not (its string, as written)."""
    est = pd.read_csv(table)
    own = set(r.read_mi()["setting"].astype(str))
    new = [s for s in dict.fromkeys(est.loc[est["estimator"] == "kde_upper", "setting"].astype(str)) if s not in own]
    assert new, "the re-estimation added no setting"
    return new[0]


def _svg_ids(path: Path) -> set[str]:
    return set(re.findall(r'id="([^"]+)"', path.read_text()))


def test_plot_by_setting_draws_the_estimate_table_with_skip_arcs(estimated, tmp_path: Path, capsys) -> None:
    r, table = estimated
    setting = _new_setting(r, table)
    out = tmp_path / "by-setting"
    assert main(["plot", str(r.path), "--setting", setting, "--only", "uplots,information_planes,mi_vs_epoch",
                 "--format", "svg", "--out", str(out)]) == 0
    assert "3 figure files written" in capsys.readouterr().out
    ids = _svg_ids(out / "uplots.svg")
    cfg = RunDir.open(r.path).read_config()
    assert {"skip-1-20", "skip-3-17", "skip-5-14", "skip-7-11"} <= ids, sorted(i for i in ids if "skip" in i)
    text = (out / "uplots.svg").read_text()
    assert setting in text and table.name in text  # the title names the setting and the table drawn
    assert cfg["name"] in (out / "information_planes.svg").read_text()


def test_plot_by_tag_and_by_file_name(estimated, tmp_path: Path, capsys) -> None:
    r, table = estimated
    tag = table.name[len("mi-"):-len(".csv")]
    for i, name in enumerate((tag, table.name, str(table))):
        out = tmp_path / f"t{i}"
        assert main(["plot", str(r.path), "--estimates", name, "--only", "uplots", "--format", "svg",
                     "--out", str(out)]) == 0, capsys.readouterr().err
        assert table.name in (out / "uplots.svg").read_text() and "skip-1-20" in _svg_ids(out / "uplots.svg")


def test_report_draws_the_estimate_table(estimated, capsys, browser) -> None:
    r, table = estimated
    setting = _new_setting(r, table)
    assert main(["report", str(r.path), "--setting", setting, "--only", "uplots"]) == 0, capsys.readouterr().err
    doc = r.report_path.read_text()
    assert f"stored estimate table <code>estimates/{table.name}</code>" in doc
    assert "uplots: not drawn" not in doc and 'id="fig-uplots"' in doc
    est = pd.read_csv(table)
    last = est[(est["epoch"] == est["epoch"].max()) & (est["setting"] == setting)]
    assert len(last) and setting in doc  # the final-epoch estimates table shows the table's setting
    seen = browser(r.report_path)
    assert seen["errors"] == [] and all(c and w > 0 for c, w, _ in seen["images"])


REFUSED = [  # (arguments after RUN, what the one error line says)
    (["--setting", "nosuch=1"], "no MI table holds the default estimator with setting 'nosuch=1' (mi.csv: "),
    (["--estimates", "nosuch"], "has no estimate table 'nosuch': its tags are "),
]


@pytest.mark.parametrize("extra, message", REFUSED)
def test_unknown_setting_or_table_is_one_line(estimated, tmp_path: Path, capsys, extra, message) -> None:
    r, table = estimated
    assert main(["plot", str(r.path), *extra, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert table.name[3:-4] in err or table.name in err
