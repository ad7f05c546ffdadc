"""Both APIs fuzzed over real sockets (issue 16, "Bad input"), as RAPID's
rapi_fuzz_test.go fuzzes its router: random paths, methods, headers, request
ids, chunked framings and bodies, against a real Host (scheduler, pools,
Runtime API, Invoke API, ledger) on the fake backend, so each example costs
milliseconds and CI runs a few hundred of them; `make fuzz` runs thousands
(FUZZ_EXAMPLES).

What must hold for every example:
- the host never answers a client's mistake with a 5xx (a ServiceException
  here is a bug of ours, not the caller's), and never hangs: each request
  is answered or its connection closed within the server's timeouts;
- an answer reaches only its own caller: every successful invocation echoes
  exactly the payload its caller sent, including when several callers send
  at once, so an event or a result handed to the wrong sandbox or caller
  shows as a mismatch;
- after each burst, the host still serves a plain invocation correctly.

The host runs on its own event loop in a thread for the whole module;
hypothesis drives plain blocking sockets at it, so what reaches the server is
exactly the bytes written (framing included), not what a client library
would tidy up.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import socket
import threading
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime_host.api.invoke_api import InvokeApi
from tests.unit.fakehost import fake_host, function

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get("FUZZ_RANDOM"),
                suppress_health_check=list(HealthCheck))
SOCKET_TIMEOUT_S = 10.0        # far beyond the server's own timeouts below: reaching it is a hang
SERVER_TIMEOUTS = {"idle_timeout_s": 1.0, "body_timeout_s": 0.5}
BASE = "/2015-03-31/functions"
RUNTIME = "/2018-06-01/runtime"
# Keys the fake runtime obeys (tests/unit/fakehost.py): a payload carrying one would make the
# function misbehave on purpose, which is not the caller's mistake.
SCRIPT_KEYS = ("echo", "sleep_s", "print", "exit", "hang", "error")


# --- the host, on a loop of its own --------------------------------------------------------

class HostThread:
    """A fake-backend Host with its Invoke API, served from a background loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.ready = concurrent.futures.Future()
        self.stop = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.host, self.port = self.ready.result(timeout=30)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self.stop = asyncio.Event()
        try:
            async with fake_host(function("fn", reserved_concurrency=8, timeout_s=3)) as host:
                server = await InvokeApi(host).start("127.0.0.1", 0, **SERVER_TIMEOUTS)
                self.ready.set_result((host, server.sockets[0].getsockname()[1]))
                await self.stop.wait()
                server.close()
        except BaseException as exc:              # a host that cannot start fails every test at once
            if not self.ready.done():
                self.ready.set_exception(exc)
            raise

    def call(self, fn):
        """Runs fn() on the host's loop; its result."""
        async def run():
            return fn()
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=10)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(timeout=30)


@pytest.fixture(scope="module")
def served():
    host = HostThread()
    try:
        yield host
    finally:
        host.close()


# --- raw HTTP ------------------------------------------------------------------------------

def exchange(port: int, raw: bytes, *, source: str | None = None, address: str = "127.0.0.1") -> bytes:
    """Writes raw bytes, reads until the server closes (every request says
    Connection: close; one whose body never completes meets the server's
    body timeout). Raises on a hang: no close within SOCKET_TIMEOUT_S. The
    socket is not half-closed: the server takes a caller's EOF as the caller
    gone, as it should."""
    with socket.socket() as s:
        s.settimeout(SOCKET_TIMEOUT_S)
        if source:
            s.bind((source, 0))
        s.connect((address, port))
        try:
            s.sendall(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass                              # the server may answer and close before reading it all
        out = bytearray()
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            except socket.timeout:
                raise AssertionError(f"no answer and no close in {SOCKET_TIMEOUT_S} s to {raw[:300]!r}") from None
            if not chunk:
                break
            out += chunk
    return bytes(out)


def statuses(answer: bytes) -> list[int]:
    """The status of every response in what the server wrote."""
    found = []
    for line in answer.split(b"\r\n"):
        if line.startswith(b"HTTP/1.1 ") and line[9:12].isdigit():
            found.append(int(line[9:12]))
    return found


def request(method: str, path: str, headers: list[tuple[str, str]], body: bytes = b"",
            framing: str = "length", chunks: list[int] | None = None) -> bytes:
    head = [f"{method} {path} HTTP/1.1", "Host: fuzz", "Connection: close"]
    head += [f"{k}: {v}" for k, v in headers]
    if framing == "length":
        head.append(f"Content-Length: {len(body)}")
        payload = body
    elif framing == "chunked":
        head.append("Transfer-Encoding: chunked")
        payload, rest, sizes = b"", body, list(chunks or [])
        while rest:
            size = max(1, sizes.pop(0) if sizes else len(rest))
            payload += b"%x\r\n%s\r\n" % (min(size, len(rest)), rest[:size])
            rest = rest[size:]
        payload += b"0\r\n\r\n"
    else:                                     # "none": no framing header at all
        payload = body
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload


def invoke_ok(port: int, payload: bytes) -> bytes:
    """A plain, correct invoke: its body (must be 200)."""
    answer = exchange(port, request("POST", f"{BASE}/fn/invocations", [("Content-Type", "application/json")],
                                    payload))
    head, _, body = answer.partition(b"\r\n\r\n")
    assert statuses(head) == [200], answer[:500]
    return body


# --- strategies ----------------------------------------------------------------------------

token = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126, blacklist_characters="/?#%"),
                min_size=1, max_size=12)
