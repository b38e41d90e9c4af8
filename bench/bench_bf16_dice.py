"""Does bf16 autocast change what training reaches? Dice curves, one run.

Trains the same model from the same initial weights, on the same shuffles, once per step
option of ``infoflow.speed`` (default: float32 as the loop runs it, and bf16 autocast), on the
real DSB 2018 data at the reduced scale of the ``cpu`` profile (S = 64, masks made at 128,
w = 8, Keras init, Adam lr 1e-3, batch 16), and prints the validation Dice (and training loss)
of every epoch side by side, the largest |difference| to the first option, and the seconds per
epoch. The loop is infoflow.train's (same generator per epoch, ``dice_per_image``,
``evaluate``), with :class:`infoflow.speed.StepRunner` doing forward and backward.

Usage: .venv/bin/python bench/bench_bf16_dice.py [--epochs 30] [--seeds 0] [--options fp32,bf16]
    [--data ../shared/data/dsb2018] [--json runs/bench_bf16_dice.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from infoflow.config import DataConfig, RunConfig
from infoflow.data import load_splits
from infoflow.models import build_model
from infoflow.speed import StepRunner
from infoflow.train import dice_per_image, epoch_generator, evaluate, make_optimizer

#: step options: name -> infoflow.speed.StepRunner arguments
OPTIONS = {
    "fp32": {"threads": 2},
    "bf16": {"threads": 2, "autocast": "bf16"},
    "fp32-1t": {"threads": 1},
    "bf16-1t": {"threads": 1, "autocast": "bf16"},
}


def train_curve(splits, option: str, *, seed: int, epochs: int, width: int, lr: float, batch: int,
                verbose: bool = False) -> dict:
    cfg = RunConfig()
    cfg.train.optimizer, cfg.train.lr = "adam", lr
    x_train, y_train = torch.from_numpy(splits.train.images), torch.from_numpy(splits.train.masks)
    x_val, y_val = torch.from_numpy(splits.test.images), torch.from_numpy(splits.test.masks)
    torch.manual_seed(seed)
    model = build_model(model=1, width=width, init="keras").to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model.parameters(), cfg)
    runner = StepRunner(model, **OPTIONS[option], loss_fn=F.binary_cross_entropy)
    n = len(x_train)
    rows = []
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(n, generator=epoch_generator(seed, epoch))
        loss_sum, dice_sum = 0.0, 0.0
        for i in range(0, n, batch):
            idx = order[i:i + batch]
            x = x_train[idx].contiguous(memory_format=torch.channels_last)
            y = y_train[idx]
            loss, p = runner.forward_backward(x, y)
            optimizer.step()
            loss_sum += loss.item() * len(idx)
            dice_sum += dice_per_image(p, y).sum().item()
        seconds = time.perf_counter() - t0
        val_loss, val_dice = evaluate(model, x_val, y_val, batch_size=32, device=torch.device("cpu"),
                                      channels_last=True)
        rows.append({"epoch": epoch, "loss_train": loss_sum / n, "dice_train": dice_sum / n,
                     "loss_val": val_loss, "dice_val": val_dice, "train_seconds": seconds})
        if verbose:
            print(f"  {option} seed {seed} epoch {epoch}: loss {loss_sum / n:.4f} val Dice {val_dice:.4f} "
                  f"({seconds:.1f} s)", flush=True)
    return {"option": option, "seed": seed, "rows": rows}


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data/dsb2018")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--mask-size", type=int, default=128)
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seeds", default="0", help="comma-separated seeds")
    ap.add_argument("--options", default="fp32,bf16", help=f"comma-separated among {', '.join(OPTIONS)}")
    ap.add_argument("--json", default=None)
    ap.add_argument("--verbose", action="store_true", help="print every epoch")
    args = ap.parse_args()

    splits = load_splits(DataConfig(source=args.data, size=args.size, mask_size=args.mask_size), progress=False)
    options = [o.strip() for o in args.options.split(",") if o.strip()]
    seeds = [int(s) for s in args.seeds.split(",")]
    curves = []
    for seed in seeds:
        for opt in options:
            c = train_curve(splits, opt, seed=seed, epochs=args.epochs, width=args.width, lr=args.lr,
                            batch=args.batch, verbose=args.verbose)
            curves.append(c)
            last = c["rows"][-1]
            print(f"seed {seed} {opt:>12}: val Dice {last['dice_val']:.4f} at epoch {args.epochs}, "
                  f"{sum(r['train_seconds'] for r in c['rows']) / args.epochs:.2f} s/epoch", flush=True)
    summary = {}
    for seed in seeds:
        cs = [c for c in curves if c["seed"] == seed]
        ref = cs[0]
        print(f"\nseed {seed}: validation Dice per epoch ({', '.join(c['option'] for c in cs)})")
        print("epoch " + " ".join(f"{c['option']:>12}" for c in cs) + "  max |diff| to " + ref["option"])
        for e in range(args.epochs):
            vals = [c["rows"][e]["dice_val"] for c in cs]
            print(f"{e + 1:5d} " + " ".join(f"{v:12.4f}" for v in vals)
                  + f"  {max(abs(v - vals[0]) for v in vals[1:]) if len(vals) > 1 else 0.0:.4f}")
        for c in cs[1:]:
            d = [abs(c["rows"][e]["dice_val"] - ref["rows"][e]["dice_val"]) for e in range(args.epochs)]
            summary[f"seed{seed}:{c['option']}-vs-{ref['option']}"] = {
                "final_diff": c["rows"][-1]["dice_val"] - ref["rows"][-1]["dice_val"],
                "max_abs_diff_last10": max(d[-10:]), "max_abs_diff_all": max(d),
                "mean_last5_diff": sum(c["rows"][e]["dice_val"] - ref["rows"][e]["dice_val"]
                                       for e in range(max(0, args.epochs - 5), args.epochs))
                / min(5, args.epochs),
                "final": c["rows"][-1]["dice_val"], "final_ref": ref["rows"][-1]["dice_val"]}
    print(json.dumps(summary, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "summary": summary, "curves": curves}, indent=1))
    return summary


if __name__ == "__main__":
    main()
