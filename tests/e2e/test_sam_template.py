"""`runtime-host serve --template`: the SAM project in examples/sam-app served
unchanged and called as its users call it (boto3, by its AutoPublishAlias,
and over HTTP at the URL its HttpApi event gives it); unsupported properties
named at start; a malformed template refused naming resource and property."""
from __future__ import annotations

import json
import subprocess
import urllib.request

from tests.conftest import REPO, RUNTIME_HOST, client_for, start_host, stop_host

TEMPLATE = REPO / "examples" / "sam-app" / "template.yaml"


def test_the_sam_example_runs_unchanged(docker_engine, tmp_path):
    (tmp_path / "none").mkdir()
    host = start_host(tmp_path / "none", tmp_path / "state", extra_args=["--template", str(TEMPLATE)])
    try:
        stderr = host.stderr()
        assert "HelloWorldFunction.Tracing: not supported by this host; ignored" in stderr
        assert "alias live -> version 1 (AutoPublishAlias)" in stderr
        client = client_for(host.endpoint)
        resp = client.invoke(FunctionName="HelloWorldFunction", Qualifier="live", Payload=b"{}")
        assert resp["ExecutedVersion"] == "1"
        body = json.loads(json.loads(resp["Payload"].read())["body"])
        assert body == {"message": "hello from us-east-1", "stage": "local", "version": "1", "path": None}
        conf = client.get_function_configuration(FunctionName="HelloWorldFunction")
        assert (conf["MemorySize"], conf["Timeout"], conf["Runtime"], conf["Handler"]) == \
            (256, 5, "python3.11", "app.lambda_handler")
        with urllib.request.urlopen(f"http://127.0.0.1:{host.url_port}/HelloWorldFunction/hello", timeout=60) as r:
            assert r.status == 200 and r.headers["Content-Type"] == "application/json"
            assert json.loads(r.read())["path"] == "/hello"
    finally:
        stop_host(host)
    assert host.proc.returncode == 0, host.stderr()


def test_a_malformed_template_stops_serve_naming_resource_and_property(tmp_path):
    (tmp_path / "code").mkdir()
    template = tmp_path / "template.yaml"
    template.write_text("Transform: AWS::Serverless-2016-10-31\nResources:\n  Broken:\n"
                        "    Type: AWS::Serverless::Function\n    Properties:\n      CodeUri: code/\n"
                        "      Runtime: python3.11\n      Handler: app.handler\n      Timeout: 9000\n")
    done = subprocess.run([RUNTIME_HOST, "serve", "--template", str(template), "--state-dir", str(tmp_path / "s")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f"{template}: Broken: property 'Timeout' = 9000 is not allowed" in done.stderr, done.stderr
