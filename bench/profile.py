"""Where one GET /api/me/today spends its CPU time, measured in-process (no HTTP, no concurrency).

    python -m bench.profile /tmp/bench.db        # a database made by bench.seed

Each step runs alone, one call at a time, over the same sample of patients the load uses,
and reports the median CPU microseconds per call (process time: the event loop's thread and
aiosqlite's together, so other work on a shared machine barely moves it). The whole handler is driven through the
ASGI app (middleware, routing, handler, JSON) with the app's own lifespan, so the sum of
the parts can be checked against it. An "aiosqlite hop" is one `execute_fetchall` of
`SELECT 1`: the fixed price of each query sent to the connection's thread.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

from bench.seed import SECRET_KEY, Seeded, device_cookie, device_token, load
from server import completions, devices
from server.app import create_app
from server.clock import local_date, utcnow
from server.config import Settings
from server.devices import COOKIE
from server.security import CookieSigner

ROUNDS = 3


async def _time(fn: Callable[[int], Awaitable[Any]], ids: list[int]) -> float:
    """Median over ROUNDS of the mean CPU microseconds (all threads of this process) per call over ids."""
    means = []
    for _ in range(ROUNDS):
        started = time.process_time()
        for pid in ids:
            await fn(pid)
        means.append((time.process_time() - started) / len(ids) * 1e6)
    return statistics.median(means)


async def measure(db_path: Path, seeded: Seeded, sample: int = 400) -> list[tuple[str, float, str]]:
    patients = [pid for pid, _, _ in seeded.sample(sample)]
    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings(db_path=db_path, data_dir=Path(data_dir), secret_key=SECRET_KEY, scheduler=False)
        app = create_app(settings)
        async with app.router.lifespan_context(app) as state:
            c = state["ctx"]
            db = c.db
            signer = CookieSigner(SECRET_KEY, "patient-device")
            signed = {pid: device_cookie(pid).split("=", 1)[1] for pid in patients}
            me = {pid: await devices.authenticate(db, device_token(pid), now=utcnow()) for pid in patients}
            results: list[tuple[str, float, str]] = []

            async def unsign(pid: int) -> None:
                signer.unsign(signed[pid])

            async def hop(pid: int) -> None:
                await db.fetchall("SELECT 1")

            async def authenticate(pid: int) -> None:
                await devices.authenticate(db, device_token(pid), now=utcnow())

            async def today(pid: int) -> Any:
                m = me[pid]
                assert m is not None
                return await completions.today(db, patient_id=m.patient_id, timezone=m.timezone,
                                               joined_at=m.joined_at, now=utcnow())

            warm = completions.StreakMemo()

            async def one_query(pid: int) -> Any:
                found = await completions.today_for_device(db, warm, device_token(pid), now=utcnow())
                assert found is not None
                return found[1]

            async def one_query_cold(pid: int) -> Any:
                await completions.today_for_device(db, completions.StreakMemo(), device_token(pid), now=utcnow())

            async def streak_walk(pid: int) -> None:
                m = me[pid]
                assert m is not None
                day = local_date(utcnow(), m.timezone)
                await completions._streak(db, m.patient_id, m.timezone, m.joined_at, day)

            outputs = {pid: await one_query(pid) for pid in patients}

            async def encode(pid: int) -> None:
                orjson.dumps(outputs[pid])

            async def encode_stdlib(pid: int) -> None:
                # What Starlette's JSONResponse does.
                json.dumps(outputs[pid], ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode()

            def rows_of(pid: int) -> int:
                return len(outputs[pid]["slots"])

            from bench.apps import MINIMAL_TODAY

            async def minimal(pid: int) -> None:
                await db.reader.execute_fetchall(MINIMAL_TODAY, (utcnow().date().isoformat(), pid))

            async def handler(pid: int) -> None:
                sent: list[dict[str, Any]] = []

                async def receive() -> dict[str, Any]:
                    return {"type": "http.request", "body": b"", "more_body": False}

                async def send(message: dict[str, Any]) -> None:
                    sent.append(message)

                scope = {
                    "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
                    "scheme": "http", "path": "/api/me/today", "raw_path": b"/api/me/today", "query_string": b"",
                    "root_path": "", "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000),
                    "headers": [(b"host", b"127.0.0.1:8000"), (b"cookie", f"{COOKIE}={signed[pid]}".encode())],
                    "state": dict(state),
                }
                await app(scope, receive, send)
                assert sent[0]["status"] == 200, sent

            steps: list[tuple[str, Callable[[int], Awaitable[Any]], str]] = [
                ("whole request through the ASGI app (no HTTP)", handler, "streak remembered (each patient's second open)"),
                ("CookieSigner.unsign (itsdangerous)", unsign, ""),
                ("completions.today_for_device, streak remembered", one_query, "auth + today: one query + Python"),
                ("completions.today_for_device, nothing remembered", one_query_cold, "+ the streak walk"),
                ("  the streak walk alone (_streak)", streak_walk, "14 days of history, 90 when the streak is longer"),
                ("devices.authenticate: 1 query", authenticate, "what other patient routes pay for auth"),
                ("completions.today (auth apart, no memory)", today, "the plain reading the tests compare with"),
                ("JSON encoding of the answer (orjson, as served)", encode,
                 f"~{statistics.mean(map(rows_of, patients)):.0f} slots"),
                ("  the same with json.dumps (Starlette's JSONResponse)", encode_stdlib, ""),
                ("one aiosqlite hop (SELECT 1)", hop, "the fixed price of each query"),
                ("minimal handler's single query", minimal, "patients JOIN assignments LEFT JOIN completions"),
            ]
            for name, fn, note in steps:
                results.append((name, await _time(fn, patients), note))
            return results


def markdown(db_path: Path, seeded: Seeded) -> str:
    """Run the measurements and format them as a markdown section."""
    import uvloop

    rows = uvloop.run(measure(db_path, seeded))
    lines = [
        "## Where one today request goes (in-process, one call at a time, median CPU µs per call)",
        "",
        "| step | µs | note |",
        "|---|---:|---|",
    ]
    lines += [f"| {name} | {us:,.0f} | {note} |" for name, us, note in rows]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    path = Path(sys.argv[1])
    print(markdown(path, load(path)))
