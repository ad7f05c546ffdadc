"""Versions and aliases with the AWS CLI as a user types it: publish-version,
create-alias, update-alias with weights, invoke --qualifier (real sandboxes
per version, AWS_LAMBDA_FUNCTION_VERSION and the invoked ARN as Lambda sets them)."""
from __future__ import annotations

import json
import os
import subprocess

from tests.conftest import DUMMY_AWS_ENV, VENV_BIN, client_for, start_host, stop_host

HANDLER = ("import os\n\ndef handler(event, context):\n    return {{'code': {code}, 'version': "
           "os.environ['AWS_LAMBDA_FUNCTION_VERSION'], 'arn': context.invoked_function_arn}}\n")


def test_publish_alias_and_invoke_by_qualifier_with_the_aws_cli(tmp_path):
    folder = tmp_path / "functions" / "versioned"
    folder.mkdir(parents=True)
    (folder / "function.toml").write_text('runtime = "python3.11"\nhandler = "app.handler"\nmemory_mb = 512\n')
    (folder / "app.py").write_text(HANDLER.format(code=1))
    host = start_host(tmp_path / "functions", tmp_path / "state", extra_args=["--no-reload"])

    def aws(*args):
        done = subprocess.run([str(VENV_BIN / "aws"), "lambda", *args, "--endpoint-url", host.endpoint],
                              env={**os.environ, **DUMMY_AWS_ENV}, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout) if done.stdout.strip() else None

    try:
        assert aws("publish-version", "--function-name", "versioned")["Version"] == "1"
        (folder / "app.py").write_text(HANDLER.format(code=2))
        assert aws("publish-version", "--function-name", "versioned", "--description", "two")["Version"] == "2"
        (folder / "app.py").write_text(HANDLER.format(code=3))       # $LATEST moves on; versions do not
        alias = aws("create-alias", "--function-name", "versioned", "--name", "live", "--function-version", "1")
        assert alias["AliasArn"].endswith(":function:versioned:live")
        client = client_for(host.endpoint)

        def call(qualifier=None):
            kwargs = {"Qualifier": qualifier} if qualifier else {}
            resp = client.invoke(FunctionName="versioned", Payload=b"{}", **kwargs)
            return resp["ExecutedVersion"], json.loads(resp["Payload"].read())

        assert call("1") == ("1", {"code": 1, "version": "1", "arn": call("1")[1]["arn"]})
        executed, body = call("live")
        assert executed == "1" and body["code"] == 1 and body["arn"].endswith(":function:versioned:live")
        assert call("2")[1]["code"] == 2 and call()[1] == {"code": 3, "version": "$LATEST",
                                                             "arn": call()[1]["arn"]}
        aws("update-alias", "--function-name", "versioned", "--name", "live",
            "--routing-config", json.dumps({"AdditionalVersionWeights": {"2": 0.5}}))
        seen = {call("live")[1]["code"] for _ in range(40)}
        assert seen == {1, 2}, "a weighted alias runs both versions"
        listed = aws("list-versions-by-function", "--function-name", "versioned")
        assert [v["Version"] for v in listed["Versions"]] == ["$LATEST", "1", "2"]
    finally:
        stop_host(host)
