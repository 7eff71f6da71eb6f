"""Deliver Web Push messages: VAPID keys and headers, aes128gcm encryption, retries.

This module knows nothing about patients or storage: callers hand it
subscriptions and JSON payloads and get back one `PushResult` per message.

Errors, all `ValueError`s raised for input we refuse:

    ValueError
    ├── InvalidSubscription   a subscription a browser could not have produced,
    │                         or an endpoint we will not POST to (has .field)
    └── PayloadTooLarge       a payload over one aes128gcm record (has .size)

Delivery failures are not exceptions: they are `PushResult`s.

A per-origin circuit breaker keeps one dead push service from holding a whole batch:
after `breaker_threshold` consecutive timeouts, connection errors or 5xx answers from an
origin, messages to it fail at once (error `CIRCUIT_OPEN`, no request) for
`breaker_cooldown` seconds, and retries in flight to it stop; then one probe request is
let through, and its success closes the circuit (its failure opens it again).
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import functools
import ipaddress
import json
import logging
import os
import random
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from webpush import WebPush  # type: ignore[import-untyped]
from yarl import URL

__all__ = [
    "CIRCUIT_OPEN",
    "DEFAULT_PUSH_ORIGINS",
    "MAX_PLAINTEXT_BYTES",
    "URGENCIES",
    "Attempt",
    "InvalidSubscription",
    "PayloadTooLarge",
    "PushMessage",
    "PushResult",
    "PushSender",
    "Subscription",
    "VapidKeys",
    "application_server_key",
    "encode_payload",
    "encrypt_payload",
    "endpoint_allowed",
    "load_or_create_vapid_keys",
    "make_client_session",
    "parse_allowed_origins",
    "validate_subject",
    "validate_subscription",
]

logger = logging.getLogger(__name__)

# One aes128gcm record of 4096 bytes: 86-byte header (salt 16, rs 4, idlen 1,
# key 65), 16-byte tag and the 0x02 padding delimiter leave 3993 bytes.
RECORD_SIZE: Final = 4096
MAX_PLAINTEXT_BYTES: Final = RECORD_SIZE - 86 - 16 - 1

URGENCIES: Final = ("very-low", "low", "normal", "high")

DEFAULT_PUSH_ORIGINS: tuple[str, ...] = (
    "https://fcm.googleapis.com",  # Chrome, Edge (non-Windows), Opera, Samsung Internet, Brave
    "https://android.googleapis.com",  # legacy GCM endpoints still held by old Chrome subscriptions
    "https://jmt17.google.com",  # Chromium builds without Google API keys (Linux distributions)
    "https://updates.push.services.mozilla.com",  # Firefox, desktop and Android
    "https://*.push.apple.com",  # Safari on macOS and iOS/iPadOS 16.4+ (web.push.apple.com)
    "https://*.notify.windows.com",  # Edge on Windows (WNS, wns2-*.notify.windows.com)
)

# VAPID tokens: services accept at most 24 h; 12 h leaves room for clock skew.
VAPID_LIFETIME: Final = 12 * 3600
# Re-sign an hour before expiry so a token never expires in flight.
VAPID_REFRESH_MARGIN: Final = 3600

MAX_ENDPOINT_LENGTH: Final = 2048
_ERROR_TEXT_LIMIT: Final = 300
# PushResult.error of a message not sent because its push service's circuit is open.
CIRCUIT_OPEN: Final = "push service unavailable (circuit open)"
# send_many yields to the event loop after this many messages serialised or tasks started.
_BATCH_STEP: Final = 128

# RFC 3986 characters only: anything else (spaces, backslashes, controls) is
# parsed differently by different URL parsers, which is how allow-lists are bypassed.
_URL_CHARS = re.compile(r"[A-Za-z0-9\-._~:/?\[\]@!$&'()*+,;=%]+")
_URL_CHARS_WITH_FRAGMENT = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOSTNAME = re.compile(rf"(?:{_LABEL}\.)*{_LABEL}")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*={0,2}")
_TOPIC = re.compile(r"[A-Za-z0-9_-]{1,32}")
_MAILTO = re.compile(r"mailto:([A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+)@([A-Za-z0-9.-]+)")
_NON_PUBLIC_SUFFIXES = (".localhost", ".local", ".localdomain", ".invalid", ".test", ".internal")
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


class InvalidSubscription(ValueError):
    """A subscription field that no browser would send, or an endpoint we refuse."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class PayloadTooLarge(ValueError):
    """A payload whose serialised plaintext does not fit one aes128gcm record."""

    def __init__(self, size: int) -> None:
        super().__init__(
            f"push payload is {size} bytes of JSON; "
            f"at most {MAX_PLAINTEXT_BYTES} fit one encrypted record"
        )
        self.size = size


