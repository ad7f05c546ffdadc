"""Docker's multiplexed output stream: an 8-byte header (stream byte, three
zero bytes, big-endian uint32 length) then the payload. Frames are built here
byte by byte, not with the module's struct, so the format itself is checked."""
from __future__ import annotations

import asyncio
import fcntl
import socket
import struct
import termios

from runtime_host.backend.docker.output import read_container_output
from runtime_host.core.logformat import tail
from runtime_host.store import logs
from runtime_host.store.logs import LogSink

STDOUT, STDERR = 1, 2


def frame(stream: int, payload: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + len(payload).to_bytes(4, "big") + payload


def unread_bytes(sock: socket.socket) -> int:
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]


class Container:
    """A socketpair standing in for a container's attach socket, with a reader running on it."""

    def __init__(self) -> None:
        self.read_end, self.write_end = socket.socketpair()
        self.read_end.setblocking(False)
        self.write_end.setblocking(False)
        self.payloads: list[bytes] = []
        self.reader = asyncio.create_task(read_container_output(self.read_end, self.payloads.append))

    async def send(self, data: bytes) -> None:
        await asyncio.get_running_loop().sock_sendall(self.write_end, data)

    async def send_and_wait_until_read(self, data: bytes) -> None:
        """Sends data and returns once the reader has taken it all off the socket,
        so the next send arrives in a separate recv()."""
        await self.send(data)
        for _ in range(10_000):
            await asyncio.sleep(0)
            if unread_bytes(self.read_end) == 0:
                return
        raise AssertionError("the reader never read what was sent")

    async def close_and_finish(self) -> list[bytes]:
        self.write_end.close()
        await asyncio.wait_for(self.reader, timeout=5)
        return self.payloads


async def test_one_stdout_frame_is_delivered_as_its_payload():
    container = Container()
    await container.send(frame(STDOUT, b"hello\n"))
    assert await container.close_and_finish() == [b"hello\n"]


async def test_stderr_frames_are_delivered_like_stdout_frames():
    container = Container()
    await container.send(frame(STDERR, b"oops\n"))
    assert await container.close_and_finish() == [b"oops\n"]


async def test_several_frames_in_one_recv_are_delivered_in_order():
    container = Container()
    await container.send(frame(STDOUT, b"one\n") + frame(STDERR, b"two\n") + frame(STDOUT, b"three\n"))
    assert await container.close_and_finish() == [b"one\n", b"two\n", b"three\n"]


async def test_frame_split_inside_its_header_is_delivered_whole():
    container = Container()
    data = frame(STDOUT, b"split header\n")
    await container.send_and_wait_until_read(data[:3])
    assert container.payloads == []
    await container.send(data[3:])
    assert await container.close_and_finish() == [b"split header\n"]


async def test_frame_split_inside_its_payload_is_delivered_whole():
    container = Container()
    data = frame(STDOUT, b"split payload\n")
    await container.send_and_wait_until_read(data[:12])
    assert container.payloads == []
    await container.send(data[12:])
    assert await container.close_and_finish() == [b"split payload\n"]


async def test_frame_sent_one_byte_at_a_time_is_delivered_once_whole():
    container = Container()
    for byte in frame(STDOUT, b"drip"):
        await container.send_and_wait_until_read(bytes([byte]))
    assert await container.close_and_finish() == [b"drip"]


async def test_recv_ending_mid_frame_delivers_the_whole_frames_before_it():
    container = Container()
    second = frame(STDERR, b"second\n")
    await container.send_and_wait_until_read(frame(STDOUT, b"first\n") + second[:5])
    assert container.payloads == [b"first\n"]
    await container.send(second[5:])
    assert await container.close_and_finish() == [b"first\n", b"second\n"]


async def test_frame_larger_than_one_recv_is_delivered_whole():
    container = Container()
    payload = bytes(range(256)) * 1024          # 256 KiB, more than the reader's 64 KiB recv
    await container.send(frame(STDOUT, payload))
    assert await container.close_and_finish() == [payload]


async def test_payload_bytes_that_look_like_a_header_are_payload():
    container = Container()
    payload = bytes([2, 0, 0, 0, 0, 0, 0, 1]) + b"x"
    await container.send(frame(STDOUT, payload))
    assert await container.close_and_finish() == [payload]


async def test_incomplete_frame_at_eof_is_not_delivered():
    container = Container()
    await container.send(frame(STDOUT, b"complete\n") + frame(STDOUT, b"cut off")[:10])
    assert await container.close_and_finish() == [b"complete\n"]


async def test_reader_closes_its_socket_at_eof():
    container = Container()
    await container.close_and_finish()
    assert container.read_end.fileno() == -1


def test_tail_is_the_last_4096_bytes():
    log = b"a" * 1000 + bytes(range(256)) * 16
    assert tail(log) == log[-4096:]
    assert len(tail(log)) == 4096


def test_tail_of_a_short_log_is_the_whole_log():
    assert tail(b"START RequestId: x Version: $LATEST\n") == b"START RequestId: x Version: $LATEST\n"


