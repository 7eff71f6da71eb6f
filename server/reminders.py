"""The reminder outbox: planning due slots into it, claiming rows, recording what happened.

Life of a reminder row (one per assignment, local date, slot time and kind):

    pending --claim--> sending --> sent | failed
       |                  |
       |                  +--(claimer died: lease expires)--> claimed again
       +--> skipped (done, quiet hours, ended, no device) | missed (over an hour late)

Planning reads only assignments whose next slot has come (an index on next_due_at),
so a tick costs what is due, not what exists. The UNIQUE key on the outbox and the
atomic claim make "at most once" hold across processes and restarts; a row whose
claimer died mid-send is sent again with the same Topic, which push services collapse.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any

from . import subscriptions
from .assignments import plan_of, times_of
from .clock import iso, parse_iso, zone
from .db import Database, Row, Transaction
from .schedule import Plan, first_slot_from, local_moment, slot_after

LATE_LIMIT = timedelta(minutes=60)  # later than this, a reminder is recorded as missed, never sent
NUDGE_AFTER = timedelta(hours=2)
SNOOZE_FOR = timedelta(minutes=30)
TTL_SECONDS = 2 * 3600  # a reminder is useless hours later
LEASE = timedelta(minutes=5)  # a row claimed longer ago than this is taken to be orphaned
MAX_CATCH_UP = 2000  # slots recorded per assignment in one pass after a long outage
PLAN_STEP = 250  # plan() yields to the event loop after planning this many assignments


@dataclass(frozen=True)
class Quiet:
    start: str
    end: str

    def contains(self, hhmm: str) -> bool:
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= hhmm < self.end
        return hhmm >= self.start or hhmm < self.end


def outside_quiet(moment: datetime, slot_day: date, tz: str, quiet: Quiet) -> datetime | None:
    """When a message due at moment may go out: as is, at the end of quiet hours, or None if the slot's day is over by then."""
    local = moment.astimezone(zone(tz))
    if local.date() != slot_day:
        return None
    hhmm = f"{local.hour:02d}:{local.minute:02d}"  # strftime costs ten times more
    if not quiet.contains(hhmm):
        return moment
    if quiet.start > quiet.end and hhmm >= quiet.start:
        return None  # evening quiet hours run into the next day
    end = local_moment(slot_day, quiet.end, tz)
    return end if end > moment else None


# --- planning -----------------------------------------------------------------------------

@dataclass
class PlanReport:
    assignments: int = 0
    pending: int = 0
    skipped: int = 0
    missed: int = 0


def plan_one(row: Row | Mapping[str, Any], now: datetime, stamp: str | None = None
             ) -> tuple[list[tuple[Any, ...]], tuple[str | None, str | None, str | None]]:
    """Outbox rows for every slot of one assignment that has come, and its next cursor (pure).

    stamp is iso(now), passed in by plan() so a batch formats it once, not once per row.
    """
    tz = row["timezone"]
    if row["ended_at"] is not None or row["archived"]:
        return [], (None, None, None)
    if row["needs_plan"] or row["next_slot_date"] is None:
        return [], _cursor(first_slot_from(plan_of(row), tz, now))
    # Everything below is a function of the schedule, the zone, the quiet hours and the
    # slot, which thousands of assignments share in one pass: it is memoised on those.
    shape = (row["start_date"], row["end_date"], row["days"], row["times"], tz)
    quiet = (tz, row["quiet_start"], row["quiet_end"])
    stamp = stamp or iso(now)
    out: list[tuple[Any, ...]] = []
    first = row["next_due_at"]
    cursor: _Slot | None = (row["next_slot_date"], row["next_slot_time"], first, _instant(first))
    while cursor is not None and cursor[3] <= now and len(out) < MAX_CATCH_UP:
        slot_date, slot_time, due_text, _ = cursor
        due, shifted = _due_outside_quiet(due_text, slot_date, *quiet)
        if due is None:
            status, detail = "skipped", "quiet hours"
        elif now - due > LATE_LIMIT:
            status, detail, due_text = "missed", "server was not running", shifted
        else:
            status, detail, due_text = "pending", "", shifted
        out.append((row["id"], row["patient_id"], slot_date, slot_time, "reminder", due_text, status, detail, stamp))
        cursor = _following(*shape, slot_date, slot_time)
    if cursor is not None and cursor[3] <= now:
        return out, _cursor(first_slot_from(plan_of(row), tz, now))  # gave up catching up; carry on from now
    return out, (None, None, None) if cursor is None else cursor[:3]


