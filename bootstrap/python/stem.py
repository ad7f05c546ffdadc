"""A stem cell: a sandbox started ahead of need, before it knows its function.

The interpreter and our runtime client are loaded now, off any invocation's
path. Then it asks the host (GET /runtime-host/stem, a long poll on the
Runtime API's address) which function it becomes; the answer is the
function's whole environment, which replaces this process's, and the
runtime client's main() runs as if the bootstrap had started it. On a cold
start only the function's own init is left to do.
"""
import http.client
import json
import os
import sys

sys.path.insert(0, "/var/runtime")
import runtime_client  # noqa: E402  (loaded before we know the function: that is the point)

api = os.environ["AWS_LAMBDA_RUNTIME_API"]
conn = http.client.HTTPConnection(api)          # no timeout: the host answers when it needs us
conn.request("GET", "/runtime-host/stem")
resp = conn.getresponse()
body = resp.read()
conn.close()
if resp.status != 200:
    sys.stderr.write(f"stem: the host answered {resp.status}: {body[:200]!r}\n")
    sys.exit(1)
spec = json.loads(body)
if spec.get("output"):
    # The host reads the runtime's stdout and stderr from this FIFO directly
    # (not through Docker); fds 1 and 2 are pointed at it before any output.
    fd = os.open(spec["output"], os.O_WRONLY)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
os.environ.clear()
os.environ.update(spec["env"])
os.chdir("/var/task")
sys.path.remove("/var/runtime")
sys.argv = ["/var/runtime/runtime_client.py"]
runtime_client.main()