# ---------------------------------------------------------------- VAPID keys


@dataclass(frozen=True)
class VapidKeys:
    private_pem: bytes
    public_pem: bytes
    application_server_key: str  # base64url, no padding, uncompressed P-256 point


def application_server_key(public_key: ec.EllipticCurvePublicKey) -> str:
    """Return the base64url uncompressed point the browser's PushManager.subscribe needs."""
    raw = public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return _b64url_encode(raw)


def load_or_create_vapid_keys(data_dir: Path) -> VapidKeys:
    """Load the VAPID key pair from data_dir (vapid_private.pem, vapid_public.pem), creating it on first use; private key file mode 0600."""
    data_dir.mkdir(parents=True, exist_ok=True)
    private_path = data_dir / "vapid_private.pem"
    public_path = data_dir / "vapid_public.pem"
    if not private_path.exists():
        _create_private_key_file(private_path)
    if private_path.stat().st_mode & 0o077:
        # The key signs for every subscription this server ever made: keep it owner-only.
        logger.warning(
            "VAPID private key %s was readable by others; setting mode 0600", private_path
        )
        os.chmod(private_path, 0o600)

    private_pem = private_path.read_bytes()
    private_key = _load_private_key(private_pem, str(private_path))
    public_key = private_key.public_key()
    public_pem = public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if public_path.exists():
        stored = serialization.load_pem_public_key(public_path.read_bytes())
        if (
            not isinstance(stored, ec.EllipticCurvePublicKey)
            or stored.public_numbers() != public_key.public_numbers()
        ):
            # Browsers subscribed with one key; signing with another makes every push fail with 403.
            raise ValueError(
                f"{public_path} does not match {private_path}; restore the pair or delete both"
            )
    else:
        _write_file_atomically(public_path, public_pem, 0o644)
    return VapidKeys(private_pem, public_pem, application_server_key(public_key))


def _create_private_key_file(path: Path) -> None:
    """Write a new P-256 private key to path unless another process got there first."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    _write_new_file(temporary, pem, 0o600)
    try:
        # link() never overwrites: if the web process and the worker start together,
        # both end up with the first key written instead of one key each.
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        temporary.unlink()


def _write_file_atomically(path: Path, data: bytes, mode: int) -> None:
    """Replace path with data so readers never see a half-written file."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    _write_new_file(temporary, data, mode)
    os.replace(temporary, path)


def _write_new_file(path: Path, data: bytes, mode: int) -> None:
    """Create path with mode from the first byte (no window where it is world-readable)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have removed bits we want, e.g. 0644
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _load_private_key(pem: bytes, where: str) -> ec.EllipticCurvePrivateKey:
    """Parse a PEM private key and insist on P-256, the only curve VAPID allows."""
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        # A bad key file is a bad value, and callers catch ValueError for configuration errors.
        raise ValueError(f"{where} is not a P-256 private key")  # noqa: TRY004
    return key


# ------------------------------------------------------ origins and subjects


def parse_allowed_origins(value: str) -> tuple[str, ...]:
    """Parse HOMEWORK_PUSH_ALLOWED_HOSTS: comma-separated origins like https://push.example.net or http://127.0.0.1:9999; raise ValueError with a clear message for a path, a bad scheme, or http on a non-loopback host."""
    origins: dict[str, None] = {}
    for item in value.split(","):
        item = item.strip()
        if item:
            origins[_parse_origin(item)] = None
    return tuple(origins)


