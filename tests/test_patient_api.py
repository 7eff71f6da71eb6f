"""The patient's JSON API: joining, today, the assignment, completions and history."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import Clock, Harness, counted_transactions
from starlette.testclient import TestClient

from server import completions, devices
from server.app import create_app
from server.config import Settings
from server.db import Database
from server.errors import AppError


@pytest.fixture
def setup(harness: Harness) -> dict[str, Any]:
    doc = harness.practitioner("doc@clinic.example")
    patient = harness.patient(doc, name="Sam", timezone="Europe/London")
    routine = harness.routine(doc, count=3)
    assignment = harness.assignment(doc, patient["id"], routine["id"], note="Gently!", end_date="2026-03-31")
    cookie = harness.join(doc, patient["id"])
    return {"doc": doc, "patient": patient, "assignment": assignment, "me": {"Cookie": cookie}}


def complete(harness: Harness, me: dict[str, str], assignment_id: int, **fields: Any) -> Any:
    body = {"client_id": fields.pop("client_id", None) or f"c-{len(str(fields))}-{id(fields)}",
            "assignment_id": assignment_id, "date": "2026-03-02", "pain_after": 3, **fields}
    # Encoded here, escaped to ASCII (as JSON.stringify escapes a lone surrogate), so one can be sent.
    return harness.client.post("/api/me/completions", content=json.dumps(body),
                               headers={**me, "Content-Type": "application/json"})


def test_join_by_code_sets_a_device_cookie(harness: Harness) -> None:
    doc = harness.practitioner("doc@clinic.example")
    patient = harness.patient(doc, name="Sam")
    invite = harness.post(doc, f"/api/patients/{patient['id']}/invites", {})
    code = invite["code"].lower()
    response = harness.client.post("/api/join", json={"code": f" {code[:4]} - {code[4:]} "},
                                   headers={"User-Agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0) Safari/604.1"})
    assert response.status_code == 200, response.text
    assert response.json()["patient"] == {"id": patient["id"], "name": "Sam", "timezone": "Europe/London"}
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("hw_device=") and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Max-Age=34560000" in cookie
    assert harness.client.get("/api/me").json()["patient"]["name"] == "Sam"
    listed = harness.client.get(f"/api/patients/{patient['id']}/devices", headers=doc["bearer"]).json()["devices"]
    assert listed[0]["label"] == "iPhone · Safari"
    assert harness.client.get(f"/api/patients/{patient['id']}", headers=doc["bearer"]).json()["joined_at"]
    # Single use.
    harness.client.cookies.clear()
    assert harness.client.post("/api/join", json={"code": code}).status_code == 401


def test_wrong_codes_are_limited_per_client(harness: Harness, clock: Clock) -> None:
    doc = harness.practitioner("doc@clinic.example")
    patient = harness.patient(doc)
    invite = harness.post(doc, f"/api/patients/{patient['id']}/invites", {})
    for n in range(10):
        bad = harness.client.post("/api/join", json={"code": f"ZZZZZZZ{n + 2}"})
        assert bad.status_code == 401 and "code" in bad.json()["error"]["fields"]
    limited = harness.client.post("/api/join", json={"code": invite["code"]})
    assert limited.status_code == 429 and "retry-after" in limited.headers
    # Another phone, at another address (TestClient takes one address at start; its transport holds it).
    harness.client._transport.client = ("203.0.113.7", 50000)
    assert harness.client.post("/api/join", json={"code": "ZZZZZZZ2"}).status_code == 401  # not limited
    harness.client._transport.client = ("testclient", 50000)
    assert harness.client.post("/api/join", json={"code": invite["code"]}).status_code == 429
    clock.advance(minutes=16)
    assert harness.client.post("/api/join", json={"code": invite["code"]}).status_code == 200


def test_device_tokens_are_stored_hashed(harness: Harness, setup: dict[str, Any]) -> None:
    token = harness.ctx.device_signer.unsign(setup["me"]["Cookie"].split("=", 1)[1])
    assert token and harness.client.get("/api/me", headers=setup["me"]).status_code == 200
    rows = harness.run(harness.ctx.db.fetchall, "SELECT * FROM devices")
    values = [v for row in rows for v in tuple(row)]
    assert values and not any(token in (v.decode("latin-1") if isinstance(v, bytes) else str(v)) for v in values)


def test_under_https_the_device_cookie_is_secure(settings: Settings, clock: Clock) -> None:
    base = "https://clinic.example.org"
    with TestClient(create_app(dataclasses.replace(settings, base_url=base), clock=clock), base_url=base) as client:
        h = Harness(client)
        doc = h.practitioner("doc@clinic.example")
        patient = h.patient(doc)
        by_link = h.post(doc, f"/api/patients/{patient['id']}/invites", {})
        by_code = h.post(doc, f"/api/patients/{patient['id']}/invites", {})
        link = client.get(by_link["url"].removeprefix(base), follow_redirects=False)
        client.cookies.clear()
        code = client.post("/api/join", json={"code": by_code["code"]})
        for response in (link, code):
            cookie = response.headers["set-cookie"]
            assert cookie.startswith(f"{devices.COOKIE}=") and "; Secure" in cookie and "HttpOnly" in cookie


def test_patch_me_sets_the_time_zone_and_names_a_bad_one(harness: Harness, setup: dict[str, Any]) -> None:
    me = setup["me"]
    response = harness.client.patch("/api/me", json={"timezone": "America/New_York"}, headers=me)
    assert response.status_code == 200
    assert response.json()["patient"]["timezone"] == "America/New_York" and "reminders" in response.json()
    bad = harness.client.patch("/api/me", json={"timezone": "Mars/Olympus_Mons"}, headers=me)
    assert bad.status_code == 400 and "timezone" in bad.json()["error"]["fields"]
    assert harness.client.get("/api/me", headers=me).json()["patient"]["timezone"] == "America/New_York"


def test_the_practitioners_page_lists_the_phone_and_revokes_it(harness: Harness, setup: dict[str, Any]) -> None:
    doc, patient, me = setup["doc"], setup["patient"], setup["me"]
    page = harness.client.get(f"/patients/{patient['id']}", headers=doc["cookie"]).text
    device = harness.run(harness.ctx.db.fetchone, "SELECT id, last_seen_at FROM devices WHERE patient_id = ?",
                         (patient["id"],))
    assert f"last seen {device['last_seen_at'][:16].replace('T', ' ')} UTC" in page
    action = f"/patients/{patient['id']}/devices/{device['id']}/revoke"
    assert f'action="{action}"' in page
    harness.client.cookies.clear()
    revoked = harness.client.post(action, headers=doc["cookie"], follow_redirects=False)
    assert revoked.status_code == 303
    assert harness.client.get("/api/me/today", headers=me).status_code == 401
    assert "revoked 2026-03-02" in harness.client.get(f"/patients/{patient['id']}", headers=doc["cookie"]).text


def test_revoked_device_gets_401(harness: Harness, setup: dict[str, Any]) -> None:
    me, doc, patient = setup["me"], setup["doc"], setup["patient"]
    assert harness.client.get("/api/me/today", headers=me).status_code == 200
    device = harness.client.get(f"/api/patients/{patient['id']}/devices", headers=doc["bearer"]).json()["devices"][0]
    assert harness.client.delete(f"/api/patients/{patient['id']}/devices/{device['id']}", headers=doc["bearer"]).status_code == 204
    response = harness.client.get("/api/me/today", headers=me)
    assert response.status_code == 401 and response.json()["error"]["code"] == "unauthorized"


def test_last_seen_is_noted_hourly_in_one_transaction_for_requests_at_once(
    harness: Harness, clock: Clock, setup: dict[str, Any]
) -> None:
    doc, patient = setup["doc"], setup["patient"]
    other = harness.patient(doc, name="Alex")
    cookies = [setup["me"]["Cookie"], harness.join(doc, other["id"])]
    tokens = [harness.ctx.device_signer.unsign(c.split("=", 1)[1]) for c in cookies]

    def last_seen(patient_id: int) -> str:
        found = harness.client.get(f"/api/patients/{patient_id}/devices", headers=doc["bearer"]).json()["devices"]
        return found[0]["last_seen_at"]  # type: ignore[no-any-return]

    joined = last_seen(patient["id"])
    clock.advance(minutes=59)
    assert harness.client.get("/api/me/today", headers=setup["me"]).status_code == 200
    assert last_seen(patient["id"]) == joined  # within the hour: no write

    async def at_once(count: int) -> list[int]:
        db = harness.ctx.db
        with counted_transactions(db) as transactions:
            found = await asyncio.gather(*(devices.authenticate(db, tokens[i % 2], now=harness.ctx.now())
                                           for i in range(count)))
        assert all(me is not None for me in found)
        return transactions

    clock.advance(minutes=2)
    assert len(harness.run(at_once, 12)) == 1  # both devices, six requests each: one write
    assert last_seen(patient["id"]) == last_seen(other["id"]) == "2026-03-02T10:01:00Z"
    assert len(harness.run(at_once, 12)) == 0  # now fresh: no write at all


def test_patient_can_sign_out_this_device(harness: Harness, setup: dict[str, Any]) -> None:
    me = setup["me"]
    assert harness.client.delete("/api/me/device", headers=me).status_code == 204
    assert harness.client.get("/api/me", headers=me).status_code == 401


def test_archived_patient_is_signed_out(harness: Harness, setup: dict[str, Any]) -> None:
    harness.client.delete(f"/api/patients/{setup['patient']['id']}", headers=setup["doc"]["bearer"])
    assert harness.client.get("/api/me", headers=setup["me"]).status_code == 401


def test_today_lists_local_slots(harness: Harness, setup: dict[str, Any], clock: Clock) -> None:
    today = harness.client.get("/api/me/today", headers=setup["me"]).json()
    assert today["date"] == "2026-03-02"
    assert [s["time"] for s in today["slots"]] == ["08:00", "19:30"]
    slot = today["slots"][0]
    assert slot["assignment_id"] == setup["assignment"]["id"] and slot["done"] is False
    assert slot["routine"]["name"] == "Back basics" and slot["routine"]["items"] == 3
    assert slot["routine"]["estimated_minutes"] >= 1
    assert today["notes"][0]["note"] == "Gently!"
    # Late evening UTC is already tomorrow in Sydney.
    harness.client.patch("/api/me", json={"timezone": "Australia/Sydney"}, headers=setup["me"])
    clock.advance(hours=14)  # 23:00 UTC = 10:00 next day in Sydney
    assert harness.client.get("/api/me/today", headers=setup["me"]).json()["date"] == "2026-03-03"


def test_completion_is_idempotent_by_client_id(harness: Harness, setup: dict[str, Any]) -> None:
    me, aid = setup["me"], setup["assignment"]["id"]
    first = complete(harness, me, aid, client_id="3f1c2b9e-0000-4000-8000-000000000001", time="08:00",
                     completed_at="2026-03-02T08:40:00+00:00", pain_before=5, pain_after=3, difficulty="ok", note="fine")
    assert first.status_code == 201
    body = first.json()
    assert body["time"] == "08:00" and body["pain_after"] == 3 and body["completed_at"] == "2026-03-02T08:40:00Z"
    again = complete(harness, me, aid, client_id="3f1c2b9e-0000-4000-8000-000000000001", pain_after=9)
    assert again.status_code == 200 and again.json() == body
    rows = harness.run(harness.ctx.db.fetchval, "SELECT count(*) FROM completions")
    assert rows == 1
    today = harness.client.get("/api/me/today", headers=me).json()
    assert [s["done"] for s in today["slots"]] == [True, False]


def test_completion_fills_the_nearest_open_slot(harness: Harness, setup: dict[str, Any], clock: Clock) -> None:
    me, aid = setup["me"], setup["assignment"]["id"]
    clock.advance(hours=10)  # 19:00 in London
    # Done at 17:00 local with no slot named: the evening slot is nearer.
    evening = complete(harness, me, aid, client_id="aaaaaaaa-1", completed_at="2026-03-02T17:00:00Z")
    assert evening.json()["time"] == "19:30"
    # Next one at 18:00 goes to the only open slot, the morning one.
    morning = complete(harness, me, aid, client_id="aaaaaaaa-2", completed_at="2026-03-02T18:00:00Z")
    assert morning.json()["time"] == "08:00"
    extra = complete(harness, me, aid, client_id="aaaaaaaa-3", completed_at="2026-03-02T18:30:00Z")
    assert extra.status_code == 201 and extra.json()["time"] is None
    assert harness.client.get("/api/me/today", headers=me).json()["streak_days"] == 1


def test_completion_validation_names_fields(harness: Harness, setup: dict[str, Any], clock: Clock) -> None:
    me, aid = setup["me"], setup["assignment"]["id"]
    cases = [
        ({"pain_after": 11}, "pain_after"),
        ({"pain_after": 2**70}, "pain_after"),  # valid JSON all the same: the field is named, not the body
        ({"pain_before": -1}, "pain_before"),
        ({"pain_after": "3"}, "pain_after"),
        ({"difficulty": "brutal"}, "difficulty"),
        ({"date": "2026-02-20"}, "date"),  # before the start date
        ({"date": "2026-04-01"}, "date"),  # after the end date (and in the future)
        ({"date": "2026-03-05"}, "date"),  # in the future
        ({"completed_at": "2026-03-02T10:00:00"}, "completed_at"),  # no offset
        ({"completed_at": "2026-03-03T10:00:00Z"}, "completed_at"),  # in the future
        ({"client_id": "short"}, "client_id"),
        ({"client_id": "has spaces in it"}, "client_id"),
        ({"time": "7pm"}, "time"),
        ({"note": "x" * 1001}, "note"),
        ({"note": "\ud800 half a character"}, "note"),  # a lone surrogate: no UTF-8 for it
    ]
    for override, field in cases:
        client_id = override.pop("client_id", "valid-client-id")
        response = complete(harness, me, aid, client_id=client_id, **override)
        assert 400 <= response.status_code < 500, (override, response.text)
        assert field in response.json()["error"]["fields"], (override, response.json())
    assert harness.run(harness.ctx.db.fetchval, "SELECT count(*) FROM completions") == 0


def test_another_patients_assignment_is_404(harness: Harness, setup: dict[str, Any]) -> None:
    doc = setup["doc"]
    other = harness.patient(doc, name="Other")
    theirs = harness.assignment(doc, other["id"], harness.routine(doc)["id"])
    me = setup["me"]
    assert harness.client.get(f"/api/me/assignments/{theirs['id']}", headers=me).status_code == 404
    response = complete(harness, me, theirs["id"], client_id="bbbbbbbb-1")
    assert response.status_code == 404 and "assignment_id" in response.json()["error"]["fields"]
    # Another practitioner's patient's too.
    stranger = harness.practitioner("stranger@clinic.example")
    foreign = harness.assignment(stranger, harness.patient(stranger)["id"], harness.routine(stranger)["id"])
    assert harness.client.get(f"/api/me/assignments/{foreign['id']}", headers=me).status_code == 404


def test_client_ids_are_scoped_to_the_patient(harness: Harness, setup: dict[str, Any]) -> None:
    """Another patient reusing a client_id never sees or overwrites the first patient's row."""
    doc = setup["doc"]
    other = harness.patient(doc, name="Other")
    theirs = harness.assignment(doc, other["id"], harness.routine(doc)["id"])
    other_me = {"Cookie": harness.join(doc, other["id"])}
    mine = complete(harness, setup["me"], setup["assignment"]["id"], client_id="shared-id-123", note="mine")
    assert mine.status_code == 201
    response = complete(harness, other_me, theirs["id"], client_id="shared-id-123", note="theirs")
    assert response.status_code == 201 and response.json()["note"] == "theirs"


