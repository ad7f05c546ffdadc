"""Schedules end to end: a function with `schedule = "rate(1 minute)"` is invoked by the host on
the real engine with EventBridge's Scheduled Event, as an Event invocation, once a minute. The
host runs with its schedule clock 60 times faster (`--schedule-clock-scale 60`, a hidden flag):
a scheduled minute every second."""
from __future__ import annotations

import json
import re
import time
from datetime import datetime, timedelta

from tests.conftest import REPO, containers_of_host, docker, start_host, stop_host

FUNCTIONS = REPO / "tests" / "fixtures" / "schedules"


def scheduled_events(log: str) -> list[tuple[dict, str]]:
    """(event, request id) of each line the function printed."""
    found = []
    for line in log.splitlines():
        if line.startswith("scheduled got "):
            body, request_id = line[len("scheduled got "):].rsplit(" ", 1)
            found.append((json.loads(body), request_id))
    return found


def fire_times(host) -> list[datetime]:
    return sorted(datetime.strptime(event["time"], "%Y-%m-%dT%H:%M:%SZ")
                  for event, _ in scheduled_events(host.log_of("py-scheduled")))


def one_minute_apart(times: list[datetime]) -> bool:
    """Two of the events the function got were fired a scheduled minute apart. (Event invocations
    are delivered as sandboxes free up, so a fire may reach the function after the next one: a
    cold start takes more than a scaled minute.)"""
    return any(b - a == timedelta(minutes=1) for a, b in zip(times, times[1:]))


def test_a_rate_schedule_invokes_the_function_with_eventbridges_scheduled_event_each_minute(tmp_path):
    host = start_host(FUNCTIONS, tmp_path / "state", extra_args=["--schedule-clock-scale", "60"])
    try:
        deadline = time.monotonic() + 90
        while not one_minute_apart(fire_times(host)) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        stop_host(host)
        left = containers_of_host(host.pid)
        if left:
            docker("rm", "-f", *left, check=False)
    events = scheduled_events(host.log_of("py-scheduled"))
    times = fire_times(host)
    assert one_minute_apart(times), (times, host.stderr()[-3000:])
    for event, request_id in events:
        assert set(event) == {"version", "id", "detail-type", "source", "account", "time", "region", "resources",
                              "detail"}
        assert (event["version"], event["detail-type"], event["source"], event["detail"]) == \
            ("0", "Scheduled Event", "aws.events", {})
        assert event["region"] == "us-east-1"
        assert event["resources"] == [f"arn:aws:events:us-east-1:{event['account']}:rule/py-scheduled-schedule"]
        assert re.fullmatch(r"\d{12}", event["account"])
        # The host says it fired, with the id the function saw: an Event invocation's own.
        assert f"schedule rate(1 minute) fired for py-scheduled: {request_id}" in host.stderr()
    assert len({event["id"] for event, _ in events}) == len(events)
    assert all((b - a) % timedelta(minutes=1) == timedelta(0) for a, b in zip(times, times[1:])), \
        f"every fire is on the rate's beat: {times}"
    assert host.proc.returncode == 0, host.stderr()[-3000:]
