"""The practitioner list's fast path agrees with the adherence definition, day by day.

insight.for_patients counts slots with calendar arithmetic and set intersections in a few
queries; insight.assess walks each day through schedule.tally. Random practices (time
zones with DST changes and half hours, plans starting, ending and ended early around
them, completions doubled, early, extra or outside their plan) must get the same answer
from both, field by field.
"""

from __future__ import annotations

import asyncio
import json
import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from server import insight, patients
from server.clock import iso, local_date
from server.db import Database, migrate
from server.schedule import Plan, local_moment, slot_keys, slot_times, slots_on, span

ZONES = ("Europe/London", "Europe/Berlin", "America/New_York", "Australia/Adelaide",
         "Australia/Lord_Howe", "Asia/Kolkata", "Pacific/Auckland", "America/Sao_Paulo", "UTC")
# Moments around the 2026 DST changes of those zones, and a few quiet ones.
MOMENTS = ("2026-03-29T01:00:00Z", "2026-03-08T07:00:00Z", "2026-04-04T16:00:00Z", "2026-04-04T15:00:00Z",
           "2026-10-25T01:00:00Z", "2026-11-01T06:00:00Z", "2026-10-03T16:30:00Z", "2026-09-26T14:00:00Z",
           "2026-07-01T12:00:00Z", "2026-01-15T23:30:00Z")
TIMES = ("00:00", "00:30", "01:30", "02:00", "02:15", "02:30", "03:00", "08:00", "12:00", "19:30", "23:30", "23:59")


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _some_day(rng: random.Random, today: date, back: int, ahead: int) -> date:
    return today + timedelta(days=rng.randint(-back, ahead))


def _plan(rng: random.Random, plan_id: int, today: date, now: datetime) -> Plan:
    start = _some_day(rng, today, 100, 3)
    end = rng.choice([None, None, start + timedelta(days=rng.randint(0, 60))])
    ended = None
    if rng.random() < 0.3:  # ended early: near now, near a DST change, or well before
        ended = iso(rng.choice([now, _at(rng.choice(MOMENTS)), now - timedelta(days=rng.randint(0, 40))])
                    + timedelta(minutes=rng.randint(-300, 300)))
    times = tuple(sorted(rng.sample(TIMES, rng.randint(1, 4))))
    mask = rng.choice([127, 127, 0b0011111, rng.randint(1, 127)])
    return Plan(plan_id, start.isoformat(), end.isoformat() if end else None, mask, times, ended)


async def _practice(db: Database, rng: random.Random, now: datetime) -> list[patients.Patient]:
    doc = await db.write_fetchone(
        "INSERT INTO practitioners (email, name, password_hash, created_at) VALUES (?, 'Dr', 'x', ?) RETURNING id",
        (f"doc{rng.random()}@clinic.example", iso(now)))
    assert doc is not None
    found = []
    for n in range(rng.randint(1, 8)):
        tz = rng.choice(ZONES)
        p = await patients.create(db, doc[0], name=f"P{n}", timezone=tz, now=now - timedelta(days=120))
        today = local_date(now, tz)
        joined = rng.choice([None, now - timedelta(days=rng.randint(0, 120), minutes=rng.randint(0, 1440))])
        await db.execute("UPDATE patients SET joined_at = ? WHERE id = ?", (iso(joined) if joined else None, p.id))
        async with db.transaction() as tx:
            for _ in range(rng.choice([0, 1, 1, 2, 3])):
                plan = _plan(rng, 0, today, now)
                row = await tx.fetchone(
                    "INSERT INTO assignments (patient_id, practitioner_id, routine_name, items, item_count,"
                    " estimated_minutes, start_date, end_date, days, times, created_at, ended_at)"
                    " VALUES (?, ?, 'R', '[]', 0, 5, ?, ?, ?, ?, ?, ?) RETURNING id",
                    (p.id, doc[0], plan.start_date, plan.end_date, plan.days_mask, json.dumps(plan.times),
                     iso(now - timedelta(days=120)), plan.ended_at))
                assert row is not None
                aid = row[0]
                rate = rng.random()
                for back in range(-1, 96):
                    day = today - timedelta(days=back)
                    scheduled = slot_times(Plan(aid, plan.start_date, plan.end_date, plan.days_mask, plan.times,
                                                plan.ended_at), day, tz)
                    slots: list[str | None] = [t for t in scheduled if rng.random() < rate]
                    if rng.random() < 0.05:
                        slots.append(rng.choice(TIMES))  # a slot that is not scheduled (times or days changed)
                    if rng.random() < 0.05:
                        slots.append(None)  # an extra
                    if slots and rng.random() < 0.1:
                        slots.append(slots[0])  # the same slot again
                    for m, slot in enumerate(slots):
                        # Done around its local time, up to a day late or a few hours early.
                        moment = local_moment(day, slot or "12:00", tz) + timedelta(minutes=rng.randint(-240, 1440))
                        if moment > now:
                            moment = now - timedelta(seconds=rng.randint(1, 100_000))
                        after = rng.choice([None, rng.randint(0, 10)])
                        before = rng.choice([None, rng.randint(0, 10)])
                        await tx.execute(
                            "INSERT INTO completions (patient_id, assignment_id, client_id, local_date, slot_time,"
                            " completed_at, pain_before, pain_after, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            (p.id, aid, f"{aid}-{day}-{m}-{rng.random()}", day.isoformat(), slot, iso(moment),
                             before, after, iso(moment)))
        if rng.random() < 0.3:
            await db.execute(
                "INSERT INTO push_subscriptions (patient_id, endpoint, p256dh, auth, created_at, updated_at)"
                " VALUES (?, ?, 'k', 'a', ?, ?)", (p.id, f"https://push.example/{p.id}", iso(now), iso(now)))
        found.append(await patients.get(db, doc[0], p.id))
    return found


