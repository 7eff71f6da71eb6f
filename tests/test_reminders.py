"""Reminders end to end: subscriptions, the outbox scheduler and delivery to a real-behaving push service."""

from __future__ import annotations

import asyncio
import base64
import gc
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from server import reminders, scheduler, subscriptions
from server.app import create_app
from server.config import Settings
from server.db import Database, migrate
from server.scheduler import Scheduler
from pushservice import PushService, running_push_service

from conftest import Clock, Harness


@pytest.fixture
def service() -> Iterator[PushService]:
    with running_push_service() as s:
        yield s


@pytest.fixture
def settings(tmp_path: Path, service: PushService) -> Settings:
    return Settings(
        db_path=tmp_path / "homework.db",
        data_dir=tmp_path,
        secret_key="test-secret-key-" + "x" * 32,
        base_url="http://testserver",
        vapid_subject="mailto:ops@clinic-test.org",
        push_allowed_origins=(service.origin,),
        scheduler=False,
    )


class Patient:
    """A patient with one daily assignment and a phone subscribed to reminders."""

    def __init__(self, harness: Harness, service: PushService, *, timezone: str = "Europe/London",
                 times: list[str] | None = None, start: str = "2026-03-02", doc: dict[str, Any] | None = None) -> None:
        self.harness = harness
        self.doc = doc or harness.practitioner(f"doc{id(self)}@clinic.example")
        self.patient = harness.patient(self.doc, timezone=timezone)
        routine = harness.routine(self.doc, count=2)
        self.assignment = harness.assignment(self.doc, self.patient["id"], routine["id"], start_date=start,
                                             times=times or ["08:00", "19:30"])
        self.me = {"Cookie": harness.join(self.doc, self.patient["id"])}
        self.subscription, _, _ = service.new_subscriber(
            application_server_key=harness.ctx.vapid.application_server_key)
        response = harness.client.post("/api/me/push-subscriptions", headers=self.me, json={
            "endpoint": self.subscription.endpoint, "expirationTime": None,
            "keys": {"p256dh": self.subscription.p256dh, "auth": self.subscription.auth},
        })
        assert response.status_code == 201, response.text

    @property
    def endpoint(self) -> str:
        return self.subscription.endpoint

    def complete(self, day: str, hhmm: str) -> None:
        response = self.harness.client.post("/api/me/completions", headers=self.me, json={
            "client_id": f"done-{day}-{hhmm.replace(':', '')}", "assignment_id": self.assignment["id"],
            "date": day, "time": hhmm, "pain_after": 2,
        })
        assert response.status_code == 201, response.text


def tick(harness: Harness, clock: Clock, at: datetime | None = None) -> Any:
    if at is not None:
        clock.now = at
    scheduler = Scheduler(harness.ctx.db, harness.ctx.sender, clock=clock, worker="test")
    return harness.run(scheduler.tick)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def statuses(harness: Harness) -> list[tuple[str, str, str, str]]:
    rows = harness.run(harness.ctx.db.fetchall,
                       "SELECT local_date, slot_time, kind, status FROM reminders ORDER BY due_at, id")
    return [tuple(r) for r in rows]


# --- subscriptions ------------------------------------------------------------------------

def test_public_key_is_the_application_server_key(harness: Harness) -> None:
    key = harness.client.get("/api/push/public-key").json()["public_key"]
    raw = base64.urlsafe_b64decode(key + "=" * (-len(key) % 4))
    assert len(raw) == 65 and raw[0] == 4
    assert key == harness.ctx.vapid.application_server_key
    private = harness.ctx.settings.data_dir / "vapid_private.pem"
    assert private.stat().st_mode & 0o077 == 0  # owner only


