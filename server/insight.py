"""Practitioner insight: adherence, pain trend, attention flags and a summary in words.

Everything here stands on server/schedule.py: a slot is scheduled exactly when
schedule.slot_times says so, and a day's counts come from schedule.tally. The rules
(windows, thresholds, edge cases) are described for people in docs/adherence.md; keep the
two in step. The loaders read a whole practitioner's list in a few queries (never one per
patient); assess() and the other rule functions are pure and take the clock as an argument.
"""

from __future__ import annotations

import asyncio
import json
import math
import statistics
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache, partial
from operator import add, itemgetter
from typing import Any, NamedTuple

from .assignments import plan_of
from .clinic_sessions import ClinicSession
from .clock import iso, local_date, parse_iso, zone
from .completions import STREAK_LOOKBACK_DAYS
from .db import Database
from .patients import Patient
from .schedule import (
    END_OF_DAY,
    DayTally,
    Plan,
    Span,
    local_moment,
    slot_keys,
    slots_on,
    span,
    streak,
    tally,
)

WINDOW_DAYS = 28  # the long adherence window, the calendar and the pain trend
RECENT_DAYS = 7  # "the last week"
INACTIVE_DAYS = 3  # no completion for this many days (with homework due) raises a flag
FALLING_DROP = 0.2  # last week this far below the 21 days before it raises a flag ...
FALLING_MIN_SLOTS = 4  # ... when each of the two had at least this many slots due
PAIN_STEP = 1.0  # mean pain after stretching moving this much is a trend, less is flat
PAIN_MIN_RATINGS = 2  # ratings needed on each side of a trend comparison
SAFETY_PAIN_AFTER = 8  # pain after stretching at or above this ...
SAFETY_RISE = 3  # ... or this many points above the same completion's before-rating
SAFETY_DAYS = 14  # how long a safety flag stays without a reassuring completion
MAX_IDS = 500  # ids per IN (...) list
_ONE_DAY = timedelta(days=1)

# Most urgent first: the order of flags in lists, and their weight in the attention sort.
FLAG_WEIGHTS = {"safety": 16, "inactive": 8, "pain_rising": 4, "adherence_falling": 2, "not_joined": 1}
SAFETY_ADVICE = (
    "Your pain after this exercise is high. Stop doing this exercise and contact your clinic "
    "before you do it again."
)


# --- the facts of one patient ---------------------------------------------------------------

class Rating(NamedTuple):
    """A completion's pain ratings (0-10; either may be missing)."""

    completed_at: str
    date: str  # the local homework day it counts for
    before: int | None
    after: int | None


@dataclass
class Record:
    """What the rules need to know about one patient, loaded from `since` (a local date) on."""

    patient_id: int
    timezone: str
    joined_at: str | None
    since: date
    plans: list[Plan] = field(default_factory=list)
    done: dict[tuple[int, str], set[str]] = field(default_factory=lambda: defaultdict(set))
    ratings: list[Rating] = field(default_factory=list)  # only completions with a pain rating
    last_completed_at: str | None = None
    reminders: bool = False

    def add_completion(self, assignment_id: int, day: str, slot: str | None, completed_at: str,
                       before: int | None, after: int | None) -> None:
        if slot is not None:
            self.done[(assignment_id, day)].add(slot)
        if before is not None or after is not None:
            self.ratings.append(Rating(completed_at, day, before, after))
        if self.last_completed_at is None or completed_at > self.last_completed_at:
            self.last_completed_at = completed_at


class Insight(NamedTuple):
    """The answer to "does this patient need a call?" and the evidence behind it.

    A NamedTuple, not a dataclass: one per patient of the list, at a third of the cost.
    """

    adherence_7d: float | None
    adherence_28d: float | None
    streak_days: int
    last_completed_at: str | None
    pain_trend: str | None  # "up", "flat", "down"; None with too few ratings
    flags: tuple[str, ...]
    reminders_enabled: bool
    done_7d: int
    scheduled_7d: int
    adherence_before: float | None  # the 21 days before the last week
    days_since_last: int | None
    pain_recent: float | None
    pain_earlier: float | None
    safety: Rating | None

    def public(self) -> dict[str, object]:
        return {
            "adherence_7d": _round(self.adherence_7d),
            "adherence_28d": _round(self.adherence_28d),
            "streak_days": self.streak_days,
            "last_completed_at": self.last_completed_at,
            "pain_trend": self.pain_trend,
            "flags": list(self.flags),
            "reminders_enabled": self.reminders_enabled,
        }

    @property
    def weight(self) -> int:
        return sum(FLAG_WEIGHTS[f] for f in self.flags)

    def flag_texts(self) -> list[tuple[str, str]]:
        """Each flag with a short reason in words, most urgent first."""
        texts = []
        for flag in self.flags:
            if flag == "safety" and self.safety is not None:
                s = self.safety
                why = f"{s.after}/10" if s.after is not None and s.after >= SAFETY_PAIN_AFTER else f"{s.before} → {s.after}"
                texts.append((flag, f"Pain {why} after stretching · {short_date(date.fromisoformat(s.date))}"))
            elif flag == "inactive":
                texts.append((flag, "Nothing done yet" if self.days_since_last is None
                              else f"Nothing done for {self.days_since_last} days"))
            elif flag == "pain_rising":
                texts.append((flag, f"Pain rising: {self.pain_earlier:.1f} → {self.pain_recent:.1f}"))
            elif flag == "adherence_falling":
                texts.append((flag, f"Falling behind: {_pct(self.adherence_before)} → {_pct(self.adherence_7d)}"))
            elif flag == "not_joined":
                texts.append((flag, "Has not opened the app"))
        return texts


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{round(value * 100)}%"


