"""Treatment sessions at the clinic, recorded so outcome charts can mark them."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, datetime

from .clock import iso
from .db import Database


@dataclass(frozen=True)
class ClinicSession:
    id: int
    date: str
    note: str

    def public(self) -> dict[str, object]:
        return asdict(self)


async def list_for(db: Database, patient_id: int) -> list[ClinicSession]:
    rows = await db.fetchall(
        "SELECT id, date, note FROM clinic_sessions WHERE patient_id = ? ORDER BY date, id", (patient_id,)
    )
    return [ClinicSession(r["id"], r["date"], r["note"]) for r in rows]


async def create(db: Database, patient_id: int, *, day: date, note: str, now: datetime) -> ClinicSession:
    row = await db.write_fetchone(
        "INSERT INTO clinic_sessions (patient_id, date, note, created_at) VALUES (?, ?, ?, ?) RETURNING id, date, note",
        (patient_id, day.isoformat(), note, iso(now)),
    )
    assert row is not None
    return ClinicSession(row["id"], row["date"], row["note"])
