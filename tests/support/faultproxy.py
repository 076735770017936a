"""An HTTP/1.1 fault-injecting proxy for reliability tests, on loopback only.

It sits in front of a real registry (``upstream`` = ``127.0.0.1:PORT``), parses each request
on a keep-alive client connection and either forwards it untouched (bodies streamed byte for
byte, Content-Length or chunked) or injects a fault. Faults come from a :class:`FaultPlan`: an
ordered list of rules, each matching on method and/or a path regex and firing for its first
``times`` matching requests; after that the traffic passes through::

    plan = FaultPlan().add(status(503), method="POST", path=r"/blobs/uploads/$", times=1)
    with running_registry(tmp) as reg, fault_proxy(reg.address, faults=plan) as proxy:
        docker push f"{proxy.address}/team/app:1"
        assert proxy.faults_injected == 1

The Docker engine trusts ``127.0.0.1:PROXYPORT`` over plain HTTP (after a TLS attempt, which
the proxy answers with a 400 like any plain HTTP server; that attempt is not a request).
Each upstream exchange uses a fresh upstream connection, so a fault never poisons the next one.
"""

from __future__ import annotations

import json
import re
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import BinaryIO

from tests.support.ports import LOOPBACK

MAX_HEAD = 64 * 1024
CHUNK = 64 * 1024

# -- actions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Action:
    """What to do with a matching request. Build with status(), reset(), stall(), ..."""

    kind: str  # "status" | "reset" | "stall" | "garbage" | "drop"
    status: int = 0
    retry_after: int | None = None
    seconds: float | None = None
    variant: str = ""

    def describe(self) -> str:
        if self.kind == "status":
            extra = f" retry-after={self.retry_after}" if self.retry_after is not None else ""
            return f"status {self.status}{extra}"
        if self.kind == "stall":
            return "stall" if self.seconds is None else f"stall {self.seconds:g}s"
        if self.kind == "garbage":
            return f"garbage {self.variant}"
        return self.kind


def status(code: int, retry_after: int | None = None) -> Action:
    """Answer with HTTP ``code`` and a registry-style JSON error body, then close.

    429 carries ``TOOMANYREQUESTS``, 5xx ``UNAVAILABLE``, anything else ``UNKNOWN``. The
    request body is read and discarded first, so the client reads the answer, not a reset.
    """
    return Action("status", status=code, retry_after=retry_after)


def reset() -> Action:
    """Abort the connection with a TCP RST (SO_LINGER 0) right after the request head."""
    return Action("reset")


def stall(seconds: float | None = None) -> Action:
    """Never answer: hold the connection ``seconds`` (None: until the proxy stops), then close."""
    return Action("stall", seconds=seconds)


def garbage(variant: str = "json") -> Action:
    """``"json"``: 200 with a body that is not JSON; ``"bytes"``: non-HTTP bytes. Then close."""
    if variant not in ("json", "bytes"):
        raise ValueError("garbage variant is 'json' or 'bytes'")
    return Action("garbage", variant=variant)


def drop() -> Action:
    """Close the connection cleanly without any answer (the client sees EOF)."""
    return Action("drop")


PASS = "pass"


@dataclass
class FaultRule:
    action: Action
    method: str | None = None
    path: str | None = None  # regex, re.search on the path (query string excluded)
    times: int = 1  # fire for ``times`` matching requests; -1 for always
    skip: int = 0  # let the first ``skip`` matching requests pass before firing
    fired: int = 0
    skipped: int = 0

    def matches(self, method: str, path: str) -> bool:
        """Whether this rule fires for the request (counts skips and firings)."""
        if self.times >= 0 and self.fired >= self.times:
            return False
        if self.method is not None and self.method.upper() != method.upper():
            return False
        if self.path is not None and re.search(self.path, path) is None:
            return False
        if self.skipped < self.skip:
            self.skipped += 1
            return False
        self.fired += 1
        return True


