"""File sync (FileSync/DiffCopy) against a fake engine: the packets, their encodings, what is
offered (shipit's context rules plus the engine's filters) and every way a transfer can fail."""

from __future__ import annotations

import os
import queue
import random
import socket
import stat as statmod
import tarfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from shipit.adapters.engine.buildkit import fsutil_types as ft
from shipit.adapters.engine.buildkit.filesync import (
    CHUNK_SIZE,
    CONTEXT_DIR,
    DIFFCOPY_METHOD,
    DOCKERFILE_DIR,
    FSUTIL_CHUNK_SIZE,
    FileSyncProvider,
    SyncRequest,
    build_shared_key,
    sync_context,
)
from shipit.adapters.engine.buildkit.filesync_dirs import ContextDir, Node, Walker
from shipit.context import IgnoreMatcher, create_context_archive
from shipit.errors import BuildError, ExitCode, UsageError
from tests.buildkit.filesync_support import Exchange, run_exchange, validate_order

NS = 1_700_000_000_123_456_789  # a modification time with nanoseconds


def tree(root: Path, files: Mapping[str, str | bytes], *, ignore: str | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith("/"):
            path.mkdir(exist_ok=True)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    if ignore is not None:
        (root / ".dockerignore").write_text(ignore)
    if not (root / "Dockerfile").exists():
        (root / "Dockerfile").write_text("FROM scratch\nCOPY . /\n")
    return root


def context(root: Path, chunk_size: int = CHUNK_SIZE, **request: tuple[str, ...]) -> Exchange:
    synced = sync_context(root, root / "Dockerfile", chunk_size=chunk_size)
    return run_exchange(synced.provider, SyncRequest(CONTEXT_DIR, **request))


# ------------------------------------------------------------------------- wire encodings


def test_stat_encoding_matches_the_proto_field_numbers() -> None:
    stat = ft.Stat(
        path="a",
        mode=0o644,
        uid=1,
        gid=2,
        size=3,
        mod_time=-1,
        linkname="b",
        devmajor=4,
        devminor=5,
        xattrs={"user.z": b"1", "user.a": b""},
    )
    encoded = stat.encode()
    assert encoded.startswith(b"\x0a\x01a\x10\xa4\x03\x18\x01\x20\x02\x28\x03\x30" + b"\xff" * 9)
    assert b"\x3a\x01b\x40\x04\x48\x05" in encoded
    # the map as repeated entries, sorted, an empty value left out as proto3 does
    assert encoded.endswith(b"\x52\x08\x0a\x06user.a" + b"\x52\x0b\x0a\x06user.z\x12\x011")
    assert ft.Stat.decode(encoded) == stat


def test_packets_round_trip_and_the_end_of_stats_is_empty() -> None:
    assert ft.Packet(ft.PACKET_STAT).encode() == b""
    assert ft.Packet.decode(b"") == ft.Packet(ft.PACKET_STAT)
    req = ft.Packet(ft.PACKET_REQ, id=7)
    assert req.encode() == b"\x08\x01\x18\x07"
    assert ft.Packet.decode(req.encode()) == req
    assert ft.data_packet(3, b"xy") == ft.Packet(ft.PACKET_DATA, id=3, data=b"xy").encode()
    stat_packet = ft.Packet(ft.PACKET_STAT, stat=ft.Stat(path="d", mode=ft.MODE_DIR | 0o755))
    assert ft.Packet.decode(stat_packet.encode()) == stat_packet
    assert ft.Packet(ft.PACKET_FIN).encode() == b"\x08\x03"


def test_go_file_mode_of_real_files(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    os.chmod(tmp_path / "f", 0o4755)
    (tmp_path / "d").mkdir()
    os.chmod(tmp_path / "d", 0o3777)
    os.symlink("f", tmp_path / "l")
    os.mkfifo(tmp_path / "p")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "s"))
    try:
        modes = {n: os.lstat(tmp_path / n).st_mode for n in ("f", "d", "l", "p", "s")}
    finally:
        sock.close()
    modes["c"] = os.stat("/dev/null").st_mode
    expected = {
        "f": ft.MODE_SETUID | 0o755,
        "d": ft.MODE_DIR | ft.MODE_SETGID | ft.MODE_STICKY | 0o777,
        "l": ft.MODE_SYMLINK | 0o777,
        "p": ft.MODE_NAMED_PIPE | 0o644,
        "s": ft.MODE_SOCKET | (modes["s"] & 0o777),
        "c": ft.MODE_DEVICE | ft.MODE_CHAR_DEVICE | 0o666,
    }
    assert {n: ft.go_file_mode(m) for n, m in modes.items()} == expected
    for name, mode in modes.items():
        assert ft.unix_mode(ft.go_file_mode(mode)) == mode, name
    block = statmod.S_IFBLK | 0o660
    assert ft.go_file_mode(block) == ft.MODE_DEVICE | 0o660
    assert ft.unix_mode(ft.MODE_DEVICE | 0o660) == block
    assert ft.can_request_data(expected["f"])
    assert not any(ft.can_request_data(expected[n]) for n in "dlpsc")


