"""Waits (up to 5 s) until `event["together"]` invocations are in this
sandbox at once, each leaving a marker in the shared /tmp; says how many it saw."""
import os
import time


def handler(event, context):
    marker = f"/tmp/in-flight-{context.aws_request_id}"
    open(marker, "w").close()
    deadline = time.monotonic() + 5
    seen = 0
    while time.monotonic() < deadline:
        seen = sum(1 for name in os.listdir("/tmp") if name.startswith("in-flight-"))
        if seen >= event.get("together", 1):
            break
        time.sleep(0.01)
    time.sleep(0.2)                       # the others see this one's marker too
    os.remove(marker)
    return {"seen_at_once": seen, "request_id": context.aws_request_id, "pid": os.getpid()}