def test_assignment_in_full(harness: Harness, setup: dict[str, Any]) -> None:
    body = harness.client.get(f"/api/me/assignments/{setup['assignment']['id']}", headers=setup["me"]).json()
    items = body["routine"]["items"]
    assert len(items) == 3
    assert items[0]["steps"] and items[0]["safety"] and items[0]["image_url"].startswith("/static/exercises/")


def test_history(harness: Harness, setup: dict[str, Any], clock: Clock) -> None:
    me, aid = setup["me"], setup["assignment"]["id"]
    complete(harness, me, aid, client_id="hist-0001", time="08:00", pain_before=6, pain_after=4)
    clock.advance(days=1)
    complete(harness, me, aid, client_id="hist-0002", date="2026-03-03", time="08:00", pain_after=2)
    complete(harness, me, aid, client_id="hist-0003", date="2026-03-03", time="19:30", pain_after=2)
    history = harness.client.get("/api/me/history?days=7", headers=me).json()
    assert history["from"] == "2026-02-25" and history["to"] == "2026-03-03"
    by_date = {d["date"]: d for d in history["days"]}
    # Joined on the 2nd: nothing counts against the patient before that.
    assert by_date["2026-03-01"] == {"date": "2026-03-01", "scheduled": 0, "completed": 0}
    assert by_date["2026-03-02"] == {"date": "2026-03-02", "scheduled": 2, "completed": 1}
    assert by_date["2026-03-03"] == {"date": "2026-03-03", "scheduled": 2, "completed": 2}
    assert [c["pain_after"] for c in history["completions"]] == [4, 2, 2]
    assert history["streak_days"] == 1
    for bad in ("0", "abc", "1000", "-3"):
        assert harness.client.get(f"/api/me/history?days={bad}", headers=me).status_code == 400


