"""CreateFunction's pieces without a host: the request mapped to function.toml
(core/create_function.py) and the upload extracted safely
(store/function_store.py): traversal, escaping symlinks, Lambda's unzipped limit."""
from __future__ import annotations

import base64
import io
import stat
import zipfile

import pytest

from runtime_host.core.config import load_function
from runtime_host.core.create_function import CreateFunctionError, function_toml, zip_bytes
from runtime_host.store import function_store
from runtime_host.store.function_store import CodeError, FunctionStore, extract_zip


def archive(members: dict[str, bytes], modes: dict[str, int] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (modes or {}).get(name, stat.S_IFREG | 0o644) << 16
            z.writestr(info, data)
    return buffer.getvalue()


def test_a_request_becomes_a_function_toml_the_config_reader_takes(tmp_path):
    toml = function_toml({"FunctionName": "made", "Runtime": "python3.11", "Handler": "app.handler",
                          "MemorySize": 256, "Timeout": 9, "Description": 'say "hi"',
                          "Environment": {"Variables": {"GREETING": "hé\n"}}, "Role": "arn:aws:iam::1:role/x"})
    (tmp_path / "function.toml").write_text(toml)
    fn = load_function(tmp_path)
    assert (fn.name, fn.runtime, fn.handler, fn.memory_mb, fn.timeout_s) == ("made", "python3.11", "app.handler", 256, 9)
    assert fn.description == 'say "hi"' and fn.environment == {"GREETING": "hé\n"}


@pytest.mark.parametrize("doc, words", [
    ({"FunctionName": "f", "Runtime": "python9", "Handler": "a.b"}, "runtime parameter of python9"),
    ({"FunctionName": "bad name", "Runtime": "python3.11"}, "FunctionName"),
    ({"FunctionName": "f", "Runtime": "python3.11", "Layers": ["arn:aws:lambda:us-east-1:1:layer:l:1"]}, "Layers"),
    ({"FunctionName": "f", "Runtime": "python3.11", "MemorySize": "big"}, "MemorySize"),
])
def test_requests_this_host_cannot_serve_are_refused_naming_the_field(doc, words):
    with pytest.raises(CreateFunctionError, match=words):
        function_toml(doc)


def test_the_code_must_be_a_base64_zip_in_the_request():
    assert zip_bytes(base64.b64encode(b"PK").decode()) == b"PK"
    with pytest.raises(CreateFunctionError, match="S3"):
        zip_bytes(None)
    with pytest.raises(CreateFunctionError, match="base64"):
        zip_bytes("not base64!")


def test_extraction_keeps_modes_and_refuses_what_would_escape(tmp_path):
    ok = tmp_path / "ok"
    ok.mkdir()
    extract_zip(archive({"bootstrap": b"#!/bin/sh\n", "lib/x.py": b"x = 1\n"},
                        {"bootstrap": stat.S_IFREG | 0o755}), ok)
    assert (ok / "lib" / "x.py").read_text() == "x = 1\n"
    assert (ok / "bootstrap").stat().st_mode & 0o111
    for members, modes in (({"../evil.py": b"x"}, None), ({"/etc/evil": b"x"}, None),
                           ({"link": b"../../etc"}, {"link": stat.S_IFLNK | 0o777})):
        target = tmp_path / f"t{len(list(tmp_path.iterdir()))}"
        target.mkdir()
        with pytest.raises(CodeError, match="outside the function's folder"):
            extract_zip(archive(members, modes), target)
    assert not (tmp_path / "evil.py").exists()
    with pytest.raises(CodeError, match="Could not unzip uploaded file"):
        extract_zip(b"not a zip at all", tmp_path / "ok")


def test_the_unzipped_size_is_counted_as_written_not_as_claimed(tmp_path, monkeypatch):
    monkeypatch.setattr(function_store, "MAX_UNZIPPED_BYTES", 1000)
    with pytest.raises(CodeError, match="Unzipped size must be smaller than 1000 bytes"):
        extract_zip(archive({"a": b"0" * 600, "b": b"0" * 600}), tmp_path)


def test_a_replaced_folder_is_retired_then_swept_once_no_invocation_can_use_it(tmp_path):
    store = FunctionStore(tmp_path)
    first = store.install("f", store.build("f", archive({"app.py": b"v = 1\n"}), "runtime = 'python3.11'\n"))
    store.install("f", store.build("f", archive({"app.py": b"v = 2\n"}), None))
    assert (first / "app.py").read_text() == "v = 2\n" and (first / "function.toml").read_text() == "runtime = 'python3.11'\n"
    retired = list((tmp_path / "functions" / ".retired").iterdir())
    assert len(retired) == 1 and (retired[0] / "app.py").read_text() == "v = 1\n"
    store.sweep(now=float(retired[0].name.rsplit(".", 2)[1]) + 10)
    assert retired[0].exists()
    store.sweep(now=float(retired[0].name.rsplit(".", 2)[1]) + function_store.RETIRED_KEEP_S + 1)
    assert not retired[0].exists()
    assert store.owns(first) and not store.owns(tmp_path)
