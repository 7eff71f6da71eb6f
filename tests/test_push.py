"""Tests for server.push against tests.pushservice, a push service that verifies like a real one."""

from __future__ import annotations

import asyncio
import base64
import email.utils
import json
import logging
import os
import socket
import stat
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import http_ece  # type: ignore[import-untyped]
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pushservice import PushService, running_push_service
from pydantic import AnyHttpUrl
from webpush.vapid import VAPID  # type: ignore[import-untyped]

from server import push
from server.push import (
    CIRCUIT_OPEN,
    DEFAULT_PUSH_ORIGINS,
    MAX_PLAINTEXT_BYTES,
    InvalidSubscription,
    PayloadTooLarge,
    PushMessage,
    PushSender,
    Subscription,
    VapidKeys,
    build_headers,
    encode_payload,
    encrypt_payload,
    endpoint_allowed,
    load_or_create_vapid_keys,
    make_client_session,
    parse_allowed_origins,
    validate_subject,
    validate_subscription,
)

SUBJECT = "mailto:ops@homework-clinic.org"


def b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64e(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> VapidKeys:
    return load_or_create_vapid_keys(tmp_path_factory.mktemp("vapid"))


# Two services (two origins) shared by the module: each test makes its own subscribers
# and asserts per endpoint, so tests stay independent without restarting uvicorn.
@pytest.fixture(scope="module")
def service() -> Iterator[PushService]:
    with running_push_service() as running:
        yield running


@pytest.fixture(scope="module")
def other_service() -> Iterator[PushService]:
    with running_push_service() as running:
        yield running


@asynccontextmanager
async def sender_for(
    keys: VapidKeys, *services: PushService, **options: Any
) -> AsyncIterator[PushSender]:
    async with make_client_session() as session:
        yield PushSender(
            keys, SUBJECT, session, extra_origins=[s.origin for s in services], **options
        )


def send_one(
    keys: VapidKeys, service: PushService, msg: PushMessage, **options: Any
) -> push.PushResult:
    """Send one message through a new PushSender (options as for it) on its own event loop."""

    async def scenario() -> push.PushResult:
        async with sender_for(keys, service, **options) as sender:
            return await sender.send(msg)

    return asyncio.run(scenario())


class FakeSleep:
    """Record requested delays and return at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


def message(subscription: Subscription, **fields: Any) -> PushMessage:
    fields.setdefault("payload", {"title": "Time to stretch", "routine": 42})
    fields.setdefault("ttl", 3600)
    return PushMessage(subscription, **fields)


# ------------------------------------------------------------- encryption

RFC_PLAINTEXT = b"When I grow up, I want to be a watermelon"
RFC_AS_PRIVATE = "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw"
RFC_UA_PRIVATE = "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94"
RFC_UA_PUBLIC = (
    "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"
)
RFC_SALT = "DGv6ra1nlYgDCS1FRnbzlw"
RFC_AUTH = "BTBZMqHH6r4Tts7J_aSIgg"
RFC_BODY = (
    "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A"
    "_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN"
)


def _rfc_key(text: str) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(int.from_bytes(b64d(text), "big"), ec.SECP256R1())


def _fix_randomness(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the salt and the ephemeral key the RFC's (webpush takes them from os.urandom and ec)."""
    real_urandom = os.urandom
    monkeypatch.setattr(os, "urandom", lambda n: b64d(RFC_SALT) if n == 16 else real_urandom(n))
    monkeypatch.setattr(
        ec, "generate_private_key", lambda *args, **kwargs: _rfc_key(RFC_AS_PRIVATE)
    )


def test_rfc8291_appendix_a_vector(monkeypatch: pytest.MonkeyPatch) -> None:
    _fix_randomness(monkeypatch)
    body = encrypt_payload(
        RFC_PLAINTEXT,
        Subscription(
            "https://push.example.net/push/JzLQ3raZJfFBR0aqvOMsLrt54w4rJUsV",
            RFC_UA_PUBLIC,
            RFC_AUTH,
        ),
    )
    assert body == b64d(RFC_BODY)
    decrypted = http_ece.decrypt(
        body, private_key=_rfc_key(RFC_UA_PRIVATE), auth_secret=b64d(RFC_AUTH), version="aes128gcm"
    )
    assert decrypted == RFC_PLAINTEXT


def test_each_message_gets_a_fresh_key_pair_and_salt() -> None:
    """RFC 8291: a new ephemeral key and a random salt for every message, even the same text."""
    receiver = ec.generate_private_key(ec.SECP256R1())
    point = receiver.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    auth = os.urandom(16)
    subscription = Subscription("https://fcm.googleapis.com/fcm/send/x", b64e(point), b64e(auth))
    bodies = [encrypt_payload(b"same text", subscription) for _ in range(3)]
    assert len({b[:16] for b in bodies}) == 3  # salts
    assert len({b[21:86] for b in bodies}) == 3  # ephemeral public keys
    for body in bodies:
        assert body[21] == 0x04
        decrypted = http_ece.decrypt(
            body, private_key=receiver, auth_secret=auth, version="aes128gcm"
        )
        assert decrypted == b"same text"


def test_sender_encrypts_through_the_vector_path(
    keys: VapidKeys, service: PushService, monkeypatch: pytest.MonkeyPatch
) -> None:
    subscription = service.add_subscriber(_rfc_key(RFC_UA_PRIVATE), b64d(RFC_AUTH))
    assert subscription.p256dh == RFC_UA_PUBLIC
    payload = {"title": "When I grow up"}

    async def scenario() -> None:
        async with sender_for(keys, service) as sender:
            _fix_randomness(monkeypatch)
            assert (await sender.send(message(subscription, payload=payload))).delivered

    asyncio.run(scenario())
    [received] = service.received(subscription.endpoint)
    # Same salt, record size and ephemeral key as the vector: the sender used that code path.
    assert received.body[:86] == b64d(RFC_BODY)[:86]
    assert received.body == encrypt_payload(encode_payload(payload), subscription)
    assert received.payload == payload


# --------------------------------------------------------------- delivery


def test_delivered_and_decrypted_with_headers(keys: VapidKeys, service: PushService) -> None:
    subscription, _, _ = service.new_subscriber(application_server_key=keys.application_server_key)
    payload = {"title": "Étirements du soir", "routine": 7, "url": "/app/routines/7"}

    sent = message(subscription, payload=payload, ttl=7200, topic="routine-7", urgency="high")
    result = send_one(keys, service, sent)
    assert (result.delivered, result.gone, result.status, result.error) == (True, False, 201, None)
    assert [a.status for a in result.attempts] == [201]
    [received] = service.received(subscription.endpoint)
    assert received.payload == payload
    assert (
        received.plaintext
        == json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    )
    assert (received.ttl, received.urgency, received.topic) == (7200, "high", "routine-7")
    assert received.claims["sub"] == SUBJECT


def test_ttl_is_sent_on_every_message_even_zero(keys: VapidKeys, service: PushService) -> None:
    subscription, _, _ = service.new_subscriber()

    async def scenario() -> None:
        async with sender_for(keys, service) as sender:
            for ttl in (60, 0, 86400):
                assert (await sender.send(message(subscription, ttl=ttl))).delivered

    asyncio.run(scenario())
    assert [m.ttl for m in service.received(subscription.endpoint)] == [60, 0, 86400]
    assert [m.urgency for m in service.received(subscription.endpoint)] == ["normal"] * 3
    assert [m.topic for m in service.received(subscription.endpoint)] == [None] * 3


def test_same_topic_replaces_the_pending_message(keys: VapidKeys, service: PushService) -> None:
    subscription, _, _ = service.new_subscriber()

    async def scenario() -> None:
        async with sender_for(keys, service) as sender:
            await sender.send(message(subscription, payload={"n": 1}, topic="reminder-3"))
            await sender.send(message(subscription, payload={"n": 2}, topic="reminder-3"))
            await sender.send(message(subscription, payload={"n": 3}))

    asyncio.run(scenario())
    assert [m.payload for m in service.pending(subscription.endpoint)] == [{"n": 2}, {"n": 3}]
    assert len(service.received(subscription.endpoint)) == 3


def test_aud_is_the_origin_with_its_port(keys: VapidKeys, service: PushService) -> None:
    subscription, _, _ = service.new_subscriber()
    port = service.origin.rsplit(":", 1)[1]

    async def scenario() -> tuple[bool, int]:
        async with sender_for(keys, service) as sender:
            delivered = (await sender.send(message(subscription))).delivered
        # webpush's header drops the port: the service must refuse it, or this test proves nothing.
        vapid = VAPID(private_key=keys.private_pem, public_key=keys.public_pem)
        header = vapid.get_authorization_header(
            endpoint=AnyHttpUrl(subscription.endpoint),
            subscriber="ops@homework-clinic.org",
            expiration=3600,
        )
        body = encrypt_payload(b"{}", subscription)
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                subscription.endpoint,
                data=body,
                headers={"TTL": "60", "Content-Encoding": "aes128gcm", "Authorization": header},
            ) as response,
        ):
            return delivered, response.status

    delivered, webpush_status = asyncio.run(scenario())
    assert delivered
    [received] = service.received(subscription.endpoint)
    assert received.claims["aud"] == f"http://127.0.0.1:{port}" == service.origin
    assert webpush_status == 403


