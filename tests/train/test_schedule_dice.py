import pytest
import torch

from infoflow.errors import ConfigError
from infoflow.train import code_schedule, dice_per_image, log_schedule, logged_epochs


def test_code_schedule_matches_the_paper_code():
    s = code_schedule(10_000)
    assert len(s) == 144
    assert s[:19] == list(range(1, 20))
    assert s[19:23] == [20, 25, 30, 35] and 95 in s and 96 not in s
    assert [e for e in s if 100 <= e < 200] == list(range(100, 200, 10))
    assert s[-3:] == [9800, 9900, 10000]


@pytest.mark.parametrize("epochs, last", [(1, [1]), (7, [6, 7]), (23, [19, 20, 23]), (105, [100, 105])])
def test_code_schedule_always_ends_at_the_last_epoch(epochs, last):
    assert code_schedule(epochs)[-len(last):] == last


def test_log_schedule():
    s = log_schedule(10_000, 30)
    assert s[0] == 1 and s[-1] == 10_000 and s == sorted(set(s)) and 20 <= len(s) <= 31
    with pytest.raises(ConfigError, match="train.schedule"):
        logged_epochs("weekly", 10)


# Dice = (2 sum(y p) + 1) / (sum y + sum p + 1), per image, then averaged
DICE_CASES = [
    ([1, 1, 0, 0], [1, 1, 0, 0], 5 / 5),
    ([0, 0, 0, 0], [0, 0, 0, 0], 1 / 1),
    ([1, 0, 0, 0], [0, 1, 0, 0], 1 / 3),
    ([0.5, 0.5, 0, 0], [1, 1, 0, 0], 3 / 4),
]


@pytest.mark.parametrize("p, y, expected", DICE_CASES)
def test_dice_hand_cases(p, y, expected):
    p = torch.tensor(p, dtype=torch.float32).reshape(1, 1, 2, 2)
    y = torch.tensor(y, dtype=torch.float32).reshape(1, 1, 2, 2)
    assert dice_per_image(p, y).item() == pytest.approx(expected, abs=1e-7)