def _parse_origin(item: str) -> str:
    """Return the normalised origin of one allow-list entry or raise ValueError saying why not."""
    where = f"HOMEWORK_PUSH_ALLOWED_HOSTS entry {item!r}"
    if not _URL_CHARS_WITH_FRAGMENT.fullmatch(item):
        raise ValueError(f"{where} contains characters not allowed in a URL")
    parts = urlsplit(item)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError(f"{where} must start with https:// (or http:// for a loopback address)")
    if "@" in parts.netloc:
        raise ValueError(f"{where} must not contain user information (user@host)")
    if parts.path not in ("", "/") or parts.query or parts.fragment or "#" in item:
        raise ValueError(f"{where} has a path; give only scheme://host[:port]")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{where} has an invalid port") from None
    host = parts.hostname or ""
    wildcard = host.startswith("*.")
    bare = host[2:] if wildcard else host
    if not (_HOSTNAME.fullmatch(bare) or _is_ip(bare)):
        raise ValueError(f"{where} has no valid host name")
    if scheme == "http":
        if wildcard or not _is_loopback(bare):
            raise ValueError(
                f"{where} uses http on a non-loopback host; push services must use https"
            )
    elif wildcard and _is_ip(bare):
        raise ValueError(f"{where}: a wildcard needs a domain name")
    return _format_origin(scheme, host, port if port is not None else _DEFAULT_PORTS[scheme])


def endpoint_allowed(endpoint: str, extra_origins: Sequence[str]) -> bool:
    """Exact scheme+host+port match against defaults (+ wildcards) and extras; userinfo in the URL is rejected."""
    return _check_endpoint(endpoint, extra_origins)[0] is None


def _check_endpoint(endpoint: str, extra_origins: Sequence[str]) -> tuple[str | None, str]:
    """Return (why we must not POST to endpoint or None, its origin or "" if unparsable)."""
    try:
        scheme, host, port = _split_url(endpoint)
    except ValueError as exc:
        return str(exc), ""
    exact, wildcards = _compile_origins(tuple(extra_origins))
    origin = _format_origin(scheme, host, port)
    if origin in exact:
        return None, origin
    for w_scheme, suffix, w_port in wildcards:
        if (
            scheme == w_scheme
            and port == w_port
            and host.endswith(suffix)
            and len(host) > len(suffix)
        ):
            return None, origin
    if scheme == "http":
        return f"{origin} is not an allowed push service (http only for loopback tests)", origin
    return f"{origin} is not an allowed push service", origin


def endpoint_origin(endpoint: str) -> str:
    """Return scheme://host[:port] of an endpoint, the VAPID audience and our only log of it."""
    return _format_origin(*_split_url(endpoint))


@functools.lru_cache(maxsize=64)
def _compile_origins(
    extra: tuple[str, ...],
) -> tuple[frozenset[str], tuple[tuple[str, str, int], ...]]:
    """Split defaults and extras into exact origins and (scheme, .suffix, port) wildcards."""
    exact: set[str] = set()
    wildcards: list[tuple[str, str, int]] = []
    for entry in DEFAULT_PUSH_ORIGINS + tuple(_parse_origin(e) for e in extra):
        scheme, rest = entry.split("://", 1)
        if rest.startswith("*."):
            host, _, port = rest[1:].partition(":")
            wildcards.append((scheme, host, int(port) if port else _DEFAULT_PORTS[scheme]))
        else:
            exact.add(entry)
    return frozenset(exact), tuple(wildcards)


def _split_url(url: str) -> tuple[str, str, int]:
    """Return (scheme, lower-case host, port) of an http(s) URL or raise ValueError saying why."""
    if len(url) > MAX_ENDPOINT_LENGTH:
        raise ValueError(f"longer than {MAX_ENDPOINT_LENGTH} characters")
    if not _URL_CHARS.fullmatch(url):
        raise ValueError("contains characters not allowed in a push endpoint")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError("must be an https:// URL")
    if "@" in parts.netloc:
        raise ValueError("must not contain user information (user@host)")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("has an invalid port") from None
    host = parts.hostname or ""
    if not (_HOSTNAME.fullmatch(host) or _is_ip(host)):
        raise ValueError("has no valid host name")
    return scheme, host, port if port is not None else _DEFAULT_PORTS[scheme]


