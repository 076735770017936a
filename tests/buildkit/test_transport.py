"""The /build?version=2 request and the raw upgrade helpers, without an engine."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from shipit.adapters.engine.buildkit.transport import (
    BuildRequest,
    UpgradeError,
    post_build,
    read_response_head,
    upgrade_request,
)


class FakeResponse:
    pass


class RecordingAPI:
    """docker-py's plumbing, as far as post_build uses it."""

    def __init__(self, chunks: list[dict[str, Any]], timeout: int = 42):
        self.chunks = chunks
        self.timeout = timeout
        self.posts: list[tuple[str, dict[str, Any]]] = []
        self.raised = False

    def _url(self, path: str) -> str:
        return f"http+docker://localhost/v1.41{path}"

    def _post(self, url: str, **kwargs: Any) -> FakeResponse:
        self.posts.append((url, kwargs))
        return FakeResponse()

    def _raise_for_status(self, response: FakeResponse) -> None:
        self.raised = True

    def _stream_helper(self, response: FakeResponse, decode: bool = False) -> Iterator[Any]:
        assert decode
        yield from self.chunks


def test_default_request_is_buildkit_and_nothing_else() -> None:
    assert BuildRequest().params() == {"version": "2"}


def test_every_option_uses_the_engines_spelling() -> None:
    request = BuildRequest(
        tags=["app:1", "app:latest"],
        dockerfile="docker/Dockerfile",
        buildargs={"A": "1", "UNSET": None},
        labels={"org.opencontainers.image.revision": "abc"},
        target="runtime",
        nocache=True,
        pull=True,
        platform="linux/arm64",
        networkmode="none",
        cachefrom=["reg/app:buildcache"],
        outputs=[{"Type": "moby", "Attrs": {}}],
        session_id="sid",
        remote="client-session",
        build_id="bid",
        extra={"shmsize": "67108864"},
    )
    params = request.params()
    assert params["t"] == ["app:1", "app:latest"]  # requests repeats the key for a list
    assert json.loads(params["buildargs"]) == {"A": "1", "UNSET": None}
    assert json.loads(params["labels"]) == {"org.opencontainers.image.revision": "abc"}
    assert json.loads(params["cachefrom"]) == ["reg/app:buildcache"]
    assert json.loads(params["outputs"]) == [{"Type": "moby", "Attrs": {}}]
    expected = {
        "version": "2",
        "dockerfile": "docker/Dockerfile",
        "target": "runtime",
        "nocache": "1",
        "pull": "1",
        "platform": "linux/arm64",
        "networkmode": "none",
        "session": "sid",
        "remote": "client-session",
        "buildid": "bid",
        "shmsize": "67108864",
    }
    assert {k: params[k] for k in expected} == expected


def test_post_build_streams_decoded_chunks_and_keeps_the_clients_timeout() -> None:
    chunks = [{"id": "moby.buildkit.trace", "aux": "AA=="}, {"id": "moby.image.id", "aux": {}}]
    api = RecordingAPI(chunks)
    got = list(post_build(api, BuildRequest(session_id="s"), b"tar-bytes"))
    assert got == chunks
    assert api.raised
    [(url, kwargs)] = api.posts
    assert url == "http+docker://localhost/v1.41/build"
    assert kwargs["data"] == b"tar-bytes"
    assert kwargs["stream"] is True
    assert kwargs["headers"] == {"Content-Type": "application/x-tar"}
    assert kwargs["params"]["session"] == "s"
    # No explicit timeout: docker-py then applies api.timeout (the stall timeout) to each read.
    assert "timeout" not in kwargs


def test_post_build_without_body_for_file_sync() -> None:
    api = RecordingAPI([])
    list(post_build(api, BuildRequest(remote="client-session"), None))
    assert api.posts[0][1]["data"] == b""


def test_upgrade_request_writes_repeated_headers_as_separate_lines() -> None:
    raw = upgrade_request("/v1.41/session", "localhost", [("X-M", "/a/B"), ("X-M", "/c/D")], "ua")
    assert raw == (
        b"POST /v1.41/session HTTP/1.1\r\nHost: localhost\r\nUser-Agent: ua\r\n"
        b"Content-Length: 0\r\nX-M: /a/B\r\nX-M: /c/D\r\n\r\n"
    )


@pytest.mark.parametrize("name", ["", "Bad Name", "Bad:Name"])
def test_invalid_header_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError):
        upgrade_request("/session", "localhost", [(name, "v")])


