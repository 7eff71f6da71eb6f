"""What the patient sees and records: today's slots, an assignment in full, completions, history."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple

import orjson

from . import assignments, devices
from .clock import iso, local_date, parse_iso, zone
from .db import Database, Row, Transaction, batch_keys
from .errors import AppError, BadRequest, NotFound
from .schedule import DayTally, Plan, nearest_open_slot, slot_times, streak, tally, walk_streak
from .security import token_hash

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
        # Its fields, flat: dataclasses.asdict deep-copies each value, a tenth of a completion's CPU.
        return dict(self.__dict__)


# The stored columns of a Completion, in its fields' order.
_FIELDS = ("id", "client_id", "assignment_id", "local_date", "slot_time", "completed_at", "pain_before", "pain_after",
           "difficulty", "note")
_COLUMNS = ", ".join(f"{column} AS {field.name}" for column, field in zip(_FIELDS, fields(Completion), strict=True))


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
    return (
        f"SELECT json_group_array(json_array({', '.join(_TODAY_FIELDS.values())}))"
        f" FROM {devices.AUTH_FROM} LEFT JOIN assignments a ON a.patient_id = p.id"
        "  AND a.start_date <= :last AND (a.end_date IS NULL OR a.end_date >= :first)"
        "  AND (a.ended_at IS NULL OR a.ended_at >= :ended_after)"
        f" WHERE d.token_hash IN ({batch_keys(n)}) AND {devices.AUTH_LIVE}"
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


class _Recording(NamedTuple):
    """One completion to record, as the request gave it (record's arguments)."""

    patient_id: int
    timezone: str
    client_id: str
    assignment_id: int
    day: date
    time: str | None
    moment: datetime  # when it was done, UTC, to the second
    pain_before: int | None
    pain_after: int | None
    difficulty: str | None
    note: str
    now: datetime


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
    Completions sent at the same time are written in one transaction (db.Grouped): each
    gets the answer it would have had alone, in the order they arrived. Once submitted it is
    written even if the caller stops waiting (a phone that gave up and retries with the
    same client_id gets the stored row).
    """
    moment = (completed_at or now).astimezone(UTC).replace(microsecond=0)
    item = _Recording(
        patient_id, timezone, client_id, assignment_id, day, time, moment, pain_before, pain_after, difficulty, note, now
    )
    return await db.grouped(_record_many).submit(item)  # type: ignore[no-any-return]


_INSERTED = ("patient_id", "assignment_id", "client_id", "local_date", "slot_time", "completed_at", "pain_before",
             "pain_after", "difficulty", "note", "created_at")

# For each item of :items ([patient, client_id, assignment, date], ...), in one JSON value: its
# index, the assignment if it is the patient's (id NULL if not), the slots of that date
# already filled, and the completion stored before under the same client_id.
_FOUND = ("index", "id", "start_date", "end_date", "days", "times", "ended_at", "filled", "stored")
_READ_MANY = (
    "SELECT json_group_array(json_array(r.key, a.id, a.start_date, a.end_date, a.days, a.times, a.ended_at,"
    " (SELECT group_concat(c.slot_time) FROM completions c"
    "  WHERE c.assignment_id = a.id AND c.local_date = r.value ->> 3 AND c.slot_time IS NOT NULL),"
    f" (SELECT json_array({', '.join(_FIELDS)}) FROM completions c"
    "  WHERE c.patient_id = r.value ->> 0 AND c.client_id = r.value ->> 1)))"
    " FROM json_each(:items) r LEFT JOIN assignments a ON a.id = r.value ->> 2 AND a.patient_id = r.value ->> 0"
)
_INSERT_MANY = (
    f"INSERT INTO completions ({', '.join(_INSERTED)})"
    f" SELECT {', '.join(f'value ->> {i}' for i in range(len(_INSERTED)))} FROM json_each(:rows) ORDER BY key"
    f" RETURNING patient_id, {', '.join(_FIELDS)}"
)


_NEW, _AGAIN = object(), object()  # an item's outcome until the insert has given its row


async def _record_many(tx: Transaction, items: list[_Recording]) -> list[tuple[Completion, bool] | AppError]:
    """Record items in order inside tx: one read for all, one insert for all (see record)."""
    found: list[dict[str, Any]] = [{}] * len(items)
    days = [i.day.isoformat() for i in items]
    asked = [[i.patient_id, i.client_id, i.assignment_id, day] for i, day in zip(items, days)]
    for values in await tx.fetch_json(_READ_MANY, {"items": orjson.dumps(asked).decode()}):
        found[values[0]] = dict(zip(_FOUND, values))
    outcomes: list[Any] = [_NEW] * len(items)
    filled: dict[tuple[int, str], set[str]] = {}  # (assignment, date): slots taken, this batch's included
    storing: set[tuple[int, str]] = set()  # (patient, client_id) this batch inserts
    rows = []
    for index, (item, text, row) in enumerate(zip(items, days, found, strict=True)):
        key = (item.patient_id, item.client_id)
        # The same client_id again is a retry: answer with the row already stored, whatever was sent.
        if row["stored"] is not None:
            outcomes[index] = (Completion(*row["stored"]), False)
            continue
        if key in storing:
            outcomes[index] = _AGAIN  # a retry of an item of this batch: its row, once inserted
            continue
        if row["id"] is None:
            outcomes[index] = NotFound("No such assignment.", fields={"assignment_id": "no such assignment"})
            continue
        taken = filled.setdefault((item.assignment_id, text), set(row["filled"].split(",")) if row["filled"] else set())
        try:
            slot = _slot_for(item, text, assignments.plan_of(row), taken)
        except AppError as error:
            outcomes[index] = error
            continue
        if slot is not None:
            taken.add(slot)
        storing.add(key)
        rows.append([item.patient_id, item.assignment_id, item.client_id, text, slot, iso(item.moment),
                     item.pain_before, item.pain_after, item.difficulty, item.note, iso(item.now)])
    if rows:
        stored = {
            (inserted[0], inserted[2]): Completion(*tuple(inserted)[1:])  # keyed by (patient, client_id)
            for inserted in await tx.fetchall(_INSERT_MANY, {"rows": orjson.dumps(rows).decode()})
        }
        for index, outcome in enumerate(outcomes):
            if outcome is _NEW or outcome is _AGAIN:
                outcomes[index] = (stored[items[index].patient_id, items[index].client_id], outcome is _NEW)
    return outcomes


def _slot_for(item: _Recording, text: str, plan: Plan, filled: set[str]) -> str | None:
    """The slot item (dated text, ISO) fills in its assignment's plan, given those filled; AppError if refused."""
    if text < plan.start_date or (plan.end_date is not None and text > plan.end_date):
        raise BadRequest("That date is outside this homework's dates.", {"date": "outside the assignment's dates"})
    if item.day > local_date(item.now + FUTURE_SLACK, item.timezone):
        raise BadRequest("That date is in the future.", {"date": "must not be in the future"})
    if item.moment > item.now + FUTURE_SLACK:
        raise BadRequest("That time is in the future.", {"completed_at": "must not be in the future"})
    times = slot_times(plan, item.day, item.timezone)
    if item.time in times and item.time not in filled:
        return item.time
    local = item.moment.astimezone(zone(item.timezone))
    at = local.strftime("%H:%M") if local.date() == item.day else (item.time or "12:00")
    return nearest_open_slot(times, filled, at)


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