def test_subscription_upsert_validate_and_delete(harness: Harness, service: PushService) -> None:
    p = Patient(harness, service)
    body = {"endpoint": p.endpoint, "keys": {"p256dh": p.subscription.p256dh, "auth": p.subscription.auth}}
    assert harness.client.post("/api/me/push-subscriptions", headers=p.me, json=body).status_code == 200
    bad_point = p.subscription.p256dh[:-4] + ("AAAA" if not p.subscription.p256dh.endswith("AAAA") else "BBBB")
    cases = [
        ({**body, "keys": {**body["keys"], "p256dh": bad_point}}, "keys.p256dh"),
        ({**body, "keys": {**body["keys"], "auth": base64.urlsafe_b64encode(b"x" * 15).decode().rstrip("=")}}, "keys.auth"),
        ({**body, "endpoint": "https://evil.example/push/1"}, "endpoint"),
        ({**body, "endpoint": "http://10.0.0.1/push"}, "endpoint"),
        ({"endpoint": p.endpoint}, "keys"),
        ({**body, "keys": "nope"}, "keys"),
    ]
    for bad, field in cases:
        response = harness.client.post("/api/me/push-subscriptions", headers=p.me, json=bad)
        assert response.status_code == 400, (bad, response.text)
        assert field in response.json()["error"]["fields"], (field, response.json())
    assert harness.client.get("/api/me/reminders", headers=p.me).json()["enabled"] is True
    me = harness.client.get("/api/me", headers=p.me).json()
    assert me["reminders"] == {"enabled": True, "quiet_start": "21:30", "quiet_end": "07:30", "nudges": True, "devices": 1}
    assert harness.client.request("DELETE", "/api/me/push-subscriptions", headers=p.me,
                                  json={"endpoint": p.endpoint}).status_code == 204
    assert harness.client.get("/api/me/reminders", headers=p.me).json()["enabled"] is False
    assert harness.client.post("/api/me/push-subscriptions", json=body).status_code == 401


def test_a_batch_of_outcomes_leaves_each_subscription_as_applying_them_in_order_would(
        harness: Harness, service: PushService, clock: Clock) -> None:
    """One phone can get two reminders in a batch: its last status stands, and it was delivered if either was."""
    doc = harness.practitioner("doc@clinic.example")
    s1, s2, s3, s4 = (harness.run(subscriptions.for_patient, harness.ctx.db, Patient(harness, service, doc=doc)
                                  .patient["id"])[0].id for _ in range(4))
    harness.run(subscriptions.record_outcomes, harness.ctx.db, [(s4, 201, True, False)], now=utc(2026, 3, 1, 8, 0))
    harness.run(subscriptions.record_outcomes, harness.ctx.db, [
        (s1, 201, True, False), (s1, 500, False, False),
        (s2, 500, False, False), (s2, 201, True, False),
        (s3, 201, True, False), (s3, 410, False, True),
        (s4, 503, False, False),
    ], now=utc(2026, 3, 2, 19, 30))
    rows = harness.run(harness.ctx.db.fetchall,
                       "SELECT id, last_status, last_delivered_at, last_attempt_at FROM push_subscriptions ORDER BY id")
    assert [tuple(r) for r in rows] == [
        (s1, 500, "2026-03-02T19:30:00Z", "2026-03-02T19:30:00Z"),
        (s2, 201, "2026-03-02T19:30:00Z", "2026-03-02T19:30:00Z"),
        (s4, 503, "2026-03-01T08:00:00Z", "2026-03-02T19:30:00Z"),  # s3 is gone
    ]


# --- when reminders go out ----------------------------------------------------------------

def test_reminder_at_the_slot_time_with_a_generic_payload(harness: Harness, service: PushService, clock: Clock) -> None:
    p = Patient(harness, service)
    tick(harness, clock)  # 09:00: plans the next slot, 19:30
    assert service.received(p.endpoint) == []
    tick(harness, clock, utc(2026, 3, 2, 19, 29))
    assert service.received(p.endpoint) == []
    report = tick(harness, clock, utc(2026, 3, 2, 19, 30))
    assert report.sent == 1
    [message] = service.received(p.endpoint)
    aid = p.assignment["id"]
    assert message.payload["title"] == "Time for your stretches"
    assert message.payload["body"].startswith("2 exercises, about ")
    assert message.payload["url"] == f"/app/routine/{aid}?date=2026-03-02&time=19:30"
    assert message.payload["tag"] == f"slot-{aid}-2026-03-02-19:30"
    assert "Back basics" not in str(message.payload) and "Pat" not in str(message.payload)
    assert message.ttl == 7200 and message.urgency == "normal"
    assert message.topic == f"r{aid}x202603021930"
    assert message.claims["aud"] == service.origin
    assert message.claims["exp"] - time.time() <= 24 * 3600
    tick(harness, clock, utc(2026, 3, 2, 19, 31))
    assert len(service.received(p.endpoint)) == 1  # once
    devices = harness.client.get(f"/api/patients/{p.patient['id']}/devices", headers=p.doc["bearer"]).json()["devices"]
    assert devices[0]["reminders"] is True and devices[0]["last_delivered_at"] == "2026-03-02T19:30:00Z"


