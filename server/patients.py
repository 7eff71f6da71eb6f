"""Patients, always reached through their practitioner."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

from .clock import iso
from .db import Database, Row, Transaction
from .errors import NotFound


@dataclass(frozen=True)
class Patient:
    id: int
    name: str
    timezone: str
    archived: bool
    created_at: str
    joined_at: str | None

    def public(self) -> dict[str, object]:
        return asdict(self)


_COLUMNS = "id, name, timezone, archived, created_at, joined_at"


def _patient(row: Row) -> Patient:
    return Patient(row["id"], row["name"], row["timezone"], bool(row["archived"]), row["created_at"], row["joined_at"])


async def list_for(db: Database, practitioner_id: int, *, archived: bool = False) -> list[Patient]:
    rows = await db.fetchall(
        f"SELECT {_COLUMNS} FROM patients WHERE practitioner_id = ? AND archived = ? ORDER BY name COLLATE NOCASE, id",
        (practitioner_id, int(archived)),
    )
    return [_patient(r) for r in rows]


async def get(db: Database | Transaction, practitioner_id: int, patient_id: int) -> Patient:
    """Return the practitioner's patient or raise NotFound (also for someone else's)."""
    row = await db.fetchone(
        f"SELECT {_COLUMNS} FROM patients WHERE id = ? AND practitioner_id = ?", (patient_id, practitioner_id)
    )
    if row is None:
        raise NotFound("No such patient.")
    return _patient(row)


async def by_id(db: Database | Transaction, patient_id: int) -> Patient:
    row = await db.fetchone(f"SELECT {_COLUMNS} FROM patients WHERE id = ?", (patient_id,))
    if row is None:
        raise NotFound("No such patient.")
    return _patient(row)


async def create(db: Database, practitioner_id: int, *, name: str, timezone: str, now: datetime) -> Patient:
    row = await db.write_fetchone(
        f"INSERT INTO patients (practitioner_id, name, timezone, created_at) VALUES (?, ?, ?, ?) RETURNING {_COLUMNS}",
        (practitioner_id, name, timezone, iso(now)),
    )
    assert row is not None
    return _patient(row)


async def update(
    db: Database,
    practitioner_id: int,
    patient_id: int,
    *,
    name: str | None = None,
    timezone: str | None = None,
    archived: bool | None = None,
) -> Patient:
    """Change the given fields; None leaves a field as it is."""
    async with db.transaction() as tx:
        current = await get(tx, practitioner_id, patient_id)
        await tx.execute(
            "UPDATE patients SET name = ?, timezone = ?, archived = ? WHERE id = ?",
            (
                current.name if name is None else name,
                current.timezone if timezone is None else timezone,
                int(current.archived if archived is None else archived),
                patient_id,
            ),
        )
        if timezone is not None and timezone != current.timezone:
            await _replan(tx, patient_id)
        return await get(tx, practitioner_id, patient_id)


async def set_timezone(db: Database, patient_id: int, timezone: str) -> None:
    """Change the time zone (the patient's own setting) and replan their reminders."""
    async with db.transaction() as tx:
        await tx.execute("UPDATE patients SET timezone = ? WHERE id = ?", (timezone, patient_id))
        await _replan(tx, patient_id)


async def _replan(tx: Transaction, patient_id: int) -> None:
    # Reminder times are local: the scheduler must plan this patient's slots afresh.
    await tx.execute("UPDATE assignments SET needs_plan = 1 WHERE patient_id = ? AND ended_at IS NULL", (patient_id,))
