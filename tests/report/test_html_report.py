"""The HTML report: content from the run's tables, claims, several runs, and a real browser."""

import base64
import html
import re
import shutil

import pandas as pd
import pytest

from infoflow.cli import main
from infoflow.report import ceiling_warnings, data_facts, final_estimates, render_report, write_report
from infoflow.runs import RunDir



@pytest.fixture(scope="module")
def report(run):
    return render_report(run)


def _imgs(doc):
    return re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', doc)


def test_report_embeds_every_figure_as_png(report):
    imgs = _imgs(report)
    assert len(imgs) == 9
    assert all(base64.b64decode(b)[:8] == b"\x89PNG\r\n\x1a\n" for b in imgs)
    for stem in ("information_planes", "uplots", "kde_bounds", "mi_vs_epoch", "layer_stats", "dice", "predictions",
                 "classes_coarse", "classes_kmeans"):
        assert f'id="fig-{stem}"' in report
    assert "http://" not in report and "https://" not in report.replace("https://arxiv", "")  # nothing fetched


def test_report_shows_config_and_data_facts(run, report):
    facts = data_facts(run)
    assert facts["training images"] == 36 and facts["validation images"] == 4
    assert facts["S (image size)"] == 32 and facts["mask rule"] == "code" and facts["source"] == "synthetic"
    assert 0 < facts["foreground fraction (probe set)"] < 1
    assert "K-means, K = 4" in facts["classes Y: kmeans"]
    for key, value in facts.items():
        assert f"<th>{html.escape(key)}</th><td>{html.escape(str(value))}</td>" in report
    assert "&quot;n_synthetic&quot;: 40" in report  # the config, as JSON


def test_report_estimates_table_is_the_final_epoch(run, report):
    vals, ceil = final_estimates(run.read_mi())
    assert list(vals.index) == list(range(23))
    mi = run.read_mi()
    last = mi[(mi["epoch"] == 4) & (mi["estimator"] == "kde_upper") & (mi["quantity"] == "I_XM")]
    pd.testing.assert_series_equal(vals["kde_upper|fixed:0.2|none|I_XM"], last.set_index("layer")["value"],
                                   check_names=False)
    assert vals.columns[2] == "kde_upper|fixed:0.2|none|I_XM"
    assert ceil.values.sum() == int(mi[(mi["epoch"] == 4) & mi["quantity"].isin(["I_XM", "I_YM"])]["at_ceiling"].sum())
    assert report.count("&#9650;</td>") == ceil.values.sum()


def test_ceiling_warnings_name_layers_at_their_ceiling(run, report):
    mi = run.read_mi()
    warns = ceiling_warnings(mi)
    hit = mi[mi["at_ceiling"]]
    assert len(warns) == hit.groupby(["estimator", "setting", "labels", "quantity"]).ngroups
    kx = hit[(hit["estimator"] == "kde_upper") & (hit["quantity"] == "I_XM") & (hit["epoch"] == 4)]
    if len(kx):
        (w,) = [w for w in warns if w.startswith("kde_upper (fixed:0.2): I(X;M)")]
        assert f"in {kx['layer'].nunique()} of 23 layers at the final epoch 4" in w
    for w in warns:
        assert f'<div class="warn">{html.escape(w)}</div>' in report


def test_claims_table_rendered_when_present(run, tmp_path, report):
    assert "No claims table (claims.csv) in this run." in report
    shutil.copytree(run.path, tmp_path / "r")
    r = RunDir(tmp_path / "r")
    pd.DataFrame({"claim": ["U-shape of I(X;M)", "I(Y;M_17) reaches max by 1000"],
                  "status": ["pass", "fail"], "detail": ["dip at 10 <b>ok</b>", "0.4 < 0.9"]}).to_csv(
        r.path / "claims.csv", index=False)
    doc = render_report(r, only=["dice"])
    assert "<td class=status-pass>pass</td>" in doc and "<td class=status-fail>fail</td>" in doc
    assert "dip at 10 &lt;b&gt;ok&lt;/b&gt;" in doc  # escaped
    assert len(_imgs(doc)) == 1


