"""Pieces for registry-trust tests: a private CA, a non-loopback address, a recording proxy.

- `make_pki(dir, ips)`: a CA, a server certificate for 127.0.0.1/localhost and `ips`, and a
  client certificate, all made with openssl (EC keys: fast).
- `dummy_address()`: a /32 address on a dummy interface of its own (root only), removed after.
- `recording_proxy()`: an HTTP proxy on loopback that serves CONNECT tunnels and plain
  forwarding and records every request line it gets.
- `running_tls_registry(...)`: docker-registry over TLS, optionally requiring client
  certificates (`http.tls.clientcas`), which tests/support/registry.py does not configure.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import secrets
import shutil
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import die_with_parent
from tests.support.ports import LOOPBACK, free_port, wait_for_port


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _signed(directory: Path, name: str, extensions: str) -> None:
    key_args = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", *key_args, "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", f"/CN=shipit test {name}", cwd=directory)  # fmt: skip
    (directory / f"{name}.ext").write_text(extensions)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", f"{name}.pem", "-days", "2",
             "-extfile", f"{name}.ext", cwd=directory)  # fmt: skip


def make_pki(directory: Path, ips: tuple[str, ...] = ()) -> Pki:
    """A private CA with a server certificate (127.0.0.1, localhost, `ips`) and a client one."""
    directory.mkdir(parents=True, exist_ok=True)
    key_args = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *key_args, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=shipit test CA", cwd=directory)  # fmt: skip
    names = ",".join(["IP:127.0.0.1", "DNS:localhost", *(f"IP:{ip}" for ip in ips)])
    _signed(directory, "server", f"subjectAltName={names}\nextendedKeyUsage=serverAuth\n")
    _signed(directory, "client", "extendedKeyUsage=clientAuth\n")
    return Pki(
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
    )


def can_make_interfaces() -> str | None:
    """None when this process may create a dummy interface, else why not."""
    if os.geteuid() != 0:
        return "creating a dummy network interface needs root (CI runs as root)"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is missing"
    return None


@contextmanager
def dummy_address() -> Iterator[str]:
    """A non-loopback IPv4 address (10.213.X.1/32) on an interface made for the block.

    A dummy interface where the kernel has the module, else one end of a veth pair (both ends
    stay in this namespace: the address is local, like a dummy's).
    """
    name = f"shp{uuid.uuid4().hex[:8]}"
    address = f"10.213.{random.randint(1, 254)}.1"

    def ip(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["ip", *args], capture_output=True, timeout=30, check=False)

    try:
        if ip("link", "add", name, "type", "dummy").returncode != 0:
            made = ip("link", "add", name, "type", "veth", "peer", "name", f"{name}p")
            if made.returncode != 0:
                raise RuntimeError(f"cannot create an interface: {made.stderr.decode()}")
            ip("link", "set", f"{name}p", "up")
        for args in (("addr", "add", f"{address}/32", "dev", name), ("link", "set", name, "up")):
            done = ip(*args)
            if done.returncode != 0:
                raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.decode()}")
        yield address
    finally:
        ip("link", "del", name)


@dataclass
class RecordingProxy:
    """An HTTP proxy (CONNECT and absolute-URI forwarding) that records each request line."""

    port: int = 0
    requests: list[str] = field(default_factory=list)
    _sock: socket.socket | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def serve(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError, ValueError), conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            raw_head, _, leftover = data.partition(b"\r\n\r\n")
            head = raw_head.decode("latin-1").split("\r\n")
            method, target, version = head[0].split(" ")
            self.requests.append(f"{method} {target}")
            if method == "CONNECT":
                host, _, port = target.rpartition(":")
                upstream = socket.create_connection((host, int(port)), timeout=10)
                conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                hostport, _, path = target.split("://", 1)[1].partition("/")
                host, _, port = hostport.rpartition(":")
                upstream = socket.create_connection((host, int(port or 80)), timeout=10)
                headers = [
                    h for h in head[1:] if not h.lower().startswith(("connection", "proxy-"))
                ]
                lines = [f"{method} /{path} {version}", *headers, "Connection: close", "", ""]
                upstream.sendall("\r\n".join(lines).encode("latin-1"))
            if leftover:
                upstream.sendall(leftover)
            _relay(conn, upstream)

    def stop(self) -> None:
        self._stop.set()
        if self._sock is not None:
            self._sock.close()


def _relay(a: socket.socket, b: socket.socket) -> None:
    def pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    other = threading.Thread(target=pump, args=(b, a), daemon=True)
    other.start()
    pump(a, b)
    other.join(30)
    b.close()


@contextmanager
def recording_proxy() -> Iterator[RecordingProxy]:
    proxy = RecordingProxy()
    proxy._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    proxy._sock.bind((LOOPBACK, 0))
    proxy._sock.listen(16)
    proxy._sock.settimeout(0.1)
    proxy.port = proxy._sock.getsockname()[1]
    thread = threading.Thread(target=proxy.serve, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.stop()
        thread.join(5)


@contextmanager
def running_tls_registry(
    directory: Path, pki: Pki, *, host: str = LOOPBACK, client_certs: bool = False
) -> Iterator[str]:
    """docker-registry over TLS on host:free port (HOST:PORT yielded); with `client_certs`,
    only clients presenting a certificate of the test CA get in."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port(host)
    tls: dict[str, object] = {"certificate": str(pki.server_cert), "key": str(pki.server_key)}
    if client_certs:
        tls["clientcas"] = [str(pki.ca)]
    config = {
        "version": "0.1",
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(directory / "storage")}},
        "http": {"addr": f"{host}:{port}", "secret": secrets.token_hex(16), "tls": tls},
    }
    (directory / "config.yml").write_text(json.dumps(config))
    log = (directory / "registry.log").open("ab")
    process = subprocess.Popen(
        die_with_parent(["docker-registry", "serve", str(directory / "config.yml")]),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        if not wait_for_port(port, host, timeout=20):
            raise RuntimeError(f"docker-registry did not listen on {host}:{port}")
        yield f"{host}:{port}"
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()
