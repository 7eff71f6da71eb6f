"""The patient app's pages: server-rendered, then enhanced by static/app/*.js.

Every page works without JavaScript (plain forms that post and redirect); with it, the
player runs a hold timer and completions go through an offline outbox to the JSON API.
"""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from .. import assignments, calendar_feeds, clinic_sessions, completions, devices, invites, patients, reminders
from ..clock import is_timezone, local_date, parse_iso, timezone_names, zone
from ..errors import BadRequest, TooManyRequests, Unauthorized
from ..web import (
    Context,
    client_address,
    ctx,
    current_patient,
    patient_today,
    path_id,
    read_form,
    render,
    set_cookie,
)

_TIME = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
_CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
# Link previews (chat apps, mail scanners) fetch links before the patient taps them; an
# invite is single-use, so they must not spend it.
_PREVIEW_AGENT = re.compile(
    r"bot\b|bot/|crawler|spider|preview|facebookexternalhit|whatsapp|embedly|vkshare|google-pagerenderer",
    re.IGNORECASE,
)
HISTORY_DAYS = 28
# Relaxing between two holds; the player (static/app/player.js) uses the same rule.
RELAX_SECONDS = 5
RELAX_FROM_HOLD = 10


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


async def signed_in(request: Request) -> devices.Me | None:
    try:
        return await current_patient(request)
    except Unauthorized:
        return None


# --- getting in ---------------------------------------------------------------------------


async def join_link(request: Request) -> Response:
    """Redeem an invite link: set the device cookie and open the app."""
    c = ctx(request)
    agent = request.headers.get("user-agent", "")
    if request.method == "HEAD" or _PREVIEW_AGENT.search(agent):
        return no_store(render(request, "app/link_preview.html", {"me": None}))
    token = request.path_params["token"]
    joined = None
    if 20 <= len(token) <= 100:
        joined = await devices.join(
            c.db,
            token=token,
            label=devices.label_for(agent),
            secret_key=c.settings.secret_key,
            now=c.now(),
        )
    if joined is None:
        # Tapping the same link again on a phone that is already in is the common case.
        if await signed_in(request) is not None:
            return redirect("/app")
        return no_store(render(request, "app/link_invalid.html", {"me": None}, status=410))
    response = redirect("/app")
    set_cookie(
        response,
        c.settings,
        devices.COOKIE,
        c.device_signer.sign(joined[1]),
        devices.COOKIE_MAX_AGE,
    )
    return no_store(response)


async def join_page(request: Request) -> Response:
    # Never personalised: the service worker precaches it for every visitor.
    return render(request, "app/join.html", {"me": None, "error": None, "code": ""})


async def join_submit(request: Request) -> Response:
    """Join with the code, for browsers without JavaScript (app/join.js posts to /api/join)."""
    c = ctx(request)
    data = await read_form(request)
    code = data.text("code", max_len=32)
    values: dict[str, Any] = {"me": None, "code": code or ""}
    try:
        data.check()
        joined = await devices.join_with_code(
            c.db,
            code=code,
            client=client_address(request),
            label=devices.label_for(request.headers.get("user-agent", "")),
            secret_key=c.settings.secret_key,
            now=c.now(),
        )
    except TooManyRequests as exc:
        return render(
            request,
            "app/join.html",
            {**values, "error": "Too many tries. Please wait 15 minutes and try again."},
            exc.status,
        )
    except BadRequest:
        return render(
            request,
            "app/join.html",
            {**values, "error": "Please type the code from your clinic."},
            400,
        )
    if joined is None:
        error = "That code did not work. Check it and try again, or ask your clinic for a new one."
        return render(request, "app/join.html", {**values, "error": error}, 401)
    response = redirect("/app")
    set_cookie(
        response,
        c.settings,
        devices.COOKIE,
        c.device_signer.sign(joined[1]),
        devices.COOKIE_MAX_AGE,
    )
    return response


async def offline_page(request: Request) -> Response:
    return render(request, "app/offline.html", {"me": None})


async def home_screen_code(request: Request) -> Response:
    """Give this patient a fresh code for the installed iPhone app, which has its own cookies."""
    me = await current_patient(request)
    c = ctx(request)
    invite = await invites.create(
        c.db,
        me.patient_id,
        base_url=c.settings.base_url,
        secret_key=c.settings.secret_key,
        now=c.now(),
    )
    expires = parse_iso(invite.expires_at).astimezone(zone(me.timezone))
    return no_store(
        render(
            request,
            "app/code.html",
            {"me": me, "code": invite.code_display, "expires": long_date(expires.date())},
        )
    )


# --- reminders (shown on today and settings) --------------------------------------------


