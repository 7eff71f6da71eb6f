"""Benchmark: the practitioner's patient list with insight, for 200 patients with 28 days of data.

    python -m bench.patient_list                     # --patients 200 --days 28 --iterations 300

The goal (issue 5) is under 50 ms of server time for the list page of 200 patients. The
script builds a fresh SQLite database in a temporary folder through the app's own
migrations (server.db.migrate) and writers (practitioners, patients, routines,
assignments); completions go in with one executemany, each filling a slot computed by
server.schedule.slot_times, as server/completions.py would. The practice it makes:

- one practitioner with 200 patients in eight time zones, all joined 40 days ago;
- one or two assignments each (every day or weekdays, one to three times a day), some
  started inside the window, a few ended early;
- completions over the last --days days (plus 12 older days, so long streaks are read
  back) at each patient's own adherence, 20-100%; a fifth of the patients stopped a few
  days ago, pain ratings on most completions, a few of them alarming;
- two clinic sessions for half of the patients, push subscriptions for a third.

Then, in one process and one event loop, it runs the real app (server.app.create_app,
scheduler off, lifespan started as uvicorn would) and times, interleaved round by round
after a warm-up:

  baseline  GET /patients as it was before insight, through the whole ASGI app: a route added
            for the benchmark runs the plain patients query (patients.list_for) and renders the
            same template with the insight columns empty;
  insight   insight.for_patients alone: the added queries and rules for all 200;
  api       GET /api/patients through the whole ASGI app (middleware, auth, JSON);
  page      GET /patients through the whole ASGI app (HTML of 200 rows);
  page cold the same with the small in-process caches the list touches emptied first (the
            local joining day, the early-end moment and local slot moments per patient and
            zone, the parsed lists of times), as on the first view after a restart; the list
            keeps no memory of past answers, so this is the whole cost.

"Server time" is from the ASGI call to the last body byte, in-process (no socket, no
client). It prints, per case, the median, p95 and best wall-clock time in ms, the median CPU
time the process spent (all threads: aiosqlite reads in its own), and the SQL reads per
request. On a shared machine the wall clock also counts time spent waiting for a core: the
CPU median is the work itself, and the machine-speed line tells a slow host from a slow
change. Compare cases within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server import (
    assignments,
    clinic_sessions,
    exercises,
    insight,
    patients,
    practitioners,
    routines,
    schedule,
)
from server.app import create_app
from server.clock import iso, local_date
from server.config import Settings
from server.db import Database, migrate
from server.routes import pages
from server.schedule import Plan, local_moment, slot_times
from server.web import SESSION_COOKIE, Context, ctx, current_practitioner

NOW = datetime(2026, 3, 18, 16, 30, tzinfo=UTC)
ZONES = ("Europe/London", "Europe/Berlin", "America/New_York", "America/Chicago", "America/Los_Angeles",
         "Australia/Sydney", "Asia/Kolkata", "Pacific/Auckland")
TIMES = (("08:00",), ("08:00", "19:30"), ("07:30", "13:00", "20:00"))


async def seed(db: Database, *, patients_count: int, days: int, rng: random.Random) -> tuple[int, str, str]:
    """Fill the database; return the practitioner id, a session token and an API token."""
    await migrate(db)
    await exercises.sync_builtins(db, now=NOW)
    doc = await practitioners.create(db, email="bench@clinic.example", name="Dr Bench", password="bench-password-1",
                                     now=NOW - timedelta(days=60))
    library = await exercises.list_visible(db, doc.id)
    routine_ids = []
    for n in range(4):
        picked = rng.sample(library, 3)
        items = [routines.Item(e.id, e.reps, e.sets, e.hold_seconds, e.sides, 30, "") for e in picked]
        routine_ids.append((await routines.create(db, doc.id, name=f"Routine {n}", notes="", items=items,
                                                  now=NOW - timedelta(days=60))).id)
    rows: list[tuple[Any, ...]] = []
    subscriptions: list[tuple[Any, ...]] = []
    for n in range(patients_count):
        tz = ZONES[n % len(ZONES)]
        p = await patients.create(db, doc.id, name=f"Patient {n:03d}", timezone=tz, now=NOW - timedelta(days=45))
        await db.execute("UPDATE patients SET joined_at = ? WHERE id = ?", (iso(NOW - timedelta(days=40)), p.id))
        today = local_date(NOW, tz)
        plans = []
        for k in range(1 if n % 3 else 2):
            start = today - timedelta(days=rng.choice((45, 45, 45, 20, 10)))
            mask = 127 if rng.random() < 0.7 else 0b0011111
            a = await assignments.create(
                db, doc.id, p.id, routine_id=rng.choice(routine_ids), start_date=start,
                end_date=today + timedelta(days=30), days_mask=mask, times=list(rng.choice(TIMES)),
                session_date=None, note="", now=NOW - timedelta(days=45),
            )
            if n % 17 == 0 and k == 0:
                a = await assignments.end(db, doc.id, a.id, now=NOW - timedelta(days=5))
            plans.append(Plan(a.id, a.start_date, a.end_date, a.days_mask, tuple(a.times), a.ended_at))
        rate = rng.uniform(0.2, 1.0)
        stopped = today - timedelta(days=rng.randint(3, 8)) if n % 5 == 0 else None
        pain = rng.uniform(3, 7)
        for back in range(days + 12, -1, -1):
            day = today - timedelta(days=back)
            if stopped and day > stopped:
                continue
            pain = min(10.0, max(0.0, pain + rng.uniform(-0.35, 0.3)))
            for plan in plans:
                for t in slot_times(plan, day, tz):
                    moment = local_moment(day, t, tz) + timedelta(minutes=rng.randint(0, 40))
                    if moment > NOW or rng.random() > rate:
                        continue
                    before = round(pain) if rng.random() < 0.8 else None
                    after = max(0, min(10, round(pain - 1 + (4 if rng.random() < 0.01 else 0)))) if before is not None else None
                    rows.append((p.id, plan.id, f"b{p.id}-{plan.id}-{day}-{t}", day.isoformat(), t, iso(moment),
                                 before, after, rng.choice(("easy", "ok", "hard", None)), "", iso(moment)))
        if n % 2 == 0:
            for back in (27, 13):
                await clinic_sessions.create(db, p.id, day=today - timedelta(days=back), note="", now=NOW)
        if n % 3 == 0:
            subscriptions.append((p.id, f"https://push.example/{p.id}", "k", "a", iso(NOW), iso(NOW)))
    async with db.transaction() as tx:
        await tx.executemany(
            "INSERT INTO completions (patient_id, assignment_id, client_id, local_date, slot_time, completed_at,"
            " pain_before, pain_after, difficulty, note, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        await tx.executemany(
            "INSERT INTO push_subscriptions (patient_id, endpoint, p256dh, auth, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?)", subscriptions)
    session = await practitioners.start_session(db, doc, now=NOW)
    _, api_token = await practitioners.create_api_token(db, doc, label="bench", now=NOW)
    await db.execute("ANALYZE")
    print(f"seeded {patients_count} patients, {len(rows)} completions over {days} (+12) days")
    return doc.id, session, api_token


class Client:
    """Call the ASGI app in-process with the lifespan's state, as a server would."""

    def __init__(self, app: Starlette, state: dict[str, Any]) -> None:
        self.app, self.state = app, state

    async def get(self, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
        path, _, query = path.partition("?")
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
            "path": path, "raw_path": path.encode(), "query_string": query.encode(), "root_path": "",
            "headers": [(b"host", b"127.0.0.1:8000")] + [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000), "state": dict(self.state),
        }
        status, chunks = 0, []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        return status, b"".join(chunks)


