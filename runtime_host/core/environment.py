"""The environment a sandbox's runtime starts with (spec §4.1).

Owns: Lambda's reserved variables for a function, and the function's own on top.
Must not: know where the Runtime API is reached from (the caller passes it).
"""
from __future__ import annotations

import time
import uuid

from runtime_host.core.config import FunctionConfig
from runtime_host.core.protocol import LATEST

ON_DEMAND = "on-demand"
PROVISIONED = "provisioned-concurrency"


def log_stream_name(version: str = LATEST) -> str:
    """As Lambda names a sandbox's log stream: date/[version]id."""
    return time.strftime("%Y/%m/%d", time.gmtime()) + f"/[{version}]{uuid.uuid4().hex}"


def sandbox_env(fn: FunctionConfig, *, region: str, runtime_api: str,
                initialization_type: str = ON_DEMAND, version: str = LATEST) -> dict[str, str]:
    """spec §4.1, with the function's own variables (validated in config)."""
    env = {
        "AWS_LAMBDA_RUNTIME_API": runtime_api,
        "AWS_LAMBDA_FUNCTION_NAME": fn.name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory_mb),
        "AWS_LAMBDA_FUNCTION_VERSION": version,
        "AWS_LAMBDA_INITIALIZATION_TYPE": initialization_type,
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{fn.name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": log_stream_name(version),
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
    env.update(fn.environment)
    return env


def runtime_command(fn: FunctionConfig) -> list[str] | None:
    """What a sandbox of our images runs (None: an image function's own entrypoint and CMD)."""
    if fn.is_image:
        return [fn.handler] if fn.handler else None
    return ["/var/task/bootstrap"] if fn.is_custom_runtime else ["/var/runtime/bootstrap"]
