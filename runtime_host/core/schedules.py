"""EventBridge schedule expressions (`rate(...)`, `cron(...)`) and the Scheduled Event they send.

Owns: parsing and validating an expression as EventBridge's PutRule does (docs/spec-additions.md
§8): a bad one is refused with what is wrong and what is allowed; the next fire time after a
given UTC time; the event EventBridge hands the function, and its rule's ARN.
Must not: read a clock, sleep or invoke anything: every time is given (scheduler/schedule_timer
does the waiting).

Cron semantics are Quartz's, which EventBridge's six fields follow: day-of-week 1-7 is SUN-SAT;
exactly one of day-of-month and day-of-week is `?`; `L` in day-of-month is the month's last day,
`nW` the weekday (MON-FRI) nearest day n within the month; in day-of-week `L` is SAT (the week's
last day), `nL` the month's last day n, `n#k` its k-th day n. All times are UTC.
"""
from __future__ import annotations

import calendar
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from runtime_host.core.protocol import ACCOUNT_ID

# What EventBridge's PutRule answers for any expression it cannot take (ValidationException, 400).
INVALID_MESSAGE = "Parameter ScheduleExpression is not valid."

RATE_UNITS = {"minute": 60, "hour": 3600, "day": 86400}     # singular -> seconds; plural adds "s"
CRON_FIELDS = ("minutes", "hours", "day-of-month", "month", "day-of-week", "year")
MINUTES, HOURS, DAY_OF_MONTH, MONTH, DAY_OF_WEEK, YEAR = range(6)
FIELD_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (1, 7), (1970, 2199))
# The wildcards each field takes (EventBridge's table); `?`, `L`, `W` and `#` are checked apart.
FIELD_WILDCARDS = (", - * /", ", - * /", ", - * ? / L W", ", - * /", ", - * ? L #", ", - * /")
MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
DAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
LAST_YEAR = FIELD_RANGES[YEAR][1]

EXAMPLES = "e.g. rate(5 minutes), rate(1 hour), cron(0 12 * * ? *), cron(0/15 8-17 ? * MON-FRI *)"


class ScheduleError(ValueError):
    """An expression EventBridge would refuse; the message says what is wrong and what is allowed."""


