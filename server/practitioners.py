"""Practitioner accounts, their browser sessions and their API tokens."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from . import ratelimit
from .clock import iso
from .db import Database
from .errors import Conflict, Unauthorized
from .security import hash_password, new_token, token_hash, verify_password

LOGIN_LIMIT = 5
LOGIN_WINDOW = timedelta(minutes=15)
SESSION_LIFETIME = timedelta(days=14)


@dataclass(frozen=True)
class Practitioner:
    id: int
    email: str
    name: str

    def public(self) -> dict[str, object]:
        return {"id": self.id, "email": self.email, "name": self.name}


def _practitioner(row: object) -> Practitioner:
    return Practitioner(id=row["id"], email=row["email"], name=row["name"])  # type: ignore[index]


async def create(db: Database, *, email: str, name: str, password: str, now: datetime) -> Practitioner:
    """Create an account; the email must be new."""
    password_hash = await hash_password(password)
    async with db.transaction() as tx:
        if await tx.fetchone("SELECT 1 FROM practitioners WHERE email = ?", (email,)):
            raise Conflict("An account with this email already exists.", {"email": "already registered"})
        row = await tx.fetchone(
            "INSERT INTO practitioners (email, name, password_hash, created_at) VALUES (?, ?, ?, ?)"
            " RETURNING id, email, name",
            (email, name, password_hash, iso(now)),
        )
    return _practitioner(row)


async def authenticate(db: Database, *, email: str, password: str, now: datetime) -> Practitioner:
    """Check credentials under the per-email rate limit; raise Unauthorized or TooManyRequests."""
    key = "login:" + email.lower()
    await ratelimit.check(db, key, limit=LOGIN_LIMIT, window=LOGIN_WINDOW, now=now)
    row = await db.fetchone("SELECT id, email, name, password_hash FROM practitioners WHERE email = ?", (email,))
    if not await verify_password(row["password_hash"] if row else None, password):
        await ratelimit.record_failure(db, key, window=LOGIN_WINDOW, now=now)
        raise Unauthorized("Wrong email or password.")
    await ratelimit.clear(db, key)
    return _practitioner(row)


async def start_session(db: Database, practitioner: Practitioner, *, now: datetime) -> str:
    """Create a browser session and return its token (stored only as a hash)."""
    token = new_token()
    await db.execute(
        "INSERT INTO practitioner_sessions (practitioner_id, token_hash, created_at, expires_at) VALUES (?, ?, ?, ?)",
        (practitioner.id, token_hash(token), iso(now), iso(now + SESSION_LIFETIME)),
    )
    return token


async def by_session(db: Database, token: str, *, now: datetime) -> Practitioner | None:
    row = await db.fetchone(
        "SELECT p.id, p.email, p.name FROM practitioner_sessions s JOIN practitioners p ON p.id = s.practitioner_id"
        " WHERE s.token_hash = ? AND s.expires_at > ?",
        (token_hash(token), iso(now)),
    )
    return _practitioner(row) if row else None


async def end_session(db: Database, token: str) -> None:
    await db.execute("DELETE FROM practitioner_sessions WHERE token_hash = ?", (token_hash(token),))


async def create_api_token(db: Database, practitioner: Practitioner, *, label: str, now: datetime) -> tuple[int, str]:
    """Create an API token; the token itself is returned once and never stored."""
    token = new_token()
    row = await db.write_fetchone(
        "INSERT INTO api_tokens (practitioner_id, label, token_hash, created_at) VALUES (?, ?, ?, ?) RETURNING id",
        (practitioner.id, label, token_hash(token), iso(now)),
    )
    assert row is not None
    return row["id"], token


async def by_api_token(db: Database, token: str) -> Practitioner | None:
    row = await db.fetchone(
        "SELECT p.id, p.email, p.name FROM api_tokens t JOIN practitioners p ON p.id = t.practitioner_id"
        " WHERE t.token_hash = ?",
        (token_hash(token),),
    )
    return _practitioner(row) if row else None
