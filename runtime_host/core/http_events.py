"""Function URLs' HTTP mapping, without an event loop (docs/spec-additions.md §6).

Owns: the facts of a function URL's configuration (invoke modes, auth
types), which host name or path addresses which function, the request event
of payload format 2.0 built from an HTTP request, the HTTP answer Lambda
makes of a function's result (statusCode, headers, cookies, body,
isBase64Encoded, or a plain value as a 200 JSON body), the answer to a
function error, and the metadata prelude of a streamed HTTP response
(JSON, then 8 NUL bytes).
Must not: read sockets, wait, or invoke anything (api/function_urls.py does).
"""
from __future__ import annotations

import base64
import binascii
import json
import re
import time
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote

# --- a function URL's configuration (CreateFunctionUrlConfig's fields) -------------
INVOKE_MODE_BUFFERED = "BUFFERED"
INVOKE_MODE_RESPONSE_STREAM = "RESPONSE_STREAM"
INVOKE_MODES = (INVOKE_MODE_BUFFERED, INVOKE_MODE_RESPONSE_STREAM)
AUTH_TYPE_NONE = "NONE"
AUTH_TYPE_IAM = "AWS_IAM"
AUTH_TYPES = (AUTH_TYPE_NONE,)          # AWS_IAM needs SigV4 checks this host does not make


@dataclass(frozen=True)
class UrlConfig:
    """`url = true` or `url = { invoke_mode = "...", auth_type = "NONE" }` in function.toml."""
    invoke_mode: str = INVOKE_MODE_BUFFERED
    auth_type: str = AUTH_TYPE_NONE

    @property
    def streams(self) -> bool:
        return self.invoke_mode == INVOKE_MODE_RESPONSE_STREAM


# --- addressing -----------------------------------------------------------------------
# Lambda: https://<url-id>.lambda-url.<region>.on.aws. Here the url-id is the
# function's name: http://<name>.lambda-url.localhost:<port>/ (browsers and curl
# resolve every *.localhost name to loopback), or http://127.0.0.1:<port>/<name>/
# for clients that cannot choose a host name.
DOMAIN_MARKER = ".lambda-url."
LOCAL_DOMAIN = "lambda-url.localhost"


def host_without_port(host: str) -> str:
    host = host.strip()
    if host.startswith("["):                             # [::1]:9001
        return host[:host.find("]") + 1] if "]" in host else host
    name, sep, port = host.rpartition(":")
    return name if sep and port.isdigit() else host


def url_id_of_host(host: str) -> str | None:
    """The url-id a Host header names (`<url-id>.lambda-url.<anything>`), lower case as
    host names are; None when the host name does not name one."""
    name = host_without_port(host).lower().rstrip(".")
    if DOMAIN_MARKER not in name:
        return None
    url_id = name[:name.find(DOMAIN_MARKER)]
    return url_id or None


def split_path_address(raw_path: str) -> tuple[str, str]:
    """`/<name>/rest...` -> (name, "/rest..."); the rest is "/" when empty."""
    name, sep, rest = raw_path.lstrip("/").partition("/")
    return unquote(name), "/" + rest if sep else "/"


def local_url(name: str, port: int) -> str:
    """The URL a function is printed with (host names are lower case)."""
    return f"http://{name.lower()}.{LOCAL_DOMAIN}:{port}/"


# --- the request event (payload format 2.0) ----------------------------------------------
PAYLOAD_VERSION = "2.0"
ROUTE_KEY = "$default"                  # function URLs have no routes or stages: placeholders
STAGE = "$default"
ANONYMOUS_ACCOUNT = "anonymous"         # requestContext.accountId with auth type NONE
PROTOCOL = "HTTP/1.1"
# Bodies Lambda hands over as text (isBase64Encoded false); every other type,
# a missing one and application/x-www-form-urlencoded included, is base64.
TEXT_MEDIA_TYPES = frozenset({"application/json", "application/xml", "application/javascript"})
# Hop-by-hop fields are the connection's, not the request's: not in the event.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "te", "trailer",
                        "transfer-encoding", "upgrade"})
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True)
class HttpRequest:
    """What the event is built from: the request as it arrived, and where."""
    method: str
    raw_path: str                       # as sent, percent-encoding kept
    raw_query: str
    headers: tuple[tuple[str, str], ...]   # as sent, in order, repeats kept
    body: bytes
    source_ip: str
    domain_name: str                    # the host name the request addressed, without the port
    url_id: str
    port: int                           # where the function URLs listen (x-forwarded-port)
    request_id: str
    trace_id: str                       # X-Ray header the invocation gets as well
    epoch_ms: int


