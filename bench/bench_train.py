"""Training throughput of Model 1 at the paper's scale, against this machine's matmul peak.

Measures, in one run:
- images per second of training steps (SGD, batch 16, BCE) for Model 1 at S = 128, w = 16,
  with and without channels_last;
- the FLOPs of one training step counted by ``torch.utils.flop_counter`` and the achieved GFLOP/s;
- a float32 matrix-multiply peak measured here (square matmuls), and the ratio of the two.

Usage: python bench/bench_train.py [--size 128] [--width 16] [--batch 16] [--steps 12]
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from infoflow.models import build_model


def matmul_peak(n: int = 2048, repeats: int = 10) -> float:
    """Best float32 GFLOP/s of an n x n matmul."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def step_flops(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter:
        loss = F.binary_cross_entropy(model(x), y)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def images_per_second(model, x, y, steps: int, channels_last: bool) -> float:
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    for _ in range(2):  # warm-up
        opt.zero_grad()
        F.binary_cross_entropy(model(x), y).backward()
        opt.step()
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad()
        F.binary_cross_entropy(model(x), y).backward()
        opt.step()
    return steps * len(x) / (time.perf_counter() - t0)


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=12)
    args = ap.parse_args()

    torch.manual_seed(0)
    x = torch.rand(args.batch, 3, args.size, args.size)
    y = (torch.rand(args.batch, 1, args.size, args.size) > 0.7).float()
    model = build_model(model=1, width=args.width)
    flops = step_flops(model, x, y)
    peak = matmul_peak()
    ips_plain = images_per_second(build_model(model=1, width=args.width), x, y, args.steps, channels_last=False)
    torch.manual_seed(0)
    ips_cl = images_per_second(build_model(model=1, width=args.width), x, y, args.steps, channels_last=True)
    gflops_per_image = flops / args.batch / 1e9
    achieved = ips_cl * gflops_per_image
    result = {
        "model": 1, "size": args.size, "width": args.width, "batch": args.batch, "threads": torch.get_num_threads(),
        "gflop_per_training_image": round(gflops_per_image, 3),
        "images_per_s_channels_last": round(ips_cl, 2), "images_per_s_plain": round(ips_plain, 2),
        "achieved_gflops": round(achieved, 1), "matmul_peak_gflops": round(peak, 1),
        "ratio_to_peak": round(achieved / peak, 3),
        "epoch_seconds_605_images": round(605 / ips_cl, 1),
    }
    print(f"Model 1, S={args.size}, w={args.width}, batch {args.batch}, {result['threads']} threads")
    print(f"  training FLOPs per image (flop_counter): {gflops_per_image:.2f} GFLOP")
    print(f"  images/s: {ips_cl:.1f} (channels_last), {ips_plain:.1f} (plain)")
    print(f"  achieved: {achieved:.1f} GFLOP/s; float32 matmul peak measured now: {peak:.1f} GFLOP/s; "
          f"ratio {achieved / peak:.2f}")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
