"""Benchmark: reminders end to end, from the outbox in SQLite to a push service on loopback.

Run from the repository root (pywebpush is for benchmarks only: pip install -e '.[bench]'):

    python -m bench.reminders        # --patients 10000 --sync-messages 500 --runs 3 --ticks 200

What it does, in one run of about two to three minutes on a 2-core machine:

  Set-up. Starts `python -m tests.pushservice --no-decrypt` in a separate process (every
  request's VAPID header is verified, ES256 signature, aud, exp, sub and k included;
  decryption is skipped so the service does not dominate the shared cores) and creates
  --patients subscribers there through its admin route (each a fresh P-256 key pair and
  16 random auth bytes, as a browser makes them). Seeds a fresh SQLite file through the
  app's migrations (server.db.migrate) with one practitioner and, per patient, one
  assignment (daily at 08:00 and 19:30, Europe/London, which is UTC in early March) and
  one push subscription to the service. A first `Scheduler.tick` at 19:20 plans every
  assignment (cursor: 19:30 today); that file is the template each run starts from.

  (a) End to end: `Scheduler(db, PushSender(...)).tick(19:30)` on a fresh copy of the
      template, with the app's own sender settings (make_client_session(), PushSender
      defaults: 64 requests at once, at most 32 per push origin). The tick plans the
      10,000 due slots into the outbox and claims them in batches (500 first, then 2,500;
      the next ones planned and claimed while earlier ones send), sends, and records every outcome
      (statuses, push_attempts, subscriptions, nudges). Reported: reminders/s
      over the whole tick, the time from the tick's start to the last delivery the
      service accepted, how much of the tick had a send_many running, the longest
      event-loop stall. The same 10,000 messages the tick sent are captured and reused:
  (s) the sender alone: PushSender.send_many on those messages, no database;
  (b) `pywebpush.webpush()` in a loop, as most projects do, on the first
      --sync-messages of them only, the rate extrapolated to all (marked *);
  (c) `pywebpush.webpush_async` with one shared aiohttp session, gathered under a
      semaphore of 64.
  pywebpush sends the same payload, TTL, Topic and Urgency and gets a VAPID key loaded
  once (its best case). (a), (s) and (c) run on the event loop the product uses
  (server.cli.run_loop: uvloop when installed, as under uvicorn); (b) is synchronous.
  Runs are interleaved (a, s, b, c, a, s, ...) so machine noise hits them alike; the
  table shows medians over --runs and the ratios of the medians.

  (d) The cost of one tick when nothing is due: 100,000 and 10,000 patients, each with a
      planned assignment whose next slot is 3 hours away and three rows of outbox history;
      the median (and p95) of --ticks consecutive ticks. A tick is two indexed reads and
      one empty claim transaction, so it should not grow with the patient count.

Every run checks that the service accepted exactly the messages sent (all 201) and that
the tick recorded each reminder as sent. Client and service share the cores: absolute
rates move with whatever else runs; compare within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any


from bench.push_fanout import (
    SUBJECT, Measurement, admin, check_accepted, push_service, run_pywebpush_async, run_pywebpush_loop, send_with_ours,
    timed,
)
from server.cli import run_loop
from server.clock import iso
from server.db import Database, migrate
from server.push import (
    PushMessage,
    PushResult,
    PushSender,
    Subscription,
    VapidKeys,
    load_or_create_vapid_keys,
    make_client_session,
)
from server.scheduler import Scheduler, TickReport

DUE = datetime(2026, 3, 2, 19, 30, tzinfo=UTC)  # a Monday; London is on UTC until 29 March
TZ = "Europe/London"
ITEMS = json.dumps(
    [
        {"name": "Knee to chest", "reps": 10, "sets": 2, "hold_seconds": 5, "sides": "both"},
        {"name": "Figure 4 stretch", "reps": 5, "sets": 2, "hold_seconds": 20, "sides": "both"},
        {"name": "Cat-cow", "reps": 10, "sets": 1, "hold_seconds": 0, "sides": "none"},
    ]
)
PYWEBPUSH_CONCURRENCY = 64


# ------------------------------------------------------------------ seeding


async def seed(
    path: Path,
    patients: int,
    subscriptions: Sequence[Subscription] = (),
    *,
    cursor: datetime | None = None,
    history: bool = False,
) -> None:
    """Create a database through the app's migrations with one assignment per patient.

    cursor None leaves the assignments for the scheduler to plan (needs_plan = 1); a
    datetime sets each one's next slot to it, as a planning tick would have.
    """
    created = iso(DUE - timedelta(days=7))
    async with Database(path) as db:
        await migrate(db)
        async with db.transaction() as tx:
            await tx.execute(
                "INSERT INTO practitioners (id, email, name, password_hash, created_at)"
                " VALUES (1, 'bench@clinic.example', 'Bench', 'x', ?)",
                (created,),
            )
            await tx.executemany(
                "INSERT INTO patients (id, practitioner_id, name, timezone, created_at, joined_at)"
                " VALUES (?, 1, ?, ?, ?, ?)",
                ((i, f"Patient {i}", TZ, created, created) for i in range(1, patients + 1)),
            )
            slot = (
                (None, None, None, 1)
                if cursor is None
                else (cursor.date().isoformat(), cursor.strftime("%H:%M"), iso(cursor), 0)
            )
            await tx.executemany(
                "INSERT INTO assignments (id, patient_id, practitioner_id, routine_name, items,"
                " item_count, estimated_minutes, start_date, days, times, created_at,"
                " next_slot_date, next_slot_time, next_due_at, needs_plan)"
                " VALUES (?, ?, 1, 'Lower back', ?, 3, 12, '2026-02-23', 127, '[\"08:00\",\"19:30\"]',"
                " ?, ?, ?, ?, ?)",
                ((i, i, ITEMS, created, *slot) for i in range(1, patients + 1)),
            )
            await tx.executemany(
                "INSERT INTO push_subscriptions (patient_id, endpoint, p256dh, auth, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    (i, s.endpoint, s.p256dh, s.auth, created, created)
                    for i, s in enumerate(subscriptions, start=1)
                ),
            )
            if history:
                await tx.executemany(
                    "INSERT INTO reminders (assignment_id, patient_id, local_date, slot_time, kind,"
                    " due_at, status, sent_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (row for i in range(1, patients + 1) for row in _history(i)),
                )
        await db.fetchall("PRAGMA optimize")


# Each patient's outbox history: yesterday's reminder and nudge, this morning's reminder.
# (local date, slot, kind, due_at = created_at, status, sent_at or -)
_HISTORY = [
    line.split()
    for line in (
        "2026-03-01 19:30 reminder 2026-03-01T19:30:00Z sent 2026-03-01T19:30:01Z",
        "2026-03-01 19:30 nudge 2026-03-01T21:29:00Z skipped -",
        "2026-03-02 08:00 reminder 2026-03-02T08:00:00Z sent 2026-03-02T08:00:01Z",
    )
]


def _history(i: int) -> list[tuple[Any, ...]]:
    return [
        (i, i, day, slot, kind, due, status, None if sent == "-" else sent, due)
        for day, slot, kind, due, status, sent in _HISTORY
    ]


# ------------------------------------------------------------- measuring


class CapturingSender(PushSender):
    """PushSender that keeps what send_many was given and how long any send_many ran.

    The tick overlaps batches (one sending while the next is claimed), so `sending` is the
    time during which at least one send_many was running, not the sum of their durations.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.messages: list[PushMessage] = []
        self.sending = 0.0
        self._running = 0
        self._since = 0.0

    async def send_many(self, messages: Iterable[PushMessage]) -> list[PushResult]:
        batch = list(messages)
        self.messages.extend(batch)
        if self._running == 0:
            self._since = time.perf_counter()
        self._running += 1
        try:
            return await super().send_many(batch)
        finally:
            self._running -= 1
            if self._running == 0:
                self.sending += time.perf_counter() - self._since


