import pytest
import torch

from infoflow.errors import ConfigError
from infoflow.tracking import code_schedule, log_schedule, logged_epochs
from infoflow.train import dice_per_image


def _original_logged_epochs(epochs: int) -> list[int]:
    """Built here from the original's recipe: ``do_report(epoch)`` on Keras's 0-based epoch, and
    Keras epoch k ends after k + 1 epochs of training (infoflow's 1-based epoch k + 1)."""

    def do_report(epoch):
        return epoch < 20 or (epoch < 100 and epoch % 5 == 0) or (epoch < 200 and epoch % 10 == 0) or epoch % 100 == 0

    return [k + 1 for k in range(epochs) if do_report(k)]


def test_code_schedule_matches_the_paper_code():
    s = code_schedule(10_000)
    assert s == _original_logged_epochs(10_000)
    assert len(s) == 144 and s[-1] == 9901
    assert s[:21] == list(range(1, 22)) and s[21] == 26
    assert [e for e in s if 21 <= e <= 101] == list(range(21, 102, 5))
    assert [e for e in s if 101 <= e <= 201] == list(range(101, 202, 10))
    assert [e for e in s if e >= 201] == list(range(201, 10_000, 100))
    assert 10_000 not in s and 20 in s and 25 not in s


@pytest.mark.parametrize("epochs, expected", [
    (0, []), (1, [1]), (7, list(range(1, 8))), (25, list(range(1, 22))), (26, list(range(1, 22)) + [26]),
    (100, _original_logged_epochs(100)), (101, _original_logged_epochs(100) + [101]),
])
def test_code_schedule_does_not_add_the_last_epoch(epochs, expected):
    assert code_schedule(epochs) == expected == _original_logged_epochs(epochs)
    assert logged_epochs("code", epochs) == expected


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
