"""Python runtime client: the process that runs a python3.11 or python3.13 function inside its sandbox.

Owns: loading the handler named by `_HANDLER` from `LAMBDA_TASK_ROOT`, the
`GET next` -> handler -> `POST response | error` loop against
`AWS_LAMBDA_RUNTIME_API`, the context object handed to the handler, the error
documents (same shape, types and messages as AWS's `awslambdaric`), and the
root logger's log format: text, or one JSON object a line when
AWS_LAMBDA_LOG_FORMAT is JSON (awslambdaric's lambda_runtime_log_utils.py).

With AWS_LAMBDA_MAX_CONCURRENCY = N > 1 (Lambda Managed Instances) it serves
N invocations at once as awslambdaric 4 does: N worker processes forked before
anything else, each a whole runtime of its own (its own import of the
handler's module, its own connection, one invocation at a time), so module
state is per process and _X_AMZN_TRACE_ID stays correct per invocation. A
worker retries a failed `GET next` and logs a refused POST instead of dying.
Unset or 1: one process and loop, exactly as without it
(docs/spec-additions.md section 5).

Must not: import anything outside the standard library (the image carries only
Debian's python3), put a timeout on `GET next` (the sandbox is frozen while it
waits there), or open a second connection in one loop (one keep-alive socket
carries every call of a process). Protocol facts:
/work/shared/spec/runtime-api.md sections 1, 4 and 10.
"""

import decimal
import importlib
import json
import logging
import os
import platform
import re
import signal
import socket
import sys
import time
import traceback
import urllib.parse

API_PREFIX = "/2018-06-01/runtime"

HEADER_REQUEST_ID = "Lambda-Runtime-Aws-Request-Id"
HEADER_DEADLINE_MS = "Lambda-Runtime-Deadline-Ms"
HEADER_FUNCTION_ARN = "Lambda-Runtime-Invoked-Function-Arn"
HEADER_TRACE_ID = "Lambda-Runtime-Trace-Id"
HEADER_CLIENT_CONTEXT = "Lambda-Runtime-Client-Context"
HEADER_COGNITO_IDENTITY = "Lambda-Runtime-Cognito-Identity"
HEADER_ERROR_TYPE = "Lambda-Runtime-Function-Error-Type"

TRACE_ID_ENV = "_X_AMZN_TRACE_ID"
MAX_CONCURRENCY_ENV = "AWS_LAMBDA_MAX_CONCURRENCY"
JSON_CONTENT_TYPE = "application/json"
# What awslambdaric labels a handler result that is already bytes.
BYTES_CONTENT_TYPE = "application/unknown"

# Error types awslambdaric reports for faults it detects itself (spec section 3.4).
MALFORMED_HANDLER_NAME = "Runtime.MalformedHandlerName"
BUILT_IN_MODULE_CONFLICT = "Runtime.BuiltInModuleConflict"
IMPORT_MODULE_ERROR = "Runtime.ImportModuleError"
USER_CODE_SYNTAX_ERROR = "Runtime.UserCodeSyntaxError"
HANDLER_NOT_FOUND = "Runtime.HandlerNotFound"
UNMARSHAL_ERROR = "Runtime.UnmarshalError"
MARSHAL_ERROR = "Runtime.MarshalError"
CONTEXT_UNMARSHAL_ERROR = "Runtime.LambdaContextUnmarshalError"

# The AWS_LAMBDA_LOG_LEVEL names that are not Python level names.
_LOG_LEVEL_ALIASES = {"TRACE": "DEBUG", "WARN": "WARNING", "FATAL": "CRITICAL"}

# JSON log lines (docs/spec-additions.md section 4), as awslambdaric writes
# them: UTC to the second, and a record's own attributes beside the fields.
JSON_LOG_FORMAT = "JSON"
_JSON_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_RECORD_FIELDS = frozenset({
    "name", "msg", "args", "levelname", "levelno", "pathname", "filename", "module",
    "exc_info", "exc_text", "stack_info", "lineno", "funcName", "created", "msecs",
    "relativeCreated", "thread", "threadName", "processName", "process", "aws_request_id",
    "tenant_id", "_frame_type",
})

# A multi-concurrent worker's GET next: awslambdaric's LambdaMultiConcurrentRuntimeClient
# makes 5 attempts, 0.1 s before the second, the delay doubling each time.
NEXT_ATTEMPTS = 5
NEXT_FIRST_RETRY_DELAY_S = 0.1

# prctl(2): the signal a process gets when its parent exits.
_PR_SET_PDEATHSIG = 1

_THIS_FILE = os.path.abspath(__file__)

