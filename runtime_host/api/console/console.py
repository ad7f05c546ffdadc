"""The web console: pages and live updates at /console on the Invoke API's address.

Owns: the console's routes (CONSOLE_PATH and below), its pages (functions
and their configuration, one page per function with its test-event editor,
charts, sandboxes and live logs, the billing table), its JSON for saved test
events, its server-sent event streams and its static files.
Must not: invoke functions (the page's Invoke button calls the Invoke API
itself, with LogType Tail: the same path as any caller), keep sandbox state
(it reads describe_sandboxes while a page listens), or read the disk on the
loop (the ledger, saved events and log files are read in threads).

Every page is rendered on the server with html.py, which escapes every value
it is given; the JavaScript sets text with textContent only. Pages carry a
Content-Security-Policy allowing nothing but this host's own scripts and
styles, so even a hole in the escaping could not run an inline script, and
nothing is fetched from elsewhere (no CDN, fonts or images from outside).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from importlib import resources
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable, Protocol
from urllib.parse import parse_qs, quote, unquote

from runtime_host.api.console import charts
from runtime_host.api.console.html import Markup, join, json_for_script, render, tag
from runtime_host.api.http_server import Reply, Request
from runtime_host.api.runtime_api import read_limited
from runtime_host.core.config import FunctionConfig
from runtime_host.core.protocol import MAX_SYNC_REQUEST_BYTES
from runtime_host.store import billing_report
from runtime_host.store.ledger import LedgerError, Record, read_records
from runtime_host.store.log_streams import follow_events
from runtime_host.store.saved_events import (MAX_EVENTS_PER_FUNCTION, NAME_RULE, SavedEventError, SavedEventNotFound,
                                             SavedEvents)

log = logging.getLogger("runtime_host.api.console")

CONSOLE_PATH = "/console"
STATIC_FILES = {"console.css": "text/css; charset=utf-8", "console.js": "text/javascript; charset=utf-8",
                "favicon.svg": "image/svg+xml"}
SANDBOX_POLL_S = 0.25          # describe_sandboxes this often while a page listens (4 Hz)
SANDBOX_RESEND_S = 2.0         # unchanged rows are sent again this often (their ages and idle times move)
CHART_POLL_S = 2.0             # the ledger's last hour read again this often while a function page listens
LOG_HEARTBEAT_S = 15.0         # an SSE comment this often when no line comes: a client gone is noticed
LOG_BACKLOG_S = 15 * 60        # live logs open with the last 15 minutes
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                    "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
# The configuration fields a function page shows, in order (GetFunctionConfiguration's names).
CONFIG_FIELDS = ("Runtime", "PackageType", "Handler", "MemorySize", "Timeout", "Architectures", "EphemeralStorage",
                 "Description", "LastModified", "CodeSize", "FunctionArn", "LoggingConfig")


class ConsoleHost(Protocol):
    """What the console reads of the host (Host has it; invoke_api.Invoker is a part of it)."""
    functions: dict[str, FunctionConfig]
    state_dir: Path

    @property
    def stopping(self) -> bool: ...
    def resolve(self, name: str) -> FunctionConfig | None: ...
    def describe_host(self) -> dict: ...
    def describe_sandboxes(self) -> list[dict]: ...


Handler = Callable[[Request, str], Awaitable[Reply]]


def page_reply(body: str, status: int = 200) -> Reply:
    return Reply(status, body.encode("utf-8"), "text/html; charset=utf-8", dict(SECURITY_HEADERS))


def text_reply(status: int, message: str) -> Reply:
    return Reply(status, (message + "\n").encode("utf-8"), "text/plain; charset=utf-8", dict(SECURITY_HEADERS))


def sse(event: str, data: str) -> bytes:
    """One server-sent event; data may hold newlines (each becomes a data: line)."""
    return (f"event: {event}\n" + "".join(f"data: {line}\n" for line in data.split("\n")) + "\n").encode("utf-8")


def function_href(name: str) -> str:
    return f"{CONSOLE_PATH}/functions/{quote(name, safe='')}"


def _fmt_config_value(value: object) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def functions_table(functions: list[FunctionConfig]) -> Markup:
    rows = [tag("tr", join([tag("td", tag("a", fn.name, href=function_href(fn.name))),
                            tag("td", fn.runtime), tag("td", fn.handler),
                            tag("td", f"{fn.memory_mb} MB", class_="num"), tag("td", f"{fn.timeout_s} s", class_="num"),
                            tag("td", fn.architecture), tag("td", fn.description)]))
            for fn in functions]
    head = join(tag("th", t) for t in ("Function", "Runtime", "Handler", "Memory", "Timeout", "Arch", "Description"))
    return tag("table", join([tag("thead", tag("tr", head)), tag("tbody", join(rows))]), class_="grid")


def config_table(conf: dict) -> Markup:
    rows = [tag("tr", join([tag("th", key), tag("td", _fmt_config_value(conf[key]))]))
            for key in CONFIG_FIELDS if key in conf]
    variables = conf.get("Environment", {}).get("Variables", {})
    rows.append(tag("tr", join([tag("th", "Environment"),
                                tag("td", join(tag("div", f"{k}={v}") for k, v in sorted(variables.items()))
                                    if variables else "(none)")])))
    return tag("table", join(rows), class_="config")


def billing_table(records: list[Record]) -> Markup:
    """`runtime-host billing`'s table, as HTML (the same columns and formatting)."""
    rows = billing_report.summarize(records)
    if not rows:
        return tag("p", "No invocation recorded yet.", class_="muted")
    decimals = {title: billing_report._decimals_for([row[key] for row in rows], least)   # the command's own rule
                for title, (key, least) in billing_report.ADAPTIVE_DECIMALS.items()}
    head = join(tag("th", title) for title, _ in billing_report.TABLE_COLUMNS)
    body = []
    for row in rows:
        cells = [tag("td", cell(row, decimals.get(title, 0)), class_=None if i == 0 else "num")
                 for i, (title, cell) in enumerate(billing_report.TABLE_COLUMNS)]
        body.append(tag("tr", join(cells), class_="total" if row["function"] == billing_report.TOTAL else None))
    return tag("table", join([tag("thead", tag("tr", head)), tag("tbody", join(body))]), class_="grid")


