"""Reminders in headless Chromium: the settings switch, push delivery, taps on a notification.

PushManager.subscribe() really runs, against a fake Google check-in service on 127.0.0.1
(tests/browser.py FakeCheckin); pushes are delivered with the DevTools protocol
(ServiceWorker.deliverPushMessage), since the fake subscriptions cannot receive anything.
One persistent profile and one patient serve the module; see /work/shared/BROWSER.md.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, Playwright, expect, sync_playwright

from server import reminders
from server.routes.patient_pages import reminder_when
from tests.browser import (
    ARGS,
    ARTIFACTS,
    AXE,
    CHROMIUM,
    MARKS,
    NEEDS_AXE,
    PHONE,
    TZ,
    Clinic,
    FakeCheckin,
    LiveServer,
    poll,
    today_local,
)

pytestmark = MARKS
OFFLINE_TEXT = "Couldn’t turn on reminders — check your connection and try again."
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15"
    " (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
# Count permission prompts: the app may ask only when the patient taps the switch.
COUNT_PROMPTS = """
(() => {
  const ask = Notification.requestPermission.bind(Notification);
  window.prompts = 0;
  Notification.requestPermission = (cb) => { window.prompts++; return ask(cb); };
})();
"""
NOTIFICATIONS = """() => navigator.serviceWorker.ready.then(r => r.getNotifications()).then(ns => ns.map(n => ({
  title: n.title, body: n.body, tag: n.tag, data: n.data, icon: n.icon, badge: n.badge,
  renotify: n.renotify, actions: n.actions.map(a => a.action)})))"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(
        tmp_path_factory.mktemp("live"), vapid_subject="mailto:ops@clinic-test.org"
    ).start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def clinic(server: LiveServer) -> Iterator[Clinic]:
    c = Clinic(server, "push@clinic.example.org")
    yield c
    c.close()


@pytest.fixture(scope="module")
def who(clinic: Clinic, server: LiveServer) -> dict[str, Any]:
    patient = clinic.patient("Sam Rivera", TZ)
    routine = clinic.routine(
        "Evening stretches",
        [
            {
                "exercise": "Pelvic tilt",
                "reps": 3,
                "sets": 1,
                "hold_seconds": 5,
                "sides": "none",
                "rest_seconds": 0,
            }
        ],
    )
    # Slots every few hours, so one is always ahead whatever time the suite runs.
    times = [f"{h:02d}:15" for h in range(2, 24, 4)]
    assignment = clinic.assign(patient["id"], routine["id"], today_local(), times)
    server.run(reminders.plan, server.ctx.db, server.ctx.now())  # sets the next slot's cursor
    return {"patient": patient, "routine": routine, "assignment": assignment}


@pytest.fixture(scope="module")
def checkin() -> Iterator[FakeCheckin]:
    fake = FakeCheckin().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def pw() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


def persistent(pw: Playwright, path: Path, server: LiveServer, args: list[str]) -> BrowserContext:
    # Not a new_context(): incognito refuses PushManager.subscribe() at once.
    context = pw.chromium.launch_persistent_context(
        path,
        executable_path=CHROMIUM,
        args=ARGS + args,
        headless=True,
        base_url=server.url,
        **PHONE,
    )
    context.grant_permissions(["notifications"], origin=server.url)
    return context


def join(context: BrowserContext, clinic: Clinic, who: dict[str, Any]) -> Page:
    """Join as a new device of the patient; return the page, under the worker's control."""
    page = context.new_page()
    page.goto(clinic.invite(who["patient"]["id"])["url"])
    expect(page.get_by_role("heading", level=1)).to_contain_text(who["patient"]["name"])
    poll(
        lambda: page.evaluate("() => !!navigator.serviceWorker.controller"),
        what="a controlling worker",
        sleep=page_poll(page),
    )
    return page


