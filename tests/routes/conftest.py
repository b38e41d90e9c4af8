"""Shared pieces of the end-to-end route tests (issue 15): the documented data (the headless browser:
``browser`` of tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DSB = ROOT / ".." / "shared" / "data" / "dsb2018"


@pytest.fixture(scope="session")
def dsb_tiny(tmp_path_factory):
    """The documented data (../shared/data/dsb2018), 24 training and 24 test samples at 32 x 32."""
    if not ((DSB / "stage1_train.zip").is_file() and (DSB / "stage1_test.zip").is_file()):
        pytest.skip(f"DSB 2018 zips not found at {DSB.resolve()}")
    from infoflow.config import DataConfig
    from infoflow.data import load_splits

    cache = tmp_path_factory.mktemp("dsb-cache")
    return load_splits(DataConfig(source=str(DSB), size=32, limit=24, cache_dir=str(cache)), progress=False)