# A slot as the outbox and the cursor store it: local date, local time, due (UTC text and instant).
_Slot = tuple[str, str, str, datetime]


@lru_cache(maxsize=8192)
def _instant(text: str) -> datetime:
    return parse_iso(text)


@lru_cache(maxsize=8192)
def _due_outside_quiet(due_at: str, slot_date: str, tz: str, quiet_start: str, quiet_end: str
                       ) -> tuple[datetime | None, str]:
    """outside_quiet for a stored slot: the instant it may go out (None: dropped) and that instant as stored."""
    moment = _instant(due_at)
    due = outside_quiet(moment, date.fromisoformat(slot_date), tz, Quiet(quiet_start, quiet_end))
    return due, due_at if due is None or due is moment else iso(due)


@lru_cache(maxsize=8192)
def _following(start_date: str, end_date: str | None, days: int, times: str, tz: str, slot_date: str, slot_time: str
               ) -> _Slot | None:
    """The slot after (slot_date, slot_time) of a running assignment with this schedule (slot_after, memoised)."""
    plan = Plan(0, start_date, end_date, days, times_of(times))
    slot = slot_after(plan, tz, date.fromisoformat(slot_date), slot_time)
    return None if slot is None else (slot[0].isoformat(), slot[1], iso(slot[2]), slot[2])


def _cursor(slot: tuple[date, str, datetime] | None) -> tuple[str | None, str | None, str | None]:
    if slot is None:
        return None, None, None
    return slot[0].isoformat(), slot[1], iso(slot[2])


_PLAN_COLUMNS = (
    "a.id, a.patient_id, a.start_date, a.end_date, a.days, a.times, a.ended_at, a.next_slot_date,"
    " a.next_slot_time, a.next_due_at, a.needs_plan, p.timezone, p.archived, p.quiet_start, p.quiet_end"
)
_PLAN_KEYS = tuple(c.strip().split(".")[1] for c in _PLAN_COLUMNS.split(","))
# One statement per batch, the rows as a JSON array: binding 2,500 rows one by one through
# executemany cost two to three times more SQLite thread time than reading them from JSON.
_INSERT_OUTBOX = (
    "INSERT OR IGNORE INTO reminders (assignment_id, patient_id, local_date, slot_time, kind, due_at, status, detail,"
    " created_at) SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6,"
    " value ->> 7, value ->> 8 FROM json_each(?)"
)
# The WHERE on the old cursor makes a second scheduler's identical update a no-op.
_MOVE_CURSORS = (
    "UPDATE assignments SET next_slot_date = c.value ->> 0, next_slot_time = c.value ->> 1,"
    " next_due_at = c.value ->> 2, needs_plan = 0 FROM json_each(?) AS c"
    " WHERE assignments.id = c.value ->> 3 AND assignments.next_due_at IS c.value ->> 4"
    " AND assignments.needs_plan = c.value ->> 5"
)


async def insert_outbox(tx: Transaction, rows: Sequence[tuple[Any, ...]]) -> None:
    """Add outbox rows (assignment, patient, date, slot, kind, due, status, detail, created); keep existing ones."""
    if rows:
        await tx.execute(_INSERT_OUTBOX, (json.dumps(rows),))


