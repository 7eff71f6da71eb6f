"""Reminders over Web Push: the server's public key, the patient's subscriptions and settings."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import reminders, subscriptions
from ..errors import BadRequest, Conflict, NotFound
from ..push import InvalidSubscription, PushMessage, Subscription, validate_subscription
from ..web import Context, ctx, current_patient, json, no_content, read_json

TEST_PAYLOAD = {"title": "Test reminder", "body": "Reminders work on this phone.", "url": "/app", "tag": "test",
                "kind": "test"}


async def public_key(request: Request) -> Response:
    """The VAPID public key, the applicationServerKey a browser subscribes with."""
    return json({"public_key": ctx(request).vapid.application_server_key})


async def subscribe(request: Request) -> Response:
    """Store the browser's PushSubscription.toJSON(); 201 when new, 200 when the endpoint is known."""
    me = await current_patient(request)
    c = ctx(request)
    data = await read_json(request)
    endpoint = data.text("endpoint", max_len=2048)
    keys = data.nested("keys", data.data.get("keys")) if data.has("keys") else None
    if keys is None and not data.errors:
        data.error("keys", "required")
    p256dh = keys.text("p256dh", max_len=200) if keys else None
    auth = keys.text("auth", max_len=200) if keys else None
    data.check()
    assert endpoint and p256dh and auth  # check() raised otherwise
    try:
        validate_subscription(endpoint, p256dh, auth, c.settings.push_allowed_origins)
    except InvalidSubscription as exc:
        name = {"endpoint": "endpoint"}.get(exc.field, exc.field if "." in exc.field else f"keys.{exc.field}")
        raise BadRequest(f"This push subscription cannot be used: {exc}", {name: str(exc)}) from None
    created = await subscriptions.upsert(
        c.db, patient_id=me.patient_id, device_id=me.device_id, endpoint=endpoint, p256dh=p256dh, auth=auth,
        now=c.now(),
    )
    settings = await reminders.settings_for(c.db, me.patient_id)
    return json({"endpoint": endpoint, "reminders": settings.public()}, status=201 if created else 200)


async def unsubscribe(request: Request) -> Response:
    me = await current_patient(request)
    c = ctx(request)
    data = await read_json(request)
    endpoint = data.text("endpoint", max_len=2048)
    data.check()
    await subscriptions.delete(c.db, patient_id=me.patient_id, endpoint=endpoint)
    return no_content()


async def get_settings(request: Request) -> Response:
    me = await current_patient(request)
    c = ctx(request)
    settings = await reminders.settings_for(c.db, me.patient_id)
    return json({**settings.public(), "next_at": await reminders.next_reminder(c.db, me.patient_id, c.now())})


async def patch_settings(request: Request) -> Response:
    """Change quiet hours (HH:MM to HH:MM, local) and whether a follow-up nudge comes."""
    me = await current_patient(request)
    c = ctx(request)
    data = await read_json(request)
    quiet_start = data.time("quiet_start", required=False)
    quiet_end = data.time("quiet_end", required=False)
    nudges = data.boolean("nudges", required=False)
    data.check()
    await reminders.update_settings(c.db, me.patient_id, quiet_start=quiet_start, quiet_end=quiet_end, nudges=nudges)
    return json((await reminders.settings_for(c.db, me.patient_id)).public())


async def snooze(request: Request) -> Response:
    """Remind again in 30 minutes (the notification's "Snooze" action)."""
    me = await current_patient(request)
    c = ctx(request)
    data = await read_json(request)
    assignment_id = data.integer("assignment_id", lo=1, hi=2**62)
    day = data.date("date")
    hhmm = data.time("time")
    data.check()
    ok = await reminders.snooze(c.db, patient_id=me.patient_id, assignment_id=assignment_id, day=day.isoformat(),
                                hhmm=hhmm, now=c.now())
    if not ok:
        raise NotFound("No such assignment.", fields={"assignment_id": "no such assignment"})
    return json({"snoozed_until": (c.now() + reminders.SNOOZE_FOR).isoformat()}, status=202)


async def push_test(request: Request) -> Response:
    """Send a test reminder to every device of the patient, now; 202 as it goes out."""
    me = await current_patient(request)
    c = ctx(request)
    if c.sender is None:
        raise Conflict("Reminders are not set up on this server yet (no VAPID subject).")
    targets = await subscriptions.for_patient(c.db, me.patient_id)
    if not targets:
        raise Conflict("Turn reminders on first.", {"reminders": "no device subscribed"})
    task = asyncio.create_task(_send_test(c, targets))
    c.tasks.add(task)
    task.add_done_callback(c.tasks.discard)
    return json({"devices": len(targets)}, status=202)


async def _send_test(c: Context, targets: list[subscriptions.StoredSubscription]) -> None:
    assert c.sender is not None
    messages = [PushMessage(Subscription(s.endpoint, s.p256dh, s.auth), TEST_PAYLOAD, ttl=600, topic="test")
                for s in targets]
    results = await c.sender.send_many(messages)
    await subscriptions.record_outcomes(
        c.db, [(s.id, r.status, r.delivered, r.gone) for s, r in zip(targets, results, strict=True)], now=c.now()
    )


routes = [
    Route("/api/push/public-key", public_key, methods=["GET"]),
    Route("/api/me/push-subscriptions", subscribe, methods=["POST"]),
    Route("/api/me/push-subscriptions", unsubscribe, methods=["DELETE"]),
    Route("/api/me/push-test", push_test, methods=["POST"]),
    Route("/api/me/reminders", get_settings, methods=["GET"]),
    Route("/api/me/reminders", patch_settings, methods=["PATCH"]),
    Route("/api/me/reminders/snooze", snooze, methods=["POST"]),
]
