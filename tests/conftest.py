import importlib.util
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
