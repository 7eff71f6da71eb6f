"""Slot arithmetic: local moments across DST, the nearest open slot, tallies and streaks."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from server.schedule import DayTally, Plan, local_moment, nearest_open_slot, slot_times, streak, tally


@pytest.mark.parametrize(
    ("tz", "day", "hhmm", "utc"),
    [
        # Spring forward: 02:30 does not exist; the first valid minute after it is 03:00.
        ("America/New_York", date(2026, 3, 8), "02:30", datetime(2026, 3, 8, 7, 0, tzinfo=UTC)),
        ("Europe/Berlin", date(2026, 3, 29), "02:15", datetime(2026, 3, 29, 1, 0, tzinfo=UTC)),
        # Fall back: 01:30 happens twice; the first one counts.
        ("America/New_York", date(2026, 11, 1), "01:30", datetime(2026, 11, 1, 5, 30, tzinfo=UTC)),
        ("Europe/Berlin", date(2026, 10, 25), "02:30", datetime(2026, 10, 25, 0, 30, tzinfo=UTC)),
        # Half-hour zones.
        ("Asia/Kolkata", date(2026, 3, 2), "08:00", datetime(2026, 3, 2, 2, 30, tzinfo=UTC)),
        ("Australia/Adelaide", date(2026, 4, 5), "02:30", datetime(2026, 4, 4, 16, 0, tzinfo=UTC)),
        ("Australia/Adelaide", date(2026, 10, 4), "02:15", datetime(2026, 10, 3, 16, 30, tzinfo=UTC)),
        # An ordinary day.
        ("Europe/London", date(2026, 7, 1), "19:30", datetime(2026, 7, 1, 18, 30, tzinfo=UTC)),
    ],
)
def test_local_moment(tz: str, day: date, hhmm: str, utc: datetime) -> None:
    assert local_moment(day, hhmm, tz).astimezone(UTC) == utc


def test_local_moment_is_computed_once_per_date_time_and_zone() -> None:
    local_moment.cache_clear()
    first = local_moment(date(2026, 3, 8), "02:30", "America/New_York")  # skipped by DST
    assert local_moment(date(2026, 3, 8), "02:30", "America/New_York") is first
    assert local_moment.cache_info().hits == 1
    assert local_moment(date(2026, 3, 8), "02:30", "Europe/Berlin") != first
    assert first.astimezone(UTC) == datetime(2026, 3, 8, 7, 0, tzinfo=UTC)  # 03:00 EDT


def test_slot_times_respect_dates_days_and_early_end() -> None:
    plan = Plan(1, "2026-03-02", "2026-03-10", 0b0000101, ("08:00", "19:30"))  # Mon, Wed
    assert slot_times(plan, date(2026, 3, 2), "Europe/London") == ["08:00", "19:30"]
    assert slot_times(plan, date(2026, 3, 3), "Europe/London") == []  # Tuesday
    assert slot_times(plan, date(2026, 3, 4), "Europe/London") == ["08:00", "19:30"]
    assert slot_times(plan, date(2026, 2, 23), "Europe/London") == []  # before the start
    assert slot_times(plan, date(2026, 3, 16), "Europe/London") == []  # after the end
    ended = Plan(1, "2026-03-02", "2026-03-04", 0b0000101, ("08:00", "19:30"), ended_at="2026-03-04T12:00:00Z")
    assert slot_times(ended, date(2026, 3, 4), "Europe/London") == ["08:00"]


def test_nearest_open_slot() -> None:
    times = ["08:00", "13:00", "19:30"]
    assert nearest_open_slot(times, [], "07:00") == "08:00"
    assert nearest_open_slot(times, [], "16:30") == "19:30"
    assert nearest_open_slot(times, [], "16:15") == "13:00"  # equally far: the earlier
    assert nearest_open_slot(times, [], "10:30") == "08:00"  # a tie goes to the earlier slot
    assert nearest_open_slot(times, ["08:00"], "07:00") == "13:00"
    assert nearest_open_slot(times, times, "12:00") is None
    assert nearest_open_slot([], [], "12:00") is None


def test_tally_counts_each_slot_once_and_skips_days_before_joining() -> None:
    plan = Plan(7, "2026-03-01", None, 127, ("08:00", "19:30"))
    done = {(7, "2026-03-02"): {"08:00"}, (7, "2026-03-03"): {"08:00", "19:30"}}
    days = tally([plan], done, date(2026, 3, 1), date(2026, 3, 3), "Europe/London", not_before=date(2026, 3, 2))
    assert days == [DayTally("2026-03-01", 0, 0), DayTally("2026-03-02", 2, 1), DayTally("2026-03-03", 2, 2)]


def test_streak() -> None:
    d = DayTally
    assert streak([d("1", 2, 2), d("2", 2, 2), d("3", 2, 1)], "3") == 2  # today still open
    assert streak([d("1", 2, 2), d("2", 2, 1), d("3", 2, 2)], "3") == 1  # yesterday broke it
    assert streak([d("1", 2, 2), d("2", 0, 0), d("3", 1, 1)], "3") == 2  # a rest day neither breaks nor counts
    assert streak([d("1", 1, 0), d("2", 1, 0)], "2") == 0
    assert streak([], "2") == 0


def test_walked_streak_agrees_with_streak_of_tally() -> None:
    import random

    rng = random.Random(7)
    for _ in range(300):
        plans = [Plan(i, f"2026-02-{rng.randint(1, 20):02d}", rng.choice([None, f"2026-03-{rng.randint(1, 28):02d}"]),
                      rng.randint(1, 127), tuple(sorted(rng.sample(["07:00", "12:00", "19:30"], rng.randint(1, 3)))),
                      rng.choice([None, None, f"2026-03-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:00:00Z"]))
                 for i in range(rng.randint(0, 3))]
        done = {(p.id, f"2026-{m:02d}-{d:02d}"): set(p.times if rng.random() < 0.85 else p.times[:1])
                for p in plans for m in (2, 3) for d in range(1, 29)}
        first, last = date(2026, 1, 1), date(2026, 3, rng.randint(1, 28))
        joined = rng.choice([None, date(2026, 2, rng.randint(1, 28))])
        expected = streak(tally(plans, done, first, last, "Europe/Berlin", not_before=joined), last.isoformat())
        from server.schedule import walk_streak
        assert walk_streak(plans, done, first, last, "Europe/Berlin", not_before=joined)[0] == expected
