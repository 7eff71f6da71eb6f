"""Exports: a patient's completions as CSV, and their homework times as iCalendar (RFC 5545).

The .ics text is written here by hand (CRLF lines folded at 75 octets, escaped text, a
VTIMEZONE built from the zone database) so the server needs no calendar library.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from urllib.parse import urlsplit

from . import assignments
from .assignments import Assignment
from .clock import local_date, parse_iso, zone
from .db import Database
from .schedule import Plan, local_moment, slot_times

# --- CSV ------------------------------------------------------------------------------------

CSV_COLUMNS = ("date", "time", "slot", "routine", "pain_before", "pain_after", "difficulty", "note")
# A cell starting with one of these is a formula to Excel, LibreOffice and Google Sheets.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> object:
    """Neutralise spreadsheet formulas in text cells by prefixing a quote (OWASP's advice)."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


async def completions_csv(db: Database, *, patient_id: int, timezone: str) -> str:
    """Every completion of the patient, oldest first, one row each, as CSV text."""
    rows = await db.fetchall(
        "SELECT c.local_date, c.slot_time, c.completed_at, c.pain_before, c.pain_after, c.difficulty, c.note,"
        " a.routine_name FROM completions c JOIN assignments a ON a.id = c.assignment_id"
        " WHERE c.patient_id = ? ORDER BY c.completed_at, c.id",
        (patient_id,),
    )
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    tz = zone(timezone)
    for r in rows:
        done = parse_iso(r["completed_at"]).astimezone(tz)
        writer.writerow([safe_cell(v) for v in (
            r["local_date"], done.strftime("%H:%M"), r["slot_time"] or "extra", r["routine_name"],
            r["pain_before"], r["pain_after"], r["difficulty"] or "", r["note"],
        )])
    # A byte order mark: Excel reads the file as UTF-8 only with it.
    return "\ufeff" + out.getvalue()


# --- iCalendar text -------------------------------------------------------------------------

PRODID = "-//Homework//Homework home exercise//EN"
SUMMARY = "Stretches"
DAY_CODES = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
KEEP_ENDED_DAYS = 28  # homework that ended this long ago leaves the feed
ZONE_YEARS_AHEAD = 2  # the VTIMEZONE spells out rules this far past the last year in use


def escape_text(value: str) -> str:
    """Escape a TEXT value (RFC 5545 3.3.11)."""
    return (value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
            .replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n"))


def fold(line: str) -> str:
    """Fold a content line into chunks of at most 75 octets, never inside a UTF-8 character."""
    data = line.encode()
    if len(data) <= 75:
        return line
    parts = []
    start, limit = 0, 75
    while start < len(data):
        end = min(start + limit, len(data))
        while end < len(data) and (data[end] & 0xC0) == 0x80:  # a continuation byte: back off
            end -= 1
        parts.append(data[start:end].decode())
        start, limit = end, 74  # later lines begin with a space, which counts
    return "\r\n ".join(parts)


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _local(moment: datetime) -> str:
    return moment.strftime("%Y%m%dT%H%M%S")


def _offset(delta: timedelta | None) -> str:
    seconds = int((delta or timedelta(0)).total_seconds())
    sign = "-" if seconds < 0 else "+"
    hours, rest = divmod(abs(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{sign}{hours:02d}{minutes:02d}" + (f"{secs:02d}" if secs else "")


@dataclass(frozen=True)
class _Transition:
    at: datetime  # UTC instant
    before: timedelta
    after: timedelta
    dst: bool
    name: str

    @property
    def onset(self) -> datetime:
        """The local wall time of the change, in the offset before it (VTIMEZONE's DTSTART)."""
        return (self.at + self.before).replace(tzinfo=None)


def _state(moment: datetime, tz: str) -> tuple[timedelta, bool, str]:
    local = moment.astimezone(zone(tz))
    # Only a positive DST is DAYLIGHT: Europe/Dublin's winter GMT is a negative DST in the database.
    return local.utcoffset() or timedelta(0), (local.dst() or timedelta(0)) > timedelta(0), local.tzname() or ""


def _transitions(tz: str, first_year: int, last_year: int) -> list[_Transition]:
    """Every change of offset or name between the two years, to the second, from the zone database."""
    step = timedelta(hours=12)
    moment = datetime(first_year, 1, 1, tzinfo=UTC)
    end = datetime(last_year + 1, 1, 1, tzinfo=UTC)
    state = _state(moment, tz)
    found = []
    while moment < end:
        later = moment + step
        new = _state(later, tz)
        if new != state:
            lo, hi = moment, later  # state at lo is old, at hi new: bisect to the second
            while hi - lo > timedelta(seconds=1):
                mid = lo + (hi - lo) / 2
                if _state(mid, tz) == state:
                    lo = mid
                else:
                    hi = mid
            at = hi.replace(microsecond=0)
            found.append(_Transition(at, state[0], new[0], new[1], new[2]))
            state = new
        moment = later
    return found


def _nth_options(day: date) -> set[int]:
    """Which BYDAY ordinals name this day in its month: its week number, and -1 if it is the last."""
    options = {(day.day - 1) // 7 + 1}
    if (day + timedelta(days=7)).month != day.month:
        options.add(-1)
    return options


def _continues(run: list[_Transition], t: _Transition) -> bool:
    """Tell whether t is next year's instance of the same yearly rule as the run."""
    last = run[-1]
    return (
        (last.before, last.after, last.dst, last.name) == (t.before, t.after, t.dst, t.name)
        and t.onset.year == last.onset.year + 1
        and (t.onset.month, t.onset.weekday(), t.onset.time()) == (last.onset.month, last.onset.weekday(), last.onset.time())
        and bool(set.intersection(*(_nth_options(x.onset.date()) for x in run), _nth_options(t.onset.date())))
    )


@lru_cache(maxsize=256)
def vtimezone(tz: str, first_year: int, last_year: int) -> tuple[str, ...]:
    """A VTIMEZONE for tz valid from first_year through last_year (and on, while the rules hold).

    Yearly changes on the same weekday rule ("last Sunday of March at 01:00") become one
    observance with a YEARLY RRULE, open-ended when it still holds in the last year; the
    rest are single observances. The offset in force on 1 January of first_year opens it.
    """
    start = datetime(first_year, 1, 1, tzinfo=UTC)
    offset, dst, name = _state(start, tz)
    lines = ["BEGIN:VTIMEZONE", f"TZID:{tz}"]

    def observance(kind: bool, onset: datetime, before: timedelta, after: timedelta, tzname: str,
                   rule: str | None) -> None:
        part = "DAYLIGHT" if kind else "STANDARD"
        lines.extend([f"BEGIN:{part}", f"DTSTART:{_local(onset)}"])
        if rule:
            lines.append(f"RRULE:{rule}")
        lines.extend([f"TZOFFSETFROM:{_offset(before)}", f"TZOFFSETTO:{_offset(after)}"])
        if tzname:
            lines.append(f"TZNAME:{escape_text(tzname)}")
        lines.append(f"END:{part}")

    observance(dst, (start + offset).replace(tzinfo=None), offset, offset, name, None)
    runs: list[list[_Transition]] = []
    for t in _transitions(tz, first_year, last_year):
        run = next((r for r in reversed(runs) if _continues(r, t)), None)
        if run is None:
            runs.append([t])
        else:
            run.append(t)
    for run in runs:
        first = run[0]
        rule = None
        if len(run) > 1:
            common = set.intersection(*(_nth_options(x.onset.date()) for x in run))
            nth = -1 if -1 in common else min(common)
            rule = f"FREQ=YEARLY;BYMONTH={first.onset.month};BYDAY={nth}{DAY_CODES[first.onset.weekday()]}"
            if run[-1].onset.year < last_year:
                rule += f";UNTIL={_utc(run[-1].at)}"
        observance(first.dst, first.onset, first.before, first.after, first.name, rule)
    lines.append("END:VTIMEZONE")
    return tuple(lines)


# A slot time inside a spring-forward gap (02:30 on the night clocks jump from 02:00 to 03:00)
# is due at 03:00 by schedule.local_moment, while RFC 5545 reads the same DTSTART as 03:30;
# clinics do not book stretches at that hour, so the calendar keeps the plain local time.


def _first_slot_day(plan: Plan, tz: str, time: str) -> date | None:
    """The first local date with a slot at `time` (RRULE needs DTSTART to be an occurrence)."""
    day = date.fromisoformat(plan.start_date)
    for _ in range(7):
        if plan.end_date is not None and day.isoformat() > plan.end_date:
            return None
        if time in slot_times(plan, day, tz):
            return day
        day += timedelta(days=1)
    return None


def _until(plan: Plan, tz: str) -> datetime | None:
    """The last moment a slot may start: the end of end_date, or just before an early end."""
    limits = []
    if plan.end_date is not None:
        limits.append(local_moment(date.fromisoformat(plan.end_date), "23:59", tz) + timedelta(seconds=59))
    if plan.ended_at is not None:
        limits.append(parse_iso(plan.ended_at) - timedelta(seconds=1))  # slot_times: a slot must start before ended_at
    return min(limits) if limits else None


def calendar_text(found: list[Assignment], *, timezone: str, base_url: str, now: datetime) -> str:
    """The patient's homework as iCalendar: one weekly recurring event per assignment and time."""
    host = urlsplit(base_url).hostname or "homework"
    events: list[str] = []
    years: list[int] = [now.year]
    for a in found:
        plan = a.plan
        days = ",".join(code for i, code in enumerate(DAY_CODES) if a.days_mask & (1 << i))
        until = _until(plan, timezone)
        url = f"{base_url.rstrip('/')}/app/routine/{a.id}"
        stamp = parse_iso(a.ended_at or a.created_at)
        description = (f"{a.routine_name}: {a.item_count} exercise{'s' if a.item_count != 1 else ''},"
                       f" about {a.estimated_minutes} min.\nOpen in the app: {url}")
        for time in a.times:
            link = f"{url}?time={time}"
            first = _first_slot_day(plan, timezone, time)
            if first is None or (until is not None and local_moment(first, time, timezone) > until):
                continue
            years.append(first.year)
            rule = f"FREQ=WEEKLY;WKST=MO;BYDAY={days}"
            if until is not None:
                rule += f";UNTIL={_utc(until)}"
                years.append(until.year)
            events.extend([
                "BEGIN:VEVENT",
                f"UID:assignment-{a.id}-{time.replace(':', '')}@{host}",
                f"DTSTAMP:{_utc(stamp)}",
                f"LAST-MODIFIED:{_utc(stamp)}",
                f"SEQUENCE:{1 if a.ended_at else 0}",
                f"DTSTART;TZID={timezone}:{first:%Y%m%d}T{time.replace(':', '')}00",
                f"DURATION:PT{max(5, a.estimated_minutes)}M",
                f"RRULE:{rule}",
                f"SUMMARY:{SUMMARY}",
                f"DESCRIPTION:{escape_text(description)}",
                f"URL;VALUE=URI:{link}",
                "TRANSP:TRANSPARENT",
                "END:VEVENT",
            ])
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        f"PRODID:{PRODID}",
        "CALSCALE:GREGORIAN",
        f"X-WR-CALNAME:{SUMMARY}",
        f"X-WR-TIMEZONE:{timezone}",
        "REFRESH-INTERVAL;VALUE=DURATION:PT12H",
        "X-PUBLISHED-TTL:PT12H",
    ]
    if events:
        # From a year early: the opening observance must begin before the first event.
        lines.extend(vtimezone(timezone, min(years) - 1, max(years) + ZONE_YEARS_AHEAD))
    lines.extend(events)
    lines.append("END:VCALENDAR")
    return "".join(fold(line) + "\r\n" for line in lines)


async def calendar_for(db: Database, *, patient_id: int, timezone: str, base_url: str, now: datetime) -> str:
    """The patient's calendar: current homework and homework that ended in the last four weeks."""
    since = local_date(now, timezone) - timedelta(days=KEEP_ENDED_DAYS)
    rows = await db.fetchall(
        f"SELECT {assignments.COLUMNS} FROM assignments WHERE patient_id = ? AND (end_date IS NULL OR end_date >= ?)"
        " ORDER BY start_date, id",
        (patient_id, since.isoformat()),
    )
    return calendar_text([assignments.from_row(r) for r in rows], timezone=timezone, base_url=base_url, now=now)