# ------------------------------------------------------------------------- the exchange


def test_full_exchange_stats_then_requested_data_in_chunks(tmp_path: Path) -> None:
    big = bytes(range(256)) * 400  # 102400 bytes: three full chunks and a short one
    root = tree(tmp_path / "ctx", {"big.bin": big, "a/x.txt": "x", "a/empty/": "", "z": ""})
    os.symlink("a/x.txt", root / "link")
    os.utime(root / "a" / "x.txt", ns=(NS, NS))
    result = context(root, chunk_size=FSUTIL_CHUNK_SIZE)
    assert result.finished and result.error is None
    assert result.paths == [
        "Dockerfile",
        "a",
        "a/empty",
        "a/x.txt",
        "big.bin",
        "link",
        "z",
    ]
    validate_order(result.stats)
    assert result.files == {
        "Dockerfile": b"FROM scratch\nCOPY . /\n",
        "a/x.txt": b"x",
        "big.bin": big,
        "z": b"",
    }
    assert result.chunks["big.bin"] == [FSUTIL_CHUNK_SIZE] * 3 + [len(big) - 3 * FSUTIL_CHUNK_SIZE]
    # by default, in larger chunks (grpcio's cost is per message)
    assert context(root).chunks["big.bin"] == [len(big)]
    assert CHUNK_SIZE == 8 * FSUTIL_CHUNK_SIZE
    x = result.stat("a/x.txt")
    assert (x.mode, x.size, x.mod_time, x.uid, x.gid) == (0o644, 1, NS, 0, 0)
    link = result.stat("link")
    assert (link.mode, link.linkname, link.size) == (ft.MODE_SYMLINK | 0o777, "a/x.txt", 7)
    assert result.stat("a/empty").mode == ft.MODE_DIR | 0o755
    assert result.stat("a").size == 0  # fsutil leaves a directory's size out
    # every file's DATA ends with an empty DATA for its id; the provider answers FIN with FIN
    assert result.packets[-1].type == ft.PACKET_FIN
    empty_data = [p for p in result.packets if p.type == ft.PACKET_DATA and not p.data]
    assert len(empty_data) == 4


def test_only_requested_files_are_sent_and_counted(tmp_path: Path) -> None:
    root = tree(tmp_path / "ctx", {"a.txt": "aaaa", "b.txt": "bb"})
    synced = sync_context(root, root / "Dockerfile")
    result = run_exchange(
        synced.provider, SyncRequest(CONTEXT_DIR), want=lambda s: s.path == "b.txt"
    )
    assert result.files == {"b.txt": b"bb"}
    (transfer,) = synced.provider.transfers
    assert (transfer.entries, transfer.requested, transfer.data_bytes) == (3, 1, 2)
    assert transfer.finished and synced.provider.sent_bytes() == 2
    assert synced.provider.summary() == (
        "context sent through file sync: 3 entries offered, 1 file (2 B) requested by the engine"
    )


def test_requests_sent_during_the_walk_are_served_after_it(tmp_path: Path) -> None:
    files = {f"f{i:03}": f"content {i}" for i in range(50)}
    root = tree(tmp_path / "ctx", files)
    synced = sync_context(root, root / "Dockerfile")
    result = run_exchange(synced.provider, SyncRequest(CONTEXT_DIR), early=True)
    assert result.finished
    assert {k: v.decode() for k, v in result.files.items() if k != "Dockerfile"} == files


