"""`runtime-host run --keep-warm S` (what `make run` calls): one-shot runs
served by a host kept in the background, so that the second run of a
function finds its sandbox warm, as the second `aws lambda invoke` does.

Two halves, one module:
- the client (`run_warm`), stdlib only: finds the warm host that serves this
  function folder (a record in STATE_DIR/warm/<key>.json: its pid and its
  loopback port), starts one when there is none (a detached process running
  `python -m runtime_host.warm_run`, whose output it relays while it starts),
  sends it the event and prints the log (START, output, END, REPORT) and the
  response exactly as a one-off `run` does;
- the warm host (`main`): a Host for that one function, answering one JSON
  line per run on 127.0.0.1, which ends (every sandbox removed) after S
  seconds without a run, or on SIGTERM/SIGINT.

Lambda's rules hold as they would in the cloud: a run that starts a sandbox
is a cold start and its REPORT has Init Duration; a warm one has none. The
key of a warm host is the folder and its function.toml's bytes, so a
changed configuration gets a new host (the old one is stopped). A changed
code folder is caught on every run, not by a file watch that could lag a
quick save-and-run: the client sends a fingerprint of the code folder (each
file's path, size and mtime), and a host that sees it differ from the last
one retires its warm sandboxes before invoking (Host.code_changed), so the
run is a cold start of the new code. Layers and images are not
fingerprinted: a rebuilt image or a changed layer needs the warm host ended
(`runtime-host run --keep-warm 0` ends it) or its idle time to pass.

Must not: import anything heavy in the client half (it is the whole cost
of a warm run besides the invocation); serve anything but loopback.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

WARM_DIR = "warm"
CONFIG_FILE = "function.toml"
START_TIMEOUT_S = 900          # a first start may build the runtime's image (about a minute, more on a busy machine)
ANSWER_TIMEOUT_S = 960         # above the longest function timeout (900 s) plus a cold start
REPORT_WAIT_S = 5
IDLE_CHECK_S = 1.0
EXIT_OK, EXIT_FUNCTION_ERROR, EXIT_USAGE, EXIT_HOST = 0, 1, 2, 3


# --- what both halves agree on ----------------------------------------------------
def key_of(folder: Path) -> str:
    """A warm host's key: the folder and its configuration's bytes."""
    digest = hashlib.sha256(str(folder).encode() + b"\0")
    try:
        digest.update((folder / CONFIG_FILE).read_bytes())
    except OSError:
        pass                              # the host's load_function says what is wrong
    return digest.hexdigest()[:16]


def code_fingerprint(code_dir: Path) -> str:
    """Every file's path, size and mtime under the code folder (no contents read)."""
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(code_dir):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            try:
                st = os.stat(path)
            except OSError:
                continue
            digest.update(f"{os.path.relpath(path, code_dir)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _paths(state_dir: Path, key: str) -> tuple[Path, Path]:
    base = state_dir / WARM_DIR / key
    return base.with_suffix(".json"), base.with_suffix(".log")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _read_record(path: Path) -> dict | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and _alive(int(record.get("pid", 0))) else None


# --- the client ----------------------------------------------------------------------
class _Gone(Exception):
    """The warm host was not there to take the run (nothing was invoked): start another."""


def _ask(port: int, request: dict) -> dict:
    try:
        conn = socket.create_connection(("127.0.0.1", port), timeout=ANSWER_TIMEOUT_S)
    except ConnectionRefusedError:
        raise _Gone() from None
    with conn:
        conn.sendall(json.dumps(request).encode() + b"\n")
        conn.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := conn.recv(1 << 16):
            chunks.append(chunk)
    if not chunks:
        raise ConnectionError("the warm host closed the connection without an answer")
    answer = json.loads(b"".join(chunks))
    if answer.get("gone"):
        raise _Gone()
    return answer


def stop_warm_hosts(state_dir: Path, folder: Path, keep_key: str | None = None) -> list[int]:
    """SIGTERM to the warm hosts of `folder` (but the one with keep_key); their pids. Each
    removes its sandboxes before it exits (wait_for_exit)."""
    stopped = []
    for path in sorted((state_dir / WARM_DIR).glob("*.json")):
        record = _read_record(path)
        if record is None or record.get("folder") != str(folder) or record.get("key") == keep_key:
            continue
        try:
            os.kill(int(record["pid"]), signal.SIGTERM)
            stopped.append(int(record["pid"]))
        except ProcessLookupError:
            pass
    return stopped


def wait_for_exit(pids: list[int], timeout_s: float = 120) -> bool:
    """True once none of pids runs (False when timeout_s passed first)."""
    deadline = time.monotonic() + timeout_s
    while any(_alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _start(folder: Path, state_dir: Path, key: str, keep_warm_s: float, region: str, prices: str | None) -> dict | int:
    """Starts a warm host and waits for its record, relaying its output to stderr."""
    record_path, log_path = _paths(state_dir, key)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    record_path.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "runtime_host.warm_run", str(folder), "--state-dir", str(state_dir),
            "--keep-warm", str(keep_warm_s), "--region", region, *(("--prices", prices) if prices else ())]
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True)   # Ctrl-C of this run leaves it alone
    print(f"runtime-host: no warm host serves {folder.name} yet: starting one (pid {proc.pid}); it keeps the "
          f"sandbox warm for {keep_warm_s:g} s after each run (KEEP_WARM=0 / --keep-warm 0: no warm host)",
          file=sys.stderr, flush=True)
    deadline = time.monotonic() + START_TIMEOUT_S
    with open(log_path, "rb") as log:
        while True:
            record = _read_record(record_path)
            new = log.read()
            if new:
                sys.stderr.buffer.write(new)
                sys.stderr.flush()
            if record is not None:
                return record
            if proc.poll() is not None:
                print(f"runtime-host: the warm host ended (status {proc.returncode}) before it served; "
                      f"its output is above and in {log_path}", file=sys.stderr)
                return EXIT_USAGE if proc.returncode == EXIT_USAGE else EXIT_HOST
            if time.monotonic() > deadline:
                proc.terminate()
                print(f"runtime-host: the warm host did not start in {START_TIMEOUT_S} s; see {log_path}",
                      file=sys.stderr)
                return EXIT_HOST
            time.sleep(0.01)


