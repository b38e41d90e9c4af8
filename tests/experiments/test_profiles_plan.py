"""Profiles, run plans and the reproduce command line (no training)."""

from __future__ import annotations

import pytest

from infoflow.cli import main
from infoflow.config import RunConfig
from infoflow.errors import ConfigError, RunError
from infoflow.experiments import PROFILES, get_profile, profile_config
from infoflow.experiments.reproduce import thresholds_for
from infoflow.experiments.sweep import last_epoch, plan_runs, run_state
from infoflow.runs import RunDir


def test_paper_profile_is_the_papers_code():
    cfg = profile_config("paper", data="/data/dsb", model=3)
    assert (cfg.data.size, cfg.model.width) == (128, 16)
    assert (cfg.train.optimizer, cfg.train.lr, cfg.train.momentum, cfg.train.batch_size) == ("sgd", 1e-3, 0.0, 16)
    assert (cfg.train.epochs, cfg.train.schedule) == (10_000, "code")
    assert cfg.mi.kernels == ("fixed:0.2",) and cfg.mi.bin_size == (0.1,) and cfg.mi.kmeans_k == 64
    assert cfg.data.source == "/data/dsb" and cfg.model.model == 3 and cfg.model.skip_mask() == (False, False, True, True)
    assert get_profile("paper").gpus_per_run == 1
    assert cfg.model.init == "keras" and (cfg.mi.probe, cfg.mi.subset, cfg.mi.y_from) == ("all", "train", "code")


def test_cpu_and_smoke_profiles_are_valid_configs():
    from infoflow.train import validate_config

    for name in PROFILES:
        for m in (1, 2, 3, 4):
            validate_config(profile_config(name, model=m))
    cpu = profile_config("cpu")
    assert (cpu.data.size, cpu.model.width, cpu.train.optimizer, cpu.train.num_threads) == (64, 8, "adam", 1)
    # the original's probe sets: activations of all 670 images stored, K-means estimates on the 605 training ones
    assert (cpu.mi.probe, cpu.mi.subset, cpu.mi.y_from) == ("all", "train", "code")
    assert cpu.mi.probe_limit is None and cpu.mi.kmeans_k == 64
    assert cpu.data.mask_size == 128  # masks made at the paper's size (its foreground fraction)
    assert get_profile("cpu").changes  # documented differences from the paper
    smoke = profile_config("smoke")
    assert smoke.data.limit == 48 and smoke.mi.kmeans_k <= 48


def test_every_field_is_overridable_after_the_profile():
    cfg = profile_config("cpu", sets={"train.epochs": 7, "mi.kernels": ["fixed:1.0"], "model.width": 4,
                                      "train.seed": 10}, seed_index=2)
    assert cfg.train.epochs == 7 and cfg.mi.kernels == ("fixed:1.0",) and cfg.model.width == 4
    assert cfg.train.seed == 12  # seeds are offsets from the configured seed
    assert cfg.mi.kmeans_seed == 2  # ... and so is the K-means seed: the classes Y vary with the seed too
    with pytest.raises(ConfigError):
        profile_config("cpu", sets={"train.nope": 1})
    with pytest.raises(ConfigError):
        get_profile("fast")


def test_thresholds_of_a_profile_and_overrides():
    th = thresholds_for(get_profile("cpu"), {"dice_tol": 0.05})
    assert th.early_epochs == get_profile("cpu").claims["early_epochs"] and th.dice_tol == 0.05
    with pytest.raises(Exception):
        thresholds_for(get_profile("cpu"), {"no_such": 1})


def test_plan_runs_folders_and_seeds(tmp_path):
    specs = plan_runs("smoke", tmp_path, data="synthetic", seeds=2)
    assert [s.key for s in specs] == [f"model{m}_seed{s}" for s in (0, 1) for m in (1, 2, 3, 4)]
    assert specs[5].path == str(tmp_path / "model2_seed1")
    assert RunConfig.from_dict(specs[5].config).train.seed == 1
    assert plan_runs("smoke", tmp_path, models=[4])[0].key == "model4_seed0"


def test_run_state_and_config_mismatch(tmp_path):
    (spec,) = plan_runs("smoke", tmp_path, data="synthetic", models=[1])
    assert run_state(spec) == ("new", 0)
    run = RunDir.create(spec.path, spec.config)
    run.append_metrics([{"epoch": 1, "loss_train": 1, "dice_train": 0, "loss_val": 1, "dice_val": 0, "seconds": 1}])
    assert run_state(spec) == ("partial", 1)
    assert last_epoch(spec.path) == 1
    (other,) = plan_runs("smoke", tmp_path, data="synthetic", models=[1], sets={"train.lr": 0.01})
    with pytest.raises(RunError, match="train.lr"):
        run_state(other)


def test_cli_lists_profiles_and_rejects_bad_input(capsys, tmp_path):
    assert main(["profiles"]) == 0
    out = capsys.readouterr().out
    assert "paper:" in out and "cpu:" in out and "smoke:" in out
    assert main(["reproduce", "--profile", "nope", "--out", str(tmp_path / "x"), "--data", "synthetic"]) == 2
    assert "unknown profile" in capsys.readouterr().err
    assert main(["reproduce", "--models", "1,5", "--out", str(tmp_path / "x"), "--data", "synthetic"]) == 2
    assert main(["reproduce", "--out", str(tmp_path / "x")]) == 2
    assert "pass --data" in capsys.readouterr().err