segment = st.one_of(st.sampled_from(["fn", "nope", "fn:$LATEST", "fn:1", "fn:alias", "%3A", "..", "%2F", "%00",
                                     "invocations", "configuration", "versions", "aliases", "event-invoke-config",
                                     "response-streaming-invocations", "a" * 200]), token)
invoke_paths = st.one_of(
    st.builds(lambda name, tail: f"{BASE}/{name}/{tail}", segment,
              st.sampled_from(["invocations", "configuration", "versions", "aliases", "aliases/x", "", "x/y"])),
    st.builds(lambda parts: "/" + "/".join(parts), st.lists(segment, max_size=6)),
    st.sampled_from(["/2021-11-15/functions/fn/response-streaming-invocations",
                     "/2019-09-25/functions/fn/event-invoke-config", "/runtime-host/sandboxes", "/", "*", BASE,
                     f"{BASE}/fn/code", "/2021-10-31/functions/fn/url", "/metrics", "/console",
                     f"{BASE}/fn/invocations?Qualifier=%24LATEST", f"{BASE}/fn/invocations?Qualifier=",
                     f"{BASE}/fn/invocations?x=%zz"]))
header_value = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
invoke_headers = st.lists(st.tuples(
    st.sampled_from(["X-Amz-Invocation-Type", "X-Amz-Log-Type", "X-Amz-Client-Context", "Content-Encoding",
                     "Content-Type", "X-Amzn-Trace-Id", "Expect", "X-Amz-Qualifier", "Accept"]),
    st.one_of(header_value, st.sampled_from(["RequestResponse", "Event", "DryRun", "Tail", "None", "gzip",
                                             "deflate", "br", "identity", "100-continue", "e30=", "!!"]))),
    max_size=4)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)
bodies = st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=300),
    st.sampled_from([b"", b"{", b"[" * 5000, b"NaN", b'{"a": Infinity}', b"\xff\xfe", b'"\\ud800"', b"1e999"]))
methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "BREW"])


def _scripted(body: bytes) -> bool:
    """Whether a body would make the fake runtime misbehave on purpose."""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return False
    return isinstance(value, dict) and any(k in value for k in SCRIPT_KEYS)


# --- the Invoke API --------------------------------------------------------------------------

@FUZZ
@given(method=methods, path=invoke_paths, headers=invoke_headers, body=bodies,
       framing=st.sampled_from(["length", "chunked", "none"]), chunks=st.lists(st.integers(1, 64), max_size=8))
def test_invoke_api_never_answers_a_callers_mistake_with_5xx_or_hangs(served, method, path, headers, body,
                                                                      framing, chunks):
    if _scripted(body):
        body = b"{}"
    answer = exchange(served.port, request(method, path, headers, body, framing, chunks))
    codes = statuses(answer)
    assert codes, f"no answer to {method} {path} {headers} {body[:80]!r}"
    assert all(code < 500 for code in codes), answer[:600]


@FUZZ
@given(framing=st.sampled_from(["bad-size", "no-end", "short-length", "long-length", "two-lengths",
                                "length-and-chunked", "bad-trailer", "huge-size", "bare-lf"]),
       body=st.binary(min_size=1, max_size=64))
def test_broken_framing_is_a_4xx_or_a_close_never_a_5xx_or_a_hang(served, framing, body):
    head = f"POST {BASE}/fn/invocations HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n"
    raw = {
        "bad-size": head + "Transfer-Encoding: chunked\r\n\r\nzz\r\n",
        "no-end": head + f"Transfer-Encoding: chunked\r\n\r\n{len(body):x}\r\n",
        "short-length": head + f"Content-Length: {len(body) + 10}\r\n\r\n",
        "long-length": head + "Content-Length: 99999999999999999999\r\n\r\n",
        "two-lengths": head + f"Content-Length: {len(body)}\r\nContent-Length: {len(body) + 1}\r\n\r\n",
        "length-and-chunked": head + f"Content-Length: {len(body)}\r\nTransfer-Encoding: chunked\r\n\r\n",
        "bad-trailer": head + f"Transfer-Encoding: chunked\r\n\r\n{len(body):x}\r\n",
        "huge-size": head + "Transfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\n",
        "bare-lf": head.replace("\r\n", "\n") + f"Content-Length: {len(body)}\n\n",
    }[framing].encode("latin-1") + body
    if framing == "bad-trailer":
        raw += b"\r\n0\r\nnot a header line\r\n\r\n"
    codes = statuses(exchange(served.port, raw))
    assert all(code < 500 for code in codes), (framing, codes)