def run_warm(folder: str, payload: bytes, state_dir: str, keep_warm_s: float, region: str,
             prices: str | None) -> int:
    """One run through a warm host (started if need be); the exit status of `runtime-host run`."""
    folder_path, state = Path(folder).resolve(), Path(state_dir).resolve()
    key = key_of(folder_path)
    record_path, _ = _paths(state, key)
    record = _read_record(record_path)
    if record is None:
        stop_warm_hosts(state, folder_path)           # an older configuration's host, if any
        started = _start(folder_path, state, key, keep_warm_s, region, prices)
        if isinstance(started, int):
            return started
        record = started
    request = {"payload": base64.b64encode(payload).decode(),
               "fingerprint": code_fingerprint(Path(record["code_dir"]))}
    try:
        try:
            answer = _ask(int(record["port"]), request)
        except _Gone:
            # It ended between our look and our call (its idle time ran out): nothing was
            # invoked, so start another. Any other failure is reported, never run twice.
            record_path.unlink(missing_ok=True)
            started = _start(folder_path, state, key, keep_warm_s, region, prices)
            if isinstance(started, int):
                return started
            answer = _ask(int(started["port"]), request)
    except (_Gone, OSError, ValueError) as exc:
        print(f"runtime-host: the warm host did not answer ({type(exc).__name__}: {exc}); see "
              f"{_paths(state, key)[1]}", file=sys.stderr)
        return EXIT_HOST
    if "host_error" in answer:
        print(f"runtime-host: {answer['host_error']}", file=sys.stderr)
        return EXIT_HOST
    out = sys.stdout.buffer
    out.write(b"--- log ---\n" + base64.b64decode(answer["log"]))
    error_type = answer.get("error_type")
    label = f"function error ({error_type})" if error_type else "response"
    out.write(f"--- {label} ---\n".encode() + base64.b64decode(answer["body"]) + b"\n")
    out.flush()
    return EXIT_FUNCTION_ERROR if error_type else EXIT_OK


