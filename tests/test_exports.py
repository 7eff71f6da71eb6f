"""Exports: the completions CSV, the iCalendar feed (parsed by icalendar) and the printable routine."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from conftest import Clock, Harness
from dateutil.rrule import rrulestr
from icalendar import Calendar

from server import exports
from server.assignments import Assignment
from server.schedule import Plan, local_moment, slot_times

# --- CSV ------------------------------------------------------------------------------------

NASTY = [
    '=HYPERLINK("http://evil.example","click")',
    "+1 555 0100",
    "-2 after walking",
    "@SUM(A1:A9)",
    'said "ouch", then\nfelt better; ok',
    "  =1+1",  # stored trimmed: still a formula
    "plain note, with a comma",
]


def test_completions_csv_round_trips_and_defuses_formulas(harness: Harness, clock: Clock) -> None:
    doc = harness.practitioner("doc@clinic.example")
    patient = harness.patient(doc, timezone="America/New_York")
    routine = harness.routine(doc, name="=cmd|' /C calc'!A0")
    a = harness.assignment(doc, patient["id"], routine["id"], times=["08:00", "19:30"])
    me = {"Cookie": harness.join(doc, patient["id"])}
    clock.advance(days=7)
    for n, note in enumerate(NASTY):
        day = (date(2026, 3, 2) + timedelta(days=n)).isoformat()
        body = {"client_id": f"csv-{n:04d}", "assignment_id": a["id"], "date": day, "time": "19:30",
                "completed_at": f"{day}T23:45:00Z", "pain_before": n % 10, "pain_after": 2, "difficulty": "ok", "note": note}
        assert harness.client.post("/api/me/completions", json=body, headers=me).status_code == 201
    for n in range(2):  # the first fills the 2 March morning slot; with both taken the second is an extra
        extra = {"client_id": f"csv-extra-{n}", "assignment_id": a["id"], "date": "2026-03-02",
                 "completed_at": f"2026-03-03T00:3{n}:00Z"}
        assert harness.client.post("/api/me/completions", json=extra, headers=me).status_code == 201

    response = harness.client.get(f"/api/patients/{patient['id']}/completions.csv", headers=doc["bearer"])
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"].startswith('attachment; filename="completions-patient-')
    assert response.headers["cache-control"] == "no-store"
    text = response.content.decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == ["date", "time", "slot", "routine", "pain_before", "pain_after", "difficulty", "note"]
    body_rows = rows[1:]
    assert len(body_rows) == len(NASTY) + 2
    first = body_rows[0]
    # 23:45 UTC is 18:45 in New York (EST before 8 March).
    assert first[:4] == ["2026-03-02", "18:45", "19:30", "'=cmd|' /C calc'!A0"]
    assert first[4:7] == ["0", "2", "ok"]
    notes = [r[7] for r in body_rows if r[7]]
    for original, cell in zip(NASTY, notes, strict=True):
        stored = original.strip()  # notes are stored trimmed
        expected = "'" + stored if stored[0] in "=+-@" else stored
        assert cell == expected
    # After 8 March New York is on EDT: 23:45 UTC is 19:45.
    assert body_rows[8][:3] == ["2026-03-08", "19:45", "19:30"]
    assert [r[:3] for r in body_rows[1:3]] == [["2026-03-02", "19:30", "08:00"], ["2026-03-02", "19:31", "extra"]]
    assert text.count("\r\n") == len(rows) and '"said ""ouch"", then\nfelt better; ok"' in text  # quoted whole


def test_safe_cell_leaves_numbers_and_ordinary_text() -> None:
    assert exports.safe_cell(-3) == -3 and exports.safe_cell(None) is None
    assert exports.safe_cell("fine") == "fine" and exports.safe_cell("") == ""
    assert exports.safe_cell("-x") == "'-x" and exports.safe_cell("\tx") == "'\tx"


# --- iCalendar ------------------------------------------------------------------------------

def _assignment(**kw: Any) -> Assignment:
    base: dict[str, Any] = {
        "id": 7, "patient_id": 1, "routine_id": 1, "routine_name": "Back basics", "routine_notes": "", "items": [],
        "item_count": 3, "estimated_minutes": 12, "start_date": "2026-03-02", "end_date": "2026-04-30",
        "days_mask": 0b0010101, "times": ["08:00", "19:30"], "session_date": None, "note": "",
        "created_at": "2026-03-01T10:00:00Z", "ended_at": None,
    }
    base.update(kw)
    return Assignment(**base)


def _expected(a: Assignment, tz: str, time: str) -> list[datetime]:
    plan = Plan(a.id, a.start_date, a.end_date, a.days_mask, tuple(a.times), a.ended_at)
    day, last, found = date.fromisoformat(a.start_date), date.fromisoformat(a.end_date or "2026-12-31"), []
    while day <= last:
        if time in slot_times(plan, day, tz):
            found.append(local_moment(day, time, tz).astimezone(UTC))
        day += timedelta(days=1)
    return found


def _occurrences(event: Any, horizon: datetime) -> list[datetime]:
    start = event["DTSTART"].dt
    rule = rrulestr(event["RRULE"].to_ical().decode(), dtstart=start)
    return [d.astimezone(UTC) for d in rule.between(start - timedelta(seconds=1), horizon)]


def _check_lines(text: str) -> None:
    assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")
    for line in text.split("\r\n"):
        assert len(line.encode()) <= 75, line


@pytest.mark.parametrize("tz", ["Europe/London", "America/New_York", "Australia/Adelaide", "Asia/Kolkata"])
def test_ics_recurrences_match_the_scheduled_slots_across_dst(tz: str) -> None:
    a = _assignment()
    text = exports.calendar_text([a], timezone=tz, base_url="https://clinic.example", now=datetime(2026, 3, 2, tzinfo=UTC))
    _check_lines(text)
    cal = Calendar.from_ical(text)
    events = cal.walk("VEVENT")
    assert len(events) == 2
    for event, time in zip(events, a.times, strict=True):
        assert event["DTSTART"].params["TZID"] == tz
        assert str(event["SUMMARY"]) == "Stretches"
        assert "Back basics" in str(event["DESCRIPTION"]) and "Back basics" not in str(event["SUMMARY"])
        assert str(event["URL"]) == f"https://clinic.example/app/routine/7?time={time}"
        rule = event["RRULE"]
        assert rule["FREQ"] == ["WEEKLY"] and rule["BYDAY"] == ["MO", "WE", "FR"]
        assert rule["UNTIL"][0].tzinfo is not None and rule["UNTIL"][0].utcoffset() == timedelta(0)
        assert event["DTSTART"].dt.replace(tzinfo=None) == datetime.fromisoformat(f"2026-03-02T{time}")
        assert _occurrences(event, datetime(2027, 1, 1, tzinfo=UTC)) == _expected(a, tz, time)


@pytest.mark.parametrize("tz", ["Europe/London", "America/New_York", "Australia/Adelaide", "Asia/Kolkata",
                                "Europe/Dublin", "America/St_Johns", "Pacific/Chatham", "America/Sao_Paulo"])
def test_vtimezone_agrees_with_the_zone_database(tz: str) -> None:
    text = exports.calendar_text([_assignment()], timezone=tz, base_url="https://c.example",
                                 now=datetime(2026, 3, 2, tzinfo=UTC))
    vtz = Calendar.from_ical(text).walk("VTIMEZONE")[0]
    assert str(vtz["TZID"]) == tz
    built = vtz.to_tz(lookup_tzid=False)  # from our VTIMEZONE, not from icalendar's own zone data
    real = ZoneInfo(tz)
    moment = datetime(2025, 1, 1, 12, tzinfo=UTC)
    while moment < datetime(2031, 1, 1, tzinfo=UTC):  # well past the years spelled out: the RRULEs carry on
        local = moment.astimezone(real).replace(tzinfo=None)
        assert built.utcoffset(local) == real.utcoffset(local), (tz, local)
        moment += timedelta(days=5, hours=7)


def test_ics_stops_at_an_early_end_like_the_schedule_does() -> None:
    a = _assignment(end_date="2026-03-11", ended_at="2026-03-11T12:00:00Z")  # a Wednesday: its 08:00 counted
    text = exports.calendar_text([a], timezone="Europe/London", base_url="https://c.example",
                                 now=datetime(2026, 3, 12, tzinfo=UTC))
    events = Calendar.from_ical(text).walk("VEVENT")
    morning, evening = (_occurrences(e, datetime(2027, 1, 1, tzinfo=UTC)) for e in events)
    assert morning == _expected(a, "Europe/London", "08:00") and morning[-1] == datetime(2026, 3, 11, 8, tzinfo=UTC)
    assert evening == _expected(a, "Europe/London", "19:30") and evening[-1] == datetime(2026, 3, 9, 19, 30, tzinfo=UTC)
    assert str(events[0]["SEQUENCE"]) == "1"


def test_ics_folds_long_lines_and_escapes_text() -> None:
    name = "Étirements; du dos, très doux \\ " * 6
    a = _assignment(routine_name=name, end_date=None)
    text = exports.calendar_text([a], timezone="Europe/Paris", base_url="https://c.example",
                                 now=datetime(2026, 3, 2, tzinfo=UTC))
    _check_lines(text)
    event = Calendar.from_ical(text).walk("VEVENT")[0]
    assert str(event["DESCRIPTION"]).startswith(name + ": 3 exercises, about 12 min.\nOpen in the app: ")
    assert "UNTIL" not in event["RRULE"]
    assert exports.fold("x" * 75) == "x" * 75 and exports.fold("é" * 40).split("\r\n ")[0] == "é" * 37


def test_ics_skips_homework_whose_time_never_comes() -> None:
    a = _assignment(start_date="2026-03-03", end_date="2026-03-03", days_mask=1)  # Monday only, one Tuesday
    text = exports.calendar_text([a], timezone="Europe/London", base_url="https://c.example",
                                 now=datetime(2026, 3, 2, tzinfo=UTC))
    assert "BEGIN:VEVENT" not in text and "BEGIN:VTIMEZONE" not in text
    Calendar.from_ical(text)


# --- calendar endpoints ---------------------------------------------------------------------

@pytest.fixture
def patient(harness: Harness) -> dict[str, Any]:
    doc = harness.practitioner("doc@clinic.example")
    p = harness.patient(doc, name="Sam", timezone="America/New_York")
    a = harness.assignment(doc, p["id"], harness.routine(doc, name="Sciatica week 1")["id"], end_date="2026-04-30")
    return {"doc": doc, "patient": p, "assignment": a, "me": {"Cookie": harness.join(doc, p["id"])}}


def test_my_calendar_needs_the_device_cookie(harness: Harness, patient: dict[str, Any]) -> None:
    harness.client.cookies.clear()
    assert harness.client.get("/api/me/calendar.ics").status_code == 401
    response = harness.client.get("/api/me/calendar.ics", headers=patient["me"])
    assert response.status_code == 200 and response.headers["content-type"] == "text/calendar; charset=utf-8"
    cal = Calendar.from_ical(response.text)
    events = cal.walk("VEVENT")
    assert len(events) == 2 and all(e["DTSTART"].params["TZID"] == "America/New_York" for e in events)
    assert "Sciatica week 1" in str(events[0]["DESCRIPTION"]) and "Sam" not in response.text
    assert f"http://testserver/app/routine/{patient['assignment']['id']}?time=08:00" == str(events[0]["URL"])


def test_subscribable_feed_is_revocable(harness: Harness, patient: dict[str, Any]) -> None:
    me = patient["me"]
    assert harness.client.get("/api/me/calendar-feed", headers=me).json() == {"active": False, "created_at": None}
    made = harness.client.post("/api/me/calendar-feed", headers=me)
    assert made.status_code == 201
    url = made.json()["url"]
    assert url.startswith("http://testserver/calendar/") and url.endswith(".ics")
    path = url.removeprefix("http://testserver")
    assert harness.client.get("/api/me/calendar-feed", headers=me).json()["active"] is True
    harness.client.cookies.clear()
    feed = harness.client.get(path)  # calendar apps send no cookies
    assert feed.status_code == 200 and feed.headers["cache-control"] == "private, no-store"
    assert len(Calendar.from_ical(feed.text).walk("VEVENT")) == 2
    newer = harness.client.post("/api/me/calendar-feed", headers=me).json()["url"].removeprefix("http://testserver")
    assert harness.client.get(path).status_code == 404 and harness.client.get(newer).status_code == 200
    assert harness.client.delete("/api/me/calendar-feed", headers=me).status_code == 204
    assert harness.client.get(newer).status_code == 404
    assert harness.client.get("/calendar/not-a-token.ics").status_code == 404
    assert harness.client.get("/calendar/" + "A" * 43 + ".ics").status_code == 404


def test_feed_stops_for_an_archived_patient(harness: Harness, patient: dict[str, Any]) -> None:
    path = harness.client.post("/api/me/calendar-feed", headers=patient["me"]).json()["url"].removeprefix("http://testserver")
    assert harness.client.get(path).status_code == 200
    harness.client.delete(f"/api/patients/{patient['patient']['id']}", headers=patient["doc"]["bearer"])
    assert harness.client.get(path).status_code == 404


def test_only_the_token_hash_is_stored(harness: Harness, patient: dict[str, Any]) -> None:
    url = harness.client.post("/api/me/calendar-feed", headers=patient["me"]).json()["url"]
    token = url.rsplit("/", 1)[1].removesuffix(".ics")
    stored = harness.run(harness.ctx.db.fetchall, "SELECT token_hash FROM calendar_feeds")
    assert stored and all(token.encode() not in bytes(r["token_hash"]) for r in stored)


# --- the printable routine ------------------------------------------------------------------

def test_print_page_has_the_illustrations_and_steps(harness: Harness, patient: dict[str, Any]) -> None:
    a = patient["assignment"]
    response = harness.client.get(f"/assignments/{a['id']}/print", headers=patient["doc"]["cookie"])
    assert response.status_code == 200
    html = response.text
    assert " style=" not in html and "<script" not in html
    for item in a["routine"]["items"]:
        assert f'src="{item["image_url"]}"' in html and item["image_url"].startswith("/static/exercises/")
        assert item["name"] in html
        for step in item["steps"]:
            assert step.replace("'", "&#39;").replace('"', "&#34;") in html
    assert "Sciatica week 1" in html and "Sam" in html and "Tick each time you do it" in html
