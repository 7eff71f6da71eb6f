"""Patients' push subscriptions, one per browser endpoint, upserted as browsers re-send them."""

from __future__ import annotations

import json
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
    rows = await db.fetch_json(
        f"SELECT json_group_array(json_array({_COLUMNS})) FROM push_subscriptions"
        " WHERE patient_id IN (SELECT value FROM json_each(?))",
        (json.dumps(patient_ids),),
    )
    for r in sorted(rows):  # by id
        found[r[1]].append(StoredSubscription(*r))  # _COLUMNS lists the fields in order
    return found


async def record_outcomes(db: Database, outcomes: list[tuple[int, int | None, bool, bool]], *, now: datetime) -> None:
    """Keep each subscription's last status and delivery; delete the ones the push service says are gone."""
    async with db.transaction() as tx:
        await apply_outcomes(tx, outcomes, now=now)


async def apply_outcomes(tx: Transaction, outcomes: list[tuple[int, int | None, bool, bool]], *, now: datetime) -> None:
    """record_outcomes inside the caller's transaction; outcomes are (id, status, delivered, gone)."""
    gone = {i for i, _, _, is_gone in outcomes if is_gone}
    # One row per subscription, as applying the outcomes in order would leave it: the last
    # status, delivered if any attempt was (a batch may hold two reminders for one phone).
    last: dict[int, tuple[int | None, bool]] = {}
    for i, status, ok, _ in outcomes:
        if i not in gone:
            last[i] = (status, ok or last.get(i, (None, False))[1])
    if gone:
        await tx.execute("DELETE FROM push_subscriptions WHERE id IN (SELECT value FROM json_each(?))",
                         (json.dumps(sorted(gone)),))
    if last:
        await tx.execute(
            "UPDATE push_subscriptions SET last_attempt_at = ?1, last_status = o.value ->> 1,"
            " last_delivered_at = CASE WHEN o.value ->> 2 THEN ?1 ELSE last_delivered_at END"
            " FROM json_each(?2) AS o WHERE push_subscriptions.id = o.value ->> 0",
            (iso(now), json.dumps([(i, status, ok) for i, (status, ok) in last.items()])),
        )
