"""infoflow.speed and its use in training: precision of the step, threads, float32 probe (never timing)."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from infoflow.config import RunConfig
from infoflow.errors import ConfigError
from infoflow.models import build_model
from infoflow.speed import (
    StepRunner,
    available_cores,
    busy_cores,
    full_precision,
    keep_output_fp32_,
    pick_threads,
    runnable_now,
    step_precision,
)
from infoflow.train import train

TINY = {"name": "tiny", "data.source": "synthetic", "data.size": 32, "data.n_synthetic": 40, "model.width": 4,
        "train.epochs": 2, "train.batch_size": 8, "train.schedule": "all", "train.optimizer": "adam",
        "train.num_threads": 1, "train.device": "cpu", "mi.kmeans_k": 4, "mi.probe_limit": 16,
        "mi.permutations": 0}


def _batch(n: int = 4, size: int = 32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size, size, generator=g)
    y = (torch.rand(n, 1, size, size, generator=g) > 0.7).float()
    return x, y


def _model(seed: int = 0, width: int = 4):
    torch.manual_seed(seed)
    return build_model(model=1, width=width, init="keras")


def _reference_step(model, x, y):
    """Today's loop: zero_grad, forward, BCE, backward."""
    model.zero_grad(set_to_none=True)
    p = model(x)
    loss = F.binary_cross_entropy(p, y)
    loss.backward()
    grads = [q.grad.detach().clone() for q in model.parameters()]
    model.zero_grad(set_to_none=True)
    return loss.detach(), p.detach(), grads


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


# -- settings -----------------------------------------------------------------------------------


@pytest.mark.parametrize("key, value", [
    ("train.autocast", "fp16"), ("train.autocast", "BF16"), ("train.num_threads", "many"),
    ("train.num_threads", 0), ("train.num_threads", 1.5), ("train.num_threads", True),
])
def test_settings_refuse_bad_values(key, value):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        RunConfig().override(**{key: value})


@pytest.mark.parametrize("key, value", [
    ("train.autocast", "none"), ("train.autocast", "bf16"), ("train.autocast", "tf32"),
    ("train.num_threads", "auto"), ("train.num_threads", 3), ("train.num_threads", None),
])
def test_settings_accept_and_round_trip(key, value):
    cfg = RunConfig().override(**{key: value})
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    section, name = key.split(".")
    assert getattr(getattr(cfg, section), name) == value


def test_defaults_keep_float32_and_torch_threads():
    t = RunConfig().train
    assert t.autocast == "none" and t.num_threads is None


def test_unknown_precision_is_refused():
    with pytest.raises(ConfigError, match="train.autocast"):
        step_precision("fp16", "cpu")
    with pytest.raises(ConfigError, match="train.autocast"):
        StepRunner(_model(), autocast="fp16")
    with pytest.raises(ConfigError, match="train.num_threads"):
        StepRunner(_model(), threads="many")


# -- threads -------------------------------------------------------------------------------------


def test_auto_threads_are_within_the_affinity(restore_threads):
    cores = len(os.sched_getaffinity(0))
    assert available_cores() == cores
    assert 1 <= pick_threads() <= cores
    runner = StepRunner(_model(), threads="auto", retune_every_s=0.0)
    assert 1 <= runner.threads <= cores and torch.get_num_threads() == runner.threads
    runner.forward_backward(*_batch(2))  # re-chosen before the step (retune_every_s = 0)
    assert 1 <= runner.threads <= cores and torch.get_num_threads() == runner.threads


@pytest.mark.parametrize("cores, busy, expected", [
    (4, 0.0, 4), (4, 0.4, 4), (4, 1.0, 3), (4, 2.6, 1), (4, 3.9, 1), (4, 50.0, 1), (1, 0.0, 1), (2, 0.6, 1),
])
def test_pick_threads_uses_the_free_cores(cores, busy, expected):
    assert pick_threads(cores=cores, busy=busy) == expected


