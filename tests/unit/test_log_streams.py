"""The events file beside each function's log: each line with its time, its
sandbox's log stream and its invocation, read back in order (store/log_streams.py)."""
from __future__ import annotations

import asyncio
import re

from runtime_host.core.environment import log_stream_name
from runtime_host.store.log_streams import LogEvent, follow_events, read_events
from runtime_host.store.logs import LogSink

STREAM_A = "2026/12/07/[$LATEST]" + "a" * 32
STREAM_B = "2026/12/07/[$LATEST]" + "b" * 32


def sink_in(tmp_path) -> LogSink:
    return LogSink(tmp_path / "logs", echo=None)


def test_a_log_stream_is_named_as_lambda_names_it():
    assert re.fullmatch(r"\d{4}/\d{2}/\d{2}/\[\$LATEST\][0-9a-f]{32}", log_stream_name())
    assert re.fullmatch(r"\d{4}/\d{2}/\d{2}/\[3\][0-9a-f]{32}", log_stream_name("3"))


def test_each_line_keeps_its_stream_and_request_id(tmp_path):
    sink = sink_in(tmp_path)
    sink.write("fn", b"START RequestId: r1 Version: $LATEST\n", stream=STREAM_A, request_id="r1")
    sink.write("fn", b"hello\nworld\n", source=object(), stream=STREAM_A, request_id="r1")
    sink.write("fn", b"init of b\n", source=object(), stream=STREAM_B)
    sink.close()
    events = read_events(tmp_path, "fn")
    assert [(e.stream, e.request_id, e.message) for e in events] == [
        (STREAM_A, "r1", "START RequestId: r1 Version: $LATEST"), (STREAM_A, "r1", "hello"),
        (STREAM_A, "r1", "world"), (STREAM_B, None, "init of b")]
    assert all(isinstance(e, LogEvent) for e in events)
    assert [e.timestamp for e in events] == sorted(e.timestamp for e in events)


def test_the_plain_log_file_is_unchanged_by_the_events_file(tmp_path):
    sink = sink_in(tmp_path)
    sink.write("fn", b"one\n", source=object(), stream=STREAM_A, request_id="r1")
    sink.write("fn", b"END RequestId: r1\n", stream=STREAM_A, request_id="r1")
    sink.close()
    assert (tmp_path / "logs" / "fn.log").read_bytes() == b"one\nEND RequestId: r1\n"


def test_a_held_partial_line_keeps_the_stream_it_came_from(tmp_path):
    sink = sink_in(tmp_path)
    a = object()
    sink.write("fn", b"no newline yet", source=a, stream=STREAM_A, request_id="r1")
    sink.write("fn", b"END RequestId: r1\n", stream=STREAM_B, request_id="r2")
    sink.close()                                       # writes what a held
    events = read_events(tmp_path, "fn")
    assert [(e.stream, e.message) for e in events] == [(STREAM_B, "END RequestId: r1"),
                                                       (STREAM_A, "no newline yet")]


def test_messages_with_quotes_tabs_and_non_ascii_come_back_as_written(tmp_path):
    sink = sink_in(tmp_path)
    sink.write("fn", 'a "quoted"\tthing, ünïcode ✓ \\ \n'.encode(), source=object(), stream=STREAM_A)
    sink.close()
    assert read_events(tmp_path, "fn")[0].message == 'a "quoted"\tthing, ünïcode ✓ \\ '


def test_events_filter_by_request_id_since_and_limit(tmp_path):
    sink = sink_in(tmp_path)
    for i in range(5):
        sink.write("fn", f"line {i}\n".encode(), source=object(), stream=STREAM_A, request_id=f"r{i % 2}")
    sink.close()
    assert [e.message for e in read_events(tmp_path, "fn", request_id="r1")] == ["line 1", "line 3"]
    assert [e.message for e in read_events(tmp_path, "fn", limit=2)] == ["line 3", "line 4"]
    everything = read_events(tmp_path, "fn")
    assert read_events(tmp_path, "fn", since_epoch=everything[-1].timestamp + 1) == []
    assert len(read_events(tmp_path, "fn", since_epoch=everything[0].timestamp)) == 5


def test_a_function_without_output_has_no_events(tmp_path):
    assert read_events(tmp_path, "never-ran") == []


def test_a_line_being_written_is_left_for_the_next_read(tmp_path):
    sink = sink_in(tmp_path)
    sink.write("fn", b"whole\n", source=object(), stream=STREAM_A)
    sink.close()
    with open(tmp_path / "logs" / "fn.events", "ab") as f:
        f.write(b'[1.0,"s",null,"half')
    assert [e.message for e in read_events(tmp_path, "fn")] == ["whole"]


async def test_follow_gives_what_was_there_then_new_lines_as_they_come(tmp_path):
    sink = sink_in(tmp_path)
    sink.write("fn", b"before\n", source=object(), stream=STREAM_A, request_id="r1")
    got: list[str] = []

    async def follow():
        async for event in follow_events(tmp_path, "fn"):
            got.append(event.message)
            if len(got) == 3:
                return

    task = asyncio.ensure_future(follow())
    await asyncio.sleep(0.3)
    sink.write("fn", b"after one\nafter two\n", source=object(), stream=STREAM_B, request_id="r2")
    await asyncio.wait_for(task, 10)
    sink.close()
    assert got == ["before", "after one", "after two"]


async def test_follow_filters_by_request_id(tmp_path):
    sink = sink_in(tmp_path)
    got: list[LogEvent] = []

    async def follow():
        async for event in follow_events(tmp_path, "fn", request_id="r2"):
            got.append(event)
            return

    task = asyncio.ensure_future(follow())
    sink.write("fn", b"not this\n", source=object(), stream=STREAM_A, request_id="r1")
    sink.write("fn", b"this\n", source=object(), stream=STREAM_B, request_id="r2")
    await asyncio.wait_for(task, 10)
    sink.close()
    assert [(e.message, e.stream) for e in got] == [("this", STREAM_B)]
