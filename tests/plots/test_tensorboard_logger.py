"""TensorBoard: the logger writes Dice, loss, per-layer MI and an information-plane image;
`infoflow train --tensorboard` wires it into training."""

import pytest

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from infoflow.cli import main  # noqa: E402
from infoflow.tensorboard import TensorBoardLogger  # noqa: E402


def _events(folder):
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


def test_logger_writes_scalars_and_plane_images(run, tmp_path):
    tb = TensorBoardLogger(run, log_dir=tmp_path / "tb", plane_every=2)
    for epoch in (1, 2, 3, 4):
        tb.callback(None, epoch)
    tb.close()
    acc = _events(tmp_path / "tb")
    tags = acc.Tags()
    assert {"dice/train", "dice/val", "loss/train", "loss/val"} <= set(tags["scalars"])
    assert "I_XM/00_enc1.conv_a" in tags["scalars"] and "I_YM/22_out" in tags["scalars"]
    assert sum(t.startswith("I_XM/") for t in tags["scalars"]) == 23
    dice = acc.Scalars("dice/val")
    m = run.read_metrics()
    assert [s.step for s in dice] == [1, 2, 3, 4]
    assert [s.value for s in dice] == pytest.approx(m["dice_val"].tolist(), rel=1e-6)
    mi = run.read_mi()
    want = mi[(mi["estimator"] == "kde_upper") & (mi["quantity"] == "I_XM") & (mi["layer"] == 1)]
    assert [s.value for s in acc.Scalars("I_XM/01_enc1.conv_b")] == pytest.approx(want["value"].tolist(), rel=1e-6)
    images = acc.Images("information_plane")
    assert [i.step for i in images] == [1, 3] and images[0].width > 400
    uplot = acc.Images("u_plot")  # the U-Plot beside the information plane
    assert [i.step for i in uplot] == [1, 3] and uplot[0].width > 400


def _hparams(folder):
    from tensorboard.plugins.hparams import plugin_data_pb2

    acc = EventAccumulator(str(folder), size_guidance={"tensors": 0})
    acc.Reload()
    content = acc.PluginTagToContent("hparams")
    data = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    return {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind"))
            for k, v in data.session_start_info.hparams.items()}, content


def test_dice_and_loss_of_every_epoch_and_hparams(run, tmp_path):
    """Callbacks come at logged epochs only: the epochs between them, and after the last one
    (at close), still get their Dice and loss."""
    tb = TensorBoardLogger(run, log_dir=tmp_path / "tb")
    tb.callback(None, 2)  # epochs 1 and 2
    tb.close()  # epochs 3 and 4
    acc = _events(tmp_path / "tb")
    m = run.read_metrics()
    for tag, col in (("dice/train", "dice_train"), ("loss/val", "loss_val")):
        got = acc.Scalars(tag)
        assert [s.step for s in got] == [1, 2, 3, 4]
        assert [s.value for s in got] == pytest.approx(m[col].tolist(), rel=1e-6)
    assert [i.step for i in acc.Images("u_plot")] == [2]
    params, content = _hparams(tmp_path / "tb")
    cfg = run.read_config()
    assert params["train.lr"] == pytest.approx(cfg["train"]["lr"]) and params["model.width"] == 4
    assert params["data.source"] == "synthetic" and params["name"] == "tiny"
    assert "_hparams_/experiment" in content
    resumed = TensorBoardLogger(run, log_dir=tmp_path / "tb2", since=3)  # a resumed run: epoch 4 only
    resumed.close()
    assert [s.step for s in _events(tmp_path / "tb2").Scalars("dice/val")] == [4]


def test_train_command_with_tensorboard(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--quiet", "--out", str(out), "--tensorboard", "--size", "32", "--width", "4", "--epochs", "2",
            "--schedule", "all", "--set", "data.n_synthetic=24", "--set", "mi.kmeans_k=4",
            "--set", "mi.estimators=[\"kde\"]", "--set", "train.num_threads=1"]
    assert main(args) == 0
    assert "TensorBoard events in" in capsys.readouterr().out
    acc = _events(out / "tensorboard")
    assert [s.step for s in acc.Scalars("dice/train")] == [1, 2]
    assert [i.step for i in acc.Images("information_plane")] == [1, 2]