def test_load_readings():
    assert busy_cores(samples=2, interval=0.0) >= 0.0
    r = runnable_now()
    assert r is None or r >= 1  # counts the reading thread itself


def test_integer_threads_are_set(restore_threads):
    runner = StepRunner(_model(), threads=1)
    assert runner.threads == 1 and torch.get_num_threads() == 1


# -- precision -----------------------------------------------------------------------------------


def test_tf32_is_set_for_the_step_only_and_full_precision_turns_it_off():
    flags = lambda: (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)  # noqa: E731
    before = flags()
    with step_precision("tf32", "cpu"):
        assert flags() == (True, True)
        with full_precision("cpu"):
            assert flags() == (False, False)
        assert flags() == (True, True)
    assert flags() == before


def test_full_precision_turns_autocast_off():
    model = _model()
    x, _ = _batch(2)
    with torch.no_grad(), step_precision("bf16", "cpu"):
        assert model(x).dtype == torch.bfloat16
        with full_precision("cpu"):
            assert not torch.is_autocast_enabled("cpu")
            assert model(x).dtype == torch.float32


@pytest.mark.parametrize("mode", ["none", "tf32"])
def test_float32_step_is_todays_step_bit_for_bit(mode):
    """On the CPU "none" and "tf32" run exactly the plain loop (TF32 is CUDA's only)."""
    x, y = _batch()
    model = _model()
    loss_ref, p_ref, g_ref = _reference_step(model, x, y)
    loss, p = StepRunner(model, autocast=mode).forward_backward(x, y)
    assert torch.equal(loss, loss_ref) and torch.equal(p, p_ref)
    for q, g in zip(model.parameters(), g_ref):
        assert torch.equal(q.grad, g)


#: bf16 autocast against float32 on the same batch, for the test model (w = 4, S = 32, Keras
#: init, 4 images): the whole gradient (all parameters as one vector) within 2% relative L2 error
#: (measured 0.6%), every parameter's gradient pointing the same way (cosine >= 0.95; measured
#: >= 0.967: bf16 rounds to 8-bit mantissas), the loss within 1% and the probabilities within 0.02.
BF16_GRAD_RTOL = 0.02
BF16_MIN_COSINE = 0.95
BF16_LOSS_RTOL = 0.01


def test_bf16_step_is_finite_and_close_to_float32():
    x, y = _batch(4)
    model = _model()
    loss_ref, p_ref, g_ref = _reference_step(model, x, y)
    loss, p = StepRunner(model, autocast="bf16").forward_backward(x, y)
    assert torch.isfinite(loss) and abs(loss.item() - loss_ref.item()) < BF16_LOSS_RTOL * loss_ref.item()
    assert p.dtype == torch.float32 and torch.isfinite(p).all()
    assert (p - p_ref).abs().max() < 0.02
    for (name, q), g in zip(model.named_parameters(), g_ref):
        assert q.dtype == torch.float32 and q.grad.dtype == torch.float32, name
        assert torch.isfinite(q.grad).all(), name
        assert F.cosine_similarity(q.grad.flatten(), g.flatten(), dim=0) >= BF16_MIN_COSINE, name
    whole = torch.cat([q.grad.flatten() for q in model.parameters()])
    assert _rel_err(whole, torch.cat([g.flatten() for g in g_ref])) < BF16_GRAD_RTOL


def test_output_layer_kept_in_float32_under_autocast():
    model = _model()
    keys = list(model.state_dict())
    x, _ = _batch(2)
    dtypes = {}
    for name in ("dec1", "out"):
        getattr(model, name).register_forward_hook(lambda m, i, o, name=name: dtypes.__setitem__(name, o.dtype))
    with torch.no_grad():
        before = model(x)
        keep_output_fp32_(model)
        assert torch.equal(before, model(x))  # outside autocast: unchanged
        with step_precision("bf16", "cpu"):
            out = model(x)
    assert dtypes == {"dec1": torch.bfloat16, "out": torch.float32}  # hooks still fire
    assert out.dtype == torch.float32
    assert list(model.state_dict()) == keys


