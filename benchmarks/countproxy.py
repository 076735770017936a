"""A tiny loopback HTTP proxy in front of moto's server that counts AWS API calls.

Point ``AWS_ENDPOINT_URL`` at it; every request is forwarded unchanged and recorded by
operation: the ``X-Amz-Target`` header (JSON protocols such as ECR) or the ``Action`` form
field (query protocols such as STS).
"""

from __future__ import annotations

import http.client
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}


def operation_name(headers: dict[str, str], body: bytes) -> str:
    """``ecr:GetAuthorizationToken`` from a JSON-protocol target, ``sts:GetCallerIdentity``
    from a query-protocol body; the path otherwise."""
    lowered = {k.lower(): v for k, v in headers.items()}
    target = lowered.get("x-amz-target", "")
    if target:
        service, _, op = target.rpartition(".")
        prefix = "ecr" if "ContainerRegistry" in service else service.split("_")[0].lower()
        return f"{prefix}:{op}"
    if body:
        form = parse_qs(body.decode("utf-8", errors="replace"))
        if form.get("Action"):
            auth = lowered.get("authorization", "")
            service = "sts" if "/sts/" in auth else "aws"
            return f"{service}:{form['Action'][0]}"
    return "http:other"


class CountingProxy:
    """Forwards to ``upstream_port`` on 127.0.0.1 and counts operations (thread-safe)."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return None

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
                proxy.record(operation_name(headers, body))
                upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=30)
                try:
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    payload = response.read()
                    self.send_response(response.status, response.reason)
                    for key, value in response.getheaders():
                        if key.lower() not in HOP_HEADERS | {"content-length"}:
                            self.send_header(key, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                finally:
                    upstream.close()

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def record(self, operation: str) -> None:
        with self._lock:
            self.calls[operation] += 1

    def take(self) -> Counter[str]:
        """The calls counted since the last ``take`` (and reset)."""
        with self._lock:
            calls, self.calls = self.calls, Counter()
        return calls

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


@contextmanager
def counting_proxy(upstream_port: int) -> Iterator[CountingProxy]:
    proxy = CountingProxy(upstream_port)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()
