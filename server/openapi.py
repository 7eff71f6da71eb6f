"""The OpenAPI description served at /openapi.json, built from the routes plus the schemas below."""

from __future__ import annotations

from typing import Any

from starlette.routing import BaseRoute, Route

_str = {"type": "string"}
_int = {"type": "integer"}
_date = {"type": "string", "format": "date"}
_time = {"type": "string", "pattern": "^[0-2][0-9]:[0-5][0-9]$"}
_sides = {"type": "string", "enum": ["none", "left", "right", "both"]}


def _obj(required: list[str], **props: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": props}


SCHEMAS: dict[str, Any] = {
    "Error": _obj(["error"], error=_obj(["code", "message", "fields"], code=_str, message=_str,
                                        fields={"type": "object", "additionalProperties": _str})),
    "Login": _obj(["email", "password"], email=_str, password=_str),
    "TokenRequest": _obj(["email", "password"], email=_str, password=_str, label=_str),
    "Exercise": _obj(["name"], id=_int, name=_str, summary=_str, steps={"type": "array", "items": _str},
                     safety=_str, hold_seconds=_int, reps=_int, sets=_int, sides=_sides, image_url=_str,
                     builtin={"type": "boolean"}),
    "RoutineItem": _obj(["exercise_id"], exercise_id=_int, reps=_int, sets=_int, hold_seconds=_int, sides=_sides,
                        rest_seconds=_int, notes=_str),
    "Routine": _obj(["name"], id=_int, name=_str, notes=_str,
                    items={"type": "array", "items": {"$ref": "#/components/schemas/RoutineItem"}}),
    "Patient": _obj(["name", "timezone"], id=_int, name=_str, timezone=_str, archived={"type": "boolean"}),
    "PatientPatch": _obj([], name=_str, timezone=_str, archived={"type": "boolean"}),
    "Invite": _obj(["url", "code", "expires_at"], url=_str, code=_str, expires_at=_str),
    "Assignment": _obj(["routine_id", "start_date", "days", "times"], id=_int, routine_id=_int, start_date=_date,
                       end_date=_date, days={"type": "array", "items": {"enum": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]}},
                       times={"type": "array", "items": _time, "minItems": 1, "maxItems": 6},
                       session_date=_date, note=_str),
    "ClinicSession": _obj(["date"], id=_int, date=_date, note=_str),
    "Completion": _obj(["client_id", "assignment_id", "date"], client_id=_str, assignment_id=_int, date=_date,
                       time=_time, completed_at=_str, pain_before=_int, pain_after=_int,
                       difficulty={"enum": ["easy", "ok", "hard"]}, note=_str),
    "JoinCode": _obj(["code"], code=_str),
    "PushSubscription": _obj(["endpoint", "keys"], endpoint=_str, expirationTime={"type": ["number", "null"]},
                             keys=_obj(["p256dh", "auth"], p256dh=_str, auth=_str)),
}

