"""Settings from the environment, and the README's configuration table kept true."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from server.config import VARIABLES, ConfigError, settings_from_env

ROOT = Path(__file__).resolve().parent.parent


def test_defaults(tmp_path: Path) -> None:
    s = settings_from_env({"HOMEWORK_DATA_DIR": str(tmp_path)})
    assert s.db_path == tmp_path / "homework.db"
    assert s.base_url == "http://127.0.0.1:8000" and s.origin == "http://127.0.0.1:8000"
    assert s.scheduler is True and s.secure_cookies is False
    secret = (tmp_path / "secret_key").read_text().strip()
    assert s.secret_key == secret and len(secret) >= 32
    assert stat.S_IMODE(os.stat(tmp_path / "secret_key").st_mode) == 0o600
    assert settings_from_env({"HOMEWORK_DATA_DIR": str(tmp_path)}).secret_key == secret  # kept across starts
    assert secret not in repr(s)


def test_https_base_url_makes_cookies_secure(tmp_path: Path) -> None:
    s = settings_from_env({"HOMEWORK_DATA_DIR": str(tmp_path), "HOMEWORK_BASE_URL": "https://clinic.example.org/"})
    assert s.base_url == "https://clinic.example.org" and s.secure_cookies


@pytest.mark.parametrize(
    ("name", "value", "needle"),
    [
        ("HOMEWORK_BASE_URL", "clinic.example.org", "HOMEWORK_BASE_URL"),
        ("HOMEWORK_BASE_URL", "https://clinic.example.org/app", "HOMEWORK_BASE_URL"),
        ("HOMEWORK_SCHEDULER", "maybe", "HOMEWORK_SCHEDULER"),
        ("HOMEWORK_SECRET_KEY", "short", "HOMEWORK_SECRET_KEY"),
        ("HOMEWORK_VAPID_SUBJECT", "mailto: x", "HOMEWORK_VAPID_SUBJECT"),
        ("HOMEWORK_VAPID_SUBJECT", "mailto:admin@localhost", "HOMEWORK_VAPID_SUBJECT"),
        ("HOMEWORK_VAPID_SUBJECT", "ftp://clinic.example.org", "HOMEWORK_VAPID_SUBJECT"),
        ("HOMEWORK_PUSH_ALLOWED_HOSTS", "http://push.example.net", "loopback"),
        ("HOMEWORK_PUSH_ALLOWED_HOSTS", "https://push.example.net/path", "HOMEWORK_PUSH_ALLOWED_HOSTS"),
        ("HOMEWORK_PUSH_ALLOWED_HOSTS", "push.example.net", "HOMEWORK_PUSH_ALLOWED_HOSTS"),
    ],
)
def test_bad_values_fail_with_one_clear_line(tmp_path: Path, name: str, value: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings_from_env({"HOMEWORK_DATA_DIR": str(tmp_path), name: value})
    message = str(info.value)
    assert needle in message and "\n" not in message


def test_push_hosts_are_normalised(tmp_path: Path) -> None:
    s = settings_from_env({"HOMEWORK_DATA_DIR": str(tmp_path),
                           "HOMEWORK_PUSH_ALLOWED_HOSTS": "https://Push.Example.net, http://127.0.0.1:9999"})
    assert s.push_allowed_origins == ("https://push.example.net", "http://127.0.0.1:9999")


def test_readme_documents_every_variable() -> None:
    readme = (ROOT / "README.md").read_text()
    table = {m.group(1) for m in re.finditer(r"^\| `(HOMEWORK_[A-Z_]+)` \|", readme, re.M)}
    assert table == set(VARIABLES), "the README's configuration table and server/config.py disagree"