# --- the rules (pure) -----------------------------------------------------------------------

def not_before(record: Record, today: date) -> date:
    """The first local day whose slots count: the day the patient joined (never joined: none do)."""
    if record.joined_at is None:
        return today + timedelta(days=1)
    return _joined_day(record.joined_at, record.timezone)


@lru_cache(maxsize=4096)
def _joined_day(joined_at: str, tz: str) -> date:
    return local_date(parse_iso(joined_at), tz)


def day_tallies(record: Record, first: date, today: date, now: datetime) -> list[DayTally]:
    """Slots due and done per local day from first to today.

    Past days are schedule.tally's; today counts only the slots already due (their local
    time has passed) plus any done early, so an evening slot does not count against the
    patient in the morning.
    """
    days = tally(record.plans, record.done, first, today, record.timezone, not_before=not_before(record, today))
    if days:
        days[-1] = _due_so_far(record, days[-1], today, now)
    return days


def _due_so_far(record: Record, whole: DayTally, today: date, now: datetime) -> DayTally:
    # Past every slot time of the day (by whole minutes), every slot is due: nothing to take off.
    # A later wall-clock minute is a later instant even around DST changes, as local_moment
    # takes the first of two repeated times and moves a skipped one forward.
    wall = now.astimezone(zone(record.timezone)).strftime("%H:%M")
    if all(wall > t for p in record.plans for t in p.times):
        return whole
    # A plan that "ended" now has exactly the slots that are due by now (schedule.slot_times).
    cut = iso(now)
    due_plans = [Plan(p.id, p.start_date, p.end_date, p.days_mask, p.times,
                      cut if p.ended_at is None or p.ended_at > cut else p.ended_at) for p in record.plans]
    due = tally(due_plans, record.done, today, today, record.timezone, not_before=not_before(record, today))[0]
    return DayTally(whole.date, due.scheduled + whole.completed - due.completed, whole.completed)


def adherence(days: Iterable[DayTally]) -> tuple[float | None, int, int]:
    """(done / due, done, due) over the days; None when nothing was due."""
    done = due = 0
    for d in days:
        done += d.completed
        due += d.scheduled
    return (done / due if due else None), done, due


def pain_trend(ratings: Sequence[Rating], today: date) -> tuple[str | None, float | None, float | None]:
    """Compare mean pain after stretching in the last week with the 21 days before it."""
    recent_from = (today - timedelta(days=RECENT_DAYS - 1)).isoformat()
    earlier_from = (today - timedelta(days=WINDOW_DAYS - 1)).isoformat()
    recent = [r.after for r in ratings if r.after is not None and r.date >= recent_from]
    earlier = [r.after for r in ratings if r.after is not None and earlier_from <= r.date < recent_from]
    return _trend(len(recent), math.fsum(recent), len(earlier), math.fsum(earlier))


def _trend(recent_n: int, recent_sum: float, earlier_n: int,
           earlier_sum: float) -> tuple[str | None, float | None, float | None]:
    """pain_trend from the count and sum of each side's ratings (the list has SQLite add them up)."""
    if recent_n < PAIN_MIN_RATINGS or earlier_n < PAIN_MIN_RATINGS:
        return None, (recent_sum / recent_n if recent_n else None), None
    now_mean, before_mean = recent_sum / recent_n, earlier_sum / earlier_n
    change = now_mean - before_mean
    trend = "up" if change >= PAIN_STEP else "down" if change <= -PAIN_STEP else "flat"
    return trend, now_mean, before_mean


def is_unsafe(before: int | None, after: int | None) -> bool:
    """Tell whether a completion's ratings call for the stop-and-call advice."""
    if after is None:
        return False
    return after >= SAFETY_PAIN_AFTER or (before is not None and after - before >= SAFETY_RISE)


def safety_advice(before: int | None, after: int | None) -> dict[str, str] | None:
    """The `safety` object of a completion response: advice for the patient, or None."""
    if not is_unsafe(before, after):
        return None
    reason = "pain_high" if after is not None and after >= SAFETY_PAIN_AFTER else "pain_rose"
    return {"reason": reason, "advice": SAFETY_ADVICE}


