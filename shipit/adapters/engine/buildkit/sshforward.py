"""SSH agent forwarding in a session: ``moby.sshforward.v1.SSH/CheckAgent`` and ``ForwardAgent``.

For ``RUN --mount=type=ssh[,id=ID]`` the engine mounts a socket in the step and streams every
connection made to it through ``ForwardAgent`` (gRPC metadata ``buildkit.ssh.id`` names the
agent; ``default`` when absent). Like BuildKit's own provider (``session/sshforward/
sshprovider``), the agent is read-only for the build: listing keys and signing pass through,
adding, removing, locking and extensions are answered with SSH_AGENT_FAILURE here and never
reach the user's agent.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import struct
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shipit.adapters.engine.buildkit.wire import field_bytes, iter_fields
from shipit.errors import UsageError

if TYPE_CHECKING:
    import grpc

CHECK_AGENT = "/moby.sshforward.v1.SSH/CheckAgent"
FORWARD_AGENT = "/moby.sshforward.v1.SSH/ForwardAgent"
SSH_ID_METADATA = "buildkit.ssh.id"
DEFAULT_ID = "default"

# draft-miller-ssh-agent: requests a build may make; everything else is refused.
SSH_AGENT_FAILURE = 5
SSH_AGENTC_REQUEST_IDENTITIES = 11
SSH_AGENTC_SIGN_REQUEST = 13
ALLOWED_REQUESTS = frozenset({SSH_AGENTC_REQUEST_IDENTITIES, SSH_AGENTC_SIGN_REQUEST})
MAX_AGENT_MESSAGE = 256 * 1024  # OpenSSH's AGENT_MAX_LEN
DIAL_TIMEOUT = 2.0  # BuildKit's unixSocketDialer
AGENT_TIMEOUT = 60.0  # an agent may ask its user to confirm a signature


class SSHSourceError(UsageError):
    """An ``--ssh`` value names no usable agent socket."""


class AgentProtocolError(Exception):
    """The build or the agent broke the agent protocol's framing."""


@dataclass(frozen=True)
class AgentSource:
    """One ``--ssh``: an id and the agent socket serving it."""

    id: str
    path: str

    @classmethod
    def parse(cls, spec: str, environ: Mapping[str, str]) -> AgentSource:
        """Docker's syntax: ``default`` or ``ID`` (the agent at SSH_AUTH_SOCK) or
        ``ID=SOCKET``. Only agent sockets: add a key file to an agent with ``ssh-add``."""
        ssh_id, sep, path = spec.partition("=")
        ssh_id = ssh_id.strip() or DEFAULT_ID
        if "," in path:
            raise SSHSourceError(f"invalid --ssh {spec!r}: one socket per id (ID=SOCKET)")
        if not sep or not path:
            path = environ.get("SSH_AUTH_SOCK", "")
            if not path:
                raise SSHSourceError(
                    f"--ssh {ssh_id}: SSH_AUTH_SOCK is not set",
                    hint="start an agent (eval $(ssh-agent); ssh-add KEY) or give ID=SOCKET",
                )
        source = cls(ssh_id, path)
        source.check()
        return source

    def check(self) -> None:
        try:
            mode = os.stat(self.path).st_mode
        except OSError as exc:
            raise SSHSourceError(
                f"--ssh {self.id}: agent socket {self.path} is not reachable "
                f"({exc.strerror or exc})"
            ) from exc
        if not stat.S_ISSOCK(mode):
            raise SSHSourceError(
                f"--ssh {self.id}: {self.path} is not an agent socket",
                hint="load the key into an agent (ssh-add KEY) and pass its socket",
            )


def read_frame(sock: socket.socket) -> bytes:
    """One agent message (length prefix included) from ``sock``."""
    head = _recv_exact(sock, 4)
    (size,) = struct.unpack(">I", head)
    if size == 0 or size > MAX_AGENT_MESSAGE:
        raise AgentProtocolError(f"agent message of {size} bytes")
    return head + _recv_exact(sock, size)


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    buf = b""
    while len(buf) < size:
        chunk = sock.recv(size - len(buf))
        if not chunk:
            raise AgentProtocolError("the agent closed the connection")
        buf += chunk
    return buf


