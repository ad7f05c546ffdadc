"""Response streaming end to end (spec §2): a `provided` bootstrap streams
with curl in a real container; boto3's invoke_with_response_stream and the
AWS CLI's invoke are the callers."""
from __future__ import annotations

import base64
import json
import os
import subprocess
import time

from tests.conftest import DUMMY_AWS_ENV, VENV_BIN

STREAMING = "sh-stream"


def stream(client, payload: dict, function: str = STREAMING, **kwargs
           ) -> tuple[dict, list[tuple[float, bytes]], dict, float]:
    """(response, [(seconds since the call, chunk)], InvokeComplete, seconds until it)."""
    started = time.monotonic()
    resp = client.invoke_with_response_stream(FunctionName=function, Payload=json.dumps(payload), **kwargs)
    chunks, complete, complete_at = [], None, None
    for event in resp["EventStream"]:
        if "PayloadChunk" in event:
            chunks.append((time.monotonic() - started, event["PayloadChunk"]["Payload"]))
        else:
            complete, complete_at = event["InvokeComplete"], time.monotonic() - started
    return resp, chunks, complete, complete_at


def test_the_first_chunk_arrives_while_the_handler_still_sleeps(lambda_client):
    resp, chunks, complete, complete_at = stream(lambda_client, {"sleep": 2})
    assert resp["StatusCode"] == 200 and resp["ResponseStreamContentType"] == "text/plain"
    assert resp["ExecutedVersion"] == "$LATEST"
    assert b"".join(c for _, c in chunks) == b"first second"
    assert chunks[0][1] == b"first ", chunks
    # The handler sleeps 2 s between its writes: the first chunk reached the
    # caller long before the end (a buffering host would deliver both at once).
    assert complete_at - chunks[0][0] >= 1.5, (chunks, complete_at)
    assert "ErrorCode" not in complete


def test_tail_puts_the_log_in_invoke_complete(lambda_client):
    _, _, complete, _ = stream(lambda_client, {"sleep": 0}, LogType="Tail")
    log = base64.b64decode(complete["LogResult"]).decode()
    assert "streaming for" in log and "response posted: 202" in log
    assert "\nREPORT RequestId: " in log and "END RequestId: " in log


def test_past_six_mib_the_stream_is_shaped_to_two_mib_a_second(lambda_client):
    # 10 MiB: 6 MiB of burst, then 4 MiB at 2 MiB/s, so at least ~2 s however
    # fast the machine; a noisy one can only make it slower (no upper bound).
    _, chunks, complete, complete_at = stream(lambda_client, {"mb": 10})
    assert sum(len(c) for _, c in chunks) == 10 * 1024 * 1024 and "ErrorCode" not in complete
    assert complete_at - chunks[0][0] >= 1.6, complete_at


def test_a_plain_invoke_gets_the_whole_streamed_body_within_the_buffered_limit(lambda_client):
    resp = lambda_client.invoke(FunctionName=STREAMING, Payload=json.dumps({"mb": 5}))
    assert "FunctionError" not in resp
    assert resp["Payload"].read() == b"x" * 5 * 1024 * 1024
    resp = lambda_client.invoke(FunctionName=STREAMING, Payload=json.dumps({"mb": 7}), LogType="Tail")
    assert resp["FunctionError"] == "Unhandled"
    error = json.loads(resp["Payload"].read())
    assert error["errorType"] == "Function.ResponseSizeTooLarge"
    assert "exceeded maximum allowed payload size (6291556 bytes)" in error["errorMessage"]
    assert "response posted: 413" in base64.b64decode(resp["LogResult"]).decode(), "the runtime was told 413"


def test_the_aws_cli_invokes_a_streaming_function(host, tmp_path):
    out = tmp_path / "out.txt"
    # The AWS CLI on PyPI (v1) has no invoke-with-response-stream (v1 leaves
    # out event-stream operations), and Debian's v2 (2.9.19) predates it: the
    # CLI reaches a streaming function through plain invoke, as on Lambda.
    env = {**os.environ, **DUMMY_AWS_ENV}
    done = subprocess.run([str(VENV_BIN / "aws"), "lambda", "invoke", "--endpoint-url", host.endpoint,
                           "--function-name", STREAMING,
                           "--payload", '{"sleep": 0}', str(out)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["StatusCode"] == 200
    assert out.read_bytes() == b"first second"


# --- a Node handler written for Lambda (awslambda.streamifyResponse, our runtime) ------

def node_stream(client, payload: dict, **kwargs):
    return stream(client, payload, function="node-stream", **kwargs)


def test_a_node_streaming_handler_streams_while_it_awaits(lambda_client):
    resp, chunks, complete, complete_at = node_stream(lambda_client, {"sleep": 2})
    assert resp["ResponseStreamContentType"] == "text/plain"
    assert b"".join(c for _, c in chunks) == b"first second" and "ErrorCode" not in complete
    assert complete_at - chunks[0][0] >= 1.5, (chunks, complete_at)


def test_a_node_handler_that_throws_mid_stream_reaches_the_caller_as_invoke_complete_error(lambda_client):
    _, chunks, complete, _ = node_stream(lambda_client, {"mode": "fail"}, LogType="Tail")
    assert b"".join(c for _, c in chunks) == b"first "
    assert complete["ErrorCode"] == "Error" and complete["ErrorDetails"] == "boom mid-stream"
    log = base64.b64decode(complete["LogResult"]).decode()
    assert "boom mid-stream" in log and "REPORT RequestId" in log


def test_http_response_stream_metadata_prelude_reaches_the_caller(lambda_client):
    resp, chunks, _, _ = node_stream(lambda_client, {"mode": "http"})
    assert resp["ResponseStreamContentType"] == "application/vnd.awslambda.http-integration-response"
    prelude, _, body = b"".join(c for _, c in chunks).partition(b"\x00" * 8)
    assert json.loads(prelude)["statusCode"] == 201 and body == b"http body"


def test_a_plain_invoke_of_a_node_streaming_handler_gets_the_whole_body(lambda_client):
    resp = lambda_client.invoke(FunctionName="node-stream", Payload=json.dumps({"sleep": 0}))
    assert "FunctionError" not in resp and resp["Payload"].read() == b"first second"
    resp = lambda_client.invoke(FunctionName="node-stream", Payload=json.dumps({"mode": "fail"}))
    assert resp["FunctionError"] == "Unhandled"
    assert json.loads(resp["Payload"].read()) == {"errorMessage": "boom mid-stream", "errorType": "Error"}