def safety_flag(ratings: Sequence[Rating], now: datetime) -> Rating | None:
    """The unsafe completion still flagged: in the last 14 days, with no later reassuring one.

    A later completion clears the flag only when it has a pain-after rating that is not
    itself unsafe; one without ratings tells nothing and leaves the flag. `ratings` are in
    the order they were done (completed_at).
    """
    horizon = iso(now - timedelta(days=SAFETY_DAYS))
    for r in reversed(ratings):
        if r.completed_at < horizon:
            return None
        if r.after is not None:  # the newest rating after stretching decides
            return r if is_unsafe(r.before, r.after) else None
    return None


class Counts(NamedTuple):
    """Slots done and due in the list's windows of local days ending today.

    Today counts only the slots due so far plus any done early (see day_tallies).
    """

    done_7d: int
    due_7d: int
    done_28d: int
    due_28d: int
    due_lately: int  # the last INACTIVE_DAYS days


def assess(record: Record, now: datetime) -> Insight:
    """Adherence, streak, pain trend and flags of one patient as of now, day by day: the definition.

    for_patients computes the same for a whole list without walking each day; the tests hold
    the two to the same answers.
    """
    today = local_date(now, record.timezone)
    first = today - timedelta(days=WINDOW_DAYS - 1)
    start = not_before(record, today)
    # The patient app's streak looks back STREAK_LOOKBACK_DAYS days: never further, so the numbers agree.
    history = min(first, max(record.since, today - timedelta(days=STREAK_LOOKBACK_DAYS)))
    plans = [p for p in record.plans if p.end_date is None or p.end_date >= history.isoformat()]
    plain = tally(plans, record.done, history, today, record.timezone, not_before=start)
    # The streak is the patient app's number (completions.today): whole days, today once complete.
    streak_days = streak(plain, today.isoformat())
    days = plain[-WINDOW_DAYS:]
    days[-1] = _due_so_far(record, days[-1], today, now)
    _, done_7d, due_7d = adherence(days[-RECENT_DAYS:])
    _, done_28d, due_28d = adherence(days)
    _, _, due_lately = adherence(days[-INACTIVE_DAYS:])
    return judge(
        Counts(done_7d, due_7d, done_28d, due_28d, due_lately), record.plans, today,
        timezone=record.timezone, joined=record.joined_at is not None, start=start, streak_days=streak_days,
        last_completed_at=record.last_completed_at, trend=pain_trend(record.ratings, today),
        unsafe=safety_flag(record.ratings, now), reminders=record.reminders,
    )


def judge(counts: Counts, plans: Sequence[Plan], today: date, *, timezone: str, joined: bool, start: date,
          streak_days: int, last_completed_at: str | None,
          trend: tuple[str | None, float | None, float | None], unsafe: Rating | None,
          reminders: bool) -> Insight:
    """The rates and flags from one patient's counts and pain facts (start: the first day that counts)."""
    rate_7d = _rate(counts.done_7d, counts.due_7d)
    due_before = counts.due_28d - counts.due_7d
    rate_before = _rate(counts.done_28d - counts.done_7d, due_before)
    last_day = local_date(parse_iso(last_completed_at), timezone) if last_completed_at else None
    quiet_since = last_day or (start if joined else None)
    word, pain_recent, pain_earlier = trend

    flags = []
    if unsafe is not None:
        flags.append("safety")
    if joined and quiet_since is not None and (today - quiet_since).days >= INACTIVE_DAYS and counts.due_lately:
        flags.append("inactive")
    if word == "up":
        flags.append("pain_rising")
    if (rate_7d is not None and rate_before is not None and counts.due_7d >= FALLING_MIN_SLOTS
            and due_before >= FALLING_MIN_SLOTS and rate_before - rate_7d >= FALLING_DROP - 1e-9):
        flags.append("adherence_falling")
    if not joined and any(p.end_date is None or p.end_date >= today.isoformat() for p in plans):
        flags.append("not_joined")
    return Insight(
        adherence_7d=rate_7d,
        adherence_28d=_rate(counts.done_28d, counts.due_28d),
        streak_days=streak_days,
        last_completed_at=last_completed_at,
        pain_trend=word,
        flags=tuple(flags),
        reminders_enabled=reminders,
        done_7d=counts.done_7d,
        scheduled_7d=counts.due_7d,
        adherence_before=rate_before,
        days_since_last=(today - last_day).days if last_day else None,
        pain_recent=pain_recent,
        pain_earlier=pain_earlier,
        safety=unsafe,
    )


def _rate(done: int, due: int) -> float | None:
    return done / due if due else None


def attention_key(name: str, insight: Insight) -> tuple[Any, ...]:
    """Sort key, most in need of a call first: flag weight, then lower adherence, then name."""
    rate = insight.adherence_7d
    return (-insight.weight, rate is None, rate if rate is not None else 0.0, name.casefold())