# The request id stamped on log lines; "" until the first event arrives.
_current_request_id = ""


class FaultError(Exception):
    """A failure the runtime itself classifies, reported with its own error type."""

    def __init__(self, error_type, message, stack_trace=None):
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.stack_trace = stack_trace or []


class Invocation:
    """One event as `GET next` delivered it."""

    def __init__(self, request_id, deadline_ms, function_arn, trace_id,
                 client_context_json, cognito_identity_json, content_type, body):
        self.request_id = request_id
        self.deadline_ms = deadline_ms
        self.function_arn = function_arn
        self.trace_id = trace_id
        self.client_context_json = client_context_json
        self.cognito_identity_json = cognito_identity_json
        self.content_type = content_type
        self.body = body


class RuntimeApiClient:
    """The four Runtime API calls over one persistent HTTP/1.1 connection.

    `multi_concurrent`: the client of one of N workers. As awslambdaric's
    LambdaMultiConcurrentRuntimeClient, it retries a failed GET next (5
    attempts), logs a failed or refused POST and carries on (the other
    workers keep serving either way), and takes a 403 from /init/error to
    mean another worker has reported the init error already.
    """

    def __init__(self, address, multi_concurrent=False):
        self._multi_concurrent = multi_concurrent
        self._conn = HttpConnection(address)
        user_agent = "runtime-host-python/" + platform.python_version()
        # The same on every request, so formatted once. Accept-Encoding as
        # http.client sent it: this client decodes no content coding.
        self._common_headers = "Host: %s\r\nUser-Agent: %s\r\nAccept-Encoding: identity\r\n" % (
            self._conn.host_header, user_agent)
        # GET next never changes: its bytes are built once.
        self._next_request = self._encode_head("GET", API_PREFIX + "/invocation/next", {}, None)

    def next_invocation(self):
        if self._multi_concurrent:
            response = self._next_with_retries()
        else:
            response = self._send(self._next_request)
            _require_success(response.status, "GET", "/invocation/next", response.body)
        headers = response.headers
        deadline_text = headers.get(_DEADLINE_MS_KEY) or "0"
        try:
            deadline_ms = int(deadline_text)
        except ValueError:
            # Same fallback as awslambdaric's strtoul: an unreadable deadline is epoch 0.
            deadline_ms = 0
        request_id = headers.get(_REQUEST_ID_KEY)
        if not request_id:
            _die("GET /invocation/next answered without a %s header" % HEADER_REQUEST_ID)
        return Invocation(
            request_id=request_id,
            deadline_ms=deadline_ms,
            function_arn=headers.get(_FUNCTION_ARN_KEY),
            trace_id=headers.get(_TRACE_ID_KEY),
            client_context_json=headers.get(_CLIENT_CONTEXT_KEY),
            cognito_identity_json=headers.get(_COGNITO_IDENTITY_KEY),
            content_type=headers.get("content-type"),
            body=response.body,
        )

    def post_response(self, request_id, body, content_type):
        path = "/invocation/%s/response" % _quote(request_id)
        self._post(path, body, {"Content-Type": content_type})

    def post_invocation_error(self, request_id, error_doc):
        path = "/invocation/%s/error" % _quote(request_id)
        self._post(path, _to_json_bytes(error_doc), {"Content-Type": JSON_CONTENT_TYPE})

    def post_init_error(self, error_doc):
        headers = {
            "Content-Type": JSON_CONTENT_TYPE,
            HEADER_ERROR_TYPE: _header_safe(error_doc["errorType"]),
        }
        self._post("/init/error", _to_json_bytes(error_doc), headers)

    def _post(self, path, body, headers):
        # Always Content-Length, never chunked: the body is whole in memory.
        head = self._encode_head("POST", API_PREFIX + path, headers, len(body))
        if not self._multi_concurrent:
            response = self._send(head, body)
            _require_success(response.status, "POST", path, response.body)
            return
        try:
            response = self._send(head, body)
        except (OSError, ProtocolError) as e:
            _warn("POST %s%s failed: %s; this worker carries on" % (API_PREFIX, path, _describe(e)))
            return
        if 200 <= response.status < 300:
            return
        if path == "/init/error" and response.status == 403:
            return  # another worker's init error came first
        _warn("POST %s%s answered HTTP %d: %s; this worker carries on" % (
            API_PREFIX, path, response.status, response.body.decode("utf-8", "replace").strip()))

    def _next_with_retries(self):
        delay_s = NEXT_FIRST_RETRY_DELAY_S
        for attempt in range(1, NEXT_ATTEMPTS + 1):
            try:
                response = self._send(self._next_request)
            except (OSError, ProtocolError) as e:
                failure = _describe(e)
            else:
                if 200 <= response.status < 300:
                    return response
                failure = "HTTP %d: %s" % (
                    response.status, response.body.decode("utf-8", "replace").strip())
            if attempt == NEXT_ATTEMPTS:
                _die("GET %s/invocation/next failed %d times, the last with %s"
                     % (API_PREFIX, NEXT_ATTEMPTS, failure))
            _warn("GET %s/invocation/next failed (%s); attempt %d of %d in %.1f s"
                  % (API_PREFIX, failure, attempt + 1, NEXT_ATTEMPTS, delay_s))
            time.sleep(delay_s)
            delay_s *= 2
        raise AssertionError("unreachable")

    def _encode_head(self, method, path, headers, body_length):
        lines = ["%s %s HTTP/1.1\r\n" % (method, path), self._common_headers]
        for name, value in headers.items():
            if "\r" in value or "\n" in value:
                # A line break would end the header early and let the rest
                # pass for headers of its own; http.client refused it too.
                raise ValueError("Invalid header value %r" % value)
            lines.append("%s: %s\r\n" % (name, value))
        if body_length is not None:
            lines.append("Content-Length: %d\r\n" % body_length)
        lines.append("\r\n")
        return "".join(lines).encode("latin-1")

    def _send(self, head, body=b""):
        for attempt in (1, 2):
            reused = self._conn.is_open
            try:
                self._conn.send(head, body)
                return self._conn.read_response()
            except (ConnectionResetError, BrokenPipeError):
                # ConnectionClosed is a ConnectionResetError too.
                self._conn.close()
                # A kept-alive socket the host closed while idle fails on first
                # use; one retry on a fresh connection covers that. A fresh
                # connection that fails is a real error.
                if not reused or attempt == 2:
                    raise
            except BaseException:
                # Whatever broke, the socket may sit in the middle of a message.
                self._conn.close()
                raise
        raise AssertionError("unreachable")