def test_no_reminder_when_already_done(harness: Harness, service: PushService, clock: Clock) -> None:
    p = Patient(harness, service)
    tick(harness, clock)
    clock.now = utc(2026, 3, 2, 18, 0)
    p.complete("2026-03-02", "19:30")
    tick(harness, clock, utc(2026, 3, 2, 19, 30))
    assert service.received(p.endpoint) == []
    assert statuses(harness)[-1] == ("2026-03-02", "19:30", "reminder", "skipped")


def test_quiet_hours_move_or_drop_a_reminder(harness: Harness, service: PushService, clock: Clock) -> None:
    p = Patient(harness, service)
    patch = harness.client.patch("/api/me/reminders", headers=p.me, json={"quiet_start": "19:00", "quiet_end": "20:00"})
    assert patch.status_code == 200 and patch.json()["quiet_start"] == "19:00"
    tick(harness, clock)
    tick(harness, clock, utc(2026, 3, 2, 19, 30))
    assert service.received(p.endpoint) == []
    tick(harness, clock, utc(2026, 3, 2, 20, 0))
    assert [m.payload["time"] for m in service.received(p.endpoint)] == ["19:30"]
    # Evening quiet hours that run into the next day drop the slot.
    harness.client.patch("/api/me/reminders", headers=p.me, json={"quiet_start": "19:00", "quiet_end": "07:30"})
    tick(harness, clock, utc(2026, 3, 3, 8, 0))
    tick(harness, clock, utc(2026, 3, 3, 19, 30))
    tick(harness, clock, utc(2026, 3, 4, 7, 30))
    assert [m.payload["time"] for m in service.received(p.endpoint)] == ["19:30", "08:00"]
    assert ("2026-03-03", "19:30", "reminder", "skipped") in statuses(harness)
    bad = harness.client.patch("/api/me/reminders", headers=p.me, json={"quiet_start": "25:00"})
    assert bad.status_code == 400 and "quiet_start" in bad.json()["error"]["fields"]


def test_follow_up_nudge_two_hours_later_unless_done_or_off(harness: Harness, service: PushService, clock: Clock) -> None:
    p = Patient(harness, service)
    tick(harness, clock)
    tick(harness, clock, utc(2026, 3, 2, 19, 30))  # its nudge falls in quiet hours (21:30): dropped
    tick(harness, clock, utc(2026, 3, 3, 8, 0))  # the morning reminder
    tick(harness, clock, utc(2026, 3, 3, 9, 59))
    assert len(service.received(p.endpoint)) == 2  # 19:30 yesterday and 08:00 today
    tick(harness, clock, utc(2026, 3, 3, 10, 0))
    nudge = service.received(p.endpoint)[-1]
    assert nudge.payload["kind"] == "nudge" and nudge.payload["title"] == "Still time for your stretches"
    assert nudge.topic.startswith("n")
    # Done before the nudge: none.
    tick(harness, clock, utc(2026, 3, 4, 8, 0))
    clock.now = utc(2026, 3, 4, 9, 0)
    p.complete("2026-03-04", "08:00")
    tick(harness, clock, utc(2026, 3, 4, 10, 0))
    assert [m.payload["kind"] for m in service.received(p.endpoint)].count("nudge") == 1
    # Nudges turned off: none.
    harness.client.patch("/api/me/reminders", headers=p.me, json={"nudges": False})
    tick(harness, clock, utc(2026, 3, 5, 8, 0))
    tick(harness, clock, utc(2026, 3, 5, 10, 0))
    assert [m.payload["kind"] for m in service.received(p.endpoint)].count("nudge") == 1


