"""Burns CPU in one thread for event["seconds"] of wall time."""
import time


def handler(event, context):
    end = time.monotonic() + event.get("seconds", 1)
    n = 0
    while time.monotonic() < end:
        n += 1
    return {"loops": n}
