"""The patient app's pages, the manifest and the service worker, at the HTTP level."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.testclient import TestClient

from server import devices, reminders
from server.app import create_app
from server.config import Settings
from server.routes import pwa
from server.routes.patient_pages import reminder_when
from tests.conftest import Clock, Harness

PAGES = ("/app", "/app/history", "/app/settings")


@pytest.fixture
def setup(harness: Harness) -> dict[str, Any]:
    dr = harness.practitioner("dr@example.org")
    patient = harness.patient(dr, name="Pat Jones")
    routine = harness.routine(dr, count=3)
    assignment = harness.assignment(dr, patient["id"], routine["id"], note="Go gently this week.")
    return {"dr": dr, "patient": patient, "routine": routine, "assignment": assignment}


def invite_path(harness: Harness, setup: dict[str, Any]) -> str:
    invite = harness.post(setup["dr"], f"/api/patients/{setup['patient']['id']}/invites", {})
    return str(invite["url"]).removeprefix("http://testserver")


def sign_in(harness: Harness, setup: dict[str, Any]) -> dict[str, str]:
    return {"Cookie": harness.join(setup["dr"], setup["patient"]["id"])}


# --- getting in ---------------------------------------------------------------------------


def test_join_link_sets_the_cookie_and_opens_the_app(
    harness: Harness, setup: dict[str, Any]
) -> None:
    client = harness.client
    response = client.get(invite_path(harness, setup), follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/app"
    assert response.headers["cache-control"] == "no-store"
    cookie = response.headers["set-cookie"]
    assert (
        cookie.startswith(devices.COOKIE + "=")
        and "HttpOnly" in cookie
        and "samesite=lax" in cookie.lower()
    )
    page = client.get("/app")
    assert page.status_code == 200
    assert "Pat Jones" in page.text


def test_a_used_link_shows_a_friendly_page_pointing_to_the_code_form(
    harness: Harness, setup: dict[str, Any]
) -> None:
    client = harness.client
    path = invite_path(harness, setup)
    assert client.get(path, follow_redirects=False).status_code == 303
    client.cookies.clear()
    again = client.get(path, follow_redirects=False)
    assert again.status_code == 410
    assert "no longer works" in again.text
    assert 'href="/app/join"' in again.text
    assert "set-cookie" not in again.headers


def test_a_used_link_on_a_phone_already_signed_in_just_opens_the_app(
    harness: Harness, setup: dict[str, Any]
) -> None:
    path = invite_path(harness, setup)
    harness.client.get(path, follow_redirects=False)
    again = harness.client.get(path, follow_redirects=False)
    assert again.status_code == 303 and again.headers["location"] == "/app"


def test_an_expired_or_unknown_link_shows_the_same_page(
    harness: Harness, setup: dict[str, Any], clock: Clock
) -> None:
    path = invite_path(harness, setup)
    clock.advance(days=8)
    response = harness.client.get(path, follow_redirects=False)
    assert response.status_code == 410 and "Sign in with a code" in response.text
    assert harness.client.get("/join/" + "x" * 43, follow_redirects=False).status_code == 410


def test_link_previews_and_head_requests_do_not_spend_the_invite(
    harness: Harness, setup: dict[str, Any]
) -> None:
    client = harness.client
    path = invite_path(harness, setup)
    preview = client.get(
        path, headers={"User-Agent": "WhatsApp/2.23.20.0 A"}, follow_redirects=False
    )
    assert preview.status_code == 200 and "set-cookie" not in preview.headers
    assert client.head(path, follow_redirects=False).status_code == 200
    assert client.get(path, follow_redirects=False).status_code == 303


def test_join_by_code_form_works_without_javascript(
    harness: Harness, setup: dict[str, Any]
) -> None:
    invite = harness.post(setup["dr"], f"/api/patients/{setup['patient']['id']}/invites", {})
    client = harness.client
    typed = invite["code"][:4].lower() + " - " + invite["code"][4:].lower()
    response = client.post("/app/join", data={"code": typed}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/app"
    assert devices.COOKIE in response.headers["set-cookie"]
    client.cookies.clear()
    wrong = client.post("/app/join", data={"code": "WRONG-CODE"})
    assert wrong.status_code == 401 and "did not work" in wrong.text


def test_join_page_is_public_and_not_personal(harness: Harness, setup: dict[str, Any]) -> None:
    anonymous = harness.client.get("/app/join")
    assert anonymous.status_code == 200 and 'autocomplete="one-time-code"' in anonymous.text
    signed_in = harness.client.get("/app/join", headers=sign_in(harness, setup))
    assert "Pat Jones" not in signed_in.text
    assert harness.client.get("/app/offline").status_code == 200


# --- pages --------------------------------------------------------------------------------


def test_pages_need_a_signed_in_phone(harness: Harness, setup: dict[str, Any]) -> None:
    assignment_id = setup["assignment"]["id"]
    for path in (*PAGES, f"/app/routine/{assignment_id}"):
        response = harness.client.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"] == "/app/join"
    headers = sign_in(harness, setup)
    for path in (*PAGES, f"/app/routine/{assignment_id}"):
        response = harness.client.get(path, headers=headers)
        assert response.status_code == 200, path
        assert 'rel="manifest"' in response.text


# A <script> with no src that is not a JSON data block, and an on...= handler attribute: code
# the policy would block.
INLINE_SCRIPT = re.compile(r'<script\b(?![^>]*\s(?:src=|type="application/json"))[^>]*>', re.IGNORECASE)
INLINE_HANDLER = re.compile(r"<[a-z][^>]*\son[a-z]+\s*=", re.IGNORECASE)


def policy_of(response: Any) -> dict[str, list[str]]:
    """The Content-Security-Policy header's directives: name -> sources."""
    header = response.headers["content-security-policy"]
    return {name: sources for name, *sources in (d.split() for d in header.split(";") if d.strip())}


