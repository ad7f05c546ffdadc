"""Python runtime client: the process that runs a python3.11 function inside its sandbox.

Owns: loading the handler named by `_HANDLER` from `LAMBDA_TASK_ROOT`, the
`GET next` -> handler -> `POST response | error` loop against
`AWS_LAMBDA_RUNTIME_API`, the context object handed to the handler, the error
documents (same shape, types and messages as AWS's `awslambdaric`), and the
text log format of the root logger.

Must not: import anything outside the standard library (the image carries only
Debian's python3), put a timeout on `GET next` (the sandbox is frozen while it
waits there), or open a second connection (one keep-alive socket carries every
call). Protocol facts: /work/shared/spec/runtime-api.md sections 1, 4 and 10.
"""

import decimal
import http.client
import importlib
import json
import logging
import os
import platform
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
    """The four Runtime API calls over one persistent HTTP/1.1 connection."""

    def __init__(self, address):
        # No timeout: GET next is a long poll that may block for as long as
        # the sandbox stays idle (or frozen).
        self._conn = http.client.HTTPConnection(address)
        self._user_agent = "runtime-host-python/" + platform.python_version()

    def next_invocation(self):
        status, response, body = self._request("GET", API_PREFIX + "/invocation/next")
        _require_success(status, "GET", "/invocation/next", body)
        deadline_text = response.getheader(HEADER_DEADLINE_MS) or "0"
        try:
            deadline_ms = int(deadline_text)
        except ValueError:
            # Same fallback as awslambdaric's strtoul: an unreadable deadline is epoch 0.
            deadline_ms = 0
        request_id = response.getheader(HEADER_REQUEST_ID)
        if not request_id:
            _die("GET /invocation/next answered without a %s header" % HEADER_REQUEST_ID)
        return Invocation(
            request_id=request_id,
            deadline_ms=deadline_ms,
            function_arn=response.getheader(HEADER_FUNCTION_ARN),
            trace_id=response.getheader(HEADER_TRACE_ID),
            client_context_json=response.getheader(HEADER_CLIENT_CONTEXT),
            cognito_identity_json=response.getheader(HEADER_COGNITO_IDENTITY),
            content_type=response.getheader("Content-Type"),
            body=body,
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
        # http.client sends bytes bodies with Content-Length, never chunked.
        status, _, answer = self._request("POST", API_PREFIX + path, body, headers)
        _require_success(status, "POST", path, answer)

    def _request(self, method, path, body=None, headers=None):
        headers = dict(headers or {})
        headers["User-Agent"] = self._user_agent
        for attempt in (1, 2):
            reused = self._conn.sock is not None
            try:
                self._conn.request(method, path, body=body, headers=headers)
                response = self._conn.getresponse()
                # Read the whole body so the socket is free for the next call.
                return response.status, response, response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self._conn.close()
                # A kept-alive socket the host closed while idle fails on first
                # use; one retry on a fresh connection covers that. A fresh
                # connection that fails is a real error.
                if not reused or attempt == 2:
                    raise
        raise AssertionError("unreachable")


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


def log_error(error_doc):
    """Print an error the way awslambdaric's text format does: type, message, traceback."""
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
    global _current_request_id

    _make_output_unbuffered()
    address = os.environ.get("AWS_LAMBDA_RUNTIME_API")
    if not address:
        _die("AWS_LAMBDA_RUNTIME_API is not set; this program runs inside a sandbox")
    client = RuntimeApiClient(address)
    _install_log_handler()

    task_root = os.environ.get("LAMBDA_TASK_ROOT", "/var/task")
    # The function's own modules win over anything else on the path,
    # including this runtime's folder.
    if task_root in sys.path:
        sys.path.remove(task_root)
    sys.path.insert(0, task_root)

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


def _install_log_handler():
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


def _quote(request_id):
    return urllib.parse.quote(request_id, safe="")


def _header_safe(value):
    # http.client encodes header values as latin-1; an exception class may
    # have a non-ASCII name.
    return value.encode("ascii", "replace").decode("ascii")


def _to_json_bytes(doc):
    return json.dumps(doc).encode("utf-8")


if __name__ == "__main__":
    main()
