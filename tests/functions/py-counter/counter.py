"""A background thread counts as fast as it can; the handler reports the
count, and on request measures how fast it grows while the sandbox runs."""
import threading
import time

COUNT = 0


def _count():
    global COUNT
    while True:
        COUNT += 1


threading.Thread(target=_count, daemon=True).start()


def handler(event, context):
    at_start = COUNT
    rate = None
    if event.get("measure_s"):
        time.sleep(event["measure_s"])
        rate = (COUNT - at_start) / event["measure_s"]
    return {"count_at_start": at_start, "count_at_end": COUNT, "rate_per_s": rate}
