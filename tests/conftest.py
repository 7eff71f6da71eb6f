"""Shared fixtures: a fresh database per test, a clock the test controls, and data factories."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from server import devices, practitioners
from server.app import create_app
from server.config import Settings
from server.db import Database
from server.web import SESSION_COOKIE, Context

PASSWORD = "correct horse battery"


class Clock:
    """A settable clock: tests move time instead of sleeping."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@contextmanager
def counted_transactions(db: Database) -> Iterator[list[int]]:
    """Within the block, each write transaction db begins adds one item to the list yielded."""
    begun = db.transaction
    count: list[int] = []
    db.transaction = lambda: count.append(1) or begun()  # type: ignore[method-assign]
    try:
        yield count
    finally:
        del db.transaction


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))  # a Monday


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        db_path=tmp_path / "homework.db",
        data_dir=tmp_path,
        secret_key="test-secret-key-" + "x" * 32,
        base_url="http://testserver",
        scheduler=False,
    )


class Harness:
    """A running app plus helpers to make data and act as someone."""

    def __init__(self, client: TestClient) -> None:
        self.client = client

    @property
    def ctx(self) -> Context:
        return self.client.app_state["ctx"]  # type: ignore[no-any-return]

    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run an async domain function on the app's own event loop."""
        assert self.client.portal is not None
        return self.client.portal.call(functools.partial(fn, *args, **kwargs))

    def practitioner(self, email: str, name: str = "Dr Test") -> dict[str, Any]:
        """Create an account and return headers for a Bearer token and for a session cookie."""
        me = self.run(practitioners.create, self.ctx.db, email=email, name=name, password=PASSWORD, now=self.ctx.now())
        _, token = self.run(practitioners.create_api_token, self.ctx.db, me, label="test", now=self.ctx.now())
        session = self.run(practitioners.start_session, self.ctx.db, me, now=self.ctx.now())
        cookie = f"{SESSION_COOKIE}={self.ctx.session_signer.sign(session)}"
        return {"id": me.id, "email": email, "bearer": {"Authorization": f"Bearer {token}"}, "cookie": {"Cookie": cookie}}

    def post(self, who: dict[str, Any], path: str, body: Any) -> Any:
        response = self.client.post(path, json=body, headers=who["bearer"])
        assert response.status_code == 201, response.text
        return response.json()

    def patient(self, who: dict[str, Any], name: str = "Pat", timezone: str = "Europe/London") -> dict[str, Any]:
        return self.post(who, "/api/patients", {"name": name, "timezone": timezone})  # type: ignore[no-any-return]

    def routine(self, who: dict[str, Any], name: str = "Back basics", count: int = 2) -> dict[str, Any]:
        library = self.client.get("/api/exercises", headers=who["bearer"]).json()["exercises"]
        items = [{"exercise_id": e["id"]} for e in library[:count]]
        return self.post(who, "/api/routines", {"name": name, "items": items})  # type: ignore[no-any-return]

    def assignment(self, who: dict[str, Any], patient_id: int, routine_id: int, **overrides: Any) -> dict[str, Any]:
        body = {
            "routine_id": routine_id,
            "start_date": "2026-03-02",
            "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
            "times": ["08:00", "19:30"],
            **overrides,
        }
        return self.post(who, f"/api/patients/{patient_id}/assignments", body)  # type: ignore[no-any-return]


    def join(self, who: dict[str, Any], patient_id: int) -> str:
        """Join as the patient's phone; return the device cookie header value."""
        invite = self.post(who, f"/api/patients/{patient_id}/invites", {})
        token = invite["url"].rsplit("/", 1)[1]
        joined = self.run(devices.join, self.ctx.db, token=token, label="test phone",
                          secret_key=self.ctx.settings.secret_key, now=self.ctx.now())
        assert joined is not None
        return f"{devices.COOKIE}={self.ctx.device_signer.sign(joined[1])}"

    def device(self, who: dict[str, Any], patient_id: int) -> int:
        self.join(who, patient_id)
        return int(self.run(self.ctx.db.fetchval, "SELECT max(id) FROM devices WHERE patient_id = ?", (patient_id,)))


@pytest.fixture
def harness(settings: Settings, clock: Clock) -> Iterator[Harness]:
    app = create_app(settings, clock=clock)
    with TestClient(app, base_url="http://testserver") as client:
        yield Harness(client)


@pytest.fixture
def client(harness: Harness) -> TestClient:
    return harness.client
