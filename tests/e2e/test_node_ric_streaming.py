"""Response streaming from AWS's Node runtime interface client (npm
aws-lambda-ric, tests/ric_node.py): awslambda.streamifyResponse as Lambda's
Node runtimes offer it, with boto3's invoke_with_response_stream as caller."""
from __future__ import annotations

import time

FUNCTION = "node-ric-stream"


def test_node_ric_stream_delivers_the_first_write_before_the_end(lambda_client):
    started = time.monotonic()
    resp = lambda_client.invoke_with_response_stream(FunctionName=FUNCTION, Payload=b"{}")
    assert resp["StatusCode"] == 200
    chunks, complete, complete_at = [], None, None
    for event in resp["EventStream"]:
        if "PayloadChunk" in event:
            chunks.append((time.monotonic() - started, event["PayloadChunk"]["Payload"]))
        elif "InvokeComplete" in event:
            complete, complete_at = event["InvokeComplete"], time.monotonic() - started
    assert complete is not None, chunks
    assert "ErrorCode" not in complete, complete
    assert b"".join(c for _, c in chunks) == b"first second", chunks
    # The handler sleeps 1 s between its writes: a host that buffered the
    # stream would deliver the first chunk together with the end.
    assert complete_at - chunks[0][0] >= 0.7, (chunks, complete_at)


def test_node_ric_stream_gives_a_plain_invoke_the_whole_body(lambda_client):
    resp = lambda_client.invoke(FunctionName=FUNCTION, Payload=b"{}")
    assert "FunctionError" not in resp
    assert resp["Payload"].read() == b"first second"