def test_one_signature_per_origin_until_near_expiry(
    keys: VapidKeys, service: PushService, other_service: PushService
) -> None:
    first = [service.new_subscriber()[0] for _ in range(10)]
    second = [other_service.new_subscriber()[0] for _ in range(10)]
    now = [time.time()]

    async def scenario() -> int:
        async with sender_for(keys, service, other_service, clock=lambda: now[0]) as sender:
            results = await sender.send_many(message(s) for s in first + second)
            assert all(r.delivered for r in results)
            now[0] += 10.9 * 3600  # still more than an hour before exp: reuse
            assert (await sender.send(message(first[0]))).delivered
            now[0] += 0.2 * 3600  # within the last hour: sign again
            assert (await sender.send(message(first[1]))).delivered
            return sender.signatures

    assert asyncio.run(scenario()) == 3
    ours = {s.endpoint for s in first}
    received = [m for m in service.messages if m.endpoint in ours]
    tokens = [m.authorization for m in received]
    assert len(tokens) == 12
    assert len(set(tokens[:11])) == 1 and tokens[11] != tokens[0]
    theirs = {s.endpoint for s in second}
    other_tokens = {m.authorization for m in other_service.messages if m.endpoint in theirs}
    assert len(other_tokens) == 1 and tokens[0] not in other_tokens
    exp_lead = received[0].claims["exp"] - received[0].time
    assert 11.9 * 3600 < exp_lead <= 12 * 3600


