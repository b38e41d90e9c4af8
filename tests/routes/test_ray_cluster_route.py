"""Route 3 of issue 15: `infoflow reproduce --address` on a Ray cluster started with `ray start
--head` and token authentication (docs/reproduce.md): the token is passed with --ray-token-file; a
connection that fails is one line; without Ray the error names --serial."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from infoflow.cli import main
from infoflow.errors import ConfigError
from infoflow.experiments import sweep
from infoflow.experiments.sweep import connection_error, ray_auth_env, ray_processes

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / ".." / "shared" / "data" / "dsb2018"


def _auth_error() -> BaseException:
    inner = RuntimeError("RPC error: InvalidAuthToken: Authentication token is missing or incorrect")
    outer = ConnectionError("Failed to connect to Ray cluster at 10.0.0.1:6379")
    outer.__cause__ = inner
    return outer


CONNECTION_CASES = [  # (exception, what Ray printed meanwhile, RAY_AUTH_MODE, the one line's text)
    (_auth_error(), "", None, "it uses token authentication and no token is at hand; give the head's token"),
    (ConnectionError("Failed to connect"), "W gcs_client.cc:210: Unauthenticated: RPC error: InvalidAuthToken\n" * 20,
     "token", "it uses token authentication and the token at hand does not match the cluster's"),
    (ConnectionError("Failed to connect to Ray cluster at 10.0.0.1:6379"), "W gcs_client: Failed to get cluster ID\n",
     None, "Failed to connect to Ray cluster at 10.0.0.1:6379 (is `ray start --head` running there"),
]


@pytest.mark.parametrize("exc, log, mode, text", CONNECTION_CASES)
def test_connection_failure_is_one_line(monkeypatch, exc, log, mode, text) -> None:
    if mode is None:
        monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    else:
        monkeypatch.setenv("RAY_AUTH_MODE", mode)
    err = connection_error("10.0.0.1:6379", exc, log)
    assert isinstance(err, ConfigError) and "\n" not in str(err)
    assert str(err).startswith("cannot connect to the Ray cluster at 10.0.0.1:6379: ") and text in str(err), err


AUTH_CASES = [  # (environment, file ~/.ray/auth_token present, what is added)
    ({}, False, {}),
    ({}, True, {"RAY_AUTH_MODE": "token"}),
    ({"RAY_AUTH_TOKEN": "abc"}, False, {"RAY_AUTH_MODE": "token"}),
    ({"RAY_AUTH_TOKEN_PATH": "/x/token"}, False, {"RAY_AUTH_MODE": "token"}),
    ({"RAY_AUTH_MODE": "disabled"}, True, {}),
    ({"RAY_AUTH_MODE": "token"}, False, {}),
]


@pytest.mark.parametrize("env, home_token, added", AUTH_CASES)
def test_token_authentication_turned_on_when_a_token_is_at_hand(tmp_path: Path, env, home_token, added) -> None:
    if home_token:
        (tmp_path / ".ray").mkdir()
        (tmp_path / ".ray" / "auth_token").write_text("abc")
    assert ray_auth_env({"HOME": str(tmp_path), **env}) == added


def test_without_ray_the_error_names_serial(monkeypatch, tmp_path: Path, capsys) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as when it is not installed
    with pytest.raises(ConfigError, match="pass --serial"):
        sweep._ray()
    assert main(["reproduce", "--data", "synthetic", "--profile", "smoke", "--out", str(tmp_path / "r"),
                 "--address", "127.0.0.1:1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "Ray, which is not installed" in err and "--serial" in err and len(err.strip().splitlines()) == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.skipif(not (DATA / "stage1_train.zip").is_file(), reason=f"DSB 2018 zips not at {DATA}")
def test_reproduce_on_a_token_authenticated_head(tmp_path: Path) -> None:
    ray_bin = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
    if ray_bin is None:
        pytest.skip("the ray command is not installed")
    token = tmp_path / "head-token"
    token.write_text(secrets.token_hex(32))
    head_home, user_home = tmp_path / "head-home", tmp_path / "user-home"
    head_home.mkdir()
    user_home.mkdir()
    port, client_port = _free_port(), _free_port()
    temp = tempfile.mkdtemp(prefix="ifr-h", dir="/tmp")  # short: Ray's socket paths live under it
    base = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(ROOT / "src")}
    for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS"):
        base.pop(k, None)
    head_env = {**base, "HOME": str(head_home), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    try:
        started = subprocess.run([ray_bin, "start", "--head", "--port", str(port), "--ray-client-server-port",
                                  str(client_port), "--num-cpus", "1", "--include-dashboard=false", "--temp-dir", temp,
                                  "--disable-usage-stats"], env=head_env, capture_output=True, text=True, timeout=120)
        assert started.returncode == 0, started.stderr[-3000:]
        address = f"127.0.0.1:{port}"
        cmd = [sys.executable, "-m", "infoflow.cli", "reproduce", "--data", str(DATA), "--profile", "smoke",
               "--models", "1", "--set", "train.epochs=1", "--no-report", "--quiet", "--out", str(tmp_path / "rep"),
               "--address", address]
        user_env = {**base, "HOME": str(user_home), "RAY_gcs_server_port_wait_time_s": "3"}
        t0 = time.perf_counter()
        refused = subprocess.run(cmd, env=user_env, capture_output=True, text=True, timeout=300)
        assert refused.returncode == 2, refused.stderr[-3000:]
        assert refused.stderr.strip().splitlines() == [
            f"error: cannot connect to the Ray cluster at {address}: it uses token authentication and no token is "
            "at hand; give the head's token (`ray get-auth-token` on the head) with --ray-token-file FILE, "
            "RAY_AUTH_TOKEN or ~/.ray/auth_token (docs/reproduce.md)"], refused.stderr[-3000:]
        assert time.perf_counter() - t0 < 120
        ran = subprocess.run(cmd + ["--ray-token-file", str(token)], env=user_env, capture_output=True, text=True,
                             timeout=600)
        assert ran.returncode == 0, (ran.stdout[-3000:], ran.stderr[-3000:])
        assert "InvalidAuthToken" not in ran.stderr and "1 of 1 runs finished, 0 failed" in ran.stdout, ran.stdout
        (metrics,) = list((tmp_path / "rep").glob("*/metrics.csv"))
        assert metrics.read_text().count("\n") == 2  # header and epoch 1
    finally:  # the head's processes: by their command line, or (agents rename themselves) their HOME
        for pid in set(ray_processes(temp) + ray_processes(f"--port={client_port}") + _with_env(f"HOME={head_home}")):
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        shutil.rmtree(temp, ignore_errors=True)


def _with_env(entry: str) -> list[int]:
    """Ids of processes whose environment holds ``entry`` exactly."""
    pids = []
    for p in Path("/proc").glob("[0-9]*"):
        try:
            env = (p / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if entry.encode() in env and int(p.name) != os.getpid():
            pids.append(int(p.name))
    return pids
