"""The patient app's JSON API (the contract the PWA and others build on: keep paths and shapes)."""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import completions, devices, patients, reminders, insight
from ..errors import BadRequest, Unauthorized
from ..web import (
    client_address, ctx, current_patient, json, no_content, patient_today, path_id, read_json, set_cookie,
)

_CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


def patient_public(me: devices.Me) -> dict[str, object]:
    return {"id": me.patient_id, "name": me.name, "timezone": me.timezone}


async def join(request: Request) -> Response:
    """Join with the 8-character code from the clinic; sets the device cookie."""
    c = ctx(request)
    data = await read_json(request)
    code = data.text("code", max_len=32)
    data.check()
    joined = await devices.join_with_code(
        c.db, code=code, client=client_address(request), label=devices.label_for(request.headers.get("user-agent", "")),
        secret_key=c.settings.secret_key, now=c.now(),
    )
    if joined is None:
        raise Unauthorized("That code is not valid, was already used, or has expired.", {"code": "invalid or expired"})
    _, token = joined
    me = await devices.authenticate(c.db, token, now=c.now())
    assert me is not None
    response = json({"patient": patient_public(me)})
    set_cookie(response, c.settings, devices.COOKIE, c.device_signer.sign(token), devices.COOKIE_MAX_AGE)
    return response


async def get_me(request: Request) -> Response:
    me = await current_patient(request)
    c = ctx(request)
    settings = await reminders.settings_for(c.db, me.patient_id)
    return json({"patient": patient_public(me), "reminders": settings.public()})


async def patch_me(request: Request) -> Response:
    me = await current_patient(request)
    c = ctx(request)
    data = await read_json(request)
    timezone = data.timezone("timezone")
    data.check()
    await patients.set_timezone(c.db, me.patient_id, timezone)
    settings = await reminders.settings_for(c.db, me.patient_id)
    return json({"patient": {**patient_public(me), "timezone": timezone}, "reminders": settings.public()})


async def sign_out(request: Request) -> Response:
    """Forget this device: its cookie stops working."""
    me = await current_patient(request)
    c = ctx(request)
    await devices.revoke(c.db, me.patient_id, me.device_id, now=c.now())
    response = no_content()
    response.delete_cookie(devices.COOKIE, path="/")
    return response


async def today(request: Request) -> Response:
    # The app's every open: device auth and today's rows come back in one query.
    _, data = await patient_today(request)
    return json(data)


async def assignment(request: Request) -> Response:
    me = await current_patient(request)
    found = await completions.assignment_for_patient(ctx(request).db, me.patient_id, path_id(request))
    return json(found.public())


async def create_completion(request: Request) -> Response:
    me = await current_patient(request)
    c = ctx(request)
    data = await read_json(request)
    client_id = data.text("client_id", max_len=64)
    if client_id and not _CLIENT_ID.match(client_id):
        data.error("client_id", "must be 8-64 letters, digits, - or _ (a UUID)")
    fields = {
        "assignment_id": data.integer("assignment_id", lo=1, hi=2**62),
        "day": data.date("date"),
        "time": data.time("time", required=False),
        "completed_at": data.datetime("completed_at", required=False),
        "pain_before": data.integer("pain_before", lo=0, hi=10, required=False),
        "pain_after": data.integer("pain_after", lo=0, hi=10, required=False),
        "difficulty": data.choice("difficulty", ("easy", "ok", "hard"), required=False),
        "note": data.text("note", required=False, max_len=1000),
    }
    data.check()
    completion, created = await completions.record(
        c.db, patient_id=me.patient_id, timezone=me.timezone, client_id=client_id, now=c.now(), **fields
    )
    # Pain high or sharply up after stretching: the app shows stop-and-call advice (null otherwise).
    safety = insight.safety_advice(completion.pain_before, completion.pain_after)
    return json({**completion.public(), "safety": safety}, status=201 if created else 200)


async def history(request: Request) -> Response:
    me = await current_patient(request)
    c = ctx(request)
    raw = request.query_params.get("days", "28")
    if not raw.isdigit() or not 1 <= int(raw) <= 366:
        raise BadRequest("days must be a whole number from 1 to 366.", {"days": "must be 1 to 366"})
    data = await completions.history(
        c.db, patient_id=me.patient_id, timezone=me.timezone, joined_at=me.joined_at, days=int(raw), now=c.now()
    )
    return json(data)


routes = [
    # Matched in order: what every app open and every recorded routine asks for goes first.
    Route("/api/me/today", today, methods=["GET"]),
    Route("/api/me/completions", create_completion, methods=["POST"]),
    Route("/api/join", join, methods=["POST"]),
    Route("/api/me", get_me, methods=["GET"]),
    Route("/api/me", patch_me, methods=["PATCH"]),
    Route("/api/me/device", sign_out, methods=["DELETE"]),
    Route("/api/me/assignments/{id}", assignment, methods=["GET"]),
    Route("/api/me/history", history, methods=["GET"]),
]