def test_payload_too_large_is_refused_before_sending(keys: VapidKeys, service: PushService) -> None:
    subscription, _, _ = service.new_subscriber()
    # {"t":"xxx..."} is 8 bytes of JSON around the string.
    fits = message(subscription, payload={"t": "x" * (MAX_PLAINTEXT_BYTES - 8)})
    too_big = message(subscription, payload={"t": "x" * (MAX_PLAINTEXT_BYTES - 7)})

    async def scenario() -> None:
        async with sender_for(keys, service) as sender:
            assert (await sender.send(fits)).delivered
            with pytest.raises(PayloadTooLarge) as caught:
                await sender.send(too_big)
            assert caught.value.size == MAX_PLAINTEXT_BYTES + 1
            with pytest.raises(PayloadTooLarge):
                await sender.send_many([fits, too_big])

    asyncio.run(scenario())
    assert service.requests_for(subscription.endpoint) == 1
    assert len(service.received(subscription.endpoint)[0].body) == 4096


# ------------------------------------------------------- answers and retries


@pytest.mark.parametrize("status", [410, 404])
def test_gone_is_reported_and_not_retried(
    keys: VapidKeys, service: PushService, status: int
) -> None:
    subscription, _, _ = service.new_subscriber()
    service.gone(subscription.endpoint, status)
    sleep = FakeSleep()

    result = send_one(keys, service, message(subscription), sleep=sleep)
    assert (result.delivered, result.gone, result.status) == (False, True, status)
    assert len(result.attempts) == 1 and sleep.delays == []
    assert service.requests_for(subscription.endpoint) == 1


def test_429_waits_for_retry_after_seconds(keys: VapidKeys, service: PushService) -> None:
    subscription, _, _ = service.new_subscriber()
    service.throttle(subscription.endpoint, "7", times=2)
    sleep = FakeSleep()

    result = send_one(keys, service, message(subscription), sleep=sleep)
    assert result.delivered
    assert [a.status for a in result.attempts] == [429, 429, 201]
    assert sleep.delays == [
        7.0,
        7.0,
    ]  # backoff for tries 1-2 is at most 2 s, so these are Retry-After's
    assert len(service.received(subscription.endpoint)) == 1


def test_429_retry_after_http_date(keys: VapidKeys, service: PushService) -> None:
    subscription, _, _ = service.new_subscriber()
    now = float(int(time.time()))  # whole seconds, as in an HTTP date
    service.throttle(subscription.endpoint, email.utils.formatdate(now + 30, usegmt=True))
    sleep = FakeSleep()

    assert send_one(keys, service, message(subscription), sleep=sleep, clock=lambda: now).delivered
    assert sleep.delays == [30.0]


def test_retry_after_beyond_the_ttl_gives_up(keys: VapidKeys, service: PushService) -> None:
    subscription, _, _ = service.new_subscriber()
    service.throttle(subscription.endpoint, "120", times=5)
    sleep = FakeSleep()

    result = send_one(keys, service, message(subscription, ttl=60), sleep=sleep)
    assert (result.delivered, result.status, len(result.attempts), sleep.delays) == (
        False,
        429,
        1,
        [],
    )


def test_500_is_retried_with_growing_backoff(keys: VapidKeys, service: PushService) -> None:
    subscription, _, _ = service.new_subscriber()
    service.fail(subscription.endpoint, times=3)
    sleep = FakeSleep()

    result = send_one(keys, service, message(subscription), sleep=sleep)
    assert result.delivered
    assert [a.status for a in result.attempts] == [500, 500, 500, 201]
    assert [a.error for a in result.attempts] == ["internal error"] * 3 + [None]
    first, second, third = sleep.delays
    assert 0.5 <= first <= 1 and 1 <= second <= 2 and 2 <= third <= 4
    assert len(service.received(subscription.endpoint)) == 1