def test_nothing_requested_ends_with_fin(tmp_path: Path) -> None:
    root = tree(tmp_path / "ctx", {"a": "1"})
    synced = sync_context(root, root / "Dockerfile")
    result = run_exchange(synced.provider, SyncRequest(CONTEXT_DIR), want=lambda _s: False)
    assert result.finished and not result.files
    assert [p.type for p in result.packets] == [ft.PACKET_STAT] * 3 + [ft.PACKET_FIN]


def test_engine_closing_the_stream_without_fin_ends_the_transfer(tmp_path: Path) -> None:
    root = tree(tmp_path / "ctx", {"a": "1"})
    synced = sync_context(root, root / "Dockerfile")
    result = run_exchange(synced.provider, SyncRequest(CONTEXT_DIR), close_instead_of_fin=True)
    assert not result.finished and result.error is None
    assert not synced.provider.transfers[0].finished


def test_dockerfile_dir_offers_only_the_dockerfile_with_real_owner(tmp_path: Path) -> None:
    root = tree(tmp_path / "ctx", {"other": "x"})
    real = tmp_path / "elsewhere" / "real.Dockerfile"
    real.parent.mkdir()
    real.write_text("FROM scratch\n")
    (tmp_path / "elsewhere" / "secret.txt").write_text("do not send")
    os.symlink(real, root / "build.Dockerfile")
    synced = sync_context(root, root / "build.Dockerfile")
    assert synced.dockerfile == "build.Dockerfile"
    request = SyncRequest(
        DOCKERFILE_DIR,
        follow_paths=("build.Dockerfile", "build.Dockerfile.dockerignore"),
    )
    result = run_exchange(synced.provider, request)
    assert result.paths == ["build.Dockerfile"]
    assert result.files == {"build.Dockerfile": b"FROM scratch\n"}
    st = os.stat(real)
    df = result.stat("build.Dockerfile")
    assert (df.mode, df.uid, df.gid, df.mod_time) == (0o644, st.st_uid, st.st_gid, st.st_mtime_ns)


def test_unknown_dir_name_is_an_error_not_a_hang(tmp_path: Path) -> None:
    root = tree(tmp_path / "ctx", {})
    synced = sync_context(root, root / "Dockerfile")
    result = run_exchange(synced.provider, SyncRequest("secrets"))
    assert result.error == "the engine asked for an unknown directory 'secrets'"
    assert isinstance(synced.provider.failure, BuildError)


def test_unknown_file_id_is_an_error(tmp_path: Path) -> None:
    root = tree(tmp_path / "ctx", {"a": "1"})
    provider = sync_context(root, root / "Dockerfile").provider
    replies = list(
        provider.diffcopy(
            SyncRequest(CONTEXT_DIR), iter([ft.Packet(ft.PACKET_REQ, id=99).encode()])
        )
    )
    last = ft.Packet.decode(replies[-1])
    assert last.type == ft.PACKET_ERR
    assert last.data == b"the engine asked for an unknown file (id 99) of the context"


def test_error_from_the_engine_is_recorded(tmp_path: Path) -> None:
    root = tree(tmp_path / "ctx", {"a": "1"})
    provider = sync_context(root, root / "Dockerfile").provider
    err = ft.Packet(ft.PACKET_ERR, data=b"disk full").encode()
    list(provider.diffcopy(SyncRequest(CONTEXT_DIR), iter([err])))
    assert str(provider.failure) == "the engine failed to receive the build context: disk full"


def test_metadata_repeats_keys_and_decodes_encoded_values() -> None:
    request = SyncRequest.from_metadata(
        [
            ("dir-name", "context"),
            ("exclude-patterns", "a"),
            ("exclude-patterns", "b%C3%A9+c"),
            ("exclude-patterns-encoded", "1"),
            ("followpaths", b".dockerignore"),
            ("user-agent", "grpc-go"),
        ]
    )
    assert request == SyncRequest(
        "context", exclude_patterns=("a", "bé c"), follow_paths=(".dockerignore",)
    )
    assert SyncRequest.from_metadata([]) == SyncRequest("")


