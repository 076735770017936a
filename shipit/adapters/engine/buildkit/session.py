"""A BuildKit build session: the engine calls back into shipit over gRPC for what it needs.

``POST /session`` with ``Upgrade: h2c`` turns an engine connection around: after the 101 the
engine is the gRPC client and shipit the server (moby/buildkit ``session/session.go``,
``session/manager.go``). Providers (secrets, SSH agents, registry credentials, file sync) each
serve a few methods; the session advertises every method in its own
``X-Docker-Expose-Session-Grpc-Method`` header (the engine reads them as a list) and serves them
from a grpcio server on a private unix socket, bridged byte for byte to the hijacked connection.

grpcio is imported only when a session opens: never at CLI start-up.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import socket
import tempfile
import threading
import uuid
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from shipit.adapters.engine.buildkit import transport
from shipit.adapters.engine.buildkit.wire import field_varint

if TYPE_CHECKING:
    import grpc

log = logging.getLogger(__name__)

HEADER_ID = "X-Docker-Expose-Session-Uuid"
HEADER_NAME = "X-Docker-Expose-Session-Name"
HEADER_SHARED_KEY = "X-Docker-Expose-Session-Sharedkey"
HEADER_METHOD = "X-Docker-Expose-Session-Grpc-Method"

HEALTH_CHECK = "/grpc.health.v1.Health/Check"
SERVING = 1  # grpc.health.v1.HealthCheckResponse.ServingStatus.SERVING

# BuildKit's gRPC client allows 16 MiB messages (containerd defaults.DefaultMaxRecvMsgSize).
MAX_MESSAGE = 16 * 1024 * 1024
OPEN_TIMEOUT = 30.0
CLOSE_TIMEOUT = 5.0


class Provider(Protocol):
    """Anything that serves gRPC methods in a session.

    ``handlers()`` maps each full method path (``"/moby.filesync.v1.FileSync/DiffCopy"``) to a
    ``grpc.RpcMethodHandler`` built with raw-bytes serializers (pass no
    ``request_deserializer``/``response_serializer``: requests and responses are ``bytes``,
    encoded with ``wire``). Metadata (``context.invocation_metadata()``) and status codes
    (``context.abort(grpc.StatusCode.NOT_FOUND, ...)``) work as in any grpcio handler.
    """

    def handlers(self) -> Mapping[str, grpc.RpcMethodHandler]: ...


class SessionError(transport.UpgradeError):
    """A build session could not be opened on the engine."""


def health_response() -> bytes:
    """grpc.health.v1.HealthCheckResponse{status: SERVING}."""
    return field_varint(1, SERVING)


def collect_handlers(
    providers: Iterable[Provider], health: Any = None
) -> dict[str, grpc.RpcMethodHandler]:
    """Every provider's handlers plus Health/Check (``health(request, context)``, by default
    a plain SERVING answer); a method served twice is a bug."""
    import grpc

    check = health or (lambda _request, _context: health_response())
    handlers: dict[str, grpc.RpcMethodHandler] = {
        HEALTH_CHECK: grpc.unary_unary_rpc_method_handler(check)
    }
    for provider in providers:
        for method, handler in provider.handlers().items():
            if not method.startswith("/") or method.count("/") != 2:
                raise ValueError(f"not a full gRPC method path: {method!r}")
            if method in handlers:
                raise ValueError(f"two providers serve {method}")
            handlers[method] = handler
    return handlers


class MethodRouter:
    """A grpcio generic handler: one table lookup per call (unknown -> UNIMPLEMENTED)."""

    def __init__(self, handlers: Mapping[str, Any]):
        self._handlers = dict(handlers)

    def service(self, details: Any) -> Any:
        method = details.method
        if isinstance(method, bytes):
            method = method.decode()
        return self._handlers.get(method)


def shared_key(context_dir: str, node_id: str) -> str:
    """The docker CLI's session shared key for a build context (``getBuildSharedKey``):
    hex sha256 of ``NODE_ID:DIR``. With the same key and session name (the directory's base
    name) the engine reuses what it synced from that directory before. ``node_id`` is a random
    id kept once per machine (docker keeps its own in ``~/.docker/.buildNodeID``)."""
    return hashlib.sha256(f"{node_id}:{context_dir}".encode()).hexdigest()


def session_headers(
    session_id: str, name: str, shared_key: str, methods: Iterable[str]
) -> list[tuple[str, str]]:
    """The upgrade request's headers, one ``...-Grpc-Method`` line per method."""
    headers = [
        ("Connection", "Upgrade"),
        ("Upgrade", "h2c"),
        (HEADER_ID, session_id),
        (HEADER_NAME, name),
        (HEADER_SHARED_KEY, shared_key),
    ]
    headers += [(HEADER_METHOD, method) for method in methods]
    return headers


