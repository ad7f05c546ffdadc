"""EventBridge schedule expressions (docs/spec-additions.md §8): what PutRule takes and refuses,
when each expression fires next, the `schedule` field of function.toml, and the timer that fires
them as Event invocations carrying EventBridge's Scheduled Event."""
from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from runtime_host.core.config import ConfigError, load_function
from runtime_host.core.schedules import (INVALID_MESSAGE, Cron, Rate, ScheduleError, parse_schedule, rule_arn,
                                         scheduled_event)
from runtime_host.store.event_queue import read_events
from runtime_host.store.ledger import read_records
from tests.unit.fakehost import fake_host, function, settle


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def fire_times(expression: str, after: datetime, count: int, started_at: datetime | None = None) -> list[datetime]:
    schedule, times = parse_schedule(expression), []
    for _ in range(count):
        after = schedule.next_after(after, started_at or after)
        times.append(after)
    return times


# --- what EventBridge takes ---------------------------------------------------------------
@pytest.mark.parametrize("expression", [
    "rate(1 minute)", "rate(5 minutes)", "rate(1 hour)", "rate(12 hours)", "rate(1 day)", "rate(7 days)",
    "cron(0 12 * * ? *)", "cron(0/15 * * * ? *)", "cron(0 8-17 ? * MON-FRI *)", "cron(0 10 ? * 6L *)",
    "cron(0 0 L * ? *)", "cron(0 9 15W * ? *)", "cron(0 9 ? * 6#2 *)", "cron(30 1 1,15 JAN,JUL ? 2027-2030)",
    "cron(1/10 * * * ? *)", "cron(0 0 ? * L *)", "cron(0 18 ? * mon-fri *)", "cron(0 0 1 */3 ? *)",
])
def test_valid_expressions_are_taken(expression):
    assert parse_schedule(expression).expression == expression


def test_a_rate_of_one_takes_the_singular_unit():
    with pytest.raises(ScheduleError, match=r"rate\(1 minute\), not rate\(1 minutes\)"):
        parse_schedule("rate(1 minutes)")


def test_a_rate_over_one_takes_the_plural_unit():
    with pytest.raises(ScheduleError, match=r"rate\(5 hours\), not rate\(5 hour\)"):
        parse_schedule("rate(5 hour)")


@pytest.mark.parametrize("expression, says", [
    ("rate(0 minutes)", "positive whole number"),
    ("rate(1.5 hours)", "positive whole number"),
    ("rate(-5 minutes)", "positive whole number"),
    ("rate(30 seconds)", "minute | minutes | hour | hours | day | days"),
    ("rate(5minutes)", "two fields"),
    ("rate(5 minutes", r"rate\(value unit\) or cron"),
    ("Rate(5 minutes)", "in lower case"),
    ("every 5 minutes", r"rate\(value unit\) or cron"),
    ("", r"rate\(value unit\) or cron"),
])
def test_bad_rates_are_refused_saying_what_is_wrong(expression, says):
    with pytest.raises(ScheduleError, match=says):
        parse_schedule(expression)


def test_one_of_day_of_month_and_day_of_week_must_be_a_question_mark():
    with pytest.raises(ScheduleError, match=r"exactly one of day-of-month and day-of-week must be \?.*'\*'"):
        parse_schedule("cron(0 12 * * * *)")
    with pytest.raises(ScheduleError, match=r"both are \?"):
        parse_schedule("cron(0 12 ? * ? *)")
    with pytest.raises(ScheduleError, match="day-of-month is '15' and day-of-week 'MON'"):
        parse_schedule("cron(0 12 15 * MON *)")


def test_a_unix_crontab_line_is_refused_with_how_to_write_it():
    with pytest.raises(ScheduleError, match=r"got 5 \(a Unix crontab line has 5: add the year"):
        parse_schedule("cron(0 12 * * *)")