def test_handlers_serve_diffcopy_as_a_raw_bytes_stream(tmp_path: Path) -> None:
    root = tree(tmp_path / "ctx", {})
    handlers = sync_context(root, root / "Dockerfile").provider.handlers()
    (handler,) = handlers.values()
    assert list(handlers) == [DIFFCOPY_METHOD]
    assert handler.request_streaming and handler.response_streaming
    assert handler.request_deserializer is None and handler.response_serializer is None


def test_shared_key_is_stable_per_directory_and_node(tmp_path: Path) -> None:
    key = build_shared_key(tmp_path, "node")
    assert key == build_shared_key(tmp_path / ".", "node")
    assert len(key) == 64 and key != build_shared_key(tmp_path, "other")
    arm64 = build_shared_key(tmp_path, "node", "linux/arm64")
    assert arm64 == build_shared_key(tmp_path / ".", "node", "linux/arm64")
    assert len({key, arm64, build_shared_key(tmp_path, "node", "linux/amd64")}) == 3


# ------------------------------------------------------------------------- what is offered


def test_ownership_hardlinks_and_setuid(tmp_path: Path) -> None:
    root = tree(tmp_path / "ctx", {"a": "same", "tool": "#!/bin/sh\n"})
    os.link(root / "a", root / "b")
    os.chown(root / "tool", 1234, 5678)
    os.chmod(root / "tool", 0o4755)  # after chown, which clears setuid
    result = context(root)
    assert result.stat("b").linkname == "a" and result.stat("b").size == 4  # as fsutil
    assert result.stat("a").linkname == ""
    tool = result.stat("tool")
    assert (tool.mode, tool.uid, tool.gid) == (ft.MODE_SETUID | 0o755, 0, 0)


def test_xattrs_are_sent(tmp_path: Path) -> None:
    root = tree(tmp_path / "ctx", {"a": "1"})
    try:
        os.setxattr(root / "a", "user.shipit", b"v")
    except OSError as exc:
        pytest.skip(f"no user xattrs on this filesystem: {exc}")
    assert context(root).stat("a").xattrs == {"user.shipit": b"v"}


def test_fifo_and_socket_are_skipped_like_the_tar(tmp_path: Path) -> None:
    root = tree(tmp_path / "ctx", {"a": "1"})
    os.mkfifo(root / "pipe")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(root / "sock"))
    try:
        synced = sync_context(root, root / "Dockerfile")
        result = run_exchange(synced.provider, SyncRequest(CONTEXT_DIR))
    finally:
        sock.close()
    assert result.finished and result.paths == ["Dockerfile", "a"]
    assert synced.provider.transfers[0].skipped == ["pipe", "sock"]
    assert synced.provider.summary().endswith("; skipped 2 special files")


def test_walk_order_is_bytewise_per_directory(tmp_path: Path) -> None:
    names = ["a", "a-b", "a.b", "B", "_", "é", "a/x", "a/x-y", "a/x/z"]
    root = tree(tmp_path / "ctx", {n + ("/" if n in ("a", "a/x") else ""): "" for n in names})
    result = context(root)
    assert result.paths == [
        "B",
        "Dockerfile",
        "_",
        "a",
        "a/x",
        "a/x/z",
        "a/x-y",
        "a-b",
        "a.b",
        "é",
    ]
    validate_order(result.stats)


def test_engine_excludes_drop_the_forced_dockerfile_and_dockerignore(tmp_path: Path) -> None:
    ignore = "Dockerfile\n.dockerignore\nbuild\n"
    root = tree(tmp_path / "ctx", {"app.py": "", "build/out": ""}, ignore=ignore)
    # what the engine asks first: .dockerignore alone, to read the patterns
    first = context(root, follow_paths=(".dockerignore",))
    assert first.paths == [".dockerignore"] and first.files[".dockerignore"] == ignore.encode()
    # without the engine's patterns: the tar's set (Dockerfile and .dockerignore forced in)
    assert context(root).paths == [".dockerignore", "Dockerfile", "app.py"]
    # with them (the same .dockerignore): what the legacy daemon leaves for COPY
    assert context(root, exclude_patterns=tuple(ignore.split())).paths == ["app.py"]