def reminder_when(next_at: str | None, timezone: str, now: datetime) -> str | None:
    """Say when the next reminder comes, in the patient's time: "19:30", "tomorrow at 08:00"."""
    if next_at is None:
        return None
    tz = zone(timezone)
    at = parse_iso(next_at).astimezone(tz)
    days = (at.date() - now.astimezone(tz).date()).days
    hhmm = f"{at:%H:%M}"
    if days <= 0:
        return hhmm
    if days == 1:
        return f"tomorrow at {hhmm}"
    if days < 7:
        return f"{at:%A} at {hhmm}"
    return f"{short_date(at.date())} at {hhmm}"


async def reminder_context(c: Context, me: devices.Me) -> dict[str, Any]:
    """The patient's reminder settings and the next reminder, for the templates."""
    now = c.now()
    settings = await reminders.settings_for(c.db, me.patient_id)
    next_at = await reminders.next_reminder(c.db, me.patient_id, now) if settings.enabled else None
    return {
        "settings": settings,
        "next_at": next_at,
        "next_text": reminder_when(next_at, me.timezone, now),
        # Without a VAPID subject the server sends nothing: say so rather than offer a switch.
        "ready": c.sender is not None,
    }


# --- today --------------------------------------------------------------------------------


def long_date(day: date) -> str:
    return f"{day:%A} {day.day} {day:%B}"


def greeting(moment: datetime) -> str:
    if moment.hour < 5 or moment.hour >= 18:
        return "Good evening"
    return "Good morning" if moment.hour < 12 else "Good afternoon"


def next_open(slots: list[dict[str, Any]]) -> int | None:
    return next((n for n, s in enumerate(slots) if not s["done"]), None)


async def today(request: Request) -> Response:
    me, data = await patient_today(request)
    c = ctx(request)
    now = c.now()
    local = now.astimezone(zone(me.timezone))
    others: list[assignments.Assignment] = []
    if not data["slots"]:
        # Nothing scheduled today: the patient may still want to do a routine.
        day = local.date().isoformat()
        others = [
            a
            for a in await assignments.list_for_patient(c.db, me.practitioner_id, me.patient_id)
            if a.active and a.start_date <= day and (a.end_date is None or day <= a.end_date)
        ]
    return render(
        request,
        "app/today.html",
        {
            "me": me,
            "today": data,
            "next_index": next_open(data["slots"]),
            "greeting": greeting(local),
            "date_text": long_date(local.date()),
            "others": others,
            "saved": request.query_params.get("saved") == "1",
            "reminders": await reminder_context(c, me),
        },
    )


# --- the player ---------------------------------------------------------------------------


def dose_text(item: dict[str, Any]) -> str:
    """Say the dose in words: "Hold 25 s, 3 times on each side · 2 sets"."""
    hold, reps, sets, sides = item["hold_seconds"], item["reps"], item["sets"], item["sides"]
    times = "once" if reps == 1 else "twice" if reps == 2 else f"{reps} times"
    if hold >= RELAX_FROM_HOLD:
        text = f"Hold {hold} s, {times}"
    elif hold > 0:
        text = f"{reps} slow {'rep' if reps == 1 else 'reps'}, about {hold} s each"
    else:
        text = f"{reps} {'rep' if reps == 1 else 'reps'}"
    if sides == "both":
        text += " on each side"
    elif sides in ("left", "right"):
        text += f", {sides} side only"
    if sets > 1:
        text += f" · {sets} sets"
        if item.get("rest_seconds"):
            text += f", rest {item['rest_seconds']} s between"
    return text


async def player(request: Request, errors: str | None = None, status: int = 200) -> Response:
    me = await current_patient(request)
    c = ctx(request)
    found = await completions.assignment_for_patient(c.db, me.patient_id, path_id(request))
    time = request.query_params.get("time", "")
    if not _TIME.match(time):
        time = ""
    items = [{**item, "dose": dose_text(item)} for item in found.items]
    return render(
        request,
        "app/player.html",
        {
            "me": me,
            "a": found,
            "items": items,
            "time": time,
            "client_id": str(uuid.uuid4()),
            "error": errors,
            "data": {
                "id": found.id,
                "name": found.routine_name,
                "items": [
                    {
                        k: item[k]
                        for k in ("name", "hold_seconds", "reps", "sets", "sides", "rest_seconds")
                    }
                    for item in found.items
                ],
                "relax_seconds": RELAX_SECONDS,
                "relax_from_hold": RELAX_FROM_HOLD,
            },
        },
        status=status,
    )


