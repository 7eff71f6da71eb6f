"""Helpers for the browser tests: the app served by uvicorn in a thread, and Chromium settings.

See /work/shared/BROWSER.md for the recipe these follow.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx
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
    """The app on 127.0.0.1 at a free port, with base_url set to that real address."""

    def __init__(self, tmp: Path) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.settings = Settings(
            db_path=tmp / "homework.db",
            data_dir=tmp,
            secret_key="browser-test-secret-" + "x" * 32,
            base_url=self.url,
            scheduler=False,
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
