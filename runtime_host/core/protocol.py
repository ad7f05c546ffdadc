"""Protocol facts, defined once: header names, size limits, error types.

Every value here comes from ../shared/spec/runtime-api.md (section numbers in
the comments). Other modules import these names instead of spelling strings.
"""

RUNTIME_API_VERSION = "2018-06-01"
INVOKE_API_VERSION = "2015-03-31"
INVOKE_WITH_RESPONSE_STREAM_API_VERSION = "2021-11-15"   # §6.4

# §1.3 headers the host sends with the event on GET next.
H_REQUEST_ID = "Lambda-Runtime-Aws-Request-Id"
H_DEADLINE_MS = "Lambda-Runtime-Deadline-Ms"
H_FUNCTION_ARN = "Lambda-Runtime-Invoked-Function-Arn"
H_TRACE_ID = "Lambda-Runtime-Trace-Id"
H_CLIENT_CONTEXT = "Lambda-Runtime-Client-Context"
H_COGNITO_IDENTITY = "Lambda-Runtime-Cognito-Identity"
# §1.4 / §1.5 headers a runtime may send.
H_FUNCTION_ERROR_TYPE = "Lambda-Runtime-Function-Error-Type"
H_RESPONSE_MODE = "Lambda-Runtime-Function-Response-Mode"

# §6 Invoke API headers.
H_INVOCATION_TYPE = "X-Amz-Invocation-Type"
H_LOG_TYPE = "X-Amz-Log-Type"
H_LOG_RESULT = "X-Amz-Log-Result"
H_CALLER_CLIENT_CONTEXT = "X-Amz-Client-Context"
H_FUNCTION_ERROR = "X-Amz-Function-Error"
H_EXECUTED_VERSION = "X-Amz-Executed-Version"
H_AMZN_REQUEST_ID = "x-amzn-RequestId"
H_AMZN_ERROR_TYPE = "x-amzn-ErrorType"
H_AMZN_TRACE_ID = "X-Amzn-Trace-Id"

# §6 Invoke API error codes (the x-amzn-ErrorType a caller gets).
ERR_SERVICE = "ServiceException"
ERR_TOO_MANY_REQUESTS = "TooManyRequestsException"
ERR_RESOURCE_NOT_FOUND = "ResourceNotFoundException"
ERR_INVALID_REQUEST_CONTENT = "InvalidRequestContentException"
ERR_REQUEST_TOO_LARGE = "RequestTooLargeException"
ERR_INVALID_PARAMETER_VALUE = "InvalidParameterValueException"
ERR_RESOURCE_CONFLICT = "ResourceConflictException"
THROTTLE_REASON_RESERVED = "ReservedFunctionConcurrentInvocationLimitExceeded"

# §1.10 payload limits, in bytes.
MAX_SYNC_REQUEST_BYTES = 6 * 1024 * 1024          # 6,291,456
MAX_ASYNC_REQUEST_BYTES = 1024 * 1024             # 1 MB since Oct 2025
MAX_RESPONSE_BYTES = 6 * 1024 * 1024 + 100        # 6,291,556 (RAPID MaxPayloadSize)
MAX_CLIENT_CONTEXT_BASE64_BYTES = 3583
LOG_TAIL_BYTES = 4096                             # §6.2 X-Amz-Log-Result

# §3.1 the INIT phase limit for on-demand functions.
INIT_TIMEOUT_S = 10.0

# §1.7 error types the Runtime API answers a runtime with.
ERR_INVALID_REQUEST_ID = "InvalidRequestID"
ERR_INVALID_STATE_TRANSITION = "InvalidStateTransition"
ERR_INVALID_RESPONSE_MODE = "InvalidFunctionResponseMode"
ERR_PAYLOAD_TOO_LARGE = "RequestEntityTooLarge"
ERR_INTERNAL = "InternalServerError"
ERR_TRUNCATED_REQUEST = "TruncatedHTTPRequest"     # a streamed body cut before its last chunk

# §3.4 platform error types the caller sees.
RUNTIME_EXIT_ERROR = "Runtime.ExitError"
RUNTIME_OUT_OF_MEMORY = "Runtime.OutOfMemory"
RUNTIME_INVALID_RESPONSE_MODE = "Runtime.InvalidResponseModeHeader"
RUNTIME_UNKNOWN = "Runtime.Unknown"
FUNCTION_UNKNOWN = "Function.Unknown"
SANDBOX_TIMEDOUT = "Sandbox.Timedout"
SANDBOX_FAILURE = "Sandbox.Failure"
FUNCTION_RESPONSE_TOO_LARGE = "Function.ResponseSizeTooLarge"

# Where the host is reached from inside a sandbox (Lambda and RIE use 9001).
RUNTIME_API_PORT = 9001
# ... on the sandbox's own loopback, where the host listens inside its network namespace.
LOOPBACK_ADDRESS = "127.0.0.1"
LOOPBACK_RUNTIME_API = f"{LOOPBACK_ADDRESS}:{RUNTIME_API_PORT}"
DEFAULT_INVOKE_API_PORT = 9000
ACCOUNT_ID = "000000000000"
LATEST = "$LATEST"
