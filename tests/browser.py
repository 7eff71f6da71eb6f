"""Helpers for the browser tests: the app served by uvicorn in a thread, and Chromium settings.

See /work/shared/BROWSER.md for the recipe these follow.
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from server import practitioners
from server.app import create_app
from server.config import Settings
from server.web import Context

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
PHONE: dict[str, Any] = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
}
SMALL_PHONE: dict[str, Any] = {**PHONE, "viewport": {"width": 360, "height": 640}}
# The patients the browser tests make live here.
TZ = "Europe/London"
# `make test` installs Chromium and axe-core and sets this, so a missing one fails there
# instead of skipping; a bare `pytest` on a machine without them skips those tests.
REQUIRED = os.environ.get("HOMEWORK_BROWSER_TESTS") == "required"


def needs(path: Path, reason: str) -> pytest.MarkDecorator:
    """Skip when path is missing, unless the browser tests are required."""
    return pytest.mark.skipif(not REQUIRED and not path.exists(), reason=reason)


# Every browser test module: marked, and skipped without Debian's Chromium.
MARKS = [pytest.mark.browser, needs(Path(CHROMIUM), "needs Debian's chromium (make chromium)")]
NEEDS_AXE = needs(AXE, "needs axe-core (make axe)")


def today_local() -> str:
    return datetime.now(UTC).astimezone(ZoneInfo(TZ)).date().isoformat()


class Recorder:
    """Wrap the app to count the raw requests it receives and to reach its lifespan state."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.requests: Counter[tuple[str, str]] = Counter()
        self.state: dict[str, Any] = {}
        self.loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            self.loop = asyncio.get_running_loop()
            self.state = scope.setdefault("state", {})
        elif scope["type"] == "http":
            self.requests[(scope["method"], scope["path"])] += 1
        await self.app(scope, receive, send)


class LiveServer:
    """The app on 127.0.0.1 at a free port, with base_url set to that real address.

    Keyword arguments override Settings (e.g. vapid_subject=..., for the push sender).
    """

    def __init__(self, tmp: Path, **settings: Any) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.settings = Settings(
            db_path=tmp / "homework.db",
            data_dir=tmp,
            secret_key="browser-test-secret-" + "x" * 32,
            base_url=self.url,
            scheduler=False,
            **settings,
        )
        self.recorder = Recorder(create_app(self.settings))
        config = uvicorn.Config(self.recorder, log_level="warning", ws="none", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)
        self.sock.close()

    @property
    def ctx(self) -> Context:
        return self.recorder.state["ctx"]  # type: ignore[no-any-return]

    def run(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any, **kwargs: Any) -> Any:
        """Run an async domain function on the server's own event loop."""
        assert self.recorder.loop is not None
        future = asyncio.run_coroutine_threadsafe(
            functools.partial(fn, *args, **kwargs)(), self.recorder.loop
        )
        return future.result(timeout=10)

    def count(self, sql: str, *params: Any) -> int:
        return int(self.run(self.ctx.db.fetchval, sql, params))

    def posts(self, path: str) -> int:
        return self.recorder.requests[("POST", path)]


class Clinic:
    """A practitioner talking to the live server's API with a Bearer token."""

    def __init__(self, server: LiveServer, email: str) -> None:
        ctx = server.ctx
        me = server.run(
            practitioners.create,
            ctx.db,
            email=email,
            name="Dr Browser",
            password="correct horse battery",
            now=ctx.now(),
        )
        _, token = server.run(
            practitioners.create_api_token, ctx.db, me, label="browser tests", now=ctx.now()
        )
        self.server = server
        self.http = httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        self.exercises = {
            e["name"]: e["id"] for e in self.http.get("/api/exercises").json()["exercises"]
        }

    def post(self, path: str, body: dict[str, Any]) -> Any:
        response = self.http.post(path, json=body)
        assert response.status_code == 201, response.text
        return response.json()

    def patient(self, name: str, timezone: str = "Europe/London") -> dict[str, Any]:
        return self.post("/api/patients", {"name": name, "timezone": timezone})  # type: ignore[no-any-return]

    def routine(self, name: str, items: list[dict[str, Any]]) -> dict[str, Any]:
        resolved = [{**item, "exercise_id": self.exercises[item.pop("exercise")]} for item in items]
        return self.post("/api/routines", {"name": name, "items": resolved})  # type: ignore[no-any-return]

    def assign(
        self, patient_id: int, routine_id: int, start: str, times: list[str], **extra: Any
    ) -> dict[str, Any]:
        body = {
            "routine_id": routine_id,
            "start_date": start,
            "times": times,
            "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
            **extra,
        }
        return self.post(f"/api/patients/{patient_id}/assignments", body)  # type: ignore[no-any-return]

    def invite(self, patient_id: int) -> dict[str, Any]:
        return self.post(f"/api/patients/{patient_id}/invites", {})  # type: ignore[no-any-return]

    def close(self) -> None:
        self.http.close()


def poll(
    check: Callable[[], Any],
    *,
    timeout: float = 10.0,
    interval: float = 0.05,
    what: str = "condition",
    sleep: Callable[[float], Any] = time.sleep,
) -> Any:
    """Call check until it returns something truthy; fail after timeout seconds.

    Pass sleep=lambda s: page.wait_for_timeout(s * 1000) while a page is open, so
    Playwright keeps handling the browser's events in between.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what} (last value {value!r})")
        sleep(interval)


# --- a stand-in for Google's push check-in, so PushManager.subscribe() succeeds offline -----


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def checkin_response(android_id: int, security_token: int) -> bytes:
    """A protobuf AndroidCheckinResponse: stats_ok (1) = true, android_id (7), security_token (8)."""
    return (
        _varint(1 << 3 | 0)
        + _varint(1)
        + _varint(7 << 3 | 1)
        + android_id.to_bytes(8, "little")
        + _varint(8 << 3 | 1)
        + security_token.to_bytes(8, "little")
    )


class FakeCheckin:
    """Answer Chromium's GCM check-in and registration on 127.0.0.1 (see BROWSER.md).

    Chromium is pointed at it with gcm_args(); the subscriptions it then makes look real
    (an FCM endpoint, genuine p256dh and auth) but nothing is ever delivered to them.
    """

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        hits: Counter[str] = Counter()
        self.hits = hits

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                hits[self.path] += 1
                if self.path.startswith("/checkin"):
                    body, kind = (
                        checkin_response(0x1234567890, 0x0FEDCBA987),
                        "application/x-protobuf",
                    )
                elif self.path.startswith("/c2dm/register3"):
                    body, kind = f"token=fake-{hits[self.path]}-token".encode(), "text/plain"
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> FakeCheckin:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def args(self) -> list[str]:
        base = f"http://127.0.0.1:{self.port}"
        return [
            f"--gcm-checkin-url={base}/checkin",
            f"--gcm-registration-url={base}/c2dm/register3",
            "--gcm-mcs-endpoint=https://127.0.0.1:1",
        ]
