"""Practitioner insight: adherence, pain trend, attention flags and a summary in words.

Everything here stands on server/schedule.py: a slot is scheduled exactly when
schedule.slot_times says so, and a day's counts come from schedule.tally. The rules
(windows, thresholds, edge cases) are described for people in docs/adherence.md; keep the
two in step. The loaders read a whole practitioner's list in a few queries (never one per
patient); assess() and the other rule functions are pure and take the clock as an argument.
"""

from __future__ import annotations

import json
import statistics
from collections import OrderedDict, defaultdict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from functools import lru_cache, partial
from operator import itemgetter
from typing import Any, NamedTuple

from .clinic_sessions import ClinicSession
from .clock import iso, local_date, parse_iso, zone
from .completions import STREAK_LOOKBACK_DAYS
from .db import Database, Row
from .patients import Patient
from .schedule import DayTally, Plan, streak, tally

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
    slot_rows: list[tuple[int, str, str]] = field(default_factory=list)  # what `done` was built from

    def add_completion(self, assignment_id: int, day: str, slot: str | None, completed_at: str,
                       before: int | None, after: int | None) -> None:
        if slot is not None:
            self.done[(assignment_id, day)].add(slot)
            self.slot_rows.append((assignment_id, day, slot))
        if before is not None or after is not None:
            self.ratings.append(Rating(completed_at, day, before, after))
        if self.last_completed_at is None or completed_at > self.last_completed_at:
            self.last_completed_at = completed_at


@dataclass(frozen=True)
class Insight:
    """The answer to "does this patient need a call?" and the evidence behind it."""

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
    streak_may_continue: bool = False  # unbroken over every loaded day: older days may add to it

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

# schedule.tally is pure, and a practitioner's list asks it the same questions all day: the
# past days of a patient change only with a new completion, assignment or join date. So the
# list remembers answers by their complete inputs; a changed input is simply another key.
TALLY_CACHE_SIZE = 4096
_tallies: OrderedDict[Hashable, tuple[DayTally, ...]] = OrderedDict()


def remembered_tally(plans: Sequence[Plan], done: dict[tuple[int, str], set[str]], first: date, last: date,
                     tz: str, *, not_before: date | None, done_from: frozenset[tuple[int, str, str]]) -> list[DayTally]:
    """schedule.tally, answered from memory when every input is the same as before.

    done_from is the set of (assignment, day, slot) rows `done` was built from: it determines
    `done`, and is far cheaper to compare.
    """
    key = (tuple(plans), done_from, first, last, tz, not_before)
    found = _tallies.get(key)
    if found is None:
        found = _tallies[key] = tuple(tally(plans, done, first, last, tz, not_before=not_before))
        if len(_tallies) > TALLY_CACHE_SIZE:
            _tallies.popitem(last=False)
    else:
        _tallies.move_to_end(key)
    return list(found)


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
    if len(recent) < PAIN_MIN_RATINGS or len(earlier) < PAIN_MIN_RATINGS:
        return None, (statistics.fmean(recent) if recent else None), None
    now_mean, before_mean = statistics.fmean(recent), statistics.fmean(earlier)
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


def streak_may_continue(record: Record, days: list[DayTally], today: date) -> bool:
    """Tell whether the streak runs unbroken over every loaded day, so older days may extend it."""
    if any(d.scheduled and d.completed < d.scheduled and d.date != today.isoformat() for d in days):
        return False
    since = record.since.isoformat()
    return not_before(record, today) < record.since and any(p.start_date < since for p in record.plans)


