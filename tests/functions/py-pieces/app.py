"""Writes `lines` lines (default 20), each in three flushed pieces with a
short pause between them, so that the pieces reach the host as separate
chunks: `PIECES <request id> <n> <filler> <request id> END`."""
import sys
import time


def handler(event, context):
    rid = context.aws_request_id
    lines = event.get("lines", 20)
    pause_s = event.get("pause_s", 0.0005)
    for n in range(lines):
        for piece in (f"PIECES {rid} {n:03d} ", "." * 40, f" {rid} END\n"):
            sys.stdout.write(piece)
            sys.stdout.flush()
            time.sleep(pause_s)
    return {"request_id": rid, "lines": lines}