async def _definition(db: Database, p: patients.Patient, now: datetime) -> insight.Insight:
    """assess() over everything the definition looks at (90 days), loaded row by row."""
    since = local_date(now, p.timezone) - timedelta(days=90)
    record = (await insight._load(db, [p], since, since))[p.id]
    return insight.assess(record, now)


@pytest.mark.parametrize("seed", range(12))
def test_the_list_agrees_with_the_definition(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)

    async def check() -> None:
        async with Database(tmp_path / "list.db") as db:
            await migrate(db)
            for _ in range(6):
                now = _at(rng.choice(MOMENTS)) + timedelta(minutes=rng.choice([0, 1, 29, 30, 31, 59, 61, 120, -61]))
                # Half a second past a slot's minute: the definition counts by whole seconds (iso).
                now += timedelta(microseconds=rng.choice([0, 0, 500_000]))
                found = await _practice(db, rng, now)
                fast = await insight.for_patients(db, found, now=now)
                for p in found:
                    assert fast[p.id] == await _definition(db, p, now), (seed, p, now)

    asyncio.run(check())


def test_a_span_schedules_what_slot_times_does() -> None:
    rng = random.Random(5)
    for _ in range(2000):
        tz = rng.choice(ZONES)
        now = _at(rng.choice(MOMENTS))
        today = local_date(now, tz)
        plan = _plan(rng, 1, today, now)
        joined = rng.choice([None, _some_day(rng, today, 100, 2)])
        s = span(plan, tz, not_before=joined)
        first, last = sorted((_some_day(rng, today, 110, 40), _some_day(rng, today, 110, 40)))
        days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
        expected = {d: [] if joined and d < joined else slot_times(plan, d, tz) for d in days}
        assert slot_keys(s, first, last) == {d.isoformat() + t for d, ts in expected.items() for t in ts}
        day = rng.choice(days)
        assert slots_on(s, day) == len(expected[day])


@pytest.mark.parametrize("now", ["2026-07-01T12:00:00.500000+00:00", "2026-07-01T12:00:01+00:00",
                                 "2026-07-01T11:59:59.999999+00:00"])
def test_a_slot_falls_due_in_the_list_when_the_definition_says(tmp_path: Path, now: str) -> None:
    # The definition sees now in whole seconds (iso): at 12:00:00.5 the 12:00 slot is not due yet.
    moment = datetime.fromisoformat(now)

    async def check() -> None:
        async with Database(tmp_path / "due.db") as db:
            await migrate(db)
            doc = await db.write_fetchone(
                "INSERT INTO practitioners (email, name, password_hash, created_at)"
                " VALUES ('d@c.example', 'Dr', 'x', ?) RETURNING id", (iso(moment),))
            assert doc is not None
            p = await patients.create(db, doc[0], name="P", timezone="UTC", now=moment - timedelta(days=20))
            joined = iso(moment - timedelta(days=20))
            await db.execute("UPDATE patients SET joined_at = ? WHERE id = ?", (joined, p.id))
            await db.execute(
                "INSERT INTO assignments (patient_id, practitioner_id, routine_name, items, item_count,"
                " estimated_minutes, start_date, end_date, days, times, created_at) VALUES (?, ?, 'R', '[]', 0, 5,"
                " '2026-06-28', NULL, 127, '[\"08:00\", \"12:00\"]', ?)", (p.id, doc[0], iso(moment)))
            found = await patients.get(db, doc[0], p.id)
            fast = (await insight.for_patients(db, [found], now=moment))[p.id]
            assert fast == await _definition(db, found, moment)

    asyncio.run(check())