def test_patient_routes_need_a_device(harness: Harness, setup: dict[str, Any]) -> None:
    doc = setup["doc"]
    aid = setup["assignment"]["id"]
    for method, path in (("GET", "/api/me"), ("PATCH", "/api/me"), ("GET", "/api/me/today"),
                         ("GET", f"/api/me/assignments/{aid}"), ("POST", "/api/me/completions"),
                         ("GET", "/api/me/history"), ("DELETE", "/api/me/device")):
        for headers in ({}, doc["bearer"], doc["cookie"], {"Cookie": "hw_device=forged.value"}):
            response = harness.client.request(method, path, headers=headers, json={})
            assert response.status_code == 401, (method, path, headers)


def test_a_streak_longer_than_the_first_read_is_counted_in_full(harness: Harness, clock: Clock) -> None:
    doc = harness.practitioner("doc@clinic.example")
    patient = harness.patient(doc)
    assignment = harness.assignment(doc, patient["id"], harness.routine(doc)["id"], times=["08:00"])
    me = {"Cookie": harness.join(doc, patient["id"])}
    for n in range(20):
        day = f"2026-03-{2 + n:02d}"
        response = complete(harness, me, assignment["id"], client_id=f"streak-{n:04d}", date=day, time="08:00")
        assert response.status_code == 201, response.text
        clock.advance(days=1)
    assert harness.client.get("/api/me/today", headers=me).json()["streak_days"] == 20
    assert harness.client.get("/api/me/history?days=28", headers=me).json()["streak_days"] == 20


