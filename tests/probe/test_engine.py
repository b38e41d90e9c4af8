"""probe_layers(): distances and binned symbols of every layer, under a memory budget."""

from __future__ import annotations

import itertools
import warnings
from collections import Counter

import numpy as np
import pytest
import torch
from torch import nn

from infoflow.errors import ProbeError
from infoflow.probe import ProbeWarning, capture, plan_groups, probe_layers
from infoflow.probe.distances import DEFAULT_RTOL

N, BS = 24, 7
LAYERS = ("enc", "mid", "up", "merge", "out")
DIMS = {"enc": 4 * 144, "mid": 8 * 36, "up": 4 * 144, "merge": 4 * 144, "out": 144}


class SkipNet(nn.Module):
    """A tiny U-Net: conv, pool, conv+BN, dropout, transposed conv, concat skip, conv, 1x1 + sigmoid."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.pool = nn.MaxPool2d(2)
        self.mid = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.drop = nn.Dropout(0.5)
        self.up = nn.ConvTranspose2d(8, 4, 2, stride=2)
        self.merge = nn.Sequential(nn.Conv2d(8, 4, 3, padding=1), nn.ReLU())
        self.out = nn.Sequential(nn.Conv2d(4, 1, 1), nn.Sigmoid())
        self.calls: Counter = Counter()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # each counter counts entries into a stage (before its module runs)
        self.calls["enc"] += 1
        e = self.enc(x)
        self.calls["mid"] += 1
        m = self.mid(self.pool(e))
        u = self.up(self.drop(m))
        self.calls["merge"] += 1
        g = self.merge(torch.cat([u, e], dim=1))
        self.calls["out"] += 1
        return self.out(g)


@pytest.fixture()
def net() -> SkipNet:
    torch.manual_seed(0)
    m = SkipNet()
    with torch.no_grad():  # non-trivial BatchNorm running statistics
        m.mid[1].running_mean.uniform_(-0.2, 0.2)
        m.mid[1].running_var.uniform_(0.5, 2.0)
    m.train()  # the probe must switch to eval itself
    return m


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (N, 3, 12, 12)).astype(np.float32)
    x[5] = x[2]  # a duplicate: same symbols at every layer
    x[9] = x[2]
    x[9, 0, 0, 0] += np.float32(1e-3)  # a near duplicate
    return x


def layers_of(net: SkipNet, names=LAYERS) -> list[tuple[str, nn.Module]]:
    return [(n, getattr(net, n)) for n in names]


def exact(a: np.ndarray) -> np.ndarray:
    a64 = a.astype(np.float64).reshape(len(a), -1)
    out = np.zeros((len(a64), len(a64)))
    for i in range(len(a64) - 1):
        diff = a64[i + 1 :] - a64[i]
        out[i, i + 1 :] = np.einsum("ij,ij->i", diff, diff)
    return out + out.T


def reference_acts(net: SkipNet, images: np.ndarray, names=LAYERS) -> dict[str, np.ndarray]:
    """A plain forward (eval, same batches) with every layer captured: float32 (N, D) per layer."""
    was = net.training
    net.eval()
    with torch.no_grad(), capture(net, layers_of(net, names)) as acts:
        for s in range(0, N, BS):
            net(torch.from_numpy(images[s : s + BS]))
    net.train(was)
    return {n: acts.cat(n).reshape(N, -1).numpy() for n in names}


def direct_codes(a: np.ndarray, b: float) -> np.ndarray:
    q = np.floor(a / np.float32(b)).astype(np.int64)
    ids: dict[bytes, int] = {}
    return np.array([ids.setdefault(row.tobytes(), len(ids)) for row in q], dtype=np.int64)


def assert_rel(got: np.ndarray, want: np.ndarray, rtol: float = DEFAULT_RTOL) -> None:
    """Every pair within the distances' relative tolerance (zeros exact)."""
    assert np.array_equal(got == 0, want == 0)
    rel = np.abs(got - want) / np.where(want == 0, 1.0, want)
    assert rel.max(initial=0.0) <= rtol, rel.max()