@dataclass
class FaultPlan:
    """Ordered fault rules; the first rule that matches (and has faults left) fires."""

    rules: list[FaultRule] = field(default_factory=list)

    def add(
        self,
        action: Action,
        *,
        method: str | None = None,
        path: str | None = None,
        times: int = 1,
        skip: int = 0,
    ) -> FaultPlan:
        """Append a rule and return the plan (chainable).

        ``method``: exact HTTP method; ``path``: regex searched in the path (no query string);
        ``times``: how many matching requests get the fault (-1: all); ``skip``: how many
        matching requests pass untouched first (e.g. ``skip=1`` hits the second blob upload).
        """
        self.rules.append(FaultRule(action, method=method, path=path, times=times, skip=skip))
        return self

    def take(self, method: str, path: str) -> Action | None:
        """The action for this request (counting it), or None to pass it through."""
        for rule in self.rules:
            if rule.matches(method, path):
                return rule.action
        return None

    @property
    def exhausted(self) -> bool:
        return all(0 <= rule.times <= rule.fired for rule in self.rules)


# -- HTTP plumbing ---------------------------------------------------------------------------


class _BadRequest(Exception):
    pass


class _SinkError(ConnectionError):
    """Writing to the receiving side failed (as opposed to reading from the sending side)."""


def _send(sink: socket.socket, data: bytes) -> None:
    try:
        sink.sendall(data)
    except OSError as exc:
        raise _SinkError(str(exc)) from exc


