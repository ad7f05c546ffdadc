"""A function URL's event carries the invocation's own request id: the
requestContext.requestId the function reads is its context's aws_request_id,
the response's x-amzn-RequestId and the one in its REPORT line."""
from __future__ import annotations

import json
import time
import urllib.request

from tests.conftest import start_host, stop_host

HANDLER = ("def handler(event, context):\n"
           "    return {'event_id': event['requestContext']['requestId'], 'context_id': context.aws_request_id}\n")


def test_the_url_event_request_id_is_the_invocations(docker_engine, tmp_path):
    folder = tmp_path / "functions" / "ids"
    folder.mkdir(parents=True)
    (folder / "function.toml").write_text('runtime = "python3.11"\nhandler = "app.handler"\nurl = true\n')
    (folder / "app.py").write_text(HANDLER)
    host = start_host(tmp_path / "functions", tmp_path / "state", extra_args=["--no-reload"])
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{host.url_port}/ids/", timeout=60) as resp:
            header = resp.headers["x-amzn-RequestId"]
            body = json.loads(resp.read())
        assert body["event_id"] == body["context_id"] == header
        deadline = time.monotonic() + 30              # the REPORT line follows the response
        while f"REPORT RequestId: {header}" not in host.log_of("ids") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert f"REPORT RequestId: {header}" in host.log_of("ids")
    finally:
        stop_host(host)
