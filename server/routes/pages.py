"""The practitioner's HTML pages: plain forms that post and redirect, usable on a phone."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from .. import assignments, charts, clinic_sessions, devices, exercises, insight, invites, patients, practitioners, routines
from ..clock import local_date
from ..db import Database
from ..errors import BadRequest, TooManyRequests, Unauthorized
from ..validate import DAYS, SIDES
from ..web import ctx, current_practitioner, owned_patient, path_id, read_form, render, sign_in, sign_out
from .api import assignment_fields, exercise_fields

COMMON_ZONES = (
    "Europe/London", "Europe/Dublin", "Europe/Paris", "Europe/Berlin", "Europe/Madrid", "America/New_York",
    "America/Chicago", "America/Denver", "America/Los_Angeles", "America/Toronto", "Australia/Sydney",
    "Australia/Adelaide", "Asia/Kolkata", "Pacific/Auckland",
)


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def safe_next(value: str | None) -> str:
    # Only local paths: an open redirect after login would help phishing.
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/patients"


async def page(request: Request, name: str, values: dict[str, Any] | None = None, status: int = 200) -> Response:
    me = await current_practitioner(request)
    return render(request, name, {"me": me, "zones": COMMON_ZONES, **(values or {})}, status=status)


# --- sign in ------------------------------------------------------------------------------

async def login_page(request: Request) -> Response:
    return render(request, "login.html", {"next": safe_next(request.query_params.get("next")), "errors": {}})


async def login_submit(request: Request) -> Response:
    c = ctx(request)
    data = await read_form(request)
    email = data.text("email", max_len=254)
    password = data.text("password", max_len=1024)
    next_url = safe_next(data.text("next", required=False, max_len=500))
    try:
        data.check()
        me = await practitioners.authenticate(c.db, email=email, password=password, now=c.now())
    except (BadRequest, Unauthorized, TooManyRequests) as exc:
        values = {"next": next_url, "errors": {"form": exc.message}, "email": email or ""}
        return render(request, "login.html", values, status=exc.status)
    return await sign_in(request, redirect(next_url), me)


async def logout_submit(request: Request) -> Response:
    return await sign_out(request, redirect("/login"))


async def home(request: Request) -> Response:
    await current_practitioner(request)
    return redirect("/patients")


# --- patients -----------------------------------------------------------------------------

async def patient_list(request: Request, errors: dict[str, str] | None = None, status: int = 200) -> Response:
    me = await current_practitioner(request)
    c = ctx(request)
    now = c.now()
    show_archived = request.query_params.get("archived") == "1"
    by_name = request.query_params.get("sort") == "name"
    found = await patients.list_for(c.db, me.id, archived=show_archived)
    insights = await insight.for_patients(c.db, found, now=now)
    if not by_name:
        found.sort(key=lambda p: insight.attention_key(p.name, insights[p.id]))
    rows = [
        {"patient": p, "insight": insights[p.id], "last": insight.when_text(insights[p.id].last_completed_at, p.timezone, now)}
        for p in found
    ]
    return await page(
        request,
        "patients.html",
        {"rows": rows, "archived": show_archived, "by_name": by_name, "errors": errors or {},
         "attention": sum(1 for i in insights.values() if i.flags)},
        status,
    )


async def patient_create(request: Request) -> Response:
    me = await current_practitioner(request)
    c = ctx(request)
    data = await read_form(request)
    name = data.text("name", max_len=120)
    timezone = data.timezone("timezone")
    try:
        data.check()
    except BadRequest as exc:
        return await patient_list(request, exc.fields, status=400)
    patient = await patients.create(c.db, me.id, name=name, timezone=timezone, now=c.now())
    return redirect(f"/patients/{patient.id}")


async def patient_detail(request: Request, extra: dict[str, Any] | None = None, status: int = 200) -> Response:
    me = await current_practitioner(request)
    c = ctx(request)
    patient = await patients.get(c.db, me.id, path_id(request))
    sessions = await clinic_sessions.list_for(c.db, patient.id)
    values: dict[str, Any] = {
        "patient": patient,
        "assignments": await assignments.list_for_patient(c.db, me.id, patient.id),
        "sessions": sessions,
        "devices": await devices.list_for_patient(c.db, patient.id),
        "today": local_date(c.now(), patient.timezone).isoformat(),
        "errors": {},
        "invite": None,
        **await _progress(c.db, patient, sessions, c.now()),
    }
    values.update(extra or {})
    return await page(request, "patient.html", values, status)


async def _progress(db: Database, patient: patients.Patient, sessions: list[clinic_sessions.ClinicSession],
                    now: datetime) -> dict[str, Any]:
    """The patient page's progress card: summary, the 28-day calendar and pain since treatment began."""
    span = min(await insight.history_days(db, patient, now=now), 366)
    found = await insight.progress(db, patient, sessions, days=span, now=now)
    month = found.days[-insight.WINDOW_DAYS:]
    rate, done, due = insight.adherence(month)
    first = found.first
    cal_label = (f"Calendar of the last {len(month)} days: {done} of {due} scheduled routines done."
                 if due else f"Calendar of the last {len(month)} days: nothing scheduled.")
    pain_label = (f"Pain from 0 to 10, before and after stretching, {insight.short_date(first)} to"
                  f" {insight.short_date(found.last)}, with {len(found.sessions)} clinic sessions marked.")
    return {
        "progress": found,
        "pain_since": insight.short_date(first, found.last),
        "month": month,
        "month_rate": rate,
        "last_done": insight.when_text(found.insight.last_completed_at, patient.timezone, now),
        "calendar_svg": Markup(charts.calendar(month, today=found.last.isoformat(), label=cal_label)),
        "pain_svg": Markup(charts.pain(found.ratings, sessions, first=first, last=found.last, label=pain_label)),
        "pain_rows": charts.pain_table(found.ratings, sessions, first=first, last=found.last),
        "day_rows": [(charts.day_label(d), charts.day_done(d, found.last.isoformat())) for d in reversed(month)],
    }