def is_text(content_type: str | None) -> bool:
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    return media_type.startswith("text/") or media_type in TEXT_MEDIA_TYPES


def request_time(epoch_ms: int) -> str:
    """requestContext.time: `12/Mar/2020:19:03:58 +0000` (English month, whatever the locale)."""
    t = time.gmtime(epoch_ms / 1000)
    return f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"


def query_parameters(raw_query: str) -> dict[str, str]:
    """Decoded, a repeated key's values joined with commas, as format 2.0 does."""
    params: dict[str, str] = {}
    for key, value in parse_qsl(raw_query, keep_blank_values=True):
        params[key] = f"{params[key]},{value}" if key in params else value
    return params


def event_headers(headers: tuple[tuple[str, str], ...]) -> tuple[dict[str, str], list[str]]:
    """(headers, cookies): names lower case, repeats joined with commas; every
    Cookie header's pairs become the cookies list and leave the headers."""
    joined: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        key = name.lower()
        if key in HOP_BY_HOP:
            continue
        if key == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
            continue
        joined[key] = f"{joined[key]},{value}" if key in joined else value
    return joined, cookies


def build_event(req: HttpRequest) -> dict:
    """The event a function URL hands its function. Keys Lambda leaves out
    when empty (cookies, queryStringParameters, body) are left out."""
    headers, cookies = event_headers(req.headers)
    headers.update({"host": headers.get("host", req.domain_name), "x-amzn-trace-id": req.trace_id.split(";")[0],
                    "x-forwarded-for": req.source_ip, "x-forwarded-port": str(req.port),
                    "x-forwarded-proto": "http"})
    event: dict = {"version": PAYLOAD_VERSION, "routeKey": ROUTE_KEY, "rawPath": req.raw_path,
                   "rawQueryString": req.raw_query}
    if cookies:
        event["cookies"] = cookies
    event["headers"] = headers
    if req.raw_query:
        event["queryStringParameters"] = query_parameters(req.raw_query)
    event["requestContext"] = {
        "accountId": ANONYMOUS_ACCOUNT, "apiId": req.url_id, "domainName": req.domain_name,
        "domainPrefix": req.url_id,
        "http": {"method": req.method, "path": req.raw_path, "protocol": PROTOCOL, "sourceIp": req.source_ip,
                 "userAgent": headers.get("user-agent", "")},
        "requestId": req.request_id, "routeKey": ROUTE_KEY, "stage": STAGE,
        "time": request_time(req.epoch_ms), "timeEpoch": req.epoch_ms,
    }
    is_base64 = False
    if req.body:
        text = None
        if is_text(headers.get("content-type")):
            try:
                text = req.body.decode("utf-8")
            except UnicodeDecodeError:       # declared text, is not: sent as bytes rather than mangled
                text = None
        is_base64 = text is None
        event["body"] = base64.b64encode(req.body).decode("ascii") if is_base64 else text
    event["isBase64Encoded"] = is_base64
    return event


def event_payload(req: HttpRequest) -> bytes:
    return json.dumps(build_event(req), separators=(",", ":"), ensure_ascii=False).encode()


# --- the answer -------------------------------------------------------------------------
DEFAULT_CONTENT_TYPE = "application/json"
DEFAULT_STREAM_CONTENT_TYPE = "application/octet-stream"   # ours, for a prelude that names none (a stream's default)
FUNCTION_ERROR_STATUS = 502
FUNCTION_ERROR_BODY = b"Internal Server Error"
# Framing and connection fields are the server's to write (and Date, which it
# always writes): a function's own are not passed on.
SERVER_OWNED_HEADERS = frozenset({"content-length", "date"}) | HOP_BY_HOP
HTTP_INTEGRATION_CONTENT_TYPE = "application/vnd.awslambda.http-integration-response"
PRELUDE_DELIMITER = b"\x00" * 8
MAX_PRELUDE_BYTES = 1024 * 1024         # ours: a prelude still without its delimiter past this is refused
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


class MalformedResponse(ValueError):
    """A result Lambda cannot turn into an HTTP answer (the caller gets 502)."""


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    content_type: str
    headers: tuple[tuple[str, str], ...] = ()     # Set-Cookie repeated, one per cookie
    body: bytes = b""