# --- the parsed forms --------------------------------------------------------------------
@dataclass(frozen=True)
class Rate:
    """`rate(value unit)`: every `interval_s`, counted from when the rule starts (EventBridge: when
    it is created; here: when the host starts)."""
    expression: str
    value: int
    unit: str                     # minute | hour | day (singular)

    @property
    def interval_s(self) -> int:
        return self.value * RATE_UNITS[self.unit]

    def next_after(self, after: datetime, started_at: datetime) -> datetime | None:
        """The first started_at + k * interval (k >= 1) strictly after `after`."""
        interval = timedelta(seconds=self.interval_s)
        k = max(1, (after - started_at) // interval + 1)
        return started_at + k * interval


@dataclass(frozen=True)
class DaySpec:
    """What a day-of-month or day-of-week field picks.

    kind: "any" (`?`), "values" (a set), "last" (day-of-month `L`), "nearest_weekday" (`nW`),
    "last_of_week_day" (day-of-week `nL`), "nth_week_day" (`n#k`)."""
    kind: str
    values: frozenset[int] = frozenset()
    n: int = 0
    k: int = 0


@dataclass(frozen=True)
class Cron:
    """`cron(minutes hours day-of-month month day-of-week year)`, in UTC."""
    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days_of_month: DaySpec
    months: frozenset[int]
    days_of_week: DaySpec
    years: tuple[int, ...] = field(default=())        # sorted

    def next_after(self, after: datetime, started_at: datetime | None = None) -> datetime | None:
        """The first whole minute strictly after `after` the expression picks; None if there is
        none before the end of EventBridge's last year (2199)."""
        t = after.astimezone(timezone.utc).replace(second=0, microsecond=0) + timedelta(minutes=1)
        while t.year <= LAST_YEAR:
            if t.year not in self.years:
                later = [y for y in self.years if y > t.year]
                if not later:
                    return None
                t = t.replace(year=later[0], month=1, day=1, hour=0, minute=0)
                continue
            if t.month not in self.months:
                t = _first_of_next_month(t)
                continue
            if not self._day_matches(t):
                t = t.replace(hour=0, minute=0) + timedelta(days=1)
                continue
            if t.hour not in self.hours:
                t = t.replace(minute=0) + timedelta(hours=1)
                continue
            if t.minute not in self.minutes:
                t += timedelta(minutes=1)
                continue
            return t
        return None

    def _day_matches(self, t: datetime) -> bool:
        spec = self.days_of_week if self.days_of_month.kind == "any" else self.days_of_month
        last_day = calendar.monthrange(t.year, t.month)[1]
        if spec is self.days_of_month:
            if spec.kind == "values":
                return t.day in spec.values
            if spec.kind == "last":
                return t.day == last_day
            return spec.n <= last_day and t.day == _nearest_weekday(t.year, t.month, spec.n, last_day)
        week_day = aws_week_day(t)
        if spec.kind == "values":
            return week_day in spec.values
        if week_day != spec.n:
            return False
        if spec.kind == "last_of_week_day":
            return t.day + 7 > last_day
        return (t.day - 1) // 7 + 1 == spec.k                       # nth_week_day


Schedule = Rate | Cron


def aws_week_day(t: datetime) -> int:
    """EventBridge's day-of-week number: 1 = SUN ... 7 = SAT (Python's Monday is 0)."""
    return (t.weekday() + 1) % 7 + 1


def _first_of_next_month(t: datetime) -> datetime:
    year, month = (t.year + 1, 1) if t.month == 12 else (t.year, t.month + 1)
    return t.replace(year=year, month=month, day=1, hour=0, minute=0)


def _nearest_weekday(year: int, month: int, day: int, last_day: int) -> int:
    """`nW`: day n if it is MON-FRI, else the nearest MON-FRI in the same month."""
    week_day = calendar.weekday(year, month, day)          # Monday 0 .. Sunday 6
    if week_day == 5:                                      # Saturday: Friday, or Monday if n is the 1st
        return day - 1 if day > 1 else day + 2
    if week_day == 6:                                      # Sunday: Monday, or Friday if n is the last
        return day + 1 if day < last_day else day - 2
    return day


# --- parsing -------------------------------------------------------------------------
def parse_schedule(expression: object) -> Schedule:
    """A `rate(...)` or `cron(...)` expression, validated; ScheduleError if EventBridge would refuse it."""
    if not isinstance(expression, str):
        raise ScheduleError(f"expected a string: rate(value unit) or cron(6 fields), {EXAMPLES}")
    match = re.fullmatch(r"(rate|cron)\((.*)\)", expression, re.DOTALL)
    if match is None:
        raise ScheduleError(f"an expression is rate(value unit) or cron(minutes hours day-of-month month "
                            f"day-of-week year), in lower case, nothing around it; {EXAMPLES}")
    kind, body = match.groups()
    return _parse_rate(expression, body) if kind == "rate" else _parse_cron(expression, body)


def _parse_rate(expression: str, body: str) -> Rate:
    parts = body.split()
    if len(parts) != 2:
        raise ScheduleError(f"rate takes two fields, a value and a unit, e.g. rate(5 minutes); got {len(parts)}")
    value_text, unit = parts
    if not value_text.isdigit() or int(value_text) < 1:
        raise ScheduleError(f"the value {value_text!r} is not a positive whole number (1, 2, ...)")
    value = int(value_text)
    singular = unit[:-1] if unit.endswith("s") else unit
    if singular not in RATE_UNITS:
        raise ScheduleError(f"the unit {unit!r} is not one of minute | minutes | hour | hours | day | days")
    if value == 1 and unit != singular:
        raise ScheduleError(f"a value of 1 takes the singular unit: rate(1 {singular}), not rate(1 {unit})")
    if value > 1 and unit == singular:
        raise ScheduleError(f"a value over 1 takes the plural unit: rate({value} {singular}s), not "
                            f"rate({value} {unit})")
    return Rate(expression, value, singular)


def _parse_cron(expression: str, body: str) -> Cron:
    parts = body.split()
    if len(parts) != 6:
        hint = (" (a Unix crontab line has 5: add the year, and put ? in day-of-month or day-of-week, e.g. "
                "cron(0 12 * * ? *))" if len(parts) == 5 else "")
        raise ScheduleError(f"cron takes 6 fields ({' '.join(CRON_FIELDS)}); got {len(parts)}{hint}")
    dom_text, dow_text = parts[DAY_OF_MONTH], parts[DAY_OF_WEEK]
    if (dom_text == "?") == (dow_text == "?"):
        which = "both are ?" if dom_text == "?" else f"day-of-month is {dom_text!r} and day-of-week {dow_text!r}"
        raise ScheduleError(f"exactly one of day-of-month and day-of-week must be ? ({which}); e.g. "
                            "cron(0 12 * * ? *) every day, cron(0 12 ? * MON-FRI *) on weekdays")
    for index in (MINUTES, HOURS, MONTH, YEAR):
        if "?" in parts[index]:
            raise ScheduleError(f"{CRON_FIELDS[index]} = {parts[index]!r}: ? is only for day-of-month and day-of-week")
    years = sorted(_values(YEAR, parts[YEAR]))
    return Cron(expression, minutes=frozenset(_values(MINUTES, parts[MINUTES])),
                hours=frozenset(_values(HOURS, parts[HOURS])), days_of_month=_day_of_month(dom_text),
                months=frozenset(_values(MONTH, parts[MONTH])), days_of_week=_day_of_week(dow_text),
                years=tuple(years))


def _refuse(index: int, text: str, what: str) -> ScheduleError:
    lo, hi = FIELD_RANGES[index]
    names = {MONTH: " or JAN-DEC", DAY_OF_WEEK: " or SUN-SAT"}.get(index, "")
    return ScheduleError(f"{CRON_FIELDS[index]} = {text!r}: {what}; {CRON_FIELDS[index]} takes {lo}-{hi}{names} "
                         f"with the wildcards {FIELD_WILDCARDS[index]}")


def _number(index: int, text: str, whole: str) -> int:
    names = {MONTH: MONTH_NAMES, DAY_OF_WEEK: DAY_NAMES}.get(index, ())
    if text.upper() in names:
        return names.index(text.upper()) + 1
    if not text.isdigit():
        raise _refuse(index, whole, f"{text!r} is not a number" + (" or a name" if names else ""))
    value = int(text)
    lo, hi = FIELD_RANGES[index]
    if not lo <= value <= hi:
        raise _refuse(index, whole, f"{value} is out of range")
    return value


def _values(index: int, text: str) -> set[int]:
    """A field of values: items joined by commas, each `*`, `v`, `a-b`, with an optional `/step`."""
    lo, hi = FIELD_RANGES[index]
    values: set[int] = set()
    for item in text.split(","):
        if item == "":
            raise _refuse(index, text, "an empty item (two commas, or one at an end)")
        base, slash, step_text = item.partition("/")
        if slash and index == DAY_OF_WEEK:
            raise _refuse(index, text, "day-of-week takes no / increments")
        if base == "*":
            first, last = lo, hi
        elif "-" in base:
            a, _, b = base.partition("-")
            first, last = _number(index, a, text), _number(index, b, text)
            if first > last:
                raise _refuse(index, text, f"the range {base} runs backwards; write it low-high (split a range "
                              "that wraps around in two, e.g. 22-23,0-2)")
        else:
            first = _number(index, base, text)
            last = hi if slash else first                  # `a/n`: a, a+n, ... to the field's end
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) < 1:
                raise _refuse(index, text, f"the increment after / must be a positive whole number, not {step_text!r}")
            step = int(step_text)
        values.update(range(first, last + 1, step))
    return values


