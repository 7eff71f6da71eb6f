"""The exercise library: built-in stretches shared by all, and each practitioner's own."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime

from .clock import iso
from .db import Database, Row, Transaction
from .library import BUILTIN_EXERCISES

CUSTOM_IMAGE = "custom.svg"


@dataclass(frozen=True)
class Exercise:
    id: int
    name: str
    summary: str
    steps: list[str]
    safety: str
    hold_seconds: int
    reps: int
    sets: int
    sides: str
    image_url: str
    builtin: bool

    def public(self) -> dict[str, object]:
        return asdict(self)


def image_url(image: str | None) -> str:
    return f"/static/exercises/{image or CUSTOM_IMAGE}"


def _exercise(row: Row) -> Exercise:
    return Exercise(
        id=row["id"],
        name=row["name"],
        summary=row["summary"],
        steps=json.loads(row["steps"]),
        safety=row["safety"],
        hold_seconds=row["hold_seconds"],
        reps=row["reps"],
        sets=row["sets"],
        sides=row["sides"],
        image_url=image_url(row["image"]),
        builtin=row["practitioner_id"] is None,
    )


_COLUMNS = "id, practitioner_id, name, summary, steps, safety, hold_seconds, reps, sets, sides, image"


async def list_visible(db: Database, practitioner_id: int) -> list[Exercise]:
    """Built-in exercises first, then the practitioner's own, by name."""
    rows = await db.fetchall(
        f"SELECT {_COLUMNS} FROM exercises WHERE practitioner_id IS NULL OR practitioner_id = ?"
        " ORDER BY practitioner_id IS NOT NULL, name",
        (practitioner_id,),
    )
    return [_exercise(r) for r in rows]


async def visible_by_id(tx: Transaction | Database, practitioner_id: int, ids: list[int]) -> dict[int, Exercise]:
    if not ids:
        return {}
    marks = ",".join("?" * len(ids))
    rows = await tx.fetchall(
        f"SELECT {_COLUMNS} FROM exercises WHERE id IN ({marks}) AND (practitioner_id IS NULL OR practitioner_id = ?)",
        (*ids, practitioner_id),
    )
    return {r["id"]: _exercise(r) for r in rows}


async def create(
    db: Database,
    practitioner_id: int,
    *,
    name: str,
    summary: str,
    steps: list[str],
    safety: str,
    hold_seconds: int,
    reps: int,
    sets: int,
    sides: str,
    now: datetime,
) -> Exercise:
    row = await db.write_fetchone(
        "INSERT INTO exercises (practitioner_id, name, summary, steps, safety, hold_seconds, reps, sets, sides, created_at)"
        f" VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING {_COLUMNS}",
        (practitioner_id, name, summary, json.dumps(steps), safety, hold_seconds, reps, sets, sides, iso(now)),
    )
    assert row is not None
    return _exercise(row)


async def sync_builtins(db: Database, *, now: datetime) -> None:
    """Insert or refresh the built-in library from server/library.py (keyed by slug)."""
    async with db.transaction() as tx:
        await tx.executemany(
            "INSERT INTO exercises (slug, name, summary, steps, safety, hold_seconds, reps, sets, sides, image, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (slug) DO UPDATE SET name = excluded.name, summary = excluded.summary,"
            " steps = excluded.steps, safety = excluded.safety, hold_seconds = excluded.hold_seconds,"
            " reps = excluded.reps, sets = excluded.sets, sides = excluded.sides, image = excluded.image",
            [
                (e.slug, e.name, e.summary, json.dumps(list(e.steps)), e.safety, e.hold_seconds,
                 e.reps, e.sets, e.sides, e.image, iso(now))
                for e in BUILTIN_EXERCISES
            ],
        )
