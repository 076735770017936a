"""Session against a fake engine: the upgrade request, the bridge, dispatch and shutdown.

The fake engine listens on a unix socket like dockerd, answers ``POST /session`` with 101 and
then does what dockerd does: act as the gRPC client over the hijacked connection (a grpcio
channel whose transport is bridged onto it). No Docker needed.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from shipit.adapters.engine.buildkit import session as session_mod
from shipit.adapters.engine.buildkit.secrets import GET_SECRET, SecretsProvider
from shipit.adapters.engine.buildkit.session import (
    HEALTH_CHECK,
    Session,
    SessionError,
    collect_handlers,
    health_response,
    session_headers,
)
from shipit.adapters.engine.buildkit.wire import field_bytes, field_string, fields


def _pump(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := src.recv(65536):
            dst.sendall(data)
    for sock in (src, dst):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class FakeEngine:
    """Answers one ``POST /session``; then its ``channel`` reaches the session's server."""

    def __init__(self, root: Path, *, status: int = 101, body: bytes = b"", early: bool = True):
        self.path = str(root / "engine.sock")
        self.grpc_path = str(root / "client.sock")
        self.status, self.body, self.early = status, body, early
        self.head = b""
        self.early_bytes = b""
        self.conn: socket.socket | None = None
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(1)
        self.grpc_listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.grpc_listener.bind(self.grpc_path)
        self.grpc_listener.listen(1)
        self.channel = grpc.insecure_channel(f"unix:{self.grpc_path}")
        self.sockets: list[socket.socket] = [self.listener, self.grpc_listener]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _read_head(self, conn: socket.socket) -> None:
        while b"\r\n\r\n" not in self.head:
            chunk = conn.recv(4096)
            if not chunk:
                return
            self.head += chunk

    def _serve(self) -> None:
        self.listener.settimeout(10)
        conn, _ = self.listener.accept()
        self.sockets.append(conn)
        self.conn = conn
        self._read_head(conn)
        if self.status != 101:
            reason = b"HTTP/1.1 %d Bad Request\r\nContent-Type: application/json\r\n" % self.status
            conn.sendall(reason + b"Content-Length: %d\r\n\r\n" % len(self.body) + self.body)
            return
        # Like dockerd: the gRPC client starts talking at once. Its first bytes (the HTTP/2
        # preface) are sent in the same write as the 101, so they sit in the client's buffer.
        grpc.channel_ready_future(self.channel)  # makes the channel connect
        self.grpc_listener.settimeout(10)
        client, _ = self.grpc_listener.accept()
        self.sockets.append(client)
        if self.early:
            self.early_bytes = client.recv(65536)
        response = (
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
        )
        conn.sendall(response + self.early_bytes)
        threading.Thread(target=_pump, args=(client, conn), daemon=True).start()
        _pump(conn, client)

    def call(self, method: str, request: bytes = b"", timeout: float = 5.0) -> bytes:
        result: bytes = self.channel.unary_unary(method)(request, timeout=timeout)
        return result

    def header_values(self, name: str) -> list[str]:
        values = []
        for line in self.head.decode("latin-1").split("\r\n")[1:]:
            key, _, value = line.partition(":")
            if key.strip().lower() == name.lower():
                values.append(value.strip())
        return values

    def drop(self) -> None:
        """The engine goes away (dockerd stopped, connection reset)."""
        assert self.conn is not None
        self.conn.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.channel.close()
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.close()
        self.thread.join(5)


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    # unix socket paths must stay under 108 bytes: pytest's tmp_path can be longer.
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bk-") as name:
        yield Path(name)


def _api(engine: FakeEngine) -> Any:
    import docker

    return docker.APIClient(base_url=f"unix://{engine.path}", version="1.41", timeout=10)


@pytest.fixture
def engine(short_tmp: Path) -> Iterator[FakeEngine]:
    fake = FakeEngine(short_tmp)
    yield fake
    fake.close()


def _session_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("shipit-session")]


def test_session_request_has_one_method_header_per_method(engine: FakeEngine) -> None:
    provider = SecretsProvider({"tok": b"x"})
    with Session(_api(engine), [provider], name="app", shared_key="k3y", session_id="sid1") as s:
        assert s.methods == sorted([GET_SECRET, HEALTH_CHECK])
        assert engine.call(HEALTH_CHECK) == health_response()
    request_line = engine.head.split(b"\r\n", 1)[0]
    assert request_line == b"POST /v1.41/session HTTP/1.1"
    assert engine.header_values("Upgrade") == ["h2c"]
    assert engine.header_values("Connection") == ["Upgrade"]
    assert engine.header_values("X-Docker-Expose-Session-Uuid") == ["sid1"]
    assert engine.header_values("X-Docker-Expose-Session-Name") == ["app"]
    assert engine.header_values("X-Docker-Expose-Session-Sharedkey") == ["k3y"]
    # Separate lines, not one joined value: the engine reads the header as a list.
    assert engine.header_values("X-Docker-Expose-Session-Grpc-Method") == [HEALTH_CHECK, GET_SECRET]