@pytest.mark.parametrize(
    "budget, n_groups",
    [
        (10**9, 1),  # everything fits: one pass
        (N * 4 * (576 + 288 + 576), 2),  # enc, mid | up, merge, out
        (N * 4 * (576 + 288), 3),
    ],
)
@pytest.mark.parametrize("near", [400.0, 1.0])
def test_matches_brute_force(net: SkipNet, images: np.ndarray, budget: int, n_groups: int, near: float) -> None:
    bins = (0.1, 0.5, 1e3)
    res = probe_layers(
        net, images, layers_of(net), batch_size=BS, memory_budget_bytes=budget, bin_sizes=bins, near=near
    )
    assert len(res.groups) == n_groups
    assert [n for g in res.groups for n in g] == list(LAYERS)
    assert res.peak_bytes_held <= budget
    assert res.names == list(LAYERS) and res.dims == [DIMS[n] for n in LAYERS]
    assert res.dist.shape == (5, N, N) and res.dist.dtype == np.float64
    ref = reference_acts(net, images)
    for li, name in enumerate(LAYERS):
        assert_rel(res.dist[li], exact(ref[name]))
        for b in bins:
            np.testing.assert_array_equal(res.codes[b][li], direct_codes(ref[name], b))
    assert_rel(res.dist_input, exact(images))
    assert res.dist[:, 2, 5].max() == 0 and res.dist[0, 2, 9] > 0
    assert all(res.codes[b].dtype == np.int64 and res.codes[b].shape == (5, N) for b in bins)
    assert (res.codes[1e3][LAYERS.index("out")] == 0).all()  # sigmoid in (0, 1): one bin, one symbol
    assert all(res.codes[b][:, 5].tolist() == res.codes[b][:, 2].tolist() for b in bins)
    assert res.seconds > 0 and res.flops == sorted(res.flops)
    assert (res.flops[0] > 0) == (n_groups > 1)  # FLOPs are counted only to plan several passes


