"""Invites: how a patient's phone gets in, by a link (or its QR code) or a short code."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import segno

from .clock import iso
from .db import Database, Transaction
from .security import code_hash, new_code, new_token, token_hash

LIFETIME = timedelta(days=7)


@dataclass(frozen=True)
class Invite:
    url: str
    code: str
    expires_at: str

    def public(self) -> dict[str, object]:
        return {"url": self.url, "code": self.code, "expires_at": self.expires_at}

    @property
    def code_display(self) -> str:
        return f"{self.code[:4]}-{self.code[4:]}"

    def qr_svg(self) -> str:
        """The link as an SVG QR code, scannable by any phone camera."""
        return segno.make(self.url, error="m").svg_inline(scale=5, dark="#111827", light="#ffffff", border=2)


async def create(db: Database, patient_id: int, *, base_url: str, secret_key: str, now: datetime) -> Invite:
    """Make a new invite; the token and code are returned once and stored only as hashes."""
    token = new_token()
    while True:
        code = new_code()
        async with db.transaction() as tx:
            # A code collision is astronomically rare, but a UNIQUE failure must not become a 500.
            if await tx.fetchone("SELECT 1 FROM invites WHERE code_hash = ?", (code_hash(code, secret_key),)):
                continue
            expires_at = iso(now + LIFETIME)
            await tx.execute(
                "INSERT INTO invites (patient_id, token_hash, code_hash, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
                (patient_id, token_hash(token), code_hash(code, secret_key), iso(now), expires_at),
            )
        return Invite(url=f"{base_url}/join/{token}", code=code, expires_at=expires_at)


async def redeem(db: Database, *, token: str | None = None, code: str | None = None, secret_key: str, now: datetime) -> int | None:
    """Use up a valid invite by link token or code and return its patient id; None when invalid, used or expired."""
    async with db.transaction() as tx:
        return await consume(tx, token=token, code=code, secret_key=secret_key, now=now)


async def consume(tx: Transaction, *, token: str | None, code: str | None, secret_key: str, now: datetime) -> int | None:
    """Mark the invite used inside the caller's transaction (so joining is all or nothing)."""
    if token is not None:
        column, value = "token_hash", token_hash(token)
    elif code is not None:
        column, value = "code_hash", code_hash(code, secret_key)
    else:
        return None
    row = await tx.fetchone(
        f"SELECT i.id, i.patient_id FROM invites i JOIN patients p ON p.id = i.patient_id"
        f" WHERE i.{column} = ? AND i.used_at IS NULL AND i.expires_at > ? AND p.archived = 0",
        (value, iso(now)),
    )
    if row is None:
        return None
    await tx.execute("UPDATE invites SET used_at = ? WHERE id = ?", (iso(now), row["id"]))
    return int(row["patient_id"])
