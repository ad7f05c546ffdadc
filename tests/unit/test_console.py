"""The web console without a browser: its escaping, its saved-event store,
its charts' arithmetic, and its pages and streams over real HTTP from a
Host on the fake backend (the browser test is tests/e2e/test_console.py)."""
from __future__ import annotations

import asyncio
import json
import re

import pytest

from runtime_host.api.console import charts
from runtime_host.api.console.console import billing_table, config_table, functions_table
from runtime_host.api.console.html import Markup, esc, fill, json_for_script, tag
from runtime_host.store.ledger import Record
from runtime_host.store.saved_events import MAX_EVENTS_PER_FUNCTION, SavedEventError, SavedEventNotFound, SavedEvents
from tests.unit.fakehost import function, invoke_api as console

ATTACK = "<script>alert('x')</script>\"&"
ESCAPED = "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&quot;&amp;"


# --- escaping ------------------------------------------------------------------------
def test_esc_escapes_every_character_that_could_open_markup_or_leave_an_attribute():
    assert esc(ATTACK) == ESCAPED


def test_markup_passes_unescaped_and_none_shows_as_nothing():
    assert esc(Markup("<b>ok</b>")) == "<b>ok</b>" and esc(None) == ""


def test_tag_escapes_its_content_and_attribute_values():
    html = tag("a", ATTACK, href='/x?a="b"')
    assert html == f'<a href="/x?a=&quot;b&quot;">{ESCAPED}</a>'


def test_a_template_hole_is_filled_escaped():
    assert fill("<p>{{v}}</p>", v=ATTACK) == f"<p>{ESCAPED}</p>"


def test_a_template_hole_without_a_value_is_an_error_not_blank():
    with pytest.raises(KeyError, match="missing"):
        fill("{{missing}}")


def test_json_for_script_cannot_close_its_script_element():
    text = json_for_script({"payload": "</script><script>alert(1)</script>&\u2028"})
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == {"payload": "</script><script>alert(1)</script>&\u2028"}


def test_configuration_and_functions_tables_escape_user_values():
    fn = function("fn", description=ATTACK, environment={"K": ATTACK})
    html = functions_table([fn]) + config_table({"Description": ATTACK, "Environment": {"Variables": {"K": ATTACK}}})
    assert "<script>" not in html and html.count(ESCAPED) == 3


def record(function="fn", started_at=1000.0, duration_ms=10.0, outcome="success", cold=False) -> Record:
    return Record(request_id=str(started_at) + function, function=function, version="$LATEST",
                  started_at=started_at, duration_ms=duration_ms, billed_ms=int(duration_ms) + 1, init_ms=None,
                  memory_mb=128, max_memory_used_mb=40, cold=cold, outcome=outcome, error_type=None,
                  architecture="x86_64", gb_s=0.001, cost_usd=0.0000001)


def test_the_billing_table_escapes_a_function_name_from_the_ledger():
    html = billing_table([record(function=ATTACK)])
    assert "<script>" not in html and ESCAPED in html and "TOTAL" in html


# --- the saved-event store -----------------------------------------------------------
def test_a_saved_event_reads_back_as_saved_and_is_listed_by_name(tmp_path):
    store = SavedEvents(tmp_path)
    store.save("fn", "b-event", '{"k": 1}')
    store.save("fn", "a.event_1", "[1, 2]")
    assert store.names("fn") == ["a.event_1", "b-event"]
    assert store.get("fn", "b-event") == '{"k": 1}'
    assert (tmp_path / "console" / "events" / "fn" / "b-event.json").exists()


def test_saving_under_an_existing_name_replaces_the_event(tmp_path):
    store = SavedEvents(tmp_path)
    store.save("fn", "e", "1")
    store.save("fn", "e", "2")
    assert store.names("fn") == ["e"] and store.get("fn", "e") == "2"


def test_a_deleted_event_is_gone(tmp_path):
    store = SavedEvents(tmp_path)
    store.save("fn", "e", "{}")
    store.delete("fn", "e")
    assert store.names("fn") == []
    with pytest.raises(SavedEventNotFound):
        store.get("fn", "e")
    with pytest.raises(SavedEventNotFound):
        store.delete("fn", "e")


def test_each_function_has_its_own_events(tmp_path):
    store = SavedEvents(tmp_path)
    store.save("one", "e", "1")
    assert store.names("two") == []


@pytest.mark.parametrize("name", ["", "../x", "a/b", ".hidden", "x" * 26, "<b>", "sp ace"])
def test_a_name_that_is_no_safe_file_name_is_refused_with_the_rule(tmp_path, name):
    with pytest.raises(SavedEventError, match="letters, digits"):
        SavedEvents(tmp_path).save("fn", name, "{}")


def test_an_event_that_is_not_json_is_refused_and_nothing_is_written(tmp_path):
    store = SavedEvents(tmp_path)
    with pytest.raises(SavedEventError, match="not valid JSON"):
        store.save("fn", "e", "{nope")
    assert store.names("fn") == []