@dataclass
class EndToEnd:
    m: Measurement
    sending: float  # seconds during which at least one send_many was running
    report: TickReport


async def run_tick(
    keys: VapidKeys, origin: str, template: Path, work: Path, expected: int
) -> tuple[EndToEnd, list[PushMessage]]:
    """(a): copy the planned template, then time one tick at the due minute."""
    admin(origin, "/_admin/reset", {})
    path = work / "run.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    shutil.copy(template, path)
    async with Database(path) as db, make_client_session() as session:
        sender = CapturingSender(keys, SUBJECT, session, extra_origins=[origin])
        scheduler = Scheduler(db, sender, clock=lambda: DUE, worker="bench")
        reports: list[TickReport] = []

        async def tick() -> None:
            reports.append(await scheduler.tick(DUE))

        wall, seconds, stall, cpu = await timed(tick)
        [report] = reports
        sent = await db.fetchval(
            "SELECT count(*) FROM reminders WHERE status = 'sent' AND kind = 'reminder'"
        )
    if (report.sent, report.pushes, sent) != (expected, expected, expected):
        raise RuntimeError(f"(a): expected {expected} sent, tick says {report.line()}, db {sent}")
    stats = check_accepted(origin, expected, "(a)")
    m = Measurement(expected, seconds, stats["last_accept"] - wall, stall, cpu)
    return EndToEnd(m, sender.sending, report), sender.messages