def _format_origin(scheme: str, host: str, port: int | None) -> str:
    """Serialise an origin as browsers do: default ports omitted, IPv6 in brackets."""
    shown = f"[{host}]" if ":" in host else host
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{shown}"
    return f"{scheme}://{shown}:{port}"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def validate_subject(subject: str) -> str:
    """Return the subject if it is a mailto: URL with a real-looking address (no spaces, not @localhost) or an https: URL; else raise ValueError with a clear one-line message."""
    hint = "use mailto:you@yourclinic.org or an https:// URL of your site"
    if subject.startswith("mailto:"):
        match = _MAILTO.fullmatch(subject)
        if match is None:
            raise ValueError(f"VAPID subject {subject!r} is not a plain mailto: address; {hint}")
        domain = match.group(2).lower()
        if not _is_public_domain(domain):
            raise ValueError(f"VAPID subject {subject!r} has no public mail domain; {hint}")
        return subject
    if subject.startswith("https://"):
        if not _URL_CHARS_WITH_FRAGMENT.fullmatch(subject):
            raise ValueError(
                f"VAPID subject {subject!r} has spaces or characters not allowed in a URL; {hint}"
            )
        parts = urlsplit(subject)
        if "@" in parts.netloc or not _is_public_domain((parts.hostname or "").lower()):
            raise ValueError(f"VAPID subject {subject!r} needs a public host name; {hint}")
        return subject
    raise ValueError(f"VAPID subject {subject!r} must be a mailto: or https: URL; {hint}")


def _is_public_domain(domain: str) -> bool:
    # Apple answers 403 BadJwtToken for @localhost; a dotted public-looking name is the bar.
    return (
        "." in domain
        and _HOSTNAME.fullmatch(domain) is not None
        and not _is_ip(domain)
        and not domain.endswith(_NON_PUBLIC_SUFFIXES)
    )


# -------------------------------------------------------------- subscriptions


@dataclass(frozen=True)
class Subscription:
    endpoint: str
    p256dh: str
    auth: str


def validate_subscription(
    endpoint: str, p256dh: str, auth: str, allowed_origins: Sequence[str]
) -> None:
    """Raise InvalidSubscription unless p256dh is an uncompressed point ON the P-256 curve (base64url, 65 bytes, 0x04 prefix, verify with cryptography), auth decodes to exactly 16 bytes, and the endpoint is an allowed push origin."""
    problem, _ = _check_endpoint(endpoint, allowed_origins)
    if problem is not None:
        raise InvalidSubscription("endpoint", problem)
    _decode_p256dh(p256dh)
    _decode_auth(auth)


def _decode_p256dh(value: str) -> bytes:
    """Return the raw uncompressed point, checked to lie on P-256."""
    raw = _b64url_field(value, "keys.p256dh")
    if len(raw) != 65 or raw[0] != 0x04:
        raise InvalidSubscription(
            "keys.p256dh", "must be an uncompressed P-256 point (65 bytes starting 0x04)"
        )
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
    except ValueError:
        # An off-curve point is how invalid-curve attacks start; a browser never sends one.
        raise InvalidSubscription("keys.p256dh", "is not a point on the P-256 curve") from None
    return raw


def _decode_auth(value: str) -> bytes:
    raw = _b64url_field(value, "keys.auth")
    if len(raw) != 16:
        raise InvalidSubscription("keys.auth", f"must be 16 bytes, got {len(raw)}")
    return raw


def _b64url_field(value: str, field: str) -> bytes:
    try:
        return _b64url_decode(value)
    except ValueError:
        raise InvalidSubscription(field, "is not base64url") from None


def _b64url_decode(value: str) -> bytes:
    """Decode base64url with or without padding, refusing any other alphabet."""
    if not _BASE64URL.fullmatch(value):
        raise ValueError("not base64url")
    bare = value.rstrip("=")
    if len(bare) % 4 == 1:
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(bare + "=" * (-len(bare) % 4))


def _b64url_encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


# ------------------------------------------------------------------ messages


