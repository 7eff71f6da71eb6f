"""Subscribable calendar URLs: a revocable token per patient, because calendar apps send no cookies.

The URL is the credential (like an invite link), so only its SHA-256 is stored; making a
new one revokes the old, and an archived patient's feed stops answering.
"""

from __future__ import annotations

from datetime import datetime

from .clock import iso
from .db import Database
from .security import new_token, token_hash


def feed_url(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/calendar/{token}.ics"


async def create(db: Database, patient_id: int, *, now: datetime) -> str:
    """Make a new feed token for the patient, revoking any older one; return the token."""
    token = new_token()
    async with db.transaction() as tx:
        await tx.execute(
            "UPDATE calendar_feeds SET revoked_at = ? WHERE patient_id = ? AND revoked_at IS NULL",
            (iso(now), patient_id),
        )
        await tx.execute(
            "INSERT INTO calendar_feeds (patient_id, token_hash, created_at) VALUES (?, ?, ?)",
            (patient_id, token_hash(token), iso(now)),
        )
    return token


async def revoke(db: Database, patient_id: int, *, now: datetime) -> None:
    """Stop every feed URL of the patient from working."""
    await db.execute(
        "UPDATE calendar_feeds SET revoked_at = ? WHERE patient_id = ? AND revoked_at IS NULL", (iso(now), patient_id)
    )


async def active_since(db: Database, patient_id: int) -> str | None:
    """When the patient's working feed URL was made, or None without one."""
    created: str | None = await db.fetchval(
        "SELECT max(created_at) FROM calendar_feeds WHERE patient_id = ? AND revoked_at IS NULL", (patient_id,)
    )
    return created


async def patient_for(db: Database, token: str) -> tuple[int, str] | None:
    """(patient id, time zone) behind a working feed token, or None."""
    row = await db.fetchone(
        "SELECT p.id, p.timezone FROM calendar_feeds f JOIN patients p ON p.id = f.patient_id"
        " WHERE f.token_hash = ? AND f.revoked_at IS NULL AND p.archived = 0",
        (token_hash(token),),
    )
    return None if row is None else (row["id"], row["timezone"])
