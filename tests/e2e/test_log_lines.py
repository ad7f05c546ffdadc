"""The per-function log file with many sandboxes writing at once: every line
is one source's line, whole (issue 16, defect 6). py-pieces prints each line
in three flushed pieces, which reach the host as separate chunks."""
from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

from tests.conftest import invoke

CALLERS = 16
CALLS_EACH = 4
LINES = 20

REQUEST_ID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
WHOLE_LINES = [re.compile(p) for p in (
    rf"PIECES (?P<rid>{REQUEST_ID}) \d{{3}} \.{{40}} (?P=rid) END",
    rf"START RequestId: {REQUEST_ID} Version: \$LATEST",
    rf"END RequestId: {REQUEST_ID}",
    rf"REPORT RequestId: {REQUEST_ID}\tDuration: [^\t]+ ms\tBilled Duration: .*",
)]


def mixed_lines(log: str) -> list[str]:
    """Lines that are not one of py-pieces' lines or a platform line, whole."""
    return [line for line in log.splitlines() if not any(p.fullmatch(line) for p in WHOLE_LINES)]


def test_sixteen_callers_printing_in_pieces_leave_no_line_mixed(lambda_client, host):
    def caller(_) -> list[str]:
        ids = []
        for _ in range(CALLS_EACH):
            resp, body = invoke(lambda_client, "py-pieces", {"lines": LINES})
            assert "FunctionError" not in resp, body
            ids.append(body["request_id"])
        return ids

    with ThreadPoolExecutor(CALLERS) as pool:
        request_ids = [rid for ids in pool.map(caller, range(CALLERS)) for rid in ids]
    assert len(set(request_ids)) == CALLERS * CALLS_EACH
    deadline = time.monotonic() + 10
    while True:                       # every REPORT is written
        log = host.log_of("py-pieces")
        if all(f"REPORT RequestId: {rid}" in log for rid in request_ids) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    mixed = mixed_lines(log)
    assert mixed == [], f"{len(mixed)} lines mixed or cut, e.g.:\n" + "\n".join(mixed[:12])
    for rid in request_ids:           # nothing lost: each of its lines once, whole
        assert len(re.findall(rf"^PIECES {rid} \d{{3}} \.{{40}} {rid} END$", log, re.M)) == LINES, rid