def function_error_answer() -> HttpAnswer:
    return HttpAnswer(FUNCTION_ERROR_STATUS, "text/plain; charset=utf-8", (), FUNCTION_ERROR_BODY)


def _compact_json(value) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _status(value) -> int:
    """An int, or a string of one (Lambda takes "418"), from 100 to 599."""
    if isinstance(value, bool):
        raise MalformedResponse(f"statusCode {value!r} is not a number")
    if isinstance(value, int):
        status = value
    elif isinstance(value, str) and value.strip().isdigit():
        status = int(value)
    else:
        status = None
    if status is None or not 100 <= status <= 599:
        raise MalformedResponse(f"statusCode {value!r} is not an HTTP status from 100 to 599")
    return status


def _header_value(name: str, value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (int, float, str)):
        text = str(value)
    else:
        raise MalformedResponse(f"header {name!r} has a value of type {type(value).__name__}; expected a string")
    if "\r" in text or "\n" in text:
        raise MalformedResponse(f"header {name!r} holds a line break")
    return text


def _metadata(doc: dict, content_type: str) -> tuple[int, str, tuple[tuple[str, str], ...]]:
    """statusCode, headers and cookies of a result or a prelude -> (status, content
    type (the one given unless a header says), header pairs)."""
    status = _status(doc.get("statusCode", 200))
    headers = doc.get("headers") or {}
    if not isinstance(headers, dict):
        raise MalformedResponse("headers is not an object of name: value")
    pairs: list[tuple[str, str]] = []
    for name, value in headers.items():
        if not _TOKEN.match(name):
            raise MalformedResponse(f"{name!r} is not a valid header name")
        text = _header_value(name, value)
        if text is None or name.lower() in SERVER_OWNED_HEADERS:
            continue
        if name.lower() == "content-type":
            content_type = text
        else:
            pairs.append((name, text))
    cookies = doc.get("cookies") or []
    if not isinstance(cookies, list) or not all(isinstance(c, str) for c in cookies):
        raise MalformedResponse("cookies is not a list of strings")
    for cookie in cookies:
        pairs.append(("Set-Cookie", _header_value("Set-Cookie", cookie)))
    return status, content_type, tuple(pairs)


def answer_from_result(payload: bytes) -> HttpAnswer:
    """A buffered result as Lambda answers it: an object with a statusCode is
    the response (headers, cookies, body, isBase64Encoded); any other JSON is a
    200 application/json body (a string as its text, anything else as compact
    JSON); a payload that is not JSON is the body as it is. Raises
    MalformedResponse for a response Lambda would not send (502)."""
    try:
        result = json.loads(payload)
    except (ValueError, RecursionError):
        return HttpAnswer(200, DEFAULT_CONTENT_TYPE, (), payload)
    if not (isinstance(result, dict) and "statusCode" in result):
        body = result.encode() if isinstance(result, str) else _compact_json(result)
        return HttpAnswer(200, DEFAULT_CONTENT_TYPE, (), body)
    status, content_type, headers = _metadata(result, DEFAULT_CONTENT_TYPE)
    body = result.get("body")
    if result.get("isBase64Encoded") is True:
        if not isinstance(body, str):
            raise MalformedResponse("isBase64Encoded is true but body is not a string")
        try:
            data = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise MalformedResponse("isBase64Encoded is true but body is not valid base64") from None
    elif body is None:
        data = b""
    elif isinstance(body, str):
        data = body.encode()
    else:
        data = _compact_json(body)
    return HttpAnswer(status, content_type, headers, data)


def prelude_end(buffer: bytes | bytearray) -> int:
    """Where the body starts after the prelude's delimiter; -1 while it has not come."""
    at = buffer.find(PRELUDE_DELIMITER)
    return -1 if at < 0 else at + len(PRELUDE_DELIMITER)


def answer_from_prelude(prelude: bytes) -> HttpAnswer:
    """The status and headers of a streamed HTTP response (awslambda.HttpResponseStream.from's
    JSON: statusCode, headers, cookies); its body follows the delimiter."""
    try:
        doc = json.loads(prelude)
    except (ValueError, RecursionError):
        raise MalformedResponse("the metadata prelude is not JSON") from None
    if not isinstance(doc, dict):
        raise MalformedResponse("the metadata prelude is not a JSON object")
    status, content_type, headers = _metadata(doc, DEFAULT_STREAM_CONTENT_TYPE)
    return HttpAnswer(status, content_type, headers)