def test_report_of_a_run_without_mi(run, tmp_path):
    shutil.copytree(run.path, tmp_path / "r")
    r = RunDir(tmp_path / "r")
    for name in ("mi.csv", "probe.npz"):
        (r.path / name).unlink()
    doc = render_report(r, only=["dice", "uplots", "classes_kmeans"])
    assert "No MI estimates in this run (trained without MI)." in doc
    assert "uplots: not drawn (" in doc and "classes_kmeans: not drawn (" in doc
    assert len(_imgs(doc)) == 1 and "Estimates at the final epoch" not in doc
    assert "<th>training images</th><td>36</td>" in doc


def test_report_of_several_runs_compares_them(run, helper, tmp_path, capsys):
    a = helper.derived_run(run, tmp_path / "runs" / "m1s1", seed=1, jitter=0.2, name="m1-s1")
    b = helper.derived_run(run, tmp_path / "runs" / "m3", model=3, name="m3")
    out = tmp_path / "cmp.html"
    assert main(["report", str(run.path), str(a.path), str(b.path), "--out", str(out), "--title", "cmp",
                 "--only", "dice,uplots"]) == 0
    assert f"report written to {out}" in capsys.readouterr().out
    doc = out.read_text()
    assert 'id="comparison"' in doc and 'id="fig-dice-all"' in doc
    assert 'id="fig-planes-Model 1"' in doc and 'id="fig-uplots-Model 1"' in doc  # two seeds of Model 1
    assert 'id="fig-planes-Model 3"' not in doc
    assert len(_imgs(doc)) == 3 + 3 * 2 and doc.count('id="fig-uplots"') == 3
    assert main(["report", str(run.path), "--only", "nope"]) == 2
    assert write_report([a, b], only=["dice"]) == tmp_path / "runs" / "report.html"


