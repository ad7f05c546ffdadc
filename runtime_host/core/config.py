"""A function's definition, read from a function folder's `function.toml`.

Owns: parsing and validating function.toml, and the defaults an absent field
takes. A bad value is refused here with an error naming the file, the field,
the value and what is allowed, so nothing downstream has to re-check it.
Must not: touch Docker, images or the network.
"""
from __future__ import annotations

import os
import re
import stat
import tomllib
import zipfile
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from runtime_host.core.async_invoke import (MAX_EVENT_AGE_S, MAX_RETRY_ATTEMPTS, AsyncConfig, AsyncConfigError,
                                           check_range, parse_destination)
from runtime_host.core.http_events import AUTH_TYPE_IAM, AUTH_TYPES, INVOKE_MODES, UrlConfig
from runtime_host.core.protocol import ACCOUNT_ID, LATEST
from runtime_host.core.runtimes import RUNTIMES as RUNTIME_TABLE
from runtime_host.core.runtimes import unknown_runtime_reason
from runtime_host.core.schedules import INVALID_MESSAGE, Schedule, ScheduleError, parse_schedule

CONFIG_FILE = "function.toml"

# runtime -> canonical Lambda identifier, and -> our image ("image" has none).
# The table itself is runtimes.py's.
RUNTIMES = {name: runtime.lambda_id for name, runtime in RUNTIME_TABLE.items()}
IMAGE_OF_RUNTIME = {name: runtime.image for name, runtime in RUNTIME_TABLE.items() if runtime.image}

MEMORY_MB_RANGE = (128, 10240)
MB_PER_VCPU = 1769
MAX_VCPUS = 6
TIMEOUT_S_RANGE = (1, 900)
EPHEMERAL_STORAGE_MB_RANGE = (512, 10240)
# Lambda's default is the account's unreserved pool (1,000); a 2-core laptop
# cannot hold that many containers, so a function gets 10 unless it says.
DEFAULT_RESERVED_CONCURRENCY = 10
MAX_RESERVED_CONCURRENCY = 1000
MAX_ENVIRONMENT_BYTES = 4096          # spec §4.1: 4 KB for all customer variables
MAX_LAYERS = 5                        # spec §4.2 (/opt): a function may use at most five layers

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# spec §4.1: variables the platform sets; a function may not override them.
RESERVED_ENV = frozenset({
    "_HANDLER", "_X_AMZN_TRACE_ID", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE", "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR",
    "AWS_LAMBDA_MAX_CONCURRENCY",           # from max_concurrency
})

KNOWN_FIELDS = frozenset({
    "name", "runtime", "handler", "memory_mb", "timeout_s", "reserved_concurrency",
    "image", "environment", "ephemeral_storage_mb", "description",
    "provisioned_concurrency", "idle_ttl_s", "freeze", "architecture", "layers", "logging", "max_concurrency",
    "url",
    "async",
    "schedule",
})
# Invocations one sandbox takes at once (Lambda Managed Instances' multi-concurrency;
# 1 = Lambda's on-demand model). Upper bound: ours (docs/spec-additions.md §5).
MAX_CONCURRENCY_RANGE = (1, 64)
# What the price table knows; sandboxes run on this machine's own CPU either way.
ARCHITECTURES = ("x86_64", "arm64")
MAX_IDLE_TTL_S = 7 * 24 * 3600

# Lambda's LoggingConfig (docs/spec-additions.md §4): the values its API takes,
# as it spells them. Levels are allowed only with the JSON format.
LOG_FORMAT_TEXT = "Text"
LOG_FORMAT_JSON = "JSON"
LOG_FORMATS = (LOG_FORMAT_JSON, LOG_FORMAT_TEXT)     # as the API lists them
APPLICATION_LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")
SYSTEM_LOG_LEVELS = ("DEBUG", "INFO", "WARN")
DEFAULT_LOG_LEVEL = "INFO"           # both levels, when the format is JSON and a level is not given
LOGGING_FIELDS = ("format", "application_level", "system_level")