def test_include_patterns_send_parent_directories_first(tmp_path: Path) -> None:
    root = tree(tmp_path / "ctx", {"src/pkg/mod.py": "", "src/other.py": "", "docs/x": ""})
    result = context(root, include_patterns=("src/pkg",))
    assert result.paths == ["src", "src/pkg", "src/pkg/mod.py"]
    validate_order(result.stats)


def test_excluded_directory_walked_for_an_exception_is_sent_before_it(tmp_path: Path) -> None:
    root = tree(
        tmp_path / "ctx",
        {"docs/README.md": "r", "docs/other.md": "o"},
        ignore="docs\n!docs/README.md\n",
    )
    os.chmod(root / "docs", 0o750)
    assert sorted(_tar_names(root)) == [".dockerignore", "Dockerfile", "docs/README.md"]
    result = context(root)
    # the receiver needs the parent: it comes with its own mode (the tar has no entry for it)
    assert result.paths == [".dockerignore", "Dockerfile", "docs", "docs/README.md"]
    assert result.stat("docs").mode == ft.MODE_DIR | 0o750
    validate_order(result.stats)


def test_followpaths_resolve_symlinks_inside_the_directory(tmp_path: Path) -> None:
    root = tree(tmp_path / "ctx", {"conf/real.ignore": "x", "other": ""})
    os.symlink("conf/real.ignore", root / ".dockerignore")
    result = context(root, follow_paths=(".dockerignore",))
    assert result.paths == [".dockerignore", "conf", "conf/real.ignore"]
    os.remove(root / ".dockerignore")
    os.symlink("/conf/../../../conf", root / ".dockerignore")  # absolute: from the top
    assert context(root, follow_paths=(".dockerignore",)).paths[-1] == "conf/real.ignore"


def test_followpaths_with_wildcards_and_dot(tmp_path: Path) -> None:
    root = tree(tmp_path / "ctx", {"a1": "", "a2": "", "b": ""})
    assert context(root, follow_paths=("a*",)).paths == ["a1", "a2"]
    assert context(root, follow_paths=(".",)).paths == ["Dockerfile", "a1", "a2", "b"]


def _tar_names(root: Path) -> set[str]:
    archive = create_context_archive(root, root / "Dockerfile")
    with archive, tarfile.open(fileobj=archive.fileobj) as tar:
        return {m.name for m in tar.getmembers()}


def test_synced_set_is_the_tar_set_on_random_trees(tmp_path: Path) -> None:
    """On random trees and .dockerignore files: without the engine's patterns, the synced
    entries are the tar's entries plus only the parents the receiver needs; with them (the
    engine sends the same .dockerignore), the Dockerfile and .dockerignore go when excluded."""
    from tests.test_context import _random_patterns, _random_tree

    rng = random.Random(12)
    for case in range(60):
        root = tmp_path / f"t{case}"
        _random_tree(rng, root)
        patterns = _random_patterns(rng)
        (root / ".dockerignore").write_text("\n".join(patterns) + "\n")
        tar_set = _tar_names(root)
        synced = context(root).paths
        assert len(synced) == len(set(synced))
        extra = set(synced) - tar_set
        assert tar_set <= set(synced), (patterns, tar_set - set(synced))
        for path in extra:  # only directories above something the tar holds
            assert any(t.startswith(path + "/") for t in tar_set), (patterns, path)
        narrowed = context(root, exclude_patterns=tuple(patterns)).paths
        engine = IgnoreMatcher(patterns)
        kept = {p for p in synced if not (root / p).is_dir() and not engine.matches(p)}
        kept |= {p for p in synced if (root / p).is_dir() and not engine.matches(p)}
        kept |= {p for p in synced if any(k.startswith(p + "/") for k in kept)}
        assert set(narrowed) == kept, patterns


def test_walker_visits_only_directories_that_can_hold_something(tmp_path: Path) -> None:
    root = tree(tmp_path / "ctx", {"node_modules/a/b": "", "src/x": ""}, ignore="node_modules\n")
    listed: list[str] = []
    source = ContextDir(root)
    original = source.list

    def recording(reldir: str) -> list[Node]:
        listed.append(reldir)
        return original(reldir)

    source.list = recording  # type: ignore[method-assign]
    assert [w.stat.path for w in Walker(source)] == [".dockerignore", "Dockerfile", "src", "src/x"]
    assert listed == ["", "src"]


