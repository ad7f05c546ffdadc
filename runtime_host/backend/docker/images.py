"""Docker, for images only: import a root file system tarball, build an image
from a context folder, look an image up by tag, list ours by label, remove one.

The only code that talks to Docker about images. It knows nothing of runtimes,
hashes, caches or progress wording: that is image_builder.py beside it. Calls are
blocking (docker SDK); the host runs them in a thread, never on its loop.
Every Docker failure leaves here as ImageBackendError, with the Engine's words.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors

# A RUN apt-get step can be silent for minutes on a slow mirror; the SDK's
# default 60 s read timeout would end a healthy build.
BUILD_READ_TIMEOUT_S = 1800


class ImageBackendError(Exception):
    """Docker refused or failed an image operation; the message is Docker's."""


@dataclass(frozen=True)
class ImageInfo:
    image_id: str
    tags: tuple[str, ...]
    labels: dict[str, str]
    size_bytes: int


@contextlib.contextmanager
def _client() -> Iterator[docker.DockerClient]:
    # One client per call: cheap next to any image operation, and no shared
    # requests session between the threads the host may call us from.
    try:
        client = docker.from_env(timeout=BUILD_READ_TIMEOUT_S)
    except docker.errors.DockerException as err:
        raise ImageBackendError(
            f"cannot reach the Docker engine ({err}); start it "
            "(scripts/ensure-docker does so as root on Debian) and try again"
        ) from err
    try:
        yield client
    except docker.errors.DockerException as err:
        raise ImageBackendError(str(err)) from err
    finally:
        client.close()


def image_id(tag: str) -> str | None:
    """The id of the image tagged `tag`, or None when there is none."""
    with _client() as client:
        try:
            return client.images.get(tag).id
        except docker.errors.ImageNotFound:
            return None


def import_rootfs(tarball: Path, tag: str, labels: dict[str, str]) -> str:
    """`docker import` of a root file system tarball as `tag`; returns the id."""
    changes = [f"LABEL {key}={value}" for key, value in labels.items()]
    repository, _, version = tag.rpartition(":")
    with _client() as client:
        client.api.import_image_from_file(
            str(tarball), repository=repository, tag=version, changes=changes
        )
        return client.images.get(tag).id


def build_image(
    context_dir: Path,
    tag: str,
    *,
    build_args: dict[str, str],
    labels: dict[str, str],
    on_output: Callable[[str], None],
) -> str:
    """Builds `context_dir`/Dockerfile as `tag` with the classic builder and
    never pulls; each output line goes to `on_output`. Returns the image id.
    Intermediate containers are removed even when a step fails."""
    with _client() as client:
        chunks = client.api.build(
            path=str(context_dir),
            tag=tag,
            buildargs=build_args,
            labels=labels,
            rm=True,
            forcerm=True,
            pull=False,
            decode=True,
        )
        # A RUN step's stderr arrives in fragments ("E", ": ", "Unable ...")
        # wrapped in colour codes: join fragments into whole lines, uncoloured.
        pending = ""
        for chunk in chunks:
            if "error" in chunk:
                _emit_lines(pending, on_output)
                raise ImageBackendError(_ANSI_ESCAPE.sub("", chunk["error"]).strip())
            pending += _ANSI_ESCAPE.sub("", chunk.get("stream") or chunk.get("status") or "")
            *complete, pending = pending.split("\n")
            _emit_lines("\n".join(complete), on_output)
        _emit_lines(pending, on_output)
        return client.images.get(tag).id


_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _emit_lines(text: str, on_output: Callable[[str], None]) -> None:
    for line in text.splitlines():
        if line.strip():
            on_output(line.rstrip())


def list_images(label_key: str) -> list[ImageInfo]:
    """Every image carrying the label `label_key`, whatever its value."""
    with _client() as client:
        return [
            ImageInfo(
                image_id=image.id,
                tags=tuple(image.tags),
                labels=dict(image.labels or {}),
                size_bytes=int(image.attrs.get("Size") or 0),
            )
            for image in client.images.list(filters={"label": label_key})
        ]


def remove_image(tag_or_id: str) -> None:
    """Untags (and, for its last tag, deletes) an image. Never forces: an image
    a container still uses stays, and ImageBackendError says so."""
    with _client() as client:
        client.images.remove(tag_or_id)
