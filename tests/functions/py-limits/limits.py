"""Writes to /tmp until the file system says no; reports how far it got."""
import errno
import os


def fill_tmp(event, context):
    chunk = b"x" * (16 * 1024 * 1024)
    written = 0
    error = None
    with open("/tmp/fill", "wb") as f:
        try:
            while written < event.get("limit_mb", 4096) * 1024 * 1024:
                f.write(chunk)
                f.flush()
                written += len(chunk)
        except OSError as exc:
            error = errno.errorcode.get(exc.errno, str(exc.errno))
    os.remove("/tmp/fill")
    return {"written_mb": written // (1024 * 1024), "error": error}


def threads(event, context):
    """Starts threads until the pids limit says no."""
    import threading
    stop = threading.Event()
    started, error = 0, None
    try:
        for _ in range(event.get("max", 2000)):
            threading.Thread(target=stop.wait, daemon=True).start()
            started += 1
    except RuntimeError as exc:
        error = str(exc)
    stop.set()
    return {"threads_started": started, "error": error}
