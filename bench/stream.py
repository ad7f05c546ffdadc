"""Response streaming: ours through InvokeWithResponseStream beside classic
RIE running the same bootstrap (tests/functions/sh-stream: bash + curl in
the `provided` image, posting its response chunked with
`Lambda-Runtime-Function-Response-Mode: streaming`).

Figures, each after one untimed call of its kind, ours and RIE's taken in
turns (ours, then RIE) so that both see the same minute of the machine:

* {"sleep": 1}: the handler writes "first ", sleeps 1 s, writes "second".
  Ours: from sending the request to the first PayloadChunk's payload, and to
  InvokeComplete. RIE (classic RIE buffers a streamed response and answers
  at the end, spec §2.3): to its response's first body byte and last byte,
  with the status and the bytes it answered.
* {"mb": 5}: 5 MiB as fast as the handler writes them (within the 6 MiB
  Lambda lets through unshaped, below RIE's 6,291,556-byte cap), ours and
  RIE's, to the last byte.
* {"mb": 10}: ours only (MiB/s): past the first 6 MiB the stream is shaped
  to 2 MiB/s, as on Lambda, so (10 - 6) / 2 = 2 s is the floor. RIE's
  answer to the same event, in a container of its own (its cap may end the
  runtime), is recorded as it comes: status, bytes, body.

Owns the image of RIE with the sh-stream bootstrap (FROM our provided image,
tagged by a hash of its contents, kept as a cache; images of the same
repository with other contents are removed) and its containers (labelled
rie.LABEL, so rie.cleanup() removes them, and removed on the way out).
"""
from __future__ import annotations

import http.client
import json
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

import rie
from botocore.eventstream import EventStreamBuffer
from common import REPO, Host, percentiles

FUNCTION = "sh-stream"
SOURCE = REPO / "tests" / "functions" / FUNCTION
CONFIG = REPO / "bench" / "functions-stream" / FUNCTION
STREAM_PATH = f"/2021-11-15/functions/{FUNCTION}/response-streaming-invocations"
BOOTSTRAP_IN_IMAGE = "/var/task/bootstrap"
IMAGE_REPO = "runtime-host-bench/rie-stream"
# What our host gives the function (bench/functions-stream/sh-stream/function.toml: timeout_s = 10).
RIE_ENV = {"AWS_LAMBDA_FUNCTION_TIMEOUT": "10"}
MIB = 1024 * 1024
SLEEP_S = 1
SIZES_MIB = (5, 10)
RIE_SIZE_LIMIT = 6_291_556
BURST_MIB, RATE_MIB_PER_S = 6, 2      # Lambda's shaping, spec §2.2
RIE_PROBES_OF_10_MIB = 3
CALL_TIMEOUT_S = 60
READ_SIZE = 1 << 16
BODY_HEAD_BYTES = 300


# --- the reference image ------------------------------------------------------------


def _dockerfile(base: str) -> str:
    return (f"FROM {base}\n"
            f"COPY aws-lambda-rie {rie.RIE_IN_IMAGE}\n"
            f"COPY bootstrap {BOOTSTRAP_IN_IMAGE}\n"
            "WORKDIR /var/task\n"
            f"ENTRYPOINT [\"{rie.RIE_IN_IMAGE}\"]\n"
            f"CMD [\"{BOOTSTRAP_IN_IMAGE}\"]\n")


def prepare(progress=print) -> str:
    """The RIE binary (rie.py's cache) and the sh-stream bootstrap in an
    image FROM our provided image; built when its tag is missing. Returns
    the tag."""
    from runtime_host.backend.docker import image_builder as images

    rie.CACHE_DIR.mkdir(parents=True, exist_ok=True)
    binary = rie._rie_binary(progress)
    dockerfile = _dockerfile(images.ensure_image("provided", progress))
    inputs = {"aws-lambda-rie": binary, "bootstrap": SOURCE / "bootstrap"}
    tag = f"{IMAGE_REPO}:{rie._hash_inputs(dockerfile, inputs)}"
    if rie._docker("image", "inspect", tag, check=False).strip() in ("", "[]"):
        progress(f"stream: building {tag}")
        with tempfile.TemporaryDirectory(prefix="rie-stream-image-") as ctx:
            shutil.copy2(binary, Path(ctx) / "aws-lambda-rie")
            shutil.copy2(SOURCE / "bootstrap", Path(ctx) / "bootstrap")
            (Path(ctx) / "Dockerfile").write_text(dockerfile)
            rie._docker("build", "-q", "-t", tag, ctx)
    stale = [t for t in rie._docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}", IMAGE_REPO,
                                    check=False).split() if t != tag]
    if stale:                                   # built from other contents: superseded
        rie._docker("image", "rm", *stale, check=False)
    return tag


