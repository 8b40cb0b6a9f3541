"""MT5 credentials: from the environment or a secrets file outside the repository, never config.json.

Kept apart from ``fxnb.config`` so that the console (which may read config)
never touches them, and apart from the broker so config loading does not
import the broker layer.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from fxnb.errors import ConfigError

ENV_LOGIN = "FXNB_MT5_LOGIN"
ENV_PASSWORD = "FXNB_MT5_PASSWORD"
ENV_SERVER = "FXNB_MT5_SERVER"
ENV_SECRETS_FILE = "FXNB_SECRETS_FILE"
DEFAULT_SECRETS_FILE = Path("~/.config/fxnb/secrets.json")

REDACTED = "***"


@dataclass(frozen=True)
class Credentials:
    """Login for a real terminal. ``repr`` never shows the password."""

    login: int | None = None
    password: str | None = None
    server: str | None = None

    def __repr__(self) -> str:
        pw = REDACTED if self.password else None
        return f"Credentials(login={self.login!r}, password={pw!r}, server={self.server!r})"

    def redacted(self) -> dict[str, object]:
        return {"login": self.login, "password": REDACTED if self.password else None, "server": self.server}


def _login(value: object, where: str) -> int | None:
    if value in (None, ""):
        return None
    try:
        return int(str(value))
    except ValueError:
        raise ConfigError(f"{where}: the MT5 login must be a number, got {value!r}") from None


def load_credentials(env: Mapping[str, str] | None = None, *, repo_root: Path | None = None) -> Credentials:
    """Environment variables win; then the secrets file (``FXNB_SECRETS_FILE`` or ``~/.config/fxnb/secrets.json``).

    A secrets file inside ``repo_root`` is refused: it would end up committed.
    """
    env = os.environ if env is None else env
    file_values: dict[str, object] = {}
    path = Path(env.get(ENV_SECRETS_FILE) or DEFAULT_SECRETS_FILE).expanduser()
    if path.is_file():
        if repo_root is not None and path.resolve().is_relative_to(repo_root.resolve()):
            raise ConfigError(
                f"secrets file {path} is inside the repository {repo_root}: move it outside so it is never committed"
            )
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"secrets file {path}: cannot read it as JSON ({exc})") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"secrets file {path}: expected a JSON object with login, password, server")
        unknown = set(loaded) - {"login", "password", "server"}
        if unknown:
            raise ConfigError(
                f"secrets file {path}: unknown key(s) {sorted(unknown)}; allowed: login, password, server"
            )
        file_values = loaded
    login = _login(env.get(ENV_LOGIN) or file_values.get("login"), ENV_LOGIN if env.get(ENV_LOGIN) else str(path))
    password = env.get(ENV_PASSWORD) or file_values.get("password")
    server = env.get(ENV_SERVER) or file_values.get("server")
    return Credentials(
        login=login,
        password=str(password) if password else None,
        server=str(server) if server else None,
    )
