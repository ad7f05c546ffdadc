"""The `runtime-host` command: serve, run, invoke, images.

Owns: arguments, what is printed, exit statuses. Each subcommand is a thin
shell around Host / InvokeApi / images; no logic lives here that a test of
those would miss.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import datetime
import json
import logging
import shutil
import signal
import sys
import time
from pathlib import Path

from runtime_host.core.config import ConfigError, load_function, load_functions
from runtime_host.core.runtimes import runtime_images
from runtime_host.event_loop import run_on_uvloop
from runtime_host.core.protocol import DEFAULT_INVOKE_API_PORT

EXIT_OK, EXIT_FUNCTION_ERROR, EXIT_USAGE, EXIT_HOST = 0, 1, 2, 3


def _progress(line: str) -> None:
    print(f"images: {line}", file=sys.stderr, flush=True)


def _read_event(args: argparse.Namespace) -> bytes:
    if args.event_file:
        try:
            return Path(args.event_file).read_bytes()
        except OSError as exc:
            raise SystemExit(f"runtime-host: cannot read --event-file {args.event_file}: {exc.strerror}")
    return (args.event or "{}").encode()


def _warn_deprecated(functions) -> None:
    """A function on a runtime Lambda has deprecated loads, with a warning naming the date (runtimes.py)."""
    today = datetime.date.today()
    for fn in functions:
        warning = fn.deprecation(today)
        if warning:
            print(f"runtime-host: warning: function {fn.name!r}: {warning}", file=sys.stderr)


# --- serve -------------------------------------------------------------------
def _functions_to_serve(args: argparse.Namespace):
    """(functions, the SAM project or None), or an exit status: the folders under --functions, the
    functions of --template, and those made earlier by CreateFunction in the state directory."""
    from runtime_host.store.function_store import functions_root

    functions, errors, template = {}, [], None
    try:
        if args.functions:
            functions, errors = load_functions(args.functions)
        if args.template:
            from runtime_host.store.sam_template import TemplateError, load_template
            try:
                template = load_template(Path(args.template), args.region)
            except TemplateError as exc:
                print(f"runtime-host: {exc}", file=sys.stderr)
                return EXIT_USAGE
            for warning in template.warnings:
                print(f"runtime-host: {warning}", file=sys.stderr)
            for name, fn in template.functions.items():
                if name in functions:
                    errors.append(ConfigError(f"{args.template}: function {name} is also a folder under "
                                              f"{args.functions}; names must be unique"))
                else:
                    functions[name] = fn
        created_root = functions_root(Path(args.state_dir))
        if created_root.is_dir():
            created, created_errors = load_functions(created_root)
            errors += created_errors
            for name, fn in created.items():
                if name in functions:
                    errors.append(ConfigError(f"{fn.code_dir}: made by CreateFunction, and {name} is also given "
                                              f"by --functions or --template; serving that one"))
                else:
                    functions[name] = fn
    except ConfigError as exc:
        print(f"runtime-host: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for err in errors:
        print(f"runtime-host: not serving: {err}", file=sys.stderr)
    _warn_deprecated(functions.values())
    if not args.functions and not args.template:
        print("runtime-host: serve needs --functions DIR or --template template.yaml", file=sys.stderr)
        return EXIT_USAGE
    if not functions and (errors or args.template):
        print(f"runtime-host: no function to serve under {args.functions or args.template}", file=sys.stderr)
        return EXIT_USAGE
    return functions, template


async def _serve(args: argparse.Namespace) -> int:
    from runtime_host.host import Host, HostError
    from runtime_host.api.function_urls import FunctionUrls
    from runtime_host.api.invoke_api import InvokeApi
    from runtime_host.scheduler.schedule_timer import ScaledClock

    loaded = _functions_to_serve(args)
    if isinstance(loaded, int):
        return loaded
    functions, template = loaded
    try:
        host = Host(functions, state_dir=Path(args.state_dir), region=args.region, image_progress=_progress,
                    freeze=not args.no_freeze, freeze_grace_s=args.freeze_grace_ms / 1000,
                    idle_ttl_s=args.idle_ttl_s, init_timeout_s=args.init_timeout_s,
                    drain_timeout_s=args.drain_timeout_s, prices_path=args.prices, ledger_sync=args.ledger_sync,
                    stem_cells=args.stem_cells, async_retry_scale=args.async_retry_scale,
                    reload_code=not args.no_reload, schedule_clock=ScaledClock(args.schedule_clock_scale))
    except HostError as exc:
        print(f"runtime-host: {exc}", file=sys.stderr)
        return EXIT_HOST
    try:
        await host.start()
    except HostError as exc:
        print(f"runtime-host: {exc}", file=sys.stderr)
        await host.stop()
        return EXIT_HOST
    for name, alias in (template.aliases.items() if template is not None else ()):
        if name in host.functions:         # AutoPublishAlias: a version of the code as it is now, and the alias to it
            version = await host.auto_publish_alias(host.functions[name], alias)
            print(f"runtime-host: {name}: alias {alias} -> version {version} (AutoPublishAlias)", file=sys.stderr)
    try:
        server = await InvokeApi(host).start(args.host, args.port)
    except OSError as exc:
        print(f"runtime-host: cannot listen on {args.host}:{args.port}: {exc.strerror}; "
              "pick another with --port", file=sys.stderr)
        await host.stop()
        return EXIT_HOST
    urls, url_server = FunctionUrls(host), None
    url_port = args.port + 1 if args.url_port is None else args.url_port
    if url_port and urls.served:
        try:
            url_server = await urls.start(args.host, url_port)
        except OSError as exc:
            if args.url_port is None:      # the default is taken (--host 0.0.0.0 and the Runtime API's 9001): any port
                url_server = await urls.start(args.host, 0)
                print(f"runtime-host: port {url_port} is taken ({exc.strerror}); function URLs are on port "
                      f"{urls.port} (choose one with --url-port)", file=sys.stderr)
            else:
                print(f"runtime-host: cannot listen on {args.host}:{url_port} for function URLs: {exc.strerror}; "
                      "pick another with --url-port (0: no function URLs)", file=sys.stderr)
                server.close()
                await host.stop()
                return EXIT_HOST
    endpoint = f"http://{args.host}:{args.port}"
    print(f"runtime-host: serving {len(functions)} function(s) at {endpoint} "
          f"(Runtime API for sandboxes at {host.runtime_api_address})", file=sys.stderr)
    for fn in functions.values():
        url = f"  {urls.url_of(fn)}" if url_server is not None and fn.url is not None else ""
        print(f"  {fn.name:<24} {fn.runtime:<12} {fn.handler:<20} {fn.memory_mb} MB, {fn.timeout_s} s{url}",
              file=sys.stderr)
    if url_server is not None:
        print(f"function URLs: http://<name>.lambda-url.localhost:{urls.port}/<path> (browsers and curl resolve it), "
              f"or http://{args.host}:{urls.port}/<name>/<path>", file=sys.stderr)
    if functions:
        print(f"try: aws lambda invoke --endpoint-url {endpoint} --function-name {next(iter(functions))} out.json",
              file=sys.stderr, flush=True)
    else:
        print(f"no function yet: create one with aws lambda create-function --endpoint-url {endpoint} "
              "--function-name NAME --runtime python3.11 --handler app.handler --role arn:aws:iam::123456789012:"
              "role/any --zip-file fileb://code.zip", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    print("runtime-host: stopping: no new invocations; letting those in flight finish ...", file=sys.stderr, flush=True)
    await host.drain()             # meanwhile new invocations are answered 503, as before they were
    server.close()
    if url_server is not None:
        url_server.close()
    await host.stop()
    print("runtime-host: stopped; every sandbox removed", file=sys.stderr, flush=True)
    return EXIT_OK


# --- run -----------------------------------------------------------------------
def _run_command(args: argparse.Namespace) -> int:
    """`run`: through a warm host (warm_run.py) with --keep-warm, else a host of its own."""
    from runtime_host import warm_run

    if args.keep_warm > 0:
        payload = _read_event(args)
        try:
            json.loads(payload or b"{}")
        except ValueError as exc:
            print(f"runtime-host: the event is not JSON ({exc}); pass e.g. EVENT='{{\"k\": \"v\"}}'", file=sys.stderr)
            return EXIT_USAGE
        return warm_run.run_warm(args.function, payload or b"{}", args.state_dir, args.keep_warm, args.region,
                                 args.prices)
    warm_run.stop_warm_hosts(Path(args.state_dir).resolve(), Path(args.function).resolve())
    return run_on_uvloop(_run(args))


async def _run(args: argparse.Namespace) -> int:
    from runtime_host.host import Host, HostError

    try:
        fn = load_function(args.function)
    except ConfigError as exc:
        print(f"runtime-host: {exc}", file=sys.stderr)
        return EXIT_USAGE
    _warn_deprecated([fn])
    payload = _read_event(args)
    try:
        json.loads(payload or b"{}")
    except ValueError as exc:
        print(f"runtime-host: the event is not JSON ({exc}); pass e.g. EVENT='{{\"k\": \"v\"}}'", file=sys.stderr)
        return EXIT_USAGE
    try:
        # No stem cells: one invocation, nothing to start ahead for.
        host = Host({fn.name: fn}, state_dir=Path(args.state_dir), region=args.region, echo_logs=False,
                    image_progress=_progress, prices_path=args.prices, stem_cells=0)
    except HostError as exc:
        print(f"runtime-host: {exc}", file=sys.stderr)
        return EXIT_HOST
    # The log is printed from the function's log file, from where it ended
    # before this run: the host keeps only the last 4 KB of it in memory.
    log_file = host.log_path(fn.name)
    log_start = log_file.stat().st_size if log_file.exists() else 0
    try:
        await host.start()
        inv, outcome = await host.invoke(fn, payload or b"{}")
        await asyncio.wait_for(asyncio.shield(inv.reported), timeout=5)
    except HostError as exc:
        print(f"runtime-host: {exc}", file=sys.stderr)
        return EXIT_HOST
    finally:
        await host.stop()
    print("--- log ---", flush=True)
    with open(log_file, "rb") as log:
        log.seek(log_start)
        shutil.copyfileobj(log, sys.stdout.buffer)
    sys.stdout.buffer.flush()
    label = f"function error ({outcome.error_type})" if outcome.is_error else "response"
    print(f"--- {label} ---")
    print(outcome.body.decode("utf-8", "replace"))
    return EXIT_FUNCTION_ERROR if outcome.is_error else EXIT_OK


# --- invoke ---------------------------------------------------------------------
async def _invoke(args: argparse.Namespace) -> int:
    import aiohttp

    url = f"{args.endpoint_url.rstrip('/')}/2015-03-31/functions/{args.function_name}/invocations"
    headers = {"X-Amz-Invocation-Type": args.invocation_type, "X-Amz-Log-Type": "Tail"}
    async with aiohttp.ClientSession() as session:
        try:
            async with session.post(url, data=_read_event(args), headers=headers) as resp:
                body = await resp.read()
                if "X-Amz-Log-Result" in resp.headers:
                    sys.stderr.write(base64.b64decode(resp.headers["X-Amz-Log-Result"]).decode("utf-8", "replace"))
                print(body.decode("utf-8", "replace"))
                if resp.status >= 300:
                    print(f"runtime-host: HTTP {resp.status} {resp.headers.get('x-amzn-ErrorType', '')}", file=sys.stderr)
                    return EXIT_HOST
                return EXIT_FUNCTION_ERROR if "X-Amz-Function-Error" in resp.headers else EXIT_OK
        except aiohttp.ClientConnectionError as exc:
            print(f"runtime-host: no host answers at {args.endpoint_url} ({exc}); start one with "
                  "'runtime-host serve --functions DIR'", file=sys.stderr)
            return EXIT_HOST


# --- publish, alias ------------------------------------------------------------------
def _weights(text: str) -> dict[str, float]:
    """--weights 2=0.1 (RoutingConfig.AdditionalVersionWeights); '' removes the routing."""
    weights = {}
    for item in filter(None, text.split(",")):
        version, sep, weight = item.partition("=")
        try:
            weights[version.strip()] = float(weight)
        except ValueError:
            sep = ""
        if not sep or not version.strip():
            raise argparse.ArgumentTypeError(f"{item!r}: expected VERSION=WEIGHT, e.g. --weights 2=0.1")
    return weights


async def _manage(args: argparse.Namespace) -> int:
    """publish and alias: the Invoke API's operations on a running host (api/invoke_client.py says why
    not on the state directory)."""
    from runtime_host.api import invoke_client as api

    endpoint = args.endpoint_url
    if args.command == "publish":
        request = api.publish_version(endpoint, args.function_name, args.description or "")
    elif args.alias_command == "create":
        request = api.create_alias(endpoint, args.function_name, args.name, args.function_version,
                                   args.description or "", args.weights)
    elif args.alias_command == "update":
        request = api.update_alias(endpoint, args.function_name, args.name, args.function_version,
                                   args.description, args.weights)
    elif args.alias_command == "get":
        request = api.get_alias(endpoint, args.function_name, args.name)
    elif args.alias_command == "list":
        request = api.list_aliases(endpoint, args.function_name)
    else:
        request = api.delete_alias(endpoint, args.function_name, args.name)
    try:
        status, doc = await request
    except api.NoHost as exc:
        print(f"runtime-host: no host answers at {endpoint} ({exc}); versions and aliases are kept by the "
              "running host: start one with 'runtime-host serve --functions DIR' (or pass --endpoint-url)",
              file=sys.stderr)
        return EXIT_HOST
    if status >= 300:
        print(f"runtime-host: {doc.get('__type', f'HTTP {status}')}: {doc.get('message', '')}", file=sys.stderr)
        return EXIT_USAGE if status < 500 else EXIT_HOST
    if doc:
        print(json.dumps(doc, indent=2))
    return EXIT_OK


# --- ps -------------------------------------------------------------------------
PS_COLUMNS = (("FUNCTION", "function", 20), ("CONTAINER", "container", 12), ("STATE", "state", 13),
              ("AGE", "age_s", 6), ("INVOKES", "invocations", 7), ("IDLE", "idle_s", 6),
              ("MEM MB", "memory_now_mb", 7), ("PEAK MB", "memory_peak_mb", 7), ("LIMIT", "memory_mb", 6),
              ("CPU S", "cpu_s", 8), ("INIT", "initialization_type", 23))


def _seconds(value: float) -> str:
    return f"{value:.0f}s" if value < 120 else f"{value / 60:.0f}m"


async def _ps(args: argparse.Namespace) -> int:
    import aiohttp
    from runtime_host.api.invoke_api import HOST_SANDBOXES_PATH

    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(args.endpoint_url.rstrip("/") + HOST_SANDBOXES_PATH) as resp:
                view = await resp.json()
                rows, host = view["sandboxes"], view["host"]
    except (aiohttp.ClientError, ValueError, KeyError) as exc:
        print(f"runtime-host: no host answers at {args.endpoint_url} ({exc}); start one with "
              "'runtime-host serve --functions DIR'", file=sys.stderr)
        return EXIT_HOST
    if args.json:
        print(json.dumps(view, indent=2))
        return EXIT_OK
    print(f"host pid {host['pid']}: RSS {host['rss_mb']} MB, CPU {host['cpu_s']} s, up {_seconds(host['uptime_s'])}, "
          f"{host['sandboxes']} sandbox(es) for {host['functions']} function(s)")
    print("  ".join(f"{title:<{width}}" for title, _, width in PS_COLUMNS).rstrip())
    for row in rows:
        cells = []
        for _, key, width in PS_COLUMNS:
            value = row[key]
            if key in ("age_s", "idle_s"):
                value = _seconds(value)
            elif value is None:
                value = "-"
            cells.append(f"{str(value):<{width}}")
        print("  ".join(cells).rstrip())
    if not rows:
        print("(no sandboxes)")
    return EXIT_OK


# --- logs ------------------------------------------------------------------------
_RELATIVE_SINCE = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}   # as `aws logs tail --since`


def _since(text: str) -> float:
    """--since: a relative time (10m, 2h: one number, one unit of s m h d w)
    or an ISO 8601 timestamp, as `aws logs tail` takes it; epoch seconds."""
    from datetime import datetime, timezone

    amount, unit = text[:-1], text[-1:]
    if amount.isdigit() and unit in _RELATIVE_SINCE:
        return time.time() - int(amount) * _RELATIVE_SINCE[unit]
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a relative time (a number and one of s, m, h, d, w: "
                                         "10m, 2h) nor an ISO 8601 timestamp (2026-12-07T09:30:00Z)") from None
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()


def _log_line(event) -> str:
    """`aws logs tail`'s detailed format: timestamp (ms, UTC), stream name, message."""
    from datetime import datetime, timezone

    when = datetime.fromtimestamp(int(event.timestamp * 1000) / 1000, timezone.utc)
    return f"{when.isoformat(timespec='microseconds')} {event.stream} {event.message}".rstrip() + "\n"