def calibrate() -> float:
    """Time a fixed pure-Python loop, to tell a slow or busy machine from a slow change."""
    best = float("inf")
    for _ in range(5):
        start, total = time.perf_counter(), 0
        for n in range(1_000_000):
            total += n
        best = min(best, time.perf_counter() - start)
    return best * 1000


def _summary(name: str, samples: list[float], cpu: list[float], reads: int) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return (f"{name:<10} median {statistics.median(ordered):7.2f} ms   p95 {p95:7.2f} ms   best {ordered[0]:7.2f} ms"
            f"   CPU median {statistics.median(cpu):7.2f} ms   {reads} SQL reads")


async def main(args: argparse.Namespace) -> None:
    rng = random.Random(5)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(db_path=Path(tmp) / "bench.db", data_dir=Path(tmp), secret_key="bench-" + "k" * 40,
                            base_url="http://127.0.0.1:8000", scheduler=False)
        async with Database(settings.db_path) as db:
            doc_id, session, api_token = await seed(db, patients_count=args.patients, days=args.days, rng=rng)
        app = create_app(settings, clock=lambda: NOW)
        app.router.routes.append(Route("/bench/plain-patients", plain_patients, methods=["GET"]))
        async with app.router.lifespan_context(app) as state:
            client = Client(app, dict(state or {}))
            context: Context = client.state["ctx"]
            cookie = {"cookie": f"{SESSION_COOKIE}={context.session_signer.sign(session)}"}
            bearer = {"authorization": f"Bearer {api_token}"}
            reads = 0
            original = context.db.fetchall

            async def counted(sql: str, params: Any = ()) -> Any:
                nonlocal reads
                reads += 1
                return await original(sql, params)

            context.db.fetchall = counted  # type: ignore[method-assign]

            async def baseline() -> None:
                status, body = await client.get("/bench/plain-patients", cookie)
                assert status == 200 and body.count(b'href="/patients/') >= args.patients, status

            async def insight_only() -> None:
                found = await patients.list_for(context.db, doc_id)
                result = await insight.for_patients(context.db, found, now=NOW)
                assert len(result) == args.patients

            async def api() -> None:
                status, body = await client.get("/api/patients", bearer)
                assert status == 200 and body.count(b'"adherence_7d"') == args.patients, status

            async def page() -> None:
                status, body = await client.get("/patients", cookie)
                assert status == 200 and body.count(b'href="/patients/') >= args.patients, status

            async def page_cold() -> None:
                insight._joined_day.cache_clear()  # as after a restart
                schedule._ended.cache_clear()
                schedule.local_moment.cache_clear()
                assignments.times_of.cache_clear()
                await page()

            cases: dict[str, Callable[[], Awaitable[None]]] = {
                "baseline": baseline, "insight": insight_only, "api": api, "page": page, "page cold": page_cold}
            samples: dict[str, list[float]] = {name: [] for name in cases}
            cpu: dict[str, list[float]] = {name: [] for name in cases}
            per_request: dict[str, int] = {}
            for round_ in range(args.warmup + args.iterations):
                for name, case in cases.items():
                    reads = 0
                    start, start_cpu = time.perf_counter(), time.process_time()
                    await case()
                    elapsed = (time.perf_counter() - start) * 1000
                    used = (time.process_time() - start_cpu) * 1000
                    per_request[name] = reads
                    if round_ >= args.warmup:
                        samples[name].append(elapsed)
                        cpu[name].append(used)
            context.db.fetchall = original  # type: ignore[method-assign]
            flagged = sum(1 for i in (await insight.for_patients(context.db, await patients.list_for(context.db, doc_id),
                                                                  now=NOW)).values() if i.flags)
            print(f"{args.iterations} rounds after {args.warmup} warm-up; {flagged} of {args.patients} patients flagged;"
                  f" machine speed: {calibrate():.0f} ms for a 1,000,000-step Python loop (about 30 on a quiet modern core)")
            for name in cases:
                print(_summary(name, samples[name], cpu[name], per_request[name]))
            print("(baseline reads go through patients.list_for; auth reads are fetchone calls and not counted)")


_NO_INSIGHT = insight.Insight(None, None, 0, None, None, (), False, 0, 0, None, None, None, None, None)


async def plain_patients(request: Request) -> Response:
    """GET /patients as it was before insight: the plain query, the same page without the insight."""
    me = await current_practitioner(request)
    found = await patients.list_for(ctx(request).db, me.id)
    rows = [{"patient": p, "insight": _NO_INSIGHT, "last": "never"} for p in found]
    return await pages.page(request, "patients.html",
                            {"rows": rows, "archived": False, "by_name": True, "errors": {}, "attention": 0})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--days", type=int, default=28)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    asyncio.run(main(parser.parse_args()))