class ConfigError(ValueError):
    """A function folder that cannot be served; the message says why and what to change."""


@dataclass(frozen=True)
class LoggingConfig:
    """`logging = {...}` in function.toml: Lambda's advanced logging controls.

    The levels are None in Text format (Lambda has none there) and never
    None in JSON format (INFO unless given)."""
    format: str = LOG_FORMAT_TEXT
    application_level: str | None = None
    system_level: str | None = None

    def __post_init__(self) -> None:
        if self.is_json:
            object.__setattr__(self, "application_level", self.application_level or DEFAULT_LOG_LEVEL)
            object.__setattr__(self, "system_level", self.system_level or DEFAULT_LOG_LEVEL)

    @property
    def is_json(self) -> bool:
        return self.format == LOG_FORMAT_JSON


@dataclass(frozen=True)
class FunctionConfig:
    name: str
    runtime: str                 # as written (alias kept for display); see lambda_runtime
    handler: str
    code_dir: Path
    memory_mb: int = 128
    timeout_s: int = 3
    reserved_concurrency: int = DEFAULT_RESERVED_CONCURRENCY
    image: str = ""
    environment: dict[str, str] = field(default_factory=dict)
    ephemeral_storage_mb: int = 512
    description: str = ""
    provisioned_concurrency: int = 0
    idle_ttl_s: int | None = None      # None: the host's default
    freeze: bool = True
    architecture: str = "x86_64"       # prices only: the code runs on this machine's CPU
    layers: tuple[Path, ...] = ()      # folders or .zip files, extracted in order under /opt (later ones win)
    bootstrap: str = "/var/task/bootstrap"   # provided runtimes: where the bootstrap is (a layer's: /opt/bootstrap)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    max_concurrency: int = 1     # invocations one sandbox serves at once (AWS_LAMBDA_MAX_CONCURRENCY)
    version: str = LATEST        # a published version's number; its code_dir is that version's copy
    url: UrlConfig | None = None   # a function URL (`url = true`, or a table); None: none
    async_invoke: AsyncConfig = field(default_factory=AsyncConfig)   # `[async]`: retries, event age, destinations
    schedules: tuple[Schedule, ...] = ()   # `schedule = "rate(...)" | "cron(...)"` or a list: EventBridge rules

    @property
    def lambda_runtime(self) -> str:
        """The runtime identifier Lambda would report (provided -> provided.al2023)."""
        return RUNTIMES[self.runtime]

    @property
    def is_image(self) -> bool:
        return self.runtime == "image"

    @property
    def is_custom_runtime(self) -> bool:
        return RUNTIME_TABLE[self.runtime].language == "provided"

    def deprecation(self, today: date) -> str | None:
        """A warning naming Lambda's deprecation date, once its runtime is past it (None otherwise)."""
        return RUNTIME_TABLE[self.runtime].deprecation(today)

    @property
    def vcpus(self) -> float:
        return vcpus_for_memory(self.memory_mb)

    def arn(self, region: str, qualifier: str | None = None) -> str:
        arn = f"arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{self.name}"
        return f"{arn}:{qualifier}" if qualifier else arn


# The init phase is not held to the memory size's CPU share: measured on
# Lambda, a function's init code runs with two unthrottled vCPUs at every
# memory size up to 3,008 MB (docs/spec-additions.md §13). The host gives
# a sandbox this many (capped at the machine's cores) from its start until
# its init is done, then the share of its memory size.
INIT_VCPUS = 2.0


def init_vcpus(memory_mb: int) -> float:
    """The CPU quota of a sandbox's init phase: INIT_VCPUS, or its memory
    size's share where that is more."""
    return max(INIT_VCPUS, vcpus_for_memory(memory_mb))


