"""Practitioner insight: the adherence definition, trends and flags, the list, progress and the charts."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from conftest import Clock, Harness

from server import charts, insight
from server.clinic_sessions import ClinicSession
from server.insight import Insight, Rating, Record, adherence, assess, day_tallies
from server.schedule import DayTally, Plan, slot_times

SVG = "{http://www.w3.org/2000/svg}"
DAILY = 127  # every day of the week


def rec(*plans: Plan, tz: str = "Europe/London", joined: str | None = "2026-02-01T10:00:00Z",
        since: date = date(2026, 1, 1)) -> Record:
    return Record(1, tz, joined, since, plans=list(plans))


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def fill(record: Record, plan: Plan, first: date, last: date, *, skip: set[str] = frozenset(),  # type: ignore[assignment]
         after: int | None = None, before: int | None = None) -> None:
    """Do every slot of plan from first to last (UTC noon as the time), except the days in skip."""
    day = first
    while day <= last:
        if day.isoformat() not in skip:
            for t in slot_times(plan, day, record.timezone):
                record.add_completion(plan.id, day.isoformat(), t, f"{day.isoformat()}T{t}:00Z", before, after)
        day += timedelta(days=1)


# --- the adherence definition ---------------------------------------------------------------

def test_a_slot_counts_once_and_extras_do_not_count() -> None:
    plan = Plan(1, "2026-03-01", None, DAILY, ("08:00", "19:30"))
    r = rec(plan)
    r.add_completion(1, "2026-03-02", "08:00", "2026-03-02T08:05:00Z", 3, 2)
    r.add_completion(1, "2026-03-02", "08:00", "2026-03-02T08:30:00Z", 3, 2)  # the same slot again
    r.add_completion(1, "2026-03-02", None, "2026-03-02T12:00:00Z", 3, 2)  # an extra
    days = day_tallies(r, date(2026, 3, 1), date(2026, 3, 2), at("2026-03-02T21:00:00"))
    assert days == [DayTally("2026-03-01", 2, 0), DayTally("2026-03-02", 2, 1)]
    assert adherence(days) == (0.25, 1, 4)


def test_today_counts_the_slots_due_so_far_and_any_done_early() -> None:
    plan = Plan(1, "2026-03-01", None, DAILY, ("08:00", "19:30"))
    r = rec(plan)
    morning = at("2026-03-02T07:00:00")
    assert day_tallies(r, date(2026, 3, 2), date(2026, 3, 2), morning) == [DayTally("2026-03-02", 0, 0)]
    noon = at("2026-03-02T12:00:00")
    assert day_tallies(r, date(2026, 3, 2), date(2026, 3, 2), noon) == [DayTally("2026-03-02", 1, 0)]
    r.add_completion(1, "2026-03-02", "19:30", "2026-03-02T12:00:00Z", None, None)  # the evening slot, done early
    assert day_tallies(r, date(2026, 3, 2), date(2026, 3, 2), noon) == [DayTally("2026-03-02", 2, 1)]
    assert assess(r, noon).adherence_7d == 0.25  # 1 March's two slots and today's two


def test_slots_before_joining_never_count_and_a_patient_who_never_joined_has_none() -> None:
    plan = Plan(1, "2026-02-20", None, DAILY, ("09:00",))
    now = at("2026-03-02T20:00:00")
    joined = assess(rec(plan, joined="2026-02-28T15:00:00Z"), now)
    assert (joined.adherence_28d, joined.scheduled_7d) == (0.0, 3)  # 28 Feb, 1 and 2 Mar
    never = assess(rec(plan, joined=None), now)
    assert never.adherence_7d is None and never.adherence_28d is None and never.flags == ("not_joined",)


@pytest.mark.parametrize(
    ("tz", "day", "times"),
    [
        ("Europe/London", "2026-03-29", ("01:30", "09:00")),  # spring forward: 01:30 does not exist
        ("Europe/London", "2026-10-25", ("01:30", "09:00")),  # fall back: 01:30 happens twice
        ("America/New_York", "2026-03-08", ("02:30", "19:00")),
        ("America/New_York", "2026-11-01", ("01:30", "19:00")),
        ("Australia/Adelaide", "2026-04-05", ("02:30", "19:00")),
    ],
)
def test_dst_days_have_their_usual_slots_each_counted_once(tz: str, day: str, times: tuple[str, ...]) -> None:
    d = date.fromisoformat(day)
    plan = Plan(1, "2026-01-01", None, DAILY, times)
    r = rec(plan, tz=tz, joined="2026-01-01T00:00:00Z")
    for t in times:
        r.add_completion(1, day, t, f"{day}T12:00:00Z", None, None)
        r.add_completion(1, day, t, f"{day}T13:00:00Z", None, None)
    after_the_day = datetime.combine(d + timedelta(days=1), datetime.min.time(), tzinfo=UTC) + timedelta(hours=14)
    days = day_tallies(r, d - timedelta(days=1), d + timedelta(days=1), after_the_day)
    assert days[0] == DayTally((d - timedelta(days=1)).isoformat(), 2, 0)
    assert days[1] == DayTally(day, 2, 2)


def test_the_dst_day_itself_counts_a_skipped_time_as_due_from_the_next_valid_minute() -> None:
    # 01:30 does not exist in London on 29 March 2026: the slot falls at 02:00 BST (01:00 UTC).
    plan = Plan(1, "2026-03-01", None, DAILY, ("01:30",))
    r = rec(plan, joined="2026-03-01T00:00:00Z")
    d = date(2026, 3, 29)
    assert day_tallies(r, d, d, at("2026-03-29T00:59:00")) == [DayTally("2026-03-29", 0, 0)]
    assert day_tallies(r, d, d, at("2026-03-29T01:01:00")) == [DayTally("2026-03-29", 1, 0)]


def test_assignments_starting_ending_and_ended_early_inside_the_window() -> None:
    now = at("2026-03-28T21:00:00")  # a Saturday evening; the 28 days run from 1 to 28 March
    starts = Plan(1, "2026-03-22", None, DAILY, ("08:00",))  # 7 days in the window
    ends = Plan(2, "2026-02-01", "2026-03-03", DAILY, ("08:00",))  # 3 days in the window
    # Ended on 10 March at 12:00 UTC: that day's 08:00 slot counts, its 19:30 does not.
    early = Plan(3, "2026-03-09", "2026-03-10", DAILY, ("08:00", "19:30"), ended_at="2026-03-10T12:00:00Z")
    r = rec(starts, ends, early)
    days = day_tallies(r, date(2026, 3, 1), date(2026, 3, 28), now)
    assert sum(d.scheduled for d in days) == 7 + 3 + 3
    by_day = {d.date: d.scheduled for d in days}
    assert by_day["2026-03-10"] == 1 and by_day["2026-03-09"] == 2 and by_day["2026-03-21"] == 0
    ins = assess(r, now)
    assert ins.scheduled_7d == 7 and ins.adherence_7d == 0.0 and ins.adherence_28d == 0.0


def test_streak_is_the_patient_apps_number() -> None:
    plan = Plan(1, "2026-01-01", None, DAILY, ("08:00",))
    r = rec(plan, joined="2026-01-01T00:00:00Z", since=date(2026, 1, 1))
    fill(r, plan, date(2026, 2, 10), date(2026, 3, 1))
    now = at("2026-03-02T07:00:00")  # today's slot is still ahead: it neither breaks nor counts
    assert assess(r, now).streak_days == 20


# --- trends and flags -----------------------------------------------------------------------

def _ratings(r: Record, *pairs: tuple[str, int | None, int | None]) -> None:
    for n, (day, before, after) in enumerate(pairs):
        r.add_completion(99, day, None, f"{day}T10:{n % 60:02d}:00Z", before, after)


def test_pain_trend_compares_the_last_week_with_the_three_before_it() -> None:
    now = at("2026-03-28T20:00:00")
    r = rec(Plan(1, "2026-03-01", None, DAILY, ("08:00",)))
    _ratings(r, ("2026-03-05", 5, 4), ("2026-03-10", 5, 4), ("2026-03-25", 6, 5), ("2026-03-27", 6, 5))
    assert assess(r, now).pain_trend == "up" and "pain_rising" in assess(r, now).flags
    r2 = rec(Plan(1, "2026-03-01", None, DAILY, ("08:00",)))
    _ratings(r2, ("2026-03-05", 5, 4), ("2026-03-10", 5, 4), ("2026-03-25", 5, 4.5), ("2026-03-27", 5, 4))  # type: ignore[arg-type]
    assert assess(r2, now).pain_trend == "flat"
    r3 = rec(Plan(1, "2026-03-01", None, DAILY, ("08:00",)))
    _ratings(r3, ("2026-03-05", 6, 6), ("2026-03-10", 6, 6), ("2026-03-25", 4, 3))
    assert assess(r3, now).pain_trend is None  # one rating this week is not a trend


@pytest.mark.parametrize(
    ("before", "after", "flagged"),
    [(None, 8, True), (0, 10, True), (5, 7, False), (2, 7, True), (3, 6, True), (4, 6, False), (None, 7, False), (9, None, False)],
)
def test_safety_rule(before: int | None, after: int | None, flagged: bool) -> None:
    assert insight.is_unsafe(before, after) is flagged
    advice = insight.safety_advice(before, after)
    assert (advice is not None) is flagged
    if advice:
        assert "contact your clinic" in advice["advice"] and advice["reason"] in ("pain_high", "pain_rose")


def test_safety_flag_stays_14_days_or_until_a_reassuring_completion() -> None:
    r = rec(Plan(1, "2026-03-01", None, DAILY, ("08:00",)))
    _ratings(r, ("2026-03-10", 4, 8))
    assert "safety" in assess(r, at("2026-03-11T09:00:00")).flags
    assert "safety" in assess(r, at("2026-03-24T09:00:00")).flags
    assert "safety" not in assess(r, at("2026-03-24T11:00:00")).flags  # 14 days on
    _ratings(r, ("2026-03-12", None, None))  # no ratings: tells nothing
    assert "safety" in assess(r, at("2026-03-13T09:00:00")).flags
    r.add_completion(1, "2026-03-13", "08:00", "2026-03-13T08:00:00Z", 4, 3)
    assert "safety" not in assess(r, at("2026-03-13T09:00:00")).flags


def test_inactive_after_three_days_without_a_completion_while_homework_is_due() -> None:
    plan = Plan(1, "2026-03-01", None, DAILY, ("08:00",))
    r = rec(plan)
    fill(r, plan, date(2026, 3, 1), date(2026, 3, 10))
    assert "inactive" not in assess(r, at("2026-03-12T20:00:00")).flags  # 2 days
    ins = assess(r, at("2026-03-13T20:00:00"))
    assert "inactive" in ins.flags and ins.days_since_last == 3
    finished = rec(Plan(1, "2026-03-01", "2026-03-10", DAILY, ("08:00",)))
    fill(finished, finished.plans[0], date(2026, 3, 1), date(2026, 3, 9))
    assert "inactive" not in assess(finished, at("2026-03-20T20:00:00")).flags  # nothing due: nothing to chase


def test_adherence_falling_needs_a_drop_of_20_points() -> None:
    plan = Plan(1, "2026-03-01", None, DAILY, ("08:00", "19:00"))
    now = at("2026-03-28T21:00:00")
    r = rec(plan)
    fill(r, plan, date(2026, 3, 1), date(2026, 3, 21))
    fill(r, plan, date(2026, 3, 22), date(2026, 3, 28), skip={"2026-03-23", "2026-03-25", "2026-03-27"})
    ins = assess(r, now)
    assert (ins.adherence_before, round(ins.adherence_7d or 0, 3)) == (1.0, round(8 / 14, 3))
    assert "adherence_falling" in ins.flags
    r2 = rec(plan)
    fill(r2, plan, date(2026, 3, 1), date(2026, 3, 21))
    fill(r2, plan, date(2026, 3, 22), date(2026, 3, 28), skip={"2026-03-23"})
    assert "adherence_falling" not in assess(r2, now).flags  # 86%


def test_attention_order_puts_safety_first_then_inactive_then_the_least_adherent() -> None:
    def make(flags: tuple[str, ...], rate: float | None) -> Insight:
        return Insight(rate, rate, 0, None, None, flags, False, 0, 0, None, None, None, None, None)

    rows = [("Ann", make((), 0.9)), ("Bob", make(("inactive",), 0.5)), ("Cy", make(("safety",), 0.9)),
            ("Di", make((), 0.2)), ("Ed", make(("pain_rising", "adherence_falling"), 0.6)), ("Flo", make((), None)),
            ("Gus", make(("not_joined",), None))]
    rows.sort(key=lambda r: insight.attention_key(r[0], r[1]))
    assert [name for name, _ in rows] == ["Cy", "Bob", "Ed", "Gus", "Di", "Ann", "Flo"]


def test_summary_in_words() -> None:
    now = at("2026-03-28T21:00:00")
    plan = Plan(1, "2026-02-01", None, DAILY, ("08:00", "19:00"))
    r = rec(plan, joined="2026-02-01T09:00:00Z")
    fill(r, plan, date(2026, 2, 1), date(2026, 3, 14), before=6, after=5)
    fill(r, plan, date(2026, 3, 15), date(2026, 3, 28), skip={"2026-03-23", "2026-03-26"}, before=4, after=3)
    r.add_completion(1, "2026-03-27", None, "2026-03-27T15:00:00Z", 4, 4)  # an extra, rated: 3.1 on average
    sessions = [ClinicSession(1, "2026-02-15", "acupuncture"), ClinicSession(2, "2026-03-10", "")]
    ins = assess(r, now)
    words = insight.summary(ins, r.ratings, sessions, date(2026, 3, 28), joined=True)
    assert words[0] == "Did 10 of 14 scheduled routines in the last week."
    assert words[1] == "Pain after stretching averages 3.1 this week, down from 5.0 before the first session on 15 Feb."
    no_sessions = insight.summary(ins, r.ratings, [], date(2026, 3, 28), joined=True)
    assert no_sessions[1].endswith("down from 5.0 in the first week (from 1 Feb).")


# --- through the app ------------------------------------------------------------------------

def complete(harness: Harness, me: dict[str, str], assignment_id: int, day: str, time: str, **fields: Any) -> Any:
    body = {"client_id": f"c-{assignment_id}-{day}-{time.replace(':', '')}-{len(fields)}", "assignment_id": assignment_id,
            "date": day, "time": time, "completed_at": f"{day}T{time}:00Z", **fields}
    response = harness.client.post("/api/me/completions", json=body, headers=me)
    assert response.status_code in (200, 201), response.text
    return response.json()


@pytest.fixture
def clinic(harness: Harness, clock: Clock) -> dict[str, Any]:
    """Two patients of one practitioner: Ada keeps up, Kim stopped; both joined on 2 March."""
    doc = harness.practitioner("doc@clinic.example")
    routine = harness.routine(doc, count=3)
    out: dict[str, Any] = {"doc": doc}
    for name in ("Ada", "Kim"):
        patient = harness.patient(doc, name=name)
        assignment = harness.assignment(doc, patient["id"], routine["id"], times=["08:00"])
        out[name] = {"patient": patient, "assignment": assignment, "me": {"Cookie": harness.join(doc, patient["id"])}}
    clock.advance(days=13, hours=12)  # Sunday 15 March, 21:00 UTC
    for n in range(14):
        day = (date(2026, 3, 2) + timedelta(days=n)).isoformat()
        complete(harness, out["Ada"]["me"], out["Ada"]["assignment"]["id"], day, "08:00", pain_before=5, pain_after=4)
        if n < 8:
            complete(harness, out["Kim"]["me"], out["Kim"]["assignment"]["id"], day, "08:00", pain_before=3, pain_after=3)
    return out


def test_patient_list_api_adds_the_insight_fields(harness: Harness, clinic: dict[str, Any]) -> None:
    listed = harness.client.get("/api/patients", headers=clinic["doc"]["bearer"]).json()["patients"]
    assert [p["name"] for p in listed] == ["Ada", "Kim"]  # the API keeps its order (by name)
    sam, kim = listed
    assert sam["adherence_7d"] == 1.0 and sam["adherence_28d"] == 1.0 and sam["streak_days"] == 14
    assert sam["last_completed_at"].startswith("2026-03-15") and sam["flags"] == [] and sam["pain_trend"] == "flat"
    assert sam["reminders_enabled"] is False
    assert kim["adherence_7d"] == pytest.approx(1 / 7, abs=1e-3) and kim["adherence_28d"] == pytest.approx(8 / 14, abs=1e-3)
    assert kim["streak_days"] == 0 and kim["flags"] == ["inactive", "adherence_falling"] and kim["pain_trend"] is None
    # The streak is the number the patient's own app shows.
    today = harness.client.get("/api/me/today", headers=clinic["Ada"]["me"]).json()
    assert today["streak_days"] == sam["streak_days"]


def test_reminders_enabled_follows_push_subscriptions(harness: Harness, clinic: dict[str, Any]) -> None:
    sam = clinic["Ada"]["patient"]["id"]
    harness.run(harness.ctx.db.execute,
                "INSERT INTO push_subscriptions (patient_id, endpoint, p256dh, auth, created_at, updated_at)"
                " VALUES (?, 'https://push.example/x', 'k', 'a', '2026-03-02T00:00:00Z', '2026-03-02T00:00:00Z')", (sam,))
    listed = {p["name"]: p for p in harness.client.get("/api/patients", headers=clinic["doc"]["bearer"]).json()["patients"]}
    assert listed["Ada"]["reminders_enabled"] is True and listed["Kim"]["reminders_enabled"] is False


def test_the_list_reads_a_few_queries_whatever_the_number_of_patients(harness: Harness, clinic: dict[str, Any]) -> None:
    db = harness.ctx.db
    calls: list[str] = []
    original = db.fetchall

    async def counting(sql: str, params: Any = ()) -> Any:
        calls.append(sql)
        return await original(sql, params)

    db.fetchall = counting  # type: ignore[method-assign]
    try:
        harness.client.get("/api/patients", headers=clinic["doc"]["bearer"])
        few = len(calls)
        routine = harness.routine(clinic["doc"], name="More")
        for n in range(12):
            p = harness.patient(clinic["doc"], name=f"Extra {n}")
            harness.assignment(clinic["doc"], p["id"], routine["id"])
        calls.clear()
        harness.client.get("/api/patients", headers=clinic["doc"]["bearer"])
        assert len(calls) == few <= 5
    finally:
        db.fetchall = original  # type: ignore[method-assign]


def test_a_long_unbroken_streak_is_read_back_past_the_window(harness: Harness, clock: Clock) -> None:
    doc = harness.practitioner("doc@clinic.example")
    patient = harness.patient(doc, name="Lee")
    a = harness.assignment(doc, patient["id"], harness.routine(doc)["id"], times=["08:00"])
    me = {"Cookie": harness.join(doc, patient["id"])}
    clock.advance(days=39, hours=12)  # 10 April
    for n in range(40):
        complete(harness, me, a["id"], (date(2026, 3, 2) + timedelta(days=n)).isoformat(), "08:00", pain_after=2)
    listed = harness.client.get("/api/patients", headers=doc["bearer"]).json()["patients"][0]
    assert listed["streak_days"] == 40 == harness.client.get("/api/me/today", headers=me).json()["streak_days"]


def test_safety_advice_comes_back_with_the_completion(harness: Harness, clinic: dict[str, Any]) -> None:
    sam = clinic["Ada"]
    fine = complete(harness, sam["me"], sam["assignment"]["id"], "2026-03-15", "08:00", pain_before=4)
    assert fine["safety"] is None
    body = {"client_id": "hurts-0001", "assignment_id": sam["assignment"]["id"], "date": "2026-03-15",
            "pain_before": 3, "pain_after": 6}
    first = harness.client.post("/api/me/completions", json=body, headers=sam["me"])
    assert first.status_code == 201 and first.json()["safety"]["reason"] == "pain_rose"
    again = harness.client.post("/api/me/completions", json=body, headers=sam["me"])  # a retry answers the same
    assert again.status_code == 200 and again.json()["safety"] == first.json()["safety"]
    listed = {p["name"]: p for p in harness.client.get("/api/patients", headers=clinic["doc"]["bearer"]).json()["patients"]}
    assert listed["Ada"]["flags"] == ["safety"]


def test_progress_api(harness: Harness, clinic: dict[str, Any]) -> None:
    doc, kim = clinic["doc"], clinic["Kim"]
    harness.post(doc, f"/api/patients/{kim['patient']['id']}/sessions", {"date": "2026-03-02", "note": "needles"})
    harness.post(doc, f"/api/patients/{kim['patient']['id']}/sessions", {"date": "2025-12-01"})  # outside the window
    url = f"/api/patients/{kim['patient']['id']}/progress"
    data = harness.client.get(url + "?days=14", headers=doc["bearer"]).json()
    assert data["from"] == "2026-03-02" and data["to"] == "2026-03-15" and len(data["days"]) == 14
    assert data["days"][0] == {"date": "2026-03-02", "scheduled": 1, "completed": 1}
    assert data["days"][-1] == {"date": "2026-03-15", "scheduled": 1, "completed": 0}
    assert data["adherence"] == pytest.approx(8 / 14, abs=1e-3) and data["streak_days"] == 0
    assert len(data["pain"]) == 8 and data["pain"][0]["before"] == 3 and data["pain"][0]["after"] == 3
    assert data["sessions"] == [{"date": "2026-03-02", "note": "needles"}]
    assert "inactive" in data["flags"] and data["summary"].startswith("Did 1 of 7 scheduled routines")
    assert len(harness.client.get(url, headers=doc["bearer"]).json()["days"]) == 28
    assert harness.client.get(url + "?days=0", headers=doc["bearer"]).status_code == 400
    assert harness.client.get(url + "?days=abc", headers=doc["bearer"]).status_code == 400


def test_the_list_page_puts_who_needs_a_call_first(harness: Harness, clinic: dict[str, Any]) -> None:
    page = harness.client.get("/patients", headers=clinic["doc"]["cookie"])
    assert page.status_code == 200
    html = page.text
    assert html.index(">Kim<") < html.index(">Ada<")
    assert "1 patient needs attention" in html and "Nothing done for" in html
    assert " style=" not in html
    by_name = harness.client.get("/patients?sort=name", headers=clinic["doc"]["cookie"]).text
    assert by_name.index(">Ada<") < by_name.index(">Kim<") and "sort by attention" in by_name


def _svgs(html: str) -> list[ET.Element]:
    return [ET.fromstring(m) for m in re.findall(r"<svg\b.*?</svg>", html, flags=re.DOTALL)]


def test_the_patient_page_draws_the_calendar_and_the_pain_chart(harness: Harness, clinic: dict[str, Any]) -> None:
    doc, sam = clinic["doc"], clinic["Ada"]
    pid = sam["patient"]["id"]
    harness.post(doc, f"/api/patients/{pid}/sessions", {"date": "2026-03-02", "note": "acupuncture <lower> & back"})
    harness.post(doc, f"/api/patients/{pid}/sessions", {"date": "2026-03-09"})
    html = harness.client.get(f"/patients/{pid}", headers=doc["cookie"]).text
    assert " style=" not in html and "<script" not in html
    calendar, pain = _svgs(html)
    assert "calendar" in calendar.get("class", "") and calendar.get("role") == "img" and calendar.get("aria-label")
    cells = [g for g in calendar.iter(f"{SVG}g") if "day" in g.get("class", "").split()]
    assert len(cells) == 28 and sum("day-all" in g.get("class", "") for g in cells) == 14
    sessions = [g for g in pain.iter(f"{SVG}g") if g.get("class") == "session"]
    assert len(sessions) == 2
    assert sessions[0].find(f"{SVG}title").text == "Clinic session 1, 2 Mar: acupuncture <lower> & back"  # type: ignore[union-attr]
    assert len([c for c in pain.iter(f"{SVG}circle") if c.get("class") == "dot-after"]) == 14
    assert "Did 7 of 7 scheduled routines in the last week." in html
    assert "Calendar as a table" in html and "Pain as a table" in html
    assert f"/api/patients/{pid}/completions.csv" in html and f"/assignments/{sam['assignment']['id']}/print" in html


def test_charts_are_valid_svg_on_their_own() -> None:
    days = [DayTally((date(2026, 3, 1) + timedelta(days=n)).isoformat(), n % 3, n % 2) for n in range(28)]
    svg = ET.fromstring(charts.calendar(days, today=days[-1].date, label='28 days "quoted" & <tagged>'))
    assert svg.get("aria-label") == '28 days "quoted" & <tagged>'
    statuses = [g.get("class") for g in svg.iter(f"{SVG}g")]
    assert statuses[:6] == ["day day-none", "day day-all", "day day-missed", "day day-none", "day day-missed",
                            "day day-some"]
    assert statuses[-1] == "day day-none day-today"
    ratings = [Rating("2026-03-02T08:00:00Z", "2026-03-02", 5, 4), Rating("2026-03-20T08:00:00Z", "2026-03-20", 4, 2)]
    sessions = [ClinicSession(1, "2026-02-01", "before the window"), ClinicSession(2, "2026-03-05", "x"),
                ClinicSession(3, "2026-03-12", "")]
    pain = ET.fromstring(charts.pain(ratings, sessions, first=date(2026, 3, 1), last=date(2026, 3, 28), label="Pain"))
    marks = [g for g in pain.iter(f"{SVG}g") if g.get("class") == "session"]
    assert [m.find(f"{SVG}text").text for m in marks] == ["S2", "S3"]  # type: ignore[union-attr]
    assert not list(pain.iter(f"{SVG}polyline"))  # 18 days apart: no line drawn across the gap
    empty = ET.fromstring(charts.pain([], [], first=date(2026, 3, 1), last=date(2026, 3, 28), label="Pain"))
    assert any(t.text == "No pain ratings yet" for t in empty.iter(f"{SVG}text"))
    rows = charts.pain_table(ratings, sessions, first=date(2026, 3, 1), last=date(2026, 3, 28))
    assert [r["session"] for r in rows] == ["", "S2: x", "S3", ""] and rows[0]["after"] == "4"


def test_ratings_at_the_same_moment_load_without_comparing_none(harness: Harness, clinic: dict[str, Any]) -> None:
    ada = clinic["Ada"]
    for n, (before, after) in enumerate(((None, 3), (4, None))):
        body = {"client_id": f"same-moment-{n}", "assignment_id": ada["assignment"]["id"], "date": "2026-03-15",
                "completed_at": "2026-03-15T20:00:00Z", "pain_before": before, "pain_after": after}
        body = {k: v for k, v in body.items() if v is not None}
        assert harness.client.post("/api/me/completions", json=body, headers=ada["me"]).status_code == 201
    assert harness.client.get("/api/patients", headers=clinic["doc"]["bearer"]).status_code == 200


def test_the_list_shows_adherence_as_a_coloured_percentage_or_a_dash() -> None:
    from server.web import rate_html

    assert rate_html(None) == '<span class="muted">–</span>'
    assert rate_html(0.0) == '<span class="rate rate-low">0%</span>'
    assert rate_html(0.494) == '<span class="rate rate-low">49%</span>'
    assert rate_html(0.5) == '<span class="rate rate-mid">50%</span>'
    assert rate_html(0.7999) == '<span class="rate rate-high">80%</span>'
    assert rate_html(1.0) == '<span class="rate rate-high">100%</span>'