# --- words ----------------------------------------------------------------------------------

def short_date(day: date, today: date | None = None) -> str:
    """2 Nov; with the year when it is not today's year."""
    text = f"{day.day} {day:%b}"
    return text if today is None or day.year == today.year else f"{text} {day.year}"


def summary(insight: Insight, ratings: Sequence[Rating], sessions: Sequence[ClinicSession],
            today: date, *, joined: bool) -> list[str]:
    """Two or three plain sentences: homework done in the last week, and where pain is heading."""
    sentences = []
    if not joined:
        sentences.append("Has not joined the app yet, so no homework is counted.")
    elif insight.scheduled_7d:
        n = insight.scheduled_7d
        sentences.append(f"Did {insight.done_7d} of {n} scheduled routine{'s' if n != 1 else ''} in the last week.")
    else:
        sentences.append("Nothing was scheduled in the last week.")

    recent_from = (today - timedelta(days=RECENT_DAYS - 1)).isoformat()
    after = [r for r in ratings if r.after is not None]
    recent = [r.after for r in after if r.date >= recent_from and r.after is not None]
    if recent:
        mean = statistics.fmean(recent)
        text = f"Pain after stretching averages {mean:.1f} this week"
        baseline = _baseline(after, sessions, recent_from, today)
        if baseline is not None:
            base_mean, label = baseline
            change = mean - base_mean
            word = "down from" if change <= -0.5 else "up from" if change >= 0.5 else "about the same as"
            text += f", {word} {base_mean:.1f} {label}"
        sentences.append(text + ".")
    elif after:
        last = after[-1]
        sentences.append(f"No pain ratings this week; the last, on {short_date(date.fromisoformat(last.date), today)},"
                         f" was {last.after}/10 after stretching.")
    if insight.safety is not None:
        s = insight.safety
        sentences.append(f"On {short_date(date.fromisoformat(s.date), today)} pain after stretching was {s.after}/10"
                         + (f" (from {s.before})" if s.before is not None else "") + ": worth a call.")
    return sentences


def _baseline(after: list[Rating], sessions: Sequence[ClinicSession], recent_from: str,
              today: date) -> tuple[float, str] | None:
    """Mean pain after stretching before the first session, else in the first week of ratings."""
    if sessions:
        first_session = min(s.date for s in sessions)
        before = [r.after for r in after if r.date < first_session and r.after is not None]
        if before and first_session < recent_from:
            label = f"before the first session on {short_date(date.fromisoformat(first_session), today)}"
            return statistics.fmean(before), label
    if not after:
        return None
    start = date.fromisoformat(min(r.date for r in after))
    week_end = (start + timedelta(days=RECENT_DAYS)).isoformat()
    if week_end > recent_from:
        return None  # the first week and this week overlap: nothing to compare yet
    first_week = [r.after for r in after if r.date < week_end and r.after is not None]
    return statistics.fmean(first_week), f"in the first week (from {short_date(start, today)})"


# --- loading --------------------------------------------------------------------------------

def _chunks(ids: Sequence[int]) -> Iterable[Sequence[int]]:
    for i in range(0, len(ids), MAX_IDS):
        yield ids[i:i + MAX_IDS]


def _marks(ids: Sequence[int]) -> str:
    return ",".join("?" * len(ids))


_rating = partial(tuple.__new__, Rating)  # NamedTuple without its Python-level __new__: thousands per list
_PLAN_SQL = "SELECT patient_id, id, start_date, end_date, days, times, ended_at FROM assignments"
_COMPLETION_SQL = (
    "SELECT patient_id, assignment_id, local_date, slot_time, completed_at, pain_before, pain_after FROM completions"
)
# For patients with nothing in the window: the last completion of the latest homework day,
# found with two index seeks instead of a scan of all their history.
_LAST_AND_REMINDERS_SQL = (
    "SELECT p.id,"
    " (SELECT max(c.completed_at) FROM completions c WHERE c.patient_id = p.id"
    "   AND c.local_date = (SELECT max(local_date) FROM completions WHERE patient_id = p.id)) AS last_completed_at,"
    " EXISTS (SELECT 1 FROM push_subscriptions s WHERE s.patient_id = p.id) AS reminders"
    " FROM patients p"
)


