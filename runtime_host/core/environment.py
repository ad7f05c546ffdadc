"""The environment a sandbox's runtime starts with (spec §4.1).

Owns: Lambda's reserved variables for a function, and the function's own on top.
Must not: know where the Runtime API is reached from (the caller passes it).
"""
from __future__ import annotations

import time
import uuid

from runtime_host.core.config import FunctionConfig
from runtime_host.core.protocol import LATEST
from runtime_host.core.runtimes import NODE, RUBY, RUNTIMES

ON_DEMAND = "on-demand"
PROVISIONED = "provisioned-concurrency"
EXEC_WRAPPER = "AWS_LAMBDA_EXEC_WRAPPER"
LOG_FORMAT_ENV = "AWS_LAMBDA_LOG_FORMAT"
LOG_LEVEL_ENV = "AWS_LAMBDA_LOG_LEVEL"

# How our images start each managed runtime's interpreter: what a wrapper
# script (AWS_LAMBDA_EXEC_WRAPPER) is handed, as Lambda hands it "the
# interpreter path and all original arguments" (docs/spec-additions.md §2).
INTERPRETER_COMMAND = {name: list(runtime.client) for name, runtime in RUNTIMES.items() if runtime.client}


def node_path(fn: FunctionConfig) -> str:
    """Lambda's NODE_PATH for a Node runtime: the layers' node_modules first (docs/spec-additions.md §1)."""
    major = fn.runtime.removeprefix("nodejs").removesuffix(".x")
    return (f"/opt/nodejs/node{major}/node_modules:/opt/nodejs/node_modules:/var/runtime/node_modules:"
            "/var/runtime:/var/task")


def ruby_paths(fn: FunctionConfig) -> dict[str, str]:
    """Lambda's Ruby search paths: the function's vendored gems and the layers' (ruby/gems/3.3.0, ruby/lib)
    (docs/spec-additions.md §9)."""
    abi = fn.runtime.removeprefix("ruby") + ".0"            # ruby3.3 -> 3.3.0, Ruby's gem ABI folder
    return {
        "GEM_PATH": f"/var/task/vendor/bundle/ruby/{abi}:/opt/ruby/gems/{abi}:/var/runtime/vendor/bundle/ruby/{abi}",
        "RUBYLIB": "/var/task:/var/runtime/lib:/opt/ruby/lib",
    }


def log_stream_name(version: str = LATEST) -> str:
    """As Lambda names a sandbox's log stream: date/[version]id."""
    return time.strftime("%Y/%m/%d", time.gmtime()) + f"/[{version}]{uuid.uuid4().hex}"


def logging_env(fn: FunctionConfig) -> dict[str, str]:
    """The log format always ("Text" or "JSON"), the application log level only
    in JSON format, where Lambda has one (docs/spec-additions.md §4)."""
    env = {LOG_FORMAT_ENV: fn.logging.format}
    if fn.logging.is_json:
        env[LOG_LEVEL_ENV] = fn.logging.application_level
    return env


def sandbox_env(fn: FunctionConfig, *, region: str, runtime_api: str,
                initialization_type: str = ON_DEMAND, version: str = LATEST,
                log_stream: str | None = None) -> dict[str, str]:
    """spec §4.1, with the function's own variables (validated in config).
    The function's own AWS_LAMBDA_LOG_FORMAT / AWS_LAMBDA_LOG_LEVEL win over
    its logging table's, as RAPID lets them (docs/spec-additions.md §4)."""
    env = {
        "AWS_LAMBDA_RUNTIME_API": runtime_api,
        "AWS_LAMBDA_FUNCTION_NAME": fn.name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory_mb),
        "AWS_LAMBDA_FUNCTION_VERSION": version,
        "AWS_LAMBDA_INITIALIZATION_TYPE": initialization_type,
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{fn.name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": log_stream or log_stream_name(version),
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "LAMBDA_TASK_ROOT": "/var/task",
        "LAMBDA_RUNTIME_DIR": "/var/runtime",
        "TZ": ":UTC",
        "LANG": "C.UTF-8",        # Lambda says en_US.UTF-8; Debian's minimal base has only C.UTF-8
        "PATH": "/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin",
        "LD_LIBRARY_PATH": "/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib",
        "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
    }
    if fn.handler:
        env["_HANDLER"] = fn.handler
    if not fn.is_custom_runtime and not fn.is_image:
        env["AWS_EXECUTION_ENV"] = f"AWS_Lambda_{fn.lambda_runtime}"
    if fn.runtime.startswith("nodejs"):
        env["NODE_PATH"] = node_path(fn)
    if RUNTIMES[fn.runtime].language == RUBY:
        env.update(ruby_paths(fn))
    env.update(logging_env(fn))
    if fn.max_concurrency > 1:               # Lambda Managed Instances: run that many next loops
        env["AWS_LAMBDA_MAX_CONCURRENCY"] = str(fn.max_concurrency)
    env.update(fn.environment)
    return env


def runtime_command(fn: FunctionConfig) -> list[str] | None:
    """What a sandbox of our images runs (None: an image function's own entrypoint and CMD)."""
    if fn.is_image:
        return [fn.handler] if fn.handler else None
    if fn.is_custom_runtime:                   # wrapper scripts are not for OS-only runtimes (docs/spec-additions.md §2)
        return [fn.bootstrap]
    command = interpreter_command(fn)
    wrapper = fn.environment.get(EXEC_WRAPPER)
    if wrapper:
        return [wrapper, *command]
    # The client's own command line rather than the image's /var/runtime/bootstrap:
    # it carries the per-runtime node flags (runtimes.py) the shared bootstrap cannot.
    return command


def interpreter_command(fn: FunctionConfig) -> list[str]:
    """The runtime's client command, less the Node flags whose feature the
    function turns back on in its NODE_OPTIONS, as Lambda removes them
    (docs/spec-additions.md §9)."""
    node_options = fn.environment.get("NODE_OPTIONS", "").split()
    return [part for part in INTERPRETER_COMMAND[fn.runtime]
            if not (part.startswith("--no-") and "--" + part[len("--no-"):] in node_options)]


def starts_its_own_interpreter(fn: FunctionConfig) -> bool:
    """Whether a stem (whose interpreter is already running) cannot become this
    function: a wrapper script starts the interpreter itself, and NODE_OPTIONS
    is read only when node starts."""
    return uses_exec_wrapper(fn) or (RUNTIMES[fn.runtime].language == NODE and "NODE_OPTIONS" in fn.environment)


def uses_exec_wrapper(fn: FunctionConfig) -> bool:
    return not fn.is_custom_runtime and not fn.is_image and bool(fn.environment.get(EXEC_WRAPPER))