@pytest.fixture(scope="module")
def phone(
    pw: Playwright,
    server: LiveServer,
    clinic: Clinic,
    who: dict[str, Any],
    checkin: FakeCheckin,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[BrowserContext]:
    context = persistent(pw, tmp_path_factory.mktemp("profile"), server, checkin.args())
    join(context, clinic, who).close()
    yield context
    context.close()


def page_poll(page: Page) -> Any:
    return lambda s: page.wait_for_timeout(s * 1000)


def subscriptions_of(server: LiveServer, patient_id: int) -> list[dict[str, Any]]:
    rows = server.run(
        server.ctx.db.fetchall,
        "SELECT endpoint, p256dh, auth, device_id FROM push_subscriptions WHERE patient_id = ?",
        (patient_id,),
    )
    return [dict(r) for r in rows]


def notifications(page: Page) -> list[dict[str, Any]]:
    return page.evaluate(NOTIFICATIONS)  # type: ignore[no-any-return]


# Counts, in the worker, the showNotification() calls that have settled (a test-side wrapper).
COUNT_SHOWN = """() => {
  const reg = self.registration;
  if (reg.shownForTest === undefined) {
    const show = reg.showNotification.bind(reg);
    reg.shownForTest = 0;
    reg.showNotification = (...args) => show(...args).finally(() => { reg.shownForTest++; });
  }
  return reg.shownForTest;
}"""


class Pusher:
    """Deliver pushes to the app's worker through the DevTools protocol."""

    def __init__(self, context: BrowserContext, page: Page, origin: str) -> None:
        self.cdp = context.new_cdp_session(page)
        self.origin = origin
        found: list[dict[str, Any]] = []
        self.cdp.on(
            "ServiceWorker.workerRegistrationUpdated",
            lambda event: found.extend(event["registrations"]),
        )
        self.cdp.send("ServiceWorker.enable")
        self.registration = poll(
            lambda: next(
                (
                    r["registrationId"]
                    for r in found
                    if r["scopeURL"] == origin + "/" and not r["isDeleted"]
                ),
                None,
            ),
            what="the worker's registration id",
            sleep=page_poll(page),
        )
        self.page = page
        self.worker = next(w for w in context.service_workers if w.url == origin + "/sw.js")

    def push(self, data: str) -> None:
        """Deliver one push and return once the worker's showNotification() has settled.

        Every getNotifications() makes Chromium drop from its database the notifications
        not on screen yet, so one read while a notification is still being shown can make
        it vanish: no reading until the worker is done.
        """
        before = self.worker.evaluate(COUNT_SHOWN)
        self.cdp.send(
            "ServiceWorker.deliverPushMessage",
            {"origin": self.origin, "registrationId": self.registration, "data": data},
        )
        poll(
            lambda: self.worker.evaluate(COUNT_SHOWN) > before,
            what="the worker to show the notification",
            sleep=page_poll(self.page),
        )


def reminder(who: dict[str, Any], kind: str = "reminder", time_: str = "18:15") -> dict[str, Any]:
    """A payload as server/reminders.py Claimed.payload() makes it."""
    aid, day = who["assignment"]["id"], today_local()
    title = "Still time for your stretches" if kind == "nudge" else "Time for your stretches"
    return {
        "title": title,
        "body": "1 exercise, about 2 minutes"
        + (" - whenever suits you today" if kind == "nudge" else ""),
        "url": f"/app/routine/{aid}?date={day}&time={time_}",
        "tag": f"slot-{aid}-{day}-{time_}",
        "kind": kind,
        "assignment_id": aid,
        "date": day,
        "time": time_,
    }


TOO_SMALL = """() => [...document.querySelectorAll('#reminders a, #reminders button, #reminders input')]
  .filter(el => el.offsetParent !== null && !el.closest('p, li'))
  .map(el => el.closest('label') || el)
  .map(el => [el, el.getBoundingClientRect()])
  .filter(([el, r]) => r.width < 44 || r.height < 44)
  .map(([el, r]) => `${el.tagName}#${el.id} ${Math.round(r.width)}x${Math.round(r.height)}`)"""
OVERFLOW = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"


def small_phone_screenshot(page: Page, name: str) -> None:
    """At 360x640 and at 200% text: no sideways scroll, big tap targets; then a picture of it all."""
    page.set_viewport_size({"width": 360, "height": 640})
    assert page.evaluate(TOO_SMALL) == []
    for size in ("200%", ""):
        page.evaluate("size => { document.documentElement.style.fontSize = size; }", size)
        assert page.evaluate(OVERFLOW) == 0, f"sideways scroll at font size {size or '100%'}"
    # As tall as the page, so the fixed tab bar sits at its foot rather than over the middle.
    height = page.evaluate("() => document.documentElement.scrollHeight")
    page.set_viewport_size({"width": 360, "height": height})
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / name)
    page.set_viewport_size(PHONE["viewport"])