def _day_of_month(text: str) -> DaySpec:
    if text == "?":
        return DaySpec("any")
    if "L" in text.upper() or "W" in text.upper():
        if text.upper() == "L":
            return DaySpec("last")
        match = re.fullmatch(r"(\d+)W", text, re.IGNORECASE)
        if match is None:
            raise _refuse(DAY_OF_MONTH, text, "L (the last day) and nW (the weekday nearest day n, e.g. 15W) "
                          "stand alone in the field")
        return DaySpec("nearest_weekday", n=_number(DAY_OF_MONTH, match.group(1), text))
    return DaySpec("values", frozenset(_values(DAY_OF_MONTH, text)))


def _day_of_week(text: str) -> DaySpec:
    if text == "?":
        return DaySpec("any")
    if text.upper() == "L":                                # the week's last day
        return DaySpec("values", frozenset({7}))
    if "#" in text:
        match = re.fullmatch(r"([^#,]+)#(\d+)", text)
        if match is None:
            raise _refuse(DAY_OF_WEEK, text, "with #, the field holds one expression day#k only (e.g. 6#2, the "
                          "second Friday; 3#1,6#3 is two)")
        k = int(match.group(2))
        if not 1 <= k <= 5:
            raise _refuse(DAY_OF_WEEK, text, f"#{k}: a month has a first to a fifth such day (#1-#5)")
        return DaySpec("nth_week_day", n=_number(DAY_OF_WEEK, match.group(1), text), k=k)
    if text.upper().endswith("L") and not text.upper() in DAY_NAMES:
        day = text[:-1]
        if "," in day or "-" in day or "/" in day or day == "":
            raise _refuse(DAY_OF_WEEK, text, "nL (the month's last day n, e.g. 6L the last Friday) stands alone "
                          "in the field")
        return DaySpec("last_of_week_day", n=_number(DAY_OF_WEEK, day, text))
    return DaySpec("values", frozenset(_values(DAY_OF_WEEK, text)))


# --- the event -------------------------------------------------------------------------
def rule_names(function_name: str, count: int) -> list[str]:
    """Our names for a function's rules: `NAME-schedule`, or `NAME-schedule-1`, `-2` ... for several."""
    return [f"{function_name}-schedule"] if count == 1 else [f"{function_name}-schedule-{i}" for i in range(1, count + 1)]


def rule_arn(region: str, rule_name: str) -> str:
    return f"arn:aws:events:{region}:{ACCOUNT_ID}:rule/{rule_name}"


def scheduled_event(rule_arn_: str, fire_time: datetime, region: str, event_id: str | None = None) -> dict:
    """The event EventBridge sends a scheduled rule's target."""
    return {
        "version": "0",
        "id": event_id or str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT_ID,
        "time": fire_time.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [rule_arn_],
        "detail": {},
    }
