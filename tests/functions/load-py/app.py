"""The load run's function (tests/load.py): logs the event's nonce, so a run
can count how many times each event ran, then answers with it or fails on
purpose when the event asks."""
import sys


def handler(event, context):
    # One write with its newline: print() makes several (the runtime's stdout is
    # unbuffered), and on a machine at load 20 a 128 MB sandbox once paused between
    # them past the log's 0.5 s wait for a line's end, which cut the line in two.
    sys.stdout.write(f"LOADNONCE {event['n']}\n")
    sys.stdout.flush()
    if event.get("fail"):
        raise RuntimeError("failing on purpose " + event["n"])
    return {"n": event["n"], "rid": context.aws_request_id}
