"""Test helpers for file sync: a fake engine that drives a provider as fsutil's receiver does,
and fsutil's order validator ported, to check what the provider sends."""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from shipit.adapters.engine.buildkit.filesync import FileSyncProvider, SyncRequest
from shipit.adapters.engine.buildkit.fsutil_types import (
    PACKET_DATA,
    PACKET_ERR,
    PACKET_FIN,
    PACKET_REQ,
    PACKET_STAT,
    Packet,
    Stat,
    can_request_data,
)


@dataclass
class Exchange:
    """What a fake engine saw: every packet the provider sent, decoded."""

    packets: list[Packet] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    stats: list[Stat] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    chunks: dict[str, list[int]] = field(default_factory=dict)
    error: str | None = None
    finished: bool = False

    @property
    def paths(self) -> list[str]:
        return [s.path for s in self.stats]

    def stat(self, path: str) -> Stat:
        return next(s for s in self.stats if s.path == path)


def run_exchange(
    provider: FileSyncProvider,
    request: SyncRequest,
    want: Callable[[Stat], bool] = lambda _stat: True,
    *,
    after_stats: Callable[[], object] | None = None,
    early: bool = False,
    close_instead_of_fin: bool = False,
    timeout: float = 10.0,
) -> Exchange:
    """Drive one DiffCopy the way fsutil's receiver does: read STATs to the empty one, send
    REQ for each wanted file (``early``: as soon as its STAT arrives), read DATA to each empty
    DATA, then FIN and read the provider's FIN. Fails instead of hanging."""
    inbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
    result = Exchange()

    def incoming() -> Iterator[bytes]:
        while (item := inbox.get()) is not None:
            yield item

    def drive() -> None:
        ids: dict[int, str] = {}
        pending: set[int] = set()
        stats_done = False
        next_id = 0
        for raw in provider.diffcopy(request, incoming()):
            packet = Packet.decode(raw)
            result.raw.append(raw)
            result.packets.append(packet)
            if packet.type == PACKET_STAT and packet.stat is not None:
                result.stats.append(packet.stat)
                if can_request_data(packet.stat.mode) and want(packet.stat):
                    ids[next_id] = packet.stat.path
                    pending.add(next_id)
                    if early:
                        inbox.put(Packet(PACKET_REQ, id=next_id).encode())
                next_id += 1
            elif packet.type == PACKET_STAT:
                stats_done = True
                if after_stats is not None:
                    after_stats()
                if not early:
                    for file_id in sorted(pending):
                        inbox.put(Packet(PACKET_REQ, id=file_id).encode())
            elif packet.type == PACKET_DATA:
                path = ids[packet.id]
                if packet.data:
                    result.files[path] = result.files.get(path, b"") + packet.data
                    result.chunks.setdefault(path, []).append(len(packet.data))
                else:
                    result.files.setdefault(path, b"")
                    pending.discard(packet.id)
            elif packet.type == PACKET_FIN:
                result.finished = True
                inbox.put(None)
            elif packet.type == PACKET_ERR:
                result.error = packet.data.decode()
                inbox.put(None)
            if stats_done and not pending and packet.type in (PACKET_STAT, PACKET_DATA):
                inbox.put(None if close_instead_of_fin else Packet(PACKET_FIN).encode())
                if close_instead_of_fin:
                    stats_done = False

    thread = threading.Thread(target=drive, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "the provider hung"
    return result


def compare_path(p1: str, p2: str) -> int:
    """fsutil's ComparePath: bytewise, with '/' before every other byte."""
    b1, b2 = p1.encode("utf-8", "surrogateescape"), p2.encode("utf-8", "surrogateescape")
    for c1, c2 in zip(b1, b2, strict=False):
        if c1 == c2:
            continue
        if (c2 != ord("/") and c1 < c2) or c1 == ord("/"):
            return -1
        return 1
    return len(b1) - len(b2)


def validate_order(stats: list[Stat]) -> None:
    """fsutil's receiver-side Validator: each path after its parent directory, names strictly
    increasing within a directory, no unclean or escaping path. Raises AssertionError."""
    parents: list[tuple[str, str]] = [("", "")]
    for stat in stats:
        path = stat.path
        assert path and not path.startswith("/") and ".." not in path.split("/"), path
        assert "//" not in path and not path.endswith("/"), path
        directory, _, base = path.rpartition("/")
        while len(parents) > 1 and compare_path(parents[-1][0], directory) > 0:
            parents.pop()
        assert parents[-1][0] == directory, f"{path!r}: parent not sent just before"
        assert parents[-1][1].encode() < base.encode() or not parents[-1][1], (
            f"out of order: {path!r} after {parents[-1][1]!r}"
        )
        parents[-1] = (directory, base)
        if stat.is_dir:
            parents.append((path, ""))


# ------------------------------------------------------------------------- the recorded tree

FIXTURE_MTIME = 1_700_000_000_123_456_789  # the first entry's; each next one 1.000000001 s later
FIXTURE_DOCKERFILE = "FROM scratch\nCOPY . /ctx/\n"


def make_fixture_tree(root: Path) -> Path:
    """The tree the file sync fixtures were recorded on, rebuilt byte for byte: contents,
    modes, symlinks, a hard link, an excluded directory with an exception, an empty 0700
    directory, a 51,200-byte file (two chunks), and fixed nanosecond mtimes."""
    files: dict[str, bytes] = {
        "Dockerfile": FIXTURE_DOCKERFILE.encode(),
        ".dockerignore": b"*.log\ndocs\n!docs/README.md\n",
        "app.py": b"print('hello')\n",
        "big.bin": bytes(range(256)) * 200,
        "bin/run": b"#!/bin/sh\necho run\n",
        "bin/suid": b"#!/bin/sh\n",
        "caf\u00e9.txt": "caf\u00e9\n".encode(),
        "debug.log": b"left out\n",
        "docs/README.md": b"kept by the exception\n",
        "docs/notes.md": b"left out\n",
        "hard-a": b"same inode\n",
        "src/pkg/mod.py": b"x = 1\n",
    }
    modes = {"bin/run": 0o755, "bin/suid": 0o4755, "app.py": 0o600}
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.chmod(path, modes.get(name, 0o644))
    (root / "empty").mkdir()
    os.chmod(root / "empty", 0o700)
    os.link(root / "hard-a", root / "hard-b")
    os.symlink("app.py", root / "link-rel")
    os.symlink("/etc/hostname", root / "link-abs")
    for path in (root / "bin", root / "docs", root / "src", root / "src" / "pkg"):
        os.chmod(path, 0o755)
    entries = sorted(root.rglob("*"), key=lambda p: str(p))
    for index, path in enumerate(reversed(entries)):  # children before their directories
        mtime = FIXTURE_MTIME + (len(entries) - 1 - index) * 1_000_000_001
        os.utime(path, ns=(mtime, mtime), follow_symlinks=False)
    return root
