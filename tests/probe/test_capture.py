"""capture(): forward hooks that collect layer outputs and are always removed."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from infoflow.errors import ProbeError
from infoflow.probe import capture, resolve_layers


class SkipNet(nn.Module):
    """conv -> relu -> conv -> relu, concatenated with the first activation, then a 1x1 conv."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.b = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())
        self.merge = nn.Sequential(nn.Conv2d(8, 2, 1), nn.Sigmoid())
        self.unused = nn.Conv2d(3, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.a(x)
        b = self.b(a)
        return self.merge(torch.cat([a, b], dim=1))


def _n_hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in model.modules())


@pytest.fixture()
def net() -> SkipNet:
    torch.manual_seed(0)
    return SkipNet().eval()


def test_collects_outputs_per_call_and_removes_hooks(net: SkipNet) -> None:
    x1, x2 = torch.randn(2, 3, 6, 6), torch.randn(3, 3, 6, 6)
    layers = [("a", net.a), ("b", net.b), ("merge", net.merge)]
    with torch.no_grad(), capture(net, layers) as acts:
        assert _n_hooks(net) == 3
        net(x1)
        net(x2)
    assert _n_hooks(net) == 0
    assert [t.shape[0] for t in acts["a"]] == [2, 3]
    assert acts.cat("b").shape == (5, 4, 6, 6)
    torch.testing.assert_close(acts.first("a"), net.a(x1), rtol=0, atol=0)
    torch.testing.assert_close(acts["merge"][1], net(x2), rtol=0, atol=0)
    assert not acts.first("a").requires_grad


def test_outputs_are_detached_under_grad(net: SkipNet) -> None:
    with capture(net, [("a", net.a)]) as acts:
        net(torch.randn(1, 3, 4, 4)).sum().backward()
    assert not acts.first("a").requires_grad


def test_clone_protects_against_later_inplace_ops() -> None:
    class Inplace(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x)
            return y.mul_(0)  # modifies the captured tensor in place

    m = Inplace()
    x = torch.ones(1, 1, 2, 2)
    with torch.no_grad(), capture(m, [("conv", m.conv)]) as acts:
        m(x)
    assert acts.first("conv").abs().sum() > 0


def test_hooks_removed_on_exception(net: SkipNet) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with capture(net, [("a", net.a), ("b", net.b)]):
            net(torch.randn(1, 3, 4, 4))
            raise RuntimeError("boom")
    assert _n_hooks(net) == 0


def test_hooks_removed_when_forward_fails(net: SkipNet) -> None:
    with pytest.raises(RuntimeError):
        with capture(net, [("a", net.a)]):
            net(torch.randn(1, 5, 4, 4))  # wrong channel count
    assert _n_hooks(net) == 0


def test_missing_layers_are_named(net: SkipNet) -> None:
    with pytest.raises(ProbeError) as info:
        with capture(net, [("a", net.a), ("unused", net.unused), ("also_unused", net.unused)]):
            net(torch.randn(1, 3, 4, 4))
    msg = str(info.value)
    assert "unused" in msg and "also_unused" in msg and "'a'" not in msg
    assert _n_hooks(net) == 0


def test_layers_by_name_and_validation(net: SkipNet) -> None:
    pairs = resolve_layers(net, ["a", "merge.1"])
    assert pairs[1][1] is net.merge[1]
    with pytest.raises(ProbeError, match="nope"):
        resolve_layers(net, ["nope"])
    with pytest.raises(ProbeError, match="twice"):
        resolve_layers(net, [("x", net.a), ("x", net.b)])
    with pytest.raises(ProbeError, match="not part of the model"):
        resolve_layers(net, [("foreign", nn.ReLU())])
    with pytest.raises(ProbeError, match="no probe layers"):
        resolve_layers(net, [])


def test_non_tensor_output_is_an_error() -> None:
    class Pair(nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x, x

    class Outer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pair = Pair()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.pair(x)[0]

    m = Outer()
    with pytest.raises(ProbeError, match="not a tensor"):
        with capture(m, [("pair", m.pair)]):
            m(torch.ones(1, 2))
    assert _n_hooks(m) == 0
