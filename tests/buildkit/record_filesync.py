"""Record file sync exchanges with the local engine as fixtures.

Run by hand: ``.venv/bin/python -m tests.buildkit.record_filesync``. On the tree of
``filesync_support.make_fixture_tree`` it records, under ``tests/buildkit/fixtures/filesync/``:

* ``shipit_engine.json``: shipit's provider in a real build (``remote=client-session``), every
  packet of every DiffCopy call, both ways, with the metadata the engine sent;
* ``docker_cli.json``: ``DOCKER_BUILDKIT=1 /usr/bin/docker build`` (the 20.10 CLI, whose file
  sync is fsutil's Go sender) on the same tree, seen through a unix socket proxy between the CLI
  and the engine: the session connection's HTTP/2 DATA frames, reassembled into gRPC messages
  per stream (the DiffCopy streams are the ones that end with a FIN).

Images are tagged ``shipit-fsync-fixture-*`` and removed afterwards.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.buildkit.filesync_support import make_fixture_tree

FIXTURES = Path(__file__).parent / "fixtures" / "filesync"
PREFIX = "shipit-fsync-fixture"
ENGINE_SOCKET = "/var/run/docker.sock"
FIN = b"\x08\x03"


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def record_shipit(root: Path) -> dict[str, Any]:
    import docker

    from shipit.adapters.engine.buildkit.filesync import Transfer, sync_context
    from shipit.adapters.engine.buildkit.session import Session
    from shipit.adapters.engine.buildkit.transport import BuildRequest, post_build

    api = docker.APIClient(version="auto")
    packets: dict[int, list[list[str]]] = {}
    lock = threading.Lock()

    def log(transfer: Transfer, direction: str, raw: bytes) -> None:
        with lock:
            packets.setdefault(id(transfer), []).append([direction, b64(raw)])

    synced = sync_context(root, root / "Dockerfile", packet_log=log)
    tag = f"{PREFIX}-{uuid.uuid4().hex[:8]}:latest"
    with Session(api, [synced.provider], name=root.name, shared_key=uuid.uuid4().hex) as s:
        request = BuildRequest(
            tags=[tag], dockerfile=synced.dockerfile, session_id=s.id, remote="client-session"
        )
        chunks = list(post_build(api, request, None))
    api.remove_image(tag)
    assert not any("errorDetail" in c for c in chunks), chunks
    return {
        "engine": api.version()["Version"],
        "transfers": [
            {
                "dir_name": t.dir_name,
                "include_patterns": list(t.request.include_patterns),
                "exclude_patterns": list(t.request.exclude_patterns),
                "follow_paths": list(t.request.follow_paths),
                "packets": packets.get(id(t), []),
            }
            for t in synced.provider.transfers
        ],
    }


class Recorder:
    """A unix socket proxy to the engine that keeps every connection's bytes, both ways."""

    def __init__(self, path: str):
        self.path = path
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(path)
        self.server.listen(8)
        self.connections: list[dict[str, bytearray]] = []
        self.threads: list[threading.Thread] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(ENGINE_SOCKET)
            record = {"client": bytearray(), "engine": bytearray()}
            self.connections.append(record)
            for src, dst, key in ((client, upstream, "client"), (upstream, client, "engine")):
                thread = threading.Thread(target=self._pump, args=(src, dst, record[key]))
                thread.start()
                self.threads.append(thread)

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, sink: bytearray) -> None:
        try:
            while data := src.recv(65536):
                sink += data
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.server.close()
        for thread in self.threads:
            thread.join(10)


def h2_messages(buf: bytes) -> dict[int, list[bytes]]:
    """gRPC messages per HTTP/2 stream, from a connection's frames (DATA frames only)."""
    streams: dict[int, bytearray] = {}
    pos = 0
    while pos + 9 <= len(buf):
        length = int.from_bytes(buf[pos : pos + 3], "big")
        kind, flags = buf[pos + 3], buf[pos + 4]
        stream = int.from_bytes(buf[pos + 5 : pos + 9], "big") & 0x7FFFFFFF
        payload = buf[pos + 9 : pos + 9 + length]
        pos += 9 + length
        if kind != 0:
            continue
        if flags & 0x8:  # PADDED
            payload = payload[1 : len(payload) - payload[0]]
        streams.setdefault(stream, bytearray()).extend(payload)
    out: dict[int, list[bytes]] = {}
    for stream, data in streams.items():
        messages, at = [], 0
        while at + 5 <= len(data):
            size = int.from_bytes(data[at + 1 : at + 5], "big")
            messages.append(bytes(data[at + 5 : at + 5 + size]))
            at += 5 + size
        out[stream] = messages
    return out


def _session_streams(record: dict[str, bytearray]) -> list[dict[str, Any]]:
    client, engine = bytes(record["client"]), bytes(record["engine"])
    client = client[client.index(b"\r\n\r\n") + 4 :]  # the CLI serves HTTP/2 after its request
    engine = engine[engine.index(b"\r\n\r\n") + 4 :]  # the engine: the 101, then the preface
    engine = engine.removeprefix(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    sent, received = h2_messages(client), h2_messages(engine)
    return [
        {
            "stream": stream,
            "recv": [b64(m) for m in received.get(stream, [])],
            "send": [b64(m) for m in messages],
        }
        for stream, messages in sorted(sent.items())
        if messages and messages[-1] == FIN
    ]


def record_cli(root: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="shipit-fsync-rec-") as tmp:
        recorder = Recorder(os.path.join(tmp, "docker.sock"))
        tag = f"{PREFIX}-{uuid.uuid4().hex[:8]}:latest"
        env = {
            **os.environ,
            "DOCKER_BUILDKIT": "1",
            "DOCKER_HOST": f"unix://{recorder.path}",
            "DOCKER_CONFIG": os.path.join(tmp, "config"),  # a fresh node id: a full transfer
        }
        try:
            subprocess.run(
                ["/usr/bin/docker", "build", "--progress=plain", "-t", tag, str(root)],
                env=env,
                check=True,
                capture_output=True,
                timeout=120,
            )
            version = subprocess.run(
                ["/usr/bin/docker", "version", "-f", "{{.Client.Version}}"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        finally:
            subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)
            recorder.close()
    sessions = [c for c in recorder.connections if b"/session" in bytes(c["client"][:200])]
    assert len(sessions) == 1, f"expected one session connection, saw {len(sessions)}"
    return {"client": version, "streams": _session_streams(sessions[0])}


@contextlib.contextmanager
def fixture_tree() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="shipit-fsync-tree-") as tmp:
        yield make_fixture_tree(Path(tmp) / "ctx")


def main(argv: list[str]) -> None:
    FIXTURES.mkdir(parents=True, exist_ok=True)
    cases = argv or ["shipit", "cli"]
    for case in cases:
        with fixture_tree() as root:
            data = record_shipit(root) if case == "shipit" else record_cli(root)
        name = "shipit_engine.json" if case == "shipit" else "docker_cli.json"
        (FIXTURES / name).write_text(json.dumps(data, indent=1) + "\n")
        print(f"wrote {FIXTURES / name}")


if __name__ == "__main__":
    main(sys.argv[1:])