async def player_submit(request: Request) -> Response:
    """Record a completion from the player's form, for browsers without JavaScript."""
    me = await current_patient(request)
    c = ctx(request)
    found = await completions.assignment_for_patient(c.db, me.patient_id, path_id(request))
    data = await read_form(request)
    client_id = data.text("client_id", max_len=64)
    if client_id and not _CLIENT_ID.match(client_id):
        data.error("client_id", "must be a UUID")
    fields = {
        "time": data.time("time", required=False),
        "pain_before": data.integer("pain_before", lo=0, hi=10, required=False),
        "pain_after": data.integer("pain_after", lo=0, hi=10, required=False),
        "difficulty": data.choice("difficulty", ("easy", "ok", "hard"), required=False),
        "note": data.text("note", required=False, max_len=1000),
    }
    try:
        data.check()
        await completions.record(
            c.db,
            patient_id=me.patient_id,
            timezone=me.timezone,
            client_id=client_id,
            assignment_id=found.id,
            day=local_date(c.now(), me.timezone),
            completed_at=None,
            now=c.now(),
            **fields,
        )
    except BadRequest as exc:
        return await player(request, errors=exc.message, status=400)
    return redirect("/app?saved=1")


# --- history ------------------------------------------------------------------------------

CHART_W, CHART_H = 320, 170
CHART_LEFT, CHART_RIGHT, CHART_TOP, CHART_BOTTOM = 30, 10, 10, 30


def short_date(day: date) -> str:
    return f"{day:%a} {day.day} {day:%b}"


def day_cells(days: list[dict[str, Any]], today_text: str) -> list[dict[str, Any] | None]:
    """The calendar strip: one cell a day, padded to start on a Monday."""
    cells: list[dict[str, Any] | None] = []
    if days:
        cells.extend([None] * date.fromisoformat(days[0]["date"]).weekday())
    for d in days:
        day = date.fromisoformat(d["date"])
        scheduled, completed = d["scheduled"], d["completed"]
        if scheduled == 0:
            state, label = "rest", "nothing planned"
        elif completed >= scheduled:
            state, label = "done", "all done"
        elif d["date"] == today_text:
            state, label = "today", f"{completed} of {scheduled} done so far"
        elif completed:
            state, label = "part", f"{completed} of {scheduled} done"
        else:
            state, label = "missed", f"0 of {scheduled} done"
        cells.append(
            {
                "day": day.day,
                "state": state,
                "label": f"{long_date(day)}: {label}",
                "today": d["date"] == today_text,
            }
        )
    return cells


def pain_chart(
    first: date, last: date, rows: list[dict[str, Any]], visits: list[str]
) -> dict[str, Any]:
    """Coordinates for a small SVG chart of pain (0 to 10) over the days shown, and clinic visits."""
    span = max((last - first).days, 1)
    width = CHART_W - CHART_LEFT - CHART_RIGHT
    height = CHART_H - CHART_TOP - CHART_BOTTOM

    def x(day: str, hhmm: str = "12:00") -> float:
        # A day's tick is its noon; completions spread across the day by their local time.
        offset = (
            (date.fromisoformat(day) - first).days
            + (int(hhmm[:2]) * 60 + int(hhmm[3:5])) / 1440
            - 0.5
        )
        return round(
            min(max(CHART_LEFT + offset / span * width, CHART_LEFT), CHART_LEFT + width), 1
        )

    def y(pain: int) -> float:
        return round(CHART_TOP + (10 - pain) / 10 * height, 1)

    def series(key: str) -> list[dict[str, float]]:
        return [
            {"x": x(r["date"], r.get("local_time") or "12:00"), "y": y(r[key])}
            for r in rows
            if r.get(key) is not None
        ]

    after, before = series("pain_after"), series("pain_before")
    return {
        "w": CHART_W,
        "h": CHART_H,
        "left": CHART_LEFT,
        "right": CHART_LEFT + width,
        "top": CHART_TOP,
        "bottom": CHART_TOP + height,
        "grid": [{"y": y(v), "label": v} for v in (0, 5, 10)],
        "after": after,
        "before": before,
        "after_path": " ".join(f"{p['x']},{p['y']}" for p in after),
        "before_path": " ".join(f"{p['x']},{p['y']}" for p in before),
        "visits": [x(v) for v in visits if first.isoformat() <= v <= last.isoformat()],
        "first_label": f"{first.day} {first:%b}",
        "last_label": f"{last.day} {last:%b}",
    }


def pain_summary(rows: list[dict[str, Any]]) -> str:
    values = [r["pain_after"] for r in rows if r.get("pain_after") is not None]
    if not values:
        return "No pain ratings yet."
    if len(values) == 1:
        return f"One rating so far: {values[0]} out of 10 after exercising."
    return (
        f"Pain after exercising went from {values[0]} to {values[-1]} out of 10"
        f" (lowest {min(values)}, highest {max(values)})."
    )


