"""Passwords, random tokens, signed cookies and cross-site request protection."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable
from urllib.parse import urlsplit

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from itsdangerous import Signer
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import AppError, Forbidden

_hasher = PasswordHasher()  # argon2id with the library's current recommended cost
# Verified against when the email is unknown, so both cases take the same time.
_DUMMY_HASH = _hasher.hash("not a real password")

# No 0/O, 1/I/L: a code read aloud or typed from a card should not be mistyped.
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 8


async def hash_password(password: str) -> str:
    """Hash with Argon2id off the event loop (it costs tens of milliseconds on purpose)."""
    return await run_in_threadpool(_hasher.hash, password)


async def verify_password(password_hash: str | None, password: str) -> bool:
    def verify() -> bool:
        try:
            return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
        except (VerificationError, InvalidHashError):
            return False

    return await run_in_threadpool(verify)


def new_token() -> str:
    """A 256-bit random token for links, cookies and API access."""
    return secrets.token_urlsafe(32)


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalize_code(text: str) -> str:
    """Accept a code as typed: any case, spaces or dashes."""
    return "".join(ch for ch in text.upper() if ch.isalnum())


def token_hash(token: str) -> bytes:
    """Hash a high-entropy token for storage; a fast hash is enough for 256 random bits."""
    return hashlib.sha256(token.encode()).digest()


def code_hash(code: str, secret_key: str) -> bytes:
    # Keyed: an 8-character code has only ~40 bits, so a leaked table must not be enough to brute-force it.
    return hmac.new(secret_key.encode(), normalize_code(code).encode(), hashlib.sha256).digest()


class CookieSigner:
    """Sign cookie values so a tampered cookie is rejected before any database lookup.

    The signatures are itsdangerous's (Signer(secret_key, salt=purpose): HMAC-SHA1 under a
    key derived from both), so cookies already out there keep working. Checking one is on
    every patient request: the key is derived once and the HMAC is OpenSSL's one-shot
    digest, not a Python-level HMAC object per cookie.
    """

    def __init__(self, secret_key: str, purpose: str) -> None:
        self._signer = Signer(secret_key, salt=purpose)
        self._key = self._signer.derive_key()

    def sign(self, value: str) -> str:
        return self._signer.sign(value).decode()

    def unsign(self, signed: str | None) -> str | None:
        value, dot, signature = (signed or "").rpartition(".")
        if not dot:
            return None
        expected = base64.urlsafe_b64encode(hmac.digest(self._key, value.encode(), "sha1")).rstrip(b"=")
        return value if hmac.compare_digest(expected, signature.encode()) else None


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class CrossOriginProtection:
    """Refuse unsafe cross-site requests, as Go's net/http CrossOriginProtection does.

    Browsers send Sec-Fetch-Site on every request; "same-origin" and "none" (typed or
    bookmarked) pass. Older browsers send only Origin, which must then be our own.
    Requests carrying neither are not from a browser and cannot ride on its cookies.
    Bearer-token requests carry no ambient credentials and are exempt.
    """

    def __init__(self, app: ASGIApp, origin: str, reject: Callable[[Scope, AppError], ASGIApp]) -> None:
        self.app = app
        self.origin = origin.lower()
        self.reject = reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in SAFE_METHODS:
            headers = {k: v for k, v in scope["headers"] if k in (b"sec-fetch-site", b"origin", b"authorization")}
            if not self.allowed(headers):
                response = self.reject(scope, Forbidden("Cross-site request refused."))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def allowed(self, headers: dict[bytes, bytes]) -> bool:
        auth = headers.get(b"authorization", b"")
        if auth[:7].lower() == b"bearer ":
            return True
        site = headers.get(b"sec-fetch-site")
        if site is not None:
            return site in (b"same-origin", b"none")
        origin = headers.get(b"origin")
        if origin is None:
            return True
        return origin.decode("latin-1").lower() == self.origin


def same_origin(url: str, origin: str) -> bool:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower() == origin.lower()