@pytest.mark.parametrize("expression, says", [
    ("cron(60 * * * ? *)", "minutes = '60': 60 is out of range; minutes takes 0-59"),
    ("cron(0 24 * * ? *)", "hours = '24': 24 is out of range; hours takes 0-23"),
    ("cron(0 0 32 * ? *)", "day-of-month = '32': 32 is out of range"),
    ("cron(0 0 * 13 ? *)", "month takes 1-12 or JAN-DEC"),
    ("cron(0 0 * JANUARY ? *)", "'JANUARY' is not a number or a name"),
    ("cron(0 0 ? * 8 *)", "day-of-week takes 1-7 or SUN-SAT"),
    ("cron(0 0 * * ? 1969)", "year takes 1970-2199"),
    ("cron(0 0 * * ? 2200)", "2200 is out of range"),
    ("cron(0 ? * * ? *)", r"\? is only for day-of-month and day-of-week"),
    ("cron(0 12 ? * 3#1,6#3 *)", "one expression day#k only"),
    ("cron(0 12 ? * 6#6 *)", "#1-#5"),
    ("cron(0 12 ? * MON/2 *)", "no / increments"),
    ("cron(0 12 L,15 * ? *)", "stand alone"),
    ("cron(0 12 LW * ? *)", "stand alone"),
    ("cron(0/0 * * * ? *)", "increment after / must be a positive whole number"),
    ("cron(0 17-9 * * ? *)", "runs backwards"),
    ("cron(0,,5 * * * ? *)", "an empty item"),
])
def test_bad_cron_fields_are_refused_naming_the_field_and_what_it_takes(expression, says):
    with pytest.raises(ScheduleError, match=says):
        parse_schedule(expression)


# --- when they fire --------------------------------------------------------------------
def test_every_five_minutes_counts_from_when_the_rule_starts():
    start = utc(2026, 3, 4, 10, 2, 30)
    assert fire_times("rate(5 minutes)", start, 3) == [start + timedelta(minutes=m) for m in (5, 10, 15)]


def test_a_rate_resumes_its_own_beat_after_a_gap_without_firing_what_was_missed():
    start = utc(2026, 3, 4, 10, 0, 0)
    later = utc(2026, 3, 4, 11, 7, 0)                       # the host was busy or the machine asleep
    assert parse_schedule("rate(5 minutes)").next_after(later, start) == utc(2026, 3, 4, 11, 10, 0)


def test_every_five_minutes_as_cron_fires_on_the_clock():
    assert fire_times("cron(0/5 * * * ? *)", utc(2026, 3, 4, 10, 2, 30), 3) == [
        utc(2026, 3, 4, 10, 5), utc(2026, 3, 4, 10, 10), utc(2026, 3, 4, 10, 15)]


def test_noon_every_day_is_strictly_after_the_given_time():
    assert fire_times("cron(0 12 * * ? *)", utc(2026, 3, 4, 12, 0, 0), 2) == [utc(2026, 3, 5, 12), utc(2026, 3, 6, 12)]
    assert fire_times("cron(0 12 * * ? *)", utc(2026, 3, 4, 11, 59, 59), 1) == [utc(2026, 3, 4, 12)]


def test_the_last_day_of_the_month():
    assert fire_times("cron(0 0 L * ? *)", utc(2028, 1, 15), 3) == [
        utc(2028, 1, 31), utc(2028, 2, 29), utc(2028, 3, 31)]       # 2028 is a leap year


def test_the_second_friday_of_the_month():
    assert fire_times("cron(0 9 ? * 6#2 *)", utc(2026, 1, 1), 3) == [
        utc(2026, 1, 9, 9), utc(2026, 2, 13, 9), utc(2026, 3, 13, 9)]


def test_the_last_friday_of_the_month():
    assert fire_times("cron(0 9 ? * 6L *)", utc(2026, 1, 1), 2) == [utc(2026, 1, 30, 9), utc(2026, 2, 27, 9)]


def test_weekdays_mon_to_fri_skip_the_weekend():
    times = fire_times("cron(15 10 ? * MON-FRI *)", utc(2026, 1, 2, 11), 3)     # Friday 2 Jan, after 10:15
    assert times == [utc(2026, 1, 5, 10, 15), utc(2026, 1, 6, 10, 15), utc(2026, 1, 7, 10, 15)]
    assert [t.strftime("%a") for t in times] == ["Mon", "Tue", "Wed"]


def test_day_of_week_numbers_start_on_sunday():
    assert fire_times("cron(0 0 ? * 1 *)", utc(2026, 1, 1), 1)[0].strftime("%a") == "Sun"
    assert fire_times("cron(0 0 ? * L *)", utc(2026, 1, 1), 1)[0].strftime("%a") == "Sat"