@dataclass
class _Head:
    start: str  # request line or status line
    headers: list[tuple[str, str]]

    def get(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    def tokens(self, name: str) -> set[str]:
        name = name.lower()
        found: set[str] = set()
        for key, value in self.headers:
            if key.lower() == name:
                found.update(t.strip().lower() for t in value.split(",") if t.strip())
        return found

    def encode(self) -> bytes:
        lines = [self.start, *(f"{k}: {v}" for k, v in self.headers), "", ""]
        return "\r\n".join(lines).encode("latin-1")


def _read_head(reader: BinaryIO) -> _Head | None:
    """Read a head (start line + headers). None on a clean EOF before any byte."""
    line = reader.readline(MAX_HEAD)
    while line in (b"\r\n", b"\n"):  # tolerate stray CRLF between messages
        line = reader.readline(MAX_HEAD)
    if not line:
        return None
    if not line.endswith(b"\n"):
        raise _BadRequest("start line too long or truncated")
    start = line.decode("latin-1").rstrip("\r\n")
    headers: list[tuple[str, str]] = []
    size = len(line)
    while True:
        line = reader.readline(MAX_HEAD)
        size += len(line)
        if not line or size > MAX_HEAD:
            raise _BadRequest("truncated or oversized head")
        if line in (b"\r\n", b"\n"):
            break
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep or not name or name != name.strip():
            raise _BadRequest(f"bad header line {line[:80]!r}")
        headers.append((name, value.strip()))
    return _Head(start, headers)


def _body_framing(head: _Head) -> tuple[str, int]:
    """("chunked", 0) | ("length", n) | ("none", 0) for a request."""
    if "chunked" in head.tokens("Transfer-Encoding"):
        return "chunked", 0
    length = head.get("Content-Length")
    if length is not None:
        try:
            return "length", int(length)
        except ValueError as exc:
            raise _BadRequest(f"bad Content-Length {length!r}") from exc
    return "none", 0


def _copy_exact(reader: BinaryIO, sink: socket.socket | None, count: int) -> None:
    while count > 0:
        data = reader.read(min(CHUNK, count))
        if not data:
            raise ConnectionError("peer closed mid-body")
        if sink is not None:
            _send(sink, data)
        count -= len(data)


def _copy_chunked(reader: BinaryIO, sink: socket.socket | None) -> None:
    """Forward a chunked body verbatim (sizes, extensions, trailers) and stop after it."""
    while True:
        line = reader.readline(MAX_HEAD)
        if not line.endswith(b"\n"):
            raise ConnectionError("peer closed in chunk header")
        if sink is not None:
            _send(sink, line)
        size_text = line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError as exc:
            raise ConnectionError(f"bad chunk size {size_text!r}") from exc
        if size == 0:
            while True:  # trailers, then the empty line
                trailer = reader.readline(MAX_HEAD)
                if not trailer.endswith(b"\n"):
                    raise ConnectionError("peer closed in trailers")
                if sink is not None:
                    _send(sink, trailer)
                if trailer in (b"\r\n", b"\n"):
                    return
        _copy_exact(reader, sink, size + 2)  # data + CRLF


def _copy_until_eof(reader: BinaryIO, sink: socket.socket) -> None:
    while True:
        data = reader.read1(CHUNK)  # type: ignore[attr-defined]
        if not data:
            return
        sink.sendall(data)


def _error_body(code: int) -> bytes:
    if code == 429:
        error = {"code": "TOOMANYREQUESTS", "message": "toomanyrequests: injected by faultproxy"}
    elif code >= 500:
        error = {"code": "UNAVAILABLE", "message": f"service unavailable (injected {code})"}
    else:
        error = {"code": "UNKNOWN", "message": f"injected HTTP {code}"}
    return json.dumps({"errors": [{**error, "detail": None}]}).encode()


_REASONS = {
    400: "Bad Request",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def _simple_response(
    code: int, body: bytes, *, content_type: str = "application/json", extra: str = ""
) -> bytes:
    reason = _REASONS.get(code, "Error")
    head = (
        f"HTTP/1.1 {code} {reason}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Docker-Distribution-Api-Version: registry/2.0\r\n"
        f"{extra}"
        "Connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


# -- the proxy ----------------------------------------------------------------------------


class FaultProxy:
    """Thread-based HTTP/1.1 proxy; see the module docstring. Use :func:`fault_proxy`."""

    def __init__(self, upstream: str, faults: FaultPlan | None = None, host: str = LOOPBACK):
        self.retarget(upstream)
        self.plan = faults if faults is not None else FaultPlan()
        #: When True, every new connection is accepted and closed at once (registry "down").
        self.upstream_down = False
        self.connections = 0  # client connections accepted (keep-alive reuses one)
        self.requests = 0
        self.faults_injected = 0
        self.bad_requests = 0  # non-HTTP input, e.g. the engine's TLS probe
        self.log: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, 0))
        self._listener.listen(64)
        self._listener.settimeout(0.1)
        self.host: str = host
        self.port: int = self._listener.getsockname()[1]
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"faultproxy-{self.port}", daemon=True
        )

    # public API ------------------------------------------------------------------------

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def set_plan(self, plan: FaultPlan) -> None:
        with self._lock:
            self.plan = plan

    def actions(self) -> list[str]:
        """The action of each logged request, in order ("pass", "status 503", ...)."""
        with self._lock:
            return [action for _, _, action in self.log]

    def start(self) -> FaultProxy:
        self._accept_thread.start()
        return self

    def stop(self, timeout: float = 1.0) -> None:
        """Close the listener and every connection; join the threads (bounded by ``timeout``)."""
        self._stopping.set()
        with suppress(OSError):
            self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        if self._accept_thread.is_alive():
            self._accept_thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def alive_threads(self) -> int:
        with self._lock:
            threads = list(self._threads)
        return sum(t.is_alive() for t in threads) + int(self._accept_thread.is_alive())

    # internals -------------------------------------------------------------------------

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)
        if self._stopping.is_set():  # raced with stop(): make sure it does not linger
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _untrack_close(self, sock: socket.socket, *, rst: bool = False) -> None:
        with self._lock:
            self._sockets.discard(sock)
        if rst:
            with suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with suppress(OSError):
            sock.close()

    def retarget(self, upstream: str) -> None:
        """Send the requests that arrive from now on to ``upstream`` (HOST:PORT)."""
        up_host, _, up_port = upstream.rpartition(":")
        if not up_host or not up_port.isdigit():
            raise ValueError(f"upstream must be HOST:PORT, got {upstream!r}")
        self.upstream = upstream
        self._upstream_addr = (up_host, int(up_port))

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            with self._lock:
                self.connections += 1
            if self.upstream_down:
                with self._lock:
                    self.log.append(("-", "-", "upstream-down"))
                self._untrack_close(conn)
                continue
            self._track(conn)
            thread = threading.Thread(
                target=self._serve, args=(conn,), name=f"faultproxy-conn-{self.port}", daemon=True
            )
            with self._lock:
                self._threads = {t for t in self._threads if t.is_alive()}
                self._threads.add(thread)
            thread.start()

    def _record(self, method: str, path: str, action: str, *, fault: bool) -> int:
        """Log one request; returns its index in the log."""
        with self._lock:
            self.log.append((method, path, action))
            if fault:
                self.faults_injected += 1
            return len(self.log) - 1

    def _serve(self, conn: socket.socket) -> None:
        reader: BinaryIO = conn.makefile("rb", buffering=CHUNK)  # type: ignore[assignment]
        rst = False
        try:
            while not self._stopping.is_set():
                keep_going, rst = self._one_exchange(conn, reader)
                if not keep_going:
                    break
        except (OSError, ValueError, IndexError, _BadRequest):
            pass  # the peer went away or spoke nonsense: just drop this connection
        finally:
            with suppress(OSError):
                reader.close()
            self._untrack_close(conn, rst=rst)

    def _one_exchange(self, conn: socket.socket, reader: BinaryIO) -> tuple[bool, bool]:
        """Handle one request. Returns (keep the connection, close it with RST)."""
        first = reader.peek(1)[:1]  # type: ignore[attr-defined]
        if not first:
            return False, False
        if first == b"\x16" or not first.isalpha():  # TLS ClientHello or junk
            with self._lock:
                self.bad_requests += 1
            conn.sendall(_simple_response(400, b"not HTTP", content_type="text/plain"))
            return False, False
        try:
            head = _read_head(reader)
        except _BadRequest:
            with self._lock:
                self.bad_requests += 1
            conn.sendall(_simple_response(400, b"bad request", content_type="text/plain"))
            return False, False
        if head is None:
            return False, False
        parts = head.start.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            with self._lock:
                self.bad_requests += 1
            conn.sendall(_simple_response(400, b"bad request line", content_type="text/plain"))
            return False, False
        method, target, version = parts
        path = target.split("?", 1)[0]
        with self._lock:
            self.requests += 1
            action = self.plan.take(method, path)
        framing, length = _body_framing(head)
        expects_continue = "100-continue" in head.tokens("Expect")

        if action is not None:
            self._record(method, path, action.describe(), fault=True)
            return self._inject(conn, reader, action, framing, length, expects_continue)

        entry = self._record(method, path, PASS, fault=False)
        client_close = "close" in head.tokens("Connection") or (
            version == "HTTP/1.0" and "keep-alive" not in head.tokens("Connection")
        )
        keep = self._forward(conn, reader, head, method, framing, length, expects_continue, entry)
        return keep and not client_close, False

    @staticmethod
    def _discard_body(reader: BinaryIO, framing: str, length: int, expects: bool) -> None:
        if expects:
            return  # the client waits for 100 Continue; an early final answer means "no body"
        if framing == "length":
            _copy_exact(reader, None, length)
        elif framing == "chunked":
            _copy_chunked(reader, None)

    def _inject(
        self,
        conn: socket.socket,
        reader: BinaryIO,
        action: Action,
        framing: str,
        length: int,
        expects: bool,
    ) -> tuple[bool, bool]:
        if action.kind == "reset":
            return False, True
        if action.kind == "drop":
            return False, False
        if action.kind == "stall":
            self._stopping.wait(action.seconds)
            return False, False
        self._discard_body(reader, framing, length, expects)
        if action.kind == "status":
            extra = (
                f"Retry-After: {action.retry_after}\r\n" if action.retry_after is not None else ""
            )
            conn.sendall(_simple_response(action.status, _error_body(action.status), extra=extra))
        elif action.variant == "bytes":
            conn.sendall(b"\x00\xffTHIS IS NOT HTTP\x00\r\n\r\n")
        else:
            body = b'{"errors": [ !!! not json'
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
        with suppress(OSError):
            conn.shutdown(socket.SHUT_WR)
        return False, False

    def _rewrite_location(self, value: str) -> str:
        host, port = self._upstream_addr
        for scheme in ("http", "https"):
            for name in {host, "localhost", "127.0.0.1"}:
                prefix = f"{scheme}://{name}:{port}"
                if value.startswith(prefix):
                    return f"http://{self.address}{value[len(prefix) :]}"
        return value

    def _forward(
        self,
        conn: socket.socket,
        reader: BinaryIO,
        head: _Head,
        method: str,
        framing: str,
        length: int,
        expects: bool,
        entry: int,
    ) -> bool:
        """Forward one request and its response. Returns whether to keep the client connection.

        ``entry`` is the request's index in the log, rewritten if the upstream is unreachable.
        """
        try:
            upstream = socket.create_connection(self._upstream_addr, timeout=10)
        except OSError:
            # Log before answering: a client that has its answer may read the log at once.
            with self._lock:
                self.log[entry] = (method, self.log[entry][1], "upstream-error")
            self._discard_body(reader, framing, length, expects)
            conn.sendall(_simple_response(502, _error_body(502)))
            return False
        upstream.settimeout(None)
        self._track(upstream)
        up_reader: BinaryIO = upstream.makefile("rb", buffering=CHUNK)  # type: ignore[assignment]
        try:
            if expects:
                head.headers = [(k, v) for k, v in head.headers if k.lower() != "expect"]
            upstream.sendall(head.encode())
            if expects:
                conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            keep = True
            try:
                if framing == "length":
                    _copy_exact(reader, upstream, length)
                elif framing == "chunked":
                    _copy_chunked(reader, upstream)
            except _SinkError:
                # Upstream answered early and closed: relay its answer, then close the client
                # connection (the rest of the request body is still unread on it).
                keep = False
            while True:
                response = _read_head(up_reader)
                if response is None:
                    raise ConnectionError("upstream closed without answering")
                code = int(response.start.split(" ", 2)[1])
                response.headers = [
                    (k, self._rewrite_location(v) if k.lower() == "location" else v)
                    for k, v in response.headers
                ]
                conn.sendall(response.encode())
                if 100 <= code < 200:
                    continue  # interim answer; the final one follows
                break
            if "close" in response.tokens("Connection"):
                keep = False
            if method == "HEAD" or code in (204, 304):
                pass
            elif "chunked" in response.tokens("Transfer-Encoding"):
                _copy_chunked(up_reader, conn)
            elif response.get("Content-Length") is not None:
                _copy_exact(up_reader, conn, int(response.get("Content-Length") or 0))
            else:
                _copy_until_eof(up_reader, conn)
                keep = False
            return keep
        finally:
            with suppress(OSError):
                up_reader.close()
            self._untrack_close(upstream)


@contextmanager
def fault_proxy(
    upstream: str, *, faults: FaultPlan | None = None, host: str = LOOPBACK
) -> Iterator[FaultProxy]:
    """Run a :class:`FaultProxy` on ``host``:free port in front of ``upstream`` (HOST:PORT)."""
    if host not in (LOOPBACK, "localhost"):
        raise ValueError("the fault proxy listens on loopback only")
    proxy = FaultProxy(upstream, faults, host=host).start()
    try:
        yield proxy
    finally:
        proxy.stop()