@pytest.mark.parametrize(
    ("tz", "start", "hhmm", "fires_at", "not_before"),
    [
        # Spring forward: 02:30 does not exist; it fires at the first valid minute, 03:00.
        ("America/New_York", "2026-03-08", "02:30", utc(2026, 3, 8, 7, 0), utc(2026, 3, 8, 6, 59)),
        ("Europe/Berlin", "2026-03-29", "02:30", utc(2026, 3, 29, 1, 0), utc(2026, 3, 29, 0, 59)),
        ("Australia/Adelaide", "2026-10-04", "02:15", utc(2026, 10, 3, 16, 30), utc(2026, 10, 3, 16, 29)),
        # Fall back: 01:30 happens twice; it fires once, the first time.
        ("America/New_York", "2026-11-01", "01:30", utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 5, 29)),
        ("Europe/Berlin", "2026-10-25", "02:30", utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 0, 29)),
        # A half-hour zone on an ordinary day.
        ("Asia/Kolkata", "2026-03-03", "08:00", utc(2026, 3, 3, 2, 30), utc(2026, 3, 3, 2, 29)),
    ],
)
def test_daylight_saving_time(harness: Harness, service: PushService, clock: Clock, tz: str, start: str,
                              hhmm: str, fires_at: datetime, not_before: datetime) -> None:
    clock.now = datetime.fromisoformat(start).replace(tzinfo=UTC) - timedelta(days=1)
    p = Patient(harness, service, timezone=tz, times=[hhmm], start=start)
    # Night owls: no quiet hours, so the night-time slots themselves are tested.
    harness.client.patch("/api/me/reminders", headers=p.me, json={"quiet_start": "00:00", "quiet_end": "00:00"})
    tick(harness, clock)
    tick(harness, clock, not_before)
    assert service.received(p.endpoint) == []
    tick(harness, clock, fires_at)
    [message] = service.received(p.endpoint)
    assert (message.payload["date"], message.payload["time"]) == (start, hhmm)
    # An hour later (the repeated hour after a fall back) nothing fires again.
    tick(harness, clock, fires_at + timedelta(hours=1))
    tick(harness, clock, fires_at + timedelta(hours=2))
    assert [m.payload["kind"] for m in service.received(p.endpoint)] == ["reminder", "nudge"]


def test_slots_missed_while_down_are_sent_only_if_less_than_an_hour_late(
        harness: Harness, service: PushService, clock: Clock) -> None:
    p = Patient(harness, service)
    tick(harness, clock)  # 09:00 on the 2nd; the server then goes down
    tick(harness, clock, utc(2026, 3, 3, 8, 45))  # back up: 19:30 yesterday is long gone, 08:00 is 45 min late
    assert [(m.payload["date"], m.payload["time"]) for m in service.received(p.endpoint)] == [("2026-03-03", "08:00")]
    assert ("2026-03-02", "19:30", "reminder", "missed") in statuses(harness)
    tick(harness, clock, utc(2026, 3, 4, 10, 30))  # down again: 19:30 and 08:00 both over an hour late
    assert len([m for m in service.received(p.endpoint) if m.payload["kind"] == "reminder"]) == 1


def test_410_deletes_the_subscription(harness: Harness, service: PushService, clock: Clock) -> None:
    p = Patient(harness, service)
    service.gone(p.endpoint)
    tick(harness, clock)
    tick(harness, clock, utc(2026, 3, 2, 19, 30))
    assert harness.run(harness.ctx.db.fetchval, "SELECT count(*) FROM push_subscriptions") == 0
    assert statuses(harness)[-1][3] == "failed"
    attempts = harness.run(harness.ctx.db.fetchall, "SELECT status, tries FROM push_attempts")
    assert [tuple(a) for a in attempts] == [(410, 1)]


def test_429_is_retried_after_retry_after(harness: Harness, service: PushService, clock: Clock) -> None:
    p = Patient(harness, service)
    service.throttle(p.endpoint, "1")
    tick(harness, clock)
    started = time.monotonic()
    tick(harness, clock, utc(2026, 3, 2, 19, 30))
    assert time.monotonic() - started >= 0.9
    assert service.requests_for(p.endpoint) == 2
    assert len(service.received(p.endpoint)) == 1
    assert statuses(harness)[-1][3] == "sent"


def test_snooze_reminds_again_in_30_minutes(harness: Harness, service: PushService, clock: Clock) -> None:
    p = Patient(harness, service)
    tick(harness, clock)
    tick(harness, clock, utc(2026, 3, 2, 19, 30))
    body = {"assignment_id": p.assignment["id"], "date": "2026-03-02", "time": "19:30"}
    assert harness.client.post("/api/me/reminders/snooze", headers=p.me, json=body).status_code == 202
    tick(harness, clock, utc(2026, 3, 2, 19, 59))
    assert len(service.received(p.endpoint)) == 1
    tick(harness, clock, utc(2026, 3, 2, 20, 0))
    assert [m.payload["kind"] for m in service.received(p.endpoint)] == ["reminder", "snooze"]
    other = Patient(harness, service, doc=p.doc)
    stolen = {**body, "assignment_id": other.assignment["id"]}
    assert harness.client.post("/api/me/reminders/snooze", headers=p.me, json=stolen).status_code == 404


def test_send_me_a_test_reminder(harness: Harness, service: PushService) -> None:
    p = Patient(harness, service)
    assert harness.client.post("/api/me/push-test", headers=p.me).status_code == 202
    deadline = time.monotonic() + 5
    while not service.received(p.endpoint) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert service.received(p.endpoint)[0].payload["title"] == "Test reminder"


