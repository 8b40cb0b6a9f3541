"""Security defaults, checked on real processes.

* The HTTP API listens on 127.0.0.1 only (``/proc/net/tcp``) and refuses connections on the machine's
  other address; a non-loopback ``http.host`` needs ``http.token_env`` and then a Bearer token.
* ``commands/``, ``logs/`` and the database are owner-only, even under ``umask 000``.
* The MT5 password (a unique marker in ``FXNB_MT5_PASSWORD``) flows through a real login (the
  ``mt5linux`` path to the simulator served over RPyC) and never shows up in config.json, the logs,
  ``/status``, the database bytes, ``fxnb config``/``status``/``commands`` output, or the dashboard's
  Voila and kernel environments.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _hardening_util import eventually, op_status, query, seed_doc, wait_until, write_command

from fxnb.config import Config
from fxnb.testing import FINAL, MonitorProcess, make_workspace, run_cli, update_config

SIM_LOGIN, SIM_SERVER = "5010042", "FxnbSim-Demo"


def _other_address() -> str | None:
    """An address of this machine that is not loopback, or None."""
    try:
        out = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=5).stdout.split()
    except (OSError, subprocess.SubprocessError):
        out = []
    return next((a for a in out if ":" not in a and not a.startswith("127.")), None)


def _listeners(port: int) -> list[str]:
    """Local addresses (hex, as in /proc/net/tcp*) LISTENing on ``port``."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                addr, hexport = fields[1].rsplit(":", 1)
                if fields[3] == "0A" and int(hexport, 16) == port:
                    found.append(addr)
    return found


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        body = e.read()
        try:
            return e.code, json.loads(body or b"{}")
        except ValueError:
            return e.code, {"raw": body[:200].decode(errors="replace")}


# --------------------------------------------------------------------------- HTTP binding and token
def test_http_listens_on_loopback_only(tmp_path: Path) -> None:
    cfg = make_workspace(tmp_path / "ws", sim_positions=2)
    assert cfg.http.host == "127.0.0.1"  # the default
    with MonitorProcess(cfg) as mon:
        assert mon.port is not None
        assert _listeners(mon.port) == ["0100007F"], _listeners(mon.port)
        other = _other_address()
        if other is not None:
            with pytest.raises(ConnectionRefusedError), socket.create_connection((other, mon.port), timeout=3):
                pass
        assert mon.get("/healthz")[0] == 200


def test_remote_host_without_a_token_refuses_to_start(tmp_path: Path) -> None:
    cfg = make_workspace(tmp_path / "ws", sim_positions=1)
    data = json.loads(cfg.path.read_text())
    data["http"]["host"] = "0.0.0.0"
    cfg.path.write_text(json.dumps(data))
    out = run_cli("monitor", cfg=cfg, timeout=30)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "http.host" in out.stderr and "token_env" in out.stderr, out.stderr

    data["http"]["token_env"] = "FXNB_TEST_TOKEN_THAT_IS_NOT_SET"
    cfg.path.write_text(json.dumps(data))
    out = run_cli("monitor", cfg=cfg, timeout=30)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "FXNB_TEST_TOKEN_THAT_IS_NOT_SET" in out.stderr and "refusing" in out.stderr, out.stderr


@pytest.fixture(scope="module")
def remote_monitor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MonitorProcess, str]]:
    cfg = make_workspace(tmp_path_factory.mktemp("remote") / "ws", sim_positions=2,
                         overrides={"http": {"host": "0.0.0.0", "token_env": "FXNB_TEST_HTTP_TOKEN"}})
    token = uuid.uuid4().hex
    mon = MonitorProcess(cfg, env={"FXNB_TEST_HTTP_TOKEN": token})
    mon.start(wait=False)
    mon.port = mon._wait_port(time.monotonic() + 30)
    yield mon, token
    mon.stop()


@pytest.mark.parametrize("path", ["/healthz", "/status"])
def test_remote_host_requires_the_bearer_token(remote_monitor: tuple[MonitorProcess, str], path: str) -> None:
    mon, token = remote_monitor
    base = f"http://127.0.0.1:{mon.port}"
    assert _listeners(mon.port) == ["00000000"]  # it does listen on every address, as configured
    assert _get(base + path)[0] == 401
    assert _get(base + path, {"Authorization": "Bearer wrong"})[0] == 401
    assert _get(base + path, {"Authorization": f"Bearer {token[:-1]}"})[0] == 401
    assert _get(base + path, {"Authorization": "Basic " + token})[0] == 401
    code, body = wait_until(lambda: (r := _get(base + path, {"Authorization": f"Bearer {token}"}))[0] == 200 and r,
                            30, "an authorised 200")
    assert code == 200 and token not in json.dumps(body)
    other = _other_address()
    if other is not None:  # reachable from the network, and still locked
        assert _get(f"http://{other}:{mon.port}{path}")[0] == 401


