"""The practitioner JSON API: shapes, flows and the rules behind them."""

from __future__ import annotations

import re

from server import invites

from conftest import Clock, Harness


def test_exercise_library_has_builtins_and_own(harness: Harness) -> None:
    me = harness.practitioner("ann@clinic.example")
    library = harness.client.get("/api/exercises", headers=me["bearer"]).json()["exercises"]
    assert 10 <= len(library) <= 12
    first = library[0]
    assert set(first) >= {"id", "name", "summary", "steps", "safety", "hold_seconds", "reps", "sets", "sides", "image_url", "builtin"}
    assert all(e["builtin"] for e in library)
    assert harness.client.get(library[0]["image_url"]).status_code == 200
    mine = harness.post(me, "/api/exercises", {
        "name": "Wall slide", "steps": ["Stand with your back to a wall.", "Slide down a little."],
        "safety": "Stop if your knee hurts.", "hold_seconds": 10, "reps": 5, "sets": 2, "sides": "none",
    })
    assert mine["builtin"] is False and mine["steps"][0].startswith("Stand")
    names = [e["name"] for e in harness.client.get("/api/exercises", headers=me["bearer"]).json()["exercises"]]
    assert names[-1] == "Wall slide"


def test_routine_crud_and_defaults_from_the_exercise(harness: Harness) -> None:
    me = harness.practitioner("ann@clinic.example")
    library = harness.client.get("/api/exercises", headers=me["bearer"]).json()["exercises"]
    ex = library[0]
    routine = harness.post(me, "/api/routines", {
        "name": "Week 1", "notes": "gentle",
        "items": [{"exercise_id": ex["id"]}, {"exercise_id": library[1]["id"], "reps": 7, "sides": "left", "rest_seconds": 15}],
    })
    assert routine["items"][0]["reps"] == ex["reps"] and routine["items"][0]["hold_seconds"] == ex["hold_seconds"]
    assert routine["items"][1] == {**routine["items"][1], "reps": 7, "sides": "left", "rest_seconds": 15}
    rid = routine["id"]
    got = harness.client.get(f"/api/routines/{rid}", headers=me["bearer"]).json()
    assert got == routine
    put = harness.client.put(f"/api/routines/{rid}", headers=me["bearer"],
                             json={"name": "Week 2", "items": [{"exercise_id": library[2]["id"]}]})
    assert put.status_code == 200 and put.json()["name"] == "Week 2" and len(put.json()["items"]) == 1
    assert harness.client.get("/api/routines", headers=me["bearer"]).json()["routines"][0]["name"] == "Week 2"
    assert harness.client.delete(f"/api/routines/{rid}", headers=me["bearer"]).status_code == 204
    assert harness.client.get(f"/api/routines/{rid}", headers=me["bearer"]).status_code == 404


def test_routine_rejects_unknown_exercise_naming_the_item(harness: Harness) -> None:
    me = harness.practitioner("ann@clinic.example")
    response = harness.client.post("/api/routines", headers=me["bearer"],
                                   json={"name": "x", "items": [{"exercise_id": 999999}]})
    assert response.status_code == 400
    assert "items[0].exercise_id" in response.json()["error"]["fields"]


def test_assignment_is_a_frozen_copy_of_the_routine(harness: Harness) -> None:
    me = harness.practitioner("ann@clinic.example")
    patient = harness.patient(me)
    routine = harness.routine(me, count=3)
    assignment = harness.assignment(me, patient["id"], routine["id"], note="Go gently", session_date="2026-03-01")
    assert assignment["days"] == ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    assert assignment["times"] == ["08:00", "19:30"]
    assert assignment["routine"]["name"] == "Back basics"
    items = assignment["routine"]["items"]
    assert len(items) == 3 and items[0]["steps"] and items[0]["safety"]
    assert assignment["routine"]["estimated_minutes"] >= 1
    # Editing or deleting the routine later changes nothing the patient was given.
    harness.client.put(f"/api/routines/{routine['id']}", headers=me["bearer"], json={"name": "Changed", "items": []})
    harness.client.delete(f"/api/routines/{routine['id']}", headers=me["bearer"])
    listed = harness.client.get(f"/api/patients/{patient['id']}/assignments", headers=me["bearer"]).json()
    assert listed["assignments"][0]["routine"] == assignment["routine"]


def test_assignment_validation_names_fields(harness: Harness) -> None:
    me = harness.practitioner("ann@clinic.example")
    patient = harness.patient(me)
    routine = harness.routine(me)
    url = f"/api/patients/{patient['id']}/assignments"
    cases = [
        ({"days": ["funday"]}, "days"),
        ({"days": []}, "days"),
        ({"times": []}, "times"),
        ({"times": ["8am"]}, "times"),
        ({"times": ["25:00"]}, "times"),
        ({"times": ["08:00"] * 2}, "times"),
        ({"times": [f"0{h}:00" for h in range(7)]}, "times"),
        ({"start_date": "2026-02-30"}, "start_date"),
        ({"end_date": "2026-03-01"}, "end_date"),
        ({"routine_id": 424242}, "routine_id"),
        ({"routine_id": "1"}, "routine_id"),
    ]
    for override, field in cases:
        body = {"routine_id": routine["id"], "start_date": "2026-03-02", "days": ["mon"], "times": ["08:00"], **override}
        response = harness.client.post(url, headers=me["bearer"], json=body)
        assert response.status_code == 400, (override, response.text)
        assert field in response.json()["error"]["fields"], (override, response.json())


