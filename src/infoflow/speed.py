"""How a training step runs: reduced-precision arithmetic and the number of threads.

The same code on every device (``device.type`` decides, nothing else):

- :class:`StepRunner`: one training step's forward and backward (``train.autocast``,
  ``train.num_threads``), leaving the gradients in ``.grad`` for the optimizer.
- :func:`step_precision`: the precision of a step's forward: ``"none"`` (float32, torch's
  defaults), ``"bf16"`` (``torch.autocast`` to bfloat16 on the CPU or CUDA; weights, gradients and
  the optimizer stay float32) or ``"tf32"`` (float32 tensors, CUDA's matrix products and cuDNN
  convolutions in TF32; nothing changes on a CPU).
- :func:`full_precision`: autocast off and TF32 off: where the MI probe, its activations and
  the distances run (:class:`infoflow.tracking.LoggedEpochs`), whatever the step used.
- :func:`keep_output_fp32_`: the model's output layer (the U-Net's 1x1 conv + sigmoid) kept in
  float32 under autocast, so that the BCE sees float32 probabilities.
- :func:`pick_threads`: for ``num_threads = "auto"``, the cores that other processes leave free
  (within this process's CPU affinity), re-checked every :data:`RETUNE_EVERY_S` seconds.

Why the thread count matters: torch's intra-op parallelism (OpenMP) splits every op statically
over its threads and joins them after each op, so when another process holds one of the cores
every op waits for the thread that lost its core, and the idle thread spins on the share the
process does get (docs/speed.md has the measurements).
"""

from __future__ import annotations

import contextlib
import os
import time
import types
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .config import AUTOCASTS
from .errors import ConfigError