# (method, path) -> (summary, request schema name or None)
OPERATIONS: dict[tuple[str, str], tuple[str, str | None]] = {
    ("POST", "/api/auth/login"): ("Sign in; sets the session cookie", "Login"),
    ("POST", "/api/auth/logout"): ("Sign out", None),
    ("POST", "/api/auth/tokens"): ("Create an API token (shown once)", "TokenRequest"),
    ("GET", "/api/exercises"): ("List built-in and own exercises", None),
    ("POST", "/api/exercises"): ("Add an own exercise", "Exercise"),
    ("GET", "/api/routines"): ("List routines", None),
    ("POST", "/api/routines"): ("Create a routine", "Routine"),
    ("GET", "/api/routines/{id}"): ("Get a routine", None),
    ("PUT", "/api/routines/{id}"): ("Replace a routine", "Routine"),
    ("DELETE", "/api/routines/{id}"): ("Delete a routine (assignments keep their copies)", None),
    ("GET", "/api/patients"): ("List patients (archived=1 for archived ones)", None),
    ("POST", "/api/patients"): ("Add a patient", "Patient"),
    ("GET", "/api/patients/{id}"): ("Get a patient", None),
    ("PATCH", "/api/patients/{id}"): ("Change a patient", "PatientPatch"),
    ("DELETE", "/api/patients/{id}"): ("Archive a patient", None),
    ("POST", "/api/patients/{id}/invites"): ("Create an invite link and code", None),
    ("GET", "/api/patients/{id}/devices"): ("List a patient's devices (last seen)", None),
    ("DELETE", "/api/patients/{id}/devices/{device_id}"): ("Revoke a device", None),
    ("POST", "/api/join"): ("Join with the invite code; sets the device cookie", "JoinCode"),
    ("GET", "/api/me"): ("The signed-in patient", None),
    ("PATCH", "/api/me"): ("Change the patient's time zone", None),
    ("DELETE", "/api/me/device"): ("Sign this device out", None),
    ("GET", "/api/me/today"): ("Today's slots in the patient's zone", None),
    ("GET", "/api/me/assignments/{id}"): ("An assigned routine in full", None),
    ("POST", "/api/me/completions"): ("Record a completion (idempotent by client_id)", "Completion"),
    ("GET", "/api/me/history"): ("The last days (days=28): done per day and pain", None),
    ("GET", "/api/push/public-key"): ("The VAPID public key (applicationServerKey)", None),
    ("POST", "/api/me/push-subscriptions"): ("Store this browser's push subscription (201 new, 200 known)", "PushSubscription"),
    ("DELETE", "/api/me/push-subscriptions"): ("Forget a push subscription by endpoint", None),
    ("POST", "/api/me/push-test"): ("Send a test reminder to the patient's devices (202)", None),
    ("GET", "/api/me/reminders"): ("Reminder settings and when the next one is due", None),
    ("PATCH", "/api/me/reminders"): ("Change quiet hours and nudges", None),
    ("POST", "/api/me/reminders/snooze"): ("Remind again in 30 minutes", None),
    ("GET", "/api/patients/{id}/assignments"): ("List a patient's assignments", None),
    ("POST", "/api/patients/{id}/assignments"): ("Assign a routine (copied as it is now)", "Assignment"),
    ("DELETE", "/api/assignments/{id}"): ("End an assignment now", None),
    ("GET", "/api/patients/{id}/sessions"): ("List clinic sessions", None),
    ("POST", "/api/patients/{id}/sessions"): ("Record a clinic session", "ClinicSession"),
    ("GET", "/api/patients/{id}/progress"): (
        "The last days (days=28): slots due and done per day, adherence, streak, pain, clinic sessions, flags", None),
    ("GET", "/api/patients/{id}/completions.csv"): ("Every completion as CSV (formula-safe)", None),
    ("GET", "/api/me/calendar.ics"): ("The homework times as iCalendar", None),
    ("GET", "/api/me/calendar-feed"): ("Whether a subscribable calendar URL is active", None),
    ("POST", "/api/me/calendar-feed"): ("Make a subscribable calendar URL (201 {url}, shown once; revokes older ones)", None),
    ("DELETE", "/api/me/calendar-feed"): ("Revoke the subscribable calendar URL", None),
}


def build(routes: list[BaseRoute], extra: dict[tuple[str, str], tuple[str, str | None]] | None = None) -> dict[str, Any]:
    """Describe every /api route; operations without an entry get their handler's docstring."""
    known = {**OPERATIONS, **(extra or {})}
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if not isinstance(route, Route) or not route.path.startswith("/api/"):
            continue
        for method in sorted((route.methods or set()) - {"HEAD"}):
            summary, body = known.get((method, route.path), ((route.endpoint.__doc__ or route.name).strip(), None))
            op: dict[str, Any] = {
                "summary": summary,
                "responses": {
                    "200": {"description": "OK"},
                    "4XX": {"description": "Error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                },
            }
            if body:
                op["requestBody"] = {"required": True, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{body}"}}}}
            params = [p for p in ("id", "device_id") if "{" + p + "}" in route.path]
            if params:
                op["parameters"] = [{"name": p, "in": "path", "required": True, "schema": _int} for p in params]
            paths.setdefault(route.path, {})[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "Homework API", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "hw_session"},
            },
        },
        "security": [{"bearer": []}, {"session": []}],
    }