async def patient_update(request: Request) -> Response:
    me = await current_practitioner(request)
    c = ctx(request)
    patient_id = path_id(request)
    await patients.get(c.db, me.id, patient_id)
    data = await read_form(request)
    action = data.choice("action", ("save", "archive", "restore"))
    name = data.text("name", max_len=120, required=False, default=None)
    timezone = data.timezone("timezone", required=False)
    try:
        data.check()
    except BadRequest as exc:
        return await patient_detail(request, {"errors": exc.fields}, status=400)
    archived = {"archive": True, "restore": False}.get(action)
    await patients.update(c.db, me.id, patient_id, name=name, timezone=timezone, archived=archived)
    return redirect("/patients" if action == "archive" else f"/patients/{patient_id}")


async def invite_create(request: Request) -> Response:
    c, patient = await owned_patient(request)
    invite = await invites.create(
        c.db, patient.id, base_url=c.settings.base_url, secret_key=c.settings.secret_key, now=c.now()
    )
    # Shown once, on this response only: the token and code are not stored in the clear.
    return await patient_detail(request, {"invite": invite})


async def device_revoke(request: Request) -> Response:
    c, patient = await owned_patient(request)
    await devices.revoke(c.db, patient.id, path_id(request, "device_id"), now=c.now())
    return redirect(f"/patients/{patient.id}#app-h")


async def session_create(request: Request) -> Response:
    c, patient = await owned_patient(request)
    data = await read_form(request)
    day = data.date("date")
    note = data.text("note", required=False, max_len=2000)
    try:
        data.check()
    except BadRequest as exc:
        return await patient_detail(request, {"errors": {"session_" + k: v for k, v in exc.fields.items()}}, 400)
    await clinic_sessions.create(c.db, patient.id, day=day, note=note, now=c.now())
    return redirect(f"/patients/{patient.id}#sessions")


# --- assignments --------------------------------------------------------------------------