def test_500_gives_up_after_max_tries(keys: VapidKeys, service: PushService) -> None:
    subscription, _, _ = service.new_subscriber()
    service.fail(subscription.endpoint, times=100, status=503)
    sleep = FakeSleep()

    result = send_one(keys, service, message(subscription), sleep=sleep, max_tries=3)
    assert (result.delivered, result.gone, result.status, len(result.attempts)) == (
        False,
        False,
        503,
        3,
    )
    assert len(sleep.delays) == 2 and service.requests_for(subscription.endpoint) == 3


@pytest.mark.parametrize(
    ("status", "text"),
    [(400, "UnexpectedTopic: bad header"), (403, "BadJwtToken"), (413, "PayloadTooLarge")],
)
def test_refusals_are_not_retried_and_keep_the_text(
    keys: VapidKeys, service: PushService, status: int, text: str, caplog: pytest.LogCaptureFixture
) -> None:
    subscription, _, _ = service.new_subscriber()
    service.respond(subscription.endpoint, status, text=text)
    sleep = FakeSleep()

    with caplog.at_level(logging.INFO, logger="server.push"):
        result = send_one(keys, service, message(subscription), sleep=sleep)
    assert (result.delivered, result.gone, result.status, result.error) == (
        False,
        False,
        status,
        text,
    )
    assert len(result.attempts) == 1 and sleep.delays == []
    assert service.requests_for(subscription.endpoint) == 1
    expected_level = logging.ERROR if status == 413 else logging.WARNING
    assert [(r.levelno, text in r.getMessage()) for r in caplog.records] == [(expected_level, True)]


def test_a_real_403_for_the_wrong_key(
    keys: VapidKeys, service: PushService, tmp_path: Path
) -> None:
    other_keys = load_or_create_vapid_keys(tmp_path)
    subscription, _, _ = service.new_subscriber(
        application_server_key=other_keys.application_server_key
    )

    async def scenario() -> push.PushResult:
        async with sender_for(keys, service, sleep=FakeSleep()) as sender:
            return await sender.send(message(subscription))

    result = asyncio.run(scenario())
    assert (result.status, len(result.attempts)) == (403, 1)
    assert result.error is not None and "k does not match" in result.error


def test_redirects_are_not_followed(keys: VapidKeys, service: PushService) -> None:
    subscription, _, _ = service.new_subscriber()
    target, _, _ = service.new_subscriber()
    service.respond(subscription.endpoint, 307, headers={"Location": target.endpoint})

    async def scenario() -> push.PushResult:
        async with sender_for(keys, service, sleep=FakeSleep()) as sender:
            return await sender.send(message(subscription))

    result = asyncio.run(scenario())
    assert (result.delivered, result.status, len(result.attempts)) == (False, 307, 1)
    assert service.requests_for(target.endpoint) == 0


def test_connection_errors_are_retried(keys: VapidKeys) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        origin = f"http://127.0.0.1:{probe.getsockname()[1]}"
    subscriber = PushService(origin).new_subscriber()[0]  # nothing listens there any more
    sleep = FakeSleep()

    async def scenario() -> push.PushResult:
        async with make_client_session() as session:
            sender = PushSender(
                keys, SUBJECT, session, extra_origins=[origin], sleep=sleep, max_tries=3
            )
            return await sender.send(message(subscriber))

    result = asyncio.run(scenario())
    assert (result.delivered, result.status, len(result.attempts), len(sleep.delays)) == (
        False,
        None,
        3,
        2,
    )
    assert result.error is not None and result.error.startswith("ClientConnectorError")


def test_hanging_host_times_out_without_holding_up_a_healthy_one(
    keys: VapidKeys, service: PushService, other_service: PushService
) -> None:
    stuck, _, _ = service.new_subscriber()
    service.hang(stuck.endpoint, 30)
    healthy, _, _ = other_service.new_subscriber()
    sleep = FakeSleep()

    async def scenario() -> tuple[float, float, push.PushResult]:
        async with sender_for(
            keys, service, other_service, timeout=0.3, max_tries=3, sleep=sleep
        ) as sender:
            started = time.monotonic()
            slow = asyncio.create_task(sender.send(message(stuck)))
            await asyncio.sleep(0.05)  # the stuck request is in flight first
            assert (await sender.send(message(healthy))).delivered
            healthy_done = time.monotonic() - started
            assert not slow.done()
            result = await slow
            return healthy_done, time.monotonic() - started, result

    healthy_done, stuck_done, result = asyncio.run(scenario())
    assert healthy_done < 0.25
    assert stuck_done >= 0.9
    assert (result.delivered, result.status, result.error) == (False, None, "timeout")
    assert [a.error for a in result.attempts] == ["timeout"] * 3
    assert service.requests_for(stuck.endpoint) == 3