# ------------------------------------------------------------------------- failures


def _fail_after_stats(
    root: Path, change: Callable[[], object]
) -> tuple[Exchange, FileSyncProvider]:
    synced = sync_context(root, root / "Dockerfile")
    result = run_exchange(synced.provider, SyncRequest(CONTEXT_DIR), after_stats=change)
    return result, synced.provider


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p.unlink(), "was removed while the build context was sent"),
        (lambda p: p.write_text("longer content"), "changed while the build context was sent"),
        (lambda p: (p.unlink(), p.mkdir()), "changed while the build context was sent"),
        (
            lambda p: (p.unlink(), p.symlink_to("/etc/passwd")),
            "changed while the build context was sent",
        ),
        (lambda p: os.utime(p, ns=(NS, NS)), "changed while the build context was sent"),
    ],
    ids=["removed", "grown", "now-a-directory", "now-a-symlink", "same-size-new-mtime"],
)
def test_file_changing_between_stat_and_data_fails_clearly(
    tmp_path: Path, change: Callable[[Path], object], message: str
) -> None:
    root = tree(tmp_path / "ctx", {"data.txt": "original"})
    result, provider = _fail_after_stats(root, lambda: change(root / "data.txt"))
    assert result.error == f"'{root / 'data.txt'}' {message}"
    assert not result.finished
    failure = provider.failure
    assert isinstance(failure, UsageError) and failure.exit_code == ExitCode.USAGE
    assert failure.hint


def test_unreadable_file_fails_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tree(tmp_path / "ctx", {"secret.txt": "x"})
    real_open = os.open

    def deny(path, flags, *args):  # type: ignore[no-untyped-def]
        if str(path).endswith("secret.txt"):
            raise PermissionError(13, "Permission denied")
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", deny)
    result, provider = _fail_after_stats(root, lambda: None)
    assert (
        result.error
        == f"cannot read '{root / 'secret.txt'}' in the build context: Permission denied"
    )
    assert provider.failure is not None and provider.failure.exit_code == ExitCode.USAGE


def test_read_error_midway_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tree(tmp_path / "ctx", {"big": b"x" * (3 * CHUNK_SIZE)})
    real_read = os.read
    calls = {"n": 0}

    def flaky(fd: int, size: int) -> bytes:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(5, "Input/output error")
        return real_read(fd, size)

    monkeypatch.setattr(os, "read", flaky)
    result = context(root)
    assert result.error is not None and result.error.endswith("Input/output error")


def test_unreadable_directory_fails_during_the_walk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tree(tmp_path / "ctx", {"locked/a": "1"})
    real_scandir = os.scandir

    def deny(path):  # type: ignore[no-untyped-def]
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", deny)
    result = context(root)
    assert result.error == (
        f"cannot read directory '{root / 'locked'}' in the build context: Permission denied"
    )


def test_missing_context_or_dockerfile_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        sync_context(tmp_path / "nope", tmp_path / "Dockerfile")
    with pytest.raises(UsageError, match="not found"):
        sync_context(tmp_path, tmp_path / "Dockerfile")
    (tmp_path / "f").write_text("")
    with pytest.raises(UsageError, match="not a directory"):
        sync_context(tmp_path / "f", tmp_path / "f")