# -- HTTP/1.1 on a plain socket ----------------------------------------------
#
# http.client costs tens of microseconds per call (email.parser reads its
# headers), a large share of a warm invocation. This client does the little
# the Runtime API needs: requests with Content-Length bodies, one at a time
# on one keep-alive connection; responses framed by Content-Length, chunked
# transfer coding or the end of the connection.

# The header names next_invocation reads, as HttpConnection stores them.
_REQUEST_ID_KEY = HEADER_REQUEST_ID.lower()
_DEADLINE_MS_KEY = HEADER_DEADLINE_MS.lower()
_FUNCTION_ARN_KEY = HEADER_FUNCTION_ARN.lower()
_TRACE_ID_KEY = HEADER_TRACE_ID.lower()
_CLIENT_CONTEXT_KEY = HEADER_CLIENT_CONTEXT.lower()
_COGNITO_IDENTITY_KEY = HEADER_COGNITO_IDENTITY.lower()

# One recv() takes a typical GET next answer (headers and event) whole.
_RECV_BYTES = 65536
# Bodies up to this size are copied behind the request head so the request
# leaves in one sendall; larger ones (up to 6 MB) go out with sendmsg from
# the caller's buffer, uncopied.
_COALESCE_BYTES = 65536
# Bounds on what a broken server can make this client buffer.
_MAX_HEAD_BYTES = 1 << 20
_MAX_LINE_BYTES = 65536
_MAX_RECV_AT_ONCE = 1 << 24
_HEX_DIGITS = b"0123456789abcdefABCDEF"
_FOLDED_LINE_BREAK = re.compile(r"\r\n[ \t]+")
_STATUS_LINE = re.compile(r"(HTTP/[0-9]\.[0-9]) ([0-9]{3})(?: |$)")


class ProtocolError(Exception):
    """The Runtime API answered with something that is not readable HTTP/1.1."""


class ConnectionClosed(ConnectionResetError):
    """The server closed the connection before any byte of its answer.

    A ConnectionResetError, as http.client's RemoteDisconnected is: on a
    kept-alive socket both mean the host dropped it while it sat idle.
    """


class Response:
    __slots__ = ("status", "headers", "body")

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # names lower-cased; repeated fields joined with ", "
        self.body = body


