"""A stem cell: a sandbox started ahead of need, before it knows its function.

It asks the host (GET /runtime-host/stem, a long poll on the Runtime API's
address) which function it becomes; the answer is the function's whole
environment and its runtime's command, and the stem execs that command, so
that on a cold start only the runtime's own init is left to do.
"""
import http.client
import json
import os
import sys

api = os.environ["AWS_LAMBDA_RUNTIME_API"]
conn = http.client.HTTPConnection(api)          # no timeout: the host answers when it needs us
conn.request("GET", "/runtime-host/stem")
resp = conn.getresponse()
body = resp.read()
if resp.status != 200:
    sys.stderr.write(f"stem: the host answered {resp.status}: {body[:200]!r}\n")
    sys.exit(1)
spec = json.loads(body)
conn.close()
os.chdir("/var/task")
os.execve(spec["command"][0], spec["command"], spec["env"])
