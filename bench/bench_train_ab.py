"""A/B training throughput: infoflow's PyTorch U-Net against the original's Keras model, one run.

Model 1 of Lee & Bajic (w = 16, 1,941,105 parameters), S = 128, batch 16, SGD lr 1e-3, BCE,
random inputs, built twice: by infoflow (``build_model(model=1, init="keras")``, channels_last,
each PyTorch option of ``infoflow.speed``) and as the original's Keras model
(``bench/keras_unet.py``, NHWC float32, under a bench-only Python with TensorFlow). Every
measurement is its own fresh process (so OpenMP settings take effect and nothing is shared);
the configurations alternate within each repeat (order reversed every other repeat), and the
ratio torch/keras of each option is reported from the medians over the repeats, beside min and
median img/s and ``uptime`` before and after.

Modes: ``quiet`` runs on the machine as it is (meant for a quiet one); ``loaded`` first starts a
fixed competing load that runs for the whole mode and is the same for both frameworks:
``--load-procs`` processes (default 2 = the cores), each an endless single-threaded float32
numpy matmul (``--load matmul``, 512 x 512) or a pure-Python busy loop (``--load spin``).

Usage:
    .venv/bin/python bench/bench_train_ab.py --mode quiet --repeats 3
    .venv/bin/python bench/bench_train_ab.py --mode loaded --options base,auto,bf16-auto
    --tf-python PATH (default /work/tfbench/bin/python), --seconds (timed window per
    measurement), --json FILE (all raw results)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

#: PyTorch options measured: name -> (infoflow.speed.StepRunner arguments and bench switches, extra
#: environment). ``retain``: freed memory kept in the process (``infoflow.probe.heap.retained_heap``,
#: as training holds it from its first logged epoch); ``compile``: ``torch.compile`` of the model.
#: "base" is the training loop with torch's defaults: 2 intra-op threads here, float32.
TORCH_OPTIONS: dict[str, tuple[dict, dict]] = {
    "base": ({"threads": 2, "retain": False}, {}),
    "retain": ({"threads": 2}, {}),
    "intra1": ({"threads": 1}, {}),
    "passive": ({"threads": 2}, {"OMP_WAIT_POLICY": "PASSIVE"}),
    "auto": ({"threads": "auto"}, {}),
    "passive-auto": ({"threads": "auto"}, {"OMP_WAIT_POLICY": "PASSIVE"}),
    "compile": ({"threads": "auto", "compile": True}, {}),
    "bf16": ({"threads": 2, "autocast": "bf16"}, {}),
    "bf16-intra1": ({"threads": 1, "autocast": "bf16"}, {}),
    "bf16-auto": ({"threads": "auto", "autocast": "bf16"}, {}),
    "bf16-compile": ({"threads": "auto", "compile": True, "autocast": "bf16"}, {}),
}
DEFAULT_OPTIONS = "base,retain,passive,intra1,auto,bf16,bf16-auto"


# ---------------------------------------------------------------------------------------------
# Workers (each in its own process)
# ---------------------------------------------------------------------------------------------


def _timed(step, batch: int, seconds: float, min_steps: int, warmup: int) -> dict:
    t0 = time.perf_counter()
    step()
    first = time.perf_counter() - t0
    for _ in range(max(0, warmup - 1)):
        step()
    times = []
    c0 = time.process_time()
    start = time.perf_counter()
    while len(times) < min_steps or time.perf_counter() - start < seconds:
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    wall = time.perf_counter() - start
    cpu = time.process_time() - c0
    return {"img_s": len(times) * batch / wall, "steps": len(times), "wall_s": wall, "cpu_s": cpu,
            "first_step_s": first, "step_s_min": min(times), "step_s_median": statistics.median(times),
            "loadavg": os.getloadavg()[0]}


def worker_torch(args: argparse.Namespace) -> dict:
    import contextlib

    import torch
    import torch.nn.functional as F

    from infoflow.models import build_model
    from infoflow.probe.heap import retained_heap
    from infoflow.speed import StepRunner

    fields, _ = TORCH_OPTIONS[args.option]
    torch.manual_seed(0)
    x = torch.rand(args.batch, 3, args.size, args.size).contiguous(memory_format=torch.channels_last)
    y = (torch.rand(args.batch, 1, args.size, args.size) > 0.7).float()
    model = build_model(model=1, width=args.width, init="keras").to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    net = torch.compile(model) if fields.get("compile") else model
    runner = StepRunner(net, autocast=fields.get("autocast", "none"), threads=fields["threads"],
                        loss_fn=F.binary_cross_entropy)

    def step():
        loss, _ = runner.forward_backward(x, y)
        opt.step()
        return loss

    with retained_heap() if fields.get("retain", True) else contextlib.nullcontext():
        out = _timed(step, args.batch, args.seconds, args.min_steps, args.warmup)
    out.update(framework="torch", option=args.option, threads=runner.threads,
               intra_threads=torch.get_num_threads(), omp_wait_policy=os.environ.get("OMP_WAIT_POLICY", ""))
    return out


def worker_keras(args: argparse.Namespace) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, str(HERE))
    import numpy as np
    import tensorflow as tf
    from keras_unet import build_keras_unet

    tf.keras.utils.set_random_seed(0)
    model = build_keras_unet(size=args.size, width=args.width)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.random((args.batch, args.size, args.size, 3), dtype=np.float32))
    y = tf.constant((rng.random((args.batch, args.size, args.size, 1)) > 0.7).astype(np.float32))
    out = _timed(lambda: model.train_on_batch(x, y), args.batch, args.seconds, args.min_steps, args.warmup)
    out.update(framework="keras", option="keras", params=int(model.count_params()), tf=tf.__version__)
    return out


def worker_load(kind: str) -> None:
    if kind == "spin":
        while True:
            pass
    import numpy as np

    a = np.random.default_rng(0).random((512, 512), dtype=np.float32)
    while True:
        a = a @ a
        a *= 1.0 / (np.abs(a).max() + 1.0)


# ---------------------------------------------------------------------------------------------
# The orchestrator
# ---------------------------------------------------------------------------------------------

SINGLE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def start_load(kind: str, procs: int) -> list[subprocess.Popen]:
    env = dict(os.environ, **SINGLE_THREAD_ENV)
    return [subprocess.Popen([sys.executable, __file__, "--worker", "load", "--load", kind], env=env)
            for _ in range(procs)]


def stop_load(loads: list[subprocess.Popen]) -> None:
    for p in loads:
        p.terminate()
    for p in loads:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()


def run_one(name: str, args: argparse.Namespace) -> dict:
    common = ["--size", str(args.size), "--width", str(args.width), "--batch", str(args.batch),
              "--seconds", str(args.seconds), "--min-steps", str(args.min_steps), "--warmup", str(args.warmup)]
    env = dict(os.environ)
    for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS"):
        env.pop(k, None)
    if name == "keras":
        cmd = [args.tf_python, __file__, "--worker", "keras", *common]
    else:
        env.update(TORCH_OPTIONS[name][1])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
        cmd = [args.torch_python, __file__, "--worker", "torch", "--option", name, *common]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")][-1]
    res = json.loads(line)
    res["process_s"] = time.perf_counter() - t0
    return res


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def summarise(results: list[dict], names: list[str]) -> dict:
    by = {n: [r["img_s"] for r in results if r["option"] == n] for n in names}
    keras = statistics.median(by["keras"])
    table = {}
    for n in names:
        v = by[n]
        table[n] = {"median_img_s": statistics.median(v), "min_img_s": min(v), "max_img_s": max(v),
                    "ratio_to_keras": statistics.median(v) / keras, "runs": v}
    return table


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=("quiet", "loaded"), default="quiet")
    ap.add_argument("--options", default=DEFAULT_OPTIONS,
                    help=f"comma-separated PyTorch options among {', '.join(TORCH_OPTIONS)}")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=15.0, help="timed window of each measurement")
    ap.add_argument("--min-steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--load", choices=("matmul", "spin"), default="matmul")
    ap.add_argument("--load-procs", type=int, default=2)
    ap.add_argument("--tf-python", default="/work/tfbench/bin/python")
    ap.add_argument("--torch-python", default=sys.executable)
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--json", default=None, help="write all results here")
    ap.add_argument("--worker", choices=("torch", "keras", "load"), default=None, help=argparse.SUPPRESS)
    ap.add_argument("--option", default="base", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker == "load":
        worker_load(args.load)
        return {}
    if args.worker is not None:
        res = worker_torch(args) if args.worker == "torch" else worker_keras(args)
        print(json.dumps(res), flush=True)
        return res

    names = ["keras"] + [n.strip() for n in args.options.split(",") if n.strip()]
    for n in names[1:]:
        if n not in TORCH_OPTIONS:
            ap.error(f"unknown option {n!r}; known: {', '.join(TORCH_OPTIONS)}")
    report: dict = {"mode": args.mode, "uptime_before": uptime(), "size": args.size, "width": args.width,
                    "batch": args.batch, "repeats": args.repeats, "seconds": args.seconds,
                    "load": f"{args.load_procs} x {args.load}" if args.mode == "loaded" else "none"}
    print(f"mode {args.mode}; before: {report['uptime_before']}", flush=True)
    loads = start_load(args.load, args.load_procs) if args.mode == "loaded" else []
    results: list[dict] = []
    try:
        if loads:
            time.sleep(3)
        for rep in range(args.repeats):
            order = names if rep % 2 == 0 else names[::-1]
            for n in order:
                r = run_one(n, args)
                r["repeat"] = rep
                results.append(r)
                print(f"  [{rep}] {n:>13}: {r['img_s']:6.1f} img/s, {r['img_s'] * r['wall_s'] / r['cpu_s']:5.1f} img/cpu-s "
                      f"({r['steps']} steps, cpu {r['cpu_s']:.1f} s "
                      f"/ wall {r['wall_s']:.1f} s, first step {r['first_step_s']:.1f} s, "
                      f"load {r['loadavg']:.2f})", flush=True)
    finally:
        stop_load(loads)
    report["uptime_after"] = uptime()
    table = summarise(results, names)
    report["table"] = table
    report["results"] = results
    print(f"\nmode {args.mode} (load: {report['load']}), S={args.size}, w={args.width}, batch {args.batch}, "
          f"{args.repeats} repeats x {args.seconds:.0f} s")
    print(f"{'option':>13} {'ratio':>6} {'median':>7} {'min':>6} {'max':>6}  img/s")
    for n in names:
        t = table[n]
        print(f"{n:>13} {t['ratio_to_keras']:6.2f} {t['median_img_s']:7.1f} {t['min_img_s']:6.1f} "
              f"{t['max_img_s']:6.1f}")
    print(f"before: {report['uptime_before']}\nafter:  {report['uptime_after']}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
