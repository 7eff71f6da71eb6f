"""What the patient sees and records: today's slots, an assignment in full, completions, history."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson

from . import assignments, devices
from .clock import iso, local_date, parse_iso, zone
from .db import Database, Row
from .errors import BadRequest, NotFound
from .security import token_hash
from .schedule import DayTally, nearest_open_slot, slot_times, streak, tally, walk_streak

STREAK_LOOKBACK_DAYS = 90
STREAK_FIRST_READ_DAYS = 14
# A phone's clock may run a little ahead; a completion further in the future is a mistake.
FUTURE_SLACK = timedelta(minutes=10)
_ONE_DAY = timedelta(days=1)


@dataclass(frozen=True)
class Completion:
    id: int
    client_id: str
    assignment_id: int
    date: str
    time: str | None
    completed_at: str
    pain_before: int | None
    pain_after: int | None
    difficulty: str | None
    note: str

    def public(self) -> dict[str, object]:
        return asdict(self)


_COLUMNS = (
    "id, client_id, assignment_id, local_date AS date, slot_time AS time, completed_at, pain_before, pain_after,"
    " difficulty, note"
)


def _completion(row: Row) -> Completion:
    return Completion(**dict(row))


async def _plans_and_done(db: Database, patient_id: int, since: date) -> tuple[list[Row], dict[tuple[int, str], set[str]]]:
    """The patient's assignments still running on or after since, and the slots done since then.

    One query (each aiosqlite call is a thread hop): every assignment row carries its done
    slots as a JSON list of "date time", read through the (assignment_id, local_date) index.
    """
    rows = await db.fetchall(
        "SELECT id, routine_name, item_count, estimated_minutes, start_date, end_date, days, times, note, ended_at,"
        " (SELECT json_group_array(c.local_date || ' ' || c.slot_time) FROM completions c"
        "  WHERE c.assignment_id = a.id AND c.local_date >= ?2 AND c.slot_time IS NOT NULL) AS done"
        " FROM assignments a WHERE patient_id = ?1 AND (end_date IS NULL OR end_date >= ?2)",
        (patient_id, since.isoformat()),
    )
    done: dict[tuple[int, str], set[str]] = defaultdict(set)
    for r in rows:
        for entry in json.loads(r["done"]):
            day, _, hhmm = entry.partition(" ")
            done[(r["id"], day)].add(hhmm)
    return rows, done


def _joined(joined_at: str | None, tz: str) -> date | None:
    return local_date(parse_iso(joined_at), tz) if joined_at else None


async def _streak(
    db: Database, patient_id: int, tz: str, joined_at: str | None, day: date
) -> tuple[int, list[Row], dict[tuple[int, str], set[str]]]:
    """The streak up to day, with the plans and done slots it read (day's included)."""
    # Most streaks are short: read two weeks, and the full look-back only when the streak reaches past them.
    first = day - timedelta(days=STREAK_FIRST_READ_DAYS)
    rows, done = await _plans_and_done(db, patient_id, first)
    joined = _joined(joined_at, tz)
    streak_days, unbroken = walk_streak(map(assignments.plan_of, rows), done, first, day, tz, not_before=joined)
    if unbroken:
        first = day - timedelta(days=STREAK_LOOKBACK_DAYS)
        rows, done = await _plans_and_done(db, patient_id, first)
        streak_days = walk_streak(map(assignments.plan_of, rows), done, first, day, tz, not_before=joined)[0]
    return streak_days, rows, done


def _day_view(rows: Iterable[Row], done: Mapping[tuple[int, str], set[str]], day: date, tz: str) -> dict[str, Any]:
    """Day's slots (done or not) and the practitioner's notes, from assignment rows and done slots."""
    text = day.isoformat()
    slots = []
    notes = []
    for row in rows:
        plan = assignments.plan_of(row)
        times = slot_times(plan, day, tz)
        if not times:
            continue
        filled = done.get((plan.id, text), ())
        routine = {"name": row["routine_name"], "items": row["item_count"], "estimated_minutes": row["estimated_minutes"]}
        for t in times:
            slots.append({"assignment_id": plan.id, "time": t, "routine": routine, "done": t in filled})
        if row["note"] and row["ended_at"] is None:
            notes.append({"assignment_id": plan.id, "routine": row["routine_name"], "note": row["note"]})
    slots.sort(key=lambda s: (s["time"], s["assignment_id"]))
    return {"date": text, "slots": slots, "notes": notes}


async def today(db: Database, *, patient_id: int, timezone: str, joined_at: str | None, now: datetime) -> dict[str, Any]:
    """Today's slots in the patient's zone, done or not, with the streak and the practitioner's notes.

    The plain reading, with nothing remembered: the app is served by today_for_device, and
    the tests hold the two equal.
    """
    day = local_date(now, timezone)
    streak_days, rows, done = await _streak(db, patient_id, timezone, joined_at, day)
    return {**_day_view(rows, done, day, timezone), "streak_days": streak_days}


class StreakMemo:
    """Each patient's streak, kept while their revision and local day stay the same.

    Triggers bump patients.revision on every write that can move a streak (migration 0005),
    so a streak computed at one revision holds until the revision or the day changes: a
    patient opening the app again pays one query instead of re-walking weeks of history.
    Each process keeps its own; the revision is read from the database, so several web
    processes never disagree. Bounded: past `size` patients the oldest entry goes.
    """

    def __init__(self, size: int = 50_000) -> None:
        self.size = size
        self._entries: dict[int, tuple[int, str, str, int]] = {}

    def get(self, patient_id: int, revision: int, day: str, tz: str) -> int | None:
        entry = self._entries.get(patient_id)
        return entry[3] if entry is not None and entry[:3] == (revision, day, tz) else None

    def put(self, patient_id: int, revision: int, day: str, tz: str, streak_days: int) -> None:
        self._entries.pop(patient_id, None)
        if len(self._entries) >= self.size:
            del self._entries[next(iter(self._entries))]
        self._entries[patient_id] = (revision, day, tz, streak_days)


# The devices' patients and the assignments that may run on their local today, for n device
# tokens in one round trip (db.Batched gathers concurrent app opens) and as one JSON value, so
# the reader's thread hands back one row, not one per assignment. Local today is within a
# day of UTC's, so the window is UTC's yesterday to tomorrow and Python keeps each patient's
# own date. Assignments ended before UTC's day before yesterday are out.
_TODAY_FIELDS = {
    "token": "hex(d.token_hash)",
    **devices.AUTH_FIELDS,
    "revision": "p.revision",
    **{name: f"a.{name}" for name in (
        "id", "routine_name", "item_count", "estimated_minutes", "start_date", "end_date", "days", "times", "note",
        "ended_at",
    )},
    "done": "(SELECT group_concat(c.local_date || ' ' || c.slot_time) FROM completions c"
            " WHERE c.assignment_id = a.id AND c.local_date BETWEEN :first AND :last AND c.slot_time IS NOT NULL)",
}


def _today_for_tokens(n: int) -> str:
    tokens = ", ".join(f":k{i}" for i in range(n))
    return (
        f"SELECT json_group_array(json_array({', '.join(_TODAY_FIELDS.values())}))"
        f" FROM {devices.AUTH_FROM} LEFT JOIN assignments a ON a.patient_id = p.id"
        "  AND a.start_date <= :last AND (a.end_date IS NULL OR a.end_date >= :first)"
        "  AND (a.ended_at IS NULL OR a.ended_at >= :ended_after)"
        f" WHERE d.token_hash IN ({tokens}) AND {devices.AUTH_LIVE}"
    )


def _today_by_token(rows: list[Row]) -> dict[bytes, list[dict[str, Any]]]:
    found: dict[bytes, list[dict[str, Any]]] = defaultdict(list)
    for values in orjson.loads(rows[0][0]):
        found[bytes.fromhex(values[0])].append(dict(zip(_TODAY_FIELDS, values)))
    return found


async def today_for_device(
    db: Database, memo: StreakMemo, token: str, *, now: datetime
) -> tuple[devices.Me, dict[str, Any]] | None:
    """today() for the patient behind a device token, authenticating in the same query (None: not signed in)."""
    utc_day = now.astimezone(UTC).date()
    # The batch's parameters: the same for every open of a UTC day, so those share batches.
    # An ISO date compares below every instant of that day.
    window = (
        ("ended_after", (utc_day - 2 * _ONE_DAY).isoformat()),
        ("first", (utc_day - _ONE_DAY).isoformat()),
        ("last", (utc_day + _ONE_DAY).isoformat()),
    )
    rows = await db.batched(_today_for_tokens, _today_by_token).fetch(window, token_hash(token))
    if not rows:
        return None
    me = await devices.seen(db, rows[0], now=now)
    day = local_date(now, me.timezone)
    text = day.isoformat()
    running = [row for row in rows if row["id"] is not None]
    done = {
        (row["id"], text): {entry[11:] for entry in row["done"].split(",") if entry.startswith(text)}
        for row in running if row["done"]
    }
    revision = rows[0]["revision"]
    streak_days = memo.get(me.patient_id, revision, text, me.timezone)
    if streak_days is None:
        streak_days = (await _streak(db, me.patient_id, me.timezone, me.joined_at, day))[0]
        memo.put(me.patient_id, revision, text, me.timezone, streak_days)
    return me, {**_day_view(running, done, day, me.timezone), "streak_days": streak_days}


async def assignment_for_patient(db: Database, patient_id: int, assignment_id: int) -> assignments.Assignment:
    row = await db.fetchone(
        f"SELECT {assignments.COLUMNS} FROM assignments WHERE id = ? AND patient_id = ?", (assignment_id, patient_id)
    )
    if row is None:
        raise NotFound("No such assignment.", fields={"assignment_id": "no such assignment"})
    return assignments.from_row(row)


async def record(
    db: Database,
    *,
    patient_id: int,
    timezone: str,
    client_id: str,
    assignment_id: int,
    day: date,
    time: str | None,
    completed_at: datetime | None,
    pain_before: int | None,
    pain_after: int | None,
    difficulty: str | None,
    note: str,
    now: datetime,
) -> tuple[Completion, bool]:
    """Record a completion once per client_id; return it and whether it is new.

    It fills the requested slot if open, else the open slot of that local day nearest to
    when it was done; with every slot filled (or none that day) it is kept as an extra.
    """
    moment = (completed_at or now).astimezone(zone("UTC")).replace(microsecond=0)
    text = day.isoformat()
    async with db.transaction() as tx:
        # One read under the write lock: the assignment, the day's filled slots, and whether this
        # client_id was seen before (each statement is a hop to the writer's thread).
        row = await tx.fetchone(
            "SELECT a.id, a.start_date, a.end_date, a.days, a.times, a.ended_at,"
            " (SELECT group_concat(c.slot_time) FROM completions c"
            "  WHERE c.assignment_id = a.id AND c.local_date = :day AND c.slot_time IS NOT NULL) AS filled,"
            " (SELECT c.id FROM completions c WHERE c.patient_id = :patient AND c.client_id = :client) AS seen"
            " FROM (SELECT 1) LEFT JOIN assignments a ON a.id = :assignment AND a.patient_id = :patient",
            {"day": text, "patient": patient_id, "client": client_id, "assignment": assignment_id},
        )
        assert row is not None
        # The same client_id again is a retry: answer with the row already stored, whatever was sent.
        if row["seen"] is not None:
            existing = await tx.fetchone(f"SELECT {_COLUMNS} FROM completions WHERE id = ?", (row["seen"],))
            assert existing is not None
            return _completion(existing), False
        if row["id"] is None:
            raise NotFound("No such assignment.", fields={"assignment_id": "no such assignment"})
        plan = assignments.plan_of(row)
        if text < plan.start_date or (plan.end_date is not None and text > plan.end_date):
            raise BadRequest("That date is outside this homework's dates.", {"date": "outside the assignment's dates"})
        if day > local_date(now + FUTURE_SLACK, timezone):
            raise BadRequest("That date is in the future.", {"date": "must not be in the future"})
        if moment > now + FUTURE_SLACK:
            raise BadRequest("That time is in the future.", {"completed_at": "must not be in the future"})
        times = slot_times(plan, day, timezone)
        filled = set(row["filled"].split(",")) if row["filled"] else set()
        slot: str | None
        if time in times and time not in filled:
            slot = time
        else:
            local = moment.astimezone(zone(timezone))
            at = local.strftime("%H:%M") if local.date() == day else (time or "12:00")
            slot = nearest_open_slot(times, filled, at)
        stored = await tx.fetchone(
            "INSERT INTO completions (patient_id, assignment_id, client_id, local_date, slot_time, completed_at,"
            f" pain_before, pain_after, difficulty, note, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            f" RETURNING {_COLUMNS}",
            (patient_id, assignment_id, client_id, text, slot, iso(moment), pain_before, pain_after, difficulty,
             note, iso(now)),
        )
        assert stored is not None
        return _completion(stored), True


async def history(
    db: Database, *, patient_id: int, timezone: str, joined_at: str | None, days: int, now: datetime
) -> dict[str, Any]:
    """The last `days` local days: slots scheduled and done per day, and every completion with its pain."""
    last = local_date(now, timezone)
    first = last - timedelta(days=days - 1)
    rows, done = await _plans_and_done(db, patient_id, first)
    tallies: list[DayTally] = tally(map(assignments.plan_of, rows), done, first, last, timezone, not_before=_joined(joined_at, timezone))
    names = {r["id"]: r["routine_name"] for r in rows}
    found = await db.fetchall(
        f"SELECT {_COLUMNS} FROM completions WHERE patient_id = ? AND local_date >= ? ORDER BY completed_at",
        (patient_id, first.isoformat()),
    )
    completions = []
    for r in found:
        c = _completion(r).public()
        c["routine"] = names.get(r["assignment_id"], "")
        completions.append(c)
    scheduled = sum(t.scheduled for t in tallies)
    completed = sum(t.completed for t in tallies)
    return {
        "from": first.isoformat(),
        "to": last.isoformat(),
        "days": [t._asdict() for t in tallies],
        "completions": completions,
        "scheduled": scheduled,
        "completed": completed,
        "streak_days": streak(tallies, last.isoformat()),
    }