async def assign_form(request: Request, errors: dict[str, str] | None = None, form: Any = None, status: int = 200) -> Response:
    me = await current_practitioner(request)
    c = ctx(request)
    patient = await patients.get(c.db, me.id, path_id(request))
    today = local_date(c.now(), patient.timezone)
    found = [r for r in await routines.list_for(c.db, me.id) if r.items]
    sessions = await clinic_sessions.list_for(c.db, patient.id)
    defaults = {
        "routine_id": request.query_params.get("routine_id", ""),
        "start_date": today.isoformat(),
        "end_date": (today + timedelta(weeks=6)).isoformat(),
        "days": list(DAYS),
        "times": ["08:00", "19:00"],
        "session_date": sessions[-1].date if sessions else "",
        "note": "",
    }
    return await page(
        request,
        "assign.html",
        {"patient": patient, "routines": found, "form": form or defaults, "days": DAYS, "errors": errors or {}},
        status,
    )


async def assign_submit(request: Request) -> Response:
    me = await current_practitioner(request)
    c = ctx(request)
    patient = await patients.get(c.db, me.id, path_id(request))
    data = await read_form(request)
    # The form posts six time inputs; blanks are slots left unused.
    times = data.data.get("times", [])
    data.data = {**data.data, "times": [t for t in (times if isinstance(times, list) else [times]) if t]}
    fields = assignment_fields(data)
    try:
        data.check()
        await assignments.create(c.db, me.id, patient.id, now=c.now(), **fields)
    except BadRequest as exc:
        form = dict(data.data)
        form["days"] = form.get("days", []) if isinstance(form.get("days"), list) else [form.get("days")]
        return await assign_form(request, exc.fields, form=form, status=400)
    return redirect(f"/patients/{patient.id}")


async def assignment_end(request: Request) -> Response:
    me = await current_practitioner(request)
    c = ctx(request)
    assignment = await assignments.end(c.db, me.id, path_id(request), now=c.now())
    return redirect(f"/patients/{assignment.patient_id}")


# --- routines -----------------------------------------------------------------------------

async def routine_list(request: Request, errors: dict[str, str] | None = None, status: int = 200) -> Response:
    me = await current_practitioner(request)
    c = ctx(request)
    found = await routines.list_for(c.db, me.id)
    library = {e.id: e for e in await exercises.list_visible(c.db, me.id)}
    return await page(request, "routines.html", {"routines": found, "library": library, "errors": errors or {}}, status)


async def routine_create(request: Request) -> Response:
    me = await current_practitioner(request)
    c = ctx(request)
    data = await read_form(request)
    name = data.text("name", max_len=120)
    try:
        data.check()
    except BadRequest as exc:
        return await routine_list(request, exc.fields, 400)
    routine = await routines.create(c.db, me.id, name=name, notes="", items=[], now=c.now())
    return redirect(f"/routines/{routine.id}")


async def routine_detail(request: Request, errors: dict[str, str] | None = None, status: int = 200) -> Response:
    me = await current_practitioner(request)
    c = ctx(request)
    routine = await routines.get(c.db, me.id, path_id(request))
    library = await exercises.list_visible(c.db, me.id)
    by_id = {e.id: e for e in library}
    minutes = routines.estimated_minutes(routine.items) if routine.items else 0
    values = {"routine": routine, "library": library, "by_id": by_id, "sides": SIDES, "minutes": minutes,
              "errors": errors or {}}
    return await page(request, "routine.html", values, status)


