"""Server-side SVG charts, pure: the 28-day homework calendar and pain over time.

The site's Content-Security-Policy allows no inline style and no script, so the SVG uses
presentation attributes for geometry and CSS classes (static/css/site.css) for colour;
the page pairs each chart with a table that says the same in text.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from datetime import date, timedelta
from xml.sax.saxutils import escape, quoteattr

from .clinic_sessions import ClinicSession
from .insight import Rating, short_date
from .schedule import DayTally

WEEKDAYS = "MTWTFSS"
GAP_DAYS = 7  # a pain line breaks across a longer gap without ratings

# Calendar geometry (user units).
CELL = 40
PAD = 4
HEAD = 18

# Pain chart geometry.
WIDTH, HEIGHT = 600, 240
LEFT, RIGHT, TOP, BOTTOM = 30, 10, 34, 26


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def day_status(day: DayTally, today: str = "") -> str:
    """A day's class: none (nothing due), all, some or missed; today still open is "open"."""
    if day.scheduled == 0:
        return "none"
    if day.completed >= day.scheduled:
        return "all"
    if day.date == today:
        return "open"
    return "some" if day.completed else "missed"


def day_label(day: DayTally) -> str:
    d = date.fromisoformat(day.date)
    return f"{d:%a} {short_date(d)}"


def day_done(day: DayTally, today: str = "") -> str:
    if day.scheduled == 0:
        return "nothing scheduled"
    return f"{day.completed} of {day.scheduled} done" + (" so far today" if day.date == today else "")


def day_text(day: DayTally, today: str = "") -> str:
    return f"{day_label(day)}: {day_done(day, today)}"