@dataclass(frozen=True)
class PushMessage:
    subscription: Subscription
    payload: Mapping[str, Any]  # JSON-serialised compactly
    ttl: int  # seconds the push service may hold it; sent on every message
    topic: str | None = None  # a pending message with the same topic is replaced
    urgency: str = "normal"

    def __post_init__(self) -> None:
        if isinstance(self.ttl, bool) or not isinstance(self.ttl, int) or self.ttl < 0:
            raise ValueError(f"ttl must be a non-negative number of seconds, got {self.ttl!r}")
        if self.urgency not in URGENCIES:
            raise ValueError(f"urgency must be one of {', '.join(URGENCIES)}, got {self.urgency!r}")
        if self.topic is not None and not _TOPIC.fullmatch(self.topic):
            raise ValueError(f"topic must be 1-32 base64url characters, got {self.topic!r}")


@dataclass(frozen=True)
class Attempt:
    status: int | None  # None: timeout or connection error
    error: str | None  # short text, never payload or keys
    time: datetime  # UTC, when the answer (or failure) came


@dataclass(frozen=True)
class PushResult:
    delivered: bool  # the push service accepted it (2xx)
    gone: bool  # 404/410 or unusable keys: the caller deletes the subscription
    status: int | None  # last HTTP status, None on timeout/connection error
    attempts: list[Attempt]
    error: str | None  # push service's text for a refusal, "timeout", or why we gave up


def encode_payload(payload: Mapping[str, Any]) -> bytes:
    """Serialise payload as compact UTF-8 JSON; raise PayloadTooLarge if it exceeds one record."""
    # ensure_ascii=False: accented text costs 2 bytes in UTF-8 instead of 6 as \\u escapes.
    data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    if len(data) > MAX_PLAINTEXT_BYTES:
        raise PayloadTooLarge(len(data))
    return data


class _Aes128gcm(WebPush):  # type: ignore[misc]
    """webpush's RFC 8291 encryption without its VAPID half."""

    def __init__(self) -> None:
        # WebPush.__init__ only loads VAPID keys, which encryption does not use, and
        # WebPush.get() signs a fresh JWT per message (half the CPU): call _encrypt alone.
        # Pinned to webpush 1.0.6; the RFC 8291 vector test catches a change.
        self.max_resord_size = RECORD_SIZE


_ENCRYPTOR: Final = _Aes128gcm()


def encrypt_payload(plaintext: bytes, subscription: Subscription) -> bytes:
    """Encrypt plaintext for subscription as one RFC 8291 aes128gcm record, checking keys first."""
    if len(plaintext) > MAX_PLAINTEXT_BYTES:
        raise PayloadTooLarge(len(plaintext))
    # webpush accepts a wrong-length auth secret silently; the browser then fails to decrypt.
    _decode_auth(subscription.auth)
    point = _b64url_field(subscription.p256dh, "keys.p256dh")
    if len(point) != 65 or point[0] != 0x04:
        raise InvalidSubscription("keys.p256dh", "must be an uncompressed P-256 point")
    # _encrypt reads only .keys.auth and .keys.p256dh: a namespace skips two pydantic models.
    target = SimpleNamespace(
        keys=SimpleNamespace(auth=subscription.auth, p256dh=subscription.p256dh)
    )
    try:
        body: bytes = _ENCRYPTOR._encrypt(plaintext, target)
    except ValueError:
        # webpush loads the point with cryptography, which refuses one off the curve.
        raise InvalidSubscription("keys.p256dh", "is not a point on the P-256 curve") from None
    return body


def build_headers(
    message: PushMessage, ttl: int, origin: str, authorization: str
) -> dict[str, str]:
    """Return the request headers for one delivery attempt."""
    headers = {
        "TTL": str(ttl),
        "Content-Encoding": "aes128gcm",
        "Content-Type": "application/octet-stream",
        "Urgency": message.urgency,
        "Authorization": authorization,
    }
    if message.topic is not None:
        headers["Topic"] = message.topic
    if origin.endswith(".notify.windows.com"):
        # WNS answers 400 "Ttl value conflicts with X-WNS-Cache-Policy" unless the two agree.
        headers["X-WNS-Cache-Policy"] = "cache" if ttl > 0 else "no-cache"
    return headers


def make_client_session(
    *, limit_per_host: int = 64, timeout: float = 30.0
) -> aiohttp.ClientSession:
    """Return an aiohttp session suited to PushSender (create it in the running loop, close it)."""
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=limit_per_host, ttl_dns_cache=300)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout))


