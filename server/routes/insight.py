"""Progress and exports: the practitioner's progress API, CSV and print page; the patient's calendar."""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import assignments, calendar_feeds, clinic_sessions, exports, insight, patients
from ..errors import BadRequest, NotFound
from ..validate import DAYS
from ..web import ctx, current_patient, current_practitioner, json, no_content, owned_patient, path_id
from .pages import page

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{20,100}$")
ICS = "text/calendar; charset=utf-8"


def _days(request: Request) -> int:
    raw = request.query_params.get("days", str(insight.WINDOW_DAYS))
    if not raw.isdigit() or not 1 <= int(raw) <= 366:
        raise BadRequest("days must be a whole number from 1 to 366.", {"days": "must be 1 to 366"})
    return int(raw)


# --- practitioner ---------------------------------------------------------------------------

async def progress(request: Request) -> Response:
    """A patient's last days (days=28): done per day, adherence, pain, clinic sessions, flags."""
    c, patient = await owned_patient(request)
    days = _days(request)
    sessions = await clinic_sessions.list_for(c.db, patient.id)
    found = await insight.progress(c.db, patient, sessions, days=days, now=c.now())
    return json(found.public())


async def completions_csv(request: Request) -> Response:
    c, patient = await owned_patient(request)
    text = await exports.completions_csv(c.db, patient_id=patient.id, timezone=patient.timezone)
    filename = f"completions-patient-{patient.id}-{c.now():%Y-%m-%d}.csv"
    return Response(text, media_type="text/csv; charset=utf-8",
                    headers={"content-disposition": f'attachment; filename="{filename}"'})


async def print_assignment(request: Request) -> Response:
    me = await current_practitioner(request)
    c = ctx(request)
    assignment = await assignments.get(c.db, me.id, path_id(request))
    patient = await patients.get(c.db, me.id, assignment.patient_id)
    return await page(request, "print.html", {"assignment": assignment, "patient": patient, "days": DAYS})


# --- patient --------------------------------------------------------------------------------

async def my_calendar(request: Request) -> Response:
    """The patient's homework times as iCalendar (device cookie)."""
    me = await current_patient(request)
    c = ctx(request)
    text = await exports.calendar_for(c.db, patient_id=me.patient_id, timezone=me.timezone,
                                      base_url=c.settings.base_url, now=c.now())
    return Response(text, media_type=ICS, headers={"content-disposition": 'attachment; filename="stretches.ics"'})


async def feed_status(request: Request) -> Response:
    me = await current_patient(request)
    since = await calendar_feeds.active_since(ctx(request).db, me.patient_id)
    return json({"active": since is not None, "created_at": since})


async def create_feed(request: Request) -> Response:
    me = await current_patient(request)
    c = ctx(request)
    token = await calendar_feeds.create(c.db, me.patient_id, now=c.now())
    # Shown once: only the token's hash is kept.
    return json({"url": calendar_feeds.feed_url(c.settings.base_url, token)}, status=201)


async def delete_feed(request: Request) -> Response:
    me = await current_patient(request)
    c = ctx(request)
    await calendar_feeds.revoke(c.db, me.patient_id, now=c.now())
    return no_content()


async def public_feed(request: Request) -> Response:
    """The subscribable calendar: the token in the path is the only credential."""
    c = ctx(request)
    token = request.path_params["token"]
    found = await calendar_feeds.patient_for(c.db, token) if _TOKEN.match(token) else None
    if found is None:
        raise NotFound("No such calendar.")
    patient_id, timezone = found
    text = await exports.calendar_for(c.db, patient_id=patient_id, timezone=timezone,
                                      base_url=c.settings.base_url, now=c.now())
    return Response(text, media_type=ICS, headers={"cache-control": "private, no-store"})


routes = [
    Route("/api/patients/{id}/progress", progress, methods=["GET"]),
    Route("/api/patients/{id}/completions.csv", completions_csv, methods=["GET"]),
    Route("/assignments/{id}/print", print_assignment, methods=["GET"]),
    Route("/api/me/calendar.ics", my_calendar, methods=["GET"]),
    Route("/api/me/calendar-feed", feed_status, methods=["GET"]),
    Route("/api/me/calendar-feed", create_feed, methods=["POST"]),
    Route("/api/me/calendar-feed", delete_feed, methods=["DELETE"]),
    Route("/calendar/{token}.ics", public_feed, methods=["GET"]),
]
