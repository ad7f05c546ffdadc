"""The state directory's disk full (issue 16): the host says so and refuses
new invocations before they run, rather than running them without a ledger
record; once there is room it serves again, with every answered invocation
recorded. The state directory is a small tmpfs (the tests run as root)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from runtime_host.store.ledger import MIN_FREE_BYTES, read_records
from tests.conftest import client_for, containers_of_host, invoke, start_host, stop_host

FN = "hello-python"


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "small-disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(mount: Path) -> Path:
    """The disk filled up, to its last block (the host writes meanwhile: its logs, its ledger)."""
    filler = mount / "filler"
    with open(filler, "wb", buffering=0) as f:
        for size in (1 << 20, 4096, 1):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError:
                pass
    return filler


def test_a_full_state_disk_refuses_new_invocations_clearly_and_serving_resumes_when_there_is_room(
        functions_dir, small_disk, tmp_path):
    host = start_host(functions_dir, small_disk / "state")
    try:
        client = client_for(host.endpoint)
        resp, _ = invoke(client, FN, {"before": "full"})
        answered = [resp["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]]
        filler = fill(small_disk)
        refusals = []
        for kind in ("RequestResponse", "RequestResponse", "Event"):
            with pytest.raises(ClientError) as caught:
                invoke(client, FN, {"while": "full"}, InvocationType=kind)
            refusals.append(caught.value.response)
        os.remove(filler)
        for _ in range(3):
            resp, body = invoke(client, FN, {"after": "room"})
            assert body["event"] == {"after": "room"}
            answered.append(resp["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"])
    finally:
        stop_host(host)
    assert host.proc.returncode == 0, host.stderr()
    assert containers_of_host(host.pid) == []
    for refused in refusals[:2]:
        assert refused["ResponseMetadata"]["HTTPStatusCode"] == 500, refused
        assert refused["Error"]["Code"] == "ServiceException", refused
        assert "state directory" in refused["Error"]["Message"] and "full" in refused["Error"]["Message"], refused
        assert f"{MIN_FREE_BYTES:,} needed" in refused["Error"]["Message"], refused
    assert refusals[2]["ResponseMetadata"]["HTTPStatusCode"] >= 500, refusals[2]
    records = read_records(small_disk / "state", function=FN)
    assert sorted(r.request_id for r in records) == sorted(answered), "every answered one recorded, nothing else"
    stderr = host.stderr()
    assert "Traceback" not in stderr, stderr[stderr.find("Traceback"):][:3000]