# --- the settings switch --------------------------------------------------------------------


def test_the_switch_asks_on_tap_subscribes_and_the_server_stores_it(
    phone: BrowserContext, server: LiveServer, who: dict[str, Any]
) -> None:
    pid = who["patient"]["id"]
    page = phone.new_page()
    page.add_init_script(COUNT_PROMPTS)
    page.goto("/app")
    page.get_by_role("link", name="turn them on").click()
    expect(page).to_have_url(server.url + "/app/settings#reminders")
    toggle = page.get_by_role("switch", name="Reminders on this phone")
    expect(toggle).to_have_attribute("aria-checked", "false")
    assert page.evaluate("window.prompts") == 0  # never on load
    assert subscriptions_of(server, pid) == []

    toggle.tap()
    expect(toggle).to_have_attribute("aria-checked", "true", timeout=15_000)
    expect(page.locator("#rem-status")).to_have_text("Reminders are on for this phone.")
    assert page.evaluate("window.prompts") == 1
    [row] = subscriptions_of(server, pid)
    browser_sub = page.evaluate(
        "() => navigator.serviceWorker.ready.then(r => r.pushManager.getSubscription()).then(s => s.toJSON())"
    )
    assert row["endpoint"] == browser_sub["endpoint"] and row["endpoint"].startswith("https://")
    assert (row["p256dh"], row["auth"]) == (
        browser_sub["keys"]["p256dh"],
        browser_sub["keys"]["auth"],
    )
    assert len(row["p256dh"]) == 87 and len(row["auth"]) == 22 and row["device_id"]
    expect(page.locator("#rem-next")).to_be_visible()
    now = server.ctx.now()
    next_at = server.run(reminders.next_reminder, server.ctx.db, pid, now)
    expect(page.locator("#rem-next-time")).to_have_text(reminder_when(next_at, TZ, now) or "?")
    small_phone_screenshot(page, "settings.png")

    # A new launch of the app posts the subscription again (Apple's can expire silently).
    posts = server.posts("/api/me/push-subscriptions")
    launch = phone.new_page()
    launch.goto("/app")
    poll(
        lambda: server.posts("/api/me/push-subscriptions") == posts + 1,
        what="the subscription re-posted at launch",
        sleep=page_poll(launch),
    )
    expect(launch.locator("#next-reminder")).to_contain_text("Next reminder")
    launch.close()
    assert len(subscriptions_of(server, pid)) == 1  # an upsert, not a second row

    # The push service replaced the subscription (pushsubscriptionchange): the worker posts
    # the current one and deletes the old endpoint.
    stale = {**browser_sub, "endpoint": "https://jmt17.google.com/fcm/send/stale-token"}
    assert (
        page.evaluate(
            """s => fetch('/api/me/push-subscriptions', {method: 'POST',
             headers: {'Content-Type': 'application/json'}, body: JSON.stringify(s)}).then(r => r.status)""",
            stale,
        )
        == 201
    )
    worker = next(w for w in phone.service_workers if w.url == server.url + "/sw.js")
    renewed = worker.evaluate(
        "old => renewSubscription({endpoint: old, options: null}, null).then(s => s.endpoint)",
        stale["endpoint"],
    )
    assert renewed == browser_sub["endpoint"]
    assert [r["endpoint"] for r in subscriptions_of(server, pid)] == [browser_sub["endpoint"]]

    # Quiet hours and the nudge, saved with PATCH.
    page.get_by_label("From").fill("22:00")
    page.get_by_label("Until").fill("07:00")
    page.get_by_label("Remind me again 2 hours later").uncheck()
    page.get_by_role("button", name="Save reminder settings").click()
    expect(page.locator("#rem-prefs-status")).to_have_text("Saved.")
    saved = server.run(reminders.settings_for, server.ctx.db, pid)
    assert (saved.quiet_start, saved.quiet_end, saved.nudges) == ("22:00", "07:00", False)

    # The test button; answered here, so no real push goes out to the fake endpoint.
    page.route("**/api/me/push-test", lambda route: route.fulfill(status=202, json={"devices": 1}))
    test_button = page.get_by_role("button", name="Send me a test reminder")
    test_button.click()
    expect(page.locator("#rem-test-status")).to_have_text(
        "Sent. It should arrive in a few seconds."
    )
    page.unroute("**/api/me/push-test")

    toggle.tap()
    expect(toggle).to_have_attribute("aria-checked", "false", timeout=15_000)
    expect(page.locator("#rem-status")).to_have_text("Reminders are off for this phone.")
    assert subscriptions_of(server, pid) == []
    assert page.evaluate(
        "() => navigator.serviceWorker.ready.then(r => r.pushManager.getSubscription()).then(s => s === null)"
    )
    expect(page.locator("#rem-next")).to_be_hidden()
    test_button.click()  # no device left: the server's own words
    expect(page.locator("#rem-test-status")).to_have_text("Turn reminders on first.")
    page.close()


