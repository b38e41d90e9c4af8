"""Sweeps: every (model, seed) run of a reproduction as a Ray task, resumable.

* :func:`plan_runs` -- the runs of a profile: ``DIR/model{m}_seed{s}`` with resolved configs.
* :func:`run_sweep` -- run them: each is a Ray task (``num_cpus=1``, one torch thread), on a
  local Ray instance started for the sweep (``ray.init(address="local", include_dashboard=False,
  log_to_driver=False)``, temp dir ``ifr-*`` in the temp directory, removed after) or on an existing cluster (``address``).
  Finished runs (:meth:`RunDir.is_finished`) are skipped; partial ones resume from their last
  checkpoint (``train(..., resume=True)``); a failing run is reported with its error and does
  not stop the others. Progress: runs done and epochs per run, polled from each run's
  ``metrics.csv``.
* :func:`execute_run` -- what a task does (also usable without Ray: ``backend="serial"``).

A run directory holding a different configuration than planned is never overwritten: the run
fails with a message (choose another output folder, or pass the same settings).
Each task holds an exclusive lock on ``RUN/.lock`` while it trains, so two processes never
train the same run at once (e.g. a stray worker of an interrupted sweep).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..config import RunConfig
from ..errors import ConfigError, RunError
from ..runs import RunDir, RunLocked, run_lock
from . import _reaper
from .profiles import Profile, get_profile, profile_config, run_key



@dataclass
class RunSpec:
    """One run of a sweep."""

    key: str  # model{m}_seed{s}
    model: int
    seed_index: int
    path: str
    config: dict[str, Any]  # RunConfig.to_dict()

    def run(self) -> RunDir:
        return RunDir(self.path)

    @property
    def epochs(self) -> int:
        return int(self.config["train"]["epochs"])


@dataclass
class RunResult:
    key: str
    status: str  # "finished", "skipped" (already finished), "busy" (being trained elsewhere), "failed"
    path: str
    error: str = ""
    traceback: str = ""
    seconds: float = 0.0
    resumed_from: int | None = None  # last epoch of the partial run that was resumed

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RunResult":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass
class SweepResult:
    results: dict[str, RunResult] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def failed(self) -> list[RunResult]:
        return [r for r in self.results.values() if r.status == "failed"]

    @property
    def busy(self) -> list[RunResult]:
        """Runs another process was training (their lock was held): not failures."""
        return [r for r in self.results.values() if r.status == "busy"]

    @property
    def ok(self) -> list[RunResult]:
        return [r for r in self.results.values() if r.status in ("finished", "skipped")]


# ---------------------------------------------------------------------------------------------
# Planning
# ---------------------------------------------------------------------------------------------


def plan_runs(profile: str | Profile, out: str | os.PathLike, *, data: str | None = None,
              models: Sequence[int] | None = None, seeds: int | None = None,
              sets: Mapping[str, Any] | None = None) -> list[RunSpec]:
    """The runs of a reproduction: every model of ``models`` (default: the profile's) times
    ``seeds`` seeds (default: the profile's), in ``out/model{m}_seed{s}``. Seeds first, so that
    with two workers the first results of every model arrive together."""
    p = get_profile(profile)
    models = tuple(int(m) for m in (models or p.models))
    n_seeds = int(seeds if seeds is not None else p.seeds)
    if n_seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {n_seeds}")
    out = Path(out)
    specs = []
    for s in range(n_seeds):
        for m in models:
            cfg = profile_config(p, data=data, model=m, seed_index=s, sets=sets)
            key = run_key(m, s)
            specs.append(RunSpec(key=key, model=m, seed_index=s, path=str(out / key), config=cfg.to_dict()))
    return specs


def check_cpus(num_cpus: Any) -> int | None:
    """``num_cpus`` of a local Ray instance (``--cpus``): a positive integer, or None for all cores."""
    if num_cpus is None:
        return None
    if isinstance(num_cpus, bool) or not isinstance(num_cpus, int) or num_cpus < 1:
        raise ConfigError(f"--cpus must be a positive whole number of CPUs (leave it out for all "
                          f"{os.cpu_count() or 1} cores), got {num_cpus!r}")
    return num_cpus


def run_state(spec: RunSpec) -> tuple[str, int]:
    """("new" | "partial" | "finished", last epoch in metrics.csv) of a planned run.

    Raises :class:`RunError` when the folder holds a run with another configuration."""
    run = spec.run()
    if not run.config_path.exists():
        return "new", 0
    stored = run.config().to_dict()
    if stored != spec.config:
        diff = _diff(stored, spec.config)
        raise RunError(f"{run.path} holds a run with another configuration ({diff}); use another --out, "
                       f"or the settings it was started with")
    metrics = run.read_metrics()
    last = int(metrics["epoch"].max()) if not metrics.empty else 0
    return ("finished" if run.is_finished() else "partial"), last


def _diff(a: Mapping[str, Any], b: Mapping[str, Any], prefix: str = "") -> str:
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, Mapping) and isinstance(vb, Mapping):
            d = _diff(va, vb, f"{prefix}{k}.")
            if d:
                out.append(d)
        elif va != vb:
            out.append(f"{prefix}{k}: stored {va!r}, planned {vb!r}")
    return "; ".join(out)


# ---------------------------------------------------------------------------------------------
# One run (the body of a Ray task)
# ---------------------------------------------------------------------------------------------


def _limit_threads(n: int) -> contextlib.AbstractContextManager:
    import torch

    torch.set_num_threads(max(int(n), 1))
    try:
        from threadpoolctl import threadpool_limits

        return threadpool_limits(limits=max(int(n), 1))
    except ImportError:  # pragma: no cover
        return contextlib.nullcontext()


def exit_with_parent(interval_s: float = 1.0) -> None:
    """End this process when its parent process ends.

    A Ray task busy in a long training loop does not notice that its raylet is gone (e.g. the
    driver of a local Ray instance was killed): without this it would train on, unsupervised,
    while a new sweep wants to resume the same run. Checked every ``interval_s`` seconds by a
    daemon thread; the run's files stay consistent (every write is atomic) and the next sweep
    resumes from the last checkpoint."""
    parent = os.getppid()
    if parent <= 1:
        return

    def watch() -> None:
        while True:
            time.sleep(interval_s)
            if os.getppid() != parent:
                os._exit(3)

    threading.Thread(target=watch, name="infoflow-exit-with-parent", daemon=True).start()


def execute_run(spec: Mapping[str, Any] | RunSpec, threads: int = 1, progress: bool = False,
                watch_parent: bool = False) -> dict[str, Any]:
    """Train one planned run (or resume it, or skip it when finished); never raises.

    ``watch_parent``: end the process when its parent (a Ray worker's raylet) ends, see
    :func:`exit_with_parent`. Returns a :class:`RunResult` as a dict (status "finished",
    "skipped" or "failed")."""
    spec = spec if isinstance(spec, RunSpec) else RunSpec(**spec)
    if watch_parent:
        exit_with_parent()
    t0 = time.perf_counter()
    res = RunResult(key=spec.key, status="failed", path=spec.path)
    try:
        from ..train import train

        with _limit_threads(threads):
            path = Path(spec.path)
            with run_lock(path, what="trains"):
                state, last = run_state(spec)
                if state == "finished":
                    res.status = "skipped"
                else:
                    if state == "partial" or (path / "config.json").exists():
                        res.resumed_from = last
                        train(RunConfig.from_dict(spec.config), path, resume=True, progress=progress)
                    else:
                        train(RunConfig.from_dict(spec.config), path, progress=progress)
                    res.status = "finished"
    except RunLocked as exc:  # another process trains this run: not a failure of the sweep
        res.status = "busy"
        res.error = str(exc)
    except BaseException as exc:  # noqa: BLE001 - a task reports every failure
        res.status = "failed"
        res.error = f"{type(exc).__name__}: {exc}"
        res.traceback = traceback.format_exc(limit=20)
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
    res.seconds = time.perf_counter() - t0
    return asdict(res)


# ---------------------------------------------------------------------------------------------
# Ray
# ---------------------------------------------------------------------------------------------


def _ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("sweeps run on Ray, which is not installed: pip install 'infoflow[ray]', or pass --serial "
                          "(backend='serial') to train the runs one after the other in this process") from None
    return ray


#: Where Ray (2.52 and later) finds the token of a cluster started with token authentication.
DEFAULT_RAY_TOKEN = Path("~/.ray/auth_token")


def ray_auth_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """What connecting to an existing Ray cluster adds to the environment: ``RAY_AUTH_MODE=token``
    when the mode is not set and a token is at hand (``RAY_AUTH_TOKEN``, the file
    ``RAY_AUTH_TOKEN_PATH`` names, or ``~/.ray/auth_token``). ``ray start --head`` turns token
    authentication on by itself when it finds a token, but ``ray.init(address=...)`` never does;
    a token sent to a cluster without authentication is ignored."""
    env = os.environ if environ is None else environ
    if env.get("RAY_AUTH_MODE") is not None:
        return {}
    home = Path(env["HOME"]) / ".ray" / "auth_token" if env.get("HOME") else DEFAULT_RAY_TOKEN.expanduser()
    have = bool(env.get("RAY_AUTH_TOKEN")) or bool(env.get("RAY_AUTH_TOKEN_PATH")) or home.is_file()
    return {"RAY_AUTH_MODE": "token"} if have else {}


def connection_error(address: str, exc: BaseException, log: str = "") -> ConfigError:
    """One line saying why ``ray.init(address=...)`` failed (``log``: what Ray printed meanwhile)."""
    text = log + "\n" + "\n".join(f"{type(e).__name__}: {e}" for e in _chain(exc))
    if re.search(r"InvalidAuthToken|Unauthenticated|AuthenticationError", text):
        mode = os.environ.get("RAY_AUTH_MODE")
        why = ("the token at hand does not match the cluster's" if mode == "token" else
               f"no token is at hand (RAY_AUTH_MODE is {mode!r})" if mode else "no token is at hand")
        return ConfigError(f"cannot connect to the Ray cluster at {address}: it uses token authentication and {why}; "
                           "give the head's token (`ray get-auth-token` on the head) with --ray-token-file FILE, "
                           "RAY_AUTH_TOKEN or ~/.ray/auth_token (docs/reproduce.md)")
    first = next((str(e).strip().splitlines()[0] for e in _chain(exc) if str(e).strip()), type(exc).__name__)
    return ConfigError(f"cannot connect to the Ray cluster at {address}: {first} (is `ray start --head` running "
                       "there, and is the address its GCS address host:port?)")


def _chain(exc: BaseException | None) -> list[BaseException]:
    out: list[BaseException] = []
    while exc is not None and exc not in out:
        out.append(exc)
        exc = exc.__cause__ or exc.__context__
    return out


@contextlib.contextmanager
def _stderr_captured() -> Iterator[Callable[[], str]]:
    """Send file descriptor 2 (Ray's C++ logging writes there) to a temporary file meanwhile;
    yields a function returning what was written."""
    with tempfile.TemporaryFile() as f:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(f.fileno(), 2)

        def text() -> str:
            f.seek(0)
            return f.read().decode(errors="replace")

        try:
            yield text
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def ray_processes(marker: str) -> list[int]:
    """Ids of processes whose command line contains ``marker`` (e.g. a sweep's Ray temp dir)."""
    return _reaper.processes(cmdline=marker)


kill_processes = _reaper.kill_processes


def ray_temp_base() -> str:
    """Where a sweep makes its Ray temp folder: the temp directory (``TMPDIR``) when its path is
    short enough for Ray's socket paths (< 108 characters in all), else ``/tmp``."""
    base = tempfile.gettempdir()
    return base if len(base) <= 40 or not os.path.isdir("/tmp") else "/tmp"


def _start_reaper(session: str, folder: str | None) -> Any:
    """The watcher that cleans up after this driver when it ends without doing so (SIGKILL):
    ``_reaper.py`` in a session of its own, so a signal to the driver's process group spares it."""
    import subprocess
    import sys

    start = _reaper.start_time(os.getpid())
    args = [sys.executable, "-S", _reaper.__file__, str(os.getpid()), str(start if start is not None else -1), session]
    env = {k: v for k, v in os.environ.items() if k != _reaper.SESSION_ENV}
    try:
        return subprocess.Popen([*args, *([folder] if folder else [])], start_new_session=True, env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError:  # pragma: no cover - then only the next sweep's start cleans up
        return None


@contextlib.contextmanager
def _signals_end_the_sweep() -> Iterator[None]:
    """SIGTERM (and SIGHUP) end the sweep as ^C does, so that Ray is shut down on the way out."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    saved = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def ray_session(address: str | None = None, *, num_cpus: int | None = None, num_gpus: int | None = None,
                temp_dir: str | None = None, env: Mapping[str, str] | None = None) -> Iterator[dict[str, Any]]:
    """A Ray connection for one sweep: a new local instance (``address=None``; its workers at
    niceness 0, not Ray's default 15) or an existing cluster.

    Yields ``{"ray": module, "temp_dir": ..., "local": bool}``; shuts Ray down after (also on
    ^C, SIGTERM and SIGHUP), and for a local instance also ends any of its processes left behind
    and removes the temp folder it made (``ifr-*`` under :func:`ray_temp_base`). Its processes
    carry a session id in their environment; a watcher process (:mod:`._reaper`) removes them and
    that folder when the driver is killed outright (SIGKILL), and each sweep's start removes the
    folders and processes of earlier sweeps whose driver no longer runs. Connecting to a cluster
    turns Ray's token authentication on when a token is at hand (:func:`ray_auth_env`), and a
    failed connection is one line (:func:`connection_error`)."""
    env = dict(env or {})
    own_temp = None
    session = ""
    reaper = None
    saved: dict[str, str | None] = {}
    if address is not None:  # Ray reads the authentication mode when it is imported
        auth = ray_auth_env()
        saved = {k: os.environ.get(k) for k in auth}
        os.environ.update(auth)
        if auth and "ray" in sys.modules:
            with contextlib.suppress(Exception):  # imported before: its cached config reread (as Ray does)
                sys.modules["ray"]._raylet.Config.initialize("")
    try:
        ray = _ray()
    except ConfigError:
        _restore_env(saved)
        raise
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address is None:
        base = ray_temp_base()
        _reaper.remove_stale(base)
        session = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        # Ray runs workers at niceness 15 by default: beside any other busy process they would
        # get a few percent of a core (measured: 30x slower epochs on a shared machine).
        env.setdefault("RAY_worker_niceness", "0")
        env[_reaper.SESSION_ENV] = session
        saved = {k: os.environ.get(k) for k in env}
        for k, v in env.items():  # workers of a local instance inherit the driver's environment
            os.environ[k] = v
        if temp_dir is None:
            own_temp = tempfile.mkdtemp(prefix=_reaper.FOLDER_PREFIX, dir=base)
            _reaper.write_owner(own_temp, session)
            temp_dir = own_temp
        reaper = _start_reaper(session, own_temp)
        kwargs: dict[str, Any] = dict(address="local", num_cpus=check_cpus(num_cpus) or os.cpu_count() or 1,
                                      include_dashboard=False, log_to_driver=False, _temp_dir=str(temp_dir),
                                      object_store_memory=128 * 2**20, configure_logging=True,
                                      logging_level="ERROR")
        if num_gpus is not None:
            kwargs["num_gpus"] = num_gpus
    else:
        kwargs = dict(address=address, log_to_driver=False, configure_logging=True, logging_level="ERROR",
                      runtime_env={"env_vars": env} if env else None)
    try:
        with _signals_end_the_sweep():
            if address is None:
                ray.init(**kwargs)
            else:
                with _stderr_captured() as log:
                    try:
                        ray.init(**kwargs)
                    except Exception as exc:  # Ray's retries print a line a second: one line says why
                        raise connection_error(address, exc, log()) from None
            yield {"ray": ray, "temp_dir": temp_dir, "local": address is None}
    finally:
        ray.shutdown()
        _restore_env(saved)
        if address is None:
            time.sleep(0.2)
            _reaper.reap(session, own_temp)  # Ray's agents outlive shutdown() by up to a minute
            if temp_dir:
                kill_processes(ray_processes(str(temp_dir)))
            if reaper is not None:
                reaper.kill()
                reaper.wait()


def _restore_env(saved: Mapping[str, str | None]) -> None:
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


# ---------------------------------------------------------------------------------------------
# Progress
# ---------------------------------------------------------------------------------------------


def last_epoch(path: str | os.PathLike) -> int:
    """The last epoch in RUN/metrics.csv (0 when none), read from the file's tail."""
    p = Path(path) / "metrics.csv"
    try:
        with open(p, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(size - 4096, 0))
            lines = fh.read().decode(errors="replace").strip().splitlines()
    except OSError:
        return 0
    for line in reversed(lines):
        head = line.split(",", 1)[0]
        if head.isdigit():
            return int(head)
    return 0


class _Progress:
    """Runs done and epochs per run: rich bars, or plain lines when ``enabled`` is False."""

    def __init__(self, specs: Sequence[RunSpec], enabled: bool, echo: Callable[[str], Any]) -> None:
        self.specs = {s.key: s for s in specs}
        self.echo = echo
        self.bar = None
        self.tasks: dict[str, Any] = {}
        self.last: dict[str, int] = {}
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("[bold]{task.description:<16}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[status]}"), TimeElapsedColumn())
            self.all = self.bar.add_task("runs done", total=len(specs), status="")
            for s in specs:
                self.last[s.key] = last_epoch(s.path)
                self.tasks[s.key] = self.bar.add_task(s.key, total=s.epochs, completed=self.last[s.key],
                                                      status="queued")

    def __enter__(self) -> "_Progress":
        if self.bar is not None:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def poll(self, pending: Sequence[str]) -> None:
        """Epochs of the runs not yet done; a run whose epoch count moved is "running"."""
        if self.bar is None:
            return
        for key in pending:
            e = last_epoch(self.specs[key].path)
            moved = e != self.last.get(key)
            self.last[key] = e
            self.bar.update(self.tasks[key], completed=e, **({"status": "running"} if moved else {}))

    def done(self, res: RunResult, n_done: int) -> None:
        s = self.specs[res.key]
        msg = {"finished": "done", "skipped": "done before", "busy": "being trained elsewhere",
               "failed": "FAILED"}.get(res.status, res.status)
        if self.bar is not None:
            self.bar.update(self.tasks[res.key], completed=last_epoch(s.path), status=msg)
            self.bar.update(self.all, completed=n_done)
        else:
            extra = f": {res.error}" if res.error else ""
            self.echo(f"[{n_done}/{len(self.specs)}] {res.key}: {msg} ({last_epoch(s.path)}/{s.epochs} epochs, "
                      f"{res.seconds:.0f} s){extra}")


# ---------------------------------------------------------------------------------------------
# The sweep
# ---------------------------------------------------------------------------------------------


def warm_data_cache(specs: Sequence[RunSpec], progress: bool = False) -> None:
    """Read (and cache) each distinct data configuration once, before the tasks start, so that
    parallel tasks do not all decode the same zip."""
    from ..data import load_splits

    seen = []
    for s in specs:
        d = RunConfig.from_dict(s.config).data
        if d in seen:
            continue
        seen.append(d)
        try:
            load_splits(d, progress=progress)
        except Exception:  # noqa: BLE001 - the runs of this data report the error themselves
            continue


def run_sweep(specs: Sequence[RunSpec], *, address: str | None = None, backend: str = "ray",
              num_cpus: int | None = None, cpus_per_run: float = 1.0, gpus_per_run: float = 0.0,
              threads_per_run: int = 1, progress: bool = True, poll_s: float = 2.0,
              temp_dir: str | None = None, warm_cache: bool = True,
              echo: Callable[[str], Any] = print) -> SweepResult:
    """Run every planned run; skip finished ones, resume partial ones, report failures.

    Args:
        specs: from :func:`plan_runs`.
        address: an existing Ray cluster (``ray://host:10001`` or ``host:6379``); None starts a
            local Ray instance with ``num_cpus`` (default: all cores).
        backend: "ray", or "serial" (one run after the other in this process; no Ray).
        cpus_per_run, gpus_per_run: resources each task asks for.
        threads_per_run: torch (and BLAS) threads inside each task.
        progress: rich progress bars (else one line per finished run).
    """
    t0 = time.perf_counter()
    check_cpus(num_cpus)
    out = SweepResult()
    states: dict[str, tuple[str, int]] = {}
    todo: list[RunSpec] = []
    for s in specs:
        try:
            states[s.key] = run_state(s)
        except RunError as exc:
            out.results[s.key] = RunResult(s.key, "failed", s.path, error=str(exc))
            continue
        if states[s.key][0] == "finished":
            out.results[s.key] = RunResult(s.key, "skipped", s.path)
        else:
            todo.append(s)
    n_done = len(out.results)
    if todo and warm_cache and address is None:
        warm_data_cache(todo, progress=progress)
    with _Progress(specs, progress, echo) as bar:
        for key, res in out.results.items():
            bar.done(res, list(out.results).index(key) + 1)
        if backend == "serial":
            for s in todo:
                res = RunResult.from_dict(execute_run(s, threads_per_run, progress=False))
                out.results[s.key] = res
                n_done += 1
                bar.done(res, n_done)
        elif backend == "ray":
            if todo:
                if gpus_per_run and address is None:
                    import torch

                    if not torch.cuda.is_available():
                        raise ConfigError(f"each run asks for {gpus_per_run:g} GPU(s) and this machine has none: "
                                          "pass --address of a Ray cluster with GPUs, or "
                                          "--set train.device=cpu --gpus-per-run 0")
                env = {"OMP_NUM_THREADS": str(threads_per_run), "MKL_NUM_THREADS": str(threads_per_run),
                       "OPENBLAS_NUM_THREADS": str(threads_per_run)}
                with ray_session(address, num_cpus=num_cpus, temp_dir=temp_dir, env=env,
                                 num_gpus=None) as sess:
                    ray = sess["ray"]
                    if gpus_per_run:
                        have = float(ray.cluster_resources().get("GPU", 0))
                        if have < gpus_per_run:
                            raise ConfigError(f"each run asks for {gpus_per_run:g} GPU(s); the Ray cluster has {have:g}")
                    task = ray.remote(execute_run).options(num_cpus=cpus_per_run, num_gpus=gpus_per_run,
                                                           max_retries=0, name="infoflow-run")
                    pending = {task.remote(asdict(s), threads_per_run, False, address is None): s for s in todo}
                    while pending:
                        ready, _ = ray.wait(list(pending), num_returns=1, timeout=poll_s)
                        for ref in ready:
                            s = pending.pop(ref)
                            try:
                                res = RunResult.from_dict(ray.get(ref))
                            except Exception as exc:  # worker died, task cancelled, ...
                                res = RunResult(s.key, "failed", s.path, error=f"{type(exc).__name__}: {exc}")
                            out.results[s.key] = res
                            n_done += 1
                            bar.done(res, n_done)
                        bar.poll([s.key for s in pending.values()])
        else:
            raise ConfigError(f"backend must be 'ray' or 'serial', got {backend!r}")
    out.results = {s.key: out.results[s.key] for s in specs if s.key in out.results}
    out.seconds = time.perf_counter() - t0
    return out
