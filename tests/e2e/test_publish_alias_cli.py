"""`runtime-host publish` and `runtime-host alias` against a running host, as
a user types them: each answers what the Invoke API answered (the AWS CLI's
documents), AWS's error for bad input, and a clear error when no host runs."""
from __future__ import annotations

import json
import subprocess

from tests.conftest import RUNTIME_HOST, client_for, free_port, start_host, stop_host

HANDLER = "def handler(event, context):\n    return {'code': %d}\n"


def rh(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([RUNTIME_HOST, *args], capture_output=True, text=True, timeout=60)


def test_publish_and_alias_commands_on_a_running_host(docker_engine, tmp_path):
    folder = tmp_path / "functions" / "shelled"
    folder.mkdir(parents=True)
    (folder / "function.toml").write_text('runtime = "python3.11"\nhandler = "app.handler"\n')
    (folder / "app.py").write_text(HANDLER % 1)
    host = start_host(tmp_path / "functions", tmp_path / "state", extra_args=["--no-reload"])
    endpoint = ["--endpoint-url", host.endpoint]
    try:
        done = rh("publish", "shelled", "--description", "first", *endpoint)
        assert done.returncode == 0, done.stderr
        first = json.loads(done.stdout)
        assert (first["Version"], first["Description"]) == ("1", "first")
        (folder / "app.py").write_text(HANDLER % 2)
        assert json.loads(rh("publish", "shelled", *endpoint).stdout)["Version"] == "2"

        done = rh("alias", "create", "shelled", "live", "--function-version", "1", "--description", "prod", *endpoint)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["AliasArn"].endswith(":function:shelled:live")
        client = client_for(host.endpoint)
        assert json.loads(client.invoke(FunctionName="shelled", Qualifier="live")["Payload"].read()) == {"code": 1}

        done = rh("alias", "update", "shelled", "live", "--weights", "2=0.25", *endpoint)
        assert done.returncode == 0, done.stderr
        got = json.loads(rh("alias", "get", "shelled", "live", *endpoint).stdout)
        assert got["FunctionVersion"] == "1" and got["Description"] == "prod"
        assert got["RoutingConfig"] == {"AdditionalVersionWeights": {"2": 0.25}}
        # What the AWS API itself now reports (boto3), not only what the command printed.
        assert client.get_alias(FunctionName="shelled", Name="live")["RoutingConfig"] == got["RoutingConfig"]

        done = rh("alias", "update", "shelled", "live", "--function-version", "2", "--weights", "", *endpoint)
        assert done.returncode == 0, done.stderr
        assert "RoutingConfig" not in json.loads(done.stdout)
        assert [a["Name"] for a in json.loads(rh("alias", "list", "shelled", *endpoint).stdout)["Aliases"]] == ["live"]

        refused = rh("alias", "create", "shelled", "next", "--function-version", "7", *endpoint)
        assert refused.returncode == 2 and "ResourceNotFoundException" in refused.stderr, refused.stderr
        refused = rh("alias", "create", "shelled", "live", "--function-version", "1", *endpoint)
        assert refused.returncode == 2 and "ResourceConflictException" in refused.stderr, refused.stderr
        refused = rh("alias", "update", "shelled", "live", "--weights", "2=1.5", *endpoint)
        assert refused.returncode == 2 and "InvalidParameterValueException" in refused.stderr, refused.stderr

        done = rh("alias", "delete", "shelled", "live", *endpoint)
        assert done.returncode == 0 and done.stdout == "", done.stderr
        assert client.list_aliases(FunctionName="shelled")["Aliases"] == []
    finally:
        stop_host(host)


def test_without_a_host_the_commands_say_so(tmp_path):
    done = rh("publish", "anything", "--endpoint-url", f"http://127.0.0.1:{free_port()}")
    assert done.returncode == 3
    assert "no host answers" in done.stderr and "runtime-host serve" in done.stderr
    bad = rh("alias", "create", "f", "a", "--function-version", "1", "--weights", "two")
    assert bad.returncode == 2 and "VERSION=WEIGHT" in bad.stderr
