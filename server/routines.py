"""Routines: a practitioner's ordered lists of exercises with their doses, reused as templates."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from . import exercises
from .clock import iso
from .db import Database, Transaction
from .errors import BadRequest, NotFound

# Seconds a patient takes to get into and out of each hold, on top of the hold itself.
TRANSITION_SECONDS = 3


@dataclass(frozen=True)
class Item:
    exercise_id: int
    reps: int
    sets: int
    hold_seconds: int
    sides: str
    rest_seconds: int
    notes: str


@dataclass(frozen=True)
class Routine:
    id: int
    name: str
    notes: str
    items: list[Item]
    updated_at: str

    def public(self) -> dict[str, object]:
        return asdict(self)


def item_seconds(reps: int, sets: int, hold_seconds: int, sides: str, rest_seconds: int) -> int:
    """Seconds one item takes: every rep of every set on each side, plus rests between sets."""
    side_count = 2 if sides == "both" else 1
    return sets * side_count * reps * (hold_seconds + TRANSITION_SECONDS) + (sets - 1) * rest_seconds


def estimated_minutes(items: list[Item] | list[dict[str, Any]]) -> int:
    total = 0
    for item in items:
        d = item if isinstance(item, dict) else asdict(item)
        total += item_seconds(d["reps"], d["sets"], d["hold_seconds"], d["sides"], d["rest_seconds"])
    return max(1, math.ceil(total / 60))


async def list_for(db: Database, practitioner_id: int) -> list[Routine]:
    rows = await db.fetchall(
        "SELECT r.id, r.name, r.notes, r.updated_at, i.exercise_id, i.reps, i.sets, i.hold_seconds, i.sides,"
        " i.rest_seconds, i.notes AS item_notes FROM routines r LEFT JOIN routine_items i ON i.routine_id = r.id"
        " WHERE r.practitioner_id = ? ORDER BY r.name COLLATE NOCASE, r.id, i.position",
        (practitioner_id,),
    )
    found: dict[int, Routine] = {}
    for r in rows:
        routine = found.get(r["id"])
        if routine is None:
            routine = found[r["id"]] = Routine(r["id"], r["name"], r["notes"], [], r["updated_at"])
        if r["exercise_id"] is not None:
            routine.items.append(
                Item(r["exercise_id"], r["reps"], r["sets"], r["hold_seconds"], r["sides"], r["rest_seconds"], r["item_notes"])
            )
    return list(found.values())


async def get(db: Database | Transaction, practitioner_id: int, routine_id: int) -> Routine:
    """Return the practitioner's routine or raise NotFound (also for someone else's)."""
    head = await db.fetchone(
        "SELECT id, name, notes, updated_at FROM routines WHERE id = ? AND practitioner_id = ?",
        (routine_id, practitioner_id),
    )
    if head is None:
        raise NotFound("No such routine.")
    rows = await db.fetchall(
        "SELECT exercise_id, reps, sets, hold_seconds, sides, rest_seconds, notes FROM routine_items"
        " WHERE routine_id = ? ORDER BY position",
        (routine_id,),
    )
    items = [Item(**dict(r)) for r in rows]
    return Routine(head["id"], head["name"], head["notes"], items, head["updated_at"])


async def _check_exercises(tx: Transaction, practitioner_id: int, items: list[Item]) -> None:
    ids = sorted({i.exercise_id for i in items})
    visible = await exercises.visible_by_id(tx, practitioner_id, ids)
    bad = {f"items[{n}].exercise_id": "no such exercise" for n, i in enumerate(items) if i.exercise_id not in visible}
    if bad:
        raise BadRequest("Some exercises do not exist.", bad)


async def _write_items(tx: Transaction, routine_id: int, items: list[Item]) -> None:
    await tx.execute("DELETE FROM routine_items WHERE routine_id = ?", (routine_id,))
    await tx.executemany(
        "INSERT INTO routine_items (routine_id, position, exercise_id, reps, sets, hold_seconds, sides, rest_seconds, notes)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(routine_id, n, i.exercise_id, i.reps, i.sets, i.hold_seconds, i.sides, i.rest_seconds, i.notes)
         for n, i in enumerate(items)],
    )


async def create(db: Database, practitioner_id: int, *, name: str, notes: str, items: list[Item], now: datetime) -> Routine:
    async with db.transaction() as tx:
        await _check_exercises(tx, practitioner_id, items)
        routine_id = await tx.fetchval(
            "INSERT INTO routines (practitioner_id, name, notes, created_at, updated_at) VALUES (?, ?, ?, ?, ?) RETURNING id",
            (practitioner_id, name, notes, iso(now), iso(now)),
        )
        await _write_items(tx, routine_id, items)
        return await get(tx, practitioner_id, routine_id)


async def replace(
    db: Database, practitioner_id: int, routine_id: int, *, name: str, notes: str, items: list[Item], now: datetime
) -> Routine:
    """Replace a routine's name, notes and items; assignments made earlier keep their copies."""
    async with db.transaction() as tx:
        await get(tx, practitioner_id, routine_id)
        await _check_exercises(tx, practitioner_id, items)
        await tx.execute(
            "UPDATE routines SET name = ?, notes = ?, updated_at = ? WHERE id = ?", (name, notes, iso(now), routine_id)
        )
        await _write_items(tx, routine_id, items)
        return await get(tx, practitioner_id, routine_id)


async def delete(db: Database, practitioner_id: int, routine_id: int) -> None:
    changed = await db.execute("DELETE FROM routines WHERE id = ? AND practitioner_id = ?", (routine_id, practitioner_id))
    if not changed:
        raise NotFound("No such routine.")
