"""File sync on the real engine: a context sent through FileSync/DiffCopy builds the same image
as the tar, a rebuild transfers only what changed, and files that vanish, change or cannot be
read fail the build with shipit's message instead of hanging."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import socket
import subprocess
import tarfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shipit.adapters.engine.buildkit.filesync import (
    CONTEXT_DIR,
    FileSyncProvider,
    PacketLog,
    Transfer,
    sync_context,
)
from shipit.adapters.engine.buildkit.fsutil_types import PACKET_STAT, Packet
from shipit.adapters.engine.buildkit.session import Session
from shipit.adapters.engine.buildkit.transport import BuildRequest, post_build
from shipit.context import create_context_archive
from shipit.errors import ExitCode, UsageError

pytestmark = pytest.mark.integration

DOCKERFILE = "FROM scratch\nCOPY . /ctx/\n"
DIR_755 = ("dir", 0o755, "")


@dataclass
class Synced:
    image_id: str | None
    error: str | None
    provider: FileSyncProvider

    @property
    def main(self) -> Transfer:
        """The transfer of the whole context (not the one for .dockerignore alone)."""
        return next(
            t
            for t in reversed(self.provider.transfers)
            if t.dir_name == CONTEXT_DIR and t.request.follow_paths != (".dockerignore",)
        )


def synced_build(
    api: Any,
    root: Path,
    tag: str,
    key: str,
    packet_log: PacketLog | None = None,
    dockerfile: Path | None = None,
) -> Synced:
    synced = sync_context(root, dockerfile or root / "Dockerfile", packet_log=packet_log)
    image_id = error = None
    with Session(api, [synced.provider], name=root.name, shared_key=key) as session:
        request = BuildRequest(
            tags=[tag],
            dockerfile=synced.dockerfile,
            session_id=session.id,
            remote="client-session",
        )
        for chunk in post_build(api, request, None):
            if chunk.get("id") == "moby.image.id":
                image_id = chunk["aux"]["ID"]
            if "errorDetail" in chunk:
                error = chunk["errorDetail"]["message"]
    return Synced(image_id, error, synced.provider)


def tar_body_build(api: Any, root: Path, tag: str, dockerfile: Path | None = None) -> str:
    """BuildKit with shipit's context tar as the request body (rewritten in GNU format: the
    engine takes a PAX archive for a Dockerfile): the reference image."""
    with create_context_archive(root, dockerfile or root / "Dockerfile") as archive:
        body = io.BytesIO()
        with (
            tarfile.open(fileobj=archive.fileobj) as pax,
            tarfile.open(fileobj=body, mode="w", format=tarfile.GNU_FORMAT) as gnu,
        ):
            for member in pax.getmembers():
                gnu.addfile(member, pax.extractfile(member) if member.isfile() else None)
        request = BuildRequest(tags=[tag], dockerfile=archive.dockerfile)
        image_id = None
        for chunk in post_build(api, request, body.getvalue()):
            assert "errorDetail" not in chunk, chunk
            if chunk.get("id") == "moby.image.id":
                image_id = chunk["aux"]["ID"]
    assert image_id
    return str(image_id)


def legacy_build(api: Any, root: Path, tag: str, dockerfile: Path | None = None) -> str:
    """The legacy builder with shipit's context tar."""
    with create_context_archive(root, dockerfile or root / "Dockerfile") as archive:
        image_id = None
        for chunk in api.build(
            fileobj=archive.fileobj,
            custom_context=True,
            dockerfile=archive.dockerfile,
            tag=tag,
            rm=True,
            decode=True,
        ):
            assert "error" not in chunk, chunk
            if "aux" in chunk:
                image_id = chunk["aux"]["ID"]
    assert image_id
    return str(image_id)


def image_files(api: Any, image: str, tmp: Path) -> dict[str, tuple[str, int, str]]:
    """Every path in the image's layers: (kind, permission bits, content hash or link target);
    hard links count as the file they link to (builders may store either)."""
    saved = tmp / f"{uuid.uuid4().hex}.tar"
    with saved.open("wb") as out:
        for chunk in api.get_image(image):
            out.write(chunk)
    files: dict[str, tuple[str, int, str]] = {}
    with tarfile.open(saved) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))  # type: ignore[arg-type]
        for layer in manifest[0]["Layers"]:
            with tarfile.open(fileobj=outer.extractfile(layer)) as inner:
                for member in inner.getmembers():
                    files[member.name.rstrip("/")] = _describe(inner, member, files)
    saved.unlink()
    return files