class Frames:
    """Reassembles length-prefixed agent requests from arbitrarily cut stream chunks."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> Iterator[bytes]:
        self._buf += data
        while len(self._buf) >= 4:
            (size,) = struct.unpack(">I", self._buf[:4])
            if size == 0 or size > MAX_AGENT_MESSAGE:
                raise AgentProtocolError(f"agent request of {size} bytes")
            if len(self._buf) < 4 + size:
                return
            frame, self._buf = self._buf[: 4 + size], self._buf[4 + size :]
            yield frame

    @property
    def pending(self) -> int:
        return len(self._buf)


def failure_frame() -> bytes:
    return struct.pack(">IB", 1, SSH_AGENT_FAILURE)


def answer(agent: socket.socket, frame: bytes) -> bytes:
    """The agent's answer to an allowed request; a failure for any other."""
    if frame[4] not in ALLOWED_REQUESTS:
        return failure_frame()
    agent.sendall(frame)
    return read_frame(agent)


def _message_data(message: bytes) -> bytes:
    """BytesMessage.data (field 1)."""
    for number, _, value in iter_fields(message):
        if number == 1 and isinstance(value, bytes):
            return value
    return b""


def _metadata_id(context: Any) -> str:
    for item in context.invocation_metadata() or ():
        if item.key == SSH_ID_METADATA and item.value:
            return str(item.value)
    return DEFAULT_ID


class SSHProvider:
    """Serves CheckAgent and ForwardAgent from agent sockets, by id."""

    def __init__(self, agents: Mapping[str, str]):
        self._agents = dict(agents)

    @classmethod
    def from_sources(cls, sources: Iterable[AgentSource]) -> SSHProvider:
        agents: dict[str, str] = {}
        for source in sources:
            if source.id in agents:
                raise SSHSourceError(f"--ssh {source.id} is given twice")
            agents[source.id] = source.path
        return cls(agents)

    @property
    def ids(self) -> list[str]:
        return sorted(self._agents)

    def check_agent(self, request: bytes, context: Any) -> bytes:
        import grpc

        ssh_id = DEFAULT_ID
        for number, _, value in iter_fields(request):
            if number == 1 and isinstance(value, bytes) and value:
                ssh_id = value.decode("utf-8", "replace")
        if ssh_id not in self._agents:
            context.abort(grpc.StatusCode.NOT_FOUND, f"unset ssh forward key {ssh_id}")
        return b""  # CheckAgentResponse{}

    def forward_agent(self, requests: Iterator[bytes], context: Any) -> Iterator[bytes]:
        import grpc

        ssh_id = _metadata_id(context)
        path = self._agents.get(ssh_id)
        if path is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"unset ssh forward key {ssh_id}")
        agent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            agent.settimeout(DIAL_TIMEOUT)
            agent.connect(str(path))
        except OSError as exc:
            agent.close()
            context.abort(
                grpc.StatusCode.UNAVAILABLE,
                f"failed to dial agent {ssh_id}: {exc.strerror or exc}",
            )
        agent.settimeout(AGENT_TIMEOUT)
        # A cancelled call (the step ended, the session closed) must not leave a worker
        # blocked on the agent: shutdown wakes it.
        context.add_callback(lambda: _shutdown(agent))
        return self._relay(agent, requests, context)

    def _relay(
        self, agent: socket.socket, requests: Iterator[bytes], context: Any
    ) -> Iterator[bytes]:
        import grpc

        frames = Frames()
        try:
            for message in requests:
                for frame in frames.feed(_message_data(message)):
                    yield field_bytes(1, answer(agent, frame))
        except (AgentProtocolError, OSError) as exc:
            if context.is_active():
                context.abort(grpc.StatusCode.UNAVAILABLE, f"ssh agent: {exc}")
        finally:
            agent.close()

    def handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        import grpc

        return {
            CHECK_AGENT: grpc.unary_unary_rpc_method_handler(self.check_agent),
            FORWARD_AGENT: grpc.stream_stream_rpc_method_handler(self.forward_agent),
        }


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