def test_non_ascii_token_is_a_401(remote_monitor: tuple[MonitorProcess, str]) -> None:
    mon, _ = remote_monitor
    code, _ = _get(f"http://127.0.0.1:{mon.port}/status", {"Authorization": "Bearer \u00e9t\u00e9"})
    assert code == 401


# --------------------------------------------------------------------------- file modes
def _mode(p: Path) -> int:
    return stat.S_IMODE(p.lstat().st_mode)


def test_workspace_is_owner_only_even_under_umask_000(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        cfg = make_workspace(tmp_path / "ws", sim_positions=3, overrides={"profit_monitor": {"rules_mode": "off"}})
        cli = run_cli("close", "loss", cfg=cfg)  # written by the CLI before any monitor runs
        assert cli.returncode == 0, cli.stderr
        queued = next(cfg.paths.commands.glob("cmd_*.json"))
        queued_mode = _mode(queued)
        with MonitorProcess(cfg):
            write_command(cfg, "cmd_bad.json", b"{}")
            wait_until(lambda: (cfg.paths.commands / "errors" / "cmd_bad.json.error.json").exists(), 20, "reject")
            wait_until(lambda: op_status(cfg, cli.stdout.split()[3]) in FINAL, 20, "the CLI command")
            sidecars = {f"fxnb.db{s}": _mode(p) for s in ("-wal", "-shm")  # while the writer has them open
                        if (p := cfg.paths.database.with_name(cfg.paths.database.name + s)).exists()}
    finally:
        os.umask(old)
    c = cfg.paths.commands
    modes = {**sidecars,
        "commands/": _mode(c), "commands/errors/": _mode(c / "errors"), "commands/processing/": _mode(c / "processing"),
        "logs/": _mode(cfg.paths.logs), "logs/profit_monitor.log": _mode(cfg.paths.logs / "profit_monitor.log"),
        "fxnb.db": _mode(cfg.paths.database), "cmd_*.json by the CLI": queued_mode,
        "errors/*.error.json": _mode(c / "errors" / "cmd_bad.json.error.json"),
    }
    print({k: oct(v) for k, v in modes.items()})
    wrong = {k: oct(v) for k, v in modes.items() if v & 0o077}
    assert not wrong, f"readable by group/others: {wrong}"
    assert modes["commands/"] == modes["logs/"] == 0o700


# --------------------------------------------------------------------------- credentials
class _Served:
    """The simulator served over RPyC (``python -m fxnb.broker.serve``), as an mt5linux server would."""

    def __init__(self, directory: Path, port: int) -> None:
        self.log = directory / "serve.log"
        cmd = [sys.executable, "-m", "fxnb.broker.serve", "--state-file", str(directory / "sim_terminal.db"),
               "--port", str(port), "--config", str(directory / "config.json")]
        with self.log.open("a") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        wait_until(lambda: self._accepts(port), 30, "the RPyC server")

    def _accepts(self, port: int) -> bool:
        assert self.proc.poll() is None, self.log.read_text()
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
        return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bytes_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.is_symlink()}


