"""Patients' push subscriptions, one per browser endpoint, upserted as browsers re-send them."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import datetime

from .clock import iso
from .db import Database, Transaction


@dataclass(frozen=True)
class StoredSubscription:
    id: int
    patient_id: int
    device_id: int | None
    endpoint: str
    p256dh: str
    auth: str
    last_status: int | None
    last_delivered_at: str | None

    def public(self) -> dict[str, object]:
        d = asdict(self)
        del d["p256dh"], d["auth"]
        return d


_COLUMNS = "id, patient_id, device_id, endpoint, p256dh, auth, last_status, last_delivered_at"


async def upsert(
    db: Database, *, patient_id: int, device_id: int | None, endpoint: str, p256dh: str, auth: str, now: datetime
) -> bool:
    """Store a subscription; return True when the endpoint is new.

    A known endpoint gets the new keys and moves to this patient and device (a phone that
    re-joined, or an app that re-posts its subscription at every launch, as iOS needs).
    """
    async with db.transaction() as tx:
        existing = await tx.fetchval("SELECT id FROM push_subscriptions WHERE endpoint = ?", (endpoint,))
        if existing is None:
            await tx.execute(
                "INSERT INTO push_subscriptions (patient_id, device_id, endpoint, p256dh, auth, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (patient_id, device_id, endpoint, p256dh, auth, iso(now), iso(now)),
            )
            return True
        await tx.execute(
            "UPDATE push_subscriptions SET patient_id = ?, device_id = ?, p256dh = ?, auth = ?, updated_at = ?"
            " WHERE id = ?",
            (patient_id, device_id, p256dh, auth, iso(now), existing),
        )
        return False


async def delete(db: Database, *, patient_id: int, endpoint: str) -> bool:
    return bool(
        await db.execute("DELETE FROM push_subscriptions WHERE patient_id = ? AND endpoint = ?", (patient_id, endpoint))
    )


async def for_patient(db: Database, patient_id: int) -> list[StoredSubscription]:
    rows = await db.fetchall(f"SELECT {_COLUMNS} FROM push_subscriptions WHERE patient_id = ? ORDER BY id", (patient_id,))
    return [StoredSubscription(**dict(r)) for r in rows]


async def for_patients(db: Database, patient_ids: list[int]) -> dict[int, list[StoredSubscription]]:
    found: dict[int, list[StoredSubscription]] = defaultdict(list)
    for start in range(0, len(patient_ids), 500):
        chunk = patient_ids[start:start + 500]
        rows = await db.fetchall(
            f"SELECT {_COLUMNS} FROM push_subscriptions WHERE patient_id IN ({','.join('?' * len(chunk))}) ORDER BY id",
            chunk,
        )
        for r in rows:
            found[r["patient_id"]].append(StoredSubscription(**dict(r)))
    return found


async def record_outcomes(db: Database, outcomes: list[tuple[int, int | None, bool, bool]], *, now: datetime) -> None:
    """Keep each subscription's last status and delivery; delete the ones the push service says are gone."""
    async with db.transaction() as tx:
        await apply_outcomes(tx, outcomes, now=now)


async def apply_outcomes(tx: Transaction, outcomes: list[tuple[int, int | None, bool, bool]], *, now: datetime) -> None:
    """record_outcomes inside the caller's transaction; outcomes are (id, status, delivered, gone)."""
    await tx.executemany("DELETE FROM push_subscriptions WHERE id = ?", [(i,) for i, _, _, gone in outcomes if gone])
    stamp = iso(now)
    await tx.executemany(
        "UPDATE push_subscriptions SET last_attempt_at = ?, last_status = ?,"
        " last_delivered_at = COALESCE(?, last_delivered_at) WHERE id = ?",
        [(stamp, status, stamp if ok else None, i) for i, status, ok, gone in outcomes if not gone],
    )
