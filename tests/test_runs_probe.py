"""probe.npz: what a run stores about its probe set, exactly (graded masks as integer numerators),
the named subsets, and the files of runs written before graded masks."""

from __future__ import annotations

import numpy as np
import pytest

from infoflow.config import MIConfig
from infoflow.errors import ConfigError, RunError
from infoflow.runs import RunDir, atomic_savez
from infoflow.tracking import ProbeSet, labelings_for, make_labelings


def _probe(n=12, s=8, den=255, seed=0):
    rng = np.random.default_rng(seed)
    masks = (rng.random((n, 1, s, s)) > 0.6).astype(np.float32)
    graded = rng.integers(0, den + 1, size=(n, 1, s, s)) / den  # float64, integers / den
    return rng.random((n, 3, s, s), dtype=np.float32), masks, graded


@pytest.mark.parametrize("den", [255, 1020])
def test_round_trip_is_exact(tmp_path, den):
    images, masks, graded = _probe(den=den)
    mi = MIConfig(labels=("kmeans", "coarse"), kmeans_k=3, coarse_grid=2)
    split = ["train"] * 9 + ["test"] * 3
    p = ProbeSet.build(images, masks, [f"s{i}" for i in range(12)], mi, y_masks=graded, fit_y_masks=graded[:9],
                       fit_masks=masks[:9], split=split, y_den=den, y_from="code")
    run = RunDir.create(tmp_path / "r", {"x": 1})
    p.save(run)
    back = run.load_probe()
    assert back.ids == p.ids and back.y_from == "code" and back.y_den == den
    assert np.array_equal(back.y_masks, graded) and back.y_masks.dtype == np.float64
    assert np.array_equal(back.fit_y_masks, graded[:9]) and np.array_equal(back.fit_masks, masks[:9])
    assert np.array_equal(back.masks, masks) and back.split.tolist() == split
    for k in ("kmeans", "coarse"):
        assert np.array_equal(back.labelings[k], p.labelings[k])
    # the classes were made from the graded masks, K-means fitted on the training ones
    assert np.array_equal(back.labelings["coarse"], make_labelings(back, mi)["coarse"])
    assert back.subset("test").tolist() == [9, 10, 11] and back.subset("all") is None
    with pytest.raises(RunError, match="probe subset must be one of"):
        back.subset("val")


def test_stored_classes_are_reused_and_others_made(tmp_path):
    images, masks, graded = _probe()
    mi = MIConfig(labels=("kmeans",), kmeans_k=3)
    p = ProbeSet.build(images, masks, [str(i) for i in range(12)], mi, y_masks=graded, y_den=255)
    fake = {"kmeans": np.arange(12) % 2}  # what a run stored (not what K-means would give)
    p.record.labelings = fake
    same = labelings_for(p.record, mi, mi)
    assert same["kmeans"] is fake["kmeans"]
    other = labelings_for(p.record, MIConfig(labels=("kmeans", "coarse"), kmeans_k=3, kmeans_seed=1), mi)
    seed1 = MIConfig(labels=("kmeans",), kmeans_k=3, kmeans_seed=1)
    assert np.array_equal(other["kmeans"], make_labelings(p.record, seed1)["kmeans"])  # made anew
    assert np.array_equal(other["coarse"], make_labelings(p.record, MIConfig(labels=("coarse",)))["coarse"])
    binary = labelings_for(p.record, MIConfig(labels=("coarse",), y_from="binary"), mi)["coarse"]
    from infoflow.estimators import coarsen_labels

    assert np.array_equal(binary, coarsen_labels(masks))  # the training masks, not the graded ones


def test_old_probe_files_still_load(tmp_path):
    """Runs written before graded masks stored packed binary masks only: Y came from them."""
    run = RunDir.create(tmp_path / "old", {"x": 1})
    masks = (np.arange(4 * 16).reshape(4, 1, 4, 4) % 3 == 0).astype(np.float32)
    atomic_savez(run.path / "probe.npz", ids=np.array(list("abcd")),
                 masks_packed=np.packbits(masks.astype(bool).reshape(4, -1), axis=1),
                 fit_masks_packed=np.packbits(masks.astype(bool).reshape(4, -1), axis=1),
                 mask_shape=np.array([1, 4, 4]), n_fit=np.int64(4), labelings=np.array(["coarse"]),
                 labels_coarse=np.array([0, 1, 0, 1]), h_y_coarse=np.float64(1.0))
    rec = run.load_probe()
    assert rec.y_from == "binary" and rec.split is None and np.array_equal(rec.y_masks, masks)
    assert rec.labelings["coarse"].tolist() == [0, 1, 0, 1]
    with pytest.raises(RunError, match="does not record each sample's split"):
        rec.subset("train")


def test_bad_probe_sets_are_refused():
    images, masks, graded = _probe()
    with pytest.raises(ConfigError, match="mi.kmeans_k = 20 must be between 1 and"):
        ProbeSet.build(images, masks, [str(i) for i in range(12)], MIConfig(kmeans_k=20))
    with pytest.raises(ConfigError, match="MI needs at least 2"):
        ProbeSet.build(images[:1], masks[:1], ["a"], MIConfig(labels=("coarse",)))
    with pytest.raises(ConfigError, match="one class per probe sample"):
        ProbeSet.build(images, masks, [str(i) for i in range(12)], MIConfig(), labelings={"k": [0, 1]})