@pytest.fixture(scope="module")
def logged_in(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A monitor logged in over the mt5linux path with a marker password; outputs collected for grepping."""
    pytest.importorskip("rpyc")
    root = tmp_path_factory.mktemp("creds")
    port = _free_port()
    cfg = make_workspace(root / "ws", sim_positions=4, overrides={"profit_monitor": {"rules_mode": "off"}})
    cfg = update_config(cfg, {"broker": {"kind": "mt5linux", "mt5linux": {"host": "127.0.0.1", "port": port}}})
    marker = f"pw-{uuid.uuid4().hex}"
    env = {"FXNB_MT5_LOGIN": SIM_LOGIN, "FXNB_MT5_SERVER": SIM_SERVER, "FXNB_MT5_PASSWORD": marker,
           "FXNB_SECRETS_FILE": str(root / "none.json"), "FXNB_CONFIG": str(cfg.path)}
    server = _Served(cfg.base_dir, port)
    outputs: dict[str, str] = {}
    try:
        with MonitorProcess(cfg, env=env) as mon:
            write_command(cfg, "cmd_1.json", seed_doc(1, "loss"))
            wait_until(lambda: op_status(cfg, "1") in FINAL, 30, "a command through the real login")
            outputs["/status"] = json.dumps(mon.get("/status")[1])
            outputs["/healthz"] = json.dumps(mon.get("/healthz")[1])
            for args in (["config"], ["status", "--json"], ["commands", "--json"], ["terminal"]):
                res = subprocess.run([sys.executable, "-m", "fxnb", *args, "--config", str(cfg.path)],
                                     capture_output=True, text=True, timeout=60, env={**os.environ, **env})
                outputs[f"fxnb {' '.join(args)}"] = res.stdout + res.stderr
            status_ok = op_status(cfg, "1")
        # a wrong login: the terminal refuses, the monitor reports it; the password must not be in the report
        bad_env = {**env, "FXNB_MT5_LOGIN": "1234"}
        with contextlib.ExitStack() as stack:
            bad = MonitorProcess(cfg, env=bad_env)
            stack.callback(bad.stop)
            bad.start(wait=False)
            bad.port = bad._wait_port(time.monotonic() + 30)
            body = bad.wait_health(503, timeout=20)
            eventually(lambda: "uthoriz" in (cfg.paths.logs / "profit_monitor.log").read_text(), 10)
            outputs["/healthz after a refused login"] = json.dumps(body)
            outputs["/status after a refused login"] = json.dumps(bad.get("/status")[1])
        yield {"cfg": cfg, "marker": marker, "outputs": outputs, "status": status_ok, "env": env}
    finally:
        server.stop()


def test_password_is_used_for_a_real_login(logged_in: dict[str, Any]) -> None:
    assert logged_in["status"] == "completed"  # the login with the marker password worked end to end
    assert "uthoriz" in logged_in["outputs"]["/status after a refused login"]  # and a bad login is reported


def test_password_never_leaks_to_files_or_outputs(logged_in: dict[str, Any]) -> None:
    cfg: Config = logged_in["cfg"]
    marker: str = logged_in["marker"]
    files = _bytes_under(cfg.base_dir)  # config.json, logs, monitor.out, fxnb.db(-wal/-shm), commands, sim state
    assert {"config.json", "fxnb.db", "logs/profit_monitor.log", "monitor.out"} <= set(files)
    leaked = [name for name, data in files.items() if marker.encode() in data]
    leaked += [name for name, text in logged_in["outputs"].items() if marker in text]
    assert not leaked, f"the password appears in: {leaked}"
    assert query(cfg, "SELECT 1 FROM monitor_events WHERE message LIKE ?", [f"%{marker}%"]) == []


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            out += [int(x) for x in (task / "children").read_text().split()]
    return out


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(e.decode(errors="replace").split("=", 1) for e in raw if b"=" in e)


def test_dashboard_voila_and_kernel_environments_have_no_credentials(tmp_path: Path) -> None:
    dashboard = pytest.importorskip("fxnb.dashboard")
    cfg = make_workspace(tmp_path / "ws", sim_positions=2,
                         overrides={"http": {"token_env": "FXNB_TEST_HTTP_TOKEN"}})
    marker = f"pw-{uuid.uuid4().hex}"
    parent_env = {**os.environ, "FXNB_MT5_PASSWORD": marker, "FXNB_MT5_LOGIN": "987654",
                  "FXNB_MT5_SERVER": "Broker-Live", "FXNB_SECRETS_FILE": "/somewhere/secrets.json",
                  "FXNB_TEST_HTTP_TOKEN": marker + "-token"}
    server = dashboard.DashboardServer(cfg, port=0, env=parent_env, log_path=tmp_path / "voila.log").start()
    try:
        assert server.proc is not None
        page = threading.Thread(target=lambda: _get_quietly(server.app_url), daemon=True)
        page.start()  # opening the page starts a kernel
        kernel = wait_until(lambda: next((c for c in _children(server.proc.pid)
                                          if b"ipykernel" in Path(f"/proc/{c}/cmdline").read_bytes()), None),
                            60, "a dashboard kernel")
        envs = {"voila": _environ(server.proc.pid), "kernel": _environ(kernel)}
    finally:
        server.stop()
    for who, env in envs.items():
        creds = sorted(k for k in env
                       if k.startswith("FXNB_MT5_") or k in ("FXNB_SECRETS_FILE", "FXNB_TEST_HTTP_TOKEN"))
        assert creds == [], f"{who} environment has {creds}"
        assert not any(marker in v for v in env.values()), who
        assert env.get("FXNB_CONFIG") == str(cfg.path), who


def _get_quietly(url: str) -> None:
    with contextlib.suppress(OSError):
        urllib.request.urlopen(url, timeout=60).read()
