"""A small subset of the real DSB 2018 stage-1 data (../shared/data/dsb2018 from the repository root)."""

from __future__ import annotations

from pathlib import Path

import pytest

DSB = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "dsb2018"


@pytest.fixture(scope="session")
def dsb_small(tmp_path_factory):
    """24 training and 24 test samples of DSB 2018 at 32 x 32 (the first ids, sorted)."""
    if not ((DSB / "stage1_train.zip").is_file() and (DSB / "stage1_test.zip").is_file()):
        pytest.skip(f"DSB 2018 zips not found at {DSB.resolve()}")
    from infoflow.config import DataConfig
    from infoflow.data import load_splits

    cache = tmp_path_factory.mktemp("dsb-cache")
    return load_splits(DataConfig(source=str(DSB), size=32, limit=24, cache_dir=str(cache)), progress=False)