def test_steps_accumulate_nothing():
    """forward_backward overwrites .grad: two calls give the gradient of the second batch only."""
    model = _model()
    x, y = _batch(4, seed=1)
    _, _, g_ref = _reference_step(model, x, y)
    runner = StepRunner(model)
    runner.forward_backward(*_batch(4, seed=2))
    runner.forward_backward(x, y)
    for q, g in zip(model.parameters(), g_ref):
        assert torch.equal(q.grad, g)


# -- in training ---------------------------------------------------------------------------------


def test_bf16_training_probes_float32_activations(tmp_path, monkeypatch, restore_threads):
    """train.autocast = bf16 trains (finite metrics, float32 weights in the checkpoint) on the
    CPU, and the MI probe's hooks see float32 activations with autocast off at every logged epoch."""
    import infoflow.tracking.mi as mi_mod

    seen: list[tuple[torch.dtype, bool]] = []
    original = mi_mod.probe_layers

    def spy(model, images, layers, **kw):
        hooks = [m.register_forward_hook(lambda _m, _i, o: seen.append((o.dtype, torch.is_autocast_enabled("cpu"))))
                 for _, m in layers]
        try:
            return original(model, images, layers, **kw)
        finally:
            for h in hooks:
                h.remove()

    monkeypatch.setattr(mi_mod, "probe_layers", spy)
    cfg = RunConfig().override(**{**TINY, "train.autocast": "bf16"})
    run = train(cfg, tmp_path / "run", progress=False)
    metrics = pd.read_csv(run.path / "metrics.csv")
    assert list(metrics["epoch"]) == [1, 2]
    assert np.isfinite(metrics[["loss_train", "dice_train", "loss_val", "dice_val"]].to_numpy()).all()
    assert len(seen) >= 2 * 23 and set(seen) == {(torch.float32, False)}
    state = torch.load(run.checkpoint_path, weights_only=True, map_location="cpu")
    assert {v.dtype for v in state["model"].values() if v.is_floating_point()} == {torch.float32}
    assert "step precision bf16" in (run.path / "run.log").read_text()


def test_auto_threads_train(tmp_path, restore_threads):
    cfg = RunConfig().override(**{**TINY, "train.num_threads": "auto", "mi.enabled": False, "train.epochs": 1})
    run = train(cfg, tmp_path / "run", progress=False)
    assert 1 <= torch.get_num_threads() <= available_cores()
    assert len(pd.read_csv(run.path / "metrics.csv")) == 1


# -- the CUDA branches, run on the CPU -------------------------------------------------------------


@pytest.mark.parametrize("budget, device, free, expected", [
    ("auto", "cpu", None, 4 * 2**30),
    ("auto", "cuda", 80 * 2**30, 40 * 2**30),  # an H100's free memory: the paper's 5.65 GiB in one pass
    ("auto", "cuda:1", 3 * 2**30, 3 * 2**29),
    (2.5, "cuda", 80 * 2**30, int(2.5 * 2**30)),  # a number is kept, on any device
    (1.0, "cpu", None, 2**30),
])
def test_probe_budget(monkeypatch, budget, device, free, expected):
    import infoflow.tracking.mi as mi_mod

    asked = []
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda dev: (asked.append(torch.device(dev)), (free, 2 * free))[1])
    assert mi_mod.probe_budget_bytes(budget, device) == expected
    assert asked == ([torch.device(device)] if budget == "auto" and device.startswith("cuda") else [])


@pytest.mark.parametrize("value, ok", [("auto", True), (4, True), (0.5, True), ("big", False), (0, False)])
def test_memory_budget_setting(value, ok):
    if ok:
        assert RunConfig().override(**{"mi.memory_budget_gb": value}).mi.memory_budget_gb == value
    else:
        with pytest.raises(ConfigError, match=r"mi\.memory_budget_gb"):
            RunConfig().override(**{"mi.memory_budget_gb": value})
