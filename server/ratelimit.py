"""Failure counters for rate limits, kept in the database so every server process shares them."""

from __future__ import annotations

from datetime import datetime, timedelta

from .clock import iso, parse_iso
from .db import Database
from .errors import TooManyRequests


async def check(db: Database, key: str, *, limit: int, window: timedelta, now: datetime) -> None:
    """Raise TooManyRequests when key has had `limit` failures within the window."""
    rows = await db.fetchall(
        "SELECT at FROM rate_events WHERE key = ? AND at > ? ORDER BY at LIMIT ?",
        (key, iso(now - window), limit),
    )
    if len(rows) >= limit:
        retry = parse_iso(rows[0]["at"]) + window - now
        raise TooManyRequests(
            "Too many failed attempts. Please wait and try again.",
            retry_after=int(retry.total_seconds()) + 1,
        )


async def record_failure(db: Database, key: str, *, window: timedelta, now: datetime) -> None:
    async with db.transaction() as tx:
        await tx.execute("DELETE FROM rate_events WHERE key = ? AND at <= ?", (key, iso(now - window)))
        await tx.execute("INSERT INTO rate_events (key, at) VALUES (?, ?)", (key, iso(now)))


async def clear(db: Database, key: str) -> None:
    await db.execute("DELETE FROM rate_events WHERE key = ?", (key,))
