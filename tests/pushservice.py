"""A Web Push service for tests that checks requests the way a real one does.

In tests:

    with running_push_service() as service:
        subscription, private_key, auth = service.new_subscriber()
        ...  # send to subscription.endpoint, then look at service.messages

As a separate process (for benchmarks), printing "READY <origin>" once listening:

    python -m tests.pushservice --port 0 [--no-decrypt] [--expected-key KEY]

Every POST /push/<id> is checked in this order, answering like FCM/autopush:
404 unknown subscriber; 401 missing or malformed `Authorization: vapid t=..., k=...`;
403 bad ES256 signature, wrong `aud` (exact origin with port), `exp` past or more
than 24 h ahead, `sub` not mailto:/https:, or `k` not the expected key; 400 missing
or non-integer TTL, Content-Encoding other than aes128gcm, bad Urgency or Topic;
413 body over 4096 bytes; then any scripted answer; 400 if decryption fails;
otherwise 201 with Location. Admin routes (benchmark only): POST /_admin/subscribers
{"count": N}, GET /_admin/stats, POST /_admin/reset.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import json
import os
import re
import secrets
import socket
import struct
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import http_ece  # type: ignore[import-untyped]
import uvicorn
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from server.push import Subscription

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_BODY = 4096
MAX_EXP_AHEAD = 24 * 3600
URGENCIES = {"very-low", "low", "normal", "high"}
_TOPIC = re.compile(r"[A-Za-z0-9_-]{1,32}")
_VAPID = re.compile(r"vapid\s+(.*)", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class Received:
    """One accepted message as the service stored it."""

    subscriber_id: str
    endpoint: str
    payload: Any  # decoded JSON; None when decryption is off or the plaintext is not JSON
    plaintext: bytes | None
    body: bytes
    ttl: int
    urgency: str | None
    topic: str | None
    authorization: str
    claims: dict[str, Any]
    time: float


@dataclass
class Script:
    """A scripted answer for the next `times` requests to one subscriber (None: every request)."""

    status: int | None  # None: answer normally (after any delay)
    times: int | None = None
    delay: float = 0.0  # seconds to sit on the request before answering ("hang")
    headers: dict[str, str] = field(default_factory=dict)
    text: str = ""


@dataclass
class _Subscriber:
    id: str
    endpoint: str
    private_key: ec.EllipticCurvePrivateKey
    auth: bytes
    subscription: Subscription
    application_server_key: str | None
    pending: dict[str, Received] = field(default_factory=dict)
    requests: int = 0
    scripts: collections.deque[Script] = field(default_factory=collections.deque)


class _Refusal(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


class PushService:
    """An ASGI push service that verifies, decrypts and records what it receives."""

    def __init__(
        self, origin: str = "", *, decrypt: bool = True, expected_key: str | None = None
    ) -> None:
        self.origin = origin  # set once the socket is bound: aud must match it exactly
        self.decrypt = decrypt
        self.expected_key = expected_key
        self.requests = 0  # every POST to /push/...
        self.accepted = 0
        self.statuses: collections.Counter[int] = collections.Counter()
        self.messages: list[Received] = []
        self.first_accept: float | None = None
        self.last_accept: float | None = None
        self._subscribers: dict[str, _Subscriber] = {}
        self._keys: dict[str, ec.EllipticCurvePublicKey] = {}
        self._lock = threading.Lock()
        self._sequence = 0

    # ---------------------------------------------------------- for tests

    def new_subscriber(
        self, *, application_server_key: str | None = None
    ) -> tuple[Subscription, ec.EllipticCurvePrivateKey, bytes]:
        """Subscribe like a browser: a fresh P-256 key pair and 16 random auth bytes."""
        private_key = ec.generate_private_key(ec.SECP256R1())
        auth = os.urandom(16)
        return (
            self.add_subscriber(private_key, auth, application_server_key=application_server_key),
            private_key,
            auth,
        )

    def add_subscriber(
        self,
        private_key: ec.EllipticCurvePrivateKey,
        auth: bytes,
        *,
        application_server_key: str | None = None,
    ) -> Subscription:
        """Register a subscriber with given keys (the RFC 8291 vector's, for instance)."""
        subscriber_id = secrets.token_urlsafe(24)
        endpoint = f"{self.origin}/push/{subscriber_id}"
        point = private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        subscription = Subscription(endpoint, _b64(point), _b64(auth))
        with self._lock:
            self._subscribers[subscriber_id] = _Subscriber(
                subscriber_id, endpoint, private_key, auth, subscription, application_server_key
            )
        return subscription

    def script(self, endpoint: str, script: Script) -> None:
        """Queue a scripted answer for requests to endpoint."""
        with self._lock:
            self._subscriber_for(endpoint).scripts.append(script)

    def respond(
        self,
        endpoint: str,
        status: int,
        *,
        times: int | None = None,
        text: str = "",
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer status to the next `times` requests (every request when None)."""
        self.script(endpoint, Script(status, times, 0.0, dict(headers or {}), text))

    def gone(self, endpoint: str, status: int = 410) -> None:
        """Answer 410 from now on, as for an unsubscribed browser."""
        self.respond(endpoint, status, text="subscription expired")

    def throttle(self, endpoint: str, retry_after: str, *, times: int = 1) -> None:
        """Answer 429 with Retry-After for the next `times` requests."""
        self.respond(
            endpoint,
            429,
            times=times,
            text="too many requests",
            headers={"Retry-After": retry_after},
        )

    def fail(self, endpoint: str, *, times: int = 1, status: int = 500) -> None:
        """Answer a server error for the next `times` requests."""
        self.respond(endpoint, status, times=times, text="internal error")

    def hang(self, endpoint: str, seconds: float = 3600.0, *, times: int | None = None) -> None:
        """Sit on the next `times` requests for `seconds` (or until the client gives up)."""
        self.script(endpoint, Script(None, times, seconds))

    def received(self, endpoint: str) -> list[Received]:
        """Return every message accepted for endpoint, oldest first."""
        with self._lock:
            return [m for m in self.messages if m.endpoint == endpoint]

    def pending(self, endpoint: str) -> list[Received]:
        """Return what the device would see on coming online: one message per topic."""
        with self._lock:
            return list(self._subscriber_for(endpoint).pending.values())

    def requests_for(self, endpoint: str) -> int:
        """Return how many requests reached endpoint, whatever the answer."""
        with self._lock:
            return self._subscriber_for(endpoint).requests

    def stats(self) -> dict[str, Any]:
        """Return the counters as JSON-ready values."""
        with self._lock:
            return {
                "requests": self.requests,
                "accepted": self.accepted,
                "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
                "first_accept": self.first_accept,
                "last_accept": self.last_accept,
            }

    def reset(self) -> None:
        """Zero the counters and forget received messages (subscribers stay)."""
        with self._lock:
            self.requests = self.accepted = 0
            self.statuses.clear()
            self.messages.clear()
            self.first_accept = self.last_accept = None
            for subscriber in self._subscribers.values():
                subscriber.pending.clear()
                subscriber.requests = 0

    def _subscriber_for(self, endpoint: str) -> _Subscriber:
        return self._subscribers[endpoint.rsplit("/", 1)[-1]]

    # --------------------------------------------------------------- ASGI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        method: str = scope["method"]
        if method == "POST" and path.startswith("/push/"):
            await self._push(scope, receive, send, path[len("/push/") :])
        elif method == "POST" and path == "/_admin/subscribers":
            body = await _read_body(receive, 1 << 20)
            count = int(json.loads(body or b"{}").get("count", 1))
            subscriptions = [self.new_subscriber()[0] for _ in range(count)]
            await _answer(
                send, 200, json.dumps([s.__dict__ for s in subscriptions]), "application/json"
            )
        elif method == "GET" and path == "/_admin/stats":
            await _answer(send, 200, json.dumps(self.stats()), "application/json")
        elif method == "POST" and path == "/_admin/reset":
            self.reset()
            await _answer(send, 204, "")
        else:
            await _answer(send, 404, "not found")

    async def _push(self, scope: Scope, receive: Receive, send: Send, subscriber_id: str) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        body = await _read_body(receive, MAX_BODY + 1)
        received_at = time.time()
        with self._lock:
            self.requests += 1
            subscriber = self._subscribers.get(subscriber_id)
            if subscriber is not None:
                subscriber.requests += 1
        try:
            if subscriber is None:
                raise _Refusal(404, "no such subscription")
            claims = self._check_authorization(headers.get("authorization"), subscriber)
            ttl = self._check_headers(headers)
            if len(body) > MAX_BODY:
                raise _Refusal(413, f"payload of {len(body)} bytes exceeds {MAX_BODY}")
            script = self._next_script(subscriber)
            if script is not None and script.delay and await _client_left(receive, script.delay):
                self._count(0)  # the client gave up: nothing to answer
                return
            if script is not None and script.status is not None:
                self._count(script.status)
                await _answer(send, script.status, script.text, extra=script.headers)
                return
            plaintext, payload = self._open(body, subscriber)
        except _Refusal as refusal:
            self._count(refusal.status)
            await _answer(send, refusal.status, refusal.text)
            return

        message = Received(
            subscriber.id,
            subscriber.endpoint,
            payload,
            plaintext,
            body,
            ttl,
            headers.get("urgency"),
            headers.get("topic"),
            headers["authorization"],
            claims,
            received_at,
        )
        with self._lock:
            self._sequence += 1
            self.messages.append(message)
            # A pending message with the same topic is replaced, not queued twice.
            key = message.topic if message.topic is not None else f"#{self._sequence}"
            subscriber.pending.pop(key, None)
            subscriber.pending[key] = message
            self.accepted += 1
            self.statuses[201] += 1
            self.first_accept = self.first_accept or received_at
            self.last_accept = time.time()
        await _answer(send, 201, "", extra={"Location": f"{self.origin}/message/{self._sequence}"})

    def _count(self, status: int) -> None:
        with self._lock:
            self.statuses[status] += 1

    def _next_script(self, subscriber: _Subscriber) -> Script | None:
        with self._lock:
            if not subscriber.scripts:
                return None
            script = subscriber.scripts[0]
            if script.times is not None:
                script.times -= 1
                if script.times <= 0:
                    subscriber.scripts.popleft()
            return script

    def _check_authorization(self, value: str | None, subscriber: _Subscriber) -> dict[str, Any]:
        """Verify the VAPID header (RFC 8292) and return the JWT claims."""
        match = _VAPID.fullmatch(value or "")
        if match is None:
            raise _Refusal(401, "missing vapid authorization")
        params = {}
        for part in match.group(1).split(","):
            name, sep, item = part.strip().partition("=")
            if sep:
                params[name.strip().lower()] = item.strip()
        token, key = params.get("t"), params.get("k")
        if not token or not key:
            raise _Refusal(401, "vapid authorization needs t= and k=")
        expected = subscriber.application_server_key or self.expected_key
        if expected is not None and key != expected:
            raise _Refusal(403, "k does not match the key the subscription was made with")
        public_key = self._public_key(key)

        try:
            header_b64, claims_b64, signature_b64 = token.split(".")
            jwt_header = json.loads(_unb64(header_b64))
            claims = json.loads(_unb64(claims_b64))
            signature = _unb64(signature_b64)
        except ValueError:
            raise _Refusal(401, "malformed JWT") from None
        if (
            not isinstance(jwt_header, dict)
            or jwt_header.get("alg") != "ES256"
            or not isinstance(claims, dict)
        ):
            raise _Refusal(403, "JWT must be ES256")
        if len(signature) != 64:
            raise _Refusal(403, "ES256 signature must be 64 bytes (r||s)")
        der = encode_dss_signature(
            int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        )
        try:
            public_key.verify(der, f"{header_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise _Refusal(403, "BadJwtToken: signature does not verify") from None

        if claims.get("aud") != self.origin:
            raise _Refusal(403, f"BadJwtToken: aud {claims.get('aud')!r} is not {self.origin!r}")
        exp = claims.get("exp")
        now = time.time()
        if not isinstance(exp, int) or exp <= now:
            raise _Refusal(403, "BadJwtToken: exp missing or in the past")
        if exp > now + MAX_EXP_AHEAD:
            raise _Refusal(403, "BadJwtToken: exp more than 24 hours ahead")
        sub = claims.get("sub")
        if (
            not isinstance(sub, str)
            or not sub.startswith(("mailto:", "https:"))
            or any(c.isspace() for c in sub)
        ):
            raise _Refusal(403, "BadJwtToken: sub must be a mailto: or https: URL")
        return claims

    def _public_key(self, key: str) -> ec.EllipticCurvePublicKey:
        """Return k as a key object, parsed once per key (real services cache this too)."""
        cached = self._keys.get(key)
        if cached is None:
            try:
                raw = _unb64(key)
                cached = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
            except ValueError:
                raise _Refusal(401, "k is not a P-256 public key") from None
            if raw[0] != 0x04:
                raise _Refusal(401, "k must be an uncompressed point")
            self._keys[key] = cached
        return cached

    @staticmethod
    def _check_headers(headers: dict[str, str]) -> int:
        """Check TTL, Content-Encoding, Urgency and Topic; return the TTL."""
        ttl = headers.get("ttl")
        if ttl is None or not ttl.isascii() or not ttl.isdigit():
            raise _Refusal(400, "TTL header missing or not a non-negative integer")
        if headers.get("content-encoding") != "aes128gcm":
            raise _Refusal(400, "Content-Encoding must be aes128gcm")
        urgency = headers.get("urgency")
        if urgency is not None and urgency not in URGENCIES:
            raise _Refusal(400, f"bad Urgency {urgency!r}")
        topic = headers.get("topic")
        if topic is not None and not _TOPIC.fullmatch(topic):
            raise _Refusal(400, "Topic must be at most 32 base64url characters")
        return int(ttl)

    def _open(self, body: bytes, subscriber: _Subscriber) -> tuple[bytes | None, Any]:
        """Decrypt the body as the browser would; return (plaintext, JSON or None)."""
        if not self.decrypt:
            return None, None
        try:
            plaintext: bytes = http_ece.decrypt(
                body,
                private_key=subscriber.private_key,
                auth_secret=subscriber.auth,
                version="aes128gcm",
            )
        except (http_ece.ECEException, InvalidTag, ValueError, IndexError, struct.error) as exc:
            raise _Refusal(400, f"decryption failed: {type(exc).__name__}") from None
        try:
            return plaintext, json.loads(plaintext)
        except ValueError:
            return plaintext, None


async def _read_body(receive: Receive, limit: int) -> bytes:
    """Read the request body, keeping at most `limit` bytes (enough to tell it is too big)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk: bytes = message.get("body", b"")
        if size < limit:
            chunks.append(chunk[: limit - size])
        size += len(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _client_left(receive: Receive, seconds: float) -> bool:
    """Wait up to seconds; return True if the client disconnected meanwhile."""
    try:
        message = await asyncio.wait_for(receive(), seconds)
    except TimeoutError:
        return False
    return bool(message["type"] == "http.disconnect")


async def _answer(
    send: Send,
    status: int,
    text: str,
    content_type: str = "text/plain",
    *,
    extra: dict[str, str] | None = None,
) -> None:
    body = text.encode()
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    headers += [(k.lower().encode(), v.encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    """Decode base64url with or without padding; raise ValueError (binascii.Error) if malformed."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(4096)  # queue connections from now on, so READY is true before uvicorn runs
    return sock


def _config(service: PushService, *, loop: str) -> uvicorn.Config:
    return uvicorn.Config(
        service,
        loop=loop,
        http="httptools",
        ws="none",
        lifespan="off",
        log_level="warning",
        access_log=False,
        backlog=4096,
        timeout_graceful_shutdown=2,
    )


@contextmanager
def running_push_service(
    *, decrypt: bool = True, expected_key: str | None = None
) -> Iterator[PushService]:
    """Run a PushService on 127.0.0.1 (random port) in a thread for the duration of the block."""
    sock = _bind("127.0.0.1", 0)
    service = PushService(
        f"http://127.0.0.1:{sock.getsockname()[1]}", decrypt=decrypt, expected_key=expected_key
    )
    server = uvicorn.Server(_config(service, loop="asyncio"))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="push-service", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("test push service did not start")
            time.sleep(0.005)
        yield service
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def main(argv: list[str] | None = None) -> None:
    """Run the push service in this process, printing READY <origin> when it listens."""
    parser = argparse.ArgumentParser(description="Web Push service for tests and benchmarks")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--no-decrypt", action="store_true", help="skip decryption (VAPID is still verified)"
    )
    parser.add_argument(
        "--expected-key", help="the applicationServerKey every request's k must equal"
    )
    args = parser.parse_args(argv)
    sock = _bind(args.host, args.port)
    service = PushService(
        f"http://{args.host}:{sock.getsockname()[1]}",
        decrypt=not args.no_decrypt,
        expected_key=args.expected_key,
    )
    server = uvicorn.Server(_config(service, loop="auto"))
    print(f"READY {service.origin}", flush=True)
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