#: Seconds between two choices of the thread count with ``num_threads = "auto"``.
RETUNE_EVERY_S = 10.0

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# ---------------------------------------------------------------------------------------------
# Threads
# ---------------------------------------------------------------------------------------------


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def runnable_now() -> int | None:
    """Tasks running or ready to run on the whole machine now (``procs_running`` of /proc/stat,
    which counts the reading thread itself); None where it cannot be read."""
    try:
        with open("/proc/stat") as fh:
            for line in fh:
                if line.startswith("procs_running"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def busy_cores(*, samples: int = 8, interval: float = 0.005, own_load: float = 0.0) -> float:
    """Cores that other processes keep busy now, about.

    The median of ``samples`` counts of runnable tasks (:func:`runnable_now`, less the calling
    thread), each after a pause of ``interval`` seconds (so that this process's idle OpenMP
    threads have stopped spinning), raised towards the 1-minute load average less ``own_load``
    (this process's own threads when re-checking during training) but never above the largest
    count seen: the average smooths a load that comes and goes, and a load that has just ended
    (no sample sees it) no longer counts.
    """
    counts = []
    for _ in range(max(1, samples)):
        time.sleep(interval)
        c = runnable_now()
        if c is not None:
            counts.append(max(0, c - 1))
    try:
        avg = os.getloadavg()[0] - own_load
    except OSError:  # pragma: no cover
        avg = 0.0
    if not counts:
        return max(0.0, avg)
    counts.sort()
    median = float(counts[len(counts) // 2])
    return max(0.0, median, min(avg, float(counts[-1])))


def pick_threads(*, cores: int | None = None, busy: float | None = None) -> int:
    """Threads for ``num_threads = "auto"``: the cores not kept busy by other processes, rounded,
    between 1 and ``cores`` (default :func:`available_cores`); ``busy`` defaults to
    :func:`busy_cores` (pass both to decide without reading the machine)."""
    n = available_cores() if cores is None else max(1, int(cores))
    load = busy_cores() if busy is None else max(0.0, float(busy))
    return max(1, min(n, int(n - load + 0.5)))


# ---------------------------------------------------------------------------------------------
# Precision
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _tf32(enabled: bool) -> Iterator[None]:
    """CUDA's float32 matrix products and cuDNN convolutions in TF32 (or not) inside; restored after."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def step_precision(mode: str, device_type: str) -> contextlib.AbstractContextManager:
    """The precision of a training step's forward on ``device_type`` (module docstring)."""
    if mode == "bf16":
        return torch.autocast(device_type, dtype=torch.bfloat16)
    if mode == "tf32":
        return _tf32(True)
    if mode == "none":
        return contextlib.nullcontext()
    raise ConfigError(f"train.autocast must be one of {', '.join(AUTOCASTS)}, got {mode!r}")


@contextlib.contextmanager
def full_precision(device_type: str) -> Iterator[None]:
    """Float32 throughout inside: autocast off on ``device_type`` and TF32 off (CUDA)."""
    with torch.autocast(device_type, enabled=False), _tf32(False):
        yield


def _fp32_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.autocast(x.device.type, enabled=False):
        return type(self).forward(self, x.float())


def keep_output_fp32_(model: nn.Module, name: str = "out") -> nn.Module:
    """Run ``model.<name>`` (the U-Net's 1x1 conv + sigmoid) in float32 even inside autocast.

    A bf16 sigmoid cannot represent probabilities between 0.996 and 1 (nor their complements),
    so the BCE and its gradient would see coarse probabilities; the layer is 1/1000 of the
    step's FLOPs. Patches the module instance's ``forward`` only: state dict, hooks and the
    probe are unchanged, and outside autocast it computes exactly what it did. Returns ``model``.
    """
    module = getattr(model, name, None)
    if module is None:
        raise ConfigError(f"model has no submodule {name!r} to keep in float32")
    module.forward = types.MethodType(_fp32_forward, module)
    return model


# ---------------------------------------------------------------------------------------------
# The step
# ---------------------------------------------------------------------------------------------


class StepRunner:
    """Forward and backward of a training step.

    >>> runner = StepRunner(model, autocast="bf16", threads="auto")
    >>> loss, probs = runner.forward_backward(x, y)  # gradients now in p.grad
    >>> optimizer.step()

    ``forward_backward`` is ``optimizer.zero_grad(set_to_none=True); p = model(x);
    loss = loss_fn(p, y); loss.backward()`` with the forward under :func:`step_precision`; it
    returns the batch's mean loss and the model's output, both detached and float32. With
    ``autocast`` other than "none" and a model with an ``out`` layer, that layer is kept in
    float32 (:func:`keep_output_fp32_`).

    ``threads``: None (torch's setting as it is), an integer (set once), or "auto"
    (:func:`pick_threads` now and again every ``retune_every_s`` seconds before a step). The
    count is the process's, so evaluation and the probe between steps use it too.
    """

    def __init__(self, model: nn.Module, *, autocast: str = "none", threads: int | str | None = None,
                 loss_fn: LossFn = F.binary_cross_entropy, retune_every_s: float = RETUNE_EVERY_S) -> None:
        step_precision(autocast, "cpu")  # an unknown mode is refused here, before any step
        self.model = model
        self.autocast = autocast
        self.threads_setting = threads
        self.loss_fn = loss_fn
        self.retune_every_s = retune_every_s
        if autocast != "none" and hasattr(model, "out"):
            keep_output_fp32_(model)
        self.threads = torch.get_num_threads()
        self._tuned_at = -float("inf")
        if isinstance(threads, int):
            self._set_threads(threads)
        elif threads == "auto":
            self.retune()
        elif threads is not None:
            raise ConfigError(f"train.num_threads must be 'auto', an integer >= 1 or null, got {threads!r}")

    def _set_threads(self, n: int) -> None:
        if torch.get_num_threads() != n:  # setting it clears oneDNN's cache: only on a change
            torch.set_num_threads(n)
        self.threads = n

    def retune(self) -> int:
        """Choose the thread count from the load now (:func:`pick_threads`), this process's own
        threads taken out of the load average; set and return it."""
        own = float(self.threads) if self._tuned_at > -float("inf") else 0.0
        self._set_threads(pick_threads(busy=busy_cores(own_load=own)))
        self._tuned_at = time.monotonic()
        return self.threads

    def forward_backward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradients of the mean loss of batch (x, y) into ``.grad``; returns (loss, probs)."""
        if self.threads_setting == "auto" and time.monotonic() - self._tuned_at >= self.retune_every_s:
            self.retune()
        for p in self.model.parameters():
            p.grad = None
        with step_precision(self.autocast, x.device.type):
            p = self.model(x)
        loss = self.loss_fn(p.float(), y)
        loss.backward()
        return loss.detach(), p.detach().float()