def test_tail_of_a_bytearray_is_bytes():
    assert type(tail(bytearray(b"abc"))) is bytes


# --- the per-function log file: each source's lines whole ------------------------------

def sink_in(tmp_path) -> LogSink:
    return LogSink(tmp_path / "logs", echo=None)


def log_lines(sink: LogSink, function: str = "fn") -> list[bytes]:
    return (sink.log_dir / f"{function}.log").read_bytes().splitlines(keepends=True)


def test_two_sources_interleaving_partial_lines_each_keep_their_lines_whole(tmp_path):
    sink = sink_in(tmp_path)
    a, b = object(), object()
    sink.write("fn", b"EVID", source=a)
    sink.write("fn", b"START RequestId: 1\n")                 # a platform line, between a's chunks
    sink.write("fn", b"bbb one, ", source=b)
    sink.write("fn", b"aaa one\naaa t", source=a)
    sink.write("fn", b"bbb one ends\nbbb two", source=b)
    sink.write("fn", b"wo\n", source=a)
    sink.write("fn", b"\n", source=b)
    sink.close()
    assert sorted(log_lines(sink)) == sorted([b"START RequestId: 1\n", b"EVIDaaa one\n", b"aaa two\n",
                                              b"bbb one, bbb one ends\n", b"bbb two\n"])


def test_a_chunk_of_whole_lines_is_written_at_once(tmp_path):
    sink = sink_in(tmp_path)
    sink.write("fn", b"one\ntwo\n", source=object())
    assert log_lines(sink) == [b"one\n", b"two\n"]


def test_an_unfinished_line_waits_for_its_newline(tmp_path):
    sink = sink_in(tmp_path)
    a = object()
    sink.write("fn", b"done\nhalf", source=a)
    assert log_lines(sink) == [b"done\n"]
    sink.write("fn", b" and half\n", source=a)
    assert log_lines(sink) == [b"done\n", b"half and half\n"]


def test_sources_of_different_functions_go_to_their_own_files(tmp_path):
    sink = sink_in(tmp_path)
    a, b = object(), object()
    sink.write("f1", b"one ", source=a)
    sink.write("f2", b"two ", source=b)
    sink.write("f1", b"ends\n", source=a)
    sink.write("f2", b"ends\n", source=b)
    assert log_lines(sink, "f1") == [b"one ends\n"]
    assert log_lines(sink, "f2") == [b"two ends\n"]


def test_an_unfinished_line_is_written_with_a_newline_when_the_sink_closes(tmp_path):
    sink = sink_in(tmp_path)
    sink.write("fn", b"no newline ever", source=object())
    sink.close()
    assert log_lines(sink) == [b"no newline ever\n"]


async def test_an_unfinished_line_is_written_with_a_newline_after_a_short_time(tmp_path, monkeypatch):
    monkeypatch.setattr(logs, "PARTIAL_LINE_MAX_WAIT_S", 0.05)
    sink = sink_in(tmp_path)
    a = object()
    sink.write("fn", b"its source ended", source=a)
    await asyncio.sleep(0.2)
    assert log_lines(sink) == [b"its source ended\n"]
    sink.write("fn", b"next line\n", source=a)               # what comes later starts a line of its own
    assert log_lines(sink) == [b"its source ended\n", b"next line\n"]


def test_a_line_reaching_the_size_cap_is_written_rather_than_held(tmp_path, monkeypatch):
    monkeypatch.setattr(logs, "PARTIAL_LINE_MAX_BYTES", 1000)
    sink = sink_in(tmp_path)
    a = object()
    for _ in range(25):
        sink.write("fn", b"x" * 100, source=a)                # 2,500 bytes, no newline
    assert len(b"".join(log_lines(sink))) >= 2000             # in lines of the cap, not all held
    sink.write("fn", b"\n" + b"y" * 5000, source=a)          # a line's rest beyond the cap
    assert b"y" * 5000 + b"\n" in log_lines(sink)
    sink.close()
    assert b"".join(log_lines(sink)).replace(b"\n", b"") == b"x" * 2500 + b"y" * 5000   # nothing lost


def test_a_platform_line_written_meanwhile_does_not_cut_a_sources_line(tmp_path):
    sink = sink_in(tmp_path)
    a = object()
    sink.write("fn", b"still wri", source=a)
    sink.write("fn", b"END RequestId: 1\n")
    sink.write("fn", b"ting\n", source=a)
    assert log_lines(sink) == [b"END RequestId: 1\n", b"still writing\n"]


def test_echo_shows_whole_lines_prefixed_by_the_function(tmp_path):
    import io
    echo = io.StringIO()
    sink = LogSink(tmp_path / "logs", echo=echo)
    a, b = object(), object()
    sink.write("fn", b"hel", source=a)
    sink.write("fn", b"wor", source=b)
    sink.write("fn", b"lo\n", source=a)
    sink.write("fn", b"ld\n", source=b)
    assert echo.getvalue() == "fn | hello\nfn | world\n"
