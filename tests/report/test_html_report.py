"""The HTML report: content from the run's tables, claims, several runs, and a real browser."""

import base64
import html
import os
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from infoflow.cli import main
from infoflow.report import ceiling_warnings, data_facts, final_estimates, render_report, write_report
from infoflow.runs import RunDir

CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def report(run):
    return render_report(run)


def _imgs(doc):
    return re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', doc)


def test_report_embeds_every_figure_as_png(report):
    imgs = _imgs(report)
    assert len(imgs) == 8
    assert all(base64.b64decode(b)[:8] == b"\x89PNG\r\n\x1a\n" for b in imgs)
    for stem in ("information_planes", "uplots", "mi_vs_epoch", "layer_stats", "dice", "predictions",
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
    pd.testing.assert_series_equal(vals["kde_upper|noise_var=0.2|none|I_XM"], last.set_index("layer")["value"],
                                   check_names=False)
    assert vals.columns[2] == "kde_upper|noise_var=0.2|none|I_XM"
    assert ceil.values.sum() == int(mi[(mi["epoch"] == 4) & mi["quantity"].isin(["I_XM", "I_YM"])]["at_ceiling"].sum())
    assert report.count("&#9650;</td>") == ceil.values.sum()


def test_ceiling_warnings_name_layers_at_their_ceiling(run, report):
    mi = run.read_mi()
    warns = ceiling_warnings(mi)
    hit = mi[mi["at_ceiling"]]
    assert len(warns) == hit.groupby(["estimator", "setting", "labels", "quantity"]).ngroups
    kx = hit[(hit["estimator"] == "kde_upper") & (hit["quantity"] == "I_XM") & (hit["epoch"] == 4)]
    if len(kx):
        (w,) = [w for w in warns if w.startswith("kde_upper (noise_var=0.2): I(X;M)")]
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
    assert f"figures: {r.figures_dir} (8 figures, PNG and PDF)" in out and f"report:  {r.report_path}" in out
    assert report == r.report_path and len(_imgs(report.read_text())) == 8
    assert sorted(p.name for p in paths) == sorted(p.name for p in r.figures_dir.iterdir())
    stems = ["information_planes", "uplots", "mi_vs_epoch", "layer_stats", "dice", "predictions",
             "classes_coarse", "classes_kmeans"]
    assert sorted(p.name for p in paths) == sorted(f"{s}.{x}" for s in stems for x in ("png", "pdf"))
    for s in stems:
        assert (r.figures_dir / f"{s}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (r.figures_dir / f"{s}.pdf").read_bytes()[:5] == b"%PDF-"
    assert "figures written to" in (r.path / "run.log").read_text()


def _chromium():
    if not (shutil.which("chromium") and os.path.exists(CHROMEDRIVER)):
        try:
            proc = subprocess.run(["apt-get", "install", "-y", "chromium", "chromium-driver"], capture_output=True,
                                  text=True, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as exc:
            pytest.skip(f"chromium is not installed and apt-get could not run: {exc}")
        if proc.returncode != 0 or not os.path.exists(CHROMEDRIVER):
            pytest.skip(f"chromium is not installed and `apt-get install -y chromium chromium-driver` failed: "
                        f"{proc.stderr.strip()[-300:]}")
    return shutil.which("chromium")


def test_report_opens_offline_in_headless_chromium(report, tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    binary = _chromium()
    path = tmp_path / "report.html"
    path.write_text(report, encoding="utf-8")
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-extensions", "--no-first-run", "--disable-background-networking"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    try:
        driver.get(Path(path).resolve().as_uri())
        assert driver.title.startswith("infoflow report")
        imgs = driver.find_elements("tag name", "img")
        assert len(imgs) == 8
        loaded = driver.execute_script(
            "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight]);")
        assert all(c and w > 0 and h > 0 for c, w, h in loaded), loaded
        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        assert errors == []
    finally:
        driver.quit()
