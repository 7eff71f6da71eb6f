"""The practitioner's JSON API (the contract others build on: keep paths and shapes)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import assignments, clinic_sessions, devices, exercises, insight, invites, patients, practitioners, routines
from ..validate import SIDES, Input
from ..web import ctx, current_practitioner, json, no_content, owned_patient, path_id, read_json, sign_in, sign_out


async def login(request: Request) -> Response:
    c = ctx(request)
    data = await read_json(request)
    email = data.text("email", max_len=254)
    password = data.text("password", max_len=1024)
    data.check()
    practitioner = await practitioners.authenticate(c.db, email=email, password=password, now=c.now())
    return await sign_in(request, json({"practitioner": practitioner.public()}), practitioner)


async def logout(request: Request) -> Response:
    return await sign_out(request, no_content())


async def create_token(request: Request) -> Response:
    c = ctx(request)
    data = await read_json(request)
    email = data.text("email", max_len=254)
    password = data.text("password", max_len=1024)
    label = data.text("label", max_len=100, required=False) or "API token"
    data.check()
    practitioner = await practitioners.authenticate(c.db, email=email, password=password, now=c.now())
    token_id, token = await practitioners.create_api_token(c.db, practitioner, label=label, now=c.now())
    return json({"id": token_id, "token": token, "label": label}, status=201)


# --- exercises ----------------------------------------------------------------------------

async def list_exercises(request: Request) -> Response:
    me = await current_practitioner(request)
    found = await exercises.list_visible(ctx(request).db, me.id)
    return json({"exercises": [e.public() for e in found]})


def exercise_fields(data: Input) -> dict[str, Any]:
    fields = {
        "name": data.text("name", max_len=120),
        "summary": data.text("summary", required=False, max_len=500),
        "safety": data.text("safety", required=False, max_len=500),
        "hold_seconds": data.integer("hold_seconds", lo=0, hi=600, required=False, default=20),
        "reps": data.integer("reps", lo=1, hi=100, required=False, default=1),
        "sets": data.integer("sets", lo=1, hi=20, required=False, default=1),
        "sides": data.choice("sides", SIDES, required=False, default="none"),
    }
    steps = []
    for n, step in enumerate(data.list("steps", most=20) if data.has("steps") else []):
        if not isinstance(step, str) or not step.strip() or len(step) > 500:
            data.error(f"steps[{n}]", "must be a non-empty string of at most 500 characters")
        else:
            steps.append(step.strip())
    fields["steps"] = steps
    return fields


async def create_exercise(request: Request) -> Response:
    me = await current_practitioner(request)
    c = ctx(request)
    data = await read_json(request)
    fields = exercise_fields(data)
    data.check()
    exercise = await exercises.create(c.db, me.id, now=c.now(), **fields)
    return json(exercise.public(), status=201)


# --- routines -----------------------------------------------------------------------------

def routine_fields(data: Input) -> dict[str, Any]:
    name = data.text("name", max_len=120)
    notes = data.text("notes", required=False, max_len=2000)
    items = []
    for n, raw in enumerate(data.list("items", most=30) if data.has("items") else []):
        item = data.nested(f"items[{n}]", raw)
        if item is None:
            continue
        values = (
            item.integer("exercise_id", lo=1, hi=2**62),
            item.integer("reps", lo=1, hi=100, required=False, default=None),
            item.integer("sets", lo=1, hi=20, required=False, default=None),
            item.integer("hold_seconds", lo=0, hi=600, required=False, default=None),
            item.choice("sides", SIDES, required=False, default=None),
            item.integer("rest_seconds", lo=0, hi=600, required=False, default=None),
            item.text("notes", required=False, max_len=500),
        )
        items.append(values)
    return {"name": name, "notes": notes, "items": items}


async def _resolve_items(request: Request, practitioner_id: int, raw_items: list[tuple[Any, ...]]) -> list[routines.Item]:
    """Fill each item's missing dose from its exercise's defaults."""
    ids = [i[0] for i in raw_items if i[0] is not None]
    found = await exercises.visible_by_id(ctx(request).db, practitioner_id, ids)
    items = []
    for exercise_id, reps, sets, hold, sides, rest, notes in raw_items:
        ex = found.get(exercise_id)
        items.append(
            routines.Item(
                exercise_id=exercise_id,
                reps=reps if reps is not None else (ex.reps if ex else 1),
                sets=sets if sets is not None else (ex.sets if ex else 1),
                hold_seconds=hold if hold is not None else (ex.hold_seconds if ex else 0),
                sides=sides if sides is not None else (ex.sides if ex else "none"),
                rest_seconds=rest if rest is not None else 30,
                notes=notes or "",
            )
        )
    return items


async def list_routines(request: Request) -> Response:
    me = await current_practitioner(request)
    found = await routines.list_for(ctx(request).db, me.id)
    return json({"routines": [r.public() for r in found]})


async def create_routine(request: Request) -> Response:
    me = await current_practitioner(request)
    c = ctx(request)
    data = await read_json(request)
    fields = routine_fields(data)
    data.check()
    items = await _resolve_items(request, me.id, fields.pop("items"))
    routine = await routines.create(c.db, me.id, items=items, now=c.now(), **fields)
    return json(routine.public(), status=201)


async def get_routine(request: Request) -> Response:
    me = await current_practitioner(request)
    routine = await routines.get(ctx(request).db, me.id, path_id(request))
    return json(routine.public())


async def put_routine(request: Request) -> Response:
    me = await current_practitioner(request)
    c = ctx(request)
    routine_id = path_id(request)
    await routines.get(c.db, me.id, routine_id)  # 404 before 400 for someone else's routine
    data = await read_json(request)
    fields = routine_fields(data)
    data.check()
    items = await _resolve_items(request, me.id, fields.pop("items"))
    routine = await routines.replace(c.db, me.id, routine_id, items=items, now=c.now(), **fields)
    return json(routine.public())


async def delete_routine(request: Request) -> Response:
    me = await current_practitioner(request)
    await routines.delete(ctx(request).db, me.id, path_id(request))
    return no_content()


# --- patients -----------------------------------------------------------------------------

async def list_patients(request: Request) -> Response:
    me = await current_practitioner(request)
    archived = request.query_params.get("archived") in ("1", "true")
    c = ctx(request)
    found = await patients.list_for(c.db, me.id, archived=archived)
    insights = await insight.for_patients(c.db, found, now=c.now())
    return json({"patients": [{**p.public(), **insights[p.id].public()} for p in found]})


async def create_patient(request: Request) -> Response:
    me = await current_practitioner(request)
    c = ctx(request)
    data = await read_json(request)
    name = data.text("name", max_len=120)
    timezone = data.timezone("timezone")
    data.check()
    patient = await patients.create(c.db, me.id, name=name, timezone=timezone, now=c.now())
    return json(patient.public(), status=201)


async def get_patient(request: Request) -> Response:
    me = await current_practitioner(request)
    patient = await patients.get(ctx(request).db, me.id, path_id(request))
    return json(patient.public())


async def patch_patient(request: Request) -> Response:
    me = await current_practitioner(request)
    c = ctx(request)
    patient_id = path_id(request)
    await patients.get(c.db, me.id, patient_id)
    data = await read_json(request)
    name = data.text("name", max_len=120, required=False, default=None)
    timezone = data.timezone("timezone", required=False)
    archived = data.boolean("archived", required=False)
    data.check()
    patient = await patients.update(c.db, me.id, patient_id, name=name, timezone=timezone, archived=archived)
    return json(patient.public())


async def archive_patient(request: Request) -> Response:
    me = await current_practitioner(request)
    await patients.update(ctx(request).db, me.id, path_id(request), archived=True)
    return no_content()


async def create_invite(request: Request) -> Response:
    c, patient = await owned_patient(request)
    invite = await invites.create(
        c.db, patient.id, base_url=c.settings.base_url, secret_key=c.settings.secret_key, now=c.now()
    )
    return json(invite.public(), status=201)


async def list_devices(request: Request) -> Response:
    c, patient = await owned_patient(request)
    found = await devices.list_for_patient(c.db, patient.id)
    return json({"devices": [d.public() for d in found]})


async def revoke_device(request: Request) -> Response:
    c, patient = await owned_patient(request)
    await devices.revoke(c.db, patient.id, path_id(request, "device_id"), now=c.now())
    return no_content()


# --- assignments --------------------------------------------------------------------------

def assignment_fields(data: Input) -> dict[str, Any]:
    return {
        "routine_id": data.integer("routine_id", lo=1, hi=2**62),
        "start_date": data.date("start_date"),
        "end_date": data.date("end_date", required=False),
        "days_mask": data.days("days"),
        "times": data.times("times"),
        "session_date": data.date("session_date", required=False),
        "note": data.text("note", required=False, max_len=2000),
    }


async def list_assignments(request: Request) -> Response:
    me = await current_practitioner(request)
    c = ctx(request)
    patient = await patients.get(c.db, me.id, path_id(request))
    found = await assignments.list_for_patient(c.db, me.id, patient.id)
    return json({"assignments": [a.public() for a in found]})


async def create_assignment(request: Request) -> Response:
    me = await current_practitioner(request)
    c = ctx(request)
    patient = await patients.get(c.db, me.id, path_id(request))
    data = await read_json(request)
    fields = assignment_fields(data)
    data.check()
    assignment = await assignments.create(c.db, me.id, patient.id, now=c.now(), **fields)
    return json(assignment.public(), status=201)


async def end_assignment(request: Request) -> Response:
    me = await current_practitioner(request)
    c = ctx(request)
    assignment = await assignments.end(c.db, me.id, path_id(request), now=c.now())
    return json(assignment.public())


# --- clinic sessions ----------------------------------------------------------------------

async def list_sessions(request: Request) -> Response:
    c, patient = await owned_patient(request)
    found = await clinic_sessions.list_for(c.db, patient.id)
    return json({"sessions": [s.public() for s in found]})


async def create_session(request: Request) -> Response:
    c, patient = await owned_patient(request)
    data = await read_json(request)
    day = data.date("date")
    note = data.text("note", required=False, max_len=2000)
    data.check()
    session = await clinic_sessions.create(c.db, patient.id, day=day, note=note, now=c.now())
    return json(session.public(), status=201)


routes = [
    Route("/api/auth/login", login, methods=["POST"]),
    Route("/api/auth/logout", logout, methods=["POST"]),
    Route("/api/auth/tokens", create_token, methods=["POST"]),
    Route("/api/exercises", list_exercises, methods=["GET"]),
    Route("/api/exercises", create_exercise, methods=["POST"]),
    Route("/api/routines", list_routines, methods=["GET"]),
    Route("/api/routines", create_routine, methods=["POST"]),
    Route("/api/routines/{id}", get_routine, methods=["GET"]),
    Route("/api/routines/{id}", put_routine, methods=["PUT"]),
    Route("/api/routines/{id}", delete_routine, methods=["DELETE"]),
    Route("/api/patients", list_patients, methods=["GET"]),
    Route("/api/patients", create_patient, methods=["POST"]),
    Route("/api/patients/{id}", get_patient, methods=["GET"]),
    Route("/api/patients/{id}", patch_patient, methods=["PATCH"]),
    Route("/api/patients/{id}", archive_patient, methods=["DELETE"]),
    Route("/api/patients/{id}/invites", create_invite, methods=["POST"]),
    Route("/api/patients/{id}/devices", list_devices, methods=["GET"]),
    Route("/api/patients/{id}/devices/{device_id}", revoke_device, methods=["DELETE"]),
    Route("/api/patients/{id}/assignments", list_assignments, methods=["GET"]),
    Route("/api/patients/{id}/assignments", create_assignment, methods=["POST"]),
    Route("/api/assignments/{id}", end_assignment, methods=["DELETE"]),
    Route("/api/patients/{id}/sessions", list_sessions, methods=["GET"]),
    Route("/api/patients/{id}/sessions", create_session, methods=["POST"]),
]
