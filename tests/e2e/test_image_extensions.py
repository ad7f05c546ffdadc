"""A container image function's own extensions: Lambda starts every file in
the image's /opt/extensions (an image has no layers), as it starts a layer's.
The image is the awslambdaric test image (AWS's Python runtime client as the
entrypoint) plus tests/fixtures/layers/py-telemetry copied into
/opt/extensions: an unmodified extension that registers for INVOKE,
subscribes to the Telemetry API and prints what it receives."""
from __future__ import annotations

import base64
import re
import shutil
import subprocess
import time
import tomllib

import pytest

from tests.conftest import REPO, client_for, invoke, start_host, stop_host

TAG = "runtime-host-test/awslambdaric-ext:latest"
LABEL = "runtime-host-test=awslambdaric-ext"
EXTENSION = REPO / "tests" / "fixtures" / "layers" / "py-telemetry" / "extensions" / "py-telemetry"


@pytest.fixture(scope="module")
def image_host(awslambdaric_function, tmp_path_factory):
    base = tomllib.loads((awslambdaric_function / "function.toml").read_text())["image"]
    ctx = tmp_path_factory.mktemp("image-ext")
    shutil.copy2(EXTENSION, ctx / "py-telemetry")
    (ctx / "Dockerfile").write_text(f"FROM {base}\nLABEL {LABEL}\nCOPY py-telemetry /opt/extensions/py-telemetry\n")
    subprocess.run(["docker", "build", "-q", "-t", TAG, str(ctx)], check=True, capture_output=True)
    subprocess.run(["docker", "image", "prune", "-f", "--filter", f"label={LABEL}"], check=True, capture_output=True)
    functions = tmp_path_factory.mktemp("image-ext-functions")
    (functions / "img-ext").mkdir()
    (functions / "img-ext" / "function.toml").write_text(
        f'runtime = "image"\nimage = "{TAG}"\nhandler = "app.handler"\nmemory_mb = 256\ntimeout_s = 5\n')
    host = start_host(functions, tmp_path_factory.mktemp("image-ext-state"))
    try:
        yield host
    finally:
        stop_host(host)


def test_an_images_own_extension_registers_gets_invoke_and_telemetry(image_host):
    client = client_for(image_host.endpoint)
    cold, first = invoke(client, "img-ext", {"n": 1}, LogType="Tail")
    _, second = invoke(client, "img-ext", {"n": 2})
    assert first["ric"] is True and second["count"] == 2, "both served by the same warm awslambdaric process"
    assert "EXTENSION\tName: py-telemetry\tState: Ready\tEvents: [INVOKE]" in base64.b64decode(cold["LogResult"]).decode()
    deadline = time.monotonic() + 20
    pattern = re.compile(rf"telemetry platform\.report {second['request_id']}")
    while not pattern.search(image_host.log_of("img-ext")) and time.monotonic() < deadline:
        time.sleep(0.2)
    log = image_host.log_of("img-ext")
    assert pattern.search(log), log[-3000:]
    assert "py-telemetry got INVOKE" in log and "py-telemetry subscribed" in log