async def routine_edit(request: Request) -> Response:
    """Apply one builder action: rename, add an item, move or remove one, or delete the routine."""
    me = await current_practitioner(request)
    c = ctx(request)
    routine = await routines.get(c.db, me.id, path_id(request))
    data = await read_form(request)
    action = data.choice("action", ("save", "add", "up", "down", "remove", "delete"))
    items = list(routine.items)
    name, notes = routine.name, routine.notes
    if action == "delete":
        await routines.delete(c.db, me.id, routine.id)
        return redirect("/routines")
    if action == "save":
        name = data.text("name", max_len=120)
        notes = data.text("notes", required=False, max_len=2000)
    elif action == "add":
        exercise_id = data.integer("exercise_id", lo=1, hi=2**62)
        found = await exercises.visible_by_id(c.db, me.id, [exercise_id] if exercise_id else [])
        ex = found.get(exercise_id)
        if exercise_id and ex is None:
            data.error("exercise_id", "no such exercise")
        dose = {
            "reps": data.integer("reps", lo=1, hi=100, required=False, default=ex.reps if ex else 1),
            "sets": data.integer("sets", lo=1, hi=20, required=False, default=ex.sets if ex else 1),
            "hold_seconds": data.integer("hold_seconds", lo=0, hi=600, required=False,
                                         default=ex.hold_seconds if ex else 0),
            "sides": data.choice("sides", SIDES, required=False, default=ex.sides if ex else "none"),
            "rest_seconds": data.integer("rest_seconds", lo=0, hi=600, required=False, default=30),
            "notes": data.text("notes", required=False, max_len=500),
        }
        if len(items) >= 30:
            data.error("exercise_id", "a routine holds at most 30 exercises")
        if ex is not None and not data.errors:
            items.append(routines.Item(exercise_id=ex.id, **dose))
    else:
        index = data.integer("index", lo=0, hi=max(0, len(items) - 1))
        if index is not None and not data.errors and items:
            if action == "remove":
                items.pop(index)
            else:
                other = index - 1 if action == "up" else index + 1
                if 0 <= other < len(items):
                    items[index], items[other] = items[other], items[index]
    try:
        data.check()
    except BadRequest as exc:
        return await routine_detail(request, exc.fields, 400)
    await routines.replace(c.db, me.id, routine.id, name=name, notes=notes, items=items, now=c.now())
    return redirect(f"/routines/{routine.id}")


# --- exercise library ---------------------------------------------------------------------

async def exercise_list(request: Request, errors: dict[str, str] | None = None, status: int = 200) -> Response:
    me = await current_practitioner(request)
    found = await exercises.list_visible(ctx(request).db, me.id)
    return await page(request, "exercises.html", {"exercises": found, "sides": SIDES, "errors": errors or {}}, status)


async def exercise_create(request: Request) -> Response:
    me = await current_practitioner(request)
    c = ctx(request)
    data = await read_form(request)
    steps_text = data.data.get("steps", "")
    steps = [s.strip() for s in steps_text.splitlines() if s.strip()] if isinstance(steps_text, str) else []
    data.data = {**data.data, "steps": steps}
    fields = exercise_fields(data)
    try:
        data.check()
    except BadRequest as exc:
        return await exercise_list(request, exc.fields, 400)
    await exercises.create(c.db, me.id, now=c.now(), **fields)
    return redirect("/exercises#custom")


routes = [
    Route("/", home, methods=["GET"]),
    Route("/login", login_page, methods=["GET"]),
    Route("/login", login_submit, methods=["POST"]),
    Route("/logout", logout_submit, methods=["POST"]),
    Route("/patients", patient_list, methods=["GET"]),
    Route("/patients", patient_create, methods=["POST"]),
    Route("/patients/{id}", patient_detail, methods=["GET"]),
    Route("/patients/{id}", patient_update, methods=["POST"]),
    Route("/patients/{id}/invite", invite_create, methods=["POST"]),
    Route("/patients/{id}/devices/{device_id}/revoke", device_revoke, methods=["POST"]),
    Route("/patients/{id}/sessions", session_create, methods=["POST"]),
    Route("/patients/{id}/assign", assign_form, methods=["GET"]),
    Route("/patients/{id}/assign", assign_submit, methods=["POST"]),
    Route("/assignments/{id}/end", assignment_end, methods=["POST"]),
    Route("/routines", routine_list, methods=["GET"]),
    Route("/routines", routine_create, methods=["POST"]),
    Route("/routines/{id}", routine_detail, methods=["GET"]),
    Route("/routines/{id}", routine_edit, methods=["POST"]),
    Route("/exercises", exercise_list, methods=["GET"]),
    Route("/exercises", exercise_create, methods=["POST"]),
]