async def _load(db: Database, found: Sequence[Patient], since: date, streak_since: date) -> dict[int, Record]:
    records = {p.id: Record(p.id, p.timezone, p.joined_at, since) for p in found}
    ids = list(records)
    for chunk in _chunks(ids):
        marks = _marks(chunk)
        for row in await db.fetchall(
            f"{_PLAN_SQL} WHERE patient_id IN ({marks}) AND (end_date IS NULL OR end_date >= ?)",
            (*chunk, streak_since.isoformat()),
        ):
            records[row["patient_id"]].plans.append(plan_of(row))
        # The hot loop of the list (thousands of rows): plain unpacking, no per-row method calls.
        for pid, aid, day, slot, completed_at, before, after in await db.fetchall(
            f"{_COMPLETION_SQL} WHERE patient_id IN ({marks}) AND local_date >= ?", (*chunk, since.isoformat())
        ):
            record = records[pid]
            if slot is not None:
                record.done[(aid, day)].add(slot)
            if before is not None or after is not None:
                record.ratings.append(_rating((completed_at, day, before, after)))
            if record.last_completed_at is None or completed_at > record.last_completed_at:
                record.last_completed_at = completed_at
        for row in await db.fetchall(f"{_LAST_AND_REMINDERS_SQL} WHERE p.id IN ({marks})", chunk):
            record = records[row["id"]]
            last = row["last_completed_at"]
            if last is not None and (record.last_completed_at is None or last > record.last_completed_at):
                record.last_completed_at = last
            record.reminders = bool(row["reminders"])
    for record in records.values():
        record.ratings.sort(key=itemgetter(0))  # by completed_at (whole tuples may hold None)
    return records


async def for_patients(db: Database, found: Sequence[Patient], *, now: datetime) -> dict[int, Insight]:
    """Insight for each of the patients: assess()'s answers, read in a few queries whatever their number.

    Nothing here walks each completion or each slot of the window in Python per patient:
    the scheduled slots of a plan are worked out once per kind of plan and local day (the
    window's keys and its count per day, shared by every patient they fit), per plan the
    done slots come as one string and count as a set intersection with those keys (a
    completion counts once; one that fills no scheduled slot, not at all), and SQLite adds
    up the pain ratings in one pass over each patient's rows (_FACTS_SQL). The streak walks
    back only as far as it reaches.
    """
    if not found:
        return {}
    # Local dates are at most a day away from UTC's: one UTC bound covers every zone's window.
    utc_today = now.date()
    since = utc_today - timedelta(days=WINDOW_DAYS + 1)
    streak_since = utc_today - timedelta(days=STREAK_LOOKBACK_DAYS + 1)
    shared = _Shared(now)
    calendars = [shared.days(p.timezone) for p in found]
    ids = json.dumps([p.id for p in found])
    # The three reads are queued at once: the connection's thread runs the later ones while
    # this one works through the plans (SQLite lets go of the GIL while it steps).
    plan_rows = asyncio.ensure_future(db.fetchall(_LIST_PLANS_SQL, (ids, streak_since.isoformat())))
    done_rows = asyncio.ensure_future(db.fetchall(_DONE_SQL_OF_PATIENTS, (
        ids, min(c.first for c in calendars), max(c.today for c in calendars).isoformat())))
    bounds = json.dumps([[p.id, c.texts[RECENT_DAYS - 1], c.first] for p, c in zip(found, calendars)])
    horizon = iso(now - timedelta(days=SAFETY_DAYS))
    fact_rows = asyncio.ensure_future(db.fetchall(
        _FACTS_SQL, (bounds, since.isoformat(), horizon, SAFETY_PAIN_AFTER, SAFETY_RISE)))
    try:
        await asyncio.sleep(0)  # let the three reads reach the connection's queue
        listed = {p.id: _Listed(p, c) for p, c in zip(found, calendars)}
        for row in await plan_rows:
            listed[row["patient_id"]].add(plan_of(row), shared)
        plans = {aid: one for one in listed.values() for aid in one.spans}
        for aid, done in await done_rows:
            if aid in plans:  # not one that ended before the streak's reach
                plans[aid].count_done(aid, done)
        for pid, facts, reminders, rating in await fact_rows:
            listed[pid].add_facts(facts, reminders, rating)
    finally:
        for read in (plan_rows, done_rows, fact_rows):
            read.cancel()  # no-op once done; on an error, nothing is left running unawaited

    # A streak unbroken over the whole window may go back further: read older days for those only.
    longer = {aid: one for one in listed.values() if one.walk() for aid in one.spans}
    if longer:
        last_older = max(date.fromisoformat(one.days.first) for one in longer.values()) - _ONE_DAY
        for aid, done in await db.fetchall(_DONE_SQL, (json.dumps(list(longer)), streak_since.isoformat(),
                                                       last_older.isoformat())):
            longer[aid].count_older(aid, done)
        for one in set(longer.values()):
            one.walk()
    return {pid: one.insight() for pid, one in listed.items()}


class _Days:
    """The local days the list looks at for one local today (patients whose zones agree share them)."""

    def __init__(self, today: date) -> None:
        self.today = today
        days = [today - timedelta(days=n) for n in range(STREAK_LOOKBACK_DAYS + 1)]  # newest first
        self.texts = [d.isoformat() for d in days]
        self.bits = [1 << d.weekday() for d in days]
        self.first = self.texts[WINDOW_DAYS - 1]


class _Window(NamedTuple):
    """One plan's scheduled slots on the window's days."""

    keys: frozenset[str]  # "YYYY-MM-DDHH:MM" (the local date, then the time)
    per_day: tuple[int, ...]  # slots per day, newest (today) first
    today: tuple[str, ...]  # today's slot times