def test_the_weekday_nearest_a_day_stays_in_its_month():
    # 15 Feb 2026 is a Sunday -> Monday 16th; 1 Aug 2026 a Saturday -> Monday 3rd (not Friday 31 Jul);
    # 31 May 2026 a Sunday -> Friday 29th (not Monday 1 Jun).
    assert fire_times("cron(0 8 15W * ? *)", utc(2026, 2, 1), 1) == [utc(2026, 2, 16, 8)]
    assert fire_times("cron(0 8 1W * ? *)", utc(2026, 7, 2), 1) == [utc(2026, 8, 3, 8)]
    assert fire_times("cron(0 8 31W * ? *)", utc(2026, 5, 1), 1) == [utc(2026, 5, 29, 8)]


def test_a_year_field_ends_the_schedule():
    schedule = parse_schedule("cron(30 1 1 JAN ? 2027-2028)")
    assert fire_times("cron(30 1 1 JAN ? 2027-2028)", utc(2026, 6, 1), 2) == [utc(2027, 1, 1, 1, 30),
                                                                               utc(2028, 1, 1, 1, 30)]
    assert schedule.next_after(utc(2028, 1, 1, 1, 30)) is None


def test_a_date_that_never_comes_never_fires():
    assert parse_schedule("cron(0 0 30 FEB ? *)").next_after(utc(2026, 1, 1)) is None


def test_times_are_utc_whatever_the_zone_given():
    paris = timezone(timedelta(hours=1))
    assert parse_schedule("cron(0 12 * * ? *)").next_after(datetime(2026, 1, 1, 12, 30, tzinfo=paris)) == \
        utc(2026, 1, 1, 12)


# --- the event ------------------------------------------------------------------------
def test_the_scheduled_event_has_eventbridges_shape():
    event = scheduled_event(rule_arn("eu-west-1", "fn-schedule"), utc(2026, 3, 4, 16, 53, 6, 500), "eu-west-1")
    assert set(event) == {"version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail"}
    assert event["version"] == "0" and event["detail-type"] == "Scheduled Event" and event["source"] == "aws.events"
    assert event["time"] == "2026-03-04T16:53:06Z" and event["region"] == "eu-west-1" and event["detail"] == {}
    assert event["resources"] == [f"arn:aws:events:eu-west-1:{event['account']}:rule/fn-schedule"]
    uuid.UUID(event["id"])


# --- function.toml ----------------------------------------------------------------------
def write_function(tmp_path, schedule_line: str):
    (tmp_path / "app.py").write_text("def handler(event, context):\n    return event\n")
    (tmp_path / "function.toml").write_text(f'runtime = "python3.11"\nhandler = "app.handler"\n{schedule_line}\n')
    return tmp_path


def test_schedule_takes_one_expression_or_a_list(tmp_path):
    one = load_function(write_function(tmp_path, 'schedule = "rate(5 minutes)"'))
    assert one.schedules == (Rate("rate(5 minutes)", 5, "minute"),)
    several = load_function(write_function(tmp_path, 'schedule = ["rate(1 hour)", "cron(0 12 * * ? *)"]'))
    assert [type(s) for s in several.schedules] == [Rate, Cron]
    assert load_function(write_function(tmp_path, "")).schedules == ()


