"""Zip archives for tests of layers: members with the Unix modes a real
`zip` records (a bootstrap or a tool keeps its executable bit)."""
from __future__ import annotations

import stat
import zipfile
from pathlib import Path


def make_zip(path: Path, members: dict[str, tuple[bytes | str, int]]) -> Path:
    """members: name -> (content, Unix mode)."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, (data, mode) in members.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFREG | mode) << 16
            archive.writestr(info, data)
    return path