# --- pushes and taps ------------------------------------------------------------------------


def test_a_push_shows_the_reminder_and_the_same_slot_replaces_it(
    phone: BrowserContext, server: LiveServer, who: dict[str, Any]
) -> None:
    page = phone.new_page()
    page.goto("/app")
    pusher = Pusher(phone, page, server.url)
    first = reminder(who)
    pusher.push(json.dumps(first))
    [shown] = notifications(page)
    assert (shown["title"], shown["body"], shown["tag"], shown["data"]) == (
        first["title"],
        first["body"],
        first["tag"],
        first,
    )
    assert shown["icon"].endswith("/static/icons/icon-192.png")
    assert shown["badge"].endswith("/static/icons/badge-96.png")
    assert shown["actions"] == ["start", "snooze"] and shown["renotify"] is False

    nudge = reminder(who, "nudge")
    pusher.push(json.dumps(nudge))
    [shown] = notifications(page)  # same tag: it replaced the first
    assert shown["data"] == nudge and shown["renotify"] is True
    assert shown["title"] == "Still time for your stretches"

    # Whatever arrives, something is shown (Safari revokes the permission otherwise).
    pusher.push("{not json")
    generic = [n for n in notifications(page) if n["tag"] == "homework-reminder"]
    assert [(n["title"], n["data"]["url"]) for n in generic] == [
        ("Time for your stretches", "/app")
    ]
    page.evaluate(
        "() => navigator.serviceWorker.ready.then(r => r.getNotifications()).then(ns => ns.forEach(n => n.close()))"
    )
    page.close()


CLICK = """([tag, action]) => self.registration.getNotifications({tag})
  .then(ns => handleNotificationClick(ns[0], action))"""


def test_a_tap_opens_the_routine_and_snooze_asks_the_server_again_later(
    phone: BrowserContext, server: LiveServer, who: dict[str, Any]
) -> None:
    page = phone.new_page()
    page.goto("/app")
    pusher = Pusher(phone, page, server.url)
    worker = next(w for w in phone.service_workers if w.url == server.url + "/sw.js")
    payload = reminder(who, time_="22:15")

    pusher.push(json.dumps(payload))
    assert len(notifications(page)) == 1
    assert worker.evaluate(CLICK, [payload["tag"], ""]) == {
        "how": "navigate",
        "url": payload["url"],
    }
    expect(page).to_have_url(server.url + payload["url"])  # the open app window went there
    expect(page.get_by_role("heading", level=1)).to_have_text(who["routine"]["name"])
    assert notifications(page) == []  # the tap closed it

    pusher.push(json.dumps(payload))
    assert len(notifications(page)) == 1
    assert worker.evaluate(CLICK, [payload["tag"], "snooze"]) == {
        "how": "snooze",
        "url": payload["url"],
    }
    row = server.run(
        server.ctx.db.fetchone,
        "SELECT status, due_at FROM reminders WHERE assignment_id = ? AND local_date = ?"
        " AND slot_time = ? AND kind = 'snooze'",
        (payload["assignment_id"], payload["date"], payload["time"]),
    )
    assert row is not None and row["status"] == "pending"
    assert notifications(page) == []

    # Only our own pages: a URL to another site opens the app's home instead.
    assert worker.evaluate(
        "() => handleNotificationClick({data: {url: 'https://evil.example/x'}, close() {}}, '')"
    ) == {"how": "navigate", "url": "/app"}
    expect(page).to_have_url(server.url + "/app")
    page.close()