class Session:
    """One build session on the engine ``api`` (a docker-py ``APIClient``) serving ``providers``.

    Use as a context manager, pass ``session.id`` to the build (``session=ID``), and close it
    after the build stream ended. ``name`` and ``shared_key`` are what the docker CLI sends
    (the context directory's base name, and :func:`shared_key`). Closing never blocks for
    more than ``close_timeout`` per step; provider handlers must end when their call is
    cancelled (``context.add_callback``, ``context.is_active()``), as closing cancels them.
    ``alive`` turns False when the engine drops the session (e.g. its health check failed).
    """

    def __init__(
        self,
        api: Any,
        providers: Iterable[Provider] = (),
        *,
        name: str = "shipit",
        shared_key: str = "",
        session_id: str | None = None,
        open_timeout: float = OPEN_TIMEOUT,
        close_timeout: float = CLOSE_TIMEOUT,
        max_workers: int = 16,
    ):
        self.api = api
        self.providers = list(providers)
        self.name = name
        self.shared_key = shared_key
        self.id = session_id or uuid.uuid4().hex
        self.open_timeout = open_timeout
        self.close_timeout = close_timeout
        self.max_workers = max_workers
        self.methods: list[str] = []
        # Health checks answered: the engine sends one every 5 s and drops the session after
        # two failures, so a long build shows this growing.
        self.health_checks = 0
        self._server: Any = None
        self._executor: Any = None
        self._tmpdir: str | None = None
        self._engine_sock: socket.socket | None = None
        self._local_sock: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._relay: transport.Relay | None = None
        self._ended = threading.Event()
        self._lock = threading.Lock()
        self._opened = False
        self._closed = False

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> Session:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def alive(self) -> bool:
        """True while the engine connection is up."""
        return self._opened and not self._ended.is_set()

    def open(self) -> Session:
        """Start the local server, ask the engine for the session and bridge the two."""
        if self._opened or self._closed:
            raise RuntimeError("a Session opens once")
        self._opened = True
        handlers = collect_handlers(self.providers, self._health)
        self.methods = sorted(handlers)
        try:
            address = self._start_server(handlers)
            headers = session_headers(self.id, self.name, self.shared_key, self.methods)
            try:
                engine_sock, early = transport.upgrade(
                    self.api, "/session", headers, timeout=self.open_timeout
                )
            except transport.UpgradeError as exc:
                old_engine = exc.status == 404
                raise SessionError(
                    f"cannot open a build session: {exc.message}",
                    status=exc.status,
                    hint="BuildKit sessions need Docker Engine 18.09 or later (API 1.39)"
                    if old_engine
                    else None,
                ) from exc
            self._engine_sock = engine_sock
            self._bridge(address, early)
        except BaseException:
            self.close()
            raise
        log.debug("session %s open, serving %s", self.id, ", ".join(self.methods))
        return self

    def close(self) -> None:
        """Stop the bridge and the server; idempotent, bounded by ``close_timeout``."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._ended.set()
        if self._relay is not None:
            self._relay.stop()
        for sock in (self._engine_sock, self._local_sock):
            _shutdown(sock)
        for thread in self._threads:
            thread.join(self.close_timeout)
        if self._server is not None:
            self._server.stop(grace=None).wait(self.close_timeout)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        for sock in (self._engine_sock, self._local_sock):
            if sock is not None:
                sock.close()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
        log.debug("session %s closed", self.id)

    def wait_ended(self, timeout: float | None = None) -> bool:
        """Block until the engine side of the session ends (or ``timeout``); True if it ended."""
        return self._ended.wait(timeout)

    # ------------------------------------------------------------ internals

    def _health(self, _request: bytes, _context: Any) -> bytes:
        self.health_checks += 1
        return health_response()

    def _start_server(self, handlers: Mapping[str, Any]) -> str:
        """A grpcio server on a unix socket in a private directory: unlike a loopback port,
        no other local user can connect to it and ask for the secrets."""
        import concurrent.futures

        import grpc

        self._tmpdir = tempfile.mkdtemp(prefix="shipit-session-")
        os.chmod(self._tmpdir, 0o700)
        address = os.path.join(self._tmpdir, "grpc.sock")
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.max_workers, thread_name_prefix="shipit-session"
        )
        self._server = grpc.server(
            self._executor,
            handlers=[MethodRouter(handlers)],
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE),
                ("grpc.max_send_message_length", MAX_MESSAGE),
            ],
        )
        if not self._server.add_insecure_port(f"unix:{address}"):
            raise SessionError(f"cannot listen on {address} for the build session")
        self._server.start()
        return address

    def _bridge(self, address: str, early: bytes) -> None:
        """Connect to the local server and relay bytes both ways in one thread; bytes the
        engine sent with its 101 (the HTTP/2 preface, often) go first."""
        assert self._engine_sock is not None
        local = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        local.settimeout(self.open_timeout)
        local.connect(address)
        self._local_sock = local
        self._relay = transport.Relay(self._engine_sock, local, first=early)
        thread = threading.Thread(target=self._run_relay, name="shipit-session-relay", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _run_relay(self) -> None:
        assert self._relay is not None
        try:
            self._relay.run()
        finally:
            self._ended.set()
            _shutdown(self._engine_sock)
            _shutdown(self._local_sock)


def _shutdown(sock: socket.socket | None) -> None:
    """Wake any thread blocked on ``sock`` (shutdown, unlike close, interrupts a recv)."""
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