def test_one_pass_when_everything_fits(net: SkipNet, images: np.ndarray) -> None:
    net.calls.clear()
    res = probe_layers(net, images, layers_of(net), batch_size=BS, memory_budget_bytes=10**9, include_input=False)
    n_batches = -(-N // BS)
    assert res.groups == [list(LAYERS)]
    assert net.calls["enc"] == 1 + n_batches  # the dry run + one pass
    assert res.dist_input is None and res.codes == {}


def test_early_stop_really_stops(net: SkipNet, images: np.ndarray) -> None:
    n_batches = -(-N // BS)
    net.calls.clear()
    probe_layers(net, images, layers_of(net, ("enc", "mid")), batch_size=BS, memory_budget_bytes=10**9)
    assert net.calls["mid"] == 1 + n_batches
    assert net.calls["merge"] == 1 and net.calls["out"] == 1  # only the dry run got there
    net.calls.clear()
    probe_layers(net, images, layers_of(net, ("enc", "merge")), batch_size=BS, memory_budget_bytes=10**9)
    assert net.calls["merge"] == 1 + n_batches and net.calls["out"] == 1
    net.calls.clear()
    res = probe_layers(net, images, layers_of(net), batch_size=BS, memory_budget_bytes=N * 4 * (576 + 288 + 576))
    assert res.groups == [["enc", "mid"], ["up", "merge", "out"]]  # cheaper than enc, mid, up | merge, out
    assert net.calls["enc"] == 2 + 2 * n_batches  # dry run, FLOP count, two passes
    assert net.calls["merge"] == 2 + n_batches  # not reached by the first pass
    net.calls.clear()
    probe_layers(net, images, layers_of(net), batch_size=BS, memory_budget_bytes=N * 4 * (576 + 288 + 576))
    assert net.calls["enc"] == 1 + 2 * n_batches  # the FLOP count is cached per model


def test_layer_order_of_argument_is_kept(net: SkipNet, images: np.ndarray) -> None:
    names = ("out", "enc", "merge")
    res = probe_layers(net, images, layers_of(net, names), batch_size=BS, memory_budget_bytes=N * 4 * 720)
    assert res.names == list(names) and res.dims == [DIMS[n] for n in names]
    assert res.groups == [["enc"], ["merge", "out"]]  # passes follow forward order
    ref = reference_acts(net, images, names)
    for li, name in enumerate(names):
        assert_rel(res.dist[li], exact(ref[name]))


def test_modes_restored(net: SkipNet, images: np.ndarray) -> None:
    net.train()
    net.mid.eval()  # mixed modes must come back exactly
    before = {name: m.training for name, m in net.named_modules()}
    probe_layers(net, images[:6], layers_of(net), batch_size=4, memory_budget_bytes=10**9)
    assert {name: m.training for name, m in net.named_modules()} == before
    net.eval()
    probe_layers(net, images[:6], layers_of(net), batch_size=4, memory_budget_bytes=10**9)
    assert not any(m.training for m in net.modules())


def test_oversized_layer_warns_and_is_processed_alone(net: SkipNet, images: np.ndarray) -> None:
    with pytest.warns(ProbeWarning) as record:
        res = probe_layers(net, images, layers_of(net), batch_size=BS, memory_budget_bytes=N * 4 * 300)
    assert sorted(str(w.message).split("'")[1] for w in record) == ["enc", "merge", "up"]
    assert res.peak_bytes_held == N * 4 * 576
    assert res.groups == [["enc"], ["mid"], ["up"], ["merge"], ["out"]]
    ref = reference_acts(net, images)
    assert_rel(res.dist[0], exact(ref["enc"]))


def test_no_warning_within_budget(net: SkipNet, images: np.ndarray) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", ProbeWarning)
        probe_layers(net, images[:4], layers_of(net), batch_size=4, memory_budget_bytes=10**9)


def test_errors_restore_hooks_and_modes(net: SkipNet, images: np.ndarray) -> None:
    net.train()
    with pytest.raises(ProbeError, match="foreign"):
        probe_layers(net, images, [("enc", net.enc), ("foreign", nn.Dropout())], memory_budget_bytes=10**9)
    unused = nn.Conv2d(1, 1, 1)
    net.add_module("unused", unused)
    with pytest.raises(ProbeError, match="unused"):
        probe_layers(net, images, [("enc", net.enc), ("unused", unused)], memory_budget_bytes=10**9)
    assert net.training and all(m.training for m in net.modules())
    assert sum(len(m._forward_hooks) for m in net.modules()) == 0
    with pytest.raises(ProbeError, match="memory_budget"):
        probe_layers(net, images, layers_of(net), memory_budget_bytes=0)
    with pytest.raises(ProbeError, match="bin sizes"):
        probe_layers(net, images, layers_of(net), memory_budget_bytes=10**9, bin_sizes=(0.0,))


def test_module_called_twice_is_an_error(images: np.ndarray) -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(self.conv(x))

    m = Twice()
    with pytest.raises(ProbeError, match="2 calls"):
        probe_layers(m, images, [("conv", m.conv)], memory_budget_bytes=10**9)


def test_plan_groups_is_optimal() -> None:
    rng = np.random.default_rng(0)
    for _ in range(30):
        n = int(rng.integers(1, 7))
        sizes = rng.integers(1, 10, n).tolist()
        costs = np.cumsum(rng.integers(0, 5, n)).tolist()
        budget = int(rng.integers(1, 20))
        plan = plan_groups(sizes, costs, budget)
        assert plan[0][0] == 0 and plan[-1][1] == n
        assert all(a[1] == b[0] for a, b in itertools.pairwise(plan))

        def cost(p):
            return (sum(costs[e - 1] for _, e in p), len(p))

        best = None
        for cuts in itertools.product([0, 1], repeat=n - 1):
            bounds = [0] + [i + 1 for i, c in enumerate(cuts) if c] + [n]
            p = list(itertools.pairwise(bounds))
            if all(e - s == 1 or sum(sizes[s:e]) <= budget for s, e in p):
                best = cost(p) if best is None else min(best, cost(p))
        assert cost(plan) == best


def test_progress_and_names(net: SkipNet, images: np.ndarray, capsys: pytest.CaptureFixture) -> None:
    res = probe_layers(net, torch.from_numpy(images[:5]), ["enc", "out"], batch_size=2, memory_budget_bytes=10**9, progress=True)
    assert res.names == ["enc", "out"] and res.dist.shape == (2, 5, 5)
    err = capsys.readouterr().err
    assert "[probe]" in err and "pass 1/1" in err


def test_bin_codes_beyond_int32(net: SkipNet, images: np.ndarray) -> None:
    """A bin size so small that floor(m / b) leaves the int32 range (the tagged float32 fallback)."""
    bins = (1e-12, 1e-6)
    res = probe_layers(net, images, layers_of(net), batch_size=BS, memory_budget_bytes=10**9, bin_sizes=bins,
                       include_input=False)
    ref = reference_acts(net, images)
    for li, name in enumerate(LAYERS):
        for b in bins:
            np.testing.assert_array_equal(res.codes[b][li], direct_codes(ref[name], b))
    assert res.codes[1e-12][LAYERS.index("out")].tolist()[:6] == [0, 1, 2, 3, 4, 2]  # sample 5 == sample 2


@pytest.mark.parametrize(
    "case",
    ["far", "near_duplicates", "large_values", "all_equal", "straddle_bin_edges"],
)
def test_bin_symbol_ids_against_direct_codes(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ids from bin_symbol_ids equal the direct floor(a / b) grouping; far rows are never hashed."""
    from infoflow.probe import engine, pairwise_sq_dists

    rng = np.random.default_rng(7)
    n, d, b = 40, 300, 0.1
    if case == "far":
        a = 10 * rng.standard_normal((n, d))
    elif case == "near_duplicates":
        a = rng.standard_normal((n, d))
        a[1] = a[0]
        a[2] = a[0] + 0.01 * rng.standard_normal(d)  # close: same symbol in most coordinates, maybe not all
        a[3] = a[0] + 1e-6  # very likely the same symbol
        a[10:20] = a[9]
    elif case == "large_values":
        a = 1e5 + 0.03 * rng.standard_normal((n, d))  # floor(a / b) ~ 1e6: the division's rounding matters
        a[5] = a[4]
    elif case == "all_equal":
        a = np.tile(rng.standard_normal(d), (n, 1))
    else:  # rows a hair apart around bin edges: distinct symbols at tiny distances
        base = np.round(rng.standard_normal(d), 1)
        a = np.tile(base, (n, 1)) + rng.choice([-1e-6, 1e-6], size=(n, d))
    a = a.astype(np.float32)
    hashed: list[int] = []
    real = engine._symbol_digests
    monkeypatch.setattr(engine, "_symbol_digests", lambda v, b32: hashed.append(len(v)) or real(v, b32))
    ids = engine.bin_symbol_ids(a, pairwise_sq_dists(a), b)
    np.testing.assert_array_equal(ids, direct_codes(a, b))
    if case == "far":
        assert sum(hashed) == 0  # no pair can share a symbol: nothing hashed
    if case == "all_equal":
        assert ids.tolist() == [0] * n


class InplaceNet(nn.Module):
    """Probe layers whose outputs the network overwrites afterwards: a conv followed by an in-place
    ReLU, and a BatchNorm followed by an in-place add; plus a channels_last conv."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.ReLU(inplace=True)
        self.bn = nn.BatchNorm2d(4)
        self.last = nn.Conv2d(4, 2, 1).to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.act(self.conv(x))  # conv's output is changed in place
        b = self.bn(c)
        b += 1.0  # bn's output too
        return self.last(b.contiguous(memory_format=torch.channels_last))


def test_outputs_changed_in_place_are_copied(images: np.ndarray) -> None:
    """The probe keeps layer outputs without copying them, unless the network changes them in
    place later: then the layer's value at its hook is what counts (as a copy would have it)."""
    torch.manual_seed(1)
    net = InplaceNet().eval()
    names = ["conv", "bn", "last"]
    ref: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    hooks = [getattr(net, n).register_forward_hook(lambda _m, _i, o, n=n: ref[n].append(o.detach().clone()))
             for n in names]
    with torch.no_grad():
        for s in range(0, N, BS):
            net(torch.from_numpy(images[s : s + BS]))
    for h in hooks:
        h.remove()
    res = probe_layers(net, images, names, batch_size=BS, memory_budget_bytes=10**9, bin_sizes=(0.25,),
                       include_input=False)
    for li, name in enumerate(names):
        a = torch.cat(ref[name]).reshape(N, -1).numpy()
        assert_rel(res.dist[li], exact(a))
        np.testing.assert_array_equal(res.codes[0.25][li], direct_codes(a, 0.25))
    assert (res.dist[0] > 0).any() and (res.dist[1] > 0).any()


class ReusedBuffer(nn.Module):
    """A module that writes every output into the same buffer (earlier batches' values are lost)."""

    def __init__(self) -> None:
        super().__init__()
        self.buf: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.buf is None or self.buf.shape != x.shape:
            self.buf = torch.empty_like(x)
        return torch.mul(x, 2.0, out=self.buf)


def test_module_reusing_its_output_buffer_is_an_error(images: np.ndarray) -> None:
    net = nn.Sequential(nn.Conv2d(3, 2, 1), ReusedBuffer())
    with pytest.raises(ProbeError, match="1.*changed in place by later ones"):
        probe_layers(net, images, ["1"], batch_size=8, memory_budget_bytes=10**9, include_input=False)
    assert not net[1]._forward_hooks


def test_channels_last_outputs_kept_without_copies(images: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    """A channels_last output is flattened in memory order (a view): same distances and symbols."""
    from infoflow.probe import engine

    torch.manual_seed(2)
    conv = nn.Conv2d(3, 5, 3, padding=1)
    net_cl = nn.Sequential(conv).to(memory_format=torch.channels_last)
    x = torch.from_numpy(images).contiguous(memory_format=torch.channels_last)
    clones: list[int] = []
    real = torch.Tensor.clone
    monkeypatch.setattr(torch.Tensor, "clone", lambda t, *a, **k: clones.append(1) or real(t, *a, **k))
    res = probe_layers(net_cl, x, ["0"], batch_size=BS, memory_budget_bytes=10**9, bin_sizes=(0.1,),
                       include_input=False)
    monkeypatch.undo()
    assert not clones
    with torch.no_grad():
        a = conv(torch.from_numpy(images)).reshape(N, -1).numpy()
    assert_rel(res.dist[0], exact(a))
    np.testing.assert_array_equal(res.codes[0.1][0], direct_codes(a, 0.1))
    assert engine._storage_order(conv(x[:2])) == (2, 3, 1)


def test_bin_symbol_ids_read_only_columns_that_split(monkeypatch: pytest.MonkeyPatch) -> None:
    """Columns whose min and max share a bin cannot tell rows apart: only the others are hashed,
    and rows told apart early are not read again."""
    from infoflow.probe import engine, pairwise_sq_dists

    rng = np.random.default_rng(3)
    n, d, b = 50, 5_000, 0.1
    a = (0.01 + 0.08 * rng.uniform(size=(n, d))).astype(np.float32)  # all in bin 0
    a[:, 7] = rng.choice([0.05, 0.15, 0.25], size=n)  # splits rows into three groups
    a[:, 4000] = np.where(np.arange(n) < 3, 0.15, 0.05)  # splits the first three off
    widths: list[tuple[int, int]] = []
    real = engine._symbol_digests
    monkeypatch.setattr(engine, "_symbol_digests",
                        lambda v, bs: widths.append(tuple(v.shape)) or real(v, bs))
    ids = engine.bin_symbol_ids(a, pairwise_sq_dists(a), b)
    np.testing.assert_array_equal(ids, direct_codes(a, b))
    assert widths and all(w == 2 for _, w in widths)  # 2 of 5,000 columns read
    assert len(set(ids.tolist())) <= 6