def _describe(
    tar: tarfile.TarFile, member: tarfile.TarInfo, seen: dict[str, tuple[str, int, str]]
) -> tuple[str, int, str]:
    mode = member.mode & 0o7777
    if member.isdir():
        return ("dir", mode, "")
    if member.issym():
        return ("symlink", mode, member.linkname)
    if member.islnk():
        return ("file", mode, seen[member.linkname][2])
    data = tar.extractfile(member)
    assert data is not None
    return ("file", mode, hashlib.sha256(data.read()).hexdigest())


@pytest.fixture
def tag(docker_api: Any, unique: str) -> Iterator[Callable[[str], str]]:
    made: list[str] = []

    def make(name: str) -> str:
        made.append(f"shipit-fsync-test-{unique}-{name}:latest")
        return made[-1]

    yield make
    for image in made:
        with contextlib.suppress(Exception):
            docker_api.remove_image(image, force=True)


def ground_truth_tree(root: Path) -> Path:
    """Modes, setuid, sticky, an empty 0700 directory, symlinks (relative, absolute,
    dangling), hard links, odd names, a FIFO, exclusions with an exception, a multi-chunk file."""
    files = {
        "Dockerfile": DOCKERFILE,
        "app.py": "print('hi')\n",
        "bin/tool": "#!/bin/sh\n",
        "bin/suid": "#!/bin/sh\n",
        "private": "key\n",
        "data/nested/deep.txt": "deep\n",
        "sticky/f": "s",
        "hard1": "linked\n",
        "café name.txt": "unicode\n",
        "big.bin": os.urandom(200 * 1024).hex()[: 200 * 1024],
        "debug.log": "excluded\n",
        "build/out": "excluded\n",
        "docs/README.md": "kept\n",
        "docs/other.md": "excluded\n",
        ".dockerignore": "*.log\nbuild\ndocs\n!docs/README.md\n",
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "empty").mkdir()
    os.chmod(root / "empty", 0o700)
    os.chmod(root / "bin" / "tool", 0o755)
    os.chmod(root / "bin" / "suid", 0o4755)
    os.chmod(root / "private", 0o600)
    os.chmod(root / "sticky", 0o1777)
    os.symlink("app.py", root / "link-rel")
    os.symlink("/etc/hostname", root / "link-abs")
    os.symlink("nowhere", root / "dangling")
    os.link(root / "hard1", root / "hard2")
    os.mkfifo(root / "fifo")
    return root


def test_synced_image_equals_the_tar_built_image(
    docker_api: Any, tmp_path: Path, tag: Callable[[str], str]
) -> None:
    root = ground_truth_tree(tmp_path / "ctx")
    synced = synced_build(docker_api, root, tag("synced"), uuid.uuid4().hex)
    assert synced.error is None and synced.image_id
    reference = tar_body_build(docker_api, root, tag("tar"))
    got = image_files(docker_api, synced.image_id, tmp_path)
    want = image_files(docker_api, reference, tmp_path)
    assert got == want
    # The legacy builder differs in one way only: its COPY chowns after extracting, which
    # clears setuid/setgid (BuildKit, and so docker build today, keeps them).
    legacy = image_files(docker_api, legacy_build(docker_api, root, tag("legacy")), tmp_path)
    assert {k: v for k, v in got.items() if legacy[k] != v} == {
        "ctx/bin/suid": ("file", 0o4755, want["ctx/bin/suid"][2])
    }
    assert got["ctx/link-abs"] == ("symlink", 0o777, "/etc/hostname")
    assert got["ctx/bin/suid"][:2] == ("file", 0o4755)
    assert got["ctx/empty"] == ("dir", 0o700, "")
    assert "ctx/debug.log" not in got and "ctx/fifo" not in got
    assert synced.main.skipped == ["fifo"]