class _Shared:
    """What the patients of one list share while it is worked out: calendars, windows, today's due times."""

    def __init__(self, now: datetime) -> None:
        # Whole seconds, as day_tallies sees now (through iso): a slot falls due once its moment has passed.
        self.now = now.replace(microsecond=0)
        self.calendars: dict[str, _Days] = {}  # by zone
        self.windows: dict[tuple[Any, ...], _Window] = {}
        self.due: dict[tuple[tuple[str, ...], str], frozenset[str]] = {}

    def days(self, tz: str) -> _Days:
        found = self.calendars.get(tz)
        if found is None:
            today = local_date(self.now, tz)
            found = next((c for c in self.calendars.values() if c.today == today), None) or _Days(today)
            self.calendars[tz] = found
        return found

    def window(self, s: Span, days: _Days) -> _Window:
        """The span's slots on the window's days: keys, count per day and today's times."""
        last = (days.today - s.last_day).days  # days ago (negative: after today)
        newest, oldest = max(0, last), min(WINDOW_DAYS - 1, (days.today - s.first).days)
        cut = s.last_time if newest == last and s.last_time != END_OF_DAY else None
        key = (newest, oldest, cut, s.days_mask, s.times, days.today)
        found = self.windows.get(key)
        if found is None:
            every = s.times
            on_last = every if cut is None else tuple(t for t in every if t <= cut)
            keys: list[str] = []
            per_day = [0] * WINDOW_DAYS
            texts, bits, mask = days.texts, days.bits, s.days_mask
            for n in range(newest, oldest + 1):
                if mask & bits[n]:
                    times = on_last if n == newest else every
                    text = texts[n]
                    keys += [text + t for t in times]
                    per_day[n] = len(times)
            today = (on_last if newest == 0 else every) if per_day[0] else ()
            found = self.windows[key] = _Window(frozenset(keys), tuple(per_day), today)
        return found

    def due_times(self, times: tuple[str, ...], tz: str, today: date) -> frozenset[str]:
        """Those of today's slot times whose moment has passed (local_moment: DST rules included)."""
        key = (times, tz)
        found = self.due.get(key)
        if found is None:
            found = self.due[key] = frozenset(t for t in times if local_moment(today, t, tz) < self.now)
        return found


_NO_SLOTS = (0,) * WINDOW_DAYS


