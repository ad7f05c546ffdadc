"""Tries to reach what a sandbox must not, with short timeouts, and reports
what each attempt got: "connected" is a hole; anything else (refused,
timed out, unreachable, no such file) is nothing. Also reports what the
sandbox is allowed (capabilities, no_new_privs, uid, pids limit)."""
import errno
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor

CONNECT_TIMEOUT_S = 1.5


def _tcp(host, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(CONNECT_TIMEOUT_S)
    try:
        s.connect((host, port))
        return "connected"
    except socket.timeout:
        return "timeout"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc))
    finally:
        s.close()


def _unix(path):
    if not os.path.exists(path):
        return "absent"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(CONNECT_TIMEOUT_S)
    try:
        s.connect(path)
        return "connected"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc))
    finally:
        s.close()


def _status():
    out = {}
    for line in open("/proc/self/status"):
        key, _, value = line.partition(":")
        if key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Uid", "Gid"):
            out[key] = value.strip()
    return out


def _pids_max():
    for path in ("/sys/fs/cgroup/pids.max", "/sys/fs/cgroup/pids/pids.max"):
        try:
            return open(path).read().strip()
        except OSError:
            pass
    return None


def _can_write_root():
    try:
        open("/hostile-was-here", "w").close()
        return "written"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc))


def handler(event, context):
    if event.get("action") == "hold":
        time.sleep(event.get("seconds", 3))
        return {"held": True}
    if event.get("action") == "whoami":
        return {"status": _status(), "pids_max": _pids_max(), "root_write": _can_write_root(),
                "hostname": socket.gethostname(),
                "env_secret": os.environ.get("HOSTILE_SECRET")}
    targets = event.get("tcp", [])
    with ThreadPoolExecutor(32) as pool:        # all at once: many targets time out
        tcp = dict(zip((f"{h}:{p}" for h, p in targets), pool.map(lambda t: _tcp(*t), targets)))
    unix = {path: _unix(path) for path in event.get("unix", [])}
    return {"tcp": tcp, "unix": unix}
