"""What the patient sees and records: today's slots, an assignment in full, completions, history."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from typing import Any

from . import assignments
from .clock import iso, local_date, parse_iso, zone
from .db import Database, Row
from .errors import BadRequest, NotFound
from .schedule import DayTally, Plan, current_streak, nearest_open_slot, slot_times, streak, tally, walk_streak

STREAK_LOOKBACK_DAYS = 90
STREAK_FIRST_READ_DAYS = 14
# A phone's clock may run a little ahead; a completion further in the future is a mistake.
FUTURE_SLACK = timedelta(minutes=10)


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


def _plan(row: Row) -> Plan:
    return Plan(row["id"], row["start_date"], row["end_date"], row["days"], tuple(json.loads(row["times"])), row["ended_at"])


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


async def today(db: Database, *, patient_id: int, timezone: str, joined_at: str | None, now: datetime) -> dict[str, Any]:
    """Today's slots in the patient's zone, done or not, with the streak and the practitioner's notes."""
    day = local_date(now, timezone)
    # Most streaks are short: read two weeks, and the full look-back only when the streak reaches past them.
    first = day - timedelta(days=STREAK_FIRST_READ_DAYS)
    rows, done = await _plans_and_done(db, patient_id, first)
    joined = _joined(joined_at, timezone)
    streak_days, unbroken = walk_streak(map(_plan, rows), done, first, day, timezone, not_before=joined)
    if unbroken:
        first = day - timedelta(days=STREAK_LOOKBACK_DAYS)
        rows, done = await _plans_and_done(db, patient_id, first)
        streak_days = current_streak(map(_plan, rows), done, first, day, timezone, not_before=joined)
    slots = []
    notes = []
    for row in rows:
        plan = _plan(row)
        times = slot_times(plan, day, timezone)
        filled = done.get((plan.id, day.isoformat()), set())
        routine = {"name": row["routine_name"], "items": row["item_count"], "estimated_minutes": row["estimated_minutes"]}
        for t in times:
            slots.append({"assignment_id": plan.id, "time": t, "routine": routine, "done": t in filled})
        if times and row["note"] and row["ended_at"] is None:
            notes.append({"assignment_id": plan.id, "routine": row["routine_name"], "note": row["note"]})
    slots.sort(key=lambda s: (s["time"], s["assignment_id"]))
    return {
        "date": day.isoformat(),
        "slots": slots,
        "streak_days": streak_days,
        "notes": notes,
    }


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
    async with db.transaction() as tx:
        # The same client_id again is a retry: answer with the row already stored, whatever was sent.
        existing = await tx.fetchone(
            f"SELECT {_COLUMNS} FROM completions WHERE patient_id = ? AND client_id = ?", (patient_id, client_id)
        )
        if existing is not None:
            return _completion(existing), False
        row = await tx.fetchone(
            "SELECT id, start_date, end_date, days, times, ended_at FROM assignments WHERE id = ? AND patient_id = ?",
            (assignment_id, patient_id),
        )
        if row is None:
            raise NotFound("No such assignment.", fields={"assignment_id": "no such assignment"})
        plan = _plan(row)
        text = day.isoformat()
        if text < plan.start_date or (plan.end_date is not None and text > plan.end_date):
            raise BadRequest("That date is outside this homework's dates.", {"date": "outside the assignment's dates"})
        if day > local_date(now + FUTURE_SLACK, timezone):
            raise BadRequest("That date is in the future.", {"date": "must not be in the future"})
        if moment > now + FUTURE_SLACK:
            raise BadRequest("That time is in the future.", {"completed_at": "must not be in the future"})
        times = slot_times(plan, day, timezone)
        filled = {
            r["slot_time"]
            for r in await tx.fetchall(
                "SELECT slot_time FROM completions WHERE assignment_id = ? AND local_date = ? AND slot_time IS NOT NULL",
                (assignment_id, text),
            )
        }
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
    tallies: list[DayTally] = tally(map(_plan, rows), done, first, last, timezone, not_before=_joined(joined_at, timezone))
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
