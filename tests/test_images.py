"""The per-language images (runtime_host/backend/docker/image_builder.py) against the real Docker
engine: each image builds and runs what its runtime needs, a second
ensure_image builds nothing, a changed input changes the tag, and two
builders take turns. No mocks. The first run builds the images (under a
minute with debootstrap, seconds once the root file system is cached);
every container started here is removed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import time
from pathlib import Path

import docker
import pytest

from runtime_host.backend.docker import image_builder as images

RUNTIME_CLIENT_FOLDERS = {"python3.11": "bootstrap/python", "nodejs18.x": "bootstrap/node",
                          "python3.13": "bootstrap/python", "nodejs20.x": "bootstrap/node",
                          "nodejs22.x": "bootstrap/node", "nodejs24.x": "bootstrap/node", "ruby3.3": "bootstrap/ruby"}
PYTHON_IMAGES = {"python3.11", "python3.13"}
NODE_WHEEL_IMAGES = {"nodejs20.x", "nodejs22.x", "nodejs24.x"}
TRIXIE_IMAGES = {"python3.13", "ruby3.3"}


@pytest.fixture(scope="module")
def docker_client():
    client = docker.from_env()
    yield client
    client.close()


@pytest.fixture(scope="module")
def built_tags() -> dict[str, str]:
    """Every runtime image for the current inputs, built if missing."""
    tags = images.build_all(progress=lambda line: None)
    tags["base"] = images.ensure_image("base", progress=lambda line: None)
    tags["base-trixie"] = images.ensure_image("base-trixie", progress=lambda line: None)
    return tags


def run_in(docker_client, tag: str, script: str, user: str | None = None) -> str:
    """stdout+stderr of `sh -c script` in a fresh container, removed after."""
    output = docker_client.containers.run(
        tag, ["sh", "-c", script], remove=True, stdout=True, stderr=True, user=user,
        network_mode="none",
    )
    return output.decode().strip()


# ------------------------------------------------------------- what they hold


def test_python_image_runs_python_3_11(docker_client, built_tags):
    assert run_in(docker_client, built_tags["python3.11"], "python3 --version").startswith("Python 3.11.")


def test_nodejs_image_runs_node_18(docker_client, built_tags):
    assert run_in(docker_client, built_tags["nodejs18.x"], "node --version").startswith("v18.")


@pytest.mark.parametrize("runtime, major", [("nodejs20.x", 20), ("nodejs22.x", 22), ("nodejs24.x", 24)])
def test_node_wheel_images_run_the_pinned_node_from_var_lang(docker_client, built_tags, runtime, major):
    output = run_in(docker_client, built_tags[runtime],
                    "/var/lang/bin/node --version; node --version; readlink /usr/bin/node", user="993:990")
    pinned = f"v{images.NODE_WHEELS[runtime]}"
    assert pinned.startswith(f"v{major}.")
    assert output.split() == [pinned, pinned, "/var/lang/bin/node"]


def test_python_3_13_image_is_debian_trixie(docker_client, built_tags):
    output = run_in(docker_client, built_tags["python3.13"], "python3 --version; . /etc/os-release; echo $VERSION_CODENAME")
    assert output.split()[:2][0] == "Python" and output.split()[1].startswith("3.13.")
    assert output.split()[-1] == "trixie"


def test_ruby_image_runs_ruby_3_3_with_json_and_net_http(docker_client, built_tags):
    output = run_in(docker_client, built_tags["ruby3.3"],
                    "ruby -e 'require \"json\"; require \"net/http\"; puts RUBY_VERSION'", user="993:990")
    assert output.startswith("3.3.")


def test_provided_image_has_curl_and_var_task(docker_client, built_tags):
    output = run_in(docker_client, built_tags["provided"], "curl --version && test -d /var/task && pwd")
    assert output.startswith("curl ")
    assert output.endswith("/var/task")


@pytest.mark.parametrize("runtime", sorted(RUNTIME_CLIENT_FOLDERS))
def test_runtime_client_files_are_in_var_runtime_as_the_folder_holds_them(docker_client, built_tags, runtime):
    folder = images.SOURCE_DIR / RUNTIME_CLIENT_FOLDERS[runtime]
    expected = {
        path.relative_to(folder).as_posix(): (
            "755" if os.stat(path).st_mode & 0o111 else "644",
            hashlib.sha256(path.read_bytes()).hexdigest(),
        )
        for path in images._input_files(folder)
    } if folder.is_dir() else {}
    listing = run_in(
        docker_client,
        built_tags[runtime],
        'cd /var/runtime && find . -type f | while read -r f; do '
        'echo "${f#./} $(stat -c %a "$f") $(sha256sum < "$f" | cut -d" " -f1)"; done',
    )
    found = {name: (mode, digest) for name, mode, digest in (line.split() for line in listing.splitlines())}
    assert found == expected


@pytest.mark.parametrize("runtime", sorted(RUNTIME_CLIENT_FOLDERS))
def test_runtime_bootstrap_is_executable_by_the_sandbox_user(docker_client, built_tags, runtime):
    if not (images.SOURCE_DIR / RUNTIME_CLIENT_FOLDERS[runtime] / "bootstrap").exists():
        pytest.skip(f"{RUNTIME_CLIENT_FOLDERS[runtime]}/bootstrap is not written yet")
    output = run_in(
        docker_client, built_tags[runtime],
        "test -x /var/runtime/bootstrap && cat /var/runtime/* >/dev/null && echo ok", user="993:990",
    )
    assert output == "ok"


def test_sbx_user1051_exists_with_uid_993_and_gid_990(docker_client, built_tags):
    output = run_in(docker_client, built_tags["base"], "id -u sbx_user1051; id -g sbx_user1051")
    assert output.split() == ["993", "990"]


@pytest.mark.parametrize("name", ["base", "base-trixie", *images.RUNTIMES])
def test_image_sets_no_user_and_only_path_lang_tz(docker_client, built_tags, name):
    config = docker_client.images.get(built_tags[name]).attrs["Config"]
    assert config["User"] == ""
    assert sorted(config["Env"]) == [
        "LANG=C.UTF-8",
        "PATH=/var/lang/bin:/usr/local/bin:/usr/bin:/bin:/opt/bin",
        "TZ=:UTC",
    ]
    assert config["WorkingDir"] == "/var/task"


@pytest.mark.parametrize("name", ["base", "base-trixie", *images.RUNTIMES])
def test_image_is_labelled_with_its_name_and_inputs(docker_client, built_tags, name):
    labels = docker_client.images.get(built_tags[name]).labels
    assert labels[images.LABEL_IMAGE] == name
    assert built_tags[name] == f"runtime-host/{name}:{labels[images.LABEL_INPUTS]}"


def test_base_has_var_runtime_and_empty_opt_and_no_apt_lists(docker_client, built_tags):
    output = run_in(
        docker_client, built_tags["base"],
        "test -d /var/runtime && ls -A /opt | wc -l && ls -A /var/lib/apt/lists | wc -l",
    )
    assert output.split() == ["0", "0"]


# -------------------------------------------------------------------- caching


@pytest.mark.parametrize("runtime", images.RUNTIMES)
def test_second_ensure_image_builds_nothing(docker_client, built_tags, runtime):
    image_id_before = docker_client.images.get(built_tags[runtime]).id
    lines: list[str] = []
    tag = images.ensure_image(runtime, progress=lines.append)
    assert tag == images.image_tag(runtime) == built_tags[runtime]
    assert docker_client.images.get(tag).id == image_id_before
    assert lines == [f"{runtime}: up to date ({tag})"]
    assert images.image_exists(runtime)


@pytest.fixture
def source_copy(tmp_path) -> Path:
    """A copy of every image input (images/ and bootstrap/) to change freely."""
    for folder in ("images", "bootstrap"):
        if (images.SOURCE_DIR / folder).is_dir():
            shutil.copytree(images.SOURCE_DIR / folder, tmp_path / folder, symlinks=True)
    (tmp_path / "bootstrap" / "python").mkdir(parents=True, exist_ok=True)
    (tmp_path / "bootstrap" / "python" / "runtime_client.py").touch()
    return tmp_path


def changed_images(source_dir: Path, change) -> set[str]:
    before = images.input_hashes(source_dir)
    change(source_dir)
    after = images.input_hashes(source_dir)
    return {name for name in before if before[name] != after[name]}


def test_input_hashes_are_stable_for_unchanged_inputs(source_copy):
    assert changed_images(source_copy, lambda root: None) == set()
    assert images.input_hashes(source_copy) == images.input_hashes(source_copy)


def test_changed_runtime_client_changes_only_its_image(source_copy):
    def edit(root):
        with open(root / "bootstrap/python/runtime_client.py", "a") as f:
            f.write("\n# changed\n")

    assert changed_images(source_copy, edit) == PYTHON_IMAGES


def test_changed_executable_bit_changes_the_tag(source_copy):
    def make_executable(root):
        path = root / "bootstrap/python/runtime_client.py"
        path.chmod(path.stat().st_mode ^ 0o111)

    assert changed_images(source_copy, make_executable) == PYTHON_IMAGES


def test_new_runtime_client_file_changes_the_tag(source_copy):
    def add(root):
        (root / "bootstrap/python/helper.py").write_text("x = 1\n")

    assert changed_images(source_copy, add) == PYTHON_IMAGES


def test_changed_language_dockerfile_changes_only_its_image(source_copy):
    def edit(root):
        with open(root / "images/provided/Dockerfile", "a") as f:
            f.write("# changed\n")

    assert changed_images(source_copy, edit) == {"provided"}


def test_changed_base_dockerfile_changes_base_and_every_runtime(source_copy):
    def edit(root):
        with open(root / "images/base/Dockerfile", "a") as f:
            f.write("# changed\n")

    assert changed_images(source_copy, edit) == {"base", "base-trixie", *images.RUNTIMES}


def test_changed_setup_script_changes_everything(source_copy):
    def edit(root):
        with open(root / "images/base/setup.sh", "a") as f:
            f.write("# changed\n")

    assert changed_images(source_copy, edit) == {"rootfs", "rootfs-trixie", "base", "base-trixie", *images.RUNTIMES}


def test_changed_suite_script_changes_only_the_trixie_chain(source_copy):
    # images/rootfs/suite.sh runs only in a suite other than bookworm: the
    # bookworm rootfs (and every image on it) keeps its tag and its cache.
    def edit(root):
        with open(root / "images/rootfs/suite.sh", "a") as f:
            f.write("# changed\n")

    assert changed_images(source_copy, edit) == {"rootfs-trixie", "base-trixie", *TRIXIE_IMAGES}


def test_a_new_node_wheel_pin_changes_only_that_node_image(source_copy, monkeypatch):
    def bump(root):
        monkeypatch.setitem(images.NODE_WHEELS, "nodejs22.x", "22.99.0")

    assert changed_images(source_copy, bump) == {"nodejs22.x"}


def test_the_node_client_reaches_every_node_image(source_copy):
    def edit(root):
        with open(root / "bootstrap/node/runtime.js", "a") as f:
            f.write("\n// changed\n")

    assert changed_images(source_copy, edit) == {"nodejs18.x", *NODE_WHEEL_IMAGES}


def test_bytecode_and_editor_files_do_not_change_the_tag(source_copy):
    def litter(root):
        (root / "bootstrap/python/__pycache__").mkdir(exist_ok=True)
        (root / "bootstrap/python/__pycache__/runtime_client.cpython-311.pyc").write_bytes(b"\0")
        (root / "bootstrap/python/runtime_client.py~").write_text("old")

    assert changed_images(source_copy, litter) == set()


def test_tag_is_name_and_twelve_hash_characters():
    tag = images.image_tag("python3.11")
    repository, _, version = tag.partition(":")
    assert repository == "runtime-host/python3.11"
    assert len(version) == 12 and int(version, 16) >= 0


def test_unknown_runtime_is_refused_with_the_allowed_names():
    with pytest.raises(ValueError) as refused:
        images.image_tag("python2.7")
    assert "python2.7" in str(refused.value)
    for runtime in images.RUNTIMES:
        assert runtime in str(refused.value)


# ---------------------------------------------------------------- concurrency


def test_second_builder_waits_for_the_first(tmp_path, monkeypatch):
    monkeypatch.setenv(images.CACHE_DIR_ENV, str(tmp_path))
    first_holds = threading.Event()
    first_releases = threading.Event()
    events: list[str] = []

    def first():
        with images._build_lock(events.append):
            first_holds.set()
            first_releases.wait(10)
            events.append("first done")

    def second():
        first_holds.wait(10)
        with images._build_lock(events.append):
            events.append("second in")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    deadline_s = time.monotonic() + 10
    while not any(e.startswith("waiting for another") for e in events) and time.monotonic() < deadline_s:
        time.sleep(0.01)
    first_releases.set()
    for thread in threads:
        thread.join(10)
    assert events[0].startswith("waiting for another runtime-host image build")
    assert events[1:] == ["first done", "second in"]