# --- offline, iPhone, blocked notifications, accessibility ----------------------------------


def test_subscribe_offline_gives_up_after_the_timeout_and_says_why(
    pw: Playwright, server: LiveServer, clinic: Clinic, who: dict[str, Any], tmp_path: Path
) -> None:
    context = persistent(pw, tmp_path / "profile", server, [])  # no check-in service at all
    try:
        page = join(context, clinic, who)
        with page.expect_response(lambda r: r.url.endswith("/api/push/public-key")):
            page.goto("/app/settings?subscribe_timeout_ms=1500")
        toggle = page.get_by_role("switch", name="Reminders on this phone")
        expect(toggle).to_have_attribute("aria-checked", "false")
        context.set_offline(True)
        started = time.monotonic()
        toggle.tap()
        expect(page.locator("#rem-status")).to_have_text(OFFLINE_TEXT, timeout=6_000)
        assert time.monotonic() - started >= 1.4  # the subscribe() deadline, not an early error
        expect(toggle).to_have_attribute("aria-checked", "false")
        assert subscriptions_of(server, who["patient"]["id"]) == []
    finally:
        context.close()


def test_iphone_safari_and_blocked_notifications_explain_what_to_do(phone: BrowserContext) -> None:
    safari = phone.new_page()
    safari.add_init_script(
        f"Object.defineProperty(navigator, 'userAgent', {{get: () => {json.dumps(IPHONE)}}});"
    )
    safari.goto("/app/settings")
    expect(safari.locator("#rem-ios")).to_contain_text(
        "only work in the Homework app on your Home Screen"
    )
    expect(safari.get_by_role("switch")).to_be_hidden()
    expect(safari.get_by_role("button", name="Save reminder settings")).to_be_visible()
    safari.close()

    blocked = phone.new_page()
    blocked.add_init_script(
        "Object.defineProperty(Notification, 'permission', {get: () => 'denied'});"
        "Notification.requestPermission = () => Promise.resolve('denied');"
    )
    blocked.goto("/app/settings")
    blocked.get_by_role("switch", name="Reminders on this phone").tap()
    expect(blocked.locator("#rem-denied")).to_be_visible()
    expect(blocked.locator("#rem-denied")).to_contain_text("Allow Notifications")
    expect(blocked.get_by_role("switch")).to_have_attribute("aria-checked", "false")
    blocked.close()


AXE_SOURCE = AXE.read_text() if AXE.exists() else ""


@NEEDS_AXE
def test_axe_and_a_small_phone_find_nothing_wrong_with_the_reminders_section(
    phone: BrowserContext,
) -> None:
    page = phone.new_page()
    page.goto("/app/settings")
    expect(page.get_by_role("switch", name="Reminders on this phone")).to_be_visible()
    small_phone_screenshot(page, "settings-off.png")
    # Every message the section can show, at once, so axe sees them all.
    page.evaluate(
        "() => document.querySelectorAll('#reminders [hidden]').forEach(el => { el.hidden = false; })"
    )
    page.evaluate(AXE_SOURCE)
    problems = {}
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        result = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
        problems[scheme] = [
            f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:3]}"
            for v in result["violations"]
            if v["impact"] in ("serious", "critical")
        ]
    assert problems == {"light": [], "dark": []}
    page.close()