# -------------------------------------------------------------------- sender


@dataclass
class _Outcome:
    status: int | None
    error: str | None
    retry_after: str | None


class _Breaker:
    """One origin's circuit: closed, open (opened_at within the cool-down) or half-open."""

    __slots__ = ("failures", "opened_at", "probing")

    def __init__(self) -> None:
        self.failures = 0  # consecutive timeouts, connection errors and 5xx answers
        self.opened_at: float | None = None  # None: closed
        self.probing = False  # half-open and the one probe request is out


class PushSender:
    """Send PushMessages with VAPID, bounded concurrency and retries."""

    def __init__(
        self,
        keys: VapidKeys,
        subject: str,
        session: aiohttp.ClientSession,
        *,
        concurrency: int = 64,
        timeout: float = 10.0,
        max_tries: int = 5,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        extra_origins: Sequence[str] = (),
        per_origin_concurrency: int | None = None,
        backoff_base: float = 1.0,
        max_backoff: float = 60.0,
        max_retry_delay: float = 300.0,
        breaker_threshold: int = 5,
        breaker_cooldown: float = 60.0,
    ) -> None:
        if concurrency < 1 or max_tries < 1 or timeout <= 0:
            raise ValueError("concurrency and max_tries must be at least 1 and timeout positive")
        if breaker_threshold < 1 or breaker_cooldown < 0:
            raise ValueError("breaker_threshold must be at least 1 and breaker_cooldown >= 0")
        self._subject = validate_subject(subject)
        self._private_key = _load_private_key(keys.private_pem, "VAPID private key")
        if application_server_key(self._private_key.public_key()) != keys.application_server_key:
            raise ValueError("VAPID application_server_key does not belong to the private key")
        self._server_key = keys.application_server_key
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._max_tries = max_tries
        self._clock = clock
        self._sleep = sleep
        self._extra_origins = tuple(_parse_origin(o) for o in extra_origins)
        self._limit = asyncio.Semaphore(concurrency)
        # Each push origin gets at most half the slots, so a host that hangs until the
        # timeout can never occupy every slot and stall deliveries to the others.
        self._origin_limit_size = per_origin_concurrency or max(1, concurrency // 2)
        self._origin_limits: dict[str, asyncio.Semaphore] = {}
        self._backoff_base = backoff_base
        self._max_backoff = max_backoff
        self._max_retry_delay = max_retry_delay
        self._breaker_threshold = breaker_threshold
        self._breaker_cooldown = breaker_cooldown
        self._breakers: dict[str, _Breaker] = {}
        self._vapid_cache: dict[str, tuple[str, float]] = {}
        self._random = random.Random()
        self.signatures = 0  # VAPID tokens signed so far, for tests and metrics

    async def send(self, message: PushMessage) -> PushResult:
        """Deliver one message, retrying as the service allows; PayloadTooLarge before sending."""
        return await self._deliver(message, encode_payload(message.payload))

    async def send_many(self, messages: Iterable[PushMessage]) -> list[PushResult]:
        """Deliver messages concurrently, results in input order; PayloadTooLarge before sending."""
        # Serialise everything first so an oversized payload (a bug) stops the batch
        # before half of it went out; encryption happens later, inside the bound.
        batch: list[tuple[PushMessage, bytes]] = []
        for message in messages:
            batch.append((message, encode_payload(message.payload)))
            if len(batch) % _BATCH_STEP == 0:
                await asyncio.sleep(0)
        tasks: list[asyncio.Task[PushResult]] = []
        try:
            for message, plaintext in batch:
                tasks.append(asyncio.create_task(self._deliver(message, plaintext)))
                if len(tasks) % _BATCH_STEP == 0:
                    # Each new task runs its first step in the next loop pass; starting
                    # 10,000 at once froze the loop for 0.2 s, so start them in slices.
                    await asyncio.sleep(0)
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            raise

    async def _deliver(self, message: PushMessage, plaintext: bytes) -> PushResult:
        endpoint = message.subscription.endpoint
        problem, origin = _check_endpoint(endpoint, self._extra_origins)
        if problem is not None:
            # Subscriptions are validated when stored; refusing again here keeps a bad row
            # or a narrowed allow-list from turning the sender into a request forger.
            logger.warning("push refused: %s", problem)
            return PushResult(False, False, None, [], f"endpoint not allowed: {problem}")
        started = self._clock()
        deadline = started + message.ttl
        attempts: list[Attempt] = []
        body: bytes | None = None
        origin_limit = self._origin_limits.get(origin)
        if origin_limit is None:
            origin_limit = self._origin_limits[origin] = asyncio.Semaphore(self._origin_limit_size)
        breaker = self._breakers.get(origin)
        if breaker is None:
            breaker = self._breakers[origin] = _Breaker()
        for attempt in range(1, self._max_tries + 1):
            if self._circuit_refuses(breaker):
                # Checked before queueing for a slot and again once we hold one: a message
                # queued behind requests that are timing out must not wait for them.
                return _circuit_open(attempts)
            async with origin_limit, self._limit:
                if self._circuit_refuses(breaker):
                    return _circuit_open(attempts)
                if body is None:
                    try:
                        body = encrypt_payload(plaintext, message.subscription)
                    except InvalidSubscription as exc:
                        # Never deliverable: tell the caller to delete it like a 410.
                        logger.warning(
                            "push to %s: unusable subscription keys (%s)", origin, exc.field
                        )
                        return PushResult(
                            False, True, None, attempts, f"invalid subscription: {exc}"
                        )
                probe = breaker.opened_at is not None  # half-open: this request is the probe
                if probe:
                    breaker.probing = True
                    logger.info("push to %s: cool-down over, sending one probe", origin)
                try:
                    ttl = max(0, message.ttl - int(self._clock() - started))
                    outcome = await self._post(
                        endpoint, body, build_headers(message, ttl, origin, self._vapid(origin))
                    )
                    self._record(origin, breaker, outcome.status)
                finally:
                    if probe:
                        breaker.probing = False  # also when cancelled: let another probe go
            attempts.append(
                Attempt(outcome.status, outcome.error, datetime.fromtimestamp(self._clock(), UTC))
            )
            status = outcome.status

            if status is not None and 200 <= status < 300:
                logger.debug("push to %s delivered: %s", origin, status)
                return PushResult(True, False, status, attempts, None)
            if status in (404, 410):
                logger.info("push to %s: subscription gone (%s)", origin, status)
                return PushResult(False, True, status, attempts, outcome.error)
            if status == 413:
                # We size-check before encrypting: our bug, or a service with a lower limit.
                logger.error("push to %s refused as too large (413): %s", origin, outcome.error)
                return PushResult(False, False, status, attempts, outcome.error)
            if status is not None and status != 429 and status < 500:
                logger.warning("push to %s refused (%s): %s", origin, status, outcome.error)
                return PushResult(False, False, status, attempts, outcome.error)

            # 429, 5xx, timeout or connection error: worth another try.
            if attempt == self._max_tries:
                break
            if self._circuit_refuses(breaker):
                return _circuit_open(attempts)  # the origin is down: do not wait to retry
            delay = self._retry_delay(attempt, outcome.retry_after)
            if delay > self._max_retry_delay:
                logger.warning(
                    "push to %s: retry asked in %.0f s, giving up for now", origin, delay
                )
                break
            if self._clock() + delay > deadline:
                break  # the message would have expired anyway
            logger.info(
                "push to %s failed (%s), retry %d in %.1f s",
                origin,
                status or outcome.error,
                attempt,
                delay,
            )
            await self._sleep(delay)  # outside both semaphores: a waiting retry holds no slot

        logger.warning(
            "push to %s not delivered after %d tries: %s",
            origin,
            len(attempts),
            status or outcome.error,
        )
        return PushResult(False, False, status, attempts, outcome.error)

    async def _post(self, endpoint: str, body: bytes, headers: dict[str, str]) -> _Outcome:
        try:
            async with self._session.post(
                URL(endpoint, encoded=True),  # send the path exactly as the browser gave it
                data=body,
                headers=headers,
                timeout=self._timeout,
                # A redirect would re-post the payload to a host we never vetted.
                allow_redirects=False,
            ) as response:
                # Read the (small) body even on success so the connection goes back to the pool.
                text = (await response.read()).decode("utf-8", "replace")
                status = response.status
                if status >= 300:
                    # WNS puts its reason in a header and sends an empty body.
                    text = (
                        text.strip()
                        or response.headers.get("X-WNS-Error-Description", "")
                        or f"HTTP {status}"
                    )
                    return _Outcome(status, _short(text), response.headers.get("Retry-After"))
                return _Outcome(status, None, None)
        except TimeoutError:
            return _Outcome(None, "timeout", None)
        except aiohttp.ClientError as exc:
            # The type and OS reason only: some aiohttp errors embed the full URL,
            # and the endpoint path is a bearer secret.
            reason = getattr(exc, "strerror", None)
            return _Outcome(None, type(exc).__name__ + (f": {reason}" if reason else ""), None)

    def _circuit_refuses(self, breaker: _Breaker) -> bool:
        """True while the origin's circuit is open, or half-open with its probe out."""
        if breaker.opened_at is None:
            return False
        now = self._clock()
        # A clock set back (now < opened_at) ends the cool-down rather than stretching it.
        if breaker.opened_at <= now < breaker.opened_at + self._breaker_cooldown:
            return True
        return breaker.probing

    def _record(self, origin: str, breaker: _Breaker, status: int | None) -> None:
        """Count a timeout, connection error or 5xx against origin; any other answer resets."""
        if status is not None and status < 500:
            # The host answered (even 4xx or 429 shows it is up): close the circuit.
            if breaker.opened_at is not None:
                logger.warning("push to %s: service answered again, circuit closed", origin)
            breaker.failures = 0
            breaker.opened_at = None
            return
        breaker.failures += 1
        if breaker.failures < self._breaker_threshold:
            return
        now = self._clock()
        if breaker.opened_at is not None and breaker.opened_at <= now < (
            breaker.opened_at + self._breaker_cooldown
        ):
            return  # already open: late failures of earlier requests do not extend it
        breaker.opened_at = now
        logger.warning(
            "push to %s: %d failures in a row (%s), circuit open for %.0f s",
            origin,
            breaker.failures,
            status or "no answer",
            self._breaker_cooldown,
        )

    def _retry_delay(self, attempt: int, retry_after: str | None) -> float:
        """Return the wait before the next try: jittered exponential backoff, >= Retry-After."""
        backoff = min(self._max_backoff, self._backoff_base * 2.0 ** (attempt - 1))
        # Equal jitter: spreads a burst of retries while keeping the exponential floor.
        delay = backoff * (0.5 + self._random.random() / 2)
        asked = _parse_retry_after(retry_after, self._clock()) if retry_after else None
        return max(delay, asked) if asked is not None else delay

    def _vapid(self, origin: str) -> str:
        """Return the Authorization header for origin, signing a new token only near expiry."""
        now = self._clock()
        cached = self._vapid_cache.get(origin)
        if cached is not None and now < cached[1]:
            return cached[0]
        expires = int(now) + VAPID_LIFETIME
        # Signed here, not by webpush: webpush drops a non-default port from aud and
        # signs per message; aud must be the full origin.
        token = jwt.encode(
            {"aud": origin, "exp": expires, "sub": self._subject},
            self._private_key,
            algorithm="ES256",
        )
        header = f"vapid t={token}, k={self._server_key}"
        self._vapid_cache[origin] = (header, expires - VAPID_REFRESH_MARGIN)
        self.signatures += 1
        return header


def _circuit_open(attempts: list[Attempt]) -> PushResult:
    """The result of a message not (or no longer) sent because its origin's circuit is open."""
    return PushResult(False, False, None, attempts, CIRCUIT_OPEN)


def _parse_retry_after(value: str, now: float) -> float | None:
    """Return Retry-After (delay-seconds or HTTP-date) as seconds from now, None if unreadable."""
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def _short(text: str) -> str:
    """Collapse whitespace and cut a service's error text to a loggable length."""
    text = " ".join(text.split())
    return text if len(text) <= _ERROR_TEXT_LIMIT else text[: _ERROR_TEXT_LIMIT - 1] + "…"