async def history(request: Request) -> Response:
    me = await current_patient(request)
    c = ctx(request)
    data = await completions.history(
        c.db,
        patient_id=me.patient_id,
        timezone=me.timezone,
        joined_at=me.joined_at,
        days=HISTORY_DAYS,
        now=c.now(),
    )
    first, last = date.fromisoformat(data["from"]), date.fromisoformat(data["to"])
    visits = [s.date for s in await clinic_sessions.list_for(c.db, me.patient_id)]
    rows = data["completions"]
    for row in rows:
        row["local_time"] = (
            parse_iso(row["completed_at"]).astimezone(zone(me.timezone)).strftime("%H:%M")
        )
        row["day_text"] = short_date(date.fromisoformat(row["date"]))
    has_pain = any(r["pain_after"] is not None or r["pain_before"] is not None for r in rows)
    return render(
        request,
        "app/history.html",
        {
            "me": me,
            "h": data,
            "cells": day_cells(data["days"], last.isoformat()),
            "chart": pain_chart(first, last, rows, visits) if has_pain else None,
            "pain_summary": pain_summary(rows),
            "rows": list(reversed(rows)),
        },
    )


# --- settings -----------------------------------------------------------------------------


def zone_choices(current: str) -> list[str]:
    names = sorted(
        n
        for n in timezone_names()
        if "/" in n
        and not n.startswith(("Etc/", "SystemV/", "US/", "posix/", "right/"))
        and n[0].isupper()
    )
    if current not in names:
        names.append(current)
    return ["UTC", *sorted(n for n in names if n != "UTC")]


async def settings_page(
    request: Request, values: dict[str, Any] | None = None, status: int = 200
) -> Response:
    me = await current_patient(request)
    return render(
        request,
        "app/settings.html",
        {
            "me": me,
            "zones": zone_choices(me.timezone),
            "reminders": await reminder_context(ctx(request), me),
            "calendar_since": await calendar_feeds.active_since(ctx(request).db, me.patient_id),
            "calendar_url": None,
            "saved": False,
            "error": None,
            **(values or {}),
        },
        status=status,
    )


async def settings_submit(request: Request) -> Response:
    """Change the time zone, for browsers without JavaScript (app/settings.js sends PATCH /api/me)."""
    me = await current_patient(request)
    c = ctx(request)
    data = await read_form(request)
    timezone = data.text("timezone", max_len=64)
    if not timezone or not is_timezone(timezone):
        return await settings_page(
            request, {"error": "Please choose a time zone from the list."}, status=400
        )
    await patients.update(c.db, me.practitioner_id, me.patient_id, timezone=timezone)
    return redirect("/app/settings?saved=1")


async def calendar_submit(request: Request) -> Response:
    """Make a new calendar subscription URL (shown once) or stop the current one."""
    me = await current_patient(request)
    c = ctx(request)
    data = await read_form(request)
    action = data.choice("action", ("create", "revoke"))
    if action == "revoke":
        await calendar_feeds.revoke(c.db, me.patient_id, now=c.now())
        return redirect("/app/settings#calendar")
    if action is None:
        return await settings_page(request, {"error": "Please choose an action."}, status=400)
    token = await calendar_feeds.create(c.db, me.patient_id, now=c.now())
    url = calendar_feeds.feed_url(c.settings.base_url, token)
    # Calendar apps subscribe to webcal: links; the token in it is shown only this once.
    webcal = "webcal://" + url.split("://", 1)[1]
    return await settings_page(request, {"calendar_url": url, "calendar_webcal": webcal})


async def sign_out(request: Request) -> Response:
    """Sign this phone out, for browsers without JavaScript (app/settings.js sends DELETE /api/me/device)."""
    me = await current_patient(request)
    c = ctx(request)
    await devices.revoke(c.db, me.patient_id, me.device_id, now=c.now())
    response = redirect("/app/join")
    response.delete_cookie(devices.COOKIE, path="/")
    return response


async def settings_view(request: Request) -> Response:
    return await settings_page(request, {"saved": request.query_params.get("saved") == "1"})


routes = [
    Route("/join/{token}", join_link, methods=["GET"]),
    Route("/app", today, methods=["GET"]),
    Route("/app/join", join_page, methods=["GET"]),
    Route("/app/join", join_submit, methods=["POST"]),
    Route("/app/offline", offline_page, methods=["GET"]),
    Route("/app/home-screen-code", home_screen_code, methods=["POST"]),
    Route("/app/routine/{id}", player, methods=["GET"]),
    Route("/app/routine/{id}", player_submit, methods=["POST"]),
    Route("/app/history", history, methods=["GET"]),
    Route("/app/settings", settings_view, methods=["GET"]),
    Route("/app/settings", settings_submit, methods=["POST"]),
    Route("/app/settings/calendar", calendar_submit, methods=["POST"]),
    Route("/app/sign-out", sign_out, methods=["POST"]),
]