# --- at most once, across crashes and schedulers ------------------------------------------

def second_app(settings: Settings, clock: Clock) -> TestClient:
    """Another server process over the same database."""
    return TestClient(create_app(settings, clock=clock))


def test_restart_mid_fan_out_sends_each_reminder_once(
        harness: Harness, service: PushService, clock: Clock, settings: Settings) -> None:
    doc = harness.practitioner("doc@clinic.example")
    patients = [Patient(harness, service, doc=doc) for _ in range(4)]
    tick(harness, clock)
    clock.now = utc(2026, 3, 2, 19, 30)
    harness.run(reminders.plan, harness.ctx.db, clock.now)
    claimed = harness.run(reminders.claim, harness.ctx.db, clock.now, "doomed")
    assert len(claimed) == 4
    # The doomed process got two pushes out, then died before recording anything.
    half = [c for c in claimed if c.patient_id in (patients[0].patient["id"], patients[1].patient["id"])]
    from server.push import PushMessage, Subscription
    harness.run(harness.ctx.sender.send_many, [
        PushMessage(Subscription(p.endpoint, p.subscription.p256dh, p.subscription.auth), c.payload(),
                    ttl=reminders.TTL_SECONDS, topic=c.topic)
        for c in half for p in patients if p.patient["id"] == c.patient_id
    ])
    # A restarted server: before the lease runs out the rows are left alone...
    with second_app(settings, clock) as other:
        restarted = Harness(other)
        tick(restarted, clock, utc(2026, 3, 2, 19, 32))
        assert sum(len(service.received(p.endpoint)) for p in patients) == 2
        # ...after it, every reminder goes out, the first two again under the same Topic.
        tick(restarted, clock, utc(2026, 3, 2, 19, 36))
        tick(restarted, clock, utc(2026, 3, 2, 19, 40))
    for p in patients:
        pending = service.pending(p.endpoint)
        assert len(pending) == 1, "the device sees each reminder once"
        assert 1 <= len(service.received(p.endpoint)) <= 2
    assert [s[3] for s in statuses(harness) if s[2] == "reminder"] == ["sent"] * 4


def test_two_schedulers_on_one_database_never_double_send(
        harness: Harness, service: PushService, clock: Clock, settings: Settings) -> None:
    doc = harness.practitioner("doc@clinic.example")
    patients = [Patient(harness, service, doc=doc) for _ in range(30)]
    tick(harness, clock)
    clock.now = utc(2026, 3, 2, 19, 30)
    with second_app(settings, clock) as other:
        harnesses = [harness, Harness(other)]
        reports: list[Any] = []
        threads = [threading.Thread(target=lambda h=h: reports.append(tick(h, clock))) for h in harnesses * 2]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert sum(r.sent for r in reports) == 30
    for p in patients:
        assert len(service.received(p.endpoint)) == 1
    assert service.accepted == 30