def test_bytes_sent_with_the_101_reach_the_server_first(engine: FakeEngine) -> None:
    with Session(_api(engine)) as session:
        assert engine.call(HEALTH_CHECK) == b"\x08\x01"
        assert session.health_checks == 1
    assert engine.early_bytes.startswith(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")


def test_providers_are_dispatched_by_method_and_unknown_methods_unimplemented(
    engine: FakeEngine,
) -> None:
    with Session(_api(engine), [SecretsProvider({"tok": b"v4lue"})]):
        answer = engine.call(GET_SECRET, field_string(1, "tok"))
        assert fields(answer) == {1: [b"v4lue"]}
        with pytest.raises(grpc.RpcError) as missing:
            engine.call(GET_SECRET, field_string(1, "other"))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        assert "other" in (missing.value.details() or "")
        with pytest.raises(grpc.RpcError) as unknown:
            engine.call("/moby.upload.v1.Upload/Pull")
        assert unknown.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_a_streaming_provider_is_served(engine: FakeEngine) -> None:
    method = "/test.v1.Echo/Stream"

    class Echo:
        def handlers(self) -> dict[str, grpc.RpcMethodHandler]:
            def echo(requests: Iterator[bytes], _ctx: Any) -> Iterator[bytes]:
                for request in requests:
                    yield request.upper()

            return {method: grpc.stream_stream_rpc_method_handler(echo)}

    with Session(_api(engine), [Echo()]):
        call = engine.channel.stream_stream(method)
        answers = list(call(iter([field_bytes(1, b"ab"), field_bytes(1, b"cd")]), timeout=5))
    assert answers == [field_bytes(1, b"ab").upper(), field_bytes(1, b"cd").upper()]


def test_close_stops_server_and_threads_and_removes_the_socket_dir(engine: FakeEngine) -> None:
    session = Session(_api(engine), [SecretsProvider({})]).open()
    engine.call(HEALTH_CHECK)
    tmpdir = session._tmpdir
    assert tmpdir is not None and os.path.exists(tmpdir)
    assert len(_session_threads()) >= 2
    started = time.monotonic()
    session.close()
    session.close()  # idempotent
    assert time.monotonic() - started < 3
    assert not os.path.exists(tmpdir)
    assert not session.alive
    deadline = time.monotonic() + 3
    while _session_threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _session_threads() == []
    with pytest.raises(grpc.RpcError):
        engine.call(HEALTH_CHECK, timeout=2)


def test_engine_dropping_the_connection_ends_the_session(engine: FakeEngine) -> None:
    with Session(_api(engine)) as session:
        engine.call(HEALTH_CHECK)
        assert session.alive
        engine.drop()
        assert session.wait_ended(5)
        assert not session.alive
        started = time.monotonic()
    assert time.monotonic() - started < 3


def test_refused_upgrade_is_a_session_error_with_the_engine_message(short_tmp: Path) -> None:
    fake = FakeEngine(short_tmp, status=400, body=b'{"message":"session already exists"}\n')
    try:
        with pytest.raises(SessionError) as failure, Session(_api(fake)):
            pass
    finally:
        fake.close()
    assert failure.value.status == 400
    assert "HTTP 400" in failure.value.message
    assert "session already exists" in failure.value.message
    assert _session_threads() == []
    assert not list(short_tmp.glob("shipit-session-*"))


def test_engine_that_never_answers_times_out(short_tmp: Path) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(short_tmp / "mute.sock"))
    listener.listen(1)
    import docker

    api = docker.APIClient(base_url=f"unix://{short_tmp / 'mute.sock'}", version="1.41")
    started = time.monotonic()
    try:
        with pytest.raises(SessionError, match="did not answer"):
            Session(api, open_timeout=0.5).open()
    finally:
        listener.close()
    assert time.monotonic() - started < 3


def test_unreachable_engine_is_an_engine_error(short_tmp: Path) -> None:
    import docker

    from shipit.errors import EngineUnavailableError

    api = docker.APIClient(base_url=f"unix://{short_tmp / 'none.sock'}", version="1.41")
    with pytest.raises(EngineUnavailableError, match="cannot reach the Docker engine"):
        Session(api).open()


def test_session_opens_once(engine: FakeEngine) -> None:
    session = Session(_api(engine))
    with session, pytest.raises(RuntimeError):
        session.open()


def test_two_providers_serving_one_method_is_refused() -> None:
    with pytest.raises(ValueError, match="two providers"):
        collect_handlers([SecretsProvider({}), SecretsProvider({})])


def test_a_method_that_is_not_a_full_path_is_refused() -> None:
    class Bad:
        def handlers(self) -> dict[str, grpc.RpcMethodHandler]:
            return {"Secrets/GetSecret": grpc.unary_unary_rpc_method_handler(lambda r, c: r)}

    with pytest.raises(ValueError, match="full gRPC method path"):
        collect_handlers([Bad()])


def test_header_values_cannot_smuggle_lines() -> None:
    from shipit.adapters.engine.buildkit.transport import upgrade_request

    headers = session_headers("id", "name\r\nX-Evil: 1", "key", [])
    with pytest.raises(ValueError, match="line break"):
        upgrade_request("/session", "localhost", headers)


def test_grpc_is_not_imported_with_the_session_module() -> None:
    import subprocess
    import sys

    code = (
        "import sys, shipit.adapters.engine.buildkit.session, "
        "shipit.adapters.engine.buildkit.secrets, shipit.adapters.engine.buildkit.sshforward, "
        "shipit.adapters.engine.buildkit.auth, shipit.adapters.engine.buildkit.transport; "
        "print('grpc' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert session_mod.MAX_MESSAGE == 16 * 1024 * 1024


def test_shared_key_is_the_docker_clis() -> None:
    # sha256("node:/src/app"), as docker's getBuildSharedKey computes it.
    import hashlib

    from shipit.adapters.engine.buildkit.session import shared_key

    assert shared_key("/src/app", "node") == hashlib.sha256(b"node:/src/app").hexdigest()
    assert shared_key("/src/app", "node") != shared_key("/src/other", "node")
    assert shared_key("/src/app", "node") != shared_key("/src/app", "other-node")