def test_a_batch_to_a_hanging_host_leaves_slots_for_others(
    keys: VapidKeys, service: PushService, other_service: PushService
) -> None:
    stuck = [service.new_subscriber()[0] for _ in range(4)]
    for subscription in stuck:
        service.hang(subscription.endpoint, 30)
    healthy = [other_service.new_subscriber()[0] for _ in range(3)]

    async def scenario() -> float:
        async with sender_for(
            keys, service, other_service, concurrency=4, timeout=0.5, max_tries=1
        ) as sender:
            started = time.monotonic()
            batch = asyncio.create_task(sender.send_many(message(s) for s in stuck + healthy))
            while sum(len(other_service.received(s.endpoint)) for s in healthy) < len(healthy):
                await asyncio.sleep(0.005)
            healthy_done = time.monotonic() - started
            results = await batch
            assert [r.delivered for r in results] == [False] * 4 + [True] * 3
            return healthy_done

    # Four slots, four stuck messages first: without a per-origin cap the healthy ones wait.
    assert asyncio.run(scenario()) < 0.3


def test_a_dead_host_opens_its_circuit_and_stops_holding_the_batch(
    keys: VapidKeys, service: PushService, other_service: PushService
) -> None:
    stuck = [service.new_subscriber()[0] for _ in range(200)]
    for subscription in stuck:
        service.hang(subscription.endpoint, 30)
    healthy = [other_service.new_subscriber()[0] for _ in range(50)]
    sleep = FakeSleep()

    async def scenario() -> tuple[float, list[push.PushResult]]:
        async with sender_for(
            keys, service, other_service, concurrency=8, timeout=0.3, max_tries=3, sleep=sleep
        ) as sender:
            started = time.monotonic()
            results = await sender.send_many(message(s) for s in stuck + healthy)
            return time.monotonic() - started, results

    elapsed, results = asyncio.run(scenario())
    # Without the breaker: 200 messages x 3 tries x 0.3 s over 4 slots for that origin = 45 s.
    # With it: two rounds of 4 timeouts open the circuit (threshold 5), the rest fail at once.
    assert elapsed < 1.5
    assert all(r.delivered for r in results[200:])
    assert sum(len(other_service.received(s.endpoint)) for s in healthy) == 50
    failed = results[:200]
    assert all((r.delivered, r.gone, r.status) == (False, False, None) for r in failed)
    assert all(r.error == CIRCUIT_OPEN for r in failed)  # in-flight retries stopped too
    requests = sum(service.requests_for(s.endpoint) for s in stuck)
    assert requests == sum(len(r.attempts) for r in failed)
    assert requests <= 5 + 4  # the threshold plus what was already in flight
    assert sum(not r.attempts for r in failed) >= 190


def test_the_circuit_closes_after_the_cool_down_when_the_probe_succeeds(
    keys: VapidKeys, service: PushService, other_service: PushService
) -> None:
    subscription, _, _ = service.new_subscriber()
    service.fail(subscription.endpoint, times=5, status=503)
    healthy, _, _ = other_service.new_subscriber()
    now = [time.time()]  # also signs the VAPID exp: keep it real

    async def scenario() -> None:
        async with sender_for(
            keys, service, other_service, max_tries=1, clock=lambda: now[0], breaker_cooldown=60
        ) as sender:
            for _ in range(5):
                assert (await sender.send(message(subscription))).status == 503
            refused = await sender.send(message(subscription))
            assert (refused.delivered, refused.gone, refused.status) == (False, False, None)
            assert (refused.error, refused.attempts) == (CIRCUIT_OPEN, [])
            assert (await sender.send(message(healthy))).delivered  # other origins unaffected
            now[0] += 59.9
            assert (await sender.send(message(subscription))).error == CIRCUIT_OPEN
            assert service.requests_for(subscription.endpoint) == 5

            # Half-open: a failing probe opens the circuit for another cool-down...
            now[0] += 0.1
            service.fail(subscription.endpoint, times=1, status=500)
            assert (await sender.send(message(subscription))).status == 500
            assert (await sender.send(message(subscription))).error == CIRCUIT_OPEN
            assert service.requests_for(subscription.endpoint) == 6

            # ...and after it exactly one probe goes out while the others fail at once.
            now[0] += 60
            service.hang(subscription.endpoint, 0.2, times=1)  # slow, then answers 201
            results = await sender.send_many([message(subscription)] * 3)
            assert [r.error for r in results] == [None, CIRCUIT_OPEN, CIRCUIT_OPEN]
            assert results[0].delivered and service.requests_for(subscription.endpoint) == 7

            # The probe succeeded: closed, and the count starts again from zero.
            assert all(r.delivered for r in await sender.send_many([message(subscription)] * 3))
            service.fail(subscription.endpoint, times=4, status=502)
            for _ in range(4):
                assert (await sender.send(message(subscription))).status == 502
            assert (await sender.send(message(subscription))).delivered  # a success resets
            service.fail(subscription.endpoint, times=4, status=502)
            for _ in range(4):
                assert (await sender.send(message(subscription))).status == 502
            assert (await sender.send(message(subscription))).delivered

    asyncio.run(scenario())
    assert service.requests_for(subscription.endpoint) == 7 + 3 + 5 + 5