class HttpConnection:
    """One HTTP/1.1 keep-alive connection: a request out, then its response in.

    Received bytes wait in self._buffer from self._offset on, so a response
    that arrives in one segment costs one recv() and a few slices. Opens the
    socket on first use and again after close(), as http.client did.
    """

    def __init__(self, address):
        self.host, self.port = _split_host_port(address)
        self.host_header = _host_header(self.host, self.port)
        self._sock = None
        self._buffer = b""
        self._offset = 0

    @property
    def is_open(self):
        return self._sock is not None

    def open(self):
        # timeout=None rather than the default: a handler may have called
        # socket.setdefaulttimeout(), and GET next must be free to wait forever.
        sock = socket.create_connection((self.host, self.port), timeout=None)
        # Each request leaves in one write and waits for its answer: Nagle's
        # algorithm could only delay it.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock

    def close(self):
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._buffer = b""
        self._offset = 0

    def send(self, head, body=b""):
        if self._sock is None:
            self.open()
        if len(body) <= _COALESCE_BYTES:
            self._sock.sendall(head + body)
        else:
            self._send_gathered(head, body)

    def _send_gathered(self, head, body):
        sent = self._sock.sendmsg((head, body))
        if sent < len(head):
            self._sock.sendall(memoryview(head)[sent:])
            sent = len(head)
        if sent - len(head) < len(body):
            self._sock.sendall(memoryview(body)[sent - len(head):])

    def read_response(self):
        """The answer to the request just sent; interim (1xx) answers are skipped."""
        version, status, headers = _parse_head(self._read_head())
        while 100 <= status < 200:
            version, status, headers = _parse_head(self._read_head())
        body, ended_by_close = self._read_body(status, headers)
        if ended_by_close or _closes_after(version, headers):
            self.close()
        return Response(status, headers, body)

    def _read_body(self, status, headers):
        """(body, whether the server closing the connection ended it)."""
        if status == 204 or status == 304:
            return b"", False
        coding = headers.get("transfer-encoding")
        if coding is not None:
            if coding.rpartition(",")[2].strip().lower() == "chunked":
                return self._read_chunked(), False
            return self._read_until_close(), True
        length = headers.get("content-length")
        if length is not None:
            return self._read_exact(_parse_content_length(length)), False
        return self._read_until_close(), True

    def _read_head(self):
        """The status line and header fields, up to the blank line (consumed, not returned)."""
        end = self._buffer.find(b"\r\n\r\n", self._offset)
        while end < 0:
            unread = len(self._buffer) - self._offset
            if unread > _MAX_HEAD_BYTES:
                raise ProtocolError("response header section over %d bytes" % _MAX_HEAD_BYTES)
            if not self._receive():
                if unread:
                    raise ProtocolError("connection closed in the middle of a response's headers")
                raise ConnectionClosed("the server closed the connection without answering")
            # Resume a few bytes back: the blank line may straddle two reads.
            end = self._buffer.find(b"\r\n\r\n", max(0, unread - 3))
        head = self._buffer[self._offset:end]
        self._offset = end + 4
        return head

    def _read_exact(self, size):
        end = self._offset + size
        if end <= len(self._buffer):
            body = self._buffer[self._offset:end]
            self._offset = end
            return body
        return self._read_exact_from_socket(size)

    def _read_exact_from_socket(self, size):
        pieces = [self._buffer[self._offset:]]
        missing = size - len(pieces[0])
        self._buffer = b""
        self._offset = 0
        while missing > 0:
            # MSG_WAITALL: the kernel fills the whole request, so a large body
            # takes few calls and lands in its final bytes object directly.
            piece = self._sock.recv(min(missing, _MAX_RECV_AT_ONCE), socket.MSG_WAITALL)
            if not piece:
                raise ProtocolError("connection closed %d bytes before the end of a response body"
                                    % missing)
            pieces.append(piece)
            missing -= len(piece)
        return b"".join(pieces)

    def _read_chunked(self):
        pieces = []
        while True:
            size = _parse_chunk_size(self._read_line())
            if size == 0:
                break
            pieces.append(self._read_exact(size))
            if self._read_line():
                raise ProtocolError("chunk data does not end where its size says")
        # Trailer fields: none of them is anything this client reads.
        while self._read_line():
            pass
        return b"".join(pieces)

    def _read_until_close(self):
        pieces = [self._buffer[self._offset:]]
        self._buffer = b""
        self._offset = 0
        while True:
            piece = self._sock.recv(_RECV_BYTES)
            if not piece:
                return b"".join(pieces)
            pieces.append(piece)

    def _read_line(self):
        """One line of chunked framing, without its CRLF (a bare LF is accepted too)."""
        end = self._buffer.find(b"\n", self._offset)
        while end < 0:
            unread = len(self._buffer) - self._offset
            if unread > _MAX_LINE_BYTES:
                raise ProtocolError("chunked framing line over %d bytes" % _MAX_LINE_BYTES)
            if not self._receive():
                raise ProtocolError("connection closed in the middle of a chunked response body")
            end = self._buffer.find(b"\n", unread)
        line = self._buffer[self._offset:end]
        self._offset = end + 1
        return line[:-1] if line.endswith(b"\r") else line

    def _receive(self):
        """Append the next bytes from the socket to the unread ones; False at end of stream."""
        data = self._sock.recv(_RECV_BYTES)
        if not data:
            return False
        if self._offset < len(self._buffer):
            self._buffer = self._buffer[self._offset:] + data
        else:
            self._buffer = data
        self._offset = 0
        return True