# --- the warm host ----------------------------------------------------------------------
async def _serve_warm(folder: Path, state_dir: Path, keep_warm_s: float, region: str, prices: str | None) -> int:
    import asyncio

    from runtime_host.core.config import ConfigError, load_function
    from runtime_host.host import Host, HostError

    try:
        fn = load_function(folder)
    except ConfigError as exc:
        print(f"runtime-host: {exc}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    key = key_of(folder)
    record_path, _ = _paths(state_dir, key)

    def progress(line: str) -> None:
        print(f"images: {line}", file=sys.stderr, flush=True)

    try:
        # One stem cell: a run after a code change starts from it, not from nothing.
        host = Host({fn.name: fn}, state_dir=state_dir, region=region, echo_logs=False, image_progress=progress,
                    prices_path=Path(prices) if prices else None, stem_cells=1)
    except HostError as exc:
        print(f"runtime-host: {exc}", file=sys.stderr, flush=True)
        return EXIT_HOST
    try:
        await host.start()
    except HostError as exc:
        print(f"runtime-host: {exc}", file=sys.stderr, flush=True)
        await host.stop()
        return EXIT_HOST
    log_file = host.log_path(fn.name)
    state = {"last": time.monotonic(), "busy": 0, "fingerprint": None, "closing": False}
    stop = asyncio.Event()

    async def one_run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state["busy"] += 1
        try:
            request = json.loads(await reader.readline())
            if state["closing"]:                  # taken just as we stopped: the client starts another host
                writer.write(b'{"gone": true}')
                await writer.drain()
                return
            if state["fingerprint"] not in (None, request["fingerprint"]):
                host.code_changed(fn.name)        # the warm sandbox has the old code loaded: a cold start
            state["fingerprint"] = request["fingerprint"]
            log_start = log_file.stat().st_size if log_file.exists() else 0
            try:
                inv, outcome = await host.invoke(fn, base64.b64decode(request["payload"]) or b"{}")
                await asyncio.wait_for(asyncio.shield(inv.reported), timeout=REPORT_WAIT_S)
                with open(log_file, "rb") as log:
                    log.seek(log_start)
                    lines = log.read()
                answer = {"log": base64.b64encode(lines).decode(), "body": base64.b64encode(outcome.body).decode(),
                          "error_type": outcome.error_type if outcome.is_error else None}
            except HostError as exc:
                answer = {"host_error": str(exc)}
            writer.write(json.dumps(answer).encode())
            await writer.drain()
        except (ValueError, KeyError, ConnectionError):
            pass                                  # not a client of ours, or it went away
        finally:
            writer.close()
            state["busy"] -= 1
            state["last"] = time.monotonic()

    server = await asyncio.start_server(one_run, "127.0.0.1", 0)
    record = {"pid": os.getpid(), "port": server.sockets[0].getsockname()[1], "folder": str(folder), "key": key,
              "function": fn.name, "code_dir": str(fn.code_dir.resolve()), "keep_warm_s": keep_warm_s}
    partial = record_path.with_suffix(".partial")
    partial.write_text(json.dumps(record))
    partial.rename(record_path)                   # whole or absent: a client never reads half of it
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"runtime-host: warm host for {fn.name} on 127.0.0.1:{record['port']} (pid {os.getpid()})",
          file=sys.stderr, flush=True)
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), IDLE_CHECK_S)
        except asyncio.TimeoutError:
            if state["busy"] == 0 and time.monotonic() - state["last"] > keep_warm_s:
                break
    # No new client finds us from here on; one that read the record just now gets a refused
    # connection or {"gone": true}, and starts another host.
    state["closing"] = True
    if _read_record(record_path) is not None and json.loads(record_path.read_text()).get("pid") == os.getpid():
        record_path.unlink(missing_ok=True)
    server.close()
    await host.stop()
    print(f"runtime-host: warm host for {fn.name} stopped; every sandbox removed", file=sys.stderr, flush=True)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    import argparse
    import logging

    from runtime_host.event_loop import run_on_uvloop

    logging.basicConfig(level=logging.INFO, format="runtime-host: %(message)s")

    parser = argparse.ArgumentParser(prog="python -m runtime_host.warm_run",
                                     description="The warm host behind `runtime-host run --keep-warm` (started by it).")
    parser.add_argument("function")
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--keep-warm", type=float, required=True)
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--prices", default=None)
    args = parser.parse_args(argv)
    return run_on_uvloop(_serve_warm(Path(args.function).resolve(), Path(args.state_dir).resolve(), args.keep_warm,
                                     args.region, args.prices))


if __name__ == "__main__":
    sys.exit(main())