async def _logs(args: argparse.Namespace) -> int:
    from runtime_host.store.log_streams import follow_events, read_events

    state_dir = Path(args.state_dir)
    if not (state_dir / "logs").is_dir():
        print(f"runtime-host: no logs under {state_dir}; pass the --state-dir the host was served with",
              file=sys.stderr)
        return EXIT_USAGE
    if not args.follow:
        events = await asyncio.to_thread(read_events, state_dir, args.function_name, since_epoch=args.since,
                                         request_id=args.request_id)
        sys.stdout.writelines(_log_line(e) for e in events)
        return EXIT_OK
    async for event in follow_events(state_dir, args.function_name, since_epoch=args.since,
                                     request_id=args.request_id):
        sys.stdout.write(_log_line(event))
        sys.stdout.flush()
    return EXIT_OK


# --- events -----------------------------------------------------------------------
def _events(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from runtime_host.store.event_queue import read_events

    events = read_events(Path(args.state_dir))
    if args.json:
        print(json.dumps([{k: v for k, v in asdict(e).items() if k != "payload"} for e in events], indent=2))
        return EXIT_OK
    now = time.time()
    print(f"{'REQUEST ID':<36}  {'FUNCTION':<24}  {'STATE':<7}  {'TRIES':>5}  {'NEXT TRY':>8}  LAST ERROR")
    for e in events:
        due = _seconds(max(0.0, e.next_attempt_at - now)) if e.state == "queued" else "-"
        print(f"{e.request_id:<36}  {e.function[:24]:<24}  {e.state:<7}  {e.attempts:>5}  {due:>8}  "
              f"{(e.last_error or '')[:80]}")
    if not events:
        print(f"(no events in {Path(args.state_dir) / 'events.sqlite'})")
    return EXIT_OK


# --- images -----------------------------------------------------------------------
def _images(args: argparse.Namespace) -> int:
    from runtime_host.backend.docker import image_builder

    try:
        runtimes = args.runtime or list(image_builder.RUNTIMES)
        for runtime in runtimes:
            tag = image_builder.ensure_image(runtime, _progress)
            print(f"{runtime}: {tag}")
    except ValueError as exc:
        print(f"runtime-host: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except image_builder.ImageBuildError as exc:
        print(f"runtime-host: {exc}", file=sys.stderr)
        return EXIT_HOST
    return EXIT_OK


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _add_conformance(sub) -> None:
    from runtime_host.conformance import cli as conformance_cli
    p = sub.add_parser("conformance", help="check that a runtime follows the Runtime API and survives Lambda",
                       description="Run every conformance scenario against a function folder (any runtime) or a "
                                   "bare bootstrap, in real sandboxes, and print what was expected, what was seen "
                                   "and how to fix a failure. Exit status 1 when a scenario fails.")
    conformance_cli.add_arguments(p)
    p.set_defaults(handler=conformance_cli.main)


def build_parser(skip_conformance: bool = False) -> argparse.ArgumentParser:
    """Every command's parser; skip_conformance leaves out the one whose module imports the whole
    host (about a second on a busy 2-core machine: most of a warm `run`'s wall time)."""
    parser = argparse.ArgumentParser(
        prog="runtime-host",
        description="A local host for Lambda-style functions: the AWS Lambda Runtime API and Invoke API "
                    "over real Docker sandboxes.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--state-dir", default=".runtime-host",
                       help="where logs and the billing ledger are kept (default: .runtime-host)")
        p.add_argument("--region", default="us-east-1", help="the AWS_REGION sandboxes see (default: us-east-1)")
        p.add_argument("--prices", default=None,
                       help="a price table in the shape of runtime_host/core/prices.toml (default: AWS list prices)")

    def event(p: argparse.ArgumentParser) -> None:
        p.add_argument("--event", help="the event, as JSON text (default: {})")
        p.add_argument("--event-file", help="read the event from this file instead")

    p = sub.add_parser("serve", help="serve every function folder under a folder until interrupted",
                       description="Serve the Invoke API (for the AWS CLI, boto3, curl) for every function folder "
                                   "under --functions, until Ctrl-C or SIGTERM; then remove every sandbox.")
    p.add_argument("--functions", help="a folder of function folders (or one function folder); an empty "
                                       "folder serves only what 'aws lambda create-function' creates")
    p.add_argument("--template", help="a SAM template (template.yaml): its AWS::Serverless::Function resources, "
                                      "each unsupported property named at start")
    p.add_argument("--host", default="127.0.0.1", help="address of the Invoke API (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=DEFAULT_INVOKE_API_PORT, help="port of the Invoke API (default: 9000)")
    p.add_argument("--url-port", type=int, default=None,
                   help="port of the function URLs of functions with url = true (default: --port + 1, or any free "
                        "port if that is taken; 0: none)")
    p.add_argument("--no-freeze", action="store_true",
                   help="do not freeze idle sandboxes (per function: freeze = false in function.toml)")
    p.add_argument("--freeze-grace-ms", type=float, default=5.0,
                   help="how long an idle sandbox stays thawed before it is frozen (default: 5; 0: at once)")
    p.add_argument("--idle-ttl-s", type=_positive_int, default=600,
                   help="shut down sandboxes idle this long (default: 600; per function: idle_ttl_s)")
    p.add_argument("--init-timeout-s", type=float, default=10.0,
                   help="limit of a sandbox's init phase (default: 10, as Lambda)")
    p.add_argument("--drain-timeout-s", type=float, default=30.0,
                   help="on Ctrl-C/SIGTERM, how long in-flight invocations may take to finish (default: 30)")
    p.add_argument("--stem-cells", type=int, default=1,
                   help="containers kept started ahead, per runtime and memory size, so a cold start skips the "
                        "container start (default: 1; 0: none)")
    p.add_argument("--ledger-sync", choices=["normal", "full"], default="normal",
                   help="normal: ledger records survive the host being killed; full: also a power cut "
                        "(an fsync per group commit)")
    p.add_argument("--no-reload", action="store_true",
                   help="do not watch the function folders (by default a change retires the sandboxes started "
                        "from the old code once they have answered)")
    # Hidden: the schedule clock runs this many times faster (60: a scheduled minute a second; tests).
    p.add_argument("--schedule-clock-scale", type=float, default=1.0, help=argparse.SUPPRESS)
    p.add_argument("--async-retry-scale", type=float, default=1.0,
                   help="multiply the waits between retries of Event invocations (default: 1, Lambda's 1 and "
                        "2 minutes; 0.01 makes them 0.6 and 1.2 s)")
    common(p)
    p.set_defaults(handler=lambda a: run_on_uvloop(_serve(a)))

    p = sub.add_parser("run", help="run one function once and print its response, log and REPORT",
                       description="Start a host for one function folder, invoke it once with the event, print "
                                   "the log (START, output, END, REPORT) and the response, and remove the sandbox. "
                                   "Exit status 1 when the function failed.")
    p.add_argument("function", help="the function folder (holding function.toml)")
    p.add_argument("--keep-warm", type=float, default=0, metavar="SECONDS",
                   help="serve the run from a host kept in the background for this many seconds after each run "
                        "(started by the first run; the next runs find the sandbox warm, as a second invoke on "
                        "Lambda does; `make run` passes 300). 0 (the default): a host for this run only, and a "
                        "warm host of this folder is ended")
    event(p)
    common(p)
    p.set_defaults(handler=_run_command)

    p = sub.add_parser("invoke", help="invoke a function on a running host (like 'aws lambda invoke')",
                       description="Invoke a function of a running 'runtime-host serve' and print the response; "
                                   "the log tail goes to stderr.")
    p.add_argument("function_name")
    p.add_argument("--endpoint-url", default=f"http://127.0.0.1:{DEFAULT_INVOKE_API_PORT}")
    p.add_argument("--invocation-type", default="RequestResponse", choices=["RequestResponse", "Event", "DryRun"])
    event(p)
    p.set_defaults(handler=lambda a: run_on_uvloop(_invoke(a)))

    endpoint_help = f"the running host's Invoke API (default: http://127.0.0.1:{DEFAULT_INVOKE_API_PORT})"
    p = sub.add_parser("publish", help="publish a version of a function on a running host (like "
                                       "'aws lambda publish-version')",
                       description="Snapshot the function's code and configuration as the next numbered version, "
                                   "on a running 'runtime-host serve' (unchanged code: the newest version again). "
                                   "Prints the version's configuration.")
    p.add_argument("function_name")
    p.add_argument("--description", default="")
    p.add_argument("--endpoint-url", default=f"http://127.0.0.1:{DEFAULT_INVOKE_API_PORT}", help=endpoint_help)
    p.set_defaults(handler=lambda a: run_on_uvloop(_manage(a)))

    p = sub.add_parser("alias", help="create, update, get, list or delete aliases on a running host",
                       description="Aliases of a function on a running 'runtime-host serve' (like 'aws lambda "
                                   "create-alias' and friends). --weights V=W sends W (0.0 to 1.0) of the "
                                   "alias's invocations to version V.")
    asub = p.add_subparsers(dest="alias_command", required=True, metavar="ACTION")
    for action, helptext in (("create", "a new alias to a version"), ("update", "change what is given"),
                             ("get", "one alias"), ("list", "every alias of the function"),
                             ("delete", "remove an alias")):
        a = asub.add_parser(action, help=helptext)
        a.add_argument("function_name")
        if action != "list":
            a.add_argument("name", help="the alias's name")
        if action in ("create", "update"):
            a.add_argument("--function-version", required=action == "create",
                           help="the version the alias points to ($LATEST or a number)")
            a.add_argument("--description", default=None)
            a.add_argument("--weights", type=_weights, default=None,
                           help="VERSION=WEIGHT: that share of invocations to another version "
                                "('' on update: no routing)")
        a.add_argument("--endpoint-url", default=f"http://127.0.0.1:{DEFAULT_INVOKE_API_PORT}", help=endpoint_help)
        a.set_defaults(handler=lambda a: run_on_uvloop(_manage(a)))

    p = sub.add_parser("ps", help="list the sandboxes of a running host",
                       description="List the sandboxes of a running 'runtime-host serve': function, container, "
                                   "state (READY, FROZEN, BUSY, ...), age, invocations served, idle time, memory "
                                   "now and peak, CPU seconds used; and the host's own RSS and CPU.")
    p.add_argument("--endpoint-url", default=f"http://127.0.0.1:{DEFAULT_INVOKE_API_PORT}")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(handler=lambda a: run_on_uvloop(_ps(a)))

    from runtime_host.store import billing_report
    p = sub.add_parser("billing", help="what the billing ledger says was spent, per function",
                       description="Summarize the billing ledger (kept by 'serve' and 'run' in the state directory): "
                                   "per function invocations, errors, cold starts, p50/p99 duration, billed seconds, "
                                   "GB-seconds and cost. No running host is needed.")
    billing_report.add_arguments(p)
    p.set_defaults(handler=billing_report.main)

    p = sub.add_parser("logs", help="a function's log lines from every sandbox, as 'aws logs tail' shows them",
                       description="Print a function's log lines (its output and START, END, REPORT) from every "
                                   "sandbox in the order the host received them, as 'aws logs tail' prints "
                                   "CloudWatch's: timestamp, log stream (one per sandbox, named as Lambda names "
                                   "them), message. No running host is needed; --follow waits for new lines.")
    p.add_argument("function_name")
    p.add_argument("--follow", action="store_true", help="keep printing new lines until Ctrl-C")
    p.add_argument("--since", type=_since, default="10m",
                   help="from when: a relative time (30s, 10m, 2h, 1d, 1w) or an ISO 8601 timestamp (default: 10m)")
    p.add_argument("--request-id", default=None, help="only the lines of this invocation")
    p.add_argument("--state-dir", default=".runtime-host", help="the host's state directory (default: .runtime-host)")
    p.set_defaults(handler=lambda a: run_on_uvloop(_logs(a)))

    p = sub.add_parser("events", help="the queue of Event invocations: waiting, retrying, done, dropped",
                       description="List the Event invocations in the state directory's durable queue: each "
                                   "one's request id, function, state (queued, running, done, failed), attempts, "
                                   "when its next try is due and its last error. No running host is needed.")
    p.add_argument("--state-dir", default=".runtime-host", help="the host's state directory (default: .runtime-host)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(handler=_events)

    if not skip_conformance:
        _add_conformance(sub)

    p = sub.add_parser("images", help="build the runtime images (from Debian packages, no registry)",
                       description="Build the base image and the per-runtime images from Debian packages. "
                                   "Images whose inputs did not change are not rebuilt.")
    isub = p.add_subparsers(dest="images_command", required=True, metavar="ACTION")
    b = isub.add_parser("build", help="build images that are missing or out of date",
                        description="Build the images for the given runtimes (default: all).")
    b.add_argument("runtime", nargs="*", help=f"any of {', '.join(runtime_images())} (default: all)")
    b.set_defaults(handler=_images)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="runtime-host: %(message)s")
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(skip_conformance=argv[:1] == ["run"]).parse_args(argv)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