async def plan(db: Database, now: datetime, *, limit: int = 2000) -> PlanReport:
    """Put every slot that has come into the outbox and move each cursor on."""
    report = PlanReport()
    found = await db.fetch_json(
        f"SELECT json_group_array(json_array({', '.join(_PLAN_KEYS)})) FROM ("
        f"SELECT {_PLAN_COLUMNS} FROM assignments a JOIN patients p ON p.id = a.patient_id WHERE a.needs_plan = 1"
        f" UNION ALL SELECT {_PLAN_COLUMNS} FROM assignments a JOIN patients p ON p.id = a.patient_id"
        " WHERE a.next_due_at <= ? AND a.needs_plan = 0 LIMIT ?)",
        (iso(now), limit),
    )
    if not found:
        return report
    rows = [dict(zip(_PLAN_KEYS, r)) for r in found]
    outbox: list[tuple[Any, ...]] = []
    cursors = []
    stamp = iso(now)
    for i, row in enumerate(rows, start=1):
        made, (slot_date, slot_time, due) = plan_one(row, now, stamp)
        outbox.extend(made)
        if i % PLAN_STEP == 0:
            await asyncio.sleep(0)  # a batch of 2,500 took 0.1-0.2 s of Python: let requests in
        cursors.append((slot_date, slot_time, due, row["id"], row["next_due_at"], row["needs_plan"]))
    async with db.transaction() as tx:
        await insert_outbox(tx, outbox)
        await tx.execute(_MOVE_CURSORS, (json.dumps(cursors),))
    report.assignments = len(rows)
    for r in outbox:
        setattr(report, r[6], getattr(report, r[6]) + 1)
    return report


# --- claiming and recording ---------------------------------------------------------------

@dataclass
class Claimed:
    id: int
    assignment_id: int
    patient_id: int
    local_date: str
    slot_time: str
    kind: str
    due_at: str
    tries: int
    # Filled from the assignment and patient after the claim.
    context: dict[str, Any] = field(default_factory=dict)

    @property
    def topic(self) -> str:
        # Same slot, same kind, same topic: a resend after a crash replaces the first copy.
        return f"{self.kind[0]}{self.assignment_id}x{self.local_date.replace('-', '')}{self.slot_time.replace(':', '')}"

    @property
    def tag(self) -> str:
        return f"slot-{self.assignment_id}-{self.local_date}-{self.slot_time}"

    def payload(self) -> dict[str, Any]:
        """What the lock screen shows: generic, nothing about the patient's condition."""
        items, minutes = self.context["item_count"], self.context["estimated_minutes"]
        size = f"{items} exercise{'s' if items != 1 else ''}, about {minutes} minute{'s' if minutes != 1 else ''}"
        if self.kind == "nudge":
            title, body = "Still time for your stretches", f"{size} - whenever suits you today"
        else:
            title, body = "Time for your stretches", size
        return {
            "title": title,
            "body": body,
            "url": f"/app/routine/{self.assignment_id}?date={self.local_date}&time={self.slot_time}",
            "tag": self.tag,
            "kind": self.kind,
            "assignment_id": self.assignment_id,
            "date": self.local_date,
            "time": self.slot_time,
        }


async def claim(db: Database, now: datetime, worker: str, *, limit: int = 1000) -> list[Claimed]:
    """Atomically take due rows (and orphaned ones) for this worker, with what is needed to judge them."""
    async with db.transaction() as tx:
        # Read, then mark, in one BEGIN IMMEDIATE transaction: it holds the write lock, so
        # no other process can claim a row between the two.
        found = await tx.fetch_json(_CLAIMABLE, (iso(now), limit, iso(now - LEASE), limit))
        if found:
            await tx.execute(
                "UPDATE reminders SET status = 'sending', claimed_by = ?, claimed_at = ?, tries = tries + 1"
                " WHERE id IN (SELECT value FROM json_each(?))",
                (worker, iso(now), json.dumps([r[0] for r in found])),
            )
    claimed = []
    for r in found:
        c = Claimed(*r[:8])
        if r[8] is not None:  # else the assignment is gone: verdict() skips the row
            c.context = dict(zip(_CONTEXT_KEYS, r[9:]))
            c.context["done"] = bool(c.context["done"])
        claimed.append(c)
    return claimed


# Each claimable row: Claimed's fields (tries as they will be once claimed), then the
# assignment's id (null when it is gone) and the context verdict() and payload() read.
_CONTEXT_KEYS = ("item_count", "estimated_minutes", "ended_at", "archived", "nudges_enabled", "timezone", "quiet_start",
                 "quiet_end", "done")