def test_breaker_settings_are_checked(keys: VapidKeys) -> None:
    async def scenario() -> None:
        async with make_client_session() as session:
            for options in ({"breaker_threshold": 0}, {"breaker_cooldown": -1}):
                with pytest.raises(ValueError, match="breaker"):
                    PushSender(keys, SUBJECT, session, **options)  # type: ignore[arg-type]

    asyncio.run(scenario())


def test_backoff_sleep_does_not_hold_a_slot(
    keys: VapidKeys, service: PushService, other_service: PushService
) -> None:
    throttled, _, _ = service.new_subscriber()
    service.throttle(throttled.endpoint, "1")
    healthy, _, _ = other_service.new_subscriber()

    async def slow_sleep(delay: float) -> None:
        await asyncio.sleep(0.5)

    async def scenario() -> tuple[float, float]:
        async with sender_for(
            keys, service, other_service, concurrency=1, sleep=slow_sleep
        ) as sender:
            started = time.monotonic()
            first = asyncio.create_task(sender.send(message(throttled)))
            await asyncio.sleep(0.1)  # the 429 has come back and the retry is waiting
            assert (await sender.send(message(healthy))).delivered
            healthy_done = time.monotonic() - started
            assert (await first).delivered
            return healthy_done, time.monotonic() - started

    healthy_done, throttled_done = asyncio.run(scenario())
    assert healthy_done < 0.4 < throttled_done


def test_logs_never_contain_payload_endpoint_path_or_keys(
    keys: VapidKeys, service: PushService, caplog: pytest.LogCaptureFixture
) -> None:
    failing, _, _ = service.new_subscriber()
    service.fail(failing.endpoint, times=1)
    service.respond(failing.endpoint, 400, text="bad request")
    gone, _, _ = service.new_subscriber()
    service.gone(gone.endpoint)
    fine, _, _ = service.new_subscriber()
    secret = "sciatica-flare-left-leg"

    async def scenario() -> list[bool]:
        async with sender_for(keys, service, sleep=FakeSleep()) as sender:
            results = await sender.send_many(
                message(s, payload={"note": secret}) for s in (failing, gone, fine)
            )
            return [r.delivered for r in results]

    with caplog.at_level(logging.DEBUG, logger="server.push"):
        assert asyncio.run(scenario()) == [False, False, True]
    logged = caplog.text
    assert len(caplog.records) >= 4 and service.origin in logged
    for subscription in (failing, gone, fine):
        for leaked in (
            subscription.endpoint.rsplit("/", 1)[1],
            subscription.p256dh,
            subscription.auth,
        ):
            assert leaked not in logged
    assert secret not in logged and keys.application_server_key not in logged


def test_sender_refuses_endpoints_outside_the_allow_list(
    keys: VapidKeys, service: PushService
) -> None:
    subscription, _, _ = service.new_subscriber()

    async def scenario() -> push.PushResult:
        async with make_client_session() as session:
            return await PushSender(keys, SUBJECT, session).send(message(subscription))

    result = asyncio.run(scenario())
    assert (result.delivered, result.attempts) == (False, [])
    assert result.error is not None and "not an allowed push service" in result.error
    assert service.requests_for(subscription.endpoint) == 0


def test_wns_gets_a_matching_cache_policy() -> None:
    subscription = Subscription(
        "https://wns2-par02p.notify.windows.com/w/?token=abc", RFC_UA_PUBLIC, RFC_AUTH
    )
    cached = build_headers(
        message(subscription, ttl=60),
        60,
        "https://wns2-par02p.notify.windows.com",
        "vapid t=x, k=y",
    )
    dropped = build_headers(
        message(subscription, ttl=0), 0, "https://wns2-par02p.notify.windows.com", "vapid t=x, k=y"
    )
    assert (cached["X-WNS-Cache-Policy"], dropped["X-WNS-Cache-Policy"]) == ("cache", "no-cache")
    assert "X-WNS-Cache-Policy" not in build_headers(
        message(subscription), 60, "https://fcm.googleapis.com", "vapid t=x, k=y"
    )


# ------------------------------------------------------------- validation


def _browser_keys() -> tuple[str, str]:
    point = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
    raw = b"\x04" + point.x.to_bytes(32, "big") + point.y.to_bytes(32, "big")
    return b64e(raw), b64e(os.urandom(16))


