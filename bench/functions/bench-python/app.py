"""hello-python: the smallest useful python3.11 function.

Shows the three things a first invoke should show: configuration through the
environment (GREETING), warm reuse (a module-level counter that keeps counting
while the same sandbox serves more events) and a log line per invocation.
"""

import os

GREETING = os.environ.get("GREETING", "hello")

# Module state lives as long as the sandbox: 1 on a cold start, then 2, 3, ...
invocation_count = 0


def handler(event, context):
    global invocation_count
    invocation_count += 1
    print(f"hello-python: invocation {invocation_count} in this sandbox, request {context.aws_request_id}")
    return {
        "message": f"{GREETING} from python",
        "event": event,
        "invocation": invocation_count,
        "request_id": context.aws_request_id,
    }