def test_an_eleventh_event_is_refused_as_the_lambda_console_does_but_replacing_one_is_not(tmp_path):
    store = SavedEvents(tmp_path)
    for i in range(MAX_EVENTS_PER_FUNCTION):
        store.save("fn", f"e{i}", "{}")
    with pytest.raises(SavedEventError, match="delete one first"):
        store.save("fn", "one-more", "{}")
    store.save("fn", "e0", '{"again": true}')
    assert len(store.names("fn")) == MAX_EVENTS_PER_FUNCTION


# --- charts ---------------------------------------------------------------------------
def test_charts_count_each_minute_and_rank_its_durations():
    now = 7200.0
    records = [record(started_at=now - 30, duration_ms=d, cold=(d == 1)) for d in (1, 2, 3, 100)]
    records += [record(started_at=now - 30, outcome="timeout"), record(started_at=now - 4000)]  # the last is too old
    series = charts.bucket(records, now)
    assert series.total == 5 and sum(series.errors) == 1 and sum(series.cold_starts) == 1
    minute = next(i for i, n in enumerate(series.invocations) if n)
    assert series.p50_ms[minute] == 3 and series.p99_ms[minute] == 100


def test_the_rendered_charts_carry_their_count_and_escape_nothing_they_were_not_given():
    html = charts.render(charts.bucket([record(started_at=100.0)], 110.0))
    assert 'data-invocations="1"' in html and html.count("<svg") == 3


# --- pages and streams over HTTP (a Host on the fake backend) ---------------------------
async def test_the_console_lists_the_functions_with_a_policy_that_allows_only_its_own_files():
    async with console(function("fn", description=ATTACK)) as (_, http):
        async with http.get("/console") as r:
            text = await r.text()
            assert r.status == 200 and r.content_type == "text/html"
            assert "script-src 'self'" in r.headers["Content-Security-Policy"]
        assert 'href="/console/functions/fn"' in text and ESCAPED in text and "<script>alert" not in text
        # every script and stylesheet comes from this host
        links = re.findall(r'(?:src|href)="([^"]+)"', text)
        assert links and all(link.startswith("/console") for link in links), links
        for name, kind in (("console.js", "text/javascript"), ("console.css", "text/css"),
                           ("favicon.svg", "image/svg+xml")):
            async with http.get(f"/console/static/{name}") as r:
                assert r.status == 200 and r.content_type == kind


async def test_a_function_page_shows_its_configuration_and_an_unknown_one_is_404():
    async with console(function("fn", memory_mb=256)) as (_, http):
        async with http.get("/console/functions/fn") as r:
            text = await r.text()
            assert r.status == 200 and ">MemorySize</th><td>256<" in text and 'id="event-body"' in text
        async with http.get("/console/functions/%3Cb%3Enope") as r:
            assert r.status == 404 and "&lt;b&gt;nope" in await r.text()


async def test_saved_events_over_http_create_list_read_and_delete():
    async with console(function("fn")) as (host, http):
        async with http.put("/console/events/fn/MyEvent", data='{"a": 1}') as r:
            assert r.status == 200
        async with http.get("/console/events/fn") as r:
            assert (await r.json()) == {"events": ["MyEvent"]}
        async with http.get("/console/events/fn/MyEvent") as r:
            assert await r.text() == '{"a": 1}'
        async with http.put("/console/events/fn/bad%20name", data="{}") as r:
            assert r.status == 400 and "letters, digits" in await r.text()
        async with http.put("/console/events/fn/x", data="{nope") as r:
            assert r.status == 400 and "not valid JSON" in await r.text()
        async with http.delete("/console/events/fn/MyEvent") as r:
            assert r.status == 200
        async with http.get("/console/events/fn/MyEvent") as r:
            assert r.status == 404
        async with http.get("/console/events/other") as r:
            assert r.status == 404


async def read_sse(response, event_name: str, *, until) -> object:
    """The data of the first `event_name` event for which until(data) holds."""
    event = None
    async for raw in response.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            event = line[len("event: "):]
        elif line.startswith("data: ") and event == event_name:
            data = line[len("data: "):]
            if until(data):
                return data


async def test_the_live_stream_shows_a_sandbox_once_an_invocation_made_one():
    async with console(function("fn")) as (host, http):
        async with http.get("/console/live", params={"function": "fn"}) as live:
            assert live.content_type == "text/event-stream"
            first = await asyncio.wait_for(read_sse(live, "sandboxes", until=lambda d: True), 30)
            assert json.loads(first) == []
            async with http.post("/2015-03-31/functions/fn/invocations", data="{}") as r:
                assert r.status == 200
            rows = await asyncio.wait_for(read_sse(live, "sandboxes", until=lambda d: d != "[]"), 30)
            assert json.loads(rows)[0]["function"] == "fn"


async def test_live_logs_stream_the_functions_lines_as_json_text():
    async with console(function("fn")) as (host, http):
        async with http.get("/console/logs/fn") as logs:
            assert logs.content_type == "text/event-stream"
            async with http.post("/2015-03-31/functions/fn/invocations", data=json.dumps({"print": ATTACK})) as r:
                assert r.status == 200
            line = await asyncio.wait_for(read_sse(logs, "log", until=lambda d: "alert" in d), 30)
            event = json.loads(line)
            assert event["message"] == ATTACK and event["requestId"] == r.headers["x-amzn-RequestId"]
        async with http.get("/console/logs/nope") as r:
            assert r.status == 404
