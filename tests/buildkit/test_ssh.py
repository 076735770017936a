"""SSH forwarding provider: --ssh parsing, CheckAgent, and the read-only agent relay."""

from __future__ import annotations

import contextlib
import socket
import struct
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from shipit.adapters.engine.buildkit.sshforward import (
    CHECK_AGENT,
    FORWARD_AGENT,
    SSH_AGENT_FAILURE,
    AgentProtocolError,
    AgentSource,
    Frames,
    SSHProvider,
    SSHSourceError,
)
from shipit.adapters.engine.buildkit.wire import field_bytes, field_string, fields
from tests.buildkit.test_auth import Aborted, FakeContext

IDENTITIES_ANSWER = b"\x0c\x00\x00\x00\x00"  # SSH_AGENT_IDENTITIES_ANSWER, zero keys


def frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


class FakeAgent:
    """A unix-socket agent that answers every request with a canned reply, and records them."""

    def __init__(self, path: Path):
        self.path = str(path)
        self.received: list[bytes] = []
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(4)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.listener.accept()
                with conn:
                    while head := conn.recv(4):
                        (size,) = struct.unpack(">I", head)
                        self.received.append(conn.recv(size))
                        conn.sendall(frame(IDENTITIES_ANSWER))

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def agent() -> Iterator[FakeAgent]:
    with tempfile.TemporaryDirectory(prefix="bk-ssh-") as tmp:
        fake = FakeAgent(Path(tmp) / "agent.sock")
        yield fake
        fake.close()


def messages(*chunks: bytes) -> Iterator[bytes]:
    """BytesMessage stream as the engine sends it (chunks cut anywhere)."""
    for chunk in chunks:
        yield field_bytes(1, chunk)


def relay(provider: SSHProvider, *chunks: bytes, ssh_id: str | None = None) -> list[bytes]:
    context = FakeContext({"buildkit.ssh.id": ssh_id} if ssh_id else None)
    answers = provider.forward_agent(messages(*chunks), context)
    return [bytes(fields(answer).get(1, [b""])[0]) for answer in answers]


def test_parse_default_uses_ssh_auth_sock(agent: FakeAgent) -> None:
    assert AgentSource.parse("default", {"SSH_AUTH_SOCK": agent.path}) == AgentSource(
        "default", agent.path
    )
    assert AgentSource.parse("github", {"SSH_AUTH_SOCK": agent.path}).id == "github"
    assert AgentSource.parse(f"work={agent.path}", {}) == AgentSource("work", agent.path)


def test_parse_errors_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(SSHSourceError, match="SSH_AUTH_SOCK is not set"):
        AgentSource.parse("default", {})
    with pytest.raises(SSHSourceError, match="not reachable"):
        AgentSource.parse(f"x={tmp_path / 'missing'}", {})
    key = tmp_path / "id_ed25519"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    with pytest.raises(SSHSourceError, match="not an agent socket") as failure:
        AgentSource.parse(f"x={key}", {})
    assert failure.value.exit_code == 2
    with pytest.raises(SSHSourceError, match="one socket per id"):
        AgentSource.parse(f"x={key},{key}", {})


def test_duplicate_ids_are_refused(agent: FakeAgent) -> None:
    source = AgentSource("default", agent.path)
    with pytest.raises(SSHSourceError, match="given twice"):
        SSHProvider.from_sources([source, source])


def test_check_agent_knows_its_ids(agent: FakeAgent) -> None:
    provider = SSHProvider({"default": agent.path})
    assert provider.check_agent(b"", FakeContext()) == b""  # empty ID means "default"
    with pytest.raises(Aborted) as failure:
        provider.check_agent(field_string(1, "github"), FakeContext())
    assert failure.value.code == grpc.StatusCode.NOT_FOUND
    assert "github" in failure.value.details


def test_listing_keys_passes_through_even_when_cut_mid_frame(agent: FakeAgent) -> None:
    request = frame(b"\x0b")
    answers = relay(SSHProvider({"default": agent.path}), request[:2], request[2:] + request)
    assert answers == [frame(IDENTITIES_ANSWER), frame(IDENTITIES_ANSWER)]
    assert agent.received == [b"\x0b", b"\x0b"]


@pytest.mark.parametrize(
    "payload",
    [
        b"\x11" + b"key-blob",  # ADD_IDENTITY
        b"\x12" + b"key",  # REMOVE_IDENTITY
        b"\x13",  # REMOVE_ALL_IDENTITIES
        b"\x16" + b"pass",  # LOCK
        b"\x1b" + b"ext",  # EXTENSION
    ],
)
def test_changing_the_agent_is_refused_and_never_reaches_it(
    agent: FakeAgent, payload: bytes
) -> None:
    answers = relay(SSHProvider({"default": agent.path}), frame(payload))
    assert answers == [struct.pack(">IB", 1, SSH_AGENT_FAILURE)]
    assert agent.received == []


def test_forward_uses_the_id_from_metadata(agent: FakeAgent) -> None:
    provider = SSHProvider({"work": agent.path})
    assert relay(provider, frame(b"\x0b"), ssh_id="work") == [frame(IDENTITIES_ANSWER)]
    with pytest.raises(Aborted) as failure:
        relay(provider, frame(b"\x0b"))  # no metadata: "default", which is not set
    assert failure.value.code == grpc.StatusCode.NOT_FOUND


def test_unreachable_agent_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(Aborted) as failure:
        relay(SSHProvider({"default": str(tmp_path / "gone.sock")}), frame(b"\x0b"))
    assert failure.value.code == grpc.StatusCode.UNAVAILABLE


def test_oversized_request_is_refused() -> None:
    with pytest.raises(AgentProtocolError):
        list(Frames().feed(struct.pack(">I", 10_000_000)))


def test_cancel_callback_unblocks_the_agent_socket(agent: FakeAgent) -> None:
    context = FakeContext()
    answers = SSHProvider({"default": agent.path}).forward_agent(iter(()), context)
    assert len(context.callbacks) == 1
    context.callbacks[0]()  # the call was cancelled
    assert list(answers) == []


def test_handlers_serve_both_methods() -> None:
    assert set(SSHProvider({}).handlers()) == {CHECK_AGENT, FORWARD_AGENT}
