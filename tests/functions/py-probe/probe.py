"""Does what the event asks, and reports what it sees of its sandbox."""
import errno
import os
import socket
import time

INVOCATIONS = 0          # module state: survives between invocations of one sandbox
STARTED_AT = time.time()


def _can_write(path):
    try:
        with open(os.path.join(path, ".probe"), "w") as f:
            f.write("x")
        os.remove(os.path.join(path, ".probe"))
        return True
    except OSError:
        return False


def _write_error(path):
    """"ok", or the errno's name with which writing a file in path fails."""
    try:
        with open(os.path.join(path, ".probe"), "w") as f:
            f.write("x")
        os.remove(os.path.join(path, ".probe"))
        return "ok"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))


def handler(event, context):
    global INVOCATIONS
    INVOCATIONS += 1
    action = event.get("action", "env")
    if action == "sleep":
        time.sleep(event["seconds"])
    elif action == "raise":
        raise ValueError("boom: " + event.get("why", "asked to"))
    elif action == "exit":
        print("exiting now", flush=True)
        os._exit(event.get("code", 3))
    elif action == "big":
        return "x" * event["bytes"]
    elif action == "write":
        return {"written": {p: _write_error(p) for p in event["paths"]}}
    elif action == "print":
        for line in event["lines"]:
            print(line, flush=True)
    return {
        "invocations": INVOCATIONS,
        "pid": os.getpid(),
        "hostname": socket.gethostname(),       # the container's id, shortened
        "uid": os.getuid(),
        "cwd": os.getcwd(),
        "stdout": os.readlink("/proc/self/fd/1"),   # the host's FIFO, or Docker's pipe
        "stderr": os.readlink("/proc/self/fd/2"),
        "env": {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")},
        "request_id": context.aws_request_id,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "writable": {p: _can_write(p) for p in ("/tmp", "/var/task", "/", "/var/runtime", "/opt")},
        "client_context_custom": getattr(context.client_context, "custom", None),
        "event": event,
    }
