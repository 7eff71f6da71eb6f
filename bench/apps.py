"""The ASGI apps the load benchmarks serve, as uvicorn factories configured by environment.

    uvicorn bench.apps:real --factory         # BENCH_DB=... BENCH_DATA_DIR=... BENCH_BASE_URL=...

- ceiling: bare Starlette returning constant JSON (what uvicorn + Starlette can do at all), for
  GET today and for the completion POST (body read, not parsed);
- minimal: Starlette + one shared aiosqlite connection running today's read as ONE query
  (patients JOIN assignments LEFT JOIN completions) for the patient id in the URL, no auth,
  plus a bare completion insert (WAL, synchronous=NORMAL): the floor of our overhead;
- real: server.app.create_app, scheduler off: the product;
- real_conn_per_request: the same app, but each HTTP request reads through a connection of
  its own (opened before, closed after), to put a number on the shared-connection design.

Nothing here changes server/: the per-request variant swaps server.app.Database for a
subclass before create_app runs, in the benchmark's own process only.
"""

from __future__ import annotations

import contextvars
import json
import os
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from bench.seed import SECRET_KEY

CONSTANT = {"date": "2026-03-02", "slots": [], "streak_days": 0, "notes": []}

# Today's slots for one patient in a single round trip: about 10 rows.
MINIMAL_TODAY = (
    "SELECT a.id, a.routine_name, a.item_count, a.estimated_minutes, a.times, a.note, c.slot_time AS done"
    " FROM patients p JOIN assignments a ON a.patient_id = p.id"
    " LEFT JOIN completions c ON c.assignment_id = a.id AND c.local_date = ?1"
    " WHERE p.id = ?2 AND a.ended_at IS NULL AND a.start_date <= ?1 AND (a.end_date IS NULL OR a.end_date >= ?1)"
)


def _env_db() -> Path:
    return Path(os.environ["BENCH_DB"])


def ceiling() -> Starlette:
    async def today(request: Request) -> Response:
        return JSONResponse(CONSTANT)

    async def completion(request: Request) -> Response:
        await request.body()  # read, as every POST handler must, and not parsed
        return JSONResponse(CONSTANT, status_code=201)

    return Starlette(routes=[Route("/api/me/today", today), Route("/", today),
                             Route("/api/me/completions", completion, methods=["POST"])])


def minimal() -> Starlette:
    state: dict[str, aiosqlite.Connection] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        conn = await aiosqlite.connect(_env_db(), isolation_level=None)
        conn.row_factory = sqlite3.Row
        for pragma in ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", "PRAGMA foreign_keys=ON",
                       "PRAGMA busy_timeout=5000"):
            await conn.execute(pragma)
        state["db"] = conn
        yield
        await conn.close()

    async def today(request: Request) -> Response:
        day = datetime.now(UTC).date().isoformat()
        rows = await state["db"].execute_fetchall(MINIMAL_TODAY, (day, int(request.path_params["pid"])))
        return JSONResponse({"date": day, "slots": [dict(r) for r in rows]})

    async def insert(request: Request) -> Response:
        body = json.loads(await request.body())
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        await state["db"].execute(
            "INSERT INTO completions (patient_id, assignment_id, client_id, local_date, slot_time, completed_at,"
            " pain_before, pain_after, difficulty, note, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, '', ?)",
            (int(request.path_params["pid"]), body["assignment_id"], body["client_id"], body["date"], body.get("time"),
             now, body.get("pain_before"), body.get("pain_after"), body.get("difficulty"), now),
        )
        return JSONResponse({"client_id": body["client_id"]}, status_code=201)

    return Starlette(
        routes=[Route("/today/{pid:int}", today), Route("/completions/{pid:int}", insert, methods=["POST"])],
        lifespan=lifespan,
    )


def _settings() -> Any:
    from server.config import Settings

    return Settings(
        db_path=_env_db(),
        data_dir=Path(os.environ["BENCH_DATA_DIR"]),
        secret_key=os.environ.get("BENCH_SECRET", SECRET_KEY),
        base_url=os.environ.get("BENCH_BASE_URL", "http://127.0.0.1:8000"),
        scheduler=False,
    )


def real() -> Starlette:
    from server.app import create_app

    return create_app(_settings())


# --- a connection per request, for comparison only ----------------------------------------

_request_conn: contextvars.ContextVar[aiosqlite.Connection | None] = contextvars.ContextVar("bench_conn", default=None)


class _PerRequestConnection:
    """Open a reader connection before each HTTP request and close it after (as a naive app would)."""

    def __init__(self, app: ASGIApp, path: Path) -> None:
        self.app = app
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from server.db import _connect

        conn = await _connect(self.path)
        token = _request_conn.set(conn)
        try:
            await self.app(scope, receive, send)
        finally:
            _request_conn.reset(token)
            await conn.close()


def real_conn_per_request() -> ASGIApp:
    import server.app
    from server.db import Database

    class PerRequestDatabase(Database):
        @property
        def reader(self) -> aiosqlite.Connection:
            conn = _request_conn.get()
            return conn if conn is not None else super().reader

        def batched(self, sql: Any, split: Any) -> Any:
            # Each request reads alone, through its own connection: no batches across requests.
            db = self

            class Alone:
                async def fetch(self, params: tuple[tuple[str, Any], ...], key: Any) -> Any:
                    return split(await db.fetchall(sql(1), {**dict(params), "k0": key})).get(key)

            return Alone()

    server.app.Database = PerRequestDatabase  # type: ignore[misc]
    settings = _settings()
    return _PerRequestConnection(server.app.create_app(settings), settings.db_path)


def real_no_memo() -> Starlette:
    """The product with the streak memory switched off: every request walks the streak
    (what each patient's first open of the day, or the first after a write, costs)."""
    from server import completions
    from server.app import create_app

    completions.StreakMemo.get = lambda self, *key: None  # type: ignore[method-assign]
    return create_app(_settings())
