"""Slot arithmetic, pure: which routines are due on a local date, and what counts as done.

A slot is one (assignment, local date, local time). It is scheduled when the date is
inside the assignment's start and end dates, on one of its days of the week, and (for an
assignment ended early) not after the moment it was ended. This module is the one
definition of "scheduled" that today's list, the streak, history and adherence share.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import NamedTuple
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

from .clock import parse_iso, zone


class Plan(NamedTuple):
    """The scheduling facts of one assignment.

    A NamedTuple, not a dataclass: the practitioner's list makes hundreds per view, at a
    third of the cost.
    """

    id: int
    start_date: str
    end_date: str | None
    days_mask: int
    times: tuple[str, ...]
    ended_at: str | None = None


def slot_times(plan: Plan, day: date, tz: str) -> list[str]:
    """The local times at which plan has a slot on day (empty when it does not run that day)."""
    text = day.isoformat()
    if text < plan.start_date or (plan.end_date is not None and text > plan.end_date):
        return []
    if not plan.days_mask & (1 << day.weekday()):
        return []
    if plan.ended_at is None:
        return list(plan.times)
    ended, ended_day = _ended(plan.ended_at, tz)
    # Only the days around the end need each slot's exact instant: DST moves a local time
    # forward by at most a few hours, so a slot two days before the end is surely before it.
    if day <= ended_day - timedelta(days=2):
        return list(plan.times)
    return [t for t in plan.times if local_moment(day, t, tz) < ended]


@lru_cache(maxsize=4096)
def _ended(ended_at: str, tz: str) -> tuple[datetime, date]:
    ended = parse_iso(ended_at)
    return ended, ended.astimezone(zone(tz)).date()


@lru_cache(maxsize=4096)
def local_moment(day: date, hhmm: str, tz: str) -> datetime:
    """The instant of a local date and time in zone tz (memoised: the scheduler asks the same
    few dates, times and zones for thousands of assignments in one pass).

    A time skipped by a DST change (02:30 on a spring-forward night) becomes the first
    valid minute after it (03:00); a time that happens twice (fall back) is the first one.
    """
    z = zone(tz)
    naive = datetime(day.year, day.month, day.day, int(hhmm[:2]), int(hhmm[3:]))
    for step in range(0, 181):
        candidate = naive + timedelta(minutes=step)
        aware = candidate.replace(tzinfo=z)  # fold=0: the first of two repeated times
        # A time that does not exist does not survive a round trip through UTC.
        if aware.astimezone(UTC).astimezone(z).replace(tzinfo=None) == candidate:
            return aware
    return naive.replace(tzinfo=z)


def nearest_open_slot(times: Iterable[str], done: Iterable[str | None], at: str) -> str | None:
    """The scheduled time nearest to `at` that has not been done yet (earlier wins a tie)."""
    taken = set(done)
    open_times = [t for t in times if t not in taken]
    if not open_times:
        return None
    minutes = _minutes(at)
    return min(open_times, key=lambda t: (abs(_minutes(t) - minutes), _minutes(t)))


def _minutes(hhmm: str) -> int:
    return int(hhmm[:2]) * 60 + int(hhmm[3:])


class DayTally(NamedTuple):
    # A NamedTuple, not a dataclass: thousands are made per list view, at a fifth of the cost.
    date: str
    scheduled: int
    completed: int


def tally(
    plans: Iterable[Plan],
    done: Mapping[tuple[int, str], set[str]],
    first: date,
    last: date,
    tz: str,
    *,
    not_before: date | None = None,
) -> list[DayTally]:
    """Per local day from first to last: slots scheduled and slots done (each slot counts once).

    Days before not_before (the day the patient joined) schedule nothing, so a patient is
    never counted as behind for homework they could not yet see.
    """
    prepared = _prepare(plans)
    days = []
    day = first
    while day <= last:
        text = day.isoformat()
        if not_before is not None and day < not_before:
            days.append(DayTally(text, 0, 0))
        else:
            days.append(DayTally(text, *_count_day(prepared, done, day, text, tz)))
        day += _ONE_DAY
    return days


def walk_streak(
    plans: Iterable[Plan],
    done: Mapping[tuple[int, str], set[str]],
    first: date,
    last: date,
    tz: str,
    *,
    not_before: date | None = None,
) -> tuple[int, bool]:
    """(streak(tally(...), last), walking back from last so only the days the streak reaches are counted,
    and whether it ran unbroken back to first: then days before first might extend it)."""
    prepared = _prepare(plans)
    earliest = min((start for _, start, _ in prepared), default=last + _ONE_DAY)
    floor = max(first, earliest, not_before or first)
    count = 0
    day = last
    while day >= floor:
        scheduled, completed = _count_day(prepared, done, day, day.isoformat(), tz)
        if scheduled:
            if completed >= scheduled:
                count += 1
            elif day != last:
                return count, False
        day -= _ONE_DAY
    return count, floor == first


_ONE_DAY = timedelta(days=1)
_Prepared = list[tuple[Plan, date, date]]


def _prepare(plans: Iterable[Plan]) -> _Prepared:
    return [(p, date.fromisoformat(p.start_date), date.fromisoformat(p.end_date) if p.end_date else date.max)
            for p in plans]


def _count_day(prepared: _Prepared, done: Mapping[tuple[int, str], set[str]], day: date, text: str,
               tz: str) -> tuple[int, int]:
    """(scheduled, completed) slots of one local day: the hot loop of every adherence view."""
    scheduled = completed = 0
    bit = 1 << day.weekday()
    for plan, start, end in prepared:
        if day < start or day > end or not plan.days_mask & bit:
            continue
        times = plan.times if plan.ended_at is None else slot_times(plan, day, tz)
        scheduled += len(times)
        got = done.get((plan.id, text))
        if got:
            completed += sum(1 for t in times if t in got)
    return scheduled, completed


def streak(days: list[DayTally], today: str) -> int:
    """Consecutive days, newest first, whose every slot was done; days with none scheduled neither break nor count.

    Today counts once it is complete; while it is still open it does not break the streak.
    """
    count = 0
    for tallied in reversed(days):
        if tallied.scheduled == 0:
            continue
        if tallied.completed >= tallied.scheduled:
            count += 1
        elif tallied.date == today:
            continue
        else:
            break
    return count


# How far ahead to look for an assignment's next slot before giving up (an assignment
# starting a year from now is planned when it comes within reach).
HORIZON_DAYS = 370


def iter_slots(plan: Plan, tz: str, first_day: date) -> Iterator[tuple[date, str, datetime]]:
    """Yield (local date, local time, UTC-aware moment) of each slot from first_day on, in local order."""
    day = max(first_day, date.fromisoformat(plan.start_date))
    last = first_day + timedelta(days=HORIZON_DAYS)
    if plan.end_date is not None:
        last = min(last, date.fromisoformat(plan.end_date))
    while day <= last:
        for t in slot_times(plan, day, tz):
            yield day, t, local_moment(day, t, tz)
        day += timedelta(days=1)


def first_slot_from(plan: Plan, tz: str, now: datetime) -> tuple[date, str, datetime] | None:
    """The first slot at or after now."""
    start = now.astimezone(zone(tz)).date() - timedelta(days=1)
    return next((s for s in iter_slots(plan, tz, start) if s[2] >= now), None)


def slot_after(plan: Plan, tz: str, day: date, hhmm: str) -> tuple[date, str, datetime] | None:
    """The slot that follows (day, hhmm) in local order."""
    return next((s for s in iter_slots(plan, tz, day) if (s[0], s[1]) > (day, hhmm)), None)


# --- counting slots without walking the days (the practitioner's list) ------------------------

END_OF_DAY = "24:00"  # sorts after every "HH:MM"


class Span(NamedTuple):
    """The slots of one plan as one range of local slot keys, ready to be counted.

    A slot (day, time) of the plan is scheduled exactly when time is one of times, the
    day's weekday is in days_mask, first <= day, and f"{day} {time}" <= f"{last_day}
    {last_time}". That is slot_times' rule with the end date and an early end folded into
    one key: local_moment never goes back as the key grows, so "starts before ended_at" is
    a prefix of the keys.
    """

    plan_id: int
    first: date
    last_day: date
    last_time: str  # the last scheduled time on last_day (END_OF_DAY: all of them)
    days_mask: int
    times: tuple[str, ...]


def span(plan: Plan, tz: str, *, not_before: date | None = None) -> Span:
    """The plan's slots from not_before on (the day the patient joined), as slot_times schedules them."""
    first = date.fromisoformat(plan.start_date)
    if not_before is not None and not_before > first:
        first = not_before
    last = date.fromisoformat(plan.end_date) if plan.end_date else date.max
    key = f"{last.isoformat()} {END_OF_DAY}"
    if plan.ended_at is not None:
        key = min(key, last_slot_before(plan.times, _ended(plan.ended_at, tz)[0], tz))
    return Span(plan.id, first, date.fromisoformat(key[:10]), key[11:], plan.days_mask, plan.times)