class _Listed:
    """One patient of the list while their insight is worked out."""

    __slots__ = ("id", "timezone", "joined", "days", "today", "start", "plans", "spans", "windows", "per_day",
                 "due_now", "due_times", "done", "last_completed_at", "trend", "unsafe", "reminders",
                 "streak_days", "cursor")

    def __init__(self, patient: Patient, days: _Days) -> None:
        self.id, self.timezone, self.joined = patient.id, patient.timezone, patient.joined_at is not None
        self.days, self.today = days, days.today
        # The first day whose slots count (never joined: none do), and how far back a streak may go.
        self.start = _joined_day(patient.joined_at, patient.timezone) if patient.joined_at else self.today + _ONE_DAY
        self.plans: list[Plan] = []
        self.spans: dict[int, Span] = {}
        self.windows: dict[int, _Window] = {}
        self.per_day: Sequence[int] = _NO_SLOTS  # slots scheduled per day of the window, newest first
        self.due_now = 0  # today's slots due by now
        self.due_times: frozenset[str] = frozenset()  # today's slot times that are due by now
        self.done: list[str] = []  # scheduled slots done (keys), each once; sorted once all are in
        self.last_completed_at: str | None = None
        self.trend: tuple[str | None, float | None, float | None] = (None, None, None)
        self.unsafe: Rating | None = None
        self.reminders = False
        self.streak_days, self.cursor = 0, 0  # the streak so far, and the next day to look at (days ago)

    def add(self, plan: Plan, shared: _Shared) -> None:
        self.plans.append(plan)
        s = self.spans[plan.id] = span(plan, self.timezone, not_before=self.start)
        window = self.windows[plan.id] = shared.window(s, self.days)
        self.per_day = window.per_day if self.per_day is _NO_SLOTS else list(map(add, self.per_day, window.per_day))
        if window.today:
            due = shared.due_times(window.today, self.timezone, self.today)
            self.due_now += len(due)
            self.due_times |= due

    def count_done(self, plan_id: int, done: str) -> None:
        """Count a plan's done slots of the window ("YYYY-MM-DDHH:MM,..."), each scheduled one once."""
        self.done += self.windows[plan_id].keys.intersection(done.split(","))

    def count_older(self, plan_id: int, done: str) -> None:
        """Count a plan's done slots before the window, for a streak that reaches past it."""
        first = date.fromisoformat(self.days.first)
        older = slot_keys(self.spans[plan_id], first - timedelta(days=STREAK_LOOKBACK_DAYS), first - _ONE_DAY)
        self.done += older.intersection(done.split(","))
        self.done.sort()

    def add_facts(self, facts: str, reminders: int, rating: str | None) -> None:
        """Take one row of _FACTS_SQL."""
        last, recent_n, recent_sum, earlier_n, earlier_sum, _ = facts.split(" ")
        self.last_completed_at = None if last == "-" else last
        self.trend = _trend(int(recent_n), float(recent_sum), int(earlier_n), float(earlier_sum))
        self.reminders = bool(reminders)
        if rating is not None:
            newest = Rating(*json.loads(rating))
            self.unsafe = newest if is_unsafe(newest.before, newest.after) else None

    def _done_since(self, n: int) -> int:
        """Slots done from n days ago on (the keys sort by date)."""
        return len(self.done) - bisect_left(self.done, self.days.texts[n])

    def _done_on(self, n: int) -> int:
        text = self.days.texts[n]
        return bisect_left(self.done, text + "~") - bisect_left(self.done, text)  # "~" sorts after every time

    def walk(self) -> bool:
        """Walk the streak back from where it stopped; tell whether days before the window may extend it."""
        spans = self.spans.values()
        earliest = min((s.first for s in spans), default=self.today + _ONE_DAY)
        # The patient app's streak looks back STREAK_LOOKBACK_DAYS days: never further, so the numbers agree.
        oldest = min((self.today - earliest).days, STREAK_LOOKBACK_DAYS)
        n = self.cursor
        if not n:
            self.done.sort()  # once all the window's done slots are in
        while n <= oldest:
            if n < WINDOW_DAYS:
                due = self.per_day[n]
            else:
                day = self.today - timedelta(days=n)
                due = sum(slots_on(s, day) for s in spans)
            if due:
                if self._done_on(n) >= due:
                    self.streak_days += 1
                elif n:  # today, still open, does not break it
                    self.cursor = STREAK_LOOKBACK_DAYS + 1
                    return False
            n += 1
            if n == WINDOW_DAYS and n <= oldest and self.cursor < WINDOW_DAYS:
                self.cursor = n
                return True
        self.cursor = n
        return False

    def insight(self) -> Insight:
        per_day, done = self.per_day, self.done
        # Today: the slots due by now, and any done early.
        today_at = bisect_left(done, self.days.texts[0])
        done_due = sum(1 for key in done[today_at:] if key[10:] in self.due_times)
        due_today = self.due_now + len(done) - today_at - done_due
        counts = Counts(
            self._done_since(RECENT_DAYS - 1), sum(per_day[1:RECENT_DAYS]) + due_today,
            self._done_since(WINDOW_DAYS - 1), sum(per_day[1:]) + due_today, sum(per_day[1:INACTIVE_DAYS]) + due_today,
        )
        return judge(counts, self.plans, self.today, timezone=self.timezone, joined=self.joined, start=self.start,
                     streak_days=self.streak_days, last_completed_at=self.last_completed_at, trend=self.trend,
                     unsafe=self.unsafe, reminders=self.reminders)


_LIST_PLANS_SQL = (
    f"{_PLAN_SQL} WHERE patient_id IN (SELECT value FROM json_each(?1)) AND (end_date IS NULL OR end_date >= ?2)"
)
# Per plan (?1: a JSON list of assignment ids), the slots done from local date ?2 to ?3 as one
# string of keys "YYYY-MM-DDHH:MM"; _DONE_SQL_OF_PATIENTS the same for every plan of the patients ?1.
_DONE_SQL = (
    "SELECT assignment_id, group_concat(local_date || slot_time) FROM completions"
    " WHERE assignment_id IN (SELECT value FROM json_each(?1)) AND local_date >= ?2 AND local_date <= ?3"
    " AND slot_time IS NOT NULL GROUP BY assignment_id"
)
_DONE_SQL_OF_PATIENTS = _DONE_SQL.replace(
    "(SELECT value FROM json_each(?1))",
    "(SELECT id FROM assignments WHERE patient_id IN (SELECT value FROM json_each(?1)))")
