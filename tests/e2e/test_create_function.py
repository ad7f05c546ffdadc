"""CreateFunction, UpdateFunctionCode and DeleteFunction with a .zip, called
as a deploy script calls them (the AWS CLI's --zip-file fileb://, boto3):
the host serves a created function at once, replaced code answers from the
next invocation, the function survives a restart, and each bad input gets
AWS's error."""
from __future__ import annotations

import io
import json
import os
import subprocess
import zipfile

import pytest
from botocore.exceptions import ClientError

from tests.conftest import DUMMY_AWS_ENV, VENV_BIN, client_for, start_host, stop_host

ROLE = "arn:aws:iam::123456789012:role/any"
# Module-level state: a warm sandbox that kept the old code would still answer the old number.
CODE = "LOADED = {n}\n\ndef handler(event, context):\n    return {{'code': LOADED, 'event': event}}\n"


def code_zip(path, n: int) -> str:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("app.py", CODE.format(n=n))
    return f"fileb://{path}"


def test_create_update_delete_with_the_aws_cli_and_boto3(docker_engine, tmp_path):
    functions = tmp_path / "functions"
    (functions / "own").mkdir(parents=True)
    (functions / "own" / "function.toml").write_text('runtime = "python3.11"\nhandler = "app.handler"\n')
    host = start_host(functions, tmp_path / "state")

    def aws(*args, ok=True):
        done = subprocess.run([str(VENV_BIN / "aws"), "lambda", *args, "--endpoint-url", host.endpoint],
                              env={**os.environ, **DUMMY_AWS_ENV}, capture_output=True, text=True, timeout=120)
        assert (done.returncode == 0) == ok, done.stderr
        return json.loads(done.stdout) if ok and done.stdout.strip() else done.stderr

    create = ["create-function", "--function-name", "deployed", "--runtime", "python3.11", "--handler",
              "app.handler", "--role", ROLE, "--memory-size", "256", "--timeout", "7"]
    try:
        made = aws(*create, "--zip-file", code_zip(tmp_path / "v1.zip", 1))
        assert (made["FunctionName"], made["Runtime"], made["Handler"], made["MemorySize"], made["Timeout"]) == \
            ("deployed", "python3.11", "app.handler", 256, 7)
        client = client_for(host.endpoint)

        def call():
            return json.loads(client.invoke(FunctionName="deployed", Payload=b'{"k": 1}')["Payload"].read())

        assert call() == {"code": 1, "event": {"k": 1}}          # served without a restart

        assert "ResourceConflictException" in aws(*create, "--zip-file", code_zip(tmp_path / "again.zip", 1), ok=False)
        assert "Function already exist: deployed" in aws(*create, "--zip-file", f"fileb://{tmp_path / 'v1.zip'}",
                                                         ok=False)
        bad_runtime = aws(*[("python9" if a == "python3.11" else a) for a in create][:-6], "--function-name", "x",
                          "--zip-file", f"fileb://{tmp_path / 'v1.zip'}", "--role", ROLE, ok=False)
        assert "InvalidParameterValueException" in bad_runtime and "python9" in bad_runtime
        # (The AWS CLI refuses a file that is no zip itself; boto3 sends it.)
        with pytest.raises(ClientError) as junk:
            client.create_function(FunctionName="junk", Runtime="python3.11", Role=ROLE, Handler="app.handler",
                                   Code={"ZipFile": b"PK\x03\x04 this is not a zip"})
        assert junk.value.response["Error"]["Code"] == "InvalidParameterValueException"
        assert "Could not unzip uploaded file" in junk.value.response["Error"]["Message"]
        traversal = tmp_path / "traversal.zip"
        with zipfile.ZipFile(traversal, "w") as z:
            z.writestr("../../escaped.py", "x = 1\n")
        assert "InvalidParameterValueException" in aws("create-function", "--function-name", "sneaky", "--runtime",
                                                       "python3.11", "--handler", "app.handler", "--role", ROLE,
                                                       "--zip-file", f"fileb://{traversal}", ok=False)
        assert not (tmp_path / "state" / "escaped.py").exists() and not (tmp_path / "escaped.py").exists()
        missing = aws("update-function-code", "--function-name", "nobody", "--zip-file",
                      f"fileb://{tmp_path / 'v1.zip'}", ok=False)
        assert "ResourceNotFoundException" in missing
        assert "InvalidParameterValueException" in aws("update-function-code", "--function-name", "own",
                                                       "--zip-file", f"fileb://{tmp_path / 'v1.zip'}", ok=False)

        updated = aws("update-function-code", "--function-name", "deployed", "--zip-file",
                      code_zip(tmp_path / "v2.zip", 2))
        assert updated["FunctionName"] == "deployed" and updated["MemorySize"] == 256   # the configuration stays
        assert call()["code"] == 2             # the warm sandbox that loaded code 1 was retired

        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as z:
            z.writestr("app.py", CODE.format(n=3))
        published = client.create_function(FunctionName="by-boto3", Runtime="python3.11", Role=ROLE,
                                           Handler="app.handler", Code={"ZipFile": buffer.getvalue()}, Publish=True)
        assert published["Version"] == "1"
        resp = client.invoke(FunctionName="by-boto3", Qualifier="1", Payload=b"{}")
        assert resp["ExecutedVersion"] == "1" and json.loads(resp["Payload"].read())["code"] == 3
        with pytest.raises(ClientError) as refused:
            client.create_function(FunctionName="by-boto3", Runtime="python3.11", Role=ROLE,
                                   Handler="app.handler", Code={"ZipFile": buffer.getvalue()})
        assert refused.value.response["Error"]["Code"] == "ResourceConflictException"
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409

        client.delete_function(FunctionName="by-boto3")
        state = tmp_path / "state"
        assert not (state / "functions" / "by-boto3").exists() and not (state / "versions" / "by-boto3").exists()
        assert any(p.name.startswith("by-boto3.") for p in (state / "functions" / ".retired").iterdir())
        with pytest.raises(ClientError) as gone:
            client.invoke(FunctionName="by-boto3", Payload=b"{}")
        assert gone.value.response["Error"]["Code"] == "ResourceNotFoundException"
    finally:
        stop_host(host)
    assert host.proc.returncode == 0, host.stderr()

    # A deploy survives a restart on the same state directory.
    host = start_host(functions, tmp_path / "state")
    try:
        client = client_for(host.endpoint)
        assert json.loads(client.invoke(FunctionName="deployed", Payload=b"{}")["Payload"].read())["code"] == 2
        assert {f["FunctionName"] for f in client.list_functions()["Functions"]} == {"deployed", "own"}
    finally:
        stop_host(host)
