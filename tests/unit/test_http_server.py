"""http_server: the lean HTTP/1.1 server under both APIs, over a real
loopback socket, with raw bytes from the client side (what runtime clients
written in any language may send)."""
from __future__ import annotations

import asyncio

from runtime_host.api.http_server import Reply, Request, start_server


async def echo_server():
    seen: list[Request] = []

    async def serve(request: Request) -> Reply:
        body = await request.content.read()
        seen.append(request)
        if request.path == "/slow":
            await asyncio.sleep(0.05)
        return Reply(200, f"{request.method} {request.path} {len(body)}".encode(), "text/plain",
                     {"X-Request": request.headers.get("X-Request", "")})

    server = await start_server(serve, host="127.0.0.1", port=0)
    port = server.sockets[0].getsockname()[1]
    return server, port, seen


async def exchange(port: int, raw: bytes, until_closed: bool = False, answers: int = 1) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    data = b""
    try:
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), 5)
            if not chunk:
                break
            data += chunk
            if not until_closed and data.count(b"HTTP/1.1 ") >= answers and _complete(data, answers):
                break
    finally:
        writer.close()
    return data


def _complete(data: bytes, answers: int) -> bool:
    rest = data
    for _ in range(answers):
        head, sep, rest = rest.partition(b"\r\n\r\n")
        if not sep:
            return False
        length = int(next(l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")))
        if len(rest) < length:
            return False
        rest = rest[length:]
    return True


async def test_pipelined_requests_are_answered_in_order_on_one_connection():
    server, port, _ = await echo_server()
    try:
        raw = (b"GET /slow HTTP/1.1\r\nHost: x\r\nX-Request: one\r\n\r\n"
               b"POST /b HTTP/1.1\r\nHost: x\r\nX-Request: two\r\nContent-Length: 3\r\n\r\nabc")
        data = await exchange(port, raw, answers=2)
    finally:
        server.close()
    first, second = data.index(b"GET /slow 0"), data.index(b"POST /b 3")
    assert first < second, data
    assert data.count(b"Date: ") == 2 and b"X-Request: one" in data and b"X-Request: two" in data


async def test_a_chunked_body_is_read_whole():
    server, port, seen = await echo_server()
    try:
        raw = (b"POST /r HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n")
        data = await exchange(port, raw)
    finally:
        server.close()
    assert b"POST /r 7" in data and seen[0].path == "/r"


async def test_query_is_split_from_the_path():
    server, port, seen = await echo_server()
    try:
        await exchange(port, b"GET /runtime-host/stem?format=sh HTTP/1.1\r\nHost: x\r\n\r\n")
    finally:
        server.close()
    assert (seen[0].path, seen[0].query) == ("/runtime-host/stem", "format=sh")


async def test_connection_close_is_honoured_and_said():
    server, port, _ = await echo_server()
    try:
        data = await exchange(port, b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", until_closed=True)
    finally:
        server.close()
    assert b"Connection: close\r\n" in data and data.endswith(b"GET /a 0")


async def test_a_malformed_request_gets_400_and_the_connection_ends():
    server, port, seen = await echo_server()
    try:
        data = await exchange(port, b"NOT HTTP AT ALL\r\n\r\n", until_closed=True)
    finally:
        server.close()
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n") and not seen


async def test_a_big_answer_arrives_whole():
    body = bytes(range(256)) * 20000                        # 5 MB: written after the head, not copied into it

    async def serve(request: Request) -> Reply:
        return Reply(200, body)

    server = await start_server(serve, host="127.0.0.1", port=0)
    port = server.sockets[0].getsockname()[1]
    try:
        data = await exchange(port, b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
    finally:
        server.close()
    assert data.split(b"\r\n\r\n", 1)[1] == body


async def test_expect_100_continue_gets_the_go_ahead_before_the_body():
    server, port, _ = await echo_server()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /r HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        await writer.drain()
        go_ahead = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
        writer.write(b"hello")
        await writer.drain()
        answer = await asyncio.wait_for(reader.readuntil(b"POST /r 5"), 2)
        writer.close()
    finally:
        server.close()
    assert go_ahead == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")


async def test_the_trailers_of_a_chunked_body_reach_the_handler_after_its_last_chunk():
    # A streaming runtime reports a mid-stream failure in trailers (spec §2.1).
    seen = {}

    async def serve(request: Request) -> Reply:
        first = await request.content.readany()
        seen["first"], seen["trailers_during"] = first, dict(request.content.trailers)
        seen["rest"] = await request.content.read()
        seen["trailers"] = request.content.trailers
        return Reply(202, b"{}")

    server = await start_server(serve, host="127.0.0.1", port=0)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /r HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                     b"Trailer: Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body\r\n\r\n"
                     b"4\r\npart\r\n")
        await writer.drain()
        await asyncio.sleep(0.1)                 # the handler has the first chunk before the rest is sent
        writer.write(b"3\r\nial\r\n0\r\nLambda-Runtime-Function-Error-Type: Error\r\n"
                     b"Lambda-Runtime-Function-Error-Body: eyJ9\r\n\r\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.readuntil(b"{}"), 2)
        writer.close()
    finally:
        server.close()
    assert answer.startswith(b"HTTP/1.1 202 ")
    assert seen["first"] == b"part" and seen["trailers_during"] == {}
    assert seen["rest"] == b"ial"
    assert seen["trailers"] == {"Lambda-Runtime-Function-Error-Type": "Error",
                                "Lambda-Runtime-Function-Error-Body": "eyJ9"}


async def test_a_streamed_answer_is_sent_chunk_by_chunk_as_it_is_produced():
    release = asyncio.Event()

    async def produce():
        yield b"first"
        await release.wait()
        yield b"second"

    async def serve(request: Request) -> Reply:
        return Reply(200, content_type="application/vnd.amazon.eventstream", stream=produce())

    server = await start_server(serve, host="127.0.0.1", port=0)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /s HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
        first = await asyncio.wait_for(reader.readuntil(b"first\r\n"), 2)   # before the producer goes on
        release.set()
        rest = await asyncio.wait_for(reader.readuntil(b"0\r\n\r\n"), 2)
        writer.write(b"GET /s HTTP/1.1\r\nHost: x\r\n\r\n")                 # the connection is still usable
        again = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
        writer.close()
    finally:
        server.close()
    assert b"Transfer-Encoding: chunked\r\n" in head and b"Content-Length" not in head
    assert first == b"5\r\nfirst\r\n" and rest == b"6\r\nsecond\r\n0\r\n\r\n"
    assert again.startswith(b"HTTP/1.1 200 ")


async def test_a_client_that_leaves_mid_stream_closes_the_producer():
    closed = asyncio.Event()

    async def produce():
        try:
            while True:
                yield b"x" * 65536
                await asyncio.sleep(0.01)
        finally:
            closed.set()

    async def serve(request: Request) -> Reply:
        return Reply(200, stream=produce())

    server = await start_server(serve, host="127.0.0.1", port=0)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /s HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.wait_for(reader.readexactly(1000), 2)
        writer.close()
        await asyncio.wait_for(closed.wait(), 5)
    finally:
        server.close()


async def test_a_request_line_over_the_limit_gets_400_naming_it():
    server, port, seen = await echo_server()
    try:
        data = await exchange(port, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", until_closed=True)
    finally:
        server.close()
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n") and b"8190 bytes" in data and not seen


async def test_a_body_larger_than_the_buffer_pauses_reading_and_arrives_whole():
    body = bytes(range(256)) * 8192                        # 2 MB: eight times the high-water mark

    async def serve(request: Request) -> Reply:
        await asyncio.sleep(0.2)                          # the client fills the buffer meanwhile
        data = await request.content.read()
        return Reply(200, str(len(data) == len(body) and data == body).encode(), "text/plain")

    server = await start_server(serve, host="127.0.0.1", port=0)
    port = server.sockets[0].getsockname()[1]
    try:
        data = await exchange(port, b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    finally:
        server.close()
    assert data.endswith(b"\r\n\r\nTrue")
