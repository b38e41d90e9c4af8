import pytest

from infoflow.config import MI_PRESETS, RunConfig, apply_mi_preset
from infoflow.errors import ConfigError


def test_round_trip_through_dict():
    cfg = RunConfig().override(**{"train.lr": 0.01, "model.skips": (True, False, True, True), "mi.noise_var": (0.2, 1.0)})
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
    assert code.noise_var == (0.2,) and code.bin_size == (0.1,)
    assert paper.noise_var == (1.0,) and paper.bin_size == (0.2,)
    assert set(MI_PRESETS) >= {"code", "paper"}
    with pytest.raises(ConfigError, match="unknown MI preset 'x'"):
        apply_mi_preset(RunConfig().mi, "x")


def test_cli_usage_errors_are_one_line_without_traceback(capsys):
    from infoflow.cli import main

    assert main(["train", "--epochs", "abc"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "epochs" in err