def revision(harness: Harness, patient_id: int) -> int:
    return int(harness.run(harness.ctx.db.fetchval, "SELECT revision FROM patients WHERE id = ?", (patient_id,)))


def test_every_write_that_can_move_a_streak_bumps_the_revision(harness: Harness, setup: dict[str, Any]) -> None:
    pid, aid = setup["patient"]["id"], setup["assignment"]["id"]
    db = harness.ctx.db

    def bumps(sql: str, *params: Any) -> bool:
        before = revision(harness, pid)
        harness.run(db.execute, sql, params)
        return revision(harness, pid) > before

    assert complete(harness, setup["me"], aid, client_id="rev-00001").status_code == 201
    assert bumps("UPDATE completions SET pain_after = 4 WHERE patient_id = ?", pid)
    assert bumps("UPDATE assignments SET times = '[\"07:00\"]' WHERE id = ?", aid)
    assert bumps("UPDATE assignments SET days = 3 WHERE id = ?", aid)
    assert bumps("UPDATE assignments SET end_date = '2026-03-20' WHERE id = ?", aid)
    assert bumps("UPDATE patients SET timezone = 'Asia/Tokyo' WHERE id = ?", pid)
    assert bumps("UPDATE patients SET joined_at = '2026-03-01T00:00:00Z' WHERE id = ?", pid)
    assert bumps("DELETE FROM completions WHERE patient_id = ?", pid)
    # The reminder planner rewrites these all day; they do not touch what was scheduled or done.
    assert not bumps("UPDATE assignments SET next_due_at = '2026-03-03T08:00:00Z' WHERE id = ?", aid)
    assert not bumps("UPDATE patients SET name = 'Samantha' WHERE id = ?", pid)
    before = revision(harness, pid)
    harness.assignment(setup["doc"], pid, harness.routine(setup["doc"])["id"])
    assert revision(harness, pid) > before
    before = revision(harness, pid)
    assert harness.client.delete(f"/api/assignments/{aid}", headers=setup["doc"]["bearer"]).status_code in (200, 204)
    assert revision(harness, pid) > before