def test_every_patient_page_forbids_inline_script_and_has_none(
    harness: Harness, setup: dict[str, Any]
) -> None:
    headers = sign_in(harness, setup)
    client = harness.client
    responses = [client.get(path, headers=headers) for path in (*PAGES, f"/app/routine/{setup['assignment']['id']}")]
    responses += [
        client.get("/app/join"),
        client.get("/app/offline"),
        client.post("/app/home-screen-code", headers=headers),
        client.get("/app/routine/987654", headers=headers),  # the 404 page too
    ]
    for response in responses:
        where = f"{response.request.method} {response.request.url.path}"
        policy = policy_of(response)
        assert policy["script-src"] == ["'self'"], where
        assert policy["style-src"] == ["'self'"] and policy["object-src"] == ["'none'"], where
        assert "text/html" in response.headers["content-type"], where
        assert INLINE_SCRIPT.findall(response.text) == [], where
        assert INLINE_HANDLER.findall(response.text) == [], where
        assert " style=" not in response.text, where
    assert len(re.findall(r'<script src="/static/', responses[0].text)) >= 1  # the check sees scripts


def test_the_inline_code_checks_catch_what_the_policy_would_block() -> None:
    page = '<script defer>alert(1)</script><script src="/static/a.js"></script><script type="application/json">{}'
    assert INLINE_SCRIPT.findall(page) == ["<script defer>"]
    assert INLINE_HANDLER.findall('<button type="button" onclick="go()">') != []
    assert INLINE_HANDLER.findall('<a href="/x" data-on="1">') == []


def test_a_revoked_phone_goes_back_to_the_code_form(
    harness: Harness, setup: dict[str, Any]
) -> None:
    headers = sign_in(harness, setup)
    assert harness.client.delete("/api/me/device", headers=headers).status_code == 204
    response = harness.client.get("/app", headers=headers, follow_redirects=False)
    assert response.headers["location"] == "/app/join"


def test_today_lists_the_slots_with_start_for_the_next_one(
    harness: Harness, setup: dict[str, Any]
) -> None:
    headers = sign_in(harness, setup)
    assignment_id = setup["assignment"]["id"]
    page = harness.client.get("/app", headers=headers).text
    assert (
        len(re.findall(r'<li class="pa-slot[ "]', page)) == 2 + 1
    )  # two slots and the template for JavaScript
    assert f'href="/app/routine/{assignment_id}?time=08:00"' in page
    assert "Go gently this week." in page
    assert 'id="next-reminder"' in page
    data = json.loads(
        re.search(
            r'<script type="application/json" id="today-data">(.*?)</script>', page, re.DOTALL
        ).group(1)
    )
    assert [s["time"] for s in data["slots"]] == ["08:00", "19:30"]
    assert "Good morning, Pat Jones" in page and "Monday 2 March" in page