def test_a_planner_working_from_a_stale_read_changes_nothing(
        harness: Harness, service: PushService, clock: Clock, settings: Settings,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Two processes plan the same due slots: the slower one adds no outbox rows and moves no cursor back."""
    doc = harness.practitioner("doc@clinic.example")
    for _ in range(5):
        Patient(harness, service, doc=doc)
    tick(harness, clock)
    at_1930, at_0800 = utc(2026, 3, 2, 19, 30), utc(2026, 3, 3, 8, 0)

    async def scenario() -> reminders.PlanReport:
        async with Database(settings.db_path) as slow:
            real_transaction = slow.transaction

            @asynccontextmanager
            async def late_transaction() -> AsyncIterator[Any]:
                # Between the slow planner's read and its write, the other one plans this slot
                # and the next one (tomorrow 08:00), moving every cursor on to tomorrow 19:30.
                await reminders.plan(harness.ctx.db, at_1930)
                await reminders.plan(harness.ctx.db, at_0800)
                async with real_transaction() as tx:
                    yield tx

            monkeypatch.setattr(slow, "transaction", late_transaction)
            return await reminders.plan(slow, at_1930)

    assert harness.run(scenario).pending == 5  # it did plan all five, from what it read
    rows = harness.run(harness.ctx.db.fetchall,
                       "SELECT local_date, slot_time, count(*) FROM reminders GROUP BY 1, 2 ORDER BY 1, 2")
    assert [tuple(r) for r in rows] == [("2026-03-02", "19:30", 5), ("2026-03-03", "08:00", 5)]
    cursors = harness.run(harness.ctx.db.fetchall,
                          "SELECT DISTINCT next_slot_date, next_slot_time, next_due_at, needs_plan FROM assignments")
    assert [tuple(r) for r in cursors] == [("2026-03-03", "19:30", "2026-03-03T19:30:00Z", 0)]


def test_a_batch_judges_and_words_each_reminder_by_its_own_assignment(
        harness: Harness, service: PushService, clock: Clock) -> None:
    doc = harness.practitioner("doc@clinic.example")
    patients = [Patient(harness, service, doc=doc) for _ in range(6)]
    tick(harness, clock)
    for n, p in enumerate(patients, start=1):
        harness.run(harness.ctx.db.execute, "UPDATE assignments SET item_count = ? WHERE id = ?",
                    (n, p.assignment["id"]))
    clock.now = utc(2026, 3, 2, 18, 0)
    for p in patients[1::2]:
        p.complete("2026-03-02", "19:30")
    report = tick(harness, clock, utc(2026, 3, 2, 19, 30))
    assert (report.sent, report.skipped) == (3, 3)
    for n, p in enumerate(patients, start=1):
        bodies = [m.payload["body"] for m in service.received(p.endpoint)]
        if n % 2 == 0:
            assert bodies == [], n  # done already
        else:
            assert len(bodies) == 1 and bodies[0].startswith(f"{n} exercise{'s' if n > 1 else ''}, about "), bodies


def due_at_1930(harness: Harness, service: PushService, clock: Clock, count: int) -> list[Patient]:
    """count patients, planned by a tick, with the clock at their 19:30 reminder."""
    doc = harness.practitioner("doc@clinic.example")
    patients = [Patient(harness, service, doc=doc) for _ in range(count)]
    tick(harness, clock)
    clock.now = utc(2026, 3, 2, 19, 30)
    return patients


def tick_in_pairs(harness: Harness, clock: Clock, monkeypatch: pytest.MonkeyPatch,
                  before: Callable[[list[Any]], Awaitable[None]]) -> Any:
    """Run one tick in batches of two, awaiting before(messages) ahead of sending each batch."""
    real_send_many = harness.ctx.sender.send_many

    async def send_many(messages: Any) -> Any:
        messages = list(messages)
        await before(messages)
        return await real_send_many(messages)

    monkeypatch.setattr(harness.ctx.sender, "send_many", send_many)
    return harness.run(Scheduler(harness.ctx.db, harness.ctx.sender, clock=clock, worker="test", batch=2).tick)


def test_a_tick_claims_the_next_batch_while_the_last_one_is_sending(
        harness: Harness, service: PushService, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    patients = due_at_1930(harness, service, clock, 7)
    claimed_while_sending: list[int] = []

    async def count_claimed(messages: list[Any]) -> None:
        await asyncio.sleep(0.2)  # long enough for the next claim to commit
        claimed_while_sending.append(
            await harness.ctx.db.fetchval("SELECT count(*) FROM reminders WHERE status = 'sending'"))

    report = tick_in_pairs(harness, clock, monkeypatch, count_claimed)
    assert report.sent == 7 and report.pushes == 7
    # Batches of 2: while one sends the next two are claimed, never a fourth.
    assert max(claimed_while_sending) == 6
    assert len(claimed_while_sending) == 4
    assert [s[3] for s in statuses(harness) if s[2] == "reminder"] == ["sent"] * 7
    assert all(len(service.received(p.endpoint)) == 1 for p in patients)


def test_a_tick_starts_with_a_small_batch_then_takes_full_ones(
        harness: Harness, service: PushService, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    due_at_1930(harness, service, clock, 7)
    sizes: list[int] = []

    async def note_size(messages: list[Any]) -> None:
        sizes.append(len(messages))

    monkeypatch.setattr(scheduler, "_FIRST_BATCH", 1)
    report = tick_in_pairs(harness, clock, monkeypatch, note_size)
    assert report.sent == 7 and sizes == [1, 2, 2, 2]


def test_the_first_pushes_leave_before_every_assignment_is_planned(
        harness: Harness, service: PushService, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    due_at_1930(harness, service, clock, 7)
    unplanned: list[int] = []

    async def count_unplanned(messages: list[Any]) -> None:
        unplanned.append(await harness.ctx.db.fetchval(
            "SELECT count(*) FROM assignments WHERE next_due_at <= ?", ("2026-03-02T19:30:00Z",)))

    report = tick_in_pairs(harness, clock, monkeypatch, count_unplanned)
    assert report.planned.assignments == 7 and report.sent == 7
    assert unplanned[0] > 0  # planning went on while the first batch was out
    assert unplanned[-1] == 0


def test_planning_a_batch_lets_the_event_loop_run(
        harness: Harness, service: PushService, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    due_at_1930(harness, service, clock, 3)
    passes = 0
    seen: list[int] = []
    real_plan_one = reminders.plan_one

    def plan_one(*args: Any) -> Any:
        seen.append(passes)
        return real_plan_one(*args)

    async def scenario() -> None:
        nonlocal passes
        done = asyncio.Event()

        async def count_passes() -> None:
            nonlocal passes
            while not done.is_set():
                passes += 1
                await asyncio.sleep(0)

        counter = asyncio.create_task(count_passes())
        await reminders.plan(harness.ctx.db, clock.now)
        done.set()
        await counter

    monkeypatch.setattr(reminders, "plan_one", plan_one)
    monkeypatch.setattr(reminders, "PLAN_STEP", 1)
    harness.run(scenario)
    assert len(seen) == 3
    assert seen[0] < seen[1] < seen[2]  # other tasks ran between two assignments


def test_cancelling_a_tick_cancels_every_batch_in_flight(
        harness: Harness, service: PushService, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    due_at_1930(harness, service, clock, 4)
    started: list[int] = []
    cancelled: list[int] = []

    async def send_many(messages: Any) -> Any:
        started.append(len(list(messages)))
        try:
            await asyncio.Event().wait()  # a push service that never answers
        except asyncio.CancelledError:
            cancelled.append(1)
            raise

    async def scenario() -> None:
        running = asyncio.create_task(
            Scheduler(harness.ctx.db, harness.ctx.sender, clock=clock, worker="test", batch=2).tick())
        while len(started) < 2:
            await asyncio.sleep(0.01)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(running, 5)  # a batch left running would hang it: TimeoutError

    monkeypatch.setattr(harness.ctx.sender, "send_many", send_many)
    harness.run(scenario)
    assert started == [2, 2] and len(cancelled) == 2


def test_a_tick_reads_only_what_is_due(harness: Harness, service: PushService, clock: Clock) -> None:
    """Planned assignments whose next slot is later are not even read by a tick."""
    doc = harness.practitioner("doc@clinic.example")
    for _ in range(5):
        Patient(harness, service, doc=doc)
    assert tick(harness, clock).planned.assignments == 5
    assert tick(harness, clock, utc(2026, 3, 2, 12, 0)).planned.assignments == 0
    plan = harness.run(harness.ctx.db.fetchall,
                       "EXPLAIN QUERY PLAN SELECT id FROM assignments WHERE next_due_at <= ? AND needs_plan = 0",
                       ("2026-03-02T12:00:00Z",))
    assert any("assignments_next_due" in r[3] for r in plan)


def test_a_new_time_zone_moves_the_reminders(harness: Harness, service: PushService, clock: Clock) -> None:
    p = Patient(harness, service)
    tick(harness, clock)  # next: 19:30 London = 19:30 UTC
    url = f"/api/patients/{p.patient['id']}"
    assert harness.client.patch(url, headers=p.doc["bearer"], json={"timezone": "Asia/Kolkata"}).status_code == 200
    tick(harness, clock)  # replanned: 19:30 Kolkata = 14:00 UTC
    tick(harness, clock, utc(2026, 3, 2, 14, 0))
    assert [m.payload["time"] for m in service.received(p.endpoint)] == ["19:30"]
    tick(harness, clock, utc(2026, 3, 2, 19, 30))
    assert len(service.received(p.endpoint)) == 1


def test_a_push_host_that_is_down_delays_reminders_instead_of_losing_them(
        harness: Harness, service: PushService, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    from server import push

    p = Patient(harness, service)
    tick(harness, clock)
    sender = harness.ctx.sender

    async def circuit_open(messages: Any) -> list[push.PushResult]:
        return [push.PushResult(False, False, None, [], push.CIRCUIT_OPEN) for _ in messages]

    with monkeypatch.context() as m:
        m.setattr(sender, "send_many", circuit_open)
        report = tick(harness, clock, utc(2026, 3, 2, 19, 30))
    assert report.deferred == 1 and report.failed == 0
    assert statuses(harness)[-1][3] == "sending"
    tick(harness, clock, utc(2026, 3, 2, 19, 33))  # still within the lease: left alone
    assert service.received(p.endpoint) == []
    tick(harness, clock, utc(2026, 3, 2, 19, 36))  # the host is back, the lease ran out
    assert [m.payload["time"] for m in service.received(p.endpoint)] == ["19:30"]
    assert statuses(harness)[-1][3] == "sent"


def test_next_reminder_applies_quiet_hours_and_skips_done_slots(
        harness: Harness, service: PushService, clock: Clock) -> None:
    p = Patient(harness, service, times=["08:00", "22:15"])
    tick(harness, clock)  # 09:00: the next slot is 22:15, inside the default quiet hours
    next_at = lambda: harness.client.get("/api/me/reminders", headers=p.me).json()["next_at"]  # noqa: E731
    assert next_at() == "2026-03-03T08:00:00Z"  # 22:15 is dropped, so tomorrow 08:00
    harness.client.patch("/api/me/reminders", headers=p.me, json={"quiet_start": "23:00", "quiet_end": "07:00"})
    assert next_at() == "2026-03-02T22:15:00Z"
    clock.now = utc(2026, 3, 2, 12, 0)
    p.complete("2026-03-02", "22:15")  # done early: that reminder will not ring
    assert next_at() == "2026-03-03T08:00:00Z"


# --- the garbage collector while reminders go out -------------------------------------------

def collector_seen_by_plan(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Record (young threshold, objects frozen) each time a tick plans."""
    seen: list[tuple[int, int]] = []
    real = reminders.plan

    async def plan(db: Database, now: datetime, *, limit: int) -> reminders.PlanReport:
        seen.append((gc.get_threshold()[0], gc.get_freeze_count()))
        return await real(db, now, limit=limit)

    monkeypatch.setattr(reminders, "plan", plan)
    return seen


def test_a_tick_on_its_own_quiets_the_collector_and_gives_it_back(
        tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    """`homework send-reminders` (and bench/reminders.py) run a tick with no app around it."""
    seen = collector_seen_by_plan(monkeypatch)
    thresholds = gc.get_threshold()
    assert gc.get_freeze_count() == 0

    async def one_tick() -> None:
        async with Database(tmp_path / "alone.db") as db:
            await migrate(db)
            sender: Any = None  # nothing is due, so nothing is sent
            await Scheduler(db, sender, clock=clock, worker="test").tick()

    asyncio.run(one_tick())
    assert seen and all(young == 20_000 and frozen > 10_000 for young, frozen in seen), seen
    assert gc.get_threshold() == thresholds and gc.get_freeze_count() == 0


def test_the_worker_loop_quiets_the_collector_until_it_is_cancelled(
        tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    """`homework worker`: frozen once at start, kept between ticks; all given back when it stops."""
    seen = collector_seen_by_plan(monkeypatch)
    between: list[tuple[int, int]] = []
    thresholds = gc.get_threshold()

    class Worker(Scheduler):
        async def tick(self, now: datetime | None = None) -> scheduler.TickReport:
            report = await super().tick(now)
            between.append((gc.get_threshold()[0], gc.get_freeze_count()))  # back in run(), before it sleeps
            return report

    async def worker() -> None:
        async with Database(tmp_path / "worker.db") as db:
            await migrate(db)
            sender: Any = None  # nothing is due, so nothing is sent
            running = asyncio.create_task(Worker(db, sender, clock=clock, interval=0.01, worker="test").run())
            while len(between) < 3:
                await asyncio.sleep(0.01)
            running.cancel()
            with pytest.raises(asyncio.CancelledError):
                await running

    asyncio.run(worker())
    assert all(young == 20_000 and frozen > 10_000 for young, frozen in seen + between), (seen, between)
    # The ticks froze nothing more: only objects that died since start-up left the frozen set.
    assert seen[2][1] <= seen[1][1] <= seen[0][1], seen
    assert gc.get_threshold() == thresholds and gc.get_freeze_count() == 0


def test_a_tick_inside_the_serving_app_leaves_its_collector_settings_alone(
        harness: Harness, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = collector_seen_by_plan(monkeypatch)
    frozen = gc.get_freeze_count()
    scheduler = Scheduler(harness.ctx.db, harness.ctx.sender, clock=clock, worker="test")  # made after start-up
    harness.run(scheduler.tick)
    # Nothing made since start-up (this scheduler, say) was frozen, and nothing was given back.
    assert seen[0][0] == 20_000 and seen[0][1] <= frozen
    assert gc.get_threshold()[0] == 20_000 and 0 < gc.get_freeze_count() <= frozen
