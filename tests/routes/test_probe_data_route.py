"""Route 8 of issue 15: the probe set from the user's data -- a torch Dataset, a DataLoader, MONAI's
dict batches -- gives the same stored probe set as the arrays (infoflow.tracking.probe_arrays)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from infoflow.api import Tracker
from infoflow.config import MIConfig
from infoflow.errors import ConfigError
from infoflow.models import build_model
from infoflow.runs import RunDir

N, S = 12, 32
MI = MIConfig(kmeans_k=3, estimators=("kde",))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    images = rng.random((N, 3, S, S), dtype=np.float32)
    masks = (rng.random((N, 1, S, S)) > 0.6).astype(np.float32)
    return images, masks


class DictSamples(Dataset):
    """A map-style dataset of MONAI-style dict samples (tensors, masks without channel axis)."""

    def __init__(self, images, masks) -> None:
        self.images, self.masks = images, masks

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        return {"image": torch.from_numpy(self.images[i]), "label": torch.from_numpy(self.masks[i, 0])}


def _forms(images, masks):
    """(name, probe_images, probe_masks) of every accepted form of the same probe set."""
    t_img, t_msk = torch.from_numpy(images), torch.from_numpy(masks)
    return [
        ("tensors", t_img, t_msk),
        ("TensorDataset", TensorDataset(t_img, t_msk), None),
        ("DataLoader", DataLoader(TensorDataset(t_img, t_msk), batch_size=5, shuffle=False), None),
        ("dict batch", {"image": t_img, "label": t_msk}, None),
        ("dict batches", [{"image": t_img[i:i + 4], "label": t_msk[i:i + 4]} for i in range(0, N, 4)], None),
        ("dict Dataset", DictSamples(images, masks), None),
        ("dict DataLoader", DataLoader(DictSamples(images, masks), batch_size=5), None),
    ]


def _stored(path: Path) -> dict[str, np.ndarray]:
    with np.load(path / "probe.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def test_every_form_stores_the_probe_set_of_the_arrays(data, tmp_path: Path) -> None:
    images, masks = data
    model = build_model(model=1, width=2)
    with Tracker(model, images, masks, tmp_path / "arrays", mi=MI) as ref:
        want = _stored(ref.path)
        want_images = ref.probe.images.copy()
    assert {"ids", "labels_kmeans"} <= set(want) and len(want["ids"]) == N
    for name, probe, pm in _forms(images, masks):
        out = tmp_path / name.replace(" ", "_")
        with Tracker(model, probe, pm, out=out, mi=MI) as t:
            got = _stored(t.path)
            assert np.array_equal(t.probe.images, want_images), name
        assert got.keys() == want.keys(), name
        for k in want:
            assert np.array_equal(got[k], want[k]), (name, k)
        assert RunDir.open(out).load_probe().labelings.keys() == {"kmeans", "coarse"}


REFUSED = [  # (probe_images, probe_masks, what the error says)
    (lambda im, m: DataLoader(TensorDataset(torch.from_numpy(im), torch.from_numpy(m)), batch_size=4, shuffle=True),
     None, "the probe DataLoader shuffles: pass one with shuffle=False"),
    (lambda im, m: {"img": im, "seg": m}, None, "without the key(s) 'image', 'label'"),
    (lambda im, m: TensorDataset(torch.from_numpy(im), torch.from_numpy(m)), "masks",
     "probe_masks must be None when probe_images is a TensorDataset"),
    (lambda im, m: im, None, "probe_masks must be given with probe_images arrays"),
    (lambda im, m: 3.5, None, "probe_images must be arrays, a dict batch, a torch Dataset or a DataLoader"),
]


@pytest.mark.parametrize("make, pm, message", REFUSED)
def test_bad_probe_data_is_refused_in_one_line(data, tmp_path: Path, make, pm, message) -> None:
    images, masks = data
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Tracker(build_model(model=1, width=2), make(images, masks), masks if pm else None, out=tmp_path / "r", mi=MI)
    assert not (tmp_path / "r").exists()


def test_probe_keys_name_other_dict_keys(data, tmp_path: Path) -> None:
    images, masks = data
    with Tracker(build_model(model=1, width=2), {"img": images, "seg": masks}, out=tmp_path / "r", mi=MI,
                 probe_keys=("img", "seg")) as t:
        assert np.array_equal(t.probe.record.masks, masks)
