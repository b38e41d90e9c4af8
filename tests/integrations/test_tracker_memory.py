"""MITracker keeps freed memory from its first logged epoch until it is closed (mi.retain_memory)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from infoflow.config import MIConfig
from infoflow.models import build_model
from infoflow.probe import heap
from infoflow.runs import RunDir
from infoflow.tracking import MITracker, ProbeSet


def _tracker(tmp_path, retain: bool) -> MITracker:
    rng = np.random.default_rng(0)
    images = rng.random((8, 3, 32, 32), dtype=np.float32)
    masks = (rng.random((8, 1, 32, 32)) > 0.5).astype(np.float32)
    mi = MIConfig(labels=("kmeans",), estimators=("kde", "bin"), retain_memory=retain)
    probe = ProbeSet.build(images, masks, [str(i) for i in range(8)], mi, labelings={"kmeans": np.arange(8) % 2})
    return MITracker(RunDir.create(tmp_path / f"run-{retain}", {"test": True}), probe, mi)


@pytest.mark.parametrize("retain", [True, False])
def test_memory_kept_between_logged_epochs_until_close(tmp_path, retain: bool) -> None:
    torch.manual_seed(0)
    model = build_model(model=1, width=2)
    depth = heap._depth  # trackers of other tests not yet collected may hold it too
    with _tracker(tmp_path, retain) as tracker:
        t1 = tracker.log_epoch(model, 1)
        assert heap._depth == depth + retain  # held between logged epochs, or not at all
        t2 = tracker.log_epoch(model, 2)
        assert heap._depth == depth + retain
    assert heap._depth == depth  # closed: given back (settings restored when no one else holds it)
    tracker.close()  # idempotent
    cols = ["layer", "estimator", "quantity", "value"]
    np.testing.assert_array_equal(t1[cols[:3]].to_numpy(), t2[cols[:3]].to_numpy())
    np.testing.assert_array_equal(t1["value"].to_numpy(), t2["value"].to_numpy())  # same weights, same table