def calendar(days: Sequence[DayTally], *, today: str, label: str) -> str:
    """A month-like grid, Monday first, one cell per day coloured by slots done out of due."""
    if not days:
        return ""
    first = date.fromisoformat(days[0].date)
    offset = first.weekday()
    rows = (offset + len(days) + 6) // 7
    width = 7 * (CELL + PAD) - PAD
    height = HEAD + rows * (CELL + PAD) - PAD
    out = [
        (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart calendar" viewBox="0 0 {width} {height}"'
         f' width="{width}" height="{height}" role="img" aria-label={quoteattr(label)}>')
    ]
    for col, letter in enumerate(WEEKDAYS):
        x = col * (CELL + PAD) + CELL / 2
        out.append(f'<text class="axis" x="{_num(x)}" y="12" text-anchor="middle">{letter}</text>')
    for i, day in enumerate(days):
        slot = offset + i
        x, y = (slot % 7) * (CELL + PAD), HEAD + (slot // 7) * (CELL + PAD)
        status = day_status(day, today)
        classes = f"day day-{status}" + (" day-today" if day.date == today else "")
        d = date.fromisoformat(day.date)
        out.append(f'<g class="{classes}"><title>{escape(day_text(day, today))}</title>')
        out.append(f'<rect x="{x}" y="{y}" width="{CELL}" height="{CELL}" rx="6"/>')
        number_y = y + (16 if day.scheduled else 25)
        out.append(f'<text class="dn" x="{x + CELL / 2:g}" y="{number_y}" text-anchor="middle">{d.day}</text>')
        if day.scheduled:
            out.append(f'<text class="df" x="{x + CELL / 2:g}" y="{y + 32}" text-anchor="middle">'
                       f'{day.completed}/{day.scheduled}</text>')
        out.append("</g>")
    out.append("</svg>")
    return "".join(out)


def _ticks(first: date, last: date) -> list[date]:
    """Weekly ticks (Mondays) for short spans, month starts for long ones."""
    span = (last - first).days
    if span <= 70:
        day = first + timedelta(days=(7 - first.weekday()) % 7)
        step = 7 if span <= 35 else 14
        return [day + timedelta(days=n) for n in range(0, span + 1, step) if day + timedelta(days=n) <= last]
    ticks = []
    month = date(first.year, first.month, 1)
    while month <= last:
        if month >= first:
            ticks.append(month)
        month = date(month.year + month.month // 12, month.month % 12 + 1, 1)
    if len(ticks) > 8:
        ticks = ticks[::2]
    return ticks


def _daily_means(ratings: Sequence[Rating], which: str) -> list[tuple[date, float]]:
    by_day: dict[str, list[int]] = defaultdict(list)
    for r in ratings:
        value = getattr(r, which)
        if value is not None:
            by_day[r.date].append(value)
    return [(date.fromisoformat(d), statistics.fmean(v)) for d, v in sorted(by_day.items())]


def pain(ratings: Sequence[Rating], sessions: Sequence[ClinicSession], *, first: date, last: date,
         label: str) -> str:
    """Pain before and after stretching (0-10) per day, with a marked line at each clinic session."""
    days = (last - first).days + 1
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x_of(day: date) -> float:
        return LEFT + ((day - first).days + 0.5) * plot_w / days

    def y_of(value: float) -> float:
        return TOP + plot_h - value * plot_h / 10

    out = [
        (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart pain" viewBox="0 0 {WIDTH} {HEIGHT}"'
         f' width="{WIDTH}" height="{HEIGHT}" role="img" aria-label={quoteattr(label)}>')
    ]
    out.append(f'<rect class="danger-zone" x="{LEFT}" y="{_num(y_of(10))}" width="{plot_w}"'
               f' height="{_num(y_of(8) - y_of(10))}"/>')
    for value in range(0, 11, 2):
        y = _num(y_of(value))
        out.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y}" y2="{y}"/>')
        out.append(f'<text class="axis" x="{LEFT - 6}" y="{y}" dy="4" text-anchor="end">{value}</text>')
    for tick in _ticks(first, last):
        x = _num(x_of(tick))
        out.append(f'<line class="tick" x1="{x}" x2="{x}" y1="{TOP + plot_h}" y2="{TOP + plot_h + 4}"/>')
        out.append(f'<text class="axis" x="{x}" y="{HEIGHT - 6}" text-anchor="middle">{short_date(tick)}</text>')

    for n, s in enumerate(sorted(sessions, key=lambda s: s.date), start=1):
        day = date.fromisoformat(s.date)
        if not first <= day <= last:
            continue
        x = _num(x_of(day))
        title = f"Clinic session {n}, {short_date(day)}" + (f": {s.note}" if s.note else "")
        out.append(f'<g class="session"><title>{escape(title)}</title>'
                   f'<line x1="{x}" x2="{x}" y1="{TOP - 4}" y2="{TOP + plot_h}"/>'
                   f'<path d="M{x} {TOP - 4}l-6 -10h12z"/>'
                   f'<text x="{x}" y="{TOP - 18}" text-anchor="middle">S{n}</text></g>')

    for which in ("before", "after"):
        points = _daily_means(ratings, which)
        runs: list[list[tuple[date, float]]] = []
        for point in points:
            if runs and (point[0] - runs[-1][-1][0]).days <= GAP_DAYS:
                runs[-1].append(point)
            else:
                runs.append([point])
        for run in runs:
            if len(run) > 1:
                coords = " ".join(f"{_num(x_of(d))},{_num(y_of(v))}" for d, v in run)
                out.append(f'<polyline class="line-{which}" points="{coords}"/>')
        # A dot for every rating (a spike stays visible), the line through each day's mean.
        radius = 3.5 if which == "after" else 3
        for r in ratings:
            value = getattr(r, which)
            if value is None:
                continue
            d = date.fromisoformat(r.date)
            out.append(f'<circle class="dot-{which}" cx="{_num(x_of(d))}" cy="{_num(y_of(value))}" r="{radius}">'
                       f'<title>{short_date(d)}: {value} {which} stretching</title></circle>')
    if not ratings:
        out.append(f'<text class="empty" x="{LEFT + plot_w / 2:g}" y="{TOP + plot_h / 2:g}" text-anchor="middle">'
                   "No pain ratings yet</text>")
    out.append("</svg>")
    return "".join(out)


def pain_table(ratings: Sequence[Rating], sessions: Sequence[ClinicSession], *, first: date,
               last: date) -> list[dict[str, str]]:
    """The pain chart as rows of text, one per day with ratings or a session, oldest first."""
    before = dict(_daily_means(ratings, "before"))
    after = dict(_daily_means(ratings, "after"))
    notes: dict[date, list[str]] = defaultdict(list)
    ordered = sorted(sessions, key=lambda s: s.date)
    for n, s in enumerate(ordered, start=1):  # numbered like the chart: S1 is the first session ever
        if first <= date.fromisoformat(s.date) <= last:
            notes[date.fromisoformat(s.date)].append(f"S{n}" + (f": {s.note}" if s.note else ""))
    rows = []
    for day in sorted(set(before) | set(after) | set(notes)):
        rows.append({
            "date": f"{day:%a} {short_date(day)}",
            "before": _num(before[day]) if day in before else "",
            "after": _num(after[day]) if day in after else "",
            "session": "; ".join(notes.get(day, [])),
        })
    return rows