def test_the_player_shows_every_exercise_and_records_without_javascript(
    harness: Harness, setup: dict[str, Any]
) -> None:
    headers = sign_in(harness, setup)
    assignment_id = setup["assignment"]["id"]
    page = harness.client.get(f"/app/routine/{assignment_id}?time=19:30", headers=headers)
    assert page.status_code == 200
    assert page.text.count('class="pa-step pa-exercise"') == 3
    assert "/static/exercises/" in page.text and "Safety:" in page.text
    assert 'name="time" value="19:30"' in page.text
    client_id = re.search(r'name="client_id" value="([^"]+)"', page.text).group(1)
    form = {
        "client_id": client_id,
        "time": "19:30",
        "pain_before": "6",
        "pain_after": "4",
        "difficulty": "ok",
        "note": "",
    }
    for _ in range(2):  # a double tap on Done records it once
        done = harness.client.post(
            f"/app/routine/{assignment_id}", data=form, headers=headers, follow_redirects=False
        )
        assert done.status_code == 303 and done.headers["location"] == "/app?saved=1"
    today = harness.client.get("/api/me/today", headers=headers).json()
    assert [s["done"] for s in today["slots"]] == [False, True]
    history = harness.client.get("/api/me/history", headers=headers).json()
    assert len(history["completions"]) == 1 and history["completions"][0]["pain_after"] == 4


def test_another_patients_routine_is_not_found(harness: Harness, setup: dict[str, Any]) -> None:
    other = harness.practitioner("other@example.org")
    stranger = harness.patient(other, name="Sam")
    theirs = harness.assignment(other, stranger["id"], harness.routine(other)["id"])
    headers = sign_in(harness, setup)
    assert harness.client.get(f"/app/routine/{theirs['id']}", headers=headers).status_code == 404
    missing = harness.client.get("/app/routine/nope", headers=headers)
    assert missing.status_code == 404
    # In the patient app's own look, with the way back to today and no link to the staff side.
    assert 'href="/app"' in missing.text and "pa-card" in missing.text and 'href="/"' not in missing.text


def test_history_shows_the_days_and_the_pain_chart(
    harness: Harness, setup: dict[str, Any], clock: Clock
) -> None:
    headers = sign_in(harness, setup)
    assignment_id = setup["assignment"]["id"]
    for n, (pain, day) in enumerate(((6, "2026-03-02"), (4, "2026-03-03"))):
        if n:
            clock.advance(days=1)
        body = {
            "client_id": f"client-{n:04d}",
            "assignment_id": assignment_id,
            "date": day,
            "time": "08:00",
            "pain_before": pain + 1,
            "pain_after": pain,
            "difficulty": "ok",
        }
        assert (
            harness.client.post("/api/me/completions", json=body, headers=headers).status_code
            == 201
        )
    page = harness.client.get("/app/history", headers=headers).text
    assert page.count('class="pa-day is-') >= 28
    assert "Tuesday 3 March: 1 of 2 done so far" in page
    assert "Pain after exercising went from 6 to 4" in page
    assert page.count('class="pa-dot-after"') == 2


def test_settings_change_the_time_zone_and_sign_out_without_javascript(
    harness: Harness, setup: dict[str, Any]
) -> None:
    headers = sign_in(harness, setup)
    page = harness.client.get("/app/settings", headers=headers).text
    assert 'id="reminders"' in page and '<option value="Europe/London" selected>' in page
    saved = harness.client.post(
        "/app/settings", data={"timezone": "Europe/Paris"}, headers=headers, follow_redirects=False
    )
    assert saved.status_code == 303
    assert (
        harness.client.get("/api/me", headers=headers).json()["patient"]["timezone"]
        == "Europe/Paris"
    )
    assert (
        harness.client.post(
            "/app/settings", data={"timezone": "Mars/Base"}, headers=headers
        ).status_code
        == 400
    )
    out = harness.client.post("/app/sign-out", headers=headers, follow_redirects=False)
    assert out.headers["location"] == "/app/join"
    assert harness.client.get("/api/me", headers=headers).status_code == 401


def test_a_code_for_the_home_screen_app_signs_in_a_second_device(
    harness: Harness, setup: dict[str, Any]
) -> None:
    headers = sign_in(harness, setup)
    page = harness.client.post("/app/home-screen-code", headers=headers)
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    code = re.search(r'<p class="pa-code"[^>]*>([A-Z0-9-]+)</p>', page.text).group(1)
    joined = harness.client.post("/api/join", json={"code": code})
    assert joined.status_code == 200 and joined.json()["patient"]["name"] == "Pat Jones"


