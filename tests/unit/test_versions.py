"""Versions and aliases through the Invoke API over the fake backend:
PublishVersion snapshots the code, a qualifier picks the version, a weighted
alias splits the calls, and AWS's refusals for bad input."""
from __future__ import annotations

from collections import Counter

from tests.unit.fakehost import function
from tests.unit.test_invoke_api_fake import BASE, invoke_api


async def test_publish_alias_and_weighted_routing():
    fn = function()
    async with invoke_api(fn) as (host, http):
        async with http.post(f"{BASE}/fn/versions", json={"Description": "first"}) as r:
            first = (r.status, await r.json())
        async with http.post(f"{BASE}/fn/versions", json={}) as r:
            same = (r.status, await r.json())
        (fn.code_dir / "app.py").write_text("def handler(event, context):\n    return 'v2'\n")
        async with http.post(f"{BASE}/fn/versions", json={}) as r:
            second = (r.status, await r.json())
        (fn.code_dir / "app.py").write_text("def handler(event, context):\n    return 'latest'\n")
        async with http.get(f"{BASE}/fn/versions") as r:
            listed = [v["Version"] for v in (await r.json())["Versions"]]
        async with http.post(f"{BASE}/fn/aliases", json={"Name": "live", "FunctionVersion": "1",
                                                         "RoutingConfig": {"AdditionalVersionWeights": {"2": 0.25}}}) as r:
            alias = (r.status, await r.json())
        executed = Counter()
        for _ in range(1000):
            async with http.post(f"{BASE}/fn/invocations?Qualifier=live", data=b"{}") as r:
                executed[r.headers["X-Amz-Executed-Version"]] += 1
        async with http.post(f"{BASE}/fn:1/invocations", data=b"{}") as r:
            pinned = r.headers["X-Amz-Executed-Version"]
        async with http.get(f"{BASE}/fn/configuration?Qualifier=2") as r:
            config_2 = await r.json()
        version_1 = host.version_of(fn, "1")
    assert first[0] == 201 and first[1]["Version"] == "1" and first[1]["Description"] == "first"
    assert first[1]["FunctionArn"].endswith(":function:fn:1")
    assert same[0] == 200 and same[1]["Version"] == "1", "unchanged code publishes no new version"
    assert second[0] == 201 and second[1]["Version"] == "2"
    assert listed == ["$LATEST", "1", "2"]
    assert alias[0] == 201 and alias[1]["AliasArn"].endswith(":function:fn:live")
    assert alias[1]["RoutingConfig"] == {"AdditionalVersionWeights": {"2": 0.25}}
    assert set(executed) == {"1", "2"} and 0.20 <= executed["2"] / 1000 <= 0.30, executed
    assert pinned == "1" and config_2["Version"] == "2"
    assert "return event" in (version_1.code_dir / "app.py").read_text(), "a version keeps the code it was published with"


async def test_bad_versions_and_aliases_are_refused_as_aws_does():
    async with invoke_api(function()) as (_, http):
        async with http.post(f"{BASE}/fn/invocations?Qualifier=7", data=b"{}") as r:
            unknown_version = (r.status, r.headers["x-amzn-ErrorType"], (await r.json())["message"])
        async with http.post(f"{BASE}/fn/aliases", json={"Name": "live", "FunctionVersion": "9"}) as r:
            missing = (r.status, r.headers["x-amzn-ErrorType"])
        await (await http.post(f"{BASE}/fn/versions", json={})).read()
        async with http.post(f"{BASE}/fn/aliases", json={"Name": "123", "FunctionVersion": "1"}) as r:
            digits = (r.status, (await r.json())["message"])
        async with http.post(f"{BASE}/fn/aliases", json={"Name": "live", "FunctionVersion": "1",
                                                         "RoutingConfig": {"AdditionalVersionWeights": {"1": 1.5}}}) as r:
            weight = (r.status, (await r.json())["message"])
        await (await http.post(f"{BASE}/fn/aliases", json={"Name": "live", "FunctionVersion": "1"})).read()
        async with http.post(f"{BASE}/fn/aliases", json={"Name": "live", "FunctionVersion": "1"}) as r:
            twice = (r.status, r.headers["x-amzn-ErrorType"])
        async with http.get(f"{BASE}/fn/aliases/nope") as r:
            no_alias = r.status
        async with http.delete(f"{BASE}/fn/aliases/live") as r:
            deleted = r.status
    assert unknown_version == (404, "ResourceNotFoundException", unknown_version[2])
    assert unknown_version[2].endswith(":function:fn:7")
    assert missing == (404, "ResourceNotFoundException")
    assert digits[0] == 400 and "not all digits" in digits[1]
    assert weight[0] == 400 and ("own version" in weight[1] or "0.0 to 1.0" in weight[1])
    assert twice == (409, "ResourceConflictException")
    assert no_alias == 404 and deleted == 204