FCM = "https://fcm.googleapis.com/fcm/send/dGhpcyBpcyBub3QgYSByZWFsIHRva2Vu:APA91bH2x"


def test_validate_subscription_accepts_browser_subscriptions() -> None:
    p256dh, auth = _browser_keys()
    for endpoint in (
        FCM,
        "https://updates.push.services.mozilla.com/wpush/v2/gAAAAABk",
        "https://web.push.apple.com/QGuQyavXutnMH6Tl0e3Tmmr1Gd",
        "https://wns2-par02p.notify.windows.com/w/?token=BQYAAAB%2bll6F",
        "https://FCM.googleapis.com:443/fcm/send/x",
    ):
        validate_subscription(endpoint, p256dh, auth, ())
    validate_subscription(
        "http://127.0.0.1:9999/push/abc", p256dh, auth, ("http://127.0.0.1:9999",)
    )


def _rejected(endpoint: str, p256dh: str, auth: str, allowed: tuple[str, ...] = ()) -> str:
    with pytest.raises(InvalidSubscription) as caught:
        validate_subscription(endpoint, p256dh, auth, allowed)
    return caught.value.field


def test_validate_subscription_rejects_bad_keys() -> None:
    p256dh, auth = _browser_keys()
    raw = bytearray(b64d(p256dh))
    raw[-1] ^= 0x01  # y no longer satisfies the curve equation
    assert _rejected(FCM, b64e(bytes(raw)), auth) == "keys.p256dh"
    compressed = ec.EllipticCurvePublicKey.from_encoded_point(
        ec.SECP256R1(), b64d(p256dh)
    ).public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
    assert _rejected(FCM, b64e(compressed), auth) == "keys.p256dh"
    assert _rejected(FCM, p256dh[:-4], auth) == "keys.p256dh"
    assert _rejected(FCM, p256dh.replace("-", "+").replace("_", "/") + "!", auth) == "keys.p256dh"
    assert _rejected(FCM, p256dh, b64e(os.urandom(15))) == "keys.auth"
    assert _rejected(FCM, p256dh, b64e(os.urandom(17))) == "keys.auth"


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://fcm.googleapis.com/fcm/send/x",  # http on a non-loopback host
        "http://127.0.0.1:9999/push/x",  # loopback but not configured
        "https://push.evil.example/x",  # not a push service
        "https://fcm.googleapis.com@evil.example/",  # userinfo trick
        "https://user:pw@fcm.googleapis.com/x",
        "https://evil.example\\@fcm.googleapis.com/",
        "https://fcm.googleapis.com.evil.example/x",
        "https://push.apple.com/x",  # the wildcard means a subdomain
        "https://evilpush.apple.com/x",
        "https://fcm.googleapis.com:8443/x",  # another port is another origin
        "https://fcm.googleapis.com/x y",
        "ftp://fcm.googleapis.com/x",
        "fcm.googleapis.com/x",
        "https://fcm.googleapis.com/" + "x" * 2100,
    ],
)
def test_validate_subscription_rejects_endpoints(endpoint: str) -> None:
    p256dh, auth = _browser_keys()
    assert _rejected(endpoint, p256dh, auth, ("http://127.0.0.1:8888",)) == "endpoint"
    assert not endpoint_allowed(endpoint, ("http://127.0.0.1:8888",))


def test_default_origins_are_https() -> None:
    assert all(origin.startswith("https://") for origin in DEFAULT_PUSH_ORIGINS)
    assert endpoint_allowed("https://wns2-bl2p.notify.windows.com/w/?token=x", ())
    assert endpoint_allowed("https://android.googleapis.com/gcm/send/x", ())


def test_parse_allowed_origins() -> None:
    assert parse_allowed_origins("") == ()
    assert parse_allowed_origins(
        " https://Push.Example.net:443/ , http://127.0.0.1:9999,http://localhost:8080,"
    ) == (
        "https://push.example.net",
        "http://127.0.0.1:9999",
        "http://localhost:8080",
    )
    assert parse_allowed_origins("http://[::1]:9999, https://*.push.example.net") == (
        "http://[::1]:9999",
        "https://*.push.example.net",
    )
    assert endpoint_allowed(
        "https://eu.push.example.net/p/1", parse_allowed_origins("https://*.push.example.net")
    )
    for bad, says in [
        ("https://push.example.net/push", "path"),
        ("https://push.example.net?x=1", "path"),
        ("ftp://push.example.net", "https://"),
        ("push.example.net", "https://"),
        ("http://push.example.net", "non-loopback"),
        ("http://10.0.0.5:8080", "non-loopback"),
        ("https://user@push.example.net", "user"),
        ("https://push.example.net:99999", "port"),
    ]:
        with pytest.raises(ValueError, match=says):
            parse_allowed_origins(f"https://ok.example.net, {bad}")


