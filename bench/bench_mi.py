"""Cost of one logged epoch of MI: infoflow against the original workflow and two lower bounds.

At the paper's scale (N = 605 DSB 2018 training images, S = 128, Model 1 with w = 16, its 23
probe layers; 2,506,752 activation values per image) it measures, in one run:

(a) infoflow: ``MITracker.log_epoch``, i.e. the probe forward pass(es), the 23 distance matrices,
    the binned symbols, every configured estimate (KDE upper and lower bound, binning; K-means
    classes, K = 64) and the run store (matrices and the tidy table written atomically). A
    logged epoch after the first in the process counts (the tracker keeps the memory the probe
    used, ``MIConfig.retain_memory``); the first, which also faults that memory in, is reported
    beside it;
(b) the original workflow on the same model, weights, data and classes: every layer's activations
    of the probe set pickled to one file (as the original's logging callback did), the file loaded
    back, then per layer the KDE upper and lower bounds of H(M) and, per class, of H(M | Y = c),
    each entropy call recomputing its float32 distance matrix ``|x|^2 + |y|^2 - 2 x.y`` as the
    original ``kde.py`` did (torch float32 products: the same BLAS as (a));
(c) a lower bound: one plain forward pass of the probe set (no hooks) plus 2 N^2 D flops of
    distance products at the float32 matrix-multiply peak measured in this run;
(d) the floor of an exact Gram: the same forward plus N^2 D_var flops, a symmetric product over
    only the columns that vary between the images (D_var, counted on this run's activations), at
    the rate of this machine's own BLAS kernel for it: numpy's float32 ``c @ c.T`` (OpenBLAS
    ``syrk``) on an N x 8192 block, the faster of one call on OpenBLAS's threads and one
    single-threaded call per core on parallel threads. The float64 rate is reported beside it.

(c) and (d) time the forward twice, with the C library's allocator as it comes and with freed
memory retained as infoflow's probe runs it (``infoflow.probe.heap``), and the faster counts, so
the bounds get every advantage (a) has.

OpenBLAS picks its kernels by the CPU unless ``OPENBLAS_CORETYPE`` names one (an environment may
pin an older kernel family, e.g. Haswell on an AVX-512 machine, which changes the rates of (a)
and (d)). ``--openblas-env both`` (the default) runs every part twice, in child processes with the
environment as given and with every ``OPENBLAS_*`` variable removed, and reports both; the
environment of this process is never changed for long (each child's is set at its start).

Each part runs in a fresh child process, so each peak RSS (``ru_maxrss``) is its own. The
weights: the untrained network, or (``--train-steps``, default 40) a short Adam training on the
same images, so that the activations look like a logged epoch after the start. Prints the
ratios (b)/(a), (a)/(c) and (a)/(d), bytes written per logged epoch by (a) and (b), peak memory,
the breakdown of (a), the load average, and a JSON line.

(a) and (c)/(d) run ``--repeats`` times (default 3), alternating; the minimum and the median of
each are reported and the ratios use the minima: this machine's speed varies by +-20% from minute
to minute.

Usage: python bench/bench_mi.py [--data ../shared/data/dsb2018] [--n 605] [--size 128] [--width 16]
       [--train-steps 40] [--budget-gb 4] [--repeats 3] [--device cpu|cuda] [--state both|trained|untrained]
       [--openblas-env both|given|clean] [--json out.json]
Runtime at the defaults on the 2-core CPU: about 15 minutes; disk: (b) writes ~6 GB to --tmp.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import resource
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def _peak_rss() -> int:
    """Peak resident set size of this process, bytes (Linux: ru_maxrss is KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _load(work: Path, width: int, device: str = "cpu"):
    from infoflow.models import build_model

    model = build_model(model=1, width=width)
    model.load_state_dict(torch.load(work / "model.pt", weights_only=True))
    model.eval().to(device)
    images = np.load(work / "images.npy")
    return model, images


def _sync(device: str) -> None:
    """Wait for the device's queued work (CUDA is asynchronous), so that wall times are true."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(n: int = 2048, repeats: int = 8, device: str = "cpu") -> float:
    """Best float32 GFLOP/s of an n x n matmul (torch, this process's threads; full float32 on CUDA)."""
    if torch.device(device).type == "cuda":
        n = max(n, 8192)  # a GPU needs a larger product to reach its peak
        torch.backends.cuda.matmul.allow_tf32 = False
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    _sync(device)
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def syrk_rate(n: int, dtype: type = np.float32, k: int = 8192, repeats: int = 5) -> float:
    """Best GFLOP/s (n^2 k flops per product) of numpy's ``c @ c.T`` for an n x k block (OpenBLAS
    runs it as syrk): one call on OpenBLAS's own threads, and one single-threaded call per core
    on parallel threads, each on its own block (as the probe runs its Gram blocks); the faster."""
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    threads = max(1, torch.get_num_threads())
    rng = np.random.default_rng(0)
    blocks = [rng.standard_normal((n, k)).astype(dtype) for _ in range(threads)]
    flops = float(n) * n * k

    def one(c: np.ndarray, reps: int) -> None:
        for _ in range(reps):
            c @ c.T

    best = math.inf
    one(blocks[0], 1)
    for _ in range(repeats):  # OpenBLAS's threads
        t0 = time.perf_counter()
        one(blocks[0], 2)
        best = min(best, (time.perf_counter() - t0) / 2)
    rate = flops / best / 1e9
    best = math.inf
    with ThreadPoolExecutor(threads) as ex, threadpool_limits(limits=1, user_api="blas"):
        list(ex.map(lambda c: one(c, 1), blocks))
        for _ in range(repeats):  # one single-threaded product per thread
            t0 = time.perf_counter()
            list(ex.map(lambda c: one(c, 2), blocks))
            best = min(best, (time.perf_counter() - t0) / 2)
    return max(rate, threads * flops / best / 1e9)


def varying_columns(model: torch.nn.Module, x: torch.Tensor, batch: int, device: str) -> list[int]:
    """Per probe layer, the number of its columns whose value is not the same in every image."""
    layers = model.probe_modules()
    lo: list = [None] * len(layers)
    hi: list = [None] * len(layers)

    def hook(k: int, out: torch.Tensor) -> None:
        o = out.detach().reshape(out.shape[0], -1)
        a, b = o.amin(dim=0), o.amax(dim=0)
        lo[k] = a if lo[k] is None else torch.minimum(lo[k], a)
        hi[k] = b if hi[k] is None else torch.maximum(hi[k], b)

    hooks = [m.register_forward_hook(lambda _m, _i, o, k=k: hook(k, o)) for k, (_, m) in enumerate(layers)]
    try:
        with torch.no_grad():
            for s in range(0, len(x), batch):
                model(x[s : s + batch].to(device))
    finally:
        for h in hooks:
            h.remove()
    return [int((a != b).sum()) for a, b in zip(lo, hi)]


# -- (c) and (d), the lower bounds --------------------------------------------------------------
def part_c(work: str, width: int, batch: int, device: str = "cpu") -> dict:
    model, images = _load(Path(work), width, device)
    x = torch.from_numpy(images)
    peak = matmul_peak(device=device)
    n = len(x)
    from infoflow.probe.heap import retained_heap

    def forward() -> float:
        t0 = time.perf_counter()
        for s in range(0, len(x), batch):
            model(x[s : s + batch].to(device))
        _sync(device)
        return time.perf_counter() - t0

    with torch.no_grad():
        model(x[:batch].to(device))  # warm-up
        _sync(device)
        plain = forward()  # the C library's allocator as it comes
        t0 = time.perf_counter()
        with retained_heap():  # as infoflow's probe runs it: freed memory reused, not faulted in again
            forward()
        retained = time.perf_counter() - t0  # with the memory given back at the end, as (a) does
    dims = [int(d) for d in np.load(Path(work) / "dims.npy")]
    flops = 2.0 * n * n * sum(dims)
    best = min(plain, retained)  # the bounds take the faster forward
    out = {"forward_s": best, "forward_plain_s": plain, "forward_retained_s": retained, "peak_gflops": peak,
           "dist_flops": flops, "dist_s": flops / peak / 1e9, "seconds": best + flops / peak / 1e9}
    # (d): N^2 D_var flops of a symmetric product at this machine's float32 syrk rate
    d_var = varying_columns(model, x, batch, device)
    if torch.device(device).type == "cuda":
        rate, rate64 = peak, math.nan  # a symmetric product at the general product's peak: half its time
    else:
        rate, rate64 = syrk_rate(n, np.float32), syrk_rate(n, np.float64)
    gram_flops = float(n) * n * sum(d_var)
    out.update(d_var=sum(d_var), d_var_layers=d_var, syrk_gflops=rate, syrk64_gflops=rate64, gram_flops=gram_flops,
               gram_s=gram_flops / rate / 1e9, floor_s=best + gram_flops / rate / 1e9, peak_rss=_peak_rss())
    return out


# -- (a) infoflow ------------------------------------------------------------------------------
def part_a(work: str, width: int, batch: int, budget_gb: float, estimators: tuple[str, ...],
           device: str = "cpu") -> dict:
    from infoflow.config import MIConfig
    from infoflow.runs import RunDir
    from infoflow.tracking import MITracker, ProbeSet

    work_p = Path(work)
    model, images = _load(work_p, width, device)
    masks = np.load(work_p / "masks.npy")
    labels = np.load(work_p / "labels.npy")
    mi = MIConfig(kernels=("fixed:0.2",), bin_size=(0.1,), labels=("kmeans",), estimators=estimators,
                  memory_budget_gb=budget_gb, batch_size=batch)
    run_path = work_p / "run-a"
    shutil.rmtree(run_path, ignore_errors=True)
    run = RunDir.create(run_path, {"bench": "bench_mi"})
    probe = ProbeSet.build(images, masks, [str(i) for i in range(len(images))], mi, labelings={"kmeans": labels})
    tracker = MITracker(run, probe, mi)
    # Steady state of a training run: the FLOP count that plans the passes is made once per run
    # (cached per model); it is timed here and reported, not counted in the logged epoch.
    from infoflow.probe.engine import _layer_flops

    # The same warm-up as (c): one forward of a batch (the backend's kernels for these shapes are
    # created once per process and cached, as they are after a run's first logged epoch).
    t0 = time.perf_counter()
    _layer_flops(model, list(model.probe_modules()), torch.from_numpy(images[:1]).to(device))
    with torch.no_grad():
        model.eval()(torch.from_numpy(images[:batch]).to(device))
    _sync(device)
    once = time.perf_counter() - t0
    rss_before = _peak_rss()
    # The first logged epoch of a process also faults in the memory the probe keeps; the tracker
    # keeps it for the later ones (mi.retain_memory). Both are timed; the later one counts.
    t0 = time.perf_counter()
    tracker.log_epoch(model, 1)
    _sync(device)
    first = time.perf_counter() - t0
    first_timings = tracker.last_timings
    before = _dir_bytes(run_path)
    t0 = time.perf_counter()
    table = tracker.log_epoch(model, 2)
    _sync(device)
    seconds = time.perf_counter() - t0
    written = _dir_bytes(run_path) - before
    tracker.close()
    out = {"seconds": seconds, "first_epoch_s": first, "first_epoch_timings": first_timings,
           "bytes_written": written, "peak_rss": _peak_rss(), "rss_before": rss_before,
           "timings": tracker.last_timings, "rows": len(table), "once_per_run_s": once}
    ixm = table[(table["quantity"] == "I_XM") & (table["estimator"] == "kde_upper")]
    out["at_ceiling"] = int(ixm["at_ceiling"].sum())
    out["layers"] = int(len(ixm))
    return out


# -- (b) the original workflow -------------------------------------------------------------------
def _entropy_kl(x: torch.Tensor, var: float) -> float:
    """Kolchinsky & Tracey's KDE upper bound of H (nats) as the original kde.py computes it:
    float32 distances from |x|^2 + |y|^2 - 2 x.y, recomputed on every call."""
    n, dims = x.shape
    x2 = (x * x).sum(dim=1, keepdim=True)
    dists = x2 + x2.T - 2.0 * (x @ x.T)
    normconst = (dims / 2.0) * math.log(2 * math.pi * var)
    lprobs = torch.logsumexp(-dists / (2 * var), dim=1) - math.log(n) - normconst
    return float(dims / 2 - lprobs.mean())


def _entropy_bd(x: torch.Tensor, var: float) -> float:
    dims = x.shape[1]
    return _entropy_kl(x, 4 * var) + math.log(0.25) * dims / 2


def part_b(work: str, width: int, batch: int, var: float, device: str = "cpu") -> dict:
    work_p = Path(work)
    model, images = _load(work_p, width, device)
    labels = np.load(work_p / "labels.npy")
    layers = model.probe_modules()
    x = torch.from_numpy(images)
    t0 = time.perf_counter()
    acts: list[list[np.ndarray]] = [[] for _ in layers]
    hooks = [m.register_forward_hook(lambda _m, _i, o, k=k: acts[k].append(o.detach().cpu().numpy().copy()))
             for k, (_, m) in enumerate(layers)]
    try:
        with torch.no_grad():
            for s in range(0, len(x), batch):
                model(x[s : s + batch].to(device))
    finally:
        for h in hooks:
            h.remove()
    data = {"activity": [np.concatenate(a) for a in acts], "epoch": 1}
    acts.clear()
    t_forward = time.perf_counter() - t0
    path = work_p / "epoch00000001.pkl"
    with open(path, "wb") as f:
        pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL)
        f.flush()
        os.fsync(f.fileno())
    written = path.stat().st_size
    del data
    t_dump = time.perf_counter() - t0 - t_forward
    t1 = time.perf_counter()
    with open(path, "rb") as f:
        data = pickle.load(f)
    t_load = time.perf_counter() - t1
    t2 = time.perf_counter()
    classes = np.unique(labels)
    probs = np.array([np.mean(labels == c) for c in classes])
    results = []
    for act in data["activity"]:  # on the model's device, as the original ran its KDE on the GPU
        a = torch.from_numpy(act.reshape(len(act), -1)).to(device)
        h_upper, h_lower = _entropy_kl(a, var), _entropy_bd(a, var)
        hy_upper = sum(p * _entropy_kl(a[torch.from_numpy(labels == c).to(device)], var) for c, p in zip(classes, probs))
        hy_lower = sum(p * _entropy_bd(a[torch.from_numpy(labels == c).to(device)], var) for c, p in zip(classes, probs))
        hmx = (a.shape[1] / 2.0) * (math.log(2 * math.pi * var) + 1)
        results.append(((h_upper - hmx) / math.log(2), (h_upper - hy_upper) / math.log(2),
                        (h_lower - hmx) / math.log(2), (h_lower - hy_lower) / math.log(2)))
    t_kde = time.perf_counter() - t2
    seconds = time.perf_counter() - t0
    path.unlink()
    return {"seconds": seconds, "bytes_written": written, "peak_rss": _peak_rss(), "forward_s": t_forward,
            "pickle_s": t_dump, "load_s": t_load, "kde_s": t_kde, "estimates": results}


def _child(fn, *args, env: dict | None = None):
    """``fn(*args)`` in a fresh process, started with ``env`` (None: this process's environment)."""
    saved = dict(os.environ)
    try:
        if env is not None:  # a spawned child takes os.environ as it is when it starts
            os.environ.clear()
            os.environ.update(env)
        with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as ex:
            return ex.submit(fn, *args).result()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _openblas_envs(choice: str) -> dict[str, dict[str, str] | None]:
    """The environments the parts run in: as given, and/or without any OPENBLAS_* variable."""
    pinned = {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS_")}
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OPENBLAS_")}
    given_name = "given (" + (", ".join(f"{k}={v}" for k, v in sorted(pinned.items())) or "no OPENBLAS_*") + ")"
    if choice == "clean" or (choice == "both" and not pinned):
        return {"clean (no OPENBLAS_*)": clean}
    if choice == "given":
        return {given_name: None}
    return {given_name: None, "clean (no OPENBLAS_*)": clean}


def _load_avg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def _prepare(args, work: Path) -> tuple[int, list[int]]:
    from infoflow.config import DataConfig
    from infoflow.data import load_splits
    from infoflow.estimators import kmeans_labels
    from infoflow.models import build_model

    t0 = time.perf_counter()
    splits = load_splits(DataConfig(source=str(args.data), size=args.size, mask_rule="code"), progress=False)
    train = splits.train
    images, masks = train.images[: args.n], train.masks[: args.n]
    print(f"data: {len(images)} training images at S = {args.size} from {args.data} "
          f"in {time.perf_counter() - t0:.1f} s", flush=True)
    labels = kmeans_labels(train.masks, masks, k=args.k, seed=0)
    np.save(work / "images.npy", np.ascontiguousarray(images, dtype=np.float32))
    np.save(work / "masks.npy", masks)
    np.save(work / "labels.npy", labels)
    torch.manual_seed(0)
    model = build_model(model=1, width=args.width)
    torch.save(model.state_dict(), work / "untrained.pt")
    if args.train_steps:
        t0 = time.perf_counter()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        rng = np.random.default_rng(0)
        model.train()
        for _ in range(args.train_steps):
            idx = rng.choice(len(images), 16, replace=False)
            x, y = torch.from_numpy(images[idx]), torch.from_numpy(masks[idx])
            opt.zero_grad()
            torch.nn.functional.binary_cross_entropy(model(x), y).backward()
            opt.step()
        print(f"weights: {args.train_steps} Adam steps (batch 16, lr 1e-3) in {time.perf_counter() - t0:.1f} s",
              flush=True)
    torch.save(model.state_dict(), work / "trained.pt")
    dims = []
    hooks = [m.register_forward_hook(lambda _m, _i, o: dims.append(o[0].numel())) for _, m in model.probe_modules()]
    with torch.no_grad():
        model.eval()(torch.from_numpy(images[:1]))
    for h in hooks:
        h.remove()
    np.save(work / "dims.npy", np.array(dims))
    return len(images), dims


def _gb(b: float) -> str:
    return f"{b / 1e9:.2f} GB"


def _med(v: list[float]) -> float:
    return float(np.median(v))


def _measure(args, work: Path, state: str, env_name: str, env: dict | None, budget: float, est: tuple,
             run_b: bool) -> dict:
    """(a), (c) and (d) (and (b) if ``run_b``) for one weight state and environment."""
    shutil.copy(work / f"{state}.pt", work / "model.pt")
    print(f"\n== weights: {state}; environment: {env_name}; load average {_load_avg()} ==", flush=True)
    cs, as_ = [], []
    for rep in range(args.repeats):  # (c)/(d) and (a) alternate
        tag = f" [{rep + 1}/{args.repeats}]" if args.repeats > 1 else ""
        c = _child(part_c, str(work), args.width, args.batch, args.device, env=env)
        print(f"(c) lower bound{tag}: forward {c['forward_s']:.1f} s (allocator as it comes "
              f"{c['forward_plain_s']:.1f} s, memory retained {c['forward_retained_s']:.1f} s; the faster counts) "
              f"+ {c['dist_flops'] / 1e12:.2f} TFLOP at {c['peak_gflops']:.0f} GFLOP/s ({c['dist_s']:.1f} s) "
              f"= {c['seconds']:.1f} s", flush=True)
        print(f"(d) floor{tag}: forward {c['forward_s']:.1f} s + N^2 D_var = {c['gram_flops'] / 1e12:.2f} TFLOP "
              f"(D_var {c['d_var']:,} of {sum(np.load(work / 'dims.npy')):,} columns) at the float32 syrk rate "
              f"{c['syrk_gflops']:.0f} GFLOP/s ({c['gram_s']:.1f} s; float64 syrk {c['syrk64_gflops']:.0f} GFLOP/s) "
              f"= {c['floor_s']:.1f} s", flush=True)
        a = _child(part_a, str(work), args.width, args.batch, budget, est, args.device, env=env)
        t = a["timings"]
        print(f"(a) infoflow{tag}: {a['seconds']:.1f} s, the first logged epoch of the process "
              f"{a['first_epoch_s']:.1f} s (forward {t['forward']:.1f}, bin ids "
              f"{t['hash']:.1f}, distances {t['distances']:.1f}, dry run {t['dry_run']:.1f}, "
              f"store {t['store']:.1f}, estimates {t['estimate']:.1f}); wrote {a['bytes_written'] / 1e6:.1f} MB; "
              f"peak RSS {_gb(a['peak_rss'])}; {a['at_ceiling']} of {a['layers']} I(X;M) at the ceiling; "
              f"once per run (not counted): FLOP count and warm-up forward {a['once_per_run_s']:.1f} s; "
              f"load average {_load_avg()}", flush=True)
        cs.append(c)
        as_.append(a)
    c = min(cs, key=lambda r: r["seconds"])
    a = min(as_, key=lambda r: r["seconds"])
    a_all, c_all, d_all = [r["seconds"] for r in as_], [r["seconds"] for r in cs], [r["floor_s"] for r in cs]
    row = {"environment": env_name, "a": a, "c": c, "a_all_s": a_all, "c_all_s": c_all, "d_all_s": d_all,
           "a_over_c": min(a_all) / min(c_all), "a_over_d": min(a_all) / min(d_all),
           "a_over_c_median": _med(a_all) / _med(c_all), "a_over_d_median": _med(a_all) / _med(d_all),
           "first_epoch_over_c": min(r["first_epoch_s"] for r in as_) / min(c_all),
           "load_avg_end": _load_avg()}
    if run_b:
        b = _child(part_b, str(work), args.width, args.batch, 0.2, args.device, env=env)
        b.pop("estimates")
        print(f"(b) original: {b['seconds']:.1f} s (forward {b['forward_s']:.1f}, pickle {b['pickle_s']:.1f}, "
              f"load {b['load_s']:.1f}, KDE {b['kde_s']:.1f}); wrote {_gb(b['bytes_written'])}; "
              f"peak RSS {_gb(b['peak_rss'])}", flush=True)
        # (b) runs once: its ratio takes the slowest (a), so the repeats cannot flatter it
        row.update(b=b, b_over_a=b["seconds"] / max(a_all), bytes_ratio=a["bytes_written"] / b["bytes_written"])
    best = f" (minima of {args.repeats} each)" if args.repeats > 1 else ""
    print(f"ratios ({state}, {env_name}): (a)/(c) = {row['a_over_c']:.2f}, (a)/(d) = {row['a_over_d']:.2f}{best} "
          f"(target <= 1.3; the first logged epoch of a process over (c) {row['first_epoch_over_c']:.2f})", end="")
    if "b" in row:
        print(f"; (b)/(a) = {row['b_over_a']:.2f}; bytes (a)/(b) = {100 * row['bytes_ratio']:.2f}% "
              f"(target <= 1%)", end="")
    print(f"; peak memory (a) {_gb(a['peak_rss'])} (target <= 6 GB)", flush=True)
    return row


def _summary(results: dict, repeats: int) -> None:
    """The table of (a), (c), (d) and their ratios, min / median over the repeats."""
    print(f"\nsummary (seconds, min / median of {repeats}; ratios of the minima, then of the medians):")
    print("| weights | environment | (a) | (c) | (d) | (a)/(c) | (a)/(d) | float32 / float64 syrk GFLOP/s |")
    print("|---|---|---|---|---|---|---|---|")
    for key, row in results["states"].items():
        state = key.split(" | ")[0]
        a, c, d = row["a_all_s"], row["c_all_s"], row["d_all_s"]
        print(f"| {state} | {row['environment']} | {min(a):.1f} / {_med(a):.1f} | {min(c):.1f} / {_med(c):.1f} "
              f"| {min(d):.1f} / {_med(d):.1f} | {row['a_over_c']:.2f} / {row['a_over_c_median']:.2f} "
              f"| {row['a_over_d']:.2f} / {row['a_over_d_median']:.2f} "
              f"| {row['c']['syrk_gflops']:.0f} / {row['c']['syrk64_gflops']:.0f} |")
    print(f"load average at the end: {_load_avg()}", flush=True)


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "dsb2018"))
    ap.add_argument("--n", type=int, default=605, help="probe images (training split)")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--k", type=int, default=64, help="K-means classes")
    ap.add_argument("--batch", type=int, default=32, help="probe batch size (all parts)")
    ap.add_argument("--budget-gb", type=float, default=None, help="infoflow's memory budget (default: MIConfig's)")
    ap.add_argument("--train-steps", type=int, default=40)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                    help="where the model runs in (a), (b) and (c) (default: cuda when present)")
    ap.add_argument("--repeats", type=int, default=3,
                    help="runs of (a) and of (c)/(d), alternating; min and median reported, ratios of the minima")
    ap.add_argument("--openblas-env", choices=("both", "given", "clean"), default="both",
                    help="run the parts with the environment as given, without OPENBLAS_* variables, or both")
    ap.add_argument("--state", choices=("trained", "untrained", "both"), default="trained")
    ap.add_argument("--estimators", default="kde,bin", help="infoflow's online estimators (the paper's: kde,bin)")
    ap.add_argument("--skip-original", action="store_true", help="do not run (b)")
    ap.add_argument("--tmp", default=None, help="folder for (b)'s pickle and (a)'s run (default: system temp)")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()

    from infoflow.config import MIConfig

    budget = MIConfig().memory_budget_gb if args.budget_gb is None else args.budget_gb
    est = tuple(e.strip() for e in args.estimators.split(",") if e.strip())
    results: dict = {"n": args.n, "size": args.size, "width": args.width, "k": args.k, "batch": args.batch,
                     "device": args.device, "load_avg_start": _load_avg(),
                     "budget_gb": budget, "threads": torch.get_num_threads(), "estimators": est, "states": {}}
    with tempfile.TemporaryDirectory(dir=args.tmp, prefix="bench_mi-") as tmp:
        work = Path(tmp)
        n, dims = _prepare(args, work)
        d_total = sum(dims)
        print(f"model 1, w = {args.width}: {len(dims)} probe layers, D total {d_total:,} per image; "
              f"activations of the probe set {_gb(4.0 * n * d_total)} (float32)", flush=True)
        states = ("untrained", "trained") if args.state == "both" else (args.state,)
        envs = _openblas_envs(args.openblas_env)
        for e, (env_name, env) in enumerate(envs.items()):
            for state in states:  # (b) runs once per state, in the first environment
                results["states"][f"{state} | {env_name}"] = _measure(args, work, state, env_name, env, budget, est,
                                                                      run_b=e == 0 and not args.skip_original)
        _summary(results, args.repeats)
    print(json.dumps(results, default=float))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=float))
    return results


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