def test_unreadable_path_in_followpaths_fails_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tree(tmp_path / "ctx", {"conf/x": ""})
    real_lstat = os.lstat

    def deny(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        if str(path).endswith("conf"):
            raise PermissionError(13, "Permission denied")
        return real_lstat(path, *args, **kwargs)

    monkeypatch.setattr(os, "lstat", deny)
    result = context(root, follow_paths=("conf/x",))
    assert result.error == f"cannot read '{root / 'conf'}' in the build context: Permission denied"


# ------------------------------------------------------------------------- over gRPC


@pytest.fixture
def grpc_served(tmp_path: Path) -> Iterator[tuple[FileSyncProvider, Any]]:
    """The provider behind a real grpcio server (as a session serves it) and a client call."""
    import concurrent.futures

    import grpc

    from shipit.adapters.engine.buildkit.session import MethodRouter

    root = tree(tmp_path / "ctx", {"a.txt": "a", "b.txt": "b" * 100_000})
    provider = sync_context(root, root / "Dockerfile").provider
    address = f"unix:{tmp_path}/grpc.sock"
    executor = concurrent.futures.ThreadPoolExecutor(4)
    server = grpc.server(executor, handlers=[MethodRouter(provider.handlers())])
    server.add_insecure_port(address)
    server.start()
    channel = grpc.insecure_channel(address)
    try:
        yield provider, (server, channel.stream_stream(DIFFCOPY_METHOD))
    finally:
        channel.close()
        server.stop(None).wait(5)
        executor.shutdown(wait=True)


def test_diffcopy_over_grpc_with_metadata(grpc_served: tuple[FileSyncProvider, Any]) -> None:
    provider, (_server, call) = grpc_served
    inbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()

    def requests() -> Iterator[bytes]:
        while (item := inbox.get()) is not None:
            yield item

    received: list[ft.Packet] = []
    for raw in call(requests(), metadata=[("dir-name", "context"), ("followpaths", "b.txt")]):
        received.append(ft.Packet.decode(raw))
        if raw == b"":
            inbox.put(ft.Packet(ft.PACKET_REQ, id=0).encode())
        elif received[-1].type == ft.PACKET_DATA and not received[-1].data:
            inbox.put(ft.Packet(ft.PACKET_FIN).encode())
        elif received[-1].type == ft.PACKET_FIN:
            inbox.put(None)
    assert [p.stat.path for p in received if p.stat] == ["b.txt"]
    assert b"".join(p.data for p in received) == b"b" * 100_000
    assert provider.transfers[0].finished


def test_unknown_dir_over_grpc_is_not_found(grpc_served: tuple[FileSyncProvider, Any]) -> None:
    import grpc

    _provider, (_server, call) = grpc_served
    with pytest.raises(grpc.RpcError) as caught:
        list(call(iter([]), metadata=[("dir-name", "home")]))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert caught.value.details() == "no access allowed to dir 'home'"


def test_engine_that_goes_silent_is_ended_by_the_session_closing(
    grpc_served: tuple[FileSyncProvider, Any],
) -> None:
    """The engine reads the STATs and then never answers: the transfer waits, and ends as
    soon as the session's server stops (which the build's stall timeout bounds)."""
    import grpc

    provider, (server, call) = grpc_served
    silent = threading.Event()

    def requests() -> Iterator[bytes]:
        silent.wait(10)
        return
        yield b""  # a generator that sends nothing

    responses = call(requests(), metadata=[("dir-name", "context")])
    assert next(responses) != b""  # the first STAT
    started = time.monotonic()
    server.stop(None).wait(5)
    with pytest.raises(grpc.RpcError):
        list(responses)
    try:
        deadline = time.monotonic() + 5
        while not provider.transfers[0].ended:
            assert time.monotonic() < deadline, "the DiffCopy handler outlived the session"
            time.sleep(0.01)
    finally:
        silent.set()  # the fake engine's own sending thread
    assert time.monotonic() - started < 5
    assert not provider.transfers[0].finished


def test_a_name_that_is_not_utf8_goes_as_its_bytes(tmp_path: Path) -> None:
    root = tree(tmp_path / "ctx", {})
    raw = b"caf\xe9.txt"  # Latin-1, not UTF-8
    with open(os.path.join(os.fsencode(root), raw), "wb") as f:
        f.write(b"x")
    result = context(root)
    name = os.fsdecode(raw)
    assert result.paths == ["Dockerfile", name] and result.files[name] == b"x"
    assert b"\x0a\x08caf\xe9.txt" in next(r for r in result.raw if b"caf" in r)


def test_symlink_removed_during_the_walk_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tree(tmp_path / "ctx", {"a": "1"})
    os.symlink("a", root / "gone")
    real_readlink = os.readlink

    def vanishing(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        if str(path).endswith("gone"):
            raise FileNotFoundError(2, "No such file or directory")
        return real_readlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "readlink", vanishing)
    result = context(root)
    assert result.finished and result.paths == ["Dockerfile", "a"]