# Per patient (?1: JSON [id, first day of the last week, first day of the 28]; ?2: the loaded
# window's first day; ?3: the safety flag's horizon; ?4, ?5: SAFETY_PAIN_AFTER, SAFETY_RISE),
# in one pass over that patient's rows of the window (the completions_patient_ratings index
# of migration 0005 carries every column read), as "last n_7d sum_7d n_before sum_before
# flag": the last completion ("-": none; with nothing in the window, the last one of the
# latest homework day), the pain after stretching on each side of pain_trend (count, total),
# and whether the newest rating after stretching in the horizon may be unsafe (an unsafe one
# was done at that same moment). Only then is that rating read, in safety_flag's order; and
# whether reminders are on.
_FACTS_SQL = """
WITH p AS MATERIALIZED (SELECT value ->> 0 AS id, value ->> 1 AS from_7d, value ->> 2 AS from_28d FROM json_each(?1)),
f AS MATERIALIZED (SELECT p.id, (
    SELECT coalesce(max(completed_at),
                    (SELECT max(c.completed_at) FROM completions c WHERE c.patient_id = p.id
                      AND c.local_date = (SELECT max(local_date) FROM completions WHERE patient_id = p.id)),
                    '-')
        || ' ' || count(pain_after) FILTER (WHERE local_date >= p.from_7d)
        || ' ' || total(pain_after) FILTER (WHERE local_date >= p.from_7d)
        || ' ' || count(pain_after) FILTER (WHERE local_date >= p.from_28d AND local_date < p.from_7d)
        || ' ' || total(pain_after) FILTER (WHERE local_date >= p.from_28d AND local_date < p.from_7d)
        || ' ' || coalesce(max(completed_at) FILTER (WHERE pain_after IS NOT NULL AND completed_at >= ?3)
                           = max(completed_at) FILTER (WHERE pain_after >= ?4 OR pain_after - pain_before >= ?5), 0)
    FROM completions WHERE patient_id = p.id AND local_date >= ?2) AS facts FROM p)
SELECT f.id, f.facts,
    EXISTS (SELECT 1 FROM push_subscriptions s WHERE s.patient_id = f.id),
    CASE WHEN substr(f.facts, -1) = '1' THEN (
        SELECT json_array(c.completed_at, c.local_date, c.pain_before, c.pain_after) FROM completions c
        WHERE c.patient_id = f.id AND c.local_date >= ?2 AND c.pain_after IS NOT NULL AND c.completed_at >= ?3
        ORDER BY c.completed_at DESC, c.local_date DESC, c.id DESC LIMIT 1) END
FROM f
"""


# --- one patient in full --------------------------------------------------------------------

@dataclass(frozen=True)
class Progress:
    """One patient's window: per-day counts, pain, sessions, and the list's insight."""

    first: date
    last: date
    days: list[DayTally]
    adherence: float | None
    insight: Insight
    ratings: list[Rating]  # in the window
    sessions: list[ClinicSession]  # in the window
    summary: list[str]

    def public(self) -> dict[str, object]:
        return {
            "from": self.first.isoformat(),
            "to": self.last.isoformat(),
            "days": [{"date": d.date, "scheduled": d.scheduled, "completed": d.completed} for d in self.days],
            "adherence": _round(self.adherence),
            "streak_days": self.insight.streak_days,
            "pain": [{"completed_at": r.completed_at, "date": r.date, "before": r.before, "after": r.after}
                     for r in self.ratings],
            "sessions": [{"date": s.date, "note": s.note} for s in self.sessions],
            "flags": list(self.insight.flags),
            **{k: v for k, v in self.insight.public().items() if k not in ("streak_days", "flags")},
            "summary": " ".join(self.summary),
        }


async def history_days(db: Database, patient: Patient, *, now: datetime) -> int:
    """Days from the patient's first session, assignment or completion to today (at least the window)."""
    first = await db.fetchval(
        "SELECT min(d) FROM (SELECT min(date) AS d FROM clinic_sessions WHERE patient_id = ?"
        " UNION ALL SELECT min(start_date) FROM assignments WHERE patient_id = ?"
        " UNION ALL SELECT min(local_date) FROM completions WHERE patient_id = ?)",
        (patient.id, patient.id, patient.id),
    )
    today = local_date(now, patient.timezone)
    span = (today - date.fromisoformat(first)).days + 1 if first else 0
    return max(WINDOW_DAYS, span)


async def progress(db: Database, patient: Patient, sessions: Sequence[ClinicSession], *, days: int,
                   now: datetime) -> Progress:
    """The last `days` local days of one patient, with the insight the list shows."""
    today = local_date(now, patient.timezone)
    first = today - timedelta(days=days - 1)
    since = min(first, today - timedelta(days=STREAK_LOOKBACK_DAYS))
    record = (await _load(db, [patient], since, since))[patient.id]
    insight = assess(record, now)
    window = day_tallies(record, first, today, now)
    rate, _, _ = adherence(window)
    in_window = [s for s in sessions if first.isoformat() <= s.date <= today.isoformat()]
    ratings = [r for r in record.ratings if r.date >= first.isoformat()]
    words = summary(insight, record.ratings, sessions, today, joined=patient.joined_at is not None)
    return Progress(first, today, window, rate, insight, ratings, in_window, words)


def when_text(moment: str | None, tz: str, now: datetime) -> str:
    """A past moment as the patient's calendar sees it: today, yesterday, 3 days ago, 2 Feb."""
    if moment is None:
        return "never"
    today = local_date(now, tz)
    day = local_date(parse_iso(moment), tz)
    days = (today - day).days
    if days <= 0:
        return "today"
    if days == 1:
        return "yesterday"
    return f"{days} days ago" if days < 14 else short_date(day, today)