# name -> (files, .dockerignore, Dockerfile path relative to the context's parent)
RULE_CASES: dict[str, tuple[dict[str, str], str, str]] = {
    "exception-inside-excluded-dir": (
        {"docs/README.md": "r", "docs/other.md": "o", "app.py": "a"},
        "docs\n!docs/README.md\n",
        "ctx/Dockerfile",
    ),
    "dockerfile-and-dockerignore-excluded": (
        {"app.py": "a", "notes.txt": "n"},
        "Dockerfile\n.dockerignore\n*.txt\n",
        "ctx/Dockerfile",
    ),
    "double-star-and-exceptions": (
        {"a/b/c.pyc": "x", "a/keep/d.pyc": "k", "a/b/e.py": "e", "tmp/x": "t"},
        "**/*.pyc\n!a/keep/*.pyc\n/tmp\n",
        "ctx/Dockerfile",
    ),
    "dockerfile-in-an-excluded-subdir": (
        {"app.py": "a", "build/extra": "x"},
        "build\n",
        "ctx/build/Dockerfile",
    ),
    "dockerfile-outside-the-context": (
        {"app.py": "a"},
        "*.log\n",
        "elsewhere/Dockerfile",
    ),
}


@pytest.mark.parametrize("case", sorted(RULE_CASES))
def test_dockerignore_rules_give_the_images_docker_gives(
    docker_api: Any, tmp_path: Path, tag: Callable[[str], str], case: str
) -> None:
    """The synced image against the legacy builder's from shipit's tar (both drop an excluded
    Dockerfile or .dockerignore), and against BuildKit fed the same tar, which applies no
    .dockerignore and so keeps what the tar was forced to hold."""
    files, ignore, dockerfile_at = RULE_CASES[case]
    root = tmp_path / "ctx"
    for name, text in {**files, ".dockerignore": ignore}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    dockerfile = tmp_path / dockerfile_at
    dockerfile.parent.mkdir(parents=True, exist_ok=True)
    dockerfile.write_text(DOCKERFILE)
    synced = synced_build(docker_api, root, tag("s"), uuid.uuid4().hex, dockerfile=dockerfile)
    assert synced.error is None and synced.image_id
    got = image_files(docker_api, synced.image_id, tmp_path)
    legacy = image_files(docker_api, legacy_build(docker_api, root, tag("l"), dockerfile), tmp_path)
    body = image_files(docker_api, tar_body_build(docker_api, root, tag("t"), dockerfile), tmp_path)
    if case == "dockerfile-outside-the-context":
        # the CLI's tar carries the Dockerfile as .dockerfile.<hex>, listed in .dockerignore
        assert {k: v for k, v in legacy.items() if got.get(k) != v} == {
            "ctx/.dockerignore": ("file", 0o644, legacy["ctx/.dockerignore"][2])
        }
        extra = sorted(k for k in body if k not in got)
        assert len(extra) == 1 and extra[0].startswith("ctx/.dockerfile.")
    elif case == "dockerfile-in-an-excluded-subdir":
        # the legacy daemon deletes the excluded Dockerfile but leaves its folder behind
        assert {k: v for k, v in legacy.items() if got.get(k) != v} == {"ctx/build": DIR_755}
        assert {k: v for k, v in body.items() if got.get(k) != v} == {
            "ctx/build": DIR_755,
            "ctx/build/Dockerfile": body["ctx/build/Dockerfile"],
        }
    else:
        assert got == legacy
        forced = {"ctx/Dockerfile", "ctx/.dockerignore"}
        if case == "dockerfile-and-dockerignore-excluded":
            # excluded, so not in docker's image; the tar body keeps them (nothing drops them)
            assert not forced & set(got) and forced <= set(body)
        assert {k: v for k, v in body.items() if k not in forced} == {
            k: v for k, v in got.items() if k not in forced
        }