async def run_sender(keys: VapidKeys, origin: str, messages: list[PushMessage]) -> Measurement:
    """(s): the same messages through PushSender.send_many alone."""
    return await send_with_ours(keys, origin, messages, label="(s)")




async def idle_ticks(keys: VapidKeys, path: Path, ticks: int) -> list[float]:
    """(d): time consecutive ticks over a database where nothing is due."""
    async with Database(path) as db, make_client_session() as session:
        scheduler = Scheduler(db, PushSender(keys, SUBJECT, session), clock=lambda: DUE)
        now = DUE - timedelta(hours=3)
        report = await scheduler.tick(now)  # warm the caches once, untimed
        if report.planned.assignments or report.pushes:
            raise RuntimeError(f"(d): something was due: {report.line()}")
        times = []
        for _ in range(ticks):
            started = time.perf_counter()
            report = await scheduler.tick(now)
            times.append(time.perf_counter() - started)
            if report.planned.assignments or report.pushes:
                raise RuntimeError(f"(d): something was due: {report.line()}")
    return times


# ------------------------------------------------------------------ report


async def _loop_name() -> str:
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


def _median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--sync-messages", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ticks", type=int, default=200)
    parser.add_argument("--idle-patients", type=int, nargs="+", default=[100_000, 10_000])
    args = parser.parse_args()

    from py_vapid import Vapid  # type: ignore[import-untyped]  # pywebpush's VAPID class

    repo = Path(__file__).resolve().parent.parent
    begun = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        keys = load_or_create_vapid_keys(work / "vapid")
        vapid = Vapid.from_pem(keys.private_pem)

        idle: dict[int, list[float]] = {}
        for count in args.idle_patients:
            path = work / f"idle-{count}.db"
            asyncio.run(seed(path, count, cursor=DUE, history=True))
            idle[count] = run_loop(idle_ticks(keys, path, args.ticks))
            print(f"(d) {count} patients: median tick {_median(idle[count]) * 1000:.2f} ms")

        with push_service(repo, keys.application_server_key) as origin:
            subs = [
                Subscription(**s)
                for s in admin(origin, "/_admin/subscribers", {"count": args.patients})
            ]
            template = work / "template.db"
            asyncio.run(seed(template, args.patients, subs))
            planning = asyncio.run(plan_template(keys, template))
            print(
                f"{args.patients} patients and subscribers at {origin}; planning tick at 19:20 "
                f"took {planning:.2f} s; (b) on {args.sync_messages} messages, extrapolated; "
                f"(a), (s), (c) on the {run_loop(_loop_name())} event loop"
            )
            runs: dict[str, list[Measurement]] = {"a": [], "s": [], "b": [], "c": []}
            sending: list[float] = []
            for run in range(1, args.runs + 1):
                e2e, messages = run_loop(run_tick(keys, origin, template, work, args.patients))
                s = run_loop(run_sender(keys, origin, messages))
                b = run_pywebpush_loop(vapid, origin, messages[: args.sync_messages])
                c = run_loop(run_pywebpush_async(vapid, origin, messages, PYWEBPUSH_CONCURRENCY))
                for key, m in zip("asbc", (e2e.m, s, b, c), strict=True):
                    runs[key].append(m)
                sending.append(e2e.sending)
                print(
                    f"run {run}: (a) tick {e2e.m.seconds:.2f} s = {e2e.m.rate:.0f}/s, last delivery "
                    f"{e2e.m.to_last_delivery:.2f} s, sending {e2e.sending:.2f} s | (s) "
                    f"{s.rate:.0f}/s | (b) {b.rate:.0f}/s | (c) {c.rate:.0f}/s | this run: (a) = "
                    f"{e2e.m.rate / b.rate:.1f}x (b), {e2e.m.rate / c.rate:.2f}x (c)",
                    flush=True,
                )

    n = args.patients
    rate = {k: _median(m.rate for m in v) for k, v in runs.items()}
    print(f"\n## Reminders end to end: {n} due in one minute, medians of {args.runs} runs\n")
    print(
        "| path | reminders/s | time for all | to last delivery | max loop stall "
        "| client CPU/msg | vs (b) | vs (c) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    labels = {
        "a": "(a) Scheduler.tick end to end (SQLite + PushSender)",
        "s": "(s) PushSender.send_many alone, same messages",
        "b": f"(b) pywebpush.webpush() loop* ({args.sync_messages} sent)",
        "c": f"(c) pywebpush.webpush_async, shared session, {PYWEBPUSH_CONCURRENCY} at once",
    }
    for key, label in labels.items():
        ms = runs[key]
        total = f"{n / rate[key]:.1f} s" + ("*" if key == "b" else "")
        last = "n/a" if key == "b" else f"{_median(m.to_last_delivery or 0 for m in ms):.2f} s"
        stalls = [m.max_stall for m in ms if m.max_stall is not None]
        stall = f"{_median(stalls) * 1000:.0f} ms" if stalls else "n/a"
        cpu = _median(m.cpu / m.sent for m in ms) * 1e6
        print(
            f"| {label} | {rate[key]:.0f} | {total} | {last} | {stall} | {cpu:.0f} us "
            f"| {rate[key] / rate['b']:.1f}x | {rate[key] / rate['c']:.2f}x |"
        )
    share = _median(sending) / _median(m.seconds for m in runs["a"])
    per_run = sorted(a.rate / b.rate for a, b in zip(runs["a"], runs["b"], strict=True))
    print(
        f"\n(a) had a send_many running for {share:.0%} of the tick; the rest is work with nothing "
        "being sent (planning before the first batch, the first claim, the last record). "
        f"(a) / (b) per run: {', '.join(f'{r:.1f}x' for r in per_run)}."
    )
    print(f"\n## One scheduler tick with nothing due ({args.ticks} ticks)\n")
    print("| patients | median | p95 | max |")
    print("|---|---|---|---|")
    for count, times in idle.items():
        times.sort()
        print(
            f"| {count:,} | {_median(times) * 1000:.2f} ms "
            f"| {times[int(len(times) * 0.95) - 1] * 1000:.2f} ms | {times[-1] * 1000:.2f} ms |"
        )
    print(
        f"\n(total benchmark time {time.perf_counter() - begun:.0f} s; * = extrapolated from "
        f"{args.sync_messages}; the push service verifies VAPID but does not decrypt)"
    )


async def plan_template(keys: VapidKeys, template: Path) -> float:
    """Run the planning tick (10 minutes before the slot) on the template; return its time."""
    async with Database(template) as db, make_client_session() as session:
        scheduler = Scheduler(db, PushSender(keys, SUBJECT, session), clock=lambda: DUE)
        started = time.perf_counter()
        report = await scheduler.tick(DUE - timedelta(minutes=10))
        seconds = time.perf_counter() - started
        due = await db.fetchval(
            "SELECT count(*) FROM assignments WHERE next_due_at = ?", (iso(DUE),)
        )
    if report.pushes or due != report.planned.assignments:
        raise RuntimeError(f"planning tick: {report.line()}, {due} cursors at the due minute")
    return seconds


if __name__ == "__main__":
    main()