def test_validate_subject() -> None:
    for good in (
        "mailto:ops@homework-clinic.org",
        "mailto:first.last+push@clinic.co.uk",
        "https://homework-clinic.org/contact",
    ):
        assert validate_subject(good) == good
    for bad in (
        "mailto: x",
        "mailto:x@localhost",
        "mailto:ops@clinic.local",
        "mailto:ops@127.0.0.1",
        "mailto:ops",
        "mailto:ops clinic@clinic.org",
        "ops@clinic.org",
        "ftp://x",
        "https://",
        "https://localhost/contact",
        "https://clinic.org/a b",
        "",
    ):
        with pytest.raises(ValueError, match="VAPID subject"):
            validate_subject(bad)


def test_push_message_validates_its_fields() -> None:
    subscription = Subscription(FCM, RFC_UA_PUBLIC, RFC_AUTH)
    for fields in (
        {"topic": "x" * 33},
        {"topic": "a=b"},
        {"topic": ""},
        {"urgency": "urgent"},
        {"ttl": -1},
        {"ttl": True},
    ):
        with pytest.raises(ValueError):
            message(subscription, **fields)
    assert message(subscription, topic="A_z-09" * 5 + "ab").topic is not None


def test_vapid_keys_are_created_once_and_private(tmp_path: Path) -> None:
    created = load_or_create_vapid_keys(tmp_path / "data")
    assert stat.S_IMODE((tmp_path / "data" / "vapid_private.pem").stat().st_mode) == 0o600
    assert load_or_create_vapid_keys(tmp_path / "data") == created
    raw = b64d(created.application_server_key)
    assert len(raw) == 65 and raw[0] == 4
    assert (
        VAPID.get_application_server_key(VAPID(created.private_pem, created.public_pem).public_key)
        == created.application_server_key
    )
    (tmp_path / "data" / "vapid_public.pem").write_bytes(
        load_or_create_vapid_keys(tmp_path / "other").public_pem
    )
    with pytest.raises(ValueError, match="does not match"):
        load_or_create_vapid_keys(tmp_path / "data")


def test_sender_checks_its_configuration(keys: VapidKeys, tmp_path: Path) -> None:
    other = load_or_create_vapid_keys(tmp_path)
    mismatched = VapidKeys(keys.private_pem, keys.public_pem, other.application_server_key)

    async def scenario() -> None:
        async with make_client_session() as session:
            with pytest.raises(ValueError, match="VAPID subject"):
                PushSender(keys, "mailto:x@localhost", session)
            with pytest.raises(ValueError, match="does not belong"):
                PushSender(mismatched, SUBJECT, session)
            with pytest.raises(ValueError, match="non-loopback"):
                PushSender(keys, SUBJECT, session, extra_origins=["http://push.example.net"])

    asyncio.run(scenario())


def test_cancelling_send_many_cancels_every_delivery(keys: VapidKeys, service: PushService) -> None:
    stuck, _, _ = service.new_subscriber()
    service.hang(stuck.endpoint, 30)

    async def cancel_after(passes: int) -> set[asyncio.Task[Any]]:
        async with sender_for(keys, service, timeout=5) as sender:
            batch = asyncio.create_task(sender.send_many(message(stuck) for _ in range(600)))
            for _ in range(passes):
                await asyncio.sleep(0)
            batch.cancel()
            with pytest.raises(asyncio.CancelledError):
                await batch
            await asyncio.sleep(0)
            return asyncio.all_tasks() - {asyncio.current_task()}

    # 6 loop passes: still starting tasks in slices; 50: all started, waiting in gather.
    for passes in (6, 50):
        assert asyncio.run(cancel_after(passes)) == set()


def test_unusable_stored_keys_are_gone_without_a_request(
    keys: VapidKeys, service: PushService
) -> None:
    subscription, _, _ = service.new_subscriber()
    raw = bytearray(b64d(subscription.p256dh))
    raw[-1] ^= 0x01
    off_curve = Subscription(subscription.endpoint, b64e(bytes(raw)), subscription.auth)
    short_auth = Subscription(subscription.endpoint, subscription.p256dh, subscription.auth[:-2])
    with pytest.raises(InvalidSubscription, match="curve"):
        encrypt_payload(b"{}", off_curve)

    async def scenario() -> list[push.PushResult]:
        async with sender_for(keys, service) as sender:
            return await sender.send_many([message(off_curve), message(short_auth)])

    results = asyncio.run(scenario())
    assert [(r.delivered, r.gone, r.attempts) for r in results] == [(False, True, [])] * 2
    assert [
        r.error is not None and field in r.error
        for r, field in zip(results, ("keys.p256dh", "keys.auth"), strict=True)
    ] == [True, True]
    assert service.requests_for(subscription.endpoint) == 0