def test_a_remembered_streak_follows_late_uploads_and_the_calendar(harness: Harness, clock: Clock) -> None:
    doc = harness.practitioner("doc@clinic.example")
    patient = harness.patient(doc)
    assignment = harness.assignment(doc, patient["id"], harness.routine(doc)["id"], times=["08:00"])
    me = {"Cookie": harness.join(doc, patient["id"])}
    clock.advance(days=3)  # Thursday 5 March, 09:00 in London: today's 08:00 slot is still open

    def streak() -> int:
        return int(harness.client.get("/api/me/today", headers=me).json()["streak_days"])

    assert streak() == 0
    # Uploads from a phone that was offline for days arrive late, newest first.
    for n, day in enumerate(("2026-03-04", "2026-03-03", "2026-03-02")):
        assert complete(harness, me, assignment["id"], client_id=f"late-{n:04d}", date=day, time="08:00").status_code == 201
        assert streak() == n + 1
    assert complete(harness, me, assignment["id"], client_id="today-0001", date="2026-03-05", time="08:00").status_code == 201
    assert streak() == 4
    clock.advance(days=1)  # Friday: today still open, the streak stands
    assert streak() == 4
    clock.advance(days=1)  # Saturday: Friday was missed
    assert streak() == 0


@pytest.mark.parametrize("seed", range(12))
def test_today_for_a_device_matches_today_computed_the_long_way(harness: Harness, clock: Clock, seed: int) -> None:
    """The one-query path (auth and today together, streak remembered) against completions.today."""
    rng = random.Random(seed)
    doc = harness.practitioner("doc@clinic.example")
    zones = ["Pacific/Kiritimati", "Pacific/Pago_Pago", "America/New_York", "Asia/Kolkata", "Europe/London",
             "Australia/Lord_Howe"]
    routine = harness.routine(doc)
    people = []
    for n in range(3):
        patient = harness.patient(doc, name=f"P{n}", timezone=rng.choice(zones))
        for _ in range(rng.randint(0, 3)):
            start = f"2026-03-{rng.randint(1, 8):02d}"
            days = rng.sample(["mon", "tue", "wed", "thu", "fri", "sat", "sun"], rng.randint(1, 7))
            times = sorted(rng.sample(["00:30", "06:00", "08:00", "12:15", "19:30", "23:45"], rng.randint(1, 3)))
            end = rng.choice([None, f"2026-03-{rng.randint(8, 20):02d}"])
            harness.assignment(doc, patient["id"], routine["id"], start_date=start, days=days, times=times,
                               end_date=end, note=rng.choice(["", "Slowly"]))
        people.append((patient, {"Cookie": harness.join(doc, patient["id"])}))
    clock.now = clock.now.replace(hour=0) + timedelta(days=rng.randint(0, 12), hours=rng.randint(0, 23),
                                                       minutes=rng.choice([0, 29, 59]))
    for patient, me in people:
        listed = harness.client.get(f"/api/patients/{patient['id']}/assignments", headers=doc["bearer"]).json()
        for a in listed["assignments"]:
            if rng.random() < 0.3:
                harness.client.delete(f"/api/assignments/{a['id']}", headers=doc["bearer"])
                continue
            for back in range(rng.randint(0, 6)):
                day = (clock.now - timedelta(days=back)).date().isoformat()
                complete(harness, me, a["id"], client_id=f"r{seed}-{a['id']}-{back:03d}", date=day,
                         time=rng.choice(a["times"]))
    clock.advance(hours=rng.randint(0, 30))  # an assignment ended earlier still shows that day's earlier slots
    for patient, me in people:
        for _ in range(2):  # the second answer comes with the remembered streak
            fast = harness.client.get("/api/me/today", headers=me)
            assert fast.status_code == 200, fast.text
            tz = harness.client.get("/api/me", headers=me).json()["patient"]["timezone"]
            joined = harness.client.get(f"/api/patients/{patient['id']}", headers=doc["bearer"]).json()["joined_at"]
            slow = harness.run(completions.today, harness.ctx.db, patient_id=patient["id"], timezone=tz,
                               joined_at=joined, now=clock.now)
            assert fast.json() == slow, (seed, patient["id"])
    # Opened at the same moment, the phones' reads go to SQLite as one batch: each still gets
    # only its own patient's day, and a revoked or unknown device gets nothing.
    tokens = [harness.ctx.device_signer.unsign(me["Cookie"].split("=", 1)[1]) for _, me in people]
    revoked = harness.join(doc, people[0][0]["id"])
    assert harness.client.delete("/api/me/device", headers={"Cookie": revoked}).status_code == 204
    tokens += [harness.ctx.device_signer.unsign(revoked.split("=", 1)[1]), "no-such-device"]

    async def together() -> list[Any]:
        memo = completions.StreakMemo()
        return await asyncio.gather(*(completions.today_for_device(harness.ctx.db, memo, t, now=clock.now) for t in tokens))

    answers = harness.run(together)
    assert answers[-2:] == [None, None]
    for (patient, me), (who, day) in zip(people, answers):
        assert who.patient_id == patient["id"]
        assert day == harness.client.get("/api/me/today", headers=me).json(), (seed, patient["id"])


