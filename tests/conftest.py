import importlib.util
import os
import shutil
import sys
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")


def _helper():
    name = "_infoflow_runs_helper"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).parent / "plots" / "_runs_helper.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


@pytest.fixture(scope="session")
def helper():
    return _helper()


@pytest.fixture(scope="session")
def run(tmp_path_factory, helper):
    return helper.real_run(tmp_path_factory)


@pytest.fixture(scope="session")
def unc(run, helper):
    """A real uncertainty table of the small run's last epoch (kernels fixed:0.2, rel:0.1, rel:1, silverman)."""
    return helper.real_uncertainty(run)


#: Debian's chromium-driver (`make browser` installs it with chromium; a test never does).
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture
def browser():
    """:func:`open_in_chromium`, for tests."""
    return open_in_chromium


def open_in_chromium(path: Path) -> dict:
    """Open an HTML file in the machine's headless Chromium (Debian's chromium and chromium-driver;
    `make browser` installs them, a test never does): its title, each image's (complete, width,
    height) and the console's errors. Skips when Chromium is not installed."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    if not (shutil.which("chromium") and os.path.exists(CHROMEDRIVER)):
        pytest.skip("Chromium and ChromeDriver are not installed: run `make browser` (Debian's chromium and "
                    "chromium-driver) for the browser test")
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-extensions", "--no-first-run", "--disable-background-networking"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    try:
        driver.get(Path(path).resolve().as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight]);")
        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        return {"title": driver.title, "images": images, "errors": errors}
    finally:
        driver.quit()


#: The real DSB 2018 stage-1 zips, read in place (../shared/data/dsb2018 from the repository root).
DSB = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "dsb2018"


@pytest.fixture(scope="session")
def dsb_small(tmp_path_factory):
    """24 training and 24 test samples of DSB 2018 at 32 x 32 (the first ids, sorted); skips
    when the zips are not there."""
    if not ((DSB / "stage1_train.zip").is_file() and (DSB / "stage1_test.zip").is_file()):
        pytest.skip(f"DSB 2018 zips not found at {DSB.resolve()}")
    from infoflow.config import DataConfig
    from infoflow.data import load_splits

    cache = tmp_path_factory.mktemp("dsb-cache")
    return load_splits(DataConfig(source=str(DSB), size=32, limit=24, cache_dir=str(cache)), progress=False)