def _functions() -> Path:
    """A functions folder holding only sh-stream: the bootstrap of
    tests/functions, the configuration of bench/functions-stream (the
    memory of bench-python, so that CPU throttling at 128 MB is not what is
    measured)."""
    root = Path(tempfile.mkdtemp(prefix="rh-bench-stream-"))
    shutil.copytree(CONFIG, root / FUNCTION)
    shutil.copy2(SOURCE / "bootstrap", root / FUNCTION / "bootstrap")
    return root


# --- one call, timed -------------------------------------------------------------------


def _connect(port: int) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", port, timeout=CALL_TIMEOUT_S)


def _ms(at: float | None, started: float) -> float | None:
    return None if at is None else (at - started) * 1000


def ours_call(conn: http.client.HTTPConnection, event: dict) -> dict:
    """InvokeWithResponseStream, its event stream parsed as it arrives (as
    an SDK does, with botocore's parser). Times in ms from sending the
    request: `headers` (the 200), `first` (the first PayloadChunk's
    payload), `end` (InvokeComplete)."""
    started = time.perf_counter()
    conn.request("POST", STREAM_PATH, body=json.dumps(event).encode(), headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    headers_at = time.perf_counter()
    buffer = EventStreamBuffer()
    first_at = end_at = None
    first, size, complete, kinds = b"", 0, None, Counter()
    while data := resp.read1(READ_SIZE):
        buffer.add_data(data)
        for message in buffer:
            kind = message.headers.get(":event-type")
            kinds[kind] += 1
            if kind == "PayloadChunk" and message.payload:
                if first_at is None:
                    first_at, first = time.perf_counter(), message.payload
                size += len(message.payload)
            elif kind == "InvokeComplete":
                end_at, complete = time.perf_counter(), json.loads(message.payload)
    resp.read()                                 # b"", and the connection is free for the next call
    return {"status": resp.status, "content_type": resp.headers.get("Content-Type"),
            "headers": _ms(headers_at, started), "first": _ms(first_at, started), "end": _ms(end_at, started),
            "bytes": size, "first_payload": first[:BODY_HEAD_BYTES], "complete": complete, "events": dict(kinds)}


def rie_call(conn: http.client.HTTPConnection, event: dict) -> dict:
    """Classic RIE's invoke, the body read as it arrives. Times in ms from
    sending the request: `headers`, `first` (first body byte), `end` (last
    byte)."""
    started = time.perf_counter()
    conn.request("POST", rie.INVOKE_PATH, body=json.dumps(event).encode(), headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    headers_at = time.perf_counter()
    first_at, parts = None, []
    while data := resp.read1(READ_SIZE):
        if first_at is None:
            first_at = time.perf_counter()
        parts.append(data)
    end_at = time.perf_counter()
    resp.read()                                 # b"", and the connection is free for the next call
    body = b"".join(parts)
    return {"status": resp.status, "content_type": resp.headers.get("Content-Type"),
            "transfer_encoding": resp.headers.get("Transfer-Encoding"),
            "content_length": resp.headers.get("Content-Length"),
            "function_error": resp.headers.get("X-Amz-Function-Error"),
            "headers": _ms(headers_at, started), "first": _ms(first_at, started), "end": _ms(end_at, started),
            "bytes": len(body), "body": body}


def _check_ours(answer: dict, event: dict) -> None:
    """Ours must answer right for its times to count."""
    problem = None
    if answer["status"] != 200 or answer["complete"] is None or "ErrorCode" in answer["complete"]:
        problem = "not a complete, successful stream"
    elif "sleep" in event and (answer["first_payload"] != b"first " or answer["bytes"] != len(b"first second")):
        problem = "not 'first ' then 'second'"
    elif "mb" in event and answer["bytes"] != event["mb"] * MIB:
        problem = f"{answer['bytes']} bytes"
    if problem:
        shown = {**answer, "first_payload": repr(answer["first_payload"])}
        raise RuntimeError(f"sh-stream {event}: {problem}: {json.dumps(shown)[:600]}")


def _rie_summary(answers: list[dict], expected: bytes | None) -> dict:
    """What RIE answered over the calls: statuses, headers, size, and
    whether the body was the handler's bytes."""
    last = answers[-1]
    return {"statuses": dict(Counter(str(a["status"]) for a in answers)), "bytes": last["bytes"],
            "content_type": last["content_type"], "transfer_encoding": last["transfer_encoding"],
            "content_length": last["content_length"], "function_error_header": last["function_error"],
            "body_as_streamed": expected is not None and all(a["body"] == expected for a in answers),
            "body_head": last["body"][:BODY_HEAD_BYTES].decode("utf-8", "replace"),
            # RIE answers at the end: the gap between its headers and its first byte, and its last.
            "first_byte_after_headers_ms_p50": percentiles([a["first"] - a["headers"] for a in answers
                                                            if a["first"] is not None] or [0.0])["p50"]}


def _seconds(p: dict) -> float:
    return p["p50"] / 1000


# --- the figures ------------------------------------------------------------------------


def _paired(host_port: int, container: rie.RieContainer, n: int) -> tuple[dict, dict]:
    cases = [("sleep", {"sleep": SLEEP_S}), *((f"mib_{m}", {"mb": m}) for m in SIZES_MIB)]
    ours_conn, rie_conn = _connect(host_port), _connect(container.port)
    ours_answers: dict[str, list[dict]] = {k: [] for k, _ in cases}
    rie_answers: dict[str, list[dict]] = {k: [] for k, e in cases if e.get("mb", 0) * MIB <= RIE_SIZE_LIMIT}
    try:
        for key, event in cases:
            for i in range(n + 1):                  # the first of each kind untimed
                answer = ours_call(ours_conn, event)
                _check_ours(answer, event)
                if i:
                    ours_answers[key].append(answer)
                if key in rie_answers:
                    answer = rie_call(rie_conn, event)
                    if i:
                        rie_answers[key].append(answer)
    finally:
        ours_conn.close()
        rie_conn.close()
    ours = {}
    for key, answers in ours_answers.items():
        ours[key] = {"first": percentiles([a["first"] for a in answers]),
                     "end": percentiles([a["end"] for a in answers]),
                     "headers": percentiles([a["headers"] for a in answers]),
                     "bytes": answers[-1]["bytes"], "content_type": answers[-1]["content_type"],
                     "events_per_call": answers[-1]["events"]}
        if key.startswith("mib_"):
            ours[key]["mib_per_s"] = answers[-1]["bytes"] / MIB / _seconds(ours[key]["end"])
    ours["mib_10"]["shaping_floor_s"] = (10 - BURST_MIB) / RATE_MIB_PER_S
    results = {}
    for key, answers in rie_answers.items():
        expected = b"first second" if key == "sleep" else b"x" * (int(key.split("_")[1]) * MIB)
        ok = [a for a in answers if a["first"] is not None]
        results[key] = {**_rie_summary(answers, expected),
                        "first": percentiles([a["first"] for a in ok]) if ok else {"n": 0},
                        "end": percentiles([a["end"] for a in answers]),
                        "headers": percentiles([a["headers"] for a in answers])}
        if key.startswith("mib_"):
            results[key]["mib_per_s"] = answers[-1]["bytes"] / MIB / _seconds(results[key]["end"])
    return ours, results


def rie_over_the_cap(image: str, probes: int) -> dict:
    """{"mb": 10} to a fresh RIE container (after one untimed {"sleep": 0}):
    what it answers each time, then whether it still answers a small call,
    whether the container still runs, and the notable lines of its log."""
    with rie.RieContainer(image, keep_after_exit=True, command=(BOOTSTRAP_IN_IMAGE,), env=RIE_ENV) as container:
        conn = _connect(container.port)
        answers, failures = [], Counter()
        try:
            rie_call(conn, {"sleep": 0})
            for _ in range(probes):
                try:
                    answers.append(rie_call(conn, {"mb": 10}))
                except (OSError, http.client.HTTPException) as err:
                    failures[type(err).__name__] += 1
                    conn.close()
                    conn = _connect(container.port)
            try:
                after = rie_call(conn, {"sleep": 0})
                after = {"status": after["status"], "body": after["body"][:BODY_HEAD_BYTES].decode("utf-8", "replace")}
            except (OSError, http.client.HTTPException) as err:
                after = {"error": type(err).__name__}
        finally:
            conn.close()
        state = container.state()
        log = [line.strip() for line in container.log_tail(200)
               if any(word in line for word in ("response posted", "413", "rror", "xceed", "Limit", "exit"))]
    summary = _rie_summary(answers, None) if answers else {}
    summary.pop("body_as_streamed", None)
    return {**summary, "probes": probes, "failures": dict(failures),
            "seconds_p50": _seconds(percentiles([a["end"] for a in answers])) if answers else None,
            "small_call_after": after, "container_running_after": state["running"],
            "log_notable": log[-20:]}


def run(n: int = 10, smoke: bool = False) -> dict:
    image = prepare()
    functions = _functions()
    try:
        with Host(functions) as host, rie.RieContainer(image, command=(BOOTSTRAP_IN_IMAGE,), env=RIE_ENV) as container:
            ours, rie_r = _paired(host.port, container, n)
        rie_r["mib_10"] = rie_over_the_cap(image, 1 if smoke else RIE_PROBES_OF_10_MIB)
    finally:
        rie.cleanup()
        shutil.rmtree(functions, ignore_errors=True)
    return {"function": FUNCTION, "image": image, "n": n, "sleep_s": SLEEP_S, "ours": ours, "rie": rie_r,
            "ratios": {"first_byte_p50": ours["sleep"]["first"]["p50"] / rie_r["sleep"]["first"]["p50"],
                       "mib_5_seconds_p50": ours["mib_5"]["end"]["p50"] / rie_r["mib_5"]["end"]["p50"]}}


if __name__ == "__main__":
    import sys

    print(json.dumps(run(3 if "--smoke" in sys.argv else 10, smoke="--smoke" in sys.argv), indent=2, default=str))
