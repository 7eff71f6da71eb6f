"""The patient app in headless Chromium at phone size: joining, today, the player, offline, a11y.

One browser and one live server for the module; every test makes its own patient.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect, sync_playwright

from server.routes import pwa
from tests.browser import (
    ARGS,
    ARTIFACTS,
    AXE,
    CHROMIUM,
    MARKS,
    NEEDS_AXE,
    PHONE,
    SMALL_PHONE,
    TZ,
    Clinic,
    LiveServer,
    poll,
    today_local,
)

pytestmark = MARKS
_names = itertools.count(1)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("live")).start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def clinic(server: LiveServer) -> Iterator[Clinic]:
    c = Clinic(server, "browser@clinic.example.org")
    yield c
    c.close()


@pytest.fixture(scope="module")
def pw() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(pw: Playwright) -> Iterator[Browser]:
    b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
    yield b
    b.close()


@pytest.fixture
def phone(browser: Browser, server: LiveServer) -> Iterator[BrowserContext]:
    context = browser.new_context(base_url=server.url, **PHONE)
    yield context
    context.close()


def new_patient(
    clinic: Clinic,
    *,
    items: list[dict[str, Any]] | None = None,
    times: tuple[str, ...] = ("08:00", "19:30"),
) -> dict[str, Any]:
    n = next(_names)
    patient = clinic.patient(f"Alex Morgan {n}", TZ)
    routine = clinic.routine(
        f"Back basics {n}",
        items
        or [
            {
                "exercise": "Single knee-to-chest",
                "reps": 2,
                "sets": 1,
                "hold_seconds": 10,
                "sides": "both",
                "rest_seconds": 0,
            },
            {
                "exercise": "Pelvic tilt",
                "reps": 3,
                "sets": 1,
                "hold_seconds": 5,
                "sides": "none",
                "rest_seconds": 0,
            },
        ],
    )
    assignment = clinic.assign(
        patient["id"],
        routine["id"],
        today_local(),
        list(times),
        note="Gentle is fine. Stop if the leg pain spreads.",
    )
    return {
        "patient": patient,
        "routine": routine,
        "assignment": assignment,
        "invite": clinic.invite(patient["id"]),
    }


def join_by_link(page: Page, who: dict[str, Any]) -> None:
    page.goto(who["invite"]["url"])
    expect(page).to_have_url(f"{page.url.split('/app')[0]}/app")
    expect(page.get_by_role("heading", level=1)).to_contain_text(who["patient"]["name"])


def wait_controlled(page: Page) -> None:
    # wait_for_function would compile its predicate with eval, which the app's CSP forbids.
    poll(
        lambda: page.evaluate("() => !!navigator.serviceWorker.controller"),
        what="a controlling worker",
        sleep=page_poll(page),
    )


def cached(page: Page, url: str) -> bool:
    return bool(page.evaluate("url => caches.match(url).then(r => !!r)", url))


def outbox(page: Page) -> list[dict[str, Any]]:
    return page.evaluate("() => HWOutbox.all()")  # type: ignore[no-any-return]


def page_poll(page: Page) -> Any:
    return lambda s: page.wait_for_timeout(s * 1000)


def completions_of(server: LiveServer, who: dict[str, Any]) -> int:
    return server.count(
        "SELECT count(*) FROM completions WHERE patient_id = ?", who["patient"]["id"]
    )


# --- getting in ---------------------------------------------------------------------------


def test_join_by_link_opens_today(
    phone: BrowserContext, clinic: Clinic, server: LiveServer
) -> None:
    who = new_patient(clinic)
    page = phone.new_page()
    join_by_link(page, who)
    cookie = next(c for c in phone.cookies() if c["name"] == "hw_device")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    page.goto(who["invite"]["url"])  # the same link again: this phone is in, so straight to today
    expect(page).to_have_url(server.url + "/app")


def test_join_by_code_accepts_it_as_typed(
    phone: BrowserContext, clinic: Clinic, server: LiveServer
) -> None:
    who = new_patient(clinic)
    page = phone.new_page()
    page.goto("/app/join")
    page.get_by_role("textbox", name="Your code").fill("nope")
    page.get_by_role("button", name="Open my exercises").click()
    expect(page.locator("#code-error")).to_contain_text("8 letters")
    code = who["invite"]["code"]
    page.get_by_role("textbox", name="Your code").fill(f"{code[:4].lower()} - {code[4:].lower()}")
    page.get_by_role("button", name="Open my exercises").click()
    expect(page).to_have_url(server.url + "/app")
    expect(page.get_by_role("heading", level=1)).to_contain_text(who["patient"]["name"])


# --- today and the player -----------------------------------------------------------------


def test_today_lists_the_slots(phone: BrowserContext, clinic: Clinic) -> None:
    who = new_patient(clinic)
    page = phone.new_page()
    join_by_link(page, who)
    slots = page.locator("#slots > li")
    expect(slots).to_have_count(2)
    expect(slots.nth(0)).to_contain_text("08:00")
    expect(slots.nth(0).get_by_role("heading", level=3)).to_have_text(who["routine"]["name"])
    minutes = who["assignment"]["estimated_minutes"]
    expect(slots.nth(0)).to_contain_text(f"2 exercises · about {minutes} min")
    expect(page.locator("#streak")).to_be_hidden()  # nothing done yet
    expect(slots.nth(1)).to_contain_text("19:30")
    expect(page.locator("#slots .button.primary")).to_have_count(1)
    expect(page.get_by_text("Gentle is fine.")).to_be_visible()
    expect(page.locator("#next-reminder")).to_be_attached()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "today.png")

    # A completion the server refuses (4xx) stays on the phone, shown, until the patient decides.
    outcome = page.evaluate("""() => HW.record(
      {client_id: HWOutbox.uuid(), assignment_id: 987654321, date: HW.localDate(HW.timeZone), completed_at: new Date().toISOString()},
      {routine: 'An old routine', date: HW.localDate(HW.timeZone)})""")
    assert outcome == {"failed": "No such assignment."}
    unsent = page.locator("#unsent")
    expect(unsent).to_contain_text("An old routine")
    expect(page.locator("#outbox-status")).to_contain_text("could not be saved")
    unsent.get_by_role("button", name="Remove").click()
    expect(unsent).to_be_hidden()

    # High pain after stretching: the server's safety advice is shown where it cannot be missed.
    outcome = page.evaluate(
        """aid => HW.record({client_id: HWOutbox.uuid(), assignment_id: aid, date: HW.localDate(HW.timeZone),
             time: '08:00', pain_before: 5, pain_after: 9}, {assignment_id: aid, date: HW.localDate(HW.timeZone)})""",
        who["assignment"]["id"],
    )
    assert outcome == "sent"
    expect(page.get_by_role("alert").filter(has_text="Please take care")).to_be_visible()


RECORD_VIBRATION_WAKE_LOCK_AND_BEEPS = """
navigator.vibrate = p => { (window.buzz = window.buzz || []).push(p); return true; };
window.wake = {requests: 0, released: 0, sentinel: null};
Object.defineProperty(navigator, 'wakeLock', {value: {request: () => {
  wake.requests++;
  const s = new EventTarget();
  s.release = () => { wake.released++; s.dispatchEvent(new Event('release')); return Promise.resolve(); };
  wake.sentinel = s;
  return Promise.resolve(s);
}}});
window.beeps = [];
window.AudioContext = class {
  constructor() { this.state = 'running'; this.currentTime = 0; this.destination = {}; }
  resume() { return Promise.resolve(); }
  createGain() { return {gain: {setValueAtTime() {}, exponentialRampToValueAtTime() {}}, connect() {}}; }
  createOscillator() {
    const osc = {frequency: {value: 0}, connect() {}, stop() {}, start: () => beeps.push(osc.frequency.value)};
    return osc;
  }
};
"""


def test_the_player_runs_a_whole_routine_and_records_it(
    phone: BrowserContext, clinic: Clinic, server: LiveServer
) -> None:
    who = new_patient(
        clinic,
        items=[
            {
                "exercise": "Single knee-to-chest",
                "reps": 2,
                "sets": 1,
                "hold_seconds": 20,
                "sides": "both",
                "rest_seconds": 0,
            },
            {
                "exercise": "Pelvic tilt",
                "reps": 2,
                "sets": 2,
                "hold_seconds": 5,
                "sides": "none",
                "rest_seconds": 30,
            },
        ],
        times=("08:00",),
    )
    page = phone.new_page()
    page.add_init_script(RECORD_VIBRATION_WAKE_LOCK_AND_BEEPS)
    page.clock.install()
    join_by_link(page, who)
    page.locator("#slots .button.primary").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(who["routine"]["name"])
    page.locator("#pain_before-field").get_by_role("radio", name="6", exact=True).check()
    page.get_by_role("button", name="Start exercises").click()

    # Knee-to-chest: 2 holds of 20 s on the left, switch, 2 on the right.
    first = page.locator("#ex-0")
    expect(first.get_by_role("heading", level=2)).to_have_text("Single knee-to-chest")
    expect(page.locator("#t-phase")).to_have_text("Ready")
    expect(page.locator("#t-count")).to_have_text("20")
    page.get_by_role("checkbox", name="Beep when each hold ends").check()
    assert page.evaluate("beeps") == [660]  # a sample when it is switched on
    page.get_by_role("button", name="Start", exact=True).click()
    page.clock.run_for(4_000)
    expect(page.locator("#t-phase")).to_have_text("Hold")
    expect(page.locator("#t-count")).to_have_text("16")
    expect(page.locator("#t-side")).to_have_text("Left side")
    expect(page.locator("#t-where")).to_contain_text("Rep 1 of 2")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "player.png")
    assert page.evaluate("wake.requests") == 1  # the screen stays on while the timer runs
    page.get_by_role("button", name="Pause").click()
    assert page.evaluate("wake.released") == 1
    page.clock.run_for(30_000)
    expect(page.locator("#t-count")).to_have_text("16")  # paused: no time passes
    page.get_by_role("button", name="Resume").click()
    # The system drops the lock when the page is hidden; coming back takes it again.
    page.evaluate(
        "() => { wake.sentinel.dispatchEvent(new Event('release')); document.dispatchEvent(new Event('visibilitychange')); }"
    )
    assert page.evaluate("wake.requests") == 3
    page.clock.run_for(
        16_000 + 5_000 + 20_000 + 2_000
    )  # rest of rep 1, relax, rep 2, into the switch
    expect(page.locator("#t-phase")).to_have_text("Switch sides")
    page.clock.run_for(3_000 + 5_000)
    expect(page.locator("#t-side")).to_have_text("Right side")
    page.clock.run_for(60_000)
    expect(page.locator("#t-phase")).to_have_text("Done")
    assert page.evaluate("window.buzz.filter(p => p === 250).length") == 4  # one buzz per hold
    # Each cue sounds with its vibration: one beep when a hold ends, two for the others.
    cues = [[880] if p == 250 else [660, 880] for p in page.evaluate("window.buzz")]
    assert page.evaluate("beeps") == [660, *itertools.chain(*cues)]
    page.get_by_role("button", name="Next exercise").click()
    expect(page.locator("#ex-1 h2")).to_have_text("Pelvic tilt")
    page.get_by_role("button", name="Back").click()
    expect(page.locator("#ex-0 h2")).to_have_text("Single knee-to-chest")
    expect(page.locator("#ex-1")).to_be_hidden()
    page.get_by_role("button", name="Skip", exact=True).click()

    # Pelvic tilt: 2 reps of 5 s, a 30 s rest, then the second set.
    expect(page.locator("#ex-1 h2")).to_have_text("Pelvic tilt")
    page.get_by_role("button", name="Start", exact=True).click()
    page.clock.run_for(10_500)
    expect(page.locator("#t-phase")).to_have_text("Rest")
    expect(page.locator("#t-where")).to_contain_text("Next: set 2 of 2")
    page.get_by_role("button", name="Skip the rest").click()
    expect(page.locator("#t-where")).to_contain_text("Set 2 of 2")
    page.clock.run_for(11_000)
    expect(page.get_by_role("button", name="Finish")).to_be_visible()
    page.get_by_role("button", name="Finish").click()

    page.locator("#pain_after-field").get_by_role("radio", name="3", exact=True).check()
    page.get_by_role("radio", name="About right").check()
    page.get_by_label("Anything to tell your practitioner?").fill("Easier than last week")
    page.get_by_role("button", name="Done", exact=True).click()
    expect(page.locator("#result-h")).to_have_text("Saved. Well done!")

    rows = server.run(
        server.ctx.db.fetchall,
        "SELECT slot_time, pain_before, pain_after, difficulty, note FROM completions WHERE patient_id = ?",
        (who["patient"]["id"],),
    )
    assert [tuple(r) for r in rows] == [("08:00", 6, 3, "ok", "Easier than last week")]
    page.get_by_role("link", name="Back to today").click()
    expect(page.locator("#slots > li").first).to_contain_text("Done")
    expect(page.locator("#streak")).to_have_text("1 day in a row")  # today's one slot done


# --- offline ------------------------------------------------------------------------------


def skip_to_the_end(page: Page, exercises: int) -> None:
    page.get_by_role("button", name="Start exercises").click()
    for _ in range(exercises):
        page.get_by_role("button", name="Skip", exact=True).click()
    page.locator("#pain_after-field").get_by_role("radio", name="4", exact=True).check()
    page.get_by_role("button", name="Done", exact=True).click()


def test_offline_the_app_opens_and_a_completion_arrives_exactly_once(
    phone: BrowserContext, clinic: Clinic, server: LiveServer
) -> None:
    who = new_patient(clinic)
    aid = who["assignment"]["id"]
    page = phone.new_page()
    join_by_link(page, who)
    wait_controlled(page)
    for url in (
        "/app",
        f"/app/routine/{aid}",
        f"/api/me/assignments/{aid}",
        "/api/me/today",
        "/static/exercises/pelvic-tilt.svg",
    ):
        poll(lambda url=url: cached(page, url), what=f"{url} in the cache", sleep=page_poll(page))

    phone.set_offline(True)
    response = page.reload()
    assert response is not None and response.from_service_worker
    expect(page.locator("#slots > li")).to_have_count(2)
    expect(page.locator("#net-status")).to_be_visible()

    # The player fetches nothing on load: the worker marks the cached page it gave instead.
    response = page.goto(f"/app/routine/{aid}?time=19:30")
    assert response is not None and response.from_service_worker
    expect(page.locator("#net-status")).to_be_visible()
    expect(page.locator("#ex-0 img")).to_have_js_property("complete", True)
    assert (
        page.locator("#ex-0 img").evaluate("img => img.naturalWidth") > 0
    )  # illustrations are precached
    skip_to_the_end(page, 2)
    expect(page.locator("#result")).to_contain_text("Saved on this phone")
    assert len(outbox(page)) == 1

    page.get_by_role("link", name="Back to today").click()
    late = page.locator("#slots > li").nth(1)
    expect(late).to_contain_text("Saved on this phone, will sync")
    page.reload()  # still offline: nothing is lost
    expect(late).to_contain_text("Saved on this phone, will sync")
    expect(page.locator("#outbox-status")).to_contain_text("will sync")
    assert completions_of(server, who) == 0

    before = server.posts("/api/me/completions")
    phone.set_offline(False)
    poll(
        lambda: completions_of(server, who) == 1,
        what="the completion on the server",
        sleep=page_poll(page),
    )
    poll(lambda: outbox(page) == [], what="an empty outbox", sleep=page_poll(page))
    expect(late).to_contain_text("Done")
    page.reload()  # the page-load flush finds nothing more to send
    expect(page.locator("#slots > li").nth(1)).to_contain_text("Done")
    expect(page.locator("#net-status")).to_be_hidden()
    assert server.posts("/api/me/completions") - before == 1
    assert completions_of(server, who) == 1
    row = server.run(
        server.ctx.db.fetchone,
        "SELECT slot_time, pain_after FROM completions WHERE patient_id = ?",
        (who["patient"]["id"],),
    )
    assert tuple(row) == ("19:30", 4)


def join_and_cache(phone: BrowserContext, clinic: Clinic, path: str) -> tuple[dict[str, Any], Page]:
    """Join a new patient on a new page and wait until the worker has cached path ({aid}: the assignment)."""
    who = new_patient(clinic)
    page = phone.new_page()
    join_by_link(page, who)
    wait_controlled(page)
    url = path.format(aid=who["assignment"]["id"])
    poll(lambda: cached(page, url), what=f"{url} in the cache", sleep=page_poll(page))
    return who, page


def complete_offline(
    phone: BrowserContext, clinic: Clinic, query: str = "", *, hold_clock: bool = False
) -> tuple[dict[str, Any], Page]:
    """Join a new patient, open the player once cached, go offline and finish the routine there.

    hold_clock: the page's clock stands still (no timer fires until the test moves it).
    """
    who, page = join_and_cache(phone, clinic, "/app/routine/{aid}")
    if hold_clock:
        page.clock.install()
    page.goto(f"/app/routine/{who['assignment']['id']}{query}")
    if hold_clock:
        page.clock.pause_at(datetime.now(UTC) + timedelta(seconds=1))  # installed, it would still run
    phone.set_offline(True)
    skip_to_the_end(page, 2)
    expect(page.locator("#result")).to_contain_text("Saved on this phone")
    return who, page


def test_background_sync_sends_the_queue_with_no_page_open(
    phone: BrowserContext, clinic: Clinic, server: LiveServer
) -> None:
    who, page = complete_offline(phone, clinic, "?time=08:00")
    worker = phone.service_workers[0]
    page.close()  # no page left to flush on `online`: only the worker's sync event can
    phone.set_offline(False)
    poll(lambda: completions_of(server, who) == 1, what="the completion sent by Background Sync")
    assert worker.evaluate("HWOutbox.all()") == []


# A browser without Background Sync (Safari, Firefox): only the pages can send the queue.
NO_BACKGROUND_SYNC = """
Object.defineProperty(ServiceWorkerRegistration.prototype, 'sync', {get: () => undefined});
"""


# A network with no way out: `online` never comes (a capture listener swallows it).
NO_ONLINE_EVENT = "window.addEventListener('online', e => e.stopImmediatePropagation(), true);"


def finish_where_only_the_page_sends(
    phone: BrowserContext, clinic: Clinic, *, hears_online: bool
) -> tuple[dict[str, Any], Page]:
    """A routine finished offline on a page with no Background Sync and its clock held (no
    retry fires until the test moves it); with hears_online False, no `online` event either."""
    phone.add_init_script(NO_BACKGROUND_SYNC + ("" if hears_online else NO_ONLINE_EVENT))
    return complete_offline(phone, clinic, "?time=08:00", hold_clock=True)


def test_with_no_background_sync_the_open_page_sends_the_queue_on_online(
    phone: BrowserContext, clinic: Clinic, server: LiveServer
) -> None:
    who, page = finish_where_only_the_page_sends(phone, clinic, hears_online=True)
    phone.set_offline(False)
    poll(lambda: completions_of(server, who) == 1, what="the completion sent on `online`", sleep=page_poll(page))
    poll(lambda: outbox(page) == [], what="an empty outbox", sleep=page_poll(page))


def test_a_page_that_never_hears_online_tries_again_while_sessions_wait(
    phone: BrowserContext, clinic: Clinic, server: LiveServer
) -> None:
    who, page = finish_where_only_the_page_sends(phone, clinic, hears_online=False)
    posts = server.posts("/api/me/completions")
    attempts = outbox(page)[0]["attempts"]
    page.clock.fast_forward(15_000)  # the first retry, still offline
    poll(lambda: outbox(page)[0]["attempts"] == attempts + 1, what="the first retry", sleep=page_poll(page))
    phone.set_offline(False)
    page.clock.fast_forward(25_000)  # the next one is 30 s after the first
    page.wait_for_timeout(500)
    assert completions_of(server, who) == 0 and server.posts("/api/me/completions") == posts
    page.clock.fast_forward(5_000)
    poll(lambda: completions_of(server, who) == 1, what="the completion sent by a retry", sleep=page_poll(page))
    poll(lambda: outbox(page) == [], what="an empty outbox", sleep=page_poll(page))


def test_coming_back_to_the_app_sends_the_queue(
    phone: BrowserContext, clinic: Clinic, server: LiveServer
) -> None:
    who, page = finish_where_only_the_page_sends(phone, clinic, hears_online=False)
    phone.set_offline(False)
    page.wait_for_timeout(500)
    assert completions_of(server, who) == 0
    page.evaluate("() => document.dispatchEvent(new Event('visibilitychange'))")  # the app shown again
    poll(lambda: completions_of(server, who) == 1, what="the completion sent on coming back", sleep=page_poll(page))


def test_with_no_background_sync_the_next_page_load_sends_the_queue(
    phone: BrowserContext, clinic: Clinic, server: LiveServer
) -> None:
    phone.add_init_script(NO_BACKGROUND_SYNC)
    who, page = complete_offline(phone, clinic, "?time=08:00")
    page.close()
    phone.set_offline(False)
    page = phone.new_page()  # opened online: it never sees an `online` event
    page.wait_for_timeout(1000)
    assert completions_of(server, who) == 0  # nothing sent it before this load
    page.goto("/app")
    poll(lambda: completions_of(server, who) == 1, what="the completion sent on load", sleep=page_poll(page))
    expect(page.locator("#slots > li").first).to_contain_text("Done")


# A private window: IndexedDB refuses to open, so the player sends the completion directly.
NO_INDEXEDDB = """
Object.defineProperty(window, 'indexedDB', {value: {open: () => { throw new Error('no IndexedDB here'); }}});
"""


def test_with_no_indexeddb_tapping_done_again_after_a_lost_answer_makes_no_second_row(
    browser: Browser, clinic: Clinic, server: LiveServer
) -> None:
    who = new_patient(clinic)
    # No worker either: page.route sees only what the page itself sends.
    context = browser.new_context(base_url=server.url, service_workers="block", **PHONE)
    try:
        page = context.new_page()
        page.add_init_script(NO_INDEXEDDB)
        join_by_link(page, who)
        sent: list[str] = []

        def lose_the_first_two_answers(route: Any) -> None:
            sent.append(route.request.post_data_json["client_id"])
            if len(sent) == 1:
                route.fetch()  # the server stores it ...
                route.abort()  # ... and its answer never reaches the phone
            elif len(sent) == 2:
                route.abort()  # the network fails again
            else:
                route.continue_()

        page.route("**/api/me/completions", lose_the_first_two_answers)
        page.goto(f"/app/routine/{who['assignment']['id']}?time=08:00")
        skip_to_the_end(page, 2)
        failed = page.get_by_role("alert").filter(has_text="tap Done again")
        expect(failed).to_be_visible()
        assert completions_of(server, who) == 1
        page.get_by_role("button", name="Done", exact=True).click()
        poll(lambda: len(sent) == 2, what="the second send", sleep=page_poll(page))
        expect(page.get_by_role("button", name="Done", exact=True)).to_be_enabled()
        expect(failed).to_have_count(1)  # said again, not piled up
        page.get_by_role("button", name="Done", exact=True).click()
        expect(page.locator("#result-h")).to_have_text("Saved. Well done!")
        assert len(sent) == 3 and len(set(sent)) == 1  # every retry is the same completion
        assert completions_of(server, who) == 1
    finally:
        context.close()


def test_a_revoked_phone_keeps_its_queue_and_shows_the_join_screen(
    phone: BrowserContext, clinic: Clinic, server: LiveServer
) -> None:
    who, page = complete_offline(phone, clinic)
    device = server.count("SELECT max(id) FROM devices WHERE patient_id = ?", who["patient"]["id"])
    clinic.http.delete(f"/api/patients/{who['patient']['id']}/devices/{device}").raise_for_status()
    phone.set_offline(False)
    page.wait_for_url("**/app/join?signed_out=1")
    expect(page.locator("#signed-out-note")).to_be_visible()
    assert len(outbox(page)) == 1  # a 401 never deletes what the patient recorded
    assert completions_of(server, who) == 0


def test_a_new_version_replaces_the_old_static_cache_and_keeps_the_patients_data(
    phone: BrowserContext, clinic: Clinic, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, page = join_and_cache(phone, clinic, "/api/me/today")
    old, script = pwa.service_worker()
    assert f"homework-static-{old}" in page.evaluate("() => caches.keys()")
    # A deploy: any change to a static file, the worker or a page template makes a new version.
    new = "0" * 16
    monkeypatch.setattr(pwa, "service_worker", lambda: (new, script.replace(old, new)))
    page.evaluate("() => navigator.serviceWorker.getRegistration().then(r => r.update())")
    names = poll(
        lambda: (found := page.evaluate("() => caches.keys()")) and f"homework-static-{old}" not in found and found,
        what="the old static cache deleted",
        sleep=page_poll(page),
    )
    assert sorted(names) == sorted([f"homework-static-{new}", "homework-pages-v1", "homework-data-v1"])
    assert cached(page, "/static/app/player.js")  # precached again, into the new cache
    phone.set_offline(True)  # the patient's today, cached before the deploy, still opens
    page.reload()
    expect(page.locator("#slots > li")).to_have_count(2)


def test_a_page_cached_yesterday_shows_todays_slots_offline(
    phone: BrowserContext, clinic: Clinic, server: LiveServer
) -> None:
    who, page = join_and_cache(phone, clinic, "/api/me/assignments/{aid}")
    aid = who["assignment"]["id"]
    done = page.evaluate(
        """aid => fetch('/api/me/completions', {method: 'POST', headers: {'Content-Type': 'application/json'},
      body: JSON.stringify({client_id: crypto.randomUUID(), assignment_id: aid, date: HW.localDate(HW.timeZone), time: '08:00'})}).then(r => r.status)""",
        aid,
    )
    assert done == 201
    page.reload()  # through the worker, which caches this page with 08:00 done
    expect(page.locator("#slots > li").first).to_contain_text("Done")

    tomorrow = datetime.fromisoformat(today_local() + "T09:00:00").replace(
        tzinfo=ZoneInfo(TZ)
    ) + timedelta(days=1)
    page.clock.install(time=tomorrow)
    phone.set_offline(True)
    response = page.reload()
    assert response is not None and response.from_service_worker
    slots = page.locator("#slots > li")
    expect(slots.first).to_contain_text(
        "Up next"
    )  # rebuilt for tomorrow from the cached assignment
    expect(slots).to_have_count(2)
    expect(page.locator("#slots")).not_to_contain_text("Done")


IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"


def test_iphone_safari_explains_add_to_home_screen_and_gives_the_app_a_code(
    browser: Browser, clinic: Clinic, server: LiveServer
) -> None:
    who = new_patient(clinic)
    safari = browser.new_context(base_url=server.url, user_agent=IPHONE, **PHONE)
    page = safari.new_page()
    join_by_link(page, who)
    help = page.locator("#main [data-ios-install]")
    expect(help).to_be_visible()
    expect(help).to_contain_text("Add to Home Screen")
    expect(help).to_contain_text("only way to get reminders")
    help.get_by_role("button", name="Get a code for the Home Screen app").click()
    code = page.locator(".pa-code").inner_text()
    safari.close()

    installed = browser.new_context(
        base_url=server.url, user_agent=IPHONE, **PHONE
    )  # cookies of its own
    installed.add_init_script("Object.defineProperty(navigator, 'standalone', {get: () => true});")
    app = installed.new_page()
    app.goto("/app")
    expect(app).to_have_url(server.url + "/app/join")
    app.get_by_role("textbox", name="Your code").fill(code)
    app.get_by_role("button", name="Open my exercises").click()
    expect(app).to_have_url(server.url + "/app")
    expect(app.locator("#slots > li")).to_have_count(2)
    expect(app.locator("[data-ios-install]")).to_be_hidden()
    installed.close()


# --- installability, accessibility, small screens -----------------------------------------


def test_the_manifest_passes_chromiums_installability_check(
    pw: Playwright, server: LiveServer, tmp_path: Path
) -> None:
    context = pw.chromium.launch_persistent_context(
        tmp_path / "profile",
        executable_path=CHROMIUM,
        args=ARGS,
        headless=True,
        base_url=server.url,
        **PHONE,
    )
    try:
        page = context.new_page()
        page.goto("/app/join")
        cdp = context.new_cdp_session(page)
        last: list[Any] = []

        def installable() -> bool:
            last[:] = cdp.send("Page.getInstallabilityErrors")["installabilityErrors"]
            return last == []

        poll(installable, what=f"no installability errors, not {last}", sleep=page_poll(page))
        manifest = cdp.send("Page.getAppManifest")
        assert manifest["url"].endswith("/manifest.webmanifest") and not manifest["errors"]
    finally:
        context.close()


def axe_violations(page: Page, *, only: list[str] | None = None) -> list[str]:
    # Not add_script_tag: the app's CSP refuses inline scripts; evaluate goes around it.
    if not page.evaluate("() => typeof axe !== 'undefined'"):
        page.evaluate(AXE_SOURCE)
    options: dict[str, Any] = {"resultTypes": ["violations"]}
    if only:
        options["runOnly"] = {"type": "rule", "values": only}
    result = page.evaluate("options => axe.run(document, options)", options)
    return [
        f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:3]}"
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def patient_pages(who: dict[str, Any]) -> list[str]:
    aid = who["assignment"]["id"]
    return ["/app", f"/app/routine/{aid}", "/app/history", "/app/settings"]


@NEEDS_AXE
def test_axe_finds_nothing_serious_on_any_patient_page(
    browser: Browser, clinic: Clinic, server: LiveServer
) -> None:
    who = new_patient(clinic)
    used = clinic.invite(who["patient"]["id"])
    problems: dict[str, list[str]] = {}
    for scheme in ("light", "dark"):
        # Every rule in light mode; in dark mode only what the colours change.
        only = ["color-contrast", "link-in-text-block"] if scheme == "dark" else None
        context = browser.new_context(base_url=server.url, color_scheme=scheme, **PHONE)
        page = context.new_page()
        page.goto(used["url"])  # spends it
        context.clear_cookies()
        page.goto(used["url"])
        expect(page.get_by_role("heading", level=1)).to_have_text("This link no longer works")
        problems[f"{scheme} expired link"] = axe_violations(page, only=only)
        page.goto("/app/join")
        problems[f"{scheme} /app/join"] = axe_violations(page, only=only)
        page.goto(
            who["invite"]["url"]
            if scheme == "light"
            else clinic.invite(who["patient"]["id"])["url"]
        )
        for path in patient_pages(who):
            page.goto(path)
            problems[f"{scheme} {path}"] = axe_violations(page, only=only)
        assert page.goto("/app/routine/999999").status == 404
        problems[f"{scheme} not found"] = axe_violations(page, only=only)
        page.goto(f"/app/routine/{who['assignment']['id']}")
        page.get_by_role("button", name="Start exercises").click()
        problems[f"{scheme} player exercise"] = axe_violations(page, only=only)
        for _ in range(2):
            page.get_by_role("button", name="Skip", exact=True).click()
        problems[f"{scheme} player finish"] = axe_violations(page, only=only)
        page.locator("#pain_after-field").get_by_role("radio", name="2", exact=True).check()
        page.get_by_role("button", name="Done", exact=True).click()
        expect(page.locator("#result-h")).to_have_text("Saved. Well done!")
        problems[f"{scheme} player result"] = axe_violations(page, only=only)
        page.goto("/app/offline")
        problems[f"{scheme} /app/offline"] = axe_violations(page, only=only)
        context.close()

        # Safari on an iPhone: the Add to Home Screen help, and the code for the installed app.
        safari = browser.new_context(base_url=server.url, color_scheme=scheme, user_agent=IPHONE, **PHONE)
        page = safari.new_page()
        join_by_link(page, {**who, "invite": clinic.invite(who["patient"]["id"])})
        expect(page.locator("#main [data-ios-install]")).to_be_visible()
        problems[f"{scheme} iPhone today"] = axe_violations(page, only=only)
        page.get_by_role("button", name="Get a code for the Home Screen app").click()
        expect(page.locator(".pa-code")).to_be_visible()
        problems[f"{scheme} Home Screen code"] = axe_violations(page, only=only)
        safari.close()
    assert {k: v for k, v in problems.items() if v} == {}


def test_dark_mode_follows_the_phones_setting(browser: Browser, server: LiveServer) -> None:
    def lightness(css: str) -> float:  # "rgb(r, g, b)" -> 0 (black) .. 1 (white)
        return sum(int(n) for n in re.findall(r"\d+", css)[:3]) / 765

    seen = {}
    for scheme in ("light", "dark"):
        context = browser.new_context(base_url=server.url, color_scheme=scheme, **PHONE)
        page = context.new_page()
        page.goto("/app/join")
        colours = page.evaluate(
            "() => [getComputedStyle(document.body).backgroundColor, getComputedStyle(document.body).color]"
        )
        seen[scheme] = [lightness(c) for c in colours]
        context.close()
    assert seen["light"][0] > 0.8 and seen["light"][1] < 0.4, seen  # dark text on a light page
    assert seen["dark"][0] < 0.2 and seen["dark"][1] > 0.6, seen  # and the other way round


AXE_SOURCE = AXE.read_text() if AXE.exists() else ""
TOO_SMALL = """() => [...document.querySelectorAll('a, button, input, select, textarea, summary')]
  .filter(el => el.offsetParent !== null && !el.closest('p'))
  .map(el => el.closest('label') || el)  // a check box is tapped through its label
  .map(el => [el, el.getBoundingClientRect()])
  .filter(([el, r]) => r.width > 0 && r.right > 0 && (r.width < 44 || r.height < 44))
  .map(([el, r]) => `${el.tagName}#${el.id}.${el.className} ${Math.round(r.width)}x${Math.round(r.height)}`)"""
OVERFLOW = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"


def test_small_phone_no_horizontal_scroll_big_tap_targets_and_200_percent_text(
    browser: Browser, clinic: Clinic, server: LiveServer
) -> None:
    who = new_patient(clinic)
    # Safari's user agent, so today also shows the Add to Home Screen help.
    context = browser.new_context(base_url=server.url, user_agent=IPHONE, **SMALL_PHONE)
    page = context.new_page()
    join_by_link(page, who)
    aid = who["assignment"]["id"]
    found: dict[str, Any] = {}

    def check(name: str) -> None:
        for size in ("100%", "200%"):
            page.evaluate("size => { document.documentElement.style.fontSize = size; }", size)
            if page.evaluate(OVERFLOW) > 0:
                found[f"{name} at {size}: horizontal scroll"] = page.evaluate(OVERFLOW)
        page.evaluate("() => { document.documentElement.style.fontSize = ''; }")
        small = page.evaluate(TOO_SMALL)
        if small:
            found[f"{name}: small tap targets"] = small

    for path in ["/app/join", "/app/offline", *patient_pages(who)]:
        page.goto(path)
        check(path)
    page.goto("/app")
    page.get_by_role("button", name="Get a code for the Home Screen app").click()
    check("the Home Screen code")
    page.goto(f"/app/routine/{aid}")
    page.get_by_role("button", name="Start exercises").click()
    page.locator("#t-toggle").evaluate("b => { b.textContent = 'Next exercise'; }")  # its longest label
    check("the player's exercise")
    for _ in range(2):
        page.get_by_role("button", name="Skip", exact=True).click()
    check("the player's finish")
    page.get_by_role("button", name="Done", exact=True).click()
    expect(page.locator("#result-h")).to_have_text("Saved. Well done!")
    check("the player's result")
    context.close()
    assert found == {}