@FUZZ
@given(payloads=st.lists(json_values.filter(lambda v: not (isinstance(v, dict) and any(k in v for k in SCRIPT_KEYS))),
                         min_size=1, max_size=6),
       junk=st.lists(st.tuples(methods, invoke_paths, bodies), max_size=3))
def test_concurrent_callers_each_get_their_own_answer(served, payloads, junk):
    """Callers at once, each with a payload tagged by a nonce, among junk
    requests: every 200 echoes exactly its own caller's payload."""
    tagged = [json.dumps({"nonce": str(uuid.uuid4()), "value": v}).encode() for v in payloads]
    with concurrent.futures.ThreadPoolExecutor(len(tagged) + len(junk)) as pool:
        answers = [pool.submit(invoke_ok, served.port, p) for p in tagged]
        for method, path, body in junk:
            pool.submit(exchange, served.port, request(method, path, [], body))
        for sent, answer in zip(tagged, answers):
            assert json.loads(answer.result()) == json.loads(sent)


# --- the Runtime API -------------------------------------------------------------------------

runtime_paths = st.one_of(
    st.builds(lambda rid, tail: f"{RUNTIME}/invocation/{rid}/{tail}",
              st.one_of(st.uuids().map(str), token, st.sampled_from(["", "%00", "..", "next"])),
              st.sampled_from(["response", "error", "", "response/x"])),
    st.sampled_from([f"{RUNTIME}/init/error", f"{RUNTIME}/invocation/next/", f"{RUNTIME}/restore/next",
                     "/2020-01-01/extension/register", "/2020-01-01/extension/event/next",
                     "/2020-01-01/extension/init/error", "/2020-01-01/extension/exit/error",
                     "/2022-07-01/telemetry", "/2020-08-15/logs", "/runtime-host/stem", "/", "/2018-06-01/"]),
    st.builds(lambda parts: "/" + "/".join(parts), st.lists(segment, max_size=5)))
runtime_headers = st.lists(st.tuples(
    st.sampled_from(["Lambda-Runtime-Function-Error-Type", "Lambda-Runtime-Function-Response-Mode",
                     "Lambda-Extension-Name", "Lambda-Extension-Identifier", "Lambda-Extension-Accept-Feature",
                     "Content-Type", "Trailer", "Lambda-Runtime-Function-XRay-Error-Cause"]),
    st.one_of(header_value, st.sampled_from(["streaming", "buffered", "Unhandled", "accountId", "nope",
                                             str(uuid.UUID(int=0))]))), max_size=3)


def _sandbox_address(served: HostThread) -> str:
    """The address of a warm sandbox of fn (one plain invocation makes sure there is one)."""
    invoke_ok(served.port, b'{"warm": true}')
    sandboxes = served.call(lambda: [s for s in served.host.sandboxes() if s.container is not None])
    assert sandboxes, "no sandbox after an invocation"
    return sandboxes[0].container.address


@FUZZ
@given(method=methods, path=runtime_paths, headers=runtime_headers, body=bodies,
       framing=st.sampled_from(["length", "chunked"]), chunks=st.lists(st.integers(1, 64), max_size=4),
       stranger=st.booleans())
def test_runtime_api_never_answers_with_5xx_and_the_function_still_serves(served, method, path, headers, body,
                                                                         framing, chunks, stranger):
    """Requests a runtime could make, from a sandbox's own address or a
    stranger's, none of them a GET next (which rightly waits for an event):
    no 5xx, a stranger is refused, and the next invocation is answered
    with its own payload."""
    if method == "GET" and path.rstrip("/").endswith(("invocation/next", "event/next")):
        method = "POST"
    address = _sandbox_address(served)
    runtime_api = served.call(lambda: served.host.runtime_api_address)
    api_host, _, api_port = runtime_api.rpartition(":")
    source = "127.0.0.1" if stranger else address
    answer = exchange(int(api_port), request(method, path, headers, body, framing, chunks),
                      source=source, address=api_host)
    codes = statuses(answer)
    assert codes and all(code < 500 for code in codes), (method, path, headers, answer[:600])
    if stranger and source != address:
        assert all(code in (400, 403, 404, 405) for code in codes), answer[:600]
    nonce = json.dumps({"after": str(uuid.uuid4())}).encode()
    assert json.loads(invoke_ok(served.port, nonce)) == json.loads(nonce)