def test_rebuild_transfers_only_the_changed_file(
    docker_api: Any, tmp_path: Path, tag: Callable[[str], str]
) -> None:
    root = tmp_path / "ctx"
    root.mkdir()
    (root / "Dockerfile").write_text(DOCKERFILE)
    for i in range(5):
        (root / f"data{i}.bin").write_bytes(os.urandom(100_000))
    (root / "app.txt").write_text("version 1\n")
    key = uuid.uuid4().hex  # a fresh key: the engine has nothing of this context yet
    total = sum(p.stat().st_size for p in root.iterdir())

    first = synced_build(docker_api, root, tag("one"), key)
    assert first.error is None
    assert (first.main.requested, first.main.data_bytes) == (7, total)

    (root / "app.txt").write_text("version 2, longer\n")
    second = synced_build(docker_api, root, tag("two"), key)
    assert second.error is None and second.image_id != first.image_id
    assert (second.main.entries, second.main.requested, second.main.data_bytes) == (7, 1, 18)
    assert second.provider.summary() == (
        "context sent through file sync: 7 entries offered, 1 file (18 B) requested by the engine"
    )

    third = synced_build(docker_api, root, tag("three"), key)
    assert third.image_id == second.image_id
    assert (third.main.requested, third.main.data_bytes) == (0, 0)
    assert third.provider.sent_bytes(CONTEXT_DIR) == 0


def _after_stat_of(path: str, action: Callable[[], object]) -> PacketLog:
    """A packet log that runs ``action`` as ``path``'s STAT goes out of the context's walk:
    after its metadata was taken, before the engine can ask for its content."""
    done: list[bool] = []

    def log(transfer: Transfer, direction: str, raw: bytes) -> None:
        if transfer.dir_name != CONTEXT_DIR or direction != "send" or done or not raw:
            return
        packet = Packet.decode(raw)
        if packet.type == PACKET_STAT and packet.stat and packet.stat.path == path:
            done.append(True)
            action()

    return log


@pytest.mark.parametrize(
    ("action", "message"),
    [
        (lambda p: p.unlink(), "was removed while the build context was sent"),
        (lambda p: p.write_text("rewritten, longer"), "changed while the build context was sent"),
        (lambda p: (p.unlink(), p.mkdir()), "changed while the build context was sent"),
    ],
    ids=["vanished", "rewritten", "replaced-by-a-directory"],
)
def test_file_changing_mid_sync_fails_the_build_clearly(
    docker_api: Any,
    tmp_path: Path,
    tag: Callable[[str], str],
    action: Callable[[Path], object],
    message: str,
) -> None:
    root = tmp_path / "ctx"
    root.mkdir()
    (root / "Dockerfile").write_text(DOCKERFILE)
    victim = root / "victim.txt"
    victim.write_text("original")
    log = _after_stat_of("victim.txt", lambda: action(victim))
    result = synced_build(docker_api, root, tag("vanish"), uuid.uuid4().hex, log)
    expected = f"'{victim}' {message}"
    assert result.image_id is None
    assert result.error is not None and expected in result.error
    failure = result.provider.failure
    assert isinstance(failure, UsageError) and failure.message == expected
    assert failure.exit_code == ExitCode.USAGE