def _parse_head(head):
    """(version, status, headers) from a response's head; header names lower-cased."""
    # Latin-1 maps every byte to one character, as http.client read headers.
    text = head.decode("latin-1")
    if "\r\n " in text or "\r\n\t" in text:
        # Obsolete line folding: a line that starts with blanks continues the value above.
        text = _FOLDED_LINE_BREAK.sub(" ", text)
    lines = text.split("\r\n")
    version, status = _parse_status_line(lines[0])
    headers = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            continue  # not a header field; skipped, as http.client did
        name = name.lower()
        if name in headers:
            headers[name] += ", " + value.strip(" \t")
        else:
            headers[name] = value.strip(" \t")
    return version, status, headers


def _parse_status_line(line):
    match = _STATUS_LINE.match(line)
    if match is None:
        raise ProtocolError("malformed status line %r" % line[:200])
    return match[1], int(match[2])


def _parse_content_length(value):
    if value.isdigit() and value.isascii():
        return int(value)
    # A repeated Content-Length arrives joined with ", "; copies that agree
    # are harmless, copies that differ make the framing unknowable.
    lengths = {part.strip(" \t") for part in value.split(",")}
    length = lengths.pop()
    if lengths or not (length.isdigit() and length.isascii()):
        raise ProtocolError("malformed or conflicting Content-Length %r" % value)
    return int(length)


def _parse_chunk_size(line):
    digits = line.partition(b";")[0].strip(b" \t")  # chunk extensions are ignored
    if not digits or digits.strip(_HEX_DIGITS):
        raise ProtocolError("malformed chunk size line %r" % line[:200])
    return int(digits, 16)


def _closes_after(version, headers):
    """Whether the server will close the connection after this response."""
    connection = headers.get("connection", "").lower()
    if "close" in connection:
        return True
    # HTTP/1.0 closes after each response unless it says otherwise.
    return version == "HTTP/1.0" and "keep-alive" not in connection


def _split_host_port(address):
    """("host", port) from AWS_LAMBDA_RUNTIME_API, read the way http.client read it."""
    host, port = address, 80
    colon = address.rfind(":")
    if colon > address.rfind("]"):  # a colon inside [...] is part of an IPv6 address
        host, port_text = address[:colon], address[colon + 1:]
        if port_text:
            if not (port_text.isascii() and port_text.isdigit()):
                raise ValueError("nonnumeric port: '%s'" % port_text)
            port = int(port_text)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, port


def _host_header(host, port):
    if ":" in host:
        host = "[%s]" % host
    return host if port == 80 else "%s:%d" % (host, port)


class CognitoIdentity:
    __slots__ = ("cognito_identity_id", "cognito_identity_pool_id")

    def __init__(self, identity_id=None, pool_id=None):
        self.cognito_identity_id = identity_id
        self.cognito_identity_pool_id = pool_id

    def __repr__(self):
        return "CognitoIdentity([cognito_identity_id=%s,cognito_identity_pool_id=%s])" % (
            self.cognito_identity_id, self.cognito_identity_pool_id)


class Client:
    __slots__ = ("installation_id", "app_title", "app_version_name",
                 "app_version_code", "app_package_name")

    def __init__(self, fields):
        for name in self.__slots__:
            setattr(self, name, fields.get(name))


class ClientContext:
    __slots__ = ("custom", "env", "client")

    def __init__(self, fields):
        self.custom = fields.get("custom")
        self.env = fields.get("env")
        client = fields.get("client")
        self.client = Client(client) if isinstance(client, dict) else None


