"""Loopback port helpers for the test support processes."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port that is free on ``host`` right now.

    The kernel picks the port; there is a small window in which another process could take
    it, so callers that start a server on it should retry with a new port on "address in use".
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """True when a listener could bind ``host:port`` now (needs root for ports below 1024)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


@contextlib.contextmanager
def held_closed_port(port: int = 0, host: str = LOOPBACK) -> Iterator[int | None]:
    """Bind ``host:port`` without listening, so connecting to it is refused for as long as
    this context holds it and no other process can start listening there.

    Yields the bound port, or None when ``port`` could not be bound (someone holds it).
    ``port=0`` holds a port the kernel picks.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        try:
            sock.bind((host, port))  # no SO_REUSEADDR: no other socket may bind it meanwhile
        except OSError:
            yield None
            return
        bound: int = sock.getsockname()[1]
        yield bound
    finally:
        sock.close()


def port_accepts(port: int, host: str = LOOPBACK, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def wait_for_port(port: int, host: str = LOOPBACK, timeout: float = 10.0) -> bool:
    """Poll until ``host:port`` accepts connections or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_accepts(port, host):
            return True
        time.sleep(0.05)
    return False
