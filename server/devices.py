"""Patients' devices: joining with an invite, the device cookie behind it, and revoking it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson

from . import invites, ratelimit
from .clock import iso, parse_iso
from .db import Database, Row, Transaction, batch_keys
from .errors import NotFound
from .security import new_token, token_hash

COOKIE = "hw_device"
COOKIE_MAX_AGE = 400 * 24 * 3600  # the longest browsers keep a cookie
CODE_LIMIT = 10
CODE_WINDOW = timedelta(minutes=15)
# Writing last_seen on every request would make every read a write.
SEEN_PRECISION = timedelta(hours=1)


@dataclass(frozen=True)
class Device:
    id: int
    label: str
    created_at: str
    last_seen_at: str
    revoked_at: str | None
    reminders: bool = False  # has a push subscription
    last_delivered_at: str | None = None  # last reminder a push service accepted for it

    def public(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class Me:
    """The patient behind a device cookie."""

    device_id: int
    patient_id: int
    name: str
    timezone: str
    joined_at: str | None
    practitioner_id: int


def label_for(user_agent: str) -> str:
    """A short, coarse device label ("iPhone · Safari"); the full user agent is not kept."""
    ua = user_agent or ""
    system = next((name for pattern, name in (
        (r"iPhone", "iPhone"), (r"iPad", "iPad"), (r"Android", "Android"), (r"Windows", "Windows"),
        (r"Mac OS X|Macintosh", "Mac"), (r"CrOS", "ChromeOS"), (r"Linux", "Linux"),
    ) if re.search(pattern, ua)), "Unknown device")
    browser = next((name for pattern, name in (
        (r"Edg/", "Edge"), (r"Firefox/|FxiOS", "Firefox"), (r"Chrome/|CriOS", "Chrome"), (r"Safari/", "Safari"),
    ) if re.search(pattern, ua)), "browser")
    return f"{system} · {browser}"


async def join(
    db: Database, *, token: str | None = None, code: str | None = None, label: str, secret_key: str, now: datetime
) -> tuple[int, str] | None:
    """Redeem an invite and register this device in one transaction; return (patient id, device token)."""
    device_token = new_token()
    async with db.transaction() as tx:
        patient_id = await invites.consume(tx, token=token, code=code, secret_key=secret_key, now=now)
        if patient_id is None:
            return None
        await tx.execute(
            "INSERT INTO devices (patient_id, token_hash, label, created_at, last_seen_at) VALUES (?, ?, ?, ?, ?)",
            (patient_id, token_hash(device_token), label[:80], iso(now), iso(now)),
        )
        await tx.execute("UPDATE patients SET joined_at = ? WHERE id = ? AND joined_at IS NULL", (iso(now), patient_id))
    return patient_id, device_token


async def join_with_code(db: Database, *, code: str, client: str, label: str, secret_key: str, now: datetime) -> tuple[int, str] | None:
    """Join with a typed code, under a per-client limit on wrong codes."""
    key = "join:" + client
    await ratelimit.check(db, key, limit=CODE_LIMIT, window=CODE_WINDOW, now=now)
    joined = await join(db, code=code, label=label, secret_key=secret_key, now=now)
    if joined is None:
        await ratelimit.record_failure(db, key, window=CODE_WINDOW, now=now)
    return joined


# Who a device token belongs to, as SQL other modules can join more onto (see completions.today_for_device).
AUTH_FIELDS = {  # name: SQL expression
    "device_id": "d.id",
    "last_seen_at": "d.last_seen_at",
    "patient_id": "p.id",
    "name": "p.name",
    "timezone": "p.timezone",
    "joined_at": "p.joined_at",
    "practitioner_id": "p.practitioner_id",
}
AUTH_FROM = "devices d JOIN patients p ON p.id = d.patient_id"
AUTH_LIVE = "d.revoked_at IS NULL AND p.archived = 0"


def _auth_for_tokens(n: int) -> str:
    return (
        f"SELECT json_group_array(json_array(hex(d.token_hash), {', '.join(AUTH_FIELDS.values())}))"
        f" FROM {AUTH_FROM} WHERE d.token_hash IN ({batch_keys(n)}) AND {AUTH_LIVE}"
    )


def _auth_by_token(rows: list[Row]) -> dict[bytes, dict[str, Any]]:
    return {bytes.fromhex(values[0]): dict(zip(AUTH_FIELDS, values[1:])) for values in orjson.loads(rows[0][0])}


async def authenticate(db: Database, token: str, *, now: datetime) -> Me | None:
    """The patient behind a device token, if the device is not revoked and the patient not archived.

    Concurrent requests are authenticated in one read (db.Batched), one JSON row for all.
    """
    row = await db.batched(_auth_for_tokens, _auth_by_token).fetch((), token_hash(token))
    return None if row is None else await seen(db, row, now=now)


async def seen(db: Database, row: Mapping[str, Any], *, now: datetime) -> Me:
    """The Me of a row of AUTH_FIELDS, noting (at most hourly) that the device was seen.

    The notes of concurrent requests go in one transaction (db.Grouped): a phone opening the
    app fires several requests at once, and a benchmark's 400 devices, all an hour stale,
    had each request in flight queue a transaction of its own for the writer (bench/README.md).
    """
    if now - parse_iso(row["last_seen_at"]) >= SEEN_PRECISION:
        await db.grouped(_note_seen).submit((row["device_id"], iso(now)))
    return Me(row["device_id"], row["patient_id"], row["name"], row["timezone"], row["joined_at"], row["practitioner_id"])


async def _note_seen(tx: Transaction, notes: list[tuple[int, str]]) -> list[None]:
    """Note each (device id, time) in notes as the device's last_seen_at, never back in time."""
    await tx.executemany("UPDATE devices SET last_seen_at = ?2 WHERE id = ?1 AND last_seen_at < ?2", notes)
    return [None] * len(notes)


async def list_for_patient(db: Database, patient_id: int) -> list[Device]:
    rows = await db.fetchall(
        "SELECT d.id, d.label, d.created_at, d.last_seen_at, d.revoked_at, count(s.id) > 0 AS reminders,"
        " max(s.last_delivered_at) AS last_delivered_at FROM devices d"
        " LEFT JOIN push_subscriptions s ON s.device_id = d.id WHERE d.patient_id = ?"
        " GROUP BY d.id ORDER BY d.revoked_at IS NOT NULL, d.last_seen_at DESC",
        (patient_id,),
    )
    return [Device(**{**dict(r), "reminders": bool(r["reminders"])}) for r in rows]


async def revoke(db: Database, patient_id: int, device_id: int, *, now: datetime) -> None:
    """Revoke one device of the patient; its cookie stops working at once."""
    changed = await db.execute(
        "UPDATE devices SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ? AND patient_id = ?",
        (iso(now), device_id, patient_id),
    )
    if not changed:
        raise NotFound("No such device.")
