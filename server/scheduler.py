"""The reminder scheduler: tick(now) does one pass; run() only sleeps and calls it."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from . import reminders, subscriptions
from .collector import quiet_collector
from .db import Database
from .push import CIRCUIT_OPEN, PushMessage, PushSender, Subscription

log = logging.getLogger("homework.scheduler")

_BATCHES_OUT = 3  # claimed batches being delivered at once (measured in bench/reminders.py)
# The first batch of a tick is smaller, so the first pushes leave while the first full
# batch is being planned and claimed rather than after it.
_FIRST_BATCH = 500


@dataclass
class TickReport:
    planned: reminders.PlanReport = field(default_factory=reminders.PlanReport)
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    missed: int = 0
    pushes: int = 0
    deferred: int = 0

    def line(self) -> str:
        p = self.planned
        return (
            f"planned {p.assignments} assignments ({p.pending} due, {p.skipped} in quiet hours, {p.missed} missed);"
            f" sent {self.sent}, failed {self.failed}, skipped {self.skipped}, missed {self.missed},"
            f" deferred {self.deferred};"
            f" {self.pushes} pushes"
        )


class Scheduler:
    """Plans due slots into the outbox and delivers what is due, any number of copies at once."""

    def __init__(self, db: Database, sender: PushSender, *, clock: Callable[[], datetime], interval: float = 30.0,
                 batch: int = 2500, worker: str | None = None) -> None:
        self.db = db
        self.sender = sender
        self.clock = clock
        self.interval = interval
        self.batch = batch
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"

    async def tick(self, now: datetime | None = None) -> TickReport:
        """One pass: plan what has come due and claim and send it, until nothing due is left."""
        # A tick of 10,000 reminders made 500 young collections (0.3-0.5 s of the loop's
        # time) with the default thresholds; inside a serving app or run() this is a no-op.
        with quiet_collector():
            return await self._tick(now or self.clock())

    async def _tick(self, now: datetime) -> TickReport:
        report = TickReport()
        # Plan a batch, claim a batch, repeat: the first pushes leave after one (small) batch
        # is planned rather than all of them. The next batches are planned and claimed while
        # earlier ones are still sending, so sending never waits for SQLite (plan, claim,
        # record) and the semaphore stays full at a batch's tail. Up to three batches are out
        # at once (measured faster than two in bench/reminders.py), and PushSender bounds
        # the requests in flight.
        planning = True
        batches: list[asyncio.Task[None]] = []
        limit = min(self.batch, _FIRST_BATCH)
        try:
            while True:
                if planning:
                    planned = await reminders.plan(self.db, now, limit=limit)
                    for name in ("assignments", "pending", "skipped", "missed"):
                        setattr(report.planned, name, getattr(report.planned, name) + getattr(planned, name))
                    planning = planned.assignments == limit
                claimed = await reminders.claim(self.db, now, self.worker, limit=limit)
                limit = self.batch
                if claimed:
                    batches.append(asyncio.create_task(self._deliver(claimed, now, report)))
                    if len(batches) == _BATCHES_OUT:
                        await batches.pop(0)
                elif not planning:
                    break
            for batch in batches:
                await batch
        except BaseException:
            for batch in batches:
                batch.cancel()
            await asyncio.gather(*batches, return_exceptions=True)
            raise
        return report

    async def _deliver(self, claimed: list[reminders.Claimed], now: datetime, report: TickReport) -> None:
        subs = await subscriptions.for_patients(self.db, sorted({c.patient_id for c in claimed}))
        outcomes: list[reminders.Delivery] = []
        to_send: list[tuple[reminders.Claimed, list[subscriptions.StoredSubscription]]] = []
        messages: list[PushMessage] = []
        for c in claimed:
            targets = subs.get(c.patient_id, [])
            refusal = reminders.verdict(c, now) or (None if targets else ("skipped", "reminders are off"))
            if refusal is not None:
                outcomes.append(reminders.Delivery(c, *refusal))
                continue
            to_send.append((c, targets))
            payload, topic = c.payload(), c.topic
            for s in targets:
                messages.append(PushMessage(Subscription(s.endpoint, s.p256dh, s.auth), payload,
                                            ttl=reminders.TTL_SECONDS, topic=topic, urgency="normal"))
        results = await self.sender.send_many(messages) if messages else []
        at = 0
        for c, targets in to_send:
            attempts = [(s.id, r.status, r.error or "", len(r.attempts), r.delivered, r.gone)
                        for s, r in zip(targets, results[at:at + len(targets)], strict=True)]
            at += len(targets)
            delivered = any([a[4] for a in attempts])
            if not delivered and all([a[2] == CIRCUIT_OPEN for a in attempts]):
                # The push host is down: leave the row claimed; when the lease runs out a
                # later tick takes it again, until it is over an hour late (then missed).
                report.deferred += 1
                continue
            detail = "" if delivered else "; ".join(f"{a[1]} {a[2]}".strip() for a in attempts)[:200]
            outcomes.append(reminders.Delivery(c, "sent" if delivered else "failed", detail, attempts))
        report.pushes += len(messages)
        for d in outcomes:
            setattr(report, d.status, getattr(report, d.status) + 1)
        await reminders.record(self.db, outcomes, max(now, self.clock()))

    async def run(self) -> None:
        """Tick forever, every interval seconds; errors are logged and the loop goes on."""
        # Held for the loop's life, as a serving app does: what start-up made is frozen once.
        with quiet_collector():
            while True:
                try:
                    report = await self.tick()
                    if report.pushes or report.planned.missed:
                        log.info("reminders: %s", report.line())
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("reminder tick failed")
                await asyncio.sleep(self.interval)
