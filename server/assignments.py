"""Assignments: a routine given to a patient, frozen at the moment it was given."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from functools import lru_cache
from typing import Any

from . import exercises, routines
from .clock import iso, local_date
from .db import Database, Row, Transaction
from .errors import BadRequest, NotFound
from .schedule import Plan
from .validate import mask_to_days


@dataclass(frozen=True)
class Assignment:
    id: int
    patient_id: int
    routine_id: int | None
    routine_name: str
    routine_notes: str
    items: list[dict[str, Any]] = field(repr=False)
    item_count: int
    estimated_minutes: int
    start_date: str
    end_date: str | None
    days_mask: int
    times: list[str]
    session_date: str | None
    note: str
    created_at: str
    ended_at: str | None

    @property
    def days(self) -> list[str]:
        return mask_to_days(self.days_mask)

    @property
    def active(self) -> bool:
        return self.ended_at is None

    @property
    def plan(self) -> Plan:
        return Plan(self.id, self.start_date, self.end_date, self.days_mask, tuple(self.times), self.ended_at)

    def runs_on(self, day: date) -> bool:
        """Tell whether the assignment has slots on this local date."""
        text = day.isoformat()
        return (
            self.start_date <= text
            and (self.end_date is None or text <= self.end_date)
            and bool(self.days_mask & (1 << day.weekday()))
        )

    def public(self) -> dict[str, object]:
        d = asdict(self)
        del d["days_mask"], d["items"], d["routine_name"], d["routine_notes"]
        d["days"] = self.days
        d["active"] = self.active
        d["routine"] = {
            "name": self.routine_name,
            "notes": self.routine_notes,
            "items": self.items,
            "estimated_minutes": self.estimated_minutes,
        }
        return d


COLUMNS = (
    "id, patient_id, routine_id, routine_name, routine_notes, items, item_count, estimated_minutes, start_date,"
    " end_date, days, times, session_date, note, created_at, ended_at"
)


def from_row(row: Row) -> Assignment:
    return Assignment(
        id=row["id"],
        patient_id=row["patient_id"],
        routine_id=row["routine_id"],
        routine_name=row["routine_name"],
        routine_notes=row["routine_notes"],
        items=json.loads(row["items"]),
        item_count=row["item_count"],
        estimated_minutes=row["estimated_minutes"],
        start_date=row["start_date"],
        end_date=row["end_date"],
        days_mask=row["days"],
        times=json.loads(row["times"]),
        session_date=row["session_date"],
        note=row["note"],
        created_at=row["created_at"],
        ended_at=row["ended_at"],
    )


def plan_of(row: Row | Mapping[str, Any]) -> Plan:
    """The scheduling facts of an assignments row (id, start_date, end_date, days, times, ended_at)."""
    return Plan(row["id"], row["start_date"], row["end_date"], row["days"], times_of(row["times"]), row["ended_at"])


@lru_cache(maxsize=4096)
def times_of(text: str) -> tuple[str, ...]:
    """The stored JSON list of times, parsed once per process: thousands of rows share a handful."""
    return tuple(json.loads(text))


async def list_for_patient(db: Database, practitioner_id: int, patient_id: int) -> list[Assignment]:
    rows = await db.fetchall(
        f"SELECT {COLUMNS} FROM assignments WHERE patient_id = ? AND practitioner_id = ?"
        " ORDER BY ended_at IS NOT NULL, start_date DESC, id DESC",
        (patient_id, practitioner_id),
    )
    return [from_row(r) for r in rows]


async def get(db: Database | Transaction, practitioner_id: int, assignment_id: int) -> Assignment:
    row = await db.fetchone(
        f"SELECT {COLUMNS} FROM assignments WHERE id = ? AND practitioner_id = ?", (assignment_id, practitioner_id)
    )
    if row is None:
        raise NotFound("No such assignment.")
    return from_row(row)


async def create(
    db: Database,
    practitioner_id: int,
    patient_id: int,
    *,
    routine_id: int,
    start_date: date,
    end_date: date | None,
    days_mask: int,
    times: list[str],
    session_date: date | None,
    note: str,
    now: datetime,
) -> Assignment:
    """Copy the routine, with its exercises' text, into a new assignment for the patient."""
    if end_date is not None and end_date < start_date:
        raise BadRequest("The end date is before the start date.", {"end_date": "must not be before start_date"})
    async with db.transaction() as tx:
        patient = await tx.fetchone(
            "SELECT id FROM patients WHERE id = ? AND practitioner_id = ?", (patient_id, practitioner_id)
        )
        if patient is None:
            raise NotFound("No such patient.")
        try:
            routine = await routines.get(tx, practitioner_id, routine_id)
        except NotFound:
            raise BadRequest("No such routine.", {"routine_id": "no such routine"}) from None
        if not routine.items:
            raise BadRequest("The routine has no exercises yet.", {"routine_id": "routine has no exercises"})
        found = await exercises.visible_by_id(tx, practitioner_id, [i.exercise_id for i in routine.items])
        items = []
        for item in routine.items:
            ex = found[item.exercise_id]
            items.append(
                {
                    "exercise_id": ex.id,
                    "name": ex.name,
                    "summary": ex.summary,
                    "steps": ex.steps,
                    "safety": ex.safety,
                    "image_url": ex.image_url,
                    "reps": item.reps,
                    "sets": item.sets,
                    "hold_seconds": item.hold_seconds,
                    "sides": item.sides,
                    "rest_seconds": item.rest_seconds,
                    "notes": item.notes,
                }
            )
        row = await tx.fetchone(
            "INSERT INTO assignments (patient_id, practitioner_id, routine_id, routine_name, routine_notes, items,"
            " item_count, estimated_minutes, start_date, end_date, days, times, session_date, note, created_at)"
            f" VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING {COLUMNS}",
            (
                patient_id, practitioner_id, routine.id, routine.name, routine.notes, json.dumps(items),
                len(items), routines.estimated_minutes(items), start_date.isoformat(),
                end_date.isoformat() if end_date else None, days_mask, json.dumps(times),
                session_date.isoformat() if session_date else None, note, iso(now),
            ),
        )
        assert row is not None
        return from_row(row)


async def end(db: Database, practitioner_id: int, assignment_id: int, *, now: datetime) -> Assignment:
    """End an assignment now: no more slots after today, in the patient's time zone."""
    async with db.transaction() as tx:
        row = await tx.fetchone(
            "SELECT a.id, a.end_date, a.ended_at, p.timezone FROM assignments a JOIN patients p ON p.id = a.patient_id"
            " WHERE a.id = ? AND a.practitioner_id = ?",
            (assignment_id, practitioner_id),
        )
        if row is None:
            raise NotFound("No such assignment.")
        if row["ended_at"] is None:
            today = local_date(now, row["timezone"]).isoformat()
            end_date = min(row["end_date"] or today, today)
            await tx.execute(
                "UPDATE assignments SET ended_at = ?, end_date = ? WHERE id = ?", (iso(now), end_date, assignment_id)
            )
        return await get(tx, practitioner_id, assignment_id)
