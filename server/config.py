"""Settings, read once from the environment and then passed around frozen.

Every variable is optional. A bad value raises ConfigError with one line that names
the variable, so `homework serve` can print it and exit instead of a traceback.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from .push import parse_allowed_origins, validate_subject


class ConfigError(Exception):
    """A setting is missing or malformed; the message is one line for the operator."""


# Name, default, meaning: the README's configuration table is checked against this.
VARIABLES: dict[str, tuple[str, str]] = {
    "HOMEWORK_DB": ("var/homework.db", "SQLite database file"),
    "HOMEWORK_DATA_DIR": ("var", "folder for the generated secret key and VAPID keys"),
    "HOMEWORK_SECRET_KEY": ("generated into the data folder", "signs cookies"),
    "HOMEWORK_BASE_URL": ("http://127.0.0.1:8000", "the address patients and staff use"),
    "HOMEWORK_VAPID_SUBJECT": ("(none)", "contact URL sent to push services"),
    "HOMEWORK_PUSH_ALLOWED_HOSTS": ("(none)", "extra push service origins"),
    "HOMEWORK_SCHEDULER": ("on", "run the reminder scheduler in the web process"),
}


@dataclass(frozen=True)
class Settings:
    db_path: Path
    data_dir: Path
    secret_key: str = field(repr=False)
    base_url: str = "http://127.0.0.1:8000"
    vapid_subject: str | None = None
    push_allowed_origins: tuple[str, ...] = ()
    scheduler: bool = True
    scheduler_interval: float = 30.0

    @property
    def origin(self) -> str:
        parts = urlsplit(self.base_url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def secure_cookies(self) -> bool:
        return self.base_url.startswith("https://")


def settings_from_env(environ: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from environment variables, refusing bad values with one clear line."""
    env = os.environ if environ is None else environ
    data_dir = Path(env.get("HOMEWORK_DATA_DIR") or "var")
    db_path = Path(env.get("HOMEWORK_DB") or data_dir / "homework.db")
    base_url = parse_base_url(env.get("HOMEWORK_BASE_URL") or "http://127.0.0.1:8000")
    subject = env.get("HOMEWORK_VAPID_SUBJECT") or None
    if subject is not None:
        subject = parse_vapid_subject(subject)
    origins = parse_push_hosts(env.get("HOMEWORK_PUSH_ALLOWED_HOSTS") or "")
    scheduler = env.get("HOMEWORK_SCHEDULER", "on").strip().lower()
    if scheduler not in ("on", "off"):
        raise ConfigError(f"HOMEWORK_SCHEDULER must be 'on' or 'off', not {scheduler!r}")
    secret = env.get("HOMEWORK_SECRET_KEY") or None
    if secret is not None and len(secret) < 32:
        raise ConfigError("HOMEWORK_SECRET_KEY must be at least 32 characters long")
    return Settings(
        db_path=db_path,
        data_dir=data_dir,
        secret_key=secret or load_or_create_secret(data_dir),
        base_url=base_url,
        vapid_subject=subject,
        push_allowed_origins=origins,
        scheduler=scheduler == "on",
    )


def parse_base_url(value: str) -> str:
    """Return the base URL without a trailing slash, or refuse it."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"HOMEWORK_BASE_URL must be an http(s) URL like https://clinic.example.org, not {value!r}")
    if parts.query or parts.fragment or parts.path not in ("", "/"):
        raise ConfigError("HOMEWORK_BASE_URL must be an origin with no path, query or fragment")
    return f"{parts.scheme}://{parts.netloc}"


def parse_vapid_subject(value: str) -> str:
    """Accept a mailto: address or an https: URL, the only subjects push services take."""
    try:
        return validate_subject(value.strip())
    except ValueError as exc:
        raise ConfigError(f"HOMEWORK_VAPID_SUBJECT: {exc}") from None


def parse_push_hosts(value: str) -> tuple[str, ...]:
    """Parse extra push service origins: https anywhere, http only on loopback."""
    try:
        return parse_allowed_origins(value)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def load_or_create_secret(data_dir: Path) -> str:
    """Read the cookie-signing key from the data folder, creating it (mode 0600) on first start."""
    path = data_dir / "secret_key"
    try:
        secret = path.read_text().strip()
        if len(secret) >= 32:
            return secret
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        secret = secrets.token_urlsafe(48)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secret + "\n")
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None
    return secret