def vcpus_for_memory(memory_mb: int) -> float:
    """Lambda's CPU share for a memory size: 1,769 MB is one vCPU, and
    10,240 MB six (spec §5.1); linear in between. The host caps it at the
    machine's cores."""
    if memory_mb <= MB_PER_VCPU:
        return memory_mb / MB_PER_VCPU
    return 1 + (memory_mb - MB_PER_VCPU) * (MAX_VCPUS - 1) / (MEMORY_MB_RANGE[1] - MB_PER_VCPU)


def require_executable(bootstrap: Path) -> None:
    """A bootstrap Lambda could not start is refused here, with the fix."""
    if not os.access(bootstrap, os.X_OK):
        raise ConfigError(f"{bootstrap}: not executable; run 'chmod +x {bootstrap}' "
                          "(Lambda would fail every invoke with Runtime.InvalidEntrypoint)")


def _layers(path: Path, folder: Path, raw: dict) -> tuple[Path, ...]:
    """`layers = ["path", ...]`: folders or .zip files, relative to the function folder."""
    value = raw.get("layers", [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _refuse(path, "layers", value, 'expected a list of paths, e.g. ["../layers/common", "deps.zip"]')
    if len(value) > MAX_LAYERS:
        raise _refuse(path, "layers", value, f"a function may use at most {MAX_LAYERS} layers, as on Lambda")
    layers = []
    for entry in value:
        layer = (folder / entry).resolve()
        if not layer.exists():
            raise _refuse(path, "layers", entry, f"no such file or folder ({layer}); paths are relative to the "
                          "function folder")
        if layer.is_file() and not zipfile.is_zipfile(layer):
            raise _refuse(path, "layers", entry, f"{layer} is not a .zip archive; a layer is a folder or a .zip file")
        if not layer.is_dir() and not layer.is_file():
            raise _refuse(path, "layers", entry, "expected a folder or a .zip file")
        layers.append(layer)
    return tuple(layers)


def _logging(path: Path, raw: dict) -> LoggingConfig:
    """`logging = { format = "JSON", application_level = "WARN", system_level = "INFO" }`."""
    value = raw.get("logging", {})
    if not isinstance(value, dict):
        raise _refuse(path, "logging", value, 'expected a table, e.g. logging = { format = "JSON", '
                      'application_level = "WARN" }')
    unknown = sorted(set(value) - set(LOGGING_FIELDS))
    if unknown:
        raise _refuse(path, f"logging.{unknown[0]}", value[unknown[0]],
                      f"known fields are {', '.join(LOGGING_FIELDS)}")
    log_format = value.get("format", LOG_FORMAT_TEXT)
    if log_format not in LOG_FORMATS:
        raise _refuse(path, "logging.format", log_format, f"expected one of {', '.join(LOG_FORMATS)}, as Lambda "
                      "spells them")
    levels = {}
    for name, allowed in (("application_level", APPLICATION_LOG_LEVELS), ("system_level", SYSTEM_LOG_LEVELS)):
        level = value.get(name)
        if level is None:
            continue
        if level not in allowed:
            raise _refuse(path, f"logging.{name}", level, f"expected one of {', '.join(allowed)}")
        if log_format != LOG_FORMAT_JSON:
            raise _refuse(path, f"logging.{name}", level, f'log levels need format = "{LOG_FORMAT_JSON}"; Lambda '
                          f'refuses a level when the log format is "{LOG_FORMAT_TEXT}"')
        levels[name] = level
    return LoggingConfig(format=log_format, **levels)


def _bootstrap_in_layers(layers: tuple[Path, ...]) -> tuple[Path, bool] | None:
    """The bootstrap the last layer holding one puts at /opt/bootstrap: (where, executable)."""
    for layer in reversed(layers):
        if layer.is_dir():
            candidate = layer / "bootstrap"
            if candidate.is_file():
                return candidate, os.access(candidate, os.X_OK)
        else:
            with zipfile.ZipFile(layer) as archive:
                try:
                    info = archive.getinfo("bootstrap")
                except KeyError:
                    continue
                return layer / "bootstrap", bool((info.external_attr >> 16) & stat.S_IXUSR)
    return None


def _refuse(path: Path, field_name: str, value: object, allowed: str) -> ConfigError:
    return ConfigError(f"{path}: field '{field_name}' = {value!r} is not allowed; {allowed}")


def _int_in_range(path: Path, raw: dict, name: str, default: int, lo: int, hi: int) -> int:
    value = raw.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise _refuse(path, name, value, f"expected a whole number from {lo} to {hi}")
    return value


ASYNC_FIELDS = ("maximum_retry_attempts", "maximum_event_age_s", "on_success", "on_failure")


def _async_config(path: Path, folder: Path, raw) -> AsyncConfig:
    """`[async]`: what PutFunctionEventInvokeConfig sets on Lambda (docs/spec-additions.md §7)."""
    if not isinstance(raw, dict):
        raise _refuse(path, "async", raw, "expected a table: [async] then maximum_retry_attempts = 0..2, "
                      "maximum_event_age_s = 60..21600, on_success / on_failure = \"function:NAME\" or \"folder:PATH\"")
    unknown = sorted(set(raw) - set(ASYNC_FIELDS))
    if unknown:
        raise _refuse(path, f"async.{unknown[0]}", raw[unknown[0]], f"the fields of [async] are {', '.join(ASYNC_FIELDS)}")
    try:
        return AsyncConfig(
            maximum_retry_attempts=check_range("maximum_retry_attempts", raw.get("maximum_retry_attempts", 2),
                                               MAX_RETRY_ATTEMPTS),
            maximum_event_age_s=check_range("maximum_event_age_s", raw.get("maximum_event_age_s", 21600),
                                            MAX_EVENT_AGE_S),
            on_success=parse_destination(raw["on_success"], folder) if "on_success" in raw else None,
            on_failure=parse_destination(raw["on_failure"], folder) if "on_failure" in raw else None)
    except AsyncConfigError as exc:
        name = next((f for f in ASYNC_FIELDS if f in str(exc)), "async")
        raise _refuse(path, f"async.{name}" if name != "async" else "async", raw.get(name, raw), str(exc)) from None


URL_FIELDS = ("invoke_mode", "auth_type")


def _url(path: Path, raw: dict) -> UrlConfig | None:
    """`url = true`, or `url = { invoke_mode = "BUFFERED" | "RESPONSE_STREAM", auth_type = "NONE" }`
    (CreateFunctionUrlConfig's InvokeMode and AuthType; docs/spec-additions.md §6)."""
    value = raw.get("url", False)
    if isinstance(value, bool):
        return UrlConfig() if value else None
    if not isinstance(value, dict):
        raise _refuse(path, "url", value, 'expected true, false or a table, e.g. url = { invoke_mode = '
                      '"RESPONSE_STREAM" }')
    unknown = sorted(set(value) - set(URL_FIELDS))
    if unknown:
        raise _refuse(path, f"url.{unknown[0]}", value[unknown[0]], f"known fields are {', '.join(URL_FIELDS)}")
    invoke_mode = value.get("invoke_mode", UrlConfig.invoke_mode)
    if invoke_mode not in INVOKE_MODES:
        raise _refuse(path, "url.invoke_mode", invoke_mode, f"expected one of {', '.join(INVOKE_MODES)}, as "
                      "Lambda spells them")
    auth_type = value.get("auth_type", UrlConfig.auth_type)
    if auth_type == AUTH_TYPE_IAM:
        raise _refuse(path, "url.auth_type", auth_type, "this host does not check SigV4 signatures, so it serves "
                      f"function URLs with auth_type {', '.join(AUTH_TYPES)} only (anyone who reaches the port "
                      "may call them)")
    if auth_type not in AUTH_TYPES:
        raise _refuse(path, "url.auth_type", auth_type, f"expected {', '.join(AUTH_TYPES)}")
    return UrlConfig(invoke_mode=invoke_mode, auth_type=auth_type)


def _schedules(path: Path, raw: dict) -> tuple[Schedule, ...]:
    """`schedule = "rate(5 minutes)"`, or a list of them (one EventBridge rule each); docs/spec-additions.md §8."""
    value = raw.get("schedule", [])
    items = value if isinstance(value, list) else [value]
    schedules = []
    for index, item in enumerate(items):
        name = f"schedule[{index}]" if isinstance(value, list) else "schedule"
        try:
            schedules.append(parse_schedule(item))
        except ScheduleError as exc:
            raise _refuse(path, name, item, f"{exc} (EventBridge refuses it: {INVALID_MESSAGE})") from None
    return tuple(schedules)


def load_function(folder: str | os.PathLike) -> FunctionConfig:
    """Read and validate one function folder; raises ConfigError on anything wrong."""
    folder = Path(folder).resolve()
    path = folder / CONFIG_FILE
    if not folder.is_dir():
        raise ConfigError(f"{folder}: not a folder; a function is a folder holding {CONFIG_FILE} and its code")
    if not path.is_file():
        raise ConfigError(f"{path}: missing; every function folder needs a {CONFIG_FILE} (see examples/hello-python)")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return function_from_raw(raw, folder, path)


def function_from_raw(raw: dict, folder: Path, path: Path | str) -> FunctionConfig:
    """A function from function.toml's fields, read from a file or given by a
    translation (core/sam.py); `path` names the source in errors, `folder` holds the code."""
    unknown = sorted(set(raw) - KNOWN_FIELDS)
    if unknown:
        raise _refuse(path, unknown[0], raw[unknown[0]], f"known fields are {', '.join(sorted(KNOWN_FIELDS))}")

    name = raw.get("name", folder.name)
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise _refuse(path, "name", name, "expected 1 to 64 letters, digits, '-' or '_'")

    runtime = raw.get("runtime")
    if runtime not in RUNTIMES:
        raise _refuse(path, "runtime", runtime, unknown_runtime_reason(runtime))

    handler = raw.get("handler", "")
    if not isinstance(handler, str):
        raise _refuse(path, "handler", handler, "expected a string such as 'app.handler'")
    if RUNTIME_TABLE[runtime].managed and "." not in handler:
        raise _refuse(path, "handler", handler, "expected 'file.function' (e.g. 'app.handler') for this runtime")

    image = raw.get("image", "")
    if not isinstance(image, str):
        raise _refuse(path, "image", image, "expected the name of a local image, e.g. 'my-fn:latest'")
    if runtime == "image" and not image:
        raise _refuse(path, "image", image, "runtime = \"image\" needs image = \"<local image with its own runtime client>\"")
    if runtime != "image" and image:
        raise _refuse(path, "image", image, "only runtime = \"image\" takes an image; remove the field or change the runtime")

    memory_mb = _int_in_range(path, raw, "memory_mb", 128, *MEMORY_MB_RANGE)
    timeout_s = _int_in_range(path, raw, "timeout_s", 3, *TIMEOUT_S_RANGE)
    reserved = _int_in_range(path, raw, "reserved_concurrency", DEFAULT_RESERVED_CONCURRENCY, 0, MAX_RESERVED_CONCURRENCY)
    storage_mb = _int_in_range(path, raw, "ephemeral_storage_mb", 512, *EPHEMERAL_STORAGE_MB_RANGE)

    environment = raw.get("environment", {})
    if not isinstance(environment, dict):
        raise _refuse(path, "environment", environment, "expected a table: [environment] then KEY = \"value\" lines")
    env: dict[str, str] = {}
    for key, value in environment.items():
        if key in RESERVED_ENV:
            raise _refuse(path, f"environment.{key}", value, "this variable is reserved by Lambda and set by the host")
        if not re.match(r"^[A-Za-z][A-Za-z0-9_]*$", key):
            raise _refuse(path, f"environment.{key}", value, "variable names start with a letter and hold letters, digits and '_'")
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise _refuse(path, f"environment.{key}", value, "expected a string (or a number)")
        env[key] = str(value)
    if sum(len(k) + len(v) for k, v in env.items()) > MAX_ENVIRONMENT_BYTES:
        raise _refuse(path, "environment", "...", f"all variables together must fit in {MAX_ENVIRONMENT_BYTES} bytes")

    provisioned = _int_in_range(path, raw, "provisioned_concurrency", 0, 0, reserved)
    max_concurrency = _int_in_range(path, raw, "max_concurrency", 1, *MAX_CONCURRENCY_RANGE)
    async_config = _async_config(path, folder, raw.get("async", {}))
    idle_ttl_s = raw.get("idle_ttl_s")
    if idle_ttl_s is not None:
        idle_ttl_s = _int_in_range(path, raw, "idle_ttl_s", 0, 1, MAX_IDLE_TTL_S)
    freeze = raw.get("freeze", True)
    if not isinstance(freeze, bool):
        raise _refuse(path, "freeze", freeze, "expected true or false")

    architecture = raw.get("architecture", "x86_64")
    if architecture not in ARCHITECTURES:
        raise _refuse(path, "architecture", architecture, f"expected one of {', '.join(ARCHITECTURES)}")

    description = raw.get("description", "")
    if not isinstance(description, str):
        raise _refuse(path, "description", description, "expected a string")

    logging_config = _logging(path, raw)
    url = _url(path, raw)
    schedules = _schedules(path, raw)

    layers = _layers(path, folder, raw)
    if runtime == "image" and layers:
        raise _refuse(path, "layers", raw["layers"], "a container image function has no layers on Lambda; "
                      "build them into the image")

    bootstrap_at = "/var/task/bootstrap"
    if RUNTIME_TABLE[runtime].language == "provided":
        bootstrap = folder / "bootstrap"
        if bootstrap.is_file():
            require_executable(bootstrap)
        elif (from_layer := _bootstrap_in_layers(layers)) is not None:
            where, executable = from_layer
            if not executable:
                raise ConfigError(f"{where}: not executable; make it executable in its layer "
                                  "(Lambda would fail every invoke with Runtime.InvalidEntrypoint)")
            bootstrap_at = "/opt/bootstrap"
        else:
            raise ConfigError(f"{folder}: runtime '{runtime}' needs an executable file named 'bootstrap' in the folder "
                              "or at the top of one of its layers (Lambda would fail every invoke with "
                              "Runtime.InvalidEntrypoint)")

    return FunctionConfig(
        name=name, runtime=runtime, handler=handler, code_dir=folder, memory_mb=memory_mb,
        timeout_s=timeout_s, reserved_concurrency=reserved, image=image, environment=env,
        ephemeral_storage_mb=storage_mb, description=description, provisioned_concurrency=provisioned,
        idle_ttl_s=idle_ttl_s, freeze=freeze, architecture=architecture, layers=layers, bootstrap=bootstrap_at,
        logging=logging_config, max_concurrency=max_concurrency, url=url, async_invoke=async_config,
        schedules=schedules,
    )


def load_functions(root: str | os.PathLike) -> tuple[dict[str, FunctionConfig], list[ConfigError]]:
    """Every function folder directly under root (or root itself if it is one).

    One bad folder does not stop the others: its error is returned beside the
    good ones, for the caller to report.
    """
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"{root}: no such folder; --functions takes a folder of function folders")
    folders = [root] if (root / CONFIG_FILE).is_file() else sorted(
        p for p in root.iterdir() if p.is_dir() and (p / CONFIG_FILE).is_file())
    functions: dict[str, FunctionConfig] = {}
    errors: list[ConfigError] = []
    for folder in folders:
        try:
            fn = load_function(folder)
        except ConfigError as exc:
            errors.append(exc)
            continue
        if fn.name in functions:
            errors.append(ConfigError(f"{folder / CONFIG_FILE}: field 'name' = {fn.name!r} is already used by "
                                      f"{functions[fn.name].code_dir}; names must be unique"))
            continue
        functions[fn.name] = fn
    return functions, errors
