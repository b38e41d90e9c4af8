"""InfoflowCallback in a real Lightning Trainer.fit on CPU (MONAI BasicUNet, real DSB data)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from infoflow.config import MIConfig
from infoflow.errors import ConfigError
from infoflow.runs import RunDir
from infoflow.train import dice_per_image

L = pytest.importorskip("lightning.pytorch")
pytestmark = pytest.mark.filterwarnings("ignore:.*LeafSpec.*")
monai_nets = pytest.importorskip("monai.networks.nets")

from infoflow.integrations.lightning import InfoflowCallback  # noqa: E402

MI = MIConfig(kmeans_k=4, batch_size=16)


class LitSeg(L.LightningModule):
    """A LightningModule without forward: the callback probes its only child, ``net``."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = monai_nets.BasicUNet(spatial_dims=2, in_channels=3, out_channels=1, features=(4, 4, 8, 8, 16, 4))

    def training_step(self, batch, _):
        x, y = batch
        logits = self.net(x)
        loss = F.binary_cross_entropy_with_logits(logits, y)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        self.log("train_dice", dice_per_image(torch.sigmoid(logits), y).mean(), on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, _):
        x, y = batch
        logits = self.net(x)
        self.log("val_loss", F.binary_cross_entropy_with_logits(logits, y))
        self.log("val_dice", dice_per_image(torch.sigmoid(logits), y).mean())

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2)


def _loaders(splits):
    from torch.utils.data import DataLoader, TensorDataset

    def dl(part):
        return DataLoader(TensorDataset(torch.from_numpy(part.images), torch.from_numpy(part.masks)), batch_size=8)

    return dl(splits.train), dl(splits.test)


def _fit(callback, splits, epochs=2):
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        callbacks=[callback])
    module = LitSeg()
    trainer.fit(module, *_loaders(splits))
    return module


def test_two_epoch_fit_records_mi(dsb_small, tmp_path):
    tr = dsb_small.train
    out = tmp_path / "lit"
    cb = InfoflowCallback(tr.images[:16], tr.masks[:16], out, fit_masks=tr.masks, mi=MI, schedule="all",
                          pred_images=dsb_small.test.images[:2], pred_masks=dsb_small.test.masks[:2])
    module = _fit(cb, dsb_small)
    assert cb.tracker is not None and cb.network(module) is module.net

    run = RunDir.open(out)
    mi = run.read_mi()
    assert sorted(mi["epoch"].unique()) == [1, 2]
    assert mi.groupby("epoch")["layer"].nunique().tolist() == [23, 23]
    assert set(mi.loc[mi["estimator"] == "kde_upper", "setting"]) == {"fixed:0.2", "rel:0.1"}  # the default kernels
    assert run.matrix_epochs() == [1, 2] and run.prediction_epochs() == [1, 2]
    for f in ("config.json", "metrics.csv", "probe.npz", "mi.csv", "layer_stats.csv"):
        assert (out / f).is_file(), f

    metrics = run.read_metrics()
    assert metrics["epoch"].tolist() == [1, 2]
    # the callback metrics under infoflow's names only (one naming scheme); validation of epoch e is in row e
    assert set(metrics.columns) == {"epoch", "loss_train", "dice_train", "loss_val", "dice_val"}
    assert metrics["dice_val"].notna().all()
    stats = run.read_layer_stats()
    assert sorted(stats["epoch"].unique()) == [1, 2] and np.isfinite(stats["grad_std_norm"]).all()

    net = json.loads((out / "config.json").read_text())["network"]
    assert net["skip_pairs"] == [[1, 20], [3, 17], [5, 14], [7, 11]] and len(net["probe_layers"]) == 23
    assert json.loads((out / "config.json").read_text())["train"] == {"schedule": "all", "epochs": 2}


def test_schedule_list_and_metrics_map(dsb_small, tmp_path):
    tr = dsb_small.train
    out = tmp_path / "lit2"
    cb = InfoflowCallback(tr.images[:8], tr.masks[:8], out, fit_masks=tr.masks,
                          mi=MIConfig(kmeans_k=4, estimators=("kde",), labels=("kmeans",)), schedule=[2],
                          module="net", metrics_map={"my_dice": "val_dice"}, record_gradients=False)
    _fit(cb, dsb_small)
    run = RunDir.open(out)
    assert run.matrix_epochs() == [2] and sorted(run.read_mi()["epoch"].unique()) == [2]
    metrics = run.read_metrics()
    assert metrics["epoch"].tolist() == [1, 2] and "my_dice" in metrics
    assert not (out / "layer_stats.csv").exists()  # record_gradients=False


def test_which_network_is_probed():
    class NoForward(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.a = torch.nn.Conv2d(3, 1, 1)
            self.b = torch.nn.Conv2d(3, 1, 1)

    cb = InfoflowCallback(np.zeros((2, 3, 8, 8), np.float32), np.zeros((2, 1, 8, 8), np.float32), "unused")
    with pytest.raises(ConfigError, match="module="):
        cb.network(NoForward())
    assert InfoflowCallback(np.zeros((2, 3, 8, 8)), np.zeros((2, 1, 8, 8)), "x", module="b").network(NoForward()).in_channels == 3
    with pytest.raises(ConfigError, match="no submodule"):
        InfoflowCallback(np.zeros((2, 3, 8, 8)), np.zeros((2, 1, 8, 8)), "x", module="c").network(NoForward())
    with pytest.raises(ConfigError, match="schedule"):
        InfoflowCallback(np.zeros((2, 3, 8, 8)), np.zeros((2, 1, 8, 8)), "x", schedule="weekly")