def assess(record: Record, now: datetime) -> Insight:
    """Adherence, streak, pain trend and flags of one patient as of now."""
    today = local_date(now, record.timezone)
    first = today - timedelta(days=WINDOW_DAYS - 1)
    start = not_before(record, today)
    # The patient app's streak looks back STREAK_LOOKBACK_DAYS days: never further, so the numbers agree.
    history = min(first, max(record.since, today - timedelta(days=STREAK_LOOKBACK_DAYS)))
    plans = [p for p in record.plans if p.end_date is None or p.end_date >= history.isoformat()]
    plain = remembered_tally(plans, record.done, history, today, record.timezone, not_before=start,
                             done_from=frozenset(record.slot_rows))
    # The streak is the patient app's number (completions.today): whole days, today once complete.
    streak_days = streak(plain, today.isoformat())
    days = plain[-WINDOW_DAYS:]
    days[-1] = _due_so_far(record, days[-1], today, now)
    rate_7d, done_7d, due_7d = adherence(days[-RECENT_DAYS:])
    rate_28d, _, _ = adherence(days)
    rate_before, _, due_before = adherence(days[:-RECENT_DAYS])

    joined = record.joined_at is not None
    last_day = local_date(parse_iso(record.last_completed_at), record.timezone) if record.last_completed_at else None
    quiet_since = last_day or (start if joined else None)
    _, _, due_lately = adherence(days[-INACTIVE_DAYS:])
    trend, pain_recent, pain_earlier = pain_trend(record.ratings, today)
    unsafe = safety_flag(record.ratings, now)

    flags = []
    if unsafe is not None:
        flags.append("safety")
    if joined and quiet_since is not None and (today - quiet_since).days >= INACTIVE_DAYS and due_lately:
        flags.append("inactive")
    if trend == "up":
        flags.append("pain_rising")
    if (rate_7d is not None and rate_before is not None and due_7d >= FALLING_MIN_SLOTS
            and due_before >= FALLING_MIN_SLOTS and rate_before - rate_7d >= FALLING_DROP - 1e-9):
        flags.append("adherence_falling")
    if not joined and any(p.end_date is None or p.end_date >= today.isoformat() for p in record.plans):
        flags.append("not_joined")
    return Insight(
        adherence_7d=rate_7d,
        adherence_28d=rate_28d,
        streak_days=streak_days,
        last_completed_at=record.last_completed_at,
        pain_trend=trend,
        flags=tuple(flags),
        reminders_enabled=record.reminders,
        done_7d=done_7d,
        scheduled_7d=due_7d,
        adherence_before=rate_before,
        days_since_last=(today - last_day).days if last_day else None,
        pain_recent=pain_recent,
        pain_earlier=pain_earlier,
        safety=unsafe,
        streak_may_continue=bool(streak_days) and streak_may_continue(record, plain, today),
    )


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

def _plan(row: Row) -> Plan:
    return Plan(row["id"], row["start_date"], row["end_date"], row["days"], tuple(json.loads(row["times"])),
                row["ended_at"])


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
            records[row["patient_id"]].plans.append(_plan(row))
        # The hot loop of the list (thousands of rows): plain unpacking, no per-row method calls.
        for pid, aid, day, slot, completed_at, before, after in await db.fetchall(
            f"{_COMPLETION_SQL} WHERE patient_id IN ({marks}) AND local_date >= ?", (*chunk, since.isoformat())
        ):
            record = records[pid]
            if slot is not None:
                record.done[(aid, day)].add(slot)
                record.slot_rows.append((aid, day, slot))
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
    """Insight for each of the patients, read in a few queries whatever their number."""
    if not found:
        return {}
    # Local dates are at most a day away from UTC's: one UTC bound covers every zone's window.
    utc_today = now.date()
    since = utc_today - timedelta(days=WINDOW_DAYS + 1)
    streak_since = utc_today - timedelta(days=STREAK_LOOKBACK_DAYS + 1)
    records = await _load(db, found, since, streak_since)
    for r in records.values():
        r.since = local_date(now, r.timezone) - timedelta(days=WINDOW_DAYS - 1)  # tally just the window
    result = {pid: assess(r, now) for pid, r in records.items()}
    # A streak unbroken over the whole window may go back further: load older days for those only.
    longer = [pid for pid, insight in result.items() if insight.streak_may_continue]
    for chunk in _chunks(longer):
        for row in await db.fetchall(
            f"{_COMPLETION_SQL} WHERE patient_id IN ({_marks(chunk)}) AND local_date >= ? AND local_date < ?"
            " AND slot_time IS NOT NULL",
            (*chunk, streak_since.isoformat(), since.isoformat()),
        ):
            records[row["patient_id"]].add_completion(row["assignment_id"], row["local_date"], row["slot_time"],
                                                      row["completed_at"], None, None)
        for pid in chunk:
            records[pid].since = local_date(now, records[pid].timezone) - timedelta(days=STREAK_LOOKBACK_DAYS)
            result[pid] = replace(result[pid], streak_days=assess(records[pid], now).streak_days)
    return result


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