@contextlib.contextmanager
def write_only_file(path: Path) -> Iterator[None]:
    """A real file even root cannot read: a write-only sysfs attribute bind-mounted over
    ``path`` (root bypasses permission bits, not a kernfs file without a read method)."""
    sources = sorted(Path("/sys/bus").glob("*/drivers_probe"))
    if os.geteuid() != 0 or not sources:
        pytest.skip("needs root and /sys/bus/*/drivers_probe to make an unreadable file")
    path.write_text("")
    done = subprocess.run(["mount", "--bind", str(sources[0]), str(path)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {done.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", str(path)], check=True)


def test_unreadable_file_fails_the_build_naming_it(
    docker_api: Any, tmp_path: Path, tag: Callable[[str], str]
) -> None:
    root = tmp_path / "ctx"
    root.mkdir()
    (root / "Dockerfile").write_text(DOCKERFILE)
    locked = root / "locked.txt"
    with write_only_file(locked):
        with pytest.raises(PermissionError):
            locked.read_bytes()
        result = synced_build(docker_api, root, tag("unreadable"), uuid.uuid4().hex)
    expected = f"cannot read '{locked}' in the build context: Permission denied"
    assert result.error is not None and expected in result.error
    assert isinstance(result.provider.failure, UsageError)
    assert result.provider.failure.message == expected


def test_fifo_and_socket_in_the_context_are_skipped(
    docker_api: Any, tmp_path: Path, tag: Callable[[str], str]
) -> None:
    root = tmp_path / "ctx"
    root.mkdir()
    (root / "Dockerfile").write_text(DOCKERFILE)
    (root / "a.txt").write_text("a")
    os.mkfifo(root / "pipe")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(root / "sock"))
    try:
        result = synced_build(docker_api, root, tag("special"), uuid.uuid4().hex)
    finally:
        sock.close()
    assert result.error is None and result.image_id
    assert result.main.skipped == ["pipe", "sock"]
    assert sorted(image_files(docker_api, result.image_id, tmp_path)) == [
        "ctx",
        "ctx/Dockerfile",
        "ctx/a.txt",
    ]


DOCKER_CLI = "/usr/bin/docker"  # the 20.10 CLI: BuildKit with a session and fsutil's file sync


def cli_build(root: Path, tag: str) -> str:
    if not os.access(DOCKER_CLI, os.X_OK):
        pytest.skip(f"{DOCKER_CLI} (the docker CLI with BuildKit) is missing")
    done = subprocess.run(
        [DOCKER_CLI, "build", "-q", "-t", tag, str(root)],
        env={**os.environ, "DOCKER_BUILDKIT": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_synced_layer_is_byte_identical_to_the_docker_clis(
    docker_api: Any, tmp_path: Path, tag: Callable[[str], str]
) -> None:
    """Same tree, same engine: the layer shipit's sync produces has the diff id of the one
    `DOCKER_BUILDKIT=1 docker build` produces (names, modes, owners, nanosecond mtimes,
    symlinks, hard links, contents). With a FIFO in the tree, which shipit leaves out as its
    tar does, the images still hold the same files."""
    root = ground_truth_tree(tmp_path / "ctx")
    (root / "fifo").unlink()
    synced = synced_build(docker_api, root, tag("synced"), uuid.uuid4().hex)
    assert synced.image_id
    cli_image = cli_build(root, tag("cli"))
    layers = docker_api.inspect_image(synced.image_id)["RootFS"]["Layers"]
    assert layers == docker_api.inspect_image(cli_image)["RootFS"]["Layers"]

    os.mkfifo(root / "fifo")
    synced = synced_build(docker_api, root, tag("synced-fifo"), uuid.uuid4().hex)
    assert synced.image_id
    ours = image_files(docker_api, synced.image_id, tmp_path)
    theirs = image_files(docker_api, cli_build(root, tag("cli-fifo")), tmp_path)
    assert ours == theirs and "ctx/fifo" not in ours


@pytest.mark.parametrize(
    "dockerfile",
    [
        "FROM scratch\nCOPY data /data/\nCOPY app.py /\n",
        "FROM scratch\nCOPY link-to-data /via-link/\n",
        "FROM scratch\nCOPY *.py bin/ /wild/\n",
        "FROM scratch\nCOPY data/nested/deep.txt docs /some/\n",
    ],
    ids=["sources", "symlinked-dir", "wildcard", "nested-and-excluded"],
)
def test_copy_sources_sent_as_followpaths_give_the_docker_clis_layers(
    docker_api: Any, tmp_path: Path, tag: Callable[[str], str], dockerfile: str
) -> None:
    """The frontend asks only for a COPY's sources (``followpaths``, symlinks resolved by the
    sender): the layers equal those `DOCKER_BUILDKIT=1 docker build` makes from the same tree."""
    root = ground_truth_tree(tmp_path / "ctx")
    (root / "fifo").unlink()
    os.symlink("data", root / "link-to-data")
    (root / "Dockerfile").write_text(dockerfile)
    synced = synced_build(docker_api, root, tag("synced"), uuid.uuid4().hex)
    assert synced.error is None and synced.image_id
    assert synced.main.request.follow_paths  # the frontend did narrow the request
    cli_image = cli_build(root, tag("cli"))
    layers = docker_api.inspect_image(synced.image_id)["RootFS"]["Layers"]
    assert layers == docker_api.inspect_image(cli_image)["RootFS"]["Layers"]