class LambdaContext:
    """The `context` argument, attribute for attribute as awslambdaric builds it."""

    def __init__(self, invocation):
        self.aws_request_id = invocation.request_id
        self.invoked_function_arn = invocation.function_arn
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION")
        # A string, as in AWS (awslambdaric copies the variable as is); code
        # written for Lambda already calls int() on it.
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.client_context = None
        if invocation.client_context_json:
            fields = _parse_json_header(invocation.client_context_json, "Client Context")
            self.client_context = ClientContext(fields)
        self.identity = CognitoIdentity()
        if invocation.cognito_identity_json:
            fields = _parse_json_header(invocation.cognito_identity_json, "Cognito Identity")
            self.identity = CognitoIdentity(fields.get("cognitoIdentityId"),
                                            fields.get("cognitoIdentityPoolId"))
        self._deadline_ms = invocation.deadline_ms

    def get_remaining_time_in_millis(self):
        now_ms = int(time.time() * 1000)
        return max(0, self._deadline_ms - now_ms)

    def log(self, message):
        sys.stdout.write(str(message))

    def __repr__(self):
        return ("LambdaContext([aws_request_id=%s,log_group_name=%s,log_stream_name=%s,"
                "function_name=%s,memory_limit_in_mb=%s,function_version=%s,"
                "invoked_function_arn=%s,client_context=%s,identity=%s])" % (
                    self.aws_request_id, self.log_group_name, self.log_stream_name,
                    self.function_name, self.memory_limit_in_mb, self.function_version,
                    self.invoked_function_arn, self.client_context, self.identity))


def load_handler(handler_name):
    """Import the module named by `handler_name` ("module.function") and return the function."""
    try:
        module_name, function_name = handler_name.rsplit(".", 1)
    except ValueError as e:
        raise FaultError(MALFORMED_HANDLER_NAME, "Bad handler '%s': %s" % (handler_name, e))

    if module_name.split(".")[0] in sys.builtin_module_names:
        raise FaultError(BUILT_IN_MODULE_CONFLICT,
                         "Cannot use built-in module %s as a handler module" % module_name)
    try:
        # "dir/module" names a module in a sub-folder, as in AWS.
        module = importlib.import_module(module_name.replace("/", "."))
    except ImportError as e:
        raise FaultError(IMPORT_MODULE_ERROR,
                         "Unable to import module '%s': %s" % (module_name, e))
    except SyntaxError as e:
        trace = ['  File "%s" Line %s\n    %s' % (e.filename, e.lineno, e.text)]
        raise FaultError(USER_CODE_SYNTAX_ERROR,
                         "Syntax error in module '%s': %s" % (module_name, e), trace)
    # Any other exception raised while the module runs its top level goes up
    # to main(), which reports it under its own class name, as awslambdaric does.

    try:
        return getattr(module, function_name)
    except AttributeError:
        raise FaultError(HANDLER_NOT_FOUND,
                         "Handler '%s' missing on module '%s'" % (function_name, module_name))


def unmarshal_event(body, content_type):
    # awslambdaric decodes JSON only for exactly "application/json" and hands
    # anything else over as bytes. A missing header is read as JSON here, so
    # a host that forgets it still gives handlers their dict.
    if content_type not in (None, JSON_CONTENT_TYPE):
        return body
    try:
        return json.loads(body)
    except Exception as e:
        raise FaultError(UNMARSHAL_ERROR, "Unable to unmarshal input: %s" % e)


def marshal_result(result):
    """Return (body bytes, content type) for a handler's return value."""
    if isinstance(result, bytes):
        return result, BYTES_CONTENT_TYPE
    try:
        return json.dumps(result, default=_encode_extra).encode("utf-8"), JSON_CONTENT_TYPE
    except Exception as e:
        raise FaultError(MARSHAL_ERROR, "Unable to marshal response: %s" % e)


def _encode_extra(value):
    # awslambdaric's encoder writes Decimals (what boto3's DynamoDB layer
    # returns) as plain numbers; the stdlib encoder needs telling.
    if isinstance(value, decimal.Decimal):
        if value.is_finite() and value == value.to_integral_value():
            return int(value)
        return float(value)
    raise TypeError("Object of type %s is not JSON serializable" % type(value).__name__)


def make_error_doc(message, error_type, stack_trace, request_id=""):
    return {
        "errorMessage": message or "",
        "errorType": error_type or "",
        "requestId": request_id or "",
        "stackTrace": stack_trace or [],
    }


def error_doc_from_exception(exc, request_id=""):
    """The error document for an exception raised by user code."""
    frames = traceback.extract_tb(exc.__traceback__)
    # Drop this file's own frames from the top of the trace, as awslambdaric
    # drops bootstrap.py's, so the first frame shown is the user's.
    for index, frame in enumerate(frames):
        if os.path.abspath(frame.filename) != _THIS_FILE:
            frames = frames[index:]
            break
    return make_error_doc(str(exc), type(exc).__name__,
                          traceback.format_list(frames), request_id)


def json_logs():
    """Whether AWS_LAMBDA_LOG_FORMAT asks for JSON log lines (any case, as awslambdaric reads it)."""
    return os.environ.get("AWS_LAMBDA_LOG_FORMAT", "").upper() == JSON_LOG_FORMAT