class Console:
    def __init__(self, host: ConsoleHost, configuration: Callable[[FunctionConfig], Awaitable[dict]]):
        self.host = host
        self._configuration = configuration     # GetFunctionConfiguration's document (InvokeApi's, off the loop)
        self._static: dict[str, bytes] = {}     # static files by name, read once

    @property
    def state_dir(self) -> Path:
        return Path(self.host.state_dir)

    def route(self, path: str) -> tuple[dict[str, Handler] | None, str]:
        """ROUTES under /console -> (method -> handler, the function or file it names)."""
        rest = path[len(CONSOLE_PATH):].strip("/")
        if rest == "":
            return {"GET": self.index}, ""
        kind, _, tail = rest.partition("/")
        if kind == "static" and tail in STATIC_FILES:
            return {"GET": self.static}, tail
        if kind == "live" and tail == "":
            return {"GET": self.live}, ""
        if kind == "functions" and tail and "/" not in tail:
            return {"GET": self.function_page}, unquote(tail)
        if kind == "logs" and tail and "/" not in tail:
            return {"GET": self.logs}, unquote(tail)
        if kind == "events" and tail:
            # events/<function> lists; events/<function>/<name> is one event ("/" inside names is refused).
            return {"GET": self.saved_event, "PUT": self.save_event, "DELETE": self.delete_event}, tail
        return None, ""

    def _function(self, name: str) -> FunctionConfig | None:
        return self.host.resolve(name)

    # --- pages ---------------------------------------------------------------------
    async def index(self, request: Request, _: str) -> Reply:
        functions = sorted(self.host.functions.values(), key=lambda f: f.name)
        records = await asyncio.to_thread(self._records, None, None)
        host = self.host.describe_host()
        body = render("index.html", functions=functions_table(functions),
                      billing=records if isinstance(records, Markup) else billing_table(records),
                      host=f"pid {host.get('pid')}, {host.get('functions')} function(s), "
                           f"backend {host.get('backend')}")
        return page_reply(render("layout.html", title="runtime-host console", body=body))

    async def function_page(self, request: Request, name: str) -> Reply:
        fn = self._function(name)
        if fn is None:
            body = render("missing.html", name=name)
            return page_reply(render("layout.html", title=f"{name}: not served", body=body), 404)
        conf = await self._configuration(fn)
        names = await asyncio.to_thread(SavedEvents(self.state_dir).names, fn.name)
        records = await asyncio.to_thread(self._records, fn.name, time.time() - charts.WINDOW_S)
        chart = records if isinstance(records, Markup) else charts.render(charts.bucket(records, time.time()))
        options = join(tag("option", n, value=n) for n in names)
        body = render("function.html", name=fn.name, config=config_table(conf), saved_options=options,
                      charts=chart, name_rule=NAME_RULE, max_events=MAX_EVENTS_PER_FUNCTION,
                      page=json_for_script({"function": fn.name, "invokePath": self._invoke_path(fn.name),
                                            "eventsPath": f"{CONSOLE_PATH}/events/{quote(fn.name, safe='')}",
                                            "livePath": f"{CONSOLE_PATH}/live?function={quote(fn.name, safe='')}",
                                            "logsPath": f"{CONSOLE_PATH}/logs/{quote(fn.name, safe='')}",
                                            "savedEvents": names}))
        return page_reply(render("layout.html", title=f"{fn.name} - runtime-host console", body=body))

    @staticmethod
    def _invoke_path(name: str) -> str:
        return f"/2015-03-31/functions/{quote(name, safe='')}/invocations"

    def _records(self, function: str | None, since_epoch: float | None) -> list[Record] | Markup:
        """The ledger's records (in a thread), or a sentence saying why there are none to show."""
        try:
            return read_records(self.state_dir, function, since_epoch)
        except LedgerError as exc:
            return tag("p", str(exc), class_="muted")
        except Exception as exc:            # a damaged database: say so on the page, keep serving
            return tag("p", f"cannot read the billing ledger: {exc}", class_="muted")

    async def static(self, request: Request, name: str) -> Reply:
        data = self._static.get(name)
        if data is None:                    # package files do not change while the host runs: read once
            data = self._static[name] = await asyncio.to_thread(
                lambda: resources.files("runtime_host.api.console").joinpath("static", name).read_bytes())
        return Reply(200, data, STATIC_FILES[name], dict(SECURITY_HEADERS))

    # --- saved test events ----------------------------------------------------------
    def _event_target(self, tail: str) -> tuple[FunctionConfig | None, str | None, Reply | None]:
        raw_function, _, raw_name = tail.partition("/")
        fn = self._function(unquote(raw_function))
        if fn is None:
            return None, None, text_reply(404, f"no function {unquote(raw_function)!r} is served here")
        return fn, (unquote(raw_name) if raw_name else None), None

    async def saved_event(self, request: Request, tail: str) -> Reply:
        fn, name, refusal = self._event_target(tail)
        if refusal is not None:
            return refusal
        store = SavedEvents(self.state_dir)
        if name is None:
            names = await asyncio.to_thread(store.names, fn.name)
            return Reply(200, json.dumps({"events": names}).encode(), "application/json", dict(SECURITY_HEADERS))
        try:
            body = await asyncio.to_thread(store.get, fn.name, name)
        except SavedEventError as exc:
            return text_reply(400, str(exc))
        except SavedEventNotFound as exc:
            return text_reply(404, exc.args[0])
        return Reply(200, body.encode("utf-8"), "application/json", dict(SECURITY_HEADERS))

    async def save_event(self, request: Request, tail: str) -> Reply:
        fn, name, refusal = self._event_target(tail)
        if refusal is not None:
            return refusal
        if name is None:
            return text_reply(405, "PUT a test event at /console/events/<function>/<name>")
        body, size = await read_limited(request.content, MAX_SYNC_REQUEST_BYTES)
        try:
            if size > MAX_SYNC_REQUEST_BYTES:
                raise SavedEventError(f"the test event is larger than {MAX_SYNC_REQUEST_BYTES} bytes, "
                                      "the most a synchronous Invoke takes")
            await asyncio.to_thread(SavedEvents(self.state_dir).save, fn.name, name, body.decode("utf-8"))
        except UnicodeDecodeError:
            return text_reply(400, "the test event is not UTF-8 text")
        except SavedEventError as exc:
            return text_reply(400, str(exc))
        return text_reply(200, f"saved test event {name}")

    async def delete_event(self, request: Request, tail: str) -> Reply:
        fn, name, refusal = self._event_target(tail)
        if refusal is not None:
            return refusal
        if name is None:
            return text_reply(405, "DELETE a test event at /console/events/<function>/<name>")
        try:
            await asyncio.to_thread(SavedEvents(self.state_dir).delete, fn.name, name)
        except SavedEventError as exc:
            return text_reply(400, str(exc))
        except SavedEventNotFound as exc:
            return text_reply(404, exc.args[0])
        return text_reply(200, f"deleted test event {name}")

    # --- live: sandboxes (and a function's charts), logs -----------------------------
    async def live(self, request: Request, _: str) -> Reply:
        function = parse_qs(request.query).get("function", [None])[0]
        if function is not None and self._function(function) is None:
            return text_reply(404, f"no function {function!r} is served here")
        return Reply(200, b"", "text/event-stream; charset=utf-8",
                     {**SECURITY_HEADERS, "X-Accel-Buffering": "no"}, stream=self._live(function))

    async def _live(self, function: str | None) -> AsyncIterator[bytes]:
        """Sandboxes at SANDBOX_POLL_S while the client listens (sent when they
        change, or every SANDBOX_RESEND_S), and a function's charts when its
        ledger records change. Ends when the host stops."""
        last_rows, last_sent, last_charts, charts_due = None, -math.inf, None, 0.0
        loop = asyncio.get_running_loop()
        yield b"retry: 1000\n\n"
        while not self.host.stopping:
            now = loop.time()
            rows = [r for r in self.host.describe_sandboxes() if function is None or r["function"] == function]
            shape = [(r["sandbox"], r["state"], r["invocations"], r["freezes"]) for r in rows]
            if shape != last_rows or now - last_sent >= SANDBOX_RESEND_S:
                yield sse("sandboxes", json.dumps(rows))
                last_rows, last_sent = shape, now
            if function is not None and now >= charts_due:
                charts_due = now + CHART_POLL_S
                records = await asyncio.to_thread(self._records, function, time.time() - charts.WINDOW_S)
                html = records if isinstance(records, Markup) else charts.render(charts.bucket(records, time.time()))
                if html != last_charts:
                    yield sse("charts", html)
                    last_charts = html
            await asyncio.sleep(SANDBOX_POLL_S)

    async def logs(self, request: Request, name: str) -> Reply:
        fn = self._function(name)
        if fn is None:
            return text_reply(404, f"no function {name!r} is served here")
        return Reply(200, b"", "text/event-stream; charset=utf-8",
                     {**SECURITY_HEADERS, "X-Accel-Buffering": "no"}, stream=self._logs(fn.name))

    async def _logs(self, function: str) -> AsyncIterator[bytes]:
        """The function's log events (the last LOG_BACKLOG_S, then each new one), as JSON."""
        queue: asyncio.Queue = asyncio.Queue(maxsize=1000)

        async def pump() -> None:
            try:
                async for event in follow_events(self.state_dir, function, since_epoch=time.time() - LOG_BACKLOG_S):
                    await queue.put(event)
            except Exception:
                log.exception("the console's live logs of %s stopped", function)

        task = asyncio.create_task(pump(), name=f"console logs {function}")
        try:
            yield b"retry: 1000\n\n"
            while not self.host.stopping and not task.done():
                try:
                    event = await asyncio.wait_for(queue.get(), LOG_HEARTBEAT_S)
                except asyncio.TimeoutError:
                    yield b": still here\n\n"
                    continue
                yield sse("log", json.dumps({"t": event.timestamp, "stream": event.stream,
                                             "message": event.message, "requestId": event.request_id}))
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