_CLAIMABLE = (
    "SELECT json_group_array(json_array(r.id, r.assignment_id, r.patient_id, r.local_date, r.slot_time, r.kind,"
    " r.due_at, r.tries + 1, a.id, a.item_count, a.estimated_minutes, a.ended_at, p.archived, p.nudges_enabled,"
    " p.timezone, p.quiet_start, p.quiet_end, EXISTS (SELECT 1 FROM completions c WHERE c.assignment_id = a.id"
    " AND c.local_date = r.local_date AND c.slot_time = r.slot_time)))"
    " FROM (SELECT id FROM (SELECT id FROM reminders WHERE status = 'pending' AND due_at <= ? ORDER BY due_at LIMIT ?)"
    " UNION SELECT id FROM (SELECT id FROM reminders WHERE status = 'sending' AND claimed_at <= ? LIMIT ?)) AS due"
    " JOIN reminders r ON r.id = due.id LEFT JOIN assignments a ON a.id = r.assignment_id"
    " LEFT JOIN patients p ON p.id = a.patient_id"
)


def verdict(c: Claimed, now: datetime) -> tuple[str, str] | None:
    """Why a claimed row must not be sent (status, detail), or None to send it."""
    ctx = c.context
    if not ctx or ctx.get("archived") or (ctx.get("ended_at") and ctx["ended_at"] <= c.due_at):
        return "skipped", "assignment ended"
    if ctx["done"]:
        return "skipped", "already done"
    if c.kind == "nudge" and not ctx.get("nudges_enabled"):
        return "skipped", "nudges off"
    if now - _instant(c.due_at) > LATE_LIMIT:
        return "missed", "over an hour late"
    return None


@dataclass(frozen=True)
class Delivery:
    """What happened to one claimed row across the patient's subscriptions."""

    reminder: Claimed
    status: str  # sent | failed | skipped | missed
    detail: str = ""
    # (subscription id, last HTTP status, error text, tries, delivered, gone)
    attempts: Sequence[tuple[int, int | None, str, int, bool, bool]] = ()


async def record(db: Database, deliveries: Iterable[Delivery], now: datetime) -> None:
    """Store the outcome of a batch in one transaction, and arm each sent reminder's nudge."""
    finished: dict[tuple[str, str], list[int]] = {}  # (status, detail): reminder ids
    attempts, outcomes, nudges = [], [], []
    stamp = iso(now)
    # When each nudge is due depends only on (zone, quiet hours, date) for one batch: a
    # batch of 1,000 patients in a handful of zones computes it a handful of times.
    nudge_due: dict[tuple[str, str, str, str], str | None] = {}
    for d in deliveries:
        finished.setdefault((d.status, d.detail[:200]), []).append(d.reminder.id)
        for sub_id, status, error, tries, delivered, is_gone in d.attempts:
            attempts.append((d.reminder.id, sub_id, status, error[:300], tries))
            outcomes.append((sub_id, status, delivered, is_gone))
        if d.status == "sent" and d.reminder.kind == "reminder":
            c = d.reminder
            key = (c.context["timezone"], c.context.get("quiet_start", "21:30"), c.context.get("quiet_end", "07:30"),
                   c.local_date)
            if key not in nudge_due:
                due = outside_quiet(now + NUDGE_AFTER, date.fromisoformat(key[3]), key[0], Quiet(key[1], key[2]))
                nudge_due[key] = None if due is None else iso(due)
            due_text = nudge_due[key]
            if due_text is not None:
                nudges.append((c.assignment_id, c.patient_id, c.local_date, c.slot_time, "nudge", due_text, "pending",
                               "", stamp))
    async with db.transaction() as tx:
        # A batch ends in a handful of (status, detail) pairs: one statement for each.
        await tx.executemany(
            "UPDATE reminders SET status = ?, detail = ?, sent_at = ?, claimed_by = NULL"
            " WHERE id IN (SELECT value FROM json_each(?))",
            [(status, detail, stamp if status == "sent" else None, json.dumps(ids))
             for (status, detail), ids in finished.items()],
        )
        if attempts:
            await tx.execute(
                "INSERT INTO push_attempts (reminder_id, subscription_id, status, error, tries, at)"
                " SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, ? FROM json_each(?)",
                (stamp, json.dumps(attempts)),
            )
        await subscriptions.apply_outcomes(tx, outcomes, now=now)
        await insert_outbox(tx, nudges)