def test_ending_an_assignment(harness: Harness, clock: Clock) -> None:
    me = harness.practitioner("ann@clinic.example")
    patient = harness.patient(me, timezone="America/New_York")
    assignment = harness.assignment(me, patient["id"], harness.routine(me)["id"], end_date="2026-06-01")
    response = harness.client.delete(f"/api/assignments/{assignment['id']}", headers=me["bearer"])
    assert response.status_code == 200
    ended = response.json()
    assert ended["active"] is False and ended["ended_at"] == "2026-03-02T09:00:00Z"
    assert ended["end_date"] == "2026-03-02"  # 04:00 in New York, still the 2nd there


def test_patients_crud_and_archive(harness: Harness) -> None:
    me = harness.practitioner("ann@clinic.example")
    patient = harness.patient(me, name="Jo", timezone="Asia/Kolkata")
    assert patient["timezone"] == "Asia/Kolkata" and patient["archived"] is False
    url = f"/api/patients/{patient['id']}"
    assert harness.client.patch(url, headers=me["bearer"], json={"timezone": "Mars/Olympus"}).status_code == 400
    patched = harness.client.patch(url, headers=me["bearer"], json={"name": "Jo B", "id": 99, "unknown": 1}).json()
    assert patched["name"] == "Jo B" and patched["id"] == patient["id"] and patched["timezone"] == "Asia/Kolkata"
    assert harness.client.delete(url, headers=me["bearer"]).status_code == 204
    assert harness.client.get("/api/patients", headers=me["bearer"]).json()["patients"] == []
    archived = harness.client.get("/api/patients?archived=1", headers=me["bearer"]).json()["patients"]
    assert archived[0]["archived"] is True


def test_clinic_sessions(harness: Harness) -> None:
    me = harness.practitioner("ann@clinic.example")
    patient = harness.patient(me)
    url = f"/api/patients/{patient['id']}/sessions"
    harness.post(me, url, {"date": "2026-03-05", "note": "acupuncture"})
    harness.post(me, url, {"date": "2026-03-01"})
    sessions = harness.client.get(url, headers=me["bearer"]).json()["sessions"]
    assert [s["date"] for s in sessions] == ["2026-03-01", "2026-03-05"]
    assert harness.client.post(url, headers=me["bearer"], json={"date": "yesterday"}).status_code == 400


def test_invite_link_and_code_single_use_and_expiry(harness: Harness, clock: Clock) -> None:
    me = harness.practitioner("ann@clinic.example")
    patient = harness.patient(me)
    url = f"/api/patients/{patient['id']}/invites"
    invite = harness.post(me, url, {})
    assert invite["url"].startswith("http://testserver/join/")
    assert len(invite["code"]) == 8 and not set(invite["code"]) & set("01OIL")
    assert invite["expires_at"] == "2026-03-09T09:00:00Z"
    secret = harness.ctx.settings.secret_key
    token = invite["url"].rsplit("/", 1)[1]
    redeem = lambda **kw: harness.run(invites.redeem, harness.ctx.db, secret_key=secret, now=clock(), **kw)  # noqa: E731
    assert redeem(token=token) == patient["id"]
    assert redeem(token=token) is None  # single use
    assert redeem(code=invite["code"]) is None  # the code belonged to the same invite
    second = harness.post(me, url, {})
    typed = second["code"].lower()[:4] + "-" + second["code"].lower()[4:]
    assert redeem(code=typed) == patient["id"]  # any case, with a dash
    third = harness.post(me, url, {})
    clock.advance(days=7, seconds=1)
    assert redeem(token=third["url"].rsplit("/", 1)[1]) is None  # expired
    stored = harness.run(harness.ctx.db.fetchall, "SELECT token_hash, code_hash FROM invites")
    assert all(third["code"].encode() not in bytes(r["code_hash"]) for r in stored)


def test_patient_page_shows_the_invite_as_a_qr_code(harness: Harness) -> None:
    me = harness.practitioner("ann@clinic.example")
    patient = harness.patient(me)
    page = harness.client.post(f"/patients/{patient['id']}/invite", headers=me["cookie"])
    assert page.status_code == 200
    assert "<svg" in page.text and "/join/" in page.text
    code = re.search(r'class="code mono">([A-Z2-9]{4}-[A-Z2-9]{4})<', page.text)
    assert code is not None
    # The code on the page is a live one.
    assert harness.run(invites.redeem, harness.ctx.db, code=code.group(1), secret_key=harness.ctx.settings.secret_key,
                       now=harness.ctx.now()) == patient["id"]


def test_openapi_lists_every_api_route(harness: Harness) -> None:
    from starlette.routing import Route

    spec = harness.client.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    for route in harness.client.app.routes:
        if isinstance(route, Route) and route.path.startswith("/api/"):
            for method in route.methods - {"HEAD"}:
                assert method.lower() in spec["paths"][route.path], (method, route.path)