def test_finish_run_writes_figures_and_report(run, tmp_path, capsys):
    from infoflow.cli.plot_cmd import finish_run

    shutil.copytree(run.path, tmp_path / "r")
    r = RunDir(tmp_path / "r")
    paths, report = finish_run(r)
    out = capsys.readouterr().out
    assert f"figures: {r.figures_dir} (9 figures, PNG and PDF)" in out and f"report:  {r.report_path}" in out
    assert report == r.report_path and len(_imgs(report.read_text())) == 9
    assert sorted(p.name for p in paths) == sorted(p.name for p in r.figures_dir.iterdir())
    stems = ["information_planes", "uplots", "kde_bounds", "mi_vs_epoch", "layer_stats", "dice", "predictions",
             "classes_coarse", "classes_kmeans"]
    assert sorted(p.name for p in paths) == sorted(f"{s}.{x}" for s in stems for x in ("png", "pdf"))
    for s in stems:
        assert (r.figures_dir / f"{s}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (r.figures_dir / f"{s}.pdf").read_bytes()[:5] == b"%PDF-"
    assert "figures written to" in (r.path / "run.log").read_text()


def test_report_opens_offline_in_headless_chromium(report, tmp_path, browser):
    path = tmp_path / "report.html"
    path.write_text(report, encoding="utf-8")
    seen = browser(path)
    assert seen["title"].startswith("infoflow report")
    assert len(seen["images"]) == 9
    assert all(c and w > 0 and h > 0 for c, w, h in seen["images"]), seen["images"]
    assert seen["errors"] == []


# -- estimate quality and robustness of the claims -------------------------------------------------
@pytest.fixture(scope="module")
def qrun(run, unc, helper, tmp_path_factory):
    """A copy of the run whose RUN/estimates holds a real uncertainty table and robustness tables."""
    return helper.with_estimates(run, tmp_path_factory.mktemp("quality") / "r", uncertainty=unc,
                                 robustness=helper.real_robustness(run))


@pytest.fixture(scope="module")
def qdoc(qrun):
    return render_report(qrun, only=["dice"])


def _quality_table(doc):
    (table,) = re.findall(r'<table class="quality">(.*?)</table>', doc, flags=re.S)
    return dict((int(k), row) for k, row in re.findall(r'<tr data-layer="(\d+)">(.*?)</tr>', table, flags=re.S))


def _cells(row):
    return re.findall(r"<td([^>]*)>(.*?)</td>", row, flags=re.S)


def _f(x):
    return "" if pd.isna(x) else f"{x:.3f}"


def test_quality_section_shows_the_table_of_the_last_epoch(qdoc, unc):
    assert '<h3 id="quality-0">Estimate quality</h3>' in qdoc and 'id="fig-quality"' in qdoc
    assert len(_imgs(qdoc)) == 2  # dice + the quality figure
    assert "mi-q.uncertainty.csv</code>: epoch 4, kde_upper, Y: kmeans" in qdoc
    assert "How to read this." in qdoc and 'id="quality-missing-0"' not in qdoc
    rows = _quality_table(qdoc)
    assert sorted(rows) == list(range(23))  # one row per layer
    settings = list(dict.fromkeys(unc["setting"]))
    header = re.search(r'<table class="quality">(.*?)</tr>', qdoc, flags=re.S).group(1)
    assert re.findall(r"<th colspan=4>(.*?)</th>", header) == settings
    k = unc[unc["estimator"] == "kde_upper"]
    n_ceiling = n_chance = 0
    for layer, row in rows.items():
        cells = _cells(row)
        assert len(cells) == 2 + 4 * len(settings)
        assert cells[1][1] == html.escape(k.loc[k["layer"] == layer, "name"].iloc[0])
        for j, st in enumerate(settings):
            x = k[(k["layer"] == layer) & (k["setting"] == st) & (k["quantity"] == "I_XM")].iloc[0]
            y = k[(k["layer"] == layer) & (k["setting"] == st) & (k["quantity"] == "I_YM")
                  & (k["labels"] == "kmeans")].iloc[0]
            (ax, tx), (ay, ty), (_, tb), (_, tp) = cells[2 + 4 * j: 6 + 4 * j]
            assert tx.startswith(f"{x['value']:.3f} [{x['ci_lo']:.3f}, {x['ci_hi']:.3f}]")
            assert ty.startswith(f"{y['value']:.3f} [{y['ci_lo']:.3f}, {y['ci_hi']:.3f}]")
            assert tb == f"{y['baseline_mean']:.3f}, {y['baseline_hi']:.3f}" and tp == _f(y["p_value"])
            # marks exactly where the table says: at the ceiling (within 1 %), not above the baseline
            x_ceil = bool(x["value"] >= 0.99 * x["log2n"] - 1e-12)
            y_ceil = bool(y["value"] >= 0.99 * y["h_y"] - 1e-12)
            chance = bool(y["p_value"] > 1 - y["level"])
            assert ("ceiling" in ax) == x_ceil and ("&#9650;" in tx) == x_ceil and "chance" not in ax
            assert ("ceiling" in ay) == y_ceil and ("&#9650;" in ty) == y_ceil
            assert ("chance" in ay) == chance and ("&#9675;" in ty) == chance
            n_ceiling += x_ceil + y_ceil
            n_chance += chance
    assert 0 < n_ceiling < 2 * 23 * len(settings) and 0 < n_chance < 23 * len(settings)  # both kinds occur
    assert f"{n_ceiling} of {2 * 23 * len(settings)} estimates sit at their ceiling" in qdoc
    assert f"{n_chance} of {23 * len(settings)} I(Y;M) estimates are not above their permutation baseline" in qdoc


def test_robustness_section_lists_statements_and_the_grid(qdoc, run, helper):
    verdicts, summary = helper.real_robustness(run)
    assert '<h3 id="robustness-0">Robustness of the claims</h3>' in qdoc
    for statement in summary["statement"]:
        assert f"<li>{html.escape(statement)}</li>" in qdoc
    (grid,) = re.findall(r'<table class="robustness">(.*?)</table>', qdoc, flags=re.S)
    order = ["fixed:0.2", "rel:0.1", "rel:1.0", "silverman:1.0"]
    assert re.findall(r"<th>(.*?)</th>", grid) == ["claim"] + order
    words = {True: "holds", False: "fails", None: "undecided"}
    for r in verdicts.itertuples(index=False):
        row = re.search(rf'<tr data-claim="{r.claim}">(.*?)</tr>', grid, flags=re.S).group(1)
        cell = re.search(rf'<td class=(\S+) data-setting="{re.escape(r.setting)}"[^>]*>(\w+)</td>', row)
        assert cell.group(2) == words[r.holds]
        assert cell.group(1) == {True: "status-pass", False: "status-fail", None: "status-other"}[r.holds]
    assert "layers &lt;at&gt; H(Y)" in grid and "<at>" not in grid  # details as escaped tooltips
    assert {"holds", "fails", "undecided"} <= set(re.findall(r">(holds|fails|undecided)</td>", grid))


def test_report_without_estimates_has_no_quality_section(run):
    doc = render_report(run, only=["dice"])
    for text in ('id="quality-0"', 'id="robustness-0"', 'id="fig-quality"', '<table class="quality">',
                 '<table class="robustness">'):
        assert text not in doc
    cmd = (f"infoflow estimate {run.path} --kernel fixed:0.2,rel:0.1,rel:1.0,silverman:1.0 --uncertainty --epochs 4 "
           "--repeats 10 --permutations 20")
    assert f"<code>{html.escape(cmd)}</code>" in doc and doc.count('id="quality-missing-0"') == 1
    assert f"<code>infoflow estimate {run.path} --kernel fixed:0.2,rel:0.1,rel:1.0,silverman:1.0 --robustness</code>" in doc


def test_explicit_tables_and_only_a_summary(run, unc, helper, tmp_path):
    path = tmp_path / "elsewhere.uncertainty.csv"
    unc[unc["setting"] == "rel:0.1"].to_csv(path, index=False)
    verdicts, summary = helper.real_robustness(run)
    only_summary = tmp_path / "x.robustness-summary.csv"
    summary.to_csv(only_summary, index=False)
    doc = render_report(run, only=["dice"], uncertainty=path, robustness=only_summary)
    assert f"<code>{path}</code>: epoch 4" in doc
    assert re.findall(r"<th colspan=4>(.*?)</th>", doc) == ["rel:0.1"]
    assert all(f"<li>{html.escape(s)}</li>" in doc for s in summary["statement"])
    assert '<table class="robustness">' not in doc  # no verdicts file beside the summary
    doc2 = render_report(run, only=["dice"], uncertainty=unc, robustness=verdicts)  # tables, summary made here
    assert len(re.findall(r"<th colspan=4>", doc2)) == 4 and '<table class="robustness">' in doc2
    assert all(f"<li>{html.escape(s)}</li>" in doc2 for s in summary["statement"])
    with pytest.raises(ValueError, match="nope.uncertainty.csv"):
        render_report(run, only=["dice"], uncertainty=tmp_path / "nope.uncertainty.csv")
    with pytest.raises(ValueError, match="one per run"):
        render_report([run, run], only=["dice"], uncertainty=path)
    bad = helper.with_estimates(run, tmp_path / "bad", uncertainty=unc.drop(columns=["ci_lo"]))
    doc3 = render_report(bad, only=["dice"])  # a discovered table that cannot be shown: a note, not a crash
    assert "mi-q.uncertainty.csv not shown (" in doc3 and "lacks the column(s) ci_lo" in doc3
    assert 'id="quality-0"' not in doc3


def test_cli_report_quality_computes_a_table_once(run, tmp_path, capsys):
    shutil.copytree(run.path, tmp_path / "r")
    r = RunDir(tmp_path / "r")
    out = tmp_path / "q.html"
    assert main(["report", str(r.path), "--quality", "--only", "dice", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    (made,) = list((r.path / "estimates").glob("*.uncertainty.csv"))
    assert made.name == "mi-fixed0.2-rel0.1-rel1-silverman1_kmeans-coarse_k4.uncertainty.csv"
    assert f"-> {made}" in said and made.with_name(made.name.replace("uncertainty", "subsamples")).exists()
    t = pd.read_csv(made)
    assert set(t["setting"]) == {"fixed:0.2", "rel:0.1", "rel:1.0", "silverman:1.0"}
    assert set(t["epoch"]) == {4} and set(t["estimator"]) == {"kde_upper"}
    assert set(t["repeats"]) == {10} and set(t.loc[t["quantity"] == "I_YM", "permutations"]) == {20}
    doc = out.read_text()
    assert '<h3 id="quality-0">Estimate quality</h3>' in doc and f"<code>{made}</code>" in doc
    stamp = made.stat().st_mtime_ns
    assert main(["report", str(r.path), "--quality", "--only", "dice", "--out", str(out)]) == 0
    assert "uncertainty table of" not in capsys.readouterr().out and made.stat().st_mtime_ns == stamp  # found, kept
    assert main(["report", str(r.path), str(run.path), "--uncertainty", str(made), "--only", "dice"]) == 2
    assert "--uncertainty was given 1 time(s) for 2 run(s)" in capsys.readouterr().err
    assert main(["report", str(r.path), "--robustness", str(made), "--only", "dice"]) == 2
    assert "robustness-summary.csv" in capsys.readouterr().err