def log_error(error_doc):
    """Print an error the way awslambdaric does: type, message, traceback in
    text format; in JSON format one line, the error document with its time."""
    if json_logs():
        line = {"timestamp": time.strftime(_JSON_TIME_FORMAT, time.gmtime()), "log_level": "ERROR"}
        line.update(error_doc)
        sys.stdout.write(json.dumps(line) + "\n")
        return
    description = "[ERROR]"
    if error_doc["errorType"]:
        description += " " + error_doc["errorType"]
        if error_doc["errorMessage"]:
            description += ":"
    if error_doc["errorMessage"]:
        description += " " + error_doc["errorMessage"]
    lines = [description, "Traceback (most recent call last):"]
    for element in error_doc["stackTrace"]:
        lines.extend(element.splitlines())
    sys.stderr.write("\n".join(lines) + "\n")


def handle_invocation(client, handler, invocation):
    try:
        context = LambdaContext(invocation)
        event = unmarshal_event(invocation.body, invocation.content_type)
        result = handler(event, context)
        body, content_type = marshal_result(result)
    except FaultError as fault:
        error_doc = make_error_doc(fault.message, fault.error_type, fault.stack_trace,
                                   invocation.request_id)
    except Exception as e:
        error_doc = error_doc_from_exception(e, invocation.request_id)
    else:
        client.post_response(invocation.request_id, body, content_type)
        return
    log_error(error_doc)
    client.post_invocation_error(invocation.request_id, error_doc)


def main():
    _make_output_unbuffered()
    address = os.environ.get("AWS_LAMBDA_RUNTIME_API")
    if not address:
        _die("AWS_LAMBDA_RUNTIME_API is not set; this program runs inside a sandbox")
    workers = max_concurrency()
    if workers > 1:
        run_workers(workers, address)
    else:
        serve(address)


def max_concurrency():
    """N from AWS_LAMBDA_MAX_CONCURRENCY; 1 when unset, not a number, or below 2."""
    text = os.environ.get(MAX_CONCURRENCY_ENV)
    if text is None:
        return 1
    try:
        value = int(text.strip())
    except ValueError:
        _warn("%s=%r is not a number; serving one invocation at a time" % (MAX_CONCURRENCY_ENV, text))
        return 1
    return max(value, 1)


def run_workers(count, address):
    """Fork `count` workers, each a whole runtime (serve()); wait for them all.

    As awslambdaric's MultiConcurrentRunner: one process per concurrent
    invocation, started before anything is imported, so each does its own
    init. A worker that ends leaves the others serving. The exit status is
    the first failing worker's (its signal as 128 + n), else 0. SIGTERM and
    SIGINT are passed on to the workers; were this process killed, the
    kernel kills them too (PR_SET_PDEATHSIG).
    """
    for stream in (sys.stdout, sys.stderr):
        stream.flush()  # nothing buffered may be written twice
    parent = os.getpid()
    workers = set()
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            _run_worker(parent, address)  # never returns
        workers.add(pid)

    def pass_on(signum, _frame):
        for pid in workers:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, pass_on)
    status = 0
    while workers:
        try:
            pid, wait_status = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        if pid not in workers:
            continue
        workers.discard(pid)
        code = os.waitstatus_to_exitcode(wait_status)
        if code != 0 and status == 0:
            status = code if code > 0 else 128 - code
    sys.exit(status)


