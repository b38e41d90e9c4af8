"""Route 1 of issue 15: your own training loop (docs/any-network.md, MONAI BasicUNet and
infoflow.api.Tracker) and Lightning (InfoflowCallback in a tiny Trainer), then `infoflow plot`
and `infoflow report` on the run, whatever metrics it has; the report opens in Chromium."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from infoflow.cli import main
from infoflow.config import MIConfig
from infoflow.runs import RunDir
from infoflow.train import dice_per_image

monai_nets = pytest.importorskip("monai.networks.nets")
pytestmark = pytest.mark.filterwarnings("ignore:.*LeafSpec.*")
FEATURES = (4, 4, 8, 8, 16, 4)  # BasicUNet's features, small: the documented loop at a test's size
MI = MIConfig(kmeans_k=4, estimators=("kde",))


def _report_and_plot(run: Path, capsys) -> str:
    assert main(["plot", str(run), "--only", "information_planes,uplots,dice"]) == 0
    assert main(["report", str(run)]) == 0
    out = capsys.readouterr()
    assert "report written to" in out.out and "Traceback" not in out.err, out.err
    for stem in ("information_planes", "uplots", "dice"):
        assert (run / "figures" / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return (run / "report.html").read_text()


def _check_in_browser(browser, run: Path, n_images: int) -> None:
    seen = browser(run / "report.html")
    assert seen["title"].startswith("infoflow report") and seen["errors"] == []
    assert len(seen["images"]) == n_images and all(c and w > 0 and h > 0 for c, w, h in seen["images"])


def test_own_loop_with_basicunet_then_report(dsb_small, tmp_path: Path, capsys, browser) -> None:
    from infoflow.api import Tracker

    tr, te = dsb_small.train, dsb_small.test
    torch.manual_seed(0)
    model = monai_nets.BasicUNet(spatial_dims=2, in_channels=3, out_channels=1, features=FEATURES)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    out = tmp_path / "basicunet"
    tracker = Tracker(model, tr.images[:16], tr.masks[:16], out=out, fit_masks=tr.masks, mi=MI, schedule="all",
                      epochs=2, pred_images=te.images[:2], pred_masks=te.masks[:2])
    x, y = torch.from_numpy(tr.images), torch.from_numpy(tr.masks)
    xv, yv = torch.from_numpy(te.images), torch.from_numpy(te.masks)
    for epoch in range(1, 3):
        model.train()
        for i in range(0, len(x), 8):
            opt.zero_grad()
            loss = F.binary_cross_entropy_with_logits(model(x[i:i + 8]), y[i:i + 8])
            loss.backward()
            tracker.record_gradients(model)
            opt.step()
        model.eval()
        with torch.no_grad():
            dice_val = dice_per_image(torch.sigmoid(model(xv)), yv).mean().item()
        tracker.end_epoch(model, epoch, metrics={"loss_train": loss.item(), "dice_val": dice_val})
    tracker.close()

    metrics = pd.read_csv(out / "metrics.csv")
    assert list(metrics.columns) == ["epoch", "loss_train", "dice_val"]  # no dice_train: the report copes
    doc = _report_and_plot(out, capsys)
    assert re.search(r"<th>final Dice \(train / val\)</th><td>- / " + f"{metrics['dice_val'].iloc[-1]:.4f}", doc)
    assert "best validation Dice" in doc and "optimizer" not in re.sub(r"<pre>.*?</pre>", "", doc, flags=re.S)
    assert "uplots: not drawn" not in doc and "information_planes: not drawn" not in doc
    _check_in_browser(browser, out, n_images=len(re.findall(r"<img ", doc)))


L = pytest.importorskip("lightning.pytorch")


class LitSeg(L.LightningModule):
    """Logs Lightning's usual names (train_loss, val_loss, val_dice), on step and on epoch."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = monai_nets.BasicUNet(spatial_dims=2, in_channels=3, out_channels=1, features=FEATURES)

    def training_step(self, batch, _):
        logits = self.net(batch["image"])
        loss = F.binary_cross_entropy_with_logits(logits, batch["label"])
        self.log("train_loss", loss, on_step=True, on_epoch=True)
        return loss

    def validation_step(self, batch, _):
        logits = self.net(batch["image"])
        self.log("val_loss", F.binary_cross_entropy_with_logits(logits, batch["label"]))
        self.log("val_dice", dice_per_image(torch.sigmoid(logits), batch["label"]).mean())

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2)


def _dict_loader(part, batch_size=8):
    """MONAI's dictionary form: a Dataset of {"image", "label"} samples, batched by a DataLoader."""
    from monai.data import DataLoader, Dataset

    data = [{"image": im, "label": m} for im, m in zip(part.images, part.masks)]
    return DataLoader(Dataset(data), batch_size=batch_size, shuffle=False)


def test_lightning_callback_one_naming_scheme_and_the_trainers_logger(dsb_small, tmp_path: Path, capsys,
                                                                       browser) -> None:
    from lightning.pytorch.loggers import CSVLogger

    from infoflow.integrations.lightning import InfoflowCallback

    tr, te = dsb_small.train, dsb_small.test
    out = tmp_path / "lit"
    probe = _dict_loader(tr, batch_size=5)  # 16 samples in batches of 5: the probe set from the user's loader
    probe.dataset.data = probe.dataset.data[:16]
    cb = InfoflowCallback(probe, out=out, fit_masks=tr.masks, mi=MI, schedule="all")
    logger = CSVLogger(str(tmp_path / "logs"), name="lit")
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", devices=1, logger=logger, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        log_every_n_steps=1, callbacks=[cb])
    trainer.fit(LitSeg(), _dict_loader(tr), _dict_loader(te))

    metrics = pd.read_csv(out / "metrics.csv")
    assert set(metrics.columns) == {"epoch", "loss_train", "loss_val", "dice_val"}, list(metrics.columns)
    assert list(metrics["epoch"]) == [1, 2] and metrics.notna().all().all()
    probe_rec = RunDir.open(out).load_probe()
    assert np.array_equal(probe_rec.masks, tr.masks[:16])

    # the MI estimates reached the trainer's own logger, equal to the run's mi.csv
    logged = pd.read_csv(Path(logger.log_dir) / "metrics.csv")
    mi = RunDir.open(out).read_mi()
    first = mi.loc[mi["estimator"] == "kde_upper", "setting"].iloc[0]  # what goes to the logger: the first setting
    assert set(mi["setting"]) >= {"fixed:0.2", "rel:0.1"}  # a network other than infoflow's U-Net: rel:0.1 added
    up = mi[(mi["estimator"] == "kde_upper") & (mi["setting"] == first) & (mi["quantity"].isin(["I_XM", "I_YM"]))
            & (mi["labels"].isin(["none", "kmeans"]))]
    assert len(up) == 2 * 2 * mi["layer"].nunique()  # 2 epochs x (I_XM, I_YM) x layers
    for r in up.itertuples(index=False):
        col = f"infoflow/{r.quantity}/{int(r.layer):02d}_{r.name}"
        got = logged.loc[logged["infoflow/epoch"] == r.epoch, col].dropna()
        assert len(got) == 1 and got.iloc[0] == pytest.approx(r.value, rel=1e-6), col

    doc = _report_and_plot(out, capsys)
    last = metrics.iloc[-1]
    assert f"<th>final Dice (train / val)</th><td>- / {last['dice_val']:.4f}" in doc
    _check_in_browser(browser, out, n_images=len(re.findall(r"<img ", doc)))
