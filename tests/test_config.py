import pytest

from infoflow.config import MI_PRESETS, RunConfig, apply_mi_preset
from infoflow.errors import ConfigError


def test_round_trip_through_dict():
    cfg = RunConfig().override(**{"train.lr": 0.01, "model.skips": (True, False, True, True), "mi.kernels": ("fixed:0.2", "fixed:1.0")})
    again = RunConfig.from_dict(cfg.to_dict())
    assert again == cfg
    assert again.model.skip_mask() == (True, False, True, True)


@pytest.mark.parametrize("key, message", [("train.nope", "unknown setting 'train.nope'"),
                                          ("nope.lr", "unknown setting 'nope.lr'"),
                                          ("train", "'train' is a section")])
def test_bad_settings_are_named(key, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig().override(**{key: 1})


def test_presets():
    code = apply_mi_preset(RunConfig().mi, "code")
    paper = apply_mi_preset(RunConfig().mi, "paper")
    assert code.kernels == ("fixed:0.2",) and code.bin_size == (0.1,)
    assert paper.kernels == ("fixed:1.0",) and paper.bin_size == (0.2,)
    assert set(MI_PRESETS) >= {"code", "paper"}
    with pytest.raises(ConfigError, match="unknown MI preset 'x'"):
        apply_mi_preset(RunConfig().mi, "x")


def test_cli_usage_errors_are_one_line_without_traceback(capsys):
    from infoflow.cli import main

    assert main(["train", "--epochs", "abc"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "epochs" in err


# -- every field's type and range, checked in one place (issue 16) --------------------------------

BAD = [  # (setting, value, what the one-line error says)
    ("train.epochs", "abc", "train.epochs must be an integer, got 'abc'"),
    ("train.epochs", 0, "train.epochs must be at least 1"),
    ("train.batch_size", 1.5, "train.batch_size must be an integer, got 1.5"),
    ("train.lr", 0, "train.lr must be a positive finite number"),
    ("train.lr", float("nan"), "train.lr must be a positive finite number"),
    ("train.optimizer", "rmsprop", "train.optimizer must be one of sgd, adam"),
    ("train.schedule", "weekly", "train.schedule must be one of code, log, all"),
    ("train.device", "tpu", "train.device must be auto, cpu, cuda or cuda:N"),
    ("train.channels_last", "yes", "train.channels_last must be true or false"),
    ("data.size", 4, "data.size must be at least 8"),
    ("data.val_fraction", 1.0, "data.val_fraction must be between 0 and 1"),
    ("data.mask_rule", "nearest", "data.mask_rule must be one of code, linear"),
    ("model.model", 5, "model.model must be one of 1, 2, 3, 4"),
    ("model.init", "xavier", "model.init must be one of keras, torch"),
    ("model.skips", [True, False], "model.skips takes 4 values"),
    ("mi.kernels", ["fixed:nan"], "mi.kernels: kernel 'fixed:nan': the number must be positive and finite"),
    ("mi.kernels", [], "mi.kernels: no kernel given"),
    ("mi.bin_size", [], "mi.bin_size must be one or more positive numbers"),
    ("mi.kmeans_k", 0, "mi.kmeans_k must be at least 1"),
    ("mi.memory_budget_gb", 0, "mi.memory_budget_gb must be a positive finite number"),
    ("mi.batch_size", 0, "mi.batch_size must be at least 1"),
    ("mi.estimators", ["kde", "mine"], "mi.estimators must be one of kde, kde_upper, kde_lower, bin, renyi"),
    ("mi.labels", ["kmeans", "pixels"], "mi.labels must be one of kmeans, coarse"),
    ("mi.probe", "val", "mi.probe must be one of train, test, all"),
    ("mi.kernels", ["rel:x"], "mi.kernels: malformed kernel 'rel:x'"),
    ("mi.kernels", ["rel=0.1"], "mi.kernels: malformed kernel 'rel=0.1'"),
    ("mi.noise_var", [0.2], "unknown setting 'mi.noise_var'"),
    ("mi.renyi_alpha", 1, "mi.renyi_alpha must be positive and not 1"),
    ("mi.y_from", "soft", "mi.y_from must be one of code, binary"),
]


@pytest.mark.parametrize("key, value, message", BAD)
def test_every_setting_is_type_and_range_checked(key, value, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        RunConfig().override(**{key: value})


def test_config_file_values_are_checked_and_one_value_is_a_one_item_tuple():
    doc = RunConfig().to_dict()
    doc["train"]["epochs"] = "ten"
    with pytest.raises(ConfigError, match="train.epochs must be an integer, got 'ten'"):
        RunConfig.from_dict(doc)
    cfg = RunConfig().override(**{"mi.labels": "kmeans", "mi.kernels": "fixed:0.5", "train.lr": 1})
    assert cfg.mi.labels == ("kmeans",) and cfg.mi.kernels == ("fixed:0.5",)  # not ('k', 'm', ...)
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    assert RunConfig().override(**{"mi.labels": "kmeans,coarse"}).mi.labels == ("kmeans", "coarse")


def test_sections_made_in_python_are_checked_too():
    from infoflow.config import MIConfig, TrainConfig

    with pytest.raises(ConfigError, match="mi.kmeans_k must be at least 1"):
        MIConfig(kmeans_k=0)
    with pytest.raises(ConfigError, match="train.epochs must be an integer"):
        TrainConfig(epochs=2.5)
    assert MIConfig(labels=["coarse"]).labels == ("coarse",)