def last_slot_before(times: tuple[str, ...], moment: datetime, tz: str) -> str:
    """The greatest local slot key "YYYY-MM-DD HH:MM" (any day, a time of times) that slot_times keeps for a plan ended at moment."""
    ended_day = moment.astimezone(zone(tz)).date()
    # slot_times keeps every time of the days up to two before the end and checks the rest;
    # no local time two days after the end's local date comes before it.
    # The slots kept are a prefix of the keys: the first one kept, from the latest down, is the last.
    for offset in (1, 0, -1):
        day = ended_day + offset * _ONE_DAY
        for t in sorted(times, reverse=True):
            if local_moment(day, t, tz) < moment:
                return f"{day.isoformat()} {t}"
    return f"{(ended_day - 2 * _ONE_DAY).isoformat()} {END_OF_DAY}"


def slots_on(s: Span, day: date) -> int:
    """The span's slots on one local day."""
    if day < s.first or day > s.last_day or not s.days_mask & (1 << day.weekday()):
        return 0
    return len(s.times) if day < s.last_day else _times_until(s)


def _times_until(s: Span) -> int:
    return sum(1 for t in s.times if t <= s.last_time)


def slot_keys(s: Span, first: date, last: date) -> set[str]:
    """The span's slots on the local days first to last, as keys "YYYY-MM-DDHH:MM" (the date, then the time)."""
    keys = set()
    day = first if first > s.first else s.first
    last = min(last, s.last_day)
    bits = s.days_mask
    while day <= last:
        if bits & (1 << day.weekday()):
            text = day.isoformat()
            times = s.times if day < s.last_day else [t for t in s.times if t <= s.last_time]
            keys.update([text + t for t in times])
        day += _ONE_DAY
    return keys
