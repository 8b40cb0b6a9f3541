"""How the dashboard is served: config written for Voila, the kernels' environment, refusals."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fxnb.config import Config
from fxnb.dashboard import APPS_DIR, DashboardServer, kernel_env, voila_config


def test_voila_config_on_loopback_has_the_tab_close_fixes() -> None:
    conf = voila_config(host="127.0.0.1", port=8866)
    assert conf["Voila"]["tornado_settings"] == {"disable_check_xsrf": True}
    vc = conf["VoilaConfiguration"]
    assert vc["strip_sources"] is True and vc["show_tracebacks"] is False
    assert vc["multi_kernel_manager_class"] == "fxnb.dashboard.DisconnectCullingKernelManager"
    assert conf["MappingKernelManager"]["cull_idle_timeout"] > 0  # the culler only runs when this is > 0
    assert conf["DisconnectCullingKernelManager"]["cull_disconnected_after"] <= 30


def test_voila_config_elsewhere_keeps_xsrf_checks() -> None:
    assert "tornado_settings" not in voila_config(host="10.1.2.3", port=8866)["Voila"]


def test_kernels_get_the_config_path_and_no_credentials(cfg: Config) -> None:
    env = kernel_env(cfg, {"PATH": "/bin", "FXNB_MT5_PASSWORD": "x", "FXNB_MT5_LOGIN": "1", "FXNB_MT5_SERVER": "s",
                           "FXNB_SECRETS_FILE": "/s.json", "FXNB_CONFIG": "/elsewhere.json"})
    assert env == {"PATH": "/bin", "FXNB_CONFIG": str(cfg.path)}


def test_refuses_a_public_address_without_a_token(cfg: Config) -> None:
    with pytest.raises(ValueError, match="without a token"):
        DashboardServer(cfg, host="0.0.0.0")


def test_command_serves_only_the_apps_folder_on_loopback(cfg: Config, tmp_path) -> None:
    server = DashboardServer(cfg, port=0)
    cmd = server.command(tmp_path)
    assert cmd[:4] == [sys.executable, "-m", "voila", str(APPS_DIR)]
    assert "--Voila.ip=127.0.0.1" in cmd and "--strip_sources=True" in cmd and "--show_tracebacks=False" in cmd
    assert f"--Voila.config_file_paths={tmp_path}" in cmd
    assert server.app_url == f"http://127.0.0.1:{server.port}/voila/render/dashboard.ipynb"


def test_kernel_manager_class_resolves_by_dotted_name() -> None:
    code = ("from traitlets.utils.importstring import import_item\n"
            "from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager\n"
            "km = import_item('fxnb.dashboard.DisconnectCullingKernelManager')\n"
            "assert issubclass(km, AsyncMappingKernelManager), km\n"
            "assert km().cull_disconnected_after == 10.0\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_importing_the_launcher_is_cheap() -> None:
    code = "import sys, fxnb.dashboard; print(sorted(m for m in sys.modules if m.startswith(('jupyter_server', 'voila', 'ipywidgets'))))"  # noqa: E501
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr
