"""The Engine API's BuildKit endpoints over docker-py's plumbing: ``/build?version=2`` and the
raw HTTP upgrade that ``/session`` needs.

docker-py has no BuildKit support, but its ``APIClient`` carries both requests: ``_post`` /
``_url`` / ``_stream_helper`` for the build (so its read timeout, shipit's stall timeout, holds
for every chunk), and its connection pools for a socket of our own on which the session request
is written by hand, because the engine reads one ``X-Docker-Expose-Session-Grpc-Method`` header
per method and ``requests`` cannot send a header name twice.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any
from urllib.parse import urlsplit

from shipit.adapters.engine.request_limits import check_build_query
from shipit.errors import EngineUnavailableError

MAX_RESPONSE_HEAD = 64 * 1024
MAX_ERROR_BODY = 16 * 1024


class UpgradeError(EngineUnavailableError):
    """The engine did not switch protocols for a hijacked request (``/session``)."""

    def __init__(self, message: str, *, status: int | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.status = status


# ---------------------------------------------------------------- the raw upgrade


def open_engine_socket(api: Any, path: str, timeout: float | None) -> tuple[socket.socket, str]:
    """A new connected socket to the engine ``api`` talks to (unix, TCP, TLS or ssh), and the
    Host header docker-py would send. The socket belongs to the caller and is not pooled."""
    url = api._url(path)
    adapter = api.get_adapter(url)
    if hasattr(adapter, "pools"):  # docker-py's own unix / npipe / ssh adapters
        pool = adapter.get_connection(url)
    else:  # requests' HTTPAdapter, or docker-py's SSLHTTPAdapter for TLS
        pool = adapter.poolmanager.connection_from_url(url)
        if url.startswith("https://"):
            # The CA and client certificate requests would use for this URL (docker-py keeps
            # them on the session; requests applies them to the pool per request).
            settings = api.merge_environment_settings(url, {}, False, None, None)
            adapter.cert_verify(pool, url, settings["verify"], settings["cert"])
    conn = pool._new_conn()
    conn.timeout = timeout
    try:
        conn.connect()
    except OSError as exc:
        raise EngineUnavailableError(
            f"cannot reach the Docker engine at {api.base_url}: {exc.strerror or exc}",
            hint="start Docker (or dockerd), or point DOCKER_HOST at a running engine",
        ) from exc
    sock: socket.socket = conn.sock
    sock.settimeout(timeout)
    return sock, urlsplit(url).netloc or "localhost"


def check_header(name: str, value: str) -> None:
    """Refuse a header that would break (or smuggle into) the request."""
    for text in (name, value):
        if any(ch in text for ch in "\r\n\0"):
            raise ValueError(f"header {name!r} holds a line break or NUL")
    if not name or any(ch in name for ch in " :\t"):
        raise ValueError(f"invalid header name {name!r}")


def upgrade_request(
    path: str, host: str, headers: Sequence[tuple[str, str]], user_agent: str = ""
) -> bytes:
    """An HTTP/1.1 POST asking to switch protocols; every (name, value) pair is its own line,
    so one name may appear several times."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}"]
    if user_agent:
        lines.append(f"User-Agent: {user_agent}")
    lines.append("Content-Length: 0")
    for name, value in headers:
        check_header(name, value)
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@dataclass
class UpgradeResponse:
    """The engine's answer head; ``rest`` holds bytes that came after it (the new protocol's
    first bytes, e.g. the HTTP/2 client preface) and must be consumed before the socket."""

    status: int
    reason: str
    headers: dict[str, str] = field(default_factory=dict)
    rest: bytes = b""


def read_response_head(sock: socket.socket, deadline: float) -> UpgradeResponse:
    """Read the status line and headers (bounded in size and time)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise UpgradeError("the Docker engine did not answer the session request in time")
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(4096)
        except TimeoutError as exc:
            raise UpgradeError(
                "the Docker engine did not answer the session request in time"
            ) from exc
        if not chunk:
            raise UpgradeError("the Docker engine closed the connection before answering")
        buf += chunk
        if len(buf) > MAX_RESPONSE_HEAD:
            raise UpgradeError("the Docker engine sent an oversized response head")
    head, _, rest = buf.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise UpgradeError(f"the Docker engine sent an invalid status line: {status_line[:80]!r}")
    headers: dict[str, str] = {}
    for line in header_lines:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return UpgradeResponse(int(parts[1]), parts[2] if len(parts) > 2 else "", headers, rest)


def _error_message(sock: socket.socket, response: UpgradeResponse, deadline: float) -> str:
    """The engine's ``{"message": ...}`` from a refused upgrade, best effort."""
    body = response.rest
    length = int(response.headers.get("content-length", "0") or 0)
    want = min(length, MAX_ERROR_BODY)
    try:
        while len(body) < want and time.monotonic() < deadline:
            sock.settimeout(max(deadline - time.monotonic(), 0.01))
            chunk = sock.recv(4096)
            if not chunk:
                break
            body += chunk
    except OSError:
        pass
    text = body[:MAX_ERROR_BODY].decode("utf-8", "replace").strip()
    try:
        message = json.loads(text).get("message")
    except (ValueError, AttributeError):
        message = None
    text = str(message or text)
    return text.splitlines()[0] if text else response.reason


def upgrade(
    api: Any,
    path: str,
    headers: Sequence[tuple[str, str]],
    *,
    timeout: float,
) -> tuple[socket.socket, bytes]:
    """POST ``path`` with ``headers`` on a fresh engine socket and expect 101 Switching
    Protocols. Returns the hijacked socket (blocking, no timeout) and the bytes already read
    past the response head. Raises UpgradeError (the socket closed) otherwise."""
    sock, host = open_engine_socket(api, path, timeout)
    deadline = time.monotonic() + timeout
    try:
        request = upgrade_request(
            urlsplit(api._url(path)).path,
            host,
            headers,
            str(api.headers.get("User-Agent", "")),
        )
        sock.sendall(request)
        response = read_response_head(sock, deadline)
        if response.status != 101:
            message = _error_message(sock, response, deadline)
            raise UpgradeError(
                f"the Docker engine refused {path} (HTTP {response.status})"
                + (f": {message}" if message else ""),
                status=response.status,
            )
    except BaseException:
        sock.close()
        raise
    sock.settimeout(None)
    return sock, response.rest


# ---------------------------------------------------------------- /build?version=2


Body = bytes | IO[bytes] | Iterable[bytes] | None


@dataclass(frozen=True, kw_only=True)
class BuildRequest:
    """The query of ``POST /build?version=2`` (moby ``api/server/router/build/build_routes.go``).

    ``buildargs`` values of None are sent as JSON null (an ARG mentioned without a value).
    ``outputs`` is the engine's ``[{"Type": ..., "Attrs": {...}}]`` list. ``remote`` is
    ``"client-session"`` when the context comes through the session's file sync instead of
    the body. ``extra`` holds any other query parameter as the engine spells it.
    """

    tags: Sequence[str] = ()
    dockerfile: str | None = None
    buildargs: Mapping[str, str | None] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    target: str | None = None
    nocache: bool = False
    pull: bool = False
    platform: str | None = None
    networkmode: str | None = None
    cachefrom: Sequence[str] = ()
    outputs: Sequence[Mapping[str, Any]] = ()
    session_id: str | None = None
    remote: str | None = None
    build_id: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)

    def params(self) -> dict[str, Any]:
        """The query parameters, in the engine's spelling (lists repeat the key)."""
        params: dict[str, Any] = {"version": "2"}
        if self.tags:
            params["t"] = list(self.tags)
        optional = {
            "dockerfile": self.dockerfile,
            "target": self.target,
            "platform": self.platform,
            "networkmode": self.networkmode,
            "session": self.session_id,
            "remote": self.remote,
            "buildid": self.build_id,
        }
        params.update({k: v for k, v in optional.items() if v})
        if self.nocache:
            params["nocache"] = "1"
        if self.pull:
            params["pull"] = "1"
        if self.buildargs:
            params["buildargs"] = json.dumps(dict(self.buildargs))
        if self.labels:
            params["labels"] = json.dumps(dict(self.labels))
        if self.cachefrom:
            params["cachefrom"] = json.dumps(list(self.cachefrom))
        if self.outputs:
            params["outputs"] = json.dumps([dict(o) for o in self.outputs])
        params.update(self.extra)
        return params


def post_build(api: Any, request: BuildRequest, context: Body) -> Iterator[dict[str, Any]]:
    """Start a BuildKit build and yield the engine's decoded JSON chunks as they arrive.

    ``context`` is the build context as a tar (GNU format, not PAX: the engine reads a PAX
    archive as a Dockerfile), a file object or an iterable of chunks; None with
    ``remote="client-session"``. The request and every read honour ``api.timeout`` (the
    stall timeout). docker-py's errors (``APIError``, ``requests``/``urllib3`` timeouts and
    connection errors) propagate: the engine adapter turns them into shipit errors. A failed
    build is a chunk with ``errorDetail`` in an HTTP 200 stream: read the stream to its end.
    """
    check_build_query(request.buildargs, request.labels)  # they travel in the URL
    headers = {"Content-Type": "application/x-tar"}
    response = api._post(
        api._url("/build"),
        data=context if context is not None else b"",
        params=request.params(),
        headers=headers,
        stream=True,
    )
    api._raise_for_status(response)
    yield from api._stream_helper(response, decode=True)


def cancel_build(api: Any, build_id: str) -> None:
    """Ask the engine to stop a running build started with ``build_id`` (``POST /build/cancel``)."""
    response = api._post(api._url("/build/cancel"), params={"id": build_id})
    api._raise_for_status(response)


# ---------------------------------------------------------------- the byte relay


class Relay:
    """Copies bytes both ways between two connected sockets in ONE thread, until either side
    ends or :meth:`stop` is called.

    One thread, with non-blocking sockets and a selector, because a TLS socket (an engine
    reached with DOCKER_TLS_VERIFY) must not be read and written from two threads at once:
    OpenSSL does not allow concurrent use of one connection. ``first`` is written to ``b``
    before anything else (bytes read past the 101 response head).

    What is read is written on at once; a side is watched for writability only while bytes
    wait for it.
    """

    CHUNK = 64 * 1024
    HIGH_WATER = 1024 * 1024  # stop reading a side while this much waits for the other

    def __init__(self, a: socket.socket, b: socket.socket, *, first: bytes = b""):
        self.a, self.b = a, b
        self._peer = {a: b, b: a}
        self._out: dict[socket.socket, bytearray] = {a: bytearray(), b: bytearray(first)}
        self._retry_read: set[socket.socket] = set()
        self._wake_r, self._wake_w = socket.socketpair()

    def stop(self) -> None:
        """Make :meth:`run` return soon (from any thread); idempotent."""
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def run(self) -> None:
        """Relay until a side closes, fails, or stop() is called."""
        import selectors

        selector = selectors.DefaultSelector()
        for sock in (self.a, self.b):
            sock.setblocking(False)
        selector.register(self._wake_r, selectors.EVENT_READ)
        try:
            self._write(self.b)
            while True:
                self._update_interest(selector)
                for key, mask in selector.select():
                    if key.fileobj is self._wake_r:
                        return
                    ready = key.fileobj
                    assert isinstance(ready, socket.socket)
                    if not self._service(ready, mask):
                        return
        except OSError:
            return
        finally:
            selector.close()
            self._wake_r.close()
            self._wake_w.close()

    def _update_interest(self, selector: Any) -> None:
        import selectors

        for sock in (self.a, self.b):
            events = 0
            if len(self._out[self._peer[sock]]) < self.HIGH_WATER:
                events |= selectors.EVENT_READ
            if self._out[sock] or sock in self._retry_read:
                events |= selectors.EVENT_WRITE
            try:
                key = selector.get_key(sock)
            except KeyError:
                key = None
            if key is None and events:
                selector.register(sock, events)
            elif key is not None and not events:
                selector.unregister(sock)
            elif key is not None and key.events != events:
                selector.modify(sock, events)

    def _service(self, sock: socket.socket, mask: int) -> bool:
        import selectors

        if mask & selectors.EVENT_WRITE:
            if sock in self._retry_read:
                self._retry_read.discard(sock)
                if not self._read(sock):
                    return False
            if not self._write(sock):
                return False
        return not (mask & selectors.EVENT_READ) or self._read(sock)

    def _read(self, sock: socket.socket) -> bool:
        """Read what is there and pass it on; False at the end of the stream."""
        import ssl

        peer = self._peer[sock]
        buf = self._out[peer]
        pending = getattr(sock, "pending", None)
        while len(buf) < self.HIGH_WATER or (pending is not None and pending()):
            try:
                data = sock.recv(self.CHUNK)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
                break
            except ssl.SSLWantWriteError:  # TLS needs to write first: retry when writable
                self._retry_read.add(sock)
                break
            if not data:
                self._write(peer)  # what came before the end still goes on
                return False
            buf += data
            if pending is None and len(data) < self.CHUNK:
                break  # a short read drained the socket; the selector tells when there is more
        return self._write(peer)

    def _write(self, sock: socket.socket) -> bool:
        import ssl

        buf = self._out[sock]
        while buf:
            try:
                sent = sock.send(buf)
            except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                return True
            del buf[:sent]
        return True