async def snooze(db: Database, *, patient_id: int, assignment_id: int, day: str, hhmm: str, now: datetime) -> bool:
    """Arm (or re-arm) a snooze for one slot of the patient's; False when the slot is not theirs."""
    owner = await db.fetchval("SELECT patient_id FROM assignments WHERE id = ? AND ended_at IS NULL", (assignment_id,))
    if owner != patient_id:
        return False
    await db.execute(
        "INSERT INTO reminders (assignment_id, patient_id, local_date, slot_time, kind, due_at, status, created_at)"
        " VALUES (?, ?, ?, ?, 'snooze', ?, 'pending', ?)"
        " ON CONFLICT (assignment_id, local_date, slot_time, kind)"
        " DO UPDATE SET due_at = excluded.due_at, status = 'pending', detail = '', claimed_by = NULL",
        (assignment_id, patient_id, day, hhmm, iso(now + SNOOZE_FOR), iso(now)),
    )
    return True


@dataclass(frozen=True)
class ReminderSettings:
    enabled: bool
    quiet_start: str
    quiet_end: str
    nudges: bool
    devices: int

    def public(self) -> dict[str, object]:
        return {"enabled": self.enabled, "quiet_start": self.quiet_start, "quiet_end": self.quiet_end,
                "nudges": self.nudges, "devices": self.devices}


async def settings_for(db: Database, patient_id: int) -> ReminderSettings:
    row = await db.fetchone(
        "SELECT quiet_start, quiet_end, nudges_enabled,"
        " (SELECT count(*) FROM push_subscriptions s WHERE s.patient_id = p.id) AS devices"
        " FROM patients p WHERE id = ?",
        (patient_id,),
    )
    assert row is not None
    return ReminderSettings(row["devices"] > 0, row["quiet_start"], row["quiet_end"], bool(row["nudges_enabled"]),
                            row["devices"])


async def update_settings(db: Database, patient_id: int, *, quiet_start: str | None, quiet_end: str | None,
                          nudges: bool | None) -> None:
    await db.execute(
        "UPDATE patients SET quiet_start = COALESCE(?, quiet_start), quiet_end = COALESCE(?, quiet_end),"
        " nudges_enabled = COALESCE(?, nudges_enabled) WHERE id = ?",
        (quiet_start, quiet_end, None if nudges is None else int(nudges), patient_id),
    )


async def next_reminder(db: Database, patient_id: int, now: datetime) -> str | None:
    """When the patient's next reminder will really go out (UTC): quiet hours applied, slots already done skipped."""
    candidates: list[str] = []
    pending = await db.fetchval(
        "SELECT min(due_at) FROM reminders WHERE patient_id = ? AND status = 'pending' AND due_at > ?",
        (patient_id, iso(now)),
    )
    if pending:
        candidates.append(pending)
    rows = await db.fetchall(
        f"SELECT {_PLAN_COLUMNS} FROM assignments a JOIN patients p ON p.id = a.patient_id"
        " WHERE a.patient_id = ? AND a.ended_at IS NULL AND a.needs_plan = 0 AND a.next_due_at > ?",
        (patient_id, iso(now)),
    )
    if rows:
        done = {
            (r["assignment_id"], r["local_date"], r["slot_time"])
            for r in await db.fetchall(
                "SELECT assignment_id, local_date, slot_time FROM completions WHERE patient_id = ? AND local_date >= ?",
                (patient_id, min(r["next_slot_date"] for r in rows)),
            )
        }
    for row in rows:
        plan, tz, quiet = plan_of(row), row["timezone"], Quiet(row["quiet_start"], row["quiet_end"])
        slot: tuple[date, str, datetime] | None = (
            date.fromisoformat(row["next_slot_date"]), row["next_slot_time"], parse_iso(row["next_due_at"]))
        for _ in range(50):  # a few days of slots is plenty to find the next one that rings
            if slot is None:
                break
            due = outside_quiet(slot[2], slot[0], tz, quiet)
            if due is not None and (plan.id, slot[0].isoformat(), slot[1]) not in done:
                candidates.append(iso(due))
                break
            slot = slot_after(plan, tz, slot[0], slot[1])
    return min(candidates) if candidates else None