def test_response_head_keeps_the_bytes_after_it() -> None:
    left, right = socket.socketpair()
    with left, right:
        right.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\nPRI * HTTP/2.0")
        head = read_response_head(left, time.monotonic() + 2)
    assert (head.status, head.reason) == (101, "Switching Protocols")
    assert head.headers == {"upgrade": "h2c"}
    assert head.rest == b"PRI * HTTP/2.0"


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"", "closed the connection"),
        (b"SSH-2.0-OpenSSH\r\n\r\n", "invalid status line"),
        (b"HTTP/1.1 101 OK\r\n" + b"X: y\r\n" * 12000, "oversized"),
    ],
)
def test_bad_answers_are_upgrade_errors(answer: bytes, message: str) -> None:
    left, right = socket.socketpair()
    with left, right:
        right.sendall(answer)
        right.shutdown(socket.SHUT_WR)
        with pytest.raises(UpgradeError, match=message):
            read_response_head(left, time.monotonic() + 2)


def _drain(sock: socket.socket, size: int, out: list[bytes]) -> None:
    got = b""
    while len(got) < size:
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    out.append(got)


def test_relay_copies_both_ways_at_once_with_the_first_bytes_ahead() -> None:
    import os
    import threading

    from shipit.adapters.engine.buildkit.transport import Relay

    engine, engine_side = socket.socketpair()
    local, local_side = socket.socketpair()
    # Far more than socket buffers hold, both directions at once: no deadlock, nothing lost.
    up, down = os.urandom(3_000_000), os.urandom(3_000_000)
    relay = Relay(engine_side, local_side, first=b"PREFACE")
    runner = threading.Thread(target=relay.run, daemon=True)
    runner.start()
    at_local: list[bytes] = []
    at_engine: list[bytes] = []
    readers = [
        threading.Thread(target=_drain, args=(local, len(up) + 7, at_local)),
        threading.Thread(target=_drain, args=(engine, len(down), at_engine)),
    ]
    for reader in readers:
        reader.start()
    writers = [
        threading.Thread(target=engine.sendall, args=(up,)),
        threading.Thread(target=local.sendall, args=(down,)),
    ]
    for writer in writers:
        writer.start()
    for thread in writers + readers:
        thread.join(20)
    assert at_local == [b"PREFACE" + up]
    assert at_engine == [down]
    relay.stop()
    runner.join(5)
    assert not runner.is_alive()
    for sock in (engine, engine_side, local, local_side):
        sock.close()


class RelayPair:
    """A relay running between two socket pairs: ``engine`` and ``local`` are the far ends."""

    def __init__(self, before: Callable[[socket.socket], None] | None = None) -> None:
        import threading

        from shipit.adapters.engine.buildkit.transport import Relay

        self.engine, self.engine_side = socket.socketpair()
        self.local, self.local_side = socket.socketpair()
        for sock in (self.engine, self.local):
            sock.settimeout(5)
        if before is not None:
            before(self.engine)
        self.relay = Relay(self.engine_side, self.local_side)
        self.runner = threading.Thread(target=self.relay.run, daemon=True)
        self.runner.start()

    def ended(self) -> bool:
        self.runner.join(5)
        return not self.runner.is_alive()

    def close(self) -> None:
        self.relay.stop()
        self.runner.join(5)
        for sock in (self.engine, self.engine_side, self.local, self.local_side):
            sock.close()


def test_relay_ends_when_a_side_closes() -> None:
    pair = RelayPair()
    pair.engine.close()
    assert pair.ended()
    pair.close()


def _last_words(engine: socket.socket) -> None:
    engine.sendall(b"last words")
    engine.close()


def test_relay_delivers_what_came_before_a_side_closed() -> None:
    """The engine's last bytes before it hangs up (a final gRPC frame) still reach the
    session server: the end of one side is not a reason to drop what it sent."""
    pair = RelayPair(before=_last_words)
    assert pair.ended()
    assert pair.local.recv(100) == b"last words"
    pair.close()


def test_relay_answers_a_thousand_small_round_trips() -> None:
    """File sync is many small packets, each answered: every one is passed on at once."""
    pair = RelayPair()
    for i in range(1000):
        message = f"stat {i:04d}".encode()
        pair.local.sendall(message)
        assert pair.engine.recv(100) == message
        pair.engine.sendall(b"ok")
        assert pair.local.recv(100) == b"ok"
    pair.close()
    assert not pair.runner.is_alive()