def _run_worker(parent, address):
    """A forked worker: serve() until it exits; never return into the caller's code."""
    code = 1
    try:
        _die_with(parent)
        serve(address, multi_concurrent=True)
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            code = e.code or 0
        else:
            sys.stderr.write("%s\n" % e.code)
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _die_with(parent):
    """SIGKILL for this process when `parent` exits (a worker must not outlive it)."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (ImportError, OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent exited before prctl took effect
        os._exit(1)


def serve(address, multi_concurrent=False):
    """One runtime: init (the handler's import), then the GET next -> handler -> POST loop."""
    global _current_request_id

    client = RuntimeApiClient(address, multi_concurrent)
    _install_log_handler()

    task_root = os.environ.get("LAMBDA_TASK_ROOT", "/var/task")
    # The function's own modules win over anything else on the path,
    # including this runtime's folder.
    if task_root in sys.path:
        sys.path.remove(task_root)
    sys.path.insert(0, task_root)
    # Then the layers' Python folders, as Lambda's Python runtime puts them
    # (its layer paths: python/lib/python3.x/site-packages and python).
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for path in reversed((f"/opt/python/lib/python{version}/site-packages", "/opt/python")):
        if path not in sys.path:
            sys.path.insert(1, path)

    try:
        handler = load_handler(os.environ.get("_HANDLER", ""))
    except FaultError as fault:
        error_doc = make_error_doc(fault.message, fault.error_type, fault.stack_trace)
    except Exception as e:
        error_doc = error_doc_from_exception(e)
    else:
        error_doc = None
    if error_doc is not None:
        log_error(error_doc)
        client.post_init_error(error_doc)
        sys.exit(1)

    while True:
        invocation = client.next_invocation()
        _current_request_id = invocation.request_id
        if invocation.trace_id:
            os.environ[TRACE_ID_ENV] = invocation.trace_id
        else:
            os.environ.pop(TRACE_ID_ENV, None)
        handle_invocation(client, handler, invocation)


class _RequestIdFilter(logging.Filter):
    def filter(self, record):
        record.aws_request_id = _current_request_id
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line, with the fields awslambdaric's JsonFormatter writes."""

    def __init__(self):
        super().__init__(datefmt=_JSON_TIME_FORMAT)

    def format(self, record):
        # awslambdaric rounds custom levels down to the standard ones.
        levelno = min(50, max(0, record.levelno)) // 10 * 10
        exc_info = record.exc_info
        line = {
            "timestamp": self.formatTime(record, self.datefmt),
            "level": logging.getLevelName(levelno),
            "message": record.getMessage(),
            "logger": record.name,
            "stackTrace": traceback.format_tb(exc_info[2]) if exc_info else None,
            "errorType": exc_info[0].__name__ if exc_info else None,
            "errorMessage": str(exc_info[1]) if exc_info else None,
            "requestId": getattr(record, "aws_request_id", None),
            "location": "%s:%s:%s" % (record.pathname, record.funcName, record.lineno) if exc_info else None,
        }
        # What the handler's code attached (logger.info(..., extra={...})).
        for key, value in record.__dict__.items():
            if key not in _RECORD_FIELDS and key not in line:
                line[key] = value
        line = {key: value for key, value in line.items() if value is not None}
        return json.dumps(line, ensure_ascii=False, default=str)


def _install_log_handler():
    if json_logs():
        formatter = JsonFormatter()
    else:
        formatter = logging.Formatter(
            "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s",
            "%Y-%m-%dT%H:%M:%S",
        )
    # UTC on this formatter only; the user's own formatters keep local time.
    formatter.converter = time.gmtime
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    # Without AWS_LAMBDA_LOG_LEVEL the root logger stays at Python's default
    # (WARNING), as in AWS: logger.info() prints nothing unless configured.
    level_name = os.environ.get("AWS_LAMBDA_LOG_LEVEL", "").strip().upper()
    level_name = _LOG_LEVEL_ALIASES.get(level_name, level_name)
    if level_name in logging.getLevelNamesMapping():
        root.setLevel(level_name)


def _make_output_unbuffered():
    # The bootstrap passes -u; this covers a start without it, so a line the
    # handler prints reaches the host before the invocation ends.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(line_buffering=True, write_through=True)
        except (AttributeError, ValueError):
            pass


def _parse_json_header(text, name):
    try:
        fields = json.loads(text)
    except Exception as e:
        raise FaultError(CONTEXT_UNMARSHAL_ERROR, "Unable to parse %s JSON: %s" % (name, e))
    if not isinstance(fields, dict):
        raise FaultError(CONTEXT_UNMARSHAL_ERROR,
                         "Unable to parse %s JSON: not a JSON object" % name)
    return fields


def _require_success(status, method, path, body):
    # awslambdaric raises on any non-2xx answer and the process dies; do the
    # same, with a line that says which call was refused and why.
    if not 200 <= status < 300:
        detail = body.decode("utf-8", "replace").strip()
        _die("%s %s%s answered HTTP %d: %s" % (method, API_PREFIX, path, status, detail))


def _die(message):
    sys.stderr.write("runtime_client: %s\n" % message)
    sys.exit(1)


def _warn(message):
    sys.stderr.write("runtime_client: %s\n" % message)


def _describe(error):
    return "%s: %s" % (type(error).__name__, error) if str(error) else type(error).__name__


def _quote(request_id):
    return urllib.parse.quote(request_id, safe="")


def _header_safe(value):
    # Header values go out latin-1 encoded (as http.client sent them); an
    # exception class may have a non-ASCII name.
    return value.encode("ascii", "replace").decode("ascii")


def _to_json_bytes(doc):
    return json.dumps(doc).encode("utf-8")


if __name__ == "__main__":
    main()