@pytest.mark.parametrize("seed", range(6))
def test_completions_sent_together_get_the_answers_they_would_get_one_by_one(
    harness: Harness, clock: Clock, tmp_path: Path, seed: int
) -> None:
    # Completions arriving at once are recorded in one transaction (db.Grouped). Each must get
    # what it would have got alone, in arrival order: the same slot, the same refusal, the same
    # answer to a retry, down to the rows stored. One copy of the database takes them one at a
    # time, the other all at once.
    rng = random.Random(seed)
    doc, other = harness.practitioner("doc@clinic.example"), harness.practitioner("other@clinic.example")
    routine, theirs = harness.routine(doc), harness.routine(other)
    people = []
    for n, tz in enumerate(["Europe/London", "America/New_York", "Asia/Kolkata"]):
        patient = harness.patient(doc, name=f"P{n}", timezone=tz)
        mine = [harness.assignment(doc, patient["id"], routine["id"], times=times, end_date="2026-03-20")["id"]
                for times in (["08:00", "19:30"], ["07:00", "12:15", "18:00"])]
        people.append((patient["id"], tz, mine))
    stranger = harness.patient(other, name="Elsewhere")
    foreign = harness.assignment(other, stranger["id"], theirs["id"])["id"]
    clock.advance(days=3)  # Thursday 5 March, 09:00 UTC

    def one(i: int) -> dict[str, Any]:
        patient_id, tz, mine = rng.choice(people)
        client_id = rng.choice([f"cid-{seed}-{i:04d}", f"cid-{seed}-{rng.randrange(i + 1):04d}", "shared-client-id"])
        return {
            "patient_id": patient_id, "timezone": tz, "client_id": client_id,
            "assignment_id": rng.choice([*mine, *mine, foreign, 10**9]),
            "day": date(2026, 3, rng.choice([1, 3, 4, 4, 5, 5, 6])),  # before the start, ..., tomorrow
            "time": rng.choice([None, "08:00", "12:15", "19:30", "23:00"]),
            "completed_at": rng.choice([None, clock.now - timedelta(hours=rng.randint(0, 40)), clock.now + timedelta(hours=2)]),
            "pain_before": rng.choice([None, 4]), "pain_after": rng.randint(0, 10),
            "difficulty": rng.choice([None, "ok"]), "note": rng.choice(["", f"note {i}"]),
            "now": clock.now + timedelta(seconds=i),
        }

    earlier = [one(i) for i in range(15)]
    asked = [one(i) for i in range(15, 90)]

    def outcome(result: Any) -> Any:
        if isinstance(result, AppError):
            return type(result).__name__, result.fields
        return result

    async def both() -> tuple[list[Any], list[Any], list[Any], list[Any]]:
        db = harness.ctx.db
        for fields in earlier:  # some client_ids are known before the batch
            await asyncio.gather(completions.record(db, **fields), return_exceptions=True)
        await db.backup(tmp_path / "alone.db")
        async with Database(tmp_path / "alone.db") as alone:
            one_by_one = [outcome((await asyncio.gather(completions.record(alone, **f), return_exceptions=True))[0])
                          for f in asked]
            stored_alone = [tuple(r) for r in await alone.fetchall("SELECT * FROM completions ORDER BY id")]
        with counted_transactions(db) as transactions:
            together = [outcome(r) for r in await asyncio.gather(*(completions.record(db, **f) for f in asked),
                                                                  return_exceptions=True)]
        assert len(transactions) == 1  # all in one: none fell back to a transaction of its own
        stored = [tuple(r) for r in await db.fetchall("SELECT * FROM completions ORDER BY id")]
        return one_by_one, together, stored_alone, stored

    one_by_one, together, stored_alone, stored = harness.run(both)
    assert together == one_by_one
    assert stored == stored_alone
    kinds = {o[0] if isinstance(o[0], str) else o[1] for o in together}
    assert {True, False, "NotFound", "BadRequest"} <= kinds, kinds  # new, retried, refused both ways
