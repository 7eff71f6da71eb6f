"""The homework command, run as a newcomer would run it."""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from server import cli


def homework(tmp_path: Path, *args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "HOMEWORK_DATA_DIR": str(tmp_path), **env}
    return subprocess.run([sys.executable, "-m", "server", *args], input=stdin, capture_output=True, text=True,
                          env=environ, timeout=60, cwd=tmp_path)


def test_migrate_create_practitioner_and_backup(tmp_path: Path) -> None:
    assert "applied migrations" in homework(tmp_path, "migrate").stdout
    assert "up to date" in homework(tmp_path, "migrate").stdout
    made = homework(tmp_path, "practitioner", "create", "--email", "ann@clinic.example", "--name", "Ann",
                    "--password-stdin", stdin="a long enough password\n")
    assert made.returncode == 0 and "created practitioner" in made.stdout
    again = homework(tmp_path, "practitioner", "create", "--email", "ann@clinic.example", "--name", "Ann",
                     "--password-stdin", stdin="a long enough password\n")
    assert again.returncode == 1 and "already" in again.stderr
    short = homework(tmp_path, "practitioner", "create", "--email", "b@clinic.example", "--name", "B",
                     "--password-stdin", stdin="short\n")
    assert short.returncode == 2
    backup = homework(tmp_path, "backup", str(tmp_path / "copy.db"))
    assert backup.returncode == 0
    conn = sqlite3.connect(tmp_path / "copy.db")
    assert conn.execute("SELECT email FROM practitioners").fetchall() == [("ann@clinic.example",)]
    assert homework(tmp_path, "backup", str(tmp_path / "copy.db")).returncode == 1  # never overwrites


def test_bad_configuration_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    result = homework(tmp_path, "migrate", HOMEWORK_BASE_URL="not a url")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "HOMEWORK_BASE_URL" in result.stderr
    assert "Traceback" not in result.stderr


def test_reminder_commands(tmp_path: Path) -> None:
    key = homework(tmp_path, "vapid-public-key")
    assert key.returncode == 0 and len(key.stdout.strip()) == 87  # 65 bytes, base64url
    assert homework(tmp_path, "vapid-public-key").stdout == key.stdout  # kept
    missing = homework(tmp_path, "send-reminders")
    assert missing.returncode == 2 and "HOMEWORK_VAPID_SUBJECT" in missing.stderr
    bad = homework(tmp_path, "send-reminders", HOMEWORK_VAPID_SUBJECT="mailto: x")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    one = homework(tmp_path, "send-reminders", "--at", "2026-03-02T19:30:00Z",
                   HOMEWORK_VAPID_SUBJECT="mailto:ops@clinic-test.org")
    assert one.returncode == 0, one.stderr
    assert one.stdout.startswith("planned 0 assignments")
    assert homework(tmp_path, "send-reminders", "--at", "yesterday",
                    HOMEWORK_VAPID_SUBJECT="mailto:ops@clinic-test.org").returncode == 2


def test_reminder_commands_run_on_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    loops: list[str] = []

    async def with_scheduler(settings: object, work: object) -> int:
        loops.append(type(asyncio.get_running_loop()).__module__.split(".")[0])
        return 0

    monkeypatch.setattr(cli, "_with_scheduler", with_scheduler)
    settings: Any = None  # the stand-in above never reads it
    assert cli.cmd_send_reminders(settings, argparse.Namespace(at=None)) == 0
    assert cli.cmd_worker(settings, argparse.Namespace()) == 0
    assert loops == ["uvloop", "uvloop"]


def test_run_loop_falls_back_to_asyncio_without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    async def loop_module() -> str:
        return type(asyncio.get_running_loop()).__module__.split(".")[0]

    assert cli.run_loop(loop_module()) == "uvloop"
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop now raises ImportError
    assert cli.run_loop(loop_module()) == "asyncio"