def test_a_bad_schedule_is_refused_at_load_with_the_file_the_field_and_why(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_function(write_function(tmp_path, 'schedule = "rate(1 minutes)"'))
    message = str(err.value)
    assert str(tmp_path / "function.toml") in message and "field 'schedule' = 'rate(1 minutes)'" in message
    assert "rate(1 minute)" in message and INVALID_MESSAGE in message


def test_a_bad_entry_of_a_list_is_named_by_its_index(tmp_path):
    with pytest.raises(ConfigError, match=r"field 'schedule\[1\]' = 'cron\(0 12 \* \* \* \*\)'"):
        load_function(write_function(tmp_path, 'schedule = ["rate(1 hour)", "cron(0 12 * * * *)"]'))
    with pytest.raises(ConfigError, match="field 'schedule' = 5 .*expected a string"):
        load_function(write_function(tmp_path, "schedule = 5"))


# --- the timer, over the fake backend ----------------------------------------------------------
class StepClock:
    """A schedule clock for tests: a sleep moves it forward at once (after a real 20 ms, so the
    invocations fired meanwhile get to run)."""

    def __init__(self, start: datetime):
        self.time = start
        self.slept_s: list[float] = []

    def now(self) -> datetime:
        return self.time

    async def sleep(self, seconds: float) -> None:
        self.slept_s.append(seconds)
        self.time += timedelta(seconds=seconds)
        await asyncio.sleep(0.02)


def scheduled_payloads(host, name: str = "fn") -> list[dict]:
    payloads = [json.loads(e.payload) for e in read_events(host.state_dir) if e.function == name]
    return sorted(payloads, key=lambda p: p["time"])


async def test_the_timer_fires_event_invocations_with_the_scheduled_event_a_minute_apart():
    start = utc(2026, 3, 4, 9, 0, 30)
    clock = StepClock(start)
    async with fake_host(function(schedules=(parse_schedule("rate(1 minute)"),)), schedule_clock=clock) as host:
        await settle(host, until=lambda: sum(e.state == "done" for e in read_events(host.state_dir)) >= 2,
                     timeout_s=5)
        await host.schedule_timer.stop()
        payloads = scheduled_payloads(host)
        ran = {r.request_id for r in read_records(host.state_dir)}
    done = [e for e in read_events(host.state_dir) if e.state == "done"]
    assert len(done) >= 2 and {e.request_id for e in done} <= ran, "each fire ran as an Event invocation"
    assert payloads[0]["time"] == "2026-03-04T09:01:30Z", "a rate counts from the start, not at once"
    assert payloads[1]["time"] == "2026-03-04T09:02:30Z"
    assert all(p["detail-type"] == "Scheduled Event" and p["source"] == "aws.events" for p in payloads)
    assert payloads[0]["resources"] == [rule_arn(host.region, "fn-schedule")]
    assert len({p["id"] for p in payloads}) == len(payloads)


async def test_a_cron_fires_at_its_minute_and_the_host_logs_each_fire(caplog):
    clock = StepClock(utc(2026, 3, 4, 11, 59, 40))
    fn = function(schedules=(parse_schedule("cron(0 12 * * ? *)"),))
    caplog.set_level("INFO", logger="runtime_host.scheduler.schedule_timer")
    async with fake_host(fn, schedule_clock=clock) as host:
        await settle(host, until=lambda: any(e.state == "done" for e in read_events(host.state_dir)), timeout_s=5)
        await host.schedule_timer.stop()
        first = scheduled_payloads(host)[0]
        request_id = read_events(host.state_dir)[0].request_id
        await settle(host, until=lambda: "REPORT" in host.log_path("fn").read_text(), timeout_s=5)
    assert first["time"] == "2026-03-04T12:00:00Z"
    assert clock.slept_s[0] == 20.0
    assert f"schedule cron(0 12 * * ? *) fired for fn: {request_id}" in caplog.text


async def test_several_schedules_are_several_rules():
    fn = function(schedules=(parse_schedule("rate(1 minute)"), parse_schedule("rate(2 minutes)")))
    async with fake_host(fn, schedule_clock=StepClock(utc(2026, 3, 4, 9, 0, 0))) as host:
        await settle(host, until=lambda: {tuple(p["resources"]) for p in scheduled_payloads(host)} >= {
            (rule_arn(host.region, "fn-schedule-1"),), (rule_arn(host.region, "fn-schedule-2"),)}, timeout_s=5)
        await host.schedule_timer.stop()


async def test_a_host_that_starts_after_a_fire_time_waits_for_the_next_one():
    clock = StepClock(utc(2026, 3, 4, 12, 0, 30))                # 30 s after today's noon
    fn = function(schedules=(parse_schedule("cron(0 12 * * ? *)"),))
    async with fake_host(fn, schedule_clock=clock) as host:
        assert host.schedule_timer.next_at == {"fn-schedule": utc(2026, 3, 5, 12)}
        await host.schedule_timer.stop()
        assert read_events(host.state_dir) == []


async def test_stopping_the_host_stops_the_timer():
    fn = function(schedules=(parse_schedule("rate(1 minute)"),))
    async with fake_host(fn) as host:                             # the real clock: nothing is due for a minute
        tasks = list(host.schedule_timer._tasks)
        assert len(tasks) == 1 and not tasks[0].done()
    assert tasks[0].done() and host.schedule_timer._tasks == []