# --- manifest and service worker ----------------------------------------------------------


def test_manifest(harness: Harness) -> None:
    response = harness.client.get("/manifest.webmanifest")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/manifest+json")
    m = response.json()
    assert (m["start_url"], m["scope"], m["display"], m["short_name"]) == (
        "/app",
        "/",
        "standalone",
        "Homework",
    )
    assert m["name"] and m["theme_color"] and m["background_color"]
    icons = {(i["sizes"], i["purpose"]): i["src"] for i in m["icons"]}
    assert set(icons) == {("192x192", "any"), ("512x512", "any"), ("512x512", "maskable")}
    for src in icons.values():
        assert harness.client.get(src).status_code == 200


def test_service_worker_is_served_from_the_root_with_a_version(harness: Harness) -> None:
    response = harness.client.get("/sw.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    assert response.headers["cache-control"] == "no-cache"
    version = re.search(r"var VERSION = '([0-9a-f]{16})';", response.text).group(1)
    precache = json.loads(
        re.search(r"var PRECACHE = (\[.*?\]);", response.text, re.DOTALL).group(1)
    )
    assert {
        "/app/offline",
        "/app/join",
        "/static/app/app.css",
        "/static/app/outbox.js",
        "/static/css/site.css",
        "/static/icons/icon-192.png",
        "/static/exercises/knee-to-chest.svg",
    } <= set(precache)
    exercises = {p.name for p in Path("static/exercises").iterdir()}
    assert exercises <= {url.rsplit("/", 1)[1] for url in precache}
    for url in precache:
        assert harness.client.get(url).status_code == 200, url
    assert version == pwa.service_worker()[0]


def test_the_version_changes_with_any_static_file(tmp_path: Path) -> None:
    static = tmp_path / "static"
    (static / "app").mkdir(parents=True)
    (static / "app" / "app.js").write_text("one")
    source = tmp_path / "templates" / "sw.js"
    source.parent.mkdir()
    source.write_text("var VERSION = '__VERSION__'; var PRECACHE = __PRECACHE__;")
    first, script = pwa.service_worker(static, source)
    assert first in script and '"/static/app/app.js"' in script
    (static / "app" / "app.js").write_text("two")
    pwa.service_worker.cache_clear()
    second, _ = pwa.service_worker(static, source)
    assert second != first
    pwa.service_worker.cache_clear()


# --- reminders on today and settings --------------------------------------------------------


@pytest.fixture
def push_harness(settings: Settings, clock: Clock) -> Iterator[Harness]:
    """The app with a VAPID subject, so that it can send reminders."""
    app = create_app(
        dataclasses.replace(settings, vapid_subject="mailto:ops@clinic-test.org"), clock=clock
    )
    with TestClient(app, base_url="http://testserver") as client:
        yield Harness(client)


def browser_subscription() -> dict[str, Any]:
    """What PushSubscription.toJSON() gives: an FCM endpoint, a P-256 key and 16 auth bytes."""
    point = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return {
        "endpoint": "https://fcm.googleapis.com/fcm/send/" + b64(os.urandom(24)),
        "expirationTime": None,
        "keys": {"p256dh": b64(point), "auth": b64(os.urandom(16))},
    }


def next_reminder_line(page: str) -> str:
    found = re.search(
        r'<p class="pa-next-reminder" id="next-reminder"([^>]*)>(.*?)</p>', page, re.DOTALL
    )
    assert found is not None
    return found.group(1) + "|" + re.sub(r"\s+", " ", found.group(2)).strip()


def test_today_says_when_the_next_reminder_comes_or_that_reminders_are_off(
    push_harness: Harness,
) -> None:
    h = push_harness
    dr = h.practitioner("dr@example.org")
    patient = h.patient(dr, name="Pat Jones")
    h.assignment(dr, patient["id"], h.routine(dr)["id"])  # 08:00 and 19:30, London
    headers = {"Cookie": h.join(dr, patient["id"])}
    line = next_reminder_line(h.client.get("/app", headers=headers).text)
    assert line == '|Reminders are off — <a href="/app/settings#reminders">turn them on</a>'

    assert (
        h.client.post(
            "/api/me/push-subscriptions", headers=headers, json=browser_subscription()
        ).status_code
        == 201
    )
    h.run(reminders.plan, h.ctx.db, h.ctx.now())  # Monday 09:00 UTC: the next slot is 19:30 today
    line = next_reminder_line(h.client.get("/app", headers=headers).text)
    assert line == ' data-reminder-at="2026-03-02T19:30:00Z"|Next reminder 19:30'


def test_today_says_nothing_of_reminders_when_the_server_cannot_send_them(
    harness: Harness, setup: dict[str, Any]
) -> None:
    page = harness.client.get("/app", headers=sign_in(harness, setup)).text
    assert next_reminder_line(page) == " hidden|"


def test_settings_show_the_reminder_controls_with_the_saved_values(
    push_harness: Harness, clock: Clock
) -> None:
    h = push_harness
    dr = h.practitioner("dr@example.org")
    patient = h.patient(dr, name="Pat Jones")
    h.assignment(dr, patient["id"], h.routine(dr)["id"])
    headers = {"Cookie": h.join(dr, patient["id"])}
    assert (
        h.client.patch(
            "/api/me/reminders",
            headers=headers,
            json={"quiet_start": "22:00", "quiet_end": "06:45", "nudges": False},
        ).status_code
        == 200
    )
    page = h.client.get("/app/settings", headers=headers)
    text = page.text
    assert (
        '<section class="pa-card pa-reminders" id="reminders" aria-labelledby="reminders-h" data-ready>'
        in text
    )
    assert 'role="switch" aria-checked="false"' in text
    assert 'id="quiet-start" name="quiet_start" value="22:00"' in text
    assert 'id="quiet-end" name="quiet_end" value="06:45"' in text
    assert re.search(r'<input type="checkbox" id="nudges" name="nudges">', text)
    assert "Send me a test reminder" in text
    assert '<script src="/static/app/reminders.js" defer></script>' in text
    assert re.search(r'id="rem-next" hidden', text)  # off: no next reminder

    h.client.post("/api/me/push-subscriptions", headers=headers, json=browser_subscription())
    clock.advance(hours=11)  # Monday 20:00: the next is tomorrow's 08:00
    h.run(reminders.plan, h.ctx.db, h.ctx.now())
    text = h.client.get("/app/settings", headers=headers).text
    assert '<strong id="rem-next-time">tomorrow at 08:00</strong>' in text


def test_settings_say_so_when_the_server_cannot_send_reminders(
    harness: Harness, setup: dict[str, Any]
) -> None:
    page = harness.client.get("/app/settings", headers=sign_in(harness, setup)).text
    assert "Your clinic has not set up reminders on this server yet." in page
    assert 'role="switch"' not in page


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (None, None),
        ("2026-03-02T19:30:00Z", "19:30"),
        ("2026-03-03T08:00:00Z", "tomorrow at 08:00"),
        ("2026-03-05T08:00:00Z", "Thursday at 08:00"),
        ("2026-03-20T08:00:00Z", "Fri 20 Mar at 08:00"),
        ("2026-03-29T06:00:00Z", "Sun 29 Mar at 07:00"),  # British Summer Time has begun
    ],
)
def test_reminder_times_are_said_in_the_patients_time_zone(
    at: str | None, expected: str | None
) -> None:
    now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    assert reminder_when(at, "Europe/London", now) == expected
    if at:
        assert reminder_when(at, "Asia/Tokyo", now) is not None


def test_calendar_link_from_settings_works_without_javascript(harness: Harness, setup: dict[str, Any]) -> None:
    import re

    me = sign_in(harness, setup)
    page = harness.client.post("/app/settings/calendar", data={"action": "create"}, headers=me)
    assert page.status_code == 200
    url = re.search(r'value="(http://testserver/calendar/[^"]+\.ics)"', page.text)
    assert url is not None and "webcal://testserver/calendar/" in page.text
    path = url.group(1).removeprefix("http://testserver")
    feed = harness.client.get(path)
    assert feed.status_code == 200 and feed.headers["content-type"].startswith("text/calendar")
    assert "BEGIN:VCALENDAR" in feed.text
    assert "calendar link is on" in harness.client.get("/app/settings", headers=me).text
    stopped = harness.client.post("/app/settings/calendar", data={"action": "revoke"}, headers=me,
                                  follow_redirects=False)
    assert stopped.status_code == 303
    assert harness.client.get(path).status_code == 404
